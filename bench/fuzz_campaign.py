#!/usr/bin/env python3
"""Fuzzing campaign: runs every libFuzzer target (fuzz/fuzz_*.c, built with
ASan+UBSan by the Makefile's $(BUILD)/fuzz/% rule) one after another, each until
--runs executions or --seconds have passed, whichever comes first, and prints a
table of executions, coverage (libFuzzer's final cov: and ft:), crashes found
and time per target.

One fuzzer at a time, under `nice -n 19` (the machine is shared). Each target
grows its corpus in BUILD/fuzz/campaign/<target> (outside the repository),
seeded from fuzz/corpus/<target>; crash inputs go to
BUILD/fuzz/campaign/crashes/<target>/. With --merge the grown corpus is
minimised (-merge=1) back into fuzz/corpus/<target>/ (review before committing).

  python3 bench/fuzz_campaign.py --build build-fuzz --seconds 1800 --runs 10000000
  python3 bench/fuzz_campaign.py --targets fuzz_engine --seconds 300 --out /tmp/fuzz.md
"""
import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Per-target libFuzzer options. fuzz_engine finds tens of thousands of
# features (three engines, their timers and bitmaps): the entropic schedule's
# bookkeeping took 65% of its time, and without it the same corpus ran at
# 169 exec/s instead of 65.
EXTRA_ARGS = {"fuzz_engine": ["-entropic=0"]}


def targets_all():
    return sorted(os.path.basename(p)[:-2] for p in glob.glob(os.path.join(ROOT, "fuzz", "fuzz_*.c")))


def build(build_dir, targets):
    bins = [f"{build_dir}/fuzz/{t}" for t in targets]
    subprocess.run(["nice", "-n", "19", "make", f"BUILD={build_dir}", "-j2"] + bins, cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)


def stat(text, name):
    m = re.findall(rf"^stat::{name}:\s+(\d+)", text, re.M)
    return int(m[-1]) if m else None


def last_status(text, key):
    """The last 'cov: N' / 'ft: N' on a libFuzzer status line."""
    m = re.findall(rf"^#\d+\s+\w+.*?\b{key}: (\d+)", text, re.M)
    return int(m[-1]) if m else None


def run_one(build_dir, target, seconds, runs, rss_mb, timeout_s):
    binary = os.path.join(ROOT, build_dir, "fuzz", target)
    camp = os.path.join(ROOT, build_dir, "fuzz", "campaign")
    corpus = os.path.join(camp, target)
    crashes = os.path.join(camp, "crashes", target)
    os.makedirs(corpus, exist_ok=True)
    os.makedirs(crashes, exist_ok=True)
    seeds = os.path.join(ROOT, "fuzz", "corpus", target)
    log_path = os.path.join(camp, f"{target}.log")
    cmd = ["nice", "-n", "19", binary, f"-max_total_time={seconds}", f"-runs={runs}", "-print_final_stats=1",
           f"-rss_limit_mb={rss_mb}", f"-timeout={timeout_s}", f"-artifact_prefix={crashes}/"] + \
        EXTRA_ARGS.get(target, []) + [corpus]
    if os.path.isdir(seeds):
        cmd.append(seeds)
    crashes_found = 0
    t0 = time.monotonic()
    execs = 0
    cov = ft = None
    with open(log_path, "w") as log:
        log.write(" ".join(cmd) + "\n")
        log.flush()
        # libFuzzer stops at its first crash: count it and go on from the
        # grown corpus until the time or the executions are used up.
        while True:
            left = seconds - (time.monotonic() - t0)
            if left < 1 or execs >= runs:
                break
            cmd[4] = f"-max_total_time={int(left)}"
            cmd[5] = f"-runs={runs - execs}"
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               errors="replace")
            log.write(p.stdout)
            log.flush()
            execs += stat(p.stdout, "number_of_executed_units") or 0
            cov = last_status(p.stdout, "cov") or cov
            ft = last_status(p.stdout, "ft") or ft
            if p.returncode == 0:
                break
            crashes_found += 1
            if crashes_found >= 20:
                break
    return {
        "target": target,
        "execs": execs,
        "cov": cov,
        "ft": ft,
        "corpus": len(os.listdir(corpus)),
        "crashes": crashes_found,
        "artifacts": sorted(os.listdir(crashes)),
        "seconds": time.monotonic() - t0,
        "log": os.path.relpath(log_path, ROOT),
    }


