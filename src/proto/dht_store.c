/* The DHT core's storage (see dht_int.h): records under keys with their
 * bounds and expiry, write tokens, the per-address rate limit, and VALUES
 * answers. */
#define PN_PROTO_DHT_IMPL
#include "proto/dht_int.h"

static size_t srec_len(const struct srec *r)
{
	return 1 + PN_CID_BYTES + 1 + r->name_len + PN_DHT_PUB_BYTES + PN_DHT_SIG_BYTES + addr_len(&r->addr);
}

static uint64_t addr_hash(const struct pn_dht_addr *a, uint64_t key)
{
	uint64_t lo = 0, hi = 0;

	memcpy(&lo, a->ip, 8);
	memcpy(&hi, a->ip + 8, 8);
	if (a->family != 6) {
		lo &= 0xffffffffull; /* only the 4 bytes of IPv4 count */
		hi = 0;
	}
	return mix64(mix64(lo ^ key) ^ hi ^ ((uint64_t)a->family << 16 | a->port));
}

/* ---- write tokens ---- */

static uint64_t token_mac(const struct dht *d, const struct pn_dht_addr *a, uint64_t t)
{
	uint64_t epoch = t / d->o.token_ms;
	uint64_t s = mix64(d->secret + epoch * PN_PRNG_GAMMA);

	return mix64(mix64(addr_hash(a, s) ^ t) ^ s);
}

static void token_make(const struct dht *d, const struct pn_dht_addr *a, uint64_t now, uint8_t out[PN_DHT_TOKEN_BYTES])
{
	uint64_t mac = token_mac(d, a, now);

	for (int i = 0; i < 8; i++) {
		out[i] = (uint8_t)(now >> (8 * i));
		out[8 + i] = (uint8_t)(mac >> (8 * i));
	}
}

bool dht__token_ok(const struct dht *d, const struct pn_dht_addr *a, const uint8_t tok[PN_DHT_TOKEN_BYTES],
		     uint64_t now)
{
	uint64_t t = 0, mac = 0;

	for (int i = 0; i < 8; i++) {
		t |= (uint64_t)tok[i] << (8 * i);
		mac |= (uint64_t)tok[8 + i] << (8 * i);
	}
	return t <= now && now - t <= d->o.token_ms && mac == token_mac(d, a, t);
}

/* ---- per-address rate limit ---- */

bool dht__rate_ok(struct dht *d, const struct pn_dht_addr *a, uint64_t now)
{
	uint64_t burst = (uint64_t)d->o.rate_per_s * RATE_BURST * 1000u;

	if (!d->rate) {
		d->rate = mem_calloc(d, RATE_SLOTS * sizeof(*d->rate));
		if (!d->rate)
			return false;
	}
	uint32_t h = (uint32_t)(addr_hash(a, d->hkey) % RATE_SLOTS);
	struct rate_slot *s = NULL, *victim = NULL;

	for (uint32_t k = 0; k < RATE_PROBE && !s; k++) {
		struct rate_slot *c = &d->rate[(h + k) % RATE_SLOTS];

		if (c->used && addr_eq(&c->addr, a))
			s = c;
		else if (!victim || (victim->used && (!c->used || c->last < victim->last)))
			victim = c; /* a free slot, else the least recently used */
	}
	if (!s) {
		s = victim;
		s->used = true;
		s->addr = *a;
		s->tokens_milli = burst;
		s->last = now;
	}
	if (now > s->last) {
		uint64_t elapsed = now - s->last > RATE_BURST * 1000u ? RATE_BURST * 1000u : now - s->last;
		uint64_t t = s->tokens_milli + elapsed * d->o.rate_per_s;

		s->tokens_milli = t > burst ? burst : t;
		s->last = now;
	}
	if (s->tokens_milli < 1000)
		return false;
	s->tokens_milli -= 1000;
	return true;
}

/* ---- hash tables of 32-byte keys (records by key, counts by publisher) ---- */

static uint32_t ht_slot(const struct dht *d, const uint8_t *k, uint32_t nb)
{
	uint64_t w[4];

	memcpy(w, k, sizeof(w));
	uint64_t h = mix64(w[0] ^ d->hkey);

	h = mix64(h ^ w[1]);
	h = mix64(h ^ w[2]);
	h = mix64(h ^ w[3]);
	return (uint32_t)h & (nb - 1);
}

static struct hnode *ht_find(const struct dht *d, const struct htab *t, const uint8_t *k)
{
	if (!t->nb)
		return NULL;
	for (struct hnode *n = t->b[ht_slot(d, k, t->nb)]; n; n = n->chain)
		if (id_eq(n->k, k))
			return n;
	return NULL;
}

