"""The peer-to-peer model with real processes on loopback: `peernet directory`,
`peernet node`, and the client commands add/search/get/status/stop.

A swarm of 9 nodes, a provider killed mid-transfer, a corrupting provider, the
directory going away and coming back, keyword search, no provider reachable,
abuse of the directory, status, one node per data directory.

Every process is stopped by its PID; every wait is bounded in count and time;
tests assert behaviour (what was delivered, who served it, what was said), not
how fast it happened. Rate caps only give the swarm time to form.
"""
import errno
import json
import os
import select
import shutil
import signal
import socket
import ssl
import stat
import struct
import subprocess
import sys
import time

import pytest

from conftest import (BIN, CHUNK, FAST_BIN, CLI_TIMEOUT, assert_one_error_line, cid_raw, cid_str, make_file, poll, rss_kib, run,
                      sha256_file, state_chunks_done)
from p2p import CORRUPT_BIN, MiB, wait_found, wait_procs
from pnwire import client_context, frame, make_ed25519_cert, parse_frames

HELLO_NODE = bytes([0x01, 0x01, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00])  # HELLO v1, role node, port 0
T_ERROR, T_DIR_FIND, T_DIR_PROVIDERS = 0x02, 0x54, 0x55
WERR_BUSY = 6
WERR_LIMIT = 3


def transfer(node, cid):
    for t in node.status()["transfers"]:
        if t["id"] == cid:
            return t
    return None


def chunks_have(node, cid):
    t = transfer(node, cid)
    return t["chunks_have"] if t else 0


def peer_ids(node):
    return {p["id"] for p in node.status()["peers"]}


def incoming_files(node):
    try:
        return {f: os.path.getsize(os.path.join(node.incoming, f)) for f in os.listdir(node.incoming)}
    except FileNotFoundError:
        return {}


