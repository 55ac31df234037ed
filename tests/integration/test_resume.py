"""Interrupted downloads: the client killed, the server killed, the disk full."""
import json
import os
import signal
import subprocess

import pytest

from conftest import (BIN, CHUNK, CLI_TIMEOUT, assert_one_error_line, make_file, poll, run, sha256_file,
                      state_chunks_done, stop_pid, wait_progress)
from tcpproxy import TcpProxy

MIB = 1024 * 1024
SLOW_RATE = 2 * MIB  # bytes/s through the proxy: a 16 MiB file takes ~8 s


def start_get(addr, cid, out, procs, *extra):
    p = subprocess.Popen([BIN, "get", "--server", addr, "--json", cid, "-o", out] + list(extra),
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    procs.append(p)
    return p


def test_client_kill9_then_resume(server, workdir, procs):
    size = 16 * MIB
    nchunks = size // CHUNK
    src = os.path.join(workdir, "big.bin")
    digest = make_file(src, size, seed=21)
    cid = server.put_id(src)
    out = os.path.join(workdir, "got.bin")
    state = out + ".pnpart.state"
    with TcpProxy(server.port, down_rate=SLOW_RATE) as proxy:
        p = start_get(proxy.addr, cid, out, procs)
        wait_progress(p, state, nchunks, 4)
        assert p.poll() is None
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=10)
        assert p.returncode == -signal.SIGKILL
    assert not os.path.exists(out)
    assert os.path.exists(out + ".pnpart") and os.path.exists(state)
    done = state_chunks_done(state, nchunks)
    assert 0 < done < nchunks

    res = server.get(cid, out)
    assert res["ok"]
    assert res["bytes_resumed"] > 0
    assert res["bytes_downloaded"] < size
    # Not a verified chunk fetched twice: what was reused plus what was fetched is the file.
    assert res["bytes_resumed"] + res["bytes_downloaded"] == size
    assert sha256_file(out) == digest
    assert not os.path.exists(out + ".pnpart") and not os.path.exists(state)


def test_server_kill9_then_resume_after_restart(server_factory, workdir, procs):
    srv = server_factory()
    size = 16 * MIB
    nchunks = size // CHUNK
    src = os.path.join(workdir, "big.bin")
    digest = make_file(src, size, seed=22)
    cid = srv.put_id(src)
    out = os.path.join(workdir, "got.bin")
    state = out + ".pnpart.state"
    timeout = 10
    with TcpProxy(srv.port, down_rate=SLOW_RATE) as proxy:
        p = start_get(proxy.addr, cid, out, procs, "--timeout", str(timeout))
        wait_progress(p, state, nchunks, 4)
        srv.kill9()
        # The client gives up within its --timeout (plus slack for start-up and ASan).
        stdout, stderr = p.communicate(timeout=timeout + 20)
    assert p.returncode == 1
    line = assert_one_error_line(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr), "get")
    assert "partial" in line and (out + ".pnpart") in line, line
    res = json.loads(stdout)
    assert res["ok"] is False
    assert not os.path.exists(out)
    assert os.path.exists(out + ".pnpart")
    assert state_chunks_done(state, nchunks) > 0

    srv2 = server_factory(data_dir=srv.data_dir)
    assert srv2.node_id == srv.node_id  # same identity from the same data dir
    res = srv2.get(cid, out)
    assert res["ok"]
    assert res["bytes_resumed"] > 0
    assert res["bytes_resumed"] + res["bytes_downloaded"] == size
    assert sha256_file(out) == digest


@pytest.fixture
def small_tmpfs(workdir):
    """A 2 MiB tmpfs under workdir; skipped if it cannot be mounted (not root)."""
    mnt = os.path.join(workdir, "tmpfs")
    os.makedirs(mnt)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", mnt], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs: %s" % r.stderr.decode(errors="replace").strip())
    yield mnt
    r = subprocess.run(["umount", mnt], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    if r.returncode != 0:
        subprocess.run(["umount", "-l", mnt], timeout=30)


def test_client_disk_full_keeps_partial(server, workdir, small_tmpfs):
    size = 4 * MIB
    src = os.path.join(workdir, "four.bin")
    digest = make_file(src, size, seed=23)
    cid = server.put_id(src)
    out = os.path.join(small_tmpfs, "four.bin")
    p = run(["get", "--server", server.addr, cid, "-o", out])
    assert p.returncode == 1
    line = assert_one_error_line(p, "get")
    assert "space" in line.lower(), line
    assert "partial" in line and out + ".pnpart" in line, line
    assert not os.path.exists(out)
    assert os.path.exists(out + ".pnpart")
    assert os.path.exists(out + ".pnpart.state")
    # The server is unaffected.
    ok = os.path.join(workdir, "ok.bin")
    assert server.get(cid, ok)["ok"] and sha256_file(ok) == digest


def start_on_small_tmpfs(server_factory, workdir, small_tmpfs):
    srv = server_factory(data_dir=os.path.join(small_tmpfs, "data"))
    small = os.path.join(workdir, "small.bin")
    small_digest = make_file(small, CHUNK + 3, seed=24)
    small_cid = srv.put_id(small)
    big = os.path.join(workdir, "big.bin")
    make_file(big, 4 * MIB, seed=25)
    return srv, small_cid, small_digest, big


def test_server_disk_full_server_still_serves(server_factory, workdir, small_tmpfs):
    srv, small_cid, small_digest, big = start_on_small_tmpfs(server_factory, workdir, small_tmpfs)
    n = len(srv.log_lines())
    p = run(["put", "--server", srv.addr, "--timeout", "20", big])
    assert p.returncode != 0
    srv.wait_log("no space left", after=n)
    assert srv.alive()
    listed = srv.ls()
    assert [e["id"] for e in listed] == [small_cid]
    out = os.path.join(workdir, "small-back.bin")
    assert srv.get(small_cid, out)["ok"] and sha256_file(out) == small_digest


def test_server_disk_full_put_fails_clearly(server_factory, workdir, small_tmpfs):
    srv, small_cid, small_digest, big = start_on_small_tmpfs(server_factory, workdir, small_tmpfs)
    p = run(["put", "--server", srv.addr, "--timeout", "20", big])
    assert p.returncode == 1
    line = assert_one_error_line(p, "put")
    assert "disk full" in line or "space" in line.lower(), line


def test_put_kill9_then_resume(server, workdir, procs):
    """An upload killed mid-way resumes: the second put sends only what the server lacks."""
    size = 12 * MIB
    nchunks = size // CHUNK
    src = os.path.join(workdir, "up.bin")
    digest = make_file(src, size, seed=26)
    incoming = os.path.join(server.data_dir, "incoming")

    def server_has():
        states = [f for f in os.listdir(incoming) if f.endswith(".state")] if os.path.isdir(incoming) else []
        return max([state_chunks_done(os.path.join(incoming, f), nchunks) for f in states] or [0])

    with TcpProxy(server.port, up_rate=SLOW_RATE) as proxy:
        p = subprocess.Popen([BIN, "put", "--server", proxy.addr, "--json", src], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        procs.append(p)

        def progressed():
            assert p.poll() is None, "the upload ended before it could be interrupted: %r" % (p.communicate(),)
            return server_has() >= 4
        poll(progressed, 60, what="the server to hold 4 chunks of the upload")
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=10)
    assert server.ls() == []  # not listed until complete
    res = server.put(src)[0]
    assert 0 < res["bytes_sent"] < size
    out = os.path.join(workdir, "back.bin")
    assert server.get(res["id"], out)["ok"] and sha256_file(out) == digest
