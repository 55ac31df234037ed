/* Unit tests for src/wire: the swarm messages between peer nodes (0x40-0x45)
 * and the directory messages (0x50-0x58). test_wire.c has the client-server
 * messages; the helpers below follow it.
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
#define PROVIDER_ENTRY_MAX (PN_ID_BYTES + 1 + PN_DIR_ADDR_MAX)
#define RESULT_ENTRY_MAX (PN_CID_BYTES + 4 + 2 + PN_NAME_MAX)

#define CID10_HEX ROOT_HEX "000000000027fffd" /* 10 chunks */
#define SIZE10 (10ull * PN_CHUNK_SIZE - 3)
#define CIDMAX_HEX ROOT_HEX "0000001000000000" /* 262144 chunks */
#define CIDBIG_HEX ROOT_HEX "0000001000000001" /* one byte too large */
#define CID0_HEX ROOT_HEX "0000000000000000"   /* empty file: one chunk */

/* Field-by-field equality of the new types, following pointers. */
static bool msg_eq(const struct pn_msg *a, const struct pn_msg *b)
{
	if (a->type != b->type)
		return false;
	switch (a->type) {
	case PN_MSG_INTERESTED:
	case PN_MSG_NOT_INTERESTED:
	case PN_MSG_HAVE:
		return cid_eq(&a->u.cidref.cid, &b->u.cidref.cid) && a->u.cidref.index == b->u.cidref.index;
	case PN_MSG_BITFIELD:
		return cid_eq(&a->u.bitfield.cid, &b->u.bitfield.cid) &&
		       a->u.bitfield.nchunks == b->u.bitfield.nchunks &&
		       bytes_eq(a->u.bitfield.bitmap, b->u.bitfield.bitmap, (a->u.bitfield.nchunks + 7) / 8);
	case PN_MSG_CHOKE:
	case PN_MSG_UNCHOKE:
		return true;
	case PN_MSG_DIR_REGISTER:
		return a->u.dir_register.req_id == b->u.dir_register.req_id &&
		       a->u.dir_register.listen_port == b->u.dir_register.listen_port &&
		       a->u.dir_register.host_len == b->u.dir_register.host_len &&
		       bytes_eq(a->u.dir_register.host, b->u.dir_register.host, a->u.dir_register.host_len);
	case PN_MSG_DIR_OK:
		return a->u.dir_ok.req_id == b->u.dir_ok.req_id &&
		       a->u.dir_ok.heartbeat_ms == b->u.dir_ok.heartbeat_ms;
	case PN_MSG_DIR_OFFER:
		return a->u.dir_offer.req_id == b->u.dir_offer.req_id &&
		       a->u.dir_offer.count == b->u.dir_offer.count &&
		       a->u.dir_offer.entries_len == b->u.dir_offer.entries_len &&
		       bytes_eq(a->u.dir_offer.entries, b->u.dir_offer.entries, a->u.dir_offer.entries_len);
	case PN_MSG_DIR_WITHDRAW:
	case PN_MSG_DIR_FIND:
	case PN_MSG_DIR_BYE:
		return a->u.dir_ref.req_id == b->u.dir_ref.req_id && cid_eq(&a->u.dir_ref.cid, &b->u.dir_ref.cid);
	case PN_MSG_DIR_PROVIDERS:
		return a->u.dir_providers.req_id == b->u.dir_providers.req_id &&
		       cid_eq(&a->u.dir_providers.cid, &b->u.dir_providers.cid) &&
		       a->u.dir_providers.total == b->u.dir_providers.total &&
		       a->u.dir_providers.count == b->u.dir_providers.count &&
		       a->u.dir_providers.entries_len == b->u.dir_providers.entries_len &&
		       bytes_eq(a->u.dir_providers.entries, b->u.dir_providers.entries,
				a->u.dir_providers.entries_len);
	case PN_MSG_DIR_SEARCH:
		return a->u.dir_search.req_id == b->u.dir_search.req_id &&
		       a->u.dir_search.query_len == b->u.dir_search.query_len &&
		       bytes_eq(a->u.dir_search.query, b->u.dir_search.query, a->u.dir_search.query_len);
	case PN_MSG_DIR_RESULTS:
		return a->u.dir_results.req_id == b->u.dir_results.req_id &&
		       a->u.dir_results.count == b->u.dir_results.count &&
		       a->u.dir_results.entries_len == b->u.dir_results.entries_len &&
		       bytes_eq(a->u.dir_results.entries, b->u.dir_results.entries, a->u.dir_results.entries_len);
	default:
		return false;
	}
}

/* ================= limits ================= */

