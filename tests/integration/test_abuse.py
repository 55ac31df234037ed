"""Abuse against a live server: garbage, stalls, failed handshakes, bad frames,
a client that stops reading, many idle connections. After each, the server
has logged a line about that connection and still serves a correct download."""
import os
import resource
import select
import socket
import ssl
import struct
import subprocess
import threading
import time

import pytest

from conftest import (BIN, CHUNK, FAST_BIN, Server, cid_raw, cid_str, make_file, poll, rss_kib, run, sha256_file)
from p2p import Net
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
        # From ten loopback sources, 20 each: under the per-address handshake
        # limit (PN_NET_HALFOPEN_PER_ADDR), so every one is accepted.
        for i in range(200):
            socks.append(socket.create_connection(("127.0.0.1", env.srv.port), timeout=10,
                                                  source_address=("127.0.6.%d" % (1 + i % 10), 0)))
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


# --------------------------------------------------------------- connection slots shared fairly
#
# Stalled half-open connections (TCP up, TLS never finished) from one source
# address must not lock anyone else out of a serve, a node or a directory
# (src/net/conn_limit.h, docs/PROTOCOL.md "Limits"). The daemons under attack
# are capped at RLIMIT_NOFILE 1024, a common default, so that before the
# per-address limits FLOOD_CONNS stalled connections took every descriptor
# (a node's 128 peer slots went first).

FLOOD_CONNS = 2000
FLOOD_SOURCE = "127.0.5.5"   # another /24 than 127.0.0.1, where the real clients are
DAEMON_NOFILE = 1024
# RSS bounds for `serve` (the build without sanitizers) under FLOOD_CONNS stalled
# handshakes from 100 sources: each costs its TLS session (~50 KiB measured);
# after they are gone the heap is handed back (malloc_trim).
FLOOD_RSS_DURING_KIB = 192 * 1024
FLOOD_RSS_AFTER_KIB = 24 * 1024


def conn_limit(name):
    from conftest import REPO
    with open(os.path.join(REPO, "src", "net", "conn_limit.h")) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "#define" and parts[1] == name:
                return int(parts[2])
    raise AssertionError("%s not in src/net/conn_limit.h" % name)


