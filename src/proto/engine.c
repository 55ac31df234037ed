/* The peer engine. See engine.h.
 *
 * Layout: peers (a small array of pointers, looked up by key), downloads (a
 * list), a FIFO of actions, and the choker. Actions that come from the swarm
 * schedulers (requests), the choker and the upload queues are made on demand
 * in engine_next_action(), so a congested connection or a choke seen between
 * two pops takes effect at once. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define PN_PROTO_ENGINE_IMPL
#include "proto/engine_int.h"
#include "proto/choker.h"
#include "proto/prng.h"
#include "proto/swarm.h"
#include "store/store.h"

#define QUEUE_INITIAL 32

/* ------------------------------------------------------------ helpers */

/* Frees what the last popped action owned, and downloads that ended, once no
 * queued action can point into them. Called at the start of every input. */
static void begin_input(struct engine *e, uint64_t now)
{
	free(e->popped_owned);
	e->popped_owned = NULL;
	if (now > e->now)
		e->now = now;
	if (e->qlen == 0) {
		while (e->graveyard) {
			struct download *d = e->graveyard;
			e->graveyard = d->next;
			free(d->hashes);
			free(d);
		}
	}
}

struct engine_action *eng__push(struct engine *e, enum engine_action_type type, uint32_t peer, void *owned)
{
	if (e->qlen == e->qcap) {
		uint32_t cap = e->qcap ? e->qcap * 2 : QUEUE_INITIAL;
		struct queued *q = malloc((size_t)cap * sizeof *q);
		if (!q) {
			free(owned);
			return NULL;
		}
		for (uint32_t i = 0; i < e->qlen; i++)
			q[i] = e->queue[(e->qhead + i) % e->qcap];
		free(e->queue);
		e->queue = q;
		e->qhead = 0;
		e->qcap = cap;
	}
	struct queued *q = &e->queue[(e->qhead + e->qlen++) % e->qcap];
	memset(q, 0, sizeof *q);
	q->a.type = type;
	q->a.peer = peer;
	q->owned = owned;
	return &q->a;
}

static struct peer *peer_get(const struct engine *e, uint32_t k)
{
	uint32_t i;
	return pn_u32map_get(&e->peer_at, k, &i) ? e->peers[i] : NULL;
}

struct download *eng__dl_get(const struct engine *e, const struct pn_cid *cid)
{
	for (struct download *d = e->downloads; d; d = d->next)
		if (cid_eq(&d->cid, cid))
			return d;
	return NULL;
}

struct pcid *eng__pcid_get(struct peer *p, const struct pn_cid *cid, bool create)
{
	for (uint32_t i = 0; i < p->ncids; i++)
		if (cid_eq(&p->cids[i].cid, cid))
			return &p->cids[i];
	if (!create || p->ncids >= ENGINE_MAX_PEER_CIDS)
		return NULL;
	if (p->ncids == p->cids_cap) {
		uint32_t cap = p->cids_cap ? p->cids_cap * 2 : 2;
		struct pcid *c = realloc(p->cids, (size_t)cap * sizeof *c);
		if (!c)
			return NULL;
		p->cids = c;
		p->cids_cap = cap;
	}
	struct pcid *pc = &p->cids[p->ncids++];
	memset(pc, 0, sizeof *pc);
	pc->cid = *cid;
	return pc;
}

static void close_peer(struct engine *e, struct peer *p, int err, const char *why, bool ban)
{
	if (p->closing)
		return;
	p->closing = true;
	struct engine_action *a = eng__push(e, ENGINE_CLOSE, p->key, NULL);
	if (a) {
		a->err = err;
		a->why = why;
		a->ban = ban;
		a->role = p->role;
	}
}

static bool is_banned(const struct engine *e, const uint8_t id[PN_ID_BYTES])
{
	for (uint32_t i = 0; i < e->nbanned; i++)
		if (!memcmp(e->banned[i], id, PN_ID_BYTES))
			return true;
	return false;
}

static void ban_id(struct engine *e, const uint8_t id[PN_ID_BYTES])
{
	if (is_banned(e, id))
		return;
	if (e->nbanned < ENGINE_MAX_BANNED) {
		memcpy(e->banned[e->nbanned++], id, PN_ID_BYTES);
	} else { /* forget the oldest */
		memcpy(e->banned[e->banned_next], id, PN_ID_BYTES);
		e->banned_next = (e->banned_next + 1) % ENGINE_MAX_BANNED;
	}
}

/* A provider of data that failed its hash: told why, cut off, and not
 * dialled again. */
void eng__ban_peer(struct engine *e, struct peer *p, const char *why)
{
	if (p->id_known)
		ban_id(e, p->id);
	eng__send_error(e, p, 0, PN_WERR_CORRUPT, why);
	close_peer(e, p, PN_ECORRUPT, why, true);
}

/* Queues a message. Its pointers must stay valid until it is handled: they
 * point into `owned` (freed after) or into state that outlives the drain. */
bool eng__send_msg(struct engine *e, struct peer *p, const struct pn_msg *m, void *owned)
{
	if (p->closing) {
		free(owned);
		return false;
	}
	struct engine_action *a = eng__push(e, ENGINE_SEND, p->key, owned);
	if (a)
		a->msg = *m;
	return a != NULL;
}

void eng__send_cidref(struct engine *e, struct peer *p, enum pn_msg_type type, const struct pn_cid *cid,
			uint32_t index)
{
	struct pn_msg m = {.type = type};
	m.u.cidref.cid = *cid;
	m.u.cidref.index = index;
	eng__send_msg(e, p, &m, NULL);
}

void eng__send_error(struct engine *e, struct peer *p, uint32_t req_id, uint16_t code, const char *text)
{
	struct pn_msg m = {.type = PN_MSG_ERROR};
	m.u.error.req_id = req_id;
	m.u.error.code = code;
	m.u.error.text = text;
	m.u.error.text_len = (uint16_t)strlen(text);
	eng__send_msg(e, p, &m, NULL);
}

/* A fresh request ID: never 0 (docs/PROTOCOL.md, Request IDs). */
uint32_t eng__new_req(struct engine *e)
{
	if (++e->next_req == 0)
		e->next_req = 1;
	return e->next_req;
}

/* A protocol violation: ERROR(0, PROTOCOL, why), then the connection closes
 * (docs/PROTOCOL.md, Errors and closing). */
int eng__violation(struct engine *e, struct peer *p, const char *why)
{
	eng__send_error(e, p, 0, PN_WERR_PROTOCOL, why);
	close_peer(e, p, PN_EPROTO, why, false);
	return PN_EPROTO;
}

/* A peer that takes part in the peer-to-peer protocol (interest, HAVE, choking). */
static bool speaks_p2p(const struct peer *p)
{
	return p->ready && p->role != PN_ROLE_SERVER;
}

/* ------------------------------------------------------------ what we hold */

