/* The directory core: nodes, their offers, providers per content ID, and
 * keyword search over names. Sans-I/O: see directory.h.
 *
 * Tables (all chained hash tables keyed with SipHash under a key derived
 * from opts.seed, so a peer that picks content IDs cannot aim at one chain):
 *
 *   nodes     node ID        -> struct dir_node
 *   contents  content ID     -> struct dir_content (name, providers array)
 *   offers    (node, content)-> struct dir_offer (one provider of one content)
 *   words     3-byte prefix  -> struct dir_word (the contents having a word
 *                               that starts with it: the search index)
 *
 * A node's offers form a doubly linked list; a content's providers are an
 * array (so dir_find can pick random ones) in which each offer knows its slot.
 * Nodes sit on an age list, oldest heartbeat first, so expiry is O(expired).
 * Nothing holds a pointer to freed memory: removing an offer removes the
 * content with its last provider, and the content takes its index postings.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include "proto/directory.h"
#include "proto/prng.h"
#include "util/text.h"
#include "wire/wire.h"

#define DEF_MAX_NODES 10000u
#define DEF_MAX_OFFERS_PER_NODE DIR_DEFAULT_OFFERS_PER_NODE
#define DEF_MAX_OFFERS DIR_DEFAULT_OFFERS
#define DEF_MAX_NODES_PER_SOURCE DIR_DEFAULT_NODES_PER_SOURCE
#define DEF_MAX_NODES_PER_BLOCK DIR_DEFAULT_NODES_PER_BLOCK
#define DEF_MAX_OFFERS_PER_SOURCE DIR_DEFAULT_OFFERS_PER_SOURCE
#define DEF_MAX_OFFERS_PER_BLOCK DIR_DEFAULT_OFFERS_PER_BLOCK
#define DEF_MAX_RESULTS 50u
_Static_assert(DEF_MAX_RESULTS <= PN_DIR_RESULTS_MAX, "a default answer fits one DIR_PROVIDERS / DIR_RESULTS");
#define DEF_NODE_TIMEOUT_MS 30000u

#define TABLE_MIN_BUCKETS 64u
#define ARRAY_MIN_CAP 4u

/* The search index keys each word of a name on its first PREFIX_LEN bytes
 * (ASCII lower-cased). Words shorter than that are not indexed; a query made
 * only of such short words scans every name. */
#define PREFIX_LEN 3u
/* Words of >= PREFIX_LEN bytes in a name, at most: each needs one separator. */
#define NAME_KEYS_MAX ((PN_NAME_MAX + 1) / (PREFIX_LEN + 1))

#define CID_WIRE_BYTES (PN_HASH_BYTES + 8)
#define NOT_LISTED SIZE_MAX

struct hlink {
	struct hlink *next;
	uint64_t hash;
};

struct table {
	struct hlink **buckets;
	size_t nbuckets; /* a power of two, or 0 before the first insert */
	size_t count;
};

struct dir_offer;
struct dir_word;

/* A source address or an address block: how many nodes registered from it
 * and how many offers those nodes hold. Gone when both are 0. */
struct dir_source {
	struct hlink link; /* first member: in d->sources */
	uint64_t key;
	uint32_t nodes, offers;
};

struct dir_node {
	struct hlink link; /* first member: in d->nodes */
	uint8_t id[PN_ID_BYTES];
	char addr[DIR_ADDR_MAX + 1];
	uint64_t last_seen;
	struct dir_node *older, *newer; /* the age list */
	struct dir_offer *offers;       /* this node's offers */
	uint32_t offer_count;
	struct dir_source *src, *block; /* where it registered from; NULL: not counted */
};

struct word_ref {
	struct dir_word *word;
	uint32_t pos; /* index in word->postings */
};

struct dir_content {
	struct hlink link; /* first member: in d->contents */
	struct pn_cid cid;
	struct dir_offer **providers;
	uint32_t provider_count, provider_cap;
	size_t slot; /* index in d->content_list, or NOT_LISTED */
	struct word_ref *refs; /* one per index key of the name; same allocation */
	uint32_t nrefs;
	size_t name_len;
	char *name; /* the first name offered, NUL-terminated; same allocation */
};

struct dir_offer {
	struct hlink link; /* first member: in d->offers */
	struct dir_node *node;
	struct dir_content *content;
	struct dir_offer *prev, *next; /* the node's offers */
	uint32_t provider_slot;        /* index in content->providers */
};

struct posting {
	struct dir_content *content;
	uint32_t ref; /* index in content->refs */
};

struct dir_word {
	struct hlink link; /* first member: in d->words */
	uint32_t key;
	struct posting *postings;
	uint32_t count, cap;
};

struct dir {
	struct dir_opts opts;
	struct pn_prng rng;
	uint64_t hash_key[2];
	struct table nodes, contents, offers, words, sources;
	struct dir_node *oldest, *newest;
	struct dir_content **content_list; /* every content, for scans */
	size_t content_cap;
	struct dir_content **top; /* dir_search's best so far, max_results entries */
	uint32_t *pick;           /* dir_find's chosen indices, max_results entries */
};

