/* peernet directory: drives the sans-I/O directory core (src/proto/directory.c)
 * over TLS connections. Nodes keep one connection open: they register, offer,
 * heartbeat with PING, ask FIND and SEARCH, and say BYE.
 *
 * One timer, armed at the core's next wake-up (the oldest node's heartbeat
 * deadline) after every request: an idle directory does not wake at all, and
 * expiries are batched at most WAKE_MIN_GAP_MS apart. */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include "node/directory_server.h"
#include "crypto/crypto.h"
#include "http/http.h"
#include "net/net.h"
#include "proto/directory.h"
#include "util/log.h"
#include "util/ratelimit.h"
#include "util/ratemeter.h"
#include "wire/wire.h"

#define DEFAULT_HEARTBEAT_MS 10000
#define MISSED_HEARTBEATS 3
#define DEFAULT_RATE 200            /* requests per second per connection */
#define RATE_STRIKES_MAX 50         /* requests refused for rate before the connection is dropped */
#define WAKE_MIN_GAP_MS 250         /* expiries wait this long after the last wake-up: <= 4 a second */
#define NOT_ARMED UINT64_MAX

struct pn_directory {
	uv_loop_t *loop;
	struct pn_net *net;
	struct pn_identity id;
	struct dir *dir;
	struct pn_logger log;       /* a copy of opts->log; cb NULL: silent */
	struct pn_conn_cbs conn_cbs;/* every node's connection: here, not in a static */
	uv_timer_t tick;
	uint64_t tick_at;           /* when the timer fires (loop ms), NOT_ARMED if stopped */
	uint64_t last_tick;         /* when it last fired */
	bool stopping;
	bool started, have_id;
	uint16_t port;
	struct pn_directory_config cfg; /* listen and data_dir owned */
	char error[256];
	unsigned closing;            /* close callbacks still to come */
	void (*closed_cb)(void *ud);
	void *closed_ud;
	uint32_t heartbeat_ms;
	uint32_t rate;
	uint64_t requests, finds, searches;
	uint64_t limit_refusals, limit_logged_ms; /* offers refused at a cap, logged now and then */
	struct http_server *http;    /* the status page, or NULL */
	struct pn_rate_meter wire_rate; /* wire bytes up and down, sampled by the status page */
};

#define DSERVER_LIMIT_LOG_MS 10000 /* offers refused at a limit: one log line this often */

struct dclient {
	struct pn_directory *ds;
	bool hello, registered;
	uint8_t node_id[PN_ID_BYTES];
	struct pn_bucket bucket; /* request rate, one token per request */
	uint32_t strikes;
};


static int dok(struct pn_directory *ds, struct pn_conn *c, uint32_t req_id, uint32_t heartbeat_ms)
{
	struct pn_msg m = {.type = PN_MSG_DIR_OK};
	m.u.dir_ok.req_id = req_id;
	m.u.dir_ok.heartbeat_ms = heartbeat_ms;
	return pn_conn_send_msg(c, &m);
}

/* The keys a connection's source counts under (directory.h, dir_register_from):
 * an IPv4 address and its /24, or an IPv6 /64 and its /48. 0 and 0 for an
 * address it cannot read (then only the per-node and total caps apply). */
static void source_keys(struct pn_conn *c, uint64_t *source, uint64_t *block)
{
	char host[64];
	const char *a = pn_conn_peer_addr(c);
	*source = *block = 0;
	if (a[0] == '[') {
		const char *end = strchr(a, ']');
		if (!end || (size_t)(end - a - 1) >= sizeof host)
			return;
		memcpy(host, a + 1, (size_t)(end - a - 1));
		host[end - a - 1] = 0;
	} else {
		const char *colon = strrchr(a, ':');
		size_t len = colon ? (size_t)(colon - a) : strlen(a);
		if (len >= sizeof host)
			return;
		memcpy(host, a, len);
		host[len] = 0;
	}
	uint8_t b[16];
	uint64_t v = 0;
	if (inet_pton(AF_INET, host, b) == 1) {
		v = (uint64_t)b[0] << 24 | (uint64_t)b[1] << 16 | (uint64_t)b[2] << 8 | b[3];
		*source = 4ull << 56 | v;
		*block = 4ull << 56 | 1ull << 48 | (v & 0xffffff00u);
	} else if (inet_pton(AF_INET6, host, b) == 1) {
		for (int i = 0; i < 8; i++)
			v = v << 8 | b[i];
		/* The top byte of a v6 key is folded so it never equals a v4 key's tag. */
		*source = (v >> 8) | 6ull << 56;
		*block = ((v >> 16) << 8) | 7ull << 56;
	}
}

