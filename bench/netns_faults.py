#!/usr/bin/env python3
"""Faults between machines, measured: runs tests/integration/test_netns_faults.py
(a directory, a server, six nodes and hostile peers in network namespaces,
faults injected with ip during real transfers) and writes its figures as the
table 'fault, time to recover, bytes fetched twice, outcome' to
bench/netns-faults.md (and, from `bench.py --only h`, into RESULTS.md).

    python3 bench/netns_faults.py --bin build/peernet [--out bench/netns-faults.md]

Needs root (namespaces, tmpfs); without it the test skips and this exits 2.
The test stops every process and removes every namespace and mount it made.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
TEST = os.path.join(REPO, "tests", "integration", "test_netns_faults.py")
TIMEOUT = 900


def fmt_s(x):
    return "—" if x is None else f"{x:.1f} s"


def render(data, cmd):
    L = []
    w = L.append
    mib = data["file_size"] / (1024 * 1024)
    w("# Faults between machines, in network namespaces")
    w("")
    w(f"A directory, a server, six nodes (`--discovery directory`) and two hostile peers, each in its own "
      f"network namespace, joined by a bridge in one more; every uplink capped with "
      f"`tc qdisc ... tbf {data['tbf']}`. One {mib:.0f} MiB file per fault, held by one node whose upload "
      f"(like the server's) is capped at {data['seed_rate']}/s, so a transfer takes a few seconds; the fault "
      "is injected once the downloader holds 2 chunks. Every download below ended with a file whose "
      "SHA-256 equals the source's, and no process was restarted by hand except the one the fault killed.")
    w("")
    w("* **time to recover**: from the fault's end (link up, partition healed, process started again, "
      "space freed) to the next verified chunk (*traffic*) and to the end of the download (*done*). "
      "With a 5-10 s outage, TCP's retransmission back-off decides most of *traffic*; *done* includes "
      "fetching the chunks still missing at the capped rate.")
    w("* **bytes fetched twice**: bytes received by the downloader (`wire_bytes_received` of "
      "`peernet status --json`, or `bytes_downloaded` + `bytes_resumed` - size for `get --server`) beyond "
      "the file's size; an upper bound, since the messages that are not chunks count too (the baseline "
      "row shows how much they are). A 256 KiB chunk fetched twice would show as 262,144 or more.")
    w("")
    w("| fault | time to recover (traffic / done) | bytes fetched twice | outcome |")
    w("|---|---:|---:|---|")
    for r in data["rows"]:
        rec = f"{fmt_s(r.get('resume_s'))} / {fmt_s(r.get('recover_s'))}"
        if r["fault"].startswith("none"):
            rec = "—"
        w(f"| {r['fault'].replace('|', '/')} | {rec} | {r['bytes_twice']:,} | {r['outcome'].replace('|', '/')} |")
    w("")
    w("```")
    w(cmd)
    w("```")
    return "\n".join(L) + "\n"


def python_with_pytest():
    """This interpreter if it has pytest, else the system's (the Makefile's PYTHON)."""
    for py in (sys.executable, os.environ.get("PYTHON", "/usr/bin/python3")):
        r = subprocess.run([py, "-c", "import pytest"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=60)
        if r.returncode == 0:
            return py
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=os.path.join(REPO, "build", "peernet"))
    ap.add_argument("--out", default=os.path.join(HERE, "netns-faults.md"))
    args = ap.parse_args()
    binary = os.path.abspath(args.bin)
    if not os.access(binary, os.X_OK):
        print(f"netns_faults: {binary} is missing; build it first", file=sys.stderr)
        return 2
    py = python_with_pytest()
    if not py:
        print("netns_faults: pytest is not installed (`make deps-test` installs it)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="peernet-netns-") as tmp:
        js = os.path.join(tmp, "netns-faults.json")
        env = dict(os.environ, PEERNET_BIN=binary, PEERNET_FAST_BIN=binary, PEERNET_NETNS_FAULTS_JSON=js)
        cmd = [py, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", TEST]
        r = subprocess.run(cmd, env=env, cwd=REPO, timeout=TIMEOUT, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        sys.stdout.write(r.stdout[-3000:])
        if r.returncode != 0:
            print(f"netns_faults: the test failed (exit {r.returncode})", file=sys.stderr)
            return 1
        if not os.path.exists(js):
            print("netns_faults: the test skipped (see above); no figures", file=sys.stderr)
            return 2
        with open(js) as f:
            data = json.load(f)
    if not data["rows"]:
        print("netns_faults: the test skipped (see above); no figures", file=sys.stderr)
        return 2
    text = render(data, f"python3 bench/netns_faults.py --bin {os.path.relpath(binary, REPO)}"
                        f"   # runs: pytest {os.path.relpath(TEST, REPO)}")
    with open(args.out, "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
