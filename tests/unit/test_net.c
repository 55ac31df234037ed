/* The libuv driver (src/net/conn.c): the connection lifecycle table, and real
 * TLS connections over loopback on a private loop, with the net's own logger. */
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <criterion/criterion.h>
#include "net/conn_state.h"
#include "net/net.h"
#include "util/log.h"

/* ---- the transition table ---- */

Test(conn_state, allowed_transitions)
{
	/* The paths a connection takes. */
	cr_assert(conn_transition_ok(CONN_CONNECTING, CONN_HANDSHAKING));
	cr_assert(conn_transition_ok(CONN_HANDSHAKING, CONN_ESTABLISHED));
	cr_assert(conn_transition_ok(CONN_ESTABLISHED, CONN_DRAINING));
	cr_assert(conn_transition_ok(CONN_DRAINING, CONN_CLOSING));
	cr_assert(conn_transition_ok(CONN_CLOSING, CONN_CLOSED));
	/* Failing or closing early skips the drain. */
	cr_assert(conn_transition_ok(CONN_CONNECTING, CONN_CLOSING));
	cr_assert(conn_transition_ok(CONN_HANDSHAKING, CONN_CLOSING));
	cr_assert(conn_transition_ok(CONN_ESTABLISHED, CONN_CLOSING));
}

Test(conn_state, everything_else_is_refused)
{
	int allowed = 0;

	for (int from = 0; from < CONN_NSTATES; from++)
		for (int to = 0; to < CONN_NSTATES; to++)
			allowed += conn_transition_ok((enum conn_state)from, (enum conn_state)to);
	cr_assert_eq(allowed, 8, "exactly the eight changes above");
	/* Never backwards, never to itself, nothing after CLOSED. */
	for (int s = 0; s < CONN_NSTATES; s++) {
		cr_assert_not(conn_transition_ok((enum conn_state)s, (enum conn_state)s));
		cr_assert_not(conn_transition_ok(CONN_CLOSED, (enum conn_state)s));
		for (int earlier = 0; earlier < s; earlier++)
			cr_assert_not(conn_transition_ok((enum conn_state)s, (enum conn_state)earlier));
	}
	cr_assert_not(conn_transition_ok(CONN_CONNECTING, CONN_ESTABLISHED), "no TLS, no establishment");
	cr_assert_not(conn_transition_ok(CONN_HANDSHAKING, CONN_DRAINING), "only an established connection drains");
	cr_assert_not(conn_transition_ok(CONN_NSTATES, CONN_CLOSED));
	cr_assert_not(conn_transition_ok(CONN_CLOSING, CONN_NSTATES));
}

/* ---- loopback ---- */

#define TEST_DEADLINE_MS 10000

struct log_capture {
	int lines;
	char all[4096];
};

static void capture_cb(void *ud, enum pn_log_level level, const char *line)
{
	struct log_capture *c = ud;
	size_t used = strlen(c->all);

	c->lines++;
	snprintf(c->all + used, sizeof c->all - used, "%s\n", line);
}

struct end {
	int established, frames, closes, close_err, timeouts;
	uint64_t nonce;
	struct pn_conn *conn;
};

static struct {
	uv_loop_t loop;
	struct pn_identity server_id, client_id;
	struct pn_net *server, *client;
	struct end s, c;
	struct log_capture server_log;
	uint16_t port;
} T;

static void established_cb(struct pn_conn *c)
{
	struct end *e = pn_conn_data(c);
	e->established++;
	e->conn = c;
}

static int frame_cb(struct pn_conn *c, const uint8_t *body, size_t len)
{
	struct end *e = pn_conn_data(c);
	struct pn_msg m;

	cr_assert_eq(pn_msg_decode(body, len, &m), PN_OK);
	cr_assert_eq(m.type, PN_MSG_PING);
	e->frames++;
	e->nonce = m.u.ping.nonce;
	return PN_OK;
}

static void close_cb(struct pn_conn *c, int err)
{
	struct end *e = pn_conn_data(c);
	e->closes++;
	e->close_err = err;
	e->timeouts += err == PN_ETIMEDOUT;
	e->conn = NULL;
}

static const struct pn_conn_cbs test_cbs = {
	.established_cb = established_cb,
	.frame_cb = frame_cb,
	.close_cb = close_cb,
};

static const struct pn_conn_cbs *accept_cb(struct pn_net *net, struct pn_conn *c)
{
	pn_conn_set_data(c, &T.s);
	return &test_cbs;
}

/* Runs the loop until *flag is at least want, or fails the test. */
static void run_until(const int *flag, int want, const char *what)
{
	uint64_t start = uv_now(&T.loop);

	while (*flag < want) {
		cr_assert_lt(uv_now(&T.loop) - start, TEST_DEADLINE_MS, "waiting for %s", what);
		uv_run(&T.loop, UV_RUN_ONCE);
	}
}

