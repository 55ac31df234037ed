#!/usr/bin/env python3
"""peernet benchmarks: figures, not tests. Regenerates bench/RESULTS.md.

Run by `make bench` as:
    python3 bench/bench.py --bin build/peernet --out bench/RESULTS.md

Measures, in one run:
  a. one client, 256 MiB from page cache over loopback: `peernet get` beside
     nginx serving the same file to curl, over plain HTTP (sendfile) and over
     HTTPS (TLS 1.3 only, the cipher suite peernet negotiates);
  b. what bounds peernet: perf profiles of client and server during a
     transfer, and `openssl speed` for AES-128-GCM and SHA-256 alone;
  c. 64 concurrent clients: aggregate throughput and the server's peak RSS;
  d. the server's RSS with 1,000 idle TLS clients (build/idle-clients);
  e. distribution time of one file to N nodes, client-server against
     peer-to-peer, beside the Kurose-Ross bounds (bench/distribution.py,
     which also draws bench/distribution.svg);
  f. flooding, in the simulator and on real nodes (flood_sim.py, flood_real.py);
  g. the swarm in the simulator: the real peer engine at N = 4 .. 10,000, and the fault simulation (swarm_sim.py);
  h. faults between machines: a directory, a server and six nodes in network
     namespaces, links cut, the network split, processes killed, a disk
     full, hostile peers (netns_faults.py; needs root);
  i. bounds under abuse: a serve under stalled-handshake floods, a directory
     under a registration flood, their memory (abuse.py);
  j. the DHT in the simulator: the real Kademlia core at N = 1,000 .. 100,000
     and under churn, beside flooding, the expanding ring and the directory on
     the same items (dht_sim.py, which also draws bench/lookup-messages.svg);
  idle. wake-ups per second of an idle server, directory and node.

`--only a,idle` runs some sections only (default: all of them). One section
runs only when named: `--only fuzz` runs the fuzzing campaign
(fuzz_campaign.py: every fuzz target for --fuzz-seconds, ASan+UBSan).

Every process started here is stopped by its PID; every wait is bounded. A
slow result is reported, never a failure; a broken run (a transfer that fails
or a tool that does not start) exits non-zero.
"""
import argparse
import collections
import datetime
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import distribution

MIB = 1024 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
XFER_TIMEOUT = 180.0
PERF_FREQ = 999


class BenchError(Exception):
    """A broken run: something did not start or a transfer failed."""


class Stop(Exception):
    pass


def on_signal(signum, frame):
    raise Stop(f"signal {signum}")


# ---------------------------------------------------------------- processes

STARTED = []  # every Popen we started, stopped by PID in cleanup()


def spawn(argv, **kw):
    kw.setdefault("stdin", subprocess.DEVNULL)
    kw.setdefault("start_new_session", True)
    p = subprocess.Popen(argv, **kw)
    STARTED.append(p)
    return p


def stop(p, sig=signal.SIGTERM):
    """Stops one child by PID: sig, then SIGKILL after STOP_TIMEOUT."""
    if p is None or p.returncode is not None:
        return
    try:
        if p.poll() is not None:
            return
        os.kill(p.pid, sig)
        p.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        print(f"bench: pid {p.pid} ({p.args[0]}) ignored signal {sig}; killing it", file=sys.stderr)
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=STOP_TIMEOUT)
    except (ProcessLookupError, ChildProcessError):
        pass


def cleanup():
    for p in reversed(STARTED):
        stop(p)


