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
	"       peernet node --listen ADDR:PORT [--data DIR] --discovery dht [--bootstrap ADDR:PORT...]\n"
	"                    [--share PATH]... [--up-rate RATE] [--down-rate RATE]\n"
	"\n"
	"Runs a peer: serves what it holds, finds providers through the discovery\n"
	"method, downloads from all of them at once, and takes commands (add, search,\n"
	"get, status, stop) on a control socket in its data directory.\n"
	"\n"
	"  --listen ADDR:PORT        where other peers reach this node\n"
	"  --data DIR                identity, store and control socket (default ~/.local/share/peernet)\n"
	"  --control PATH            the control socket (default DATA/control.sock)\n"
	"  --discovery MODE          directory (central look-up service), flood (ask the neighbours)\n"
	"                            or dht (Kademlia distributed hash table over UDP, same port)\n"
	"  --directory ADDR:PORT     the look-up service (directory mode)\n"
	"  --bootstrap ADDR:PORT     a node to join through (flood and dht modes; repeatable); flood\n"
	"                            remembers good peers in DATA/peers, dht its routing table in\n"
	"                            DATA/dht-table, and rejoins through them next time\n"
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
				o.discovery = PN_DISCOVERY_DHT;
			else
				return cli_usage_err("node", "bad --discovery '%s': expected directory, flood or dht", optarg);
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

/* The node's replies come one JSON object a line (node/node_ctl.c). */
struct ctl_conn {
	int fd;
	char buf[PN_CONTROL_REPLY_MAX];
	size_t len, off;
};

/* Finds the control socket: --control, else --data DIR/control.sock, else the default data dir. */
static void control_path(const char *control, const char *data, char *out, size_t len)
{
	if (control) {
		snprintf(out, len, "%s", control);
		return;
	}
	char dir[PATH_MAX];
	if (data)
		snprintf(dir, sizeof dir, "%s", data);
	else
		pn_default_data_dir(dir, sizeof dir);
	if (snprintf(out, len, "%s/%s", dir, PN_CONTROL_SOCKET) >= (int)len)
		out[0] = 0; /* ctl_open then reports it */
}