/* ---- randomness and hashing ---- */

/* Uniform in [0, bound), bound > 0: draws below 2^64 mod bound are biased
 * and rejected. (Not pn_prng_below, which rejects the top of the range: the
 * same seed keeps giving the answers it gave before.) */
static uint32_t rng_below(struct dir *d, uint32_t bound)
{
	uint64_t biased = (0 - (uint64_t)bound) % bound;
	uint64_t x;

	do {
		x = pn_prng_next(&d->rng);
	} while (x < biased);
	return (uint32_t)(x % bound);
}

static inline uint64_t rotl(uint64_t x, int b)
{
	return (x << b) | (x >> (64 - b));
}

static inline uint64_t load_le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

#define SIPROUND(v0, v1, v2, v3)                                                            \
	do {                                                                                \
		v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32);                   \
		v2 += v3; v3 = rotl(v3, 16); v3 ^= v2;                                      \
		v0 += v3; v3 = rotl(v3, 21); v3 ^= v0;                                      \
		v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32);                   \
	} while (0)

/* SipHash-2-4 of p[0..len) under key k. */
static uint64_t siphash(const uint64_t k[2], const uint8_t *p, size_t len)
{
	uint64_t v0 = k[0] ^ 0x736f6d6570736575ull, v1 = k[1] ^ 0x646f72616e646f6dull;
	uint64_t v2 = k[0] ^ 0x6c7967656e657261ull, v3 = k[1] ^ 0x7465646279746573ull;
	uint64_t m, last = (uint64_t)len << 56;
	size_t whole = len & ~(size_t)7;

	for (size_t i = 0; i < whole; i += 8) {
		m = load_le64(p + i);
		v3 ^= m;
		SIPROUND(v0, v1, v2, v3);
		SIPROUND(v0, v1, v2, v3);
		v0 ^= m;
	}
	for (size_t i = whole; i < len; i++)
		last |= (uint64_t)p[i] << (8 * (i - whole));
	v3 ^= last;
	SIPROUND(v0, v1, v2, v3);
	SIPROUND(v0, v1, v2, v3);
	v0 ^= last;
	v2 ^= 0xff;
	for (int i = 0; i < 4; i++)
		SIPROUND(v0, v1, v2, v3);
	return v0 ^ v1 ^ v2 ^ v3;
}

static uint64_t hash_node_id(const struct dir *d, const uint8_t id[PN_ID_BYTES])
{
	return siphash(d->hash_key, id, PN_ID_BYTES);
}

static uint64_t hash_cid(const struct dir *d, const struct pn_cid *cid)
{
	uint8_t wire[CID_WIRE_BYTES];

	memcpy(wire, cid->root, PN_HASH_BYTES);
	for (int i = 0; i < 8; i++)
		wire[PN_HASH_BYTES + i] = (uint8_t)(cid->size >> (56 - 8 * i));
	return siphash(d->hash_key, wire, sizeof(wire));
}

static uint64_t hash_pair(const struct dir *d, uint64_t a, uint64_t b)
{
	uint8_t both[16];

	for (int i = 0; i < 8; i++) {
		both[i] = (uint8_t)(a >> (8 * i));
		both[8 + i] = (uint8_t)(b >> (8 * i));
	}
	return siphash(d->hash_key, both, sizeof(both));
}

static uint64_t hash_word_key(const struct dir *d, uint32_t key)
{
	uint8_t k[4] = { (uint8_t)(key >> 24), (uint8_t)(key >> 16), (uint8_t)(key >> 8), (uint8_t)key };

	return siphash(d->hash_key, k, sizeof(k));
}

/* ---- chained hash table over struct hlink ---- */

static struct hlink *table_chain(const struct table *t, uint64_t hash)
{
	return t->nbuckets ? t->buckets[hash & (t->nbuckets - 1)] : NULL;
}

/* Doubles the bucket array. A failed allocation keeps the old one (chains
 * just grow longer), so inserting never fails once the first array exists. */
static void table_grow(struct table *t)
{
	size_t n = t->nbuckets ? t->nbuckets * 2 : TABLE_MIN_BUCKETS;
	struct hlink **b = calloc(n, sizeof(*b));

	if (!b)
		return;
	for (size_t i = 0; i < t->nbuckets; i++) {
		struct hlink *l = t->buckets[i], *next;

		for (; l; l = next) {
			next = l->next;
			l->next = b[l->hash & (n - 1)];
			b[l->hash & (n - 1)] = l;
		}
	}
	free(t->buckets);
	t->buckets = b;
	t->nbuckets = n;
}

/* 0, or PN_ENOMEM when even the first bucket array cannot be had. */
static int table_insert(struct table *t, struct hlink *l)
{
	if (t->count >= t->nbuckets)
		table_grow(t);
	if (!t->nbuckets)
		return PN_ENOMEM;
	struct hlink **head = &t->buckets[l->hash & (t->nbuckets - 1)];

	l->next = *head;
	*head = l;
	t->count++;
	return 0;
}