def wait_rusage(p, timeout):
    """Waits for p (bounded), returns (exit status, user s, sys s, wall s from now)."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid == p.pid:
            p.returncode = os.waitstatus_to_exitcode(status)
            return p.returncode, ru.ru_utime, ru.ru_stime
        if time.monotonic() > deadline:
            stop(p, signal.SIGKILL)
            raise BenchError(f"{' '.join(map(str, p.args))[:200]} did not finish within {timeout:.0f} s")
        time.sleep(0.002)


def run(argv, timeout=120, check=True, **kw):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise BenchError(f"{' '.join(argv)} exited {r.returncode}: {r.stderr.strip()[-400:]}")
    return r


def proc_cpu(pid):
    """user+system CPU seconds of a running process (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def children_of(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_file(path, proc, what, timeout=START_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{what} exited with status {proc.returncode} at start")
        try:
            text = open(path).read().strip()
            if text:
                return text
        except OSError:
            pass
        time.sleep(0.02)
    raise BenchError(f"{what} did not write {path} within {timeout:.0f} s")


def wait_tcp(port, proc, what, timeout=START_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{what} exited with status {proc.returncode} at start")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"{what} does not accept connections on port {port}")


def raise_nofile(n):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n if hard == resource.RLIM_INFINITY else min(n, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


# ---------------------------------------------------------------- peernet

class Server:
    """`peernet serve` on 127.0.0.1, a free port, data in data_dir."""

    def __init__(self, binary, data_dir, work, tag):
        self.port_file = os.path.join(work, f"port-{tag}")
        self.log_path = os.path.join(work, f"server-{tag}.log")
        if os.path.exists(self.port_file):
            os.unlink(self.port_file)
        self.argv = [binary, "serve", "--listen", "127.0.0.1:0", "--data", data_dir,
                     "--port-file", self.port_file]
        with open(self.log_path, "ab") as log:
            self.proc = spawn(self.argv, stdout=log, stderr=subprocess.STDOUT,
                              preexec_fn=lambda: raise_nofile(8192))
        self.port = int(wait_file(self.port_file, self.proc, "peernet serve"))
        self.addr = f"127.0.0.1:{self.port}"
        self.pid = self.proc.pid

    def stop(self):
        stop(self.proc)


def peernet_get(binary, addr, cid, out, extra=(), timeout=XFER_TIMEOUT, prefix=()):
    """One `peernet get` to out (removed first). Returns a dict of figures."""
    for p in (out, out + ".pnpart", out + ".pnpart.state"):
        if os.path.exists(p):
            os.unlink(p)
    argv = list(prefix) + [binary, "get", "--server", addr, cid, "-o", out, "--json", "--no-progress"] \
        + list(extra)
    t0 = time.monotonic()
    p = spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out_data = {}

    def reader():
        out_data["stdout"] = p.stdout.read()
        out_data["stderr"] = p.stderr.read()
    th = threading.Thread(target=reader, daemon=True)
    th.start()
    status, utime, stime = wait_rusage(p, timeout)
    wall = time.monotonic() - t0
    th.join(timeout=10)
    text = out_data.get("stdout", b"").decode("utf-8", "replace").strip()
    if status != 0:
        raise BenchError(f"peernet get exited {status}: "
                         f"{out_data.get('stderr', b'').decode('utf-8', 'replace').strip()[-300:]}")
    res = json.loads(text.splitlines()[-1])
    return {"wall": wall, "seconds": float(res["seconds"]), "bytes": int(res["bytes_downloaded"]),
            "user": utime, "sys": stime, "json": res}


def curl_get(url, out, timeout=XFER_TIMEOUT, extra=()):
    if out != "/dev/null" and os.path.exists(out):
        os.unlink(out)
    argv = ["curl", "-s", "-S", "--fail"] + list(extra) + ["-o", out, "-w", "%{size_download} %{time_total}", url]
    t0 = time.monotonic()
    p = spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out_data = {}

    def reader():
        out_data["stdout"] = p.stdout.read()
        out_data["stderr"] = p.stderr.read()
    th = threading.Thread(target=reader, daemon=True)
    th.start()
    status, utime, stime = wait_rusage(p, timeout)
    wall = time.monotonic() - t0
    th.join(timeout=10)
    if status != 0:
        raise BenchError(f"curl exited {status}: {out_data.get('stderr', b'').decode().strip()}")
    size, secs = out_data["stdout"].decode().split()
    return {"wall": wall, "seconds": float(secs), "bytes": int(size), "user": utime, "sys": stime}


# ---------------------------------------------------------------- nginx

NGINX_CONF = """\
# Minimal nginx for the peernet benchmark: one worker (peernet is one loop too).
{user}
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    log_format tls '$ssl_protocol $ssl_cipher $body_bytes_sent';
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
    server {{
        listen 127.0.0.1:{tls_port} ssl;
        root {root};
        access_log {d}/tls.log tls;
        ssl_certificate {d}/cert.pem;
        ssl_certificate_key {d}/key.pem;
        ssl_protocols TLSv1.3;
        ssl_prefer_server_ciphers on;
        ssl_conf_command Ciphersuites {suites};
    }}
}}
"""
# peernet's TLS 1.3 suites in its order of preference (PN_TLS_CIPHERSUITES in
# src/crypto/tls.c; its server prefers its own order): nginx is given the same.
TLS_SUITES = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
CERT_CMD = ["openssl", "req", "-x509", "-newkey", "ed25519", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"]


class Nginx:
    def __init__(self, work, root):
        self.dir = os.path.join(work, "nginx")
        os.makedirs(os.path.join(self.dir, "logs"), exist_ok=True)
        self.port = free_port()
        self.tls_port = free_port()
        # A self-signed Ed25519 certificate, like peernet's identities (curl -k does not check it).
        run(CERT_CMD + ["-keyout", os.path.join(self.dir, "key.pem"), "-out", os.path.join(self.dir, "cert.pem")])
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(d=self.dir, port=self.port, tls_port=self.tls_port, root=root,
                                      suites=TLS_SUITES, user="user root;" if os.geteuid() == 0 else ""))
        self.argv = ["nginx", "-p", self.dir, "-c", conf, "-g", "daemon off;"]
        self.proc = spawn(self.argv, stdout=subprocess.DEVNULL,
                          stderr=open(os.path.join(self.dir, "stderr.log"), "wb"))
        wait_tcp(self.port, self.proc, "nginx")
        wait_tcp(self.tls_port, self.proc, "nginx (HTTPS)")
        deadline = time.monotonic() + START_TIMEOUT
        self.workers = children_of(self.proc.pid)
        while not self.workers and time.monotonic() < deadline:
            time.sleep(0.05)
            self.workers = children_of(self.proc.pid)

    def cpu(self):
        return sum(proc_cpu(p) for p in [self.proc.pid] + self.workers)

    def tls_log(self):
        """Counter of 'protocol cipher' over the HTTPS requests served so far."""
        try:
            with open(os.path.join(self.dir, "tls.log")) as f:
                return collections.Counter(" ".join(ln.split()[:2]) for ln in f if ln.strip())
        except OSError:
            return collections.Counter()

    def stop(self):
        stop(self.proc, signal.SIGQUIT)  # graceful shutdown; SIGKILL follows if it hangs


# ---------------------------------------------------------------- perf

CATEGORIES = [
    "SHA-256 (chunk verification)",
    "AES-GCM (TLS record cipher)",
    "memory-BIO swap (shrink_bio: BIO free + OPENSSL_cleanse + realloc)",
    "copy: ciphertext into read BIO (pn_tls_feed)",
    "copy: ciphertext out of write BIO (pn_tls_take_out)",
    "copy: inside SSL_write/SSL_read (records into the write BIO, plaintext out)",
    "copy: frame buffer (deliver_frames / flush_out memmove)",
    "copy: other user-space memcpy/memmove",
    "malloc/free",
    "kernel: socket read",
    "kernel: socket write (incl. loopback TCP delivery)",
    "kernel: file read (pread of a chunk from page cache)",
    "kernel: file write (pwrite to the output file)",
    "kernel: epoll / other syscalls",
    "kernel: page faults and mmap/munmap (fresh buffers from malloc)",
    "kernel: other (interrupts, scheduling)",
    "OpenSSL other (cleanse, error queue, BIO ctrl)",
    "other",
]
OWN_DSOS = ("peernet", "idle-clients")


def own_caller(frames):
    """The innermost peernet function (not a tiny accessor) on the chain."""
    for sym, dso in frames:
        if dso in OWN_DSOS and not sym.startswith("[unknown]"):
            return sym
    return "-"

SYSCALL_RE = re.compile(r"(?:__x64_sys|__se_sys|__do_sys|ksys)_(\w+)")


def classify(frames):
    """frames: [(symbol, dso)] leaf first. Returns one CATEGORIES entry."""
    syms = [s for s, _ in frames]
    chain = " ".join(syms)
    leaf, leaf_dso = frames[0] if frames else ("", "")
    if "shrink_bio" in chain:
        return CATEGORIES[2]
    if "store_chunk_ok" in chain or "SHA256" in chain or "sha256" in chain or "EVP_Digest" in chain:
        return CATEGORIES[0]
    if leaf_dso == "[kernel.kallsyms]":
        if any(x in chain for x in ("exc_page_fault", "handle_mm_fault", "do_user_addr_fault")):
            return CATEGORIES[14]
        sc = None
        for s in syms:
            m = SYSCALL_RE.match(s)
            if m:
                sc = m.group(1)
                break
        if sc is None:
            return CATEGORIES[15]
        if sc in ("pread64", "preadv", "preadv2"):
            return CATEGORIES[11]
        if sc in ("pwrite64", "pwritev", "pwritev2"):
            return CATEGORIES[12]
        if sc in ("read", "readv", "recvfrom", "recvmsg"):
            return CATEGORIES[9]
        if sc in ("write", "writev", "sendto", "sendmsg"):
            return CATEGORIES[10]
        if sc in ("munmap", "mmap", "mremap", "brk", "madvise"):
            return CATEGORIES[14]
        return CATEGORIES[13]
    if re.match(r"__(memmove|memcpy|mempcpy)", leaf) or leaf in ("memcpy", "memmove"):
        for s in syms[1:]:
            if s.startswith("pn_tls_feed"):
                return CATEGORIES[3]
            if s.startswith("pn_tls_take_out"):
                return CATEGORIES[4]
            if s.startswith(("pn_tls_write", "pn_tls_read", "SSL_read", "SSL_write")):
                return CATEGORIES[5]
            if s.startswith(("deliver_frames", "flush_out", "process")):
                return CATEGORIES[6]
        return CATEGORIES[7]
    if re.match(r"(_int_malloc|_int_free|malloc|free|cfree|realloc|_int_realloc|unlink_chunk|"
                r"malloc_consolidate|calloc|__libc_)", leaf) and "libc" in leaf_dso:
        return CATEGORIES[8]
    if "EVP_Cipher" in chain or "EVP_Encrypt" in chain or "EVP_Decrypt" in chain or "gcm" in chain.lower():
        return CATEGORIES[1]
    if "libcrypto" in leaf_dso:
        if leaf.startswith("[unknown]") and ("SSL_read" in chain or "SSL_write" in chain):
            return CATEGORIES[1]  # stripped libcrypto: the cipher's assembly, reached from SSL_read/write
        return CATEGORIES[16]
    return CATEGORIES[17]


def parse_perf_script(text):
    """Yields [(symbol, dso)] per sample, leaf first."""
    frames = []
    in_sample = False
    for line in text.splitlines():
        if not line.strip():
            if in_sample:
                yield frames
            frames, in_sample = [], False
            continue
        if not line.startswith((" ", "\t")):
            in_sample = True
            frames = []
            continue
        parts = line.strip().split(None, 1)
        if len(parts) < 2:
            continue
        rest = parts[1]
        m = re.match(r"(.*?)\s+\(([^()]*)\)$", rest)
        sym, dso = (m.group(1), m.group(2)) if m else (rest, "")
        sym = re.sub(r"\+0x[0-9a-f]+$", "", sym).replace(" (inlined)", "")
        dso = os.path.basename(dso) if dso != "[kernel.kallsyms]" else dso
        frames.append((sym, dso))
    if in_sample:
        yield frames


def perf_analyse(data_path):
    """Returns (samples, category counts, top self symbols text)."""
    script = run(["perf", "script", "-i", data_path, "-F", "comm,pid,tid,time,event,ip,sym,dso"],
                 timeout=300, check=False).stdout
    counts = collections.Counter()
    callers = collections.defaultdict(collections.Counter)
    n = 0
    for frames in parse_perf_script(script):
        cat = classify(frames)
        counts[cat] += 1
        callers[cat][own_caller(frames)] += 1
        n += 1
    rep = run(["perf", "report", "-i", data_path, "--no-children", "--sort", "dso,sym", "--stdio",
               "-g", "none", "--percent-limit", "1.5"], timeout=300, check=False).stdout
    top = [ln.rstrip() for ln in rep.splitlines() if ln.strip() and not ln.startswith("#")]
    return n, counts, top[:16], callers


def perf_usable():
    try:
        r = subprocess.run(["perf", "stat", "-e", "instructions", "true"], capture_output=True, text=True,
                           timeout=20)
        hw = r.returncode == 0 and "not supported" not in r.stderr
        r2 = subprocess.run(["perf", "record", "-e", "cpu-clock", "-o", "/dev/null", "true"],
                            capture_output=True, text=True, timeout=20)
        return hw, r2.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False, False


# ---------------------------------------------------------------- openssl speed

def openssl_speed(alg, block=16384, seconds=2):
    r = run(["openssl", "speed", "-elapsed", "-seconds", str(seconds), "-bytes", str(block), "-evp", alg],
            timeout=60)
    last = [ln for ln in r.stdout.splitlines() if ln.strip()][-1]
    kbytes = float(last.split()[-1].rstrip("k"))  # openssl prints 1000s of bytes per second
    return kbytes * 1000 / MIB


def tls_session(addr, extra=()):
    """What a TLS 1.3 server at addr negotiates with a default OpenSSL client
    (`openssl s_client -brief`): {'Protocol version': .., 'Ciphersuite': .., ...}.
    The handshake to peernet then fails for want of a client identity: only the
    ServerHello matters here."""
    argv = ["openssl", "s_client", "-brief", "-connect", addr] + list(extra)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
    got = {"command": " ".join(argv)}
    for line in (r.stdout + r.stderr).splitlines():
        k, sep, v = line.partition(":")
        if sep and k.strip() in ("Protocol version", "Ciphersuite", "Server Temp Key", "Signature type"):
            got[k.strip()] = v.strip()
    return got


# ---------------------------------------------------------------- idle wake-ups

def ctx_switches(pid):
    """(voluntary, nonvoluntary, threads) summed over every thread of pid."""
    vol = nonvol = threads = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        vol += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        nonvol += int(line.split()[1])
            threads += 1
        except OSError:
            pass  # a thread that just ended
    return vol, nonvol, threads


def measure_idle(binary, work, seconds):
    """Starts an idle `peernet serve`, `peernet directory` and `peernet node`
    (directory mode, sharing a few small files), waits until each is up and the
    node is registered, then counts each process's context switches (all its
    threads) over `seconds`. Returns the figures and the commands."""
    base = os.path.join(work, "idle")
    share = os.path.join(base, "share")
    os.makedirs(share)
    for i in range(3):
        with open(os.path.join(share, f"small{i}.bin"), "wb") as f:
            f.write(os.urandom(64 * 1024 * (i + 1)))
    procs = []
    try:
        srv = Server(binary, os.path.join(base, "server"), base, "idle")
        procs.append(("peernet serve", srv.proc, srv.argv))
        for fn in sorted(os.listdir(share)):
            put(binary, srv.addr, os.path.join(share, fn))
        dport = os.path.join(base, "dir.port")
        dargv = [binary, "directory", "--listen", "127.0.0.1:0", "--port-file", dport]
        with open(os.path.join(base, "dir.log"), "ab") as log:
            dproc = spawn(dargv, stdout=log, stderr=subprocess.STDOUT)
        procs.append(("peernet directory", dproc, dargv))
        daddr = f"127.0.0.1:{int(wait_file(dport, dproc, 'peernet directory'))}"
        ndata = os.path.join(base, "node")
        nargv = [binary, "node", "--listen", "127.0.0.1:0", "--data", ndata, "--discovery", "directory",
                 "--directory", daddr, "--share", share, "--port-file", os.path.join(base, "node.port")]
        with open(os.path.join(base, "node.log"), "ab") as log:
            nproc = spawn(nargv, stdout=log, stderr=subprocess.STDOUT)
        procs.append(("peernet node", nproc, nargv))
        wait_file(os.path.join(base, "node.port"), nproc, "peernet node")
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            r = run([binary, "status", "--data", ndata, "--json"], timeout=10, check=False)
            try:
                st = json.loads(r.stdout) if r.returncode == 0 else {}
            except ValueError:
                st = {}
            if st.get("directory", {}).get("connected") and len(st.get("shares", [])) == 3:
                break
            if time.monotonic() > deadline:
                raise BenchError("the idle node did not register its 3 shares with the directory within "
                                 f"{START_TIMEOUT:.0f} s")
            time.sleep(0.1)
        time.sleep(2.0)  # start-up work (hashing the shares, registering) is over
        before = {p.pid: (ctx_switches(p.pid), proc_cpu(p.pid)) for _, p, _ in procs}
        t0 = time.monotonic()
        time.sleep(seconds)
        after = {p.pid: (ctx_switches(p.pid), proc_cpu(p.pid)) for _, p, _ in procs}
        dt = time.monotonic() - t0
        rows = []
        for name, p, argv in procs:
            if p.poll() is not None:
                raise BenchError(f"{name} exited with status {p.returncode} while idle")
            (v0, n0, _), c0 = before[p.pid]
            (v1, n1, th), c1 = after[p.pid]
            rows.append({"name": name, "argv": [a.replace(work, "$WORK") for a in argv],
                         "vol": (v1 - v0) / dt, "nonvol": (n1 - n0) / dt, "threads": th,
                         "cpu_ms": (c1 - c0) * 1000})
        return {"seconds": dt, "rows": rows}
    finally:
        for _, p, _ in reversed(procs):
            stop(p)


# ---------------------------------------------------------------- helpers

def make_random_file(path, size):
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, 8 * MIB))
            f.write(block)
            h.update(block)
            left -= len(block)
    return h.hexdigest()


def read_all(path):
    with open(path, "rb") as f:
        while f.read(8 * MIB):
            pass


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(8 * MIB)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def put(binary, addr, path):
    r = run([binary, "put", "--server", addr, "--no-progress", path], timeout=300)
    return r.stdout.strip().split()[0]


def machine_info():
    info = {}
    lscpu = run(["lscpu"], check=False).stdout
    for line in lscpu.splitlines():
        k, _, v = line.partition(":")
        info[k.strip()] = v.strip()
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) // 1024
    flags = info.get("Flags", "").split()
    return {
        "model": info.get("Model name", "?"),
        "cpus": info.get("CPU(s)", "?"),
        "threads_per_core": info.get("Thread(s) per core", "?"),
        "hypervisor": info.get("Hypervisor vendor", "none"),
        "crypto_flags": " ".join(f for f in ("aes", "vaes", "vpclmulqdq", "sha_ni", "avx512f") if f in flags),
        "mem_mib": mem,
        "kernel": os.uname().release,
        "openssl": run(["openssl", "version"], check=False).stdout.strip(),
        "nginx": run(["nginx", "-v"], check=False).stderr.strip().replace("nginx version: ", ""),
        "curl": run(["curl", "--version"], check=False).stdout.split("\n")[0].split(" (")[0],
    }


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def med(xs):
    return statistics.median(xs) if xs else float("nan")


# ---------------------------------------------------------------- main

SECTIONS = ("a", "b", "c", "d", "idle", "e", "f", "g", "h", "i", "j")
# Sections run only when --only names them, never by default: "fuzz" runs
# bench/fuzz_campaign.py (every fuzz target in turn, --fuzz-seconds each: an
# hour or more) and puts its table in the results.
OPT_IN = ("fuzz",)


def main():
    ap = argparse.ArgumentParser(description="peernet benchmarks; writes RESULTS.md")
    ap.add_argument("--bin", default="build/peernet")
    ap.add_argument("--idle-clients", default=None, help="default: idle-clients next to --bin")
    ap.add_argument("--out", default="bench/RESULTS.md")
    ap.add_argument("--only", default=",".join(SECTIONS),
                    help=f"comma-separated sections to run, of {','.join(SECTIONS)} (default: all) "
                    f"and {','.join(OPT_IN)} (only when named)")
    ap.add_argument("--runs", type=int, default=5, help="runs per single-client figure (median)")
    ap.add_argument("--size-mib", type=int, default=256, help="single-client file size")
    ap.add_argument("--many", type=int, default=64, help="concurrent clients")
    ap.add_argument("--many-size-mib", type=int, default=64, help="file size for the concurrent run")
    ap.add_argument("--idle", type=int, default=1000, help="idle connections")
    ap.add_argument("--idle-seconds", type=float, default=10, help="idle: how long wake-ups are counted")
    ap.add_argument("--no-perf", action="store_true", help="b without the perf profiles")
    ap.add_argument("--dist-ns", default=",".join(map(str, distribution.DEFAULT_NS)),
                    help="e: N values for the distribution-time runs")
    ap.add_argument("--dist-size-mib", type=float, default=8, help="e: F")
    ap.add_argument("--dist-source-rate", default="2M", help="e: u_s, the source's upload cap")
    ap.add_argument("--dist-node-rate", default="2M", help="e: u, each peer's upload cap")
    ap.add_argument("--no-dist", action="store_true", help="skip e")
    ap.add_argument("--no-flood", action="store_true", help="skip f (flooding: simulator and real nodes)")
    ap.add_argument("--fuzz-build", default=None, help="fuzz: build directory of the fuzz targets "
                    "(default: the directory of --bin)")
    ap.add_argument("--fuzz-seconds", type=int, default=1800, help="fuzz: seconds per target at most")
    ap.add_argument("--fuzz-runs", type=int, default=10_000_000, help="fuzz: executions per target at most")
    args = ap.parse_args()
    sel = {x.strip() for x in args.only.split(",") if x.strip()}
    bad = sel - set(SECTIONS) - set(OPT_IN)
    if bad or not sel:
        print(f"bench: --only takes sections of {','.join(SECTIONS + OPT_IN)}; not {','.join(sorted(bad))}",
              file=sys.stderr)
        return 2
    if args.no_dist:
        sel.discard("e")
    if args.no_flood:
        sel.discard("f")
    args.sections = [x for x in SECTIONS + OPT_IN if x in sel]

    binary = os.path.abspath(args.bin)
    idle_bin = os.path.abspath(args.idle_clients or os.path.join(os.path.dirname(binary), "idle-clients"))
    for b in ([binary] if sel - set(OPT_IN) else []) + ([idle_bin] if "d" in sel else []):
        if not os.access(b, os.X_OK):
            print(f"bench: {b} is missing; run `make bench` (it builds it)", file=sys.stderr)
            return 2
    for tool in ("nginx", "curl", "openssl") if "a" in sel else ("openssl",):
        if not shutil.which(tool):
            print(f"bench: {tool} is not installed; `make bench` installs it", file=sys.stderr)
            return 2

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, on_signal)
    raise_nofile(8192)

    work = tempfile.mkdtemp(prefix="peernet-bench-")  # server data and nginx root: disk, page cache
    shm_base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    outdir = tempfile.mkdtemp(prefix="peernet-bench-out-", dir=shm_base)  # downloads land here
    out_kind = "tmpfs (/dev/shm)" if shm_base else f"the temp dir ({outdir})"
    R = {"started": datetime.datetime.now(datetime.timezone.utc), "load_start": loadavg(),
         "sections": args.sections}
    servers = []
    try:
        R["machine"] = machine_info()
        R["commit"] = run(["git", "rev-parse", "--short", "HEAD"], check=False,
                          cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip() or "?"
        dirty = run(["git", "status", "--porcelain", "--untracked-files=no", "--", "src", "include"],
                    check=False, cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
        R["dirty"] = bool(dirty)
        R["binary"] = binary
        print(f"bench: {R['machine']['model']}, {R['machine']['cpus']} CPUs, load {R['load_start']}; "
              f"sections {','.join(args.sections)}")

        # ---- b (isolated bounds first, on a quiet process tree)
        if "b" in sel:
            print("bench: openssl speed (AES-128-GCM, SHA-256, 16 KiB blocks)")
            R["speed_aes"] = openssl_speed("aes-128-gcm")
            R["speed_sha"] = openssl_speed("sha256")
            R["speed_sha_256k"] = openssl_speed("sha256", block=256 * 1024)
            print(f"       AES-128-GCM {R['speed_aes']:.0f} MiB/s, SHA-256 {R['speed_sha']:.0f} MiB/s")

        # ---- the files and the server that a, b and c share
        size = args.size_mib * MIB
        srv_dir = os.path.join(work, "server")
        www = os.path.join(work, "www")
        os.makedirs(www)
        if sel & {"a", "b", "c"}:
            src = os.path.join(www, "big.bin")
            print(f"bench: making a {args.size_mib} MiB random file")
            want = make_random_file(src, size)
            srv = Server(binary, srv_dir, work, "a")
            servers.append(srv)
            cid = put(binary, srv.addr, src)
            if "c" in sel:
                many_src = os.path.join(www, "many.bin")
                many_size = args.many_size_mib * MIB
                many_want = make_random_file(many_src, many_size)
                many_cid = put(binary, srv.addr, many_src)
            # Everything from page cache: read the source and the server's copies once.
            for root, _, files in os.walk(work):
                for fn in files:
                    read_all(os.path.join(root, fn))
            out_pn = os.path.join(outdir, "peernet.bin")

        # ---- a: one client, 256 MiB
        if "a" in sel:
            ngx = Nginx(work, www)
            url = f"http://127.0.0.1:{ngx.port}/big.bin"
            url_tls = f"https://127.0.0.1:{ngx.tls_port}/big.bin"
            out_curl = os.path.join(outdir, "curl.bin")
            # Warm-up (not counted), and a check that each delivers the right bytes.
            peernet_get(binary, srv.addr, cid, out_pn)
            if sha256_file(out_pn) != want:
                raise BenchError("peernet get delivered wrong bytes")
            curl_get(url, out_curl)
            if sha256_file(out_curl) != want:
                raise BenchError("nginx/curl delivered wrong bytes")
            curl_get(url_tls, out_curl, extra=["-k"])
            if sha256_file(out_curl) != want:
                raise BenchError("nginx/curl over HTTPS delivered wrong bytes")
            tls_warm = ngx.tls_log()
            pn_runs, pn64_runs, tls_runs, curl_runs, null_runs = [], [], [], [], []
            print(f"bench: single client, {args.runs} rounds (peernet, nginx HTTPS, nginx HTTP to file, "
                  "nginx HTTP to /dev/null)")
            for i in range(args.runs):
                c0 = proc_cpu(srv.pid)
                r = peernet_get(binary, srv.addr, cid, out_pn)
                r["server_cpu"] = proc_cpu(srv.pid) - c0
                pn_runs.append(r)
                c0 = ngx.cpu()
                r = curl_get(url_tls, out_curl, extra=["-k"])
                r["server_cpu"] = ngx.cpu() - c0
                tls_runs.append(r)
                c0 = ngx.cpu()
                r = curl_get(url, out_curl)
                r["server_cpu"] = ngx.cpu() - c0
                curl_runs.append(r)
                c0 = ngx.cpu()
                r = curl_get(url, "/dev/null")
                r["server_cpu"] = ngx.cpu() - c0
                null_runs.append(r)
                print(f"       round {i + 1}: peernet {size / MIB / pn_runs[-1]['wall']:7.1f} MiB/s   "
                      f"https {size / MIB / tls_runs[-1]['wall']:7.1f} MiB/s   "
                      f"http {size / MIB / curl_runs[-1]['wall']:7.1f} MiB/s   "
                      f"http>/dev/null {size / MIB / null_runs[-1]['wall']:7.1f} MiB/s")
            for i in range(3):
                c0 = proc_cpu(srv.pid)
                r = peernet_get(binary, srv.addr, cid, out_pn, extra=["--window", "64"])
                r["server_cpu"] = proc_cpu(srv.pid) - c0
                pn64_runs.append(r)
            # What each side negotiated: nginx's log of the counted HTTPS runs, and the
            # ServerHello of each server to a default OpenSSL client.
            tls_counted = ngx.tls_log() - tls_warm
            R.update(size=size, pn=pn_runs, pn64=pn64_runs, tls=tls_runs, curl=curl_runs, null=null_runs,
                     url=url, url_tls=url_tls, out_pn=out_pn, out_curl=out_curl, addr_a=srv.addr, cid=cid,
                     out_kind=out_kind, nginx_conf=open(os.path.join(ngx.dir, "nginx.conf")).read(),
                     nginx_tls_log=tls_counted,
                     tls_pn=tls_session(srv.addr, ["-alpn", "peernet/1"]),
                     tls_nginx=tls_session(f"127.0.0.1:{ngx.tls_port}"))
            print(f"       negotiated: peernet {R['tls_pn'].get('Ciphersuite', '?')}, nginx HTTPS runs "
                  + ", ".join(f"{k} x{v}" for k, v in tls_counted.items()))
            ngx.stop()

        # ---- b: perf profiles during one transfer
        hw, sw = perf_usable() if "b" in sel and shutil.which("perf") and not args.no_perf else (False, False)
        R["perf_hw"], R["perf_ok"] = hw, sw
        if sw:
            print("bench: perf record of server and client during one transfer")
            srv_data = os.path.join(work, "perf-server.data")
            cl_data = os.path.join(work, "perf-client.data")
            perf_opts = ["-F", str(PERF_FREQ), "-e", "cpu-clock", "--call-graph", "dwarf,16384"]
            ps = spawn(["perf", "record"] + perf_opts + ["-o", srv_data, "-p", str(srv.pid)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)  # perf attaches
            r = peernet_get(binary, srv.addr, cid, out_pn,
                            prefix=["perf", "record"] + perf_opts + ["-o", cl_data, "--"])
            stop(ps, signal.SIGINT)
            R["perf_xfer"] = r
            R["perf_cmd"] = " ".join(["perf", "record"] + perf_opts)
            R["perf_client"] = perf_analyse(cl_data)
            R["perf_server"] = perf_analyse(srv_data)
            R["size"] = size
        if sel & {"a", "b", "c"}:
            srv.stop()

        # ---- c: many concurrent clients
        if "c" in sel:
            print(f"bench: {args.many} concurrent clients, {args.many_size_mib} MiB each")
            srv = Server(binary, srv_dir, work, "c")
            servers.append(srv)
            time.sleep(0.3)
            rss_idle = proc_status_kb(srv.pid, "VmRSS")
            c0 = proc_cpu(srv.pid)
            procs = []
            t0 = time.monotonic()
            for i in range(args.many):
                o = os.path.join(outdir, f"many{i}.bin")
                procs.append(spawn([binary, "get", "--server", srv.addr, many_cid, "-o", o, "--json",
                                    "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE))
            peak_rss = 0
            ends = {}
            deadline = t0 + XFER_TIMEOUT * 2
            while len(ends) < len(procs):
                peak_rss = max(peak_rss, proc_status_kb(srv.pid, "VmRSS"))
                for i, p in enumerate(procs):
                    if i not in ends and p.poll() is not None:
                        ends[i] = time.monotonic()
                if time.monotonic() > deadline:
                    raise BenchError(f"{args.many} concurrent gets did not finish in {deadline - t0:.0f} s")
                time.sleep(0.02)
            wall = max(ends.values()) - t0
            hwm = proc_status_kb(srv.pid, "VmHWM")
            secs = []
            for i, p in enumerate(procs):
                outp, errp = p.communicate(timeout=10)
                if p.returncode != 0:
                    raise BenchError(f"concurrent get {i} exited {p.returncode}: {errp.decode().strip()[-300:]}")
                secs.append(float(json.loads(outp.decode().strip().splitlines()[-1])["seconds"]))
            bad = [i for i in (0, args.many - 1)
                   if sha256_file(os.path.join(outdir, f"many{i}.bin")) != many_want]
            if bad:
                raise BenchError(f"concurrent get {bad[0]} delivered wrong bytes")
            R.update(many=args.many, many_size=many_size, many_wall=wall, many_secs=secs, many_hwm=hwm,
                     many_peak_rss=peak_rss, many_rss_idle=rss_idle, many_server_cpu=proc_cpu(srv.pid) - c0,
                     out_kind=out_kind)
            for i in range(args.many):
                os.unlink(os.path.join(outdir, f"many{i}.bin"))
            srv.stop()

        # ---- d: idle connections
        if "d" in sel:
            print(f"bench: {args.idle} idle TLS connections")
            srv = Server(binary, srv_dir, work, "d")
            servers.append(srv)
            time.sleep(0.5)
            rss_before = proc_status_kb(srv.pid, "VmRSS")
            ic = spawn([idle_bin, "--server", srv.addr, "-n", str(args.idle)], stdin=subprocess.PIPE,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            line = {}

            def read_ready():
                for raw in ic.stdout:
                    if raw.startswith(b"ready"):
                        line["ready"] = raw.decode().strip()
                        return
            th = threading.Thread(target=read_ready, daemon=True)
            th.start()
            th.join(timeout=90)
            if "ready" not in line:
                raise BenchError(f"idle-clients did not report ready within 90 s "
                                 f"(exit status {ic.poll()})")
            m = re.search(r"established=(\d+) failed=(\d+) seconds=([\d.]+)", line["ready"])
            est, failed, ready_s = int(m.group(1)), int(m.group(2)), float(m.group(3))
            time.sleep(2.0)
            rss_with = proc_status_kb(srv.pid, "VmRSS")
            hwm_with = proc_status_kb(srv.pid, "VmHWM")
            fds = len(os.listdir(f"/proc/{srv.pid}/fd"))
            ic.stdin.close()
            stop(ic)
            time.sleep(1.0)
            rss_after = proc_status_kb(srv.pid, "VmRSS")
            R.update(idle=args.idle, idle_est=est, idle_failed=failed, idle_ready_s=ready_s,
                     idle_rss_before=rss_before, idle_rss_with=rss_with, idle_hwm=hwm_with, idle_fds=fds,
                     idle_rss_after=rss_after, idle_bin=idle_bin)
            srv.stop()
            if failed:
                raise BenchError(f"{failed} of {args.idle} idle connections failed")

        # ---- idle: wake-ups of an idle server, directory and node
        if "idle" in sel:
            print(f"bench: wake-ups of an idle server, directory and node over {args.idle_seconds:.0f} s")
            R["wake"] = measure_idle(binary, work, args.idle_seconds)
            for row in R["wake"]["rows"]:
                print(f"       {row['name']:18} {row['vol']:6.1f} voluntary/s {row['nonvol']:5.1f} involuntary/s")

        # ---- e: distribution time, client-server vs peer-to-peer
        if "e" in sel:
            print("bench: distribution time, client-server vs peer-to-peer")
            R["dist"] = distribution.measure(
                binary, ns=[int(x) for x in args.dist_ns.split(",")], size=int(args.dist_size_mib * MIB),
                us=distribution.parse_rate(args.dist_source_rate), u=distribution.parse_rate(args.dist_node_rate),
                log=lambda m: print(m, flush=True), keep_timeline=False)
            svg = os.path.join(os.path.dirname(os.path.abspath(args.out)), "distribution.svg")
            R["dist_plot"] = distribution.plot(R["dist"], svg)
            print(f"bench: plot by {R['dist_plot']} -> {svg}")

        # ---- f: flooding, in the simulator (1,000-10,000 nodes) and on real nodes
        if "f" in sel:
            here = os.path.dirname(os.path.abspath(__file__))
            for script, md in (("flood_sim.py", "flood-sim.md"), ("flood_real.py", "flood-real.md")):
                path = os.path.join(here, script)
                if not os.path.exists(path):
                    continue
                print(f"bench: {script}")
                cmd = [sys.executable, path]
                if script == "flood_real.py":
                    cmd += ["--bin", binary]
                r = subprocess.run(cmd, timeout=1800)
                if r.returncode != 0:
                    raise BenchError(f"{script} failed with exit {r.returncode}")
                with open(os.path.join(here, md)) as f:
                    R.setdefault("flood", []).append((md, f.read()))

        # ---- g: the swarm in the simulator (the real peer engine, virtual time)
        if "g" in sel:
            here = os.path.dirname(os.path.abspath(__file__))
            path = os.path.join(here, "swarm_sim.py")
            print("bench: swarm_sim.py")
            cmd = [sys.executable, path]
            if R.get("dist"):
                # The calibration compares with this run's real distribution
                # times, not with those of the RESULTS.md being replaced.
                real_md = os.path.join(os.path.dirname(os.path.abspath(args.out)), ".bench-distribution.md")
                with open(real_md, "w") as f:
                    f.write(distribution.render(R["dist"], "distribution.svg", plot_tool=R.get("dist_plot")))
                cmd += ["--results", real_md]
            try:
                r = subprocess.run(cmd, timeout=3600)
            finally:
                if R.get("dist"):
                    os.remove(real_md)
            if r.returncode != 0:
                raise BenchError(f"swarm_sim.py failed with exit {r.returncode}")
            with open(os.path.join(here, "swarm-sim.md")) as f:
                R["swarm_sim"] = f.read()

        # ---- h: faults between machines, in network namespaces
        if "h" in sel:
            here = os.path.dirname(os.path.abspath(__file__))
            md = os.path.join(here, "netns-faults.md")
            print("bench: netns_faults.py")
            r = subprocess.run([sys.executable, os.path.join(here, "netns_faults.py"), "--bin", binary,
                                "--out", md], timeout=1200)
            if r.returncode == 2:   # no root, no namespaces: reported, not a broken run
                R["netns_faults"] = ("# Faults between machines, in network namespaces\n\nNot measured: "
                                     "`bench/netns_faults.py` needs root and network namespaces (exit 2).\n")
            elif r.returncode != 0:
                raise BenchError(f"netns_faults.py failed with exit {r.returncode}")
            else:
                with open(md) as f:
                    R["netns_faults"] = f.read()

        # ---- i: bounds under abuse
        if "i" in sel:
            here = os.path.dirname(os.path.abspath(__file__))
            md = os.path.join(here, "abuse.md")
            print("bench: abuse.py")
            r = subprocess.run([sys.executable, os.path.join(here, "abuse.py"), "--bin", binary, "--out", md],
                               timeout=1800)
            if r.returncode != 0:
                raise BenchError(f"abuse.py failed with exit {r.returncode}")
            with open(md) as f:
                R["abuse"] = f.read()

        # ---- j: the DHT in the simulator (the real Kademlia core, virtual time)
        if "j" in sel:
            here = os.path.dirname(os.path.abspath(__file__))
            print("bench: dht_sim.py")
            cmd = [sys.executable, os.path.join(here, "dht_sim.py"),
                   "--bin", os.path.join(os.path.dirname(binary), "dht-sim"),
                   "--out", os.path.join(here, "dht-sim.md"),
                   "--svg", os.path.join(os.path.dirname(os.path.abspath(args.out)), "lookup-messages.svg")]
            r = subprocess.run(cmd, timeout=7200, stdout=subprocess.DEVNULL)
            if r.returncode != 0:
                raise BenchError(f"dht_sim.py failed with exit {r.returncode}")
            with open(os.path.join(here, "dht-sim.md")) as f:
                R["dht_sim"] = f.read()

        # ---- fuzz (opt-in): the fuzzing campaign, one target at a time under nice 19
        if "fuzz" in sel:
            here = os.path.dirname(os.path.abspath(__file__))
            md = os.path.join(here, "fuzz-campaign.md")
            build_dir = args.fuzz_build or os.path.relpath(os.path.dirname(binary), os.path.dirname(here))
            print("bench: fuzz_campaign.py")
            r = subprocess.run([sys.executable, os.path.join(here, "fuzz_campaign.py"), "--build", build_dir,
                                "--seconds", str(args.fuzz_seconds), "--runs", str(args.fuzz_runs), "--out", md],
                               timeout=args.fuzz_seconds * 20 + 600)
            if r.returncode != 0:
                raise BenchError(f"fuzz_campaign.py failed with exit {r.returncode}")
            with open(md) as f:
                R["fuzz"] = (f"`python3 bench/fuzz_campaign.py --build {build_dir} --seconds {args.fuzz_seconds} "
                             f"--runs {args.fuzz_runs}`\n\n" + f.read())
        else:
            # A campaign takes hours: a run that does not name it shows the last
            # one recorded, which says when and at which commit it ran.
            md = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fuzz-campaign.md")
            if os.path.exists(md):
                with open(md) as f:
                    R["fuzz"] = ("Recorded by an earlier campaign, not re-run by this bench (`python3 bench/bench.py "
                                 "--only fuzz` runs one):\n\n" + f.read())

        R["load_end"] = loadavg()
        R["finished"] = datetime.datetime.now(datetime.timezone.utc)
        text = render(R, args)
        with open(args.out, "w") as f:
            f.write(text)
        print(f"bench: wrote {args.out}")
        print(summary(R))
        return 0
    except (KeyboardInterrupt, Stop) as e:
        print(f"\nbench: interrupted ({str(e) or 'Ctrl-C'}); {args.out} not written", file=sys.stderr)
        return 130
    except (BenchError, distribution.DistError, subprocess.TimeoutExpired, OSError, ValueError) as e:
        print(f"bench: broken run: {e}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        cleanup()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(outdir, ignore_errors=True)


# ---------------------------------------------------------------- report

def rate(size, secs):
    return size / MIB / secs if secs else float("nan")


def summary(R):
    L = []
    if R.get("pn"):
        size = R["size"]
        pn = med([rate(size, r["wall"]) for r in R["pn"]])
        tl = med([rate(size, r["wall"]) for r in R["tls"]])
        cu = med([rate(size, r["wall"]) for r in R["curl"]])
        L.append(f"  single client: peernet {pn:.0f} MiB/s, nginx HTTPS+curl {tl:.0f} MiB/s, nginx HTTP+curl "
                 f"{cu:.0f} MiB/s; peernet / HTTPS {pn / tl:.2f}x, peernet / HTTP {pn / cu:.2f}x")
    if R.get("many"):
        L.append(f"  {R['many']} clients: {rate(R['many'] * R['many_size'], R['many_wall']):.0f} MiB/s aggregate, "
                 f"server peak RSS {R['many_hwm'] / 1024:.1f} MiB")
    if R.get("idle_est") is not None and R.get("idle"):
        L.append(f"  {R['idle']} idle clients: server RSS {R['idle_rss_with'] / 1024:.1f} MiB "
                 f"(before {R['idle_rss_before'] / 1024:.1f} MiB)")
    if R.get("wake"):
        L.append("  idle wake-ups per second: " + ", ".join(
            f"{row['name']} {row['vol'] + row['nonvol']:.1f}" for row in R["wake"]["rows"]))
    if R.get("dist"):
        L.append(distribution.summary(R["dist"]))
    return "\n".join(L)


def render(R, args):
    M = R["machine"]
    L = []
    w = L.append
    w("# peernet benchmark results")
    w("")
    if R["sections"] == list(SECTIONS):
        w("Generated by `make bench` (`python3 bench/bench.py --bin build/peernet --out bench/RESULTS.md`);")
        w("every figure below comes from one run of that command. Figures, not tests.")
    else:
        w(f"Generated by `python3 bench/bench.py --only {','.join(R['sections'])}` (only these sections; "
          "`make bench` runs them all); every figure below comes from one run of that command. "
          "Figures, not tests.")
    w("")
    w("## Machine and run")
    w("")
    w(f"* Date: {R['started']:%Y-%m-%d %H:%M} UTC (run took {(R['finished'] - R['started']).seconds} s)")
    w(f"* peernet commit: `{R['commit']}`" + (" (with uncommitted changes in src/ at the time of the run)"
                                             if R["dirty"] else ""))
    w(f"* CPU: {M['model']}, {M['cpus']} logical CPUs ({M['threads_per_core']} thread per core), "
      f"hypervisor: {M['hypervisor']}; crypto extensions: {M['crypto_flags']}")
    w(f"* Memory: {M['mem_mib']} MiB; kernel (`uname -r`): {M['kernel']}")
    w(f"* {M['openssl']}; nginx {M['nginx']}; {M['curl']}")
    w(f"* Load average at start / end: {R['load_start']} / {R['load_end']}. The machine is shared: other "
      "processes (builds, fuzzers, tests) may run at the same time on its few cores, so absolute "
      "figures are noisy. The single-client runs interleave peernet and nginx so that all see the same "
      "load, and the CPU seconds per transfer (which load does not change much) are reported beside "
      "the wall-clock rates.")
    w("")
    F = {}  # figures shared by the sections and the analysis
    if R.get("pn"):
        render_a(R, args, w, F)
    if "speed_aes" in R:
        render_b(R, w, F)
    if R.get("many"):
        render_c(R, w, F)
    if R.get("idle_est") is not None and R.get("idle"):
        render_d(R, w, F)
    if R.get("wake"):
        render_idle(R, w)
    if F:
        w("## Analysis")
        w("")
        w(analysis(R, F))
        w("")
    if R.get("dist"):
        w(distribution.render(R["dist"], "distribution.svg", plot_tool=R.get("dist_plot")))
    if R.get("flood"):
        w("")
        w("# Flooding: messages per look-up against the directory's single round trip")
        w("")
        w("Each part below is also written on its own (`bench/flood-sim.md`, `bench/flood-real.md`).")
        for md, text in R["flood"]:
            w("")
            # Demote the part's headings one level under this section.
            w("\n".join(("#" + line) if line.startswith("#") else line for line in text.splitlines()))
    if R.get("swarm_sim"):
        w("")
        w("# The swarm in the simulator: the real peer engine, virtual time")
        w("")
        w("Also written on its own as `bench/swarm-sim.md` (`python3 bench/swarm_sim.py`).")
        w("")
        w("\n".join(("#" + line) if line.startswith("#") else line for line in R["swarm_sim"].splitlines()))
    if R.get("dht_sim"):
        head, _, rest = R["dht_sim"].rstrip("\n").partition("\n")
        w("")
        w(head)
        w("")
        w("Also written on its own as `bench/dht-sim.md` (`python3 bench/dht_sim.py`); the plot is "
          "`bench/lookup-messages.svg`.")
        w(rest)
    # Sections that a script of their own also writes as a page: its title, where, the rest.
    for key, page, script in (("netns_faults", "netns-faults.md", "netns_faults.py"), ("abuse", "abuse.md", "abuse.py")):
        if R.get(key):
            head, _, rest = R[key].rstrip("\n").partition("\n")
            w("")
            w(head)
            w("")
            w(f"Also written on its own as `bench/{page}` (`python3 bench/{script} --bin ...`).")
            w(rest)
    if R.get("fuzz"):
        w("")
        w("# Fuzzing campaign")
        w("")
        w("Every fuzz target (`fuzz/fuzz_*.c`, libFuzzer with ASan+UBSan) in turn; cov and ft are libFuzzer's "
          "final coverage counters (edges, features). Also written on its own as `bench/fuzz-campaign.md`.")
        w("")
        w(R["fuzz"].rstrip("\n"))
    return "\n".join(L)


PN_GOAL_TLS, PN_GOAL_PLAIN = 1.0, 0.8  # issue 8 point 9: peernet / nginx HTTPS, peernet / plain nginx


def render_a(R, args, w, F):
    size = R["size"]
    pn_rates = [rate(size, r["wall"]) for r in R["pn"]]
    pn_self = [rate(size, r["seconds"]) for r in R["pn"]]
    pn64_rates = [rate(size, r["wall"]) for r in R["pn64"]]
    tl_rates = [rate(size, r["wall"]) for r in R["tls"]]
    tl_self = [rate(size, r["seconds"]) for r in R["tls"]]
    cu_rates = [rate(size, r["wall"]) for r in R["curl"]]
    cu_self = [rate(size, r["seconds"]) for r in R["curl"]]
    nu_rates = [rate(size, r["wall"]) for r in R["null"]]
    F.update(pn_rates=pn_rates, tl_rates=tl_rates, cu_rates=cu_rates)
    w(f"## a. One client, {size // MIB} MiB from page cache over loopback")
    w("")
    w(f"The same {size // MIB} MiB random file is served by `peernet serve` (from its store) and by one nginx "
      "(from the directory it was put from) over plain HTTP (sendfile) and over HTTPS (TLS 1.3 only, the "
      "cipher suites peernet offers in peernet's order with the server's preference, a self-signed "
      "Ed25519 certificate; nginx's default user-space TLS, no kTLS). Both files were read once before "
      "the runs so that they are in the page cache, and one warm-up transfer of each is not counted. "
      f"Downloads are written to a file on {R['out_kind']} for every tool (peernet's final `fdatasync` is "
      "then free); curl to `/dev/null` over plain HTTP is shown as well. Rates are the file size over the "
      "wall-clock time of the whole client process (start to exit, including peernet's key generation "
      f"and the TLS handshakes); median of {args.runs} interleaved rounds (`--window 64`: 3 rounds).")
    w("")
    w("| | median MiB/s | runs (MiB/s) | client CPU s (user+sys) | server CPU s | "
      "ratio to nginx HTTPS | ratio to nginx HTTP |")
    w("|---|---:|---|---:|---:|---:|---:|")

    def row(name, rates, runs):
        cpu = med([r["user"] + r["sys"] for r in runs])
        scpu = med([r["server_cpu"] for r in runs])
        return (f"| {name} | **{med(rates):.0f}** | {', '.join(f'{x:.0f}' for x in rates)} | {cpu:.2f} | "
                f"{scpu:.2f} | {med(rates) / med(tl_rates):.2f}x | {med(rates) / med(cu_rates):.2f}x |")
    w(row("peernet get (TLS 1.3 AES-128-GCM, SHA-256 verify), default window", pn_rates, R["pn"]))
    w(row("peernet get --window 64", pn64_rates, R["pn64"]))
    w(row("nginx HTTPS (TLS 1.3) → curl -k, to a file", tl_rates, R["tls"]))
    w(row("nginx HTTP (sendfile) → curl, to a file", cu_rates, R["curl"]))
    w(row("nginx HTTP (sendfile) → curl, to /dev/null", nu_rates, R["null"]))
    w("")
    r_tls = med(pn_rates) / med(tl_rates)
    r_plain = med(pn_rates) / med(cu_rates)
    w(f"**peernet / nginx HTTPS = {r_tls:.2f}x** (goal ≥ {PN_GOAL_TLS:.1f}x); "
      f"**peernet / nginx HTTP = {r_plain:.2f}x** (goal ≥ {PN_GOAL_PLAIN:.1f}x). By the tools' own clocks "
      f"(peernet's JSON `seconds`, curl's `time_total`): peernet {med(pn_self):.0f} MiB/s, curl over HTTPS "
      f"{med(tl_self):.0f} MiB/s, curl over HTTP {med(cu_self):.0f} MiB/s.")
    w("")
    tp, tn = R.get("tls_pn", {}), R.get("tls_nginx", {})
    logged = ", ".join(f"`{k}` ×{v}" for k, v in R.get("nginx_tls_log", {}).items()) or "nothing"
    w("Negotiated TLS: peernet "
      f"{tp.get('Protocol version', '?')} `{tp.get('Ciphersuite', '?')}` (key exchange "
      f"{tp.get('Server Temp Key', '?')}, signature {tp.get('Signature type', '?')}); nginx "
      f"{tn.get('Protocol version', '?')} `{tn.get('Ciphersuite', '?')}` (key exchange "
      f"{tn.get('Server Temp Key', '?')}, signature {tn.get('Signature type', '?')}), from "
      "`openssl s_client -brief -connect ADDR` to each server (`-alpn peernet/1` for peernet); nginx's "
      f"access log (`$ssl_protocol $ssl_cipher`) of the {len(R['tls'])} counted HTTPS runs: {logged}.")
    w("")
    cpu_pn = med([r["user"] + r["sys"] + r["server_cpu"] for r in R["pn"]])
    cpu_tl = med([r["user"] + r["sys"] + r["server_cpu"] for r in R["tls"]])
    cpu_cu = med([r["user"] + r["sys"] + r["server_cpu"] for r in R["curl"]])
    gib = size / (1024 * MIB)
    w(f"CPU cost per GiB moved (client + server): peernet {cpu_pn / gib:.2f} s, nginx HTTPS+curl "
      f"{cpu_tl / gib:.2f} s, nginx HTTP+curl {cpu_cu / gib:.2f} s. Wall time per GiB: peernet "
      f"{med([r['wall'] for r in R['pn']]) / gib:.2f} s, nginx HTTPS+curl "
      f"{med([r['wall'] for r in R['tls']]) / gib:.2f} s, nginx HTTP+curl "
      f"{med([r['wall'] for r in R['curl']]) / gib:.2f} s.")
    w("")
    # Both ends run on this machine: with every CPU busy, the CPU cost per
    # byte alone caps the rate, whatever the overlap.
    cores = R.get("cpus") or os.cpu_count() or 1
    size_mib = size / MIB
    cap_pn, cap_tl = size_mib * cores / cpu_pn, size_mib * cores / cpu_tl
    need = cores * med([r["wall"] for r in R["tls"]]) / gib
    F.update(cap_pn=cap_pn, cap_tl=cap_tl, cores=cores, cpu_pn_gib=cpu_pn / gib, need_gib=need)
    line = (f"Machine bound: client and server share this machine's {cores} CPUs, so at its measured CPU cost "
            f"per GiB peernet cannot move more than {cores} / {cpu_pn / gib:.2f} s per GiB = **{cap_pn:.0f} "
            f"MiB/s** ({cap_pn / med(tl_rates):.2f}x nginx HTTPS in this run), however well the work overlaps; "
            f"measured: {med(pn_rates) / cap_pn * 100:.0f}% of it. nginx HTTPS+curl would be capped at "
            f"{cap_tl:.0f} MiB/s and reach {med(tl_rates) / cap_tl * 100:.0f}% of that. "
            f"To match nginx HTTPS here, peernet could spend at most {need:.2f} CPU s per GiB, client and "
            f"server together, with both CPUs busy all the time; it spends {cpu_pn / gib:.2f} s")
    sha = R.get("speed_sha_256k")
    if sha:
        line += (f", of which verifying the chunks with SHA-256 alone takes {1024 / sha:.2f} s "
                 f"(1 GiB at {sha:.0f} MiB/s, section b) — work nginx and curl do not do; the rest (TLS at both "
                 f"ends, sockets, the file write) costs peernet {cpu_pn / gib - 1024 / sha:.2f} s against "
                 f"{cpu_tl / gib:.2f} s for nginx HTTPS+curl")
    w(line + ".")
    w("")

    def busy(runs, key):
        return med([(r["user"] + r["sys"] if key == "client" else r["server_cpu"]) / r["wall"] * 100
                    for r in runs])
    w("Share of the client's wall time that each side spent on a CPU (CPU s / wall s, median; near 100% "
      f"is the side that bounds the transfer): peernet client {busy(R['pn'], 'client'):.0f}%, server "
      f"{busy(R['pn'], 'server'):.0f}%; curl over HTTPS {busy(R['tls'], 'client'):.0f}%, nginx "
      f"{busy(R['tls'], 'server'):.0f}%; curl over HTTP {busy(R['curl'], 'client'):.0f}%, nginx "
      f"{busy(R['curl'], 'server'):.0f}%.")
    w("")
    w("Commands:")
    w("")
    w("```")
    w(f"peernet serve --listen 127.0.0.1:0 --data $WORK/server --port-file $WORK/port-a")
    w(f"peernet put --server {R['addr_a']} --no-progress $WORK/www/big.bin")
    w(f"peernet get --server {R['addr_a']} {R['cid']} -o {R['out_pn']} --json --no-progress [--window 64]")
    w(f"{' '.join(CERT_CMD)} -keyout $WORK/nginx/key.pem -out $WORK/nginx/cert.pem")
    w(f"nginx -p $WORK/nginx -c $WORK/nginx/nginx.conf -g 'daemon off;'")
    w(f"curl -s -S --fail -k -o {R['out_curl']} -w '%{{size_download}} %{{time_total}}' {R['url_tls']}")
    w(f"curl -s -S --fail -o {R['out_curl']} -w '%{{size_download}} %{{time_total}}' {R['url']}")
    w(f"curl -s -S --fail -o /dev/null -w '%{{size_download}} %{{time_total}}' {R['url']}")
    w(f"{tp.get('command', 'openssl s_client -brief')}   # and the same to nginx's HTTPS port")
    w("```")
    w("")
    w("nginx.conf (ports and paths of this run):")
    w("")
    w("```nginx")
    w(R["nginx_conf"].rstrip())
    w("```")
    w("")


def render_b(R, w, F):
    w("## b. What bounds peernet's throughput")
    w("")
    aes, sha, sha256k = R["speed_aes"], R["speed_sha"], R["speed_sha_256k"]
    client_bound = 1 / (1 / aes + 1 / sha)
    F["client_bound"] = client_bound
    w("Each primitive alone, one core (`openssl speed -elapsed -seconds 2 -bytes N -evp ALG`):")
    w("")
    w("| primitive | block | MiB/s |")
    w("|---|---:|---:|")
    w(f"| AES-128-GCM (the negotiated TLS 1.3 suite) | 16 KiB | {aes:.0f} |")
    w(f"| SHA-256 | 16 KiB | {sha:.0f} |")
    w(f"| SHA-256 | 256 KiB (one chunk) | {sha256k:.0f} |")
    w("")
    line = (f"Per byte the client decrypts once and hashes once, so on one core it cannot beat "
            f"1 / (1/{aes:.0f} + 1/{sha:.0f}) = **{client_bound:.0f} MiB/s**; the server only encrypts "
            f"({aes:.0f} MiB/s).")
    if "pn_rates" in F:
        pn = med(F["pn_rates"])
        line += (f" Measured peernet: {pn:.0f} MiB/s, i.e. {pn / client_bound * 100:.0f}% of the client's "
                 f"crypto bound; nginx HTTPS+curl (decrypt, no hash) reach {med(F['tl_rates']):.0f} MiB/s and "
                 f"nginx HTTP+curl {med(F['cu_rates']):.0f} MiB/s without any crypto.")
    w(line)
    w("")
    if R.get("perf_ok"):
        size = R["size"]
        xfer = R["perf_xfer"]
        w(f"Profiles: `{R['perf_cmd']} -p SERVER_PID` on the server and "
          f"`{R['perf_cmd']} -- peernet get ...` on the client, during one {size // MIB} MiB transfer "
          f"({rate(size, xfer['wall']):.0f} MiB/s under perf). Hardware counters are "
          f"{'available' if R['perf_hw'] else 'not available in this VM (`perf stat -e instructions` says <not supported>)'}"
          ", so the samples are `cpu-clock` (on-CPU time only, 1 sample ≈ 1 ms). libcrypto is stripped, so its "
          "assembly shows as bare addresses; each sample is therefore attributed by its call chain "
          "(DWARF unwinding), e.g. anything under `store_chunk_ok` is SHA-256, a libcrypto frame under "
          "`SSL_read_ex`/`SSL_write_ex` that is not a copy is the AES-GCM code.")
        w("")
        for who, key in (("client (`peernet get`)", "perf_client"), ("server (`peernet serve`)", "perf_server")):
            n, counts, top, callers = R[key]
            cpu_s = n / PERF_FREQ
            w(f"### {who}: {n} samples ≈ {cpu_s:.2f} CPU s during a transfer of {xfer['seconds']:.2f} s")
            w("")
            w("| where the CPU time goes | share | innermost peernet function (share of the row) |")
            w("|---|---:|---|")
            for cat, c in counts.most_common():
                under = ", ".join(f"`{f}` {k / c * 100:.0f}%" for f, k in callers[cat].most_common(3))
                w(f"| {cat} | {c / n * 100:.1f}% | {under} |")
            w("")
            w("Top symbols (`perf report --no-children --sort dso,sym`, ≥ 1.5%):")
            w("")
            w("```")
            for ln in top:
                w(ln)
            w("```")
            w("")
    else:
        w("perf could not record here (`perf record -e cpu-clock` failed, or `--no-perf`); no profile in "
          "this run.")
        w("")


def render_c(R, w, F):
    many_rate = rate(R["many"] * R["many_size"], R["many_wall"])
    F["many_rate"] = many_rate
    w(f"## c. {R['many']} concurrent clients")
    w("")
    w(f"{R['many']} `peernet get` processes started at once, each fetching the same "
      f"{R['many_size'] // MIB} MiB file (from page cache) to {R['out_kind']}; a fresh server process.")
    w("")
    w("| figure | value |")
    w("|---|---:|")
    w(f"| aggregate throughput ({R['many']} × {R['many_size'] // MIB} MiB / wall time to the last finish) | "
      f"**{many_rate:.0f} MiB/s** |")
    w(f"| wall time to the last finish | {R['many_wall']:.2f} s |")
    w(f"| per-client time (min / median / max, client's own `seconds`) | {min(R['many_secs']):.2f} / "
      f"{med(R['many_secs']):.2f} / {max(R['many_secs']):.2f} s |")
    w(f"| server CPU during the run | {R['many_server_cpu']:.2f} s |")
    w(f"| server RSS before | {R['many_rss_idle'] / 1024:.1f} MiB |")
    w(f"| server peak RSS (VmHWM after the run) | **{R['many_hwm'] / 1024:.1f} MiB** |")
    w(f"| highest VmRSS seen while polling every 20 ms | {R['many_peak_rss'] / 1024:.1f} MiB |")
    w("")
    w("```")
    w(f"peernet get --server 127.0.0.1:PORT ID -o $OUT/manyN.bin --json --no-progress   # x{R['many']}, at once")
    w("grep -E 'VmRSS|VmHWM' /proc/SERVER_PID/status")
    w("```")
    w("")


def render_d(R, w, F):
    per = (R["idle_rss_with"] - R["idle_rss_before"]) / max(1, R["idle_est"])
    F["per"] = per
    w(f"## d. {R['idle']} idle connected clients")
    w("")
    w(f"`build/idle-clients` (bench/idle_clients.c, linked with build/libpeernet.a) opens {R['idle']} TLS 1.3 "
      "connections (64 handshakes in flight at a time) from loopback sources 127.77.x.y, 64 per source "
      "(a server takes at most 128 from one address, docs/PROTOCOL.md Limits), sends HELLO on each, says "
      "`ready` when all are established and holds them; the server's RSS is read 2 s later, well inside "
      "its 120 s idle timeout.")
    w("")
    w("| figure | value |")
    w("|---|---:|")
    w(f"| connections established / failed | {R['idle_est']} / {R['idle_failed']} "
      f"(in {R['idle_ready_s']:.1f} s) |")
    w(f"| server descriptors open while held | {R['idle_fds']} |")
    w(f"| server VmRSS before | {R['idle_rss_before'] / 1024:.1f} MiB |")
    w(f"| server VmRSS with {R['idle_est']} idle clients | **{R['idle_rss_with'] / 1024:.1f} MiB** "
      f"(goal < 64 MiB) |")
    w(f"| per connection | {per:.1f} KiB |")
    w(f"| server VmHWM | {R['idle_hwm'] / 1024:.1f} MiB |")
    w(f"| server VmRSS 1 s after they all closed | {R['idle_rss_after'] / 1024:.1f} MiB |")
    w("")
    w("```")
    w(f"build/idle-clients --server 127.0.0.1:PORT -n {R['idle']}")
    w("grep VmRSS /proc/SERVER_PID/status")
    w("```")
    w("")


def render_idle(R, w):
    W = R["wake"]
    w("## Idle processes: wake-ups per second")
    w("")
    w("An idle `peernet serve` (holding 3 small files), an idle `peernet directory` and an idle "
      "`peernet node` registered with that directory and sharing the same 3 files, nobody else connected. "
      "Once each has written its port file, the node reports (`peernet status --json`) that it is "
      "connected to the directory with its 3 shares, and 2 s have passed, `voluntary_ctxt_switches` and "
      "`nonvoluntary_ctxt_switches` are read from `/proc/PID/task/*/status` (summed over the process's "
      f"threads), again {W['seconds']:.1f} s later, and the difference is divided by the time. A voluntary "
      "switch is the process going to sleep, so voluntary switches per second are its wake-ups per "
      "second. The node's heartbeats to the directory are part of both processes' figures. Goal (issue 8 "
      "point 3): at most a few per second.")
    w("")
    w("| process | wake-ups/s (voluntary) | involuntary/s | threads | CPU ms in the window |")
    w("|---|---:|---:|---:|---:|")
    for row in W["rows"]:
        w(f"| `{row['name']}` | **{row['vol']:.1f}** | {row['nonvol']:.1f} | {row['threads']} | "
          f"{row['cpu_ms']:.0f} |")
    w("")
    w("```")
    for row in W["rows"]:
        w(" ".join(["peernet"] + row["argv"][1:]))
    w("grep ctxt_switches /proc/PID/task/*/status   # twice, "
      f"{W['seconds']:.0f} s apart")
    w("```")
    w("")


def analysis(R, F):
    out = []
    cb = F.get("client_bound")
    if "pn_rates" in F:
        pn, tl, cu = med(F["pn_rates"]), med(F["tl_rates"]), med(F["cu_rates"])
        r_tls, r_plain = pn / tl, pn / cu
        line = (f"* **Single client: {pn:.0f} MiB/s, {r_tls:.2f}x nginx HTTPS "
                f"({'meets' if r_tls >= PN_GOAL_TLS else 'misses'} the {PN_GOAL_TLS:.1f}x goal) and "
                f"{r_plain:.2f}x plain nginx ({'meets' if r_plain >= PN_GOAL_PLAIN else 'misses'} the "
                f"{PN_GOAL_PLAIN:.1f}x goal).**")
        if cb:
            line += (f" peernet reaches {pn / cb * 100:.0f}% of the one-core bound set by AES-GCM plus "
                     f"SHA-256 ({cb:.0f} MiB/s).")
        if F.get("cap_pn"):
            cap = F["cap_pn"] / tl
            line += (f" With both ends on {F['cores']} CPUs, peernet's CPU cost ({F['cpu_pn_gib']:.2f} s per GiB) "
                     f"caps it at {F['cap_pn']:.0f} MiB/s = {cap:.2f}x nginx HTTPS "
                     f"({'below' if cap < PN_GOAL_TLS else 'above'} the {PN_GOAL_TLS:.1f}x goal); the goal needs "
                     f"≤ {F['need_gib']:.2f} CPU s per GiB for both ends, SHA-256 included.")
        out.append(line)
    if R.get("perf_ok"):
        xfer = R["perf_xfer"]
        ncl, ccl, _, _ = R["perf_client"]
        nsv, csv, _, _ = R["perf_server"]
        util_c = ncl / PERF_FREQ / xfer["seconds"] * 100
        util_s = nsv / PERF_FREQ / xfer["seconds"] * 100

        def share(c, n, cat):
            return c.get(cat, 0) / n * 100 if n else 0
        copies_s = sum(share(csv, nsv, c) for c in CATEGORIES if c.startswith("copy"))
        copies_c = sum(share(ccl, ncl, c) for c in CATEGORIES if c.startswith("copy"))
        out.append(f"* Under perf the client was on a CPU about {util_c:.0f}% of the transfer time and the "
                   f"server about {util_s:.0f}% (the server's figure includes perf's 1 s attach wait). "
                   f"Client time: SHA-256 "
                   f"{share(ccl, ncl, CATEGORIES[0]):.0f}%, AES-GCM {share(ccl, ncl, CATEGORIES[1]):.0f}%, "
                   f"user-space copies {copies_c:.0f}%, kernel socket reads "
                   f"{share(ccl, ncl, CATEGORIES[9]):.0f}%, pwrite to the output "
                   f"{share(ccl, ncl, CATEGORIES[12]):.0f}%. Server time: pread from page cache "
                   f"{share(csv, nsv, CATEGORIES[11]):.0f}%, socket writes {share(csv, nsv, CATEGORIES[10]):.0f}%, "
                   f"user-space copies {copies_s:.0f}%, memory-BIO swapping (`shrink_bio`) "
                   f"{share(csv, nsv, CATEGORIES[2]):.0f}%, malloc/free {share(csv, nsv, CATEGORIES[8]):.0f}%, "
                   f"page faults and mmap/munmap {share(csv, nsv, CATEGORIES[14]):.0f}%, "
                   f"AES-GCM {share(csv, nsv, CATEGORIES[1]):.0f}%.")
    if R.get("pn64"):
        size = R["size"]
        pn, cu = med(F["pn_rates"]), med(F["cu_rates"])
        pn64 = med([rate(size, r["wall"]) for r in R["pn64"]])
        out.append(f"* The request window: `--window 64` gives {pn64:.0f} MiB/s against {pn:.0f} MiB/s "
                   f"with the default ({pn64 / cu:.2f}x plain nginx).")
    if "many_rate" in F:
        out.append(f"* {R['many']} clients: {F['many_rate']:.0f} MiB/s in aggregate with a server peak RSS of "
                   f"{R['many_hwm'] / 1024:.1f} MiB. With {R['machine']['cpus']} CPUs shared by the server and "
                   f"{R['many']} client processes this measures the machine as much as the server.")
    if "per" in F:
        verdict = "under" if R["idle_rss_with"] < 64 * 1024 else "over"
        out.append(f"* {R['idle_est']} idle clients: server VmRSS {R['idle_rss_with'] / 1024:.1f} MiB ({verdict} "
                   f"the 64 MiB goal), about {F['per']:.0f} KiB per connection.")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
