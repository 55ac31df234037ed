"""put / get / ls round trips against a live server."""
import json
import os
import subprocess

import pytest

from conftest import (BIN, CHUNK, FAST_BIN, CLI_TIMEOUT, assert_one_error_line, dir_files, dir_size, make_file,
                      run, sha256_file, stop_pid)

MIB = 1024 * 1024
SIZES = [0, 1, CHUNK, CHUNK + 1, 64 * MIB]


@pytest.mark.parametrize("size", SIZES, ids=["0B", "1B", "1chunk", "1chunk+1", "64MiB"])
def test_round_trip(server, workdir, size):
    src = os.path.join(workdir, "file-%d.bin" % size)
    digest = make_file(src, size, seed=size + 7)
    cbin = None  # both sides are the ASan build (PEERNET_BIN)
    put = server.put(src, bin=cbin)
    assert len(put) == 1
    entry = put[0]
    assert entry["name"] == os.path.basename(src)
    assert entry["size"] == size
    assert entry["bytes_sent"] == size
    assert entry["id"].startswith("pn1") and len(entry["id"]) == 67

    dst = os.path.join(workdir, "out", "got.bin")
    os.makedirs(os.path.dirname(dst))
    res = server.get(entry["id"], dst, bin=cbin)
    assert res["ok"] is True
    assert res["size"] == size
    assert res["bytes_downloaded"] == size
    assert res["bytes_resumed"] == 0
    assert res["path"] == dst
    assert os.path.getsize(dst) == size
    assert sha256_file(dst) == digest
    # Completion leaves no partial behind.
    assert not os.path.exists(dst + ".pnpart")
    assert not os.path.exists(dst + ".pnpart.state")


def test_put_plain_output_and_ls(server, workdir):
    files = {}
    for name, size in [("empty.bin", 0), ("one.bin", 1), ("chunk.bin", CHUNK), ("chunk1.bin", CHUNK + 1)]:
        path = os.path.join(workdir, name)
        make_file(path, size, seed=len(name))
        files[name] = (path, size)
    p = run(["put", "--server", server.addr] + [v[0] for v in files.values()], check=0)
    lines = p.stdout.decode().splitlines()
    assert len(lines) == len(files)
    ids = {}
    for line in lines:
        cid, name = line.split("  ", 1)
        assert cid.startswith("pn1") and len(cid) == 67
        ids[name] = cid
    assert set(ids) == set(files)

    listed = server.ls()
    by_name = {e["name"]: e for e in listed}
    assert set(by_name) == set(files)
    for name, (_path, size) in files.items():
        assert by_name[name]["id"] == ids[name]
        assert by_name[name]["size"] == size

    plain = run(["ls", "--server", server.addr], check=0).stdout.decode().splitlines()
    assert len(plain) == len(files)
    for name, cid in ids.items():
        match = [l for l in plain if l.startswith(cid) and l.rstrip().endswith(name)]
        assert len(match) == 1, (name, plain)


def test_ls_empty_server(server):
    assert server.ls() == []
    p = run(["ls", "--server", server.addr], check=0)
    assert p.stdout.strip() == b""


def test_put_same_content_stores_nothing_new(server, workdir):
    src = os.path.join(workdir, "dup.bin")
    make_file(src, 3 * CHUNK + 5, seed=99)
    first = server.put(src)[0]
    assert first["bytes_sent"] == 3 * CHUNK + 5
    files_before = dir_files(server.data_dir)
    size_before = dir_size(server.data_dir)

    again = server.put(src)[0]
    assert again["id"] == first["id"]
    assert again["bytes_sent"] == 0
    assert dir_files(server.data_dir) == files_before
    assert dir_size(server.data_dir) == size_before

    # The same bytes under another name are not sent again either.
    copy = os.path.join(workdir, "dup-copy.bin")
    with open(src, "rb") as a, open(copy, "wb") as b:
        b.write(a.read())
    third = server.put(copy)[0]
    assert third["id"] == first["id"]
    assert third["bytes_sent"] == 0
    assert dir_size(server.data_dir) <= size_before + 4096  # at most a name record, no content


def test_put_json_several_files(server, workdir):
    a = os.path.join(workdir, "a.bin")
    b = os.path.join(workdir, "b.bin")
    make_file(a, 1000, seed=1)
    make_file(b, 2000, seed=2)
    res = server.put(a, b)
    assert [e["name"] for e in res] == ["a.bin", "b.bin"]
    assert [e["size"] for e in res] == [1000, 2000]


