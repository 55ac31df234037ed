/* Swarm scheduler: driven with hand-made events and a fake clock. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "peernet.h"
#include "proto/swarm.h"

#define MAX_ACTIONS 4096
#define BIG_TIMEOUT_MS 1000000000u
#define LARGE_PEERS 32u

struct actions {
	struct swarm_action a[MAX_ACTIONS];
	uint32_t n;
};

static void drain(struct swarm *s, struct actions *out)
{
	out->n = 0;
	while (out->n < MAX_ACTIONS && swarm_next_action(s, &out->a[out->n]))
		out->n++;
	cr_assert_lt(out->n, MAX_ACTIONS, "action queue did not run dry");
}

static uint32_t count_type(const struct actions *acts, enum swarm_action_type type, uint32_t peer)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < acts->n; i++)
		if (acts->a[i].type == type && acts->a[i].peer == peer)
			n++;
	return n;
}

static bool has_action(const struct actions *acts, enum swarm_action_type type, uint32_t peer, uint32_t index)
{
	for (uint32_t i = 0; i < acts->n; i++)
		if (acts->a[i].type == type && acts->a[i].peer == peer && acts->a[i].index == index)
			return true;
	return false;
}

static uint8_t *bm_new(uint32_t nchunks)
{
	uint8_t *bm = calloc((nchunks + 7) / 8, 1);

	cr_assert_not_null(bm);
	return bm;
}

static void bm_set(uint8_t *bm, uint32_t index)
{
	bm[index >> 3] |= (uint8_t)(0x80u >> (index & 7));
}

static uint8_t *bm_all(uint32_t nchunks)
{
	uint8_t *bm = bm_new(nchunks);

	for (uint32_t i = 0; i < nchunks; i++)
		bm_set(bm, i);
	return bm;
}

static struct swarm *mk(uint32_t nchunks, uint32_t inflight, uint32_t timeout_ms, uint64_t seed)
{
	struct swarm_opts o = { .nchunks = nchunks, .per_peer_inflight = inflight,
				.request_timeout_ms = timeout_ms, .seed = seed };
	struct swarm *s = swarm_new(&o, NULL);

	cr_assert_not_null(s);
	return s;
}

Test(swarm, rarest_first_before_common)
{
	for (uint64_t seed = 1; seed <= 50; seed++) {
		struct swarm *s = mk(64, 1, 0, seed);
		uint8_t *all = bm_all(64), *most = bm_all(64);
		struct actions acts;

		most[41 >> 3] &= (uint8_t)~(0x80u >> (41 & 7));
		cr_assert_eq(swarm_peer_add(s, 1, all, 0), 0);
		cr_assert_eq(swarm_peer_add(s, 2, most, 0), 0);
		cr_assert_eq(swarm_peer_add(s, 3, most, 0), 0);
		cr_assert_eq(swarm_availability(s, 41), 1);
		cr_assert_eq(swarm_availability(s, 40), 3);
		swarm_peer_choked(s, 1, false, 0);
		drain(s, &acts);
		cr_assert_eq(acts.n, 1);
		cr_assert(has_action(&acts, SWARM_REQUEST, 1, 41), "seed %llu asked for %u",
			  (unsigned long long)seed, acts.a[0].index);
		free(all);
		free(most);
		swarm_free(s);
	}
}

Test(swarm, rarest_order_then_end_game)
{
	/* Peer p holds chunks p..7, so chunk i is held by i+1 peers. */
	struct swarm *s = mk(8, 8, 0, 7);
	struct actions acts;
	uint8_t *bm = bm_new(8);

	for (uint32_t peer = 0; peer < 8; peer++) {
		memset(bm, 0, 1);
		for (uint32_t i = peer; i < 8; i++)
			bm_set(bm, i);
		cr_assert_eq(swarm_peer_add(s, peer, bm, 0), 0);
	}
	for (uint32_t i = 0; i < 8; i++)
		cr_assert_eq(swarm_availability(s, i), i + 1);
	swarm_peer_choked(s, 7, false, 0); /* holds only chunk 7 */
	swarm_peer_choked(s, 0, false, 0); /* holds all */
	drain(s, &acts);
	cr_assert_eq(count_type(&acts, SWARM_REQUEST, 7), 1);
	cr_assert(has_action(&acts, SWARM_REQUEST, 7, 7));
	/* Peer 0 is asked in rarest order 0..6; chunk 7, asked of peer 7, comes
	 * last as the end-game copy. */
	uint32_t expect = 0;

	for (uint32_t i = 0; i < acts.n; i++) {
		if (acts.a[i].peer != 0)
			continue;
		cr_assert_eq(acts.a[i].index, expect, "got %u want %u", acts.a[i].index, expect);
		expect++;
	}
	cr_assert_eq(expect, 8);
	free(bm);
	swarm_free(s);
}

