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
#include <uv.h>
#include "node/node.h"
#include "node/node_ctl.h"
#include "node/node_dir.h"
#include "node/node_flood.h"
#include "crypto/crypto.h"
#include "net/conn_limit.h"
#include "net/net.h"
#include "proto/engine.h"
#include "proto/prng.h"
#include "store/store.h"
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

struct node;

/* One connection to another node (or a client or a server). What it knows
 * about transfers lives in the peer engine, and what flooding knows of it in
 * the flood node, both under the same key. */
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
	bool seed_server;             /* a --seed-server connection */
};

/* A control client waiting for a download. */
struct waiter {
	struct ctl_client *client;    /* NULL once it went away: the download goes on */
	char out_path[NODE_PATH_MAX]; /* "": CWD/name of the content */
	char cwd[NODE_PATH_MAX];
	bool to_stdout, force;
	struct waiter *next;
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
	struct waiter *waiters;
	bool finding;                 /* a look-up is outstanding */
	bool looked_up;               /* a look-up has gone out to the directory */
	bool done;
	uint32_t providers_seen;
};

struct node {
	uv_loop_t *loop;
	struct pn_node_opts opts;
	struct pn_logger log;         /* a copy of opts->log; cb NULL: silent */
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
	uv_signal_t sig_int, sig_term;
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
	struct pending_search {       /* a search sent before discovery was up */
		struct ctl_client *cc;    /* NULL: a free slot */
		uint64_t deadline_ms;     /* --peer-timeout after it came */
		char query[PN_DIR_QUERY_MAX + 1];
	} pending[NODE_PENDING_SEARCHES];
};

static uint64_t node_now(const struct node *n) { return uv_now(n->loop); }

static void cid_str(const struct pn_cid *cid, char out[PN_CID_STR_LEN + 1]) { pn_cid_format(cid, out); }

static void node_schedule(struct node *n);

/* ------------------------------------------------------------ peers */

static struct peer *peer_by_id(struct node *n, const uint8_t id[PN_ID_BYTES])
{
	for (struct peer *p = n->peers; p; p = p->next)
		if (p->hello && !memcmp(p->id, id, PN_ID_BYTES))
			return p;
	return NULL;
}

static struct peer *peer_by_key(struct node *n, uint32_t key)
{
	for (struct peer *p = n->peers; p; p = p->next)
		if (p->key == key)
			return p;
	return NULL;
}

static size_t peer_count(struct node *n)
{
	size_t c = 0;
	for (struct peer *p = n->peers; p; p = p->next)
		c++;
	return c;
}

/* A new connection's peer, known to the engine under its key. NULL when out
 * of memory or when the engine refuses the ID (banned). */
static struct peer *peer_new(struct node *n, struct pn_conn *c, bool outgoing, const uint8_t *id)
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

static void peer_unlink(struct node *n, struct peer *p)
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
static int peer_dial(struct node *n, const char *addr, const uint8_t *id, struct peer **out)
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

static struct download *download_find(struct node *n, const struct pn_cid *cid)
{
	for (struct download *d = n->downloads; d; d = d->next)
		if (!d->done && !memcmp(&d->cid, cid, sizeof *cid))
			return d;
	return NULL;
}

static void download_free(struct download *d)
{
	struct node *n = d->node;
	struct download **dp = &n->downloads;
	while (*dp && *dp != d)
		dp = &(*dp)->next;
	if (*dp)
		*dp = d->next;
	engine_unwant(n->engine, &d->cid, node_now(n)); /* nothing if it completed */
	if (d->part)
		store_put_release(n->store, d->part);
	while (d->waiters) {
		struct waiter *w = d->waiters;
		d->waiters = w->next;
		free(w);
	}
	free(d);
}

