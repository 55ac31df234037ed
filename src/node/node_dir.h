/* A node's client of the central look-up service (peernet directory):
 * register, offer, find, search, heartbeat, and register again with backoff
 * after the directory comes back.
 *
 * It knows nothing of downloads or control clients: answers go up through
 * struct discovery_events. Every entry point takes the time; the owner calls
 * dir_client_tick() at dir_client_next_wakeup(). */
#ifndef PN_NODE_DIR_H
#define PN_NODE_DIR_H
#ifndef PN_INTERNAL
#error "an internal header of libpeernet: a program includes <peernet.h> only"
#endif

#include <stdbool.h>
#include <stdint.h>
#include "node/discovery.h"
#include "util/log.h"
#include "wire/wire.h"

struct dir_client;
struct pn_net;
struct store;

#define DIR_BACKOFF_MIN_MS 500    /* first reconnect delay, and again after each registration */
#define DIR_BACKOFF_MAX_MS 10000  /* the delay doubles up to this */
#define DIR_BACKOFF_JITTER_MS 250 /* plus up to this much at random */
#define DIR_DEFAULT_HEARTBEAT_MS 10000
#define DIR_PENDING_MAX 64        /* requests waiting for an answer; beyond, the oldest is forgotten */
#define DIR_OFFERS_TRACKED 64     /* offer requests remembered until answered (to count refusals) */

/* The one connection to the directory. The default (all NULL) is a TLS
 * connection through opts.net; a test hands its own and calls
 * dir_client_connected(), dir_client_on_msg() and dir_client_closed(). */
struct dir_transport {
	void *ud;
	/* Starts a connection to addr: PN_OK (dir_client_connected() or
	 * dir_client_closed() follows) or an error (nothing follows). */
	int (*connect_cb)(void *ud, const char *addr);
	/* Sends m: PN_OK, or an error (the connection is then closing). */
	int (*send_cb)(void *ud, const struct pn_msg *m);
	/* Closes the connection; dir_client_closed() follows. */
	void (*close_cb)(void *ud);
};

struct dir_client_opts {
	const char *directory;       /* "host:port"; not copied: must outlive the client */
	const char *announce_host;   /* registered host; NULL: as the directory sees us */
	uint16_t port;               /* where peers reach this node */
	struct pn_net *net;          /* for the default transport */
	struct store *store;         /* what is offered on registration (borrowed) */
	const struct pn_logger *log; /* borrowed; NULL: silent */
	uint64_t seed;               /* the backoff's jitter */
	struct discovery_events events;
	struct dir_transport transport; /* connect_cb NULL: TLS through net */
};

/* NULL when out of memory. The caller frees it with dir_client_free(). */
struct dir_client *dir_client_new(const struct dir_client_opts *opts);
/* Says BYE if registered and closes the connection; no event follows, and
 * tick does nothing more. */
void dir_client_stop(struct dir_client *dc);
/* Frees the client. With the default transport call it once the loop has
 * run the connection's close callback (after dir_client_stop and uv_run). */
void dir_client_free(struct dir_client *dc);

/* Connects when due (with backoff) and sends heartbeats. */
void dir_client_tick(struct dir_client *dc, uint64_t now);
/* When tick next has something to do (UINT64_MAX: nothing). */
uint64_t dir_client_next_wakeup(const struct dir_client *dc);

/* Registered, so find, search and offer go out. */
bool dir_client_ready(const struct dir_client *dc);
/* Why the directory is not reachable ("" while it is). */
const char *dir_client_last_error(const struct dir_client *dc);
/* Shares the directory refused to register (ERROR LIMIT) since the last registration. */
uint32_t dir_client_refused(const struct dir_client *dc);
/* Look-ups sent, and the messages they cost (request and answer). */
void dir_client_stats(const struct dir_client *dc, uint64_t *lookups, uint64_t *messages);

/* Asks who provides cid: providers_cb then lookup_done_cb follow.
 * PN_ECLOSED when not registered. */
int dir_client_find(struct dir_client *dc, const struct pn_cid *cid);
/* Searches names: search_result_cb for each match, then search_done_cb,
 * with token. PN_ECLOSED when not registered, PN_EINVAL for an empty or
 * too long query. */
int dir_client_search(struct dir_client *dc, const char *query, void *token);
/* Forgets the searches of token: no callback names it any more. */
void dir_client_search_cancel(struct dir_client *dc, void *token);
/* Offers one more content (nothing when not registered or name is empty). */
void dir_client_offer(struct dir_client *dc, const struct pn_cid *cid, const char *name);
/* Tells the directory this node no longer offers cid (nothing if not registered). */
void dir_client_withdraw(struct dir_client *dc, const struct pn_cid *cid);

/* The transport's events (the default transport calls them itself). */
void dir_client_connected(struct dir_client *dc);
/* A message from the directory: PN_OK, or PN_EPROTO to close the connection. */
int dir_client_on_msg(struct dir_client *dc, const struct pn_msg *m);
void dir_client_closed(struct dir_client *dc, int err, uint64_t now);

#endif
