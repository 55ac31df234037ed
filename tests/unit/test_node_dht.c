/* The node's DHT driver (src/node/node_dht.c) through its context struct:
 * three drivers on one libuv loop, each with its own identity and data
 * directory, talking real signed UDP datagrams on 127.0.0.1. Joining
 * through a bootstrap node, a search by keyword and a providers look-up
 * with the provider's address, whole words only, junk datagrams counted and
 * dropped (and their sender not heard for a while), withdrawing, DATA/dht-table written and used to rejoin without
 * a bootstrap node, a UDP port already taken, and bootstrap nodes given by
 * host name (looked up off the loop). */
#include <ftw.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <criterion/criterion.h>
#include <uv.h>
#include "peernet.h"
#include "net/net.h"
#include "node/node_dht.h"
#include "util/log.h"

#define NODES 3
#define WAIT_MS 10000

struct events {
	int providers;
	struct discovery_provider provider;
	int lookups_done, last_err;
	uint32_t last_found;
	int results;
	char result_name[PN_NAME_MAX + 1];
	uint32_t result_providers;
	int searches_done;
	const char *search_why;
	int log_lines;
	char last_log[256];
};

struct tnode {
	struct dht_node *dn;
	struct pn_identity id;
	uv_timer_t timer;
	bool timer_on;
	uint16_t port;
	char dir[96];
	char addr[PN_ADDR_STR_MAX];
	struct events ev;
	struct pn_logger lg;
};

static uv_loop_t loop;
static struct tnode tn[NODES];
static char tmpdir[64];
static int closed;

static void log_cb(void *ud, enum pn_log_level level, const char *line)
{
	struct events *e = ud;
	e->log_lines++;
	snprintf(e->last_log, sizeof e->last_log, "%s", line);
}

static void providers_cb(void *ud, const struct pn_cid *cid, const struct discovery_provider *p, size_t n,
			 uint32_t total)
{
	struct events *e = ud;
	e->providers += (int)n;
	if (n)
		e->provider = p[0];
}

static void lookup_done_cb(void *ud, const struct pn_cid *cid, int err, uint32_t found)
{
	struct events *e = ud;
	e->lookups_done++;
	e->last_err = err;
	e->last_found = found;
}

static void search_result_cb(void *ud, void *token, const struct pn_cid *cid, uint32_t providers, const char *name,
			     size_t name_len)
{
	struct events *e = ud;
	e->results++;
	e->result_providers = providers;
	snprintf(e->result_name, sizeof e->result_name, "%.*s", (int)name_len, name);
}

static void search_done_cb(void *ud, void *token, const char *why)
{
	struct events *e = ud;
	e->searches_done++;
	e->search_why = why;
}

static void tick_cb(uv_timer_t *t);

/* One timer per driver, at its next wake-up (at most 100 ms away). */
static void arm(struct tnode *t)
{
	if (!t->dn || !t->timer_on)
		return;
	uint64_t now = uv_now(&loop), next = dht_node_next_wakeup(t->dn);
	uint64_t delay = next <= now ? 0 : next - now;
	uv_timer_start(&t->timer, tick_cb, delay < 100 ? delay : 100, 0);
}

static void tick_cb(uv_timer_t *timer)
{
	struct tnode *t = timer->data;
	dht_node_tick(t->dn, uv_now(&loop));
	arm(t);
}

static void wake_cb(void *ud)
{
	for (int i = 0; i < NODES; i++)
		if (&tn[i].ev == ud)
			arm(&tn[i]);
}

