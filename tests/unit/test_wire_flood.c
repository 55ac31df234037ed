/* Unit tests for src/wire: the flooding messages between neighbour nodes
 * (0x60-0x63: PEERS_REQ, PEERS, QUERY, QUERY_HIT). test_wire_p2p.c has the
 * swarm and directory messages; the helpers below follow it.
 *
 * Every decode runs on a copy of its input that ends exactly where a
 * PROT_NONE page begins, so a decoder (or an entry iterator) that reads one
 * byte too far crashes instead of passing by luck. The byte vectors are
 * written out by hand from docs/PROTOCOL.md and checked both ways.
 */
#include <stdio.h>
#include <string.h>
#include <criterion/criterion.h>
#include "wire/wire.h"
#include "wirecheck.h"

#define LIST_ENTRY_MAX (PN_CID_BYTES + 2 + PN_NAME_MAX)
#define PEER_ENTRY_MAX (PN_ID_BYTES + 1 + PN_DIR_ADDR_MAX)

#define CIDMAX_HEX ROOT_HEX "0000001000000000" /* the largest file */
#define CIDBIG_HEX ROOT_HEX "0000001000000001" /* one byte too large */
#define CID0_HEX ROOT_HEX "0000000000000000"   /* empty file */

#define QID_HEX "c0c1c2c3c4c5c6c7c8c9cacbcccdcecf"
#define NODE_A_HEX "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"
#define NODE_B_HEX "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2"
#define PEER1_HEX NODE_A_HEX " 0e 3132372e302e302e313a37303730" /* "127.0.0.1:7070" */
#define PEER2_HEX NODE_B_HEX " 0a 5b3a3a315d3a37303731"         /* "[::1]:7071" */
#define PEERS_HEX "61 02 " PEER1_HEX " " PEER2_HEX
#define ENTRY1_HEX CID2_HEX " 0001 61"                      /* "a" */
#define ENTRY2_HEX CID0_HEX " 0007 622e747874c3a9"          /* "b.txt\u00e9" */
#define QUERY_KW_HEX "62 " QID_HEX " 05 00 01 000a 7265706f727420706466" /* "report pdf" */
#define QUERY_CID_HEX "62 " QID_HEX " 03 02 02 0028 " CID2_HEX
#define HIT_HEX "63 " QID_HEX " " NODE_A_HEX " 0e 3132372e302e302e313a37303730 0002 " ENTRY1_HEX " " ENTRY2_HEX

static const uint8_t qid_c0[PN_QID_BYTES] = { 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7,
					       0xc8, 0xc9, 0xca, 0xcb, 0xcc, 0xcd, 0xce, 0xcf };

/* Field-by-field equality of the flooding types, following pointers. */
static bool msg_eq(const struct pn_msg *a, const struct pn_msg *b)
{
	if (a->type != b->type)
		return false;
	switch (a->type) {
	case PN_MSG_PEERS_REQ:
		return true;
	case PN_MSG_PEERS:
		return a->u.peers.count == b->u.peers.count && a->u.peers.entries_len == b->u.peers.entries_len &&
		       bytes_eq(a->u.peers.entries, b->u.peers.entries, a->u.peers.entries_len);
	case PN_MSG_QUERY:
		return memcmp(a->u.query.qid, b->u.query.qid, PN_QID_BYTES) == 0 &&
		       a->u.query.ttl == b->u.query.ttl && a->u.query.hops == b->u.query.hops &&
		       a->u.query.kind == b->u.query.kind && a->u.query.len == b->u.query.len &&
		       bytes_eq(a->u.query.data, b->u.query.data, a->u.query.len);
	case PN_MSG_QUERY_HIT:
		return memcmp(a->u.query_hit.qid, b->u.query_hit.qid, PN_QID_BYTES) == 0 &&
		       bytes_eq(a->u.query_hit.node_id, b->u.query_hit.node_id, PN_ID_BYTES) &&
		       a->u.query_hit.addr_len == b->u.query_hit.addr_len &&
		       bytes_eq(a->u.query_hit.addr, b->u.query_hit.addr, a->u.query_hit.addr_len) &&
		       a->u.query_hit.count == b->u.query_hit.count &&
		       a->u.query_hit.entries_len == b->u.query_hit.entries_len &&
		       bytes_eq(a->u.query_hit.entries, b->u.query_hit.entries, a->u.query_hit.entries_len);
	default:
		return false;
	}
}

/* ================= limits ================= */

Test(limits, max_bodies)
{
	static const struct { uint8_t type; size_t max; } want[] = {
		{ PN_MSG_PEERS_REQ, 1 },
		{ PN_MSG_PEERS, 2 + 32 * (32 + 1 + 63) },                        /* 3074 */
		{ PN_MSG_QUERY, 22 + 255 },                                      /* 277 */
		{ PN_MSG_QUERY_HIT, 52 + 63 + 32 * (40 + 2 + 255) },             /* 9619 */
	};
	uint8_t hdr[PN_FRAME_HDR + 1];
	size_t body_len;

	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		size_t max = pn_msg_max_body(want[i].type);
		cr_assert_eq(max, want[i].max, "type 0x%02x: max body %zu, want %zu", want[i].type, max,
			     want[i].max);
		cr_assert_leq(max, PN_FRAME_MAX);
		/* The framer refuses one byte more as soon as the type byte is in. */
		pn_put_u32(hdr, (uint32_t)(max + 1));
		hdr[PN_FRAME_HDR] = want[i].type;
		cr_assert_eq(pn_frame_check(guard_copy(hdr, sizeof(hdr)), sizeof(hdr), PN_FRAME_MAX, &body_len),
			     PN_ETOOBIG, "type 0x%02x", want[i].type);
		pn_put_u32(hdr, (uint32_t)max);
		cr_assert_eq(pn_frame_check(guard_copy(hdr, sizeof(hdr)), sizeof(hdr), PN_FRAME_MAX, &body_len),
			     max == 1 ? PN_OK : PN_EAGAIN, "type 0x%02x", want[i].type);
	}
	/* Types left unassigned around the new ones. */
	static const uint8_t unknown[] = { 0x59, 0x5f, 0x64, 0x65, 0x6f, 0x70 };
	for (size_t i = 0; i < sizeof(unknown); i++) {
		struct pn_msg m;
		cr_assert_eq(pn_msg_max_body(unknown[i]), 0);
		cr_assert_eq(gdecode(unknown + i, 1, &m), PN_EPROTO);
		memset(&m, 0, sizeof(m));
		m.type = unknown[i];
		encode_rejects(&m);
	}
}

