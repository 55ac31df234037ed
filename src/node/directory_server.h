/* The central look-up service of the peer-to-peer model (peernet directory). */
#ifndef PN_NODE_DIRECTORY_SERVER_H
#define PN_NODE_DIRECTORY_SERVER_H

#include <stdint.h>

struct pn_directory_opts {
	const char *listen;
	const char *data_dir;        /* identity; NULL: an ephemeral one */
	uint32_t heartbeat_ms;       /* asked of nodes; they are dropped after 3 missed; 0 = default 10 s */
	uint32_t max_nodes;          /* 0 = default */
	uint32_t rate_per_s;         /* requests per second per connection; 0 = default */
	const char *port_file;
};

int pn_directory_run(const struct pn_directory_opts *opts);

#endif
