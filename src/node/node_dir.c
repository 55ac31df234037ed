/* A node's client of the central look-up service. See node_dir.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include "node/node_dir.h"
#include "net/net.h"
#include "proto/prng.h"
#include "store/store.h"

#define DIR_ERROR_MAX 256

enum pending_kind { PEND_FIND = 1, PEND_SEARCH };

/* A request to the directory waiting for its answer. */
struct pending {
	uint32_t req_id;
	enum pending_kind kind;
	struct pn_cid cid;   /* find: what for */
	void *token;         /* search: the owner's token */
};

struct dir_client {
	struct dir_client_opts o;
	struct dir_transport tr;
	struct pn_conn_cbs conn_cbs;  /* the default transport's */
	struct pn_conn *conn;         /* the default transport's connection */
	bool conn_up;                 /* a connection exists (connecting or established) */
	bool registered, stopped;
	uint32_t heartbeat_ms;
	uint64_t next_attempt_ms, backoff_ms, last_ping_ms;
	uint32_t next_req;
	char last_error[DIR_ERROR_MAX];
	struct pending pending[DIR_PENDING_MAX];
	int npending;
	struct pn_prng rng;
	uint64_t lookups, lookup_msgs;
	struct offer_req {            /* offers sent and not answered yet: what a refusal refuses */
		uint32_t req_id;      /* 0: a free entry */
		uint16_t count;
	} offers[DIR_OFFERS_TRACKED];
	uint32_t offers_next;         /* the entry the next offer takes (oldest forgotten) */
	uint32_t refused;             /* shares the directory refused since this registration */
};

static void offer_sent(struct dir_client *dc, uint32_t req_id, uint16_t count)
{
	dc->offers[dc->offers_next] = (struct offer_req){.req_id = req_id, .count = count};
	dc->offers_next = (dc->offers_next + 1) % DIR_OFFERS_TRACKED;
}

/* The offer request req_id is answered: how many shares it carried (0: not an offer of ours). */
static uint16_t offer_answered(struct dir_client *dc, uint32_t req_id)
{
	for (uint32_t i = 0; req_id && i < DIR_OFFERS_TRACKED; i++)
		if (dc->offers[i].req_id == req_id) {
			uint16_t count = dc->offers[i].count;
			dc->offers[i].req_id = 0;
			return count;
		}
	return 0;
}

uint32_t dir_client_refused(const struct dir_client *dc)
{
	return dc->refused;
}

static int send_msg(struct dir_client *dc, const struct pn_msg *m)
{
	return dc->tr.send_cb(dc->tr.ud, m);
}

/* ------------------------------------------------------------ pending requests */

static void report_forgotten(struct dir_client *dc, const struct pending *pd)
{
	const struct discovery_events *ev = &dc->o.events;
	if (pd->kind == PEND_SEARCH) {
		if (ev->search_done_cb)
			ev->search_done_cb(ev->ud, pd->token, "too many look-ups at once; try again");
	} else if (ev->lookup_done_cb) {
		ev->lookup_done_cb(ev->ud, &pd->cid, PN_ELIMIT, 0);
	}
}

/* Requests waiting for the directory's answer (bounded; the oldest is
 * forgotten, and reported so). */
static void pending_add(struct dir_client *dc, uint32_t req_id, enum pending_kind kind, const struct pn_cid *cid,
			void *token)
{
	struct pending forgotten = {0};
	bool forgot = false;
	if (dc->npending == DIR_PENDING_MAX) {
		forgotten = dc->pending[0];
		forgot = true;
		memmove(dc->pending, dc->pending + 1, sizeof dc->pending[0] * (DIR_PENDING_MAX - 1));
		dc->npending--;
	}
	struct pending *pd = &dc->pending[dc->npending++];
	memset(pd, 0, sizeof *pd);
	pd->req_id = req_id;
	pd->kind = kind;
	pd->token = token;
	if (cid)
		pd->cid = *cid;
	if (forgot)
		report_forgotten(dc, &forgotten);
}

static bool pending_take(struct dir_client *dc, uint32_t req_id, struct pending *out)
{
	for (int i = 0; i < dc->npending; i++) {
		if (dc->pending[i].req_id == req_id) {
			*out = dc->pending[i];
			memmove(dc->pending + i, dc->pending + i + 1,
				sizeof dc->pending[0] * (size_t)(dc->npending - i - 1));
			dc->npending--;
			return true;
		}
	}
	return false;
}

