"""JSON output and the control socket's JSON protocol with awkward names.

Every --json output must be valid JSON (UTF-8, as Python's json module reads
bytes) whatever the file names and paths hold. The rule (src/util/json.h): a
text field is the text itself when it is valid UTF-8; otherwise each bad byte
is U+FFFD and `FIELD_hex` holds the exact bytes. Names that travel on the
network follow the name rule (valid UTF-8, no control characters, no
backslash), so a file named otherwise is refused with one error line while the
output stays valid JSON.
"""
import json
import os
import socket
import subprocess

import pytest

from conftest import BIN, CLI_TIMEOUT, assert_one_error_line, make_file, sha256_file
from p2p import wait_found

# Names the network carries: quotes, apostrophes, non-ASCII, emoji.
GOOD_NAMES = ['say "hi".txt', "it's.txt", "na\u00efve \u2603.txt", "\U0001F600 {json} [x].txt"]
# Names it refuses (as bytes, for the file system).
BAD_NAMES = [b"back\\slash.txt", b"new\nline.txt", b"tab\tx.txt", b"ctl\x01.txt", b"bad\xff.txt",
             b"\xc0\xafoverlong.txt"]
# A directory component with all of it: the path is sent exactly (path_hex) and the name stays valid.
ODD_DIR = b'dir "q" \\ \n\t\x01 \xfe\xff'


