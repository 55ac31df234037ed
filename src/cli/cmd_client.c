/* put, get, ls: the client side of the client-server model. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli.h"
#include "progress.h"

#define CLIENT_OPTS \
	"  --server ADDR:PORT        the server (or PEERNET_SERVER in the environment)\n" \
	"  --server-id ID            refuse any server whose node ID is not ID\n" \
	"  --data DIR                use the identity kept in DIR (default: a new one each run)\n" \
	"  --timeout SECONDS         give up when nothing comes from the server this long (default 30);\n" \
	"                            get dials a dropped connection again meanwhile and resumes\n" \
	"  --json                    machine-readable output\n" \
	"  -h, --help                this text\n"

static const char put_help[] =
	"usage: peernet put --server ADDR:PORT [OPTIONS] FILE...\n"
	"\n"
	"Uploads files to a server and prints 'ID  NAME' for each, like sha256sum.\n"
	"Content the server already holds is not sent again; an interrupted upload\n"
	"resumes where it stopped.\n\n" CLIENT_OPTS
	"  --progress / --no-progress  force the progress bar on or off (default: on a terminal)\n";

static const char get_help[] =
	"usage: peernet get --server ADDR:PORT [OPTIONS] ID [-o PATH]\n"
	"\n"
	"Downloads content by ID, verifying every chunk against the ID. Without -o the\n"
	"file is saved under its name in the current directory; '-o -' writes to\n"
	"standard output. An interrupted download resumes from PATH.pnpart.\n\n" CLIENT_OPTS
	"  -o, --output PATH         where to write the file ('-' for standard output)\n"
	"  -f, --force               overwrite PATH if it exists\n"
	"  --window N                chunk requests in flight (default 64)\n"
	"  --progress / --no-progress  force the progress bar on or off (default: on a terminal)\n";

static const char ls_help[] =
	"usage: peernet ls --server ADDR:PORT [OPTIONS]\n"
	"\n"
	"Lists what the server holds: ID, size and name of each file.\n\n" CLIENT_OPTS;

struct client_args {
	const char *cmd;
	struct pn_client_config cfg;
	struct pn_client_events ev;
	uint8_t server_id[PN_ID_BYTES];
	bool json;
	const char *output;
	bool force;
	int progress; /* -1 auto, 0 off, 1 on */
	struct cli_json_list items; /* --json: what put or ls has found so far */
	struct progress_bar bar;
	uv_loop_t loop;
	/* what done said */
	int err;
	char why[1024];
	uint64_t bytes_downloaded, bytes_resumed;
	double seconds;
	char name[PN_NAME_MAX + 1];
	char path[PATH_MAX];
	int stdout_errno;   /* get -o -: writing to standard output failed with this */
};

/* The library's lines go to stderr under the program's tag. */
static void log_line(void *ud, enum pn_log_level level, const char *line)
{
	pn_log_stderr_cb((void *)cli_log_get_tag(), level, line);
}

/* The library reports a transfer's progress; the program draws the bar. */
static void progress_report(void *ud, pn_transfer *t, const struct pn_transfer_progress *p)
{
	struct client_args *a = ud;
	struct progress_bar *bar = &a->bar;
	uint64_t now_ms = uv_now(&a->loop);
	switch (p->phase) {
	case PN_TRANSFER_START:
		pn_progress_init(bar, p->name, p->total, p->have, now_ms);
		pn_progress_draw(bar, now_ms);
		break;
	case PN_TRANSFER_UPDATE:
		bar->done = p->have;
		pn_progress_draw(bar, now_ms);
		break;
	case PN_TRANSFER_DONE:
		bar->done = p->have;
		pn_progress_done(bar);
		break;
	case PN_TRANSFER_ABORT:
		pn_progress_clear(bar);
		break;
	}
}

/* The end of the transfer: kept for the command to report once the loop is done. */
static void transfer_done(void *ud, pn_transfer *t, int err, const char *why, const struct pn_transfer_result *r)
{
	struct client_args *a = ud;
	a->err = err;
	snprintf(a->why, sizeof a->why, "%s", why);
	a->bytes_downloaded = r->bytes_downloaded;
	a->bytes_resumed = r->bytes_resumed;
	a->seconds = r->seconds;
	snprintf(a->name, sizeof a->name, "%s", r->name);
	snprintf(a->path, sizeof a->path, "%s", r->path);
}

/* The loop the transfer runs on, set up once the arguments are checked. */
static int loop_start(struct client_args *a)
{
	if (uv_loop_init(&a->loop) != 0) {
		cli_err(a->cmd, "cannot set up the event loop");
		return -1;
	}
	return 0;
}

/* Runs the loop until the transfer started (r: what starting it returned)
 * is done, and closes it. Returns the transfer's error code; a->why says why. */
