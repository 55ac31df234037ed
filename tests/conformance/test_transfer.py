"""Downloads, listing and uploads against `peernet serve`; BITFIELD against
`peernet node`."""
import os
import struct
import time

import pytest

import wire
from conftest import run
from spec import rule
from wire import (BITFIELD, CHUNK, CHUNK_REQ, E_BUSY, E_CORRUPT, E_NOT_FOUND, E_PROTOCOL, ERROR, LIST,
                  META, META_REQ, PUT_BEGIN, PUT_DONE, PUT_END, PUT_STATUS, connect, ref)


def bits_ok(bitmap, n):
    """Unused low bits of the last byte are 0."""
    if n % 8 == 0:
        return len(bitmap) == n // 8
    return len(bitmap) == (n + 7) // 8 and bitmap[-1] & (0xFF >> (n % 8)) == 0


@rule("A server **must** drop a cancelled request whose CHUNK it has not yet handed to the connection")
def test_cancel_withdraws_requests_not_yet_sent(serve, ident):
    srv, held = serve("--up-rate", "512K", files={"big": 20 * 262144})
    cid = wire.cid_wire(held["big"][0])
    c = connect(srv.port, ident)
    c.send(*[ref(CHUNK_REQ, 1 + i, cid, i) for i in range(20)])
    c.send(*[wire.ref(wire.CANCEL, 11 + i, cid, 10 + i) for i in range(10)])
    got = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            m = c.recv(3)
        except TimeoutError:
            break
        if m.type == CHUNK:
            got.append(m.index)
    # The connection takes at most 512 KiB (two chunks) ahead of the cap.
    assert set(range(10)) <= set(got), got
    assert len([i for i in got if i >= 10]) <= 2, got


@rule("A client **must** send as `cursor` only 0 or a `next_cursor` this server gave it.",
      "A server that receives a cursor it cannot have given **must** answer ERROR(r, NOT_FOUND)")
def test_a_made_up_cursor_gets_not_found_and_the_connection_stays(serve, ident):
    srv, held = serve(files={"a": 1000, "b": 2000})
    c = connect(srv.port, ident)
    c.send(wire.list_req(5, 0))
    first = c.recv_type(LIST)
    assert first.next_cursor == 0 and first.count == 2
    c.send(wire.list_req(6, 1000))
    m = c.recv_type(ERROR)
    assert (m.req_id, m.code) == (6, E_NOT_FOUND)
    assert c.expect_open(wire.cid_wire(held["a"][0])).name == "a"


def _page_all(c, first_rid, pause=None):
    seen, cursor, rid = [], 0, first_rid
    while True:
        c.send(wire.list_req(rid, cursor))
        m = c.recv_type(LIST, timeout=20)
        seen += [name for _, name in m.entries]
        if pause and cursor == 0:
            pause()
        if m.next_cursor == 0:
            return seen
        cursor, rid = m.next_cursor, rid + 1


@rule("Paging while content arrives: a server **must** list, over the pages from cursor 0 to the last")
def test_paging_while_uploads_arrive_lists_each_object_once(serve, ident, tmp_path):
    files = {"f%03d" % i: 10 + i for i in range(300)}  # more than one page of 256
    srv, held = serve(files=files)
    c = connect(srv.port, ident)
    late = []

    def upload_more():
        for i in range(3):
            p = os.path.join(str(tmp_path), "late%d" % i)
            with open(p, "wb") as f:
                f.write(b"late %d" % i)
            assert run(["put", "--server", srv.addr, "--no-progress", p]).returncode == 0
            late.append("late%d" % i)

    seen = _page_all(c, 1, pause=upload_more)
    assert sorted(n for n in seen if n.startswith("f")) == sorted(files)
    assert len(seen) == len(set(seen)), "an object listed twice"
    assert set(seen) - set(files) <= set(late)


