/* A map from uint32_t keys to uint32_t values: open addressing with linear
 * probing, at most half full (it doubles), deletion by shifting the probe run
 * back so no tombstones build up. Lookups are O(1) expected. Used where a
 * core finds its peers by the driver's key on every message. */
#ifndef PN_UTIL_U32MAP_H
#define PN_UTIL_U32MAP_H
#ifndef PN_INTERNAL
#error "an internal header of libpeernet: a program includes <peernet.h> only"
#endif

#include <stdbool.h>
#include <stdint.h>

#define PN_U32MAP_MIN_CAP 16u

struct pn_u32map {
	uint32_t *keys;
	uint32_t *vals; /* value + 1; 0 marks an empty entry */
	uint32_t cap;   /* a power of two, or 0 before the first put */
	uint32_t n;
};

/* The value stored under key into *val; false if there is none. */
bool pn_u32map_get(const struct pn_u32map *m, uint32_t key, uint32_t *val);

/* Stores val (< UINT32_MAX) under key, replacing any value there (which
 * never fails). 0, or PN_ENOMEM (the map is unchanged) or PN_EINVAL. */
int pn_u32map_put(struct pn_u32map *m, uint32_t key, uint32_t val);

/* Removes key; nothing if it is absent. */
void pn_u32map_del(struct pn_u32map *m, uint32_t key);

/* Frees the tables; the map is empty and usable again. */
void pn_u32map_free(struct pn_u32map *m);

#endif
