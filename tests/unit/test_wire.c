/* Unit tests for src/wire: every message type (test_cid.c has content IDs
 * and framing).
 *
 * Every decode runs on a copy of its input that ends exactly where a
 * PROT_NONE page begins (as picohttpparser's tests do), so a decoder that
 * reads one byte too far crashes instead of passing by luck. The byte vectors
 * are written out by hand from docs/PROTOCOL.md and checked both ways.
 */
#include <stdio.h>
#include <string.h>
#include <criterion/criterion.h>
#include "wire/wire.h"
#include "wirecheck.h"

#define LIST_ENTRY_MAX (PN_CID_BYTES + 2 + PN_NAME_MAX)

/* Field-by-field equality, following pointers. */
static bool msg_eq(const struct pn_msg *a, const struct pn_msg *b)
{
	if (a->type != b->type)
		return false;
	switch (a->type) {
	case PN_MSG_HELLO:
		return a->u.hello.version == b->u.hello.version && a->u.hello.role == b->u.hello.role &&
		       a->u.hello.listen_port == b->u.hello.listen_port &&
		       a->u.hello.features == b->u.hello.features;
	case PN_MSG_ERROR:
		return a->u.error.req_id == b->u.error.req_id && a->u.error.code == b->u.error.code &&
		       a->u.error.text_len == b->u.error.text_len &&
		       bytes_eq(a->u.error.text, b->u.error.text, a->u.error.text_len);
	case PN_MSG_PING:
	case PN_MSG_PONG:
		return a->u.ping.nonce == b->u.ping.nonce;
	case PN_MSG_META_REQ: case PN_MSG_PUT_END: case PN_MSG_PUT_DONE:
	case PN_MSG_CHUNK_REQ: case PN_MSG_CANCEL:
		return a->u.ref.req_id == b->u.ref.req_id && cid_eq(&a->u.ref.cid, &b->u.ref.cid) &&
		       a->u.ref.index == b->u.ref.index;
	case PN_MSG_META:
	case PN_MSG_PUT_BEGIN:
		return a->u.meta.req_id == b->u.meta.req_id && cid_eq(&a->u.meta.cid, &b->u.meta.cid) &&
		       a->u.meta.name_len == b->u.meta.name_len &&
		       bytes_eq(a->u.meta.name, b->u.meta.name, a->u.meta.name_len);
	case PN_MSG_HASH_REQ:
		return a->u.hash_req.req_id == b->u.hash_req.req_id &&
		       cid_eq(&a->u.hash_req.cid, &b->u.hash_req.cid) &&
		       a->u.hash_req.first == b->u.hash_req.first && a->u.hash_req.count == b->u.hash_req.count;
	case PN_MSG_HASHES:
		return a->u.hashes.req_id == b->u.hashes.req_id &&
		       cid_eq(&a->u.hashes.cid, &b->u.hashes.cid) &&
		       a->u.hashes.first == b->u.hashes.first && a->u.hashes.count == b->u.hashes.count &&
		       bytes_eq(a->u.hashes.hashes, b->u.hashes.hashes,
				(size_t)a->u.hashes.count * PN_HASH_BYTES);
	case PN_MSG_CHUNK:
		return a->u.chunk.req_id == b->u.chunk.req_id && cid_eq(&a->u.chunk.cid, &b->u.chunk.cid) &&
		       a->u.chunk.index == b->u.chunk.index && a->u.chunk.len == b->u.chunk.len &&
		       bytes_eq(a->u.chunk.data, b->u.chunk.data, a->u.chunk.len);
	case PN_MSG_LIST_REQ:
		return a->u.list_req.req_id == b->u.list_req.req_id &&
		       a->u.list_req.cursor == b->u.list_req.cursor;
	case PN_MSG_LIST:
		return a->u.list.req_id == b->u.list.req_id &&
		       a->u.list.next_cursor == b->u.list.next_cursor &&
		       a->u.list.count == b->u.list.count && a->u.list.entries_len == b->u.list.entries_len &&
		       bytes_eq(a->u.list.entries, b->u.list.entries, a->u.list.entries_len);
	case PN_MSG_PUT_STATUS:
		return a->u.put_status.req_id == b->u.put_status.req_id &&
		       cid_eq(&a->u.put_status.cid, &b->u.put_status.cid) &&
		       a->u.put_status.flags == b->u.put_status.flags &&
		       a->u.put_status.nchunks == b->u.put_status.nchunks &&
		       bytes_eq(a->u.put_status.bitmap, b->u.put_status.bitmap,
				(a->u.put_status.nchunks + 7) / 8);
	default:
		return false;
	}
}


Test(decode, empty_and_unknown_types)
{
	uint8_t body[16] = { 0 };
	struct pn_msg m;
	/* Types no version of this protocol defines (0x40..0x6f are reserved for
	 * the swarm and discovery messages, see PROTOCOL.md, so not listed). */
	static const uint8_t unknown[] = { 0x00, 0x05, 0x0f, 0x17, 0x1f, 0x22, 0x2f, 0x34,
					   0x3f, 0x70, 0x80, 0xfe, 0xff };

	cr_assert_eq(pn_msg_decode(guard_copy(body, 0), 0, &m), PN_EPROTO);
	for (size_t i = 0; i < sizeof(unknown); i++) {
		body[0] = unknown[i];
		cr_assert_eq(gdecode(body, 1, &m), PN_EPROTO, "type 0x%02x", unknown[i]);
		cr_assert_eq(gdecode(body, sizeof(body), &m), PN_EPROTO, "type 0x%02x", unknown[i]);
	}
}

Test(encode, unknown_type_and_small_writer)
{
	struct pn_msg m = { .type = 0x05 };
	uint8_t out[8];
	struct pn_writer w;

	encode_rejects(&m);
	m.type = PN_MSG_PING;
	m.u.ping.nonce = 1;
	pn_wr_init(&w, out, sizeof(out));
	cr_assert_eq(pn_msg_encode(&m, &w), PN_ETOOBIG);
	cr_assert_eq(w.err, PN_ETOOBIG);
}

/* ================= HELLO ================= */

#define HELLO_HEX "01 01 02 1b9e 00000005"

Test(hello, vector_truncation_trailing)
{
	uint8_t body[HEX_CAP];
	struct pn_msg m = { .type = PN_MSG_HELLO,
			    .u.hello = { .version = 1, .role = PN_ROLE_SERVER, .listen_port = 7070, .features = 5 } };
	size_t len = check_vector(HELLO_HEX, &m, body);

	check_truncations(body, len);
	check_trailing(body, len);
}

