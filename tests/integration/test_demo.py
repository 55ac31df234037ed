"""`peernet demo`: the four models end to end, the table, and no process left behind.

The demo makes its temporary root under $TMPDIR; each test gives it a fresh
one, so any process whose arguments or working directory point into it after
the demo has exited is a leftover.
"""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import BIN

DEMO_ARGS = ["demo", "--nodes", "3", "--size", "2M", "--up-rate", "4M"]
DEMO_TIMEOUT = 90          # seconds for the whole demo
INTERRUPT_TIMEOUT = 30     # seconds for the demo to stop after SIGINT
MODELS = ("client-server", "p2p + directory", "p2p + flooding", "p2p + DHT")


def processes_in(prefix):
    """(pid, what) of every process whose cwd or arguments point under prefix."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().decode("utf-8", "replace").replace("\0", " ")
        except OSError:
            continue
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            cwd = ""
        if prefix in args or cwd.startswith(prefix):
            found.append((int(pid), args.strip() or cwd))
    return found


class Sampler:
    """Records, until stopped, the arguments of every process under prefix,
    every 20 ms: what the demo starts, even for a second."""

    def __init__(self, prefix):
        self.prefix = prefix
        self.seen = {}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.done.wait(0.02):
            for pid, what in processes_in(self.prefix):
                self.seen.setdefault(pid, what)

    def stop(self):
        self.done.set()
        self.thread.join()
        return self.seen


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.fixture
def demo_tmp():
    # short: the nodes' control sockets live under it
    d = tempfile.mkdtemp(prefix="pnd-", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def start_demo(tmp):
    env = dict(os.environ, TMPDIR=tmp)
    return subprocess.Popen([BIN] + DEMO_ARGS, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            stdin=subprocess.DEVNULL, text=True, start_new_session=True)


def test_demo_runs_all_four_models_and_cleans_up(demo_tmp):
    proc = start_demo(demo_tmp)
    sampler = Sampler(demo_tmp)
    try:
        out, err = proc.communicate(timeout=DEMO_TIMEOUT)
    finally:
        stop(proc)
        seen = sampler.stop()
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{err}"
    # Progress comes from the library and the nodes' JSON, not from scraping
    # progress bars: no child draws one, and the distributions' downloads run
    # inside the demo (the only gets it starts are the four of section 6).
    assert any(" node " in what for what in seen.values()), seen
    assert not [what for what in seen.values() if "--progress" in what], seen
    # (by command line: LeakSanitizer's tracer shows its process's under another pid)
    gets = {what for what in seen.values() if what.split()[1:2] == ["get"]}
    assert len(gets) <= 4, "\n".join(sorted(gets))
    for m in MODELS:
        assert re.search(r"^  %s +\d+\.\d%%  +\d+/3 finished" % re.escape(m), out, re.M), out
    table = out[out.index("== 7."):]
    header = table.splitlines()[2]
    for m in MODELS:
        assert m in header, table
    for row in ("time to distribute", "lower bound", "bytes the central machine sent", "bytes the seed sent",
                "messages per look-up", "central machine gone"):
        assert row in table, table
    copies = next(l for l in table.splitlines() if "copies verified" in l)
    assert copies.split()[3:] == ["3/3", "3/3", "3/3", "3/3"], copies
    gone = next(l for l in table.splitlines() if "central machine gone" in l)
    assert "new downloads fail" in gone and "new look-ups fail" in gone and gone.count("still works") == 2, gone
    assert "NOT SO" not in table and "not measured" not in table, table
    assert processes_in(demo_tmp) == []
    assert os.listdir(demo_tmp) == [], "the demo left its temporary root behind"


def test_demo_stops_everything_on_ctrl_c(demo_tmp):
    proc = start_demo(demo_tmp)
    try:
        # wait until the p2p part runs (nodes up), then interrupt
        deadline = time.monotonic() + DEMO_TIMEOUT
        seen = ""
        while time.monotonic() < deadline and proc.poll() is None:
            line = proc.stdout.readline()
            seen += line
            if "registered with the directory" in line:
                break
        assert proc.poll() is None, seen
        assert processes_in(demo_tmp), "no process started under the demo's root"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=INTERRUPT_TIMEOUT)
    finally:
        stop(proc)
    assert proc.returncode == 130, f"exit {proc.returncode}\n{seen}{out}\n{err}"
    assert "interrupted" in err
    assert processes_in(demo_tmp) == []
    assert os.listdir(demo_tmp) == []
