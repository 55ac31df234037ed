"""The server process itself: identity, signals, a silent server seen from a client."""
import json
import os
import signal
import socket
import stat
import subprocess
import time

from conftest import (BIN, CHUNK, CLI_TIMEOUT, assert_one_error_line, make_file, poll, run, sha256_file,
                      state_chunks_done, wait_progress)
from tcpproxy import TcpProxy

MIB = 1024 * 1024


def test_identity_private_and_stable(server_factory):
    srv = server_factory()
    ids = [f for f in os.listdir(srv.data_dir) if "identity" in f or f.endswith(".pem") or f.endswith(".key")]
    assert ids, os.listdir(srv.data_dir)
    for f in ids:
        mode = stat.S_IMODE(os.stat(os.path.join(srv.data_dir, f)).st_mode)
        assert mode & 0o077 == 0, "%s has mode %o" % (f, mode)
    first = srv.node_id
    assert srv.stop() == 0
    srv2 = server_factory(data_dir=srv.data_dir)
    assert srv2.node_id == first
    other = server_factory()
    assert other.node_id != first


def test_sigint_and_sigterm_stop_cleanly(server_factory):
    for sig in (signal.SIGINT, signal.SIGTERM):
        srv = server_factory()
        assert srv.stop(sig) == 0
        assert "stopping" in srv.log()


