/* The control client (pn_ctl_*) and the output functions (pn_*_json,
 * pn_node_report_text), used the way a program uses them: <peernet.h> and
 * <uv.h>. A fake node on a Unix socket of the same loop reads the request
 * and answers with canned lines, so every reply, good or bad, is exercised.
 * jansson only checks here that what is written is valid JSON. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <jansson.h>
#include <peernet.h>
#include <uv.h>

#define SAFETY_MS 20000
#define CID_A "pn1" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

/* ---------------------------------------------------------------- a fake node */

struct fake {
	uv_pipe_t server, conn;
	bool conn_open;
	uv_write_t write;
	char req[PN_CONTROL_REQUEST_MAX + 1];
	size_t req_len;
	bool requested;
	const char *reply;           /* written after the request line; NULL: never answers */
};

/* What the client's events saw. */
struct seen {
	uv_loop_t loop;
	uv_timer_t safety;
	struct fake fake;
	char sock[108];
	pn_ctl *ctl;
	bool in_call;                /* a pn_ctl_* call is running */
	bool done_inside_call;
	int done_calls, err;
	char why[8192];
	int shared, hits, progress, streams, got, statuses;
	char name[1024], path[1024];
	struct pn_cid cid;
	uint64_t have, total, upto;
	uint32_t providers;
	char *report_json, *report_text;
	bool cancel_on_progress;
};

static void conn_closed(uv_handle_t *h)
{
	struct fake *f = h->data;
	f->conn_open = false;
}

static void write_cb(uv_write_t *w, int status)
{
	struct fake *f = w->data;
	if (f->conn_open && !uv_is_closing((uv_handle_t *)&f->conn))
		uv_close((uv_handle_t *)&f->conn, conn_closed);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct fake *f = h->data;
	*buf = uv_buf_init(f->req + f->req_len, (unsigned)(sizeof f->req - 1 - f->req_len));
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct fake *f = s->data;
	if (n < 0) {
		if (!uv_is_closing((uv_handle_t *)&f->conn))
			uv_close((uv_handle_t *)&f->conn, conn_closed);
		return;
	}
	f->req_len += (size_t)n;
	f->req[f->req_len] = 0;
	if (f->requested || !strchr(f->req, '\n'))
		return;
	f->requested = true;
	if (!f->reply)
		return;
	uv_buf_t b = uv_buf_init((char *)f->reply, (unsigned)strlen(f->reply));
	f->write.data = f;
	cr_assert_eq(uv_write(&f->write, (uv_stream_t *)&f->conn, &b, 1, write_cb), 0);
}

static void connection_cb(uv_stream_t *server, int status)
{
	struct fake *f = server->data;
	cr_assert_eq(status, 0);
	cr_assert(!f->conn_open, "one connection per request");
	uv_pipe_init(server->loop, &f->conn, 0);
	f->conn.data = f;
	f->conn_open = true;
	cr_assert_eq(uv_accept(server, (uv_stream_t *)&f->conn), 0);
	uv_read_start((uv_stream_t *)&f->conn, alloc_cb, read_cb);
}

static void safety_cb(uv_timer_t *t)
{
	cr_assert_fail("the request did not end within %d ms", SAFETY_MS);
}

/* A loop with a fake node answering reply (NULL: no fake node listening). */
static void setup(struct seen *s, const char *reply, bool listen)
{
	memset(s, 0, sizeof *s);
	cr_assert_eq(uv_loop_init(&s->loop), 0);
	uv_timer_init(&s->loop, &s->safety);
	uv_timer_start(&s->safety, safety_cb, SAFETY_MS, 0);
	uv_unref((uv_handle_t *)&s->safety);
	snprintf(s->sock, sizeof s->sock, "/tmp/pn-ctl-test-%d.sock", (int)getpid());
	unlink(s->sock);
	s->fake.reply = reply;
	if (listen) {
		uv_pipe_init(&s->loop, &s->fake.server, 0);
		s->fake.server.data = &s->fake;
		cr_assert_eq(uv_pipe_bind(&s->fake.server, s->sock), 0);
		cr_assert_eq(uv_listen((uv_stream_t *)&s->fake.server, 4, connection_cb), 0);
	}
}