Test(hello, fields_out_of_range)
{
	struct pn_msg m;

	decode_fails("01 00 02 1b9e 00000000", PN_EPROTO); /* version 0 */
	decode_fails("01 01 00 1b9e 00000000", PN_EPROTO); /* role 0 */
	decode_fails("01 01 05 1b9e 00000000", PN_EPROTO); /* role 5 */
	decode_fails("01 01 ff 1b9e 00000000", PN_EPROTO);
	decode_fails("01 01 02 1b9e 00000000 00", PN_ETOOBIG);
	/* Edges that are fine: newer version, every role, any port and features. */
	decode_ok("01 ff 04 ffff ffffffff", &m);
	cr_assert_eq(m.u.hello.version, 0xff);
	cr_assert_eq(m.u.hello.role, PN_ROLE_DIRECTORY);
	cr_assert_eq(m.u.hello.features, 0xffffffffu);
	decode_ok("01 01 01 0000 00000000", &m);
	cr_assert_eq(m.u.hello.role, PN_ROLE_CLIENT);

	struct pn_msg bad = { .type = PN_MSG_HELLO, .u.hello = { .version = 0, .role = 1 } };
	encode_rejects(&bad);
	bad.u.hello.version = 1;
	bad.u.hello.role = 0;
	encode_rejects(&bad);
	bad.u.hello.role = 5;
	encode_rejects(&bad);
	for (uint8_t role = PN_ROLE_CLIENT; role <= PN_ROLE_DIRECTORY; role++) {
		bad.u.hello.role = role;
		check_round_trip(&bad);
	}
}

/* ================= ERROR ================= */

#define ERROR_HEX "02 00000007 0002 0005 6e6f706521" /* "nope!" */

Test(error, vector_truncation_trailing)
{
	uint8_t body[HEX_CAP];
	struct pn_msg m = { .type = PN_MSG_ERROR,
			    .u.error = { .req_id = 7, .code = PN_WERR_NOT_FOUND, .text_len = 5, .text = "nope!" } };
	size_t len = check_vector(ERROR_HEX, &m, body);

	check_truncations(body, len);
	check_trailing(body, len);
}

Test(error, fields_out_of_range)
{
	uint8_t body[HEX_CAP];
	char text[PN_ERRMSG_MAX + 1];
	struct pn_msg m;

	decode_fails("02 00000007 0000 0000", PN_EPROTO);        /* code 0 */
	decode_fails("02 00000007 0002 0006 6e6f706521", PN_EPROTO); /* text_len too long */
	decode_fails("02 00000007 0002 0004 6e6f706521", PN_EPROTO); /* too short: trailing */
	decode_fails("02 00000007 0002 ffff 6e6f706521", PN_EPROTO);
	decode_ok("02 00000000 0001 0000", &m);
	cr_assert_eq(m.u.error.text_len, 0);
	decode_ok("02 ffffffff ffff 0000", &m); /* unknown codes are allowed */
	cr_assert_eq(m.u.error.code, 0xffff);

	/* 255 bytes of text is the limit; 256 is too big for the type. */
	memset(text, 'x', sizeof(text));
	size_t n = unhex("02 00000001 0003 00ff", body, sizeof(body));
	memcpy(body + n, text, PN_ERRMSG_MAX);
	cr_assert_eq(gdecode(body, n + PN_ERRMSG_MAX, &m), PN_OK);
	n = unhex("02 00000001 0003 0100", body, sizeof(body));
	memcpy(body + n, text, PN_ERRMSG_MAX + 1);
	cr_assert_eq(gdecode(body, n + PN_ERRMSG_MAX + 1, &m), PN_ETOOBIG);

	struct pn_msg bad = { .type = PN_MSG_ERROR,
			      .u.error = { .req_id = 1, .code = 0, .text_len = 1, .text = "x" } };
	encode_rejects(&bad);
	bad.u.error.code = 3;
	bad.u.error.text_len = PN_ERRMSG_MAX + 1;
	bad.u.error.text = text;
	encode_rejects(&bad);
	bad.u.error.text_len = 1;
	bad.u.error.text = NULL;
	encode_rejects(&bad);
	bad.u.error.text_len = PN_ERRMSG_MAX;
	bad.u.error.text = text;
	check_round_trip(&bad);
}

/* ================= PING / PONG ================= */

Test(ping, vectors_truncation_trailing)
{
	uint8_t body[HEX_CAP];
	struct pn_msg m = { .type = PN_MSG_PING, .u.ping = { .nonce = 0x0102030405060708ull } };
	size_t len = check_vector("03 0102030405060708", &m, body);

	check_truncations(body, len);
	check_trailing(body, len);
	m.type = PN_MSG_PONG;
	m.u.ping.nonce = 0xfedcba9876543210ull;
	len = check_vector("04 fedcba9876543210", &m, body);
	check_truncations(body, len);
	check_trailing(body, len);
}

/* ================= META_REQ / PUT_END / PUT_DONE ================= */

Test(ref, vectors_truncation_trailing)
{
	static const uint8_t types[] = { PN_MSG_META_REQ, PN_MSG_PUT_END, PN_MSG_PUT_DONE };
	static const char *const hex[] = { "10 00000001 " CID2_HEX, "32 00000001 " CID2_HEX,
					   "33 00000001 " CID2_HEX };
	uint8_t body[HEX_CAP];

	for (size_t i = 0; i < sizeof(types); i++) {
		struct pn_msg m = { .type = types[i], .u.ref = { .req_id = 1, .cid = mkcid(SIZE2) } };
		size_t len = check_vector(hex[i], &m, body);
		check_truncations(body, len);
		check_trailing(body, len);
	}
}

