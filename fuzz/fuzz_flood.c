/* libFuzzer target: a few flood cores wired together, driven by the input.
 *
 * The input's first byte picks the number of cores (3..5) and whether the
 * seen-cache is large (never evicts: then a node must be handed each query ID
 * at most once per cache lifetime) or tiny (evicts all the time: only the
 * bounds are checked). The rest is a sequence of operations: deliver queued
 * messages, inject raw queries and hits from any neighbour key with arbitrary
 * IDs, ttl, hops, kind, lengths and payloads, advance time and tick, add and
 * remove neighbours, start, cancel and answer queries. After every operation
 * each core is drained, and every action and the stats are checked against
 * what the harness saw; any disagreement calls abort(). At the end time jumps
 * far ahead: every query started and not cancelled must have ended exactly
 * once and the caches must be empty. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include "peernet.h"
#include "proto/flood.h"

#define CORES_MAX 5
#define KEYS 8               /* neighbour keys 0..7: cores first, then outsiders */
#define OPS_MAX 400
#define CACHE_BIG 4096
#define CACHE_TINY 4
#define CACHE_TTL_MS 200
#define RATE_PER_S 5
#define STRIKES 3
#define RING_WAIT_MS 10
#define MSGS_MAX 256
#define RAW_DATA_MAX 300     /* past FLOOD_MAX_QUERY_DATA on purpose */
#define RAW_PAYLOAD_MAX 5000 /* past FLOOD_MAX_HIT_PAYLOAD on purpose */
#define SEEN_SLOTS 8192      /* > OPS_MAX * FLOOD_MAX_TTL query IDs */
#define POOL 16
#define HANDLES_MAX 512
#define FINAL_JUMP_MS 10000000ull
#define FINAL_ROUNDS (FLOOD_MAX_TTL + 2) /* > ring steps */
#define SMALL_ACTIONS_MAX (FLOOD_MAX_ACTIVE_QUERIES + 16)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum op { OP_DELIVER, OP_QUERY, OP_HIT, OP_TICK, OP_NB_ADD, OP_NB_REMOVE, OP_START, OP_CANCEL, OP_ANSWER, OP_COUNT };

struct msg {
	bool hit;
	uint8_t from, to;
	uint8_t id[FLOOD_QID_BYTES];
	uint8_t ttl, hops, kind;
	uint16_t len;
	uint8_t data[FLOOD_MAX_QUERY_DATA];
	size_t plen;
	uint8_t payload[FLOOD_MAX_HIT_PAYLOAD];
};

struct seen_slot {
	bool used;
	bool own;
	uint8_t id[FLOOD_QID_BYTES];
	uint64_t first_local; /* or start time, for own */
};

struct handle_state {
	uint8_t node;
	uint32_t handle;
	bool cancelled, done;
	uint32_t delivered;
};

struct core {
	struct flood *f;
	bool nb[KEYS];
	bool drop_asked[KEYS];
	uint64_t locals, sends, hit_sends, delivers, answers;
	uint8_t last_local[FLOOD_QID_BYTES];
	bool has_local;
	struct seen_slot seen[SEEN_SLOTS];
};

struct input {
	const uint8_t *p;
	size_t left;
};

static struct core cores[CORES_MAX];
static struct msg msgs[MSGS_MAX];
static uint32_t mhead, mlen;
static struct handle_state handles[HANDLES_MAX];
static uint32_t nhandles;
static uint8_t pool[POOL][FLOOD_QID_BYTES]; /* IDs seen lately, to aim raw hits and queries at */
static uint32_t pool_next;
static uint8_t raw[RAW_PAYLOAD_MAX];
static uint32_t ncores;
static bool strict;
static uint64_t now;

static uint8_t next(struct input *in)
{
	if (!in->left)
		return 0;
	in->left--;
	return *in->p++;
}

static void check(bool ok)
{
	if (!ok)
		abort();
}

static void pool_add(const uint8_t *id)
{
	memcpy(pool[pool_next++ % POOL], id, FLOOD_QID_BYTES);
}

static struct seen_slot *seen_slot(struct core *c, const uint8_t *id)
{
	uint32_t h = 0;

	for (uint32_t i = 0; i < FLOOD_QID_BYTES; i++)
		h = h * 31 + id[i];
	for (uint32_t k = 0; k < SEEN_SLOTS; k++) {
		struct seen_slot *s = &c->seen[(h + k) % SEEN_SLOTS];

		if (!s->used || !memcmp(s->id, id, FLOOD_QID_BYTES))
			return s;
	}
	abort(); /* table full: the bound on IDs is wrong */
}