struct held eng__hold_of(struct engine *e, const struct pn_cid *cid)
{
	struct held h = {0};
	struct download *d = eng__dl_get(e, cid);
	if (d) {
		h.any = d->hashes_done;
		h.name = d->have_name ? d->name : "";
		h.hashes = d->hashes_done ? d->hashes : NULL;
		h.bitmap = d->have;
		return h;
	}
	struct engine_content c;
	if (e->o.store && e->o.store->lookup && e->o.store->lookup(e->o.store_ud, cid, &c)) {
		h.any = true;
		h.complete = c.bitmap == NULL;
		h.name = c.name ? c.name : "";
		h.hashes = c.hashes;
		h.bitmap = c.bitmap;
	}
	return h;
}

static bool held_chunk(const struct held *h, uint32_t index)
{
	return h->any && (h->complete || bit(h->bitmap, index));
}

/* ------------------------------------------------------------ interest and bitfields */

static void send_bitfield(struct engine *e, struct peer *p, struct pcid *pc)
{
	uint32_t nchunks = pn_cid_chunks(&pc->cid);
	struct held h = eng__hold_of(e, &pc->cid);
	struct pn_msg m = {.type = PN_MSG_BITFIELD};
	m.u.bitfield.cid = pc->cid;
	m.u.bitfield.nchunks = nchunks;
	if (h.complete && (pc->revealed || eng__seed_start(e, p, pc))) {
		m.u.bitfield.bitmap = pc->revealed; /* lives as long as the peer */
		pc->bitfield_sent = eng__send_msg(e, p, &m, NULL);
		return;
	}
	uint8_t *copy = h.complete ? bm_full(nchunks) : calloc(1, bm_len(nchunks));
	if (!copy)
		return;
	if (!h.complete && h.any && h.bitmap)
		memcpy(copy, h.bitmap, bm_len(nchunks));
	m.u.bitfield.bitmap = copy;
	pc->bitfield_sent = eng__send_msg(e, p, &m, copy);
}

/* INTERESTED / NOT_INTERESTED. With the first INTERESTED goes our BITFIELD
 * when we hold some chunks: a super-seeding provider must not show us chunks
 * we already have (a resumed download would wait on them for ever). Once a
 * peer has our BITFIELD, the HAVEs that every peer of the content gets keep
 * it current: interest that comes back later sends none (in a 32-node swarm
 * these repeats were one message in seven). */
static void set_we_want(struct engine *e, struct peer *p, struct pcid *pc, bool want)
{
	if (!speaks_p2p(p) || pc->we_want == want)
		return;
	eng__send_cidref(e, p, want ? PN_MSG_INTERESTED : PN_MSG_NOT_INTERESTED, &pc->cid, 0);
	pc->we_want = want;
	struct download *d = want && !pc->they_want ? eng__dl_get(e, &pc->cid) : NULL;
	if (d && d->swarm && d->have_count > 0 && !pc->bitfield_sent) {
		uint8_t *copy = malloc(bm_len(d->nchunks));
		if (!copy)
			return;
		memcpy(copy, d->have, bm_len(d->nchunks));
		struct pn_msg m = {.type = PN_MSG_BITFIELD};
		m.u.bitfield.cid = pc->cid;
		m.u.bitfield.nchunks = d->nchunks;
		m.u.bitfield.bitmap = copy;
		pc->bitfield_sent = eng__send_msg(e, p, &m, copy);
	}
}

/* A peer that wants only content we super-seed is unchoked outside the
 * choker: the reveals already ration what it may ask of us (a few chunks at a
 * time), and a source that served only its few unchoked peers would leave the
 * chunks it showed the others unfetched. Other peers go through the choker. */
static void update_their_interest(struct engine *e, struct peer *p)
{
	bool any = false, super_only = true;
	for (uint32_t i = 0; i < p->ncids; i++) {
		if (!p->cids[i].they_want)
			continue;
		any = true;
		super_only &= p->cids[i].revealed != NULL;
	}
	if (any && super_only) {
		if (p->in_choker)
			choker_interested(e->choker, p->key, false, e->now);
		if (p->am_choking && !p->closing) {
			struct pn_msg m = {.type = PN_MSG_UNCHOKE};
			eng__send_msg(e, p, &m, NULL);
			p->am_choking = false;
		}
		p->seed_unchoked = true;
		return;
	}
	/* A super-seeded peer that is done with what it was shown stays unchoked
	 * (it asks nothing meanwhile): a CHOKE now would cross its last requests,
	 * and the UNCHOKE that follows the next chunk shown would have them asked
	 * and sent twice. It goes back to the choker's rules only when it wants
	 * something that is not super-seeded. */
	if (p->seed_unchoked && any) { /* back to the choker's rules */
		p->seed_unchoked = false;
		if (!p->am_choking && !p->closing) {
			struct pn_msg m = {.type = PN_MSG_CHOKE};
			eng__send_msg(e, p, &m, NULL);
			p->am_choking = true;
			eng__upq_clear(e, p);
		}
	}
	if (p->in_choker)
		choker_interested(e->choker, p->key, any, e->now);
}

/* Tells each provider in d's swarm whether it holds anything we lack. */
static void update_our_interest(struct engine *e, struct download *d)
{
	for (uint32_t i = 0; i < e->npeers; i++) {
		struct peer *p = e->peers[i];
		struct pcid *pc = speaks_p2p(p) ? eng__pcid_get(p, &d->cid, false) : NULL;
		if (pc && pc->in_swarm)
			set_we_want(e, p, pc, swarm_peer_wanted(d->swarm, p->key) > 0);
	}
}

/* ------------------------------------------------------------ downloads */

void eng__swarm_join(struct engine *e, struct download *d, struct peer *p, struct pcid *pc)
{
	if (!d->swarm || pc->in_swarm || !p->ready || p->closing)
		return;
	uint8_t *all = NULL;
	const uint8_t *bm = pc->bitmap;
	if (p->role == PN_ROLE_SERVER) {
		if (!pc->has_all || !(all = bm_full(d->nchunks)))
			return;
		bm = all;
	}
	if (!bm)
		return;
	int r = swarm_peer_add(d->swarm, p->key, bm, e->now);
	free(all);
	if (r != PN_OK)
		return;
	pc->in_swarm = true;
	bool server = p->role == PN_ROLE_SERVER;
	uint32_t max = server ? e->o.inflight_server : e->o.inflight_node;
	swarm_peer_set_max(d->swarm, p->key, max);
	swarm_peer_keep_requests(d->swarm, p->key, server);
	if (server || !p->peer_choking)
		swarm_peer_choked(d->swarm, p->key, false, e->now);
}

static void dl_start_swarm(struct engine *e, struct download *d, const uint8_t *have)
{
	if (d->swarm)
		return;
	if (have) {
		memcpy(d->have, have, bm_len(d->nchunks));
		d->have_count = 0;
		for (uint32_t i = 0; i < d->nchunks; i++)
			d->have_count += bit(d->have, i);
	}
	uint32_t inflight = e->o.inflight_node > e->o.inflight_server ? e->o.inflight_node : e->o.inflight_server;
	struct swarm_opts so = {
		.nchunks = d->nchunks,
		.per_peer_inflight = inflight,
		.request_timeout_ms = e->o.request_timeout_ms,
		.seed = pn_prng_next(&e->prng),
		.sequential = e->o.sequential,
		.move_after_ms = e->o.request_move_ms == UINT32_MAX ? 0 : e->o.request_move_ms,
		.stream_window = d->streaming ? ENGINE_STREAM_WINDOW : 0,
	};
	d->swarm = swarm_new(&so, d->have);
	if (!d->swarm)
		return; /* the download stalls and is reported */
	d->hashes_recorded = true;
	for (uint32_t i = 0; i < e->npeers; i++) {
		struct peer *p = e->peers[i];
		struct pcid *pc = eng__pcid_get(p, &d->cid, false);
		if (!pc)
			continue;
		eng__swarm_join(e, d, p, pc);
		/* Fellow downloaders learn what we hold now. */
		if (pc->they_want && speaks_p2p(p))
			send_bitfield(e, p, pc);
	}
	update_our_interest(e, d);
}

