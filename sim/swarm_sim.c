/* The swarm simulator (see swarm_sim.h and sim/README.md).
 *
 * Every node runs the real peer engine. The simulator is its driver: it turns
 * the engine's actions into encoded messages on simulated connections, feeds
 * the decoded messages back in at the other end, answers SEND_CHUNK and
 * WRITE_CHUNK like the real driver's store would, dials, closes, and calls
 * engine_tick at engine_next_wakeup. Discovery goes through the real
 * directory core.
 *
 * Network model. Each node's uplink is the real node's shaper: a token
 * bucket at u_i (burst max(u_i/10, 16 KiB), debt allowed) that releases one
 * whole message per turn, round-robin over the node's connections that have
 * something queued, and when the bucket is in debt sleeps until it is out of
 * it (never less than the real shaper's 5 ms timer); a control message of
 * at most 1 KiB with nothing queued before it on its connection skips the
 * queue, its bytes taken from the bucket. A released message
 * reaches the receiver after the link's latency; when the receiver has a
 * download cap its downlink serves arrivals first come first served at d_i.
 * A connection's messages arrive in order (one TCP stream). A connection
 * whose queue holds more than 512 KiB is congested (the real driver's mark
 * for a capped connection) and writable again below 256 KiB.
 *
 * Time is kept in microseconds; the engines see milliseconds. Events sit in
 * the event queue (evq.h), ordered by (time, sequence number), so a run is
 * the same on every machine.
 *
 * The types and the helpers the other files use are in swarm_sim_int.h; the
 * faults are in swarm_fault.c, the results in swarm_report.c.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "peernet.h"
#include "proto/directory.h"
#include "proto/engine.h"
#include "proto/prng.h"
#include "store/store.h"
#include "util/buf.h"
#include "wire/wire.h"
#include "swarm_sim_int.h"

/* ------------------------------------------------------------ helpers */

void ssim_oddity(struct ssim *s, uint32_t node, const char *what, uint64_t detail)
{
	s->r->engine_oddities++;
	if (s->p.diag && s->r->engine_oddities <= 20)
		fprintf(s->p.diag, "swarm-sim: t=%.3f s node %u: %s (%" PRIu64 ")\n", s->now / 1e6, node, what, detail);
}

static const char *const action_names[] = {
	[ENGINE_SEND] = "SEND", [ENGINE_SEND_CHUNK] = "SEND_CHUNK", [ENGINE_WRITE_CHUNK] = "WRITE_CHUNK",
	[ENGINE_HASHES] = "HASHES", [ENGINE_NAME] = "NAME", [ENGINE_DIAL] = "DIAL", [ENGINE_CLOSE] = "CLOSE",
	[ENGINE_PEER_READY] = "PEER_READY", [ENGINE_DONE] = "DONE", [ENGINE_STALLED] = "STALLED",
	[ENGINE_NOT_FOUND] = "NOT_FOUND", [ENGINE_PEER_ERROR] = "PEER_ERROR",
};

/* The node at the other end of link k from node, or SS_NONE. */
static uint32_t other_end(const struct ssim *s, uint32_t node, uint32_t k)
{
	if (k >= s->nlinks)
		return SS_NONE;
	const struct slink *l = &s->links[k];
	return l->node[0] == node ? l->node[1] : l->node[1] == node ? l->node[0] : SS_NONE;
}

static void trace_action(const struct ssim *s, uint32_t node, const struct engine_action *a)
{
	const char *name = a->type > 0 && a->type <= ENGINE_PEER_ERROR ? action_names[a->type] : "?";
	fprintf(s->p.trace, "%10.3f n%-5u %-11s", s->now / 1e3, node, name);
	switch (a->type) {
	case ENGINE_SEND:
		fprintf(s->p.trace, " -> n%u type 0x%02x", other_end(s, node, a->peer), a->msg.type);
		if (a->msg.type == PN_MSG_CHUNK_REQ || a->msg.type == PN_MSG_CANCEL)
			fprintf(s->p.trace, " chunk %u", a->msg.u.ref.index);
		else if (a->msg.type == PN_MSG_HAVE)
			fprintf(s->p.trace, " chunk %u", a->msg.u.cidref.index);
		break;
	case ENGINE_SEND_CHUNK:
	case ENGINE_WRITE_CHUNK:
		fprintf(s->p.trace, " %s n%u chunk %u", a->type == ENGINE_SEND_CHUNK ? "->" : "<-",
			other_end(s, node, a->peer), a->index);
		break;
	case ENGINE_CLOSE:
		fprintf(s->p.trace, " n%u link %u err %d%s (%s)", other_end(s, node, a->peer), a->peer, a->err,
			a->ban ? " ban" : "", a->why ? a->why : "");
		break;
	case ENGINE_DIAL:
		fprintf(s->p.trace, " %s", a->addr);
		break;
	default:
		if (a->type == ENGINE_PEER_READY)
			fprintf(s->p.trace, " n%u", other_end(s, node, a->peer));
	}
	fputc('\n', s->p.trace);
}

static struct smsg *msg_new(struct ssim *s)
{
	struct smsg *m = s->free_msgs;
	if (m)
		s->free_msgs = m->next;
	else if (!(m = malloc(sizeof(*m)))) {
		s->oom = true;
		return NULL;
	} else
		s->r->msgs_allocated++;
	memset(m, 0, offsetof(struct smsg, small));
	return m;
}

static void msg_free(struct ssim *s, struct smsg *m)
{
	if (m->frame && m->frame != m->small)
		free(m->frame);
	m->next = s->free_msgs;
	s->free_msgs = m;
}

static void msgs_free_list(struct ssim *s, struct smsg **head, struct smsg **tail)
{
	while (*head) {
		struct smsg *m = *head;
		*head = m->next;
		msg_free(s, m);
	}
	*tail = NULL;
}

static uint32_t rand_between(struct pn_prng *rng, uint32_t lo, uint32_t hi)
{
	return hi > lo ? lo + pn_prng_below(rng, hi - lo + 1) : lo;
}

/* ------------------------------------------------------------ the store */

/* What a node holds outside its engine: the seed and the malicious nodes the
 * whole file from the start, a downloader the whole file once it is done (a
 * downloader's partial state lives in its engine). */
static bool store_lookup(void *ud, const struct pn_cid *cid, struct engine_content *out)
{
	struct snode *n = ud;
	if (!n->holds_all || memcmp(cid, &n->s->cid, sizeof(*cid)) != 0)
		return false;
	out->name = SS_NAME;
	out->hashes = n->s->hashes;
	out->bitmap = NULL;
	return true;
}