@rule("A sender **must not** send an empty name.")
def test_a_nameless_object_goes_by_its_printed_content_id(serve, ident, procs):
    srv, held = serve(files={"a": 1000})
    printed = held["a"][0]
    srv.stop()
    # Make the object nameless on disk, as an older version or a hand could.
    meta = os.path.join(os.path.dirname(srv.port_file), "data", "objects", printed + ".meta")
    _drop_name(meta)
    srv2, _ = serve_again(srv, procs)
    c = connect(srv2.port, ident)
    c.send(wire.list_req(1, 0))
    m = c.recv_type(LIST)
    assert [n for _, n in m.entries] == [printed]
    c.send(ref(META_REQ, 2, wire.cid_wire(printed)))
    assert c.recv_type(META).name == printed


def serve_again(old, procs):
    from conftest import Proc
    work = os.path.dirname(old.port_file)
    os.unlink(old.port_file)
    p = Proc(work, "serve", old.argv[1:-2])
    procs.append(p)
    return p, None


def _drop_name(meta_path):
    """Rewrites a .meta file with an empty name (docs/PROTOCOL.md, .meta file)."""
    with open(meta_path, "rb") as f:
        data = f.read()
    assert data[:8] == b"PNMETA01", data[:8]
    n = struct.unpack(">H", data[48:50])[0]
    with open(meta_path, "wb") as f:
        f.write(data[:48] + b"\x00\x00" + data[50 + n:])


@rule("A `name` field (META, PUT_BEGIN, LIST entries) **must** be:")
@pytest.mark.parametrize("name", ["a/b", "..", "x\u202etxt.exe", "tab\there", ""],
                         ids=["slash", "dotdot", "bidi-override", "control", "empty"])
def test_an_upload_with_a_bad_name_is_malformed(serve, ident, name):
    srv, _ = serve()
    data = b"hello"
    cid = _cid_of(data)
    c = connect(srv.port, ident)
    c.send(wire.meta_msg(PUT_BEGIN, 1, cid, name.encode()))
    c.expect_error_and_close(E_PROTOCOL)


def _cid_of(data):
    hs = wire.chunk_hashes(data)
    assert len(hs) == 1, "the suite builds one-chunk contents only"
    return hs[0] + struct.pack(">Q", len(data))


def _begin(c, rid, data, name="up.bin"):
    cid = _cid_of(data)
    c.send(wire.meta_msg(PUT_BEGIN, rid, cid, name))
    st = c.recv_type(PUT_STATUS)
    assert st.req_id == rid
    return cid, st


@rule("bits 1–7 **must** be 0 |", "| 46 | 4 | nchunks | **must** equal chunks(cid) in a PUT_STATUS |",
      "Unused low bits of the last byte of a PUT_STATUS bitmap **must** be 0")
def test_put_status_flags_count_and_bitmap(serve, ident):
    srv, held = serve(files={"ten": 9 * 262144 + 5})
    c = connect(srv.port, ident)
    cid = wire.cid_wire(held["ten"][0])
    c.send(wire.meta_msg(PUT_BEGIN, 1, cid, "ten"))
    st = c.recv_type(PUT_STATUS)
    assert st.flags & 0xFE == 0 and st.flags & 1
    assert st.nchunks == 10 == wire.nchunks(cid)
    assert bits_ok(st.bitmap, 10) and st.bitmap == b"\xff\xc0"


@rule("One upload at a time per connection: a client **must not** send PUT_BEGIN while an upload",
      "A server that receives one **must** answer ERROR(0, PROTOCOL) and close the connection.")
def test_a_second_put_begin_on_one_connection_is_refused(serve, ident):
    srv, _ = serve()
    c = connect(srv.port, ident)
    _begin(c, 1, b"first upload")
    c.send(wire.meta_msg(PUT_BEGIN, 2, _cid_of(b"second upload"), "second"))
    c.expect_error_and_close(E_PROTOCOL)


