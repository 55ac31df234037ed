/* A peer-to-peer node: serves what it holds to other peers, finds providers
 * through a discovery method, downloads from every provider at once, and
 * takes commands on a control socket. */
#ifndef PN_NODE_NODE_H
#define PN_NODE_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "peernet.h"
#include "util/log.h"

enum pn_discovery { PN_DISCOVERY_DIRECTORY = 1, PN_DISCOVERY_FLOOD = 2, PN_DISCOVERY_DHT = 3 };

#define PN_NODE_MAX_SHARES 64
#define PN_CONTROL_SOCKET "control.sock"
#define PN_NODE_ERR_MAX 512          /* room for the one-line reason pn_node_run gives */

/* What a node says once it listens (see ready_cb). Valid during the call. */
struct pn_node_ready {
	uint16_t port;                 /* the port bound */
	uint8_t node_id[PN_ID_BYTES];
	enum pn_discovery discovery;
	size_t shared;                 /* objects in the store */
	const char *control_path;
};

struct pn_node_opts {
	const char *listen;          /* "host:port" for peers */
	const char *data_dir;
	const char *control_path;    /* NULL: DATA/control.sock */
	enum pn_discovery discovery;
	const char *directory;       /* "host:port" of the look-up service */
	const char *announce_host;   /* host to register; NULL: the address the directory sees */
	const char *shares[PN_NODE_MAX_SHARES];
	int nshares;
	uint64_t up_rate, down_rate; /* bytes/s, 0 = no cap */
	uint32_t peer_timeout_ms;    /* no provider reachable for this long: a get fails; 0 = default */
	uint32_t upload_slots;       /* 0 = default */
	/* flood discovery */
	const char *bootstrap[PN_NODE_MAX_SHARES];
	int nbootstrap;
	uint32_t min_neighbors, max_neighbors; /* 0 = defaults 4 and 8 */
	uint8_t ttl;                 /* hop limit of queries, 0 = default 5, at most 7 */
	bool plain_flood;            /* no expanding ring */
	/* servers used as one more provider of every download (`peernet serve`) */
	const char *seed_servers[PN_NODE_MAX_SHARES];
	int nseed_servers;
	/* Every line the node, its store and its connections log; copied, so it
	 * need not outlive the call. NULL: silent. */
	const struct pn_logger *log;
	/* Called once, when the node listens and takes commands. May be NULL.
	 * The node prints nothing itself. */
	void (*ready_cb)(void *ud, const struct pn_node_ready *ready);
	void *ready_ud;
};

/* Runs the node on libuv's default loop until `peernet stop`, SIGINT or
 * SIGTERM. 0 after a clean stop; a PN_E* code if it could not start, with
 * one line saying why in err (err_len bytes, may be 0). */
int pn_node_run(const struct pn_node_opts *opts, char *err, size_t err_len);

/* The default data directory: $PEERNET_DATA, else $XDG_DATA_HOME/peernet,
 * else $HOME/.local/share/peernet. Writes into out. */
void pn_default_data_dir(char *out, size_t len);

#endif
