/* fault-sim: deterministic fault simulation of the peer engine and the
 * directory core (sim/swarm_sim.c), one swarm per seed.
 *
 *   build/fault-sim [--seeds COUNT] [--first S]     run seeds S .. S+COUNT-1
 *   build/fault-sim --seed S [--diag] [--trace F]   replay one seed, saying why it failed
 *
 * Each seed draws a swarm (4..16 downloaders, 1..4 MiB, 1..50 ms links,
 * sometimes a corrupting provider or downloaders that leave) and a fault plan
 * (connection resets, stalled uplinks, crashes and restarts of downloaders
 * and of the seed, a partition in two halves, a directory restart), all
 * within the first seconds. The run checks after every step of every engine
 * that its running totals and indexes agree with a recount (engine_check),
 * that it holds exactly the connections the driver holds, that nothing is
 * sent on a closed connection and that a chunk is handed over for
 * verification only from the connection it just came on; at the end, that
 * every downloader that stayed finished, none received a chunk twice, and no
 * message broke the protocol. Exit status 1 if any seed failed.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "proto/prng.h"
#include "sim.h"
#include "swarm_sim.h"

#define FS_DEFAULT_SEEDS 1000
#define FS_MIB (1024u * 1024u)
#define FS_MAX_TIME_MS 600000ull   /* virtual: far past any fault */
#define FS_MAX_EVENTS 50000000ull

static void usage(FILE *f)
{
	fputs("usage: fault-sim [--seeds COUNT] [--first S] [--quiet]\n"
	      "       fault-sim --seed S [--diag] [--trace FILE]\n"
	      "Runs one simulated swarm per seed with faults drawn from the seed and checks\n"
	      "the engine's invariants; a failing seed replays exactly with --seed S.\n",
	      f);
}

/* The swarm and the fault plan of one seed. */
static void draw(uint64_t seed, struct swarm_sim_params *p)
{
	struct pn_prng r;
	pn_prng_seed(&r, seed ^ 0x66617573696dull);
	memset(p, 0, sizeof(*p));
	p->seed = seed;
	p->nodes = 4 + pn_prng_below(&r, 13);
	p->file_size = (uint64_t)(1 + pn_prng_below(&r, 4)) * FS_MIB - pn_prng_below(&r, 4096);
	p->seed_up = (uint64_t)(1 + pn_prng_below(&r, 4)) * FS_MIB;
	p->node_up = (uint64_t)(1 + pn_prng_below(&r, 4)) * FS_MIB;
	p->lat_min_us = 1000 + pn_prng_below(&r, 5000);
	p->lat_max_us = p->lat_min_us + pn_prng_below(&r, 45000);
	p->malicious = pn_prng_below(&r, 4) == 0;
	p->leave_frac = pn_prng_below(&r, 5) == 0 ? 0.2 : 0;
	p->arrive_ms = pn_prng_below(&r, 2) ? pn_prng_below(&r, 3000) : 0;
	struct swarm_sim_faults *f = &p->faults;
	f->window_ms = 1000 + pn_prng_below(&r, 9000);
	f->resets = pn_prng_below(&r, 7);
	f->stalls = pn_prng_below(&r, 4);
	f->crashes = pn_prng_below(&r, 4);
	f->seed_crash = f->crashes && pn_prng_below(&r, 5) == 0;
	f->down_ms = 500 + pn_prng_below(&r, 4000);
	f->partitions = pn_prng_below(&r, 10) < 3;
	f->part_ms = 1000 + pn_prng_below(&r, 6000);
	f->dir_restarts = pn_prng_below(&r, 10) < 3;
	p->max_time_ms = FS_MAX_TIME_MS;
	p->max_events = FS_MAX_EVENTS;
	p->check = true;
}

/* NULL if the run kept every invariant, else the first broken one. */
static const char *verdict(int rc, const struct swarm_sim_result *r)
{
	if (rc != 0)
		return "the simulator failed (out of memory or bad parameters)";
	if (r->engine_oddities)
		return "an engine or driver invariant broke (replay with --diag)";
	if (r->protocol_closes)
		return "a message broke the protocol";
	if (r->capped)
		return "the run hit its time or event cap";
	if (r->stalled)
		return "the swarm stalled: downloads that could finish did not";
	if (!r->all_stayers_finished)
		return "a downloader that stayed did not finish";
	return NULL;
}

/* The flood core's part of a seed: an overlay of 20..200 nodes on which 10
 * items live, queries from random nodes while messages are lost at a rate
 * drawn from the seed (0 in a third of the seeds). Checked: every query ends
 * (QUERY_DONE), the cores' counters account for every message the network
 * carried or lost, none had to drop an action for want of room, and without
 * loss every query for an item within reach is answered. */
struct flood_plan {
	struct sim_params p;
	uint32_t replication, queries;
	uint8_t ttl;
	bool ring;
};

static void draw_flood(uint64_t seed, struct flood_plan *f)
{
	struct pn_prng r;
	pn_prng_seed(&r, seed ^ 0x666c6f6f64ull);
	memset(f, 0, sizeof(*f));
	f->p.nodes = 20 + pn_prng_below(&r, 181);
	f->p.seed = seed;
	f->p.loss = pn_prng_below(&r, 3) == 0 ? 0 : (double)(1 + pn_prng_below(&r, 30)) / 100;
	f->replication = 1 + pn_prng_below(&r, 3);
	f->queries = 10;
	f->ttl = 7;
	f->ring = pn_prng_below(&r, 2);
}

