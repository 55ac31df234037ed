/* The central server of the client-server model: stores uploads and serves
 * downloads to many clients at once on one libuv loop. */
#ifndef PN_NODE_SERVER_H
#define PN_NODE_SERVER_H

#include <stdint.h>
#include "peernet.h"

struct pn_server_opts {
	const char *listen;            /* "host:port" */
	const char *data_dir;          /* store and identity */
	uint32_t handshake_timeout_ms; /* 0 = default */
	uint32_t idle_timeout_ms;      /* 0 = default */
	uint32_t max_conns;            /* 0 = default */
	uint64_t up_rate, down_rate;   /* bytes per second, 0 = no cap */
	const char *port_file;         /* if set, the bound port is written here once listening */
};

/* Runs the server until SIGINT or SIGTERM. Prints the node ID and address on
 * stdout once listening. Returns 0 after a clean stop, or a PN_E* code with a
 * message already printed to stderr. */
int pn_server_run(const struct pn_server_opts *opts);

#endif
