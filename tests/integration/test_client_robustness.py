"""The client against a misbehaving server (a hand-made TLS 1.3 peer): it
never writes an unverified byte, fails with one clear line, and keeps what
was verified for a resume against an honest server."""
import hashlib
import os
import struct

import pytest

import pnwire as w
from conftest import CHUNK, assert_one_error_line, cid_str, error_lines, make_file, run, sha256_file, \
    state_chunks_done


@pytest.fixture
def content(server, workdir, cert):
    """A 5-chunk file on the real server, its ID, and its hash list as the server sends it."""
    src = os.path.join(workdir, "real.bin")
    digest = make_file(src, 5 * CHUNK - 100, seed=61)
    cid = server.put_id(src)
    hl = w.request(server.port, cert[0], cert[1], w.hash_req(9, cid, 0, 5), w.T_HASHES)
    assert w.req_id(hl) == 9
    with open(src, "rb") as f:
        data = f.read()
    return {"src": src, "digest": digest, "cid": cid, "hashes": hl[53:], "data": data}


def honest_until(content, bad_index=None, corrupt=lambda d: bytes([d[0] ^ 1]) + d[1:]):
    """A handler that answers like the server, except that chunk bad_index is corrupted."""
    cid, data = content["cid"], content["data"]

    def handler(body):
        t = body[0]
        rid = w.req_id(body)
        if t == w.T_META_REQ:
            return [w.frame(w.meta(rid, cid, "fake.bin"))]
        if t == w.T_HASH_REQ:
            first, count = struct.unpack(">II", body[45:53])
            return [w.frame(w.hashes(rid, cid, first, content["hashes"][first * 32:(first + count) * 32]))]
        if t == w.T_CHUNK_REQ:
            index = struct.unpack(">I", body[45:49])[0]
            d = data[index * CHUNK:(index + 1) * CHUNK]
            if index == bad_index:
                d = corrupt(d)
            return [w.frame(w.chunk(rid, cid, index, d))]
        return []
    return handler


def get_from(addr, cid, out, *extra):
    return run(["get", "--server", addr, "--window", "1", "--timeout", "10", cid, "-o", out] + list(extra),
               timeout=60)


def test_fake_server_honest_works(cert, content, workdir):
    """The fake server itself is right: an honest one serves a correct file."""
    out = os.path.join(workdir, "out.bin")
    with w.FakeServer(cert[0], cert[1], honest_until(content)) as fake:
        p = get_from(fake.addr, content["cid"], out)
    assert p.returncode == 0, p.stderr
    assert sha256_file(out) == content["digest"]


def test_bad_chunk_rejected_then_resumed(cert, content, server, workdir):
    out = os.path.join(workdir, "out.bin")
    with w.FakeServer(cert[0], cert[1], honest_until(content, bad_index=2)) as fake:
        p = get_from(fake.addr, content["cid"], out)
    assert p.returncode == 1
    line = assert_one_error_line(p, "get")
    assert "chunk 2" in line and "does not match" in line and "partial" in line, line
    assert not os.path.exists(out)
    # Chunks 0 and 1 were verified and kept; chunk 2 was not written.
    assert state_chunks_done(out + ".pnpart.state", 5) == 2
    with open(out + ".pnpart", "rb") as f:
        f.seek(2 * CHUNK)
        assert f.read(CHUNK) != content["data"][2 * CHUNK:3 * CHUNK]
    res = server.get(content["cid"], out)
    assert res["ok"] and res["bytes_resumed"] == 2 * CHUNK
    assert res["bytes_downloaded"] == len(content["data"]) - 2 * CHUNK
    assert sha256_file(out) == content["digest"]


def test_short_chunk_rejected(cert, content, workdir):
    out = os.path.join(workdir, "out.bin")
    with w.FakeServer(cert[0], cert[1], honest_until(content, bad_index=0, corrupt=lambda d: d[:-1])) as fake:
        p = get_from(fake.addr, content["cid"], out)
    assert p.returncode == 1
    assert_one_error_line(p, "get")
    assert state_chunks_done(out + ".pnpart.state", 5) == 0


def test_hash_list_not_matching_id(cert, content, workdir):
    cid = content["cid"]

    def handler(body):
        if body[0] == w.T_HASH_REQ:
            return [w.frame(w.hashes(w.req_id(body), cid, 0, hashlib.sha256(b"x").digest() * 5))]
        return honest_until(content)(body)
    out = os.path.join(workdir, "out.bin")
    with w.FakeServer(cert[0], cert[1], handler) as fake:
        p = get_from(fake.addr, cid, out)
    assert p.returncode == 1
    line = assert_one_error_line(p, "get")
    assert "hash list" in line, line
    assert not os.path.exists(out)
    assert state_chunks_done(out + ".pnpart.state", 5) == 0


def test_unrequested_chunk(cert, content, workdir):
    cid = content["cid"]
    honest = honest_until(content)

    def handler(body):
        out = honest(body)
        if body[0] == w.T_CHUNK_REQ:
            index = struct.unpack(">I", body[45:49])[0]
            other = (index + 3) % 5
            return [w.frame(w.chunk(w.req_id(body) + 100, cid, other,
                                    content["data"][other * CHUNK:(other + 1) * CHUNK]))]
        return out
    out = os.path.join(workdir, "out.bin")
    with w.FakeServer(cert[0], cert[1], handler) as fake:
        p = get_from(fake.addr, cid, out)
    assert p.returncode == 1
    line = assert_one_error_line(p, "get")
    assert "not asked for" in line, line


def test_wrong_role(cert, content, workdir):
    hello = bytes([0x01, 0x01, 0x01, 0, 0, 0, 0, 0, 0])  # says it is a client
    with w.FakeServer(cert[0], cert[1], honest_until(content), hello=hello) as fake:
        p = get_from(fake.addr, content["cid"], os.path.join(workdir, "out.bin"))
    assert p.returncode == 1
    line = assert_one_error_line(p, "get")
    assert "not a peernet server" in line, line


def test_error_text_is_sanitised(cert, content, workdir):
    evil = b"bad\x1b[31mred\r\nsecond line\x07"

    def handler(body):
        if body[0] == w.T_META_REQ:
            return [w.frame(w.error(w.req_id(body), 5, evil))]
        return []
    with w.FakeServer(cert[0], cert[1], handler) as fake:
        p = get_from(fake.addr, content["cid"], os.path.join(workdir, "out.bin"))
    assert p.returncode == 1
    line = assert_one_error_line(p, "get")
    assert "bad" in line and "second line" in line
    assert not any(c in p.stderr for c in (b"\x1b", b"\r", b"\x07"))


def test_oversized_frame_from_server_one_line(cert, content, workdir):
    def handler(body):
        if body[0] == w.T_META_REQ:
            return [b"\xff\xff\xff\xf0\x15" + b"\x00" * 64]
        return []
    with w.FakeServer(cert[0], cert[1], handler) as fake:
        p = get_from(fake.addr, content["cid"], os.path.join(workdir, "out.bin"))
    assert p.returncode == 1
    assert_one_error_line(p, "get")


def test_oversized_frame_from_server(cert, content, workdir):
    def handler(body):
        if body[0] == w.T_META_REQ:
            return [b"\xff\xff\xff\xf0\x15" + b"\x00" * 64]
        return []
    out = os.path.join(workdir, "out.bin")
    with w.FakeServer(cert[0], cert[1], handler) as fake:
        p = get_from(fake.addr, content["cid"], out)
    assert p.returncode == 1
    last = error_lines(p)[-1]
    assert last.startswith("peernet get: "), last
    assert not os.path.exists(out)
