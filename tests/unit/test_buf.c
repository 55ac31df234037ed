/* Unit tests for the bounds-checked reader and writer (src/util/buf.c).
 * Reader input sits right before a PROT_NONE page, so any over-read crashes. */
#include <signal.h>
#include <string.h>
#include <criterion/criterion.h>
#include "util/buf.h"
#include "testutil.h"

#define GUARD_FAULT_EXIT 42

static void guard_fault_handler(int sig)
{
	(void)sig;
	_exit(GUARD_FAULT_EXIT);
}

/* Proves the harness: one byte past the copy faults. Our own SIGSEGV handler
 * (not the sanitizer's) turns the fault into a known exit code. */
Test(guard, page_after_input_is_unreadable, .exit_code = GUARD_FAULT_EXIT)
{
	static const uint8_t one = 0x42;
	const volatile uint8_t *p = guard_copy(&one, 1);
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = guard_fault_handler;
	cr_assert_eq(sigaction(SIGSEGV, &sa, NULL), 0);
	cr_assert_eq(p[0], 0x42);
	(void)p[1]; /* must fault */
	cr_assert_fail("read past the guard page did not fault");
}

Test(reader, integers_are_big_endian)
{
	static const uint8_t in[] = { 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
				      0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f };
	struct pn_reader r;

	pn_rd_init(&r, guard_copy(in, sizeof(in)), sizeof(in));
	cr_assert_eq(pn_rd_u8(&r), 0x01);
	cr_assert_eq(pn_rd_u16(&r), 0x0203);
	cr_assert_eq(pn_rd_u32(&r), 0x04050607u);
	cr_assert_eq(pn_rd_u64(&r), 0x08090a0b0c0d0e0full);
	cr_assert_eq(r.err, 0);
	cr_assert_eq(pn_rd_left(&r), 0);
}

Test(reader, every_width_fails_when_one_byte_short)
{
	static const uint8_t in[8] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	struct pn_reader r;

	pn_rd_init(&r, guard_copy(in, 1), 1);
	(void)pn_rd_u16(&r);
	cr_assert_eq(r.err, PN_EAGAIN);

	pn_rd_init(&r, guard_copy(in, 3), 3);
	cr_assert_eq(pn_rd_u32(&r), 0);
	cr_assert_eq(r.err, PN_EAGAIN);

	pn_rd_init(&r, guard_copy(in, 7), 7);
	cr_assert_eq(pn_rd_u64(&r), 0);
	cr_assert_eq(r.err, PN_EAGAIN);

	pn_rd_init(&r, guard_copy(in, 0), 0);
	cr_assert_eq(pn_rd_u8(&r), 0);
	cr_assert_eq(r.err, PN_EAGAIN);
}

Test(reader, errors_are_sticky)
{
	static const uint8_t in[] = { 0xaa, 0xbb, 0xcc };
	struct pn_reader r;

	pn_rd_init(&r, guard_copy(in, sizeof(in)), sizeof(in));
	cr_assert_eq(pn_rd_u32(&r), 0);
	cr_assert_eq(r.err, PN_EAGAIN);
	/* A later read that would fit still returns 0 and leaves the error. */
	cr_assert_eq(pn_rd_u8(&r), 0);
	cr_assert_eq(pn_rd_left(&r), 0);
	cr_assert_eq(r.err, PN_EAGAIN);
}

Test(reader, fail_keeps_first_error)
{
	static const uint8_t in[] = { 1, 2 };
	struct pn_reader r;

	pn_rd_init(&r, guard_copy(in, sizeof(in)), sizeof(in));
	pn_rd_fail(&r, PN_EPROTO);
	cr_assert_eq(r.err, PN_EPROTO);
	cr_assert_eq(pn_rd_u8(&r), 0);
	cr_assert_eq(r.err, PN_EPROTO);
	pn_rd_fail(&r, PN_ETOOBIG);
	cr_assert_eq(r.err, PN_EPROTO);
}

