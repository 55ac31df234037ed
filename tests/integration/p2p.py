"""Helpers for the peer-to-peer integration tests: `peernet directory` and
`peernet node` processes on loopback, and the client commands that talk to a
node through its control socket (add, search, get, status, stop).

Every process is started here and stopped by its PID (SIGTERM, then SIGKILL
after a bounded wait); every wait is a loop bounded in count and in time.
"""
import json
import os
import signal
import subprocess
import time

from conftest import REPO, BIN, FAST_BIN, START_TIMEOUT, STOP_TIMEOUT, CLI_TIMEOUT, poll, run, stop_pid

CORRUPT_BIN = os.environ.get("PEERNET_CORRUPT_BIN") or os.path.join(REPO, "build", "peernet-corrupt")

MiB = 1024 * 1024


class Daemon:
    """One long-running peernet process (directory or node) on 127.0.0.1."""

    kind = None

    def __init__(self, workdir, name, bin=None, args=(), listen="127.0.0.1:0"):
        self.workdir = workdir
        self.name = name
        self.bin = bin or BIN
        self.args = [str(a) for a in args]
        self.listen = listen
        self.proc = None
        self.port = None
        self.node_id = None
        self.seq = 0
        self.expect_killed = False   # set when a test kills it on purpose
        os.makedirs(workdir, exist_ok=True)

    def command(self):
        raise NotImplementedError

    def start(self, wait=True):
        self.seq += 1
        base = os.path.join(self.workdir, "%s.%d" % (self.name, self.seq))
        self.port_file = base + ".port"
        self.out_path = base + ".stdout"
        self.log_path = base + ".stderr"
        for p in (self.port_file,):
            if os.path.exists(p):
                os.unlink(p)
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
        int(ids[0], 16)
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

    def log_tail(self, n=30):
        return "\n".join(self.log_lines()[-n:])

    def wait_log(self, needle, timeout=10):
        return poll(lambda: [l for l in self.log_lines() if needle in l], timeout,
                    what="%s log line %r; log:\n%s" % (self.name, needle, self.log_tail(20)))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        if self.proc is None:
            return None
        if sig == signal.SIGKILL:
            self.expect_killed = True
        rc = stop_pid(self.proc, sig, timeout)
        self.out_f.close()
        self.log_f.close()
        return rc

    def kill9(self):
        return self.stop(signal.SIGKILL)


class Directory(Daemon):
    kind = "directory"

    def __init__(self, workdir, name="dir", bin=None, args=(), heartbeat=None, listen="127.0.0.1:0"):
        extra = list(args)
        if heartbeat is not None:
            extra += ["--heartbeat", heartbeat]
        super().__init__(workdir, name, bin=bin, args=extra, listen=listen)

    def command(self):
        return [self.bin, "directory", "--listen", self.listen, "--port-file", self.port_file] + self.args

    def restart_same_port(self):
        """Starts it again on the port it had (after it was stopped)."""
        assert not self.alive()
        self.listen = "127.0.0.1:%d" % self.port
        old = self.port
        self.start()
        assert self.port == old
        return self


