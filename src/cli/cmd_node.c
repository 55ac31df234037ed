/* node, directory, and the commands that talk to a running node through its
 * control socket: add, search, status, stop, and get without --server. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include "cli.h"
#include "progress.h"

static const char node_help[] =
	"usage: peernet node --listen ADDR:PORT [--data DIR] --discovery directory --directory ADDR:PORT\n"
	"       peernet node --listen ADDR:PORT [--data DIR] --discovery flood --bootstrap ADDR:PORT...\n"
	"                    [--share PATH]... [--up-rate RATE] [--down-rate RATE]\n"
	"\n"
	"Runs a peer: serves what it holds, finds providers through the discovery\n"
	"method, downloads from all of them at once, and takes commands (add, search,\n"
	"get, status, stop) on a control socket in its data directory.\n"
	"\n"
	"  --listen ADDR:PORT        where other peers reach this node\n"
	"  --data DIR                identity, store and control socket (default ~/.local/share/peernet)\n"
	"  --control PATH            the control socket (default DATA/control.sock)\n"
	"  --discovery MODE          directory (central look-up service) or flood (ask the neighbours)\n"
	"  --directory ADDR:PORT     the look-up service (directory mode)\n"
	"  --bootstrap ADDR:PORT     a node to join through (flood mode; repeatable); good peers are\n"
	"                            remembered in DATA/peers and tried first next time\n"
	"  --min-neighbors N         flood mode: keep at least N neighbours (default 4)\n"
	"  --max-neighbors N         flood mode: accept at most N neighbours (default 8)\n"
	"  --ttl N                   flood mode: hop limit of queries, 1 to 7 (default 5)\n"
	"  --plain-flood             flood mode: send each query once with the full hop limit\n"
	"                            (default: expanding ring, widening only while too few answer)\n"
	"  --announce HOST           the host the directory gives out for this node (default: as seen)\n"
	"  --bind-interface IFACE    keep all of the node's traffic on this network interface (e.g. a\n"
	"                            VPN's tun0): nothing is sent or accepted through any other\n"
	"  --share PATH              share a file, or the files in a directory (repeatable)\n"
	"  --seed-server ADDR:PORT   use a `peernet serve` server as one more provider of every\n"
	"                            download, like a web seed (repeatable)\n"
	"  --up-rate RATE            cap uploads, e.g. 500K, 2M (bytes/s; K, M, G = 1024^n)\n"
	"  --down-rate RATE          cap downloads\n"
	"  --peer-timeout SECONDS    get and search sent before the directory or a neighbour is\n"
	"                            reached wait this long for it; a get fails when no provider\n"
	"                            is reachable this long (default 30)\n"
	"  --upload-slots N          peers uploaded to at once, besides one optimistic slot (default 4)\n"
	"  --port-file PATH          write the bound port to PATH once listening\n"
	CLI_HTTP_HELP
	"                            (POST /api/stop needs the token in DATA/http-token)\n"
	"  -v, --verbose             log more\n"
	"  -h, --help                this text\n";

static const char directory_help[] =
	"usage: peernet directory --listen ADDR:PORT [--data DIR]\n"
	"\n"
	"Runs the central look-up service: nodes register what they offer, and ask\n"
	"who provides a content ID or search names by keywords.\n"
	"\n"
	"  --listen ADDR:PORT        address to listen on\n"
	"  --data DIR                keep the identity here (default: a new one each start)\n"
	"  --heartbeat SECONDS       how often nodes must check in (default 10; dropped after 3 missed)\n"
	"  --max-nodes N             registered nodes at most (default 10000)\n"
	"  --rate N                  requests per second per connection (default 200)\n"
	"  --port-file PATH          write the bound port to PATH once listening\n"
	CLI_HTTP_HELP
	"  -v, --verbose             log more\n"
	"  -h, --help                this text\n";

static bool parse_rate_opt(const char *cmd, const char *opt, const char *arg, uint64_t *out)
{
	if (pn_parse_rate(arg, out) == 0)
		return true;
	cli_usage_err(cmd, "bad %s '%s': expected bytes per second like 500K or 2M", opt, arg);
	return false;
}

#define NODE_CLI_MAX_LIST 64 /* --share, --bootstrap, --seed-server: each at most this often */

/* The node on this process's loop, and what stops it. */
struct node_run {
	pn_node *node;
	struct cli_log lg;
	uv_signal_t sig_int, sig_term;
	bool closing;
};

static void node_run_close(struct node_run *run)
{
	if (run->closing)
		return;
	run->closing = true;
	pn_node_close(run->node, NULL, NULL);
	uv_close((uv_handle_t *)&run->sig_int, NULL);
	uv_close((uv_handle_t *)&run->sig_term, NULL);
}

static void node_signal_cb(uv_signal_t *s, int signum)
{
	node_run_close(s->data);
}

