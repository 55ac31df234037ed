/* The node's directory client (src/node/node_dir.c) through its context
 * struct, with a fake transport and recorded events: registration,
 * heartbeats, the reconnect backoff, look-ups and searches and what a lost
 * directory does to them. No socket, no loop. */
#include <stdio.h>
#include <string.h>
#include <criterion/criterion.h>
#include "peernet.h"
#include "node/node_dir.h"
#include "util/log.h"
#include "wire/wire.h"

#define MAX_SENT 256

struct fake {
	int connects, closes;
	int connect_result;
	int nsent;
	struct pn_msg sent[MAX_SENT]; /* shallow: pointers inside are not kept */
	/* events */
	int providers_calls;
	size_t providers_n;
	uint32_t providers_total;
	struct discovery_provider first_provider;
	int lookups_done;
	int last_lookup_err;
	uint32_t last_found;
	struct pn_cid last_lookup_cid;
	int results;
	char last_result_name[PN_NAME_MAX + 1];
	int searches_done;
	void *last_search_token;
	char last_why[256];
	bool last_why_null;
	int registered, wakes;
	int log_lines;
	char last_log[PN_LOG_LINE_MAX];
};

static int fake_connect(void *ud, const char *addr)
{
	struct fake *f = ud;
	f->connects++;
	return f->connect_result;
}

static int fake_send(void *ud, const struct pn_msg *m)
{
	struct fake *f = ud;
	cr_assert_lt(f->nsent, MAX_SENT);
	f->sent[f->nsent++] = *m;
	return PN_OK;
}

static void fake_close(void *ud)
{
	struct fake *f = ud;
	f->closes++;
}

static void ev_providers(void *ud, const struct pn_cid *cid, const struct discovery_provider *p, size_t n,
			 uint32_t total)
{
	struct fake *f = ud;
	if (n && !f->providers_n)
		f->first_provider = p[0];
	f->providers_calls++;
	f->providers_n += n;
	f->providers_total = total;
}

static void ev_lookup_done(void *ud, const struct pn_cid *cid, int err, uint32_t found)
{
	struct fake *f = ud;
	f->lookups_done++;
	f->last_lookup_err = err;
	f->last_found = found;
	f->last_lookup_cid = *cid;
}

static void ev_result(void *ud, void *token, const struct pn_cid *cid, uint32_t providers, const char *name,
		      size_t name_len)
{
	struct fake *f = ud;
	f->results++;
	snprintf(f->last_result_name, sizeof f->last_result_name, "%.*s", (int)name_len, name);
}

static void ev_search_done(void *ud, void *token, const char *why)
{
	struct fake *f = ud;
	f->searches_done++;
	f->last_search_token = token;
	f->last_why_null = why == NULL;
	snprintf(f->last_why, sizeof f->last_why, "%s", why ? why : "");
}

static void ev_registered(void *ud)
{
	((struct fake *)ud)->registered++;
}

static void ev_wake(void *ud)
{
	((struct fake *)ud)->wakes++;
}

static void log_cb(void *ud, enum pn_log_level level, const char *line)
{
	struct fake *f = ud;
	f->log_lines++;
	snprintf(f->last_log, sizeof f->last_log, "%s", line);
}

static struct fake fk;
static struct pn_logger lg;
static struct dir_client *dc;

static void setup(void)
{
	memset(&fk, 0, sizeof fk);
	lg = (struct pn_logger){.cb = log_cb, .ud = &fk, .level = PN_LOG_DEBUG};
	struct dir_client_opts o = {
		.directory = "127.0.0.1:7071",
		.port = 7072,
		.log = &lg,
		.seed = 42,
		.events = {.ud = &fk, .providers_cb = ev_providers, .lookup_done_cb = ev_lookup_done,
			   .search_result_cb = ev_result, .search_done_cb = ev_search_done,
			   .registered_cb = ev_registered, .wake_cb = ev_wake},
		.transport = {.ud = &fk, .connect_cb = fake_connect, .send_cb = fake_send, .close_cb = fake_close},
	};
	dc = dir_client_new(&o);
	cr_assert_not_null(dc);
}

