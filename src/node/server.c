/* The client-server model's server. See server.h and docs/PROTOCOL.md. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include "node/server.h"
#include "crypto/crypto.h"
#include "http/http.h"
#include "net/net.h"
#include "proto/engine.h"
#include "store/store.h"
#include "util/json.h"
#include "util/log.h"
#include "util/ratemeter.h"
#include "wire/wire.h"

#define MAX_ACTIVE_UPLOADS 64        /* uploads in progress at once, server-wide */
#define LIST_PAGE_BYTES (64 * 1024)  /* a LIST answer stays under this */
#define UPLOAD_STATE_BUDGET (40u * 1024 * 1024) /* memory for the hash lists of uploads in progress */

struct pn_server {
	uv_loop_t *loop;
	struct pn_net *net;
	struct engine *engine;  /* serves every download, as a node that only seeds */
	uint32_t next_key;
	struct store *store;
	struct pn_identity id;
	struct pn_server_config cfg; /* listen and data_dir owned */
	struct pn_server_events ev;
	char error[512];
	bool started, stopping, have_id;
	uint16_t port;
	unsigned closing;            /* close callbacks still to come */
	void (*closed_cb)(void *ud);
	void *closed_ud;
	uint8_t *out;          /* scratch for one outgoing frame, PN_FRAME_HDR + PN_FRAME_MAX */
	size_t out_cap;
	unsigned active_uploads;
	uint64_t upload_state_bytes; /* what the active uploads' hash lists and bitmaps cost */
	uint64_t bytes_served;
	uint64_t conns_total;
	struct client *clients;
	struct pn_logger log;
	struct http_server *http;    /* the status page, or NULL */
	struct pn_rate_meter rate;   /* wire bytes up and down, sampled by the status page */
};

struct client {
	struct pn_server *srv;
	struct pn_conn *conn;
	uint32_t key;              /* the engine's name for this connection */
	bool hello;
	struct store_partial *put; /* upload in progress on this connection, or NULL */
	bool put_done_already;     /* the object existed when PUT_BEGIN came */
	struct pn_cid put_cid;
	uint32_t put_req;
	bool put_ended;            /* an ERROR ended the upload put_req/put_cid: frames of it that
				    * crossed that ERROR are ignored */
	uint64_t put_cost;         /* counted in srv->upload_state_bytes */
	struct client *next;
};

static struct client *client_by_key(struct pn_server *srv, uint32_t key)
{
	for (struct client *cl = srv->clients; cl; cl = cl->next)
		if (cl->key == key)
			return cl;
	return NULL;
}

/* Memory an upload in progress holds: hash list and bitmaps (and their state-file image). */
static uint64_t upload_cost(const struct pn_cid *cid)
{
	return (uint64_t)pn_cid_chunks(cid) * (PN_HASH_BYTES * 2 + 1);
}

/* Ends the upload on this connection, if any, keeping what it wrote. */
static void put_release(struct client *cl)
{
	if (cl->put) {
		store_put_release(cl->srv->store, cl->put);
		cl->put = NULL;
		cl->srv->active_uploads--;
		cl->srv->upload_state_bytes -= cl->put_cost;
		cl->put_cost = 0;
	}
	cl->put_done_already = false;
}

static struct client *client_by_key(struct pn_server *srv, uint32_t key);

/* A protocol violation: ERROR(0, PROTOCOL, why) and the connection closes
 * (docs/PROTOCOL.md, Errors and closing). */
static int violation(struct pn_conn *c, struct pn_server *srv, const char *why)
{
	PN_LOGI(&srv->log, "%s: %s, closing", pn_conn_peer_addr(c), why);
	(void)pn_conn_send_error(c, 0, PN_WERR_PROTOCOL, why);
	return PN_EPROTO;
}

/* Ends the upload with ERROR(req_id, code, text); the connection stays. */
static int put_fail(struct pn_conn *c, struct client *cl, uint16_t code, const char *text)
{
	put_release(cl);
	cl->put_ended = true;
	return pn_conn_send_error(c, cl->put_req, code, text);
}