static void table_remove(struct table *t, struct hlink *l)
{
	struct hlink **p = &t->buckets[l->hash & (t->nbuckets - 1)];

	while (*p != l)
		p = &(*p)->next;
	*p = l->next;
	t->count--;
}

/* ---- lookups ---- */

static struct dir_node *node_find(const struct dir *d, const uint8_t id[PN_ID_BYTES])
{
	uint64_t h = hash_node_id(d, id);

	for (struct hlink *l = table_chain(&d->nodes, h); l; l = l->next) {
		struct dir_node *n = (struct dir_node *)l;

		if (l->hash == h && memcmp(n->id, id, PN_ID_BYTES) == 0)
			return n;
	}
	return NULL;
}

static struct dir_content *content_find(const struct dir *d, const struct pn_cid *cid)
{
	uint64_t h = hash_cid(d, cid);

	for (struct hlink *l = table_chain(&d->contents, h); l; l = l->next) {
		struct dir_content *c = (struct dir_content *)l;

		if (l->hash == h && c->cid.size == cid->size && memcmp(c->cid.root, cid->root, PN_HASH_BYTES) == 0)
			return c;
	}
	return NULL;
}

static struct dir_offer *offer_find(const struct dir *d, const struct dir_node *n, const struct dir_content *c)
{
	uint64_t h = hash_pair(d, n->link.hash, c->link.hash);

	for (struct hlink *l = table_chain(&d->offers, h); l; l = l->next) {
		struct dir_offer *o = (struct dir_offer *)l;

		if (o->node == n && o->content == c)
			return o;
	}
	return NULL;
}

static struct dir_word *word_find(const struct dir *d, uint32_t key)
{
	uint64_t h = hash_word_key(d, key);

	for (struct hlink *l = table_chain(&d->words, h); l; l = l->next) {
		struct dir_word *w = (struct dir_word *)l;

		if (w->key == key)
			return w;
	}
	return NULL;
}

/* ---- words ---- */

/* Words and case follow the one keyword rule in util/text.h. */
#define is_word_byte pn_word_byte
#define ascii_lower pn_ascii_lower

static uint32_t prefix_key(const uint8_t *word)
{
	return (uint32_t)ascii_lower(word[0]) << 16 | (uint32_t)ascii_lower(word[1]) << 8 | ascii_lower(word[2]);
}

/* The distinct index keys of a name, in order of first appearance; returns how many. */
static uint32_t name_keys(const char *name, size_t len, uint32_t keys[NAME_KEYS_MAX])
{
	const uint8_t *s = (const uint8_t *)name;
	uint32_t n = 0;
	size_t i = 0;

	while (i < len) {
		if (!is_word_byte(s[i])) {
			i++;
			continue;
		}
		size_t start = i;

		while (i < len && is_word_byte(s[i]))
			i++;
		if (i - start < PREFIX_LEN)
			continue;
		uint32_t key = prefix_key(s + start);
		uint32_t j = 0;

		while (j < n && keys[j] != key)
			j++;
		if (j == n)
			keys[n++] = key;
	}
	return n;
}

/* Removes content c's posting number ref from its word, and the word when it
 * has no posting left. The last posting moves into the hole. */
static void posting_remove(struct dir *d, struct dir_content *c, uint32_t ref)
{
	struct dir_word *w = c->refs[ref].word;
	uint32_t pos = c->refs[ref].pos;

	w->postings[pos] = w->postings[--w->count];
	if (pos < w->count) {
		struct posting *moved = &w->postings[pos];

		moved->content->refs[moved->ref].pos = pos;
	}
	if (w->count == 0) {
		table_remove(&d->words, &w->link);
		free(w->postings);
		free(w);
	}
}

/* Adds c to the posting list of key, as c->refs[c->nrefs]. 0 or PN_ENOMEM. */
static int posting_add(struct dir *d, struct dir_content *c, uint32_t key)
{
	struct dir_word *w = word_find(d, key);
	bool created = false;

	if (!w) {
		w = calloc(1, sizeof(*w));
		if (!w)
			return PN_ENOMEM;
		w->key = key;
		w->link.hash = hash_word_key(d, key);
		if (table_insert(&d->words, &w->link) != 0) {
			free(w);
			return PN_ENOMEM;
		}
		created = true;
	}
	if (w->count == w->cap) {
		uint32_t cap = w->cap ? w->cap * 2 : ARRAY_MIN_CAP;
		struct posting *p = realloc(w->postings, cap * sizeof(*p));

		if (!p) {
			if (created) {
				table_remove(&d->words, &w->link);
				free(w);
			}
			return PN_ENOMEM;
		}
		w->postings = p;
		w->cap = cap;
	}
	w->postings[w->count] = (struct posting){ .content = c, .ref = c->nrefs };
	c->refs[c->nrefs] = (struct word_ref){ .word = w, .pos = w->count };
	w->count++;
	c->nrefs++;
	return 0;
}

/* ---- contents ---- */

