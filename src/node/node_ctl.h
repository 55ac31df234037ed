/* The node's control socket: a Unix socket (mode 0600) on which `peernet
 * add/search/get/status/stop` talk to a running node, one request per
 * connection. This layer owns the protocol, JSON lines (see node_ctl.c);
 * what a request does is the node's, reached through struct ctl_ops, and the
 * node answers with the reply functions below. */
#ifndef PN_NODE_CTL_H
#define PN_NODE_CTL_H
#ifndef PN_INTERNAL
#error "an internal header of libpeernet: a program includes <peernet.h> only"
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include <uv.h>
#include "peernet.h"
#include "net/net.h"
#include "proto/flood.h"
#include "wire/wire.h"

struct ctl_server;
struct ctl_client;
struct store;
struct store_object;

#define CTL_STATUS_PEERS_MAX 256     /* peers a status shows at most */
#define CTL_STATUS_TRANSFERS_MAX 64  /* downloads a status shows at most */
#define CTL_STATUS_SHARES_MAX 1000   /* shares a status lists at most ("shares_total" counts all) */
#define CTL_REQUEST_MAX PN_CONTROL_REQUEST_MAX  /* bytes of a request line, its newline included */
#define CTL_REPLY_LINE_MAX PN_CONTROL_REPLY_MAX /* bytes of a reply line, its newline included */

/* What `status` shows, filled by the node: a snapshot, so this layer never
 * walks the node's lists. */
struct ctl_peer_status {
	uint8_t id[PN_ID_BYTES];
	char addr[PN_ADDR_STR_MAX];
	bool outgoing, neighbor, seed_server;
	bool peer_choking, am_choking;
	uint64_t bytes_to, bytes_from;
	uint64_t rate_to, rate_from;  /* chunk bytes per second over the last seconds */
};
struct ctl_transfer_status {
	struct pn_cid cid;
	char name[PN_NAME_MAX + 1];
	uint32_t chunks, have;
	uint64_t bytes_down;
};
struct ctl_status {
	uint8_t node_id[PN_ID_BYTES];
	const char *listen;          /* as given; the port is replaced by `port` */
	uint16_t port;
	const char *discovery;       /* "directory", "flood", "dht" */
	const char *directory;       /* NULL: none */
	bool directory_registered;
	uint32_t directory_refused;  /* shares the directory refused to register (its limits) */
	bool flood;                  /* the flood fields below are set */
	size_t flood_neighbors;
	struct flood_stats flood_stats;
	struct ctl_peer_status *peers;         /* room for CTL_STATUS_PEERS_MAX */
	size_t npeers;
	struct ctl_transfer_status *transfers; /* room for CTL_STATUS_TRANSFERS_MAX */
	size_t ntransfers;
	uint64_t bytes_up, bytes_down, wire_up, wire_down, lookups, lookup_msgs;
	uint64_t rate_up, rate_down;  /* chunk bytes per second over the last seconds */
};

/* The status as `peernet status --json` prints it: node_id, listen, port,
 * discovery, directory (if any), flood (if on), peers, the first max_shares
 * shares of store (NULL: none), shares_total, transfers, totals, rates. A new
 * reference, or NULL when out of memory. */
json_t *ctl_status_json(const struct ctl_status *st, const struct store *store, size_t max_shares);
/* The whole document as the control socket and the status page give it: a
 * snapshot filled by status_cb, then ctl_status_json with up to
 * CTL_STATUS_SHARES_MAX shares. A new reference, or NULL (out of memory). */
json_t *ctl_status_document(void (*status_cb)(void *ud, struct ctl_status *out), void *ud,
			    const struct store *store);

/* The report (peernet.h) as a JSON object: what pn_node_report_json
 * writes. A new reference, or NULL (out of memory). In ctl_render.c. */
json_t *pn__node_report_value(const struct pn_node_report *r);

struct ctl_get_request {
	struct pn_cid cid;
	const char *out_path;        /* "": CWD/name of the content */
	const char *cwd;
	bool to_stdout, force;
};

/* The node's commands. Each request ends with ctl_finish() on its client,
 * called by this layer for the synchronous ones (add, status, stop) and by
 * the node for get and search, possibly much later. */
struct ctl_ops {
	void *ud;
	/* Starts or joins a download: the node answers with ctl_progress,
	 * ctl_got and ctl_finish. An error return is reported here. */
	int (*get_cb)(void *ud, struct ctl_client *cc, const struct ctl_get_request *req);
	/* Starts a search: the node answers with ctl_result and ctl_finish. */
	void (*search_cb)(void *ud, struct ctl_client *cc, const char *query);
	/* Shares a file: PN_OK or PN_EEXIST with *out set, or an error. */
	int (*add_cb)(void *ud, const char *path, const struct store_object **out);
	void (*status_cb)(void *ud, struct ctl_status *out);
	void (*stop_cb)(void *ud);
	/* cc is going away: drop every reference to it. */
	void (*client_gone_cb)(void *ud, struct ctl_client *cc);
};

struct ctl_server_opts {
	uv_loop_t *loop;
	const char *path;            /* the socket; copied */
	struct store *store;         /* listed by status; borrowed */
	struct ctl_ops ops;
};

/* Listens on opts->path (a socket left by a node that died is replaced).
 * PN_OK, or an error with one line in err: PN_EEXIST (another node runs,
 * or the path is not a socket), PN_EINVAL (path too long), PN_EIO, PN_ENOMEM;
 * then nothing is left to free (a handle already open closes from the loop). */
PN_MUST_CHECK int ctl_server_new(const struct ctl_server_opts *opts, struct ctl_server **out, char *err,
				 size_t errlen);
/* Ends every request in progress with "the node is stopping" and stops
 * listening; the clients close from the loop, and once every handle has
 * closed, closed(ud) runs (then ctl_server_free may be called). */
void ctl_server_close(struct ctl_server *cs, void (*closed)(void *ud), void *ud);
/* Once the loop has run the close callbacks: removes the socket file and
 * frees. NULL is fine. */
void ctl_server_free(struct ctl_server *cs);

/* Replies (nothing once the client is closing). */
void ctl_result(struct ctl_client *cc, const struct pn_cid *cid, uint32_t providers, const char *name,
		size_t name_len);
void ctl_progress(struct ctl_client *cc, uint64_t have, uint64_t total, uint32_t peers, const char *name);
/* get -o -: the first `upto` bytes of the content are verified and readable
 * at path (the partial download, or the object once complete). */
void ctl_stream(struct ctl_client *cc, const char *path, uint64_t upto);
void ctl_got(struct ctl_client *cc, const struct pn_cid *cid, const char *name, const char *path, uint64_t down,
	     uint64_t resumed, double secs, unsigned peers);
/* Ends the answer: "ok" when err_fmt is NULL, else "err MESSAGE"; then closes. */
void ctl_finish(struct ctl_client *cc, const char *err_fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
