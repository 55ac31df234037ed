"""What the wire shows (nothing in the clear) and server pinning with --server-id."""
import os

import pytest

from conftest import CHUNK, assert_one_error_line, dir_files, error_lines, make_file, run, sha256_file
from tcpproxy import TcpProxy

MARKER = b"PEERNET-PLAINTEXT-MARKER-"
SECRET_NAME = "quarterly-secret-report-zq7x.bin"


def test_plaintext_never_on_the_wire(server, workdir):
    src = os.path.join(workdir, SECRET_NAME)
    size = 2 * 1024 * 1024 + 12345
    digest = make_file(src, size, pattern=MARKER)
    with open(src, "rb") as f:
        assert f.read(len(MARKER) * 4) == MARKER * 4
    out = os.path.join(workdir, "back.bin")
    with TcpProxy(server.port, record=True) as proxy:
        put = run(["put", "--server", proxy.addr, "--json", src], check=0)
        import json
        cid = json.loads(put.stdout)[0]["id"]
        run(["ls", "--server", proxy.addr], check=0)
        res = json.loads(run(["get", "--server", proxy.addr, "--json", cid, "-o", out], check=0).stdout)
        up, down = bytes(proxy.up), bytes(proxy.down)
    assert res["ok"] and sha256_file(out) == digest
    # Both directions carried the whole file once (upload and download).
    assert len(up) > size and len(down) > size
    # TLS 1.3 record header (application data, legacy version 0x0303) leads each direction's records.
    assert up[:3] == b"\x16\x03\x01" or up[:3] == b"\x16\x03\x03"  # ClientHello
    for direction, data in (("client->server", up), ("server->client", down)):
        assert MARKER not in data, "plaintext marker seen %s" % direction
        assert MARKER[:12] not in data, "part of the marker seen %s" % direction
        assert SECRET_NAME.encode() not in data, "file name seen %s" % direction
        assert b"quarterly-secret" not in data, "part of the file name seen %s" % direction
        assert b"peernet/1" not in data or direction == "client->server"  # ALPN is in the clear, nothing else
        assert cid.encode() not in data


def test_server_id_right(server, workdir):
    src = os.path.join(workdir, "pinned.bin")
    digest = make_file(src, CHUNK + 9, seed=31)
    p = run(["put", "--server", server.addr, "--server-id", server.node_id, "--json", src], check=0)
    import json
    cid = json.loads(p.stdout)[0]["id"]
    out = os.path.join(workdir, "out.bin")
    res = server.get(cid, out, "--server-id", server.node_id)
    assert res["ok"] and sha256_file(out) == digest
    run(["ls", "--server", server.addr, "--server-id", server.node_id.upper()], check=0)


def wrong_id(server):
    return "%064x" % (int(server.node_id, 16) ^ 1)


def put_one(server, workdir):
    src = os.path.join(workdir, "pinned.bin")
    make_file(src, CHUNK + 9, seed=32)
    return server.put_id(src)


def test_server_id_wrong_refused(server, workdir):
    cid = put_one(server, workdir)
    out = os.path.join(workdir, "out.bin")
    p = run(["get", "--server", server.addr, "--server-id", wrong_id(server), cid, "-o", out])
    assert p.returncode == 1
    last = error_lines(p)[-1]
    assert last.startswith("peernet get: ") and "server-id" in last and "mismatch" in last, last
    # The reason docs/PROTOCOL.md gives, word for word, with both IDs.
    assert "peer identity mismatch: expected %s got %s" % (wrong_id(server).lower(), server.node_id.lower()) \
        in last.lower(), last
    assert not os.path.exists(out)

    # put and ls refuse too, and nothing reaches the server.
    before = dir_files(server.data_dir)
    other = os.path.join(workdir, "other.bin")
    make_file(other, 1000, seed=33)
    p = run(["put", "--server", server.addr, "--server-id", wrong_id(server), other])
    assert p.returncode == 1 and b"mismatch" in p.stderr and p.stdout == b""
    p = run(["ls", "--server", server.addr, "--server-id", wrong_id(server)])
    assert p.returncode == 1 and b"mismatch" in p.stderr
    assert dir_files(server.data_dir) == before


