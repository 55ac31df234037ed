/* The central look-up service's state: who is online, what each offers,
 * who provides a content ID, keyword search over names.
 *
 * Sans-I/O: the caller hands in requests with the current time and gets
 * answers back; dir_tick() expires nodes that missed their heartbeats. Every
 * table is bounded by the options; nothing is allocated from a count a peer
 * declares.
 */
#ifndef PN_PROTO_DIRECTORY_H
#define PN_PROTO_DIRECTORY_H
#ifndef PN_INTERNAL
#error "an internal header of libpeernet: a program includes <peernet.h> only"
#endif

#include <stddef.h>
#include <stdint.h>
#include "peernet.h"
#include "wire/wire.h"

/* The wire format's limits are the core's: one definition each. */
#define DIR_ADDR_MAX PN_DIR_ADDR_MAX   /* "ip:port" or "[v6]:port" */
#define DIR_QUERY_MAX PN_DIR_QUERY_MAX /* bytes of a keyword query */
#define DIR_WORDS_MAX 8                /* words in a query */

/* Bounds against a flood of registrations (docs/PROTOCOL.md, "Limits").
 * Identities cost nothing to make, so offers are capped per node, per
 * source address, per address block (an IPv4 /24, an IPv6 /48 for the /64s
 * in it) and in total: one block can hold at most a tenth of the total, so a
 * flood from one place cannot crowd out the shares of nodes elsewhere. At
 * the defaults the directory's memory stays under 256 MiB with every table
 * full of 255-byte names (bench: directory RSS under a registration flood). */
#define DIR_DEFAULT_OFFERS 100000u
#define DIR_DEFAULT_OFFERS_PER_NODE 1000u
#define DIR_DEFAULT_OFFERS_PER_SOURCE 5000u
#define DIR_DEFAULT_OFFERS_PER_BLOCK 10000u
#define DIR_DEFAULT_NODES_PER_SOURCE 64u
#define DIR_DEFAULT_NODES_PER_BLOCK 256u

/* A field left 0 takes its default. */
struct dir_opts {
	uint32_t max_nodes;          /* default 10000 */
	uint32_t max_offers_per_node;/* default DIR_DEFAULT_OFFERS_PER_NODE */
	uint32_t max_results;        /* default 50: providers per find, results per search */
	uint32_t node_timeout_ms;    /* no heartbeat for this long: dropped; default 30000 */
	uint64_t seed;               /* for picking which providers to return when there are more,
				      * and the key of the table hashes */
	uint32_t max_offers;         /* offers over all nodes; default DIR_DEFAULT_OFFERS */
	uint32_t max_nodes_per_source, max_nodes_per_block;   /* defaults above */
	uint32_t max_offers_per_source, max_offers_per_block; /* offers of the nodes registered from there */
};

struct dir_provider {
	uint8_t node_id[PN_ID_BYTES];
	char addr[DIR_ADDR_MAX + 1];
};

struct dir_result {
	struct pn_cid cid;
	char name[PN_NAME_MAX + 1];
	uint32_t providers;
};

struct dir;

/* opts may be NULL (every default). NULL when out of memory. Free with dir_free. */
struct dir *dir_new(const struct dir_opts *opts);
void dir_free(struct dir *d);

/* Every call that takes `now` first drops the nodes whose last sign of life
 * (register, heartbeat or offer) is node_timeout_ms or more before now, as
 * dir_tick() would. Time must not go backwards (it is clamped if it does). */

/* Registers or refreshes a node at addr. 0, PN_ELIMIT (table full), PN_EINVAL (bad addr). */
int dir_register(struct dir *d, const uint8_t node_id[PN_ID_BYTES], const char *addr, uint64_t now);
/* The same, counting the node and its offers against the caps of the source
 * address and the address block it registered from (opaque non-zero keys the
 * caller derives from the connection's address; 0: not counted). A node that
 * registers again from elsewhere starts afresh there (its offers are dropped). */
int dir_register_from(struct dir *d, const uint8_t node_id[PN_ID_BYTES], const char *addr, uint64_t source,
		      uint64_t block, uint64_t now);
/* Heartbeat: 0, or PN_ENOTFOUND if the node is not registered (it must register again). */
int dir_heartbeat(struct dir *d, const uint8_t node_id[PN_ID_BYTES], uint64_t now);
void dir_unregister(struct dir *d, const uint8_t node_id[PN_ID_BYTES]);
/* Adds an offer (idempotent) and counts as a heartbeat. 0, PN_ENOTFOUND (not
 * registered), PN_ELIMIT (per-node cap or max_offers), PN_EINVAL (bad name:
 * NUL-terminated and pn_name_valid), PN_ENOMEM. A content keeps the name it was
 * first offered under while any provider remains; it goes with its last provider. */
int dir_offer(struct dir *d, const uint8_t node_id[PN_ID_BYTES], const struct pn_cid *cid, const char *name,
	      uint64_t now);
void dir_withdraw(struct dir *d, const uint8_t node_id[PN_ID_BYTES], const struct pn_cid *cid);

/* Up to min(max, max_results) providers of cid (a uniformly random subset, in
 * random order, if there are more), excluding `exclude` (the asker; may be
 * NULL). Returns the count written, and sets *total (may be NULL) to how many
 * exist, the asker not counted. */
size_t dir_find(struct dir *d, const struct pn_cid *cid, const uint8_t *exclude, struct dir_provider *out,
		size_t max, uint32_t *total);
/* Content whose name contains every word of query, most providers first
 * (then by name, bytewise), up to min(max, max_results). Query and names are
 * split into words on every byte that is not an ASCII letter or digit or a
 * byte >= 0x80 (so UTF-8 stays inside words); comparison is ASCII
 * case-insensitive; a query word matches a word of the name it is a prefix of
 * ("quart" finds "Quarterly"). Returns the count, or PN_EINVAL for a query that
 * is empty, longer than DIR_QUERY_MAX, without words or with more than
 * DIR_WORDS_MAX. */
int dir_search(struct dir *d, const char *query, struct dir_result *out, size_t max);

/* Drops nodes whose last heartbeat is node_timeout_ms or more before now; returns how many. */
size_t dir_tick(struct dir *d, uint64_t now);
/* When dir_tick next has work: the oldest node's deadline, UINT64_MAX when there is no node. */
uint64_t dir_next_wakeup(const struct dir *d);
size_t dir_node_count(const struct dir *d);
size_t dir_content_count(const struct dir *d);
size_t dir_offer_count(const struct dir *d);
/* Walks every table and checks that they agree and respect the limits:
 * 0 or PN_ECORRUPT. O(size); for tests and fuzzing. */
int dir_check(const struct dir *d);

#endif
