/* The DHT core's look-ups and announces (see dht_int.h). */
#define PN_PROTO_DHT_IMPL
#include "proto/dht_int.h"

static void announce_stores(struct dht *d, struct lookup *lk, uint64_t now);
static bool lookup_new_record(struct dht *d, struct lookup *lk, const struct pn_dht_record *r);
static void emit_record(struct dht *d, struct lookup *lk, const struct pn_dht_record *r);

/* ---- look-ups ---- */

int dht__sl_find(const struct lookup *lk, const uint8_t *id)
{
	for (uint32_t i = 0; i < lk->n; i++)
		if (id_eq(lk->sl[i].c.id, id))
			return (int)i;
	return -1;
}

/* Adds c (if new) in distance order; when full, the farthest entry not in
 * flight goes (or c, if it would be last). */
static void sl_add(struct lookup *lk, const struct pn_dht_contact *c, uint32_t depth)
{
	if (dht__sl_find(lk, c->id) >= 0)
		return;
	uint32_t pos = 0;

	while (pos < lk->n && dht_cmp_distance(lk->key, lk->sl[pos].c.id, c->id) < 0)
		pos++;
	if (lk->n == SHORTLIST) {
		int drop = -1;

		for (int i = (int)lk->n - 1; i >= (int)pos; i--)
			if (lk->sl[i].state != SL_ASKED) {
				drop = i;
				break;
			}
		if (drop < 0)
			return;
		memmove(&lk->sl[drop], &lk->sl[drop + 1], (lk->n - (uint32_t)drop - 1) * sizeof(*lk->sl));
		lk->n--;
	}
	memmove(&lk->sl[pos + 1], &lk->sl[pos], (lk->n - pos) * sizeof(*lk->sl));
	memset(&lk->sl[pos], 0, sizeof(lk->sl[pos]));
	lk->sl[pos].c = *c;
	lk->sl[pos].state = SL_NEW;
	lk->sl[pos].depth = (uint8_t)(depth > UINT8_MAX ? UINT8_MAX : depth);
	lk->n++;
}


static void lookup_finish(struct dht *d, struct lookup *lk, uint64_t now)
{
	lk->finished = true;
	lk->stats.done_ms = now;
	lk->err = lk->any_answer || lk->stats.records ? 0 : PN_ENOTFOUND;
	lk->nresult = 0;
	for (uint32_t i = 0; i < lk->n && lk->nresult < DHT_K; i++)
		if (lk->sl[i].state == SL_ANSWERED)
			lk->result[lk->nresult++] = lk->sl[i].c;
	d->stats.lookups_done++;
	if (lk->purpose == LK_USER)
		d->n_finished++;
	if (lk->purpose == LK_JOIN) {
		/* Refresh every bucket farther away than the closest neighbour:
		 * a new node learns the far parts of the ID space now, not an
		 * hour later (look-ups from it would end in its neighbourhood). */
		unsigned deepest = 0;

		for (unsigned i = 0; i < DHT_BITS; i++)
			if (d->buckets[i] && d->buckets[i]->n)
				deepest = i;
		d->jr_next = 0;
		d->jr_end = (uint16_t)deepest;
	}
	if (lk->purpose == LK_ANNOUNCE && lk->ann) {
		struct announce *a = lk->ann;

		announce_stores(d, lk, now);
		a->lk = NULL;
		a->next_at = add_sat(now, lk->nresult ? d->o.republish_ms : ANNOUNCE_RETRY_MS);
		d->ann_next = min64(d->ann_next, a->next_at);
		lk->ann = NULL;
	}
	if (lk->purpose != LK_USER && d->ann_waiting)
		d->ann_next = min64(d->ann_next, now); /* a slot frees: waiting announces may go */
}

/* Sends what may be sent; finishes when the DHT_K closest live entries
 * have all answered, or nothing is left to ask. */