/* ================= PEERS_REQ ================= */

Test(peers_req, vector)
{
	uint8_t body[HEX_CAP];
	struct pn_msg m = { .type = PN_MSG_PEERS_REQ };

	check_all("60", &m, body);
	decode_fails("60 00", PN_ETOOBIG);
	decode_fails("60 02 " PEER1_HEX, PN_ETOOBIG);
	cr_assert_eq(encode_ok(&m), PN_FRAME_HDR + 1);
	cr_assert_eq(pn_get_u32(frame_buf), 1);
	cr_assert_eq(frame_buf[PN_FRAME_HDR], 0x60);
}

/* ================= PEERS ================= */

Test(peers, vector_and_entries)
{
	uint8_t body[HEX_CAP], entries[HEX_CAP], node_a[PN_ID_BYTES], node_b[PN_ID_BYTES];
	size_t entries_len = unhex(PEER1_HEX " " PEER2_HEX, entries, sizeof(entries));
	struct pn_msg m = { .type = PN_MSG_PEERS,
			    .u.peers = { .count = 2, .entries = entries, .entries_len = entries_len } };
	size_t len = check_all(PEERS_HEX, &m, body);

	cr_assert_eq(len, 92);
	memset(node_a, 0xa1, sizeof(node_a));
	memset(node_b, 0xb2, sizeof(node_b));
	struct pn_msg got;
	struct pn_dir_provider_entry e;
	size_t off = 0;
	cr_assert_eq(gdecode(body, len, &got), PN_OK);
	cr_assert_eq(got.u.peers.count, 2);
	cr_assert_eq(pn_peers_next(&got.u.peers, &off, &e), PN_OK);
	cr_assert_arr_eq(e.node_id, node_a, PN_ID_BYTES);
	cr_assert_eq(e.addr_len, 14);
	cr_assert_eq(memcmp(e.addr, "127.0.0.1:7070", 14), 0);
	cr_assert_eq(pn_peers_next(&got.u.peers, &off, &e), PN_OK);
	cr_assert_arr_eq(e.node_id, node_b, PN_ID_BYTES);
	cr_assert_eq(e.addr_len, 10);
	cr_assert_eq(memcmp(e.addr, "[::1]:7071", 10), 0);
	cr_assert_eq(pn_peers_next(&got.u.peers, &off, &e), PN_EAGAIN);
	cr_assert_eq(off, got.u.peers.entries_len);
	cr_assert_eq(pn_peers_next(&got.u.peers, &off, &e), PN_EAGAIN); /* stays at the end */
	off++;
	cr_assert_eq(pn_peers_next(&got.u.peers, &off, &e), PN_EPROTO);

	/* The entries are DIR_PROVIDERS entries: pn_dir_provider_encode builds them. */
	uint8_t out[HEX_CAP];
	struct pn_writer w;
	struct pn_dir_provider_entry e1 = { .node_id = node_a, .addr_len = 14, .addr = "127.0.0.1:7070" };
	struct pn_dir_provider_entry e2 = { .node_id = node_b, .addr_len = 10, .addr = "[::1]:7071" };
	pn_wr_init(&w, out, sizeof(out));
	pn_dir_provider_encode(&w, &e1);
	pn_dir_provider_encode(&w, &e2);
	cr_assert_eq(w.err, 0);
	cr_assert_eq(w.len, entries_len);
	cr_assert_arr_eq(out, entries, entries_len);

	/* No peers to tell of. */
	m.u.peers = (struct pn_msg_peers){ .count = 0, .entries = NULL, .entries_len = 0 };
	check_all("61 00", &m, body);
}

Test(peers, iterator_on_raw_entries)
{
	/* pn_peers_next is also safe on entries nobody validated. */
	static const char *const bad_hex[] = {
		NODE_A_HEX,                      /* no addr_len */
		NODE_A_HEX " 00",                /* empty address */
		NODE_A_HEX " 03 6162",           /* addr_len past the end */
		NODE_A_HEX " 03 612062",         /* space */
		NODE_A_HEX " 01 ff",
		"a1a1",
	};
	uint8_t raw[HEX_CAP];
	struct pn_dir_provider_entry e;

	for (size_t i = 0; i < sizeof(bad_hex) / sizeof(bad_hex[0]); i++) {
		size_t n = unhex(bad_hex[i], raw, sizeof(raw));
		struct pn_msg_peers p = { .count = 1, .entries = guard_copy(raw, n), .entries_len = n };
		size_t off = 0;
		cr_assert_eq(pn_peers_next(&p, &off, &e), PN_EPROTO, "entry %zu", i);
		cr_assert_eq(off, 0);
	}
	struct pn_msg_peers none = { .count = 0, .entries = NULL, .entries_len = 0 };
	size_t off = 0;
	cr_assert_eq(pn_peers_next(&none, &off, &e), PN_EAGAIN);
}