def merge(build_dir, target):
    """Minimises the grown corpus into fuzz/corpus/<target>/ (replacing it)."""
    binary = os.path.join(ROOT, build_dir, "fuzz", target)
    grown = os.path.join(ROOT, build_dir, "fuzz", "campaign", target)
    seeds = os.path.join(ROOT, "fuzz", "corpus", target)
    fresh = seeds + ".new"
    shutil.rmtree(fresh, ignore_errors=True)
    os.makedirs(fresh)
    srcs = [grown] + ([seeds] if os.path.isdir(seeds) else [])
    subprocess.run(["nice", "-n", "19", binary, "-merge=1", fresh] + srcs, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True)
    shutil.rmtree(seeds, ignore_errors=True)
    os.rename(fresh, seeds)
    files = os.listdir(seeds)
    size = sum(os.path.getsize(os.path.join(seeds, f)) for f in files)
    return len(files), size


def source_commit():
    r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, text=True, timeout=30)
    return r.stdout.strip() or "?"


TABLE_HEAD = ["| target | executions | exec/s | cov | ft | corpus | crashes | time (s) |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]


def table(rows, seconds, runs):
    out = [f"Each target until {runs:,} executions or {seconds} s, whichever first; one at a time, nice 19, "
           "ASan+UBSan (clang -fsanitize=fuzzer,address,undefined); source at commit "
           f"{source_commit()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", ""] + TABLE_HEAD
    for r in rows:
        rate = r["execs"] / r["seconds"] if r["seconds"] > 0 else 0
        out.append(f"| {r['target']} | {r['execs']:,} | {rate:,.0f} | {r['cov']} | {r['ft']} | {r['corpus']} | "
                   f"{r['crashes']} | {r['seconds']:.0f} |")
    return "\n".join(out) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build", help="build directory (make BUILD=...)")
    ap.add_argument("--seconds", type=int, default=1800, help="seconds per target at most")
    ap.add_argument("--runs", type=int, default=10_000_000, help="executions per target at most")
    ap.add_argument("--targets", default="", help="comma-separated targets (default: every fuzz/fuzz_*.c)")
    ap.add_argument("--rss-mb", type=int, default=2048)
    ap.add_argument("--timeout", type=int, default=25, help="seconds one input may take")
    ap.add_argument("--merge", action="store_true", help="minimise each grown corpus into fuzz/corpus/<target>/")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--out", default=None, help="also write the table (markdown) here")
    ap.add_argument("--combine", nargs="+", metavar="MD", help="only merge the tables of earlier runs "
                    "(their --out files, e.g. of targets run side by side) into --out")
    ap.add_argument("--note", action="append", default=[], help="with --combine: a line to add (repeatable)")
    args = ap.parse_args(argv)
    if args.combine:
        notes, rows = [], []
        for path in args.combine:
            with open(path) as f:
                lines = f.read().splitlines()
            notes += [l for l in lines if l and not l.startswith("|")]
            rows += [l for l in lines if l.startswith("| fuzz_")]
        text = "\n".join(["Targets run in %d lanes side by side:" % len(args.combine), ""] +
                         ["* " + n for n in dict.fromkeys(notes + args.note)] + [""] + TABLE_HEAD + sorted(rows)) + "\n"
        print(text)
        if args.out:
            with open(args.out, "w") as f:
                f.write(text)
        return []
    targets = [t for t in args.targets.split(",") if t] or targets_all()
    if not args.no_build:
        build(args.build, targets)
    rows = []
    for t in targets:
        print(f"== {t}", file=sys.stderr, flush=True)
        r = run_one(args.build, t, args.seconds, args.runs, args.rss_mb, args.timeout)
        if args.merge:
            r["merged_files"], r["merged_bytes"] = merge(args.build, t)
        rows.append(r)
        print(f"   {r['execs']:,} execs, cov {r['cov']}, ft {r['ft']}, {r['crashes']} crashes, "
              f"{r['seconds']:.0f} s; log {r['log']}" + (f"; artifacts {r['artifacts']}" if r['artifacts'] else ""),
              file=sys.stderr, flush=True)
    text = table(rows, args.seconds, args.runs)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return rows


if __name__ == "__main__":
    main()
