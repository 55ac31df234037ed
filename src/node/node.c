/* A peer-to-peer node: peers, swarm transfers, upload policy. See node.h.
 *
 * The decisions live in the sans-I/O cores of src/proto (swarm scheduler,
 * choker); this file moves their inputs and outputs over the network. */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>
#include "node/node_int.h"
#include "util/log.h"


uint64_t node_now(struct node *n) { return uv_now(n->loop); }

int node_send(struct node *n, struct pn_conn *c, const struct pn_msg *m)
{
	return pn_conn_send_msg(c, m);
}

static void cid_str(const struct pn_cid *cid, char out[PN_CID_STR_LEN + 1]) { pn_cid_format(cid, out); }

static bool is_banned(struct node *n, const uint8_t id[PN_ID_BYTES])
{
	for (int i = 0; i < n->nbanned; i++)
		if (!memcmp(n->banned[i], id, PN_ID_BYTES))
			return true;
	return false;
}

static void ban(struct node *n, const uint8_t id[PN_ID_BYTES])
{
	if (is_banned(n, id) || n->nbanned >= NODE_MAX_BANNED)
		return;
	memcpy(n->banned[n->nbanned++], id, PN_ID_BYTES);
}

/* ------------------------------------------------------------ peers */

struct peer *node_peer_by_id(struct node *n, const uint8_t id[PN_ID_BYTES])
{
	for (struct peer *p = n->peers; p; p = p->next)
		if (p->hello && !memcmp(p->id, id, PN_ID_BYTES))
			return p;
	return NULL;
}

struct peer *node_peer_by_key(struct node *n, uint32_t key)
{
	for (struct peer *p = n->peers; p; p = p->next)
		if (p->key == key)
			return p;
	return NULL;
}

static size_t peer_count(struct node *n)
{
	size_t c = 0;
	for (struct peer *p = n->peers; p; p = p->next)
		c++;
	return c;
}

static struct peer_cid *peer_cid_get(struct peer *p, const struct pn_cid *cid, bool create)
{
	for (int i = 0; i < p->ncids; i++)
		if (!memcmp(&p->cids[i].cid, cid, sizeof *cid))
			return &p->cids[i];
	if (!create || p->ncids >= PEER_MAX_CIDS)
		return NULL;
	struct peer_cid *pc = &p->cids[p->ncids++];
	memset(pc, 0, sizeof *pc);
	pc->cid = *cid;
	return pc;
}

struct peer *node_peer_new(struct node *n, struct pn_conn *c, bool outgoing)
{
	struct peer *p = calloc(1, sizeof *p);
	if (!p)
		return NULL;
	p->node = n;
	p->conn = c;
	p->outgoing = outgoing;
	p->key = ++n->next_key;
	p->am_choking = true;
	p->peer_choking = true;
	p->cand = -1;
	p->next = n->peers;
	n->peers = p;
	return p;
}

static void peer_send_interested(struct node *n, struct peer *p, struct peer_cid *pc)
{
	if (!p->hello || pc->we_want)
		return;
	struct pn_msg m = {.type = PN_MSG_INTERESTED};
	m.u.cidref.cid = pc->cid;
	if (node_send(n, p->conn, &m) == PN_OK)
		pc->we_want = true;
}

/* Our bitmap of cid: all ones for a complete object, the partial's for a
 * download with its hash list, NULL (nothing) otherwise. *tmp is freed by the caller. */
static const uint8_t *our_bitmap(struct node *n, const struct pn_cid *cid, uint8_t **tmp)
{
	*tmp = NULL;
	uint32_t nchunks = pn_cid_chunks(cid);
	if (store_get(n->store, cid)) {
		*tmp = malloc((nchunks + 7) / 8);
		if (!*tmp)
			return NULL;
		memset(*tmp, 0, (nchunks + 7) / 8);
		for (uint32_t i = 0; i < nchunks; i++)
			(*tmp)[i / 8] |= (uint8_t)(0x80 >> (i % 8));
		return *tmp;
	}
	struct download *d = node_download_find(n, cid);
	if (d && d->part && store_partial_has_hashes(d->part))
		return store_partial_bitmap(d->part);
	return NULL;
}

static void peer_send_bitfield(struct node *n, struct peer *p, const struct pn_cid *cid)
{
	uint8_t *tmp;
	uint32_t nchunks = pn_cid_chunks(cid);
	struct peer_cid *pc = peer_cid_get(p, cid, false);
	if (pc && pc->they_want && store_get(n->store, cid) && (pc->revealed || seed_start(n, p, pc) == PN_OK)) {
		struct pn_msg m = {.type = PN_MSG_BITFIELD};
		m.u.bitfield.cid = *cid;
		m.u.bitfield.nchunks = nchunks;
		m.u.bitfield.bitmap = pc->revealed;
		(void)node_send(n, p->conn, &m);
		return;
	}
	const uint8_t *bm = our_bitmap(n, cid, &tmp);
	uint8_t *zeros = NULL;
	if (!bm) {
		zeros = calloc(1, (nchunks + 7) / 8);
		if (!zeros)
			return;
		bm = zeros;
	}
	struct pn_msg m = {.type = PN_MSG_BITFIELD};
	m.u.bitfield.cid = *cid;
	m.u.bitfield.nchunks = nchunks;
	m.u.bitfield.bitmap = bm;
	(void)node_send(n, p->conn, &m);
	free(tmp);
	free(zeros);
}

static bool bitmap_any(const uint8_t *bm, uint32_t nchunks)
{
	for (uint32_t i = 0; i < (nchunks + 7) / 8; i++)
		if (bm[i])
			return true;
	return false;
}

static void download_pump(struct download *d);
static void download_maybe_ask_hashes(struct download *d, struct peer *p);

/* Adds peer p to the download's swarm once both the swarm and p's bitfield exist. */
static void swarm_join(struct download *d, struct peer *p, struct peer_cid *pc)
{
	if (!d->swarm || !pc->bitmap || pc->in_swarm)
		return;
	uint64_t now = node_now(d->node);
	if (swarm_peer_add(d->swarm, p->key, pc->bitmap, now) != PN_OK)
		return;
	pc->in_swarm = true;
	if (!p->peer_choking)
		swarm_peer_choked(d->swarm, p->key, false, now);
}