def start_get(node, cid, out, *extra, bin=None):
    return subprocess.Popen(node.get_cmd(cid, out, *extra, bin=bin), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish_get(proc, timeout=CLI_TIMEOUT):
    (rc, so, se), = wait_procs([proc], timeout)
    assert rc == 0, "get -> %s\nstdout: %r\nstderr: %r" % (rc, so, se)
    res = json.loads(so)
    assert res["ok"] is True, res
    return res


# ------------------------------------------------------------------ swarm

def test_swarm_one_seed_eight_nodes(net, workdir):
    """One seed (ASan build) and 8 nodes fetch one 32 MiB file at once with every
    upload capped at 8 MiB/s. All 8 copies are right, and the seed uploaded less
    than 8 copies' worth: the nodes served each other."""
    size = 32 * MiB
    src = os.path.join(workdir, "swarm.bin")
    digest = make_file(src, size, seed=32)
    d = net.directory()
    seed = net.node("seed", d, bin=BIN, args=["--share", src, "--up-rate", "8M"])
    nodes = [net.node("n%d" % i, d, bin=FAST_BIN, args=["--up-rate", "8M"]) for i in range(8)]
    for n in [seed] + nodes:
        n.wait_registered()
    cid = seed.status()["shares"][0]["id"]
    wait_found(nodes[0], ["swarm"], cid)

    outs = [os.path.join(workdir, "got%d.bin" % i) for i in range(8)]
    procs = [start_get(n, cid, o) for n, o in zip(nodes, outs)]
    results = wait_procs(procs, 90)
    for i, (rc, so, se) in enumerate(results):
        assert rc == 0, "node %d: get -> %s\nstdout: %r\nstderr: %r\nlog:\n%s" % (
            i, rc, so, se, nodes[i].log_tail())
        res = json.loads(so)
        assert res["ok"] is True and res["size"] == size and res["path"] == outs[i], res
        assert res["bytes_downloaded"] == size and res["bytes_resumed"] == 0, res
        assert res["peers"] >= 1, res
    print("swarm: seconds per node %s" % [json.loads(so)["seconds"] for _, so, _ in results])
    for o in outs:
        assert sha256_file(o) == digest

    seed_up = seed.status()["totals"]["bytes_uploaded"]
    others = [n.status() for n in nodes]
    others_up = sum(s["totals"]["bytes_uploaded"] for s in others)
    print("swarm: seed uploaded %.1f MiB, the others %.1f MiB" % (seed_up / MiB, others_up / MiB))
    assert 0 < seed_up < 8 * size, seed_up
    assert others_up > 0, [s["totals"] for s in others]
    # Every byte downloaded came from someone: the seed or a fellow node.
    assert seed_up + others_up >= 8 * size, (seed_up, others_up)
    for s in others:
        assert s["totals"]["bytes_downloaded"] == size, s["totals"]
        # A node shares what it downloaded from then on.
        assert cid in [x["id"] for x in s["shares"]], s["shares"]
        assert s["transfers"] == [], s["transfers"]


# ------------------------------------------------------------------ faults

def test_provider_killed_mid_transfer(net, workdir):
    """Three providers capped at 1 MiB/s; one is killed (SIGKILL) while it is
    serving; the download (ASan node) finishes from the other two, correct."""
    size = 12 * MiB
    src = os.path.join(workdir, "killed.bin")
    digest = make_file(src, size, seed=12)
    d = net.directory()
    provs = [net.node("p%d" % i, d, bin=FAST_BIN, args=["--share", src, "--up-rate", "1M"]) for i in range(3)]
    down = net.node("down", d, bin=BIN)
    for n in provs + [down]:
        n.wait_registered()
    cid = provs[0].status()["shares"][0]["id"]
    wait_found(down, ["killed"], cid, providers=3)

    out = os.path.join(workdir, "out.bin")
    proc = start_get(down, cid, out)
    victim = provs[1]
    poll(lambda: victim.status()["totals"]["bytes_uploaded"] >= CHUNK, 30, interval=0.1,
         what="the victim to serve a chunk")
    nchunks = size // CHUNK
    assert chunks_have(down, cid) < nchunks, "the download ended before the kill; the test proves nothing"
    victim.kill9()

    res = finish_get(proc)
    assert sha256_file(out) == digest
    assert res["bytes_downloaded"] == size
    survivors_up = sum(p.status()["totals"]["bytes_uploaded"] for p in (provs[0], provs[2]))
    assert survivors_up > 0
    assert victim.node_id not in peer_ids(down)
    assert down.alive()


def test_corrupting_provider_dropped(net, workdir):
    """An honest provider and a corrupting one (the test-only build damages every
    chunk it serves). The download is right; the node logs that the bad peer
    sent a chunk that does not match its hash and dropped it; the bad peer is
    no longer connected and is refused for the rest of the session."""
    size = 8 * MiB
    src = os.path.join(workdir, "honest.bin")
    digest = make_file(src, size, seed=8)
    src2 = os.path.join(workdir, "second.bin")
    digest2 = make_file(src2, 2 * MiB, seed=2)
    d = net.directory()
    honest = net.node("honest", d, bin=FAST_BIN, args=["--share", src, "--share", src2, "--up-rate", "1M"])
    bad = net.node("bad", d, bin=CORRUPT_BIN, args=["--share", src, "--share", src2])
    down = net.node("down", d, bin=BIN)
    for n in (honest, bad, down):
        n.wait_registered()
    cid = honest.status()["shares"][0]["id"]
    cid2 = honest.status()["shares"][1]["id"]
    wait_found(down, ["honest"], cid, providers=2)
    wait_found(down, ["second"], cid2, providers=2)

    out = os.path.join(workdir, "out.bin")
    res = down.get(cid, out)
    assert sha256_file(out) == digest
    assert res["bytes_downloaded"] == size

    bad_port = ":%d" % bad.port
    lines = [l for l in down.log_lines() if "does not match its hash" in l]
    assert lines, "no line about the bad chunk; log:\n%s" % down.log_tail()
    assert all(bad_port in l for l in lines), lines
    assert any("dropped" in l for l in lines), lines
    assert bad.node_id not in peer_ids(down)
    served_bad = bad.status()["totals"]["bytes_uploaded"]
    assert served_bad > 0

    # Refused for the rest of the session: another content both hold comes
    # from the honest one alone, and the bad one is never asked again.
    out2 = os.path.join(workdir, "out2.bin")
    down.get(cid2, out2)
    assert sha256_file(out2) == digest2
    assert bad.status()["totals"]["bytes_uploaded"] == served_bad
    assert bad.node_id not in peer_ids(down)
    # Nothing unverified was kept: the store holds exactly the right objects.
    objects = os.path.join(down.data_dir, "objects")
    for c, dg in ((cid, digest), (cid2, digest2)):
        assert sha256_file(os.path.join(objects, c)) == dg


def test_directory_restart(net, workdir):
    """The directory is killed during a download: the download goes on and
    completes; a new get or search waits for it (--peer-timeout, 3 s here) and
    then fails with one line naming the directory; the directory comes back on
    the same port and nodes register again (search finds the seed's file, a
    new get works)."""
    size = 8 * MiB
    src = os.path.join(workdir, "during.bin")
    digest = make_file(src, size, seed=80)
    src2 = os.path.join(workdir, "later.bin")
    digest2 = make_file(src2, 300 * 1024, seed=81)
    d = net.directory()
    seed = net.node("seed", d, bin=FAST_BIN, args=["--share", src, "--share", src2, "--up-rate", "1M"])
    down = net.node("down", d, bin=BIN, args=["--peer-timeout", "3"])
    for n in (seed, down):
        n.wait_registered()
    shares = {s["name"]: s["id"] for s in seed.status()["shares"]}
    cid, cid2 = shares["during.bin"], shares["later.bin"]
    wait_found(down, ["during"], cid)
    wait_found(down, ["later"], cid2)

    out = os.path.join(workdir, "out.bin")
    proc = start_get(down, cid, out)
    poll(lambda: chunks_have(down, cid) >= 2, 30, interval=0.1, what="the download to start")
    d.kill9()
    poll(lambda: not down.status()["directory"]["connected"], 20, interval=0.1,
         what="the node to notice the directory is gone")
    assert proc.poll() is None or proc.returncode == 0

    p = down.cli("get", cid2, "-o", os.path.join(workdir, "later-out.bin"), timeout=30)
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    line = assert_one_error_line(p, "get")
    assert "still no connection to the directory at %s after 3 s" % d.addr in line, line
    assert not os.path.exists(os.path.join(workdir, "later-out.bin"))
    p = down.cli("search", "later", timeout=30)
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    line = assert_one_error_line(p, "search")
    assert "still no connection to the directory" in line, line

    res = finish_get(proc)
    assert sha256_file(out) == digest and res["bytes_downloaded"] == size

    d.restart_same_port()
    # Both nodes register again: the seed's file is found, and a new get works.
    found = wait_found(down, ["during"], cid, providers=2, timeout=40)
    assert [e for e in found if e["id"] == cid][0]["providers"] == 2
    wait_found(down, ["later"], cid2, timeout=20)
    out2 = os.path.join(workdir, "later-out.bin")
    down.get(cid2, out2)
    assert sha256_file(out2) == digest2
    assert down.status()["directory"]["connected"] is True
    assert seed.status()["directory"]["connected"] is True


def test_every_provider_gone_then_a_new_one(net, workdir):
    """The only provider is killed mid-transfer; the get waits (within
    --peer-timeout, 30 s here) instead of failing, and when another node starts
    sharing the same file it finds it through the directory and finishes in the
    same get, fetching only what it lacked."""
    size = 4 * MiB
    src = os.path.join(workdir, "phoenix.bin")
    digest = make_file(src, size, seed=41)
    d = net.directory()
    first = net.node("first", d, bin=FAST_BIN, args=["--share", src, "--up-rate", "256K"])
    down = net.node("down", d, bin=BIN, args=["--peer-timeout", "30"])
    for n in (first, down):
        n.wait_registered()
    cid = first.status()["shares"][0]["id"]
    wait_found(down, ["phoenix"], cid)
    out = os.path.join(workdir, "out.bin")
    proc = start_get(down, cid, out)
    poll(lambda: chunks_have(down, cid) >= 2, 30, interval=0.1, what="two chunks")
    first.kill9()
    had = chunks_have(down, cid)
    time.sleep(3)
    assert proc.poll() is None, "the get gave up with its only provider gone: %r" % (proc.communicate(),)
    second = net.node("second", d, bin=FAST_BIN, args=["--share", src])
    second.wait_registered()
    res = finish_get(proc, timeout=60)
    assert sha256_file(out) == digest
    assert res["bytes_downloaded"] == size, res
    got_from_second = second.status()["totals"]["bytes_uploaded"]
    assert 0 < got_from_second <= size - had * CHUNK, (got_from_second, had)
    assert down.alive()


def test_no_provider_reachable(net, workdir):
    """The only provider is killed (SIGKILL: the directory still lists it).
    A get fails with one clear line after --peer-timeout 3 s, exit 1, and the
    partial download stays in DATA/incoming; a get with the provider still
    gone fails the same way and keeps it; once the provider is back the next
    get resumes from it."""
    size = 4 * MiB
    nchunks = size // CHUNK
    src = os.path.join(workdir, "lonely.bin")
    digest = make_file(src, size, seed=4)
    d = net.directory()
    seed_data = os.path.join(workdir, "seed-data")
    seed = net.node("seed", d, bin=FAST_BIN, data_dir=seed_data, args=["--share", src, "--up-rate", "256K"])
    down = net.node("down", d, bin=BIN, args=["--peer-timeout", "3"])
    for n in (seed, down):
        n.wait_registered()
    cid = seed.status()["shares"][0]["id"]
    wait_found(down, ["lonely"], cid)

    out = os.path.join(workdir, "out.bin")
    proc = start_get(down, cid, out)
    poll(lambda: chunks_have(down, cid) >= 1, 30, interval=0.1, what="a first chunk")
    seed.kill9()
    (rc, so, se), = wait_procs([proc], 60)
    assert rc == 1, (rc, so, se)
    err = [l for l in se.decode().splitlines() if l.strip()]
    assert len(err) == 1 and err[0].startswith("peernet get: "), err
    assert "no provider" in err[0] and "reachable" in err[0] and "partial" in err[0], err
    assert json.loads(so)["ok"] is False
    assert not os.path.exists(out)

    parts = incoming_files(down)
    assert parts and any(sz > 0 for sz in parts.values()), parts
    state = [f for f in parts if f.endswith(".state")]
    have = state_chunks_done(os.path.join(down.incoming, state[0]), nchunks) if state else None
    assert have is None or 1 <= have < nchunks, have

    # Still nobody: the same clear error, the partial kept.
    p = down.cli("get", cid, "-o", out, timeout=60)
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    line = assert_one_error_line(p, "get")
    assert "no provider" in line and "reachable" in line, line
    assert incoming_files(down).keys() >= parts.keys()

    # The provider comes back (same identity, new port): the get resumes.
    seed2 = net.node("seed-again", d, bin=FAST_BIN, data_dir=seed_data, args=["--up-rate", "4M"])
    assert seed2.node_id == seed.node_id
    seed2.wait_registered()
    res = down.get(cid, out, timeout=60)
    assert sha256_file(out) == digest
    assert res["bytes_resumed"] >= CHUNK and res["bytes_downloaded"] + res["bytes_resumed"] == size, res


# ------------------------------------------------------------------ search

def test_search_by_keywords(net, workdir):
    """Every word must match, case-insensitive, with provider counts; --json
    parses; nothing matching is exit 0 with an empty list."""
    files = {}
    for sub, name, seed in (("a", "quarterly-report-2025.pdf", 1), ("b", "Quarterly Budget.xlsx", 2),
                            ("c", "holiday photo.jpg", 3)):
        os.makedirs(os.path.join(workdir, sub))
        path = os.path.join(workdir, sub, name)
        make_file(path, 100 * 1024 + seed, seed=seed)
        files[name] = path
    d = net.directory()
    n1 = net.node("n1", d, bin=BIN, args=["--share", files["quarterly-report-2025.pdf"],
                                          "--share", files["holiday photo.jpg"]])
    n2 = net.node("n2", d, bin=FAST_BIN, args=["--share", files["quarterly-report-2025.pdf"]])
    n3 = net.node("n3", d, bin=FAST_BIN)
    for n in (n1, n2, n3):
        n.wait_registered()
    # Added through the control socket, not at start.
    budget = n2.add(files["Quarterly Budget.xlsx"])
    assert len(budget) == 1 and budget[0]["name"] == "Quarterly Budget.xlsx", budget
    ids = {s["name"]: s["id"] for s in n1.status()["shares"]}
    ids["Quarterly Budget.xlsx"] = budget[0]["id"]
    wait_found(n3, ["report"], ids["quarterly-report-2025.pdf"], providers=2)
    wait_found(n3, ["budget"], ids["Quarterly Budget.xlsx"])
    wait_found(n3, ["holiday"], ids["holiday photo.jpg"])

    r = n3.search("quarterly", "report")
    assert [(e["name"], e["providers"]) for e in r] == [("quarterly-report-2025.pdf", 2)], r
    assert r[0]["id"] == ids["quarterly-report-2025.pdf"] and r[0]["size"] == 100 * 1024 + 1

    r = n3.search("QUARTERLY")
    got = sorted((e["name"], e["providers"], e["id"]) for e in r)
    assert got == sorted([("quarterly-report-2025.pdf", 2, ids["quarterly-report-2025.pdf"]),
                          ("Quarterly Budget.xlsx", 1, ids["Quarterly Budget.xlsx"])]), r

    r = n3.search("Photo", "HOLIDAY")
    assert [e["name"] for e in r] == ["holiday photo.jpg"], r
    assert n3.search("quarterly", "photo") == []

    # Plain form: one line per result with its ID, name and provider count.
    p = n3.cli("search", "quarterly", "report", check=0)
    lines = p.stdout.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(ids["quarterly-report-2025.pdf"]) and lines[0].endswith("quarterly-report-2025.pdf")
    assert "2 peers" in lines[0], lines

    p = n3.cli("search", "--json", "zzyzxnothing", check=0)
    assert json.loads(p.stdout) == []
    p = n3.cli("search", "zzyzxnothing", check=0)
    assert p.stdout == b""
    assert "nothing" in p.stderr.decode() and "zzyzxnothing" in p.stderr.decode()


# ------------------------------------------------------------------ directory abuse

def test_directory_abuse(net, workdir):
    """Random bytes, then a TLS client flooding DIR_FIND (2000, in batches of 50
    sent back to back, each batch's answers read before the next): it gets
    ERROR BUSY and is disconnected; the directory still answers a node's
    search afterwards."""
    d = net.directory()
    src = os.path.join(workdir, "still-here.txt")
    make_file(src, 5000, seed=5)
    n = net.node("n", d, bin=FAST_BIN, args=["--share", src])
    n.wait_registered()

    # Random bytes on a raw TCP connection: closed, nothing else.
    raw = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    try:
        try:
            raw.sendall(os.urandom(16 * 1024))
        except OSError:
            pass
        raw.settimeout(20)
        closed = False
        for _ in range(100):
            try:
                b = raw.recv(65536)
            except (ConnectionResetError, socket.timeout):
                closed = True
                break
            if not b:
                closed = True
                break
        assert closed, "the directory kept a connection that sent random bytes"
    finally:
        raw.close()

    # The flood.
    certs = make_ed25519_cert(workdir)
    assert certs, "openssl cannot make an Ed25519 certificate"
    cid = "pn1" + "a" * 64
    find = lambda rid: frame(bytes([T_DIR_FIND]) + struct.pack(">I", rid) + cid_raw(cid)[:32] +
                             (1000).to_bytes(8, "big"))
    s = client_context(*certs).wrap_socket(socket.create_connection(("127.0.0.1", d.port), timeout=10),
                                           server_hostname=None)
    answers, busy, closed, sent = [], 0, False, 0
    data = bytearray()
    deadline = time.monotonic() + 60

    def drain(wait):
        nonlocal closed, busy
        while not closed and time.monotonic() < deadline:
            if not s.pending():
                r, _, _ = select.select([s], [], [], wait)
                if not r:
                    return
            try:
                b = s.recv(1 << 16)
            except (ssl.SSLWantReadError,):
                continue
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError):
                closed = True
                return
            if not b:
                closed = True
                return
            data.extend(b)
            frames, used = parse_frames(data)
            del data[:used]
            for f in frames:
                answers.append(f)
                if f[0] == T_ERROR and struct.unpack(">H", f[5:7])[0] == WERR_BUSY:
                    busy += 1

    try:
        s.sendall(frame(HELLO_NODE))
        batch = 50
        for start in range(0, 2000, batch):
            try:
                s.sendall(b"".join(find(start + i + 1) for i in range(batch)))
                sent += batch
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
                closed = True
                break
            # Read the answers to this batch before sending the next, so that
            # when the directory hangs up nothing of ours is left unread on
            # its side (which would turn its FIN into a RST that discards the
            # answers still waiting in our receive buffer).
            for _ in range(100):
                drain(0.02)
                if closed or len(answers) >= sent:
                    break
            if closed:
                break
        for _ in range(400):
            if closed or time.monotonic() >= deadline:
                break
            drain(0.1)
    finally:
        s.close()
    kinds = {f[0] for f in answers}
    print("flood: sent %d, answers %d, busy %d, closed %s" % (sent, len(answers), busy, closed))
    assert busy >= 1, "no ERROR BUSY among %d answers (types %r)" % (len(answers), kinds)
    assert T_DIR_PROVIDERS in kinds, kinds
    assert closed, "the flooding client was never disconnected (%d sent, %d answers)" % (sent, len(answers))
    assert sent <= 2000
    d.wait_log("too many requests", timeout=10)
    assert d.alive()

    # A normal node is still served.
    cid_real = n.status()["shares"][0]["id"]
    wait_found(n, ["still"], cid_real, timeout=20)
    assert n.status()["directory"]["connected"] is True


