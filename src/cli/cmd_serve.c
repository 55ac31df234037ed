#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"

static const char serve_help[] =
	"usage: peernet serve --listen ADDR:PORT --data DIR [OPTIONS]\n"
	"\n"
	"Runs the central server of the client-server model: stores what clients put,\n"
	"serves what they get, over TLS 1.3. Prints its node ID at start (clients can pin\n"
	"it with --server-id). SIGINT or SIGTERM stops it cleanly.\n"
	"\n"
	"  --listen ADDR:PORT        address to listen on (port 0 picks a free one)\n"
	"  --data DIR                data directory: identity and stored content\n"
	"  --idle-timeout SECONDS    close a connection silent this long (default 120)\n"
	"  --handshake-timeout SECONDS  close a connection that has not finished TLS (default 10)\n"
	"  --max-connections N       refuse connections beyond N (default 4096)\n"
	"  --up-rate RATE            cap the upload rate, e.g. 500K, 2M (bytes/s; K, M, G = 1024^n)\n"
	"  --down-rate RATE          cap the download rate\n"
	"  --port-file PATH          write the bound port to PATH once listening\n"
	CLI_HTTP_HELP
	"  -v, --verbose             log every connection\n"
	"  -h, --help                this text\n";

/* The server listens: its two lines on stdout (scripts read "node-id"), then
 * the port file. ud is the --port-file path or NULL. */
static void serve_announce(pn_server *srv, const char *data_dir, const char *port_file)
{
	struct pn_server_status st;
	pn_server_status(srv, &st);
	char idhex[PN_NODE_ID_STR_LEN + 1];
	pn_node_id_format(st.node_id, idhex);
	printf("peernet server %s listening on port %u, %zu objects (%llu bytes) in %s\n", idhex, st.port, st.objects,
	       (unsigned long long)st.bytes, data_dir);
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

static void serve_close(void *h)
{
	pn_server_close(h, NULL, NULL);
}

int cmd_serve(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"listen", required_argument, NULL, 'l'},
		{"data", required_argument, NULL, 'd'},
		{"idle-timeout", required_argument, NULL, 'i'},
		{"handshake-timeout", required_argument, NULL, 'H'},
		{"max-connections", required_argument, NULL, 'm'},
		{"port-file", required_argument, NULL, 'p'},
		{"up-rate", required_argument, NULL, 'U'},
		{"down-rate", required_argument, NULL, 'D'},
		CLI_HTTP_LONGOPTS,
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct pn_server_config o = {0};
	const char *port_file = NULL, *http_port_file = NULL;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "l:d:vh", longopts, NULL)) != -1) {
		switch (c) {
		case 'l': o.listen = optarg; break;
		case 'd': o.data_dir = optarg; break;
		case 'i':
			if (!cli_parse_seconds(optarg, &o.idle_timeout_ms))
				return cli_usage_err("serve", "bad --idle-timeout '%s': expected seconds", optarg);
			break;
		case 'H':
			if (!cli_parse_seconds(optarg, &o.handshake_timeout_ms))
				return cli_usage_err("serve", "bad --handshake-timeout '%s': expected seconds", optarg);
			break;
		case 'm':
			if (!cli_parse_uint(optarg, 1, 1000000, &o.max_conns))
				return cli_usage_err("serve", "bad --max-connections '%s'", optarg);
			break;
		case 'p': port_file = optarg; break;
		case CLI_OPT_HTTP: o.http_listen = optarg; break;
		case CLI_OPT_HTTP_PUBLIC: o.http_public = true; break;
		case CLI_OPT_HTTP_PORT_FILE: http_port_file = optarg; break;
		case 'U':
			if (pn_parse_rate(optarg, &o.up_rate) != 0)
				return cli_usage_err("serve", "bad --up-rate '%s': expected bytes per second like 500K or 2M", optarg);
			break;
		case 'D':
			if (pn_parse_rate(optarg, &o.down_rate) != 0)
				return cli_usage_err("serve", "bad --down-rate '%s': expected bytes per second like 500K or 2M", optarg);
			break;
		case 'v': cli_log_set_level(PN_LOG_DEBUG); break;
		case 'h': fputs(serve_help, stdout); return PN_EXIT_OK;
		default: return cli_usage_err("serve", "bad option");
		}
	}
	if (optind < argc)
		return cli_usage_err("serve", "unexpected argument '%s'", argv[optind]);
	if (!o.listen)
		return cli_usage_err("serve", "--listen ADDR:PORT is required");
	if (!o.data_dir)
		return cli_usage_err("serve", "--data DIR is required");
	cli_log_set_tag("peernet serve");
	struct cli_log lg = cli_logger("peernet serve");
	o.log_level = lg.level;
	struct pn_server_events ev = {.ud = lg.ud, .log = lg.cb};
	uv_loop_t loop;
	pn_server *srv;
	if (uv_loop_init(&loop) != 0) {
		cli_err("serve", "cannot create an event loop");
		return PN_EXIT_FAIL;
	}
	signal(SIGPIPE, SIG_IGN);
	int r = pn_server_new(&loop, &o, &ev, &srv);
	if (r != PN_OK) {
		cli_err("serve", "%s", pn_strerror(r));
		uv_loop_close(&loop);
		return PN_EXIT_FAIL;
	}
	int status = PN_EXIT_OK;
	if (pn_server_start(srv) != PN_OK) {
		cli_err("serve", "%s", pn_server_error(srv));
		pn_server_close(srv, NULL, NULL);
		uv_run(&loop, UV_RUN_DEFAULT);
		status = PN_EXIT_FAIL;
	} else {
		serve_announce(srv, o.data_dir, port_file);
		if (o.http_listen)
			cli_announce_http(o.http_listen, pn_server_http_port(srv), http_port_file);
		cli_run_until_signal(&loop, srv, serve_close);
	}
	if (uv_loop_close(&loop) != 0)
		cli_err("serve", "internal: handles left open at exit");
	return status;
}
