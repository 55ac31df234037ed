/* Swarm download scheduler: which chunk to ask which peer for, and when.
 *
 * Sans-I/O: no sockets, clocks or timers. The caller (src/node) hands in
 * events with the current time in milliseconds and then drains the actions
 * the scheduler wants performed with swarm_next_action(). Peers are named by
 * a caller-chosen uint32_t key. Every table is bounded: at most
 * SWARM_MAX_PEERS peers, per-peer requests at most opts.per_peer_inflight.
 *
 * Policy: rarest first among the chunks a peer has and we lack (ties broken
 * by a seeded PRNG, so runs repeat); several requests in flight per peer;
 * when every missing chunk is requested, end game: the last chunks are also
 * asked of other peers that have them (at most SWARM_ENDGAME_DUP copies), and
 * when one copy arrives the others are cancelled. A peer that sends a chunk
 * failing its hash is dropped and refused for the rest of the session; its
 * requests go to others. A request unanswered for opts.request_timeout_ms is
 * re-issued elsewhere (and the slow peer's slots are reduced). With
 * opts.move_after_ms, a request that has waited that long moves (CANCEL,
 * REQUEST) to an unchoked peer that holds the chunk and has nothing of ours
 * pending: its uplink may idle while the first one's queue is long.
 */
#ifndef PN_PROTO_SWARM_H
#define PN_PROTO_SWARM_H
#ifndef PN_INTERNAL
#error "an internal header of libpeernet: a program includes <peernet.h> only"
#endif

#include <stdbool.h>
#include <stdint.h>

#define SWARM_MAX_PEERS 256
#define SWARM_ENDGAME_DUP 2

enum swarm_action_type {
	SWARM_REQUEST = 1, /* send CHUNK_REQ for index to peer */
	SWARM_CANCEL,      /* send CANCEL for index to peer */
	SWARM_DROP_PEER,   /* close the connection to peer and never use it again for this content */
	SWARM_DONE,        /* every chunk is verified (emitted once) */
};

struct swarm_action {
	enum swarm_action_type type;
	uint32_t peer;
	uint32_t index;
};

struct swarm_opts {
	uint32_t nchunks;
	uint32_t per_peer_inflight;  /* default 8 when 0 */
	uint32_t request_timeout_ms; /* default 15000 when 0 */
	uint64_t seed;               /* PRNG seed for tie-breaks */
	bool sequential;             /* lowest missing index first (one provider, streaming) */
	/* Streaming among many providers: the first missing chunks, at most this
	 * many from the lowest missing index, are asked for in order before
	 * rarest first takes over; 0: none. */
	uint32_t stream_window;
	uint32_t move_after_ms;      /* a request waiting this long moves to an idle holder; 0: never */
};

struct swarm;

/* have: ceil(nchunks/8) bytes, MSB first, chunks already verified (may be NULL).
 * Returns NULL on allocation failure. Free with swarm_free. */
struct swarm *swarm_new(const struct swarm_opts *opts, const uint8_t *have);
void swarm_free(struct swarm *s);
/* Sets stream_window while the download runs (a reader came or went). */
void swarm_set_stream_window(struct swarm *s, uint32_t window);

/* A peer joined with the chunks in bitmap (NULL: none yet). Starts choked.
 * Returns 0, or PN_ELIMIT when SWARM_MAX_PEERS are present, PN_EACCES for a
 * banned peer, PN_EEXIST if the key is already present, PN_ENOMEM. */
int swarm_peer_add(struct swarm *s, uint32_t peer, const uint8_t *bitmap, uint64_t now);
void swarm_peer_remove(struct swarm *s, uint32_t peer);     /* its requests are re-queued */
void swarm_peer_have(struct swarm *s, uint32_t peer, uint32_t index, uint64_t now);
void swarm_peer_bitfield(struct swarm *s, uint32_t peer, const uint8_t *bitmap, uint64_t now);
void swarm_peer_choked(struct swarm *s, uint32_t peer, bool choked, uint64_t now); /* choke drops its requests */
bool swarm_peer_banned(const struct swarm *s, uint32_t peer);
/* Caps this peer's requests in flight (1..opts.per_peer_inflight): a server
 * behind a fast link gets a long pipeline, a capped node a short one. */
void swarm_peer_set_max(struct swarm *s, uint32_t peer, uint32_t max);
/* Whether this peer's requests stay with it (default: they may move). A
 * server pipelines deeply and sends a request long before a CANCEL could
 * withdraw it, so moving one would only fetch it twice. */
void swarm_peer_keep_requests(struct swarm *s, uint32_t peer, bool keep);
/* Whether index is asked of peer now (live or timed out), without changing anything. */
bool swarm_requested(const struct swarm *s, uint32_t peer, uint32_t index);
/* The chunks asked of peer now (live or timed out): up to max indices into
 * out; returns how many there are (which may exceed max). */
uint32_t swarm_peer_requests(const struct swarm *s, uint32_t peer, uint32_t *out, uint32_t max);
/* How many chunks this peer has that we lack (0 for an unknown peer): the
 * caller is interested in the peer exactly when this is non-zero. */
uint32_t swarm_peer_wanted(const struct swarm *s, uint32_t peer);

/* A chunk arrived from peer and passed its hash check (ok) or failed it (!ok).
 * Returns true when it was requested from that peer (also after a timeout,
 * until the request is dropped); a good chunk that was not is ignored (returns
 * false; see swarm_chunk_had). A bad one, asked for or not, drops and bans the
 * peer (SWARM_DROP_PEER follows). */
bool swarm_chunk_received(struct swarm *s, uint32_t peer, uint32_t index, bool ok, uint64_t now);
/* A verified chunk that no live request of ours asked for (a late answer to a
 * request withdrawn by a CANCEL or a CHOKE): it is had, and every request for
 * it is cancelled. Returns false if it was had already. */
bool swarm_chunk_had(struct swarm *s, uint32_t index, uint64_t now);

/* Time passes: re-issues timed-out requests. */
void swarm_tick(struct swarm *s, uint64_t now);
/* When swarm_tick next needs to run (UINT64_MAX: never). */
uint64_t swarm_next_wakeup(struct swarm *s);

/* Pops the next action; false when none is pending. CANCEL and DROP_PEER
 * come first; then REQUESTs are made on demand, one at a time round-robin
 * over unchoked peers with free slots, stamped with the latest time any call
 * handed in. Drain it after every event. */
bool swarm_next_action(struct swarm *s, struct swarm_action *out);

bool swarm_has(const struct swarm *s, uint32_t index);
uint32_t swarm_have_count(const struct swarm *s);
uint32_t swarm_nchunks(const struct swarm *s);
/* How many connected, unbanned peers have chunk index. */
uint32_t swarm_availability(const struct swarm *s, uint32_t index);

#endif
