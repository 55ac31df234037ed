#!/usr/bin/env python3
"""peernet demo: one server on loopback, one upload, four concurrent downloads.

Run by `make demo` as:  python3 bench/demo.py --bin build/peernet

It starts `peernet serve` on 127.0.0.1 (a free port) in a temporary
directory, generates a random file, puts it, fetches it with 4 clients at
once while showing their progress, checks every copy by SHA-256, prints time
and throughput, and stops everything it started (also on Ctrl-C).
Standard library only.
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

MIB = 1024 * 1024
START_TIMEOUT = 10.0      # seconds for the server to write its port file
PUT_TIMEOUT = 60.0
GET_TIMEOUT = 60.0
STOP_TIMEOUT = 5.0

UNITS = {"B": 1, "KiB": 1024, "MiB": MIB, "GiB": 1024 * MIB, "TiB": 1024 * 1024 * MIB}
# The progress bar's "done / total" part, e.g. "12.5 MiB / 64.0 MiB".
PROGRESS_RE = re.compile(r"(\d+(?:\.\d+)?) (B|KiB|MiB|GiB|TiB) / (\d+(?:\.\d+)?) (B|KiB|MiB|GiB|TiB)")


class Stop(Exception):
    """Raised by the SIGTERM/SIGHUP handler so that `finally` cleans up."""


def on_signal(signum, frame):
    raise Stop(f"signal {signum}")


def fmt_bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def make_file(path, size):
    """Writes `size` random bytes to path; returns their SHA-256 hex digest."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, 4 * MIB))
            f.write(block)
            h.update(block)
            left -= len(block)
    return h.hexdigest()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(4 * MIB)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


class Getter:
    """One `peernet get` child: its progress is parsed from the bar it writes to stderr."""

    def __init__(self, index, argv, out_path):
        self.index = index
        self.out_path = out_path
        self.done_bytes = 0
        self.err_lines = []
        self.start = time.monotonic()
        self.end = None
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.stdout_data = b""
        self._out_thread = threading.Thread(target=self._read_stdout, daemon=True)
        self._err_thread = threading.Thread(target=self._read_stderr, daemon=True)
        self._out_thread.start()
        self._err_thread.start()

    def _read_stdout(self):
        self.stdout_data = self.proc.stdout.read()

    def _read_stderr(self):
        pending = b""
        while True:
            data = self.proc.stderr.read1(4096)
            if not data:
                break
            pending += data
            # The bar redraws itself with \r; a real message ends with \n.
            parts = re.split(rb"[\r\n]", pending)
            pending = parts.pop()
            for part in parts:
                self._take(part.decode("utf-8", "replace"))
            if len(pending) > 4096:
                pending = pending[-4096:]
        if pending:
            self._take(pending.decode("utf-8", "replace"))

    def _take(self, line):
        m = PROGRESS_RE.search(line)
        if m:
            self.done_bytes = int(float(m.group(1)) * UNITS[m.group(2)])
        elif line.strip():
            self.err_lines.append(line.strip())

    def poll(self):
        if self.end is None and self.proc.poll() is not None:
            self.end = time.monotonic()
        return self.end is not None

    def result(self):
        """The JSON object the client printed, or None."""
        self._out_thread.join(timeout=5)
        text = self.stdout_data.decode("utf-8", "replace").strip()
        for line in reversed(text.splitlines()):
            try:
                return json.loads(line)
            except ValueError:
                continue
        return None