static void node_stop_requested(void *ud, pn_node *n)
{
	node_run_close(ud);
}

static void node_log_cb(void *ud, enum pn_log_level level, const char *line)
{
	struct node_run *run = ud;
	if (run->lg.cb)
		run->lg.cb(run->lg.ud, level, line);
}

static void node_log(const struct cli_log *lg, enum pn_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void node_log(const struct cli_log *lg, enum pn_log_level level, const char *fmt, ...)
{
	if (!lg->cb || level > lg->level)
		return;
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	lg->cb(lg->ud, level, line);
}

/* --share: a file, or the regular files directly inside a directory. */
static void node_share_path(pn_node *n, const struct cli_log *lg, const char *path)
{
	struct stat st;
	if (stat(path, &st) != 0) {
		node_log(lg, PN_LOG_WARN, "cannot share %s: %s", path, strerror(errno));
		return;
	}
	if (S_ISDIR(st.st_mode)) {
		DIR *dir = opendir(path);
		struct dirent *e;
		int count = 0;
		while (dir && (e = readdir(dir)) && count < 10000) {
			if (e->d_name[0] == '.')
				continue;
			char sub[PATH_MAX];
			if (snprintf(sub, sizeof sub, "%s/%s", path, e->d_name) >= (int)sizeof sub)
				continue;
			if (stat(sub, &st) == 0 && S_ISREG(st.st_mode)) {
				node_share_path(n, lg, sub);
				count++;
			}
		}
		if (dir)
			closedir(dir);
		return;
	}
	struct pn_cid cid;
	int r = pn_node_share(n, path, &cid);
	if (r != PN_OK && r != PN_EEXIST)
		node_log(lg, PN_LOG_WARN, "%s", pn_node_error(n));
}

/* The node listens: its two lines on stdout (scripts read "node-id"), then
 * the port file. */
static void node_announce(pn_node *n, const char *control_path, const char *port_file)
{
	struct pn_node_status st;
	pn_node_status(n, &st);
	char idhex[PN_NODE_ID_STR_LEN + 1];
	pn_node_id_format(st.node_id, idhex);
	printf("peernet node %s listening on port %u, discovery %s, %zu files shared, control %s\n", idhex, st.port,
	       st.discovery == PN_DISCOVERY_DIRECTORY ? "directory" : st.discovery == PN_DISCOVERY_FLOOD ? "flood" : "dht",
	       st.shares, control_path);
	printf("node-id %s\n", idhex);
	fflush(stdout);
	if (port_file) {
		FILE *f = fopen(port_file, "w");
		if (f) {
			fprintf(f, "%u\n", st.port);
			fclose(f);
		}
	}
}

int cmd_node(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"listen", required_argument, NULL, 'l'},
		{"data", required_argument, NULL, 'd'},
		{"control", required_argument, NULL, 'c'},
		{"discovery", required_argument, NULL, 'D'},
		{"directory", required_argument, NULL, 'r'},
		{"announce", required_argument, NULL, 'a'},
		{"bind-interface", required_argument, NULL, 'I'},
		{"share", required_argument, NULL, 's'},
		{"up-rate", required_argument, NULL, 'U'},
		{"down-rate", required_argument, NULL, 'W'},
		{"peer-timeout", required_argument, NULL, 'T'},
		{"upload-slots", required_argument, NULL, 'S'},
		{"port-file", required_argument, NULL, 'p'},
		{"bootstrap", required_argument, NULL, 'b'},
		{"min-neighbors", required_argument, NULL, 'n'},
		{"max-neighbors", required_argument, NULL, 'x'},
		{"ttl", required_argument, NULL, 't'},
		{"plain-flood", no_argument, NULL, 'F'},
		{"seed-server", required_argument, NULL, 'E'},
		CLI_HTTP_LONGOPTS,
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct pn_node_config o = {0};
	const char *bootstrap[NODE_CLI_MAX_LIST], *seed_servers[NODE_CLI_MAX_LIST], *shares[NODE_CLI_MAX_LIST];
	size_t nshares = 0;
	const char *port_file = NULL, *http_port_file = NULL;
	uint32_t v;
	char data[PATH_MAX], control[PATH_MAX + 32];
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "l:d:vh", longopts, NULL)) != -1) {
		switch (c) {
		case 'l': o.listen = optarg; break;
		case 'd': o.data_dir = optarg; break;
		case 'c': o.control_path = optarg; break;
		case 'D':
			if (!strcmp(optarg, "directory"))
				o.discovery = PN_DISCOVERY_DIRECTORY;
			else if (!strcmp(optarg, "flood"))
				o.discovery = PN_DISCOVERY_FLOOD;
			else if (!strcmp(optarg, "dht"))
				return cli_usage_err("node", "--discovery dht is not available in this version; use directory or flood");
			else
				return cli_usage_err("node", "bad --discovery '%s': expected directory or flood", optarg);
			break;
		case 'b':
			if (o.nbootstrap >= NODE_CLI_MAX_LIST)
				return cli_usage_err("node", "at most %d --bootstrap options", NODE_CLI_MAX_LIST);
			if (!pn_addr_valid(optarg))
				return cli_usage_err("node", "bad --bootstrap '%s': expected HOST:PORT", optarg);
			bootstrap[o.nbootstrap++] = optarg;
			break;
		case 'E':
			if (o.nseed_servers >= NODE_CLI_MAX_LIST)
				return cli_usage_err("node", "at most %d --seed-server options", NODE_CLI_MAX_LIST);
			if (!pn_addr_valid(optarg))
				return cli_usage_err("node", "bad --seed-server '%s': expected HOST:PORT", optarg);
			seed_servers[o.nseed_servers++] = optarg;
			break;
		case 'n':
			if (!cli_parse_uint(optarg, 1, 64, &v))
				return cli_usage_err("node", "bad --min-neighbors '%s': expected 1 to 64", optarg);
			o.min_neighbors = v;
			break;
		case 'x':
			if (!cli_parse_uint(optarg, 1, 64, &v))
				return cli_usage_err("node", "bad --max-neighbors '%s': expected 1 to 64", optarg);
			o.max_neighbors = v;
			break;
		case 't':
			if (!cli_parse_uint(optarg, 1, 7, &v))
				return cli_usage_err("node", "bad --ttl '%s': expected a hop limit of 1 to 7", optarg);
			o.ttl = (uint8_t)v;
			break;
		case 'F': o.plain_flood = true; break;
		case 'r': o.directory = optarg; break;
		case 'a': o.announce_host = optarg; break;
		case 'I':
			if (!optarg[0] || strlen(optarg) > 15)
				return cli_usage_err("node", "bad --bind-interface '%s': an interface name of 1 to 15 characters", optarg);
			o.bind_interface = optarg;
			break;
		case 's':
			if (nshares >= NODE_CLI_MAX_LIST)
				return cli_usage_err("node", "at most %d --share options", NODE_CLI_MAX_LIST);
			shares[nshares++] = optarg;
			break;
		case 'U': if (!parse_rate_opt("node", "--up-rate", optarg, &o.up_rate)) return PN_EXIT_USAGE; break;
		case 'W': if (!parse_rate_opt("node", "--down-rate", optarg, &o.down_rate)) return PN_EXIT_USAGE; break;
		case 'T':
			if (!cli_parse_seconds(optarg, &o.peer_timeout_ms))
				return cli_usage_err("node", "bad --peer-timeout '%s': expected seconds", optarg);
			break;
		case 'S':
			if (!cli_parse_uint(optarg, 1, 64, &o.upload_slots))
				return cli_usage_err("node", "bad --upload-slots '%s': expected 1 to 64", optarg);
			break;
		case 'p': port_file = optarg; break;
		case CLI_OPT_HTTP: o.http_listen = optarg; break;
		case CLI_OPT_HTTP_PUBLIC: o.http_public = true; break;
		case CLI_OPT_HTTP_PORT_FILE: http_port_file = optarg; break;
		case 'v': cli_log_set_level(PN_LOG_DEBUG); break;
		case 'h': fputs(node_help, stdout); return PN_EXIT_OK;
		default: return cli_usage_err("node", "bad option");
		}
	}
	if (optind < argc)
		return cli_usage_err("node", "unexpected argument '%s'", argv[optind]);
	if (!o.listen)
		return cli_usage_err("node", "--listen ADDR:PORT is required");
	/* the host and ":PORT" (at most 6 bytes) must make an address */
	if (o.announce_host && (!pn_addr_valid(o.announce_host) || strlen(o.announce_host) > PN_ADDR_MAX - 6))
		return cli_usage_err("node", "bad --announce '%s': a host name or address of at most %d printable characters",
				     o.announce_host, PN_ADDR_MAX - 6);
	if (!o.discovery)
		o.discovery = o.nbootstrap && !o.directory ? PN_DISCOVERY_FLOOD : PN_DISCOVERY_DIRECTORY;
	if (o.discovery == PN_DISCOVERY_DIRECTORY && !o.directory)
		return cli_usage_err("node", "--discovery directory needs --directory ADDR:PORT");
	if (o.min_neighbors && o.max_neighbors && o.min_neighbors > o.max_neighbors)
		return cli_usage_err("node", "--min-neighbors is above --max-neighbors");
	if (!o.data_dir) {
		pn_default_data_dir(data, sizeof data);
		o.data_dir = data;
	}
	if (!o.control_path) {
		snprintf(control, sizeof control, "%s/%s", o.data_dir, PN_CONTROL_SOCKET);
		o.control_path = control;
	}
	o.bootstrap = bootstrap;
	o.seed_servers = seed_servers;
	cli_log_set_tag("peernet node");
	struct cli_log lg = cli_logger("peernet node");
	o.log_level = lg.level;
	struct node_run run = {.lg = lg};
	struct pn_node_events ev = {.ud = &run, .log = node_log_cb, .stop_requested = node_stop_requested};
	uv_loop_t loop;
	if (uv_loop_init(&loop) != 0) {
		cli_err("node", "cannot create an event loop");
		return PN_EXIT_FAIL;
	}
	signal(SIGPIPE, SIG_IGN);
	int r = pn_node_new(&loop, &o, &ev, &run.node);
	if (r != PN_OK) {
		cli_err("node", "%s", pn_strerror(r));
		uv_loop_close(&loop);
		return PN_EXIT_FAIL;
	}
	r = pn_node_start(run.node);
	int status = PN_EXIT_OK;
	if (r != PN_OK) {
		cli_err("node", "%s", pn_node_error(run.node)[0] ? pn_node_error(run.node) : "could not start");
		pn_node_close(run.node, NULL, NULL);
		status = PN_EXIT_FAIL;
	} else {
		for (size_t i = 0; i < nshares; i++)
			node_share_path(run.node, &lg, shares[i]);
		uv_signal_init(&loop, &run.sig_int);
		uv_signal_init(&loop, &run.sig_term);
		run.sig_int.data = run.sig_term.data = &run;
		uv_signal_start(&run.sig_int, node_signal_cb, SIGINT);
		uv_signal_start(&run.sig_term, node_signal_cb, SIGTERM);
		node_announce(run.node, o.control_path, port_file);
		if (o.http_listen)
			cli_announce_http(o.http_listen, pn_node_http_port(run.node), http_port_file);
	}
	uv_run(&loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&loop) != 0)
		cli_err("node", "internal: handles left open at exit");
	return status;
}

