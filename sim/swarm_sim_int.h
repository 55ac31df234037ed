/* The swarm simulator's insides, shared by its files (see swarm_sim.h for
 * the interface and sim/README.md for the model):
 *
 *   swarm_sim.c     the driver of the engines: network, shaper, actions,
 *                   events, set-up and the run loop
 *   swarm_fault.c   faults drawn from the seed: resets, stalls, crashes and
 *                   restarts, partitions, directory restarts
 *   swarm_report.c  the results: the bound, the summary, why a run stalled
 *
 * Not an interface: only these files include it.
 */
#ifndef PN_SIM_SWARM_SIM_INT_H
#define PN_SIM_SWARM_SIM_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include "peernet.h"
#include "proto/directory.h"
#include "proto/engine.h"
#include "proto/prng.h"
#include "evq.h"
#include "swarm_sim.h"

#define SS_NEVER UINT64_MAX
#define SS_NONE UINT32_MAX
#define SS_MIB (1024u * 1024u)
#define SS_DEFAULT_SIZE (8ull * SS_MIB)
#define SS_DEFAULT_RATE (2ull * SS_MIB)
#define SS_DEFAULT_LAT_US 100
#define SS_DEFAULT_SLOW_DIV 10
#define SS_DEFAULT_MAX_EVENTS 4000000000ull
#define SS_MIN_BURST (16u * 1024u)      /* the real bucket's smallest burst */
#define SS_HANDSHAKE_TRIPS 4            /* one-way trips before a connection is up: TCP + TLS 1.3 */
#define SS_SMALL_MSG 64                 /* frames up to this size are kept inline */
#define SS_LISTEN_PORT 7070
#define SS_NAME "file.bin"
#define SS_LEAVE_MIN_PCT 10             /* a leaver goes after 10..90% of its chunks */
#define SS_LEAVE_SPAN_PCT 80
#define SS_PROGRESS_US 1000000u         /* --progress: a line per virtual second */
#define SS_SAME_MS_TICKS 100000         /* ticks at one millisecond that mean a busy loop */
#define SS_EVQ_FIRST 4096               /* events the queue first makes room for */
#define SS_EVQ_MAX (1u << 27)           /* events queued at most (4 GiB) */

/* Independent random streams: a change in one part does not move the others. */
#define SS_STREAM_IDS 0x696473u
#define SS_STREAM_NET 0x6e6574u
#define SS_STREAM_WORK 0x776f726bu
#define SS_STREAM_ENGINE 0x656e67u
#define SS_STREAM_FAULT 0x666c74u

#define SS_FAULT_WINDOW_MS 10000
#define SS_FAULT_STALL_MS 2000
#define SS_FAULT_DOWN_MS 3000
#define SS_FAULT_PART_MS 5000
#define SS_REREG_SPREAD_MS 1000  /* nodes find the directory back within this (node_dir.c backs off 0.5 s, doubling) */

enum ev_kind {
	EV_TICK = 1,  /* a: node */
	EV_SHAPE,     /* a: node */
	EV_DELIVER,   /* a: link, b: direction (sender's side) */
	EV_CONNECT,   /* a: link */
	EV_FIN,       /* a: link, b: the side that learns the connection is gone */
	EV_FIND,      /* a: node: ask the directory */
	EV_FOUND,     /* a: node: its answer arrives */
	EV_START,     /* a: node starts its download */
	EV_LEAVE,     /* a: node goes for good */
	EV_FAULT,     /* a: enum fault_kind */
	EV_RESTART,   /* a: node: a crashed node starts again */
	EV_HEAL,      /* the partition ends */
	EV_DIR_UP,    /* the restarted directory answers again */
	EV_REREG,     /* a: node: registers (and offers) again at the directory */
};

enum fault_kind { FAULT_RESET = 1, FAULT_STALL, FAULT_CRASH, FAULT_SEED_CRASH, FAULT_PARTITION, FAULT_DIR_RESTART };

