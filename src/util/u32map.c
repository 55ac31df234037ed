/* uint32_t -> uint32_t hash map; see u32map.h. */
#include <stdlib.h>
#include "peernet.h"
#include "util/u32map.h"

static uint32_t home(const struct pn_u32map *m, uint32_t key)
{
	/* Fibonacci hashing: the multiply spreads consecutive keys apart. */
	return (uint32_t)(((uint64_t)key * 0x9e3779b97f4a7c15ull) >> 32) & (m->cap - 1);
}

/* The entry holding key, or the empty entry where it would go. */
static uint32_t probe(const struct pn_u32map *m, uint32_t key)
{
	uint32_t h = home(m, key);

	while (m->vals[h] != 0 && m->keys[h] != key)
		h = (h + 1) & (m->cap - 1);
	return h;
}

bool pn_u32map_get(const struct pn_u32map *m, uint32_t key, uint32_t *val)
{
	if (m->n == 0)
		return false;
	uint32_t h = probe(m, key);

	if (m->vals[h] == 0)
		return false;
	*val = m->vals[h] - 1;
	return true;
}

static int grow(struct pn_u32map *m)
{
	uint32_t cap = m->cap ? m->cap * 2 : PN_U32MAP_MIN_CAP;

	if (cap < m->cap)
		return PN_ENOMEM;
	struct pn_u32map bigger = {
		.keys = malloc((size_t)cap * sizeof(uint32_t)),
		.vals = calloc(cap, sizeof(uint32_t)),
		.cap = cap,
	};
	if (!bigger.keys || !bigger.vals) {
		free(bigger.keys);
		free(bigger.vals);
		return PN_ENOMEM;
	}
	for (uint32_t i = 0; i < m->cap; i++) {
		if (m->vals[i] == 0)
			continue;
		uint32_t h = probe(&bigger, m->keys[i]);
		bigger.keys[h] = m->keys[i];
		bigger.vals[h] = m->vals[i];
	}
	bigger.n = m->n;
	pn_u32map_free(m);
	*m = bigger;
	return 0;
}

int pn_u32map_put(struct pn_u32map *m, uint32_t key, uint32_t val)
{
	if (val == UINT32_MAX)
		return PN_EINVAL;
	if (m->n > 0) { /* replacing never allocates */
		uint32_t h = probe(m, key);
		if (m->vals[h] != 0) {
			m->vals[h] = val + 1;
			return 0;
		}
	}
	if ((m->n + 1) * 2 > m->cap) {
		int r = grow(m);
		if (r != 0)
			return r;
	}
	uint32_t h = probe(m, key);

	m->n++;
	m->keys[h] = key;
	m->vals[h] = val + 1;
	return 0;
}

void pn_u32map_del(struct pn_u32map *m, uint32_t key)
{
	if (m->n == 0)
		return;
	uint32_t mask = m->cap - 1;
	uint32_t h = probe(m, key);

	if (m->vals[h] == 0)
		return;
	m->vals[h] = 0;
	m->n--;
	/* Entries after the hole move into it unless their home lies cyclically
	 * in (hole, j]: then they are already reachable. */
	for (uint32_t j = (h + 1) & mask; m->vals[j] != 0; j = (j + 1) & mask) {
		uint32_t want = home(m, m->keys[j]);
		bool reachable = h < j ? (want > h && want <= j) : (want > h || want <= j);

		if (reachable)
			continue;
		m->keys[h] = m->keys[j];
		m->vals[h] = m->vals[j];
		m->vals[j] = 0;
		h = j;
	}
}

void pn_u32map_free(struct pn_u32map *m)
{
	free(m->keys);
	free(m->vals);
	m->keys = m->vals = NULL;
	m->cap = m->n = 0;
}