/* Reads the chunk from the store and sends it as one CHUNK frame. */
static void send_chunk(struct pn_server *srv, struct client *cl, const struct engine_action *a)
{
	uint8_t *hdr = srv->out;
	uint8_t *data = srv->out + PN_FRAME_HDR + PN_CHUNK_MSG_HDR;
	uint32_t len = 0;
	const struct store_object *o = store_get(srv->store, &a->cid);
	int r = o ? store_read_chunk(srv->store, o, a->index, data, &len) : PN_ENOTFOUND;
	if (r != PN_OK) {
		PN_LOGE(&srv->log, "reading chunk %u: %s", a->index, pn_strerror(r));
		(void)pn_conn_send_error(cl->conn, a->req_id, PN_WERR_INTERNAL, "server failed to read the content");
		engine_chunk_sent(srv->engine, cl->key, &a->cid, a->index, 0, false, pn_conn_congested(cl->conn),
				  uv_now(srv->loop));
		return;
	}
	pn_chunk_hdr_encode(hdr, a->req_id, &a->cid, a->index, len);
	r = pn_conn_send(cl->conn, hdr, PN_FRAME_HDR + PN_CHUNK_MSG_HDR + len);
	if (r == PN_OK)
		srv->bytes_served += len;
	engine_chunk_sent(srv->engine, cl->key, &a->cid, a->index, len, r == PN_OK,
			  r != PN_OK || pn_conn_congested(cl->conn), uv_now(srv->loop));
}

/* Carries out what the engine asks. */
static void server_pump(struct pn_server *srv)
{
	struct engine_action a;
	while (engine_next_action(srv->engine, &a)) {
		struct client *cl = client_by_key(srv, a.peer);
		if (!cl)
			continue;
		switch (a.type) {
		case ENGINE_SEND:
			(void)pn_conn_send_msg(cl->conn, &a.msg);
			break;
		case ENGINE_SEND_CHUNK:
			send_chunk(srv, cl, &a);
			break;
		case ENGINE_CLOSE:
			PN_LOGI(&srv->log, "%s: connection closed: %s", pn_conn_peer_addr(cl->conn), a.why ? a.why : pn_strerror(a.err));
			pn_conn_close(cl->conn, a.err);
			break;
		case ENGINE_PEER_READY:
			cl->hello = true;
			pn_conn_set_max_frame(cl->conn, PN_FRAME_MAX);
			break;
		case ENGINE_PEER_ERROR:
			PN_LOGD(&srv->log, "%s: error %u from client", pn_conn_peer_addr(cl->conn), a.code);
			break;
		default: /* a server downloads nothing: no other action comes */
			break;
		}
	}
}

static bool store_lookup_cb(void *ud, const struct pn_cid *cid, struct engine_content *out)
{
	struct pn_server *srv = ud;
	return engine_store_lookup(srv->store, cid, out);
}

static const struct engine_store_ops server_store_ops = {.lookup = store_lookup_cb};

static int on_list_req(struct pn_conn *c, struct pn_server *srv, const struct pn_msg_list_req *q)
{
	size_t total = store_count(srv->store);
	size_t i = q->cursor;
	char printed[PN_CID_STR_LEN + 1];
	if (q->req_id == 0)
		return violation(c, srv, "request with req_id 0");
	/* Objects are only appended while the server runs, so every cursor it
	 * gave out stays below the count: a larger one was never given out. */
	if (i != 0 && i >= total)
		return pn_conn_send_error(c, q->req_id, PN_WERR_NOT_FOUND, "no such page (cursor past the end)");
	uint8_t *entries = srv->out + PN_FRAME_HDR + 64; /* build entries after room for the header */
	struct pn_writer w;
	pn_wr_init(&w, entries, LIST_PAGE_BYTES);
	uint16_t count = 0;
	for (; i < total && count < PN_LIST_MAX; i++) {
		const struct store_object *o = store_at(srv->store, i);
		const char *name = o->name;
		if (!*name) { /* stored without a name: it goes by its printed content ID */
			pn_cid_format(&o->cid, printed);
			name = printed;
		}
		struct pn_list_entry e = {.cid = o->cid, .name = name, .name_len = (uint16_t)strlen(name)};
		size_t before = w.len;
		pn_list_entry_encode(&w, &e);
		if (w.err) {
			w.len = before;
			w.err = 0;
			break;
		}
		count++;
	}
	/* Copy the entries out of the scratch buffer: encode writes into it too. */
	uint8_t *copy = malloc(w.len ? w.len : 1);
	if (!copy)
		return PN_ENOMEM;
	memcpy(copy, entries, w.len);
	struct pn_msg m = {.type = PN_MSG_LIST};
	m.u.list.req_id = q->req_id;
	m.u.list.next_cursor = i < total ? (uint32_t)i : 0;
	m.u.list.count = count;
	m.u.list.entries = copy;
	m.u.list.entries_len = w.len;
	int r = pn_conn_send_msg(c, &m);
	free(copy);
	return r;
}