void dht__lookup_step(struct dht *d, struct lookup *lk, uint32_t slot, uint64_t now)
{
	if (lk->finished)
		return;
	if (lk->want && lk->stats.records >= lk->want) {
		lookup_finish(d, lk, now);
		return;
	}
	uint32_t live = 0;
	bool pending = false;

	for (uint32_t i = 0; i < lk->n && live < DHT_K; i++) {
		struct sl_entry *e = &lk->sl[i];

		if (e->state == SL_FAILED)
			continue;
		live++;
		if (e->state == SL_ASKED)
			pending = true;
		if (e->state != SL_NEW)
			continue;
		if (lk->inflight >= DHT_ALPHA) {
			pending = true;
			continue;
		}
		struct rpc *r;

		if (lk->kind == DHT_LOOKUP_NODES) {
			r = dht__send_request(d, PN_DHT_FIND_NODE, &e->c.addr, e->c.id, RPC_LOOKUP, now);
			if (r)
				memcpy(d->q[d->qlen - 1]->a.msg.u.target, lk->key, IDB);
		} else {
			r = dht__send_request(d, PN_DHT_FIND_VALUE, &e->c.addr, e->c.id, RPC_LOOKUP, now);
			if (r) {
				struct pn_dht_msg *m = &d->q[d->qlen - 1]->a.msg;

				m->u.find_value.kind = lk->kind == DHT_LOOKUP_KEYWORD ? PN_DHT_REC_KEYWORD
										  : PN_DHT_REC_PROVIDER;
				memcpy(m->u.find_value.key, lk->key, IDB);
			}
		}
		if (!r) {
			e->state = SL_FAILED; /* no room: treated as a failure */
			live--;
			continue;
		}
		pending = true;
		r->lk_slot = (uint16_t)slot;
		r->lk_gen = lk->gen;
		e->state = SL_ASKED;
		lk->inflight++;
		lk->stats.requests++;
		if (e->depth > lk->stats.rounds)
			lk->stats.rounds = e->depth;
	}
	if (!pending)
		lookup_finish(d, lk, now);
}

void dht__lookup_free(struct dht *d, uint32_t slot)
{
	struct lookup *lk = d->lk[slot];

	if (lk->ann)
		lk->ann->lk = NULL;
	if (lk->purpose == LK_USER) {
		d->n_user--;
		if (lk->finished && !lk->delivered)
			d->n_finished--;
	} else {
		d->n_internal--;
	}
	mem_free(d, lk->seen, lk->seencap * sizeof(*lk->seen));
	mem_free(d, lk, sizeof(*lk));
	d->lk[slot] = NULL;
}

/* Starts a look-up; NULL when no slot is free or memory ran out. */
struct lookup *dht__lookup_start(struct dht *d, uint8_t kind, const uint8_t *key, uint32_t want, uint8_t purpose,
				   uint64_t now)
{
	if (purpose == LK_USER ? d->n_user >= DHT_MAX_LOOKUPS : d->n_internal >= MAX_INTERNAL)
		return NULL;
	uint32_t slot = 0;

	while (slot < LOOKUP_SLOTS && d->lk[slot])
		slot++;
	if (slot == LOOKUP_SLOTS)
		return NULL;
	struct lookup *lk = mem_calloc(d, sizeof(*lk));

	if (!lk)
		return NULL;
	d->lk[slot] = lk;
	if (purpose == LK_USER) {
		d->n_user++;
		d->last_handle = d->last_handle >= INT32_MAX ? 1 : d->last_handle + 1;
		lk->handle = d->last_handle;
	} else {
		d->n_internal++;
	}
	lk->gen = ++d->gen;
	lk->kind = kind;
	lk->purpose = purpose;
	lk->want = want;
	memcpy(lk->key, key, IDB);
	lk->stats.started_ms = now;
	d->stats.lookups_started++;

	struct pn_dht_contact near[DHT_K];
	size_t n = dht__table_closest(d, key, NULL, near, DHT_K);

	for (size_t i = 0; i < n; i++)
		sl_add(lk, &near[i], 1);
	struct bucket *b = dht__bucket_get(d, common_prefix(d->o.id, key), false);

	if (b)
		b->touched = now;
	if (purpose == LK_USER && kind != DHT_LOOKUP_NODES) {
		/* What this node stores itself counts too (in a small network
		 * it may be the only holder of the key): found in 0 rounds. */
		struct pn_dht_record mine[PN_DHT_RECORDS_MAX];
		uint8_t rk = kind == DHT_LOOKUP_KEYWORD ? PN_DHT_REC_KEYWORD : PN_DHT_REC_PROVIDER;
		size_t nm = dht__local_records(d, key, rk, now, mine, PN_DHT_RECORDS_MAX);

		for (size_t i = 0; i < nm; i++) {
			if (!lookup_new_record(d, lk, &mine[i]))
				continue;
			emit_record(d, lk, &mine[i]);
			if (lk->stats.records++ == 0)
				lk->stats.first_record_ms = now;
		}
	}
	dht__lookup_step(d, lk, slot, now);
	return lk;
}

