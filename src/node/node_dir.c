/* A node's client of the central look-up service: register, offer, find,
 * search, heartbeat, and register again after the directory comes back. */
#include <stdlib.h>
#include <string.h>
#include "node/node_int.h"
#include "util/log.h"

#define DIR_BACKOFF_MIN_MS 500
#define DIR_BACKOFF_MAX_MS 10000
#define DIR_DEFAULT_HEARTBEAT_MS 10000


/* Requests waiting for the directory's answer (bounded; the oldest is forgotten). */
static void pending_add(struct node *n, uint32_t req_id, enum pending_kind kind, const struct pn_cid *cid)
{
	if (n->dir_npending == DIR_PENDING_MAX) {
		memmove(n->dir_pending, n->dir_pending + 1, sizeof n->dir_pending[0] * (DIR_PENDING_MAX - 1));
		n->dir_npending--;
	}
	n->dir_pending[n->dir_npending].req_id = req_id;
	n->dir_pending[n->dir_npending].kind = kind;
	if (cid)
		n->dir_pending[n->dir_npending].cid = *cid;
	n->dir_npending++;
}

static bool pending_take(struct node *n, uint32_t req_id, struct pending *out)
{
	for (int i = 0; i < n->dir_npending; i++) {
		if (n->dir_pending[i].req_id == req_id) {
			*out = n->dir_pending[i];
			memmove(n->dir_pending + i, n->dir_pending + i + 1, sizeof n->dir_pending[0] * (size_t)(n->dir_npending - i - 1));
			n->dir_npending--;
			return true;
		}
	}
	return false;
}

bool dir_client_ready(struct node *n)
{
	return n->dir_registered && n->dir_conn;
}

static void send_offers(struct node *n)
{
	size_t total = store_count(n->store);
	uint8_t *entries = malloc(PN_DIR_OFFER_MAX * (PN_CID_BYTES + 2 + PN_NAME_MAX));
	if (!entries)
		return;
	size_t i = 0;
	while (i < total) {
		struct pn_writer w;
		pn_wr_init(&w, entries, PN_DIR_OFFER_MAX * (PN_CID_BYTES + 2 + PN_NAME_MAX));
		uint16_t count = 0;
		for (; i < total && count < PN_DIR_OFFER_MAX; i++) {
			const struct store_object *o = store_at(n->store, i);
			if (!o->name[0])
				continue;
			struct pn_list_entry e = {.cid = o->cid, .name = o->name, .name_len = (uint16_t)strlen(o->name)};
			pn_list_entry_encode(&w, &e);
			count++;
		}
		if (!count)
			break;
		struct pn_msg m = {.type = PN_MSG_DIR_OFFER};
		m.u.dir_offer.req_id = ++n->next_req;
		m.u.dir_offer.count = count;
		m.u.dir_offer.entries = entries;
		m.u.dir_offer.entries_len = w.len;
		if (node_send(n, n->dir_conn, &m) != PN_OK)
			break;
	}
	free(entries);
	/* Downloads in progress are offered too: their chunks are served as they arrive. */
	for (struct download *d = n->downloads; d; d = d->next)
		if (d->have_meta)
			dir_client_offer(n, &d->cid, d->name);
}

void dir_client_offer(struct node *n, const struct pn_cid *cid, const char *name)
{
	if (!dir_client_ready(n) || !name || !*name)
		return;
	uint8_t entry[PN_CID_BYTES + 2 + PN_NAME_MAX];
	struct pn_writer w;
	pn_wr_init(&w, entry, sizeof entry);
	struct pn_list_entry e = {.cid = *cid, .name = name, .name_len = (uint16_t)strlen(name)};
	pn_list_entry_encode(&w, &e);
	struct pn_msg m = {.type = PN_MSG_DIR_OFFER};
	m.u.dir_offer.req_id = ++n->next_req;
	m.u.dir_offer.count = 1;
	m.u.dir_offer.entries = entry;
	m.u.dir_offer.entries_len = w.len;
	(void)node_send(n, n->dir_conn, &m);
}

int dir_client_find(struct node *n, const struct pn_cid *cid)
{
	if (!dir_client_ready(n))
		return PN_ECLOSED;
	struct pn_msg m = {.type = PN_MSG_DIR_FIND};
	m.u.dir_ref.req_id = ++n->next_req;
	m.u.dir_ref.cid = *cid;
	int r = node_send(n, n->dir_conn, &m);
	if (r == PN_OK) {
		pending_add(n, m.u.dir_ref.req_id, PEND_FIND, cid);
		n->lookups++;
		n->lookup_msgs += 2; /* one request, one answer */
	}
	return r;
}

