/* Per-source connection counts and the admission decision. See conn_limit.h. */
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include "net/conn_limit.h"

_Static_assert((PN_ADDR_TABLE_BUCKETS & (PN_ADDR_TABLE_BUCKETS - 1)) == 0, "buckets: a power of two");

bool pn_addr_key_from(const struct sockaddr *sa, struct pn_addr_key *key)
{
	memset(key, 0, sizeof *key);
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *v4 = (const struct sockaddr_in *)sa;
		key->family = AF_INET;
		memcpy(key->bytes, &v4->sin_addr, 4);
		return true;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)sa;
		const uint8_t *a = v6->sin6_addr.s6_addr;
		static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
		if (!memcmp(a, mapped, sizeof mapped)) {
			key->family = AF_INET;
			memcpy(key->bytes, a + 12, 4);
		} else {
			key->family = AF_INET6;
			memcpy(key->bytes, a, PN_ADDR_V6_PREFIX_BYTES);
		}
		return true;
	}
	return false;
}

/* A keyed mix of the 17 key bytes (splitmix64 steps): good enough spread for
 * a table whose keys a remote party picks only from the addresses it holds. */
static size_t key_bucket(const struct pn_addr_table *t, const struct pn_addr_key *key)
{
	uint64_t h = t->seed ^ key->family;
	for (size_t i = 0; i < sizeof key->bytes; i += 8) {
		uint64_t w;
		memcpy(&w, key->bytes + i, 8);
		h ^= w;
		h += 0x9e3779b97f4a7c15ull;
		h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
		h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
		h ^= h >> 31;
	}
	return (size_t)(h & (PN_ADDR_TABLE_BUCKETS - 1));
}

static bool key_eq(const struct pn_addr_key *a, const struct pn_addr_key *b)
{
	return a->family == b->family && !memcmp(a->bytes, b->bytes, sizeof a->bytes);
}

void pn_addr_table_init(struct pn_addr_table *t, uint64_t seed)
{
	memset(t, 0, sizeof *t);
	t->seed = seed;
}

void pn_addr_table_clear(struct pn_addr_table *t)
{
	for (size_t i = 0; i < PN_ADDR_TABLE_BUCKETS; i++) {
		while (t->bucket[i]) {
			struct pn_addr_count *c = t->bucket[i];
			t->bucket[i] = c->next;
			free(c);
		}
	}
	t->entries = 0;
}

const struct pn_addr_count *pn_addr_table_find(const struct pn_addr_table *t, const struct pn_addr_key *key)
{
	for (const struct pn_addr_count *c = t->bucket[key_bucket(t, key)]; c; c = c->next)
		if (key_eq(&c->key, key))
			return c;
	return NULL;
}

struct pn_addr_count *pn_addr_table_get(struct pn_addr_table *t, const struct pn_addr_key *key)
{
	size_t b = key_bucket(t, key);
	for (struct pn_addr_count *c = t->bucket[b]; c; c = c->next)
		if (key_eq(&c->key, key))
			return c;
	struct pn_addr_count *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	c->key = *key;
	c->next = t->bucket[b];
	t->bucket[b] = c;
	t->entries++;
	return c;
}

enum pn_admit pn_conn_admit(const struct pn_addr_count *c, const struct pn_conn_limits *lim)
{
	if (lim->halfopen_per_addr && c->halfopen >= lim->halfopen_per_addr)
		return PN_ADMIT_HALFOPEN;
	if (lim->conns_per_addr && c->total >= lim->conns_per_addr)
		return PN_ADMIT_CONNS;
	return PN_ADMIT_OK;
}

void pn_addr_count_open(struct pn_addr_count *c)
{
	c->halfopen++;
	c->total++;
}

void pn_addr_count_handshake_over(struct pn_addr_count *c)
{
	if (c->halfopen)
		c->halfopen--;
}

void pn_addr_table_release(struct pn_addr_table *t, struct pn_addr_count *c)
{
	if (c->total)
		c->total--;
	if (c->total)
		return;
	struct pn_addr_count **pp = &t->bucket[key_bucket(t, &c->key)];
	while (*pp && *pp != c)
		pp = &(*pp)->next;
	if (*pp) {
		*pp = c->next;
		t->entries--;
	}
	free(c);
}
