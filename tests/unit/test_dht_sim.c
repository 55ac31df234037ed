/* The DHT simulator (sim/dht_sim.c) on the real DHT core: look-ups find
 * their providers without churn, most still do under churn, a look-up costs
 * a bounded number of messages, and a seed repeats a run exactly.
 *
 * The simulator is not part of libpeernet, so it is compiled in here. */
#include <criterion/criterion.h>
#include "../../sim/evq.c"
#include "../../sim/dht_sim.c"

#define SMALL_N 300
#define SMALL_LOOKUPS 200
#define SMALL_ITEMS 40
#define SMALL_COPIES 2
#define SMALL_JOIN_S 120
#define SMALL_SETTLE_S 60
#define SMALL_WINDOW_S 1200
#define MSGS_BOUND 200      /* Kademlia at N = 300: a few rounds of alpha = 3, far below this */
#define ROUNDS_BOUND 10

static struct dht_sim_params small(uint64_t seed, double churn)
{
	struct dht_sim_params p;

	memset(&p, 0, sizeof(p));
	p.nodes = SMALL_N;
	p.lookups = SMALL_LOOKUPS;
	p.items = SMALL_ITEMS;
	p.copies = SMALL_COPIES;
	p.join_s = SMALL_JOIN_S;
	p.settle_s = SMALL_SETTLE_S;
	p.window_s = SMALL_WINDOW_S;
	p.churn_per_hour = churn;
	p.seed = seed;
	return p;
}

static void check_sane(const struct dht_sim_result *r)
{
	cr_assert_eq(r->encode_failed, 0, "%" PRIu64 " messages the core made do not encode", r->encode_failed);
	cr_assert_eq(r->actions_dropped, 0, "the cores dropped %" PRIu64 " actions", r->actions_dropped);
	cr_assert_gt(r->counted, SMALL_LOOKUPS / 2);
	cr_assert_leq(r->msgs_p99, MSGS_BOUND, "99th percentile %.0f messages per look-up", r->msgs_p99);
	cr_assert_gt(r->table_mean, 0);
	cr_assert_gt(r->memory_mean, 0);
}

Test(dht_sim, lookups_succeed_without_churn)
{
	struct dht_sim_params p = small(1, 0);
	struct dht_sim_result r;
	struct dht_sim_lookup *lk = calloc(SMALL_LOOKUPS, sizeof(*lk));

	cr_assert_not_null(lk);
	cr_assert_eq(dht_sim_run(&p, &r, lk), 0);
	check_sane(&r);
	cr_assert_eq(r.left, 0);
	cr_assert_eq(r.no_live_holder, 0);
	cr_assert_eq(r.counted, SMALL_LOOKUPS);
	cr_assert_eq(r.done, r.counted, "%u of %u look-ups never ended", r.counted - r.done, r.counted);
	cr_assert_eq(r.success, r.counted, "%u of %u look-ups found no provider", r.counted - r.success, r.counted);
	cr_assert_leq(r.rounds_p99, ROUNDS_BOUND);
	cr_assert_geq(r.rounds_median, 1);
	for (uint32_t i = 0; i < SMALL_LOOKUPS; i++) {
		cr_assert(lk[i].success);
		if (lk[i].rounds == 0) { /* the querier stores the record itself */
			cr_assert_eq(lk[i].first_ms, 0);
			continue;
		}
		cr_assert_geq(lk[i].msgs, 2, "a look-up that found something sent a request and had a reply");
		cr_assert_geq(lk[i].first_ms, 2 * DHT_SIM_DEFAULT_LAT_MIN_MS, "faster than one round trip");
		cr_assert_leq(lk[i].first_ms, lk[i].done_ms);
	}
	free(lk);
}

Test(dht_sim, most_lookups_succeed_under_churn)
{
	struct dht_sim_params p = small(2, 0.5); /* half the network replaced per hour */
	struct dht_sim_result r;

	cr_assert_eq(dht_sim_run(&p, &r, NULL), 0);
	check_sane(&r);
	cr_assert_gt(r.left, 0);
	cr_assert_gt(r.joined, 0);
	cr_assert_geq(r.success, r.counted * 95 / 100, "only %u of %u look-ups found a live provider", r.success,
		      r.counted);
}

Test(dht_sim, loss_costs_timeouts_not_success)
{
	struct dht_sim_params p = small(3, 0);
	struct dht_sim_result r;

	p.loss = 0.05;
	cr_assert_eq(dht_sim_run(&p, &r, NULL), 0);
	check_sane(&r);
	cr_assert_gt(r.lost, 0);
	cr_assert_geq(r.success, r.counted * 98 / 100, "only %u of %u look-ups found a provider at 5%% loss",
		      r.success, r.counted);
}

/* Under heavy loss both of a joiner's bootstrap pings (or their answers) are
 * often lost; as the node's driver does, the simulator pings them again
 * every DHT_REBOOT_MS while the table is empty, so no node stays alone. */
Test(dht_sim, a_joiner_whose_bootstrap_answers_are_lost_tries_again)
{
	struct dht_sim_params p = small(6, 0);
	struct dht_sim_result r;

	p.loss = 0.3;
	cr_assert_eq(dht_sim_run(&p, &r, NULL), 0);
	cr_assert_gt(r.rebootstraps, 0, "at 30%% loss some joiner's first pings all failed");
	cr_assert_gt(r.table_min, 0, "a node ended with an empty routing table");
	cr_assert_eq(r.encode_failed, 0);
}

Test(dht_sim, a_seed_repeats_a_run)
{
	struct dht_sim_params p = small(4, 0.2);
	struct dht_sim_result a, b;
	struct dht_sim_lookup *la = calloc(SMALL_LOOKUPS, sizeof(*la)), *lb = calloc(SMALL_LOOKUPS, sizeof(*lb));

	cr_assert(la && lb);
	p.loss = 0.01;
	cr_assert_eq(dht_sim_run(&p, &a, la), 0);
	cr_assert_eq(dht_sim_run(&p, &b, lb), 0);
	cr_assert_eq(a.msgs_total, b.msgs_total);
	cr_assert_eq(a.bytes_total, b.bytes_total);
	cr_assert_eq(a.events, b.events);
	cr_assert_eq(a.success, b.success);
	cr_assert_eq(a.left, b.left);
	cr_assert_eq(memcmp(la, lb, SMALL_LOOKUPS * sizeof(*la)), 0, "the look-ups differ");
	free(la);
	free(lb);
}

Test(dht_sim, workload_matches_the_run)
{
	struct dht_sim_params p = small(5, 0);
	uint32_t holders[SMALL_ITEMS * SMALL_COPIES], from[SMALL_LOOKUPS], item[SMALL_LOOKUPS];
	struct dht_sim_result r;
	struct dht_sim_lookup *lk = calloc(SMALL_LOOKUPS, sizeof(*lk));

	cr_assert_not_null(lk);
	cr_assert_eq(dht_sim_workload(&p, holders, from, item), 0);
	cr_assert_eq(dht_sim_run(&p, &r, lk), 0);
	for (uint32_t i = 0; i < SMALL_LOOKUPS; i++) {
		cr_assert_eq(lk[i].from, from[i]);
		cr_assert_eq(lk[i].item, item[i]);
		for (uint32_t c = 0; c < SMALL_COPIES; c++)
			cr_assert_neq(holders[item[i] * SMALL_COPIES + c], from[i], "a querier holds its item");
	}
	free(lk);
}
