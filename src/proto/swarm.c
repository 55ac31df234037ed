/* Swarm download scheduler (see swarm.h and docs/PROTO-swarm.md).
 *
 * Missing chunks live in one array, `order`, grouped into regions by
 * availability: region 0 holds the chunks we have, region a+1 the missing
 * chunks that a connected peers hold. Moving a chunk to the next region up or
 * down is one swap and one boundary change, so availability is kept sorted
 * incrementally in O(1) per HAVE. A pick walks the regions from the rarest,
 * starting each at a random offset, and stops at the first chunk the peer
 * holds that is not yet asked for.
 *
 * Requests are not queued ahead: swarm_next_action() first drains the queue of
 * CANCEL/DROP_PEER actions, then fills one free slot of the next unchoked
 * peer in round-robin order. The queue therefore only ever holds at most one
 * action per request in flight plus one per dropped peer.
 */
#include <stdlib.h>
#include <string.h>
#include "peernet.h"
#include "proto/prng.h"
#include "proto/swarm.h"
#include "util/u32map.h"

#define SWARM_DEFAULT_INFLIGHT 8
#define SWARM_MAX_INFLIGHT 128       /* clamp of opts.per_peer_inflight */
#define SWARM_DEFAULT_TIMEOUT_MS 15000
#define SWARM_STALE_FACTOR 2         /* a timed-out request holds its slot until 2x the timeout */
#define SWARM_MAX_BANNED 4096        /* oldest ban forgotten beyond this */
#define SWARM_QUEUE_INITIAL 16
#define SWARM_NREGIONS (SWARM_MAX_PEERS + 2) /* had, then availability 0..SWARM_MAX_PEERS */
#define SWARM_NONE UINT32_MAX

struct swarm_req {
	uint32_t index;
	bool stale;        /* timed out and cancelled; still holds the slot */
	uint64_t sent_at;
};

struct swarm_peer {
	bool used;
	bool choked;
	bool stuck;        /* a fill found no chunk at generation stuck_gen */
	bool keeps;        /* its requests never move to another peer */
	uint32_t key;
	uint32_t limit;    /* current request slots, 1..max */
	uint32_t max;      /* this peer's ceiling, 1..s->inflight */
	uint32_t nreqs;
	uint32_t wanted;   /* chunks it has that we lack */
	uint64_t stuck_gen;
	uint8_t *bits;     /* nbytes, MSB first */
	struct swarm_req *reqs; /* s->inflight entries */
};

struct swarm {
	uint32_t nchunks;
	uint32_t nbytes;
	uint32_t inflight;
	uint32_t timeout_ms;
	uint32_t move_after_ms; /* 0: a request stays where it was sent */
	bool sequential;       /* lowest index first instead of rarest first */
	uint32_t seq_lo;       /* sequential or streaming: every chunk below is had */
	uint32_t stream_window;/* streaming: chunks from seq_lo asked for in order first */
	struct pn_prng prng;

	uint8_t *have;
	uint32_t have_count;
	uint16_t *avail;       /* connected peers holding each chunk */
	uint8_t *active;       /* live (not timed-out) requests per chunk */
	uint16_t *outstanding; /* all request records per chunk, live or stale */
	uint32_t *order;       /* chunks grouped by region */
	uint32_t *pos;         /* position of each chunk in order */
	uint32_t region_start[SWARM_NREGIONS + 1];
	uint32_t unrequested;  /* missing chunks with no live request */
	uint64_t gen;          /* bumped whenever a chunk may have become requestable */
	uint64_t last_now;     /* latest time handed in: the send time of new requests */
	uint64_t due_min;      /* earliest time a request times out or frees its slot */
	bool due_recount;      /* due_min may be too early: recount it */
	bool move_dirty;       /* something changed since a move scan found nothing */
	uint64_t move_next_at; /* ... or a request grows old enough to move then */

