/* DHT core: an in-memory network of cores with a virtual clock. SEND actions
 * go straight to the destination core's dht_on_message (no encoding), after
 * a fixed latency, optionally lost. Addresses are 10.x.y.z:7000 with x.y.z
 * the node's index, so an address names its node. Single cores are also
 * driven by hand, message by message. Every seed is fixed. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include "peernet.h"
#include "proto/dht.h"
#include "proto/prng.h"

#define LATENCY_MS 10
#define PORT 7000
#define JUNK_NONE 0
#define JUNK_SELF 1     /* answers every look-up with itself */
#define JUNK_RANDOM 2   /* with random far, fake near and invalid contacts */
#define JUNK_TXID 3     /* with the wrong txid */
#define LOOP_GUARD 1000000

struct nmsg {
	struct nmsg *next;
	uint64_t at;
	uint32_t from, to;
	struct pn_dht_msg m;
	char names[];
};

struct done_log {
	uint32_t node, handle;
	int err;
	struct dht_lookup_stats st;
	struct pn_dht_contact c[DHT_K];
	size_t nc;
};

struct rec_log {
	uint32_t node, handle;
	struct pn_dht_record r;
	char name[PN_DHT_NAME_MAX + 1];
};

struct net {
	uint32_t n;        /* cores 0..n-1; the junk node, if any, is index n */
	struct dht **cores;
	uint8_t (*ids)[PN_DHT_KEY_BYTES];
	uint64_t *wake;
	bool *down;
	uint64_t now;
	struct nmsg *head, *tail;
	uint32_t loss_pct;
	struct pn_prng rng;
	int junk_mode;
	uint8_t junk_id[PN_DHT_KEY_BYTES];
	struct done_log *dones;
	size_t ndones, capdones;
	struct rec_log *recs;
	size_t nrecs, caprecs;
	uint64_t msgs;
	uint32_t stored_status[8];
};

static struct pn_dht_addr addr_of(uint32_t i)
{
	struct pn_dht_addr a = { .family = 4, .port = PORT };

	a.ip[0] = 10;
	a.ip[1] = (uint8_t)(i >> 16);
	a.ip[2] = (uint8_t)(i >> 8);
	a.ip[3] = (uint8_t)i;
	return a;
}

/* The node an address names, or UINT32_MAX. */
static uint32_t index_of(const struct net *net, const struct pn_dht_addr *a)
{
	if (a->family != 4 || a->port != PORT || a->ip[0] != 10)
		return UINT32_MAX;
	uint32_t i = (uint32_t)a->ip[1] << 16 | (uint32_t)a->ip[2] << 8 | a->ip[3];

	return i <= net->n ? i : UINT32_MAX;
}

static void rand_bytes(struct pn_prng *p, uint8_t *out, size_t n)
{
	for (size_t i = 0; i < n; i++)
		out[i] = (uint8_t)pn_prng_next(p);
}

static struct dht_opts default_opts(void)
{
	return (struct dht_opts){ .rpc_timeout_ms = 500 };
}

static struct net *net_new(uint32_t n, const struct dht_opts *opts, uint64_t seed)
{
	struct net *net = calloc(1, sizeof(*net));

	cr_assert(net);
	net->n = n;
	net->cores = calloc(n + 1, sizeof(*net->cores));
	net->ids = calloc(n + 1, sizeof(*net->ids));
	net->wake = calloc(n + 1, sizeof(*net->wake));
	net->down = calloc(n + 1, sizeof(*net->down));
	cr_assert(net->cores && net->ids && net->wake && net->down);
	pn_prng_seed(&net->rng, seed);
	net->now = 1000;
	for (uint32_t i = 0; i < n; i++) {
		struct dht_opts o = *opts;

		rand_bytes(&net->rng, net->ids[i], PN_DHT_KEY_BYTES);
		memcpy(o.id, net->ids[i], PN_DHT_KEY_BYTES);
		o.seed = seed * 100003 + i;
		net->cores[i] = dht_new(&o);
		cr_assert(net->cores[i]);
		net->wake[i] = UINT64_MAX;
	}
	net->wake[n] = UINT64_MAX;
	return net;
}

static void net_free(struct net *net)
{
	for (uint32_t i = 0; i < net->n; i++)
		dht_free(net->cores[i]);
	while (net->head) {
		struct nmsg *m = net->head;

		net->head = m->next;
		free(m);
	}
	free(net->cores);
	free(net->ids);
	free(net->wake);
	free(net->down);
	free(net->dones);
	free(net->recs);
	free(net);
}

/* Queues a copy of m (names included) from `from` to `to`. */
static void net_send(struct net *net, uint32_t from, const struct pn_dht_addr *to, const struct pn_dht_msg *m)
{
	size_t names = 0;

	if (m->type == PN_DHT_VALUES)
		for (uint32_t i = 0; i < m->u.nodes.n_records; i++)
			names += m->u.nodes.records[i].name_len;
	if (m->type == PN_DHT_STORE)
		names += m->u.store.record.name_len;
	net->msgs++;
	uint32_t dst = index_of(net, to);

	if (dst == UINT32_MAX || (net->loss_pct && pn_prng_below(&net->rng, 100) < net->loss_pct))
		return;
	struct nmsg *q = calloc(1, sizeof(*q) + names);

	cr_assert(q);
	q->at = net->now + LATENCY_MS;
	q->from = from;
	q->to = dst;
	q->m = *m;
	size_t off = 0;

	if (m->type == PN_DHT_VALUES)
		for (uint32_t i = 0; i < m->u.nodes.n_records; i++) {
			struct pn_dht_record *r = &q->m.u.nodes.records[i];

			if (r->name_len)
				memcpy(q->names + off, r->name, r->name_len);
			r->name = r->name_len ? q->names + off : NULL;
			off += r->name_len;
		}
	if (m->type == PN_DHT_STORE && m->u.store.record.name_len) {
		memcpy(q->names, m->u.store.record.name, m->u.store.record.name_len);
		q->m.u.store.record.name = q->names;
	}
	if (net->tail)
		net->tail->next = q;
	else
		net->head = q;
	net->tail = q;
}

