/* Flood core: a tiny in-test network of N cores with a message heap and a
 * fake clock. Actions are turned into messages delivered after a per-link
 * latency; no sockets, no sleeps. Every message carries the path it took, so
 * the tests can check first-arrival paths and the reverse path of each hit. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include "peernet.h"
#include "proto/flood.h"
#include "proto/prng.h"

#define NET_MAX 128
#define PATH_MAX_NODES 32
#define TRACK_MAX 16       /* query IDs tracked per node */
#define LOG_MAX 1024
#define LATENCY_MS 10
#define HEAP_INITIAL 1024
#define RUN_ALL UINT64_MAX
#define ITEM_NEAR "quarterly report"
#define ITEM_FAR "annual report"

struct msg {
	uint64_t at, seq;
	bool hit;
	uint32_t from, to;
	uint8_t qid[FLOOD_QID_BYTES];
	uint8_t ttl, hops, kind;
	uint16_t len;
	uint8_t data[FLOOD_MAX_QUERY_DATA];
	uint8_t payload[8];
	size_t plen;
	uint8_t path[PATH_MAX_NODES];
	uint32_t npath;
};

struct track {
	uint8_t qid[FLOOD_QID_BYTES];
	uint32_t locals;
	uint8_t first_path[PATH_MAX_NODES];
	uint32_t nfirst;
};

struct hit_log {
	uint32_t node, handle, answerer;
	uint8_t qid[FLOOD_QID_BYTES];
	uint8_t path[PATH_MAX_NODES];
	uint32_t npath;
};

struct done_log {
	uint32_t node, handle, hits;
};

struct sent_log { /* an own query step: node, qid, ttl */
	uint32_t node;
	uint8_t qid[FLOOD_QID_BYTES];
	uint8_t ttl;
};

struct net {
	uint32_t n;
	struct flood *cores[NET_MAX];
	uint32_t lat[NET_MAX][NET_MAX]; /* 0: no link */
	const char *holds[NET_MAX];
	uint64_t now, seq;
	struct msg **heap;
	uint32_t nheap, heapcap;
	struct track tr[NET_MAX][TRACK_MAX];
	uint32_t ntr[NET_MAX];
	struct hit_log hits[LOG_MAX];
	uint32_t nhits;
	struct done_log dones[LOG_MAX];
	uint32_t ndones;
	struct sent_log sent[LOG_MAX];
	uint32_t nsent;
	uint32_t drops[NET_MAX]; /* DROP_NEIGHBOR asked by node x */
	uint64_t query_msgs, hit_msgs;
};

static struct net *net_new(uint32_t n, const struct flood_opts *opts)
{
	struct net *net = calloc(1, sizeof(*net));

	cr_assert(net);
	net->n = n;
	for (uint32_t i = 0; i < n; i++) {
		struct flood_opts o = opts ? *opts : (struct flood_opts){ 0 };

		o.seed = 1000 + i;
		net->cores[i] = flood_new(&o);
		cr_assert(net->cores[i]);
	}
	return net;
}

static void net_free(struct net *net)
{
	for (uint32_t i = 0; i < net->n; i++)
		flood_free(net->cores[i]);
	for (uint32_t i = 0; i < net->nheap; i++)
		free(net->heap[i]);
	free(net->heap);
	free(net);
}

static void link_nodes(struct net *net, uint32_t a, uint32_t b, uint32_t latency)
{
	if (a == b || net->lat[a][b])
		return;
	net->lat[a][b] = net->lat[b][a] = latency;
	cr_assert_eq(flood_neighbor_add(net->cores[a], b, net->now), 0);
	cr_assert_eq(flood_neighbor_add(net->cores[b], a, net->now), 0);
}

static uint32_t degree(const struct net *net, uint32_t a)
{
	uint32_t d = 0;

	for (uint32_t b = 0; b < net->n; b++)
		d += net->lat[a][b] != 0;
	return d;
}

static uint64_t degree_sum(const struct net *net)
{
	uint64_t s = 0;

	for (uint32_t a = 0; a < net->n; a++)
		s += degree(net, a);
	return s;
}

/* Hop distances from src (UINT32_MAX: unreachable). */
static void bfs(const struct net *net, uint32_t src, uint32_t *dist)
{
	uint32_t queue[NET_MAX], head = 0, tail = 0;

	for (uint32_t i = 0; i < net->n; i++)
		dist[i] = UINT32_MAX;
	dist[src] = 0;
	queue[tail++] = src;
	while (head < tail) {
		uint32_t a = queue[head++];

		for (uint32_t b = 0; b < net->n; b++)
			if (net->lat[a][b] && dist[b] == UINT32_MAX) {
				dist[b] = dist[a] + 1;
				queue[tail++] = b;
			}
	}
}

