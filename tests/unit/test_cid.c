/* Unit tests for src/wire: content IDs (printed and wire form) and framing.
 * Inputs sit right before an unreadable page (testutil.h). */
#include <string.h>
#include <criterion/criterion.h>
#include "wire/wire.h"
#include "testutil.h"

/* ================= content IDs ================= */

#define EMPTY_ROOT_HEX "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define EMPTY_CID_STR "pn14oymiquy7qobjgx36tejs35zeqt24qpemsnzgtfeswmrw6csxbkqaaaaaaaaaaaa"
#define SEQ_CID_STR "pn1aaaqeayeaudaocajbifqydiob4ibceqtcqkrmfyydenbwha5dypqaaaaaaaaiaab"
#define MAX_CID_STR "pn1777777777777777777777777777777777777777777777777777qaaaacaaaaaaa"
#define OVER_CID_STR "pn1777777777777777777777777777777777777777777777777777qaaaacaaaaaab"

Test(cid, format_vectors)
{
	struct pn_cid c;
	char s[PN_CID_STR_LEN + 1];

	unhex(EMPTY_ROOT_HEX, c.root, sizeof(c.root));
	c.size = 0;
	pn_cid_format(&c, s);
	cr_assert_str_eq(s, EMPTY_CID_STR);

	c = mkcid(SIZE2);
	pn_cid_format(&c, s);
	cr_assert_str_eq(s, SEQ_CID_STR);

	memset(c.root, 0xff, sizeof(c.root));
	c.size = PN_MAX_FILE_SIZE;
	pn_cid_format(&c, s);
	cr_assert_str_eq(s, MAX_CID_STR);
	cr_assert_eq(strlen(s), PN_CID_STR_LEN);
}

Test(cid, parse_vectors)
{
	struct pn_cid c, want = mkcid(SIZE2);
	uint8_t root[PN_HASH_BYTES];

	cr_assert_eq(pn_cid_parse(SEQ_CID_STR, &c), PN_OK);
	cr_assert(cid_eq(&c, &want));

	cr_assert_eq(pn_cid_parse(EMPTY_CID_STR, &c), PN_OK);
	unhex(EMPTY_ROOT_HEX, root, sizeof(root));
	cr_assert_arr_eq(c.root, root, PN_HASH_BYTES);
	cr_assert_eq(c.size, 0);

	cr_assert_eq(pn_cid_parse(MAX_CID_STR, &c), PN_OK);
	cr_assert_eq(c.size, PN_MAX_FILE_SIZE);
}

Test(cid, parse_is_case_insensitive)
{
	char upper[PN_CID_STR_LEN + 1], mixed[PN_CID_STR_LEN + 1];
	struct pn_cid c;

	for (size_t i = 0; i <= PN_CID_STR_LEN; i++) {
		char ch = SEQ_CID_STR[i];
		upper[i] = (ch >= 'a' && ch <= 'z') ? (char)(ch - 'a' + 'A') : ch;
		mixed[i] = (i % 2) ? upper[i] : ch;
	}
	struct pn_cid want = mkcid(SIZE2);
	cr_assert_eq(pn_cid_parse(upper, &c), PN_OK);
	cr_assert(cid_eq(&c, &want));
	cr_assert_eq(pn_cid_parse(mixed, &c), PN_OK);
	cr_assert(cid_eq(&c, &want));
}

Test(cid, parse_rejects_bad_input)
{
	char s[PN_CID_STR_LEN + 8];
	struct pn_cid c;
	static const char bad_chars[] = { '0', '1', '8', '9', '=', '-', ' ', '_', '+', '/', '\xc3', '\x7f' };

	cr_assert_eq(pn_cid_parse("", &c), PN_EBADID);
	cr_assert_eq(pn_cid_parse("pn1", &c), PN_EBADID);
	cr_assert_eq(pn_cid_parse(NULL, &c), PN_EBADID);
	cr_assert_eq(pn_cid_parse(OVER_CID_STR, &c), PN_EBADID); /* size > PN_MAX_FILE_SIZE */

	/* One short, one long. */
	memcpy(s, SEQ_CID_STR, PN_CID_STR_LEN - 1);
	s[PN_CID_STR_LEN - 1] = '\0';
	cr_assert_eq(pn_cid_parse(s, &c), PN_EBADID);
	memcpy(s, SEQ_CID_STR, PN_CID_STR_LEN);
	s[PN_CID_STR_LEN] = 'a';
	s[PN_CID_STR_LEN + 1] = '\0';
	cr_assert_eq(pn_cid_parse(s, &c), PN_EBADID);
	s[PN_CID_STR_LEN] = '=';
	cr_assert_eq(pn_cid_parse(s, &c), PN_EBADID);

	/* Wrong prefix. */
	static const char *const prefixes[] = { "pn2", "pn0", "xn1", "px1", "pnl" };
	for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
		strcpy(s, SEQ_CID_STR);
		memcpy(s, prefixes[i], 3);
		cr_assert_eq(pn_cid_parse(s, &c), PN_EBADID, "prefix %s", prefixes[i]);
	}

	/* A character outside the alphabet, at every position of the base32 part. */
	for (size_t pos = 3; pos < PN_CID_STR_LEN; pos++) {
		for (size_t i = 0; i < sizeof(bad_chars); i++) {
			strcpy(s, SEQ_CID_STR);
			s[pos] = bad_chars[i];
			cr_assert_eq(pn_cid_parse(s, &c), PN_EBADID, "char 0x%02x at %zu",
				     (unsigned char)bad_chars[i], pos);
		}
	}
}