/* A directory, a server: one handle on this process's loop until SIGINT or
 * SIGTERM. */
struct svc_run {
	void *handle;
	void (*close)(void *handle);
	uv_signal_t sig_int, sig_term;
	bool closing;
};

static void svc_signal_cb(uv_signal_t *s, int signum)
{
	struct svc_run *run = s->data;
	if (run->closing)
		return;
	run->closing = true;
	run->close(run->handle);
	uv_close((uv_handle_t *)&run->sig_int, NULL);
	uv_close((uv_handle_t *)&run->sig_term, NULL);
}

void cli_run_until_signal(uv_loop_t *loop, void *handle, void (*close)(void *handle))
{
	struct svc_run run = {.handle = handle, .close = close};
	uv_signal_init(loop, &run.sig_int);
	uv_signal_init(loop, &run.sig_term);
	run.sig_int.data = run.sig_term.data = &run;
	uv_signal_start(&run.sig_int, svc_signal_cb, SIGINT);
	uv_signal_start(&run.sig_term, svc_signal_cb, SIGTERM);
	uv_run(loop, UV_RUN_DEFAULT);
}

static void directory_close(void *h)
{
	pn_directory_close(h, NULL, NULL);
}

int cmd_directory(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"listen", required_argument, NULL, 'l'},
		{"data", required_argument, NULL, 'd'},
		{"heartbeat", required_argument, NULL, 'H'},
		{"max-nodes", required_argument, NULL, 'm'},
		{"rate", required_argument, NULL, 'R'},
		{"port-file", required_argument, NULL, 'p'},
		CLI_HTTP_LONGOPTS,
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct pn_directory_config o = {0};
	const char *port_file = NULL, *http_port_file = NULL;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "l:d:vh", longopts, NULL)) != -1) {
		switch (c) {
		case 'l': o.listen = optarg; break;
		case 'd': o.data_dir = optarg; break;
		case 'H':
			if (!cli_parse_seconds(optarg, &o.heartbeat_ms))
				return cli_usage_err("directory", "bad --heartbeat '%s': expected seconds", optarg);
			break;
		case 'm':
			if (!cli_parse_uint(optarg, 1, 1000000, &o.max_nodes))
				return cli_usage_err("directory", "bad --max-nodes '%s'", optarg);
			break;
		case 'R':
			if (!cli_parse_uint(optarg, 1, 1000000, &o.rate_per_s))
				return cli_usage_err("directory", "bad --rate '%s'", optarg);
			break;
		case 'p': port_file = optarg; break;
		case CLI_OPT_HTTP: o.http_listen = optarg; break;
		case CLI_OPT_HTTP_PUBLIC: o.http_public = true; break;
		case CLI_OPT_HTTP_PORT_FILE: http_port_file = optarg; break;
		case 'v': cli_log_set_level(PN_LOG_DEBUG); break;
		case 'h': fputs(directory_help, stdout); return PN_EXIT_OK;
		default: return cli_usage_err("directory", "bad option");
		}
	}
	if (optind < argc)
		return cli_usage_err("directory", "unexpected argument '%s'", argv[optind]);
	if (!o.listen)
		return cli_usage_err("directory", "--listen ADDR:PORT is required");
	cli_log_set_tag("peernet directory");
	struct cli_log lg = cli_logger("peernet directory");
	o.log_level = lg.level;
	struct pn_directory_events ev = {.ud = lg.ud, .log = lg.cb};
	uv_loop_t loop;
	pn_directory *d;
	if (uv_loop_init(&loop) != 0) {
		cli_err("directory", "cannot create an event loop");
		return PN_EXIT_FAIL;
	}
	signal(SIGPIPE, SIG_IGN);
	int r = pn_directory_new(&loop, &o, &ev, &d);
	if (r != PN_OK) {
		cli_err("directory", "%s", pn_strerror(r));
		uv_loop_close(&loop);
		return PN_EXIT_FAIL;
	}
	int status = PN_EXIT_OK;
	if (pn_directory_start(d) != PN_OK) {
		cli_err("directory", "%s", pn_directory_error(d));
		pn_directory_close(d, NULL, NULL);
		uv_run(&loop, UV_RUN_DEFAULT);
		status = PN_EXIT_FAIL;
	} else {
		struct pn_directory_status st;
		pn_directory_status(d, &st);
		cli_announce("directory", st.port, st.node_id, port_file);
		if (o.http_listen)
			cli_announce_http(o.http_listen, pn_directory_http_port(d), http_port_file);
		cli_run_until_signal(&loop, d, directory_close);
	}
	if (uv_loop_close(&loop) != 0)
		cli_err("directory", "internal: handles left open at exit");
	return status;
}

