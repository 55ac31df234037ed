#include "util/ratemeter.h"

void pn_rate_sample(struct pn_rate_meter *m, uint64_t now_ms, uint64_t a, uint64_t b)
{
	if (m->count) {
		unsigned newest = (m->head + PN_RATE_SAMPLES - 1) % PN_RATE_SAMPLES;
		if (now_ms < m->t_ms[newest] + PN_RATE_SPACING_MS)
			return;
	}
	m->t_ms[m->head] = now_ms;
	m->a[m->head] = a;
	m->b[m->head] = b;
	m->head = (m->head + 1) % PN_RATE_SAMPLES;
	if (m->count < PN_RATE_SAMPLES)
		m->count++;
}

static uint64_t per_second(uint64_t now_value, uint64_t then_value, uint64_t span_ms)
{
	if (now_value < then_value)
		return 0;
	return (now_value - then_value) * 1000 / span_ms;
}

void pn_rate_get(const struct pn_rate_meter *m, uint64_t now_ms, uint64_t a, uint64_t b, uint64_t *rate_a,
		 uint64_t *rate_b)
{
	*rate_a = *rate_b = 0;
	if (!m->count)
		return;
	/* From the oldest sample on, take the first one inside the window; if
	 * none is, the newest. */
	unsigned pick = (m->head + PN_RATE_SAMPLES - 1) % PN_RATE_SAMPLES;
	for (unsigned k = 0; k < m->count; k++) {
		unsigned i = (m->head + PN_RATE_SAMPLES - m->count + k) % PN_RATE_SAMPLES;
		if (m->t_ms[i] <= now_ms && now_ms - m->t_ms[i] <= PN_RATE_WINDOW_MS) {
			pick = i;
			break;
		}
	}
	if (m->t_ms[pick] > now_ms || now_ms - m->t_ms[pick] < PN_RATE_MIN_SPAN_MS)
		return;
	uint64_t span = now_ms - m->t_ms[pick];
	*rate_a = per_second(a, m->a[pick], span);
	*rate_b = per_second(b, m->b[pick], span);
}
