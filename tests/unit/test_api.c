/* The public API, used the way a program embeds peernet: only <peernet.h>,
 * a directory and several nodes on one uv_loop_t in one process, real TLS
 * connections on loopback. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <peernet.h>
#include <uv.h>

#define SAFETY_MS 60000 /* a test that has not finished by then fails (the loop is stopped) */

struct world {
	uv_loop_t loop;
	uv_timer_t safety;
	bool timed_out;
	char dir[256];
	pn_directory *directory;
	pn_node *a, *b;
	int closed;
	/* what node b's events saw */
	int progress_calls, done_calls, done_err;
	bool done_inside_call;        /* done ran from inside pn_node_get/pn_download_cancel */
	bool in_call;
	unsigned char *stream;
	size_t streamed, stream_cap;
	bool stream_out_of_order;
	struct pn_download_result result;
	char result_path[512];
	char why[512];
	void *user_seen;
	/* search */
	int hits;
	struct pn_cid hit_cid;
	char hit_name[256];
	int search_done, search_err;
	int peers_joined;
};

static void safety_cb(uv_timer_t *t)
{
	struct world *w = t->data;
	w->timed_out = true;
	uv_stop(t->loop);
}

static void closed_cb(void *ud)
{
	((struct world *)ud)->closed++;
}

static void on_progress(void *ud, pn_download *d, const struct pn_progress *p)
{
	struct world *w = ud;
	w->progress_calls++;
	cr_expect(p->have <= p->total);
}

static void on_data(void *ud, pn_download *d, uint64_t offset, const void *buf, size_t len)
{
	struct world *w = ud;
	if (offset != w->streamed)
		w->stream_out_of_order = true;
	if (w->streamed + len > w->stream_cap) {
		w->stream_out_of_order = true;
		return;
	}
	memcpy(w->stream + w->streamed, buf, len);
	w->streamed += len;
}

static void on_done(void *ud, pn_download *d, int err, const struct pn_download_result *r, const char *why)
{
	struct world *w = ud;
	w->done_calls++;
	w->done_err = err;
	w->done_inside_call = w->in_call;
	w->user_seen = pn_download_user(d);
	if (r) {
		w->result = *r;
		snprintf(w->result_path, sizeof w->result_path, "%s", r->path);
	}
	snprintf(w->why, sizeof w->why, "%s", why ? why : "");
	pn_node_close(w->a, closed_cb, w);
	pn_node_close(w->b, closed_cb, w);
	pn_directory_close(w->directory, closed_cb, w);
}

static void on_peer(void *ud, pn_node *n, const struct pn_peer_info *p, bool joined)
{
	struct world *w = ud;
	if (joined)
		w->peers_joined++;
}

static void world_init(struct world *w)
{
	memset(w, 0, sizeof *w);
	signal(SIGPIPE, SIG_IGN);
	cr_assert_eq(uv_loop_init(&w->loop), 0);
	uv_timer_init(&w->loop, &w->safety);
	w->safety.data = w;
	uv_timer_start(&w->safety, safety_cb, SAFETY_MS, 0);
	uv_unref((uv_handle_t *)&w->safety);
	snprintf(w->dir, sizeof w->dir, "/tmp/pn-api-XXXXXX");
	cr_assert_not_null(mkdtemp(w->dir));
}

