/* The simulator's engine (see sim.h): overlay, event queue, message delivery.
 *
 * Events sit in the event queue (evq.h), ordered by (virtual time, sequence
 * number), so events at the same millisecond run in the order they were made
 * and a run is the same on every machine. A message is counted when a core asks to
 * send it, whether or not the network then loses it.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "peernet.h"
#include "proto/flood.h"
#include "proto/prng.h"
#include "evq.h"
#include "sim.h"

#define SIM_QUERY_GAP_MS 1000       /* idle time between two queries */
#define SIM_QUERY_LIMIT_MS 600000   /* a query that runs longer is a bug */
#define SIM_MSG_DATA 256            /* >= FLOOD_MAX_QUERY_DATA; our hits are smaller */
#define SIM_HIT_PAYLOAD 8           /* "node N has it" */
#define SIM_NEVER UINT64_MAX
#define SIM_NONE UINT32_MAX
#define SIM_DIAL_TRIES 256          /* random picks per missing neighbour */
#define SIM_PICK_TRIES 1000         /* random queriers tried per query */
#define SIM_MAX_ANSWERS 16          /* LOCAL_QUERYs answered per drain */
#define SIM_MAX_ACTIVE 1024         /* queries at once in a load run */
#define SIM_EVQ_FIRST 1024          /* events the queue first makes room for */
#define SIM_EVQ_MAX (1u << 26)      /* events queued at most (2 GiB) */

/* Independent streams, so that e.g. the overlay does not change with loss. */
#define SIM_STREAM_TOPO 0x746f706fu
#define SIM_STREAM_NET 0x6e6574u
#define SIM_STREAM_WORK 0x776f726bu
#define SIM_STREAM_NODE 0x6e6f6465u
#define SIM_STREAM_QUERY 0x71756572u

enum ev_kind { EV_MSG = 1, EV_TIMER, EV_START }; /* a: message slot, or node for a timer */

struct msg {
	uint32_t from, to;
	uint32_t next_free;
	bool hit;
	struct flood_query q; /* q.data unused: data holds the bytes */
	uint16_t len;
	uint8_t data[SIM_MSG_DATA];
};

struct node {
	struct flood *f;
	uint32_t deg;
	uint64_t timer_at;     /* earliest timer event queued, or SIM_NEVER */
	uint64_t last_tick;
	uint32_t mark;         /* query serial that last reached this node */
};

/* The query in progress. */
struct cur {
	uint32_t serial;
	uint32_t from;
	int handle;
	uint64_t start;
	bool done;
	struct sim_query_result res;
};

/* A query of a load run, while it lasts. */
struct active {
	uint32_t from;
	int handle;
	uint32_t hits;
};

struct sim {
	struct sim_params p;
	uint32_t n;
	struct node *nodes;
	uint32_t *adj;         /* n * SIM_MAX_DEGREE */

	struct evq evq;
	uint64_t now;

	struct msg *msgs;
	uint32_t nmsgs, msgs_cap, free_msg;
	uint64_t inflight;

	uint32_t items;
	size_t words;          /* bitmap words per item */
	uint64_t *holds;       /* items * words */

	struct pn_prng topo, net, work, ask;
	struct cur cur;

	bool load;             /* a load run: many queries at once */
	struct active *act;
	uint32_t nact;
	struct sim_load *lr;
	uint8_t load_ttl;
	bool load_ring;
	uint32_t load_want;
	uint32_t load_pending; /* starts queued, not yet run */
	uint64_t drops;        /* links cut on FLOOD_DROP_NEIGHBOR */
	uint64_t sent;         /* every message sent, for the cross-check */
	uint64_t oversize;
};

/* ---------------- messages ---------------- */

static int msg_alloc(struct sim *s, uint32_t *slot)
{
	if (s->free_msg != SIM_NONE) {
		*slot = s->free_msg;
		s->free_msg = s->msgs[*slot].next_free;
		return 0;
	}
	if (s->nmsgs == s->msgs_cap) {
		uint32_t cap = s->msgs_cap ? 2 * s->msgs_cap : 1024;
		struct msg *m = realloc(s->msgs, (size_t)cap * sizeof(*m));

		if (!m)
			return PN_ENOMEM;
		s->msgs = m;
		s->msgs_cap = cap;
	}
	*slot = s->nmsgs++;
	return 0;
}

