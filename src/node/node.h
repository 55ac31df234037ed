/* A peer-to-peer node: serves what it holds to other peers, finds providers
 * through a discovery method, downloads from every provider at once, and
 * takes commands on a control socket. */
#ifndef PN_NODE_NODE_H
#define PN_NODE_NODE_H

#include <stdbool.h>
#include <stdint.h>
#include "peernet.h"

enum pn_discovery { PN_DISCOVERY_DIRECTORY = 1, PN_DISCOVERY_FLOOD = 2, PN_DISCOVERY_DHT = 3 };

#define PN_NODE_MAX_SHARES 64
#define PN_CONTROL_SOCKET "control.sock"

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
	const char *port_file;
	/* flood discovery */
	const char *bootstrap[PN_NODE_MAX_SHARES];
	int nbootstrap;
	uint32_t min_neighbors, max_neighbors; /* 0 = defaults 4 and 8 */
	uint8_t ttl;                 /* hop limit of queries, 0 = default 5, at most 7 */
	bool plain_flood;            /* no expanding ring */
	/* servers used as one more provider of every download (`peernet serve`) */
	const char *seed_servers[PN_NODE_MAX_SHARES];
	int nseed_servers;
};

/* Runs the node until `peernet stop`, SIGINT or SIGTERM. 0 after a clean stop. */
int pn_node_run(const struct pn_node_opts *opts);

/* The default data directory: $PEERNET_DATA, else $XDG_DATA_HOME/peernet,
 * else $HOME/.local/share/peernet. Writes into out. */
void pn_default_data_dir(char *out, size_t len);

#endif
