/* Upload choker (see choker.h and docs/PROTO-swarm.md).
 *
 * Each peer has a wanted state (unchoked or not, decided here at once) and an
 * announced state (what the caller last sent it). choker_next_action() walks
 * the peers whose two states differ, so at most one action per peer is ever
 * pending and a choke followed by an unchoke before a drain cancels out.
 */
#include <stdlib.h>
#include <string.h>
#include "peernet.h"
#include "proto/choker.h"
#include "proto/prng.h"

#define CHOKER_DEFAULT_SLOTS 4
#define CHOKER_DEFAULT_RECHOKE_MS 10000
#define CHOKER_DEFAULT_OPTIMISTIC_MS 30000
#define CHOKER_INITIAL_CAP 8
#define CHOKER_NONE UINT32_MAX

struct choker_peer {
	uint32_t key;
	bool interested;
	bool regular;      /* holds a regular slot */
	bool optimistic;   /* holds the optimistic slot */
	bool announced;    /* unchoked state last handed to the caller */
	uint64_t from;     /* bytes they sent us this period */
	uint64_t to;       /* bytes we sent them this period */
	uint64_t salt;     /* random tie-break, redrawn each rechoke */
};

struct choker_rank {
	uint64_t score;
	uint64_t salt;
	uint32_t slot;
};

struct choker {
	uint32_t slots;
	uint32_t rechoke_ms;
	uint32_t optimistic_ms;
	struct pn_prng prng;
	bool seeding;

	struct choker_peer *peers; /* dense: removal moves the last one in */
	struct choker_rank *rank;  /* scratch, same capacity */
	uint32_t npeers, cap;
	uint32_t nregular;
	uint32_t npending;         /* peers whose wanted and announced states differ */
	uint32_t cursor;

	uint64_t next_rechoke;
	uint64_t next_optimistic;
};

static inline bool wanted_unchoked(const struct choker_peer *p)
{
	return p->regular || p->optimistic;
}

static struct choker_peer *peer_find(struct choker *c, uint32_t key)
{
	for (uint32_t i = 0; i < c->npeers; i++)
		if (c->peers[i].key == key)
			return &c->peers[i];
	return NULL;
}

/* Sets a peer's slot flags, keeping npending and nregular in step. */
static void peer_set(struct choker *c, struct choker_peer *p, bool regular, bool optimistic)
{
	bool was_pending = wanted_unchoked(p) != p->announced;

	c->nregular += (uint32_t)regular - (uint32_t)p->regular;
	p->regular = regular;
	p->optimistic = optimistic;
	bool pending = wanted_unchoked(p) != p->announced;

	c->npending += (uint32_t)pending - (uint32_t)was_pending;
}

static uint64_t score(const struct choker *c, const struct choker_peer *p)
{
	return c->seeding ? p->to : p->from;
}

static struct choker_peer *optimistic_peer(struct choker *c)
{
	for (uint32_t i = 0; i < c->npeers; i++)
		if (c->peers[i].optimistic)
			return &c->peers[i];
	return NULL;
}

static bool waiting(const struct choker_peer *p)
{
	return p->interested && !wanted_unchoked(p);
}

/* The best-scoring waiting peer (ties by salt), or NULL. */
static struct choker_peer *best_waiting(struct choker *c)
{
	struct choker_peer *best = NULL;

	for (uint32_t i = 0; i < c->npeers; i++) {
		struct choker_peer *p = &c->peers[i];

		if (!waiting(p))
			continue;
		if (!best || score(c, p) > score(c, best) ||
		    (score(c, p) == score(c, best) && p->salt > best->salt))
			best = p;
	}
	return best;
}

/* A uniformly random waiting peer other than avoid (unless it is the only
 * one), or NULL. */
