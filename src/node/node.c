/* A peer-to-peer node: peers, downloads, the control of the peer engine. See node.h.
 *
 * Every transfer decision lives in the sans-I/O peer engine (src/proto/engine.c);
 * this file hands it what the network and the store say, and carries out what
 * it asks: send, read a chunk, verify and write a chunk, dial, close.
 *
 * It is the top of src/node: it owns the peer connections and the downloads,
 * and wires the parts below it, each of which calls back only through the
 * function pointers given here: discovery (node_dir.c, node_flood.c) reports
 * through struct discovery_events, flooding reaches the peers through struct
 * flood_peer_ops, and the control socket (node_ctl.c) asks through struct
 * ctl_ops and is answered with ctl_result/ctl_progress/ctl_got/ctl_finish. */
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>
#include <net/if.h>
#include <uv.h>
#include "node/node.h"
#include "node/node_ctl.h"
#include "node/node_dir.h"
#include "node/node_flood.h"
#include "crypto/crypto.h"
#include "http/http.h"
#include "net/conn_limit.h"
#include "net/net.h"
#include "proto/engine.h"
#include "proto/prng.h"
#include "store/store.h"
#include "util/ratemeter.h"
#include "wire/wire.h"

#define NODE_TIMER_MIN_MS 20     /* the timer never fires sooner than this after it is armed */
#define NODE_TIMER_MAX_MS 1000   /* ... nor later (a safety net for an event that forgot to re-arm) */
#define NODE_PROGRESS_MS 250     /* progress lines to waiting control clients */
#define NODE_MAX_PEERS 128
#define NODE_OUTBOUND_RESERVED 32 /* of NODE_MAX_PEERS, kept for peers the node dials: floods cannot take them */
#define NODE_MAX_DOWNLOADS ENGINE_MAX_DOWNLOADS
#define NODE_DEFAULT_PEER_TIMEOUT_MS 30000
#define NODE_REFIND_MS 2000       /* ask the directory for more providers this often while downloading */
#define NODE_REFIND_EARLY_MS 300  /* ... and this often during its first NODE_EARLY_MS */
#define NODE_EARLY_MS 3000
#define NODE_RECHOKE_MS 1000      /* the choker re-ranks peers this often, */
#define NODE_OPTIMISTIC_MS 500    /* and moves the optimistic unchoke this often */
/* After (re)joining the directory an empty answer is not final yet: the
 * providers come back within their own reconnect backoff. */
#define NODE_DIR_SETTLE_MS (DIR_BACKOFF_MAX_MS + DIR_BACKOFF_JITTER_MS)
#define NODE_PENDING_SEARCHES 16   /* searches waiting for discovery to come up, at most */
#define NODE_UPLOAD_AHEAD_MS 100 /* under a fast upload cap, chunks handed to connections ahead of it */
#define NODE_REFIND_FLOOD_MS 5000 /* flood mode: re-query this often while no provider is connected */
#define NODE_REFIND_FLOOD_EARLY_MS 1000 /* ... and this often during the first NODE_EARLY_MS */
#define NODE_SEED_SERVER_RETRY_MS 5000
#define NODE_PATH_MAX 4096

static_assert(NODE_MAX_PEERS <= CTL_STATUS_PEERS_MAX, "a status shows every peer");
static_assert(NODE_MAX_DOWNLOADS <= CTL_STATUS_TRANSFERS_MAX, "a status shows every download");


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

static uint64_t node_now(const struct pn_node *n) { return uv_now(n->loop); }

static void cid_str(const struct pn_cid *cid, char out[PN_CID_STR_LEN + 1]) { pn_cid_format(cid, out); }

static void node_schedule(struct pn_node *n);
static void tick_cb(uv_timer_t *t);
static void node_close_now(struct pn_node *n);

/* Runs the tick from the loop as soon as possible: for what a call into the
 * node started and must not finish from inside that call. */
static void node_kick(struct pn_node *n)
{
	n->kick = true;
	if (n->timer_on && !n->stopping)
		uv_timer_start(&n->tick, tick_cb, 0, 0);
}

/* ------------------------------------------------------------ peers */

static struct peer *peer_by_id(struct pn_node *n, const uint8_t id[PN_ID_BYTES])
{
	for (struct peer *p = n->peers; p; p = p->next)
		if (p->hello && !memcmp(p->id, id, PN_ID_BYTES))
			return p;
	return NULL;
}

static struct peer *peer_by_key(struct pn_node *n, uint32_t key)
{
	for (struct peer *p = n->peers; p; p = p->next)
		if (p->key == key)
			return p;
	return NULL;
}

static size_t peer_count(struct pn_node *n)
{
	size_t c = 0;
	for (struct peer *p = n->peers; p; p = p->next)
		c++;
	return c;
}

/* A new connection's peer, known to the engine under its key. NULL when out
 * of memory or when the engine refuses the ID (banned). */
static struct peer *peer_new(struct pn_node *n, struct pn_conn *c, bool outgoing, const uint8_t *id)
{
	struct peer *p = calloc(1, sizeof *p);
	if (!p)
		return NULL;
	p->node = n;
	p->conn = c;
	p->outgoing = outgoing;
	p->key = ++n->next_key;
	if (id)
		memcpy(p->id, id, PN_ID_BYTES);
	if (engine_peer_add(n->engine, p->key, outgoing, id, node_now(n)) != PN_OK) {
		free(p);
		return NULL;
	}
	p->next = n->peers;
	n->peers = p;
	return p;
}

static void peer_unlink(struct pn_node *n, struct peer *p)
{
	struct peer **pp = &n->peers;
	while (*pp && *pp != p)
		pp = &(*pp)->next;
	if (*pp)
		*pp = p->next;
}

/* Dials addr (pinning id unless NULL): PN_OK with *out, the new peer, or
 * the error (nothing is left behind then); PN_ENOMEM also when the engine
 * refuses the ID (banned). */
static int peer_dial(struct pn_node *n, const char *addr, const uint8_t *id, struct peer **out)
{
	*out = NULL;
	struct peer *p = peer_new(n, NULL, true, id);
	if (!p)
		return PN_ENOMEM;
	snprintf(p->addr, sizeof p->addr, "%s", addr);
	struct pn_conn *c;
	int r = pn_net_connect(n->net, addr, id, &n->peer_cbs, p, &c);
	if (r != PN_OK) {
		engine_peer_closed(n->engine, p->key, node_now(n));
		peer_unlink(n, p);
		free(p);
		return r;
	}
	p->conn = c;
	*out = p;
	return PN_OK;
}

/* ------------------------------------------------------------ downloads */

static struct download *download_find(struct pn_node *n, const struct pn_cid *cid)
{
	for (struct download *d = n->downloads; d; d = d->next)
		if (!d->done && !memcmp(&d->cid, cid, sizeof *cid))
			return d;
	return NULL;
}

static void waiter_free(struct pn_download *w)
{
	free(w->path);
	free(w->dir);
	free(w->why);
	free(w);
}

/* Tells the waiter the end and frees it. */
static void waiter_done(struct pn_download *w, int err, const struct pn_download_result *r, const char *why)
{
	if (w->canceled) {
		err = PN_ECANCELED;
		r = NULL;
		why = "cancelled";
	}
	if (w->ops && w->ops->done)
		w->ops->done(w, err, r, why);
	waiter_free(w);
}

/* Finishes w from the loop (pn_node_get and pn_download_cancel return first). */
static void waiter_defer(struct pn_node *n, struct pn_download *w, int err, const char *why)
{
	w->err = err;
	free(w->why);
	w->why = why ? strdup(why) : NULL;
	w->dl = NULL;
	w->next = n->ready;
	n->ready = w;
	node_kick(n);
}

static void download_free(struct download *d)
{
	struct pn_node *n = d->node;
	struct download **dp = &n->downloads;
	while (*dp && *dp != d)
		dp = &(*dp)->next;
	if (*dp)
		*dp = d->next;
	engine_unwant(n->engine, &d->cid, node_now(n)); /* nothing if it completed */
	if (d->part)
		store_put_release(n->store, d->part);
	while (d->waiters) {
		struct pn_download *w = d->waiters;
		d->waiters = w->next;
		waiter_free(w);
	}
	free(d);
}

static void download_fail(struct download *d, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void download_fail(struct download *d, int err, const char *fmt, ...)
{
	char msg[512], why[640];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	char id[PN_CID_STR_LEN + 1];
	cid_str(&d->cid, id);
	PN_LOGW(&d->node->log, "download %s failed: %s", id, msg);
	snprintf(why, sizeof why, "%s; the partial download is kept and resumes on the next get", msg);
	d->done = true;
	while (d->waiters) {
		struct pn_download *w = d->waiters;
		d->waiters = w->next;
		w->dl = NULL;
		waiter_done(w, err, NULL, why);
	}
	download_free(d);
}

/* Hands a PN_GET_STREAM waiter the verified bytes that follow what it had,
 * from the partial download (part) or the finished object (o). */
static void waiter_stream(struct pn_node *n, struct pn_download *w, struct store_partial *part,
			  const struct store_object *o, const struct pn_cid *cid)
{
	if (!(w->flags & PN_GET_STREAM) || !w->ops || w->err || w->canceled)
		return;
	if (w->ops->ready) { /* only say how far: the reader reads the file itself */
		if (o || !part)
			return; /* complete: the done callback names the object */
		uint64_t was = w->streamed;
		while (w->streamed < cid->size &&
		       store_partial_has_chunk(part, (uint32_t)(w->streamed / PN_CHUNK_SIZE))) {
			uint64_t end = (w->streamed / PN_CHUNK_SIZE + 1) * (uint64_t)PN_CHUNK_SIZE;
			w->streamed = end < cid->size ? end : cid->size;
		}
		if (w->streamed > was)
			w->ops->ready(w, store_partial_data_path(part), w->streamed);
		return;
	}
	if (!w->ops->data)
		return;
	if (!n->stream_buf && !(n->stream_buf = malloc(PN_CHUNK_SIZE)))
		return;
	while (w->streamed < cid->size && !w->err && !w->canceled) {
		uint32_t idx = (uint32_t)(w->streamed / PN_CHUNK_SIZE), len = 0;
		int r;
		if (o)
			r = store_read_chunk(n->store, o, idx, n->stream_buf, &len);
		else if (part && store_partial_has_chunk(part, idx))
			r = store_partial_read_chunk(part, idx, n->stream_buf, &len);
		else
			return;
		if (r != PN_OK) {
			PN_LOGE(&n->log, "reading chunk %u to stream it: %s", idx, pn_strerror(r));
			return;
		}
		uint64_t off = w->streamed - (uint64_t)idx * PN_CHUNK_SIZE;
		if (off >= len)
			return;
		w->streamed += len - off;
		w->ops->data(w, w->streamed - (len - off), n->stream_buf + off, len - off);
	}
}

/* Copies the object's file to path (atomically, without replacing an
 * existing file unless force). Returns 0 or an errno-style message in err. */
static int deliver_file(struct pn_node *n, const struct store_object *o, const char *path, bool force, char *err,
			size_t errlen)
{
	char src[NODE_PATH_MAX + 128], id[PN_CID_STR_LEN + 1], tmp[NODE_PATH_MAX + 32];
	cid_str(&o->cid, id);
	snprintf(src, sizeof src, "%s/objects/%s", n->cfg->data_dir, id);
	if (!force && access(path, F_OK) == 0) {
		snprintf(err, errlen, "%s already exists; use --force to overwrite it", path);
		return -1;
	}
	if (snprintf(tmp, sizeof tmp, "%s.pntmp", path) >= (int)sizeof tmp) {
		snprintf(err, errlen, "output path too long");
		return -1;
	}
	int in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0) {
		snprintf(err, errlen, "cannot read %s: %s", src, strerror(errno));
		return -1;
	}
	/* PATH.pntmp is made afresh, never opened through a link planted there. */
	int out = unlink(tmp) == 0 || errno == ENOENT ? open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644)
						     : -1;
	if (out < 0) {
		snprintf(err, errlen, "cannot write %s: %s", path,
			 errno == EEXIST ? "a file appeared at its temporary name (PATH.pntmp) while it was made" : strerror(errno));
		close(in);
		return -1;
	}
	uint64_t left = o->cid.size;
	int rc = 0;
	while (left > 0) {
		ssize_t k = copy_file_range(in, NULL, out, NULL, left > (1u << 30) ? (1u << 30) : left, 0);
		if (k <= 0) {
			/* Fall back to read/write (e.g. across file systems on old kernels). */
			char buf[65536];
			ssize_t got = read(in, buf, sizeof buf);
			if (got <= 0 || write(out, buf, (size_t)got) != got) {
				rc = -1;
				break;
			}
			k = got;
		}
		left -= (uint64_t)k;
	}
	if (rc == 0 && fsync(out) != 0)
		rc = -1;
	int saved = errno;
	close(in);
	close(out);
	if (rc == 0 && rename(tmp, path) != 0) {
		rc = -1;
		saved = errno;
	}
	if (rc != 0) {
		unlink(tmp);
		snprintf(err, errlen, "cannot write %s: %s", path, strerror(saved));
	}
	return rc;
}