/* Peer p became relevant to d: ask what is needed. A server, and any peer
 * of a client, is first asked META: the answer says whether it holds the
 * content (a client has no other way to learn that a node lacks it). */
static void dl_engage(struct engine *e, struct download *d, struct peer *p, struct pcid *pc)
{
	if (!p->ready || p->closing || d->done)
		return;
	if (p->role == PN_ROLE_SERVER || e->o.role == ENGINE_CLIENT)
		eng__probe(e, p, pc);
	if (p->role != PN_ROLE_SERVER && !pc->in_swarm)
		set_we_want(e, p, pc, true);
	if (d->swarm)
		eng__swarm_join(e, d, p, pc);
	else
		eng__dl_try_meta_and_hashes(e, d, p, pc);
}

static void dl_free(struct engine *e, struct download *d)
{
	struct download **dp = &e->downloads;
	while (*dp && *dp != d)
		dp = &(*dp)->next;
	if (*dp)
		*dp = d->next;
	e->ndownloads--;
	for (uint32_t i = 0; i < e->npeers; i++) {
		struct pcid *pc = eng__pcid_get(e->peers[i], &d->cid, false);
		if (pc)
			pc->in_swarm = false;
	}
	swarm_free(d->swarm);
	d->swarm = NULL;
	free(d->have);
	free(d->writing);
	free(d->sent);
	d->have = d->writing = NULL;
	d->sent = NULL;
	/* The hash list may still be pointed at by a queued HASHES answer. */
	d->done = true;
	d->next = e->graveyard;
	e->graveyard = d;
	if (e->choker)
		choker_set_seeding(e->choker, e->downloads == NULL);
}

static void dl_complete(struct engine *e, struct download *d)
{
	struct engine_action *a = eng__push(e, ENGINE_DONE, 0, NULL);
	if (a)
		a->cid = d->cid;
	for (uint32_t i = 0; i < e->npeers; i++) {
		struct peer *p = e->peers[i];
		struct pcid *pc = eng__pcid_get(p, &d->cid, false);
		if (pc) {
			set_we_want(e, p, pc, false);
			if (pc->in_swarm && d->swarm)
				swarm_peer_remove(d->swarm, p->key);
		}
	}
	dl_free(e, d);
}

/* ------------------------------------------------------------ messages */

static bool role_ok(const struct engine *e, const struct peer *p, uint8_t role)
{
	switch (e->o.role) {
	case ENGINE_NODE:
		return role == PN_ROLE_NODE || role == PN_ROLE_CLIENT || (role == PN_ROLE_SERVER && p->outgoing);
	case ENGINE_SERVER:
		return role == PN_ROLE_CLIENT || role == PN_ROLE_NODE;
	case ENGINE_CLIENT:
		return role == PN_ROLE_SERVER || role == PN_ROLE_NODE;
	}
	return false;
}

/* The peer is ready: engage it in every download it is offered for. */
static void peer_engage_all(struct engine *e, struct peer *p)
{
	for (uint32_t i = 0; i < p->ncids; i++) {
		struct download *d = eng__dl_get(e, &p->cids[i].cid);
		if (d)
			dl_engage(e, d, p, &p->cids[i]);
	}
	/* A web seed may hold anything we want; so may the one provider of a client. */
	if (p->role == PN_ROLE_SERVER || e->o.role == ENGINE_CLIENT) {
		for (struct download *d = e->downloads; d; d = d->next) {
			struct pcid *pc = eng__pcid_get(p, &d->cid, true);
			if (pc)
				dl_engage(e, d, p, pc);
		}
	}
}

static int on_hello(struct engine *e, struct peer *p, const struct pn_msg_hello *h)
{
	if (!role_ok(e, p, h->role)) {
		p->role = h->role;
		eng__send_error(e, p, 0, PN_WERR_PROTOCOL, "unexpected role");
		close_peer(e, p, PN_EPROTO, "unexpected role in HELLO", false);
		return PN_EPROTO;
	}
	p->ready = true;
	p->role = h->role;
	p->listen_port = h->listen_port;
	p->features = h->features;
	p->am_choking = serves_p2p(e);
	p->peer_choking = h->role != PN_ROLE_SERVER;
	/* Two nodes that dial each other at once end up with two connections:
	 * both keep the one dialled by the node with the smaller ID and close the
	 * other, moving what it was about onto the one kept. */
	if (p->role == PN_ROLE_NODE && !(h->features & ENGINE_LINK_FEATURE)) {
		for (uint32_t i = 0; i < e->npeers; i++) {
			struct peer *q = e->peers[i];
			if (q == p || !q->ready || q->closing || q->role != PN_ROLE_NODE ||
			    (q->features & ENGINE_LINK_FEATURE) || memcmp(q->id, p->id, PN_ID_BYTES))
				continue;
			bool me_smaller = memcmp(e->o.self_id, p->id, PN_ID_BYTES) < 0;
			bool keep_p = p->outgoing == me_smaller;
			struct peer *keep = keep_p ? p : q, *drop = keep_p ? q : p;
			for (uint32_t j = 0; j < drop->ncids; j++)
				(void)eng__pcid_get(keep, &drop->cids[j].cid, true);
			close_peer(e, drop, 0, "duplicate connection", false);
			if (!keep_p) {
				peer_engage_all(e, q);
				return PN_OK;
			}
			break;
		}
	}
	struct engine_action *a = eng__push(e, ENGINE_PEER_READY, p->key, NULL);
	if (a) {
		a->role = p->role;
		a->listen_port = p->listen_port;
		a->features = p->features;
	}
	if (serves_p2p(e) && p->role != PN_ROLE_SERVER && choker_peer_add(e->choker, p->key, e->now) == PN_OK)
		p->in_choker = true;
	peer_engage_all(e, p);
	return PN_OK;
}

static int on_interested(struct engine *e, struct peer *p, const struct pn_msg_cidref *m, bool interested)
{
	if (!serves_p2p(e))
		return PN_OK; /* a server serves everyone; a client no one */
	struct pcid *pc = eng__pcid_get(p, &m->cid, interested);
	if (!pc)
		return interested ? PN_ELIMIT : PN_OK;
	pc->they_want = interested;
	if (interested && !pc->revealed && !pc->bitfield_sent)
		send_bitfield(e, p, pc); /* may start super-seeding it */
	update_their_interest(e, p);
	if (!interested) {
		if (pc->revealed) /* done with what it was shown: it may lack what it was not */
			eng__seed_top_up(e, &m->cid);
		return PN_OK;
	}
	struct download *d = eng__dl_get(e, &m->cid);
	if (d) /* a fellow downloader: we may want what it has too */
		dl_engage(e, d, p, pc);
	return PN_OK;
}

