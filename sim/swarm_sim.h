/* The swarm simulator: N downloaders and one seed, each with its own real
 * peer engine (src/proto/engine.c), exchanging real encoded messages over a
 * simulated network with per-node upload and download capacities and
 * per-link latency, in virtual time. Providers are found through the real
 * directory core (src/proto/directory.c). Everything random comes from the
 * seed, so a run repeats exactly.
 *
 * One call runs one swarm download to its end (every downloader complete or
 * gone) or to a time or event cap, and reports what it cost.
 */
#ifndef PN_SIM_SWARM_SIM_H
#define PN_SIM_SWARM_SIM_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define SWARM_SIM_MAX_PEERS 128       /* the real node's NODE_MAX_PEERS */
#define SWARM_SIM_DIR_RESULTS 100     /* PN_DIR_RESULTS_MAX */
#define SWARM_SIM_REFIND_EARLY_MS 300 /* NODE_REFIND_EARLY_MS */
#define SWARM_SIM_REFIND_MS 2000      /* NODE_REFIND_MS */
#define SWARM_SIM_EARLY_MS 3000       /* NODE_EARLY_MS */
#define SWARM_SIM_RECHOKE_MS 1000     /* NODE_RECHOKE_MS */
#define SWARM_SIM_OPTIMISTIC_MS 500   /* NODE_OPTIMISTIC_MS */
#define SWARM_SIM_SHAPE_TICK_MS 5     /* the real shaper's minimum timer (src/net/conn.c) */
#define SWARM_SIM_SHAPER_BYPASS 1024u /* a control message up to this size skips the shaper's queue */
#define SWARM_SIM_HIGH_WATER (512u * 1024) /* a capped connection's high water mark (SHAPED_HIGH_WATER) */
#define SWARM_SIM_LOW_WATER (256u * 1024)  /* ... and where it is writable again */
#define SWARM_SIM_MAX_TIME_MS 3600000ull   /* default cap on virtual time */
#define SWARM_SIM_STALL_STOP_MS 120000ull  /* default: stop after this long without progress */

/* Faults, each at a time drawn from the seed in [0, window_ms] (see
 * sim/README.md, "Faults"). All 0: none. TCP does not lose or reorder
 * messages within a connection, so loss is a connection reset (what was in
 * flight is gone, both ends learn it) and delay is a stalled uplink (order
 * kept). */
struct swarm_sim_faults {
	uint32_t window_ms;        /* default 10 s */
	uint32_t resets;           /* a random open connection is reset */
	uint32_t stalls;           /* a random node's uplink stops for stall_ms */
	uint32_t stall_ms;         /* default 2 s */
	uint32_t crashes;          /* a random downloader crashes, keeping the chunks it wrote
				    * (its partial file), and restarts after down_ms */
	bool seed_crash;           /* one of the crashes may be the seed's */
	uint32_t down_ms;          /* default 3 s */
	uint32_t partitions;       /* the nodes split in two halves (the seed and the directory
				    * on one side) for part_ms; crossing connections are reset
				    * and no new one forms */
	uint32_t part_ms;          /* default 5 s */
	uint32_t dir_restarts;     /* the directory loses every registration and is unreachable
				    * for down_ms; nodes register again when it is back */
};

