/* The central server of the client-server model: stores uploads and serves
 * downloads to many clients at once on one libuv loop. */
#ifndef PN_NODE_SERVER_H
#define PN_NODE_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include "peernet.h"
#include "util/log.h"

/* What the server reports once it listens. */
struct pn_server_ready {
	uint16_t port;
	uint8_t node_id[PN_ID_BYTES];
	size_t objects;       /* stored when it started */
	uint64_t bytes;
	const char *data_dir;
};

struct pn_server_opts {
	const char *listen;            /* "host:port" */
	const char *data_dir;          /* store and identity */
	uint32_t handshake_timeout_ms; /* 0 = default */
	uint32_t idle_timeout_ms;      /* 0 = default */
	uint32_t max_conns;            /* 0 = default */
	uint64_t up_rate, down_rate;   /* bytes per second, 0 = no cap */
	/* Every line the server and its connections log; NULL: none. */
	const struct pn_logger *log;
	/* Called once listening (the CLI prints its lines and writes the port file). */
	void (*ready_cb)(void *ud, const struct pn_server_ready *r);
	void *ready_ud;
	/* If set, the one-line reason a start-up failed (err_len bytes, NUL included). */
	char *err;
	size_t err_len;
};

/* Runs the server until SIGINT or SIGTERM; prints nothing, logs through
 * opts->log, calls opts->ready_cb once listening. Returns 0 after a clean stop,
 * or a PN_E* code with the reason in opts->err. */
int pn_server_run(const struct pn_server_opts *opts);

#endif