static int on_bitfield(struct engine *e, struct peer *p, const struct pn_msg_bitfield *m)
{
	struct pcid *pc = eng__pcid_get(p, &m->cid, false);
	if (!pc)
		return PN_OK; /* not something we asked about */
	if (!pc->bitmap && !(pc->bitmap = malloc(bm_len(m->nchunks))))
		return PN_ENOMEM;
	memcpy(pc->bitmap, m->bitmap, bm_len(m->nchunks));
	/* Super-seeding: chunks we showed that they turn out to hold are replaced. */
	for (uint32_t i = 0; pc->revealed && i < m->nchunks; i++)
		if (bit(pc->revealed, i) && bit(pc->bitmap, i))
			eng__seed_on_have(e, p, pc, i);
	struct download *d = eng__dl_get(e, &m->cid);
	if (!d)
		return PN_OK;
	if (d->swarm) {
		if (pc->in_swarm)
			swarm_peer_bitfield(d->swarm, p->key, pc->bitmap, e->now);
		else
			eng__swarm_join(e, d, p, pc);
		/* Only p's holdings changed, so only our interest in p can. */
		if (pc->in_swarm)
			set_we_want(e, p, pc, swarm_peer_wanted(d->swarm, p->key) > 0);
	} else {
		eng__dl_try_meta_and_hashes(e, d, p, pc);
	}
	return PN_OK;
}

static int on_have(struct engine *e, struct peer *p, const struct pn_msg_cidref *m)
{
	struct pcid *pc = eng__pcid_get(p, &m->cid, false);
	if (!pc)
		return PN_OK;
	uint32_t nchunks = pn_cid_chunks(&m->cid);
	if (!pc->bitmap && !(pc->bitmap = calloc(1, bm_len(nchunks))))
		return PN_ENOMEM;
	bit_set(pc->bitmap, m->index);
	if (pc->revealed)
		eng__seed_on_have(e, p, pc, m->index);
	eng__seed_top_up(e, &m->cid);
	struct download *d = eng__dl_get(e, &m->cid);
	if (!d)
		return PN_OK;
	if (d->swarm) {
		if (pc->in_swarm)
			swarm_peer_have(d->swarm, p->key, m->index, e->now);
		else
			eng__swarm_join(e, d, p, pc);
		if (!pc->we_want && swarm_peer_wanted(d->swarm, p->key) > 0)
			set_we_want(e, p, pc, true);
	} else {
		eng__dl_try_meta_and_hashes(e, d, p, pc);
	}
	return PN_OK;
}

static void on_choke(struct engine *e, struct peer *p, bool choked)
{
	if (p->role == PN_ROLE_SERVER)
		return;
	p->peer_choking = choked;
	if (choked)
		p->released++;
	for (struct download *d = e->downloads; d; d = d->next) {
		struct pcid *pc = eng__pcid_get(p, &d->cid, false);
		if (d->swarm && pc && pc->in_swarm)
			swarm_peer_choked(d->swarm, p->key, choked, e->now);
	}
}

static int on_chunk_req(struct engine *e, struct peer *p, const struct pn_msg_ref *q)
{
	if (e->o.role == ENGINE_CLIENT) {
		eng__send_error(e, p, q->req_id, PN_WERR_NOT_FOUND, "a client serves nothing");
		return PN_OK;
	}
	if (p->am_choking)
		return PN_OK; /* requests from a choked peer are dropped, as it was told */
	struct held h = eng__hold_of(e, &q->cid);
	if (!held_chunk(&h, q->index)) {
		eng__send_error(e, p, q->req_id, PN_WERR_NOT_FOUND, "chunk not held");
		return PN_OK;
	}
	uint32_t max = e->o.role == ENGINE_SERVER ? ENGINE_UPQ_MAX_SERVER : ENGINE_UPQ_MAX;
	for (uint32_t k = 0; k < p->upq_len; k++)
		if (p->upq[(p->upq_head + k) % p->upq_cap].req_id == q->req_id)
			return eng__violation(e, p, "req_id of a request still open");
	if (p->upq_len >= max) {
		eng__send_error(e, p, 0, PN_WERR_LIMIT, "too many chunk requests outstanding");
		close_peer(e, p, PN_ELIMIT, "too many chunk requests outstanding", false);
		return PN_ELIMIT;
	}
	if (p->upq_len == p->upq_cap) {
		uint32_t cap = p->upq_cap ? p->upq_cap * 2 : 8;
		if (cap > max)
			cap = max;
		struct upreq *u = malloc((size_t)cap * sizeof *u);
		if (!u)
			return PN_ENOMEM;
		for (uint32_t i = 0; i < p->upq_len; i++)
			u[i] = p->upq[(p->upq_head + i) % p->upq_cap];
		free(p->upq);
		p->upq = u;
		p->upq_head = 0;
		p->upq_cap = cap;
	}
	struct upreq *u = &p->upq[(p->upq_head + p->upq_len++) % p->upq_cap];
	e->upq_total++;
	u->cid = q->cid;
	u->index = q->index;
	u->req_id = q->req_id;
	return PN_OK;
}

/* A CANCEL withdraws a request not sent yet (end game: another peer was faster). */
static void on_cancel(struct engine *e, struct peer *p, const struct pn_msg_ref *q)
{
	for (uint32_t k = 0; k < p->upq_len; k++) {
		struct upreq *u = &p->upq[(p->upq_head + k) % p->upq_cap];
		if (u->index != q->index || !cid_eq(&u->cid, &q->cid))
			continue;
		for (uint32_t j = k; j + 1 < p->upq_len; j++)
			p->upq[(p->upq_head + j) % p->upq_cap] = p->upq[(p->upq_head + j + 1) % p->upq_cap];
		p->upq_len--;
		e->upq_total--;
		e->st.cancels_honoured++;
		return;
	}
}

static int on_chunk(struct engine *e, struct peer *p, const struct pn_msg_chunk *m)
{
	struct download *d = eng__dl_get(e, &m->cid);
	if (!d || !d->swarm)
		return PN_OK; /* a late copy after completion or cancel */
	if ((bit(d->have, m->index) || bit(d->writing, m->index)) &&
	    (p->released || swarm_requested(d->swarm, p->key, m->index))) {
		/* Another copy is written or being written: settle this request. */
		if (bit(d->have, m->index))
			swarm_chunk_received(d->swarm, p->key, m->index, true, e->now);
		return PN_OK;
	}
	/* A chunk we lack that answers a request we withdrew (a CANCEL, or its
	 * CHOKE crossing our request) is kept: it is verified like any other,
	 * and asking for it again would fetch it twice. */
	if (!swarm_requested(d->swarm, p->key, m->index) && !p->released) {
		eng__send_error(e, p, 0, PN_WERR_PROTOCOL, "a chunk that was not asked for");
		close_peer(e, p, PN_EPROTO, "sent a chunk that was not asked for", false);
		return PN_EPROTO;
	}
	bit_set(d->writing, m->index);
	struct engine_action *a = eng__push(e, ENGINE_WRITE_CHUNK, p->key, NULL);
	if (a) {
		a->cid = m->cid;
		a->index = m->index;
		a->req_id = m->req_id;
		a->data = m->data;
		a->len = m->len;
	}
	return PN_OK;
}

