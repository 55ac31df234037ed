/* The libuv driver (src/net/conn.c): the connection lifecycle table, and real
 * TLS connections over loopback on a private loop, with the net's own logger. */
#include <inttypes.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <criterion/criterion.h>
#include "net/conn_limit.h"
#include "net/conn_state.h"
#include "net/net.h"
#include "util/log.h"

/* ---- the transition table ---- */

Test(conn_state, allowed_transitions)
{
	/* The paths a connection takes. */
	cr_assert(conn_transition_ok(CONN_RESOLVING, CONN_CONNECTING));
	cr_assert(conn_transition_ok(CONN_CONNECTING, CONN_HANDSHAKING));
	cr_assert(conn_transition_ok(CONN_HANDSHAKING, CONN_ESTABLISHED));
	cr_assert(conn_transition_ok(CONN_ESTABLISHED, CONN_DRAINING));
	cr_assert(conn_transition_ok(CONN_DRAINING, CONN_CLOSING));
	cr_assert(conn_transition_ok(CONN_CLOSING, CONN_CLOSED));
	/* Failing or closing early skips the drain. */
	cr_assert(conn_transition_ok(CONN_RESOLVING, CONN_CLOSING));
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
	cr_assert_eq(allowed, 10, "exactly the ten changes above");
	/* Never backwards, never to itself, nothing after CLOSED. */
	for (int s = 0; s < CONN_NSTATES; s++) {
		cr_assert_not(conn_transition_ok((enum conn_state)s, (enum conn_state)s));
		cr_assert_not(conn_transition_ok(CONN_CLOSED, (enum conn_state)s));
		for (int earlier = 0; earlier < s; earlier++)
			cr_assert_not(conn_transition_ok((enum conn_state)s, (enum conn_state)earlier));
	}
	cr_assert_not(conn_transition_ok(CONN_CONNECTING, CONN_ESTABLISHED), "no TLS, no establishment");
	cr_assert_not(conn_transition_ok(CONN_RESOLVING, CONN_HANDSHAKING), "no address, no TCP");
	cr_assert_not(conn_transition_ok(CONN_HANDSHAKING, CONN_DRAINING), "only an established connection drains");
	cr_assert_not(conn_transition_ok(CONN_NSTATES, CONN_CLOSED));
	cr_assert_not(conn_transition_ok(CONN_CLOSING, CONN_NSTATES));
}

/* ---- fair shares of the connection slots (conn_limit.h), no socket ---- */

static struct pn_addr_key key_v4(const char *ip)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	struct pn_addr_key k;

	cr_assert_eq(inet_pton(AF_INET, ip, &sa.sin_addr), 1);
	cr_assert(pn_addr_key_from((struct sockaddr *)&sa, &k));
	return k;
}

static struct pn_addr_key key_v6(const char *ip)
{
	struct sockaddr_in6 sa = {.sin6_family = AF_INET6};
	struct pn_addr_key k;

	cr_assert_eq(inet_pton(AF_INET6, ip, &sa.sin6_addr), 1);
	cr_assert(pn_addr_key_from((struct sockaddr *)&sa, &k));
	return k;
}

static bool key_same(struct pn_addr_key a, struct pn_addr_key b)
{
	return a.family == b.family && !memcmp(a.bytes, b.bytes, sizeof a.bytes);
}

Test(conn_limit, what_counts_as_one_source)
{
	/* Each IPv4 address is its own source, loopback ones included. */
	cr_assert(key_same(key_v4("127.0.5.5"), key_v4("127.0.5.5")));
	cr_assert_not(key_same(key_v4("127.0.5.5"), key_v4("127.0.5.6")));
	cr_assert_not(key_same(key_v4("127.0.0.1"), key_v4("127.1.0.1")));
	cr_assert_not(key_same(key_v4("10.0.0.1"), key_v4("10.0.0.2")));
	/* IPv6: one /64 is one source. */
	cr_assert(key_same(key_v6("2001:db8:1:2::1"), key_v6("2001:db8:1:2:ffff:ffff:ffff:ffff")));
	cr_assert_not(key_same(key_v6("2001:db8:1:2::1"), key_v6("2001:db8:1:3::1")));
	/* A v4 client of a dual-stack listener is its IPv4 address, not ::ffff:0:0/64. */
	cr_assert(key_same(key_v6("::ffff:127.0.5.5"), key_v4("127.0.5.5")));
	cr_assert_not(key_same(key_v6("::ffff:127.0.5.5"), key_v6("::ffff:127.0.5.6")));
	cr_assert_not(key_same(key_v6("::127.0.5.5"), key_v4("127.0.5.5")), "only the mapped form is IPv4");
	struct sockaddr un = {.sa_family = AF_UNIX};
	struct pn_addr_key k;
	cr_assert_not(pn_addr_key_from(&un, &k));
}

