"""Finding data by flooding, with real `peernet node --discovery flood` processes
on loopback (issue 4, points 1-4 and 6).

A random, sparse, connected overlay of 12 nodes (seeded); a file held only by a
node at least 3 hops from the querier is found and downloaded (SHA-256
checked); a node in the middle of the path is SIGKILLed and the overlay heals;
a node restarted without --bootstrap comes back through DATA/peers; the
expanding ring costs fewer query messages than a plain flood for a popular
file; a node whose bootstrap peers are down says so and joins once one comes
up; a hand-made TLS neighbour that floods QUERY frames is dropped and a QUERY
with ttl 200 travels at most 7 hops.

Every process is stopped by its PID; every wait is bounded in count and time;
tests assert behaviour (who answered, how many messages, what was said), not
how fast it happened.
"""
import hashlib
import os
import random
import socket
import ssl
import struct
import time

import pytest

from conftest import BIN, FAST_BIN, assert_one_error_line, make_file, poll, sha256_file
from floodnet import (KIND_KEYWORDS, T_HELLO, T_QUERY_HIT, FloodNet, bfs, connected, free_port, hello_node,
                      parse_hit, path, query, wait_stable)
from pnwire import client_context, frame, make_ed25519_cert, parse_frames

MIN_NB, MAX_NB = 2, 4
NB_ARGS = ["--min-neighbors", MIN_NB, "--max-neighbors", MAX_NB]
SEED = 20261125
NODES = 12
PLAIN = 5                     # index of the node that runs --plain-flood (its own queries only)

# What UBSan printed when a flood node crashed on SIGTERM (fixed in e9d65dc).
UBSAN_SHUTDOWN = "runtime error: member access within null pointer of type 'struct flood'"


def close_net(net):
    failures = net.close()      # every node must exit 0 on SIGTERM (ASan: no leak, no error)
    assert not failures, "\n".join(failures)


def names(net, ids):
    return sorted(net.by_id(i).name for i in ids)


def graph_text(net, g):
    return "; ".join("%s: %s" % (net.by_id(k).name, ",".join(names(net, v))) for k, v in
                     sorted(g.items(), key=lambda kv: net.by_id(kv[0]).name))


# ---------------------------------------------------------------- the 12-node overlay

class Overlay:
    pass


@pytest.fixture(scope="module")
def overlay(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("flood12"))
    net = FloodNet(root, bin=FAST_BIN)
    o = Overlay()
    o.net = net
    o.root = root
    try:
        rng = random.Random(SEED)
        o.nodes = []
        made = []
        for i in range(NODES):
            boot = rng.sample(made, min(len(made), rng.choice((1, 2)))) if made else []
            args = NB_ARGS + (["--plain-flood"] if i == PLAIN else [])
            made.append(net.node("n%02d" % i, bootstrap=boot, args=args))
        o.nodes = made
        net.wait_connected(30, min_each=1, what="every node to have a neighbour, the overlay connected")
        # Let the nodes still below their minimum finish dialling (not asserted:
        # a node may find every candidate full), so the graph we measure holds.
        try:
            poll(lambda: all(len(v) >= MIN_NB for v in net.graph().values()), 10, interval=0.25)
        except AssertionError:
            pass
        o.graph = net.wait_connected(10, min_each=1)
        # The querier and the holder: a pair 4 hops apart (3 if none is; never
        # more, so the default hop limit of 5 reaches it with a hop to spare).
        best = None
        for s in sorted(o.graph, key=lambda k: net.by_id(k).name):
            if net.by_id(s).name == "n%02d" % PLAIN:
                continue
            dist, prev = bfs(o.graph, s)
            for d in sorted(dist, key=lambda k: net.by_id(k).name):
                dd = min(dist[d], 5)
                if dist[d] <= 4 and (best is None or dd > best[0]):
                    best = (dd, s, d, prev)
        assert best and best[0] >= 3, "no pair 3 hops apart: %s" % graph_text(net, o.graph)
        o.dist, qid_, hid, prev = best
        o.querier, o.holder = net.by_id(qid_), net.by_id(hid)
        o.path = path(prev, hid)
        # Two rare files, only on the holder.
        files = os.path.join(root, "files")
        os.makedirs(files)
        o.rare = []
        for k, (word, size) in enumerate((("rarefile-one.bin", 1 << 20), ("rarefile-two.bin", 700 * 1000))):
            p = os.path.join(files, word)
            sha = make_file(p, size, seed=SEED + k)
            cid = o.holder.add(p)[0]["id"]
            o.rare.append((word, cid, sha))
        yield o
    finally:
        close_net(net)