static int loop_run(struct client_args *a, int r)
{
	if (r != PN_OK) {
		a->err = r;
		snprintf(a->why, sizeof a->why, "cannot start: %s", pn_strerror(r));
	}
	uv_run(&a->loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&a->loop) != 0)
		cli_err(a->cmd, "the event loop still had handles at the end");
	if (a->err == PN_EAGAIN) {
		a->err = PN_ECLOSED;
		snprintf(a->why, sizeof a->why, "the transfer ended without a result");
	}
	return a->err;
}

/* Parses the options every client command shares, plus -o/-f for get.
 * Returns -1 to go on, or an exit status. */
static int parse_client(const char *cmd, const char *help, int argc, char **argv, struct client_args *a)
{
	static const struct option longopts[] = {
		{"server", required_argument, NULL, 's'},
		{"server-id", required_argument, NULL, 'I'},
		{"data", required_argument, NULL, 'd'},
		{"timeout", required_argument, NULL, 't'},
		{"json", no_argument, NULL, 'j'},
		{"output", required_argument, NULL, 'o'},
		{"force", no_argument, NULL, 'f'},
		{"window", required_argument, NULL, 'w'},
		{"progress", no_argument, NULL, 'P'},
		{"no-progress", no_argument, NULL, 'N'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	bool is_get = !strcmp(cmd, "get");
	memset(a, 0, sizeof *a);
	a->cmd = cmd;
	/* The command's own error line says what went wrong; the connection layer's
	 * informational lines would only repeat it. PEERNET_LOG=info shows them. */
	if (!getenv("PEERNET_LOG"))
		cli_log_set_level(PN_LOG_WARN);
	a->cfg.log_level = cli_log_get_level();
	a->ev.ud = a;
	a->ev.log = log_line;
	a->ev.done = transfer_done;
	a->err = PN_EAGAIN;
	a->progress = -1;
	a->cfg.server = getenv("PEERNET_SERVER");
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, is_get ? "o:fh" : "h", longopts, NULL)) != -1) {
		switch (c) {
		case 's': a->cfg.server = optarg; break;
		case 'I':
			if (pn_node_id_parse(optarg, a->server_id) != 0)
				return cli_usage_err(cmd, "bad --server-id '%s': expected 64 hex digits", optarg);
			a->cfg.server_id = a->server_id;
			break;
		case 'd': a->cfg.data_dir = optarg; break;
		case 't':
			if (!cli_parse_seconds(optarg, &a->cfg.timeout_ms))
				return cli_usage_err(cmd, "bad --timeout '%s': expected seconds", optarg);
			break;
		case 'j': a->json = true; break;
		case 'o':
			if (!is_get)
				return cli_usage_err(cmd, "-o applies to get only");
			a->output = optarg;
			break;
		case 'f': a->force = true; break;
		case 'w':
			if (!cli_parse_uint(optarg, 1, 256, &a->cfg.window))
				return cli_usage_err(cmd, "bad --window '%s': expected 1 to 256", optarg);
			break;
		case 'P': a->progress = 1; break;
		case 'N': a->progress = 0; break;
		case 'h': fputs(help, stdout); return PN_EXIT_OK;
		default: return cli_usage_err(cmd, "bad option");
		}
	}
	if (!a->cfg.server)
		return cli_usage_err(cmd, "--server ADDR:PORT is required");
	/* The bar goes to stderr, and only when a person is watching stdout. */
	bool bar = a->progress < 0 ? !a->json && isatty(STDOUT_FILENO) && isatty(STDERR_FILENO) : a->progress;
	a->ev.progress = bar ? progress_report : NULL;
	return -1;
}

/* get -o -: the verified bytes in order go to standard output; a failed
 * write ends the transfer (the command says why). */
static void get_write_stdout(void *ud, pn_transfer *t, uint64_t offset, const void *buf, size_t len)
{
	struct client_args *a = ud;
	const uint8_t *p = buf;
	size_t off = 0;
	while (off < len && !a->stdout_errno) {
		ssize_t w = write(STDOUT_FILENO, p + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			a->stdout_errno = w < 0 ? errno : EIO;
			pn_transfer_cancel(t);
			return;
		}
		off += (size_t)w;
	}
}

static void put_print(void *ud, pn_transfer *t, const struct pn_put_info *f)
{
	struct client_args *a = ud;
	char id[PN_CID_STR_LEN + 1];
	pn_cid_format(&f->cid, id);
	if (a->json) {
		char *item;
		cli_json_list_add(&a->items, pn_put_json(f, &item) == PN_OK ? item : NULL);
		return;
	}
	printf("%s  %s\n", id, f->name);
	fflush(stdout);
}