Test(reader, bytes_copy_and_zero_fill)
{
	static const uint8_t in[] = { 1, 2, 3, 4 };
	uint8_t out[4];
	struct pn_reader r;

	pn_rd_init(&r, guard_copy(in, sizeof(in)), sizeof(in));
	pn_rd_bytes(&r, out, 3);
	cr_assert_arr_eq(out, in, 3);
	memset(out, 0x55, sizeof(out));
	pn_rd_bytes(&r, out, 2);
	cr_assert_eq(r.err, PN_EAGAIN);
	cr_assert_eq(out[0], 0);
	cr_assert_eq(out[1], 0);
	cr_assert_eq(out[2], 0x55);
}

Test(reader, ptr_points_inside_and_refuses_overrun)
{
	static const uint8_t in[] = { 9, 8, 7, 6, 5 };
	const uint8_t *base = guard_copy(in, sizeof(in));
	struct pn_reader r;

	pn_rd_init(&r, base, sizeof(in));
	cr_assert_eq(pn_rd_ptr(&r, 2), base);
	cr_assert_eq(pn_rd_ptr(&r, 0), base + 2);
	cr_assert_eq(pn_rd_ptr(&r, 3), base + 2);
	cr_assert_eq(pn_rd_left(&r), 0);
	cr_assert_null(pn_rd_ptr(&r, 1));
	cr_assert_eq(r.err, PN_EAGAIN);

	/* A huge n must not wrap around. */
	pn_rd_init(&r, base, sizeof(in));
	(void)pn_rd_u8(&r);
	cr_assert_null(pn_rd_ptr(&r, SIZE_MAX));
	cr_assert_eq(r.err, PN_EAGAIN);
}

Test(writer, integers_are_big_endian)
{
	static const uint8_t want[] = { 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
					0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0xde, 0xad };
	uint8_t out[sizeof(want)];
	struct pn_writer w;

	pn_wr_init(&w, out, sizeof(out));
	pn_wr_u8(&w, 0x01);
	pn_wr_u16(&w, 0x0203);
	pn_wr_u32(&w, 0x04050607u);
	pn_wr_u64(&w, 0x08090a0b0c0d0e0full);
	pn_wr_bytes(&w, "\xde\xad", 2);
	cr_assert_eq(w.err, 0);
	cr_assert_eq(w.len, sizeof(want));
	cr_assert_arr_eq(out, want, sizeof(want));
}

Test(writer, overflow_is_sticky_and_writes_nothing_past_cap)
{
	uint8_t out[8];
	struct pn_writer w;

	memset(out, 0xee, sizeof(out));
	pn_wr_init(&w, out, 5);
	pn_wr_u32(&w, 0x11223344u);
	pn_wr_u16(&w, 0x5566);
	cr_assert_eq(w.err, PN_ETOOBIG);
	cr_assert_eq(w.len, 4);
	cr_assert_eq(out[4], 0xee);
	pn_wr_u8(&w, 0x77);
	cr_assert_eq(w.err, PN_ETOOBIG);
	cr_assert_eq(out[4], 0xee);
	cr_assert_null(pn_wr_reserve(&w, 0));
}

Test(writer, reserve_returns_slot)
{
	uint8_t out[6];
	struct pn_writer w;

	pn_wr_init(&w, out, sizeof(out));
	pn_wr_u8(&w, 1);
	uint8_t *slot = pn_wr_reserve(&w, 4);
	cr_assert_eq(slot, out + 1);
	cr_assert_eq(w.len, 5);
	cr_assert_null(pn_wr_reserve(&w, SIZE_MAX));
	cr_assert_eq(w.err, PN_ETOOBIG);
}

Test(helpers, put_get_u32)
{
	uint8_t b[4];

	pn_put_u32(b, 0xa1b2c3d4u);
	cr_assert_eq(b[0], 0xa1);
	cr_assert_eq(b[3], 0xd4);
	cr_assert_eq(pn_get_u32(b), 0xa1b2c3d4u);
}
