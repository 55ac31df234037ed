/* The client side of a node's control socket (peernet.h, "the control
 * client"): one request per connection, on the caller's loop, its JSON-lines
 * answer (the protocol is described at the top of node_ctl.c) turned into
 * the public structs. The node's bytes are untrusted: every field is
 * checked for its type and bounds before it is handed on. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <uv.h>
#include "peernet.h"
#include "util/json.h"

#define CTL_TEXT_MAX 4096      /* a name, a path or a message of a reply, decoded */
#define CTL_WHY_MAX (CTL_TEXT_MAX + 256)

enum ctl_kind { CTL_ADD, CTL_SEARCH, CTL_GET, CTL_STATUS, CTL_STOP };

struct pn_ctl {
	uv_loop_t *loop;
	struct pn_ctl_events ev;
	enum ctl_kind kind;
	uv_pipe_t pipe;
	uv_connect_t connect;
	uv_write_t write;
	char *req;               /* the request line, newline included */
	size_t req_len;
	char *buf;               /* the reply line being read: PN_CONTROL_REPLY_MAX bytes */
	size_t len;
	bool ended;              /* err and why are final; the pipe is closing */
	bool got;                /* get: the "got" reply came */
	int err;
	char why[CTL_WHY_MAX];
	char path[sizeof ((struct sockaddr_un *)0)->sun_path];
};

static void closed_cb(uv_handle_t *h)
{
	pn_ctl *c = h->data;
	if (c->ev.done)
		c->ev.done(c->ev.ud, c, c->err, c->why);
	free(c->req);
	free(c->buf);
	free(c);
}

/* Decides how the request ends (the first call wins) and closes the
 * connection; done follows from the close callback. */
static void finish(pn_ctl *c, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void finish(pn_ctl *c, int err, const char *fmt, ...)
{
	if (c->ended)
		return;
	c->ended = true;
	c->err = err;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->why, sizeof c->why, fmt, ap);
	va_end(ap);
	uv_read_stop((uv_stream_t *)&c->pipe);
	uv_close((uv_handle_t *)&c->pipe, closed_cb);
}

static void unexpected(pn_ctl *c)
{
	finish(c, PN_EPROTO, "unexpected answer from the node");
}

/* ---------------------------------------------------------------- reading fields */

static bool get_u64(const json_t *obj, const char *key, uint64_t *out)
{
	const json_t *v = json_object_get(obj, key);
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return false;
	*out = (uint64_t)json_integer_value(v);
	return true;
}

static bool get_bool(const json_t *obj, const char *key, bool *out)
{
	const json_t *v = json_object_get(obj, key);
	if (!json_is_boolean(v))
		return false;
	*out = json_is_true(v);
	return true;
}

static bool get_cid(const json_t *obj, const char *key, struct pn_cid *out)
{
	const char *s = json_string_value(json_object_get(obj, key));
	return s && pn_cid_parse(s, out) == PN_OK;
}

/* Where the texts of a status reply go: never more bytes than the reply
 * line had (a JSON string decodes to fewer bytes than it takes, quotes
 * included), so one block of its length holds them all. */
struct arena {
	char *base;
	size_t cap, used;
};

static const char *arena_text(struct arena *a, const json_t *obj, const char *key)
{
	char *at = a->base + a->used;
	if (pn__json_get_text(obj, key, at, a->cap - a->used) != PN_OK)
		return NULL;
	a->used += strlen(at) + 1;
	return at;
}

/* ---------------------------------------------------------------- the replies */

static void on_file(pn_ctl *c, const json_t *rep)
{
	char name[CTL_TEXT_MAX];
	struct pn_share_info f = {.name = name};
	if (!get_cid(rep, "id", &f.cid) || pn__json_get_text(rep, "name", name, sizeof name) != PN_OK) {
		unexpected(c);
		return;
	}
	if (c->ev.shared)
		c->ev.shared(c->ev.ud, c, &f);
}

