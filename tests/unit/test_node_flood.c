/* The node's flooding (src/node/node_flood.c) through its context struct,
 * with fake peer connections and recorded events: dialling candidates up to
 * the minimum, the dial backoff, taking and refusing neighbours, peer
 * exchange, answering queries from the store, our own searches and finds,
 * dropping a neighbour that floods, and DATA/peers. No socket, no loop. */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <criterion/criterion.h>
#include "peernet.h"
#include "node/node_flood.h"
#include "store/store.h"
#include "util/log.h"
#include "wire/wire.h"

#define MAX_REC 512

struct sent {
	uint32_t key;
	uint8_t type;
	uint8_t qid[PN_QID_BYTES];
	uint8_t frame[4200];          /* send_frame: the whole frame */
	size_t frame_len;
};

struct fake {
	/* peers */
	uint32_t next_key;
	bool dial_fails;
	int ndials;
	char dialled[16][PN_ADDR_STR_MAX];
	bool dialled_with_id[16];
	int nsent;
	struct sent sent[MAX_REC];
	int ncloses;
	uint32_t closed_key[16];
	int closed_err[16];
	const struct pn_cid *held;   /* held_name_cb knows this one */
	/* events */
	int providers;
	struct discovery_provider provider;
	int lookups_done, last_lookup_err;
	uint32_t last_found;
	int results;
	uint32_t result_providers[8];
	char result_names[8][64];
	int searches_done;
	void *last_token;
	/* log */
	int log_lines;
	char logs[64][PN_LOG_LINE_MAX];
};

static struct fake fk;
static struct pn_logger lg;
static struct flood_node *fn;
static char tmpdir[64];
static uint8_t self_id[PN_ID_BYTES];

static uint32_t fake_dial(void *ud, const char *addr, const uint8_t *id)
{
	struct fake *f = ud;
	if (f->ndials < 16) {
		snprintf(f->dialled[f->ndials], PN_ADDR_STR_MAX, "%s", addr);
		f->dialled_with_id[f->ndials] = id != NULL;
	}
	f->ndials++;
	return f->dial_fails ? 0 : ++f->next_key;
}

static struct sent *record(struct fake *f, uint32_t key, uint8_t type)
{
	cr_assert_lt(f->nsent, MAX_REC);
	struct sent *s = &f->sent[f->nsent++];
	memset(s, 0, sizeof *s);
	s->key = key;
	s->type = type;
	return s;
}

static int fake_send(void *ud, uint32_t key, const struct pn_msg *m)
{
	struct sent *s = record(ud, key, m->type);
	if (m->type == PN_MSG_QUERY)
		memcpy(s->qid, m->u.query.qid, PN_QID_BYTES);
	return PN_OK;
}

static int fake_send_frame(void *ud, uint32_t key, const uint8_t *frame, size_t len)
{
	cr_assert_gt(len, PN_FRAME_HDR);
	struct sent *s = record(ud, key, frame[PN_FRAME_HDR]);
	cr_assert_leq(len, sizeof s->frame);
	memcpy(s->frame, frame, len);
	s->frame_len = len;
	return PN_OK;
}

static void fake_close(void *ud, uint32_t key, int err)
{
	struct fake *f = ud;
	if (f->ncloses < 16) {
		f->closed_key[f->ncloses] = key;
		f->closed_err[f->ncloses] = err;
	}
	f->ncloses++;
}

static bool fake_connected(void *ud, const uint8_t id[PN_ID_BYTES])
{
	return false;
}

static bool fake_local_ip(void *ud, uint32_t key, char ip[PN_ADDR_STR_MAX])
{
	snprintf(ip, PN_ADDR_STR_MAX, "10.9.8.7");
	return true;
}

static const char *fake_held_name(void *ud, const struct pn_cid *cid)
{
	struct fake *f = ud;
	return f->held && !memcmp(f->held, cid, sizeof *cid) ? "held.bin" : NULL;
}

static void ev_providers(void *ud, const struct pn_cid *cid, const struct discovery_provider *p, size_t n,
			 uint32_t total)
{
	struct fake *f = ud;
	f->providers += (int)n;
	if (n)
		f->provider = p[0];
}

