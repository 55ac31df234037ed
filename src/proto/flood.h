/* Query flooding with a hop limit (Gnutella-style), and the expanding ring.
 *
 * Sans-I/O: no sockets, clocks or timers; every input carries the time in
 * milliseconds; the caller drains the resulting actions with
 * flood_next_action() right after each call. Neighbours are named by
 * caller-chosen uint32_t keys. All state lives in struct flood, so a
 * simulation can run thousands of nodes in one process.
 *
 * Rules:
 *  - A query carries a random 16-byte ID, a remaining hop count (ttl) and the
 *    hops travelled. ttl is clamped so that ttl + hops <= opts.max_ttl.
 *  - The first copy of a query ID is handed to this node once
 *    (FLOOD_LOCAL_QUERY) and, if ttl > 1, forwarded with ttl-1, hops+1 to
 *    every neighbour but the one it came from. Later copies are dropped,
 *    except that a copy with MORE remaining ttl than any seen before is
 *    forwarded again (not handed up again): so every node within the hop
 *    limit is reached even when a longer path delivered the first copy.
 *  - The seen-cache remembers, for each query ID, the neighbour it first came
 *    from; hits travel back along that reverse path, never by broadcast. It
 *    is bounded (opts.cache_max entries, oldest evicted) and entries expire
 *    after opts.cache_ttl_ms.
 *  - Each neighbour may send opts.rate_per_s queries per second (burst
 *    2x); queries beyond are dropped and counted as strikes; after
 *    opts.max_strikes strikes the core asks for the neighbour to be dropped.
 *  - Hits forwarded per query ID are capped (FLOOD_MAX_HITS_PER_QUERY).
 *  - Expanding ring, for queries this node starts: send with ttl
 *    opts.ring_first_ttl, wait opts.ring_wait_ms per hop of ttl, and if fewer
 *    than `want` hits came back, send again under a NEW query ID with a larger
 *    ttl (1, 2, 3, 5, 7 ...) up to the query's max ttl. A plain flood sends
 *    once with the max ttl and waits the same way. Either way the query ends
 *    with FLOOD_QUERY_DONE.
 */
#ifndef PN_PROTO_FLOOD_H
#define PN_PROTO_FLOOD_H
#ifndef PN_INTERNAL
#error "an internal header of libpeernet: a program includes <peernet.h> only"
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "wire/wire.h"

/* The wire format's limits are the core's: one definition each. */
#define FLOOD_QID_BYTES PN_QID_BYTES
#define FLOOD_MAX_TTL PN_FLOOD_MAX_TTL
#define FLOOD_DEFAULT_TTL 5
#define FLOOD_MAX_QUERY_DATA PN_QUERY_DATA_MAX /* keywords text, or a 40-byte content ID */
#define FLOOD_MAX_HIT_PAYLOAD 4096 /* an opaque hit, routed back unchanged */
#define FLOOD_MAX_NEIGHBORS 64
#define FLOOD_MAX_HITS_PER_QUERY 64
#define FLOOD_MAX_ACTIVE_QUERIES 64 /* queries this node started and waits on */

enum flood_kind { FLOOD_KEYWORDS = 1, FLOOD_CID = 2 };

struct flood_query {
	uint8_t id[FLOOD_QID_BYTES];
	uint8_t ttl;    /* hops it may still travel (>= 1 to be sent) */
	uint8_t hops;   /* hops travelled */
	uint8_t kind;   /* enum flood_kind */
	uint16_t len;   /* <= FLOOD_MAX_QUERY_DATA */
	const uint8_t *data;
};

struct flood_opts {
	uint8_t max_ttl;        /* default FLOOD_MAX_TTL; never more */
	uint32_t cache_max;     /* seen-cache entries, default 8192 */
	uint32_t cache_ttl_ms;  /* default 60000 */
	uint32_t rate_per_s;    /* queries per neighbour per second, default 20 */
	uint32_t max_strikes;   /* rate-limited queries before a drop, default 50 */
	uint8_t ring_first_ttl; /* default 1 */
	uint32_t ring_wait_ms;  /* wait per hop of ttl before widening, default 150 */
	uint64_t seed;          /* query IDs and the cache's hash key: give every node its own */
};

