"""Shared fixtures for the integration tests: real peernet processes on loopback.

Every process a test starts is stopped by its PID (SIGTERM, then SIGKILL after a
timeout); every wait is a loop bounded in count and in time. Nothing is ever
killed by name.
"""
import hashlib
import json
import os
import random
import signal
import subprocess
import time

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("PEERNET_BIN") or os.path.join(REPO, "build", "asan", "peernet")
FAST_BIN = os.environ.get("PEERNET_FAST_BIN") or os.path.join(REPO, "build", "peernet")
if not os.path.exists(FAST_BIN):
    FAST_BIN = BIN

CHUNK = 256 * 1024
CLI_TIMEOUT = 120          # seconds any single CLI run may take before the test fails
START_TIMEOUT = 20         # seconds for a server to write its port file
STOP_TIMEOUT = 15          # seconds between SIGTERM and SIGKILL

# ASan: fail loudly on leaks and errors, never hang on a report.
os.environ.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=86")
os.environ.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1:exitcode=87")


def poll(predicate, timeout, interval=0.05, what="condition"):
    """Calls predicate until it returns a true value or timeout seconds pass.
    Returns the value; raises AssertionError on timeout. Bounded in count too."""
    deadline = time.monotonic() + timeout
    tries = int(timeout / interval) + 2
    for _ in range(tries):
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


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def make_file(path, size, seed=None, pattern=None):
    """Writes size bytes (random from seed, or pattern repeated) and returns the SHA-256."""
    rng = random.Random(seed if seed is not None else size)
    h = hashlib.sha256()
    left = size
    with open(path, "wb") as f:
        while left:
            n = min(left, 1 << 20)
            if pattern is not None:
                reps = n // len(pattern) + 1
                block = (pattern * reps)[:n]
            else:
                block = rng.randbytes(n)
            f.write(block)
            h.update(block)
            left -= n
    return h.hexdigest()


def dir_size(path):
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                pass
    return total


def dir_files(path):
    out = set()
    for root, _dirs, files in os.walk(path):
        for name in files:
            out.add(os.path.relpath(os.path.join(root, name), path))
    return out


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


def run(args, timeout=CLI_TIMEOUT, bin=None, check=None, **kw):
    """Runs the CLI to completion (killed if it outlives timeout) and returns a
    CompletedProcess with bytes stdout/stderr. check=N asserts the exit status."""
    cmd = [bin or BIN] + [str(a) for a in args]
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout, **kw)
    if check is not None:
        assert p.returncode == check, "%s -> %d\nstdout: %r\nstderr: %r" % (
            " ".join(cmd), p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    return p


def error_lines(p):
    return [l for l in p.stderr.decode(errors="replace").splitlines() if l.strip()]


def assert_one_error_line(p, cmd):
    lines = error_lines(p)
    assert len(lines) == 1, "expected one error line, got %r" % lines
    assert lines[0].startswith("peernet %s: " % cmd), lines
    return lines[0]


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


class Server:
    """One `peernet serve` process on 127.0.0.1, port 0."""

    def __init__(self, workdir, data_dir=None, bin=None, args=()):
        self.workdir = workdir
        self.data_dir = data_dir or os.path.join(workdir, "srv-data")
        self.bin = bin or BIN
        self.args = list(args)
        self.proc = None
        self.port = None
        self.node_id = None
        self.seq = 0

    def start(self):
        self.seq += 1
        os.makedirs(self.workdir, exist_ok=True)
        self.port_file = os.path.join(self.workdir, "port.%d.%d" % (id(self), self.seq))
        self.out_path = self.port_file + ".stdout"
        self.log_path = self.port_file + ".stderr"
        if os.path.exists(self.port_file):
            os.unlink(self.port_file)
        self.out_f = open(self.out_path, "wb")
        self.log_f = open(self.log_path, "wb")
        cmd = [self.bin, "serve", "--listen", "127.0.0.1:0", "--data", self.data_dir,
               "--port-file", self.port_file] + [str(a) for a in self.args]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.out_f, stderr=self.log_f)

        def port_ready():
            if self.proc.poll() is not None:
                raise AssertionError("server exited with %d: %s" % (self.proc.returncode, self.log()))
            try:
                with open(self.port_file) as f:
                    text = f.read()
            except FileNotFoundError:
                return None
            return text.strip() if text.endswith("\n") else None

        self.port = int(poll(port_ready, START_TIMEOUT, what="the server's port file"))
        assert 0 < self.port < 65536
        out = poll(lambda: "node-id " in self.stdout() and self.stdout().endswith("\n") and self.stdout(),
                   START_TIMEOUT, what="the node-id line")
        ids = [l.split()[1] for l in out.splitlines() if l.startswith("node-id ")]
        assert len(ids) == 1 and len(ids[0]) == 64 and int(ids[0], 16) >= 0, out
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

    def log_lines(self):
        return self.log().splitlines()

    def wait_log(self, needle, timeout=10, after=0):
        """Waits until a log line after the first `after` lines contains needle."""
        return poll(lambda: [l for l in self.log_lines()[after:] if needle in l], timeout,
                    what="server log line %r; log:\n%s" % (needle, "\n".join(self.log_lines()[-20:])))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def rss_kib(self):
        return rss_kib(self.proc.pid)

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        if self.proc is None:
            return None
        rc = stop_pid(self.proc, sig, timeout)
        self.out_f.close()
        self.log_f.close()
        return rc

    def kill9(self):
        return self.stop(signal.SIGKILL)

    # client helpers bound to this server
    def put(self, *paths, bin=None, timeout=CLI_TIMEOUT):
        p = run(["put", "--server", self.addr, "--json"] + list(paths), bin=bin, timeout=timeout, check=0)
        return json.loads(p.stdout)

    def put_id(self, path, bin=None):
        return self.put(path, bin=bin)[0]["id"]

    def get(self, cid, out, *extra, bin=None, timeout=CLI_TIMEOUT, check=0):
        p = run(["get", "--server", self.addr, "--json", cid, "-o", out] + list(extra), bin=bin,
                timeout=timeout, check=check)
        return json.loads(p.stdout) if p.returncode == 0 else p

    def ls(self, bin=None):
        p = run(["ls", "--server", self.addr, "--json"], bin=bin, check=0)
        return json.loads(p.stdout)


