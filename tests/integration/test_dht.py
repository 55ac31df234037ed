"""Finding data through the Kademlia DHT, with real `peernet node --discovery dht`
processes on loopback and no directory (issue 13, point 5).

40 nodes, each joining through one or two earlier ones (seeded); a file added on
one node is found by keyword on another and downloaded (SHA-256 checked); a
quarter of the nodes are SIGKILLed and look-ups still succeed; a node whose
bootstrap nodes are all dead is restarted from its data directory and rejoins
through its saved routing table; a hand-made junk node (a Python UDP responder
that signs its datagrams with its own Ed25519 key) that answers every look-up
with junk or with itself is ignored, and the look-up still finishes.

Every process is stopped by its PID; every wait is bounded in count and time.
"""
import base64
import hashlib
import os
import random
import socket
import struct
import threading

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from conftest import BIN, FAST_BIN, make_file, poll, sha256_file
from floodnet import FloodNet, FloodNode

SEED = 20261204
NODES = 40
SEARCHER = 33               # runs the ASan build: its look-ups go through every path of node_dht.c
HOLDER = 7


class DhtNode(FloodNode):
    """A `peernet node --discovery dht` process (FloodNode's life cycle)."""

    def command(self):
        cmd = [self.bin, "node", "--listen", self.listen, "--data", self.data_dir, "--discovery", "dht",
               "--port-file", self.port_file]
        for b in self.bootstrap:
            cmd += ["--bootstrap", b]
        for s in self.share:
            cmd += ["--share", s]
        return cmd + self.args

    def dht(self):
        return self.status()["dht"]


class DhtNet(FloodNet):
    def node(self, name, bootstrap=(), args=(), share=(), bin=None, start=True, wait=True, **kw):
        boot = [b if isinstance(b, str) else b.addr for b in bootstrap]
        n = DhtNode(os.path.join(self.root, name), name, bin=bin or self.bin, bootstrap=boot, args=args,
                    share=share, **kw)
        self.nodes.append(n)
        if start:
            n.start(wait=wait)
        return n


def search_until(node, words, cid, timeout=30):
    """Polls node's search until cid is listed; returns the result list."""
    def found():
        r = node.search(*words, check=None)
        if isinstance(r, list) and any(e["id"] == cid for e in r):
            return r
        return None
    return poll(found, timeout, interval=0.3, what="search %r at %s to list %s" % (words, node.name, cid))


def get_checked(node, cid, out, sha):
    res = node.get(cid, out, check=None)
    assert isinstance(res, dict) and res.get("ok", True) is not False, getattr(res, "stderr", res)
    assert sha256_file(out) == sha


# ---------------------------------------------------------------- the 40-node DHT

class Dht:
    pass


@pytest.fixture(scope="module")
def dhtnet(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("dht40"))
    net = DhtNet(root, bin=FAST_BIN)
    d = Dht()
    d.net, d.root = net, root
    try:
        rng = random.Random(SEED)
        made, d.boot_of = [], {}
        for i in range(NODES):
            boot = rng.sample(made, min(len(made), rng.choice((1, 2)))) if made else []
            n = net.node("n%02d" % i, bootstrap=boot, bin=BIN if i == SEARCHER else FAST_BIN)
            d.boot_of[n.name] = boot
            made.append(n)
        d.nodes = made
        # Every node has joined: its own look-up found some of its neighbourhood
        # (a table fills further as other nodes' look-ups reach it).
        poll(lambda: all(n.dht()["contacts"] >= 3 for n in made), 30, interval=0.5,
             what="every node's routing table to hold 3 contacts: %r" % (
                 {n.name: n.dht()["contacts"] for n in made}))
        files = os.path.join(root, "files")
        os.makedirs(files)
        d.path = os.path.join(files, "Quarterly Report 2026.pdf")
        d.sha = make_file(d.path, 700 * 1000, seed=SEED)
        d.holder = made[HOLDER]
        d.cid = d.holder.add(d.path)[0]["id"]
        yield d
    finally:
        failures = net.close()
        assert not failures, "\n".join(failures)


