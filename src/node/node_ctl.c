/* The node's control socket: a Unix socket in the data directory (mode 0600)
 * on which `peernet add/search/get/status/stop` talk to a running node.
 *
 * Protocol (local): JSON lines, written and read with jansson. The client
 * sends one request, a JSON object on one line of at most CTL_REQUEST_MAX
 * bytes ending in "\n"; the node answers with JSON objects, one per line,
 * each with a "reply" field, and ends with {"reply":"ok"} or
 * {"reply":"err","error":MESSAGE}, then closes. One request per connection.
 *
 *   {"cmd":"add","paths":[PATH...]}
 *       -> {"reply":"file","id":ID,"name":NAME,"size":N}            per file
 *   {"cmd":"search","query":WORDS}
 *       -> {"reply":"result","id":ID,"name":NAME,"size":N,"providers":N}  per match
 *   {"cmd":"get","id":ID,"out":PATH,"cwd":PATH,"force":BOOL}
 *       ("out" "" or absent: CWD/name of the content; "-": the client reads the file)
 *       -> {"reply":"progress","have":N,"total":N,"peers":N,"name":NAME}  repeated
 *          {"reply":"stream","path":PATH,"upto":N}  ("-" only, repeated: the first
 *           N bytes are verified and readable at PATH, the partial download,
 *           whose data stays the same file when it moves into the store)
 *          {"reply":"got","id":ID,"name":NAME,"path":PATH,"size":N,
 *           "bytes_downloaded":N,"bytes_resumed":N,"seconds":X,"peers":N}
 *   {"cmd":"status"}
 *       -> {"reply":"status","status":{...}}     (ctl_status_json)
 *   {"cmd":"stop"}
 *
 * Paths and names follow util/json.h: a text field "x" whose bytes are not
 * valid UTF-8 carries them exactly in "x_hex" (x itself then has U+FFFD for
 * each bad byte), in requests and replies alike; an element of "paths" is a
 * string, or for such a path an object {"path":...,"path_hex":...}.
 * A request that is not one JSON object with a known "cmd" and fields of the
 * right types gets one "err" reply naming what is wrong, and the connection
 * closes; so does a line longer than CTL_REQUEST_MAX. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include "node/node_ctl.h"
#include "crypto/crypto.h"
#include "store/store.h"
#include "util/json.h"

#define CTL_MAX_CLIENTS 64          /* control connections at once; one more is told so and closed */
#define CTL_REQUEST_TIMEOUT_MS 10000 /* a connection that has not sent its request line by then is closed */
#define CTL_SWEEP_MS 1000            /* how often that is looked at, while such a connection exists */
#define CTL_PATH_MAX 4096
#define CTL_WRITE_QUEUE_MAX (2 * CTL_REPLY_LINE_MAX) /* a client that lets more pile up is dropped */
#define CTL_ERR_MAX 1024

struct ctl_client {
	struct ctl_server *cs;
	uv_pipe_t pipe;
	struct ctl_client *next;
	char *buf;           /* CTL_REQUEST_MAX bytes, until the request has come */
	size_t len;
	uint64_t accepted_ms;
	bool requested;      /* its request line came (a get may then run for long) */
	bool handled, closing;
};

struct ctl_server {
	uv_loop_t *loop;
	struct store *store;
	struct ctl_ops ops;
	char path[CTL_PATH_MAX];
	uv_pipe_t pipe;
	uv_timer_t sweep;    /* runs only while a connection waits for its request line */
	bool listening, closing, bound, sweeping;
	struct ctl_client *clients;
	unsigned open;       /* handles not closed yet: the listener, the sweep, each client */
	void (*closed_cb)(void *ud);
	void *closed_ud;
};

static void ctl_maybe_closed(struct ctl_server *cs)
{
	if (cs->closing && cs->open == 0 && cs->closed_cb) {
		void (*cb)(void *) = cs->closed_cb;
		cs->closed_cb = NULL;
		cb(cs->closed_ud);
	}
}