static void teardown(void)
{
	dir_client_free(dc);
}

TestSuite(node_dir, .init = setup, .fini = teardown);

static const struct pn_msg *last_sent(void)
{
	cr_assert_gt(fk.nsent, 0);
	return &fk.sent[fk.nsent - 1];
}

/* Connects at `now` and goes through HELLO and DIR_OK(heartbeat_ms). */
static void register_at(uint64_t now, uint32_t heartbeat_ms)
{
	dir_client_tick(dc, now);
	dir_client_connected(dc);
	cr_assert_eq(last_sent()->type, PN_MSG_HELLO);
	cr_assert_eq(last_sent()->u.hello.role, PN_ROLE_NODE);
	cr_assert_eq(last_sent()->u.hello.listen_port, 7072);
	struct pn_msg hello = {.type = PN_MSG_HELLO};
	hello.u.hello.version = PN_PROTOCOL_VERSION;
	hello.u.hello.role = PN_ROLE_DIRECTORY;
	cr_assert_eq(dir_client_on_msg(dc, &hello), PN_OK);
	cr_assert_eq(last_sent()->type, PN_MSG_DIR_REGISTER);
	cr_assert_eq(last_sent()->u.dir_register.listen_port, 7072);
	struct pn_msg ok = {.type = PN_MSG_DIR_OK};
	ok.u.dir_ok.req_id = last_sent()->u.dir_register.req_id;
	ok.u.dir_ok.heartbeat_ms = heartbeat_ms;
	cr_assert_eq(dir_client_on_msg(dc, &ok), PN_OK);
	cr_assert(dir_client_ready(dc));
}

static struct pn_cid test_cid(uint8_t fill)
{
	struct pn_cid cid;
	memset(cid.root, fill, sizeof cid.root);
	cid.size = 1000 + fill;
	return cid;
}

Test(node_dir, connects_at_once_then_backs_off_doubling_to_the_cap)
{
	cr_assert_eq(dir_client_next_wakeup(dc), 0, "the first attempt is due at once");
	dir_client_tick(dc, 100);
	cr_assert_eq(fk.connects, 1);
	cr_assert_eq(dir_client_next_wakeup(dc), UINT64_MAX, "nothing to do while connecting");
	cr_assert(!dir_client_ready(dc));

	uint64_t now = 100, expect = DIR_BACKOFF_MIN_MS;
	for (int round = 0; round < 8; round++) {
		int wakes = fk.wakes;
		dir_client_closed(dc, PN_ECONNREFUSED, now);
		cr_assert_eq(fk.wakes, wakes + 1, "the owner is told to re-arm its timer");
		cr_assert_str_eq(dir_client_last_error(dc), pn_strerror(PN_ECONNREFUSED));
		uint64_t at = dir_client_next_wakeup(dc);
		cr_assert_geq(at, now + expect, "round %d: %llu < %llu", round, (unsigned long long)at,
			      (unsigned long long)(now + expect));
		cr_assert_lt(at, now + expect + DIR_BACKOFF_JITTER_MS, "round %d", round);
		dir_client_tick(dc, at - 1);
		cr_assert_eq(fk.connects, round + 1, "not before the backoff is over");
		dir_client_tick(dc, at);
		cr_assert_eq(fk.connects, round + 2);
		now = at;
		expect = expect * 2 > DIR_BACKOFF_MAX_MS ? DIR_BACKOFF_MAX_MS : expect * 2;
	}
	cr_assert_eq(expect, DIR_BACKOFF_MAX_MS);
	cr_assert_eq(fk.log_lines, 0, "an unreachable directory that never answered is not a warning each time");
}

