"""PROTOCOL.md, Test vectors: every body of the table of examples a receiver
must reject is sent to a peernet process that receives that type, and is
refused as malformed. A row added to the table without a vector here fails
test_every_row_has_a_vector."""
import struct

import pytest

import spec
import wire
from conftest import run, wait_for
from spec import rule

ROOT = bytes(range(32))
CID2 = ROOT + struct.pack(">Q", 262145)
CID5 = ROOT + struct.pack(">Q", 5)
CID10 = ROOT + struct.pack(">Q", 2621437)
BIG = ROOT + bytes.fromhex("0000001000000001")
QID = bytes(range(0xc0, 0xd0))
A1 = b"\xa1" * 32
H = bytes.fromhex
DIR_REGISTER, DIR_OK = 0x50, 0x51

# why -> (receiver, body). Receivers: "first" (serve, instead of HELLO),
# "serve" (after HELLO), "upload" (serve, inside an upload of CID5), "put"
# (peernet put, answering its PUT_BEGIN), "node" (a node, after HELLO as a
# node), "directory" (after HELLO as a node), "node-dir" (a node, from its
# directory).
VECTORS = {
    "HELLO version 0": ("first", H("0100021b9e00000000")),
    "HELLO role 5": ("first", H("0101051b9e00000000")),
    "index 2 of a 2-chunk file": ("serve", H("1400000002") + CID2 + H("00000002")),
    "first + count wraps around": ("serve", H("1200000004") + CID2 + H("ffffffff00000002")),
    "4 data bytes for a 5-byte chunk": ("upload", H("1500000006") + CID5 + H("0000000068656c6c")),
    "unused bitmap bit set": ("put", H("3100000009") + CID10 + H("000000000affe0")),
    "undefined flag bit": ("put", H("3100000009") + CID10 + H("020000000affc0")),
    "size above 64 GiB": ("serve", H("1000000001") + BIG),
    "trailing byte": ("serve", H("03010203040506070800")),
    "HAVE index 2 of a 2-chunk file": ("node", H("43") + CID2 + H("00000002")),
    "BITFIELD unused bit set": ("node", H("42") + CID10 + H("0000000affe0")),
    "BITFIELD nchunks is not chunks(cid)": ("node", H("42") + CID10 + H("00000009ff80")),
    "CHOKE with a payload": ("node", H("4400")),
    "DIR_REGISTER listen_port 0": ("directory", H("5000000001000000")),
    'host "a b": space in an address': ("directory", H("50000000011b9e03612062")),
    "DIR_OFFER with no entries": ("directory", H("52000000030000")),
    "DIR_PROVIDERS count above total": ("node-dir", H("5500000006") + CID2 + H("000000010002") +
                                        (A1 + H("0e") + b"127.0.0.1:7070") * 2),
    "DIR_PROVIDERS entry with an empty address": ("node-dir", H("5500000006") + CID2 + H("000000030001") + A1 +
                                                  H("00")),
    "control character in a query": ("directory", H("5600000007") + H("00010a")),
    "DIR_RESULTS count 101": ("node-dir", H("57000000080065")),
    "DIR_BYE has no cid": ("directory", H("5800000009") + CID2),
    "PEERS_REQ with a payload": ("node", H("6000")),
    "PEERS count 33": ("node", H("6121")),
    "PEERS entry with an empty address": ("node", H("6101") + A1 + H("00")),
    "PEERS count below the entries": ("node", H("6100") + A1 + H("0e") + b"127.0.0.1:7070"),
    "QUERY kind 3": ("node", H("62") + QID + H("050003000161")),
    "empty keyword QUERY": ("node", H("62") + QID + H("0500010000")),
    "control character in a keyword QUERY": ("node", H("62") + QID + H("05000100010a")),
    "content-ID QUERY not 40 bytes": ("node", H("62") + QID + H("0500020027") + CID2[:39]),
    "content-ID QUERY, size above 64 GiB": ("node", H("62") + QID + H("0500020028") + BIG),
    "QUERY_HIT with no results": ("node", H("63") + QID + A1 + H("03613a310000")),
    "QUERY_HIT with an empty address": ("node", H("63") + QID + A1 + H("000001") + CID2 + H("000161")),
    'QUERY_HIT result named "/"': ("node", H("63") + QID + A1 + H("03613a310001") + CID2 + H("00012f")),
}