/* The address a node is reached at: its own host if it gave one, else the
 * address its connection comes from, with the port it listens on. */
static void node_addr(struct pn_conn *c, const struct pn_msg_dir_register *r, char out[DIR_ADDR_MAX + 1])
{
	char host[PN_DIR_ADDR_MAX + 1];
	if (r->host_len) {
		memcpy(host, r->host, r->host_len);
		host[r->host_len] = 0;
	} else {
		snprintf(host, sizeof host, "%s", pn_conn_peer_addr(c));
		char *colon = strrchr(host, ':');
		if (colon)
			*colon = 0;
	}
	if (snprintf(out, DIR_ADDR_MAX + 1, "%s:%u", host, r->listen_port) > DIR_ADDR_MAX)
		out[0] = 0; /* too long: dir_register refuses the empty address */
}

static int on_find(struct pn_directory *ds, struct pn_conn *c, struct dclient *dc, const struct pn_msg_dir_ref *q)
{
	struct dir_provider prov[PN_DIR_RESULTS_MAX];
	uint32_t total = 0;
	size_t n = dir_find(ds->dir, &q->cid, dc->registered ? dc->node_id : NULL, prov, PN_DIR_RESULTS_MAX, &total);
	size_t cap = n * (PN_ID_BYTES + 1 + DIR_ADDR_MAX) + 1;
	uint8_t *entries = malloc(cap);
	if (!entries)
		return PN_ENOMEM;
	struct pn_writer w;
	pn_wr_init(&w, entries, cap);
	for (size_t i = 0; i < n; i++) {
		struct pn_dir_provider_entry e = {.node_id = prov[i].node_id, .addr = prov[i].addr,
						  .addr_len = (uint8_t)strlen(prov[i].addr)};
		pn_dir_provider_encode(&w, &e);
	}
	struct pn_msg m = {.type = PN_MSG_DIR_PROVIDERS};
	m.u.dir_providers.req_id = q->req_id;
	m.u.dir_providers.cid = q->cid;
	m.u.dir_providers.total = total;
	m.u.dir_providers.count = (uint16_t)n;
	m.u.dir_providers.entries = entries;
	m.u.dir_providers.entries_len = w.len;
	int r = pn_conn_send_msg(c, &m);
	free(entries);
	ds->finds++;
	return r;
}

/* The refusal below names the core's word limit. */
_Static_assert(DIR_WORDS_MAX == 8, "on_search's message says 1 to 8 words");

