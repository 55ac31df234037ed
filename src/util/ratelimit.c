#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "util/ratelimit.h"

#define MIN_BURST (16 * 1024)

void pn_bucket_init(struct pn_bucket *b, uint64_t rate, uint64_t burst, uint64_t now_ms)
{
	b->rate = rate;
	if (!burst)
		burst = rate / 10 > MIN_BURST ? rate / 10 : MIN_BURST;
	b->burst = (int64_t)burst;
	b->tokens = b->burst;
	b->last_ms = now_ms;
}

void pn_bucket_empty(struct pn_bucket *b)
{
	b->tokens = 0;
}

void pn_bucket_refill(struct pn_bucket *b, uint64_t now_ms)
{
	if (!b->rate || now_ms <= b->last_ms)
		return;
	uint64_t elapsed = now_ms - b->last_ms;
	/* Keep the remainder: advance last_ms only by the time that bought whole tokens. */
	uint64_t add = elapsed * b->rate / 1000;
	if (!add)
		return;
	b->last_ms = now_ms;
	b->tokens += (int64_t)add;
	if (b->tokens > b->burst)
		b->tokens = b->burst;
}

void pn_bucket_take(struct pn_bucket *b, uint64_t n, uint64_t now_ms)
{
	if (!b->rate)
		return;
	pn_bucket_refill(b, now_ms);
	b->tokens -= (int64_t)n;
}

bool pn_bucket_ready(struct pn_bucket *b, uint64_t now_ms)
{
	if (!b->rate)
		return true;
	pn_bucket_refill(b, now_ms);
	return b->tokens >= 0;
}

uint64_t pn_bucket_wait_ms(struct pn_bucket *b, uint64_t now_ms)
{
	if (!b->rate)
		return 0;
	pn_bucket_refill(b, now_ms);
	if (b->tokens >= 0)
		return 0;
	return ((uint64_t)(-b->tokens) * 1000 + b->rate - 1) / b->rate;
}

int pn_parse_rate(const char *s, uint64_t *out)
{
	if (!s || !*s)
		return PN_EINVAL;
	if (!strcmp(s, "unlimited") || !strcmp(s, "0")) {
		*out = 0;
		return 0;
	}
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || !isfinite(v) || v < 0)
		return PN_EINVAL;
	double mult = 1;
	if (*end == 'k' || *end == 'K')
		mult = 1024, end++;
	else if (*end == 'm' || *end == 'M')
		mult = 1024.0 * 1024, end++;
	else if (*end == 'g' || *end == 'G')
		mult = 1024.0 * 1024 * 1024, end++;
	if (*end == 'B' || *end == 'b')
		end++;
	if (*end)
		return PN_EINVAL;
	v *= mult;
	if (v < 1 || v > 1e12)
		return v == 0 ? (*out = 0, 0) : PN_EINVAL;
	*out = (uint64_t)v;
	return 0;
}