def test_every_row_has_a_vector():
    rows = spec.rejected_examples()
    assert set(rows) == set(VECTORS), "rows without a vector: %s; vectors without a row: %s" % (
        sorted(set(rows) - set(VECTORS)), sorted(set(VECTORS) - set(rows)))


def refused_as_malformed(conn):
    err = conn.expect_error_and_close(wire.E_PROTOCOL)
    assert "malformed" in err.text or "too large" in err.text, err
    return err


@rule("Examples of bodies a receiver **must** reject as malformed")
@pytest.mark.parametrize("why", sorted(VECTORS))
def test_rejected_example(why, serve, swarm, ident, tmp_path, procs):
    receiver, body = VECTORS[why]
    if receiver in ("first", "serve", "upload"):
        srv, _ = serve()
        c = wire.connect(srv.port, ident, send_hello=receiver != "first")
        if receiver == "first":
            assert c.recv().type == wire.HELLO
        if receiver == "upload":
            c.send(wire.meta_msg(wire.PUT_BEGIN, 6, CID5, "five.txt"))
            c.recv_type(wire.PUT_STATUS)
            c.send(wire.hashes_msg(6, CID5, 0, [ROOT]))  # a one-chunk file's hash list is its root
        c.send(body)
        refused_as_malformed(c)
    elif receiver in ("node", "directory"):
        node, _ = swarm()
        port = node.port if receiver == "node" else node.directory.port
        c = wire.connect(port, ident, role=wire.NODE)
        c.send(body)
        refused_as_malformed(c)
    elif receiver == "put":
        _put_refuses(body, ident, tmp_path)
    elif receiver == "node-dir":
        _node_refuses_from_directory(body, ident, swarm)
    else:
        raise AssertionError(receiver)


def _put_refuses(body, ident, tmp_path):
    path = tmp_path / "ten.bin"
    path.write_bytes(bytes(2621437))  # 10 chunks, as CID10
    after = []

    def handler(conn):
        conn.send(wire.hello(wire.SERVER, 7070))
        while True:
            m = conn.recv(10)
            if m.type == wire.PUT_BEGIN:
                conn.send(body[:1] + struct.pack(">I", m.req_id) + m.cid + body[45:])
                break
        try:
            while True:
                after.append(conn.recv(8))
        except (wire.Closed, TimeoutError):
            pass

    s = wire.TLSServer(ident, handler)
    r = run(["put", "--server", s.addr, "--no-progress", str(path)], timeout=60)
    s.result()
    assert r.returncode != 0, "put accepted a malformed PUT_STATUS"
    errs = [m for m in after if m.type == wire.ERROR]
    assert errs and (errs[0].req_id, errs[0].code) == (0, wire.E_PROTOCOL), after
    assert not [m for m in after if m.type in (wire.HASHES, wire.CHUNK, wire.PUT_END)], \
        "put went on uploading after a malformed PUT_STATUS"


class _Addr:
    def __init__(self, addr):
        self.addr = addr


def _node_refuses_from_directory(body, ident, swarm):
    """A node whose directory answers DIR_REGISTER with DIR_OK and then the
    malformed body: the node tells it ERROR(0, PROTOCOL) and closes."""
    seen = []

    def handler(conn, index):
        if index > 0:  # the node dials again after the close: nothing to check
            return
        conn.send(wire.hello(wire.DIRECTORY))
        while True:
            m = conn.recv(15)
            if m.type == DIR_REGISTER:
                rid = struct.unpack(">I", m.body[1:5])[0]
                break
        conn.send(bytes([DIR_OK]) + struct.pack(">II", rid, 10000), body)
        seen.append(refused_as_malformed(conn))

    s = wire.TLSServer(ident, handler, conns=2, timeout=20)
    node, _ = swarm(directory=_Addr(s.addr))
    wait_for(lambda: seen or s.exc, 20, "the node to dial the fake directory and refuse")
    node.stop()
    try:
        s.result()
    except TimeoutError:
        pass  # the second accept waits for a redial that may not come before the node stops
    assert seen, s.exc