Test(limits, max_bodies)
{
	static const struct { uint8_t type; size_t max; } want[] = {
		{ PN_MSG_INTERESTED, 41 }, { PN_MSG_NOT_INTERESTED, 41 },
		{ PN_MSG_BITFIELD, 45 + 262144 / 8 }, { PN_MSG_HAVE, 45 },
		{ PN_MSG_CHOKE, 1 }, { PN_MSG_UNCHOKE, 1 },
		{ PN_MSG_DIR_REGISTER, 8 + 63 }, { PN_MSG_DIR_OK, 9 },
		{ PN_MSG_DIR_OFFER, 7 + 256 * (40 + 2 + 255) }, { PN_MSG_DIR_WITHDRAW, 45 },
		{ PN_MSG_DIR_FIND, 45 }, { PN_MSG_DIR_PROVIDERS, 51 + 100 * (32 + 1 + 63) },
		{ PN_MSG_DIR_SEARCH, 7 + 255 }, { PN_MSG_DIR_RESULTS, 7 + 100 * (40 + 4 + 2 + 255) },
		{ PN_MSG_DIR_BYE, 5 },
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
	static const uint8_t unknown[] = { 0x46, 0x4f, 0x59, 0x5f, 0x6f };
	for (size_t i = 0; i < sizeof(unknown); i++) {
		struct pn_msg m;
		cr_assert_eq(pn_msg_max_body(unknown[i]), 0);
		cr_assert_eq(gdecode(unknown + i, 1, &m), PN_EPROTO);
		m.type = unknown[i];
		encode_rejects(&m);
	}
}

/* ================= INTERESTED / NOT_INTERESTED ================= */

Test(interested, vectors)
{
	uint8_t body[HEX_CAP];
	struct pn_msg m = { .type = PN_MSG_INTERESTED, .u.cidref = { .cid = mkcid(SIZE2) } };

	check_all("40 " CID2_HEX, &m, body);
	m.type = PN_MSG_NOT_INTERESTED;
	check_all("41 " CID2_HEX, &m, body);
}

Test(interested, fields_out_of_range)
{
	struct pn_msg m;

	decode_fails("40 " CIDBIG_HEX, PN_EPROTO);
	decode_fails("41 " ROOT_HEX "ffffffffffffffff", PN_EPROTO);
	decode_fails("40 " CID2_HEX " 00000000", PN_ETOOBIG); /* no index on the wire */
	decode_ok("41 " CIDMAX_HEX, &m);
	cr_assert_eq(m.u.cidref.cid.size, PN_MAX_FILE_SIZE);
	cr_assert_eq(m.u.cidref.index, 0);

	struct pn_msg bad = { .type = PN_MSG_INTERESTED, .u.cidref = { .cid = mkcid(PN_MAX_FILE_SIZE + 1) } };
	encode_rejects(&bad);
	bad.u.cidref.cid.size = SIZE2;
	bad.u.cidref.index = 1; /* not on the wire: would not survive */
	encode_rejects(&bad);
	bad.type = PN_MSG_NOT_INTERESTED;
	encode_rejects(&bad);
	bad.u.cidref.index = 0;
	check_round_trip(&bad);
}

/* ================= HAVE ================= */

Test(have, vector)
{
	uint8_t body[HEX_CAP];
	struct pn_msg m = { .type = PN_MSG_HAVE, .u.cidref = { .cid = mkcid(SIZE2), .index = 1 } };

	check_all("43 " CID2_HEX " 00000001", &m, body);
}

Test(have, index_range)
{
	struct pn_msg m;

	decode_fails("43 " CID2_HEX " 00000002", PN_EPROTO); /* 2 chunks: index 2 */
	decode_fails("43 " CID2_HEX " ffffffff", PN_EPROTO);
	decode_ok("43 " CID2_HEX " 00000000", &m);
	decode_ok("43 " CID0_HEX " 00000000", &m); /* empty file: one chunk */
	decode_fails("43 " CID0_HEX " 00000001", PN_EPROTO);
	decode_ok("43 " CIDMAX_HEX " 0003ffff", &m);
	cr_assert_eq(m.u.cidref.index, PN_MAX_CHUNKS - 1);
	decode_fails("43 " CIDMAX_HEX " 00040000", PN_EPROTO);
	decode_fails("43 " CIDBIG_HEX " 00000000", PN_EPROTO);

	struct pn_msg bad = { .type = PN_MSG_HAVE, .u.cidref = { .cid = mkcid(SIZE2), .index = 2 } };
	encode_rejects(&bad);
	bad.u.cidref.index = UINT32_MAX;
	encode_rejects(&bad);
	bad.u.cidref.index = 1;
	bad.u.cidref.cid.size = PN_MAX_FILE_SIZE + 1;
	encode_rejects(&bad);
	bad.u.cidref.cid.size = PN_MAX_FILE_SIZE;
	bad.u.cidref.index = PN_MAX_CHUNKS - 1;
	check_round_trip(&bad);
}

/* ================= BITFIELD ================= */

Test(bitfield, vector)
{
	uint8_t body[HEX_CAP];
	static const uint8_t bitmap[] = { 0xa5, 0x40 };
	struct pn_msg m = { .type = PN_MSG_BITFIELD,
			    .u.bitfield = { .cid = mkcid(SIZE10), .nchunks = 10, .bitmap = bitmap } };

	check_all("42 " CID10_HEX " 0000000a a540", &m, body);
	/* All zeros: the sender holds nothing of it. */
	static const uint8_t none[] = { 0x00, 0x00 };
	m.u.bitfield.bitmap = none;
	check_all("42 " CID10_HEX " 0000000a 0000", &m, body);
}

Test(bitfield, fields_out_of_range)
{
	struct pn_msg m;

	decode_fails("42 " CID10_HEX " 00000009 ff80", PN_EPROTO); /* nchunks != 10 */
	decode_fails("42 " CID10_HEX " 0000000b ffe0", PN_EPROTO);
	decode_fails("42 " CID10_HEX " 00000000", PN_EPROTO);
	decode_fails("42 " CID10_HEX " 0000000a ffe0", PN_EPROTO); /* unused bit set */
	decode_fails("42 " CID10_HEX " 0000000a ffc1", PN_EPROTO);
	decode_fails("42 " CID10_HEX " 0000000a ff", PN_EPROTO);   /* bitmap short */
	decode_fails("42 " CID10_HEX " 0000000a ffc000", PN_EPROTO);
	decode_fails("42 " CID10_HEX " ffffffff ffc0", PN_EPROTO);
	decode_fails("42 " CID10_HEX " 00040001 ffc0", PN_EPROTO);
	decode_fails("42 " CIDBIG_HEX " 00000001 80", PN_EPROTO);
	decode_ok("42 " CID10_HEX " 0000000a ffc0", &m);
	cr_assert_eq(m.u.bitfield.nchunks, 10);
	cr_assert_eq(m.u.bitfield.bitmap[0], 0xff);
	decode_ok("42 " ROOT_HEX "0000000000200000 00000008 ff", &m); /* 8 chunks: every bit used */
	decode_ok("42 " CID0_HEX " 00000001 80", &m);                 /* empty file: one chunk */
	decode_ok("42 " CID0_HEX " 00000001 00", &m);
	decode_fails("42 " CID0_HEX " 00000001 c0", PN_EPROTO);
	decode_fails("42 " CID0_HEX " 00000000", PN_EPROTO);

	static const uint8_t bitmap[] = { 0xff, 0xc0 }, bad_bitmap[] = { 0xff, 0xe0 };
	struct pn_msg bad = { .type = PN_MSG_BITFIELD,
			      .u.bitfield = { .cid = mkcid(SIZE10), .nchunks = 9, .bitmap = bitmap } };
	encode_rejects(&bad);
	bad.u.bitfield.nchunks = 10;
	bad.u.bitfield.bitmap = NULL;
	encode_rejects(&bad);
	bad.u.bitfield.bitmap = bad_bitmap;
	encode_rejects(&bad);
	bad.u.bitfield.bitmap = bitmap;
	bad.u.bitfield.cid.size = PN_MAX_FILE_SIZE + 1;
	encode_rejects(&bad);
	bad.u.bitfield.cid.size = SIZE10;
	check_round_trip(&bad);
}

Test(bitfield, largest)
{
	static uint8_t body[PN_FRAME_MAX];
	struct pn_writer w;
	struct pn_msg m;
	struct pn_cid c = mkcid(PN_MAX_FILE_SIZE);

	pn_wr_init(&w, body, sizeof(body));
	pn_wr_u8(&w, PN_MSG_BITFIELD);
	pn_cid_write(&w, &c);
	pn_wr_u32(&w, PN_MAX_CHUNKS);
	for (uint32_t i = 0; i < PN_MAX_CHUNKS / 8; i++)
		pn_wr_u8(&w, (uint8_t)(i * 7));
	cr_assert_eq(w.len, pn_msg_max_body(PN_MSG_BITFIELD));
	cr_assert_eq(gdecode(body, w.len, &m), PN_OK);
	cr_assert_eq(m.u.bitfield.nchunks, PN_MAX_CHUNKS);
	check_round_trip(&m);
	cr_assert_eq(gdecode(body, w.len - 1, &m), PN_EPROTO);
	pn_wr_u8(&w, 0);
	cr_assert_eq(gdecode(body, w.len, &m), PN_ETOOBIG);
}

/* ================= CHOKE / UNCHOKE ================= */

Test(choke, vectors)
{
	uint8_t body[HEX_CAP];
	struct pn_msg m = { .type = PN_MSG_CHOKE };

	check_all("44", &m, body);
	m.type = PN_MSG_UNCHOKE;
	check_all("45", &m, body);
	decode_fails("44 00", PN_ETOOBIG);
	decode_fails("45 ffffffff", PN_ETOOBIG);
	/* The frame is 5 bytes: length 1, then the type. */
	cr_assert_eq(encode_ok(&m), PN_FRAME_HDR + 1);
	cr_assert_eq(pn_get_u32(frame_buf), 1);
	cr_assert_eq(frame_buf[PN_FRAME_HDR], PN_MSG_UNCHOKE);
}

/* ================= DIR_REGISTER ================= */

Test(dir_register, vectors)
{
	uint8_t body[HEX_CAP];
	struct pn_msg m = { .type = PN_MSG_DIR_REGISTER,
			    .u.dir_register = { .req_id = 1, .listen_port = 7070, .host_len = 0, .host = NULL } };

	check_all("50 00000001 1b9e 00", &m, body);
	m.u.dir_register = (struct pn_msg_dir_register){ 2, 7071, 8, "10.0.0.1" };
	check_all("50 00000002 1b9f 08 31302e302e302e31", &m, body);
	m.u.dir_register = (struct pn_msg_dir_register){ 3, 65535, 3, "[::" };
	check_all("50 00000003 ffff 03 5b3a3a", &m, body);
}

Test(dir_register, fields_out_of_range)
{
	static uint8_t body[HEX_CAP];
	char host[PN_DIR_ADDR_MAX + 1];
	struct pn_msg m;

	decode_fails("50 00000001 0000 00", PN_EPROTO);                 /* port 0 */
	decode_fails("50 00000001 0000 03 612e62", PN_EPROTO);
	decode_fails("50 00000001 1b9e 03 61 20 62", PN_EPROTO);        /* space */
	decode_fails("50 00000001 1b9e 01 7f", PN_EPROTO);
	decode_fails("50 00000001 1b9e 01 00", PN_EPROTO);
	decode_fails("50 00000001 1b9e 01 80", PN_EPROTO);
	decode_fails("50 00000001 1b9e 02 c3a9", PN_EPROTO);           /* not ASCII */
	decode_fails("50 00000001 1b9e 01 0a", PN_EPROTO);
	decode_fails("50 00000001 1b9e 04 612e62", PN_EPROTO);          /* host_len too long */
	decode_fails("50 00000001 1b9e 02 612e62", PN_EPROTO);          /* too short: trailing */
	decode_fails("50 00000001 1b9e ff 612e62", PN_EPROTO);
	decode_ok("50 00000000 0001 01 21", &m);
	decode_ok("50 ffffffff ffff 01 7e", &m);
	cr_assert_eq(m.u.dir_register.listen_port, 65535);

	/* 63 bytes of host is the limit; 64 is too big for the type. */
	memset(host, 'h', sizeof(host));
	size_t n = unhex("50 00000001 1b9e 3f", body, sizeof(body));
	memcpy(body + n, host, PN_DIR_ADDR_MAX);
	cr_assert_eq(gdecode(body, n + PN_DIR_ADDR_MAX, &m), PN_OK);
	cr_assert_eq(m.u.dir_register.host_len, PN_DIR_ADDR_MAX);
	check_round_trip(&m);
	n = unhex("50 00000001 1b9e 40", body, sizeof(body));
	memcpy(body + n, host, PN_DIR_ADDR_MAX + 1);
	cr_assert_eq(gdecode(body, n + PN_DIR_ADDR_MAX + 1, &m), PN_ETOOBIG);

	struct pn_msg bad = { .type = PN_MSG_DIR_REGISTER,
			      .u.dir_register = { .req_id = 1, .listen_port = 0, .host_len = 0 } };
	encode_rejects(&bad);
	bad.u.dir_register.listen_port = 1;
	bad.u.dir_register.host_len = 1; /* NULL host */
	encode_rejects(&bad);
	bad.u.dir_register.host = host;
	bad.u.dir_register.host_len = PN_DIR_ADDR_MAX + 1;
	encode_rejects(&bad);
	bad.u.dir_register.host = "a b";
	bad.u.dir_register.host_len = 3;
	encode_rejects(&bad);
	bad.u.dir_register.host = "a\x7f";
	bad.u.dir_register.host_len = 2;
	encode_rejects(&bad);
	bad.u.dir_register.host = "ab";
	check_round_trip(&bad);
}

Test(dir_register, addr_text_valid)
{
	char s[PN_DIR_ADDR_MAX + 1];

	for (int b = 0; b < 256; b++) {
		char c = (char)b;
		bool ok = b >= 0x21 && b <= 0x7e;
		cr_assert_eq(pn_addr_text_valid(&c, 1, false), ok, "byte 0x%02x", b);
		cr_assert_eq(pn_addr_text_valid(&c, 1, true), ok, "byte 0x%02x", b);
	}
	cr_assert(pn_addr_text_valid(NULL, 0, true));
	cr_assert(pn_addr_text_valid("", 0, true));
	cr_assert_not(pn_addr_text_valid("", 0, false));
	cr_assert_not(pn_addr_text_valid(NULL, 0, false));
	cr_assert_not(pn_addr_text_valid(NULL, 1, true));
	memset(s, '9', sizeof(s));
	cr_assert(pn_addr_text_valid(s, PN_DIR_ADDR_MAX, false));
	cr_assert_not(pn_addr_text_valid(s, PN_DIR_ADDR_MAX + 1, false));
	cr_assert_not(pn_addr_text_valid(s, PN_DIR_ADDR_MAX + 1, true));
	cr_assert(pn_addr_text_valid("[2001:db8::1]:7070", 18, false));
	cr_assert_not(pn_addr_text_valid("host name:1", 11, false));
}

/* ================= DIR_OK ================= */

Test(dir_ok, vector)
{
	uint8_t body[HEX_CAP];
	struct pn_msg m = { .type = PN_MSG_DIR_OK, .u.dir_ok = { .req_id = 1, .heartbeat_ms = 10000 } };
	struct pn_msg got;

	check_all("51 00000001 00002710", &m, body);
	decode_ok("51 00000000 00000000", &got);
	decode_ok("51 ffffffff ffffffff", &got);
	cr_assert_eq(got.u.dir_ok.heartbeat_ms, UINT32_MAX);
	check_round_trip(&got);
}

/* ================= DIR_OFFER ================= */

#define ENTRY1_HEX CID2_HEX " 0001 61"                     /* "a" */
#define ENTRY2_HEX CID0_HEX " 0007 622e747874c3a9"         /* "b.txt\u00e9" */

Test(dir_offer, vector_and_entries)
{
	uint8_t body[HEX_CAP], entries[HEX_CAP];
	size_t entries_len = unhex(ENTRY1_HEX " " ENTRY2_HEX, entries, sizeof(entries));
	struct pn_msg m = { .type = PN_MSG_DIR_OFFER,
			    .u.dir_offer = { .req_id = 3, .count = 2, .entries = entries, .entries_len = entries_len } };
	size_t len = check_all("52 00000003 0002 " CID2_HEX " 0001 61 " CID0_HEX " 0007 622e747874c3a9", &m, body);

	struct pn_msg got;
	struct pn_list_entry e;
	struct pn_cid c2 = mkcid(SIZE2), c0 = mkcid(0);
	size_t off = 0;
	cr_assert_eq(gdecode(body, len, &got), PN_OK);
	cr_assert_eq(pn_dir_offer_next(&got.u.dir_offer, &off, &e), PN_OK);
	cr_assert(cid_eq(&e.cid, &c2));
	cr_assert_eq(e.name_len, 1);
	cr_assert_eq(e.name[0], 'a');
	cr_assert_eq(pn_dir_offer_next(&got.u.dir_offer, &off, &e), PN_OK);
	cr_assert(cid_eq(&e.cid, &c0));
	cr_assert_eq(e.name_len, 7);
	cr_assert_eq(memcmp(e.name, "b.txt\xc3\xa9", 7), 0);
	cr_assert_eq(pn_dir_offer_next(&got.u.dir_offer, &off, &e), PN_EAGAIN);
	cr_assert_eq(off, got.u.dir_offer.entries_len);
	off = got.u.dir_offer.entries_len + 1;
	cr_assert_eq(pn_dir_offer_next(&got.u.dir_offer, &off, &e), PN_EPROTO);

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
}

Test(dir_offer, count_and_entries_must_agree)
{
	struct pn_msg m;

	decode_ok("52 00000003 0001 " ENTRY1_HEX, &m);
	cr_assert_eq(m.u.dir_offer.count, 1);
	decode_fails("52 00000003 0000", PN_EPROTO);                /* count 0 */
	decode_fails("52 00000003 0000 " ENTRY1_HEX, PN_EPROTO);
	decode_fails("52 00000003 0001", PN_EPROTO);                /* no entries */
	decode_fails("52 00000003 0002 " ENTRY1_HEX, PN_EPROTO);
	decode_fails("52 00000003 0001 " ENTRY1_HEX " " ENTRY1_HEX, PN_EPROTO);
	decode_fails("52 00000003 0001 " ENTRY1_HEX " 00", PN_EPROTO);
	decode_fails("52 00000003 0101 " ENTRY1_HEX, PN_EPROTO);    /* 257 */
	decode_fails("52 00000003 ffff " ENTRY1_HEX, PN_EPROTO);
	decode_fails("52 00000003 0001 " CID2_HEX " 0001 2f", PN_EPROTO);   /* "/" */
	decode_fails("52 00000003 0001 " CID2_HEX " 0002 2e2e", PN_EPROTO); /* ".." */
	decode_fails("52 00000003 0001 " CID2_HEX " 0000", PN_EPROTO);      /* empty name */
	decode_fails("52 00000003 0001 " CID2_HEX " 0002 61", PN_EPROTO);
	decode_fails("52 00000003 0001 " CID2_HEX " 0001 c3", PN_EPROTO);   /* bad UTF-8 */
	decode_fails("52 00000003 0001 " CIDBIG_HEX " 0001 61", PN_EPROTO);
	decode_fails("52 00000003 0002 " ENTRY1_HEX " " CID2_HEX " 0001 0a", PN_EPROTO);

	uint8_t entries[HEX_CAP];
	size_t elen = unhex(ENTRY1_HEX, entries, sizeof(entries));
	struct pn_msg bad = { .type = PN_MSG_DIR_OFFER,
			      .u.dir_offer = { .req_id = 1, .count = 0, .entries = NULL, .entries_len = 0 } };
	encode_rejects(&bad);
	bad.u.dir_offer.count = 2;
	bad.u.dir_offer.entries = entries;
	bad.u.dir_offer.entries_len = elen;
	encode_rejects(&bad);
	bad.u.dir_offer.count = 1;
	bad.u.dir_offer.entries_len = elen - 1;
	encode_rejects(&bad);
	bad.u.dir_offer.entries_len = elen;
	bad.u.dir_offer.entries = NULL;
	encode_rejects(&bad);
	bad.u.dir_offer.entries = entries;
	check_round_trip(&bad);
	entries[elen - 1] = '\\';
	encode_rejects(&bad);
}

Test(dir_offer, full_batch)
{
	static uint8_t body[PN_FRAME_MAX];
	char name[PN_NAME_MAX];
	struct pn_writer w;
	struct pn_msg m;

	memset(name, 'o', sizeof(name));
	pn_wr_init(&w, body, sizeof(body));
	pn_wr_u8(&w, PN_MSG_DIR_OFFER);
	pn_wr_u32(&w, 1);
	pn_wr_u16(&w, PN_DIR_OFFER_MAX + 1);
	for (int i = 0; i <= PN_DIR_OFFER_MAX; i++) {
		struct pn_list_entry e = { .cid = mkcid((uint64_t)i * 1000), .name_len = PN_NAME_MAX, .name = name };
		pn_list_entry_encode(&w, &e);
	}
	cr_assert_eq(w.err, 0);
	cr_assert_eq(gdecode(body, w.len, &m), PN_ETOOBIG); /* 257 entries */
	body[1 + 4] = (uint8_t)(PN_DIR_OFFER_MAX >> 8);
	body[1 + 4 + 1] = (uint8_t)PN_DIR_OFFER_MAX;
	size_t len = w.len - LIST_ENTRY_MAX;
	cr_assert_eq(len, pn_msg_max_body(PN_MSG_DIR_OFFER));
	cr_assert_eq(gdecode(body, len, &m), PN_OK);
	cr_assert_eq(m.u.dir_offer.count, PN_DIR_OFFER_MAX);
	check_round_trip(&m);

	size_t off = 0, seen = 0;
	struct pn_list_entry e;
	int err;
	while ((err = pn_dir_offer_next(&m.u.dir_offer, &off, &e)) == PN_OK) {
		cr_assert_eq(e.cid.size, seen * 1000);
		cr_assert_eq(e.name_len, PN_NAME_MAX);
		seen++;
	}
	cr_assert_eq(err, PN_EAGAIN);
	cr_assert_eq(seen, PN_DIR_OFFER_MAX);
}

/* ================= DIR_WITHDRAW / DIR_FIND / DIR_BYE ================= */

Test(dir_ref, vectors)
{
	uint8_t body[HEX_CAP];
	struct pn_msg m = { .type = PN_MSG_DIR_WITHDRAW, .u.dir_ref = { .req_id = 4, .cid = mkcid(SIZE2) } };

	check_all("53 00000004 " CID2_HEX, &m, body);
	m.type = PN_MSG_DIR_FIND;
	m.u.dir_ref.req_id = 5;
	check_all("54 00000005 " CID2_HEX, &m, body);
	m = (struct pn_msg){ .type = PN_MSG_DIR_BYE, .u.dir_ref = { .req_id = 9 } };
	check_all("58 00000009", &m, body);
}

Test(dir_ref, fields_out_of_range)
{
	struct pn_msg m;

	decode_fails("53 00000004 " CIDBIG_HEX, PN_EPROTO);
	decode_fails("54 00000004 " ROOT_HEX "ffffffffffffffff", PN_EPROTO);
	decode_ok("54 00000000 " CIDMAX_HEX, &m);
	decode_ok("53 ffffffff " CID0_HEX, &m);
	decode_fails("58 00000009 " CID2_HEX, PN_ETOOBIG); /* BYE has no cid */
	decode_fails("58 00000009 00", PN_ETOOBIG);
	decode_ok("58 00000000", &m);
	cr_assert_eq(m.u.dir_ref.cid.size, 0);
	cr_assert_eq(m.u.dir_ref.cid.root[31], 0);

	struct pn_msg bad = { .type = PN_MSG_DIR_FIND, .u.dir_ref = { .req_id = 1, .cid = mkcid(PN_MAX_FILE_SIZE + 1) } };
	encode_rejects(&bad);
	bad.type = PN_MSG_DIR_WITHDRAW;
	encode_rejects(&bad);
	/* BYE: the cid is not on the wire, so it must be all zero. */
	bad.type = PN_MSG_DIR_BYE;
	bad.u.dir_ref.cid = mkcid(0); /* root 00 01 .. 1f */
	encode_rejects(&bad);
	memset(bad.u.dir_ref.cid.root, 0, PN_HASH_BYTES);
	bad.u.dir_ref.cid.size = 1;
	encode_rejects(&bad);
	bad.u.dir_ref.cid.size = 0;
	check_round_trip(&bad);
}

/* ================= DIR_PROVIDERS ================= */

#define NODE_A_HEX "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"
#define NODE_B_HEX "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2"
#define PROV1_HEX NODE_A_HEX " 0e 3132372e302e302e313a37303730" /* "127.0.0.1:7070" */
#define PROV2_HEX NODE_B_HEX " 0a 5b3a3a315d3a37303731"         /* "[::1]:7071" */
#define PROVIDERS_HEX "55 00000006 " CID2_HEX " 00000003 0002 " PROV1_HEX " " PROV2_HEX

Test(dir_providers, vector_and_entries)
{
	uint8_t body[HEX_CAP], entries[HEX_CAP], node_a[PN_ID_BYTES], node_b[PN_ID_BYTES];
	size_t entries_len = unhex(PROV1_HEX " " PROV2_HEX, entries, sizeof(entries));
	struct pn_msg m = { .type = PN_MSG_DIR_PROVIDERS,
			    .u.dir_providers = { .req_id = 6, .cid = mkcid(SIZE2), .total = 3, .count = 2,
						 .entries = entries, .entries_len = entries_len } };
	size_t len = check_all(PROVIDERS_HEX, &m, body);

	memset(node_a, 0xa1, sizeof(node_a));
	memset(node_b, 0xb2, sizeof(node_b));
	struct pn_msg got;
	struct pn_dir_provider_entry e;
	size_t off = 0;
	cr_assert_eq(gdecode(body, len, &got), PN_OK);
	cr_assert_eq(got.u.dir_providers.total, 3);
	cr_assert_eq(pn_dir_provider_next(&got.u.dir_providers, &off, &e), PN_OK);
	cr_assert_arr_eq(e.node_id, node_a, PN_ID_BYTES);
	cr_assert_eq(e.addr_len, 14);
	cr_assert_eq(memcmp(e.addr, "127.0.0.1:7070", 14), 0);
	cr_assert_eq(pn_dir_provider_next(&got.u.dir_providers, &off, &e), PN_OK);
	cr_assert_arr_eq(e.node_id, node_b, PN_ID_BYTES);
	cr_assert_eq(e.addr_len, 10);
	cr_assert_eq(memcmp(e.addr, "[::1]:7071", 10), 0);
	cr_assert_eq(pn_dir_provider_next(&got.u.dir_providers, &off, &e), PN_EAGAIN);
	cr_assert_eq(off, got.u.dir_providers.entries_len);
	off++;
	cr_assert_eq(pn_dir_provider_next(&got.u.dir_providers, &off, &e), PN_EPROTO);

	/* Building the same entries. */
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

	/* A bad entry writes nothing and marks the writer. */
	size_t before = w.len;
	e1.addr = "a b";
	e1.addr_len = 3;
	pn_dir_provider_encode(&w, &e1);
	cr_assert_eq(w.err, PN_EINVAL);
	cr_assert_eq(w.len, before);
	static const struct pn_dir_provider_entry bads[] = {
		{ .node_id = NULL, .addr_len = 3, .addr = "a:1" },
		{ .node_id = (const uint8_t *)"................................", .addr_len = 0, .addr = "" },
		{ .node_id = (const uint8_t *)"................................", .addr_len = 1, .addr = NULL },
		{ .node_id = (const uint8_t *)"................................", .addr_len = PN_DIR_ADDR_MAX + 1,
		  .addr = "0123456789012345678901234567890123456789012345678901234567890123" },
		{ .node_id = (const uint8_t *)"................................", .addr_len = 2, .addr = "\xc3\xa9" },
	};
	for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
		pn_wr_init(&w, out, sizeof(out));
		pn_dir_provider_encode(&w, &bads[i]);
		cr_assert_eq(w.err, PN_EINVAL, "bad entry %zu", i);
		cr_assert_eq(w.len, 0);
	}
}

