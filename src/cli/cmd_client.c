/* put, get, ls: the client side of the client-server model. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli/cli.h"
#include "crypto/crypto.h"
#include "node/client.h"
#include "cli/progress.h"
#include "util/json.h"
#include "util/log.h"

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
	struct pn_client_opts o;
	uint8_t server_id[PN_ID_BYTES];
	bool json;
	const char *output;
	bool force;
	int progress; /* -1 auto, 0 off, 1 on */
	json_t *items;      /* --json: what put or ls has found so far */
	bool json_oom;      /* an item could not be added */
	char error[PN_CLIENT_ERROR_MAX];
	struct pn_logger log;
	struct progress_bar bar;
};

/* The library reports a transfer's progress; the program draws the bar. */
static void progress_report(void *ud, enum pn_progress_event ev, const char *label, uint64_t done, uint64_t total,
			    uint64_t now_ms)
{
	struct progress_bar *bar = ud;
	switch (ev) {
	case PN_PROGRESS_START:
		pn_progress_init(bar, label, total, done, now_ms);
		pn_progress_draw(bar, now_ms);
		break;
	case PN_PROGRESS_UPDATE:
		bar->done = done;
		pn_progress_draw(bar, now_ms);
		break;
	case PN_PROGRESS_DONE:
		bar->done = done;
		pn_progress_done(bar);
		break;
	case PN_PROGRESS_ABORT:
		pn_progress_clear(bar);
		break;
	}
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
	/* The command's own error line says what went wrong; the connection layer's
	 * informational lines would only repeat it. PEERNET_LOG=info shows them. */
	if (!getenv("PEERNET_LOG"))
		cli_log_set_level(PN_LOG_WARN);
	a->log = cli_logger(cli_log_get_tag());
	a->o.log = &a->log;
	a->progress = -1;
	a->o.error = a->error;
	a->o.server = getenv("PEERNET_SERVER");
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, is_get ? "o:fh" : "h", longopts, NULL)) != -1) {
		switch (c) {
		case 's': a->o.server = optarg; break;
		case 'I':
			if (pn_node_id_parse(optarg, a->server_id) != 0)
				return cli_usage_err(cmd, "bad --server-id '%s': expected 64 hex digits", optarg);
			a->o.server_id = a->server_id;
			break;
		case 'd': a->o.data_dir = optarg; break;
		case 't':
			if (!cli_parse_seconds(optarg, &a->o.timeout_ms))
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
			if (!cli_parse_uint(optarg, 1, 256, &a->o.window))
				return cli_usage_err(cmd, "bad --window '%s': expected 1 to 256", optarg);
			break;
		case 'P': a->progress = 1; break;
		case 'N': a->progress = 0; break;
		case 'h': fputs(help, stdout); return PN_EXIT_OK;
		default: return cli_usage_err(cmd, "bad option");
		}
	}
	if (!a->o.server)
		return cli_usage_err(cmd, "--server ADDR:PORT is required");
	/* The bar goes to stderr, and only when a person is watching stdout. */
	bool bar = a->progress < 0 ? !a->json && isatty(STDOUT_FILENO) && isatty(STDERR_FILENO) : a->progress;
	a->o.progress = bar ? progress_report : NULL;
	a->o.progress_ud = &a->bar;
	return -1;
}

static void put_print(void *ud, const struct pn_put_result *r)
{
	struct client_args *a = ud;
	char id[PN_CID_STR_LEN + 1];
	pn_cid_format(&r->cid, id);
	if (a->json) {
		json_t *o = pn_json_with_text(json_pack("{s:s}", "id", id), "name", r->name);
		o = pn_json_merge(o, json_pack("{s:I,s:I}", "size", (json_int_t)r->cid.size, "bytes_sent",
						(json_int_t)r->bytes_sent));
		if (!o || json_array_append_new(a->items, o) != 0)
			a->json_oom = true;
		return;
	}
	printf("%s  %s\n", id, r->name);
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
	if (a.json && !(a.items = json_array())) {
		cli_err("put", "out of memory");
		return PN_EXIT_FAIL;
	}
	r = pn_client_put(&a.o, argv + optind, argc - optind, put_print, &a);
	/* The array even after a failure: what was stored is listed. */
	if (a.json) {
		if (a.json_oom) {
			json_decref(a.items);
			a.items = NULL;
		}
		if (cli_json_print("put", a.items) != 0 && r == 0)
			return PN_EXIT_FAIL;
	}
	if (r != 0) {
		cli_err("put", "%s", a.error);
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
	struct pn_get_result res;
	r = pn_client_get(&a.o, &cid, a.output, a.force, &res);
	if (r != 0) {
		cli_err("get", "%s", a.error);
		if (a.json) {
			char id[PN_CID_STR_LEN + 1];
			pn_cid_format(&cid, id);
			json_t *o = pn_json_with_text(json_pack("{s:s,s:b}", "id", id, "ok", 0), "error", a.error);
			o = pn_json_merge(o, json_pack("{s:I,s:I}", "bytes_downloaded", (json_int_t)res.bytes_downloaded,
							"bytes_resumed", (json_int_t)res.bytes_resumed));
			cli_json_print("get", o);
		}
		return PN_EXIT_FAIL;
	}
	if (a.json) {
		char id[PN_CID_STR_LEN + 1];
		pn_cid_format(&cid, id);
		double mibs = res.seconds > 0 ? (double)res.bytes_downloaded / res.seconds / 1048576.0 : 0;
		json_t *o = json_pack("{s:s,s:b}", "id", id, "ok", 1);
		o = pn_json_with_text(pn_json_with_text(o, "name", res.name), "path", res.path);
		o = pn_json_merge(o, json_pack("{s:I,s:I,s:I,s:f,s:f}", "size", (json_int_t)cid.size, "bytes_downloaded",
						(json_int_t)res.bytes_downloaded, "bytes_resumed",
						(json_int_t)res.bytes_resumed, "seconds", round(res.seconds * 1000) / 1000,
						"mib_per_s", round(mibs * 10) / 10));
		if (cli_json_print("get", o) != 0)
			return PN_EXIT_FAIL;
	}
	return PN_EXIT_OK;
}

struct ls_state {
	json_t *items;       /* --json: the listing so far; NULL without --json */
	bool oom;            /* an item could not be added */
};

static void ls_print(void *ud, const struct pn_cid *cid, const char *name)
{
	struct ls_state *st = ud;
	char id[PN_CID_STR_LEN + 1];
	pn_cid_format(cid, id);
	if (st->items) {
		json_t *o = pn_json_with_text(json_pack("{s:s}", "id", id), "name", name);
		o = pn_json_merge(o, json_pack("{s:I}", "size", (json_int_t)cid->size));
		if (!o || json_array_append_new(st->items, o) != 0)
			st->oom = true;
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
	struct ls_state st = {0};
	if (a.json && !(st.items = json_array())) {
		cli_err("ls", "out of memory");
		return PN_EXIT_FAIL;
	}
	r = pn_client_ls(&a.o, ls_print, &st);
	/* The array even after a failure: what was listed before it. */
	if (a.json) {
		if (st.oom) {
			json_decref(st.items);
			st.items = NULL;
		}
		if (cli_json_print("ls", st.items) != 0 && r == 0)
			return PN_EXIT_FAIL;
	}
	if (r != 0) {
		cli_err("ls", "%s", a.error);
		return PN_EXIT_FAIL;
	}
	return PN_EXIT_OK;
}
