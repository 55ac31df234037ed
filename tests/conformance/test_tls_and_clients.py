"""The secure channel, and the client side of the reference (`peernet get
--server`, `ls`, `put`) driven by the suite playing the server."""
import json
import os
import shutil
import socket
import ssl
import struct
import subprocess

import pytest

import wire
from conftest import run
from spec import rule
from wire import CHUNK_REQ, E_CORRUPT, E_PROTOCOL, ERROR, HASH_REQ, META_REQ


def _alert(port, identity):
    """Connects with Python's ssl and sends a request; returns the TLS error text."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s = wire.client_context(identity).wrap_socket(raw, server_hostname=None)
        s.sendall(wire.frame(wire.hello(wire.CLIENT)))
        s.settimeout(10)
        s.recv(100)
        return None
    except ssl.SSLError as e:
        return str(e)
    finally:
        raw.close()


@rule("The server side **must** request a client certificate and accept any self-signed one")
def test_the_server_requires_a_certificate_and_takes_any_self_signed_ed25519(serve, ident, tmp_path):
    srv, _ = serve()
    assert "CERTIFICATE_REQUIRED" in (_alert(srv.port, None) or "").upper()
    # A P-256 key matches no algorithm the server allows: no certificate is sent.
    ec_id = wire.Identity(str(tmp_path), "p256", key_type="p256")
    assert "CERTIFICATE_REQUIRED" in (_alert(srv.port, ec_id) or "").upper()
    # Any self-signed Ed25519 certificate, no CA, is taken; its key is the ID.
    c = wire.connect(srv.port, ident)
    assert c.peer_hello.role == wire.SERVER
    assert c.server_id == _server_id(srv)


def _server_id(srv):
    with open(srv.out_path) as f:
        return [l.split()[1] for l in f.read().splitlines() if l.startswith("node-id ")][0]


def test_a_nodejs_tls_server_plays_the_server_for_peernet_ls(tmp_path, ident):
    """Implementing peernet, TLS stacks: Node.js's tls can play the server."""
    node = shutil.which("node") or shutil.which("nodejs")
    if not node:
        pytest.skip("Node.js is not installed")
    p = subprocess.Popen([node, os.path.join(os.path.dirname(__file__), "tls_server.js"), ident.key_path,
                          ident.cert_path], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        first = json.loads(p.stdout.readline())
        assert first["event"] == "listening" and first["id"] == ident.node_id
        r = run(["ls", "--server", "127.0.0.1:%d" % first["port"], "--server-id", first["id"]], timeout=30)
        assert r.returncode == 0, r.stderr
        out, _ = p.communicate(timeout=30)
        events = [json.loads(l) for l in out.decode().splitlines()]
        hs = [e for e in events if e["event"] == "handshake"][0]
        assert hs["alpn"] == "peernet/1" and len(hs["client_id"]) == 64
        assert [e["type"] for e in events if e["event"] == "message"] == [wire.HELLO, wire.LIST_REQ]
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)


@rule("a command **must** exit with a non-zero status and print that reason, word for word")
def test_a_mismatched_server_id_is_reported_as_the_spec_words_it(serve):
    srv, held = serve(files={"a": 1000})
    wrong = "ab" * 32
    r = run(["get", "--server", srv.addr, held["a"][0], "--server-id", wrong, "-o", os.path.join(os.path.dirname(srv.port_file), "out")])
    assert r.returncode != 0
    assert ("peer identity mismatch: expected %s got %s" % (wrong, _server_id(srv))).encode() in r.stderr


def _serve_one_download(ident, data, answer, cid=None, conns=1):
    """The suite as a server of one content: HELLO, META, HASHES as asked;
    answer(conn, msg, index) handles every CHUNK_REQ on the index-th
    connection (False: stop reading it). Returns (TLSServer, cid); the
    server's .seen lists what the client sent."""
    if cid is None:  # one chunk: the root is the chunk's hash
        cid = wire.chunk_hashes(data)[0] + struct.pack(">Q", len(data))
    hashes = wire.chunk_hashes(data)
    seen = []

    def handler(conn, index=0):
        conn.send(wire.hello(wire.SERVER, 7070))
        while True:
            try:
                m = conn.recv(20)
            except wire.Closed:
                return
            seen.append(m)
            if m.type == META_REQ:
                conn.send(wire.meta_msg(wire.META, m.req_id, cid, "x.bin"))
            elif m.type == HASH_REQ:
                conn.send(wire.hashes_msg(m.req_id, cid, 0, hashes))
            elif m.type == CHUNK_REQ:
                if answer(conn, m, index) is False:
                    break
            elif m.type == ERROR:
                break
        try:
            while True:
                seen.append(conn.recv(5))
        except (wire.Closed, TimeoutError):
            pass

    s = wire.TLSServer(ident, handler, conns=conns)
    s.seen = seen
    return s, cid


@rule("the chunk; its length (body length − 49) **must** equal the chunk's length from the cid |")
def test_a_chunk_of_the_wrong_length_is_refused_by_the_client(ident, tmp_path):
    data = b"0123456789" * 100
    s, cid = _serve_one_download(ident, data, lambda c, m, i: c.send(wire.chunk_msg(m.req_id, cid, 0, data[:-1])))
    r = run(["get", "--server", s.addr, wire.cid_printed(cid), "-o", str(tmp_path / "out"),
             "--no-progress", "--timeout", "5"], timeout=60)
    s.result()
    assert r.returncode != 0
    errs = [m for m in s.seen if m.type == ERROR]
    assert errs and (errs[0].req_id, errs[0].code) == (0, E_PROTOCOL), s.seen