static void drain(struct net *net, uint32_t x)
{
	struct dht_action a;

	while (dht_next_action(net->cores[x], &a)) {
		switch (a.type) {
		case DHT_ACT_SEND:
			cr_assert(a.msg.type >= PN_DHT_PING && a.msg.type <= PN_DHT_STORED);
			if (a.msg.type == PN_DHT_NODES || a.msg.type == PN_DHT_VALUES) {
				cr_assert_leq(a.msg.u.nodes.n_nodes, PN_DHT_NODES_MAX);
				cr_assert_leq(a.msg.u.nodes.n_records, PN_DHT_RECORDS_MAX);
			}
			if (a.msg.type == PN_DHT_STORED && a.msg.u.stored < 8)
				net->stored_status[a.msg.u.stored]++;
			net_send(net, x, &a.to, &a.msg);
			break;
		case DHT_ACT_RECORD: {
			if (net->nrecs == net->caprecs) {
				net->caprecs = net->caprecs ? net->caprecs * 2 : 64;
				net->recs = realloc(net->recs, net->caprecs * sizeof(*net->recs));
				cr_assert(net->recs);
			}
			struct rec_log *l = &net->recs[net->nrecs++];

			memset(l, 0, sizeof(*l));
			l->node = x;
			l->handle = a.handle;
			l->r = a.rec;
			if (a.rec.name_len)
				memcpy(l->name, a.rec.name, a.rec.name_len);
			l->r.name = NULL;
			break;
		}
		case DHT_ACT_LOOKUP_DONE: {
			if (net->ndones == net->capdones) {
				net->capdones = net->capdones ? net->capdones * 2 : 64;
				net->dones = realloc(net->dones, net->capdones * sizeof(*net->dones));
				cr_assert(net->dones);
			}
			struct done_log *l = &net->dones[net->ndones++];

			cr_assert_leq(a.n_contacts, DHT_K);
			l->node = x;
			l->handle = a.handle;
			l->err = a.err;
			l->st = a.stats;
			l->nc = a.n_contacts;
			memcpy(l->c, a.contacts, a.n_contacts * sizeof(*l->c));
			break;
		}
		case DHT_ACT_CONTACT:
			cr_assert_eq(a.n_contacts, 1);
			break;
		default:
			cr_assert_fail("unknown action %d", a.type);
		}
	}
	net->wake[x] = dht_next_wakeup(net->cores[x]);
}

/* The junk node's answers. */
static void junk_answer(struct net *net, const struct nmsg *q)
{
	struct pn_dht_msg r;
	uint32_t j = net->n;

	memset(&r, 0, sizeof(r));
	r.txid = q->m.txid;
	if (q->m.type == PN_DHT_PING) {
		r.type = PN_DHT_PONG;
		r.u.pong = addr_of(q->from);
	} else if (q->m.type == PN_DHT_FIND_NODE || q->m.type == PN_DHT_FIND_VALUE) {
		r.type = q->m.type == PN_DHT_FIND_NODE ? PN_DHT_NODES : PN_DHT_VALUES;
		if (net->junk_mode == JUNK_TXID)
			r.txid ^= 0x5a5a5a5a;
		if (net->junk_mode == JUNK_SELF) {
			r.u.nodes.n_nodes = 1;
			memcpy(r.u.nodes.nodes[0].id, net->junk_id, PN_DHT_KEY_BYTES);
			r.u.nodes.nodes[0].addr = addr_of(j);
		} else {
			const uint8_t *target = q->m.type == PN_DHT_FIND_NODE ? q->m.u.target : q->m.u.find_value.key;

			r.u.nodes.n_nodes = PN_DHT_NODES_MAX;
			for (uint32_t i = 0; i < PN_DHT_NODES_MAX; i++) {
				struct pn_dht_contact *c = &r.u.nodes.nodes[i];

				rand_bytes(&net->rng, c->id, PN_DHT_KEY_BYTES);
				c->addr = addr_of(net->n + 1 + i); /* nobody */
				if (i % 4 == 1)
					c->addr.port = 0;  /* invalid */
				if (i % 4 == 2)
					c->addr.family = 9; /* invalid */
				if (i % 4 == 3) {     /* fake, nearer than anyone */
					memcpy(c->id, target, PN_DHT_KEY_BYTES);
					c->id[PN_DHT_KEY_BYTES - 1] ^= (uint8_t)(1 + i);
				}
			}
		}
	} else {
		return;
	}
	uint32_t save = q->from;
	struct pn_dht_addr to = addr_of(save);

	net_send(net, j, &to, &r);
}

static void deliver(struct net *net, struct nmsg *q)
{
	if (q->to == net->n && net->junk_mode) {
		junk_answer(net, q);
		return;
	}
	if (q->to >= net->n || net->down[q->to])
		return;
	struct pn_dht_addr from = addr_of(q->from);
	const uint8_t *from_id = q->from == net->n ? net->junk_id : net->ids[q->from];

	dht_on_message(net->cores[q->to], &from, from_id, &q->m, net->now);
	drain(net, q->to);
}

/* Runs the network until virtual time `until`. */
static void run_until(struct net *net, uint64_t until)
{
	uint32_t guard = 0;

	for (;;) {
		uint64_t t = net->head ? net->head->at : UINT64_MAX;

		for (uint32_t i = 0; i < net->n; i++)
			if (!net->down[i] && net->wake[i] < t)
				t = net->wake[i];
		if (t > until)
			break;
		if (t < net->now)
			t = net->now;
		guard = t == net->now ? guard + 1 : 0;
		cr_assert_lt(guard, LOOP_GUARD, "the network spins at t=%llu", (unsigned long long)t);
		net->now = t;
		while (net->head && net->head->at <= net->now) {
			struct nmsg *q = net->head;

			net->head = q->next;
			if (!net->head)
				net->tail = NULL;
			deliver(net, q);
			free(q);
		}
		for (uint32_t i = 0; i < net->n; i++)
			if (!net->down[i] && net->wake[i] <= net->now) {
				dht_tick(net->cores[i], net->now);
				drain(net, i);
			}
	}
	net->now = until;
}

static void run_for(struct net *net, uint64_t ms)
{
	run_until(net, net->now + ms);
}

