/* Finding data through the Kademlia DHT: the driver of the DHT core.
 *
 * The decisions are the core's (src/proto/dht.c, sans-I/O); struct dht_node
 * carries them over one UDP socket bound to the address and port of the
 * node's TCP listener (docs/DHT.md says why), signs every datagram and every
 * record this node publishes with the node's Ed25519 key, and checks the
 * signature and the ID binding of every datagram and record it receives
 * before the core sees them. It announces what the node serves (a PROVIDER
 * record under the content's key, a KEYWORD record under each word of its
 * name), finds providers and searches, and keeps the routing table in
 * DATA/dht-table so that a restarted node rejoins without its bootstrap
 * nodes. What it finds goes up through struct discovery_events. Every entry
 * point takes the time (the loop's clock, in ms).
 *
 * Limits: one socket; on a dual-stack listener ("[::]:PORT") it takes both
 * families, on an IPv4 or IPv6 address only that one. Searches find whole
 * words only (docs/DHT.md, "Search"). */
#ifndef PN_NODE_DHT_H
#define PN_NODE_DHT_H
#ifndef PN_INTERNAL
#error "an internal header of libpeernet: a program includes <peernet.h> only"
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include "crypto/crypto.h"
#include "node/discovery.h"
#include "proto/dht.h"
#include "util/log.h"

struct dht_node;

#define DHT_NODE_TABLE_FILE "dht-table"   /* in the data directory: "NODEID ADDR" per line */
#define DHT_NODE_TABLE_MAX 256            /* contacts saved and reloaded, at most */
#define DHT_NODE_SAVE_MS 10000            /* the table is written at most this often while it changes */
#define DHT_NODE_WORDS_MAX 16             /* words of one name published as KEYWORD records */
#define DHT_NODE_OFFERS_MAX (DHT_MAX_ANNOUNCES / (1 + DHT_NODE_WORDS_MAX)) /* contents announced at once */
#define DHT_NODE_FIND_WANT 20             /* providers that end a providers look-up early */
#define DHT_NODE_MAX_RESULTS 100          /* distinct results of one search */
#define DHT_NODE_COST_WINDOW 64           /* look-ups the medians in the status are taken over */

struct dht_node_opts {
	uv_loop_t *loop;
	const char *listen;           /* the TCP listener's "HOST:PORT" as configured: the UDP socket binds HOST */
	uint16_t port;                /* the port the TCP listener bound: the UDP socket binds it too */
	const char *bind_interface;   /* SO_BINDTODEVICE; NULL: any */
	const char *data_dir;         /* DATA/dht-table is read and written here; NULL: nowhere */
	const struct pn_identity *id; /* signs datagrams and records; borrowed, outlives the dht_node */
	const char *const *bootstrap; /* nbootstrap "host:port" (names are looked up off the loop) to join through */
	size_t nbootstrap;
	uint64_t seed;                /* the core's txids, tokens and refresh targets; jitter */
	const struct pn_logger *log;  /* borrowed; NULL: silent */
	struct discovery_events events;
};

/* Binds the UDP socket, creates the core, reads DATA/dht-table and pings the
 * bootstrap nodes and the saved contacts. PN_OK with *out (close it with
 * dht_node_close, then free it with dht_node_free), or an error with one
 * line in why and nothing to free: PN_EEXIST (the UDP port is taken),
 * PN_EINVAL (listen is not an address), PN_EACCES (bind_interface needs
 * CAP_NET_RAW), PN_EIO, PN_ENOMEM. */
PN_MUST_CHECK int dht_node_new(const struct dht_node_opts *opts, uint64_t now, struct dht_node **out, char *why,
			       size_t whylen);
/* Saves DATA/dht-table, drops every look-up and search (no event follows),
 * cancels the look-ups of bootstrap host names and sends nothing more. */
void dht_node_stop(struct dht_node *dn);
/* Closes the socket and cancels the look-ups of bootstrap host names;
 * closed(ud) runs from the loop once the socket is closed and every look-up
 * has reported. */
void dht_node_close(struct dht_node *dn, void (*closed)(void *ud), void *ud);
/* After the close callback (or for NULL): frees everything. */
void dht_node_free(struct dht_node *dn);

/* The routing table has a contact: look-ups can go out. */
bool dht_node_ready(const struct dht_node *dn);

/* Announces that this node serves cid, named name (its words become
 * KEYWORD records), until dht_node_withdraw; announcing again is harmless.
 * PN_OK, PN_ELIMIT (DHT_NODE_OFFERS_MAX), PN_ENOMEM. */
int dht_node_offer(struct dht_node *dn, const struct pn_cid *cid, const char *name, uint64_t now);
void dht_node_withdraw(struct dht_node *dn, const struct pn_cid *cid);

/* Looks up the providers of cid: providers_cb per provider as it comes,
 * then lookup_done_cb. PN_ECLOSED with an empty table or once stopped,
 * PN_ELIMIT with too many look-ups at once. */
int dht_node_find(struct dht_node *dn, const struct pn_cid *cid, uint64_t now);
/* Looks up the KEYWORD records of the query's longest word and reports
 * those whose name matches the whole query (pn_keywords_match):
 * search_result_cb per content (most providers first), then search_done_cb
 * with token. PN_ECLOSED, PN_EINVAL (no word of 2 bytes or more),
 * PN_ELIMIT, PN_ENOMEM. */
int dht_node_search(struct dht_node *dn, const char *query, void *token, uint64_t now);
/* Forgets the searches of token: no callback names it any more. */
void dht_node_search_cancel(struct dht_node *dn, void *token);

/* Runs the core's timers, pings the bootstrap nodes again while the table is
 * empty, announces again when the table has grown, saves the table. */
void dht_node_tick(struct dht_node *dn, uint64_t now);
/* When tick next has something to do (UINT64_MAX: nothing). */
uint64_t dht_node_next_wakeup(const struct dht_node *dn);

struct dht_node_stats {
	size_t contacts;              /* in the routing table */
	size_t records_stored;        /* records of other nodes kept here */
	size_t offers;                /* contents this node announces */
	uint64_t lookups;             /* finds and searches started */
	uint64_t lookups_done;
	uint64_t lookup_msgs;         /* requests those look-ups sent */
	uint32_t rounds_last, rounds_median;     /* over the last DHT_NODE_COST_WINDOW look-ups */
	uint32_t msgs_last, msgs_median;
	uint64_t datagrams_in, datagrams_out;
	uint64_t bad_datagrams;       /* dropped: did not decode, or a signature or ID did not verify */
	uint64_t bad_records;         /* records dropped from answers: bad signature or wrong key */
	uint64_t send_failures;       /* datagrams the socket would not take */
	struct dht_stats core;
};
void dht_node_get_stats(const struct dht_node *dn, struct dht_node_stats *out);

#endif