static void ev_lookup_done(void *ud, const struct pn_cid *cid, int err, uint32_t found)
{
	struct fake *f = ud;
	f->lookups_done++;
	f->last_lookup_err = err;
	f->last_found = found;
}

static void ev_result(void *ud, void *token, const struct pn_cid *cid, uint32_t providers, const char *name,
		      size_t name_len)
{
	struct fake *f = ud;
	if (f->results < 8) {
		f->result_providers[f->results] = providers;
		snprintf(f->result_names[f->results], 64, "%.*s", (int)name_len, name);
	}
	f->results++;
}

static void ev_search_done(void *ud, void *token, const char *why)
{
	struct fake *f = ud;
	cr_assert_null(why);
	f->searches_done++;
	f->last_token = token;
}

static void log_cb(void *ud, enum pn_log_level level, const char *line)
{
	struct fake *f = ud;
	if (f->log_lines < 64)
		snprintf(f->logs[f->log_lines], PN_LOG_LINE_MAX, "%s", line);
	f->log_lines++;
}

static bool logged(const char *needle)
{
	for (int i = 0; i < fk.log_lines && i < 64; i++)
		if (strstr(fk.logs[i], needle))
			return true;
	return false;
}

static const char *bootstrap[] = {"127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"};

static struct flood_node *make_node(uint32_t min_nb, uint32_t max_nb, int nbootstrap, struct store *store, bool plain)
{
	struct flood_node_opts o = {
		.data_dir = tmpdir,
		.port = 7000,
		.bootstrap = bootstrap,
		.nbootstrap = nbootstrap,
		.min_neighbors = min_nb,
		.max_neighbors = max_nb,
		.plain_flood = plain,
		.seed = 7,
		.store = store,
		.log = &lg,
		.peers = {.ud = &fk, .dial_cb = fake_dial, .send_cb = fake_send, .send_frame_cb = fake_send_frame,
			  .close_cb = fake_close, .connected_cb = fake_connected, .local_ip_cb = fake_local_ip,
			  .held_name_cb = fake_held_name},
		.events = {.ud = &fk, .providers_cb = ev_providers, .lookup_done_cb = ev_lookup_done,
			   .search_result_cb = ev_result, .search_done_cb = ev_search_done},
	};
	memcpy(o.self_id, self_id, PN_ID_BYTES);
	struct flood_node *n = flood_node_new(&o);
	cr_assert_not_null(n);
	return n;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void setup(void)
{
	memset(&fk, 0, sizeof fk);
	memset(self_id, 0xee, sizeof self_id);
	lg = (struct pn_logger){.cb = log_cb, .ud = &fk, .level = PN_LOG_DEBUG};
	snprintf(tmpdir, sizeof tmpdir, "/tmp/pn-flood-node-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
	fn = NULL;
}

static void teardown(void)
{
	flood_node_free(fn);
	nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(node_flood, .init = setup, .fini = teardown);

static int count_sent(uint32_t key, uint8_t type)
{
	int c = 0;
	for (int i = 0; i < fk.nsent; i++)
		c += fk.sent[i].key == key && fk.sent[i].type == type;
	return c;
}

/* The HELLO of connection key: outgoing or not, from node id (filled with
 * id_fill), offering a link. */
static bool hello(uint32_t key, bool outgoing, uint8_t id_fill, const char *addr, uint16_t listen_port, uint64_t now)
{
	uint8_t id[PN_ID_BYTES];
	memset(id, id_fill, sizeof id);
	struct flood_peer_hello h = {.key = key, .outgoing = outgoing, .id = id, .addr = addr,
				     .listen_port = listen_port, .features = FLOOD_NODE_FEATURE};
	return flood_node_peer_hello(fn, &h, now);
}

Test(node_flood, dials_candidates_up_to_the_minimum_and_offers_links)
{
	fn = make_node(2, 3, 3, NULL, false);
	cr_assert(!flood_node_ready(fn));
	cr_assert_eq(flood_node_find(fn, &(struct pn_cid){0}, 0), PN_ECLOSED, "no neighbour yet");
	cr_assert_eq(flood_node_next_wakeup(fn, 0), 0, "candidates are due at once");
	flood_node_tick(fn, 0);
	cr_assert_eq(fk.ndials, 2, "two dials for a minimum of two");
	cr_assert(!fk.dialled_with_id[0], "a bootstrap address has no known ID");
	cr_assert_eq(flood_node_hello_features(fn, 1, true), FLOOD_NODE_FEATURE, "we dialled it for a link");
	cr_assert_eq(flood_node_hello_features(fn, 99, true), 0, "a provider connection asks no link");
	cr_assert_eq(flood_node_hello_features(fn, 99, false), FLOOD_NODE_FEATURE, "room for a dialler");
	flood_node_tick(fn, 10);
	cr_assert_eq(fk.ndials, 2, "dials in progress count towards the minimum");

	cr_assert(hello(1, true, 0x11, fk.dialled[0], 9001, 20));
	cr_assert(flood_node_ready(fn));
	cr_assert(flood_node_is_neighbor(fn, 1));
	cr_assert_eq(count_sent(1, PN_MSG_PEERS_REQ), 1, "a new neighbour is asked for its peers");
	cr_assert(logged("neighbour 127.0.0.1:9001 (1 of 2-3)"));
	struct flood_node_stats st;
	flood_node_get_stats(fn, &st);
	cr_assert_eq(st.neighbors, 1);
}

Test(node_flood, a_failed_dial_backs_off_exponentially_to_a_minute)
{
	fn = make_node(1, 2, 1, NULL, false);
	flood_node_tick(fn, 0);
	cr_assert_eq(fk.ndials, 1);
	uint64_t now = 0, backoff = 2000;
	for (uint32_t key = 1; key <= 7; key++) {
		flood_node_peer_closed(fn, key, now); /* never said HELLO */
		flood_node_tick(fn, now + backoff - 1);
		cr_assert_eq(fk.ndials, (int)key, "key %u: not before %llu ms", key, (unsigned long long)backoff);
		cr_assert_leq(flood_node_next_wakeup(fn, now), now + backoff);
		flood_node_tick(fn, now + backoff);
		cr_assert_eq(fk.ndials, (int)key + 1);
		now += backoff;
		backoff = backoff * 2 > FLOOD_NODE_BACKOFF_MAX_MS ? FLOOD_NODE_BACKOFF_MAX_MS : backoff * 2;
	}
	cr_assert_eq(backoff, FLOOD_NODE_BACKOFF_MAX_MS);
	cr_assert(logged("no reachable peer"), "alone, it says so");
}

Test(node_flood, a_dial_that_cannot_start_waits_a_minute)
{
	fn = make_node(1, 2, 1, NULL, false);
	fk.dial_fails = true;
	flood_node_tick(fn, 0);
	cr_assert_eq(fk.ndials, 1);
	fk.dial_fails = false;
	flood_node_tick(fn, FLOOD_NODE_BACKOFF_MAX_MS - 1);
	cr_assert_eq(fk.ndials, 1);
	flood_node_tick(fn, FLOOD_NODE_BACKOFF_MAX_MS);
	cr_assert_eq(fk.ndials, 2);
}

Test(node_flood, a_full_node_sends_other_peers_and_closes)
{
	fn = make_node(1, 1, 0, NULL, false);
	cr_assert(hello(5, false, 0x55, "10.0.0.5:40000", 7005, 0), "room for one");
	cr_assert(flood_node_is_neighbor(fn, 5));
	cr_assert_eq(flood_node_hello_features(fn, 6, false), 0, "full: says so in its HELLO");
	cr_assert(!hello(6, false, 0x66, "10.0.0.6:40000", 7006, 0));
	cr_assert(!flood_node_is_neighbor(fn, 6));
	cr_assert_eq(count_sent(6, PN_MSG_PEERS), 1, "somewhere else to go");
	cr_assert_eq(fk.ncloses, 1);
	cr_assert_eq(fk.closed_key[0], 6);
	/* A peer without the feature is left alone. */
	struct flood_peer_hello h = {.key = 7, .id = self_id, .addr = "10.0.0.7:1", .features = 0};
	cr_assert(flood_node_peer_hello(fn, &h, 0));
	cr_assert_eq(fk.ncloses, 1);
}

Test(node_flood, peer_exchange_adds_candidates_and_answers_neighbours_only)
{
	fn = make_node(1, 4, 0, NULL, false);
	cr_assert(hello(5, false, 0x55, "10.0.0.5:40000", 7005, 0));
	uint8_t entries[3 * (PN_ID_BYTES + 1 + PN_DIR_ADDR_MAX)];
	struct pn_writer w;
	pn_wr_init(&w, entries, sizeof entries);
	uint8_t ids[3][PN_ID_BYTES];
	const char *addrs[3] = {"10.0.0.8:7008", "10.0.0.9:7009", "10.0.0.10:7010"};
	memset(ids[0], 0x88, PN_ID_BYTES);
	memset(ids[1], 0x99, PN_ID_BYTES);
	memcpy(ids[2], self_id, PN_ID_BYTES); /* ourselves: not a candidate */
	for (int i = 0; i < 3; i++) {
		struct pn_dir_provider_entry e = {.node_id = ids[i], .addr = addrs[i], .addr_len = (uint8_t)strlen(addrs[i])};
		pn_dir_provider_encode(&w, &e);
	}
	struct pn_msg m = {.type = PN_MSG_PEERS};
	m.u.peers.count = 3;
	m.u.peers.entries = entries;
	m.u.peers.entries_len = w.len;
	struct flood_node_stats st;
	flood_node_get_stats(fn, &st);
	size_t before = st.candidates;
	cr_assert_eq(flood_node_on_msg(fn, 5, &m, NULL, 0, 0), PN_OK);
	flood_node_get_stats(fn, &st);
	cr_assert_eq(st.candidates, before + 2);

	struct pn_msg req = {.type = PN_MSG_PEERS_REQ};
	cr_assert_eq(flood_node_on_msg(fn, 5, &req, NULL, 0, 0), PN_OK);
	cr_assert_eq(count_sent(5, PN_MSG_PEERS), 1);
	cr_assert_eq(flood_node_on_msg(fn, 42, &req, NULL, 0, 0), PN_OK);
	cr_assert_eq(count_sent(42, PN_MSG_PEERS), 0, "not a neighbour");
	struct pn_msg other = {.type = PN_MSG_CHUNK_REQ};
	cr_assert_eq(flood_node_on_msg(fn, 5, &other, NULL, 0, 0), PN_ENOTSUP);
}

Test(node_flood, a_lost_neighbour_is_redialled_after_a_second)
{
	fn = make_node(1, 2, 1, NULL, false);
	flood_node_tick(fn, 0);
	cr_assert(hello(1, true, 0x11, fk.dialled[0], 9001, 0));
	flood_node_peer_closed(fn, 1, 5000);
	cr_assert(!flood_node_ready(fn));
	cr_assert(logged("lost neighbour 127.0.0.1:9001 (0 left)"));
	flood_node_tick(fn, 5999);
	cr_assert_eq(fk.ndials, 1);
	flood_node_tick(fn, 6000);
	cr_assert_eq(fk.ndials, 2);
	cr_assert(fk.dialled_with_id[1], "its ID is known now and pinned");
}

/* A QUERY of kind from neighbour key; returns its qid's first byte. */
static void query_from(uint32_t key, uint8_t kind, const void *data, uint16_t len, uint8_t qid_fill, uint64_t now)
{
	struct pn_msg m = {.type = PN_MSG_QUERY};
	memset(m.u.query.qid, qid_fill, PN_QID_BYTES);
	m.u.query.ttl = 2;
	m.u.query.kind = kind;
	m.u.query.len = len;
	m.u.query.data = data;
	cr_assert_eq(flood_node_on_msg(fn, key, &m, NULL, 0, now), PN_OK);
}

/* The last QUERY_HIT frame sent to key, decoded; false if none. */
static bool last_hit(uint32_t key, struct pn_msg *m)
{
	for (int i = fk.nsent - 1; i >= 0; i--) {
		if (fk.sent[i].key != key || fk.sent[i].type != PN_MSG_QUERY_HIT)
			continue;
		cr_assert_eq(pn_msg_decode(fk.sent[i].frame + PN_FRAME_HDR, fk.sent[i].frame_len - PN_FRAME_HDR, m), PN_OK);
		return true;
	}
	return false;
}

Test(node_flood, answers_keyword_and_content_queries_from_what_it_holds)
{
	char path[128];
	snprintf(path, sizeof path, "%s/Quarterly Report.pdf", tmpdir);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs("numbers", f);
	fclose(f);
	struct store *store;
	char sdir[128];
	snprintf(sdir, sizeof sdir, "%s/store", tmpdir);
	cr_assert_eq(store_open_log(sdir, NULL, &store), PN_OK);
	const struct store_object *o;
	cr_assert_eq(store_add_local(store, path, NULL, &o), PN_OK);
	fn = make_node(1, 4, 0, store, false);
	cr_assert(hello(5, false, 0x55, "10.0.0.5:40000", 7005, 0));

	query_from(5, FLOOD_KEYWORDS, "quart rep", 9, 0xa1, 10);
	struct pn_msg m;
	cr_assert(last_hit(5, &m), "the hit goes back to the neighbour that asked");
	cr_assert_eq(m.u.query_hit.qid[0], 0xa1);
	cr_assert(!memcmp(m.u.query_hit.node_id, self_id, PN_ID_BYTES));
	cr_assert_eq(m.u.query_hit.addr_len, strlen("10.9.8.7:7000"));
	cr_assert(!memcmp(m.u.query_hit.addr, "10.9.8.7:7000", m.u.query_hit.addr_len), "our IP as that link sees it");
	size_t off = 0;
	struct pn_list_entry e;
	cr_assert_eq(pn_hit_next(&m.u.query_hit, &off, &e), PN_OK);
	cr_assert_eq(e.name_len, strlen("Quarterly Report.pdf"));
	cr_assert(!memcmp(&e.cid, &o->cid, sizeof e.cid));

	int hits = count_sent(5, PN_MSG_QUERY_HIT);
	query_from(5, FLOOD_KEYWORDS, "annual", 6, 0xa2, 20);
	cr_assert_eq(count_sent(5, PN_MSG_QUERY_HIT), hits, "nothing matches: no answer");

	/* A content ID query: held_name_cb says what the node can serve. */
	struct pn_cid wanted;
	memset(&wanted, 0x33, sizeof wanted);
	wanted.size = 5000;
	fk.held = &wanted;
	uint8_t data[PN_CID_BYTES];
	struct pn_writer w;
	pn_wr_init(&w, data, sizeof data);
	pn_cid_write(&w, &wanted);
	query_from(5, FLOOD_CID, data, PN_CID_BYTES, 0xa3, 30);
	cr_assert(last_hit(5, &m));
	cr_assert_eq(m.u.query_hit.qid[0], 0xa3);
	off = 0;
	cr_assert_eq(pn_hit_next(&m.u.query_hit, &off, &e), PN_OK);
	cr_assert(!memcmp(&e.cid, &wanted, sizeof e.cid));

	/* Queries from a connection that is not a neighbour are ignored. */
	hits = count_sent(42, PN_MSG_QUERY_HIT);
	query_from(42, FLOOD_KEYWORDS, "quart", 5, 0xa4, 40);
	cr_assert_eq(count_sent(42, PN_MSG_QUERY_HIT), hits);
	flood_node_free(fn);
	fn = NULL;
	store_close(store);
}

/* Hands neighbour key a QUERY_HIT for qid from node id_fill at addr, with
 * the given results. */
static void hit_from(uint32_t key, const uint8_t qid[PN_QID_BYTES], uint8_t id_fill, const char *addr,
		     const struct pn_cid *cids, const char *const *names, int n, uint64_t now)
{
	uint8_t body[2048];
	struct pn_writer w;
	pn_wr_init(&w, body, sizeof body);
	pn_wr_u8(&w, PN_MSG_QUERY_HIT);
	pn_wr_bytes(&w, qid, PN_QID_BYTES);
	uint8_t id[PN_ID_BYTES];
	memset(id, id_fill, sizeof id);
	pn_wr_bytes(&w, id, PN_ID_BYTES);
	pn_wr_u8(&w, (uint8_t)strlen(addr));
	pn_wr_bytes(&w, addr, strlen(addr));
	pn_wr_u16(&w, (uint16_t)n);
	for (int i = 0; i < n; i++) {
		struct pn_list_entry e = {.cid = cids[i], .name = names[i], .name_len = (uint16_t)strlen(names[i])};
		pn_list_entry_encode(&w, &e);
	}
	cr_assert_eq(w.err, 0);
	struct pn_msg m;
	cr_assert_eq(pn_msg_decode(body, w.len, &m), PN_OK);
	cr_assert_eq(flood_node_on_msg(fn, key, &m, body, w.len, now), PN_OK);
}

static const uint8_t *last_query_qid(uint32_t key)
{
	for (int i = fk.nsent - 1; i >= 0; i--)
		if (fk.sent[i].key == key && fk.sent[i].type == PN_MSG_QUERY)
			return fk.sent[i].qid;
	cr_assert_fail("no QUERY to key %u", key);
	return NULL;
}

/* Ticks every 50 ms from *now until cond or 10 s. */
#define RUN_UNTIL(cond, now)                                            \
	for (uint64_t stop_ = (now) + 10000; !(cond) && (now) < stop_;) { \
		(now) += 50;                                            \
		flood_node_tick(fn, (now));                             \
	}

Test(node_flood, a_search_collects_hits_most_providers_first)
{
	fn = make_node(1, 4, 0, NULL, true);
	cr_assert(hello(5, false, 0x55, "10.0.0.5:40000", 7005, 0));
	cr_assert(hello(6, false, 0x66, "10.0.0.6:40000", 7006, 0));
	int token;
	cr_assert_eq(flood_node_search(fn, "", &token, 0), PN_EINVAL);
	cr_assert_eq(flood_node_search(fn, "report", &token, 0), PN_OK);
	cr_assert_eq(count_sent(5, PN_MSG_QUERY), 1, "a plain flood: once to every neighbour");
	cr_assert_eq(count_sent(6, PN_MSG_QUERY), 1);
	uint8_t qid[PN_QID_BYTES];
	memcpy(qid, last_query_qid(5), PN_QID_BYTES);

	struct pn_cid a, b;
	memset(&a, 0xaa, sizeof a);
	a.size = 10;
	memset(&b, 0xbb, sizeof b);
	b.size = 20;
	const struct pn_cid one[] = {a}, two[] = {a, b};
	const char *one_name[] = {"report-a.pdf"}, *two_names[] = {"report-a.pdf", "report-b.pdf"};
	hit_from(5, qid, 0x71, "10.0.0.71:7000", one, one_name, 1, 10);
	hit_from(6, qid, 0x72, "10.0.0.72:7000", two, two_names, 2, 20);
	cr_assert_eq(fk.searches_done, 0, "answers are gathered until the query ends");
	uint64_t now = 20;
	RUN_UNTIL(fk.searches_done, now);
	cr_assert_eq(fk.searches_done, 1);
	cr_assert_eq(fk.last_token, &token);
	cr_assert_eq(fk.results, 2);
	cr_assert_str_eq(fk.result_names[0], "report-a.pdf");
	cr_assert_eq(fk.result_providers[0], 2, "two nodes hold it: first");
	cr_assert_eq(fk.result_providers[1], 1);
	struct flood_node_stats st;
	flood_node_get_stats(fn, &st);
	cr_assert_eq(st.lookups, 1);
}

Test(node_flood, a_cancelled_search_reports_nothing)
{
	fn = make_node(1, 4, 0, NULL, true);
	cr_assert(hello(5, false, 0x55, "10.0.0.5:40000", 7005, 0));
	int token;
	cr_assert_eq(flood_node_search(fn, "report", &token, 0), PN_OK);
	flood_node_search_cancel(fn, &token);
	uint64_t now = 0;
	RUN_UNTIL(false, now);
	cr_assert_eq(fk.searches_done, 0);
	cr_assert_eq(fk.results, 0);
}

Test(node_flood, a_find_hands_up_providers_then_ends)
{
	fn = make_node(1, 4, 0, NULL, false);
	cr_assert(hello(5, false, 0x55, "10.0.0.5:40000", 7005, 0));
	struct pn_cid cid, other;
	memset(&cid, 0x44, sizeof cid);
	cid.size = 999;
	memset(&other, 0x45, sizeof other);
	other.size = 1;
	cr_assert_eq(flood_node_find(fn, &cid, 0), PN_OK);
	const struct pn_cid both[] = {other, cid};
	const char *names[] = {"other", "wanted"};
	hit_from(5, last_query_qid(5), 0x71, "10.0.0.71:7000", both, names, 2, 10);
	cr_assert_eq(fk.providers, 1, "only the content asked for");
	cr_assert_str_eq(fk.provider.addr, "10.0.0.71:7000");
	cr_assert_eq(fk.provider.id[0], 0x71);
	uint64_t now = 10;
	RUN_UNTIL(fk.lookups_done, now);
	cr_assert_eq(fk.lookups_done, 1);
	cr_assert_eq(fk.last_lookup_err, PN_OK);
	cr_assert_eq(fk.last_found, 1);

	/* Nobody answers: the look-up ends with nothing found. */
	cr_assert_eq(flood_node_find(fn, &other, now), PN_OK);
	RUN_UNTIL(fk.lookups_done == 2, now);
	cr_assert_eq(fk.lookups_done, 2);
	cr_assert_eq(fk.last_found, 0);
}

Test(node_flood, a_neighbour_that_floods_queries_is_dropped)
{
	fn = make_node(1, 4, 0, NULL, false);
	cr_assert(hello(5, false, 0x55, "10.0.0.5:40000", 7005, 0));
	for (int i = 0; i < 200 && !fk.ncloses; i++) {
		struct pn_msg m = {.type = PN_MSG_QUERY};
		memset(m.u.query.qid, 0, PN_QID_BYTES);
		m.u.query.qid[0] = (uint8_t)i;
		m.u.query.qid[1] = (uint8_t)(i >> 8);
		m.u.query.ttl = 1;
		m.u.query.kind = FLOOD_KEYWORDS;
		m.u.query.len = 4;
		m.u.query.data = (const uint8_t *)"spam";
		cr_assert_eq(flood_node_on_msg(fn, 5, &m, NULL, 0, 100), PN_OK);
	}
	cr_assert_eq(fk.ncloses, 1);
	cr_assert_eq(fk.closed_key[0], 5);
	cr_assert_eq(fk.closed_err[0], PN_ELIMIT);
	cr_assert(logged("10.0.0.5:40000 sends queries too fast: dropped"));
}

Test(node_flood, good_neighbours_are_remembered_across_restarts)
{
	fn = make_node(1, 4, 0, NULL, false);
	cr_assert(hello(5, false, 0x55, "10.0.0.5:40000", 7005, 0));
	cr_assert(hello(6, false, 0x66, "10.0.0.6:40000", 7006, 0));
	flood_node_stop(fn);
	flood_node_free(fn);
	fn = NULL;
	char path[128], line[256];
	snprintf(path, sizeof path, "%s/peers", tmpdir);
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f);
	int lines = 0;
	bool five = false;
	while (fgets(line, sizeof line, f)) {
		lines++;
		five |= !strncmp(line, "10.0.0.5:7005 5555", 18); /* reached at its IP and HELLO port */
	}
	fclose(f);
	cr_assert_eq(lines, 2);
	cr_assert(five);

	fk.log_lines = 0;
	fn = make_node(1, 4, 0, NULL, false);
	cr_assert(logged("2 known peers from"));
	flood_node_tick(fn, 0);
	cr_assert_eq(fk.ndials, 1);
	cr_assert(fk.dialled_with_id[0], "a remembered peer is dialled pinning its ID");
}

Test(node_flood, nothing_is_reported_after_stop)
{
	fn = make_node(1, 4, 0, NULL, false);
	cr_assert(hello(5, false, 0x55, "10.0.0.5:40000", 7005, 0));
	int token;
	cr_assert_eq(flood_node_search(fn, "report", &token, 0), PN_OK);
	flood_node_stop(fn);
	cr_assert(!flood_node_ready(fn));
	cr_assert_eq(flood_node_next_wakeup(fn, 0), UINT64_MAX);
	uint64_t now = 0;
	RUN_UNTIL(false, now);
	cr_assert_eq(fk.searches_done, 0);
	int dials = fk.ndials;
	flood_node_peer_closed(fn, 5, now); /* closes still come in while the node stops */
	flood_node_tick(fn, now + 100000);
	cr_assert_eq(fk.ndials, dials);
}
