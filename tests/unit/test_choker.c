/* Upload choker: driven with hand-made events and a fake clock. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include "peernet.h"
#include "proto/choker.h"

#define NPEERS_MAX 64

/* What the caller would have told each peer, rebuilt from the actions. */
struct view {
	bool unchoked[NPEERS_MAX];
};

static uint32_t drain(struct choker *c, struct view *v)
{
	struct choker_action a;
	uint32_t n = 0;

	while (choker_next_action(c, &a)) {
		cr_assert_lt(a.peer, NPEERS_MAX);
		bool unchoke = a.type == CHOKER_UNCHOKE;

		cr_assert_neq(v->unchoked[a.peer], unchoke, "redundant action for peer %u", a.peer);
		v->unchoked[a.peer] = unchoke;
		cr_assert_lt(++n, 10 * NPEERS_MAX);
	}
	return n;
}

static uint32_t count_unchoked(const struct choker *c, uint32_t npeers)
{
	uint32_t n = 0;

	for (uint32_t p = 0; p < npeers; p++)
		n += choker_is_unchoked(c, p);
	return n;
}

static void check_view(const struct choker *c, const struct view *v, uint32_t npeers)
{
	for (uint32_t p = 0; p < npeers; p++)
		cr_assert_eq(v->unchoked[p], choker_is_unchoked(c, p), "peer %u out of step", p);
}

static struct choker *mk(uint32_t slots, uint64_t seed)
{
	struct choker_opts o = { .slots = slots, .rechoke_ms = 10000, .optimistic_ms = 30000, .seed = seed };
	struct choker *c = choker_new(&o, 0);

	cr_assert_not_null(c);
	return c;
}

Test(choker, newcomer_unchoked_at_once_when_a_slot_is_free)
{
	struct choker *c = mk(2, 1);
	struct view v = { { false } };

	for (uint32_t p = 0; p < 5; p++)
		cr_assert_eq(choker_peer_add(c, p, 0), 0);
	cr_assert_eq(drain(c, &v), 0, "peers start choked");
	choker_interested(c, 0, true, 1);
	cr_assert(choker_is_unchoked(c, 0));
	choker_interested(c, 1, true, 1);
	choker_interested(c, 2, true, 1); /* the optimistic slot */
	choker_interested(c, 3, true, 1);
	cr_assert_eq(count_unchoked(c, 5), 3);
	cr_assert_not(choker_is_unchoked(c, 3), "every slot is taken");
	drain(c, &v);
	check_view(c, &v, 5);
	cr_assert_eq(choker_next_wakeup(c), 10000);
	choker_free(c);
}

Test(choker, not_interested_never_unchoked)
{
	struct choker *c = mk(3, 2);
	struct view v = { { false } };

	for (uint32_t p = 0; p < 6; p++)
		cr_assert_eq(choker_peer_add(c, p, 0), 0);
	for (uint32_t p = 0; p < 6; p++)
		choker_bytes_from(c, p, 1000 * (p + 1)); /* big uploaders, but not interested */
	for (uint64_t t = 0; t <= 120000; t += 1000) {
		choker_tick(c, t);
		drain(c, &v);
		cr_assert_eq(count_unchoked(c, 6), 0);
	}
	choker_interested(c, 4, true, 121000);
	cr_assert(choker_is_unchoked(c, 4));
	choker_interested(c, 4, false, 122000);
	cr_assert_not(choker_is_unchoked(c, 4), "losing interest chokes at once");
	drain(c, &v);
	check_view(c, &v, 6);
	choker_free(c);
}

