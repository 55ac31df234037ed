#!/usr/bin/env python3
"""Swarms at scale: builds and runs the swarm simulator, writes bench/swarm-sim.md.

    python3 bench/swarm_sim.py [--out bench/swarm-sim.md] [--seed S] [--quick]
    python3 bench/swarm_sim.py --bin build/swarm-sim      # skip the build

The simulator (sim/swarm_sim.c) gives every node the very same peer engine as
the real node (src/proto/engine.c) and finds providers through the real
directory core, over a simulated network with per-node upload caps shaped like
the real node's, per-link latency and virtual time. Scenarios:

  calibration   the set-up of `make bench` section e (F = 8 MiB, 2 MiB/s
                uplinks, loopback-like links), N = 1..32, several seeds each,
                beside the real distribution times read from bench/RESULTS.md
  scale         N = 100, 1,000, 10,000 on 5-50 ms links (the others 100 and 1,000)
  hetero        20% of the downloaders at 1/10th of the upload rate
  arrivals      downloaders start uniformly over the first 10 s
  departures    20% of the downloaders leave for good mid-download
  seed-leaves   the seed leaves once every chunk has left it once

Every run repeats exactly from its seed. --quick leaves out N = 10,000 (which
takes ~6 minutes of CPU and ~3.5 GB; a --quick run takes about a minute).

Then the fault simulation (sim/fault_main.c, `make sim-faults`): FAULT_SEEDS
swarms with faults drawn from their seeds, every engine invariant checked
after every step; the summary line goes into the page.
"""
import argparse
import datetime
import os
import platform
import re
import shlex
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_TIMEOUT = 3 * 3600.0          # N = 10,000 alone takes ~6 min of CPU
FAULT_SEEDS = 10000
CALIBRATION_RUNS = 10
CALIBRATION_CHECK = (4, 8, 16)    # issue 8: within 10% of the real times at these N
CALIBRATION_TOLERANCE = 0.10

# (scenario, sizes, sizes with --quick). N = 10,000 costs ~6 min of CPU and
# ~3.5 GB (90 million messages, most of the time inside the engines), so only
# the scale scenario runs it.
SCENARIOS = (
    ("scale", "100,1000,10000", "100,1000"),
    ("hetero", "100,1000", "100,1000"),
    ("arrivals", "100,1000", "100,1000"),
    ("departures", "100,1000", "100,1000"),
    ("seed-leaves", "100,1000", "100,1000"),
)


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


