/* util/u32map: random puts, replacements and deletions checked against a
 * plain array, through growth and long probe runs. */
#include <criterion/criterion.h>
#include <stdint.h>
#include "peernet.h"
#include "util/u32map.h"

#define KEYSPACE 3000u /* keys drawn from a small space so many repeat */

static uint64_t next(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

Test(u32map, matches_reference_through_churn)
{
	static uint32_t ref[KEYSPACE];  /* value + 1, 0 absent */
	struct pn_u32map m = {0};
	uint64_t x = 0x2545f4914f6cdd1dull;
	uint32_t present = 0;

	for (uint32_t round = 0; round < 200000; round++) {
		uint64_t r = next(&x);
		/* Keys spread over the whole range, so many share home entries. */
		uint32_t slot = (uint32_t)(r >> 8) % KEYSPACE;
		uint32_t key = slot * 0x10000u + (slot & 0xff);
		if ((r & 3) != 0 && !(round > 100000 && (r & 4))) {
			uint32_t val = (uint32_t)(r >> 40);
			cr_assert_eq(pn_u32map_put(&m, key, val), 0);
			present += ref[slot] == 0;
			ref[slot] = val + 1;
		} else {
			pn_u32map_del(&m, key);
			present -= ref[slot] != 0;
			ref[slot] = 0;
		}
		cr_assert_eq(m.n, present);
		if (round % 1000 == 0) {
			for (uint32_t k = 0; k < KEYSPACE; k++) {
				uint32_t got = 0;
				bool found = pn_u32map_get(&m, k * 0x10000u + (k & 0xff), &got);
				cr_assert_eq(found, ref[k] != 0, "key %u at round %u", k, round);
				if (found)
					cr_assert_eq(got, ref[k] - 1);
			}
			cr_assert_leq(m.n * 2, m.cap, "more than half full");
		}
	}
	pn_u32map_free(&m);
	cr_assert_eq(m.n, 0);
}

Test(u32map, empty_map_and_bad_value)
{
	struct pn_u32map m = {0};
	uint32_t v = 7;

	cr_assert(!pn_u32map_get(&m, 0, &v));
	pn_u32map_del(&m, 5); /* nothing to delete: no crash */
	cr_assert_eq(pn_u32map_put(&m, 1, UINT32_MAX), PN_EINVAL);
	cr_assert_eq(m.n, 0);
	cr_assert_eq(pn_u32map_put(&m, 0, 0), 0);
	cr_assert(pn_u32map_get(&m, 0, &v));
	cr_assert_eq(v, 0);
	cr_assert_eq(pn_u32map_put(&m, 0, 9), 0); /* replaced, not added */
	cr_assert_eq(m.n, 1);
	cr_assert(pn_u32map_get(&m, 0, &v));
	cr_assert_eq(v, 9);
	pn_u32map_free(&m);
}
