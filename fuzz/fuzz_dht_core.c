/* libFuzzer target: one DHT core fed decoded messages built from the input.
 *
 * Sixteen peers (fixed addresses, IDs that share long prefixes with the
 * core's, so buckets fill and evict) and any number of strangers with IDs
 * from the input send requests of every type, replies that echo txids and
 * tokens the core really sent (or garbled ones), contacts and records with
 * fields out of range; the input also advances time, ticks, starts,
 * cancels and announces. After every step the core is drained and checked:
 * the bounds (table, records, look-ups in flight), every SEND well formed
 * and every name it points at readable, each LOOKUP_DONE for a handle that
 * was started, not cancelled, and told once, and the next wake-up after a
 * tick never in the past. At the end time jumps far ahead: every look-up
 * started and not cancelled must have ended, and every record expired. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#ifdef FUZZ_REPORT
#include <stdio.h>
#endif
#include "peernet.h"
#include "proto/dht.h"

#define PEERS 16
#define SENT_MAX 64      /* requests of the core remembered, to answer */
#define HANDLES_MAX 256
#define OPS_MAX 600
#define MAX_RECORDS 8
#define MAX_PER_KEY 3
#define MAX_PER_PUB 4
#define TABLE_MAX (256 * DHT_K)
#define FINAL_JUMP_MS 100000000ull
#define FINAL_STEP_MS 150         /* > rpc_timeout_ms */
#define FINAL_ROUNDS 200          /* > a look-up's shortlist / alpha, with room */
#define NAME_POOL "report quarterly annual data-sheet"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum op {
	OP_REQUEST, OP_REPLY, OP_STRANGER, OP_TICK, OP_LOOKUP, OP_CANCEL, OP_ANNOUNCE, OP_UNANNOUNCE,
	OP_BOOTSTRAP, OP_ADD_CONTACT, OP_JOIN, OP_COUNT
};

struct sent {
	uint32_t txid;
	uint8_t type;
	struct pn_dht_addr to;
	uint8_t target[PN_DHT_KEY_BYTES];
};

struct handle_state {
	uint32_t handle;
	bool cancelled, done;
};

struct input {
	const uint8_t *p;
	size_t left;
};

static struct dht *core;
static uint8_t self_id[PN_DHT_KEY_BYTES];
static uint8_t peer_id[PEERS][PN_DHT_KEY_BYTES];
static uint8_t token[PEERS][PN_DHT_TOKEN_BYTES];
static struct sent sent[SENT_MAX];
static uint32_t nsent;
static struct handle_state handles[HANDLES_MAX];
static uint32_t nhandles;
static uint8_t keys[4][PN_DHT_KEY_BYTES];
static uint64_t now;
static volatile uint8_t sink;

static uint8_t next(struct input *in)
{
	if (!in->left)
		return 0;
	in->left--;
	return *in->p++;
}

static void take(struct input *in, uint8_t *out, size_t n)
{
	for (size_t i = 0; i < n; i++)
		out[i] = next(in);
}

static void check(bool ok)
{
	if (!ok)
		abort();
}

static struct pn_dht_addr peer_addr(uint32_t i)
{
	struct pn_dht_addr a = { .family = 4, .port = 7000 };

	a.ip[0] = 10;
	a.ip[3] = (uint8_t)i;
	return a;
}

/* A peer index from an address, or PEERS. */
static uint32_t peer_of(const struct pn_dht_addr *a)
{
	for (uint32_t i = 0; i < PEERS; i++) {
		struct pn_dht_addr p = peer_addr(i);

		if (a->family == p.family && a->port == p.port && !memcmp(a->ip, p.ip, 4))
			return i;
	}
	return PEERS;
}

static struct handle_state *handle_find(uint32_t h)
{
	for (uint32_t i = 0; i < nhandles; i++)
		if (handles[i].handle == h)
			return &handles[i];
	return NULL;
}

static bool all_ended(void)
{
	for (uint32_t i = 0; i < nhandles; i++)
		if (!handles[i].cancelled && !handles[i].done)
			return false;
	return true;
}

static void read_name(const char *name, uint8_t len)
{
	check(len == 0 || name != NULL);
	for (uint8_t i = 0; i < len; i++)
		sink ^= (uint8_t)name[i];
}

static void check_record(const struct pn_dht_record *r)
{
	check(r->kind == PN_DHT_REC_PROVIDER || r->kind == PN_DHT_REC_KEYWORD);
	read_name(r->name, r->name_len);
}