Test(conn_limit, counts_per_source_and_frees_the_last)
{
	struct pn_addr_table t;
	struct pn_addr_key a = key_v4("127.0.5.5"), b = key_v4("127.0.5.6");

	pn_addr_table_init(&t, 42);
	cr_assert_null(pn_addr_table_find(&t, &a));
	struct pn_addr_count *ca = pn_addr_table_get(&t, &a);
	cr_assert_not_null(ca);
	cr_assert_eq(pn_addr_table_get(&t, &a), ca, "one entry per source");
	struct pn_addr_count *cb = pn_addr_table_get(&t, &b);
	cr_assert_neq(ca, cb);
	for (int i = 0; i < 3; i++)
		pn_addr_count_open(ca);
	pn_addr_count_open(cb);
	cr_assert_eq(ca->halfopen, 3);
	cr_assert_eq(ca->total, 3);
	cr_assert_eq(cb->total, 1);
	cr_assert_eq(t.entries, 2);
	pn_addr_count_handshake_over(ca);
	cr_assert_eq(ca->halfopen, 2);
	cr_assert_eq(ca->total, 3, "an established connection still counts");
	pn_addr_table_release(&t, ca);
	pn_addr_table_release(&t, ca);
	cr_assert_eq(pn_addr_table_find(&t, &a), ca, "one connection left");
	pn_addr_table_release(&t, ca);
	cr_assert_null(pn_addr_table_find(&t, &a), "the last one gone frees the entry");
	cr_assert_eq(t.entries, 1);
	cr_assert_eq(pn_addr_table_find(&t, &b), cb, "the other source is untouched");
	pn_addr_table_clear(&t);
	cr_assert_eq(t.entries, 0);
	cr_assert_null(pn_addr_table_find(&t, &b));
}

Test(conn_limit, many_sources_share_the_table)
{
	/* More sources than buckets: chains hold them, each found again. */
	struct pn_addr_table t;
	char ip[32];

	pn_addr_table_init(&t, 7);
	for (int i = 0; i < 3 * PN_ADDR_TABLE_BUCKETS; i++) {
		snprintf(ip, sizeof ip, "10.%d.%d.1", i / 256, i % 256);
		struct pn_addr_key k = key_v4(ip);
		pn_addr_count_open(pn_addr_table_get(&t, &k));
	}
	cr_assert_eq(t.entries, 3 * PN_ADDR_TABLE_BUCKETS);
	for (int i = 0; i < 3 * PN_ADDR_TABLE_BUCKETS; i++) {
		snprintf(ip, sizeof ip, "10.%d.%d.1", i / 256, i % 256);
		struct pn_addr_key k = key_v4(ip);
		struct pn_addr_count *c = pn_addr_table_get(&t, &k);
		cr_assert_eq(c->total, 1, "%s", ip);
		pn_addr_table_release(&t, c);
	}
	cr_assert_eq(t.entries, 0);
	pn_addr_table_clear(&t);
}

Test(conn_limit, the_admission_decision)
{
	struct pn_addr_count c = {0};
	struct pn_conn_limits lim = {.halfopen_per_addr = 4, .conns_per_addr = 6};

	for (int i = 0; i < 4; i++) {
		cr_assert_eq(pn_conn_admit(&c, &lim), PN_ADMIT_OK, "connection %d", i);
		pn_addr_count_open(&c);
	}
	cr_assert_eq(pn_conn_admit(&c, &lim), PN_ADMIT_HALFOPEN, "a fifth handshake from the same source");
	pn_addr_count_handshake_over(&c);
	cr_assert_eq(pn_conn_admit(&c, &lim), PN_ADMIT_OK, "one finished: room for one more");
	pn_addr_count_open(&c);
	pn_addr_count_handshake_over(&c);
	pn_addr_count_handshake_over(&c);
	cr_assert_eq(c.total, 5);
	cr_assert_eq(pn_conn_admit(&c, &lim), PN_ADMIT_OK);
	pn_addr_count_open(&c);
	cr_assert_eq(c.halfopen, 3);
	cr_assert_eq(pn_conn_admit(&c, &lim), PN_ADMIT_CONNS, "six open: the total limit, though few handshake");
	/* 0 means no limit. */
	struct pn_conn_limits none = {0, 0};
	cr_assert_eq(pn_conn_admit(&c, &none), PN_ADMIT_OK);
	/* The defaults: the half-open limit bites before the total one. */
	cr_assert_lt(PN_NET_HALFOPEN_PER_ADDR, PN_NET_CONNS_PER_ADDR);
	struct pn_net_opts o;
	pn_net_opts_default(&o);
	cr_assert_eq(o.halfopen_per_addr, PN_NET_HALFOPEN_PER_ADDR);
	cr_assert_eq(o.conns_per_addr, PN_NET_CONNS_PER_ADDR);
}

