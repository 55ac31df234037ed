/* Seeded pseudo-random numbers for the sans-I/O cores.
 *
 * splitmix64: one 64-bit word of state, kept in the core's context struct, so
 * every instance is independent and a run repeats exactly from its seed. Not
 * for secrets.
 */
#ifndef PN_PROTO_PRNG_H
#define PN_PROTO_PRNG_H
#ifndef PN_INTERNAL
#error "an internal header of libpeernet: a program includes <peernet.h> only"
#endif

#include <stdint.h>

#define PN_PRNG_GAMMA 0x9e3779b97f4a7c15ull

struct pn_prng {
	uint64_t state;
};

static inline void pn_prng_seed(struct pn_prng *p, uint64_t seed)
{
	p->state = seed;
}

static inline uint64_t pn_prng_next(struct pn_prng *p)
{
	uint64_t z = (p->state += PN_PRNG_GAMMA);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Uniform in [0, bound); 0 when bound is 0. Rejects the biased low range. */
static inline uint32_t pn_prng_below(struct pn_prng *p, uint32_t bound)
{
	if (bound == 0)
		return 0;
	uint64_t limit = (uint64_t)0 - ((uint64_t)0 - bound) % bound; /* multiple of bound */
	uint64_t x;

	do {
		x = pn_prng_next(p);
	} while (limit != 0 && x >= limit);
	return (uint32_t)(x % bound);
}

#endif