def find(node, words, cid, providers=1, timeout=30):
    """Polls node's search until cid is listed with at least `providers` providers."""
    def found():
        r = node.search(*words, check=None)
        if isinstance(r, list):
            for e in r:
                if e["id"] == cid and e["providers"] >= providers:
                    return r
        return None
    return poll(found, timeout, interval=0.2, what="search %r at %s to list %s" % (words, node.name, cid))


def test_far_file_found_and_downloaded(overlay):
    o, net = overlay, overlay.net
    assert len(net.alive()) >= 12
    assert o.dist >= 3
    # Hop distance is the overlay's: no direct link from the querier to the holder.
    assert o.holder.node_id not in o.querier.neighbor_ids()
    print("querier %s, holder %s, %d hops; %s" % (o.querier.name, o.holder.name, o.dist, graph_text(net, o.graph)))
    word, cid, sha = o.rare[0]
    r = find(o.querier, ["rarefile", "one"], cid)
    hit = [e for e in r if e["id"] == cid][0]
    assert hit["name"] == word and hit["providers"] == 1 and hit["size"] == 1 << 20
    out = os.path.join(o.root, "got-one.bin")
    res = o.querier.get(cid, out)
    assert res.get("ok", True) is not False, res
    assert sha256_file(out) == sha
    assert net.sum_flood("hits_sent") >= o.dist    # the hit went back hop by hop