/* Takes c out of every table and frees it; c may be half built (see content_new). */
static void content_destroy(struct dir *d, struct dir_content *c)
{
	while (c->nrefs > 0)
		posting_remove(d, c, --c->nrefs);
	if (c->slot != NOT_LISTED) {
		size_t last = d->contents.count - 1;

		d->content_list[c->slot] = d->content_list[last];
		d->content_list[c->slot]->slot = c->slot;
		table_remove(&d->contents, &c->link);
	}
	free(c->providers);
	free(c);
}

/* A new content with no provider yet, in every table. NULL when out of memory. */
static struct dir_content *content_new(struct dir *d, const struct pn_cid *cid, const char *name, size_t name_len)
{
	uint32_t keys[NAME_KEYS_MAX];
	uint32_t nkeys = name_keys(name, name_len, keys);
	struct dir_content *c = calloc(1, sizeof(*c) + nkeys * sizeof(struct word_ref) + name_len + 1);

	if (!c)
		return NULL;
	c->refs = (struct word_ref *)(c + 1);
	c->name = (char *)(c->refs + nkeys);
	c->cid = *cid;
	c->link.hash = hash_cid(d, cid);
	c->slot = NOT_LISTED;
	c->name_len = name_len;
	memcpy(c->name, name, name_len);
	for (uint32_t i = 0; i < nkeys; i++)
		if (posting_add(d, c, keys[i]) != 0)
			goto fail;
	if (d->contents.count == d->content_cap) {
		size_t cap = d->content_cap ? d->content_cap * 2 : TABLE_MIN_BUCKETS;
		struct dir_content **list = realloc(d->content_list, cap * sizeof(*list));

		if (!list)
			goto fail;
		d->content_list = list;
		d->content_cap = cap;
	}
	if (table_insert(&d->contents, &c->link) != 0)
		goto fail;
	c->slot = d->contents.count - 1;
	d->content_list[c->slot] = c;
	return c;
fail:
	content_destroy(d, c);
	return NULL;
}

/* ---- offers and nodes ---- */

/* Links a new offer of n for c. 0 or PN_ENOMEM (nothing changed then). */
static int offer_add(struct dir *d, struct dir_node *n, struct dir_content *c)
{
	struct dir_offer *o;

	if (c->provider_count == c->provider_cap) {
		uint32_t cap = c->provider_cap ? c->provider_cap * 2 : ARRAY_MIN_CAP;
		struct dir_offer **p = realloc(c->providers, cap * sizeof(*p));

		if (!p)
			return PN_ENOMEM;
		c->providers = p;
		c->provider_cap = cap;
	}
	o = calloc(1, sizeof(*o));
	if (!o)
		return PN_ENOMEM;
	o->node = n;
	o->content = c;
	o->link.hash = hash_pair(d, n->link.hash, c->link.hash);
	if (table_insert(&d->offers, &o->link) != 0) {
		free(o);
		return PN_ENOMEM;
	}
	o->provider_slot = c->provider_count;
	c->providers[c->provider_count++] = o;
	o->next = n->offers;
	if (n->offers)
		n->offers->prev = o;
	n->offers = o;
	n->offer_count++;
	if (n->src)
		n->src->offers++;
	if (n->block)
		n->block->offers++;
	return 0;
}

/* Unlinks and frees o, and its content if o was the last provider. */
static void offer_remove(struct dir *d, struct dir_offer *o)
{
	struct dir_content *c = o->content;
	struct dir_node *n = o->node;

	c->providers[o->provider_slot] = c->providers[--c->provider_count];
	c->providers[o->provider_slot]->provider_slot = o->provider_slot;
	if (o->prev)
		o->prev->next = o->next;
	else
		n->offers = o->next;
	if (o->next)
		o->next->prev = o->prev;
	n->offer_count--;
	if (n->src)
		n->src->offers--;
	if (n->block)
		n->block->offers--;
	table_remove(&d->offers, &o->link);
	free(o);
	if (c->provider_count == 0)
		content_destroy(d, c);
}

static void age_unlink(struct dir *d, struct dir_node *n)
{
	if (n->older)
		n->older->newer = n->newer;
	else
		d->oldest = n->newer;
	if (n->newer)
		n->newer->older = n->older;
	else
		d->newest = n->older;
	n->older = n->newer = NULL;
}

/* Marks n alive at now and moves it to the young end of the age list. A
 * clock that goes backwards is clamped so that the list stays sorted. */
static void node_touch(struct dir *d, struct dir_node *n, uint64_t now)
{
	if (n->older || n->newer || d->oldest == n)
		age_unlink(d, n);
	if (d->newest && d->newest->last_seen > now)
		now = d->newest->last_seen;
	n->last_seen = now;
	n->older = d->newest;
	n->newer = NULL;
	if (d->newest)
		d->newest->newer = n;
	else
		d->oldest = n;
	d->newest = n;
}

static uint64_t hash_source(const struct dir *d, uint64_t key)
{
	uint8_t b[8];
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(key >> (8 * i));
	return siphash(d->hash_key, b, sizeof b);
}