def stop_process(proc, name):
    """Stops one child by its PID: SIGTERM, then SIGKILL after STOP_TIMEOUT."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        print(f"demo: {name} (pid {proc.pid}) did not stop on SIGTERM; killing it", file=sys.stderr)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOP_TIMEOUT)
    except ProcessLookupError:
        pass


class LiveView:
    """Redraws one line per client in place on a terminal; on a pipe prints a
    short status line about once a second."""

    def __init__(self, getters, size):
        self.getters = getters
        self.size = size
        self.tty = sys.stdout.isatty()
        self.drawn = 0
        self.last_plain = 0.0

    def line(self, g):
        frac = min(1.0, g.done_bytes / self.size) if self.size else 1.0
        if g.end is not None and g.proc.returncode == 0:
            frac = 1.0
        width = 30
        bar = "#" * int(frac * width) + "." * (width - int(frac * width))
        elapsed = (g.end or time.monotonic()) - g.start
        rate = frac * self.size / elapsed / MIB if elapsed > 0 else 0.0
        state = "done" if g.end is not None and g.proc.returncode == 0 else \
            f"FAILED ({g.proc.returncode})" if g.end is not None else ""
        return (f"  client {g.index + 1}  [{bar}] {frac * 100:5.1f}%  "
                f"{fmt_bytes(frac * self.size):>10}  {rate:7.1f} MiB/s  {state}")

    def draw(self, final=False):
        if self.tty:
            if self.drawn:
                sys.stdout.write(f"\x1b[{self.drawn}F")
            for g in self.getters:
                sys.stdout.write("\x1b[2K" + self.line(g) + "\n")
            self.drawn = len(self.getters)
            sys.stdout.flush()
            return
        now = time.monotonic()
        if final or now - self.last_plain >= 1.0:
            self.last_plain = now
            if final:
                for g in self.getters:
                    print(self.line(g))
            else:
                parts = []
                for g in self.getters:
                    frac = min(1.0, g.done_bytes / self.size) if self.size else 1.0
                    if g.end is not None and g.proc.returncode == 0:
                        frac = 1.0
                    parts.append(f"client {g.index + 1} {frac * 100:5.1f}%")
                print("  " + "   ".join(parts))
            sys.stdout.flush()


def wait_port(port_file, server, log_path):
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with status {server.returncode}: "
                               + open(log_path, errors="replace").read().strip()[-500:])
        try:
            text = open(port_file).read().strip()
            if text:
                return int(text)
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"the server did not write {port_file} within {START_TIMEOUT:.0f} s")


def main():
    ap = argparse.ArgumentParser(description="Start a local peernet server, put a file, fetch it with "
                                             "concurrent clients, verify and time it.")
    ap.add_argument("--bin", default="build/peernet", help="the peernet binary")
    ap.add_argument("--size", default="64M",
                    help="size of the generated file: bytes, or with K/M/G suffix (default 64M)")
    ap.add_argument("--clients", type=int, default=4, help="concurrent downloads (default 4)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()

    m = re.fullmatch(r"(\d+)([KMG]?)i?B?", args.size.strip(), re.I)
    if not m:
        ap.error(f"--size {args.size!r}: expected a number with an optional K, M or G suffix")
    size = int(m.group(1)) * {"": 1, "K": 1024, "M": MIB, "G": 1024 * MIB}[m.group(2).upper()]
    binary = os.path.abspath(args.bin)
    if not os.access(binary, os.X_OK):
        print(f"demo: {binary} is not an executable; run `make build/peernet` first", file=sys.stderr)
        return 2

    # Ctrl-C raises KeyboardInterrupt even when started with SIGINT ignored
    # (a background job of a non-interactive shell).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    tmp = tempfile.mkdtemp(prefix="peernet-demo-")
    server = None
    getters = []
    status = 1
    try:
        data_dir = os.path.join(tmp, "server")
        port_file = os.path.join(tmp, "port")
        log_path = os.path.join(tmp, "server.log")
        with open(log_path, "wb") as log:
            server = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0", "--data", data_dir,
                                       "--port-file", port_file], stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        port = wait_port(port_file, server, log_path)
        addr = f"127.0.0.1:{port}"
        print(f"server   pid {server.pid} on {addr}, data in {data_dir}")

        src = os.path.join(tmp, "demo.bin")
        t = time.monotonic()
        want = make_file(src, size)
        print(f"file     {fmt_bytes(size)} of random bytes, sha256 {want[:16]}... "
              f"({time.monotonic() - t:.1f} s to make)")

        t = time.monotonic()
        put = subprocess.run([binary, "put", "--server", addr, "--no-progress", src],
                             capture_output=True, text=True, timeout=PUT_TIMEOUT)
        if put.returncode != 0:
            raise RuntimeError(f"put failed ({put.returncode}): {put.stderr.strip()}")
        put_secs = time.monotonic() - t
        id_line = put.stdout.strip().splitlines()[-1]
        cid = id_line.split()[0]
        print(f"put      {id_line}")
        print(f"         uploaded in {put_secs:.2f} s ({size / MIB / put_secs:.1f} MiB/s)")

        print(f"get      {args.clients} clients at once:")
        t0 = time.monotonic()
        for i in range(args.clients):
            out = os.path.join(tmp, f"copy{i + 1}.bin")
            argv = [binary, "get", "--server", addr, cid, "-o", out, "--json", "--progress"]
            getters.append(Getter(i, argv, out))
        view = LiveView(getters, size)
        deadline = t0 + GET_TIMEOUT
        while True:
            finished = [g.poll() for g in getters]
            view.draw()
            if all(finished):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the downloads did not finish within {GET_TIMEOUT:.0f} s")
            time.sleep(0.2)
        wall = max(g.end for g in getters) - t0
        view.draw(final=True)

        print()
        failures = 0
        print(f"  {'client':<8} {'time':>8} {'MiB/s':>9}  sha256")
        for g in getters:
            res = g.result()
            if g.proc.returncode != 0 or not res or not res.get("ok", True):
                failures += 1
                why = "; ".join(g.err_lines[-3:]) or f"exit status {g.proc.returncode}"
                print(f"  {g.index + 1:<8} FAILED: {why}")
                continue
            secs = float(res.get("seconds") or (g.end - g.start))
            got = sha256_file(g.out_path)
            ok = "ok" if got == want else "MISMATCH"
            if got != want:
                failures += 1
            print(f"  {g.index + 1:<8} {secs:7.2f}s {size / MIB / secs:9.1f}  {ok}")
        total = size * args.clients
        print(f"  {'all':<8} {wall:7.2f}s {total / MIB / wall:9.1f}  "
              f"({fmt_bytes(total)} in aggregate, wall time from start to last finish)")
        if failures:
            print(f"demo: {failures} of {args.clients} downloads failed", file=sys.stderr)
            status = 1
        else:
            print(f"all {args.clients} copies verified by SHA-256")
            status = 0
    except (KeyboardInterrupt, Stop) as e:
        print(f"\ndemo: interrupted ({str(e) or 'Ctrl-C'}), stopping", file=sys.stderr)
        status = 130
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as e:
        print(f"demo: {e}", file=sys.stderr)
        status = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # finish cleaning up even on a second Ctrl-C
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for g in getters:
            stop_process(g.proc, f"client {g.index + 1}")
        if server is not None:
            stop_process(server, "server")
            print(f"server   stopped (exit status {server.returncode})")
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