def need_nofile(n):
    """Raises this process's soft RLIMIT_NOFILE to at least n, or skips."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= n:
        return
    if hard != resource.RLIM_INFINITY and hard < n:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))  # allowed for root
            return
        except (ValueError, OSError):
            pytest.skip("needs %d file descriptors, the hard limit is %d" % (n, hard))
    resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))


def cap_nofile(pid, n=None):
    """Caps a started daemon's RLIMIT_NOFILE at n (soft and hard; peernet raises
    its soft limit to the hard one at start, so the cap is set from outside)."""
    n = n or DAEMON_NOFILE
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (n, n))


def _client_hello_half():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["peernet/1"])
    inb, outb = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inb, outb, server_side=False)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = outb.read()
    assert len(hello) > 40
    return hello[: len(hello) // 2]


class Flood:
    """count TCP connections to port from the given source addresses, each
    sending half a ClientHello and then nothing. With reconnect=True a thread
    replaces every connection the target closed, like an attacker who keeps
    the door shut, until stop(). Bounded: at most max_rounds refills."""

    def __init__(self, port, sources, count, reconnect=False, max_rounds=400):
        self.port = port
        self.sources = sources
        self.hello = _client_hello_half()
        self.socks = [None] * count
        self.opened = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = None
        self.max_rounds = max_rounds
        for i in range(count):
            self.socks[i] = self._open(i)
        self._send_hello(range(count))
        if reconnect:
            self.thread = threading.Thread(target=self._refill_loop, daemon=True)
            self.thread.start()

    def _open(self, i):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.bind((self.sources[i % len(self.sources)], 0))
        try:
            s.connect(("127.0.0.1", self.port))
        except (BlockingIOError, InterruptedError):
            pass
        self.opened += 1
        return s

    def _send_hello(self, indexes):
        pending = list(indexes)
        deadline = time.monotonic() + 20
        for _ in range(2000):
            if not pending or time.monotonic() > deadline:
                break
            left = []
            for i in pending:
                s = self.socks[i]
                try:
                    s.send(self.hello)
                except (BlockingIOError, InterruptedError):
                    left.append(i)  # the connect is still under way
                except OSError:
                    pass  # refused and closed already
            pending = left
            if pending:
                time.sleep(0.02)

    @staticmethod
    def _closed(s):
        try:
            return s.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK) == b""
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as e:
            return e.errno != 107  # ENOTCONN: the connect is still under way

    def closed_count(self):
        with self.lock:
            return sum(1 for s in self.socks if self._closed(s))

    def _refill_loop(self):
        for _ in range(self.max_rounds):
            if self.stopping.wait(0.3):
                return
            with self.lock:
                again = [i for i, s in enumerate(self.socks) if self._closed(s)]
                for i in again:
                    self.socks[i].close()
                    self.socks[i] = self._open(i)
            self._send_hello(again)

    def stop_reconnecting(self):
        self.stopping.set()
        if self.thread:
            self.thread.join(30)
            assert not self.thread.is_alive()

    def close(self):
        self.stop_reconnecting()
        for s in self.socks:
            s.close()


def wait_all_closed(flood, timeout):
    poll(lambda: flood.closed_count() == len(flood.socks), timeout, interval=0.5,
         what="the target to close all %d stalled connections (%d closed)" % (len(flood.socks),
                                                                                flood.closed_count()))


def refusal_lines(log_lines):
    return [l for l in log_lines if "refused" in l and FLOOD_SOURCE in l]


def test_serve_halfopen_flood_from_one_address(tmp_path):
    """2,000 stalled handshakes from 127.0.5.5, reconnected as soon as they are
    closed: `ls` and `get` from 127.0.0.1 are still served, the refusals are
    logged a few times rather than 2,000, and every stalled connection is closed."""
    need_nofile(FLOOD_CONNS + 256)
    d = str(tmp_path)
    srv = Server(os.path.join(d, "srv"), args=["--handshake-timeout", 3]).start()
    cap_nofile(srv.pid)
    flood = None
    try:
        src = os.path.join(d, "f.bin")
        digest = make_file(src, 3 * CHUNK + 5, seed=45)
        cid = srv.put_id(src)
        flood = Flood(srv.port, [FLOOD_SOURCE], FLOOD_CONNS, reconnect=True)
        time.sleep(1)  # the refill thread has come round at least once
        assert cid in [x["id"] for x in srv.ls()]
        out = os.path.join(d, "back.bin")
        res = srv.get(cid, out)
        assert res["ok"] and sha256_file(out) == digest
        flood.stop_reconnecting()
        # The handshake timeout (3 s) closes the ones that were let in.
        wait_all_closed(flood, 30)
        lines = refusal_lines(srv.log_lines())
        print("%d connections opened from %s; %d refusal lines logged" % (flood.opened, FLOOD_SOURCE, len(lines)))
        assert lines, "the refusals are logged"
        assert len(lines) <= 10, "refusals are logged at most once per interval, got %d lines" % len(lines)
        assert srv.alive()
    finally:
        if flood:
            flood.close()
        assert srv.stop() == 0, srv.log()[-3000:]


def test_serve_full_of_stalled_handshakes_from_many_sources(tmp_path):
    """--max-connections 400 and 1,000 stalled handshakes from 50 sources (20
    each, under every per-source limit), reconnected as they are closed: the
    oldest stalled handshake is closed to let each new connection in, so `ls`
    and `get` from 127.0.0.1 still work (before: refused)."""
    need_nofile(1000 + 256)
    d = str(tmp_path)
    srv = Server(os.path.join(d, "srv"), args=["--handshake-timeout", 3, "--max-connections", 400]).start()
    flood = None
    try:
        src = os.path.join(d, "f.bin")
        digest = make_file(src, 2 * CHUNK + 7, seed=49)
        cid = srv.put_id(src)
        flood = Flood(srv.port, ["127.0.9.%d" % i for i in range(1, 51)], 1000, reconnect=True)
        time.sleep(1)
        assert cid in [x["id"] for x in srv.ls()]
        out = os.path.join(d, "back.bin")
        res = srv.get(cid, out)
        assert res["ok"] and sha256_file(out) == digest
        flood.stop_reconnecting()
        wait_all_closed(flood, 30)
        lines = [l for l in srv.log_lines() if "every slot taken" in l or "refused" in l]
        assert 1 <= len(lines) <= 10, lines[:20]
    finally:
        if flood:
            flood.close()
        assert srv.stop() == 0, srv.log()[-3000:]


def test_serve_memory_returns_after_a_halfopen_flood(tmp_path):
    """2,000 stalled handshakes from 100 sources (20 each: under the per-address
    limit, so all are let in and each costs a TLS session): RSS stays under
    FLOOD_RSS_DURING_KIB above the baseline, `ls` and a `get` still work, the handshake
    timeout drops them all, and RSS falls back to within FLOOD_RSS_AFTER_KIB
    of the baseline. Measured on the build without sanitizers, whose heap is glibc's."""
    if "asan" in FAST_BIN:
        pytest.skip("needs the build without sanitizers (PEERNET_FAST_BIN) for a glibc heap")
    need_nofile(FLOOD_CONNS + 256)
    d = str(tmp_path)
    srv = Server(os.path.join(d, "srv"), bin=FAST_BIN, args=["--handshake-timeout", 3]).start()
    flood = None
    try:
        src = os.path.join(d, "f.bin")
        make_file(src, CHUNK + 1, seed=46)
        cid = srv.put_id(src, bin=FAST_BIN)
        srv.ls(bin=FAST_BIN)
        base = srv.rss_kib()
        sources = ["127.0.7.%d" % i for i in range(1, 101)]
        flood = Flood(srv.port, sources, FLOOD_CONNS)
        during = poll(lambda: srv.rss_kib() if flood.closed_count() == 0 else None, 10,
                      what="the flood to be in place")
        time.sleep(0.5)
        during = max(during, srv.rss_kib())
        assert cid in [x["id"] for x in srv.ls(bin=FAST_BIN)]
        # A normal download during the flood.
        out = os.path.join(d, "during.bin")
        srv.get(cid, out, bin=FAST_BIN)
        assert sha256_file(out) == sha256_file(src)
        assert flood.closed_count() == 0, "the flood ended before the get: the test proves nothing"
        wait_all_closed(flood, 30)
        after = poll(lambda: (lambda r: r if r - base < FLOOD_RSS_AFTER_KIB else None)(srv.rss_kib()), 10,
                     what="RSS to fall back near %d KiB (now %d KiB)" % (base, srv.rss_kib()))
        print("serve RSS: before %d KiB, during %d KiB (%d stalled handshakes from %d sources), after %d KiB" % (
            base, during, FLOOD_CONNS, len(sources), after))
        assert during - base < FLOOD_RSS_DURING_KIB, "RSS grew by %d KiB" % (during - base)
        assert srv.alive()
    finally:
        if flood:
            flood.close()
        assert srv.stop() == 0, srv.log()[-3000:]


