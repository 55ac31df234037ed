/* Kademlia DHT core (see dht.h and docs/DHT.md): the routing table, requests
 * in flight, the action queue, messages and the interface. Look-ups and
 * announces are in dht_lookup.c, records, tokens and the rate limit in
 * dht_store.c; the state they share is in dht_int.h.
 *
 * Memory: the routing table is an array of 256 bucket pointers indexed by
 * the length of the prefix a contact's ID shares with ours; a bucket, its
 * contact array (grown 4, 8, 16, 20) and its replacement cache (allocated on
 * the first candidate for a full bucket) are made when needed, so a node
 * with ~17 used buckets holds a few tens of KB. Look-ups, queued actions,
 * records and announces are allocated one by one and freed when done.
 *
 * Requests in flight sit in a slot array; a request's txid carries its slot
 * number in the low DHT_RPC_BITS bits and random bits above, so a reply
 * finds its request in O(1) and a guessed txid almost never matches.
 *
 * Actions: each queued action is one heap block (the action and copies of
 * whatever its pointers name). Blocks handed out by dht_next_action() are
 * freed at the start of the next other call, which is how their pointers
 * stay valid until then. A finished user look-up stays in its slot until
 * its LOOKUP_DONE is handed out, so LOOKUP_DONE is never dropped.
 *
 * Junk in replies: a contact with an invalid address, this node's ID or the
 * replier's own ID is skipped and counted. A contact farther from the key
 * than the replier is NOT junk: near the key, the k closest a node knows
 * are mostly farther than itself, and a look-up that skipped them would
 * miss part of the true k closest (the test network shows it). A far
 * contact cannot push a near one out of the shortlist anyway.
 *
 * Write tokens: 8 bytes of issue time and an 8-byte keyed mix of the
 * requester's address and that time under a secret of the time's epoch
 * (epochs of token_ms, each with its own secret derived from the seed);
 * a token is accepted only for the same address and within token_ms of its
 * issue. Not cryptographic: enough to stop spoofed-source stores from a
 * node that never saw a VALUES answer.
 */
#define PN_PROTO_DHT_IMPL
#include "proto/dht_int.h"


int dht_cmp_distance(const uint8_t key[PN_DHT_KEY_BYTES], const uint8_t a[PN_DHT_KEY_BYTES],
		     const uint8_t b[PN_DHT_KEY_BYTES])
{
	for (size_t i = 0; i < IDB; i++) {
		uint8_t da = a[i] ^ key[i], db = b[i] ^ key[i];

		if (da != db)
			return da < db ? -1 : 1;
	}
	return 0;
}

/* ---- action queue ---- */

/* A cleared action block with `extra` bytes of names, or NULL (counted). */
struct qact *dht__q_push(struct dht *d, enum dht_action_type type, size_t extra)
{
	if (d->qlen - d->qrd >= QUEUE_MAX)
		goto drop;
	if (d->qlen == d->qcap) {
		uint32_t cap = d->qcap ? d->qcap * 2 : 8;
		struct qact **nq = realloc(d->q, cap * sizeof(*nq));

		if (!nq)
			goto drop;
		d->mem += (cap - d->qcap) * sizeof(*nq);
		d->q = nq;
		d->qcap = cap;
	}
	struct qact *qa = calloc(1, sizeof(*qa) + extra);

	if (!qa)
		goto drop;
	qa->a.type = type;
	d->q[d->qlen++] = qa;
	return qa;
drop:
	d->stats.actions_dropped++;
	return NULL;
}


/* Frees what was handed out: at the start of every call but next_action. */
static void gc(struct dht *d)
{
	for (uint32_t i = 0; i < d->qrd; i++)
		free(d->q[i]);
	if (d->qrd) {
		memmove(d->q, d->q + d->qrd, (d->qlen - d->qrd) * sizeof(*d->q));
		d->qlen -= d->qrd;
		d->qrd = 0;
	}
	if (!d->qlen && d->qcap > 64) {
		d->mem -= d->qcap * sizeof(*d->q);
		free(d->q);
		d->q = NULL;
		d->qcap = 0;
	}
	for (uint32_t i = 0; i < LOOKUP_SLOTS; i++) {
		struct lookup *lk = d->lk[i];

		if (lk && lk->finished && (lk->delivered || lk->purpose != LK_USER))
			dht__lookup_free(d, i);
	}
}

