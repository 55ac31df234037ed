/* Unit tests for the directory core (src/proto/directory.c). A fake clock
 * (plain numbers handed in as `now`): no sockets, no sleeps. Every test ends
 * with dir_check(), which walks all the tables. */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <criterion/criterion.h>
#include "proto/directory.h"

#define TIMEOUT_MS 30000u
#define T0 1000000u /* fake clock start, ms */

static struct dir *mkdir_opts(uint32_t max_nodes, uint32_t per_node, uint32_t max_results, uint32_t max_offers)
{
	struct dir_opts o = {
		.max_nodes = max_nodes,
		.max_offers_per_node = per_node,
		.max_results = max_results,
		.node_timeout_ms = TIMEOUT_MS,
		.seed = 42,
		.max_offers = max_offers,
	};
	struct dir *d = dir_new(&o);

	cr_assert_not_null(d);
	return d;
}

static struct dir *mkdir_default(void)
{
	return mkdir_opts(0, 0, 0, 0);
}

/* Node ID number n: n in the first 4 bytes, the rest a fixed pattern. */
static void node_id(uint32_t n, uint8_t id[PN_ID_BYTES])
{
	for (int i = 0; i < PN_ID_BYTES; i++)
		id[i] = (uint8_t)(0xa0 + i);
	id[0] = (uint8_t)(n >> 24);
	id[1] = (uint8_t)(n >> 16);
	id[2] = (uint8_t)(n >> 8);
	id[3] = (uint8_t)n;
}

static uint32_t node_num(const uint8_t id[PN_ID_BYTES])
{
	return (uint32_t)id[0] << 24 | (uint32_t)id[1] << 16 | (uint32_t)id[2] << 8 | id[3];
}

static struct pn_cid cid_of(uint32_t n)
{
	struct pn_cid c;

	memset(&c, 0x5c, sizeof(c));
	for (int i = 0; i < PN_HASH_BYTES; i++)
		c.root[i] = (uint8_t)(n * 31 + i);
	c.root[0] = (uint8_t)(n >> 24);
	c.root[1] = (uint8_t)(n >> 16);
	c.root[2] = (uint8_t)(n >> 8);
	c.root[3] = (uint8_t)n;
	c.size = 1000 + n;
	return c;
}

static void reg(struct dir *d, uint32_t n, uint64_t now)
{
	uint8_t id[PN_ID_BYTES];
	char addr[DIR_ADDR_MAX + 1];

	node_id(n, id);
	snprintf(addr, sizeof(addr), "10.0.%u.%u:7072", (n >> 8) & 0xff, n & 0xff);
	cr_assert_eq(dir_register(d, id, addr, now), 0, "register node %u", n);
}

static int offer(struct dir *d, uint32_t n, uint32_t content, const char *name, uint64_t now)
{
	uint8_t id[PN_ID_BYTES];
	struct pn_cid c = cid_of(content);

	node_id(n, id);
	return dir_offer(d, id, &c, name, now);
}

static uint32_t find_total(struct dir *d, uint32_t content)
{
	struct dir_provider out[4];
	struct pn_cid c = cid_of(content);
	uint32_t total = 12345;

	dir_find(d, &c, NULL, out, 4, &total);
	return total;
}

static int reg_from(struct dir *d, uint32_t n, uint64_t source, uint64_t block)
{
	uint8_t id[PN_ID_BYTES];

	node_id(n, id);
	return dir_register_from(d, id, "10.9.9.9:7072", source, block, T0);
}

/* Identities are free: caps per source address and per address block keep a
 * flood from one place from crowding out everyone else, and the counts stay
 * exact through unregistering and moving (dir_check recounts them). */