static int send_put_status(struct pn_conn *c, struct pn_server *srv, uint32_t req_id, const struct pn_cid *cid,
			   struct store_partial *p)
{
	uint32_t n = pn_cid_chunks(cid);
	size_t bm_len = (n + 7) / 8;
	uint8_t *full = NULL;
	struct pn_msg m = {.type = PN_MSG_PUT_STATUS};
	m.u.put_status.req_id = req_id;
	m.u.put_status.cid = *cid;
	m.u.put_status.nchunks = n;
	if (p) {
		m.u.put_status.flags = store_partial_has_hashes(p) ? PN_PUT_HAVE_HASHES : 0;
		m.u.put_status.bitmap = store_partial_bitmap(p);
	} else {
		full = calloc(1, bm_len);
		if (!full)
			return PN_ENOMEM;
		for (uint32_t i = 0; i < n; i++)
			full[i / 8] |= (uint8_t)(0x80 >> (i % 8));
		m.u.put_status.flags = PN_PUT_HAVE_HASHES;
		m.u.put_status.bitmap = full;
	}
	int r = pn_conn_send_msg(c, &m);
	free(full);
	return r;
}

static int on_put_begin(struct pn_conn *c, struct pn_server *srv, struct client *cl, const struct pn_msg_meta *q)
{
	if (q->req_id == 0)
		return violation(c, srv, "request with req_id 0");
	if (cl->put)
		return violation(c, srv, "PUT_BEGIN while an upload is in progress on this connection");
	char name[PN_NAME_MAX + 1];
	memcpy(name, q->name, q->name_len);
	name[q->name_len] = 0;
	cl->put_cid = q->cid;
	cl->put_req = q->req_id;
	cl->put_ended = cl->put_done_already = false;
	if (store_get(srv->store, &q->cid)) {
		cl->put_done_already = true;
		return send_put_status(c, srv, q->req_id, &q->cid, NULL);
	}
	for (const struct client *o = srv->clients; o; o = o->next)
		if (o != cl && o->put && !memcmp(&o->put_cid, &q->cid, sizeof q->cid)) {
			cl->put_ended = true; /* nothing of it is taken: what crosses the ERROR is ignored */
			return pn_conn_send_error(c, q->req_id, PN_WERR_BUSY,
						  "another upload of this content is in progress; try again later");
		}
	if (srv->active_uploads >= MAX_ACTIVE_UPLOADS ||
	    srv->upload_state_bytes + upload_cost(&q->cid) > UPLOAD_STATE_BUDGET)
	{
		cl->put_ended = true;
		return pn_conn_send_error(c, q->req_id, PN_WERR_BUSY, "too many uploads in progress, try again later");
	}
	struct store_partial *p;
	int r = store_put_begin(srv->store, &q->cid, name, &p);
	if (r == PN_EEXIST) {
		cl->put_done_already = true;
		return send_put_status(c, srv, q->req_id, &q->cid, NULL);
	}
	if (r != PN_OK) {
		PN_LOGE(&srv->log, "%s: cannot start upload of %s: %s", pn_conn_peer_addr(c), name, pn_strerror(r));
		cl->put_ended = true;
		return pn_conn_send_error(c, q->req_id, PN_WERR_INTERNAL,
				  r == PN_ENOSPC ? "server disk full" : "server cannot store the upload");
	}
	cl->put = p;
	srv->active_uploads++;
	cl->put_cost = upload_cost(&q->cid);
	srv->upload_state_bytes += cl->put_cost;
	return send_put_status(c, srv, q->req_id, &q->cid, p);
}

