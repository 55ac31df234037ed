/* flood-sim: figures for query flooding at a scale no test machine holds.
 *
 * Drives src/proto/flood.c through the simulator in sim.c and prints
 * markdown tables: messages per query and share of queries answered against
 * hop limit, item popularity and network size, plain flood beside the
 * expanding ring, and the directory's single round trip.
 *
 *   flood-sim [--seed S] [--queries Q] [--items M] [--loss P] [--quick]
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "proto/flood.h"
#include "sim.h"

#define DEFAULT_SEED 20240601u
#define DEFAULT_QUERIES 200
#define DEFAULT_ITEMS 100
#define RING_WANT 1            /* one provider is enough to start a download */
#define DIRECTORY_MSGS 2       /* FIND_PROVIDERS and its answer */
#define TTL_MIN 1
#define TTL_MAX FLOOD_MAX_TTL
#define TTL_SWEEP 5            /* the default hop limit */
#define PCT_ONE 1              /* "popular": 1% and 5% of N hold it */
#define PCT_FIVE 5
#define QUICK_QUERIES 40
#define LOSS_SWEEP_NODES 1000
#define LOAD_NODES 1000
#define LOAD_MS 20000          /* virtual time queries keep arriving */

static const uint32_t sizes[] = { 1000, 2000, 5000, 10000 };
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))
#define BIG_SIZES_FROM 2       /* sizes[i], i >= this, are skipped by --quick */

enum repl { R_ONE, R_PCT1, R_PCT5, NREPL };
static const char *const repl_name[NREPL] = { "r = 1", "r = 1%", "r = 5%" };

struct cellres {
	bool have;
	struct sim_cell c;
};

/* [size][replication][ttl][ring] */
static struct cellres res[NSIZES][NREPL][TTL_MAX + 1][2];
static double loss_rates[] = { 0.01, 0.05, 0.20 };
#define NLOSS (sizeof(loss_rates) / sizeof(loss_rates[0]))
static struct cellres loss_res[NLOSS][NREPL][2];
static const double load_qps[] = { 5, 10, 20, 40, 80 };
#define NLOAD (sizeof(load_qps) / sizeof(load_qps[0]))
static struct sim_load load_res[NLOAD][2];

struct opts {
	uint64_t seed;
	uint32_t queries;
	uint32_t items;
	double loss;
	bool quick;
};

static uint32_t replicas(enum repl r, uint32_t n)
{
	switch (r) {
	case R_ONE:
		return 1;
	case R_PCT1:
		return n * PCT_ONE / 100;
	default:
		return n * PCT_FIVE / 100;
	}
}

static bool is_end_size(uint32_t n)
{
	return n == sizes[0] || n == sizes[NSIZES - 1];
}

/* Which cells the tables need at size n. */
static bool needed(uint32_t n, enum repl r, unsigned ttl, bool ring)
{
	bool e1 = is_end_size(n) && r != R_PCT5 && !ring;              /* ttl sweep */
	bool e2 = is_end_size(n) && (ttl == TTL_SWEEP || ttl == TTL_MAX); /* ring vs flood */
	bool e3 = ttl == TTL_SWEEP && r != R_PCT5;                     /* size sweep */

	return e1 || e2 || e3;
}

static void die(const char *what, int rc)
{
	fprintf(stderr, "flood-sim: %s failed (%d)\n", what, rc);
	exit(1);
}

static struct sim *build(const struct opts *o, uint32_t n, double loss)
{
	struct sim_params p = { .nodes = n, .loss = loss, .seed = o->seed + n };
	struct sim *s = sim_new(&p);

	if (!s) {
		fprintf(stderr, "flood-sim: cannot build a %u-node overlay (out of memory?)\n", n);
		exit(1);
	}
	return s;
}

/* The cores' own counters must agree with ours; kept for the last table. */
static struct flood_stats core_stats[NSIZES];
static uint64_t core_queries[NSIZES];

static void check_counts(const struct sim *s, uint32_t n, struct flood_stats *st)
{
	uint64_t ours = sim_msgs_sent(s);

	sim_core_stats(s, st);
	if (ours != st->queries_sent + st->hits_sent)
		fprintf(stderr, "flood-sim: N=%u: %" PRIu64 " messages sent but the cores count %" PRIu64 "\n", n,
			ours, st->queries_sent + st->hits_sent);
	if (st->rate_limited || st->actions_dropped)
		fprintf(stderr, "flood-sim: N=%u: %" PRIu64 " queries rate-limited, %" PRIu64 " actions dropped\n",
			n, st->rate_limited, st->actions_dropped);
}