Test(dir_providers, fields_out_of_range)
{
	struct pn_msg m;

	decode_ok("55 00000006 " CID2_HEX " 00000000 0000", &m); /* nobody has it */
	cr_assert_eq(m.u.dir_providers.count, 0);
	check_round_trip(&m);
	decode_ok("55 00000006 " CID2_HEX " ffffffff 0001 " PROV1_HEX, &m);
	cr_assert_eq(m.u.dir_providers.total, UINT32_MAX);
	decode_fails("55 00000006 " CID2_HEX " 00000001 0002 " PROV1_HEX " " PROV2_HEX, PN_EPROTO); /* count > total */
	decode_fails("55 00000006 " CID2_HEX " 00000000 0001 " PROV1_HEX, PN_EPROTO);
	decode_fails("55 00000006 " CID2_HEX " 00000200 0065 " PROV1_HEX, PN_EPROTO); /* 101 */
	decode_fails("55 00000006 " CID2_HEX " 00000003 0003 " PROV1_HEX " " PROV2_HEX, PN_EPROTO);
	decode_fails("55 00000006 " CID2_HEX " 00000003 0001 " PROV1_HEX " " PROV2_HEX, PN_EPROTO);
	decode_fails("55 00000006 " CID2_HEX " 00000003 0001 " PROV1_HEX " 00", PN_EPROTO);
	decode_fails("55 00000006 " CIDBIG_HEX " 00000003 0001 " PROV1_HEX, PN_EPROTO);
	decode_fails("55 00000006 " CID2_HEX " 00000003 0001 " NODE_A_HEX " 00", PN_EPROTO); /* empty addr */
	decode_fails("55 00000006 " CID2_HEX " 00000003 0001 " NODE_A_HEX " 03 61 20 62", PN_EPROTO);
	decode_fails("55 00000006 " CID2_HEX " 00000003 0001 " NODE_A_HEX " 01 7f", PN_EPROTO);
	decode_fails("55 00000006 " CID2_HEX " 00000003 0001 " NODE_A_HEX " 01 80", PN_EPROTO);
	decode_fails("55 00000006 " CID2_HEX " 00000003 0001 " NODE_A_HEX " 04 616263", PN_EPROTO);
	decode_fails("55 00000006 " CID2_HEX " 00000003 0001 " NODE_A_HEX, PN_EPROTO);
	decode_fails("55 00000006 " CID2_HEX " 00000003 0001 a1a1", PN_EPROTO); /* short node id */

	/* addr_len 64: one byte above the limit. */
	char hex[HEX_CAP];
	int n = snprintf(hex, sizeof(hex), "55 00000006 " CID2_HEX " 00000001 0001 " NODE_A_HEX " 40 ");
	for (int i = 0; i < PN_DIR_ADDR_MAX + 1; i++)
		n += snprintf(hex + n, sizeof(hex) - (size_t)n, "61");
	decode_fails(hex, PN_EPROTO);
	hex[strlen(hex) - 2] = 0;
	memcpy(strstr(hex, " 40 "), " 3f ", 4);
	decode_ok(hex, &m);
	check_round_trip(&m);

	uint8_t entries[HEX_CAP];
	size_t elen = unhex(PROV1_HEX, entries, sizeof(entries));
	struct pn_msg bad = { .type = PN_MSG_DIR_PROVIDERS,
			      .u.dir_providers = { .req_id = 1, .cid = mkcid(SIZE2), .total = 0, .count = 1,
						   .entries = entries, .entries_len = elen } };
	encode_rejects(&bad); /* count > total */
	bad.u.dir_providers.total = 1;
	bad.u.dir_providers.count = 2;
	encode_rejects(&bad);
	bad.u.dir_providers.count = 1;
	bad.u.dir_providers.entries_len = elen + 1;
	encode_rejects(&bad);
	bad.u.dir_providers.entries_len = elen;
	bad.u.dir_providers.entries = NULL;
	encode_rejects(&bad);
	bad.u.dir_providers.entries = entries;
	bad.u.dir_providers.cid.size = PN_MAX_FILE_SIZE + 1;
	encode_rejects(&bad);
	bad.u.dir_providers.cid.size = SIZE2;
	check_round_trip(&bad);
	entries[elen - 1] = ' ';
	encode_rejects(&bad);
}