Test(node_dir, a_connect_that_cannot_start_waits_the_longest_backoff)
{
	fk.connect_result = PN_EINVAL;
	dir_client_tick(dc, 1000);
	cr_assert_eq(fk.connects, 1);
	cr_assert_str_eq(dir_client_last_error(dc), pn_strerror(PN_EINVAL));
	cr_assert_eq(dir_client_next_wakeup(dc), 1000 + DIR_BACKOFF_MAX_MS);
}

Test(node_dir, registers_offers_and_sends_heartbeats)
{
	register_at(0, 3000);
	cr_assert_eq(fk.registered, 1, "the owner offers its downloads on registration");
	cr_assert_str_eq(fk.last_log, "registered with the directory at 127.0.0.1:7071");
	cr_assert_str_eq(dir_client_last_error(dc), "");
	cr_assert_eq(dir_client_next_wakeup(dc), 3000);
	int sent = fk.nsent;
	dir_client_tick(dc, 2999);
	cr_assert_eq(fk.nsent, sent);
	dir_client_tick(dc, 3000);
	cr_assert_eq(fk.nsent, sent + 1);
	cr_assert_eq(last_sent()->type, PN_MSG_PING);
	cr_assert_eq(dir_client_next_wakeup(dc), 6000);

	struct pn_cid cid = test_cid(7);
	dir_client_offer(dc, &cid, "report.pdf");
	cr_assert_eq(last_sent()->type, PN_MSG_DIR_OFFER);
	cr_assert_eq(last_sent()->u.dir_offer.count, 1);
	sent = fk.nsent;
	dir_client_offer(dc, &cid, "");
	cr_assert_eq(fk.nsent, sent, "a content without a name is not offered");

	struct pn_msg ping = {.type = PN_MSG_PING};
	ping.u.ping.nonce = 99;
	cr_assert_eq(dir_client_on_msg(dc, &ping), PN_OK);
	cr_assert_eq(last_sent()->type, PN_MSG_PONG);
	cr_assert_eq(last_sent()->u.ping.nonce, 99);
}

Test(node_dir, a_registration_resets_the_backoff)
{
	dir_client_tick(dc, 0);
	uint64_t now = 0;
	for (int i = 0; i < 4; i++) { /* backoff now 8 s */
		dir_client_closed(dc, PN_ECONNREFUSED, now);
		now = dir_client_next_wakeup(dc);
		dir_client_tick(dc, now);
	}
	dir_client_connected(dc);
	struct pn_msg hello = {.type = PN_MSG_HELLO};
	hello.u.hello.role = PN_ROLE_DIRECTORY;
	cr_assert_eq(dir_client_on_msg(dc, &hello), PN_OK);
	struct pn_msg ok = {.type = PN_MSG_DIR_OK};
	ok.u.dir_ok.heartbeat_ms = 10000;
	cr_assert_eq(dir_client_on_msg(dc, &ok), PN_OK);
	cr_assert(dir_client_ready(dc));
	dir_client_closed(dc, 0, now + 50);
	cr_assert(!dir_client_ready(dc));
	cr_assert(strstr(fk.last_log, "lost the directory at 127.0.0.1:7071"), "%s", fk.last_log);
	cr_assert_str_eq(dir_client_last_error(dc), "connection closed");
	uint64_t at = dir_client_next_wakeup(dc);
	cr_assert_geq(at, now + 50 + DIR_BACKOFF_MIN_MS);
	cr_assert_lt(at, now + 50 + DIR_BACKOFF_MIN_MS + DIR_BACKOFF_JITTER_MS);
}

