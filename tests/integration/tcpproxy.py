"""A small test-only TCP proxy: forwards bytes both ways between clients and one
upstream address, optionally rate-limits either direction (down_rate, up_rate), and
optionally records every byte in both directions.

Threads, bounded: every socket has a timeout, every loop checks the stop flag,
stop() joins every thread with a timeout. Recording is capped (record_max).
"""
import socket
import threading
import time

BLOCK = 16 * 1024


class TcpProxy:
    def __init__(self, upstream_port, upstream_host="127.0.0.1", down_rate=None, record=False,
                 record_max=256 * 1024 * 1024, up_rate=None):
        self.upstream = (upstream_host, upstream_port)
        self.down_rate = down_rate        # bytes/s server->client, None for unlimited
        self.up_rate = up_rate            # bytes/s client->server, None for unlimited
        self.record = record
        self.record_max = record_max
        self.up = bytearray()             # client->server bytes, in order
        self.down = bytearray()           # server->client bytes, in order
        self.bytes_up = 0
        self.bytes_down = 0
        self.connections = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = []
        self._socks = []
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.addr = "127.0.0.1:%d" % self.port
        t = threading.Thread(target=self._accept_loop, name="proxy-accept", daemon=True)
        t.start()
        self._threads.append(t)

    def set_rate(self, down_rate):
        self.down_rate = down_rate

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self.connections += 1
                self._socks += [client, server]
            for s in (client, server):
                s.settimeout(0.2)
            t1 = threading.Thread(target=self._pump, args=(client, server, False), daemon=True)
            t2 = threading.Thread(target=self._pump, args=(server, client, True), daemon=True)
            with self._lock:
                self._threads += [t1, t2]
            t1.start()
            t2.start()

    def _pump(self, src, dst, downstream):
        sent_t0 = time.monotonic()
        sent = 0
        try:
            while not self._stop.is_set():
                rate = self.down_rate if downstream else self.up_rate
                n = BLOCK if not rate else max(1, min(BLOCK, rate // 20))
                try:
                    data = src.recv(n)
                except socket.timeout:
                    continue
                if not data:
                    break
                if self.record:
                    with self._lock:
                        buf = self.down if downstream else self.up
                        if len(buf) + len(data) <= self.record_max:
                            buf += data
                with self._lock:
                    if downstream:
                        self.bytes_down += len(data)
                    else:
                        self.bytes_up += len(data)
                off = 0
                while off < len(data) and not self._stop.is_set():
                    try:
                        off += dst.send(data[off:])
                    except socket.timeout:
                        continue
                if rate:
                    sent += len(data)
                    due = sent_t0 + sent / rate
                    delay = due - time.monotonic()
                    if delay > 0:
                        self._stop.wait(min(delay, 1.0))
        except OSError:
            pass
        # One side ended: end the other so the peer sees EOF too.
        for s in (dst, src):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        """Drops every connection open now: both ends see it close. The
        listener stays, so a client can connect again."""
        with self._lock:
            socks = list(self._socks)
            self._socks.clear()
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self, timeout=5):
        self._stop.set()
        try:
            self.listener.close()
        except OSError:
            pass
        with self._lock:
            socks = list(self._socks)
            threads = list(self._threads)
        for s in socks:
            try:
                s.close()
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for t in threads:
            t.join(max(0.01, deadline - time.monotonic()))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