static void server_handle_closed_cb(uv_handle_t *h)
{
	struct ctl_server *cs = h->data;
	cs->open--;
	ctl_maybe_closed(cs);
}

static void ctl_closed_cb(uv_handle_t *h)
{
	struct ctl_client *cc = h->data;
	struct ctl_server *cs = cc->cs;
	struct ctl_client **pp = &cs->clients;
	while (*pp && *pp != cc)
		pp = &(*pp)->next;
	if (*pp)
		*pp = cc->next;
	if (cs->ops.client_gone_cb)
		cs->ops.client_gone_cb(cs->ops.ud, cc);
	free(cc->buf);
	free(cc);
	cs->open--;
	ctl_maybe_closed(cs);
}

static void ctl_close(struct ctl_client *cc)
{
	if (cc->closing)
		return;
	cc->closing = true;
	uv_close((uv_handle_t *)&cc->pipe, ctl_closed_cb);
}

struct ctl_write {
	uv_write_t req;
	char data[];
};

static void ctl_write_cb(uv_write_t *req, int status)
{
	free(req->data);
}

/* Sends v (released) as one line. Memory running out, or a client that
 * stopped reading, closes the connection: the client then sees no "ok". */
static void ctl_send(struct ctl_client *cc, json_t *v)
{
	char *text = v && !cc->closing ? json_dumps(v, PN__JSON_FLAGS) : NULL;
	json_decref(v);
	if (cc->closing)
		return;
	size_t len = text ? strlen(text) : 0;
	struct ctl_write *w = text && len < CTL_REPLY_LINE_MAX ? malloc(sizeof *w + len + 1) : NULL;
	if (!w || uv_stream_get_write_queue_size((uv_stream_t *)&cc->pipe) > CTL_WRITE_QUEUE_MAX) {
		free(text);
		free(w);
		ctl_close(cc);
		return;
	}
	memcpy(w->data, text, len);
	w->data[len] = '\n';
	free(text);
	w->req.data = w;
	uv_buf_t b = uv_buf_init(w->data, (unsigned)(len + 1));
	if (uv_write(&w->req, (uv_stream_t *)&cc->pipe, &b, 1, ctl_write_cb) != 0)
		free(w);
}

static void shutdown_cb(uv_shutdown_t *req, int status)
{
	struct ctl_client *cc = req->data;
	free(req);
	ctl_close(cc);
}

/* Ends the answer: "ok" when err_fmt is NULL, else "err" with the message; then closes. */
void ctl_finish(struct ctl_client *cc, const char *err_fmt, ...)
{
	if (cc->closing || cc->handled)
		return;
	cc->handled = true;
	if (err_fmt) {
		char msg[CTL_ERR_MAX];
		va_list ap;
		va_start(ap, err_fmt);
		vsnprintf(msg, sizeof msg, err_fmt, ap);
		va_end(ap);
		ctl_send(cc, pn__json_with_text(json_pack("{s:s}", "reply", "err"), "error", msg));
	} else {
		ctl_send(cc, json_pack("{s:s}", "reply", "ok"));
	}
	if (cc->closing)
		return;
	uv_shutdown_t *req = malloc(sizeof *req);
	if (req) {
		req->data = cc;
		if (uv_shutdown(req, (uv_stream_t *)&cc->pipe, shutdown_cb) == 0)
			return;
		free(req);
	}
	ctl_close(cc);
}

void ctl_result(struct ctl_client *cc, const struct pn_cid *cid, uint32_t providers, const char *name,
		size_t name_len)
{
	char id[PN_CID_STR_LEN + 1];
	pn_cid_format(cid, id);
	ctl_send(cc, json_pack("{s:s,s:s,s:o,s:I,s:I}", "reply", "result", "id", id, "name",
			       pn__json_text(name, name_len, NULL), "size", (json_int_t)cid->size, "providers",
			       (json_int_t)providers));
}