static int on_search(struct pn_directory *ds, struct pn_conn *c, const struct pn_msg_dir_search *q)
{
	char query[PN_DIR_QUERY_MAX + 1];
	memcpy(query, q->query, q->query_len);
	query[q->query_len] = 0;
	struct dir_result *res = malloc(sizeof *res * PN_DIR_RESULTS_MAX);
	if (!res)
		return PN_ENOMEM;
	int n = dir_search(ds->dir, query, res, PN_DIR_RESULTS_MAX);
	if (n < 0) {
		free(res);
		return pn_conn_send_error(c, q->req_id, PN_WERR_LIMIT, "the query needs 1 to 8 words");
	}
	size_t cap = (size_t)n * (PN_CID_BYTES + 4 + 2 + PN_NAME_MAX) + 1;
	uint8_t *entries = malloc(cap);
	if (!entries) {
		free(res);
		return PN_ENOMEM;
	}
	struct pn_writer w;
	pn_wr_init(&w, entries, cap);
	uint16_t count = 0;
	for (int i = 0; i < n; i++) {
		if (!pn_name_valid(res[i].name, strlen(res[i].name)))
			continue;
		struct pn_dir_result_entry e = {.cid = res[i].cid, .providers = res[i].providers, .name = res[i].name,
						.name_len = (uint16_t)strlen(res[i].name)};
		pn_dir_result_encode(&w, &e);
		count++;
	}
	struct pn_msg m = {.type = PN_MSG_DIR_RESULTS};
	m.u.dir_results.req_id = q->req_id;
	m.u.dir_results.count = count;
	m.u.dir_results.entries = entries;
	m.u.dir_results.entries_len = w.len;
	int r = pn_conn_send_msg(c, &m);
	free(entries);
	free(res);
	ds->searches++;
	return r;
}

/* One log line per PN_NET_LIMIT_LOG_INTERVAL_MS-ish period, with a count. */
static void limit_refused(struct pn_directory *ds)
{
	uint64_t now = uv_now(ds->loop);
	ds->limit_refusals++;
	if (now - ds->limit_logged_ms >= DSERVER_LIMIT_LOG_MS || !ds->limit_logged_ms) {
		PN_LOGW(&ds->log, "offers refused at a limit: %llu since the last such line (%zu offers held)",
			(unsigned long long)ds->limit_refusals, dir_offer_count(ds->dir));
		ds->limit_refusals = 0;
		ds->limit_logged_ms = now ? now : 1;
	}
}

static int on_offer(struct pn_directory *ds, struct pn_conn *c, struct dclient *dc, const struct pn_msg_dir_offer *q)
{
	uint64_t now = uv_now(ds->loop);
	size_t off = 0;
	struct pn_list_entry e;
	while (pn_dir_offer_next(q, &off, &e) == PN_OK) {
		char name[PN_NAME_MAX + 1];
		memcpy(name, e.name, e.name_len);
		name[e.name_len] = 0;
		int r = dir_offer(ds->dir, dc->node_id, &e.cid, name, now);
		if (r == PN_ELIMIT) {
			limit_refused(ds);
			return pn_conn_send_error(c, q->req_id, PN_WERR_LIMIT,
						  "offer refused: the directory holds as many offers as it takes from this "
						  "node, its address or its network");
		}
		if (r == PN_ENOTFOUND)
			return pn_conn_send_error(c, q->req_id, PN_WERR_NOT_FOUND, "not registered");
	}
	return dok(ds, c, q->req_id, 0);
}

/* The req_id a request carries, so even a refusal names what it refuses. */
static uint32_t request_id(const struct pn_msg *m)
{
	switch (m->type) {
	case PN_MSG_DIR_REGISTER: return m->u.dir_register.req_id;
	case PN_MSG_DIR_OFFER: return m->u.dir_offer.req_id;
	case PN_MSG_DIR_WITHDRAW:
	case PN_MSG_DIR_FIND:
	case PN_MSG_DIR_BYE: return m->u.dir_ref.req_id;
	case PN_MSG_DIR_SEARCH: return m->u.dir_search.req_id;
	default: return 0;
	}
}

static void tick_cb(uv_timer_t *t);

/* Arms the timer at the core's next wake-up, but not sooner than
 * WAKE_MIN_GAP_MS after the last one; stops it when no node is registered. */
static void tick_arm(struct pn_directory *ds)
{
	uint64_t wake = dir_next_wakeup(ds->dir);

	if (ds->stopping)
		return;
	if (wake == UINT64_MAX) {
		if (ds->tick_at != NOT_ARMED)
			uv_timer_stop(&ds->tick);
		ds->tick_at = NOT_ARMED;
		return;
	}
	if (wake < ds->last_tick + WAKE_MIN_GAP_MS)
		wake = ds->last_tick + WAKE_MIN_GAP_MS;
	if (wake == ds->tick_at)
		return;
	uint64_t now = uv_now(ds->loop);
	ds->tick_at = wake;
	uv_timer_start(&ds->tick, tick_cb, wake > now ? wake - now : 0, 0);
}