Test(dir_providers, full_page)
{
	static uint8_t body[PN_FRAME_MAX];
	char addr[PN_DIR_ADDR_MAX];
	uint8_t node_id[PN_ID_BYTES];
	struct pn_writer w;
	struct pn_msg m;
	struct pn_cid c = mkcid(SIZE2);

	memset(addr, '7', sizeof(addr));
	pn_wr_init(&w, body, sizeof(body));
	pn_wr_u8(&w, PN_MSG_DIR_PROVIDERS);
	pn_wr_u32(&w, 1);
	pn_cid_write(&w, &c);
	pn_wr_u32(&w, 1000);
	pn_wr_u16(&w, PN_DIR_RESULTS_MAX + 1);
	for (int i = 0; i <= PN_DIR_RESULTS_MAX; i++) {
		memset(node_id, i, sizeof(node_id));
		struct pn_dir_provider_entry e = { .node_id = node_id, .addr_len = PN_DIR_ADDR_MAX, .addr = addr };
		pn_dir_provider_encode(&w, &e);
	}
	cr_assert_eq(w.err, 0);
	cr_assert_eq(gdecode(body, w.len, &m), PN_ETOOBIG); /* 101 entries */
	body[1 + 4 + PN_CID_BYTES + 4 + 1] = PN_DIR_RESULTS_MAX;
	size_t len = w.len - PROVIDER_ENTRY_MAX;
	cr_assert_eq(len, pn_msg_max_body(PN_MSG_DIR_PROVIDERS));
	cr_assert_eq(gdecode(body, len, &m), PN_OK);
	check_round_trip(&m);

	size_t off = 0, seen = 0;
	struct pn_dir_provider_entry e;
	int err;
	while ((err = pn_dir_provider_next(&m.u.dir_providers, &off, &e)) == PN_OK) {
		cr_assert_eq(e.node_id[0], seen);
		cr_assert_eq(e.addr_len, PN_DIR_ADDR_MAX);
		seen++;
	}
	cr_assert_eq(err, PN_EAGAIN);
	cr_assert_eq(seen, PN_DIR_RESULTS_MAX);
}