void ctl_progress(struct ctl_client *cc, uint64_t have, uint64_t total, uint32_t peers, const char *name)
{
	json_t *o = json_pack("{s:s,s:I,s:I,s:I}", "reply", "progress", "have", (json_int_t)have, "total",
			      (json_int_t)total, "peers", (json_int_t)peers);
	ctl_send(cc, pn__json_with_text(o, "name", name));
}

void ctl_stream(struct ctl_client *cc, const char *path, uint64_t upto)
{
	json_t *o = json_pack("{s:s,s:I}", "reply", "stream", "upto", (json_int_t)upto);
	ctl_send(cc, pn__json_with_text(o, "path", path));
}

void ctl_got(struct ctl_client *cc, const struct pn_cid *cid, const char *name, const char *path, uint64_t down,
	     uint64_t resumed, double secs, unsigned peers)
{
	char id[PN_CID_STR_LEN + 1];
	pn_cid_format(cid, id);
	json_t *o = pn__json_with_text(pn__json_with_text(json_pack("{s:s,s:s}", "reply", "got", "id", id), "name", name), "path", path);
	ctl_send(cc, pn__json_merge(o, json_pack("{s:I,s:I,s:I,s:f,s:I}", "size", (json_int_t)cid->size, "bytes_downloaded",
					(json_int_t)down, "bytes_resumed", (json_int_t)resumed, "seconds",
					round(secs * 1000) / 1000, "peers", (json_int_t)peers)));
}

static void do_status(struct ctl_server *cs, struct ctl_client *cc)
{
	json_t *doc = ctl_status_document(cs->ops.status_cb, cs->ops.ud, cs->store);
	char *text = doc ? json_dumps(doc, PN__JSON_FLAGS) : NULL;
	size_t len = text ? strlen(text) : 0;
	free(text);
	if (!doc) {
		ctl_finish(cc, "out of memory");
	} else if (len + 64 >= CTL_REPLY_LINE_MAX) {
		json_decref(doc);
		ctl_finish(cc, "status too large (%zu bytes)", len);
	} else {
		ctl_send(cc, json_pack("{s:s,s:o}", "reply", "status", "status", doc));
		ctl_finish(cc, NULL);
	}
}

/* A path of a request: a string, or {"path":...,"path_hex":...} for one
 * that is not UTF-8. PN_OK, PN_EINVAL, PN_ETOOBIG. */
static int path_arg(const json_t *v, char *out, size_t cap)
{
	if (json_is_string(v)) {
		json_t *wrap = json_pack("{s:O}", "path", v);
		int r = wrap ? pn__json_get_text(wrap, "path", out, cap) : PN_ENOMEM;
		json_decref(wrap);
		return r;
	}
	return json_is_object(v) ? pn__json_get_text(v, "path", out, cap) : PN_EINVAL;
}

static void do_add(struct ctl_server *cs, struct ctl_client *cc, const json_t *req)
{
	const json_t *paths = json_object_get(req, "paths");
	if (!json_is_array(paths) || json_array_size(paths) == 0) {
		ctl_finish(cc, "add: \"paths\" must be a list of at least one path");
		return;
	}
	for (size_t i = 0; i < json_array_size(paths); i++) {
		char path[CTL_PATH_MAX];
		int r = path_arg(json_array_get(paths, i), path, sizeof path);
		if (r != PN_OK) {
			ctl_finish(cc, "add: path %zu %s", i + 1, r == PN_ETOOBIG ? "is too long" : "is not a path string");
			return;
		}
		const struct store_object *o = NULL;
		errno = 0;
		r = cs->ops.add_cb(cs->ops.ud, path, &o);
		if (r != PN_OK && r != PN_EEXIST) {
			char shown[PATH_MAX];
			ctl_finish(cc, "cannot share %s: %s", pn_text_escape(path, strlen(path), shown, sizeof shown),
				   r == PN_EIO && errno ? strerror(errno) : r == PN_EINVAL ? "not a regular file, or its name is not valid on the network" : pn_strerror(r));
			return;
		}
		char id[PN_CID_STR_LEN + 1];
		pn_cid_format(&o->cid, id);
		json_t *f = pn__json_with_text(json_pack("{s:s,s:s}", "reply", "file", "id", id), "name", o->name);
		ctl_send(cc, pn__json_merge(f, json_pack("{s:I}", "size", (json_int_t)o->cid.size)));
	}
	ctl_finish(cc, NULL);
}