static void peer_on_hello(struct node *n, struct peer *p, const struct pn_msg_hello *h)
{
	p->hello = true;
	p->listen_port = h->listen_port;
	memcpy(p->id, pn_conn_peer_id(p->conn), PN_ID_BYTES);
	if (is_banned(n, p->id)) {
		pn_log_info("%s: refusing banned peer", p->addr);
		pn_conn_close(p->conn, PN_EACCES);
		return;
	}
	/* Two nodes that dial each other at once end up with two connections: both
	 * keep the one dialled by the node with the smaller ID and close the other,
	 * moving what it was about onto the one kept. */
	bool flood_link = n->flood && (h->features & 1u);
	for (struct peer *q = n->peers; q && !flood_link; q = q->next) {
		if (q == p || !q->hello || q->neighbor || memcmp(q->id, p->id, PN_ID_BYTES))
			continue;
		bool me_smaller = memcmp(n->id.node_id, p->id, PN_ID_BYTES) < 0;
		bool keep_p = p->outgoing == me_smaller;
		struct peer *keep = keep_p ? p : q, *drop = keep_p ? q : p;
		for (int i = 0; i < drop->ncids; i++)
			(void)peer_cid_get(keep, &drop->cids[i].cid, true);
		pn_conn_close(drop->conn, 0);
		if (!keep_p) {
			for (int i = 0; i < q->ncids; i++)
				if (node_download_find(n, &q->cids[i].cid))
					peer_send_interested(n, q, &q->cids[i]);
			return;
		}
		break;
	}
	if (!flood_on_hello(n, p, h))
		return;
	if (choker_peer_add(n->choker, p->key, node_now(n)) == PN_OK)
		p->in_choker = true;
	for (int i = 0; i < p->ncids; i++) {
		struct download *d = node_download_find(n, &p->cids[i].cid);
		if (d)
			peer_send_interested(n, p, &p->cids[i]);
	}
}

static void update_interest(struct node *n, struct peer *p)
{
	bool any = false;
	for (int i = 0; i < p->ncids; i++)
		any |= p->cids[i].they_want;
	if (p->in_choker)
		choker_interested(n->choker, p->key, any, node_now(n));
}

static int peer_on_interested(struct node *n, struct peer *p, const struct pn_msg_cidref *m, bool interested)
{
	struct peer_cid *pc = peer_cid_get(p, &m->cid, interested);
	if (!pc)
		return interested ? PN_ELIMIT : PN_OK;
	pc->they_want = interested;
	update_interest(n, p);
	if (!interested)
		return PN_OK;
	peer_send_bitfield(n, p, &m->cid);
	/* A fellow downloader: we may want what it has too. */
	struct download *d = node_download_find(n, &m->cid);
	if (d)
		peer_send_interested(n, p, pc);
	return PN_OK;
}

static int peer_on_bitfield(struct node *n, struct peer *p, const struct pn_msg_bitfield *m)
{
	struct peer_cid *pc = peer_cid_get(p, &m->cid, false);
	if (!pc)
		return PN_OK; /* not something we asked about */
	size_t len = (m->nchunks + 7) / 8;
	if (!pc->bitmap && !(pc->bitmap = malloc(len)))
		return PN_ENOMEM;
	memcpy(pc->bitmap, m->bitmap, len);
	struct download *d = node_download_find(n, &m->cid);
	if (!d)
		return PN_OK;
	if (d->swarm) {
		if (pc->in_swarm)
			swarm_peer_bitfield(d->swarm, p->key, pc->bitmap, node_now(n));
		else
			swarm_join(d, p, pc);
		download_pump(d);
	} else if (bitmap_any(pc->bitmap, m->nchunks)) {
		download_maybe_ask_hashes(d, p);
	}
	return PN_OK;
}

static int peer_on_have(struct node *n, struct peer *p, const struct pn_msg_cidref *m)
{
	struct peer_cid *pc = peer_cid_get(p, &m->cid, false);
	if (!pc)
		return PN_OK;
	uint32_t nchunks = pn_cid_chunks(&m->cid);
	if (!pc->bitmap && !(pc->bitmap = calloc(1, (nchunks + 7) / 8)))
		return PN_ENOMEM;
	pc->bitmap[m->index / 8] |= (uint8_t)(0x80 >> (m->index % 8));
	if (pc->revealed)
		seed_on_have(n, p, pc, m->index);
	struct download *d = node_download_find(n, &m->cid);
	if (!d)
		return PN_OK;
	if (d->swarm) {
		if (pc->in_swarm)
			swarm_peer_have(d->swarm, p->key, m->index, node_now(n));
		else
			swarm_join(d, p, pc);
		download_pump(d);
	} else {
		download_maybe_ask_hashes(d, p);
	}
	return PN_OK;
}

static void peer_on_choke(struct node *n, struct peer *p, bool choked)
{
	p->peer_choking = choked;
	for (struct download *d = n->downloads; d; d = d->next) {
		struct peer_cid *pc = peer_cid_get(p, &d->cid, false);
		if (d->swarm && pc && pc->in_swarm) {
			swarm_peer_choked(d->swarm, p->key, choked, node_now(n));
			download_pump(d);
		}
	}
}

/* ---- serving ---- */

static int serve_error(struct node *n, struct peer *p, uint32_t req_id, uint16_t code, const char *text)
{
	return pn_conn_send_error(p->conn, req_id, code, text);
}

static int serve_meta(struct node *n, struct peer *p, const struct pn_msg_ref *q)
{
	const struct store_object *o = store_get(n->store, &q->cid);
	struct download *d = o ? NULL : node_download_find(n, &q->cid);
	const char *name = o ? o->name : (d && d->have_meta ? d->name : NULL);
	if (!name || !*name)
		return serve_error(n, p, q->req_id, PN_WERR_NOT_FOUND, "no such content");
	struct pn_msg m = {.type = PN_MSG_META};
	m.u.meta.req_id = q->req_id;
	m.u.meta.cid = q->cid;
	m.u.meta.name = name;
	m.u.meta.name_len = (uint16_t)strlen(name);
	return node_send(n, p->conn, &m);
}

static int serve_hashes(struct node *n, struct peer *p, const struct pn_msg_hash_req *q)
{
	const struct store_object *o = store_get(n->store, &q->cid);
	struct download *d = o ? NULL : node_download_find(n, &q->cid);
	const uint8_t *hashes = NULL;
	uint8_t *tmp = NULL;
	if (o) {
		hashes = o->hashes + (size_t)q->first * PN_HASH_BYTES;
	} else if (d && d->part && store_partial_has_hashes(d->part)) {
		tmp = malloc((size_t)q->count * PN_HASH_BYTES);
		if (!tmp)
			return PN_ENOMEM;
		for (uint32_t i = 0; i < q->count; i++)
			memcpy(tmp + (size_t)i * PN_HASH_BYTES, store_partial_hash(d->part, q->first + i), PN_HASH_BYTES);
		hashes = tmp;
	} else {
		return serve_error(n, p, q->req_id, PN_WERR_NOT_FOUND, "no hash list for this content");
	}
	struct pn_msg m = {.type = PN_MSG_HASHES};
	m.u.hashes.req_id = q->req_id;
	m.u.hashes.cid = q->cid;
	m.u.hashes.first = q->first;
	m.u.hashes.count = q->count;
	m.u.hashes.hashes = hashes;
	int r = node_send(n, p->conn, &m);
	free(tmp);
	return r;
}