/* ---- requests in flight ---- */

static struct rpc *rpc_alloc(struct dht *d)
{
	if (d->rpc_used == d->rpc_cap) {
		if (d->rpc_cap >= RPC_MAX)
			return NULL;
		uint32_t cap = d->rpc_cap ? d->rpc_cap * 2 : 8;
		struct rpc *nr = realloc(d->rpcs, cap * sizeof(*nr));

		if (!nr)
			return NULL;
		memset(nr + d->rpc_cap, 0, (cap - d->rpc_cap) * sizeof(*nr));
		d->mem += (cap - d->rpc_cap) * sizeof(*nr);
		d->rpc_hint = d->rpc_cap;
		d->rpcs = nr;
		d->rpc_cap = cap;
	}
	for (uint32_t k = 0; k < d->rpc_cap; k++) {
		uint32_t i = (d->rpc_hint + k) % d->rpc_cap;

		if (!d->rpcs[i].used) {
			struct rpc *r = &d->rpcs[i];

			memset(r, 0, sizeof(*r));
			r->used = true;
			r->txid = ((uint32_t)pn_prng_next(&d->prng) << RPC_BITS) | i;
			d->rpc_used++;
			d->rpc_hint = i + 1;
			return r;
		}
	}
	return NULL;
}

void dht__rpc_release(struct dht *d, struct rpc *r)
{
	r->used = false;
	d->rpc_used--;
}

/* Queues a request and tracks it. id: the node expected to answer, or
 * NULL. Returns the tracking slot, or NULL when nothing was sent. */
struct rpc *dht__send_request(struct dht *d, uint8_t type, const struct pn_dht_addr *to, const uint8_t *id,
				uint8_t purpose, uint64_t now)
{
	struct rpc *r = rpc_alloc(d);

	if (!r)
		return NULL;
	struct qact *qa = dht__q_push(d, DHT_ACT_SEND, 0);

	if (!qa) {
		dht__rpc_release(d, r);
		return NULL;
	}
	r->req_type = type;
	r->purpose = purpose;
	r->addr = *to;
	r->id_known = id != NULL;
	if (id)
		memcpy(r->id, id, IDB);
	r->sent = now;
	r->deadline = add_sat(now, d->o.rpc_timeout_ms);
	qa->a.to = *to;
	qa->a.msg.type = type;
	qa->a.msg.txid = r->txid;
	d->stats.requests_sent++;
	return r;
}

static uint8_t reply_type_of(uint8_t req)
{
	switch (req) {
	case PN_DHT_PING: return PN_DHT_PONG;
	case PN_DHT_FIND_NODE: return PN_DHT_NODES;
	case PN_DHT_FIND_VALUE: return PN_DHT_VALUES;
	case PN_DHT_STORE: return PN_DHT_STORED;
	default: return 0;
	}
}

/* ---- routing table ---- */

struct bucket *dht__bucket_get(struct dht *d, unsigned i, bool make)
{
	if (i >= DHT_BITS)
		return NULL;
	if (!d->buckets[i] && make)
		d->buckets[i] = mem_calloc(d, sizeof(struct bucket));
	return d->buckets[i];
}

static int bucket_find(const struct bucket *b, const uint8_t *id)
{
	for (int i = 0; i < b->n; i++)
		if (id_eq(b->e[i].id, id))
			return i;
	return -1;
}

static void emit_contact(struct dht *d, const struct entry *e)
{
	struct qact *qa = dht__q_push(d, DHT_ACT_CONTACT, 0);

	if (!qa)
		return;
	memcpy(qa->contact.id, e->id, IDB);
	qa->contact.addr = e->addr;
	qa->a.contacts = &qa->contact;
	qa->a.n_contacts = 1;
}

/* Appends e as the most recently seen of b (room checked by the caller's
 * growth). false on allocation failure. */
