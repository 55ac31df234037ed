/* The client API (pn_client_*), used the way a program embeds peernet: only
 * <peernet.h>, one uv_loop_t with a pn_server and several client transfers
 * at once, real TLS connections on loopback. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <peernet.h>
#include <uv.h>

#define SAFETY_MS 60000 /* a test that has not finished by then fails (the loop is stopped) */
#define SIZE_A (3u * PN_CHUNK_SIZE + 12345u)
#define SIZE_B (700u * 1024u)
#define MAX_SEEN 8

struct world;

/* What one transfer's events saw. */
struct op {
	struct world *w;
	int done_calls, err;
	bool done_inside_call;        /* done ran from inside a pn_client_* or pn_transfer_cancel call */
	char why[1024];
	struct pn_transfer_result res;
	char res_path[512];
	int progress_start, progress_end;
	uint64_t last_have;
	/* put */
	int stored;
	struct pn_cid stored_cid[MAX_SEEN];
	char stored_name[MAX_SEEN][64];
	/* ls */
	int entries;
	struct pn_cid entry_cid[MAX_SEEN];
	char entry_name[MAX_SEEN][64];
	/* streamed get */
	unsigned char *stream;
	size_t streamed, stream_cap;
	bool out_of_order;
	bool cancel_on_data;          /* cancel from inside the first data callback */
	pn_transfer *t;
};

struct world {
	uv_loop_t loop;
	uv_timer_t safety;
	bool timed_out;
	char dir[256];
	char addr[64];
	pn_server *srv;
	bool server_closed;
	bool in_call;
	int running;                  /* transfers of the current phase not done yet */
	void (*next_phase)(struct world *w);
	unsigned char *a, *b;         /* the contents of a.bin and b.bin */
	char path_a[300], path_b[300];
	struct op put, unknown, bad_addr, ls, get_path, get_stream, cancel_now, cancel_mid;
};

static void safety_cb(uv_timer_t *t)
{
	struct world *w = t->data;
	w->timed_out = true;
	uv_stop(t->loop);
}

static void server_closed_cb(void *ud)
{
	((struct world *)ud)->server_closed = true;
}

static void on_progress(void *ud, pn_transfer *t, const struct pn_transfer_progress *p)
{
	struct op *op = ud;
	cr_expect(p->have <= p->total);
	cr_expect_not_null(p->name);
	if (p->phase == PN_TRANSFER_START)
		op->progress_start++;
	if (p->phase == PN_TRANSFER_DONE || p->phase == PN_TRANSFER_ABORT)
		op->progress_end++;
	op->last_have = p->have;
}

static void on_data(void *ud, pn_transfer *t, uint64_t offset, const void *buf, size_t len)
{
	struct op *op = ud;
	if (op->cancel_on_data) {
		op->cancel_on_data = false;
		op->w->in_call = true;
		pn_transfer_cancel(t);
		pn_transfer_cancel(t); /* twice: still one done */
		op->w->in_call = false;
	}
	if (offset != op->streamed || op->streamed + len > op->stream_cap) {
		op->out_of_order = true;
		return;
	}
	memcpy(op->stream + op->streamed, buf, len);
	op->streamed += len;
}

static void on_stored(void *ud, pn_transfer *t, const struct pn_put_info *f)
{
	struct op *op = ud;
	if (op->stored < MAX_SEEN) {
		op->stored_cid[op->stored] = f->cid;
		snprintf(op->stored_name[op->stored], sizeof op->stored_name[0], "%s", f->name);
	}
	op->stored++;
}

static void on_entry(void *ud, pn_transfer *t, const struct pn_cid *cid, const char *name)
{
	struct op *op = ud;
	if (op->entries < MAX_SEEN) {
		op->entry_cid[op->entries] = *cid;
		snprintf(op->entry_name[op->entries], sizeof op->entry_name[0], "%s", name);
	}
	op->entries++;
}

static void on_done(void *ud, pn_transfer *t, int err, const char *why, const struct pn_transfer_result *r)
{
	struct op *op = ud;
	struct world *w = op->w;
	op->done_calls++;
	op->done_inside_call = w->in_call;
	op->err = err;
	cr_assert_not_null(why);
	cr_assert_not_null(r);
	snprintf(op->why, sizeof op->why, "%s", why);
	op->res = *r;
	snprintf(op->res_path, sizeof op->res_path, "%s", r->path);
	if (--w->running == 0 && w->next_phase)
		w->next_phase(w);
}