static int on_error(struct engine *e, struct peer *p, const struct pn_msg_error *er)
{
	for (struct download *d = e->downloads; er->req_id && d; d = d->next) {
		struct pcid *pc = eng__pcid_get(p, &d->cid, false);
		bool probe = pc && pc->probed && er->req_id == pc->probe_req;
		bool meta = er->req_id == d->meta_req && d->meta_peer == p->key;
		if (meta)
			d->meta_req = 0;
		if (er->req_id == d->hash_req && d->hash_peer == p->key) {
			d->hash_req = 0;
			d->hash_peer = 0; /* another peer may have the hash list */
			eng__dl_find_hash_provider(e, d);
		}
		if ((probe || meta) && er->code == PN_WERR_NOT_FOUND) {
			if (pc)
				pc->absent = true;
			struct engine_action *a = eng__push(e, ENGINE_NOT_FOUND, p->key, NULL);
			if (a)
				a->cid = d->cid;
		}
	}
	struct engine_action *a = eng__push(e, ENGINE_PEER_ERROR, p->key, NULL);
	if (a) {
		a->req_id = er->req_id;
		a->code = er->code;
		a->text = er->text;
		a->text_len = er->text_len;
	}
	/* ERROR(0, ...) ends the connection: the peer sends nothing more on it,
	 * and neither do we (docs/PROTOCOL.md, Errors and closing). */
	if (er->req_id == 0)
		close_peer(e, p, PN_ECLOSED, "the peer ended the connection with an ERROR", false);
	return PN_OK;
}

int engine_on_msg(struct engine *e, uint32_t k, const struct pn_msg *m, uint64_t now)
{
	begin_input(e, now);
	struct peer *p = peer_get(e, k);
	if (!p || p->closing)
		return PN_OK;
	if (!p->ready) {
		if (m->type != PN_MSG_HELLO || !p->established) {
			eng__send_error(e, p, 0, PN_WERR_PROTOCOL, "expected HELLO");
			close_peer(e, p, PN_EPROTO, "the first message was not HELLO", false);
			return PN_EPROTO;
		}
		return on_hello(e, p, &m->u.hello);
	}
	switch (m->type) {
	case PN_MSG_HELLO:
		eng__send_error(e, p, 0, PN_WERR_PROTOCOL, "unexpected HELLO");
		close_peer(e, p, PN_EPROTO, "unexpected second HELLO", false);
		return PN_EPROTO;
	case PN_MSG_PING: {
		struct pn_msg pong = {.type = PN_MSG_PONG};
		pong.u.ping.nonce = m->u.ping.nonce;
		eng__send_msg(e, p, &pong, NULL);
		return PN_OK;
	}
	case PN_MSG_PONG: return PN_OK;
	case PN_MSG_ERROR: return on_error(e, p, &m->u.error);
	case PN_MSG_META_REQ:
	case PN_MSG_HASH_REQ:
	case PN_MSG_CHUNK_REQ:
		if ((m->type == PN_MSG_HASH_REQ ? m->u.hash_req.req_id : m->u.ref.req_id) == 0)
			return eng__violation(e, p, "request with req_id 0");
		break;
	default:
		break;
	}
	switch (m->type) {
	case PN_MSG_META_REQ: return eng__on_meta_req(e, p, &m->u.ref);
	case PN_MSG_HASH_REQ: return eng__on_hash_req(e, p, &m->u.hash_req);
	case PN_MSG_CHUNK_REQ: return on_chunk_req(e, p, &m->u.ref);
	case PN_MSG_CANCEL: on_cancel(e, p, &m->u.ref); return PN_OK;
	default: break;
	}
	if (e->o.role == ENGINE_SERVER)
		return PN_ENOTSUP; /* uploads and listing are the server's own */
	switch (m->type) {
	case PN_MSG_INTERESTED: return on_interested(e, p, &m->u.cidref, true);
	case PN_MSG_NOT_INTERESTED: return on_interested(e, p, &m->u.cidref, false);
	case PN_MSG_BITFIELD: return on_bitfield(e, p, &m->u.bitfield);
	case PN_MSG_HAVE: return on_have(e, p, &m->u.cidref);
	case PN_MSG_CHOKE: on_choke(e, p, true); return PN_OK;
	case PN_MSG_UNCHOKE: on_choke(e, p, false); return PN_OK;
	case PN_MSG_META: return eng__on_meta(e, p, &m->u.meta);
	case PN_MSG_HASHES: return eng__on_hashes(e, p, &m->u.hashes);
	case PN_MSG_CHUNK: return on_chunk(e, p, &m->u.chunk);
	default: return PN_ENOTSUP;
	}
}

/* ------------------------------------------------------------ peers */

int engine_peer_add(struct engine *e, uint32_t k, bool outgoing, const uint8_t *id, uint64_t now)
{
	begin_input(e, now);
	if (peer_get(e, k))
		return PN_EEXIST;
	if (id && is_banned(e, id))
		return PN_EACCES;
	if (e->npeers == e->peers_cap) {
		uint32_t cap = e->peers_cap ? e->peers_cap * 2 : 8;
		struct peer **pp = realloc(e->peers, (size_t)cap * sizeof *pp);
		if (!pp)
			return PN_ENOMEM;
		e->peers = pp;
		e->peers_cap = cap;
	}
	struct peer *p = calloc(1, sizeof *p);
	if (!p)
		return PN_ENOMEM;
	if (pn_u32map_put(&e->peer_at, k, e->npeers) != 0) {
		free(p);
		return PN_ENOMEM;
	}
	p->key = k;
	p->outgoing = outgoing;
	p->writable = true;
	p->am_choking = true;
	p->peer_choking = true;
	if (id) {
		memcpy(p->id, id, PN_ID_BYTES);
		p->id_known = true;
	}
	e->peers[e->npeers++] = p;
	return PN_OK;
}

void engine_peer_established(struct engine *e, uint32_t k, const uint8_t id[PN_ID_BYTES], uint32_t hello_features,
			     uint64_t now)
{
	begin_input(e, now);
	struct peer *p = peer_get(e, k);
	if (!p || p->closing)
		return;
	memcpy(p->id, id, PN_ID_BYTES);
	p->id_known = true;
	p->established = true;
	if (is_banned(e, id)) {
		close_peer(e, p, PN_EACCES, "a banned peer", false);
		return;
	}
	struct pn_msg m = {.type = PN_MSG_HELLO};
	m.u.hello.version = PN_PROTOCOL_VERSION;
	m.u.hello.role = e->o.role == ENGINE_NODE ? PN_ROLE_NODE : e->o.role == ENGINE_SERVER ? PN_ROLE_SERVER
											   : PN_ROLE_CLIENT;
	m.u.hello.listen_port = e->o.listen_port;
	m.u.hello.features = hello_features;
	eng__send_msg(e, p, &m, NULL);
}