static bool bucket_append(struct dht *d, struct bucket *b, const struct entry *e)
{
	if (b->n == b->cap) {
		uint8_t cap = b->cap ? (uint8_t)(b->cap * 2) : 4;

		if (cap > DHT_K)
			cap = DHT_K;
		struct entry *ne = realloc(b->e, cap * sizeof(*ne));

		if (!ne)
			return false;
		d->mem += (size_t)(cap - b->cap) * sizeof(*ne);
		b->e = ne;
		b->cap = cap;
	}
	b->e[b->n++] = *e;
	d->table_n++;
	emit_contact(d, e);
	return true;
}

/* Removes entry i of b; the newest replacement candidate takes its place. */
static void bucket_remove(struct dht *d, struct bucket *b, int i)
{
	memmove(&b->e[i], &b->e[i + 1], (size_t)(b->n - i - 1) * sizeof(*b->e));
	b->n--;
	d->table_n--;
	if (b->nrep) {
		struct entry e = b->rep[--b->nrep];

		e.fails = 0;
		bucket_append(d, b, &e);
	}
}

static void rep_remove(struct bucket *b, const uint8_t *id)
{
	for (int i = 0; i < b->nrep; i++)
		if (id_eq(b->rep[i].id, id)) {
			memmove(&b->rep[i], &b->rep[i + 1], (size_t)(b->nrep - i - 1) * sizeof(*b->rep));
			b->nrep--;
			return;
		}
}

/* Node id spoke to us from addr (a request, or a reply we expected). */
static void table_seen(struct dht *d, const uint8_t *id, const struct pn_dht_addr *addr, uint64_t now)
{
	unsigned i = common_prefix(d->o.id, id);

	if (i >= DHT_BITS || !addr_ok(addr))
		return;
	struct bucket *b = dht__bucket_get(d, i, true);

	if (!b)
		return;
	b->touched = now;
	int at = bucket_find(b, id);

	if (at >= 0) {
		struct entry e = b->e[at];

		e.addr = *addr;
		e.last_seen = now;
		e.fails = 0;
		memmove(&b->e[at], &b->e[at + 1], (size_t)(b->n - at - 1) * sizeof(*b->e));
		b->e[b->n - 1] = e;
		return;
	}
	struct entry e = { .addr = *addr, .last_seen = now };

	memcpy(e.id, id, IDB);
	if (b->nrep)
		rep_remove(b, id);
	if (b->n < DHT_K) {
		bucket_append(d, b, &e);
		return;
	}
	/* Full: the newcomer waits in the replacement cache, and the oldest
	 * member must prove it is alive. */
	if (!b->rep) {
		b->rep = mem_calloc(d, DHT_K * sizeof(*b->rep));
		if (!b->rep)
			return;
	}
	if (b->nrep == DHT_K) {
		memmove(&b->rep[0], &b->rep[1], (DHT_K - 1) * sizeof(*b->rep));
		b->nrep--;
	}
	b->rep[b->nrep++] = e;
	if (!b->pinging && dht__send_request(d, PN_DHT_PING, &b->e[0].addr, b->e[0].id, RPC_EVICT, now))
		b->pinging = true;
}

/* A request to id failed. evict: it was the eviction ping. */
static void table_failed(struct dht *d, const uint8_t *id, bool evict, uint64_t sent)
{
	struct bucket *b = dht__bucket_get(d, common_prefix(d->o.id, id), false);

	if (!b)
		return;
	if (evict)
		b->pinging = false;
	int at = bucket_find(b, id);

	if (at < 0)
		return;
	struct entry *e = &b->e[at];

	if (e->last_seen > sent)
		return; /* it spoke since: alive */
	if (e->fails < UINT8_MAX)
		e->fails++;
	if ((evict && b->nrep) || e->fails >= d->o.max_fails)
		bucket_remove(d, b, at);
}

/* The up to max closest contacts to key in the table, nearest first,
 * without `except` (may be NULL). */
size_t dht__table_closest(const struct dht *d, const uint8_t *key, const uint8_t *except,
			    struct pn_dht_contact *out, size_t max)
{
	size_t n = 0;

