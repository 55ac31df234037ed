/* What the outside asks of a node: pn_node_new and pn_node_start (the
 * configuration, and the parts wired together), the program's pn_node_*
 * calls, the control socket's requests and the status page's. See
 * node_int.h. A download and a search are handles that carry their own ops:
 * the API's ops call the program's events, the control socket's answer a
 * ctl_client, so both run the same code (node.c, node_get.c). */
#define PN_NODE_IMPL
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <net/if.h>
#include <uv.h>
#include "node/node_int.h"
#include "crypto/crypto.h"
#include "http/http.h"
#include "net/net.h"
#include "proto/engine.h"
#include "store/store.h"

#define NODE_RECHOKE_MS 1000      /* the choker re-ranks peers this often, */
#define NODE_OPTIMISTIC_MS 500    /* and moves the optimistic unchoke this often */
#define NODE_UPLOAD_AHEAD_MS 100 /* under a fast upload cap, chunks handed to connections ahead of it */

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
	int r = node__get(n, &req->cid, !req->to_stdout && named ? req->out_path : NULL,
			  !req->to_stdout && !named ? (req->cwd ? req->cwd : ".") : NULL, flags,
			  req->to_stdout ? &ctl_stream_ops : &ctl_waiter_ops, cc, &w, why, sizeof why);
	if (r != PN_OK)
		ctl_finish(cc, "%s", why);
	else
		node__kick(n);
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
	if (node__search(ud, query, &ctl_search_ops, cc, &sr, why, sizeof why) != PN_OK)
		ctl_finish(cc, "%s", why);
}

static int ctl_add_cb(void *ud, const char *path, const struct store_object **out)
{
	return node__share(ud, path, out);
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
	if (n->dht) {
		st->dht = true;
		dht_node_get_stats(n->dht, &st->dht_stats);
		st->lookups += st->dht_stats.lookups;
		st->lookup_msgs += st->dht_stats.lookup_msgs;
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
			node__search_cancel(sr);
		}
	for (struct download *d = n->downloads; d; d = d->next)
		for (struct pn_download *w = d->waiters; w; w = w->next)
			if ((w->ops == &ctl_waiter_ops || w->ops == &ctl_stream_ops) && w->user == cc)
				w->ops = NULL; /* the download goes on in the background */
	for (struct pn_download *w = n->ready; w; w = w->next)
		if ((w->ops == &ctl_waiter_ops || w->ops == &ctl_stream_ops) && w->user == cc)
			w->ops = NULL;
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
		node__set_err(n, "%s", why);
	return r;
}

/* ------------------------------------------------------------ the status page */

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
		node__set_err(n, "%s", why);
	else
		PN_LOGI(&n->log, "status page on port %u", http_server_port(n->http));
	return r;
}

/* ------------------------------------------------------------ the API */

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

#define NODE_MAX_LIST 64 /* --bootstrap and --seed-server addresses, each */