Test(peers, fields_out_of_range)
{
	struct pn_msg m;

	decode_ok("61 01 " PEER2_HEX, &m);
	cr_assert_eq(m.u.peers.count, 1);
	check_round_trip(&m);
	decode_fails("61", PN_EPROTO);                                  /* no count */
	decode_fails("61 00 " PEER1_HEX, PN_EPROTO);                    /* count below entries */
	decode_fails("61 01 " PEER1_HEX " " PEER2_HEX, PN_EPROTO);
	decode_fails("61 03 " PEER1_HEX " " PEER2_HEX, PN_EPROTO);      /* count above entries */
	decode_fails("61 01", PN_EPROTO);
	decode_fails("61 02 " PEER1_HEX " " PEER2_HEX " 00", PN_EPROTO); /* trailing byte */
	decode_fails("61 21 " PEER1_HEX, PN_EPROTO);                    /* 33 */
	decode_fails("61 ff " PEER1_HEX, PN_EPROTO);
	decode_fails("61 01 " NODE_A_HEX " 00", PN_EPROTO);             /* empty address */
	decode_fails("61 01 " NODE_A_HEX " 03 612062", PN_EPROTO);      /* "a b" */
	decode_fails("61 01 " NODE_A_HEX " 01 7f", PN_EPROTO);
	decode_fails("61 01 " NODE_A_HEX " 02 c3a9", PN_EPROTO);        /* not ASCII */
	decode_fails("61 01 " NODE_A_HEX " 04 612e62", PN_EPROTO);      /* addr_len too long */
	decode_fails("61 01 " NODE_A_HEX " 02 612e62", PN_EPROTO);      /* too short: trailing */
	decode_fails("61 01 " NODE_A_HEX " ff 612e62", PN_EPROTO);
	decode_fails("61 01 a1a1a1a1", PN_EPROTO);                      /* node_id cut */

	uint8_t entries[HEX_CAP];
	size_t elen = unhex(PEER1_HEX, entries, sizeof(entries));
	struct pn_msg bad = { .type = PN_MSG_PEERS, .u.peers = { .count = 2, .entries = entries, .entries_len = elen } };
	encode_rejects(&bad);
	bad.u.peers.count = 0;
	encode_rejects(&bad);
	bad.u.peers.count = PN_PEERS_MAX + 1;
	encode_rejects(&bad);
	bad.u.peers.count = 1;
	bad.u.peers.entries_len = elen - 1;
	encode_rejects(&bad);
	bad.u.peers.entries_len = elen;
	bad.u.peers.entries = NULL;
	encode_rejects(&bad);
	bad.u.peers.entries = entries;
	check_round_trip(&bad);
	entries[elen - 1] = ' ';
	encode_rejects(&bad);
	bad.u.peers = (struct pn_msg_peers){ .count = 0, .entries = entries, .entries_len = 0 };
	check_round_trip(&bad); /* a pointer with no bytes is fine */
}

/* Builds a PEERS body of `count` entries, each with a 63-byte address, with
 * `declared` in the count field; returns the body length. */
static size_t build_peers(uint8_t *body, size_t cap, unsigned declared, unsigned count)
{
	char addr[PN_DIR_ADDR_MAX];
	uint8_t node[PN_ID_BYTES];
	struct pn_writer w;

	memset(addr, '7', sizeof(addr));
	pn_wr_init(&w, body, cap);
	pn_wr_u8(&w, PN_MSG_PEERS);
	pn_wr_u8(&w, (uint8_t)declared);
	for (unsigned i = 0; i < count; i++) {
		memset(node, (int)i, sizeof(node));
		struct pn_dir_provider_entry e = { .node_id = node, .addr_len = PN_DIR_ADDR_MAX, .addr = addr };
		pn_dir_provider_encode(&w, &e);
	}
	cr_assert_eq(w.err, 0);
	return w.len;
}

Test(peers, full_page)
{
	static uint8_t body[PN_FRAME_MAX];
	struct pn_msg m;

	size_t len = build_peers(body, sizeof(body), PN_PEERS_MAX, PN_PEERS_MAX);
	cr_assert_eq(len, pn_msg_max_body(PN_MSG_PEERS));
	cr_assert_eq(gdecode(body, len, &m), PN_OK);
	cr_assert_eq(m.u.peers.count, PN_PEERS_MAX);
	check_round_trip(&m);

	size_t off = 0, seen = 0;
	struct pn_dir_provider_entry e;
	int err;
	while ((err = pn_peers_next(&m.u.peers, &off, &e)) == PN_OK) {
		cr_assert_eq(e.node_id[0], seen);
		cr_assert_eq(e.node_id[PN_ID_BYTES - 1], seen);
		cr_assert_eq(e.addr_len, PN_DIR_ADDR_MAX);
		seen++;
	}
	cr_assert_eq(err, PN_EAGAIN);
	cr_assert_eq(seen, PN_PEERS_MAX);
	cr_assert_eq(gdecode(body, len - 1, &m), PN_EPROTO);

	/* One over: 33 full entries do not fit the type; 33 short ones break the count. */
	len = build_peers(body, sizeof(body), PN_PEERS_MAX + 1, PN_PEERS_MAX + 1);
	cr_assert_eq(gdecode(body, len, &m), PN_ETOOBIG);
	struct pn_writer w;
	uint8_t node[PN_ID_BYTES] = { 0 };
	pn_wr_init(&w, body, sizeof(body));
	pn_wr_u8(&w, PN_MSG_PEERS);
	pn_wr_u8(&w, PN_PEERS_MAX + 1);
	for (int i = 0; i <= PN_PEERS_MAX; i++) {
		struct pn_dir_provider_entry se = { .node_id = node, .addr_len = 3, .addr = "a:1" };
		pn_dir_provider_encode(&w, &se);
	}
	cr_assert_eq(w.err, 0);
	cr_assert_leq(w.len, pn_msg_max_body(PN_MSG_PEERS));
	cr_assert_eq(gdecode(body, w.len, &m), PN_EPROTO);
	struct pn_msg over = { .type = PN_MSG_PEERS,
			       .u.peers = { .count = PN_PEERS_MAX + 1, .entries = body + 2, .entries_len = w.len - 2 } };
	encode_rejects(&over);
}

/* ================= QUERY ================= */