static struct pn_client_events events_for(struct op *op, struct world *w)
{
	op->w = w;
	struct pn_client_events ev = {.ud = op, .progress = on_progress, .data = on_data, .stored = on_stored,
				      .entry = on_entry, .done = on_done};
	return ev;
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

static bool one_line(const char *s)
{
	return s[0] && !strchr(s, '\n');
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
	snprintf(w->dir, sizeof w->dir, "/tmp/pn-api-client-XXXXXX");
	cr_assert_not_null(mkdtemp(w->dir));
}

static void world_cleanup(struct world *w)
{
	char cmd[400];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", w->dir);
	cr_expect_eq(system(cmd), 0);
	free(w->a);
	free(w->b);
	free(w->get_stream.stream);
	free(w->cancel_mid.stream);
}

static struct pn_client_config client_config(struct world *w)
{
	struct pn_client_config cfg = {.server = w->addr, .timeout_ms = 20000};
	return cfg;
}

/* Phase 3: every transfer is done; the server closes and the loop runs dry. */
static void phase_close(struct world *w)
{
	w->next_phase = NULL;
	pn_server_close(w->srv, server_closed_cb, w);
}

/* Phase 2, once the put is done: ls, a get to a path, a streamed get, a get
 * cancelled at once and one cancelled from its first data callback, all at
 * once. */
static void phase_fetch(struct world *w)
{
	cr_assert_eq(w->put.err, PN_OK, "put: %s", w->put.why);
	cr_assert_eq(w->put.stored, 2);
	struct pn_client_config cfg = client_config(w);
	struct pn_client_events ev;
	char out_a[320];
	snprintf(out_a, sizeof out_a, "%s/got-a.bin", w->dir);
	w->next_phase = phase_close;
	w->in_call = true;

	ev = events_for(&w->ls, w);
	cr_assert_eq(pn_client_ls(&w->loop, &cfg, &ev, NULL), PN_OK);
	w->running++;

	ev = events_for(&w->get_path, w);
	cr_assert_eq(pn_client_get(&w->loop, &cfg, &ev, &w->put.stored_cid[0], out_a, 0, NULL), PN_OK);
	w->running++;

	ev = events_for(&w->get_stream, w);
	w->get_stream.stream_cap = SIZE_B;
	w->get_stream.stream = malloc(SIZE_B);
	cr_assert_not_null(w->get_stream.stream);
	cr_assert_eq(pn_client_get(&w->loop, &cfg, &ev, &w->put.stored_cid[1], NULL, PN_GET_STREAM, NULL), PN_OK);
	w->running++;

	ev = events_for(&w->cancel_now, w);
	cr_assert_eq(pn_client_get(&w->loop, &cfg, &ev, &w->put.stored_cid[0], NULL, PN_GET_STREAM,
				   &w->cancel_now.t), PN_OK);
	cr_assert_not_null(w->cancel_now.t);
	w->running++;
	pn_transfer_cancel(w->cancel_now.t);

	ev = events_for(&w->cancel_mid, w);
	w->cancel_mid.stream_cap = SIZE_A;
	w->cancel_mid.stream = malloc(SIZE_A);
	w->cancel_mid.cancel_on_data = true;
	cr_assert_not_null(w->cancel_mid.stream);
	cr_assert_eq(pn_client_get(&w->loop, &cfg, &ev, &w->put.stored_cid[0], NULL, PN_GET_STREAM, NULL), PN_OK);
	w->running++;

	w->in_call = false;
}

Test(api_client, put_ls_and_gets_at_once_on_one_loop_with_a_server)
{
	struct world w;
	world_init(&w);
	char srvdir[300], cldir[300];
	snprintf(srvdir, sizeof srvdir, "%s/srv", w.dir);
	snprintf(cldir, sizeof cldir, "%s/client", w.dir);
	snprintf(w.path_a, sizeof w.path_a, "%s/a.bin", w.dir);
	snprintf(w.path_b, sizeof w.path_b, "%s/b.bin", w.dir);
	w.a = write_file(w.path_a, SIZE_A, 1);
	w.b = write_file(w.path_b, SIZE_B, 2);
	char tmpdir[300];
	snprintf(tmpdir, sizeof tmpdir, "%s/tmp", w.dir);
	cr_assert_eq(mkdir(tmpdir, 0700), 0);
	cr_assert_eq(setenv("TMPDIR", tmpdir, 1), 0); /* where the streamed gets keep their chunks */

	struct pn_server_config sc = {.listen = "127.0.0.1:0", .data_dir = srvdir};
	cr_assert_eq(pn_server_new(&w.loop, &sc, NULL, &w.srv), PN_OK);
	cr_assert_eq(pn_server_start(w.srv), PN_OK, "%s", pn_server_error(w.srv));
	snprintf(w.addr, sizeof w.addr, "127.0.0.1:%u", pn_server_port(w.srv));

	/* Phase 1: the put of both files, with a get of an ID the server does
	 * not hold and an ls of an address that is not one, at once. */
	struct pn_client_config cfg = client_config(&w);
	struct pn_client_events ev;
	w.next_phase = phase_fetch;
	w.in_call = true;

	cfg.data_dir = cldir; /* this client keeps an identity */
	ev = events_for(&w.put, &w);
	const char *paths[] = {w.path_a, w.path_b};
	pn_transfer *put = NULL;
	cr_assert_eq(pn_client_put(&w.loop, &cfg, &ev, paths, 2, &put), PN_OK);
	cr_assert_not_null(put);
	w.running++;
	cfg.data_dir = NULL;

	struct pn_cid unknown = {.size = 1000};
	memset(unknown.root, 0x5a, sizeof unknown.root);
	char out_unknown[320];
	snprintf(out_unknown, sizeof out_unknown, "%s/unknown.bin", w.dir);
	ev = events_for(&w.unknown, &w);
	cr_assert_eq(pn_client_get(&w.loop, &cfg, &ev, &unknown, out_unknown, 0, NULL), PN_OK);
	w.running++;

	struct pn_client_config bad = cfg;
	bad.server = "no-port-here";
	ev = events_for(&w.bad_addr, &w);
	cr_assert_eq(pn_client_ls(&w.loop, &bad, &ev, NULL), PN_OK);
	w.running++;
	w.in_call = false;

	uv_run(&w.loop, UV_RUN_DEFAULT);
	cr_assert(!w.timed_out, "the test did not finish in %d ms", SAFETY_MS);
	uv_close((uv_handle_t *)&w.safety, NULL);
	uv_run(&w.loop, UV_RUN_DEFAULT);
	cr_assert_eq(uv_loop_close(&w.loop), 0, "a handle was left open on the loop");
	cr_assert(w.server_closed);

	struct op *all[] = {&w.put, &w.unknown, &w.bad_addr, &w.ls, &w.get_path, &w.get_stream, &w.cancel_now,
			    &w.cancel_mid};
	for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
		cr_expect_eq(all[i]->done_calls, 1, "transfer %zu: done exactly once", i);
		cr_expect(!all[i]->done_inside_call, "transfer %zu: done came from the loop", i);
		cr_expect_eq(all[i]->progress_start, all[i]->progress_end, "transfer %zu: a bar that starts ends", i);
	}