static void ht_insert(struct dht *d, struct htab *t, struct hnode *node)
{
	if (!t->nb || (t->n >= t->nb && t->nb < HT_MAX)) {
		uint32_t nb = t->nb ? t->nb * 2 : HT_INITIAL;
		struct hnode **b = calloc(nb, sizeof(*b));

		if (b) {
			for (uint32_t i = 0; i < t->nb; i++)
				for (struct hnode *n = t->b[i], *next; n; n = next) {
					next = n->chain;
					uint32_t s = ht_slot(d, n->k, nb);

					n->chain = b[s];
					b[s] = n;
				}
			d->mem += (nb - t->nb) * sizeof(*b);
			free(t->b);
			t->b = b;
			t->nb = nb;
		}
	}
	uint32_t s = ht_slot(d, node->k, t->nb);

	node->chain = t->b[s];
	t->b[s] = node;
	t->n++;
}

static void ht_remove(const struct dht *d, struct htab *t, struct hnode *node)
{
	struct hnode **link = &t->b[ht_slot(d, node->k, t->nb)];

	while (*link != node)
		link = &(*link)->chain;
	*link = node->chain;
	t->n--;
}

/* ---- storage ---- */

static void pub_count(struct dht *d, const uint8_t *pub, int delta)
{
	struct spub *p = (struct spub *)ht_find(d, &d->pubs, pub);

	if (delta > 0) {
		if (!p) {
			p = mem_calloc(d, sizeof(*p));
			if (!p)
				return;
			memcpy(p->h.k, pub, IDB);
			ht_insert(d, &d->pubs, &p->h);
		}
		p->n++;
	} else if (p && --p->n == 0) {
		ht_remove(d, &d->pubs, &p->h);
		mem_free(d, p, sizeof(*p));
	}
}

static uint32_t pub_records(const struct dht *d, const uint8_t *pub)
{
	const struct spub *p = (const struct spub *)ht_find(d, &d->pubs, pub);

	return p ? p->n : 0;
}

static void srec_free(struct dht *d, struct srec *r)
{
	mem_free(d, r, sizeof(*r) + r->name_len);
}

/* Drops the records of k that expired by now; frees k when empty (then
 * returns true). */
static bool key_expire(struct dht *d, struct skey *k, uint64_t now, uint64_t *next)
{
	for (struct srec **link = &k->recs; *link;) {
		struct srec *r = *link;

		if (r->expires <= now) {
			*link = r->next;
			pub_count(d, r->publisher, -1);
			srec_free(d, r);
			k->n--;
			d->nrecords--;
		} else {
			if (next)
				*next = min64(*next, r->expires);
			link = &r->next;
		}
	}
	if (k->recs)
		return false;
	ht_remove(d, &d->keys, &k->h);
	mem_free(d, k, sizeof(*k));
	return true;
}

void dht__records_sweep(struct dht *d, uint64_t now)
{
	uint64_t next = UINT64_MAX;

	for (uint32_t i = 0; i < d->keys.nb; i++)
		for (struct hnode *n = d->keys.b[i], *chain; n; n = chain) {
			chain = n->chain;
			key_expire(d, (struct skey *)n, now, &next);
		}
	if (next != UINT64_MAX)
		next = next > add_sat(now, batch_ms(d->o.record_ttl_ms)) ? next
									   : add_sat(now, batch_ms(d->o.record_ttl_ms));
	d->rec_sweep = next;
}

bool dht__record_shape_ok(const struct pn_dht_record *r)
{
	if (r->kind == PN_DHT_REC_PROVIDER)
		return r->name_len == 0;
	if (r->kind == PN_DHT_REC_KEYWORD)
		return r->name_len >= 1 && r->name;
	return false;
}

uint8_t dht__store_record(struct dht *d, const uint8_t *key, const struct pn_dht_record *rec,
			    const struct pn_dht_addr *from, uint64_t now)
{
	struct skey *k = (struct skey *)ht_find(d, &d->keys, key);

	if (k && key_expire(d, k, now, NULL))
		k = NULL;
	struct srec *old = NULL, **old_link = NULL;

	for (struct srec **link = k ? &k->recs : NULL; link && *link; link = &(*link)->next)
		if ((*link)->kind == rec->kind && !memcmp((*link)->cid, rec->cid, PN_CID_BYTES) &&
		    !memcmp((*link)->publisher, rec->publisher, PN_DHT_PUB_BYTES)) {
			old = *link;
			old_link = link;
			break;
		}
	if (!old && ((k && k->n >= d->o.max_per_key) || d->nrecords >= d->o.max_records ||
		     pub_records(d, rec->publisher) >= d->o.max_per_publisher))
		return PN_DHT_STORE_FULL;
	if (!k) {
		k = mem_calloc(d, sizeof(*k));
		if (!k)
			return PN_DHT_STORE_FULL;
		memcpy(k->h.k, key, IDB);
		ht_insert(d, &d->keys, &k->h);
	}
	struct srec *r = mem_calloc(d, sizeof(*r) + rec->name_len);

	if (!r) {
		if (!k->recs)
			key_expire(d, k, now, NULL);
		return PN_DHT_STORE_FULL;
	}
	r->kind = rec->kind;
	r->name_len = rec->name_len;
	memcpy(r->cid, rec->cid, PN_CID_BYTES);
	memcpy(r->publisher, rec->publisher, PN_DHT_PUB_BYTES);
	memcpy(r->sig, rec->sig, PN_DHT_SIG_BYTES);
	if (rec->name_len)
		memcpy(r->name, rec->name, rec->name_len);
	r->addr = *from;
	r->expires = add_sat(now, d->o.record_ttl_ms);
	if (old) {
		r->next = old->next;
		*old_link = r;
		srec_free(d, old);
	} else {
		r->next = k->recs;
		k->recs = r;
		k->n++;
		d->nrecords++;
		pub_count(d, rec->publisher, +1);
	}
	d->rec_sweep = min64(d->rec_sweep, r->expires);
	return PN_DHT_STORE_OK;
}

