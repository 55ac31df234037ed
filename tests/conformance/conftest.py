"""Processes for the conformance cases: `peernet serve`, `directory` and
`node` on 127.0.0.1 port 0, each stopped by its PID at the end of its case."""
import os
import signal
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wire  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("PEERNET_BIN", os.path.join(ROOT, "build", "peernet"))
START_TIMEOUT = 20


def wait_for(fn, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


class Proc:
    """One long-running peernet process with a port file."""

    def __init__(self, workdir, name, argv):
        os.makedirs(workdir, exist_ok=True)
        self.workdir = workdir
        self.port_file = os.path.join(workdir, name + ".port")
        self.log_path = os.path.join(workdir, name + ".log")
        self.out_path = os.path.join(workdir, name + ".out")
        self.argv = [BIN] + argv + ["--port-file", self.port_file]
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=open(self.out_path, "wb"),
                                     stderr=open(self.log_path, "wb"))

        def port():
            if self.proc.poll() is not None:
                raise AssertionError("%s exited with %d: %s" % (name, self.proc.returncode, self.log()))
            try:
                with open(self.port_file) as f:
                    t = f.read()
            except FileNotFoundError:
                return None
            return t.strip() if t.endswith("\n") else None

        self.port = int(wait_for(port, START_TIMEOUT, name + "'s port file"))
        self.addr = "127.0.0.1:%d" % self.port

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


@pytest.fixture
def procs():
    started = []
    yield started
    for p in reversed(started):
        p.stop()


@pytest.fixture
def ident(tmp_path):
    return wire.Identity(str(tmp_path), "suite")


def run(argv, timeout=60, **kw):
    return subprocess.run([BIN] + argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout, **kw)


def make_file(path, size, seed=1):
    data = bytes((i * 7 + seed * 13 + (i >> 8)) & 0xFF for i in range(size))
    with open(path, "wb") as f:
        f.write(data)
    return data


@pytest.fixture
def serve(tmp_path, procs):
    """serve(*extra_args, files={name: size}) -> (Proc, {name: (printed cid, data)})."""
    n = [0]

    def start(*extra, files=None):
        n[0] += 1
        work = os.path.join(str(tmp_path), "serve%d" % n[0])
        p = Proc(work, "serve", ["serve", "--listen", "127.0.0.1:0", "--data", os.path.join(work, "data")] +
                 list(extra))
        procs.append(p)
        held = {}
        for name, size in (files or {}).items():
            path = os.path.join(work, name)
            data = make_file(path, size, seed=len(held) + 1)
            r = run(["put", "--server", p.addr, "--no-progress", path])
            assert r.returncode == 0, r.stderr
            held[name] = (r.stdout.decode().split()[0], data)
        return p, held
    return start


@pytest.fixture
def swarm(tmp_path, procs):
    """swarm(files={name: size}) -> (node Proc, {name: (printed cid, data)}): a
    directory and one node sharing the files."""
    def start(files=None, extra=(), directory=None):
        work = str(tmp_path)
        d = directory
        if d is None:
            d = Proc(os.path.join(work, "dir"), "directory", ["directory", "--listen", "127.0.0.1:0"])
            procs.append(d)
        held, shares = {}, []
        for name, size in (files or {}).items():
            path = os.path.join(work, name)
            held[name] = (None, make_file(path, size, seed=len(held) + 1))
            shares += ["--share", path]
        node_dir = os.path.join(work, "node")
        p = Proc(node_dir, "node", ["node", "--listen", "127.0.0.1:0", "--data", os.path.join(node_dir, "data"),
                                    "--discovery", "directory", "--directory", d.addr] + shares + list(extra))
        if directory is not None:
            procs.append(p)
            p.directory = d
            return p, held
        procs.append(p)
        p.directory = d
        for name in held:
            r = wait_for(lambda: _status_cid(node_dir, name), START_TIMEOUT, "the node's share " + name)
            held[name] = (r, held[name][1])
        return p, held
    return start


def _status_cid(node_dir, name):
    import json
    r = run(["status", "--data", os.path.join(node_dir, "data"), "--json"], timeout=20)
    if r.returncode != 0:
        return None
    try:
        st = json.loads(r.stdout)
    except ValueError:
        return None
    for sh in st.get("shares", []):
        if sh.get("name") == name:
            return sh.get("id") or sh.get("cid")
    return None
