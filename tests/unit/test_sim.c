/* The flood simulator (sim/): exact message counts on hand-made topologies,
 * worked out by hand, and runs that repeat exactly for a seed.
 *
 * The simulator is not part of libpeernet, so its engine is compiled in here. */
#include <criterion/criterion.h>
#include "../../sim/evq.c"
#include "../../sim/sim.c"

#define LAT_MS 10       /* fixed latency: times are exact too */
#define ITEM 0
#define RAND_NODES 300
#define RAND_QUERIES 30
#define RAND_ITEMS 20
#define RAND_REPL 3
#define RAND_TTL 4
#define LOAD_QPS 2
#define LOAD_MS 5000

static const uint32_t line5[][2] = { { 0, 1 }, { 1, 2 }, { 2, 3 }, { 3, 4 } };
static const uint32_t ring4[][2] = { { 0, 1 }, { 1, 2 }, { 2, 3 }, { 3, 0 } };

static struct sim *mk(const uint32_t (*edges)[2], size_t nedges, uint32_t nodes, uint32_t holder)
{
	struct sim_params p = { .nodes = nodes, .lat_min_ms = LAT_MS, .lat_max_ms = LAT_MS, .seed = 1 };
	struct sim *s = sim_new_edges(&p, edges, nedges);

	cr_assert_not_null(s);
	cr_assert_eq(sim_items_clear(s, 1), 0);
	sim_hold(s, ITEM, holder);
	return s;
}

static struct sim_query_result ask(struct sim *s, uint8_t ttl, bool ring)
{
	struct sim_query_result r;

	cr_assert_eq(sim_query(s, 0, ITEM, ttl, ring, 1, &r), 0);
	struct flood_stats st;

	sim_core_stats(s, &st);
	cr_assert_eq(sim_msgs_sent(s), st.queries_sent + st.hits_sent, "the cores count other messages than we do");
	return r;
}

/* 0 -> 1 -> 2 (ttl 2, then 1: stops); 2 holds it: hit 2 -> 1 -> 0. */
Test(sim, line_ttl2_holder_two_hops_away)
{
	struct sim *s = mk(line5, 4, 5, 2);
	struct sim_query_result r = ask(s, 2, false);

	cr_assert_eq(r.query_msgs, 2);
	cr_assert_eq(r.hit_msgs, 2);
	cr_assert_eq(r.hits, 1);
	cr_assert(r.answered);
	cr_assert_eq(r.reached, 2);
	cr_assert_eq(r.first_hit_ms, 4 * LAT_MS);
	sim_free(s);
}

/* The holder is 3 hops away: ttl 2 never gets there. */
Test(sim, line_ttl2_holder_out_of_reach)
{
	struct sim *s = mk(line5, 4, 5, 3);
	struct sim_query_result r = ask(s, 2, false);

	cr_assert_eq(r.query_msgs, 2);
	cr_assert_eq(r.hit_msgs, 0);
	cr_assert(!r.answered);
	cr_assert_eq(r.reached, 2);
	sim_free(s);
}

/* ttl 4 along the whole line: 4 query hops out, 4 hit hops back. */
Test(sim, line_ttl4_end_to_end)
{
	struct sim *s = mk(line5, 4, 5, 4);
	struct sim_query_result r = ask(s, 4, false);

	cr_assert_eq(r.query_msgs + r.hit_msgs, 8);
	cr_assert_eq(r.reached, 4);
	cr_assert_eq(r.first_hit_ms, 8 * LAT_MS);
	sim_free(s);
}

/* A 4-ring, ttl 2 from 0: 0 -> 1, 0 -> 3, then 1 -> 2 and 3 -> 2; node 2
 * answers the first copy only, back along its path: 2 hit messages. */
Test(sim, ring4_duplicate_is_not_answered_twice)
{
	struct sim *s = mk(ring4, 4, 4, 2);
	struct sim_query_result r = ask(s, 2, false);

	cr_assert_eq(r.query_msgs, 4);
	cr_assert_eq(r.hit_msgs, 2);
	cr_assert_eq(r.hits, 1);
	cr_assert_eq(r.reached, 3);
	sim_free(s);
}

/* Expanding ring up to 3 on the line, holder 2 hops away: ttl 1 costs one
 * message and finds nothing; ttl 2 costs two more and two hits back; the
 * ring stops there (want 1). */
