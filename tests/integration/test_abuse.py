"""Abuse against a live server: garbage, stalls, failed handshakes, bad frames,
a client that stops reading, many idle connections. After each, the server
has logged a line about that connection and still serves a correct download."""
import os
import select
import socket
import ssl
import struct
import subprocess
import time

import pytest

from conftest import (BIN, CHUNK, Server, cid_raw, cid_str, make_file, poll, rss_kib, run, sha256_file)
from pnwire import client_context, make_ed25519_cert

MIB = 1024 * 1024
TIMEOUT = 2          # --handshake-timeout and --idle-timeout of the server under test
CLOSE_WAIT = 20      # seconds we allow the server to close an abusive connection
RSS_SLACK_KIB = 64 * 1024

HELLO = bytes([0x01, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00])  # type, version 1, role client, port 0, features 0


def frame(body):
    return struct.pack(">I", len(body)) + body


def list_req(req_id=1, cursor=0):
    return bytes([0x20]) + struct.pack(">II", req_id, cursor)


def chunk_req(req_id, cid, index):
    return bytes([0x14]) + struct.pack(">I", req_id) + cid_raw(cid) + struct.pack(">I", index)


def start_small_quarantine(srv):
    """Starts srv with a small ASan quarantine, so that its RSS reflects live
    memory rather than freed blocks held back by ASan."""
    old = os.environ.get("ASAN_OPTIONS", "")
    os.environ["ASAN_OPTIONS"] = (old + ":" if old else "") + "quarantine_size_mb=16"
    try:
        return srv.start()
    finally:
        os.environ["ASAN_OPTIONS"] = old


class Env:
    """The module's server, its certificate for hand-made TLS clients, and a
    reference file to check that the server still serves."""


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("abuse"))
    e = Env()
    e.dir = d
    e.key = os.path.join(d, "client-key.pem")
    e.cert = os.path.join(d, "client-cert.pem")
    for cmd in (["openssl", "genpkey", "-algorithm", "ed25519", "-out", e.key],
                ["openssl", "req", "-x509", "-new", "-key", e.key, "-subj", "/CN=x", "-days", "1", "-out", e.cert]):
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        if r.returncode != 0:
            pytest.skip("openssl cannot make an Ed25519 certificate: %r" % r.stderr)
    e.srv = start_small_quarantine(Server(os.path.join(d, "srv"),
                                          args=["--handshake-timeout", TIMEOUT, "--idle-timeout", TIMEOUT]))
    e.file = os.path.join(d, "ref.bin")
    e.size = 8 * MIB + 77
    e.digest = make_file(e.file, e.size, seed=41)
    e.cid = e.srv.put_id(e.file)
    e.nchunks = (e.size + CHUNK - 1) // CHUNK
    e.gets = 0
    check_serves(e)  # warm up before any RSS baseline
    yield e
    rc = e.srv.stop()
    assert rc == 0, "server exited %s on SIGTERM; log tail:\n%s" % (rc, "\n".join(e.srv.log_lines()[-40:]))


def check_serves(e):
    e.gets += 1
    out = os.path.join(e.dir, "check-%d.bin" % e.gets)
    res = e.srv.get(e.cid, out)
    assert res["ok"] and res["bytes_downloaded"] == e.size
    assert sha256_file(out) == e.digest
    os.unlink(out)
    assert e.srv.alive()


def tls_context(e, cert=True, alpn=True, tls12=False):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    else:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if cert:
        ctx.load_cert_chain(e.cert, e.key)
    if alpn:
        ctx.set_alpn_protocols(["peernet/1"])
    return ctx


def tls_connect(e, **kw):
    raw = socket.create_connection(("127.0.0.1", e.srv.port), timeout=10)
    s = tls_context(e, **kw).wrap_socket(raw, server_hostname=None)
    s.settimeout(10)
    return s


def read_until_closed(s, timeout=CLOSE_WAIT):
    """Reads until the peer closes (EOF, reset or TLS alert). Returns the bytes
    read; fails if the connection is still open after timeout seconds."""
    data = bytearray()
    deadline = time.monotonic() + timeout
    for _ in range(100000):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        s.settimeout(min(left, 1.0))
        try:
            b = s.recv(65536)
        except socket.timeout:
            continue
        except (ssl.SSLError, ConnectionError, OSError):
            return bytes(data)
        if not b:
            return bytes(data)
        data += b
    raise AssertionError("connection still open after %ds (%d bytes read)" % (timeout, len(data)))


