"""A test network of Linux network namespaces, for fault tests between machines.

Topology: one namespace per host (directory, server, nodes, ...), each with one
veth `eth0` (10.77.0.X/24) whose other end sits in one more namespace that holds
a bridge `br0`. Every host's uplink is capped with a tbf qdisc. Faults are
injected with iproute2 alone:

* link down / up: the bridge-side end of a host's veth (`ip link set ... down`);
* partition: the ports of one half move to a second bridge `br1` in the bridge
  namespace (no frame crosses between the bridges), and back to `br0` to heal.

Every namespace made here is recorded by name and deleted at close(); nothing
else is touched. Daemons run through `ip netns exec NS BIN ...`, which execs
the binary in place, so the PID that Popen records is the peernet process.
"""
import os
import secrets
import subprocess

from conftest import FAST_BIN, START_TIMEOUT, poll
from p2p import Directory, Node, Daemon

SUBNET = "10.77.0"
IP_TIMEOUT = 15            # seconds any ip/tc command may take
TBF = ["rate", "40mbit", "burst", "64kb", "latency", "100ms"]   # every uplink's cap


def sh(args, check=True):
    """Runs one ip/tc/mount command, bounded in time; returns CompletedProcess (text)."""
    p = subprocess.run([str(a) for a in args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=IP_TIMEOUT, text=True)
    if check and p.returncode != 0:
        raise RuntimeError("%s -> %d: %s" % (" ".join(map(str, args)), p.returncode, p.stderr.strip()))
    return p


def netns_unavailable():
    """None if this process can make a namespace with a veth and a tbf qdisc, else the reason."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    name = "pn-%s-probe" % secrets.token_hex(3)
    try:
        r = sh(["ip", "netns", "add", name], check=False)
        if r.returncode != 0:
            return "cannot create a network namespace: %s" % r.stderr.strip()
        for cmd in (["ip", "-n", name, "link", "add", "pa", "type", "veth", "peer", "name", "pb"],
                    ["ip", "-n", name, "link", "set", "pa", "up"],
                    ["tc", "-n", name, "qdisc", "add", "dev", "pa", "root", "tbf"] + TBF):
            r = sh(cmd, check=False)
            if r.returncode != 0:
                return "%s failed: %s" % (" ".join(cmd), r.stderr.strip())
        return None
    except (OSError, subprocess.TimeoutExpired) as e:
        return "cannot run ip/tc: %s" % e
    finally:
        sh(["ip", "netns", "del", name], check=False)


class Topology:
    """Namespaces joined by a bridge. host(name) adds one; close() deletes all it made."""

    def __init__(self):
        self.tag = "pn-%s" % secrets.token_hex(3)
        self.made = []          # namespaces created, in order
        self.hosts = {}         # name -> (namespace, address, bridge port)
        self.br = self.tag + "-br"
        self._add_ns(self.br)
        sh(["ip", "-n", self.br, "link", "add", "br0", "type", "bridge"])
        sh(["ip", "-n", self.br, "link", "add", "br1", "type", "bridge"])
        for b in ("br0", "br1"):
            sh(["ip", "-n", self.br, "link", "set", b, "up"])

    def _add_ns(self, name):
        sh(["ip", "netns", "add", name])
        self.made.append(name)
        sh(["ip", "-n", name, "link", "set", "lo", "up"])

    def host(self, name):
        """Adds a namespace for `name` on the bridge; returns its address."""
        assert name not in self.hosts and len(name) <= 8
        i = len(self.hosts) + 10
        ns = "%s-%s" % (self.tag, name)
        port = "p%d" % i
        addr = "%s.%d" % (SUBNET, i)
        self._add_ns(ns)
        sh(["ip", "-n", self.br, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns])
        sh(["ip", "-n", self.br, "link", "set", port, "master", "br0"])
        sh(["ip", "-n", self.br, "link", "set", port, "up"])
        sh(["ip", "-n", ns, "addr", "add", addr + "/24", "dev", "eth0"])
        sh(["ip", "-n", ns, "link", "set", "eth0", "up"])
        sh(["tc", "-n", ns, "qdisc", "add", "dev", "eth0", "root", "tbf"] + TBF)
        self.hosts[name] = (ns, addr, port)
        return addr

    def ns(self, name):
        return self.hosts[name][0]

    def addr(self, name):
        return self.hosts[name][1]

    def exec_prefix(self, name):
        return ["ip", "netns", "exec", self.ns(name)]

    def link(self, name, up):
        """Takes the bridge side of name's veth down or up (the host sees no carrier)."""
        sh(["ip", "-n", self.br, "link", "set", self.hosts[name][2], "up" if up else "down"])

    def partition(self, names):
        """Cuts `names` off from everyone else: their ports move to bridge br1."""
        for n in names:
            sh(["ip", "-n", self.br, "link", "set", self.hosts[n][2], "master", "br1"])

    def heal(self):
        for _ns, _addr, port in self.hosts.values():
            sh(["ip", "-n", self.br, "link", "set", port, "master", "br0"])

    def close(self):
        """Deletes every namespace this topology made (their veths go with them).
        Returns the failures, as text."""
        failures = []
        for ns in reversed(self.made):
            r = sh(["ip", "netns", "del", ns], check=False)
            if r.returncode != 0:
                failures.append("ip netns del %s: %s" % (ns, r.stderr.strip()))
        self.made = []
        return failures


class NsMixin:
    """A p2p Daemon that runs in a namespace and listens on its address, port fixed."""

    def setup_ns(self, topo, host, port):
        self.topo = topo
        self.host_name = host
        self.listen = "%s:%d" % (topo.addr(host), port)

    @property
    def addr(self):
        return "%s:%d" % (self.topo.addr(self.host_name), self.port)


class NsDirectory(NsMixin, Directory):
    def __init__(self, topo, host, workdir, port=7071, bin=None, args=()):
        Directory.__init__(self, workdir, name=host, bin=bin or FAST_BIN, args=args)
        self.setup_ns(topo, host, port)

    def command(self):
        return self.topo.exec_prefix(self.host_name) + Directory.command(self)


class NsNode(NsMixin, Node):
    def __init__(self, topo, host, workdir, directory_addr, port=7072, bin=None, args=(), data_dir=None):
        Node.__init__(self, workdir, host, directory_addr, bin=bin or FAST_BIN,
                      args=["--discovery", "directory"] + list(args), data_dir=data_dir)
        self.setup_ns(topo, host, port)

    def command(self):
        return self.topo.exec_prefix(self.host_name) + Node.command(self)

    def wire_rx(self):
        return self.status()["totals"]["wire_bytes_received"]


class NsServer(NsMixin, Daemon):
    """`peernet serve` in a namespace (the conftest Server is bound to loopback)."""

    def __init__(self, topo, host, workdir, port=7070, bin=None, args=()):
        Daemon.__init__(self, workdir, host, bin=bin or FAST_BIN, args=args)
        self.data_dir = os.path.join(workdir, "srv-data")
        self.setup_ns(topo, host, port)

    def command(self):
        return self.topo.exec_prefix(self.host_name) + [
            self.bin, "serve", "--listen", self.listen, "--data", self.data_dir,
            "--port-file", self.port_file] + self.args


def wait_listening(topo, host, port, timeout=START_TIMEOUT):
    """Waits until something in host's namespace listens on TCP port."""
    def listening():
        r = sh(["ip", "netns", "exec", topo.ns(host), "ss", "-Hltn", "sport", "= :%d" % port], check=False)
        return r.returncode == 0 and r.stdout.strip()
    return poll(listening, timeout, interval=0.1, what="a listener on %s:%d" % (host, port))