static void bucket_refill(struct ssim *s, struct snode *n);

/* What waits behind the node's upload cap, and the cap's debt (node.c: the
 * sum of pn_conn_queued plus pn_net_upload_debt). */
static uint64_t store_backlog(void *ud)
{
	struct snode *n = ud;
	uint64_t debt = 0;
	if (n->up_rate) {
		bucket_refill(n->s, n);
		if (n->tokens < 0)
			debt = (uint64_t)ceil(-n->tokens);
	}
	return n->backlog + debt;
}

static const struct engine_store_ops store_ops = { .lookup = store_lookup, .backlog = store_backlog };

/* ------------------------------------------------------------ links */

static void link_list_add(struct ssim *s, struct snode *n, uint32_t link)
{
	if (n->nlinks == n->links_cap) {
		uint32_t cap = n->links_cap ? 2 * n->links_cap : 8;
		uint32_t *l = realloc(n->links, cap * sizeof(*l));
		if (!l) {
			s->oom = true;
			return;
		}
		n->links = l;
		n->links_cap = cap;
	}
	n->links[n->nlinks++] = link;
}

void ssim_link_list_remove(struct snode *n, uint32_t link)
{
	for (uint32_t i = 0; i < n->nlinks; i++)
		if (n->links[i] == link) {
			n->links[i] = n->links[--n->nlinks];
			return;
		}
}

static uint32_t link_init(struct ssim *s, uint32_t k, uint32_t from, uint32_t to);

/* A link event: the link's slot is not reused while it is queued. */
static void push_link(struct ssim *s, uint64_t at, uint32_t kind, uint32_t link, uint32_t b)
{
	s->links[link].refs++;
	push(s, at, kind, link, b);
}

/* Puts a link's slot back for reuse once nothing refers to it any more:
 * both ends closed, no message queued or in flight, no event queued, not in
 * a shaper's ring. (The slot number is the engines' peer key, which may be
 * reused after engine_peer_closed.) */
void ssim_link_maybe_free(struct ssim *s, uint32_t k)
{
	struct slink *l = &s->links[k];
	if (!l->in_use || l->refs || l->open[0] || l->open[1])
		return;
	for (int d = 0; d < 2; d++)
		if (l->q[d].head || l->q[d].fhead || l->q[d].active || l->q[d].deliver_armed)
			return;
	l->in_use = false;
	l->next_free = s->free_links;
	s->free_links = k;
}

static uint32_t link_new(struct ssim *s, uint32_t from, uint32_t to)
{
	s->dials++;
	if (s->free_links != SS_NONE) {
		uint32_t k = s->free_links;
		s->free_links = s->links[k].next_free;
		return link_init(s, k, from, to);
	}
	if (s->nlinks == s->links_cap) {
		uint32_t cap = s->links_cap ? 2 * s->links_cap : 1024;
		struct slink *l = realloc(s->links, (size_t)cap * sizeof(*l));
		if (!l) {
			s->oom = true;
			return SS_NONE;
		}
		s->links = l;
		s->links_cap = cap;
	}
	return link_init(s, s->nlinks++, from, to);
}

static uint32_t link_init(struct ssim *s, uint32_t k, uint32_t from, uint32_t to)
{
	struct slink *l = &s->links[k];
	memset(l, 0, sizeof(*l));
	l->in_use = true;
	l->node[0] = from;
	l->node[1] = to;
	l->lat_us = rand_between(&s->net_rng, s->p.lat_min_us, s->p.lat_max_us);
	for (int d = 0; d < 2; d++)
		l->q[d].next_active = SS_NONE;
	return k;
}

/* Drops what node[side] had queued and not yet sent on this link. */
void ssim_drop_queue(struct ssim *s, struct slink *l, int side)
{
	struct dirq *q = &l->q[side];
	msgs_free_list(s, &q->head, &q->tail);
	s->nodes[l->node[side]].backlog -= q->queued;
	q->queued = 0;
	q->above_high = false;
	/* A ring entry left behind finds the queue empty and is skipped. */
}

/* node[side] is done with the connection (closed it, or left): its engine
 * forgets it (unless the node is gone) and the other end hears of it after
 * the latency, behind whatever was already on its way. */
void ssim_close_side(struct ssim *s, uint32_t link, int side, bool tell_engine)
{
	struct slink *l = &s->links[link];
	if (!l->open[side])
		return;
	struct snode *n = &s->nodes[l->node[side]];
	l->open[side] = false;
	ssim_drop_queue(s, l, side);
	ssim_link_list_remove(n, link);
	if (tell_engine && n->e)
		engine_peer_closed(n->e, link, now_ms(s));
	int other = 1 - side;
	if (l->open[other]) {
		uint64_t at = s->now + l->lat_us;
		if (l->q[side].last_arrive_us > at)
			at = l->q[side].last_arrive_us;
		push_link(s, at, EV_FIN, link, (uint32_t)other);
	}
	ssim_link_maybe_free(s, link);
}

/* ------------------------------------------------------------ uplink */

static void bucket_refill(struct ssim *s, struct snode *n)
{
	if (!n->up_rate || s->now <= n->bucket_us)
		return;
	n->tokens += (double)(s->now - n->bucket_us) * (double)n->up_rate / 1e6;
	if (n->tokens > n->burst)
		n->tokens = n->burst;
	n->bucket_us = s->now;
}

static void ring_push(struct ssim *s, struct snode *n, uint32_t qid)
{
	struct dirq *q = &s->links[qid / 2].q[qid % 2];
	q->active = true;
	q->next_active = SS_NONE;
	if (n->ring_tail == SS_NONE)
		n->ring_head = qid;
	else
		s->links[n->ring_tail / 2].q[n->ring_tail % 2].next_active = qid;
	n->ring_tail = qid;
}

static uint32_t ring_pop(struct ssim *s, struct snode *n)
{
	uint32_t qid = n->ring_head;
	struct dirq *q = &s->links[qid / 2].q[qid % 2];
	n->ring_head = q->next_active;
	if (n->ring_head == SS_NONE)
		n->ring_tail = SS_NONE;
	q->active = false;
	q->next_active = SS_NONE;
	return qid;
}

void ssim_arm_shape(struct ssim *s, struct snode *n)
{
	if (n->shape_armed || n->ring_head == SS_NONE)
		return;
	uint64_t wait = n->up_rate ? (uint64_t)s->p.shape_tick_ms * 1000 : 0;
	if (n->up_rate) {
		bucket_refill(s, n);
		if (n->tokens < 0) {
			uint64_t debt = (uint64_t)ceil(-n->tokens * 1e6 / (double)n->up_rate);
			if (debt > wait)
				wait = debt;
		}
	}
	if (n->stall_until_us > s->now + wait)
		wait = n->stall_until_us - s->now;
	n->shape_armed = true;
	push(s, s->now + wait, EV_SHAPE, n->idx, 0);
}