	struct swarm_peer peers[SWARM_MAX_PEERS];
	uint32_t npeers;
	uint32_t hi;           /* one past the highest used slot: loops stop there */
	struct pn_u32map slot_of; /* peer key -> slot */
	uint32_t cursor;       /* round-robin start of the next fill */

	uint32_t *banned;
	uint32_t nbanned;
	uint32_t banned_next;

	struct swarm_action *queue;
	uint32_t qhead, qlen, qcap;
	bool done_emitted;
};

static inline bool bit_get(const uint8_t *bits, uint32_t index)
{
	return (bits[index >> 3] & (0x80u >> (index & 7))) != 0;
}

static inline void bit_set(uint8_t *bits, uint32_t index)
{
	bits[index >> 3] |= (uint8_t)(0x80u >> (index & 7));
}

/* Mask of the valid bits of the last bitmap byte. */
static uint8_t last_byte_mask(uint32_t nchunks)
{
	uint32_t tail = nchunks & 7;

	return tail ? (uint8_t)(0xffu << (8 - tail)) : 0xffu;
}

static inline uint32_t region_of(const struct swarm *s, uint32_t index)
{
	return bit_get(s->have, index) ? 0 : (uint32_t)s->avail[index] + 1;
}

static void order_swap(struct swarm *s, uint32_t a, uint32_t b)
{
	uint32_t ca = s->order[a], cb = s->order[b];

	s->order[a] = cb;
	s->pos[cb] = a;
	s->order[b] = ca;
	s->pos[ca] = b;
}

/* Moves chunk from region r (r >= 1) to the end of region r-1. */
static void region_down(struct swarm *s, uint32_t index, uint32_t r)
{
	order_swap(s, s->pos[index], s->region_start[r]);
	s->region_start[r]++;
}

/* Moves chunk from region r to the start of region r+1. */
static void region_up(struct swarm *s, uint32_t index, uint32_t r)
{
	order_swap(s, s->pos[index], s->region_start[r + 1] - 1);
	s->region_start[r + 1]--;
}

static void avail_inc(struct swarm *s, uint32_t index)
{
	if (!bit_get(s->have, index))
		region_up(s, index, region_of(s, index));
	s->avail[index]++;
}

static void avail_dec(struct swarm *s, uint32_t index)
{
	if (!bit_get(s->have, index))
		region_down(s, index, region_of(s, index));
	s->avail[index]--;
}

/* Marks a missing chunk as had: it sinks into region 0. */
static void mark_had(struct swarm *s, uint32_t index)
{
	for (uint32_t r = region_of(s, index); r > 0; r--)
		region_down(s, index, r);
	bit_set(s->have, index);
	s->have_count++;
}

static void active_inc(struct swarm *s, uint32_t index)
{
	if (s->active[index]++ == 0 && s->unrequested > 0 && --s->unrequested == 0)
		s->gen++; /* end game begins: every peer may now duplicate */
}

/* A live request ended without the chunk arriving. */
static void active_dec(struct swarm *s, uint32_t index)
{
	if (--s->active[index] == 0 && !bit_get(s->have, index))
		s->unrequested++;
	if (!bit_get(s->have, index))
		s->gen++;
}

/* Requests are made in swarm_next_action, which takes no time: they are
 * stamped with the latest time any event carried. */
static void see_time(struct swarm *s, uint64_t now)
{
	if (now > s->last_now)
		s->last_now = now;
}

static struct swarm_peer *peer_find(struct swarm *s, uint32_t key)
{
	uint32_t slot;

	return pn_u32map_get(&s->slot_of, key, &slot) ? &s->peers[slot] : NULL;
}

static const struct swarm_peer *peer_lookup(const struct swarm *s, uint32_t key)
{
	uint32_t slot;

	return pn_u32map_get(&s->slot_of, key, &slot) ? &s->peers[slot] : NULL;
}

static int req_find(const struct swarm_peer *p, uint32_t index)
{
	for (uint32_t i = 0; i < p->nreqs; i++)
		if (p->reqs[i].index == index)
			return (int)i;
	return -1;
}