def test_found_by_keyword_and_downloaded(dhtnet):
    d = dhtnet
    searcher = d.nodes[SEARCHER]
    r = search_until(searcher, ["quarterly", "report"], d.cid)
    hit = [e for e in r if e["id"] == d.cid][0]
    assert hit["name"] == "Quarterly Report 2026.pdf" and hit["size"] == 700 * 1000 and hit["providers"] >= 1
    # Whole words only, and every word must match.
    assert not [e for e in searcher.search("quarterly", "missingword") if e["id"] == d.cid]
    get_checked(searcher, d.cid, os.path.join(d.root, "got-1.pdf"), d.sha)
    st = searcher.status()
    assert st["discovery"] == "dht"
    dht = st["dht"]
    assert dht["contacts"] >= 3 and dht["records_stored"] >= 0 and dht["datagrams_received"] > 0
    assert 1 <= dht["rounds_median"] <= 8 and 1 <= dht["messages_median"] <= 100, dht
    assert st["totals"]["lookups"] >= 2 and st["totals"]["lookup_messages"] >= dht["messages_median"]
    # The routing table is saved (debounced) in the data directory.
    table = os.path.join(searcher.data_dir, "dht-table")
    poll(lambda: os.path.exists(table), 15, interval=0.2, what="DATA/dht-table")
    lines = open(table).read().split("\n")
    assert len(lines[0].split()[0]) == 64 and lines[0].split()[1].startswith("127.0.0.1:")
    # The downloader now provides the content too.
    other = d.nodes[20]
    search_until(other, ["report"], d.cid)