Test(swarm, per_peer_inflight_bound)
{
	struct swarm *s = mk(100, 4, 0, 3);
	uint8_t *all = bm_all(100);
	struct actions acts;
	uint32_t inflight[100] = { 0 }, n = 0;

	cr_assert_eq(swarm_peer_add(s, 9, all, 0), 0);
	swarm_peer_choked(s, 9, false, 0);
	drain(s, &acts);
	cr_assert_eq(acts.n, 4);
	for (uint32_t i = 0; i < acts.n; i++)
		inflight[n++] = acts.a[i].index;
	/* Answer one at a time: each answer opens exactly one slot. */
	for (uint32_t step = 0; step < 96; step++) {
		cr_assert(swarm_chunk_received(s, 9, inflight[step], true, step));
		drain(s, &acts);
		cr_assert_eq(acts.n, 1);
		cr_assert_eq(acts.a[0].type, SWARM_REQUEST);
		inflight[n++] = acts.a[0].index;
	}
	cr_assert_eq(n, 100);
	free(all);
	swarm_free(s);
}

Test(swarm, choked_peers_get_nothing_and_unchoke_fills_slots)
{
	struct swarm *s = mk(50, 5, 0, 11);
	uint8_t *all = bm_all(50);
	struct actions acts;

	cr_assert_eq(swarm_peer_add(s, 1, all, 0), 0);
	cr_assert_eq(swarm_peer_add(s, 2, all, 0), 0);
	cr_assert_eq(swarm_peer_wanted(s, 1), 50);
	drain(s, &acts);
	cr_assert_eq(acts.n, 0, "peers start choked");

	swarm_peer_choked(s, 2, false, 0);
	drain(s, &acts);
	cr_assert_eq(acts.n, 5);
	cr_assert_eq(count_type(&acts, SWARM_REQUEST, 2), 5);
	cr_assert_eq(count_type(&acts, SWARM_REQUEST, 1), 0);

	/* Choke drops its requests; they go to peer 1 when it unchokes. */
	uint32_t asked[5];

	for (uint32_t i = 0; i < 5; i++)
		asked[i] = acts.a[i].index;
	swarm_peer_choked(s, 2, true, 10);
	drain(s, &acts);
	cr_assert_eq(acts.n, 0);
	cr_assert_not(swarm_chunk_received(s, 2, asked[0], true, 11), "dropped by the choke");
	swarm_peer_choked(s, 1, false, 12);
	drain(s, &acts);
	cr_assert_eq(count_type(&acts, SWARM_REQUEST, 1), 5);
	free(all);
	swarm_free(s);
}

Test(swarm, end_game_duplicates_and_cancels)
{
	struct swarm *s = mk(4, 8, 0, 5);
	uint8_t *all = bm_all(4);
	struct actions acts;

	cr_assert_eq(swarm_peer_add(s, 1, all, 0), 0);
	cr_assert_eq(swarm_peer_add(s, 2, all, 0), 0);
	cr_assert_eq(swarm_peer_add(s, 3, all, 0), 0);
	swarm_peer_choked(s, 1, false, 0);
	drain(s, &acts);
	cr_assert_eq(count_type(&acts, SWARM_REQUEST, 1), 4);

	/* Everything is requested: the others duplicate, at most DUP copies each. */
	swarm_peer_choked(s, 2, false, 1);
	swarm_peer_choked(s, 3, false, 1);
	drain(s, &acts);
	uint32_t copies[4] = { 1, 1, 1, 1 };

	for (uint32_t i = 0; i < acts.n; i++) {
		cr_assert_eq(acts.a[i].type, SWARM_REQUEST);
		cr_assert_neq(acts.a[i].peer, 1u);
		copies[acts.a[i].index]++;
	}
	for (uint32_t i = 0; i < 4; i++)
		cr_assert_eq(copies[i], SWARM_ENDGAME_DUP, "chunk %u has %u copies", i, copies[i]);

	/* Chunk 0 arrives from peer 1: the duplicate is cancelled. */
	uint32_t dup_peer = 0;

	for (uint32_t i = 0; i < acts.n; i++)
		if (acts.a[i].index == 0)
			dup_peer = acts.a[i].peer;
	cr_assert(swarm_chunk_received(s, 1, 0, true, 2));
	drain(s, &acts);
	cr_assert(has_action(&acts, SWARM_CANCEL, dup_peer, 0));
	cr_assert_not(swarm_chunk_received(s, dup_peer, 0, true, 3), "cancelled copy is ignored");
	cr_assert(swarm_has(s, 0));
	free(all);
	swarm_free(s);
}

