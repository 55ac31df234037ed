/* A peer-to-peer node: peers, the control of the peer engine. See node.h and node_int.h.
 *
 * Every transfer decision lives in the sans-I/O peer engine (src/proto/engine.c);
 * this file hands it what the network and the store say, and carries out what
 * it asks: send, read a chunk, verify and write a chunk, dial, close.
 *
 * It owns the peer connections and runs the node: the downloads are in
 * node_get.c (below it), and what the outside asks, with the start, in
 * node_api.c (above it). It wires the parts below it, each of which calls
 * back only through the function pointers given here: discovery (node_dir.c,
 * node_flood.c, node_dht.c) reports through struct discovery_events, and
 * flooding reaches the peers through struct flood_peer_ops. */
#define PN_NODE_IMPL
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include "node/node_int.h"
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
/* After (re)joining the directory an empty answer is not final yet: the
 * providers come back within their own reconnect backoff. */
#define NODE_DIR_SETTLE_MS (DIR_BACKOFF_MAX_MS + DIR_BACKOFF_JITTER_MS)
#define NODE_PENDING_SEARCHES 16   /* searches waiting for discovery to come up, at most */
/* DHT mode: a look-up that found no provider ends a download only after
 * this long (a provider's records may still be on their way to the nodes
 * closest to the key); until then the download looks up again. */
#define NODE_DHT_SETTLE_MS 10000
#define NODE_SEED_SERVER_RETRY_MS 5000

static_assert(NODE_MAX_PEERS <= CTL_STATUS_PEERS_MAX, "a status shows every peer");
static_assert(NODE_MAX_DOWNLOADS <= CTL_STATUS_TRANSFERS_MAX, "a status shows every download");

static void node_schedule(struct pn_node *n);
static void node_close_now(struct pn_node *n);

/* Runs the tick from the loop as soon as possible: for what a call into the
 * node started and must not finish from inside that call. */
