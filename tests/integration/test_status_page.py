"""The status page (--http): a directory and two nodes serve it on loopback,
headless Chromium (Debian's `chromium`) renders it during a real, rate-capped
transfer, and what the page shows is checked against `peernet status --json`
taken just before and just after. Also: /api/status is the same document as
`status --json`, a non-loopback --http needs --http-public, the one
state-changing endpoint needs the token, and bad requests do not hurt the node.

The page rendered during the transfer is saved as build/status-page.png for
people to look at (docs/status-page.png is a copy of one)."""
import html.parser
import json
import os
import shutil
import socket
import stat
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from conftest import REPO, make_file, poll, run, sha256_file, assert_one_error_line
from p2p import wait_found

SCREENSHOT = os.path.join(REPO, "build", "status-page.png")
CHROMIUM_TIMEOUT = 90
RATE = 256 * 1024                      # the provider's --up-rate
FILE_SIZE = 4 * 1024 * 1024            # 16 chunks: about 16 s at RATE


@pytest.fixture
def workdir(tmp_path):
    return str(tmp_path)


# ------------------------------------------------------------------ helpers

def http_args(workdir, name):
    return ["--http", "127.0.0.1:0", "--http-port-file", os.path.join(workdir, name + ".http-port")]


def http_port(daemon, workdir, name, host="127.0.0.1"):
    path = os.path.join(workdir, name + ".http-port")

    def ready():
        try:
            with open(path) as f:
                text = f.read()
        except FileNotFoundError:
            return None
        return int(text) if text.endswith("\n") else None
    port = poll(ready, 20, what="%s's status page port" % name)
    line = "status-page http://%s:%d/" % (host, port)
    poll(lambda: line in daemon.stdout(), 10, what="the %r line on stdout" % line)
    return port


def http(port, path, method="GET", headers=None, timeout=10):
    """(status, body bytes) of one request to the page on 127.0.0.1:port."""
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), method=method, headers=headers or {},
                                 data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def api_status(port):
    code, body = http(port, "/api/status")
    assert code == 200, (code, body)
    return json.loads(body)


def shape(v):
    """The keys and types of a JSON value, recursively (arrays by their first element)."""
    if isinstance(v, dict):
        return {k: shape(x) for k, x in v.items()}
    if isinstance(v, list):
        return [shape(v[0])] if v else []
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    return type(v).__name__


def chromium():
    exe = shutil.which("chromium")
    assert exe, "Debian's chromium is needed (make test installs it: DEPS_TEST)"
    return exe


def chromium_run(workdir, url, *extra, budget_ms=3500):
    """Loads url in headless Chromium, lets the page's timers run for budget_ms
    of virtual time (its fetches complete within it), and returns stdout."""
    profile = os.path.join(workdir, "chromium-profile")
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-extensions", "--disable-background-networking", "--disable-sync",
           "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
           "--user-data-dir=" + profile, "--virtual-time-budget=%d" % budget_ms] + list(extra) + [url]
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=CHROMIUM_TIMEOUT)
    assert p.returncode == 0, "chromium -> %d: %s" % (p.returncode, p.stderr[-2000:])
    return p.stdout.decode("utf-8", errors="replace")


class Page(html.parser.HTMLParser):
    """The rendered DOM: every element with an id (its attributes and text),
    and every table row with a data-id (the table's id, attributes, the text
    of each cell)."""
    VOID = {"meta", "link", "br", "img", "input", "hr", "source", "wbr"}

    def __init__(self, text):
        super().__init__()
        self.ids, self.rows, self.stack = {}, [], []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        if tag in self.VOID:
            return
        self.stack.append((tag, dict(attrs), [], []))

    def handle_data(self, data):
        for _tag, _attrs, text, _cells in self.stack:
            text.append(data)

    def handle_endtag(self, tag):
        while self.stack:
            t, attrs, text, cells = self.stack.pop()
            joined = "".join(text).strip()
            if "id" in attrs:
                self.ids[attrs["id"]] = (attrs, joined)
            if t == "td":
                row = next((e for e in reversed(self.stack) if e[0] == "tr"), None)
                if row:
                    row[3].append(joined)
            if t == "tr" and "data-id" in attrs:
                table = next((e[1].get("id") for e in reversed(self.stack) if e[0] == "table"), None)
                self.rows.append((table, attrs, cells))
            if t == tag:
                break

    def text(self, id_):
        assert id_ in self.ids, "no #%s on the page" % id_
        return self.ids[id_][1]

    def value(self, id_):
        assert id_ in self.ids, "no #%s on the page" % id_
        return int(self.ids[id_][0]["data-value"])

    def table(self, id_):
        """[(attributes, [cell text...])] of the rows of table #id_."""
        return [(a, c) for tab, a, c in self.rows if tab == id_]