static void on_result(pn_ctl *c, const json_t *rep)
{
	char name[CTL_TEXT_MAX];
	uint64_t providers;
	struct pn_search_hit h = {.name = name};
	if (!get_cid(rep, "id", &h.cid) || pn__json_get_text(rep, "name", name, sizeof name) != PN_OK ||
	    !get_u64(rep, "providers", &providers) || providers > UINT32_MAX) {
		unexpected(c);
		return;
	}
	h.name_len = strlen(name);
	h.providers = (uint32_t)providers;
	if (c->ev.hit)
		c->ev.hit(c->ev.ud, c, &h);
}

static void on_progress(pn_ctl *c, const json_t *rep)
{
	char name[CTL_TEXT_MAX];
	uint64_t peers;
	struct pn_progress p = {.name = name};
	if (!get_u64(rep, "have", &p.have) || !get_u64(rep, "total", &p.total) || !get_u64(rep, "peers", &peers) ||
	    peers > UINT32_MAX || pn__json_get_text(rep, "name", name, sizeof name) != PN_OK) {
		unexpected(c);
		return;
	}
	p.peers = (uint32_t)peers;
	p.cid.size = p.total;
	if (c->ev.progress)
		c->ev.progress(c->ev.ud, c, &p);
}

static void on_stream(pn_ctl *c, const json_t *rep)
{
	char path[CTL_TEXT_MAX];
	uint64_t upto;
	if (pn__json_get_text(rep, "path", path, sizeof path) != PN_OK || !get_u64(rep, "upto", &upto)) {
		unexpected(c);
		return;
	}
	if (c->ev.stream)
		c->ev.stream(c->ev.ud, c, path, upto);
}

static void on_got(pn_ctl *c, const json_t *rep)
{
	char name[CTL_TEXT_MAX], path[CTL_TEXT_MAX];
	uint64_t peers;
	const json_t *secs = json_object_get(rep, "seconds");
	struct pn_download_result r = {.name = name, .path = path};
	if (!get_cid(rep, "id", &r.cid) || pn__json_get_text(rep, "name", name, sizeof name) != PN_OK ||
	    pn__json_get_text(rep, "path", path, sizeof path) != PN_OK ||
	    !get_u64(rep, "bytes_downloaded", &r.bytes_downloaded) ||
	    !get_u64(rep, "bytes_resumed", &r.bytes_resumed) || !json_is_number(secs) ||
	    !get_u64(rep, "peers", &peers) || peers > UINT32_MAX) {
		unexpected(c);
		return;
	}
	r.seconds = json_number_value(secs);
	r.providers = (uint32_t)peers;
	c->got = true;
	if (c->ev.got)
		c->ev.got(c->ev.ud, c, &r);
}

static bool parse_peer(const json_t *o, struct arena *a, struct pn_peer_info *p)
{
	const char *id = json_string_value(json_object_get(o, "id"));
	const char *dir = json_string_value(json_object_get(o, "direction"));
	const char *addr = arena_text(a, o, "address");
	if (!id || pn_node_id_parse(id, p->id) != PN_OK || !dir || !addr || strlen(addr) >= sizeof p->addr)
		return false;
	snprintf(p->addr, sizeof p->addr, "%s", addr);
	p->outgoing = !strcmp(dir, "out");
	return (p->outgoing || !strcmp(dir, "in")) && get_bool(o, "neighbor", &p->neighbor) &&
	       get_bool(o, "seed_server", &p->seed_server) && get_bool(o, "choking_us", &p->peer_choking) &&
	       get_bool(o, "we_choke", &p->am_choking) && get_u64(o, "bytes_to", &p->bytes_to) &&
	       get_u64(o, "bytes_from", &p->bytes_from) && get_u64(o, "rate_to", &p->rate_to) &&
	       get_u64(o, "rate_from", &p->rate_from);
}

