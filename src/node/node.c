/* A peer-to-peer node: peers, downloads, the control of the peer engine. See node.h.
 *
 * Every transfer decision lives in the sans-I/O peer engine (src/proto/engine.c);
 * this file hands it what the network and the store say, and carries out what
 * it asks: send, read a chunk, verify and write a chunk, dial, close. */
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
#include "node/node_int.h"
#include "proto/prng.h"
#include "util/log.h"

uint64_t node_now(struct node *n) { return uv_now(n->loop); }

int node_send(struct node *n, struct pn_conn *c, const struct pn_msg *m)
{
	return pn_conn_send_msg(c, m);
}

uint64_t node_rand(struct node *n)
{
	struct pn_prng p = {.state = n->rng};
	uint64_t x = pn_prng_next(&p);
	n->rng = p.state;
	return x;
}

static void cid_str(const struct pn_cid *cid, char out[PN_CID_STR_LEN + 1]) { pn_cid_format(cid, out); }

/* ------------------------------------------------------------ peers */

struct peer *node_peer_by_id(struct node *n, const uint8_t id[PN_ID_BYTES])
{
	for (struct peer *p = n->peers; p; p = p->next)
		if (p->hello && !memcmp(p->id, id, PN_ID_BYTES))
			return p;
	return NULL;
}

