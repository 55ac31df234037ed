"""`peernet get ID -o -` through a node streams: bytes reach standard output,
in order, while the download is still running (the swarm asks for the next
chunks a reader needs first), and what comes out is the file."""
import hashlib
import os
import select
import subprocess
import time


from conftest import make_file, poll
from p2p import MiB


def read_exactly(stream, n, timeout):
    """Reads n bytes from a pipe within timeout seconds (bounded in count too)."""
    out = bytearray()
    deadline = time.monotonic() + timeout
    for _ in range(100000):
        if len(out) >= n or time.monotonic() >= deadline:
            break
        r, _, _ = select.select([stream], [], [], 0.2)
        if r:
            chunk = os.read(stream.fileno(), n - len(out))
            if not chunk:
                break
            out += chunk
    return bytes(out)


def test_get_to_stdout_streams_while_the_download_runs(net, workdir):
    d = net.directory()
    # The provider's upload is capped so the download lasts several seconds.
    a = net.node("a", d, args=["--up-rate", "256K"])
    b = net.node("b", d)
    a.wait_registered()
    b.wait_registered()
    src = os.path.join(workdir, "movie.bin")
    size = 4 * MiB
    digest = make_file(src, size, seed=9)
    cid = a.add_id(src)
    p = subprocess.Popen([b.client_bin, "get", "--data", b.data_dir, cid, "-o", "-"], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        first = read_exactly(p.stdout, 256 * 1024, timeout=60)
        assert len(first) == 256 * 1024, "only %d bytes reached stdout" % len(first)
        # The first chunk is out, and the download is not over yet.
        transfers = [t for t in b.status()["transfers"] if t["id"] == cid]
        assert transfers and transfers[0]["chunks_have"] < transfers[0]["chunks"], transfers
        assert p.poll() is None
        rest = read_exactly(p.stdout, size - len(first), timeout=120)
        assert p.wait(timeout=30) == 0, p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)
    h = hashlib.sha256(first + rest).hexdigest()
    assert len(first) + len(rest) == size
    assert h == digest