/* A UDP port free right now on 127.0.0.1. */
static uint16_t free_port(void)
{
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof a;
	cr_assert(fd >= 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

static int start(int i, const char *const *boot, size_t nboot, uint16_t port, char *why, size_t whylen)
{
	struct tnode *t = &tn[i];
	t->port = port ? port : free_port();
	snprintf(t->addr, sizeof t->addr, "127.0.0.1:%u", t->port);
	t->lg = (struct pn_logger){.cb = log_cb, .ud = &t->ev, .level = PN_LOG_INFO};
	struct dht_node_opts o = {
		.loop = &loop,
		.listen = "127.0.0.1:0",
		.port = t->port,
		.data_dir = t->dir,
		.id = &t->id,
		.bootstrap = boot,
		.nbootstrap = nboot,
		.seed = 1000 + (uint64_t)i,
		.log = &t->lg,
		.events = {.ud = &t->ev, .providers_cb = providers_cb, .lookup_done_cb = lookup_done_cb,
			   .search_result_cb = search_result_cb, .search_done_cb = search_done_cb, .wake_cb = wake_cb},
	};
	int r = dht_node_new(&o, uv_now(&loop), &t->dn, why, whylen);
	if (r == PN_OK) {
		t->timer_on = true;
		arm(t);
	}
	return r;
}

static void closed_cb(void *ud)
{
	closed++;
}

static void stop(int i)
{
	struct tnode *t = &tn[i];
	if (!t->dn)
		return;
	t->timer_on = false;
	uv_timer_stop(&t->timer);
	int was = closed;
	dht_node_close(t->dn, closed_cb, NULL);
	/* The close waits for the look-ups of bootstrap names too (bounded). */
	for (int k = 0; k < WAIT_MS && closed == was; k++) {
		uv_run(&loop, UV_RUN_NOWAIT);
		if (closed == was)
			usleep(1000);
	}
	cr_assert_eq(closed, was + 1, "the socket closes from the loop");
	dht_node_free(t->dn);
	t->dn = NULL;
}

/* Runs the loop until *flag is non-zero or WAIT_MS pass. */
static bool run_until(const int *flag)
{
	for (int k = 0; k < WAIT_MS / 5 && !*flag; k++) {
		uv_run(&loop, UV_RUN_NOWAIT);
		usleep(5000);
	}
	return *flag != 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void setup(void)
{
	memset(tn, 0, sizeof tn);
	closed = 0;
	snprintf(tmpdir, sizeof tmpdir, "/tmp/pn-node-dht-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
	cr_assert_eq(uv_loop_init(&loop), 0);
	for (int i = 0; i < NODES; i++) {
		snprintf(tn[i].dir, sizeof tn[i].dir, "%s/n%d", tmpdir, i);
		cr_assert_eq(mkdir(tn[i].dir, 0700), 0);
		cr_assert_eq(pn_identity_ephemeral(&tn[i].id), PN_OK);
		uv_timer_init(&loop, &tn[i].timer);
		tn[i].timer.data = &tn[i];
	}
}

static void teardown(void)
{
	for (int i = 0; i < NODES; i++) {
		stop(i);
		uv_close((uv_handle_t *)&tn[i].timer, NULL);
	}
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(uv_loop_close(&loop), 0, "every handle closed");
	for (int i = 0; i < NODES; i++)
		pn_identity_free(&tn[i].id);
	nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(node_dht, .init = setup, .fini = teardown);

/* A joins nobody; B and C join through A. */
static void three_nodes(void)
{
	char why[256];
	cr_assert_eq(start(0, NULL, 0, 0, why, sizeof why), PN_OK, "%s", why);
	const char *boot[] = {tn[0].addr};
	cr_assert_eq(start(1, boot, 1, 0, why, sizeof why), PN_OK, "%s", why);
	cr_assert_eq(start(2, boot, 1, 0, why, sizeof why), PN_OK, "%s", why);
	int ready = 0;
	for (int k = 0; k < WAIT_MS / 5 && !ready; k++) {
		uv_run(&loop, UV_RUN_NOWAIT);
		usleep(5000);
		ready = dht_node_ready(tn[0].dn) && dht_node_ready(tn[1].dn) && dht_node_ready(tn[2].dn);
	}
	cr_assert(ready, "every node has a contact");
}

Test(node_dht, a_file_offered_is_found_by_keyword_and_by_id)
{
	three_nodes();
	struct pn_cid cid = {.size = 12345};
	memset(cid.root, 0x5a, sizeof cid.root);
	cr_assert_eq(dht_node_offer(tn[1].dn, &cid, "Quarterly Report 2026.pdf", uv_now(&loop)), PN_OK);
	cr_assert_eq(dht_node_offer(tn[1].dn, &cid, "Quarterly Report 2026.pdf", uv_now(&loop)), PN_OK, "again: no-op");
	/* The records reach the nodes close to the keys as soon as the
	 * announce's look-up ends: search until found (bounded). */
	for (int round = 0; round < 20 && !tn[2].ev.results; round++) {
		int done = tn[2].ev.searches_done;
		cr_assert_eq(dht_node_search(tn[2].dn, "report quarterly", &tn[2], uv_now(&loop)), PN_OK);
		struct events *e = &tn[2].ev;
		for (int k = 0; k < WAIT_MS / 5 && e->searches_done == done; k++) {
			uv_run(&loop, UV_RUN_NOWAIT);
			usleep(5000);
		}
		cr_assert_eq(e->searches_done, done + 1, "the search ends");
	}
	cr_assert_eq(tn[2].ev.results, 1);
	cr_assert_str_eq(tn[2].ev.result_name, "Quarterly Report 2026.pdf");
	cr_assert_eq(tn[2].ev.result_providers, 1);
	cr_assert_null(tn[2].ev.search_why);

	/* Whole words only, every word must match; a query without a word of
	 * 2 bytes is refused at once. */
	int done = tn[2].ev.searches_done;
	cr_assert_eq(dht_node_search(tn[2].dn, "quarterly missing", &tn[2], uv_now(&loop)), PN_OK);
	for (int k = 0; k < WAIT_MS / 5 && tn[2].ev.searches_done == done; k++) {
		uv_run(&loop, UV_RUN_NOWAIT);
		usleep(5000);
	}
	cr_assert_eq(tn[2].ev.results, 1, "no new result");
	cr_assert_eq(dht_node_search(tn[2].dn, "a b c", &tn[2], uv_now(&loop)), PN_EINVAL);

	/* The providers look-up names B and its address. */
	cr_assert_eq(dht_node_find(tn[0].dn, &cid, uv_now(&loop)), PN_OK);
	cr_assert(run_until(&tn[0].ev.lookups_done));
	cr_assert_eq(tn[0].ev.last_err, PN_OK);
	cr_assert_eq(tn[0].ev.last_found, 1);
	cr_assert_eq(tn[0].ev.providers, 1);
	cr_assert_str_eq(tn[0].ev.provider.addr, tn[1].addr);
	cr_assert_eq(memcmp(tn[0].ev.provider.id, tn[1].id.node_id, PN_ID_BYTES), 0);

	struct dht_node_stats st;
	dht_node_get_stats(tn[2].dn, &st);
	cr_assert_geq(st.lookups, 2);
	cr_assert_geq(st.lookups_done, 2);
	cr_assert_geq(st.msgs_median, 1);
	cr_assert_geq(st.rounds_median, 1);
	cr_assert_geq(st.contacts, 1);
	cr_assert_eq(st.bad_datagrams, 0);
	dht_node_get_stats(tn[1].dn, &st);
	cr_assert_eq(st.offers, 1);
	dht_node_withdraw(tn[1].dn, &cid);
	dht_node_get_stats(tn[1].dn, &st);
	cr_assert_eq(st.offers, 0);
}

Test(node_dht, junk_datagrams_are_counted_and_dropped_with_bounded_logging)
{
	three_nodes();
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
				 .sin_port = htons(tn[0].port)};
	uint8_t junk[200];
	memset(junk, 0x41, sizeof junk);
	junk[0] = 'p';
	junk[1] = 'D';
	junk[2] = 1;
	junk[3] = 1; /* a PING with a signature that is not one */
	int logs = tn[0].ev.log_lines;
	for (int i = 0; i < 50; i++)
		cr_assert_eq(sendto(fd, junk, i % 2 ? sizeof junk : 40 + 64, 0, (struct sockaddr *)&to, sizeof to),
			     (ssize_t)(i % 2 ? sizeof junk : 40 + 64));
	close(fd);
	struct dht_node_stats st;
	for (int k = 0; k < WAIT_MS / 5; k++) {
		uv_run(&loop, UV_RUN_NOWAIT);
		dht_node_get_stats(tn[0].dn, &st);
		if (st.bad_datagrams >= 50)
			break;
		usleep(5000);
	}
	cr_assert_eq(st.bad_datagrams, 50);
	cr_assert_leq(tn[0].ev.log_lines - logs, 1, "one line for a burst");
	cr_assert(dht_node_ready(tn[0].dn), "still in the DHT");
}

/* A signed PING from fd to node i: whether a PONG comes back. */
static bool pinged(int fd, int i)
{
	struct pn_identity id;
	struct pn_dht_msg m = {.type = PN_DHT_PING, .txid = 77};
	uint8_t dgram[PN_DHT_DGRAM_MAX];
	size_t len = 0;
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
				 .sin_port = htons(tn[i].port)};
	cr_assert_eq(pn_identity_ephemeral(&id), PN_OK);
	cr_assert_eq(pn_dht_encode(&m, dgram, &len), PN_OK);
	cr_assert_eq(pn_dht_sign_dgram(&id, dgram, len), PN_OK);
	pn_identity_free(&id);
	cr_assert_eq(sendto(fd, dgram, len, 0, (struct sockaddr *)&to, sizeof to), (ssize_t)len);
	for (int k = 0; k < 200; k++) {
		uv_run(&loop, UV_RUN_NOWAIT);
		ssize_t n = recv(fd, dgram, sizeof dgram, MSG_DONTWAIT);
		struct pn_dht_msg reply;
		if (n > 0 && pn_dht_decode(dgram, (size_t)n, &reply) == PN_OK && reply.type == PN_DHT_PONG &&
		    reply.txid == 77)
			return true;
		usleep(5000);
	}
	return false;
}

Test(node_dht, a_sender_of_junk_is_not_heard_for_a_while)
{
	char why[256];
	cr_assert_eq(start(0, NULL, 0, 0, why, sizeof why), PN_OK, "%s", why);
	int bad = socket(AF_INET, SOCK_DGRAM, 0), good = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
				 .sin_port = htons(tn[0].port)};
	cr_assert(pinged(bad, 0), "a PING is answered");
	for (int i = 0; i < 30; i++)
		cr_assert_eq(sendto(bad, "pD", 2, 0, (struct sockaddr *)&to, sizeof to), 2);
	cr_assert_not(pinged(bad, 0), "the junk's sender is not heard any more");
	cr_assert(pinged(good, 0), "another sender is");
	struct dht_node_stats st;
	dht_node_get_stats(tn[0].dn, &st);
	cr_assert_eq(st.bad_datagrams, 31);
	close(bad);
	close(good);
}

Test(node_dht, the_table_is_saved_and_a_restart_rejoins_without_bootstrap)
{
	three_nodes();
	stop(2);
	char path[160], line[256];
	snprintf(path, sizeof path, "%s/%s", tn[2].dir, DHT_NODE_TABLE_FILE);
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f, "DATA/dht-table written on stop");
	cr_assert_not_null(fgets(line, sizeof line, f));
	fclose(f);
	cr_assert(strstr(line, tn[0].addr) || strstr(line, tn[1].addr), "%s", line);
	char why[256];
	cr_assert_eq(start(2, NULL, 0, tn[2].port, why, sizeof why), PN_OK, "%s", why);
	cr_assert_not(dht_node_ready(tn[2].dn), "saved contacts are pinged before they count");
	int ready = 0;
	for (int k = 0; k < WAIT_MS / 5 && !ready; k++) {
		uv_run(&loop, UV_RUN_NOWAIT);
		usleep(5000);
		ready = dht_node_ready(tn[2].dn);
	}
	cr_assert(ready, "rejoined through the saved table");
}

Test(node_dht, a_udp_port_in_use_is_refused_with_a_reason)
{
	char why[256];
	cr_assert_eq(start(0, NULL, 0, 0, why, sizeof why), PN_OK, "%s", why);
	cr_assert_eq(start(1, NULL, 0, tn[0].port, why, sizeof why), PN_EEXIST);
	cr_assert_null(tn[1].dn);
	cr_assert(strstr(why, "address already in use"), "%s", why);
}

/* A name that getaddrinfo refuses on this machine before any query leaves it
 * (an empty label cannot be put in a DNS packet), and fast. */
#define UNRESOLVABLE_HOST "bad..name.invalid"

static int ready_flag(int i)
{
	return tn[i].dn && dht_node_ready(tn[i].dn);
}

Test(node_dht, a_bootstrap_node_given_by_host_name_is_looked_up_and_pinged)
{
	char why[256], boot0[64];
	cr_assert_eq(start(0, NULL, 0, 0, why, sizeof why), PN_OK, "%s", why);
	snprintf(boot0, sizeof boot0, "localhost:%u", tn[0].port);
	const char *boot[] = {boot0};
	cr_assert_eq(start(1, boot, 1, 0, why, sizeof why), PN_OK, "%s", why);
	cr_assert_not(dht_node_ready(tn[1].dn), "dht_node_new does not wait for the name");
	int ready = 0;
	for (int k = 0; k < WAIT_MS / 5 && !ready; k++) {
		uv_run(&loop, UV_RUN_NOWAIT);
		usleep(5000);
		ready = ready_flag(0) && ready_flag(1);
	}
	cr_assert(ready, "joined through localhost");
	cr_assert_eq(tn[1].ev.log_lines, 0, "%s", tn[1].ev.last_log);
}

Test(node_dht, a_bootstrap_name_that_does_not_resolve_is_logged)
{
	char why[256], boot0[64];
	snprintf(boot0, sizeof boot0, UNRESOLVABLE_HOST ":%u", free_port());
	const char *boot[] = {boot0};
	cr_assert_eq(start(0, boot, 1, 0, why, sizeof why), PN_OK, "%s", why);
	cr_assert_eq(tn[0].ev.log_lines, 0, "the look-up reports later, from the loop");
	cr_assert(run_until(&tn[0].ev.log_lines), "the failure is logged");
	char want[128];
	snprintf(want, sizeof want, "dht: cannot resolve the bootstrap node %s", boot0);
	cr_assert(strstr(tn[0].ev.last_log, want), "%s", tn[0].ev.last_log);
	cr_assert_not(dht_node_ready(tn[0].dn));
}

Test(node_dht, closing_while_bootstrap_names_resolve)
{
	char why[256], boot0[64], boot1[64];
	snprintf(boot0, sizeof boot0, "localhost:%u", free_port());
	snprintf(boot1, sizeof boot1, UNRESOLVABLE_HOST ":%u", free_port());
	const char *boot[] = {boot0, boot1, "127.0.0.1:9"};
	cr_assert_eq(start(0, boot, 3, 0, why, sizeof why), PN_OK, "%s", why);
	cr_assert_eq(start(1, boot, 3, 0, why, sizeof why), PN_OK, "%s", why);
	/* Both closed at once, before the loop runs again: the look-ups are
	 * cancelled or end unheeded, and each close callback waits for them. */
	for (int i = 0; i < 2; i++) {
		tn[i].timer_on = false;
		uv_timer_stop(&tn[i].timer);
		dht_node_close(tn[i].dn, closed_cb, NULL);
	}
	for (int k = 0; k < WAIT_MS && closed < 2; k++) {
		uv_run(&loop, UV_RUN_NOWAIT);
		if (closed < 2)
			usleep(1000);
	}
	cr_assert_eq(closed, 2, "each node's close callback, once");
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(tn[i].ev.log_lines, 0, "a stopped node logs no failed look-up: %s", tn[i].ev.last_log);
		dht_node_free(tn[i].dn);
		tn[i].dn = NULL;
	}
}