# ------------------------------------------------------------------ status and the control socket

def test_status_plain_and_json(net, workdir):
    src = os.path.join(workdir, "status-file.bin")
    size = 3 * CHUNK + 17
    digest = make_file(src, size, seed=9)
    d = net.directory()
    seed = net.node("seed", d, bin=FAST_BIN, args=["--share", src])
    down = net.node("down", d, bin=BIN)
    for n in (seed, down):
        n.wait_registered()
    cid = seed.status()["shares"][0]["id"]
    wait_found(down, ["status"], cid)
    out = os.path.join(workdir, "out.bin")
    down.get(cid, out)
    assert sha256_file(out) == digest

    s = down.status()
    assert s["node_id"] == down.node_id
    assert s["port"] == down.port and s["discovery"] == "directory"
    assert s["directory"] == {"address": d.addr, "connected": True, "refused_shares": 0}
    assert [p["id"] for p in s["peers"]] == [seed.node_id], s["peers"]
    peer = s["peers"][0]
    assert peer["address"] == seed.addr and peer["bytes_from"] == size, peer
    assert s["shares"] == [{"id": cid, "name": "status-file.bin", "size": size}], s["shares"]
    assert s["transfers"] == []
    assert s["totals"]["bytes_downloaded"] == size and s["totals"]["bytes_uploaded"] == 0, s["totals"]
    t = seed.status()["totals"]
    assert t["bytes_uploaded"] == size and t["bytes_downloaded"] == 0, t

    p = down.cli("status", check=0)
    text = p.stdout.decode()
    assert down.node_id in text, text
    assert "peers" in text and seed.node_id[:16] in text and seed.addr in text, text
    assert cid in text and "status-file.bin" in text, text
    assert "directory" in text and d.addr in text, text
    assert p.stderr == b""
    assert not text.lstrip().startswith("{")