/* The content is held (o): stream what the waiter has not had, write its
 * file if it asked for one, and tell it. */
static void waiter_complete(struct pn_node *n, struct pn_download *w, const struct store_object *o, uint64_t down,
			    uint64_t resumed, double secs, unsigned peers)
{
	waiter_stream(n, w, NULL, o, &o->cid);
	char path[NODE_PATH_MAX + PN_NAME_MAX + 2] = "";
	if (w->path || w->dir) {
		char err[8400];
		int len = w->path ? snprintf(path, sizeof path, "%s", w->path)
				  : snprintf(path, sizeof path, "%s/%s", w->dir, o->name);
		if (len >= (int)sizeof path) {
			waiter_done(w, PN_EINVAL, NULL, "output path too long (the node keeps the file in its store)");
			return;
		}
		if (deliver_file(n, o, path, w->flags & PN_GET_OVERWRITE, err, sizeof err) != 0) {
			char why[8500];
			snprintf(why, sizeof why, "%s (the node keeps the file in its store)", err);
			waiter_done(w, PN_EIO, NULL, why);
			return;
		}
	}
	struct pn_download_result r = {
		.cid = o->cid,
		.name = o->name,
		.path = path,
		.bytes_downloaded = down,
		.bytes_resumed = resumed,
		.seconds = secs,
		.providers = peers,
	};
	waiter_done(w, PN_OK, &r, NULL);
}

static void download_complete(struct download *d)
{
	struct pn_node *n = d->node;
	const struct store_object *o = NULL;
	struct store_partial *part = d->part;
	d->part = NULL;
	int r = store_put_finish(n->store, part, &o);
	if (r != PN_OK) {
		d->part = part;
		download_fail(d, r, "cannot complete the download: %s", pn_strerror(r));
		return;
	}
	char id[PN_CID_STR_LEN + 1];
	cid_str(&d->cid, id);
	double secs = (double)(node_now(n) - d->started_ms) / 1000.0;
	uint64_t down = d->cid.size - d->bytes_resumed;
	unsigned peers = d->providers_seen;
	PN_LOGI(&n->log, "downloaded %s  %s: %llu bytes in %.2f s", id, o->name, (unsigned long long)down, secs);
	d->done = true;
	while (d->waiters) {
		struct pn_download *w = d->waiters;
		d->waiters = w->next;
		w->dl = NULL;
		waiter_complete(n, w, o, down, d->bytes_resumed, secs, peers);
	}
	download_free(d);
}

/* The hash list is complete and verified: record it, re-verify what a
 * previous run left on disk, and let the engine request chunks. */
static void download_hashes(struct pn_node *n, struct download *d, const uint8_t *hashes, uint32_t len)
{
	int r = store_partial_has_hashes(d->part) ? PN_OK
		: store_partial_add_hashes(d->part, 0, len / PN_HASH_BYTES, hashes);
	if (r != PN_OK) {
		download_fail(d, r, "cannot store the hash list: %s", pn_strerror(r));
		return;
	}
	uint64_t ok = 0;
	r = store_partial_verify_existing(d->part, &ok);
	if (r != PN_OK) {
		download_fail(d, r, "cannot read the partial download: %s", pn_strerror(r));
		return;
	}
	d->bytes_resumed = ok;
	engine_hashes_recorded(n->engine, &d->cid, store_partial_bitmap(d->part), node_now(n));
}

/* ------------------------------------------------------------ the engine's actions */

/* Reads the chunk and sends it as one CHUNK frame from the scratch buffer. */
static void send_chunk(struct pn_node *n, struct peer *p, const struct engine_action *a)
{
	uint8_t *data = n->out + PN_FRAME_HDR + PN_CHUNK_MSG_HDR;
	uint32_t len = 0;
	int r;
	const struct store_object *o = store_get(n->store, &a->cid);
	struct download *d = o ? NULL : download_find(n, &a->cid);
	if (o)
		r = store_read_chunk(n->store, o, a->index, data, &len);
	else if (d && d->part && store_partial_has_chunk(d->part, a->index))
		r = store_partial_read_chunk(d->part, a->index, data, &len);
	else
		r = PN_ENOTFOUND;
	if (r == PN_ENOTFOUND) { /* unshared meanwhile */
		(void)pn_conn_send_error(p->conn, a->req_id, PN_WERR_NOT_FOUND, "no longer held");
		engine_chunk_sent(n->engine, p->key, &a->cid, a->index, 0, false, pn_conn_congested(p->conn), node_now(n));
		return;
	}
	if (r != PN_OK) {
		PN_LOGE(&n->log, "reading chunk %u: %s", a->index, pn_strerror(r));
		(void)pn_conn_send_error(p->conn, a->req_id, PN_WERR_INTERNAL, "cannot read the chunk");
		engine_chunk_sent(n->engine, p->key, &a->cid, a->index, 0, false, pn_conn_congested(p->conn), node_now(n));
		return;
	}
#ifdef PN_TEST_CORRUPT
	/* Test-only build (make build/peernet-corrupt): every chunk served is damaged. */
	if (len)
		data[len / 2] ^= 0x5a;
#endif
	pn_chunk_hdr_encode(n->out, a->req_id, &a->cid, a->index, len);
	r = pn_conn_send(p->conn, n->out, PN_FRAME_HDR + PN_CHUNK_MSG_HDR + len);
	engine_chunk_sent(n->engine, p->key, &a->cid, a->index, len, r == PN_OK, r != PN_OK || pn_conn_congested(p->conn),
			  node_now(n));
}

static void write_chunk(struct pn_node *n, const struct engine_action *a)
{
	struct download *d = download_find(n, &a->cid);
	if (!d || !d->part) {
		engine_chunk_written(n->engine, a->peer, &a->cid, a->index, PN_EINVAL, node_now(n));
		return;
	}
	int r = store_partial_write_chunk(d->part, a->index, a->data, a->len);
	if (r == PN_ECORRUPT) {
		struct peer *p = peer_by_key(n, a->peer);
		PN_LOGW(&n->log, "%s sent chunk %u that does not match its hash: peer dropped and refused",
			p ? p->addr : "a peer", a->index);
	}
	engine_chunk_written(n->engine, a->peer, &a->cid, a->index, r, node_now(n));
	if (r != PN_OK && r != PN_ECORRUPT)
		download_fail(d, r, "cannot write the download: %s", pn_strerror(r));
	else if (r == PN_OK)
		for (struct pn_download *w = d->waiters; w; w = w->next)
			waiter_stream(n, w, d->part, NULL, &d->cid);
}

static bool peer_info(const struct pn_node *n, const struct peer *p, struct pn_peer_info *out);

/* events.peer: a peer joined (its HELLO was accepted) or is leaving. */
static void tell_peer(struct pn_node *n, const struct peer *p, bool joined)
{
	struct pn_peer_info pi;
	if (n->ev.peer && peer_info(n, p, &pi)) {
		n->in_user++;
		n->ev.peer(n->ev.ud, n, &pi, joined);
		n->in_user--;
	}
}

static void on_peer_ready(struct pn_node *n, struct peer *p, const struct engine_action *a)
{
	p->hello = true;
	p->role = a->role;
	p->listen_port = a->listen_port;
	pn_conn_set_max_frame(p->conn, PN_FRAME_MAX);
	if (a->role == PN_ROLE_NODE && n->flood) {
		struct flood_peer_hello h = {.key = p->key, .outgoing = p->outgoing, .id = p->id, .addr = p->addr,
					     .listen_port = a->listen_port, .features = a->features};
		(void)flood_node_peer_hello(n->flood, &h, node_now(n));
	}
	tell_peer(n, p, true);
}

static void dial_provider(struct pn_node *n, const struct engine_action *a)
{
	if (peer_count(n) >= NODE_MAX_PEERS)
		return;
	struct peer *p;
	int r = peer_dial(n, a->addr, a->id, &p);
	if (r != PN_OK) {
		if (r != PN_ENOMEM) /* else refused (banned) or out of memory: nothing to say */
			PN_LOGI(&n->log, "cannot dial provider %s: %s", a->addr, pn_strerror(r));
		return;
	}
	engine_peer_offer(n->engine, p->key, &a->cid, node_now(n));
}

/* Runs every action the engine has pending. Call after every engine input. */
static bool discovery_ready(const struct pn_node *n)
{
	return n->flood ? flood_node_ready(n->flood) : n->dir && dir_client_ready(n->dir);
}

/* What a command that waited for discovery was waiting for, in one line. */
static void discovery_waited(const struct pn_node *n, char *out, size_t len)
{
	uint32_t t = n->cfg->peer_timeout_ms ? n->cfg->peer_timeout_ms : NODE_DEFAULT_PEER_TIMEOUT_MS;
	const char *why = n->dir ? dir_client_last_error(n->dir) : "";
	if (n->flood)
		snprintf(out, len, "no flooding neighbour reached in %u s (the bootstrap peers are unreachable); "
			 "the node keeps trying", t / 1000);
	else
		snprintf(out, len, "still no connection to the directory at %s after %u s (last error: %s); "
			 "the node keeps trying", n->cfg->directory ? n->cfg->directory : "(none)", t / 1000,
			 why[0] ? why : "not connected");
}