/* ---------------------------------------------------------------- control client */

struct ctl_args {
	const char *data, *control;
	bool json;
	const char *output;
	bool force;
	int progress;
};

static int parse_ctl(const char *cmd, const char *help, int argc, char **argv, struct ctl_args *a, bool get)
{
	static const struct option longopts[] = {
		{"data", required_argument, NULL, 'd'},
		{"control", required_argument, NULL, 'c'},
		{"json", no_argument, NULL, 'j'},
		{"output", required_argument, NULL, 'o'},
		{"force", no_argument, NULL, 'f'},
		{"progress", no_argument, NULL, 'P'},
		{"no-progress", no_argument, NULL, 'N'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	memset(a, 0, sizeof *a);
	a->progress = -1;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, get ? "o:fh" : "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'd': a->data = optarg; break;
		case 'c': a->control = optarg; break;
		case 'j': a->json = true; break;
		case 'o': a->output = optarg; break;
		case 'f': a->force = true; break;
		case 'P': a->progress = 1; break;
		case 'N': a->progress = 0; break;
		case 'h': fputs(help, stdout); return PN_EXIT_OK;
		default: return cli_usage_err(cmd, "bad option");
		}
	}
	return -1;
}

#define CTL_OPTS \
	"  --data DIR                the node's data directory (default ~/.local/share/peernet)\n" \
	"  --control PATH            the node's control socket (instead of --data)\n" \
	"  --json                    machine-readable output\n" \
	"  -h, --help                this text\n"