static void tick_cb(uv_timer_t *t)
{
	struct pn_directory *ds = t->data;
	uint64_t now = uv_now(ds->loop);
	size_t gone = dir_tick(ds->dir, now);

	if (gone)
		PN_LOGI(&ds->log, "%zu nodes dropped after missing their heartbeats", gone);
	ds->last_tick = now;
	ds->tick_at = NOT_ARMED;
	tick_arm(ds);
}

static int handle_frame(struct pn_directory *ds, struct dclient *dc, struct pn_conn *c, const uint8_t *body,
			size_t len)
{
	struct pn_msg m;
	if (pn_msg_decode(body, len, &m) != PN_OK) {
		PN_LOGI(&ds->log, "%s: malformed message (type 0x%02x, %zu bytes), closing", pn_conn_peer_addr(c),
			    len ? body[0] : 0, len);
		pn_conn_send_error(c, 0, PN_WERR_PROTOCOL, "malformed message");
		return PN_EPROTO;
	}
	if (!dc->hello) {
		if (m.type != PN_MSG_HELLO) {
			PN_LOGI(&ds->log, "%s: first message is not HELLO, closing", pn_conn_peer_addr(c));
			return PN_EPROTO;
		}
		dc->hello = true;
		pn_conn_set_max_frame(c, pn_msg_max_body(PN_MSG_DIR_OFFER));
		return PN_OK;
	}
	uint64_t now = uv_now(ds->loop);
	ds->requests++;
	/* Every request costs a token; a connection out of tokens is refused, then dropped. */
	if (!pn_bucket_ready(&dc->bucket, now)) {
		if (++dc->strikes > RATE_STRIKES_MAX) {
			PN_LOGI(&ds->log, "%s: too many requests, closing", pn_conn_peer_addr(c));
			return PN_ELIMIT;
		}
		return pn_conn_send_error(c, request_id(&m), PN_WERR_BUSY, "too many requests; slow down");
	}
	pn_bucket_take(&dc->bucket, 1, now);
	switch (m.type) {
	case PN_MSG_PING: {
		if (dc->registered && dir_heartbeat(ds->dir, dc->node_id, now) == PN_ENOTFOUND) {
			dc->registered = false;
			return pn_conn_send_error(c, 0, PN_WERR_NOT_FOUND, "not registered (missed heartbeats); register again");
		}
		struct pn_msg pong = {.type = PN_MSG_PONG};
		pong.u.ping.nonce = m.u.ping.nonce;
		return pn_conn_send_msg(c, &pong);
	}
	case PN_MSG_PONG:
		return PN_OK;
	case PN_MSG_DIR_REGISTER: {
		char addr[DIR_ADDR_MAX + 1];
		node_addr(c, &m.u.dir_register, addr);
		memcpy(dc->node_id, pn_conn_peer_id(c), PN_ID_BYTES);
		uint64_t source, block;
		source_keys(c, &source, &block);
		int r = dir_register_from(ds->dir, dc->node_id, addr, source, block, now);
		if (r == PN_ELIMIT)
			return pn_conn_send_error(c, m.u.dir_register.req_id, PN_WERR_LIMIT,
						  "directory full, or too many nodes from your address or network");
		if (r != PN_OK)
			return pn_conn_send_error(c, m.u.dir_register.req_id, PN_WERR_PROTOCOL, "bad address");
		dc->registered = true;
		char idhex[PN_NODE_ID_STR_LEN + 1];
		pn_node_id_format(dc->node_id, idhex);
		PN_LOGI(&ds->log, "node %.16s registered at %s", idhex, addr);
		return dok(ds, c, m.u.dir_register.req_id, ds->heartbeat_ms);
	}
	case PN_MSG_DIR_OFFER:
		if (!dc->registered)
			return pn_conn_send_error(c, m.u.dir_offer.req_id, PN_WERR_NOT_FOUND, "not registered");
		return on_offer(ds, c, dc, &m.u.dir_offer);
	case PN_MSG_DIR_WITHDRAW:
		if (dc->registered)
			dir_withdraw(ds->dir, dc->node_id, &m.u.dir_ref.cid);
		return dok(ds, c, m.u.dir_ref.req_id, 0);
	case PN_MSG_DIR_FIND:
		return on_find(ds, c, dc, &m.u.dir_ref);
	case PN_MSG_DIR_SEARCH:
		return on_search(ds, c, &m.u.dir_search);
	case PN_MSG_DIR_BYE:
		if (dc->registered) {
			dir_unregister(ds->dir, dc->node_id);
			dc->registered = false;
		}
		return dok(ds, c, m.u.dir_ref.req_id, 0);
	default:
		PN_LOGI(&ds->log, "%s: unexpected message type 0x%02x, closing", pn_conn_peer_addr(c), m.type);
		pn_conn_send_error(c, 0, PN_WERR_PROTOCOL, "unexpected message");
		return PN_EPROTO;
	}
}

