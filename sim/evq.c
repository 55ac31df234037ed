/* The simulators' event queue (see evq.h). */
#include <stdlib.h>
#include "evq.h"

void evq_init(struct evq *q, size_t first_cap, size_t max_len)
{
	q->heap = NULL;
	q->len = q->cap = 0;
	q->first_cap = first_cap ? first_cap : 1;
	q->max_len = max_len ? max_len : 1;
	q->seq = 0;
}

void evq_free(struct evq *q)
{
	free(q->heap);
	q->heap = NULL;
	q->len = q->cap = 0;
}

static bool ev_before(const struct evq_ev *x, const struct evq_ev *y)
{
	return x->at < y->at || (x->at == y->at && x->seq < y->seq);
}

/* Room for one more event: 0, PN_ELIMIT or PN_ENOMEM. */
static int grow(struct evq *q)
{
	if (q->cap >= q->max_len)
		return PN_ELIMIT;
	size_t cap = q->cap ? 2 * q->cap : q->first_cap;
	if (cap < q->cap || cap > q->max_len)
		cap = q->max_len;
	if (cap > SIZE_MAX / sizeof(*q->heap))
		return PN_ENOMEM;
	struct evq_ev *heap = realloc(q->heap, cap * sizeof(*heap));
	if (!heap)
		return PN_ENOMEM;
	q->heap = heap;
	q->cap = cap;
	return 0;
}

int evq_push(struct evq *q, uint64_t at, uint32_t kind, uint32_t a, uint32_t b)
{
	if (q->len == q->cap) {
		int rc = grow(q);
		if (rc != 0)
			return rc;
	}
	struct evq_ev e = { .at = at, .seq = q->seq++, .kind = kind, .a = a, .b = b };
	size_t i = q->len++;
	while (i > 0) {
		size_t up = (i - 1) / 2;
		if (!ev_before(&e, &q->heap[up]))
			break;
		q->heap[i] = q->heap[up];
		i = up;
	}
	q->heap[i] = e;
	return 0;
}

struct evq_ev evq_pop(struct evq *q)
{
	struct evq_ev top = q->heap[0];
	struct evq_ev last = q->heap[--q->len];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= q->len)
			break;
		if (c + 1 < q->len && ev_before(&q->heap[c + 1], &q->heap[c]))
			c++;
		if (!ev_before(&q->heap[c], &last))
			break;
		q->heap[i] = q->heap[c];
		i = c;
	}
	if (q->len > 0)
		q->heap[i] = last;
	return top;
}