static void msg_free(struct sim *s, uint32_t slot)
{
	s->msgs[slot].next_free = s->free_msg;
	s->free_msg = slot;
}

static bool lost(struct sim *s)
{
	if (s->p.loss <= 0)
		return false;
	double u = (double)(pn_prng_next(&s->net) >> 11) * 0x1.0p-53;

	return u < s->p.loss;
}

static uint64_t latency(struct sim *s)
{
	return s->p.lat_min_ms + pn_prng_below(&s->net, s->p.lat_max_ms - s->p.lat_min_ms + 1);
}

/* Queues a query (q non-NULL) or a hit from `from` to `to`. */
static int send_msg(struct sim *s, uint32_t from, uint32_t to, const struct flood_query *q,
		    const uint8_t qid[FLOOD_QID_BYTES], const uint8_t *data, size_t len)
{
	uint32_t slot;
	int rc;

	s->sent++;
	if (q)
		s->cur.res.query_msgs++;
	else
		s->cur.res.hit_msgs++;
	if (lost(s)) {
		s->cur.res.lost_msgs++;
		return 0;
	}
	if (to >= s->n)
		return PN_EINVAL;
	if (len > SIM_MSG_DATA) {
		s->oversize++;
		return 0;
	}
	rc = msg_alloc(s, &slot);
	if (rc)
		return rc;
	struct msg *m = &s->msgs[slot];

	m->from = from;
	m->to = to;
	m->hit = !q;
	if (q)
		m->q = *q;
	else
		memcpy(m->q.id, qid, FLOOD_QID_BYTES);
	m->q.data = NULL;
	m->len = (uint16_t)len;
	memcpy(m->data, data, len);
	rc = evq_push(&s->evq, s->now + latency(s), EV_MSG, slot, 0);
	if (rc) {
		msg_free(s, slot);
		return rc;
	}
	s->inflight++;
	return 0;
}

/* ---------------- content ---------------- */

static bool holds(const struct sim *s, uint32_t item, uint32_t node)
{
	const uint64_t *w = s->holds + (size_t)item * s->words;

	return (w[node / 64] >> (node % 64)) & 1;
}

static void cid_encode(uint32_t item, uint8_t cid[SIM_CID_BYTES])
{
	memset(cid, 0xa5, SIM_CID_BYTES);
	cid[0] = (uint8_t)(item >> 24);
	cid[1] = (uint8_t)(item >> 16);
	cid[2] = (uint8_t)(item >> 8);
	cid[3] = (uint8_t)item;
}

/* The item a query asks for, or SIM_NONE. */
static uint32_t cid_decode(const struct sim *s, const struct flood_query *q)
{
	if (q->kind != FLOOD_CID || q->len != SIM_CID_BYTES || !q->data)
		return SIM_NONE;
	uint32_t item = (uint32_t)q->data[0] << 24 | (uint32_t)q->data[1] << 16 | (uint32_t)q->data[2] << 8 |
			q->data[3];

	return item < s->items ? item : SIM_NONE;
}

/* ---------------- driving the cores ---------------- */

static bool adjacent(const struct sim *s, uint32_t a, uint32_t b);

/* a asked to drop b: the link goes, on both sides. */
static void unlink_nodes(struct sim *s, uint32_t a, uint32_t b)
{
	uint32_t ends[2] = { a, b };

	if (b >= s->n || !adjacent(s, a, b))
		return;
	for (int k = 0; k < 2; k++) {
		uint32_t x = ends[k], y = ends[1 - k];
		uint32_t *l = s->adj + (size_t)x * SIM_MAX_DEGREE;

		for (uint32_t i = 0; i < s->nodes[x].deg; i++) {
			if (l[i] == y) {
				l[i] = l[--s->nodes[x].deg];
				break;
			}
		}
		flood_neighbor_remove(s->nodes[x].f, y);
	}
	s->drops++;
}

static struct active *load_find(struct sim *s, uint32_t node, uint32_t handle, uint32_t *slot)
{
	for (uint32_t i = 0; i < s->nact; i++) {
		if (s->act[i].from == node && (uint32_t)s->act[i].handle == handle) {
			*slot = i;
			return &s->act[i];
		}
	}
	return NULL;
}