enum flood_action_type {
	FLOOD_SEND_QUERY = 1, /* send q to neighbour nb */
	FLOOD_SEND_HIT,       /* send the hit (qid, payload) to neighbour nb */
	FLOOD_LOCAL_QUERY,    /* answer q if this node can: call flood_answer() */
	FLOOD_DELIVER_HIT,    /* a hit for a query this node started (handle = its flood_start handle) */
	FLOOD_DROP_NEIGHBOR,  /* nb broke the rules: disconnect it */
	FLOOD_QUERY_DONE,     /* the query `handle` is over; `hits` came back */
};

/* Pointers in an action (q.data, payload) stay valid until the next call into
 * the core other than flood_next_action(). The queue is bounded: a caller
 * that does not drain after each call may see actions dropped (counted in
 * actions_dropped); QUERY_DONE is never dropped, only delayed to a later tick. */
struct flood_action {
	enum flood_action_type type;
	uint32_t nb;
	struct flood_query q;
	uint8_t qid[FLOOD_QID_BYTES];
	const uint8_t *payload;
	size_t len;
	uint32_t handle;
	uint32_t hits;
};

struct flood_stats {
	uint64_t queries_started;     /* by this node (each ring step counts) */
	uint64_t queries_sent;        /* query messages sent, forwarded or own */
	uint64_t queries_received;
	uint64_t duplicates_dropped;
	uint64_t rate_limited;
	uint64_t hits_sent;           /* hit messages sent (own answers and forwarded) */
	uint64_t hits_received;
	uint64_t hits_unroutable;     /* for an unknown or expired query ID, a finished
				       * query, or a back-link that has gone */
	uint64_t queries_invalid;     /* bad kind or length, ttl 0 after the clamp, or not from a neighbour */
	uint64_t queries_reforwarded; /* later copies forwarded again because they had more ttl */
	uint64_t hits_delivered;      /* DELIVER_HIT actions handed out */
	uint64_t hits_dropped;        /* over FLOOD_MAX_HITS_PER_QUERY, too long, or no room */
	uint64_t actions_dropped;     /* no room in the action queue (caller did not drain) */
};

struct flood;

/* NULL opts: defaults. Returns NULL on allocation failure. */
struct flood *flood_new(const struct flood_opts *opts);
void flood_free(struct flood *f);

/* 0, PN_ELIMIT beyond FLOOD_MAX_NEIGHBORS, PN_EEXIST if present. */
int flood_neighbor_add(struct flood *f, uint32_t nb, uint64_t now);
void flood_neighbor_remove(struct flood *f, uint32_t nb);
size_t flood_neighbor_count(const struct flood *f);

/* A query arrived from neighbour nb. */
void flood_on_query(struct flood *f, uint32_t nb, const struct flood_query *q, uint64_t now);
/* A hit arrived from neighbour nb. */
void flood_on_hit(struct flood *f, uint32_t nb, const uint8_t qid[FLOOD_QID_BYTES], const uint8_t *payload,
		  size_t len, uint64_t now);
/* This node's own answer to a query it was handed with FLOOD_LOCAL_QUERY:
 * routed back towards the querier (or delivered, if the query is our own). */
void flood_answer(struct flood *f, const uint8_t qid[FLOOD_QID_BYTES], const uint8_t *payload, size_t len,
		  uint64_t now);

/* Starts a query of this node's own. ring: expanding ring up to max_ttl;
 * otherwise one flood with max_ttl. want: hits that are enough to stop
 * widening (ring only). Returns a handle > 0 (used in DELIVER_HIT and
 * QUERY_DONE), or a negative PN_E* code (PN_ELIMIT: too many queries at once,
 * PN_EINVAL: bad length or kind). The query is not handed to this node itself. */
int flood_start(struct flood *f, uint8_t kind, const uint8_t *data, uint16_t len, uint8_t max_ttl, bool ring,
		uint32_t want, uint64_t now);
/* Ends a query early (no QUERY_DONE follows). */
void flood_cancel(struct flood *f, uint32_t handle);

void flood_tick(struct flood *f, uint64_t now);
uint64_t flood_next_wakeup(const struct flood *f);
bool flood_next_action(struct flood *f, struct flood_action *out);
const struct flood_stats *flood_get_stats(const struct flood *f);
/* Entries in the seen-cache now (<= opts.cache_max). */
size_t flood_cache_count(const struct flood *f);

#endif