def table_rows(text):
    """The data rows of the markdown table(s) in text, as lists of cell strings."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("|") or line.startswith("|---") or line.startswith("| N |"):
            continue
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def real_times(results_md):
    """{N: (D_p2p measured, ratio)} from the distribution table of bench/RESULTS.md, or {}."""
    try:
        text = open(results_md).read()
    except OSError:
        return {}
    out = {}
    header = None
    for line in text.splitlines():
        if line.startswith("| N |") and "D_p2p measured" in line:
            header = [c.strip() for c in line.strip().strip("|").split("|")]
            continue
        if header and line.startswith("|---"):
            continue
        if header and line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            try:
                n = int(cells[0])
                d = float(cells[header.index("D_p2p measured (s)")])
            except (ValueError, IndexError):
                continue
            out[n] = d
        elif header:
            break
    return out


def run(argv):
    t0 = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    wall = time.monotonic() - t0
    sys.stderr.write(r.stderr)
    # Status 1 means some run did not finish: a result, shown in the table.
    if r.returncode not in (0, 1):
        sys.exit(f"swarm_sim.py: {shlex.join(argv)} exited with status {r.returncode}")
    return r.stdout, r.stderr, wall


def first_number(cell):
    m = re.search(r"[0-9]+(\.[0-9]+)?", cell)
    return float(m.group(0)) if m else None


def calibration_section(binary, seed, results_md):
    argv = [binary, "--scenario", "calibration", "--runs", str(CALIBRATION_RUNS), "--seed", str(seed)]
    out, err, wall = run(argv)
    real = real_times(results_md)
    doc = [out.rstrip(), ""]
    if real:
        doc += [
            f"Beside the real processes of `make bench` (bench/RESULTS.md, one run per N; the simulator's "
            f"figure is the mean of {CALIBRATION_RUNS} seeds, its range in brackets):",
            "",
            "| N | simulated D (s) | real D (s) | simulated / real | bound (s) | simulated ratio | real ratio |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        verdicts = []
        for cells in table_rows(out):
            n = int(cells[0])
            sim_d = first_number(cells[1])
            bound = float(cells[2])
            if n not in real or sim_d is None:
                continue
            rel = sim_d / real[n]
            doc.append(f"| {n} | {cells[1]} | {real[n]:.2f} | {rel:.2f} | {bound:.2f} | "
                       f"{sim_d / bound:.2f}x | {real[n] / bound:.2f}x |")
            if n in CALIBRATION_CHECK:
                verdicts.append((n, rel))
        ok = verdicts and all(abs(v - 1) <= CALIBRATION_TOLERANCE for _, v in verdicts)
        doc += ["", "Goal (issue 8): within 10% of the real times at N = 4, 8, 16 — "
                + ("**met**" if ok else "**not met**") + " ("
                + ", ".join(f"N = {n}: {100 * (v - 1):+.0f}%" for n, v in verdicts) + ").", ""]
    else:
        doc += ["(No real distribution times found in bench/RESULTS.md to compare with.)", ""]
    return argv, doc, err, wall


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", help="a built swarm-sim (default: make build/swarm-sim)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "swarm-sim.md"))
    ap.add_argument("--results", default=os.path.join(ROOT, "bench", "RESULTS.md"),
                    help="where the real distribution times are read from")
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--quick", action="store_true", help="leave out N = 10,000")
    ap.add_argument("--fault-seeds", type=int, default=FAULT_SEEDS, help="seeds of the fault simulation")
    a = ap.parse_args()

    binary = a.bin
    if not binary:
        subprocess.run(["make", "-C", ROOT, "build/swarm-sim"], check=True, stdout=sys.stderr)
        binary = os.path.join(ROOT, "build", "swarm-sim")

    t_all = time.monotonic()
    commands, sections, warnings = [], [], []
    argv, doc, err, wall = calibration_section(binary, a.seed, a.results)
    commands.append((argv, wall))
    sections += doc
    warnings += err.splitlines()
    for name, sizes, quick_sizes in SCENARIOS:
        argv = [binary, "--scenario", name, "--nodes", quick_sizes if a.quick else sizes, "--seed", str(a.seed)]
        out, err, wall = run(argv)
        commands.append((argv, wall))
        sections += [out.rstrip(), ""]
        warnings += err.splitlines()
        print(out, end="", flush=True)
    fault_bin = os.path.join(os.path.dirname(binary), "fault-sim")
    subprocess.run(["make", "-C", ROOT, os.path.relpath(fault_bin, ROOT)], check=True, stdout=sys.stderr)
    argv = [fault_bin, "--seeds", str(a.fault_seeds), "--quiet"]
    t0 = time.monotonic()
    res = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    fwall = time.monotonic() - t0
    commands.append((argv, fwall))
    lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
    print("\n".join(lines[-5:]), flush=True)
    sections += [
        "## Faults: the engine and the directory under resets, stalls, crashes, partitions, restarts",
        "",
        "`build/fault-sim` (model and checks in `sim/README.md`, \"faults\") runs one small swarm per seed "
        "with a fault plan drawn from the seed, checking every engine's invariants after every step and "
        "that every downloader that stayed finished; each seed also runs the flood core with message "
        "loss. A failing seed replays exactly with `build/fault-sim --seed N --diag`.",
        "",
        "    " + (lines[-1] if lines else "(no output)"),
        "",
    ]
    failing = [ln for ln in lines if ln.startswith("seed ")]
    if failing:
        sections += ["Failing seeds:", ""] + ["    " + ln for ln in failing[:20]] + [""]
    if res.returncode not in (0, 1):
        warnings.append(f"fault-sim exited {res.returncode}: {res.stderr.strip()[-300:]}")
    total = time.monotonic() - t_all

    doc = [
        "# Swarms at scale: the peer engine in the simulator",
        "",
        f"Generated {datetime.date.today().isoformat()} at commit {git_head()} by "
        f"`python3 bench/swarm_sim.py{' --quick' if a.quick else ''}` ({total:.0f} s on one core of {cpu_model()}).",
        "",
        "The simulator (`sim/swarm_sim.c`, model in `sim/README.md`) runs one seed and N downloaders, each "
        "with its own peer engine from `src/proto/engine.c` — the engine the real node runs — exchanging "
        "real encoded messages (CHUNK payloads modelled by their size). Each node's uplink is shaped like "
        "the real node's (a token bucket at its cap, one message per connection per turn); links have a "
        "latency drawn per link; providers come from the real directory core (100 random ones per answer, "
        "asked every 0.3 s for the first 3 s of a download, then every 2 s); at most 128 connections per "
        "node. D is the time from the start until the last downloader that stayed is done; the bound is "
        "Kurose and Ross's max(F/u_s, F/d_min, N·F/(u_s + Σu_i)) (no download caps here, so d_min = ∞; "
        "with arrivals it ignores that nodes start late, and with departures it counts every node). "
        "\"source copies\" is the seed's uploaded chunk bytes over F; \"messages\" counts every message a "
        "node sent, chunks included; \"chunks left in swarm\" is how many distinct chunks some node still "
        "present held at the end; a D marked \">\" did not finish (the run stopped at a time cap, or after "
        "120 s of virtual time in which no chunk was written).",
        "",
    ] + sections + ["Commands:", ""]
    def shown(path):
        rel = os.path.relpath(path, ROOT)
        return path if rel.startswith("..") else rel
    doc += [f"    {shlex.join([shown(c[0])] + c[1:])}    # {w:.0f} s" for c, w in commands]
    doc.append("")
    warnings = [w for w in warnings if w.strip()]
    if warnings:
        doc += ["Warnings from the runs:", ""] + [f"    {w}" for w in warnings[:40]] + [""]
    with open(a.out, "w") as f:
        f.write("\n".join(doc))
    print(f"wrote {a.out} ({total:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
