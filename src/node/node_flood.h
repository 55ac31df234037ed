/* Finding data by flooding: neighbour links, peer exchange, queries and hits.
 *
 * The decisions are the flood core's (src/proto/flood.c); struct flood_node
 * keeps the neighbour set between its minimum and maximum, remembers good
 * peers in DATA/peers, answers queries from the store, and carries the core's
 * actions over the node's peer connections. The connections belong to the
 * node: flooding names them by the node's key and reaches them through
 * struct flood_peer_ops; what it finds goes up through struct
 * discovery_events. Every entry point takes the time. */
#ifndef PN_NODE_FLOOD_H
#define PN_NODE_FLOOD_H
#ifndef PN_INTERNAL
#error "an internal header of libpeernet: a program includes <peernet.h> only"
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "node/discovery.h"
#include "net/net.h"
#include "proto/flood.h"
#include "util/log.h"
#include "wire/wire.h"

struct flood_node;
struct store;

#define FLOOD_NODE_DEFAULT_MIN_NEIGHBORS 4
#define FLOOD_NODE_DEFAULT_MAX_NEIGHBORS 8
#define FLOOD_NODE_MAX_CANDS 256      /* nodes we might take as neighbours */
#define FLOOD_NODE_MAX_LINKS 160      /* neighbours plus dials for one */
#define FLOOD_NODE_MAX_RESULTS 100    /* distinct results of one search */
#define FLOOD_NODE_FEATURE 0x1u       /* HELLO feature bit: offers / asks for a neighbour link */
#define FLOOD_NODE_BACKOFF_MIN_MS 1000
#define FLOOD_NODE_BACKOFF_MAX_MS 60000

/* The node's peer connections, as flooding uses them. */
struct flood_peer_ops {
	void *ud;
	/* Dials addr (pinning id unless NULL) to make it a neighbour: the new
	 * connection's key, or 0 if it could not start. flood_node_peer_hello()
	 * or flood_node_peer_closed() follows for that key. */
	uint32_t (*dial_cb)(void *ud, const char *addr, const uint8_t *id);
	/* Sends m, or a whole frame, on connection key (ignored if it is gone). */
	int (*send_cb)(void *ud, uint32_t key, const struct pn_msg *m);
	int (*send_frame_cb)(void *ud, uint32_t key, const uint8_t *frame, size_t len);
	/* Closes connection key; flood_node_peer_closed() follows. */
	void (*close_cb)(void *ud, uint32_t key, int err);
	/* Whether a connection to node id has said HELLO. */
	bool (*connected_cb)(void *ud, const uint8_t id[PN_ID_BYTES]);
	/* This node's IP as connection key sees it; false if unknown. */
	bool (*local_ip_cb)(void *ud, uint32_t key, char ip[PN_ADDR_STR_MAX]);
	/* The name of cid if this node can serve any of it (complete in the
	 * store or being downloaded), else NULL. Valid until the next call. */
	const char *(*held_name_cb)(void *ud, const struct pn_cid *cid);
};

struct flood_node_opts {
	const char *data_dir;        /* DATA/peers is read and written here; NULL: nowhere */
	const char *announce_host;   /* the host put in our hits; NULL: as the neighbour sees us */
	uint16_t port;               /* where peers reach this node */
	uint8_t self_id[PN_ID_BYTES];
	const char *const *bootstrap; /* nbootstrap "host:port", candidates from the start */
	int nbootstrap;
	uint32_t min_neighbors, max_neighbors; /* 0 = defaults */
	uint8_t ttl;                 /* hop limit of our queries, 0 = FLOOD_DEFAULT_TTL */
	bool plain_flood;            /* no expanding ring */
	uint64_t seed;               /* the core's query IDs, and jitter */
	struct store *store;         /* answers keyword queries; borrowed, may be NULL */
	const struct pn_logger *log; /* borrowed; NULL: silent */
	struct flood_peer_ops peers;
	struct discovery_events events;
};

/* NULL when out of memory. Reads DATA/peers. Free with flood_node_free(). */
struct flood_node *flood_node_new(const struct flood_node_opts *opts);
/* Saves DATA/peers, drops every query (no event follows) and dials no more.
 * Peer events are still taken, so the node may report its closes after. */
void flood_node_stop(struct flood_node *fn);
void flood_node_free(struct flood_node *fn);

/* The HELLO features to send on connection key: a link offered to a dialler
 * while there is room, asked for only when we dialled for one. */
uint32_t flood_node_hello_features(const struct flood_node *fn, uint32_t key, bool outgoing);

/* What the node knows of a connection once its HELLO is in. */
struct flood_peer_hello {
	uint32_t key;
	bool outgoing;
	const uint8_t *id;       /* PN_ID_BYTES */
	const char *addr;        /* dialled address, or where it came from */
	uint16_t listen_port;    /* from its HELLO */
	uint32_t features;       /* from its HELLO */
};
/* Decides whether the peer becomes a neighbour. false: it was turned away
 * (sent other peers to try, and closed). */
bool flood_node_peer_hello(struct flood_node *fn, const struct flood_peer_hello *h, uint64_t now);
void flood_node_peer_closed(struct flood_node *fn, uint32_t key, uint64_t now);
/* Handles PEERS_REQ, PEERS, QUERY and QUERY_HIT from connection key (body
 * and len: the frame it came in); other types return PN_ENOTSUP. */
int flood_node_on_msg(struct flood_node *fn, uint32_t key, const struct pn_msg *m, const uint8_t *body, size_t len,
		      uint64_t now);
bool flood_node_is_neighbor(const struct flood_node *fn, uint32_t key);

/* At least one neighbour: queries can go out. */
bool flood_node_ready(const struct flood_node *fn);
/* Floods a query for cid: providers_cb for each provider, then
 * lookup_done_cb. PN_ECLOSED without a neighbour, PN_ELIMIT with too many
 * queries at once. */
int flood_node_find(struct flood_node *fn, const struct pn_cid *cid, uint64_t now);
/* Floods a keyword search: search_result_cb per result (most providers
 * first), then search_done_cb, with token. PN_ECLOSED, PN_EINVAL (empty or
 * longer than PN_QUERY_DATA_MAX), PN_ELIMIT, PN_ENOMEM. */
int flood_node_search(struct flood_node *fn, const char *query, void *token, uint64_t now);
/* Forgets the searches of token: no callback names it any more. */
void flood_node_search_cancel(struct flood_node *fn, void *token);

/* Runs the core's timers, keeps the neighbour count, asks for peers, saves
 * DATA/peers now and then. */
void flood_node_tick(struct flood_node *fn, uint64_t now);
/* When tick next has something to do (UINT64_MAX: nothing). */
uint64_t flood_node_next_wakeup(const struct flood_node *fn, uint64_t now);

struct flood_node_stats {
	size_t neighbors;
	size_t candidates;
	uint64_t lookups;          /* finds and searches started */
	struct flood_stats core;
};
void flood_node_get_stats(const struct flood_node *fn, struct flood_node_stats *out);

#endif