/* ================= DIR_SEARCH ================= */

Test(dir_search, vector)
{
	uint8_t body[HEX_CAP];
	struct pn_msg m = { .type = PN_MSG_DIR_SEARCH,
			    .u.dir_search = { .req_id = 7, .query_len = 10, .query = "report pdf" } };

	check_all("56 00000007 000a 7265706f727420706466", &m, body);
}

Test(dir_search, queries)
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
		snprintf(hex, sizeof(hex), "56 00000007 %04zx %s", qlen, good_hex[i]);
		decode_ok(hex, &m);
		cr_assert_eq(m.u.dir_search.query_len, qlen, "query %s", good_hex[i]);
		check_round_trip(&m);
	}
	for (size_t i = 0; i < sizeof(bad_hex) / sizeof(bad_hex[0]); i++) {
		size_t qlen = unhex(bad_hex[i], q, sizeof(q));
		snprintf(hex, sizeof(hex), "56 00000007 %04zx %s", qlen, bad_hex[i]);
		decode_fails(hex, PN_EPROTO);
		struct pn_msg bad = { .type = PN_MSG_DIR_SEARCH,
				      .u.dir_search = { .req_id = 1, .query_len = (uint16_t)qlen, .query = (const char *)q } };
		encode_rejects(&bad);
	}
	decode_fails("56 00000007 0000", PN_EPROTO);          /* empty */
	decode_fails("56 00000007 0002 61", PN_EPROTO);       /* query_len too long */
	decode_fails("56 00000007 0001 6161", PN_EPROTO);     /* too short: trailing */
	decode_fails("56 00000007 ffff 61", PN_EPROTO);

	/* 255 bytes is the limit; 256 is too big for the type. */
	static uint8_t body[HEX_CAP];
	char query[PN_DIR_QUERY_MAX + 1];
	memset(query, 'w', sizeof(query));
	size_t n = unhex("56 00000007 00ff", body, sizeof(body));
	memcpy(body + n, query, PN_DIR_QUERY_MAX);
	cr_assert_eq(gdecode(body, n + PN_DIR_QUERY_MAX, &m), PN_OK);
	check_round_trip(&m);
	n = unhex("56 00000007 0100", body, sizeof(body));
	memcpy(body + n, query, PN_DIR_QUERY_MAX + 1);
	cr_assert_eq(gdecode(body, n + PN_DIR_QUERY_MAX + 1, &m), PN_ETOOBIG);

	struct pn_msg bad = { .type = PN_MSG_DIR_SEARCH, .u.dir_search = { .req_id = 1, .query_len = 0, .query = "" } };
	encode_rejects(&bad);
	bad.u.dir_search.query_len = 1;
	bad.u.dir_search.query = NULL;
	encode_rejects(&bad);
	bad.u.dir_search.query = query;
	bad.u.dir_search.query_len = PN_DIR_QUERY_MAX + 1;
	encode_rejects(&bad);
}