@pytest.fixture
def p2pnet(workdir):
    n = Net(workdir)
    yield n
    failures = n.close()
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("nsources", [1, 8])
def test_node_peer_slots_survive_a_halfopen_flood(p2pnet, workdir, nsources):
    """A node whose listening port gets 2,000 stalled handshakes, reconnected as
    they are closed: another node still gets a file from it. From one source
    (127.0.5.5) the per-source limit leaves room; from 8, more than the 96
    inbound slots in all, the oldest stalled handshake is closed for the new
    peer. Before, the first 128 took every peer slot."""
    need_nofile(FLOOD_CONNS + 256)
    d = p2pnet.directory()
    a = p2pnet.node("a", d)
    cap_nofile(a.pid)
    # b gives up when no provider is reachable for 5 s: less than a's 10 s
    # handshake timeout, so b cannot wait for the stalled ones to be cut.
    b = p2pnet.node("b", d, args=["--peer-timeout", 5])
    src = os.path.join(workdir, "shared.bin")
    digest = make_file(src, 4 * CHUNK + 9, seed=47)
    cid = a.add_id(src)
    a.wait_registered()
    b.wait_registered()
    sources = [FLOOD_SOURCE] if nsources == 1 else ["127.0.5.%d" % i for i in range(20, 20 + nsources)]
    flood = Flood(a.port, sources, FLOOD_CONNS, reconnect=True)
    try:
        time.sleep(1)
        out = os.path.join(workdir, "got.bin")
        res = b.get(cid, out, timeout=60)
        assert res["ok"] and sha256_file(out) == digest
        flood.stop_reconnecting()
        wait_all_closed(flood, 40)  # the node's handshake timeout is 10 s
        lines = [l for l in a.log_lines() if ("refused" in l or "every slot taken" in l) and "127.0.5." in l]
        assert 1 <= len(lines) <= 12, lines[:20]
        # Each connection closed to make room is not logged again on its own.
        each = [l for l in a.log_lines() if "limit exceeded" in l]
        assert not each, "%d lines, e.g. %r" % (len(each), each[:3])
    finally:
        flood.close()