/* ------------------------------------------------------------ requests */

bool dir_client_ready(const struct dir_client *dc)
{
	return dc->registered && dc->conn_up && !dc->stopped;
}

const char *dir_client_last_error(const struct dir_client *dc)
{
	return dc->last_error;
}

void dir_client_stats(const struct dir_client *dc, uint64_t *lookups, uint64_t *messages)
{
	*lookups = dc->lookups;
	*messages = dc->lookup_msgs;
}

static void send_offers(struct dir_client *dc)
{
	size_t total = dc->o.store ? store_count(dc->o.store) : 0;
	size_t cap = PN_DIR_OFFER_MAX * (PN_CID_BYTES + 2 + PN_NAME_MAX);
	uint8_t *entries = malloc(cap);
	if (!entries)
		return;
	size_t i = 0;
	while (i < total) {
		struct pn_writer w;
		pn_wr_init(&w, entries, cap);
		uint16_t count = 0;
		for (; i < total && count < PN_DIR_OFFER_MAX; i++) {
			const struct store_object *o = store_at(dc->o.store, i);
			if (!o->name[0])
				continue;
			struct pn_list_entry e = {.cid = o->cid, .name = o->name, .name_len = (uint16_t)strlen(o->name)};
			pn_list_entry_encode(&w, &e);
			count++;
		}
		if (!count)
			break;
		struct pn_msg m = {.type = PN_MSG_DIR_OFFER};
		m.u.dir_offer.req_id = ++dc->next_req;
		m.u.dir_offer.count = count;
		m.u.dir_offer.entries = entries;
		m.u.dir_offer.entries_len = w.len;
		if (send_msg(dc, &m) != PN_OK)
			break;
		offer_sent(dc, m.u.dir_offer.req_id, count);
	}
	free(entries);
}

void dir_client_offer(struct dir_client *dc, const struct pn_cid *cid, const char *name)
{
	if (!dir_client_ready(dc) || !name || !*name)
		return;
	uint8_t entry[PN_CID_BYTES + 2 + PN_NAME_MAX];
	struct pn_writer w;
	pn_wr_init(&w, entry, sizeof entry);
	struct pn_list_entry e = {.cid = *cid, .name = name, .name_len = (uint16_t)strlen(name)};
	pn_list_entry_encode(&w, &e);
	struct pn_msg m = {.type = PN_MSG_DIR_OFFER};
	m.u.dir_offer.req_id = ++dc->next_req;
	m.u.dir_offer.count = 1;
	m.u.dir_offer.entries = entry;
	m.u.dir_offer.entries_len = w.len;
	if (send_msg(dc, &m) == PN_OK)
		offer_sent(dc, m.u.dir_offer.req_id, 1);
}

void dir_client_withdraw(struct dir_client *dc, const struct pn_cid *cid)
{
	if (!dir_client_ready(dc))
		return;
	struct pn_msg m = {.type = PN_MSG_DIR_WITHDRAW};
	m.u.dir_ref.req_id = ++dc->next_req;
	m.u.dir_ref.cid = *cid;
	(void)send_msg(dc, &m);
}

int dir_client_find(struct dir_client *dc, const struct pn_cid *cid)
{
	if (!dir_client_ready(dc))
		return PN_ECLOSED;
	struct pn_msg m = {.type = PN_MSG_DIR_FIND};
	m.u.dir_ref.req_id = ++dc->next_req;
	m.u.dir_ref.cid = *cid;
	int r = send_msg(dc, &m);
	if (r == PN_OK) {
		dc->lookups++;
		dc->lookup_msgs += 2; /* one request, one answer */
		pending_add(dc, m.u.dir_ref.req_id, PEND_FIND, cid, NULL);
	}
	return r;
}

int dir_client_search(struct dir_client *dc, const char *query, void *token)
{
	if (!dir_client_ready(dc))
		return PN_ECLOSED;
	size_t len = strlen(query);
	if (len == 0 || len > PN_DIR_QUERY_MAX)
		return PN_EINVAL;
	struct pn_msg m = {.type = PN_MSG_DIR_SEARCH};
	m.u.dir_search.req_id = ++dc->next_req;
	m.u.dir_search.query = query;
	m.u.dir_search.query_len = (uint16_t)len;
	int r = send_msg(dc, &m);
	if (r == PN_OK) {
		dc->lookups++;
		dc->lookup_msgs += 2;
		pending_add(dc, m.u.dir_search.req_id, PEND_SEARCH, NULL, token);
	}
	return r;
}