int dir_client_search(struct node *n, const char *query, uint32_t *req_id)
{
	if (!dir_client_ready(n))
		return PN_ECLOSED;
	size_t len = strlen(query);
	if (len == 0 || len > PN_DIR_QUERY_MAX)
		return PN_EINVAL;
	struct pn_msg m = {.type = PN_MSG_DIR_SEARCH};
	m.u.dir_search.req_id = ++n->next_req;
	m.u.dir_search.query = query;
	m.u.dir_search.query_len = (uint16_t)len;
	int r = node_send(n, n->dir_conn, &m);
	if (r == PN_OK) {
		pending_add(n, m.u.dir_search.req_id, PEND_SEARCH, NULL);
		*req_id = m.u.dir_search.req_id;
		n->lookups++;
		n->lookup_msgs += 2;
	}
	return r;
}

static void on_providers(struct node *n, const struct pn_msg_dir_providers *m)
{
	struct pending pd;
	if (!pending_take(n, m->req_id, &pd))
		return;
	size_t off = 0;
	struct pn_dir_provider_entry e;
	while (pn_dir_provider_next(m, &off, &e) == PN_OK) {
		char addr[PN_DIR_ADDR_MAX + 1];
		memcpy(addr, e.addr, e.addr_len);
		addr[e.addr_len] = 0;
		node_connect_provider(n, e.node_id, addr, &m->cid);
	}
	node_download_providers(n, &m->cid, m->total);
}

static int dir_frame_cb(struct pn_conn *c, const uint8_t *body, size_t len)
{
	struct node *n = pn_conn_data(c);
	struct pn_msg m;
	if (pn_msg_decode(body, len, &m) != PN_OK) {
		pn_log_warn("directory sent a malformed message (type 0x%02x)", len ? body[0] : 0);
		return PN_EPROTO;
	}
	struct pending pd;
	switch (m.type) {
	case PN_MSG_HELLO: {
		if (m.u.hello.role != PN_ROLE_DIRECTORY) {
			snprintf(n->dir_last_error, sizeof n->dir_last_error, "%s is not a peernet directory",
				 n->opts.directory);
			return PN_EPROTO;
		}
		pn_conn_set_max_frame(c, PN_FRAME_MAX);
		struct pn_msg r = {.type = PN_MSG_DIR_REGISTER};
		r.u.dir_register.req_id = ++n->next_req;
		r.u.dir_register.listen_port = n->port;
		r.u.dir_register.host = n->opts.announce_host ? n->opts.announce_host : "";
		r.u.dir_register.host_len = (uint8_t)strlen(r.u.dir_register.host);
		return node_send(n, c, &r);
	}
	case PN_MSG_DIR_OK:
		if (!n->dir_registered && m.u.dir_ok.heartbeat_ms) {
			n->dir_registered = true;
			n->dir_heartbeat_ms = m.u.dir_ok.heartbeat_ms;
			n->dir_backoff_ms = DIR_BACKOFF_MIN_MS;
			n->dir_last_error[0] = 0;
			pn_log_info("registered with the directory at %s", n->opts.directory);
			send_offers(n);
		}
		return PN_OK;
	case PN_MSG_DIR_PROVIDERS:
		on_providers(n, &m.u.dir_providers);
		return PN_OK;
	case PN_MSG_DIR_RESULTS:
		if (pending_take(n, m.u.dir_results.req_id, &pd))
			ctl_search_results(n, &m.u.dir_results);
		return PN_OK;
	case PN_MSG_ERROR:
		if (pending_take(n, m.u.error.req_id, &pd)) {
			char text[PN_ERRMSG_MAX + 1];
			size_t k = 0;
			for (size_t i = 0; i < m.u.error.text_len; i++)
				text[k++] = m.u.error.text[i] >= 0x20 ? m.u.error.text[i] : '?';
			text[k] = 0;
			if (pd.kind == PEND_SEARCH)
				ctl_search_failed(n, pd.req_id, text);
			else
				node_download_providers(n, &pd.cid, 0);
		} else if (m.u.error.code == PN_WERR_NOT_FOUND) {
			/* The directory forgot us (it restarted or we missed heartbeats): register again. */
			n->dir_registered = false;
			pn_conn_close(c, 0);
		}
		return PN_OK;
	case PN_MSG_PING: {
		struct pn_msg pong = {.type = PN_MSG_PONG};
		pong.u.ping.nonce = m.u.ping.nonce;
		return node_send(n, c, &pong);
	}
	case PN_MSG_PONG:
		return PN_OK;
	default:
		pn_log_warn("directory sent an unexpected message (type 0x%02x)", m.type);
		return PN_EPROTO;
	}
}