static const char add_help[] = "usage: peernet add [OPTIONS] PATH...\n\nShares files through the running node; prints 'ID  NAME' per file.\n\n" CTL_OPTS;
static const char search_help[] = "usage: peernet search [OPTIONS] WORDS...\n\nKeyword search across the network: names that contain every word (or a word\nstarting with it), case-insensitive.\n\n" CTL_OPTS;
static const char status_help[] = "usage: peernet status [OPTIONS]\n\nThe running node's ID, address, discovery mode, peers, shares, transfers and totals.\n\n" CTL_OPTS;
static const char stop_help[] = "usage: peernet stop [OPTIONS]\n\nStops the running node.\n\n" CTL_OPTS;

/* One request to the running node (pn_ctl_*), on a loop of its own. */
struct ctl_run {
	const char *cmd;
	struct ctl_args *args;
	uv_loop_t loop;
	char path[PATH_MAX + 32];   /* the control socket */
	int err;
	char why[4096 + 256];
	struct cli_json_list items; /* add, search --json */
	size_t count;               /* search: hits */
	/* get */
	struct pn_cid cid;
	const char *label;          /* the bar's label until the content's name is known */
	bool to_stdout, progress, bar_on, failed;
	struct progress_bar bar;
	int stream_fd;              /* -o -: the node's partial download, -1 until its first stream event */
	uint64_t streamed;          /* bytes written to standard output */
};

static void ctl_done(void *ud, pn_ctl *c, int err, const char *why)
{
	struct ctl_run *run = ud;
	run->err = err;
	snprintf(run->why, sizeof run->why, "%s", why);
}

/* Finds the control socket (--control, else --data DIR/control.sock, else
 * the default data dir's) and sets up the loop. 0, or -1 after an error line. */