static bool msg_before(const struct msg *a, const struct msg *b)
{
	return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

static void heap_push(struct net *net, struct msg *m)
{
	if (net->nheap == net->heapcap) {
		net->heapcap = net->heapcap ? net->heapcap * 2 : HEAP_INITIAL;
		net->heap = realloc(net->heap, net->heapcap * sizeof(*net->heap));
		cr_assert(net->heap);
	}
	m->seq = net->seq++;
	uint32_t i = net->nheap++;

	while (i && msg_before(m, net->heap[(i - 1) / 2])) {
		net->heap[i] = net->heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	net->heap[i] = m;
}

static struct msg *heap_pop(struct net *net)
{
	struct msg *top = net->heap[0], *last = net->heap[--net->nheap];
	uint32_t i = 0;

	for (;;) {
		uint32_t c = 2 * i + 1;

		if (c >= net->nheap)
			break;
		if (c + 1 < net->nheap && msg_before(net->heap[c + 1], net->heap[c]))
			c++;
		if (!msg_before(net->heap[c], last))
			break;
		net->heap[i] = net->heap[c];
		i = c;
	}
	if (net->nheap)
		net->heap[i] = last;
	return top;
}

static struct track *track_of(struct net *net, uint32_t x, const uint8_t *qid)
{
	for (uint32_t i = 0; i < net->ntr[x]; i++)
		if (!memcmp(net->tr[x][i].qid, qid, FLOOD_QID_BYTES))
			return &net->tr[x][i];
	return NULL;
}

/* Locals of node x for qid (0 if never seen). */
static uint32_t locals(struct net *net, uint32_t x, const uint8_t *qid)
{
	struct track *t = track_of(net, x, qid);

	return t ? t->locals : 0;
}

static struct msg *msg_new(struct net *net, uint32_t from, uint32_t to, const uint8_t *path, uint32_t npath)
{
	struct msg *m = calloc(1, sizeof(*m));

	cr_assert(m);
	cr_assert(net->lat[from][to], "message over a missing link %u-%u", from, to);
	cr_assert_lt(npath, PATH_MAX_NODES);
	m->at = net->now + net->lat[from][to];
	m->from = from;
	m->to = to;
	memcpy(m->path, path, npath);
	m->npath = npath;
	return m;
}

/* Drains node x; path is the path (ending at x) of whatever caused the call. */
static void drain(struct net *net, uint32_t x, const uint8_t *path, uint32_t npath)
{
	struct flood_action a;
	uint8_t answers[LOG_MAX][FLOOD_QID_BYTES];
	uint32_t nanswers = 0;

	while (flood_next_action(net->cores[x], &a)) {
		switch (a.type) {
		case FLOOD_SEND_QUERY: {
			struct msg *m = msg_new(net, x, a.nb, path, npath);

			cr_assert_leq(a.q.ttl + a.q.hops, FLOOD_MAX_TTL, "a sent query is within the hop limit");
			cr_assert_geq(a.q.ttl, 1);
			memcpy(m->qid, a.q.id, FLOOD_QID_BYTES);
			m->ttl = a.q.ttl;
			m->hops = a.q.hops;
			m->kind = a.q.kind;
			m->len = a.q.len;
			memcpy(m->data, a.q.data, a.q.len);
			heap_push(net, m);
			net->query_msgs++;
			if (npath == 1 && net->nsent < LOG_MAX) { /* own step: log once per qid */
				bool seen = false;

				for (uint32_t i = 0; i < net->nsent; i++)
					seen |= net->sent[i].node == x && !memcmp(net->sent[i].qid, a.q.id, FLOOD_QID_BYTES);
				if (!seen) {
					net->sent[net->nsent].node = x;
					net->sent[net->nsent].ttl = a.q.ttl;
					memcpy(net->sent[net->nsent++].qid, a.q.id, FLOOD_QID_BYTES);
				}
			}
			break;
		}
		case FLOOD_SEND_HIT: {
			struct msg *m = msg_new(net, x, a.nb, path, npath);

			m->hit = true;
			memcpy(m->qid, a.qid, FLOOD_QID_BYTES);
			cr_assert_leq(a.len, sizeof(m->payload));
			memcpy(m->payload, a.payload, a.len);
			m->plen = a.len;
			heap_push(net, m);
			net->hit_msgs++;
			break;
		}
		case FLOOD_LOCAL_QUERY: {
			struct track *t = track_of(net, x, a.q.id);

			if (!t) {
				cr_assert_lt(net->ntr[x], TRACK_MAX);
				t = &net->tr[x][net->ntr[x]++];
				memcpy(t->qid, a.q.id, FLOOD_QID_BYTES);
				memcpy(t->first_path, path, npath);
				t->nfirst = npath;
			}
			t->locals++;
			if (net->holds[x] && a.q.len == strlen(net->holds[x]) &&
			    !memcmp(a.q.data, net->holds[x], a.q.len))
				memcpy(answers[nanswers++], a.q.id, FLOOD_QID_BYTES);
			break;
		}
		case FLOOD_DELIVER_HIT: {
			cr_assert_lt(net->nhits, LOG_MAX);
			struct hit_log *h = &net->hits[net->nhits++];

			cr_assert_eq(a.len, 1);
			h->node = x;
			h->handle = a.handle;
			h->answerer = a.payload[0];
			memcpy(h->qid, a.qid, FLOOD_QID_BYTES);
			memcpy(h->path, path, npath);
			h->npath = npath;
			break;
		}
		case FLOOD_DROP_NEIGHBOR:
			net->drops[x]++;
			break;
		case FLOOD_QUERY_DONE:
			cr_assert_lt(net->ndones, LOG_MAX);
			net->dones[net->ndones++] = (struct done_log){ x, a.handle, a.hits };
			break;
		}
	}
	/* Answers go in after the drain: a call into the core ends the action's pointers. */
	for (uint32_t i = 0; i < nanswers; i++) {
		uint8_t self[1] = { (uint8_t)x }, payload[1] = { (uint8_t)x };

		flood_answer(net->cores[x], answers[i], payload, sizeof(payload), net->now);
		drain(net, x, self, 1);
	}
}

static void deliver(struct net *net, struct msg *m)
{
	uint8_t path[PATH_MAX_NODES];
	uint32_t npath = m->npath;

	cr_assert_lt(npath, PATH_MAX_NODES);
	memcpy(path, m->path, npath);
	path[npath++] = (uint8_t)m->to;
	if (m->hit) {
		flood_on_hit(net->cores[m->to], m->from, m->qid, m->payload, m->plen, net->now);
	} else {
		struct flood_query q = { .ttl = m->ttl, .hops = m->hops, .kind = m->kind, .len = m->len, .data = m->data };

		memcpy(q.id, m->qid, FLOOD_QID_BYTES);
		flood_on_query(net->cores[m->to], m->from, &q, net->now);
	}
	drain(net, m->to, path, npath);
	free(m);
}

/* Runs messages and timers in time order up to `until`. */
static void run_until(struct net *net, uint64_t until)
{
	for (;;) {
		uint64_t tmsg = net->nheap ? net->heap[0]->at : UINT64_MAX, twake = UINT64_MAX;

		for (uint32_t i = 0; i < net->n; i++) {
			uint64_t w = flood_next_wakeup(net->cores[i]);

			twake = w < twake ? w : twake;
		}
		uint64_t t = tmsg < twake ? tmsg : twake;

		if (t == UINT64_MAX || t > until)
			break;
		if (t > net->now)
			net->now = t;
		if (tmsg <= twake) {
			deliver(net, heap_pop(net));
			continue;
		}
		for (uint8_t i = 0; i < net->n; i++) {
			if (flood_next_wakeup(net->cores[i]) > t)
				continue;
			flood_tick(net->cores[i], net->now);
			drain(net, i, &i, 1);
		}
	}
	if (until != RUN_ALL && until > net->now)
		net->now = until;
}

/* Runs until every message is delivered and every own query is done (not
 * waiting for the cache to expire). */
static void run_quiet(struct net *net)
{
	run_until(net, net->now + 60000 - 1);
	cr_assert_eq(net->nheap, 0);
}

static int start(struct net *net, uint32_t x, const char *item, uint8_t ttl, bool ring, uint32_t want)
{
	uint8_t self = (uint8_t)x;
	int h = flood_start(net->cores[x], FLOOD_KEYWORDS, (const uint8_t *)item, (uint16_t)strlen(item), ttl, ring,
			    want, net->now);

	cr_assert_gt(h, 0);
	drain(net, x, &self, 1);
	return h;
}

/* The first (only) query ID node x sent, as logged at its first step. */
static const uint8_t *first_qid(struct net *net, uint32_t x)
{
	for (uint32_t i = 0; i < net->nsent; i++)
		if (net->sent[i].node == x)
			return net->sent[i].qid;
	cr_assert_fail("node %u sent no query", x);
	return NULL;
}

static uint32_t done_count(const struct net *net, uint32_t x, uint32_t handle, uint32_t *hits)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < net->ndones; i++)
		if (net->dones[i].node == x && net->dones[i].handle == handle) {
			n++;
			if (hits)
				*hits = net->dones[i].hits;
		}
	return n;
}