static bool parse_transfer(const json_t *o, struct arena *a, struct pn_progress *d)
{
	uint64_t chunks, have;
	if (!get_cid(o, "id", &d->cid) || !(d->name = arena_text(a, o, "name")) || !get_u64(o, "chunks", &chunks) ||
	    !get_u64(o, "chunks_have", &have) || chunks > UINT32_MAX || have > chunks ||
	    !get_u64(o, "bytes_downloaded", &d->bytes_downloaded))
		return false;
	d->chunks = (uint32_t)chunks;
	d->chunks_have = (uint32_t)have;
	d->total = d->cid.size;
	return true;
}

static enum pn_discovery discovery_of(const char *name)
{
	if (!strcmp(name, "directory"))
		return PN_DISCOVERY_DIRECTORY;
	if (!strcmp(name, "flood"))
		return PN_DISCOVERY_FLOOD;
	return !strcmp(name, "dht") ? PN_DISCOVERY_DHT : 0;
}

/* The status document (node/ctl_status.c) into r, its texts in a, its
 * lists in new arrays the caller frees. */
static bool parse_report(const json_t *s, struct arena *a, struct pn_node_report *r, struct pn_peer_info **peers,
			 struct pn_share_info **shares, struct pn_progress **transfers)
{
	struct pn_node_status *st = &r->status;
	const char *id = json_string_value(json_object_get(s, "node_id"));
	const char *disc = json_string_value(json_object_get(s, "discovery"));
	const json_t *dir = json_object_get(s, "directory"), *flood = json_object_get(s, "flood");
	const json_t *jpeers = json_object_get(s, "peers"), *jshares = json_object_get(s, "shares");
	const json_t *jtransfers = json_object_get(s, "transfers"), *totals = json_object_get(s, "totals");
	const json_t *rates = json_object_get(s, "rates");
	uint64_t port, shares_total, refused = 0, neighbors = 0;
	if (!id || pn_node_id_parse(id, st->node_id) != PN_OK || !disc || !(r->listen = arena_text(a, s, "listen")) ||
	    !get_u64(s, "port", &port) || port > UINT16_MAX || !get_u64(s, "shares_total", &shares_total) ||
	    !json_is_array(jpeers) || !json_is_array(jshares) || !json_is_array(jtransfers) ||
	    !get_u64(totals, "bytes_uploaded", &st->bytes_up) || !get_u64(totals, "bytes_downloaded", &st->bytes_down) ||
	    !get_u64(totals, "wire_bytes_sent", &st->wire_up) ||
	    !get_u64(totals, "wire_bytes_received", &st->wire_down) || !get_u64(totals, "lookups", &st->lookups) ||
	    !get_u64(totals, "lookup_messages", &st->lookup_msgs) || !get_u64(rates, "upload", &st->rate_up) ||
	    !get_u64(rates, "download", &st->rate_down))
		return false;
	st->port = (uint16_t)port;
	st->discovery = discovery_of(disc);
	st->shares = shares_total;
	if (dir) {
		if (!(r->directory = arena_text(a, dir, "address")) || !get_bool(dir, "connected", &st->discovery_ready) ||
		    !get_u64(dir, "refused_shares", &refused) || refused > UINT32_MAX)
			return false;
		st->directory_refused = (uint32_t)refused;
	}
	if (flood) {
		struct pn_flood_info *f = &r->flood;
		r->flood_on = true;
		if (!get_u64(flood, "neighbors", &neighbors) || !get_u64(flood, "queries_started", &f->queries_started) ||
		    !get_u64(flood, "queries_sent", &f->queries_sent) ||
		    !get_u64(flood, "queries_received", &f->queries_received) ||
		    !get_u64(flood, "duplicates_dropped", &f->duplicates_dropped) ||
		    !get_u64(flood, "rate_limited", &f->rate_limited) || !get_u64(flood, "hits_sent", &f->hits_sent) ||
		    !get_u64(flood, "hits_received", &f->hits_received))
			return false;
		st->neighbors = (size_t)neighbors;
	}
	size_t np = json_array_size(jpeers), ns = json_array_size(jshares), nt = json_array_size(jtransfers);
	*peers = calloc(np ? np : 1, sizeof **peers);
	*shares = calloc(ns ? ns : 1, sizeof **shares);
	*transfers = calloc(nt ? nt : 1, sizeof **transfers);
	if (!*peers || !*shares || !*transfers || ns > shares_total)
		return false;
	for (size_t i = 0; i < np; i++)
		if (!parse_peer(json_array_get(jpeers, i), a, &(*peers)[i]))
			return false;
	for (size_t i = 0; i < ns; i++) {
		const json_t *o = json_array_get(jshares, i);
		struct pn_share_info *f = &(*shares)[i];
		if (!get_cid(o, "id", &f->cid) || !(f->name = arena_text(a, o, "name")))
			return false;
	}
	for (size_t i = 0; i < nt; i++)
		if (!parse_transfer(json_array_get(jtransfers, i), a, &(*transfers)[i]))
			return false;
	r->peers = *peers;
	r->npeers = st->peers = np;
	r->shares = *shares;
	r->nshares = ns;
	r->transfers = *transfers;
	r->ntransfers = st->downloads = nt;
	return true;
}