/* Runs the request that starting returned r for to its end, and closes everything. */
static void run(struct seen *s, int r)
{
	s->in_call = false;
	cr_assert_eq(r, PN_OK, "%s", pn_strerror(r));
	cr_assert_eq(s->done_calls, 0, "done never runs from inside the call");
	/* the fake node stops listening once the request is done */
	while (s->done_calls == 0)
		uv_run(&s->loop, UV_RUN_ONCE);
	if (uv_is_active((uv_handle_t *)&s->fake.server) || s->fake.server.loop)
		uv_close((uv_handle_t *)&s->fake.server, NULL);
	if (s->fake.conn_open && !uv_is_closing((uv_handle_t *)&s->fake.conn))
		uv_close((uv_handle_t *)&s->fake.conn, conn_closed);
	uv_close((uv_handle_t *)&s->safety, NULL);
	uv_run(&s->loop, UV_RUN_DEFAULT);
	cr_assert_eq(uv_loop_close(&s->loop), 0, "nothing left open on the loop");
	unlink(s->sock);
	cr_assert_eq(s->done_calls, 1);
	cr_assert(!s->done_inside_call);
}

static void ev_done(void *ud, pn_ctl *c, int err, const char *why)
{
	struct seen *s = ud;
	s->done_calls++;
	s->done_inside_call |= s->in_call;
	s->err = err;
	snprintf(s->why, sizeof s->why, "%s", why);
	cr_assert(err == PN_OK ? why[0] == 0 : why[0] != 0, "why is \"\" exactly on success: '%s'", why);
}

static void ev_shared(void *ud, pn_ctl *c, const struct pn_share_info *f)
{
	struct seen *s = ud;
	s->shared++;
	s->cid = f->cid;
	snprintf(s->name, sizeof s->name, "%s", f->name);
}

static void ev_hit(void *ud, pn_ctl *c, const struct pn_search_hit *h)
{
	struct seen *s = ud;
	s->hits++;
	s->cid = h->cid;
	s->providers = h->providers;
	snprintf(s->name, sizeof s->name, "%.*s", (int)h->name_len, h->name);
}

static void ev_progress(void *ud, pn_ctl *c, const struct pn_progress *p)
{
	struct seen *s = ud;
	s->progress++;
	s->have = p->have;
	s->total = p->total;
	if (s->cancel_on_progress) {
		pn_ctl_cancel(c);
		pn_ctl_cancel(c); /* twice: nothing more */
	}
}

static void ev_stream(void *ud, pn_ctl *c, const char *path, uint64_t upto)
{
	struct seen *s = ud;
	s->streams++;
	s->upto = upto;
	snprintf(s->path, sizeof s->path, "%s", path);
}

static void ev_got(void *ud, pn_ctl *c, const struct pn_download_result *r)
{
	struct seen *s = ud;
	s->got++;
	s->cid = r->cid;
	snprintf(s->name, sizeof s->name, "%s", r->name);
	snprintf(s->path, sizeof s->path, "%s", r->path);
	s->providers = r->providers;
}

static void ev_status(void *ud, pn_ctl *c, const struct pn_node_report *r)
{
	struct seen *s = ud;
	s->statuses++;
	cr_assert_eq(pn_node_report_json(r, &s->report_json), PN_OK);
	cr_assert_eq(pn_node_report_text(r, &s->report_text), PN_OK);
}

static struct pn_ctl_events events(struct seen *s)
{
	return (struct pn_ctl_events){.ud = s, .shared = ev_shared, .hit = ev_hit, .progress = ev_progress,
				      .stream = ev_stream, .got = ev_got, .status = ev_status, .done = ev_done};
}

/* text parses as one JSON value (of the given type). */
static void assert_json(const char *text, json_type type)
{
	json_error_t e;
	json_t *v = json_loads(text, JSON_REJECT_DUPLICATES, &e);
	cr_assert_not_null(v, "not JSON (%s): %s", e.text, text);
	cr_assert_eq(json_typeof(v), type, "%s", text);
	cr_assert_null(strchr(text, '\n'), "one line: %s", text);
	json_decref(v);
}

/* ---------------------------------------------------------------- output */

static const char awkward[] = "q\"uo\\te\n\t\x01 r\xe9sum\xe9 \xff\xfe.txt"; /* quotes, controls, Latin-1, bad bytes */