static uint32_t delivered(const struct net *net, uint32_t x, uint32_t handle)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < net->nhits; i++)
		n += net->hits[i].node == x && net->hits[i].handle == handle;
	return n;
}

/* The neighbour node y first got qid from (the previous node of its first path). */
static uint32_t first_from(struct net *net, uint32_t y, const uint8_t *qid)
{
	struct track *t = track_of(net, y, qid);

	cr_assert(t && t->nfirst >= 2, "node %u never got the query", y);
	return t->first_path[t->nfirst - 2];
}

/* Each hit went back hop by hop along the first-arrival links, from the
 * answerer to the querier. */
static void check_hit_paths(struct net *net)
{
	for (uint32_t i = 0; i < net->nhits; i++) {
		const struct hit_log *h = &net->hits[i];

		cr_assert_eq(h->path[0], h->answerer);
		cr_assert_eq(h->path[h->npath - 1], h->node);
		for (uint32_t k = 0; k + 1 < h->npath; k++)
			cr_assert_eq(h->path[k + 1], first_from(net, h->path[k], h->qid),
				     "hit left %u for %u, not its first-arrival link", h->path[k], h->path[k + 1]);
	}
}

/* Plain flood from src with ttl: exactly the nodes within ttl hops get it
 * once; messages stay within the sum of degrees; uniform latency so the first
 * path is a shortest path. */
static void check_flood_reach(struct net *net, uint32_t src, uint8_t ttl)
{
	uint32_t dist[NET_MAX];

	bfs(net, src, dist);
	start(net, src, "nobody holds this", ttl, false, 1);
	run_quiet(net);
	const uint8_t *qid = first_qid(net, src);

	for (uint32_t x = 0; x < net->n; x++) {
		uint32_t want = x != src && dist[x] <= ttl ? 1 : 0;

		cr_assert_eq(locals(net, x, qid), want, "node %u at distance %u, ttl %u: %u locals", x, dist[x], ttl,
			     locals(net, x, qid));
		if (want)
			cr_assert_eq(track_of(net, x, qid)->nfirst, dist[x] + 1, "first copy came the shortest way");
	}
	cr_assert_leq(net->query_msgs, degree_sum(net));
}

static void make_line(struct net *net)
{
	for (uint32_t i = 0; i + 1 < net->n; i++)
		link_nodes(net, i, i + 1, LATENCY_MS);
}

static void make_ring(struct net *net)
{
	for (uint32_t i = 0; i < net->n; i++)
		link_nodes(net, i, (i + 1) % net->n, LATENCY_MS);
}

/* Random connected graph: a random tree, then random edges up to an average degree. */
static void make_random(struct net *net, uint64_t seed, uint32_t avg_degree)
{
	struct pn_prng prng;

	pn_prng_seed(&prng, seed);
	for (uint32_t i = 1; i < net->n; i++)
		link_nodes(net, i, pn_prng_below(&prng, i), LATENCY_MS);
	while (degree_sum(net) < (uint64_t)avg_degree * net->n) {
		uint32_t a = pn_prng_below(&prng, net->n), b = pn_prng_below(&prng, net->n);

		if (degree(net, a) < FLOOD_MAX_NEIGHBORS && degree(net, b) < FLOOD_MAX_NEIGHBORS)
			link_nodes(net, a, b, LATENCY_MS);
	}
}

