/* idle-clients: opens N TLS connections to a peernet server, sends HELLO on
 * each, says so on stdout once every one is up, then holds them idle until
 * SIGTERM or SIGINT, or until its standard input is closed.
 *
 *   idle-clients --server HOST:PORT [-n N] [--parallel P] [--sources K]
 *
 * A server counts connections per source address and refuses one source more
 * than PN_NET_CONNS_PER_ADDR (src/net/conn_limit.h), so against a server on
 * 127.0.0.0/8 the connections come from K loopback sources 127.77.x.y in turn
 * (default: enough for PN_NET_CONNS_PER_ADDR / 2 each), as real clients would
 * from their own addresses. --sources 0: no binding, every one from the
 * address the system picks.
 *
 * Output (stdout, one line each, flushed):
 *   ready established=N failed=F seconds=S   once all N connections resolved
 *   closed K                                  if K held connections dropped later
 *
 * It is a benchmark tool: it uses the library's own driver (src/net/) so that
 * each connection costs the server exactly what a real client does.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uv.h>
#include "crypto/crypto.h"
#include "net/conn_limit.h"
#include "net/net.h"
#include "util/buf.h"
#include "util/log.h"
#include "wire/wire.h"

#define DEFAULT_CONNS 1000
#define DEFAULT_PARALLEL 64 /* handshakes in flight at once */
#define HELLO_FRAME_MAX 64

struct idle {
	uv_loop_t *loop;
	struct pn_net *net;
	const char *server;
	unsigned target, parallel;
	unsigned sources; /* loopback source addresses to spread over (0: none) */
	unsigned started, established, failed, dropped;
	bool ready_said, stopping;
	uint64_t t0;
	uv_signal_t sig_term, sig_int;
	uv_poll_t stdin_poll;
	bool stdin_polled;
	uv_timer_t report;
};

static void start_more(struct idle *st);

static void say_ready_if_done(struct idle *st)
{
	if (st->ready_said || st->established + st->failed < st->target)
		return;
	st->ready_said = true;
	printf("ready established=%u failed=%u seconds=%.3f\n", st->established, st->failed,
	       (double)(uv_hrtime() - st->t0) / 1e9);
	fflush(stdout);
}

static void established_cb(struct pn_conn *c)
{
	struct idle *st = pn_conn_data(c);
	uint8_t frame[HELLO_FRAME_MAX];
	struct pn_writer w;
	struct pn_msg m = {.type = PN_MSG_HELLO};
	m.u.hello.version = PN_PROTOCOL_VERSION;
	m.u.hello.role = PN_ROLE_CLIENT;
	pn_wr_init(&w, frame, sizeof frame);
	if (pn_msg_encode(&m, &w) != PN_OK || pn_conn_send(c, w.data, w.len) != PN_OK) {
		pn_conn_close(c, PN_EPROTO);
		return;
	}
	st->established++;
	start_more(st);
	say_ready_if_done(st);
}

/* The server's HELLO (and anything else) is accepted and dropped. */
static int frame_cb(struct pn_conn *c, const uint8_t *body, size_t len)
{
	return PN_OK;
}

static void close_cb(struct pn_conn *c, int err)
{
	struct idle *st = pn_conn_data(c);
	if (st->stopping)
		return;
	if (pn_conn_is_established(c)) {
		st->dropped++;
		if (st->ready_said)
			fprintf(stderr, "idle-clients: a held connection closed: %s\n", pn_strerror(err));
		return;
	}
	st->failed++;
	fprintf(stderr, "idle-clients: connection failed: %s\n", pn_strerror(err));
	start_more(st);
	say_ready_if_done(st);
}

static const struct pn_conn_cbs cbs = {
	.established_cb = established_cb,
	.frame_cb = frame_cb,
	.close_cb = close_cb,
};

/* Keeps up to `parallel` handshakes in flight until `target` were started. */
static void start_more(struct idle *st)
{
	while (!st->stopping && st->started < st->target &&
	       st->started - st->established - st->failed < st->parallel) {
		struct pn_conn *c;
		char src[32];
		if (st->sources)
			snprintf(src, sizeof src, "127.77.%u.%u", (st->started % st->sources) / 250,
				 1 + (st->started % st->sources) % 250);
		st->started++;
		int r = pn_net_connect_from(st->net, st->sources ? src : NULL, st->server, NULL, &cbs, st, &c);
		if (r != PN_OK) {
			st->failed++;
			fprintf(stderr, "idle-clients: cannot connect to %s: %s\n", st->server, pn_strerror(r));
		}
	}
	say_ready_if_done(st);
}

