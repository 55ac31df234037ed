#!/usr/bin/env python3
"""Writes the seed corpora of the wire fuzz targets.

fuzz/corpus/fuzz_wire/: one valid frame body per message type, the swarm,
directory and flooding messages included (and a few edge cases), built here from docs/PROTOCOL.md independently of the C code,
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
DIR_ADDR_MAX = 63
NAME_MAX = 255
PEERS_MAX = 32
HIT_RESULTS_MAX = 32
QUERY_DATA_MAX = 255
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


def provider(node_id, addr):
    a = addr.encode()
    assert len(node_id) == 32 and 1 <= len(a) <= DIR_ADDR_MAX
    assert all(0x21 <= b <= 0x7e for b in a)
    return node_id + u8(len(a)) + a


def result(size, providers, name):
    n = name.encode()
    return cid(size) + u32(providers) + u16(len(n)) + n


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
    # swarm (0x40-0x45)
    yield "interested", u8(0x40) + cid(two)
    yield "not_interested", u8(0x41) + cid(two)
    yield "bitfield", u8(0x42) + cid(ten) + u32(10) + bytes([0xa5, 0x40])
    yield "bitfield_none", u8(0x42) + cid(0) + u32(1) + b"\x00"
    yield "bitfield_full8", u8(0x42) + cid(8 * CHUNK_SIZE) + u32(8) + b"\xff"
    yield "have", u8(0x43) + cid(two) + u32(1)
    yield "have_largest", u8(0x43) + cid(MAX_CHUNKS * CHUNK_SIZE) + u32(MAX_CHUNKS - 1)
    yield "choke", u8(0x44)
    yield "unchoke", u8(0x45)
    # directory (0x50-0x58)
    yield "dir_register", u8(0x50) + u32(1) + u16(7070) + u8(0)
    host = b"10.0.0.1"
    yield "dir_register_host", u8(0x50) + u32(2) + u16(7071) + u8(len(host)) + host
    yield "dir_register_host63", u8(0x50) + u32(2) + u16(1) + u8(DIR_ADDR_MAX) + b"~" * DIR_ADDR_MAX
    yield "dir_ok", u8(0x51) + u32(1) + u32(10000)
    yield "dir_offer", u8(0x52) + u32(3) + u16(2) + ents
    yield "dir_offer_one", u8(0x52) + u32(3) + u16(1) + entry(ten, "x y.z")
    yield "dir_withdraw", u8(0x53) + u32(4) + cid(two)
    yield "dir_find", u8(0x54) + u32(5) + cid(two)
    provs = provider(b"\xa1" * 32, "127.0.0.1:7070") + provider(b"\xb2" * 32, "[::1]:7071")
    yield "dir_providers", u8(0x55) + u32(6) + cid(two) + u32(3) + u16(2) + provs
    yield "dir_providers_none", u8(0x55) + u32(6) + cid(two) + u32(0) + u16(0)
    query = "report pdf".encode()
    yield "dir_search", u8(0x56) + u32(7) + u16(len(query)) + query
    query = "caf\u00e9 a/b \u65e5\u672c".encode()
    yield "dir_search_utf8", u8(0x56) + u32(7) + u16(len(query)) + query
    res = result(two, 3, "a") + result(0, 1, "b.txt\u00e9")
    yield "dir_results", u8(0x57) + u32(8) + u16(2) + res
    yield "dir_results_none", u8(0x57) + u32(8) + u16(0)
    yield "dir_bye", u8(0x58) + u32(9)
    # flooding (0x60-0x63)
    qid = bytes(range(0xc0, 0xd0))
    yield "peers_req", u8(0x60)
    yield "peers", u8(0x61) + u8(2) + provs
    yield "peers_none", u8(0x61) + u8(0)
    full = b"".join(provider(bytes([i]) * 32, "~" * DIR_ADDR_MAX) for i in range(PEERS_MAX))
    yield "peers_full", u8(0x61) + u8(PEERS_MAX) + full
    query = "report pdf".encode()
    yield "query_keywords", u8(0x62) + qid + u8(5) + u8(0) + u8(1) + u16(len(query)) + query
    query = "caf\u00e9 a/b \u65e5\u672c".encode()
    yield "query_utf8", u8(0x62) + qid + u8(7) + u8(0) + u8(1) + u16(len(query)) + query
    yield "query_longest", u8(0x62) + qid + u8(1) + u8(6) + u8(1) + u16(QUERY_DATA_MAX) + b"w" * QUERY_DATA_MAX
    yield "query_cid", u8(0x62) + qid + u8(3) + u8(2) + u8(2) + u16(40) + cid(two)
    yield "query_cid_ttl255", u8(0x62) + b"\xff" * 16 + u8(255) + u8(255) + u8(2) + u16(40) + cid(0)
    node = b"\xa1" * 32
    addr = b"127.0.0.1:7070"
    yield "query_hit", u8(0x63) + qid + node + u8(len(addr)) + addr + u16(2) + ents
    yield "query_hit_one", u8(0x63) + qid + node + u8(1) + b"~" + u16(1) + entry(ten, "x y.z")
    results = b"".join(entry(i, "n" * NAME_MAX) for i in range(HIT_RESULTS_MAX))
    yield "query_hit_full", (u8(0x63) + qid + node + u8(DIR_ADDR_MAX) + b"q" * DIR_ADDR_MAX
                             + u16(HIT_RESULTS_MAX) + results)


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