/* A node at exactly distance d from src (the lowest numbered). */
static uint32_t node_at(struct net *net, uint32_t src, uint32_t d)
{
	uint32_t dist[NET_MAX];

	bfs(net, src, dist);
	for (uint32_t x = 0; x < net->n; x++)
		if (dist[x] == d)
			return x;
	cr_assert_fail("no node at distance %u", d);
	return 0;
}

static uint64_t total_sent(struct net *net)
{
	uint64_t s = 0;

	for (uint32_t i = 0; i < net->n; i++)
		s += flood_get_stats(net->cores[i])->queries_sent;
	return s;
}

/* ---- reach: exactly once within the hop limit ---- */

Test(flood, line_reach)
{
	for (uint8_t ttl = 1; ttl <= FLOOD_MAX_TTL; ttl++) {
		struct net *net = net_new(12, NULL);

		make_line(net);
		check_flood_reach(net, 2, ttl);
		net_free(net);
	}
}

Test(flood, ring_reach_and_no_amplification)
{
	struct net *net = net_new(10, NULL);

	make_ring(net);
	check_flood_reach(net, 0, FLOOD_MAX_TTL);
	/* Both arms meet at the far side: every node got it once, the rest were dropped. */
	uint64_t dups = 0;

	for (uint32_t i = 0; i < net->n; i++)
		dups += flood_get_stats(net->cores[i])->duplicates_dropped;
	cr_assert_gt(dups, 0);
	/* Every message is either some node's first copy or a dropped duplicate,
	 * and each node forwards once: the origin's 2 plus one per other node. */
	cr_assert_eq(net->query_msgs, (net->n - 1) + dups);
	cr_assert_eq(net->query_msgs, 2 + (net->n - 1));
	net_free(net);
}

Test(flood, star_reach)
{
	struct net *net = net_new(20, NULL);

	for (uint32_t i = 1; i < net->n; i++)
		link_nodes(net, 0, i, LATENCY_MS);
	check_flood_reach(net, 5, 1); /* a leaf: only the hub */
	net_free(net);
	net = net_new(20, NULL);
	for (uint32_t i = 1; i < net->n; i++)
		link_nodes(net, 0, i, LATENCY_MS);
	check_flood_reach(net, 5, 2); /* every leaf */
	net_free(net);
}

Test(flood, grid_reach)
{
	for (uint8_t ttl = 2; ttl <= 5; ttl += 3) {
		struct net *net = net_new(100, NULL);

		for (uint32_t y = 0; y < 10; y++)
			for (uint32_t x = 0; x < 10; x++) {
				if (x + 1 < 10)
					link_nodes(net, y * 10 + x, y * 10 + x + 1, LATENCY_MS);
				if (y + 1 < 10)
					link_nodes(net, y * 10 + x, (y + 1) * 10 + x, LATENCY_MS);
			}
		check_flood_reach(net, 44, ttl);
		net_free(net);
	}
}

Test(flood, random_graph_reach)
{
	for (uint64_t seed = 1; seed <= 5; seed++) {
		struct net *net = net_new(100, NULL);

		make_random(net, seed, 4);
		check_flood_reach(net, (uint32_t)seed, (uint8_t)(1 + seed % FLOOD_MAX_TTL));
		net_free(net);
	}
}

/* The short path is slow: node 2 first hears the query the long way with
 * ttl 1 (not forwarded), then directly with ttl 2, and must forward that
 * copy so node 3 (2 hops away) is reached; node 2 is not handed it twice. */
Test(flood, longer_path_first_reforwards)
{
	struct net *net = net_new(4, NULL);

	link_nodes(net, 0, 1, 1);
	link_nodes(net, 1, 2, 1);
	link_nodes(net, 0, 2, 50);
	link_nodes(net, 2, 3, 1);
	net->holds[3] = ITEM_FAR;
	int h = start(net, 0, ITEM_FAR, 2, false, 1);

	run_quiet(net);
	const uint8_t *qid = first_qid(net, 0);

	for (uint32_t x = 1; x < 4; x++)
		cr_assert_eq(locals(net, x, qid), 1, "node %u", x);
	cr_assert_eq(track_of(net, 2, qid)->nfirst, 3, "node 2 first heard it via node 1");
	cr_assert_eq(flood_get_stats(net->cores[2])->queries_reforwarded, 1);
	/* The hit goes back by the first-arrival links: 3 -> 2 -> 1 -> 0. */
	cr_assert_eq(net->nhits, 1);
	cr_assert_eq(net->hits[0].npath, 4);
	cr_assert_eq(net->hits[0].path[1], 2);
	cr_assert_eq(net->hits[0].path[2], 1);
	check_hit_paths(net);
	uint32_t hits = 0;

	cr_assert_eq(done_count(net, 0, (uint32_t)h, &hits), 1);
	cr_assert_eq(hits, 1);
	net_free(net);
}

/* ---- hits: reverse path, never broadcast ---- */

Test(flood, hits_follow_reverse_path)
{
	struct net *net = net_new(100, NULL);
	uint32_t dist[NET_MAX], holders = 0, path_sum = 0;

	make_random(net, 42, 4);
	bfs(net, 7, dist);
	for (uint32_t x = 0; x < net->n; x++)
		if (x % 9 == 0 && x != 7) {
			net->holds[x] = ITEM_NEAR;
			if (dist[x] <= 4) {
				holders++;
				path_sum += dist[x];
			}
		}
	cr_assert_gt(holders, 2);
	int h = start(net, 7, ITEM_NEAR, 4, false, 1);

	run_quiet(net);
	const uint8_t *qid = first_qid(net, 7);

	cr_assert_eq(net->nhits, holders);
	check_hit_paths(net);
	for (uint32_t i = 0; i < net->nhits; i++) {
		const struct hit_log *hl = &net->hits[i];
		const struct track *t = track_of(net, hl->answerer, qid);

		cr_assert_eq(hl->npath, t->nfirst);
		for (uint32_t k = 0; k < hl->npath; k++)
			cr_assert_eq(hl->path[k], t->first_path[t->nfirst - 1 - k], "reverse of the query's path");
	}
	cr_assert_eq(net->hit_msgs, path_sum, "one message per hop of each path, no broadcast");
	uint32_t hits = 0;

	cr_assert_eq(done_count(net, 7, (uint32_t)h, &hits), 1);
	cr_assert_eq(hits, holders);
	cr_assert_eq(delivered(net, 7, (uint32_t)h), holders);
	net_free(net);
}