static void stop(struct idle *st)
{
	if (st->stopping)
		return;
	st->stopping = true;
	uv_signal_stop(&st->sig_term);
	uv_signal_stop(&st->sig_int);
	uv_close((uv_handle_t *)&st->sig_term, NULL);
	uv_close((uv_handle_t *)&st->sig_int, NULL);
	if (st->stdin_polled) {
		uv_poll_stop(&st->stdin_poll);
		uv_close((uv_handle_t *)&st->stdin_poll, NULL);
	}
	uv_timer_stop(&st->report);
	uv_close((uv_handle_t *)&st->report, NULL);
	pn_net_close(st->net);
}

static void signal_cb(uv_signal_t *s, int signum)
{
	stop(s->data);
}

static void stdin_cb(uv_poll_t *p, int status, int events)
{
	char buf[256];
	ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) || status < 0)
		stop(p->data);
}

/* Reports drops once a second after ready, so the caller sees them. */
static void report_cb(uv_timer_t *t)
{
	struct idle *st = t->data;
	static unsigned reported;
	if (st->ready_said && st->dropped != reported) {
		reported = st->dropped;
		printf("closed %u\n", st->dropped);
		fflush(stdout);
	}
}

static void usage(FILE *f)
{
	fprintf(f, "usage: idle-clients --server HOST:PORT [-n N] [--parallel P] [--sources K]\n"
		   "Opens N (default %d) TLS connections, sends HELLO on each, prints 'ready ...'\n"
		   "when all are up, holds them until SIGTERM/SIGINT or stdin closes.\n",
		DEFAULT_CONNS);
}

int main(int argc, char **argv)
{
	struct idle st = {0};
	struct pn_identity id;
	int sources = -1; /* -1: as many as the connections need, on loopback */
	st.target = DEFAULT_CONNS;
	st.parallel = DEFAULT_PARALLEL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--server") && i + 1 < argc)
			st.server = argv[++i];
		else if ((!strcmp(argv[i], "-n") || !strcmp(argv[i], "--conns")) && i + 1 < argc)
			st.target = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--parallel") && i + 1 < argc)
			st.parallel = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--sources") && i + 1 < argc)
			sources = (int)strtol(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (!st.server || st.target == 0 || st.parallel == 0 || sources > 250 * 250) {
		usage(stderr);
		return 2;
	}
	if (sources < 0)
		st.sources = strncmp(st.server, "127.", 4) ? 0
			     : (st.target + PN_NET_CONNS_PER_ADDR / 2 - 1) / (PN_NET_CONNS_PER_ADDR / 2);
	else
		st.sources = (unsigned)sources;
	signal(SIGPIPE, SIG_IGN);
	struct pn_logger log = {.cb = pn_log_stderr_cb, .ud = (void *)"idle-clients", .level = PN_LOG_WARN};
	enum pn_log_level level;
	if (pn_log_level_parse(getenv("PEERNET_LOG"), &level) == PN_OK)
		log.level = level;

	/* One descriptor per connection, plus a few. */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < st.target + 64) {
		rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > st.target + 64 ? st.target + 64 : rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < st.target + 16)
			fprintf(stderr, "idle-clients: warning: descriptor limit %llu is below %u connections\n",
				(unsigned long long)rl.rlim_cur, st.target);
	}

	st.loop = uv_default_loop();
	if (pn_identity_ephemeral(&id) != PN_OK) {
		fprintf(stderr, "idle-clients: cannot make an identity\n");
		return 1;
	}
	struct pn_net_opts o;
	pn_net_opts_default(&o);
	o.idle_timeout_ms = 0; /* we are the idle side: never time ourselves out */
	o.handshake_timeout_ms = 60000;
	o.log = &log;
	if (pn_net_new(st.loop, &id, &o, &st.net) != PN_OK) {
		fprintf(stderr, "idle-clients: cannot set up TLS\n");
		pn_identity_free(&id);
		return 1;
	}
	uv_signal_init(st.loop, &st.sig_term);
	uv_signal_init(st.loop, &st.sig_int);
	st.sig_term.data = st.sig_int.data = &st;
	uv_signal_start(&st.sig_term, signal_cb, SIGTERM);
	uv_signal_start(&st.sig_int, signal_cb, SIGINT);
	/* stdin: a pipe or terminal can be polled; a file or /dev/null cannot, and is ignored. */
	if (uv_poll_init(st.loop, &st.stdin_poll, STDIN_FILENO) == 0) {
		st.stdin_poll.data = &st;
		if (uv_poll_start(&st.stdin_poll, UV_READABLE | UV_DISCONNECT, stdin_cb) == 0)
			st.stdin_polled = true;
		else
			uv_close((uv_handle_t *)&st.stdin_poll, NULL);
	}
	uv_timer_init(st.loop, &st.report);
	st.report.data = &st;
	uv_timer_start(&st.report, report_cb, 1000, 1000);

	st.t0 = uv_hrtime();
	start_more(&st);
	uv_run(st.loop, UV_RUN_DEFAULT);
	uv_loop_close(st.loop);
	pn_identity_free(&id);
	return st.failed ? 1 : 0;
}