static int ctl_begin(struct ctl_run *run, const char *cmd, struct ctl_args *a)
{
	memset(run, 0, sizeof *run);
	run->cmd = cmd;
	run->args = a;
	run->stream_fd = -1;
	if (a->control) {
		snprintf(run->path, sizeof run->path, "%s", a->control);
	} else {
		char dir[PATH_MAX];
		if (a->data)
			snprintf(dir, sizeof dir, "%s", a->data);
		else
			pn_default_data_dir(dir, sizeof dir);
		snprintf(run->path, sizeof run->path, "%s/%s", dir, PN_CONTROL_SOCKET);
	}
	if (uv_loop_init(&run->loop) != 0) {
		cli_err(cmd, "cannot create an event loop");
		return -1;
	}
	return 0;
}

/* Runs the request that starting returned r for to its end. 0 when the node
 * said ok, else -1 after the error line. */
static int ctl_end(struct ctl_run *run, int r)
{
	if (r == PN_ETOOBIG)
		cli_err(run->cmd, "the request is longer than the node takes (%d bytes); give fewer paths at once",
			PN_CONTROL_REQUEST_MAX - 1);
	else if (r != PN_OK)
		cli_err(run->cmd, "%s", pn_strerror(r));
	else
		uv_run(&run->loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&run->loop) != 0)
		cli_err(run->cmd, "internal: handles left open at exit");
	if (r != PN_OK)
		return -1;
	if (run->err == PN_ECONNREFUSED)
		cli_err(run->cmd, "%s; start one with 'peernet node', or name it with --data DIR or --control PATH",
			run->why);
	else if (run->err != PN_OK && !run->failed)
		cli_err(run->cmd, "%s", run->why);
	return run->err == PN_OK && !run->failed ? 0 : -1;
}

static void add_shared(void *ud, pn_ctl *c, const struct pn_share_info *f)
{
	struct ctl_run *run = ud;
	if (run->args->json) {
		char *item;
		cli_json_list_add(&run->items, pn_share_json(f, &item) == PN_OK ? item : NULL);
		return;
	}
	char id[PN_CID_STR_LEN + 1], name[3 * PN_NAME_MAX + 1];
	pn_cid_format(&f->cid, id);
	printf("%s  %s\n", id, pn_text_utf8(f->name, strlen(f->name), name, sizeof name));
}

int cmd_add(int argc, char **argv)
{
	struct ctl_args a;
	int r = parse_ctl("add", add_help, argc, argv, &a, false);
	if (r >= 0)
		return r;
	if (optind >= argc)
		return cli_usage_err("add", "no PATH given");
	size_t n = (size_t)(argc - optind);
	char **paths = calloc(n, sizeof *paths);
	if (!paths) {
		cli_err("add", "out of memory");
		return PN_EXIT_FAIL;
	}
	int rc = PN_EXIT_FAIL;
	for (size_t i = 0; i < n; i++) {
		const char *arg = argv[optind + (int)i];
		if (!(paths[i] = realpath(arg, NULL))) {
			char shown[PATH_MAX];
			cli_err("add", "cannot share %s: %s", pn_text_escape(arg, strlen(arg), shown, sizeof shown),
				strerror(errno));
			goto out;
		}
	}
	struct ctl_run run;
	if (ctl_begin(&run, "add", &a) != 0)
		goto out;
	struct pn_ctl_events ev = {.ud = &run, .shared = add_shared, .done = ctl_done};
	r = ctl_end(&run, pn_ctl_add(&run.loop, run.path, &ev, (const char *const *)paths, n, NULL));
	if (a.json && cli_json_list_print("add", &run.items) != 0)
		r = -1;
	rc = r ? PN_EXIT_FAIL : PN_EXIT_OK;
out:
	for (size_t i = 0; i < n; i++)
		free(paths[i]);
	free(paths);
	return rc;
}

static void search_hit(void *ud, pn_ctl *c, const struct pn_search_hit *h)
{
	struct ctl_run *run = ud;
	run->count++;
	if (run->args->json) {
		char *item;
		cli_json_list_add(&run->items, pn_search_hit_json(h, &item) == PN_OK ? item : NULL);
		return;
	}
	char id[PN_CID_STR_LEN + 1], size[16];
	pn_cid_format(&h->cid, id);
	pn_format_bytes(h->cid.size, size);
	printf("%s  %10s  %3llu peer%s  %.*s\n", id, size, (unsigned long long)h->providers, h->providers == 1 ? " " : "s",
	       (int)h->name_len, h->name);
}