Test(swarm, bad_chunk_drops_bans_and_refetches)
{
	struct swarm *s = mk(2, 4, 0, 9);
	uint8_t *bm = bm_new(2);
	struct actions acts;

	bm_set(bm, 0);
	cr_assert_eq(swarm_peer_add(s, 1, bm, 0), 0);
	cr_assert_eq(swarm_peer_add(s, 2, bm, 0), 0);
	swarm_peer_choked(s, 1, false, 0);
	drain(s, &acts);
	cr_assert(has_action(&acts, SWARM_REQUEST, 1, 0));
	swarm_peer_choked(s, 2, false, 0);
	drain(s, &acts);
	cr_assert_eq(acts.n, 0, "chunk 1 is unrequested: no end game yet");

	cr_assert(swarm_chunk_received(s, 1, 0, false, 5));
	cr_assert(swarm_peer_banned(s, 1));
	cr_assert_eq(swarm_availability(s, 0), 1);
	drain(s, &acts);
	cr_assert(has_action(&acts, SWARM_DROP_PEER, 1, 0));
	cr_assert(has_action(&acts, SWARM_REQUEST, 2, 0), "chunk re-requested elsewhere");
	cr_assert_eq(count_type(&acts, SWARM_REQUEST, 1), 0);
	cr_assert_not(swarm_has(s, 0));

	cr_assert_eq(swarm_peer_add(s, 1, bm, 6), PN_EACCES);
	swarm_peer_remove(s, 1); /* the caller closing it is harmless */
	cr_assert(swarm_peer_banned(s, 1));
	cr_assert_eq(swarm_peer_add(s, 1, NULL, 7), PN_EACCES);
	free(bm);
	swarm_free(s);
}

Test(swarm, peer_removal_requeues)
{
	struct swarm *s = mk(32, 4, 0, 13);
	uint8_t *all = bm_all(32), *sub = bm_new(32);
	struct actions acts;

	cr_assert_eq(swarm_peer_add(s, 1, all, 0), 0);
	swarm_peer_choked(s, 1, false, 0);
	drain(s, &acts);
	cr_assert_eq(acts.n, 4);
	for (uint32_t i = 0; i < 4; i++)
		bm_set(sub, acts.a[i].index);
	/* Peer 2 holds only what peer 1 was asked for: nothing for it yet. */
	cr_assert_eq(swarm_peer_add(s, 2, sub, 1), 0);
	swarm_peer_choked(s, 2, false, 1);
	drain(s, &acts);
	cr_assert_eq(acts.n, 0);

	swarm_peer_remove(s, 1);
	for (uint32_t i = 0; i < 32; i++)
		cr_assert_eq(swarm_availability(s, i), (sub[i >> 3] & (0x80u >> (i & 7))) ? 1u : 0u);
	drain(s, &acts);
	cr_assert_eq(count_type(&acts, SWARM_REQUEST, 2), 4);
	for (uint32_t i = 0; i < acts.n; i++)
		cr_assert(sub[acts.a[i].index >> 3] & (0x80u >> (acts.a[i].index & 7)));
	free(all);
	free(sub);
	swarm_free(s);
}

Test(swarm, timeout_reissues_elsewhere)
{
	/* Chunk 1 is held by nobody, which keeps the end game off. */
	struct swarm *s = mk(2, 4, 1000, 17);
	uint8_t *bm = bm_new(2);
	struct actions acts;

	bm_set(bm, 0);
	cr_assert_eq(swarm_peer_add(s, 1, bm, 0), 0);
	cr_assert_eq(swarm_peer_add(s, 2, bm, 0), 0);
	cr_assert_eq(swarm_next_wakeup(s), UINT64_MAX);
	swarm_peer_choked(s, 1, false, 100);
	drain(s, &acts);
	cr_assert(has_action(&acts, SWARM_REQUEST, 1, 0));
	swarm_peer_choked(s, 2, false, 200);
	drain(s, &acts);
	cr_assert_eq(acts.n, 0);
	cr_assert_eq(swarm_next_wakeup(s), 1100);

	swarm_tick(s, 1099);
	drain(s, &acts);
	cr_assert_eq(acts.n, 0);
	swarm_tick(s, 1100);
	drain(s, &acts);
	cr_assert(has_action(&acts, SWARM_CANCEL, 1, 0));
	cr_assert(has_action(&acts, SWARM_REQUEST, 2, 0));
	cr_assert_eq(count_type(&acts, SWARM_REQUEST, 1), 0, "not back to the slow peer");

	/* The slow peer answers after all: accepted, and the re-issue is cancelled. */
	cr_assert(swarm_chunk_received(s, 1, 0, true, 1500));
	drain(s, &acts);
	cr_assert(has_action(&acts, SWARM_CANCEL, 2, 0));
	cr_assert(swarm_has(s, 0));
	cr_assert_eq(swarm_next_wakeup(s), UINT64_MAX);
	free(bm);
	swarm_free(s);
}

