/* The peer engine's source side: super-seeding (as in BEP 16) and the upload
 * pump that hands queued chunk requests to the driver. See engine.h. */
#include <stdlib.h>
#include <string.h>
#define PN_PROTO_ENGINE_IMPL
#include "proto/engine_int.h"


static struct seed *seed_get(struct engine *e, const struct pn_cid *cid)
{
	for (struct seed *s = e->seeds; s; s = s->next)
		if (cid_eq(&s->cid, cid))
			return s;
	if (e->nseeds >= MAX_SEEDS)
		return NULL;
	struct seed *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	s->cid = *cid;
	s->nchunks = pn_cid_chunks(cid);
	s->announced = calloc(s->nchunks, sizeof *s->announced);
	s->sent = calloc(s->nchunks, sizeof *s->sent);
	if (!s->announced || !s->sent) {
		free(s->announced);
		free(s->sent);
		free(s);
		return NULL;
	}
	s->next = e->seeds;
	e->seeds = s;
	e->nseeds++;
	return s;
}

/* No chunk request waiting anywhere, every connection able to take more, and
 * less than a chunk still queued behind the upload cap. */
static bool uplink_idle(const struct engine *e)
{
	if (e->upq_total || e->nblocked)
		return false;
	if (e->o.store && e->o.store->backlog && e->o.store->backlog(e->o.store_ud) >= PN_CHUNK_SIZE)
		return false;
	return true;
}

static uint32_t seed_outstanding(const struct seed *s, const struct pcid *pc)
{
	uint32_t count = 0;
	for (uint32_t i = 0; i < s->nchunks; i++)
		count += bit(pc->revealed, i) && !bit(pc->bitmap, i);
	return count;
}

/* Announces one more chunk to pc: the least announced that it lacks, the
 * lowest index among equals. The announce counts already spread downloaders
 * over different chunks; the order among equals is the one a reader of the
 * stream needs (get -o -: chunk 0 first, not wherever a random start fell).
 * Once every chunk has left the source, a second copy goes only to a
 * downloader with nothing else of ours to fetch while the uplink would
 * otherwise idle. false if none. */
static bool seed_reveal(struct engine *e, struct seed *s, struct pcid *pc, uint32_t *index)
{
	uint32_t best = UINT32_MAX, best_count = UINT32_MAX;
	for (uint32_t i = 0; i < s->nchunks; i++) {
		if (bit(pc->revealed, i) || bit(pc->bitmap, i))
			continue;
		if (s->announced[i] < best_count) {
			best = i;
			best_count = s->announced[i];
			if (best_count == 0)
				break;
		}
	}
	if (best == UINT32_MAX)
		return false;
	if (s->announced[best] > 0 && (seed_outstanding(s, pc) > 0 || !uplink_idle(e)))
		return false;
	bit_set(pc->revealed, best);
	s->announced[best]++;
	*index = best;
	return true;
}

/* Starts super-seeding cid to p: fills pc->revealed. false: show everything. */
bool eng__seed_start(struct engine *e, struct peer *p, struct pcid *pc)
{
	if (e->o.no_super_seed || p->role != PN_ROLE_NODE)
		return false;
	struct seed *s = seed_get(e, &pc->cid);
	if (!s)
		return false;
	pc->revealed = calloc(1, bm_len(s->nchunks));
	if (!pc->revealed)
		return false;
	/* With many downloaders and few chunks, show each fewer, so each starts with its own. */
	uint32_t downloaders = 1;
	for (uint32_t i = 0; i < e->npeers; i++) {
		struct peer *q = e->peers[i];
		struct pcid *qc = q == p ? NULL : eng__pcid_get(q, &pc->cid, false);
		if (qc && qc->revealed)
			downloaders++;
	}
	uint32_t ahead = s->nchunks / downloaders;
	if (ahead < 1)
		ahead = 1;
	if (ahead > ENGINE_SEED_REVEAL_AHEAD)
		ahead = ENGINE_SEED_REVEAL_AHEAD;
	uint32_t index;
	for (uint32_t k = 0; k < ahead && seed_reveal(e, s, pc, &index); k++)
		;
	return true;
}

void eng__seed_on_have(struct engine *e, struct peer *p, struct pcid *pc, uint32_t index)
{
	if (!bit(pc->revealed, index))
		return;
	struct seed *s = seed_get(e, &pc->cid);
	uint32_t next;
	if (s && seed_reveal(e, s, pc, &next))
		eng__send_cidref(e, p, PN_MSG_HAVE, &pc->cid, next);
}

/* Whether the downloader lacks a chunk it was never shown: interested or
 * not (it loses interest once it holds all it was shown), it needs a reveal. */
static bool lacks_unshown(const struct seed *s, const struct pcid *pc)
{
	for (uint32_t i = 0; i < s->nchunks; i++)
		if (!bit(pc->revealed, i) && !(pc->bitmap && bit(pc->bitmap, i)))
			return true;
	return false;
}

/* The source's uplink would idle (the swarm is trading among itself, the end
 * of a distribution, or a chunk the source sent was lost with its
 * connection): show one more chunk, the least shown, to each downloader of
 * cid that holds everything it was shown and still lacks something. Called
 * on every HAVE and NOT_INTERESTED a source receives; while the uplink is
 * busy the top-up is put off and retried on a tick (engine_next_wakeup says
 * when), so a swarm whose last copy of a chunk vanished is shown it again. */