Test(sim, expanding_ring_stops_at_first_hit)
{
	struct sim *s = mk(line5, 4, 5, 2);
	struct sim_query_result r = ask(s, 3, true);

	cr_assert_eq(r.query_msgs, 3);
	cr_assert_eq(r.hit_msgs, 2);
	cr_assert_eq(r.reached, 2);
	cr_assert(r.answered);
	sim_free(s);
}

static struct sim_cell run_random(uint64_t seed, bool ring)
{
	struct sim_params p = { .nodes = RAND_NODES, .loss = 0.05, .seed = seed };
	struct sim *s = sim_new(&p);
	struct sim_cell c;

	cr_assert_not_null(s);
	cr_assert_eq(sim_items_random(s, RAND_ITEMS, RAND_REPL), 0);
	cr_assert_eq(sim_cell_run(s, RAND_QUERIES, RAND_TTL, ring, 1, &c), 0);
	cr_assert_eq(c.queries, RAND_QUERIES);
	sim_free(s);
	return c;
}

static void assert_same(const struct sim_cell *a, const struct sim_cell *b)
{
	cr_assert_eq(a->msgs, b->msgs);
	cr_assert_eq(a->query_msgs, b->query_msgs);
	cr_assert_eq(a->hit_msgs, b->hit_msgs);
	cr_assert_eq(a->answered, b->answered);
	cr_assert_eq(a->reached, b->reached);
	cr_assert_eq(a->first_hit_sum_ms, b->first_hit_sum_ms);
	cr_assert_eq(a->first_hit_median_ms, b->first_hit_median_ms);
}

Test(sim, same_seed_same_figures)
{
	for (int ring = 0; ring < 2; ring++) {
		struct sim_cell a = run_random(42, ring), b = run_random(42, ring), c = run_random(43, ring);

		assert_same(&a, &b);
		cr_assert(a.msgs != c.msgs || a.first_hit_sum_ms != c.first_hit_sum_ms,
			  "another seed gave the very same run");
	}
}

/* The random overlay is connected and keeps every node within min..max. */
Test(sim, random_overlay_is_connected_and_bounded)
{
	struct sim_params p = { .nodes = RAND_NODES, .seed = 9 };
	struct sim *s = sim_new(&p);
	uint32_t *stack = calloc(RAND_NODES, sizeof(*stack));
	bool *seen = calloc(RAND_NODES, sizeof(*seen));
	uint32_t top = 0, count = 1;

	cr_assert(s && stack && seen);
	struct sim_degree d = sim_degree_stats(s);

	cr_assert_geq(d.min, SIM_DEFAULT_MIN_DEGREE);
	cr_assert_leq(d.max, SIM_DEFAULT_MAX_DEGREE);
	seen[0] = true;
	stack[top++] = 0;
	while (top) {
		uint32_t a = stack[--top];

		for (uint32_t i = 0; i < s->nodes[a].deg; i++) {
			uint32_t b = s->adj[(size_t)a * SIM_MAX_DEGREE + i];

			if (!seen[b]) {
				seen[b] = true;
				count++;
				stack[top++] = b;
			}
		}
	}
	cr_assert_eq(count, RAND_NODES);
	free(stack);
	free(seen);
	sim_free(s);
}

/* Many queries at once: repeats for a seed; a gentle rate is never limited. */
Test(sim, load_run_repeats_and_gentle_rate_is_not_limited)
{
	struct sim_load l[2];

	for (int k = 0; k < 2; k++) {
		struct sim_params p = { .nodes = RAND_NODES, .seed = 5 };
		struct sim *s = sim_new(&p);

		cr_assert_not_null(s);
		cr_assert_eq(sim_items_random(s, RAND_ITEMS, RAND_REPL), 0);
		cr_assert_eq(sim_load_run(s, LOAD_QPS, LOAD_MS, RAND_TTL, false, 1, &l[k]), 0);
		sim_free(s);
	}
	cr_assert_gt(l[0].started, 0);
	cr_assert_eq(l[0].started, l[1].started);
	cr_assert_eq(l[0].done, l[0].started);
	cr_assert_eq(l[0].answered, l[1].answered);
	cr_assert_eq(l[0].msgs, l[1].msgs);
	cr_assert_eq(l[0].rate_limited, 0);
	cr_assert_eq(l[0].links_dropped, 0);
}
