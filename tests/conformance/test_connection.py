"""Connection, framing, requests, errors and keepalive, checked against
`peernet serve` (and `peernet node` where the rule names nodes)."""
import struct
import time

import pytest

import wire
from conftest import run
from spec import rule
from wire import (CLIENT, ERROR, E_LIMIT, E_NOT_FOUND, E_PROTOCOL, META_REQ, CHUNK, CHUNK_REQ,
                  PING, PONG, connect, frame, ref)


def test_every_case_names_a_requirement_and_every_requirement_has_a_case():
    import spec
    reqs = spec.requirements()
    assert reqs, "no requirement found in docs/PROTOCOL.md"
    quotes = spec.cited_quotes()
    bad = []
    covered = set()
    for path, name, q in quotes:
        m = spec.matches(q, reqs)
        if len(m) != 1:
            bad.append("%s::%s quotes %r, which is in %d requirement sentences" % (path, name, q, len(m)))
        for r in m:
            covered.add(r)
    missing = ["docs/PROTOCOL.md:%d: %s" % r for r in reqs if r not in covered]
    assert not bad and not missing, "\n".join(bad + ["no case for: " + m for m in missing])


@rule("A side **must not** send anything else before HELLO, and a receiver that gets any other type first")
def test_a_message_before_hello_gets_error_protocol_and_the_close(serve, ident):
    srv, held = serve(files={"a": 1000})
    c = connect(srv.port, ident, send_hello=False)
    c.send(ref(META_REQ, 1, wire.cid_wire(held["a"][0])))
    first = c.recv()
    assert first.type == wire.HELLO  # its own HELLO goes out first, unasked
    c.expect_error_and_close(E_PROTOCOL)


@rule("A body **must** be exactly as long as its type's layout says")
def test_a_body_with_a_byte_left_over_is_malformed(serve, ident):
    srv, held = serve(files={"a": 1000})
    c = connect(srv.port, ident)
    c.send(ref(META_REQ, 1, wire.cid_wire(held["a"][0])) + b"\x00")
    c.expect_error_and_close(E_PROTOCOL)


@rule("A requester **must not** send a request with `req_id` 0.",
      "A server or node that receives one **must** answer ERROR(0, PROTOCOL) and close the connection.")
@pytest.mark.parametrize("kind", ["META_REQ", "HASH_REQ", "CHUNK_REQ", "LIST_REQ"])
def test_a_request_with_req_id_0_is_refused(serve, ident, kind):
    srv, held = serve(files={"a": 1000})
    cid = wire.cid_wire(held["a"][0])
    c = connect(srv.port, ident)
    c.send({"META_REQ": ref(META_REQ, 0, cid), "HASH_REQ": wire.hash_req(0, cid, 0, 1),
            "CHUNK_REQ": ref(CHUNK_REQ, 0, cid, 0), "LIST_REQ": wire.list_req(0, 0)}[kind])
    c.expect_error_and_close(E_PROTOCOL)


@rule("A requester **must not** reuse the `req_id` of one of its requests still open on that connection.",
      "A server or node that receives a CHUNK_REQ whose `req_id` is that of a chunk request it still holds queued")
def test_a_chunk_request_reusing_a_queued_req_id_is_refused(serve, ident):
    # A capped uplink keeps the requests queued: 64 KiB/s, four 256 KiB chunks.
    srv, held = serve("--up-rate", "64K", files={"four": 4 * 262144})
    cid = wire.cid_wire(held["four"][0])
    c = connect(srv.port, ident)
    c.send(ref(CHUNK_REQ, 10, cid, 0), ref(CHUNK_REQ, 11, cid, 1), ref(CHUNK_REQ, 12, cid, 2),
           ref(CHUNK_REQ, 12, cid, 3))
    c.expect_error_and_close(E_PROTOCOL)


@rule("A requester **must not** have more chunk requests open on one connection than the queue of its peer holds",
      "A server or node that receives a chunk request while that many are queued for the connection")
def test_a_chunk_request_beyond_256_queued_gets_error_limit(serve, ident):
    srv, held = serve("--up-rate", "64K", files={"four": 4 * 262144})
    cid = wire.cid_wire(held["four"][0])
    c = connect(srv.port, ident)
    c.send(*[ref(CHUNK_REQ, 100 + i, cid, i % 4) for i in range(300)])
    c.expect_error_and_close(E_LIMIT)


def test_256_chunk_requests_queued_are_all_served(serve, ident):
    """The bound is not below what it says: 256 requests queued at once behind
    a capped uplink are all answered."""
    srv, held = serve("--up-rate", "256K", files={"small": 1000})
    cid = wire.cid_wire(held["small"][0])
    c = connect(srv.port, ident)
    c.send(*[ref(CHUNK_REQ, 1 + i, cid, 0) for i in range(256)])
    got = set()
    while len(got) < 256:
        m = c.recv_type(CHUNK, timeout=20)
        assert m.data == held["small"][1]
        got.add(m.req_id)
    assert got == set(range(1, 257))


@rule("A side **must not** close the connection in answer to an ERROR with a non-zero `req_id`")
def test_an_error_about_a_request_leaves_the_connection_open(serve, ident):
    srv, held = serve(files={"a": 1000})
    cid = wire.cid_wire(held["a"][0])
    c = connect(srv.port, ident)
    # An ERROR of ours about a request it never made, and one it answers about ours.
    c.send(wire.error_msg(77, wire.E_INTERNAL, "a request of yours failed"))
    c.send(ref(META_REQ, 2, bytes(32) + struct.pack(">Q", 5)))
    m = c.recv_type(ERROR)
    assert (m.req_id, m.code) == (2, E_NOT_FOUND)
    assert c.expect_open(cid).name == "a"