Test(directory, source_and_block_caps)
{
	struct dir_opts o = { .seed = 1, .node_timeout_ms = TIMEOUT_MS, .max_offers = 100,
			      .max_offers_per_node = 10, .max_nodes_per_source = 4, .max_nodes_per_block = 6,
			      .max_offers_per_source = 15, .max_offers_per_block = 20 };
	struct dir *d = dir_new(&o);
	char name[32];
	uint32_t content = 0;

	cr_assert_not_null(d);
	/* Nodes: 4 from source 1 (block 100), the fifth refused; 2 more from
	 * source 2 in the same block, then the block is full. */
	for (uint32_t n = 0; n < 4; n++)
		cr_assert_eq(reg_from(d, n, 1, 100), 0);
	cr_assert_eq(reg_from(d, 4, 1, 100), PN_ELIMIT);
	cr_assert_eq(reg_from(d, 5, 2, 100), 0);
	cr_assert_eq(reg_from(d, 6, 2, 100), 0);
	cr_assert_eq(reg_from(d, 7, 3, 100), PN_ELIMIT, "block full");
	cr_assert_eq(reg_from(d, 8, 4, 200), 0, "another block");
	cr_assert_eq(reg_from(d, 0, 1, 100), 0, "a refresh is not a new node");
	/* Offers: source 1's nodes reach 15 between them; then node 5 (source 2)
	 * brings the block to 20; node 8 elsewhere still offers. */
	int refused = 0;
	for (uint32_t n = 0; n < 4; n++)
		for (int i = 0; i < 10; i++) {
			snprintf(name, sizeof name, "file %u.bin", content);
			int r = offer(d, n, content++, name, T0);
			cr_assert(r == 0 || r == PN_ELIMIT);
			refused += r == PN_ELIMIT;
		}
	cr_assert_eq(refused, 40 - 15);
	for (int i = 0; i < 10; i++) {
		snprintf(name, sizeof name, "file %u.bin", content);
		cr_assert_eq(offer(d, 5, content++, name, T0), i < 5 ? 0 : PN_ELIMIT, "offer %d of node 5", i);
	}
	for (int i = 0; i < 10; i++) {
		snprintf(name, sizeof name, "file %u.bin", content);
		cr_assert_eq(offer(d, 8, content++, name, T0), 0);
	}
	cr_assert_eq(offer(d, 8, content++, "one too many.bin", T0), PN_ELIMIT, "per node");
	cr_assert_eq(dir_offer_count(d), 30);
	cr_assert_eq(dir_check(d), 0);
	/* Node 1 leaves: its offers free room at its source and block. */
	uint8_t id[PN_ID_BYTES];
	node_id(1, id);
	dir_unregister(d, id);
	cr_assert_eq(offer(d, 2, content++, "room again.bin", T0), 0);
	/* Node 8 registers again from source 1's block: its offers are dropped
	 * (counted where it is now), and block 100 is full of nodes again. */
	cr_assert_eq(reg_from(d, 8, 5, 100), 0);
	cr_assert_eq(dir_check(d), 0);
	cr_assert_eq(reg_from(d, 9, 6, 100), PN_ELIMIT);
	node_id(8, id);
	cr_assert_eq(dir_check(d), 0);
	dir_free(d);
}

Test(directory, register_offer_find)
{
	struct dir *d = mkdir_default();
	struct dir_provider out[8];
	struct pn_cid c = cid_of(7);
	uint32_t total;

	reg(d, 1, T0);
	reg(d, 2, T0);
	cr_assert_eq(offer(d, 1, 7, "report.pdf", T0), 0);
	cr_assert_eq(offer(d, 2, 7, "report.pdf", T0), 0);
	cr_assert_eq(offer(d, 2, 7, "report.pdf", T0), 0, "offering twice is fine");
	cr_assert_eq(dir_node_count(d), 2);
	cr_assert_eq(dir_content_count(d), 1);
	cr_assert_eq(dir_offer_count(d), 2);

	size_t n = dir_find(d, &c, NULL, out, 8, &total);
	cr_assert_eq(n, 2);
	cr_assert_eq(total, 2);
	uint32_t a = node_num(out[0].node_id), b = node_num(out[1].node_id);
	cr_assert((a == 1 && b == 2) || (a == 2 && b == 1));
	cr_assert_str_eq(out[0].addr, a == 1 ? "10.0.0.1:7072" : "10.0.0.2:7072");

	c = cid_of(8);
	cr_assert_eq(dir_find(d, &c, NULL, out, 8, &total), 0);
	cr_assert_eq(total, 0);
	cr_assert_eq(dir_check(d), 0);
	dir_free(d);
}

Test(directory, find_excludes_the_asker)
{
	struct dir *d = mkdir_default();
	struct dir_provider out[8];
	struct pn_cid c = cid_of(7);
	uint8_t asker[PN_ID_BYTES], stranger[PN_ID_BYTES];
	uint32_t total;

	reg(d, 1, T0);
	reg(d, 2, T0);
	cr_assert_eq(offer(d, 1, 7, "a.txt", T0), 0);
	cr_assert_eq(offer(d, 2, 7, "a.txt", T0), 0);
	node_id(1, asker);
	cr_assert_eq(dir_find(d, &c, asker, out, 8, &total), 1);
	cr_assert_eq(total, 1);
	cr_assert_eq(node_num(out[0].node_id), 2);

	node_id(99, stranger); /* not a provider: excludes nothing */
	cr_assert_eq(dir_find(d, &c, stranger, out, 8, &total), 2);
	cr_assert_eq(total, 2);

	dir_withdraw(d, (node_id(2, stranger), stranger), &c);
	cr_assert_eq(dir_find(d, &c, asker, out, 8, &total), 0, "the asker is the only provider");
	cr_assert_eq(total, 0);
	cr_assert_eq(dir_check(d), 0);
	dir_free(d);
}

/* n providers, ask for k many times: always k distinct providers, total n, and
 * every provider picked about k/n of the time. */