static void node_pump(struct pn_node *n)
{
	struct engine_action a;
	while (engine_next_action(n->engine, &a)) {
		struct peer *p = a.peer ? peer_by_key(n, a.peer) : NULL;
		struct download *d;
		switch (a.type) {
		case ENGINE_SEND:
			if (p && p->conn)
				(void)pn_conn_send_msg(p->conn, &a.msg);
			break;
		case ENGINE_SEND_CHUNK:
			if (p && p->conn)
				send_chunk(n, p, &a);
			break;
		case ENGINE_WRITE_CHUNK:
			write_chunk(n, &a);
			break;
		case ENGINE_HASHES:
			if ((d = download_find(n, &a.cid)))
				download_hashes(n, d, a.data, a.len);
			break;
		case ENGINE_NAME:
			if ((d = download_find(n, &a.cid)) && !d->have_meta) {
				snprintf(d->name, sizeof d->name, "%s", a.name);
				d->have_meta = true;
				if (store_partial_set_name(d->part, d->name) != PN_OK)
					PN_LOGW(&n->log, "cannot record the name of a download");
				if (n->dir)
					dir_client_offer(n->dir, &d->cid, d->name);
			}
			break;
		case ENGINE_DIAL:
			dial_provider(n, &a);
			break;
		case ENGINE_CLOSE:
			if (p && p->conn) {
				if (a.err && a.err != PN_ECORRUPT)
					PN_LOGI(&n->log, "%s: %s, closing", p->addr, a.why ? a.why : pn_strerror(a.err));
				else if (a.err == PN_ECORRUPT && a.why && strstr(a.why, "hash list"))
					PN_LOGW(&n->log, "%s %s: dropped and refused", p->addr, a.why);
				pn_conn_close(p->conn, a.err);
			}
			break;
		case ENGINE_PEER_READY:
			if (p && p->conn)
				on_peer_ready(n, p, &a);
			break;
		case ENGINE_DONE:
			if ((d = download_find(n, &a.cid)))
				download_complete(d);
			break;
		case ENGINE_STALLED:
			if ((d = download_find(n, &a.cid))) {
				char id[PN_CID_STR_LEN + 1];
				cid_str(&d->cid, id);
				uint32_t t = n->cfg->peer_timeout_ms ? n->cfg->peer_timeout_ms : NODE_DEFAULT_PEER_TIMEOUT_MS;
				char why[PN_NODE_ERR_MAX];
				discovery_waited(n, why, sizeof why);
				if (!d->providers_seen && ((n->flood && !flood_node_ready(n->flood)) ||
							   (!n->flood && n->dir && !d->looked_up)))
					download_fail(d, PN_ETIMEDOUT, "%s", why);
				else
					download_fail(d, PN_ETIMEDOUT, "no provider of %s reachable for %u s", id, t / 1000);
			}
			break;
		case ENGINE_NOT_FOUND:
			break;
		case ENGINE_PEER_ERROR:
			PN_LOGD(&n->log, "%s: error %u from peer", p ? p->addr : "?", a.code);
			break;
		}
	}
	node_schedule(n);
}

/* ------------------------------------------------------------ connections */

static int peer_frame_cb(struct pn_conn *c, const uint8_t *body, size_t len)
{
	struct peer *p = pn_conn_data(c);
	struct pn_node *n = p->node;
	struct pn_msg m;
	int r = pn_msg_decode(body, len, &m);
	if (r != PN_OK) {
		PN_LOGI(&n->log, "%s: malformed message (type 0x%02x, %zu bytes), closing", p->addr, len ? body[0] : 0, len);
		(void)pn_conn_send_error(c, 0, PN_WERR_PROTOCOL, "malformed message");
		return PN_EPROTO;
	}
	r = engine_on_msg(n->engine, p->key, &m, node_now(n));
	if (r == PN_ENOTSUP) {
		if (n->flood)
			r = flood_node_on_msg(n->flood, p->key, &m, body, len, node_now(n));
		if (r == PN_ENOTSUP) {
			PN_LOGI(&n->log, "%s: unexpected message type 0x%02x from a peer, closing", p->addr, m.type);
			(void)pn_conn_send_error(c, 0, PN_WERR_PROTOCOL, "unexpected message");
			r = PN_EPROTO;
		}
	}
	node_pump(n); /* within the frame: a WRITE_CHUNK points into body */
	return r;
}

static void peer_established_cb(struct pn_conn *c)
{
	struct peer *p = pn_conn_data(c);
	struct pn_node *n = p->node;
	memcpy(p->id, pn_conn_peer_id(c), PN_ID_BYTES);
	uint32_t features = n->flood ? flood_node_hello_features(n->flood, p->key, p->outgoing) : 0;
	engine_peer_established(n->engine, p->key, p->id, features, node_now(n));
	node_pump(n);
}

static void peer_writable_cb(struct pn_conn *c)
{
	struct peer *p = pn_conn_data(c);
	engine_peer_writable(p->node->engine, p->key, node_now(p->node));
	node_pump(p->node);
}

static void peer_close_cb(struct pn_conn *c, int err)
{
	struct peer *p = pn_conn_data(c);
	struct pn_node *n = p->node;
	if (err && err != PN_ECLOSED && err != PN_ECORRUPT && err != PN_EPROTO && !pn_conn_evicted(c))
		PN_LOGI(&n->log, "%s: peer connection closed: %s", p->addr, pn_strerror(err));
	if (p->hello && n->state == NODE_STARTED)
		tell_peer(n, p, false);
	engine_peer_closed(n->engine, p->key, node_now(n));
	if (n->flood)
		flood_node_peer_closed(n->flood, p->key, node_now(n));
	peer_unlink(n, p);
	free(p);
	node_pump(n);
}

static const struct pn_conn_cbs *accept_cb(struct pn_net *net, struct pn_conn *c)
{
	struct pn_node *n = pn_net_data(net);
	size_t inbound = 0;
	for (struct peer *p = n->peers; p; p = p->next)
		inbound += !p->outgoing;
	if (n->stopping)
		return NULL;
	/* Inbound share full: the oldest stalled handshake makes room, if any. */
	if (!pn_slots_accept_ok(peer_count(n), inbound, NODE_MAX_PEERS, NODE_OUTBOUND_RESERVED) &&
	    !(peer_count(n) < NODE_MAX_PEERS && pn_net_evict_halfopen(net, c))) {
		pn_net_log_refusal(net, pn_conn_peer_addr(c), "peers already", peer_count(n));
		return NULL;
	}
	struct peer *p = peer_new(n, c, false, NULL);
	if (!p)
		return NULL;
	snprintf(p->addr, sizeof p->addr, "%s", pn_conn_peer_addr(c));
	pn_conn_set_data(c, p);
	pn_conn_set_max_frame(c, ENGINE_HELLO_MAX_BODY);
	return &n->peer_cbs;
}

/* --seed-server: a connection to each `peernet serve` given, used as one more
 * provider of every download (like a BitTorrent web seed). Redialled while down. */
static void seed_servers_tick(struct pn_node *n, uint64_t now)
{
	if (now < n->seed_server_next_ms)
		return;
	n->seed_server_next_ms = now + NODE_SEED_SERVER_RETRY_MS;
	for (size_t i = 0; i < n->cfg->nseed_servers; i++) {
		const char *addr = n->cfg->seed_servers[i];
		bool up = false;
		for (struct peer *p = n->peers; p && !up; p = p->next)
			up = p->seed_server && !strcmp(p->addr, addr);
		if (up || peer_count(n) >= NODE_MAX_PEERS)
			continue;
		struct peer *p;
		if (peer_dial(n, addr, NULL, &p) != PN_OK) {
			PN_LOGI(&n->log, "cannot dial seed server %s", addr);
			continue;
		}
		p->seed_server = true;
	}
}

/* ------------------------------------------------------------ what the engine may ask */

static bool store_lookup_cb(void *ud, const struct pn_cid *cid, struct engine_content *out)
{
	struct pn_node *n = ud;
	return engine_store_lookup(n->store, cid, out);
}

/* Bytes waiting behind the upload cap on every connection, plus the cap's
 * debt for what it already let go. */
static uint64_t backlog_cb(void *ud)
{
	struct pn_node *n = ud;
	uint64_t queued = pn_net_upload_debt(n->net);
	for (struct peer *p = n->peers; p; p = p->next)
		if (p->conn)
			queued += pn_conn_queued(p->conn);
	return queued;
}

/* ------------------------------------------------------------ what discovery reports */

static void providers_cb(void *ud, const struct pn_cid *cid, const struct discovery_provider *p, size_t count,
			 uint32_t total)
{
	struct pn_node *n = ud;
	for (size_t i = 0; i < count; i++) {
		engine_provider(n->engine, p[i].id, p[i].addr, cid, node_now(n));
		node_pump(n);
	}
	struct download *d = download_find(n, cid);
	if (d && total > d->providers_seen)
		d->providers_seen = total;
}

static void lookup_done_cb(void *ud, const struct pn_cid *cid, int err, uint32_t found)
{
	struct pn_node *n = ud;
	struct download *d = download_find(n, cid);
	if (!d)
		return;
	d->finding = false; /* may ask again later */
	if (err == PN_ELIMIT || found > 0 || d->providers_seen > 0 || n->cfg->nseed_servers > 0)
		return;
	/* A directory just (re)joined may not have heard from the providers yet:
	 * ask again (refind) until it has had time to (--peer-timeout still bounds it). */
	if (!n->flood && node_now(n) - n->dir_since_ms < NODE_DIR_SETTLE_MS)
		return;
	struct engine_download_info info;
	if (engine_download_info(n->engine, cid, &info) && info.have_hashes)
		return;
	char id[PN_CID_STR_LEN + 1];
	cid_str(cid, id);
	if (n->flood)
		download_fail(d, PN_ENOTFOUND, "no node within %u hops has %s", n->cfg->ttl ? n->cfg->ttl : FLOOD_DEFAULT_TTL, id);
	else
		download_fail(d, PN_ENOTFOUND, "no node offers %s", id);
}

static void search_result_cb(void *ud, void *token, const struct pn_cid *cid, uint32_t providers, const char *name,
			     size_t name_len)
{
	struct pn_search *sr = token;
	if (sr->canceled || !sr->ops->result)
		return;
	struct pn_search_hit hit = {.cid = *cid, .name = name, .name_len = name_len, .providers = providers};
	sr->ops->result(sr, &hit);
}

/* Unlinks, tells and frees the search. */
static void search_finish(struct pn_search *sr, int err, const char *why)
{
	struct pn_node *n = sr->node;
	struct pn_search **pp = &n->searches;
	while (*pp && *pp != sr)
		pp = &(*pp)->next;
	if (*pp)
		*pp = sr->next;
	if (sr->canceled && err != PN_ECANCELED) {
		err = PN_ECANCELED;
		why = "cancelled";
	}
	if (sr->ops->done)
		sr->ops->done(sr, err, why);
	free(sr);
}

static void search_done_cb(void *ud, void *token, const char *why)
{
	struct pn_search *sr = token;
	sr->running = false;
	if (why) {
		char msg[600];
		snprintf(msg, sizeof msg, "search failed: %s", why);
		search_finish(sr, PN_EIO, msg);
	} else {
		search_finish(sr, PN_OK, NULL);
	}
}

/* The directory took us (back): what is being downloaded is served too. */
static void refind(struct pn_node *n, uint64_t now);
static void pending_searches_run(struct pn_node *n, uint64_t now);