void engine_peer_closed(struct engine *e, uint32_t k, uint64_t now)
{
	begin_input(e, now);
	uint32_t i;
	if (!pn_u32map_get(&e->peer_at, k, &i))
		return;
	struct peer *p = e->peers[i];
	e->peers[i] = e->peers[--e->npeers];
	pn_u32map_del(&e->peer_at, k);
	if (i < e->npeers) /* the last peer moved to i: replacing its entry cannot fail */
		(void)pn_u32map_put(&e->peer_at, e->peers[i]->key, i);
	for (struct download *d = e->downloads; d; d = d->next) {
		struct pcid *pc = eng__pcid_get(p, &d->cid, false);
		if (d->swarm && pc && pc->in_swarm)
			swarm_peer_remove(d->swarm, k);
		if (d->hash_peer == k) {
			d->hash_peer = 0;
			d->hash_req = 0;
		}
		if (d->meta_peer == k && d->meta_req)
			d->meta_req = 0;
	}
	if (p->in_choker)
		choker_peer_remove(e->choker, k);
	/* Drop queued actions for it: it cannot be sent to any more. */
	for (uint32_t j = 0; j < e->qlen; j++) {
		struct queued *q = &e->queue[(e->qhead + j) % e->qcap];
		if (q->a.peer == k && (q->a.type == ENGINE_SEND || q->a.type == ENGINE_CLOSE ||
				       q->a.type == ENGINE_PEER_READY))
			q->skip = true;
	}
	for (uint32_t j = 0; j < p->ncids; j++) {
		free(p->cids[j].bitmap);
		free(p->cids[j].revealed);
	}
	free(p->cids);
	eng__upq_clear(e, p);
	eng__set_writable(e, p, true);
	free(p->upq);
	free(p);
	/* Others may now take over the hash list. */
	for (struct download *d = e->downloads; d; d = d->next)
		if (!d->hashes_done && !d->hash_peer)
			eng__dl_find_hash_provider(e, d);
}

void engine_peer_offer(struct engine *e, uint32_t k, const struct pn_cid *cid, uint64_t now)
{
	begin_input(e, now);
	struct peer *p = peer_get(e, k);
	if (!p || p->closing)
		return;
	struct pcid *pc = eng__pcid_get(p, cid, true);
	struct download *d = eng__dl_get(e, cid);
	if (pc && d)
		dl_engage(e, d, p, pc);
}

void engine_peer_writable(struct engine *e, uint32_t k, uint64_t now)
{
	begin_input(e, now);
	struct peer *p = peer_get(e, k);
	if (p)
		eng__set_writable(e, p, true);
}

void engine_chunk_sent(struct engine *e, uint32_t k, const struct pn_cid *cid, uint32_t index, uint32_t len, bool ok,
		       bool congested, uint64_t now)
{
	begin_input(e, now);
	struct peer *p = peer_get(e, k);
	if (!p)
		return;
	if (congested)
		eng__set_writable(e, p, false);
	if (!ok)
		return;
	p->bytes_to += len;
	e->st.bytes_up += len;
	e->st.chunks_up++;
	if (p->in_choker)
		choker_bytes_to(e->choker, k, len);
}

void engine_chunk_written(struct engine *e, uint32_t k, const struct pn_cid *cid, uint32_t index, int result,
			  uint64_t now)
{
	begin_input(e, now);
	struct download *d = eng__dl_get(e, cid);
	if (!d || !d->swarm || index >= d->nchunks || !bit(d->writing, index))
		return;
	d->writing[index / 8] &= (uint8_t) ~(0x80 >> (index % 8));
	struct peer *p = peer_get(e, k);
	if (result == PN_ECORRUPT) {
		e->st.bad_chunks++;
		swarm_chunk_received(d->swarm, k, index, false, e->now); /* DROP_PEER follows */
		if (p && p->id_known)
			ban_id(e, p->id);
		return;
	}
	if (result != PN_OK)
		return; /* the request times out and goes elsewhere; the owner decides */
	if (!swarm_chunk_received(d->swarm, k, index, true, e->now))
		swarm_chunk_had(d->swarm, index, e->now); /* it came unasked */
	if (!bit(d->have, index)) {
		bit_set(d->have, index);
		d->have_count++;
	}
	uint32_t len = pn_cid_chunk_len(cid, index);
	d->bytes_down += len;
	d->last_chunk_ms = e->now;
	d->stall_at = 0;
	e->st.bytes_down += len;
	e->st.chunks_down++;
	if (p) {
		p->bytes_from += len;
		if (p->in_choker)
			choker_bytes_from(e->choker, k, len);
	}
	/* Every peer about this content learns it, interested or not: interest
	 * comes and goes with what each side holds. */
	for (uint32_t i = 0; i < e->npeers; i++) {
		struct peer *q = e->peers[i];
		if (speaks_p2p(q) && eng__pcid_get(q, cid, false))
			eng__send_cidref(e, q, PN_MSG_HAVE, cid, index);
	}
	if (d->have_count == d->nchunks)
		dl_complete(e, d);
	else
		update_our_interest(e, d);
}

/* ------------------------------------------------------------ downloads: API */

int engine_want(struct engine *e, const struct pn_cid *cid, const char *name, const uint8_t *hashes,
		const uint8_t *have, uint64_t now)
{
	begin_input(e, now);
	if (e->o.role == ENGINE_SERVER)
		return PN_ENOTSUP;
	if (cid->size > PN_MAX_FILE_SIZE) /* no message could name it (fuzz_engine) */
		return PN_EINVAL;
	if (eng__dl_get(e, cid))
		return PN_EEXIST;
	if (e->ndownloads >= ENGINE_MAX_DOWNLOADS)
		return PN_ELIMIT;
	struct download *d = calloc(1, sizeof *d);
	if (!d)
		return PN_ENOMEM;
	d->cid = *cid;
	d->nchunks = pn_cid_chunks(cid);
	d->hashes = malloc((size_t)d->nchunks * PN_HASH_BYTES);
	d->have = calloc(1, bm_len(d->nchunks));
	d->writing = calloc(1, bm_len(d->nchunks));
	d->sent = calloc(d->nchunks, sizeof *d->sent);
	if (!d->hashes || !d->have || !d->writing || !d->sent) {
		free(d->hashes);
		free(d->have);
		free(d->writing);
		free(d->sent);
		free(d);
		return PN_ENOMEM;
	}
	if (name && *name) {
		snprintf(d->name, sizeof d->name, "%s", name);
		d->have_name = true;
	}
	d->started_ms = d->last_chunk_ms = e->now;
	d->next = e->downloads;
	e->downloads = d;
	e->ndownloads++;
	if (e->choker)
		choker_set_seeding(e->choker, false);
	if (hashes) {
		memcpy(d->hashes, hashes, (size_t)d->nchunks * PN_HASH_BYTES);
		d->hashes_got = d->nchunks;
		d->hashes_done = true;
		dl_start_swarm(e, d, have);
		if (d->have_count == d->nchunks) {
			dl_complete(e, d);
			return PN_OK;
		}
	}
	for (uint32_t i = 0; i < e->npeers; i++) {
		struct peer *p = e->peers[i];
		struct pcid *pc = eng__pcid_get(p, cid, p->role == PN_ROLE_SERVER || e->o.role == ENGINE_CLIENT);
		if (pc)
			dl_engage(e, d, p, pc);
	}
	return PN_OK;
}