enum put_frame { PUT_FRAME_TAKE, PUT_FRAME_IGNORE, PUT_FRAME_BAD };

/* What a HASHES, CHUNK or PUT_END with this req_id and cid is to the upload
 * on this connection: its own (take it), one that an ERROR or the content
 * being there already ended (ignore it: it crossed that answer), or none
 * (a protocol violation). */
static enum put_frame put_frame(const struct client *cl, uint32_t req_id, const struct pn_cid *cid)
{
	if (req_id != cl->put_req || memcmp(&cl->put_cid, cid, sizeof *cid) != 0)
		return PUT_FRAME_BAD;
	if (cl->put)
		return PUT_FRAME_TAKE;
	if (cl->put_ended || cl->put_done_already)
		return PUT_FRAME_IGNORE;
	return PUT_FRAME_BAD;
}

static int on_put_hashes(struct pn_conn *c, struct pn_server *srv, struct client *cl, const struct pn_msg_hashes *q)
{
	switch (put_frame(cl, q->req_id, &q->cid)) {
	case PUT_FRAME_IGNORE: return PN_OK;
	case PUT_FRAME_BAD: return violation(c, srv, "HASHES that belong to no upload on this connection");
	case PUT_FRAME_TAKE: break;
	}
	if (store_partial_has_hashes(cl->put))
		return PN_OK; /* the server had the list already (PUT_STATUS flag bit 0): not needed */
	int r = store_partial_add_hashes(cl->put, q->first, q->count, q->hashes);
	if (r == PN_ECORRUPT) {
		PN_LOGI(&srv->log, "%s: uploaded hash list does not match its content ID", pn_conn_peer_addr(c));
		return put_fail(c, cl, PN_WERR_CORRUPT, "hash list does not match the content ID");
	}
	if (r == PN_EINVAL || r == PN_EPROTO)
		return violation(c, srv, "HASHES out of order or out of range");
	if (r != PN_OK)
		return put_fail(c, cl, PN_WERR_INTERNAL, "server cannot store the hash list");
	return PN_OK;
}

static int on_put_chunk(struct pn_conn *c, struct pn_server *srv, struct client *cl, const struct pn_msg_chunk *q)
{
	switch (put_frame(cl, q->req_id, &q->cid)) {
	case PUT_FRAME_IGNORE: return PN_OK;
	case PUT_FRAME_BAD: return violation(c, srv, "CHUNK that belongs to no upload on this connection");
	case PUT_FRAME_TAKE: break;
	}
	if (!store_partial_has_hashes(cl->put))
		return violation(c, srv, "CHUNK before the whole hash list");
	if (store_partial_has_chunk(cl->put, q->index))
		return PN_OK; /* held already (another upload brought it, or a resend): nothing to do */
	int r = store_partial_write_chunk(cl->put, q->index, q->data, q->len);
	if (r == PN_ECORRUPT) {
		PN_LOGI(&srv->log, "%s: uploaded chunk %u does not match its hash", pn_conn_peer_addr(c), q->index);
		return put_fail(c, cl, PN_WERR_CORRUPT, "chunk does not match its hash");
	}
	if (r != PN_OK) {
		PN_LOGE(&srv->log, "writing upload chunk: %s", pn_strerror(r));
		return put_fail(c, cl, PN_WERR_INTERNAL, r == PN_ENOSPC ? "server disk full" : "server failed to write the upload");
	}
	return PN_OK;
}