/* Every removal or time-out of a request may raise the earliest due time:
 * it is then recounted on the next swarm_next_wakeup. */
static void req_remove(struct swarm *s, struct swarm_peer *p, uint32_t i)
{
	p->reqs[i] = p->reqs[--p->nreqs];
	s->due_recount = true;
	s->move_dirty = true;
}

static bool is_banned(const struct swarm *s, uint32_t key)
{
	for (uint32_t i = 0; i < s->nbanned; i++)
		if (s->banned[i] == key)
			return true;
	return false;
}

static void ban(struct swarm *s, uint32_t key)
{
	if (is_banned(s, key))
		return;
	s->banned[s->banned_next] = key;
	s->banned_next = (s->banned_next + 1) % SWARM_MAX_BANNED;
	if (s->nbanned < SWARM_MAX_BANNED)
		s->nbanned++;
}

/* Appends an action; the queue grows as needed (its length is bounded by the
 * requests in flight plus the peers, see the file comment). On allocation
 * failure a CANCEL is lost, which only costs a redundant chunk. */
static void queue_push(struct swarm *s, enum swarm_action_type type, uint32_t peer, uint32_t index)
{
	if (s->qlen == s->qcap) {
		uint32_t ncap = s->qcap ? s->qcap * 2 : SWARM_QUEUE_INITIAL;
		struct swarm_action *nq = malloc(ncap * sizeof(*nq));

		if (!nq)
			return;
		for (uint32_t i = 0; i < s->qlen; i++)
			nq[i] = s->queue[(s->qhead + i) % s->qcap];
		free(s->queue);
		s->queue = nq;
		s->qcap = ncap;
		s->qhead = 0;
	}
	struct swarm_action *a = &s->queue[(s->qhead + s->qlen) % s->qcap];

	a->type = type;
	a->peer = peer;
	a->index = index;
	s->qlen++;
}

/* Drops every queued action addressed to peer. */
static void queue_purge(struct swarm *s, uint32_t peer)
{
	uint32_t kept = 0;

	for (uint32_t i = 0; i < s->qlen; i++) {
		struct swarm_action a = s->queue[(s->qhead + i) % s->qcap];

		if (a.peer != peer)
			s->queue[(s->qhead + kept++) % s->qcap] = a;
	}
	s->qlen = kept;
}

/* Replaces peer's bitmap with bitmap (NULL: empty), adjusting availability
 * and the peer's wanted count bit by bit. */
static void peer_set_bits(struct swarm *s, struct swarm_peer *p, const uint8_t *bitmap)
{
	uint8_t mask_last = last_byte_mask(s->nchunks);

	for (uint32_t b = 0; b < s->nbytes; b++) {
		uint8_t nb = bitmap ? bitmap[b] : 0;

		if (b == s->nbytes - 1)
			nb &= mask_last;
		uint8_t diff = p->bits[b] ^ nb;

		for (uint32_t k = 0; diff && k < 8; k++) {
			uint8_t m = (uint8_t)(0x80u >> k);

			if (!(diff & m))
				continue;
			diff &= (uint8_t)~m;
			uint32_t index = b * 8 + k;
			bool missing = !bit_get(s->have, index);

			if (nb & m) {
				avail_inc(s, index);
				p->wanted += missing;
			} else {
				avail_dec(s, index);
				p->wanted -= missing;
			}
		}
		p->bits[b] = nb;
	}
	p->stuck = false;
	s->move_dirty = true;
}

/* Gives back every request of p (no CANCEL: the peer is gone or choked us). */
static void peer_release_reqs(struct swarm *s, struct swarm_peer *p)
{
	for (uint32_t i = 0; i < p->nreqs; i++) {
		uint32_t index = p->reqs[i].index;

		s->outstanding[index]--;
		if (!p->reqs[i].stale)
			active_dec(s, index);
	}
	p->nreqs = 0;
	s->due_recount = true;
	s->move_dirty = true;
}