/* Reads and sends one requested chunk. */
static int send_chunk(struct node *n, struct peer *p, const struct upreq *q)
{
	uint8_t *data = n->out + PN_FRAME_HDR + PN_CHUNK_MSG_HDR;
	uint32_t len = 0;
	int r;
	const struct store_object *o = store_get(n->store, &q->cid);
	struct download *d = o ? NULL : node_download_find(n, &q->cid);
	if (o)
		r = store_read_chunk(n->store, o, q->index, data, &len);
	else if (d && d->part && store_partial_has_chunk(d->part, q->index))
		r = store_partial_read_chunk(d->part, q->index, data, &len);
	else
		return serve_error(n, p, q->req_id, PN_WERR_NOT_FOUND, "chunk not held");
	if (r != PN_OK) {
		pn_log_error("reading chunk %u: %s", q->index, pn_strerror(r));
		return serve_error(n, p, q->req_id, PN_WERR_INTERNAL, "cannot read the chunk");
	}
#ifdef PN_TEST_CORRUPT
	/* Test-only build (make build/peernet-corrupt): every chunk served is damaged. */
	if (len)
		data[len / 2] ^= 0x5a;
#endif
	pn_chunk_hdr_encode(n->out, q->req_id, &q->cid, q->index, len);
	r = pn_conn_send(p->conn, n->out, PN_FRAME_HDR + PN_CHUNK_MSG_HDR + len);
	if (r == PN_OK) {
		p->bytes_to += len;
		n->bytes_uploaded += len;
		if (p->in_choker)
			choker_bytes_to(n->choker, p->key, len);
	}
	return r;
}

/* Serves queued requests while the connection has room. */
static void upload_pump(struct node *n, struct peer *p)
{
	while (p->upq_len && !p->am_choking && p->conn && !pn_conn_congested(p->conn)) {
		struct upreq q = p->upq[p->upq_head];
		p->upq_head = (p->upq_head + 1) % PEER_UPQ_MAX;
		p->upq_len--;
		if (send_chunk(n, p, &q) != PN_OK)
			return;
	}
}

static void upload_clear(struct peer *p)
{
	p->upq_head = p->upq_len = 0;
}

static int serve_chunk(struct node *n, struct peer *p, const struct pn_msg_ref *q)
{
	if (p->am_choking)
		return PN_OK; /* requests from a choked peer are dropped, as it was told */
	if (p->upq_len >= PEER_UPQ_MAX) {
		pn_log_info("%s: more than %d chunk requests outstanding, closing", p->addr, PEER_UPQ_MAX);
		return PN_ELIMIT;
	}
	struct upreq *u = &p->upq[(p->upq_head + p->upq_len) % PEER_UPQ_MAX];
	u->cid = q->cid;
	u->index = q->index;
	u->req_id = q->req_id;
	p->upq_len++;
	upload_pump(n, p);
	return PN_OK;
}

/* A CANCEL withdraws a request not sent yet (end game: another peer was faster). */
static void serve_cancel(struct peer *p, const struct pn_msg_ref *q)
{
	for (uint32_t k = 0; k < p->upq_len; k++) {
		struct upreq *u = &p->upq[(p->upq_head + k) % PEER_UPQ_MAX];
		if (u->index != q->index || memcmp(&u->cid, &q->cid, sizeof q->cid))
			continue;
		for (uint32_t j = k; j + 1 < p->upq_len; j++)
			p->upq[(p->upq_head + j) % PEER_UPQ_MAX] = p->upq[(p->upq_head + j + 1) % PEER_UPQ_MAX];
		p->upq_len--;
		return;
	}
}

static void peer_writable_cb(struct pn_conn *c)
{
	struct peer *p = pn_conn_data(c);
	upload_pump(p->node, p);
}

/* ---- receiving for downloads ---- */