static void check_random_subset(uint32_t n, uint32_t k, bool with_asker)
{
	struct dir *d = mkdir_opts(0, 0, k, 0);
	struct dir_provider out[64];
	struct pn_cid c = cid_of(1);
	uint8_t asker[PN_ID_BYTES];
	uint32_t hits[512] = { 0 }, total;
	const uint32_t rounds = 20000;
	uint32_t pool = with_asker ? n - 1 : n;

	cr_assert_leq(n, 512);
	for (uint32_t i = 0; i < n; i++) {
		reg(d, i, T0);
		cr_assert_eq(offer(d, i, 1, "popular.iso", T0), 0);
	}
	node_id(n / 2, asker);
	for (uint32_t r = 0; r < rounds; r++) {
		size_t got = dir_find(d, &c, with_asker ? asker : NULL, out, 64, &total);

		cr_assert_eq(got, k);
		cr_assert_eq(total, pool);
		for (size_t i = 0; i < got; i++) {
			uint32_t who = node_num(out[i].node_id);

			cr_assert_lt(who, n);
			cr_assert(!with_asker || who != n / 2, "the asker came back");
			for (size_t j = 0; j < i; j++)
				cr_assert_neq(node_num(out[j].node_id), who, "provider returned twice");
			hits[who]++;
		}
	}
	/* Expected rounds*k/pool per provider (>= 500); allow +-25%, over 5 sigma. */
	double expect = (double)rounds * k / pool;
	for (uint32_t i = 0; i < n; i++) {
		if (with_asker && i == n / 2)
			continue;
		cr_assert(hits[i] > expect * 0.75 && hits[i] < expect * 1.25, "provider %u picked %u times, expected ~%.0f",
			  i, hits[i], expect);
	}
	cr_assert_eq(dir_check(d), 0);
	dir_free(d);
}

Test(directory, find_random_subset_floyd)
{
	check_random_subset(400, 10, false); /* k*k <= n: Floyd's algorithm */
	check_random_subset(400, 10, true);
}

Test(directory, find_random_subset_selection)
{
	check_random_subset(60, 20, false); /* k*k > n: selection sampling */
	check_random_subset(60, 20, true);
}

Test(directory, find_cap_is_min_of_max_and_max_results)
{
	struct dir *d = mkdir_opts(0, 0, 5, 0);
	struct dir_provider out[16];
	struct pn_cid c = cid_of(1);
	uint32_t total;

	for (uint32_t i = 0; i < 12; i++) {
		reg(d, i, T0);
		cr_assert_eq(offer(d, i, 1, "x.bin", T0), 0);
	}
	cr_assert_eq(dir_find(d, &c, NULL, out, 16, &total), 5);
	cr_assert_eq(total, 12);
	cr_assert_eq(dir_find(d, &c, NULL, out, 3, &total), 3);
	cr_assert_eq(dir_find(d, &c, NULL, NULL, 0, NULL), 0);
	dir_free(d);
}

Test(directory, same_seed_same_answers)
{
	struct dir *a = mkdir_opts(0, 0, 4, 0), *b = mkdir_opts(0, 0, 4, 0);
	struct dir_provider pa[4], pb[4];
	struct pn_cid c = cid_of(3);

	for (uint32_t i = 0; i < 50; i++) {
		reg(a, i, T0);
		reg(b, i, T0);
		cr_assert_eq(offer(a, i, 3, "same.txt", T0), 0);
		cr_assert_eq(offer(b, i, 3, "same.txt", T0), 0);
	}
	for (int r = 0; r < 20; r++) {
		cr_assert_eq(dir_find(a, &c, NULL, pa, 4, NULL), 4);
		cr_assert_eq(dir_find(b, &c, NULL, pb, 4, NULL), 4);
		cr_assert_eq(memcmp(pa, pb, sizeof(pa)), 0);
	}
	dir_free(a);
	dir_free(b);
}

static int search(struct dir *d, const char *q, struct dir_result *out, size_t max)
{
	return dir_search(d, q, out, max);
}

/* Offers content number cid_num under name from `providers` nodes 0.. */
static void offer_from(struct dir *d, uint32_t providers, uint32_t cid_num, const char *name)
{
	for (uint32_t i = 0; i < providers; i++)
		cr_assert_eq(offer(d, i, cid_num, name, T0), 0);
}

static struct dir *search_fixture(void)
{
	struct dir *d = mkdir_default();

	for (uint32_t i = 0; i < 5; i++)
		reg(d, i, T0);
	offer_from(d, 1, 1, "Quarterly Report 2023.pdf");
	offer_from(d, 3, 2, "quarterly_report_2024.PDF");
	offer_from(d, 2, 3, "Annual report 2024.odt");
	offer_from(d, 5, 4, "holiday-photos.zip");
	offer_from(d, 3, 5, "Budget report.xlsx");
	offer_from(d, 1, 6, "café menu été.txt");
	offer_from(d, 1, 7, "headquarters.png");
	return d;
}