static void world_start(struct world *w)
{
	struct pn_directory_config dc = {.listen = "127.0.0.1:0", .heartbeat_ms = 1000};
	cr_assert_eq(pn_directory_new(&w->loop, &dc, NULL, &w->directory), PN_OK);
	cr_assert_eq(pn_directory_start(w->directory), PN_OK, "%s", pn_directory_error(w->directory));
	char daddr[64], adir[300], bdir[300];
	snprintf(daddr, sizeof daddr, "127.0.0.1:%u", pn_directory_port(w->directory));
	snprintf(adir, sizeof adir, "%s/a", w->dir);
	snprintf(bdir, sizeof bdir, "%s/b", w->dir);
	struct pn_node_config ca = {.listen = "127.0.0.1:0", .data_dir = adir, .directory = daddr,
				    .discovery = PN_DISCOVERY_DIRECTORY};
	struct pn_node_config cb = ca;
	cb.data_dir = bdir;
	struct pn_node_events ev = {.ud = w, .progress = on_progress, .data = on_data, .done = on_done,
				    .peer = on_peer};
	cr_assert_eq(pn_node_new(&w->loop, &ca, &ev, &w->a), PN_OK);
	cr_assert_eq(pn_node_new(&w->loop, &cb, &ev, &w->b), PN_OK);
	cr_assert_eq(pn_node_start(w->a), PN_OK, "%s", pn_node_error(w->a));
	cr_assert_eq(pn_node_start(w->b), PN_OK, "%s", pn_node_error(w->b));
	cr_assert_neq(pn_node_port(w->a), 0);
	cr_assert_neq(pn_node_port(w->a), pn_node_port(w->b));
	uint8_t ida[PN_ID_BYTES], idb[PN_ID_BYTES];
	pn_node_id(w->a, ida);
	pn_node_id(w->b, idb);
	cr_assert(memcmp(ida, idb, PN_ID_BYTES) != 0, "each node has its own identity");
}

/* Runs the loop until every handle is gone; checks nothing was left open. */
static void world_run(struct world *w)
{
	uv_run(&w->loop, UV_RUN_DEFAULT);
	cr_assert(!w->timed_out, "the test did not finish in %d ms", SAFETY_MS);
	uv_close((uv_handle_t *)&w->safety, NULL);
	uv_run(&w->loop, UV_RUN_DEFAULT);
	cr_assert_eq(uv_loop_close(&w->loop), 0, "a handle was left open on the loop");
}

static void world_cleanup(struct world *w)
{
	char cmd[400];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", w->dir);
	cr_expect_eq(system(cmd), 0);
	free(w->stream);
}

/* A file of size bytes, contents from seed; returns its bytes (caller frees). */
static unsigned char *write_file(const char *path, size_t size, unsigned seed)
{
	unsigned char *b = malloc(size ? size : 1);
	cr_assert_not_null(b);
	for (size_t i = 0; i < size; i++) {
		seed = seed * 1103515245u + 12345u;
		b[i] = (unsigned char)(seed >> 16);
	}
	FILE *f = fopen(path, "wb");
	cr_assert_not_null(f);
	cr_assert_eq(fwrite(b, 1, size, f), size);
	cr_assert_eq(fclose(f), 0);
	return b;
}

static bool file_equals(const char *path, const unsigned char *want, size_t size)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return false;
	unsigned char *got = malloc(size + 1);
	size_t n = fread(got, 1, size + 1, f);
	fclose(f);
	bool ok = n == size && memcmp(got, want, size) == 0;
	free(got);
	return ok;
}

Test(api, version)
{
	unsigned a, b, c;
	char tail;
	cr_assert_str_eq(pn_version(), PN_VERSION_STRING);
	cr_assert_eq(sscanf(pn_version(), "%u.%u.%u%c", &a, &b, &c, &tail), 3);
	cr_assert_eq(a, PN_VERSION_MAJOR);
	cr_assert_eq(b, PN_VERSION_MINOR);
	cr_assert_eq(c, PN_VERSION_PATCH);
}