Test(query, vectors)
{
	uint8_t body[HEX_CAP];
	struct pn_msg m = { .type = PN_MSG_QUERY,
			    .u.query = { .ttl = 5, .hops = 0, .kind = 1, .len = 10,
					 .data = (const uint8_t *)"report pdf" } };

	memcpy(m.u.query.qid, qid_c0, PN_QID_BYTES);
	cr_assert_eq(check_all(QUERY_KW_HEX, &m, body), 32);

	uint8_t cid2[PN_CID_BYTES];
	unhex(CID2_HEX, cid2, sizeof(cid2));
	m.u.query.ttl = 3;
	m.u.query.hops = 2;
	m.u.query.kind = 2;
	m.u.query.len = PN_CID_BYTES;
	m.u.query.data = cid2;
	cr_assert_eq(check_all(QUERY_CID_HEX, &m, body), 62);

	/* The data of a kind-2 QUERY reads back as the content ID. */
	struct pn_msg got;
	struct pn_reader r;
	struct pn_cid c, want = mkcid(SIZE2);
	decode_ok(QUERY_CID_HEX, &got);
	pn_rd_init(&r, got.u.query.data, got.u.query.len);
	pn_cid_read(&r, &c);
	cr_assert_eq(r.err, 0);
	cr_assert(cid_eq(&c, &want));
}

Test(query, ttl_and_hops_take_any_value)
{
	static const char *const pairs[] = { "00 00", "01 00", "07 00", "00 07", "08 00", "ff ff", "80 7f" };
	char hex[HEX_CAP];
	struct pn_msg m;

	for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
		snprintf(hex, sizeof(hex), "62 " QID_HEX " %s 01 0001 61", pairs[i]);
		decode_ok(hex, &m);
		check_round_trip(&m);
	}
	decode_ok("62 " QID_HEX " ff 00 01 0001 61", &m);
	cr_assert_eq(m.u.query.ttl, 255);
	cr_assert_eq(m.u.query.hops, 0);
	decode_ok("62 ffffffffffffffffffffffffffffffff 00 ff 02 0028 " CID0_HEX, &m);
	cr_assert_eq(m.u.query.ttl, 0);
	cr_assert_eq(m.u.query.hops, 255);
	cr_assert_eq(m.u.query.qid[15], 0xff);
	decode_ok("62 00000000000000000000000000000000 07 00 02 0028 " CIDMAX_HEX, &m);
	check_round_trip(&m);
}

Test(query, kinds)
{
	struct pn_msg m;

	decode_fails("62 " QID_HEX " 05 00 00 0001 61", PN_EPROTO);   /* kind 0 */
	decode_fails("62 " QID_HEX " 05 00 03 0001 61", PN_EPROTO);   /* kind 3 */
	decode_fails("62 " QID_HEX " 05 00 ff 0001 61", PN_EPROTO);
	decode_fails("62 " QID_HEX " 05 00 00 0028 " CID2_HEX, PN_EPROTO);
	decode_fails("62 " QID_HEX " 05 00 03 0028 " CID2_HEX, PN_EPROTO);
	/* kind 2: exactly one valid content ID */
	decode_fails("62 " QID_HEX " 05 00 02 0027 " ROOT_HEX " 00000000000400", PN_EPROTO);
	decode_fails("62 " QID_HEX " 05 00 02 0029 " CID2_HEX " 00", PN_EPROTO);
	decode_fails("62 " QID_HEX " 05 00 02 0000", PN_EPROTO);
	decode_fails("62 " QID_HEX " 05 00 02 0001 61", PN_EPROTO);
	decode_fails("62 " QID_HEX " 05 00 02 0028 " CIDBIG_HEX, PN_EPROTO);
	decode_fails("62 " QID_HEX " 05 00 02 0028 " ROOT_HEX "ffffffffffffffff", PN_EPROTO);
	decode_fails("62 " QID_HEX " 05 00 02 0028 " CID2_HEX " 00", PN_EPROTO); /* trailing */
	/* A content ID's bytes need not be text; 40 bytes of text are a fine kind-1 query. */
	decode_ok("62 " QID_HEX " 05 00 02 0028 " CID0_HEX, &m);
	decode_fails("62 " QID_HEX " 05 00 01 0028 " CID2_HEX, PN_EPROTO);
	char hex[HEX_CAP];
	snprintf(hex, sizeof(hex), "62 " QID_HEX " 05 00 01 0028 %s",
		 "41424344454647484950515253545556575859602122232425262728292a2b2c2d2e2f3031323334");
	decode_ok(hex, &m);
	cr_assert_eq(m.u.query.len, 40);
	/* and a kind-2 query whose 40 bytes look like text still needs a size <= 64 GiB */
	snprintf(hex, sizeof(hex), "62 " QID_HEX " 05 00 02 0028 %s",
		 "41424344454647484950515253545556575859602122232425262728292a2b2c2d2e2f3031323334");
	decode_fails(hex, PN_EPROTO);

	uint8_t cid2[PN_CID_BYTES];
	unhex(CID2_HEX, cid2, sizeof(cid2));
	struct pn_msg bad = { .type = PN_MSG_QUERY, .u.query = { .ttl = 1, .kind = 0, .len = 1,
								 .data = (const uint8_t *)"a" } };
	encode_rejects(&bad);
	bad.u.query.kind = 3;
	encode_rejects(&bad);
	bad.u.query.kind = 2; /* one byte is no content ID */
	encode_rejects(&bad);
	bad.u.query.data = cid2;
	bad.u.query.len = PN_CID_BYTES - 1;
	encode_rejects(&bad);
	bad.u.query.len = PN_CID_BYTES + 1;
	encode_rejects(&bad);
	bad.u.query.len = PN_CID_BYTES;
	bad.u.query.data = NULL;
	encode_rejects(&bad);
	bad.u.query.data = cid2;
	check_round_trip(&bad);
	cid2[32] = 0x10; /* size 2^60 + ... */
	encode_rejects(&bad);
}

