/* Rates from byte counters: a meter keeps a few timestamped samples of two
 * counters that only grow, and answers the bytes per second of each over the
 * last few seconds. No clock of its own: every call is handed the time. */
#ifndef PN_UTIL_RATEMETER_H
#define PN_UTIL_RATEMETER_H
#ifndef PN_INTERNAL
#error "an internal header of libpeernet: a program includes <peernet.h> only"
#endif

#include <stdint.h>

#define PN_RATE_SAMPLES 16        /* samples kept */
#define PN_RATE_SPACING_MS 250    /* a sample sooner than this after the newest is not kept */
#define PN_RATE_WINDOW_MS 3000    /* a rate spans at most this far back (more if no newer sample) */
#define PN_RATE_MIN_SPAN_MS 200   /* a shorter span gives 0: too noisy to say */

struct pn_rate_meter {
	uint64_t t_ms[PN_RATE_SAMPLES];
	uint64_t a[PN_RATE_SAMPLES], b[PN_RATE_SAMPLES];
	unsigned head;                /* where the next sample goes */
	unsigned count;
};

/* Records counters a and b at now_ms, unless the newest sample is less than
 * PN_RATE_SPACING_MS old. A zeroed struct is an empty meter. */
void pn_rate_sample(struct pn_rate_meter *m, uint64_t now_ms, uint64_t a, uint64_t b);

/* Bytes per second of a and b (their values now) since the oldest sample at
 * most PN_RATE_WINDOW_MS old, or since the newest sample when all are older.
 * 0 when there is no sample, the span is under PN_RATE_MIN_SPAN_MS, or a
 * counter went down. */
void pn_rate_get(const struct pn_rate_meter *m, uint64_t now_ms, uint64_t a, uint64_t b, uint64_t *rate_a,
		 uint64_t *rate_b);

#endif