static const char *run_flood(const struct flood_plan *f, uint32_t *answered)
{
	struct sim *s = sim_new(&f->p);
	if (!s)
		return "the flood simulator failed to start";
	const char *bad = NULL;
	struct sim_cell cell;
	if (sim_items_random(s, 10, f->replication) != 0 ||
	    sim_cell_run(s, f->queries, f->ttl, f->ring, f->ring ? 1 : 0, &cell) != 0)
		bad = "a flood query did not end";
	struct flood_stats st;
	sim_core_stats(s, &st);
	*answered = bad ? 0 : cell.answered;
	if (!bad && st.queries_sent + st.hits_sent != sim_msgs_sent(s))
		bad = "the flood cores' counters disagree with the messages carried";
	else if (!bad && st.actions_dropped)
		bad = "a flood core dropped an action for want of room";
	else if (!bad && f->p.loss == 0 && cell.answered != cell.queries)
		bad = "a flood query without loss went unanswered";
	sim_free(s);
	return bad;
}

static void describe(FILE *f, const struct swarm_sim_params *p)
{
	const struct swarm_sim_faults *x = &p->faults;
	fprintf(f, "N=%u F=%" PRIu64 " B u_s=%" PRIu64 " u=%" PRIu64 " lat=%u-%u us malicious=%u leave=%.1f arrive=%u ms; "
		   "faults in %u ms: %u resets, %u stalls, %u crashes%s (down %u ms), %u partitions (%u ms), %u directory restarts",
		p->nodes, p->file_size, p->seed_up, p->node_up, p->lat_min_us, p->lat_max_us, p->malicious, p->leave_frac,
		p->arrive_ms, x->window_ms, x->resets, x->stalls, x->crashes, x->seed_crash ? " (one the seed's)" : "",
		x->down_ms, x->partitions, x->part_ms, x->dir_restarts);
}

int main(int argc, char **argv)
{
	uint64_t first = 1, count = FS_DEFAULT_SEEDS, one = 0;
	bool single = false, diag = false, quiet = false;
	const char *trace_path = NULL;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		char *end = NULL;
		if ((!strcmp(a, "--seeds") || !strcmp(a, "--first") || !strcmp(a, "--seed")) && i + 1 < argc) {
			unsigned long long v = strtoull(argv[++i], &end, 10);
			if (!end || *end || argv[i][0] == '-' || argv[i][0] == '\0') {
				fprintf(stderr, "fault-sim: bad number '%s' for %s\n", argv[i], a);
				return 2;
			}
			if (!strcmp(a, "--seeds"))
				count = v;
			else if (!strcmp(a, "--first"))
				first = v;
			else {
				one = v;
				single = true;
			}
		} else if (!strcmp(a, "--diag")) {
			diag = true;
		} else if (!strcmp(a, "--quiet")) {
			quiet = true;
		} else if (!strcmp(a, "--trace") && i + 1 < argc) {
			trace_path = argv[++i];
		} else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			return 0;
		} else {
			fprintf(stderr, "fault-sim: unknown argument '%s'\n", a);
			usage(stderr);
			return 2;
		}
	}
	if (single) {
		first = one;
		count = 1;
	}
	FILE *trace = NULL;
	if (trace_path && !(trace = fopen(trace_path, "w"))) {
		fprintf(stderr, "fault-sim: cannot write %s\n", trace_path);
		return 2;
	}
	uint64_t failed = 0, faults = 0, restarts = 0, events = 0, fqueries = 0, fanswered = 0;
	clock_t t0 = clock();
	for (uint64_t seed = first; seed < first + count; seed++) {
		struct swarm_sim_params p;
		struct swarm_sim_result r;
		draw(seed, &p);
		p.diag = diag ? stderr : NULL;
		p.trace = trace;
		int rc = swarm_sim_run(&p, &r);
		faults += r.faults;
		restarts += r.restarts;
		events += r.events;
		const char *bad = verdict(rc, &r);
		struct flood_plan fp;
		uint32_t answered = 0;
		draw_flood(seed, &fp);
		const char *fbad = run_flood(&fp, &answered);
		fqueries += fp.queries;
		fanswered += answered;
		if (fbad) {
			failed += !bad;
			printf("seed %" PRIu64 ": FAIL (flood): %s; %u nodes, loss %.2f, %u copies of each item, %s; "
			       "replay: fault-sim --seed %" PRIu64 "\n",
			       seed, fbad, fp.p.nodes, fp.p.loss, fp.replication, fp.ring ? "expanding ring" : "flood",
			       seed);
		}
		if (bad) {
			failed++;
			printf("seed %" PRIu64 ": FAIL: %s at %.1f s virtual (%u/%u stayers done, %" PRIu64
			       " oddities); replay: fault-sim --seed %" PRIu64 " --diag\n  ",
			       seed, bad, r.end_s, r.stayers_finished, r.stayers, r.engine_oddities, seed);
			describe(stdout, &p);
			putchar('\n');
		} else if (single || !quiet) {
			if (single) {
				printf("seed %" PRIu64 ": ok, done at %.1f s virtual\n  ", seed, r.dist_s);
				describe(stdout, &p);
				putchar('\n');
			}
		}
		fflush(stdout);
	}
	if (trace)
		fclose(trace);
	printf("fault-sim: %" PRIu64 " seeds (%" PRIu64 "..%" PRIu64 "), %" PRIu64 " failed; swarm: %" PRIu64
	       " faults injected, %" PRIu64 " restarts, %" PRIu64 " events; flood: %" PRIu64 " queries, %" PRIu64
	       " answered; %.1f s CPU\n",
	       count, first, first + count - 1, failed, faults, restarts, events, fqueries, fanswered,
	       (double)(clock() - t0) / CLOCKS_PER_SEC);
	return failed ? 1 : 0;
}