static int on_put_end(struct pn_conn *c, struct pn_server *srv, struct client *cl, const struct pn_msg_ref *q)
{
	struct pn_msg m = {.type = PN_MSG_PUT_DONE};
	m.u.ref.req_id = q->req_id;
	m.u.ref.cid = q->cid;
	switch (put_frame(cl, q->req_id, &q->cid)) {
	case PUT_FRAME_IGNORE:
		if (cl->put_done_already) { /* the content was there already: done */
			cl->put_done_already = false;
			return pn_conn_send_msg(c, &m);
		}
		cl->put_ended = false; /* answered by the ERROR that ended it */
		return PN_OK;
	case PUT_FRAME_BAD: return violation(c, srv, "PUT_END that belongs to no upload on this connection");
	case PUT_FRAME_TAKE: break;
	}
	if (!store_partial_has_hashes(cl->put))
		return violation(c, srv, "PUT_END before the whole hash list");
	if (store_partial_have_count(cl->put) != store_partial_nchunks(cl->put))
		return violation(c, srv, "PUT_END before every chunk the server lacks was sent");
	const struct store_object *o = NULL;
	int r = store_put_finish(srv->store, cl->put, &o);
	if (r == PN_OK) {
		cl->put = NULL;
		srv->active_uploads--;
		srv->upload_state_bytes -= cl->put_cost;
		cl->put_cost = 0;
		char id[PN_CID_STR_LEN + 1];
		pn_cid_format(&q->cid, id);
		PN_LOGI(&srv->log, "stored %s  %s (%llu bytes) from %s", id, o ? o->name : "?",
			    (unsigned long long)q->cid.size, pn_conn_peer_addr(c));
		if (srv->ev.stored && o)
			srv->ev.stored(srv->ev.ud, srv, &o->cid, o->name);
		return pn_conn_send_msg(c, &m);
	}
	if (r == PN_EEXIST) { /* another uploader finished it first */
		put_release(cl);
		return pn_conn_send_msg(c, &m);
	}
	PN_LOGE(&srv->log, "finishing upload: %s", pn_strerror(r));
	return pn_conn_send_error(c, q->req_id, PN_WERR_INTERNAL,
			  r == PN_ENOSPC ? "server disk full" : "server failed to store the upload");
}

static int frame_cb(struct pn_conn *c, const uint8_t *body, size_t len)
{
	struct client *cl = pn_conn_data(c);
	struct pn_server *srv = cl->srv;
	struct pn_msg m;
	int r = pn_msg_decode(body, len, &m);
	if (r != PN_OK) {
		PN_LOGI(&srv->log, "%s: malformed message (type 0x%02x, %zu bytes), closing", pn_conn_peer_addr(c),
			    len ? body[0] : 0, len);
		pn_conn_send_error(c, 0, PN_WERR_PROTOCOL, "malformed message");
		return PN_EPROTO;
	}
	if (cl->hello) {
		/* Uploads and listing are the server's own; the rest is the engine's. */
		switch (m.type) {
		case PN_MSG_LIST_REQ: return on_list_req(c, srv, &m.u.list_req);
		case PN_MSG_PUT_BEGIN: return on_put_begin(c, srv, cl, &m.u.meta);
		case PN_MSG_HASHES: return on_put_hashes(c, srv, cl, &m.u.hashes);
		case PN_MSG_CHUNK: return on_put_chunk(c, srv, cl, &m.u.chunk);
		case PN_MSG_PUT_END: return on_put_end(c, srv, cl, &m.u.ref);
		default: break;
		}
	}
	r = engine_on_msg(srv->engine, cl->key, &m, uv_now(srv->loop));
	if (r == PN_ENOTSUP) {
		PN_LOGI(&srv->log, "%s: unexpected message type 0x%02x, closing", pn_conn_peer_addr(c), m.type);
		pn_conn_send_error(c, 0, PN_WERR_PROTOCOL, "unexpected message");
	} else if (r == PN_EPROTO && !cl->hello) {
		PN_LOGI(&srv->log, "%s: first message is not a HELLO this server accepts, closing", pn_conn_peer_addr(c));
	}
	server_pump(srv);
	return r == PN_ENOTSUP ? PN_EPROTO : r;
}

static void established_cb(struct pn_conn *c)
{
	struct client *cl = pn_conn_data(c);
	engine_peer_established(cl->srv->engine, cl->key, pn_conn_peer_id(c), 0, uv_now(cl->srv->loop));
	server_pump(cl->srv);
}

