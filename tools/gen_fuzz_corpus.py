#!/usr/bin/env python3
"""Writes the seed corpora of the wire fuzz targets.

fuzz/corpus/fuzz_wire/: one valid frame body per message type (and a few
edge cases), built here from docs/PROTOCOL.md independently of the C code,
so the seeds double as a cross-check of the spec. fuzz/corpus/fuzz_cid/: a
few printed content IDs. Run from the repository root:

    python3 tools/gen_fuzz_corpus.py
"""
import base64
import hashlib
import os
import struct

CHUNK_SIZE = 256 * 1024
MAX_CHUNKS = 256 * 1024
ROOT = bytes(range(32))


def cid(size, root=ROOT):
    return root + struct.pack(">Q", size)


def chunks(size):
    return max(1, (size + CHUNK_SIZE - 1) // CHUNK_SIZE)


def u8(v): return struct.pack(">B", v)
def u16(v): return struct.pack(">H", v)
def u32(v): return struct.pack(">I", v)
def u64(v): return struct.pack(">Q", v)


def entry(size, name):
    n = name.encode()
    return cid(size) + u16(len(n)) + n


def bodies():
    two = CHUNK_SIZE + 1
    ten = 10 * CHUNK_SIZE - 3
    name = "report.pdf".encode()
    yield "hello", u8(0x01) + u8(1) + u8(2) + u16(7070) + u32(0)
    yield "error", u8(0x02) + u32(7) + u16(2) + u16(5) + b"nope!"
    yield "ping", u8(0x03) + u64(0x0102030405060708)
    yield "pong", u8(0x04) + u64(0xfedcba9876543210)
    yield "meta_req", u8(0x10) + u32(1) + cid(two)
    yield "meta", u8(0x11) + u32(3) + cid(two) + u16(len(name)) + name
    yield "hash_req", u8(0x12) + u32(4) + cid(two) + u32(0) + u32(2)
    yield "hashes", u8(0x13) + u32(5) + cid(two) + u32(0) + u32(2) + b"\xaa" * 32 + b"\xbb" * 32
    yield "chunk_req", u8(0x14) + u32(2) + cid(two) + u32(1)
    yield "chunk", u8(0x15) + u32(6) + cid(5) + u32(0) + b"hello"
    yield "chunk_last", u8(0x15) + u32(6) + cid(two) + u32(1) + b"z"
    yield "chunk_empty", u8(0x15) + u32(6) + cid(0) + u32(0)
    yield "cancel", u8(0x16) + u32(2) + cid(two) + u32(1)
    yield "list_req", u8(0x20) + u32(7) + u32(10)
    ents = entry(two, "a") + entry(0, "b.txt\u00e9")
    yield "list", u8(0x21) + u32(8) + u32(2) + u16(2) + ents
    yield "list_empty", u8(0x21) + u32(8) + u32(0) + u16(0)
    yield "put_begin", u8(0x30) + u32(3) + cid(two) + u16(len(name)) + name
    assert chunks(ten) == 10
    yield "put_status", u8(0x31) + u32(9) + cid(ten) + u8(1) + u32(10) + bytes([0xa5, 0x40])
    yield "put_end", u8(0x32) + u32(3) + cid(two)
    yield "put_done", u8(0x33) + u32(3) + cid(two)


def printed(c):
    return "pn1" + base64.b32encode(c).decode().lower().rstrip("=")


def main():
    wire_dir = "fuzz/corpus/fuzz_wire"
    cid_dir = "fuzz/corpus/fuzz_cid"
    os.makedirs(wire_dir, exist_ok=True)
    os.makedirs(cid_dir, exist_ok=True)
    for name, body in bodies():
        with open(os.path.join(wire_dir, name), "wb") as f:
            f.write(body)
    ids = {
        "empty_file": printed(cid(0, hashlib.sha256(b"").digest())),
        "two_chunks": printed(cid(CHUNK_SIZE + 1)),
        "largest": printed(cid(MAX_CHUNKS * CHUNK_SIZE, b"\xff" * 32)),
        "upper_case": printed(cid(CHUNK_SIZE + 1)).upper(),
    }
    for name, s in ids.items():
        with open(os.path.join(cid_dir, name), "w") as f:
            f.write(s)


if __name__ == "__main__":
    main()
