"""Command line contract: help, version, usage errors, and client-side errors."""
import os
import socket

import pytest

from conftest import CHUNK, cid_str, assert_one_error_line, make_file, run

BAD_ID_UNKNOWN = cid_str(b"\x42" * 32, 128 * 1024)  # well-formed, 128 KiB, nobody has it


def test_help_and_version():
    p = run(["--help"], check=0)
    out = p.stdout.decode()
    for cmd in ("serve", "put", "get", "ls"):
        assert cmd in out
    for cmd in ("serve", "put", "get", "ls"):
        p = run([cmd, "--help"], check=0)
        assert p.stdout.decode().startswith("usage: peernet %s" % cmd)
    p = run(["--version"], check=0)
    assert p.stdout.decode().startswith("peernet ")


def test_unknown_command_is_usage_error():
    p = run(["frobnicate"])
    assert p.returncode == 2
    assert len([l for l in p.stderr.decode().splitlines() if l.strip()]) == 1
    assert b"frobnicate" in p.stderr


def test_no_command_is_usage_error():
    p = run([])
    assert p.returncode == 2


@pytest.mark.parametrize("bad", ["xyz", "pn1abc", "pn1" + "a" * 63, "pn1" + "1" * 64, "pn2" + "a" * 64])
def test_malformed_id_is_usage_error(bad):
    p = run(["get", "--server", "127.0.0.1:1", bad, "-o", "/nonexistent-dir/x"])
    assert p.returncode == 2
    line = assert_one_error_line(p, "get")
    assert "content ID" in line


def test_bad_option_usage_errors():
    assert run(["get", "--server", "127.0.0.1:1", "--window", "0", BAD_ID_UNKNOWN]).returncode == 2
    assert run(["get", "--server", "127.0.0.1:1", "--server-id", "zz", BAD_ID_UNKNOWN]).returncode == 2
    # Without --server, get goes to the local node: none runs here, so it fails (1), saying so.
    p = run(["get", "--data", "/nonexistent-peernet-dir", BAD_ID_UNKNOWN],
            env={k: v for k, v in os.environ.items() if k != "PEERNET_SERVER"})
    assert p.returncode == 1
    assert "no node is running" in assert_one_error_line(p, "get")
    assert run(["put", "--server", "127.0.0.1:1"]).returncode == 2
    assert run(["serve", "--bogus"]).returncode == 2


def free_port():
    """A port nothing listens on: bind, read the port, close (loopback only)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_unreachable_server(workdir):
    port = free_port()
    out = os.path.join(workdir, "x.bin")
    for cmd in (["get", BAD_ID_UNKNOWN, "-o", out], ["ls"]):
        p = run([cmd[0], "--server", "127.0.0.1:%d" % port, "--timeout", "5"] + cmd[1:])
        assert p.returncode == 1
        line = assert_one_error_line(p, cmd[0])
        assert "connect" in line and "refused" in line
    assert not os.path.exists(out)
    src = os.path.join(workdir, "p.bin")
    make_file(src, 10)
    p = run(["put", "--server", "127.0.0.1:%d" % port, "--timeout", "5", src])
    assert p.returncode == 1
    line = assert_one_error_line(p, "put")
    assert "refused" in line


def test_unknown_id(server, workdir):
    out = os.path.join(workdir, "x.bin")
    p = run(["get", "--server", server.addr, BAD_ID_UNKNOWN, "-o", out])
    assert p.returncode == 1
    line = assert_one_error_line(p, "get")
    assert BAD_ID_UNKNOWN in line and "no content" in line
    assert not os.path.exists(out)


@pytest.mark.parametrize("target", ["/nonexistent-dir/sub/out.bin", "/proc/peernet-out.bin"])
def test_unwritable_output(server, workdir, target):
    src = os.path.join(workdir, "f.bin")
    make_file(src, CHUNK + 1, seed=4)
    cid = server.put_id(src)
    p = run(["get", "--server", server.addr, cid, "-o", target])
    assert p.returncode == 1
    line = assert_one_error_line(p, "get")
    assert target in line or os.path.dirname(target) in line
    assert not os.path.exists(target)
    # The server is unaffected.
    out = os.path.join(workdir, "ok.bin")
    assert server.get(cid, out)["ok"]


def test_put_missing_file(server, workdir):
    p = run(["put", "--server", server.addr, os.path.join(workdir, "nope.bin")])
    assert p.returncode == 1
    line = assert_one_error_line(p, "put")
    assert "nope.bin" in line


def test_json_with_stdout_is_usage_error(server):
    p = run(["get", "--server", server.addr, "--json", BAD_ID_UNKNOWN, "-o", "-"])
    assert p.returncode == 2


def test_id_beyond_largest_file_is_usage_error():
    too_big = cid_str(b"\x01" * 32, 64 * 1024 ** 3 + 1)
    p = run(["get", "--server", "127.0.0.1:1", too_big, "-o", "/nonexistent-dir/x"])
    assert p.returncode == 2
    assert_one_error_line(p, "get")


def test_unknown_huge_id(server, workdir):
    """An unknown ID that claims 64 GiB: one clear line, exit 1."""
    big = cid_str(b"\x07" * 32, 64 * 1024 ** 3)
    out = os.path.join(workdir, "huge.bin")
    p = run(["get", "--server", server.addr, big, "-o", out])
    assert p.returncode == 1
    line = assert_one_error_line(p, "get")
    assert big in line
    assert not os.path.exists(out)


def test_unknown_id_leaves_nothing(server, workdir):
    big = cid_str(b"\x07" * 32, 64 * 1024 ** 3)
    out = os.path.join(workdir, "huge.bin")
    p = run(["get", "--server", server.addr, big, "-o", out])
    assert p.returncode == 1
    assert [f for f in os.listdir(workdir) if f.startswith("huge.bin")] == []
