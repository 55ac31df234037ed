/* Query flooding and the expanding ring (see flood.h and docs/PROTO-flood.md).
 *
 * The seen-cache is a chained hash table keyed by query ID (keyed hash, so a
 * peer cannot aim IDs at one chain) plus a FIFO list in arrival order. Every
 * entry lives cache_ttl_ms, so the FIFO is also ordered by expiry: expiry
 * and eviction both take from its head, in O(1) each.
 *
 * Actions are produced lazily. Small actions (LOCAL_QUERY, SEND_HIT,
 * DELIVER_HIT, DROP_NEIGHBOR, QUERY_DONE) sit in a fixed ring; a query to
 * forward is one broadcast job holding a bit mask of the neighbour slots still
 * to send to, and flood_next_action() turns it into one SEND_QUERY at a time.
 * Both rings have fixed sizes, so memory stays bounded whatever the caller or
 * the network does. Anything an action points at (cache entry, own query)
 * that goes away first takes its queued actions with it.
 */
#include <stdlib.h>
#include <string.h>
#include "peernet.h"
#include "proto/flood.h"
#include "proto/prng.h"
#include "util/ratelimit.h"

#define FLOOD_DEFAULT_CACHE_MAX 8192
#define FLOOD_DEFAULT_CACHE_TTL_MS 60000
#define FLOOD_DEFAULT_RATE 20
#define FLOOD_BURST_FACTOR 2          /* a neighbour may burst 2 seconds' worth */
#define FLOOD_DEFAULT_STRIKES 50
#define FLOOD_DEFAULT_RING_FIRST 1
#define FLOOD_DEFAULT_RING_WAIT_MS 150
#define FLOOD_RING_MAX_STEPS FLOOD_MAX_TTL /* ttl grows by >= 1 a step */
#define FLOOD_RING_SMALL_TTL 3        /* below this the ring grows by 1, then by 2 */
#define FLOOD_BUCKETS_INITIAL 16
#define FLOOD_BUCKETS_MAX (1u << 24)
#define FLOOD_SWEEP_MS 1000           /* expiries are batched into wakeups this far apart */
/* Per call, a draining caller gets at most one QUERY_DONE per own query plus
 * a few others; queries to forward are one job each. */
#define FLOOD_QUEUE_MAX (FLOOD_MAX_ACTIVE_QUERIES + 16)
#define FLOOD_JOBS_MAX (FLOOD_MAX_ACTIVE_QUERIES + 8)

/* One query ID this node has seen. data[] holds the query's bytes (none for
 * our own queries, whose bytes live in struct own_query). */
struct seen {
	struct seen *chain;  /* next in the hash bucket */
	struct seen *newer;  /* next in arrival order */
	uint64_t expires;
	uint32_t from;       /* neighbour the first copy came from */
	uint32_t handle;     /* our own query's handle, 0 if someone else's */
	uint8_t id[FLOOD_QID_BYTES];
	uint8_t best_ttl;    /* most remaining ttl of any copy */
	uint8_t kind;
	uint8_t hits;        /* hits routed back for it */
	uint16_t len;
	uint8_t data[];
};

struct neighbor {
	bool used;
	bool dropped;        /* DROP_NEIGHBOR was issued */
	uint32_t key;
	uint32_t strikes;
	struct pn_bucket bucket;
};

struct own_query {
	uint32_t handle;
	bool ring;
	uint8_t kind;
	uint8_t max_ttl;
	uint8_t ttl;         /* of the current step */
	uint8_t nsteps;
	uint16_t len;
	uint32_t want;
	uint32_t hits;
	uint64_t deadline;   /* end of the current step */
	uint8_t ids[FLOOD_RING_MAX_STEPS][FLOOD_QID_BYTES];
	uint8_t data[FLOOD_MAX_QUERY_DATA];
};

struct pending {
	enum flood_action_type type;
	bool dead;           /* purged; skipped when drained */
	uint32_t nb;
	uint32_t handle;
	uint32_t hits;
	uint8_t id[FLOOD_QID_BYTES];
	uint8_t ttl, hops;   /* LOCAL_QUERY */
	struct seen *entry;  /* LOCAL_QUERY: the query's bytes */
	uint8_t *payload;    /* hits: owned copy, freed when the slot is reused */
	size_t len;
};