Test(api, two_nodes_in_one_process_move_a_file_streamed_and_written)
{
	struct world w;
	world_init(&w);
	world_start(&w);
	size_t size = 3 * PN_CHUNK_SIZE + 777; /* four chunks, the last one short */
	char src[400], out[400];
	snprintf(src, sizeof src, "%s/report final.bin", w.dir);
	snprintf(out, sizeof out, "%s/received.bin", w.dir);
	unsigned char *data = write_file(src, size, 7);
	struct pn_cid cid, again;
	cr_assert_eq(pn_node_share(w.a, src, &cid), PN_OK, "%s", pn_node_error(w.a));
	cr_assert_eq(cid.size, size);
	cr_assert_eq(pn_node_share(w.a, src, &again), PN_EEXIST);
	cr_assert(memcmp(&cid, &again, sizeof cid) == 0);
	struct pn_share_info si[4];
	cr_assert_eq(pn_node_shares(w.a, 0, si, 4), 1);
	cr_assert_str_eq(si[0].name, "report final.bin");

	w.stream_cap = size;
	w.stream = malloc(size);
	pn_download *d;
	int tag;
	w.in_call = true;
	cr_assert_eq(pn_node_get(w.b, &cid, out, PN_GET_STREAM, &tag, &d), PN_OK, "%s", pn_node_error(w.b));
	w.in_call = false;
	cr_assert_eq(pn_download_user(d), &tag);
	cr_assert(memcmp(pn_download_cid(d), &cid, sizeof cid) == 0);
	world_run(&w);

	cr_assert_eq(w.done_calls, 1);
	cr_assert_eq(w.done_err, PN_OK, "download failed: %s", w.why);
	cr_assert(!w.done_inside_call);
	cr_assert_eq(w.user_seen, &tag);
	cr_assert_eq(w.closed, 3, "every close callback ran");
	cr_assert(!w.stream_out_of_order, "stream bytes came in order");
	cr_assert_eq(w.streamed, size);
	cr_assert(memcmp(w.stream, data, size) == 0, "the streamed bytes are the file's");
	cr_assert(file_equals(out, data, size), "the file written is the source");
	cr_assert_str_eq(w.result_path, out);
	cr_assert_eq(w.result.bytes_downloaded, size);
	cr_assert_geq(w.progress_calls, 1);
	cr_assert_geq(w.peers_joined, 2, "a joined b and b joined a");
	free(data);
	world_cleanup(&w);
}

static void on_hit(void *ud, const struct pn_search_hit *h)
{
	struct world *w = ud;
	w->hits++;
	w->hit_cid = h->cid;
	snprintf(w->hit_name, sizeof w->hit_name, "%.*s", (int)h->name_len, h->name);
}

static void on_search_done(void *ud, int err, const char *why)
{
	struct world *w = ud;
	w->search_done++;
	w->search_err = err;
	w->done_inside_call = w->in_call;
	pn_node_close(w->a, closed_cb, w);
	pn_node_close(w->b, closed_cb, w);
	pn_directory_close(w->directory, closed_cb, w);
}

Test(api, search_finds_a_share_of_another_node_by_keyword)
{
	struct world w;
	world_init(&w);
	world_start(&w);
	char src[400];
	snprintf(src, sizeof src, "%s/Quarterly Report 2026.pdf", w.dir);
	free(write_file(src, 1000, 3));
	struct pn_cid cid;
	cr_assert_eq(pn_node_share(w.a, src, &cid), PN_OK);
	w.in_call = true;
	cr_assert_eq(pn_node_search(w.b, "quarterly report", on_hit, on_search_done, &w, NULL), PN_OK,
		     "%s", pn_node_error(w.b));
	w.in_call = false;
	world_run(&w);
	cr_assert_eq(w.search_done, 1);
	cr_assert_eq(w.search_err, PN_OK);
	cr_assert(!w.done_inside_call);
	cr_assert_eq(w.hits, 1);
	cr_assert(memcmp(&w.hit_cid, &cid, sizeof cid) == 0);
	cr_assert_str_eq(w.hit_name, "Quarterly Report 2026.pdf");
	cr_assert_eq(w.closed, 3);
	world_cleanup(&w);
}

static void cancel_soon_cb(uv_timer_t *t)
{
	struct world *w = t->data;
	pn_download *d = w->user_seen;
	w->user_seen = NULL;
	w->in_call = true;
	pn_download_cancel(d);
	pn_download_cancel(d); /* twice is harmless */
	w->in_call = false;
	uv_close((uv_handle_t *)t, NULL);
}