Test(api_ctl, share_json_of_awkward_names_is_valid_json)
{
	struct pn_share_info f = {.name = awkward};
	char *out;
	cr_assert_eq(pn_cid_parse(CID_A, &f.cid), PN_OK);
	cr_assert_eq(pn_share_json(&f, &out), PN_OK);
	assert_json(out, JSON_OBJECT);
	cr_assert_str_eq(out, "{\"id\":\"" CID_A "\",\"name\":\"q\\\"uo\\\\te\\n\\t\\u0001 r\xef\xbf\xbdsum\xef\xbf\xbd "
			      "\xef\xbf\xbd\xef\xbf\xbd.txt\",\"name_hex\":\"7122756f5c74650a090120"
			      "72e973756de920fffe2e747874\",\"size\":0}");
	free(out);

	f.name = "plain.txt";
	cr_assert_eq(pn_share_json(&f, &out), PN_OK);
	cr_assert_str_eq(out, "{\"id\":\"" CID_A "\",\"name\":\"plain.txt\",\"size\":0}", "no name_hex for UTF-8");
	free(out);
}

Test(api_ctl, every_renderer_writes_valid_json_for_awkward_text)
{
	struct pn_cid cid = {.size = 12345};
	char *out;

	struct pn_put_info put = {.cid = cid, .name = awkward, .path = awkward, .bytes_sent = 7};
	cr_assert_eq(pn_put_json(&put, &out), PN_OK);
	assert_json(out, JSON_OBJECT);
	cr_assert(strstr(out, "\"size\":12345,\"bytes_sent\":7}"), "%s", out);
	free(out);

	/* a hit's name is name_len bytes, NUL included, never past them */
	struct pn_search_hit hit = {.cid = cid, .name = "ab\xffz", .name_len = 3, .providers = 2};
	cr_assert_eq(pn_search_hit_json(&hit, &out), PN_OK);
	assert_json(out, JSON_OBJECT);
	cr_assert(strstr(out, "\"name\":\"ab\xef\xbf\xbd\",\"size\":12345,\"providers\":2}"), "%s", out);
	free(out);

	struct pn_download_result dr = {.cid = cid, .name = awkward, .path = awkward, .bytes_downloaded = 9,
					.seconds = 1.23456, .providers = 3};
	cr_assert_eq(pn_download_json(&cid, &dr, NULL, &out), PN_OK);
	assert_json(out, JSON_OBJECT);
	cr_assert(strstr(out, "\"ok\":true,\"name\":"), "%s", out);
	cr_assert(strstr(out, "\"path_hex\":"), "%s", out);
	cr_assert(strstr(out, "\"seconds\":1.235,\"peers\":3}"), "%s", out);
	free(out);
	cr_assert_eq(pn_download_json(&cid, NULL, awkward, &out), PN_OK);
	assert_json(out, JSON_OBJECT);
	cr_assert(strstr(out, "\"ok\":false,\"error\":") && strstr(out, "\"error_hex\":"), "%s", out);
	free(out);

	struct pn_transfer_result tr = {.cid = cid, .name = "n", .path = "p", .bytes_downloaded = 1048576,
					.bytes_resumed = 5, .seconds = 0.5};
	cr_assert_eq(pn_transfer_json(&cid, PN_OK, "", &tr, &out), PN_OK);
	assert_json(out, JSON_OBJECT);
	cr_assert(strstr(out, "\"bytes_resumed\":5,\"seconds\":0.5,\"mib_per_s\":2.0}"), "%s", out);
	free(out);
	cr_assert_eq(pn_transfer_json(&cid, PN_ETIMEDOUT, awkward, &tr, &out), PN_OK);
	assert_json(out, JSON_OBJECT);
	cr_assert(strstr(out, "\"ok\":false,\"error\":"), "%s", out);
	cr_assert(strstr(out, "\"bytes_downloaded\":1048576,\"bytes_resumed\":5}"), "%s", out);
	free(out);
}