Test(node_dir, something_that_is_not_a_directory_is_refused)
{
	dir_client_tick(dc, 0);
	dir_client_connected(dc);
	struct pn_msg hello = {.type = PN_MSG_HELLO};
	hello.u.hello.role = PN_ROLE_NODE;
	cr_assert_eq(dir_client_on_msg(dc, &hello), PN_EPROTO);
	cr_assert_str_eq(dir_client_last_error(dc), "127.0.0.1:7071 is not a peernet directory");
	dir_client_closed(dc, PN_EPROTO, 10);
	cr_assert_str_eq(dir_client_last_error(dc), pn_strerror(PN_EPROTO));
	struct pn_msg odd = {.type = PN_MSG_CHUNK_REQ};
	cr_assert_eq(dir_client_on_msg(dc, &odd), PN_EPROTO);
}

Test(node_dir, find_reports_providers_then_the_end_of_the_look_up)
{
	struct pn_cid cid = test_cid(3);
	cr_assert_eq(dir_client_find(dc, &cid), PN_ECLOSED, "not registered yet");
	register_at(0, 10000);
	cr_assert_eq(dir_client_find(dc, &cid), PN_OK);
	const struct pn_msg *find = last_sent();
	cr_assert_eq(find->type, PN_MSG_DIR_FIND);
	uint32_t req = find->u.dir_ref.req_id;

	/* 20 providers: more than one batch of the callback. */
	uint8_t entries[20 * (PN_ID_BYTES + 1 + PN_DIR_ADDR_MAX)];
	struct pn_writer w;
	pn_wr_init(&w, entries, sizeof entries);
	for (int i = 0; i < 20; i++) {
		uint8_t id[PN_ID_BYTES];
		memset(id, 0x40 + i, sizeof id);
		char addr[32];
		snprintf(addr, sizeof addr, "10.0.0.%d:7000", i + 1);
		struct pn_dir_provider_entry e = {.node_id = id, .addr = addr, .addr_len = (uint8_t)strlen(addr)};
		pn_dir_provider_encode(&w, &e);
	}
	cr_assert_eq(w.err, 0);
	struct pn_msg m = {.type = PN_MSG_DIR_PROVIDERS};
	m.u.dir_providers.req_id = req;
	m.u.dir_providers.cid = cid;
	m.u.dir_providers.total = 25;
	m.u.dir_providers.count = 20;
	m.u.dir_providers.entries = entries;
	m.u.dir_providers.entries_len = w.len;
	cr_assert_eq(dir_client_on_msg(dc, &m), PN_OK);
	cr_assert_eq(fk.providers_n, 20);
	cr_assert_geq(fk.providers_calls, 2);
	cr_assert_eq(fk.providers_total, 25);
	cr_assert_str_eq(fk.first_provider.addr, "10.0.0.1:7000");
	cr_assert_eq(fk.first_provider.id[0], 0x40);
	cr_assert_eq(fk.lookups_done, 1);
	cr_assert_eq(fk.last_lookup_err, PN_OK);
	cr_assert_eq(fk.last_found, 25);
	cr_assert(!memcmp(&fk.last_lookup_cid, &cid, sizeof cid));

	/* The same answer again is not ours any more. */
	cr_assert_eq(dir_client_on_msg(dc, &m), PN_OK);
	cr_assert_eq(fk.lookups_done, 1);

	uint64_t lookups, msgs;
	dir_client_stats(dc, &lookups, &msgs);
	cr_assert_eq(lookups, 1);
	cr_assert_eq(msgs, 2);
}

Test(node_dir, an_error_answer_ends_a_find_and_an_unsolicited_not_found_registers_again)
{
	register_at(0, 10000);
	struct pn_cid cid = test_cid(4);
	cr_assert_eq(dir_client_find(dc, &cid), PN_OK);
	struct pn_msg e = {.type = PN_MSG_ERROR};
	e.u.error.req_id = last_sent()->u.dir_ref.req_id;
	e.u.error.code = PN_WERR_BUSY;
	e.u.error.text = "busy";
	e.u.error.text_len = 4;
	cr_assert_eq(dir_client_on_msg(dc, &e), PN_OK);
	cr_assert_eq(fk.lookups_done, 1);
	cr_assert_neq(fk.last_lookup_err, PN_OK);
	cr_assert_neq(fk.last_lookup_err, PN_ELIMIT, "a refused look-up is not one to retry silently");
	cr_assert_eq(fk.last_found, 0);

	e.u.error.req_id = 0;
	e.u.error.code = PN_WERR_NOT_FOUND;
	cr_assert_eq(dir_client_on_msg(dc, &e), PN_OK);
	cr_assert_eq(fk.closes, 1, "the directory forgot us: reconnect and register again");
	cr_assert(!dir_client_ready(dc));
}