	/* put: both stored, in order, under their names */
	cr_expect_eq(w.put.err, PN_OK);
	cr_expect_str_eq(w.put.why, "");
	cr_expect_str_eq(w.put.stored_name[0], "a.bin");
	cr_expect_str_eq(w.put.stored_name[1], "b.bin");
	cr_expect_eq(w.put.stored_cid[0].size, SIZE_A);
	cr_expect_eq(w.put.stored_cid[1].size, SIZE_B);
	cr_expect_eq(w.put.res.count, 2);
	cr_expect_eq(w.put.res.bytes_sent, (uint64_t)SIZE_A + SIZE_B);

	/* ls: sees both */
	cr_expect_eq(w.ls.err, PN_OK, "%s", w.ls.why);
	cr_expect_eq(w.ls.entries, 2);
	cr_expect_eq(w.ls.res.count, 2);
	for (int i = 0; i < 2; i++) {
		bool seen = false;
		for (int j = 0; j < w.ls.entries && j < MAX_SEEN; j++)
			if (!memcmp(&w.ls.entry_cid[j], &w.put.stored_cid[i], sizeof(struct pn_cid)) &&
			    !strcmp(w.ls.entry_name[j], w.put.stored_name[i]))
				seen = true;
		cr_expect(seen, "ls lists %s", w.put.stored_name[i]);
	}

