/* peernet demo: the downloads of a distribution, run in this process on one
 * loop, their progress from the library and never from another process's
 * standard error. From the server: pn_client_get, progress from its events.
 * Through a node: the "get" request of its control socket (JSON lines, see
 * src/node/node_ctl.c), progress from the node's "progress" replies. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "demo.h"

#define REPLY_MAX (64 * 1024) /* a get's replies are short; a longer line ends the get */

static void get_end(struct demo_get *g, bool ok, const char *why)
{
	if (!g->running)
		return;
	g->running = false;
	g->ok = ok;
	g->t_end = demo_now();
	if (!ok)
		pn_text_escape(why, strlen(why), g->err, sizeof g->err);
}

/* ---- from the server ---- */

static void client_progress(void *ud, pn_transfer *t, const struct pn_transfer_progress *p)
{
	struct demo_get *g = ud;
	g->have = p->have;
	g->total = p->total;
}

static void client_done(void *ud, pn_transfer *t, int err, const char *why, const struct pn_transfer_result *r)
{
	struct demo_get *g = ud;
	g->transfer = NULL;
	get_end(g, err == PN_OK, why[0] ? why : pn_strerror(err));
}

int demo_get_server(uv_loop_t *loop, struct demo_get *g, const char *server, const char *id, const char *path,
		    uint32_t timeout_ms)
{
	struct pn_client_config cfg = {.server = server, .timeout_ms = timeout_ms, .log_level = PN_LOG_ERROR};
	struct pn_client_events ev = {.ud = g, .progress = client_progress, .done = client_done};
	struct pn_cid cid;
	memset(g, 0, sizeof *g);
	g->running = true;
	if (pn_cid_parse(id, &cid) != PN_OK) {
		get_end(g, false, "not a content ID");
		return DEMO_FAIL;
	}
	int r = pn_client_get(loop, &cfg, &ev, &cid, path, 0, &g->transfer);
	if (r != PN_OK) {
		get_end(g, false, pn_strerror(r));
		return DEMO_FAIL;
	}
	return DEMO_OK;
}

/* ---- through a node ---- */

static void pipe_closed(uv_handle_t *h)
{
	struct demo_get *g = h->data;
	free(g->line);
	free(g->req); /* never written: the connection failed */
	g->line = g->req = NULL;
	g->pipe_open = false;
}

static void pipe_close(struct demo_get *g)
{
	if (g->pipe_open && !uv_is_closing((uv_handle_t *)&g->pipe))
		uv_close((uv_handle_t *)&g->pipe, pipe_closed);
}

/* One reply line of the node (untrusted: any bytes). */
static void take_reply(struct demo_get *g, const char *line, size_t len)
{
	json_error_t jerr;
	json_t *rep = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	const char *type = json_string_value(json_object_get(rep, "reply"));
	char msg[DEMO_ERR_MAX];
	if (!type) {
		get_end(g, false, "unexpected answer from the node");
	} else if (!strcmp(type, "progress")) {
		json_int_t have = json_integer_value(json_object_get(rep, "have"));
		json_int_t total = json_integer_value(json_object_get(rep, "total"));
		g->have = have > 0 ? (uint64_t)have : 0;
		g->total = total > 0 ? (uint64_t)total : 0;
	} else if (!strcmp(type, "got")) {
		g->got = true;
	} else if (!strcmp(type, "ok")) {
		get_end(g, g->got, "the node ended without saying where the file is");
	} else if (!strcmp(type, "err")) {
		int r = pn_json_get_text(rep, "error", msg, sizeof msg);
		get_end(g, false, r == PN_EINVAL ? "unexpected answer from the node" : msg);
	} else {
		get_end(g, false, "unexpected answer from the node");
	}
	json_decref(rep);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct demo_get *g = h->data;
	buf->base = g->line + g->line_len;
	buf->len = REPLY_MAX - g->line_len;
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct demo_get *g = s->data;
	if (n < 0) {
		get_end(g, false, "the node closed the control connection without answering (did it stop?)");
		pipe_close(g);
		return;
	}
	g->line_len += (size_t)n;
	char *nl;
	while (g->running && (nl = memchr(g->line, '\n', g->line_len))) {
		size_t len = (size_t)(nl - g->line);
		take_reply(g, g->line, len);
		memmove(g->line, nl + 1, g->line_len - len - 1);
		g->line_len -= len + 1;
	}
	if (g->running && g->line_len == REPLY_MAX)
		get_end(g, false, "a reply of the node is longer than the demo reads");
	if (!g->running)
		pipe_close(g);
}