static void run_size(const struct opts *o, unsigned si, struct sim_degree *deg)
{
	uint32_t n = sizes[si];
	struct sim *s = build(o, n, o->loss);
	clock_t t0 = clock();

	*deg = sim_degree_stats(s);
	for (unsigned r = 0; r < NREPL; r++) {
		bool any = false;

		for (unsigned t = TTL_MIN; t <= TTL_MAX; t++)
			any |= needed(n, r, t, false) || needed(n, r, t, true);
		if (!any)
			continue;
		int rc = sim_items_random(s, o->items, replicas(r, n));

		if (rc)
			die("sim_items_random", rc);
		for (unsigned t = TTL_MIN; t <= TTL_MAX; t++) {
			for (int ring = 0; ring < 2; ring++) {
				if (!needed(n, r, t, ring))
					continue;
				struct cellres *c = &res[si][r][t][ring];

				sim_queries_seed(s, o->seed + r);
				rc = sim_cell_run(s, o->queries, (uint8_t)t, ring, RING_WANT, &c->c);
				if (rc)
					die("sim_cell_run", rc);
				c->have = true;
				core_queries[si] += c->c.queries;
			}
		}
	}
	check_counts(s, n, &core_stats[si]);
	fprintf(stderr, "flood-sim: N=%u done in %.1f s CPU\n", n, (double)(clock() - t0) / CLOCKS_PER_SEC);
	sim_free(s);
}

static void run_loss(const struct opts *o)
{
	for (unsigned li = 0; li < NLOSS; li++) {
		struct sim *s = build(o, LOSS_SWEEP_NODES, loss_rates[li]);

		for (unsigned r = 0; r < R_PCT5; r++) {
			int rc = sim_items_random(s, o->items, replicas(r, LOSS_SWEEP_NODES));

			if (rc)
				die("sim_items_random", rc);
			for (int ring = 0; ring < 2; ring++) {
				sim_queries_seed(s, o->seed + r);
				rc = sim_cell_run(s, o->queries, TTL_SWEEP, ring, RING_WANT, &loss_res[li][r][ring].c);
				if (rc)
					die("sim_cell_run", rc);
				loss_res[li][r][ring].have = true;
			}
		}
		struct flood_stats st;

		check_counts(s, LOSS_SWEEP_NODES, &st);
		sim_free(s);
	}
}

/* Many queries at once: the per-neighbour rate limit against the whole
 * network's query rate. A fresh overlay each time: drops cut links. */
static void run_load(const struct opts *o)
{
	for (unsigned li = 0; li < NLOAD; li++) {
		for (int ring = 0; ring < 2; ring++) {
			struct sim *s = build(o, LOAD_NODES, o->loss);
			int rc = sim_items_random(s, o->items, replicas(R_PCT1, LOAD_NODES));

			if (rc)
				die("sim_items_random", rc);
			sim_queries_seed(s, o->seed + R_PCT1);
			rc = sim_load_run(s, load_qps[li], LOAD_MS, TTL_SWEEP, ring, RING_WANT, &load_res[li][ring]);
			if (rc)
				die("sim_load_run", rc);
			sim_free(s);
		}
	}
}

/* ---------------- output ---------------- */

static double per_query(const struct sim_cell *c)
{
	return c->queries ? (double)c->msgs / c->queries : 0;
}

static double answered_pct(const struct sim_cell *c)
{
	return c->queries ? 100.0 * c->answered / c->queries : 0;
}

static void print_msgs_ans(const struct cellres *c)
{
	if (!c->have)
		printf(" – | – |");
	else
		printf(" %.0f | %.0f%% |", per_query(&c->c), answered_pct(&c->c));
}

static void print_median(const struct cellres *c)
{
	if (c->c.answered)
		printf(" %" PRIu64 " |", c->c.first_hit_median_ms);
	else
		printf(" – |");
}

