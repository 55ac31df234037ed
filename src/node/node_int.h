/* Private to src/node/node.c, node_get.c and node_api.c: a peer-to-peer
 * node's state, shared by
 *   node_api.c  what the outside asks: pn_node_new/start and the pn_node_*
 *               calls, the control socket's requests, the status page's;
 *   node.c      the running node: peers and connections, the peer engine's
 *               driver, discovery, searches, the one timer, stop and close;
 *   node_get.c  downloads and their waiters (pn_download): start or join,
 *               stream, deliver, complete or fail, look up providers again.
 * Calls go one way, node_api.c -> node.c -> node_get.c (and node_api.c ->
 * node_get.c): node_get.c never arms the timer, its callers kick the node
 * (node__kick). Not part of any API. */
#ifndef PN_NODE_NODE_INT_H
#define PN_NODE_NODE_INT_H
#ifndef PN_INTERNAL
#error "an internal header of libpeernet: a program includes <peernet.h> only"
#endif
#ifndef PN_NODE_IMPL
#error "node_int.h is private to src/node/node.c, node_get.c and node_api.c"
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include "node/node.h"
#include "node/node_ctl.h"
#include "node/node_dir.h"
#include "node/node_flood.h"
#include "node/node_dht.h"
#include "net/net.h"
#include "proto/engine.h"
#include "proto/prng.h"
#include "store/store.h"
#include "util/ratemeter.h"

#define NODE_MAX_DOWNLOADS ENGINE_MAX_DOWNLOADS
#define NODE_DEFAULT_PEER_TIMEOUT_MS 30000
#define NODE_PATH_MAX 4096

struct http_server;

/* One connection to another node (or a client or a server). What it knows
 * about transfers lives in the peer engine, and what flooding knows of it in
 * the flood node, both under the same key. */
struct peer {
	struct pn_node *node;
	struct pn_conn *conn;
	struct peer *next;
	uint32_t key;
	uint8_t id[PN_ID_BYTES];
	char addr[PN_ADDR_STR_MAX];   /* dialled address, or where it came from */
	bool outgoing, hello;         /* hello: the engine accepted its HELLO */
	uint8_t role;
	uint16_t listen_port;         /* from their HELLO */
	bool seed_server;             /* a --seed-server connection */
	struct pn_rate_meter rate;    /* bytes_to and bytes_from */
};

/* Who waits for a download: a handle of the API (pn_node_get) or a client of
 * the control socket, told through its ops. */
struct waiter_ops {
	void (*progress)(struct pn_download *w, const struct pn_progress *p);
	void (*data)(struct pn_download *w, uint64_t offset, const void *buf, size_t len);
	/* Instead of data: the first `upto` bytes are verified and readable at
	 * path (for a reader in another process). */
	void (*ready)(struct pn_download *w, const char *path, uint64_t upto);
	/* The end: err PN_OK and r, or an error and why. The waiter is freed after. */
	void (*done)(struct pn_download *w, int err, const struct pn_download_result *r, const char *why);
};

struct pn_download {
	struct pn_node *node;
	struct download *dl;          /* NULL once finished or for content already held */
	const struct waiter_ops *ops; /* NULL: detached (its control client went away), the download goes on */
	void *user;
	struct pn_cid cid;
	unsigned flags;               /* PN_GET_* */
	char *path;                   /* the file to write; NULL: none (or into dir) */
	char *dir;                    /* write DIR/NAME; NULL: none */
	uint64_t streamed;            /* bytes handed to ops->data so far */
	bool canceled;                /* pn_download_cancel: finished from the loop */
	int err;                      /* set once finishing (the ready list) */
	char *why;
	struct pn_download *next;
};

/* A search of the API or of a control client. */
struct search_ops {
	void (*result)(struct pn_search *s, const struct pn_search_hit *hit);
	void (*done)(struct pn_search *s, int err, const char *why);
};

struct pn_search {
	struct pn_node *node;
	const struct search_ops *ops;
	void *user;
	void (*api_result)(void *ud, const struct pn_search_hit *hit);
	void (*api_done)(void *ud, int err, const char *why);
	bool pending;                 /* waits for discovery to come up */
	bool running;                 /* with the discovery method */
	bool canceled;
	uint64_t deadline_ms;         /* pending: --peer-timeout after it came */
	char query[PN_DIR_QUERY_MAX + 1];
	struct pn_search *next;
};

struct download {
	struct pn_node *node;
	struct download *next;
	struct pn_cid cid;
	char name[PN_NAME_MAX + 1];
	struct store_partial *part;
	bool have_meta;
	uint64_t started_ms, last_find_ms;
	uint64_t bytes_resumed;
	struct pn_download *waiters;
	bool finding;                 /* a look-up is outstanding */
	bool looked_up;               /* a look-up has gone out to the directory */
	bool done;
	uint32_t providers_seen;
};

/* The config as the node keeps it: a copy, every string owned. */
struct node_config {
	struct pn_node_config c;
	char **bootstrap, **seed_servers;
};