def test_second_node_on_same_data_dir(net, workdir):
    """A second node on a data directory in use refuses to start, with one line
    saying so, exit 1; the first node goes on."""
    d = net.directory()
    first = net.node("first", d, bin=BIN)
    first.wait_registered()
    p = run(["node", "--listen", "127.0.0.1:0", "--data", first.data_dir, "--directory", d.addr],
            bin=FAST_BIN, timeout=30)
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    line = assert_one_error_line(p, "node")
    assert "another node is running" in line and first.data_dir in line, line
    assert first.alive()
    assert first.status()["node_id"] == first.node_id
    assert os.path.exists(os.path.join(first.data_dir, "control.sock"))


CTL_MAX_CLIENTS = 64          # node_ctl.c
CTL_REQUEST_TIMEOUT_S = 10


def test_control_socket_bounds(net, workdir):
    """The control socket holds at most 64 connections: one more is told so in
    one line, as is `peernet status`; a connection that sends no request is
    closed after 10 s with a line saying why, and the node answers again."""
    d = net.directory()
    n = net.node("ctl", d, bin=BIN)
    # A get that runs longer than the request timeout is not cut by it.
    src = os.path.join(workdir, "slow.bin")
    digest = make_file(src, 4 * CHUNK, seed=23)
    slow = net.node("slow", d, bin=FAST_BIN, args=["--share", src, "--up-rate", "64K"])
    for x in (n, slow):
        x.wait_registered()
    cid = slow.status()["shares"][0]["id"]
    wait_found(n, ["slow"], cid)
    out = os.path.join(workdir, "slow-out.bin")
    long_get = start_get(n, cid, out)
    path = os.path.join(n.data_dir, "control.sock")
    silent = []
    try:
        def connect():
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.settimeout(20)
            # The listen backlog is short: wait while the node accepts the ones before.
            poll(lambda: c.connect_ex(path) == 0, 10, interval=0.02, what="a control connection")
            return c
        for _ in range(CTL_MAX_CLIENTS - 1):   # the get holds one more
            silent.append(connect())
        t0 = time.monotonic()
        time.sleep(0.5)   # the node has accepted them all
        extra = connect()
        try:
            extra.sendall(b'{"cmd":"status"}\n')
        except BrokenPipeError:
            pass          # it answered and closed before reading
        answer = json.loads(extra.recv(4096))
        extra.close()
        assert answer["reply"] == "err" and "control connections already" in answer["error"], answer
        p = n.cli("status", timeout=30)
        assert p.returncode == 1, (p.stdout, p.stderr)
        assert "control connections already" in assert_one_error_line(p, "status")
        # Each silent connection is told why and closed, 10 s after it came.
        for c in silent:
            got = b""
            while not got.endswith(b"\n"):
                b = c.recv(4096)
                assert b, "closed without a word: %r" % got
                got += b
            reply = json.loads(got)
            assert reply["reply"] == "err", got
            assert reply["error"].startswith("no request within %d s" % CTL_REQUEST_TIMEOUT_S), got
            assert c.recv(4096) == b""
        waited = time.monotonic() - t0
        assert CTL_REQUEST_TIMEOUT_S - 1 <= waited <= CTL_REQUEST_TIMEOUT_S + 8, waited
        assert long_get.poll() is None, "the slow get ended before the timeout passed: %r" % (
            long_get.communicate(),)
    finally:
        for c in silent:
            c.close()
    finish_get(long_get, timeout=60)
    assert sha256_file(out) == digest
    assert n.status()["node_id"] == n.node_id
    assert n.alive()