static void on_status(pn_ctl *c, const json_t *rep, size_t line_len)
{
	struct pn_node_report r = {0};
	struct pn_peer_info *peers = NULL;
	struct pn_share_info *shares = NULL;
	struct pn_progress *transfers = NULL;
	struct arena a = {.base = malloc(line_len + 1), .cap = line_len + 1};
	const json_t *s = json_object_get(rep, "status");
	bool ok = a.base && json_is_object(s) && parse_report(s, &a, &r, &peers, &shares, &transfers);
	if (!a.base)
		finish(c, PN_ENOMEM, "out of memory");
	else if (!ok)
		unexpected(c);
	else if (c->ev.status)
		c->ev.status(c->ev.ud, c, &r);
	free(peers);
	free(shares);
	free(transfers);
	free(a.base);
}

static void on_end(pn_ctl *c, const char *type, const json_t *rep)
{
	if (!strcmp(type, "ok")) {
		if (c->kind == CTL_GET && !c->got)
			finish(c, PN_EPROTO, "the node ended the download without saying where the file is");
		else
			finish(c, PN_OK, "%s", "");
		return;
	}
	char msg[CTL_TEXT_MAX];
	int r = pn__json_get_text(rep, "error", msg, sizeof msg);
	if (r == PN_OK)
		finish(c, PN_EREMOTE, "%s", msg);
	else if (r == PN_ETOOBIG)
		finish(c, PN_EREMOTE, "the node refused the request (its message is too long to show)");
	else
		unexpected(c);
}

/* One reply line (len bytes, no newline). */
static void take_reply(pn_ctl *c, const char *line, size_t len)
{
	json_error_t jerr;
	json_t *rep = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	const char *type = json_string_value(json_object_get(rep, "reply"));
	if (!type)
		unexpected(c);
	else if (!strcmp(type, "ok") || !strcmp(type, "err"))
		on_end(c, type, rep);
	else if (c->kind == CTL_ADD && !strcmp(type, "file"))
		on_file(c, rep);
	else if (c->kind == CTL_SEARCH && !strcmp(type, "result"))
		on_result(c, rep);
	else if (c->kind == CTL_GET && !strcmp(type, "progress"))
		on_progress(c, rep);
	else if (c->kind == CTL_GET && !strcmp(type, "stream"))
		on_stream(c, rep);
	else if (c->kind == CTL_GET && !strcmp(type, "got"))
		on_got(c, rep);
	else if (c->kind == CTL_STATUS && !strcmp(type, "status"))
		on_status(c, rep, len);
	else
		unexpected(c);
	json_decref(rep);
}