Test(conn_limit, a_node_keeps_slots_for_the_peers_it_dials)
{
	const size_t max = 128, reserved = 32;

	/* Inbound fills up to max - reserved, however few peers were dialled. */
	cr_assert(pn_slots_accept_ok(0, 0, max, reserved));
	cr_assert(pn_slots_accept_ok(95, 95, max, reserved));
	cr_assert_not(pn_slots_accept_ok(96, 96, max, reserved), "96 inbound: the rest is for dialling");
	/* Peers we dialled do not count against the inbound share ... */
	cr_assert(pn_slots_accept_ok(120, 90, max, reserved));
	/* ... but every slot taken is taken. */
	cr_assert_not(pn_slots_accept_ok(128, 10, max, reserved));
	/* No reserve: every slot may be inbound; all reserved: none. */
	cr_assert(pn_slots_accept_ok(127, 127, max, 0));
	cr_assert_not(pn_slots_accept_ok(0, 0, max, max));
	cr_assert_not(pn_slots_accept_ok(0, 0, max, max + 1));
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
	int out_of_order;        /* PINGs whose nonce went down */
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
	e->out_of_order += e->frames > 1 && m.u.ping.nonce < e->nonce;
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

/* ---- per-source limits on a real listener ---- */

/* A TCP connection to port from src_ip (a loopback address of its own). */
static int raw_connect_from(const char *src_ip, uint16_t port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in src = {.sin_family = AF_INET};
	struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};

	cr_assert_geq(fd, 0);
	cr_assert_eq(inet_pton(AF_INET, src_ip, &src.sin_addr), 1);
	cr_assert_eq(bind(fd, (struct sockaddr *)&src, sizeof src), 0, "bind %s", src_ip);
	cr_assert_eq(connect(fd, (struct sockaddr *)&dst, sizeof dst), 0);
	return fd;
}

static void run_until_refused(struct pn_net *net, uint64_t want)
{
	uint64_t start = uv_now(&T.loop);

	while (pn_net_refused_per_addr(net) < want) {
		cr_assert_lt(uv_now(&T.loop) - start, TEST_DEADLINE_MS, "waiting for %llu refusals",
			     (unsigned long long)want);
		uv_run(&T.loop, UV_RUN_ONCE);
	}
}