Test(directory, search_every_word_case_insensitive_by_providers)
{
	struct dir *d = search_fixture();
	struct dir_result r[8];
	int n;

	n = search(d, "REPORT", r, 8);
	cr_assert_eq(n, 4);
	/* providers desc, then name: 3 "Budget..." before 3 "quarterly_..." */
	cr_assert_str_eq(r[0].name, "Budget report.xlsx");
	cr_assert_eq(r[0].providers, 3);
	cr_assert_str_eq(r[1].name, "quarterly_report_2024.PDF");
	cr_assert_eq(r[1].providers, 3);
	cr_assert_str_eq(r[2].name, "Annual report 2024.odt");
	cr_assert_eq(r[2].providers, 2);
	cr_assert_str_eq(r[3].name, "Quarterly Report 2023.pdf");
	cr_assert_eq(r[3].providers, 1);
	struct pn_cid want = cid_of(5);
	cr_assert_eq(memcmp(&r[0].cid, &want, sizeof(want)), 0);

	n = search(d, "report 2024", r, 8);
	cr_assert_eq(n, 2, "every word must match");
	cr_assert_str_eq(r[0].name, "quarterly_report_2024.PDF");
	cr_assert_str_eq(r[1].name, "Annual report 2024.odt");

	cr_assert_eq(search(d, "report 2025", r, 8), 0);
	cr_assert_eq(search(d, "pdf, quarterly!", r, 8), 2, "punctuation in the query separates words");
	cr_assert_eq(search(d, "report", r, 2), 2, "capped by max");
	cr_assert_str_eq(r[1].name, "quarterly_report_2024.PDF");
	cr_assert_eq(dir_check(d), 0);
	dir_free(d);
}

Test(directory, search_prefix_rule)
{
	struct dir *d = search_fixture();
	struct dir_result r[8];

	cr_assert_eq(search(d, "quart", r, 8), 2, "a query word matches a word it begins");
	cr_assert_eq(search(d, "quart rep 202", r, 8), 2);
	cr_assert_eq(search(d, "arterly", r, 8), 0, "not the middle of a word");
	cr_assert_eq(search(d, "quarters", r, 8), 0, "neither quarterly (longer than the word) nor headquarters");
	cr_assert_eq(search(d, "headq", r, 8), 1);
	cr_assert_eq(search(d, "q", r, 8), 2, "short words scan every name");
	cr_assert_eq(search(d, "q r", r, 8), 2);
	cr_assert_eq(search(d, "ho PHO", r, 8), 1);
	cr_assert_eq(search(d, "caf", r, 8), 1, "UTF-8 stays inside the word");
	cr_assert_str_eq(r[0].name, "café menu été.txt");
	cr_assert_eq(search(d, "été", r, 8), 1);
	cr_assert_eq(search(d, "t", r, 8), 1, "'été' is one word; only txt starts with t");
	cr_assert_eq(search(d, "CAFÉ", r, 8), 0, "only ASCII folds case");
	cr_assert_eq(search(d, "zzz", r, 8), 0);
	dir_free(d);
}

Test(directory, search_rejects_bad_queries)
{
	struct dir *d = search_fixture();
	struct dir_result r[8];
	char big[DIR_QUERY_MAX + 2];

	cr_assert_eq(search(d, "", r, 8), PN_EINVAL);
	cr_assert_eq(search(d, NULL, r, 8), PN_EINVAL);
	cr_assert_eq(search(d, " ,.-_ ", r, 8), PN_EINVAL, "no word");
	cr_assert_eq(search(d, "a b c d e f g h i", r, 8), PN_EINVAL, "more than DIR_WORDS_MAX words");
	cr_assert_eq(search(d, "a b c d e f g h", r, 8), 0);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	cr_assert_eq(search(d, big, r, 8), PN_EINVAL, "longer than DIR_QUERY_MAX");
	big[DIR_QUERY_MAX] = '\0';
	cr_assert_eq(search(d, big, r, 8), 0);
	cr_assert_eq(search(d, "report", r, 0), 0);
	dir_free(d);
}