static void load_hit(struct sim *s, uint32_t node, uint32_t handle)
{
	uint32_t slot;
	struct active *q = load_find(s, node, handle, &slot);

	if (q)
		q->hits++;
}

static void load_done(struct sim *s, uint32_t node, uint32_t handle, uint32_t hits)
{
	uint32_t slot;
	struct active *q = load_find(s, node, handle, &slot);

	if (!q)
		return;
	s->lr->done++;
	s->lr->answered += q->hits > 0;
	s->act[slot] = s->act[--s->nact];
}

static void schedule_timer(struct sim *s, uint32_t id)
{
	struct node *nd = &s->nodes[id];
	uint64_t w = flood_next_wakeup(nd->f);

	if (w == 0 || w == SIM_NEVER)
		return;
	if (w < s->now || (w == s->now && nd->last_tick == s->now))
		w = s->now + 1; /* never spin at one instant */
	if (w < nd->timer_at && evq_push(&s->evq, w, EV_TIMER, id, 0) == 0)
		nd->timer_at = w;
}

/* Carries out every action node `id` has pending; answers the queries for
 * items it holds. */
static int drain(struct sim *s, uint32_t id)
{
	struct node *nd = &s->nodes[id];
	struct flood_action a;
	uint8_t answers[SIM_MAX_ANSWERS][FLOOD_QID_BYTES];
	int rc = 0;

	for (;;) {
		uint32_t nans = 0;

		while (flood_next_action(nd->f, &a)) {
			switch (a.type) {
			case FLOOD_SEND_QUERY:
				rc = send_msg(s, id, a.nb, &a.q, a.q.id, a.q.data, a.q.len);
				break;
			case FLOOD_SEND_HIT:
				rc = send_msg(s, id, a.nb, NULL, a.qid, a.payload, a.len);
				break;
			case FLOOD_LOCAL_QUERY: {
				uint32_t item = cid_decode(s, &a.q);

				if (id != s->cur.from && nd->mark != s->cur.serial) {
					nd->mark = s->cur.serial;
					s->cur.res.reached++;
				}
				if (item != SIM_NONE && holds(s, item, id) && nans < SIM_MAX_ANSWERS)
					memcpy(answers[nans++], a.q.id, FLOOD_QID_BYTES);
				break;
			}
			case FLOOD_DELIVER_HIT:
				if (s->load)
					load_hit(s, id, a.handle);
				else if (id == s->cur.from && (int)a.handle == s->cur.handle && !s->cur.done) {
					if (s->cur.res.hits++ == 0)
						s->cur.res.first_hit_ms = s->now - s->cur.start;
				}
				break;
			case FLOOD_DROP_NEIGHBOR:
				unlink_nodes(s, id, a.nb);
				break;
			case FLOOD_QUERY_DONE:
				if (s->load)
					load_done(s, id, a.handle, a.hits);
				else if (id == s->cur.from && (int)a.handle == s->cur.handle) {
					s->cur.done = true;
					s->cur.res.done_ms = s->now - s->cur.start;
				}
				break;
			}
			if (rc)
				return rc;
		}
		if (nans == 0)
			break;
		for (uint32_t i = 0; i < nans; i++) {
			uint8_t payload[SIM_HIT_PAYLOAD] = { 0 };

			payload[0] = (uint8_t)(id >> 24);
			payload[1] = (uint8_t)(id >> 16);
			payload[2] = (uint8_t)(id >> 8);
			payload[3] = (uint8_t)id;
			flood_answer(nd->f, answers[i], payload, sizeof(payload), s->now);
		}
	}
	schedule_timer(s, id);
	return 0;
}

static int load_start(struct sim *s);

