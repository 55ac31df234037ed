"""Faults between machines (issue 10 point 3), on a network of namespaces.

A directory, a server, six nodes and a hostile peer, each in its own network
namespace, joined through a bridge (netns.py), every uplink capped with tbf.
During real transfers of a few MiB (the seed's upload capped so that one takes
a few seconds) these faults are injected with ip: a node's link down for 5 s;
the network split in two halves for 10 s; the directory SIGKILLed and started
again on its address; the server SIGKILLed and started again under a
`get --server`; a node's disk (a tmpfs) full mid-download; peers that send junk
or stall after the handshake. For each, the download finishes after the fault
(or fails with one line, and finishes once there is room), the file's SHA-256
equals the source's (no unverified byte written), no whole chunk is fetched
twice (bytes received, from `status --json`, against the file size), and no
process is restarted by hand except the one the fault killed.

Per fault the time to recover, the bytes received beyond the file size and the
outcome go to a JSON file (PEERNET_NETNS_FAULTS_JSON, default
netns-faults.json beside PEERNET_FAST_BIN) that `bench/bench.py --only h`
turns into the table of bench/RESULTS.md. These are figures, not assertions.

Every namespace, mount and process made here is removed or stopped in the
fixture's teardown by the name or PID recorded when it was made.
"""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import (BIN, CHUNK, FAST_BIN, make_file, poll, sha256_file, state_chunks_done, stop_pid,
                      wait_progress)
from p2p import MiB, stop_all, wait_procs
import netns
import pnwire

FILE_SIZE = 3 * MiB
SEED_RATE = "512K"          # n1's and the server's upload cap: a file takes ~6 s
DOWNLOAD_TIMEOUT = 60       # seconds any one download may take, faults included
NODES = ["n1", "n2", "n3", "n4", "n5", "n6"]
HALF = ["n4", "n5", "n6"]   # the side of the partition cut off from the directory, server and seed
TMPFS_SMALL = "2m"          # n6's data directory: full before a 3 MiB download is
TMPFS_BIG = "64m"
RESULTS = []


def results_path():
    return os.environ.get("PEERNET_NETNS_FAULTS_JSON") or os.path.join(
        os.path.dirname(os.path.abspath(FAST_BIN)), "netns-faults.json")


def record(fault, recover_s, twice, outcome, resume_s=None, **extra):
    """recover_s: fault's end to the download's end; resume_s: to the next verified chunk."""
    row = {"fault": fault, "recover_s": None if recover_s is None else round(recover_s, 2),
           "resume_s": None if resume_s is None else round(resume_s, 2),
           "bytes_twice": twice, "outcome": outcome}
    row.update(extra)
    RESULTS.append(row)


class World:
    """The topology and its processes; .close() undoes all of it."""

    def __init__(self, work):
        self.work = work
        self.topo = None
        self.daemons = []
        self.others = []          # Popen of evil peers and clients
        self.mounts = []

    def close(self):
        failures = stop_all(list(reversed(self.daemons)))
        for p in self.others:
            if p.poll() is None:
                try:
                    stop_pid(p, signal.SIGKILL, 10)
                except AssertionError as e:
                    failures.append(str(e))
        for m in self.mounts:
            r = netns.sh(["umount", m], check=False)
            if r.returncode != 0:
                netns.sh(["umount", "-l", m], check=False)
        if self.topo:
            failures += self.topo.close()
        return failures


