#!/usr/bin/env python3
"""Distribution time: client-server against peer-to-peer (issue 3, point 7).

One source distributes a file of F bytes to N nodes, for N = 1, 2, 4, 8, 16, 32:

  client-server: `peernet serve --up-rate u_s` holds the file and N
      `peernet get --server` clients start at once (every node fetches from
      the source alone). Lower bound D_cs = max(N*F/u_s, F/d_min).
  peer-to-peer:  a directory, a seed `peernet node --up-rate u_s --share FILE`
      and N `peernet node --up-rate u`; the N downloads start at once, each
      by the request `peernet get` sends on its node's control socket (sent
      from here: see ctl_gets; --p2p-start cli launches N `peernet get`
      processes instead, and make bench shows one such run beside). Lower bound
      D_p2p = max(F/u_s, F/d_min, N*F/(u_s + N*u))  (Kurose and Ross).

No download caps are set in either model, so d_min is infinite and the F/d_min
terms drop out. D is measured from the start of the N downloads (client
processes released from a barrier; get requests sent) to the last one's end
(exit; "got" answer), and also as the largest of the downloads' own "seconds".

Used by bench.py (measure(), render(), plot()), or alone:

    python3 bench/distribution.py --bin build/peernet [--quick] [--svg PATH] [--md PATH]

Every process started here is stopped by its PID (SIGTERM, then SIGKILL after a
bounded wait), every wait is bounded, temp dirs are removed, also on Ctrl-C. A
slow result is a figure; a broken run (a process that does not start, a get
that fails or delivers wrong bytes) raises DistError.
"""
import argparse
import hashlib
import json
import os
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

MIB = 1024 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
P2P_RUNS = 5             # peer-to-peer runs per N; the median is reported
SAMPLE_S = 0.25          # status / CPU sampling period during a run

DEFAULT_NS = (1, 2, 4, 8, 16, 32)
QUICK_NS = (1, 2, 4)


class DistError(Exception):
    """A broken run: something did not start, a get failed or gave wrong bytes."""


class Interrupted(Exception):
    pass


# ---------------------------------------------------------------- processes

class Procs:
    """The processes of one run; all stopped by PID in stop_all()."""

    def __init__(self):
        self.started = []

    def spawn(self, argv, out_path=None, env=None, stdin=subprocess.DEVNULL):
        out = open(out_path, "wb") if out_path else subprocess.DEVNULL
        try:
            p = subprocess.Popen(argv, stdin=stdin, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True, env=env)
        finally:
            if out_path:
                out.close()
        self.started.append(p)
        return p

    def stop_all(self, procs=None):
        """SIGTERM to every running one, one shared bounded wait, SIGKILL to the rest."""
        procs = [p for p in (self.started if procs is None else procs) if p.returncode is None]
        for p in procs:
            try:
                if p.poll() is None:
                    os.kill(p.pid, signal.SIGTERM)
            except (ProcessLookupError, ChildProcessError):
                pass
        deadline = time.monotonic() + STOP_TIMEOUT
        for p in procs:
            try:
                p.wait(timeout=max(0.05, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"distribution: pid {p.pid} ignored SIGTERM; killing it", file=sys.stderr)
                try:
                    os.kill(p.pid, signal.SIGKILL)
                    p.wait(timeout=STOP_TIMEOUT)
                except (ProcessLookupError, ChildProcessError, subprocess.TimeoutExpired):
                    pass
            except ChildProcessError:
                pass


def proc_cpu(pid):
    """user+system CPU seconds of a running process; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def proc_wchar(pid):
    try:
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                if line.startswith("wchar:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def machine_jiffies():
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v) - idle, sum(v)


def wait_port_file(path, proc, what, timeout=START_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DistError(f"{what} exited with status {proc.returncode} at start")
        try:
            text = open(path).read().strip()
            if text:
                return int(text)
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    raise DistError(f"{what} did not write {path} within {timeout:.0f} s")


def ctl_status(sock_path, timeout=2.0):
    """The node's status JSON, straight from its control socket (no process spawned)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(sock_path)
        s.sendall(b'{"cmd":"status"}\n')
        buf = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
            # One JSON object a line (node_ctl.c); the last says ok or err.
            if buf.endswith(b"\n") and json.loads(buf.split(b"\n")[-2]).get("reply") in ("ok", "err"):
                break
    finally:
        s.close()
    for line in buf.split(b"\n"):
        if line.strip():
            reply = json.loads(line)
            if reply.get("reply") == "status":
                return reply["status"]
    raise DistError(f"no status from {sock_path}: {buf[:200]!r}")


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                return h.hexdigest()
            h.update(b)


def make_random_file(path, size):
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            b = os.urandom(min(left, 1 << 20))
            f.write(b)
            h.update(b)
            left -= len(b)
    return h.hexdigest()


def run_cmd(argv, timeout=60):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise DistError(f"{' '.join(argv)} exited {r.returncode}: {r.stderr.strip()[-400:]}")
    return r.stdout


def parse_rate(s):
    mult = {"K": 1024, "M": MIB, "G": 1024 * MIB}
    s = str(s).strip()
    if s[-1:].upper() in mult:
        return float(s[:-1]) * mult[s[-1].upper()]
    return float(s)


# ---------------------------------------------------------------- one run

def launch_clients(procs, argvs, outdir):
    """Starts every client at once: each is spawned as a shell that waits at a shared barrier (reading a
    pipe) and then execs the client, and the barrier opens when all are spawned. Spawned one after the
    other, the last of 32 clients started ~0.4 s after the first, which D counted although no node had
    been asked yet. Returns (procs, the moment the barrier opened, seconds the spawns took before it)."""
    ps = []
    r, w = os.pipe()
    t_spawn = time.monotonic()
    try:
        for i, argv in enumerate(argvs):
            ps.append(procs.spawn(["/bin/sh", "-c", 'read _ ; exec "$@"', "sh"] + list(argv),
                                  out_path=os.path.join(outdir, f"client{i}.out"), stdin=r))
    finally:
        os.close(r)
        t0 = time.monotonic()
        os.close(w)  # every `read` ends (EOF): the clients exec together; their stdin stays at EOF
    return ps, t0, t0 - t_spawn


def ctl_gets(socks, cid, outs, cwd, timeout, on_tick=None):
    """Starts the N downloads through the nodes' control sockets at once, the request `peernet get`
    sends ({"cmd":"get",...}, node_ctl.c), without N processes: on one 2-core host their launch
    (~20 ms of CPU each, 0.7 s at N = 32) fell inside D, at the moment the swarm forms, a cost the
    modelled swarm (a node per machine) does not have. Every socket is connected before t0; D runs
    from the first request to the last "got". Returns (t0, per node (end from t0, the "got" reply))."""
    sel = selectors.DefaultSelector()
    conns = []
    try:
        for path in socks:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conns.append(s)
            s.connect(path)
        t0 = time.monotonic()
        for i, s in enumerate(conns):
            s.sendall((json.dumps({"cmd": "get", "id": cid, "out": outs[i], "cwd": cwd, "force": True})
                       + "\n").encode())
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, i)
        bufs = [b""] * len(conns)
        got = [None] * len(conns)
        ended = set()
        deadline = t0 + timeout
        next_tick = t0 + SAMPLE_S  # the first status reads a tick after the start, not amid the requests
        while len(ended) < len(conns):
            now = time.monotonic()
            if now > deadline:
                raise DistError(f"{len(conns) - len(ended)} of {len(conns)} downloads did not finish "
                                f"within {timeout:.0f} s")
            if on_tick and now >= next_tick:
                on_tick(now - t0)
                next_tick = time.monotonic() + SAMPLE_S
            for key, _ in sel.select(timeout=min(SAMPLE_S, max(0.0, next_tick - time.monotonic()))):
                i = key.data
                data = key.fileobj.recv(65536)
                t = time.monotonic() - t0
                if not data:
                    raise DistError(f"node {i + 1} closed its control connection before answering the get")
                bufs[i] += data
                while b"\n" in bufs[i]:
                    line, bufs[i] = bufs[i].split(b"\n", 1)
                    reply = json.loads(line)
                    kind = reply.get("reply")
                    if kind == "got":
                        got[i] = (t, reply)
                    elif kind == "err":
                        raise DistError(f"node {i + 1}: get failed: {reply.get('error')}")
                    elif kind == "ok":
                        if got[i] is None:
                            raise DistError(f"node {i + 1}: get ended without a result")
                        ended.add(i)
                        sel.unregister(key.fileobj)
        return t0, got
    finally:
        sel.close()
        for s in conns:
            s.close()