/* A field left 0 takes its default (noted). Rates are bytes per second. */
struct swarm_sim_params {
	uint32_t nodes;            /* downloaders, not counting the seed */
	uint64_t file_size;        /* F; default 8 MiB */
	uint64_t seed_up;          /* u_s; default 2 MiB/s */
	uint64_t node_up;          /* u_i; default 2 MiB/s */
	uint64_t down;             /* d_i of every node; 0: no download cap */
	uint32_t lat_min_us;       /* one-way latency of a link, drawn per link; */
	uint32_t lat_max_us;       /* default 100 us (loopback-like) */
	double slow_frac;          /* share of downloaders whose uplink is node_up / slow_div */
	uint32_t slow_div;         /* default 10 */
	uint32_t arrive_ms;        /* downloaders start uniformly over [0, arrive_ms]; 0: all at 0 */
	double leave_frac;         /* share of downloaders that leave for good at a random
				    * point of their download (10..90% of its chunks) */
	bool seed_leaves;          /* the seed leaves once every chunk has left it once */
	uint32_t malicious;        /* extra nodes holding the whole file whose chunks all
				    * fail verification at the receiver */
	uint32_t max_peers;        /* connections per node; default SWARM_SIM_MAX_PEERS */
	uint32_t dir_results;      /* providers per directory answer; default 100 */
	uint32_t refind_early_ms;  /* default 300 */
	uint32_t refind_ms;        /* default 2000 */
	uint32_t early_ms;         /* default 3000 */
	uint32_t shape_tick_ms;    /* default 5 */
	uint32_t timer_min_ms;     /* an engine timer fires no sooner than this after it is armed
				    * (the real node's NODE_TIMER_MIN_MS is 20); default 0 */
	/* engine options (0 / false: the engine's defaults) */
	bool no_super_seed;
	uint32_t upload_slots;
	uint32_t inflight_node;
	uint32_t move_ms;          /* engine's request_move_ms (UINT32_MAX: requests never move) */
	bool bucket_empty;         /* upload buckets start empty (default: full, as after the
				    * bench's 0.5 s settling) */
	uint64_t max_time_ms;      /* default SWARM_SIM_MAX_TIME_MS */
	uint64_t max_events;       /* default 4e9 */
	uint64_t stall_stop_ms;    /* stop when no chunk was written for this long; default 120 s */
	uint64_t seed;
	struct swarm_sim_faults faults;
	bool check;                /* recount each engine's totals after it acts (engine_check);
				    * a disagreement counts as an engine oddity. O(peers) each */
	FILE *diag;                /* a stall or an engine misstep is described here; NULL: quiet */
	FILE *progress;            /* a line per virtual second; NULL: none */
	FILE *trace;               /* every engine action and connection event, one line each; NULL: none */
};

struct swarm_sim_result {
	uint32_t downloaders, finished, left;
	uint32_t stayers, stayers_finished; /* downloaders that never left, and of them done */
	bool all_stayers_finished;
	double dist_s;             /* last stayer done, from virtual time 0 */
	double first_s;            /* first downloader done */
	double bound_s;            /* Kurose-Ross: max(F/u_s, F/d_min, N F / (u_s + sum u_i)) */
	double mean_s, max_s;      /* per finished node: done - its own start */
	double source_copies;      /* seed's uploaded chunk bytes / F */
	double seed_left_s;        /* virtual time the seed left; 0 if it stayed */
	double seed_idle_s;        /* time until D in which the seed's uplink had nothing to send */
	double up_util;            /* chunk bytes uploaded / ((u_s + sum u_i) * D) */
	double down_ratio;         /* chunk bytes received by finished nodes / (finished * F) */
	uint64_t msgs;             /* messages sent network-wide, chunks included */
	uint64_t chunk_msgs;
	uint64_t wire_bytes;       /* every message's frame bytes */
	uint64_t dir_finds;
	uint64_t connects, refused;/* connections made; dials refused (peer cap, gone) */
	uint64_t protocol_closes;  /* engine_on_msg said the peer broke the protocol */
	uint64_t events;
	uint64_t links;            /* connections dialled */
	uint64_t link_slots;       /* most connections the simulator held at once (slots are reused) */
	uint64_t msgs_allocated;   /* message records the simulator allocated (they are reused) */
	uint64_t heap_peak;        /* event heap capacity */
	double end_s;              /* virtual time when the run stopped */
	bool capped;               /* stopped by max_time_ms or max_events */
	bool stalled;              /* stopped after stall_stop_ms without a chunk written */
	uint32_t nchunks;
	uint32_t chunks_held;      /* distinct chunks some honest node still present holds at the end */
	/* malicious nodes */
	uint32_t corrupt_receivers;/* honest nodes that received a corrupt chunk */
	uint32_t corrupt_bans;     /* ... and still alive and banning its sender at the end */
	/* driver-side checks of the engine's behaviour: all should stay 0 */
	uint64_t engine_oddities;
	uint64_t faults;           /* faults injected */
	uint64_t restarts;         /* crashed nodes started again */
	uint64_t stalled_reports;  /* ENGINE_STALLED actions */
	uint64_t digest;           /* hash of every node's finish time and the counters */
	uint64_t peak_rss_kb;      /* filled by the caller if it wants */
};

/* Runs one swarm. 0, or PN_ENOMEM / PN_EINVAL (bad parameters). *out is
 * filled in either way as far as the run got. */
int swarm_sim_run(const struct swarm_sim_params *p, struct swarm_sim_result *out);

/* The Kurose-Ross bound for these parameters, in seconds. */
double swarm_sim_bound(const struct swarm_sim_params *p);

#endif