static void download_fail(struct download *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void download_fail(struct download *d, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	char id[PN_CID_STR_LEN + 1];
	cid_str(&d->cid, id);
	PN_LOGW(&d->node->log, "download %s failed: %s", id, msg);
	for (struct waiter *w = d->waiters; w; w = w->next)
		if (w->client)
			ctl_finish(w->client, "%s; the partial download is kept and resumes on the next get", msg);
	d->done = true;
	download_free(d);
}

/* Copies the object's file to path (atomically, without replacing an
 * existing file unless force). Returns 0 or an errno-style message in err. */
static int deliver_file(struct node *n, const struct store_object *o, const char *path, bool force, char *err,
			size_t errlen)
{
	char src[NODE_PATH_MAX + 128], id[PN_CID_STR_LEN + 1], tmp[NODE_PATH_MAX + 32];
	cid_str(&o->cid, id);
	snprintf(src, sizeof src, "%s/objects/%s", n->opts.data_dir, id);
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

static void report_done(struct node *n, struct waiter *w, const struct store_object *o, uint64_t down,
			uint64_t resumed, double secs, unsigned peers)
{
	if (!w->client)
		return;
	char id[PN_CID_STR_LEN + 1], path[NODE_PATH_MAX + 128];
	cid_str(&o->cid, id);
	if (w->to_stdout) {
		snprintf(path, sizeof path, "%s/objects/%s", n->opts.data_dir, id);
	} else {
		char err[8400];
		int len = w->out_path[0] ? snprintf(path, sizeof path, "%s", w->out_path)
					 : snprintf(path, sizeof path, "%s/%s", w->cwd, o->name);
		if (len >= (int)sizeof path) {
			ctl_finish(w->client, "output path too long (the node keeps the file in its store)");
			return;
		}
		if (deliver_file(n, o, path, w->force, err, sizeof err) != 0) {
			ctl_finish(w->client, "%s (the node keeps the file in its store)", err);
			return;
		}
	}
	ctl_got(w->client, &o->cid, o->name, path, down, resumed, secs, peers);
	ctl_finish(w->client, NULL);
}

static void download_complete(struct download *d)
{
	struct node *n = d->node;
	const struct store_object *o = NULL;
	struct store_partial *part = d->part;
	d->part = NULL;
	int r = store_put_finish(n->store, part, &o);
	if (r != PN_OK) {
		d->part = part;
		download_fail(d, "cannot complete the download: %s", pn_strerror(r));
		return;
	}
	char id[PN_CID_STR_LEN + 1];
	cid_str(&d->cid, id);
	double secs = (double)(node_now(n) - d->started_ms) / 1000.0;
	uint64_t down = d->cid.size - d->bytes_resumed;
	unsigned peers = d->providers_seen;
	PN_LOGI(&n->log, "downloaded %s  %s: %llu bytes in %.2f s", id, o->name, (unsigned long long)down, secs);
	for (struct waiter *w = d->waiters; w; w = w->next)
		report_done(n, w, o, down, d->bytes_resumed, secs, peers);
	d->done = true;
	download_free(d);
}

/* The hash list is complete and verified: record it, re-verify what a
 * previous run left on disk, and let the engine request chunks. */
static void download_hashes(struct node *n, struct download *d, const uint8_t *hashes, uint32_t len)
{
	int r = store_partial_has_hashes(d->part) ? PN_OK
		: store_partial_add_hashes(d->part, 0, len / PN_HASH_BYTES, hashes);
	if (r != PN_OK) {
		download_fail(d, "cannot store the hash list: %s", pn_strerror(r));
		return;
	}
	uint64_t ok = 0;
	r = store_partial_verify_existing(d->part, &ok);
	if (r != PN_OK) {
		download_fail(d, "cannot read the partial download: %s", pn_strerror(r));
		return;
	}
	d->bytes_resumed = ok;
	engine_hashes_recorded(n->engine, &d->cid, store_partial_bitmap(d->part), node_now(n));
}

/* ------------------------------------------------------------ the engine's actions */

/* Reads the chunk and sends it as one CHUNK frame from the scratch buffer. */
static void send_chunk(struct node *n, struct peer *p, const struct engine_action *a)
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

static void write_chunk(struct node *n, const struct engine_action *a)
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
		download_fail(d, "cannot write the download: %s", pn_strerror(r));
}

static void on_peer_ready(struct node *n, struct peer *p, const struct engine_action *a)
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
}

static void dial_provider(struct node *n, const struct engine_action *a)
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
static bool discovery_ready(const struct node *n)
{
	return n->flood ? flood_node_ready(n->flood) : n->dir && dir_client_ready(n->dir);
}