def wait_clients(ps, t0, timeout, on_tick=None):
    """Reaps the clients (bounded); returns per client (exit time from t0, status, user+sys CPU s)."""
    done = {}
    deadline = t0 + timeout
    next_tick = time.monotonic()
    while len(done) < len(ps):
        for i, p in enumerate(ps):
            if i in done:
                continue
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid == p.pid:
                p.returncode = os.waitstatus_to_exitcode(status)
                done[i] = (time.monotonic() - t0, p.returncode, ru.ru_utime + ru.ru_stime)
        now = time.monotonic()
        if on_tick and now >= next_tick:
            on_tick(now - t0)
            next_tick = now + SAMPLE_S
        if now > deadline and len(done) < len(ps):
            raise DistError(f"{len(ps) - len(done)} of {len(ps)} clients did not finish within {timeout:.0f} s")
        time.sleep(0.005)
    return [done[i] for i in range(len(ps))]


def client_results(ps, ends, outdir, outs, want):
    res = []
    for i, (t_end, status, cpu) in enumerate(ends):
        text = open(os.path.join(outdir, f"client{i}.out"), "rb").read().decode("utf-8", "replace")
        if status != 0:
            raise DistError(f"client {i} ({' '.join(map(str, ps[i].args))[:160]}) exited {status}: "
                            f"{text.strip()[-300:]}")
        js = None
        for line in reversed(text.strip().splitlines()):
            if line.startswith("{"):
                js = json.loads(line)
                break
        if js is None or not js.get("ok", True):
            raise DistError(f"client {i} printed no result: {text.strip()[-300:]}")
        res.append(delivered(f"client {i}", outs[i], want, t_end, cpu, js))
    return res


def delivered(who, path, want, t_end, cpu, js):
    """One download's figures from its JSON result, once its file is checked (and removed)."""
    if sha256_file(path) != want:
        raise DistError(f"{who} delivered wrong bytes ({path})")
    os.unlink(path)
    return {"end": t_end, "cpu": cpu, "seconds": float(js["seconds"]),
            "bytes": int(js.get("bytes_downloaded", 0)), "peers": js.get("peers")}


def run_cs(binary, work, outdir, n, size, src, want, us, timeout, log):
    """One client-server run with n clients; returns its figures."""
    procs = Procs()
    try:
        sdir = os.path.join(work, f"cs-server-{n}")
        port_file = os.path.join(work, f"cs-port-{n}")
        srv = procs.spawn([binary, "serve", "--listen", "127.0.0.1:0", "--data", sdir, "--port-file", port_file,
                           "--up-rate", str(int(us))], out_path=os.path.join(work, f"cs-server-{n}.log"))
        port = wait_port_file(port_file, srv, "peernet serve")
        addr = f"127.0.0.1:{port}"
        out = run_cmd([binary, "put", "--server", addr, "--no-progress", src])
        cid = out.split()[0]
        time.sleep(0.5)  # the upload bucket refills to its (small) burst, as in every run
        outs = [os.path.join(outdir, f"cs{n}-{i}.bin") for i in range(n)]
        argvs = [[binary, "get", "--server", addr, cid, "-o", outs[i], "--json", "--no-progress", "-f"]
                 for i in range(n)]
        cpu0 = proc_cpu(srv.pid)
        w0 = proc_wchar(srv.pid)
        j0 = machine_jiffies()
        self0 = resource.getrusage(resource.RUSAGE_SELF)
        samples = []

        def tick(t):
            c = proc_cpu(srv.pid)
            if c is not None:
                samples.append((t, c))

        ps, t0, spawn_s = launch_clients(procs, argvs, outdir)
        ends = wait_clients(ps, t0, timeout, tick)
        wall = max(e[0] for e in ends)
        srv_cpu = proc_cpu(srv.pid) - cpu0
        srv_sent = proc_wchar(srv.pid) - w0 if w0 is not None else None
        j1 = machine_jiffies()
        self1 = resource.getrusage(resource.RUSAGE_SELF)
        clients = client_results(ps, ends, outdir, outs, want)
        procs.stop_all()
        client_cpu = sum(c["cpu"] for c in clients)
        return {
            "n": n, "wall": wall, "self_max": max(c["seconds"] for c in clients),
            "first": min(c["end"] for c in clients), "spawn_s": spawn_s,
            "clients": [{"end": c["end"], "seconds": c["seconds"]} for c in clients],
            "server_cpu": srv_cpu, "client_cpu": client_cpu, "cpu_total": srv_cpu + client_cpu,
            "server_wire_sent": srv_sent,
            "server_payload": n * size,
            "peak_server_cores": peak_rate(samples),
            "machine_busy": (j1[0] - j0[0]) / max(1, j1[1] - j0[1]) * (os.cpu_count() or 1),
            "bench_cpu": (self1.ru_utime + self1.ru_stime) - (self0.ru_utime + self0.ru_stime),
        }
    finally:
        procs.stop_all()