void dir_client_search_cancel(struct dir_client *dc, void *token)
{
	int k = 0;
	for (int i = 0; i < dc->npending; i++)
		if (dc->pending[i].kind != PEND_SEARCH || dc->pending[i].token != token)
			dc->pending[k++] = dc->pending[i];
	dc->npending = k;
}

/* ------------------------------------------------------------ answers */

static void on_providers(struct dir_client *dc, const struct pn_msg_dir_providers *m)
{
	struct pending pd;
	if (!pending_take(dc, m->req_id, &pd))
		return;
	const struct discovery_events *ev = &dc->o.events;
	struct discovery_provider batch[16];
	size_t n = 0, off = 0;
	struct pn_dir_provider_entry e;
	while (pn_dir_provider_next(m, &off, &e) == PN_OK) {
		memcpy(batch[n].id, e.node_id, PN_ID_BYTES);
		memcpy(batch[n].addr, e.addr, e.addr_len);
		batch[n].addr[e.addr_len] = 0;
		if (++n == sizeof batch / sizeof batch[0]) {
			if (ev->providers_cb)
				ev->providers_cb(ev->ud, &m->cid, batch, n, m->total);
			n = 0;
		}
	}
	if (ev->providers_cb)
		ev->providers_cb(ev->ud, &m->cid, batch, n, m->total);
	if (ev->lookup_done_cb)
		ev->lookup_done_cb(ev->ud, &m->cid, PN_OK, m->total);
}

static void on_results(struct dir_client *dc, const struct pn_msg_dir_results *m)
{
	struct pending pd;
	if (!pending_take(dc, m->req_id, &pd) || pd.kind != PEND_SEARCH)
		return;
	const struct discovery_events *ev = &dc->o.events;
	size_t off = 0;
	struct pn_dir_result_entry e;
	while (pn_dir_result_next(m, &off, &e) == PN_OK)
		if (ev->search_result_cb)
			ev->search_result_cb(ev->ud, pd.token, &e.cid, e.providers, e.name, e.name_len);
	if (ev->search_done_cb)
		ev->search_done_cb(ev->ud, pd.token, NULL);
}

static void on_error(struct dir_client *dc, const struct pn_msg_error *m)
{
	struct pending pd;
	uint16_t offered = offer_answered(dc, m->req_id);
	if (offered && m->code == PN_WERR_LIMIT) {
		/* Never a silent loss: said once per registration, counted in status. */
		if (!dc->refused) {
			char text[PN_ERRMSG_MAX + 1];
			size_t k = 0;
			for (size_t i = 0; i < m->text_len && k < PN_ERRMSG_MAX; i++)
				text[k++] = m->text[i] >= 0x20 && m->text[i] != 0x7f ? m->text[i] : '?';
			text[k] = 0;
			PN_LOGW(dc->o.log, "the directory at %s refused to register shares (%s): they stay here, but "
				"other nodes cannot find them through it; `peernet status` counts them", dc->o.directory, text);
		}
		dc->refused += offered;
		return;
	}
	if (offered)
		return; /* an offer refused otherwise (not registered: handled on NOT_FOUND below) */
	if (!pending_take(dc, m->req_id, &pd)) {
		if (m->code == PN_WERR_NOT_FOUND) {
			/* The directory forgot us (it restarted or we missed heartbeats): register again. */
			dc->registered = false;
			dc->tr.close_cb(dc->tr.ud);
		}
		return;
	}
	const struct discovery_events *ev = &dc->o.events;
	if (pd.kind == PEND_SEARCH) {
		char text[PN_ERRMSG_MAX + 1];
		size_t k = 0;
		for (size_t i = 0; i < m->text_len && k < PN_ERRMSG_MAX; i++)
			text[k++] = m->text[i] >= 0x20 ? m->text[i] : '?';
		text[k] = 0;
		if (ev->search_done_cb)
			ev->search_done_cb(ev->ud, pd.token, text);
	} else if (ev->lookup_done_cb) {
		ev->lookup_done_cb(ev->ud, &pd.cid, m->code == PN_WERR_NOT_FOUND ? PN_ENOTFOUND : PN_EPROTO, 0);
	}
}