Test(directory, first_name_is_kept)
{
	struct dir *d = mkdir_default();
	struct dir_result r[4];

	reg(d, 1, T0);
	reg(d, 2, T0);
	cr_assert_eq(offer(d, 1, 9, "first name.txt", T0), 0);
	cr_assert_eq(offer(d, 2, 9, "second name.txt", T0), 0);
	cr_assert_eq(search(d, "second", r, 4), 0);
	cr_assert_eq(search(d, "first", r, 4), 1);
	cr_assert_eq(r[0].providers, 2);
	/* The first provider leaves: the name stays while the content does. */
	uint8_t id[PN_ID_BYTES];
	struct pn_cid c = cid_of(9);
	node_id(1, id);
	dir_withdraw(d, id, &c);
	cr_assert_eq(search(d, "first", r, 4), 1);
	cr_assert_eq(r[0].providers, 1);
	/* The last goes: the content goes, and comes back under the new first name. */
	node_id(2, id);
	dir_withdraw(d, id, &c);
	cr_assert_eq(dir_content_count(d), 0);
	cr_assert_eq(search(d, "first", r, 4), 0);
	cr_assert_eq(offer(d, 2, 9, "second name.txt", T0), 0);
	cr_assert_eq(search(d, "second", r, 4), 1);
	cr_assert_eq(dir_check(d), 0);
	dir_free(d);
}

Test(directory, heartbeats_keep_alive_and_silence_expires)
{
	struct dir *d = mkdir_default();
	uint8_t id1[PN_ID_BYTES], id2[PN_ID_BYTES];
	struct dir_provider out[4];
	struct dir_result r[4];
	struct pn_cid c = cid_of(1);
	uint64_t now = T0;

	node_id(1, id1);
	node_id(2, id2);
	cr_assert_eq(dir_next_wakeup(d), UINT64_MAX);
	reg(d, 1, now);
	reg(d, 2, now);
	cr_assert_eq(offer(d, 1, 1, "movie.mkv", now), 0);
	cr_assert_eq(offer(d, 2, 2, "music.flac", now), 0);
	cr_assert_eq(dir_next_wakeup(d), T0 + TIMEOUT_MS);

	/* Node 1 heartbeats every 10 s for two minutes; node 2 stays silent. */
	for (int i = 0; i < 12; i++) {
		now += 10000;
		cr_assert_eq(dir_heartbeat(d, id1, now), 0);
		dir_tick(d, now);
	}
	cr_assert_eq(dir_node_count(d), 1);
	cr_assert_eq(dir_find(d, &c, NULL, out, 4, NULL), 1);
	cr_assert_eq(search(d, "music", r, 4), 0, "node 2's offers went with it");
	cr_assert_eq(dir_heartbeat(d, id2, now), PN_ENOTFOUND);
	cr_assert_eq(dir_next_wakeup(d), now + TIMEOUT_MS);

	/* Node 1 misses its window: the tick at the deadline drops it. */
	cr_assert_eq(dir_tick(d, now + TIMEOUT_MS - 1), 0);
	cr_assert_eq(dir_tick(d, now + TIMEOUT_MS), 1);
	cr_assert_eq(dir_node_count(d), 0);
	cr_assert_eq(dir_content_count(d), 0);
	cr_assert_eq(dir_find(d, &c, NULL, out, 4, NULL), 0);
	cr_assert_eq(dir_heartbeat(d, id1, now + TIMEOUT_MS), PN_ENOTFOUND);

	/* Registering again works, and starts with no offers. */
	now += 2 * TIMEOUT_MS;
	reg(d, 1, now);
	cr_assert_eq(dir_find(d, &c, NULL, out, 4, NULL), 0);
	cr_assert_eq(offer(d, 1, 1, "movie.mkv", now), 0);
	cr_assert_eq(dir_find(d, &c, NULL, out, 4, NULL), 1);
	cr_assert_eq(dir_check(d), 0);
	dir_free(d);
}

Test(directory, calls_with_now_expire_without_a_tick)
{
	struct dir *d = mkdir_default();
	uint8_t id1[PN_ID_BYTES];

	node_id(1, id1);
	reg(d, 1, T0);
	reg(d, 2, T0 + 5000);
	cr_assert_eq(offer(d, 1, 1, "a.txt", T0), 0);
	/* An offer is a sign of life too. */
	cr_assert_eq(offer(d, 1, 2, "b.txt", T0 + 20000), 0);
	cr_assert_eq(dir_heartbeat(d, id1, T0 + 45000), 0);
	cr_assert_eq(dir_node_count(d), 1, "node 2 went silently at T0+35000");
	cr_assert_eq(dir_heartbeat(d, id1, T0 + 45000 + TIMEOUT_MS), PN_ENOTFOUND);
	cr_assert_eq(offer(d, 1, 1, "a.txt", T0 + 45000 + TIMEOUT_MS), PN_ENOTFOUND);
	cr_assert_eq(dir_content_count(d), 0);
	cr_assert_eq(dir_check(d), 0);
	dir_free(d);
}