	for (unsigned i = 0; i < DHT_BITS; i++) {
		const struct bucket *b = d->buckets[i];

		for (int j = 0; b && j < b->n; j++) {
			const struct entry *e = &b->e[j];

			if (except && id_eq(e->id, except))
				continue;
			if (n == max && dht_cmp_distance(key, e->id, out[n - 1].id) >= 0)
				continue;
			size_t pos = n < max ? n : max - 1;

			while (pos > 0 && dht_cmp_distance(key, e->id, out[pos - 1].id) < 0) {
				out[pos] = out[pos - 1];
				pos--;
			}
			memcpy(out[pos].id, e->id, IDB);
			out[pos].addr = e->addr;
			if (n < max)
				n++;
		}
	}
	return n;
}

/* True if fewer than DHT_K contacts are closer to key than this node. */
static bool is_close(const struct dht *d, const uint8_t *key)
{
	size_t closer = 0;

	for (unsigned i = 0; i < DHT_BITS; i++) {
		const struct bucket *b = d->buckets[i];

		for (int j = 0; b && j < b->n; j++)
			if (dht_cmp_distance(key, b->e[j].id, d->o.id) < 0 && ++closer >= DHT_K)
				return false;
	}
	return true;
}

static void handle_request(struct dht *d, const struct pn_dht_addr *from, const uint8_t *from_id,
			   const struct pn_dht_msg *m, uint64_t now)
{
	d->stats.requests_received++;
	if (!dht__rate_ok(d, from, now)) {
		d->stats.rate_limited++;
		return;
	}
	table_seen(d, from_id, from, now);
	if (m->type == PN_DHT_FIND_VALUE) {
		dht__answer_values(d, from, from_id, m, now);
		return;
	}
	struct qact *qa = dht__q_push(d, DHT_ACT_SEND, 0);

	if (!qa)
		return;
	struct pn_dht_msg *out = &qa->a.msg;

	qa->a.to = *from;
	out->txid = m->txid;
	switch (m->type) {
	case PN_DHT_PING:
		out->type = PN_DHT_PONG;
		out->u.pong = *from;
		break;
	case PN_DHT_FIND_NODE:
		out->type = PN_DHT_NODES;
		out->u.nodes.n_nodes = (uint8_t)dht__table_closest(d, m->u.target, from_id, out->u.nodes.nodes, DHT_K);
		break;
	default: { /* STORE */
		const struct pn_dht_record *rec = &m->u.store.record;
		uint8_t st;

		if (!dht__record_shape_ok(rec))
			st = PN_DHT_STORE_INVALID;
		else if (!dht__token_ok(d, from, m->u.store.token, now))
			st = PN_DHT_STORE_BAD_TOKEN;
		else if (!is_close(d, m->u.store.key))
			st = PN_DHT_STORE_NOT_CLOSE;
		else
			st = dht__store_record(d, m->u.store.key, rec, from, now);
		if (st == PN_DHT_STORE_OK)
			d->stats.stores_accepted++;
		else
			d->stats.stores_refused++;
		out->type = PN_DHT_STORED;
		out->u.stored = st;
		break;
	}
	}
	d->stats.replies_sent++;
}

/* ---- replies ---- */

static void start_join(struct dht *d, uint64_t now)
{
	dht__lookup_start(d, DHT_LOOKUP_NODES, d->o.id, 0, LK_JOIN, now);
}

static void handle_reply(struct dht *d, const struct pn_dht_addr *from, const uint8_t *from_id,
			 const struct pn_dht_msg *m, uint64_t now)
{
	uint32_t slot = m->txid & (RPC_MAX - 1);

	if (slot >= d->rpc_cap || !d->rpcs[slot].used || d->rpcs[slot].txid != m->txid ||
	    reply_type_of(d->rpcs[slot].req_type) != m->type ||
	    (d->rpcs[slot].id_known ? !id_eq(d->rpcs[slot].id, from_id) : !addr_eq(&d->rpcs[slot].addr, from))) {
		d->stats.unexpected_replies++;
		return;
	}
	struct rpc r = d->rpcs[slot];

	dht__rpc_release(d, &d->rpcs[slot]);
	d->stats.replies_received++;
	table_seen(d, from_id, from, now);
	if (r.purpose == RPC_EVICT) {
		struct bucket *b = dht__bucket_get(d, common_prefix(d->o.id, r.id), false);

		if (b)
			b->pinging = false;
	}
	if (!d->joined) {
		d->joined = true;
		start_join(d, now);
	}
	if (r.purpose == RPC_LOOKUP) {
		struct lookup *lk = d->lk[r.lk_slot];

		if (lk && lk->gen == r.lk_gen && !lk->finished)
			dht__lookup_on_reply(d, lk, r.lk_slot, from_id, m, now);
	}
}