/* ================= DIR_RESULTS ================= */

#define RESULT1_HEX CID2_HEX " 00000003 0001 61"                 /* "a", 3 providers */
#define RESULT2_HEX CID0_HEX " 00000001 0007 622e747874c3a9"     /* "b.txt\u00e9", 1 */
#define RESULTS_HEX "57 00000008 0002 " RESULT1_HEX " " RESULT2_HEX

Test(dir_results, vector_and_entries)
{
	uint8_t body[HEX_CAP], entries[HEX_CAP];
	size_t entries_len = unhex(RESULT1_HEX " " RESULT2_HEX, entries, sizeof(entries));
	struct pn_msg m = { .type = PN_MSG_DIR_RESULTS,
			    .u.dir_results = { .req_id = 8, .count = 2, .entries = entries, .entries_len = entries_len } };
	size_t len = check_all(RESULTS_HEX, &m, body);

	struct pn_msg got;
	struct pn_dir_result_entry e;
	struct pn_cid c2 = mkcid(SIZE2), c0 = mkcid(0);
	size_t off = 0;
	cr_assert_eq(gdecode(body, len, &got), PN_OK);
	cr_assert_eq(pn_dir_result_next(&got.u.dir_results, &off, &e), PN_OK);
	cr_assert(cid_eq(&e.cid, &c2));
	cr_assert_eq(e.providers, 3);
	cr_assert_eq(e.name_len, 1);
	cr_assert_eq(e.name[0], 'a');
	cr_assert_eq(pn_dir_result_next(&got.u.dir_results, &off, &e), PN_OK);
	cr_assert(cid_eq(&e.cid, &c0));
	cr_assert_eq(e.providers, 1);
	cr_assert_eq(memcmp(e.name, "b.txt\xc3\xa9", 7), 0);
	cr_assert_eq(pn_dir_result_next(&got.u.dir_results, &off, &e), PN_EAGAIN);
	cr_assert_eq(off, got.u.dir_results.entries_len);
	off++;
	cr_assert_eq(pn_dir_result_next(&got.u.dir_results, &off, &e), PN_EPROTO);

	uint8_t out[HEX_CAP];
	struct pn_writer w;
	struct pn_dir_result_entry e1 = { .cid = c2, .providers = 3, .name_len = 1, .name = "a" };
	struct pn_dir_result_entry e2 = { .cid = c0, .providers = 1, .name_len = 7, .name = "b.txt\xc3\xa9" };
	pn_wr_init(&w, out, sizeof(out));
	pn_dir_result_encode(&w, &e1);
	pn_dir_result_encode(&w, &e2);
	cr_assert_eq(w.err, 0);
	cr_assert_eq(w.len, entries_len);
	cr_assert_arr_eq(out, entries, entries_len);

	size_t before = w.len;
	e1.name = "..";
	e1.name_len = 2;
	pn_dir_result_encode(&w, &e1);
	cr_assert_eq(w.err, PN_EINVAL);
	cr_assert_eq(w.len, before);
	pn_wr_init(&w, out, sizeof(out));
	e1.name = "ok";
	e1.cid.size = PN_MAX_FILE_SIZE + 1;
	pn_dir_result_encode(&w, &e1);
	cr_assert_eq(w.err, PN_EINVAL);
	cr_assert_eq(w.len, 0);
}