static uint64_t record_hash(const struct pn_dht_record *r)
{
	uint64_t h = 0x5157a3u;

	for (size_t i = 0; i + 8 <= PN_CID_BYTES; i += 8) {
		uint64_t w;

		memcpy(&w, r->cid + i, 8);
		h = mix64(h ^ w);
	}
	for (size_t i = 0; i < PN_DHT_PUB_BYTES; i += 8) {
		uint64_t w;

		memcpy(&w, r->publisher + i, 8);
		h = mix64(h ^ w);
	}
	return h;
}

/* True if r was not delivered by lk before (and remembers it). */
static bool lookup_new_record(struct dht *d, struct lookup *lk, const struct pn_dht_record *r)
{
	uint64_t h = record_hash(r);

	for (uint32_t i = 0; i < lk->nseen; i++)
		if (lk->seen[i] == h)
			return false;
	if (lk->nseen == lk->seencap) {
		if (lk->seencap >= SEEN_MAX)
			return false;
		uint32_t cap = lk->seencap ? lk->seencap * 2 : 16;
		uint64_t *ns = realloc(lk->seen, cap * sizeof(*ns));

		if (!ns)
			return false;
		d->mem += (cap - lk->seencap) * sizeof(*ns);
		lk->seen = ns;
		lk->seencap = cap;
	}
	lk->seen[lk->nseen++] = h;
	return true;
}

static void emit_record(struct dht *d, struct lookup *lk, const struct pn_dht_record *r)
{
	struct qact *qa = dht__q_push(d, DHT_ACT_RECORD, r->name_len);

	if (!qa)
		return;
	qa->a.handle = lk->handle;
	qa->a.rec = *r;
	if (r->name_len && r->name) {
		memcpy(qa->names, r->name, r->name_len);
		qa->a.rec.name = qa->names;
	} else {
		qa->a.rec.name = NULL;
	}
}

void dht__lookup_on_reply(struct dht *d, struct lookup *lk, uint32_t slot, const uint8_t *from_id,
			    const struct pn_dht_msg *m, uint64_t now)
{
	int at = dht__sl_find(lk, from_id);

	if (at < 0 || lk->sl[at].state != SL_ASKED)
		return;
	struct sl_entry *e = &lk->sl[at];
	uint32_t depth = e->depth;

	e->state = SL_ANSWERED;
	lk->inflight--;
	lk->any_answer = true;
	lk->stats.replies++;
	if (m->type == PN_DHT_VALUES) {
		memcpy(e->token, m->u.nodes.token, PN_DHT_TOKEN_BYTES);
		e->has_token = true;
		uint8_t want_kind = lk->kind == DHT_LOOKUP_KEYWORD ? PN_DHT_REC_KEYWORD : PN_DHT_REC_PROVIDER;
		uint32_t nrec = m->u.nodes.n_records > PN_DHT_RECORDS_MAX ? PN_DHT_RECORDS_MAX : m->u.nodes.n_records;

		for (uint32_t i = 0; lk->purpose == LK_USER && i < nrec; i++) {
			const struct pn_dht_record *r = &m->u.nodes.records[i];

			if (r->kind != want_kind || !dht__record_shape_ok(r) || !lookup_new_record(d, lk, r))
				continue;
			emit_record(d, lk, r);
			if (lk->stats.records++ == 0) {
				lk->stats.rounds_to_first = depth;
				lk->stats.first_record_ms = now;
			}
		}
	}
	uint32_t nn = m->u.nodes.n_nodes > PN_DHT_NODES_MAX ? PN_DHT_NODES_MAX : m->u.nodes.n_nodes;

	for (uint32_t i = 0; i < nn; i++) {
		const struct pn_dht_contact *c = &m->u.nodes.nodes[i];

		if (!addr_ok(&c->addr) || id_eq(c->id, d->o.id) || id_eq(c->id, from_id)) {
			d->stats.junk_contacts++;
			continue;
		}
		sl_add(lk, c, depth + 1);
	}
	dht__lookup_step(d, lk, slot, now);
}