static void rpc_timeout(struct dht *d, struct rpc *rp, uint64_t now)
{
	struct rpc r = *rp;

	dht__rpc_release(d, rp);
	d->stats.timeouts++;
	if (r.id_known)
		table_failed(d, r.id, r.purpose == RPC_EVICT, r.sent);
	if (r.purpose != RPC_LOOKUP)
		return;
	struct lookup *lk = d->lk[r.lk_slot];

	if (!lk || lk->gen != r.lk_gen || lk->finished)
		return;
	int at = dht__sl_find(lk, r.id);

	if (at >= 0 && lk->sl[at].state == SL_ASKED) {
		lk->sl[at].state = SL_FAILED;
		lk->inflight--;
	}
	lk->stats.timeouts++;
	dht__lookup_step(d, lk, r.lk_slot, now);
}

/* ---- the interface ---- */

struct dht *dht_new(const struct dht_opts *opts)
{
	if (!opts)
		return NULL;
	struct dht *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	d->o = *opts;
	if (!d->o.rpc_timeout_ms)
		d->o.rpc_timeout_ms = DEF_RPC_TIMEOUT_MS;
	if (!d->o.max_fails)
		d->o.max_fails = DEF_MAX_FAILS;
	if (!d->o.refresh_ms)
		d->o.refresh_ms = DEF_REFRESH_MS;
	if (!d->o.record_ttl_ms)
		d->o.record_ttl_ms = DEF_RECORD_TTL_MS;
	if (!d->o.republish_ms)
		d->o.republish_ms = DEF_REPUBLISH_MS;
	if (!d->o.token_ms)
		d->o.token_ms = DEF_TOKEN_MS;
	if (!d->o.rate_per_s)
		d->o.rate_per_s = DEF_RATE;
	if (!d->o.max_records)
		d->o.max_records = DEF_MAX_RECORDS;
	if (!d->o.max_per_publisher)
		d->o.max_per_publisher = DEF_MAX_PER_PUBLISHER;
	if (!d->o.max_per_key)
		d->o.max_per_key = DEF_MAX_PER_KEY;
	pn_prng_seed(&d->prng, d->o.seed);
	d->secret = pn_prng_next(&d->prng);
	d->hkey = pn_prng_next(&d->prng);
	d->rec_sweep = UINT64_MAX;
	d->ann_next = UINT64_MAX;
	d->mem = sizeof(*d);
	return d;
}

void dht_free(struct dht *d)
{
	if (!d)
		return;
	for (uint32_t i = 0; i < d->qlen; i++)
		free(d->q[i]);
	free(d->q);
	for (uint32_t i = 0; i < LOOKUP_SLOTS; i++)
		if (d->lk[i]) {
			free(d->lk[i]->seen);
			free(d->lk[i]);
		}
	for (unsigned i = 0; i < DHT_BITS; i++)
		if (d->buckets[i]) {
			free(d->buckets[i]->e);
			free(d->buckets[i]->rep);
			free(d->buckets[i]);
		}
	dht__store_free(d);
	for (uint32_t i = 0; i < d->nann; i++)
		free(d->ann[i]);
	free(d->ann);
	free(d->rpcs);
	free(d->rate);
	free(d);
}

void dht_bootstrap(struct dht *d, const struct pn_dht_addr *addr, uint64_t now)
{
	gc(d);
	if (addr && addr_ok(addr))
		dht__send_request(d, PN_DHT_PING, addr, NULL, RPC_PING, now);
}

void dht_add_contact(struct dht *d, const struct pn_dht_contact *c, uint64_t now)
{
	gc(d);
	if (c && addr_ok(&c->addr) && !id_eq(c->id, d->o.id))
		dht__send_request(d, PN_DHT_PING, &c->addr, c->id, RPC_PING, now);
}

void dht_join(struct dht *d, uint64_t now)
{
	gc(d);
	start_join(d, now);
}

