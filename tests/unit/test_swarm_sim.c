/* The swarm simulator (sim/swarm_sim.c) on the real peer engine: a small
 * swarm completes, a seed repeats a run exactly, a corrupting provider is
 * banned while the others finish, and the stayers finish when some leave.
 *
 * The simulator is not part of libpeernet, so its files are compiled in here. */
#include <criterion/criterion.h>
#include "../../sim/evq.c"
#include "../../sim/swarm_sim.c"
#include "../../sim/swarm_fault.c"
#include "../../sim/swarm_report.c"

#define SMALL_N 4
#define SMALL_F (2u * 1024 * 1024)
#define LEAVE_N 8
#define MAX_TIME_MS 600000u     /* virtual: a healthy run takes a few seconds */
#define MAX_EVENTS 5000000u

static struct swarm_sim_params small(uint64_t seed)
{
	struct swarm_sim_params p;

	memset(&p, 0, sizeof(p));
	p.nodes = SMALL_N;
	p.file_size = SMALL_F;
	p.lat_min_us = 1000;
	p.lat_max_us = 20000;
	p.seed = seed;
	p.max_time_ms = MAX_TIME_MS;
	p.max_events = MAX_EVENTS;
	p.diag = stderr;
	p.check = true; /* the engine's totals recounted after every step */
	return p;
}

static struct swarm_sim_result run(const struct swarm_sim_params *p)
{
	struct swarm_sim_result r;

	cr_assert_eq(swarm_sim_run(p, &r), 0);
	cr_assert_not(r.capped, "the run hit its cap at %.1f s virtual", r.end_s);
	cr_assert_not(r.stalled, "the run stalled at %.1f s virtual", r.end_s);
	cr_assert_eq(r.engine_oddities, 0, "the driver saw %" PRIu64 " engine oddities", r.engine_oddities);
	return r;
}

Test(swarm_sim, small_swarm_completes)
{
	struct swarm_sim_params p = small(1);
	struct swarm_sim_result r = run(&p);

	cr_assert_eq(r.downloaders, SMALL_N);
	cr_assert_eq(r.finished, SMALL_N);
	cr_assert(r.all_stayers_finished);
	cr_assert_eq(r.chunks_held, r.nchunks);
	/* Nobody beats the bound by more than the bucket's initial burst allows. */
	cr_assert_gt(r.dist_s, 0.8 * r.bound_s, "D %.2f s against a bound of %.2f s", r.dist_s, r.bound_s);
	cr_assert_geq(r.source_copies, 1.0 - 1e-9);
	cr_assert_geq(r.down_ratio, 1.0 - 1e-9);
	cr_assert_gt(r.msgs, r.chunk_msgs);
	cr_assert_eq(r.protocol_closes, 0, "honest engines closed %" PRIu64 " connections for a protocol error",
		     r.protocol_closes);
}

Test(swarm_sim, a_seed_repeats_a_run_exactly)
{
	struct swarm_sim_params p = small(7);
	struct swarm_sim_result a = run(&p), b = run(&p);

	cr_assert_eq(a.digest, b.digest);
	cr_assert_eq(a.msgs, b.msgs);
	cr_assert_eq(a.events, b.events);
	cr_assert_eq(a.dist_s, b.dist_s);
	p.seed = 8;
	struct swarm_sim_result c = run(&p);
	cr_assert_neq(a.digest, c.digest, "another seed gave the very same run");
}

Test(swarm_sim, a_corrupting_provider_is_banned_and_the_rest_finish)
{
	struct swarm_sim_params p = small(3);

	p.malicious = 1;
	struct swarm_sim_result r = run(&p);

	cr_assert_eq(r.finished, SMALL_N);
	cr_assert_geq(r.corrupt_receivers, 1, "no node got a chunk from the corrupting provider");
	cr_assert_eq(r.corrupt_bans, r.corrupt_receivers, "%u of %u nodes that got a corrupt chunk banned its sender",
		     r.corrupt_bans, r.corrupt_receivers);
}

/* The seed goes once every chunk has left it once; the swarm finishes from
 * what it put out, each chunk having reached someone. */
Test(swarm_sim, the_swarm_finishes_after_the_seed_leaves)
{
	struct swarm_sim_params p = small(11);

	p.nodes = LEAVE_N;
	p.seed_leaves = true;
	struct swarm_sim_result r = run(&p);

	cr_assert_gt(r.seed_left_s, 0.0, "the seed never left");
	cr_assert_lt(r.seed_left_s, r.dist_s, "the seed stayed to the end (left %.2f s, done %.2f s)",
		     r.seed_left_s, r.dist_s);
	cr_assert(r.all_stayers_finished, "%u of %u finished", r.stayers_finished, r.stayers);
	cr_assert_eq(r.chunks_held, r.nchunks);
	cr_assert_geq(r.source_copies, 1.0);
}

Test(swarm_sim, the_stayers_finish_when_others_leave)
{
	struct swarm_sim_params p = small(5);

	p.nodes = LEAVE_N;
	p.leave_frac = 0.25;
	struct swarm_sim_result r = run(&p);

	cr_assert_eq(r.left, LEAVE_N / 4);
	cr_assert_eq(r.stayers, LEAVE_N - LEAVE_N / 4);
	cr_assert(r.all_stayers_finished, "%u of %u stayers finished", r.stayers_finished, r.stayers);
	cr_assert_eq(r.protocol_closes, 0);
}