void engine_hashes_recorded(struct engine *e, const struct pn_cid *cid, const uint8_t *have, uint64_t now)
{
	begin_input(e, now);
	struct download *d = eng__dl_get(e, cid);
	if (!d || !d->hashes_done || d->swarm)
		return;
	dl_start_swarm(e, d, have);
	if (d->swarm && d->have_count == d->nchunks)
		dl_complete(e, d);
}

static void cancel_requests(struct engine *e, struct peer *p, struct download *d)
{
	uint32_t n = swarm_peer_requests(d->swarm, p->key, NULL, 0);
	uint32_t *idx = n ? malloc((size_t)n * sizeof *idx) : NULL;
	if (!idx)
		return; /* nothing asked, or no memory: late chunks are dropped on arrival */
	n = swarm_peer_requests(d->swarm, p->key, idx, n);
	for (uint32_t i = 0; i < n; i++) {
		struct engine_action *a = eng__push(e, ENGINE_SEND, p->key, NULL);
		if (!a)
			break;
		a->msg.type = PN_MSG_CANCEL;
		a->msg.u.ref.req_id = eng__new_req(e);
		a->msg.u.ref.cid = d->cid;
		a->msg.u.ref.index = idx[i];
		e->st.cancels_sent++;
		p->released++;
	}
	free(idx);
}

void engine_unwant(struct engine *e, const struct pn_cid *cid, uint64_t now)
{
	begin_input(e, now);
	struct download *d = eng__dl_get(e, cid);
	if (!d)
		return;
	for (uint32_t i = 0; i < e->npeers; i++) {
		struct peer *p = e->peers[i];
		struct pcid *pc = eng__pcid_get(p, cid, false);
		if (!pc)
			continue;
		/* Withdraw what is asked and not yet come: a peer drops a request it
		 * has not sent, instead of spending its uplink on a dropped download. */
		if (d->swarm && pc->in_swarm && !p->closing)
			cancel_requests(e, p, d);
		set_we_want(e, p, pc, false);
	}
	dl_free(e, d);
}

void engine_provider(struct engine *e, const uint8_t id[PN_ID_BYTES], const char *addr, const struct pn_cid *cid,
		     uint64_t now)
{
	begin_input(e, now);
	if (!memcmp(id, e->o.self_id, PN_ID_BYTES) || is_banned(e, id))
		return;
	for (uint32_t i = 0; i < e->npeers; i++) {
		struct peer *p = e->peers[i];
		if (p->id_known && !p->closing && !memcmp(p->id, id, PN_ID_BYTES) && (p->ready || p->outgoing)) {
			struct pcid *pc = eng__pcid_get(p, cid, true);
			struct download *d = eng__dl_get(e, cid);
			if (pc && d)
				dl_engage(e, d, p, pc);
			return;
		}
	}
	struct engine_action *a = eng__push(e, ENGINE_DIAL, 0, NULL);
	if (a) {
		memcpy(a->id, id, PN_ID_BYTES);
		snprintf(a->addr, sizeof a->addr, "%s", addr);
		a->cid = *cid;
	}
}

bool engine_downloading(const struct engine *e, const struct pn_cid *cid)
{
	return eng__dl_get(e, cid) != NULL;
}

bool engine_download_info(const struct engine *e, const struct pn_cid *cid, struct engine_download_info *out)
{
	const struct download *d = eng__dl_get(e, cid);
	if (!d)
		return false;
	memset(out, 0, sizeof *out);
	if (d->have_name)
		memcpy(out->name, d->name, sizeof out->name);
	out->have_hashes = d->hashes_done;
	out->nchunks = d->nchunks;
	out->have = d->have_count;
	out->bytes_have = d->have_count == d->nchunks ? cid->size
			  : bit(d->have, d->nchunks - 1) ? (uint64_t)(d->have_count - 1) * PN_CHUNK_SIZE +
							      pn_cid_chunk_len(cid, d->nchunks - 1)
							: (uint64_t)d->have_count * PN_CHUNK_SIZE;
	out->bytes_down = d->bytes_down;
	out->started_ms = d->started_ms;
	for (uint32_t i = 0; i < e->npeers; i++) {
		struct pcid *pc = eng__pcid_get(e->peers[i], cid, false);
		out->peers += pc && pc->in_swarm;
	}
	return true;
}

bool engine_download_has_providers(const struct engine *e, const struct pn_cid *cid)
{
	for (uint32_t i = 0; i < e->npeers; i++) {
		struct pcid *pc = eng__pcid_get(e->peers[i], cid, false);
		if (pc && (pc->bitmap || pc->has_all))
			return true;
	}
	return false;
}

/* ------------------------------------------------------------ time */

static uint32_t stall_ms(const struct engine *e)
{
	return e->o.stall_ms ? e->o.stall_ms : ENGINE_DEFAULT_STALL_MS;
}

void engine_tick(struct engine *e, uint64_t now)
{
	begin_input(e, now);
	if (e->choker)
		choker_tick(e->choker, e->now);
	if (e->seed_retry) {
		e->seed_retry = false; /* set again if the uplink is still busy */
		for (struct seed *s = e->seeds; s; s = s->next)
			eng__seed_top_up(e, &s->cid);
	}
	for (struct download *d = e->downloads; d; d = d->next) {
		if (d->swarm)
			swarm_tick(d->swarm, e->now);
		uint64_t due = (d->stall_at ? d->stall_at : d->last_chunk_ms) + stall_ms(e);
		if (e->now >= due) {
			d->stall_at = e->now;
			struct engine_action *a = eng__push(e, ENGINE_STALLED, 0, NULL);
			if (a)
				a->cid = d->cid;
		}
	}
}

uint64_t engine_next_wakeup(const struct engine *e)
{
	uint64_t next = e->choker ? choker_next_wakeup(e->choker) : UINT64_MAX;
	if (e->seed_retry && e->now + ENGINE_SEED_RETRY_MS < next)
		next = e->now + ENGINE_SEED_RETRY_MS;
	for (const struct download *d = e->downloads; d; d = d->next) {
		uint64_t t = d->swarm ? swarm_next_wakeup(d->swarm) : UINT64_MAX;
		if (t < next)
			next = t;
		t = (d->stall_at ? d->stall_at : d->last_chunk_ms) + stall_ms(e);
		if (t < next)
			next = t;
	}
	return next;
}

/* ------------------------------------------------------------ actions */

static bool pop_queued(struct engine *e, struct engine_action *out)
{
	while (e->qlen) {
		struct queued *q = &e->queue[e->qhead];
		e->qhead = (e->qhead + 1) % e->qcap;
		e->qlen--;
		if (q->skip) {
			free(q->owned);
			continue;
		}
		*out = q->a;
		free(e->popped_owned);
		e->popped_owned = q->owned;
		return true;
	}
	return false;
}