static struct dir_source *source_find(const struct dir *d, uint64_t key)
{
	uint64_t h = hash_source(d, key);
	for (struct hlink *l = table_chain(&d->sources, h); l; l = l->next)
		if (l->hash == h && ((struct dir_source *)l)->key == key)
			return (struct dir_source *)l;
	return NULL;
}

/* The source with this key, made if need be; NULL for key 0 (not counted) or out of memory. */
static struct dir_source *source_get(struct dir *d, uint64_t key)
{
	if (!key)
		return NULL;
	struct dir_source *s = source_find(d, key);
	if (s)
		return s;
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->key = key;
	s->link.hash = hash_source(d, key);
	if (table_insert(&d->sources, &s->link) != 0) {
		free(s);
		return NULL;
	}
	return s;
}

static void source_put(struct dir *d, struct dir_source *s)
{
	if (s && !s->nodes && !s->offers) {
		table_remove(&d->sources, &s->link);
		free(s);
	}
}

static void node_remove(struct dir *d, struct dir_node *n)
{
	while (n->offers)
		offer_remove(d, n->offers);
	if (n->src) {
		n->src->nodes--;
		source_put(d, n->src);
	}
	if (n->block) {
		n->block->nodes--;
		source_put(d, n->block);
	}
	age_unlink(d, n);
	table_remove(&d->nodes, &n->link);
	free(n);
}

/* When a node seen last at last_seen is dropped (saturating). */
static uint64_t node_deadline(const struct dir *d, const struct dir_node *n)
{
	uint64_t t = d->opts.node_timeout_ms;

	return n->last_seen > UINT64_MAX - t ? UINT64_MAX : n->last_seen + t;
}

/* Drops every node whose deadline is <= now; returns how many. */
static size_t expire(struct dir *d, uint64_t now)
{
	size_t dropped = 0;

	while (d->oldest && node_deadline(d, d->oldest) <= now) {
		node_remove(d, d->oldest);
		dropped++;
	}
	return dropped;
}

/* Non-empty, at most DIR_ADDR_MAX bytes of printable ASCII without spaces. */
static bool addr_valid(const char *addr)
{
	size_t i;

	if (!addr)
		return false;
	for (i = 0; i <= DIR_ADDR_MAX && addr[i]; i++)
		if ((uint8_t)addr[i] <= ' ' || (uint8_t)addr[i] > '~')
			return false;
	return i > 0 && i <= DIR_ADDR_MAX && !addr[i];
}

/* ---- public ---- */

struct dir *dir_new(const struct dir_opts *opts)
{
	struct dir *d = calloc(1, sizeof(*d));
	struct pn_prng key_state;

	if (!d)
		return NULL;
	if (opts)
		d->opts = *opts;
	if (!d->opts.max_nodes)
		d->opts.max_nodes = DEF_MAX_NODES;
	if (!d->opts.max_offers_per_node)
		d->opts.max_offers_per_node = DEF_MAX_OFFERS_PER_NODE;
	if (!d->opts.max_offers)
		d->opts.max_offers = DEF_MAX_OFFERS;
	if (!d->opts.max_results)
		d->opts.max_results = DEF_MAX_RESULTS;
	if (!d->opts.max_nodes_per_source)
		d->opts.max_nodes_per_source = DEF_MAX_NODES_PER_SOURCE;
	if (!d->opts.max_nodes_per_block)
		d->opts.max_nodes_per_block = DEF_MAX_NODES_PER_BLOCK;
	if (!d->opts.max_offers_per_source)
		d->opts.max_offers_per_source = DEF_MAX_OFFERS_PER_SOURCE;
	if (!d->opts.max_offers_per_block)
		d->opts.max_offers_per_block = DEF_MAX_OFFERS_PER_BLOCK;
	if (!d->opts.node_timeout_ms)
		d->opts.node_timeout_ms = DEF_NODE_TIMEOUT_MS;
	pn_prng_seed(&d->rng, d->opts.seed);
	pn_prng_seed(&key_state, d->opts.seed ^ 0x5a17c0ffee5eed00ull);
	d->hash_key[0] = pn_prng_next(&key_state);
	d->hash_key[1] = pn_prng_next(&key_state);
	d->top = calloc(d->opts.max_results, sizeof(*d->top));
	d->pick = calloc(d->opts.max_results, sizeof(*d->pick));
	if (!d->top || !d->pick) {
		dir_free(d);
		return NULL;
	}
	return d;
}

void dir_free(struct dir *d)
{
	if (!d)
		return;
	while (d->oldest)
		node_remove(d, d->oldest);
	free(d->nodes.buckets);
	free(d->contents.buckets);
	free(d->offers.buckets);
	free(d->words.buckets);
	free(d->sources.buckets);
	free(d->content_list);
	free(d->top);
	free(d->pick);
	free(d);
}

int dir_register(struct dir *d, const uint8_t node_id[PN_ID_BYTES], const char *addr, uint64_t now)
{
	return dir_register_from(d, node_id, addr, 0, 0, now);
}

