// A peernet server side in Node.js's tls module, written from docs/PROTOCOL.md
// alone: it shows that a stack able to request a client certificate without
// validating its chain can play the server (Implementing peernet, TLS stacks).
// It answers HELLO (role 2, its listen port) and LIST_REQ (an empty last
// page), prints one JSON line per event on stdout, and exits after its first
// connection closes or after 20 s.
'use strict';
const tls = require('tls');
const fs = require('fs');
const crypto = require('crypto');

const [keyPath, certPath] = process.argv.slice(2);
const say = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const frame = (body) => {
  const h = Buffer.alloc(4);
  h.writeUInt32BE(body.length);
  return Buffer.concat([h, body]);
};
// The node ID: SHA-256 of the raw 32-byte Ed25519 public key (the last 32
// bytes of its SubjectPublicKeyInfo).
const nodeId = (der) => {
  const spki = new crypto.X509Certificate(der).publicKey.export({format: 'der', type: 'spki'});
  return crypto.createHash('sha256').update(spki.subarray(spki.length - 32)).digest('hex');
};

const server = tls.createServer({
  key: fs.readFileSync(keyPath),
  cert: fs.readFileSync(certPath),
  minVersion: 'TLSv1.3',
  ALPNProtocols: ['peernet/1'],
  sigalgs: 'ed25519',
  requestCert: true,        // a CertificateRequest ...
  rejectUnauthorized: false // ... without a CA: the key is the identity
}, (sock) => {
  const peer = sock.getPeerCertificate(true);
  say({event: 'handshake', alpn: sock.alpnProtocol, client_id: peer && peer.raw ? nodeId(peer.raw) : null});
  const hello = Buffer.from([0x01, 0x01, 0x02, 0, 0, 0, 0, 0, 0]);
  hello.writeUInt16BE(server.address().port, 3);
  sock.write(frame(hello));
  let buf = Buffer.alloc(0);
  sock.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
      const len = buf.readUInt32BE(0);
      const body = buf.subarray(4, 4 + len);
      buf = buf.subarray(4 + len);
      say({event: 'message', type: body[0], len: len});
      if (body[0] === 0x20 && len === 9) { // LIST_REQ: an empty, last page
        const list = Buffer.alloc(11);
        list[0] = 0x21;
        body.copy(list, 1, 1, 5); // req_id
        sock.write(frame(list));
      }
    }
  });
  sock.on('error', (e) => say({event: 'error', message: e.message}));
  sock.on('close', () => { say({event: 'closed'}); process.exit(0); });
});
server.on('tlsClientError', (e) => say({event: 'tls_error', message: e.message}));
server.listen(0, '127.0.0.1', () => {
  say({event: 'listening', port: server.address().port, id: nodeId(new crypto.X509Certificate(fs.readFileSync(certPath)).raw)});
});
setTimeout(() => process.exit(2), 20000);
