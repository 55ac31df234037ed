/* Kademlia DHT core (see dht.h and docs/DHT.md).
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
#include <stdlib.h>
#include <string.h>
#include "peernet.h"
#include "proto/dht.h"
#include "proto/prng.h"

#define IDB PN_DHT_KEY_BYTES
#define DHT_BITS (IDB * 8)
#define DEF_RPC_TIMEOUT_MS 2000
#define DEF_MAX_FAILS 3
#define DEF_REFRESH_MS 3600000u
#define DEF_RECORD_TTL_MS 7200000u
#define DEF_REPUBLISH_MS 3000000u
#define DEF_TOKEN_MS 600000u
#define DEF_RATE 50
#define DEF_MAX_RECORDS 65536
#define DEF_MAX_PER_PUBLISHER 4096
#define DEF_MAX_PER_KEY 512
#define RATE_BURST 2                  /* a sender may burst 2 seconds' worth */
#define RATE_SLOTS 64                 /* addresses the rate limit remembers */
#define RATE_PROBE 4
#define MAX_INTERNAL 16               /* join, refresh and announce look-ups */
#define LOOKUP_SLOTS (DHT_MAX_LOOKUPS + MAX_INTERNAL)
#define SHORTLIST (3 * DHT_K)         /* candidates kept per look-up */
#define SEEN_MAX 4096                 /* distinct records remembered per look-up */
#define RPC_BITS 12
#define RPC_MAX (1u << RPC_BITS)
#define QUEUE_MAX 1024                /* queued SEND/RECORD/CONTACT actions */
#define ANNOUNCE_RETRY_MS 30000       /* an announce that reached nobody */
#define BATCH_DIV 64                  /* expiry sweeps batched to ttl/64 */
#define VALUES_MIN_CONTACTS 4         /* room kept for contacts next to records */
#define VALUES_BUDGET (PN_DHT_DGRAM_MAX - PN_DHT_HDR_BYTES - PN_DHT_SIG_BYTES - PN_DHT_TOKEN_BYTES - 2)
#define HT_INITIAL 16
#define HT_MAX (1u << 20)

struct entry {
	uint8_t id[IDB];
	struct pn_dht_addr addr;
	uint8_t fails;
	uint64_t last_seen;
};

struct bucket {
	uint64_t touched; /* last contact seen in it or look-up aimed into it */
	uint8_t n, cap, nrep;
	bool pinging;     /* an eviction ping to its oldest is in flight */
	struct entry *e;  /* least recently seen first */
	struct entry *rep; /* replacement cache, oldest first; DHT_K when made */
};

enum rpc_purpose { RPC_PING = 1, RPC_EVICT, RPC_LOOKUP, RPC_STORE };

struct rpc {
	bool used;
	bool id_known;
	uint8_t req_type;
	uint8_t purpose;
	uint16_t lk_slot;
	uint32_t txid;
	uint32_t lk_gen;
	struct pn_dht_addr addr;
	uint8_t id[IDB];
	uint64_t deadline;
	uint64_t sent;
};

enum sl_state { SL_NEW, SL_ASKED, SL_ANSWERED, SL_FAILED };

struct sl_entry {
	struct pn_dht_contact c;
	uint8_t state, depth;
	bool has_token;
	uint8_t token[PN_DHT_TOKEN_BYTES];
};

enum lk_purpose { LK_USER = 1, LK_JOIN, LK_REFRESH, LK_ANNOUNCE };

struct announce;

struct lookup {
	uint32_t handle; /* user look-ups; 0 for internal */
	uint32_t gen;
	uint8_t kind;    /* enum dht_lookup_kind */
	uint8_t purpose;
	bool finished, delivered, any_answer;
	int err;
	uint8_t key[IDB];
	uint32_t want, inflight, n;
	struct announce *ann;
	struct dht_lookup_stats stats;
	uint64_t *seen;
	uint32_t nseen, seencap;
	struct pn_dht_contact result[DHT_K];
	uint32_t nresult;
	struct sl_entry sl[SHORTLIST]; /* nearest first */
};