Test(flood, hits_for_unknown_or_expired_ids)
{
	struct flood_opts o = { .cache_ttl_ms = 1000 };
	struct flood *f = flood_new(&o);
	struct flood_action a;
	uint8_t qid[FLOOD_QID_BYTES] = { 9 }, payload[3] = { 1, 2, 3 };
	struct flood_query q = { .ttl = 3, .kind = FLOOD_KEYWORDS, .len = 3, .data = payload };

	cr_assert_eq(flood_neighbor_add(f, 1, 0), 0);
	cr_assert_eq(flood_neighbor_add(f, 2, 0), 0);
	flood_on_hit(f, 2, qid, payload, sizeof(payload), 0);
	cr_assert_not(flood_next_action(f, &a));
	cr_assert_eq(flood_get_stats(f)->hits_unroutable, 1);

	memcpy(q.id, qid, sizeof(qid));
	flood_on_query(f, 1, &q, 100);
	while (flood_next_action(f, &a))
		;
	flood_on_hit(f, 2, qid, payload, sizeof(payload), 900); /* still known: goes back to 1 */
	cr_assert(flood_next_action(f, &a));
	cr_assert_eq(a.type, FLOOD_SEND_HIT);
	cr_assert_eq(a.nb, 1);
	cr_assert_eq(a.len, sizeof(payload));
	cr_assert_eq(memcmp(a.payload, payload, sizeof(payload)), 0);
	cr_assert_not(flood_next_action(f, &a));

	flood_on_hit(f, 2, qid, payload, sizeof(payload), 1100); /* expired */
	cr_assert_not(flood_next_action(f, &a));
	cr_assert_eq(flood_get_stats(f)->hits_unroutable, 2);
	cr_assert_eq(flood_cache_count(f), 0);

	/* Back-link gone: unroutable too. */
	q.id[0] = 10;
	flood_on_query(f, 1, &q, 2000);
	while (flood_next_action(f, &a))
		;
	flood_neighbor_remove(f, 1);
	flood_on_hit(f, 2, q.id, payload, sizeof(payload), 2001);
	cr_assert_not(flood_next_action(f, &a));
	cr_assert_eq(flood_get_stats(f)->hits_unroutable, 3);
	flood_free(f);
}

Test(flood, hits_per_query_capped)
{
	struct flood *f = flood_new(NULL);
	struct flood_action a;
	uint8_t data[2] = { 'a', 'b' }, payload[1] = { 0 };
	struct flood_query q = { .id = { 1 }, .ttl = 2, .kind = FLOOD_KEYWORDS, .len = 2, .data = data };
	uint32_t sent = 0;

	cr_assert_eq(flood_neighbor_add(f, 1, 0), 0);
	cr_assert_eq(flood_neighbor_add(f, 2, 0), 0);
	flood_on_query(f, 1, &q, 0);
	while (flood_next_action(f, &a))
		;
	for (uint32_t i = 0; i < 3 * FLOOD_MAX_HITS_PER_QUERY; i++) {
		flood_on_hit(f, 2, q.id, payload, sizeof(payload), 1);
		while (flood_next_action(f, &a))
			sent += a.type == FLOOD_SEND_HIT;
	}
	cr_assert_eq(sent, FLOOD_MAX_HITS_PER_QUERY);
	cr_assert_eq(flood_get_stats(f)->hits_dropped, 2 * FLOOD_MAX_HITS_PER_QUERY);
	flood_free(f);
}

/* ---- clamp ---- */

static void check_clamp(uint8_t hops, uint32_t reach)
{
	struct net *net = net_new(12, NULL);
	uint8_t data[4] = { 'd', 'a', 't', 'a' }, path[2] = { 0, 1 };
	struct flood_query q = { .id = { 0xcc, hops }, .ttl = 200, .hops = hops, .kind = FLOOD_KEYWORDS, .len = 4,
				 .data = data };

	make_line(net);
	flood_on_query(net->cores[1], 0, &q, net->now);
	drain(net, 1, path, 2);
	run_quiet(net);
	for (uint32_t x = 1; x < net->n; x++)
		cr_assert_eq(locals(net, x, q.id), x <= reach ? 1 : 0, "hops %u: node %u", hops, x);
	net_free(net);
}

Test(flood, ttl_clamped)
{
	check_clamp(0, FLOOD_MAX_TTL);
	check_clamp(3, FLOOD_MAX_TTL - 3);
	check_clamp(FLOOD_MAX_TTL, 0);
}

Test(flood, ttl_clamped_to_opts_max)
{
	struct flood_opts o = { .max_ttl = 3 };
	struct net *net = net_new(12, &o);

	make_line(net);
	start(net, 0, "x", FLOOD_MAX_TTL, false, 1); /* asks for 7, gets 3 */
	run_quiet(net);
	const uint8_t *qid = first_qid(net, 0);

	for (uint32_t x = 1; x < net->n; x++)
		cr_assert_eq(locals(net, x, qid), x <= 3 ? 1 : 0);
	net_free(net);
}

/* ---- rate limiting ---- */

