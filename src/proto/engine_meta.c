/* The peer engine's name and hash list: META and HASHES served to others
 * (META_REQ, HASH_REQ), and a download fetching them — the META probe that
 * asks a server or a client's provider whether it holds the content, then the
 * name and the hash list page by page, checked against the content ID before
 * any chunk is asked. See engine.h. */
#include <stdlib.h>
#include <string.h>
#define PN_PROTO_ENGINE_IMPL
#include "proto/engine_int.h"
#include "store/store.h"

/* Whether p can give d's name and hash list. */
static bool can_provide(const struct peer *p, const struct pcid *pc)
{
	if (!p->ready || p->closing || pc->absent)
		return false;
	if (p->role == PN_ROLE_SERVER)
		return pc->has_all;
	return pc->bitmap && bm_any(pc->bitmap, pn_cid_chunks(&pc->cid));
}

/* Asks p for what d still needs before chunks: the name, then the hash list. */
void eng__dl_try_meta_and_hashes(struct engine *e, struct download *d, struct peer *p, struct pcid *pc)
{
	if (d->done || !can_provide(p, pc))
		return;
	if (!d->have_name && !d->meta_req && !pc->probed) {
		struct pn_msg m = {.type = PN_MSG_META_REQ};
		m.u.ref.req_id = d->meta_req = eng__new_req(e);
		m.u.ref.cid = d->cid;
		d->meta_peer = p->key;
		eng__send_msg(e, p, &m, NULL);
	}
	if (d->hashes_done || d->hash_peer)
		return;
	struct pn_msg m = {.type = PN_MSG_HASH_REQ};
	d->hash_first = d->hashes_got;
	d->hash_count = d->nchunks - d->hashes_got < PN_HASHES_MAX ? d->nchunks - d->hashes_got : PN_HASHES_MAX;
	m.u.hash_req.req_id = d->hash_req = eng__new_req(e);
	m.u.hash_req.cid = d->cid;
	m.u.hash_req.first = d->hash_first;
	m.u.hash_req.count = d->hash_count;
	d->hash_peer = p->key;
	eng__send_msg(e, p, &m, NULL);
}

/* Asks p META for pc's content: its answer says whether it holds it. */
void eng__probe(struct engine *e, struct peer *p, struct pcid *pc)
{
	if (pc->probed || !p->ready || p->closing)
		return;
	struct pn_msg m = {.type = PN_MSG_META_REQ};
	m.u.ref.req_id = pc->probe_req = eng__new_req(e);
	m.u.ref.cid = pc->cid;
	pc->probed = true;
	eng__send_msg(e, p, &m, NULL);
}

void eng__dl_find_hash_provider(struct engine *e, struct download *d)
{
	for (uint32_t i = 0; i < e->npeers && !d->hash_peer && !d->hashes_done; i++) {
		struct peer *p = e->peers[i];
		struct pcid *pc = eng__pcid_get(p, &d->cid, false);
		if (pc)
			eng__dl_try_meta_and_hashes(e, d, p, pc);
	}
}

int eng__on_meta_req(struct engine *e, struct peer *p, const struct pn_msg_ref *q)
{
	struct held h = eng__hold_of(e, &q->cid);
	/* Held but nameless (a download whose META has not come, or an object
	 * stored without a name): a download in progress does not know it yet;
	 * what we hold in full goes by its printed content ID. */
	char *printed = NULL; /* the action outlives this call: it owns the copy */
	const char *name = h.name;
	if (h.any && h.complete && name && !*name) {
		if (!(printed = malloc(PN_CID_STR_LEN + 1)))
			return PN_ENOMEM;
		pn_cid_format(&q->cid, printed);
		name = printed;
	}
	if (!name || !*name) {
		eng__send_error(e, p, q->req_id, PN_WERR_NOT_FOUND, "no such content");
		return PN_OK;
	}
	struct pn_msg m = {.type = PN_MSG_META};
	m.u.meta.req_id = q->req_id;
	m.u.meta.cid = q->cid;
	m.u.meta.name = name;
	m.u.meta.name_len = (uint16_t)strlen(name);
	eng__send_msg(e, p, &m, printed);
	return PN_OK;
}