Test(ref, fields_out_of_range)
{
	struct pn_msg m;

	decode_fails("10 00000001 " ROOT_HEX "0000001000000001", PN_EPROTO); /* size > max */
	decode_fails("32 00000001 " ROOT_HEX "ffffffffffffffff", PN_EPROTO);
	decode_fails("33 00000001 " ROOT_HEX "8000000000000000", PN_EPROTO);
	decode_ok("10 00000001 " ROOT_HEX "0000001000000000", &m); /* exactly the max */
	cr_assert_eq(m.u.ref.cid.size, PN_MAX_FILE_SIZE);
	cr_assert_eq(m.u.ref.index, 0);
	decode_ok("10 00000000 " ROOT_HEX "0000000000000000", &m);

	struct pn_msg bad = { .type = PN_MSG_META_REQ, .u.ref = { .req_id = 1, .cid = mkcid(PN_MAX_FILE_SIZE + 1) } };
	encode_rejects(&bad);
	bad.u.ref.cid.size = 10;
	bad.u.ref.index = 1; /* not on the wire for these types: would not survive */
	encode_rejects(&bad);
	bad.type = PN_MSG_PUT_DONE;
	encode_rejects(&bad);
	bad.u.ref.index = 0;
	check_round_trip(&bad);
}

/* ================= CHUNK_REQ / CANCEL ================= */

Test(chunk_req, vectors_truncation_trailing)
{
	static const uint8_t types[] = { PN_MSG_CHUNK_REQ, PN_MSG_CANCEL };
	static const char *const hex[] = { "14 00000002 " CID2_HEX " 00000001",
					   "16 00000002 " CID2_HEX " 00000001" };
	uint8_t body[HEX_CAP];

	for (size_t i = 0; i < sizeof(types); i++) {
		struct pn_msg m = { .type = types[i],
				    .u.ref = { .req_id = 2, .cid = mkcid(SIZE2), .index = 1 } };
		size_t len = check_vector(hex[i], &m, body);
		check_truncations(body, len);
		check_trailing(body, len);
	}
}

Test(chunk_req, index_range)
{
	struct pn_msg m;

	decode_fails("14 00000002 " CID2_HEX " 00000002", PN_EPROTO); /* 2 chunks: index 2 */
	decode_fails("16 00000002 " CID2_HEX " ffffffff", PN_EPROTO);
	decode_ok("14 00000002 " CID2_HEX " 00000000", &m);
	/* Empty file: one chunk. */
	decode_ok("14 00000002 " ROOT_HEX "0000000000000000 00000000", &m);
	decode_fails("14 00000002 " ROOT_HEX "0000000000000000 00000001", PN_EPROTO);
	/* Largest file: 262144 chunks. */
	decode_ok("16 00000002 " ROOT_HEX "0000001000000000 0003ffff", &m);
	cr_assert_eq(m.u.ref.index, PN_MAX_CHUNKS - 1);
	decode_fails("16 00000002 " ROOT_HEX "0000001000000000 00040000", PN_EPROTO);
	decode_fails("14 00000002 " ROOT_HEX "0000001000000001 00000000", PN_EPROTO);

	struct pn_msg bad = { .type = PN_MSG_CANCEL, .u.ref = { .req_id = 1, .cid = mkcid(SIZE2), .index = 2 } };
	encode_rejects(&bad);
	bad.type = PN_MSG_CHUNK_REQ;
	encode_rejects(&bad);
	bad.u.ref.index = 1;
	bad.u.ref.cid.size = PN_MAX_FILE_SIZE + 1;
	encode_rejects(&bad);
}

/* ================= META / PUT_BEGIN ================= */

#define META_HEX "11 00000003 " CID2_HEX " 000a 7265706f72742e706466" /* "report.pdf" */

Test(meta, vectors_truncation_trailing)
{
	uint8_t body[HEX_CAP];
	struct pn_msg m = { .type = PN_MSG_META,
			    .u.meta = { .req_id = 3, .cid = mkcid(SIZE2), .name_len = 10, .name = "report.pdf" } };
	size_t len = check_vector(META_HEX, &m, body);

	check_truncations(body, len);
	check_trailing(body, len);
	m.type = PN_MSG_PUT_BEGIN;
	len = check_vector("30 00000003 " CID2_HEX " 000a 7265706f72742e706466", &m, body);
	check_truncations(body, len);
	check_trailing(body, len);
}

Test(meta, bad_names)
{
	static const char *const names_hex[] = {
		"2e", "2e2e", "612f62", "615c62", "610062", "1f", "7f", "0a", "09",
		"c0af", "c1bf", "e080af", "f08080af",   /* overlong */
		"eda080", "edbfbf",                     /* surrogates */
		"f4908080", "f5808080", "ff", "fe",     /* above U+10FFFF, invalid leads */
		"c3", "e282", "f09f98", "80", "bf",     /* truncated, stray continuation */
		"c328", "e228a1",                       /* bad continuation */
		"c29b", "c280", "c29f",                 /* C1 controls */
		"61e280ae", "e2808b", "e2808f", "e280aa", /* U+202E, zero-width, marks, embeddings */
		"e281a0", "e281a9", "efbbbf",           /* word joiner, isolates, byte order mark */
	};
	uint8_t body[HEX_CAP];
	char hex[HEX_CAP];

	for (size_t i = 0; i < sizeof(names_hex) / sizeof(names_hex[0]); i++) {
		size_t name_len = strlen(names_hex[i]) / 2;
		snprintf(hex, sizeof(hex), "11 00000003 " CID2_HEX " %04zx %s", name_len, names_hex[i]);
		decode_fails(hex, PN_EPROTO);
		hex[0] = '3';
		hex[1] = '0';
		decode_fails(hex, PN_EPROTO);

		uint8_t name[8];
		unhex(names_hex[i], name, sizeof(name));
		cr_assert_not(pn_name_valid((const char *)name, name_len), "name %s", names_hex[i]);
		struct pn_msg bad = { .type = PN_MSG_META,
				      .u.meta = { .req_id = 1, .cid = mkcid(1), .name_len = (uint16_t)name_len,
						  .name = (const char *)name } };
		encode_rejects(&bad);
	}
	/* Empty name, and a name that is too long. */
	decode_fails("11 00000003 " CID2_HEX " 0000", PN_EPROTO);
	size_t n = unhex("11 00000003 " CID2_HEX " 0100", body, sizeof(body));
	memset(body + n, 'a', 256);
	struct pn_msg m;
	cr_assert_eq(gdecode(body, n + 256, &m), PN_ETOOBIG);
	/* name_len larger than what follows, or smaller. */
	decode_fails("11 00000003 " CID2_HEX " 000b 7265706f72742e706466", PN_EPROTO);
	decode_fails("11 00000003 " CID2_HEX " 0009 7265706f72742e706466", PN_EPROTO);
	decode_fails("11 00000003 " ROOT_HEX "0000001000000001 0001 61", PN_EPROTO);
}

