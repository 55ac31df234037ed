/* dht-sim: the DHT core at 1,000-100,000 nodes, beside flooding, the
 * expanding ring and the directory on the same questions.
 *
 *   dht-sim [--nodes N[,N...]] [--lookups L] [--churn-per-hour P] [--loss P]
 *           [--latency MIN-MAX] [--items M] [--copies R|R%] [--want W]
 *           [--bootstrap B] [--join-s T] [--settle-s T] [--window-s T]
 *           [--rpc-timeout-ms T] [--max-fails F] [--refresh-ms T] [--seed S]
 *           [--flood] [--flood-queries Q] [--flood-ttl T] [--progress]
 *
 * Prints one JSON object per line, one per N: the DHT's figures, and with
 * --flood (churn 0 only) the flood core's plain flood and expanding ring on
 * the same N, the same item placement and the same (querier, item) pairs
 * (the first Q look-ups), and the directory as its model computes it.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include "peernet.h"
#include "dht_sim.h"
#include "sim.h"

#define DEFAULT_SEED 20261204u
#define DEFAULT_FLOOD_QUERIES 200
#define DEFAULT_FLOOD_TTL 5      /* the node's default hop limit */
#define FLOOD_WANT 1             /* one provider is enough to start a download */
#define DIRECTORY_ROUNDS 1       /* FIND_PROVIDERS and its answer */
#define DIRECTORY_MSGS 2
#define MAX_SIZES 16

struct opts {
	struct dht_sim_params p;
	uint32_t sizes[MAX_SIZES];
	unsigned nsizes;
	double copies_pct;        /* --copies R%: R% of N; 0: p.copies as given */
	bool flood;
	uint32_t flood_queries;
	uint32_t flood_ttl;
};

static void usage(void)
{
	fprintf(stderr,
		"usage: dht-sim [--nodes N[,N...]] [--lookups L] [--churn-per-hour P] [--loss P]\n"
		"               [--latency MIN-MAX] [--items M] [--copies R|R%%] [--want W] [--bootstrap B]\n"
		"               [--join-s T] [--settle-s T] [--window-s T] [--rpc-timeout-ms T] [--max-fails F]\n"
		"               [--refresh-ms T]\n"
		"               [--seed S] [--flood] [--flood-queries Q] [--flood-ttl T] [--progress]\n"
		"  P is a share (0.1) or a percentage (10%%); latency is one way, per node pair, in ms.\n");
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

static uint32_t parse_u32(const char *s)
{
	uint64_t v = parse_u64(s);

	if (v > UINT32_MAX)
		usage();
	return (uint32_t)v;
}

/* "0.1" or "10%" -> 0.1 */
static double parse_share(const char *s)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s)
		usage();
	if (*end == '%') {
		v /= 100;
		end++;
	}
	if (*end || v < 0)
		usage();
	return v;
}

static void parse_sizes(struct opts *o, const char *s)
{
	char buf[256];
	char *save = NULL;

	if (strlen(s) >= sizeof(buf))
		usage();
	strcpy(buf, s);
	o->nsizes = 0;
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (o->nsizes == MAX_SIZES)
			usage();
		o->sizes[o->nsizes++] = parse_u32(t);
	}
	if (!o->nsizes)
		usage();
}