/* What a command that waited for discovery was waiting for, in one line. */
static void discovery_waited(const struct node *n, char *out, size_t len)
{
	uint32_t t = n->opts.peer_timeout_ms ? n->opts.peer_timeout_ms : NODE_DEFAULT_PEER_TIMEOUT_MS;
	const char *why = n->dir ? dir_client_last_error(n->dir) : "";
	if (n->flood)
		snprintf(out, len, "no flooding neighbour reached in %u s (the bootstrap peers are unreachable); "
			 "the node keeps trying", t / 1000);
	else
		snprintf(out, len, "still no connection to the directory at %s after %u s (last error: %s); "
			 "the node keeps trying", n->opts.directory ? n->opts.directory : "(none)", t / 1000,
			 why[0] ? why : "not connected");
}

static void node_pump(struct node *n)
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
				uint32_t t = n->opts.peer_timeout_ms ? n->opts.peer_timeout_ms : NODE_DEFAULT_PEER_TIMEOUT_MS;
				char why[PN_NODE_ERR_MAX];
				discovery_waited(n, why, sizeof why);
				if (!d->providers_seen && ((n->flood && !flood_node_ready(n->flood)) ||
							   (!n->flood && n->dir && !d->looked_up)))
					download_fail(d, "%s", why);
				else
					download_fail(d, "no provider of %s reachable for %u s", id, t / 1000);
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
	struct node *n = p->node;
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
	struct node *n = p->node;
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
	struct node *n = p->node;
	if (err && err != PN_ECLOSED && err != PN_ECORRUPT && err != PN_EPROTO && !pn_conn_evicted(c))
		PN_LOGI(&n->log, "%s: peer connection closed: %s", p->addr, pn_strerror(err));
	engine_peer_closed(n->engine, p->key, node_now(n));
	if (n->flood)
		flood_node_peer_closed(n->flood, p->key, node_now(n));
	peer_unlink(n, p);
	free(p);
	node_pump(n);
}