Test(flood, rate_limit_then_drop)
{
	struct flood_opts o = { .rate_per_s = 20, .max_strikes = 50 };
	struct flood *f = flood_new(&o);
	struct flood_action a;
	uint8_t data[1] = { 'z' };
	uint32_t accepted = 0, drops = 0, drop_at = 0;

	cr_assert_eq(flood_neighbor_add(f, 1, 1000), 0);
	cr_assert_eq(flood_neighbor_add(f, 2, 1000), 0);
	for (uint32_t i = 0; i < 1000; i++) {
		struct flood_query q = { .ttl = 1, .kind = FLOOD_KEYWORDS, .len = 1, .data = data };

		memcpy(q.id, &i, sizeof(i));
		flood_on_query(f, 1, &q, 1000);
		while (flood_next_action(f, &a)) {
			accepted += a.type == FLOOD_LOCAL_QUERY;
			if (a.type == FLOOD_DROP_NEIGHBOR) {
				cr_assert_eq(a.nb, 1);
				drops++;
				drop_at = i;
			}
		}
	}
	cr_assert_geq(accepted, o.rate_per_s, "a burst up to the rate gets through");
	cr_assert_leq(accepted, 2 * o.rate_per_s, "at most the 2 s burst gets through");
	cr_assert_eq(flood_get_stats(f)->rate_limited, 1000 - accepted);
	cr_assert_eq(drops, 1);
	cr_assert_eq(drop_at, accepted + o.max_strikes - 1, "dropped at the max_strikes-th strike");

	/* The other neighbour, at half the rate for 10 s, is never limited. */
	for (uint32_t i = 0; i < 100; i++) {
		struct flood_query q = { .id = { 2 }, .ttl = 1, .kind = FLOOD_KEYWORDS, .len = 1, .data = data };

		memcpy(q.id + 4, &i, sizeof(i));
		flood_on_query(f, 2, &q, 1000 + i * 100);
		while (flood_next_action(f, &a))
			cr_assert_eq(a.type, FLOOD_LOCAL_QUERY);
	}
	cr_assert_eq(flood_get_stats(f)->rate_limited, 1000 - accepted);
	flood_free(f);
}

Test(flood, strikes_forgiven_after_quiet)
{
	struct flood_opts o = { .rate_per_s = 10, .max_strikes = 5 };
	struct flood *f = flood_new(&o);
	struct flood_action a;
	uint8_t data[1] = { 'z' };
	uint32_t n = 0, drops = 0;

	cr_assert_eq(flood_neighbor_add(f, 1, 0), 0);
	/* Three bursts of 24 (4 over the limit each), 10 s apart: 12 strikes in
	 * all, but never 5 without a quiet spell between. */
	for (uint32_t burst = 0; burst < 3; burst++)
		for (uint32_t i = 0; i < 2 * o.rate_per_s + 4; i++, n++) {
			struct flood_query q = { .ttl = 1, .kind = FLOOD_KEYWORDS, .len = 1, .data = data };

			memcpy(q.id, &n, sizeof(n));
			flood_on_query(f, 1, &q, 10000 * (uint64_t)burst);
			while (flood_next_action(f, &a))
				drops += a.type == FLOOD_DROP_NEIGHBOR;
		}
	cr_assert_eq(flood_get_stats(f)->rate_limited, 12);
	cr_assert_eq(drops, 0);
	flood_free(f);
}

/* ---- cache bounds ---- */

Test(flood, cache_eviction_and_expiry)
{
	struct flood_opts o = { .cache_max = 100, .cache_ttl_ms = 5000, .rate_per_s = 1000000 };
	struct flood *f = flood_new(&o);
	struct flood_action a;
	uint8_t data[1] = { 'c' };
	struct flood_query q = { .ttl = 1, .kind = FLOOD_KEYWORDS, .len = 1, .data = data };
	uint32_t local = 0;

	cr_assert_eq(flood_neighbor_add(f, 1, 0), 0);
	for (uint32_t i = 0; i < 1000; i++) {
		memcpy(q.id, &i, sizeof(i));
		flood_on_query(f, 1, &q, i);
		while (flood_next_action(f, &a))
			local += a.type == FLOOD_LOCAL_QUERY;
		cr_assert_leq(flood_cache_count(f), o.cache_max);
	}
	cr_assert_eq(local, 1000);
	cr_assert_eq(flood_cache_count(f), o.cache_max);
	/* The newest is remembered; the oldest was evicted and counts as new. */
	uint32_t newest = 999, oldest = 0;

	memcpy(q.id, &newest, sizeof(newest));
	flood_on_query(f, 1, &q, 1000);
	cr_assert_not(flood_next_action(f, &a));
	cr_assert_eq(flood_get_stats(f)->duplicates_dropped, 1);
	memcpy(q.id, &oldest, sizeof(oldest));
	flood_on_query(f, 1, &q, 1000);
	cr_assert(flood_next_action(f, &a));
	cr_assert_eq(a.type, FLOOD_LOCAL_QUERY);
	/* Everything expires; the wakeup asks for the sweep. */
	uint64_t wake = flood_next_wakeup(f);

	cr_assert_geq(wake, 999 + o.cache_ttl_ms);
	cr_assert_lt(wake, UINT64_MAX);
	flood_tick(f, 1000 + o.cache_ttl_ms);
	cr_assert_eq(flood_cache_count(f), 0);
	cr_assert_eq(flood_next_wakeup(f), UINT64_MAX);
	flood_free(f);
}

/* ---- expanding ring ---- */

