/* swarm-sim: swarm downloads on the real peer engine, in virtual time.
 *
 *   swarm-sim --scenario NAME [--nodes N[,N...]] [--size BYTES] [--up RATE]
 *             [--seed-up RATE] [--down RATE] [--lat-us MIN[-MAX]]
 *             [--arrive-ms T] [--leave-frac P] [--slow-frac P] [--slow-div D]
 *             [--malicious M] [--seed S] [--runs R] [--max-time-s T] [--diag]
 *             [--refind-ms EARLY,LATER] [--timer-min-ms T] [--upload-slots K]
 *             [--inflight K] [--move-ms T] [--no-super-seed] [--progress] [--trace FILE]
 * (the last four set the engines' options: the defaults are the engine's)
 *
 * With --runs R every N runs R times (seeds S, S+1, ...): the row shows the
 * means, D as "mean (min-max)".
 * Scenarios (each a markdown table, one row per N):
 *   calibration  F = 8 MiB, every uplink 2 MiB/s, no download cap, 0.1 ms
 *                links: the set-up of `make bench` (bench/distribution.py)
 *   scale        N = 100, 1,000, 10,000 on 5-50 ms links
 *   hetero       20% of the downloaders upload at 1/10th of the rate
 *   arrivals     downloaders start uniformly over the first 10 s
 *   departures   20% of the downloaders leave for good mid-download
 *   seed-leaves  the seed leaves once every chunk has left it once
 * Rates take K/M/G suffixes (powers of 1024).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include "util/ratelimit.h"
#include "swarm_sim.h"

#define MAX_SIZES 16
#define DEFAULT_SEED 20240601u
#define MIB (1024.0 * 1024.0)
#define WAN_LAT_MIN_US 5000
#define WAN_LAT_MAX_US 50000
#define ARRIVE_MS 10000
#define SHARE_20 0.2

struct scenario {
	const char *name;
	const char *what;
	uint32_t sizes[MAX_SIZES];
	uint32_t nsizes;
	bool wan;          /* 5-50 ms links instead of 0.1 ms */
	double slow_frac;
	uint32_t arrive_ms;
	double leave_frac;
	bool seed_leaves;
};

static const struct scenario scenarios[] = {
	{ "calibration", "the `make bench` set-up: loopback-like links (0.1 ms)", { 1, 2, 4, 8, 16, 32 }, 6,
	  false, 0, 0, 0, false },
	{ "scale", "every uplink 2 MiB/s, links 5-50 ms", { 100, 1000, 10000 }, 3, true, 0, 0, 0, false },
	{ "hetero", "20% of the downloaders upload at 1/10th of the rate", { 100, 1000, 10000 }, 3, true, SHARE_20,
	  0, 0, false },
	{ "arrivals", "downloaders start uniformly over the first 10 s", { 100, 1000, 10000 }, 3, true, 0,
	  ARRIVE_MS, 0, false },
	{ "departures", "20% of the downloaders leave for good after 10-90% of their chunks", { 100, 1000, 10000 },
	  3, true, 0, 0, SHARE_20, false },
	{ "seed-leaves", "the seed leaves once every chunk has left it once", { 100, 1000, 10000 }, 3, true, 0, 0, 0,
	  true },
};
#define NSCENARIOS (sizeof(scenarios) / sizeof(scenarios[0]))

static void usage(FILE *f)
{
	fprintf(f, "usage: swarm-sim --scenario NAME [--nodes N[,N...]] [--size BYTES] [--up RATE] [--seed-up RATE]\n"
		   "                 [--down RATE] [--lat-us MIN[-MAX]] [--arrive-ms T] [--leave-frac P]\n"
		   "                 [--slow-frac P] [--slow-div D] [--malicious M] [--seed S] [--runs R]\n"
		   "                 [--max-time-s T] [--refind-ms EARLY,LATER] [--timer-min-ms T]\n"
		   "                 [--upload-slots K] [--inflight K] [--move-ms T] [--no-super-seed] [--diag] [--check]\n"
		   "                 [--progress] [--trace FILE]\n"
		   "scenarios:");
	for (size_t i = 0; i < NSCENARIOS; i++)
		fprintf(f, " %s", scenarios[i].name);
	fprintf(f, "\n");
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *end)
		return -1;
	*out = v;
	return 0;
}