void eng__seed_top_up(struct engine *e, const struct pn_cid *cid)
{
	if (e->o.no_super_seed)
		return;
	if (!uplink_idle(e)) {
		e->seed_retry = true;
		return;
	}
	struct seed *s = NULL;
	for (struct seed *x = e->seeds; x; x = x->next)
		if (cid_eq(&x->cid, cid))
			s = x;
	if (!s)
		return;
	for (uint32_t i = 0; i < e->npeers; i++) {
		struct peer *p = e->peers[i];
		struct pcid *pc = eng__pcid_get(p, cid, false);
		uint32_t next;
		if (!pc || !pc->revealed || p->closing || (pc->they_want && p->am_choking))
			continue;
		if (seed_outstanding(s, pc) == 0 && lacks_unshown(s, pc) && seed_reveal(e, s, pc, &next))
			eng__send_cidref(e, p, PN_MSG_HAVE, cid, next);
	}
}


/* ------------------------------------------------------------ what a source sends */

static bool backlog_full(const struct engine *e)
{
	return e->o.backlog_max && e->o.store && e->o.store->backlog &&
	       e->o.store->backlog(e->o.store_ud) >= e->o.backlog_max;
}

bool engine_uploads_waiting(const struct engine *e)
{
	if (!e->upq_total)
		return false;
	for (uint32_t i = 0; i < e->npeers; i++) {
		const struct peer *p = e->peers[i];
		if (p->upq_len && p->writable && !p->closing && !(serves_p2p(e) && p->am_choking))
			return true;
	}
	return false;
}

static struct seed *seed_find(const struct engine *e, const struct pn_cid *cid)
{
	for (struct seed *s = e->seeds; s; s = s->next)
		if (cid_eq(&s->cid, cid))
			return s;
	return NULL;
}

/* Position in p's queue of a request for a chunk this source has never sent,
 * or -1. A super-seeding source serves those first: a chunk that has never
 * left it holds up the whole swarm, a second copy only one downloader. */
static int first_copy_at(const struct engine *e, const struct peer *p)
{
	for (uint32_t k = 0; k < p->upq_len; k++) {
		const struct upreq *u = &p->upq[(p->upq_head + k) % p->upq_cap];
		const struct seed *s = seed_find(e, &u->cid);
		if (s && s->sent[u->index] == 0)
			return (int)k;
	}
	return -1;
}

static bool can_upload_to(const struct engine *e, const struct peer *p)
{
	return p->upq_len && p->writable && !p->closing && !(serves_p2p(e) && p->am_choking);
}

/* One queued chunk request, round-robin over the peers that can take it;
 * at a super-seeding source, chunks never sent before go first. */
bool eng__pump_uploads(struct engine *e, struct engine_action *out)
{
	if (!e->upq_total || backlog_full(e))
		return false;
	int at = -1;
	uint32_t n, i = 0;
	for (n = 0; e->seeds && n < e->npeers && at < 0; n++) {
		i = (e->pump_cursor + n) % e->npeers;
		if (can_upload_to(e, e->peers[i]))
			at = first_copy_at(e, e->peers[i]);
	}
	/* A downloader passing chunks on: the one it has sent least first, so
	 * that two chunks only it holds both start to spread (a chunk it has
	 * sent already has another holder that can pass it on too). */
	if (at < 0 && e->downloads) {
		uint32_t best = UINT32_MAX;
		for (n = 0; n < e->npeers && best > 0; n++) {
			uint32_t j = (e->pump_cursor + n) % e->npeers;
			const struct peer *p = e->peers[j];
			if (!can_upload_to(e, p))
				continue;
			for (uint32_t k = 0; k < p->upq_len && best > 0; k++) {
				const struct upreq *u = &p->upq[(p->upq_head + k) % p->upq_cap];
				const struct download *d = e->downloads;
				while (d && !cid_eq(&d->cid, &u->cid))
					d = d->next;
				uint32_t sent = d && d->sent && u->index < d->nchunks ? d->sent[u->index] : UINT32_MAX - 1;
				if (sent < best) {
					best = sent;
					at = (int)k;
					i = j;
				}
			}
		}
	}
	for (n = 0; at < 0 && n < e->npeers; n++) {
		i = (e->pump_cursor + n) % e->npeers;
		if (can_upload_to(e, e->peers[i]))
			at = 0;
	}
	if (at >= 0) {
		struct peer *p = e->peers[i];
		struct upreq u = p->upq[(p->upq_head + (uint32_t)at) % p->upq_cap];
		for (uint32_t j = (uint32_t)at; j > 0; j--) /* close the gap: the queue keeps its order */
			p->upq[(p->upq_head + j) % p->upq_cap] = p->upq[(p->upq_head + j - 1) % p->upq_cap];
		p->upq_head = (p->upq_head + 1) % p->upq_cap;
		p->upq_len--;
		e->upq_total--;
		e->pump_cursor = (i + 1) % e->npeers;
		struct seed *s = seed_find(e, &u.cid);
		if (s)
			s->sent[u.index]++;
		for (struct download *d = e->downloads; d; d = d->next)
			if (d->sent && cid_eq(&d->cid, &u.cid) && u.index < d->nchunks && d->sent[u.index] < UINT16_MAX)
				d->sent[u.index]++;
		memset(out, 0, sizeof *out);
		out->type = ENGINE_SEND_CHUNK;
		out->peer = p->key;
		out->cid = u.cid;
		out->index = u.index;
		out->req_id = u.req_id;
		out->len = pn_cid_chunk_len(&u.cid, u.index);
		return true;
	}
	return false;
}

