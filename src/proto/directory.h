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

#include <stddef.h>
#include <stdint.h>
#include "peernet.h"

#define DIR_ADDR_MAX 63   /* "ip:port" or "[v6]:port" */
#define DIR_QUERY_MAX 255 /* bytes of a keyword query */
#define DIR_WORDS_MAX 8   /* words in a query */

struct dir_opts {
	uint32_t max_nodes;          /* default 10000 */
	uint32_t max_offers_per_node;/* default 10000 */
	uint32_t max_results;        /* default 50: providers per find, results per search */
	uint32_t node_timeout_ms;    /* no heartbeat for this long: dropped; default 30000 */
	uint64_t seed;               /* for picking which providers to return when there are more */
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

struct dir *dir_new(const struct dir_opts *opts);
void dir_free(struct dir *d);

/* Registers or refreshes a node at addr. 0, PN_ELIMIT (table full), PN_EINVAL (bad addr). */
int dir_register(struct dir *d, const uint8_t node_id[PN_ID_BYTES], const char *addr, uint64_t now);
/* Heartbeat: 0, or PN_ENOTFOUND if the node is not registered (it must register again). */
int dir_heartbeat(struct dir *d, const uint8_t node_id[PN_ID_BYTES], uint64_t now);
void dir_unregister(struct dir *d, const uint8_t node_id[PN_ID_BYTES]);
/* Adds an offer (idempotent). 0, PN_ENOTFOUND (not registered), PN_ELIMIT (per-node cap), PN_EINVAL (bad name). */
int dir_offer(struct dir *d, const uint8_t node_id[PN_ID_BYTES], const struct pn_cid *cid, const char *name,
	      uint64_t now);
void dir_withdraw(struct dir *d, const uint8_t node_id[PN_ID_BYTES], const struct pn_cid *cid);

/* Up to max providers of cid (a random subset if there are more), excluding
 * `exclude` (the asker; may be NULL). Returns the count written, and sets *total to how many exist. */
size_t dir_find(struct dir *d, const struct pn_cid *cid, const uint8_t *exclude, struct dir_provider *out,
		size_t max, uint32_t *total);
/* Content whose name contains every word of query (split on spaces and
 * punctuation, case-insensitive ASCII; at most DIR_WORDS_MAX words), most
 * providers first, up to max. Returns the count, or PN_EINVAL for an empty or too long query. */
int dir_search(struct dir *d, const char *query, struct dir_result *out, size_t max);

/* Drops nodes whose last heartbeat is older than node_timeout_ms; returns how many. */
size_t dir_tick(struct dir *d, uint64_t now);
uint64_t dir_next_wakeup(const struct dir *d);
size_t dir_node_count(const struct dir *d);
size_t dir_content_count(const struct dir *d);

#endif