static void download_fail(struct download *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void download_complete(struct download *d);
static void download_start_swarm(struct download *d);

static void download_maybe_ask_hashes(struct download *d, struct peer *p)
{
	struct node *n = d->node;
	if (d->swarm || d->hash_peer || !p->hello)
		return;
	if (!d->have_meta) {
		struct pn_msg m = {.type = PN_MSG_META_REQ};
		m.u.ref.req_id = d->meta_req = ++n->next_req;
		m.u.ref.cid = d->cid;
		if (node_send(n, p->conn, &m) != PN_OK)
			return;
	}
	uint32_t first, count;
	if (!store_partial_missing_hashes(d->part, PN_HASHES_MAX, &first, &count)) {
		download_start_swarm(d);
		return;
	}
	struct pn_msg m = {.type = PN_MSG_HASH_REQ};
	m.u.hash_req.req_id = d->hash_req = ++n->next_req;
	m.u.hash_req.cid = d->cid;
	m.u.hash_req.first = first;
	m.u.hash_req.count = count;
	if (node_send(n, p->conn, &m) == PN_OK)
		d->hash_peer = p->key;
}

static int peer_on_meta(struct node *n, struct peer *p, const struct pn_msg_meta *m)
{
	struct download *d = node_download_find(n, &m->cid);
	if (!d || m->req_id != d->meta_req)
		return PN_OK;
	d->meta_req = 0;
	if (!d->have_meta) {
		memcpy(d->name, m->name, m->name_len);
		d->name[m->name_len] = 0;
		d->have_meta = true;
		if (store_partial_set_name(d->part, d->name) != PN_OK)
			pn_log_warn("cannot record the name of a download");
		dir_client_offer(n, &d->cid, d->name);
	}
	return PN_OK;
}

static int peer_on_hashes(struct node *n, struct peer *p, const struct pn_msg_hashes *m)
{
	struct download *d = node_download_find(n, &m->cid);
	if (!d || m->req_id != d->hash_req || d->hash_peer != p->key)
		return PN_OK;
	d->hash_req = 0;
	d->hash_peer = 0;
	int r = store_partial_add_hashes(d->part, m->first, m->count, m->hashes);
	if (r == PN_ECORRUPT) {
		pn_log_warn("%s sent a hash list that does not match the content ID: dropped and refused", p->addr);
		ban(n, p->id);
		return PN_ECORRUPT;
	}
	if (r != PN_OK) {
		download_fail(d, "cannot store the hash list: %s", pn_strerror(r));
		return PN_OK;
	}
	if (store_partial_has_hashes(d->part))
		download_start_swarm(d);
	else
		download_maybe_ask_hashes(d, p);
	return PN_OK;
}

static void broadcast_have(struct node *n, const struct pn_cid *cid, uint32_t index)
{
	struct pn_msg m = {.type = PN_MSG_HAVE};
	m.u.cidref.cid = *cid;
	m.u.cidref.index = index;
	for (struct peer *p = n->peers; p; p = p->next) {
		/* Every peer in this content's swarm, interested or not: interest
		 * comes and goes with what each side holds. */
		struct peer_cid *pc = p->hello ? peer_cid_get(p, cid, false) : NULL;
		if (pc)
			(void)node_send(n, p->conn, &m);
	}
}

static int peer_on_chunk(struct node *n, struct peer *p, const struct pn_msg_chunk *m)
{
	struct download *d = node_download_find(n, &m->cid);
	if (!d || !d->swarm)
		return PN_OK; /* late duplicate after completion or cancel */
	uint64_t now = node_now(n);
	if (store_partial_has_chunk(d->part, m->index)) {
		swarm_chunk_received(d->swarm, p->key, m->index, true, now);
		download_pump(d);
		return PN_OK;
	}
	bool ok = store_chunk_ok(store_partial_hash(d->part, m->index), m->data, m->len);
	if (!swarm_chunk_received(d->swarm, p->key, m->index, ok, now))
		return PN_OK; /* not asked of this peer */
	if (!ok) {
		pn_log_warn("%s sent chunk %u that does not match its hash: peer dropped and refused", p->addr,
			    m->index);
		download_pump(d);
		return PN_OK;
	}
	int r = store_partial_write_verified(d->part, m->index, m->data, m->len);
	if (r != PN_OK) {
		download_fail(d, "cannot write the download: %s", pn_strerror(r));
		return PN_OK;
	}
	d->bytes_down += m->len;
	d->last_progress_ms = now;
	n->bytes_downloaded += m->len;
	p->bytes_from += m->len;
	if (p->in_choker)
		choker_bytes_from(n->choker, p->key, m->len);
	broadcast_have(n, &d->cid, m->index);
	download_pump(d);
	return PN_OK;
}

static int peer_on_error(struct node *n, struct peer *p, const struct pn_msg_error *e)
{
	for (struct download *d = n->downloads; e->req_id && d; d = d->next)
		if (e->req_id == d->hash_req && d->hash_peer == p->key) {
			d->hash_req = 0;
			d->hash_peer = 0; /* another peer may have the hash list */
		}
	pn_log_debug("%s: error %u from peer", p->addr, e->code);
	return PN_OK;
}

static int peer_frame_cb(struct pn_conn *c, const uint8_t *body, size_t len)
{
	struct peer *p = pn_conn_data(c);
	struct node *n = p->node;
	struct pn_msg m;
	int r = pn_msg_decode(body, len, &m);
	if (r != PN_OK) {
		pn_log_info("%s: malformed message (type 0x%02x, %zu bytes), closing", p->addr, len ? body[0] : 0, len);
		return PN_EPROTO;
	}
	if (!p->hello) {
		if (m.type != PN_MSG_HELLO || m.u.hello.role != PN_ROLE_NODE) {
			pn_log_info("%s: expected HELLO from a node, closing", p->addr);
			return PN_EPROTO;
		}
		pn_conn_set_max_frame(c, PN_FRAME_MAX);
		peer_on_hello(n, p, &m.u.hello);
		return PN_OK;
	}
	switch (m.type) {
	case PN_MSG_PING: {
		struct pn_msg pong = {.type = PN_MSG_PONG};
		pong.u.ping.nonce = m.u.ping.nonce;
		return node_send(n, c, &pong);
	}
	case PN_MSG_PONG: return PN_OK;
	case PN_MSG_ERROR: return peer_on_error(n, p, &m.u.error);
	case PN_MSG_INTERESTED: return peer_on_interested(n, p, &m.u.cidref, true);
	case PN_MSG_NOT_INTERESTED: return peer_on_interested(n, p, &m.u.cidref, false);
	case PN_MSG_BITFIELD: return peer_on_bitfield(n, p, &m.u.bitfield);
	case PN_MSG_HAVE: return peer_on_have(n, p, &m.u.cidref);
	case PN_MSG_CHOKE: peer_on_choke(n, p, true); return PN_OK;
	case PN_MSG_UNCHOKE: peer_on_choke(n, p, false); return PN_OK;
	case PN_MSG_META_REQ: return serve_meta(n, p, &m.u.ref);
	case PN_MSG_HASH_REQ: return serve_hashes(n, p, &m.u.hash_req);
	case PN_MSG_CHUNK_REQ: return serve_chunk(n, p, &m.u.ref);
	case PN_MSG_CANCEL: serve_cancel(p, &m.u.ref); return PN_OK;
	case PN_MSG_META: return peer_on_meta(n, p, &m.u.meta);
	case PN_MSG_HASHES: return peer_on_hashes(n, p, &m.u.hashes);
	case PN_MSG_CHUNK: return peer_on_chunk(n, p, &m.u.chunk);
	case PN_MSG_PEERS_REQ:
	case PN_MSG_PEERS:
	case PN_MSG_QUERY:
	case PN_MSG_QUERY_HIT:
		if (flood_on_msg(n, p, &m, body, len) == PN_OK)
			return PN_OK;
		pn_log_info("%s: flooding message 0x%02x but this node does not flood, closing", p->addr, m.type);
		return PN_EPROTO;
	default:
		pn_log_info("%s: unexpected message type 0x%02x from a peer, closing", p->addr, m.type);
		return PN_EPROTO;
	}
}

static void peer_established_cb(struct pn_conn *c)
{
	struct peer *p = pn_conn_data(c);
	struct node *n = p->node;
	p->established = true;
	struct pn_msg m = {.type = PN_MSG_HELLO};
	m.u.hello.version = PN_PROTOCOL_VERSION;
	m.u.hello.role = PN_ROLE_NODE;
	m.u.hello.listen_port = n->port;
	m.u.hello.features = flood_hello_features(n, p);
	(void)node_send(n, c, &m);
}

static void peer_close_cb(struct pn_conn *c, int err)
{
	struct peer *p = pn_conn_data(c);
	struct node *n = p->node;
	if (err && err != PN_ECLOSED)
		pn_log_info("%s: peer connection closed: %s", p->addr, pn_strerror(err));
	for (struct download *d = n->downloads; d; d = d->next) {
		struct peer_cid *pc = peer_cid_get(p, &d->cid, false);
		if (d->swarm && pc && pc->in_swarm)
			swarm_peer_remove(d->swarm, p->key);
		if (d->hash_peer == p->key)
			d->hash_peer = 0;
	}
	if (p->in_choker)
		choker_peer_remove(n->choker, p->key);
	flood_peer_closed(n, p);
	struct peer **pp = &n->peers;
	while (*pp && *pp != p)
		pp = &(*pp)->next;
	if (*pp)
		*pp = p->next;
	for (int i = 0; i < p->ncids; i++) {
		free(p->cids[i].bitmap);
		free(p->cids[i].revealed);
	}
	free(p);
	/* Others may now be able to take over the hash list or the requests. */
	for (struct download *d = n->downloads; d; d = d->next)
		if (d->swarm)
			download_pump(d);
}

const struct pn_conn_cbs node_peer_cbs = {
	.established_cb = peer_established_cb,
	.frame_cb = peer_frame_cb,
	.writable_cb = peer_writable_cb,
	.close_cb = peer_close_cb,
};

static const struct pn_conn_cbs *accept_cb(struct pn_net *net, struct pn_conn *c)
{
	struct node *n = pn_net_data(net);
	if (n->stopping || peer_count(n) >= NODE_MAX_PEERS) {
		pn_log_warn("%s: refused, %zu peers already", pn_conn_peer_addr(c), peer_count(n));
		return NULL;
	}
	struct peer *p = node_peer_new(n, c, false);
	if (!p)
		return NULL;
	snprintf(p->addr, sizeof p->addr, "%s", pn_conn_peer_addr(c));
	pn_conn_set_data(c, p);
	pn_conn_set_max_frame(c, 64);
	return &node_peer_cbs;
}

void node_connect_provider(struct node *n, const uint8_t id[PN_ID_BYTES], const char *addr, const struct pn_cid *cid)
{
	if (!memcmp(id, n->id.node_id, PN_ID_BYTES) || is_banned(n, id))
		return;
	struct peer *p;
	for (p = n->peers; p; p = p->next)
		if (p->hello && !memcmp(p->id, id, PN_ID_BYTES))
			break;
	if (!p) {
		for (p = n->peers; p; p = p->next) /* a dial in progress to the same node */
			if (p->outgoing && !p->hello && !memcmp(p->id, id, PN_ID_BYTES))
				break;
	}
	if (p) {
		struct peer_cid *pc = peer_cid_get(p, cid, true);
		if (pc)
			peer_send_interested(n, p, pc);
		return;
	}
	if (peer_count(n) >= NODE_MAX_PEERS)
		return;
	struct pn_conn *c;
	p = node_peer_new(n, NULL, true);
	if (!p)
		return;
	memcpy(p->id, id, PN_ID_BYTES);
	snprintf(p->addr, sizeof p->addr, "%s", addr);
	peer_cid_get(p, cid, true);
	int r = pn_net_connect(n->net, addr, id, &node_peer_cbs, p, &c);
	if (r != PN_OK) {
		pn_log_info("cannot dial provider %s: %s", addr, pn_strerror(r));
		n->peers = p->next;
		free(p);
		return;
	}
	p->conn = c;
}

/* ------------------------------------------------------------ downloads */

struct download *node_download_find(struct node *n, const struct pn_cid *cid)
{
	for (struct download *d = n->downloads; d; d = d->next)
		if (!d->done && !memcmp(&d->cid, cid, sizeof *cid))
			return d;
	return NULL;
}

static void download_free(struct download *d)
{
	struct node *n = d->node;
	struct download **dp = &n->downloads;
	while (*dp && *dp != d)
		dp = &(*dp)->next;
	if (*dp)
		*dp = d->next;
	for (struct peer *p = n->peers; p; p = p->next) {
		struct peer_cid *pc = peer_cid_get(p, &d->cid, false);
		if (pc)
			pc->in_swarm = false;
	}
	if (d->part)
		store_put_release(n->store, d->part);
	swarm_free(d->swarm);
	while (d->waiters) {
		struct ctl_waiter *w = d->waiters;
		d->waiters = w->next;
		free(w);
	}
	free(d);
	choker_set_seeding(n->choker, n->downloads == NULL);
}

static void download_fail(struct download *d, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	char id[PN_CID_STR_LEN + 1];
	cid_str(&d->cid, id);
	pn_log_warn("download %s failed: %s", id, msg);
	for (struct ctl_waiter *w = d->waiters; w; w = w->next)
		if (w->client)
			ctl_finish(w->client, "%s; the partial download is kept and resumes on the next get", msg);
	d->done = true;
	download_free(d);
}

/* Copies the object's file to path (atomically, without replacing an
 * existing file unless force). Returns 0 or an errno-style message in err. */
static int deliver_file(struct node *n, const struct store_object *o, const char *path, bool force, char *err,
			size_t errlen)
{
	char src[4096 + 128], id[PN_CID_STR_LEN + 1], tmp[4096 + 32];
	cid_str(&o->cid, id);
	snprintf(src, sizeof src, "%s/objects/%s", n->opts.data_dir, id);
	if (!force && access(path, F_OK) == 0) {
		snprintf(err, errlen, "%s already exists; use --force to overwrite it", path);
		return -1;
	}
	if (snprintf(tmp, sizeof tmp, "%s.pntmp", path) >= (int)sizeof tmp) {
		snprintf(err, errlen, "output path too long");
		return -1;
	}
	int in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0) {
		snprintf(err, errlen, "cannot read %s: %s", src, strerror(errno));
		return -1;
	}
	int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (out < 0) {
		snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
		close(in);
		return -1;
	}
	uint64_t left = o->cid.size;
	int rc = 0;
	while (left > 0) {
		ssize_t k = copy_file_range(in, NULL, out, NULL, left > (1u << 30) ? (1u << 30) : left, 0);
		if (k <= 0) {
			/* Fall back to read/write (e.g. across file systems on old kernels). */
			char buf[65536];
			ssize_t got = read(in, buf, sizeof buf);
			if (got <= 0 || write(out, buf, (size_t)got) != got) {
				rc = -1;
				break;
			}
			k = got;
		}
		left -= (uint64_t)k;
	}
	if (rc == 0 && fsync(out) != 0)
		rc = -1;
	int saved = errno;
	close(in);
	close(out);
	if (rc == 0 && rename(tmp, path) != 0) {
		rc = -1;
		saved = errno;
	}
	if (rc != 0) {
		unlink(tmp);
		snprintf(err, errlen, "cannot write %s: %s", path, strerror(saved));
	}
	return rc;
}