Test(api, cancel_ends_a_download_nobody_can_serve_from_the_loop)
{
	struct world w;
	world_init(&w);
	world_start(&w);
	struct pn_cid cid;
	cr_assert_eq(pn_cid_parse("pn1" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", &cid), PN_OK);
	pn_download *d;
	cr_assert_eq(pn_node_get(w.b, &cid, NULL, 0, NULL, &d), PN_OK, "%s", pn_node_error(w.b));
	struct pn_progress running[4];
	cr_assert_eq(pn_node_downloads(w.b, running, 4), 1);
	uv_timer_t t;
	uv_timer_init(&w.loop, &t);
	t.data = &w;
	w.user_seen = d;
	uv_timer_start(&t, cancel_soon_cb, 200, 0);
	world_run(&w);
	cr_assert_eq(w.done_calls, 1);
	cr_assert_eq(w.done_err, PN_ECANCELED, "done said %d (%s)", w.done_err, w.why);
	cr_assert(!w.done_inside_call, "done is not called from inside pn_download_cancel");
	cr_assert_eq(w.closed, 3);
	world_cleanup(&w);
}

Test(api, bad_config_and_failed_start_say_why_and_still_close)
{
	struct world w;
	world_init(&w);
	pn_node *n;
	struct pn_node_config bad = {.listen = "127.0.0.1:0"}; /* no data_dir */
	cr_assert_eq(pn_node_new(&w.loop, &bad, NULL, &n), PN_EINVAL);
	cr_assert_null(n);
	struct pn_node_config toomany = {.listen = "127.0.0.1:0", .data_dir = w.dir, .ttl = 9};
	cr_assert_eq(pn_node_new(&w.loop, &toomany, NULL, &n), PN_EINVAL);

	/* Two nodes asking for one port: the second says so in one line. */
	char adir[300], bdir[300], addr[64];
	snprintf(adir, sizeof adir, "%s/a", w.dir);
	snprintf(bdir, sizeof bdir, "%s/b", w.dir);
	struct pn_node_config ca = {.listen = "127.0.0.1:0", .data_dir = adir, .discovery = PN_DISCOVERY_FLOOD};
	cr_assert_eq(pn_node_new(&w.loop, &ca, NULL, &w.a), PN_OK);
	cr_assert_eq(pn_node_start(w.a), PN_OK, "%s", pn_node_error(w.a));
	cr_assert_eq(pn_node_start(w.a), PN_EBUSY);
	snprintf(addr, sizeof addr, "127.0.0.1:%u", pn_node_port(w.a));
	struct pn_node_config cb = {.listen = addr, .data_dir = bdir, .discovery = PN_DISCOVERY_FLOOD};
	cr_assert_eq(pn_node_new(&w.loop, &cb, NULL, &w.b), PN_OK);
	cr_assert_neq(pn_node_start(w.b), PN_OK);
	cr_assert(strstr(pn_node_error(w.b), "cannot listen on") != NULL, "%s", pn_node_error(w.b));
	cr_assert_null(strchr(pn_node_error(w.b), '\n'));
	struct pn_cid cid = {0};
	cr_assert_eq(pn_node_get(w.b, &cid, NULL, 0, NULL, NULL), PN_EBUSY, "a node that did not start downloads nothing");

	/* A node that was never started closes too, its callback from the loop. */
	pn_node *never;
	cr_assert_eq(pn_node_new(&w.loop, &ca, NULL, &never), PN_OK);
	pn_node_close(never, closed_cb, &w);
	cr_assert_eq(w.closed, 0, "the close callback comes from the loop");
	pn_node_close(w.a, closed_cb, &w);
	pn_node_close(w.b, closed_cb, &w);
	world_run(&w);
	cr_assert_eq(w.closed, 3);
	world_cleanup(&w);
}

static void server_stored(void *ud, pn_server *s, const struct pn_cid *cid, const char *name)
{
}

Test(api, a_server_and_a_node_share_one_loop)
{
	struct world w;
	world_init(&w);
	char sdir[300];
	snprintf(sdir, sizeof sdir, "%s/srv", w.dir);
	struct pn_server_config sc = {.listen = "127.0.0.1:0", .data_dir = sdir};
	struct pn_server_events se = {.ud = &w, .stored = server_stored};
	pn_server *s;
	cr_assert_eq(pn_server_new(&w.loop, &sc, &se, &s), PN_OK);
	cr_assert_eq(pn_server_start(s), PN_OK, "%s", pn_server_error(s));
	struct pn_server_status st;
	pn_server_status(s, &st);
	cr_assert_eq(st.port, pn_server_port(s));
	cr_assert_neq(st.port, 0);
	cr_assert_eq(st.objects, 0);

	/* A node that uses the server as a seed server: connects to it. */
	char ndir[300], saddr[64];
	snprintf(ndir, sizeof ndir, "%s/n", w.dir);
	snprintf(saddr, sizeof saddr, "127.0.0.1:%u", st.port);
	const char *seeds[] = {saddr};
	struct pn_node_config nc = {.listen = "127.0.0.1:0", .data_dir = ndir, .discovery = PN_DISCOVERY_FLOOD,
				    .seed_servers = seeds, .nseed_servers = 1};
	cr_assert_eq(pn_node_new(&w.loop, &nc, NULL, &w.a), PN_OK);
	cr_assert_eq(pn_node_start(w.a), PN_OK, "%s", pn_node_error(w.a));
	for (int i = 0; i < 200; i++) {
		uv_run(&w.loop, UV_RUN_ONCE);
		struct pn_node_status ns;
		pn_node_status(w.a, &ns);
		if (ns.peers == 1)
			break;
	}
	struct pn_peer_info pi[2];
	cr_assert_eq(pn_node_peers(w.a, pi, 2), 1, "the node holds a connection to its seed server");
	cr_assert(pi[0].seed_server);
	pn_server_status(s, &st);
	cr_assert_eq(st.connections_total, 1);
	pn_server_close(s, closed_cb, &w);
	pn_node_close(w.a, closed_cb, &w);
	world_run(&w);
	cr_assert_eq(w.closed, 2);
	world_cleanup(&w);
}

/* Unsharing: search until b finds a's file, unshare it on a, search until b
 * no longer does (each phase at most 50 searches). */
struct unshare_run {
	struct world *w;
	struct pn_cid cid;
	int phase;                    /* 0: waiting to find it, 1: waiting for it to go */
	int searches, found_now;
	int unshare_again;
	size_t shares_after;
	char objects_dir[400];
	bool file_gone;
};

static void u_hit(void *ud, const struct pn_search_hit *h)
{
	struct unshare_run *u = ud;
	if (!memcmp(&h->cid, &u->cid, sizeof h->cid))
		u->found_now++;
}

static void u_search(struct unshare_run *u);

static void u_done(void *ud, int err, const char *why)
{
	struct unshare_run *u = ud;
	struct world *w = u->w;
	if (u->phase == 0 && u->found_now) {
		cr_assert_eq(pn_node_unshare(w->a, &u->cid), PN_OK, "%s", pn_node_error(w->a));
		u->unshare_again = pn_node_unshare(w->a, &u->cid);
		struct pn_share_info si;
		u->shares_after = pn_node_shares(w->a, 0, &si, 1);
		char id[PN_CID_STR_LEN + 1], path[600];
		pn_cid_format(&u->cid, id);
		snprintf(path, sizeof path, "%s/%s", u->objects_dir, id);
		u->file_gone = access(path, F_OK) != 0;
		u->phase = 1;
	} else if (u->phase == 1 && !u->found_now) {
		u->phase = 2;
	}
	if (u->phase == 2 || u->searches >= 100) {
		pn_node_close(w->a, closed_cb, w);
		pn_node_close(w->b, closed_cb, w);
		pn_directory_close(w->directory, closed_cb, w);
		return;
	}
	u_search(u);
}

static void u_search(struct unshare_run *u)
{
	u->searches++;
	u->found_now = 0;
	cr_assert_eq(pn_node_search(u->w->b, "unshare", u_hit, u_done, u, NULL), PN_OK);
}

Test(api, unshare_deletes_and_withdraws_a_share)
{
	struct world w;
	world_init(&w);
	world_start(&w);
	struct unshare_run u = {.w = &w};
	char src[400];
	snprintf(src, sizeof src, "%s/to unshare.txt", w.dir);
	snprintf(u.objects_dir, sizeof u.objects_dir, "%s/a/objects", w.dir);
	free(write_file(src, 5000, 11));
	cr_assert_eq(pn_node_share(w.a, src, &u.cid), PN_OK);
	u_search(&u);
	world_run(&w);
	cr_assert_eq(u.phase, 2, "found, then no longer found (phase %d after %d searches)", u.phase, u.searches);
	cr_assert_eq(u.unshare_again, PN_ENOTFOUND);
	cr_assert_eq(u.shares_after, 0);
	cr_assert(u.file_gone, "the object's data is deleted");
	cr_assert_eq(w.closed, 3);
	world_cleanup(&w);
}

/* The status page of a node, a server and a directory on one loop, fetched
 * by an HTTP client on the same loop (a uv_tcp_t): each answers its own
 * status; closing each stops its page and leaves no handle behind. */
struct page_fetch {
	uv_tcp_t tcp;
	uv_connect_t conn;
	uv_write_t write;
	char request[128];
	char reply[64 * 1024];
	size_t len;
	bool done;
};

static void fetch_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct page_fetch *f = h->data;
	*buf = uv_buf_init(f->reply + f->len, (unsigned)(sizeof f->reply - 1 - f->len));
}

static void fetch_closed_cb(uv_handle_t *h)
{
	((struct page_fetch *)h->data)->done = true;
}

static void fetch_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct page_fetch *f = s->data;
	if (n > 0)
		f->len += (size_t)n;
	if (n < 0 || f->len == sizeof f->reply - 1)
		uv_close((uv_handle_t *)s, fetch_closed_cb);
}