Test(api_ctl, renderers_refuse_null_arguments)
{
	struct pn_cid cid = {0};
	struct pn_share_info f = {.name = "x"};
	struct pn_transfer_result tr = {0};
	char *out = (char *)"untouched";

	cr_assert_eq(pn_share_json(NULL, &out), PN_EINVAL);
	cr_assert_null(out);
	cr_assert_eq(pn_share_json(&f, NULL), PN_EINVAL);
	cr_assert_eq(pn_put_json(NULL, &out), PN_EINVAL);
	cr_assert_eq(pn_search_hit_json(NULL, &out), PN_EINVAL);
	cr_assert_eq(pn_download_json(&cid, NULL, NULL, &out), PN_EINVAL, "neither a result nor a reason");
	cr_assert_eq(pn_download_json(NULL, NULL, "why", &out), PN_EINVAL);
	cr_assert_eq(pn_transfer_json(&cid, PN_EIO, NULL, &tr, &out), PN_EINVAL);
	cr_assert_eq(pn_transfer_json(&cid, PN_OK, "", NULL, &out), PN_EINVAL);
	cr_assert_eq(pn_node_report_json(NULL, &out), PN_EINVAL);
	cr_assert_eq(pn_node_report_text(NULL, &out), PN_EINVAL);
	cr_assert_null(out);
	cr_assert_str_neq(pn_strerror(PN_EREMOTE), "unknown error");
}

/* A report with a bit of everything, awkward names included. */
static void sample_report(struct pn_node_report *r, struct pn_peer_info peers[2], struct pn_share_info shares[2],
			  struct pn_progress transfers[1])
{
	memset(r, 0, sizeof *r);
	memset(peers, 0, 2 * sizeof *peers);
	for (int i = 0; i < PN_ID_BYTES; i++)
		r->status.node_id[i] = (uint8_t)(i * 7);
	r->status.port = 7072;
	r->status.discovery = PN_DISCOVERY_DIRECTORY;
	r->status.discovery_ready = true;
	r->status.directory_refused = 2;
	r->status.shares = 5;
	r->status.bytes_up = 1000;
	r->status.bytes_down = 2000;
	r->status.wire_up = 3000;
	r->status.wire_down = 4000;
	r->status.lookups = 6;
	r->status.lookup_msgs = 12;
	r->status.rate_up = 50;
	r->listen = "0.0.0.0:7072";
	r->directory = "dir.example:7071";
	r->flood_on = true;
	r->status.neighbors = 3;
	r->flood = (struct pn_flood_info){1, 2, 3, 4, 5, 6, 7};
	peers[0].id[0] = 0xab;
	snprintf(peers[0].addr, sizeof peers[0].addr, "127.0.0.1:1");
	peers[0].outgoing = peers[0].am_choking = true;
	peers[0].bytes_to = 10;
	peers[1].id[31] = 0xcd;
	snprintf(peers[1].addr, sizeof peers[1].addr, "[::1]:2");
	peers[1].seed_server = peers[1].peer_choking = true;
	peers[1].rate_from = 99;
	r->peers = peers;
	r->npeers = r->status.peers = 2;
	cr_assert_eq(pn_cid_parse(CID_A, &shares[0].cid), PN_OK);
	shares[0].name = awkward;
	shares[1].cid.size = 77;
	shares[1].name = "caf\xc3\xa9.txt";
	r->shares = shares;
	r->nshares = 2;
	transfers[0] = (struct pn_progress){.cid = {.size = 3 * PN_CHUNK_SIZE}, .name = awkward, .chunks = 3,
					    .chunks_have = 1, .bytes_downloaded = PN_CHUNK_SIZE};
	r->transfers = transfers;
	r->ntransfers = r->status.downloads = 1;
}

Test(api_ctl, report_text)
{
	struct pn_node_report r;
	struct pn_peer_info peers[2];
	struct pn_share_info shares[2];
	struct pn_progress transfers[1];
	char *text;
	sample_report(&r, peers, shares, transfers);
	cr_assert_eq(pn_node_report_text(&r, &text), PN_OK);
	cr_assert(strstr(text, "directory  dir.example:7071, registered; it refused"), "%s", text);
	cr_assert(strstr(text, "\n           2 shares not registered\n"), "%s", text);
	cr_assert(strstr(text, "\nflood      3 neighbours, 2 queries sent, 3 received, 4 duplicates dropped\n"), "%s", text);
	cr_assert(strstr(text, "\npeers      2\n  ab00000000000000  127.0.0.1:1            out  sent 10  received 0\n"),
		  "%s", text);
	cr_assert(strstr(text, "  in   sent 0  received 0  (unchoked)  (seed server)\n"), "%s", text);
	cr_assert(strstr(text, "\nshares     5\n"), "%s", text);
	cr_assert(strstr(text, "  ... and 3 more\n"), "%s", text);
	cr_assert(strstr(text, " r\xef\xbf\xbdsum\xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd.txt\n"), "names as valid UTF-8: %s", text);
	cr_assert(strstr(text, "  1/3 chunks  "), "%s", text);
	cr_assert(strstr(text, "totals     uploaded 1000 bytes, downloaded 2000 bytes, 6 look-ups\n"), "%s", text);
	free(text);
}