static void registered_cb(void *ud)
{
	struct pn_node *n = ud;
	n->dir_since_ms = node_now(n);
	for (struct download *d = n->downloads; d; d = d->next)
		if (d->have_meta)
			dir_client_offer(n->dir, &d->cid, d->name);
	refind(n, node_now(n)); /* downloads and searches that waited for the directory ask now */
	pending_searches_run(n, node_now(n));
	node_schedule(n); /* the heartbeat the directory asked for starts now, not at the next tick */
}

static void wake_cb(void *ud)
{
	node_schedule(ud);
}

/* ------------------------------------------------------------ what flooding asks of the peers */

static uint32_t flood_dial_cb(void *ud, const char *addr, const uint8_t *id)
{
	struct peer *p;
	return peer_dial(ud, addr, id, &p) == PN_OK ? p->key : 0;
}

static int flood_send_cb(void *ud, uint32_t key, const struct pn_msg *m)
{
	struct peer *p = peer_by_key(ud, key);
	return p && p->conn ? pn_conn_send_msg(p->conn, m) : PN_ECLOSED;
}

static int flood_send_frame_cb(void *ud, uint32_t key, const uint8_t *frame, size_t len)
{
	struct peer *p = peer_by_key(ud, key);
	return p && p->conn ? pn_conn_send(p->conn, frame, len) : PN_ECLOSED;
}

static void flood_close_cb(void *ud, uint32_t key, int err)
{
	struct peer *p = peer_by_key(ud, key);
	if (p && p->conn)
		pn_conn_close(p->conn, err);
}

static bool flood_connected_cb(void *ud, const uint8_t id[PN_ID_BYTES])
{
	return peer_by_id(ud, id) != NULL;
}

static bool flood_local_ip_cb(void *ud, uint32_t key, char ip[PN_ADDR_STR_MAX])
{
	struct peer *p = peer_by_key(ud, key);
	return p && p->conn && pn_conn_local_ip(p->conn, ip) == PN_OK;
}

static const char *flood_held_name_cb(void *ud, const struct pn_cid *cid)
{
	struct pn_node *n = ud;
	const struct store_object *o = store_get(n->store, cid);
	if (o)
		return o->name;
	struct download *d = download_find(n, cid);
	return d && d->have_meta && d->part && store_partial_have_count(d->part) ? d->name : NULL;
}

/* ------------------------------------------------------------ downloads and searches */


static int count_downloads(const struct pn_node *n)
{
	int count = 0;
	for (const struct download *x = n->downloads; x; x = x->next)
		count++;
	return count;
}

/* Starts or joins the download of cid for a new waiter (path: the file to
 * write, dir: write DIR/NAME, both NULL: none). PN_OK with *out, or an error
 * with one line in why. */
static int node_get(struct pn_node *n, const struct pn_cid *cid, const char *path, const char *dir, unsigned flags,
		    const struct waiter_ops *ops, void *user, struct pn_download **out, char *why, size_t whylen)
{
	*out = NULL;
	struct pn_download *w = calloc(1, sizeof *w);
	if (!w || (path && !(w->path = strdup(path))) || (dir && !(w->dir = strdup(dir)))) {
		if (w)
			waiter_free(w);
		snprintf(why, whylen, "out of memory");
		return PN_ENOMEM;
	}
	w->node = n;
	w->ops = ops;
	w->user = user;
	w->cid = *cid;
	w->flags = flags;
	if (store_get(n->store, cid)) {
		waiter_defer(n, w, PN_OK, NULL);
		*out = w;
		return PN_OK;
	}
	struct download *d = download_find(n, cid);
	if (d) {
		w->dl = d;
		w->next = d->waiters;
		d->waiters = w;
		*out = w;
		if (flags & PN_GET_STREAM) /* a reader: the next chunks it needs first */
			engine_set_streaming(n->engine, cid, true);
		node_kick(n); /* what is verified already streams from the loop */
		return PN_OK;
	}
	/* Discovery not up yet (the node is still connecting to its directory or
	 * neighbours, or lost them): the download starts anyway and its look-up
	 * goes out when discovery is back (refind); --peer-timeout without a
	 * provider ends it with a line saying what it waited for. */
	int count = count_downloads(n), r;
	if (count >= NODE_MAX_DOWNLOADS) {
		waiter_free(w);
		snprintf(why, whylen, "too many downloads at once (%d); try again when one ends", count);
		return PN_ELIMIT;
	}
	d = calloc(1, sizeof *d);
	if (!d) {
		waiter_free(w);
		snprintf(why, whylen, "out of memory");
		return PN_ENOMEM;
	}
	d->node = n;
	d->cid = *cid;
	d->started_ms = node_now(n);
	r = store_put_begin(n->store, cid, NULL, &d->part);
	if (r != PN_OK) {
		free(d);
		waiter_free(w);
		snprintf(why, whylen, "cannot start the download in the store: %s", pn_strerror(r));
		return r;
	}
	const char *stored_name = store_partial_name(d->part);
	if (stored_name && *stored_name) {
		snprintf(d->name, sizeof d->name, "%s", stored_name);
		d->have_meta = true;
	}
	const uint8_t *hashes = NULL, *have = NULL;
	if (store_partial_has_hashes(d->part)) {
		uint64_t ok = 0;
		r = store_partial_verify_existing(d->part, &ok);
		if (r != PN_OK) {
			store_put_release(n->store, d->part);
			free(d);
			waiter_free(w);
			snprintf(why, whylen, "cannot read the partial download: %s", pn_strerror(r));
			return r;
		}
		d->bytes_resumed = ok;
		hashes = store_partial_hash(d->part, 0);
		have = store_partial_bitmap(d->part);
	}
	w->dl = d;
	d->waiters = w;
	d->next = n->downloads;
	n->downloads = d;
	r = engine_want(n->engine, cid, d->have_meta ? d->name : NULL, hashes, have, node_now(n));
	if (r != PN_OK) {
		d->waiters = NULL;
		waiter_free(w);
		d->done = true;
		download_free(d);
		snprintf(why, whylen, "cannot start the download: %s", pn_strerror(r));
		return r;
	}
	*out = w;
	if (flags & PN_GET_STREAM)
		engine_set_streaming(n->engine, cid, true);
	if (d->have_meta && n->dir)
		dir_client_offer(n->dir, cid, d->name);
	d->finding = true;
	d->last_find_ms = node_now(n);
	d->looked_up = !n->flood && n->dir && dir_client_ready(n->dir);
	r = n->flood ? flood_node_find(n->flood, cid, node_now(n))
	    : d->looked_up ? dir_client_find(n->dir, cid) : PN_ENOTSUP;
	/* A look-up may have answered at once and ended the download already. */
	if (r != PN_OK && (d = download_find(n, cid))) {
		d->finding = false;
		d->last_find_ms = 0; /* ask as soon as discovery is up */
	}
	/* Everything may be on disk already: the engine then says DONE, and the
	 * waiter hears it from the loop, not from inside this call. */
	node_kick(n);
	return PN_OK;
}

/* Waiters cancelled since the last tick leave their downloads (a download
 * nobody waits for any more stops, its partial kept), and the waiters on the
 * ready list are finished. */
static void waiters_run(struct pn_node *n)
{
	for (struct download *d = n->downloads; d; d = d->next)
		if (d->part) /* what a previous run verified, for a waiter that just came */
			for (struct pn_download *w = d->waiters; w; w = w->next)
				waiter_stream(n, w, d->part, NULL, &d->cid);
	for (struct download *d = n->downloads, *dnext; d; d = dnext) {
		dnext = d->next;
		bool had = d->waiters != NULL;
		for (struct pn_download **wp = &d->waiters; *wp;) {
			struct pn_download *w = *wp;
			if (!w->canceled) {
				wp = &w->next;
				continue;
			}
			*wp = w->next;
			w->dl = NULL;
			waiter_defer(n, w, PN_ECANCELED, "cancelled");
		}
		if (had && !d->waiters) {
			char id[PN_CID_STR_LEN + 1];
			cid_str(&d->cid, id);
			PN_LOGI(&n->log, "download %s cancelled; the partial download is kept", id);
			d->done = true;
			download_free(d);
		}
	}
	while (n->ready) {
		struct pn_download *w = n->ready;
		n->ready = w->next;
		const struct store_object *o = NULL;
		if (w->err == PN_OK && !w->canceled && (o = store_get(n->store, &w->cid)) != NULL)
			waiter_complete(n, w, o, 0, o->cid.size, 0, 0);
		else
			waiter_done(w, w->err ? w->err : PN_ECANCELED, NULL, w->why ? w->why : "cancelled");
	}
}

/* Sends a search to the discovery method, or finishes it with the reason. */
static void search_now(struct pn_node *n, struct pn_search *sr)
{
	char msg[600];
	sr->pending = false;
	sr->running = true;
	if (n->flood) {
		int r = flood_node_search(n->flood, sr->query, sr, node_now(n));
		if (r == PN_EINVAL)
			snprintf(msg, sizeof msg, "search: the query must be 1 to %d bytes", PN_QUERY_DATA_MAX);
		else if (r == PN_ECLOSED)
			snprintf(msg, sizeof msg, "not connected to any peer (the bootstrap peers are unreachable); the node keeps retrying");
		else if (r != PN_OK)
			snprintf(msg, sizeof msg, "search failed: %s", pn_strerror(r));
		node_schedule(n);
		if (r != PN_OK) {
			sr->running = false;
			search_finish(sr, r, msg);
		}
		return;
	}
	int r = n->dir ? dir_client_search(n->dir, sr->query, sr) : PN_ECLOSED;
	if (r == PN_OK)
		return;
	sr->running = false;
	if (r == PN_EINVAL) {
		snprintf(msg, sizeof msg, "search: the query must be 1 to %d bytes", PN_DIR_QUERY_MAX);
	} else {
		const char *why = n->dir ? dir_client_last_error(n->dir) : "";
		snprintf(msg, sizeof msg, "the directory at %s is unreachable (%s)",
			 n->cfg->directory ? n->cfg->directory : "(none)", why[0] ? why : "not connected");
	}
	search_finish(sr, r, msg);
}

/* A new search. It waits for discovery (at most --peer-timeout) when that is
 * not up yet; it is sent from the loop, never from inside this call. */
static int node_search(struct pn_node *n, const char *query, const struct search_ops *ops, void *user,
		       struct pn_search **out, char *why, size_t whylen)
{
	*out = NULL;
	size_t len = strlen(query), pending = 0;
	if (len == 0 || len > PN_DIR_QUERY_MAX) {
		snprintf(why, whylen, "search: the query must be 1 to %d bytes", PN_DIR_QUERY_MAX);
		return PN_EINVAL;
	}
	for (struct pn_search *x = n->searches; x; x = x->next)
		pending += x->pending;
	if (!discovery_ready(n) && pending >= NODE_PENDING_SEARCHES) {
		snprintf(why, whylen, "%d searches already wait for the node to reach %s; try again later",
			 NODE_PENDING_SEARCHES, n->flood ? "its neighbours" : "its directory");
		return PN_ELIMIT;
	}
	struct pn_search *sr = calloc(1, sizeof *sr);
	if (!sr) {
		snprintf(why, whylen, "out of memory");
		return PN_ENOMEM;
	}
	sr->node = n;
	sr->ops = ops;
	sr->user = user;
	sr->pending = true;
	sr->deadline_ms = node_now(n) + (n->cfg->peer_timeout_ms ? n->cfg->peer_timeout_ms
								 : NODE_DEFAULT_PEER_TIMEOUT_MS);
	memcpy(sr->query, query, len + 1);
	sr->next = n->searches;
	n->searches = sr;
	*out = sr;
	node_kick(n);
	return PN_OK;
}