@rule("A receiver that gets ERROR(0, …) **must** treat the connection as closed by its peer")
def test_after_error_0_the_server_sends_nothing_more(serve, ident):
    srv, held = serve(files={"a": 1000})
    cid = wire.cid_wire(held["a"][0])
    c = connect(srv.port, ident)
    c.send(wire.error_msg(0, E_PROTOCOL, "the suite ends this connection"), ref(META_REQ, 3, cid))
    with pytest.raises(wire.Closed):
        m = c.recv(5)
        raise AssertionError("the server answered after our ERROR(0): %r" % m)


@rule("A side that closes a connection after its HELLO because of what the peer sent or failed to send")
def test_every_close_caused_by_the_client_is_explained(serve, ident):
    srv, held = serve("--up-rate", "64K", files={"four": 4 * 262144})
    cid = wire.cid_wire(held["four"][0])
    offences = [
        (b"\x00\x00\x00\x00", E_PROTOCOL),                              # zero-length frame
        (frame(b"\x7f"), E_PROTOCOL),                                   # unknown type
        (struct.pack(">I", 100000) + bytes([META_REQ]), E_PROTOCOL),    # too large for its type
        (frame(wire.hello(CLIENT)), E_PROTOCOL),                        # a second HELLO
        (b"".join(frame(ref(CHUNK_REQ, 1 + i, cid, i % 4)) for i in range(300)), E_LIMIT),
    ]
    for raw, code in offences:
        c = connect(srv.port, ident)
        c.send_raw(raw)
        c.expect_error_and_close(code)


@rule("A side **must** answer every PING with a PONG carrying the same nonce")
def test_ping_is_answered_with_the_same_nonce(serve, swarm, ident):
    srv, _ = serve()
    node, _ = swarm()
    for port in (srv.port, node.port):
        c = connect(port, ident)
        c.send(wire.ping(0x0102030405060708))
        m = c.recv_type(PONG, skip=())
        assert m.nonce == 0x0102030405060708


@rule("A PONG needs no matching PING; a receiver **must** accept an unsolicited PONG and ignore it.")
def test_an_unsolicited_pong_is_ignored(serve, ident):
    srv, held = serve(files={"a": 1000})
    c = connect(srv.port, ident)
    c.send(wire.pong(42))
    assert c.expect_open(wire.cid_wire(held["a"][0])).name == "a"


@rule("The idle timeout **must** be at least four times the PING interval the side itself uses",
      "Before closing for idleness it **must** send ERROR(0, LIMIT, text)")
def test_a_silent_client_is_pinged_then_told_before_the_idle_close(serve, ident):
    srv, _ = serve("--idle-timeout", "4")
    c = connect(srv.port, ident)
    t0 = time.monotonic()
    first = c.recv(10)
    assert first.type == PING, first
    pinged = time.monotonic() - t0
    # A quarter of the idle timeout (1 s), checked about once a second: it
    # comes well before the idle timeout (wide margins for a busy machine).
    assert pinged < 3.5, "the first PING came %.1f s after the last frame" % pinged
    # Not answering it: the server gives up at the idle timeout, and says why.
    err = c.expect_error_and_close(E_LIMIT, timeout=10)
    assert "idle" in err.text
    assert time.monotonic() - t0 >= 4 - 0.5


def test_a_client_that_answers_pings_is_not_idle(serve, ident):
    srv, held = serve("--idle-timeout", "4", files={"a": 1000})
    c = connect(srv.port, ident)
    deadline = time.monotonic() + 7
    pings = 0
    while time.monotonic() < deadline:
        try:
            m = c.recv(max(0.05, deadline - time.monotonic()))
        except TimeoutError:
            break
        assert m.type == PING, m
        pings += 1
        c.send(wire.pong(m.nonce))
    assert pings >= 2
    assert c.expect_open(wire.cid_wire(held["a"][0])).name == "a"


@rule("Which roles each side accepts: a side **must** answer a HELLO whose role is not in its row")
@pytest.mark.parametrize("role", [wire.SERVER, wire.DIRECTORY])
def test_a_server_refuses_roles_it_does_not_serve(serve, ident, role):
    srv, _ = serve()
    c = connect(srv.port, ident, send_hello=False)
    c.send(wire.hello(role))
    assert c.recv().type == wire.HELLO
    c.expect_error_and_close(E_PROTOCOL)


@rule("Which roles each side accepts: a side **must** answer a HELLO whose role is not in its row")
def test_a_listing_client_refuses_a_node(tmp_path, ident):
    """`peernet ls` (a client listing) accepts only a server: a peer that says
    node gets ERROR(0, PROTOCOL)."""
    got = []

    def handler(conn):
        conn.send(wire.hello(wire.NODE, 7000))
        assert conn.recv().type == wire.HELLO
        m = conn.recv()
        if m.type == wire.LIST_REQ:  # it may ask before it has read our HELLO
            m = conn.recv()
        assert (m.type, m.req_id, m.code) == (ERROR, 0, E_PROTOCOL), m
        with pytest.raises(wire.Closed):
            conn.recv(10)
        got.append(m)

    s = wire.TLSServer(ident, handler)
    r = run(["ls", "--server", s.addr], timeout=30)
    s.result()
    assert r.returncode != 0 and got
    assert b"not a peernet server" in r.stderr