Test(choker, reciprocation_ranking)
{
	struct choker *c = mk(2, 3);
	struct view v = { { false } };

	for (uint32_t p = 0; p < 6; p++) {
		cr_assert_eq(choker_peer_add(c, p, 0), 0);
		choker_interested(c, p, true, 0);
	}
	/* Period 1: peers 4 and 5 send the most; the others little. */
	for (uint32_t p = 0; p < 6; p++)
		choker_bytes_from(c, p, p >= 4 ? 100000 * p : p);
	choker_bytes_to(c, 0, 1u << 30); /* what we sent does not count when leeching */
	choker_tick(c, 10000);
	drain(c, &v);
	cr_assert(choker_is_unchoked(c, 4));
	cr_assert(choker_is_unchoked(c, 5));
	cr_assert_eq(count_unchoked(c, 6), 3, "two regular slots and one optimistic");
	check_view(c, &v, 6);

	/* Period 2: peers 1 and 2 take over; 4 and 5 go quiet. */
	choker_bytes_from(c, 1, 500000);
	choker_bytes_from(c, 2, 400000);
	choker_tick(c, 20000);
	drain(c, &v);
	cr_assert(choker_is_unchoked(c, 1));
	cr_assert(choker_is_unchoked(c, 2));
	cr_assert_leq(choker_is_unchoked(c, 4) + choker_is_unchoked(c, 5), 1, "at most one as optimistic");
	cr_assert_eq(count_unchoked(c, 6), 3);
	check_view(c, &v, 6);
	choker_free(c);
}

Test(choker, seeding_ranking)
{
	struct choker *c = mk(1, 4);
	struct view v = { { false } };

	choker_set_seeding(c, true);
	for (uint32_t p = 0; p < 5; p++) {
		cr_assert_eq(choker_peer_add(c, p, 0), 0);
		choker_interested(c, p, true, 0);
	}
	for (uint32_t p = 0; p < 5; p++)
		choker_bytes_from(c, p, 1000000); /* the same for all: irrelevant when seeding */
	choker_bytes_to(c, 3, 900000);
	choker_bytes_to(c, 1, 100000);
	choker_tick(c, 10000);
	drain(c, &v);
	cr_assert(choker_is_unchoked(c, 3), "fastest taker holds the slot");
	choker_bytes_to(c, 1, 900000);
	choker_bytes_to(c, 3, 10);
	choker_tick(c, 20000);
	drain(c, &v);
	cr_assert(choker_is_unchoked(c, 1));
	cr_assert_eq(count_unchoked(c, 5), 2);
	check_view(c, &v, 5);
	choker_free(c);
}

Test(choker, optimistic_slot_rotates)
{
	enum { N = 8 };
	struct choker *c = mk(1, 5);
	struct view v = { { false } };
	uint32_t seen[N] = { 0 };
	uint32_t prev = UINT32_MAX, changes = 0, rotations = 0;

	for (uint32_t p = 0; p < N; p++) {
		cr_assert_eq(choker_peer_add(c, p, 0), 0);
		choker_interested(c, p, true, 0);
	}
	for (uint32_t p = 1; p < N; p++)
		if (choker_is_unchoked(c, p))
			prev = p;
	cr_assert_neq(prev, UINT32_MAX, "the optimistic slot is filled at once");
	/* Peer 0 always uploads most: it keeps the regular slot. */
	for (uint64_t t = 10000; t <= 30000 * 40; t += 10000) {
		choker_bytes_from(c, 0, 1000000);
		choker_tick(c, t);
		drain(c, &v);
		check_view(c, &v, N);
		cr_assert(choker_is_unchoked(c, 0));
		cr_assert_eq(count_unchoked(c, N), 2);
		uint32_t opt = UINT32_MAX;

		for (uint32_t p = 1; p < N; p++)
			if (choker_is_unchoked(c, p))
				opt = p;
		cr_assert_neq(opt, UINT32_MAX);
		if (t % 30000 == 0) {
			rotations++;
			changes += opt != prev;
			seen[opt]++;
		} else {
			cr_assert_eq(opt, prev, "the optimistic slot moved between rotations");
		}
		prev = opt;
	}
	cr_assert_eq(changes, rotations, "each rotation picks another peer");
	uint32_t distinct = 0;

	for (uint32_t p = 1; p < N; p++)
		distinct += seen[p] > 0;
	cr_assert_geq(distinct, 5, "only %u of 7 peers got the optimistic slot", distinct);
	cr_assert_eq(seen[0], 0);
	choker_free(c);
}