int eng__on_hash_req(struct engine *e, struct peer *p, const struct pn_msg_hash_req *q)
{
	struct held h = eng__hold_of(e, &q->cid);
	if (!h.any || !h.hashes) {
		eng__send_error(e, p, q->req_id, PN_WERR_NOT_FOUND, "no hash list for this content");
		return PN_OK;
	}
	struct pn_msg m = {.type = PN_MSG_HASHES};
	m.u.hashes.req_id = q->req_id;
	m.u.hashes.cid = q->cid;
	m.u.hashes.first = q->first;
	m.u.hashes.count = q->count;
	m.u.hashes.hashes = h.hashes + (size_t)q->first * PN_HASH_BYTES;
	eng__send_msg(e, p, &m, NULL);
	return PN_OK;
}

int eng__on_meta(struct engine *e, struct peer *p, const struct pn_msg_meta *m)
{
	struct download *d = eng__dl_get(e, &m->cid);
	if (!d)
		return PN_OK;
	struct pcid *pc = eng__pcid_get(p, &m->cid, false);
	bool answered = false;
	if (pc && pc->probed && m->req_id == pc->probe_req) {
		answered = true;
		if (p->role == PN_ROLE_SERVER)
			pc->has_all = true;
	}
	if (m->req_id == d->meta_req && d->meta_peer == p->key) {
		answered = true;
		d->meta_req = 0;
	}
	if (!answered)
		return PN_OK;
	if (!d->have_name) {
		memcpy(d->name, m->name, m->name_len);
		d->name[m->name_len] = 0;
		d->have_name = true;
		struct engine_action *a = eng__push(e, ENGINE_NAME, p->key, NULL);
		if (a) {
			a->cid = d->cid;
			a->name = d->name;
		}
	}
	if (pc && p->role == PN_ROLE_SERVER) {
		if (d->swarm)
			eng__swarm_join(e, d, p, pc);
		else
			eng__dl_try_meta_and_hashes(e, d, p, pc);
	}
	return PN_OK;
}

int eng__on_hashes(struct engine *e, struct peer *p, const struct pn_msg_hashes *m)
{
	struct download *d = eng__dl_get(e, &m->cid);
	if (!d || m->req_id != d->hash_req || d->hash_peer != p->key)
		return PN_OK;
	if (m->first != d->hash_first || m->count != d->hash_count)
		return eng__violation(e, p, "a hash list page that was not asked for");
	d->hash_req = 0;
	memcpy(d->hashes + (size_t)m->first * PN_HASH_BYTES, m->hashes, (size_t)m->count * PN_HASH_BYTES);
	d->hashes_got = m->first + m->count;
	if (d->hashes_got < d->nchunks) {
		d->hash_peer = 0;
		struct pcid *pc = eng__pcid_get(p, &d->cid, false);
		if (pc)
			eng__dl_try_meta_and_hashes(e, d, p, pc); /* the next page from the same peer */
		return PN_OK;
	}
	uint8_t root[PN_HASH_BYTES];
	d->hash_peer = 0;
	if (store_tree_root(d->hashes, d->nchunks, root) != PN_OK) {
		d->hashes_got = 0; /* out of memory: fetch it again later */
		return PN_OK;
	}
	if (memcmp(root, d->cid.root, PN_HASH_BYTES)) {
		d->hashes_got = 0;
		eng__ban_peer(e, p, "sent a hash list that does not match the content ID");
		return PN_OK;
	}
	d->hashes_done = true;
	struct engine_action *a = eng__push(e, ENGINE_HASHES, p->key, NULL);
	if (a) {
		a->cid = d->cid;
		a->data = d->hashes;
		a->len = d->nchunks * PN_HASH_BYTES;
	}
	return PN_OK;
}