int cmd_put(int argc, char **argv)
{
	struct client_args a;
	int r = parse_client("put", put_help, argc, argv, &a);
	if (r >= 0)
		return r;
	if (optind >= argc)
		return cli_usage_err("put", "no FILE given");
	if (loop_start(&a) != 0)
		return PN_EXIT_FAIL;
	a.ev.stored = put_print;
	r = loop_run(&a, pn_client_put(&a.loop, &a.cfg, &a.ev, (const char *const *)(argv + optind),
				       (size_t)(argc - optind), NULL));
	/* The array even after a failure: what was stored is listed. */
	if (a.json && cli_json_list_print("put", &a.items) != 0 && r == 0)
		return PN_EXIT_FAIL;
	if (r != 0) {
		cli_err("put", "%s", a.why);
		return PN_EXIT_FAIL;
	}
	return PN_EXIT_OK;
}

/* get goes to a server with --server (or PEERNET_SERVER), else to the running node. */
static bool wants_server(int argc, char **argv)
{
	if (getenv("PEERNET_SERVER"))
		return true;
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--server") || !strncmp(argv[i], "--server=", 9))
			return true;
	return false;
}

int cmd_get(int argc, char **argv)
{
	if (!wants_server(argc, argv))
		return cmd_get_node(argc, argv);
	struct client_args a;
	int r = parse_client("get", get_help, argc, argv, &a);
	if (r >= 0)
		return r;
	if (optind >= argc)
		return cli_usage_err("get", "no ID given");
	if (optind + 1 < argc)
		return cli_usage_err("get", "one ID at a time ('%s' is extra)", argv[optind + 1]);
	struct pn_cid cid;
	if (pn_cid_parse(argv[optind], &cid) != 0)
		return cli_usage_err("get", "'%s' is not a content ID (expected pn1 followed by 64 base32 characters, as put prints)",
				     argv[optind]);
	if (a.output && !strcmp(a.output, "-") && a.json)
		return cli_usage_err("get", "--json cannot be combined with -o - (both use standard output)");
	bool to_stdout = a.output && !strcmp(a.output, "-");
	if (loop_start(&a) != 0)
		return PN_EXIT_FAIL;
	a.ev.data = to_stdout ? get_write_stdout : NULL;
	unsigned flags = (a.force ? PN_GET_OVERWRITE : 0) | (to_stdout ? PN_GET_STREAM : 0);
	r = loop_run(&a, pn_client_get(&a.loop, &a.cfg, &a.ev, &cid, to_stdout ? NULL : a.output, flags, NULL));
	if (r != 0) {
		if (a.stdout_errno) /* the transfer was cancelled for it */
			snprintf(a.why, sizeof a.why, "writing to standard output: %s", strerror(a.stdout_errno));
		cli_err("get", "%s", a.why);
	}
	if (a.json) {
		struct pn_transfer_result res = {.cid = cid, .name = a.name, .path = a.path,
						 .bytes_downloaded = a.bytes_downloaded,
						 .bytes_resumed = a.bytes_resumed, .seconds = a.seconds};
		char *text;
		if (cli_json_print("get", pn_transfer_json(&cid, r, a.why, &res, &text) == PN_OK ? text : NULL) != 0)
			return PN_EXIT_FAIL;
	}
	return r != 0 ? PN_EXIT_FAIL : PN_EXIT_OK;
}

static void ls_print(void *ud, pn_transfer *t, const struct pn_cid *cid, const char *name)
{
	struct client_args *a = ud;
	char id[PN_CID_STR_LEN + 1];
	pn_cid_format(cid, id);
	if (a->json) {
		struct pn_share_info entry = {.cid = *cid, .name = name};
		char *item;
		cli_json_list_add(&a->items, pn_share_json(&entry, &item) == PN_OK ? item : NULL);
	} else {
		char size[16];
		pn_format_bytes(cid->size, size);
		printf("%s  %10s  %s\n", id, size, name);
	}
}

int cmd_ls(int argc, char **argv)
{
	struct client_args a;
	int r = parse_client("ls", ls_help, argc, argv, &a);
	if (r >= 0)
		return r;
	if (optind < argc)
		return cli_usage_err("ls", "unexpected argument '%s'", argv[optind]);
	if (loop_start(&a) != 0)
		return PN_EXIT_FAIL;
	a.ev.entry = ls_print;
	r = loop_run(&a, pn_client_ls(&a.loop, &a.cfg, &a.ev, NULL));
	/* The array even after a failure: what was listed before it. */
	if (a.json && cli_json_list_print("ls", &a.items) != 0 && r == 0)
		return PN_EXIT_FAIL;
	if (r != 0) {
		cli_err("ls", "%s", a.why);
		return PN_EXIT_FAIL;
	}
	return PN_EXIT_OK;
}