def between(v, a, b, what):
    lo, hi = min(a, b), max(a, b)
    assert lo <= v <= hi, "%s: the page shows %s, status --json %s before and %s after" % (what, v, a, b)


def transfer_of(status, cid):
    return next((t for t in status["transfers"] if t["id"] == cid), None)


# ------------------------------------------------------------------ the page during a transfer

def test_page_matches_status_during_a_transfer(net, workdir):
    d = net.directory(args=http_args(workdir, "dir"))
    provider = net.node("provider", d, args=["--up-rate", "256K"] + http_args(workdir, "provider"))
    getter = net.node("getter", d, args=http_args(workdir, "getter"))
    dir_port = http_port(d, workdir, "dir")
    prov_port = http_port(provider, workdir, "provider")
    get_port = http_port(getter, workdir, "getter")

    src = os.path.join(workdir, "holiday video.bin")
    digest = make_file(src, FILE_SIZE, seed=12)
    cid = provider.add_id(src)
    own = os.path.join(workdir, "notes.txt")
    make_file(own, 5000, seed=3)
    getter.add(own)
    getter.wait_registered()
    wait_found(getter, ["holiday"], cid)

    out = os.path.join(workdir, "got.bin")
    get = subprocess.Popen(getter.get_cmd(cid, out), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    try:
        # Well into the transfer, so the chart has some history and the rates settled.
        poll(lambda: (lambda t: t and 4 <= t["chunks_have"] < t["chunks"] - 4)(transfer_of(getter.status(), cid)),
             60, interval=0.2, what="the download to be under way")

        before = getter.status()
        page = Page(chromium_run(workdir, "http://127.0.0.1:%d/" % get_port, "--dump-dom"))
        after = getter.status()
        assert transfer_of(after, cid), "the transfer ended during the check: make the file larger"

        # What does not move.
        assert page.text("node-id") == before["node_id"] == after["node_id"]
        assert page.text("kind") == "node"
        assert page.text("listen") == before["listen"]
        assert page.text("discovery").startswith("directory")
        between(page.value("peer-count"), len(before["peers"]), len(after["peers"]), "peers")
        between(page.value("share-count"), before["shares_total"], after["shares_total"], "shares")
        share_names = {o["name"] for o in before["shares"] + after["shares"]}
        assert {c[0] for _a, c in page.table("shares")} == share_names
        assert any(a["data-id"] == o["id"] for a, _t in page.table("shares") for o in after["shares"])
        page_peers = {a["data-id"] for a, _t in page.table("peers")}
        assert page_peers <= {p["id"] for p in before["peers"]} | {p["id"] for p in after["peers"]}
        assert provider.node_id in page_peers

        # What moves: within what status --json saw before and after.
        rows = page.table("transfers")
        assert len(rows) == 1, rows
        attrs, cells = rows[0]
        tb, ta = transfer_of(before, cid), transfer_of(after, cid)
        assert attrs["data-id"] == cid and int(attrs["data-chunks"]) == tb["chunks"] == ta["chunks"]
        have = int(attrs["data-have"])
        between(have, tb["chunks_have"], ta["chunks_have"], "chunks")
        assert cells[0] == "holiday video.bin", cells
        assert cells[1].endswith("%") and abs(float(cells[1][:-1]) - 100.0 * have / tb["chunks"]) < 0.051, cells
        assert cells[2] == "%d / %d" % (have, tb["chunks"]), cells
        between(page.value("total-down"), before["totals"]["bytes_downloaded"],
                after["totals"]["bytes_downloaded"], "bytes downloaded")
        between(page.value("total-up"), before["totals"]["bytes_uploaded"], after["totals"]["bytes_uploaded"],
                "bytes uploaded")
        # The page polled /api/status more than once without a reload.
        assert page.value("polls") >= 2, page.text("polls")
        assert page.text("live") == "live"

        # Rates: the provider's upload is capped at RATE.
        ps = api_status(prov_port)
        assert 0 < ps["rates"]["upload"] <= 2 * RATE, ps["rates"]
        assert any(0 < p["rate_to"] <= 2 * RATE for p in ps["peers"]), ps["peers"]
        gs = api_status(get_port)
        assert gs["rates"]["download"] > 0, gs["rates"]
        code, body = http(get_port, "/api/history")
        hist = json.loads(body)
        assert code == 200 and hist["interval_ms"] == 1000 and len(hist["upload"]) == len(hist["download"]) >= 2
        assert max(hist["download"]) > 0

        # /api/status is the document `status --json` prints.
        assert shape(gs) == shape(getter.status())
        assert gs["node_id"] == getter.node_id and gs["listen"] == before["listen"]

        # The picture for the README, with the chart a few seconds long.
        os.makedirs(os.path.dirname(SCREENSHOT), exist_ok=True)
        if os.path.exists(SCREENSHOT):
            os.unlink(SCREENSHOT)
        chromium_run(workdir, "http://127.0.0.1:%d/" % get_port, "--window-size=1280,960",
                     "--screenshot=" + SCREENSHOT)
        with open(SCREENSHOT, "rb") as f:
            png = f.read()
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 20000, len(png)

        # The directory's page.
        dpage = Page(chromium_run(workdir, "http://127.0.0.1:%d/" % dir_port, "--dump-dom", budget_ms=1500))
        ds = api_status(dir_port)
        assert ds["kind"] == "directory" and ds["node_id"] == d.node_id and ds["nodes"] == 2
        assert dpage.text("kind") == "directory" and dpage.text("node-id") == d.node_id
        assert dpage.value("nodes") == 2
        between(dpage.value("offers"), 1, ds["offers"], "offers")

        rc = get.wait(timeout=120)
        assert rc == 0, get.stderr.read()
    finally:
        if get.poll() is None:
            get.kill()
            get.wait()
        get.stdout.close()
        get.stderr.close()
    assert sha256_file(out) == digest
    done = getter.status()
    assert not done["transfers"]
    assert done["totals"]["bytes_downloaded"] >= FILE_SIZE


def test_server_page(workdir):
    from conftest import Server
    srv = Server(workdir, args=http_args(workdir, "srv"))
    srv.start()
    try:
        port = http_port(srv, workdir, "srv")
        src = os.path.join(workdir, "a.bin")
        make_file(src, 300000, seed=5)
        run(["put", "--server", "127.0.0.1:%d" % srv.port, src], check=0)
        st = api_status(port)
        assert st["kind"] == "server" and st["objects"] == 1 and st["bytes"] == 300000
        page = Page(chromium_run(workdir, "http://127.0.0.1:%d/" % port, "--dump-dom", budget_ms=1500))
        assert page.text("kind") == "server"
        assert page.value("objects") == 1 and page.value("bytes-stored") == 300000
        assert page.value("connections-total") >= 1
    finally:
        assert srv.stop() == 0


# ------------------------------------------------------------------ refusals and abuse

@pytest.mark.parametrize("cmd", ["node", "serve", "directory"])
def test_non_loopback_needs_http_public(workdir, cmd):
    base = {"node": ["node", "--listen", "127.0.0.1:0", "--data", os.path.join(workdir, "n"),
                     "--directory", "127.0.0.1:9"],
            "serve": ["serve", "--listen", "127.0.0.1:0", "--data", os.path.join(workdir, "s")],
            "directory": ["directory", "--listen", "127.0.0.1:0"]}[cmd]
    p = run(base + ["--http", "0.0.0.0:0"], check=1, timeout=30)
    line = assert_one_error_line(p, cmd)
    assert "not a loopback address" in line and "--http-public" in line, line
    p = run(base + ["--http", "not-an-address"], check=1, timeout=30)
    assert "expected IP:PORT" in assert_one_error_line(p, cmd)
    assert "--http ADDR:PORT" in run([cmd, "--help"], check=0).stdout.decode()


def test_public_address_with_http_public(net, workdir):
    d = net.directory(args=["--http", "0.0.0.0:0", "--http-public", "--http-port-file",
                            os.path.join(workdir, "d.http-port")])
    port = http_port(d, workdir, "d", host="0.0.0.0")
    st = api_status(port)
    assert st["kind"] == "directory" and st["node_id"] == d.node_id


def test_stop_needs_the_token(net, workdir):
    d = net.directory()
    n = net.node("n", d, args=http_args(workdir, "n"))
    port = http_port(n, workdir, "n")
    token_path = os.path.join(n.data_dir, "http-token")
    assert stat.S_IMODE(os.stat(token_path).st_mode) == 0o600
    with open(token_path) as f:
        token = f.read().strip()
    assert len(token) == 64
    wrong = "0" * 64 if token != "0" * 64 else "1" * 64
    for headers in ({}, {"Authorization": "Bearer " + wrong}, {"Authorization": "Bearer " + token[:-1]},
                    {"Authorization": "Basic " + token}, {"Authorization": "Bearer " + token + "0"},
                    {"Authorization": "Bearer"}):
        code, body = http(port, "/api/stop", method="POST", headers=headers)
        assert code == 403, (headers, code, body)
        assert "token" in json.loads(body)["error"]
    assert http(port, "/api/stop")[0] == 405
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen("http://127.0.0.1:%d/api/stop" % port, timeout=10)
    assert e.value.code == 405 and e.value.headers["Allow"] == "POST"
    assert http(port, "/api/status", method="POST")[0] == 405
    assert http(port, "/nope")[0] == 404
    assert n.alive() and api_status(port)["node_id"] == n.node_id
    code, body = http(port, "/api/stop", method="POST", headers={"Authorization": "Bearer " + token})
    assert code == 202 and json.loads(body) == {"stopping": True}
    assert n.proc.wait(timeout=20) == 0, n.log_tail()
    n.stop()
    assert "status page: stop requested" in n.log()


def raw(port, data, timeout=5):
    """Sends data on a new connection and returns what comes back before the close (or the timeout)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    got = b""
    try:
        s.sendall(data)
        while True:
            b = s.recv(65536)
            if not b:
                break
            got += b
    except (socket.timeout, ConnectionResetError, BrokenPipeError):
        pass
    finally:
        s.close()
    return got


def test_bad_requests_do_not_hurt_the_node(net, workdir):
    d = net.directory()
    n = net.node("n", d, args=http_args(workdir, "n"))
    port = http_port(n, workdir, "n")
    # A request line and headers far over the limit: refused, connection closed.
    got = raw(port, b"GET /" + b"a" * 200000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert got == b"" or got.split(b" ")[1] in (b"414", b"431", b"400"), got[:200]
    got = raw(port, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"b" * 100000 + b"\r\n\r\n")
    assert got == b"" or got.split(b" ")[1] in (b"431", b"400", b"413"), got[:200]
    # Garbage and malformed requests.
    for junk in (b"\x00\xff\x16\x03\x01garbage\r\n\r\n", b"GET\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n",
                 b"POST /api/stop HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 99999999999\r\n\r\nx",
                 b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"):
        raw(port, junk, timeout=3)
    # DNS rebinding: a page on some other name may not read the status.
    got = raw(port, b"GET /api/status HTTP/1.1\r\nHost: evil.example:80\r\nConnection: close\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 403"), got[:200]
    # Connections held open beyond the limit, some half a request.
    held = []
    try:
        for i in range(60):
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=2)
            except OSError:
                break
            if i % 2:
                s.sendall(b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            held.append(s)
        time.sleep(0.5)
        assert n.alive()
    finally:
        for s in held:
            s.close()
    # Still serving (once the closed connections are counted out), and the
    # control socket still answers.
    def answers():
        try:
            code, body = http(port, "/api/status", timeout=3)
        except OSError:
            return None
        return code == 200 and json.loads(body)
    st = poll(answers, 15, interval=0.2, what="the page to answer again")
    assert st["node_id"] == n.status()["node_id"]
    assert n.alive()