struct hnode {
	struct hnode *chain;
	uint8_t k[IDB];
};

struct htab {
	struct hnode **b;
	uint32_t nb, n;
};

struct srec {
	struct srec *next;
	uint64_t expires;
	uint8_t kind, name_len;
	uint8_t cid[PN_CID_BYTES];
	uint8_t publisher[PN_DHT_PUB_BYTES];
	uint8_t sig[PN_DHT_SIG_BYTES];
	struct pn_dht_addr addr;
	char name[];
};

struct skey { /* records under one key */
	struct hnode h;
	uint32_t n;
	struct srec *recs;
};

struct spub { /* records of one publisher */
	struct hnode h;
	uint32_t n;
};

struct announce {
	uint8_t key[IDB];
	struct pn_dht_record rec; /* rec.name points at name[] */
	uint64_t next_at;
	struct lookup *lk;
	char name[];
};

struct rate_slot {
	bool used;
	struct pn_dht_addr addr;
	uint64_t tokens_milli;
	uint64_t last;
};

struct qact {
	struct dht_action a;
	struct pn_dht_contact contact; /* CONTACT */
	char names[];                  /* copies of the names msg/rec point at */
};

struct dht {
	struct dht_opts o;
	struct pn_prng prng;
	uint64_t secret, hkey;
	size_t mem;
	struct bucket *buckets[DHT_BITS];
	size_t table_n;
	bool joined;

	struct rpc *rpcs;
	uint32_t rpc_cap, rpc_used, rpc_hint;

	struct lookup *lk[LOOKUP_SLOTS];
	uint32_t n_user, n_internal, last_handle, gen, n_finished;

	struct htab keys, pubs;
	size_t nrecords;
	uint64_t rec_sweep;

	struct announce **ann;
	uint32_t nann, anncap;
	uint64_t ann_next;
	bool ann_waiting; /* a due announce waits for a look-up slot */

	struct rate_slot *rate;

	struct qact **q;
	uint32_t qlen, qrd, qcap;

	struct dht_stats stats;
};

/* ---- small helpers ---- */