def test_stop_command(net, workdir):
    """`peernet stop` ends the node (exit 0), removes its control socket, and the
    directory forgets it (BYE): it no longer counts as a provider."""
    src = os.path.join(workdir, "goodbye.bin")
    make_file(src, 1000, seed=10)
    d = net.directory()
    a = net.node("a", d, bin=BIN, args=["--share", src])
    b = net.node("b", d, bin=FAST_BIN, args=["--share", src])
    for n in (a, b):
        n.wait_registered()
    cid = a.status()["shares"][0]["id"]
    wait_found(b, ["goodbye"], cid, providers=2)
    a.cli("stop", check=0)
    assert a.proc.wait(timeout=20) == 0, a.log_tail()
    assert not os.path.exists(os.path.join(a.data_dir, "control.sock"))
    poll(lambda: [e["providers"] for e in b.search("goodbye") if e["id"] == cid] == [1], 10, interval=0.2,
         what="the directory to forget the stopped node")
    p = a.cli("status", timeout=30)
    assert p.returncode == 1
    assert "no node is running" in assert_one_error_line(p, "status")


def test_stop_capped_node_says_bye(net, workdir):
    src = os.path.join(workdir, "capped-bye.bin")
    make_file(src, 1000, seed=11)
    d = net.directory()
    a = net.node("a", d, bin=FAST_BIN, args=["--share", src, "--up-rate", "1M"])
    b = net.node("b", d, bin=FAST_BIN, args=["--share", src])
    for n in (a, b):
        n.wait_registered()
    cid = a.status()["shares"][0]["id"]
    wait_found(b, ["capped"], cid, providers=2)
    a.cli("stop", check=0)
    assert a.proc.wait(timeout=20) == 0, a.log_tail()
    try:
        poll(lambda: [e["providers"] for e in b.search("capped") if e["id"] == cid] == [1], 5, interval=0.2,
             what="the directory to forget the stopped capped node")
    finally:
        tls_errors = [l for l in d.log_lines() if "bad record mac" in l or "TLS error" in l]
    assert not tls_errors, tls_errors