/* ---------------------------------------------------------------- the control client */

Test(api_ctl, status_round_trip_is_byte_for_byte)
{
	struct pn_node_report r;
	struct pn_peer_info peers[2];
	struct pn_share_info shares[2];
	struct pn_progress transfers[1];
	char *doc, *direct_text, reply[16384];
	sample_report(&r, peers, shares, transfers);
	cr_assert_eq(pn_node_report_json(&r, &doc), PN_OK);
	assert_json(doc, JSON_OBJECT);
	cr_assert_eq(pn_node_report_text(&r, &direct_text), PN_OK);
	snprintf(reply, sizeof reply, "{\"reply\":\"status\",\"status\":%s}\n{\"reply\":\"ok\"}\n", doc);

	struct seen s;
	setup(&s, reply, true);
	struct pn_ctl_events ev = events(&s);
	s.in_call = true;
	run(&s, pn_ctl_status(&s.loop, s.sock, &ev, &s.ctl));
	cr_assert_eq(s.err, PN_OK, "%s", s.why);
	cr_assert_eq(s.statuses, 1);
	cr_assert_str_eq(s.fake.req, "{\"cmd\":\"status\"}\n");
	cr_assert_str_eq(s.report_json, doc, "the report read back renders the same bytes");
	cr_assert_str_eq(s.report_text, direct_text);
	free(s.report_json);
	free(s.report_text);
	free(doc);
	free(direct_text);
}

Test(api_ctl, add_sends_exact_paths_and_reads_files)
{
	static const char reply[] =
		"{\"reply\":\"file\",\"id\":\"" CID_A "\",\"name\":\"r\xef\xbf\xbd\",\"name_hex\":\"72e9\",\"size\":0}\n"
		"{\"reply\":\"ok\"}\n";
	const char *paths[] = {"/tmp/ok.txt", "/tmp/r\xe9"};
	struct seen s;
	setup(&s, reply, true);
	struct pn_ctl_events ev = events(&s);
	s.in_call = true;
	run(&s, pn_ctl_add(&s.loop, s.sock, &ev, paths, 2, NULL));
	cr_assert_eq(s.err, PN_OK, "%s", s.why);
	cr_assert_eq(s.shared, 1);
	cr_assert_str_eq(s.name, "r\xe9", "the exact bytes of the name");
	cr_assert_str_eq(s.fake.req, "{\"cmd\":\"add\",\"paths\":[\"/tmp/ok.txt\",{\"path\":\"/tmp/r\xef\xbf\xbd\","
				     "\"path_hex\":\"2f746d702f72e9\"}]}\n");
}