def peak_rate(samples, window=1.0):
    """Highest CPU rate (cores) over any ~window-second stretch of (t, cpu seconds) samples."""
    best = 0.0
    j = 0
    for i in range(len(samples)):
        while j < i and samples[i][0] - samples[j][0] > window:
            j += 1
        k = max(0, j - 1)
        dt = samples[i][0] - samples[k][0]
        if dt >= window * 0.5:
            best = max(best, (samples[i][1] - samples[k][1]) / dt)
    return best


def run_p2p(binary, work, outdir, n, size, src, want, us, u, timeout, log, start="ctl"):
    """One peer-to-peer run: directory, seed and n nodes; returns its figures."""
    procs = Procs()
    base = tempfile.mkdtemp(prefix=f"p2p-{n}-", dir=work)  # every run of an N has its own
    try:
        dport_file = os.path.join(base, "dir.port")
        dproc = procs.spawn([binary, "directory", "--listen", "127.0.0.1:0", "--port-file", dport_file],
                            out_path=os.path.join(base, "dir.log"))
        dport = wait_port_file(dport_file, dproc, "peernet directory")
        daddr = f"127.0.0.1:{dport}"

        def node(name, rate, share=None):
            d = os.path.join(base, name)
            os.makedirs(d)
            argv = [binary, "node", "--listen", "127.0.0.1:0", "--data", d, "--discovery", "directory",
                    "--directory", daddr, "--port-file", os.path.join(d, "port"), "--up-rate", str(int(rate))]
            if share:
                argv += ["--share", share]
            return d, procs.spawn(argv, out_path=os.path.join(base, f"{name}.log"))

        t_setup = time.monotonic()
        seed_dir, seed = node("seed", us, share=src)
        nodes = [node(f"n{i}", u) for i in range(n)]
        for d, p in [(seed_dir, seed)] + nodes:
            wait_port_file(os.path.join(d, "port"), p, f"peernet node ({d})")
        # Every node connected to the directory, and the seed's share listed.
        deadline = time.monotonic() + START_TIMEOUT
        pending = [seed_dir] + [d for d, _ in nodes]
        cid = None
        while pending:
            if time.monotonic() > deadline:
                raise DistError(f"{len(pending)} nodes not connected to the directory within {START_TIMEOUT:.0f} s")
            left = []
            for d in pending:
                try:
                    st = ctl_status(os.path.join(d, "control.sock"))
                except (OSError, DistError, ValueError):
                    left.append(d)
                    continue
                if not st.get("directory", {}).get("connected"):
                    left.append(d)
                elif d == seed_dir:
                    if not st.get("shares"):
                        left.append(d)
                    else:
                        cid = st["shares"][0]["id"]
            pending = left
            if pending:
                time.sleep(0.05)
        setup_s = time.monotonic() - t_setup
        time.sleep(0.5)  # the registrations settle; buckets at their burst
        socks = [os.path.join(seed_dir, "control.sock")] + [os.path.join(d, "control.sock") for d, _ in nodes]
        long_running = [dproc, seed] + [p for _, p in nodes]
        cpu0 = {p.pid: proc_cpu(p.pid) for p in long_running}
        st0 = [ctl_status(s)["totals"] for s in socks]
        j0 = machine_jiffies()
        self0 = resource.getrusage(resource.RUSAGE_SELF)

        outs = [os.path.join(outdir, f"p2p{n}-{i}.bin") for i in range(n)]
        argvs = [[binary, "get", "--data", nodes[i][0], cid, "-o", outs[i], "--json", "--no-progress", "-f"]
                 for i in range(n)]
        timeline = []   # (t, seed up, sum nodes up, sum nodes down, nodes with a non-seed peer, cpu of all)
        seed_port = None

        def tick(t):
            nonlocal seed_port
            # CPU first, at the moment t stands for: the status reads that follow take a while
            # (33 control-socket round trips at N = 32, far longer on a saturated machine)
            row = {"t": t, "cpu": sum((proc_cpu(p.pid) or 0.0) for p in long_running)}
            try:
                sts = [ctl_status(s, timeout=1.0) for s in socks]
            except (OSError, DistError, ValueError):
                return
            if seed_port is None:
                seed_port = sts[0].get("port")
            row["seed_up"] = sts[0]["totals"]["bytes_uploaded"] - st0[0]["bytes_uploaded"]
            row["nodes_up"] = sum(s["totals"]["bytes_uploaded"] - b["bytes_uploaded"]
                                  for s, b in zip(sts[1:], st0[1:]))
            row["nodes_down"] = sum(s["totals"]["bytes_downloaded"] - b["bytes_downloaded"]
                                    for s, b in zip(sts[1:], st0[1:]))
            # a node "in the swarm": connected to at least one peer other than the seed
            row["meshed"] = sum(1 for s in sts[1:] if len(s.get("peers", [])) >= 2)
            row["peers"] = sum(len(s.get("peers", [])) for s in sts[1:])
            # per node (seed first): chunk bytes down, up, peers, peers not choking it
            row["down"] = [s["totals"]["bytes_downloaded"] - b["bytes_downloaded"] for s, b in zip(sts, st0)]
            row["up"] = [s["totals"]["bytes_uploaded"] - b["bytes_uploaded"] for s, b in zip(sts, st0)]
            row["npeers"] = [len(s.get("peers", [])) for s in sts]
            row["unchoked_by"] = [sum(1 for q in s.get("peers", []) if not q.get("choking_us")) for s in sts]
            timeline.append(row)

        if start == "cli":
            ps, t0, spawn_s = launch_clients(procs, argvs, outdir)
            ends = wait_clients(ps, t0, timeout, tick)
        else:
            t0, got = ctl_gets(socks[1:], cid, outs, outdir, timeout, tick)
            spawn_s = 0.0
        wall = max(e[0] for e in (ends if start == "cli" else got))
        tick(wall)
        cpu_long = sum((proc_cpu(p.pid) or 0.0) - (cpu0[p.pid] or 0.0) for p in long_running)
        j1 = machine_jiffies()
        self1 = resource.getrusage(resource.RUSAGE_SELF)
        st1 = [ctl_status(s)["totals"] for s in socks]
        if start == "cli":
            clients = client_results(ps, ends, outdir, outs, want)
        else:
            clients = [delivered(f"node {i + 1}", outs[i], want, t_end, 0.0, js)
                       for i, (t_end, js) in enumerate(got)]
        # Stop nodes first (they say goodbye to the directory), then the directory.
        procs.stop_all([seed] + [p for _, p in nodes])
        procs.stop_all()
        d_up = [a["bytes_uploaded"] - b["bytes_uploaded"] for a, b in zip(st1, st0)]
        d_wire = [a["wire_bytes_sent"] - b["wire_bytes_sent"] for a, b in zip(st1, st0)]
        d_down = [a["bytes_downloaded"] - b["bytes_downloaded"] for a, b in zip(st1, st0)]
        d_wire_in = [a["wire_bytes_received"] - b["wire_bytes_received"] for a, b in zip(st1, st0)]
        client_cpu = sum(c["cpu"] for c in clients)
        tl = timeline
        # when the seed had sent one copy; when every node had a non-seed peer
        t_copy = next((r["t"] for r in tl if r["seed_up"] >= size), None)
        t_mesh = next((r["t"] for r in tl if r["meshed"] >= n), None) if n > 1 else None
        t_relay = next((r["t"] for r in tl if r["nodes_up"] > 0), None)
        # Stalls: per node, the longest stretch of samples without a new byte while incomplete;
        # the seed's idle tail: from its last upload to D.
        stall = [0.0] * n
        for i in range(n):
            since = None
            for r in tl:
                if "down" not in r:
                    continue
                if r["down"][i + 1] >= size:
                    break
                if since is None or r["down"][i + 1] > since[1]:
                    since = (r["t"], r["down"][i + 1])
                stall[i] = max(stall[i], r["t"] - since[0])
        ups = [r for r in tl if "up" in r]
        seed_last = next((r["t"] for r in reversed(ups) if r["up"][0] < ups[-1]["up"][0]), 0.0) if ups else 0.0
        seed_last = min(wall, seed_last + SAMPLE_S) if seed_last else 0.0
        return {
            "stall_max": max(stall) if stall else 0.0,
            "stalled_nodes": sum(1 for x in stall if x >= 2.0),
            "seed_idle_tail": max(0.0, wall - seed_last) if ups else None,
            "n": n, "wall": wall, "self_max": max(c["seconds"] for c in clients),
            "first": min(c["end"] for c in clients), "spawn_s": spawn_s, "setup_s": setup_s,
            "clients": [{"end": c["end"], "seconds": c["seconds"], "peers": c["peers"]} for c in clients],
            "seed_up": d_up[0], "seed_wire": d_wire[0], "nodes_up": sum(d_up[1:]),
            "nodes_down": sum(d_down[1:]), "nodes_wire_in": sum(d_wire_in[1:]),
            "node_up_max": max(d_up[1:]) if n else 0,
            "cpu_long": cpu_long, "client_cpu": client_cpu, "cpu_total": cpu_long + client_cpu,
            "peak_cores": peak_rate([(0.0, sum((v or 0.0) for v in cpu0.values()))] +
                                    [(r["t"], r["cpu"]) for r in tl]),
            "machine_busy": (j1[0] - j0[0]) / max(1, j1[1] - j0[1]) * (os.cpu_count() or 1),
            "bench_cpu": (self1.ru_utime + self1.ru_stime) - (self0.ru_utime + self0.ru_stime),
            "t_seed_copy": t_copy, "t_mesh": t_mesh, "t_relay": t_relay,
            "seed_up_before_relay": next((r["seed_up"] for r in tl if r["nodes_up"] > 0), None),
            "timeline": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in tl],
        }
    finally:
        procs.stop_all()
        shutil.rmtree(base, ignore_errors=True)