def test_get_unknown_and_held_content(net, workdir):
    """A content ID nobody offers fails with one line saying so (exit 1) as soon
    as the directory has had time to hear from every provider (10 s after the
    node joined it: providers of a restarted directory come back within that),
    leaving nothing behind; a content the node holds is delivered without the
    network; sharing a missing file is one clear line."""
    src = os.path.join(workdir, "mine.bin")
    digest = make_file(src, CHUNK + 5, seed=12)
    d = net.directory()
    a = net.node("a", d, bin=BIN, args=["--peer-timeout", "30"])
    a.wait_registered()
    cid = a.add_id(src)
    unknown = cid_str(bytes(range(32)), 12345)
    out = os.path.join(workdir, "nobody.bin")
    p = a.cli("get", unknown, "-o", out, timeout=20)
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    line = assert_one_error_line(p, "get")
    assert "no node offers" in line and unknown in line, line
    assert not os.path.exists(out)
    assert a.status()["transfers"] == []

    out = os.path.join(workdir, "held.bin")
    res = a.get(cid, out)
    assert sha256_file(out) == digest and res["bytes_downloaded"] == 0, res
    # Without --force an existing file is kept.
    p = a.cli("get", cid, "-o", out, timeout=20)
    assert p.returncode == 1 and "already exists" in assert_one_error_line(p, "get")

    p = a.cli("add", os.path.join(workdir, "missing.bin"), timeout=20)
    assert p.returncode == 1
    assert "missing.bin" in assert_one_error_line(p, "add")


def test_names_with_format_controls_refused(net, server, workdir):
    """A file whose name holds U+202E (right-to-left override: 'evil<RLO>txt.exe'
    would show as 'evilexe.txt') is refused by `put` and by a node's `add`, with
    one line that shows the name escaped: no raw format control reaches the
    terminal."""
    name = "evil\u202etxt.exe"
    src = os.path.join(workdir, name)
    with open(src, "wb") as f:
        f.write(b"not what it seems\n")
    p = run(["put", "--server", server.addr, src])
    assert p.returncode == 1
    line = assert_one_error_line(p, "put")
    assert "\\xe2\\x80\\xae" in line and "\u202e".encode() not in p.stderr, p.stderr
    assert name not in json.dumps(server.ls(), ensure_ascii=False)
    d = net.directory()
    a = net.node("a", d, bin=BIN)
    a.wait_registered()
    p = a.cli("add", src, timeout=20)
    assert p.returncode == 1
    line = assert_one_error_line(p, "add")
    assert "\\xe2\\x80\\xae" in line and "\u202e".encode() not in p.stderr, p.stderr