/* Forgets p: requests re-queued, availability lowered, pending actions dropped. */
static void peer_detach(struct swarm *s, struct swarm_peer *p)
{
	peer_release_reqs(s, p);
	peer_set_bits(s, p, NULL);
	queue_purge(s, p->key);
	pn_u32map_del(&s->slot_of, p->key);
	free(p->bits);
	free(p->reqs);
	memset(p, 0, sizeof(*p));
	s->npeers--;
	while (s->hi > 0 && !s->peers[s->hi - 1].used)
		s->hi--;
}

struct swarm *swarm_new(const struct swarm_opts *opts, const uint8_t *have)
{
	if (!opts || opts->nchunks == 0 || opts->nchunks > PN_MAX_CHUNKS)
		return NULL;
	struct swarm *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->nchunks = opts->nchunks;
	s->due_min = UINT64_MAX;
	s->nbytes = (opts->nchunks + 7) / 8;
	s->inflight = opts->per_peer_inflight ? opts->per_peer_inflight : SWARM_DEFAULT_INFLIGHT;
	if (s->inflight > SWARM_MAX_INFLIGHT)
		s->inflight = SWARM_MAX_INFLIGHT;
	s->timeout_ms = opts->request_timeout_ms ? opts->request_timeout_ms : SWARM_DEFAULT_TIMEOUT_MS;
	s->sequential = opts->sequential;
	s->stream_window = opts->stream_window;
	s->move_after_ms = opts->move_after_ms;
	pn_prng_seed(&s->prng, opts->seed);

	s->have = calloc(s->nbytes, 1);
	s->avail = calloc(s->nchunks, sizeof(*s->avail));
	s->active = calloc(s->nchunks, sizeof(*s->active));
	s->outstanding = calloc(s->nchunks, sizeof(*s->outstanding));
	s->order = calloc(s->nchunks, sizeof(*s->order));
	s->pos = calloc(s->nchunks, sizeof(*s->pos));
	s->banned = calloc(SWARM_MAX_BANNED, sizeof(*s->banned));
	if (!s->have || !s->avail || !s->active || !s->outstanding || !s->order || !s->pos || !s->banned)
		goto fail;

	/* Had chunks first (region 0), then every missing one at availability 0. */
	uint32_t n = 0;

	for (int pass = 0; pass < 2; pass++) {
		for (uint32_t i = 0; i < s->nchunks; i++) {
			bool had = have && bit_get(have, i);

			if (had != (pass == 0))
				continue;
			s->order[n] = i;
			s->pos[i] = n++;
			if (had)
				bit_set(s->have, i);
		}
		if (pass == 0)
			s->have_count = n;
	}
	s->region_start[0] = 0;
	s->region_start[1] = s->have_count;
	for (uint32_t r = 2; r <= SWARM_NREGIONS; r++)
		s->region_start[r] = s->nchunks;
	s->unrequested = s->nchunks - s->have_count;
	return s;
fail:
	swarm_free(s);
	return NULL;
}

void swarm_free(struct swarm *s)
{
	if (!s)
		return;
	for (uint32_t i = 0; i < SWARM_MAX_PEERS; i++) {
		free(s->peers[i].bits);
		free(s->peers[i].reqs);
	}
	free(s->have);
	free(s->avail);
	free(s->active);
	free(s->outstanding);
	free(s->order);
	free(s->pos);
	free(s->banned);
	free(s->queue);
	pn_u32map_free(&s->slot_of);
	free(s);
}