# ---------------------------------------------------------------- measure

def bound_cs(n, size, us, dmin=None):
    return max(n * size / us, size / dmin if dmin else 0.0)


def bound_p2p(n, size, us, u, dmin=None):
    return max(size / us, size / dmin if dmin else 0.0, n * size / (us + n * u))


def measure(binary, ns=DEFAULT_NS, size=8 * MIB, us=2 * MIB, u=2 * MIB, log=print, keep_timeline=True,
            models=("cs", "p2p"), p2p_runs=P2P_RUNS, p2p_start="ctl", cli_compare=True):
    """Runs both models for every N; returns a dict of figures (render() and plot() take it).
    Peer-to-peer runs p2p_runs times per N (fresh processes each time) and keeps the median run: on
    2 shared cores one run's D moves by several percent with the host's load. Client-server runs
    once: its D is the server's cap times N (within 1-2%), and its runs take sum(N)·F/u_s."""
    binary = os.path.abspath(binary)
    work = tempfile.mkdtemp(prefix="peernet-dist-")
    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    outdir = tempfile.mkdtemp(prefix="peernet-dist-out-", dir=shm)
    t_start = time.monotonic()
    R = {"size": size, "us": us, "u": u, "ns": list(ns), "cs": [], "p2p": [], "p2p_runs": p2p_runs,
         "p2p_start": p2p_start,
         "cpus": os.cpu_count() or 1, "load_start": open("/proc/loadavg").read().split()[:3]}
    try:
        src = os.path.join(work, "file.bin")
        want = make_random_file(src, size)
        for n in (ns if "cs" in models else ()):
            b = bound_cs(n, size, us)
            log(f"distribution: client-server N={n:<2} (bound {b:6.2f} s) ...")
            r = run_cs(binary, work, outdir, n, size, src, want, us, timeout=max(60.0, 3 * b + 30), log=log)
            r["bound"] = b
            R["cs"].append(r)
            log(f"    D = {r['wall']:6.2f} s (clients' own max {r['self_max']:6.2f} s) = {r['wall'] / b:.2f}x bound; "
                f"CPU {r['cpu_total']:.1f} s ({r['cpu_total'] / r['wall']:.2f} cores avg)")
        for n in (ns if "p2p" in models else ()):
            b = bound_p2p(n, size, us, u)
            runs = []
            for k in range(max(1, p2p_runs)):
                log(f"distribution: peer-to-peer  N={n:<2} (bound {b:6.2f} s), run {k + 1} of {max(1, p2p_runs)} ...")
                r = run_p2p(binary, work, outdir, n, size, src, want, us, u, timeout=max(90.0, 10 * b + 60),
                            log=log, start=p2p_start)
                r["bound"] = b
                if not keep_timeline:
                    r.pop("timeline", None)
                runs.append(r)
                log(f"    D = {r['wall']:6.2f} s (clients' own max {r['self_max']:6.2f} s) = {r['wall'] / b:.2f}x "
                    f"bound; seed sent {r['seed_up'] / size:.2f} copies; CPU {r['cpu_total']:.1f} s "
                    f"({r['cpu_total'] / r['wall']:.2f} cores avg, peak {r['peak_cores']:.2f})")
            r = sorted(runs, key=lambda x: x["wall"])[(len(runs) - 1) // 2]  # the median (lower, if even)
            r["runs_wall"] = [x["wall"] for x in runs]
            R["p2p"].append(r)
        if "p2p" in models and p2p_start == "ctl" and cli_compare and ns:
            # The same run with N `peernet get` processes, once at the largest N: what their launch costs.
            n = max(ns)
            b = bound_p2p(n, size, us, u)
            log(f"distribution: peer-to-peer  N={n:<2} (bound {b:6.2f} s), with {n} `peernet get` processes ...")
            r = run_p2p(binary, work, outdir, n, size, src, want, us, u, timeout=max(90.0, 10 * b + 60),
                        log=log, start="cli")
            R["p2p_cli"] = {"n": n, "wall": r["wall"], "self_max": r["self_max"], "bound": b,
                            "client_cpu": r["client_cpu"], "cpu_total": r["cpu_total"],
                            "peak_cores": r["peak_cores"]}
            log(f"    D = {r['wall']:6.2f} s (clients' own max {r['self_max']:6.2f} s) = {r['wall'] / b:.2f}x "
                f"bound; the clients used {r['client_cpu']:.2f} CPU s")
        R["elapsed"] = time.monotonic() - t_start
        R["load_end"] = open("/proc/loadavg").read().split()[:3]
        return R
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(outdir, ignore_errors=True)


# ---------------------------------------------------------------- report

def fmt_rate(r):
    return f"{r / MIB:g} MiB/s"


def plot(R, path):
    """Writes the SVG: measured D and the bound against N, both models. matplotlib (Agg) if it
    imports, else a hand-written SVG. Returns the tool used."""
    ns = [r["n"] for r in R["cs"]]
    series = [
        ("client-server, measured", ns, [r["wall"] for r in R["cs"]], "#d62728", "solid", "o"),
        ("client-server bound N·F/u_s", ns, [r["bound"] for r in R["cs"]], "#d62728", "dashed", None),
        ("peer-to-peer, measured", [r["n"] for r in R["p2p"]], [r["wall"] for r in R["p2p"]], "#1f77b4",
         "solid", "s"),
        ("peer-to-peer bound max(F/u_s, N·F/(u_s+N·u))", [r["n"] for r in R["p2p"]],
         [r["bound"] for r in R["p2p"]], "#1f77b4", "dashed", None),
    ]
    title = (f"Distribution time of F = {R['size'] / MIB:g} MiB to N nodes "
             f"(u_s = {fmt_rate(R['us'])}, u = {fmt_rate(R['u'])}, d_min = ∞)")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        matplotlib.rcParams["svg.hashsalt"] = "peernet"  # stable ids: diffs show only figure changes
        fig, ax = plt.subplots(figsize=(8, 5))
        for label, xs, ys, color, style, marker in series:
            ax.plot(xs, ys, color=color, linestyle=style, marker=marker, label=label)
        ax.set_xscale("log", base=2)
        ax.set_xticks(ns)
        ax.set_xticklabels([str(x) for x in ns])
        ax.set_xlabel("N (nodes receiving the file)")
        ax.set_ylabel("time until the last node has the file (s)")
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=9)
        fig.tight_layout()
        fig.savefig(path, format="svg", metadata={"Date": None})
        plt.close(fig)
        return "matplotlib"
    except ImportError:
        write_svg_by_hand(path, title, series, ns)
        return "hand-written SVG (matplotlib not installed)"