Test(cid, parse_then_format_gives_lowercase)
{
	struct pn_cid c;
	char s[PN_CID_STR_LEN + 1];

	cr_assert_eq(pn_cid_parse("PN1AAAQEAYEAUDAOCAJBIFQYDIOB4IBCEQTCQKRMFYYDENBWHA5DYPQAAAAAAAAIAAB", &c), PN_OK);
	pn_cid_format(&c, s);
	cr_assert_str_eq(s, SEQ_CID_STR);
}

Test(cid, chunk_arithmetic)
{
	struct pn_cid c = mkcid(0);

	cr_assert_eq(pn_cid_chunks(&c), 1);
	cr_assert_eq(pn_cid_chunk_len(&c, 0), 0);
	cr_assert_eq(pn_cid_chunk_len(&c, 1), 0);

	c.size = 1;
	cr_assert_eq(pn_cid_chunks(&c), 1);
	cr_assert_eq(pn_cid_chunk_len(&c, 0), 1);

	c.size = PN_CHUNK_SIZE;
	cr_assert_eq(pn_cid_chunks(&c), 1);
	cr_assert_eq(pn_cid_chunk_len(&c, 0), PN_CHUNK_SIZE);

	c.size = SIZE2;
	cr_assert_eq(pn_cid_chunks(&c), 2);
	cr_assert_eq(pn_cid_chunk_len(&c, 0), PN_CHUNK_SIZE);
	cr_assert_eq(pn_cid_chunk_len(&c, 1), 1);
	cr_assert_eq(pn_cid_chunk_len(&c, 2), 0);

	c.size = PN_MAX_FILE_SIZE;
	cr_assert_eq(pn_cid_chunks(&c), PN_MAX_CHUNKS);
	cr_assert_eq(pn_cid_chunk_len(&c, PN_MAX_CHUNKS - 1), PN_CHUNK_SIZE);
	cr_assert_eq(pn_cid_chunk_len(&c, PN_MAX_CHUNKS), 0);

	c.size = UINT64_MAX; /* not a valid ID: must not wrap */
	cr_assert_eq(pn_cid_chunks(&c), UINT32_MAX);
	cr_assert_eq(pn_cid_chunk_len(&c, UINT32_MAX - 1), PN_CHUNK_SIZE);
}

Test(cid, wire_read_write)
{
	uint8_t buf[PN_CID_BYTES], want[PN_CID_BYTES];
	struct pn_writer w;
	struct pn_reader r;
	struct pn_cid c = mkcid(SIZE2), got;

	pn_wr_init(&w, buf, sizeof(buf));
	pn_cid_write(&w, &c);
	cr_assert_eq(w.err, 0);
	cr_assert_eq(w.len, PN_CID_BYTES);
	unhex(CID2_HEX, want, sizeof(want));
	cr_assert_arr_eq(buf, want, PN_CID_BYTES);

	pn_rd_init(&r, guard_copy(buf, sizeof(buf)), sizeof(buf));
	pn_cid_read(&r, &got);
	cr_assert_eq(r.err, 0);
	cr_assert(cid_eq(&c, &got));

	/* Size one above the limit flags the reader. */
	unhex(ROOT_HEX "0000001000000001", buf, sizeof(buf));
	pn_rd_init(&r, guard_copy(buf, sizeof(buf)), sizeof(buf));
	pn_cid_read(&r, &got);
	cr_assert_eq(r.err, PN_EPROTO);

	/* Truncated. */
	pn_rd_init(&r, guard_copy(buf, PN_CID_BYTES - 1), PN_CID_BYTES - 1);
	pn_cid_read(&r, &got);
	cr_assert_eq(r.err, PN_EAGAIN);
}

/* ================= framing ================= */