Test(query, keyword_text)
{
	static const char *const good_hex[] = {
		"61", "20", "2e", "2e2e", "2f", "5c", "612f62", "7e", "c3a9", "e697a5e69cac",
		"f09f9880", "c2a0", "efbfbf", "f48fbfbf", "2020616220",
	};
	static const char *const bad_hex[] = {
		"00", "09", "0a", "1f", "7f", "61 00 62",              /* C0 controls, DEL */
		"c280", "c29f",                                        /* C1 controls */
		"c0af", "e080af", "f08080af",                          /* overlong */
		"eda080", "edbfbf",                                    /* surrogates */
		"f4908080", "f5808080", "ff", "fe",                    /* above U+10FFFF, bad leads */
		"c3", "e282", "f09f98", "80", "c328",                  /* truncated, stray, bad continuation */
	};
	uint8_t q[16];
	char hex[HEX_CAP];
	struct pn_msg m;

	for (size_t i = 0; i < sizeof(good_hex) / sizeof(good_hex[0]); i++) {
		size_t qlen = unhex(good_hex[i], q, sizeof(q));
		snprintf(hex, sizeof(hex), "62 " QID_HEX " 05 00 01 %04zx %s", qlen, good_hex[i]);
		decode_ok(hex, &m);
		cr_assert_eq(m.u.query.len, qlen, "query %s", good_hex[i]);
		check_round_trip(&m);
	}
	for (size_t i = 0; i < sizeof(bad_hex) / sizeof(bad_hex[0]); i++) {
		size_t qlen = unhex(bad_hex[i], q, sizeof(q));
		snprintf(hex, sizeof(hex), "62 " QID_HEX " 05 00 01 %04zx %s", qlen, bad_hex[i]);
		decode_fails(hex, PN_EPROTO);
		struct pn_msg bad = { .type = PN_MSG_QUERY,
				      .u.query = { .ttl = 5, .kind = 1, .len = (uint16_t)qlen, .data = q } };
		encode_rejects(&bad);
	}
	decode_fails("62 " QID_HEX " 05 00 01 0000", PN_EPROTO);      /* empty */
	decode_fails("62 " QID_HEX " 05 00 01 0002 61", PN_EPROTO);   /* len too long */
	decode_fails("62 " QID_HEX " 05 00 01 0001 6161", PN_EPROTO); /* too short: trailing */
	decode_fails("62 " QID_HEX " 05 00 01 ffff 61", PN_EPROTO);
	decode_fails("62 " QID_HEX " 05 00 01 0100 61", PN_EPROTO);

	/* 255 bytes is the limit; 256 is too big for the type. */
	static uint8_t body[HEX_CAP];
	char query[PN_QUERY_DATA_MAX + 1];
	memset(query, 'w', sizeof(query));
	size_t n = unhex("62 " QID_HEX " 07 00 01 00ff", body, sizeof(body));
	memcpy(body + n, query, PN_QUERY_DATA_MAX);
	cr_assert_eq(n + PN_QUERY_DATA_MAX, pn_msg_max_body(PN_MSG_QUERY));
	cr_assert_eq(gdecode(body, n + PN_QUERY_DATA_MAX, &m), PN_OK);
	cr_assert_eq(m.u.query.len, PN_QUERY_DATA_MAX);
	check_round_trip(&m);
	n = unhex("62 " QID_HEX " 07 00 01 0100", body, sizeof(body));
	memcpy(body + n, query, PN_QUERY_DATA_MAX + 1);
	cr_assert_eq(gdecode(body, n + PN_QUERY_DATA_MAX + 1, &m), PN_ETOOBIG);

	struct pn_msg bad = { .type = PN_MSG_QUERY,
			      .u.query = { .ttl = 5, .kind = 1, .len = 0, .data = (const uint8_t *)"" } };
	encode_rejects(&bad);
	bad.u.query.len = 1;
	bad.u.query.data = NULL;
	encode_rejects(&bad);
	bad.u.query.data = (const uint8_t *)query;
	bad.u.query.len = PN_QUERY_DATA_MAX + 1;
	encode_rejects(&bad);
	bad.u.query.len = PN_QUERY_DATA_MAX;
	check_round_trip(&bad);
}

/* ================= QUERY_HIT ================= */

Test(query_hit, vector_and_entries)
{
	uint8_t body[HEX_CAP], entries[HEX_CAP], node_a[PN_ID_BYTES];
	size_t entries_len = unhex(ENTRY1_HEX " " ENTRY2_HEX, entries, sizeof(entries));

	memset(node_a, 0xa1, sizeof(node_a));
	struct pn_msg m = { .type = PN_MSG_QUERY_HIT,
			    .u.query_hit = { .node_id = node_a, .addr_len = 14, .addr = "127.0.0.1:7070",
					     .count = 2, .entries = entries, .entries_len = entries_len } };
	memcpy(m.u.query_hit.qid, qid_c0, PN_QID_BYTES);
	size_t len = check_all(HIT_HEX, &m, body);
	cr_assert_eq(len, 158);

	struct pn_msg got;
	struct pn_list_entry e;
	struct pn_cid c2 = mkcid(SIZE2), c0 = mkcid(0);
	size_t off = 0;
	cr_assert_eq(gdecode(body, len, &got), PN_OK);
	cr_assert_arr_eq(got.u.query_hit.qid, qid_c0, PN_QID_BYTES);
	cr_assert_arr_eq(got.u.query_hit.node_id, node_a, PN_ID_BYTES);
	cr_assert_eq(got.u.query_hit.addr_len, 14);
	cr_assert_eq(memcmp(got.u.query_hit.addr, "127.0.0.1:7070", 14), 0);
	cr_assert_eq(pn_hit_next(&got.u.query_hit, &off, &e), PN_OK);
	cr_assert(cid_eq(&e.cid, &c2));
	cr_assert_eq(e.name_len, 1);
	cr_assert_eq(e.name[0], 'a');
	cr_assert_eq(pn_hit_next(&got.u.query_hit, &off, &e), PN_OK);
	cr_assert(cid_eq(&e.cid, &c0));
	cr_assert_eq(e.name_len, 7);
	cr_assert_eq(memcmp(e.name, "b.txt\xc3\xa9", 7), 0);
	cr_assert_eq(pn_hit_next(&got.u.query_hit, &off, &e), PN_EAGAIN);
	cr_assert_eq(off, got.u.query_hit.entries_len);
	off++;
	cr_assert_eq(pn_hit_next(&got.u.query_hit, &off, &e), PN_EPROTO);

	/* The entries are LIST entries: pn_list_entry_encode builds them. */
	uint8_t out[HEX_CAP];
	struct pn_writer w;
	struct pn_list_entry e1 = { .cid = c2, .name_len = 1, .name = "a" };
	struct pn_list_entry e2 = { .cid = c0, .name_len = 7, .name = "b.txt\xc3\xa9" };
	pn_wr_init(&w, out, sizeof(out));
	pn_list_entry_encode(&w, &e1);
	pn_list_entry_encode(&w, &e2);
	cr_assert_eq(w.err, 0);
	cr_assert_eq(w.len, entries_len);
	cr_assert_arr_eq(out, entries, entries_len);

	/* One result, the shortest address. */
	m.u.query_hit.addr_len = 1;
	m.u.query_hit.addr = "~";
	m.u.query_hit.count = 1;
	m.u.query_hit.entries_len = entries_len - (PN_CID_BYTES + 2 + 7);
	check_all("63 " QID_HEX " " NODE_A_HEX " 01 7e 0001 " ENTRY1_HEX, &m, body);
}