int swarm_peer_add(struct swarm *s, uint32_t peer, const uint8_t *bitmap, uint64_t now)
{
	see_time(s, now);
	if (is_banned(s, peer))
		return PN_EACCES;
	if (peer_find(s, peer))
		return PN_EEXIST;
	if (s->npeers >= SWARM_MAX_PEERS)
		return PN_ELIMIT;
	struct swarm_peer *p = NULL;
	uint32_t slot = 0;

	for (; slot < SWARM_MAX_PEERS && !p; slot++)
		if (!s->peers[slot].used)
			p = &s->peers[slot];
	slot--;
	p->bits = calloc(s->nbytes, 1);
	p->reqs = calloc(s->inflight, sizeof(*p->reqs));
	if (!p->bits || !p->reqs || pn_u32map_put(&s->slot_of, peer, slot) != 0) {
		free(p->bits);
		free(p->reqs);
		p->bits = NULL;
		p->reqs = NULL;
		return PN_ENOMEM;
	}
	p->used = true;
	p->key = peer;
	p->choked = true;
	p->limit = p->max = s->inflight;
	s->npeers++;
	if (slot + 1 > s->hi)
		s->hi = slot + 1;
	if (bitmap)
		peer_set_bits(s, p, bitmap);
	return 0;
}

void swarm_peer_remove(struct swarm *s, uint32_t peer)
{
	struct swarm_peer *p = peer_find(s, peer);

	if (p)
		peer_detach(s, p);
}

void swarm_peer_have(struct swarm *s, uint32_t peer, uint32_t index, uint64_t now)
{
	see_time(s, now);
	struct swarm_peer *p = peer_find(s, peer);

	if (!p || index >= s->nchunks || bit_get(p->bits, index))
		return;
	bit_set(p->bits, index);
	avail_inc(s, index);
	if (!bit_get(s->have, index)) {
		p->wanted++;
		p->stuck = false;
		if (!p->choked)
			s->move_dirty = true;
	}
}

void swarm_peer_bitfield(struct swarm *s, uint32_t peer, const uint8_t *bitmap, uint64_t now)
{
	see_time(s, now);
	struct swarm_peer *p = peer_find(s, peer);

	if (p)
		peer_set_bits(s, p, bitmap);
}

void swarm_peer_choked(struct swarm *s, uint32_t peer, bool choked, uint64_t now)
{
	see_time(s, now);
	struct swarm_peer *p = peer_find(s, peer);

	if (!p)
		return;
	p->choked = choked;
	p->stuck = false;
	s->move_dirty = true;
	if (choked)
		peer_release_reqs(s, p);
}

void swarm_peer_set_max(struct swarm *s, uint32_t peer, uint32_t max)
{
	struct swarm_peer *p = peer_find(s, peer);

	if (!p)
		return;
	p->max = max == 0 ? 1 : max > s->inflight ? s->inflight : max;
	if (p->limit > p->max)
		p->limit = p->max;
}

void swarm_peer_keep_requests(struct swarm *s, uint32_t peer, bool keep)
{
	struct swarm_peer *p = peer_find(s, peer);

	if (p) {
		p->keeps = keep;
		s->move_dirty = true;
	}
}

bool swarm_requested(const struct swarm *s, uint32_t peer, uint32_t index)
{
	const struct swarm_peer *p = peer_lookup(s, peer);

	return p && index < s->nchunks && req_find(p, index) >= 0;
}

uint32_t swarm_peer_requests(const struct swarm *s, uint32_t peer, uint32_t *out, uint32_t max)
{
	const struct swarm_peer *p = peer_lookup(s, peer);

	if (!p)
		return 0;
	for (uint32_t i = 0; i < p->nreqs && i < max; i++)
		out[i] = p->reqs[i].index;
	return p->nreqs;
}

bool swarm_peer_banned(const struct swarm *s, uint32_t peer)
{
	return is_banned(s, peer);
}

uint32_t swarm_peer_wanted(const struct swarm *s, uint32_t peer)
{
	const struct swarm_peer *p = peer_lookup(s, peer);

	return p ? p->wanted : 0;
}

/* Removes every other request for a chunk that just arrived; live ones get a CANCEL. */
static void cancel_others(struct swarm *s, uint32_t index)
{
	for (uint32_t i = 0; i < s->hi && s->outstanding[index] > 0; i++) {
		struct swarm_peer *q = &s->peers[i];
		int j;

		if (!q->used || (j = req_find(q, index)) < 0)
			continue;
		if (!q->reqs[j].stale)
			queue_push(s, SWARM_CANCEL, q->key, index);
		req_remove(s, q, (uint32_t)j);
		s->outstanding[index]--;
	}
}