Test(directory, unregister_and_withdraw_remove_offers)
{
	struct dir *d = mkdir_default();
	uint8_t id[PN_ID_BYTES];
	struct pn_cid c = cid_of(1);

	reg(d, 1, T0);
	reg(d, 2, T0);
	cr_assert_eq(offer(d, 1, 1, "shared.txt", T0), 0);
	cr_assert_eq(offer(d, 2, 1, "shared.txt", T0), 0);
	cr_assert_eq(offer(d, 1, 2, "mine.txt", T0), 0);
	cr_assert_eq(find_total(d, 1), 2);

	node_id(1, id);
	dir_unregister(d, id);
	cr_assert_eq(find_total(d, 1), 1);
	cr_assert_eq(find_total(d, 2), 0);
	cr_assert_eq(dir_content_count(d), 1);
	cr_assert_eq(offer(d, 1, 3, "late.txt", T0), PN_ENOTFOUND);
	dir_unregister(d, id); /* twice: nothing */

	node_id(2, id);
	dir_withdraw(d, id, &c);
	dir_withdraw(d, id, &c);
	cr_assert_eq(find_total(d, 1), 0);
	cr_assert_eq(dir_content_count(d), 0);
	cr_assert_eq(dir_offer_count(d), 0);
	cr_assert_eq(dir_node_count(d), 1);
	cr_assert_eq(dir_check(d), 0);
	dir_free(d);
}

Test(directory, register_again_updates_the_address)
{
	struct dir *d = mkdir_default();
	uint8_t id[PN_ID_BYTES];
	struct dir_provider out[2];
	struct pn_cid c = cid_of(1);

	node_id(1, id);
	cr_assert_eq(dir_register(d, id, "10.0.0.1:1", T0), 0);
	cr_assert_eq(offer(d, 1, 1, "f.txt", T0), 0);
	cr_assert_eq(dir_register(d, id, "[::1]:7072", T0 + 1), 0);
	cr_assert_eq(dir_find(d, &c, NULL, out, 2, NULL), 1);
	cr_assert_str_eq(out[0].addr, "[::1]:7072");
	cr_assert_eq(dir_node_count(d), 1);
	dir_free(d);
}

Test(directory, per_node_offer_cap_and_total_cap)
{
	struct dir *d = mkdir_opts(0, 3, 0, 5);

	reg(d, 1, T0);
	reg(d, 2, T0);
	for (uint32_t i = 0; i < 3; i++)
		cr_assert_eq(offer(d, 1, i, "f.txt", T0), 0);
	cr_assert_eq(offer(d, 1, 3, "f.txt", T0), PN_ELIMIT);
	cr_assert_eq(offer(d, 1, 2, "f.txt", T0), 0, "an offer it already has is not a new one");
	cr_assert_eq(offer(d, 2, 0, "f.txt", T0), 0);
	cr_assert_eq(offer(d, 2, 1, "f.txt", T0), 0);
	cr_assert_eq(offer(d, 2, 2, "f.txt", T0), PN_ELIMIT, "max_offers over all nodes");
	cr_assert_eq(dir_offer_count(d), 5);
	uint8_t id[PN_ID_BYTES];
	struct pn_cid c = cid_of(0);
	node_id(1, id);
	dir_withdraw(d, id, &c);
	cr_assert_eq(offer(d, 1, 3, "f.txt", T0), 0, "room again after a withdrawal");
	cr_assert_eq(dir_check(d), 0);
	dir_free(d);
}

Test(directory, node_cap)
{
	struct dir *d = mkdir_opts(3, 0, 0, 0);
	uint8_t id[PN_ID_BYTES];

	for (uint32_t i = 0; i < 3; i++)
		reg(d, i, T0);
	node_id(3, id);
	cr_assert_eq(dir_register(d, id, "1.2.3.4:5", T0), PN_ELIMIT);
	node_id(1, id);
	cr_assert_eq(dir_register(d, id, "1.2.3.4:5", T0 + 1), 0, "a known node may refresh");
	/* Once nodes 0 and 2 have expired there is room. */
	node_id(3, id);
	cr_assert_eq(dir_register(d, id, "1.2.3.4:5", T0 + TIMEOUT_MS), 0);
	cr_assert_eq(dir_node_count(d), 2);
	cr_assert_eq(dir_check(d), 0);
	dir_free(d);
}

Test(directory, bad_addresses_rejected)
{
	struct dir *d = mkdir_default();
	uint8_t id[PN_ID_BYTES];
	char longest[DIR_ADDR_MAX + 2];
	static const char *const bad[] = { "", "1.2.3.4 :5", "1.2.3.4:5\n", "\x01", "caf\xc3\xa9:1", "a\tb", "\x7f" };

	node_id(1, id);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(dir_register(d, id, bad[i], T0), PN_EINVAL, "addr #%zu", i);
	cr_assert_eq(dir_register(d, id, NULL, T0), PN_EINVAL);
	memset(longest, '9', sizeof(longest) - 1);
	longest[sizeof(longest) - 1] = '\0';
	cr_assert_eq(dir_register(d, id, longest, T0), PN_EINVAL, "DIR_ADDR_MAX + 1 bytes");
	longest[DIR_ADDR_MAX] = '\0';
	cr_assert_eq(dir_register(d, id, longest, T0), 0, "DIR_ADDR_MAX bytes");
	cr_assert_eq(dir_register(d, id, "[fe80::1%eth0]:7072", T0), 0);
	cr_assert_eq(dir_node_count(d), 1);
	dir_free(d);
}