Test(meta, good_names)
{
	static const char *const names_hex[] = {
		"61", "2e61", "2e2e2e", "612e", "20", "7e", "c3a9", "e697a5e69cac",
		"f09f9880", "c2a0", "efbfbf", "f48fbfbf", "ed9fbf", "ee8080",
	};
	uint8_t body[HEX_CAP];
	char hex[HEX_CAP];
	char longest[PN_NAME_MAX];
	struct pn_msg m;

	for (size_t i = 0; i < sizeof(names_hex) / sizeof(names_hex[0]); i++) {
		size_t name_len = strlen(names_hex[i]) / 2;
		snprintf(hex, sizeof(hex), "11 00000003 " CID2_HEX " %04zx %s", name_len, names_hex[i]);
		decode_ok(hex, &m);
		cr_assert_eq(m.u.meta.name_len, name_len, "name %s", names_hex[i]);
		check_round_trip(&m);
	}
	memset(longest, 'n', sizeof(longest));
	size_t n = unhex("30 00000003 " CID2_HEX " 00ff", body, sizeof(body));
	memcpy(body + n, longest, sizeof(longest));
	cr_assert_eq(gdecode(body, n + sizeof(longest), &m), PN_OK);
	cr_assert_eq(m.u.meta.name_len, PN_NAME_MAX);
	check_round_trip(&m);
	cr_assert(pn_name_valid(longest, PN_NAME_MAX));
	cr_assert_not(pn_name_valid(longest, PN_NAME_MAX + 1));
	cr_assert_not(pn_name_valid(NULL, 1));
	cr_assert_not(pn_name_valid("a", 0));
}

/* ================= HASH_REQ ================= */

Test(hash_req, vector_truncation_trailing)
{
	uint8_t body[HEX_CAP];
	struct pn_msg m = { .type = PN_MSG_HASH_REQ,
			    .u.hash_req = { .req_id = 4, .cid = mkcid(SIZE2), .first = 0, .count = 2 } };
	size_t len = check_vector("12 00000004 " CID2_HEX " 00000000 00000002", &m, body);

	check_truncations(body, len);
	check_trailing(body, len);
}

Test(hash_req, range)
{
	struct pn_msg m;

	decode_fails("12 00000004 " CID2_HEX " 00000000 00000000", PN_EPROTO); /* count 0 */
	decode_fails("12 00000004 " CID2_HEX " 00000000 00000003", PN_EPROTO); /* past the end */
	decode_fails("12 00000004 " CID2_HEX " 00000001 00000002", PN_EPROTO);
	decode_fails("12 00000004 " CID2_HEX " 00000002 00000001", PN_EPROTO);
	decode_fails("12 00000004 " CID2_HEX " ffffffff 00000002", PN_EPROTO); /* first+count wraps */
	decode_fails("12 00000004 " CID2_HEX " 00000001 ffffffff", PN_EPROTO);
	decode_fails("12 00000004 " ROOT_HEX "0000001000000000 00000000 00002001", PN_EPROTO); /* > 8192 */
	decode_fails("12 00000004 " ROOT_HEX "0000001000000001 00000000 00000001", PN_EPROTO);
	decode_ok("12 00000004 " CID2_HEX " 00000001 00000001", &m);
	decode_ok("12 00000004 " ROOT_HEX "0000001000000000 00000000 00002000", &m);
	decode_ok("12 00000004 " ROOT_HEX "0000001000000000 0003e000 00002000", &m); /* last page */
	decode_fails("12 00000004 " ROOT_HEX "0000001000000000 0003e001 00002000", PN_EPROTO);

	struct pn_msg bad = { .type = PN_MSG_HASH_REQ,
			      .u.hash_req = { .req_id = 1, .cid = mkcid(SIZE2), .first = UINT32_MAX, .count = 2 } };
	encode_rejects(&bad);
	bad.u.hash_req.first = 0;
	bad.u.hash_req.count = 0;
	encode_rejects(&bad);
	bad.u.hash_req.count = 3;
	encode_rejects(&bad);
	bad.u.hash_req.cid.size = PN_MAX_FILE_SIZE;
	bad.u.hash_req.count = PN_HASHES_MAX + 1;
	encode_rejects(&bad);
	bad.u.hash_req.count = PN_HASHES_MAX;
	check_round_trip(&bad);
}

/* ================= HASHES ================= */

#define H_AA "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define H_BB "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

Test(hashes, vector_truncation_trailing)
{
	uint8_t body[HEX_CAP], hashes[2 * PN_HASH_BYTES];
	memset(hashes, 0xaa, PN_HASH_BYTES);
	memset(hashes + PN_HASH_BYTES, 0xbb, PN_HASH_BYTES);
	struct pn_msg m = { .type = PN_MSG_HASHES,
			    .u.hashes = { .req_id = 5, .cid = mkcid(SIZE2), .first = 0, .count = 2,
					  .hashes = hashes } };
	size_t len = check_vector("13 00000005 " CID2_HEX " 00000000 00000002 " H_AA H_BB, &m, body);

	check_truncations(body, len);
	check_trailing(body, len);
}

Test(hashes, range_and_length)
{
	struct pn_msg m;

	decode_fails("13 00000005 " CID2_HEX " 00000000 00000002 " H_AA, PN_EPROTO);        /* one short */
	decode_fails("13 00000005 " CID2_HEX " 00000000 00000001 " H_AA H_BB, PN_EPROTO);   /* one extra */
	decode_fails("13 00000005 " CID2_HEX " 00000001 00000002 " H_AA H_BB, PN_EPROTO);   /* past end */
	decode_fails("13 00000005 " CID2_HEX " ffffffff 00000002 " H_AA H_BB, PN_EPROTO);   /* wraps */
	decode_fails("13 00000005 " CID2_HEX " 00000000 00000000", PN_EPROTO);              /* count 0 */
	decode_fails("13 00000005 " CID2_HEX " 00000000 ffffffff " H_AA, PN_EPROTO);
	decode_fails("13 00000005 " ROOT_HEX "0000001000000001 00000000 00000001 " H_AA, PN_EPROTO);
	decode_ok("13 00000005 " CID2_HEX " 00000001 00000001 " H_BB, &m);
	cr_assert_eq(m.u.hashes.hashes[0], 0xbb);

	struct pn_msg bad = { .type = PN_MSG_HASHES,
			      .u.hashes = { .req_id = 1, .cid = mkcid(SIZE2), .first = 0, .count = 1, .hashes = NULL } };
	encode_rejects(&bad);
	bad.u.hashes.hashes = (const uint8_t *)"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	bad.u.hashes.count = 3;
	encode_rejects(&bad);
	bad.u.hashes.first = 2;
	bad.u.hashes.count = 1;
	encode_rejects(&bad);
}

