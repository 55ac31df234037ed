/* The central look-up service of the peer-to-peer model (peernet directory). */
#ifndef PN_NODE_DIRECTORY_SERVER_H
#define PN_NODE_DIRECTORY_SERVER_H

#include <stdint.h>
#include "peernet.h"
#include "util/log.h"

struct pn_directory_opts {
	const char *listen;
	const char *data_dir;        /* identity; NULL: an ephemeral one */
	uint32_t heartbeat_ms;       /* asked of nodes; they are dropped after 3 missed; 0 = default 10 s */
	uint32_t max_nodes;          /* 0 = default */
	uint32_t rate_per_s;         /* requests per second per connection; 0 = default */
	/* Every line the directory and its connections log, start-up failures
	 * included; copied, so it need not outlive the call. NULL: silent. */
	const struct pn_logger *log;
	/* Called once, when the directory listens: the port bound and its node
	 * ID. May be NULL. The directory prints nothing itself. */
	void (*ready_cb)(void *ud, uint16_t port, const uint8_t node_id[PN_ID_BYTES]);
	void *ready_ud;
};

/* Runs a directory on libuv's default loop until SIGINT or SIGTERM.
 * Returns 0, or a PN_E* code (the reason is logged) if it could not start. */
int pn_directory_run(const struct pn_directory_opts *opts);

#endif