static void setup(void)
{
	memset(&T, 0, sizeof T);
	cr_assert_eq(uv_loop_init(&T.loop), 0);
	cr_assert_eq(pn_identity_ephemeral(&T.server_id), PN_OK);
	cr_assert_eq(pn_identity_ephemeral(&T.client_id), PN_OK);

	struct pn_logger lg = {.cb = capture_cb, .ud = &T.server_log, .level = PN_LOG_INFO};
	struct pn_net_opts o;
	pn_net_opts_default(&o);
	o.handshake_timeout_ms = 300;
	o.log = &lg; /* copied: lg may go out of scope */
	cr_assert_eq(pn_net_new(&T.loop, &T.server_id, &o, &T.server), PN_OK);
	cr_assert_eq(pn_net_listen(T.server, "127.0.0.1:0", accept_cb, &T.port), PN_OK);
	/* The client takes every default, its logger included. */
	cr_assert_eq(pn_net_new(&T.loop, &T.client_id, NULL, &T.client), PN_OK);
}

static void teardown(void)
{
	pn_net_close(T.client);
	pn_net_close(T.server);
	uv_run(&T.loop, UV_RUN_DEFAULT);
	cr_assert_eq(uv_loop_close(&T.loop), 0, "every handle closed");
	pn_identity_free(&T.server_id);
	pn_identity_free(&T.client_id);
}

TestSuite(net, .init = setup, .fini = teardown, .timeout = 30);

Test(net, connect_send_close)
{
	char addr[32];
	struct pn_conn *c = NULL;

	snprintf(addr, sizeof addr, "127.0.0.1:%u", T.port);
	cr_assert_eq(pn_net_connect(T.client, addr, T.server_id.node_id, &test_cbs, &T.c, &c), PN_OK);
	cr_assert_not(pn_conn_is_established(c));
	cr_assert_eq(pn_conn_send(c, "x", 1), PN_ECLOSED, "nothing is sent before TLS is up");
	run_until(&T.c.established, 1, "the client's handshake");
	run_until(&T.s.established, 1, "the server's handshake");
	cr_assert(pn_conn_is_established(c));
	cr_assert_arr_eq(pn_conn_peer_id(c), T.server_id.node_id, PN_ID_BYTES);
	cr_assert_arr_eq(pn_conn_peer_id(T.s.conn), T.client_id.node_id, PN_ID_BYTES);

	struct pn_msg m = {.type = PN_MSG_PING};
	m.u.ping.nonce = 0x1122334455667788ull;
	cr_assert_eq(pn_conn_send_msg(c, &m), PN_OK);
	run_until(&T.s.frames, 1, "the PING");
	cr_assert_eq(T.s.nonce, 0x1122334455667788ull);

	/* A clean close from the client: both sides see it once. */
	pn_conn_close(c, 0);
	cr_assert_not(pn_conn_is_established(c), "closing");
	cr_assert_eq(pn_conn_send_msg(c, &m), PN_ECLOSED);
	pn_conn_close(c, PN_EIO); /* again: ignored */
	run_until(&T.c.closes, 1, "the client's close");
	run_until(&T.s.closes, 1, "the server's close");
	cr_assert_eq(T.c.close_err, 0);
	cr_assert_eq(T.s.close_err, PN_ECLOSED);
	cr_assert_eq(T.c.closes + T.s.closes, 2, "close_cb exactly once each");
	cr_assert_eq(pn_net_conn_count(T.client), 0);
	cr_assert_eq(T.server_log.lines, 0, "a clean exchange logs nothing: %s", T.server_log.all);
}

Test(net, wrong_identity_fails_the_handshake)
{
	char addr[32];
	struct pn_conn *c = NULL;

	snprintf(addr, sizeof addr, "127.0.0.1:%u", T.port);
	cr_assert_eq(pn_net_connect(T.client, addr, T.client_id.node_id, &test_cbs, &T.c, &c), PN_OK);
	run_until(&T.c.closes, 1, "the client's close");
	cr_assert_eq(T.c.established, 0);
	cr_assert_eq(T.c.close_err, PN_EPEERID);
	run_until(&T.server_log.lines, 1, "the server's log line");
}

Test(net, refused_connection_closes_once)
{
	struct pn_conn *c = NULL;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof sa;
	char addr[32];

	/* A port nobody listens on: bound, not listening. */
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	snprintf(addr, sizeof addr, "127.0.0.1:%u", ntohs(sa.sin_port));
	cr_assert_eq(pn_net_connect(T.client, addr, NULL, &test_cbs, &T.c, &c), PN_OK);
	run_until(&T.c.closes, 1, "the refusal");
	cr_assert_eq(T.c.close_err, PN_ECONNREFUSED);
	cr_assert_eq(T.c.established, 0);
	close(fd);
}

/* Raw TCP to the server: garbage fails the handshake, silence times out;
 * both are logged through the logger the server's net was given. */
static int raw_connect(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(T.port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};

	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	return fd;
}

Test(net, garbage_and_silence_are_logged_through_the_nets_logger)
{
	int garbage = raw_connect();
	char junk[64];

	memset(junk, 0x5a, sizeof junk);
	cr_assert_eq(write(garbage, junk, sizeof junk), (ssize_t)sizeof junk);
	run_until(&T.server_log.lines, 1, "the handshake failure");
	cr_assert(strstr(T.server_log.all, "handshake failed"), "%s", T.server_log.all);

	int silent = raw_connect();
	run_until(&T.s.timeouts, 1, "the handshake timeout");
	cr_assert_eq(T.s.established, 0);
	close(garbage);
	close(silent);
}