def write_svg_by_hand(path, title, series, ns):
    import math
    W, H, L, Rm, T, B = 800, 500, 70, 20, 40, 60
    ymax = max(max(ys) for _, _, ys, _, _, _ in series) * 1.08
    step = 10 ** math.floor(math.log10(ymax / 5))
    for m in (1, 2, 5, 10):
        if ymax / (step * m) <= 8:
            step *= m
            break
    xlo, xhi = math.log2(min(ns)), math.log2(max(ns))

    def X(n):
        return L + (math.log2(n) - xlo) / max(1e-9, xhi - xlo) * (W - L - Rm)

    def Y(v):
        return H - B - v / ymax * (H - T - B)
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
         'font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="13">{title}</text>']
    y = 0.0
    while y <= ymax:
        o.append(f'<line x1="{L}" y1="{Y(y):.1f}" x2="{W - Rm}" y2="{Y(y):.1f}" stroke="#ddd"/>')
        o.append(f'<text x="{L - 6}" y="{Y(y) + 4:.1f}" text-anchor="end">{y:g}</text>')
        y += step
    for n in ns:
        o.append(f'<line x1="{X(n):.1f}" y1="{T}" x2="{X(n):.1f}" y2="{H - B}" stroke="#eee"/>')
        o.append(f'<text x="{X(n):.1f}" y="{H - B + 18}" text-anchor="middle">{n}</text>')
    o.append(f'<line x1="{L}" y1="{H - B}" x2="{W - Rm}" y2="{H - B}" stroke="black"/>')
    o.append(f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H - B}" stroke="black"/>')
    o.append(f'<text x="{(L + W - Rm) / 2}" y="{H - 20}" text-anchor="middle">N (nodes receiving the file)</text>')
    o.append(f'<text x="18" y="{(T + H - B) / 2}" text-anchor="middle" '
             f'transform="rotate(-90 18 {(T + H - B) / 2})">time until the last node has the file (s)</text>')
    for k, (label, xs, ys, color, style, marker) in enumerate(series):
        pts = " ".join(f"{X(x):.1f},{Y(v):.1f}" for x, v in zip(xs, ys))
        dash = ' stroke-dasharray="6,4"' if style == "dashed" else ""
        o.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
        if marker:
            for x, v in zip(xs, ys):
                o.append(f'<circle cx="{X(x):.1f}" cy="{Y(v):.1f}" r="3.5" fill="{color}"/>')
        ly = T + 14 + 18 * k
        o.append(f'<line x1="{L + 14}" y1="{ly}" x2="{L + 44}" y2="{ly}" stroke="{color}" stroke-width="2"{dash}/>')
        o.append(f'<text x="{L + 50}" y="{ly + 4}">{label}</text>')
    o.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(o) + "\n")


def opt(v):
    return "-" if v is None else f"{v:.2f}"


def src_constant(name, rel="src/node/node_int.h"):
    """A #define from the source tree next to this script (None if not found): the report quotes
    the value the measured build was made with rather than a number that may go stale."""
    import re
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), rel)
    try:
        m = re.search(rf"#define\s+{name}\s+(\d+)", open(path).read())
        return int(m.group(1)) if m else None
    except OSError:
        return None