/* Puts a released message on the wire towards node[1 - side]. */
static void release(struct ssim *s, uint32_t link, int side, struct smsg *m)
{
	struct slink *l = &s->links[link];
	struct dirq *q = &l->q[side];
	struct snode *to = &s->nodes[l->node[1 - side]];
	uint64_t at = s->now + l->lat_us;
	if (to->down_rate) {
		if (to->down_busy_us > at)
			at = to->down_busy_us;
		at += (uint64_t)m->size * 1000000u / to->down_rate;
		to->down_busy_us = at;
	}
	if (at < q->last_arrive_us)
		at = q->last_arrive_us; /* one stream: never overtakes */
	q->last_arrive_us = at;
	m->arrive_us = at;
	m->next = NULL;
	if (q->ftail)
		q->ftail->next = m;
	else
		q->fhead = m;
	q->ftail = m;
	if (!q->deliver_armed) {
		q->deliver_armed = true;
		push_link(s, at, EV_DELIVER, link, (uint32_t)side);
	}
}

static void schedule_leave(struct ssim *s, struct snode *n)
{
	if (n->leaving || n->state == NS_GONE)
		return;
	n->leaving = true;
	push(s, s->now, EV_LEAVE, n->idx, 0);
}

/* The node's shaper: one message per connection per turn while the bucket
 * is not in debt. */
static void on_shape(struct ssim *s, struct snode *n)
{
	n->shape_armed = false;
	if (n->state == NS_GONE)
		return;
	if (s->now < n->stall_until_us) { /* a stalled path: nothing leaves yet */
		ssim_arm_shape(s, n);
		return;
	}
	bucket_refill(s, n);
	while (n->ring_head != SS_NONE && (!n->up_rate || n->tokens >= 0) && !n->leaving) {
		uint32_t qid = ring_pop(s, n);
		uint32_t link = qid / 2;
		int side = (int)(qid % 2);
		struct dirq *q = &s->links[link].q[side];
		struct smsg *m = q->head;
		if (!m) {
			ssim_link_maybe_free(s, link); /* a closed link's ring entry */
			continue;
		}
		q->head = m->next;
		if (!q->head)
			q->tail = NULL;
		q->queued -= m->size;
		n->backlog -= m->size;
		if (n->up_rate) {
			n->tokens -= m->size;
			if ((double)s->now > n->busy_until_us) {
				n->idle_us += (double)s->now - n->busy_until_us;
				n->busy_until_us = (double)s->now;
			}
			n->busy_until_us += (double)m->size * 1e6 / (double)n->up_rate;
		}
		if (m->is_chunk) {
			n->up_chunk_bytes += m->len;
			if (n->is_seed && !s->seed_sent[m->index]) {
				s->seed_sent[m->index] = 1;
				s->seed_distinct++;
			}
			/* One whole copy has left the seed (its last chunk is on
			 * the wire and arrives): it may go. */
			if (n->is_seed && s->p.seed_leaves && s->seed_distinct == s->nchunks)
				schedule_leave(s, n);
		}
		release(s, link, side, m);
		if (q->head)
			ring_push(s, n, qid);
		if (q->above_high && q->queued < SWARM_SIM_LOW_WATER) {
			q->above_high = false;
			if (n->e && s->links[link].open[side]) {
				engine_peer_writable(n->e, link, now_ms(s));
				ssim_drain(s, n->idx);
			}
		}
	}
	ssim_arm_shape(s, n);
	ssim_rearm(s, n->idx);
}

static void enqueue(struct ssim *s, struct snode *n, uint32_t link, struct smsg *m)
{
	struct slink *l = &s->links[link];
	int side = side_of(l, n->idx);
	struct dirq *q = &l->q[side];
	m->next = NULL;
	/* A small message on a connection with nothing waiting goes at once, as
	 * the real shaper lets it (PN_NET_SHAPER_BYPASS): it is counted against
	 * the rate but does not wait for the debt of the chunks before it. */
	if (!m->is_chunk && m->size <= SWARM_SIM_SHAPER_BYPASS && !q->head && s->now >= n->stall_until_us &&
	    !n->leaving && n->state != NS_GONE) {
		if (n->up_rate) {
			bucket_refill(s, n);
			n->tokens -= m->size;
			if ((double)s->now > n->busy_until_us) {
				n->idle_us += (double)s->now - n->busy_until_us;
				n->busy_until_us = (double)s->now;
			}
			n->busy_until_us += (double)m->size * 1e6 / (double)n->up_rate;
		}
		s->r->msgs++;
		s->r->wire_bytes += m->size;
		release(s, link, side, m);
		return;
	}
	if (q->tail)
		q->tail->next = m;
	else
		q->head = m;
	q->tail = m;
	q->queued += m->size;
	n->backlog += m->size;
	if (q->queued > SWARM_SIM_HIGH_WATER)
		q->above_high = true;
	if (!q->active)
		ring_push(s, n, link * 2 + (uint32_t)side);
	s->r->msgs++;
	s->r->wire_bytes += m->size;
	ssim_arm_shape(s, n);
}

/* ------------------------------------------------------------ actions */

static bool link_usable(struct ssim *s, struct snode *n, uint32_t link)
{
	if (link >= s->nlinks)
		return false;
	struct slink *l = &s->links[link];
	if (l->node[0] != n->idx && l->node[1] != n->idx)
		return false;
	return l->open[side_of(l, n->idx)];
}

static void act_send(struct ssim *s, struct snode *n, const struct engine_action *a)
{
	if (!link_usable(s, n, a->peer)) {
		ssim_oddity(s, n->idx, "SEND to a peer the driver has closed", a->peer);
		return;
	}
	struct pn_writer w;
	pn_wr_init(&w, s->scratch, s->scratch_cap);
	int r = pn_msg_encode(&a->msg, &w);
	if (r != PN_OK) {
		ssim_oddity(s, n->idx, "SEND of a message that does not encode, type", a->msg.type);
		return;
	}
	struct smsg *m = msg_new(s);
	if (!m)
		return;
	m->size = (uint32_t)w.len;
	m->frame = w.len <= SS_SMALL_MSG ? m->small : malloc(w.len);
	if (!m->frame) {
		s->oom = true;
		msg_free(s, m);
		return;
	}
	memcpy(m->frame, s->scratch, w.len);
	enqueue(s, n, a->peer, m);
}