static void do_search(struct ctl_server *cs, struct ctl_client *cc, const json_t *req)
{
	const char *query = json_string_value(json_object_get(req, "query"));
	if (!query || !*query) {
		ctl_finish(cc, "search: \"query\" must be a string of words");
		return;
	}
	cs->ops.search_cb(cs->ops.ud, cc, query);
}

static void do_get(struct ctl_server *cs, struct ctl_client *cc, const json_t *req)
{
	struct ctl_get_request gr = {0};
	const char *id = json_string_value(json_object_get(req, "id"));
	const json_t *force = json_object_get(req, "force");
	char want[CTL_PATH_MAX] = "", cwd[CTL_PATH_MAX];
	if (!id || pn_cid_parse(id, &gr.cid) != PN_OK) {
		ctl_finish(cc, "get: \"id\" must be a content ID");
		return;
	}
	if (force && !json_is_boolean(force)) {
		ctl_finish(cc, "get: \"force\" must be true or false");
		return;
	}
	if ((json_object_get(req, "out") && pn__json_get_text(req, "out", want, sizeof want) != PN_OK) ||
	    pn__json_get_text(req, "cwd", cwd, sizeof cwd) != PN_OK || cwd[0] != '/') {
		ctl_finish(cc, "get: \"out\" must be a path and \"cwd\" an absolute path, each under %d bytes", CTL_PATH_MAX);
		return;
	}
	gr.to_stdout = !strcmp(want, "-");
	gr.force = json_is_true(force);
	char out[CTL_PATH_MAX];
	out[0] = 0;
	if (!gr.to_stdout && *want) {
		bool abs = want[0] == '/';
		if (snprintf(out, sizeof out, "%s%s%s", abs ? "" : cwd, abs ? "" : "/", want) >= (int)sizeof out) {
			ctl_finish(cc, "get: the output path is longer than %d bytes", CTL_PATH_MAX - 1);
			return;
		}
		if (!gr.force && access(out, F_OK) == 0) {
			char shown[PATH_MAX];
			ctl_finish(cc, "%s already exists; use --force to overwrite it",
				   pn_text_escape(out, strlen(out), shown, sizeof shown));
			return;
		}
	}
	/* Without -o the file gets the content's own name in CWD, once that name is known. */
	gr.out_path = out;
	gr.cwd = cwd;
	int r = cs->ops.get_cb(cs->ops.ud, cc, &gr);
	if (r != PN_OK)
		ctl_finish(cc, "cannot start the download: %s", pn_strerror(r));
}

/* One request line (len bytes, no newline). */
static void handle_request(struct ctl_client *cc, const char *line, size_t len)
{
	struct ctl_server *cs = cc->cs;
	json_error_t jerr;
	json_t *req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!req) {
		ctl_finish(cc, "malformed request: %s (at byte %d)", jerr.text, jerr.position);
		return;
	}
	const char *cmd = json_string_value(json_object_get(req, "cmd"));
	if (!json_is_object(req) || !cmd)
		ctl_finish(cc, "malformed request: expected a JSON object with a \"cmd\" string");
	else if (!strcmp(cmd, "add"))
		do_add(cs, cc, req);
	else if (!strcmp(cmd, "search"))
		do_search(cs, cc, req);
	else if (!strcmp(cmd, "get"))
		do_get(cs, cc, req);
	else if (!strcmp(cmd, "status"))
		do_status(cs, cc);
	else if (!strcmp(cmd, "stop")) {
		ctl_finish(cc, NULL);
		cs->ops.stop_cb(cs->ops.ud);
	} else {
		char shown[64];
		ctl_finish(cc, "unknown control command '%s'", pn_text_escape(cmd, strlen(cmd), shown, sizeof shown));
	}
	json_decref(req);
}

