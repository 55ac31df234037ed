/* The swarm simulator's faults (see swarm_sim_int.h, and sim/README.md,
 * "faults"): each drawn from the seed's fault stream, at a time drawn from
 * it, so a failing seed replays exactly.
 */
#include <string.h>
#include "swarm_sim_int.h"

/* Both ends of connection k learn at once that it is gone (a reset): what
 * was queued or in flight is lost. */
static void link_reset(struct ssim *s, uint32_t k)
{
	for (int side = 0; side < 2; side++) {
		struct slink *l = &s->links[k];
		if (!l->open[side])
			continue;
		uint32_t node = l->node[side];
		l->open[side] = false;
		ssim_drop_queue(s, l, side);
		ssim_link_list_remove(&s->nodes[node], k);
		if (s->nodes[node].e) {
			engine_peer_closed(s->nodes[node].e, k, now_ms(s));
			ssim_drain(s, node);
			ssim_rearm(s, node);
		}
	}
	ssim_link_maybe_free(s, k);
}

/* A random node index in [lo, hi] that pick() accepts, or SS_NONE. */
static uint32_t pick_node(struct ssim *s, uint32_t lo, uint32_t hi, bool (*ok)(const struct snode *))
{
	uint32_t span = hi - lo + 1, at = pn_prng_below(&s->fault_rng, span);
	for (uint32_t k = 0; k < span; k++) {
		uint32_t i = lo + (at + k) % span;
		if (ok(&s->nodes[i]))
			return i;
	}
	return SS_NONE;
}

static bool is_running(const struct snode *n)
{
	return n->e && !n->crashed && n->state != NS_GONE && n->state != NS_IDLE;
}

static bool is_downloading(const struct snode *n)
{
	return is_running(n) && n->state == NS_DOWNLOADING && !n->leaving;
}

/* The node's process dies: its connections close (the kernel resets them;
 * the other ends learn after the latency), its engine and everything in
 * memory are gone; the chunks it wrote stay on disk. The directory keeps its
 * entry (a crashed node does not say goodbye). */
static void crash(struct ssim *s, struct snode *n)
{
	trace(s, n->idx, "crashes, chunks", n->have_count);
	while (n->nlinks) {
		uint32_t link = n->links[n->nlinks - 1];
		ssim_close_side(s, link, side_of(&s->links[link], n->idx), false);
	}
	engine_free(n->e);
	n->e = NULL;
	n->crashed = true;
	n->find_gen++;
	n->finding = false;
	n->tick_at = SS_NEVER;
	n->expect_chunk = false;
	push(s, s->now + (uint64_t)s->p.faults.down_ms * 1000, EV_RESTART, n->idx, 0);
}

/* Registers n at the directory and offers what it holds, as node_dir.c does
 * on every (re)connection. */
void ssim_register_at_dir(struct ssim *s, struct snode *n)
{
	if (!n->e || n->crashed || n->state == NS_GONE || n->leaving || !dir_reachable(s, n))
		return;
	dir_unregister(s->dir, n->id);
	if (dir_register(s->dir, n->id, n->addr, now_ms(s)) != 0) {
		ssim_oddity(s, n->idx, "the directory refused a node", 0);
		return;
	}
	if (n->named && dir_offer(s->dir, n->id, &s->cid, SS_NAME, now_ms(s)) != 0)
		ssim_oddity(s, n->idx, "the directory refused an offer", 0);
}

/* The process starts again from its data directory: a fresh engine, the
 * download resumed from the chunks on disk with the hash list and name its
 * partial state recorded. */
void ssim_restart(struct ssim *s, struct snode *n)
{
	if (!n->crashed)
		return;
	n->crashed = false;
	n->e = ssim_engine_for(s, n);
	if (!n->e)
		return;
	s->r->restarts++;
	trace(s, n->idx, "restarts, chunks", n->have_count);
	s->last_progress_us = s->now;
	ssim_register_at_dir(s, n);
	if (n->state == NS_DOWNLOADING) {
		int r = engine_want(n->e, &s->cid, n->named ? SS_NAME : NULL, n->hashed ? s->hashes : NULL,
				    n->hashed ? n->have : NULL, now_ms(s));
		if (r != PN_OK)
			ssim_oddity(s, n->idx, "engine_want (resume) failed", (uint64_t)-r);
		ssim_drain(s, n->idx);
		ssim_rearm(s, n->idx);
		ssim_on_find(s, n);
	}
}