Test(dir_results, fields_out_of_range)
{
	struct pn_msg m;

	decode_ok("57 00000008 0000", &m); /* nothing matched */
	cr_assert_eq(m.u.dir_results.count, 0);
	check_round_trip(&m);
	decode_ok("57 00000008 0001 " CID2_HEX " 00000000 0001 61", &m); /* providers: any value */
	decode_ok("57 00000008 0001 " CID2_HEX " ffffffff 0001 61", &m);
	decode_fails("57 00000008 0001", PN_EPROTO);
	decode_fails("57 00000008 0000 " RESULT1_HEX, PN_EPROTO);
	decode_fails("57 00000008 0003 " RESULT1_HEX " " RESULT2_HEX, PN_EPROTO);
	decode_fails("57 00000008 0001 " RESULT1_HEX " " RESULT2_HEX, PN_EPROTO);
	decode_fails("57 00000008 0001 " RESULT1_HEX " 00", PN_EPROTO);
	decode_fails("57 00000008 0065 " RESULT1_HEX, PN_EPROTO); /* 101 */
	decode_fails("57 00000008 0001 " CIDBIG_HEX " 00000001 0001 61", PN_EPROTO);
	decode_fails("57 00000008 0001 " CID2_HEX " 00000001 0001 2f", PN_EPROTO);
	decode_fails("57 00000008 0001 " CID2_HEX " 00000001 0001 2e", PN_EPROTO);
	decode_fails("57 00000008 0001 " CID2_HEX " 00000001 0000", PN_EPROTO);
	decode_fails("57 00000008 0001 " CID2_HEX " 00000001 0002 c280", PN_EPROTO);
	decode_fails("57 00000008 0001 " CID2_HEX " 00000001 0002 61", PN_EPROTO);
	decode_fails("57 00000008 0001 " CID2_HEX " 00000001", PN_EPROTO);

	uint8_t entries[HEX_CAP];
	size_t elen = unhex(RESULT1_HEX, entries, sizeof(entries));
	struct pn_msg bad = { .type = PN_MSG_DIR_RESULTS,
			      .u.dir_results = { .req_id = 1, .count = 2, .entries = entries, .entries_len = elen } };
	encode_rejects(&bad);
	bad.u.dir_results.count = 0;
	encode_rejects(&bad);
	bad.u.dir_results.count = PN_DIR_RESULTS_MAX + 1;
	encode_rejects(&bad);
	bad.u.dir_results.count = 1;
	bad.u.dir_results.entries = NULL;
	encode_rejects(&bad);
	bad.u.dir_results.entries = entries;
	check_round_trip(&bad);
	entries[elen - 1] = 0x7f;
	encode_rejects(&bad);
}