/* The request is read into cc->buf (allocated on the first read); once it
 * has been answered, what else comes is read into the same buffer and
 * dropped, until the connection closes. */
static void ctl_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct ctl_client *cc = h->data;
	if (!cc->buf)
		cc->buf = malloc(CTL_REQUEST_MAX);
	if (!cc->buf) {
		*buf = uv_buf_init(NULL, 0); /* the read fails with UV_ENOBUFS */
		return;
	}
	if (cc->handled)
		*buf = uv_buf_init(cc->buf, CTL_REQUEST_MAX);
	else
		*buf = uv_buf_init(cc->buf + cc->len, (unsigned)(CTL_REQUEST_MAX - cc->len));
}

static void ctl_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct ctl_client *cc = s->data;
	if (nread < 0) {
		if (!cc->handled)
			ctl_close(cc);
		else
			uv_read_stop(s);
		return;
	}
	if (cc->handled)
		return; /* one request per connection */
	size_t seen = cc->len;
	cc->len += (size_t)nread;
	char *nl = memchr(cc->buf + seen, '\n', cc->len - seen);
	if (!nl) {
		if (cc->len >= CTL_REQUEST_MAX)
			ctl_finish(cc, "request too long (a request is one line of at most %d bytes)", CTL_REQUEST_MAX - 1);
		return;
	}
	uv_read_stop(s);
	cc->requested = true;
	handle_request(cc, cc->buf, (size_t)(nl - cc->buf));
	free(cc->buf);
	cc->buf = NULL;
}

/* Closes the connections that have not sent their request in time; stops when none waits. */
static void sweep_cb(uv_timer_t *t)
{
	struct ctl_server *cs = t->data;
	uint64_t now = uv_now(cs->loop);
	bool waiting = false;
	for (struct ctl_client *cc = cs->clients; cc; cc = cc->next) {
		if (cc->requested || cc->handled || cc->closing)
			continue;
		if (now - cc->accepted_ms >= CTL_REQUEST_TIMEOUT_MS)
			ctl_finish(cc, "no request within %d s", CTL_REQUEST_TIMEOUT_MS / 1000);
		else
			waiting = true;
	}
	if (!waiting) {
		uv_timer_stop(&cs->sweep);
		cs->sweeping = false;
	}
}

static void ctl_connection_cb(uv_stream_t *server, int status)
{
	struct ctl_server *cs = server->data;
	if (status < 0 || cs->closing)
		return;
	struct ctl_client *cc = calloc(1, sizeof *cc);
	if (!cc)
		return;
	cc->cs = cs;
	uv_pipe_init(cs->loop, &cc->pipe, 0);
	cs->open++;
	cc->pipe.data = cc;
	cc->next = cs->clients;
	cs->clients = cc;
	int count = 0;
	for (struct ctl_client *x = cs->clients; x; x = x->next)
		count++;
	if (uv_accept(server, (uv_stream_t *)&cc->pipe) != 0) {
		ctl_close(cc);
		return;
	}
	if (count > CTL_MAX_CLIENTS) {
		ctl_finish(cc, "the node serves %d control connections already; try again later", CTL_MAX_CLIENTS);
		return;
	}
	cc->accepted_ms = uv_now(cs->loop);
	if (!cs->sweeping && uv_timer_start(&cs->sweep, sweep_cb, CTL_SWEEP_MS, CTL_SWEEP_MS) == 0)
		cs->sweeping = true;
	uv_read_start((uv_stream_t *)&cc->pipe, ctl_alloc_cb, ctl_read_cb);
}

