/* Checks shared by the wire unit tests (header only: each test is one program).
 *
 * The including test defines msg_eq(), the field-by-field comparison of the
 * message types it covers; everything else here is the same for every type:
 * a hex vector checked both ways, every truncation, a trailing byte, round
 * trips, all decoding from right before an unreadable page (testutil.h).
 */
#ifndef PN_TESTS_WIRECHECK_H
#define PN_TESTS_WIRECHECK_H

#include <stdbool.h>
#include <string.h>
#include <criterion/criterion.h>
#include "wire/wire.h"
#include "testutil.h"

#define HEX_CAP 4096
#define FRAME_CAP (PN_FRAME_HDR + PN_FRAME_MAX)

/* Field-by-field equality, following pointers; defined by the including test. */
static bool msg_eq(const struct pn_msg *a, const struct pn_msg *b);

static int gdecode(const void *body, size_t len, struct pn_msg *m)
{
	return pn_msg_decode(guard_copy(body, len), len, m);
}

static bool bytes_eq(const void *a, const void *b, size_t n)
{
	return n == 0 || (a && b && memcmp(a, b, n) == 0);
}

static uint8_t frame_buf[FRAME_CAP];

/* Encodes m into frame_buf, asserting success; returns the frame length. */
static size_t encode_ok(const struct pn_msg *m)
{
	struct pn_writer w;

	pn_wr_init(&w, frame_buf, sizeof(frame_buf));
	int err = pn_msg_encode(m, &w);
	cr_assert_eq(err, PN_OK, "encode of type 0x%02x: %s", m->type, pn_strerror(err));
	return w.len;
}

/* Encoding m must fail with PN_EINVAL and write nothing. */
static void encode_rejects(const struct pn_msg *m)
{
	uint8_t out[64];
	struct pn_writer w;

	pn_wr_init(&w, out, sizeof(out));
	cr_assert_eq(pn_msg_encode(m, &w), PN_EINVAL, "encoder accepted a bad type 0x%02x", m->type);
	cr_assert_eq(w.len, 0);
}

/* Encode(m) == frame of the body `hex`, and decode(body) == m. Returns the body
 * length; the body is left in body_out (HEX_CAP bytes). */
static size_t check_vector(const char *hex, const struct pn_msg *m, uint8_t *body_out)
{
	size_t len = unhex(hex, body_out, HEX_CAP);
	size_t flen = encode_ok(m);
	struct pn_msg got;

	cr_assert_eq(flen, PN_FRAME_HDR + len, "type 0x%02x: frame %zu bytes, want %zu",
		     m->type, flen, PN_FRAME_HDR + len);
	cr_assert_eq(pn_get_u32(frame_buf), len);
	cr_assert_arr_eq(frame_buf + PN_FRAME_HDR, body_out, len, "type 0x%02x: encoded bytes differ",
			 m->type);
	cr_assert_eq(gdecode(body_out, len, &got), PN_OK, "type 0x%02x: vector does not decode", m->type);
	cr_assert(msg_eq(m, &got), "type 0x%02x: decoded fields differ", m->type);
	return len;
}

/* Every strict prefix of a valid body fails to decode, and every strict
 * prefix of its frame is "need more" for the framer. */
static void check_truncations(const uint8_t *body, size_t len)
{
	uint8_t frame[HEX_CAP + PN_FRAME_HDR];
	struct pn_msg m;
	size_t body_len;

	for (size_t k = 0; k < len; k++) {
		int err = gdecode(body, k, &m);
		cr_assert_neq(err, PN_OK, "type 0x%02x: prefix of %zu/%zu bytes decoded", body[0], k, len);
	}
	cr_assert_leq(len, HEX_CAP);
	pn_put_u32(frame, (uint32_t)len);
	memcpy(frame + PN_FRAME_HDR, body, len);
	for (size_t k = 0; k < PN_FRAME_HDR + len; k++)
		cr_assert_eq(pn_frame_check(guard_copy(frame, k), k, PN_FRAME_MAX, &body_len), PN_EAGAIN);
	cr_assert_eq(pn_frame_check(guard_copy(frame, PN_FRAME_HDR + len), PN_FRAME_HDR + len,
				    PN_FRAME_MAX, &body_len), PN_OK);
	cr_assert_eq(body_len, len);
}

/* One extra byte after a valid body is refused. */
static void check_trailing(const uint8_t *body, size_t len)
{
	uint8_t longer[HEX_CAP + 1];
	struct pn_msg m;

	memcpy(longer, body, len);
	longer[len] = 0;
	int err = gdecode(longer, len + 1, &m);
	cr_assert(err == PN_EPROTO || err == PN_ETOOBIG, "type 0x%02x: trailing byte accepted (%d)",
		  body[0], err);
}

/* The vector both ways, each truncation, a trailing byte. */
static __attribute__((unused)) size_t check_all(const char *hex, const struct pn_msg *m, uint8_t *body)
{
	size_t len = check_vector(hex, m, body);

	check_truncations(body, len);
	check_trailing(body, len);
	return len;
}

/* The body `hex` must decode to `want` (PN_EPROTO, PN_ETOOBIG). */
static void decode_fails(const char *hex, int want)
{
	uint8_t body[HEX_CAP];
	struct pn_msg m;
	size_t len = unhex(hex, body, sizeof(body));

	int err = gdecode(body, len, &m);
	cr_assert_eq(err, want, "decode of %.60s...: %d, want %d", hex, err, want);
}

/* The body `hex` must decode fine; it is copied to a static buffer so that
 * *m (which points into it) stays valid until the next call. */
static void decode_ok(const char *hex, struct pn_msg *m)
{
	static uint8_t body[HEX_CAP];
	size_t len = unhex(hex, body, sizeof(body));

	int err = pn_msg_decode(body, len, m);
	cr_assert_eq(err, PN_OK, "decode of %.60s...: %s", hex, pn_strerror(err));
	err = gdecode(body, len, m);
	cr_assert_eq(err, PN_OK, "guarded decode of %.60s...: %s", hex, pn_strerror(err));
}

/* Encode, decode, compare fields; then encode again and compare bytes. */
static void check_round_trip(const struct pn_msg *m)
{
	static uint8_t copy[FRAME_CAP];
	struct pn_msg got;
	size_t flen = encode_ok(m);

	memcpy(copy, frame_buf, flen);
	cr_assert_eq(gdecode(copy + PN_FRAME_HDR, flen - PN_FRAME_HDR, &got), PN_OK,
		     "type 0x%02x: encoded message does not decode", m->type);
	cr_assert(msg_eq(m, &got), "type 0x%02x: round trip changed a field", m->type);
	cr_assert_eq(encode_ok(&got), flen);
	cr_assert_arr_eq(frame_buf, copy, flen);
}


#endif