Test(hashes, full_page)
{
	static uint8_t body[PN_HASHES_BODY_MAX + 1];
	struct pn_writer w;
	struct pn_msg m;
	size_t body_len;
	struct pn_cid big = mkcid(PN_MAX_FILE_SIZE);

	pn_wr_init(&w, body, sizeof(body));
	pn_wr_u8(&w, PN_MSG_HASHES);
	pn_wr_u32(&w, 9);
	pn_cid_write(&w, &big);
	pn_wr_u32(&w, 0);
	pn_wr_u32(&w, PN_HASHES_MAX);
	for (uint32_t i = 0; i < PN_HASHES_MAX * PN_HASH_BYTES; i++)
		pn_wr_u8(&w, (uint8_t)(i * 7));
	cr_assert_eq(w.err, 0);
	cr_assert_eq(w.len, PN_HASHES_BODY_MAX);
	cr_assert_eq(w.len, PN_FRAME_MAX);
	cr_assert_eq(gdecode(body, w.len, &m), PN_OK);
	cr_assert_eq(m.u.hashes.count, PN_HASHES_MAX);
	check_round_trip(&m);
	/* The framer lets the largest frame through at PN_FRAME_MAX. */
	cr_assert_eq(pn_frame_check(frame_buf, PN_FRAME_HDR + PN_FRAME_MAX, PN_FRAME_MAX, &body_len), PN_OK);
	cr_assert_eq(body_len, PN_FRAME_MAX);
	/* One hash more is too big for the type. */
	body[w.len] = 0;
	cr_assert_eq(gdecode(body, w.len + 1, &m), PN_ETOOBIG);
	/* A short last page: count 8192 starting 1 before the end. */
	pn_put_u32(body + 1 + 4 + PN_CID_BYTES, PN_MAX_CHUNKS - PN_HASHES_MAX + 1);
	cr_assert_eq(gdecode(body, w.len, &m), PN_EPROTO);
}

/* ================= CHUNK ================= */

#define CID5_HEX ROOT_HEX "0000000000000005"

Test(chunk, vector_truncation_trailing)
{
	uint8_t body[HEX_CAP];
	struct pn_msg m = { .type = PN_MSG_CHUNK,
			    .u.chunk = { .req_id = 6, .cid = mkcid(5), .index = 0, .len = 5,
					 .data = (const uint8_t *)"hello" } };
	size_t len = check_vector("15 00000006 " CID5_HEX " 00000000 68656c6c6f", &m, body);

	check_truncations(body, len);
	check_trailing(body, len);
	cr_assert_eq(len, PN_CHUNK_MSG_HDR + 5);

	/* pn_chunk_hdr_encode gives the same first bytes. */
	uint8_t hdr[PN_FRAME_HDR + PN_CHUNK_MSG_HDR];
	struct pn_cid c = mkcid(5);
	size_t flen = encode_ok(&m);
	pn_chunk_hdr_encode(hdr, 6, &c, 0, 5);
	cr_assert_eq(flen, sizeof(hdr) + 5);
	cr_assert_arr_eq(hdr, frame_buf, sizeof(hdr));
}

Test(chunk, length_must_match)
{
	struct pn_msg m;

	decode_fails("15 00000006 " CID5_HEX " 00000000 68656c6c", PN_EPROTO);
	decode_fails("15 00000006 " CID5_HEX " 00000000 68656c6c6f21", PN_EPROTO);
	decode_fails("15 00000006 " CID5_HEX " 00000001 68656c6c6f", PN_EPROTO); /* index past end */
	decode_fails("15 00000006 " CID5_HEX " 00000000", PN_EPROTO);
	decode_fails("15 00000006 " ROOT_HEX "0000001000000001 00000000 00", PN_EPROTO);
	/* The last chunk of a two-chunk file is 1 byte. */
	decode_ok("15 00000006 " CID2_HEX " 00000001 7a", &m);
	cr_assert_eq(m.u.chunk.len, 1);
	cr_assert_eq(m.u.chunk.data[0], 'z');
	decode_fails("15 00000006 " CID2_HEX " 00000000 7a", PN_EPROTO);
	decode_fails("15 00000006 " CID2_HEX " 00000002 7a", PN_EPROTO);
	/* Empty file: one chunk of no bytes. */
	decode_ok("15 00000006 " ROOT_HEX "0000000000000000 00000000", &m);
	cr_assert_eq(m.u.chunk.len, 0);
	check_round_trip(&m);
	decode_fails("15 00000006 " ROOT_HEX "0000000000000000 00000000 00", PN_EPROTO);

	struct pn_msg bad = { .type = PN_MSG_CHUNK,
			      .u.chunk = { .req_id = 6, .cid = mkcid(5), .index = 0, .len = 4,
					   .data = (const uint8_t *)"hello" } };
	encode_rejects(&bad);
	bad.u.chunk.len = 5;
	bad.u.chunk.index = 1;
	encode_rejects(&bad);
	bad.u.chunk.index = 0;
	bad.u.chunk.data = NULL;
	encode_rejects(&bad);
}

Test(chunk, full_chunk)
{
	static uint8_t body[PN_CHUNK_BODY_MAX + 1];
	struct pn_writer w;
	struct pn_msg m;
	struct pn_cid c = mkcid(2ull * PN_CHUNK_SIZE);
	uint8_t hdr[PN_FRAME_HDR + PN_CHUNK_MSG_HDR];

	pn_wr_init(&w, body, sizeof(body));
	pn_wr_u8(&w, PN_MSG_CHUNK);
	pn_wr_u32(&w, 77);
	pn_cid_write(&w, &c);
	pn_wr_u32(&w, 1);
	for (uint32_t i = 0; i < PN_CHUNK_SIZE; i++)
		pn_wr_u8(&w, (uint8_t)(i ^ (i >> 8)));
	cr_assert_eq(w.len, PN_CHUNK_BODY_MAX);
	cr_assert_eq(gdecode(body, w.len, &m), PN_OK);
	cr_assert_eq(m.u.chunk.len, PN_CHUNK_SIZE);
	check_round_trip(&m);
	pn_chunk_hdr_encode(hdr, 77, &c, 1, PN_CHUNK_SIZE);
	cr_assert_eq(pn_get_u32(hdr), PN_CHUNK_BODY_MAX);
	cr_assert_arr_eq(hdr + PN_FRAME_HDR, body, PN_CHUNK_MSG_HDR);
	/* One byte short, one byte more. */
	cr_assert_eq(gdecode(body, w.len - 1, &m), PN_EPROTO);
	body[w.len] = 0;
	cr_assert_eq(gdecode(body, w.len + 1, &m), PN_ETOOBIG);
}