void dht_on_message(struct dht *d, const struct pn_dht_addr *from, const uint8_t from_id[PN_DHT_KEY_BYTES],
		    const struct pn_dht_msg *m, uint64_t now)
{
	gc(d);
	if (!from || !from_id || !m || !addr_ok(from) || id_eq(from_id, d->o.id))
		return;
	switch (m->type) {
	case PN_DHT_PING:
	case PN_DHT_FIND_NODE:
	case PN_DHT_FIND_VALUE:
	case PN_DHT_STORE:
		handle_request(d, from, from_id, m, now);
		break;
	case PN_DHT_PONG:
	case PN_DHT_NODES:
	case PN_DHT_VALUES:
	case PN_DHT_STORED:
		handle_reply(d, from, from_id, m, now);
		break;
	default:
		break;
	}
}

int dht_lookup(struct dht *d, enum dht_lookup_kind kind, const uint8_t key[PN_DHT_KEY_BYTES], uint32_t want,
	       uint64_t now)
{
	gc(d);
	if (!key || (kind != DHT_LOOKUP_NODES && kind != DHT_LOOKUP_PROVIDERS && kind != DHT_LOOKUP_KEYWORD))
		return PN_EINVAL;
	if (d->n_user >= DHT_MAX_LOOKUPS)
		return PN_ELIMIT;
	struct lookup *lk = dht__lookup_start(d, (uint8_t)kind, key, want, LK_USER, now);

	return lk ? (int)lk->handle : PN_ENOMEM;
}

void dht_lookup_cancel(struct dht *d, uint32_t handle)
{
	gc(d);
	uint32_t slot;
	struct lookup *lk = dht__lookup_by_handle(d, handle, &slot);

	if (lk && !lk->delivered)
		dht__lookup_free(d, slot); /* its requests in flight become orphans */
}

int dht_announce(struct dht *d, const uint8_t key[PN_DHT_KEY_BYTES], const struct pn_dht_record *rec, uint64_t now)
{
	gc(d);
	if (!key || !rec || !dht__record_shape_ok(rec))
		return PN_EINVAL;
	int at = dht__announce_find(d, key, rec->kind, rec->cid);

	if (at < 0 && d->nann >= DHT_MAX_ANNOUNCES)
		return PN_ELIMIT;
	struct announce *a = mem_calloc(d, sizeof(*a) + rec->name_len);

	if (!a)
		return PN_ENOMEM;
	memcpy(a->key, key, IDB);
	a->rec = *rec;
	if (rec->name_len)
		memcpy(a->name, rec->name, rec->name_len);
	a->rec.name = rec->name_len ? a->name : NULL;
	a->next_at = now;
	if (at >= 0) {
		struct announce *old = d->ann[at];

		if (old->lk) { /* its look-up stores the new record */
			a->lk = old->lk;
			a->lk->ann = a;
		}
		mem_free(d, old, sizeof(*old) + old->rec.name_len);
		d->ann[at] = a;
	} else {
		if (d->nann == d->anncap) {
			uint32_t cap = d->anncap ? d->anncap * 2 : 4;
			struct announce **na = realloc(d->ann, cap * sizeof(*na));

			if (!na) {
				mem_free(d, a, sizeof(*a) + rec->name_len);
				return PN_ENOMEM;
			}
			d->mem += (cap - d->anncap) * sizeof(*na);
			d->ann = na;
			d->anncap = cap;
		}
		d->ann[d->nann++] = a;
	}
	d->ann_next = min64(d->ann_next, now);
	dht__announces_run(d, now);
	return 0;
}

void dht_unannounce(struct dht *d, const uint8_t key[PN_DHT_KEY_BYTES], uint8_t kind, const uint8_t cid[PN_CID_BYTES])
{
	gc(d);
	if (!key || !cid)
		return;
	int at = dht__announce_find(d, key, kind, cid);

	if (at >= 0)
		dht__announce_drop(d, (uint32_t)at);
}

/* A node look-up of a random ID in bucket i's range: the first i bits of
 * this node's ID, bit i flipped, random after. */