int dir_client_on_msg(struct dir_client *dc, const struct pn_msg *m)
{
	if (dc->stopped)
		return PN_OK;
	switch (m->type) {
	case PN_MSG_HELLO: {
		if (m->u.hello.role != PN_ROLE_DIRECTORY) {
			snprintf(dc->last_error, sizeof dc->last_error, "%s is not a peernet directory", dc->o.directory);
			return PN_EPROTO;
		}
		struct pn_msg r = {.type = PN_MSG_DIR_REGISTER};
		r.u.dir_register.req_id = ++dc->next_req;
		r.u.dir_register.listen_port = dc->o.port;
		r.u.dir_register.host = dc->o.announce_host ? dc->o.announce_host : "";
		r.u.dir_register.host_len = (uint8_t)strlen(r.u.dir_register.host);
		return send_msg(dc, &r);
	}
	case PN_MSG_DIR_OK:
		(void)offer_answered(dc, m->u.dir_ok.req_id);
		if (!dc->registered && m->u.dir_ok.heartbeat_ms) {
			dc->registered = true;
			dc->refused = 0; /* every share is offered again now */
			dc->heartbeat_ms = m->u.dir_ok.heartbeat_ms;
			dc->backoff_ms = DIR_BACKOFF_MIN_MS;
			dc->last_error[0] = 0;
			PN_LOGI(dc->o.log, "registered with the directory at %s", dc->o.directory);
			send_offers(dc);
			if (dc->o.events.registered_cb)
				dc->o.events.registered_cb(dc->o.events.ud);
		}
		return PN_OK;
	case PN_MSG_DIR_PROVIDERS:
		on_providers(dc, &m->u.dir_providers);
		return PN_OK;
	case PN_MSG_DIR_RESULTS:
		on_results(dc, &m->u.dir_results);
		return PN_OK;
	case PN_MSG_ERROR:
		on_error(dc, &m->u.error);
		return PN_OK;
	case PN_MSG_PING: {
		struct pn_msg pong = {.type = PN_MSG_PONG};
		pong.u.ping.nonce = m->u.ping.nonce;
		return send_msg(dc, &pong);
	}
	case PN_MSG_PONG:
		return PN_OK;
	default:
		PN_LOGW(dc->o.log, "directory sent an unexpected message (type 0x%02x)", m->type);
		return PN_EPROTO;
	}
}

void dir_client_connected(struct dir_client *dc)
{
	struct pn_msg m = {.type = PN_MSG_HELLO};
	m.u.hello.version = PN_PROTOCOL_VERSION;
	m.u.hello.role = PN_ROLE_NODE;
	m.u.hello.listen_port = dc->o.port;
	(void)send_msg(dc, &m);
}

void dir_client_closed(struct dir_client *dc, int err, uint64_t now)
{
	bool was = dc->registered;
	dc->conn_up = false;
	dc->registered = false;
	if (dc->stopped)
		return;
	if (!dc->last_error[0] || err)
		snprintf(dc->last_error, sizeof dc->last_error, "%s", err ? pn_strerror(err) : "connection closed");
	if (was)
		PN_LOGW(dc->o.log, "lost the directory at %s (%s); retrying", dc->o.directory, dc->last_error);
	dc->next_attempt_ms = now + dc->backoff_ms + pn_prng_below(&dc->rng, DIR_BACKOFF_JITTER_MS);
	dc->backoff_ms = dc->backoff_ms * 2 > DIR_BACKOFF_MAX_MS ? DIR_BACKOFF_MAX_MS : dc->backoff_ms * 2;
	/* Every look-up in flight fails now. The callbacks may ask again, so the
	 * list is emptied first. */
	struct pending failed[DIR_PENDING_MAX];
	int nfailed = dc->npending;
	memcpy(failed, dc->pending, sizeof failed[0] * (size_t)nfailed);
	dc->npending = 0;
	const struct discovery_events *ev = &dc->o.events;
	for (int i = 0; i < nfailed; i++) {
		if (failed[i].kind == PEND_SEARCH) {
			if (ev->search_done_cb)
				ev->search_done_cb(ev->ud, failed[i].token, "the directory went away");
		} else if (ev->lookup_done_cb) {
			ev->lookup_done_cb(ev->ud, &failed[i].cid, PN_ECLOSED, 0);
		}
	}
	if (ev->wake_cb)
		ev->wake_cb(ev->ud);
}

/* ------------------------------------------------------------ timer */