static void writable_cb(struct pn_conn *c)
{
	struct client *cl = pn_conn_data(c);
	engine_peer_writable(cl->srv->engine, cl->key, uv_now(cl->srv->loop));
	server_pump(cl->srv);
}

static void close_cb(struct pn_conn *c, int err)
{
	struct client *cl = pn_conn_data(c);
	if (!cl)
		return;
	/* Protocol and TLS faults were logged where they were found; log the rest here, once. */
	struct pn_server *srv = cl->srv;
	if ((err == PN_ETIMEDOUT || err == PN_EIO || err == PN_ENOMEM || err == PN_ELIMIT) && !pn_conn_evicted(c))
		PN_LOGI(&srv->log, "%s: connection closed: %s", pn_conn_peer_addr(c), pn_strerror(err));
	else
		PN_LOGD(&srv->log, "%s: connection closed: %s", pn_conn_peer_addr(c), err ? pn_strerror(err) : "by peer");
	put_release(cl);
	engine_peer_closed(srv->engine, cl->key, uv_now(srv->loop));
	struct client **pp = &srv->clients;
	while (*pp && *pp != cl)
		pp = &(*pp)->next;
	if (*pp)
		*pp = cl->next;
	free(cl);
	server_pump(srv);
}

static const struct pn_conn_cbs server_cbs = {
	.established_cb = established_cb,
	.frame_cb = frame_cb,
	.writable_cb = writable_cb,
	.close_cb = close_cb,
};


static const struct pn_conn_cbs *accept_cb(struct pn_net *net, struct pn_conn *c)
{
	struct client *cl = calloc(1, sizeof *cl);
	if (!cl)
		return NULL;
	struct pn_server *srv = pn_net_data(net);
	cl->srv = srv;
	cl->conn = c;
	cl->key = ++srv->next_key;
	if (engine_peer_add(srv->engine, cl->key, false, NULL, uv_now(srv->loop)) != PN_OK) {
		free(cl);
		return NULL;
	}
	cl->next = srv->clients;
	srv->clients = cl;
	srv->conns_total++;
	pn_conn_set_data(c, cl);
	pn_conn_set_max_frame(c, ENGINE_HELLO_MAX_BODY);
	PN_LOGD(&srv->log, "%s: connected", pn_conn_peer_addr(c));
	return &server_cbs;
}

static void server_set_err(struct pn_server *srv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void server_set_err(struct pn_server *srv, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(srv->error, sizeof srv->error, fmt, ap);
	va_end(ap);
}

/* The status page's questions (http/http.h). */
static void http_rates_cb(void *ud, uint64_t *up, uint64_t *down)
{
	struct pn_server *srv = ud;
	uint64_t wire_up, wire_down, now = uv_now(srv->loop);
	pn_net_bytes(srv->net, &wire_up, &wire_down);
	pn_rate_sample(&srv->rate, now, wire_up, wire_down);
	pn_rate_get(&srv->rate, now, wire_up, wire_down, up, down);
}

/* {"kind":"server","node_id","port","objects","bytes","connections",
 *  "connections_total","bytes_served","wire_bytes_sent",
 *  "wire_bytes_received","rates":{"upload","download"}} */
static json_t *http_status_cb(void *ud)
{
	struct pn_server *srv = ud;
	struct pn_server_status st;
	pn_server_status(srv, &st);
	uint64_t up, down;
	http_rates_cb(srv, &up, &down);
	char idhex[PN_NODE_ID_STR_LEN + 1];
	pn_node_id_format(st.node_id, idhex);
	return json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:{s:I,s:I}}", "kind", "server", "node_id", idhex,
			 "port", (json_int_t)st.port, "objects", (json_int_t)st.objects, "bytes", (json_int_t)st.bytes,
			 "connections", (json_int_t)st.connections, "connections_total",
			 (json_int_t)st.connections_total, "bytes_served", (json_int_t)st.bytes_served,
			 "wire_bytes_sent", (json_int_t)st.wire_up, "wire_bytes_received", (json_int_t)st.wire_down,
			 "rates", "upload", (json_int_t)up, "download", (json_int_t)down);
}

