"""A hostile peernet 'server' for the namespace fault tests, run as its own process:

    python3 evilpeer.py garbage|stall HOST PORT CERT KEY SECONDS

It completes TLS 1.3 and the HELLO exchange like a real server (pnwire), then
`garbage`: answers the first request with junk (a frame of an unknown type and
random bytes, then more junk until the peer closes); `stall`: reads everything
and never answers. At most MAX_CONNS connections, each thread and the whole
process bounded by SECONDS. Prints 'listening' once ready and one line per
connection ('conn N: ...') so a test can see it was used.
"""
import os
import socket
import ssl
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pnwire  # noqa: E402

MAX_CONNS = 64


def serve_one(n, s, mode, deadline):
    try:
        s.settimeout(1.0)
        s.sendall(pnwire.frame(pnwire.HELLO_SERVER))
        buf = bytearray()
        answered = False
        seen = set()
        while time.monotonic() < deadline:
            try:
                b = s.recv(1 << 16)
            except socket.timeout:
                continue
            if not b:
                break
            buf += b
            frames, used = pnwire.parse_frames(buf)
            del buf[:used]
            if mode == "garbage" and any(f[0] != pnwire.T_HELLO for f in frames) and not answered:
                answered = True
                print("conn %d: request type 0x%02x, sending junk" % (n, frames[-1][0]), flush=True)
                s.sendall(pnwire.frame(b"\xee" + os.urandom(64)) + os.urandom(4096))
            elif mode == "stall":
                for f in frames:
                    if f[0] not in seen:
                        seen.add(f[0])
                        print("conn %d: type 0x%02x, no answer" % (n, f[0]), flush=True)
        s.close()
    except (OSError, ssl.SSLError) as e:
        print("conn %d: %s" % (n, e), flush=True)


def main():
    mode, host, port, cert, key, seconds = sys.argv[1:7]
    assert mode in ("garbage", "stall"), mode
    deadline = time.monotonic() + float(seconds)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["peernet/1"])
    lst = socket.socket()
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind((host, int(port)))
    lst.listen(16)
    lst.settimeout(1.0)
    print("listening", flush=True)
    n = 0
    while time.monotonic() < deadline and n < MAX_CONNS:
        try:
            raw, _ = lst.accept()
        except socket.timeout:
            continue
        n += 1
        try:
            raw.settimeout(10)
            s = ctx.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError) as e:
            print("conn %d: handshake: %s" % (n, e), flush=True)
            raw.close()
            continue
        print("conn %d: handshake done" % n, flush=True)
        threading.Thread(target=serve_one, args=(n, s, mode, deadline), daemon=True).start()
    lst.close()


if __name__ == "__main__":
    main()