static void fetch_connect_cb(uv_connect_t *c, int status)
{
	struct page_fetch *f = c->handle->data;
	cr_assert_eq(status, 0, "connect to the status page: %s", uv_strerror(status));
	uv_buf_t b = uv_buf_init(f->request, (unsigned)strlen(f->request));
	cr_assert_eq(uv_write(&f->write, (uv_stream_t *)&f->tcp, &b, 1, NULL), 0);
	uv_read_start((uv_stream_t *)&f->tcp, fetch_alloc_cb, fetch_read_cb);
}

/* GET path from 127.0.0.1:port, running the loop until the server closes;
 * returns the body (inside f). */
static const char *fetch(uv_loop_t *loop, struct page_fetch *f, uint16_t port, const char *path)
{
	memset(f, 0, sizeof *f);
	snprintf(f->request, sizeof f->request, "GET %s HTTP/1.0\r\nHost: 127.0.0.1:%u\r\n\r\n", path, port);
	struct sockaddr_in sa;
	uv_ip4_addr("127.0.0.1", port, &sa);
	uv_tcp_init(loop, &f->tcp);
	f->tcp.data = f;
	cr_assert_eq(uv_tcp_connect(&f->conn, &f->tcp, (const struct sockaddr *)&sa, fetch_connect_cb), 0);
	for (int i = 0; i < 100000 && !f->done; i++)
		uv_run(loop, UV_RUN_ONCE);
	cr_assert(f->done);
	f->reply[f->len] = '\0';
	cr_assert(!strncmp(f->reply, "HTTP/1.0 200", 12) || !strncmp(f->reply, "HTTP/1.1 200", 12), "%.200s", f->reply);
	const char *body = strstr(f->reply, "\r\n\r\n");
	cr_assert_not_null(body);
	return body + 4;
}