static void search_cancel(struct pn_search *sr)
{
	struct pn_node *n = sr->node;
	if (sr->canceled)
		return;
	sr->canceled = true;
	if (sr->running) {
		if (n->flood)
			flood_node_search_cancel(n->flood, sr);
		if (n->dir)
			dir_client_search_cancel(n->dir, sr);
		sr->running = false;
	}
	sr->pending = true;
	sr->deadline_ms = 0;
	node_kick(n);
}

/* Sends the waiting searches once discovery is up; fails those whose time is
 * over; finishes the cancelled ones. */
static void pending_searches_run(struct pn_node *n, uint64_t now)
{
	bool ready = discovery_ready(n);
	for (int guard = 0; guard < 1 + NODE_PENDING_SEARCHES * 4; guard++) {
		struct pn_search *sr = n->searches;
		while (sr && !(sr->pending && (sr->canceled || ready || now >= sr->deadline_ms)))
			sr = sr->next;
		if (!sr)
			return;
		if (sr->canceled) {
			search_finish(sr, PN_ECANCELED, "cancelled");
		} else if (ready) {
			search_now(n, sr);
		} else {
			char why[PN_NODE_ERR_MAX], msg[PN_NODE_ERR_MAX + 16];
			discovery_waited(n, why, sizeof why);
			snprintf(msg, sizeof msg, "search: %s", why);
			search_finish(sr, PN_ETIMEDOUT, msg);
		}
	}
}

static int node_share(struct pn_node *n, const char *path, const struct store_object **out)
{
	int r = store_add_local(n->store, path, NULL, out);
	if (r != PN_OK && r != PN_EEXIST)
		return r;
	char id[PN_CID_STR_LEN + 1];
	cid_str(&(*out)->cid, id);
	if (n->dir)
		dir_client_offer(n->dir, &(*out)->cid, (*out)->name);
	if (n->dir && !dir_client_ready(n->dir))
		PN_LOGI(&n->log, "holding %s  %s; it is registered when the directory at %s is reachable", id,
			(*out)->name, n->cfg->directory);
	else
		PN_LOGI(&n->log, "sharing %s  %s", id, (*out)->name);
	return r;
}

/* Progress for everyone waiting on a download. */
static void report_progress(struct pn_node *n)
{
	for (struct download *d = n->downloads; d; d = d->next) {
		struct engine_download_info info;
		if (!d->part || !engine_download_info(n->engine, &d->cid, &info))
			continue;
		struct pn_progress pr = {.cid = d->cid, .name = d->name, .have = info.bytes_have, .total = d->cid.size,
					 .peers = info.peers, .chunks = info.nchunks, .chunks_have = info.have,
					 .bytes_downloaded = info.bytes_down};
		for (struct pn_download *w = d->waiters; w; w = w->next)
			if (w->ops && w->ops->progress && !w->canceled)
				w->ops->progress(w, &pr);
	}
}

static bool waiters_want_progress(const struct pn_node *n)
{
	for (const struct download *d = n->downloads; d; d = d->next)
		for (const struct pn_download *w = d->waiters; w; w = w->next)
			if (w->ops && w->ops->progress)
				return true;
	return false;
}

/* ------------------------------------------------------------ the control socket
 *
 * It asks through the same calls as the API, with its own ops. */

#define NODE_GET_STDOUT 0x100u /* a control client's get -o -: it reads the store's copy */

static void ctl_w_progress(struct pn_download *w, const struct pn_progress *p)
{
	ctl_progress(w->user, p->have, p->total, p->peers, p->name);
}

static void ctl_w_done(struct pn_download *w, int err, const struct pn_download_result *r, const char *why)
{
	struct ctl_client *cc = w->user;
	if (err != PN_OK) {
		ctl_finish(cc, "%s", why ? why : pn_strerror(err));
		return;
	}
	char path[NODE_PATH_MAX + 128];
	if (w->flags & NODE_GET_STDOUT) {
		char id[PN_CID_STR_LEN + 1];
		cid_str(&r->cid, id);
		snprintf(path, sizeof path, "%s/objects/%s", w->node->cfg->data_dir, id);
	} else {
		snprintf(path, sizeof path, "%s", r->path);
	}
	ctl_got(cc, &r->cid, r->name, path, r->bytes_downloaded, r->bytes_resumed, r->seconds, r->providers);
	ctl_finish(cc, NULL);
}

static void ctl_w_ready(struct pn_download *w, const char *path, uint64_t upto)
{
	ctl_stream(w->user, path, upto);
}

static const struct waiter_ops ctl_waiter_ops = {.progress = ctl_w_progress, .done = ctl_w_done};
/* get -o -: the client reads the partial download as it grows. */
static const struct waiter_ops ctl_stream_ops = {.progress = ctl_w_progress, .ready = ctl_w_ready, .done = ctl_w_done};

static int ctl_get_cb(void *ud, struct ctl_client *cc, const struct ctl_get_request *req)
{
	struct pn_node *n = ud;
	bool named = req->out_path && req->out_path[0];
	unsigned flags = (req->force ? PN_GET_OVERWRITE : 0) | (req->to_stdout ? NODE_GET_STDOUT : 0);
	struct pn_download *w;
	char why[PN_NODE_ERR_MAX];
	if (req->to_stdout)
		flags |= PN_GET_STREAM;
	int r = node_get(n, &req->cid, !req->to_stdout && named ? req->out_path : NULL,
			 !req->to_stdout && !named ? (req->cwd ? req->cwd : ".") : NULL, flags,
			 req->to_stdout ? &ctl_stream_ops : &ctl_waiter_ops, cc, &w, why, sizeof why);
	if (r != PN_OK)
		ctl_finish(cc, "%s", why);
	return PN_OK;
}

static void ctl_s_result(struct pn_search *sr, const struct pn_search_hit *h)
{
	ctl_result(sr->user, &h->cid, h->providers, h->name, h->name_len);
}

static void ctl_s_done(struct pn_search *sr, int err, const char *why)
{
	if (err != PN_OK)
		ctl_finish(sr->user, "%s", why ? why : pn_strerror(err));
	else
		ctl_finish(sr->user, NULL);
}

static const struct search_ops ctl_search_ops = {.result = ctl_s_result, .done = ctl_s_done};
static const struct search_ops silent_search_ops = {0};

static void ctl_search_cb(void *ud, struct ctl_client *cc, const char *query)
{
	struct pn_search *sr;
	char why[PN_NODE_ERR_MAX];
	if (node_search(ud, query, &ctl_search_ops, cc, &sr, why, sizeof why) != PN_OK)
		ctl_finish(cc, "%s", why);
}

static int ctl_add_cb(void *ud, const char *path, const struct store_object **out)
{
	return node_share(ud, path, out);
}

static void ctl_status_cb(void *ud, struct ctl_status *st)
{
	struct pn_node *n = ud;
	memcpy(st->node_id, n->id.node_id, PN_ID_BYTES);
	st->listen = n->cfg->listen;
	st->port = n->port;
	st->discovery = n->cfg->discovery == PN_DISCOVERY_DIRECTORY ? "directory"
			: n->cfg->discovery == PN_DISCOVERY_FLOOD ? "flood" : "dht";
	st->directory = n->cfg->directory;
	st->directory_registered = n->dir && dir_client_ready(n->dir);
	st->directory_refused = n->dir ? dir_client_refused(n->dir) : 0;
	if (n->dir)
		dir_client_stats(n->dir, &st->lookups, &st->lookup_msgs);
	if (n->flood) {
		struct flood_node_stats fs;
		flood_node_get_stats(n->flood, &fs);
		st->flood = true;
		st->flood_neighbors = fs.neighbors;
		st->flood_stats = fs.core;
		st->lookups += fs.lookups;
	}
	struct pn_peer_info pi[CTL_STATUS_PEERS_MAX];
	size_t np = pn_node_peers(n, pi, CTL_STATUS_PEERS_MAX);
	st->npeers = np < CTL_STATUS_PEERS_MAX ? np : CTL_STATUS_PEERS_MAX;
	for (size_t i = 0; i < st->npeers; i++) {
		struct ctl_peer_status *ps = &st->peers[i];
		memset(ps, 0, sizeof *ps);
		memcpy(ps->id, pi[i].id, PN_ID_BYTES);
		snprintf(ps->addr, sizeof ps->addr, "%s", pi[i].addr);
		ps->outgoing = pi[i].outgoing;
		ps->neighbor = pi[i].neighbor;
		ps->seed_server = pi[i].seed_server;
		ps->peer_choking = pi[i].peer_choking;
		ps->am_choking = pi[i].am_choking;
		ps->bytes_to = pi[i].bytes_to;
		ps->bytes_from = pi[i].bytes_from;
		ps->rate_to = pi[i].rate_to;
		ps->rate_from = pi[i].rate_from;
	}
	st->ntransfers = 0;
	for (struct download *d = n->downloads; d && st->ntransfers < CTL_STATUS_TRANSFERS_MAX; d = d->next) {
		struct engine_download_info info;
		if (!engine_download_info(n->engine, &d->cid, &info))
			continue;
		struct ctl_transfer_status *t = &st->transfers[st->ntransfers++];
		t->cid = d->cid;
		snprintf(t->name, sizeof t->name, "%s", d->name);
		t->chunks = info.nchunks;
		t->have = info.have;
		t->bytes_down = info.bytes_down;
	}
	struct engine_stats es;
	engine_stats(n->engine, &es);
	st->bytes_up = es.bytes_up;
	st->bytes_down = es.bytes_down;
	pn_rate_get(&n->rate, node_now(n), es.bytes_up, es.bytes_down, &st->rate_up, &st->rate_down);
	pn_net_bytes(n->net, &st->wire_up, &st->wire_down);
}

static void ctl_stop_cb(void *ud)
{
	struct pn_node *n = ud;
	if (n->ev.stop_requested) {
		n->in_user++;
		n->ev.stop_requested(n->ev.ud, n);
		n->in_user--;
	}
	else
		PN_LOGW(&n->log, "a control client asked the node to stop; the program does not allow it");
}

static void ctl_client_gone_cb(void *ud, struct ctl_client *cc)
{
	struct pn_node *n = ud;
	for (struct pn_search *sr = n->searches; sr; sr = sr->next)
		if (sr->ops == &ctl_search_ops && sr->user == cc) {
			sr->ops = &silent_search_ops;
			search_cancel(sr);
		}
	for (struct download *d = n->downloads; d; d = d->next)
		for (struct pn_download *w = d->waiters; w; w = w->next)
			if ((w->ops == &ctl_waiter_ops || w->ops == &ctl_stream_ops) && w->user == cc)
				w->ops = NULL; /* the download goes on in the background */
	for (struct pn_download *w = n->ready; w; w = w->next)
		if ((w->ops == &ctl_waiter_ops || w->ops == &ctl_stream_ops) && w->user == cc)
			w->ops = NULL;
}