static void write_cb(uv_write_t *w, int status)
{
	struct demo_get *g = w->data;
	free(g->req);
	g->req = NULL;
	/* a node that refuses at once may close before reading: its answer still comes */
}

static void connect_cb(uv_connect_t *c, int status)
{
	struct demo_get *g = c->data;
	if (status < 0) {
		char why[DEMO_ERR_MAX];
		snprintf(why, sizeof why, "no node at its control socket (%s)", uv_strerror(status));
		get_end(g, false, why);
		pipe_close(g);
		return;
	}
	if (!g->running) { /* cancelled meanwhile */
		pipe_close(g);
		return;
	}
	uv_buf_t b = uv_buf_init(g->req, (unsigned)strlen(g->req));
	g->write.data = g;
	if (uv_write(&g->write, (uv_stream_t *)&g->pipe, &b, 1, write_cb) != 0 ||
	    uv_read_start((uv_stream_t *)&g->pipe, alloc_cb, read_cb) != 0) {
		get_end(g, false, "cannot talk to the node's control socket");
		pipe_close(g);
	}
}

/* {"cmd":"get","id":ID,"out":PATH,"cwd":CWD,"force":false} and a newline,
 * malloc'd; NULL when out of memory. */
static char *get_request(const char *id, const char *path, const char *cwd)
{
	json_t *req = json_pack("{s:s,s:s}", "cmd", "get", "id", id);
	if (req && (pn_json_set_text(req, "out", path) != PN_OK || pn_json_set_text(req, "cwd", cwd) != PN_OK ||
		    json_object_set_new(req, "force", json_false()) != 0)) {
		json_decref(req);
		req = NULL;
	}
	char *text = req ? json_dumps(req, PN_JSON_FLAGS) : NULL;
	json_decref(req);
	char *line = text ? malloc(strlen(text) + 2) : NULL;
	if (line)
		sprintf(line, "%s\n", text);
	free(text);
	return line;
}

int demo_get_node(uv_loop_t *loop, struct demo_get *g, const char *control, const char *id, const char *path,
		  const char *cwd)
{
	memset(g, 0, sizeof *g);
	g->running = true;
	g->req = get_request(id, path, cwd);
	g->line = malloc(REPLY_MAX);
	if (!g->req || !g->line || strlen(g->req) > PN_CONTROL_REQUEST_MAX) {
		get_end(g, false, g->req && g->line ? "the request is too long" : "out of memory");
		goto fail;
	}
	if (uv_pipe_init(loop, &g->pipe, 0) != 0) {
		get_end(g, false, "cannot open a control connection");
		goto fail;
	}
	g->pipe_open = true;
	g->pipe.data = g->connect.data = g;
	uv_pipe_connect(&g->connect, &g->pipe, control, connect_cb);
	return DEMO_OK;
fail:
	free(g->req);
	free(g->line);
	g->req = g->line = NULL;
	return DEMO_FAIL;
}

void demo_get_cancel(struct demo_get *g)
{
	if (g->transfer) {
		pn_transfer_cancel(g->transfer); /* done follows from the loop */
		return;
	}
	get_end(g, false, "cancelled");
	pipe_close(g);
}

bool demo_get_busy(const struct demo_get *g)
{
	return g->running || g->transfer || g->pipe_open;
}