void node__kick(struct pn_node *n)
{
	n->kick = true;
	if (n->timer_on && !n->stopping)
		uv_timer_start(&n->tick, node__tick_cb, 0, 0);
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

/* ------------------------------------------------------------ the engine's actions */

/* Reads the chunk and sends it as one CHUNK frame from the scratch buffer. */
static void send_chunk(struct pn_node *n, struct peer *p, const struct engine_action *a)
{
	uint8_t *data = n->out + PN_FRAME_HDR + PN_CHUNK_MSG_HDR;
	uint32_t len = 0;
	int r;
	const struct store_object *o = store_get(n->store, &a->cid);
	struct download *d = o ? NULL : node__download_find(n, &a->cid);
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
bool node__discovery_ready(const struct pn_node *n)
{
	if (n->dht)
		return dht_node_ready(n->dht);
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
	else if (n->dht)
		snprintf(out, len, "no DHT node answered in %u s (the bootstrap nodes and the saved contacts are "
			 "unreachable); the node keeps trying", t / 1000);
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
			node__write_chunk(n, p, &a);
			break;
		case ENGINE_HASHES:
			if ((d = node__download_find(n, &a.cid)))
				node__download_hashes(n, d, a.data, a.len);
			break;
		case ENGINE_NAME:
			if ((d = node__download_find(n, &a.cid)) && !d->have_meta) {
				snprintf(d->name, sizeof d->name, "%s", a.name);
				d->have_meta = true;
				if (store_partial_set_name(d->part, d->name) != PN_OK)
					PN_LOGW(&n->log, "cannot record the name of a download");
				if (n->dir)
					dir_client_offer(n->dir, &d->cid, d->name);
				if (n->dht)
					(void)dht_node_offer(n->dht, &d->cid, d->name, node_now(n));
				node__find_after_offer(n, d);
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
			if ((d = node__download_find(n, &a.cid)))
				node__download_complete(d);
			break;
		case ENGINE_STALLED:
			if ((d = node__download_find(n, &a.cid))) {
				char id[PN_CID_STR_LEN + 1];
				cid_str(&d->cid, id);
				uint32_t t = n->cfg->peer_timeout_ms ? n->cfg->peer_timeout_ms : NODE_DEFAULT_PEER_TIMEOUT_MS;
				char why[PN_NODE_ERR_MAX];
				discovery_waited(n, why, sizeof why);
				if (!d->providers_seen && ((n->flood && !flood_node_ready(n->flood)) ||
							   (n->dht && !dht_node_ready(n->dht)) ||
							   (!n->flood && n->dir && !d->looked_up)))
					node__download_fail(d, PN_ETIMEDOUT, "%s", why);
				else
					node__download_fail(d, PN_ETIMEDOUT, "no provider of %s reachable for %u s", id, t / 1000);
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

int node__peer_frame_cb(struct pn_conn *c, const uint8_t *body, size_t len)
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

void node__peer_established_cb(struct pn_conn *c)
{
	struct peer *p = pn_conn_data(c);
	struct pn_node *n = p->node;
	memcpy(p->id, pn_conn_peer_id(c), PN_ID_BYTES);
	uint32_t features = n->flood ? flood_node_hello_features(n->flood, p->key, p->outgoing) : 0;
	engine_peer_established(n->engine, p->key, p->id, features, node_now(n));
	node_pump(n);
}

void node__peer_writable_cb(struct pn_conn *c)
{
	struct peer *p = pn_conn_data(c);
	engine_peer_writable(p->node->engine, p->key, node_now(p->node));
	node_pump(p->node);
}

void node__peer_close_cb(struct pn_conn *c, int err)
{
	struct peer *p = pn_conn_data(c);
	struct pn_node *n = p->node;
	if (err == PN_ENOTFOUND && p->outgoing && !p->hello) {
		/* A dialled host name that did not resolve (looked up off the loop):
		 * said as when the look-up blocked the dial. */
		if (p->seed_server)
			PN_LOGI(&n->log, "cannot dial seed server %s", p->addr);
		else
			PN_LOGI(&n->log, "cannot dial %s: %s", p->addr, pn_strerror(err));
	} else if (err && err != PN_ECLOSED && err != PN_ECORRUPT && err != PN_EPROTO && !pn_conn_evicted(c)) {
		PN_LOGI(&n->log, "%s: peer connection closed: %s", p->addr, pn_strerror(err));
	}
	if (p->hello && n->state == NODE_STARTED)
		tell_peer(n, p, false);
	engine_peer_closed(n->engine, p->key, node_now(n));
	if (n->flood)
		flood_node_peer_closed(n->flood, p->key, node_now(n));
	peer_unlink(n, p);
	free(p);
	node_pump(n);
}

const struct pn_conn_cbs *node__accept_cb(struct pn_net *net, struct pn_conn *c)
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

bool node__store_lookup_cb(void *ud, const struct pn_cid *cid, struct engine_content *out)
{
	struct pn_node *n = ud;
	return engine_store_lookup(n->store, cid, out);
}

/* Bytes waiting behind the upload cap on every connection, plus the cap's
 * debt for what it already let go. */
uint64_t node__backlog_cb(void *ud)
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
	struct download *d = node__download_find(n, cid);
	if (d && total > d->providers_seen)
		d->providers_seen = total;
}

static void lookup_done_cb(void *ud, const struct pn_cid *cid, int err, uint32_t found)
{
	struct pn_node *n = ud;
	struct download *d = node__download_find(n, cid);
	if (!d)
		return;
	d->finding = false; /* may ask again later */
	if (err == PN_ELIMIT || found > 0 || d->providers_seen > 0 || n->cfg->nseed_servers > 0)
		return;
	/* A directory just (re)joined may not have heard from the providers yet:
	 * ask again (node__refind) until it has had time to (--peer-timeout still bounds it). */
	if (!n->flood && !n->dht && node_now(n) - n->dir_since_ms < NODE_DIR_SETTLE_MS)
		return;
	/* DHT: nobody answered, or the records may still be on their way. */
	if (n->dht && (err != PN_OK || node_now(n) - d->started_ms < NODE_DHT_SETTLE_MS))
		return;
	struct engine_download_info info;
	if (engine_download_info(n->engine, cid, &info) && info.have_hashes)
		return;
	char id[PN_CID_STR_LEN + 1];
	cid_str(cid, id);
	if (n->flood)
		node__download_fail(d, PN_ENOTFOUND, "no node within %u hops has %s", n->cfg->ttl ? n->cfg->ttl : FLOOD_DEFAULT_TTL, id);
	else if (n->dht)
		node__download_fail(d, PN_ENOTFOUND, "no node in the DHT announces %s", id);
	else
		node__download_fail(d, PN_ENOTFOUND, "no node offers %s", id);
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
static void pending_searches_run(struct pn_node *n, uint64_t now);

static void registered_cb(void *ud)
{
	struct pn_node *n = ud;
	n->dir_since_ms = node_now(n);
	for (struct download *d = n->downloads; d; d = d->next)
		if (d->have_meta)
			dir_client_offer(n->dir, &d->cid, d->name);
	node__refind(n, node_now(n)); /* downloads and searches that waited for the directory ask now */
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
	struct download *d = node__download_find(n, cid);
	return d && d->have_meta && d->part && store_partial_have_count(d->part) ? d->name : NULL;
}

/* ------------------------------------------------------------ searches */

/* Sends a search to the discovery method, or finishes it with the reason. */
static void search_now(struct pn_node *n, struct pn_search *sr)
{
	char msg[600];
	sr->pending = false;
	sr->running = true;
	if (n->flood || n->dht) {
		int r = n->flood ? flood_node_search(n->flood, sr->query, sr, node_now(n))
				 : dht_node_search(n->dht, sr->query, sr, node_now(n));
		if (r == PN_EINVAL && n->dht)
			snprintf(msg, sizeof msg, "search: the DHT finds whole words of 2 bytes or more; the query has none");
		else if (r == PN_EINVAL)
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
int node__search(struct pn_node *n, const char *query, const struct search_ops *ops, void *user,
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
	if (!node__discovery_ready(n) && pending >= NODE_PENDING_SEARCHES) {
		snprintf(why, whylen, "%d searches already wait for the node to reach %s; try again later",
			 NODE_PENDING_SEARCHES, n->flood ? "its neighbours" : n->dht ? "the DHT" : "its directory");
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
	node__kick(n);
	return PN_OK;
}

void node__search_cancel(struct pn_search *sr)
{
	struct pn_node *n = sr->node;
	if (sr->canceled)
		return;
	sr->canceled = true;
	if (sr->running) {
		if (n->flood)
			flood_node_search_cancel(n->flood, sr);
		if (n->dht)
			dht_node_search_cancel(n->dht, sr);
		if (n->dir)
			dir_client_search_cancel(n->dir, sr);
		sr->running = false;
	}
	sr->pending = true;
	sr->deadline_ms = 0;
	node__kick(n);
}

/* Sends the waiting searches once discovery is up; fails those whose time is
 * over; finishes the cancelled ones. */
static void pending_searches_run(struct pn_node *n, uint64_t now)
{
	bool ready = node__discovery_ready(n);
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

int node__share(struct pn_node *n, const char *path, const struct store_object **out)
{
	int r = store_add_local(n->store, path, NULL, out);
	if (r != PN_OK && r != PN_EEXIST)
		return r;
	char id[PN_CID_STR_LEN + 1];
	cid_str(&(*out)->cid, id);
	if (n->dir)
		dir_client_offer(n->dir, &(*out)->cid, (*out)->name);
	if (n->dht && dht_node_offer(n->dht, &(*out)->cid, (*out)->name, node_now(n)) != PN_OK)
		PN_LOGW(&n->log, "cannot announce %s in the DHT (too many contents announced)", id);
	if (n->dir && !dir_client_ready(n->dir))
		PN_LOGI(&n->log, "holding %s  %s; it is registered when the directory at %s is reachable", id,
			(*out)->name, n->cfg->directory);
	else
		PN_LOGI(&n->log, "sharing %s  %s", id, (*out)->name);
	return r;
}

/* ------------------------------------------------------------ timers */

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
	t = n->dht ? dht_node_next_wakeup(n->dht) : UINT64_MAX;
	if (t < next)
		next = t;
	if (n->cfg->nseed_servers && n->seed_server_next_ms < next)
		next = n->seed_server_next_ms;
	for (struct pn_search *sr = n->searches; sr; sr = sr->next)
		if (sr->pending && sr->deadline_ms < next)
			next = sr->deadline_ms;
	for (struct download *d = n->downloads; d; d = d->next) {
		t = node__download_refind_at(n, d);
		if (t < next)
			next = t;
	}
	if (node__waiters_want_progress(n) && n->last_progress_ms + NODE_PROGRESS_MS < next)
		next = n->last_progress_ms + NODE_PROGRESS_MS;
	if (n->cfg->up_rate && engine_uploads_waiting(n->engine)) {
		/* Requests wait for the upload backlog to drain: look again when
		 * the cap has paid its debt (and what is queued has gone out). */
		t = now + 1 + node__backlog_cb(n) * 1000 / n->cfg->up_rate;
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
	uv_timer_start(&n->tick, node__tick_cb, delay, 0);
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

void node__tick_cb(uv_timer_t *t)
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
	if (n->dht)
		dht_node_tick(n->dht, now);
	seed_servers_tick(n, now);
	if (engine_next_wakeup(n->engine) <= now)
		engine_tick(n->engine, now);
	node_pump(n);
	if (node__waiters_run(n))
		node__kick(n);
	node__refind(n, now);
	pending_searches_run(n, now);
	if (now - n->last_progress_ms >= NODE_PROGRESS_MS) {
		n->last_progress_ms = now;
		node__report_progress(n);
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
	if (node__waiters_run(n)) /* content already held completes; what was cancelled is told so */
		node__kick(n);
	n->stopping = true;
	PN_LOGI(&n->log, "stopping");
	while (n->searches) {
		struct pn_search *sr = n->searches;
		if (sr->running) {
			if (n->flood)
				flood_node_search_cancel(n->flood, sr);
			if (n->dht)
				dht_node_search_cancel(n->dht, sr);
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
			node__waiter_done(w, PN_ECANCELED, NULL, "the node is stopping; the partial download is kept");
		}
		d->done = true;
		node__download_free(d);
	}
	node_pump(n);
	if (n->dir)
		dir_client_stop(n->dir);
	if (n->flood)
		flood_node_stop(n->flood);
	if (n->dht)
		dht_node_stop(n->dht);
}

void node__set_err(struct pn_node *n, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(n->error, sizeof n->error, fmt, ap);
	va_end(ap);
}

/* Discovery: the directory client or the flood node, reporting to n. */
int node__discovery_setup(struct pn_node *n)
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
	if (n->cfg->discovery == PN_DISCOVERY_DHT) {
		struct dht_node_opts dopts = {
			.loop = n->loop,
			.listen = n->cfg->listen,
			.port = n->port,
			.bind_interface = n->cfg->bind_interface,
			.data_dir = n->cfg->data_dir,
			.id = &n->id,
			.bootstrap = n->cfg->bootstrap,
			.nbootstrap = n->cfg->nbootstrap,
			.seed = pn_prng_next(&n->rng),
			.log = &n->log,
			.events = ev,
		};
		char why[PN_NODE_ERR_MAX];
		int r = dht_node_new(&dopts, node_now(n), &n->dht, why, sizeof why);
		if (r != PN_OK) {
			node__set_err(n, "%s", why);
			return r;
		}
		/* Everything the store holds is announced. */
		for (size_t i = 0; i < store_count(n->store); i++) {
			const struct store_object *o = store_at(n->store, i);
			if (dht_node_offer(n->dht, &o->cid, o->name, node_now(n)) != PN_OK) {
				PN_LOGW(&n->log, "cannot announce every content in the DHT (at most %d)", DHT_NODE_OFFERS_MAX);
				break;
			}
		}
		return PN_OK;
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

static void free_list(char **v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}

void node__config_free(struct node_config *c)
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
	dht_node_free(n->dht);
	engine_free(n->engine);
	store_close(n->store);
	if (n->have_id)
		pn_identity_free(&n->id);
	free(n->out);
	free(n->stream_buf);
	node__config_free(&n->conf);
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

static void dht_closed_cb(void *ud)
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
	if (n->dht) {
		n->closing_handles++;
		dht_node_close(n->dht, dht_closed_cb, n);
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
		uv_timer_start(&n->tick, node__tick_cb, 0, 0);
		return;
	}
	node_close_now(n);
}

/* ------------------------------------------------------------ the peers, as the API shows them */

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