/* ------------------------------------------------------------ timers */

/* When the discovery of d next wants to ask again (UINT64_MAX: not now). */
static uint64_t download_refind_at(struct pn_node *n, const struct download *d)
{
	if (d->finding)
		return UINT64_MAX;
	uint64_t period;
	if (n->flood)
		period = node_now(n) - d->started_ms < NODE_EARLY_MS ? NODE_REFIND_FLOOD_EARLY_MS : NODE_REFIND_FLOOD_MS;
	else if (n->dir && dir_client_ready(n->dir))
		period = node_now(n) - d->started_ms < NODE_EARLY_MS ? NODE_REFIND_EARLY_MS : NODE_REFIND_MS;
	else
		return UINT64_MAX;
	return d->last_find_ms + period + 1;
}


/* Arms the node's one timer at the soonest time any part needs it. */
static void node_schedule(struct pn_node *n)
{
	if (n->stopping || !n->timer_on)
		return;
	uint64_t now = node_now(n);
	uint64_t next = engine_next_wakeup(n->engine);
	uint64_t t = n->dir ? dir_client_next_wakeup(n->dir) : UINT64_MAX;
	if (t < next)
		next = t;
	t = n->flood ? flood_node_next_wakeup(n->flood, now) : UINT64_MAX;
	if (t < next)
		next = t;
	if (n->cfg->nseed_servers && n->seed_server_next_ms < next)
		next = n->seed_server_next_ms;
	for (struct pn_search *sr = n->searches; sr; sr = sr->next)
		if (sr->pending && sr->deadline_ms < next)
			next = sr->deadline_ms;
	for (struct download *d = n->downloads; d; d = d->next) {
		t = download_refind_at(n, d);
		if (t < next)
			next = t;
	}
	if (waiters_want_progress(n) && n->last_progress_ms + NODE_PROGRESS_MS < next)
		next = n->last_progress_ms + NODE_PROGRESS_MS;
	if (n->cfg->up_rate && engine_uploads_waiting(n->engine)) {
		/* Requests wait for the upload backlog to drain: look again when
		 * the cap has paid its debt (and what is queued has gone out). */
		t = now + 1 + backlog_cb(n) * 1000 / n->cfg->up_rate;
		if (t < next)
			next = t;
	}
	uint64_t delay = next <= now ? 0 : next - now;
	if (delay < NODE_TIMER_MIN_MS && !n->kick)
		delay = NODE_TIMER_MIN_MS;
	if (n->kick)
		delay = 0;
	if (delay > NODE_TIMER_MAX_MS)
		delay = NODE_TIMER_MAX_MS;
	uv_timer_start(&n->tick, tick_cb, delay, 0);
}

/* Asks discovery again for the providers of downloads that need more. A
 * look-up's answer may end a download, so each is looked up afresh. */
static void refind(struct pn_node *n, uint64_t now)
{
	struct pn_cid due[NODE_MAX_DOWNLOADS];
	size_t ndue = 0;
	for (struct download *d = n->downloads; d && ndue < NODE_MAX_DOWNLOADS; d = d->next)
		if (!d->finding)
			due[ndue++] = d->cid;
	for (size_t i = 0; i < ndue; i++) {
		struct download *d = download_find(n, &due[i]);
		if (!d || d->finding)
			continue;
		bool early = now - d->started_ms < NODE_EARLY_MS;
		if (n->flood) {
			/* Flooding is costly: ask again only while no provider is connected;
			 * early on, now and then: fellow downloaders answer once they hold chunks. */
			if (now - d->last_find_ms > (early ? NODE_REFIND_FLOOD_EARLY_MS : NODE_REFIND_FLOOD_MS) &&
			    (early || !engine_download_has_providers(n->engine, &d->cid))) {
				d->finding = true;
				int r = flood_node_find(n->flood, &due[i], now);
				if ((d = download_find(n, &due[i]))) {
					if (r == PN_OK)
						d->last_find_ms = now;
					else
						d->finding = false;
				}
			}
		} else if (n->dir && now - d->last_find_ms > (early ? NODE_REFIND_EARLY_MS : NODE_REFIND_MS) &&
			   dir_client_ready(n->dir)) {
			/* Early in a download ask often: fellow downloaders register as they start. */
			d->last_find_ms = now;
			d->finding = true;
			d->looked_up = true;
			if (dir_client_find(n->dir, &due[i]) != PN_OK && (d = download_find(n, &due[i])))
				d->finding = false;
		}
	}
}

/* Feeds the rate meters of the node and of each peer, at most every
 * PN_RATE_SPACING_MS (the tick runs at least once a second). */
static void sample_rates(struct pn_node *n, uint64_t now)
{
	if (n->rate_sampled_ms && now - n->rate_sampled_ms < PN_RATE_SPACING_MS)
		return;
	n->rate_sampled_ms = now;
	struct engine_stats es;
	engine_stats(n->engine, &es);
	pn_rate_sample(&n->rate, now, es.bytes_up, es.bytes_down);
	for (struct peer *p = n->peers; p; p = p->next) {
		struct engine_peer_info e;
		if (p->hello && engine_peer_info(n->engine, p->key, &e))
			pn_rate_sample(&p->rate, now, e.bytes_to, e.bytes_from);
	}
}

static void tick_cb(uv_timer_t *t)
{
	struct pn_node *n = t->data;
	uint64_t now = node_now(n);
	n->kick = false;
	if (n->close_pending) {
		node_close_now(n);
		return;
	}
	if (n->dir)
		dir_client_tick(n->dir, now);
	if (n->flood)
		flood_node_tick(n->flood, now);
	seed_servers_tick(n, now);
	if (engine_next_wakeup(n->engine) <= now)
		engine_tick(n->engine, now);
	node_pump(n);
	waiters_run(n);
	refind(n, now);
	pending_searches_run(n, now);
	if (now - n->last_progress_ms >= NODE_PROGRESS_MS) {
		n->last_progress_ms = now;
		report_progress(n);
	}
	sample_rates(n, now);
	node_schedule(n);
}

/* ------------------------------------------------------------ start and stop */

/* Ends everything a stop must end: searches, downloads, their waiters. */
static void node_stop(struct pn_node *n)
{
	if (n->stopping)
		return;
	waiters_run(n); /* content already held completes; what was cancelled is told so */
	n->stopping = true;
	PN_LOGI(&n->log, "stopping");
	while (n->searches) {
		struct pn_search *sr = n->searches;
		if (sr->running) {
			if (n->flood)
				flood_node_search_cancel(n->flood, sr);
			if (n->dir)
				dir_client_search_cancel(n->dir, sr);
			sr->running = false;
		}
		search_finish(sr, PN_ECANCELED, "the node is stopping");
	}
	while (n->downloads) {
		struct download *d = n->downloads;
		while (d->waiters) {
			struct pn_download *w = d->waiters;
			d->waiters = w->next;
			w->dl = NULL;
			waiter_done(w, PN_ECANCELED, NULL, "the node is stopping; the partial download is kept");
		}
		d->done = true;
		download_free(d);
	}
	node_pump(n);
	if (n->dir)
		dir_client_stop(n->dir);
	if (n->flood)
		flood_node_stop(n->flood);
}

void pn_default_data_dir(char *out, size_t len)
{
	const char *v = getenv("PEERNET_DATA");
	if (v && *v) {
		snprintf(out, len, "%s", v);
		return;
	}
	v = getenv("XDG_DATA_HOME");
	if (v && *v) {
		snprintf(out, len, "%s/peernet", v);
		return;
	}
	v = getenv("HOME");
	snprintf(out, len, "%s/.local/share/peernet", v && *v ? v : ".");
}

