"""`peernet node --bind-interface IFACE` keeps all of a node's traffic on one
network interface.

Three network namespaces made here: `a` holds the nodes, with a veth `v1`
(10.88.0.1) towards `b` and a veth `dum1` (10.89.0.1) towards `c`, where
nothing runs; `b` (10.88.0.2) runs a `peernet serve` used as every node's
seed server, and the clients that dial the nodes. A node bound to v1 fetches
through v1 and serves clients that come through v1, and no one through
loopback; a node bound to dum1 reaches nothing and is reached by no one.
Every process is stopped by its PID and every namespace is deleted.
"""
import json
import os
import secrets
import subprocess

import pytest

from conftest import BIN, FAST_BIN, START_TIMEOUT, make_file, poll, sha256_file, stop_pid
from netns import netns_unavailable, sh

pytestmark = pytest.mark.skipif(bool(netns_unavailable()), reason=str(netns_unavailable()))

RUN_TIMEOUT = 60


class Namespaces:
    def __init__(self):
        self.tag = "pn-%s" % secrets.token_hex(3)
        self.a, self.b, self.c = self.tag + "-a", self.tag + "-b", self.tag + "-c"
        self.made = []
        self.procs = []
        try:
            for ns in (self.a, self.b, self.c):
                sh(["ip", "netns", "add", ns])
                self.made.append(ns)
                sh(["ip", "-n", ns, "link", "set", "lo", "up"])
            sh(["ip", "-n", self.a, "link", "add", "v1", "type", "veth", "peer", "name", "v2", "netns", self.b])
            sh(["ip", "-n", self.a, "link", "add", "dum1", "type", "veth", "peer", "name", "dum2", "netns", self.c])
            sh(["ip", "-n", self.a, "addr", "add", "10.88.0.1/24", "dev", "v1"])
            sh(["ip", "-n", self.b, "addr", "add", "10.88.0.2/24", "dev", "v2"])
            sh(["ip", "-n", self.a, "addr", "add", "10.89.0.1/24", "dev", "dum1"])
            sh(["ip", "-n", self.c, "addr", "add", "10.89.0.2/24", "dev", "dum2"])
            for ns, dev in ((self.a, "v1"), (self.b, "v2"), (self.a, "dum1"), (self.c, "dum2")):
                sh(["ip", "-n", ns, "link", "set", dev, "up"])
        except BaseException:
            self.close()
            raise

    def daemon(self, ns, workdir, name, args):
        """Starts BIN args in ns with --port-file; returns (Popen, port)."""
        port_file = os.path.join(workdir, name + ".port")
        log = open(os.path.join(workdir, name + ".log"), "wb")
        p = subprocess.Popen(["ip", "netns", "exec", ns, BIN] + args + ["--port-file", port_file],
                             stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self.procs.append(p)

        def ready():
            assert p.poll() is None, "%s exited: %s" % (name, open(log.name).read())
            try:
                text = open(port_file).read()
            except FileNotFoundError:
                return None
            return text.strip() if text.endswith("\n") else None
        return p, int(poll(ready, START_TIMEOUT, what=name + "'s port file"))

    def run(self, ns, args, timeout=RUN_TIMEOUT):
        return subprocess.run(["ip", "netns", "exec", ns, FAST_BIN] + [str(a) for a in args],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=timeout)

    def close(self):
        bad = []
        for p in reversed(self.procs):
            if stop_pid(p) not in (0, None):
                bad.append("pid %d exited with %s" % (p.pid, p.returncode))
        for ns in reversed(self.made):
            sh(["ip", "netns", "del", ns], check=False)
        return bad


@pytest.fixture
def nets():
    n = Namespaces()
    yield n
    bad = n.close()
    assert not bad, bad


def test_a_node_bound_to_an_interface_uses_only_that_interface(nets, workdir):
    src = os.path.join(workdir, "payload.bin")
    digest = make_file(src, 900_000, seed=5)
    _, sport = nets.daemon(nets.b, workdir, "serve", ["serve", "--listen", "0.0.0.0:0",
                                                      "--data", os.path.join(workdir, "srv")])
    put = nets.run(nets.b, ["put", "--server", "10.88.0.2:%d" % sport, "--json", src])
    assert put.returncode == 0, put.stderr
    cid = json.loads(put.stdout)[0]["id"]

    def node(name, iface):
        data = os.path.join(workdir, name)
        _, port = nets.daemon(nets.a, workdir, name, [
            "node", "--listen", "0.0.0.0:0", "--data", data, "--discovery", "flood",
            "--bind-interface", iface, "--seed-server", "10.88.0.2:%d" % sport, "--peer-timeout", "3"])
        return data, port

    good_data, good_port = node("on-v1", "v1")
    bad_data, bad_port = node("on-dum1", "dum1")

    # Bound to v1: it fetches from the server through v1...
    out = os.path.join(workdir, "got-v1")
    g = nets.run(nets.a, ["get", "--data", good_data, cid, "-o", out])
    assert g.returncode == 0, g.stderr
    assert sha256_file(out) == digest
    # ... serves a client that comes through v1 ...
    out2 = os.path.join(workdir, "got-from-node")
    g = nets.run(nets.b, ["get", "--server", "10.88.0.1:%d" % good_port, cid, "-o", out2])
    assert g.returncode == 0, g.stderr
    assert sha256_file(out2) == digest
    # ... and nobody through loopback, though it listens on 0.0.0.0.
    g = nets.run(nets.a, ["get", "--server", "127.0.0.1:%d" % good_port, cid, "-o",
                          os.path.join(workdir, "via-lo"), "--timeout", "3"])
    assert g.returncode != 0
    assert not os.path.exists(os.path.join(workdir, "via-lo"))

    # Bound to dum1, which leads nowhere: the server is out of reach, and so is the node.
    g = nets.run(nets.a, ["get", "--data", bad_data, cid, "-o", os.path.join(workdir, "got-dum1")])
    assert g.returncode != 0
    assert b"no provider" in g.stderr or b"reachable" in g.stderr, g.stderr
    for ns, host in ((nets.b, "10.88.0.1"), (nets.a, "127.0.0.1")):
        g = nets.run(ns, ["ls", "--server", "%s:%d" % (host, bad_port), "--timeout", "3"])
        assert g.returncode != 0, (host, g.stdout)


def test_an_interface_that_does_not_exist_is_one_line_and_exit_1(workdir):
    p = subprocess.run([BIN, "node", "--listen", "127.0.0.1:0", "--data", os.path.join(workdir, "d"),
                        "--discovery", "flood", "--bind-interface", "pn-nonesuch0"],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    assert p.returncode == 1
    lines = p.stderr.decode().strip().splitlines()
    assert lines == ["peernet node: cannot bind to the interface pn-nonesuch0: no such interface"], lines