static void act_send_chunk(struct ssim *s, struct snode *n, const struct engine_action *a)
{
	uint32_t len = pn_cid_chunk_len(&s->cid, a->index);
	bool ok = memcmp(&a->cid, &s->cid, sizeof(a->cid)) == 0 && a->index < s->nchunks && has_chunk(n, a->index);
	if (!link_usable(s, n, a->peer)) {
		ssim_oddity(s, n->idx, "SEND_CHUNK to a peer the driver has closed", a->peer);
		return;
	}
	if (!ok) {
		ssim_oddity(s, n->idx, "SEND_CHUNK of a chunk the node does not hold", a->index);
		engine_chunk_sent(n->e, a->peer, &a->cid, a->index, len, false, false, now_ms(s));
		return;
	}
	struct smsg *m = msg_new(s);
	if (!m)
		return;
	m->is_chunk = true;
	m->req_id = a->req_id;
	m->index = a->index;
	m->len = len;
	m->size = PN_FRAME_HDR + PN_CHUNK_MSG_HDR + len;
	enqueue(s, n, a->peer, m);
	s->r->chunk_msgs++;
	struct slink *l = &s->links[a->peer];
	bool congested = l->q[side_of(l, n->idx)].queued > SWARM_SIM_HIGH_WATER;
	engine_chunk_sent(n->e, a->peer, &a->cid, a->index, len, true, congested, now_ms(s));
}

static void act_write_chunk(struct ssim *s, struct snode *n, const struct engine_action *a)
{
	if (memcmp(&a->cid, &s->cid, sizeof(a->cid)) != 0 || a->index >= s->nchunks ||
	    a->len != pn_cid_chunk_len(&s->cid, a->index)) {
		ssim_oddity(s, n->idx, "WRITE_CHUNK of a chunk that is not ours, index", a->index);
		engine_chunk_written(n->e, a->peer, &a->cid, a->index, PN_EINVAL, now_ms(s));
		return;
	}
	/* The engine hands over for verification only a chunk that just came,
	 * from the connection it came on. */
	if (!n->expect_chunk || a->peer != n->expect_link || a->index != n->expect_index)
		ssim_oddity(s, n->idx, "WRITE_CHUNK of a chunk that did not just arrive, index", a->index);
	n->expect_chunk = false;
	int result = PN_OK;
	if (link_usable(s, n, a->peer)) {
		struct slink *l = &s->links[a->peer];
		struct snode *from = &s->nodes[l->node[1 - side_of(l, n->idx)]];
		if (from->malicious) {
			result = PN_ECORRUPT;
			if (!n->malicious) {
				n->got_corrupt = true;
				n->corrupt_from = from->idx;
			}
		}
	}
	if (result == PN_OK) {
		if (has_chunk(n, a->index))
			ssim_oddity(s, n->idx, "WRITE_CHUNK of a chunk already written", a->index);
		else {
			n->have[a->index / 8] |= (uint8_t)(0x80u >> (a->index % 8));
			n->have_count++;
			s->last_progress_us = s->now;
		}
		n->down_chunk_bytes += a->len;
	}
	engine_chunk_written(n->e, a->peer, &a->cid, a->index, result, now_ms(s));
	if (n->leaver && n->have_count >= n->leave_at_have && n->state == NS_DOWNLOADING)
		schedule_leave(s, n);
}

static void act_dial(struct ssim *s, struct snode *n, const struct engine_action *a)
{
	unsigned long to = 0;
	char *end = NULL;
	if (strncmp(a->addr, "sim:", 4) == 0)
		to = strtoul(a->addr + 4, &end, 10);
	if (!end || *end || to >= s->nnodes || memcmp(s->nodes[to].id, a->id, PN_ID_BYTES) != 0) {
		ssim_oddity(s, n->idx, "DIAL of an address the directory never gave", 0);
		return;
	}
	if (to == n->idx) {
		ssim_oddity(s, n->idx, "DIAL of itself", to);
		return;
	}
	if (n->nlinks >= s->p.max_peers) { /* like node_connect_provider: no dial beyond the cap */
		s->r->refused++;
		return;
	}
	uint32_t k = link_new(s, n->idx, (uint32_t)to);
	if (k == SS_NONE)
		return;
	int r = engine_peer_add(n->e, k, true, a->id, now_ms(s));
	if (r != PN_OK) {
		if (r != PN_EACCES && r != PN_EEXIST)
			ssim_oddity(s, n->idx, "engine_peer_add (outgoing) failed", (uint64_t)-r);
		ssim_link_maybe_free(s, k);
		return;
	}
	s->links[k].open[0] = true;
	link_list_add(s, n, k);
	engine_peer_offer(n->e, k, &s->cid, now_ms(s));
	push_link(s, s->now + (uint64_t)SS_HANDSHAKE_TRIPS * s->links[k].lat_us, EV_CONNECT, k, 0);
}

static void act_done(struct ssim *s, struct snode *n, const struct engine_action *a)
{
	if (memcmp(&a->cid, &s->cid, sizeof(a->cid)) != 0 || n->state != NS_DOWNLOADING) {
		ssim_oddity(s, n->idx, "DONE for a download that is not running", n->state);
		return;
	}
	if (n->have_count != s->nchunks)
		ssim_oddity(s, n->idx, "DONE with chunks missing: held", n->have_count);
	n->state = NS_DONE;
	n->finished = true;
	n->holds_all = true;
	n->done_us = s->now;
	s->alive_downloading--;
}