Test(swarm, timeout_shrinks_slow_peer_slots)
{
	struct swarm *s = mk(100, 4, 1000, 19);
	uint8_t *all = bm_all(100);
	struct actions acts;

	cr_assert_eq(swarm_peer_add(s, 1, all, 0), 0);
	swarm_peer_choked(s, 1, false, 0);
	drain(s, &acts);
	cr_assert_eq(acts.n, 4);
	swarm_tick(s, 1000);
	drain(s, &acts);
	cr_assert_eq(count_type(&acts, SWARM_CANCEL, 1), 4);
	cr_assert_eq(count_type(&acts, SWARM_REQUEST, 1), 0, "timed-out requests still hold the slots");
	cr_assert_eq(swarm_next_wakeup(s), 2000);
	swarm_tick(s, 2000);
	drain(s, &acts);
	uint32_t n = count_type(&acts, SWARM_REQUEST, 1);

	cr_assert(n >= 1 && n < 4, "slow peer got %u slots back", n);
	free(all);
	swarm_free(s);
}

Test(swarm, done_once)
{
	struct swarm_opts o = { .nchunks = 3 };
	uint8_t have = 0xe0;
	struct swarm *s = swarm_new(&o, &have);
	struct actions acts;

	cr_assert_not_null(s);
	cr_assert_eq(swarm_have_count(s), 3);
	drain(s, &acts);
	cr_assert_eq(acts.n, 1);
	cr_assert_eq(acts.a[0].type, SWARM_DONE);
	drain(s, &acts);
	cr_assert_eq(acts.n, 0);
	swarm_free(s);

	o.nchunks = 0;
	cr_assert_null(swarm_new(&o, NULL));
	o.nchunks = PN_MAX_CHUNKS + 1;
	cr_assert_null(swarm_new(&o, NULL));
}

Test(swarm, max_peers_bound)
{
	struct swarm *s = mk(16, 0, 0, 23);

	for (uint32_t i = 0; i < SWARM_MAX_PEERS; i++)
		cr_assert_eq(swarm_peer_add(s, 1000 + i, NULL, 0), 0);
	cr_assert_eq(swarm_peer_add(s, 5, NULL, 0), PN_ELIMIT);
	cr_assert_eq(swarm_peer_add(s, 1000, NULL, 0), PN_EEXIST);
	swarm_peer_remove(s, 1003);
	cr_assert_eq(swarm_peer_add(s, 5, NULL, 0), 0);
	cr_assert_eq(swarm_peer_add(s, 6, NULL, 0), PN_ELIMIT);
	swarm_free(s);
}

/* Peers are found by key (a hash table with deletions) through any churn of
 * adds and removes: each present key answers with its own holdings, a removed
 * key with nothing, and re-adding a present key is refused. */
Test(swarm, peer_keys_survive_churn)
{
	enum { NCHUNKS = 256, ROUNDS = 4000 };
	struct swarm *s = mk(NCHUNKS, 0, 0, 29);
	uint32_t keys[SWARM_MAX_PEERS], nkeys = 0;
	uint64_t x = 0x9e3779b97f4a7c15ull;

	for (uint32_t r = 0; r < ROUNDS; r++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		bool add = nkeys == 0 || (nkeys < SWARM_MAX_PEERS && (x & 1));
		if (add) {
			/* Keys that collide in the table's low bits, and arbitrary ones. */
			uint32_t key = (x & 2) ? (uint32_t)(x >> 40) << 9 : (uint32_t)(x >> 32);
			bool present = false;
			for (uint32_t i = 0; i < nkeys; i++)
				present |= keys[i] == key;
			uint8_t *bm = bm_new(NCHUNKS);
			for (uint32_t i = 0; i < key % NCHUNKS + 1; i++)
				bm_set(bm, i);
			cr_assert_eq(swarm_peer_add(s, key, bm, 0), present ? PN_EEXIST : 0);
			free(bm);
			if (!present)
				keys[nkeys++] = key;
		} else {
			uint32_t at = (uint32_t)(x >> 20) % nkeys;
			swarm_peer_remove(s, keys[at]);
			cr_assert_eq(swarm_peer_wanted(s, keys[at]), 0);
			keys[at] = keys[--nkeys];
		}
		for (uint32_t i = 0; i < nkeys; i++)
			cr_assert_eq(swarm_peer_wanted(s, keys[i]), keys[i] % NCHUNKS + 1, "key %u lost", keys[i]);
	}
	swarm_free(s);
}