static struct handle_state *handle_find(uint32_t node, uint32_t handle)
{
	for (uint32_t i = 0; i < nhandles; i++)
		if (handles[i].node == node && handles[i].handle == handle)
			return &handles[i];
	return NULL;
}

static void enqueue(const struct msg *m)
{
	if (mlen == MSGS_MAX)
		return; /* the network loses it */
	msgs[(mhead + mlen++) % MSGS_MAX] = *m;
}

/* Drains core x and checks every action. */
static void drain(uint32_t x)
{
	struct core *c = &cores[x];
	struct flood_action a;
	uint32_t small = 0, sends = 0;

	while (flood_next_action(c->f, &a)) {
		struct msg m;

		switch (a.type) {
		case FLOOD_SEND_QUERY:
			check(a.nb < KEYS && c->nb[a.nb]);
			check(a.q.ttl >= 1 && a.q.ttl + a.q.hops <= FLOOD_MAX_TTL);
			check(a.q.len >= 1 && a.q.len <= FLOOD_MAX_QUERY_DATA && a.q.data);
			check(a.q.kind == FLOOD_KEYWORDS || a.q.kind == FLOOD_CID);
			check(!memcmp(a.q.id, a.qid, FLOOD_QID_BYTES));
			c->sends++;
			sends++;
			if (a.q.hops == 0) { /* our own step */
				struct seen_slot *s = seen_slot(c, a.q.id);

				if (!s->used) {
					s->used = true;
					s->own = true;
					memcpy(s->id, a.q.id, FLOOD_QID_BYTES);
					s->first_local = now;
				}
			}
			pool_add(a.q.id);
			if (a.nb < ncores) {
				memset(&m, 0, sizeof(m));
				m.from = (uint8_t)x;
				m.to = (uint8_t)a.nb;
				memcpy(m.id, a.q.id, FLOOD_QID_BYTES);
				m.ttl = a.q.ttl;
				m.hops = a.q.hops;
				m.kind = a.q.kind;
				m.len = a.q.len;
				memcpy(m.data, a.q.data, a.q.len);
				enqueue(&m);
			}
			break;
		case FLOOD_SEND_HIT:
			small++;
			check(a.nb < KEYS && c->nb[a.nb]);
			check(a.len <= FLOOD_MAX_HIT_PAYLOAD && (a.len == 0 || a.payload));
			c->hit_sends++;
			if (a.nb < ncores) {
				memset(&m, 0, sizeof(m));
				m.hit = true;
				m.from = (uint8_t)x;
				m.to = (uint8_t)a.nb;
				memcpy(m.id, a.qid, FLOOD_QID_BYTES);
				if (a.len)
					memcpy(m.payload, a.payload, a.len);
				m.plen = a.len;
				enqueue(&m);
			}
			break;
		case FLOOD_LOCAL_QUERY: {
			small++;
			check(a.nb < KEYS);
			check(a.q.ttl >= 1 && a.q.ttl + a.q.hops <= FLOOD_MAX_TTL);
			check(a.q.len >= 1 && a.q.len <= FLOOD_MAX_QUERY_DATA && a.q.data);
			struct seen_slot *s = seen_slot(c, a.q.id);

			/* Once per ID while the cache may remember it; never our own. */
			if (strict && s->used)
				check(now >= s->first_local + CACHE_TTL_MS);
			s->used = true;
			s->own = false;
			memcpy(s->id, a.q.id, FLOOD_QID_BYTES);
			s->first_local = now;
			c->locals++;
			memcpy(c->last_local, a.q.id, FLOOD_QID_BYTES);
			c->has_local = true;
			pool_add(a.q.id);
			break;
		}
		case FLOOD_DELIVER_HIT: {
			small++;
			struct handle_state *h = handle_find(x, a.handle);

			check(h && !h->cancelled && !h->done);
			check(a.len <= FLOOD_MAX_HIT_PAYLOAD);
			h->delivered++;
			check(h->delivered <= FLOOD_MAX_HITS_PER_QUERY);
			c->delivers++;
			break;
		}
		case FLOOD_DROP_NEIGHBOR:
			small++;
			check(a.nb < KEYS && c->nb[a.nb] && !c->drop_asked[a.nb]);
			c->drop_asked[a.nb] = true;
			break;
		case FLOOD_QUERY_DONE: {
			small++;
			struct handle_state *h = handle_find(x, a.handle);

			check(h && !h->cancelled && !h->done);
			check(a.hits == h->delivered);
			h->done = true;
			break;
		}
		default:
			abort();
		}
	}
	check(small <= SMALL_ACTIONS_MAX);
	check(sends <= (FLOOD_MAX_ACTIVE_QUERIES + 1) * (uint32_t)FLOOD_MAX_NEIGHBORS);

	const struct flood_stats *st = flood_get_stats(c->f);

	check(st->queries_received ==
	      c->locals + st->duplicates_dropped + st->rate_limited + st->queries_invalid + st->queries_reforwarded);
	check(st->queries_sent == c->sends);
	check(st->hits_sent == c->hit_sends);
	check(st->hits_delivered == c->delivers);
	check(st->hits_received + c->answers ==
	      st->hits_sent + st->hits_delivered + st->hits_unroutable + st->hits_dropped);
	check(st->actions_dropped == 0); /* we always drain */
	check(flood_cache_count(c->f) <= (strict ? CACHE_BIG : CACHE_TINY));
	check(flood_neighbor_count(c->f) <= KEYS);
}