class Node(Daemon):
    kind = "node"

    def __init__(self, workdir, name, directory_addr, bin=None, args=(), data_dir=None, client_bin=None):
        super().__init__(workdir, name, bin=bin, args=args)
        self.directory_addr = directory_addr
        self.data_dir = data_dir or os.path.join(workdir, name + "-data")
        self.client_bin = client_bin or FAST_BIN

    def command(self):
        return [self.bin, "node", "--listen", self.listen, "--data", self.data_dir,
                "--directory", self.directory_addr, "--port-file", self.port_file] + self.args

    @property
    def incoming(self):
        return os.path.join(self.data_dir, "incoming")

    # ---- client commands through the control socket
    def cli(self, cmd, *args, check=None, timeout=CLI_TIMEOUT, bin=None):
        return run([cmd, "--data", self.data_dir] + list(args), bin=bin or self.client_bin, timeout=timeout,
                   check=check)

    def add(self, *paths):
        p = self.cli("add", "--json", *paths, check=0)
        return json.loads(p.stdout)

    def add_id(self, path):
        return self.add(path)[0]["id"]

    def search(self, *words, check=0):
        p = self.cli("search", "--json", *words, check=check)
        return json.loads(p.stdout) if p.returncode == 0 else p

    def status(self):
        p = self.cli("status", "--json", check=0)
        return json.loads(p.stdout)

    def get_cmd(self, cid, out, *extra, bin=None):
        """The argv of a `peernet get` through this node, for Popen."""
        return [bin or self.client_bin, "get", "--data", self.data_dir, "--json", cid, "-o", out] + list(extra)

    def get(self, cid, out, *extra, check=0, timeout=CLI_TIMEOUT):
        p = self.cli("get", "--json", cid, "-o", out, *extra, check=check, timeout=timeout)
        return json.loads(p.stdout) if p.returncode == 0 else p

    def wait_registered(self, timeout=20):
        return poll(lambda: self.status().get("directory", {}).get("connected"), timeout,
                    what="%s to register with the directory; log:\n%s" % (self.name, self.log_tail(20)))


def wait_found(node, words, cid, providers=1, timeout=20):
    """Polls node's search until cid is listed with at least `providers` providers."""
    def found():
        r = node.search(*words, check=None)
        if not isinstance(r, list):
            return None
        for e in r:
            if e["id"] == cid and e["providers"] >= providers:
                return r
        return None
    return poll(found, timeout, interval=0.2,
                what="search %r to list %s with %d providers" % (words, cid, providers))


def stop_all(daemons, allowed_rcs=(0,)):
    """Stops every daemon still running by PID with SIGTERM. Returns failure texts for
    ones that did not exit cleanly (ASan leaks, crashes), including ones that had died."""
    failures = []
    for d in daemons:
        if d.proc is None:
            continue
        if d.alive():
            try:
                rc = d.stop()
            except AssertionError as e:
                failures.append(str(e))
                continue
            if rc not in allowed_rcs:
                failures.append("%s (pid %d) exited %s on SIGTERM; log tail:\n%s" % (
                    d.name, d.pid, rc, d.log_tail()))
        else:
            rc = d.proc.returncode
            if not d.out_f.closed:
                d.out_f.close()
                d.log_f.close()
            if rc not in allowed_rcs and not (d.expect_killed and rc == -signal.SIGKILL):
                failures.append("%s (pid %d) had exited %s; log tail:\n%s" % (d.name, d.pid, rc, d.log_tail()))
    return failures


class Net:
    """A set of p2p processes for one test: .directory(...), .node(...).
    close() stops all of them by PID and reports unclean exits."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.daemons = []

    def directory(self, **kw):
        d = Directory(os.path.join(self.workdir, "dir%d" % len(self.daemons)), **kw)
        self.daemons.append(d)
        return d.start()

    def node(self, name, directory, *, bin=None, args=(), data_dir=None, start=True, wait=True):
        addr = directory if isinstance(directory, str) else directory.addr
        n = Node(os.path.join(self.workdir, name), name, addr, bin=bin, args=args, data_dir=data_dir)
        self.daemons.append(n)
        if start:
            n.start(wait=wait)
        return n

    def close(self):
        return stop_all(list(reversed(self.daemons)))


def wait_procs(procs, timeout):
    """Waits for every Popen in procs, in total at most timeout seconds.
    Returns [(returncode, stdout, stderr)]; kills by PID whatever is left."""
    deadline = time.monotonic() + timeout
    out = []
    for p in procs:
        left = max(0.1, deadline - time.monotonic())
        try:
            so, se = p.communicate(timeout=left)
        except subprocess.TimeoutExpired:
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            so, se = p.communicate(timeout=10)
            out.append((None, so, se))
            continue
        out.append((p.returncode, so, se))
    return out