int cmd_search(int argc, char **argv)
{
	struct ctl_args a;
	int r = parse_ctl("search", search_help, argc, argv, &a, false);
	if (r >= 0)
		return r;
	if (optind >= argc)
		return cli_usage_err("search", "no WORDS given");
	char query[PN_QUERY_MAX + 2];
	size_t len = 0;
	for (int i = optind; i < argc; i++) {
		len += (size_t)snprintf(query + len, sizeof query - len, "%s%s", len ? " " : "", argv[i]);
		if (len > PN_QUERY_MAX)
			return cli_usage_err("search", "the query is longer than %d bytes", PN_QUERY_MAX);
	}
	if (!query[0])
		return cli_usage_err("search", "no WORDS given");
	struct ctl_run run;
	if (ctl_begin(&run, "search", &a) != 0)
		return PN_EXIT_FAIL;
	struct pn_ctl_events ev = {.ud = &run, .hit = search_hit, .done = ctl_done};
	r = pn_ctl_search(&run.loop, run.path, &ev, query, NULL);
	if (r == PN_EINVAL) {
		uv_loop_close(&run.loop);
		return cli_usage_err("search", "the query is not valid UTF-8");
	}
	r = ctl_end(&run, r);
	if (a.json && cli_json_list_print("search", &run.items) != 0)
		r = -1;
	if (r == 0 && run.count == 0 && !a.json)
		fprintf(stderr, "peernet search: nothing on the network matches '%s'\n", query);
	return r ? PN_EXIT_FAIL : PN_EXIT_OK;
}

static void status_report(void *ud, pn_ctl *c, const struct pn_node_report *rep)
{
	struct ctl_run *run = ud;
	char *text;
	if (run->args->json) {
		cli_json_print(run->cmd, pn_node_report_json(rep, &text) == PN_OK ? text : NULL);
	} else if (pn_node_report_text(rep, &text) == PN_OK) {
		fputs(text, stdout);
		free(text);
	} else {
		cli_err(run->cmd, "out of memory");
	}
}

/* status and stop: a request without arguments; status prints the report. */
static int simple_ctl(const char *cmd, const char *help, int argc, char **argv)
{
	struct ctl_args a;
	int r = parse_ctl(cmd, help, argc, argv, &a, false);
	if (r >= 0)
		return r;
	if (optind < argc)
		return cli_usage_err(cmd, "unexpected argument '%s'", argv[optind]);
	struct ctl_run run;
	if (ctl_begin(&run, cmd, &a) != 0)
		return PN_EXIT_FAIL;
	struct pn_ctl_events ev = {.ud = &run, .status = status_report, .done = ctl_done};
	r = !strcmp(cmd, "status") ? pn_ctl_status(&run.loop, run.path, &ev, NULL)
				   : pn_ctl_stop(&run.loop, run.path, &ev, NULL);
	return ctl_end(&run, r) ? PN_EXIT_FAIL : PN_EXIT_OK;
}

int cmd_status(int argc, char **argv)
{
	return simple_ctl("status", status_help, argc, argv);
}

int cmd_stop(int argc, char **argv)
{
	return simple_ctl("stop", stop_help, argc, argv);
}