/* Every request may move the oldest node's deadline: re-arm after each. */
static int frame_cb(struct pn_conn *c, const uint8_t *body, size_t len)
{
	struct dclient *dc = pn_conn_data(c);
	struct pn_directory *ds = dc->ds;
	int r = handle_frame(ds, dc, c, body, len);

	tick_arm(ds);
	return r;
}

static void established_cb(struct pn_conn *c)
{
	struct pn_msg m = {.type = PN_MSG_HELLO};
	m.u.hello.version = PN_PROTOCOL_VERSION;
	m.u.hello.role = PN_ROLE_DIRECTORY;
	(void)pn_conn_send_msg(c, &m);
}

static void close_cb(struct pn_conn *c, int err)
{
	struct dclient *dc = pn_conn_data(c);
	if (!dc)
		return;
	if (err && err != PN_ECLOSED)
		PN_LOGI(&dc->ds->log, "%s: connection closed: %s", pn_conn_peer_addr(c), pn_strerror(err));
	/* A node that vanished without BYE stays until its heartbeats are missed. */
	free(dc);
}

static const struct pn_conn_cbs *accept_cb(struct pn_net *net, struct pn_conn *c)
{
	struct dclient *dc = calloc(1, sizeof *dc);
	if (!dc)
		return NULL;
	dc->ds = pn_net_data(net);
	pn_bucket_init(&dc->bucket, dc->ds->rate, dc->ds->rate * 2, uv_now(dc->ds->loop));
	pn_conn_set_data(c, dc);
	pn_conn_set_max_frame(c, 64);
	return &dc->ds->conn_cbs;
}

static void dserver_set_err(struct pn_directory *ds, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void dserver_set_err(struct pn_directory *ds, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(ds->error, sizeof ds->error, fmt, ap);
	va_end(ap);
}

/* The status page's questions (http/http.h). */
static void http_rates_cb(void *ud, uint64_t *up, uint64_t *down)
{
	struct pn_directory *ds = ud;
	uint64_t wire_up, wire_down, now = uv_now(ds->loop);
	pn_net_bytes(ds->net, &wire_up, &wire_down);
	pn_rate_sample(&ds->wire_rate, now, wire_up, wire_down);
	pn_rate_get(&ds->wire_rate, now, wire_up, wire_down, up, down);
}

/* {"kind":"directory","node_id","port","nodes","offers","connections",
 *  "requests","finds","searches","rates":{"upload","download"}} */
static json_t *http_status_cb(void *ud)
{
	struct pn_directory *ds = ud;
	struct pn_directory_status st;
	pn_directory_status(ds, &st);
	uint64_t up, down;
	http_rates_cb(ds, &up, &down);
	char idhex[PN_NODE_ID_STR_LEN + 1];
	pn_node_id_format(st.node_id, idhex);
	return json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:{s:I,s:I}}", "kind", "directory", "node_id", idhex,
			 "port", (json_int_t)st.port, "nodes", (json_int_t)st.nodes, "offers", (json_int_t)st.offers,
			 "connections", (json_int_t)st.connections, "requests", (json_int_t)st.requests, "finds",
			 (json_int_t)ds->finds, "searches", (json_int_t)ds->searches, "rates", "upload", (json_int_t)up,
			 "download", (json_int_t)down);
}