static void drain(void)
{
	struct dht_action a;

	while (dht_next_action(core, &a)) {
		switch (a.type) {
		case DHT_ACT_SEND:
			check(a.to.family == 4 || a.to.family == 6);
			check(a.to.port != 0);
			switch (a.msg.type) {
			case PN_DHT_NODES:
			case PN_DHT_VALUES:
				check(a.msg.u.nodes.n_nodes <= PN_DHT_NODES_MAX);
				check(a.msg.u.nodes.n_records <= PN_DHT_RECORDS_MAX);
				for (uint32_t i = 0; i < a.msg.u.nodes.n_nodes; i++) {
					check(a.msg.u.nodes.nodes[i].addr.port != 0);
					check(memcmp(a.msg.u.nodes.nodes[i].id, self_id, PN_DHT_KEY_BYTES) != 0);
				}
				for (uint32_t i = 0; i < a.msg.u.nodes.n_records; i++)
					check_record(&a.msg.u.nodes.records[i]);
				if (a.msg.type == PN_DHT_VALUES && peer_of(&a.to) < PEERS)
					memcpy(token[peer_of(&a.to)], a.msg.u.nodes.token, PN_DHT_TOKEN_BYTES);
				break;
			case PN_DHT_STORE:
				check_record(&a.msg.u.store.record);
				/* fall through */
			case PN_DHT_PING:
			case PN_DHT_FIND_NODE:
			case PN_DHT_FIND_VALUE: {
				struct sent *s = &sent[nsent++ % SENT_MAX];

				s->txid = a.msg.txid;
				s->type = a.msg.type;
				s->to = a.to;
				if (a.msg.type == PN_DHT_FIND_NODE)
					memcpy(s->target, a.msg.u.target, PN_DHT_KEY_BYTES);
				else if (a.msg.type == PN_DHT_FIND_VALUE)
					memcpy(s->target, a.msg.u.find_value.key, PN_DHT_KEY_BYTES);
				break;
			}
			case PN_DHT_PONG:
			case PN_DHT_STORED:
				break;
			default:
				abort();
			}
			break;
		case DHT_ACT_RECORD: {
			struct handle_state *h = handle_find(a.handle);

			check(h && !h->cancelled && !h->done);
			check_record(&a.rec);
			break;
		}
		case DHT_ACT_LOOKUP_DONE: {
			struct handle_state *h = handle_find(a.handle);

			check(h && !h->cancelled && !h->done);
			h->done = true;
			check(a.err == 0 || a.err == PN_ENOTFOUND);
			check(a.n_contacts <= DHT_K);
			check(a.n_contacts == 0 || a.contacts);
			for (size_t i = 0; i < a.n_contacts; i++)
				sink ^= a.contacts[i].id[0];
			check(a.stats.replies <= a.stats.requests);
			check(a.stats.done_ms >= a.stats.started_ms);
			break;
		}
		case DHT_ACT_CONTACT:
			check(a.n_contacts == 1 && a.contacts);
			check(memcmp(a.contacts[0].id, self_id, PN_DHT_KEY_BYTES) != 0);
			break;
		default:
			abort();
		}
	}
	check(dht_table_size(core) <= TABLE_MAX);
	check(dht_records_stored(core) <= MAX_RECORDS);
	struct pn_dht_contact c[64];

	check(dht_contacts(core, c, 64) == (dht_table_size(core) < 64 ? dht_table_size(core) : 64));
}

static void fill_contact(struct input *in, struct pn_dht_contact *c)
{
	uint8_t how = next(in);

	if (how % 4 == 0) {
		take(in, c->id, PN_DHT_KEY_BYTES);
	} else {
		memcpy(c->id, how % 4 == 1 ? self_id : peer_id[next(in) % PEERS], PN_DHT_KEY_BYTES);
		c->id[PN_DHT_KEY_BYTES - 1] ^= (uint8_t)(how / 4);
	}
	c->addr = peer_addr(next(in) % (PEERS + 4));
	uint8_t bad = next(in);

	if (bad == 1)
		c->addr.port = 0;
	if (bad == 2)
		c->addr.family = 5;
	if (bad == 3)
		c->addr.family = 6;
}

static void fill_record(struct input *in, struct pn_dht_record *r)
{
	static const char names[] = NAME_POOL;

	r->kind = next(in) % 4;
	take(in, r->cid, 4); /* a few distinct cids */
	uint8_t len = next(in);

	r->name_len = len % 2 ? (uint8_t)(len % (sizeof(names) - 1)) : 0;
	r->name = r->name_len ? names : NULL;
	if (next(in) % 2)
		memcpy(r->publisher, peer_id[next(in) % PEERS], PN_DHT_PUB_BYTES);
	else
		take(in, r->publisher, 2);
	r->addr = peer_addr(next(in) % PEERS);
}

