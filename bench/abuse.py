#!/usr/bin/env python3
"""Bounds under abuse, measured (issue 10 point 4; the bounds are named in
docs/PROTOCOL.md, Limits): a `serve` under floods of stalled TLS handshakes
(bench/halfopen_rss.py) and a directory under a registration flood from 100
made-up identities on one address
(tests/integration/test_p2p.py::test_registration_flood_from_one_address).
Writes a markdown table of the memory measured before, during and after.

    python3 bench/abuse.py --bin build/peernet [--out bench/abuse.md]

Loopback only; each tool stops what it started by its PID.
"""
import argparse
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
TIMEOUT = 600


def mib(kib):
    return "%.1f MiB" % (kib / 1024)


def halfopen(binary, conns, sources):
    cmd = [sys.executable, os.path.join(HERE, "halfopen_rss.py"), "--bin", binary, "--conns", str(conns),
           "--sources", str(sources)]
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=TIMEOUT)
    if r.returncode != 0:
        raise SystemExit("abuse: halfopen_rss.py failed: %s" % r.stderr.strip())
    vals = dict(re.findall(r"^VmRSS (\w[\w ]*?): (\d+) KiB", r.stdout, re.M))
    ls = re.search(r"^ls from 127.0.0.1 during the flood: (.*)$", r.stdout, re.M)
    return {k: int(v) for k, v in vals.items()}, ls.group(1) if ls else "?"


def directory_flood(binary):
    env = dict(os.environ, PEERNET_BIN=binary, PEERNET_FAST_BIN=binary)
    cmd = [os.environ.get("PYTHON", "/usr/bin/python3"), "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
           os.path.join(REPO, "tests", "integration", "test_p2p.py"), "-k", "test_registration_flood_from_one_address"]
    r = subprocess.run(cmd, env=env, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT)
    m = re.search(r"flood: (\d+) identities registered, (\d+) offers accepted, (\d+) refused at a limit; "
                  r"directory RSS (\d+) -> (\d+) KiB", r.stdout)
    if r.returncode != 0 or not m:
        raise SystemExit("abuse: the directory flood test failed:\n%s" % r.stdout[-2000:])
    return [int(x) for x in m.groups()]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=os.path.join(REPO, "build", "peernet"))
    ap.add_argument("--out", default=os.path.join(HERE, "abuse.md"))
    args = ap.parse_args()
    binary = os.path.abspath(args.bin)
    rows = []
    for conns, sources in ((2000, 100), (4000, 1)):
        print("abuse: %d stalled handshakes from %d source(s)" % (conns, sources), file=sys.stderr)
        v, ls = halfopen(binary, conns, sources)
        rows.append(f"| `serve`: {conns:,} stalled TLS handshakes from {sources} source "
                    f"address{'es' if sources > 1 else ''} | 64 half-open and 128 connections per source, 4,096 in "
                    f"all; handshake timeout 10 s (30 s here, to hold the flood while it is measured) | "
                    f"{mib(v.get('before', 0))} → {mib(v.get('during', 0))} during → "
                    f"{mib(v.get('10 s after they closed', 0))} 10 s after they closed; `ls` from another address "
                    f"during the flood: {ls} |")
    print("abuse: directory registration flood", file=sys.stderr)
    reg, ok, lim, rss0, rss1 = directory_flood(binary)
    rows.append(f"| directory: 100 made-up identities from one address, each offering 64-name batches of "
                f"255-byte names | 64 nodes and 5,000 offers per source address (256 / 10,000 per /24), 100,000 "
                f"offers in all: 156 MiB of tables at every cap | {reg:,} registered, {ok:,} offers accepted, "
                f"{lim:,} refused with ERROR(LIMIT); RSS {mib(rss0)} → {mib(rss1)}; real nodes on another /24 "
                f"still register, share and find |")
    text = "\n".join([
        "# Bounds under abuse",
        "",
        "Every bound is a named constant in `docs/PROTOCOL.md` (Limits). Memory is the process's VmRSS.",
        "",
        "| abuse | bound | measured |",
        "|---|---|---|",
    ] + rows + [
        "",
        "```",
        "python3 bench/abuse.py --bin %s   # runs bench/halfopen_rss.py and test_registration_flood_from_one_address"
        % os.path.relpath(binary, REPO),
        "```",
    ]) + "\n"
    with open(args.out, "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