int dir_register_from(struct dir *d, const uint8_t node_id[PN_ID_BYTES], const char *addr, uint64_t source,
		      uint64_t block, uint64_t now)
{
	struct dir_node *n;

	if (!addr_valid(addr))
		return PN_EINVAL;
	expire(d, now);
	n = node_find(d, node_id);
	if (n && ((n->src ? n->src->key : 0) != source || (n->block ? n->block->key : 0) != block)) {
		node_remove(d, n); /* it moved: count it (and its offers) where it is now */
		n = NULL;
	}
	if (!n) {
		if (d->nodes.count >= d->opts.max_nodes)
			return PN_ELIMIT;
		struct dir_source *src = source_find(d, source), *blk = source_find(d, block);
		if ((source && src && src->nodes >= d->opts.max_nodes_per_source) ||
		    (block && blk && blk->nodes >= d->opts.max_nodes_per_block))
			return PN_ELIMIT;
		n = calloc(1, sizeof(*n));
		if (!n)
			return PN_ENOMEM;
		memcpy(n->id, node_id, PN_ID_BYTES);
		n->link.hash = hash_node_id(d, node_id);
		n->src = source_get(d, source);
		n->block = source_get(d, block);
		if ((source && !n->src) || (block && !n->block) || table_insert(&d->nodes, &n->link) != 0) {
			source_put(d, n->src);
			source_put(d, n->block);
			free(n);
			return PN_ENOMEM;
		}
		if (n->src)
			n->src->nodes++;
		if (n->block)
			n->block->nodes++;
		n->older = n->newer = NULL;
	}
	strcpy(n->addr, addr);
	node_touch(d, n, now);
	return 0;
}

int dir_heartbeat(struct dir *d, const uint8_t node_id[PN_ID_BYTES], uint64_t now)
{
	struct dir_node *n;

	expire(d, now);
	n = node_find(d, node_id);
	if (!n)
		return PN_ENOTFOUND;
	node_touch(d, n, now);
	return 0;
}

void dir_unregister(struct dir *d, const uint8_t node_id[PN_ID_BYTES])
{
	struct dir_node *n = node_find(d, node_id);

	if (n)
		node_remove(d, n);
}

int dir_offer(struct dir *d, const uint8_t node_id[PN_ID_BYTES], const struct pn_cid *cid, const char *name,
	      uint64_t now)
{
	struct dir_node *n;
	struct dir_content *c;
	bool created = false;
	size_t name_len;

	if (!name || !cid)
		return PN_EINVAL;
	name_len = strnlen(name, PN_NAME_MAX + 1);
	if (!pn_name_valid(name, name_len))
		return PN_EINVAL;
	expire(d, now);
	n = node_find(d, node_id);
	if (!n)
		return PN_ENOTFOUND;
	node_touch(d, n, now);
	c = content_find(d, cid);
	if (c && offer_find(d, n, c))
		return 0;
	if (n->offer_count >= d->opts.max_offers_per_node || d->offers.count >= d->opts.max_offers ||
	    (n->src && n->src->offers >= d->opts.max_offers_per_source) ||
	    (n->block && n->block->offers >= d->opts.max_offers_per_block))
		return PN_ELIMIT;
	if (!c) {
		c = content_new(d, cid, name, name_len);
		if (!c)
			return PN_ENOMEM;
		created = true;
	}
	if (offer_add(d, n, c) != 0) {
		if (created)
			content_destroy(d, c);
		return PN_ENOMEM;
	}
	return 0;
}

void dir_withdraw(struct dir *d, const uint8_t node_id[PN_ID_BYTES], const struct pn_cid *cid)
{
	struct dir_node *n = node_find(d, node_id);
	struct dir_content *c = n ? content_find(d, cid) : NULL;
	struct dir_offer *o = c ? offer_find(d, n, c) : NULL;

	if (o)
		offer_remove(d, o);
}

static void provider_copy(struct dir_provider *out, const struct dir_offer *o)
{
	memcpy(out->node_id, o->node->id, PN_ID_BYTES);
	memcpy(out->addr, o->node->addr, sizeof(out->addr));
}

/* Picks k distinct indices uniformly from [0, n) into out (in a random order).
 * Floyd's algorithm costs O(k^2), selection sampling O(n): the cheaper one runs. */
static void pick_subset(struct dir *d, uint32_t n, uint32_t k, uint32_t *out)
{
	uint32_t count = 0;

	if ((uint64_t)k * k <= n) {
		for (uint32_t j = n - k; j < n; j++) {
			uint32_t t = rng_below(d, j + 1);

			for (uint32_t i = 0; i < count; i++)
				if (out[i] == t) {
					t = j;
					break;
				}
			out[count++] = t;
		}
	} else {
		for (uint32_t i = 0; i < n && count < k; i++)
			if (rng_below(d, n - i) < k - count)
				out[count++] = i;
	}
	for (uint32_t i = k - 1; i > 0; i--) {
		uint32_t j = rng_below(d, i + 1), t = out[i];

		out[i] = out[j];
		out[j] = t;
	}
}