def test_node_get_never_writes_through_a_planted_symlink(net, workdir):
    """The node writes PATH through PATH.pntmp; a symbolic link planted at
    PATH.pntmp is replaced, never followed: its target keeps its bytes."""
    src = os.path.join(workdir, "mine.bin")
    digest = make_file(src, 2 * CHUNK + 3, seed=14)
    d = net.directory()
    a = net.node("a", d, bin=BIN)
    a.wait_registered()
    cid = a.add_id(src)
    victim = os.path.join(workdir, "victim.txt")
    with open(victim, "wb") as f:
        f.write(b"keep me\n")
    mtime = os.stat(victim).st_mtime_ns
    out = os.path.join(workdir, "copy.bin")
    os.symlink(victim, out + ".pntmp")
    a.get(cid, out)
    assert sha256_file(out) == digest and not os.path.islink(out)
    with open(victim, "rb") as f:
        assert f.read() == b"keep me\n"
    assert os.stat(victim).st_mtime_ns == mtime


def test_commands_wait_for_the_directory(net, workdir, procs):
    """get and search sent while the node cannot reach its directory yet wait
    for it (at most --peer-timeout) and succeed once it is back; add holds the
    file at once and registers it then."""
    src = os.path.join(workdir, "late.bin")
    digest = make_file(src, 2 * CHUNK + 7, seed=15)
    d = net.directory()
    b = net.node("b", d, bin=BIN)
    b.wait_registered()
    cid = b.add_id(src)
    d.stop()
    a = net.node("a", d, bin=BIN, args=["--peer-timeout", "30"])
    out = os.path.join(workdir, "late.out")
    g = subprocess.Popen(a.get_cmd(cid, out), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    procs.append(g)
    s = subprocess.Popen([BIN, "search", "--data", a.data_dir, "--json", "late"], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    procs.append(s)
    other = os.path.join(workdir, "mine.bin")
    make_file(other, 1000, seed=16)
    mine = a.add_id(other)  # answered at once, though not registered yet
    time.sleep(1.5)
    assert g.poll() is None and s.poll() is None, "a command gave up instead of waiting for the directory"
    d.restart_same_port()
    (grc, gout, gerr), (src_, sout, serr) = wait_procs([g, s], 60)
    assert grc == 0, gerr
    assert sha256_file(out) == digest
    assert src_ == 0, serr
    # The search went out when a registered again; b may not have yet (its own
    # backoff), so it may be empty, but it answered instead of failing.
    assert [e["id"] for e in json.loads(sout)] in ([cid], [])
    wait_found(a, ["late"], cid)
    wait_found(b, ["mine"], mine)


def test_commands_say_what_they_waited_for(net, workdir):
    """With no directory at all, get and search fail after --peer-timeout with
    one line that names the directory and the last error; exit status 1."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    port = lst.getsockname()[1]
    lst.close()  # nothing listens there
    a = net.node("a", "127.0.0.1:%d" % port, bin=BIN, args=["--peer-timeout", "2"])
    unknown = cid_str(bytes(range(32)), 12345)
    p = a.cli("get", unknown, "-o", os.path.join(workdir, "x.bin"), timeout=30)
    assert p.returncode == 1
    line = assert_one_error_line(p, "get")
    assert "still no connection to the directory at 127.0.0.1:%d" % port in line, line
    p = a.cli("search", "anything", timeout=30)
    assert p.returncode == 1
    line = assert_one_error_line(p, "search")
    assert "still no connection to the directory" in line and "refused" in line, line


def _flood_identity(port, cert, source, names_per_msg, msgs, seed):
    """One made-up node: from source, HELLO, DIR_REGISTER, then msgs DIR_OFFERs of
    names_per_msg 255-byte names. Returns (registered, offers accepted, limits)."""
    import random
    rng = random.Random(seed)
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.settimeout(20)
    raw.bind((source, 0))
    raw.connect(("127.0.0.1", port))
    s = client_context(*cert).wrap_socket(raw, server_hostname=None)
    answers = []
    data = bytearray()

    def wait_answers(n):
        deadline = time.monotonic() + 20
        while len(answers) < n and time.monotonic() < deadline:
            b = s.recv(1 << 16)
            if not b:
                break
            data.extend(b)
            frames, used = parse_frames(data)
            del data[:used]
            answers.extend(f for f in frames if f[0] != 0x01)
    try:
        s.sendall(frame(HELLO_NODE) + frame(bytes([0x50]) + struct.pack(">IHB", 1, 7000, 0)))
        wait_answers(1)
        if not answers or answers[0][0] != 0x51:
            return False, 0, 0
        ok = limits = 0
        for m in range(msgs):
            body = bytearray([0x52]) + struct.pack(">IH", 2 + m, names_per_msg)
            for _ in range(names_per_msg):
                cid = cid_raw(cid_str(bytes(rng.getrandbits(8) for _ in range(32)), rng.randrange(1, 1 << 30)))
                name = ("".join(rng.choice("abcdefghij klmnop") for _ in range(251)) + ".bin").encode()
                body += cid + struct.pack(">H", len(name)) + name
            s.sendall(frame(bytes(body)))
            wait_answers(2 + m)
            if len(answers) < 2 + m:
                break
            last = answers[-1]
            if last[0] == 0x51:
                ok += names_per_msg
            elif last[0] == T_ERROR and struct.unpack(">H", last[5:7])[0] == WERR_LIMIT:
                limits += 1
            time.sleep(0.06)  # under the directory's per-connection request rate
        return True, ok, limits
    finally:
        s.close()


def test_registration_flood_from_one_address(net, workdir):
    """100 made-up identities from one address (127.0.5.5, another /24 than the
    real nodes') register and offer thousands of 255-byte names: the directory
    refuses past its per-address caps with ERROR LIMIT, its memory stays
    bounded, and real nodes elsewhere still register, share and find."""
    d = net.directory(bin=FAST_BIN)
    rss0 = rss_kib(d.pid)
    certs = []
    for i in range(100):
        sub = os.path.join(workdir, "id%d" % i)
        os.makedirs(sub)
        c = make_ed25519_cert(sub)
        assert c, "openssl cannot make an Ed25519 certificate"
        certs.append(c)
    registered = accepted = limits = 0
    for i, c in enumerate(certs):
        reg, ok, lim = _flood_identity(d.port, c, "127.0.5.5", 64, 2 if i < 90 else 0, seed=i)
        registered += reg
        accepted += ok
        limits += lim
    rss1 = rss_kib(d.pid)
    print("flood: %d identities registered, %d offers accepted, %d refused at a limit; directory RSS %d -> %d KiB"
          % (registered, accepted, limits, rss0, rss1))
    assert registered == 64, "per-address node cap: %d registered" % registered
    assert accepted <= 5000 and limits > 0
    assert rss1 - rss0 < 64 * 1024, "the directory grew by %d KiB" % (rss1 - rss0)
    # Real nodes on 127.0.0.1 still register, share and find.
    src = os.path.join(workdir, "real-report.txt")
    make_file(src, 4000, seed=17)
    a = net.node("a", d, bin=FAST_BIN)
    b = net.node("b", d, bin=FAST_BIN)
    a.wait_registered()
    b.wait_registered()
    cid = a.add_id(src)
    wait_found(b, ["real", "report"], cid)
    assert a.status()["directory"]["refused_shares"] == 0


NOBODY = 65534


def as_nobody():
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def test_data_directory_private_and_other_users_refused(net, workdir):
    """Even under umask 000 a node's data directory is 0700 and its identity
    and control socket 0600; another local user can neither reach the socket
    nor stop or query the node through it, and the node goes on."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run a command as another user")
    # A parent every user may traverse, so that only the node's own modes protect it.
    base = os.path.join("/tmp", "pn-private-%d" % os.getpid())
    os.makedirs(base)
    os.chmod(base, 0o755)
    # The other user runs a copy of the binary from there: the checkout may
    # sit under a directory only root can enter (mktemp -d makes one 0700).
    cli = os.path.join(base, "peernet")
    shutil.copy(FAST_BIN, cli)
    os.chmod(cli, 0o755)
    n = None
    try:
        d = net.directory()
        old = os.umask(0)
        try:
            n = net.node("private", d, bin=BIN, data_dir=os.path.join(base, "data"))
        finally:
            os.umask(old)
        n.wait_registered()
        data = n.data_dir
        sock = os.path.join(data, "control.sock")
        assert stat.S_IMODE(os.stat(data).st_mode) == 0o700, oct(os.stat(data).st_mode)
        assert stat.S_IMODE(os.lstat(sock).st_mode) & 0o077 == 0, oct(os.lstat(sock).st_mode)
        secret = [f for f in os.listdir(data) if "identity" in f or f.endswith(".pem") or f.endswith(".key")]
        assert secret, os.listdir(data)
        for f in secret:
            assert stat.S_IMODE(os.stat(os.path.join(data, f)).st_mode) & 0o077 == 0, f
        # Another user: the socket cannot be reached, and the CLI says so in one line.
        probe = subprocess.run([sys.executable, "-c",
                                "import socket,sys\ns=socket.socket(socket.AF_UNIX)\n"
                                "try:\n s.connect(sys.argv[1]); print('connected')\n"
                                "except OSError as e: print(e.errno)", sock],
                               preexec_fn=as_nobody, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        assert probe.stdout.decode().strip() == str(errno.EACCES), (probe.stdout, probe.stderr)
        for cmd in (["stop"], ["status"], ["get", n.node_id + "x", "-o", "/tmp/pn-nobody-out"]):
            p = subprocess.run([cli, cmd[0], "--data", data] + cmd[1:], preexec_fn=as_nobody,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
            assert p.returncode != 0, (cmd, p.stdout, p.stderr)
            lines = [l for l in p.stderr.decode(errors="replace").splitlines() if l.strip()]
            assert len(lines) == 1 and lines[0].startswith("peernet %s: " % cmd[0]), (cmd, lines)
        assert n.alive()
        assert n.status()["node_id"] == n.node_id
        assert not os.path.exists("/tmp/pn-nobody-out")
    finally:
        if n is not None and n.alive():
            assert n.stop() == 0, n.log_tail()
        shutil.rmtree(base, ignore_errors=True)