static void fill_nodes(struct input *in, struct pn_dht_msg *m)
{
	m->u.nodes.n_nodes = next(in) % (PN_DHT_NODES_MAX + 1);
	for (uint32_t i = 0; i < m->u.nodes.n_nodes; i++)
		fill_contact(in, &m->u.nodes.nodes[i]);
	m->u.nodes.n_records = next(in) % 4;
	for (uint32_t i = 0; i < m->u.nodes.n_records; i++)
		fill_record(in, &m->u.nodes.records[i]);
	take(in, m->u.nodes.token, 2);
}

static void request(struct input *in, const struct pn_dht_addr *from, const uint8_t *from_id, uint32_t p)
{
	struct pn_dht_msg m;

	memset(&m, 0, sizeof(m));
	m.type = next(in) % 10; /* 0 and 9: no such type */
	m.txid = next(in);
	switch (m.type) {
	case PN_DHT_FIND_NODE:
		memcpy(m.u.target, keys[next(in) % 4], PN_DHT_KEY_BYTES);
		break;
	case PN_DHT_FIND_VALUE:
		m.u.find_value.kind = next(in) % 4;
		memcpy(m.u.find_value.key, keys[next(in) % 4], PN_DHT_KEY_BYTES);
		break;
	case PN_DHT_STORE: {
		uint8_t t = next(in);

		if (p < PEERS)
			memcpy(m.u.store.token, token[t % 3 == 0 ? (t / 3) % PEERS : p], PN_DHT_TOKEN_BYTES);
		if (t == 7)
			m.u.store.token[3] ^= 1;
		memcpy(m.u.store.key, keys[next(in) % 4], PN_DHT_KEY_BYTES);
		fill_record(in, &m.u.store.record);
		break;
	}
	case PN_DHT_NODES:
	case PN_DHT_VALUES:
		fill_nodes(in, &m);
		break;
	default:
		break;
	}
	dht_on_message(core, from, from_id, &m, now);
}