/* Availability kept incrementally equals a recount after random events. */
Test(swarm, availability_matches_recount)
{
	enum { N = 77, PEERS = 12 };
	struct swarm *s = mk(N, 0, 0, 29);
	uint8_t bits[PEERS][(N + 7) / 8];
	bool present[PEERS] = { false };

	memset(bits, 0, sizeof(bits));
	srand(4242);
	for (int step = 0; step < 3000; step++) {
		uint32_t p = (uint32_t)rand() % PEERS;
		int op = rand() % 4;

		if (!present[p]) {
			for (uint32_t b = 0; b < sizeof(bits[p]); b++)
				bits[p][b] = (uint8_t)rand();
			cr_assert_eq(swarm_peer_add(s, p, bits[p], 0), 0);
			present[p] = true;
		} else if (op == 0) {
			swarm_peer_remove(s, p);
			present[p] = false;
		} else if (op == 1) {
			uint32_t i = (uint32_t)rand() % N;

			swarm_peer_have(s, p, i, 0);
			bm_set(bits[p], i);
		} else {
			for (uint32_t b = 0; b < sizeof(bits[p]); b++)
				bits[p][b] = (uint8_t)rand();
			swarm_peer_bitfield(s, p, bits[p], 0);
		}
		for (uint32_t i = 0; i < N; i++) {
			uint32_t count = 0;

			for (uint32_t q = 0; q < PEERS; q++)
				count += present[q] && (bits[q][i >> 3] & (0x80u >> (i & 7)));
			cr_assert_eq(swarm_availability(s, i), count);
		}
	}
	swarm_free(s);
}

struct sim_req {
	uint32_t peer;
	uint32_t index;
};

/* A download from npeers peers with random bitfields, answered in random
 * order. bad_peer (if not UINT32_MAX) corrupts every chunk; leave_peer leaves
 * halfway. Returns the largest number of times any chunk was requested. */
static uint32_t simulate(uint32_t nchunks, uint32_t npeers, uint64_t seed, uint32_t bad_peer, uint32_t leave_peer)
{
	struct swarm_opts o = { .nchunks = nchunks, .request_timeout_ms = BIG_TIMEOUT_MS, .seed = seed };
	struct swarm *s = swarm_new(&o, NULL);
	uint32_t *times = calloc(nchunks, sizeof(*times));
	uint8_t **bits = calloc(npeers, sizeof(*bits));
	uint32_t *inflight = calloc(npeers, sizeof(*inflight));
	bool *gone = calloc(npeers, sizeof(*gone));
	struct sim_req *reqs = calloc(npeers * 8, sizeof(*reqs));
	uint32_t nreqs = 0, done = 0, maxtimes = 0, received = 0;
	uint64_t now = 0;
	struct swarm_action a;

	cr_assert(s && times && bits && inflight && gone && reqs);
	srand((unsigned)seed);
	for (uint32_t p = 0; p < npeers; p++) {
		bits[p] = bm_new(nchunks);
		for (uint32_t i = 0; i < nchunks; i++)
			if (rand() % 2)
				bm_set(bits[p], i);
	}
	for (uint32_t i = 0; i < nchunks; i++) /* every chunk held by a good peer */
		bm_set(bits[(i % npeers == bad_peer || i % npeers == leave_peer) ? (i + 2) % npeers : i % npeers], i);
	for (uint32_t p = 0; p < npeers; p++) {
		cr_assert_eq(swarm_peer_add(s, p, bits[p], now), 0);
		swarm_peer_choked(s, p, false, now);
	}
	for (;;) {
		while (swarm_next_action(s, &a)) {
			switch (a.type) {
			case SWARM_REQUEST:
				cr_assert(!gone[a.peer]);
				cr_assert(bits[a.peer][a.index >> 3] & (0x80u >> (a.index & 7)), "peer lacks it");
				cr_assert_not(swarm_has(s, a.index));
				cr_assert_lt(inflight[a.peer], 8u, "inflight bound");
				inflight[a.peer]++;
				reqs[nreqs++] = (struct sim_req){ a.peer, a.index };
				if (++times[a.index] > maxtimes)
					maxtimes = times[a.index];
				break;
			case SWARM_CANCEL:
			case SWARM_DROP_PEER:
				for (uint32_t k = 0; k < nreqs; k++) {
					if (reqs[k].peer == a.peer && (a.type == SWARM_DROP_PEER || reqs[k].index == a.index)) {
						inflight[a.peer]--;
						reqs[k--] = reqs[--nreqs];
					}
				}
				if (a.type == SWARM_DROP_PEER)
					gone[a.peer] = true;
				break;
			case SWARM_DONE:
				done++;
				break;
			}
		}
		if (nreqs == 0)
			break;
		now++;
		uint32_t k = (uint32_t)rand() % nreqs;
		struct sim_req r = reqs[k];

		reqs[k] = reqs[--nreqs];
		inflight[r.peer]--;
		if (r.peer == leave_peer && ++received > nchunks / 2 && !gone[r.peer]) {
			/* It leaves with its requests unanswered. */
			gone[r.peer] = true;
			swarm_peer_remove(s, r.peer);
			for (uint32_t q = 0; q < nreqs; q++)
				if (reqs[q].peer == r.peer)
					reqs[q--] = reqs[--nreqs];
			inflight[r.peer] = 0;
			continue;
		}
		cr_assert(swarm_chunk_received(s, r.peer, r.index, r.peer != bad_peer, now));
	}
	cr_assert_eq(swarm_have_count(s), nchunks, "download incomplete: %u of %u", swarm_have_count(s), nchunks);
	cr_assert_eq(done, 1);
	cr_assert_not(swarm_next_action(s, &a));
	if (bad_peer != UINT32_MAX)
		cr_assert(swarm_peer_banned(s, bad_peer));
	for (uint32_t p = 0; p < npeers; p++)
		free(bits[p]);
	free(bits);
	free(times);
	free(inflight);
	free(gone);
	free(reqs);
	swarm_free(s);
	return maxtimes;
}

