"""One `--listen [::]:PORT` serves IPv4 and IPv6 clients alike, for `serve`,
`directory` and `node`: a client reaches each through 127.0.0.1 and through
::1 on the same port. Every process is stopped by its PID."""
import json
import os
import subprocess

import pytest

from conftest import BIN, FAST_BIN, START_TIMEOUT, make_file, poll, run, sha256_file, stop_pid


def has_ipv6_loopback():
    import socket
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback on this machine")


def start_serve(workdir):
    data = os.path.join(workdir, "srv")
    port_file = os.path.join(workdir, "srv.port")
    log = open(os.path.join(workdir, "srv.log"), "wb")
    p = subprocess.Popen([BIN, "serve", "--listen", "[::]:0", "--data", data, "--port-file", port_file],
                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def ready():
        assert p.poll() is None, "serve exited: %s" % open(log.name).read()
        try:
            text = open(port_file).read()
        except FileNotFoundError:
            return None
        return text.strip() if text.endswith("\n") else None
    return p, int(poll(ready, START_TIMEOUT, what="serve's port file"))


def test_serve_on_both_families(workdir):
    p, port = start_serve(workdir)
    try:
        src = os.path.join(workdir, "v4 upload.bin")
        digest = make_file(src, 600_000, seed=4)
        put = run(["put", "--server", "127.0.0.1:%d" % port, "--json", src], bin=FAST_BIN, check=0)
        cid = json.loads(put.stdout)[0]["id"]
        for host in ("127.0.0.1", "[::1]"):
            ls = run(["ls", "--server", "%s:%d" % (host, port), "--json"], bin=FAST_BIN, check=0)
            assert [o["id"] for o in json.loads(ls.stdout)] == [cid], host
            out = os.path.join(workdir, "got-%s" % host.strip("[]").replace(":", "_"))
            run(["get", "--server", "%s:%d" % (host, port), cid, "-o", out], bin=FAST_BIN, check=0)
            assert sha256_file(out) == digest, host
        log = open(os.path.join(workdir, "srv.log")).read()
        # An IPv4 client of the dual-stack socket is logged as the IPv4 address it is.
        assert "::ffff:" not in log, log
    finally:
        assert stop_pid(p) == 0


def test_directory_and_nodes_on_both_families(net, workdir):
    d = net.directory(listen="[::]:0")
    # a registers with the directory over IPv4, b over IPv6; both listen on [::].
    a = net.node("a", "127.0.0.1:%d" % d.port, start=False)
    b = net.node("b", "[::1]:%d" % d.port, start=False)
    for n in (a, b):
        n.listen = "[::]:0"
        n.start()
    a.wait_registered()
    b.wait_registered()
    fa = os.path.join(workdir, "from a.bin")
    fb = os.path.join(workdir, "from b.bin")
    da = make_file(fa, 700_000, seed=1)
    db = make_file(fb, 500_000, seed=2)
    ida = a.add_id(fa)
    idb = b.add_id(fb)
    # Through discovery: b fetches a's file (a registered over IPv4), a fetches
    # b's (b registered over IPv6, so a dials [::1]).
    got_b = b.get(ida, os.path.join(workdir, "b-got"))
    assert isinstance(got_b, dict), got_b
    assert sha256_file(os.path.join(workdir, "b-got")) == da
    got_a = a.get(idb, os.path.join(workdir, "a-got"))
    assert isinstance(got_a, dict), got_a
    assert sha256_file(os.path.join(workdir, "a-got")) == db
    # One node's [::]:PORT answers a client of either family directly.
    for host in ("127.0.0.1", "[::1]"):
        out = os.path.join(workdir, "direct-%s" % host.strip("[]").replace(":", "_"))
        run(["get", "--server", "%s:%d" % (host, b.port), idb, "-o", out], bin=FAST_BIN, check=0)
        assert sha256_file(out) == db, host