bool swarm_chunk_received(struct swarm *s, uint32_t peer, uint32_t index, bool ok, uint64_t now)
{
	see_time(s, now);
	struct swarm_peer *p = peer_find(s, peer);
	int j;

	if (!p || index >= s->nchunks)
		return false;
	if (!ok) {
		/* Bad hash, asked for or not: the peer is dropped and banned; its
		 * requests go elsewhere. */
		bool asked = req_find(p, index) >= 0;
		peer_detach(s, p);
		ban(s, peer);
		queue_push(s, SWARM_DROP_PEER, peer, index);
		return asked;
	}
	if ((j = req_find(p, index)) < 0)
		return false;
	bool stale = p->reqs[j].stale;
	bool waiting = stale && s->active[index] == 0; /* counted in unrequested */

	req_remove(s, p, (uint32_t)j);
	s->outstanding[index]--;
	if (!stale)
		s->active[index]--;
	if (bit_get(s->have, index))
		return true;
	cancel_others(s, index);
	if (waiting)
		s->unrequested--;
	s->active[index] = 0; /* the other copies were just cancelled */
	mark_had(s, index);
	for (uint32_t i = 0; i < s->hi; i++)
		if (s->peers[i].used && bit_get(s->peers[i].bits, index))
			s->peers[i].wanted--;
	if (p->limit < p->max)
		p->limit++;
	return true;
}

bool swarm_chunk_had(struct swarm *s, uint32_t index, uint64_t now)
{
	see_time(s, now);
	if (index >= s->nchunks || bit_get(s->have, index))
		return false;
	bool waiting = s->active[index] == 0; /* counted in unrequested */
	cancel_others(s, index);
	if (waiting && s->unrequested > 0)
		s->unrequested--;
	s->active[index] = 0;
	mark_had(s, index);
	for (uint32_t i = 0; i < s->hi; i++)
		if (s->peers[i].used && bit_get(s->peers[i].bits, index))
			s->peers[i].wanted--;
	s->gen++;
	return true;
}

void swarm_tick(struct swarm *s, uint64_t now)
{
	uint64_t stale_ms = (uint64_t)s->timeout_ms * SWARM_STALE_FACTOR;

	see_time(s, now);
	for (uint32_t i = 0; i < s->hi; i++) {
		struct swarm_peer *p = &s->peers[i];
		bool slowed = false;

		if (!p->used)
			continue;
		for (uint32_t k = 0; k < p->nreqs;) {
			struct swarm_req *r = &p->reqs[k];

			if (!r->stale && now >= r->sent_at + s->timeout_ms) {
				/* Timed out: cancel it, keep the slot, ask someone else. */
				r->stale = true;
				s->due_recount = true;
				s->move_dirty = true;
				queue_push(s, SWARM_CANCEL, p->key, r->index);
				active_dec(s, r->index);
				if (!slowed && p->limit > 1)
					p->limit /= 2;
				slowed = true;
			} else if (r->stale && now >= r->sent_at + stale_ms) {
				s->outstanding[r->index]--;
				req_remove(s, p, k);
				p->stuck = false;
				continue;
			}
			k++;
		}
	}
}

uint64_t swarm_next_wakeup(struct swarm *s)
{
	if (!s->due_recount)
		return s->due_min;
	uint64_t next = UINT64_MAX;
	uint64_t stale_ms = (uint64_t)s->timeout_ms * SWARM_STALE_FACTOR;

	for (uint32_t i = 0; i < s->hi; i++) {
		const struct swarm_peer *p = &s->peers[i];

		for (uint32_t k = 0; p->used && k < p->nreqs; k++) {
			uint64_t due = p->reqs[k].sent_at + (p->reqs[k].stale ? stale_ms : s->timeout_ms);

			if (due < next)
				next = due;
		}
	}
	s->due_min = next;
	s->due_recount = false;
	return next;
}