static int step(struct sim *s)
{
	struct evq_ev e = evq_pop(&s->evq);

	s->now = e.at;
	if (e.kind == EV_START)
		return load_start(s);
	if (e.kind == EV_TIMER) {
		struct node *nd = &s->nodes[e.a];

		if (e.at != nd->timer_at)
			return 0; /* superseded */
		nd->timer_at = SIM_NEVER;
		nd->last_tick = s->now;
		flood_tick(nd->f, s->now);
		return drain(s, e.a);
	}
	struct msg m = s->msgs[e.a];

	msg_free(s, e.a);
	s->inflight--;
	struct flood *f = s->nodes[m.to].f;

	if (m.hit) {
		flood_on_hit(f, m.from, m.q.id, m.data, m.len, s->now);
	} else {
		m.q.data = m.data;
		flood_on_query(f, m.from, &m.q, s->now);
	}
	return drain(s, m.to);
}

/* Runs every event due at or before `until`. */
static int run_until(struct sim *s, uint64_t until)
{
	while (evq_len(&s->evq) > 0 && evq_next_at(&s->evq) <= until) {
		int rc = step(s);

		if (rc)
			return rc;
	}
	if (s->now < until)
		s->now = until;
	return 0;
}

/* ---------------- building ---------------- */

static bool adjacent(const struct sim *s, uint32_t a, uint32_t b)
{
	const uint32_t *l = s->adj + (size_t)a * SIM_MAX_DEGREE;

	for (uint32_t i = 0; i < s->nodes[a].deg; i++)
		if (l[i] == b)
			return true;
	return false;
}

static int link_nodes(struct sim *s, uint32_t a, uint32_t b)
{
	if (a == b || a >= s->n || b >= s->n || adjacent(s, a, b))
		return PN_EINVAL;
	if (s->nodes[a].deg >= SIM_MAX_DEGREE || s->nodes[b].deg >= SIM_MAX_DEGREE)
		return PN_ELIMIT;
	if (flood_neighbor_add(s->nodes[a].f, b, 0) || flood_neighbor_add(s->nodes[b].f, a, 0))
		return PN_ELIMIT;
	s->adj[(size_t)a * SIM_MAX_DEGREE + s->nodes[a].deg++] = b;
	s->adj[(size_t)b * SIM_MAX_DEGREE + s->nodes[b].deg++] = a;
	return 0;
}

static struct sim *sim_alloc(const struct sim_params *p)
{
	struct sim_params d = *p;

	if (!d.min_degree)
		d.min_degree = SIM_DEFAULT_MIN_DEGREE;
	if (!d.max_degree)
		d.max_degree = SIM_DEFAULT_MAX_DEGREE;
	if (!d.lat_min_ms && !d.lat_max_ms) {
		d.lat_min_ms = SIM_DEFAULT_LAT_MIN_MS;
		d.lat_max_ms = SIM_DEFAULT_LAT_MAX_MS;
	}
	if (d.nodes < 2 || d.min_degree > d.max_degree || d.max_degree > SIM_MAX_DEGREE ||
	    d.lat_min_ms > d.lat_max_ms || d.loss < 0 || d.loss >= 1)
		return NULL;

	struct sim *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->p = d;
	s->n = d.nodes;
	evq_init(&s->evq, SIM_EVQ_FIRST, SIM_EVQ_MAX);
	s->free_msg = SIM_NONE;
	s->words = (d.nodes + 63) / 64;
	pn_prng_seed(&s->topo, d.seed ^ ((uint64_t)SIM_STREAM_TOPO << 32));
	pn_prng_seed(&s->net, d.seed ^ ((uint64_t)SIM_STREAM_NET << 32));
	pn_prng_seed(&s->work, d.seed ^ ((uint64_t)SIM_STREAM_WORK << 32));
	pn_prng_seed(&s->ask, d.seed ^ ((uint64_t)SIM_STREAM_QUERY << 32));
	s->nodes = calloc(s->n, sizeof(*s->nodes));
	s->adj = calloc((size_t)s->n * SIM_MAX_DEGREE, sizeof(*s->adj));
	if (!s->nodes || !s->adj)
		goto fail;

	struct pn_prng seeds;

	pn_prng_seed(&seeds, d.seed ^ ((uint64_t)SIM_STREAM_NODE << 32));
	for (uint32_t i = 0; i < s->n; i++) {
		struct flood_opts o = {
			.max_ttl = FLOOD_MAX_TTL,
			.cache_max = d.cache_max,
			.seed = pn_prng_next(&seeds),
		};

		s->nodes[i].f = flood_new(&o);
		if (!s->nodes[i].f)
			goto fail;
		s->nodes[i].timer_at = SIM_NEVER;
		s->nodes[i].last_tick = SIM_NEVER;
	}
	return s;
fail:
	sim_free(s);
	return NULL;
}