static void table_ttl(void)
{
	printf("\n### 1. Plain flood: messages per query and share answered, against the hop limit\n\n");
	printf("| ttl |");
	for (unsigned si = 0; si < NSIZES; si++) {
		if (!is_end_size(sizes[si]))
			continue;
		printf(" N=%u reached |", sizes[si]);
		for (unsigned r = 0; r < R_PCT5; r++)
			printf(" N=%u %s msgs | answered |", sizes[si], repl_name[r]);
	}
	printf("\n|---:|");
	for (unsigned si = 0; si < NSIZES; si++)
		if (is_end_size(sizes[si]))
			printf("---:|---:|---:|---:|---:|");
	printf("\n");
	for (unsigned t = TTL_MIN; t <= TTL_MAX; t++) {
		printf("| %u |", t);
		for (unsigned si = 0; si < NSIZES; si++) {
			if (!is_end_size(sizes[si]))
				continue;
			const struct cellres *c = &res[si][R_ONE][t][0];

			if (c->have)
				printf(" %.0f |", (double)c->c.reached / c->c.queries);
			else
				printf(" – |");
			for (unsigned r = 0; r < R_PCT5; r++)
				print_msgs_ans(&res[si][r][t][0]);
		}
		printf("\n");
	}
}

static void table_ring(void)
{
	printf("\n### 2. Expanding ring against plain flood (ring: ttl 1, 2, 3, 5, 7 up to the limit; stops at %u hit)\n\n",
	       RING_WANT);
	printf("| N | item | limit | flood msgs | answered | first hit ms | ring msgs | answered | first hit ms | ring/flood |\n");
	printf("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
	for (unsigned si = 0; si < NSIZES; si++) {
		if (!is_end_size(sizes[si]))
			continue;
		for (unsigned r = 0; r < NREPL; r++) {
			for (unsigned t = TTL_SWEEP; t <= TTL_MAX; t += TTL_MAX - TTL_SWEEP) {
				const struct cellres *f = &res[si][r][t][0], *g = &res[si][r][t][1];

				if (!f->have || !g->have)
					continue;
				printf("| %u | %s (%u) | %u |", sizes[si], repl_name[r], replicas(r, sizes[si]), t);
				print_msgs_ans(f);
				print_median(f);
				print_msgs_ans(g);
				print_median(g);
				printf(" %.2f |\n", per_query(&f->c) ? per_query(&g->c) / per_query(&f->c) : 0);
			}
		}
	}
}

static void table_size(void)
{
	printf("\n### 3. Messages per query against network size, hop limit %u; 4. the directory beside them\n\n",
	       TTL_SWEEP);
	printf("| N | flood r = 1 msgs | answered | flood r = 1%% msgs | answered | ring r = 1%% msgs | answered | directory msgs |\n");
	printf("|---:|---:|---:|---:|---:|---:|---:|---:|\n");
	for (unsigned si = 0; si < NSIZES; si++) {
		if (!res[si][R_ONE][TTL_SWEEP][0].have)
			continue;
		printf("| %u |", sizes[si]);
		print_msgs_ans(&res[si][R_ONE][TTL_SWEEP][0]);
		print_msgs_ans(&res[si][R_PCT1][TTL_SWEEP][0]);
		print_msgs_ans(&res[si][R_PCT1][TTL_SWEEP][1]);
		printf(" %d |\n", DIRECTORY_MSGS);
	}
}

static void table_loss(const struct opts *o)
{
	printf("\n### 5. Message loss, N = %u, hop limit %u\n\n", LOSS_SWEEP_NODES, TTL_SWEEP);
	printf("| loss | flood r = 1 msgs | answered | flood r = 1%% msgs | answered | ring r = 1%% msgs | answered |\n");
	printf("|---:|---:|---:|---:|---:|---:|---:|\n");
	if (o->loss == 0 && res[0][R_ONE][TTL_SWEEP][0].have) {
		printf("| 0%% |");
		print_msgs_ans(&res[0][R_ONE][TTL_SWEEP][0]);
		print_msgs_ans(&res[0][R_PCT1][TTL_SWEEP][0]);
		print_msgs_ans(&res[0][R_PCT1][TTL_SWEEP][1]);
		printf("\n");
	}
	for (unsigned li = 0; li < NLOSS; li++) {
		printf("| %g%% |", 100 * loss_rates[li]);
		print_msgs_ans(&loss_res[li][R_ONE][0]);
		print_msgs_ans(&loss_res[li][R_PCT1][0]);
		print_msgs_ans(&loss_res[li][R_PCT1][1]);
		printf("\n");
	}
}

static void table_core(void)
{
	printf("\n### 6. What the flood cores counted, over every query at each size\n\n");
	printf("| N | queries | query msgs | re-forwarded (more ttl) | duplicates dropped | hits sent | hits dropped (cap %d) | hits unroutable | rate-limited |\n",
	       FLOOD_MAX_HITS_PER_QUERY);
	printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
	for (unsigned si = 0; si < NSIZES; si++) {
		const struct flood_stats *st = &core_stats[si];

		if (!core_queries[si])
			continue;
		printf("| %u | %" PRIu64 " | %" PRIu64 " | %" PRIu64 " | %" PRIu64 " | %" PRIu64 " | %" PRIu64 " | %" PRIu64
		       " | %" PRIu64 " |\n",
		       sizes[si], core_queries[si], st->queries_sent, st->queries_reforwarded, st->duplicates_dropped,
		       st->hits_sent, st->hits_dropped, st->hits_unroutable, st->rate_limited);
	}
}

static void table_load(void)
{
	printf("\n### 7. Many queries at once: N = %u, hop limit %u, r = 1%%, queries arriving for %u s\n\n",
	       LOAD_NODES, TTL_SWEEP, LOAD_MS / 1000);
	printf("| queries/s network-wide | mode | queries | answered | msgs/query | rate-limited | links dropped | mean degree after |\n");
	printf("|---:|---|---:|---:|---:|---:|---:|---:|\n");
	for (unsigned li = 0; li < NLOAD; li++) {
		for (int ring = 0; ring < 2; ring++) {
			const struct sim_load *l = &load_res[li][ring];

			printf("| %g | %s | %u | %.0f%% | %.0f | %" PRIu64 " | %" PRIu64 " | %.2f |\n", load_qps[li],
			       ring ? "ring" : "flood", l->started, l->started ? 100.0 * l->answered / l->started : 0,
			       l->started ? (double)l->msgs / l->started : 0, l->rate_limited, l->links_dropped,
			       l->degree_after);
		}
	}
}

static void usage(void)
{
	fprintf(stderr, "usage: flood-sim [--seed S] [--queries Q] [--items M] [--loss P] [--quick]\n");
	exit(2);
}

static uint64_t parse_u64(const char *s)
{
	char *end;

	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);

	if (errno || end == s || *end)
		usage();
	return v;
}