/* ---- requests from others ---- */

void dht__answer_values(struct dht *d, const struct pn_dht_addr *from, const uint8_t *from_id,
			  const struct pn_dht_msg *m, uint64_t now)
{
	struct pn_dht_contact near[DHT_K];
	size_t nnear = dht__table_closest(d, m->u.find_value.key, from_id, near, DHT_K);
	struct skey *k = (struct skey *)ht_find(d, &d->keys, m->u.find_value.key);
	const struct srec *pick[PN_DHT_RECORDS_MAX];
	size_t npick = 0, used = 0, names = 0, reserve = 0;

	for (size_t i = 0; i < nnear && i < VALUES_MIN_CONTACTS; i++)
		reserve += contact_len(&near[i]);
	if (k && k->n) {
		/* Start at a random record, so that every record of a crowded
		 * key gets served now and then. */
		uint32_t skip = pn_prng_below(&d->prng, k->n);
		const struct srec *r = k->recs;

		while (skip-- && r)
			r = r->next;
		for (uint32_t seen = 0; seen < k->n && npick < PN_DHT_RECORDS_MAX; seen++) {
			if (!r)
				r = k->recs;
			if (r->kind == m->u.find_value.kind && r->expires > now &&
			    used + srec_len(r) + reserve <= VALUES_BUDGET) {
				pick[npick++] = r;
				used += srec_len(r);
				names += r->name_len;
			}
			r = r->next;
		}
	}
	struct qact *qa = dht__q_push(d, DHT_ACT_SEND, names);

	if (!qa)
		return;
	struct pn_dht_msg *out = &qa->a.msg;

	qa->a.to = *from;
	out->type = PN_DHT_VALUES;
	out->txid = m->txid;
	token_make(d, from, now, out->u.nodes.token);
	size_t off = 0;

	for (size_t i = 0; i < npick; i++) {
		struct pn_dht_record *o = &out->u.nodes.records[i];

		o->kind = pick[i]->kind;
		memcpy(o->cid, pick[i]->cid, PN_CID_BYTES);
		o->name_len = pick[i]->name_len;
		memcpy(o->publisher, pick[i]->publisher, PN_DHT_PUB_BYTES);
		memcpy(o->sig, pick[i]->sig, PN_DHT_SIG_BYTES);
		o->addr = pick[i]->addr;
		if (o->name_len) {
			memcpy(qa->names + off, pick[i]->name, o->name_len);
			o->name = qa->names + off;
			off += o->name_len;
		}
	}
	out->u.nodes.n_records = (uint8_t)npick;
	size_t nc = 0;

	for (size_t i = 0; i < nnear && used + contact_len(&near[i]) <= VALUES_BUDGET; i++) {
		out->u.nodes.nodes[nc++] = near[i];
		used += contact_len(&near[i]);
	}
	out->u.nodes.n_nodes = (uint8_t)nc;
	d->stats.replies_sent++;
}

/* Frees every record, key and publisher count (dht_free). */
void dht__store_free(struct dht *d)
{
	for (uint32_t i = 0; i < d->keys.nb; i++)
		for (struct hnode *n = d->keys.b[i], *chain; n; n = chain) {
			struct skey *k = (struct skey *)n;

			chain = n->chain;
			for (struct srec *r = k->recs, *next; r; r = next) {
				next = r->next;
				free(r);
			}
			free(k);
		}
	free(d->keys.b);
	for (uint32_t i = 0; i < d->pubs.nb; i++)
		for (struct hnode *n = d->pubs.b[i], *chain; n; n = chain) {
			chain = n->chain;
			free(n);
		}
	free(d->pubs.b);
}