static void set_err(struct pn_node *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(struct pn_node *n, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(n->error, sizeof n->error, fmt, ap);
	va_end(ap);
}

/* Discovery: the directory client or the flood node, reporting to n. */
static int discovery_setup(struct pn_node *n)
{
	struct discovery_events ev = {
		.ud = n,
		.providers_cb = providers_cb,
		.lookup_done_cb = lookup_done_cb,
		.search_result_cb = search_result_cb,
		.search_done_cb = search_done_cb,
		.registered_cb = registered_cb,
		.wake_cb = wake_cb,
	};
	if (n->cfg->discovery == PN_DISCOVERY_FLOOD) {
		struct flood_node_opts fo = {
			.data_dir = n->cfg->data_dir,
			.announce_host = n->cfg->announce_host,
			.port = n->port,
			.bootstrap = n->cfg->bootstrap,
			.nbootstrap = (int)n->cfg->nbootstrap,
			.min_neighbors = n->cfg->min_neighbors,
			.max_neighbors = n->cfg->max_neighbors,
			.ttl = n->cfg->ttl,
			.plain_flood = n->cfg->plain_flood,
			.seed = pn_prng_next(&n->rng),
			.store = n->store,
			.log = &n->log,
			.peers = {
				.ud = n,
				.dial_cb = flood_dial_cb,
				.send_cb = flood_send_cb,
				.send_frame_cb = flood_send_frame_cb,
				.close_cb = flood_close_cb,
				.connected_cb = flood_connected_cb,
				.local_ip_cb = flood_local_ip_cb,
				.held_name_cb = flood_held_name_cb,
			},
			.events = ev,
		};
		memcpy(fo.self_id, n->id.node_id, PN_ID_BYTES);
		n->flood = flood_node_new(&fo);
		return n->flood ? PN_OK : PN_ENOMEM;
	}
	if (n->cfg->discovery == PN_DISCOVERY_DIRECTORY && n->cfg->directory) {
		struct dir_client_opts dopts = {
			.directory = n->cfg->directory,
			.announce_host = n->cfg->announce_host,
			.port = n->port,
			.net = n->net,
			.store = n->store,
			.log = &n->log,
			.seed = pn_prng_next(&n->rng),
			.events = ev,
		};
		n->dir = dir_client_new(&dopts);
		return n->dir ? PN_OK : PN_ENOMEM;
	}
	return PN_OK;
}

static int ctl_setup(struct pn_node *n)
{
	struct ctl_server_opts co = {
		.loop = n->loop,
		.path = n->cfg->control_path,
		.store = n->store,
		.ops = {
			.ud = n,
			.get_cb = ctl_get_cb,
			.search_cb = ctl_search_cb,
			.add_cb = ctl_add_cb,
			.status_cb = ctl_status_cb,
			.stop_cb = ctl_stop_cb,
			.client_gone_cb = ctl_client_gone_cb,
		},
	};
	char why[PN_NODE_ERR_MAX];
	int r = ctl_server_new(&co, &n->ctl, why, sizeof why);
	if (r != PN_OK)
		set_err(n, "%s", why);
	return r;
}

/* The status page's questions (http/http.h), asked on the loop. */
static json_t *http_status_cb(void *ud)
{
	struct pn_node *n = ud;
	return ctl_status_document(ctl_status_cb, n, n->store);
}

static void http_rates_cb(void *ud, uint64_t *up, uint64_t *down)
{
	struct pn_node *n = ud;
	struct engine_stats es;
	engine_stats(n->engine, &es);
	uint64_t now = node_now(n);
	pn_rate_sample(&n->rate, now, es.bytes_up, es.bytes_down);
	pn_rate_get(&n->rate, now, es.bytes_up, es.bytes_down, up, down);
}

static int http_setup(struct pn_node *n)
{
	struct http_opts ho = {
		.loop = n->loop,
		.listen = n->cfg->http_listen,
		.public_ok = n->cfg->http_public,
		.data_dir = n->cfg->data_dir,
		.log = &n->log,
		.ops = {
			.ud = n,
			.status_cb = http_status_cb,
			.rates_cb = http_rates_cb,
			.stop_cb = n->ev.stop_requested ? ctl_stop_cb : NULL,
		},
	};
	char why[HTTP_ERR_MAX];
	int r = http_server_new(&ho, &n->http, why, sizeof why);
	if (r != PN_OK)
		set_err(n, "%s", why);
	else
		PN_LOGI(&n->log, "status page on port %u", http_server_port(n->http));
	return r;
}

/* ------------------------------------------------------------ the API */

static char *dup_or_null(const char *s, bool *oom)
{
	if (!s)
		return NULL;
	char *d = strdup(s);
	if (!d)
		*oom = true;
	return d;
}

static char **dup_list(const char *const *v, size_t n, bool *oom)
{
	if (!n)
		return NULL;
	char **d = calloc(n, sizeof *d);
	if (!d) {
		*oom = true;
		return NULL;
	}
	for (size_t i = 0; i < n; i++)
		d[i] = dup_or_null(v[i], oom);
	return d;
}

static void free_list(char **v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}

static void config_free(struct node_config *c)
{
	free((char *)c->c.listen);
	free((char *)c->c.data_dir);
	free((char *)c->c.control_path);
	free((char *)c->c.directory);
	free((char *)c->c.announce_host);
	free((char *)c->c.bind_interface);
	free((char *)c->c.http_listen);
	free_list(c->bootstrap, c->c.nbootstrap);
	free_list(c->seed_servers, c->c.nseed_servers);
}

#define NODE_MAX_LIST 64 /* --bootstrap and --seed-server addresses, each */

int pn_node_new(uv_loop_t *loop, const struct pn_node_config *cfg, const struct pn_node_events *ev, pn_node **out)
{
	*out = NULL;
	if (!loop || !cfg || !cfg->listen || !cfg->data_dir || cfg->nbootstrap > NODE_MAX_LIST ||
	    cfg->nseed_servers > NODE_MAX_LIST || (cfg->nbootstrap && !cfg->bootstrap) ||
	    (cfg->nseed_servers && !cfg->seed_servers) || cfg->ttl > FLOOD_MAX_TTL ||
	    (cfg->discovery && cfg->discovery != PN_DISCOVERY_DIRECTORY && cfg->discovery != PN_DISCOVERY_FLOOD) ||
	    cfg->log_level > PN_LOG_DEBUG ||
	    (cfg->bind_interface && (!cfg->bind_interface[0] || strlen(cfg->bind_interface) > 15)))
		return PN_EINVAL;
	for (size_t i = 0; i < cfg->nbootstrap; i++)
		if (!cfg->bootstrap[i])
			return PN_EINVAL;
	for (size_t i = 0; i < cfg->nseed_servers; i++)
		if (!cfg->seed_servers[i])
			return PN_EINVAL;
	struct pn_node *n = calloc(1, sizeof *n);
	if (!n)
		return PN_ENOMEM;
	bool oom = false;
	n->conf.c = *cfg;
	if (!n->conf.c.discovery)
		n->conf.c.discovery = PN_DISCOVERY_DIRECTORY;
	n->conf.c.listen = dup_or_null(cfg->listen, &oom);
	n->conf.c.data_dir = dup_or_null(cfg->data_dir, &oom);
	n->conf.c.control_path = dup_or_null(cfg->control_path, &oom);
	n->conf.c.directory = dup_or_null(cfg->directory, &oom);
	n->conf.c.announce_host = dup_or_null(cfg->announce_host, &oom);
	n->conf.c.bind_interface = dup_or_null(cfg->bind_interface, &oom);
	n->conf.c.http_listen = dup_or_null(cfg->http_listen, &oom);
	n->conf.bootstrap = dup_list(cfg->bootstrap, cfg->nbootstrap, &oom);
	n->conf.seed_servers = dup_list(cfg->seed_servers, cfg->nseed_servers, &oom);
	n->conf.c.bootstrap = (const char *const *)n->conf.bootstrap;
	n->conf.c.seed_servers = (const char *const *)n->conf.seed_servers;
	n->cfg = &n->conf.c;
	if (oom) {
		config_free(&n->conf);
		free(n);
		return PN_ENOMEM;
	}
	if (ev)
		n->ev = *ev;
	n->log = (struct pn_logger){.cb = n->ev.log, .ud = n->ev.ud, .level = cfg->log_level};
	n->loop = loop;
	n->state = NODE_NEW;
	uv_timer_init(loop, &n->tick);
	n->tick.data = n;
	*out = n;
	return PN_OK;
}

int pn_node_start(pn_node *n)
{
	if (n->state != NODE_NEW || n->store) {
		set_err(n, "the node was started already");
		return PN_EBUSY;
	}
	n->error[0] = '\0';
	int r;
	char why[HTTP_ERR_MAX];
	if (n->cfg->http_listen &&
	    (r = http_check_listen(n->cfg->http_listen, n->cfg->http_public, why, sizeof why)) != PN_OK) {
		set_err(n, "%s", why); /* before anything starts */
		return r;
	}
	pn_prng_seed(&n->rng, uv_hrtime() ^ (uint64_t)getpid() << 32 ^ (uint64_t)(uintptr_t)n);
	n->peer_cbs = (struct pn_conn_cbs){
		.established_cb = peer_established_cb,
		.frame_cb = peer_frame_cb,
		.writable_cb = peer_writable_cb,
		.close_cb = peer_close_cb,
	};
	n->store_ops = (struct engine_store_ops){.lookup = store_lookup_cb, .backlog = backlog_cb};
	n->out_cap = PN_FRAME_HDR + PN_FRAME_MAX;
	n->out = malloc(n->out_cap);
	if (!n->out) {
		set_err(n, "out of memory");
		return PN_ENOMEM;
	}
	r = pn_identity_load_or_create(n->cfg->data_dir, &n->id);
	if (r != PN_OK) {
		set_err(n, "cannot load or create the identity in %s: %s", n->cfg->data_dir, pn_strerror(r));
		return r;
	}
	n->have_id = true;
	r = store_open_log(n->cfg->data_dir, &n->log, &n->store);
	if (r != PN_OK) {
		set_err(n, "cannot open the store in %s: %s", n->cfg->data_dir, pn_strerror(r));
		return r;
	}
	struct pn_net_opts nopts;
	pn_net_opts_default(&nopts);
	nopts.log = &n->log;
	if (n->cfg->bind_interface) {
		if (if_nametoindex(n->cfg->bind_interface) == 0) {
			set_err(n, "cannot bind to the interface %s: no such interface", n->cfg->bind_interface);
			return PN_ENOTFOUND;
		}
		snprintf(nopts.bind_interface, sizeof nopts.bind_interface, "%s", n->cfg->bind_interface);
	}
	r = pn_net_new(n->loop, &n->id, &nopts, &n->net);
	if (r != PN_OK) {
		set_err(n, "cannot set up TLS: %s", pn_strerror(r));
		return r;
	}
	pn_net_set_data(n->net, n);
	pn_net_set_rates(n->net, n->cfg->up_rate, n->cfg->down_rate);
	r = pn_net_listen(n->net, n->cfg->listen, accept_cb, &n->port);
	if (r == PN_EACCES && n->cfg->bind_interface) {
		set_err(n, "cannot bind to the interface %s: permission denied (it needs CAP_NET_RAW)",
			n->cfg->bind_interface);
		return r;
	}
	if (r != PN_OK) {
		set_err(n, "cannot listen on %s: %s", n->cfg->listen,
			r == PN_EEXIST ? "address already in use" : pn_strerror(r));
		return r;
	}
	/* Rechoke every second and move the optimistic slot every half second
	 * (BitTorrent uses 10 s and 30 s): swarms here often last seconds, and in a
	 * flash crowd a peer that holds little is choked by everyone (tit for tat)
	 * and would wait out most of the transfer with its uplink idle. Measured
	 * (bench/distribution.py --ns 16,32 --models p2p, two runs each): 5 s/15 s
	 * 1.31-1.32x / 1.46-1.47x of the bound, 1 s/0.5 s 1.28-1.32x / 1.36-1.38x. */
	struct engine_opts eo = {
		.role = ENGINE_NODE,
		.listen_port = n->port,
		.upload_slots = n->cfg->upload_slots,
		.rechoke_ms = NODE_RECHOKE_MS,
		.optimistic_ms = NODE_OPTIMISTIC_MS,
		.stall_ms = n->cfg->peer_timeout_ms ? n->cfg->peer_timeout_ms : NODE_DEFAULT_PEER_TIMEOUT_MS,
		/* Under an upload cap a chunk is handed to a connection only when
		 * nothing waits behind the cap and it has paid for the chunk before
		 * (backlog_cb counts its debt), so the engine picks which request to
		 * serve at the moment the chunk can go: until then requests wait in
		 * the queues, where a CANCEL or a CHOKE can still withdraw them and
		 * a fresher, rarer one can go first. Every chunk committed ahead is
		 * a chunk time of delay for the next request served, at each hop of
		 * a chunk through the swarm (swarm-sim calibration, N = 16/32:
		 * 1.23/1.29x with one chunk ahead, 1.15/1.22x with none). A fast
		 * cap (over NODE_UPLOAD_AHEAD_MS of it per chunk) keeps that much
		 * ahead, so the timer's granularity does not idle it. */
		.backlog_max = !n->cfg->up_rate ? 0
			       : n->cfg->up_rate * NODE_UPLOAD_AHEAD_MS / 1000 > PN_CHUNK_SIZE
				       ? n->cfg->up_rate * NODE_UPLOAD_AHEAD_MS / 1000
				       : 1,
		.seed = pn_prng_next(&n->rng),
		.store = &n->store_ops,
		.store_ud = n,
	};
	memcpy(eo.self_id, n->id.node_id, PN_ID_BYTES);
	n->engine = engine_new(&eo, uv_now(n->loop));
	if (!n->engine) {
		set_err(n, "out of memory");
		r = PN_ENOMEM;
		return r;
	}
	r = discovery_setup(n);
	if (r != PN_OK) {
		set_err(n, "out of memory");
		return r;
	}
	if (n->cfg->control_path && (r = ctl_setup(n)) != PN_OK)
		return r;
	if (n->cfg->http_listen && (r = http_setup(n)) != PN_OK)
		return r;
	n->state = NODE_STARTED;
	n->started = true;
	n->timer_on = true;
	uv_timer_start(&n->tick, tick_cb, 0, 0);
	return PN_OK;
}

static void node_free(struct pn_node *n)
{
	void (*cb)(void *) = n->closed_cb;
	void *ud = n->closed_ud;
	if (n->started) {
		struct engine_stats st;
		engine_stats(n->engine, &st);
		PN_LOGI(&n->log, "stopped: %llu bytes uploaded, %llu bytes downloaded", (unsigned long long)st.bytes_up,
			(unsigned long long)st.bytes_down);
	}
	ctl_server_free(n->ctl);
	dir_client_free(n->dir);
	flood_node_free(n->flood);
	engine_free(n->engine);
	store_close(n->store);
	if (n->have_id)
		pn_identity_free(&n->id);
	free(n->out);
	free(n->stream_buf);
	config_free(&n->conf);
	free(n);
	if (cb)
		cb(ud);
}

static void node_part_closed(struct pn_node *n)
{
	if (--n->closing_handles == 0)
		node_free(n);
}

static void tick_closed_cb(uv_handle_t *h)
{
	node_part_closed(h->data);
}

static void net_closed_cb(void *ud)
{
	node_part_closed(ud);
}

static void ctl_closed_cb(void *ud)
{
	node_part_closed(ud);
}

static void http_closed_cb(void *ud)
{
	node_part_closed(ud);
}

static void node_close_now(struct pn_node *n)
{
	bool was_started = n->state == NODE_STARTED;
	n->close_pending = false;
	n->state = NODE_CLOSING; /* a pn_node_close from a callback below returns at once */
	if (was_started)
		node_stop(n);
	n->stopping = true;
	n->timer_on = false;
	uv_timer_stop(&n->tick);
	n->closing_handles = 1;
	uv_close((uv_handle_t *)&n->tick, tick_closed_cb);
	if (n->http) { /* first: libmicrohttpd stops here and asks nothing more */
		n->closing_handles++;
		http_server_close(n->http, http_closed_cb, n);
		n->http = NULL;
	}
	if (n->ctl) {
		n->closing_handles++;
		ctl_server_close(n->ctl, ctl_closed_cb, n);
	}
	if (n->net) {
		n->closing_handles++;
		pn_net_close_cb(n->net, net_closed_cb, n);
	}
}

void pn_node_close(pn_node *n, void (*closed)(void *ud), void *ud)
{
	if (!n || n->state == NODE_CLOSING || n->close_pending)
		return;
	n->closed_cb = closed;
	n->closed_ud = ud;
	if (n->in_user) { /* the node is in the middle of something: the loop closes it next */
		n->close_pending = true;
		n->kick = true;
		uv_timer_start(&n->tick, tick_cb, 0, 0);
		return;
	}
	node_close_now(n);
}

const char *pn_node_error(const pn_node *n)
{
	return n->error;
}

uint16_t pn_node_http_port(const pn_node *n)
{
	return n->http ? http_server_port(n->http) : 0;
}

uint16_t pn_node_port(const pn_node *n)
{
	return n->port;
}

void pn_node_id(const pn_node *n, uint8_t out[PN_ID_BYTES])
{
	if (n->have_id)
		memcpy(out, n->id.node_id, PN_ID_BYTES);
	else
		memset(out, 0, PN_ID_BYTES);
}

int pn_node_share(pn_node *n, const char *path, struct pn_cid *out)
{
	if (n->state != NODE_STARTED) {
		set_err(n, "the node is not running");
		return PN_EBUSY;
	}
	const struct store_object *o = NULL;
	int r = node_share(n, path, &o);
	if (r != PN_OK && r != PN_EEXIST) {
		set_err(n, "cannot share %s: %s", path, pn_strerror(r));
		return r;
	}
	if (out)
		*out = o->cid;
	return r;
}

/* Every call into the program's code goes through these: while one runs,
 * pn_node_close only marks the node, and the loop closes it next. */
int pn_node_unshare(pn_node *n, const struct pn_cid *cid)
{
	if (n->state != NODE_STARTED) {
		set_err(n, "the node is not running");
		return PN_EBUSY;
	}
	char id[PN_CID_STR_LEN + 1];
	cid_str(cid, id);
	int r = store_remove(n->store, cid);
	if (r != PN_OK) {
		set_err(n, r == PN_ENOTFOUND ? "%s is not shared here" : "cannot remove %s from the store", id);
		return r;
	}
	if (n->dir)
		dir_client_withdraw(n->dir, cid);
	PN_LOGI(&n->log, "no longer sharing %s", id);
	return PN_OK;
}

static void api_w_progress(struct pn_download *w, const struct pn_progress *p)
{
	struct pn_node *n = w->node;
	if (!n->ev.progress)
		return;
	n->in_user++;
	n->ev.progress(n->ev.ud, w, p);
	n->in_user--;
}

static void api_w_data(struct pn_download *w, uint64_t offset, const void *buf, size_t len)
{
	struct pn_node *n = w->node;
	if (!n->ev.data)
		return;
	n->in_user++;
	n->ev.data(n->ev.ud, w, offset, buf, len);
	n->in_user--;
}

static void api_w_done(struct pn_download *w, int err, const struct pn_download_result *r, const char *why)
{
	struct pn_node *n = w->node;
	if (!n->ev.done)
		return;
	n->in_user++;
	n->ev.done(n->ev.ud, w, err, r, why);
	n->in_user--;
}

static const struct waiter_ops api_waiter_ops = {.progress = api_w_progress, .data = api_w_data, .done = api_w_done};

int pn_node_get(pn_node *n, const struct pn_cid *cid, const char *path, unsigned flags, void *user,
		pn_download **out)
{
	if (out)
		*out = NULL;
	if (n->state != NODE_STARTED) {
		set_err(n, "the node is not running");
		return PN_EBUSY;
	}
	if (!cid || (flags & ~(PN_GET_OVERWRITE | PN_GET_STREAM)) || cid->size > PN_MAX_FILE_SIZE) {
		set_err(n, "invalid argument");
		return PN_EINVAL;
	}
	struct stat st;
	bool is_dir = path && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
	struct pn_download *w;
	int r = node_get(n, cid, is_dir ? NULL : path, is_dir ? path : NULL, flags, &api_waiter_ops, user, &w, n->error,
			 sizeof n->error);
	if (r == PN_OK && out)
		*out = w;
	return r;
}

void pn_download_cancel(pn_download *w)
{
	if (w->canceled)
		return;
	w->canceled = true;
	node_kick(w->node);
}

void *pn_download_user(const pn_download *w)
{
	return w->user;
}

const struct pn_cid *pn_download_cid(const pn_download *w)
{
	return &w->cid;
}

static void api_s_result(struct pn_search *sr, const struct pn_search_hit *hit)
{
	if (!sr->api_result)
		return;
	sr->node->in_user++;
	sr->api_result(sr->user, hit);
	sr->node->in_user--;
}

static void api_s_done(struct pn_search *sr, int err, const char *why)
{
	if (!sr->api_done)
		return;
	sr->node->in_user++;
	sr->api_done(sr->user, err, why);
	sr->node->in_user--;
}

static const struct search_ops api_search_ops = {.result = api_s_result, .done = api_s_done};

int pn_node_search(pn_node *n, const char *query, void (*result)(void *ud, const struct pn_search_hit *hit),
		   void (*done)(void *ud, int err, const char *why), void *ud, pn_search **out)
{
	if (out)
		*out = NULL;
	if (n->state != NODE_STARTED) {
		set_err(n, "the node is not running");
		return PN_EBUSY;
	}
	if (!query) {
		set_err(n, "invalid argument");
		return PN_EINVAL;
	}
	struct pn_search *sr;
	int r = node_search(n, query, &api_search_ops, ud, &sr, n->error, sizeof n->error);
	if (r != PN_OK)
		return r;
	sr->api_result = result;
	sr->api_done = done;
	if (out)
		*out = sr;
	return PN_OK;
}

void pn_search_cancel(pn_search *sr)
{
	search_cancel(sr);
}

void pn_node_status(const pn_node *n, struct pn_node_status *st)
{
	memset(st, 0, sizeof *st);
	if (n->have_id)
		memcpy(st->node_id, n->id.node_id, PN_ID_BYTES);
	st->port = n->port;
	st->discovery = n->cfg->discovery;
	if (n->state != NODE_STARTED)
		return;
	st->discovery_ready = discovery_ready(n);
	st->directory_refused = n->dir ? dir_client_refused(n->dir) : 0;
	if (n->dir)
		dir_client_stats(n->dir, &st->lookups, &st->lookup_msgs);
	if (n->flood) {
		struct flood_node_stats fs;
		flood_node_get_stats(n->flood, &fs);
		st->neighbors = fs.neighbors;
		st->lookups += fs.lookups;
		st->lookup_msgs += fs.core.queries_sent;
	}
	for (const struct peer *p = n->peers; p; p = p->next)
		st->peers += p->hello;
	st->downloads = (size_t)count_downloads(n);
	st->shares = store_count(n->store);
	struct engine_stats es;
	engine_stats(n->engine, &es);
	st->bytes_up = es.bytes_up;
	st->bytes_down = es.bytes_down;
	pn_rate_get(&n->rate, uv_now(n->loop), es.bytes_up, es.bytes_down, &st->rate_up, &st->rate_down);
	pn_net_bytes(n->net, &st->wire_up, &st->wire_down);
}

static bool peer_info(const struct pn_node *n, const struct peer *p, struct pn_peer_info *out)
{
	struct engine_peer_info e;
	if (!p->hello || !engine_peer_info(n->engine, p->key, &e))
		return false;
	memset(out, 0, sizeof *out);
	memcpy(out->id, p->id, PN_ID_BYTES);
	snprintf(out->addr, sizeof out->addr, "%s", p->addr);
	out->outgoing = p->outgoing;
	out->neighbor = n->flood && flood_node_is_neighbor(n->flood, p->key);
	out->seed_server = p->seed_server;
	out->peer_choking = e.peer_choking;
	out->am_choking = e.am_choking;
	out->bytes_to = e.bytes_to;
	out->bytes_from = e.bytes_from;
	pn_rate_get(&p->rate, uv_now(n->loop), e.bytes_to, e.bytes_from, &out->rate_to, &out->rate_from);
	return true;
}

size_t pn_node_peers(const pn_node *n, struct pn_peer_info *out, size_t max)
{
	size_t count = 0;
	if (n->state != NODE_STARTED)
		return 0;
	for (const struct peer *p = n->peers; p; p = p->next) {
		struct pn_peer_info pi;
		if (!peer_info(n, p, &pi))
			continue;
		if (count < max)
			out[count] = pi;
		count++;
	}
	return count;
}

size_t pn_node_downloads(const pn_node *n, struct pn_progress *out, size_t max)
{
	size_t count = 0;
	if (n->state != NODE_STARTED)
		return 0;
	for (const struct download *d = n->downloads; d; d = d->next) {
		struct engine_download_info info;
		if (!engine_download_info(n->engine, &d->cid, &info))
			continue;
		if (count < max)
			out[count] = (struct pn_progress){.cid = d->cid, .name = d->name, .have = info.bytes_have,
							  .total = d->cid.size, .peers = info.peers,
							  .chunks = info.nchunks, .chunks_have = info.have,
							  .bytes_downloaded = info.bytes_down};
		count++;
	}
	return count;
}

size_t pn_node_shares(const pn_node *n, size_t from, struct pn_share_info *out, size_t max)
{
	if (n->state != NODE_STARTED)
		return 0;
	size_t total = store_count(n->store);
	for (size_t i = 0; i < max && from + i < total; i++) {
		const struct store_object *o = store_at(n->store, from + i);
		out[i] = (struct pn_share_info){.cid = o->cid, .name = o->name};
	}
	return total;
}
