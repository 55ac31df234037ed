#!/usr/bin/env python3
"""A `peernet serve`'s RSS before, during and after a flood of stalled TLS
handshakes (docs/PROTOCOL.md, Limits).

    python3 bench/halfopen_rss.py --bin build/peernet --conns 4000 --sources 1
    python3 bench/halfopen_rss.py --bin build/peernet --conns 4000 --sources 200

Opens CONNS TCP connections to a fresh `serve` on 127.0.0.1 from SOURCES
loopback addresses (127.0.8.1, 127.0.8.2, ...), each sending the first half of
a TLS 1.3 ClientHello and then nothing; checks that `ls` from 127.0.0.1 still
works; closes them all; reads VmRSS from /proc/PID/status before, during and
3 s and 10 s after. Prints one line per figure. Loopback only; every loop is
bounded; the server is stopped by its PID.
"""
import argparse
import os
import resource
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def half_client_hello():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["peernet/1"])
    inb, outb = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inb, outb, server_side=False)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = outb.read()
    return hello[: len(hello) // 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default="build/peernet")
    ap.add_argument("--conns", type=int, default=4000)
    ap.add_argument("--sources", type=int, default=1)
    ap.add_argument("--handshake-timeout", type=int, default=30,
                    help="the server's, in seconds; above the time the flood is held (default 30)")
    args = ap.parse_args()
    if not 1 <= args.sources <= 250:
        sys.exit("--sources: 1 .. 250")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.conns + 64
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            sys.exit("needs %d descriptors, the hard limit is %d" % (want, hard))
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    d = tempfile.mkdtemp(prefix="halfopen-rss-")
    port_file = os.path.join(d, "port")
    err = open(os.path.join(d, "stderr"), "wb")
    srv = subprocess.Popen([args.bin, "serve", "--listen", "127.0.0.1:0", "--data", os.path.join(d, "data"),
                            "--port-file", port_file, "--handshake-timeout", str(args.handshake_timeout)],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    socks = []
    try:
        port = None
        for _ in range(200):
            if os.path.exists(port_file):
                text = open(port_file).read()
                if text.endswith("\n"):
                    port = int(text)
                    break
            time.sleep(0.05)
        if port is None:
            sys.exit("the server did not start")
        time.sleep(0.5)
        before = rss_kib(srv.pid)
        hello = half_client_hello()
        for i in range(args.conns):
            s = socket.socket()
            s.setblocking(False)
            s.bind(("127.0.8.%d" % (1 + i % args.sources), 0))
            try:
                s.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            socks.append(s)
        pending = list(socks)
        for _ in range(500):
            left = []
            for s in pending:
                try:
                    s.send(hello)
                except BlockingIOError:
                    left.append(s)
                except OSError:
                    pass
            pending = left
            if not pending:
                break
            time.sleep(0.02)
        time.sleep(2)
        during = rss_kib(srv.pid)
        ls = subprocess.run([args.bin, "ls", "--server", "127.0.0.1:%d" % port], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=30)
        for s in socks:
            s.close()
        socks = []
        time.sleep(3)
        after3 = rss_kib(srv.pid)
        time.sleep(7)
        after10 = rss_kib(srv.pid)
        print("flood: %d stalled handshakes from %d source(s) to serve %s" % (args.conns, args.sources, args.bin))
        print("VmRSS before: %d KiB" % before)
        print("VmRSS during: %d KiB" % during)
        print("ls from 127.0.0.1 during the flood: %s" % (
            "ok" if ls.returncode == 0 else "failed: " + ls.stderr.decode(errors="replace").strip()))
        print("VmRSS 3 s after they closed: %d KiB" % after3)
        print("VmRSS 10 s after they closed: %d KiB" % after10)
    finally:
        for s in socks:
            s.close()
        if srv.poll() is None:
            srv.send_signal(signal.SIGTERM)
            try:
                srv.wait(20)
            except subprocess.TimeoutExpired:
                srv.kill()
                srv.wait(10)
        err.close()


if __name__ == "__main__":
    main()