def test_node_keeps_slots_for_the_peers_it_dials(p2pnet, workdir):
    """Stalled handshakes from 8 sources (more than a node's 96 inbound slots
    in all), reconnected as they are closed: the node under attack still
    downloads, because the peer it dials takes one of the 32 slots kept for
    outbound peers (before, the flood took all 128)."""
    need_nofile(FLOOD_CONNS + 256)
    d = p2pnet.directory()
    a = p2pnet.node("a", d, args=["--peer-timeout", 5])
    b = p2pnet.node("b", d)
    src = os.path.join(workdir, "offered.bin")
    digest = make_file(src, 4 * CHUNK + 11, seed=48)
    cid = b.add_id(src)
    a.wait_registered()
    b.wait_registered()
    sources = ["127.0.5.%d" % i for i in range(10, 18)]
    flood = Flood(a.port, sources, FLOOD_CONNS, reconnect=True)
    try:
        time.sleep(1)
        out = os.path.join(workdir, "got.bin")
        res = a.get(cid, out, timeout=60)
        assert res["ok"] and sha256_file(out) == digest
        assert [l for l in a.log_lines() if "peers already" in l or "every slot taken" in l], \
            "the full inbound share is logged"
    finally:
        flood.close()


def test_directory_survives_a_halfopen_flood(p2pnet, workdir):
    """A directory under 2,000 stalled handshakes from 127.0.5.5, reconnected as
    they are closed: a node started meanwhile registers."""
    need_nofile(FLOOD_CONNS + 256)
    d = p2pnet.directory()
    cap_nofile(d.pid)
    flood = Flood(d.port, [FLOOD_SOURCE], FLOOD_CONNS, reconnect=True)
    try:
        time.sleep(1)
        n = p2pnet.node("n", d)
        n.wait_registered(timeout=30)
        flood.stop_reconnecting()
        wait_all_closed(flood, 40)
        lines = refusal_lines(d.log_lines())
        assert 1 <= len(lines) <= 10, lines[:20]
    finally:
        flood.close()


# --------------------------------------------------------------- a malformed frame: ERROR(PROTOCOL) first

MALFORMED = {
    "zero_length": b"\x00\x00\x00\x00",
    "unknown_type": frame(b"\x7f" + b"\x00" * 8),
    "oversized": b"\x00\x10\x00\x00\x01" + b"\x00" * 16,   # a HELLO of 1 MiB
}


def expect_protocol_error_then_close(port, cert, key, payload, hello=None):
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    s = client_context(cert, key).wrap_socket(raw, server_hostname=None)
    try:
        s.sendall((frame(hello) if hello else b"") + payload)
        got = read_until_closed(s)
    finally:
        s.close()
    frames = parse_frames(got)
    assert frames, "closed without a word"
    last = frames[-1]
    assert last[0] == 0x02, "the last frame before the close is an ERROR: %r" % [f[:1] for f in frames]
    rid, code = struct.unpack(">IH", last[1:7])
    assert (rid, code) == (0, 1), "ERROR(req_id 0, PROTOCOL), got (%d, %d)" % (rid, code)
    assert all(f[0] == 0x01 for f in frames[:-1]), "only HELLO before it"


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_frame_gets_protocol_error_from_serve(env, case):
    expect_protocol_error_then_close(env.srv.port, env.cert, env.key, MALFORMED[case], hello=HELLO)
    check_serves(env)


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_frame_gets_protocol_error_from_node_and_directory(p2pnet, workdir, case):
    c = make_ed25519_cert(workdir)
    if not c:
        pytest.skip("openssl cannot make an Ed25519 certificate")
    d = p2pnet.directory()
    n = p2pnet.node("n", d)
    node_hello = bytes([0x01, 0x01, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00])  # role node
    expect_protocol_error_then_close(n.port, c[0], c[1], MALFORMED[case], hello=node_hello)
    expect_protocol_error_then_close(d.port, c[0], c[1], MALFORMED[case], hello=node_hello)
    n.wait_registered()  # both still work