/* ================= LIST_REQ ================= */

Test(list_req, vector_truncation_trailing)
{
	uint8_t body[HEX_CAP];
	struct pn_msg m = { .type = PN_MSG_LIST_REQ, .u.list_req = { .req_id = 7, .cursor = 10 } };
	size_t len = check_vector("20 00000007 0000000a", &m, body);

	check_truncations(body, len);
	check_trailing(body, len);
}

/* ================= LIST ================= */

#define ENTRY1_HEX CID2_HEX " 0001 61"                                  /* "a" */
#define ENTRY2_HEX ROOT_HEX "0000000000000000 0007 622e747874c3a9"       /* "b.txt\u00e9" */

Test(list, vector_truncation_trailing)
{
	uint8_t body[HEX_CAP], entries[HEX_CAP];
	size_t entries_len = unhex(ENTRY1_HEX " " ENTRY2_HEX, entries, sizeof(entries));
	struct pn_msg m = { .type = PN_MSG_LIST,
			    .u.list = { .req_id = 8, .next_cursor = 2, .count = 2, .entries = entries,
					.entries_len = entries_len } };
	size_t len = check_vector("21 00000008 00000002 0002 " CID2_HEX " 0001 61 " ROOT_HEX
				  "0000000000000000 0007 622e747874c3a9", &m, body);

	check_truncations(body, len);
	check_trailing(body, len);

	/* Iterate the decoded entries. */
	struct pn_msg got;
	struct pn_list_entry e;
	size_t off = 0;
	cr_assert_eq(gdecode(body, len, &got), PN_OK);
	cr_assert_eq(pn_list_next(&got.u.list, &off, &e), PN_OK);
	struct pn_cid c2 = mkcid(SIZE2), c0 = mkcid(0);
	cr_assert(cid_eq(&e.cid, &c2));
	cr_assert_eq(e.name_len, 1);
	cr_assert_eq(e.name[0], 'a');
	cr_assert_eq(pn_list_next(&got.u.list, &off, &e), PN_OK);
	cr_assert(cid_eq(&e.cid, &c0));
	cr_assert_eq(e.name_len, 7);
	cr_assert_eq(memcmp(e.name, "b.txt\xc3\xa9", 7), 0);
	cr_assert_eq(pn_list_next(&got.u.list, &off, &e), PN_EAGAIN);
	cr_assert_eq(off, got.u.list.entries_len);
	off = got.u.list.entries_len + 1;
	cr_assert_eq(pn_list_next(&got.u.list, &off, &e), PN_EPROTO);
}

Test(list, entry_encode)
{
	uint8_t out[HEX_CAP], want[HEX_CAP];
	struct pn_writer w;
	struct pn_list_entry e = { .cid = mkcid(SIZE2), .name_len = 1, .name = "a" };

	pn_wr_init(&w, out, sizeof(out));
	pn_list_entry_encode(&w, &e);
	e.cid = mkcid(0);
	e.name = "b.txt\xc3\xa9";
	e.name_len = 7;
	pn_list_entry_encode(&w, &e);
	cr_assert_eq(w.err, 0);
	size_t n = unhex(ENTRY1_HEX " " ENTRY2_HEX, want, sizeof(want));
	cr_assert_eq(w.len, n);
	cr_assert_arr_eq(out, want, n);

	/* A bad entry writes nothing and marks the writer. */
	e.name = "a/b";
	e.name_len = 3;
	pn_list_entry_encode(&w, &e);
	cr_assert_eq(w.err, PN_EINVAL);
	cr_assert_eq(w.len, n);
	pn_wr_init(&w, out, sizeof(out));
	e.name = "ok";
	e.name_len = 2;
	e.cid.size = PN_MAX_FILE_SIZE + 1;
	pn_list_entry_encode(&w, &e);
	cr_assert_eq(w.err, PN_EINVAL);
	cr_assert_eq(w.len, 0);
}

Test(list, count_and_entries_must_agree)
{
	struct pn_msg m;

	decode_ok("21 00000008 00000000 0000", &m); /* empty, last page */
	cr_assert_eq(m.u.list.count, 0);
	cr_assert_eq(m.u.list.entries_len, 0);
	check_round_trip(&m);
	decode_fails("21 00000008 00000000 0001", PN_EPROTO);
	decode_fails("21 00000008 00000000 0000 " ENTRY1_HEX, PN_EPROTO);
	decode_fails("21 00000008 00000000 0002 " ENTRY1_HEX, PN_EPROTO);
	decode_fails("21 00000008 00000000 0001 " ENTRY1_HEX " " ENTRY1_HEX, PN_EPROTO);
	decode_fails("21 00000008 00000000 0001 " ENTRY1_HEX " 00", PN_EPROTO);
	decode_fails("21 00000008 00000000 0101", PN_EPROTO); /* 257 */
	decode_fails("21 00000008 00000000 0001 " CID2_HEX " 0001 2f", PN_EPROTO); /* "/" */
	decode_fails("21 00000008 00000000 0001 " CID2_HEX " 0000", PN_EPROTO);   /* empty name */
	decode_fails("21 00000008 00000000 0001 " CID2_HEX " 0002 61", PN_EPROTO);
	decode_fails("21 00000008 00000000 0001 " ROOT_HEX "0000001000000001 0001 61", PN_EPROTO);
	decode_fails("21 00000008 00000000 0002 " ENTRY1_HEX " " CID2_HEX " 0002 2e2e", PN_EPROTO);

	uint8_t entries[HEX_CAP];
	size_t elen = unhex(ENTRY1_HEX, entries, sizeof(entries));
	struct pn_msg bad = { .type = PN_MSG_LIST,
			      .u.list = { .req_id = 1, .count = 2, .entries = entries, .entries_len = elen } };
	encode_rejects(&bad);
	bad.u.list.count = 0;
	encode_rejects(&bad);
	bad.u.list.count = 1;
	bad.u.list.entries_len = elen - 1;
	encode_rejects(&bad);
	bad.u.list.entries_len = elen;
	bad.u.list.entries = NULL;
	encode_rejects(&bad);
	bad.u.list.entries = entries;
	check_round_trip(&bad);
	entries[elen - 1] = '/';
	encode_rejects(&bad);
}

