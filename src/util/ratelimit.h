/* Token bucket, driven by the caller's clock (no time source of its own).
 *
 * Debt-based: a take always succeeds and may leave the bucket negative, so a
 * sender can push a whole chunk and then wait for the debt to be paid off.
 * This keeps the long-run rate exact whatever the message sizes.
 */
#ifndef PN_UTIL_RATELIMIT_H
#define PN_UTIL_RATELIMIT_H
#ifndef PN_INTERNAL
#error "an internal header of libpeernet: a program includes <peernet.h> only"
#endif

#include <stdbool.h>
#include <stdint.h>
#include "peernet.h" /* pn_parse_rate */

struct pn_bucket {
	uint64_t rate;   /* bytes per second; 0 = unlimited */
	int64_t burst;   /* most tokens that accrue while idle */
	int64_t tokens;  /* may go negative (debt) */
	uint64_t last_ms;
};

/* burst 0 picks max(rate/10, 16 KiB). The bucket starts full. */
void pn_bucket_init(struct pn_bucket *b, uint64_t rate, uint64_t burst, uint64_t now_ms);
/* Drops every token: the next bytes wait their turn (a byte-rate cap that
 * must not exceed its rate even in its first second starts this way). */
void pn_bucket_empty(struct pn_bucket *b);
/* Adds the tokens accrued since the last call. */
void pn_bucket_refill(struct pn_bucket *b, uint64_t now_ms);
/* Spends n tokens (may go into debt). */
void pn_bucket_take(struct pn_bucket *b, uint64_t n, uint64_t now_ms);
/* True if the bucket is not in debt (always true when unlimited). */
bool pn_bucket_ready(struct pn_bucket *b, uint64_t now_ms);
/* Milliseconds until the bucket is out of debt (0 if it is now). */
uint64_t pn_bucket_wait_ms(struct pn_bucket *b, uint64_t now_ms);

/* pn_parse_rate ("500K", "2M"): peernet.h. */

#endif