struct peer *node_peer_by_key(struct node *n, uint32_t key)
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
struct peer *node_peer_new(struct node *n, struct pn_conn *c, bool outgoing, const uint8_t *id)
{
	struct peer *p = calloc(1, sizeof *p);
	if (!p)
		return NULL;
	p->node = n;
	p->conn = c;
	p->outgoing = outgoing;
	p->key = ++n->next_key;
	p->cand = -1;
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

/* ------------------------------------------------------------ downloads */

struct download *node_download_find(struct node *n, const struct pn_cid *cid)
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
		struct ctl_waiter *w = d->waiters;
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
	pn_log_warn("download %s failed: %s", id, msg);
	for (struct ctl_waiter *w = d->waiters; w; w = w->next)
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
	char src[4096 + 128], id[PN_CID_STR_LEN + 1], tmp[4096 + 32];
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
	int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (out < 0) {
		snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
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

static void report_done(struct node *n, struct ctl_waiter *w, const struct store_object *o, uint64_t down,
			uint64_t resumed, double secs, unsigned peers)
{
	if (!w->client)
		return;
	char id[PN_CID_STR_LEN + 1], path[4096 + 128];
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
	ctl_reply(w->client, "got\t%s\t%s\t%s\t%llu\t%llu\t%llu\t%.3f\t%u\n", id, o->name, path,
		  (unsigned long long)o->cid.size, (unsigned long long)down, (unsigned long long)resumed, secs, peers);
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
	pn_log_info("downloaded %s  %s: %llu bytes in %.2f s", id, o->name, (unsigned long long)down, secs);
	for (struct ctl_waiter *w = d->waiters; w; w = w->next)
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

/* Reads the chunk and sends it as one CHUNK frame from the scratch buffer. */
static void send_chunk(struct node *n, struct peer *p, const struct engine_action *a)
{
	uint8_t *data = n->out + PN_FRAME_HDR + PN_CHUNK_MSG_HDR;
	uint32_t len = 0;
	int r;
	const struct store_object *o = store_get(n->store, &a->cid);
	struct download *d = o ? NULL : node_download_find(n, &a->cid);
	if (o)
		r = store_read_chunk(n->store, o, a->index, data, &len);
	else if (d && d->part && store_partial_has_chunk(d->part, a->index))
		r = store_partial_read_chunk(d->part, a->index, data, &len);
	else
		r = PN_ENOTFOUND;
	if (r != PN_OK) {
		pn_log_error("reading chunk %u: %s", a->index, pn_strerror(r));
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
	struct download *d = node_download_find(n, &a->cid);
	if (!d || !d->part) {
		engine_chunk_written(n->engine, a->peer, &a->cid, a->index, PN_EINVAL, node_now(n));
		return;
	}
	int r = store_partial_write_chunk(d->part, a->index, a->data, a->len);
	if (r == PN_ECORRUPT) {
		struct peer *p = node_peer_by_key(n, a->peer);
		pn_log_warn("%s sent chunk %u that does not match its hash: peer dropped and refused",
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
	struct pn_msg_hello h = {.version = PN_PROTOCOL_VERSION, .role = a->role, .listen_port = a->listen_port,
				 .features = a->features};
	if (a->role == PN_ROLE_NODE)
		(void)flood_on_hello(n, p, &h);
}

static void dial(struct node *n, const struct engine_action *a)
{
	if (peer_count(n) >= NODE_MAX_PEERS)
		return;
	struct peer *p = node_peer_new(n, NULL, true, a->id);
	if (!p)
		return;
	snprintf(p->addr, sizeof p->addr, "%s", a->addr);
	struct pn_conn *c;
	int r = pn_net_connect(n->net, a->addr, a->id, &node_peer_cbs, p, &c);
	if (r != PN_OK) {
		pn_log_info("cannot dial provider %s: %s", a->addr, pn_strerror(r));
		engine_peer_closed(n->engine, p->key, node_now(n));
		peer_unlink(n, p);
		free(p);
		return;
	}
	p->conn = c;
	engine_peer_offer(n->engine, p->key, &a->cid, node_now(n));
}

void node_pump(struct node *n)
{
	struct engine_action a;
	while (engine_next_action(n->engine, &a)) {
		struct peer *p = a.peer ? node_peer_by_key(n, a.peer) : NULL;
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
			if ((d = node_download_find(n, &a.cid)))
				download_hashes(n, d, a.data, a.len);
			break;
		case ENGINE_NAME:
			if ((d = node_download_find(n, &a.cid)) && !d->have_meta) {
				snprintf(d->name, sizeof d->name, "%s", a.name);
				d->have_meta = true;
				if (store_partial_set_name(d->part, d->name) != PN_OK)
					pn_log_warn("cannot record the name of a download");
				dir_client_offer(n, &d->cid, d->name);
			}
			break;
		case ENGINE_DIAL:
			dial(n, &a);
			break;
		case ENGINE_CLOSE:
			if (p && p->conn) {
				if (a.err && a.err != PN_ECORRUPT)
					pn_log_info("%s: %s, closing", p->addr, a.why ? a.why : pn_strerror(a.err));
				else if (a.err == PN_ECORRUPT && a.why && strstr(a.why, "hash list"))
					pn_log_warn("%s %s: dropped and refused", p->addr, a.why);
				pn_conn_close(p->conn, a.err);
			}
			break;
		case ENGINE_PEER_READY:
			if (p && p->conn)
				on_peer_ready(n, p, &a);
			break;
		case ENGINE_DONE:
			if ((d = node_download_find(n, &a.cid)))
				download_complete(d);
			break;
		case ENGINE_STALLED:
			if ((d = node_download_find(n, &a.cid))) {
				char id[PN_CID_STR_LEN + 1];
				cid_str(&d->cid, id);
				uint32_t t = n->opts.peer_timeout_ms ? n->opts.peer_timeout_ms : NODE_DEFAULT_PEER_TIMEOUT_MS;
				download_fail(d, "no provider of %s reachable for %u s", id, t / 1000);
			}
			break;
		case ENGINE_NOT_FOUND:
			break;
		case ENGINE_PEER_ERROR:
			pn_log_debug("%s: error %u from peer", p ? p->addr : "?", a.code);
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
		pn_log_info("%s: malformed message (type 0x%02x, %zu bytes), closing", p->addr, len ? body[0] : 0, len);
		(void)pn_conn_send_error(c, 0, PN_WERR_PROTOCOL, "malformed message");
		return PN_EPROTO;
	}
	r = engine_on_msg(n->engine, p->key, &m, node_now(n));
	if (r == PN_ENOTSUP) {
		r = flood_on_msg(n, p, &m, body, len);
		if (r == PN_ENOTSUP) {
			pn_log_info("%s: unexpected message type 0x%02x from a peer, closing", p->addr, m.type);
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
	engine_peer_established(n->engine, p->key, p->id, flood_hello_features(n, p), node_now(n));
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
	if (err && err != PN_ECLOSED && err != PN_ECORRUPT && err != PN_EPROTO)
		pn_log_info("%s: peer connection closed: %s", p->addr, pn_strerror(err));
	engine_peer_closed(n->engine, p->key, node_now(n));
	flood_peer_closed(n, p);
	peer_unlink(n, p);
	free(p);
	node_pump(n);
}

const struct pn_conn_cbs node_peer_cbs = {
	.established_cb = peer_established_cb,
	.frame_cb = peer_frame_cb,
	.writable_cb = peer_writable_cb,
	.close_cb = peer_close_cb,
};

static const struct pn_conn_cbs *accept_cb(struct pn_net *net, struct pn_conn *c)
{
	struct node *n = pn_net_data(net);
	if (n->stopping || peer_count(n) >= NODE_MAX_PEERS) {
		pn_log_warn("%s: refused, %zu peers already", pn_conn_peer_addr(c), peer_count(n));
		return NULL;
	}
	struct peer *p = node_peer_new(n, c, false, NULL);
	if (!p)
		return NULL;
	snprintf(p->addr, sizeof p->addr, "%s", pn_conn_peer_addr(c));
	pn_conn_set_data(c, p);
	pn_conn_set_max_frame(c, ENGINE_HELLO_MAX_BODY);
	return &node_peer_cbs;
}

void node_connect_provider(struct node *n, const uint8_t id[PN_ID_BYTES], const char *addr, const struct pn_cid *cid)
{
	engine_provider(n->engine, id, addr, cid, node_now(n));
	node_pump(n);
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
		struct peer *p = node_peer_new(n, NULL, true, NULL);
		if (!p)
			return;
		p->seed_server = true;
		snprintf(p->addr, sizeof p->addr, "%s", addr);
		struct pn_conn *c;
		if (pn_net_connect(n->net, addr, NULL, &node_peer_cbs, p, &c) != PN_OK) {
			pn_log_info("cannot dial seed server %s", addr);
			engine_peer_closed(n->engine, p->key, now);
			peer_unlink(n, p);
			free(p);
			continue;
		}
		p->conn = c;
	}
}

/* ------------------------------------------------------------ what the engine may ask */

static bool store_lookup_cb(void *ud, const struct pn_cid *cid, struct engine_content *out)
{
	struct node *n = ud;
	const struct store_object *o = store_get(n->store, cid);
	if (!o)
		return false;
	out->name = o->name;
	out->hashes = o->hashes;
	out->bitmap = NULL;
	return true;
}

static uint64_t backlog_cb(void *ud)
{
	struct node *n = ud;
	uint64_t queued = 0;
	for (struct peer *p = n->peers; p; p = p->next)
		if (p->conn)
			queued += pn_conn_queued(p->conn);
	return queued;
}

static const struct engine_store_ops node_store_ops = {.lookup = store_lookup_cb, .backlog = backlog_cb};

void node_download_providers(struct node *n, const struct pn_cid *cid, uint32_t total)
{
	struct download *d = node_download_find(n, cid);
	if (!d)
		return;
	if (!n->flood || total == 0)
		d->finding = false; /* a flood query goes on after its first hit */
	if (total > d->providers_seen)
		d->providers_seen = total;
	struct engine_download_info info;
	bool hashes = engine_download_info(n->engine, cid, &info) && info.have_hashes;
	if (d->providers_seen == 0 && !hashes && n->opts.nseed_servers == 0) {
		char id[PN_CID_STR_LEN + 1];
		cid_str(cid, id);
		if (n->flood)
			download_fail(d, "no node within %u hops has %s", n->opts.ttl ? n->opts.ttl : FLOOD_DEFAULT_TTL, id);
		else
			download_fail(d, "no node offers %s", id);
	}
}

int node_start_get(struct node *n, struct ctl_client *cc, const struct pn_cid *cid, const char *out_path,
		   const char *cwd, bool to_stdout, bool force)
{
	struct ctl_waiter *w = calloc(1, sizeof *w);
	if (!w)
		return PN_ENOMEM;
	w->client = cc;
	w->to_stdout = to_stdout;
	w->force = force;
	snprintf(w->out_path, sizeof w->out_path, "%s", out_path ? out_path : "");
	snprintf(w->cwd, sizeof w->cwd, "%s", cwd ? cwd : ".");
	const struct store_object *o = store_get(n->store, cid);
	if (o) {
		report_done(n, w, o, 0, cid->size, 0, 0);
		free(w);
		return PN_OK;
	}
	struct download *d = node_download_find(n, cid);
	if (d) {
		w->next = d->waiters;
		d->waiters = w;
		return PN_OK;
	}
	if (n->flood && !flood_ready(n)) {
		free(w);
		ctl_finish(cc, "not connected to any peer (the bootstrap peers are unreachable); the node keeps retrying");
		return PN_OK;
	}
	if (!n->flood && !dir_client_ready(n) && n->opts.nseed_servers == 0) {
		free(w);
		ctl_finish(cc, "the directory at %s is unreachable (%s); running downloads go on, new look-ups fail until it is back",
			   n->opts.directory ? n->opts.directory : "(none)", n->dir_last_error[0] ? n->dir_last_error : "not connected");
		return PN_OK;
	}
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
	if (d->have_meta)
		dir_client_offer(n, cid, d->name);
	d->finding = true;
	d->last_find_ms = node_now(n);
	if ((n->flood ? flood_find(n, cid) : dir_client_ready(n) ? dir_client_find(n, cid) : PN_ENOTSUP) != PN_OK)
		d->finding = false;
	node_pump(n); /* may complete at once (everything was on disk) */
	return PN_OK;
}

/* Progress lines for control clients waiting on downloads. */
static void report_progress(struct node *n)
{
	for (struct download *d = n->downloads; d; d = d->next) {
		struct engine_download_info info;
		if (!d->part || !engine_download_info(n->engine, &d->cid, &info))
			continue;
		for (struct ctl_waiter *w = d->waiters; w; w = w->next)
			if (w->client)
				ctl_reply(w->client, "progress\t%llu\t%llu\t%u\t%s\n", (unsigned long long)info.bytes_have,
					  (unsigned long long)d->cid.size, info.peers, d->name);
	}
}

size_t node_peers_snapshot(struct node *n, struct node_peer_status *out, size_t max)
{
	size_t k = 0;
	for (struct peer *p = n->peers; p && k < max; p = p->next) {
		if (!p->hello)
			continue;
		struct node_peer_status *ps = &out[k];
		memset(ps, 0, sizeof *ps);
		memcpy(ps->id, p->id, PN_ID_BYTES);
		snprintf(ps->addr, sizeof ps->addr, "%s", p->addr);
		ps->outgoing = p->outgoing;
		ps->neighbor = p->neighbor;
		ps->seed_server = p->seed_server;
		if (engine_peer_info(n->engine, p->key, &ps->e))
			k++;
	}
	return k;
}

size_t node_transfers_snapshot(struct node *n, struct node_transfer_status *out, size_t max)
{
	size_t k = 0;
	for (struct download *d = n->downloads; d && k < max; d = d->next) {
		struct engine_download_info info;
		if (!engine_download_info(n->engine, &d->cid, &info))
			continue;
		struct node_transfer_status *t = &out[k++];
		t->cid = d->cid;
		snprintf(t->name, sizeof t->name, "%s", d->name);
		t->chunks = info.nchunks;
		t->have = info.have;
		t->bytes_down = info.bytes_down;
	}
	return k;
}

void node_totals(struct node *n, uint64_t *bytes_up, uint64_t *bytes_down)
{
	struct engine_stats st;
	engine_stats(n->engine, &st);
	*bytes_up = st.bytes_up;
	*bytes_down = st.bytes_down;
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
	else if (dir_client_ready(n))
		period = node_now(n) - d->started_ms < NODE_EARLY_MS ? NODE_REFIND_EARLY_MS : NODE_REFIND_MS;
	else
		return UINT64_MAX;
	return d->last_find_ms + period + 1;
}

static void tick_cb(uv_timer_t *t);

void node_schedule(struct node *n)
{
	if (n->stopping || !n->timer_on)
		return;
	uint64_t now = node_now(n);
	uint64_t next = engine_next_wakeup(n->engine);
	uint64_t t = dir_client_next_wakeup(n);
	if (t < next)
		next = t;
	t = flood_node_next_wakeup(n, now);
	if (t < next)
		next = t;
	if (n->opts.nseed_servers && n->seed_server_next_ms < next)
		next = n->seed_server_next_ms;
	for (struct download *d = n->downloads; d; d = d->next) {
		t = download_refind_at(n, d);
		if (t < next)
			next = t;
		for (struct ctl_waiter *w = d->waiters; w; w = w->next)
			if (w->client && n->last_progress_ms + NODE_PROGRESS_MS < next)
				next = n->last_progress_ms + NODE_PROGRESS_MS;
	}
	if (n->opts.up_rate && engine_uploads_waiting(n->engine)) {
		/* Requests wait for the upload backlog to drain: look again when about
		 * a chunk of it has gone out. */
		uint64_t t2 = now + 1 + (uint64_t)PN_CHUNK_SIZE * 1000 / n->opts.up_rate;
		if (t2 < next)
			next = t2;
	}
	uint64_t delay = next <= now ? 0 : next - now;
	if (delay < NODE_TIMER_MIN_MS)
		delay = NODE_TIMER_MIN_MS;
	if (delay > NODE_TIMER_MAX_MS)
		delay = NODE_TIMER_MAX_MS;
	uv_timer_start(&n->tick, tick_cb, delay, 0);
}

static void tick_cb(uv_timer_t *t)
{
	struct node *n = t->data;
	uint64_t now = node_now(n);
	dir_client_tick(n, now);
	flood_node_tick(n, now);
	seed_servers_tick(n, now);
	if (engine_next_wakeup(n->engine) <= now)
		engine_tick(n->engine, now);
	node_pump(n);
	for (struct download *d = n->downloads; d; d = d->next) {
		/* Early in a download ask often: fellow downloaders register as they start. */
		uint64_t refind = now - d->started_ms < NODE_EARLY_MS ? NODE_REFIND_EARLY_MS : NODE_REFIND_MS;
		if (n->flood) {
			/* Flooding is costly: ask again only while no provider is connected;
			 * early on, now and then: fellow downloaders answer once they hold chunks. */
			bool early = now - d->started_ms < NODE_EARLY_MS;
			if (!d->finding && now - d->last_find_ms > (early ? NODE_REFIND_FLOOD_EARLY_MS : NODE_REFIND_FLOOD_MS) &&
			    (early || !engine_download_has_providers(n->engine, &d->cid)) &&
			    flood_find(n, &d->cid) == PN_OK) {
				d->last_find_ms = now;
				d->finding = true;
			}
		} else if (!d->finding && now - d->last_find_ms > refind && dir_client_ready(n)) {
			d->last_find_ms = now;
			if (dir_client_find(n, &d->cid) == PN_OK)
				d->finding = true;
		}
	}
	if (now - n->last_progress_ms >= NODE_PROGRESS_MS) {
		n->last_progress_ms = now;
		report_progress(n);
	}
	node_schedule(n);
}

static void close_walk_cb(uv_handle_t *h, void *arg)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

void node_stop(struct node *n)
{
	if (n->stopping)
		return;
	n->stopping = true;
	pn_log_info("stopping");
	while (n->downloads) {
		struct download *d = n->downloads;
		for (struct ctl_waiter *w = d->waiters; w; w = w->next)
			if (w->client)
				ctl_finish(w->client, "the node is stopping; the partial download is kept");
		d->done = true;
		download_free(d);
	}
	node_pump(n);
	dir_client_close(n);
	flood_teardown(n);
	uv_timer_stop(&n->tick);
	n->timer_on = false;
	uv_close((uv_handle_t *)&n->tick, NULL);
	uv_close((uv_handle_t *)&n->sig_int, NULL);
	uv_close((uv_handle_t *)&n->sig_term, NULL);
	ctl_close_all(n);
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
		pn_log_warn("cannot share %s: %s", path, strerror(errno));
		return;
	}
	if (S_ISDIR(st.st_mode)) {
		DIR *dir = opendir(path);
		struct dirent *e;
		int count = 0;
		while (dir && (e = readdir(dir)) && count < 10000) {
			if (e->d_name[0] == '.')
				continue;
			char sub[4096];
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
		pn_log_warn("cannot share %s: %s", path, pn_strerror(r));
		return;
	}
	char id[PN_CID_STR_LEN + 1];
	cid_str(&o->cid, id);
	pn_log_info("sharing %s  %s", id, o->name);
}

int pn_node_run(const struct pn_node_opts *opts)
{
	struct node *n = calloc(1, sizeof *n);
	int r;
	if (!n)
		return PN_ENOMEM;
	n->opts = *opts;
	n->loop = uv_default_loop();
	n->rng = uv_hrtime() ^ (uint64_t)getpid() << 32 ^ (uint64_t)(uintptr_t)n;
	signal(SIGPIPE, SIG_IGN);
	n->out_cap = PN_FRAME_HDR + PN_FRAME_MAX;
	n->out = malloc(n->out_cap);
	if (!n->out) {
		free(n);
		return PN_ENOMEM;
	}
	r = pn_identity_load_or_create(opts->data_dir, &n->id);
	if (r != PN_OK) {
		fprintf(stderr, "peernet node: cannot load or create the identity in %s: %s\n", opts->data_dir,
			pn_strerror(r));
		goto out_buf;
	}
	r = store_open(opts->data_dir, &n->store);
	if (r != PN_OK) {
		fprintf(stderr, "peernet node: cannot open the store in %s: %s\n", opts->data_dir, pn_strerror(r));
		goto out_id;
	}
	r = pn_net_new(n->loop, &n->id, NULL, &n->net);
	if (r != PN_OK) {
		fprintf(stderr, "peernet node: cannot set up TLS: %s\n", pn_strerror(r));
		goto out_engine;
	}
	pn_net_set_data(n->net, n);
	pn_net_set_rates(n->net, opts->up_rate, opts->down_rate);
	r = pn_net_listen(n->net, opts->listen, accept_cb, &n->port);
	if (r != PN_OK) {
		fprintf(stderr, "peernet node: cannot listen on %s: %s\n", opts->listen,
			r == PN_EEXIST ? "address already in use" : pn_strerror(r));
		goto out_net;
	}
	/* Rechoke every 5 s and move the optimistic slot every 15 s (BitTorrent uses
	 * 10 s and 30 s): swarms here often last seconds, and a peer choked by
	 * everyone would otherwise wait out most of the transfer. */
	struct engine_opts eo = {
		.role = ENGINE_NODE,
		.listen_port = n->port,
		.upload_slots = opts->upload_slots,
		.rechoke_ms = 5000,
		.optimistic_ms = 15000,
		.stall_ms = opts->peer_timeout_ms ? opts->peer_timeout_ms : NODE_DEFAULT_PEER_TIMEOUT_MS,
		.seed = node_rand(n),
		/* Under an upload cap keep at most two chunks (or 100 ms) queued behind
		 * it: the rest wait as requests, which a CANCEL or a CHOKE can still withdraw. */
		.backlog_max = !opts->up_rate ? 0
			       : opts->up_rate / 10 > 2 * PN_CHUNK_SIZE ? opts->up_rate / 10 : 2 * PN_CHUNK_SIZE,
		.store = &node_store_ops,
		.store_ud = n,
	};
	memcpy(eo.self_id, n->id.node_id, PN_ID_BYTES);
	n->engine = engine_new(&eo, uv_now(n->loop));
	if (!n->engine) {
		r = PN_ENOMEM;
		goto out_net;
	}
	r = flood_setup(n);
	if (r != PN_OK)
		goto out_net;
	r = ctl_listen(n);
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
	n->dir_backoff_ms = 500;
	char idhex[PN_NODE_ID_STR_LEN + 1];
	pn_node_id_format(n->id.node_id, idhex);
	printf("peernet node %s listening on port %u, discovery %s, %zu files shared, control %s\n", idhex, n->port,
	       opts->discovery == PN_DISCOVERY_DIRECTORY ? "directory" : opts->discovery == PN_DISCOVERY_FLOOD ? "flood" : "dht",
	       store_count(n->store), n->control_path);
	printf("node-id %s\n", idhex);
	fflush(stdout);
	if (opts->port_file) {
		FILE *f = fopen(opts->port_file, "w");
		if (f) {
			fprintf(f, "%u\n", n->port);
			fclose(f);
		}
	}
	uv_run(n->loop, UV_RUN_DEFAULT);
	r = PN_OK;
	struct engine_stats st;
	engine_stats(n->engine, &st);
	pn_log_info("stopped: %llu bytes uploaded, %llu bytes downloaded", (unsigned long long)st.bytes_up,
		    (unsigned long long)st.bytes_down);
	unlink(n->control_path);
	goto out_engine;
out_net:
	pn_net_close(n->net);
	uv_run(n->loop, UV_RUN_DEFAULT);
out_engine:
	engine_free(n->engine);
	flood_teardown(n);
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