int pn_server_new(uv_loop_t *loop, const struct pn_server_config *cfg, const struct pn_server_events *ev,
		  pn_server **out)
{
	*out = NULL;
	if (!loop || !cfg || !cfg->listen || !cfg->data_dir || cfg->log_level > PN_LOG_DEBUG)
		return PN_EINVAL;
	struct pn_server *srv = calloc(1, sizeof *srv);
	if (!srv)
		return PN_ENOMEM;
	srv->cfg = *cfg;
	srv->cfg.listen = strdup(cfg->listen);
	srv->cfg.data_dir = strdup(cfg->data_dir);
	srv->cfg.http_listen = cfg->http_listen ? strdup(cfg->http_listen) : NULL;
	if (!srv->cfg.listen || !srv->cfg.data_dir || (cfg->http_listen && !srv->cfg.http_listen)) {
		free((char *)srv->cfg.listen);
		free((char *)srv->cfg.data_dir);
		free((char *)srv->cfg.http_listen);
		free(srv);
		return PN_ENOMEM;
	}
	if (ev) {
		srv->ev = *ev;
		srv->log = (struct pn_logger){.cb = ev->log, .ud = ev->ud, .level = cfg->log_level};
	}
	srv->loop = loop;
	*out = srv;
	return PN_OK;
}

int pn_server_start(pn_server *srv)
{
	const struct pn_server_config *cfg = &srv->cfg;
	if (srv->started || srv->stopping || srv->out) {
		server_set_err(srv, "the server was started already");
		return PN_EBUSY;
	}
	char why[HTTP_ERR_MAX];
	int r;
	if (cfg->http_listen && (r = http_check_listen(cfg->http_listen, cfg->http_public, why, sizeof why)) != PN_OK) {
		server_set_err(srv, "%s", why); /* before anything starts */
		return r;
	}
	srv->out_cap = PN_FRAME_HDR + PN_FRAME_MAX;
	srv->out = malloc(srv->out_cap);
	if (!srv->out) {
		server_set_err(srv, "out of memory");
		return PN_ENOMEM;
	}
	r = pn_identity_load_or_create(cfg->data_dir, &srv->id);
	if (r != PN_OK) {
		server_set_err(srv, "cannot load or create the identity in %s: %s", cfg->data_dir, pn_strerror(r));
		return r;
	}
	srv->have_id = true;
	r = store_open_log(cfg->data_dir, &srv->log, &srv->store);
	if (r != PN_OK) {
		server_set_err(srv, "cannot open the store in %s: %s", cfg->data_dir, pn_strerror(r));
		return r;
	}
	struct pn_net_opts nopts;
	pn_net_opts_default(&nopts);
	nopts.log = &srv->log;
	if (cfg->handshake_timeout_ms)
		nopts.handshake_timeout_ms = cfg->handshake_timeout_ms;
	if (cfg->idle_timeout_ms) {
		nopts.idle_timeout_ms = cfg->idle_timeout_ms;
		/* A client that stops reading is idle too. */
		if (cfg->idle_timeout_ms < nopts.write_stall_timeout_ms)
			nopts.write_stall_timeout_ms = cfg->idle_timeout_ms;
	}
	if (cfg->max_conns)
		nopts.max_conns = cfg->max_conns;
	struct engine_opts eo = {.role = ENGINE_SERVER, .seed = uv_hrtime() ^ (uint64_t)(uintptr_t)srv,
				 .store = &server_store_ops, .store_ud = srv};
	memcpy(eo.self_id, srv->id.node_id, PN_ID_BYTES);
	srv->engine = engine_new(&eo, uv_now(srv->loop));
	if (!srv->engine) {
		server_set_err(srv, "out of memory");
		return PN_ENOMEM;
	}
	r = pn_net_new(srv->loop, &srv->id, &nopts, &srv->net);
	if (r != PN_OK) {
		server_set_err(srv, "cannot set up TLS: %s", pn_strerror(r));
		return r;
	}
	pn_net_set_data(srv->net, srv);
	pn_net_set_rates(srv->net, cfg->up_rate, cfg->down_rate);
	r = pn_net_listen(srv->net, cfg->listen, accept_cb, &srv->port);
	if (r != PN_OK) {
		server_set_err(srv, "cannot listen on %s: %s%s", cfg->listen,
			       r == PN_EEXIST ? "address already in use" : pn_strerror(r),
			       r == PN_EINVAL ? " (expected HOST:PORT)" : "");
		return r;
	}
	engine_set_listen_port(srv->engine, srv->port); /* HELLO says where we listen (docs/PROTOCOL.md) */
	srv->started = true;
	if (cfg->http_listen) {
		struct http_opts ho = {
			.loop = srv->loop,
			.listen = cfg->http_listen,
			.public_ok = cfg->http_public,
			.log = &srv->log,
			.ops = {.ud = srv, .status_cb = http_status_cb, .rates_cb = http_rates_cb},
		};
		r = http_server_new(&ho, &srv->http, why, sizeof why);
		if (r != PN_OK) {
			server_set_err(srv, "%s", why);
			return r;
		}
	}
	return PN_OK;
}