static struct choker_peer *random_waiting(struct choker *c, const struct choker_peer *avoid)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < c->npeers; i++)
		n += waiting(&c->peers[i]) && &c->peers[i] != avoid;
	if (n == 0)
		return avoid && waiting(avoid) ? (struct choker_peer *)avoid : NULL;
	uint32_t pick = pn_prng_below(&c->prng, n);

	for (uint32_t i = 0; i < c->npeers; i++) {
		struct choker_peer *p = &c->peers[i];

		if (waiting(p) && p != avoid && pick-- == 0)
			return p;
	}
	return NULL;
}

/* Gives free slots to waiting peers: regular ones by score, the optimistic
 * one at random. */
static void fill_free_slots(struct choker *c)
{
	struct choker_peer *p;

	while (c->nregular < c->slots && (p = best_waiting(c)))
		peer_set(c, p, true, false);
	if (!optimistic_peer(c) && (p = random_waiting(c, NULL)))
		peer_set(c, p, false, true);
}

static int rank_cmp(const void *a, const void *b)
{
	const struct choker_rank *x = a, *y = b;

	if (x->score != y->score)
		return x->score < y->score ? 1 : -1;
	if (x->salt != y->salt)
		return x->salt < y->salt ? 1 : -1;
	return 0;
}

/* Periodic decision. rechoke: regular slots to the best interested peers of
 * the period just ended (the optimistic peer keeps its slot). rotate: the
 * optimistic slot moves to another random waiting peer. */
static void rechoke(struct choker *c, bool regular_due, bool rotate)
{
	struct choker_peer *old_opt = optimistic_peer(c);

	for (uint32_t i = 0; i < c->npeers; i++)
		c->peers[i].salt = pn_prng_next(&c->prng);
	if (rotate && old_opt)
		peer_set(c, old_opt, old_opt->regular, false);
	if (regular_due) {
		uint32_t n = 0;

		for (uint32_t i = 0; i < c->npeers; i++) {
			struct choker_peer *p = &c->peers[i];

			if (!p->interested || p->optimistic)
				continue;
			c->rank[n].score = score(c, p);
			c->rank[n].salt = p->salt;
			c->rank[n].slot = i;
			n++;
		}
		if (n > 1)
			qsort(c->rank, n, sizeof(*c->rank), rank_cmp);
		for (uint32_t k = 0; k < n; k++) {
			struct choker_peer *p = &c->peers[c->rank[k].slot];

			peer_set(c, p, k < c->slots, false);
		}
		for (uint32_t i = 0; i < c->npeers; i++)
			c->peers[i].from = c->peers[i].to = 0;
	}
	if (rotate) {
		struct choker_peer *p = random_waiting(c, old_opt);

		if (p)
			peer_set(c, p, false, true);
	}
	fill_free_slots(c);
}

struct choker *choker_new(const struct choker_opts *opts, uint64_t now)
{
	struct choker *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->slots = opts && opts->slots ? opts->slots : CHOKER_DEFAULT_SLOTS;
	if (c->slots > CHOKER_MAX_PEERS)
		c->slots = CHOKER_MAX_PEERS;
	c->rechoke_ms = opts && opts->rechoke_ms ? opts->rechoke_ms : CHOKER_DEFAULT_RECHOKE_MS;
	c->optimistic_ms = opts && opts->optimistic_ms ? opts->optimistic_ms : CHOKER_DEFAULT_OPTIMISTIC_MS;
	pn_prng_seed(&c->prng, opts ? opts->seed : 0);
	c->next_rechoke = now + c->rechoke_ms;
	c->next_optimistic = now + c->optimistic_ms;
	return c;
}

void choker_free(struct choker *c)
{
	if (!c)
		return;
	free(c->peers);
	free(c->rank);
	free(c);
}

/* Grows the peer and scratch arrays together, up to CHOKER_MAX_PEERS. */
static int grow(struct choker *c)
{
	uint32_t ncap = c->cap ? c->cap * 2 : CHOKER_INITIAL_CAP;

	if (ncap > CHOKER_MAX_PEERS)
		ncap = CHOKER_MAX_PEERS;
	struct choker_peer *np = realloc(c->peers, ncap * sizeof(*np));

	if (!np)
		return PN_ENOMEM;
	c->peers = np;
	struct choker_rank *nr = realloc(c->rank, ncap * sizeof(*nr));

	if (!nr)
		return PN_ENOMEM;
	c->rank = nr;
	c->cap = ncap;
	return 0;
}