def start_get(w, node, cid, out):
    """Starts `get` on node; the world stops it at close if a test failed before it ended."""
    p = subprocess.Popen(node.get_cmd(cid, out), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    w.others.append(p)
    return p


def transfer_of(node, cid):
    for t in node.status().get("transfers", []):
        if t["id"] == cid:
            return t
    return None


def wait_chunks(node, cid, want, proc):
    """Waits until node holds `want` chunks of cid while proc (its get) runs."""
    def progressed():
        assert proc.poll() is None, "the download ended before the fault: %r" % (proc.communicate(),)
        t = transfer_of(node, cid)
        return t is not None and t["chunks_have"] >= want
    poll(progressed, 30, interval=0.05, what="%s to hold %d chunks of %s" % (node.name, want, cid))


def wait_resumed(node, cid, proc):
    """After a fault: the monotonic time node holds one chunk more of cid than now
    (or its get has ended)."""
    t = transfer_of(node, cid)
    have = t["chunks_have"] if t else None

    def more():
        if proc.poll() is not None:
            return True
        t = transfer_of(node, cid)
        return t is None or have is None or t["chunks_have"] > have
    poll(more, DOWNLOAD_TIMEOUT, interval=0.05, what="%s to get a chunk of %s after the fault" % (node.name, cid))
    return time.monotonic()


def settle_rx(node, quiet=1.0, limit=10.0):
    """Waits (at most `limit` s) until node has received nothing for `quiet` s; returns its bytes received."""
    rx, t_change, t_end = node.wire_rx(), time.monotonic(), time.monotonic() + limit
    while time.monotonic() < t_end and time.monotonic() - t_change < quiet:
        time.sleep(0.1)
        now = node.wire_rx()
        if now != rx:
            rx, t_change = now, time.monotonic()
    return rx


def finish(proc, what):
    (rc, so, se), = wait_procs([proc], DOWNLOAD_TIMEOUT)
    assert rc == 0, "%s: exit %s\nstdout %r\nstderr %r" % (what, rc, so, se)
    return json.loads(so.decode().strip().splitlines()[-1]), time.monotonic()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    why = netns.netns_unavailable()
    if why:
        pytest.skip(why)
    work = str(tmp_path_factory.mktemp("netns"))
    w = World(work)
    try:
        w.topo = topo = netns.Topology()
        for h in ["dir", "srv", "evil"] + NODES:
            topo.host(h)
        # n6's data directory: a small tmpfs, full before a 3 MiB download is.
        n6_data = os.path.join(work, "n6-tmpfs")
        os.makedirs(n6_data)
        netns.sh(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % TMPFS_SMALL, "tmpfs", n6_data])
        w.mounts.append(n6_data)
        # The hostile peers: junk after the handshake, and silence.
        certs = pnwire.make_ed25519_cert(work)
        assert certs, "openssl cannot make an Ed25519 certificate"
        evil = os.path.join(os.path.dirname(os.path.abspath(__file__)), "evilpeer.py")
        w.evil_out = {}
        for mode, port in (("garbage", 7070), ("stall", 7071)):
            path = os.path.join(work, "evil-%s.out" % mode)
            f = open(path, "wb")
            w.others.append(subprocess.Popen(
                topo.exec_prefix("evil") + [str(a) for a in (sys.executable, evil, mode, topo.addr("evil"),
                                                                port, certs[0], certs[1], 170)], stdin=subprocess.DEVNULL, stdout=f, stderr=f))
            f.close()
            w.evil_out[mode] = path
            netns.wait_listening(topo, "evil", port)
        # The directory and server run under ASan (they are killed and restarted);
        # the nodes run the fast build, except the two that live through link faults.
        w.dir = netns.NsDirectory(topo, "dir", os.path.join(work, "dir"), bin=BIN)
        w.daemons.append(w.dir)
        w.dir.start()
        w.srv = netns.NsServer(topo, "srv", os.path.join(work, "srv"), bin=BIN, args=["--up-rate", SEED_RATE])
        w.daemons.append(w.srv)
        w.srv.start()
        w.nodes = {}
        for name in NODES:
            args = []
            if name == "n1":
                args = ["--up-rate", SEED_RATE]
            if name == "n2":
                args = ["--seed-server", "%s:7070" % topo.addr("evil"),
                        "--seed-server", "%s:7071" % topo.addr("evil")]
            n = netns.NsNode(topo, name, os.path.join(work, name), w.dir.addr,
                             bin=BIN if name in ("n3", "n4") else None, args=args,
                             data_dir=n6_data if name == "n6" else None)
            w.daemons.append(n)
            w.nodes[name] = n
            n.start(wait=False)
        for n in w.nodes.values():
            n.wait_started()
        for n in w.nodes.values():
            n.wait_registered(timeout=30)
        # One 3 MiB file per fault, held by n1 only.
        w.files = {}
        for i, key in enumerate(["base", "link", "part", "dir", "disk", "evil"]):
            src = os.path.join(work, "src-%s.bin" % key)
            digest = make_file(src, FILE_SIZE, seed=1000 + i)
            w.files[key] = (w.nodes["n1"].add_id(src), digest)
        yield w
    finally:
        failures = w.close()
        with open(results_path(), "w") as f:
            json.dump({"file_size": FILE_SIZE, "seed_rate": SEED_RATE, "tbf": " ".join(netns.TBF),
                       "rows": RESULTS}, f, indent=1)
        assert not failures, "\n".join(failures)