/* Every node joins through a random earlier one, one after the other. */
static void net_join_all(struct net *net)
{
	for (uint32_t i = 1; i < net->n; i++) {
		struct pn_dht_addr a = addr_of(pn_prng_below(&net->rng, i));

		dht_bootstrap(net->cores[i], &a, net->now);
		drain(net, i);
		run_for(net, 200);
	}
	run_for(net, 5000);
}

/* The junk node says hello to everyone, so that it enters their tables. */
static void junk_join(struct net *net, int mode)
{
	net->junk_mode = mode;
	for (uint32_t i = 0; i < net->n; i++) {
		struct pn_dht_msg m = { .type = PN_DHT_PING, .txid = 77 };
		struct pn_dht_addr to = addr_of(i);

		net_send(net, net->n, &to, &m);
	}
	run_for(net, 1000);
}

static const struct done_log *done_of(const struct net *net, uint32_t node, int handle)
{
	for (size_t i = 0; i < net->ndones; i++)
		if (net->dones[i].node == node && net->dones[i].handle == (uint32_t)handle)
			return &net->dones[i];
	return NULL;
}

/* The true k closest core IDs to key (brute force), without `self`. */
static size_t true_closest(const struct net *net, const uint8_t *key, uint32_t self, uint32_t *out, size_t k)
{
	size_t n = 0;

	for (uint32_t i = 0; i < net->n; i++) {
		if (i == self || net->down[i])
			continue;
		size_t pos = n < k ? n : k;

		if (pos == k && dht_cmp_distance(key, net->ids[i], net->ids[out[k - 1]]) >= 0)
			continue;
		if (pos == k)
			pos--;
		while (pos > 0 && dht_cmp_distance(key, net->ids[i], net->ids[out[pos - 1]]) < 0) {
			out[pos] = out[pos - 1];
			pos--;
		}
		out[pos] = i;
		if (n < k)
			n++;
	}
	return n;
}

static bool result_has(const struct done_log *d, const uint8_t *id)
{
	for (size_t i = 0; i < d->nc; i++)
		if (!memcmp(d->c[i].id, id, PN_DHT_KEY_BYTES))
			return true;
	return false;
}

static int lookup(struct net *net, uint32_t node, enum dht_lookup_kind kind, const uint8_t *key, uint32_t want)
{
	int h = dht_lookup(net->cores[node], kind, key, want, net->now);

	cr_assert_gt(h, 0);
	drain(net, node);
	return h;
}

/* ---- a single core driven by hand ---- */

struct lone {
	struct dht *d;
	struct dht_action acts[256];
	char names[256][PN_DHT_NAME_MAX];
	size_t n;
};

static void lone_drain(struct lone *l)
{
	l->n = 0;
	while (l->n < 256 && dht_next_action(l->d, &l->acts[l->n]))
		l->n++;
}

static void lone_feed(struct lone *l, uint32_t from, const uint8_t *from_id, const struct pn_dht_msg *m, uint64_t now)
{
	struct pn_dht_addr a = addr_of(from);

	dht_on_message(l->d, &a, from_id, m, now);
	lone_drain(l);
}

static const struct dht_action *lone_find(const struct lone *l, uint8_t msg_type)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->acts[i].type == DHT_ACT_SEND && l->acts[i].msg.type == msg_type)
			return &l->acts[i];
	return NULL;
}

static struct lone *lone_new(const uint8_t *id, struct dht_opts o)
{
	struct lone *l = calloc(1, sizeof(*l));

	cr_assert(l);
	memcpy(o.id, id, PN_DHT_KEY_BYTES);
	o.seed = 42;
	l->d = dht_new(&o);
	cr_assert(l->d);
	return l;
}

static void lone_free(struct lone *l)
{
	dht_free(l->d);
	free(l);
}

/* An ID equal to base but for bit `bit` flipped and the last byte set to tail. */
static void id_near(const uint8_t *base, unsigned bit, uint8_t tail, uint8_t *out)
{
	memcpy(out, base, PN_DHT_KEY_BYTES);
	out[bit / 8] ^= (uint8_t)(0x80 >> (bit % 8));
	if (bit / 8 != PN_DHT_KEY_BYTES - 1)
		out[PN_DHT_KEY_BYTES - 1] = tail;
}

/* ---- tests ---- */

Test(dht, distance_compare)
{
	uint8_t key[32] = { 0 }, a[32] = { 0 }, b[32] = { 0 };

	a[31] = 1;
	b[0] = 0x80;
	cr_assert_lt(dht_cmp_distance(key, a, b), 0);
	cr_assert_gt(dht_cmp_distance(key, b, a), 0);
	cr_assert_eq(dht_cmp_distance(key, a, a), 0);
	key[0] = 0x80; /* now b is at distance 0 */
	cr_assert_gt(dht_cmp_distance(key, a, b), 0);
}

Test(dht, bootstrap_join_fills_tables)
{
	struct dht_opts o = default_opts();
	struct net *net = net_new(60, &o, 1);

	net_join_all(net);
	for (uint32_t i = 0; i < net->n; i++) {
		cr_assert_geq(dht_table_size(net->cores[i]), DHT_K, "node %u knows %zu", i,
			      dht_table_size(net->cores[i]));
		cr_assert_lt(dht_memory(net->cores[i]), 64 * 1024);
		struct pn_dht_contact c[200];
		size_t n = dht_contacts(net->cores[i], c, 200);

		cr_assert_eq(n, dht_table_size(net->cores[i]));
		for (size_t k = 0; k < n; k++)
			cr_assert_neq(memcmp(c[k].id, net->ids[i], 32), 0, "a node is not in its own table");
	}
	net_free(net);
}