static void report_done(struct node *n, struct ctl_waiter *w, const struct store_object *o, uint64_t down,
			uint64_t resumed, double secs, unsigned peers)
{
	if (!w->client)
		return;
	char id[PN_CID_STR_LEN + 1], path[4096 + 128];
	cid_str(&o->cid, id);
	if (w->to_stdout) {
		snprintf(path, sizeof path, "%s/objects/%s", n->opts.data_dir, id);
	} else {
		char err[8400];
		int len = w->out_path[0] ? snprintf(path, sizeof path, "%s", w->out_path)
					 : snprintf(path, sizeof path, "%s/%s", w->cwd, o->name);
		if (len >= (int)sizeof path) {
			ctl_finish(w->client, "output path too long (the node keeps the file in its store)");
			return;
		}
		if (deliver_file(n, o, path, w->force, err, sizeof err) != 0) {
			ctl_finish(w->client, "%s (the node keeps the file in its store)", err);
			return;
		}
	}
	ctl_reply(w->client, "got\t%s\t%s\t%s\t%llu\t%llu\t%llu\t%.3f\t%u\n", id, o->name, path,
		  (unsigned long long)o->cid.size, (unsigned long long)down, (unsigned long long)resumed, secs, peers);
	ctl_finish(w->client, NULL);
}