Test(api_ctl, search_and_get)
{
	static const char hits[] =
		"{\"reply\":\"result\",\"id\":\"" CID_A "\",\"name\":\"holiday \\\"2024\\\"\",\"size\":0,\"providers\":4}\n"
		"{\"reply\":\"ok\"}\n";
	struct seen s;
	setup(&s, hits, true);
	struct pn_ctl_events ev = events(&s);
	s.in_call = true;
	run(&s, pn_ctl_search(&s.loop, s.sock, &ev, "holiday", NULL));
	cr_assert_eq(s.err, PN_OK, "%s", s.why);
	cr_assert_eq(s.hits, 1);
	cr_assert_eq(s.providers, 4);
	cr_assert_str_eq(s.name, "holiday \"2024\"");
	cr_assert_str_eq(s.fake.req, "{\"cmd\":\"search\",\"query\":\"holiday\"}\n");

	static const char got[] =
		"{\"reply\":\"progress\",\"have\":5,\"total\":10,\"peers\":2,\"name\":\"f\"}\n"
		"{\"reply\":\"stream\",\"upto\":5,\"path\":\"/data/incoming/x\"}\n"
		"{\"reply\":\"got\",\"id\":\"" CID_A "\",\"name\":\"f\",\"path\":\"/data/x\",\"size\":0,"
		"\"bytes_downloaded\":10,\"bytes_resumed\":0,\"seconds\":0.25,\"peers\":2}\n"
		"{\"reply\":\"ok\"}\n";
	struct pn_cid cid;
	cr_assert_eq(pn_cid_parse(CID_A, &cid), PN_OK);
	setup(&s, got, true);
	ev = events(&s);
	s.in_call = true;
	run(&s, pn_ctl_get(&s.loop, s.sock, &ev, &cid, "ignored", "/home/u", PN_GET_STREAM | PN_GET_OVERWRITE, NULL));
	cr_assert_eq(s.err, PN_OK, "%s", s.why);
	cr_assert_eq(s.progress, 1);
	cr_assert_eq(s.have, 5);
	cr_assert_eq(s.total, 10);
	cr_assert_eq(s.streams, 1);
	cr_assert_eq(s.upto, 5);
	cr_assert_eq(s.got, 1);
	cr_assert_str_eq(s.path, "/data/x");
	cr_assert_str_eq(s.fake.req, "{\"cmd\":\"get\",\"id\":\"" CID_A "\",\"out\":\"-\",\"cwd\":\"/home/u\","
				     "\"force\":true}\n");
}

/* One request answered with reply: how it ended. */
static int end_of(const char *reply, bool listen, char *why, size_t cap)
{
	struct seen s;
	setup(&s, reply, listen);
	struct pn_ctl_events ev = events(&s);
	s.in_call = true;
	run(&s, pn_ctl_status(&s.loop, s.sock, &ev, NULL));
	snprintf(why, cap, "%s", s.why);
	cr_assert_eq(s.statuses, 0, "no report from a bad answer");
	return s.err;
}

Test(api_ctl, error_paths_end_with_codes)
{
	char why[8192];
	cr_assert_eq(end_of("{\"reply\":\"err\",\"error\":\"busy\"}\n", true, why, sizeof why), PN_EREMOTE);
	cr_assert_str_eq(why, "busy");
	cr_assert_eq(end_of("{\"reply\":\"err\",\"error\":\"x\xef\xbf\xbd\",\"error_hex\":\"78ff\"}\n", true, why,
			    sizeof why), PN_EREMOTE);
	cr_assert_str_eq(why, "x\xff", "the node's exact message");
	cr_assert_eq(end_of("not json\n", true, why, sizeof why), PN_EPROTO);
	cr_assert_eq(end_of("{\"reply\":\"file\",\"id\":\"" CID_A "\",\"name\":\"a\",\"size\":0}\n", true, why,
			    sizeof why), PN_EPROTO, "a reply of another request");
	cr_assert_eq(end_of("{\"reply\":\"status\",\"status\":{\"node_id\":\"zz\"}}\n", true, why, sizeof why),
		     PN_EPROTO, "a status without its fields");
	cr_assert_eq(end_of("{\"reply\":\"err\",\"error\":7}\n", true, why, sizeof why), PN_EPROTO);
	cr_assert_eq(end_of("{\"reply\":\"ok\"", true, why, sizeof why), PN_ECLOSED, "cut before its newline");
	cr_assert_eq(end_of("", true, why, sizeof why), PN_ECLOSED);
	cr_assert(strstr(why, "closed the control connection"), "%s", why);
	cr_assert_eq(end_of(NULL, false, why, sizeof why), PN_ECONNREFUSED);
	cr_assert(strstr(why, "no node is running at /tmp/pn-ctl-test-"), "%s", why);
}

Test(api_ctl, socket_path_too_long_ends_in_done)
{
	char longpath[300];
	memset(longpath, 'a', sizeof longpath - 1);
	longpath[0] = '/';
	longpath[sizeof longpath - 1] = 0;
	struct seen s;
	setup(&s, NULL, false);
	struct pn_ctl_events ev = events(&s);
	s.in_call = true;
	run(&s, pn_ctl_stop(&s.loop, longpath, &ev, NULL));
	cr_assert_eq(s.err, PN_EINVAL);
	cr_assert(strstr(s.why, "control socket path too long"), "%s", s.why);
}