void ssim_drain(struct ssim *s, uint32_t node)
{
	struct snode *n = &s->nodes[node];
	struct engine_action a;
	while (n->e && engine_next_action(n->e, &a)) {
		if (s->p.trace)
			trace_action(s, node, &a);
		switch (a.type) {
		case ENGINE_SEND:
			act_send(s, n, &a);
			break;
		case ENGINE_SEND_CHUNK:
			act_send_chunk(s, n, &a);
			break;
		case ENGINE_WRITE_CHUNK:
			act_write_chunk(s, n, &a);
			break;
		case ENGINE_HASHES:
			if (memcmp(&a.cid, &s->cid, sizeof(a.cid)) != 0 ||
			    memcmp(a.data, s->hashes, (size_t)s->nchunks * PN_HASH_BYTES) != 0)
				ssim_oddity(s, node, "HASHES that are not the file's", 0);
			n->hashed = true;
			engine_hashes_recorded(n->e, &a.cid, NULL, now_ms(s));
			break;
		case ENGINE_NAME:
			n->named = true;
			/* Not registered (yet) at a restarted directory: the offer goes with
			 * the registration (node_dir.c offers all it holds when it registers). */
			if (n->state == NS_DOWNLOADING && dir_reachable(s, n)) {
				int r = dir_offer(s->dir, n->id, &s->cid, a.name, now_ms(s));
				if (r != 0 && r != PN_ENOTFOUND)
					ssim_oddity(s, node, "the directory refused an offer", (uint64_t)-r);
				if (r == 0 && !n->finding) { /* node_get.c: node__find_after_offer */
					n->find_gen++;
					ssim_on_find(s, n);
				}
			}
			break;
		case ENGINE_DIAL:
			act_dial(s, n, &a);
			break;
		case ENGINE_CLOSE:
			if (link_usable(s, n, a.peer))
				ssim_close_side(s, a.peer, side_of(&s->links[a.peer], node), true);
			break;
		case ENGINE_DONE:
			act_done(s, n, &a);
			break;
		case ENGINE_STALLED:
			s->r->stalled_reports++;
			if (s->p.diag && s->r->stalled_reports <= 10)
				fprintf(s->p.diag, "swarm-sim: t=%.3f s node %u: ENGINE_STALLED (%u/%u chunks, %u links)\n",
					s->now / 1e6, node, n->have_count, s->nchunks, n->nlinks);
			break;
		case ENGINE_NOT_FOUND:
		case ENGINE_PEER_ERROR:
		case ENGINE_PEER_READY:
			break;
		default:
			ssim_oddity(s, node, "unknown action", a.type);
		}
	}
	if (!s->p.check || !n->e)
		return;
	const char *bad = engine_check(n->e);
	if (bad)
		ssim_oddity(s, node, bad, 0);
	struct engine_stats st;
	engine_stats(n->e, &st);
	if (st.peers != n->nlinks)
		ssim_oddity(s, node, "the engine's peers are not the driver's connections: peers", st.peers);
	if (n->nlinks > s->p.max_peers)
		ssim_oddity(s, node, "more connections than the cap", n->nlinks);
}

/* Arms the node's engine timer at engine_next_wakeup (a stale earlier event
 * is recognised by its time and skipped). */
void ssim_rearm(struct ssim *s, uint32_t node)
{
	struct snode *n = &s->nodes[node];
	if (!n->e)
		return;
	uint64_t w = engine_next_wakeup(n->e);
	if (n->up_rate && engine_uploads_waiting(n->e)) {
		/* node.c: requests wait for the backlog to drain; look again when the
		 * cap has paid its debt and what is queued has gone out. */
		uint64_t again = now_ms(s) + 1 + store_backlog(n) * 1000 / n->up_rate;
		if (again < w)
			w = again;
	}
	if (w == UINT64_MAX)
		return;
	uint64_t at = w > SS_NEVER / 1000 ? SS_NEVER : w * 1000;
	if (at < s->now + (uint64_t)s->p.timer_min_ms * 1000)
		at = s->now + (uint64_t)s->p.timer_min_ms * 1000;
	if (at < n->tick_at) {
		n->tick_at = at;
		push(s, at, EV_TICK, node, 0);
	}
}

/* ------------------------------------------------------------ events */

static void on_tick(struct ssim *s, const struct evq_ev *ev)
{
	struct snode *n = &s->nodes[ev->a];
	if (!n->e || ev->at != n->tick_at)
		return;
	n->tick_at = SS_NEVER;
	if (engine_next_wakeup(n->e) <= now_ms(s)) {
		if (n->last_tick_ms == now_ms(s)) {
			if (++n->same_ms_ticks == SS_SAME_MS_TICKS)
				ssim_oddity(s, n->idx, "engine_next_wakeup stays at the current time after ticks", now_ms(s));
		} else {
			n->last_tick_ms = now_ms(s);
			n->same_ms_ticks = 0;
		}
		engine_tick(n->e, now_ms(s));
	}
	ssim_drain(s, n->idx); /* also hands out uploads that waited for the backlog */
	ssim_rearm(s, n->idx);
}

static void deliver_one(struct ssim *s, uint32_t link, int side, struct smsg *m)
{
	struct slink *l = &s->links[link];
	int to_side = 1 - side;
	struct snode *to = &s->nodes[l->node[to_side]];
	if (!l->open[to_side] || !to->e)
		return;
	struct pn_msg msg;
	if (m->is_chunk) {
		memset(&msg, 0, sizeof(msg));
		msg.type = PN_MSG_CHUNK;
		msg.u.chunk.req_id = m->req_id;
		msg.u.chunk.cid = s->cid;
		msg.u.chunk.index = m->index;
		msg.u.chunk.len = m->len;
		msg.u.chunk.data = s->dummy;
	} else if (pn_msg_decode(m->frame + PN_FRAME_HDR, m->size - PN_FRAME_HDR, &msg) != PN_OK) {
		ssim_oddity(s, to->idx, "a frame that does not decode, type", m->frame[PN_FRAME_HDR]);
		return;
	}
	to->expect_chunk = m->is_chunk;
	to->expect_link = link;
	to->expect_index = m->index;
	int r = engine_on_msg(to->e, link, &msg, now_ms(s));
	if (r < 0 && r != PN_ENOTSUP) {
		/* The peer broke the protocol: the driver closes (the engine may have said why). */
		s->r->protocol_closes++;
		ssim_drain(s, to->idx);
		if (s->links[link].open[to_side])
			ssim_close_side(s, link, to_side, true);
	}
	ssim_drain(s, to->idx);
	to->expect_chunk = false;
	ssim_rearm(s, to->idx);
}

static void on_deliver(struct ssim *s, const struct evq_ev *ev)
{
	uint32_t link = ev->a;
	int side = (int)ev->b;
	struct dirq *q = &s->links[link].q[side];
	q->deliver_armed = false;
	while (q->fhead && q->fhead->arrive_us <= s->now) {
		struct smsg *m = q->fhead;
		q->fhead = m->next;
		if (!q->fhead)
			q->ftail = NULL;
		deliver_one(s, link, side, m);
		msg_free(s, m);
		q = &s->links[link].q[side]; /* the links array may have moved */
	}
	if (q->fhead) {
		q->deliver_armed = true;
		push_link(s, q->fhead->arrive_us, EV_DELIVER, link, (uint32_t)side);
	}
}