static void download_complete(struct download *d)
{
	struct node *n = d->node;
	const struct store_object *o = NULL;
	struct store_partial *part = d->part;
	d->part = NULL;
	int r = store_put_finish(n->store, part, &o);
	if (r != PN_OK) {
		d->part = part;
		download_fail(d, "cannot complete the download: %s", pn_strerror(r));
		return;
	}
	char id[PN_CID_STR_LEN + 1];
	cid_str(&d->cid, id);
	double secs = (double)(node_now(n) - d->started_ms) / 1000.0;
	unsigned peers = 0;
	for (struct peer *p = n->peers; p; p = p->next) {
		struct peer_cid *pc = peer_cid_get(p, &d->cid, false);
		if (pc && pc->in_swarm)
			peers++;
	}
	pn_log_info("downloaded %s  %s: %llu bytes in %.2f s from %u peers", id, o->name,
		    (unsigned long long)d->bytes_down, secs, peers);
	for (struct ctl_waiter *w = d->waiters; w; w = w->next)
		report_done(n, w, o, d->bytes_down, d->bytes_resumed, secs, peers);
	/* Everyone in the swarm learned we now hold it all (HAVEs went out per
	 * chunk); those we downloaded from also learn we want nothing more, so
	 * their upload slots go at once to peers still waiting. */
	for (struct peer *p = n->peers; p; p = p->next) {
		struct peer_cid *pc = p->hello ? peer_cid_get(p, &d->cid, false) : NULL;
		if (pc && pc->we_want) {
			struct pn_msg m = {.type = PN_MSG_NOT_INTERESTED};
			m.u.cidref.cid = d->cid;
			(void)node_send(n, p->conn, &m);
			pc->we_want = false;
		}
	}
	d->done = true;
	download_free(d);
}

static void download_start_swarm(struct download *d)
{
	struct node *n = d->node;
	if (d->swarm)
		return;
	uint64_t ok = 0;
	int r = store_partial_verify_existing(d->part, &ok);
	if (r != PN_OK) {
		download_fail(d, "cannot read the partial download: %s", pn_strerror(r));
		return;
	}
	d->bytes_resumed = ok;
	struct swarm_opts so = {
		.nchunks = store_partial_nchunks(d->part),
		/* Requests queue behind the uploader's cap: a short pipeline keeps a
		 * chunk from waiting seconds at one slow peer while others could send it. */
		.per_peer_inflight = NODE_PER_PEER_INFLIGHT,
		.seed = (uint64_t)d->started_ms ^ n->id.node_id[0] ^ ((uint64_t)n->id.node_id[1] << 8),
	};
	d->swarm = swarm_new(&so, store_partial_bitmap(d->part));
	if (!d->swarm) {
		download_fail(d, "out of memory");
		return;
	}
	for (struct peer *p = n->peers; p; p = p->next) {
		struct peer_cid *pc = peer_cid_get(p, &d->cid, false);
		if (pc && p->hello) {
			swarm_join(d, p, pc);
			if (pc->they_want) /* tell fellow downloaders what we have now */
				peer_send_bitfield(n, p, &d->cid);
		}
	}
	download_pump(d);
}

/* Tells each swarm peer whether it holds anything we still lack (INTERESTED /
 * NOT_INTERESTED), so uploaders give their slots to peers they can help. */
static void download_update_interest(struct download *d)
{
	struct node *n = d->node;
	for (struct peer *p = n->peers; p; p = p->next) {
		struct peer_cid *pc = p->hello ? peer_cid_get(p, &d->cid, false) : NULL;
		if (!pc || !pc->in_swarm)
			continue;
		bool wanted = swarm_peer_wanted(d->swarm, p->key) > 0;
		if (wanted == pc->we_want)
			continue;
		struct pn_msg m = {.type = wanted ? PN_MSG_INTERESTED : PN_MSG_NOT_INTERESTED};
		m.u.cidref.cid = d->cid;
		if (node_send(n, p->conn, &m) == PN_OK)
			pc->we_want = wanted;
	}
}

static void download_pump(struct download *d)
{
	struct node *n = d->node;
	struct swarm_action a;
	if (!d->swarm)
		return;
	while (!d->done && swarm_next_action(d->swarm, &a)) {
		struct peer *p = a.type == SWARM_DONE ? NULL : node_peer_by_key(n, a.peer);
		switch (a.type) {
		case SWARM_REQUEST:
		case SWARM_CANCEL:
			if (p) {
				struct pn_msg m = {.type = a.type == SWARM_REQUEST ? PN_MSG_CHUNK_REQ : PN_MSG_CANCEL};
				m.u.ref.req_id = ++n->next_req;
				m.u.ref.cid = d->cid;
				m.u.ref.index = a.index;
				(void)node_send(n, p->conn, &m);
			}
			break;
		case SWARM_DROP_PEER:
			if (p) {
				ban(n, p->id);
				pn_conn_close(p->conn, PN_ECORRUPT);
			}
			break;
		case SWARM_DONE:
			download_complete(d);
			return;
		}
	}
	if (!d->done && store_partial_have_count(d->part) == store_partial_nchunks(d->part)) {
		download_complete(d);
		return;
	}
	if (!d->done)
		download_update_interest(d);
}

void node_download_providers(struct node *n, const struct pn_cid *cid, uint32_t total)
{
	struct download *d = node_download_find(n, cid);
	if (!d)
		return;
	if (!n->flood || total == 0)
		d->finding = false; /* a flood query goes on after its first hit */
	if (total > d->providers_seen)
		d->providers_seen = total;
	if (d->providers_seen == 0 && !d->swarm) {
		char id[PN_CID_STR_LEN + 1];
		cid_str(cid, id);
		if (n->flood)
			download_fail(d, "no node within %u hops has %s", n->opts.ttl ? n->opts.ttl : FLOOD_DEFAULT_TTL, id);
		else
			download_fail(d, "no node offers %s", id);
	}
}