def test_server_id_wrong_one_error_line(server, workdir):
    cid = put_one(server, workdir)
    p = run(["get", "--server", server.addr, "--server-id", wrong_id(server), cid, "-o",
             os.path.join(workdir, "out.bin")])
    assert p.returncode == 1
    assert_one_error_line(p, "get")


def test_server_id_wrong_writes_nothing(server, workdir):
    cid = put_one(server, workdir)
    out = os.path.join(workdir, "out.bin")
    p = run(["get", "--server", server.addr, "--server-id", wrong_id(server), cid, "-o", out])
    assert p.returncode == 1
    assert not os.path.exists(out)
    assert sorted(f for f in os.listdir(workdir) if f.startswith("out.bin")) == []


def test_node_id_is_sha256_of_presented_key(server, workdir):
    """The server presents an Ed25519 certificate over TLS 1.3 with ALPN
    peernet/1, and the node ID it prints is the SHA-256 of that public key."""
    import hashlib
    import socket
    import pnwire as w
    c = w.make_ed25519_cert(workdir)
    if c is None:
        pytest.skip("openssl cannot make an Ed25519 certificate")
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    s = w.client_context(*c).wrap_socket(raw, server_hostname=None)
    try:
        assert s.version() == "TLSv1.3"
        assert s.selected_alpn_protocol() == "peernet/1"
        der = s.getpeercert(binary_form=True)
    finally:
        s.close()
    spki_prefix = bytes.fromhex("302a300506032b6570032100")  # SubjectPublicKeyInfo of an Ed25519 key
    i = der.find(spki_prefix)
    assert i >= 0, "server certificate key is not Ed25519"
    pub = der[i + len(spki_prefix):i + len(spki_prefix) + 32]
    assert hashlib.sha256(pub).hexdigest() == server.node_id


def _victim(workdir):
    path = os.path.join(workdir, "victim.txt")
    with open(path, "wb") as f:
        f.write(b"keep me\n")
    return path, os.stat(path).st_mtime_ns


def test_get_never_writes_through_a_planted_symlink(server, workdir):
    """Another local user who can write the target directory plants symbolic
    links where get writes; get never follows one: the link's target keeps its
    bytes and its mtime. At PATH.pnpart or PATH.pnpart.state get fails with one
    line saying so; the temporary state file and PATH itself are replaced (the
    link, not its target)."""
    src = os.path.join(workdir, "s.bin")
    digest = make_file(src, 3 * CHUNK + 11, seed=71)
    cid = server.put_id(src)
    out = os.path.join(workdir, "s.out")
    for planted in (out + ".pnpart", out + ".pnpart.state"):
        victim, mtime = _victim(workdir)
        os.symlink(victim, planted)
        p = run(["get", "--server", server.addr, cid, "-o", out])
        assert p.returncode == 1, p.stderr
        line = assert_one_error_line(p, "get")
        assert "symbolic link" in line, line
        with open(victim, "rb") as f:
            assert f.read() == b"keep me\n"
        assert os.stat(victim).st_mtime_ns == mtime and os.path.islink(planted)
        assert not os.path.exists(out)
        os.unlink(planted)
        os.unlink(victim)
    for planted, extra in ((out + ".pnpart.state.tmp", []), (out, ["--force"])):
        victim, mtime = _victim(workdir)
        os.symlink(victim, planted)
        p = run(["get", "--server", server.addr, cid, "-o", out] + extra)
        assert p.returncode == 0, p.stderr
        with open(victim, "rb") as f:
            assert f.read() == b"keep me\n"
        assert os.stat(victim).st_mtime_ns == mtime
        assert not os.path.islink(out) and sha256_file(out) == digest
        os.unlink(out)
        os.unlink(victim)
        if os.path.lexists(planted):
            os.unlink(planted)