/* Scans missing chunks from the rarest for one p holds, has not been asked
 * for, and has at most max_active live requests. Each region is entered at a
 * random offset so that ties fall at random. SWARM_NONE if there is none. */
static uint32_t pick_scan(struct swarm *s, const struct swarm_peer *p, uint32_t max_active)
{
	if (s->sequential || s->stream_window) {
		while (s->seq_lo < s->nchunks && bit_get(s->have, s->seq_lo))
			s->seq_lo++;
		/* Streaming: the next chunks a reader needs, in order, then the
		 * rest rarest first, so the swarm still spreads rare chunks. */
		uint32_t end = s->sequential || s->nchunks - s->seq_lo <= s->stream_window ? s->nchunks
			       : s->seq_lo + s->stream_window;
		for (uint32_t index = s->seq_lo; index < end; index++) {
			if (bit_get(s->have, index) || s->active[index] > max_active || !bit_get(p->bits, index))
				continue;
			if (s->outstanding[index] > 0 && req_find(p, index) >= 0)
				continue;
			return index;
		}
		if (s->sequential)
			return SWARM_NONE;
	}
	for (uint32_t r = 2; r < SWARM_NREGIONS; r++) {
		uint32_t lo = s->region_start[r], hi = s->region_start[r + 1];

		if (lo == hi)
			continue;
		uint32_t n = hi - lo;
		uint32_t at = lo + pn_prng_below(&s->prng, n);

		for (uint32_t k = 0; k < n; k++, at++) {
			if (at == hi)
				at = lo;
			uint32_t index = s->order[at];

			if (s->active[index] > max_active || !bit_get(p->bits, index))
				continue;
			if (s->outstanding[index] > 0 && req_find(p, index) >= 0)
				continue;
			return index;
		}
	}
	return SWARM_NONE;
}

/* Chooses the next chunk to ask p for: an unrequested one, or in end game
 * (nothing left unrequested) one with the fewest live copies below the cap. */
static uint32_t pick_chunk(struct swarm *s, const struct swarm_peer *p)
{
	if (s->unrequested > 0)
		return pick_scan(s, p, 0);
	for (uint32_t copies = 1; copies < SWARM_ENDGAME_DUP; copies++) {
		uint32_t index = pick_scan(s, p, copies);

		if (index != SWARM_NONE)
			return index;
	}
	return SWARM_NONE;
}

/* Moves one request that has waited at least move_after_ms at a busy peer
 * to an idle one: an unchoked peer with nothing of ours pending that holds
 * the chunk (CANCEL to the first, REQUEST to the second). The request is
 * still queued behind the first peer's other uploads, most likely, while
 * the second's uplink may be idling; without the move, the chunk could not
 * be asked of the second at all until the end game. In the end game, where
 * both copies of a chunk may wait in long queues, a copy moves the same way.
 * Among the candidates, the rarest chunk; ties go to the longest waiting. A moved request may
 * move again after as long. If the CANCEL crosses the chunk, the chunk is
 * accepted (the engine counts withdrawn requests) and the second copy is
 * cancelled in turn. A scan that finds nothing is not repeated until a peer,
 * request or bitmap changes or the next request becomes old enough. */