int node_start_get(struct node *n, struct ctl_client *cc, const struct pn_cid *cid, const char *out_path,
		   const char *cwd, bool to_stdout, bool force)
{
	struct ctl_waiter *w = calloc(1, sizeof *w);
	if (!w)
		return PN_ENOMEM;
	w->client = cc;
	w->to_stdout = to_stdout;
	w->force = force;
	snprintf(w->out_path, sizeof w->out_path, "%s", out_path ? out_path : "");
	snprintf(w->cwd, sizeof w->cwd, "%s", cwd ? cwd : ".");
	const struct store_object *o = store_get(n->store, cid);
	if (o) {
		report_done(n, w, o, 0, cid->size, 0, 0);
		free(w);
		return PN_OK;
	}
	struct download *d = node_download_find(n, cid);
	if (d) {
		w->next = d->waiters;
		d->waiters = w;
		return PN_OK;
	}
	if (n->flood && !flood_ready(n)) {
		free(w);
		ctl_finish(cc, "not connected to any peer (the bootstrap peers are unreachable); the node keeps retrying");
		return PN_OK;
	}
	if (!n->flood && !dir_client_ready(n)) {
		free(w);
		ctl_finish(cc, "the directory at %s is unreachable (%s); running downloads go on, new look-ups fail until it is back",
			   n->opts.directory ? n->opts.directory : "(none)", n->dir_last_error[0] ? n->dir_last_error : "not connected");
		return PN_OK;
	}
	int count = 0;
	for (struct download *x = n->downloads; x; x = x->next)
		count++;
	if (count >= NODE_MAX_DOWNLOADS) {
		free(w);
		ctl_finish(cc, "too many downloads at once (%d); try again when one ends", count);
		return PN_OK;
	}
	d = calloc(1, sizeof *d);
	if (!d) {
		free(w);
		return PN_ENOMEM;
	}
	d->node = n;
	d->cid = *cid;
	d->started_ms = d->last_progress_ms = node_now(n);
	int r = store_put_begin(n->store, cid, NULL, &d->part);
	if (r != PN_OK) {
		free(d);
		free(w);
		ctl_finish(cc, "cannot start the download in the store: %s", pn_strerror(r));
		return PN_OK;
	}
	const char *stored_name = store_partial_name(d->part);
	if (stored_name && *stored_name) {
		snprintf(d->name, sizeof d->name, "%s", stored_name);
		d->have_meta = true;
	}
	d->waiters = w;
	d->next = n->downloads;
	n->downloads = d;
	choker_set_seeding(n->choker, false);
	if (d->have_meta)
		dir_client_offer(n, cid, d->name);
	if (store_partial_has_hashes(d->part))
		download_start_swarm(d);
	d->finding = true;
	d->last_find_ms = node_now(n);
	if ((n->flood ? flood_find(n, cid) : dir_client_find(n, cid)) != PN_OK)
		d->finding = false;
	return PN_OK;
}

static bool download_has_peers(struct download *d)
{
	for (struct peer *p = d->node->peers; p; p = p->next) {
		struct peer_cid *pc = peer_cid_get(p, &d->cid, false);
		if (pc && pc->bitmap)
			return true;
	}
	return false;
}

/* Progress lines for control clients waiting on downloads. */
static void report_progress(struct node *n)
{
	for (struct download *d = n->downloads; d; d = d->next) {
		if (!d->part)
			continue;
		uint64_t have = 0;
		uint32_t cnt = store_partial_have_count(d->part);
		uint32_t nch = store_partial_nchunks(d->part);
		have = cnt == nch ? d->cid.size : (uint64_t)cnt * PN_CHUNK_SIZE;
		unsigned peers = 0;
		for (struct peer *p = n->peers; p; p = p->next) {
			struct peer_cid *pc = peer_cid_get(p, &d->cid, false);
			if (pc && pc->in_swarm)
				peers++;
		}
		for (struct ctl_waiter *w = d->waiters; w; w = w->next)
			if (w->client)
				ctl_reply(w->client, "progress\t%llu\t%llu\t%u\t%s\n", (unsigned long long)have,
					  (unsigned long long)d->cid.size, peers, d->name);
	}
}

/* ------------------------------------------------------------ timers */

static void tick_cb(uv_timer_t *t)
{
	struct node *n = t->data;
	uint64_t now = node_now(n);
	dir_client_tick(n, now);
	flood_node_tick(n, now);
	choker_tick(n->choker, now);
	struct choker_action ca;
	while (choker_next_action(n->choker, &ca)) {
		struct peer *p = node_peer_by_key(n, ca.peer);
		if (!p || !p->hello)
			continue;
		struct pn_msg m = {.type = ca.type == CHOKER_UNCHOKE ? PN_MSG_UNCHOKE : PN_MSG_CHOKE};
		p->am_choking = ca.type == CHOKER_CHOKE;
		if (p->am_choking)
			upload_clear(p); /* a choke discards what was asked, as the peer knows */
		(void)node_send(n, p->conn, &m);
	}
	uint32_t timeout = n->opts.peer_timeout_ms ? n->opts.peer_timeout_ms : NODE_DEFAULT_PEER_TIMEOUT_MS;
	struct download *d = n->downloads, *next;
	for (; d; d = next) {
		next = d->next;
		if (d->swarm) {
			swarm_tick(d->swarm, now);
			download_pump(d);
			if (d->done)
				continue;
		}
		if (now - d->last_progress_ms > timeout) {
			char id[PN_CID_STR_LEN + 1];
			cid_str(&d->cid, id);
			download_fail(d, "no provider of %s reachable for %u s", id, timeout / 1000);
			continue;
		}
		/* Early in a download ask often: fellow downloaders register as they start. */
		uint64_t refind = now - d->started_ms < NODE_EARLY_MS ? NODE_REFIND_EARLY_MS : NODE_REFIND_MS;
		if (n->flood) {
			/* Flooding is costly: ask again only while no provider is connected. */
			/* Early on, ask again now and then: fellow downloaders answer once they hold chunks. */
			bool early = now - d->started_ms < NODE_EARLY_MS;
			if (!d->finding && now - d->last_find_ms > (early ? NODE_REFIND_FLOOD_EARLY_MS : NODE_REFIND_FLOOD_MS) &&
			    (early || !download_has_peers(d)) &&
			    flood_find(n, &d->cid) == PN_OK) {
				d->last_find_ms = now;
				d->finding = true;
			}
		} else if (!d->finding && now - d->last_find_ms > refind && dir_client_ready(n)) {
			d->last_find_ms = now;
			if (dir_client_find(n, &d->cid) == PN_OK)
				d->finding = true;
		}
	}
	if (now - n->last_progress_ms >= 250) {
		n->last_progress_ms = now;
		report_progress(n);
	}
}

static void close_walk_cb(uv_handle_t *h, void *arg)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

void node_stop(struct node *n)
{
	if (n->stopping)
		return;
	n->stopping = true;
	pn_log_info("stopping");
	while (n->downloads) {
		struct download *d = n->downloads;
		for (struct ctl_waiter *w = d->waiters; w; w = w->next)
			if (w->client)
				ctl_finish(w->client, "the node is stopping; the partial download is kept");
		d->done = true;
		download_free(d);
	}
	dir_client_close(n);
	flood_teardown(n);
	uv_timer_stop(&n->tick);
	uv_close((uv_handle_t *)&n->tick, NULL);
	uv_close((uv_handle_t *)&n->sig_int, NULL);
	uv_close((uv_handle_t *)&n->sig_term, NULL);
	ctl_close_all(n);
	pn_net_close(n->net);
}