def node_download(w, node, key, fault=None, min_chunks=2):
    """Runs `get` of file `key` on node; calls fault() once min_chunks are in,
    which returns the monotonic time the fault ended. Returns (json, t_start,
    t_done, t_fault_end, t_resumed, bytes received beyond the file size)."""
    cid, digest = w.files[key]
    out = os.path.join(w.work, "%s-%s.out" % (node.name, key))
    rx0 = node.wire_rx()
    t0 = time.monotonic()
    p = start_get(w, node, cid, out)
    t_end = t_resumed = None
    if fault:
        wait_chunks(node, cid, min_chunks, p)
        t_end = fault()
        t_resumed = wait_resumed(node, cid, p)
    res, t_done = finish(p, "%s get %s" % (node.name, key))
    assert sha256_file(out) == digest, "%s: the file differs from the source" % key
    extra = node.wire_rx() - rx0 - FILE_SIZE
    return res, t0, t_done, t_end, t_resumed, extra


def test_baseline(world):
    """No fault: the overhead every other row is compared with."""
    res, t0, t_done, _, _, extra = node_download(world, world.nodes["n3"], "base")
    assert extra < CHUNK, "no fault, yet %d bytes beyond the file came" % extra
    record("none (baseline)", None, extra, "done in %.1f s" % (t_done - t0), seconds=t_done - t0)


def test_link_down_5s(world):
    topo = world.topo

    def fault():
        topo.link("n3", up=False)
        time.sleep(5)
        topo.link("n3", up=True)
        return time.monotonic()
    res, t0, t_done, t_end, t_res, extra = node_download(world, world.nodes["n3"], "link", fault)
    assert extra < CHUNK, "%d bytes beyond the file: a chunk was fetched twice" % extra
    record("n3's link down 5 s", t_done - t_end, extra, "done, sha256 ok", resume_s=t_res - t_end)


def test_partition_10s(world):
    topo = world.topo

    def fault():
        topo.partition(HALF)
        time.sleep(10)
        topo.heal()
        return time.monotonic()
    res, t0, t_done, t_end, t_res, extra = node_download(world, world.nodes["n4"], "part", fault)
    assert extra < CHUNK, "%d bytes beyond the file: a chunk was fetched twice" % extra
    # Every node of the cut-off half is back with the directory, untouched.
    for name in HALF:
        world.nodes[name].wait_registered(timeout=30)
    record("network split in two for 10 s ({n4,n5,n6} from the rest)", t_done - t_end, extra, "done, sha256 ok",
           resume_s=t_res - t_end)


def test_directory_killed_and_restarted(world):
    d = world.dir
    n5, n4 = world.nodes["n5"], world.nodes["n4"]
    t = {}

    def fault():
        d.kill9()
        time.sleep(3)
        d.start()          # same --listen address and port
        t["restart"] = time.monotonic()
        return t["restart"]
    res, t0, t_done, t_end, t_res, extra = node_download(world, n5, "dir", fault)
    assert extra < CHUNK, "%d bytes beyond the file: a chunk was fetched twice" % extra
    # The whole network comes back to the new directory without a hand on any node...
    for n in world.nodes.values():
        n.wait_registered(timeout=40)
    t_all = time.monotonic()
    # ...and a look-up through it finds n1's share again: n4 fetches the same file.
    cid, digest = world.files["dir"]
    out = os.path.join(world.work, "n4-dir-again.out")
    rx0 = n4.wire_rx()
    res2, t_done2 = finish(start_get(world, n4, cid, out), "n4 get after the directory restart")
    assert sha256_file(out) == digest
    # Not asserted: n4 fetches from n1 and n5 at once, and in the end game a
    # copy already sent before its CANCEL arrives still comes.
    extra2 = n4.wire_rx() - rx0 - FILE_SIZE
    record("directory SIGKILLed, back 3 s later", max(t_done, t_all) - t_end, extra,
           "download done; all 6 nodes re-registered %.1f s after the restart; a new look-up "
           "finds the file and n4 fetches it from 2 providers (%d bytes beyond the size)" % (
               t_all - t["restart"], extra2), resume_s=t_res - t_end)