static void parse_args(struct opts *o, int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--flood")) {
			o->flood = true;
			continue;
		}
		if (!strcmp(a, "--progress")) {
			o->p.progress = true;
			continue;
		}
		if (i + 1 >= argc)
			usage();
		const char *v = argv[++i];

		if (!strcmp(a, "--nodes"))
			parse_sizes(o, v);
		else if (!strcmp(a, "--lookups"))
			o->p.lookups = parse_u32(v);
		else if (!strcmp(a, "--churn-per-hour"))
			o->p.churn_per_hour = parse_share(v);
		else if (!strcmp(a, "--loss"))
			o->p.loss = parse_share(v);
		else if (!strcmp(a, "--latency")) {
			char *dash = strchr(v, '-');

			if (!dash)
				usage();
			*dash = '\0';
			o->p.lat_min_ms = parse_u32(v);
			o->p.lat_max_ms = parse_u32(dash + 1);
		} else if (!strcmp(a, "--items"))
			o->p.items = parse_u32(v);
		else if (!strcmp(a, "--copies")) {
			if (v[strlen(v) - 1] == '%')
				o->copies_pct = parse_share(v);
			else
				o->p.copies = parse_u32(v);
		} else if (!strcmp(a, "--want"))
			o->p.want = parse_u32(v);
		else if (!strcmp(a, "--bootstrap"))
			o->p.bootstrap = parse_u32(v);
		else if (!strcmp(a, "--join-s"))
			o->p.join_s = parse_u32(v);
		else if (!strcmp(a, "--settle-s"))
			o->p.settle_s = parse_u32(v);
		else if (!strcmp(a, "--window-s"))
			o->p.window_s = parse_u32(v);
		else if (!strcmp(a, "--rpc-timeout-ms"))
			o->p.rpc_timeout_ms = parse_u32(v);
		else if (!strcmp(a, "--max-fails"))
			o->p.max_fails = parse_u32(v);
		else if (!strcmp(a, "--refresh-ms"))
			o->p.refresh_ms = parse_u32(v);
		else if (!strcmp(a, "--seed"))
			o->p.seed = parse_u64(v);
		else if (!strcmp(a, "--flood-queries"))
			o->flood_queries = parse_u32(v);
		else if (!strcmp(a, "--flood-ttl"))
			o->flood_ttl = parse_u32(v);
		else
			usage();
	}
	if (o->p.loss >= 1 || o->p.churn_per_hour > 100 || o->p.lat_min_ms > o->p.lat_max_ms ||
	    o->flood_ttl < 1 || o->flood_ttl > FLOOD_MAX_TTL)
		usage();
}

static double cpu_s(void)
{
	return (double)clock() / CLOCKS_PER_SEC;
}