def test_concurrent_clients(server_factory, workdir, procs):
    """8 clients (the fast build, so that 2 cores suffice) fetch the same 64 MiB
    from the ASan server at once; every copy is verified."""
    size = 64 * MIB
    srv = server_factory()
    src = os.path.join(workdir, "shared.bin")
    digest = make_file(src, size, seed=8)
    cid = srv.put_id(src, bin=FAST_BIN)
    clients = []
    for i in range(8):
        out = os.path.join(workdir, "c%d.bin" % i)
        p = subprocess.Popen([FAST_BIN, "get", "--server", srv.addr, "--json", cid, "-o", out],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        procs.append(p)
        clients.append((p, out))
    for p, out in clients:
        stdout, stderr = p.communicate(timeout=CLI_TIMEOUT)
        assert p.returncode == 0, stderr
        res = json.loads(stdout)
        assert res["ok"] and res["bytes_downloaded"] == size and res["bytes_resumed"] == 0
        assert sha256_file(out) == digest


def test_get_to_stdout(server, workdir):
    src = os.path.join(workdir, "s.bin")
    digest = make_file(src, 5 * CHUNK + 123, seed=5)
    cid = server.put_id(src)
    tmp = os.path.join(workdir, "tmp")
    os.makedirs(tmp)
    env = dict(os.environ, TMPDIR=tmp)
    p = run(["get", "--server", server.addr, cid, "-o", "-"], check=0, env=env)
    import hashlib
    assert len(p.stdout) == 5 * CHUNK + 123
    assert hashlib.sha256(p.stdout).hexdigest() == digest
    assert p.stderr == b""
    # Nothing left behind: not in the working directory, not in TMPDIR.
    assert not [f for f in os.listdir(workdir) if "pnpart" in f]
    assert os.listdir(tmp) == []


def test_get_without_o_uses_server_name(server, workdir):
    src = os.path.join(workdir, "named.bin")
    digest = make_file(src, 1000, seed=3)
    cid = server.put_id(src)
    dl = os.path.join(workdir, "dl")
    os.makedirs(dl)
    run(["get", "--server", server.addr, cid], check=0, cwd=dl)
    assert sha256_file(os.path.join(dl, "named.bin")) == digest


def test_existing_output_needs_force(server, workdir):
    src = os.path.join(workdir, "f.bin")
    digest = make_file(src, 2 * CHUNK + 1, seed=11)
    cid = server.put_id(src)
    dst = os.path.join(workdir, "existing.bin")
    with open(dst, "wb") as f:
        f.write(b"keep me")
    p = run(["get", "--server", server.addr, cid, "-o", dst])
    assert p.returncode == 1
    line = assert_one_error_line(p, "get")
    assert "exists" in line and "--force" in line
    with open(dst, "rb") as f:
        assert f.read() == b"keep me"

    res = server.get(cid, dst, "--force")
    assert res["ok"] and sha256_file(dst) == digest


def test_ls_pages(server, workdir):
    """More entries than one LIST page holds (256 entries, 64 KiB): ls shows them all."""
    d = os.path.join(workdir, "many")
    os.makedirs(d)
    paths = []
    for i in range(300):
        name = "%03d-" % i + "n" * 200
        path = os.path.join(d, name)
        with open(path, "wb") as f:
            f.write(b"content %d" % i)
        paths.append(path)
    res = server.put(*paths)
    assert len(res) == 300 and len({e["id"] for e in res}) == 300
    listed = server.ls()
    assert sorted(e["name"] for e in listed) == sorted(os.path.basename(p) for p in paths)
    plain = run(["ls", "--server", server.addr], check=0).stdout.decode().splitlines()
    assert len(plain) == 300


def test_put_rejects_bad_inputs(server, workdir):
    p = run(["put", "--server", server.addr, workdir])
    assert p.returncode == 1
    assert "not a regular file" in assert_one_error_line(p, "put")
    bad = os.path.join(workdir, "bad\x01name.bin")
    with open(bad, "wb") as f:
        f.write(b"x")
    p = run(["put", "--server", server.addr, bad])
    assert p.returncode == 1
    assert_one_error_line(p, "put")
    assert server.ls() == []