Test(query_hit, iterator_on_raw_entries)
{
	static const char *const bad_hex[] = {
		CID2_HEX,                 /* no name_len */
		CID2_HEX " 0000",         /* empty name */
		CID2_HEX " 0002 61",      /* name past the end */
		CID2_HEX " 0001 2f",      /* "/" */
		CIDBIG_HEX " 0001 61",
		"0001",
	};
	uint8_t raw[HEX_CAP];
	struct pn_list_entry e;

	for (size_t i = 0; i < sizeof(bad_hex) / sizeof(bad_hex[0]); i++) {
		size_t n = unhex(bad_hex[i], raw, sizeof(raw));
		struct pn_msg_query_hit h = { .count = 1, .entries = guard_copy(raw, n), .entries_len = n };
		size_t off = 0;
		cr_assert_eq(pn_hit_next(&h, &off, &e), PN_EPROTO, "entry %zu", i);
		cr_assert_eq(off, 0);
	}
}

Test(query_hit, fields_out_of_range)
{
	struct pn_msg m;

#define HIT_HEAD "63 " QID_HEX " " NODE_A_HEX
	decode_ok(HIT_HEAD " 03 613a31 0001 " ENTRY2_HEX, &m);
	cr_assert_eq(m.u.query_hit.count, 1);
	check_round_trip(&m);
	decode_fails(HIT_HEAD " 03 613a31 0000", PN_EPROTO);                    /* count 0 */
	decode_fails(HIT_HEAD " 03 613a31 0000 " ENTRY1_HEX, PN_EPROTO);
	decode_fails(HIT_HEAD " 03 613a31 0002 " ENTRY1_HEX, PN_EPROTO);        /* count above entries */
	decode_fails(HIT_HEAD " 03 613a31 0001 " ENTRY1_HEX " " ENTRY2_HEX, PN_EPROTO);
	decode_fails(HIT_HEAD " 03 613a31 0001 " ENTRY1_HEX " 00", PN_EPROTO);   /* trailing */
	decode_fails(HIT_HEAD " 03 613a31 0021 " ENTRY1_HEX, PN_EPROTO);        /* 33 */
	decode_fails(HIT_HEAD " 03 613a31 ffff " ENTRY1_HEX, PN_EPROTO);
	decode_fails(HIT_HEAD " 00 0001 " ENTRY1_HEX, PN_EPROTO);               /* empty address */
	decode_fails(HIT_HEAD " 03 612062 0001 " ENTRY1_HEX, PN_EPROTO);        /* "a b" */
	decode_fails(HIT_HEAD " 01 00 0001 " ENTRY1_HEX, PN_EPROTO);
	decode_fails(HIT_HEAD " 01 7f 0001 " ENTRY1_HEX, PN_EPROTO);
	decode_fails(HIT_HEAD " 02 c3a9 0001 " ENTRY1_HEX, PN_EPROTO);
	decode_fails(HIT_HEAD " 04 613a31 0001 " ENTRY1_HEX, PN_EPROTO);        /* addr_len off by one */
	decode_fails(HIT_HEAD " 02 613a31 0001 " ENTRY1_HEX, PN_EPROTO);
	decode_fails(HIT_HEAD " 03 613a31 0001 " CID2_HEX " 0001 2f", PN_EPROTO);   /* "/" */
	decode_fails(HIT_HEAD " 03 613a31 0001 " CID2_HEX " 0002 2e2e", PN_EPROTO); /* ".." */
	decode_fails(HIT_HEAD " 03 613a31 0001 " CID2_HEX " 0000", PN_EPROTO);      /* empty name */
	decode_fails(HIT_HEAD " 03 613a31 0001 " CID2_HEX " 0001 c3", PN_EPROTO);   /* bad UTF-8 */
	decode_fails(HIT_HEAD " 03 613a31 0001 " CIDBIG_HEX " 0001 61", PN_EPROTO);
	decode_fails(HIT_HEAD " 03 613a31 0002 " ENTRY1_HEX " " CID2_HEX " 0001 0a", PN_EPROTO);
	decode_fails(HIT_HEAD " 03 613a31", PN_EPROTO);                         /* no count */
	decode_fails("63 " QID_HEX " a1a1a1a1", PN_EPROTO);                     /* node_id cut */
#undef HIT_HEAD

	uint8_t entries[HEX_CAP], node[PN_ID_BYTES];
	char addr[PN_DIR_ADDR_MAX + 1];
	size_t elen = unhex(ENTRY1_HEX, entries, sizeof(entries));
	memset(node, 0x5a, sizeof(node));
	memset(addr, 'h', sizeof(addr));
	struct pn_msg bad = { .type = PN_MSG_QUERY_HIT,
			      .u.query_hit = { .node_id = node, .addr_len = 3, .addr = "a:1", .count = 2,
					       .entries = entries, .entries_len = elen } };
	encode_rejects(&bad);
	bad.u.query_hit.count = 0;
	encode_rejects(&bad);
	bad.u.query_hit.count = PN_HIT_RESULTS_MAX + 1;
	encode_rejects(&bad);
	bad.u.query_hit.count = 1;
	bad.u.query_hit.entries = NULL;
	encode_rejects(&bad);
	bad.u.query_hit.entries = entries;
	bad.u.query_hit.entries_len = elen + 1;
	encode_rejects(&bad);
	bad.u.query_hit.entries_len = elen;
	bad.u.query_hit.node_id = NULL;
	encode_rejects(&bad);
	bad.u.query_hit.node_id = node;
	bad.u.query_hit.addr_len = 0;
	bad.u.query_hit.addr = "";
	encode_rejects(&bad);
	bad.u.query_hit.addr_len = 1;
	bad.u.query_hit.addr = NULL;
	encode_rejects(&bad);
	bad.u.query_hit.addr = addr;
	bad.u.query_hit.addr_len = PN_DIR_ADDR_MAX + 1;
	encode_rejects(&bad);
	bad.u.query_hit.addr_len = PN_DIR_ADDR_MAX;
	check_round_trip(&bad);
	addr[5] = ' ';
	encode_rejects(&bad);
	addr[5] = 'h';
	entries[elen - 1] = '\\';
	encode_rejects(&bad);
}