def summary(R):
    cs = " ".join(f"{c['wall'] / c['bound']:.2f}" for c in R["cs"])
    pp = " ".join(f"{p['wall'] / p['bound']:.2f}" for p in R["p2p"])
    return (f"  distribution of {R['size'] / MIB:g} MiB to N = {','.join(str(c['n']) for c in R['cs'])}: "
            f"client-server D/bound {cs}; peer-to-peer D/bound {pp}")


def analysis(R):
    F, us, u = R["size"], R["us"], R["u"]
    out = []
    lead = (max(us / 10, 16 * 1024) + 256 * 1024) / us
    cs_r = [c["wall"] / c["bound"] for c in R["cs"]]
    out.append(f"* **Client-server: {min(cs_r):.2f}x to {max(cs_r):.2f}x of N·F/u_s.** The server's upload "
               "cap is the whole story: it sends N copies (\"server sent / F\" ≈ N) at u_s. A ratio a little "
               "under 1 is real, not an error: the token bucket starts full (a burst of max(u_s/10, 16 KiB)) "
               f"and lets one write (a 256 KiB chunk) go into debt, worth about {lead:.2f} s at u_s = "
               f"{fmt_rate(us)}, which the bound does not allow for.")
    cores = [c["cpu_total"] / c["wall"] for c in R["cs"]] + [p["cpu_total"] / p["wall"] for p in R["p2p"]]
    peaks = [c["peak_server_cores"] for c in R["cs"]] + [p["peak_cores"] for p in R["p2p"]]
    runs = [(c["n"], c["peak_server_cores"]) for c in R["cs"]] + [(p["n"], p["peak_cores"]) for p in R["p2p"]]
    peak_n, peak = max(runs, key=lambda x: x[1])
    if peak < 0.9 * R["cpus"]:
        out.append(f"* **CPU is not the limit.** Every process of a run together used {min(cores):.2f} to "
                   f"{max(cores):.2f} cores on average (peak 1-s average {peak:.2f}) of the machine's "
                   f"{R['cpus']}: at these caps the whole swarm moves at most (u_s + N·u) = "
                   f"{(us + max(R['ns']) * u) / MIB:g} MiB/s, far below what one uncapped peernet transfer "
                   "reaches (section a). The caps, not the machine, decide D; F and the caps were chosen so "
                   "that the whole run (both models, every N) takes a few minutes, since the client-server "
                   "runs alone take Σ N·F/u_s.")
    else:
        out.append(f"* **CPU: not the limit on average, but at moments.** Every process of a run together used "
                   f"{min(cores):.2f} to {max(cores):.2f} cores on average of the machine's {R['cpus']}, but the "
                   f"busiest 1-s stretch (N = {peak_n}) took {peak:.2f}: the start of a large peer-to-peer run "
                   "(N downloads starting at once, every node connecting to every other, a TLS "
                   "handshake each) fills the machine, and a node that waits for a core is late with its "
                   "requests, HAVEs and chunks. The simulator (section g) charges no CPU, which is one reason "
                   "its D is lower at the largest N.")
    multi = [p for p in R["p2p"] if p["n"] > 1]
    if R["p2p"]:
        p_r = [p["wall"] / p["bound"] for p in R["p2p"]]
        out.append(f"* **Peer-to-peer: {min(p_r):.2f}x to {max(p_r):.2f}x of its bound.** The bound needs the "
                   f"seed to send each chunk about once (F/u_s = {F / us:.1f} s) while the nodes pass chunks "
                   "among themselves from the first moment; what the runs show instead:")
    if multi:
        relay = [p["t_relay"] for p in multi if p["t_relay"] is not None]
        before = [p["seed_up_before_relay"] / F for p in multi if p["seed_up_before_relay"] is not None]
        refind = src_constant("NODE_REFIND_MS")
        if relay:
            late = refind and max(relay) >= 0.75 * refind / 1000
            out.append(f"  * *Swarm formation:* the first node-to-node chunk had come by the status read at "
                       f"{min(relay):.2f}–{max(relay):.2f} s after the gets started (N ≥ 2; reads every "
                       f"{SAMPLE_S:g} s, the first at {SAMPLE_S:g} s); until then the seed alone served "
                       f"every node, like a server, and had sent {min(before):.2f}–{max(before):.2f} copies "
                       "of F by then."
                       + (f" That is the directory re-find: a node learns of other downloaders only from "
                          f"the directory, and asks again only every NODE_REFIND_MS = {refind} ms "
                          "(src/node/node_int.h); at its first look-up the only provider is the seed."
                          if late else " So forming the swarm costs little here."))
        stalls = [p for p in multi if p["stalled_nodes"]]
        if stalls:
            worst = max(multi, key=lambda p: p["stall_max"])
            rechoke = src_constant("CHOKER_DEFAULT_RECHOKE_MS", "src/proto/choker.c") or \
                src_constant("CHOKER_DEFAULT_RECHOKE_MS", "src/proto/choker.h")
            import glob
            import re
            node_src = "".join(open(f).read() for f in glob.glob(os.path.join(
                os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src/node/*.c")))
            never_sent = node_src and not re.search(r"type\s*=\s*PN_MSG_NOT_INTERESTED", node_src)
            out.append(f"  * *Starved nodes set D (the tail).* At N = {', '.join(str(p['n']) for p in stalls)} "
                       f"some nodes got no byte at all for ≥ 2 s while incomplete (worst: {worst['stall_max']:.1f} s "
                       f"at N = {worst['n']}, {worst['stalled_nodes']} nodes), and the seed's uplink sat idle for the "
                       f"last {opt(worst['seed_idle_tail'])} s of that run while they waited: every uploader kept "
                       "its unchoke slots on peers that had already finished, and the slots moved only at the "
                       "periodic rechoke"
                       + (f" (CHOKER_DEFAULT_RECHOKE_MS = {rechoke} ms)" if rechoke else "")
                       + (". No code in src/node sends NOT_INTERESTED when a download completes, so an uploader "
                          "never learns that a slot is free (choker_interested(…, false) would hand it at once "
                          "to a waiting peer)." if never_sent else "."))
        copies = [p["seed_up"] / F for p in multi]
        once = max(p["nodes_down"] / (p["n"] * F) for p in multi)
        if max(copies) > 1.02:
            out.append(f"  * *The source sends more than one copy:* {min(copies):.2f}–{max(copies):.2f} copies "
                       "(seed's bytes_uploaded / F) for N ≥ 2. "
                       + ("No chunk reached a node twice (chunk bytes received / N·F at most "
                          f"{once:.2f}), so these are chunks a node did not yet have from the others: with its uplink "
                          "busy to the end, a seed sends more than F when D exceeds F/u_s, and the copies are the "
                          "sign of a late finish (of the nodes' uplinks left idle at the start and the end), not "
                          "its cause."
                          if once < 1.005 else
                          f"Some chunks reached a node twice (chunk bytes received / N·F up to {once:.2f}): "
                          "end-game copies, part of which came from the seed."))
        dup = [p["nodes_wire_in"] / (p["n"] * F) for p in multi]
        chunk_dup = [p["nodes_down"] / (p["n"] * F) for p in multi]
        out.append(f"  * *Bytes received:* the nodes received {min(dup):.2f}–{max(dup):.2f}x the bytes they "
                   f"needed on the wire (wire bytes in / N·F), of which chunk payload {min(chunk_dup):.2f}–"
                   f"{max(chunk_dup):.2f}x (chunk bytes received / N·F: above 1, end-game copies of a chunk "
                   "sent in full); the rest is TLS, framing and the control messages (HAVE, requests, "
                   "interest, choking).")
        util = [(p["seed_up"] + p["nodes_up"]) / ((us + p["n"] * u) * p["wall"]) for p in multi]
        out.append(f"  * *Upload capacity used:* all peers together uploaded {min(util):.2f}–{max(util):.2f} "
                   "of (u_s + N·u)·D; the rest of the swarm's upload capacity went unused.")
        tail = [p["wall"] - p["first"] for p in multi]
        out.append(f"  * *Finish spread:* the last node finished {min(tail):.2f}–{max(tail):.2f} s after the first.")
    return "\n".join(out)


def render(R, svg_rel="distribution.svg", plot_tool=None):
    """The markdown section for RESULTS.md."""
    F, us, u = R["size"], R["us"], R["u"]
    L = []
    w = L.append
    w("## Distribution time: client-server vs peer-to-peer")
    w("")
    w(f"One source gives a file of F = {F / MIB:g} MiB to N nodes (issue 3, point 7). Caps: the source "
      f"uploads at u_s = {fmt_rate(us)} in both models (`peernet serve --up-rate`, the seed's "
      f"`peernet node --up-rate`), every peer-to-peer node at u = {fmt_rate(u)} (`--up-rate`); no download "
      "caps anywhere, so d_min = ∞ and the F/d_min terms of the bounds drop out. Bounds (Kurose and Ross): "
      "D_cs = max(N·F/u_s, F/d_min) = N·F/u_s; D_p2p = max(F/u_s, F/d_min, N·F/(u_s + N·u)). "
      "D measured = client-server: from starting the N clients at once (spawned first, each waiting at a "
      "shared barrier, then released together) to the exit of the last one; peer-to-peer: from sending the "
      "N get requests at once, each on its node's control socket (the line `peernet get` sends; the sockets "
      "connected beforehand) to the last node's answer that its file is written"
      + (" (the bench sends them itself: N `peernet get` processes launched at once used "
         f"{R['p2p_cli']['client_cpu']:.2f} CPU s at N = {R['p2p_cli']['n']}, inside D and at the moment the "
         "swarm forms, a cost the modelled swarm of one node per machine does not have; that run gave "
         f"D = {R['p2p_cli']['wall']:.2f} s, {R['p2p_cli']['wall'] / R['p2p_cli']['bound']:.2f}x)"
         if R.get("p2p_cli") else "") +
      "; the largest of the downloads' own `seconds` beside D. Peer-to-peer: the median of "
      f"{R.get('p2p_runs', 1)} runs per N (every run in the last column; the details below are the median "
      "run's), as one run's D moves by several percent with the shared host's load; client-server: one run "
      "per N (the server's cap decides its D). Each run is a fresh set of processes "
      "(server; or directory, seed and N nodes, all connected to the directory before the clients start). "
      f"Took {R['elapsed']:.0f} s in all; load average before / after: {' '.join(R['load_start'])} / "
      f"{' '.join(R['load_end'])}.")
    w("")
    w(f"![distribution time against N]({svg_rel})")
    w("")
    w(f"Plot: [{svg_rel}]({svg_rel})" + (f" (drawn with {plot_tool})." if plot_tool else "."))
    w("")
    w("| N | D_cs measured (s) | clients' own max | D_cs bound (s) | ratio | "
      "D_p2p measured (s) | downloads' own max | D_p2p bound (s) | ratio | seed uploaded / F | server sent (CS) / F | "
      "D_p2p of every run (s) |")
    w("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    p2p = {r["n"]: r for r in R["p2p"]}
    for c in R["cs"]:
        p = p2p.get(c["n"])
        sent = c["server_wire_sent"]
        cells = [str(c["n"]), f"{c['wall']:.2f}", f"{c['self_max']:.2f}", f"{c['bound']:.2f}",
                 f"**{c['wall'] / c['bound']:.2f}x**"]
        if p:
            cells += [f"{p['wall']:.2f}", f"{p['self_max']:.2f}", f"{p['bound']:.2f}",
                      f"**{p['wall'] / p['bound']:.2f}x**", f"{p['seed_up'] / F:.2f}"]
        else:
            cells += ["-"] * 5
        cells.append(f"{sent / F:.2f}" if sent is not None else "-")
        cells.append(", ".join(f"{x:.2f}" for x in p.get("runs_wall", [p["wall"]])) if p else "-")
        w("| " + " | ".join(cells) + " |")
    w("")
    cs_ok = all(c["wall"] <= 1.1 * c["bound"] for c in R["cs"])
    p2p_ok = all(p["wall"] <= 1.2 * p["bound"] for p in R["p2p"])
    cs_worst = max(R["cs"], key=lambda c: c["wall"] / c["bound"])
    p_worst = max(R["p2p"], key=lambda p: p["wall"] / p["bound"]) if R["p2p"] else None
    w(f"Goals: client-server within 1.1x of its bound at every N — **{'met' if cs_ok else 'not met'}** "
      f"(worst {cs_worst['wall'] / cs_worst['bound']:.2f}x at N = {cs_worst['n']}); peer-to-peer within 1.2x "
      f"— **{'met' if p2p_ok else 'not met'}**"
      + (f" (worst {p_worst['wall'] / p_worst['bound']:.2f}x at N = {p_worst['n']})." if p_worst else "."))
    w("")
    w("\"server sent / F\" is the server's bytes written to its sockets during the run (`wchar` of "
      "/proc/PID/io: chunk payload plus TLS and framing), over F. \"seed uploaded / F\" is the seed's "
      "`totals.bytes_uploaded` (chunk payload) over F: how many copies the source had to send.")
    w("")
    # ---- p2p details
    w("Peer-to-peer details (from `peernet status` of every node, read over the control sockets "
      f"every {SAMPLE_S:g} s during the run):")
    w("")
    w("| N | first / last node done (s) | every node linked to another node at (s) | "
      "first node-to-node chunk at (s) | seed's copies sent by then | seed sent 1 copy at (s) | "
      "seed upload rate / u_s | all peers' upload / (u_s + N·u)·D | chunk bytes received / N·F | "
      "wire bytes received / N·F | peers per node (get) | longest stall of a node (s) | "
      "nodes stalled ≥ 2 s | seed idle at the end (s) |")
    w("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for p in R["p2p"]:
        n, D = p["n"], p["wall"]
        cap = (us + n * u) * D
        peers = [c["peers"] for c in p["clients"] if c["peers"] is not None]
        w(f"| {n} | {p['first']:.2f} / {D:.2f} | "
          f"{opt(p['t_mesh'])} | {opt(p['t_relay'])} | "
          f"{opt(None if p['seed_up_before_relay'] is None else p['seed_up_before_relay'] / F)} | "
          f"{opt(p['t_seed_copy'])} | "
          f"{p['seed_up'] / D / us:.2f} | {(p['seed_up'] + p['nodes_up']) / cap:.2f} | "
          f"{p['nodes_down'] / (n * F):.2f} | {p['nodes_wire_in'] / (n * F):.2f} | "
          f"{min(peers) if peers else '-'}–{max(peers) if peers else '-'} | {p['stall_max']:.2f} | "
          f"{p['stalled_nodes']} | {opt(p['seed_idle_tail'])} |")
    w("")
    # ---- CPU
    w(f"CPU (the machine has {R['cpus']} logical CPUs): CPU seconds of every process of the run "
      "(server or directory, seed and nodes from /proc/PID/stat before and after; the clients from "
      "`wait4` rusage), over D; the peak is the highest 1-second average of the long-running processes; "
      "\"machine busy\" is the whole machine from /proc/stat over the run, other users included.")
    w("")
    w("| N | CS CPU s (server + clients) | CS cores avg | CS server peak cores | CS machine busy (cores) | "
      "P2P CPU s (all processes) | P2P cores avg | P2P peak cores | P2P machine busy (cores) |")
    w("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c in R["cs"]:
        p = p2p.get(c["n"])
        cells = [str(c["n"]), f"{c['server_cpu']:.2f} + {c['client_cpu']:.2f}",
                 f"{c['cpu_total'] / c['wall']:.2f}", f"{c['peak_server_cores']:.2f}", f"{c['machine_busy']:.2f}"]
        if p:
            cells += [f"{p['cpu_total']:.2f}", f"{p['cpu_total'] / p['wall']:.2f}", f"{p['peak_cores']:.2f}",
                      f"{p['machine_busy']:.2f}"]
        else:
            cells += ["-"] * 4
        w("| " + " | ".join(cells) + " |")
    w("")
    w("Commands (per N; PORT, DPORT, CID and the directories are those of the run):")
    w("")
    w("```")
    w(f"peernet serve --listen 127.0.0.1:0 --data $W/server --port-file $W/port --up-rate {int(us)}")
    w("peernet put --server 127.0.0.1:PORT --no-progress $W/file.bin")
    w("peernet get --server 127.0.0.1:PORT CID -o $OUT/csI.bin --json --no-progress -f      # x N, at once")
    w("")
    w("peernet directory --listen 127.0.0.1:0 --port-file $W/dir.port")
    w(f"peernet node --listen 127.0.0.1:0 --data $W/seed --discovery directory --directory 127.0.0.1:DPORT "
      f"--port-file $W/seed/port --up-rate {int(us)} --share $W/file.bin")
    w(f"peernet node --listen 127.0.0.1:0 --data $W/nI --discovery directory --directory 127.0.0.1:DPORT "
      f"--port-file $W/nI/port --up-rate {int(u)}      # x N")
    w('{"cmd":"get","id":CID,"out":"$OUT/p2pI.bin","cwd":"$OUT","force":true}   # x N, at once: on $W/nI/control.sock')
    w("```")
    w("")
    w("### Analysis")
    w("")
    w(analysis(R))
    w("")
    return "\n".join(L)


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description="distribution time, client-server vs peer-to-peer")
    ap.add_argument("--bin", default="build/peernet")
    ap.add_argument("--quick", action="store_true", help=f"N = {', '.join(map(str, QUICK_NS))} only")
    ap.add_argument("--ns", default=None, help="comma-separated N values")
    ap.add_argument("--size-mib", type=float, default=8)
    ap.add_argument("--source-rate", default="2M", help="u_s")
    ap.add_argument("--node-rate", default="2M", help="u")
    ap.add_argument("--svg", default=None, help="write the plot here")
    ap.add_argument("--md", default=None, help="write the markdown section here (default: stdout)")
    ap.add_argument("--json", default=None, help="write every figure here")
    ap.add_argument("--models", default="cs,p2p", help="cs, p2p or both (diagnostics)")
    ap.add_argument("--p2p-runs", type=int, default=P2P_RUNS, help="peer-to-peer runs per N (the median is kept)")
    ap.add_argument("--no-cli-compare", action="store_true",
                    help="skip the extra run at the largest N with `peernet get` processes")
    ap.add_argument("--p2p-start", choices=("ctl", "cli"), default="ctl",
                    help="start the peer-to-peer downloads through the control sockets (ctl) or with N "
                         "`peernet get` processes (cli)")
    args = ap.parse_args()
    ns = [int(x) for x in args.ns.split(",")] if args.ns else (QUICK_NS if args.quick else DEFAULT_NS)

    def on_signal(signum, frame):
        raise Interrupted(f"signal {signum}")
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        R = measure(args.bin, ns=ns, size=int(args.size_mib * MIB), us=parse_rate(args.source_rate),
                    u=parse_rate(args.node_rate), models=args.models.split(","), p2p_runs=args.p2p_runs,
                    p2p_start=args.p2p_start, cli_compare=not args.no_cli_compare)
    except (KeyboardInterrupt, Interrupted) as e:
        print(f"\ndistribution: interrupted ({str(e) or 'Ctrl-C'})", file=sys.stderr)
        return 130
    except (DistError, subprocess.TimeoutExpired, OSError, ValueError) as e:
        print(f"distribution: broken run: {e}", file=sys.stderr)
        return 1
    if args.json:
        with open(args.json, "w") as f:
            json.dump(R, f, indent=1)
    svg_rel, tool = "distribution.svg", None
    if args.svg:
        tool = plot(R, args.svg)
        print(f"distribution: plot by {tool} -> {args.svg}")
        svg_rel = os.path.basename(args.svg)

    if not (R["cs"] and R["p2p"]):
        return 0  # a diagnostic run of one model: figures in --json only
    text = render(R, svg_rel, plot_tool=tool)
    print(summary(R))
    if args.md:
        with open(args.md, "w") as f:
            f.write(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