/* A query to send to every neighbour slot in `targets`. */
struct bcast {
	uint64_t targets;
	struct seen *entry;   /* forwarded query, or NULL */
	struct own_query *own; /* own ring step, or NULL */
	uint8_t id[FLOOD_QID_BYTES];
	uint8_t ttl, hops;
};

struct flood {
	uint8_t max_ttl;
	uint8_t ring_first_ttl;
	uint32_t cache_max;
	uint32_t cache_ttl_ms;
	uint32_t rate_per_s;
	uint32_t max_strikes;
	uint32_t ring_wait_ms;
	struct pn_prng prng;
	uint64_t hash_key[2];

	struct seen **buckets;
	uint32_t nbuckets;
	uint32_t buckets_max;
	struct seen *oldest, *newest;
	uint32_t nseen;

	struct neighbor nbs[FLOOD_MAX_NEIGHBORS];
	uint32_t nnbs;

	struct own_query *own[FLOOD_MAX_ACTIVE_QUERIES];
	uint32_t nown;
	uint32_t last_handle;

	struct pending queue[FLOOD_QUEUE_MAX];
	uint32_t qhead, qlen;
	struct bcast jobs[FLOOD_JOBS_MAX];
	uint32_t jhead, jlen;

	struct flood_stats stats;
};