/* Copies the file at path to standard output. 0, or -1 with an error line. */
static int cat_file(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		char shown[PATH_MAX];
		cli_err("get", "cannot read %s: %s", pn_text_escape(path, strlen(path), shown, sizeof shown), strerror(errno));
		return -1;
	}
	char buf[65536];
	ssize_t k;
	bool ok = true;
	while ((k = read(fd, buf, sizeof buf)) > 0)
		if (fwrite(buf, 1, (size_t)k, stdout) != (size_t)k) {
			ok = false;
			break;
		}
	close(fd);
	if (!ok || k < 0 || fflush(stdout) != 0) {
		cli_err("get", "writing to standard output: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/* get -o - through the node: the node says how far the content is verified
 * in its partial download (stream events) and the bytes go to standard
 * output in order while the download runs, read from that file through one
 * descriptor (which still reads the same data once it is moved into place).
 * Copies [run->streamed, upto) to standard output: 0, or -1 with an error line. */
static int stream_to(struct ctl_run *run, uint64_t upto)
{
	char buf[65536];
	while (run->streamed < upto) {
		size_t want = upto - run->streamed < sizeof buf ? (size_t)(upto - run->streamed) : sizeof buf;
		ssize_t k = pread(run->stream_fd, buf, want, (off_t)run->streamed);
		if (k <= 0) {
			cli_err("get", "reading the download: %s", k < 0 ? strerror(errno) : "it is shorter than the node said");
			return -1;
		}
		if (fwrite(buf, 1, (size_t)k, stdout) != (size_t)k || fflush(stdout) != 0) {
			cli_err("get", "writing to standard output: %s", strerror(errno));
			return -1;
		}
		run->streamed += (uint64_t)k;
	}
	return 0;
}

/* The command failed on its side (the line is printed): the request ends. */
static void get_fail(struct ctl_run *run, pn_ctl *c)
{
	run->failed = true;
	pn_ctl_cancel(c);
}

static void get_stream(void *ud, pn_ctl *c, const char *path, uint64_t upto)
{
	struct ctl_run *run = ud;
	if (run->failed)
		return;
	if (!run->to_stdout) {
		cli_err("get", "unexpected answer from the node");
		get_fail(run, c);
		return;
	}
	if (run->stream_fd < 0 && (run->stream_fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		char shown[PATH_MAX];
		cli_err("get", "cannot read %s: %s", pn_text_escape(path, strlen(path), shown, sizeof shown), strerror(errno));
		get_fail(run, c);
		return;
	}
	if (stream_to(run, upto) != 0)
		get_fail(run, c);
}

static void get_progress(void *ud, pn_ctl *c, const struct pn_progress *p)
{
	struct ctl_run *run = ud;
	if (!run->progress || run->failed)
		return;
	uv_update_time(&run->loop);
	uint64_t now = uv_now(&run->loop);
	if (!run->bar_on) {
		pn_progress_init(&run->bar, *p->name ? p->name : run->label, p->total, p->have, now);
		run->bar_on = true;
	}
	run->bar.done = p->have;
	pn_progress_draw(&run->bar, now);
}

static void get_got(void *ud, pn_ctl *c, const struct pn_download_result *r)
{
	struct ctl_run *run = ud;
	if (run->failed)
		return;
	if (run->bar_on) {
		run->bar.done = run->bar.total;
		pn_progress_done(&run->bar);
		run->bar_on = false;
	}
	if (run->to_stdout && (run->stream_fd >= 0 ? stream_to(run, r->cid.size) : cat_file(r->path)) != 0) {
		get_fail(run, c);
		return;
	}
	if (run->args->json) {
		char *text;
		cli_json_print("get", pn_download_json(&run->cid, r, NULL, &text) == PN_OK ? text : NULL);
	}
}

static void get_done(void *ud, pn_ctl *c, int err, const char *why)
{
	struct ctl_run *run = ud;
	ctl_done(ud, c, err, why);
	if (run->bar_on && err != PN_OK)
		pn_progress_clear(&run->bar);
	if (err == PN_EREMOTE && run->args->json) {
		char *text;
		cli_json_print("get", pn_download_json(&run->cid, NULL, why, &text) == PN_OK ? text : NULL);
	}
}

/* get through the node: progress, then the result. */
int cmd_get_node(int argc, char **argv)
{
	static const char help[] =
		"usage: peernet get [OPTIONS] ID [-o PATH]\n"
		"\n"
		"Asks the running node to download ID from every peer that has it (swarm\n"
		"download). Without -o the file is saved under its name in the current\n"
		"directory; '-o -' writes it to standard output. With --server ADDR:PORT\n"
		"it downloads from a central server instead (see 'peernet get --server').\n\n" CTL_OPTS
		"  -o, --output PATH         where to write the file\n"
		"  -f, --force               overwrite PATH if it exists\n"
		"  --progress / --no-progress  force the progress bar on or off\n";
	struct ctl_args a;
	int r = parse_ctl("get", help, argc, argv, &a, true);
	if (r >= 0)
		return r;
	if (optind >= argc)
		return cli_usage_err("get", "no ID given");
	if (optind + 1 < argc)
		return cli_usage_err("get", "one ID at a time ('%s' is extra)", argv[optind + 1]);
	struct pn_cid cid;
	if (pn_cid_parse(argv[optind], &cid) != 0)
		return cli_usage_err("get", "'%s' is not a content ID (expected pn1 followed by 64 base32 characters)",
				     argv[optind]);
	bool to_stdout = a.output && !strcmp(a.output, "-");
	if (to_stdout && a.json)
		return cli_usage_err("get", "--json cannot be combined with -o - (both use standard output)");
	char cwd[PATH_MAX];
	if (!getcwd(cwd, sizeof cwd)) {
		cli_err("get", "cannot read the current directory: %s", strerror(errno));
		return PN_EXIT_FAIL;
	}
	struct ctl_run run;
	if (ctl_begin(&run, "get", &a) != 0)
		return PN_EXIT_FAIL;
	run.cid = cid;
	run.label = argv[optind];
	run.to_stdout = to_stdout;
	run.progress = a.progress < 0 ? (!a.json && isatty(STDOUT_FILENO) && isatty(STDERR_FILENO)) : a.progress;
	struct pn_ctl_events ev = {.ud = &run, .progress = get_progress, .stream = get_stream, .got = get_got,
				   .done = get_done};
	unsigned flags = (a.force ? PN_GET_OVERWRITE : 0) | (to_stdout ? PN_GET_STREAM : 0);
	r = ctl_end(&run, pn_ctl_get(&run.loop, run.path, &ev, &cid, to_stdout ? NULL : a.output, cwd, flags, NULL));
	if (run.stream_fd >= 0)
		close(run.stream_fd);
	return r ? PN_EXIT_FAIL : PN_EXIT_OK;
}