size_t dir_find(struct dir *d, const struct pn_cid *cid, const uint8_t *exclude, struct dir_provider *out,
		size_t max, uint32_t *total)
{
	struct dir_content *c = content_find(d, cid);
	uint32_t skip = UINT32_MAX, n, k;

	if (total)
		*total = 0;
	if (!c)
		return 0;
	n = c->provider_count;
	if (exclude) {
		struct dir_node *asker = node_find(d, exclude);
		struct dir_offer *o = asker ? offer_find(d, asker, c) : NULL;

		if (o) {
			skip = o->provider_slot;
			n--;
		}
	}
	if (total)
		*total = n;
	k = n;
	if (k > d->opts.max_results)
		k = d->opts.max_results;
	if (k > max)
		k = (uint32_t)max;
	if (k == n) {
		uint32_t written = 0;

		for (uint32_t i = 0; i < c->provider_count; i++)
			if (i != skip)
				provider_copy(&out[written++], c->providers[i]);
		return written;
	}
	if (k == 0)
		return 0;
	pick_subset(d, n, k, d->pick);
	for (uint32_t i = 0; i < k; i++) {
		uint32_t slot = d->pick[i] >= skip ? d->pick[i] + 1 : d->pick[i];

		provider_copy(&out[i], c->providers[slot]);
	}
	return k;
}

/* Search order: more providers first, then name bytewise, then content ID. */
static bool ranks_before(const struct dir_content *a, const struct dir_content *b)
{
	int cmp;

	if (a->provider_count != b->provider_count)
		return a->provider_count > b->provider_count;
	cmp = strcmp(a->name, b->name);
	if (cmp)
		return cmp < 0;
	cmp = memcmp(a->cid.root, b->cid.root, PN_HASH_BYTES);
	if (cmp)
		return cmp < 0;
	return a->cid.size < b->cid.size;
}

/* Keeps d->top[0..*count) the best `cap` contents seen, best first. */
static void top_offer(struct dir *d, struct dir_content *c, size_t *count, size_t cap)
{
	size_t pos;

	if (*count == cap && !ranks_before(c, d->top[cap - 1]))
		return;
	pos = *count < cap ? (*count)++ : cap - 1;
	while (pos > 0 && ranks_before(c, d->top[pos - 1])) {
		d->top[pos] = d->top[pos - 1];
		pos--;
	}
	d->top[pos] = c;
}

struct query {
	uint8_t text[DIR_QUERY_MAX + 1]; /* the query, lower-cased */
	size_t start[DIR_WORDS_MAX], len[DIR_WORDS_MAX];
	size_t nwords;
};

/* Splits and lower-cases a query. 0, or PN_EINVAL when it is empty, longer
 * than DIR_QUERY_MAX, has no word or more than DIR_WORDS_MAX words. */
static int query_parse(const char *query, struct query *q)
{
	size_t len = query ? strnlen(query, DIR_QUERY_MAX + 1) : 0;
	size_t i = 0;

	if (len == 0 || len > DIR_QUERY_MAX)
		return PN_EINVAL;
	q->nwords = 0;
	for (size_t j = 0; j < len; j++)
		q->text[j] = ascii_lower((uint8_t)query[j]);
	while (i < len) {
		if (!is_word_byte(q->text[i])) {
			i++;
			continue;
		}
		if (q->nwords == DIR_WORDS_MAX)
			return PN_EINVAL;
		q->start[q->nwords] = i;
		while (i < len && is_word_byte(q->text[i]))
			i++;
		q->len[q->nwords] = i - q->start[q->nwords];
		q->nwords++;
	}
	return q->nwords ? 0 : PN_EINVAL;
}

static bool content_matches(const struct dir_content *c, const struct query *q)
{
	for (size_t i = 0; i < q->nwords; i++)
		if (!pn_name_has_word_prefix(c->name, c->name_len, (const char *)q->text + q->start[i], q->len[i]))
			return false;
	return true;
}

/* Matching rule: every query word must be a prefix of some word of the name
 * (a whole word is its own prefix), so "quart rep" finds "Quarterly Report".
 * Candidates come from the index entry of the query word with the fewest
 * contents; when no query word is PREFIX_LEN bytes long, every name is scanned. */
