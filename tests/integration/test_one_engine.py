"""One transfer engine for both models, seen from outside: a node uses a
`peernet serve` server as one more provider (--seed-server), and
`peernet get --server` downloads from a node as it does from a server."""
import json
import os

from conftest import BIN, FAST_BIN, make_file, run, sha256_file
from p2p import MiB
from test_p2p import finish_get, start_get


def put(server, path):
    p = run(["put", "--server", server.addr, "--json", "--no-progress", path], check=0)
    return json.loads(p.stdout)[0]["id"]


def test_node_downloads_from_a_seed_server_and_a_node_at_once(net, server_factory, workdir):
    """The server holds the file, one node shares it too, both capped at the
    same rate (uncapped on loopback, the server alone would send it all before
    the node's first chunk); a third node given --seed-server fetches from
    both, and its status names the server."""
    server = server_factory(args=["--up-rate", "4M"])
    size = 24 * MiB
    src = os.path.join(workdir, "both.bin")
    digest = make_file(src, size, seed=81)
    cid = put(server, src)
    d = net.directory()
    holder = net.node("holder", d, bin=FAST_BIN, args=["--share", src, "--up-rate", "4M"])
    getter = net.node("getter", d, bin=BIN, args=["--seed-server", server.addr])
    for n in (holder, getter):
        n.wait_registered()
    out = os.path.join(workdir, "got.bin")
    res = finish_get(start_get(getter, cid, out), timeout=120)
    assert res["size"] == size
    assert sha256_file(out) == digest
    peers = getter.status()["peers"]
    srv = [p for p in peers if p["seed_server"]]
    nodes = [p for p in peers if not p["seed_server"]]
    assert len(srv) == 1 and srv[0]["id"] == server.node_id, peers
    assert srv[0]["bytes_from"] > 0, peers
    assert any(p["bytes_from"] > 0 for p in nodes), "the capped node served part of it too: %s" % peers
    assert srv[0]["bytes_from"] + sum(p["bytes_from"] for p in nodes) == size, peers


def test_seed_server_alone_is_enough(net, server, workdir):
    """No node offers the content: the server is the only provider."""
    src = os.path.join(workdir, "only.bin")
    digest = make_file(src, 3 * MiB + 5, seed=82)
    cid = put(server, src)
    d = net.directory()
    getter = net.node("getter", d, bin=BIN, args=["--seed-server", server.addr])
    getter.wait_registered()
    out = os.path.join(workdir, "only-got.bin")
    res = finish_get(start_get(getter, cid, out), timeout=60)
    assert res["size"] == 3 * MiB + 5
    assert sha256_file(out) == digest
    # And once it has it, the node shares it like anything else it holds.
    assert cid in [x["id"] for x in getter.status()["shares"]]


def test_get_server_against_a_node(net, workdir):
    """`peernet get --server` talks to a node as to a server: same bytes out,
    and a clear error for content the node does not have."""
    src = os.path.join(workdir, "from-node.bin")
    digest = make_file(src, 5 * MiB + 77, seed=83)
    d = net.directory()
    holder = net.node("holder", d, bin=BIN, args=["--share", src])
    holder.wait_registered()
    cid = holder.status()["shares"][0]["id"]
    out = os.path.join(workdir, "client-got.bin")
    p = run(["get", "--server", holder.addr, cid, "-o", out, "--json", "--no-progress"], check=0)
    res = json.loads(p.stdout)
    assert res["ok"] is True and res["size"] == 5 * MiB + 77, res
    assert sha256_file(out) == digest
    missing = "pn1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaambz"
    p = run(["get", "--server", holder.addr, missing, "-o", os.path.join(workdir, "none.bin"), "--no-progress"])
    assert p.returncode != 0
    err = p.stderr.decode()
    assert "has no content" in err and err.count("\n") == 1, err
