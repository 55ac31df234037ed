/* Private to src/node: the parts of a peer node shared by node.c (peers and
 * transfers), node_dir.c (the directory client) and node_ctl.c (the control
 * socket). */
#ifndef PN_NODE_INT_H
#define PN_NODE_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>
#include "node/node.h"
#include "crypto/crypto.h"
#include "net/net.h"
#include "proto/engine.h"
#include "proto/flood.h"
#include "store/store.h"
#include "wire/wire.h"

#define NODE_TIMER_MIN_MS 20     /* the timer never fires sooner than this after it is armed */
#define NODE_TIMER_MAX_MS 1000   /* ... nor later (a safety net for an event that forgot to re-arm) */
#define NODE_PROGRESS_MS 250     /* progress lines to waiting control clients */
#define NODE_MAX_PEERS 128
#define NODE_MAX_DOWNLOADS ENGINE_MAX_DOWNLOADS
#define NODE_DEFAULT_PEER_TIMEOUT_MS 30000
#define NODE_REFIND_MS 2000       /* ask the directory for more providers this often while downloading */
#define NODE_REFIND_EARLY_MS 300  /* ... and this often during its first NODE_EARLY_MS */
#define NODE_EARLY_MS 3000
#define NODE_REFIND_FLOOD_MS 5000 /* flood mode: re-query this often while no provider is connected */
#define NODE_REFIND_FLOOD_EARLY_MS 1000 /* ... and this often during the first NODE_EARLY_MS */
#define CTL_LINE_MAX 8192
#define NODE_SEED_SERVER_RETRY_MS 5000

struct node;
struct download;
struct ctl_client;

/* One connection to another node (or a client or a server). What it knows
 * about transfers lives in the peer engine under the same key. */
struct peer {
	struct node *node;
	struct pn_conn *conn;
	struct peer *next;
	uint32_t key;
	uint8_t id[PN_ID_BYTES];
	char addr[PN_ADDR_STR_MAX];   /* dialled address, or where it came from */
	bool outgoing, hello;         /* hello: the engine accepted its HELLO */
	uint8_t role;
	uint16_t listen_port;         /* from their HELLO */
	bool want_neighbor;           /* we dialled it to be a flood neighbour */
	bool neighbor;                /* a flood neighbour link */
	bool seed_server;             /* a --seed-server connection */
	int cand;                     /* index in node->cands it was dialled from, -1 */
};

/* A node we might take as a flood neighbour. */
#define NODE_MAX_CANDS 256
struct cand {
	char addr[PN_ADDR_STR_MAX];
	uint8_t id[PN_ID_BYTES];
	bool id_known, good, busy;    /* good: was a neighbour once; busy: a connection exists */
	uint32_t fails;
	uint64_t next_try_ms;
};

/* A query this node started through the flood core. */
#define NODE_MAX_FLOOD_RESULTS 100
struct fresult {
	struct pn_cid cid;
	char name[PN_NAME_MAX + 1];
	uint32_t providers;
	uint8_t last_node[PN_ID_BYTES];
};
struct fquery {
	uint32_t handle;
	struct ctl_client *client;    /* search: who asked */
	struct pn_cid cid;            /* get: what for */
	bool is_get;
	struct fresult *results;
	int nresults;
	uint32_t hits;
	struct fquery *next;
};

struct ctl_waiter {
	struct ctl_client *client;
	char out_path[4096];          /* "": CWD/name of the content */
	char cwd[4096];
	bool to_stdout, force;
	struct ctl_waiter *next;
};

struct download {
	struct node *node;
	struct download *next;
	struct pn_cid cid;
	char name[PN_NAME_MAX + 1];
	struct store_partial *part;
	bool have_meta;
	uint64_t started_ms, last_find_ms;
	uint64_t bytes_resumed;
	struct ctl_waiter *waiters;
	bool finding;                 /* a DIR_FIND is outstanding */
	bool done;
	uint32_t providers_seen;
};

#define DIR_PENDING_MAX 64
enum pending_kind { PEND_FIND = 1, PEND_SEARCH };

/* A request to the directory waiting for its answer. */
struct pending {
	uint32_t req_id;
	enum pending_kind kind;
	struct pn_cid cid;
};

struct ctl_client {
	struct node *node;
	uv_pipe_t pipe;
	struct ctl_client *next;
	char buf[CTL_LINE_MAX];
	size_t len;
	bool handled, closing;
	/* search in progress */
	uint32_t search_req;
};