static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t add_sat(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint32_t bucket_of(const struct flood *f, const uint8_t id[FLOOD_QID_BYTES], uint32_t nbuckets)
{
	uint64_t lo, hi;

	memcpy(&lo, id, sizeof(lo));
	memcpy(&hi, id + sizeof(lo), sizeof(hi));
	return (uint32_t)(mix64(mix64(lo ^ f->hash_key[0]) ^ hi ^ f->hash_key[1]) & (nbuckets - 1));
}

/* ---- action queue ---- */

static bool queue_room(const struct flood *f)
{
	return f->qlen < FLOOD_QUEUE_MAX;
}

/* Returns a cleared slot at the tail, or NULL (counted) when full. */
static struct pending *queue_push(struct flood *f, enum flood_action_type type)
{
	if (!queue_room(f)) {
		f->stats.actions_dropped++;
		return NULL;
	}
	struct pending *p = &f->queue[(f->qhead + f->qlen++) % FLOOD_QUEUE_MAX];

	free(p->payload); /* handed out earlier; the caller's pointer has expired */
	memset(p, 0, sizeof(*p));
	p->type = type;
	return p;
}

static inline struct pending *queue_at(struct flood *f, uint32_t i)
{
	return &f->queue[(f->qhead + i) % FLOOD_QUEUE_MAX];
}

/* A queued hit that will never go out counts as unroutable. */
static void pending_kill(struct flood *f, struct pending *p)
{
	if (p->type == FLOOD_SEND_HIT || p->type == FLOOD_DELIVER_HIT)
		f->stats.hits_unroutable++;
	free(p->payload);
	p->payload = NULL;
	p->dead = true;
}

static struct bcast *job_push(struct flood *f)
{
	if (f->jlen == FLOOD_JOBS_MAX) {
		f->stats.actions_dropped++;
		return NULL;
	}
	struct bcast *b = &f->jobs[(f->jhead + f->jlen++) % FLOOD_JOBS_MAX];

	memset(b, 0, sizeof(*b));
	return b;
}

static inline struct bcast *job_at(struct flood *f, uint32_t i)
{
	return &f->jobs[(f->jhead + i) % FLOOD_JOBS_MAX];
}

/* Purges every queued action that points into e. */
static void forget_entry(struct flood *f, const struct seen *e)
{
	for (uint32_t i = 0; i < f->qlen; i++) {
		struct pending *p = queue_at(f, i);

		if (!p->dead && p->entry == e)
			pending_kill(f, p);
	}
	for (uint32_t i = 0; i < f->jlen; i++)
		if (job_at(f, i)->entry == e)
			job_at(f, i)->targets = 0;
}

/* ---- neighbours ---- */

static struct neighbor *nb_find(struct flood *f, uint32_t key)
{
	for (uint32_t i = 0; i < FLOOD_MAX_NEIGHBORS; i++)
		if (f->nbs[i].used && f->nbs[i].key == key)
			return &f->nbs[i];
	return NULL;
}

/* Mask of the used neighbour slots, without the one keyed `except` if skip. */
static uint64_t nb_mask(const struct flood *f, bool skip, uint32_t except)
{
	uint64_t mask = 0;

	for (uint32_t i = 0; i < FLOOD_MAX_NEIGHBORS; i++)
		if (f->nbs[i].used && !(skip && f->nbs[i].key == except))
			mask |= (uint64_t)1 << i;
	return mask;
}

/* True if a query from n fits its rate; otherwise a strike, and at
 * max_strikes a DROP_NEIGHBOR. A neighbour whose bucket has filled up again
 * (quiet for a while) is forgiven its strikes. */
static bool rate_ok(struct flood *f, struct neighbor *n, uint64_t now)
{
	pn_bucket_refill(&n->bucket, now);
	if (n->bucket.tokens >= n->bucket.burst)
		n->strikes = 0;
	if (n->bucket.tokens >= 1) {
		pn_bucket_take(&n->bucket, 1, now);
		return true;
	}
	f->stats.rate_limited++;
	if (++n->strikes >= f->max_strikes && !n->dropped) {
		struct pending *p = queue_push(f, FLOOD_DROP_NEIGHBOR);

		if (p) {
			p->nb = n->key;
			n->dropped = true;
		}
	}
	return false;
}

/* ---- seen-cache ---- */

static struct seen *cache_find(struct flood *f, const uint8_t id[FLOOD_QID_BYTES])
{
	if (!f->nbuckets)
		return NULL;
	for (struct seen *e = f->buckets[bucket_of(f, id, f->nbuckets)]; e; e = e->chain)
		if (!memcmp(e->id, id, FLOOD_QID_BYTES))
			return e;
	return NULL;
}

/* Unlinks and frees the oldest entry. */
static void cache_drop_oldest(struct flood *f)
{
	struct seen *e = f->oldest;
	struct seen **link = &f->buckets[bucket_of(f, e->id, f->nbuckets)];

	while (*link != e)
		link = &(*link)->chain;
	*link = e->chain;
	f->oldest = e->newer;
	if (!f->oldest)
		f->newest = NULL;
	f->nseen--;
	forget_entry(f, e);
	free(e);
}

static void cache_expire(struct flood *f, uint64_t now)
{
	while (f->oldest && f->oldest->expires <= now)
		cache_drop_oldest(f);
}

/* Doubles the bucket array while entries outnumber buckets (up to the cap). */
static void cache_grow(struct flood *f)
{
	if (f->nbuckets && (f->nseen < f->nbuckets || f->nbuckets >= f->buckets_max))
		return;
	uint32_t n = f->nbuckets ? f->nbuckets * 2 : FLOOD_BUCKETS_INITIAL;
	struct seen **nb = calloc(n, sizeof(*nb));

	if (!nb)
		return; /* longer chains, still correct */
	for (struct seen *e = f->oldest; e; e = e->newer) {
		uint32_t b = bucket_of(f, e->id, n);

		e->chain = nb[b];
		nb[b] = e;
	}
	free(f->buckets);
	f->buckets = nb;
	f->nbuckets = n;
}

/* Adds an entry for id (not present), evicting the oldest at cache_max.
 * Copies len bytes of data. NULL on allocation failure. */
static struct seen *cache_insert(struct flood *f, const uint8_t id[FLOOD_QID_BYTES], const uint8_t *data,
				 uint16_t len, uint64_t now)
{
	while (f->nseen >= f->cache_max && f->oldest)
		cache_drop_oldest(f);
	cache_grow(f);
	if (!f->nbuckets)
		return NULL;
	struct seen *e = calloc(1, sizeof(*e) + len);

	if (!e)
		return NULL;
	memcpy(e->id, id, FLOOD_QID_BYTES);
	if (len)
		memcpy(e->data, data, len);
	e->len = len;
	e->expires = add_sat(now, f->cache_ttl_ms);
	uint32_t b = bucket_of(f, id, f->nbuckets);

	e->chain = f->buckets[b];
	f->buckets[b] = e;
	if (f->newest)
		f->newest->newer = e;
	else
		f->oldest = e;
	f->newest = e;
	f->nseen++;
	return e;
}

/* ---- own queries ---- */

static struct own_query *own_by_handle(struct flood *f, uint32_t handle, uint32_t *slot)
{
	for (uint32_t i = 0; i < FLOOD_MAX_ACTIVE_QUERIES; i++)
		if (f->own[i] && f->own[i]->handle == handle) {
			if (slot)
				*slot = i;
			return f->own[i];
		}
	return NULL;
}

/* The active own query that sent id in any of its ring steps, or NULL. */
static struct own_query *own_by_id(struct flood *f, const uint8_t id[FLOOD_QID_BYTES])
{
	for (uint32_t i = 0; i < FLOOD_MAX_ACTIVE_QUERIES; i++) {
		struct own_query *q = f->own[i];

		for (uint32_t s = 0; q && s < q->nsteps; s++)
			if (!memcmp(q->ids[s], id, FLOOD_QID_BYTES))
				return q;
	}
	return NULL;
}

/* Kills queued DELIVER_HIT and QUERY_DONE actions for handle. */
static void purge_handle(struct flood *f, uint32_t handle)
{
	for (uint32_t k = 0; k < f->qlen; k++) {
		struct pending *p = queue_at(f, k);

		if (!p->dead && p->handle == handle &&
		    (p->type == FLOOD_DELIVER_HIT || p->type == FLOOD_QUERY_DONE))
			pending_kill(f, p);
	}
}

/* Frees own query slot i; queued sends of its steps go with it (they point
 * at its bytes). Queued hits and QUERY_DONE stay: they hold copies. */
static void own_release(struct flood *f, uint32_t i)
{
	struct own_query *q = f->own[i];

	for (uint32_t k = 0; k < f->jlen; k++)
		if (job_at(f, k)->own == q)
			job_at(f, k)->targets = 0;
	free(q);
	f->own[i] = NULL;
	f->nown--;
}

/* Sends one step of q under a fresh query ID with the given ttl. */
static void own_step(struct flood *f, struct own_query *q, uint8_t ttl, uint64_t now)
{
	uint8_t *id = q->ids[q->nsteps++];
	uint64_t r0 = pn_prng_next(&f->prng), r1 = pn_prng_next(&f->prng);

	memcpy(id, &r0, sizeof(r0));
	memcpy(id + sizeof(r0), &r1, sizeof(r1));
	q->ttl = ttl;
	q->deadline = add_sat(now, (uint64_t)f->ring_wait_ms * ttl);
	f->stats.queries_started++;

	struct seen *e = cache_insert(f, id, NULL, 0, now); /* so loops bring it back as a duplicate */

	if (e) {
		e->handle = q->handle;
		e->best_ttl = ttl;
		e->kind = q->kind;
	}
	struct bcast *b = job_push(f);

	if (!b)
		return;
	b->targets = nb_mask(f, false, 0);
	b->own = q;
	memcpy(b->id, id, FLOOD_QID_BYTES);
	b->ttl = ttl;
	b->hops = 0;
}

/* ttl of the ring step after one with ttl t: 1, 2, 3, 5, 7, ... capped. */
static uint8_t ring_next_ttl(uint8_t t, uint8_t max_ttl)
{
	unsigned next = t < FLOOD_RING_SMALL_TTL ? t + 1u : t + 2u;

	return (uint8_t)(next < max_ttl ? next : max_ttl);
}

/* ---- public ---- */

struct flood *flood_new(const struct flood_opts *opts)
{
	struct flood_opts o = { 0 };
	struct flood *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	if (opts)
		o = *opts;
	f->max_ttl = o.max_ttl && o.max_ttl < FLOOD_MAX_TTL ? o.max_ttl : FLOOD_MAX_TTL;
	f->cache_max = o.cache_max ? o.cache_max : FLOOD_DEFAULT_CACHE_MAX;
	f->cache_ttl_ms = o.cache_ttl_ms ? o.cache_ttl_ms : FLOOD_DEFAULT_CACHE_TTL_MS;
	f->rate_per_s = o.rate_per_s ? o.rate_per_s : FLOOD_DEFAULT_RATE;
	f->max_strikes = o.max_strikes ? o.max_strikes : FLOOD_DEFAULT_STRIKES;
	f->ring_first_ttl = o.ring_first_ttl ? o.ring_first_ttl : FLOOD_DEFAULT_RING_FIRST;
	if (f->ring_first_ttl > f->max_ttl)
		f->ring_first_ttl = f->max_ttl;
	f->ring_wait_ms = o.ring_wait_ms ? o.ring_wait_ms : FLOOD_DEFAULT_RING_WAIT_MS;
	pn_prng_seed(&f->prng, o.seed);
	f->hash_key[0] = pn_prng_next(&f->prng);
	f->hash_key[1] = pn_prng_next(&f->prng);
	f->buckets_max = FLOOD_BUCKETS_INITIAL;
	while (f->buckets_max < f->cache_max && f->buckets_max < FLOOD_BUCKETS_MAX)
		f->buckets_max *= 2;
	return f;
}

void flood_free(struct flood *f)
{
	if (!f)
		return;
	while (f->oldest) {
		struct seen *e = f->oldest;

		f->oldest = e->newer;
		free(e);
	}
	free(f->buckets);
	for (uint32_t i = 0; i < FLOOD_MAX_ACTIVE_QUERIES; i++)
		free(f->own[i]);
	for (uint32_t i = 0; i < FLOOD_QUEUE_MAX; i++)
		free(f->queue[i].payload);
	free(f);
}

int flood_neighbor_add(struct flood *f, uint32_t nb, uint64_t now)
{
	if (nb_find(f, nb))
		return PN_EEXIST;
	for (uint32_t i = 0; i < FLOOD_MAX_NEIGHBORS; i++) {
		struct neighbor *n = &f->nbs[i];

		if (n->used)
			continue;
		memset(n, 0, sizeof(*n));
		n->used = true;
		n->key = nb;
		pn_bucket_init(&n->bucket, f->rate_per_s, (uint64_t)f->rate_per_s * FLOOD_BURST_FACTOR, now);
		f->nnbs++;
		return 0;
	}
	return PN_ELIMIT;
}

void flood_neighbor_remove(struct flood *f, uint32_t nb)
{
	struct neighbor *n = nb_find(f, nb);

	if (!n)
		return;
	uint64_t bit = (uint64_t)1 << (n - f->nbs);

	for (uint32_t i = 0; i < f->qlen; i++) {
		struct pending *p = queue_at(f, i);

		if (!p->dead && p->nb == nb && (p->type == FLOOD_SEND_HIT || p->type == FLOOD_DROP_NEIGHBOR))
			pending_kill(f, p);
	}
	for (uint32_t i = 0; i < f->jlen; i++)
		job_at(f, i)->targets &= ~bit;
	memset(n, 0, sizeof(*n));
	f->nnbs--;
}

size_t flood_neighbor_count(const struct flood *f)
{
	return f->nnbs;
}

void flood_on_query(struct flood *f, uint32_t nb, const struct flood_query *q, uint64_t now)
{
	cache_expire(f, now);
	f->stats.queries_received++;
	struct neighbor *n = nb_find(f, nb);

	if (!n || !q || q->len == 0 || q->len > FLOOD_MAX_QUERY_DATA || !q->data ||
	    (q->kind != FLOOD_KEYWORDS && q->kind != FLOOD_CID)) {
		f->stats.queries_invalid++;
		return;
	}
	if (n->dropped) {
		f->stats.rate_limited++;
		return;
	}
	/* Clamp so that ttl + hops <= max_ttl; nothing is left of a query that
	 * has already travelled the whole limit. */
	uint8_t ttl = q->ttl;

	if (q->hops >= f->max_ttl)
		ttl = 0;
	else if (ttl > f->max_ttl - q->hops)
		ttl = (uint8_t)(f->max_ttl - q->hops);
	if (ttl == 0) {
		f->stats.queries_invalid++;
		return;
	}

	struct seen *e = cache_find(f, q->id);

	if (!e && own_by_id(f, q->id)) {
		f->stats.duplicates_dropped++; /* our own, come back after its entry expired */
		return;
	}
	if (e && (e->handle || ttl <= e->best_ttl)) {
		/* Duplicates cost nothing to drop, so they are not charged to the
		 * sender's rate: a flood crosses most links twice, and charging the
		 * copies would make honest neighbours look like abusers. */
		f->stats.duplicates_dropped++;
		return;
	}
	if (!rate_ok(f, n, now))
		return;
	if (e) {
		/* A copy with more ttl left than any before reaches further: forward it. */
		e->best_ttl = ttl;
		f->stats.queries_reforwarded++;
	} else {
		e = cache_insert(f, q->id, q->data, q->len, now);
		if (!e) {
			f->stats.actions_dropped++;
			return;
		}
		e->from = nb;
		e->best_ttl = ttl;
		e->kind = q->kind;
		struct pending *p = queue_push(f, FLOOD_LOCAL_QUERY);

		if (p) {
			p->nb = nb;
			memcpy(p->id, q->id, FLOOD_QID_BYTES);
			p->ttl = ttl;
			p->hops = q->hops;
			p->entry = e;
		}
	}
	if (ttl <= 1)
		return;
	uint64_t targets = nb_mask(f, true, nb);
	struct bcast *b = targets ? job_push(f) : NULL;

	if (!b)
		return;
	b->targets = targets;
	b->entry = e;
	memcpy(b->id, q->id, FLOOD_QID_BYTES);
	b->ttl = (uint8_t)(ttl - 1);
	b->hops = (uint8_t)(q->hops + 1);
}

/* Queues a hit action with its own copy of the payload. */
static bool push_hit(struct flood *f, enum flood_action_type type, const uint8_t id[FLOOD_QID_BYTES],
		     const uint8_t *payload, size_t len, uint32_t nb, uint32_t handle)
{
	uint8_t *copy = NULL;

	if (!queue_room(f))
		return false;
	if (len) {
		copy = malloc(len);
		if (!copy)
			return false;
		memcpy(copy, payload, len);
	}
	struct pending *p = queue_push(f, type);

	p->nb = nb;
	p->handle = handle;
	memcpy(p->id, id, FLOOD_QID_BYTES);
	p->payload = copy;
	p->len = len;
	return true;
}

/* Routes a hit (from a neighbour, or our own answer) one hop back along the
 * reverse path, or delivers it if the query is ours. */
static void route_hit(struct flood *f, const uint8_t id[FLOOD_QID_BYTES], const uint8_t *payload, size_t len)
{
	if (len > FLOOD_MAX_HIT_PAYLOAD || (len && !payload)) {
		f->stats.hits_dropped++;
		return;
	}
	struct seen *e = cache_find(f, id);

	if (e && !e->handle) {
		if (!nb_find(f, e->from))
			f->stats.hits_unroutable++;
		else if (e->hits >= FLOOD_MAX_HITS_PER_QUERY || !push_hit(f, FLOOD_SEND_HIT, id, payload, len, e->from, 0))
			f->stats.hits_dropped++;
		else
			e->hits++;
		return;
	}
	struct own_query *q = e ? own_by_handle(f, e->handle, NULL) : own_by_id(f, id);

	if (!q)
		f->stats.hits_unroutable++;
	else if (q->hits >= FLOOD_MAX_HITS_PER_QUERY || !push_hit(f, FLOOD_DELIVER_HIT, id, payload, len, 0, q->handle))
		f->stats.hits_dropped++;
	else
		q->hits++;
}

void flood_on_hit(struct flood *f, uint32_t nb, const uint8_t qid[FLOOD_QID_BYTES], const uint8_t *payload,
		  size_t len, uint64_t now)
{
	(void)nb; /* a hit is routed by its ID, whoever brought it */
	cache_expire(f, now);
	f->stats.hits_received++;
	route_hit(f, qid, payload, len);
}

void flood_answer(struct flood *f, const uint8_t qid[FLOOD_QID_BYTES], const uint8_t *payload, size_t len,
		  uint64_t now)
{
	cache_expire(f, now);
	route_hit(f, qid, payload, len);
}

int flood_start(struct flood *f, uint8_t kind, const uint8_t *data, uint16_t len, uint8_t max_ttl, bool ring,
		uint32_t want, uint64_t now)
{
	if ((kind != FLOOD_KEYWORDS && kind != FLOOD_CID) || len == 0 || len > FLOOD_MAX_QUERY_DATA || !data)
		return PN_EINVAL;
	if (f->nown >= FLOOD_MAX_ACTIVE_QUERIES)
		return PN_ELIMIT;
	cache_expire(f, now);
	uint32_t slot = 0;

	while (f->own[slot])
		slot++;
	struct own_query *q = calloc(1, sizeof(*q));

	if (!q)
		return PN_ENOMEM;
	do { /* positive int, never one in use */
		f->last_handle = f->last_handle >= INT32_MAX ? 1 : f->last_handle + 1;
	} while (own_by_handle(f, f->last_handle, NULL));
	q->handle = f->last_handle;
	q->ring = ring;
	q->kind = kind;
	q->len = len;
	memcpy(q->data, data, len);
	q->max_ttl = max_ttl ? max_ttl : FLOOD_DEFAULT_TTL;
	if (q->max_ttl > f->max_ttl)
		q->max_ttl = f->max_ttl;
	q->want = want ? want : 1;
	f->own[slot] = q;
	f->nown++;
	own_step(f, q, ring && f->ring_first_ttl < q->max_ttl ? f->ring_first_ttl : q->max_ttl, now);
	return (int)q->handle;
}

void flood_cancel(struct flood *f, uint32_t handle)
{
	uint32_t slot;

	if (!handle)
		return;
	if (own_by_handle(f, handle, &slot))
		own_release(f, slot);
	purge_handle(f, handle); /* also a QUERY_DONE queued but not yet drained */
}

void flood_tick(struct flood *f, uint64_t now)
{
	cache_expire(f, now);
	for (uint32_t i = 0; i < FLOOD_MAX_ACTIVE_QUERIES; i++) {
		struct own_query *q = f->own[i];

		if (!q || q->deadline > now)
			continue;
		if (q->ring && q->hits < q->want && q->ttl < q->max_ttl && q->nsteps < FLOOD_RING_MAX_STEPS) {
			own_step(f, q, ring_next_ttl(q->ttl, q->max_ttl), now);
			continue;
		}
		/* No room (the caller did not drain): finish at the next tick. */
		struct pending *p = queue_room(f) ? queue_push(f, FLOOD_QUERY_DONE) : NULL;

		if (!p)
			continue;
		p->handle = q->handle;
		p->hits = q->hits;
		own_release(f, i);
	}
}

uint64_t flood_next_wakeup(const struct flood *f)
{
	uint64_t t = f->oldest ? add_sat(f->oldest->expires, FLOOD_SWEEP_MS) : UINT64_MAX;

	for (uint32_t i = 0; i < FLOOD_MAX_ACTIVE_QUERIES; i++)
		if (f->own[i] && f->own[i]->deadline < t)
			t = f->own[i]->deadline;
	return t;
}

bool flood_next_action(struct flood *f, struct flood_action *out)
{
	while (f->qlen) {
		struct pending *p = queue_at(f, 0);

		f->qhead = (f->qhead + 1) % FLOOD_QUEUE_MAX;
		f->qlen--;
		if (p->dead)
			continue;
		memset(out, 0, sizeof(*out));
		out->type = p->type;
		out->nb = p->nb;
		out->handle = p->handle;
		out->hits = p->hits;
		memcpy(out->qid, p->id, FLOOD_QID_BYTES);
		out->payload = p->payload; /* stays in the slot until it is reused */
		out->len = p->len;
		if (p->type == FLOOD_LOCAL_QUERY) {
			memcpy(out->q.id, p->id, FLOOD_QID_BYTES);
			out->q.ttl = p->ttl;
			out->q.hops = p->hops;
			out->q.kind = p->entry->kind;
			out->q.len = p->entry->len;
			out->q.data = p->entry->data;
		} else if (p->type == FLOOD_SEND_HIT) {
			f->stats.hits_sent++;
		} else if (p->type == FLOOD_DELIVER_HIT) {
			f->stats.hits_delivered++;
		}
		return true;
	}
	while (f->jlen) {
		struct bcast *b = job_at(f, 0);

		if (!b->targets) {
			f->jhead = (f->jhead + 1) % FLOOD_JOBS_MAX;
			f->jlen--;
			continue;
		}
		uint32_t slot = 0;

		while (!(b->targets & ((uint64_t)1 << slot)))
			slot++;
		b->targets &= ~((uint64_t)1 << slot);
		memset(out, 0, sizeof(*out));
		out->type = FLOOD_SEND_QUERY;
		out->nb = f->nbs[slot].key;
		memcpy(out->q.id, b->id, FLOOD_QID_BYTES);
		memcpy(out->qid, b->id, FLOOD_QID_BYTES);
		out->q.ttl = b->ttl;
		out->q.hops = b->hops;
		if (b->entry) {
			out->q.kind = b->entry->kind;
			out->q.len = b->entry->len;
			out->q.data = b->entry->data;
		} else {
			out->q.kind = b->own->kind;
			out->q.len = b->own->len;
			out->q.data = b->own->data;
		}
		f->stats.queries_sent++;
		return true;
	}
	return false;
}

const struct flood_stats *flood_get_stats(const struct flood *f)
{
	return &f->stats;
}

size_t flood_cache_count(const struct flood *f)
{
	return f->nseen;
}