Test(api, status_pages_of_a_node_a_server_and_a_directory)
{
	struct world w;
	world_init(&w);
	struct pn_directory_config dc = {.listen = "127.0.0.1:0", .http_listen = "127.0.0.1:0"};
	cr_assert_eq(pn_directory_new(&w.loop, &dc, NULL, &w.directory), PN_OK);
	cr_assert_eq(pn_directory_start(w.directory), PN_OK, "%s", pn_directory_error(w.directory));
	char sdir[300], ndir[300], daddr[64];
	snprintf(sdir, sizeof sdir, "%s/srv", w.dir);
	snprintf(ndir, sizeof ndir, "%s/n", w.dir);
	snprintf(daddr, sizeof daddr, "127.0.0.1:%u", pn_directory_port(w.directory));
	struct pn_server_config sc = {.listen = "127.0.0.1:0", .data_dir = sdir, .http_listen = "[::1]:0"};
	pn_server *s;
	cr_assert_eq(pn_server_new(&w.loop, &sc, NULL, &s), PN_OK);
	struct pn_node_config nc = {.listen = "127.0.0.1:0", .data_dir = ndir, .directory = daddr,
				    .http_listen = "localhost:0"};
	cr_assert_eq(pn_node_new(&w.loop, &nc, NULL, &w.a), PN_OK);
	cr_assert_eq(pn_node_start(w.a), PN_OK, "%s", pn_node_error(w.a));
	cr_assert_neq(pn_node_http_port(w.a), 0);
	cr_assert_neq(pn_directory_http_port(w.directory), 0);

	struct page_fetch f;
	char id[PN_NODE_ID_STR_LEN + 1];
	uint8_t raw[PN_ID_BYTES];
	pn_node_id(w.a, raw);
	pn_node_id_format(raw, id);
	const char *body = fetch(&w.loop, &f, pn_node_http_port(w.a), "/api/status");
	cr_assert(strstr(body, id) && strstr(body, "\"rates\""), "%.300s", body);
	body = fetch(&w.loop, &f, pn_node_http_port(w.a), "/");
	cr_assert(strstr(body, "<!DOCTYPE html>") == body && strstr(body, "</html>"), "the whole page");
	struct pn_directory_status ds;
	pn_directory_status(w.directory, &ds);
	pn_node_id_format(ds.node_id, id);
	body = fetch(&w.loop, &f, pn_directory_http_port(w.directory), "/api/status");
	cr_assert(strstr(body, "\"kind\":\"directory\"") && strstr(body, id), "%.300s", body);

	/* The server's page is on [::1], where IPv6 may be missing: then its
	 * start says so in one line. A page is never on an address other than
	 * loopback unless http_public. */
	if (pn_server_start(s) == PN_OK)
		cr_assert_neq(pn_server_http_port(s), 0);
	else
		cr_assert(strstr(pn_server_error(s), "status page") && !strchr(pn_server_error(s), '\n'), "%s",
			  pn_server_error(s));
	struct pn_node_config pub = nc;
	pub.http_listen = "0.0.0.0:0";
	pn_node *refused;
	cr_assert_eq(pn_node_new(&w.loop, &pub, NULL, &refused), PN_OK);
	cr_assert_eq(pn_node_start(refused), PN_EACCES);
	cr_assert(strstr(pn_node_error(refused), "not a loopback address"), "%s", pn_node_error(refused));
	cr_assert_eq(pn_node_http_port(refused), 0);

	pn_node_close(refused, closed_cb, &w);
	pn_server_close(s, closed_cb, &w);
	pn_node_close(w.a, closed_cb, &w);
	pn_directory_close(w.directory, closed_cb, &w);
	world_run(&w);
	cr_assert_eq(w.closed, 4);
	world_cleanup(&w);
}

Test(api, cid_of_file_is_the_id_a_node_gives_the_file)
{
	struct world w;
	world_init(&w);
	world_start(&w);
	char src[400], missing[400];
	snprintf(src, sizeof src, "%s/some file.bin", w.dir);
	snprintf(missing, sizeof missing, "%s/none", w.dir);
	free(write_file(src, 2 * PN_CHUNK_SIZE + 5, 21));
	struct pn_cid shared, computed;
	cr_assert_eq(pn_node_share(w.a, src, &shared), PN_OK);
	cr_assert_eq(pn_cid_of_file(src, &computed), PN_OK);
	cr_assert(memcmp(&shared, &computed, sizeof shared) == 0);
	cr_assert_eq(pn_cid_of_file(w.dir, &computed), PN_EINVAL, "a directory has no content ID");
	cr_assert_eq(pn_cid_of_file(missing, &computed), PN_EIO);
	pn_node_close(w.a, closed_cb, &w);
	pn_node_close(w.b, closed_cb, &w);
	pn_directory_close(w.directory, closed_cb, &w);
	world_run(&w);
	cr_assert_eq(w.closed, 3);
	world_cleanup(&w);
}