static void search_answer(uint32_t req, int count)
{
	uint8_t entries[4 * (PN_CID_BYTES + 4 + 2 + 32)];
	struct pn_writer w;
	pn_wr_init(&w, entries, sizeof entries);
	for (int i = 0; i < count; i++) {
		char name[32];
		snprintf(name, sizeof name, "quarterly-%d.pdf", i);
		struct pn_dir_result_entry e = {.cid = test_cid((uint8_t)(10 + i)), .providers = 2, .name = name,
						.name_len = (uint16_t)strlen(name)};
		pn_dir_result_encode(&w, &e);
	}
	cr_assert_eq(w.err, 0);
	struct pn_msg m = {.type = PN_MSG_DIR_RESULTS};
	m.u.dir_results.req_id = req;
	m.u.dir_results.count = (uint16_t)count;
	m.u.dir_results.entries = entries;
	m.u.dir_results.entries_len = w.len;
	cr_assert_eq(dir_client_on_msg(dc, &m), PN_OK);
}

Test(node_dir, search_results_go_to_the_token_and_a_cancelled_search_says_nothing)
{
	int token_a, token_b;
	cr_assert_eq(dir_client_search(dc, "quarterly", &token_a), PN_ECLOSED);
	register_at(0, 10000);
	cr_assert_eq(dir_client_search(dc, "", &token_a), PN_EINVAL);
	char longq[PN_DIR_QUERY_MAX + 2];
	memset(longq, 'a', sizeof longq - 1);
	longq[sizeof longq - 1] = 0;
	cr_assert_eq(dir_client_search(dc, longq, &token_a), PN_EINVAL);

	cr_assert_eq(dir_client_search(dc, "quarterly", &token_a), PN_OK);
	uint32_t req_a = last_sent()->u.dir_search.req_id;
	cr_assert_eq(dir_client_search(dc, "quarterly", &token_b), PN_OK);
	uint32_t req_b = last_sent()->u.dir_search.req_id;
	search_answer(req_a, 3);
	cr_assert_eq(fk.results, 3);
	cr_assert_str_eq(fk.last_result_name, "quarterly-2.pdf");
	cr_assert_eq(fk.searches_done, 1);
	cr_assert_eq(fk.last_search_token, &token_a);
	cr_assert(fk.last_why_null);

	dir_client_search_cancel(dc, &token_b);
	search_answer(req_b, 2);
	cr_assert_eq(fk.results, 3, "the client that asked went away");
	cr_assert_eq(fk.searches_done, 1);
}

Test(node_dir, a_lost_directory_fails_every_look_up_in_flight)
{
	int token;
	register_at(0, 10000);
	struct pn_cid cid = test_cid(5);
	cr_assert_eq(dir_client_find(dc, &cid), PN_OK);
	cr_assert_eq(dir_client_search(dc, "report", &token), PN_OK);
	dir_client_closed(dc, PN_ECLOSED, 500);
	cr_assert_eq(fk.lookups_done, 1);
	cr_assert_eq(fk.last_lookup_err, PN_ECLOSED);
	cr_assert_eq(fk.searches_done, 1);
	cr_assert_eq(fk.last_search_token, &token);
	cr_assert_str_eq(fk.last_why, "the directory went away");
	cr_assert_eq(dir_client_find(dc, &cid), PN_ECLOSED);
}