/* An answer to a request the core sent (or a garbled one). */
static void reply(struct input *in)
{
	if (!nsent)
		return;
	const struct sent *s = &sent[next(in) % (nsent < SENT_MAX ? nsent : SENT_MAX)];
	uint8_t how = next(in);
	struct pn_dht_msg m;
	uint8_t id[PN_DHT_KEY_BYTES];
	uint32_t p = peer_of(&s->to);
	struct pn_dht_addr from = s->to;

	memset(&m, 0, sizeof(m));
	m.txid = how % 8 == 0 ? s->txid ^ next(in) : s->txid;
	switch (s->type) {
	case PN_DHT_PING: m.type = PN_DHT_PONG; m.u.pong = peer_addr(0); break;
	case PN_DHT_FIND_NODE: m.type = PN_DHT_NODES; break;
	case PN_DHT_FIND_VALUE: m.type = PN_DHT_VALUES; break;
	default: m.type = PN_DHT_STORED; m.u.stored = next(in) % 6; break;
	}
	if (how % 8 == 1)
		m.type = next(in) % 10;
	if (m.type == PN_DHT_NODES || m.type == PN_DHT_VALUES)
		fill_nodes(in, &m);
	if (p < PEERS && how % 8 != 2)
		memcpy(id, peer_id[p], PN_DHT_KEY_BYTES);
	else
		take(in, id, PN_DHT_KEY_BYTES);
	if (how % 8 == 3)
		from = peer_addr(next(in) % PEERS);
	dht_on_message(core, &from, id, &m, now);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = { data, size };
	struct dht_opts o = { 0 };

	memset(self_id, 0, sizeof(self_id));
	self_id[0] = next(&in);
	memcpy(o.id, self_id, PN_DHT_KEY_BYTES);
	o.seed = next(&in);
	o.rpc_timeout_ms = 100;
	o.max_fails = 1 + next(&in) % 3;
	o.refresh_ms = 5000;
	o.record_ttl_ms = 3000;
	o.republish_ms = 2000;
	o.token_ms = 1000;
	o.rate_per_s = 1 + next(&in) % 20;
	o.max_records = MAX_RECORDS;
	o.max_per_key = MAX_PER_KEY;
	o.max_per_publisher = MAX_PER_PUB;
	core = dht_new(&o);
	if (!core)
		return 0;
	for (uint32_t i = 0; i < PEERS; i++) {
		memcpy(peer_id[i], self_id, PN_DHT_KEY_BYTES);
		peer_id[i][i / 8] ^= (uint8_t)(0x80 >> (i % 8)); /* bucket i */
		peer_id[i][PN_DHT_KEY_BYTES - 1] ^= (uint8_t)(i + 1);
		memset(token[i], 0, PN_DHT_TOKEN_BYTES);
	}
	for (uint32_t i = 0; i < 4; i++) {
		memcpy(keys[i], self_id, PN_DHT_KEY_BYTES);
		keys[i][1 + i] ^= 0x40;
	}
	keys[3][0] ^= 0x80;
	nsent = nhandles = 0;
	now = 1000;

	for (uint32_t op = 0; op < OPS_MAX && in.left; op++) {
		uint8_t code = next(&in);

		switch (code % OP_COUNT) {
		case OP_REQUEST: {
			uint32_t p = next(&in) % PEERS;
			struct pn_dht_addr a = peer_addr(p);

			request(&in, &a, peer_id[p], p);
			break;
		}
		case OP_REPLY:
			reply(&in);
			break;
		case OP_STRANGER: { /* a new ID, maybe into a full bucket */
			uint8_t id[PN_DHT_KEY_BYTES];
			struct pn_dht_addr a = peer_addr(next(&in));

			memcpy(id, peer_id[next(&in) % PEERS], PN_DHT_KEY_BYTES);
			take(&in, id + PN_DHT_KEY_BYTES - 2, 2);
			a.port = (uint16_t)(7000 + next(&in));
			request(&in, &a, id, PEERS);
			break;
		}
		case OP_TICK:
			now += (uint64_t)next(&in) * (code & 0x80 ? 100 : 3);
			dht_tick(core, now);
			drain();
			check(dht_next_wakeup(core) > now);
			break;
		case OP_LOOKUP: {
			enum dht_lookup_kind kind = (enum dht_lookup_kind)(next(&in) % 4);
			int h = dht_lookup(core, kind, keys[next(&in) % 4], next(&in) % 3, now);

			if (kind < DHT_LOOKUP_NODES)
				check(h == PN_EINVAL);
			if (h > 0) {
				check(!handle_find((uint32_t)h));
				if (nhandles < HANDLES_MAX)
					handles[nhandles++] = (struct handle_state){ .handle = (uint32_t)h };
			} else {
				check(h == PN_EINVAL || h == PN_ELIMIT);
			}
			break;
		}
		case OP_CANCEL:
			if (nhandles) {
				struct handle_state *h = &handles[next(&in) % nhandles];

				dht_lookup_cancel(core, h->handle);
				if (!h->done)
					h->cancelled = true;
			}
			break;
		case OP_ANNOUNCE: {
			struct pn_dht_record r;

			memset(&r, 0, sizeof(r));
			fill_record(&in, &r);
			int rc = dht_announce(core, keys[next(&in) % 4], &r, now);

			check(rc == 0 || rc == PN_EINVAL);
			break;
		}
		case OP_UNANNOUNCE: {
			uint8_t cid[PN_CID_BYTES] = { 0 };

			take(&in, cid, 4);
			dht_unannounce(core, keys[next(&in) % 4], next(&in) % 3, cid);
			break;
		}
		case OP_BOOTSTRAP: {
			struct pn_dht_addr a = peer_addr(next(&in) % PEERS);

			if (next(&in) == 1)
				a.port = 0;
			dht_bootstrap(core, &a, now);
			break;
		}
		case OP_ADD_CONTACT: {
			struct pn_dht_contact c;

			fill_contact(&in, &c);
			dht_add_contact(core, &c, now);
			break;
		}
		default:
			dht_join(core, now);
			break;
		}
		drain();
	}
	/* Later: everything in flight times out (each time-out may send the
	 * next request of a look-up), then far ahead: every record expires. */
	for (int round = 0; round < FINAL_ROUNDS && !all_ended(); round++) {
		now += FINAL_STEP_MS;
		dht_tick(core, now);
		drain();
	}
	now += FINAL_JUMP_MS;
	dht_tick(core, now);
	drain();
	check(all_ended());
	check(dht_records_stored(core) == 0);
	check(dht_get_stats(core)->lookups_done <= dht_get_stats(core)->lookups_started);
#ifdef FUZZ_REPORT /* what the corpus reaches: cc -DFUZZ_REPORT with a main that runs it */
	const struct dht_stats *st = dht_get_stats(core);

	fprintf(stderr, "stores ok %llu refused %llu lookups %llu/%llu junk %llu unexpected %llu limited %llu evict-table %zu\n",
		(unsigned long long)st->stores_accepted, (unsigned long long)st->stores_refused,
		(unsigned long long)st->lookups_done, (unsigned long long)st->lookups_started,
		(unsigned long long)st->junk_contacts, (unsigned long long)st->unexpected_replies,
		(unsigned long long)st->rate_limited, dht_table_size(core));
#endif
	dht_free(core);
	core = NULL;
	return 0;
}