/* ---------------------------------------------------------------- the connection */

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	pn_ctl *c = h->data;
	if (!c->buf)
		c->buf = malloc(PN_CONTROL_REPLY_MAX);
	if (!c->buf) {
		*buf = uv_buf_init(NULL, 0); /* the read fails with UV_ENOBUFS */
		return;
	}
	*buf = uv_buf_init(c->buf + c->len, (unsigned)(PN_CONTROL_REPLY_MAX - c->len));
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	pn_ctl *c = s->data;
	if (c->ended)
		return;
	if (n < 0) {
		if (n == UV_ENOBUFS)
			finish(c, PN_ENOMEM, "out of memory");
		else
			finish(c, PN_ECLOSED, "the node closed the control connection without answering (did it stop?)");
		return;
	}
	size_t seen = c->len;
	c->len += (size_t)n;
	char *nl;
	while (!c->ended && (nl = memchr(c->buf + seen, '\n', c->len - seen))) {
		size_t line = (size_t)(nl - c->buf);
		take_reply(c, c->buf, line);
		memmove(c->buf, nl + 1, c->len - line - 1);
		c->len -= line + 1;
		seen = 0;
	}
	if (!c->ended && c->len == PN_CONTROL_REPLY_MAX)
		finish(c, PN_EPROTO, "a reply of the node is longer than %d bytes", PN_CONTROL_REPLY_MAX);
}

static void write_cb(uv_write_t *w, int status)
{
	/* a node that refuses at once may close before reading: its answer still comes */
}

static void connect_cb(uv_connect_t *req, int status)
{
	pn_ctl *c = req->data;
	if (c->ended)
		return;
	if (status < 0) {
		finish(c, status == UV_ENOMEM ? PN_ENOMEM : PN_ECONNREFUSED, "no node is running at %s (%s)", c->path,
		       strerror(-status));
		return;
	}
	uv_buf_t b = uv_buf_init(c->req, (unsigned)c->req_len);
	c->write.data = c;
	int r = uv_write(&c->write, (uv_stream_t *)&c->pipe, &b, 1, write_cb);
	if (r == 0)
		r = uv_read_start((uv_stream_t *)&c->pipe, alloc_cb, read_cb);
	if (r != 0)
		finish(c, PN_EIO, "cannot talk to the node's control socket %s: %s", c->path, uv_strerror(r));
}

/* Sends req (released) as one request to the socket at control. */
static int start(uv_loop_t *loop, const char *control, const struct pn_ctl_events *ev, enum ctl_kind kind,
		 json_t *req, pn_ctl **out)
{
	if (out)
		*out = NULL;
	char *text = pn__json_dump(req);
	if (!text)
		return PN_ENOMEM;
	size_t len = strlen(text);
	if (len >= PN_CONTROL_REQUEST_MAX) {
		free(text);
		return PN_ETOOBIG;
	}
	pn_ctl *c = calloc(1, sizeof *c);
	char *line = realloc(text, len + 2);
	if (!c || !line) {
		free(c);
		free(line ? line : text);
		return PN_ENOMEM;
	}
	line[len] = '\n';
	line[len + 1] = '\0';
	c->loop = loop;
	c->ev = ev ? *ev : (struct pn_ctl_events){0};
	c->kind = kind;
	c->req = line;
	c->req_len = len + 1;
	if (uv_pipe_init(loop, &c->pipe, 0) != 0) {
		free(c->req);
		free(c);
		return PN_ENOMEM;
	}
	c->pipe.data = c->connect.data = c;
	if (out)
		*out = c;
	if (snprintf(c->path, sizeof c->path, "%s", control) >= (int)sizeof c->path || !control[0]) {
		finish(c, PN_EINVAL, "control socket path too long: %s", control);
		return PN_OK;
	}
	uv_pipe_connect(&c->connect, &c->pipe, c->path, connect_cb);
	return PN_OK;
}

/* A path of a request: a string when it is UTF-8, else {"path","path_hex"}
 * (node_ctl.c reads both). */