def parse_frames(data):
    out = []
    off = 0
    while off + 4 <= len(data):
        n = struct.unpack(">I", data[off:off + 4])[0]
        if off + 4 + n > len(data):
            break
        out.append(data[off + 4:off + 4 + n])
        off += 4 + n
    return out


def log_mark(e):
    return len(e.srv.log_lines())


def wait_conn_logged(e, mark, local_port, needle=None):
    """The server logged a line about the connection from local_port (and with needle)."""
    tag = "127.0.0.1:%d" % local_port
    lines = poll(lambda: [l for l in e.srv.log_lines()[mark:] if tag in l and (needle is None or needle in l)],
                 CLOSE_WAIT, what="a log line about %s%s; log tail:\n%s" % (
                     tag, " with %r" % needle if needle else "", "\n".join(e.srv.log_lines()[-15:])))
    return lines


# --------------------------------------------------------------- raw TCP

def test_random_bytes(env):
    mark = log_mark(env)
    s = socket.create_connection(("127.0.0.1", env.srv.port), timeout=10)
    port = s.getsockname()[1]
    try:
        s.sendall(os.urandom(64 * 1024))
    except ConnectionError:
        pass  # the server may already have closed it
    read_until_closed(s)
    s.close()
    wait_conn_logged(env, mark, port, "handshake failed")
    check_serves(env)


def test_random_bytes_after_valid_record_header(env):
    """A TLS handshake record header that claims a huge length, then garbage."""
    mark = log_mark(env)
    s = socket.create_connection(("127.0.0.1", env.srv.port), timeout=10)
    port = s.getsockname()[1]
    try:
        s.sendall(b"\x16\x03\x01\xff\xff" + os.urandom(4096))
    except ConnectionError:
        pass
    read_until_closed(s)
    s.close()
    wait_conn_logged(env, mark, port)
    check_serves(env)


def test_connect_and_send_nothing(env):
    mark = log_mark(env)
    s = socket.create_connection(("127.0.0.1", env.srv.port), timeout=10)
    port = s.getsockname()[1]
    # The server must close it after --handshake-timeout; we only wait, bounded.
    assert read_until_closed(s) == b""
    s.close()
    wait_conn_logged(env, mark, port, "timed out")
    check_serves(env)


