/* embed_get: a peernet node inside a program's own libuv loop, downloading
 * one content ID with a progress line.
 *
 *   embed_get DIRECTORY_HOST:PORT CONTENT_ID OUTPUT_FILE [DATA_DIR]
 *
 * The node joins the directory, finds the providers of CONTENT_ID, fetches
 * from all of them at once, verifies every chunk and writes OUTPUT_FILE.
 * Build: cc embed_get.c $(pkg-config --cflags --libs peernet) */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <peernet.h>
#include <uv.h>

struct app {
	pn_node *node;
	int status;                    /* the exit status */
};

static void on_progress(void *ud, pn_download *d, const struct pn_progress *p)
{
	fprintf(stderr, "\r%s: %llu of %llu bytes from %u peers   ", p->name[0] ? p->name : "(name not known yet)",
		(unsigned long long)p->have, (unsigned long long)p->total, p->peers);
}

static void on_done(void *ud, pn_download *d, int err, const struct pn_download_result *r, const char *why)
{
	struct app *app = ud;
	if (err == PN_OK) {
		fprintf(stderr, "\rdone: %s, %llu bytes in %.2f s -> %s\n", r->name,
			(unsigned long long)r->bytes_downloaded, r->seconds, r->path);
		app->status = 0;
	} else {
		fprintf(stderr, "\rdownload failed: %s\n", why);
	}
	pn_node_close(app->node, NULL, NULL); /* the loop ends once the node is closed */
}

int main(int argc, char **argv)
{
	if (argc < 4 || argc > 5) {
		fprintf(stderr, "usage: %s DIRECTORY_HOST:PORT CONTENT_ID OUTPUT_FILE [DATA_DIR]\n", argv[0]);
		return 2;
	}
	struct pn_cid cid;
	if (pn_cid_parse(argv[2], &cid) != PN_OK) {
		fprintf(stderr, "%s: not a content ID: %s\n", argv[0], argv[2]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	uv_loop_t *loop = uv_default_loop();
	struct app app = {.status = 1};
	struct pn_node_config cfg = {
		.listen = "127.0.0.1:0",
		.data_dir = argc == 5 ? argv[4] : "embed_get-data",
		.discovery = PN_DISCOVERY_DIRECTORY,
		.directory = argv[1],
	};
	struct pn_node_events ev = {.ud = &app, .progress = on_progress, .done = on_done};
	if (pn_node_new(loop, &cfg, &ev, &app.node) != PN_OK) {
		fprintf(stderr, "%s: bad node configuration\n", argv[0]);
		return 1;
	}
	if (pn_node_start(app.node) != PN_OK ||
	    pn_node_get(app.node, &cid, argv[3], PN_GET_OVERWRITE, NULL, NULL) != PN_OK) {
		fprintf(stderr, "%s: %s\n", argv[0], pn_node_error(app.node));
		pn_node_close(app.node, NULL, NULL);
	}
	uv_run(loop, UV_RUN_DEFAULT);
	uv_loop_close(loop);
	return app.status;
}
