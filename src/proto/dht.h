/* Kademlia DHT core (Maymounkov & Mazières, 2002), sans-I/O.
 *
 * No sockets, clocks, timers or crypto: every input carries the time in
 * milliseconds (any epoch, never going back); the caller drains the resulting
 * actions with dht_next_action() right after each call; signatures are made
 * and checked by the driver (see "Trust" below). All state lives in struct
 * dht, so the simulator runs 100,000 nodes in one process.
 *
 * Model:
 *  - IDs and keys are 256 bits; distance is XOR, compared as a big-endian
 *    number. The routing table has one bucket per distance prefix length
 *    (256 at most, made as they are needed), DHT_K = 20 contacts each, least
 *    recently seen first, plus a replacement cache of DHT_K per bucket.
 *  - Preference for long-lived contacts: a new contact for a full bucket does
 *    not evict anyone; the least recently seen contact is pinged, and is
 *    replaced (by the newest of the replacement cache) only if it fails to
 *    answer. A contact that fails opts.max_fails requests in a row is
 *    dropped.
 *  - Iterative look-ups with DHT_ALPHA = 3 requests in flight, closest
 *    unqueried first, over a shortlist of the DHT_K closest seen. A node
 *    look-up ends when the DHT_K closest seen have all answered or failed;
 *    a value look-up also ends early once `want` distinct records are found
 *    and the closest DHT_K that answered were all asked.
 *  - Rounds: a contact from the routing table is at depth 1; one learnt
 *    from a reply of a depth-d contact is at depth d+1. A look-up's rounds
 *    are the largest depth it sent a request to (for a value look-up, the
 *    depth at which the first record came back, in rounds_to_first).
 *  - Buckets not touched by any look-up or contact for opts.refresh_ms are
 *    refreshed by a node look-up of a random ID in their range; after the
 *    join look-up, every bucket farther than the closest neighbour that is
 *    not full is refreshed at once (the paper, section 2.3).
 *  - Storage: a node stores a record only for a key it is close to (fewer
 *    than DHT_K contacts in its table are closer to the key than itself),
 *    only with a write token it gave the sender within opts.token_ms, and
 *    within bounds per publisher, per key and in all. A record lives
 *    opts.record_ttl_ms after its last STORE; publishers store again every
 *    opts.republish_ms (less than the TTL).
 *  - Abuse: requests are rate-limited per sender address (opts.rate_per_s,
 *    burst 2x); a reply must come from the ID the request went to (when
 *    known) and with the request's txid, else it is ignored; contacts in
 *    replies that are invalid, this node, or the replier itself are
 *    counted and skipped, never followed. (Contacts farther from the key
 *    than the replier are kept: near the key most of a node's k closest
 *    are farther than itself, and skipping them loses true closest nodes.)
 *
 * Trust: the driver hands the core only datagrams whose signature it checked
 * and whose sender ID it derived from the sender's key (SHA-256), and only
 * records whose publisher signature it checked; the core trusts the
 * `from_id` and records it is given. The records this node publishes come
 * signed from the driver (dht_announce).
 */
#ifndef PN_PROTO_DHT_H
#define PN_PROTO_DHT_H
#ifndef PN_INTERNAL
#error "an internal header of libpeernet: a program includes <peernet.h> only"
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "wire/dht_wire.h"

#define DHT_K 20
#define DHT_ALPHA 3
#define DHT_MAX_LOOKUPS 64       /* look-ups in flight started by this node */
#define DHT_MAX_ANNOUNCES 65536  /* (key, record) pairs this node publishes */
#define DHT_REBOOT_MS 5000       /* a driver whose table is empty calls dht_bootstrap again this often
				  * (one ping each way may be lost; the node and the simulator alike) */

struct dht_opts {
	uint8_t id[PN_DHT_KEY_BYTES]; /* this node's ID */
	uint64_t seed;               /* txids, tokens' secret, refresh targets: give every node its own */
	uint32_t rpc_timeout_ms;     /* a request not answered by then failed; default 2000 */
	uint32_t max_fails;          /* requests failed in a row before a contact is dropped; default 3 */
	uint32_t refresh_ms;         /* bucket refresh; default 3600000 (1 h) */
	uint32_t record_ttl_ms;      /* default 7200000 (2 h) */
	uint32_t republish_ms;       /* default 3000000 (50 min) */
	uint32_t token_ms;           /* how long a write token is accepted; default 600000 (10 min) */
	uint32_t rate_per_s;         /* requests per sender address per second; default 50 */
	uint32_t max_records;        /* stored records in all; default 65536 */
	uint32_t max_per_publisher;  /* stored records of one publisher; default 4096 */
	uint32_t max_per_key;        /* stored records under one key; default 512 */
};

enum dht_lookup_kind {
	DHT_LOOKUP_NODES = 1,    /* the DHT_K closest nodes to the key */
	DHT_LOOKUP_PROVIDERS,    /* PROVIDER records under the key */
	DHT_LOOKUP_KEYWORD,      /* KEYWORD records under the key */
};

struct dht_lookup_stats {
	uint32_t rounds;          /* see the header comment */
	uint32_t rounds_to_first; /* value look-ups: depth of the first record; 0 if none, or if
				   * this node stores one itself (delivered at the start) */
	uint32_t requests;        /* requests sent */
	uint32_t replies;         /* replies received */
	uint32_t timeouts;
	uint32_t records;         /* distinct records delivered */
	uint64_t started_ms;
	uint64_t first_record_ms; /* 0 if none */
	uint64_t done_ms;
};