@pytest.fixture
def workdir(tmp_path):
    return str(tmp_path)


@pytest.fixture
def server_factory(workdir):
    """Returns start(data_dir=None, bin=None, args=()) -> a started Server.
    At teardown every server still running gets SIGTERM and must exit 0."""
    servers = []

    def start(data_dir=None, bin=None, args=(), name=None):
        s = Server(os.path.join(workdir, name or "srv%d" % len(servers)), data_dir=data_dir, bin=bin, args=args)
        servers.append(s)
        return s.start()

    yield start
    failures = []
    for s in servers:
        if s.alive():
            rc = s.stop()
            if rc != 0:
                failures.append("server pid %d exited %s on SIGTERM; log tail:\n%s" % (
                    s.pid, rc, "\n".join(s.log_lines()[-30:])))
        elif s.proc is not None and s.proc.returncode not in (0, -signal.SIGKILL):
            failures.append("server pid %d had exited %s; log tail:\n%s" % (
                s.pid, s.proc.returncode, "\n".join(s.log_lines()[-30:])))
    assert not failures, "\n".join(failures)


@pytest.fixture
def server(server_factory):
    return server_factory()


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    """(cert path, key path) of an Ed25519 identity for hand-made peers (pnwire.FakeServer)."""
    import pnwire
    c = pnwire.make_ed25519_cert(str(tmp_path_factory.mktemp("cert")))
    if c is None:
        pytest.skip("openssl cannot make an Ed25519 certificate")
    return c


@pytest.fixture
def procs():
    """Popen objects registered here are stopped by PID at teardown."""
    started = []
    yield started
    for p in started:
        if p.poll() is None:
            try:
                stop_pid(p, signal.SIGKILL, 10)
            except AssertionError:
                pass


def cid_raw(cid_str):
    """Wire form (root[32] || size u64 BE) of a printed content ID."""
    import base64
    assert cid_str.startswith("pn1") and len(cid_str) == 67, cid_str
    raw = base64.b32decode(cid_str[3:].upper())
    assert len(raw) == 40
    return raw


def cid_str(root, size):
    """Printed form of a content ID from its root and size."""
    import base64
    assert len(root) == 32
    return "pn1" + base64.b32encode(root + size.to_bytes(8, "big")).decode().lower()


def state_chunks_done(state_path, nchunks):
    """Verified chunks recorded in a .pnpart.state (the bitmap is its last ceil(n/8) bytes)."""
    try:
        with open(state_path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return 0
    bm = (nchunks + 7) // 8
    if len(data) < bm + nchunks * 32:
        return 0
    return sum(bin(b).count("1") for b in data[-bm:])


def wait_progress(p, state, nchunks, want):
    """Waits until the partial's state records `want` verified chunks, while p runs."""
    def progressed():
        assert p.poll() is None, "the download ended before it could be interrupted: %r" % (p.communicate(),)
        return state_chunks_done(state, nchunks) >= want
    poll(progressed, 60, what="%d verified chunks in %s" % (want, state))


@pytest.fixture
def net(workdir):
    """A set of peer-to-peer processes for one test (p2p.Net), every one
    stopped by its PID at the end; an unclean exit fails the test."""
    from p2p import Net  # p2p imports this module
    n = Net(workdir)
    yield n
    failures = n.close()
    assert not failures, "\n".join(failures)