def test_ring_cheaper_than_plain_for_popular_file(overlay):
    """Issue point 3: an item held by half the nodes, looked up by ID (get wants 3
    providers) by a ring querier and by the --plain-flood querier; the query
    messages the whole network sent for each are counted from status."""
    o, net = overlay, overlay.net
    plain = [n for n in o.nodes if n.name == "n%02d" % PLAIN][0]
    ring = o.querier
    assert ring is not plain
    others = [n for n in o.nodes if n not in (plain, ring)]
    holders = random.Random(SEED + 7).sample(others, NODES // 2)
    p = os.path.join(o.root, "files", "popular-song.bin")
    sha = make_file(p, 300 * 1000, seed=SEED + 99)
    cids = {h.add(p)[0]["id"] for h in holders}
    assert len(cids) == 1
    cid = cids.pop()

    def cost(querier, out):
        before = wait_stable(lambda: net.sum_flood("queries_sent"))
        started = querier.flood()["queries_started"]
        res = querier.get(cid, out)
        assert res.get("ok", True) is not False, res
        assert sha256_file(out) == sha
        after = wait_stable(lambda: net.sum_flood("queries_sent"))
        return after - before, querier.flood()["queries_started"] - started

    ring_msgs, ring_steps = cost(ring, os.path.join(o.root, "pop-ring.bin"))
    plain_msgs, plain_steps = cost(plain, os.path.join(o.root, "pop-plain.bin"))
    print("popular file: ring %d messages in %d steps, plain %d messages" % (ring_msgs, ring_steps, plain_msgs))
    assert plain_steps == 1, "a plain flood is one query"
    assert ring_steps >= 1
    assert ring_msgs > 0 and plain_msgs > 0
    assert ring_msgs < plain_msgs, "ring %d messages (%d steps) vs plain %d" % (ring_msgs, ring_steps, plain_msgs)


def test_middle_node_killed_overlay_heals(overlay):
    o, net = overlay, overlay.net
    g = net.graph()
    dist, prev = bfs(g, o.querier.node_id)
    assert o.holder.node_id in dist
    p = path(prev, o.holder.node_id)
    if len(p) < 3:          # links changed since: use the path found at the start
        p = o.path
    # Of the nodes inside the path, kill the one whose loss leaves the most of its
    # neighbours below their minimum (they must dial replacements), then the middle one.
    inner = p[1:-1]
    lonely = {v: sum(1 for w in g[v] if len(g[w]) <= MIN_NB) for v in inner}
    victim_id = max(inner, key=lambda v: (lonely[v], -abs(inner.index(v) - (len(inner) - 1) / 2)))
    victim = net.by_id(victim_id)
    assert victim not in (o.querier, o.holder)
    below = [net.by_id(w) for w in g[victim_id] if len(g[w]) <= MIN_NB]
    g_cut = {a: b - {victim_id} for a, b in g.items() if a != victim_id}
    print("path %s, killed %s (a cut vertex: %s; left below %d: %s); graph %s" % (
        [net.by_id(x).name for x in p], victim.name, not connected(g_cut), MIN_NB, [n.name for n in below],
        graph_text(net, g)))
    victim.kill9()
    survivors = net.alive()
    assert victim not in survivors and len(survivors) == NODES - 1

    def healed():
        g2 = net.graph(survivors)
        return g2 if all(len(v) >= 1 for v in g2.values()) and connected(g2) else None

    def no_victim():
        return all(victim_id not in n.neighbor_ids() for n in survivors)
    poll(no_victim, 20, interval=0.2, what="the survivors to drop the killed node")
    g2 = poll(healed, 45, interval=0.5, what="the survivors to heal: every one a neighbour, connected; %s" %
              graph_text(net, net.graph(survivors)))
    assert victim_id not in g2
    # Those left below the minimum dialled replacements.
    poll(lambda: all(len(n.neighbor_ids()) >= MIN_NB for n in below), 45, interval=0.5,
         what="%s to get back to %d neighbours" % ([n.name for n in below], MIN_NB))
    print("healed: %s" % graph_text(net, g2))
    word, cid, sha = o.rare[1]
    r = find(o.querier, ["rarefile", "two"], cid)
    assert [e for e in r if e["id"] == cid][0]["providers"] == 1
    out = os.path.join(o.root, "got-two.bin")
    o.querier.get(cid, out)
    assert sha256_file(out) == sha


def test_restart_without_bootstrap_uses_peers_file(overlay):
    o, net = overlay, overlay.net
    cands = [n for n in net.alive() if n not in (o.querier, o.holder)]
    node = sorted(cands, key=lambda n: n.name)[-1]
    remembered_before = node.neighbor_ids()
    assert remembered_before
    rc = node.stop()
    assert rc == 0, "exit %s: %s" % (rc, node.log_tail())
    peers_file = os.path.join(node.data_dir, "peers")
    with open(peers_file) as f:
        lines = [l.split() for l in f if l.strip()]
    remembered = {l[1] for l in lines}
    assert lines and all(len(l) == 2 and l[0].startswith("127.0.0.1:") for l in lines), lines
    assert remembered_before & remembered, "the neighbours it had are remembered"
    node.bootstrap = []
    node.start()
    assert "--bootstrap" not in node.command()
    node.wait_log("known peers from")
    poll(lambda: node.neighbor_ids() & remembered, 30, interval=0.25,
         what="%s to reconnect to a remembered peer; log:\n%s" % (node.name, node.log_tail()))
    word, cid, sha = o.rare[1]
    find(node, ["rarefile", "two"], cid)


# ---------------------------------------------------------------- bootstrap down

@pytest.fixture
def net(tmp_path):
    n = FloodNet(str(tmp_path), bin=FAST_BIN)
    yield n
    close_net(n)


def test_bootstrap_down_clear_error_then_joins(net, tmp_path):
    port = free_port()
    x = net.node("lonely", bootstrap=["127.0.0.1:%d" % port], args=NB_ARGS + ["--peer-timeout", "2"])
    x.wait_log("no reachable peer", timeout=20)
    warn = [l for l in x.log().splitlines() if "no reachable peer" in l][0]
    assert "retrying" in warn
    # search and get wait for a neighbour (--peer-timeout, 2 s here), then say what they waited for.
    p = x.cli("search", "anything", check=1)
    line = assert_one_error_line(p, "search")
    assert "no flooding neighbour reached in 2 s" in line and "keeps trying" in line, line
    fake_cid = "pn14oymiquy7qobjgx36tejs35zeqt24qpemsnzgtfeswmrw6csxbkqaaaaaaaaaaaa"
    out = os.path.join(str(tmp_path), "never.bin")
    p = x.cli("get", fake_cid, "-o", out, check=1)
    line = assert_one_error_line(p, "get")
    assert "no flooding neighbour reached" in line, line
    assert not os.path.exists(out)
    assert x.alive()
    # The bootstrap peer comes up on that port: the node joins on its own.
    src = os.path.join(str(tmp_path), "latecomer-notes.txt")
    sha = make_file(src, 5000, seed=3)
    b = net.node("boot", listen="127.0.0.1:%d" % port, args=NB_ARGS, share=[src])
    assert b.port == port
    poll(lambda: b.node_id in x.neighbor_ids(), 60, interval=0.5,
         what="the node to join its bootstrap peer; log:\n%s" % x.log_tail())
    r = x.search("latecomer")
    assert [e["name"] for e in r] == ["latecomer-notes.txt"], r
    out2 = os.path.join(str(tmp_path), "late.txt")
    x.get(r[0]["id"], out2)
    assert sha256_file(out2) == sha


# ---------------------------------------------------------------- a hostile neighbour

class FakeNeighbor:
    """A TLS peer that says HELLO as a flood node (role 3, feature bit 0)."""

    def __init__(self, port, cert, key, timeout=20):
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.s = client_context(cert, key).wrap_socket(raw, server_hostname=None)
        self.s.settimeout(timeout)
        self.buf = bytearray()
        self.frames = []
        self.s.sendall(frame(hello_node()))
        hello = self.next_frame(lambda f: f[0] == T_HELLO, timeout)
        self.their_features = struct.unpack(">I", hello[5:9])[0]

    def read_some(self, timeout):
        self.s.settimeout(timeout)
        try:
            b = self.s.recv(1 << 16)
        except socket.timeout:
            return True
        if not b:
            return False
        self.buf += b
        fs, used = parse_frames(self.buf)
        del self.buf[:used]
        self.frames += fs
        return True

    def next_frame(self, want, timeout):
        deadline = time.monotonic() + timeout
        for _ in range(10000):
            for i, f in enumerate(self.frames):
                if want(f):
                    return self.frames.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if not self.read_some(min(left, 0.5)):
                raise AssertionError("connection closed while waiting")
        raise AssertionError("no such frame within %ss" % timeout)

    def wait_closed(self, timeout):
        """True once the node closed the connection (EOF or reset), within timeout."""
        deadline = time.monotonic() + timeout
        for _ in range(100000):
            if time.monotonic() >= deadline:
                return False
            try:
                if not self.read_some(0.5):
                    return True
            except (ssl.SSLError, OSError):
                return True
        return False

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def test_abusive_neighbor_dropped_and_ttl_clamped(net, tmp_path):
    """A line L1 - L2 - ... - L9 (L1 is the ASan build); a fake neighbour on L1.
    A QUERY with ttl 200 and hops 0 is clamped to 7: L7 (7 hops from the fake)
    still answers, L8 never sees it; with hops 5 it is clamped to 2. Then 2000
    QUERY frames as fast as TLS goes: the fake is dropped, L1 still searches."""
    files = os.path.join(str(tmp_path), "files")
    os.makedirs(files)

    def f(name, seed):
        p = os.path.join(files, name)
        make_file(p, 4000, seed=seed)
        return [p]
    shares = {3: f("abusecheck-three.bin", 3), 7: f("clampfile-seven.bin", 7), 8: f("clampfile-eight.bin", 8)}
    line = []
    for i in range(1, 10):
        line.append(net.node("L%d" % i, bootstrap=line[-1:], bin=BIN if i == 1 else FAST_BIN,
                             args=["--min-neighbors", 1, "--max-neighbors", 2], share=shares.get(i, ())))
    want = {n.node_id: set() for n in line}
    for a, b in zip(line, line[1:]):
        want[a.node_id].add(b.node_id)
        want[b.node_id].add(a.node_id)
    poll(lambda: net.graph() == want, 30, interval=0.25, what="the line to form: %s" % graph_text(net, net.graph()))

    cert = make_ed25519_cert(str(tmp_path))
    assert cert, "openssl cannot make an Ed25519 certificate"
    fake = FakeNeighbor(line[0].port, *cert)
    try:
        assert fake.their_features & 1, "L1 offers a neighbour link"
        poll(lambda: line[0].flood()["neighbors"] == 2, 10, interval=0.1, what="L1 to take the fake as neighbour")

        def received():
            return [n.flood()["queries_received"] for n in line]

        base = received()

        def delta():
            return [a - b for a, b in zip(received(), base)]

        # hops 5, ttl 200: clamped to 2 -> L1 and L2 only.
        fake.s.sendall(frame(query(b"\x01" * 16, 200, 5, KIND_KEYWORDS, b"clampfile")))
        poll(lambda: delta()[1] == 1, 10, interval=0.1, what="L2 to get the hops-5 query: %r %r; L1 log:\n%s" % (
            base, delta(), line[0].log_tail() + repr(line[0].status()["peers"]) + line[0].command().__repr__()))
        # hops 0, ttl 200: clamped to 7 -> L1 .. L7; L7 answers.
        qid = b"\x02" * 16
        fake.s.sendall(frame(query(qid, 200, 0, KIND_KEYWORDS, b"clampfile")))
        hit = fake.next_frame(lambda fr: fr[0] == T_QUERY_HIT and fr[1:17] == qid, 20)
        _, node_id, addr, results = parse_hit(hit)
        assert node_id == line[6].node_id and [r[1] for r in results] == ["clampfile-seven.bin"]
        assert addr == line[6].addr
        d = poll(lambda: (lambda x: x if x[6] == 1 else None)(delta()), 10, interval=0.1,
                 what="L7 to get the query")
        # Each node got each query once; the hops-5 one stopped at L2; nothing reached L8 or L9.
        assert d == [2, 2, 1, 1, 1, 1, 1, 0, 0], d
        # L8's file was 8 hops away: no hit for it ever came back.
        fake.read_some(0.5)
        assert not [fr for fr in fake.frames if fr[0] == T_QUERY_HIT and b"clampfile-eight" in fr]
    finally:
        fake.close()
    poll(lambda: line[0].flood()["neighbors"] == 1, 10, interval=0.1, what="L1 to forget the fake")

    # The flood: 2000 QUERY frames (distinct IDs, ttl 1), written at once.
    fake = FakeNeighbor(line[0].port, *cert)
    try:
        poll(lambda: line[0].flood()["neighbors"] == 2, 10, interval=0.1, what="L1 to take the fake again")
        before = line[0].flood()
        burst = b"".join(frame(query(hashlib.sha256(b"q%d" % i).digest()[:16], 1, 0, KIND_KEYWORDS,
                                     b"nothing matches %d" % i)) for i in range(2000))
        try:
            fake.s.sendall(burst)
        except (ssl.SSLError, OSError):
            pass                      # closed under us: that is the point
        assert fake.wait_closed(30), "L1 kept the flooding neighbour"
    finally:
        fake.close()
    after = line[0].flood()
    assert after["rate_limited"] - before["rate_limited"] >= 50, (before, after)
    assert after["queries_received"] - before["queries_received"] <= 2000
    assert line[0].alive()
    line[0].wait_log("sends queries too fast: dropped")
    poll(lambda: line[0].flood()["neighbors"] == 1, 10, interval=0.1, what="L1 to drop the fake")
    # Its real neighbours were not flooded: at most the burst allowance went on (ttl 1: none).
    assert line[1].flood()["queries_received"] == base[1] + 2
    r = line[0].search("abusecheck")
    assert [e["name"] for e in r] == ["abusecheck-three.bin"], r


# ---------------------------------------------------------------- shutdown

def test_sigterm_exits_cleanly(tmp_path):
    net = FloodNet(str(tmp_path), bin=BIN)
    try:
        a = net.node("a")
        b = net.node("b", bootstrap=[a])
        poll(lambda: a.node_id in b.neighbor_ids(), 20, interval=0.1, what="the link")
        rc = b.stop()
        assert UBSAN_SHUTDOWN not in b.log() and "ERROR: AddressSanitizer" not in b.log(), b.log_tail()
        assert rc == 0, "exit %s; log:\n%s" % (rc, b.log_tail())
        # The peers file is written on the way out.
        with open(os.path.join(b.data_dir, "peers")) as f:
            assert a.node_id in f.read()
    finally:
        net.close()


# ---------------------------------------------------------------- concurrent gets

def test_concurrent_gets_from_one_provider(net, tmp_path):
    import concurrent.futures
    p = net.node("prov", args=NB_ARGS)
    q = net.node("quer", bootstrap=[p], args=NB_ARGS + ["--peer-timeout", 6])
    poll(lambda: p.node_id in q.neighbor_ids(), 20, interval=0.1, what="the link")
    items = []
    for k in range(4):
        path_ = os.path.join(str(tmp_path), "parallel-%d.dat" % k)
        sha = make_file(path_, 3000 + k, seed=k)
        items.append((p.add(path_)[0]["id"], sha, os.path.join(str(tmp_path), "out-%d" % k)))
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        procs = list(pool.map(lambda it: q.cli("get", "--json", it[0], "-o", it[2], timeout=60), items))
    failed = [(it[0], pr.stderr.decode().strip()) for it, pr in zip(items, procs) if pr.returncode != 0]
    assert not failed, failed
    for cid, sha, out in items:
        assert sha256_file(out) == sha