Test(directory, bad_names_rejected)
{
	struct dir *d = mkdir_default();
	char longest[PN_NAME_MAX + 2];
	static const char *const bad[] = { "", ".", "..", "a/b", "a\\b", "tab\there", "\xc3", "\xc0\xaf", "\xed\xa0\x80",
					   "del\x7f" };

	reg(d, 1, T0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(offer(d, 1, 1, bad[i], T0), PN_EINVAL, "name #%zu", i);
	cr_assert_eq(offer(d, 1, 1, NULL, T0), PN_EINVAL);
	memset(longest, 'n', sizeof(longest) - 1);
	longest[sizeof(longest) - 1] = '\0';
	cr_assert_eq(offer(d, 1, 1, longest, T0), PN_EINVAL, "PN_NAME_MAX + 1 bytes");
	longest[PN_NAME_MAX] = '\0';
	cr_assert_eq(offer(d, 1, 1, longest, T0), 0, "PN_NAME_MAX bytes");
	cr_assert_eq(dir_content_count(d), 1);
	cr_assert_eq(offer(d, 1, 2, "..hidden", T0), 0);
	cr_assert_eq(dir_check(d), 0);
	dir_free(d);
}

Test(directory, opts_null_takes_defaults)
{
	struct dir *d = dir_new(NULL);

	cr_assert_not_null(d);
	reg(d, 1, 0);
	cr_assert_eq(dir_next_wakeup(d), TIMEOUT_MS);
	dir_free(d);
	dir_free(NULL);
}

/* ---- scale: 100k offers over 1000 nodes (figures printed, not asserted) ---- */

#define SCALE_NODES 1000u
#define SCALE_PER_NODE 100u
#define SCALE_VOCAB 2000u
#define SCALE_SEARCH_ROUNDS 200u
#define SCALE_FIND_ROUNDS 100000u

static double now_sec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Word number w of a made-up vocabulary: two or three syllables. */
static void vocab_word(uint32_t w, char *out)
{
	static const char *const syl[] = { "ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "ber", "dan",
					   "fel", "gor", "hin", "jun", "pol", "quar", "ter", "ly", "wex", "zo" };
	const size_t nsyl = sizeof(syl) / sizeof(syl[0]);

	strcpy(out, syl[w % nsyl]);
	strcat(out, syl[(w / nsyl) % nsyl]);
	if (w >= nsyl * nsyl / 2)
		strcat(out, syl[(w / 7) % nsyl]);
}

static double time_search(struct dir *d, const char *q, int *matches)
{
	struct dir_result r[50];
	double t = now_sec();

	for (uint32_t i = 0; i < SCALE_SEARCH_ROUNDS; i++)
		*matches = dir_search(d, q, r, 50);
	return (now_sec() - t) / SCALE_SEARCH_ROUNDS * 1e6;
}

Test(directory, scale_100k_offers, .timeout = 120)
{
	/* 101,000 offers: past the default total cap, which this test is not about. */
	struct dir *d = mkdir_opts(0, 0, 0, 2 * SCALE_NODES * SCALE_PER_NODE);
	struct dir_provider out[50];
	uint64_t rng = 7;
	char name[PN_NAME_MAX + 1], w1[16], w2[16], w3[16];
	double t;

	t = now_sec();
	for (uint32_t n = 0; n < SCALE_NODES; n++) {
		reg(d, n, T0);
		for (uint32_t i = 0; i < SCALE_PER_NODE; i++) {
			uint32_t content = n * SCALE_PER_NODE + i;

			rng = rng * 6364136223846793005ull + 1442695040888963407ull;
			vocab_word((uint32_t)(rng >> 33) % SCALE_VOCAB, w1);
			vocab_word((uint32_t)(rng >> 45) % SCALE_VOCAB, w2);
			vocab_word((uint32_t)(rng >> 20) % SCALE_VOCAB, w3);
			snprintf(name, sizeof(name), "%s %s_%s %u.dat", w1, w2, w3, content);
			cr_assert_eq(offer(d, n, content, name, T0), 0);
		}
	}
	/* One popular content offered by every node. */
	for (uint32_t n = 0; n < SCALE_NODES; n++)
		cr_assert_eq(offer(d, n, SCALE_NODES * SCALE_PER_NODE, "popular release.iso", T0), 0);
	double load = now_sec() - t;
	cr_assert_eq(dir_offer_count(d), SCALE_NODES * SCALE_PER_NODE + SCALE_NODES);
	cr_assert_eq(dir_content_count(d), SCALE_NODES * SCALE_PER_NODE + 1);

	static const char *const queries[] = { "quarterly", "kalo", "quar ter", "kalo mine", "popular", "q", "12345" };
	fprintf(stderr, "directory scale: %u nodes, %zu offers, %zu contents, loaded in %.0f ms\n", SCALE_NODES,
		dir_offer_count(d), dir_content_count(d), load * 1e3);
	for (size_t i = 0; i < sizeof(queries) / sizeof(queries[0]); i++) {
		int matches;
		double us = time_search(d, queries[i], &matches);

		cr_assert_geq(matches, 0);
		fprintf(stderr, "  search %-12s -> %2d results: %8.1f us\n", queries[i], matches, us);
	}

	t = now_sec();
	for (uint32_t i = 0; i < SCALE_FIND_ROUNDS; i++) {
		struct pn_cid c = cid_of(i % (SCALE_NODES * SCALE_PER_NODE));
		uint32_t total;

		cr_assert_eq(dir_find(d, &c, NULL, out, 50, &total), 1);
	}
	fprintf(stderr, "  find (1 provider)        : %8.3f us\n", (now_sec() - t) / SCALE_FIND_ROUNDS * 1e6);
	t = now_sec();
	for (uint32_t i = 0; i < SCALE_FIND_ROUNDS; i++) {
		struct pn_cid c = cid_of(SCALE_NODES * SCALE_PER_NODE);
		uint32_t total;

		cr_assert_eq(dir_find(d, &c, NULL, out, 50, &total), 50);
		cr_assert_eq(total, SCALE_NODES);
	}
	fprintf(stderr, "  find (50 of 1000)        : %8.3f us\n", (now_sec() - t) / SCALE_FIND_ROUNDS * 1e6);

	cr_assert_eq(dir_check(d), 0);
	t = now_sec();
	for (uint32_t n = 0; n < SCALE_NODES; n += 2) {
		uint8_t id[PN_ID_BYTES];

		node_id(n, id);
		dir_unregister(d, id);
	}
	cr_assert_eq(dir_tick(d, T0 + TIMEOUT_MS), SCALE_NODES / 2);
	fprintf(stderr, "  unregister 500 + expire 500 nodes: %.0f ms\n", (now_sec() - t) * 1e3);
	cr_assert_eq(dir_content_count(d), 0);
	cr_assert_eq(dir_check(d), 0);
	dir_free(d);
}

/* A driver arms one timer at dir_next_wakeup() (src/node/directory_server.c):
 * the wake-up must follow the oldest node through heartbeats, offers and
 * unregistering, and an event-driven loop woken only then must drop each
 * node at its deadline and then stop waking. */
Test(directory, next_wakeup_follows_the_oldest_node)
{
	struct dir *d = mkdir_default();
	uint8_t id1[PN_ID_BYTES], id3[PN_ID_BYTES];

	node_id(1, id1);
	node_id(3, id3);
	cr_assert_eq(dir_next_wakeup(d), UINT64_MAX, "nothing to do: no wake-up");
	reg(d, 1, T0);
	reg(d, 2, T0 + 1000);
	reg(d, 3, T0 + 2000);
	cr_assert_eq(dir_next_wakeup(d), T0 + TIMEOUT_MS);
	cr_assert_eq(dir_heartbeat(d, id1, T0 + 5000), 0);
	cr_assert_eq(dir_next_wakeup(d), T0 + 1000 + TIMEOUT_MS, "node 2 is the oldest now");
	cr_assert_eq(offer(d, 2, 7, "report.pdf", T0 + 6000), 0);
	cr_assert_eq(dir_next_wakeup(d), T0 + 2000 + TIMEOUT_MS, "an offer counts as a heartbeat");
	dir_unregister(d, id3);
	cr_assert_eq(dir_next_wakeup(d), T0 + 5000 + TIMEOUT_MS, "node 1's heartbeat is the oldest left");
	/* Nothing is due before the wake-up. */
	cr_assert_eq(dir_tick(d, dir_next_wakeup(d) - 1), 0);

	/* Woken only at the wake-ups: one node each time, then no more. */
	uint64_t woke_at[4];
	int wakes = 0;
	for (uint64_t w; (w = dir_next_wakeup(d)) != UINT64_MAX && wakes < 4;)
		cr_assert_eq(dir_tick(d, (woke_at[wakes++] = w)), 1);
	cr_assert_eq(wakes, 2);
	cr_assert_eq(woke_at[0], T0 + 5000 + TIMEOUT_MS);
	cr_assert_eq(woke_at[1], T0 + 6000 + TIMEOUT_MS);
	cr_assert_eq(dir_node_count(d), 0);
	cr_assert_eq(dir_content_count(d), 0);
	cr_assert_eq(dir_next_wakeup(d), UINT64_MAX);
	cr_assert_eq(dir_check(d), 0);
	dir_free(d);
}
