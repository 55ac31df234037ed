"""A peernet peer written from docs/PROTOCOL.md alone, for the conformance
suite: framing, the messages the cases use, the Ed25519 identity, a TLS 1.3
client (Python's ssl) and a TLS 1.3 server (pyOpenSSL, which can request a
client certificate without validating it). No code of the project is used.
"""
import datetime
import hashlib
import os
import socket
import ssl
import struct
import threading
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

ALPN = b"peernet/1"
CHUNK_SIZE = 262144

# Message types (Messages)
HELLO, ERROR, PING, PONG = 0x01, 0x02, 0x03, 0x04
META_REQ, META, HASH_REQ, HASHES, CHUNK_REQ, CHUNK, CANCEL = 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16
LIST_REQ, LIST = 0x20, 0x21
PUT_BEGIN, PUT_STATUS, PUT_END, PUT_DONE = 0x30, 0x31, 0x32, 0x33
INTERESTED, NOT_INTERESTED, BITFIELD, HAVE, CHOKE, UNCHOKE = 0x40, 0x41, 0x42, 0x43, 0x44, 0x45

# Roles (HELLO) and error codes (Error codes)
CLIENT, SERVER, NODE, DIRECTORY = 1, 2, 3, 4
E_PROTOCOL, E_NOT_FOUND, E_LIMIT, E_CORRUPT, E_INTERNAL, E_BUSY = 1, 2, 3, 4, 5, 6

B32 = "abcdefghijklmnopqrstuvwxyz234567"


# ---------------------------------------------------------------- content IDs

def b32_decode(text):
    bits, n, out = 0, 0, bytearray()
    for ch in text:
        bits = (bits << 5) | B32.index(ch)
        n += 5
        if n >= 8:
            n -= 8
            out.append((bits >> n) & 0xFF)
    return bytes(out)


def b32_encode(data):
    bits, n, out = 0, 0, []
    for b in data:
        bits = (bits << 8) | b
        n += 8
        while n >= 5:
            n -= 5
            out.append(B32[(bits >> n) & 31])
    if n:
        out.append(B32[(bits << (5 - n)) & 31])
    return "".join(out)


def cid_wire(printed):
    """The 40-byte wire form of a printed content ID ("pn1" + 64 base32 characters)."""
    assert printed.startswith("pn1") and len(printed) == 67, printed
    raw = b32_decode(printed[3:])
    assert len(raw) == 40, len(raw)
    return raw


def cid_printed(wire):
    return "pn1" + b32_encode(wire)


def cid_size(wire):
    return struct.unpack(">Q", wire[32:40])[0]


