/* The simulators' event queue: a binary min-heap of events ordered by
 * (time, sequence number). The sequence number counts pushes, so events due
 * at the same time come out in the order they went in and a run is the same
 * on every machine.
 *
 * The array grows by doubling from a first capacity up to a bound the caller
 * sets; the queue does no I/O and knows nothing of what its events mean.
 */
#ifndef PN_SIM_EVQ_H
#define PN_SIM_EVQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "peernet.h"

/* One event. kind and the two arguments are the simulator's own (its event
 * enum; a node, a message slot, a link ...); an argument it does not use is 0. */
struct evq_ev {
	uint64_t at;        /* virtual time, in the simulator's unit */
	uint64_t seq;       /* pushes before this one: breaks ties in at */
	uint32_t kind;
	uint32_t a, b;
};

struct evq {
	struct evq_ev *heap;
	size_t len, cap;
	size_t first_cap;   /* capacity of the first allocation */
	size_t max_len;     /* events queued at most */
	uint64_t seq;       /* the next event's sequence number */
};

/* An empty queue that allocates nothing until the first push, then
 * first_cap events, doubling up to max_len (both at least 1). */
void evq_init(struct evq *q, size_t first_cap, size_t max_len);

/* Frees the array; the queue is empty and may be used again. */
void evq_free(struct evq *q);

/* Queues an event. 0, PN_ELIMIT when max_len events are queued, or
 * PN_ENOMEM; on failure the queue and the sequence are unchanged. */
PN_MUST_CHECK int evq_push(struct evq *q, uint64_t at, uint32_t kind, uint32_t a, uint32_t b);

/* Takes the earliest event out; the queue must not be empty. */
struct evq_ev evq_pop(struct evq *q);

static inline size_t evq_len(const struct evq *q)
{
	return q->len;
}

/* When the earliest event is due; the queue must not be empty. */
static inline uint64_t evq_next_at(const struct evq *q)
{
	return q->heap[0].at;
}

#endif