Test(flood, ring_near_item_is_cheap)
{
	struct net *ringnet = net_new(100, NULL), *floodnet = net_new(100, NULL);

	make_random(ringnet, 7, 4);
	make_random(floodnet, 7, 4);
	uint32_t near = node_at(ringnet, 0, 1);

	ringnet->holds[near] = floodnet->holds[near] = ITEM_NEAR;
	int hr = start(ringnet, 0, ITEM_NEAR, 5, true, 1);
	int hf = start(floodnet, 0, ITEM_NEAR, 5, false, 1);

	run_quiet(ringnet);
	run_quiet(floodnet);
	uint32_t hits_ring = 0, hits_flood = 0;

	cr_assert_eq(done_count(ringnet, 0, (uint32_t)hr, &hits_ring), 1);
	cr_assert_eq(done_count(floodnet, 0, (uint32_t)hf, &hits_flood), 1);
	cr_assert_eq(hits_ring, 1);
	cr_assert_eq(hits_flood, 1);
	cr_assert_eq(flood_get_stats(ringnet->cores[0])->queries_started, 1, "the ring stopped at ttl 1");
	cr_assert_eq(ringnet->nsent, 1);
	cr_assert_eq(ringnet->sent[0].ttl, 1);
	cr_assert_eq(total_sent(ringnet), degree(ringnet, 0));
	cr_log_info("messages: ring %lu, flood ttl 5 %lu", (unsigned long)total_sent(ringnet),
		    (unsigned long)total_sent(floodnet));
	cr_assert_lt(total_sent(ringnet) * 3, total_sent(floodnet), "ring %lu vs flood %lu",
		     (unsigned long)total_sent(ringnet), (unsigned long)total_sent(floodnet));
	check_hit_paths(ringnet);
	check_hit_paths(floodnet);
	net_free(ringnet);
	net_free(floodnet);
}

Test(flood, ring_widens_to_far_item)
{
	struct net *net = net_new(100, NULL);

	make_random(net, 11, 4);
	uint32_t far = node_at(net, 0, 4);
	static const uint8_t steps[] = { 1, 2, 3, 5 };

	net->holds[far] = ITEM_FAR;
	int h = start(net, 0, ITEM_FAR, FLOOD_MAX_TTL, true, 1);

	run_quiet(net);
	uint32_t hits = 0;

	cr_assert_eq(done_count(net, 0, (uint32_t)h, &hits), 1);
	cr_assert_eq(hits, 1);
	cr_assert_eq(delivered(net, 0, (uint32_t)h), 1);
	cr_assert_eq(net->hits[0].answerer, far);
	/* 1, 2, 3, then 5 reaches distance 4; no step 7 after the hit. */
	cr_assert_eq(net->nsent, sizeof(steps));
	cr_assert_eq(flood_get_stats(net->cores[0])->queries_started, sizeof(steps));
	for (uint32_t i = 0; i < net->nsent; i++) {
		cr_assert_eq(net->sent[i].ttl, steps[i]);
		for (uint32_t k = 0; k < i; k++)
			cr_assert_neq(memcmp(net->sent[i].qid, net->sent[k].qid, FLOOD_QID_BYTES), 0,
				      "fresh query ID per step");
	}
	/* Nodes near the querier were asked once per step, each time as a new query. */
	uint32_t n1 = node_at(net, 0, 1);

	for (uint32_t i = 0; i < net->nsent; i++)
		cr_assert_eq(locals(net, n1, net->sent[i].qid), 1);
	check_hit_paths(net);
	net_free(net);
}

Test(flood, ring_gives_up_at_max_ttl)
{
	struct net *net = net_new(30, NULL);

	make_line(net);
	int h = start(net, 0, "nowhere", 5, true, 1);
	uint64_t t0 = net->now;

	run_quiet(net);
	uint32_t hits = 1;

	cr_assert_eq(done_count(net, 0, (uint32_t)h, &hits), 1);
	cr_assert_eq(hits, 0);
	cr_assert_eq(net->nsent, 4); /* 1, 2, 3, 5 */
	cr_assert_eq(net->sent[3].ttl, 5);
	/* 250 ms per hop of each step's ttl: 1 + 2 + 3 + 5. */
	cr_assert_eq(net->dones[0].node, 0);
	cr_assert_geq(net->now - t0, 11 * 250);
	net_free(net);
}

Test(flood, ring_wants_more_hits)
{
	struct net *net = net_new(100, NULL);

	make_random(net, 3, 4);
	uint32_t dist[NET_MAX], within2 = 0;

	bfs(net, 0, dist);
	for (uint32_t x = 1; x < net->n; x++)
		if (dist[x] <= 2) {
			net->holds[x] = ITEM_NEAR;
			within2++;
		}
	cr_assert_gt(within2, 3);
	/* want = within2: the step at ttl 1 finds too few, ttl 2 finds them all. */
	int h = start(net, 0, ITEM_NEAR, 5, true, within2);

	run_quiet(net);
	uint32_t hits = 0;

	cr_assert_eq(done_count(net, 0, (uint32_t)h, &hits), 1);
	cr_assert_eq(net->nsent, 2);
	cr_assert_eq(hits, degree(net, 0) + within2, "step 1 hits plus step 2 hits");
	cr_assert_eq(delivered(net, 0, (uint32_t)h), hits);
	net_free(net);
}

Test(flood, plain_flood_done_once)
{
	struct net *net = net_new(50, NULL);

	make_random(net, 5, 4);
	int h1 = start(net, 0, "a", 3, false, 1);
	int h2 = start(net, 0, "b", 5, false, 1);

	cr_assert_neq(h1, h2);
	run_quiet(net);
	cr_assert_eq(done_count(net, 0, (uint32_t)h1, NULL), 1);
	cr_assert_eq(done_count(net, 0, (uint32_t)h2, NULL), 1);
	cr_assert_eq(net->ndones, 2);
	net_free(net);
}