static bool move_one(struct swarm *s, uint64_t now, struct swarm_action *out)
{
	if (!s->move_after_ms || s->sequential || (!s->move_dirty && now < s->move_next_at))
		return false;
	for (uint32_t k = 0; k < s->hi; k++) {
		uint32_t slot = (s->cursor + k) % s->hi;
		struct swarm_peer *p = &s->peers[slot];

		if (!p->used || p->choked || p->nreqs > 0 || p->wanted == 0)
			continue;
		struct swarm_peer *from = NULL;
		uint32_t from_at = 0, rarest = UINT32_MAX;
		uint64_t oldest = UINT64_MAX;

		for (uint32_t i = 0; i < s->hi; i++) {
			struct swarm_peer *q = &s->peers[i];

			if (!q->used || q->keeps || q == p)
				continue;
			for (uint32_t j = 0; j < q->nreqs; j++) {
				const struct swarm_req *r = &q->reqs[j];

				if (r->stale || !bit_get(p->bits, r->index) ||
				    now < r->sent_at + s->move_after_ms)
					continue;
				uint32_t avail = s->avail[r->index];

				if (avail < rarest || (avail == rarest && r->sent_at < oldest)) {
					rarest = avail;
					oldest = r->sent_at;
					from = q;
					from_at = j;
				}
			}
		}
		if (!from)
			continue;
		uint32_t index = from->reqs[from_at].index;

		queue_push(s, SWARM_CANCEL, from->key, index);
		req_remove(s, from, from_at); /* outstanding and active stay: the request moves */
		struct swarm_req *r = &p->reqs[p->nreqs++];

		r->index = index;
		r->stale = false;
		r->sent_at = now;
		if (now + s->timeout_ms < s->due_min)
			s->due_min = now + s->timeout_ms;
		s->cursor = (slot + 1) % s->hi;
		out->type = SWARM_REQUEST;
		out->peer = p->key;
		out->index = index;
		return true;
	}
	uint64_t next = UINT64_MAX;

	for (uint32_t i = 0; i < s->hi; i++) {
		const struct swarm_peer *q = &s->peers[i];

		for (uint32_t j = 0; q->used && !q->keeps && j < q->nreqs; j++) {
			uint64_t at = q->reqs[j].sent_at + s->move_after_ms;

			if (!q->reqs[j].stale && at > now && at < next)
				next = at;
		}
	}
	s->move_dirty = false;
	s->move_next_at = next;
	return false;
}

/* Issues one request to the next peer, in round-robin order, that has a free
 * slot and something to ask for; failing that, moves a waiting request. */
static bool fill_one(struct swarm *s, uint64_t now, struct swarm_action *out)
{
	for (uint32_t k = 0; k < s->hi; k++) {
		uint32_t slot = (s->cursor + k) % s->hi;
		struct swarm_peer *p = &s->peers[slot];

		if (!p->used || p->choked || p->nreqs >= p->limit || p->wanted == 0)
			continue;
		if (p->stuck && p->stuck_gen == s->gen)
			continue;
		uint32_t index = pick_chunk(s, p);

		if (index == SWARM_NONE) {
			p->stuck = true;
			p->stuck_gen = s->gen;
			continue;
		}
		struct swarm_req *r = &p->reqs[p->nreqs++];

		r->index = index;
		r->stale = false;
		r->sent_at = now;
		if (now + s->timeout_ms < s->due_min)
			s->due_min = now + s->timeout_ms;
		s->outstanding[index]++;
		active_inc(s, index);
		s->move_dirty = true;
		s->cursor = (slot + 1) % s->hi;
		out->type = SWARM_REQUEST;
		out->peer = p->key;
		out->index = index;
		return true;
	}
	return move_one(s, now, out);
}

bool swarm_next_action(struct swarm *s, struct swarm_action *out)
{
	if (s->qlen > 0) {
		*out = s->queue[s->qhead];
		s->qhead = (s->qhead + 1) % s->qcap;
		s->qlen--;
		return true;
	}
	if (s->have_count == s->nchunks) {
		if (s->done_emitted)
			return false;
		s->done_emitted = true;
		out->type = SWARM_DONE;
		out->peer = 0;
		out->index = 0;
		return true;
	}
	return fill_one(s, s->last_now, out);
}

bool swarm_has(const struct swarm *s, uint32_t index)
{
	return index < s->nchunks && bit_get(s->have, index);
}

uint32_t swarm_have_count(const struct swarm *s)
{
	return s->have_count;
}

uint32_t swarm_nchunks(const struct swarm *s)
{
	return s->nchunks;
}

uint32_t swarm_availability(const struct swarm *s, uint32_t index)
{
	return index < s->nchunks ? s->avail[index] : 0;
}

void swarm_set_stream_window(struct swarm *s, uint32_t window)
{
	s->stream_window = window;
}