def nchunks(wire):
    size = cid_size(wire)
    return max(1, (size + CHUNK_SIZE - 1) // CHUNK_SIZE)


def chunk_hashes(data):
    """The hash list (Hash tree): one SHA-256 per 256 KiB chunk."""
    if not data:
        return [hashlib.sha256(b"").digest()]
    return [hashlib.sha256(data[i:i + CHUNK_SIZE]).digest() for i in range(0, len(data), CHUNK_SIZE)]


# ---------------------------------------------------------------- frames

def frame(body):
    return struct.pack(">I", len(body)) + body


def hello(role, port=0, features=0, version=1):
    return bytes([HELLO, version, role]) + struct.pack(">HI", port, features)


def ping(nonce):
    return bytes([PING]) + struct.pack(">Q", nonce)


def pong(nonce):
    return bytes([PONG]) + struct.pack(">Q", nonce)


def ref(mtype, rid, cid, index=None):
    """META_REQ, PUT_END, PUT_DONE (no index); CHUNK_REQ, CANCEL (index)."""
    body = bytes([mtype]) + struct.pack(">I", rid) + cid
    return body if index is None else body + struct.pack(">I", index)


def hash_req(rid, cid, first, count):
    return bytes([HASH_REQ]) + struct.pack(">I", rid) + cid + struct.pack(">II", first, count)


def hashes_msg(rid, cid, first, hash_list):
    return (bytes([HASHES]) + struct.pack(">I", rid) + cid + struct.pack(">II", first, len(hash_list)) +
            b"".join(hash_list))


def chunk_msg(rid, cid, index, data):
    return bytes([CHUNK]) + struct.pack(">I", rid) + cid + struct.pack(">I", index) + data


def meta_msg(mtype, rid, cid, name):
    """META or PUT_BEGIN."""
    n = name.encode() if isinstance(name, str) else name
    return bytes([mtype]) + struct.pack(">I", rid) + cid + struct.pack(">H", len(n)) + n


def list_req(rid, cursor):
    return bytes([LIST_REQ]) + struct.pack(">II", rid, cursor)


def error_msg(rid, code, text):
    t = text.encode()
    return bytes([ERROR]) + struct.pack(">IHH", rid, code, len(t)) + t


def cidref(mtype, cid):
    """INTERESTED, NOT_INTERESTED."""
    return bytes([mtype]) + cid


class Msg:
    """A decoded message: type, and the fields the cases look at."""

    def __init__(self, body):
        self.body = body
        self.type = body[0]
        t = self.type
        if t == HELLO:
            self.version, self.role = body[1], body[2]
            self.listen_port, self.features = struct.unpack(">HI", body[3:9])
        elif t == ERROR:
            self.req_id, self.code, n = struct.unpack(">IHH", body[1:9])
            self.text = body[9:9 + n].decode(errors="replace")
        elif t in (PING, PONG):
            self.nonce = struct.unpack(">Q", body[1:9])[0]
        elif t in (META, PUT_BEGIN):
            self.req_id = struct.unpack(">I", body[1:5])[0]
            self.cid = body[5:45]
            n = struct.unpack(">H", body[45:47])[0]
            self.name = body[47:47 + n].decode(errors="replace")
        elif t in (META_REQ, PUT_END, PUT_DONE):
            self.req_id, self.cid = struct.unpack(">I", body[1:5])[0], body[5:45]
        elif t in (CHUNK_REQ, CANCEL):
            self.req_id, self.cid = struct.unpack(">I", body[1:5])[0], body[5:45]
            self.index = struct.unpack(">I", body[45:49])[0]
        elif t == HASH_REQ:
            self.req_id, self.cid = struct.unpack(">I", body[1:5])[0], body[5:45]
            self.first, self.count = struct.unpack(">II", body[45:53])
        elif t == LIST_REQ:
            self.req_id, self.cursor = struct.unpack(">II", body[1:9])
        elif t == HASHES:
            self.req_id = struct.unpack(">I", body[1:5])[0]
            self.cid = body[5:45]
            self.first, self.count = struct.unpack(">II", body[45:53])
            self.hashes = [body[53 + 32 * i:85 + 32 * i] for i in range(self.count)]
        elif t == CHUNK:
            self.req_id = struct.unpack(">I", body[1:5])[0]
            self.cid = body[5:45]
            self.index = struct.unpack(">I", body[45:49])[0]
            self.data = body[49:]
        elif t == LIST:
            self.req_id, self.next_cursor, self.count = struct.unpack(">IIH", body[1:11])
            self.entries, off = [], 11
            for _ in range(self.count):
                cid = body[off:off + 40]
                n = struct.unpack(">H", body[off + 40:off + 42])[0]
                self.entries.append((cid, body[off + 42:off + 42 + n].decode(errors="replace")))
                off += 42 + n
        elif t == PUT_STATUS:
            self.req_id = struct.unpack(">I", body[1:5])[0]
            self.cid = body[5:45]
            self.flags = body[45]
            self.nchunks = struct.unpack(">I", body[46:50])[0]
            self.bitmap = body[50:]
        elif t == BITFIELD:
            self.cid = body[1:41]
            self.nchunks = struct.unpack(">I", body[41:45])[0]
            self.bitmap = body[45:]
        elif t in (INTERESTED, NOT_INTERESTED):
            self.cid = body[1:41]
        elif t == HAVE:
            self.cid, self.index = body[1:41], struct.unpack(">I", body[41:45])[0]

    def __repr__(self):
        extra = ""
        if self.type == ERROR:
            extra = " req_id=%d code=%d %r" % (self.req_id, self.code, self.text)
        return "<Msg 0x%02x%s>" % (self.type, extra)


# ---------------------------------------------------------------- identity

class Identity:
    """An Ed25519 key and its self-signed certificate (Secure channel)."""

    def __init__(self, directory, name="suite", key_type="ed25519"):
        if key_type == "ed25519":
            self.key = ed25519.Ed25519PrivateKey.generate()
            algorithm = None
        else:
            self.key = ec.generate_private_key(ec.SECP256R1())
            algorithm = hashes.SHA256()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=2))
                .sign(self.key, algorithm))
        self.cert_path = os.path.join(directory, name + "-cert.pem")
        self.key_path = os.path.join(directory, name + "-key.pem")
        with open(self.cert_path, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        with open(self.key_path, "wb") as f:
            f.write(self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        self.node_id = node_id_of_cert(cert.public_bytes(serialization.Encoding.DER)) \
            if key_type == "ed25519" else None


def node_id_of_cert(der):
    """Node ID: SHA-256 of the raw 32-byte Ed25519 public key, in hex."""
    cert = x509.load_der_x509_certificate(der)
    raw = cert.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


# ---------------------------------------------------------------- a connection

class Closed(Exception):
    pass


class Conn:
    """Frames over a TLS socket, with a deadline on every wait."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.closed = False

    def send(self, *bodies):
        self.sock.sendall(b"".join(frame(b) for b in bodies))

    def send_raw(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no frame in time")
        self.sock.settimeout(min(left, 1.0))
        try:
            b = self.sock.recv(1 << 20)
        except socket.timeout:
            return
        except (ssl.SSLError, OSError) as e:
            if isinstance(e, (ssl.SSLZeroReturnError, ConnectionResetError, BrokenPipeError)) or \
                    "EOF" in str(e) or "closed" in str(e).lower():
                self.closed = True
                raise Closed(str(e))
            raise
        if not b:
            self.closed = True
            raise Closed("connection closed")
        self.buf += b

    def recv(self, timeout=10):
        """The next message; Closed when the peer closed first."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 4:
                n = struct.unpack(">I", self.buf[:4])[0]
                if len(self.buf) >= 4 + n:
                    body = bytes(self.buf[4:4 + n])
                    del self.buf[:4 + n]
                    return Msg(body)
            self._fill(deadline)

    def recv_type(self, mtype, timeout=10, skip=(PING, PONG, HAVE, BITFIELD)):
        """The next message of mtype, answering PINGs; an ERROR or another type fails."""
        deadline = time.monotonic() + timeout
        while True:
            m = self.recv(max(0.01, deadline - time.monotonic()))
            if m.type == mtype:
                return m
            if m.type == PING:
                self.send(pong(m.nonce))
            if m.type in skip:
                continue
            raise AssertionError("expected type 0x%02x, got %r" % (mtype, m))

    def expect_error_and_close(self, code, req_id=0, timeout=10):
        """The peer sends ERROR(req_id, code) and then closes. Returns the ERROR."""
        deadline = time.monotonic() + timeout
        err = None
        try:
            while True:
                m = self.recv(max(0.01, deadline - time.monotonic()))
                if m.type == ERROR and err is None:
                    err = m
                    continue
                assert err is None, "a message after ERROR(0, ...): %r" % m
                if m.type == PING:
                    continue
                if m.type in (CHUNK, HAVE, BITFIELD, UNCHOKE, CHOKE, PONG):
                    continue  # data queued before the offence may still come first
                raise AssertionError("expected ERROR(%d, %d), got %r" % (req_id, code, m))
        except Closed:
            pass
        assert err is not None, "the connection closed without an ERROR"
        assert (err.req_id, err.code) == (req_id, code), "expected ERROR(%d, %d), got %r" % (req_id, code, err)
        return err

    def expect_open(self, cid_known):
        """The connection still serves: a META_REQ is answered."""
        rid = 0x7fff0001
        self.send(ref(META_REQ, rid, cid_known))
        m = self.recv_type(META)
        assert m.req_id == rid
        return m

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def client_context(identity=None, alpn=True):
    """Python's ssl as a peernet client: TLS 1.3, our certificate, ALPN; the
    server's certificate is checked by its key (node ID), not by a CA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if identity:
        ctx.load_cert_chain(identity.cert_path, identity.key_path)
    if alpn:
        ctx.set_alpn_protocols([ALPN.decode()])
    return ctx


def connect(port, identity, role=CLIENT, send_hello=True, timeout=10):
    """A TLS connection to 127.0.0.1:port; with send_hello, HELLO goes out and
    the peer's HELLO is read (conn.peer_hello)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s = client_context(identity).wrap_socket(raw, server_hostname=None)
    c = Conn(s)
    c.server_id = node_id_of_cert(s.getpeercert(binary_form=True))
    c.peer_hello = None
    if send_hello:
        c.send(hello(role))
        m = c.recv(timeout)
        assert m.type == HELLO, "first message is not HELLO: %r" % m
        c.peer_hello = m
    return c


class TLSServer:
    """pyOpenSSL as a peernet server for one connection, in a thread: it
    requests a client certificate and accepts any (the node ID is its key).
    handler(conn) runs the exchange; its exception is re-raised by result()."""

    def __init__(self, identity, handler, timeout=30, conns=1):
        self.conns = conns
        from OpenSSL import SSL
        self.SSL = SSL
        ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
        ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
        ctx.use_certificate_file(identity.cert_path)
        ctx.use_privatekey_file(identity.key_path)
        ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda *a: True)
        ctx.set_alpn_select_callback(lambda conn, offered: ALPN if ALPN in offered else b"")
        self.ctx = ctx
        self.handler = handler
        self.timeout = timeout
        self.client_id = None
        self.exc = None
        self.lst = socket.socket()
        self.lst.bind(("127.0.0.1", 0))
        self.lst.listen(4)
        self.lst.settimeout(timeout)
        self.port = self.lst.getsockname()[1]
        self.addr = "127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        for i in range(self.conns):
            self._one(i)
            if self.exc:
                return

    def _one(self, index):
        raw = None
        watchdog = None
        try:
            raw, _ = self.lst.accept()
            raw.settimeout(None)  # pyOpenSSL wants a blocking socket; the watchdog bounds it
            watchdog = threading.Timer(self.timeout, lambda: _shut(raw))
            watchdog.daemon = True
            watchdog.start()
            s = self.SSL.Connection(self.ctx, raw)
            s.set_accept_state()
            s.do_handshake()
            self.client_id = node_id_of_cert(
                s.get_peer_certificate().to_cryptography().public_bytes(serialization.Encoding.DER))
            conn = Conn(_PyOpenSSLSock(s, self.SSL, raw))
            if self.conns == 1:
                self.handler(conn)
            else:
                self.handler(conn, index)
        except Exception as e:  # re-raised in the test by result()
            self.exc = e
        finally:
            if watchdog:
                watchdog.cancel()
            if raw:
                _shut(raw)

    def result(self):
        self.thread.join(self.timeout + 5)
        self.lst.close()
        if self.exc:
            raise self.exc


def _shut(raw):
    try:
        raw.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        raw.close()
    except OSError:
        pass


class _PyOpenSSLSock:
    """The little of a socket that Conn uses, over a pyOpenSSL connection on
    a blocking socket: a wait for data is a select() with the timeout."""

    def __init__(self, conn, SSL, raw):
        self.c = conn
        self.SSL = SSL
        self.raw = raw
        self.timeout = 10

    def sendall(self, data):
        self.c.sendall(data)

    def settimeout(self, t):
        self.timeout = t

    def recv(self, n):
        import select
        if not self.c.pending():
            ready, _, _ = select.select([self.raw], [], [], self.timeout)
            if not ready:
                raise socket.timeout("no data")
        try:
            return self.c.recv(n)
        except self.SSL.WantReadError:
            raise socket.timeout("a partial record")
        except (self.SSL.ZeroReturnError, self.SSL.SysCallError):
            return b""
        except self.SSL.Error as e:
            raise Closed(str(e))

    def close(self):
        try:
            self.c.shutdown()
        except Exception:
            pass
        self.c.close()