static bool pump_choker(struct engine *e, struct engine_action *out)
{
	struct choker_action ca;
	while (e->choker && choker_next_action(e->choker, &ca)) {
		struct peer *p = peer_get(e, ca.peer);
		if (!p || !p->ready || p->closing || p->seed_unchoked)
			continue;
		p->am_choking = ca.type == CHOKER_CHOKE;
		if (p->am_choking)
			eng__upq_clear(e, p); /* a choke discards what was asked, as the peer knows */
		memset(out, 0, sizeof *out);
		out->type = ENGINE_SEND;
		out->peer = p->key;
		out->msg.type = p->am_choking ? PN_MSG_CHOKE : PN_MSG_UNCHOKE;
		return true;
	}
	return false;
}

static bool pump_swarms(struct engine *e, struct engine_action *out)
{
	struct swarm_action sa;
	for (struct download *d = e->downloads; d; d = d->next) {
		while (d->swarm && swarm_next_action(d->swarm, &sa)) {
			if (sa.type == SWARM_DONE)
				continue; /* completion follows the last write */
			struct peer *p = peer_get(e, sa.peer);
			if (!p || p->closing)
				continue;
			if (sa.type == SWARM_DROP_PEER) { /* ERROR(0, CORRUPT), then the close */
				eng__ban_peer(e, p, "sent a chunk that does not match its hash");
				if (pop_queued(e, out))
					return true;
				continue;
			}
			memset(out, 0, sizeof *out);
			out->type = ENGINE_SEND;
			out->peer = p->key;
			out->msg.type = sa.type == SWARM_REQUEST ? PN_MSG_CHUNK_REQ : PN_MSG_CANCEL;
			out->msg.u.ref.req_id = eng__new_req(e);
			out->msg.u.ref.cid = d->cid;
			out->msg.u.ref.index = sa.index;
			if (sa.type == SWARM_CANCEL) {
				e->st.cancels_sent++;
				p->released++;
			}
			return true;
		}
	}
	return false;
}

bool engine_next_action(struct engine *e, struct engine_action *out)
{
	free(e->popped_owned);
	e->popped_owned = NULL;
	if (pop_queued(e, out))
		return true;
	if (pump_choker(e, out) || pump_swarms(e, out))
		return true;
	/* Choker and swarm actions may have queued more (none today), then uploads. */
	if (pop_queued(e, out))
		return true;
	return eng__pump_uploads(e, out);
}

bool engine_store_lookup(const struct store *s, const struct pn_cid *cid, struct engine_content *out)
{
	const struct store_object *o = store_get(s, cid);
	if (!o)
		return false;
	out->name = o->name;
	out->hashes = o->hashes;
	out->bitmap = NULL;
	return true;
}

/* ------------------------------------------------------------ life */

struct engine *engine_new(const struct engine_opts *opts, uint64_t now)
{
	if (!opts || opts->role < ENGINE_NODE || opts->role > ENGINE_CLIENT)
		return NULL;
	struct engine *e = calloc(1, sizeof *e);
	if (!e)
		return NULL;
	e->o = *opts;
	if (!e->o.inflight_node)
		e->o.inflight_node = ENGINE_DEFAULT_INFLIGHT_NODE;
	if (!e->o.inflight_server)
		e->o.inflight_server = ENGINE_DEFAULT_INFLIGHT_SERVER;
	if (!e->o.request_move_ms)
		e->o.request_move_ms = ENGINE_DEFAULT_MOVE_MS;
	if (!e->o.rechoke_ms)
		e->o.rechoke_ms = 5000;
	if (!e->o.optimistic_ms)
		e->o.optimistic_ms = 15000;
	e->now = now;
	pn_prng_seed(&e->prng, opts->seed);
	if (opts->role == ENGINE_NODE) {
		struct choker_opts co = {.slots = opts->upload_slots,
					 .rechoke_ms = e->o.rechoke_ms,
					 .optimistic_ms = e->o.optimistic_ms,
					 .seed = pn_prng_next(&e->prng)};
		e->choker = choker_new(&co, now);
		if (!e->choker) {
			free(e);
			return NULL;
		}
		choker_set_seeding(e->choker, true);
	}
	return e;
}

void engine_free(struct engine *e)
{
	if (!e)
		return;
	while (e->npeers)
		engine_peer_closed(e, e->peers[0]->key, e->now);
	while (e->downloads)
		dl_free(e, e->downloads);
	while (e->graveyard) {
		struct download *d = e->graveyard;
		e->graveyard = d->next;
		free(d->hashes);
		free(d);
	}
	while (e->seeds) {
		struct seed *s = e->seeds;
		e->seeds = s->next;
		free(s->announced);
		free(s->sent);
		free(s);
	}
	for (uint32_t i = 0; i < e->qlen; i++)
		free(e->queue[(e->qhead + i) % e->qcap].owned);
	free(e->popped_owned);
	free(e->queue);
	free(e->peers);
	pn_u32map_free(&e->peer_at);
	choker_free(e->choker);
	free(e);
}

void engine_set_listen_port(struct engine *e, uint16_t port)
{
	e->o.listen_port = port;
}

const char *engine_check(const struct engine *e)
{
	uint32_t queued = 0, blocked = 0;
	for (uint32_t i = 0; i < e->npeers; i++) {
		const struct peer *p = e->peers[i];
		uint32_t at;
		if (!pn_u32map_get(&e->peer_at, p->key, &at) || at != i)
			return "a peer is missing from the key index";
		if (p->upq_len > p->upq_cap)
			return "an upload queue is longer than its storage";
		if (p->upq_len > (e->o.role == ENGINE_SERVER ? ENGINE_UPQ_MAX_SERVER : ENGINE_UPQ_MAX))
			return "an upload queue is past its bound";
		queued += p->upq_len;
		blocked += !p->writable;
	}
	if (e->peer_at.n != e->npeers)
		return "the key index holds peers that are gone";
	if (queued != e->upq_total)
		return "the queued-request total disagrees with the queues";
	if (blocked != e->nblocked)
		return "the blocked-peer count disagrees with the peers";
	return NULL;
}

bool engine_peer_info(const struct engine *e, uint32_t k, struct engine_peer_info *out)
{
	const struct peer *p = peer_get(e, k);
	if (!p)
		return false;
	memset(out, 0, sizeof *out);
	memcpy(out->id, p->id, PN_ID_BYTES);
	out->role = p->role;
	out->ready = p->ready;
	out->am_choking = p->am_choking;
	out->peer_choking = p->peer_choking;
	out->ncids = p->ncids;
	out->upq = p->upq_len;
	out->bytes_to = p->bytes_to;
	out->bytes_from = p->bytes_from;
	return true;
}

void engine_stats(const struct engine *e, struct engine_stats *out)
{
	*out = e->st;
	out->peers = e->npeers;
	out->downloads = e->ndownloads;
}

bool engine_is_banned(const struct engine *e, const uint8_t id[PN_ID_BYTES])
{
	return is_banned(e, id);
}

void engine_set_streaming(struct engine *e, const struct pn_cid *cid, bool on)
{
	struct download *d = eng__dl_get(e, cid);
	if (!d)
		return;
	d->streaming = on;
	if (d->swarm)
		swarm_set_stream_window(d->swarm, on ? ENGINE_STREAM_WINDOW : 0);
}
