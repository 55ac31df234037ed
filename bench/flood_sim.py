#!/usr/bin/env python3
"""Flooding at scale: builds and runs the flood simulator, writes bench/flood-sim.md.

    python3 bench/flood_sim.py [--out bench/flood-sim.md] [--seed S] [--queries Q] [--quick]
    python3 bench/flood_sim.py --bin build/flood-sim     # skip the build

The simulator (sim/) drives the very same flood core as the real node
(src/proto/flood.c) with virtual time over 1,000-10,000 simulated nodes, so
its figures extend the measurements on real nodes to sizes this machine
cannot hold. A full run takes about a minute or two on one core. The run is
deterministic: the same seed gives the same tables on every machine.
"""
import argparse
import datetime
import os
import platform
import shlex
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_TIMEOUT = 900.0


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def git_head():
    try:
        out = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", help="a built flood-sim (default: make build/flood-sim)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "flood-sim.md"))
    ap.add_argument("--seed", type=int)
    ap.add_argument("--queries", type=int)
    ap.add_argument("--loss", type=float)
    ap.add_argument("--quick", action="store_true", help="small sizes and few queries (a smoke run)")
    a = ap.parse_args()

    binary = a.bin
    if not binary:
        subprocess.run(["make", "-C", ROOT, "build/flood-sim"], check=True,
                       stdout=sys.stderr)
        binary = os.path.join(ROOT, "build", "flood-sim")
    argv = [binary]
    if a.quick:
        argv.append("--quick")
    if a.seed is not None:
        argv += ["--seed", str(a.seed)]
    if a.queries is not None:
        argv += ["--queries", str(a.queries)]
    if a.loss is not None:
        argv += ["--loss", str(a.loss)]

    t0 = time.monotonic()
    run = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    wall = time.monotonic() - t0
    sys.stderr.write(run.stderr)
    if run.returncode != 0:
        sys.exit(f"flood_sim.py: {shlex.join(argv)} exited with status {run.returncode}")
    tables = run.stdout

    shown = [os.path.relpath(argv[0], ROOT)] + argv[1:]
    warnings = [l for l in run.stderr.splitlines() if "done in" not in l]
    doc = [
        "# Flooding at scale: the flood core in the simulator",
        "",
        f"Generated {datetime.date.today().isoformat()} at commit {git_head()} by "
        f"`python3 bench/flood_sim.py`, which ran `{shlex.join(shown)}` "
        f"({wall:.0f} s on one core of {cpu_model()}).",
        "",
        "The simulator (`sim/`) runs N nodes in one process, each with its own "
        "`struct flood` from `src/proto/flood.c` — the core the real node runs — "
        "on a random connected overlay (every node dials random nodes until it has "
        "4 neighbours and accepts up to 8), with a random latency per message and "
        "virtual time. Each item is held by r random nodes; each query comes from "
        "a random node that does not hold the item, and the queries run one at a "
        "time, so every message in the network belongs to the query being counted. "
        "The flood cores run with their default options (hop limit at most 7, "
        "seen-cache expiry 60 s, 20 queries per second per neighbour, "
        "250 ms wait per hop of ttl). Table 7 alone runs many queries at once "
        "(Poisson arrivals), so that the per-neighbour rate limit meets real "
        "traffic; links a core asks to drop are cut and not replaced.",
        "",
        tables.rstrip(),
        "",
    ]
    if warnings:
        doc += ["", "Warnings from the run:", ""] + [f"    {w}" for w in warnings] + [""]
    with open(a.out, "w") as f:
        f.write("\n".join(doc))
    print(tables, end="")
    print(f"wrote {a.out} ({wall:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
