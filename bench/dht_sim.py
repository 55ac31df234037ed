#!/usr/bin/env python3
"""The DHT at scale: runs the DHT simulator, writes bench/dht-sim.md and bench/lookup-messages.svg.

    python3 bench/dht_sim.py [--out bench/dht-sim.md] [--svg bench/lookup-messages.svg]
                             [--sizes 1000,10000] [--churn-sizes 10000] [--quick]
    python3 bench/dht_sim.py --bin build/dht-sim     # skip the build

build/dht-sim (sim/dht_main.c) drives the real DHT core (src/proto/dht.c)
with virtual time, and the flood core (src/proto/flood.c) on the same nodes,
items and questions; the directory is computed from its model. Each
configuration runs in a process of its own, one after the other, so that its
peak memory is its own. Deterministic: the same seed gives the same tables.
"""
import argparse
import datetime
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_TIMEOUT = 3600.0
SEED = 20261204
GOAL_ROUNDS = 4          # issue 13: median rounds at N = 10,000
GOAL_SUCCESS = 0.995     # at 10% churn per hour
GOAL_MSGS = 60           # per look-up
GOAL_N = 10000


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


def run_one(binary, args, log):
    """One configuration in its own process: its JSON line, wall time and the command."""
    argv = [binary] + args
    shown = shlex.join([os.path.relpath(binary, ROOT)] + args)
    log(f"dht_sim.py: {shown}")
    t0 = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    wall = time.monotonic() - t0
    sys.stderr.write(r.stderr)
    if r.returncode != 0:
        sys.exit(f"dht_sim.py: {shown} exited with status {r.returncode}")
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    for row in rows:
        row["wall_s"] = wall
        row["cmd"] = shown
    return rows


def pct(x):
    return f"{100 * x:.1f}%"


def kib(b):
    return f"{b / 1024:.1f}"