static void nb_add(uint32_t x, uint32_t key)
{
	struct core *c = &cores[x];
	int rc = flood_neighbor_add(c->f, key, now);

	check(rc == (c->nb[key] ? PN_EEXIST : 0));
	c->nb[key] = true;
}

static void nb_remove(uint32_t x, uint32_t key)
{
	struct core *c = &cores[x];

	flood_neighbor_remove(c->f, key);
	c->nb[key] = false;
	c->drop_asked[key] = false;
}

static void pick_id(struct input *in, uint8_t id[FLOOD_QID_BYTES])
{
	uint8_t how = next(in);

	memset(id, 0, FLOOD_QID_BYTES);
	if (how < 96) {
		id[0] = how & 7; /* a few fixed IDs */
	} else if (how < 224) {
		memcpy(id, pool[how % POOL], FLOOD_QID_BYTES);
	} else {
		for (uint32_t i = 0; i < FLOOD_QID_BYTES; i++)
			id[i] = next(in);
	}
}

static void op_query(struct input *in)
{
	uint32_t x = next(in) % ncores, from = next(in) % KEYS;
	uint8_t data[RAW_DATA_MAX];
	struct flood_query q;
	uint8_t lenb = next(in);

	memset(&q, 0, sizeof(q));
	pick_id(in, q.id);
	q.ttl = next(in);
	q.hops = next(in);
	q.kind = next(in) % 4;
	q.len = lenb < 250 ? lenb % 48 : (uint16_t)(RAW_DATA_MAX - (255 - lenb)); /* mostly short, some too long */
	for (uint32_t i = 0; i < q.len && i < 8; i++)
		data[i] = next(in);
	memset(data + 8, 'x', sizeof(data) - 8);
	q.data = data;
	flood_on_query(cores[x].f, from, &q, now);
	drain(x);
}

static void op_hit(struct input *in)
{
	uint32_t x = next(in) % ncores, from = next(in) % KEYS;
	uint8_t id[FLOOD_QID_BYTES];
	uint8_t lb = next(in);
	size_t len = lb < 240 ? lb : (size_t)(lb - 239) * 350; /* up to 5950 */

	pick_id(in, id);
	if (len > RAW_PAYLOAD_MAX)
		len = RAW_PAYLOAD_MAX;
	flood_on_hit(cores[x].f, from, id, len ? raw : NULL, len, now);
	drain(x);
}

static void tick_all(void)
{
	for (uint32_t x = 0; x < ncores; x++) {
		flood_tick(cores[x].f, now);
		drain(x);
		check(flood_next_wakeup(cores[x].f) > now); /* nothing due is left */
	}
}

static void deliver(uint32_t count)
{
	while (count-- && mlen) {
		struct msg m = msgs[mhead];

		mhead = (mhead + 1) % MSGS_MAX;
		mlen--;
		if (m.hit) {
			flood_on_hit(cores[m.to].f, m.from, m.id, m.plen ? m.payload : NULL, m.plen, now);
		} else {
			struct flood_query q = { .ttl = m.ttl, .hops = m.hops, .kind = m.kind, .len = m.len, .data = m.data };

			memcpy(q.id, m.id, FLOOD_QID_BYTES);
			flood_on_query(cores[m.to].f, m.from, &q, now);
		}
		drain(m.to);
	}
}

static void op_start(struct input *in)
{
	uint32_t x = next(in) % ncores;
	uint8_t kind = next(in) % 3 + 1, ttl = next(in) % 10, flags = next(in), lenb = next(in);
	uint16_t len = kind == FLOOD_CID ? 40 : (uint16_t)(lenb % 20);
	uint8_t data[FLOOD_MAX_QUERY_DATA];

	memset(data, lenb, sizeof(data));
	int h = flood_start(cores[x].f, kind, data, len, ttl, flags & 1, flags >> 1 & 7, now);

	if (kind > FLOOD_CID || len == 0) {
		check(h == PN_EINVAL);
	} else if (h > 0) {
		check(!handle_find(x, (uint32_t)h));
		if (nhandles < HANDLES_MAX)
			handles[nhandles++] = (struct handle_state){ .node = (uint8_t)x, .handle = (uint32_t)h };
	} else {
		check(h == PN_ELIMIT);
	}
	drain(x);
}