Test(node_dir, too_many_look_ups_in_flight_forget_the_oldest_and_say_so)
{
	register_at(0, 10000);
	struct pn_cid first = test_cid(1);
	cr_assert_eq(dir_client_find(dc, &first), PN_OK);
	for (int i = 1; i < DIR_PENDING_MAX; i++) {
		struct pn_cid cid = test_cid((uint8_t)(100 + i));
		cr_assert_eq(dir_client_find(dc, &cid), PN_OK);
	}
	cr_assert_eq(fk.lookups_done, 0);
	struct pn_cid one_more = test_cid(2);
	cr_assert_eq(dir_client_find(dc, &one_more), PN_OK);
	cr_assert_eq(fk.lookups_done, 1);
	cr_assert_eq(fk.last_lookup_err, PN_ELIMIT, "forgotten, to be asked again");
	cr_assert(!memcmp(&fk.last_lookup_cid, &first, sizeof first));
}

Test(node_dir, stop_says_bye_and_reports_nothing_after)
{
	int token;
	register_at(0, 10000);
	cr_assert_eq(dir_client_search(dc, "report", &token), PN_OK);
	dir_client_stop(dc);
	cr_assert_eq(fk.sent[fk.nsent - 1].type, PN_MSG_DIR_BYE);
	cr_assert_eq(fk.closes, 1);
	cr_assert(!dir_client_ready(dc));
	int logs = fk.log_lines, wakes = fk.wakes;
	dir_client_closed(dc, 0, 100);
	cr_assert_eq(fk.searches_done, 0);
	cr_assert_eq(fk.log_lines, logs, "no 'lost the directory' while stopping");
	cr_assert_eq(fk.wakes, wakes);
	cr_assert_eq(dir_client_next_wakeup(dc), UINT64_MAX);
	dir_client_tick(dc, 100000);
	cr_assert_eq(fk.connects, 1);
}

/* An offer the directory refuses at a limit is never a silent loss: one log
 * line (not one per share), counted for status, and counted afresh after the
 * next registration, when every share is offered again. */
Test(node_dir, offers_refused_at_a_limit_are_logged_once_and_counted)
{
	register_at(0, 10000);
	cr_assert_eq(dir_client_refused(dc), 0);
	struct pn_msg e = {.type = PN_MSG_ERROR};
	e.u.error.code = PN_WERR_LIMIT;
	e.u.error.text = "offer refused\n";
	e.u.error.text_len = 14;
	int logs = fk.log_lines;
	for (int i = 0; i < 3; i++) {
		struct pn_cid cid = test_cid((uint8_t)(20 + i));
		dir_client_offer(dc, &cid, "share.bin");
		cr_assert_eq(last_sent()->type, PN_MSG_DIR_OFFER);
		e.u.error.req_id = last_sent()->u.dir_offer.req_id;
		cr_assert_eq(dir_client_on_msg(dc, &e), PN_OK);
	}
	cr_assert_eq(dir_client_refused(dc), 3);
	cr_assert_eq(fk.log_lines, logs + 1, "one line for all the refusals");
	cr_assert(strstr(fk.last_log, "refused to register") && strstr(fk.last_log, "offer refused?"), "%s",
		  fk.last_log);
	cr_assert(dir_client_ready(dc), "a refused offer does not drop the directory");
	/* An accepted offer is not counted; an answer to nothing changes nothing. */
	struct pn_cid cid = test_cid(30);
	dir_client_offer(dc, &cid, "fine.bin");
	struct pn_msg ok = {.type = PN_MSG_DIR_OK};
	ok.u.dir_ok.req_id = last_sent()->u.dir_offer.req_id;
	cr_assert_eq(dir_client_on_msg(dc, &ok), PN_OK);
	e.u.error.req_id = ok.u.dir_ok.req_id; /* already answered */
	cr_assert_eq(dir_client_on_msg(dc, &e), PN_OK);
	cr_assert_eq(dir_client_refused(dc), 3);
}
