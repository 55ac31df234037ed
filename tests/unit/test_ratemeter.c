/* Rates from byte counters (src/util/ratemeter.c), on a fake clock. */
#include <criterion/criterion.h>
#include "util/ratemeter.h"

Test(ratemeter, empty_meter_says_zero)
{
	struct pn_rate_meter m = {0};
	uint64_t ra = 7, rb = 7;
	pn_rate_get(&m, 5000, 1000, 1000, &ra, &rb);
	cr_assert_eq(ra, 0);
	cr_assert_eq(rb, 0);
}

Test(ratemeter, steady_rate_is_measured)
{
	/* a grows 100 kB/s, b 10 kB/s; sampled every 100 ms (most are dropped). */
	struct pn_rate_meter m = {0};
	for (uint64_t t = 0; t <= 10000; t += 100)
		pn_rate_sample(&m, t, t * 100, t * 10);
	cr_assert_leq(m.count, PN_RATE_SAMPLES);
	uint64_t ra, rb;
	pn_rate_get(&m, 10050, 10050 * 100, 10050 * 10, &ra, &rb);
	cr_assert_eq(ra, 100000);
	cr_assert_eq(rb, 10000);
}

Test(ratemeter, samples_closer_than_the_spacing_are_not_kept)
{
	struct pn_rate_meter m = {0};
	pn_rate_sample(&m, 1000, 0, 0);
	pn_rate_sample(&m, 1000 + PN_RATE_SPACING_MS - 1, 5, 5);
	cr_assert_eq(m.count, 1);
	pn_rate_sample(&m, 1000 + PN_RATE_SPACING_MS, 5, 5);
	cr_assert_eq(m.count, 2);
}

Test(ratemeter, only_the_window_counts)
{
	/* 1 MB/s for 10 s, then nothing: 4 s later the rate is 0, not an average. */
	struct pn_rate_meter m = {0};
	uint64_t t;
	for (t = 0; t <= 10000; t += 250)
		pn_rate_sample(&m, t, t * 1000, 0);
	uint64_t total = 10000 * 1000;
	for (; t <= 14000; t += 250)
		pn_rate_sample(&m, t, total, 0);
	uint64_t ra, rb;
	pn_rate_get(&m, 14000, total, 0, &ra, &rb);
	cr_assert_eq(ra, 0);
}

Test(ratemeter, old_sample_alone_gives_the_average_since)
{
	struct pn_rate_meter m = {0};
	pn_rate_sample(&m, 0, 0, 0);
	uint64_t ra, rb;
	pn_rate_get(&m, 10000, 50000, 0, &ra, &rb);
	cr_assert_eq(ra, 5000);
}

Test(ratemeter, too_short_a_span_or_a_counter_going_down_gives_zero)
{
	struct pn_rate_meter m = {0};
	pn_rate_sample(&m, 1000, 100, 100);
	uint64_t ra, rb;
	pn_rate_get(&m, 1000 + PN_RATE_MIN_SPAN_MS - 1, 1000000, 1000000, &ra, &rb);
	cr_assert_eq(ra, 0);
	pn_rate_get(&m, 2000, 50, 1100, &ra, &rb);
	cr_assert_eq(ra, 0);
	cr_assert_eq(rb, 1000);
	pn_rate_get(&m, 500, 1000, 1000, &ra, &rb); /* a clock behind the sample */
	cr_assert_eq(ra, 0);
}
