"""Hand-made peernet wire messages and TLS endpoints for tests (docs/PROTOCOL.md)."""
import os
import socket
import ssl
import struct
import subprocess
import threading
import time

from conftest import cid_raw

HELLO_CLIENT = bytes([0x01, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00])
HELLO_SERVER = bytes([0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00])

T_HELLO, T_ERROR, T_META_REQ, T_META, T_HASH_REQ, T_HASHES, T_CHUNK_REQ, T_CHUNK = (
    0x01, 0x02, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15)


def frame(body):
    return struct.pack(">I", len(body)) + body


def parse_frames(data):
    """Whole frames at the start of data, and the number of bytes they took."""
    out = []
    off = 0
    while off + 4 <= len(data):
        n = struct.unpack(">I", data[off:off + 4])[0]
        if off + 4 + n > len(data):
            break
        out.append(bytes(data[off + 4:off + 4 + n]))
        off += 4 + n
    return out, off


def req_id(body):
    return struct.unpack(">I", body[1:5])[0]


def meta(rid, cid, name):
    n = name.encode()
    return bytes([T_META]) + struct.pack(">I", rid) + cid_raw(cid) + struct.pack(">H", len(n)) + n


def hash_req(rid, cid, first, count):
    return bytes([T_HASH_REQ]) + struct.pack(">I", rid) + cid_raw(cid) + struct.pack(">II", first, count)


def hashes(rid, cid, first, hash_bytes):
    return (bytes([T_HASHES]) + struct.pack(">I", rid) + cid_raw(cid) +
            struct.pack(">II", first, len(hash_bytes) // 32) + hash_bytes)


def chunk(rid, cid, index, data):
    return bytes([T_CHUNK]) + struct.pack(">I", rid) + cid_raw(cid) + struct.pack(">I", index) + data


def error(rid, code, text):
    return bytes([T_ERROR]) + struct.pack(">IHH", rid, code, len(text)) + text


def make_ed25519_cert(directory):
    """Generates an Ed25519 key and self-signed certificate with the openssl CLI.
    Returns (cert_path, key_path), or None if openssl cannot."""
    key = os.path.join(directory, "ed25519-key.pem")
    cert = os.path.join(directory, "ed25519-cert.pem")
    for cmd in (["openssl", "genpkey", "-algorithm", "ed25519", "-out", key],
                ["openssl", "req", "-x509", "-new", "-key", key, "-subj", "/CN=x", "-days", "1", "-out", cert]):
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        if r.returncode != 0:
            return None
    return cert, key


def client_context(cert=None, key=None, alpn=True, tls12=False):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    else:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if cert:
        ctx.load_cert_chain(cert, key)
    if alpn:
        ctx.set_alpn_protocols(["peernet/1"])
    return ctx


def request(port, cert, key, body, want_type, timeout=20):
    """Connects as a client, sends HELLO and body, returns the first frame of want_type."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s = client_context(cert, key).wrap_socket(raw, server_hostname=None)
    try:
        s.sendall(frame(HELLO_CLIENT) + frame(body))
        data = bytearray()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            frames, _ = parse_frames(data)
            for f in frames:
                if f[0] == want_type:
                    return f
                assert f[0] == T_HELLO, "unexpected answer type 0x%02x" % f[0]
            b = s.recv(1 << 20)
            assert b, "server closed"
            data += b
        raise AssertionError("no answer of type 0x%02x" % want_type)
    finally:
        s.close()


class FakeServer:
    """A TLS 1.3 peernet 'server' for one client connection, run in a thread.
    handler(body) returns a list of bytes to send (whole frames) or None to
    close. It sends HELLO first (hello= to change it). Bounded by timeout."""

    def __init__(self, cert, key, handler, hello=HELLO_SERVER, timeout=30):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        self.ctx.load_cert_chain(cert, key)
        self.ctx.set_alpn_protocols(["peernet/1"])
        self.handler = handler
        self.hello = hello
        self.timeout = timeout
        self.received = []
        self.error = None
        self.lst = socket.socket()
        self.lst.bind(("127.0.0.1", 0))
        self.lst.listen(4)
        self.lst.settimeout(timeout)
        self.port = self.lst.getsockname()[1]
        self.addr = "127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        deadline = time.monotonic() + self.timeout
        try:
            raw, _ = self.lst.accept()
            raw.settimeout(self.timeout)
            s = self.ctx.wrap_socket(raw, server_side=True)
            s.settimeout(1.0)
            s.sendall(frame(self.hello))
            buf = bytearray()
            while time.monotonic() < deadline:
                try:
                    b = s.recv(1 << 20)
                except socket.timeout:
                    continue
                if not b:
                    break
                buf += b
                frames, used = parse_frames(buf)
                del buf[:used]
                for f in frames:
                    self.received.append(f)
                    out = self.handler(f)
                    if out is None:
                        s.close()
                        return
                    for o in out:
                        s.sendall(o)
            s.close()
        except (OSError, ssl.SSLError) as e:
            self.error = e

    def stop(self):
        try:
            self.lst.close()
        except OSError:
            pass
        self.thread.join(self.timeout + 5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