/* The listener could not be set up: the server goes with its handle. */
static void failed_close_cb(uv_handle_t *h)
{
	free(h->data);
}

/* Binds and listens on cs->path. A socket file left by a node that died is
 * removed; a live node keeps it. */
static int ctl_listen(struct ctl_server *cs, char *err, size_t errlen)
{
	struct stat st;
	if (lstat(cs->path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "%s exists and is not a socket; remove it or use --control", cs->path);
			return PN_EEXIST;
		}
		/* Probe: a connect that succeeds means another node is running. */
		struct sockaddr_un sun = {.sun_family = AF_UNIX};
		if (snprintf(sun.sun_path, sizeof sun.sun_path, "%s", cs->path) >= (int)sizeof sun.sun_path) {
			snprintf(err, errlen, "control socket path too long: %s", cs->path);
			return PN_EINVAL;
		}
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		bool live = probe >= 0 && connect(probe, (struct sockaddr *)&sun, sizeof sun) == 0;
		if (probe >= 0)
			close(probe);
		if (live) {
			snprintf(err, errlen, "another node is running with %s; stop it first (peernet stop)", cs->path);
			return PN_EEXIST;
		}
		unlink(cs->path);
	}
	uv_pipe_init(cs->loop, &cs->pipe, 0);
	cs->pipe.data = cs;
	mode_t old = umask(0077);
	int r = uv_pipe_bind(&cs->pipe, cs->path);
	umask(old);
	if (r == 0) {
		cs->bound = true;
		r = uv_listen((uv_stream_t *)&cs->pipe, 16, ctl_connection_cb);
	}
	if (r != 0) {
		snprintf(err, errlen, "cannot create the control socket %s: %s", cs->path, uv_strerror(r));
		if (cs->bound)
			unlink(cs->path);
		uv_close((uv_handle_t *)&cs->pipe, failed_close_cb);
		return PN_EIO;
	}
	chmod(cs->path, 0600);
	cs->listening = true;
	cs->open += 2; /* the listener and the sweep */
	uv_timer_init(cs->loop, &cs->sweep);
	cs->sweep.data = cs;
	return PN_OK;
}

int ctl_server_new(const struct ctl_server_opts *opts, struct ctl_server **out, char *err, size_t errlen)
{
	*out = NULL;
	struct ctl_server *cs = calloc(1, sizeof *cs);
	if (!cs) {
		snprintf(err, errlen, "out of memory");
		return PN_ENOMEM;
	}
	cs->loop = opts->loop;
	cs->store = opts->store;
	cs->ops = opts->ops;
	if (snprintf(cs->path, sizeof cs->path, "%s", opts->path) >= (int)sizeof cs->path) {
		snprintf(err, errlen, "control socket path too long: %s", opts->path);
		free(cs);
		return PN_EINVAL;
	}
	int r = ctl_listen(cs, err, errlen);
	if (r != PN_OK) {
		if (r != PN_EIO)
			free(cs); /* else freed when its handle has closed, from the loop */
		return r;
	}
	*out = cs;
	return PN_OK;
}

void ctl_server_close(struct ctl_server *cs, void (*closed)(void *ud), void *ud)
{
	if (!cs)
		return;
	cs->closed_cb = closed;
	cs->closed_ud = ud;
	cs->closing = true;
	for (struct ctl_client *cc = cs->clients; cc; cc = cc->next)
		if (!cc->handled)
			ctl_finish(cc, "the node is stopping");
	if (cs->listening) {
		uv_close((uv_handle_t *)&cs->pipe, server_handle_closed_cb);
		uv_close((uv_handle_t *)&cs->sweep, server_handle_closed_cb);
		cs->listening = false;
		cs->sweeping = false;
	}
	ctl_maybe_closed(cs); /* nothing was open */
}

void ctl_server_free(struct ctl_server *cs)
{
	if (!cs)
		return;
	if (cs->bound)
		unlink(cs->path);
	free(cs);
}