@rule("HASHES, CHUNK and PUT_END of an upload **must** carry the `req_id` and `cid` of its PUT_BEGIN.",
      "A server that receives one that belongs to no upload on that connection")
@pytest.mark.parametrize("case", ["no PUT_BEGIN", "other req_id", "other cid"])
def test_upload_frames_of_no_upload_are_refused(serve, ident, case):
    srv, _ = serve()
    c = connect(srv.port, ident)
    data = b"some bytes"
    cid = _cid_of(data)
    if case != "no PUT_BEGIN":
        cid, st = _begin(c, 1, data)
    rid = 2 if case == "other req_id" else 1
    if case == "other cid":
        cid = _cid_of(b"other bytes")
    c.send(wire.hashes_msg(rid, cid, 0, wire.chunk_hashes(data if case != "other cid" else b"other bytes")))
    c.expect_error_and_close(E_PROTOCOL)


@rule("A server that ends an upload with an ERROR (CORRUPT, INTERNAL, BUSY, LIMIT) keeps the connection")
def test_a_corrupt_chunk_ends_the_upload_not_the_connection(serve, ident):
    srv, held = serve(files={"a": 1000})
    c = connect(srv.port, ident)
    data = b"x" * 5000
    cid, st = _begin(c, 7, data)
    c.send(wire.hashes_msg(7, cid, 0, wire.chunk_hashes(data)))
    c.send(wire.chunk_msg(7, cid, 0, b"y" * 5000))       # does not match its hash
    c.send(wire.chunk_msg(7, cid, 0, data), ref(PUT_END, 7, cid))  # crossed the ERROR: ignored
    m = c.recv_type(ERROR)
    assert (m.req_id, m.code) == (7, E_CORRUPT)
    assert c.expect_open(wire.cid_wire(held["a"][0])).name == "a"
    # A fresh upload of the same content on the same connection works.
    cid, st = _begin(c, 8, data)
    c.send(wire.hashes_msg(8, cid, 0, wire.chunk_hashes(data)), wire.chunk_msg(8, cid, 0, data),
           ref(PUT_END, 8, cid))
    assert c.recv_type(PUT_DONE).req_id == 8


@rule("A client **must not** send a CHUNK before the whole hash list",
      "A server that receives either **must** answer ERROR(0, PROTOCOL) and close the connection")
@pytest.mark.parametrize("case", ["CHUNK before HASHES", "PUT_END before CHUNK"])
def test_chunk_before_hashes_and_end_before_chunks_are_refused(serve, ident, case):
    srv, _ = serve()
    c = connect(srv.port, ident)
    data = b"z" * 3000
    cid, st = _begin(c, 3, data)
    if case == "CHUNK before HASHES":
        c.send(wire.chunk_msg(3, cid, 0, data))
    else:
        c.send(wire.hashes_msg(3, cid, 0, wire.chunk_hashes(data)), ref(PUT_END, 3, cid))
    c.expect_error_and_close(E_PROTOCOL)


@rule("A CHUNK for a chunk the server already holds verified (its bit was 1, or a resend) is not an error")
def test_a_chunk_sent_twice_is_ignored(serve, ident):
    srv, _ = serve()
    c = connect(srv.port, ident)
    data = b"q" * 4000
    cid, st = _begin(c, 4, data)
    c.send(wire.hashes_msg(4, cid, 0, wire.chunk_hashes(data)), wire.chunk_msg(4, cid, 0, data),
           wire.chunk_msg(4, cid, 0, data), ref(PUT_END, 4, cid))
    assert c.recv_type(PUT_DONE).req_id == 4


@rule("While one client's upload of a `cid` is open, a server **must** answer another client's PUT_BEGIN",
      "a server **must not** rename content it holds because a PUT_BEGIN gives another name")