int dir_search(struct dir *d, const char *query, struct dir_result *out, size_t max)
{
	struct query q;
	struct dir_word *driver = NULL;
	size_t cap = d->opts.max_results < max ? d->opts.max_results : max, count = 0;

	if (query_parse(query, &q) != 0)
		return PN_EINVAL;
	for (size_t i = 0; i < q.nwords; i++) {
		if (q.len[i] < PREFIX_LEN)
			continue;
		struct dir_word *w = word_find(d, prefix_key(q.text + q.start[i]));

		if (!w)
			return 0;
		if (!driver || w->count < driver->count)
			driver = w;
	}
	if (cap == 0)
		return 0;
	if (driver) {
		for (uint32_t i = 0; i < driver->count; i++)
			if (content_matches(driver->postings[i].content, &q))
				top_offer(d, driver->postings[i].content, &count, cap);
	} else {
		for (size_t i = 0; i < d->contents.count; i++)
			if (content_matches(d->content_list[i], &q))
				top_offer(d, d->content_list[i], &count, cap);
	}
	for (size_t i = 0; i < count; i++) {
		out[i].cid = d->top[i]->cid;
		memcpy(out[i].name, d->top[i]->name, d->top[i]->name_len + 1);
		out[i].providers = d->top[i]->provider_count;
	}
	return (int)count;
}

size_t dir_tick(struct dir *d, uint64_t now)
{
	return expire(d, now);
}

uint64_t dir_next_wakeup(const struct dir *d)
{
	return d->oldest ? node_deadline(d, d->oldest) : UINT64_MAX;
}

size_t dir_node_count(const struct dir *d)
{
	return d->nodes.count;
}

size_t dir_content_count(const struct dir *d)
{
	return d->contents.count;
}

size_t dir_offer_count(const struct dir *d)
{
	return d->offers.count;
}

/* ---- self-check ---- */

static int check_content(const struct dir *d, const struct dir_content *c, size_t slot)
{
	uint32_t keys[NAME_KEYS_MAX];

	if (c->slot != slot || content_find(d, &c->cid) != c || c->provider_count == 0 ||
	    c->provider_count > c->provider_cap || c->name[c->name_len] != '\0' ||
	    !pn_name_valid(c->name, c->name_len))
		return PN_ECORRUPT;
	for (uint32_t i = 0; i < c->provider_count; i++) {
		const struct dir_offer *o = c->providers[i];

		if (o->content != c || o->provider_slot != i || offer_find(d, o->node, c) != o)
			return PN_ECORRUPT;
	}
	if (name_keys(c->name, c->name_len, keys) != c->nrefs)
		return PN_ECORRUPT;
	for (uint32_t i = 0; i < c->nrefs; i++) {
		const struct word_ref *r = &c->refs[i];

		if (r->word->key != keys[i] || word_find(d, keys[i]) != r->word || r->pos >= r->word->count ||
		    r->word->postings[r->pos].content != c || r->word->postings[r->pos].ref != i)
			return PN_ECORRUPT;
	}
	return 0;
}

int dir_check(const struct dir *d)
{
	size_t nodes = 0, offers = 0, refs = 0, postings = 0;

	for (const struct dir_node *n = d->oldest; n; n = n->newer) {
		uint32_t count = 0;

		if ((n->newer ? n->newer->older : d->newest) != n || (n->newer && n->newer->last_seen < n->last_seen) ||
		    node_find(d, n->id) != n || !addr_valid(n->addr))
			return PN_ECORRUPT;
		for (const struct dir_offer *o = n->offers; o; o = o->next) {
			if (o->node != n || (o->next && o->next->prev != o) ||
			    o->provider_slot >= o->content->provider_count ||
			    o->content->providers[o->provider_slot] != o)
				return PN_ECORRUPT;
			count++;
		}
		if (count != n->offer_count || count > d->opts.max_offers_per_node)
			return PN_ECORRUPT;
		offers += count;
		nodes++;
	}
	if (nodes != d->nodes.count || nodes > d->opts.max_nodes || offers != d->offers.count ||
	    offers > d->opts.max_offers || d->contents.count > offers)
		return PN_ECORRUPT;
	for (size_t i = 0; i < d->contents.count; i++) {
		if (check_content(d, d->content_list[i], i) != 0)
			return PN_ECORRUPT;
		refs += d->content_list[i]->nrefs;
	}
	for (size_t b = 0; b < d->words.nbuckets; b++)
		for (const struct hlink *l = d->words.buckets[b]; l; l = l->next) {
			const struct dir_word *w = (const struct dir_word *)l;

			if (w->count == 0)
				return PN_ECORRUPT;
			postings += w->count;
		}
	/* Every source's counts are its nodes' and their offers', within the caps. */
	for (size_t b = 0; b < d->sources.nbuckets; b++)
		for (const struct hlink *l = d->sources.buckets[b]; l; l = l->next) {
			const struct dir_source *src = (const struct dir_source *)l;
			uint32_t snodes = 0, soffers = 0;
			bool is_block = false;

			for (const struct dir_node *n = d->oldest; n; n = n->newer)
				if (n->src == src || n->block == src) {
					is_block |= n->block == src;
					snodes++;
					soffers += n->offer_count;
				}
			if (!snodes || snodes != src->nodes || soffers != src->offers || source_find(d, src->key) != src ||
			    snodes > (is_block ? d->opts.max_nodes_per_block : d->opts.max_nodes_per_source) ||
			    soffers > (is_block ? d->opts.max_offers_per_block : d->opts.max_offers_per_source))
				return PN_ECORRUPT;
		}
	return postings == refs ? 0 : PN_ECORRUPT;
}