static void on_connect(struct ssim *s, const struct evq_ev *ev)
{
	uint32_t k = ev->a;
	struct slink *l = &s->links[k];
	struct snode *a = &s->nodes[l->node[0]], *b = &s->nodes[l->node[1]];
	if (!l->open[0] || !a->e)
		return; /* the dialler gave up on it */
	bool ok = b->e && b->state != NS_GONE && b->state != NS_IDLE && b->nlinks < s->p.max_peers &&
		  path_open(s, a->idx, b->idx);
	if (ok) {
		int r = engine_peer_add(b->e, k, false, NULL, now_ms(s));
		if (r != PN_OK) {
			ssim_oddity(s, b->idx, "engine_peer_add (incoming) failed", (uint64_t)-r);
			ok = false;
		}
	}
	if (!ok) {
		trace(s, a->idx, "refused by", b->idx);
		s->r->refused++;
		l->open[0] = false;
		ssim_link_list_remove(a, k);
		engine_peer_closed(a->e, k, now_ms(s));
		ssim_drain(s, a->idx);
		ssim_rearm(s, a->idx);
		return;
	}
	if (s->p.trace)
		fprintf(s->p.trace, "%10.3f n%-5u connected to n%u, link %u\n", s->now / 1e3, a->idx, b->idx, k);
	l->open[1] = true;
	l->connected = true;
	link_list_add(s, b, k);
	s->r->connects++;
	engine_peer_established(b->e, k, a->id, 0, now_ms(s));
	ssim_drain(s, b->idx);
	ssim_rearm(s, b->idx);
	l = &s->links[k];
	if (l->open[0] && a->e) {
		engine_peer_established(a->e, k, b->id, 0, now_ms(s));
		ssim_drain(s, a->idx);
		ssim_rearm(s, a->idx);
	}
}

static void on_fin(struct ssim *s, const struct evq_ev *ev)
{
	struct slink *l = &s->links[ev->a];
	int side = (int)ev->b;
	uint32_t node = l->node[side];
	if (!l->open[side])
		return;
	if (s->p.trace)
		fprintf(s->p.trace, "%10.3f n%-5u link %u closed by n%u\n", s->now / 1e3, node, ev->a, l->node[1 - side]);
	ssim_close_side(s, ev->a, side, true);
	ssim_drain(s, node);
	ssim_rearm(s, node);
}

void ssim_on_find(struct ssim *s, struct snode *n)
{
	if (n->state != NS_DOWNLOADING || n->leaving)
		return;
	n->find_sent_us = s->now;
	n->finding = true;
	s->r->dir_finds++;
	push(s, s->now + 2ull * n->dir_lat_us, EV_FOUND, n->idx, n->find_gen);
}

static void on_found(struct ssim *s, struct snode *n)
{
	n->finding = false;
	if (n->state != NS_DOWNLOADING || n->leaving || !n->e)
		return;
	uint32_t total = 0;
	size_t count = dir_reachable(s, n) ? dir_find(s->dir, &s->cid, n->id, s->found, s->p.dir_results, &total) : 0;
	trace(s, n->idx, "directory answer: providers", (uint32_t)count);
	for (size_t i = 0; i < count && n->e; i++) {
		engine_provider(n->e, s->found[i].node_id, s->found[i].addr, &s->cid, now_ms(s));
		ssim_drain(s, n->idx);
	}
	ssim_rearm(s, n->idx);
	uint64_t since_start = n->find_sent_us - n->start_us;
	uint64_t every = (since_start < (uint64_t)s->p.early_ms * 1000 ? s->p.refind_early_ms : s->p.refind_ms) * 1000ull;
	uint64_t next = n->find_sent_us + every + 1000; /* node_get.c: last_find_ms + period + 1 */
	push(s, next > s->now ? next : s->now, EV_FIND, n->idx, n->find_gen);
}

struct engine *ssim_engine_for(struct ssim *s, struct snode *n)
{
	struct engine_opts o;
	memset(&o, 0, sizeof(o));
	o.role = ENGINE_NODE;
	memcpy(o.self_id, n->id, PN_ID_BYTES);
	o.listen_port = SS_LISTEN_PORT;
	o.seed = mix64(s->p.seed ^ SS_STREAM_ENGINE, n->idx);
	o.store = &store_ops;
	o.store_ud = n;
	/* node_api.c: under a cap a chunk is handed out only when nothing waits
	 * behind it and its debt is paid; a fast cap keeps 100 ms ahead */
	if (n->up_rate)
		o.backlog_max = n->up_rate / 10 > PN_CHUNK_SIZE ? n->up_rate / 10 : 1;
	o.no_super_seed = s->p.no_super_seed;
	o.upload_slots = s->p.upload_slots;
	o.inflight_node = s->p.inflight_node;
	o.request_move_ms = s->p.move_ms;
	o.rechoke_ms = SWARM_SIM_RECHOKE_MS;       /* node_api.c's NODE_RECHOKE_MS */
	o.optimistic_ms = SWARM_SIM_OPTIMISTIC_MS; /* node_api.c's NODE_OPTIMISTIC_MS */
	struct engine *e = engine_new(&o, now_ms(s));
	if (!e)
		s->oom = true;
	return e;
}

static void on_start(struct ssim *s, struct snode *n)
{
	n->e = ssim_engine_for(s, n);
	if (!n->e)
		return;
	n->start_us = s->now;
	s->last_progress_us = s->now;
	trace(s, n->idx, "starts, up rate", (uint32_t)n->up_rate);
	if (dir_reachable(s, n) && dir_register(s->dir, n->id, n->addr, now_ms(s)) != 0)
		ssim_oddity(s, n->idx, "the directory refused a node", 0);
	if (n->holds_all) {
		n->state = NS_DONE;
		n->named = true;
		if (dir_reachable(s, n) && dir_offer(s->dir, n->id, &s->cid, SS_NAME, now_ms(s)) != 0)
			ssim_oddity(s, n->idx, "the directory refused the seed's offer", 0);
		return;
	}
	n->state = NS_DOWNLOADING;
	s->alive_downloading++;
	int r = engine_want(n->e, &s->cid, NULL, NULL, NULL, now_ms(s));
	if (r != PN_OK)
		ssim_oddity(s, n->idx, "engine_want failed", (uint64_t)-r);
	ssim_drain(s, n->idx);
	ssim_rearm(s, n->idx);
	ssim_on_find(s, n);
}

static void on_leave(struct ssim *s, struct snode *n)
{
	if (n->state == NS_GONE)
		return;
	if (n->state == NS_DOWNLOADING)
		s->alive_downloading--;
	n->state = NS_GONE;
	s->last_progress_us = s->now;
	trace(s, n->idx, "leaves, chunks", n->have_count);
	s->r->left += n->is_seed || n->malicious ? 0 : 1;
	if (n->is_seed)
		s->r->seed_left_s = s->now / 1e6;
	dir_unregister(s->dir, n->id);
	while (n->nlinks) {
		uint32_t link = n->links[n->nlinks - 1];
		ssim_close_side(s, link, side_of(&s->links[link], n->idx), false);
	}
	engine_free(n->e);
	n->e = NULL;
}