static long peak_rss_kb(void)
{
	struct rusage ru;

	return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : -1;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

static double pctl(const uint64_t *v, size_t n, double pct)
{
	if (n == 0)
		return 0;
	size_t rank = (size_t)(pct / 100.0 * (double)n + 0.999999);

	return (double)v[(rank < 1 ? 1 : rank) - 1];
}

struct flood_fig {
	uint32_t queries, answered;
	double msgs_median, msgs_p99, msgs_mean;
	double first_ms_median, first_ms_p99;
};

/* The flood core on the same N, placement and questions. 0 or PN_E*. */
static int run_flood(const struct dht_sim_params *p, uint32_t n, const uint32_t *holders, const uint32_t *from,
		     const uint32_t *item, uint32_t queries, uint8_t ttl, bool ring, struct flood_fig *out)
{
	struct sim_params sp = {
		.nodes = n, .lat_min_ms = p->lat_min_ms, .lat_max_ms = p->lat_max_ms, .loss = p->loss, .seed = p->seed,
	};
	struct sim *s = sim_new(&sp);
	uint64_t *msgs = calloc(queries ? queries : 1, sizeof(*msgs));
	uint64_t *first = calloc(queries ? queries : 1, sizeof(*first));
	double sum = 0;
	int rc = PN_ENOMEM;

	memset(out, 0, sizeof(*out));
	if (!s || !msgs || !first)
		goto done;
	rc = sim_items_clear(s, p->items);
	if (rc)
		goto done;
	for (uint32_t it = 0; it < p->items; it++)
		for (uint32_t c = 0; c < p->copies; c++)
			sim_hold(s, it, holders[(size_t)it * p->copies + c]);
	for (uint32_t q = 0; q < queries; q++) {
		struct sim_query_result r;

		rc = sim_query(s, from[q], item[q], ttl, ring, FLOOD_WANT, &r);
		if (rc)
			goto done;
		msgs[out->queries++] = r.query_msgs + r.hit_msgs;
		sum += (double)(r.query_msgs + r.hit_msgs);
		if (r.answered)
			first[out->answered++] = r.first_hit_ms;
	}
	qsort(msgs, out->queries, sizeof(*msgs), cmp_u64);
	qsort(first, out->answered, sizeof(*first), cmp_u64);
	out->msgs_median = pctl(msgs, out->queries, 50);
	out->msgs_p99 = pctl(msgs, out->queries, 99);
	out->msgs_mean = out->queries ? sum / out->queries : 0;
	out->first_ms_median = pctl(first, out->answered, 50);
	out->first_ms_p99 = pctl(first, out->answered, 99);
done:
	free(msgs);
	free(first);
	sim_free(s);
	return rc;
}

static void print_flood(const char *name, const struct flood_fig *f)
{
	printf(", \"%s\": {\"queries\": %u, \"answered\": %u, \"success_rate\": %.4f, \"msgs_median\": %.0f, "
	       "\"msgs_p99\": %.0f, \"msgs_mean\": %.1f, \"first_ms_median\": %.0f, \"first_ms_p99\": %.0f}",
	       name, f->queries, f->answered, f->queries ? (double)f->answered / f->queries : 0, f->msgs_median,
	       f->msgs_p99, f->msgs_mean, f->first_ms_median, f->first_ms_p99);
}

static int run_size(const struct opts *o, uint32_t n)
{
	struct dht_sim_params p = o->p;
	struct dht_sim_result r;
	double t0 = cpu_s();
	int rc;

	p.nodes = n;
	if (o->copies_pct > 0) {
		p.copies = (uint32_t)(o->copies_pct * n + 0.5);
		if (!p.copies)
			p.copies = 1;
	}
	rc = dht_sim_run(&p, &r, NULL);
	if (rc) {
		fprintf(stderr, "dht-sim: N=%u: the run failed: %s\n", n, pn_strerror(rc));
		return rc;
	}
	double dht_cpu = cpu_s() - t0;
	long rss = peak_rss_kb();
	struct dht_sim_params d = p;

	/* what dht_sim_run took as defaults, for the record */
	if (!d.items)
		d.items = DHT_SIM_DEFAULT_ITEMS;
	if (!d.copies)
		d.copies = DHT_SIM_DEFAULT_COPIES;
	if (!d.lat_min_ms && !d.lat_max_ms) {
		d.lat_min_ms = DHT_SIM_DEFAULT_LAT_MIN_MS;
		d.lat_max_ms = DHT_SIM_DEFAULT_LAT_MAX_MS;
	}
	if (!d.lookups)
		d.lookups = DHT_SIM_DEFAULT_LOOKUPS;
	printf("{\"nodes\": %u, \"seed\": %" PRIu64 ", \"items\": %u, \"copies\": %u, \"lookups\": %u, "
	       "\"want\": %u, \"churn_per_hour\": %g, \"loss\": %g, \"lat_min_ms\": %u, \"lat_max_ms\": %u, "
	       "\"window_s\": %u, \"settle_s\": %u, \"rpc_timeout_ms\": %u, \"max_fails\": %u, \"refresh_ms\": %u",
	       n, p.seed, d.items, d.copies, d.lookups, p.want ? p.want : DHT_SIM_DEFAULT_WANT, p.churn_per_hour, p.loss,
	       d.lat_min_ms, d.lat_max_ms, p.window_s ? p.window_s : DHT_SIM_DEFAULT_WINDOW_S,
	       p.settle_s ? p.settle_s : DHT_SIM_DEFAULT_SETTLE_S, p.rpc_timeout_ms, p.max_fails, p.refresh_ms);
	printf(", \"dht\": {\"counted\": %u, \"no_live_holder\": %u, \"done\": %u, \"success\": %u, "
	       "\"success_rate\": %.4f, \"stale_only\": %u, "
	       "\"rounds_median\": %.0f, \"rounds_p99\": %.0f, \"rounds_mean\": %.2f, "
	       "\"msgs_median\": %.0f, \"msgs_p99\": %.0f, \"msgs_mean\": %.1f, "
	       "\"msgs_to_first_median\": %.0f, \"msgs_to_first_p99\": %.0f, "
	       "\"first_ms_median\": %.0f, \"first_ms_p99\": %.0f, \"bytes_mean\": %.0f, \"timeouts_mean\": %.2f, "
	       "\"table_mean\": %.1f, \"table_min\": %u, \"table_max\": %u, \"memory_mean\": %.0f, "
	       "\"memory_max\": %zu, \"records_mean\": %.1f, "
	       "\"nodes_end\": %u, \"joined\": %u, \"left\": %u, \"msgs_total\": %" PRIu64 ", "
	       "\"bytes_total\": %" PRIu64 ", \"bg_msgs_per_node_hour\": %.1f, \"lost\": %" PRIu64 ", "
	       "\"to_dead\": %" PRIu64 ", \"encode_failed\": %" PRIu64 ", \"actions_dropped\": %" PRIu64 ", "
	       "\"unexpected_replies\": %" PRIu64 ", \"rate_limited\": %" PRIu64 ", \"stores_accepted\": %" PRIu64
	       ", \"stores_refused\": %" PRIu64 ", \"rebootstraps\": %" PRIu64 ", \"events\": %" PRIu64 ", \"virtual_s\": %.0f, "
	       "\"cpu_s\": %.1f, \"peak_rss_kb\": %ld}",
	       r.counted, r.no_live_holder, r.done, r.success, r.counted ? (double)r.success / r.counted : 0,
	       r.stale_only, r.rounds_median, r.rounds_p99, r.rounds_mean, r.msgs_median, r.msgs_p99, r.msgs_mean,
	       r.msgs_first_median, r.msgs_first_p99, r.first_ms_median, r.first_ms_p99, r.bytes_mean,
	       r.timeouts_mean, r.table_mean, r.table_min, r.table_max, r.memory_mean, r.memory_max, r.records_mean,
	       r.nodes_end, r.joined, r.left, r.msgs_total, r.bytes_total, r.bg_msgs_per_node_hour, r.lost,
	       r.to_dead, r.encode_failed, r.actions_dropped, r.unexpected_replies, r.rate_limited,
	       r.stores_accepted, r.stores_refused, r.rebootstraps, r.events, r.virtual_s, dht_cpu, rss);
	/* The directory as its model says: one round trip to one machine that
	 * holds every registration, always a live provider while it is up,
	 * nothing at all when it is down. Computed, not simulated. */
	printf(", \"directory\": {\"computed\": true, \"rounds\": %d, \"msgs\": %d, \"success_rate\": 1.0, "
	       "\"first_ms_median\": %.0f, \"memory_per_node\": 0}",
	       DIRECTORY_ROUNDS, DIRECTORY_MSGS, (double)(d.lat_min_ms + d.lat_max_ms));
	if (o->flood && p.churn_per_hour == 0) {
		uint32_t q = o->flood_queries < d.lookups ? o->flood_queries : d.lookups;
		uint32_t *holders = calloc((size_t)d.items * d.copies, sizeof(*holders));
		uint32_t *from = calloc(d.lookups, sizeof(*from)), *item = calloc(d.lookups, sizeof(*item));
		struct flood_fig plain, ring;

		rc = holders && from && item ? dht_sim_workload(&p, holders, from, item) : PN_ENOMEM;
		p.items = d.items;
		p.copies = d.copies;
		p.lat_min_ms = d.lat_min_ms;
		p.lat_max_ms = d.lat_max_ms;
		t0 = cpu_s();
		if (rc == 0)
			rc = run_flood(&p, n, holders, from, item, q, (uint8_t)o->flood_ttl, false, &plain);
		if (rc == 0)
			rc = run_flood(&p, n, holders, from, item, q, (uint8_t)o->flood_ttl, true, &ring);
		free(holders);
		free(from);
		free(item);
		if (rc) {
			printf("}\n");
			fprintf(stderr, "dht-sim: N=%u: the flood run failed: %s\n", n, pn_strerror(rc));
			return rc;
		}
		printf(", \"flood_ttl\": %u", o->flood_ttl);
		print_flood("flood", &plain);
		print_flood("ring", &ring);
		printf(", \"flood_cpu_s\": %.1f", cpu_s() - t0);
	}
	printf("}\n");
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o;

	memset(&o, 0, sizeof(o));
	o.p.seed = DEFAULT_SEED;
	o.sizes[0] = 1000;
	o.nsizes = 1;
	o.flood_queries = DEFAULT_FLOOD_QUERIES;
	o.flood_ttl = DEFAULT_FLOOD_TTL;
	parse_args(&o, argc, argv);
	for (unsigned i = 0; i < o.nsizes; i++)
		if (run_size(&o, o.sizes[i]))
			return 1;
	return 0;
}
