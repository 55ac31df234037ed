/* Token bucket and rate parsing (src/util/ratelimit.c), on a fake clock. */
#include <criterion/criterion.h>
#include "util/ratelimit.h"

Test(ratelimit, unlimited_is_always_ready)
{
	struct pn_bucket b;
	pn_bucket_init(&b, 0, 0, 0);
	pn_bucket_take(&b, 1u << 30, 0);
	cr_assert(pn_bucket_ready(&b, 0));
	cr_assert_eq(pn_bucket_wait_ms(&b, 0), 0);
}

Test(ratelimit, debt_is_paid_at_the_rate)
{
	struct pn_bucket b;
	pn_bucket_init(&b, 1000000, 0, 1000); /* 1 MB/s, burst 100 kB */
	pn_bucket_empty(&b);
	cr_assert(pn_bucket_ready(&b, 1000));
	pn_bucket_take(&b, 500000, 1000); /* half a second of debt */
	cr_assert_not(pn_bucket_ready(&b, 1000));
	cr_assert_eq(pn_bucket_wait_ms(&b, 1000), 500);
	cr_assert_not(pn_bucket_ready(&b, 1499));
	cr_assert(pn_bucket_ready(&b, 1500));
}

Test(ratelimit, long_run_rate_is_exact)
{
	/* Send 256 KiB chunks whenever allowed for 10 virtual seconds, 1 ms steps. */
	struct pn_bucket b;
	uint64_t rate = 2 * 1024 * 1024, sent = 0;
	pn_bucket_init(&b, rate, 0, 0);
	pn_bucket_empty(&b);
	for (uint64_t now = 0; now < 10000; now++) {
		while (pn_bucket_ready(&b, now)) {
			pn_bucket_take(&b, 256 * 1024, now);
			sent += 256 * 1024;
		}
	}
	/* 10 s at rate (the bucket starts empty), within one chunk */
	uint64_t expect = rate * 10;
	cr_assert(sent >= expect - 256 * 1024 && sent <= expect + 256 * 1024, "sent %llu, expected ~%llu",
		  (unsigned long long)sent, (unsigned long long)expect);
}

Test(ratelimit, idle_time_accrues_at_most_the_burst)
{
	struct pn_bucket b;
	pn_bucket_init(&b, 1000, 5000, 0);
	pn_bucket_take(&b, 5000, 0); /* starts full: the burst */
	cr_assert(pn_bucket_ready(&b, 0)); /* empty is not in debt */
	pn_bucket_take(&b, 1, 0);
	cr_assert_not(pn_bucket_ready(&b, 0));
	/* An hour idle buys only the burst. */
	cr_assert(pn_bucket_ready(&b, 3600000));
	pn_bucket_take(&b, 5001, 3600000);
	cr_assert_not(pn_bucket_ready(&b, 3600000));
}

Test(ratelimit, slow_rates_keep_fractions)
{
	/* 10 bytes/s refilled every millisecond must not round down to nothing. */
	struct pn_bucket b;
	pn_bucket_init(&b, 10, 1, 0);
	pn_bucket_empty(&b);
	pn_bucket_take(&b, 10, 0); /* 10 bytes of debt: one second */
	uint64_t now = 0;
	while (!pn_bucket_ready(&b, now) && now < 5000)
		now++;
	cr_assert(now >= 999 && now <= 1001, "ready after %llu ms", (unsigned long long)now);
}

Test(ratelimit, parse_rates)
{
	uint64_t v;
	cr_assert_eq(pn_parse_rate("500K", &v), 0);
	cr_assert_eq(v, 500 * 1024);
	cr_assert_eq(pn_parse_rate("2M", &v), 0);
	cr_assert_eq(v, 2 * 1024 * 1024);
	cr_assert_eq(pn_parse_rate("1.5g", &v), 0);
	cr_assert_eq(v, 1536ull * 1024 * 1024);
	cr_assert_eq(pn_parse_rate("800", &v), 0);
	cr_assert_eq(v, 800);
	cr_assert_eq(pn_parse_rate("4MB", &v), 0);
	cr_assert_eq(v, 4 * 1024 * 1024);
	cr_assert_eq(pn_parse_rate("0", &v), 0);
	cr_assert_eq(v, 0);
	cr_assert_eq(pn_parse_rate("unlimited", &v), 0);
	cr_assert_eq(v, 0);
	const char *bad[] = {"", "-1", "M", "2X", "1e30", "nan", "inf", "2 M", "0.1", NULL};
	for (int i = 0; bad[i]; i++)
		cr_assert_eq(pn_parse_rate(bad[i], &v), -1, "accepted '%s'", bad[i]);
}