int choker_peer_add(struct choker *c, uint32_t peer, uint64_t now)
{
	(void)now;
	if (peer_find(c, peer))
		return PN_EEXIST;
	if (c->npeers >= CHOKER_MAX_PEERS)
		return PN_ELIMIT;
	if (c->npeers == c->cap) {
		int err = grow(c);

		if (err)
			return err;
	}
	struct choker_peer *p = &c->peers[c->npeers++];

	memset(p, 0, sizeof(*p));
	p->key = peer;
	p->salt = pn_prng_next(&c->prng);
	return 0;
}

void choker_peer_remove(struct choker *c, uint32_t peer)
{
	struct choker_peer *p = peer_find(c, peer);

	if (!p)
		return;
	peer_set(c, p, false, false);
	if (p->announced)
		c->npending--; /* nothing more is said to a peer that is gone */
	*p = c->peers[--c->npeers];
	fill_free_slots(c);
}

void choker_interested(struct choker *c, uint32_t peer, bool interested, uint64_t now)
{
	(void)now;
	struct choker_peer *p = peer_find(c, peer);

	if (!p || p->interested == interested)
		return;
	p->interested = interested;
	if (!interested)
		peer_set(c, p, false, false);
	fill_free_slots(c);
}

void choker_set_seeding(struct choker *c, bool seeding)
{
	c->seeding = seeding;
}

void choker_bytes_from(struct choker *c, uint32_t peer, uint64_t bytes)
{
	struct choker_peer *p = peer_find(c, peer);

	if (p)
		p->from += bytes;
}

void choker_bytes_to(struct choker *c, uint32_t peer, uint64_t bytes)
{
	struct choker_peer *p = peer_find(c, peer);

	if (p)
		p->to += bytes;
}

bool choker_is_unchoked(const struct choker *c, uint32_t peer)
{
	for (uint32_t i = 0; i < c->npeers; i++)
		if (c->peers[i].key == peer)
			return wanted_unchoked(&c->peers[i]);
	return false;
}

/* Moves a deadline past now by whole periods. */
static uint64_t advance(uint64_t deadline, uint32_t period, uint64_t now)
{
	return deadline + ((now - deadline) / period + 1) * period;
}

void choker_tick(struct choker *c, uint64_t now)
{
	bool regular_due = now >= c->next_rechoke;
	bool rotate = now >= c->next_optimistic;

	if (!regular_due && !rotate)
		return;
	rechoke(c, regular_due, rotate);
	if (regular_due)
		c->next_rechoke = advance(c->next_rechoke, c->rechoke_ms, now);
	if (rotate)
		c->next_optimistic = advance(c->next_optimistic, c->optimistic_ms, now);
}

uint64_t choker_next_wakeup(const struct choker *c)
{
	if (c->npeers == 0)
		return UINT64_MAX; /* nobody to choke: an idle node sleeps (a late rechoke catches up) */
	return c->next_rechoke < c->next_optimistic ? c->next_rechoke : c->next_optimistic;
}

bool choker_next_action(struct choker *c, struct choker_action *out)
{
	if (c->npending == 0)
		return false;
	for (uint32_t k = 0; k < c->npeers; k++) {
		uint32_t i = (c->cursor + k) % c->npeers;
		struct choker_peer *p = &c->peers[i];
		bool unchoked = wanted_unchoked(p);

		if (unchoked == p->announced)
			continue;
		p->announced = unchoked;
		c->npending--;
		c->cursor = i + 1;
		out->type = unchoked ? CHOKER_UNCHOKE : CHOKER_CHOKE;
		out->peer = p->key;
		return true;
	}
	return false;
}