static const struct pn_conn_cbs *accept_cb(struct pn_net *net, struct pn_conn *c)
{
	struct node *n = pn_net_data(net);
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
static void seed_servers_tick(struct node *n, uint64_t now)
{
	if (now < n->seed_server_next_ms)
		return;
	n->seed_server_next_ms = now + NODE_SEED_SERVER_RETRY_MS;
	for (int i = 0; i < n->opts.nseed_servers; i++) {
		const char *addr = n->opts.seed_servers[i];
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
	struct node *n = ud;
	return engine_store_lookup(n->store, cid, out);
}

/* Bytes waiting behind the upload cap on every connection, plus the cap's
 * debt for what it already let go. */
static uint64_t backlog_cb(void *ud)
{
	struct node *n = ud;
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
	struct node *n = ud;
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
	struct node *n = ud;
	struct download *d = download_find(n, cid);
	if (!d)
		return;
	d->finding = false; /* may ask again later */
	if (err == PN_ELIMIT || found > 0 || d->providers_seen > 0 || n->opts.nseed_servers > 0)
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
		download_fail(d, "no node within %u hops has %s", n->opts.ttl ? n->opts.ttl : FLOOD_DEFAULT_TTL, id);
	else
		download_fail(d, "no node offers %s", id);
}

static void search_result_cb(void *ud, void *token, const struct pn_cid *cid, uint32_t providers, const char *name,
			     size_t name_len)
{
	ctl_result(token, cid, providers, name, name_len);
}

static void search_done_cb(void *ud, void *token, const char *why)
{
	if (why)
		ctl_finish(token, "search failed: %s", why);
	else
		ctl_finish(token, NULL);
}

/* The directory took us (back): what is being downloaded is served too. */
static void refind(struct node *n, uint64_t now);
static void pending_searches_run(struct node *n, uint64_t now);

static void registered_cb(void *ud)
{
	struct node *n = ud;
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
	struct node *n = ud;
	const struct store_object *o = store_get(n->store, cid);
	if (o)
		return o->name;
	struct download *d = download_find(n, cid);
	return d && d->have_meta && d->part && store_partial_have_count(d->part) ? d->name : NULL;
}

/* ------------------------------------------------------------ what the control socket asks */

static int ctl_get_cb(void *ud, struct ctl_client *cc, const struct ctl_get_request *req)
{
	struct node *n = ud;
	const struct pn_cid *cid = &req->cid;
	struct waiter *w = calloc(1, sizeof *w);
	if (!w)
		return PN_ENOMEM;
	w->client = cc;
	w->to_stdout = req->to_stdout;
	w->force = req->force;
	snprintf(w->out_path, sizeof w->out_path, "%s", req->out_path ? req->out_path : "");
	snprintf(w->cwd, sizeof w->cwd, "%s", req->cwd ? req->cwd : ".");
	const struct store_object *o = store_get(n->store, cid);
	if (o) {
		report_done(n, w, o, 0, cid->size, 0, 0);
		free(w);
		return PN_OK;
	}
	struct download *d = download_find(n, cid);
	if (d) {
		w->next = d->waiters;
		d->waiters = w;
		return PN_OK;
	}
	/* Discovery not up yet (the node is still connecting to its directory or
	 * neighbours, or lost them): the download starts anyway and its look-up
	 * goes out when discovery is back (refind); --peer-timeout without a
	 * provider ends it with a line saying what it waited for. */
	int count = 0;
	for (struct download *x = n->downloads; x; x = x->next)
		count++;
	if (count >= NODE_MAX_DOWNLOADS) {
		free(w);
		ctl_finish(cc, "too many downloads at once (%d); try again when one ends", count);
		return PN_OK;
	}
	d = calloc(1, sizeof *d);
	if (!d) {
		free(w);
		return PN_ENOMEM;
	}
	d->node = n;
	d->cid = *cid;
	d->started_ms = node_now(n);
	int r = store_put_begin(n->store, cid, NULL, &d->part);
	if (r != PN_OK) {
		free(d);
		free(w);
		ctl_finish(cc, "cannot start the download in the store: %s", pn_strerror(r));
		return PN_OK;
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
			free(w);
			ctl_finish(cc, "cannot read the partial download: %s", pn_strerror(r));
			return PN_OK;
		}
		d->bytes_resumed = ok;
		hashes = store_partial_hash(d->part, 0);
		have = store_partial_bitmap(d->part);
	}
	d->waiters = w;
	d->next = n->downloads;
	n->downloads = d;
	r = engine_want(n->engine, cid, d->have_meta ? d->name : NULL, hashes, have, node_now(n));
	if (r != PN_OK) {
		d->waiters = NULL;
		free(w);
		d->done = true;
		download_free(d);
		ctl_finish(cc, "cannot start the download: %s", pn_strerror(r));
		return PN_OK;
	}
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
	node_pump(n); /* may complete at once (everything was on disk) */
	return PN_OK;
}

static void search_now(struct node *n, struct ctl_client *cc, const char *query)
{
	if (n->flood) {
		int r = flood_node_search(n->flood, query, cc, node_now(n));
		if (r == PN_EINVAL)
			ctl_finish(cc, "search: the query must be 1 to %d bytes", PN_QUERY_DATA_MAX);
		else if (r == PN_ECLOSED)
			ctl_finish(cc, "not connected to any peer (the bootstrap peers are unreachable); the node keeps retrying");
		else if (r != PN_OK)
			ctl_finish(cc, "search failed: %s", pn_strerror(r));
		node_schedule(n);
		return;
	}
	int r = n->dir ? dir_client_search(n->dir, query, cc) : PN_ECLOSED;
	if (r == PN_EINVAL) {
		ctl_finish(cc, "search: the query must be 1 to %d bytes", PN_DIR_QUERY_MAX);
	} else if (r != PN_OK) {
		const char *why = n->dir ? dir_client_last_error(n->dir) : "";
		ctl_finish(cc, "the directory at %s is unreachable (%s)", n->opts.directory ? n->opts.directory : "(none)",
			   why[0] ? why : "not connected");
	}
}

/* A search sent while the node is still connecting to its directory or
 * neighbours (or lost them) waits for them, at most --peer-timeout. */
static void ctl_search_cb(void *ud, struct ctl_client *cc, const char *query)
{
	struct node *n = ud;
	size_t len = strlen(query);
	if (discovery_ready(n) || len == 0 || len > PN_DIR_QUERY_MAX) {
		search_now(n, cc, query); /* a bad query is refused there */
		return;
	}
	for (size_t i = 0; i < NODE_PENDING_SEARCHES; i++) {
		struct pending_search *ps = &n->pending[i];
		if (ps->cc)
			continue;
		ps->cc = cc;
		ps->deadline_ms = node_now(n) + (n->opts.peer_timeout_ms ? n->opts.peer_timeout_ms
									: NODE_DEFAULT_PEER_TIMEOUT_MS);
		memcpy(ps->query, query, len + 1);
		node_schedule(n);
		return;
	}
	ctl_finish(cc, "%d searches already wait for the node to reach %s; try again later", NODE_PENDING_SEARCHES,
		   n->flood ? "its neighbours" : "its directory");
}

/* Sends the waiting searches once discovery is up; fails those whose time is over. */
static void pending_searches_run(struct node *n, uint64_t now)
{
	bool ready = discovery_ready(n);
	for (size_t i = 0; i < NODE_PENDING_SEARCHES; i++) {
		struct pending_search *ps = &n->pending[i];
		struct ctl_client *cc = ps->cc;
		if (!cc || (!ready && now < ps->deadline_ms))
			continue;
		ps->cc = NULL;
		if (ready) {
			search_now(n, cc, ps->query);
		} else {
			char why[PN_NODE_ERR_MAX];
			discovery_waited(n, why, sizeof why);
			ctl_finish(cc, "search: %s", why);
		}
	}
}

static int ctl_add_cb(void *ud, const char *path, const struct store_object **out)
{
	struct node *n = ud;
	int r = store_add_local(n->store, path, NULL, out);
	if (r != PN_OK && r != PN_EEXIST)
		return r;
	char id[PN_CID_STR_LEN + 1];
	cid_str(&(*out)->cid, id);
	if (n->dir)
		dir_client_offer(n->dir, &(*out)->cid, (*out)->name);
	if (n->dir && !dir_client_ready(n->dir))
		PN_LOGI(&n->log, "holding %s  %s; it is registered when the directory at %s is reachable", id,
			(*out)->name, n->opts.directory);
	else
		PN_LOGI(&n->log, "sharing %s  %s", id, (*out)->name);
	return r;
}

static void ctl_status_cb(void *ud, struct ctl_status *st)
{
	struct node *n = ud;
	memcpy(st->node_id, n->id.node_id, PN_ID_BYTES);
	st->listen = n->opts.listen;
	st->port = n->port;
	st->discovery = n->opts.discovery == PN_DISCOVERY_DIRECTORY ? "directory"
			: n->opts.discovery == PN_DISCOVERY_FLOOD ? "flood" : "dht";
	st->directory = n->opts.directory;
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
	st->npeers = 0;
	for (struct peer *p = n->peers; p && st->npeers < CTL_STATUS_PEERS_MAX; p = p->next) {
		struct engine_peer_info e;
		if (!p->hello || !engine_peer_info(n->engine, p->key, &e))
			continue;
		struct ctl_peer_status *ps = &st->peers[st->npeers++];
		memset(ps, 0, sizeof *ps);
		memcpy(ps->id, p->id, PN_ID_BYTES);
		snprintf(ps->addr, sizeof ps->addr, "%s", p->addr);
		ps->outgoing = p->outgoing;
		ps->neighbor = n->flood && flood_node_is_neighbor(n->flood, p->key);
		ps->seed_server = p->seed_server;
		ps->peer_choking = e.peer_choking;
		ps->am_choking = e.am_choking;
		ps->bytes_to = e.bytes_to;
		ps->bytes_from = e.bytes_from;
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
	pn_net_bytes(n->net, &st->wire_up, &st->wire_down);
}

static void node_stop(struct node *n);

static void ctl_stop_cb(void *ud)
{
	node_stop(ud);
}

static void ctl_client_gone_cb(void *ud, struct ctl_client *cc)
{
	struct node *n = ud;
	for (size_t i = 0; i < NODE_PENDING_SEARCHES; i++)
		if (n->pending[i].cc == cc)
			n->pending[i].cc = NULL;
	if (n->flood)
		flood_node_search_cancel(n->flood, cc);
	if (n->dir)
		dir_client_search_cancel(n->dir, cc);
	for (struct download *d = n->downloads; d; d = d->next)
		for (struct waiter *w = d->waiters; w; w = w->next)
			if (w->client == cc)
				w->client = NULL; /* the download goes on in the background */
}

/* Progress lines for control clients waiting on downloads. */
static void report_progress(struct node *n)
{
	for (struct download *d = n->downloads; d; d = d->next) {
		struct engine_download_info info;
		if (!d->part || !engine_download_info(n->engine, &d->cid, &info))
			continue;
		for (struct waiter *w = d->waiters; w; w = w->next)
			if (w->client)
				ctl_progress(w->client, info.bytes_have, d->cid.size, info.peers, d->name);
	}
}

/* ------------------------------------------------------------ timers */

/* When the discovery of d next wants to ask again (UINT64_MAX: not now). */
static uint64_t download_refind_at(struct node *n, const struct download *d)
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

static void tick_cb(uv_timer_t *t);

/* Arms the node's one timer at the soonest time any part needs it. */
static void node_schedule(struct node *n)
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
	if (n->opts.nseed_servers && n->seed_server_next_ms < next)
		next = n->seed_server_next_ms;
	for (size_t i = 0; i < NODE_PENDING_SEARCHES; i++)
		if (n->pending[i].cc && n->pending[i].deadline_ms < next)
			next = n->pending[i].deadline_ms;
	for (struct download *d = n->downloads; d; d = d->next) {
		t = download_refind_at(n, d);
		if (t < next)
			next = t;
		for (struct waiter *w = d->waiters; w; w = w->next)
			if (w->client && n->last_progress_ms + NODE_PROGRESS_MS < next)
				next = n->last_progress_ms + NODE_PROGRESS_MS;
	}
	if (n->opts.up_rate && engine_uploads_waiting(n->engine)) {
		/* Requests wait for the upload backlog to drain: look again when
		 * the cap has paid its debt (and what is queued has gone out). */
		t = now + 1 + backlog_cb(n) * 1000 / n->opts.up_rate;
		if (t < next)
			next = t;
	}
	uint64_t delay = next <= now ? 0 : next - now;
	if (delay < NODE_TIMER_MIN_MS)
		delay = NODE_TIMER_MIN_MS;
	if (delay > NODE_TIMER_MAX_MS)
		delay = NODE_TIMER_MAX_MS;
	uv_timer_start(&n->tick, tick_cb, delay, 0);
}

/* Asks discovery again for the providers of downloads that need more. A
 * look-up's answer may end a download, so each is looked up afresh. */
static void refind(struct node *n, uint64_t now)
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

static void tick_cb(uv_timer_t *t)
{
	struct node *n = t->data;
	uint64_t now = node_now(n);
	if (n->dir)
		dir_client_tick(n->dir, now);
	if (n->flood)
		flood_node_tick(n->flood, now);
	seed_servers_tick(n, now);
	if (engine_next_wakeup(n->engine) <= now)
		engine_tick(n->engine, now);
	node_pump(n);
	refind(n, now);
	pending_searches_run(n, now);
	if (now - n->last_progress_ms >= NODE_PROGRESS_MS) {
		n->last_progress_ms = now;
		report_progress(n);
	}
	node_schedule(n);
}

/* ------------------------------------------------------------ start and stop */

static void close_walk_cb(uv_handle_t *h, void *arg)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

static void node_stop(struct node *n)
{
	if (n->stopping)
		return;
	n->stopping = true;
	PN_LOGI(&n->log, "stopping");
	for (size_t i = 0; i < NODE_PENDING_SEARCHES; i++)
		if (n->pending[i].cc) {
			ctl_finish(n->pending[i].cc, "the node is stopping");
			n->pending[i].cc = NULL;
		}
	while (n->downloads) {
		struct download *d = n->downloads;
		for (struct waiter *w = d->waiters; w; w = w->next)
			if (w->client)
				ctl_finish(w->client, "the node is stopping; the partial download is kept");
		d->done = true;
		download_free(d);
	}
	node_pump(n);
	if (n->dir)
		dir_client_stop(n->dir);
	if (n->flood)
		flood_node_stop(n->flood);
	uv_timer_stop(&n->tick);
	n->timer_on = false;
	uv_close((uv_handle_t *)&n->tick, NULL);
	uv_close((uv_handle_t *)&n->sig_int, NULL);
	uv_close((uv_handle_t *)&n->sig_term, NULL);
	ctl_server_close(n->ctl);
	pn_net_close(n->net);
}

static void signal_cb(uv_signal_t *s, int signum)
{
	node_stop(s->data);
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

/* Shares a file, or the regular files directly inside a directory. */
static void add_share(struct node *n, const char *path)
{
	struct stat st;
	if (stat(path, &st) != 0) {
		PN_LOGW(&n->log, "cannot share %s: %s", path, strerror(errno));
		return;
	}
	if (S_ISDIR(st.st_mode)) {
		DIR *dir = opendir(path);
		struct dirent *e;
		int count = 0;
		while (dir && (e = readdir(dir)) && count < 10000) {
			if (e->d_name[0] == '.')
				continue;
			char sub[NODE_PATH_MAX];
			snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
			if (stat(sub, &st) == 0 && S_ISREG(st.st_mode)) {
				add_share(n, sub);
				count++;
			}
		}
		if (dir)
			closedir(dir);
		return;
	}
	const struct store_object *o = NULL;
	int r = store_add_local(n->store, path, NULL, &o);
	if (r != PN_OK && r != PN_EEXIST) {
		PN_LOGW(&n->log, "cannot share %s: %s", path, pn_strerror(r));
		return;
	}
	char id[PN_CID_STR_LEN + 1];
	cid_str(&o->cid, id);
	PN_LOGI(&n->log, "sharing %s  %s", id, o->name);
}

static void set_err(char *err, size_t err_len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t err_len, const char *fmt, ...)
{
	if (!err || !err_len)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, err_len, fmt, ap);
	va_end(ap);
}

/* Discovery: the directory client or the flood node, reporting to n. */
static int discovery_setup(struct node *n)
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
	if (n->opts.discovery == PN_DISCOVERY_FLOOD) {
		struct flood_node_opts fo = {
			.data_dir = n->opts.data_dir,
			.announce_host = n->opts.announce_host,
			.port = n->port,
			.bootstrap = n->opts.bootstrap,
			.nbootstrap = n->opts.nbootstrap,
			.min_neighbors = n->opts.min_neighbors,
			.max_neighbors = n->opts.max_neighbors,
			.ttl = n->opts.ttl,
			.plain_flood = n->opts.plain_flood,
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
	if (n->opts.discovery == PN_DISCOVERY_DIRECTORY && n->opts.directory) {
		struct dir_client_opts dopts = {
			.directory = n->opts.directory,
			.announce_host = n->opts.announce_host,
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

static int ctl_setup(struct node *n, char *err, size_t err_len)
{
	if (n->opts.control_path)
		snprintf(n->control_path, sizeof n->control_path, "%s", n->opts.control_path);
	else
		snprintf(n->control_path, sizeof n->control_path, "%s/%s", n->opts.data_dir, PN_CONTROL_SOCKET);
	struct ctl_server_opts co = {
		.loop = n->loop,
		.path = n->control_path,
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
		set_err(err, err_len, "%s", why);
	return r;
}

int pn_node_run(const struct pn_node_opts *opts, char *err, size_t err_len)
{
	set_err(err, err_len, "%s", "");
	struct node *n = calloc(1, sizeof *n);
	int r;
	if (!n) {
		set_err(err, err_len, "out of memory");
		return PN_ENOMEM;
	}
	n->opts = *opts;
	n->opts.log = NULL;
	if (opts->log)
		n->log = *opts->log;
	n->loop = uv_default_loop();
	pn_prng_seed(&n->rng, uv_hrtime() ^ (uint64_t)getpid() << 32 ^ (uint64_t)(uintptr_t)n);
	n->peer_cbs = (struct pn_conn_cbs){
		.established_cb = peer_established_cb,
		.frame_cb = peer_frame_cb,
		.writable_cb = peer_writable_cb,
		.close_cb = peer_close_cb,
	};
	n->store_ops = (struct engine_store_ops){.lookup = store_lookup_cb, .backlog = backlog_cb};
	signal(SIGPIPE, SIG_IGN);
	n->out_cap = PN_FRAME_HDR + PN_FRAME_MAX;
	n->out = malloc(n->out_cap);
	if (!n->out) {
		set_err(err, err_len, "out of memory");
		r = PN_ENOMEM;
		goto out_buf;
	}
	r = pn_identity_load_or_create(opts->data_dir, &n->id);
	if (r != PN_OK) {
		set_err(err, err_len, "cannot load or create the identity in %s: %s", opts->data_dir, pn_strerror(r));
		goto out_buf;
	}
	r = store_open_log(opts->data_dir, &n->log, &n->store);
	if (r != PN_OK) {
		set_err(err, err_len, "cannot open the store in %s: %s", opts->data_dir, pn_strerror(r));
		goto out_id;
	}
	struct pn_net_opts nopts;
	pn_net_opts_default(&nopts);
	nopts.log = &n->log;
	r = pn_net_new(n->loop, &n->id, &nopts, &n->net);
	if (r != PN_OK) {
		set_err(err, err_len, "cannot set up TLS: %s", pn_strerror(r));
		goto out_store;
	}
	pn_net_set_data(n->net, n);
	pn_net_set_rates(n->net, opts->up_rate, opts->down_rate);
	r = pn_net_listen(n->net, opts->listen, accept_cb, &n->port);
	if (r != PN_OK) {
		set_err(err, err_len, "cannot listen on %s: %s", opts->listen,
			r == PN_EEXIST ? "address already in use" : pn_strerror(r));
		goto out_net;
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
		.upload_slots = opts->upload_slots,
		.rechoke_ms = NODE_RECHOKE_MS,
		.optimistic_ms = NODE_OPTIMISTIC_MS,
		.stall_ms = opts->peer_timeout_ms ? opts->peer_timeout_ms : NODE_DEFAULT_PEER_TIMEOUT_MS,
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
		.backlog_max = !opts->up_rate ? 0
			       : opts->up_rate * NODE_UPLOAD_AHEAD_MS / 1000 > PN_CHUNK_SIZE
				       ? opts->up_rate * NODE_UPLOAD_AHEAD_MS / 1000
				       : 1,
		.seed = pn_prng_next(&n->rng),
		.store = &n->store_ops,
		.store_ud = n,
	};
	memcpy(eo.self_id, n->id.node_id, PN_ID_BYTES);
	n->engine = engine_new(&eo, uv_now(n->loop));
	if (!n->engine) {
		set_err(err, err_len, "out of memory");
		r = PN_ENOMEM;
		goto out_net;
	}
	r = discovery_setup(n);
	if (r != PN_OK) {
		set_err(err, err_len, "out of memory");
		goto out_net;
	}
	r = ctl_setup(n, err, err_len);
	if (r != PN_OK)
		goto out_net;
	for (int i = 0; i < opts->nshares; i++)
		add_share(n, opts->shares[i]);
	uv_timer_init(n->loop, &n->tick);
	n->tick.data = n;
	n->timer_on = true;
	uv_timer_start(&n->tick, tick_cb, 0, 0);
	uv_signal_init(n->loop, &n->sig_int);
	uv_signal_init(n->loop, &n->sig_term);
	n->sig_int.data = n->sig_term.data = n;
	uv_signal_start(&n->sig_int, signal_cb, SIGINT);
	uv_signal_start(&n->sig_term, signal_cb, SIGTERM);
	if (opts->ready_cb) {
		struct pn_node_ready ready = {
			.port = n->port,
			.discovery = opts->discovery,
			.shared = store_count(n->store),
			.control_path = n->control_path,
		};
		memcpy(ready.node_id, n->id.node_id, PN_ID_BYTES);
		opts->ready_cb(opts->ready_ud, &ready);
	}
	uv_run(n->loop, UV_RUN_DEFAULT);
	r = PN_OK;
	struct engine_stats st;
	engine_stats(n->engine, &st);
	PN_LOGI(&n->log, "stopped: %llu bytes uploaded, %llu bytes downloaded", (unsigned long long)st.bytes_up,
		(unsigned long long)st.bytes_down);
	goto out_store;
out_net:
	pn_net_close(n->net);
	uv_run(n->loop, UV_RUN_DEFAULT);
out_store:
	ctl_server_free(n->ctl);
	dir_client_free(n->dir);
	flood_node_free(n->flood);
	engine_free(n->engine);
	store_close(n->store);
out_id:
	pn_identity_free(&n->id);
out_buf:
	uv_walk(n->loop, close_walk_cb, NULL);
	uv_run(n->loop, UV_RUN_DEFAULT);
	uv_loop_close(n->loop);
	free(n->out);
	free(n);
	return r;
}