static void start_partition(struct ssim *s)
{
	if (s->partitioned)
		return;
	s->partitioned = true;
	s->group[0] = 0;
	for (uint32_t i = 1; i < s->nnodes; i++)
		s->group[i] = (uint8_t)pn_prng_below(&s->fault_rng, 2);
	trace(s, 0, "partition starts", 0);
	for (uint32_t k = 0; k < s->nlinks; k++) {
		struct slink *l = &s->links[k];
		if (l->in_use && (l->open[0] || l->open[1]) && !path_open(s, l->node[0], l->node[1]))
			link_reset(s, k);
	}
	push(s, s->now + (uint64_t)s->p.faults.part_ms * 1000, EV_HEAL, 0, 0);
}

/* Nodes come back to the directory one by one, as their reconnect timers fire. */
void ssim_rejoin_directory(struct ssim *s, bool only_far_side)
{
	for (uint32_t i = 0; i < s->nnodes; i++)
		if (!only_far_side || s->group[i])
			push(s, s->now + (uint64_t)pn_prng_below(&s->fault_rng, SS_REREG_SPREAD_MS) * 1000, EV_REREG, i, 0);
}

void ssim_heal(struct ssim *s)
{
	if (!s->partitioned)
		return;
	trace(s, 0, "partition heals", 0);
	ssim_rejoin_directory(s, true);
	s->partitioned = false;
	memset(s->group, 0, s->nnodes);
}

static void restart_directory(struct ssim *s)
{
	if (s->dir_down)
		return;
	struct dir_opts dopts = { .max_nodes = s->nnodes + 16, .max_results = s->p.dir_results,
				  .node_timeout_ms = UINT32_MAX, .seed = pn_prng_next(&s->fault_rng) };
	dir_free(s->dir);
	s->dir = dir_new(&dopts);
	if (!s->dir) {
		s->oom = true;
		return;
	}
	s->dir_down = true;
	trace(s, 0, "directory restarts", 0);
	push(s, s->now + (uint64_t)s->p.faults.down_ms * 1000, EV_DIR_UP, 0, 0);
}

void ssim_on_fault(struct ssim *s, enum fault_kind kind)
{
	uint32_t i;
	s->r->faults++;
	switch (kind) {
	case FAULT_RESET: {
		uint32_t at = s->nlinks ? pn_prng_below(&s->fault_rng, s->nlinks) : 0;
		for (uint32_t k = 0; k < s->nlinks; k++) {
			uint32_t link = (at + k) % s->nlinks;
			struct slink *l = &s->links[link];
			if (l->in_use && l->connected && l->open[0] && l->open[1]) {
				trace(s, l->node[0], "connection reset, link", link);
				link_reset(s, link);
				break;
			}
		}
		break;
	}
	case FAULT_STALL:
		if ((i = pick_node(s, 0, s->ndown, is_running)) != SS_NONE) {
			trace(s, i, "uplink stalls, ms", s->p.faults.stall_ms);
			s->nodes[i].stall_until_us = s->now + (uint64_t)s->p.faults.stall_ms * 1000;
			ssim_arm_shape(s, &s->nodes[i]);
		}
		break;
	case FAULT_CRASH:
		if ((i = pick_node(s, 1, s->ndown, is_downloading)) != SS_NONE)
			crash(s, &s->nodes[i]);
		break;
	case FAULT_SEED_CRASH:
		if (is_running(&s->nodes[0]))
			crash(s, &s->nodes[0]);
		break;
	case FAULT_PARTITION:
		start_partition(s);
		break;
	case FAULT_DIR_RESTART:
		restart_directory(s);
		break;
	}
}

/* Draws every fault's time and kind from the seed. */
void ssim_schedule_faults(struct ssim *s)
{
	const struct swarm_sim_faults *f = &s->p.faults;
	struct { uint32_t count; enum fault_kind kind; } plan[] = {
		{ f->resets, FAULT_RESET },         { f->stalls, FAULT_STALL },
		{ f->crashes, FAULT_CRASH },        { f->partitions, FAULT_PARTITION },
		{ f->dir_restarts, FAULT_DIR_RESTART },
	};
	for (size_t j = 0; j < sizeof(plan) / sizeof(plan[0]); j++)
		for (uint32_t k = 0; k < plan[j].count; k++) {
			enum fault_kind kind = plan[j].kind;
			if (kind == FAULT_CRASH && k == 0 && f->seed_crash)
				kind = FAULT_SEED_CRASH;
			uint64_t at = (uint64_t)pn_prng_below(&s->fault_rng, f->window_ms + 1) * 1000;
			push(s, at, EV_FAULT, kind, 0);
		}
}