Test(list, full_page)
{
	static uint8_t body[PN_FRAME_MAX];
	char name[PN_NAME_MAX];
	struct pn_writer w;
	struct pn_msg m;

	memset(name, 'q', sizeof(name));
	pn_wr_init(&w, body, sizeof(body));
	pn_wr_u8(&w, PN_MSG_LIST);
	pn_wr_u32(&w, 1);
	pn_wr_u32(&w, 0xffffffffu);
	pn_wr_u16(&w, PN_LIST_MAX + 1);
	for (int i = 0; i <= PN_LIST_MAX; i++) {
		struct pn_list_entry e = { .cid = mkcid((uint64_t)i), .name_len = PN_NAME_MAX, .name = name };
		pn_list_entry_encode(&w, &e);
	}
	cr_assert_eq(w.err, 0);
	/* 257 entries: above the type's cap. */
	cr_assert_eq(gdecode(body, w.len, &m), PN_ETOOBIG);
	/* 256 entries: exactly the cap. */
	body[1 + 4 + 4] = 0x01; /* count = 0x0100 */
	body[1 + 4 + 4 + 1] = 0x00;
	size_t len = w.len - LIST_ENTRY_MAX;
	cr_assert_eq(len, pn_msg_max_body(PN_MSG_LIST));
	cr_assert_eq(gdecode(body, len, &m), PN_OK);
	cr_assert_eq(m.u.list.count, PN_LIST_MAX);
	check_round_trip(&m);

	size_t off = 0, seen = 0;
	struct pn_list_entry e;
	int err;
	while ((err = pn_list_next(&m.u.list, &off, &e)) == PN_OK) {
		cr_assert_eq(e.cid.size, seen);
		cr_assert_eq(e.name_len, PN_NAME_MAX);
		seen++;
	}
	cr_assert_eq(err, PN_EAGAIN);
	cr_assert_eq(seen, PN_LIST_MAX);
}

/* ================= PUT_STATUS ================= */

#define SIZE10 (10ull * PN_CHUNK_SIZE - 3)
#define CID10_HEX ROOT_HEX "000000000027fffd" /* 10 chunks */

Test(put_status, vector_truncation_trailing)
{
	uint8_t body[HEX_CAP];
	static const uint8_t bitmap[] = { 0xa5, 0x40 };
	struct pn_msg m = { .type = PN_MSG_PUT_STATUS,
			    .u.put_status = { .req_id = 9, .cid = mkcid(SIZE10), .flags = PN_PUT_HAVE_HASHES,
					      .nchunks = 10, .bitmap = bitmap } };
	size_t len = check_vector("31 00000009 " CID10_HEX " 01 0000000a a540", &m, body);

	check_truncations(body, len);
	check_trailing(body, len);
	cr_assert_eq(pn_cid_chunks(&m.u.put_status.cid), 10);
}

Test(put_status, fields_out_of_range)
{
	struct pn_msg m;

	decode_fails("31 00000009 " CID10_HEX " 02 0000000a ffc0", PN_EPROTO); /* flag bit 1 */
	decode_fails("31 00000009 " CID10_HEX " 80 0000000a ffc0", PN_EPROTO);
	decode_fails("31 00000009 " CID10_HEX " 00 00000009 ff80", PN_EPROTO); /* nchunks != 10 */
	decode_fails("31 00000009 " CID10_HEX " 00 0000000b ffe0", PN_EPROTO);
	decode_fails("31 00000009 " CID10_HEX " 00 0000000a ffe0", PN_EPROTO); /* unused bit set */
	decode_fails("31 00000009 " CID10_HEX " 00 0000000a ffc1", PN_EPROTO);
	decode_fails("31 00000009 " CID10_HEX " 00 0000000a ff", PN_EPROTO);   /* bitmap short */
	decode_fails("31 00000009 " CID10_HEX " 00 0000000a ffc000", PN_EPROTO);
	decode_fails("31 00000009 " CID10_HEX " 00 ffffffff ffc0", PN_EPROTO);
	decode_fails("31 00000009 " ROOT_HEX "0000001000000001 00 00000001 80", PN_EPROTO);
	decode_ok("31 00000009 " CID10_HEX " 00 0000000a ffc0", &m);
	cr_assert_eq(m.u.put_status.flags, 0);
	/* Eight chunks: one byte, every bit used. */
	decode_ok("31 00000009 " ROOT_HEX "0000000000200000 01 00000008 ff", &m);
	/* Empty file: one chunk, one byte. */
	decode_ok("31 00000009 " ROOT_HEX "0000000000000000 00 00000001 80", &m);
	decode_fails("31 00000009 " ROOT_HEX "0000000000000000 00 00000001 c0", PN_EPROTO);
	decode_fails("31 00000009 " ROOT_HEX "0000000000000000 00 00000000", PN_EPROTO);

	static const uint8_t bitmap[] = { 0xff, 0xc0 };
	struct pn_msg bad = { .type = PN_MSG_PUT_STATUS,
			      .u.put_status = { .req_id = 9, .cid = mkcid(SIZE10), .flags = 2,
						.nchunks = 10, .bitmap = bitmap } };
	encode_rejects(&bad);
	bad.u.put_status.flags = 1;
	bad.u.put_status.nchunks = 9;
	encode_rejects(&bad);
	bad.u.put_status.nchunks = 10;
	bad.u.put_status.bitmap = NULL;
	encode_rejects(&bad);
	static const uint8_t bad_bitmap[] = { 0xff, 0xe0 };
	bad.u.put_status.bitmap = bad_bitmap;
	encode_rejects(&bad);
	bad.u.put_status.bitmap = bitmap;
	check_round_trip(&bad);
}