/* ------------------------------------------------------------ set-up */

static void defaults(struct swarm_sim_params *p)
{
	if (!p->file_size)
		p->file_size = SS_DEFAULT_SIZE;
	if (!p->seed_up)
		p->seed_up = SS_DEFAULT_RATE;
	if (!p->node_up)
		p->node_up = SS_DEFAULT_RATE;
	if (!p->lat_min_us && !p->lat_max_us)
		p->lat_min_us = p->lat_max_us = SS_DEFAULT_LAT_US;
	if (p->lat_max_us < p->lat_min_us)
		p->lat_max_us = p->lat_min_us;
	if (!p->slow_div)
		p->slow_div = SS_DEFAULT_SLOW_DIV;
	if (!p->max_peers)
		p->max_peers = SWARM_SIM_MAX_PEERS;
	if (!p->dir_results || p->dir_results > SWARM_SIM_DIR_RESULTS)
		p->dir_results = SWARM_SIM_DIR_RESULTS;
	if (!p->refind_early_ms)
		p->refind_early_ms = SWARM_SIM_REFIND_EARLY_MS;
	if (!p->refind_ms)
		p->refind_ms = SWARM_SIM_REFIND_MS;
	if (!p->early_ms)
		p->early_ms = SWARM_SIM_EARLY_MS;
	if (!p->faults.window_ms)
		p->faults.window_ms = SS_FAULT_WINDOW_MS;
	if (!p->faults.stall_ms)
		p->faults.stall_ms = SS_FAULT_STALL_MS;
	if (!p->faults.down_ms)
		p->faults.down_ms = SS_FAULT_DOWN_MS;
	if (!p->faults.part_ms)
		p->faults.part_ms = SS_FAULT_PART_MS;
	if (!p->shape_tick_ms)
		p->shape_tick_ms = SWARM_SIM_SHAPE_TICK_MS;
	if (!p->max_time_ms)
		p->max_time_ms = SWARM_SIM_MAX_TIME_MS;
	if (!p->max_events)
		p->max_events = SS_DEFAULT_MAX_EVENTS;
	if (!p->stall_stop_ms)
		p->stall_stop_ms = SWARM_SIM_STALL_STOP_MS;
}

static int setup(struct ssim *s)
{
	struct swarm_sim_params *p = &s->p;
	struct pn_prng ids;
	pn_prng_seed(&ids, mix64(p->seed, SS_STREAM_IDS));
	pn_prng_seed(&s->net_rng, mix64(p->seed, SS_STREAM_NET));
	pn_prng_seed(&s->work_rng, mix64(p->seed, SS_STREAM_WORK));
	pn_prng_seed(&s->fault_rng, mix64(p->seed, SS_STREAM_FAULT));

	s->cid.size = p->file_size;
	s->nchunks = pn_cid_chunks(&s->cid);
	s->hashes = malloc((size_t)s->nchunks * PN_HASH_BYTES);
	s->dummy = calloc(1, PN_CHUNK_SIZE);
	s->seed_sent = calloc(s->nchunks, 1);
	s->scratch_cap = PN_FRAME_HDR + PN_FRAME_MAX;
	s->scratch = malloc(s->scratch_cap);
	s->found = calloc(p->dir_results, sizeof(*s->found));
	s->ndown = p->nodes;
	s->nnodes = 1 + p->nodes + p->malicious;
	s->nodes = calloc(s->nnodes, sizeof(*s->nodes));
	s->group = calloc(s->nnodes, 1);
	struct dir_opts dopts = { .max_nodes = s->nnodes + 16, .max_results = p->dir_results,
				  .node_timeout_ms = UINT32_MAX, .seed = mix64(p->seed, 0x646972u) };
	s->dir = dir_new(&dopts);
	if (!s->hashes || !s->dummy || !s->seed_sent || !s->scratch || !s->found || !s->nodes || !s->group || !s->dir)
		return PN_ENOMEM;
	for (size_t i = 0; i < (size_t)s->nchunks * PN_HASH_BYTES; i += 8) {
		uint64_t v = pn_prng_next(&ids);
		memcpy(s->hashes + i, &v, 8);
	}
	if (store_tree_root(s->hashes, s->nchunks, s->cid.root) != PN_OK)
		return PN_ENOMEM;

	uint32_t slow = (uint32_t)llround(p->slow_frac * p->nodes);
	uint32_t leavers = (uint32_t)llround(p->leave_frac * p->nodes);
	size_t have_bytes = (s->nchunks + 7) / 8;
	/* Which downloaders are slow and which leave: a random permutation each. */
	uint32_t *perm = malloc((size_t)p->nodes * sizeof(*perm) + 1);
	if (!perm)
		return PN_ENOMEM;
	for (uint32_t i = 0; i < s->nnodes; i++) {
		struct snode *n = &s->nodes[i];
		n->s = s;
		n->idx = i;
		for (int j = 0; j < PN_ID_BYTES; j += 8) {
			uint64_t v = pn_prng_next(&ids);
			memcpy(n->id + j, &v, 8);
		}
		snprintf(n->addr, sizeof(n->addr), "sim:%u", i);
		n->is_seed = i == 0;
		n->malicious = i > s->ndown;
		n->holds_all = n->is_seed || n->malicious;
		n->up_rate = n->is_seed ? p->seed_up : p->node_up;
		n->down_rate = p->down;
		n->ring_head = n->ring_tail = SS_NONE;
		n->tick_at = SS_NEVER;
		n->dir_lat_us = rand_between(&s->net_rng, p->lat_min_us, p->lat_max_us);
		n->have = calloc(1, have_bytes);
		if (!n->have) {
			free(perm);
			return PN_ENOMEM;
		}
	}
	for (uint32_t i = 0; i < p->nodes; i++)
		perm[i] = i;
	for (uint32_t i = p->nodes; i > 1; i--) {
		uint32_t j = pn_prng_below(&s->work_rng, i), t = perm[i - 1];
		perm[i - 1] = perm[j];
		perm[j] = t;
	}
	for (uint32_t i = 0; i < slow; i++)
		s->nodes[1 + perm[i]].up_rate = p->node_up / p->slow_div;
	for (uint32_t i = p->nodes; i > 1; i--) {
		uint32_t j = pn_prng_below(&s->work_rng, i), t = perm[i - 1];
		perm[i - 1] = perm[j];
		perm[j] = t;
	}
	for (uint32_t i = 0; i < leavers; i++) {
		struct snode *n = &s->nodes[1 + perm[i]];
		n->leaver = true;
		uint32_t pct = SS_LEAVE_MIN_PCT + pn_prng_below(&s->work_rng, SS_LEAVE_SPAN_PCT + 1);
		n->leave_at_have = (uint32_t)(((uint64_t)s->nchunks * pct + 99) / 100);
		if (n->leave_at_have == 0)
			n->leave_at_have = 1;
		if (n->leave_at_have >= s->nchunks)
			n->leave_at_have = s->nchunks - 1; /* leaves before it is done */
	}
	free(perm);
	for (uint32_t i = 0; i < s->nnodes; i++) {
		struct snode *n = &s->nodes[i];
		n->burst = (double)(n->up_rate / 10 > SS_MIN_BURST ? n->up_rate / 10 : SS_MIN_BURST);
		n->tokens = p->bucket_empty ? 0 : n->burst;
		uint64_t at = 0;
		if (i >= 1 && i <= s->ndown && p->arrive_ms)
			at = (uint64_t)pn_prng_below(&s->work_rng, p->arrive_ms + 1) * 1000;
		push(s, at, EV_START, i, 0);
	}
	ssim_schedule_faults(s);
	return s->oom ? PN_ENOMEM : PN_OK;
}

