"""Helpers for the flooding integration tests and bench/flood_real.py: networks
of `peernet node --discovery flood` processes on loopback, their neighbour
graph (from `status --json`), and a hand-made TLS flood neighbour.

Every process is started here and stopped by its PID (SIGTERM, then SIGKILL
after a bounded wait); every wait is a loop bounded in count and in time.
"""
import collections
import json
import os
import random
import signal
import socket
import struct
import subprocess
import time

# Self-contained (no pytest import), so that bench/flood_real.py can use it too;
# the same conventions as conftest.py.
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("PEERNET_BIN") or os.path.join(REPO, "build", "asan", "peernet")
FAST_BIN = os.environ.get("PEERNET_FAST_BIN") or os.path.join(REPO, "build", "peernet")
if not os.path.exists(FAST_BIN):
    FAST_BIN = BIN
CLI_TIMEOUT = 120
START_TIMEOUT = 20
STOP_TIMEOUT = 15


def poll(predicate, timeout, interval=0.05, what="condition"):
    """Calls predicate until it returns a true value or timeout seconds pass; bounded in count too."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 2):
        v = predicate()
        if v:
            return v
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    v = predicate()
    if v:
        return v
    raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))


def run(args, timeout=CLI_TIMEOUT, bin=None, check=None):
    cmd = [bin or BIN] + [str(a) for a in args]
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    if check is not None:
        assert p.returncode == check, "%s -> %d\nstdout: %r\nstderr: %r" % (
            " ".join(cmd), p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    return p


def stop_pid(proc, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
    """Stops a Popen by its PID: sig, then SIGKILL after timeout. Returns the exit status."""
    if proc.poll() is not None:
        return proc.returncode
    try:
        os.kill(proc.pid, sig)
    except ProcessLookupError:
        pass
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)
        raise AssertionError("pid %d did not stop within %ds of signal %d" % (proc.pid, timeout, sig))


T_HELLO, T_ERROR, T_PEERS_REQ, T_PEERS, T_QUERY, T_QUERY_HIT = 0x01, 0x02, 0x60, 0x61, 0x62, 0x63
FEATURE_FLOOD = 0x1
KIND_KEYWORDS, KIND_CID = 1, 2

FLOOD_KEYS = ("neighbors", "queries_started", "queries_sent", "queries_received", "duplicates_dropped",
              "rate_limited", "hits_sent", "hits_received")


def free_port():
    """A loopback port nobody listens on right now (bound, then released)."""
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


class FloodNode:
    """One `peernet node --discovery flood` process on 127.0.0.1."""

    def __init__(self, root, name, bin=None, bootstrap=(), args=(), share=(), data_dir=None,
                 listen="127.0.0.1:0", client_bin=None):
        self.root = root
        self.name = name
        self.bin = bin or FAST_BIN
        self.client_bin = client_bin or FAST_BIN
        self.bootstrap = list(bootstrap)
        self.args = [str(a) for a in args]
        self.share = list(share)
        self.data_dir = data_dir or os.path.join(root, name + "-data")
        self.listen = listen
        self.proc = None
        self.port = None
        self.node_id = None
        self.seq = 0
        self.expect_killed = False
        self.logs = []            # every run's stderr path, oldest first
        os.makedirs(root, exist_ok=True)

    def command(self):
        cmd = [self.bin, "node", "--listen", self.listen, "--data", self.data_dir, "--discovery", "flood",
               "--port-file", self.port_file]
        for b in self.bootstrap:
            cmd += ["--bootstrap", b]
        for s in self.share:
            cmd += ["--share", s]
        return cmd + self.args

    def start(self, wait=True):
        self.seq += 1
        base = os.path.join(self.root, "%s.%d" % (self.name, self.seq))
        self.port_file = base + ".port"
        self.out_path = base + ".stdout"
        self.log_path = base + ".stderr"
        self.logs.append(self.log_path)
        if os.path.exists(self.port_file):
            os.unlink(self.port_file)
        self.out_f = open(self.out_path, "wb")
        self.log_f = open(self.log_path, "wb")
        self.expect_killed = False
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=self.out_f,
                                     stderr=self.log_f)
        if wait:
            self.wait_started()
        return self

    def wait_started(self):
        def port_ready():
            if self.proc.poll() is not None:
                raise AssertionError("%s exited with %d: %s" % (self.name, self.proc.returncode, self.log()))
            try:
                with open(self.port_file) as f:
                    text = f.read()
            except FileNotFoundError:
                return None
            return text.strip() if text.endswith("\n") else None

        self.port = int(poll(port_ready, START_TIMEOUT, what="%s's port file" % self.name))
        assert 0 < self.port < 65536
        out = poll(lambda: "node-id " in self.stdout() and self.stdout().endswith("\n") and self.stdout(),
                   START_TIMEOUT, what="%s's node-id line" % self.name)
        ids = [l.split()[1] for l in out.splitlines() if l.startswith("node-id ")]
        assert len(ids) == 1 and len(ids[0]) == 64, out
        self.node_id = ids[0]
        return self

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    @property
    def pid(self):
        return self.proc.pid

    def stdout(self):
        with open(self.out_path, "rb") as f:
            return f.read().decode(errors="replace")

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def log_tail(self, n=30):
        return "\n".join(self.log().splitlines()[-n:])

    def wait_log(self, needle, timeout=10):
        return poll(lambda: [l for l in self.log().splitlines() if needle in l], timeout, interval=0.1,
                    what="%s log line %r; log:\n%s" % (self.name, needle, self.log_tail(20)))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        if self.proc is None:
            return None
        if sig == signal.SIGKILL:
            self.expect_killed = True
        rc = stop_pid(self.proc, sig, timeout)
        if not self.out_f.closed:
            self.out_f.close()
            self.log_f.close()
        return rc

    def kill9(self):
        return self.stop(signal.SIGKILL)

    # ---- client commands through the control socket
    def cli(self, cmd, *args, check=None, timeout=CLI_TIMEOUT):
        return run([cmd, "--data", self.data_dir] + list(args), bin=self.client_bin, timeout=timeout, check=check)

    def status(self):
        p = self.cli("status", "--json", check=0)
        return json.loads(p.stdout)

    def flood(self):
        return self.status()["flood"]

    def neighbor_ids(self, st=None):
        st = st or self.status()
        return {p["id"] for p in st["peers"] if p.get("neighbor")}

    def add(self, *paths):
        p = self.cli("add", "--json", *paths, check=0)
        return json.loads(p.stdout)

    def search(self, *words, check=0):
        """The JSON result list (exit 0), or the CompletedProcess when it failed."""
        p = self.cli("search", "--json", *words, check=check)
        return json.loads(p.stdout) if p.returncode == 0 else p

    def get(self, cid, out, *extra, check=0, timeout=CLI_TIMEOUT):
        p = self.cli("get", "--json", cid, "-o", out, *extra, check=check, timeout=timeout)
        return json.loads(p.stdout) if p.returncode == 0 else p


class FloodNet:
    """A set of flood nodes for one test or bench run; close() stops all of them by
    PID and returns failure texts for unclean exits (crashes, ASan reports)."""

    def __init__(self, root, bin=None):
        self.root = root
        self.bin = bin or FAST_BIN
        self.nodes = []

    def node(self, name, bootstrap=(), args=(), share=(), bin=None, start=True, wait=True, **kw):
        boot = [b if isinstance(b, str) else b.addr for b in bootstrap]
        n = FloodNode(os.path.join(self.root, name), name, bin=bin or self.bin, bootstrap=boot, args=args,
                      share=share, **kw)
        self.nodes.append(n)
        if start:
            n.start(wait=wait)
        return n

    def alive(self):
        return [n for n in self.nodes if n.alive()]

    def random_topology(self, count, seed, args=(), share=None, bin=None, prefix="n"):
        """Starts count nodes; each new one bootstraps to 1-2 random earlier ones
        (seeded). share(i) -> list of paths for node i. Returns the new nodes."""
        rng = random.Random(seed)
        made = []
        for i in range(count):
            boot = rng.sample(made, min(len(made), rng.choice((1, 2)))) if made else []
            made.append(self.node("%s%02d" % (prefix, i), bootstrap=boot, args=args,
                                  share=share(i) if share else (), bin=bin))
        return made

    def statuses(self, nodes=None):
        return {n.node_id: n.status() for n in (nodes or self.alive())}

    def graph(self, nodes=None):
        """Undirected neighbour graph {node_id: set(node_id)} among the given (alive)
        nodes, from their status --json: an edge counts if either end lists it."""
        nodes = nodes or self.alive()
        ids = {n.node_id for n in nodes}
        g = {i: set() for i in ids}
        for nid, st in self.statuses(nodes).items():
            for p in st["peers"]:
                if p.get("neighbor") and p["id"] in ids:
                    g[nid].add(p["id"])
                    g[p["id"]].add(nid)
        return g

    def by_id(self, node_id):
        for n in self.nodes:
            if n.node_id == node_id:
                return n
        raise KeyError(node_id)

    def sum_flood(self, key, nodes=None):
        return sum(st["flood"][key] for st in self.statuses(nodes).values())

    def wait_connected(self, timeout=30, min_each=1, nodes=None, what="the overlay to form"):
        """Polls until every node has >= min_each neighbours and the graph is connected."""
        def ok():
            g = self.graph(nodes)
            if all(len(v) >= min_each for v in g.values()) and connected(g):
                return g
            return None
        return poll(ok, timeout, interval=0.25, what=what + "; graph: %r" % (
            {self.by_id(k).name: sorted(self.by_id(x).name for x in v) for k, v in self.graph(nodes).items()}))

    def close(self, allowed=(0,), tolerate=None):
        """Stops every node still running (SIGTERM, by PID). tolerate(node, rc) may
        accept a known, reported exit status."""
        failures = []
        for n in reversed(self.nodes):
            if n.proc is None:
                continue
            if n.alive():
                try:
                    rc = n.stop()
                except AssertionError as e:
                    failures.append(str(e))
                    continue
            else:
                rc = n.proc.returncode
                if not n.out_f.closed:
                    n.out_f.close()
                    n.log_f.close()
            if rc not in allowed and not (n.expect_killed and rc == -signal.SIGKILL) and not (
                    tolerate and tolerate(n, rc)):
                failures.append("%s (pid %d) exited %s; log tail:\n%s" % (n.name, n.pid, rc, n.log_tail()))
        return failures


def bfs(g, src):
    dist = {src: 0}
    prev = {src: None}
    q = collections.deque([src])
    while q:
        u = q.popleft()
        for v in sorted(g[u]):
            if v not in dist:
                dist[v] = dist[u] + 1
                prev[v] = u
                q.append(v)
    return dist, prev


def path(prev, dst):
    out = []
    while dst is not None:
        out.append(dst)
        dst = prev[dst]
    return list(reversed(out))


def connected(g):
    if not g:
        return True
    dist, _ = bfs(g, next(iter(g)))
    return len(dist) == len(g)


def wait_stable(read, window=1.5, timeout=20, interval=0.25):
    """Polls read() until it returns the same value for `window` seconds (bounded)."""
    deadline = time.monotonic() + timeout
    last = read()
    since = time.monotonic()
    for _ in range(int(timeout / interval) + 2):
        time.sleep(interval)
        v = read()
        now = time.monotonic()
        if v != last:
            last, since = v, now
        elif now - since >= window:
            return v
        if now >= deadline:
            break
    raise AssertionError("value did not settle within %ss (last %r)" % (timeout, last))


# ---- wire messages of the flooding protocol (docs/PROTOCOL.md)

def hello_node(listen_port=0, features=FEATURE_FLOOD):
    return bytes([T_HELLO, 1, 3]) + struct.pack(">HI", listen_port, features)


def query(qid, ttl, hops, kind, data):
    assert len(qid) == 16
    return bytes([T_QUERY]) + qid + bytes([ttl, hops, kind]) + struct.pack(">H", len(data)) + data


def parse_hit(body):
    """QUERY_HIT body -> (qid, node_id hex, addr, [(cid_raw, name)])."""
    assert body[0] == T_QUERY_HIT
    qid = body[1:17]
    node_id = body[17:49].hex()
    alen = body[49]
    addr = body[50:50 + alen].decode()
    off = 50 + alen
    count = struct.unpack(">H", body[off:off + 2])[0]
    off += 2
    out = []
    for _ in range(count):
        cid = body[off:off + 40]
        nlen = struct.unpack(">H", body[off + 40:off + 42])[0]
        out.append((cid, body[off + 42:off + 42 + nlen].decode()))
        off += 42 + nlen
    assert off == len(body), "trailing bytes in QUERY_HIT"
    return qid, node_id, addr, out