static int count_lines_with(const char *all, const char *needle)
{
	int n = 0;
	for (const char *p = all; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

#define FLOOD_EXTRA 8

Test(net, one_source_cannot_take_every_handshake_slot)
{
	/* A listener of its own with a long handshake timeout: nothing here
	 * may depend on how fast the loop runs. */
	struct log_capture lc = {0};
	struct pn_logger lg = {.cb = capture_cb, .ud = &lc, .level = PN_LOG_INFO};
	struct pn_net_opts o;
	struct pn_net *srv;
	uint16_t port;
	int fds[PN_NET_HALFOPEN_PER_ADDR + FLOOD_EXTRA];
	const int n = PN_NET_HALFOPEN_PER_ADDR + FLOOD_EXTRA;

	pn_net_opts_default(&o);
	o.handshake_timeout_ms = 60000;
	o.log = &lg;
	cr_assert_eq(pn_net_new(&T.loop, &T.server_id, &o, &srv), PN_OK);
	cr_assert_eq(pn_net_listen(srv, "127.0.0.1:0", accept_cb, &port), PN_OK);
	for (int i = 0; i < n; i++)
		fds[i] = raw_connect_from("127.0.5.5", port);
	run_until_refused(srv, FLOOD_EXTRA);
	/* Give the loop a few more turns: no further refusal, no more accepted. */
	for (int i = 0; i < 20; i++)
		uv_run(&T.loop, UV_RUN_NOWAIT);
	cr_assert_eq(pn_net_refused_per_addr(srv), FLOOD_EXTRA);
	cr_assert_eq(pn_net_halfopen_count(srv), PN_NET_HALFOPEN_PER_ADDR);
	cr_assert_eq(count_lines_with(lc.all, "refused"), 1, "one line for a burst of refusals: %s", lc.all);
	cr_assert(strstr(lc.all, "127.0.5.5"), "%s", lc.all);
	/* The refused ones were closed at once: each of the last reads EOF. */
	for (int i = n - FLOOD_EXTRA; i < n; i++) {
		char b;
		cr_assert_eq(read(fds[i], &b, 1), 0, "connection %d refused and closed", i);
	}
	/* Another source still gets in and finishes its handshake. */
	int other = raw_connect_from("127.0.6.6", port);
	for (int i = 0; i < 20; i++)
		uv_run(&T.loop, UV_RUN_NOWAIT);
	cr_assert_eq(pn_net_refused_per_addr(srv), FLOOD_EXTRA, "127.0.6.6 is not refused");
	cr_assert_eq(pn_net_halfopen_count(srv), PN_NET_HALFOPEN_PER_ADDR + 1);
	close(other);
	/* Closing the flood frees its slots: the source may connect again. */
	for (int i = 0; i < n; i++)
		close(fds[i]);
	uint64_t start = uv_now(&T.loop);
	while (pn_net_halfopen_count(srv) > 0) {
		cr_assert_lt(uv_now(&T.loop) - start, TEST_DEADLINE_MS, "waiting for the closes");
		uv_run(&T.loop, UV_RUN_ONCE);
	}
	int again = raw_connect_from("127.0.5.5", port);
	start = uv_now(&T.loop);
	while (pn_net_halfopen_count(srv) < 1) {
		cr_assert_lt(uv_now(&T.loop) - start, TEST_DEADLINE_MS, "waiting for the new connection");
		uv_run(&T.loop, UV_RUN_ONCE);
	}
	cr_assert_eq(pn_net_refused_per_addr(srv), FLOOD_EXTRA);
	close(again);
	pn_net_close(srv);
}

Test(net, a_source_gets_a_client_through_beside_its_stalled_ones)
{
	/* The server's net (300 ms handshake timeout): a flood from 127.0.0.1
	 * itself, then a real client from the same address once the stalled
	 * ones have timed out; meanwhile the count never passes the limit. */
	int fds[PN_NET_HALFOPEN_PER_ADDR + FLOOD_EXTRA];
	const int n = PN_NET_HALFOPEN_PER_ADDR + FLOOD_EXTRA;

	for (int i = 0; i < n; i++)
		fds[i] = raw_connect_from("127.0.0.1", T.port);
	run_until_refused(T.server, FLOOD_EXTRA);
	cr_assert_leq(pn_net_halfopen_count(T.server), PN_NET_HALFOPEN_PER_ADDR);
	run_until(&T.s.timeouts, PN_NET_HALFOPEN_PER_ADDR, "the stalled ones' handshake timeout");
	cr_assert_eq(pn_net_halfopen_count(T.server), 0);
	char addr[32];
	struct pn_conn *c = NULL;
	snprintf(addr, sizeof addr, "127.0.0.1:%u", T.port);
	cr_assert_eq(pn_net_connect(T.client, addr, T.server_id.node_id, &test_cbs, &T.c, &c), PN_OK);
	run_until(&T.c.established, 1, "the client's handshake");
	for (int i = 0; i < n; i++)
		close(fds[i]);
}

/* ---- a malformed frame: ERROR(0, PROTOCOL) before the close ---- */

struct error_seen {
	int frames, errors, closes;
	uint32_t req_id;
	uint16_t code;
};

static int error_frame_cb(struct pn_conn *c, const uint8_t *body, size_t len)
{
	struct error_seen *e = pn_conn_data(c);
	struct pn_msg m;

	e->frames++;
	cr_assert_eq(pn_msg_decode(body, len, &m), PN_OK);
	if (m.type == PN_MSG_ERROR) {
		e->errors++;
		e->req_id = m.u.error.req_id;
		e->code = m.u.error.code;
	}
	return PN_OK;
}

static void error_close_cb(struct pn_conn *c, int err)
{
	struct error_seen *e = pn_conn_data(c);
	e->closes++;
}

static const struct pn_conn_cbs error_cbs = {
	.frame_cb = error_frame_cb,
	.close_cb = error_close_cb,
};

static void bad_frame_gets_protocol_error(const void *frame, size_t len)
{
	char addr[32];
	struct pn_conn *c = NULL;
	struct error_seen seen = {0};

	snprintf(addr, sizeof addr, "127.0.0.1:%u", T.port);
	cr_assert_eq(pn_net_connect(T.client, addr, T.server_id.node_id, &error_cbs, &seen, &c), PN_OK);
	run_until(&T.s.established, 1, "the server's handshake");
	cr_assert_eq(pn_conn_send(c, frame, len), PN_OK);
	run_until(&seen.closes, 1, "the server to close");
	cr_assert_eq(seen.errors, 1, "one ERROR before the close (%d frames)", seen.frames);
	cr_assert_eq(seen.frames, 1);
	cr_assert_eq(seen.req_id, 0);
	cr_assert_eq(seen.code, PN_WERR_PROTOCOL);
	run_until(&T.s.closes, 1, "the server's close_cb");
	cr_assert_eq(T.s.frames, 0, "the bad frame never reached the owner");
}

Test(net, zero_length_frame_gets_protocol_error)
{
	static const uint8_t f[] = {0, 0, 0, 0};
	bad_frame_gets_protocol_error(f, sizeof f);
}

Test(net, unknown_type_gets_protocol_error)
{
	static const uint8_t f[] = {0, 0, 0, 3, 0x7f, 0, 0};
	bad_frame_gets_protocol_error(f, sizeof f);
}

Test(net, oversized_frame_gets_protocol_error)
{
	/* A PING (largest body 9) announcing 1000 bytes: refused on its header. */
	static const uint8_t f[] = {0, 0, 0x03, 0xe8, PN_MSG_PING, 0, 0, 0, 0, 0, 0, 0, 0};
	bad_frame_gets_protocol_error(f, sizeof f);
}

static int eproto_frame_cb(struct pn_conn *c, const uint8_t *body, size_t len)
{
	return PN_EPROTO; /* an owner that finds the message wrong and says nothing itself */
}

static const struct pn_conn_cbs eproto_cbs = {
	.established_cb = established_cb,
	.frame_cb = eproto_frame_cb,
	.close_cb = close_cb,
};

static const struct pn_conn_cbs *eproto_accept_cb(struct pn_net *net, struct pn_conn *c)
{
	pn_conn_set_data(c, &T.s);
	return &eproto_cbs;
}

Test(net, an_owners_protocol_error_is_told_to_the_peer)
{
	struct pn_net *srv;
	uint16_t port;
	char addr[32];
	struct pn_conn *c = NULL;
	struct error_seen seen = {0};

	cr_assert_eq(pn_net_new(&T.loop, &T.server_id, NULL, &srv), PN_OK);
	cr_assert_eq(pn_net_listen(srv, "127.0.0.1:0", eproto_accept_cb, &port), PN_OK);
	snprintf(addr, sizeof addr, "127.0.0.1:%u", port);
	cr_assert_eq(pn_net_connect(T.client, addr, T.server_id.node_id, &error_cbs, &seen, &c), PN_OK);
	run_until(&T.s.established, 1, "the server's handshake");
	struct pn_msg m = {.type = PN_MSG_PING};
	cr_assert_eq(pn_conn_send_msg(c, &m), PN_OK);
	run_until(&seen.closes, 1, "the server to close");
	cr_assert_eq(seen.errors, 1);
	cr_assert_eq(seen.code, PN_WERR_PROTOCOL);
	pn_net_close(srv);
}

Test(net, connect_from_a_chosen_source)
{
	char addr[32];
	struct pn_conn *c = NULL;

	snprintf(addr, sizeof addr, "127.0.0.1:%u", T.port);
	cr_assert_eq(pn_net_connect_from(T.client, "not-an-ip", addr, NULL, &test_cbs, &T.c, &c), PN_EINVAL);
	cr_assert_eq(pn_net_connect_from(T.client, "127.0.9.9", addr, T.server_id.node_id, &test_cbs, &T.c, &c),
		     PN_OK);
	run_until(&T.s.established, 1, "the server's handshake");
	cr_assert_eq(strncmp(pn_conn_peer_addr(T.s.conn), "127.0.9.9:", 10), 0, "%s", pn_conn_peer_addr(T.s.conn));
}

#define SMALL_MAX_CONNS 8

Test(net, a_full_listener_closes_its_oldest_stalled_handshake_for_a_new_one)
{
	/* Every slot taken by stalled handshakes from as many sources (each
	 * under its per-source limits): a real client still gets in, and the
	 * oldest stalled one is the one closed. */
	struct log_capture lc = {0};
	struct pn_logger lg = {.cb = capture_cb, .ud = &lc, .level = PN_LOG_INFO};
	struct pn_net_opts o;
	struct pn_net *srv;
	uint16_t port;
	int fds[SMALL_MAX_CONNS];
	char src[32], addr[32];

	pn_net_opts_default(&o);
	o.handshake_timeout_ms = 60000;
	o.max_conns = SMALL_MAX_CONNS;
	o.log = &lg;
	cr_assert_eq(pn_net_new(&T.loop, &T.server_id, &o, &srv), PN_OK);
	cr_assert_eq(pn_net_listen(srv, "127.0.0.1:0", accept_cb, &port), PN_OK);
	for (int i = 0; i < SMALL_MAX_CONNS; i++) {
		snprintf(src, sizeof src, "127.0.10.%d", i + 1);
		fds[i] = raw_connect_from(src, port);
		uint64_t start = uv_now(&T.loop);
		while (pn_net_halfopen_count(srv) < (size_t)i + 1) { /* accepted in this order */
			cr_assert_lt(uv_now(&T.loop) - start, TEST_DEADLINE_MS, "waiting for connection %d", i);
			uv_run(&T.loop, UV_RUN_ONCE);
		}
	}
	cr_assert_eq(pn_net_conn_count(srv), SMALL_MAX_CONNS);
	struct pn_conn *c = NULL;
	snprintf(addr, sizeof addr, "127.0.0.1:%u", port);
	cr_assert_eq(pn_net_connect(T.client, addr, T.server_id.node_id, &test_cbs, &T.c, &c), PN_OK);
	run_until(&T.c.established, 1, "the real client's handshake");
	cr_assert_eq(pn_net_evicted_count(srv), 1);
	cr_assert_eq(pn_net_refused_per_addr(srv), 0);
	char b;
	cr_assert_eq(read(fds[0], &b, 1), 0, "the oldest stalled handshake was closed");
	cr_assert(strstr(lc.all, "127.0.10.1:"), "the eviction is logged: %s", lc.all);
	for (int i = 0; i < SMALL_MAX_CONNS; i++)
		close(fds[i]);
	pn_conn_close(c, 0);
	pn_net_close(srv);
}

Test(net, a_listener_full_of_established_connections_refuses)
{
	/* Nothing half-open to close: the new connection is the one refused. */
	struct pn_net_opts o;
	struct pn_net *srv;
	uint16_t port;
	char addr[32];
	struct pn_conn *c1 = NULL, *c2 = NULL;
	struct end e2 = {0};

	pn_net_opts_default(&o);
	o.max_conns = 1;
	cr_assert_eq(pn_net_new(&T.loop, &T.server_id, &o, &srv), PN_OK);
	cr_assert_eq(pn_net_listen(srv, "127.0.0.1:0", accept_cb, &port), PN_OK);
	snprintf(addr, sizeof addr, "127.0.0.1:%u", port);
	cr_assert_eq(pn_net_connect(T.client, addr, T.server_id.node_id, &test_cbs, &T.c, &c1), PN_OK);
	run_until(&T.s.established, 1, "the first connection");
	cr_assert_eq(pn_net_connect(T.client, addr, T.server_id.node_id, &test_cbs, &e2, &c2), PN_OK);
	run_until(&e2.closes, 1, "the second connection's refusal");
	cr_assert_eq(e2.established, 0);
	cr_assert_eq(pn_net_evicted_count(srv), 0);
	cr_assert(pn_conn_is_established(c1), "the first is untouched");
	pn_net_close(srv);
}

Test(net, under_a_cap_a_small_message_does_not_wait_behind_the_debt)
{
	char addr[32];
	struct pn_conn *c = NULL;

	snprintf(addr, sizeof addr, "127.0.0.1:%u", T.port);
	cr_assert_eq(pn_net_connect(T.client, addr, T.server_id.node_id, &test_cbs, &T.c, &c), PN_OK);
	run_until(&T.c.established, 1, "the client's handshake");
	run_until(&T.s.established, 1, "the server's handshake");
	pn_net_set_rates(T.client, 100, 0); /* 100 B/s: any write puts the cap in debt for a while */
	struct pn_msg m = {.type = PN_MSG_PING};
	uint64_t up0, up1, up2, up3, down;
	pn_net_bytes(T.client, &up0, &down);
	/* Control messages go to the socket in the same loop turn, debt or not
	 * (counted all the same). */
	cr_assert_eq(pn_conn_send_msg(c, &m), PN_OK);
	uv_run(&T.loop, UV_RUN_NOWAIT);
	pn_net_bytes(T.client, &up1, &down);
	cr_assert_gt(up1, up0, "a PING waited for the shaper");
	cr_assert_eq(pn_conn_send_msg(c, &m), PN_OK);
	uv_run(&T.loop, UV_RUN_NOWAIT);
	pn_net_bytes(T.client, &up2, &down);
	cr_assert_gt(up2, up1, "a PING waited for the debt of the one before");
	run_until(&T.s.frames, 2, "both PINGs");
	/* A large write waits for the cap, and a small one behind it keeps its place. */
	static uint8_t big[4096];
	cr_assert_eq(pn_conn_send(c, big, sizeof big), PN_OK);
	cr_assert_eq(pn_conn_send_msg(c, &m), PN_OK);
	uv_run(&T.loop, UV_RUN_NOWAIT);
	pn_net_bytes(T.client, &up3, &down);
	cr_assert_eq(up3, up2, "the large write or the PING behind it skipped the cap");
	cr_assert_gt(pn_conn_queued(c), sizeof big);
}

/* Small frames sent in one loop turn go out as one TLS record in one write
 * (TLS 1.3 adds 22 bytes per record: 5 of header, 1 of inner type, 16 of
 * tag), in the order sent; a large frame goes after what was gathered
 * before it. */
Test(net, small_frames_of_one_turn_share_one_record)
{
	char addr[32];
	struct pn_conn *c = NULL;

	snprintf(addr, sizeof addr, "127.0.0.1:%u", T.port);
	cr_assert_eq(pn_net_connect(T.client, addr, T.server_id.node_id, &test_cbs, &T.c, &c), PN_OK);
	run_until(&T.c.established, 1, "the client's handshake");
	run_until(&T.s.established, 1, "the server's handshake");
	uint8_t frame[64];
	struct pn_writer w;
	pn_wr_init(&w, frame, sizeof frame);
	struct pn_msg m = {.type = PN_MSG_PING};
	cr_assert_eq(pn_msg_encode(&m, &w), PN_OK);
	uint64_t up0, up1, down;
	pn_net_bytes(T.client, &up0, &down);
	for (uint64_t i = 1; i <= 10; i++) {
		m.u.ping.nonce = i;
		cr_assert_eq(pn_conn_send_msg(c, &m), PN_OK);
	}
	pn_net_bytes(T.client, &up1, &down);
	cr_assert_eq(up1, up0, "nothing is written before the loop turns");
	uv_run(&T.loop, UV_RUN_NOWAIT);
	pn_net_bytes(T.client, &up1, &down);
	cr_assert_eq(up1 - up0, 10 * w.len + 22, "ten PINGs of %zu bytes took %" PRIu64 " bytes", w.len, up1 - up0);
	run_until(&T.s.frames, 10, "ten PINGs");
	cr_assert_eq(T.s.nonce, 10);
	cr_assert_eq(T.s.out_of_order, 0);
	/* More than a record's worth in one turn: every frame arrives, in order. */
	for (uint64_t i = 11; i <= 3000; i++) {
		m.u.ping.nonce = i;
		cr_assert_eq(pn_conn_send_msg(c, &m), PN_OK);
	}
	run_until(&T.s.frames, 3000, "3,000 PINGs");
	cr_assert_eq(T.s.nonce, 3000);
	cr_assert_eq(T.s.out_of_order, 0);
	pn_conn_close(c, 0);
	run_until(&T.c.closes, 1, "the close");
}

/* pn_conn_take_frame: a frame_cb that takes the buffer of every other frame
 * gets the frame's own bytes (no copy), and the frames after it still come,
 * all of them, in order. */
static struct {
	int frames, taken, refused;
	uint64_t last_nonce;
	bool out_of_order, bad_bytes;
} TK;

static int take_frame_cb(struct pn_conn *c, const uint8_t *body, size_t len)
{
	struct pn_msg m;
	cr_assert_eq(pn_msg_decode(body, len, &m), PN_OK);
	TK.out_of_order |= TK.frames > 0 && m.u.ping.nonce != TK.last_nonce + 1;
	TK.last_nonce = m.u.ping.nonce;
	TK.frames++;
	uint8_t outside = 0;
	size_t cap = 0;
	if (pn_conn_take_frame(c, &outside, NULL, 0, &cap))
		TK.refused = -1000; /* a pointer outside the frame must be refused */
	if (m.u.ping.nonce % 2 == 0)
		return PN_OK;
	uint8_t *buf = pn_conn_take_frame(c, body + 1, NULL, 0, &cap);
	if (!buf) {
		TK.refused++;
		return PN_OK;
	}
	TK.taken++;
	/* The taken buffer holds this very frame: length prefix, then the body. */
	TK.bad_bytes |= buf + PN_FRAME_HDR != body || cap < PN_FRAME_HDR + len || pn_get_u32(buf) != len;
	/* A second take of the same frame is refused. */
	if (pn_conn_take_frame(c, body + 1, NULL, 0, &cap))
		TK.refused = -1000;
	free(buf);
	return PN_OK;
}

static const struct pn_conn_cbs take_cbs = {
	.established_cb = established_cb,
	.frame_cb = take_frame_cb,
	.close_cb = close_cb,
};

static const struct pn_conn_cbs *take_accept_cb(struct pn_net *net, struct pn_conn *c)
{
	pn_conn_set_data(c, &T.s);
	return &take_cbs;
}

Test(net, a_frame_handler_can_take_the_frames_buffer)
{
	memset(&TK, 0, sizeof TK);
	pn_net_close(T.server);
	cr_assert_eq(pn_net_new(&T.loop, &T.server_id, NULL, &T.server), PN_OK);
	cr_assert_eq(pn_net_listen(T.server, "127.0.0.1:0", take_accept_cb, &T.port), PN_OK);
	char addr[32];
	struct pn_conn *c = NULL;
	snprintf(addr, sizeof addr, "127.0.0.1:%u", T.port);
	cr_assert_eq(pn_net_connect(T.client, addr, T.server_id.node_id, &test_cbs, &T.c, &c), PN_OK);
	run_until(&T.c.established, 1, "the client's handshake");
	run_until(&T.s.established, 1, "the server's handshake");
	struct pn_msg m = {.type = PN_MSG_PING};
	for (uint64_t i = 1; i <= 2000; i++) { /* several TLS records, many frames per read */
		m.u.ping.nonce = i;
		cr_assert_eq(pn_conn_send_msg(c, &m), PN_OK);
	}
	run_until(&TK.frames, 2000, "2,000 PINGs");
	cr_assert_eq(TK.last_nonce, 2000);
	cr_assert_not(TK.out_of_order, "a frame after a taken one came out of order");
	cr_assert_not(TK.bad_bytes, "a taken buffer did not hold its frame");
	cr_assert_geq(TK.refused, 0, "a take that must fail succeeded");
	cr_assert_gt(TK.taken, 0, "no frame was taken");
	cr_assert_eq(TK.taken + TK.refused, 1000);
	cr_assert_eq(pn_conn_bytes_in(T.s.conn), pn_conn_bytes_out(c), "every byte counted once");
	pn_conn_close(c, 0);
	run_until(&T.c.closes, 1, "the close");
}

/* ---- host names: looked up off the loop ---- */

/* A name that getaddrinfo refuses on this machine, before any query leaves
 * it (an empty label cannot be put in a DNS packet), and fast. */
#define UNRESOLVABLE_HOST "bad..name.invalid"

Test(net, a_literal_address_dials_at_once)
{
	char addr[32];
	struct pn_conn *c = NULL;

	snprintf(addr, sizeof addr, "127.0.0.1:%u", T.port);
	cr_assert_eq(pn_net_connect(T.client, addr, T.server_id.node_id, &test_cbs, &T.c, &c), PN_OK);
	cr_assert_eq(pn__conn_state(c), CONN_CONNECTING, "no look-up for a literal");
	cr_assert_str_eq(pn_conn_peer_addr(c), addr);
	run_until(&T.c.established, 1, "the client's handshake");
}

Test(net, a_host_name_resolves_without_blocking_the_call)
{
	struct pn_net *srv;
	uint16_t port;
	char addr[64];
	struct pn_conn *c = NULL;

	/* A listener on what "localhost" resolves to first, whichever family. */
	cr_assert_eq(pn_net_new(&T.loop, &T.server_id, NULL, &srv), PN_OK);
	cr_assert_eq(pn_net_listen(srv, "localhost:0", accept_cb, &port), PN_OK);
	snprintf(addr, sizeof addr, "localhost:%u", port);
	cr_assert_eq(pn_net_connect(T.client, addr, T.server_id.node_id, &test_cbs, &T.c, &c), PN_OK);
	cr_assert_eq(pn__conn_state(c), CONN_RESOLVING, "returned before the name is looked up");
	cr_assert_str_eq(pn_conn_peer_addr(c), addr, "the name, until it resolves");
	cr_assert_eq(pn_conn_send(c, "x", 1), PN_ECLOSED, "nothing is sent before TLS is up");
	run_until(&T.c.established, 1, "the client's handshake");
	run_until(&T.s.established, 1, "the server's handshake");
	cr_assert_eq(T.c.closes, 0);
	cr_assert_neq(strcmp(pn_conn_peer_addr(c), addr), 0, "the address it reached: %s", pn_conn_peer_addr(c));
	cr_assert_arr_eq(pn_conn_peer_id(c), T.server_id.node_id, PN_ID_BYTES);
	pn_net_close(srv);
}

Test(net, a_host_name_from_a_chosen_source)
{
	char addr[32];
	struct pn_conn *c = NULL;

	/* T.server listens on 127.0.0.1: from an IPv4 source, localhost is looked up as IPv4. */
	snprintf(addr, sizeof addr, "localhost:%u", T.port);
	cr_assert_eq(pn_net_connect_from(T.client, "127.0.9.9", addr, T.server_id.node_id, &test_cbs, &T.c, &c),
		     PN_OK);
	cr_assert_eq(pn__conn_state(c), CONN_RESOLVING);
	run_until(&T.s.established, 1, "the server's handshake");
	cr_assert_eq(strncmp(pn_conn_peer_addr(T.s.conn), "127.0.9.9:", 10), 0, "%s", pn_conn_peer_addr(T.s.conn));
}

Test(net, closing_while_the_name_resolves)
{
	char addr[32];
	struct pn_conn *c = NULL;

	snprintf(addr, sizeof addr, "localhost:%u", T.port);
	cr_assert_eq(pn_net_connect(T.client, addr, NULL, &test_cbs, &T.c, &c), PN_OK);
	cr_assert_eq(pn__conn_state(c), CONN_RESOLVING);
	pn_conn_close(c, 0);
	pn_conn_close(c, PN_EIO); /* again: ignored */
	cr_assert_eq(T.c.closes, 0, "close_cb runs from the loop, not from pn_conn_close");
	run_until(&T.c.closes, 1, "the client's close");
	cr_assert_eq(T.c.close_err, 0);
	cr_assert_eq(T.c.established, 0);
	cr_assert_eq(pn_net_conn_count(T.client), 0);
	/* Whatever the look-up does now (cancelled or finished), it touches nothing:
	 * teardown runs the loop until it has reported, under ASan. */
}

static int net_closed;

static void net_closed_cb(void *ud)
{
	net_closed++;
}

Test(net, closing_the_net_while_names_resolve)
{
	struct pn_net *client;
	struct end ends[3];
	char addr[64];
	struct pn_conn *c = NULL;

	memset(ends, 0, sizeof ends);
	net_closed = 0;
	cr_assert_eq(pn_net_new(&T.loop, &T.client_id, NULL, &client), PN_OK);
	snprintf(addr, sizeof addr, "localhost:%u", T.port);
	cr_assert_eq(pn_net_connect(client, addr, NULL, &test_cbs, &ends[0], &c), PN_OK);
	cr_assert_eq(pn_net_connect(client, addr, NULL, &test_cbs, &ends[1], &c), PN_OK);
	snprintf(addr, sizeof addr, UNRESOLVABLE_HOST ":%u", T.port);
	cr_assert_eq(pn_net_connect(client, addr, NULL, &test_cbs, &ends[2], &c), PN_OK);
	pn_net_close_cb(client, net_closed_cb, NULL);
	run_until(&net_closed, 1, "the net to be freed");
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(ends[i].closes, 1, "connection %d: close_cb once", i);
		cr_assert_eq(ends[i].close_err, 0, "connection %d: closed by the net, not by its look-up", i);
		cr_assert_eq(ends[i].established, 0);
	}
}

Test(net, a_name_that_does_not_resolve_closes_with_not_found)
{
	char addr[64];
	struct pn_conn *c = NULL;
	struct sockaddr_storage ss;

	snprintf(addr, sizeof addr, UNRESOLVABLE_HOST ":%u", T.port);
	cr_assert_eq(pn_addr_parse(addr, &ss, false), PN_ENOTFOUND, "what the blocking path says");
	cr_assert_eq(pn_net_connect(T.client, addr, NULL, &test_cbs, &T.c, &c), PN_OK);
	cr_assert_eq(pn__conn_state(c), CONN_RESOLVING);
	cr_assert_eq(T.c.closes, 0, "never closed from inside pn_net_connect");
	run_until(&T.c.closes, 1, "the client's close");
	cr_assert_eq(T.c.close_err, PN_ENOTFOUND);
	cr_assert_eq(T.c.established, 0);
	cr_assert_eq(pn_net_conn_count(T.client), 0);
}

Test(net, numeric_parsing_never_looks_a_name_up)
{
	struct sockaddr_storage ss;

	cr_assert_eq(pn_addr_parse_numeric("127.0.0.1:80", &ss, false), PN_OK);
	cr_assert_eq(ss.ss_family, AF_INET);
	cr_assert_eq(pn_addr_parse_numeric("[::1]:80", &ss, false), PN_OK);
	cr_assert_eq(ss.ss_family, AF_INET6);
	cr_assert_eq(pn_addr_parse_numeric(":80", &ss, true), PN_OK);
	cr_assert_eq(pn_addr_parse_numeric("localhost:80", &ss, false), PN_EINVAL);
	cr_assert_eq(pn_addr_parse_numeric("127.0.0.1:99999", &ss, false), PN_EINVAL);
	cr_assert_eq(pn_net_connect(T.client, "localhost:99999", NULL, &test_cbs, &T.c, &(struct pn_conn *){NULL}),
		     PN_EINVAL, "a bad port is refused at once, name or not");
}