static int write_all(int fd, const char *p, size_t len)
{
	size_t off = 0;
	while (off < len) {
		ssize_t w = write(fd, p + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		off += (size_t)w;
	}
	return 0;
}

/* Connects to the node's control socket and sends req (released) as one
 * line. The connection (the caller frees it with ctl_close), or NULL after
 * an error line. */
static struct ctl_conn *ctl_open(const char *cmd, const char *data, const char *control, json_t *req)
{
	char path[PATH_MAX];
	char *text = req ? json_dumps(req, PN_JSON_FLAGS) : NULL;
	json_decref(req);
	if (!text) {
		cli_err(cmd, "out of memory");
		return NULL;
	}
	if (strlen(text) >= PN_CONTROL_REQUEST_MAX) {
		cli_err(cmd, "the request is longer than the node takes (%d bytes); give fewer paths at once",
			PN_CONTROL_REQUEST_MAX - 1);
		free(text);
		return NULL;
	}
	control_path(control, data, path, sizeof path);
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct ctl_conn *cc = NULL;
	if (strlen(path) >= sizeof sun.sun_path || !path[0]) {
		cli_err(cmd, "control socket path too long: %s", path);
		goto fail;
	}
	strcpy(sun.sun_path, path);
	cc = malloc(sizeof *cc);
	if (!cc) {
		cli_err(cmd, "out of memory");
		goto fail;
	}
	cc->len = cc->off = 0;
	cc->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (cc->fd < 0 || connect(cc->fd, (struct sockaddr *)&sun, sizeof sun) != 0) {
		cli_err(cmd, "no node is running at %s (%s); start one with 'peernet node', or name it with --data DIR or --control PATH",
			path, strerror(errno));
		goto fail;
	}
	/* A node that answers at once (too many connections) may close before reading: its answer still comes. */
	(void)(write_all(cc->fd, text, strlen(text)) == 0 && write_all(cc->fd, "\n", 1) == 0);
	free(text);
	return cc;
fail:
	if (cc && cc->fd >= 0)
		close(cc->fd);
	free(cc);
	free(text);
	return NULL;
}

static void ctl_close(struct ctl_conn *cc)
{
	close(cc->fd);
	free(cc);
}

/* Next reply line (NUL-terminated, without the newline), or NULL at EOF or
 * past PN_CONTROL_REPLY_MAX. */
static char *ctl_line(struct ctl_conn *cc)
{
	for (;;) {
		char *nl = memchr(cc->buf + cc->off, '\n', cc->len - cc->off);
		if (nl) {
			*nl = 0;
			char *line = cc->buf + cc->off;
			cc->off = (size_t)(nl - cc->buf) + 1;
			return line;
		}
		if (cc->off) {
			memmove(cc->buf, cc->buf + cc->off, cc->len - cc->off);
			cc->len -= cc->off;
			cc->off = 0;
		}
		if (cc->len >= sizeof cc->buf - 1)
			return NULL;
		ssize_t r = read(cc->fd, cc->buf + cc->len, sizeof cc->buf - 1 - cc->len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return NULL;
		cc->len += (size_t)r;
	}
}

/* The next reply, a JSON object whose "reply" string goes to *type; NULL
 * when the node closed the connection (or sent what is not a reply). */
static json_t *ctl_next(struct ctl_conn *cc, const char **type)
{
	char *line = ctl_line(cc);
	json_error_t jerr;
	json_t *r = line ? json_loads(line, JSON_REJECT_DUPLICATES, &jerr) : NULL;
	*type = json_string_value(json_object_get(r, "reply"));
	if (!*type) {
		json_decref(r);
		return NULL;
	}
	return r;
}

/* Ends an answer whose last reply is r (released): 0 on "ok"; else -1 with
 * the node's message, or a line saying the answer was cut. */
static int ctl_end(const char *cmd, json_t *r, const char *type)
{
	int ret = -1;
	char msg[1024];
	if (!r)
		cli_err(cmd, "the node closed the control connection without answering (did it stop?)");
	else if (!strcmp(type, "ok"))
		ret = 0;
	else if (!strcmp(type, "err") && pn_json_get_text(r, "error", msg, sizeof msg) != PN_EINVAL)
		cli_err(cmd, "%s", msg);
	else
		cli_err(cmd, "unexpected answer from the node");
	json_decref(r);
	return ret;
}

/* v's string field key, or "" (borrowed from v). */
static const char *str_field(const json_t *v, const char *key)
{
	const char *s = json_string_value(json_object_get(v, key));
	return s ? s : "";
}

static uint64_t u64_field(const json_t *v, const char *key)
{
	json_int_t n = json_integer_value(json_object_get(v, key));
	return n > 0 ? (uint64_t)n : 0;
}

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

/* A request path: the string when it is UTF-8, else {"path","path_hex"} (node_ctl.c). */
static json_t *path_value(const char *path)
{
	bool exact;
	json_t *v = pn_json_text(path, strlen(path), &exact);
	if (v && !exact) {
		json_decref(v);
		v = cli_json_with_text(json_object(), "path", path);
	}
	return v;
}

int cmd_add(int argc, char **argv)
{
	struct ctl_args a;
	int r = parse_ctl("add", add_help, argc, argv, &a, false);
	if (r >= 0)
		return r;
	if (optind >= argc)
		return cli_usage_err("add", "no PATH given");
	json_t *paths = json_array();
	for (int i = optind; paths && i < argc; i++) {
		char abs[PATH_MAX];
		if (!realpath(argv[i], abs)) {
			char shown[PATH_MAX];
			cli_err("add", "cannot share %s: %s", pn_text_escape(argv[i], strlen(argv[i]), shown, sizeof shown),
				strerror(errno));
			json_decref(paths);
			return PN_EXIT_FAIL;
		}
		json_t *p = path_value(abs);
		if (!p || json_array_append_new(paths, p) != 0) {
			json_decref(paths);
			paths = NULL;
		}
	}
	json_t *req = paths ? json_pack("{s:s,s:o}", "cmd", "add", "paths", paths) : NULL;
	struct ctl_conn *cc = ctl_open("add", a.data, a.control, req);
	if (!cc)
		return PN_EXIT_FAIL;
	json_t *out = a.json ? json_array() : NULL, *rep;
	const char *type;
	while ((rep = ctl_next(cc, &type)) && !strcmp(type, "file")) {
		if (out) {
			json_object_del(rep, "reply"); /* id, name, size: as the node sends them */
			json_array_append(out, rep);
		} else if (!a.json) {
			printf("%s  %s\n", str_field(rep, "id"), str_field(rep, "name"));
		}
		json_decref(rep);
	}
	r = ctl_end("add", rep, type);
	if (a.json && cli_json_print("add", out) != 0)
		r = -1;
	ctl_close(cc);
	return r ? PN_EXIT_FAIL : PN_EXIT_OK;
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
	bool exact;
	json_t *q = pn_json_text(query, len, &exact);
	if (q && !exact) {
		json_decref(q);
		return cli_usage_err("search", "the query is not valid UTF-8");
	}
	struct ctl_conn *cc = ctl_open("search", a.data, a.control, q ? json_pack("{s:s,s:o}", "cmd", "search", "query", q) : NULL);
	if (!cc)
		return PN_EXIT_FAIL;
	json_t *out = a.json ? json_array() : NULL, *rep;
	const char *type;
	int n = 0;
	while ((rep = ctl_next(cc, &type)) && !strcmp(type, "result")) {
		if (out) {
			json_object_del(rep, "reply"); /* id, name, size, providers */
			json_array_append(out, rep);
		} else if (!a.json) {
			char size[16];
			uint64_t providers = u64_field(rep, "providers");
			pn_format_bytes(u64_field(rep, "size"), size);
			printf("%s  %10s  %3llu peer%s  %s\n", str_field(rep, "id"), size, (unsigned long long)providers,
			       providers == 1 ? " " : "s", str_field(rep, "name"));
		}
		json_decref(rep);
		n++;
	}
	r = ctl_end("search", rep, type);
	if (a.json && cli_json_print("search", out) != 0)
		r = -1;
	if (r == 0 && n == 0 && !a.json)
		fprintf(stderr, "peernet search: nothing on the network matches '%s'\n", query);
	ctl_close(cc);
	return r ? PN_EXIT_FAIL : PN_EXIT_OK;
}

/* `peernet status` for people, from the status document (node/ctl_status.c). */
static void print_status_text(const json_t *s)
{
	const json_t *dir = json_object_get(s, "directory"), *flood = json_object_get(s, "flood");
	const json_t *dht = json_object_get(s, "dht");
	const json_t *peers = json_object_get(s, "peers"), *shares = json_object_get(s, "shares");
	const json_t *transfers = json_object_get(s, "transfers"), *totals = json_object_get(s, "totals");
	printf("node       %s\n", str_field(s, "node_id"));
	printf("listening  %s, discovery %s\n", str_field(s, "listen"), str_field(s, "discovery"));
	if (dir) {
		uint64_t refused = u64_field(dir, "refused_shares");
		printf("directory  %s, %s%s\n", str_field(dir, "address"),
		       json_is_true(json_object_get(dir, "connected")) ? "registered" : "unreachable, retrying",
		       refused ? "; it refused to register some shares (its limits): others cannot find them" : "");
		if (refused)
			printf("           %llu shares not registered\n", (unsigned long long)refused);
	}
	if (flood)
		printf("flood      %llu neighbours, %llu queries sent, %llu received, %llu duplicates dropped\n",
		       (unsigned long long)u64_field(flood, "neighbors"), (unsigned long long)u64_field(flood, "queries_sent"),
		       (unsigned long long)u64_field(flood, "queries_received"),
		       (unsigned long long)u64_field(flood, "duplicates_dropped"));
	if (dht)
		printf("dht        %llu contacts, %llu look-ups: last %llu rounds / %llu messages, median %llu / %llu\n",
		       (unsigned long long)u64_field(dht, "contacts"), (unsigned long long)u64_field(dht, "lookups"),
		       (unsigned long long)u64_field(dht, "rounds_last"), (unsigned long long)u64_field(dht, "messages_last"),
		       (unsigned long long)u64_field(dht, "rounds_median"),
		       (unsigned long long)u64_field(dht, "messages_median"));
	printf("peers      %zu\n", json_array_size(peers));
	for (size_t i = 0; i < json_array_size(peers); i++) {
		const json_t *p = json_array_get(peers, i);
		bool out = !strcmp(str_field(p, "direction"), "out");
		printf("  %.16s  %-22s %s  sent %llu  received %llu%s%s\n", str_field(p, "id"), str_field(p, "address"),
		       out ? "out" : "in ", (unsigned long long)u64_field(p, "bytes_to"),
		       (unsigned long long)u64_field(p, "bytes_from"),
		       json_is_true(json_object_get(p, "we_choke")) ? "" : "  (unchoked)",
		       json_is_true(json_object_get(p, "seed_server")) ? "  (seed server)" : "");
	}
	uint64_t total = u64_field(s, "shares_total");
	printf("shares     %llu\n", (unsigned long long)total);
	for (size_t i = 0; i < json_array_size(shares); i++) {
		const json_t *o = json_array_get(shares, i);
		printf("  %s  %llu  %s\n", str_field(o, "id"), (unsigned long long)u64_field(o, "size"), str_field(o, "name"));
	}
	if (total > json_array_size(shares))
		printf("  ... and %llu more\n", (unsigned long long)(total - json_array_size(shares)));
	printf("transfers  %zu\n", json_array_size(transfers));
	for (size_t i = 0; i < json_array_size(transfers); i++) {
		const json_t *d = json_array_get(transfers, i);
		printf("  %s  %llu/%llu chunks  %s\n", str_field(d, "id"), (unsigned long long)u64_field(d, "chunks_have"),
		       (unsigned long long)u64_field(d, "chunks"), str_field(d, "name"));
	}
	printf("totals     uploaded %llu bytes, downloaded %llu bytes, %llu look-ups\n",
	       (unsigned long long)u64_field(totals, "bytes_uploaded"),
	       (unsigned long long)u64_field(totals, "bytes_downloaded"), (unsigned long long)u64_field(totals, "lookups"));
}

/* status and stop: a request without arguments; status prints its document. */
static int simple_ctl(const char *cmd, const char *help, int argc, char **argv)
{
	struct ctl_args a;
	int r = parse_ctl(cmd, help, argc, argv, &a, false);
	if (r >= 0)
		return r;
	if (optind < argc)
		return cli_usage_err(cmd, "unexpected argument '%s'", argv[optind]);
	struct ctl_conn *cc = ctl_open(cmd, a.data, a.control, json_pack("{s:s}", "cmd", cmd));
	if (!cc)
		return PN_EXIT_FAIL;
	json_t *rep;
	const char *type;
	while ((rep = ctl_next(cc, &type)) && !strcmp(type, "status")) {
		json_t *s = json_object_get(rep, "status");
		if (a.json)
			cli_json_print(cmd, json_incref(s));
		else if (json_is_object(s))
			print_status_text(s);
		json_decref(rep);
	}
	r = ctl_end(cmd, rep, type);
	ctl_close(cc);
	return r ? PN_EXIT_FAIL : PN_EXIT_OK;
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
 * in its partial download ("stream" replies) and the bytes go to standard
 * output in order while the download runs, read from that file through one
 * descriptor (which still reads the same data once it is moved into place). */
struct out_stream {
	int fd;              /* the partial download, -1 until the first stream reply */
	uint64_t done;       /* bytes written to standard output */
};

/* Copies [s->done, upto) of the open file to standard output. */
static int stream_to(struct out_stream *s, uint64_t upto)
{
	char buf[65536];
	while (s->done < upto) {
		size_t want = upto - s->done < sizeof buf ? (size_t)(upto - s->done) : sizeof buf;
		ssize_t k = pread(s->fd, buf, want, (off_t)s->done);
		if (k <= 0) {
			cli_err("get", "reading the download: %s", k < 0 ? strerror(errno) : "it is shorter than the node said");
			return -1;
		}
		if (fwrite(buf, 1, (size_t)k, stdout) != (size_t)k || fflush(stdout) != 0) {
			cli_err("get", "writing to standard output: %s", strerror(errno));
			return -1;
		}
		s->done += (uint64_t)k;
	}
	return 0;
}

static int stream_reply(struct out_stream *s, json_t *rep)
{
	char path[PATH_MAX];
	if (pn_json_get_text(rep, "path", path, sizeof path) != PN_OK) {
		cli_err("get", "unexpected answer from the node");
		return -1;
	}
	if (s->fd < 0 && (s->fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		char shown[PATH_MAX];
		cli_err("get", "cannot read %s: %s", pn_text_escape(path, strlen(path), shown, sizeof shown), strerror(errno));
		return -1;
	}
	return stream_to(s, u64_field(rep, "upto"));
}

/* get through the node: progress lines, then the result. */
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
	bool progress = a.progress < 0 ? (!a.json && isatty(STDOUT_FILENO) && isatty(STDERR_FILENO)) : a.progress;
	json_t *req = json_pack("{s:s,s:s}", "cmd", "get", "id", argv[optind]);
	req = cli_json_with_text(cli_json_with_text(req, "out", a.output ? a.output : ""), "cwd", cwd);
	req = cli_json_merge(req, json_pack("{s:b}", "force", a.force));
	struct ctl_conn *cc = ctl_open("get", a.data, a.control, req);
	if (!cc)
		return PN_EXIT_FAIL;
	struct progress_bar bar;
	bool bar_on = false;
	int rc = PN_EXIT_FAIL;
	json_t *rep;
	const char *type;
	struct out_stream os = {.fd = -1};
	while ((rep = ctl_next(cc, &type)) &&
	       (!strcmp(type, "progress") || !strcmp(type, "got") || !strcmp(type, "stream"))) {
		if (!strcmp(type, "stream")) {
			int bad = !to_stdout || stream_reply(&os, rep) != 0;
			json_decref(rep);
			if (bad) {
				if (!to_stdout)
					cli_err("get", "unexpected answer from the node");
				if (os.fd >= 0)
					close(os.fd);
				ctl_close(cc);
				return PN_EXIT_FAIL;
			}
			continue;
		}
		if (!strcmp(type, "progress")) {
			if (progress) {
				struct timespec ts;
				clock_gettime(CLOCK_MONOTONIC, &ts);
				uint64_t now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
				const char *name = str_field(rep, "name");
				if (!bar_on) {
					pn_progress_init(&bar, *name ? name : argv[optind], u64_field(rep, "total"),
							 u64_field(rep, "have"), now);
					bar_on = true;
				}
				bar.done = u64_field(rep, "have");
				pn_progress_draw(&bar, now);
			}
			json_decref(rep);
			continue;
		}
		if (bar_on) {
			bar.done = bar.total;
			pn_progress_done(&bar);
			bar_on = false;
		}
		char path[PATH_MAX];
		if (pn_json_get_text(rep, "path", path, sizeof path) != PN_OK) {
			cli_err("get", "unexpected answer from the node");
			json_decref(rep);
			ctl_close(cc);
			return PN_EXIT_FAIL;
		}
		if (to_stdout && (os.fd >= 0 ? stream_to(&os, u64_field(rep, "size")) : cat_file(path)) != 0) {
			json_decref(rep);
			if (os.fd >= 0)
				close(os.fd);
			ctl_close(cc);
			return PN_EXIT_FAIL;
		}
		if (a.json) {
			json_object_del(rep, "reply"); /* name, path, size, bytes_downloaded, ..., peers */
			json_object_del(rep, "id");
			cli_json_print("get", cli_json_merge(json_pack("{s:s,s:b}", "id", argv[optind], "ok", 1), json_incref(rep)));
		}
		json_decref(rep);
	}
	if (bar_on && rep && strcmp(type, "ok"))
		pn_progress_clear(&bar);
	if (rep && !strcmp(type, "err") && a.json) {
		json_t *o = json_pack("{s:s,s:b,s:O?}", "id", argv[optind], "ok", 0, "error", json_object_get(rep, "error"));
		if (o && json_object_get(rep, "error_hex"))
			json_object_set(o, "error_hex", json_object_get(rep, "error_hex"));
		cli_json_print("get", o);
	}
	rc = ctl_end("get", rep, type) == 0 ? PN_EXIT_OK : PN_EXIT_FAIL;
	if (os.fd >= 0)
		close(os.fd);
	ctl_close(cc);
	return rc;
}