Test(api_ctl, cancel_ends_with_ecanceled)
{
	struct seen s;
	setup(&s, NULL, true); /* the node never answers */
	struct pn_ctl_events ev = events(&s);
	s.in_call = true;
	int r = pn_ctl_stop(&s.loop, s.sock, &ev, &s.ctl);
	pn_ctl_cancel(s.ctl);
	run(&s, r);
	cr_assert_eq(s.err, PN_ECANCELED);

	static const char progress[] = "{\"reply\":\"progress\",\"have\":1,\"total\":2,\"peers\":0,\"name\":\"\"}\n"
				       "{\"reply\":\"progress\",\"have\":2,\"total\":2,\"peers\":0,\"name\":\"\"}\n";
	struct pn_cid cid = {0};
	setup(&s, progress, true);
	ev = events(&s);
	s.cancel_on_progress = true;
	s.in_call = true;
	run(&s, pn_ctl_get(&s.loop, s.sock, &ev, &cid, NULL, "/", 0, NULL));
	cr_assert_eq(s.err, PN_ECANCELED);
	cr_assert_eq(s.progress, 1, "nothing after a cancel");
}

Test(api_ctl, bad_arguments_start_nothing)
{
	uv_loop_t loop;
	cr_assert_eq(uv_loop_init(&loop), 0);
	struct pn_ctl_events ev = {0};
	struct pn_cid cid = {0};
	pn_ctl *c = (pn_ctl *)&loop;
	const char *one[] = {"/x"}, *empty[] = {""};

	cr_assert_eq(pn_ctl_add(&loop, "/s", &ev, one, 0, &c), PN_EINVAL);
	cr_assert_null(c, "out is NULL when nothing started");
	cr_assert_eq(pn_ctl_add(&loop, "/s", &ev, empty, 1, NULL), PN_EINVAL);
	cr_assert_eq(pn_ctl_add(&loop, NULL, &ev, one, 1, NULL), PN_EINVAL);
	cr_assert_eq(pn_ctl_add(NULL, "/s", &ev, one, 1, NULL), PN_EINVAL);
	cr_assert_eq(pn_ctl_search(&loop, "/s", &ev, "", NULL), PN_EINVAL);
	cr_assert_eq(pn_ctl_search(&loop, "/s", &ev, "caf\xe9", NULL), PN_EINVAL, "not UTF-8");
	char query[PN_QUERY_MAX + 2];
	memset(query, 'q', sizeof query - 1);
	query[sizeof query - 1] = 0;
	cr_assert_eq(pn_ctl_search(&loop, "/s", &ev, query, NULL), PN_EINVAL, "longer than PN_QUERY_MAX");
	cr_assert_eq(pn_ctl_get(&loop, "/s", &ev, &cid, NULL, "relative", 0, NULL), PN_EINVAL);
	cr_assert_eq(pn_ctl_get(&loop, "/s", &ev, &cid, NULL, NULL, 0, NULL), PN_EINVAL);
	cr_assert_eq(pn_ctl_get(&loop, "/s", &ev, &cid, NULL, "/", 0x80, NULL), PN_EINVAL, "unknown flag");
	cr_assert_eq(pn_ctl_get(&loop, "/s", &ev, NULL, NULL, "/", 0, NULL), PN_EINVAL);
	cr_assert_eq(pn_ctl_status(&loop, NULL, &ev, NULL), PN_EINVAL);
	cr_assert_eq(pn_ctl_stop(NULL, "/s", &ev, NULL), PN_EINVAL);

	/* a request longer than the node takes */
	size_t n = 64;
	const char **many = calloc(n, sizeof *many);
	char *big = malloc(PN_CONTROL_REQUEST_MAX / 32);
	memset(big, 'p', PN_CONTROL_REQUEST_MAX / 32 - 1);
	big[0] = '/';
	big[PN_CONTROL_REQUEST_MAX / 32 - 1] = 0;
	for (size_t i = 0; i < n; i++)
		many[i] = big;
	cr_assert_eq(pn_ctl_add(&loop, "/s", &ev, many, n, &c), PN_ETOOBIG);
	cr_assert_null(c);
	free(big);
	free(many);
	pn_ctl_cancel(NULL);
	cr_assert_eq(uv_run(&loop, UV_RUN_NOWAIT), 0, "nothing was started");
	cr_assert_eq(uv_loop_close(&loop), 0);
}