static void teardown(struct ssim *s)
{
	for (uint32_t i = 0; s->nodes && i < s->nnodes; i++) {
		engine_free(s->nodes[i].e);
		free(s->nodes[i].links);
		free(s->nodes[i].have);
	}
	for (uint32_t k = 0; k < s->nlinks; k++)
		for (int d = 0; d < 2; d++) {
			msgs_free_list(s, &s->links[k].q[d].head, &s->links[k].q[d].tail);
			msgs_free_list(s, &s->links[k].q[d].fhead, &s->links[k].q[d].ftail);
		}
	while (s->free_msgs) {
		struct smsg *m = s->free_msgs;
		s->free_msgs = m->next;
		free(m);
	}
	if (s->dir)
		dir_free(s->dir);
	free(s->nodes);
	free(s->links);
	evq_free(&s->evq);
	free(s->hashes);
	free(s->dummy);
	free(s->seed_sent);
	free(s->group);
	free(s->scratch);
	free(s->found);
}

/* ------------------------------------------------------------ the run */

int swarm_sim_run(const struct swarm_sim_params *params, struct swarm_sim_result *out)
{
	struct ssim sim;
	struct ssim *s = &sim;
	memset(s, 0, sizeof(*s));
	evq_init(&s->evq, SS_EVQ_FIRST, SS_EVQ_MAX);
	s->free_links = SS_NONE;
	memset(out, 0, sizeof(*out));
	s->p = *params;
	s->r = out;
	defaults(&s->p);
	if (!s->p.nodes || s->p.file_size > PN_MAX_FILE_SIZE || s->p.slow_frac < 0 || s->p.slow_frac > 1 ||
	    s->p.leave_frac < 0 || s->p.leave_frac > 1)
		return PN_EINVAL;
	int rc = setup(s);
	uint64_t max_us = s->p.max_time_ms * 1000;
	while (rc == PN_OK && evq_len(&s->evq) && !s->oom) {
		if (evq_next_at(&s->evq) > max_us || out->events >= s->p.max_events) {
			out->capped = true;
			break;
		}
		if (s->alive_downloading && evq_next_at(&s->evq) > s->last_progress_us + s->p.stall_stop_ms * 1000) {
			out->stalled = true;
			break;
		}
		bool started_all = true;
		if (!s->alive_downloading) {
			/* Stop once every downloader is done or gone (none still to arrive). */
			for (uint32_t i = 1; i <= s->ndown && started_all; i++)
				started_all = s->nodes[i].state != NS_IDLE;
			if (started_all)
				break;
		}
		struct evq_ev ev = evq_pop(&s->evq);
		if (s->p.progress && ev.at / SS_PROGRESS_US != s->now / SS_PROGRESS_US) {
			uint32_t done = 0;
			for (uint32_t i = 1; i <= s->ndown; i++)
				done += s->nodes[i].finished;
			fprintf(s->p.progress, "swarm-sim: N = %u, t = %.0f s: %u done, %u downloading, %" PRIu64
				" events, %" PRIu64 " messages, %" PRIu64 " connections made\n", s->ndown, ev.at / 1e6, done,
				s->alive_downloading, out->events, out->msgs, s->dials);
			fflush(s->p.progress);
		}
		s->now = ev.at;
		out->events++;
		if (ev.kind == EV_FAULT || ev.kind == EV_HEAL || ev.kind == EV_DIR_UP) {
			if (ev.kind == EV_FAULT)
				ssim_on_fault(s, (enum fault_kind)ev.a);
			else if (ev.kind == EV_HEAL)
				ssim_heal(s);
			else {
				s->dir_down = false;
				ssim_rejoin_directory(s, false);
			}
			continue;
		}
		struct snode *n = ev.kind == EV_DELIVER || ev.kind == EV_CONNECT || ev.kind == EV_FIN ? NULL
			: &s->nodes[ev.a];
		switch (ev.kind) {
		case EV_TICK:
			on_tick(s, &ev);
			break;
		case EV_SHAPE:
			on_shape(s, n);
			break;
		case EV_DELIVER:
			on_deliver(s, &ev);
			break;
		case EV_CONNECT:
			on_connect(s, &ev);
			break;
		case EV_FIN:
			on_fin(s, &ev);
			break;
		}
		if (ev.kind == EV_DELIVER || ev.kind == EV_CONNECT || ev.kind == EV_FIN) {
			s->links[ev.a].refs--;
			ssim_link_maybe_free(s, ev.a);
			continue;
		}
		switch (ev.kind) {
		case EV_FIND:
			if (ev.b == n->find_gen)
				ssim_on_find(s, n);
			break;
		case EV_FOUND:
			if (ev.b == n->find_gen)
				on_found(s, n);
			break;
		case EV_RESTART:
			ssim_restart(s, n);
			break;
		case EV_REREG:
			ssim_register_at_dir(s, n);
			break;
		case EV_START:
			on_start(s, n);
			break;
		case EV_LEAVE:
			on_leave(s, n);
			break;
		}
	}
	if (s->oom)
		rc = PN_ENOMEM;
	ssim_summarise(s);
	if (s->p.diag && !out->all_stayers_finished)
		ssim_describe_stall(s);
	teardown(s);
	return rc;
}