/* A message on its way: queued at the sender's shaper, then in flight. */
struct smsg {
	struct smsg *next;
	uint64_t arrive_us;
	uint32_t size;          /* frame bytes on the wire */
	bool is_chunk;
	uint32_t req_id, index, len; /* CHUNK: modelled by size; the data is a shared dummy */
	uint8_t *frame;         /* other types: the encoded frame (small or heap) */
	uint8_t small[SS_SMALL_MSG];
};

/* One direction of a connection: from node[side] to node[1 - side]. */
struct dirq {
	struct smsg *head, *tail;   /* waiting for the sender's uplink */
	uint64_t queued;            /* their bytes */
	bool above_high;
	bool active;                /* in the sender's round-robin ring */
	uint32_t next_active;       /* link * 2 + side */
	struct smsg *fhead, *ftail; /* released, arriving in order */
	uint64_t last_arrive_us;
	bool deliver_armed;
};

struct slink {
	uint32_t node[2];  /* [0] dialled, [1] accepted */
	uint32_t lat_us;
	bool connected;    /* EV_CONNECT happened and both ends accepted */
	bool in_use;       /* not on the free list */
	uint32_t refs;     /* events queued that name this link */
	uint32_t next_free;
	bool open[2];      /* the engine at node[side] knows this connection */
	struct dirq q[2];
};

enum node_state { NS_IDLE = 0, NS_DOWNLOADING, NS_DONE, NS_GONE };

struct snode {
	struct ssim *s;
	uint32_t idx;
	struct engine *e;
	uint8_t id[PN_ID_BYTES];
	char addr[24];
	enum node_state state;
	bool is_seed, malicious, holds_all;
	bool leaver, leaving, finished;
	uint32_t leave_at_have;
	uint64_t up_rate, down_rate;
	/* uplink shaper */
	double tokens, burst;
	uint64_t bucket_us;
	double busy_until_us, idle_us; /* the uplink as a serial line at up_rate: its idle gaps */
	bool shape_armed;
	uint32_t ring_head, ring_tail; /* dirq ids, SS_NONE when empty */
	uint64_t backlog;       /* bytes queued on all its connections, not yet released */
	uint64_t down_busy_us;
	/* connections */
	uint32_t *links;
	uint32_t nlinks, links_cap;
	/* engine timer */
	uint64_t tick_at;
	uint64_t last_tick_ms;
	uint32_t same_ms_ticks;
	/* download */
	uint8_t *have;          /* chunks written, bit per chunk */
	uint32_t have_count;
	uint64_t start_us, done_us;
	uint64_t find_sent_us;
	bool finding;           /* a look-up is out (its EV_FOUND pending) */
	uint32_t dir_lat_us;
	uint64_t up_chunk_bytes, down_chunk_bytes;
	bool got_corrupt;
	uint32_t corrupt_from;
	/* faults */
	bool crashed;           /* down: no engine, its chunks kept */
	uint32_t find_gen;      /* look-up events of an earlier life carry an older one */
	bool named;             /* knows the content's name: offers it at the directory */
	bool hashed;            /* recorded the hash list (its partial state has it) */
	uint64_t stall_until_us;/* its uplink sends nothing before this */
	/* checks: a WRITE_CHUNK must name the chunk just delivered */
	bool expect_chunk;
	uint32_t expect_link, expect_index;
};