Test(dht, node_lookup_finds_true_closest_200)
{
	struct dht_opts o = default_opts();
	struct net *net = net_new(200, &o, 2);

	net_join_all(net);
	for (int t = 0; t < 20; t++) {
		uint8_t key[32];
		uint32_t from = pn_prng_below(&net->rng, net->n), truth[DHT_K];

		rand_bytes(&net->rng, key, 32);
		int h = lookup(net, from, DHT_LOOKUP_NODES, key, 0);

		run_for(net, 5000);
		const struct done_log *d = done_of(net, from, h);

		cr_assert(d, "look-up %d ended", t);
		cr_assert_eq(d->err, 0);
		cr_assert_eq(true_closest(net, key, from, truth, DHT_K), DHT_K);
		cr_assert_eq(d->nc, DHT_K);
		for (size_t k = 0; k < DHT_K; k++)
			cr_assert_eq(memcmp(d->c[k].id, net->ids[truth[k]], 32), 0, "look-up %d: %zu-th closest", t, k);
		cr_assert_geq(d->st.rounds, 1);
		cr_assert_leq(d->st.rounds, 8);
		cr_assert_geq(d->st.requests, d->st.replies);
	}
	net_free(net);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

Test(dht, rounds_median_at_1000, .timeout = 300)
{
	struct dht_opts o = default_opts();
	struct net *net = net_new(1000, &o, 3);
	uint32_t rounds[40];

	net_join_all(net);
	for (int t = 0; t < 40; t++) {
		uint8_t key[32];
		uint32_t from = pn_prng_below(&net->rng, net->n), truth[DHT_K];

		rand_bytes(&net->rng, key, 32);
		int h = lookup(net, from, DHT_LOOKUP_NODES, key, 0);

		run_for(net, 5000);
		const struct done_log *d = done_of(net, from, h);

		cr_assert(d);
		rounds[t] = d->st.rounds;
		true_closest(net, key, from, truth, DHT_K);
		cr_assert(result_has(d, net->ids[truth[0]]), "look-up %d found the closest node", t);
		cr_assert_leq(d->st.requests, 100);
	}
	qsort(rounds, 40, sizeof(rounds[0]), cmp_u32);
	size_t mem = 0, mem_max = 0, table = 0;

	for (uint32_t i = 0; i < net->n; i++) {
		size_t m = dht_memory(net->cores[i]);

		mem += m;
		mem_max = m > mem_max ? m : mem_max;
		table += dht_table_size(net->cores[i]);
	}
	cr_log_info("1000 nodes: rounds median %u max %u; table %zu contacts, memory %zu bytes a node (max %zu)",
		    rounds[20], rounds[39], table / net->n, mem / net->n, mem_max);
	cr_assert_leq(rounds[20], 4, "median rounds %u", rounds[20]);
	cr_assert_lt(mem_max, 64 * 1024);
	net_free(net);
}

static struct pn_dht_record make_record(struct net *net, uint8_t kind, const uint8_t *publisher, const char *name)
{
	struct pn_dht_record r = { .kind = kind };

	rand_bytes(&net->rng, r.cid, PN_CID_BYTES);
	memcpy(r.publisher, publisher, PN_DHT_PUB_BYTES);
	rand_bytes(&net->rng, r.sig, PN_DHT_SIG_BYTES);
	if (name) {
		r.name = name;
		r.name_len = (uint8_t)strlen(name);
	}
	return r;
}

static size_t stored_total(const struct net *net)
{
	size_t n = 0;

	for (uint32_t i = 0; i < net->n; i++)
		n += dht_records_stored(net->cores[i]);
	return n;
}

static size_t records_for(const struct net *net, uint32_t node, int handle, const uint8_t *cid)
{
	size_t n = 0;

	for (size_t i = 0; i < net->nrecs; i++)
		if (net->recs[i].node == node && net->recs[i].handle == (uint32_t)handle &&
		    (!cid || !memcmp(net->recs[i].r.cid, cid, PN_CID_BYTES)))
			n++;
	return n;
}

Test(dht, provider_announce_then_lookup)
{
	struct dht_opts o = default_opts();
	struct net *net = net_new(100, &o, 4);
	uint8_t key[32];

	net_join_all(net);
	rand_bytes(&net->rng, key, 32);
	struct pn_dht_record rec = make_record(net, PN_DHT_REC_PROVIDER, net->ids[7], NULL);

	cr_assert_eq(dht_announce(net->cores[7], key, &rec, net->now), 0);
	drain(net, 7);
	run_for(net, 5000);
	cr_assert_geq(stored_total(net), DHT_K / 2, "stored on %zu nodes", stored_total(net));
	cr_assert_leq(stored_total(net), DHT_K);

	int h = lookup(net, 55, DHT_LOOKUP_PROVIDERS, key, 1);

	run_for(net, 5000);
	const struct done_log *d = done_of(net, 55, h);

	cr_assert(d);
	cr_assert_eq(d->err, 0);
	cr_assert_eq(d->st.records, 1);
	cr_assert_geq(d->st.rounds_to_first, 1);
	cr_assert_eq(records_for(net, 55, h, rec.cid), 1);
	for (size_t i = 0; i < net->nrecs; i++)
		if (net->recs[i].handle == (uint32_t)h && net->recs[i].node == 55) {
			struct pn_dht_addr a = addr_of(7);

			cr_assert_eq(memcmp(net->recs[i].r.publisher, net->ids[7], 32), 0);
			cr_assert_eq(net->recs[i].r.addr.port, a.port);
			cr_assert_eq(memcmp(net->recs[i].r.addr.ip, a.ip, 4), 0, "the address the STORE came from");
		}
	/* A keyword look-up of the same key finds no PROVIDER record. */
	h = lookup(net, 56, DHT_LOOKUP_KEYWORD, key, 0);
	run_for(net, 5000);
	cr_assert(done_of(net, 56, h));
	cr_assert_eq(records_for(net, 56, h, NULL), 0);
	net_free(net);
}

Test(dht, keyword_records)
{
	struct dht_opts o = default_opts();
	struct net *net = net_new(80, &o, 5);
	uint8_t word[32];

	net_join_all(net);
	rand_bytes(&net->rng, word, 32);
	struct pn_dht_record r1 = make_record(net, PN_DHT_REC_KEYWORD, net->ids[3], "Quarterly report.pdf");
	struct pn_dht_record r2 = make_record(net, PN_DHT_REC_KEYWORD, net->ids[9], "report card.txt");

	cr_assert_eq(dht_announce(net->cores[3], word, &r1, net->now), 0);
	drain(net, 3);
	cr_assert_eq(dht_announce(net->cores[9], word, &r2, net->now), 0);
	drain(net, 9);
	run_for(net, 5000);

	int h = lookup(net, 40, DHT_LOOKUP_KEYWORD, word, 0);

	run_for(net, 5000);
	cr_assert(done_of(net, 40, h));
	cr_assert_eq(records_for(net, 40, h, r1.cid), 1);
	cr_assert_eq(records_for(net, 40, h, r2.cid), 1);
	for (size_t i = 0; i < net->nrecs; i++)
		if (net->recs[i].node == 40 && !memcmp(net->recs[i].r.cid, r1.cid, PN_CID_BYTES)) {
			cr_assert_eq(net->recs[i].r.kind, PN_DHT_REC_KEYWORD);
			cr_assert_str_eq(net->recs[i].name, "Quarterly report.pdf");
		}
	h = lookup(net, 41, DHT_LOOKUP_PROVIDERS, word, 0);
	run_for(net, 5000);
	cr_assert_eq(records_for(net, 41, h, NULL), 0);
	net_free(net);
}

Test(dht, records_expire_without_republish_and_survive_with_it)
{
	struct dht_opts o = default_opts();

	o.record_ttl_ms = 600000;
	o.republish_ms = 300000;
	struct net *net = net_new(60, &o, 6);
	uint8_t k1[32], k2[32];

	net_join_all(net);
	rand_bytes(&net->rng, k1, 32);
	rand_bytes(&net->rng, k2, 32);
	struct pn_dht_record gone = make_record(net, PN_DHT_REC_PROVIDER, net->ids[1], NULL);
	struct pn_dht_record kept = make_record(net, PN_DHT_REC_PROVIDER, net->ids[2], NULL);

	cr_assert_eq(dht_announce(net->cores[1], k1, &gone, net->now), 0);
	drain(net, 1);
	cr_assert_eq(dht_announce(net->cores[2], k2, &kept, net->now), 0);
	drain(net, 2);
	run_for(net, 5000);
	size_t both = stored_total(net);

	cr_assert_geq(both, DHT_K);
	dht_unannounce(net->cores[1], k1, PN_DHT_REC_PROVIDER, gone.cid);
	drain(net, 1);
	run_for(net, 3 * 600000); /* three TTLs */
	size_t after = stored_total(net);

	cr_assert_gt(after, 0);
	cr_assert_leq(after, DHT_K);
	int h1 = lookup(net, 30, DHT_LOOKUP_PROVIDERS, k1, 0);
	int h2 = lookup(net, 31, DHT_LOOKUP_PROVIDERS, k2, 0);

	run_for(net, 5000);
	cr_assert(done_of(net, 30, h1) && done_of(net, 31, h2));
	cr_assert_eq(records_for(net, 30, h1, NULL), 0, "expired without republish");
	cr_assert_eq(records_for(net, 31, h2, kept.cid), 1, "kept alive by republish");
	net_free(net);
}

/* A STORE request to l from node `from` (index) with the given token. */
static void store_msg(struct pn_dht_msg *m, const uint8_t *token, const uint8_t *key, const struct pn_dht_record *r)
{
	memset(m, 0, sizeof(*m));
	m->type = PN_DHT_STORE;
	m->txid = 9;
	if (token)
		memcpy(m->u.store.token, token, PN_DHT_TOKEN_BYTES);
	memcpy(m->u.store.key, key, 32);
	m->u.store.record = *r;
}

/* Gets a token from l for node `from` (FIND_VALUE). */
static void get_token(struct lone *l, uint32_t from, const uint8_t *from_id, const uint8_t *key, uint64_t now,
		      uint8_t *token)
{
	struct pn_dht_msg m = { .type = PN_DHT_FIND_VALUE, .txid = 5 };

	m.u.find_value.kind = PN_DHT_REC_PROVIDER;
	memcpy(m.u.find_value.key, key, 32);
	lone_feed(l, from, from_id, &m, now);
	const struct dht_action *a = lone_find(l, PN_DHT_VALUES);

	cr_assert(a);
	cr_assert_eq(a->msg.txid, 5);
	memcpy(token, a->msg.u.nodes.token, PN_DHT_TOKEN_BYTES);
}

static uint8_t store_status(struct lone *l, uint32_t from, const uint8_t *from_id, const struct pn_dht_msg *m,
			    uint64_t now)
{
	lone_feed(l, from, from_id, m, now);
	const struct dht_action *a = lone_find(l, PN_DHT_STORED);

	cr_assert(a);
	return a->msg.u.stored;
}

Test(dht, store_rules)
{
	uint8_t self[32] = { 0 }, key[32] = { 0 }, pid[32], other[32], tok[16], tok_other[16];
	struct dht_opts o = { .max_per_key = 2, .max_per_publisher = 3, .max_records = 4, .token_ms = 60000 };
	struct lone *l = lone_new(self, o);
	struct pn_prng p;
	struct pn_dht_msg m;
	uint64_t now = 1000;

	pn_prng_seed(&p, 9);
	key[31] = 1; /* this node is as close as can be */
	id_near(self, 0, 1, pid);
	id_near(self, 1, 2, other);
	struct pn_dht_record r = { .kind = PN_DHT_REC_PROVIDER };

	rand_bytes(&p, r.cid, PN_CID_BYTES);
	memcpy(r.publisher, pid, 32);

	/* No token, another address's token, a stale token. */
	store_msg(&m, NULL, key, &r);
	cr_assert_eq(store_status(l, 1, pid, &m, now), PN_DHT_STORE_BAD_TOKEN);
	get_token(l, 2, other, key, now, tok_other);
	store_msg(&m, tok_other, key, &r);
	cr_assert_eq(store_status(l, 1, pid, &m, now), PN_DHT_STORE_BAD_TOKEN);
	get_token(l, 1, pid, key, now, tok);
	store_msg(&m, tok, key, &r);
	cr_assert_eq(store_status(l, 1, pid, &m, now + 60001), PN_DHT_STORE_BAD_TOKEN);
	/* Malformed: a PROVIDER record with a name. */
	struct pn_dht_record bad = r;

	bad.name = "x";
	bad.name_len = 1;
	store_msg(&m, tok, key, &bad);
	cr_assert_eq(store_status(l, 1, pid, &m, now), PN_DHT_STORE_INVALID);
	/* Good token: stored; the same again replaces it. */
	store_msg(&m, tok, key, &r);
	cr_assert_eq(store_status(l, 1, pid, &m, now + 59000), PN_DHT_STORE_OK);
	cr_assert_eq(store_status(l, 1, pid, &m, now + 59000), PN_DHT_STORE_OK);
	cr_assert_eq(dht_records_stored(l->d), 1);
	/* Per key: 2. */
	rand_bytes(&p, r.cid, PN_CID_BYTES);
	store_msg(&m, tok, key, &r);
	cr_assert_eq(store_status(l, 1, pid, &m, now), PN_DHT_STORE_OK);
	rand_bytes(&p, r.cid, PN_CID_BYTES);
	store_msg(&m, tok, key, &r);
	cr_assert_eq(store_status(l, 1, pid, &m, now), PN_DHT_STORE_FULL);
	/* Per publisher: 3. */
	uint8_t key2[32] = { 0 };

	key2[31] = 2;
	store_msg(&m, tok, key2, &r);
	cr_assert_eq(store_status(l, 1, pid, &m, now), PN_DHT_STORE_OK);
	rand_bytes(&p, r.cid, PN_CID_BYTES);
	store_msg(&m, tok, key2, &r);
	cr_assert_eq(store_status(l, 1, pid, &m, now), PN_DHT_STORE_FULL);
	/* In all: 4 (another publisher, with its own token). */
	memcpy(r.publisher, other, 32);
	get_token(l, 2, other, key, now, tok_other);
	store_msg(&m, tok_other, key2, &r);
	cr_assert_eq(store_status(l, 2, other, &m, now), PN_DHT_STORE_OK);
	rand_bytes(&p, r.cid, PN_CID_BYTES);
	uint8_t key3[32] = { 0 };

	key3[31] = 3;
	store_msg(&m, tok_other, key3, &r);
	cr_assert_eq(store_status(l, 2, other, &m, now), PN_DHT_STORE_FULL);
	cr_assert_eq(dht_records_stored(l->d), 4);
	cr_assert_eq(dht_get_stats(l->d)->stores_accepted, 5);

	/* The records are served in VALUES, with the STORE's address. */
	struct pn_dht_msg fv = { .type = PN_DHT_FIND_VALUE, .txid = 6 };

	fv.u.find_value.kind = PN_DHT_REC_PROVIDER;
	memcpy(fv.u.find_value.key, key, 32);
	lone_feed(l, 3, other, &fv, now);
	const struct dht_action *a = lone_find(l, PN_DHT_VALUES);

	cr_assert(a);
	cr_assert_eq(a->msg.u.nodes.n_records, 2);
	cr_assert_eq(a->msg.u.nodes.records[0].addr.ip[3], 1);

	/* Not close: 20 contacts nearer to a far key than this node. */
	uint8_t far[32];

	memset(far, 0xff, 32);
	for (int i = 0; i < DHT_K; i++) {
		uint8_t cid[32];
		struct pn_dht_msg ping = { .type = PN_DHT_PING, .txid = 1 };

		memset(cid, 0xff, 32); /* 0x3fff..: bucket 2, nearer the key than 0 */
		cid[0] = 0x3f;
		cid[31] = (uint8_t)i;
		lone_feed(l, 100 + (uint32_t)i, cid, &ping, now);
	}
	cr_assert_eq(dht_table_size(l->d), DHT_K + 2);
	get_token(l, 1, pid, far, now, tok);
	memcpy(r.publisher, pid, 32);
	store_msg(&m, tok, far, &r);
	cr_assert_eq(store_status(l, 1, pid, &m, now), PN_DHT_STORE_NOT_CLOSE);
	/* And records expire after the TTL. */
	dht_tick(l->d, now + 7200000 + 1000000);
	lone_drain(l);
	cr_assert_eq(dht_records_stored(l->d), 0);
	lone_free(l);
}

Test(dht, rate_limit_per_address)
{
	uint8_t self[32] = { 0 }, peer[32];
	struct dht_opts o = { .rate_per_s = 10 };
	struct lone *l = lone_new(self, o);
	struct pn_dht_msg ping = { .type = PN_DHT_PING, .txid = 1 };
	size_t pongs = 0;

	id_near(self, 3, 1, peer);
	for (int i = 0; i < 50; i++) {
		lone_feed(l, 1, peer, &ping, 1000);
		pongs += lone_find(l, PN_DHT_PONG) != NULL;
	}
	cr_assert_eq(pongs, 20, "burst of two seconds' worth: %zu", pongs);
	cr_assert_eq(dht_get_stats(l->d)->rate_limited, 30);
	lone_feed(l, 2, peer, &ping, 1000);
	cr_assert(lone_find(l, PN_DHT_PONG), "another address is served");
	pongs = 0;
	for (int i = 0; i < 50; i++) {
		lone_feed(l, 1, peer, &ping, 2000);
		pongs += lone_find(l, PN_DHT_PONG) != NULL;
	}
	cr_assert_eq(pongs, 10, "one second refills rate_per_s: %zu", pongs);
	lone_free(l);
}

static void junk_case(int mode, uint64_t seed)
{
	struct dht_opts o = default_opts();
	struct net *net = net_new(200, &o, seed);
	uint8_t key[32];

	net_join_all(net);
	rand_bytes(&net->rng, key, 32);
	memcpy(net->junk_id, key, 32);
	net->junk_id[31] ^= 0x01; /* the junk node sits closest to the key */
	junk_join(net, mode);
	for (int t = 0; t < 5; t++) {
		uint32_t from = pn_prng_below(&net->rng, net->n), truth[DHT_K];
		int h = lookup(net, from, DHT_LOOKUP_NODES, key, 0);

		run_for(net, 30000);
		const struct done_log *d = done_of(net, from, h);

		cr_assert(d, "mode %d: look-up %d finished", mode, t);
		cr_assert_eq(d->err, 0);
		true_closest(net, key, from, truth, DHT_K);
		for (size_t k = 0; k < DHT_K - 1; k++)
			cr_assert(result_has(d, net->ids[truth[k]]), "mode %d look-up %d: %zu-th closest found", mode, t, k);
		if (mode == JUNK_TXID)
			cr_assert_not(result_has(d, net->junk_id), "a node that never answers right is not a result");
	}
	uint64_t junk = 0, unexpected = 0;

	for (uint32_t i = 0; i < net->n; i++) {
		junk += dht_get_stats(net->cores[i])->junk_contacts;
		unexpected += dht_get_stats(net->cores[i])->unexpected_replies;
	}
	if (mode == JUNK_SELF || mode == JUNK_RANDOM)
		cr_assert_gt(junk, 0);
	if (mode == JUNK_TXID)
		cr_assert_gt(unexpected, 0);
	net_free(net);
}

Test(dht, junk_node_self)
{
	junk_case(JUNK_SELF, 7);
}

Test(dht, junk_node_random_contacts)
{
	junk_case(JUNK_RANDOM, 8);
}

Test(dht, junk_node_wrong_txid)
{
	junk_case(JUNK_TXID, 9);
}

/* Fills bucket 0 of a node with ID 0 with 20 contacts, then a 21st comes. */
static void full_bucket(bool old_alive)
{
	uint8_t self[32] = { 0 }, ids[DHT_K + 1][32];
	struct dht_opts o = { .rpc_timeout_ms = 1000 };
	struct lone *l = lone_new(self, o);
	struct pn_dht_msg ping = { .type = PN_DHT_PING, .txid = 1 };

	for (int i = 0; i <= DHT_K; i++)
		id_near(self, 0, (uint8_t)(i + 1), ids[i]);
	for (int i = 0; i < DHT_K; i++)
		lone_feed(l, 10 + (uint32_t)i, ids[i], &ping, 1000 + (uint64_t)i);
	cr_assert_eq(dht_table_size(l->d), DHT_K);
	lone_feed(l, 50, ids[DHT_K], &ping, 2000);
	cr_assert_eq(dht_table_size(l->d), DHT_K);
	const struct dht_action *evict = NULL;

	for (size_t i = 0; i < l->n; i++)
		if (l->acts[i].type == DHT_ACT_SEND && l->acts[i].msg.type == PN_DHT_PING)
			evict = &l->acts[i];
	cr_assert(evict, "the oldest is pinged");
	cr_assert_eq(evict->to.ip[3], 10, "the least recently seen");
	uint32_t txid = evict->msg.txid;
	struct pn_dht_contact c[DHT_K + 1];
	bool has_old = false, has_new = false;

	if (old_alive) {
		struct pn_dht_msg pong = { .type = PN_DHT_PONG, .txid = txid };

		pong.u.pong = addr_of(10);
		lone_feed(l, 10, ids[0], &pong, 2100);
	}
	dht_tick(l->d, 4000);
	lone_drain(l);
	size_t n = dht_contacts(l->d, c, DHT_K + 1);

	cr_assert_eq(n, DHT_K);
	for (size_t i = 0; i < n; i++) {
		has_old |= !memcmp(c[i].id, ids[0], 32);
		has_new |= !memcmp(c[i].id, ids[DHT_K], 32);
	}
	cr_assert_eq(has_old, old_alive);
	cr_assert_eq(has_new, !old_alive);
	lone_free(l);
}

Test(dht, full_bucket_keeps_live_old_contact)
{
	full_bucket(true);
}

Test(dht, full_bucket_replaces_dead_old_contact)
{
	full_bucket(false);
}

Test(dht, timeouts_and_max_fails_drop_a_contact)
{
	uint8_t self[32] = { 0 }, peer[32], key[32] = { 0 };
	struct dht_opts o = { .rpc_timeout_ms = 1000, .max_fails = 3 };
	struct lone *l = lone_new(self, o);
	struct pn_dht_msg ping = { .type = PN_DHT_PING, .txid = 1 };
	uint64_t now = 1000;

	id_near(self, 5, 1, peer);
	lone_feed(l, 1, peer, &ping, now);
	cr_assert_eq(dht_table_size(l->d), 1);
	for (int i = 0; i < 3; i++) {
		key[0] = (uint8_t)i;
		int h = dht_lookup(l->d, DHT_LOOKUP_NODES, key, 0, now);

		cr_assert_gt(h, 0);
		lone_drain(l);
		cr_assert(lone_find(l, PN_DHT_FIND_NODE));
		now += 1001;
		dht_tick(l->d, now);
		lone_drain(l);
		cr_assert_eq(l->n, 1);
		cr_assert_eq(l->acts[0].type, DHT_ACT_LOOKUP_DONE);
		cr_assert_eq(l->acts[0].err, PN_ENOTFOUND, "nobody answered");
		cr_assert_eq(l->acts[0].stats.timeouts, 1);
		cr_assert_eq(dht_table_size(l->d), i < 2 ? 1u : 0u, "after %d failures", i + 1);
	}
	cr_assert_eq(dht_get_stats(l->d)->timeouts, 3);
	/* An empty table: done at once, not found. */
	int h = dht_lookup(l->d, DHT_LOOKUP_PROVIDERS, key, 1, now);

	lone_drain(l);
	cr_assert_eq(l->n, 1);
	cr_assert_eq(l->acts[0].type, DHT_ACT_LOOKUP_DONE);
	cr_assert_eq(l->acts[0].handle, (uint32_t)h);
	cr_assert_eq(l->acts[0].err, PN_ENOTFOUND);
	lone_free(l);
}

Test(dht, replies_from_the_wrong_node_or_txid_are_ignored)
{
	uint8_t self[32] = { 0 }, peer[32], liar[32], key[32] = { 0 };
	struct dht_opts o = { .rpc_timeout_ms = 1000 };
	struct lone *l = lone_new(self, o);
	struct pn_dht_msg ping = { .type = PN_DHT_PING, .txid = 1 };

	id_near(self, 5, 1, peer);
	id_near(self, 6, 1, liar);
	lone_feed(l, 1, peer, &ping, 1000);
	int h = dht_lookup(l->d, DHT_LOOKUP_NODES, key, 0, 1000);

	lone_drain(l);
	const struct dht_action *a = lone_find(l, PN_DHT_FIND_NODE);

	cr_assert(a);
	struct pn_dht_msg r = { .type = PN_DHT_NODES, .txid = a->msg.txid ^ 0x1000 };

	/* Wrong txid, wrong sender, wrong type. */
	lone_feed(l, 1, peer, &r, 1100);
	r.txid ^= 0x1000;
	lone_feed(l, 2, liar, &r, 1100);
	r.type = PN_DHT_PONG;
	lone_feed(l, 1, peer, &r, 1100);
	cr_assert_eq(dht_get_stats(l->d)->unexpected_replies, 3);
	cr_assert_eq(l->n, 0, "nothing came of them");
	/* The right one, with junk contacts: this node, an invalid address,
	 * and the replier itself. */
	r.type = PN_DHT_NODES;
	r.u.nodes.n_nodes = 3;
	memcpy(r.u.nodes.nodes[0].id, self, 32);
	r.u.nodes.nodes[0].addr = addr_of(3);
	memset(r.u.nodes.nodes[1].id, 0, 32);
	r.u.nodes.nodes[1].id[31] = 9;
	r.u.nodes.nodes[1].addr.family = 4; /* port 0 */
	memcpy(r.u.nodes.nodes[2].id, peer, 32);
	r.u.nodes.nodes[2].addr = addr_of(1);
	lone_feed(l, 1, peer, &r, 1100);
	cr_assert_eq(dht_get_stats(l->d)->junk_contacts, 3);
	const struct dht_action *done = NULL;

	for (size_t i = 0; i < l->n; i++)
		if (l->acts[i].type == DHT_ACT_LOOKUP_DONE)
			done = &l->acts[i];
	cr_assert(done);
	cr_assert_eq(done->handle, (uint32_t)h);
	cr_assert_eq(done->err, 0);
	cr_assert_eq(done->n_contacts, 1);
	lone_free(l);
}

Test(dht, lookup_cancel)
{
	struct dht_opts o = default_opts();
	struct net *net = net_new(40, &o, 10);
	uint8_t key[32];

	net_join_all(net);
	rand_bytes(&net->rng, key, 32);
	int h = lookup(net, 5, DHT_LOOKUP_NODES, key, 0);
	int h2 = lookup(net, 5, DHT_LOOKUP_NODES, key, 0);

	dht_lookup_cancel(net->cores[5], (uint32_t)h);
	drain(net, 5);
	run_for(net, 10000);
	cr_assert_null(done_of(net, 5, h), "no LOOKUP_DONE after a cancel");
	cr_assert_not_null(done_of(net, 5, h2));
	net_free(net);
}

Test(dht, lookup_done_is_never_dropped)
{
	uint8_t self[32] = { 0 }, key[32] = { 0 };
	struct dht_opts o = { .rate_per_s = 100000 };
	struct lone *l = lone_new(self, o);
	struct dht_action a;
	int handles = 0;
	size_t dones = 0;

	/* Thousands of requests without draining: SENDs are dropped. */
	for (uint32_t i = 0; i < 3000; i++) {
		uint8_t id[32];
		struct pn_dht_msg ping = { .type = PN_DHT_PING, .txid = i };

		id_near(self, i % 200, (uint8_t)i, id);
		id[30] = (uint8_t)(i >> 8);
		struct pn_dht_addr from = addr_of(i);

		dht_on_message(l->d, &from, id, &ping, 1000);
	}
	cr_assert_gt(dht_get_stats(l->d)->actions_dropped, 0);
	for (int i = 0; i < DHT_MAX_LOOKUPS; i++) {
		key[0] = (uint8_t)i;
		/* No answers: each look-up waits on the table's contacts. */
		if (dht_lookup(l->d, DHT_LOOKUP_NODES, key, 0, 1000) > 0)
			handles++;
	}
	cr_assert_eq(handles, DHT_MAX_LOOKUPS);
	cr_assert_eq(dht_lookup(l->d, DHT_LOOKUP_NODES, key, 0, 1000), PN_ELIMIT);
	for (uint64_t t = 2000; t < 200000; t += 1000)
		dht_tick(l->d, t);
	while (dht_next_action(l->d, &a))
		dones += a.type == DHT_ACT_LOOKUP_DONE;
	cr_assert_eq(dones, DHT_MAX_LOOKUPS, "every look-up's end is told (%zu)", dones);
	lone_free(l);
}

Test(dht, lossy_network_lookups_still_finish)
{
	struct dht_opts o = default_opts();
	struct net *net = net_new(100, &o, 11);

	uint64_t timeouts = 0;

	net_join_all(net);
	net->loss_pct = 10;
	for (int t = 0; t < 10; t++) {
		uint8_t key[32];
		uint32_t from = pn_prng_below(&net->rng, net->n), truth[DHT_K];

		rand_bytes(&net->rng, key, 32);
		int h = lookup(net, from, DHT_LOOKUP_NODES, key, 0);

		run_for(net, 20000);
		const struct done_log *d = done_of(net, from, h);

		cr_assert(d);
		cr_assert_eq(d->err, 0);
		true_closest(net, key, from, truth, DHT_K);
		size_t found = 0;

		for (size_t k = 0; k < DHT_K; k++)
			found += result_has(d, net->ids[truth[k]]);
		cr_assert_geq(found, DHT_K / 2, "look-up %d: %zu of the true closest", t, found);
		timeouts += d->st.timeouts;
	}
	cr_assert_gt(timeouts, 0, "the loss was felt");
	net_free(net);
}

Test(dht, idle_bucket_is_refreshed)
{
	uint8_t self[32] = { 0 }, peer[32];
	struct dht_opts o = { .refresh_ms = 60000 };
	struct lone *l = lone_new(self, o);
	struct pn_dht_msg ping = { .type = PN_DHT_PING, .txid = 1 };

	self[0] = 0x5a;
	dht_free(l->d);
	o.id[0] = 0x5a;
	memcpy(o.id, self, 32);
	o.seed = 3;
	l->d = dht_new(&o);
	cr_assert(l->d);
	id_near(self, 3, 1, peer);
	lone_feed(l, 1, peer, &ping, 1000);
	cr_assert_eq(dht_next_wakeup(l->d), 61000);
	dht_tick(l->d, 60999);
	lone_drain(l);
	cr_assert_null(lone_find(l, PN_DHT_FIND_NODE), "not yet");
	dht_tick(l->d, 61000);
	lone_drain(l);
	const struct dht_action *a = lone_find(l, PN_DHT_FIND_NODE);

	cr_assert(a, "the idle bucket is refreshed");
	cr_assert_eq(a->to.ip[3], 1);
	/* The target is in bucket 3: the first 3 bits ours, the 4th not. */
	cr_assert_eq(a->msg.u.target[0] & 0xe0, self[0] & 0xe0);
	cr_assert_neq(a->msg.u.target[0] & 0x10, self[0] & 0x10);
	lone_free(l);
}
