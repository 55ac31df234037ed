/* A discrete-event simulator that drives the flood core (src/proto/flood.c)
 * with virtual time: N nodes in one process, each with its own struct flood,
 * on a random overlay; every message takes a random latency and may be lost.
 * Everything random comes from the seed, so a run repeats exactly.
 *
 * Queries run one at a time: sim_query() starts one at a node, runs events
 * until the core reports FLOOD_QUERY_DONE and no message is in flight, and
 * counts what that query cost the whole network.
 */
#ifndef PN_SIM_SIM_H
#define PN_SIM_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "proto/flood.h"

#define SIM_DEFAULT_MIN_DEGREE 4 /* like the real node's neighbour bounds */
#define SIM_DEFAULT_MAX_DEGREE 8
#define SIM_DEFAULT_LAT_MIN_MS 5
#define SIM_DEFAULT_LAT_MAX_MS 50
#define SIM_MAX_DEGREE 64        /* FLOOD_MAX_NEIGHBORS */
#define SIM_CID_BYTES 40         /* queries carry a wire-form content ID */

/* A field left 0 takes its default (loss 0 means no loss). */
struct sim_params {
	uint32_t nodes;
	uint32_t min_degree;
	uint32_t max_degree;
	uint32_t lat_min_ms;
	uint32_t lat_max_ms;
	double loss;          /* probability that a message is dropped */
	uint32_t cache_max;   /* flood seen-cache entries per node; 0: the core's default */
	uint64_t seed;
};

struct sim_query_result {
	uint64_t query_msgs;   /* query messages sent, network-wide */
	uint64_t hit_msgs;     /* hit messages sent, network-wide */
	uint64_t lost_msgs;    /* of those, dropped by the network */
	uint32_t hits;         /* delivered to the querier before QUERY_DONE */
	bool answered;         /* hits >= 1 */
	uint64_t first_hit_ms; /* since the start; valid when answered */
	uint64_t done_ms;      /* until QUERY_DONE */
	uint32_t reached;      /* other nodes handed the query (FLOOD_LOCAL_QUERY) */
};

/* A cell: many queries, each from a random node for a random item it lacks. */
struct sim_cell {
	uint32_t queries;
	uint64_t msgs;         /* query + hit messages over all queries */
	uint64_t query_msgs;
	uint64_t hit_msgs;
	uint32_t answered;
	uint64_t reached;
	uint64_t first_hit_sum_ms;
	uint64_t first_hit_median_ms;
};

struct sim_degree {
	uint32_t min, max;
	double mean;
};

struct sim;

/* A random connected overlay in which every node has min..max neighbours.
 * NULL on allocation failure or bad parameters. */
struct sim *sim_new(const struct sim_params *p);
/* A hand-made overlay: nedges undirected edges between p->nodes nodes. */
struct sim *sim_new_edges(const struct sim_params *p, const uint32_t (*edges)[2], size_t nedges);
void sim_free(struct sim *s);

uint32_t sim_nodes(const struct sim *s);
struct sim_degree sim_degree_stats(const struct sim *s);
uint64_t sim_now(const struct sim *s);

/* Content: `items` items, each held by `replication` distinct random nodes. */
int sim_items_random(struct sim *s, uint32_t items, uint32_t replication);
/* Content by hand: `items` items held by no one, then sim_hold() each. */
int sim_items_clear(struct sim *s, uint32_t items);
void sim_hold(struct sim *s, uint32_t item, uint32_t node);

/* One query from node `from` for `item`: a plain flood with ttl, or an
 * expanding ring up to ttl that stops at `want` hits. 0 or a PN_E* code. */
int sim_query(struct sim *s, uint32_t from, uint32_t item, uint8_t ttl, bool ring, uint32_t want,
	      struct sim_query_result *out);
/* Restarts the stream that picks queriers and items: cells started from the
 * same value ask the same questions, so they compare pair by pair. */
void sim_queries_seed(struct sim *s, uint64_t seed);
/* `queries` queries from random nodes for random items (drawn from the seed). */
int sim_cell_run(struct sim *s, uint32_t queries, uint8_t ttl, bool ring, uint32_t want, struct sim_cell *out);

/* A load run: queries arrive network-wide at `qps` (Poisson) for
 * duration_ms, many at once; neighbours a core asks to drop are cut. */
struct sim_load {
	uint32_t started;
	uint32_t refused;       /* flood_start refused (PN_ELIMIT) */
	uint32_t done;
	uint32_t answered;
	uint64_t msgs;
	uint64_t rate_limited;  /* queries the cores dropped for their rate */
	uint64_t links_dropped; /* on FLOOD_DROP_NEIGHBOR */
	double degree_after;
};

int sim_load_run(struct sim *s, double qps, uint32_t duration_ms, uint8_t ttl, bool ring, uint32_t want,
		 struct sim_load *out);

/* Every core's counters summed; queries_sent + hits_sent must equal
 * sim_msgs_sent(), the messages the simulator carried (or lost). */
void sim_core_stats(const struct sim *s, struct flood_stats *sum);
uint64_t sim_msgs_sent(const struct sim *s);

#endif