int pn_directory_new(uv_loop_t *loop, const struct pn_directory_config *cfg, const struct pn_directory_events *ev,
		     pn_directory **out)
{
	*out = NULL;
	if (!loop || !cfg || !cfg->listen || cfg->log_level > PN_LOG_DEBUG)
		return PN_EINVAL;
	struct pn_directory *ds = calloc(1, sizeof *ds);
	if (!ds)
		return PN_ENOMEM;
	ds->cfg = *cfg;
	ds->cfg.listen = strdup(cfg->listen);
	ds->cfg.data_dir = cfg->data_dir ? strdup(cfg->data_dir) : NULL;
	ds->cfg.http_listen = cfg->http_listen ? strdup(cfg->http_listen) : NULL;
	if (!ds->cfg.listen || (cfg->data_dir && !ds->cfg.data_dir) || (cfg->http_listen && !ds->cfg.http_listen)) {
		free((char *)ds->cfg.listen);
		free((char *)ds->cfg.data_dir);
		free((char *)ds->cfg.http_listen);
		free(ds);
		return PN_ENOMEM;
	}
	ds->loop = loop;
	if (ev)
		ds->log = (struct pn_logger){.cb = ev->log, .ud = ev->ud, .level = cfg->log_level};
	ds->conn_cbs = (struct pn_conn_cbs){
		.established_cb = established_cb,
		.frame_cb = frame_cb,
		.close_cb = close_cb,
	};
	ds->heartbeat_ms = cfg->heartbeat_ms ? cfg->heartbeat_ms : DEFAULT_HEARTBEAT_MS;
	ds->rate = cfg->rate_per_s ? cfg->rate_per_s : DEFAULT_RATE;
	uv_timer_init(loop, &ds->tick);
	ds->tick.data = ds;
	ds->tick_at = NOT_ARMED;
	ds->last_tick = uv_now(loop);
	*out = ds;
	return PN_OK;
}

int pn_directory_start(pn_directory *ds)
{
	if (ds->started || ds->stopping || ds->have_id) {
		dserver_set_err(ds, "the directory was started already");
		return PN_EBUSY;
	}
	char why[HTTP_ERR_MAX];
	if (ds->cfg.http_listen && http_check_listen(ds->cfg.http_listen, ds->cfg.http_public, why, sizeof why) != PN_OK) {
		dserver_set_err(ds, "%s", why); /* before anything starts */
		return PN_EINVAL;
	}
	int r = ds->cfg.data_dir ? pn_identity_load_or_create(ds->cfg.data_dir, &ds->id) : pn_identity_ephemeral(&ds->id);
	if (r != PN_OK) {
		dserver_set_err(ds, "cannot load or create an identity%s%s: %s", ds->cfg.data_dir ? " in " : "",
				ds->cfg.data_dir ? ds->cfg.data_dir : "", pn_strerror(r));
		return r;
	}
	ds->have_id = true;
	struct dir_opts dopts = {
		.max_nodes = ds->cfg.max_nodes,
		.node_timeout_ms = ds->heartbeat_ms * MISSED_HEARTBEATS,
		.seed = ds->id.node_id[0] | (uint64_t)ds->id.node_id[1] << 8,
	};
	ds->dir = dir_new(&dopts);
	if (!ds->dir) {
		dserver_set_err(ds, "out of memory");
		return PN_ENOMEM;
	}
	struct pn_net_opts nopts;
	pn_net_opts_default(&nopts);
	nopts.log = &ds->log;
	r = pn_net_new(ds->loop, &ds->id, &nopts, &ds->net);
	if (r != PN_OK) {
		dserver_set_err(ds, "cannot set up TLS: %s", pn_strerror(r));
		return r;
	}
	pn_net_set_data(ds->net, ds);
	r = pn_net_listen(ds->net, ds->cfg.listen, accept_cb, &ds->port);
	if (r != PN_OK) {
		dserver_set_err(ds, "cannot listen on %s: %s", ds->cfg.listen,
				r == PN_EEXIST ? "address already in use" : pn_strerror(r));
		return r;
	}
	ds->started = true;
	if (ds->cfg.http_listen) {
		struct http_opts ho = {
			.loop = ds->loop,
			.listen = ds->cfg.http_listen,
			.public_ok = ds->cfg.http_public,
			.log = &ds->log,
			.ops = {.ud = ds, .status_cb = http_status_cb, .rates_cb = http_rates_cb},
		};
		r = http_server_new(&ho, &ds->http, why, sizeof why);
		if (r != PN_OK) {
			dserver_set_err(ds, "%s", why);
			return r;
		}
	}
	return PN_OK;
}