enum dht_action_type {
	DHT_ACT_SEND = 1,    /* encode msg, sign it, send it to `to` */
	DHT_ACT_RECORD,      /* look-up `handle` found record `rec` (distinct publisher+cid) */
	DHT_ACT_LOOKUP_DONE, /* look-up `handle` is over: stats, and the closest
			      * contacts that answered (contacts[0..n_contacts)) */
	DHT_ACT_CONTACT,     /* a contact entered the routing table (the driver may save the table) */
};

/* Pointers in an action (msg's names, contacts) stay valid until the next
 * call into the core other than dht_next_action(). The queue is bounded:
 * a caller that does not drain after each call may see SEND actions dropped
 * (counted); LOOKUP_DONE is never dropped, only delayed to a later tick. */
struct dht_action {
	enum dht_action_type type;
	struct pn_dht_addr to;   /* SEND */
	struct pn_dht_msg msg;   /* SEND: sender_key is left for the driver to fill */
	uint32_t handle;         /* RECORD, LOOKUP_DONE */
	int err;                 /* LOOKUP_DONE: 0, or PN_ENOTFOUND when no node answered and
				  * this node stores no matching record itself */
	struct pn_dht_record rec; /* RECORD */
	struct dht_lookup_stats stats; /* LOOKUP_DONE */
	const struct pn_dht_contact *contacts; /* LOOKUP_DONE, CONTACT (n_contacts 1) */
	size_t n_contacts;
};

struct dht_stats {
	uint64_t requests_sent, replies_received, timeouts;
	uint64_t requests_received, replies_sent;
	uint64_t rate_limited;       /* requests dropped by the per-address limit */
	uint64_t junk_contacts;      /* contacts in replies that were skipped */
	uint64_t unexpected_replies; /* unknown txid, wrong sender */
	uint64_t stores_accepted, stores_refused;
	uint64_t lookups_started, lookups_done;
	uint64_t actions_dropped;
};

struct dht;

/* Returns NULL on allocation failure or when opts is NULL. Zero fields of
 * opts take their defaults. */
struct dht *dht_new(const struct dht_opts *opts);
void dht_free(struct dht *d);

/* A node to join through: pinged (its ID is learnt from its answer). */
void dht_bootstrap(struct dht *d, const struct pn_dht_addr *addr, uint64_t now);
/* A contact known from before (a saved table): pinged before it is trusted. */
void dht_add_contact(struct dht *d, const struct pn_dht_contact *c, uint64_t now);
/* After the first contacts answered: a node look-up of this node's own ID
 * (fills the closest buckets). Also done by the core on its first answer. */
void dht_join(struct dht *d, uint64_t now);

/* A datagram from `from`, whose signature and ID the driver checked. */
void dht_on_message(struct dht *d, const struct pn_dht_addr *from, const uint8_t from_id[PN_DHT_KEY_BYTES],
		    const struct pn_dht_msg *m, uint64_t now);

/* Starts a look-up. want: records that are enough (value look-ups; 0: all
 * the closest nodes have). Returns a handle > 0 (named in RECORD and
 * LOOKUP_DONE), or PN_ELIMIT (DHT_MAX_LOOKUPS in flight), PN_EINVAL. */
int dht_lookup(struct dht *d, enum dht_lookup_kind kind, const uint8_t key[PN_DHT_KEY_BYTES], uint32_t want,
	       uint64_t now);
/* Ends a look-up early; no LOOKUP_DONE follows. */
void dht_lookup_cancel(struct dht *d, uint32_t handle);

/* Publishes rec (signed by the driver) under key: a node look-up of key,
 * then STORE to the DHT_K closest that answered, again every
 * opts.republish_ms until dht_unannounce. rec->name is copied. 0, or
 * PN_ELIMIT (DHT_MAX_ANNOUNCES), PN_EINVAL. Announcing the same (key, kind,
 * cid) again replaces it. */
int dht_announce(struct dht *d, const uint8_t key[PN_DHT_KEY_BYTES], const struct pn_dht_record *rec,
		 uint64_t now);
void dht_unannounce(struct dht *d, const uint8_t key[PN_DHT_KEY_BYTES], uint8_t kind,
		    const uint8_t cid[PN_CID_BYTES]);

void dht_tick(struct dht *d, uint64_t now);
uint64_t dht_next_wakeup(const struct dht *d); /* UINT64_MAX: nothing scheduled */
bool dht_next_action(struct dht *d, struct dht_action *out);

/* The routing table: up to max contacts, closest buckets first; returns how
 * many were written. For saving it and for status. */
size_t dht_contacts(const struct dht *d, struct pn_dht_contact *out, size_t max);
size_t dht_table_size(const struct dht *d);   /* contacts in the routing table */
size_t dht_records_stored(const struct dht *d);
size_t dht_memory(const struct dht *d);       /* bytes the core holds (table, records, look-ups) */
const struct dht_stats *dht_get_stats(const struct dht *d);

/* XOR distance comparison: <0 if a is closer to key than b, 0 equal, >0. */
int dht_cmp_distance(const uint8_t key[PN_DHT_KEY_BYTES], const uint8_t a[PN_DHT_KEY_BYTES],
		     const uint8_t b[PN_DHT_KEY_BYTES]);

#endif