Test(dir_results, full_page)
{
	static uint8_t body[PN_FRAME_MAX];
	char name[PN_NAME_MAX];
	struct pn_writer w;
	struct pn_msg m;

	memset(name, 'r', sizeof(name));
	pn_wr_init(&w, body, sizeof(body));
	pn_wr_u8(&w, PN_MSG_DIR_RESULTS);
	pn_wr_u32(&w, 1);
	pn_wr_u16(&w, PN_DIR_RESULTS_MAX + 1);
	for (int i = 0; i <= PN_DIR_RESULTS_MAX; i++) {
		struct pn_dir_result_entry e = { .cid = mkcid((uint64_t)i), .providers = (uint32_t)i + 1,
						 .name_len = PN_NAME_MAX, .name = name };
		pn_dir_result_encode(&w, &e);
	}
	cr_assert_eq(w.err, 0);
	cr_assert_eq(gdecode(body, w.len, &m), PN_ETOOBIG);
	body[1 + 4 + 1] = PN_DIR_RESULTS_MAX;
	size_t len = w.len - RESULT_ENTRY_MAX;
	cr_assert_eq(len, pn_msg_max_body(PN_MSG_DIR_RESULTS));
	cr_assert_eq(gdecode(body, len, &m), PN_OK);
	check_round_trip(&m);

	size_t off = 0, seen = 0;
	struct pn_dir_result_entry e;
	int err;
	while ((err = pn_dir_result_next(&m.u.dir_results, &off, &e)) == PN_OK) {
		cr_assert_eq(e.cid.size, seen);
		cr_assert_eq(e.providers, seen + 1);
		seen++;
	}
	cr_assert_eq(err, PN_EAGAIN);
	cr_assert_eq(seen, PN_DIR_RESULTS_MAX);
}

/* ================= properties ================= */

static uint64_t rng_state = 0x2545f4914f6cdd1dull;

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
					  9 * PN_CHUNK_SIZE, PN_MAX_FILE_SIZE - 1, PN_MAX_FILE_SIZE };
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

/* Random valid messages of every new type survive encode then decode, and
 * the decoded message encodes to the same bytes again. */
Test(property, random_round_trips)
{
	static uint8_t payload[PN_FRAME_MAX], entries[PN_FRAME_MAX];
	static uint8_t first[FRAME_CAP];
	static const uint8_t types[] = {
		PN_MSG_INTERESTED, PN_MSG_NOT_INTERESTED, PN_MSG_BITFIELD, PN_MSG_HAVE, PN_MSG_CHOKE,
		PN_MSG_UNCHOKE, PN_MSG_DIR_REGISTER, PN_MSG_DIR_OK, PN_MSG_DIR_OFFER, PN_MSG_DIR_WITHDRAW,
		PN_MSG_DIR_FIND, PN_MSG_DIR_PROVIDERS, PN_MSG_DIR_SEARCH, PN_MSG_DIR_RESULTS, PN_MSG_DIR_BYE,
	};
	static const char names[] = "abcdefghijklmnopqrst uvwxyz.txt";
	char addr[PN_DIR_ADDR_MAX];

	for (int iter = 0; iter < 3000; iter++) {
		struct pn_msg m;
		struct pn_writer w;
		memset(&m, 0, sizeof(m));
		m.type = types[rng() % sizeof(types)];
		uint32_t req_id = (uint32_t)rng();
		struct pn_cid cid = rand_cid();
		uint32_t n = pn_cid_chunks(&cid);
		switch (m.type) {
		case PN_MSG_INTERESTED:
		case PN_MSG_NOT_INTERESTED:
			m.u.cidref = (struct pn_msg_cidref){ cid, 0 };
			break;
		case PN_MSG_HAVE:
			m.u.cidref = (struct pn_msg_cidref){ cid, (rng() % 2) ? n - 1 : (uint32_t)(rng() % n) };
			break;
		case PN_MSG_BITFIELD: {
			size_t nbytes = (n + 7) / 8;
			for (size_t k = 0; k < nbytes; k++)
				payload[k] = (uint8_t)rng();
			if (n % 8)
				payload[nbytes - 1] &= (uint8_t)(0xff << (8 - n % 8));
			m.u.bitfield = (struct pn_msg_bitfield){ cid, n, payload };
			break;
		}
		case PN_MSG_CHOKE:
		case PN_MSG_UNCHOKE:
			break;
		case PN_MSG_DIR_REGISTER: {
			uint8_t hl = (uint8_t)(rng() % (PN_DIR_ADDR_MAX + 1));
			rand_addr(addr, hl);
			m.u.dir_register = (struct pn_msg_dir_register){ req_id, (uint16_t)(1 + rng() % 65535), hl,
									 hl ? addr : NULL };
			break;
		}
		case PN_MSG_DIR_OK:
			m.u.dir_ok = (struct pn_msg_dir_ok){ req_id, (uint32_t)rng() };
			break;
		case PN_MSG_DIR_OFFER: {
			uint16_t count = (uint16_t)(1 + rng() % PN_DIR_OFFER_MAX);
			pn_wr_init(&w, entries, sizeof(entries));
			for (uint16_t k = 0; k < count; k++) {
				struct pn_list_entry e = { rand_cid(), (uint16_t)(1 + rng() % 30), names };
				pn_list_entry_encode(&w, &e);
			}
			cr_assert_eq(w.err, 0);
			m.u.dir_offer = (struct pn_msg_dir_offer){ req_id, count, entries, w.len };
			break;
		}
		case PN_MSG_DIR_WITHDRAW:
		case PN_MSG_DIR_FIND:
			m.u.dir_ref = (struct pn_msg_dir_ref){ req_id, cid };
			break;
		case PN_MSG_DIR_BYE:
			m.u.dir_ref.req_id = req_id;
			break;
		case PN_MSG_DIR_PROVIDERS: {
			uint16_t count = (uint16_t)(rng() % (PN_DIR_RESULTS_MAX + 1));
			uint32_t total = count + ((rng() % 2) ? 0 : (uint32_t)rng() % 100000);
			pn_wr_init(&w, entries, sizeof(entries));
			for (uint16_t k = 0; k < count; k++) {
				uint8_t al = (uint8_t)(1 + rng() % PN_DIR_ADDR_MAX);
				rand_addr(addr, al);
				struct pn_dir_provider_entry e = { payload + k, al, addr };
				pn_dir_provider_encode(&w, &e);
			}
			cr_assert_eq(w.err, 0);
			m.u.dir_providers = (struct pn_msg_dir_providers){ req_id, cid, total, count, entries, w.len };
			break;
		}
		case PN_MSG_DIR_SEARCH:
			m.u.dir_search = (struct pn_msg_dir_search){ req_id, (uint16_t)(1 + rng() % 30), names };
			break;
		case PN_MSG_DIR_RESULTS: {
			uint16_t count = (uint16_t)(rng() % (PN_DIR_RESULTS_MAX + 1));
			pn_wr_init(&w, entries, sizeof(entries));
			for (uint16_t k = 0; k < count; k++) {
				struct pn_dir_result_entry e = { rand_cid(), (uint32_t)rng(), (uint16_t)(1 + rng() % 30),
								 names };
				pn_dir_result_encode(&w, &e);
			}
			cr_assert_eq(w.err, 0);
			m.u.dir_results = (struct pn_msg_dir_results){ req_id, count, entries, w.len };
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
		"40 " CID2_HEX, "43 " CID2_HEX " 00000001", "42 " CID10_HEX " 0000000a a540", "44",
		"50 00000002 1b9f 08 31302e302e302e31", "51 00000001 00002710",
		"52 00000003 0002 " ENTRY1_HEX " " ENTRY2_HEX, "54 00000005 " CID2_HEX, "58 00000009",
		PROVIDERS_HEX, "56 00000007 000a 7265706f727420706466", RESULTS_HEX,
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