static void op_cancel(struct input *in)
{
	uint8_t which = next(in);

	if (!nhandles)
		return;
	struct handle_state *h = &handles[which % nhandles];

	flood_cancel(cores[h->node].f, h->handle);
	if (!h->done)
		h->cancelled = true;
	drain(h->node);
}

static void op_answer(struct input *in)
{
	uint32_t x = next(in) % ncores;
	uint8_t id[FLOOD_QID_BYTES], lb = next(in);
	size_t len = lb < 200 ? lb % 16 : (size_t)(lb - 199) * 100;

	if (cores[x].has_local && lb & 1)
		memcpy(id, cores[x].last_local, FLOOD_QID_BYTES);
	else
		pick_id(in, id);
	if (len > RAW_PAYLOAD_MAX)
		len = RAW_PAYLOAD_MAX;
	flood_answer(cores[x].f, id, len ? raw : NULL, len, now);
	cores[x].answers++;
	drain(x);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = { data, size };
	uint8_t setup = next(&in);

	ncores = 3 + setup % 3;
	strict = !(setup & 0x80);
	now = 1;
	mhead = mlen = 0;
	nhandles = 0;
	pool_next = 0;
	memset(pool, 0, sizeof(pool));
	memset(raw, 0x5a, sizeof(raw));
	for (uint32_t x = 0; x < ncores; x++) {
		struct flood_opts o = {
			.max_ttl = (setup & 0x40) ? 4 : 0,
			.cache_max = strict ? CACHE_BIG : CACHE_TINY,
			.cache_ttl_ms = CACHE_TTL_MS,
			.rate_per_s = RATE_PER_S,
			.max_strikes = STRIKES,
			.ring_wait_ms = RING_WAIT_MS,
			.seed = 77 + x,
		};

		memset(&cores[x], 0, sizeof(cores[x]));
		cores[x].f = flood_new(&o);
		check(cores[x].f != NULL);
	}
	/* Start as a ring with one outsider each. */
	for (uint32_t x = 0; x < ncores; x++) {
		uint32_t y = (x + 1) % ncores;

		if (!cores[x].nb[y]) {
			nb_add(x, y);
			nb_add(y, x);
		}
		nb_add(x, ncores + x % (KEYS - ncores));
	}
	for (uint32_t ops = 0; in.left && ops < OPS_MAX; ops++) {
		uint8_t op = next(&in);

		now += op >> 5; /* a little time passes between most operations */
		switch (op % OP_COUNT) {
		case OP_DELIVER:
			deliver(1 + next(&in) % 32);
			break;
		case OP_QUERY:
			op_query(&in);
			break;
		case OP_HIT:
			op_hit(&in);
			break;
		case OP_TICK:
			now += (uint64_t)next(&in) * 4;
			tick_all();
			break;
		case OP_NB_ADD: {
			uint32_t x = next(&in) % ncores, key = next(&in) % KEYS;

			if (key == x)
				break;
			if (!cores[x].nb[key])
				nb_add(x, key);
			else
				check(flood_neighbor_add(cores[x].f, key, now) == PN_EEXIST);
			if (key < ncores && !cores[key].nb[x])
				nb_add(key, x);
			break;
		}
		case OP_NB_REMOVE: {
			uint32_t x = next(&in) % ncores, key = next(&in) % KEYS;

			nb_remove(x, key);
			if (key < ncores)
				nb_remove(key, x);
			drain(x);
			break;
		}
		case OP_START:
			op_start(&in);
			break;
		case OP_CANCEL:
			op_cancel(&in);
			break;
		case OP_ANSWER:
			op_answer(&in);
			break;
		}
	}
	/* Let everything in flight land, then jump far ahead until every ring
	 * has run all its steps and every cache entry has expired. */
	for (uint32_t round = 0; round < FINAL_ROUNDS; round++) {
		deliver(UINT32_MAX);
		now += FINAL_JUMP_MS;
		tick_all();
	}
	check(mlen == 0);
	for (uint32_t i = 0; i < nhandles; i++)
		check(handles[i].cancelled || handles[i].done);
	for (uint32_t x = 0; x < ncores; x++) {
		check(flood_cache_count(cores[x].f) == 0);
		check(flood_next_wakeup(cores[x].f) == UINT64_MAX);
		flood_free(cores[x].f);
	}
	return 0;
}
