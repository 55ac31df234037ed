/* The status document (src/node/ctl_status.c): every field `peernet status
 * --json` has always printed, with its type, and the shares cut. */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <criterion/criterion.h>
#include "crypto/crypto.h"
#include "node/node_ctl.h"
#include "store/store.h"
#include "util/json.h"

static char tmpdir[64];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	return remove(path);
}

/* A store holding n small files named "file N.txt" (a quote in the last). */
static struct store *store_with(int n)
{
	snprintf(tmpdir, sizeof tmpdir, "/tmp/pn-ctlstatus-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
	char dir[128], path[128], name[64];
	snprintf(dir, sizeof dir, "%s/store", tmpdir);
	struct store *s;
	cr_assert_eq(store_open(dir, &s), PN_OK);
	for (int i = 0; i < n; i++) {
		snprintf(path, sizeof path, "%s/f%d", tmpdir, i);
		FILE *f = fopen(path, "w");
		cr_assert_not_null(f);
		fprintf(f, "content %d", i);
		fclose(f);
		snprintf(name, sizeof name, i == n - 1 ? "file \"%d\".txt" : "file %d.txt", i);
		const struct store_object *o;
		cr_assert_eq(store_add_local(s, path, name, &o), PN_OK);
	}
	return s;
}

static void store_gone(struct store *s)
{
	store_close(s);
	nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static struct ctl_peer_status peer = {
	.addr = "127.0.0.1:7072", .outgoing = true, .neighbor = false, .seed_server = true,
	.peer_choking = false, .am_choking = true, .bytes_to = 5, .bytes_from = 1ull << 40,
	.rate_to = 50, .rate_from = 60,
};
static struct ctl_transfer_status transfer = {.name = "big.iso", .chunks = 9, .have = 4, .bytes_down = 1000};

static struct ctl_status sample(void)
{
	struct ctl_status st = {
		.listen = "0.0.0.0:0", .port = 7072, .discovery = "directory", .directory = "dir.example:7071",
		.directory_registered = true, .directory_refused = 2, .peers = &peer, .npeers = 1,
		.transfers = &transfer, .ntransfers = 1, .bytes_up = 10, .bytes_down = 20, .wire_up = 30,
		.wire_down = 40, .lookups = 3, .lookup_msgs = 6, .rate_up = 70, .rate_down = 80,
	};
	memset(st.node_id, 0xab, sizeof st.node_id);
	memset(peer.id, 0x01, sizeof peer.id);
	transfer.cid.size = 2000;
	return st;
}

/* doc[key] must exist with JSON type t. */
static const json_t *field(const json_t *doc, const char *key, json_type t)
{
	const json_t *v = json_object_get(doc, key);
	cr_assert_not_null(v, "no %s", key);
	cr_assert_eq(json_typeof(v), t, "%s has type %d", key, json_typeof(v));
	return v;
}

static json_int_t num(const json_t *doc, const char *key)
{
	return json_integer_value(field(doc, key, JSON_INTEGER));
}

Test(ctl_status, fields_and_types)
{
	struct store *s = store_with(2);
	struct ctl_status st = sample();
	json_t *doc = ctl_status_json(&st, s, CTL_STATUS_SHARES_MAX);
	cr_assert_not_null(doc);
	char id[PN_NODE_ID_STR_LEN + 1];
	pn_node_id_format(st.node_id, id);
	cr_assert_str_eq(json_string_value(field(doc, "node_id", JSON_STRING)), id);
	cr_assert_str_eq(json_string_value(field(doc, "listen", JSON_STRING)), "0.0.0.0:7072", "the port bound");
	cr_assert_eq(num(doc, "port"), 7072);
	cr_assert_str_eq(json_string_value(field(doc, "discovery", JSON_STRING)), "directory");
	const json_t *dir = field(doc, "directory", JSON_OBJECT);
	cr_assert_str_eq(json_string_value(field(dir, "address", JSON_STRING)), "dir.example:7071");
	cr_assert(json_is_true(json_object_get(dir, "connected")));
	cr_assert_eq(num(dir, "refused_shares"), 2);
	cr_assert_null(json_object_get(doc, "flood"), "flood off: no flood object");

	const json_t *peers = field(doc, "peers", JSON_ARRAY);
	cr_assert_eq(json_array_size(peers), 1);
	const json_t *p = json_array_get(peers, 0);
	cr_assert_str_eq(json_string_value(field(p, "address", JSON_STRING)), "127.0.0.1:7072");
	cr_assert_str_eq(json_string_value(field(p, "direction", JSON_STRING)), "out");
	cr_assert(json_is_false(json_object_get(p, "neighbor")));
	cr_assert(json_is_true(json_object_get(p, "seed_server")));
	cr_assert(json_is_false(json_object_get(p, "choking_us")));
	cr_assert(json_is_true(json_object_get(p, "we_choke")));
	cr_assert_eq(num(p, "bytes_to"), 5);
	cr_assert_eq(num(p, "bytes_from"), 1ll << 40);
	cr_assert_eq(num(p, "rate_to"), 50);
	cr_assert_eq(num(p, "rate_from"), 60);

	const json_t *shares = field(doc, "shares", JSON_ARRAY);
	cr_assert_eq(json_array_size(shares), 2);
	cr_assert_str_eq(json_string_value(field(json_array_get(shares, 0), "name", JSON_STRING)), "file 0.txt");
	cr_assert_str_eq(json_string_value(field(json_array_get(shares, 1), "name", JSON_STRING)), "file \"1\".txt");
	cr_assert_eq(num(json_array_get(shares, 1), "size"), 9);
	cr_assert_eq(num(doc, "shares_total"), 2);

	const json_t *t = json_array_get(field(doc, "transfers", JSON_ARRAY), 0);
	cr_assert_str_eq(json_string_value(field(t, "name", JSON_STRING)), "big.iso");
	cr_assert_eq(num(t, "size"), 2000);
	cr_assert_eq(num(t, "chunks"), 9);
	cr_assert_eq(num(t, "chunks_have"), 4);
	cr_assert_eq(num(t, "bytes_downloaded"), 1000);

	const json_t *tot = field(doc, "totals", JSON_OBJECT);
	cr_assert_eq(num(tot, "bytes_uploaded"), 10);
	cr_assert_eq(num(tot, "bytes_downloaded"), 20);
	cr_assert_eq(num(tot, "wire_bytes_sent"), 30);
	cr_assert_eq(num(tot, "wire_bytes_received"), 40);
	cr_assert_eq(num(tot, "lookups"), 3);
	cr_assert_eq(num(tot, "lookup_messages"), 6);
	const json_t *rates = field(doc, "rates", JSON_OBJECT);
	cr_assert_eq(num(rates, "upload"), 70);
	cr_assert_eq(num(rates, "download"), 80);

	/* The fields in the order they have always been printed. */
	const char *order[] = {"node_id", "listen", "port", "discovery", "directory", "peers", "shares",
			       "shares_total", "transfers", "totals", "rates"};
	size_t i = 0;
	const char *key;
	json_t *v;
	json_object_foreach(doc, key, v) {
		cr_assert_lt(i, sizeof order / sizeof order[0]);
		cr_assert_str_eq(key, order[i++]);
	}
	cr_assert_eq(i, sizeof order / sizeof order[0]);
	json_decref(doc);
	store_gone(s);
}

Test(ctl_status, flood_and_no_directory)
{
	struct ctl_status st = sample();
	st.directory = NULL;
	st.discovery = "flood";
	st.flood = true;
	st.flood_neighbors = 3;
	st.flood_stats.queries_started = 1;
	st.flood_stats.queries_sent = 2;
	st.flood_stats.queries_received = 3;
	st.flood_stats.duplicates_dropped = 4;
	st.flood_stats.rate_limited = 5;
	st.flood_stats.hits_sent = 6;
	st.flood_stats.hits_received = 7;
	json_t *doc = ctl_status_json(&st, NULL, CTL_STATUS_SHARES_MAX);
	cr_assert_not_null(doc);
	cr_assert_null(json_object_get(doc, "directory"));
	const json_t *f = field(doc, "flood", JSON_OBJECT);
	cr_assert_eq(num(f, "neighbors"), 3);
	cr_assert_eq(num(f, "queries_started"), 1);
	cr_assert_eq(num(f, "queries_sent"), 2);
	cr_assert_eq(num(f, "queries_received"), 3);
	cr_assert_eq(num(f, "duplicates_dropped"), 4);
	cr_assert_eq(num(f, "rate_limited"), 5);
	cr_assert_eq(num(f, "hits_sent"), 6);
	cr_assert_eq(num(f, "hits_received"), 7);
	cr_assert_eq(json_array_size(field(doc, "shares", JSON_ARRAY)), 0, "no store: no shares");
	cr_assert_eq(num(doc, "shares_total"), 0);
	json_decref(doc);
}

Test(ctl_status, shares_cut_and_texts_not_utf8)
{
	struct store *s = store_with(5);
	struct ctl_status st = sample();
	st.listen = "h\xff:0";                     /* not UTF-8: U+FFFD plus listen_hex */
	snprintf(peer.addr, sizeof peer.addr, "a\"b\n");
	json_t *doc = ctl_status_json(&st, s, 3);
	cr_assert_not_null(doc);
	cr_assert_eq(json_array_size(field(doc, "shares", JSON_ARRAY)), 3);
	cr_assert_eq(num(doc, "shares_total"), 5);
	cr_assert_str_eq(json_string_value(field(doc, "listen", JSON_STRING)), "h\xef\xbf\xbd:7072");
	cr_assert_str_eq(json_string_value(field(doc, "listen_hex", JSON_STRING)), "68ff3a37303732");
	/* Written and read back: valid JSON with the address's quote and newline intact. */
	char *text = json_dumps(doc, PN__JSON_FLAGS);
	cr_assert_not_null(text);
	cr_assert_null(strchr(text, '\n'), "one line");
	json_error_t e;
	json_t *back = json_loads(text, 0, &e);
	cr_assert_not_null(back, "%s", e.text);
	const json_t *p = json_array_get(json_object_get(back, "peers"), 0);
	cr_assert_str_eq(json_string_value(json_object_get(p, "address")), "a\"b\n");
	json_decref(back);
	free(text);
	json_decref(doc);
	snprintf(peer.addr, sizeof peer.addr, "127.0.0.1:7072");
	store_gone(s);
}