static void signal_cb(uv_signal_t *s, int signum)
{
	node_stop(s->data);
}

void pn_default_data_dir(char *out, size_t len)
{
	const char *v = getenv("PEERNET_DATA");
	if (v && *v) {
		snprintf(out, len, "%s", v);
		return;
	}
	v = getenv("XDG_DATA_HOME");
	if (v && *v) {
		snprintf(out, len, "%s/peernet", v);
		return;
	}
	v = getenv("HOME");
	snprintf(out, len, "%s/.local/share/peernet", v && *v ? v : ".");
}

/* Shares a file, or the regular files directly inside a directory. */
static void add_share(struct node *n, const char *path)
{
	struct stat st;
	if (stat(path, &st) != 0) {
		pn_log_warn("cannot share %s: %s", path, strerror(errno));
		return;
	}
	if (S_ISDIR(st.st_mode)) {
		DIR *dir = opendir(path);
		struct dirent *e;
		int count = 0;
		while (dir && (e = readdir(dir)) && count < 10000) {
			if (e->d_name[0] == '.')
				continue;
			char sub[4096];
			snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
			if (stat(sub, &st) == 0 && S_ISREG(st.st_mode)) {
				add_share(n, sub);
				count++;
			}
		}
		if (dir)
			closedir(dir);
		return;
	}
	const struct store_object *o = NULL;
	int r = store_add_local(n->store, path, NULL, &o);
	if (r != PN_OK && r != PN_EEXIST) {
		pn_log_warn("cannot share %s: %s", path, pn_strerror(r));
		return;
	}
	char id[PN_CID_STR_LEN + 1];
	cid_str(&o->cid, id);
	pn_log_info("sharing %s  %s", id, o->name);
}

int pn_node_run(const struct pn_node_opts *opts)
{
	struct node *n = calloc(1, sizeof *n);
	int r;
	if (!n)
		return PN_ENOMEM;
	n->opts = *opts;
	n->loop = uv_default_loop();
	n->rng = uv_hrtime() ^ (uint64_t)getpid() << 32;
	signal(SIGPIPE, SIG_IGN);
	n->out_cap = PN_FRAME_HDR + PN_FRAME_MAX;
	n->out = malloc(n->out_cap);
	if (!n->out) {
		free(n);
		return PN_ENOMEM;
	}
	r = pn_identity_load_or_create(opts->data_dir, &n->id);
	if (r != PN_OK) {
		fprintf(stderr, "peernet node: cannot load or create the identity in %s: %s\n", opts->data_dir,
			pn_strerror(r));
		goto out_buf;
	}
	r = store_open(opts->data_dir, &n->store);
	if (r != PN_OK) {
		fprintf(stderr, "peernet node: cannot open the store in %s: %s\n", opts->data_dir, pn_strerror(r));
		goto out_id;
	}
	/* Rechoke every 5 s and move the optimistic slot every 15 s (BitTorrent uses
	 * 10 s and 30 s): swarms here often last seconds, and a peer choked by
	 * everyone would otherwise wait out most of the transfer. */
	struct choker_opts co = {.slots = opts->upload_slots, .rechoke_ms = 5000, .optimistic_ms = 15000,
				 .seed = n->id.node_id[2] | (uint64_t)n->id.node_id[3] << 8};
	n->choker = choker_new(&co, uv_now(n->loop));
	if (!n->choker) {
		r = PN_ENOMEM;
		goto out_store;
	}
	choker_set_seeding(n->choker, true);
	r = pn_net_new(n->loop, &n->id, NULL, &n->net);
	if (r != PN_OK) {
		fprintf(stderr, "peernet node: cannot set up TLS: %s\n", pn_strerror(r));
		goto out_choker;
	}
	pn_net_set_data(n->net, n);
	pn_net_set_rates(n->net, opts->up_rate, opts->down_rate);
	r = pn_net_listen(n->net, opts->listen, accept_cb, &n->port);
	if (r != PN_OK) {
		fprintf(stderr, "peernet node: cannot listen on %s: %s\n", opts->listen,
			r == PN_EEXIST ? "address already in use" : pn_strerror(r));
		goto out_net;
	}
	r = flood_setup(n);
	if (r != PN_OK)
		goto out_net;
	r = ctl_listen(n);
	if (r != PN_OK)
		goto out_net;
	for (int i = 0; i < opts->nshares; i++)
		add_share(n, opts->shares[i]);
	uv_timer_init(n->loop, &n->tick);
	n->tick.data = n;
	uv_timer_start(&n->tick, tick_cb, NODE_TICK_MS, NODE_TICK_MS);
	uv_signal_init(n->loop, &n->sig_int);
	uv_signal_init(n->loop, &n->sig_term);
	n->sig_int.data = n->sig_term.data = n;
	uv_signal_start(&n->sig_int, signal_cb, SIGINT);
	uv_signal_start(&n->sig_term, signal_cb, SIGTERM);
	n->dir_backoff_ms = 500;
	char idhex[PN_NODE_ID_STR_LEN + 1];
	pn_node_id_format(n->id.node_id, idhex);
	printf("peernet node %s listening on port %u, discovery %s, %zu files shared, control %s\n", idhex, n->port,
	       opts->discovery == PN_DISCOVERY_DIRECTORY ? "directory" : opts->discovery == PN_DISCOVERY_FLOOD ? "flood" : "dht",
	       store_count(n->store), n->control_path);
	printf("node-id %s\n", idhex);
	fflush(stdout);
	if (opts->port_file) {
		FILE *f = fopen(opts->port_file, "w");
		if (f) {
			fprintf(f, "%u\n", n->port);
			fclose(f);
		}
	}
	uv_run(n->loop, UV_RUN_DEFAULT);
	r = PN_OK;
	pn_log_info("stopped: %llu bytes uploaded, %llu bytes downloaded", (unsigned long long)n->bytes_uploaded,
		    (unsigned long long)n->bytes_downloaded);
	unlink(n->control_path);
	goto out_choker;
out_net:
	pn_net_close(n->net);
	uv_run(n->loop, UV_RUN_DEFAULT);
out_choker:
	choker_free(n->choker);
	seed_free_all(n);
	flood_teardown(n);
out_store:
	store_close(n->store);
out_id:
	pn_identity_free(&n->id);
out_buf:
	uv_walk(n->loop, close_walk_cb, NULL);
	uv_run(n->loop, UV_RUN_DEFAULT);
	uv_loop_close(n->loop);
	free(n->out);
	free(n);
	return r;
}