def test_sigterm_during_download(server_factory, workdir, procs):
    """SIGTERM while a client downloads: the server exits 0, the client fails
    cleanly and keeps its partial, and a later run completes it."""
    srv = server_factory()
    size = 8 * MIB
    nchunks = size // CHUNK
    src = os.path.join(workdir, "f.bin")
    digest = make_file(src, size, seed=51)
    cid = srv.put_id(src)
    out = os.path.join(workdir, "out.bin")
    state = out + ".pnpart.state"
    with TcpProxy(srv.port, down_rate=1 * MIB) as proxy:
        p = subprocess.Popen([BIN, "get", "--server", proxy.addr, "--timeout", "10", cid, "-o", out],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        procs.append(p)

        wait_progress(p, state, nchunks, 2)
        assert srv.stop(signal.SIGTERM) == 0
        stdout, stderr = p.communicate(timeout=40)
    assert p.returncode == 1
    line = assert_one_error_line(subprocess.CompletedProcess(p.args, 1, stdout, stderr), "get")
    assert "partial" in line
    srv2 = server_factory(data_dir=srv.data_dir)
    res = srv2.get(cid, out)
    assert res["ok"] and res["bytes_resumed"] > 0 and sha256_file(out) == digest


def test_silent_server_times_out(workdir):
    """A listener that accepts and never answers: the client gives up with a clear error."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(4)
    port = lst.getsockname()[1]
    try:
        p = run(["ls", "--server", "127.0.0.1:%d" % port, "--timeout", "2"], timeout=60)
        assert p.returncode == 1
        line = assert_one_error_line(p, "ls")
        assert "timed out" in line or "answer" in line, line
    finally:
        lst.close()


def test_port_in_use(server, workdir):
    p = run(["serve", "--listen", server.addr, "--data", os.path.join(workdir, "other")], timeout=30)
    assert p.returncode == 1
    line = assert_one_error_line(p, "serve")
    assert "in use" in line


def test_progress_bar_drawn_by_the_program(server_factory, workdir):
    """The library reports progress through a callback; the program draws the
    bar on stderr: on with --progress (name, 100%, one final newline), nothing
    with --no-progress, and stdout stays the data's."""
    srv = server_factory()
    src = os.path.join(workdir, "bar.bin")
    digest = make_file(src, 3 * MIB + 17, seed=77)
    p = run(["put", "--server", srv.addr, "--progress", src], check=0)
    assert b"bar.bin" in p.stderr and b"100%" in p.stderr, p.stderr
    assert p.stderr.endswith(b"\n"), p.stderr[-200:]
    cid = p.stdout.split()[0].decode()
    out = os.path.join(workdir, "bar.out")
    p = run(["get", "--server", srv.addr, "--progress", cid, "-o", out], check=0)
    assert b"bar.bin" in p.stderr and b"100%" in p.stderr, p.stderr
    assert sha256_file(out) == digest
    os.unlink(out)
    p = run(["get", "--server", srv.addr, "--no-progress", cid, "-o", out], check=0)
    assert p.stderr == b"", p.stderr
    p = run(["get", "--server", srv.addr, "--progress", cid, "-o", "-"], check=0)
    assert len(p.stdout) == 3 * MIB + 17 and b"100%" in p.stderr


def test_cancel_withdraws_requests_not_yet_sent_under_an_upload_cap(server_factory, workdir):
    """Under --up-rate, a server hands a connection at most 512 KiB (two
    chunks) ahead of its cap and keeps the rest as requests, so CANCEL reaches
    them (docs/PROTOCOL.md: the server drops a request it has not sent yet):
    20 CHUNK_REQs, then CANCELs for the last 10, and only the first 10 (at
    most 2 more that were already handed over) come back."""
    import struct
    import time
    from conftest import cid_raw
    from pnwire import HELLO_CLIENT, T_CHUNK, T_HELLO, client_context, frame, make_ed25519_cert, parse_frames
    srv = server_factory(args=("--up-rate", "512K"))
    src = os.path.join(workdir, "c.bin")
    make_file(src, 20 * CHUNK, seed=91)
    cid = srv.put_id(src)
    cert = make_ed25519_cert(workdir)
    assert cert, "openssl cannot make an Ed25519 certificate"
    raw = socket.create_connection(("127.0.0.1", srv.port), timeout=20)
    s = client_context(*cert).wrap_socket(raw, server_hostname=None)
    try:
        reqs = b"".join(frame(bytes([0x14]) + struct.pack(">I", 100 + i) + cid_raw(cid) + struct.pack(">I", i))
                        for i in range(20))
        cancels = b"".join(frame(bytes([0x16]) + struct.pack(">I", 100 + i) + cid_raw(cid) + struct.pack(">I", i))
                           for i in range(10, 20))
        s.sendall(frame(HELLO_CLIENT) + reqs + cancels)
        got = []
        data = bytearray()
        deadline = time.monotonic() + 30
        s.settimeout(2)
        while time.monotonic() < deadline:
            try:
                b = s.recv(1 << 20)
            except socket.timeout:
                if len(got) >= 10:
                    break  # 2 s with nothing after the first ten: the rest were dropped
                continue
            assert b, "the server closed the connection"
            data += b
            frames, used = parse_frames(data)
            del data[:used]
            for f in frames:
                assert f[0] in (T_HELLO, T_CHUNK), "unexpected type 0x%02x" % f[0]
                if f[0] == T_CHUNK:
                    got.append(struct.unpack(">I", f[1:5])[0] - 100)
    finally:
        s.close()
    assert sorted(got)[:10] == list(range(10)), got
    assert len(got) <= 12, "cancelled requests were served: %s" % got


def _get_through(proxy_addr, cid, out, timeout_s):
    return subprocess.Popen([BIN, "get", "--server", proxy_addr, "--timeout", str(timeout_s), "--json", cid,
                             "-o", out], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_get_reconnects_after_a_dropped_connection(server_factory, workdir, procs):
    """The connection drops mid-download: get dials again and resumes from the
    chunks it verified, in the same run; no verified chunk is fetched twice."""
    srv = server_factory()
    size = 8 * MIB
    nchunks = size // CHUNK
    src = os.path.join(workdir, "r.bin")
    digest = make_file(src, size, seed=93)
    cid = srv.put_id(src)
    out = os.path.join(workdir, "r.out")
    state = out + ".pnpart.state"
    with TcpProxy(srv.port, down_rate=2 * MIB) as proxy:
        p = _get_through(proxy.addr, cid, out, 20)
        procs.append(p)
        for cut in (3, 12):
            wait_progress(p, state, nchunks, cut)
            proxy.cut()
        stdout, stderr = p.communicate(timeout=60)
        assert p.returncode == 0, stderr
        assert proxy.connections >= 3, "get did not dial again"
    res = json.loads(stdout)
    assert res["ok"] and sha256_file(out) == digest
    assert res["bytes_downloaded"] == size, "verified chunks were fetched again: %r" % res


def test_get_waits_for_a_restarted_server(server_factory, workdir, procs):
    """The server is killed mid-download and comes back (on another port behind
    the same proxy address): get rides it out within --timeout."""
    srv = server_factory()
    size = 6 * MIB
    nchunks = size // CHUNK
    src = os.path.join(workdir, "k.bin")
    digest = make_file(src, size, seed=94)
    cid = srv.put_id(src)
    out = os.path.join(workdir, "k.out")
    state = out + ".pnpart.state"
    with TcpProxy(srv.port, down_rate=2 * MIB) as proxy:
        p = _get_through(proxy.addr, cid, out, 30)
        procs.append(p)

        wait_progress(p, state, nchunks, 4)
        srv.stop(signal.SIGKILL)
        proxy.cut()
        time.sleep(1.5)  # refused meanwhile: the proxy cannot reach the server
        srv2 = server_factory(data_dir=srv.data_dir)
        proxy.upstream = ("127.0.0.1", srv2.port)
        stdout, stderr = p.communicate(timeout=60)
        assert p.returncode == 0, stderr
    res = json.loads(stdout)
    assert res["ok"] and sha256_file(out) == digest
    assert res["bytes_downloaded"] == size


def test_get_gives_up_on_a_server_gone_for_good(server_factory, workdir, procs):
    """The server goes and does not come back: get fails after --timeout with
    one line that says so and keeps its partial download."""
    srv = server_factory()
    size = 6 * MIB
    nchunks = size // CHUNK
    src = os.path.join(workdir, "g.bin")
    make_file(src, size, seed=95)
    cid = srv.put_id(src)
    out = os.path.join(workdir, "g.out")
    state = out + ".pnpart.state"
    with TcpProxy(srv.port, down_rate=2 * MIB) as proxy:
        p = _get_through(proxy.addr, cid, out, 3)
        procs.append(p)

        wait_progress(p, state, nchunks, 2)
        srv.stop(signal.SIGKILL)
        proxy.cut()
        stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 1
    line = assert_one_error_line(subprocess.CompletedProcess(p.args, 1, stdout, stderr), "get")
    assert "could not get it back" in line and "partial" in line, line


def test_hello_gives_the_listening_port(server_factory, workdir):
    """A listening serve says in its HELLO where it accepts connections
    (docs/PROTOCOL.md: listen_port, 0 only for none)."""
    import struct
    from pnwire import HELLO_CLIENT, T_HELLO, client_context, frame, make_ed25519_cert, parse_frames
    srv = server_factory()
    cert = make_ed25519_cert(workdir)
    assert cert, "openssl cannot make an Ed25519 certificate"
    raw = socket.create_connection(("127.0.0.1", srv.port), timeout=20)
    s = client_context(*cert).wrap_socket(raw, server_hostname=None)
    try:
        s.sendall(frame(HELLO_CLIENT))
        data = bytearray()
        frames = []
        deadline = time.monotonic() + 20
        while not frames and time.monotonic() < deadline:
            b = s.recv(4096)
            assert b, "the server closed the connection"
            data += b
            frames, _ = parse_frames(data)
    finally:
        s.close()
    assert frames and frames[0][0] == T_HELLO and frames[0][2] == 2, frames
    assert struct.unpack(">H", frames[0][3:5])[0] == srv.port