struct lookup *dht__lookup_by_handle(struct dht *d, uint32_t handle, uint32_t *slot)
{
	for (uint32_t i = 0; i < LOOKUP_SLOTS; i++)
		if (d->lk[i] && d->lk[i]->purpose == LK_USER && d->lk[i]->handle == handle) {
			*slot = i;
			return d->lk[i];
		}
	return NULL;
}

/* ---- announces ---- */

static void announce_stores(struct dht *d, struct lookup *lk, uint64_t now)
{
	const struct announce *a = lk->ann;
	uint32_t sent = 0;

	for (uint32_t i = 0; i < lk->n && sent < DHT_K; i++) {
		const struct sl_entry *e = &lk->sl[i];

		if (e->state != SL_ANSWERED || !e->has_token)
			continue;
		sent++;
		struct rpc *r = dht__send_request(d, PN_DHT_STORE, &e->c.addr, e->c.id, RPC_STORE, now);

		if (!r)
			continue;
		struct qact *qa = d->q[d->qlen - 1];

		/* The block has no room for the name: point at a copy made now. */
		if (a->rec.name_len) {
			struct qact *big = realloc(qa, sizeof(*qa) + a->rec.name_len);

			if (!big) {
				d->qlen--;
				free(qa);
				dht__rpc_release(d, r);
				d->stats.actions_dropped++;
				continue;
			}
			qa = big;
			d->q[d->qlen - 1] = qa;
			memcpy(qa->names, a->rec.name, a->rec.name_len);
		}
		memcpy(qa->a.msg.u.store.token, e->token, PN_DHT_TOKEN_BYTES);
		memcpy(qa->a.msg.u.store.key, a->key, IDB);
		qa->a.msg.u.store.record = a->rec;
		qa->a.msg.u.store.record.name = a->rec.name_len ? qa->names : NULL;
	}
}

void dht__announces_run(struct dht *d, uint64_t now)
{
	if (now < d->ann_next)
		return;
	uint64_t next = UINT64_MAX;

	d->ann_waiting = false;

	for (uint32_t i = 0; i < d->nann; i++) {
		struct announce *a = d->ann[i];

		if (a->lk)
			continue;
		if (a->next_at <= now) {
			if (d->n_internal >= MAX_INTERNAL) {
				d->ann_waiting = true; /* lookup_finish wakes us */
				continue;
			}
			uint8_t kind = a->rec.kind == PN_DHT_REC_KEYWORD ? DHT_LOOKUP_KEYWORD : DHT_LOOKUP_PROVIDERS;
			struct lookup *lk = dht__lookup_start(d, kind, a->key, 0, LK_ANNOUNCE, now);

			if (!lk) {
				a->next_at = add_sat(now, ANNOUNCE_RETRY_MS);
			} else if (!lk->finished) {
				lk->ann = a;
				a->lk = lk;
				continue;
			} else {
				a->next_at = add_sat(now, ANNOUNCE_RETRY_MS); /* nobody to ask */
			}
		}
		next = min64(next, a->next_at);
	}
	if (next != UINT64_MAX && next < add_sat(now, batch_ms(d->o.republish_ms)))
		next = add_sat(now, batch_ms(d->o.republish_ms));
	d->ann_next = next;
}

int dht__announce_find(const struct dht *d, const uint8_t *key, uint8_t kind, const uint8_t *cid)
{
	for (uint32_t i = 0; i < d->nann; i++) {
		const struct announce *a = d->ann[i];

		if (a->rec.kind == kind && id_eq(a->key, key) && !memcmp(a->rec.cid, cid, PN_CID_BYTES))
			return (int)i;
	}
	return -1;
}

void dht__announce_drop(struct dht *d, uint32_t i)
{
	struct announce *a = d->ann[i];

	if (a->lk)
		a->lk->ann = NULL;
	d->ann[i] = d->ann[--d->nann];
	mem_free(d, a, sizeof(*a) + a->rec.name_len);
}