struct sim *sim_new_edges(const struct sim_params *p, const uint32_t (*edges)[2], size_t nedges)
{
	struct sim *s = sim_alloc(p);

	if (!s)
		return NULL;
	for (size_t i = 0; i < nedges; i++) {
		if (link_nodes(s, edges[i][0], edges[i][1])) {
			sim_free(s);
			return NULL;
		}
	}
	return s;
}

/* A random node below max degree, other than `self` and not yet its neighbour. */
static uint32_t pick_partner(struct sim *s, uint32_t self)
{
	for (uint32_t t = 0; t < SIM_DIAL_TRIES; t++) {
		uint32_t m = pn_prng_below(&s->topo, s->n);

		if (m != self && s->nodes[m].deg < s->p.max_degree && !adjacent(s, self, m))
			return m;
	}
	return SIM_NONE;
}

/* A random tree first (connected for sure), then, like the real node, each
 * node dials random nodes until it has min neighbours; a node accepts only
 * while it is below max. */
struct sim *sim_new(const struct sim_params *p)
{
	struct sim *s = sim_alloc(p);
	uint32_t *perm = NULL;

	if (!s)
		return NULL;
	if (s->p.min_degree >= s->n)
		goto fail;
	perm = malloc((size_t)s->n * sizeof(*perm));
	if (!perm)
		goto fail;
	for (uint32_t i = 0; i < s->n; i++)
		perm[i] = i;
	for (uint32_t i = s->n - 1; i > 0; i--) {
		uint32_t j = pn_prng_below(&s->topo, i + 1);
		uint32_t t = perm[i];

		perm[i] = perm[j];
		perm[j] = t;
	}
	for (uint32_t i = 1; i < s->n; i++) {
		uint32_t j = pn_prng_below(&s->topo, i);

		/* the tree's degrees stay far below max; walk on if one is full */
		while (s->nodes[perm[j]].deg >= s->p.max_degree)
			j = (j + 1) % i;
		if (link_nodes(s, perm[i], perm[j]))
			goto fail;
	}
	for (uint32_t i = 0; i < s->n; i++) {
		uint32_t a = perm[i];

		while (s->nodes[a].deg < s->p.min_degree) {
			uint32_t b = pick_partner(s, a);

			if (b == SIM_NONE || link_nodes(s, a, b))
				break;
		}
	}
	free(perm);
	return s;
fail:
	free(perm);
	sim_free(s);
	return NULL;
}

void sim_free(struct sim *s)
{
	if (!s)
		return;
	if (s->nodes)
		for (uint32_t i = 0; i < s->n; i++)
			flood_free(s->nodes[i].f);
	free(s->nodes);
	free(s->adj);
	evq_free(&s->evq);
	free(s->msgs);
	free(s->holds);
	free(s);
}

uint32_t sim_nodes(const struct sim *s)
{
	return s->n;
}

uint64_t sim_now(const struct sim *s)
{
	return s->now;
}

struct sim_degree sim_degree_stats(const struct sim *s)
{
	struct sim_degree d = { .min = UINT32_MAX };
	uint64_t sum = 0;

	for (uint32_t i = 0; i < s->n; i++) {
		uint32_t g = s->nodes[i].deg;

		sum += g;
		if (g < d.min)
			d.min = g;
		if (g > d.max)
			d.max = g;
	}
	d.mean = (double)sum / s->n;
	return d;
}

/* ---------------- content and queries ---------------- */

int sim_items_clear(struct sim *s, uint32_t items)
{
	uint64_t *h = calloc((size_t)items * s->words, sizeof(*h));

	if (!h && items)
		return PN_ENOMEM;
	free(s->holds);
	s->holds = h;
	s->items = items;
	return 0;
}

void sim_hold(struct sim *s, uint32_t item, uint32_t node)
{
	if (item < s->items && node < s->n)
		s->holds[(size_t)item * s->words + node / 64] |= 1ull << (node % 64);
}