static void dir_established_cb(struct pn_conn *c)
{
	struct node *n = pn_conn_data(c);
	n->dir_connected = true;
	struct pn_msg m = {.type = PN_MSG_HELLO};
	m.u.hello.version = PN_PROTOCOL_VERSION;
	m.u.hello.role = PN_ROLE_NODE;
	m.u.hello.listen_port = n->port;
	(void)node_send(n, c, &m);
}

static void dir_close_cb(struct pn_conn *c, int err)
{
	struct node *n = pn_conn_data(c);
	if (n->dir_conn != c)
		return;
	bool was = n->dir_registered;
	n->dir_conn = NULL;
	n->dir_connected = false;
	n->dir_registered = false;
	if (!n->dir_last_error[0] || err)
		snprintf(n->dir_last_error, sizeof n->dir_last_error, "%s",
			 err ? pn_strerror(err) : "connection closed");
	if (was && !n->stopping)
		pn_log_warn("lost the directory at %s (%s); retrying", n->opts.directory, n->dir_last_error);
	/* Every look-up in flight fails now. */
	for (int i = 0; i < n->dir_npending; i++) {
		if (n->dir_pending[i].kind == PEND_SEARCH)
			ctl_search_failed(n, n->dir_pending[i].req_id, "the directory went away");
		else
			node_download_providers(n, &n->dir_pending[i].cid, 0);
	}
	n->dir_npending = 0;
	for (struct download *d = n->downloads; d; d = d->next)
		d->finding = false;
	if (n->stopping)
		return;
	uint64_t now = node_now(n);
	n->dir_next_attempt_ms = now + n->dir_backoff_ms + node_rand(n) % 250;
	n->dir_backoff_ms = n->dir_backoff_ms * 2 > DIR_BACKOFF_MAX_MS ? DIR_BACKOFF_MAX_MS : n->dir_backoff_ms * 2;
	node_schedule(n);
}

static const struct pn_conn_cbs dir_cbs = {
	.established_cb = dir_established_cb,
	.frame_cb = dir_frame_cb,
	.close_cb = dir_close_cb,
};

void dir_client_tick(struct node *n, uint64_t now)
{
	if (n->opts.discovery != PN_DISCOVERY_DIRECTORY || !n->opts.directory || n->stopping)
		return;
	if (!n->dir_conn) {
		if (now < n->dir_next_attempt_ms)
			return;
		int r = pn_net_connect(n->net, n->opts.directory, NULL, &dir_cbs, n, &n->dir_conn);
		if (r != PN_OK) {
			n->dir_conn = NULL;
			snprintf(n->dir_last_error, sizeof n->dir_last_error, "%s", pn_strerror(r));
			n->dir_next_attempt_ms = now + DIR_BACKOFF_MAX_MS;
		}
		n->dir_last_ping_ms = now;
		return;
	}
	uint32_t hb = n->dir_heartbeat_ms ? n->dir_heartbeat_ms : DIR_DEFAULT_HEARTBEAT_MS;
	if (n->dir_registered && now - n->dir_last_ping_ms >= hb) {
		n->dir_last_ping_ms = now;
		struct pn_msg m = {.type = PN_MSG_PING};
		m.u.ping.nonce = now;
		(void)node_send(n, n->dir_conn, &m);
	}
}

/* When dir_client_tick next has something to do (UINT64_MAX: nothing). */
uint64_t dir_client_next_wakeup(struct node *n)
{
	if (n->opts.discovery != PN_DISCOVERY_DIRECTORY || !n->opts.directory || n->stopping)
		return UINT64_MAX;
	if (!n->dir_conn)
		return n->dir_next_attempt_ms;
	if (n->dir_registered)
		return n->dir_last_ping_ms + (n->dir_heartbeat_ms ? n->dir_heartbeat_ms : DIR_DEFAULT_HEARTBEAT_MS);
	return UINT64_MAX;
}

void dir_client_close(struct node *n)
{
	if (n->dir_conn && n->dir_registered) {
		struct pn_msg m = {.type = PN_MSG_DIR_BYE};
		m.u.dir_ref.req_id = ++n->next_req;
		(void)node_send(n, n->dir_conn, &m);
	}
	if (n->dir_conn)
		pn_conn_close(n->dir_conn, 0);
}