/* Builds a QUERY_HIT body of `count` results with 255-byte names and a
 * 63-byte address, `declared` in the count field; returns the body length. */
static size_t build_hit(uint8_t *body, size_t cap, unsigned declared, unsigned count)
{
	char addr[PN_DIR_ADDR_MAX], name[PN_NAME_MAX];
	uint8_t node[PN_ID_BYTES];
	struct pn_writer w;

	memset(addr, 'q', sizeof(addr));
	memset(name, 'n', sizeof(name));
	memset(node, 0x3c, sizeof(node));
	pn_wr_init(&w, body, cap);
	pn_wr_u8(&w, PN_MSG_QUERY_HIT);
	pn_wr_bytes(&w, qid_c0, PN_QID_BYTES);
	pn_wr_bytes(&w, node, PN_ID_BYTES);
	pn_wr_u8(&w, PN_DIR_ADDR_MAX);
	pn_wr_bytes(&w, addr, PN_DIR_ADDR_MAX);
	pn_wr_u16(&w, (uint16_t)declared);
	for (unsigned i = 0; i < count; i++) {
		struct pn_list_entry e = { .cid = mkcid((uint64_t)i * 777), .name_len = PN_NAME_MAX, .name = name };
		pn_list_entry_encode(&w, &e);
	}
	cr_assert_eq(w.err, 0);
	return w.len;
}

Test(query_hit, full_page)
{
	static uint8_t body[PN_FRAME_MAX];
	struct pn_msg m;

	size_t len = build_hit(body, sizeof(body), PN_HIT_RESULTS_MAX, PN_HIT_RESULTS_MAX);
	cr_assert_eq(len, pn_msg_max_body(PN_MSG_QUERY_HIT));
	cr_assert_eq(gdecode(body, len, &m), PN_OK);
	cr_assert_eq(m.u.query_hit.count, PN_HIT_RESULTS_MAX);
	cr_assert_eq(m.u.query_hit.addr_len, PN_DIR_ADDR_MAX);
	check_round_trip(&m);

	size_t off = 0, seen = 0;
	struct pn_list_entry e;
	int err;
	while ((err = pn_hit_next(&m.u.query_hit, &off, &e)) == PN_OK) {
		cr_assert_eq(e.cid.size, seen * 777);
		cr_assert_eq(e.name_len, PN_NAME_MAX);
		seen++;
	}
	cr_assert_eq(err, PN_EAGAIN);
	cr_assert_eq(seen, PN_HIT_RESULTS_MAX);
	cr_assert_eq(gdecode(body, len - 1, &m), PN_EPROTO);

	/* One over: 33 full results do not fit the type; 33 short ones break the count. */
	len = build_hit(body, sizeof(body), PN_HIT_RESULTS_MAX + 1, PN_HIT_RESULTS_MAX + 1);
	cr_assert_eq(gdecode(body, len, &m), PN_ETOOBIG);
	size_t hdr = 1 + PN_QID_BYTES + PN_ID_BYTES + 1 + PN_DIR_ADDR_MAX + 2;
	struct pn_writer w;
	pn_wr_init(&w, body + hdr, sizeof(body) - hdr);
	for (int i = 0; i <= PN_HIT_RESULTS_MAX; i++) {
		struct pn_list_entry se = { .cid = mkcid(1), .name_len = 1, .name = "s" };
		pn_list_entry_encode(&w, &se);
	}
	cr_assert_eq(w.err, 0);
	cr_assert_eq(gdecode(body, hdr + w.len, &m), PN_EPROTO);
	uint8_t node[PN_ID_BYTES] = { 0 };
	struct pn_msg over = { .type = PN_MSG_QUERY_HIT,
			       .u.query_hit = { .node_id = node, .addr_len = 1, .addr = "x",
						.count = PN_HIT_RESULTS_MAX + 1, .entries = body + hdr,
						.entries_len = w.len } };
	encode_rejects(&over);
	over.u.query_hit.count = PN_HIT_RESULTS_MAX;
	over.u.query_hit.entries_len = w.len - (PN_CID_BYTES + 2 + 1);
	check_round_trip(&over);
}

/* ================= properties ================= */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* A random valid content ID, biased to small and edge sizes. */
static struct pn_cid rand_cid(void)
{
	static const uint64_t edges[] = { 0, 1, PN_CHUNK_SIZE - 1, PN_CHUNK_SIZE, PN_CHUNK_SIZE + 1,
					  PN_MAX_FILE_SIZE - 1, PN_MAX_FILE_SIZE };
	struct pn_cid c;

	for (int i = 0; i < PN_HASH_BYTES; i++)
		c.root[i] = (uint8_t)rng();
	if (rng() % 2)
		c.size = edges[rng() % (sizeof(edges) / sizeof(edges[0]))];
	else
		c.size = rng() % (PN_MAX_FILE_SIZE + 1);
	return c;
}