Test(frame, max_body_per_type)
{
	cr_assert_eq(pn_msg_max_body(PN_MSG_HELLO), 9);
	cr_assert_eq(pn_msg_max_body(PN_MSG_ERROR), 9 + 255);
	cr_assert_eq(pn_msg_max_body(PN_MSG_PING), 9);
	cr_assert_eq(pn_msg_max_body(PN_MSG_PONG), 9);
	cr_assert_eq(pn_msg_max_body(PN_MSG_META_REQ), 45);
	cr_assert_eq(pn_msg_max_body(PN_MSG_PUT_END), 45);
	cr_assert_eq(pn_msg_max_body(PN_MSG_PUT_DONE), 45);
	cr_assert_eq(pn_msg_max_body(PN_MSG_CHUNK_REQ), 49);
	cr_assert_eq(pn_msg_max_body(PN_MSG_CANCEL), 49);
	cr_assert_eq(pn_msg_max_body(PN_MSG_META), 47 + 255);
	cr_assert_eq(pn_msg_max_body(PN_MSG_PUT_BEGIN), 47 + 255);
	cr_assert_eq(pn_msg_max_body(PN_MSG_HASH_REQ), 53);
	cr_assert_eq(pn_msg_max_body(PN_MSG_HASHES), 53 + 8192 * 32);
	cr_assert_eq(pn_msg_max_body(PN_MSG_CHUNK), 49 + 262144);
	cr_assert_eq(pn_msg_max_body(PN_MSG_LIST_REQ), 9);
	cr_assert_eq(pn_msg_max_body(PN_MSG_LIST), 11 + 256 * (40 + 2 + 255));
	cr_assert_eq(pn_msg_max_body(PN_MSG_PUT_STATUS), 50 + 262144 / 8);
	cr_assert_eq(pn_msg_max_body(0x00), 0);
	cr_assert_eq(pn_msg_max_body(0x05), 0);
	cr_assert_eq(pn_msg_max_body(0x70), 0);
	cr_assert_eq(pn_msg_max_body(0xff), 0);
	cr_assert_eq(PN_FRAME_MAX, 53 + 8192 * 32);
	for (unsigned t = 0; t < 256; t++)
		cr_assert_leq(pn_msg_max_body((uint8_t)t), PN_FRAME_MAX);
}

Test(frame, check)
{
	uint8_t buf[32] = { 0 };
	size_t body_len = 12345;

	/* Fewer than 4 bytes: need more. */
	cr_assert_eq(pn_frame_check(guard_copy(buf, 0), 0, PN_FRAME_MAX, &body_len), PN_EAGAIN);
	unhex("000000", buf, sizeof(buf));
	cr_assert_eq(pn_frame_check(guard_copy(buf, 3), 3, PN_FRAME_MAX, &body_len), PN_EAGAIN);

	/* Length 0. */
	unhex("00000000", buf, sizeof(buf));
	cr_assert_eq(pn_frame_check(guard_copy(buf, 4), 4, PN_FRAME_MAX, &body_len), PN_EPROTO);

	/* Length above max_body, known as soon as the header is in. */
	unhex("00000011", buf, sizeof(buf));
	cr_assert_eq(pn_frame_check(guard_copy(buf, 4), 4, 16, &body_len), PN_ETOOBIG);
	cr_assert_eq(pn_frame_check(guard_copy(buf, 4), 4, 17, &body_len), PN_EAGAIN);
	unhex("ffffffff", buf, sizeof(buf));
	cr_assert_eq(pn_frame_check(guard_copy(buf, 4), 4, PN_FRAME_MAX, &body_len), PN_ETOOBIG);
	unhex("00040036", buf, sizeof(buf)); /* PN_FRAME_MAX + 1 */
	cr_assert_eq(pn_frame_check(guard_copy(buf, 4), 4, PN_FRAME_MAX, &body_len), PN_ETOOBIG);

	/* Above the type's cap (PING is 9 bytes), known once the type byte is in. */
	unhex("0000000a03", buf, sizeof(buf));
	cr_assert_eq(pn_frame_check(guard_copy(buf, 4), 4, PN_FRAME_MAX, &body_len), PN_EAGAIN);
	cr_assert_eq(pn_frame_check(guard_copy(buf, 5), 5, PN_FRAME_MAX, &body_len), PN_ETOOBIG);
	/* An unknown type is the decoder's business. */
	unhex("0000000a7f", buf, sizeof(buf));
	cr_assert_eq(pn_frame_check(guard_copy(buf, 5), 5, PN_FRAME_MAX, &body_len), PN_EAGAIN);

	/* Complete, and complete with the next frame's bytes behind it. */
	unhex("00000009 03 0102030405060708 000000", buf, sizeof(buf));
	cr_assert_eq(pn_frame_check(guard_copy(buf, 12), 12, PN_FRAME_MAX, &body_len), PN_EAGAIN);
	cr_assert_eq(pn_frame_check(guard_copy(buf, 13), 13, PN_FRAME_MAX, &body_len), PN_OK);
	cr_assert_eq(body_len, 9);
	body_len = 0;
	cr_assert_eq(pn_frame_check(guard_copy(buf, 16), 16, PN_FRAME_MAX, &body_len), PN_OK);
	cr_assert_eq(body_len, 9);
	/* A body at exactly max_body is fine. */
	cr_assert_eq(pn_frame_check(guard_copy(buf, 13), 13, 9, &body_len), PN_OK);
	cr_assert_eq(pn_frame_check(guard_copy(buf, 13), 13, 8, &body_len), PN_ETOOBIG);
}