def test_a_second_uploader_of_the_same_content_gets_busy(serve, ident):
    srv, _ = serve()
    data = b"w" * 6000
    a = connect(srv.port, ident)
    cid, st = _begin(a, 1, data)
    b = connect(srv.port, ident)
    b.send(wire.meta_msg(PUT_BEGIN, 9, cid, "again"))
    m = b.recv_type(ERROR)
    assert (m.req_id, m.code) == (9, E_BUSY)
    # The first finishes; then the content is there for everyone.
    a.send(wire.hashes_msg(1, cid, 0, wire.chunk_hashes(data)), wire.chunk_msg(1, cid, 0, data),
           ref(PUT_END, 1, cid))
    assert a.recv_type(PUT_DONE).req_id == 1
    b.send(wire.meta_msg(PUT_BEGIN, 10, cid, "again"))
    st = b.recv_type(PUT_STATUS)
    assert st.flags & 1 and st.bitmap == b"\x80"
    b.send(ref(PUT_END, 10, cid))
    assert b.recv_type(PUT_DONE).req_id == 10
    b.send(ref(META_REQ, 11, cid))
    assert b.recv_type(META).name == "up.bin"  # the first name stays


@rule("| 41 | 4 | nchunks | **must** equal chunks(cid) in a BITFIELD |",
      "unused low bits of the last byte of a BITFIELD bitmap **must** be 0")
def test_a_nodes_bitfield_count_and_bitmap(swarm, ident):
    node, held = swarm(files={"ten": 9 * 262144 + 5})
    cid = wire.cid_wire(held["ten"][0])
    c = connect(node.port, ident, role=wire.NODE)
    c.send(wire.cidref(wire.INTERESTED, cid))
    m = c.recv_type(BITFIELD, skip=(wire.PING, wire.PONG, wire.HAVE, wire.INTERESTED))
    assert m.cid == cid and m.nchunks == 10 == wire.nchunks(cid)
    assert bits_ok(m.bitmap, 10)


@rule("a server **must** let any client continue it, whoever began it")
def test_another_client_continues_a_partial_upload(serve, tmp_path):
    srv, _ = serve()
    data = bytes(range(256)) * 1024 + b"tail"  # two chunks
    src = tmp_path / "two.bin"
    src.write_bytes(data)
    from test_tls_and_clients import _cid_from_put
    cid = wire.cid_wire(_cid_from_put(tmp_path, src))
    hs = wire.chunk_hashes(data)
    first = connect(srv.port, wire.Identity(str(tmp_path), "first"))
    first.send(wire.meta_msg(PUT_BEGIN, 1, cid, "two.bin"))
    assert first.recv_type(PUT_STATUS).bitmap == b"\x00"
    first.send(wire.hashes_msg(1, cid, 0, hs), wire.chunk_msg(1, cid, 0, data[:262144]))
    first.send(ref(META_REQ, 2, cid))  # answered only once the server has read what came before
    assert first.recv_type(ERROR).code == E_NOT_FOUND
    first.close()
    second = connect(srv.port, wire.Identity(str(tmp_path), "second"))
    deadline = time.monotonic() + 10
    while True:  # the first connection's upload is released when the server sees it closed
        second.send(wire.meta_msg(PUT_BEGIN, 5, cid, "two.bin"))
        m = second.recv()
        if m.type == PUT_STATUS or time.monotonic() > deadline:
            break
        assert (m.type, m.code) == (ERROR, E_BUSY), m
        time.sleep(0.1)
    assert m.type == PUT_STATUS and m.flags & 1 and m.bitmap == b"\x80", m
    second.send(wire.chunk_msg(5, cid, 1, data[262144:]), ref(PUT_END, 5, cid))
    assert second.recv_type(PUT_DONE).req_id == 5


@rule("A side that accepts connections **must** send the port it listens on as `listen_port`")
def test_hello_gives_the_listening_port(serve, swarm, ident):
    srv, _ = serve()
    node, _ = swarm()
    for p in (srv, node):
        c = connect(p.port, ident)
        assert c.peer_hello.listen_port == p.port