	/* get to a path: the file, nothing left beside it */
	char out_a[320], part[340];
	snprintf(out_a, sizeof out_a, "%s/got-a.bin", w.dir);
	snprintf(part, sizeof part, "%s.pnpart", out_a);
	cr_expect_eq(w.get_path.err, PN_OK, "%s", w.get_path.why);
	cr_expect(file_equals(out_a, w.a, SIZE_A), "the file written equals a.bin");
	cr_expect(access(part, F_OK) != 0, "no .pnpart left");
	cr_expect_str_eq(w.get_path.res_path, out_a);
	cr_expect_eq(w.get_path.res.bytes_downloaded, SIZE_A);
	cr_expect_eq(w.get_path.last_have, SIZE_A);

	/* streamed get: every byte in order, and no file */
	cr_expect_eq(w.get_stream.err, PN_OK, "%s", w.get_stream.why);
	cr_expect(!w.get_stream.out_of_order);
	cr_expect_eq(w.get_stream.streamed, SIZE_B);
	cr_expect(memcmp(w.get_stream.stream, w.b, SIZE_B) == 0, "the bytes streamed equal b.bin");
	cr_expect_str_eq(w.get_stream.res_path, "");

	/* cancelled at once, and from inside its data callback */
	cr_expect_eq(w.cancel_now.err, PN_ECANCELED);
	cr_expect(one_line(w.cancel_now.why) && strstr(w.cancel_now.why, "cancelled"), "%s", w.cancel_now.why);
	cr_expect_eq(w.cancel_now.streamed, 0);
	cr_expect_eq(w.cancel_mid.err, PN_ECANCELED, "%s", w.cancel_mid.why);
	cr_expect(one_line(w.cancel_mid.why), "%s", w.cancel_mid.why);
	cr_expect(!w.cancel_mid.out_of_order);
	cr_expect_lt(w.cancel_mid.streamed, SIZE_A, "no more data after the cancel");

	/* an unknown ID, a bad address: one line each */
	cr_expect_eq(w.unknown.err, PN_ENOTFOUND, "%s", w.unknown.why);
	cr_expect(one_line(w.unknown.why) && strstr(w.unknown.why, "no content with ID"), "%s", w.unknown.why);
	cr_expect(access(out_unknown, F_OK) != 0);
	cr_expect_eq(w.bad_addr.err, PN_EINVAL, "%s", w.bad_addr.why);
	cr_expect(one_line(w.bad_addr.why) && strstr(w.bad_addr.why, "bad server address 'no-port-here'"), "%s",
		  w.bad_addr.why);

	/* nothing left in $TMPDIR by the streamed gets, cancelled or not */
	DIR *d = opendir(tmpdir);
	cr_assert_not_null(d);
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		cr_expect(!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."), "left in TMPDIR: %s", de->d_name);
	closedir(d);
	world_cleanup(&w);
}

Test(api_client, bad_arguments_start_nothing)
{
	uv_loop_t loop;
	cr_assert_eq(uv_loop_init(&loop), 0);
	struct pn_cid cid = {.size = 1};
	struct pn_client_config cfg = {.server = "127.0.0.1:1"};
	struct pn_client_config no_server = {0};
	pn_transfer *t = (pn_transfer *)&cid;
	cr_expect_eq(pn_client_get(&loop, &no_server, NULL, &cid, NULL, 0, &t), PN_EINVAL);
	cr_expect_null(t);
	cr_expect_eq(pn_client_get(&loop, &cfg, NULL, NULL, NULL, 0, &t), PN_EINVAL);
	cr_expect_eq(pn_client_get(&loop, &cfg, NULL, &cid, NULL, 0x80, &t), PN_EINVAL);
	cr_expect_eq(pn_client_get(NULL, &cfg, NULL, &cid, NULL, 0, &t), PN_EINVAL);
	cr_expect_eq(pn_client_put(&loop, &cfg, NULL, NULL, 0, &t), PN_EINVAL);
	cr_expect_eq(pn_client_ls(&loop, NULL, NULL, &t), PN_EINVAL);
	cr_expect_null(t);
	cr_expect_eq(uv_run(&loop, UV_RUN_NOWAIT), 0, "nothing was put on the loop");
	cr_expect_eq(uv_loop_close(&loop), 0);
}

Test(api_client, a_transfer_without_events_still_ends_and_closes)
{
	uv_loop_t loop;
	cr_assert_eq(uv_loop_init(&loop), 0);
	struct pn_client_config cfg = {.server = "127.0.0.1:1"}; /* nobody listens on port 1 */
	pn_transfer *t = NULL;
	cr_assert_eq(pn_client_ls(&loop, &cfg, NULL, &t), PN_OK);
	cr_assert_not_null(t);
	cr_expect_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
	cr_expect_eq(uv_loop_close(&loop), 0);
}