Test(swarm, simulated_download_32_peers)
{
	struct timespec t0, t1;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	uint32_t maxtimes = simulate(4096, 32, 1, UINT32_MAX, UINT32_MAX);

	clock_gettime(CLOCK_MONOTONIC, &t1);
	double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;

	cr_log_info("4096 chunks, 32 peers: %.1f ms", ms);
	cr_assert_leq(maxtimes, SWARM_ENDGAME_DUP, "a chunk was requested %u times", maxtimes);
	cr_assert_lt(ms, 1000.0, "took %.1f ms", ms);
}

Test(swarm, simulated_download_with_faults)
{
	for (uint64_t seed = 2; seed < 6; seed++) {
		/* One corrupting peer, one leaving: each can add one more request. */
		uint32_t maxtimes = simulate(1024, 16, seed, 3, 7);

		cr_assert_leq(maxtimes, SWARM_ENDGAME_DUP + 2, "a chunk was requested %u times", maxtimes);
	}
}

Test(swarm, large_swarm_pick_is_cheap)
{
	/* PN_MAX_CHUNKS chunks, 32 seeds: filling every slot stays fast. */
	struct swarm *s = mk(PN_MAX_CHUNKS, 8, 0, 31);
	uint8_t *all = bm_all(PN_MAX_CHUNKS);
	struct swarm_action a;
	uint32_t n = 0;
	struct timespec t0, t1;

	for (uint32_t p = 0; p < LARGE_PEERS; p++) {
		cr_assert_eq(swarm_peer_add(s, p, all, 0), 0);
		swarm_peer_choked(s, p, false, 0);
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (swarm_next_action(s, &a)) {
		cr_assert_eq(a.type, SWARM_REQUEST);
		n++;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;

	cr_assert_eq(n, LARGE_PEERS * 8);
	cr_log_info("%u requests over %u chunks: %.1f ms", n, PN_MAX_CHUNKS, ms);
	cr_assert_lt(ms, 1000.0);
	free(all);
	swarm_free(s);
}

Test(swarm, chunk_had_unasked_is_never_requested_and_cancels_others)
{
	struct swarm *s = mk(6, 2, BIG_TIMEOUT_MS, 3);
	uint8_t *all = bm_all(6);
	struct actions acts;

	cr_assert_eq(swarm_peer_add(s, 1, all, 0), 0);
	swarm_peer_choked(s, 1, false, 0);
	drain(s, &acts);
	cr_assert_geq(count_type(&acts, SWARM_REQUEST, 1), 1);
	uint32_t asked = acts.a[0].index, unasked = 6, first_acts = acts.n;
	struct swarm_action early[8];
	for (uint32_t i = 0; i < first_acts && i < 8; i++)
		early[i] = acts.a[i];
	for (uint32_t i = 0; i < 6 && unasked == 6; i++)
		if (!swarm_requested(s, 1, i))
			unasked = i;
	cr_assert_lt(unasked, 6u);
	/* An unasked chunk (a late answer to a withdrawn request) verified: had. */
	cr_assert(swarm_chunk_had(s, unasked, 1));
	cr_assert_not(swarm_chunk_had(s, unasked, 1), "had already");
	cr_assert(swarm_has(s, unasked));
	cr_assert_eq(swarm_have_count(s), 1);
	cr_assert_eq(swarm_peer_wanted(s, 1), 5);
	/* One that is asked of peer 1 came from elsewhere: peer 1's request is cancelled. */
	cr_assert(swarm_chunk_had(s, asked, 2));
	drain(s, &acts);
	cr_assert(has_action(&acts, SWARM_CANCEL, 1, asked));
	cr_assert_not(swarm_requested(s, 1, asked));
	/* The rest is fetched once each, never the two had. */
	uint32_t got = 2;
	for (uint32_t i = 1; i < first_acts && i < 8; i++)
		if (early[i].type == SWARM_REQUEST) {
			cr_assert(swarm_chunk_received(s, 1, early[i].index, true, 2));
			got++;
		}
	for (int round = 0; round < 20 && got < 6; round++) {
		for (uint32_t i = 0; i < acts.n; i++)
			if (acts.a[i].type == SWARM_REQUEST) {
				cr_assert_neq(acts.a[i].index, unasked);
				cr_assert_neq(acts.a[i].index, asked);
				cr_assert(swarm_chunk_received(s, 1, acts.a[i].index, true, 3 + round));
				got++;
			}
		drain(s, &acts);
	}
	cr_assert_eq(got, 6, "got %u", got);
	cr_assert_eq(swarm_have_count(s), 6);
	cr_assert_eq(swarm_peer_wanted(s, 1), 0);
	free(all);
	swarm_free(s);
}

static struct swarm *mk_moving(uint32_t nchunks, uint32_t inflight, uint32_t move_after_ms)
{
	struct swarm_opts o = { .nchunks = nchunks, .per_peer_inflight = inflight,
				.request_timeout_ms = BIG_TIMEOUT_MS, .seed = 7, .move_after_ms = move_after_ms };
	struct swarm *s = swarm_new(&o, NULL);

	cr_assert_not_null(s);
	return s;
}

/* Peer 1 holds everything and is asked for two chunks at t=0; peer 2 unchokes
 * us at t=10 holding only the first of them. Returns that chunk. */
static uint32_t busy_and_idle_holder(struct swarm *s, struct actions *acts)
{
	uint8_t *all = bm_all(8);

	cr_assert_eq(swarm_peer_add(s, 1, all, 0), 0);
	cr_assert_eq(swarm_peer_add(s, 2, NULL, 0), 0);
	swarm_peer_choked(s, 1, false, 0);
	drain(s, acts);
	cr_assert_eq(acts->n, 2);
	cr_assert_eq(count_type(acts, SWARM_REQUEST, 1), 2);
	uint32_t waiting = acts->a[0].index;

	swarm_peer_have(s, 2, waiting, 10);
	swarm_peer_choked(s, 2, false, 10);
	free(all);
	return waiting;
}

Test(swarm, waiting_request_moves_to_idle_holder)
{
	struct swarm *s = mk_moving(8, 2, 50);
	struct actions acts;
	uint32_t waiting = busy_and_idle_holder(s, &acts);

	/* Peer 2 has nothing unrequested: it gets nothing until the request at
	 * peer 1 has waited 50 ms. */
	drain(s, &acts);
	cr_assert_eq(acts.n, 0);
	swarm_tick(s, 49);
	drain(s, &acts);
	cr_assert_eq(acts.n, 0);
	swarm_tick(s, 50);
	drain(s, &acts);
	cr_assert(has_action(&acts, SWARM_CANCEL, 1, waiting));
	cr_assert(has_action(&acts, SWARM_REQUEST, 2, waiting));
	cr_assert_not(swarm_requested(s, 1, waiting));
	cr_assert(swarm_requested(s, 2, waiting));
	/* Peer 1's freed slot takes another chunk; nothing is asked twice. */
	cr_assert_eq(count_type(&acts, SWARM_REQUEST, 1), 1);
	cr_assert_eq(count_type(&acts, SWARM_CANCEL, 1), 1);
	cr_assert_eq(acts.n, 3);
	/* A peer with a request of ours pending takes no other: nothing more moves. */
	swarm_tick(s, 500);
	drain(s, &acts);
	cr_assert_eq(acts.n, 0);

	/* The CANCEL crossed the chunk: it is had, and peer 2's copy is cancelled. */
	cr_assert_not(swarm_chunk_received(s, 1, waiting, true, 501));
	cr_assert(swarm_chunk_had(s, waiting, 501));
	drain(s, &acts);
	cr_assert(has_action(&acts, SWARM_CANCEL, 2, waiting));
	cr_assert_not(swarm_requested(s, 2, waiting));
	swarm_free(s);
}

Test(swarm, requests_stay_when_moving_is_off_or_the_peer_keeps_them)
{
	for (int keep = 0; keep < 2; keep++) {
		struct swarm *s = mk_moving(8, 2, keep ? 50 : 0);
		struct actions acts;
		uint32_t waiting = busy_and_idle_holder(s, &acts);

		if (keep)
			swarm_peer_keep_requests(s, 1, true);
		swarm_tick(s, 10000);
		drain(s, &acts);
		cr_assert_eq(acts.n, 0, "keep %d: %u actions", keep, acts.n);
		cr_assert(swarm_requested(s, 1, waiting));
		cr_assert_not(swarm_requested(s, 2, waiting));
		swarm_free(s);
	}
}

Test(swarm, moved_request_is_the_rarest_waiting_one)
{
	struct swarm *s = mk_moving(16, 4, 50); /* half left unrequested: no end game */
	uint8_t *all = bm_all(16), *some = bm_new(16);
	struct actions acts;

	cr_assert_eq(swarm_peer_add(s, 1, all, 0), 0);
	cr_assert_eq(swarm_peer_add(s, 3, all, 0), 0);
	swarm_peer_choked(s, 1, false, 0);
	swarm_peer_choked(s, 3, false, 0);
	drain(s, &acts);
	cr_assert_eq(acts.n, 8);
	/* Peer 2 holds every chunk asked of peer 1; one of them also gets a
	 * fourth holder, so the other three are rarer. */
	uint32_t asked[4], n = 0;

	for (uint32_t i = 0; i < acts.n; i++)
		if (acts.a[i].peer == 1)
			asked[n++] = acts.a[i].index;
	cr_assert_eq(n, 4);
	for (uint32_t i = 0; i < 4; i++)
		bm_set(some, asked[i]);
	cr_assert_eq(swarm_peer_add(s, 2, some, 5), 0);
	cr_assert_eq(swarm_peer_add(s, 4, NULL, 5), 0);
	swarm_peer_have(s, 4, asked[0], 5);
	swarm_peer_choked(s, 2, false, 5);
	swarm_tick(s, 60);
	drain(s, &acts);
	cr_assert_eq(count_type(&acts, SWARM_REQUEST, 2), 1);
	cr_assert_eq(count_type(&acts, SWARM_CANCEL, 1), 1);
	cr_assert_not(swarm_requested(s, 2, asked[0]), "the more common chunk stays");
	free(all);
	free(some);
	swarm_free(s);
}

Test(swarm, end_game_copy_waiting_at_a_busy_peer_moves_too)
{
	struct swarm *s = mk_moving(2, 2, 50);
	uint8_t *all = bm_all(2), *first = bm_new(2);
	struct actions acts;

	cr_assert_eq(swarm_peer_add(s, 1, all, 0), 0);
	cr_assert_eq(swarm_peer_add(s, 2, all, 0), 0);
	swarm_peer_choked(s, 1, false, 0);
	swarm_peer_choked(s, 2, false, 0);
	drain(s, &acts);
	cr_assert_eq(acts.n, 4, "each chunk asked of both: the end game's two copies");
	bm_set(first, 0);
	cr_assert_eq(swarm_peer_add(s, 3, first, 10), 0);
	swarm_peer_choked(s, 3, false, 10);
	drain(s, &acts);
	cr_assert_eq(acts.n, 0, "no third copy");
	swarm_tick(s, 60);
	drain(s, &acts);
	cr_assert_eq(acts.n, 2);
	cr_assert(has_action(&acts, SWARM_REQUEST, 3, 0));
	cr_assert_eq(count_type(&acts, SWARM_CANCEL, 1) + count_type(&acts, SWARM_CANCEL, 2), 1);
	cr_assert_eq(swarm_requested(s, 1, 0) + swarm_requested(s, 2, 0), 1, "still two copies in all");
	free(all);
	free(first);
	swarm_free(s);
}

/* A reader consumes the content in order: the window's chunks go first, in
 * order, then rarest first again, so the rare chunk still leaves early. */
Test(swarm, stream_window_asks_for_the_next_chunks_in_order_then_rarest)
{
	for (uint64_t seed = 1; seed <= 20; seed++) {
		struct swarm *s = mk(64, 10, 0, seed);
		uint8_t *all = bm_all(64), *most = bm_all(64);
		struct actions acts;

		most[41 >> 3] &= (uint8_t)~(0x80u >> (41 & 7));
		swarm_set_stream_window(s, 8);
		cr_assert_eq(swarm_peer_add(s, 1, all, 0), 0);
		cr_assert_eq(swarm_peer_add(s, 2, most, 0), 0);
		cr_assert_eq(swarm_peer_add(s, 3, most, 0), 0);
		swarm_peer_choked(s, 1, false, 0);
		drain(s, &acts);
		cr_assert_eq(acts.n, 10);
		for (uint32_t i = 0; i < 8; i++)
			cr_assert(acts.a[i].type == SWARM_REQUEST && acts.a[i].index == i,
				  "seed %llu: request %u is for chunk %u", (unsigned long long)seed, i, acts.a[i].index);
		cr_assert_eq(acts.a[8].index, 41, "then the rarest chunk, not the next in order");
		swarm_free(s);

		/* Without a reader: the rare chunk first, as always. */
		s = mk(64, 10, 0, seed);
		cr_assert_eq(swarm_peer_add(s, 1, all, 0), 0);
		cr_assert_eq(swarm_peer_add(s, 2, most, 0), 0);
		cr_assert_eq(swarm_peer_add(s, 3, most, 0), 0);
		swarm_peer_choked(s, 1, false, 0);
		drain(s, &acts);
		cr_assert_eq(acts.a[0].index, 41);
		free(all);
		free(most);
		swarm_free(s);
	}
}
