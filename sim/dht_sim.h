/* A discrete-event simulator that drives the Kademlia DHT core
 * (src/proto/dht.c) with virtual time: N nodes in one process, each with its
 * own struct dht; messages pass between them as struct pn_dht_msg (never
 * encoded for delivery, but encoded with pn_dht_encode to count their bytes);
 * every node pair has a fixed one-way latency, every message may be lost,
 * and nodes leave silently and new ones join at a rate per hour. Everything
 * random comes from the seed, so a run repeats exactly.
 *
 * One run (dht_sim_run) is the scenario of sim/README.md: the nodes join
 * through a few bootstrap nodes, settle, announce the items they hold
 * (PROVIDER records), then look up random items from random live nodes
 * while churn goes on.
 */
#ifndef PN_SIM_DHT_SIM_H
#define PN_SIM_DHT_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DHT_SIM_DEFAULT_BOOTSTRAP 4
#define DHT_SIM_DEFAULT_ITEMS 100
#define DHT_SIM_DEFAULT_COPIES 1
#define DHT_SIM_DEFAULT_LOOKUPS 1000
#define DHT_SIM_DEFAULT_LAT_MIN_MS 10
#define DHT_SIM_DEFAULT_LAT_MAX_MS 100
#define DHT_SIM_DEFAULT_JOIN_S 600      /* the N nodes join over this */
#define DHT_SIM_DEFAULT_SETTLE_S 300    /* then nothing but the cores' own traffic */
#define DHT_SIM_DEFAULT_ANNOUNCE_S 60   /* holders announce over this */
#define DHT_SIM_DEFAULT_WINDOW_S 3600   /* look-ups arrive over this, churn goes on */
#define DHT_SIM_DEFAULT_WANT 1

/* A field left 0 takes its default (loss and churn 0: none). */
struct dht_sim_params {
	uint32_t nodes;           /* N at the start, bootstrap nodes included */
	uint32_t bootstrap;       /* nodes every joiner is given two of; they never leave */
	uint32_t items;
	uint32_t copies;          /* distinct random holders per item */
	uint32_t lookups;
	uint32_t want;            /* records a value look-up is happy with */
	double churn_per_hour;    /* share of N that leaves per hour (and as many new nodes join) */
	double loss;              /* probability that a message is dropped */
	uint32_t lat_min_ms, lat_max_ms; /* one-way, per node pair */
	uint32_t join_s, settle_s, announce_s, window_s;
	uint32_t rpc_timeout_ms;  /* struct dht_opts overrides; 0: the core's default */
	uint32_t max_fails;
	uint32_t refresh_ms;
	uint64_t seed;
	bool progress;            /* a line on stderr per virtual minute */
};

/* One look-up, as the driver saw it. */
struct dht_sim_lookup {
	uint32_t from, item;
	bool started;             /* dht_lookup was called (a live holder existed, a querier was found) */
	bool done;                /* LOOKUP_DONE came (or dht_lookup refused) */
	bool querier_left;        /* the querier left while it ran: not counted */
	bool success;             /* a record whose publisher was alive when it came */
	bool stale_only;          /* records came, none from a live publisher */
	uint32_t rounds;          /* stats.rounds_to_first if success, else stats.rounds */
	uint32_t msgs;            /* stats.requests + stats.replies */
	uint32_t msgs_to_first;   /* requests + replies of the look-up until the first live record */
	uint32_t timeouts;
	uint64_t bytes;           /* its requests and replies, encoded */
	uint64_t first_ms;        /* to the first live record; valid if success */
	uint64_t done_ms;
	uint32_t live_holders;    /* holders of the item alive at the start */
};

/* Figures of a run. Percentiles are of the counted look-ups that finished
 * (rounds, messages to first, time to first: of those that succeeded);
 * nearest rank. */
struct dht_sim_result {
	uint32_t nodes_start, nodes_end, joined, left;
	uint32_t lookups;         /* asked for */
	uint32_t no_live_holder;  /* every holder of the item had left: not started */
	uint32_t counted;         /* started, a live holder, the querier stayed: the denominator */
	uint32_t done, success, stale_only;
	double rounds_median, rounds_p99, rounds_mean;
	double msgs_median, msgs_p99, msgs_mean;
	double msgs_first_median, msgs_first_p99;
	double first_ms_median, first_ms_p99;
	double bytes_mean;
	double timeouts_mean;
	double table_mean;        /* contacts in the routing table, live nodes at the end */
	uint32_t table_min, table_max;
	double memory_mean;       /* dht_memory(), bytes, live nodes at the end */
	size_t memory_max;
	double records_mean;      /* dht_records_stored() */
	uint64_t msgs_total;      /* every message sent, network-wide */
	uint64_t bytes_total;
	uint64_t lost, to_dead;   /* dropped by the network; sent to a node that had left */
	uint64_t encode_failed;   /* pn_dht_encode refused a message the core made */
	uint64_t actions_dropped, unexpected_replies, rate_limited, stores_refused, stores_accepted;
	uint64_t rebootstraps;    /* a joiner's bootstrap nodes pinged again, its table still empty */
	double bg_msgs_per_node_hour; /* every message over the window, per live node per hour */
	uint64_t events;
	double virtual_s;
	uint64_t peak_rss_kb;     /* filled by the caller if it wants */
};

/* Runs the whole scenario. lookups_out, if not NULL, receives
 * p->lookups entries (the caller owns it). 0 or a PN_E* code. */
int dht_sim_run(const struct dht_sim_params *p, struct dht_sim_result *out, struct dht_sim_lookup *lookups_out);

/* The item placement and the look-ups a run with these parameters makes
 * (same seed, same streams), for driving another discovery mode on the same
 * questions: holders[item * copies + c] and, per look-up, querier and item
 * (at churn 0 every querier is one of the first N nodes). 0 or PN_ENOMEM. */
int dht_sim_workload(const struct dht_sim_params *p, uint32_t *holders, uint32_t *lookup_from,
		     uint32_t *lookup_item);

#endif