static void refresh_bucket(struct dht *d, unsigned i, uint64_t now)
{
	uint8_t target[IDB];

	for (size_t j = 0; j < IDB; j += 8) {
		uint64_t r = pn_prng_next(&d->prng);

		memcpy(target + j, &r, 8);
	}
	for (unsigned bit = 0; bit <= i; bit++) {
		uint8_t mask = (uint8_t)(0x80 >> (bit % 8));
		bool one = (d->o.id[bit / 8] & mask) != 0;

		if (bit == i)
			one = !one;
		target[bit / 8] = (uint8_t)(one ? target[bit / 8] | mask : target[bit / 8] & ~mask);
	}
	dht__lookup_start(d, DHT_LOOKUP_NODES, target, 0, LK_REFRESH, now);
}

void dht_tick(struct dht *d, uint64_t now)
{
	gc(d);
	for (uint32_t i = 0; i < d->rpc_cap; i++)
		if (d->rpcs[i].used && d->rpcs[i].deadline <= now)
			rpc_timeout(d, &d->rpcs[i], now);
	for (unsigned i = 0; i < DHT_BITS; i++) {
		struct bucket *b = d->buckets[i];

		if (!b || add_sat(b->touched, d->o.refresh_ms) > now)
			continue;
		b->touched = now;
		if (d->n_internal < MAX_INTERNAL)
			refresh_bucket(d, i, now);
	}
	while (d->jr_next < d->jr_end && d->n_internal < JOIN_REFRESH_SLOTS) {
		unsigned i = d->jr_next++;
		struct bucket *b = d->buckets[i];

		if (b && b->n >= DHT_K)
			continue; /* full: nothing to learn */
		if (b)
			b->touched = now;
		refresh_bucket(d, i, now);
	}
	if (now >= d->rec_sweep)
		dht__records_sweep(d, now);
	dht__announces_run(d, now);
}

uint64_t dht_next_wakeup(const struct dht *d)
{
	uint64_t w = UINT64_MAX;

	for (uint32_t i = 0; i < d->rpc_cap; i++)
		if (d->rpcs[i].used)
			w = min64(w, d->rpcs[i].deadline);
	for (unsigned i = 0; i < DHT_BITS; i++)
		if (d->buckets[i])
			w = min64(w, add_sat(d->buckets[i]->touched, d->o.refresh_ms));
	w = min64(w, d->rec_sweep);
	if (d->jr_next < d->jr_end && d->n_internal < JOIN_REFRESH_SLOTS)
		w = 0; /* refreshes after a join wait for a free slot only */
	if (d->nann)
		w = min64(w, d->ann_next);
	return w;
}

bool dht_next_action(struct dht *d, struct dht_action *out)
{
	if (d->qrd < d->qlen) {
		*out = d->q[d->qrd++]->a;
		return true;
	}
	if (!d->n_finished)
		return false;
	for (uint32_t i = 0; i < LOOKUP_SLOTS; i++) {
		struct lookup *lk = d->lk[i];

		if (!lk || lk->purpose != LK_USER || !lk->finished || lk->delivered)
			continue;
		memset(out, 0, sizeof(*out));
		out->type = DHT_ACT_LOOKUP_DONE;
		out->handle = lk->handle;
		out->err = lk->err;
		out->stats = lk->stats;
		out->contacts = lk->result;
		out->n_contacts = lk->nresult;
		lk->delivered = true;
		d->n_finished--;
		return true;
	}
	return false;
}

size_t dht_contacts(const struct dht *d, struct pn_dht_contact *out, size_t max)
{
	size_t n = 0;

	for (int i = DHT_BITS - 1; i >= 0 && n < max; i--) {
		const struct bucket *b = d->buckets[i];

		for (int j = b ? b->n - 1 : -1; j >= 0 && n < max; j--) {
			memcpy(out[n].id, b->e[j].id, IDB);
			out[n++].addr = b->e[j].addr;
		}
	}
	return n;
}

size_t dht_table_size(const struct dht *d)
{
	return d->table_n;
}

size_t dht_records_stored(const struct dht *d)
{
	return d->nrecords;
}

size_t dht_memory(const struct dht *d)
{
	return d->mem;
}

const struct dht_stats *dht_get_stats(const struct dht *d)
{
	return &d->stats;
}