void dir_client_tick(struct dir_client *dc, uint64_t now)
{
	if (dc->stopped)
		return;
	if (!dc->conn_up) {
		if (now < dc->next_attempt_ms)
			return;
		dc->last_ping_ms = now;
		int r = dc->tr.connect_cb(dc->tr.ud, dc->o.directory);
		if (r != PN_OK) {
			snprintf(dc->last_error, sizeof dc->last_error, "%s", pn_strerror(r));
			dc->next_attempt_ms = now + DIR_BACKOFF_MAX_MS;
			return;
		}
		dc->conn_up = true;
		return;
	}
	uint32_t hb = dc->heartbeat_ms ? dc->heartbeat_ms : DIR_DEFAULT_HEARTBEAT_MS;
	if (dc->registered && now - dc->last_ping_ms >= hb) {
		dc->last_ping_ms = now;
		struct pn_msg m = {.type = PN_MSG_PING};
		m.u.ping.nonce = now;
		(void)send_msg(dc, &m);
	}
}

uint64_t dir_client_next_wakeup(const struct dir_client *dc)
{
	if (dc->stopped)
		return UINT64_MAX;
	if (!dc->conn_up)
		return dc->next_attempt_ms;
	if (dc->registered)
		return dc->last_ping_ms + (dc->heartbeat_ms ? dc->heartbeat_ms : DIR_DEFAULT_HEARTBEAT_MS);
	return UINT64_MAX;
}

/* ------------------------------------------------------------ the default transport: TLS through the net */

static int net_frame_cb(struct pn_conn *c, const uint8_t *body, size_t len)
{
	struct dir_client *dc = pn_conn_data(c);
	struct pn_msg m;
	if (pn_msg_decode(body, len, &m) != PN_OK) {
		PN_LOGW(dc->o.log, "directory sent a malformed message (type 0x%02x)", len ? body[0] : 0);
		(void)pn_conn_send_error(c, 0, PN_WERR_PROTOCOL, "malformed message"); /* then the close */
		return PN_EPROTO;
	}
	int r = dir_client_on_msg(dc, &m);
	if (r == PN_OK && m.type == PN_MSG_HELLO)
		pn_conn_set_max_frame(c, PN_FRAME_MAX);
	return r;
}

static void net_established_cb(struct pn_conn *c)
{
	dir_client_connected(pn_conn_data(c));
}

static void net_close_cb(struct pn_conn *c, int err)
{
	struct dir_client *dc = pn_conn_data(c);
	if (dc->conn != c)
		return;
	dc->conn = NULL;
	dir_client_closed(dc, err, uv_now(pn_net_loop(dc->o.net)));
}

static int net_connect(void *ud, const char *addr)
{
	struct dir_client *dc = ud;
	int r = pn_net_connect(dc->o.net, addr, NULL, &dc->conn_cbs, dc, &dc->conn);
	if (r != PN_OK)
		dc->conn = NULL;
	return r;
}

static int net_send(void *ud, const struct pn_msg *m)
{
	struct dir_client *dc = ud;
	return dc->conn ? pn_conn_send_msg(dc->conn, m) : PN_ECLOSED;
}

static void net_close(void *ud)
{
	struct dir_client *dc = ud;
	if (dc->conn)
		pn_conn_close(dc->conn, 0);
}

/* ------------------------------------------------------------ life */

struct dir_client *dir_client_new(const struct dir_client_opts *opts)
{
	struct dir_client *dc = calloc(1, sizeof *dc);
	if (!dc)
		return NULL;
	dc->o = *opts;
	if (opts->transport.connect_cb) {
		dc->tr = opts->transport;
	} else {
		dc->tr = (struct dir_transport){.ud = dc, .connect_cb = net_connect, .send_cb = net_send,
						.close_cb = net_close};
		dc->conn_cbs = (struct pn_conn_cbs){.established_cb = net_established_cb, .frame_cb = net_frame_cb,
						    .close_cb = net_close_cb};
	}
	dc->backoff_ms = DIR_BACKOFF_MIN_MS;
	pn_prng_seed(&dc->rng, opts->seed);
	return dc;
}

void dir_client_stop(struct dir_client *dc)
{
	if (dc->stopped)
		return;
	if (dc->conn_up && dc->registered) {
		struct pn_msg m = {.type = PN_MSG_DIR_BYE};
		m.u.dir_ref.req_id = ++dc->next_req;
		(void)send_msg(dc, &m);
	}
	dc->stopped = true;
	dc->npending = 0;
	if (dc->conn_up)
		dc->tr.close_cb(dc->tr.ud);
}

void dir_client_free(struct dir_client *dc)
{
	free(dc);
}