struct pn_node {
	uv_loop_t *loop;
	struct node_config conf;
	const struct pn_node_config *cfg; /* &conf.c */
	struct pn_node_events ev;
	struct pn_logger log;         /* ev.log at cfg->log_level; cb NULL: silent */
	char error[PN_NODE_ERR_MAX];  /* pn_node_error */
	enum { NODE_NEW, NODE_STARTED, NODE_CLOSING } state;
	unsigned closing_handles;     /* close callbacks still to come */
	void (*closed_cb)(void *ud);
	void *closed_ud;
	struct pn_download *ready;    /* waiters to finish from the loop */
	struct pn_search *searches;   /* every search not yet done */
	bool kick;                    /* node_kick: tick at once */
	bool have_id;                 /* id loaded */
	bool started;                 /* pn_node_start succeeded */
	unsigned in_user;             /* inside a callback of the program: a close waits for the loop */
	bool close_pending;
	struct pn_identity id;
	struct store *store;
	struct pn_net *net;
	uint16_t port;
	char control_path[NODE_PATH_MAX];
	struct ctl_server *ctl;
	struct dir_client *dir;       /* directory discovery, else NULL */
	struct flood_node *flood;     /* flood discovery, else NULL */
	struct dht_node *dht;         /* DHT discovery, else NULL */
	uv_timer_t tick;              /* one timer, armed at the soonest wake-up (node_schedule) */
	bool timer_on;
	bool stopping;
	struct peer *peers;
	uint32_t next_key;
	struct download *downloads;
	struct engine *engine;        /* every transfer, with every peer */
	struct pn_conn_cbs peer_cbs;  /* every peer connection's callbacks */
	struct engine_store_ops store_ops;
	uint8_t *out;                 /* scratch for one outgoing frame */
	size_t out_cap;
	struct pn_prng rng;
	uint64_t seed_server_next_ms;
	uint64_t last_progress_ms;    /* progress lines to control clients, 4 a second */
	uint64_t dir_since_ms;        /* when the node last registered with the directory */
	uint8_t *stream_buf;          /* one chunk, for PN_GET_STREAM (allocated on first use) */
	struct pn_rate_meter rate;    /* the engine's bytes_up and bytes_down */
	uint64_t rate_sampled_ms;
	struct http_server *http;     /* the status page, or NULL */
};
static inline uint64_t node_now(const struct pn_node *n) { return uv_now(n->loop); }

static inline void cid_str(const struct pn_cid *cid, char out[PN_CID_STR_LEN + 1]) { pn_cid_format(cid, out); }

/* node.c */
/* Runs the tick from the loop as soon as possible. */
void node__kick(struct pn_node *n);
void node__tick_cb(uv_timer_t *t);
/* One line for pn_node_error. */
void node__set_err(struct pn_node *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void node__config_free(struct node_config *c);
/* Discovery as the config says, reporting to n (node.c's callbacks). */
int node__discovery_setup(struct pn_node *n);
bool node__discovery_ready(const struct pn_node *n);
/* Every peer connection's callbacks, and what the engine may ask of the node. */
int node__peer_frame_cb(struct pn_conn *c, const uint8_t *body, size_t len);
void node__peer_established_cb(struct pn_conn *c);
void node__peer_writable_cb(struct pn_conn *c);
void node__peer_close_cb(struct pn_conn *c, int err);
const struct pn_conn_cbs *node__accept_cb(struct pn_net *net, struct pn_conn *c);
bool node__store_lookup_cb(void *ud, const struct pn_cid *cid, struct engine_content *out);
uint64_t node__backlog_cb(void *ud);
/* Searches of the API and of control clients (each kicks the node itself). */
int node__search(struct pn_node *n, const char *query, const struct search_ops *ops, void *user,
		 struct pn_search **out, char *why, size_t whylen);
void node__search_cancel(struct pn_search *sr);
/* Adds path to the store and offers it: PN_OK, PN_EEXIST (held already) with *out, or an error. */
int node__share(struct pn_node *n, const char *path, const struct store_object **out);

/* node_get.c */
struct download *node__download_find(struct pn_node *n, const struct pn_cid *cid);
int node__count_downloads(const struct pn_node *n);
int node__get(struct pn_node *n, const struct pn_cid *cid, const char *path, const char *dir, unsigned flags,
	      const struct waiter_ops *ops, void *user, struct pn_download **out, char *why, size_t whylen);
bool node__waiters_run(struct pn_node *n);
void node__waiter_done(struct pn_download *w, int err, const struct pn_download_result *r, const char *why);
void node__download_free(struct download *d);
void node__download_fail(struct download *d, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The engine's actions for a download: its hash list, a chunk to write, its end. */
void node__download_hashes(struct pn_node *n, struct download *d, const uint8_t *hashes, uint32_t len);
void node__write_chunk(struct pn_node *n, const struct peer *p, const struct engine_action *a);
void node__download_complete(struct download *d);
void node__report_progress(struct pn_node *n);
bool node__waiters_want_progress(const struct pn_node *n);
uint64_t node__download_refind_at(struct pn_node *n, const struct download *d);
void node__find_after_offer(struct pn_node *n, struct download *d);
void node__refind(struct pn_node *n, uint64_t now);

#endif