static void dserver_free(struct pn_directory *ds)
{
	void (*cb)(void *) = ds->closed_cb;
	void *ud = ds->closed_ud;
	if (ds->started)
		PN_LOGI(&ds->log, "stopped after %llu requests (%llu finds, %llu searches)",
			(unsigned long long)ds->requests, (unsigned long long)ds->finds, (unsigned long long)ds->searches);
	dir_free(ds->dir);
	if (ds->have_id)
		pn_identity_free(&ds->id);
	free((char *)ds->cfg.listen);
	free((char *)ds->cfg.data_dir);
	free((char *)ds->cfg.http_listen);
	free(ds);
	if (cb)
		cb(ud);
}

static void dserver_part_closed(struct pn_directory *ds)
{
	if (--ds->closing == 0)
		dserver_free(ds);
}

static void dserver_tick_closed_cb(uv_handle_t *h)
{
	dserver_part_closed(h->data);
}

static void dserver_net_closed_cb(void *ud)
{
	dserver_part_closed(ud);
}

static void dserver_http_closed_cb(void *ud)
{
	dserver_part_closed(ud);
}

void pn_directory_close(pn_directory *ds, void (*closed)(void *ud), void *ud)
{
	if (!ds || ds->stopping)
		return;
	ds->stopping = true;
	if (ds->started)
		PN_LOGI(&ds->log, "stopping");
	ds->closed_cb = closed;
	ds->closed_ud = ud;
	uv_timer_stop(&ds->tick);
	ds->closing = 1;
	uv_close((uv_handle_t *)&ds->tick, dserver_tick_closed_cb);
	if (ds->http) { /* before the network: libmicrohttpd stops here */
		ds->closing++;
		http_server_close(ds->http, dserver_http_closed_cb, ds);
		ds->http = NULL;
	}
	if (ds->net) {
		ds->closing++;
		pn_net_close_cb(ds->net, dserver_net_closed_cb, ds);
	}
}

const char *pn_directory_error(const pn_directory *ds)
{
	return ds->error;
}

uint16_t pn_directory_http_port(const pn_directory *ds)
{
	return ds->http ? http_server_port(ds->http) : 0;
}

uint16_t pn_directory_port(const pn_directory *ds)
{
	return ds->port;
}

void pn_directory_status(const pn_directory *ds, struct pn_directory_status *out)
{
	memset(out, 0, sizeof *out);
	if (ds->have_id)
		memcpy(out->node_id, ds->id.node_id, PN_ID_BYTES);
	out->port = ds->port;
	if (!ds->started)
		return;
	out->nodes = dir_node_count(ds->dir);
	out->offers = dir_offer_count(ds->dir);
	out->connections = pn_net_conn_count(ds->net);
	out->requests = ds->requests;
}