Test(put_status, largest_bitmap)
{
	static uint8_t body[PN_FRAME_MAX];
	struct pn_writer w;
	struct pn_msg m;
	struct pn_cid c = mkcid(PN_MAX_FILE_SIZE);

	pn_wr_init(&w, body, sizeof(body));
	pn_wr_u8(&w, PN_MSG_PUT_STATUS);
	pn_wr_u32(&w, 1);
	pn_cid_write(&w, &c);
	pn_wr_u8(&w, 0);
	pn_wr_u32(&w, PN_MAX_CHUNKS);
	for (uint32_t i = 0; i < PN_MAX_CHUNKS / 8; i++)
		pn_wr_u8(&w, (uint8_t)i);
	cr_assert_eq(w.len, pn_msg_max_body(PN_MSG_PUT_STATUS));
	cr_assert_eq(gdecode(body, w.len, &m), PN_OK);
	check_round_trip(&m);
	pn_wr_u8(&w, 0);
	cr_assert_eq(gdecode(body, w.len, &m), PN_ETOOBIG);
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

/* Random valid messages of every type survive encode then decode, and the
 * decoded message encodes to the same bytes again. */
Test(property, random_round_trips)
{
	static uint8_t payload[PN_FRAME_MAX], entries[PN_FRAME_MAX];
	static uint8_t first[FRAME_CAP];
	static const uint8_t types[] = {
		PN_MSG_HELLO, PN_MSG_ERROR, PN_MSG_PING, PN_MSG_PONG, PN_MSG_META_REQ, PN_MSG_META,
		PN_MSG_HASH_REQ, PN_MSG_HASHES, PN_MSG_CHUNK_REQ, PN_MSG_CHUNK, PN_MSG_CANCEL,
		PN_MSG_LIST_REQ, PN_MSG_LIST, PN_MSG_PUT_BEGIN, PN_MSG_PUT_STATUS, PN_MSG_PUT_END,
		PN_MSG_PUT_DONE,
	};

	for (size_t i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)rng();
	for (int iter = 0; iter < 3000; iter++) {
		struct pn_msg m;
		memset(&m, 0, sizeof(m));
		m.type = types[rng() % sizeof(types)];
		uint32_t req_id = (uint32_t)rng();
		struct pn_cid cid = rand_cid();
		uint32_t n = pn_cid_chunks(&cid);
		switch (m.type) {
		case PN_MSG_HELLO:
			m.u.hello = (struct pn_msg_hello){ (uint8_t)(1 + rng() % 255), (uint8_t)(1 + rng() % 4),
							   (uint16_t)rng(), (uint32_t)rng() };
			break;
		case PN_MSG_ERROR:
			m.u.error = (struct pn_msg_error){ req_id, (uint16_t)(1 + rng() % 0xfffe),
							   (uint16_t)(rng() % (PN_ERRMSG_MAX + 1)), (const char *)payload };
			break;
		case PN_MSG_PING:
		case PN_MSG_PONG:
			m.u.ping.nonce = rng();
			break;
		case PN_MSG_META_REQ: case PN_MSG_PUT_END: case PN_MSG_PUT_DONE:
			m.u.ref = (struct pn_msg_ref){ req_id, cid, 0 };
			break;
		case PN_MSG_CHUNK_REQ: case PN_MSG_CANCEL:
			m.u.ref = (struct pn_msg_ref){ req_id, cid, (uint32_t)(rng() % n) };
			break;
		case PN_MSG_META: case PN_MSG_PUT_BEGIN:
			m.u.meta = (struct pn_msg_meta){ req_id, cid, 5, "x y.z" };
			break;
		case PN_MSG_HASH_REQ:
		case PN_MSG_HASHES: {
			uint32_t f = (uint32_t)(rng() % n);
			uint32_t maxc = n - f < PN_HASHES_MAX ? n - f : PN_HASHES_MAX;
			uint32_t c = 1 + (uint32_t)(rng() % maxc);
			if (m.type == PN_MSG_HASH_REQ)
				m.u.hash_req = (struct pn_msg_hash_req){ req_id, cid, f, c };
			else
				m.u.hashes = (struct pn_msg_hashes){ req_id, cid, f, c, payload };
			break;
		}
		case PN_MSG_CHUNK: {
			uint32_t idx = (rng() % 2) ? n - 1 : (uint32_t)(rng() % n);
			m.u.chunk = (struct pn_msg_chunk){ req_id, cid, idx, pn_cid_chunk_len(&cid, idx), payload };
			break;
		}
		case PN_MSG_LIST_REQ:
			m.u.list_req = (struct pn_msg_list_req){ req_id, (uint32_t)rng() };
			break;
		case PN_MSG_LIST: {
			struct pn_writer w;
			uint16_t count = (uint16_t)(rng() % (PN_LIST_MAX + 1));
			pn_wr_init(&w, entries, sizeof(entries));
			for (uint16_t k = 0; k < count; k++) {
				struct pn_list_entry e = { rand_cid(), (uint16_t)(1 + rng() % 20), "abcdefghijklmnopqrst" };
				pn_list_entry_encode(&w, &e);
			}
			cr_assert_eq(w.err, 0);
			m.u.list = (struct pn_msg_list){ req_id, (uint32_t)rng(), count, entries, w.len };
			break;
		}
		case PN_MSG_PUT_STATUS: {
			size_t nbytes = (n + 7) / 8;
			for (size_t k = 0; k < nbytes; k++)
				entries[k] = (uint8_t)rng();
			if (n % 8)
				entries[nbytes - 1] &= (uint8_t)(0xff << (8 - n % 8));
			m.u.put_status = (struct pn_msg_put_status){ req_id, cid, (uint8_t)(rng() % 2), n, entries };
			break;
		}
		}
		size_t flen = encode_ok(&m);
		memcpy(first, frame_buf, flen);
		struct pn_msg got;
		size_t body_len;
		cr_assert_eq(pn_frame_check(first, flen, PN_FRAME_MAX, &body_len), PN_OK);
		cr_assert_eq(body_len, flen - PN_FRAME_HDR);
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
		HELLO_HEX, ERROR_HEX, "03 0102030405060708", "10 00000001 " CID2_HEX,
		"14 00000002 " CID2_HEX " 00000001", META_HEX, "12 00000004 " CID2_HEX " 00000000 00000002",
		"13 00000005 " CID2_HEX " 00000000 00000002 " H_AA H_BB,
		"15 00000006 " CID5_HEX " 00000000 68656c6c6f", "20 00000007 0000000a",
		"21 00000008 00000002 0002 " ENTRY1_HEX " " ENTRY2_HEX,
		"31 00000009 " CID10_HEX " 01 0000000a a540",
	};
	uint8_t body[HEX_CAP];
	static const uint8_t flips[] = { 0x01, 0x80, 0xff };

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