Test(choker, removal_frees_slot_at_once)
{
	struct choker *c = mk(1, 6);
	struct view v = { { false } };

	for (uint32_t p = 0; p < 4; p++) {
		cr_assert_eq(choker_peer_add(c, p, 0), 0);
		choker_interested(c, p, true, 0);
	}
	cr_assert_eq(count_unchoked(c, 4), 2);
	drain(c, &v);
	for (uint32_t p = 0; p < 4; p++) {
		if (!choker_is_unchoked(c, p))
			continue;
		choker_peer_remove(c, p);
		cr_assert_not(choker_is_unchoked(c, p));
		cr_assert_eq(count_unchoked(c, 4), 2, "a waiting peer took the slot");
		v.unchoked[p] = false; /* nothing is said to a removed peer */
		drain(c, &v);
		check_view(c, &v, 4);
		break;
	}
	choker_free(c);
}

Test(choker, deterministic_with_seed)
{
	bool a[40], b[40];

	for (int run = 0; run < 2; run++) {
		struct choker *c = mk(2, 99);
		struct view v = { { false } };
		bool *out = run ? b : a;

		for (uint32_t p = 0; p < 10; p++) {
			cr_assert_eq(choker_peer_add(c, p, 0), 0);
			choker_interested(c, p, true, 0);
		}
		for (int k = 0; k < 4; k++) {
			choker_tick(c, 30000 * (uint64_t)(k + 1));
			drain(c, &v);
			for (uint32_t p = 0; p < 10; p++)
				out[k * 10 + (int)p] = choker_is_unchoked(c, p);
		}
		choker_free(c);
	}
	cr_assert_arr_eq(a, b, sizeof(a));
}

/* Random events: never more than slots+1 unchoked, only interested ones, and
 * the actions always bring the caller's view in step. */
Test(choker, random_events_keep_bounds)
{
	enum { N = 40, SLOTS = 3 };
	struct choker *c = mk(SLOTS, 7);
	struct view v = { { false } };
	bool present[N] = { false }, interested[N] = { false };
	uint64_t now = 0;

	srand(77);
	for (int step = 0; step < 20000; step++) {
		uint32_t p = (uint32_t)rand() % N;

		now += (uint64_t)(rand() % 700);
		switch (rand() % 6) {
		case 0:
			if (!present[p]) {
				cr_assert_eq(choker_peer_add(c, p, now), 0);
				present[p] = true;
			} else {
				cr_assert_eq(choker_peer_add(c, p, now), PN_EEXIST);
			}
			break;
		case 1:
			choker_peer_remove(c, p);
			present[p] = interested[p] = false;
			v.unchoked[p] = false;
			break;
		case 2:
		case 3:
			choker_interested(c, p, !interested[p], now);
			interested[p] = present[p] && !interested[p];
			break;
		case 4:
			choker_bytes_from(c, p, (uint64_t)rand());
			choker_bytes_to(c, p, (uint64_t)rand());
			break;
		default:
			choker_tick(c, now);
			cr_assert_gt(choker_next_wakeup(c), now);
			break;
		}
		drain(c, &v);
		check_view(c, &v, N);
		uint32_t n = 0, waiting = 0;

		for (uint32_t q = 0; q < N; q++) {
			if (choker_is_unchoked(c, q)) {
				cr_assert(interested[q], "peer %u unchoked without interest", q);
				n++;
			} else {
				waiting += interested[q];
			}
		}
		cr_assert_leq(n, SLOTS + 1);
		if (waiting)
			cr_assert_eq(n, SLOTS + 1, "a slot stays free while %u wait", waiting);
	}
	choker_free(c);
}

Test(choker, max_peers_bound)
{
	struct choker *c = mk(0, 8);

	for (uint32_t p = 0; p < CHOKER_MAX_PEERS; p++)
		cr_assert_eq(choker_peer_add(c, p, 0), 0);
	cr_assert_eq(choker_peer_add(c, CHOKER_MAX_PEERS, 0), PN_ELIMIT);
	for (uint32_t p = 0; p < 10; p++)
		choker_interested(c, p, true, 0);
	cr_assert_eq(count_unchoked(c, CHOKER_MAX_PEERS), 5, "default 4 slots + 1");
	choker_peer_remove(c, 500);
	cr_assert_eq(choker_peer_add(c, CHOKER_MAX_PEERS, 0), 0);
	choker_free(c);
}
