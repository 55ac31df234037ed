/* two_nodes: a directory and two nodes in one process, on one loop; the
 * first shares a file, the second finds it by a word of its name and
 * downloads it, streamed to a callback as it arrives.
 *
 *   two_nodes FILE WORKDIR
 *
 * Prints the content ID and how many bytes were streamed; exits 0 when the
 * copy in WORKDIR/copy equals FILE byte for byte.
 * Build: cc two_nodes.c $(pkg-config --cflags --libs peernet) */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <peernet.h>
#include <uv.h>

struct app {
	pn_directory *dir;
	pn_node *a, *b;
	char copy[4096];
	uint64_t streamed;
	int status;
};

static void close_all(struct app *app)
{
	pn_node_close(app->a, NULL, NULL);
	pn_node_close(app->b, NULL, NULL);
	pn_directory_close(app->dir, NULL, NULL);
}

static void on_data(void *ud, pn_download *d, uint64_t offset, const void *buf, size_t len)
{
	struct app *app = ud;
	app->streamed += len; /* a player would play these bytes now */
}

static void on_done(void *ud, pn_download *d, int err, const struct pn_download_result *r, const char *why)
{
	struct app *app = ud;
	if (err == PN_OK) {
		printf("copied %s (%llu bytes streamed) to %s\n", r->name, (unsigned long long)app->streamed, r->path);
		app->status = 0;
	} else {
		fprintf(stderr, "download failed: %s\n", why);
	}
	close_all(app);
}

static void on_hit(void *ud, const struct pn_search_hit *hit)
{
	struct app *app = ud;
	char id[PN_CID_STR_LEN + 1];
	pn_cid_format(&hit->cid, id);
	printf("found %s  %.*s\n", id, (int)hit->name_len, hit->name);
	if (pn_node_get(app->b, &hit->cid, app->copy, PN_GET_STREAM | PN_GET_OVERWRITE, NULL, NULL) != PN_OK) {
		fprintf(stderr, "get: %s\n", pn_node_error(app->b));
		close_all(app);
	}
}

static void on_search_done(void *ud, int err, const char *why)
{
	if (err != PN_OK) {
		fprintf(stderr, "search failed: %s\n", why);
		close_all(ud);
	}
}

static int start_node(uv_loop_t *loop, struct app *app, const char *workdir, const char *name, uint16_t dport,
		      pn_node **out)
{
	char data[4096], directory[64];
	snprintf(data, sizeof data, "%s/%s", workdir, name);
	snprintf(directory, sizeof directory, "127.0.0.1:%u", dport);
	struct pn_node_config cfg = {.listen = "127.0.0.1:0", .data_dir = data, .directory = directory};
	struct pn_node_events ev = {.ud = app, .data = on_data, .done = on_done};
	if (pn_node_new(loop, &cfg, &ev, out) != PN_OK)
		return -1;
	if (pn_node_start(*out) != PN_OK) {
		fprintf(stderr, "node %s: %s\n", name, pn_node_error(*out));
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s FILE WORKDIR\n", argv[0]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct app app = {.status = 1};
	snprintf(app.copy, sizeof app.copy, "%s/copy", argv[2]);
	struct pn_directory_config dc = {.listen = "127.0.0.1:0"};
	struct pn_cid cid;
	const char *base = strrchr(argv[1], '/') ? strrchr(argv[1], '/') + 1 : argv[1];
	char word[64];
	snprintf(word, sizeof word, "%.*s", (int)strcspn(base, " ._-"), base); /* the name's first word */
	if (pn_directory_new(&loop, &dc, NULL, &app.dir) != PN_OK || pn_directory_start(app.dir) != PN_OK ||
	    start_node(&loop, &app, argv[2], "a", pn_directory_port(app.dir), &app.a) != 0 ||
	    start_node(&loop, &app, argv[2], "b", pn_directory_port(app.dir), &app.b) != 0) {
		close_all(&app);
	} else if (pn_node_share(app.a, argv[1], &cid) < 0) {
		fprintf(stderr, "share: %s\n", pn_node_error(app.a));
		close_all(&app);
	} else if (pn_node_search(app.b, word, on_hit, on_search_done, &app, NULL) != PN_OK) {
		fprintf(stderr, "search: %s\n", pn_node_error(app.b));
		close_all(&app);
	}
	uv_run(&loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&loop) != 0)
		app.status = 1;
	if (app.status == 0) { /* the copy must equal the source */
		FILE *f1 = fopen(argv[1], "rb"), *f2 = fopen(app.copy, "rb");
		int c1 = 0, c2 = 0;
		while (f1 && f2 && (c1 = getc(f1)) == (c2 = getc(f2)) && c1 != EOF)
			;
		if (!f1 || !f2 || c1 != c2) {
			fprintf(stderr, "the copy differs from %s\n", argv[1]);
			app.status = 1;
		}
		if (f1)
			fclose(f1);
		if (f2)
			fclose(f2);
	}
	return app.status;
}