static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t add_sat(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t min64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

static bool id_eq(const uint8_t *a, const uint8_t *b)
{
	return !memcmp(a, b, IDB);
}

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

/* Leading bits a and b share (DHT_BITS if equal). */
static unsigned common_prefix(const uint8_t *a, const uint8_t *b)
{
	for (unsigned i = 0; i < IDB; i++) {
		uint8_t x = a[i] ^ b[i];

		if (x) {
			unsigned n = i * 8;

			while (!(x & 0x80)) {
				x <<= 1;
				n++;
			}
			return n;
		}
	}
	return DHT_BITS;
}

/* The wire helper's rules, kept here so the core needs no wire code. */
static bool addr_ok(const struct pn_dht_addr *a)
{
	return (a->family == 4 || a->family == 6) && a->port != 0;
}

static size_t addr_len(const struct pn_dht_addr *a)
{
	return 1 + (a->family == 6 ? 16u : 4u) + 2;
}

static size_t contact_len(const struct pn_dht_contact *c)
{
	return IDB + addr_len(&c->addr);
}

static size_t srec_len(const struct srec *r)
{
	return 1 + PN_CID_BYTES + 1 + r->name_len + PN_DHT_PUB_BYTES + PN_DHT_SIG_BYTES + addr_len(&r->addr);
}

static bool addr_eq(const struct pn_dht_addr *a, const struct pn_dht_addr *b)
{
	return a->family == b->family && a->port == b->port &&
	       !memcmp(a->ip, b->ip, a->family == 6 ? 16 : 4);
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

static void *mem_calloc(struct dht *d, size_t size)
{
	void *p = calloc(1, size);

	if (p)
		d->mem += size;
	return p;
}

static void mem_free(struct dht *d, void *p, size_t size)
{
	if (p) {
		d->mem -= size;
		free(p);
	}
}

/* ---- action queue ---- */

/* A cleared action block with `extra` bytes of names, or NULL (counted). */
static struct qact *q_push(struct dht *d, enum dht_action_type type, size_t extra)
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

static void lookup_free(struct dht *d, uint32_t slot);

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
			lookup_free(d, i);
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

static void rpc_release(struct dht *d, struct rpc *r)
{
	r->used = false;
	d->rpc_used--;
}

/* Queues a request and tracks it. id: the node expected to answer, or
 * NULL. Returns the tracking slot, or NULL when nothing was sent. */
static struct rpc *send_request(struct dht *d, uint8_t type, const struct pn_dht_addr *to, const uint8_t *id,
				uint8_t purpose, uint64_t now)
{
	struct rpc *r = rpc_alloc(d);

	if (!r)
		return NULL;
	struct qact *qa = q_push(d, DHT_ACT_SEND, 0);

	if (!qa) {
		rpc_release(d, r);
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

static struct bucket *bucket_get(struct dht *d, unsigned i, bool make)
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
	struct qact *qa = q_push(d, DHT_ACT_CONTACT, 0);

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
	struct bucket *b = bucket_get(d, i, true);

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
	if (!b->pinging && send_request(d, PN_DHT_PING, &b->e[0].addr, b->e[0].id, RPC_EVICT, now))
		b->pinging = true;
}

/* A request to id failed. evict: it was the eviction ping. */
static void table_failed(struct dht *d, const uint8_t *id, bool evict, uint64_t sent)
{
	struct bucket *b = bucket_get(d, common_prefix(d->o.id, id), false);

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
static size_t table_closest(const struct dht *d, const uint8_t *key, const uint8_t *except,
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

static bool token_ok(const struct dht *d, const struct pn_dht_addr *a, const uint8_t tok[PN_DHT_TOKEN_BYTES],
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

static bool rate_ok(struct dht *d, const struct pn_dht_addr *a, uint64_t now)
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

static uint64_t batch_ms(uint32_t period)
{
	uint64_t g = period / BATCH_DIV;

	return g ? g : 1;
}

static void records_sweep(struct dht *d, uint64_t now)
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

static bool record_shape_ok(const struct pn_dht_record *r)
{
	if (r->kind == PN_DHT_REC_PROVIDER)
		return r->name_len == 0;
	if (r->kind == PN_DHT_REC_KEYWORD)
		return r->name_len >= 1 && r->name;
	return false;
}

static uint8_t store_record(struct dht *d, const uint8_t *key, const struct pn_dht_record *rec,
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

/* ---- look-ups ---- */

static int sl_find(const struct lookup *lk, const uint8_t *id)
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
	if (sl_find(lk, c->id) >= 0)
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

static void announce_stores(struct dht *d, struct lookup *lk, uint64_t now);

static void lookup_finish(struct dht *d, struct lookup *lk, uint64_t now)
{
	lk->finished = true;
	lk->stats.done_ms = now;
	lk->err = lk->any_answer ? 0 : PN_ENOTFOUND;
	lk->nresult = 0;
	for (uint32_t i = 0; i < lk->n && lk->nresult < DHT_K; i++)
		if (lk->sl[i].state == SL_ANSWERED)
			lk->result[lk->nresult++] = lk->sl[i].c;
	d->stats.lookups_done++;
	if (lk->purpose == LK_USER)
		d->n_finished++;
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
static void lookup_step(struct dht *d, struct lookup *lk, uint32_t slot, uint64_t now)
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
			r = send_request(d, PN_DHT_FIND_NODE, &e->c.addr, e->c.id, RPC_LOOKUP, now);
			if (r)
				memcpy(d->q[d->qlen - 1]->a.msg.u.target, lk->key, IDB);
		} else {
			r = send_request(d, PN_DHT_FIND_VALUE, &e->c.addr, e->c.id, RPC_LOOKUP, now);
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

static void lookup_free(struct dht *d, uint32_t slot)
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
static struct lookup *lookup_start(struct dht *d, uint8_t kind, const uint8_t *key, uint32_t want, uint8_t purpose,
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
	size_t n = table_closest(d, key, NULL, near, DHT_K);

	for (size_t i = 0; i < n; i++)
		sl_add(lk, &near[i], 1);
	struct bucket *b = bucket_get(d, common_prefix(d->o.id, key), false);

	if (b)
		b->touched = now;
	lookup_step(d, lk, slot, now);
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
	struct qact *qa = q_push(d, DHT_ACT_RECORD, r->name_len);

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

static void lookup_on_reply(struct dht *d, struct lookup *lk, uint32_t slot, const uint8_t *from_id,
			    const struct pn_dht_msg *m, uint64_t now)
{
	int at = sl_find(lk, from_id);

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

			if (r->kind != want_kind || !record_shape_ok(r) || !lookup_new_record(d, lk, r))
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
	lookup_step(d, lk, slot, now);
}

static struct lookup *lookup_by_handle(struct dht *d, uint32_t handle, uint32_t *slot)
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
		struct rpc *r = send_request(d, PN_DHT_STORE, &e->c.addr, e->c.id, RPC_STORE, now);

		if (!r)
			continue;
		struct qact *qa = d->q[d->qlen - 1];

		/* The block has no room for the name: point at a copy made now. */
		if (a->rec.name_len) {
			struct qact *big = realloc(qa, sizeof(*qa) + a->rec.name_len);

			if (!big) {
				d->qlen--;
				free(qa);
				rpc_release(d, r);
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

static void announces_run(struct dht *d, uint64_t now)
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
			struct lookup *lk = lookup_start(d, kind, a->key, 0, LK_ANNOUNCE, now);

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

static int announce_find(const struct dht *d, const uint8_t *key, uint8_t kind, const uint8_t *cid)
{
	for (uint32_t i = 0; i < d->nann; i++) {
		const struct announce *a = d->ann[i];

		if (a->rec.kind == kind && id_eq(a->key, key) && !memcmp(a->rec.cid, cid, PN_CID_BYTES))
			return (int)i;
	}
	return -1;
}

static void announce_drop(struct dht *d, uint32_t i)
{
	struct announce *a = d->ann[i];

	if (a->lk)
		a->lk->ann = NULL;
	d->ann[i] = d->ann[--d->nann];
	mem_free(d, a, sizeof(*a) + a->rec.name_len);
}

/* ---- requests from others ---- */

static void answer_values(struct dht *d, const struct pn_dht_addr *from, const uint8_t *from_id,
			  const struct pn_dht_msg *m, uint64_t now)
{
	struct pn_dht_contact near[DHT_K];
	size_t nnear = table_closest(d, m->u.find_value.key, from_id, near, DHT_K);
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
	struct qact *qa = q_push(d, DHT_ACT_SEND, names);

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

static void handle_request(struct dht *d, const struct pn_dht_addr *from, const uint8_t *from_id,
			   const struct pn_dht_msg *m, uint64_t now)
{
	d->stats.requests_received++;
	if (!rate_ok(d, from, now)) {
		d->stats.rate_limited++;
		return;
	}
	table_seen(d, from_id, from, now);
	if (m->type == PN_DHT_FIND_VALUE) {
		answer_values(d, from, from_id, m, now);
		return;
	}
	struct qact *qa = q_push(d, DHT_ACT_SEND, 0);

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
		out->u.nodes.n_nodes = (uint8_t)table_closest(d, m->u.target, from_id, out->u.nodes.nodes, DHT_K);
		break;
	default: { /* STORE */
		const struct pn_dht_record *rec = &m->u.store.record;
		uint8_t st;

		if (!record_shape_ok(rec))
			st = PN_DHT_STORE_INVALID;
		else if (!token_ok(d, from, m->u.store.token, now))
			st = PN_DHT_STORE_BAD_TOKEN;
		else if (!is_close(d, m->u.store.key))
			st = PN_DHT_STORE_NOT_CLOSE;
		else
			st = store_record(d, m->u.store.key, rec, from, now);
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
	lookup_start(d, DHT_LOOKUP_NODES, d->o.id, 0, LK_JOIN, now);
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

	rpc_release(d, &d->rpcs[slot]);
	d->stats.replies_received++;
	table_seen(d, from_id, from, now);
	if (r.purpose == RPC_EVICT) {
		struct bucket *b = bucket_get(d, common_prefix(d->o.id, r.id), false);

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
			lookup_on_reply(d, lk, r.lk_slot, from_id, m, now);
	}
}

static void rpc_timeout(struct dht *d, struct rpc *rp, uint64_t now)
{
	struct rpc r = *rp;

	rpc_release(d, rp);
	d->stats.timeouts++;
	if (r.id_known)
		table_failed(d, r.id, r.purpose == RPC_EVICT, r.sent);
	if (r.purpose != RPC_LOOKUP)
		return;
	struct lookup *lk = d->lk[r.lk_slot];

	if (!lk || lk->gen != r.lk_gen || lk->finished)
		return;
	int at = sl_find(lk, r.id);

	if (at >= 0 && lk->sl[at].state == SL_ASKED) {
		lk->sl[at].state = SL_FAILED;
		lk->inflight--;
	}
	lk->stats.timeouts++;
	lookup_step(d, lk, r.lk_slot, now);
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
		send_request(d, PN_DHT_PING, addr, NULL, RPC_PING, now);
}

void dht_add_contact(struct dht *d, const struct pn_dht_contact *c, uint64_t now)
{
	gc(d);
	if (c && addr_ok(&c->addr) && !id_eq(c->id, d->o.id))
		send_request(d, PN_DHT_PING, &c->addr, c->id, RPC_PING, now);
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
	struct lookup *lk = lookup_start(d, (uint8_t)kind, key, want, LK_USER, now);

	return lk ? (int)lk->handle : PN_ENOMEM;
}

void dht_lookup_cancel(struct dht *d, uint32_t handle)
{
	gc(d);
	uint32_t slot;
	struct lookup *lk = lookup_by_handle(d, handle, &slot);

	if (lk && !lk->delivered)
		lookup_free(d, slot); /* its requests in flight become orphans */
}

int dht_announce(struct dht *d, const uint8_t key[PN_DHT_KEY_BYTES], const struct pn_dht_record *rec, uint64_t now)
{
	gc(d);
	if (!key || !rec || !record_shape_ok(rec))
		return PN_EINVAL;
	int at = announce_find(d, key, rec->kind, rec->cid);

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
	announces_run(d, now);
	return 0;
}

void dht_unannounce(struct dht *d, const uint8_t key[PN_DHT_KEY_BYTES], uint8_t kind, const uint8_t cid[PN_CID_BYTES])
{
	gc(d);
	if (!key || !cid)
		return;
	int at = announce_find(d, key, kind, cid);

	if (at >= 0)
		announce_drop(d, (uint32_t)at);
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
		if (d->n_internal >= MAX_INTERNAL)
			continue;
		uint8_t target[IDB];

		for (size_t j = 0; j < IDB; j += 8) {
			uint64_t r = pn_prng_next(&d->prng);

			memcpy(target + j, &r, 8);
		}
		/* Keep the first i bits of our ID, flip bit i, random after. */
		for (unsigned bit = 0; bit <= i; bit++) {
			uint8_t mask = (uint8_t)(0x80 >> (bit % 8));
			bool one = (d->o.id[bit / 8] & mask) != 0;

			if (bit == i)
				one = !one;
			target[bit / 8] = (uint8_t)(one ? target[bit / 8] | mask : target[bit / 8] & ~mask);
		}
		lookup_start(d, DHT_LOOKUP_NODES, target, 0, LK_REFRESH, now);
	}
	if (now >= d->rec_sweep)
		records_sweep(d, now);
	announces_run(d, now);
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