static json_t *path_value(const char *path)
{
	bool exact;
	json_t *v = pn__json_text(path, strlen(path), &exact);
	if (v && !exact) {
		json_decref(v);
		v = pn__json_with_text(json_object(), "path", path);
	}
	return v;
}

int pn_ctl_add(uv_loop_t *loop, const char *control, const struct pn_ctl_events *ev, const char *const *paths,
	       size_t npaths, pn_ctl **out)
{
	if (out)
		*out = NULL;
	if (!loop || !control || !paths || npaths == 0)
		return PN_EINVAL;
	for (size_t i = 0; i < npaths; i++)
		if (!paths[i] || !paths[i][0])
			return PN_EINVAL;
	json_t *list = json_array();
	for (size_t i = 0; list && i < npaths; i++) {
		json_t *p = path_value(paths[i]);
		if (!p || json_array_append_new(list, p) != 0) {
			json_decref(list);
			list = NULL;
		}
	}
	json_t *req = list ? json_pack("{s:s,s:o}", "cmd", "add", "paths", list) : NULL;
	return req ? start(loop, control, ev, CTL_ADD, req, out) : PN_ENOMEM;
}

int pn_ctl_search(uv_loop_t *loop, const char *control, const struct pn_ctl_events *ev, const char *query,
		  pn_ctl **out)
{
	if (out)
		*out = NULL;
	if (!loop || !control || !query || !query[0] || strlen(query) > PN_QUERY_MAX)
		return PN_EINVAL;
	bool exact;
	json_t *q = pn__json_text(query, strlen(query), &exact);
	if (!q)
		return PN_ENOMEM;
	if (!exact) {
		json_decref(q);
		return PN_EINVAL;
	}
	json_t *req = json_pack("{s:s,s:o}", "cmd", "search", "query", q);
	return req ? start(loop, control, ev, CTL_SEARCH, req, out) : PN_ENOMEM;
}

int pn_ctl_get(uv_loop_t *loop, const char *control, const struct pn_ctl_events *ev, const struct pn_cid *cid,
	       const char *path, const char *cwd, unsigned flags, pn_ctl **out)
{
	if (out)
		*out = NULL;
	if (!loop || !control || !cid || !cwd || cwd[0] != '/' || (flags & ~(PN_GET_OVERWRITE | PN_GET_STREAM)))
		return PN_EINVAL;
	char id[PN_CID_STR_LEN + 1];
	pn_cid_format(cid, id);
	const char *want = flags & PN_GET_STREAM ? "-" : path ? path : "";
	json_t *req = json_pack("{s:s,s:s}", "cmd", "get", "id", id);
	req = pn__json_with_text(pn__json_with_text(req, "out", want), "cwd", cwd);
	req = pn__json_merge(req, json_pack("{s:b}", "force", (flags & PN_GET_OVERWRITE) != 0));
	return req ? start(loop, control, ev, CTL_GET, req, out) : PN_ENOMEM;
}

int pn_ctl_status(uv_loop_t *loop, const char *control, const struct pn_ctl_events *ev, pn_ctl **out)
{
	if (out)
		*out = NULL;
	if (!loop || !control)
		return PN_EINVAL;
	json_t *req = json_pack("{s:s}", "cmd", "status");
	return req ? start(loop, control, ev, CTL_STATUS, req, out) : PN_ENOMEM;
}

int pn_ctl_stop(uv_loop_t *loop, const char *control, const struct pn_ctl_events *ev, pn_ctl **out)
{
	if (out)
		*out = NULL;
	if (!loop || !control)
		return PN_EINVAL;
	json_t *req = json_pack("{s:s}", "cmd", "stop");
	return req ? start(loop, control, ev, CTL_STOP, req, out) : PN_ENOMEM;
}

void pn_ctl_cancel(pn_ctl *c)
{
	if (c)
		finish(c, PN_ECANCELED, "cancelled");
}
