"""A downloading node asks its directory for providers again the moment it
offers the content (node_get.c, node__find_after_offer): the answer lists the
downloaders that offered before it, which it dials, while those offering
after it find and dial it. Two nodes started together then connect once, not
once each way. Played here by a hand-made directory and a hand-made provider
(TLS 1.3, pnwire), which see the node's messages in the order it sent them."""
import hashlib
import os
import struct
import subprocess

import pnwire as w
from conftest import cid_str, poll, stop_pid
from p2p import Node

DIR_REGISTER, DIR_OK, DIR_OFFER, DIR_FIND, DIR_PROVIDERS = 0x50, 0x51, 0x52, 0x54, 0x55
T_PING, T_PONG, T_INTERESTED, T_BITFIELD = 0x03, 0x04, 0x40, 0x42
HELLO_DIRECTORY = bytes([0x01, 0x01, 0x04, 0, 0, 0, 0, 0, 0])
HELLO_NODE = bytes([0x01, 0x01, 0x03, 0, 0, 0, 0, 0, 0])


def node_id_of(key_path):
    """The node ID of an Ed25519 key: SHA-256 of its raw 32-byte public key
    (the last 32 bytes of its DER SubjectPublicKeyInfo)."""
    der = subprocess.run(["openssl", "pkey", "-in", key_path, "-pubout", "-outform", "DER"],
                         stdout=subprocess.PIPE, check=True, timeout=30).stdout
    return hashlib.sha256(der[-32:]).digest()


def test_a_downloader_finds_again_right_after_its_offer(cert, workdir, procs):
    data = b"one chunk of content for the look-up order test"
    root = hashlib.sha256(data).digest()
    cid = cid_str(root, len(data))
    cid_wire = root + struct.pack(">Q", len(data))

    def provider(body):  # a node that holds the content: enough to tell its name
        if body[0] == T_INTERESTED and body[1:41] == cid_wire:
            return [w.frame(bytes([T_BITFIELD]) + cid_wire + struct.pack(">I", 1) + bytes([0x80]))]
        if body[0] == w.T_META_REQ:
            return [w.frame(w.meta(w.req_id(body), cid, "order.bin"))]
        return []

    seed = w.FakeServer(cert[0], cert[1], provider, hello=HELLO_NODE, timeout=60)
    seed_entry = node_id_of(cert[1]) + bytes([len(seed.addr)]) + seed.addr.encode()
    finds = []

    def directory(body):
        t = body[0]
        if t == DIR_REGISTER:
            return [w.frame(bytes([DIR_OK]) + struct.pack(">II", w.req_id(body), 10000))]
        if t == DIR_OFFER:
            return [w.frame(bytes([DIR_OK]) + struct.pack(">II", w.req_id(body), 0))]
        if t == T_PING:
            return [w.frame(bytes([T_PONG]) + body[1:9])]
        if t == DIR_FIND:
            assert body[5:45] == cid_wire
            finds.append(body)
            entries = seed_entry if len(finds) == 1 else b""  # the provider, then nobody new
            n = 1 if entries else 0
            return [w.frame(bytes([DIR_PROVIDERS]) + struct.pack(">I", w.req_id(body)) + cid_wire +
                            struct.pack(">IH", n, n) + entries)]
        return []

    fake_dir = w.FakeServer(cert[0], cert[1], directory, hello=HELLO_DIRECTORY, timeout=60)
    node = Node(workdir, "n", fake_dir.addr, args=["-v"])
    get = None
    try:
        node.start()
        node.wait_registered()
        get = subprocess.Popen(node.get_cmd(cid, os.path.join(workdir, "out.bin")), stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(get)
        # The node learns the name from the provider's META, offers the content, and asks again.
        try:
            poll(lambda: any(f[0] == DIR_OFFER for f in fake_dir.received), 30, what="the node's offer")
        except AssertionError as e:
            raise AssertionError("%s: the directory saw %s, the provider %s (%s); node log:\n%s" % (
                e, [hex(f[0]) for f in fake_dir.received], [hex(f[0]) for f in seed.received], seed.error,
                node.log_tail(20)))
        poll(lambda: len(finds) >= 2, 30, what="a second look-up")
        # It was this look-up, not the periodic re-ask (every 300 ms early on), that followed the offer.
        node.wait_log(cid + " offered: asking the directory")
        got = [f for f in fake_dir.received if f[0] not in (T_PING, w.T_HELLO)]
        kinds = [f[0] for f in got]
        at = kinds.index(DIR_OFFER)
        assert b"order.bin" in got[at], "the offer names the content as the provider did"
        assert got[at][7:47] == cid_wire
        assert kinds[at + 1] == DIR_FIND and got[at + 1][5:45] == cid_wire, \
            "the next message after the offer is a look-up of the same content: %s" % [hex(k) for k in kinds]
        assert kinds[:at].count(DIR_FIND) == 1, "one look-up before the offer (when the download started)"
        assert any(f[0] == w.T_META_REQ for f in seed.received), "the node asked the provider it was given"
    finally:
        if get is not None and get.poll() is None:
            stop_pid(get)
        node.stop()
        seed.stop()
        fake_dir.stop()
