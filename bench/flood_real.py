#!/usr/bin/env python3
"""Flooding on real nodes: messages per query and share of queries answered,
against the hop limit (--ttl 1..5) and the network size, for the plain flood
(--plain-flood) and the expanding ring, for items of two popularities (held by
one node; held by ~25% of the nodes). Beside them, the directory's single
round trip, measured on a real directory.

Every network is real `peernet node --discovery flood` processes on loopback,
in a seeded random overlay (each new node bootstraps to 1-2 random earlier
ones; --min-neighbors 2 --max-neighbors 4, so the overlay is sparse and the
hop limit matters). The hop limit and the flood mode are options of the node
that starts a query, so each node gets one of the ten (mode, ttl) settings,
round-robin, and a cell's queries come from the nodes with its setting.

Messages per query = the change, over one cell, of the sum over all nodes of
status.flood.queries_sent + status.flood.hits_sent, divided by the queries the
cell ran. Answered = the search listed the item. Every process is stopped by
its PID; every wait is bounded.

  python3 bench/flood_real.py [--bin build/peernet] [--sizes 12,24,48] [--out bench/flood-real.md]
"""
import argparse
import concurrent.futures
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

MODES = ("plain", "ring")
TTLS = (1, 2, 3, 4, 5)
MIN_NB, MAX_NB = 2, 4


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def sweep(pool, nodes):
    """flood counters of every node, read in parallel: {name: flood dict}."""
    futs = {n.name: pool.submit(n.flood) for n in nodes}
    return {k: f.result(timeout=60) for k, f in futs.items()}


def total(snap, keys=("queries_sent", "hits_sent")):
    return sum(v[k] for v in snap.values() for k in keys)


def settle(pool, nodes, window=0.6, timeout=20):
    """Sweeps until the message total is unchanged for `window` seconds (bounded)."""
    from floodnet import wait_stable
    return wait_stable(lambda: sweep(pool, nodes), window=window, timeout=timeout, interval=0.2)