int main(int argc, char **argv)
{
	struct opts o = { .seed = DEFAULT_SEED, .queries = DEFAULT_QUERIES, .items = DEFAULT_ITEMS };
	struct sim_degree deg[NSIZES] = { 0 };

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--quick")) {
			o.quick = true;
			o.queries = QUICK_QUERIES;
		} else if (i + 1 >= argc) {
			usage();
		} else if (!strcmp(a, "--seed")) {
			o.seed = parse_u64(argv[++i]);
		} else if (!strcmp(a, "--queries")) {
			o.queries = (uint32_t)parse_u64(argv[++i]);
		} else if (!strcmp(a, "--items")) {
			o.items = (uint32_t)parse_u64(argv[++i]);
		} else if (!strcmp(a, "--loss")) {
			o.loss = strtod(argv[++i], NULL);
			if (o.loss < 0 || o.loss >= 1)
				usage();
		} else {
			usage();
		}
	}
	if (!o.queries || !o.items)
		usage();

	for (unsigned si = 0; si < NSIZES; si++)
		if (!o.quick || si < BIG_SIZES_FROM)
			run_size(&o, si, &deg[si]);
	run_loss(&o);
	run_load(&o);

	printf("Seed %" PRIu64 ", %u queries per cell, %u items, replication r per cell; latency %u-%u ms per message, loss %g%%.\n",
	       o.seed, o.queries, o.items, SIM_DEFAULT_LAT_MIN_MS, SIM_DEFAULT_LAT_MAX_MS, 100 * o.loss);
	printf("Overlay: random, connected, each node %u-%u neighbours; mean degree",
	       SIM_DEFAULT_MIN_DEGREE, SIM_DEFAULT_MAX_DEGREE);
	for (unsigned si = 0; si < NSIZES; si++)
		if (deg[si].max)
			printf(" %.2f (N=%u)", deg[si].mean, sizes[si]);
	printf(".\nMessages = query + hit messages sent network-wide per query (counted at send); answered = at least one hit reached the querier; reached = nodes handed the query.\n");
	table_ttl();
	table_ring();
	table_size();
	table_loss(&o);
	table_core();
	table_load();
	return 0;
}