def test_half_handshake_then_stall(env):
    """A ClientHello that is cut short, then silence: closed by the handshake timeout."""
    mark = log_mark(env)
    ctx = tls_context(env)
    inb, outb = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inb, outb, server_side=False)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = outb.read()
    assert len(hello) > 20
    s = socket.create_connection(("127.0.0.1", env.srv.port), timeout=10)
    port = s.getsockname()[1]
    s.sendall(hello[: len(hello) // 2])
    read_until_closed(s)
    s.close()
    wait_conn_logged(env, mark, port)
    check_serves(env)


# --------------------------------------------------------------- failed handshakes

def handshake_must_fail(env, **kw):
    mark = log_mark(env)
    raw = socket.create_connection(("127.0.0.1", env.srv.port), timeout=10)
    port = raw.getsockname()[1]
    s = tls_context(env, **kw).wrap_socket(raw, server_hostname=None, do_handshake_on_connect=False)
    s.settimeout(10)
    got = b""
    try:
        s.do_handshake()
        # TLS 1.3: the client may finish before the server checks its certificate;
        # then the refusal arrives as an alert or a close on the first read.
        s.sendall(frame(HELLO))
        got = read_until_closed(s)
    except (ssl.SSLError, ConnectionError, OSError):
        pass
    finally:
        s.close()
    assert parse_frames(got) == [], "the server spoke peernet to a client that failed the handshake"
    wait_conn_logged(env, mark, port, "handshake failed")
    check_serves(env)


def test_tls_without_client_certificate(env):
    handshake_must_fail(env, cert=False)


def test_tls12_only_client(env):
    handshake_must_fail(env, tls12=True)


def test_tls_without_alpn(env):
    handshake_must_fail(env, alpn=False)


# --------------------------------------------------------------- bad frames over a good TLS connection

def test_good_tls_client_is_served(env):
    """The hand-made client itself is fine: HELLO, LIST_REQ -> HELLO, LIST."""
    s = tls_connect(env)
    assert s.version() == "TLSv1.3"
    assert s.selected_alpn_protocol() == "peernet/1"
    s.sendall(frame(HELLO) + frame(list_req(7)))
    data = bytearray()
    for _ in range(200):
        frames = parse_frames(bytes(data))
        if len(frames) >= 2:
            break
        b = s.recv(65536)
        assert b, "server closed a well-behaved connection"
        data += b
    frames = parse_frames(bytes(data))
    assert frames[0][0] == 0x01 and frames[0][2] == 0x02  # HELLO, role server
    assert frames[1][0] == 0x21 and struct.unpack(">I", frames[1][1:5])[0] == 7  # LIST for req 7
    s.close()


BAD = {
    "malformed_hello": (frame(b"\x01\x01"), "malformed"),
    "hello_trailing_bytes": (frame(HELLO + b"\x00"), None),  # over HELLO's size: framing or decoder
    "malformed_after_hello": (frame(HELLO) + frame(b"\x14" + b"\x00" * 10), "malformed"),
    "oversized_first": (b"\xff\xff\xff\xf0\x01" + b"\x00" * 64, "exceeds"),
    "oversized_after_hello": (frame(HELLO) + b"\xff\xff\xff\xf0\x15" + b"\x00" * 64, "exceeds"),
    "oversized_list_req": (frame(HELLO) + b"\x00\x10\x00\x00\x20" + b"\x00" * 64, "exceeds"),
    "unknown_type_first": (frame(b"\x7f" + b"\x00" * 8), "unknown message type"),
    "unknown_type_after_hello": (frame(HELLO) + frame(b"\xee" + b"\x00" * 8), "unknown message type"),
    "zero_length": (frame(HELLO) + b"\x00\x00\x00\x00", None),
    "not_hello_first": (frame(list_req()), "not HELLO"),
    "hello_twice": (frame(HELLO) + frame(HELLO), "unexpected"),
    "server_message_from_client": (frame(HELLO) + frame(b"\x21" + struct.pack(">IIH", 1, 0, 0)), "unexpected"),
}
NEEDS_CID = {  # cases built from the module's content ID
    "chunk_req_index_out_of_range": (lambda e: frame(HELLO) + frame(chunk_req(1, e.cid, e.nchunks)), "malformed"),
    "chunk_req_truncated_cid": (lambda e: frame(HELLO) + frame(chunk_req(1, e.cid, 0)[:30]), "malformed"),
}


@pytest.mark.parametrize("case", list(BAD) + list(NEEDS_CID))
def test_bad_frame_closes_connection(env, case):
    if case in NEEDS_CID:
        build, needle = NEEDS_CID[case]
        payload = build(env)
    else:
        payload, needle = BAD[case]
    mark = log_mark(env)
    s = tls_connect(env)
    port = s.getsockname()[1]
    try:
        s.sendall(payload)
    except (ssl.SSLError, ConnectionError):
        pass
    got = read_until_closed(s)
    s.close()
    frames = parse_frames(got)
    assert frames and frames[0][0] == 0x01, "the server's HELLO comes first"
    # Nothing but HELLO and at most one ERROR (type 0x02) comes back.
    assert all(f[0] in (0x01, 0x02) for f in frames), [f[:1] for f in frames]
    assert len(frames) <= 2
    wait_conn_logged(env, mark, port, needle)
    check_serves(env)


# --------------------------------------------------------------- resource bounds

def test_client_that_stops_reading(env):
    """HELLO and thousands of CHUNK_REQs, never read: the server's memory stays
    bounded, others are served, and the connection is eventually closed."""
    base = env.srv.rss_kib()
    mark = log_mark(env)
    s = tls_connect(env)
    port = s.getsockname()[1]
    reqs = bytearray(frame(HELLO))
    for i in range(4000):
        reqs += frame(chunk_req(i + 1, env.cid, i % env.nchunks))
    s.settimeout(5)
    try:
        s.sendall(bytes(reqs))  # may block once the server stops reading; that is the point
    except (socket.timeout, ssl.SSLError, ConnectionError):
        pass
    # Meanwhile another client is served in full.
    check_serves(env)
    check_serves(env)
    grown = env.srv.rss_kib() - base
    print("RSS base %d KiB, grown %d KiB with a non-reading client" % (base, grown))
    assert grown < RSS_SLACK_KIB, "server RSS grew by %d KiB for one client that does not read" % grown
    # The server gives up on it (idle or write-stall timeout) and says so.
    lines = poll(lambda: [l for l in env.srv.log_lines()[mark:] if "127.0.0.1:%d" % port in l], 60,
                 what="the server to close the non-reading connection")
    assert any("closed" in l or "timed out" in l for l in lines), lines
    s.close()
    assert env.srv.rss_kib() - base < RSS_SLACK_KIB
    check_serves(env)


def test_many_idle_connections(env):
    base = env.srv.rss_kib()
    mark = log_mark(env)
    socks = []
    tls = []
    try:
        for _ in range(200):
            socks.append(socket.create_connection(("127.0.0.1", env.srv.port), timeout=10))
        # Some of them finish TLS and then idle.
        tls += [tls_connect(env) for _ in range(20)]
        for t in tls:
            t.sendall(frame(HELLO))
        check_serves(env)
        grown = env.srv.rss_kib() - base
        print("RSS base %d KiB, grown %d KiB with 220 idle connections" % (base, grown))
        assert grown < RSS_SLACK_KIB, "RSS grew by %d KiB with 220 idle connections" % grown
        # Every one of them is closed by the handshake or idle timeout.
        for s in socks:
            assert read_until_closed(s) == b""
        for t in tls:
            frames = parse_frames(read_until_closed(t))
            assert frames and frames[0][0] == 0x01
        n_timed_out = lambda: len([l for l in env.srv.log_lines()[mark:] if "timed out" in l]) >= 220
        poll(n_timed_out, CLOSE_WAIT, what="220 'timed out' log lines")
    finally:
        for s in socks:
            s.close()
        for t in tls:
            t.close()
    check_serves(env)
    assert env.srv.rss_kib() - base < RSS_SLACK_KIB


def test_server_still_healthy_at_the_end(env):
    """Module-level check after all the abuse: ls, put and get all work."""
    listed = env.srv.ls()
    assert env.cid in [x["id"] for x in listed]
    other = os.path.join(env.dir, "after.bin")
    digest = make_file(other, CHUNK * 2 + 3, seed=42)
    cid = env.srv.put_id(other)
    out = os.path.join(env.dir, "after-back.bin")
    assert env.srv.get(cid, out)["ok"] and sha256_file(out) == digest


def test_put_begin_flood_memory_bounded(workdir):
    srv = start_small_quarantine(Server(os.path.join(workdir, "srv")))
    try:
        c = make_ed25519_cert(workdir)
        base = srv.rss_kib()
        socks = []
        for i in range(16):
            cid = cid_str(os.urandom(32), 64 * 1024 ** 3)
            name = b"fake-%d.bin" % i
            body = bytes([0x30]) + struct.pack(">I", 1) + cid_raw(cid) + struct.pack(">H", len(name)) + name
            raw = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            s = client_context(*c).wrap_socket(raw, server_hostname=None)
            s.sendall(frame(HELLO) + frame(body))
            socks.append(s)
        # Each gets its PUT_STATUS (or an ERROR) once the server has dealt with its PUT_BEGIN.
        for s in socks:
            s.settimeout(20)
            data = bytearray()
            for _ in range(100):
                frames = parse_frames(bytes(data))
                if len(frames) >= 2:
                    break
                b = s.recv(1 << 16)
                if not b:
                    break
                data += b
        grown = srv.rss_kib() - base
        for s in socks:
            s.close()
        assert grown < RSS_SLACK_KIB, "RSS grew by %d KiB for 16 PUT_BEGINs" % grown
    finally:
        assert srv.stop() == 0


def test_sigterm_with_a_client_that_does_not_read(tmp_path):
    """A client pipelines requests and never reads the answers; SIGTERM must
    still stop the server (its last bytes to that client are given a bounded
    drain, then the connection is cut) instead of waiting for ever."""
    d = str(tmp_path)
    key, cert = os.path.join(d, "k.pem"), os.path.join(d, "c.pem")
    for cmd in (["openssl", "genpkey", "-algorithm", "ed25519", "-out", key],
                ["openssl", "req", "-x509", "-new", "-key", key, "-subj", "/CN=x", "-days", "1", "-out", cert]):
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        if r.returncode != 0:
            pytest.skip("openssl cannot make an Ed25519 certificate: %r" % r.stderr)
    srv = Server(os.path.join(d, "srv")).start()
    try:
        src = os.path.join(d, "f.bin")
        make_file(src, 8 * MIB, seed=44)
        cid = srv.put_id(src)
        raw = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        s = client_context(cert, key).wrap_socket(raw, server_hostname=None)
        reqs = bytearray(frame(HELLO))
        for i in range(200):
            reqs += frame(chunk_req(i + 1, cid, i % 32))
        s.settimeout(5)
        try:
            s.sendall(bytes(reqs))
        except (socket.timeout, ssl.SSLError, ConnectionError):
            pass
        time.sleep(0.5)  # the server has filled the socket towards us
        t0 = time.monotonic()
        rc = srv.stop()
        took = time.monotonic() - t0
        assert rc == 0, "server exited %s; log:\n%s" % (rc, srv.log())
        print("stopped %.1f s after SIGTERM with a non-reading client" % took)
        s.close()
    finally:
        if srv.alive():
            srv.proc.kill()
            srv.proc.wait(10)