int pn_node_new(uv_loop_t *loop, const struct pn_node_config *cfg, const struct pn_node_events *ev, pn_node **out)
{
	*out = NULL;
	if (!loop || !cfg || !cfg->listen || !cfg->data_dir || cfg->nbootstrap > NODE_MAX_LIST ||
	    cfg->nseed_servers > NODE_MAX_LIST || (cfg->nbootstrap && !cfg->bootstrap) ||
	    (cfg->nseed_servers && !cfg->seed_servers) || cfg->ttl > FLOOD_MAX_TTL ||
	    (cfg->discovery && cfg->discovery != PN_DISCOVERY_DIRECTORY && cfg->discovery != PN_DISCOVERY_FLOOD &&
	     cfg->discovery != PN_DISCOVERY_DHT) ||
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
		node__config_free(&n->conf);
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
		node__set_err(n, "the node was started already");
		return PN_EBUSY;
	}
	n->error[0] = '\0';
	int r;
	char why[HTTP_ERR_MAX];
	if (n->cfg->http_listen &&
	    (r = http_check_listen(n->cfg->http_listen, n->cfg->http_public, why, sizeof why)) != PN_OK) {
		node__set_err(n, "%s", why); /* before anything starts */
		return r;
	}
	pn_prng_seed(&n->rng, uv_hrtime() ^ (uint64_t)getpid() << 32 ^ (uint64_t)(uintptr_t)n);
	n->peer_cbs = (struct pn_conn_cbs){
		.established_cb = node__peer_established_cb,
		.frame_cb = node__peer_frame_cb,
		.writable_cb = node__peer_writable_cb,
		.close_cb = node__peer_close_cb,
	};
	n->store_ops = (struct engine_store_ops){.lookup = node__store_lookup_cb, .backlog = node__backlog_cb};
	n->out_cap = PN_FRAME_HDR + PN_FRAME_MAX;
	n->out = malloc(n->out_cap);
	if (!n->out) {
		node__set_err(n, "out of memory");
		return PN_ENOMEM;
	}
	r = pn_identity_load_or_create(n->cfg->data_dir, &n->id);
	if (r != PN_OK) {
		node__set_err(n, "cannot load or create the identity in %s: %s", n->cfg->data_dir, pn_strerror(r));
		return r;
	}
	n->have_id = true;
	r = store_open_log(n->cfg->data_dir, &n->log, &n->store);
	if (r != PN_OK) {
		node__set_err(n, "cannot open the store in %s: %s", n->cfg->data_dir, pn_strerror(r));
		return r;
	}
	struct pn_net_opts nopts;
	pn_net_opts_default(&nopts);
	nopts.log = &n->log;
	if (n->cfg->bind_interface) {
		if (if_nametoindex(n->cfg->bind_interface) == 0) {
			node__set_err(n, "cannot bind to the interface %s: no such interface", n->cfg->bind_interface);
			return PN_ENOTFOUND;
		}
		snprintf(nopts.bind_interface, sizeof nopts.bind_interface, "%s", n->cfg->bind_interface);
	}
	r = pn_net_new(n->loop, &n->id, &nopts, &n->net);
	if (r != PN_OK) {
		node__set_err(n, "cannot set up TLS: %s", pn_strerror(r));
		return r;
	}
	pn_net_set_data(n->net, n);
	pn_net_set_rates(n->net, n->cfg->up_rate, n->cfg->down_rate);
	r = pn_net_listen(n->net, n->cfg->listen, node__accept_cb, &n->port);
	if (r == PN_EACCES && n->cfg->bind_interface) {
		node__set_err(n, "cannot bind to the interface %s: permission denied (it needs CAP_NET_RAW)",
			n->cfg->bind_interface);
		return r;
	}
	if (r != PN_OK) {
		node__set_err(n, "cannot listen on %s: %s", n->cfg->listen,
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
		 * (node__backlog_cb counts its debt), so the engine picks which request to
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
		node__set_err(n, "out of memory");
		r = PN_ENOMEM;
		return r;
	}
	r = node__discovery_setup(n);
	if (r != PN_OK) {
		if (!n->error[0])
			node__set_err(n, "out of memory");
		return r;
	}
	if (n->cfg->control_path && (r = ctl_setup(n)) != PN_OK)
		return r;
	if (n->cfg->http_listen && (r = http_setup(n)) != PN_OK)
		return r;
	n->state = NODE_STARTED;
	n->started = true;
	n->timer_on = true;
	uv_timer_start(&n->tick, node__tick_cb, 0, 0);
	return PN_OK;
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
		node__set_err(n, "the node is not running");
		return PN_EBUSY;
	}
	const struct store_object *o = NULL;
	int r = node__share(n, path, &o);
	if (r != PN_OK && r != PN_EEXIST) {
		node__set_err(n, "cannot share %s: %s", path, pn_strerror(r));
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
		node__set_err(n, "the node is not running");
		return PN_EBUSY;
	}
	char id[PN_CID_STR_LEN + 1];
	cid_str(cid, id);
	int r = store_remove(n->store, cid);
	if (r != PN_OK) {
		node__set_err(n, r == PN_ENOTFOUND ? "%s is not shared here" : "cannot remove %s from the store", id);
		return r;
	}
	if (n->dir)
		dir_client_withdraw(n->dir, cid);
	if (n->dht && !node__download_find(n, cid))
		dht_node_withdraw(n->dht, cid);
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
		node__set_err(n, "the node is not running");
		return PN_EBUSY;
	}
	if (!cid || (flags & ~(PN_GET_OVERWRITE | PN_GET_STREAM)) || cid->size > PN_MAX_FILE_SIZE) {
		node__set_err(n, "invalid argument");
		return PN_EINVAL;
	}
	struct stat st;
	bool is_dir = path && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
	struct pn_download *w;
	int r = node__get(n, cid, is_dir ? NULL : path, is_dir ? path : NULL, flags, &api_waiter_ops, user, &w, n->error,
			  sizeof n->error);
	if (r == PN_OK)
		node__kick(n);
	if (r == PN_OK && out)
		*out = w;
	return r;
}

void pn_download_cancel(pn_download *w)
{
	if (w->canceled)
		return;
	w->canceled = true;
	node__kick(w->node);
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
		node__set_err(n, "the node is not running");
		return PN_EBUSY;
	}
	if (!query) {
		node__set_err(n, "invalid argument");
		return PN_EINVAL;
	}
	struct pn_search *sr;
	int r = node__search(n, query, &api_search_ops, ud, &sr, n->error, sizeof n->error);
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
	node__search_cancel(sr);
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
	st->discovery_ready = node__discovery_ready(n);
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
	if (n->dht) {
		struct dht_node_stats ds;
		dht_node_get_stats(n->dht, &ds);
		st->lookups += ds.lookups;
		st->lookup_msgs += ds.lookup_msgs;
		st->dht_contacts = ds.contacts;
		st->dht_rounds_last = ds.rounds_last;
		st->dht_rounds_median = ds.rounds_median;
		st->dht_msgs_last = ds.msgs_last;
		st->dht_msgs_median = ds.msgs_median;
	}
	for (const struct peer *p = n->peers; p; p = p->next)
		st->peers += p->hello;
	st->downloads = (size_t)node__count_downloads(n);
	st->shares = store_count(n->store);
	struct engine_stats es;
	engine_stats(n->engine, &es);
	st->bytes_up = es.bytes_up;
	st->bytes_down = es.bytes_down;
	pn_rate_get(&n->rate, uv_now(n->loop), es.bytes_up, es.bytes_down, &st->rate_up, &st->rate_down);
	pn_net_bytes(n->net, &st->wire_up, &st->wire_down);
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