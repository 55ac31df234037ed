/* peernet demo: the downloads of a distribution, run in this process on one
 * loop, their progress from the library and never from another process's
 * standard error. From the server: pn_client_get, progress from its events.
 * Through a node: pn_ctl_get on its control socket, progress from its
 * events. And what the demo reads of a node: its report (pn_ctl_status) and
 * a search (pn_ctl_search). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "demo.h"


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

static void node_progress(void *ud, pn_ctl *c, const struct pn_progress *p)
{
	struct demo_get *g = ud;
	g->have = p->have;
	g->total = p->total;
}

static void node_done(void *ud, pn_ctl *c, int err, const char *why)
{
	struct demo_get *g = ud;
	g->ctl = NULL;
	get_end(g, err == PN_OK, why[0] ? why : pn_strerror(err));
}

int demo_get_node(uv_loop_t *loop, struct demo_get *g, const char *control, const char *id, const char *path,
		  const char *cwd)
{
	struct pn_ctl_events ev = {.ud = g, .progress = node_progress, .done = node_done};
	struct pn_cid cid;
	memset(g, 0, sizeof *g);
	g->running = true;
	if (pn_cid_parse(id, &cid) != PN_OK) {
		get_end(g, false, "not a content ID");
		return DEMO_FAIL;
	}
	int r = pn_ctl_get(loop, control, &ev, &cid, path, cwd, 0, &g->ctl);
	if (r != PN_OK) {
		get_end(g, false, pn_strerror(r));
		return DEMO_FAIL;
	}
	return DEMO_OK;
}

void demo_get_cancel(struct demo_get *g)
{
	if (g->transfer)
		pn_transfer_cancel(g->transfer); /* done follows from the loop */
	else if (g->ctl)
		pn_ctl_cancel(g->ctl);       /* likewise */
	else
		get_end(g, false, "cancelled");
}

bool demo_get_busy(const struct demo_get *g)
{
	return g->running || g->transfer || g->ctl;
}

/* ---- a node's report and a search, through its control socket ---- */

/* One request on a loop of its own, bounded by timeout_ms. */
struct ctl_call {
	uv_loop_t loop;
	uv_timer_t timer;
	pn_ctl *ctl;
	int err;
	char why[DEMO_ERR_MAX];
	struct demo_status *status;
	const char *want_id;
	bool found;
};

static void call_timeout(uv_timer_t *t)
{
	struct ctl_call *call = t->data;
	if (call->ctl)
		pn_ctl_cancel(call->ctl);
}

static void call_done(void *ud, pn_ctl *c, int err, const char *why)
{
	struct ctl_call *call = ud;
	call->ctl = NULL;
	call->err = err;
	pn_text_escape(why, strlen(why), call->why, sizeof call->why);
	uv_close((uv_handle_t *)&call->timer, NULL);
}

static void call_status(void *ud, pn_ctl *c, const struct pn_node_report *r)
{
	struct demo_status *st = ((struct ctl_call *)ud)->status;
	st->status = r->status;
	st->flood_on = r->flood_on;
	st->flood = r->flood;
	st->nshares = 0;
	for (size_t i = 0; i < r->nshares && st->nshares < DEMO_STATUS_SHARES; i++) {
		if (strlen(r->shares[i].name) >= sizeof st->shares[0].name)
			continue;
		pn_cid_format(&r->shares[i].cid, st->shares[st->nshares].id);
		strcpy(st->shares[st->nshares].name, r->shares[i].name);
		st->nshares++;
	}
}

static void call_hit(void *ud, pn_ctl *c, const struct pn_search_hit *h)
{
	struct ctl_call *call = ud;
	char id[PN_CID_STR_LEN + 1];
	pn_cid_format(&h->cid, id);
	call->found |= !strcmp(id, call->want_id);
}

/* Runs the request that starting returned r for to its end. */
static int call_run(struct ctl_call *call, int r, int timeout_ms)
{
	if (r == PN_OK) {
		call->timer.data = call;
		uv_timer_start(&call->timer, call_timeout, (uint64_t)timeout_ms, 0);
		uv_run(&call->loop, UV_RUN_DEFAULT);
	} else {
		uv_close((uv_handle_t *)&call->timer, NULL);
		uv_run(&call->loop, UV_RUN_DEFAULT);
		call->err = r;
		snprintf(call->why, sizeof call->why, "%s", pn_strerror(r));
	}
	uv_loop_close(&call->loop);
	return call->err;
}

static int call_init(struct ctl_call *call)
{
	memset(call, 0, sizeof *call);
	if (uv_loop_init(&call->loop) != 0)
		return -1;
	uv_timer_init(&call->loop, &call->timer);
	return 0;
}

int demo_node_status(const char *control, struct demo_status *out, int timeout_ms)
{
	struct ctl_call call;
	memset(out, 0, sizeof *out);
	if (call_init(&call) != 0)
		return DEMO_FAIL;
	call.status = out;
	struct pn_ctl_events ev = {.ud = &call, .status = call_status, .done = call_done};
	return call_run(&call, pn_ctl_status(&call.loop, control, &ev, &call.ctl), timeout_ms) == PN_OK ? DEMO_OK
													: DEMO_FAIL;
}

int demo_search(const char *control, const char *query, const char *want_id, int timeout_ms, bool *found,
		char *err, size_t errsz)
{
	struct ctl_call call;
	*found = false;
	if (call_init(&call) != 0) {
		snprintf(err, errsz, "cannot create an event loop");
		return DEMO_FAIL;
	}
	call.want_id = want_id;
	struct pn_ctl_events ev = {.ud = &call, .hit = call_hit, .done = call_done};
	int r = call_run(&call, pn_ctl_search(&call.loop, control, &ev, query, &call.ctl), timeout_ms);
	snprintf(err, errsz, "%s", call.why);
	*found = call.found;
	return r == PN_OK ? DEMO_OK : r == PN_ECANCELED ? DEMO_TIMEOUT : DEMO_FAIL;
}