/* n random printable ASCII bytes (0x21..0x7e). */
static void rand_addr(char *out, size_t n)
{
	for (size_t i = 0; i < n; i++)
		out[i] = (char)(0x21 + rng() % (0x7e - 0x21 + 1));
}

/* Random valid messages of every flooding type survive encode then decode,
 * and the decoded message encodes to the same bytes again. */
Test(property, random_round_trips)
{
	static uint8_t ids[PN_PEERS_MAX + PN_ID_BYTES], entries[PN_FRAME_MAX], first[FRAME_CAP];
	static const uint8_t types[] = { PN_MSG_PEERS_REQ, PN_MSG_PEERS, PN_MSG_QUERY, PN_MSG_QUERY_HIT };
	static const char text[] = "report pdf caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac a/b.txt and more words";
	char addr[PN_DIR_ADDR_MAX];
	uint8_t cidbuf[PN_CID_BYTES];

	for (size_t i = 0; i < sizeof(ids); i++)
		ids[i] = (uint8_t)rng();
	for (int iter = 0; iter < 3000; iter++) {
		struct pn_msg m;
		struct pn_writer w;
		memset(&m, 0, sizeof(m));
		m.type = types[rng() % sizeof(types)];
		switch (m.type) {
		case PN_MSG_PEERS_REQ:
			break;
		case PN_MSG_PEERS: {
			uint8_t count = (uint8_t)(rng() % (PN_PEERS_MAX + 1));
			pn_wr_init(&w, entries, sizeof(entries));
			for (uint8_t k = 0; k < count; k++) {
				uint8_t al = (uint8_t)(1 + rng() % PN_DIR_ADDR_MAX);
				rand_addr(addr, al);
				struct pn_dir_provider_entry e = { ids + k, al, addr };
				pn_dir_provider_encode(&w, &e);
			}
			cr_assert_eq(w.err, 0);
			m.u.peers = (struct pn_msg_peers){ count, count ? entries : NULL, w.len };
			break;
		}
		case PN_MSG_QUERY:
			for (int k = 0; k < PN_QID_BYTES; k++)
				m.u.query.qid[k] = (uint8_t)rng();
			m.u.query.ttl = (uint8_t)rng();
			m.u.query.hops = (uint8_t)rng();
			if (rng() % 2) {
				/* a prefix of `text` that ends on a character boundary: ASCII ends are enough */
				static const uint16_t cuts[] = { 1, 6, 10, 11, 16, 23, 31, 36 };
				m.u.query.kind = 1;
				m.u.query.len = cuts[rng() % (sizeof(cuts) / sizeof(cuts[0]))];
				m.u.query.data = (const uint8_t *)text;
			} else {
				struct pn_cid c = rand_cid();
				pn_wr_init(&w, cidbuf, sizeof(cidbuf));
				pn_cid_write(&w, &c);
				m.u.query.kind = 2;
				m.u.query.len = PN_CID_BYTES;
				m.u.query.data = cidbuf;
			}
			break;
		case PN_MSG_QUERY_HIT: {
			uint16_t count = (uint16_t)(1 + rng() % PN_HIT_RESULTS_MAX);
			for (int k = 0; k < PN_QID_BYTES; k++)
				m.u.query_hit.qid[k] = (uint8_t)rng();
			m.u.query_hit.node_id = ids + rng() % PN_PEERS_MAX;
			m.u.query_hit.addr_len = (uint8_t)(1 + rng() % PN_DIR_ADDR_MAX);
			rand_addr(addr, m.u.query_hit.addr_len);
			m.u.query_hit.addr = addr;
			pn_wr_init(&w, entries, sizeof(entries));
			for (uint16_t k = 0; k < count; k++) {
				struct pn_list_entry e = { rand_cid(), (uint16_t)(1 + rng() % 10), "abcdefghij" };
				pn_list_entry_encode(&w, &e);
			}
			cr_assert_eq(w.err, 0);
			m.u.query_hit.count = count;
			m.u.query_hit.entries = entries;
			m.u.query_hit.entries_len = w.len;
			break;
		}
		}
		size_t flen = encode_ok(&m);
		memcpy(first, frame_buf, flen);
		struct pn_msg got;
		size_t body_len;
		cr_assert_eq(pn_frame_check(first, flen, PN_FRAME_MAX, &body_len), PN_OK);
		cr_assert_eq(body_len, flen - PN_FRAME_HDR);
		cr_assert_leq(body_len, pn_msg_max_body(m.type));
		cr_assert_eq(pn_msg_decode(first + PN_FRAME_HDR, body_len, &got), PN_OK,
			     "iteration %d type 0x%02x", iter, m.type);
		cr_assert(msg_eq(&m, &got), "iteration %d type 0x%02x", iter, m.type);
		cr_assert_eq(encode_ok(&got), flen);
		cr_assert_arr_eq(frame_buf, first, flen);
	}
}

/* Flipping any single byte of a valid body either still decodes (to a valid
 * message that encodes back to the flipped bytes) or fails cleanly. */
Test(property, single_byte_flips)
{
	static const char *const vectors[] = {
		"60", PEERS_HEX, "61 00", QUERY_KW_HEX, QUERY_CID_HEX, HIT_HEX,
	};
	uint8_t body[HEX_CAP];
	static const uint8_t flips[] = { 0x01, 0x20, 0x80, 0xff };

	for (size_t v = 0; v < sizeof(vectors) / sizeof(vectors[0]); v++) {
		size_t len = unhex(vectors[v], body, sizeof(body));
		for (size_t pos = 0; pos < len; pos++) {
			for (size_t f = 0; f < sizeof(flips); f++) {
				struct pn_msg m;
				body[pos] ^= flips[f];
				int err = gdecode(body, len, &m);
				if (err == PN_OK) {
					size_t flen = encode_ok(&m);
					cr_assert_eq(flen, PN_FRAME_HDR + len);
					cr_assert_arr_eq(frame_buf + PN_FRAME_HDR, body, len);
				} else {
					cr_assert(err == PN_EPROTO || err == PN_ETOOBIG);
				}
				body[pos] ^= flips[f];
			}
		}
	}
}