int sim_items_random(struct sim *s, uint32_t items, uint32_t replication)
{
	if (replication > s->n)
		return PN_EINVAL;
	int rc = sim_items_clear(s, items);

	if (rc)
		return rc;
	for (uint32_t it = 0; it < items; it++) {
		for (uint32_t k = 0; k < replication;) {
			uint32_t nd = pn_prng_below(&s->work, s->n);

			if (!holds(s, it, nd)) {
				sim_hold(s, it, nd);
				k++;
			}
		}
	}
	return 0;
}

int sim_query(struct sim *s, uint32_t from, uint32_t item, uint8_t ttl, bool ring, uint32_t want,
	      struct sim_query_result *out)
{
	uint8_t cid[SIM_CID_BYTES];
	int rc;

	if (from >= s->n || item >= s->items)
		return PN_EINVAL;
	rc = run_until(s, s->now + SIM_QUERY_GAP_MS);
	if (rc)
		return rc;
	memset(&s->cur.res, 0, sizeof(s->cur.res));
	s->cur.serial++;
	s->cur.from = from;
	s->cur.start = s->now;
	s->cur.done = false;
	s->cur.handle = 0;
	cid_encode(item, cid);
	rc = flood_start(s->nodes[from].f, FLOOD_CID, cid, SIM_CID_BYTES, ttl, ring, want, s->now);
	if (rc < 0)
		return rc;
	s->cur.handle = rc;
	rc = drain(s, from);
	while (rc == 0 && (!s->cur.done || s->inflight > 0)) {
		if (evq_len(&s->evq) == 0 || s->now - s->cur.start > SIM_QUERY_LIMIT_MS) {
			fprintf(stderr, "flood-sim: query from node %u never finished (%s)\n", from,
				evq_len(&s->evq) ? "time limit" : "no events left");
			return PN_ETIMEDOUT;
		}
		rc = step(s);
	}
	if (rc)
		return rc;
	s->cur.res.answered = s->cur.res.hits > 0;
	*out = s->cur.res;
	return 0;
}