def test_quarter_killed_lookups_still_succeed(dhtnet):
    d = dhtnet
    keep = {HOLDER, SEARCHER, 0, 25, 26}
    victims = [n for i, n in enumerate(d.nodes) if i not in keep and n.alive()]
    victims = random.Random(SEED + 1).sample(victims, NODES // 4)
    for v in victims:
        v.kill9()
    alive = [n for n in d.nodes if n.alive()]
    assert len(alive) <= NODES - NODES // 4
    for k, name in enumerate(("n25", "n26")):
        node = [n for n in alive if n.name == name][0]
        search_until(node, ["2026", "quarterly"], d.cid, timeout=45)
        get_checked(node, d.cid, os.path.join(d.root, "got-after-kill-%d.pdf" % k), d.sha)


def test_restart_rejoins_without_bootstrap(dhtnet):
    d = dhtnet
    # A node whose bootstrap nodes are all killed, then itself stopped and
    # started again from its data directory with the same (dead) --bootstrap.
    node = [n for n in d.nodes if n.name == "n26"][0]
    spared = (d.holder, d.nodes[SEARCHER])
    for b in d.boot_of[node.name]:
        if b.alive() and b not in spared:
            b.kill9()
    assert node.stop() == 0
    table = os.path.join(node.data_dir, "dht-table")
    assert os.path.getsize(table) > 0
    node.start()
    assert not any(b.alive() for b in d.boot_of[node.name] if b not in spared)
    poll(lambda: node.dht()["contacts"] >= 4, 20, interval=0.3, what="the restarted node to rejoin")
    node.wait_log("known nodes from", timeout=5)
    search_until(node, ["quarterly"], d.cid, timeout=30)


# ---------------------------------------------------------------- a junk node

PUB, SIG = 32, 64


def addr_bytes(ip, port):
    return bytes([4]) + socket.inet_aton(ip) + struct.pack(">H", port)


def parse_addr(b, off):
    fam = b[off]
    n = 4 if fam == 4 else 16
    ip = socket.inet_ntop(socket.AF_INET if fam == 4 else socket.AF_INET6, b[off + 1:off + 1 + n])
    return (ip, struct.unpack(">H", b[off + 1 + n:off + 3 + n])[0]), off + 3 + n


class JunkNode:
    """A UDP responder on 127.0.0.1 that speaks the DHT's datagram layout with
    its own Ed25519 key (valid signatures on every datagram) and answers every
    request with junk: FIND_NODE and FIND_VALUE with itself and contacts that
    do not exist (IDs just next to the target, at a dead port), FIND_VALUE also
    with records whose signatures are wrong or that were signed under another
    key, plus a malformed datagram now and then. Runs in a thread until stop()."""

    def __init__(self):
        self.key = Ed25519PrivateKey.generate()
        self.pub = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.id = hashlib.sha256(self.pub).digest()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        dead.bind(("127.0.0.1", 0))          # held, never read: requests to it are lost
        self.dead, self.dead_port = dead, dead.getsockname()[1]
        self.junk_cids = [os.urandom(32) + struct.pack(">Q", 12345 + i) for i in range(2)]
        self.requests = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    def datagram(self, type_, txid, body):
        head = b"pD" + bytes([1, type_]) + struct.pack(">I", txid) + self.pub
        return head + body + self.key.sign(head + body)

    def garbage(self, port):
        """A malformed datagram, and a well-formed PING whose signature is wrong."""
        self.sock.sendto(b"pD\x01\x01junk", ("127.0.0.1", port))
        bad = bytearray(self.datagram(0x01, 7, b""))
        bad[-1] ^= 0xff
        self.sock.sendto(bytes(bad), ("127.0.0.1", port))

    def ping(self, port):
        self.sock.sendto(self.datagram(0x01, random.getrandbits(32), b""), ("127.0.0.1", port))

    def contacts(self, target):
        out = [self.id + addr_bytes("127.0.0.1", self.port)]
        for i in range(3):                   # "closer" than anyone, and dead
            fake = bytearray(target)
            fake[31] ^= 1 << i
            out.append(bytes(fake) + addr_bytes("127.0.0.1", self.dead_port))
        return out

    def records(self, kind, key):
        recs = []
        for i, cid in enumerate(self.junk_cids):
            name = b"" if kind == 1 else b"quarterly junk %d.bin" % i
            signed_key = key if i == 0 else hashlib.sha256(b"another key").digest()
            msg = b"peernet-dht-record-1" + bytes([kind]) + signed_key + cid + bytes([len(name)]) + name
            sig = self.key.sign(msg)
            if i == 0:
                sig = bytes([sig[0] ^ 0xff]) + sig[1:]  # a bad signature
            recs.append(bytes([kind]) + cid + bytes([len(name)]) + name + self.pub + sig +
                        addr_bytes("127.0.0.1", self.port))
        return recs

    def answer(self, data, src):
        if len(data) < 40 + SIG or data[:2] != b"pD":
            return
        type_, txid = data[3], struct.unpack(">I", data[4:8])[0]
        body = data[40:-SIG]
        self.requests += 1
        if self.requests % 5 == 0:
            self.sock.sendto(b"pD\x01\x04garbage", src)   # malformed
        if type_ == 0x01:                    # PING -> PONG
            ip, port = src
            self.sock.sendto(self.datagram(0x02, txid, addr_bytes(ip, port)), src)
        elif type_ == 0x03:                  # FIND_NODE -> NODES
            cs = self.contacts(body[:32])
            self.sock.sendto(self.datagram(0x04, txid, bytes([len(cs)]) + b"".join(cs)), src)
        elif type_ == 0x05:                  # FIND_VALUE -> VALUES
            kind, key = body[0], body[1:33]
            cs, rs = self.contacts(key), self.records(kind, key)
            payload = os.urandom(16) + bytes([len(cs)]) + b"".join(cs) + bytes([len(rs)]) + b"".join(rs)
            self.sock.sendto(self.datagram(0x06, txid, payload), src)
        elif type_ == 0x07:                  # STORE -> STORED ok (and keeps nothing)
            self.sock.sendto(self.datagram(0x08, txid, b"\x00"), src)

    def serve(self):
        for _ in range(100000):
            if self.stopping.is_set():
                return
            try:
                data, src = self.sock.recvfrom(2048)
            except socket.timeout:
                continue
            except OSError:
                return
            self.answer(data, src)

    def stop(self):
        self.stopping.set()
        self.thread.join(timeout=5)
        self.sock.close()
        self.dead.close()


def test_junk_node_ignored(dhtnet):
    d = dhtnet
    alive = [n for n in d.nodes if n.alive()]
    junk = JunkNode()
    try:
        for n in alive:                      # every live node hears of it
            junk.ping(n.port)
        # A new node that joins through the junk node and one real node.
        newbie = d.net.node("junky", bootstrap=[junk.addr, d.nodes[SEARCHER].addr], bin=BIN)
        poll(lambda: newbie.dht()["contacts"] >= 4, 20, interval=0.3, what="the new node to join")
        junk.garbage(newbie.port)
        r = search_until(newbie, ["quarterly"], d.cid, timeout=45)
        ids = {e["id"] for e in r}
        for raw in junk.junk_cids:
            bogus = "pn1" + base64.b32encode(raw).decode().lower()
            assert bogus not in ids, "a junk record was believed"
        get_checked(newbie, d.cid, os.path.join(d.root, "got-junky.pdf"), d.sha)
        assert junk.requests > 0, "the junk node was never asked"
        st = newbie.dht()
        assert st["datagrams_dropped"] >= 2, st
        # The old nodes still answer searches despite the junk in their tables.
        search_until(d.nodes[SEARCHER], ["report"], d.cid, timeout=30)
    finally:
        junk.stop()