def run_cli(bin, args, timeout=60):
    return subprocess.run([bin] + [str(a) for a in args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout)


def searches(pool, jobs, bin):
    """jobs: [(node, word, cid)] run at once; returns [answered bool, providers]."""
    def one(job):
        node, word, cid = job
        p = run_cli(bin, ["search", "--data", node.data_dir, "--json", word], timeout=60)
        if p.returncode != 0:
            return False, 0
        for e in json.loads(p.stdout):
            if e["id"] == cid:
                return True, e["providers"]
        return False, 0
    return list(pool.map(one, jobs))


def rss_mib(pids):
    tot = 0
    for pid in pids:
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        tot += int(line.split()[1])
        except FileNotFoundError:
            pass
    return tot / 1024.0


def bench_size(n_nodes, bin, seed, queries, root, pool):
    from floodnet import FloodNet, connected, bfs, poll
    rng = random.Random(seed * 1000 + n_nodes)
    net = FloodNet(os.path.join(root, "n%d" % n_nodes), bin=bin)
    res = {"n": n_nodes}
    try:
        configs = [(m, t) for m in MODES for t in TTLS]
        made = []
        t0 = time.monotonic()
        for i in range(n_nodes):
            boot = rng.sample(made, min(len(made), rng.choice((1, 2)))) if made else []
            mode, ttl = configs[i % len(configs)]
            args = ["--min-neighbors", MIN_NB, "--max-neighbors", MAX_NB, "--ttl", ttl]
            if mode == "plain":
                args.append("--plain-flood")
            nd = net.node("n%02d" % i, bootstrap=boot, args=args)
            nd.cfg = (mode, ttl)
            made.append(nd)
        # A node can stay cut off (its candidates all full, see the report): measure
        # the network as it is then, and say so.
        try:
            net.wait_connected(60, min_each=1, what="the %d-node overlay" % n_nodes)
            poll(lambda: all(len(v) >= MIN_NB for v in net.graph().values()), 15, interval=0.5)
        except AssertionError:
            pass
        g = net.graph()
        comp = max((set(bfs(g, s_)[0]) for s_ in g), key=len)
        res["outside"] = sorted(net.by_id(k).name for k in g if k not in comp)
        res["below_min"] = sorted(net.by_id(k).name for k, v in g.items() if len(v) < MIN_NB)
        if res["outside"]:
            log("N=%d: %d nodes outside the largest connected part after 60 s: %s" % (
                n_nodes, len(res["outside"]), res["outside"]))
        degs = [len(v) for v in g.values()]
        ecc = [max(bfs(g, s_)[0].values()) for s_ in comp]
        res.update(start_s=time.monotonic() - t0, mean_degree=sum(degs) / len(degs), diameter=max(ecc),
                   radius=min(ecc))
        log("N=%d: overlay up in %.1fs, mean degree %.2f, diameter %d" % (
            n_nodes, res["start_s"], res["mean_degree"], res["diameter"]))

        # Items: small files; rare ones on one node each, popular ones on ~25% of the nodes.
        files = os.path.join(net.root, "files")
        os.makedirs(files, exist_ok=True)
        n_pop = max(1, round(n_nodes * 0.25))
        items = {"rare": [], "popular": []}
        adds = {}
        for kind, count, holders_n in (("rare", 8, 1), ("popular", 8, n_pop)):
            for k in range(count):
                word = "%s%02dx%d" % ("rare" if kind == "rare" else "pop", k, n_nodes)
                path = os.path.join(files, word + ".dat")
                with open(path, "wb") as f:
                    f.write(("%s %d\n" % (word, seed)).encode() * 50)
                holders = rng.sample(made, holders_n)
                for h in holders:
                    adds.setdefault(h, []).append(path)
                items[kind].append([word, None, {h.name for h in holders}])
        cids = {}
        for h, paths in adds.items():
            for e in h.add(*paths):
                cids[e["name"][:-4]] = e["id"]
        for kind in items:
            for it in items[kind]:
                it[1] = cids[it[0]]
        res["popular_holders"] = n_pop

        # Cells: (mode, ttl, item kind): `queries` searches at once from the nodes of that setting.
        cells = {}
        snap = settle(pool, made)
        for mode, ttl in configs:
            qnodes = [nd for nd in made if nd.cfg == (mode, ttl)]
            for kind in ("rare", "popular"):
                jobs = []
                for q in range(queries):
                    nd = qnodes[q % len(qnodes)]
                    cand = [it for it in items[kind] if nd.name not in it[2]]
                    it = cand[(q // len(qnodes)) % len(cand)]
                    jobs.append((nd, it[0], it[1]))
                started0 = sum(v["queries_started"] for v in snap.values())
                out = searches(pool, jobs, net.nodes[0].client_bin)
                after = settle(pool, made)
                msgs = total(after) - total(snap)
                qmsgs = sum(v["queries_sent"] for v in after.values()) - sum(v["queries_sent"] for v in snap.values())
                steps = sum(v["queries_started"] for v in after.values()) - started0
                cells[(mode, ttl, kind)] = dict(
                    msgs=msgs / len(jobs), qmsgs=qmsgs / len(jobs), steps=steps / len(jobs),
                    answered=sum(1 for a, _ in out if a) / len(jobs),
                    providers=sum(p for _, p in out) / len(jobs), n=len(jobs))
                snap = after
            log("N=%d %s ttl %d: rare %.1f msgs %.0f%%, popular %.1f msgs %.0f%%" % (
                n_nodes, mode, ttl, cells[(mode, ttl, "rare")]["msgs"], 100 * cells[(mode, ttl, "rare")]["answered"],
                cells[(mode, ttl, "popular")]["msgs"], 100 * cells[(mode, ttl, "popular")]["answered"]))
        res["cells"] = cells

        # get (wants 3 providers, so the ring can stop early) of a popular item, ttl 5.
        gets = {}
        for mode in MODES:
            qnodes = [nd for nd in made if nd.cfg == (mode, 5)]
            jobs = []
            for nd in qnodes:
                cand = [it for it in items["popular"] if nd.name not in it[2]]
                for it in cand[:max(1, queries // len(qnodes))]:
                    jobs.append((nd, it))
            snap = settle(pool, made)

            def one(job):
                nd, it = job
                out = os.path.join(net.root, "get-%s-%s" % (nd.name, it[0]))
                p = run_cli(nd.client_bin, ["get", "--data", nd.data_dir, "--json", it[1], "-o", out], timeout=90)
                if p.returncode != 0:
                    log("get %s at %s (held by %s) failed: %s" % (it[0], nd.name, sorted(it[2]),
                                                                 p.stderr.decode()[-300:]))
                return p.returncode == 0
            # One after the other: concurrent flood gets from one node lose some of
            # their downloads (a bug reported with tests/integration/test_flood.py).
            ok = [one(j) for j in jobs]
            after = settle(pool, made, window=1.5)
            gets[mode] = dict(msgs=(total(after) - total(snap)) / len(jobs), answered=sum(ok) / len(ok), n=len(jobs),
                              steps=(sum(v["queries_started"] for v in after.values()) -
                                     sum(v["queries_started"] for v in snap.values())) / len(jobs))
            for nd, it in jobs:
                it[2].add(nd.name)
        res["gets"] = gets
        res["rss_mib"] = rss_mib([nd.pid for nd in made if nd.alive()])
        res["load"] = os.getloadavg()[0]
        log("N=%d: gets ring %.1f plain %.1f msgs; RSS of all nodes %.0f MiB" % (
            n_nodes, gets["ring"]["msgs"], gets["plain"]["msgs"], res["rss_mib"]))
    finally:
        failures = net.close()
        res["stop_failures"] = len(failures)
        for f in failures:
            log("stop:", f.splitlines()[0])
    return res


def bench_directory(bin, root):
    """One look-up through the directory (part 1): the node's lookup_messages."""
    from floodnet import poll, START_TIMEOUT, stop_pid
    procs = []
    base = os.path.join(root, "dir")
    os.makedirs(base)

    def start(args, name):
        pf = os.path.join(base, name + ".port")
        p = subprocess.Popen([bin] + args + ["--port-file", pf], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=open(os.path.join(base, name + ".log"), "wb"))
        procs.append(p)
        return int(poll(lambda: os.path.exists(pf) and open(pf).read().endswith("\n") and open(pf).read().strip(),
                        START_TIMEOUT, what=name))
    try:
        dport = start(["directory", "--listen", "127.0.0.1:0"], "directory")
        item = os.path.join(base, "dirsearchitem.dat")
        with open(item, "wb") as f:
            f.write(b"x" * 1000)
        nodes = []
        for i in range(2):
            d = os.path.join(base, "node%d" % i)
            start(["node", "--listen", "127.0.0.1:0", "--data", d, "--discovery", "directory",
                   "--directory", "127.0.0.1:%d" % dport] + (["--share", item] if i == 0 else []), "node%d" % i)
            nodes.append(d)

        def st(d):
            return json.loads(run_cli(bin, ["status", "--data", d, "--json"]).stdout)
        poll(lambda: all(st(d).get("directory", {}).get("connected") for d in nodes), 20, interval=0.2,
             what="the nodes to register")
        found = 0
        before = st(nodes[1])["totals"]
        n = 10
        for _ in range(n):
            r = poll(lambda: json.loads(run_cli(bin, ["search", "--data", nodes[1], "--json", "dirsearchitem"]).stdout),
                     10, interval=0.2, what="the directory search")
            found += any(e["name"] == "dirsearchitem.dat" for e in r)
        after = st(nodes[1])["totals"]
        return dict(msgs=(after["lookup_messages"] - before["lookup_messages"]) / n, answered=found / n,
                    lookups=after["lookups"] - before["lookups"])
    finally:
        for p in reversed(procs):
            try:
                stop_pid(p, signal.SIGTERM, 10)
            except AssertionError:
                pass


def write_md(path, results, direc, args, elapsed, commit):
    L = []
    L.append("# Flooding on real nodes: messages per query and share answered\n")
    L.append("Generated %s at commit %s by `%s` in %.0f s on %d CPUs (%s)." % (
        time.strftime("%Y-%m-%d"), commit, " ".join(["python3", "bench/flood_real.py"] + sys.argv[1:]), elapsed,
        os.cpu_count(), platform.machine()))
    L.append("")
    L.append("Commands (all on 127.0.0.1, every process stopped by its PID at the end):\n")
    L.append("```")
    L.append("peernet node --listen 127.0.0.1:0 --data DIR --discovery flood [--bootstrap ADDR:PORT]... \\")
    L.append("     --min-neighbors %d --max-neighbors %d --ttl T [--plain-flood] --port-file F" % (MIN_NB, MAX_NB))
    L.append("peernet add --data DIR --json FILE...            # the items, on their holders")
    L.append("peernet status --data DIR --json                 # .flood counters, before and after each cell")
    L.append("peernet search --data DIR --json WORD            # %d at once per cell" % args.queries)
    L.append("peernet get --data DIR --json ID -o OUT          # the get cells, one at a time")
    L.append("peernet directory --listen 127.0.0.1:0           # the directory baseline, with two")
    L.append("peernet node ... --discovery directory --directory ADDR:PORT   # nodes, 10 searches")
    L.append("```")
    L.append("")
    L.append("Each network is N real `peernet node --discovery flood` processes (`%s`) on loopback, in a seeded "
             "random overlay: each new node bootstraps to 1-2 random earlier ones, `--min-neighbors %d "
             "--max-neighbors %d` (sparse, so the hop limit matters). The hop limit (`--ttl`) and `--plain-flood` "
             "are options of the node that starts a query, so the nodes take the ten settings (plain flood or "
             "expanding ring) x (ttl 1..5) round-robin, and each cell's %d searches (`peernet search --json WORD`, "
             "run at once) come from the nodes of its setting, for an item they do not hold." % (
                 os.path.relpath(args.bin, REPO) if args.bin.startswith(REPO) else args.bin, MIN_NB, MAX_NB,
                 args.queries))
    L.append("")
    L.append("* **msgs** = messages per query: the change over the cell of the sum over all nodes of "
             "`status.flood.queries_sent + hits_sent`, divided by the cell's queries (counted at send, so a "
             "query crossing a link twice counts twice). **answered** = the search listed the item. "
             "**steps** = queries started per search (the ring's rounds).")
    L.append("* Items: small files named `rareKKxN.dat` on one random node, `popKKxN.dat` on ~25%% of the "
             "nodes (8 of each), seed %d." % args.seed)
    L.append("* A keyword search asks for 10 answers (`flood_search`, want 10), a `get` for 3 "
             "(`flood_find`): the ring only stops early once that many nodes have answered. The node's "
             "ring sends ttl 1, 2, 3, 5 (capped by `--ttl`) under new query IDs.")
    L.append("* The settings sit on different nodes, so two cells of one table also differ in where their "
             "queriers are (a node at the edge of the overlay reaches fewer nodes in a hop limit): compare "
             "down a column (the same queriers) rather than across; with %d queries per cell a share moves "
             "in steps of %.0f%%." % (args.queries, 100.0 / args.queries))
    L.append("* The `get` cells run one after the other: concurrent flood `get`s from one node lose some of "
             "their downloads ('no provider ... reachable'), a bug reported with "
             "`tests/integration/test_flood.py::test_concurrent_gets_from_one_provider`.")
    L.append("* **Directory** (part 1), measured on a real `peernet directory` with two nodes: %.0f messages "
             "per look-up (DIR_SEARCH, DIR_RESULTS: `status.totals.lookup_messages`), answered %.0f%% of "
             "%d look-ups, whatever the network size and the item's popularity." % (
                 direc["msgs"], 100 * direc["answered"], direc["lookups"]))
    L.append("")
    L.append("### Overlays\n")
    L.append("| N | mean degree | diameter | radius | below %d neighbours | cut off from the rest | nodes holding a "
             "popular item | RSS of all nodes | load (1 min) |" % MIN_NB)
    L.append("|---:|---:|---:|---:|---|---|---:|---:|---:|")
    for r in results:
        L.append("| %d | %.2f | %d | %d | %s | %s | %d | %.0f MiB | %.2f |" % (
            r["n"], r["mean_degree"], r["diameter"], r["radius"], ", ".join(r["below_min"]) or "none",
            ", ".join(r["outside"]) or "none", r["popular_holders"], r["rss_mib"], r["load"]))
    L.append("")
    L.append("The overlay is read from `status --json` (peers with `neighbor: true`) once the nodes have had "
             "up to 75 s to reach %d neighbours; nodes still below it had found only full candidates." % MIN_NB)
    L.append("")
    L.append("### Messages per search and share answered, against the hop limit\n")
    for r in results:
        c = r["cells"]
        L.append("**N = %d** (%d searches per cell)\n" % (r["n"], args.queries))
        L.append("| ttl | plain rare msgs | answered | plain popular msgs | answered | ring rare msgs | answered | "
                 "steps | ring popular msgs | answered | steps | directory msgs |")
        L.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for t in TTLS:
            pr, pp, rr, rp = c[("plain", t, "rare")], c[("plain", t, "popular")], c[("ring", t, "rare")], \
                c[("ring", t, "popular")]
            L.append("| %d | %.1f | %.0f%% | %.1f | %.0f%% | %.1f | %.0f%% | %.1f | %.1f | %.0f%% | %.1f | %.0f |" % (
                t, pr["msgs"], 100 * pr["answered"], pp["msgs"], 100 * pp["answered"], rr["msgs"],
                100 * rr["answered"], rr["steps"], rp["msgs"], 100 * rp["answered"], rp["steps"], direc["msgs"]))
        L.append("")
    L.append("### Against the network size (ttl 5)\n")
    L.append("| N | plain rare | answered | plain popular | answered | ring rare | answered | ring popular | answered "
             "| ring/plain popular | directory |")
    L.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        c = r["cells"]
        pr, pp, rr, rp = c[("plain", 5, "rare")], c[("plain", 5, "popular")], c[("ring", 5, "rare")], \
            c[("ring", 5, "popular")]
        L.append("| %d | %.1f | %.0f%% | %.1f | %.0f%% | %.1f | %.0f%% | %.1f | %.0f%% | %.2f | %.0f (100%%) |" % (
            r["n"], pr["msgs"], 100 * pr["answered"], pp["msgs"], 100 * pp["answered"], rr["msgs"],
            100 * rr["answered"], rp["msgs"], 100 * rp["answered"], rp["msgs"] / pp["msgs"] if pp["msgs"] else 0,
            direc["msgs"]))
    L.append("")
    L.append("### A download look-up (`peernet get`, wants 3 providers) of a popular item, ttl 5\n")
    L.append("Messages per `get` over the whole download (a flood download asks again about once a second "
             "while it is young), from the ttl-5 nodes of each mode.\n")
    L.append("| N | plain msgs | steps | fetched | ring msgs | steps | fetched | ring/plain | directory |")
    L.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        p, g = r["gets"]["plain"], r["gets"]["ring"]
        L.append("| %d | %.1f | %.1f | %.0f%% | %.1f | %.1f | %.0f%% | %.2f | %.0f |" % (
            r["n"], p["msgs"], p["steps"], 100 * p["answered"], g["msgs"], g["steps"], 100 * g["answered"],
            g["msgs"] / p["msgs"] if p["msgs"] else 0, direc["msgs"]))
    L.append("")
    L.append("### Reading\n")
    L.append(reading(results, direc))
    with open(path, "w") as f:
        f.write("\n".join(L) + "\n")


def reading(results, direc):
    out = ["* The hop limit buys reach: a rare item is answered only once the limit covers the distance to "
           "its holder, so the share answered climbs with ttl and falls with N (a sparse overlay of 48 "
           "nodes is %d hops across), while the messages per query grow with both." % results[-1]["diameter"],
           "* A `search` wants 10 answers, more nodes than hold the item here, so the ring nearly always "
           "runs all its steps and costs more than one plain flood (ring/plain for a popular item at ttl 5: %s). "
           "A `get` wants 3 providers, and there the ring pays off: %s of the plain flood's messages." % (
               ", ".join("%.2f at N=%d" % (r["cells"][("ring", 5, "popular")]["msgs"] /
                                          max(1e-9, r["cells"][("plain", 5, "popular")]["msgs"]), r["n"])
                         for r in results),
               ", ".join("%.2f at N=%d" % (r["gets"]["ring"]["msgs"] / max(1e-9, r["gets"]["plain"]["msgs"]),
                                          r["n"]) for r in results)),
           "* The directory answers every look-up with one round trip (%.0f messages), whatever N and the "
           "popularity; a flood at ttl 5 costs one to two orders of magnitude more and, on the larger "
           "overlays, still misses rare items." % direc["msgs"]]
    for r in results:
        c = r["cells"]
        pp, rp = c[("plain", 5, "popular")], c[("ring", 5, "popular")]
        pr, rr = c[("plain", 5, "rare")], c[("ring", 5, "rare")]
        g = r["gets"]
        out.append("* N = %d: at ttl 5 a plain flood costs %.0f messages per search (rare item answered %.0f%%); "
                   "the ring %.0f for a rare item and %.0f for a popular one (%.1f steps; it stops early only "
                   "when 10 nodes answer, and ~25%% of %d is %d); a `get` of a popular item costs %.0f with the "
                   "ring against %.0f plain. The directory: %.0f." % (
                       r["n"], pp["msgs"], 100 * pr["answered"], rr["msgs"], rp["msgs"], rp["steps"], r["n"],
                       r["popular_holders"], g["ring"]["msgs"], g["plain"]["msgs"], direc["msgs"]))
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=os.path.join(REPO, "build", "peernet"))
    ap.add_argument("--sizes", default="12,24,48")
    ap.add_argument("--queries", type=int, default=10, help="searches per cell")
    ap.add_argument("--seed", type=int, default=20261125)
    ap.add_argument("--out", default=os.path.join(HERE, "flood-real.md"))
    args = ap.parse_args()
    args.bin = os.path.abspath(args.bin)
    os.environ["PEERNET_FAST_BIN"] = args.bin
    os.environ.setdefault("PEERNET_BIN", args.bin)
    t0 = time.monotonic()
    root = tempfile.mkdtemp(prefix="peernet-flood-real-")
    try:
        commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, timeout=10).stdout.decode().strip() or "?"
        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            direc = bench_directory(args.bin, root)
            log("directory: %.1f messages per look-up, answered %.0f%%" % (direc["msgs"], 100 * direc["answered"]))
            results = [bench_size(int(n), args.bin, args.seed, args.queries, root, pool)
                       for n in args.sizes.split(",")]
        write_md(args.out, results, direc, args, time.monotonic() - t0, commit)
        log("wrote %s in %.0f s" % (args.out, time.monotonic() - t0))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
