/* Helpers shared by the unit tests (header only: each test is one program).
 *
 * guard_copy() puts a decoder's input right before a PROT_NONE page, as
 * picohttpparser's tests do, so reading one byte too far crashes the test
 * instead of passing by luck.
 */
#ifndef PN_TESTS_TESTUTIL_H
#define PN_TESTS_TESTUTIL_H

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <criterion/criterion.h>
#include "peernet.h"

#define GUARD_CAP (1024u * 1024u) /* larger than any frame */

static uint8_t *guard_base;
static size_t guard_size;

/* Copies src so that it ends exactly where an unreadable page begins.
 * The copy (and anything decoded from it) stays valid until the next call. */
static inline const uint8_t *guard_copy(const void *src, size_t len)
{
	if (!guard_base) {
		size_t page = (size_t)sysconf(_SC_PAGESIZE);
		guard_size = (GUARD_CAP + page - 1) / page * page;
		guard_base = mmap(NULL, guard_size + page, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		cr_assert_neq(guard_base, MAP_FAILED);
		cr_assert_eq(mprotect(guard_base + guard_size, page, PROT_NONE), 0);
	}
	cr_assert_leq(len, guard_size);
	uint8_t *dst = guard_base + guard_size - len;
	if (len)
		memmove(dst, src, len);
	return dst;
}

static inline int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Hex (lower case, spaces ignored) to bytes; returns the byte count. */
static inline size_t unhex(const char *hex, uint8_t *out, size_t cap)
{
	size_t n = 0;

	while (*hex) {
		if (*hex == ' ') {
			hex++;
			continue;
		}
		int hi = hexval(hex[0]), lo = hex[1] ? hexval(hex[1]) : -1;
		cr_assert(hi >= 0 && lo >= 0, "bad hex in test vector near \"%.8s\"", hex);
		cr_assert_lt(n, cap);
		out[n++] = (uint8_t)(hi << 4 | lo);
		hex += 2;
	}
	return n;
}

/* Sequential root 00 01 .. 1f, used by every vector. */
#define ROOT_HEX "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define SIZE2_HEX "0000000000040001"   /* 256 KiB + 1: two chunks, the last 1 byte */
#define CID2_HEX ROOT_HEX SIZE2_HEX
#define SIZE2 (PN_CHUNK_SIZE + 1ull)

static inline struct pn_cid mkcid(uint64_t size)
{
	struct pn_cid c;

	for (int i = 0; i < PN_HASH_BYTES; i++)
		c.root[i] = (uint8_t)i;
	c.size = size;
	return c;
}

static inline bool cid_eq(const struct pn_cid *a, const struct pn_cid *b)
{
	return a->size == b->size && memcmp(a->root, b->root, PN_HASH_BYTES) == 0;
}

#endif