void sim_queries_seed(struct sim *s, uint64_t seed)
{
	pn_prng_seed(&s->ask, seed ^ ((uint64_t)SIM_STREAM_QUERY << 32));
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

int sim_cell_run(struct sim *s, uint32_t queries, uint8_t ttl, bool ring, uint32_t want, struct sim_cell *out)
{
	uint64_t *first = calloc(queries ? queries : 1, sizeof(*first));
	int rc = 0;

	if (!first)
		return PN_ENOMEM;
	memset(out, 0, sizeof(*out));
	for (uint32_t q = 0; q < queries && rc == 0; q++) {
		uint32_t item = pn_prng_below(&s->ask, s->items);
		uint32_t from = SIM_NONE;
		struct sim_query_result r;

		for (uint32_t t = 0; t < SIM_PICK_TRIES && from == SIM_NONE; t++) {
			uint32_t c = pn_prng_below(&s->ask, s->n);

			if (!holds(s, item, c))
				from = c;
		}
		if (from == SIM_NONE) {
			rc = PN_EINVAL;
			break;
		}
		rc = sim_query(s, from, item, ttl, ring, want, &r);
		if (rc)
			break;
		out->queries++;
		out->query_msgs += r.query_msgs;
		out->hit_msgs += r.hit_msgs;
		out->reached += r.reached;
		if (r.answered) {
			first[out->answered++] = r.first_hit_ms;
			out->first_hit_sum_ms += r.first_hit_ms;
		}
	}
	out->msgs = out->query_msgs + out->hit_msgs;
	if (out->answered) {
		qsort(first, out->answered, sizeof(*first), cmp_u64);
		out->first_hit_median_ms = first[out->answered / 2];
	}
	free(first);
	return rc;
}

void sim_core_stats(const struct sim *s, struct flood_stats *sum)
{
	memset(sum, 0, sizeof(*sum));
	for (uint32_t i = 0; i < s->n; i++) {
		const struct flood_stats *st = flood_get_stats(s->nodes[i].f);

		sum->queries_started += st->queries_started;
		sum->queries_sent += st->queries_sent;
		sum->queries_received += st->queries_received;
		sum->duplicates_dropped += st->duplicates_dropped;
		sum->rate_limited += st->rate_limited;
		sum->hits_sent += st->hits_sent;
		sum->hits_received += st->hits_received;
		sum->hits_unroutable += st->hits_unroutable;
		sum->queries_invalid += st->queries_invalid;
		sum->queries_reforwarded += st->queries_reforwarded;
		sum->hits_delivered += st->hits_delivered;
		sum->hits_dropped += st->hits_dropped;
		sum->actions_dropped += st->actions_dropped;
	}
}

/* ---------------- load ---------------- */

/* A random node that lacks a random item; false if none was found. */
static bool pick_query(struct sim *s, uint32_t *from, uint32_t *item)
{
	*item = pn_prng_below(&s->ask, s->items);
	for (uint32_t t = 0; t < SIM_PICK_TRIES; t++) {
		uint32_t c = pn_prng_below(&s->ask, s->n);

		if (!holds(s, *item, c)) {
			*from = c;
			return true;
		}
	}
	return false;
}

static int load_start(struct sim *s)
{
	uint8_t cid[SIM_CID_BYTES];
	uint32_t from, item;

	s->load_pending--;
	if (!pick_query(s, &from, &item) || s->nact == SIM_MAX_ACTIVE) {
		s->lr->refused++;
		return 0;
	}
	cid_encode(item, cid);
	int h = flood_start(s->nodes[from].f, FLOOD_CID, cid, SIM_CID_BYTES, s->load_ttl, s->load_ring,
			    s->load_want, s->now);

	if (h < 0) {
		s->lr->refused++;
		return 0;
	}
	s->act[s->nact++] = (struct active){ .from = from, .handle = h };
	s->lr->started++;
	return drain(s, from);
}

static uint64_t rate_limited_sum(const struct sim *s)
{
	struct flood_stats st;

	sim_core_stats(s, &st);
	return st.rate_limited;
}

int sim_load_run(struct sim *s, double qps, uint32_t duration_ms, uint8_t ttl, bool ring, uint32_t want,
		 struct sim_load *out)
{
	uint64_t drops0 = s->drops, limited0 = rate_limited_sum(s);
	int rc;

	if (qps <= 0 || !s->items)
		return PN_EINVAL;
	memset(out, 0, sizeof(*out));
	rc = run_until(s, s->now + SIM_QUERY_GAP_MS);
	if (rc)
		return rc;
	s->act = calloc(SIM_MAX_ACTIVE, sizeof(*s->act));
	if (!s->act)
		return PN_ENOMEM;
	s->load = true;
	s->nact = 0;
	s->lr = out;
	s->load_ttl = ttl;
	s->load_ring = ring;
	s->load_want = want;
	memset(&s->cur.res, 0, sizeof(s->cur.res));
	s->cur.serial++;
	s->cur.from = SIM_NONE;

	/* Poisson arrivals over the whole network */
	uint64_t t0 = s->now;
	double t = 0;

	for (;;) {
		double u = (double)((pn_prng_next(&s->ask) >> 11) + 1) * 0x1.0p-53; /* (0, 1] */

		t += -log(u) * 1000.0 / qps;
		if (t >= duration_ms)
			break;
		rc = evq_push(&s->evq, t0 + (uint64_t)t, EV_START, 0, 0);
		if (rc)
			goto out;
		s->load_pending++;
	}
	while (s->load_pending || s->nact || s->inflight) {
		if (evq_len(&s->evq) == 0 || s->now - t0 > duration_ms + (uint64_t)SIM_QUERY_LIMIT_MS) {
			rc = PN_ETIMEDOUT;
			goto out;
		}
		rc = step(s);
		if (rc)
			goto out;
	}
out:
	out->msgs = s->cur.res.query_msgs + s->cur.res.hit_msgs;
	out->rate_limited = rate_limited_sum(s) - limited0;
	out->links_dropped = s->drops - drops0;
	out->degree_after = sim_degree_stats(s).mean;
	s->load = false;
	s->lr = NULL;
	free(s->act);
	s->act = NULL;
	s->nact = 0;
	return rc;
}

uint64_t sim_msgs_sent(const struct sim *s)
{
	return s->sent;
}