struct node {
	uv_loop_t *loop;
	struct pn_node_opts opts;
	struct pn_identity id;
	struct store *store;
	struct pn_net *net;
	uint16_t port;
	char control_path[4096];
	uv_pipe_t ctl_server;
	bool ctl_listening;
	struct ctl_client *ctl_clients;
	uv_timer_t tick;              /* one timer, armed at the soonest wake-up (node_schedule) */
	bool timer_on;
	uv_signal_t sig_int, sig_term;
	bool stopping;
	struct peer *peers;
	uint32_t next_key;
	struct download *downloads;
	struct engine *engine;        /* every transfer, with every peer */
	uint8_t *out;                 /* scratch for one outgoing frame */
	size_t out_cap;
	uint64_t lookups, lookup_msgs;
	uint64_t rng;
	uint64_t seed_server_next_ms;
	/* directory client */
	struct pn_conn *dir_conn;
	bool dir_connected, dir_registered;
	uint32_t dir_heartbeat_ms;
	uint64_t dir_next_attempt_ms, dir_backoff_ms, dir_last_ping_ms;
	uint32_t next_req;
	char dir_last_error[256];
	struct pending dir_pending[DIR_PENDING_MAX];
	int dir_npending;
	/* flood discovery */
	struct flood *flood;
	struct cand cands[NODE_MAX_CANDS];
	int ncands;
	struct fquery *fqueries;
	uint64_t flood_next_peers_req_ms, flood_next_save_ms, flood_warned_ms;
	uint64_t last_progress_ms;     /* progress lines to control clients, 4 a second */
	bool peers_dirty;
};

/* What the control socket shows: snapshots, so it never walks node lists. */
struct node_peer_status {
	uint8_t id[PN_ID_BYTES];
	char addr[PN_ADDR_STR_MAX];
	bool outgoing, neighbor, seed_server;
	struct engine_peer_info e;
};
struct node_transfer_status {
	struct pn_cid cid;
	char name[PN_NAME_MAX + 1];
	uint32_t chunks, have;
	uint64_t bytes_down;
};

/* node.c */
/* Fill out[] (at most max) and return how many. */
size_t node_peers_snapshot(struct node *n, struct node_peer_status *out, size_t max);
size_t node_transfers_snapshot(struct node *n, struct node_transfer_status *out, size_t max);
void node_totals(struct node *n, uint64_t *bytes_up, uint64_t *bytes_down);
int node_send(struct node *n, struct pn_conn *c, const struct pn_msg *m);
struct peer *node_peer_by_id(struct node *n, const uint8_t id[PN_ID_BYTES]);
struct peer *node_peer_by_key(struct node *n, uint32_t key);
struct peer *node_peer_new(struct node *n, struct pn_conn *c, bool outgoing, const uint8_t *id);
/* Runs every action the engine has pending. Call after every engine input. */
void node_pump(struct node *n);
uint64_t node_rand(struct node *n);
/* Arms the node's one timer at the soonest time any part needs it. */
void node_schedule(struct node *n);
extern const struct pn_conn_cbs node_peer_cbs;
void node_connect_provider(struct node *n, const uint8_t id[PN_ID_BYTES], const char *addr, const struct pn_cid *cid);
struct download *node_download_find(struct node *n, const struct pn_cid *cid);
void node_download_providers(struct node *n, const struct pn_cid *cid, uint32_t total);
int node_start_get(struct node *n, struct ctl_client *cc, const struct pn_cid *cid, const char *out_path,
		   const char *cwd, bool to_stdout, bool force);
void node_stop(struct node *n);
uint64_t node_now(struct node *n);

/* node_flood.c */
int flood_setup(struct node *n);
void flood_teardown(struct node *n);
void flood_node_tick(struct node *n, uint64_t now);
uint64_t flood_node_next_wakeup(struct node *n, uint64_t now);
/* HELLO arrived from p: decides whether p becomes a neighbour. false: p was closed. */
bool flood_on_hello(struct node *n, struct peer *p, const struct pn_msg_hello *h);
void flood_peer_closed(struct node *n, struct peer *p);
/* Handles PEERS_REQ, PEERS, QUERY, QUERY_HIT; other types return PN_ENOTSUP. */
int flood_on_msg(struct node *n, struct peer *p, const struct pn_msg *m, const uint8_t *body, size_t len);
int flood_find(struct node *n, const struct pn_cid *cid);
int flood_search(struct node *n, struct ctl_client *cc, const char *query);
bool flood_ready(struct node *n);
void flood_ctl_gone(struct node *n, struct ctl_client *cc);
uint32_t flood_hello_features(struct node *n, struct peer *p);

/* node_dir.c */
void dir_client_tick(struct node *n, uint64_t now);
uint64_t dir_client_next_wakeup(struct node *n);
bool dir_client_ready(struct node *n);
int dir_client_find(struct node *n, const struct pn_cid *cid);
int dir_client_search(struct node *n, const char *query, uint32_t *req_id);
void dir_client_offer(struct node *n, const struct pn_cid *cid, const char *name);
void dir_client_close(struct node *n);

/* node_ctl.c */
int ctl_listen(struct node *n);
void ctl_close_all(struct node *n);
void ctl_reply(struct ctl_client *cc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ctl_finish(struct ctl_client *cc, const char *err_fmt, ...) __attribute__((format(printf, 2, 3)));
void ctl_search_results(struct node *n, const struct pn_msg_dir_results *m);
void ctl_search_failed(struct node *n, uint32_t req_id, const char *why);
void ctl_client_gone(struct node *n, struct ctl_client *cc);

#endif
