/* Upload policy: which interested peers may download from us now.
 *
 * Sans-I/O, like every core in src/proto. A node uploads to at most
 * opts.slots peers at a time plus one optimistic slot. Every
 * opts.rechoke_ms (default 10 s) the regular slots go to the interested peers
 * that sent us the most bytes over the last period (reciprocation), or, for
 * content we already hold whole (seeding), to those we sent the most (fastest
 * takers), with ties broken at random; every opts.optimistic_ms (default 30 s)
 * the optimistic slot moves to another, random, choked interested peer, so
 * newcomers with nothing to offer get a start. A new interested peer is
 * unchoked at once if a slot is free.
 */
#ifndef PN_PROTO_CHOKER_H
#define PN_PROTO_CHOKER_H
#ifndef PN_INTERNAL
#error "an internal header of libpeernet: a program includes <peernet.h> only"
#endif

#include <stdbool.h>
#include <stdint.h>

#define CHOKER_MAX_PEERS 1024

struct choker_opts {
	uint32_t slots;         /* regular unchoke slots, default 4 when 0 */
	uint32_t rechoke_ms;    /* default 10000 when 0 */
	uint32_t optimistic_ms; /* default 30000 when 0 */
	uint64_t seed;
};

enum choker_action_type { CHOKER_CHOKE = 1, CHOKER_UNCHOKE };

struct choker_action {
	enum choker_action_type type;
	uint32_t peer;
};

struct choker;

struct choker *choker_new(const struct choker_opts *opts, uint64_t now);
void choker_free(struct choker *c);

/* Returns 0, or PN_ELIMIT beyond CHOKER_MAX_PEERS. Peers start choked and not interested. */
int choker_peer_add(struct choker *c, uint32_t peer, uint64_t now);
void choker_peer_remove(struct choker *c, uint32_t peer);
/* Losing interest chokes the peer at once; a slot freed this way or by
 * choker_peer_remove goes at once to a waiting interested peer. */
void choker_interested(struct choker *c, uint32_t peer, bool interested, uint64_t now);
/* seeding: we hold everything this peer wants (affects the ranking). */
void choker_set_seeding(struct choker *c, bool seeding);
void choker_bytes_from(struct choker *c, uint32_t peer, uint64_t bytes); /* they sent us */
void choker_bytes_to(struct choker *c, uint32_t peer, uint64_t bytes);   /* we sent them */
bool choker_is_unchoked(const struct choker *c, uint32_t peer);

void choker_tick(struct choker *c, uint64_t now);
uint64_t choker_next_wakeup(const struct choker *c);
/* Pops the next CHOKE/UNCHOKE; false when none is pending. Actions are
 * coalesced: at most one is pending per peer (a choke then an unchoke before
 * a drain cancel out), and a removed peer is told nothing. */
bool choker_next_action(struct choker *c, struct choker_action *out);

#endif