struct ssim {
	struct swarm_sim_params p;
	struct swarm_sim_result *r;
	uint64_t now;           /* microseconds */
	struct evq evq;
	struct snode *nodes;
	uint32_t nnodes;        /* seed, downloaders, malicious */
	uint32_t ndown;         /* downloaders: nodes 1..ndown */
	struct slink *links;
	uint32_t nlinks, links_cap;   /* slots made; a closed link's slot is reused */
	uint32_t free_links;          /* first free slot, SS_NONE */
	uint64_t dials;
	struct smsg *free_msgs;
	struct dir *dir;
	struct dir_provider *found;
	struct pn_cid cid;
	uint32_t nchunks;
	uint8_t *hashes;
	uint8_t *dummy;         /* PN_CHUNK_SIZE bytes: every CHUNK's data */
	uint8_t *seed_sent;     /* per chunk: the seed has put it on the wire */
	uint32_t seed_distinct; /* chunks the seed has sent at least once */
	uint8_t *scratch;       /* encoding buffer */
	size_t scratch_cap;
	struct pn_prng net_rng, work_rng, fault_rng;
	bool dir_down;          /* a restarted directory that does not answer yet */
	bool partitioned;
	uint8_t *group;         /* per node: its half while partitioned (the seed's is 0) */
	uint32_t alive_downloading;
	uint64_t last_progress_us; /* a chunk written, a node started or left */
	bool oom;
};

/* ------------------------------------------------------------ small helpers */

/* Queues an event, never in the past; a failure stops the run (s->oom). */
static inline void push(struct ssim *s, uint64_t at, uint32_t kind, uint32_t a, uint32_t b)
{
	if (evq_push(&s->evq, at < s->now ? s->now : at, kind, a, b) != 0)
		s->oom = true;
}

static inline uint64_t now_ms(const struct ssim *s)
{
	return s->now / 1000;
}

static inline void trace(const struct ssim *s, uint32_t node, const char *what, uint32_t arg)
{
	if (s->p.trace)
		fprintf(s->p.trace, "%10.3f n%-5u %s %u\n", s->now / 1e3, node, what, arg);
}

static inline uint64_t mix64(uint64_t h, uint64_t v)
{
	h ^= v + PN_PRNG_GAMMA + (h << 6) + (h >> 2);
	return h * 0xbf58476d1ce4e5b9ull;
}

static inline bool has_chunk(const struct snode *n, uint32_t index)
{
	return n->holds_all || (n->have[index / 8] >> (7 - index % 8)) & 1;
}

static inline int side_of(const struct slink *l, uint32_t node)
{
	return l->node[0] == node ? 0 : 1;
}

/* The directory answers n: it is up, and on n's side of a partition. */
static inline bool dir_reachable(const struct ssim *s, const struct snode *n)
{
	return !s->dir_down && !(s->partitioned && s->group[n->idx]);
}

/* Whether two nodes can reach each other now. */
static inline bool path_open(const struct ssim *s, uint32_t a, uint32_t b)
{
	return !s->partitioned || s->group[a] == s->group[b];
}

/* ------------------------------------------------------------ swarm_sim.c */

void ssim_oddity(struct ssim *s, uint32_t node, const char *what, uint64_t detail);
void ssim_link_list_remove(struct snode *n, uint32_t link);
void ssim_link_maybe_free(struct ssim *s, uint32_t k);
void ssim_drop_queue(struct ssim *s, struct slink *l, int side);
void ssim_close_side(struct ssim *s, uint32_t link, int side, bool tell_engine);
void ssim_arm_shape(struct ssim *s, struct snode *n);
void ssim_drain(struct ssim *s, uint32_t node);
void ssim_rearm(struct ssim *s, uint32_t node);
void ssim_on_find(struct ssim *s, struct snode *n);
/* A new engine for n, or NULL (s->oom set); n owns it (engine_free). */
struct engine *ssim_engine_for(struct ssim *s, struct snode *n);

/* ------------------------------------------------------------ swarm_fault.c */

void ssim_register_at_dir(struct ssim *s, struct snode *n);
void ssim_restart(struct ssim *s, struct snode *n);
void ssim_rejoin_directory(struct ssim *s, bool only_far_side);
void ssim_heal(struct ssim *s);
void ssim_on_fault(struct ssim *s, enum fault_kind kind);
void ssim_schedule_faults(struct ssim *s);

/* ------------------------------------------------------------ swarm_report.c */

void ssim_summarise(struct ssim *s);
void ssim_describe_stall(struct ssim *s);

#endif