static void server_free(struct pn_server *srv)
{
	void (*cb)(void *) = srv->closed_cb;
	void *ud = srv->closed_ud;
	if (srv->started)
		PN_LOGI(&srv->log, "stopped after %llu connections, %llu bytes served",
			(unsigned long long)srv->conns_total, (unsigned long long)srv->bytes_served);
	engine_free(srv->engine);
	store_close(srv->store);
	if (srv->have_id)
		pn_identity_free(&srv->id);
	free(srv->out);
	free((char *)srv->cfg.listen);
	free((char *)srv->cfg.data_dir);
	free((char *)srv->cfg.http_listen);
	free(srv);
	if (cb)
		cb(ud);
}

static void server_part_closed_cb(void *ud)
{
	struct pn_server *srv = ud;
	if (--srv->closing == 0)
		server_free(srv);
}

static void server_idle_closed_cb(uv_handle_t *h)
{
	struct pn_server *srv = h->data;
	free(h);
	server_free(srv);
}

void pn_server_close(pn_server *srv, void (*closed)(void *ud), void *ud)
{
	if (!srv || srv->stopping)
		return;
	srv->stopping = true;
	if (srv->started)
		PN_LOGI(&srv->log, "stopping");
	srv->closed_cb = closed;
	srv->closed_ud = ud;
	if (srv->net) { /* the status page, if any, came after the network */
		srv->closing = 1;
		if (srv->http) { /* first: libmicrohttpd stops here */
			srv->closing++;
			http_server_close(srv->http, server_part_closed_cb, srv);
			srv->http = NULL;
		}
		pn_net_close_cb(srv->net, server_part_closed_cb, srv);
		return;
	}
	/* Nothing on the loop yet: the callback still comes from the loop. */
	uv_idle_t *idle = malloc(sizeof *idle);
	if (!idle) {
		server_free(srv);
		return;
	}
	uv_idle_init(srv->loop, idle);
	idle->data = srv;
	uv_close((uv_handle_t *)idle, server_idle_closed_cb);
}

const char *pn_server_error(const pn_server *srv)
{
	return srv->error;
}

uint16_t pn_server_http_port(const pn_server *srv)
{
	return srv->http ? http_server_port(srv->http) : 0;
}

uint16_t pn_server_port(const pn_server *srv)
{
	return srv->port;
}

void pn_server_status(const pn_server *srv, struct pn_server_status *out)
{
	memset(out, 0, sizeof *out);
	if (srv->have_id)
		memcpy(out->node_id, srv->id.node_id, PN_ID_BYTES);
	out->port = srv->port;
	if (!srv->started)
		return;
	out->objects = store_count(srv->store);
	out->bytes = store_total_bytes(srv->store);
	out->connections = pn_net_conn_count(srv->net);
	out->connections_total = srv->conns_total;
	out->bytes_served = srv->bytes_served;
	pn_net_bytes(srv->net, &out->wire_up, &out->wire_down);
}