Test(flood, cancel_means_no_done)
{
	struct net *net = net_new(20, NULL);
	uint32_t dist[NET_MAX], holders = 0;

	make_random(net, 9, 3);
	bfs(net, 0, dist);
	for (uint32_t x = 1; x < net->n; x++)
		if (dist[x] <= 3 && x % 2) {
			net->holds[x] = ITEM_NEAR;
			holders++;
		}
	cr_assert_gt(holders, 0);
	int h = start(net, 0, ITEM_NEAR, 3, false, 1);

	flood_cancel(net->cores[0], (uint32_t)h);
	run_quiet(net);
	cr_assert_eq(done_count(net, 0, (uint32_t)h, NULL), 0);
	cr_assert_eq(delivered(net, 0, (uint32_t)h), 0);
	cr_assert_eq(flood_get_stats(net->cores[0])->hits_unroutable, holders, "late hits dropped and counted");
	/* A ring cancelled between steps sends no more steps. */
	int r = start(net, 0, "nowhere", 5, true, 1);

	run_until(net, net->now + 300);
	flood_cancel(net->cores[0], (uint32_t)r);
	uint64_t started = flood_get_stats(net->cores[0])->queries_started;

	run_quiet(net);
	cr_assert_eq(flood_get_stats(net->cores[0])->queries_started, started);
	cr_assert_eq(done_count(net, 0, (uint32_t)r, NULL), 0);
	net_free(net);
}

/* ---- API edges ---- */

Test(flood, start_limits_and_arguments)
{
	struct flood *f = flood_new(NULL);
	struct flood_action a;
	uint8_t data[FLOOD_MAX_QUERY_DATA + 1] = { 0 };

	cr_assert_eq(flood_start(f, 3, data, 1, 5, false, 1, 0), PN_EINVAL);
	cr_assert_eq(flood_start(f, FLOOD_KEYWORDS, data, 0, 5, false, 1, 0), PN_EINVAL);
	cr_assert_eq(flood_start(f, FLOOD_KEYWORDS, data, FLOOD_MAX_QUERY_DATA + 1, 5, false, 1, 0), PN_EINVAL);
	for (uint32_t i = 0; i < FLOOD_MAX_ACTIVE_QUERIES; i++)
		cr_assert_gt(flood_start(f, FLOOD_CID, data, 40, 5, false, 1, 0), 0);
	cr_assert_eq(flood_start(f, FLOOD_CID, data, 40, 5, false, 1, 0), PN_ELIMIT);
	flood_tick(f, 1000000);
	uint32_t done = 0;

	while (flood_next_action(f, &a))
		done += a.type == FLOOD_QUERY_DONE;
	cr_assert_eq(done, FLOOD_MAX_ACTIVE_QUERIES);
	cr_assert_gt(flood_start(f, FLOOD_CID, data, 40, 5, false, 1, 0), 0, "slots free again");
	flood_free(f);
}

Test(flood, neighbor_limits)
{
	struct flood *f = flood_new(NULL);

	for (uint32_t i = 0; i < FLOOD_MAX_NEIGHBORS; i++)
		cr_assert_eq(flood_neighbor_add(f, 100 + i, 0), 0);
	cr_assert_eq(flood_neighbor_add(f, 5, 0), PN_ELIMIT);
	cr_assert_eq(flood_neighbor_add(f, 100, 0), PN_EEXIST);
	flood_neighbor_remove(f, 100);
	cr_assert_eq(flood_neighbor_count(f), FLOOD_MAX_NEIGHBORS - 1);
	cr_assert_eq(flood_neighbor_add(f, 5, 0), 0);
	flood_free(f);
}

Test(flood, bad_queries_dropped)
{
	struct flood *f = flood_new(NULL);
	struct flood_action a;
	uint8_t data[2] = { 'o', 'k' };
	struct flood_query q = { .id = { 1 }, .ttl = 3, .kind = 9, .len = 2, .data = data };

	cr_assert_eq(flood_neighbor_add(f, 1, 0), 0);
	flood_on_query(f, 1, &q, 0);           /* bad kind */
	q.kind = FLOOD_KEYWORDS;
	q.ttl = 0;
	flood_on_query(f, 1, &q, 0);           /* no ttl */
	q.ttl = 3;
	flood_on_query(f, 7, &q, 0);           /* not a neighbour */
	q.len = 0;
	flood_on_query(f, 1, &q, 0);           /* empty */
	cr_assert_not(flood_next_action(f, &a));
	cr_assert_eq(flood_get_stats(f)->queries_invalid, 4);
	cr_assert_eq(flood_get_stats(f)->queries_received, 4);
	flood_free(f);
}

/* The node answers while it drains (inside the LOCAL_QUERY case): the rest of
 * the queue must come out intact, with the hit after it. */
Test(flood, answer_while_draining)
{
	struct flood *f = flood_new(NULL);
	struct flood_action a;
	uint8_t data[3] = { 'a', 'b', 'c' }, payload[2] = { 4, 2 };
	struct flood_query q = { .id = { 5 }, .ttl = 3, .kind = FLOOD_KEYWORDS, .len = 3, .data = data };
	uint32_t sends = 0, hits = 0;

	for (uint32_t nb = 1; nb <= 3; nb++)
		cr_assert_eq(flood_neighbor_add(f, nb, 0), 0);
	flood_on_query(f, 1, &q, 0);
	while (flood_next_action(f, &a)) {
		if (a.type == FLOOD_LOCAL_QUERY) {
			flood_answer(f, a.q.id, payload, sizeof(payload), 0);
		} else if (a.type == FLOOD_SEND_QUERY) {
			cr_assert_neq(a.nb, 1);
			cr_assert_eq(a.q.ttl, 2);
			cr_assert_eq(a.q.hops, 1);
			cr_assert_eq(memcmp(a.q.data, data, sizeof(data)), 0);
			sends++;
		} else {
			cr_assert_eq(a.type, FLOOD_SEND_HIT);
			cr_assert_eq(a.nb, 1);
			cr_assert_eq(memcmp(a.payload, payload, sizeof(payload)), 0);
			hits++;
		}
	}
	cr_assert_eq(sends, 2);
	cr_assert_eq(hits, 1);
	flood_free(f);
}