def test_server_killed_during_get(world):
    topo, srv = world.topo, world.srv
    src = os.path.join(world.work, "src-srv.bin")
    digest = make_file(src, FILE_SIZE, seed=2000)
    put = subprocess.run(topo.exec_prefix("n2") + [FAST_BIN, "put", "--server", srv.addr, "--json", src],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert put.returncode == 0, put.stderr
    cid = json.loads(put.stdout)[0]["id"]
    out = os.path.join(world.work, "srv-get.out")
    p = subprocess.Popen(topo.exec_prefix("n2") + [FAST_BIN, "get", "--server", srv.addr, "--json",
                                                   "--no-progress", "--timeout", "30", cid, "-o", out],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    world.others.append(p)
    state, nchunks = out + ".pnpart.state", FILE_SIZE // CHUNK
    wait_progress(p, state, nchunks, 2)
    srv.kill9()
    time.sleep(2)
    srv.start()
    t_end = time.monotonic()
    have = state_chunks_done(state, nchunks)
    poll(lambda: p.poll() is not None or state_chunks_done(state, nchunks) > have, DOWNLOAD_TIMEOUT,
         what="get --server to verify a chunk after the restart")
    t_res = time.monotonic()
    res, t_done = finish(p, "get --server")
    assert sha256_file(out) == digest
    twice = res["bytes_downloaded"] + res["bytes_resumed"] - FILE_SIZE
    assert twice < CHUNK, "%d bytes fetched twice" % twice
    record("server SIGKILLed under get --server, back 2 s later", t_done - t_end, twice,
           "done in the same get, sha256 ok", resume_s=t_res - t_end)


def test_disk_full_mid_download(world):
    n6 = world.nodes["n6"]
    cid, digest = world.files["disk"]
    out = os.path.join(world.work, "n6-disk.out")
    rx0 = n6.wire_rx()
    p = start_get(world, n6, cid, out)
    (rc, so, se), = wait_procs([p], DOWNLOAD_TIMEOUT)
    lines = [l for l in se.decode(errors="replace").splitlines() if l.strip()]
    assert rc != 0, "a 3 MiB download into a %s tmpfs succeeded: %r" % (TMPFS_SMALL, so)
    assert len(lines) == 1 and lines[0].startswith("peernet get: "), lines
    assert "space" in lines[0].lower(), lines[0]
    assert not os.path.exists(out)
    assert n6.alive()
    # Chunks that n1 had handed to its connection before the CANCELs of the
    # dropped download still arrive (and are dropped): let them land first.
    rx1 = settle_rx(n6)
    # Room again (the same tmpfs, grown), and the same get resumes.
    netns.sh(["mount", "-o", "remount,size=%s" % TMPFS_BIG, world.mounts[0]])
    t_end = time.monotonic()
    res, t_done = finish(start_get(world, n6, cid, out), "n6 get after space was freed")
    assert sha256_file(out) == digest
    assert res["bytes_resumed"] > 0, res
    # The chunks verified and written before the disk filled are not fetched again:
    # the second get receives what was missing, plus less than a chunk of messages.
    second = n6.wire_rx() - rx1
    assert second < FILE_SIZE - res["bytes_resumed"] + CHUNK, (second, res)
    # Chunks that came while the disk was full could not be kept: those come twice.
    extra = n6.wire_rx() - rx0 - FILE_SIZE
    record("n6's disk (tmpfs %s) full mid-download, grown to %s" % (TMPFS_SMALL, TMPFS_BIG),
           t_done - t_end, extra, "one line: %s; then done, %d bytes resumed, sha256 ok; chunks that came while the "
           "disk was full are fetched again" % (
               lines[0], res["bytes_resumed"]))


def test_hostile_peers(world):
    """n2 has two --seed-server peers that answer with junk or stall."""
    n2 = world.nodes["n2"]
    res, t0, t_done, _, _, extra = node_download(world, n2, "evil")
    for mode, path in world.evil_out.items():
        with open(path) as f:
            text = f.read()
        # Each got a request after the handshake and answered it with junk or silence.
        want = "sending junk" if mode == "garbage" else "type 0x10, no answer"
        assert want in text, "the %s peer was never asked for anything: %r" % (mode, text)
    assert n2.alive()
    base = [r for r in RESULTS if r["fault"].startswith("none")]
    lost = (t_done - t0) - base[0]["seconds"] if base else None
    record("junk and stalling peers (n2's --seed-servers)", lost, extra,
           "done in %.1f s, sha256 ok (recover = time beyond the baseline)" % (t_done - t0))