def table_dht(w, rows, first_col, key):
    w(f"| {first_col} | look-ups counted | found a live provider | rounds median | p99 | messages median | p99 "
      "| messages to first provider median | p99 | first provider ms median | p99 | KiB per look-up "
      "| routing table (contacts, mean) | routing memory per node KiB (mean / max) | CPU s | peak RSS MiB |")
    w("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        d = r["dht"]
        w(f"| {key(r)} | {d['counted']} | {pct(d['success_rate'])} | {d['rounds_median']:.0f} | {d['rounds_p99']:.0f} "
          f"| {d['msgs_median']:.0f} | {d['msgs_p99']:.0f} | {d['msgs_to_first_median']:.0f} "
          f"| {d['msgs_to_first_p99']:.0f} | {d['first_ms_median']:.0f} | {d['first_ms_p99']:.0f} "
          f"| {kib(d['bytes_mean'])} | {d['table_mean']:.0f} | {kib(d['memory_mean'])} / {kib(d['memory_max'])} "
          f"| {d['cpu_s']:.0f} | {d['peak_rss_kb'] / 1024:.0f} |")


def table_side(w, rows):
    w("| N | copies | mode | look-ups | found a provider | rounds median | messages median | p99 | mean "
      "| first provider ms median | p99 | routing state per node |")
    w("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        n, c = r["nodes"], r["copies"]
        d = r["dht"]
        w(f"| {n} | {c} | directory (computed) | – | 100% while it is up, 0% when it is down | 1 | 2 | 2 | 2 "
          f"| {r['directory']['first_ms_median']:.0f} | – | none (the directory holds every record) |")
        if "flood" in r:
            for name, label in (("flood", f"flood, hop limit {r['flood_ttl']}"),
                                ("ring", f"expanding ring, limit {r['flood_ttl']}")):
                f = r[name]
                w(f"| {n} | {c} | {label} | {f['queries']} | {pct(f['success_rate'])} | – | {f['msgs_median']:.0f} "
                  f"| {f['msgs_p99']:.0f} | {f['msgs_mean']:.0f} | {f['first_ms_median']:.0f} "
                  f"| {f['first_ms_p99']:.0f} | 4-8 neighbours |")
        w(f"| {n} | {c} | DHT | {d['counted']} | {pct(d['success_rate'])} | {d['rounds_median']:.0f} "
          f"| {d['msgs_median']:.0f} | {d['msgs_p99']:.0f} | {d['msgs_mean']:.0f} | {d['first_ms_median']:.0f} "
          f"| {d['first_ms_p99']:.0f} | {d['table_mean']:.0f} contacts, {kib(d['memory_mean'])} KiB |")


def table_health(w, rows, key):
    w("| run | messages network-wide | per live node per hour in the window | KiB network-wide | lost "
      "| to departed nodes | joined | joiners' bootstrap pinged again | left | timeouts per look-up "
      "| stale-only look-ups "
      "| stores accepted / refused | rate-limited | unexpected replies | encode failed | events | virtual s |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        d = r["dht"]
        w(f"| {key(r)} | {d['msgs_total']} | {d['bg_msgs_per_node_hour']:.0f} | {d['bytes_total'] / 1024:.0f} "
          f"| {d['lost']} | {d['to_dead']} | {d['joined']} | {d.get('rebootstraps', 0)} | {d['left']} "
          f"| {d['timeouts_mean']:.2f} "
          f"| {d['stale_only']} | {d['stores_accepted']} / {d['stores_refused']} | {d['rate_limited']} "
          f"| {d['unexpected_replies']} | {d['encode_failed']} | {d['events']} | {d['virtual_s']:.0f} |")


def plot(series, path, title):
    """Messages per look-up against N, log-log. matplotlib if it imports, else a
    hand-written SVG. Returns the tool used."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        matplotlib.rcParams["svg.hashsalt"] = "peernet"
        fig, ax = plt.subplots(figsize=(8, 5))
        for label, xs, ys, color, style in series:
            ax.plot(xs, ys, color=color, linestyle=style, marker="o", label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ns = sorted({x for s in series for x in s[1]})
        ax.set_xticks(ns)
        ax.set_xticklabels([f"{x:,}" for x in ns])
        ax.set_xlabel("N (nodes)")
        ax.set_ylabel("messages per look-up (mean)")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, format="svg", metadata={"Date": None})
        plt.close(fig)
        return "matplotlib"
    except ImportError:
        svg_by_hand(series, path, title)
        return "hand-written SVG (matplotlib not installed)"


def svg_by_hand(series, path, title):
    W, H, L, R, T, B = 820, 520, 80, 250, 40, 60
    ns = sorted({x for s in series for x in s[1]})
    ys = [y for s in series for y in s[2] if y > 0]
    ylo = 10 ** math.floor(math.log10(min(ys)))
    yhi = 10 ** math.ceil(math.log10(max(ys)))
    xlo, xhi = math.log10(min(ns)), math.log10(max(ns))
    if xhi == xlo:
        xlo, xhi = xlo - 0.5, xhi + 0.5

    def X(n):
        return L + (math.log10(n) - xlo) / (xhi - xlo) * (W - L - R)

    def Y(v):
        return H - B - (math.log10(v) - math.log10(ylo)) / (math.log10(yhi) - math.log10(ylo)) * (H - T - B)

    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
         'font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{(L + W - R) / 2}" y="22" text-anchor="middle" font-size="13">{title}</text>']
    y = ylo
    while y <= yhi * 1.001:
        o.append(f'<line x1="{L}" y1="{Y(y):.1f}" x2="{W - R}" y2="{Y(y):.1f}" stroke="#ddd"/>')
        o.append(f'<text x="{L - 6}" y="{Y(y) + 4:.1f}" text-anchor="end">{y:g}</text>')
        y *= 10
    for n in ns:
        o.append(f'<line x1="{X(n):.1f}" y1="{T}" x2="{X(n):.1f}" y2="{H - B}" stroke="#eee"/>')
        o.append(f'<text x="{X(n):.1f}" y="{H - B + 18}" text-anchor="middle">{n:,}</text>')
    o.append(f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="black"/>')
    o.append(f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H - B}" stroke="black"/>')
    o.append(f'<text x="{(L + W - R) / 2}" y="{H - 20}" text-anchor="middle">N (nodes), log scale</text>')
    o.append(f'<text x="20" y="{(T + H - B) / 2}" text-anchor="middle" '
             f'transform="rotate(-90 20 {(T + H - B) / 2})">messages per look-up (mean), log scale</text>')
    for k, (label, xs, vs, color, style) in enumerate(series):
        pts = " ".join(f"{X(x):.1f},{Y(max(v, ylo)):.1f}" for x, v in zip(xs, vs))
        dash = ' stroke-dasharray="6,4"' if style == "dashed" else ""
        o.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
        for x, v in zip(xs, vs):
            o.append(f'<circle cx="{X(x):.1f}" cy="{Y(max(v, ylo)):.1f}" r="3.5" fill="{color}"/>')
        ly = T + 14 + 20 * k
        o.append(f'<line x1="{W - R + 12}" y1="{ly}" x2="{W - R + 40}" y2="{ly}" stroke="{color}" '
                 f'stroke-width="2"{dash}/>')
        o.append(f'<text x="{W - R + 46}" y="{ly + 4}" font-size="11">{label}</text>')
    o.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(o) + "\n")


def plot_series(by_copies):
    """(label, xs, ys, colour, style) per mode, from the N sweeps: solid for
    popular items, dashed for single copies."""
    all_ns = sorted({r["nodes"] for _, rows in by_copies for r in rows})
    out = [("directory (computed): 2", all_ns, [2] * len(all_ns), "#7f7f7f", "solid")]
    styles = [("solid", "popular"), ("dashed", "single copy")]
    for (copies, rows), (style, what) in zip(by_copies, styles):
        if not rows:
            continue
        ns = [r["nodes"] for r in rows]
        if all("flood" in r for r in rows):
            out.append((f"flooding, {what}", ns, [r["flood"]["msgs_mean"] for r in rows], "#d62728", style))
            out.append((f"expanding ring, {what}", ns, [r["ring"]["msgs_mean"] for r in rows], "#ff7f0e", style))
        out.append((f"DHT, {what}", ns, [r["dht"]["msgs_mean"] for r in rows], "#1f77b4", style))
    return out


def shown_options():
    """The script's options that change the figures (not --bin, --out, --svg)."""
    out, skip = [], False
    for x in sys.argv[1:]:
        if skip:
            skip = False
        elif x in ("--bin", "--out", "--svg"):
            skip = True
        elif not x.startswith(("--bin=", "--out=", "--svg=")):
            out.append(x)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", help="a built dht-sim (default: make build/dht-sim)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "dht-sim.md"))
    ap.add_argument("--svg", default=os.path.join(ROOT, "bench", "lookup-messages.svg"))
    ap.add_argument("--sizes", default="1000,10000", help="N of the sweep against N (100,000: see where it stops)")
    ap.add_argument("--popular-sizes", default="1000,10000",
                    help="N of the sweep with popular items (1%% of N hold each); 100,000 costs 100,000 announcements, "
                    "about 20 more minutes")
    ap.add_argument("--flood-sizes", default="1000,10000", help="N at which flooding runs beside")
    ap.add_argument("--churn-sizes", default="10000", help="N of the sweep against churn")
    ap.add_argument("--churns", default="0.1,0.5", help="churn per hour beside 0")
    ap.add_argument("--losses", default="0.01,0.05", help="message loss rates run at the first churn rate")
    ap.add_argument("--lookups", type=int, default=1000)
    ap.add_argument("--flood-queries", type=int, default=200)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--quick", action="store_true", help="N = 1,000 and 2,000, few look-ups (a smoke run)")
    a = ap.parse_args()

    binary = a.bin
    if not binary:
        subprocess.run(["make", "-C", ROOT, "build/dht-sim"], check=True, stdout=sys.stderr)
        binary = os.path.join(ROOT, "build", "dht-sim")
    if a.quick:
        a.sizes, a.flood_sizes, a.churn_sizes, a.lookups, a.flood_queries = "1000,2000", "1000,2000", "1000", 200, 50
        a.popular_sizes = a.sizes
    sizes = [int(x) for x in a.sizes.split(",")]
    popular_sizes = {int(x) for x in a.popular_sizes.split(",") if x}
    flood_sizes = {int(x) for x in a.flood_sizes.split(",") if x}
    churn_sizes = [int(x) for x in a.churn_sizes.split(",") if x]
    churns = [float(x) for x in a.churns.split(",") if x]
    losses = [float(x) for x in a.losses.split(",") if x]
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    common = ["--seed", str(a.seed), "--lookups", str(a.lookups), "--flood-queries", str(a.flood_queries)]

    t0 = time.monotonic()
    sweeps = []  # (copies label, rows)
    for copies in ("1%", "1"):
        rows = []
        for n in sizes:
            if copies.endswith("%") and n not in popular_sizes:
                continue
            args = ["--nodes", str(n), "--copies", copies] + common
            if n in flood_sizes:
                args.append("--flood")
            rows += run_one(binary, args, log)
        sweeps.append((copies, rows))
    churn_rows = []
    for n in churn_sizes:
        base = [r for r in sweeps[1][1] if r["nodes"] == n]
        churn_rows += base
        for c in churns:
            churn_rows += run_one(binary, ["--nodes", str(n), "--copies", "1", "--churn-per-hour", str(c)] + common, log)
        for loss in losses:
            churn_rows += run_one(binary, ["--nodes", str(n), "--copies", "1", "--churn-per-hour", str(churns[0] if churns else 0),
                                           "--loss", str(loss)] + common, log)
    # Why look-ups fail: the same runs with routing tables past their first
    # bucket refresh (settle longer than the cores' 1 h refresh), and with the
    # refresh every 10 minutes.
    diag_rows = []
    for n in churn_sizes:
        for extra, why in ((["--settle-s", "3900"], "settle 65 min (tables after their first refresh)"),
                           (["--refresh-ms", "600000"], "bucket refresh every 10 min")):
            for c in [0.0] + churns[:1]:
                rows = run_one(binary, ["--nodes", str(n), "--copies", "1", "--churn-per-hour", str(c)] + extra + common,
                               log)
                for r in rows:
                    r["why"] = why
                diag_rows += rows
    wall = time.monotonic() - t0

    title = "Messages per look-up against N: directory, flooding, expanding ring, DHT"
    tool = plot(plot_series(sweeps), a.svg, title)
    svg_name = os.path.basename(a.svg)

    doc = []
    w = doc.append
    w("# The DHT at scale: the Kademlia core in the simulator")
    w("")
    w(f"Generated {datetime.date.today().isoformat()} at commit {git_head()} by "
      f"`{shlex.join(['python3', 'bench/dht_sim.py'] + shown_options())}` "
      f"({wall:.0f} s on one core of {cpu_model()}); each row's command is listed at the end.")
    w("")
    w("The simulator (`sim/dht_sim.c`, `build/dht-sim`) runs N nodes in one process, each with its own "
      "`struct dht` from `src/proto/dht.c` — the core the real node runs — with its default options "
      "(k = 20, α = 3, 2 s request timeout, 3 failures before a contact is dropped). Messages pass between "
      "cores as `struct pn_dht_msg` (not encoded for delivery; encoded with `pn_dht_encode` to count bytes). "
      "One-way latency is fixed per node pair, uniform in 10–100 ms. Scenario: 4 bootstrap nodes; the other "
      "nodes join over 10 minutes, each through two of them; 5 minutes of settling; then each of 100 items "
      "is announced (a PROVIDER record) by each of its holders over one minute; a minute later a window of "
      "one hour opens in which the look-ups arrive at random times, each for a random item from a random node "
      "that does not hold it (`want` = 1: one record is enough). Churn, when there is any, runs through the "
      "window: nodes leave silently (any but the bootstrap nodes) and as many new ones join, each at the "
      "stated rate per hour as a share of N; new nodes hold nothing; a look-up whose querier left is asked "
      "by another live node up for at least a minute, and a look-up of an item with no live holder left is "
      "not counted (its count is in the health table).")
    w("")
    w("Per look-up: **found a live provider** = a PROVIDER record came back whose publisher was alive at that "
      "moment; **rounds** = the core's `rounds_to_first` for those that found one; **messages** = the core's "
      "requests + replies of the look-up until it ended; **messages to first provider** = the requests and "
      "replies of the look-up the driver saw until the first live record (what a node that stops there pays); "
      "**first provider ms** = virtual time to that record. Routing memory is `dht_memory()` "
      "(table, stored records, look-ups) over the nodes alive at the end. Percentiles are nearest-rank.")
    w("")
    w("Flooding and the expanding ring run on the flood core (`src/proto/flood.c`, `sim/sim.c`) over the same "
      "N, the same item placement (same holders by node index) and the same (querier, item) pairs — the first "
      f"{a.flood_queries} of the DHT's look-ups — on its own random overlay (4–8 neighbours), with latency "
      "uniform in 10–100 ms per message, hop limit 5 (the node's default), stopping at one hit. The directory "
      "is **computed** from its model, not simulated: one request and one answer to one machine (2 messages, "
      "1 round, one round trip ≈ 110 ms at this latency), always a live provider while the directory is up, "
      "and nothing at all for anyone while it is down.")
    w("")
    if max(sizes) < 100000:
        w("**Where it stops:** N = 100,000 is not in the default run. With the join refresh of commit 99b0052 "
          "(every bucket farther than the closest neighbour refreshed after joining, so tables hold about 200 "
          "contacts at N = 10,000), one run at N = 100,000 with flooding beside it "
          "(`build/dht-sim --nodes 100000 --copies 1 --flood ...`) had used more than 13 minutes of CPU and 2.5 GB "
          "when it was stopped: past the ten minutes on one core that the issue allows. `--sizes 1000,10000,100000` "
          "runs it.")
        w("")
    w(f"![messages per look-up against N]({svg_name})")
    w("")
    w(f"`{svg_name}`: means from the tables below (plot by {tool}); solid lines are popular items "
      "(copies = 1% of N), dashed single-copy items.")
    for idx, (copies, rows) in enumerate(sweeps):
        what = "popular items: each held by 1% of N" if copies.endswith("%") else "rare items: one copy each"
        w("")
        w(f"### {2 * idx + 1}. Against N, {what}, no churn: the DHT")
        w("")
        table_dht(w, rows, "N", lambda r: r["nodes"])
        w("")
        w(f"### {2 * idx + 2}. Against N, {what}: side by side on the same items and questions")
        w("")
        table_side(w, rows)
    w("")
    w(f"### 5. Against churn (nodes leaving and as many joining per hour, share of N) and message loss "
      "(each message lost at random at the stated rate), rare items")
    w("")
    table_dht(w, churn_rows, "N, churn per hour, loss",
              lambda r: f"{r['nodes']}, {100 * r['churn_per_hour']:g}%, {100 * r.get('loss', 0):g}%")
    w("")
    w("### 6. What the network carried (every message, look-ups, joins, pings, announcements, refreshes)")
    w("")
    table_health(w, [r for _, rows in sweeps for r in rows] + [r for r in churn_rows if r["churn_per_hour"] > 0],
                 lambda r: f"N={r['nodes']} copies={r['copies']} churn={100 * r['churn_per_hour']:g}%")

    # The goals of issue 13 at N = 10,000.
    g = [r for r in sweeps[1][1] if r["nodes"] == GOAL_N]
    gc = [r for r in churn_rows if r["nodes"] == GOAL_N and abs(r["churn_per_hour"] - 0.1) < 1e-9
          and not r.get("loss")]
    if g:
        d = g[0]["dht"]
        w("")
        w(f"### 7. The goals at N = {GOAL_N:,} (issue 13)")
        w("")
        w("| goal | measured | met |")
        w("|---|---:|---|")
        w(f"| median rounds ≤ {GOAL_ROUNDS} | {d['rounds_median']:.0f} | {'yes' if d['rounds_median'] <= GOAL_ROUNDS else 'no'} |")
        if gc:
            s = gc[0]["dht"]["success_rate"]
            w(f"| ≥ {100 * GOAL_SUCCESS:g}% find a live provider at 10% churn per hour | {pct(s)} "
              f"| {'yes' if s >= GOAL_SUCCESS else 'no'} |")
        w(f"| ≤ {GOAL_MSGS} messages per look-up (median) | {d['msgs_median']:.0f} (p99 {d['msgs_p99']:.0f}) "
          f"| {'yes' if d['msgs_median'] <= GOAL_MSGS else 'no'} |")
    if diag_rows:
        w("")
        w("### 8. Table upkeep: the same look-ups with fuller routing tables, rare items")
        w("")
        w("Right after its join look-up a node refreshes every bucket farther than its closest neighbour "
          "that is not full (Kademlia, section 2.3 of the paper); after that, a bucket is refreshed when no "
          "look-up or contact touched it for an hour. Look-ups that fail without timeouts end at a dead end: "
          "the 20 closest nodes they saw all answered, but none knew anybody nearer the key. The same "
          "look-ups with tables past their first hourly refresh, and with a refresh every 10 minutes, show "
          "what more upkeep buys and what it costs:")
        w("")
        table_dht(w, diag_rows, "N, churn per hour, change",
                  lambda r: f"{r['nodes']}, {100 * r['churn_per_hour']:g}%, {r['why']}")
        w("")
        w("Background traffic (every message network-wide in the window, per live node per hour): " +
          "; ".join(f"{r['why']}, churn {100 * r['churn_per_hour']:g}%: {r['dht']['bg_msgs_per_node_hour']:.0f}"
                    for r in diag_rows) + ".")
    w("")
    w("Commands (each a process of its own; CPU s and peak RSS above are that process's):")
    w("")
    for r in ([r for _, rows in sweeps for r in rows] + [r for r in churn_rows if r["churn_per_hour"] > 0]
              + diag_rows):
        w(f"    {r['cmd']}    # {r['wall_s']:.0f} s")
    w("")
    with open(a.out, "w") as f:
        f.write("\n".join(doc))
    print("\n".join(doc))
    log(f"wrote {a.out} and {a.svg} ({wall:.0f} s)")


if __name__ == "__main__":
    main()