def run(args, check=None, cwd=None):
    """conftest.run, but bytes arguments (paths that are not UTF-8) go through as they are."""
    cmd = [BIN] + [a if isinstance(a, bytes) else str(a) for a in args]
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=CLI_TIMEOUT, cwd=cwd)
    if check is not None:
        assert p.returncode == check, (cmd, p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    return p


def jloads(raw):
    """Parses output bytes as JSON; strict UTF-8, like any JSON reader."""
    return json.loads(raw.decode("utf-8"))


def exact_text(obj, key):
    """The exact bytes of a text field by the rule: FIELD_hex if present, else FIELD."""
    if key + "_hex" in obj:
        raw = bytes.fromhex(obj[key + "_hex"])
        shown = raw.decode("utf-8", errors="replace")
        assert obj[key] == shown, (obj, shown)
        return raw
    return obj[key].encode("utf-8")


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


# ------------------------------------------------------------------ client-server: put, ls, get

def test_put_ls_get_json_with_awkward_names(server, workdir):
    src = os.fsencode(os.path.join(workdir, "src"))
    os.makedirs(src)
    paths = []
    for i, name in enumerate(GOOD_NAMES):
        p = os.path.join(src, name.encode("utf-8"))
        write(p, b"content %d\n" % i)
        paths.append(p)
    p = run(["put", "--server", server.addr, "--json"] + paths, check=0)
    put = jloads(p.stdout)
    assert [e["name"] for e in put] == GOOD_NAMES, put
    assert all("name_hex" not in e for e in put)
    assert all(set(e) == {"id", "name", "size", "bytes_sent"} for e in put), put
    ids = {e["name"]: e["id"] for e in put}

    listed = jloads(run(["ls", "--server", server.addr, "--json"], check=0).stdout)
    assert sorted(e["name"] for e in listed) == sorted(GOOD_NAMES), listed
    assert all(ids[e["name"]] == e["id"] and set(e) == {"id", "name", "size"} for e in listed), listed

    # Refused names: exit 1, one line naming the file (escaped), and what was stored before still parses.
    for bad in BAD_NAMES:
        bp = os.path.join(src, bad)
        write(bp, b"refused")
        p = run(["put", "--server", server.addr, "--json", paths[0], bp])
        assert p.returncode == 1, (bad, p.stdout, p.stderr)
        out = jloads(p.stdout)
        assert [e["name"] for e in out] == [GOOD_NAMES[0]], (bad, out)
        line = assert_one_error_line(p, "put")
        assert "not valid on the network" in line, line
    assert len(jloads(run(["ls", "--server", server.addr, "--json"], check=0).stdout)) == len(GOOD_NAMES)

    # get -o into a path that is not UTF-8: "path" is readable, "path_hex" opens the file.
    out_dir = os.path.join(os.fsencode(workdir), ODD_DIR)
    os.makedirs(out_dir)
    target = os.path.join(out_dir, b'out "\xff\n.bin')
    cid = ids[GOOD_NAMES[1]]
    p = run(["get", "--server", server.addr, "--json", cid, "-o", target], check=0)
    got = jloads(p.stdout)
    assert got["ok"] is True and got["id"] == cid and got["name"] == GOOD_NAMES[1], got
    assert exact_text(got, "path") == target, got
    assert "\ufffd" in got["path"] and "\n" in got["path"], got
    assert isinstance(got["seconds"], (int, float)) and isinstance(got["mib_per_s"], (int, float)), got
    with open(target, "rb") as f:
        assert f.read() == b"content 1\n"

    # A failed get: its message, which names the path, is still valid JSON.
    p = run(["get", "--server", server.addr, "--json", cid, "-o", target])
    assert p.returncode == 1
    fail = jloads(p.stdout)
    assert fail["ok"] is False and fail["id"] == cid and "already exists" in fail["error"], fail
    assert exact_text(fail, "error").startswith(target), fail
    assert p.stderr.startswith(b"peernet get: "), p.stderr


# ------------------------------------------------------------------ node: add, status, search, get

def test_node_json_with_awkward_names(net, workdir):
    d = net.directory()
    n = net.node("n", d, bin=BIN)
    n.wait_registered()
    src = os.path.join(os.fsencode(workdir), ODD_DIR)
    os.makedirs(src)
    paths = []
    for i, name in enumerate(GOOD_NAMES):
        p = os.path.join(src, name.encode("utf-8"))
        make_file(p, 1000 + i, seed=i)
        paths.append(p)
    # The paths are not UTF-8: they reach the node exactly (path_hex in the request).
    p = run(["add", "--data", n.data_dir, "--json", *paths], check=0)
    added = jloads(p.stdout)
    assert [e["name"] for e in added] == GOOD_NAMES, added
    assert all(set(e) == {"id", "name", "size"} for e in added), added
    assert [e["size"] for e in added] == [1000 + i for i in range(len(GOOD_NAMES))]
    ids = [e["id"] for e in added]

    for bad in BAD_NAMES:
        bp = os.path.join(src, bad)
        write(bp, b"refused")
        p = run(["add", "--data", n.data_dir, "--json", bp])
        assert p.returncode == 1, (bad, p.stdout, p.stderr)
        assert jloads(p.stdout) == []
        line = assert_one_error_line(p, "add")
        assert "cannot share" in line and "not valid on the network" in line, line
        assert "\n" not in line and "\x01" not in line

    st = jloads(run(["status", "--data", n.data_dir, "--json"], check=0).stdout)
    assert [s["name"] for s in st["shares"]] == GOOD_NAMES, st["shares"]
    assert st["shares_total"] == len(GOOD_NAMES)
    assert [s["id"] for s in st["shares"]] == ids
    text = run(["status", "--data", n.data_dir], check=0).stdout.decode("utf-8")
    for name in GOOD_NAMES:
        assert name in text, text

    wait_found(n, ["hi"], ids[0])
    for words, want in ((["hi"], 0), (["na\u00efve"], 2), (["json"], 3)):
        found = jloads(run(["search", "--data", n.data_dir, "--json", *words], check=0).stdout)
        assert [(e["id"], e["name"]) for e in found] == [(ids[want], GOOD_NAMES[want])], (words, found)
        assert set(found[0]) == {"id", "name", "size", "providers"}, found

    # get through the node into a directory that is not UTF-8, without -o: the
    # node joins the client's cwd (sent as cwd_hex) and the name.
    cwd = os.path.join(os.fsencode(workdir), b"get \xfe\"\\ here")
    os.makedirs(cwd)
    p = run(["get", "--data", n.data_dir, "--json", ids[3]], cwd=cwd, check=0)
    got = jloads(p.stdout)
    want = os.path.join(cwd, GOOD_NAMES[3].encode("utf-8"))
    assert got["ok"] is True and got["name"] == GOOD_NAMES[3] and exact_text(got, "path") == want, got
    assert sha256_file(want) == sha256_file(paths[3])
    copy = os.path.join(cwd, b'copy\n"\xff')
    run(["get", "--data", n.data_dir, ids[0], "-o", copy], check=0)
    assert sha256_file(copy) == sha256_file(paths[0])
    # -o - : the client reads the file the node wrote, by its exact path.
    p = run(["get", "--data", n.data_dir, ids[2], "-o", "-"], cwd=cwd, check=0)
    with open(paths[2], "rb") as f:
        assert p.stdout == f.read()
    assert n.alive()


# ------------------------------------------------------------------ the control socket's protocol

CTL_REQUEST_MAX = 64 * 1024   # node_ctl.h, the newline included


def ctl_exchange(sock_path, data, timeout=10):
    """Sends data on a new control connection; returns every byte until the node closes."""
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.settimeout(timeout)
    c.connect(sock_path)
    try:
        c.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass    # the node answered and closed before reading it all
    got = b""
    try:
        while True:
            b = c.recv(65536)
            if not b:
                break
            got += b
    except ConnectionResetError:
        pass    # closed with our bytes unread: what it sent before still counts
    c.close()
    return got


MALFORMED = [
    (b"status\n", "malformed request"),
    (b"not json at all\n", "malformed request"),
    (b"\n", "malformed request"),
    (b"[\"cmd\", \"status\"]\n", "\"cmd\" string"),
    (b"{}\n", "\"cmd\" string"),
    (b"{\"cmd\": 7}\n", "\"cmd\" string"),
    (b"{\"cmd\": \"status\", \"cmd\": \"stop\"}\n", "duplicate"),
    (b"{\"cmd\": \"reboot\"}\n", "unknown control command"),
    (b"{\"cmd\": \"st\xffatus\"}\n", "malformed request"),
    (b"{\"cmd\": \"status\"} {\"cmd\": \"stop\"}\n", "malformed request"),
    (b"{\"cmd\": \"add\"}\n", "\"paths\""),
    (b"{\"cmd\": \"add\", \"paths\": \"/etc/passwd\"}\n", "\"paths\""),
    (b"{\"cmd\": \"add\", \"paths\": [3]}\n", "path 1"),
    (b"{\"cmd\": \"add\", \"paths\": [{\"path\": \"x\", \"path_hex\": \"zz\"}]}\n", "path 1"),
    (b"{\"cmd\": \"add\", \"paths\": [{\"path\": \"x\", \"path_hex\": \"2f00\"}]}\n", "path 1"),
    (b"{\"cmd\": \"search\"}\n", "\"query\""),
    (b"{\"cmd\": \"search\", \"query\": [\"a\"]}\n", "\"query\""),
    (b"{\"cmd\": \"search\", \"query\": \"a\\u0000b\"}\n", "malformed request"),
    (b"{\"cmd\": \"search\", \"query\": \"" + b"w" * 5000 + b"\"}\n", "1 to 255 bytes"),
    (b"{\"cmd\": \"get\", \"id\": 5, \"cwd\": \"/\"}\n", "content ID"),
    (b"{\"cmd\": \"get\", \"id\": \"pn1xyz\", \"cwd\": \"/\"}\n", "content ID"),
    (b"{\"cmd\": \"get\", \"id\": \"ID\", \"cwd\": \"/\", \"force\": \"yes\"}\n", "\"force\""),
    (b"{\"cmd\": \"get\", \"id\": \"ID\", \"cwd\": \"relative\"}\n", "absolute path"),
    (b"{\"cmd\": \"get\", \"id\": \"ID\"}\n", "absolute path"),
    (b"{\"cmd\": \"get\", \"id\": \"ID\", \"cwd\": \"/\", \"out\": 1}\n", "\"out\""),
    (b"[" * 5000 + b"\n", "malformed request"),
    (b"x" * (CTL_REQUEST_MAX + 100), "request too long"),
    (b"{\"cmd\": \"search\", \"query\": \"" + b"q" * CTL_REQUEST_MAX + b"\"}\n", "request too long"),
]


def test_control_socket_malformed_requests(net, workdir):
    """Each malformed request gets exactly one line, a JSON error object that
    says what is wrong, then the connection closes; the node keeps running."""
    src = os.path.join(workdir, "kept.bin")
    make_file(src, 5000, seed=3)
    d = net.directory()
    n = net.node("ctl", d, bin=BIN, args=["--share", src])
    n.wait_registered()
    cid = n.status()["shares"][0]["id"]
    sock = os.path.join(n.data_dir, "control.sock")
    for request, needle in MALFORMED:
        request = request.replace(b"\"ID\"", json.dumps(cid).encode())
        got = ctl_exchange(sock, request)
        lines = got.split(b"\n")
        assert len(lines) == 2 and lines[1] == b"", (request[:80], got)
        reply = jloads(lines[0])
        assert reply["reply"] == "err" and set(reply) <= {"reply", "error", "error_hex"}, (request[:80], reply)
        assert needle in reply["error"], (request[:80], reply)
        assert n.alive(), request[:80]
    # Well-formed requests are still answered, in the same format.
    got = ctl_exchange(sock, b"{\"cmd\":\"status\"}\n").split(b"\n")
    assert got[-1] == b"" and jloads(got[-2]) == {"reply": "ok"}, got[-3:]
    st = jloads(got[0])
    assert st["reply"] == "status" and st["status"]["shares"][0]["id"] == cid, st
    got = ctl_exchange(sock, json.dumps({"cmd": "search", "query": "kept"}).encode() + b"\n").split(b"\n")
    replies = [jloads(l) for l in got if l]
    assert replies[-1] == {"reply": "ok"}, replies
    assert [r["id"] for r in replies if r["reply"] == "result"] == [cid], replies
    assert n.status()["node_id"] == n.node_id