def test_a_chunk_that_fails_its_hash_gets_error_corrupt_and_the_close(ident, tmp_path):
    data = b"abcdefghij" * 100
    s, cid = _serve_one_download(ident, data,
                                 lambda c, m, i: c.send(wire.chunk_msg(m.req_id, cid, 0, b"X" * len(data))))
    r = run(["get", "--server", s.addr, wire.cid_printed(cid), "-o", str(tmp_path / "out"),
             "--no-progress", "--timeout", "5"], timeout=60)
    s.result()
    assert r.returncode != 0
    errs = [m for m in s.seen if m.type == ERROR]
    assert errs and (errs[0].req_id, errs[0].code) == (0, E_CORRUPT), s.seen


@rule("human-readable, UTF-8; a receiver **must not** trust it to be printable |")
def test_an_error_text_with_control_characters_is_printed_harmlessly(ident, tmp_path):
    data = b"k" * 100
    evil = "no\x1b[31mred\x07\r\nFAKE LINE"
    s, cid = _serve_one_download(ident, data,
                                 lambda c, m, i: c.send(wire.error_msg(m.req_id, wire.E_INTERNAL, evil)))
    r = run(["get", "--server", s.addr, wire.cid_printed(cid), "-o", str(tmp_path / "out"),
             "--no-progress", "--timeout", "5"], timeout=60)
    s.result()
    assert r.returncode != 0
    assert b"\x1b" not in r.stderr and b"\x07" not in r.stderr and b"\r" not in r.stderr
    assert not any(l.startswith(b"FAKE LINE") for l in r.stderr.splitlines())


@rule("**must** reject a string that is not exactly 67 characters")
@pytest.mark.parametrize("text", ["pn1" + "a" * 63, "pn1" + "a" * 65, "pn1" + "0" * 64, "xx1" + "a" * 64,
                                  "pn1777777777777777777777777777777777777777777777777777qaaaacaaaaaab"],
                         ids=["66 chars", "68 chars", "digit 0", "wrong prefix", "size above 64 GiB"])
def test_a_bad_printed_content_id_is_refused(text):
    r = run(["get", "--server", "127.0.0.1:9", text])
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert len(r.stderr.splitlines()) == 1 and b"content ID" in r.stderr, r.stderr


@rule("a peer **must** treat either as the end of the connection and of the requests open on it")
def test_a_client_told_busy_and_closed_asks_again_on_a_new_connection(ident, tmp_path):
    data = bytes(range(256)) * 2000  # two chunks
    # The root of a two-chunk file comes from the hash tree (Hash tree): the
    # suite takes the content ID from the reference instead of deriving it.
    src = tmp_path / "two.bin"
    src.write_bytes(data)
    printed = _cid_from_put(tmp_path, src)
    cid = wire.cid_wire(printed)
    asked = [[], []]

    def answer(conn, m, index):
        asked[index].append(m.index)
        if index == 0:  # stopping: ERROR(0, BUSY), then the close
            conn.send(wire.error_msg(0, wire.E_BUSY, "the server is stopping"))
            return False  # sends nothing more; the connection ends
        conn.send(wire.chunk_msg(m.req_id, cid, m.index, data[m.index * 262144:(m.index + 1) * 262144]))

    s, _ = _serve_one_download(ident, data, answer, cid=cid, conns=2)
    out = tmp_path / "out.bin"
    r = run(["get", "--server", s.addr, printed, "-o", str(out), "--no-progress", "--timeout", "20"], timeout=60)
    s.result()
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == data
    assert sorted(asked[1]) == [0, 1], asked  # asked again on the new connection


def _cid_from_put(tmp_path, path):
    """The printed content ID of a file, from a throw-away `peernet serve`."""
    from conftest import Proc
    p = Proc(str(tmp_path / "idsrv"), "serve", ["serve", "--listen", "127.0.0.1:0", "--data",
                                                 str(tmp_path / "idsrv" / "data")])
    try:
        r = run(["put", "--server", p.addr, "--no-progress", str(path)])
        assert r.returncode == 0, r.stderr
        return r.stdout.decode().split()[0]
    finally:
        p.stop()


def test_pythons_ssl_cannot_play_the_server(ident):
    """Implementing peernet, TLS stacks: Python's ssl requests a client
    certificate only to validate it against a CA, so it refuses the
    self-signed certificate every peernet client presents."""
    import threading
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(ident.cert_path, ident.key_path)
    ctx.set_alpn_protocols(["peernet/1"])
    ctx.verify_mode = ssl.CERT_OPTIONAL  # CERT_NONE would not ask for one at all
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(1)
    lst.settimeout(20)
    result = []

    def accept():
        try:
            c, _ = lst.accept()
            c.settimeout(20)
            with ctx.wrap_socket(c, server_side=True):
                result.append("handshake completed")
        except (ssl.SSLError, OSError) as e:
            result.append(str(e))

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    r = run(["ls", "--server", "127.0.0.1:%d" % lst.getsockname()[1]], timeout=30)
    t.join(25)
    lst.close()
    assert r.returncode != 0
    assert result and "CERTIFICATE_VERIFY_FAILED" in result[0], result
