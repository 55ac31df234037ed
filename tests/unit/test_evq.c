/* sim/evq: the simulators' event queue. Events come out by (time, order of
 * pushing), checked against a sort of the same events through growth and
 * interleaved pops; the bound the caller sets stops pushes.
 *
 * The simulator is not part of libpeernet, so the queue is compiled in here. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include "../../sim/evq.c"

#define NEVENTS 20000u
#define TIMES 50u          /* few distinct times, so most events tie */
#define FIRST_CAP 4u
#define SMALL_MAX 10u

static uint64_t next(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static int by_time_then_seq(const void *pa, const void *pb)
{
	const struct evq_ev *a = pa, *b = pb;
	if (a->at != b->at)
		return a->at < b->at ? -1 : 1;
	return a->seq < b->seq ? -1 : a->seq > b->seq;
}

Test(evq, pops_by_time_then_push_order)
{
	static struct evq_ev popped[NEVENTS];
	struct evq q;
	uint64_t x = 0x9e3779b97f4a7c15ull, now = 0;
	uint32_t npushed = 0, npopped = 0;

	evq_init(&q, FIRST_CAP, NEVENTS);
	while (npopped < NEVENTS) {
		/* Push two for every pop until all are in, never into the past. */
		if (npushed < NEVENTS && (evq_len(&q) == 0 || next(&x) % 3 != 0)) {
			uint64_t at = now + next(&x) % TIMES;
			cr_assert_eq(evq_push(&q, at, 1 + npushed % 7, npushed, ~npushed), 0);
			npushed++;
			continue;
		}
		uint64_t due = evq_next_at(&q);
		struct evq_ev e = evq_pop(&q);
		cr_assert_eq(e.at, due);
		cr_assert_geq(e.at, now);
		cr_assert_eq(e.kind, 1 + e.a % 7);
		cr_assert_eq(e.b, ~e.a);
		cr_assert_eq(e.seq, e.a, "seq counts pushes");
		if (e.at == now && npopped > 0)
			cr_assert_gt(e.seq, popped[npopped - 1].seq, "ties come out in push order");
		now = e.at;
		popped[npopped++] = e;
	}
	cr_assert_eq(evq_len(&q), 0);
	cr_assert_leq(q.cap, NEVENTS);
	evq_free(&q);
}

Test(evq, all_pushed_first_come_out_sorted)
{
	static struct evq_ev pushed[NEVENTS];
	struct evq q;
	uint64_t x = 0x2545f4914f6cdd1dull;

	evq_init(&q, FIRST_CAP, NEVENTS);
	for (uint32_t i = 0; i < NEVENTS; i++) {
		uint64_t at = next(&x) % TIMES;
		cr_assert_eq(evq_push(&q, at, 2, i, 0), 0);
		pushed[i] = (struct evq_ev){ .at = at, .seq = i, .kind = 2, .a = i };
	}
	qsort(pushed, NEVENTS, sizeof(pushed[0]), by_time_then_seq);
	for (uint32_t i = 0; i < NEVENTS; i++) {
		struct evq_ev e = evq_pop(&q);
		cr_assert_eq(e.at, pushed[i].at);
		cr_assert_eq(e.seq, pushed[i].seq);
		cr_assert_eq(e.a, pushed[i].a);
	}
	cr_assert_eq(evq_len(&q), 0);
	cr_assert_eq(q.cap, NEVENTS, "doubling from the first capacity, clamped to the bound");
	evq_free(&q);
}

Test(evq, bound_refuses_and_keeps_the_sequence)
{
	struct evq q;

	evq_init(&q, FIRST_CAP, SMALL_MAX);
	for (uint32_t i = 0; i < SMALL_MAX; i++)
		cr_assert_eq(evq_push(&q, 100 - i, 0, i, 0), 0);
	cr_assert_eq(q.cap, SMALL_MAX, "4, 8, then clamped to the bound");
	cr_assert_eq(evq_push(&q, 1, 0, 99, 0), PN_ELIMIT);
	cr_assert_eq(evq_len(&q), SMALL_MAX);
	struct evq_ev e = evq_pop(&q);
	cr_assert_eq(e.at, 100 - (SMALL_MAX - 1));
	cr_assert_eq(evq_push(&q, 1, 0, 7, 0), 0, "room again after a pop");
	e = evq_pop(&q);
	cr_assert_eq(e.at, 1);
	cr_assert_eq(e.seq, SMALL_MAX, "the refused push took no sequence number");
	evq_free(&q);
	cr_assert_eq(evq_len(&q), 0);
	cr_assert_eq(evq_push(&q, 5, 0, 0, 0), 0, "usable again after evq_free");
	evq_free(&q);
}