static int parse_double(const char *s, double *out)
{
	char *end;
	errno = 0;
	*out = strtod(s, &end);
	return errno || end == s || *end ? -1 : 0;
}

static int parse_sizes(const char *s, uint32_t *sizes, uint32_t *n)
{
	*n = 0;
	while (*s) {
		char *end;
		errno = 0;
		unsigned long v = strtoul(s, &end, 10);
		if (errno || end == s || v == 0 || v > 1000000 || *n == MAX_SIZES)
			return -1;
		sizes[(*n)++] = (uint32_t)v;
		if (*end == ',')
			end++;
		else if (*end)
			return -1;
		s = end;
	}
	return *n ? 0 : -1;
}

static double seconds_since(const struct timespec *t0)
{
	struct timespec t1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

static long peak_rss_mib(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss / 1024;
}

/* One table row: the runs of one N. */
struct row {
	uint32_t runs, unfinished_runs;
	double d_sum, d_min, d_max, bound, mean_sum, max_sum, copies_sum, down_sum, idle_sum, util_sum;
	uint64_t msgs_sum;
	uint32_t done, stayed, left, held, nchunks;
	bool capped, stalled;
};

static void row_add(struct row *w, const struct swarm_sim_result *r)
{
	double d = r->all_stayers_finished ? r->dist_s : r->end_s;
	if (!w->runs || d < w->d_min)
		w->d_min = d;
	if (!w->runs || d > w->d_max)
		w->d_max = d;
	w->runs++;
	w->unfinished_runs += !r->all_stayers_finished;
	w->d_sum += d;
	w->bound = r->bound_s;
	w->mean_sum += r->mean_s;
	w->max_sum += r->max_s;
	w->copies_sum += r->source_copies;
	w->idle_sum += r->seed_idle_s;
	w->util_sum += r->up_util;
	w->down_sum += r->down_ratio;
	w->msgs_sum += r->msgs;
	w->done += r->stayers_finished;
	w->stayed += r->stayers;
	w->left += r->left;
	w->held += r->chunks_held;
	w->nchunks += r->nchunks;
	w->capped |= r->capped;
	w->stalled |= r->stalled;
}

static void row_print(const struct row *w, uint32_t n, double wall)
{
	if (!w->runs)
		return;
	double k = w->runs;
	char dcol[64];
	const char *more = w->unfinished_runs ? "> " : "";
	if (w->runs > 1)
		snprintf(dcol, sizeof(dcol), "%s%.2f (%.2f-%.2f)", more, w->d_sum / k, w->d_min, w->d_max);
	else
		snprintf(dcol, sizeof(dcol), "%s%.2f", more, w->d_sum);
	const char *why = w->capped ? " (time cap)" : w->stalled ? " (stalled)" : "";
	printf("| %u | %s | %.2f | %.2fx | %.2f | %.2f | %.2f | %.2f | %.2f | %.0f | %u / %u%s | %u | %u / %u | %.2f | %.1f | %ld |\n", n,
	       dcol, w->bound, w->d_sum / k / w->bound, w->mean_sum / k, w->max_sum / k, w->copies_sum / k,
	       w->idle_sum / k, w->util_sum / k, (double)w->msgs_sum / k, w->done, w->stayed, why, w->left, w->held, w->nchunks, w->down_sum / k, wall,
	       peak_rss_mib());
	fflush(stdout);
}

int main(int argc, char **argv)
{
	const struct scenario *sc = NULL;
	struct swarm_sim_params base;
	uint32_t sizes[MAX_SIZES], nsizes = 0;
	bool lat_set = false, diag = false, check = false;
	uint32_t runs = 1;
	uint64_t v;
	double d;

	memset(&base, 0, sizeof(base));
	base.seed = DEFAULT_SEED;
	base.slow_frac = -1;
	base.leave_frac = -1;
	base.arrive_ms = UINT32_MAX;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
		bool ok = true;
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(a, "--diag")) {
			diag = true;
			continue;
		} else if (!strcmp(a, "--check")) {
			check = true;
			continue;
		} else if (!strcmp(a, "--no-super-seed")) {
			base.no_super_seed = true;
			continue;
		} else if (!strcmp(a, "--progress")) {
			base.progress = stderr;
			continue;
		}
		if (!val) {
			fprintf(stderr, "swarm-sim: %s needs a value\n", a);
			usage(stderr);
			return 2;
		}
		i++;
		if (!strcmp(a, "--scenario")) {
			for (size_t j = 0; j < NSCENARIOS; j++)
				if (!strcmp(val, scenarios[j].name))
					sc = &scenarios[j];
			ok = sc != NULL;
		} else if (!strcmp(a, "--nodes")) {
			ok = parse_sizes(val, sizes, &nsizes) == 0;
		} else if (!strcmp(a, "--size")) {
			ok = pn_parse_rate(val, &base.file_size) == 0 && base.file_size > 0;
		} else if (!strcmp(a, "--up")) {
			ok = pn_parse_rate(val, &base.node_up) == 0 && base.node_up > 0;
		} else if (!strcmp(a, "--seed-up")) {
			ok = pn_parse_rate(val, &base.seed_up) == 0 && base.seed_up > 0;
		} else if (!strcmp(a, "--down")) {
			ok = pn_parse_rate(val, &base.down) == 0;
		} else if (!strcmp(a, "--lat-us")) {
			unsigned lo, hi;
			int n = sscanf(val, "%u-%u", &lo, &hi);
			ok = n >= 1;
			base.lat_min_us = lo;
			base.lat_max_us = n == 2 ? hi : lo;
			lat_set = true;
		} else if (!strcmp(a, "--arrive-ms")) {
			ok = parse_u64(val, &v) == 0 && v < UINT32_MAX;
			base.arrive_ms = (uint32_t)v;
		} else if (!strcmp(a, "--leave-frac")) {
			ok = parse_double(val, &base.leave_frac) == 0 && base.leave_frac >= 0 && base.leave_frac <= 1;
		} else if (!strcmp(a, "--slow-frac")) {
			ok = parse_double(val, &base.slow_frac) == 0 && base.slow_frac >= 0 && base.slow_frac <= 1;
		} else if (!strcmp(a, "--slow-div")) {
			ok = parse_u64(val, &v) == 0 && v > 0 && v < 1000000;
			base.slow_div = (uint32_t)v;
		} else if (!strcmp(a, "--malicious")) {
			ok = parse_u64(val, &v) == 0 && v < 1000;
			base.malicious = (uint32_t)v;
		} else if (!strcmp(a, "--seed")) {
			ok = parse_u64(val, &base.seed) == 0;
		} else if (!strcmp(a, "--trace")) {
			base.trace = strcmp(val, "-") ? fopen(val, "w") : stdout;
			ok = base.trace != NULL;
		} else if (!strcmp(a, "--refind-ms")) {
			unsigned early, late;
			ok = sscanf(val, "%u,%u", &early, &late) == 2 && early > 0 && late > 0;
			base.refind_early_ms = early;
			base.refind_ms = late;
		} else if (!strcmp(a, "--upload-slots")) {
			ok = parse_u64(val, &v) == 0 && v > 0 && v < 1000;
			base.upload_slots = (uint32_t)v;
		} else if (!strcmp(a, "--inflight")) {
			ok = parse_u64(val, &v) == 0 && v > 0 && v < 1000;
			base.inflight_node = (uint32_t)v;
		} else if (!strcmp(a, "--move-ms")) {
			ok = parse_u64(val, &v) == 0;
			base.move_ms = v == 0 ? UINT32_MAX : (uint32_t)(v < UINT32_MAX ? v : UINT32_MAX - 1);
		} else if (!strcmp(a, "--timer-min-ms")) {
			ok = parse_u64(val, &v) == 0 && v < 10000;
			base.timer_min_ms = (uint32_t)v;
		} else if (!strcmp(a, "--runs")) {
			ok = parse_u64(val, &v) == 0 && v >= 1 && v <= 1000;
			runs = (uint32_t)v;
		} else if (!strcmp(a, "--max-time-s")) {
			ok = parse_double(val, &d) == 0 && d > 0 && d < 1e7;
			base.max_time_ms = (uint64_t)(d * 1000);
		} else {
			ok = false;
		}
		if (!ok) {
			fprintf(stderr, "swarm-sim: bad %s %s\n", a, val);
			usage(stderr);
			return 2;
		}
	}
	if (!sc) {
		fprintf(stderr, "swarm-sim: --scenario is required\n");
		usage(stderr);
		return 2;
	}
	if (!nsizes) {
		memcpy(sizes, sc->sizes, sizeof(sizes));
		nsizes = sc->nsizes;
	}
	if (!lat_set && sc->wan) {
		base.lat_min_us = WAN_LAT_MIN_US;
		base.lat_max_us = WAN_LAT_MAX_US;
	}
	if (base.slow_frac < 0)
		base.slow_frac = sc->slow_frac;
	if (base.leave_frac < 0)
		base.leave_frac = sc->leave_frac;
	if (base.arrive_ms == UINT32_MAX)
		base.arrive_ms = sc->arrive_ms;
	base.seed_leaves = sc->seed_leaves;
	base.diag = diag ? stderr : NULL;
	base.check = check;

	uint64_t F = base.file_size ? base.file_size : 8u * 1024 * 1024;
	printf("#### swarm-sim %s: %s\n\n", sc->name, sc->what);
	printf("F = %.1f MiB, u_s = %.2f MiB/s, u = %.2f MiB/s, d = %s, links %.1f-%.1f ms one way, seed %" PRIu64 "\n\n",
	       F / MIB, (base.seed_up ? base.seed_up : 2 * MIB) / MIB, (base.node_up ? base.node_up : 2 * MIB) / MIB,
	       base.down ? "capped" : "uncapped", (base.lat_min_us ? base.lat_min_us : 100) / 1e3,
	       (base.lat_max_us ? base.lat_max_us : 100) / 1e3, base.seed);
	printf("| N | D (s) | bound (s) | ratio | mean node (s) | max node (s) | source copies | seed idle (s) | "
	       "upload used | messages | done / stayed | left | chunks left in swarm | bytes in / F | wall (s) | "
	       "peak RSS (MiB) |\n");
	printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
	fflush(stdout);
	int status = 0;
	for (uint32_t i = 0; i < nsizes; i++) {
		struct row row;
		struct timespec t0;
		memset(&row, 0, sizeof(row));
		clock_gettime(CLOCK_MONOTONIC, &t0);
		for (uint32_t k = 0; k < runs; k++) {
			struct swarm_sim_params p = base;
			struct swarm_sim_result r;
			p.nodes = sizes[i];
			p.seed = base.seed + k;
			int rc = swarm_sim_run(&p, &r);
			if (rc != 0) {
				fprintf(stderr, "swarm-sim: N = %u, seed %" PRIu64 ": the run failed (%d)\n", p.nodes, p.seed, rc);
				status = 1;
				continue;
			}
			if (r.engine_oddities)
				fprintf(stderr, "swarm-sim: N = %u, seed %" PRIu64 ": %" PRIu64 " engine oddities (run with --diag)\n",
					p.nodes, p.seed, r.engine_oddities);
			if (r.protocol_closes && !p.malicious)
				fprintf(stderr, "swarm-sim: N = %u, seed %" PRIu64 ": honest engines closed %" PRIu64
					" connections for a protocol error\n", p.nodes, p.seed, r.protocol_closes);
			if (diag)
				fprintf(stderr, "swarm-sim: N = %u, seed %" PRIu64 ": %" PRIu64 " connections dialled, %" PRIu64
					" accepted, D %.3f s\n", p.nodes, p.seed, r.links, r.connects, r.dist_s);
			if (!r.all_stayers_finished)
				status = 1;
			row_add(&row, &r);
		}
		row_print(&row, sizes[i], seconds_since(&t0));
	}
	printf("\n");
	return status;
}
