/* Finding data by flooding. See node_flood.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "node/node_flood.h"
#include "crypto/crypto.h"
#include "proto/prng.h"
#include "store/store.h"
#include "util/text.h"

#define PEERS_REQ_INTERVAL_MS 30000
#define PEERS_REQ_JITTER_MS 5000
#define SAVE_INTERVAL_MS 10000
#define WARN_INTERVAL_MS 10000
#define PEERS_FILE "peers"
#define PEERS_FILE_MAX 64
#define FIND_WANT 3 /* answers that stop the ring: a few providers are enough to swarm */
#define HIT_PAYLOAD_MAX (PN_ID_BYTES + 1 + PN_DIR_ADDR_MAX + 2 + PN_HIT_RESULTS_MAX * (PN_CID_BYTES + 2 + PN_NAME_MAX))

/* A node we might take as a neighbour. */
struct cand {
	char addr[PN_ADDR_STR_MAX];
	uint8_t id[PN_ID_BYTES];
	bool id_known, good, busy;    /* good: was a neighbour once; busy: a connection exists */
	uint32_t fails;
	uint64_t next_try_ms;
};

/* A connection flooding cares about: one we dialled for a neighbour, or a neighbour. */
struct link {
	uint32_t key;                 /* the node's key of the connection; 0: slot free */
	int cand;                     /* index in cands it was dialled from, -1 */
	bool want_neighbor;           /* we dialled it to be a neighbour */
	bool neighbor;
	uint8_t id[PN_ID_BYTES];
	char addr[PN_ADDR_STR_MAX];   /* as the node names it (dialled, or where it came from) */
	char reach[PN_ADDR_STR_MAX];  /* where other nodes reach it */
};

/* A query this node started through the flood core. */
struct fresult {
	struct pn_cid cid;
	char name[PN_NAME_MAX + 1];
	uint32_t providers;
	uint8_t last_node[PN_ID_BYTES];
};
struct fquery {
	uint32_t handle;
	void *token;                  /* search: the owner's token */
	struct pn_cid cid;            /* find: what for */
	bool is_find;
	struct fresult *results;
	int nresults;
	uint32_t hits;
	struct fquery *next;
};

struct flood_node {
	struct flood_node_opts o;
	struct flood *core;
	struct cand cands[FLOOD_NODE_MAX_CANDS];
	int ncands;
	struct link links[FLOOD_NODE_MAX_LINKS];
	struct fquery *queries;
	struct pn_prng rng;
	uint64_t next_peers_req_ms, next_save_ms, warned_ms;
	uint64_t lookups;
	bool peers_dirty, stopped;
	uint8_t hit_frame[PN_FRAME_HDR + 1 + FLOOD_QID_BYTES + FLOOD_MAX_HIT_PAYLOAD];
};

static uint32_t min_nb(const struct flood_node *fn)
{
	return fn->o.min_neighbors ? fn->o.min_neighbors : FLOOD_NODE_DEFAULT_MIN_NEIGHBORS;
}

static uint32_t max_nb(const struct flood_node *fn)
{
	return fn->o.max_neighbors ? fn->o.max_neighbors : FLOOD_NODE_DEFAULT_MAX_NEIGHBORS;
}

/* ---- links ---- */

static struct link *link_find(const struct flood_node *fn, uint32_t key)
{
	if (!key)
		return NULL;
	for (int i = 0; i < FLOOD_NODE_MAX_LINKS; i++)
		if (fn->links[i].key == key)
			return (struct link *)&fn->links[i];
	return NULL;
}

static struct link *link_new(struct flood_node *fn, uint32_t key)
{
	for (int i = 0; i < FLOOD_NODE_MAX_LINKS; i++) {
		if (!fn->links[i].key) {
			struct link *l = &fn->links[i];
			memset(l, 0, sizeof *l);
			l->key = key;
			l->cand = -1;
			return l;
		}
	}
	return NULL;
}

static uint32_t neighbor_count(const struct flood_node *fn)
{
	uint32_t c = 0;
	for (int i = 0; i < FLOOD_NODE_MAX_LINKS; i++)
		c += fn->links[i].key && fn->links[i].neighbor;
	return c;
}

static uint32_t dialing_count(const struct flood_node *fn)
{
	uint32_t c = 0;
	for (int i = 0; i < FLOOD_NODE_MAX_LINKS; i++)
		c += fn->links[i].key && fn->links[i].want_neighbor && !fn->links[i].neighbor;
	return c;
}

bool flood_node_ready(const struct flood_node *fn)
{
	return !fn->stopped && neighbor_count(fn) > 0;
}

bool flood_node_is_neighbor(const struct flood_node *fn, uint32_t key)
{
	const struct link *l = link_find(fn, key);
	return l && l->neighbor;
}

uint32_t flood_node_hello_features(const struct flood_node *fn, uint32_t key, bool outgoing)
{
	/* A full node says so in its HELLO, so the dialler does not count a
	 * link that is about to close. */
	if (outgoing) {
		const struct link *l = link_find(fn, key);
		return l && l->want_neighbor ? FLOOD_NODE_FEATURE : 0;
	}
	return neighbor_count(fn) < max_nb(fn) ? FLOOD_NODE_FEATURE : 0;
}

/* ---- candidates and the peers file ---- */

static int cand_find(const struct flood_node *fn, const char *addr)
{
	for (int i = 0; i < fn->ncands; i++)
		if (!strcmp(fn->cands[i].addr, addr))
			return i;
	return -1;
}

static int cand_add(struct flood_node *fn, const char *addr, const uint8_t *id)
{
	if (id && !memcmp(id, fn->o.self_id, PN_ID_BYTES))
		return -1; /* ourselves */
	int i = cand_find(fn, addr);
	if (i < 0) {
		if (fn->ncands >= FLOOD_NODE_MAX_CANDS) {
			/* Forget a candidate that never worked. */
			for (i = 0; i < fn->ncands; i++)
				if (!fn->cands[i].good && !fn->cands[i].busy)
					break;
			if (i == fn->ncands)
				return -1;
		} else {
			i = fn->ncands++;
		}
		memset(&fn->cands[i], 0, sizeof fn->cands[i]);
		snprintf(fn->cands[i].addr, sizeof fn->cands[i].addr, "%s", addr);
	}
	if (id) {
		memcpy(fn->cands[i].id, id, PN_ID_BYTES);
		fn->cands[i].id_known = true;
	}
	return i;
}

static bool peers_file_path(const struct flood_node *fn, char *out, size_t len)
{
	if (!fn->o.data_dir)
		return false;
	return snprintf(out, len, "%s/%s", fn->o.data_dir, PEERS_FILE) < (int)len;
}

/* DATA/peers: one "ADDR NODEID" per line, good peers first; read at start. */
static void peers_load(struct flood_node *fn)
{
	char path[4200], line[256];
	if (!peers_file_path(fn, path, sizeof path))
		return;
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	int count = 0;
	while (count < PEERS_FILE_MAX && fgets(line, sizeof line, f)) {
		char addr[PN_ADDR_STR_MAX], idhex[PN_NODE_ID_STR_LEN + 2];
		uint8_t id[PN_ID_BYTES];
		if (sscanf(line, "%63s %65s", addr, idhex) != 2 || pn_node_id_parse(idhex, id) != PN_OK ||
		    !pn_addr_text_valid(addr, strlen(addr), false))
			continue;
		int i = cand_add(fn, addr, id);
		if (i >= 0)
			fn->cands[i].good = true;
		count++;
	}
	fclose(f);
	if (count)
		PN_LOGI(fn->o.log, "%d known peers from %s", count, path);
}

static void peers_save(struct flood_node *fn)
{
	char path[4200], tmp[4300];
	fn->peers_dirty = false;
	if (!peers_file_path(fn, path, sizeof path))
		return;
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (!f)
		return;
	int count = 0;
	for (int i = 0; i < fn->ncands && count < PEERS_FILE_MAX; i++) {
		const struct cand *c = &fn->cands[i];
		if (!c->good || !c->id_known)
			continue;
		char idhex[PN_NODE_ID_STR_LEN + 1];
		pn_node_id_format(c->id, idhex);
		fprintf(f, "%s %s\n", c->addr, idhex);
		count++;
	}
	if (fflush(f) == 0 && fsync(fileno(f)) == 0 && fclose(f) == 0) {
		if (rename(tmp, path) != 0)
			unlink(tmp);
	} else {
		unlink(tmp);
	}
}

/* The address other nodes reach a peer at: where we dialled it, or its IP
 * and HELLO port. */
static void reach_addr(const struct flood_peer_hello *h, char out[PN_ADDR_STR_MAX])
{
	if (h->outgoing || !h->listen_port) {
		snprintf(out, PN_ADDR_STR_MAX, "%s", h->addr);
		return;
	}
	char host[PN_ADDR_STR_MAX];
	snprintf(host, sizeof host, "%s", h->addr);
	char *colon = strrchr(host, ':');
	if (colon)
		*colon = 0;
	snprintf(out, PN_ADDR_STR_MAX, "%.48s:%u", host, h->listen_port);
}

/* ---- sending ---- */

static void send_msg(struct flood_node *fn, uint32_t key, const struct pn_msg *m)
{
	(void)fn->o.peers.send_cb(fn->o.peers.ud, key, m);
}

/* PEERS to connection key (node to_id): our neighbours, then good candidates. */
static void send_peers(struct flood_node *fn, uint32_t key, const uint8_t to_id[PN_ID_BYTES])
{
	uint8_t entries[PN_PEERS_MAX * (PN_ID_BYTES + 1 + PN_DIR_ADDR_MAX)];
	struct pn_writer w;
	pn_wr_init(&w, entries, sizeof entries);
	uint8_t count = 0;
	for (int i = 0; i < FLOOD_NODE_MAX_LINKS && count < PN_PEERS_MAX; i++) {
		const struct link *l = &fn->links[i];
		if (!l->key || !l->neighbor || l->key == key || strlen(l->reach) > PN_DIR_ADDR_MAX)
			continue;
		struct pn_dir_provider_entry e = {.node_id = l->id, .addr = l->reach, .addr_len = (uint8_t)strlen(l->reach)};
		pn_dir_provider_encode(&w, &e);
		count++;
	}
	/* Known good peers fill the list when we have few neighbours. */
	for (int i = 0; i < fn->ncands && count < PN_PEERS_MAX; i++) {
		const struct cand *c = &fn->cands[i];
		if (!c->good || !c->id_known || c->busy || !memcmp(c->id, to_id, PN_ID_BYTES))
			continue;
		struct pn_dir_provider_entry e = {.node_id = c->id, .addr = c->addr, .addr_len = (uint8_t)strlen(c->addr)};
		pn_dir_provider_encode(&w, &e);
		count++;
	}
	struct pn_msg m = {.type = PN_MSG_PEERS};
	m.u.peers.count = count;
	m.u.peers.entries = entries;
	m.u.peers.entries_len = w.len;
	send_msg(fn, key, &m);
}

/* Forwards a hit as it came (the core routes opaque payloads). */
static void send_raw_hit(struct flood_node *fn, const struct link *l, const uint8_t qid[FLOOD_QID_BYTES],
			 const uint8_t *payload, size_t len)
{
	uint8_t *frame = fn->hit_frame;
	size_t body = 1 + FLOOD_QID_BYTES + len;
	if (PN_FRAME_HDR + body > sizeof fn->hit_frame)
		return;
	pn_put_u32(frame, (uint32_t)body);
	frame[PN_FRAME_HDR] = PN_MSG_QUERY_HIT;
	memcpy(frame + PN_FRAME_HDR + 1, qid, FLOOD_QID_BYTES);
	memcpy(frame + PN_FRAME_HDR + 1 + FLOOD_QID_BYTES, payload, len);
	if (fn->o.peers.send_frame_cb(fn->o.peers.ud, l->key, frame, PN_FRAME_HDR + body) != PN_OK)
		PN_LOGD(fn->o.log, "%s: cannot forward a hit", l->addr);
}

/* ---- answering queries ---- */

/* Our address as seen by the neighbour a query came from. */
static void our_addr(struct flood_node *fn, uint32_t nb, char out[PN_ADDR_STR_MAX])
{
	char ip[PN_ADDR_STR_MAX] = "127.0.0.1";
	if (fn->o.announce_host)
		snprintf(ip, sizeof ip, "%s", fn->o.announce_host);
	else if (nb && fn->o.peers.local_ip_cb && !fn->o.peers.local_ip_cb(fn->o.peers.ud, nb, ip))
		snprintf(ip, sizeof ip, "127.0.0.1");
	snprintf(out, PN_ADDR_STR_MAX, "%.48s:%u", ip, fn->o.port);
}

static void answer_local(struct flood_node *fn, const struct flood_action *a, uint64_t now)
{
	uint8_t payload[HIT_PAYLOAD_MAX];
	uint8_t entries[PN_HIT_RESULTS_MAX * (PN_CID_BYTES + 2 + PN_NAME_MAX)];
	struct pn_writer ew;
	/* The whole hit must fit what the flood core routes. */
	size_t room = FLOOD_MAX_HIT_PAYLOAD - (PN_ID_BYTES + 1 + PN_DIR_ADDR_MAX + 2);
	pn_wr_init(&ew, entries, room < sizeof entries ? room : sizeof entries);
	uint16_t count = 0;
	if (a->q.kind == FLOOD_CID && a->q.len == PN_CID_BYTES) {
		struct pn_reader r;
		struct pn_cid cid;
		pn_rd_init(&r, a->q.data, a->q.len);
		pn_cid_read(&r, &cid);
		const char *name = r.err || !fn->o.peers.held_name_cb ? NULL : fn->o.peers.held_name_cb(fn->o.peers.ud, &cid);
		if (name && *name) {
			struct pn_list_entry e = {.cid = cid, .name = name, .name_len = (uint16_t)strlen(name)};
			pn_list_entry_encode(&ew, &e);
			count = ew.err ? 0 : 1;
		}
	} else if (a->q.kind == FLOOD_KEYWORDS && fn->o.store) {
		size_t total = store_count(fn->o.store);
		for (size_t i = 0; i < total && count < PN_HIT_RESULTS_MAX; i++) {
			const struct store_object *o = store_at(fn->o.store, i);
			if (!o->name[0] || !pn_keywords_match(o->name, strlen(o->name), (const char *)a->q.data, a->q.len))
				continue;
			struct pn_list_entry e = {.cid = o->cid, .name = o->name, .name_len = (uint16_t)strlen(o->name)};
			size_t before = ew.len;
			pn_list_entry_encode(&ew, &e);
			if (ew.err) {
				ew.len = before;
				ew.err = 0;
				break;
			}
			count++;
		}
	}
	if (!count)
		return;
	char addr[PN_ADDR_STR_MAX];
	our_addr(fn, a->nb, addr);
	struct pn_writer w;
	pn_wr_init(&w, payload, sizeof payload);
	pn_wr_bytes(&w, fn->o.self_id, PN_ID_BYTES);
	pn_wr_u8(&w, (uint8_t)strlen(addr));
	pn_wr_bytes(&w, addr, strlen(addr));
	pn_wr_u16(&w, count);
	pn_wr_bytes(&w, entries, ew.len);
	if (!w.err)
		flood_answer(fn->core, a->q.id, payload, w.len, now);
}

/* ---- our own queries ---- */

static struct fquery *fq_find(const struct flood_node *fn, uint32_t handle)
{
	for (struct fquery *q = fn->queries; q; q = q->next)
		if (q->handle == handle)
			return q;
	return NULL;
}

static void fq_unlink(struct flood_node *fn, struct fquery *q)
{
	struct fquery **pp = &fn->queries;
	while (*pp && *pp != q)
		pp = &(*pp)->next;
	if (*pp)
		*pp = q->next;
}

static void fq_free(struct fquery *q)
{
	free(q->results);
	free(q);
}

static void deliver_hit(struct flood_node *fn, const struct flood_action *a)
{
	struct fquery *q = fq_find(fn, a->handle);
	if (!q)
		return;
	/* Validate the routed payload as a QUERY_HIT before trusting a byte of it. */
	uint8_t body[1 + FLOOD_QID_BYTES + HIT_PAYLOAD_MAX];
	if (a->len > HIT_PAYLOAD_MAX)
		return;
	body[0] = PN_MSG_QUERY_HIT;
	memcpy(body + 1, a->qid, FLOOD_QID_BYTES);
	memcpy(body + 1 + FLOOD_QID_BYTES, a->payload, a->len);
	struct pn_msg m;
	if (pn_msg_decode(body, 1 + FLOOD_QID_BYTES + a->len, &m) != PN_OK)
		return;
	q->hits++;
	struct discovery_provider prov;
	memcpy(prov.id, m.u.query_hit.node_id, PN_ID_BYTES);
	memcpy(prov.addr, m.u.query_hit.addr, m.u.query_hit.addr_len);
	prov.addr[m.u.query_hit.addr_len] = 0;
	const struct discovery_events *ev = &fn->o.events;
	size_t off = 0;
	struct pn_list_entry e;
	while (pn_hit_next(&m.u.query_hit, &off, &e) == PN_OK) {
		if (q->is_find) {
			if (!memcmp(&e.cid, &q->cid, sizeof e.cid) && ev->providers_cb)
				ev->providers_cb(ev->ud, &e.cid, &prov, 1, 1);
			continue;
		}
		int i;
		for (i = 0; i < q->nresults; i++)
			if (!memcmp(&q->results[i].cid, &e.cid, sizeof e.cid))
				break;
		if (i == q->nresults) {
			if (q->nresults >= FLOOD_NODE_MAX_RESULTS)
				continue;
			struct fresult *r = &q->results[q->nresults++];
			memset(r, 0, sizeof *r);
			r->cid = e.cid;
			memcpy(r->name, e.name, e.name_len);
			r->name[e.name_len] = 0;
		}
		if (memcmp(q->results[i].last_node, prov.id, PN_ID_BYTES)) {
			q->results[i].providers++;
			memcpy(q->results[i].last_node, prov.id, PN_ID_BYTES);
		}
	}
}

static void query_done(struct flood_node *fn, const struct flood_action *a)
{
	struct fquery *q = fq_find(fn, a->handle);
	if (!q)
		return;
	fq_unlink(fn, q); /* the callbacks may start other queries */
	const struct discovery_events *ev = &fn->o.events;
	if (q->is_find) {
		if (ev->lookup_done_cb)
			ev->lookup_done_cb(ev->ud, &q->cid, PN_OK, q->hits);
	} else {
		/* Most providers first. */
		for (int i = 1; i < q->nresults; i++)
			for (int j = i; j > 0 && q->results[j].providers > q->results[j - 1].providers; j--) {
				struct fresult t = q->results[j];
				q->results[j] = q->results[j - 1];
				q->results[j - 1] = t;
			}
		for (int i = 0; i < q->nresults && ev->search_result_cb; i++)
			ev->search_result_cb(ev->ud, q->token, &q->results[i].cid, q->results[i].providers,
					     q->results[i].name, strlen(q->results[i].name));
		if (ev->search_done_cb)
			ev->search_done_cb(ev->ud, q->token, NULL);
	}
	fq_free(q);
}

static void drain(struct flood_node *fn, uint64_t now)
{
	struct flood_action a;
	while (flood_next_action(fn->core, &a)) {
		const struct link *l = a.type == FLOOD_SEND_QUERY || a.type == FLOOD_SEND_HIT ||
						a.type == FLOOD_DROP_NEIGHBOR ? link_find(fn, a.nb) : NULL;
		switch (a.type) {
		case FLOOD_SEND_QUERY:
			if (l && l->neighbor) {
				struct pn_msg m = {.type = PN_MSG_QUERY};
				memcpy(m.u.query.qid, a.q.id, PN_QID_BYTES);
				m.u.query.ttl = a.q.ttl;
				m.u.query.hops = a.q.hops;
				m.u.query.kind = a.q.kind;
				m.u.query.len = a.q.len;
				m.u.query.data = a.q.data;
				send_msg(fn, l->key, &m);
			}
			break;
		case FLOOD_SEND_HIT:
			if (l && l->neighbor)
				send_raw_hit(fn, l, a.qid, a.payload, a.len);
			break;
		case FLOOD_LOCAL_QUERY:
			answer_local(fn, &a, now);
			break;
		case FLOOD_DELIVER_HIT:
			deliver_hit(fn, &a);
			break;
		case FLOOD_DROP_NEIGHBOR:
			PN_LOGW(fn->o.log, "%s sends queries too fast: dropped", l ? l->addr : "a neighbour");
			fn->o.peers.close_cb(fn->o.peers.ud, a.nb, PN_ELIMIT);
			break;
		case FLOOD_QUERY_DONE:
			query_done(fn, &a);
			break;
		}
	}
}

static struct fquery *fq_start(struct flood_node *fn, uint8_t kind, const uint8_t *data, uint16_t len, uint32_t want,
			       uint64_t now)
{
	struct fquery *q = calloc(1, sizeof *q);
	if (!q)
		return NULL;
	uint8_t ttl = fn->o.ttl ? fn->o.ttl : FLOOD_DEFAULT_TTL;
	int h = flood_start(fn->core, kind, data, len, ttl, !fn->o.plain_flood, want, now);
	if (h <= 0) {
		free(q);
		return NULL;
	}
	q->handle = (uint32_t)h;
	q->next = fn->queries;
	fn->queries = q;
	return q;
}

int flood_node_find(struct flood_node *fn, const struct pn_cid *cid, uint64_t now)
{
	if (!flood_node_ready(fn))
		return PN_ECLOSED;
	uint8_t data[PN_CID_BYTES];
	struct pn_writer w;
	pn_wr_init(&w, data, sizeof data);
	pn_cid_write(&w, cid);
	struct fquery *q = fq_start(fn, FLOOD_CID, data, PN_CID_BYTES, FIND_WANT, now);
	if (!q)
		return PN_ELIMIT;
	q->is_find = true;
	q->cid = *cid;
	fn->lookups++;
	drain(fn, now);
	return PN_OK;
}

int flood_node_search(struct flood_node *fn, const char *query, void *token, uint64_t now)
{
	if (!flood_node_ready(fn))
		return PN_ECLOSED;
	size_t len = strlen(query);
	if (!len || len > PN_QUERY_DATA_MAX)
		return PN_EINVAL;
	struct fresult *results = calloc(FLOOD_NODE_MAX_RESULTS, sizeof *results);
	if (!results)
		return PN_ENOMEM;
	/* Three answering nodes are enough to stop widening, as for a get: beyond
	 * that the ring would cost more than a plain flood for every search. */
	struct fquery *q = fq_start(fn, FLOOD_KEYWORDS, (const uint8_t *)query, (uint16_t)len, FIND_WANT, now);
	if (!q) {
		free(results);
		return PN_ELIMIT;
	}
	q->results = results;
	q->token = token;
	fn->lookups++;
	drain(fn, now);
	return PN_OK;
}

void flood_node_search_cancel(struct flood_node *fn, void *token)
{
	for (struct fquery *q = fn->queries, *next; q; q = next) {
		next = q->next;
		if (!q->is_find && q->token == token) {
			flood_cancel(fn->core, q->handle);
			fq_unlink(fn, q);
			fq_free(q);
		}
	}
}

/* ---- neighbours ---- */

static void make_neighbor(struct flood_node *fn, struct link *l, const struct flood_peer_hello *h, uint64_t now)
{
	if (flood_neighbor_add(fn->core, l->key, now) != PN_OK)
		return;
	l->neighbor = true;
	memcpy(l->id, h->id, PN_ID_BYTES);
	snprintf(l->addr, sizeof l->addr, "%s", h->addr);
	reach_addr(h, l->reach);
	int i = cand_add(fn, l->reach, h->id);
	if (i >= 0) {
		fn->cands[i].good = true;
		fn->cands[i].busy = true;
		fn->cands[i].fails = 0;
		fn->peers_dirty = true;
	}
	PN_LOGI(fn->o.log, "neighbour %s (%u of %u-%u)", l->reach, neighbor_count(fn), min_nb(fn), max_nb(fn));
	struct pn_msg m = {.type = PN_MSG_PEERS_REQ};
	send_msg(fn, l->key, &m);
}

bool flood_node_peer_hello(struct flood_node *fn, const struct flood_peer_hello *h, uint64_t now)
{
	if (fn->stopped || !(h->features & FLOOD_NODE_FEATURE))
		return true;
	struct link *l = link_find(fn, h->key);
	if (l && l->neighbor)
		return true;
	if (h->outgoing) {
		if (l && l->want_neighbor)
			make_neighbor(fn, l, h, now);
		return true;
	}
	/* They ask to be our neighbour. */
	if (neighbor_count(fn) >= max_nb(fn) || (!l && !(l = link_new(fn, h->key)))) {
		send_peers(fn, h->key, h->id); /* somewhere else to go */
		fn->o.peers.close_cb(fn->o.peers.ud, h->key, 0);
		return false;
	}
	make_neighbor(fn, l, h, now);
	if (!l->neighbor)
		memset(l, 0, sizeof *l); /* the core took no more */
	return true;
}

void flood_node_peer_closed(struct flood_node *fn, uint32_t key, uint64_t now)
{
	struct link *l = link_find(fn, key);
	if (!l)
		return;
	if (l->cand >= 0 && l->cand < fn->ncands) {
		struct cand *c = &fn->cands[l->cand];
		c->busy = false;
		if (!l->neighbor) {
			c->fails++;
			uint64_t backoff = (uint64_t)FLOOD_NODE_BACKOFF_MIN_MS << (c->fails < 6 ? c->fails : 6);
			c->next_try_ms = now + (backoff > FLOOD_NODE_BACKOFF_MAX_MS ? FLOOD_NODE_BACKOFF_MAX_MS : backoff);
		} else {
			c->next_try_ms = now + FLOOD_NODE_BACKOFF_MIN_MS;
		}
	}
	if (l->neighbor) {
		flood_neighbor_remove(fn->core, key);
		int i = cand_find(fn, l->reach);
		if (i >= 0)
			fn->cands[i].busy = false;
		PN_LOGI(fn->o.log, "lost neighbour %s (%u left)", l->reach, neighbor_count(fn) - 1);
	}
	memset(l, 0, sizeof *l);
}

int flood_node_on_msg(struct flood_node *fn, uint32_t key, const struct pn_msg *m, const uint8_t *body, size_t len,
		      uint64_t now)
{
	const struct link *l = link_find(fn, key);
	bool neighbor = l && l->neighbor;
	switch (m->type) {
	case PN_MSG_PEERS_REQ:
		if (neighbor)
			send_peers(fn, key, l->id);
		return PN_OK;
	case PN_MSG_PEERS: {
		size_t off = 0;
		struct pn_dir_provider_entry e;
		while (pn_peers_next(&m->u.peers, &off, &e) == PN_OK) {
			char addr[PN_DIR_ADDR_MAX + 1];
			memcpy(addr, e.addr, e.addr_len);
			addr[e.addr_len] = 0;
			(void)cand_add(fn, addr, e.node_id);
		}
		return PN_OK;
	}
	case PN_MSG_QUERY: {
		if (!neighbor || fn->stopped)
			return PN_OK; /* queries travel on neighbour links only */
		struct flood_query q;
		memcpy(q.id, m->u.query.qid, FLOOD_QID_BYTES);
		q.ttl = m->u.query.ttl;
		q.hops = m->u.query.hops;
		q.kind = m->u.query.kind;
		q.len = m->u.query.len;
		q.data = m->u.query.data;
		flood_on_query(fn->core, key, &q, now);
		drain(fn, now);
		return PN_OK;
	}
	case PN_MSG_QUERY_HIT:
		if (!neighbor || fn->stopped)
			return PN_OK;
		flood_on_hit(fn->core, key, m->u.query_hit.qid, body + 1 + PN_QID_BYTES, len - 1 - PN_QID_BYTES, now);
		drain(fn, now);
		return PN_OK;
	default:
		return PN_ENOTSUP;
	}
}

static void dial(struct flood_node *fn, int ci, uint64_t now)
{
	struct cand *c = &fn->cands[ci];
	struct link *l = link_new(fn, UINT32_MAX); /* reserved until the dial says its key */
	if (!l)
		return;
	c->busy = true;
	uint32_t key = fn->o.peers.dial_cb(fn->o.peers.ud, c->addr, c->id_known ? c->id : NULL);
	if (!key) {
		l->key = 0;
		c->busy = false;
		c->fails++;
		c->next_try_ms = now + FLOOD_NODE_BACKOFF_MAX_MS;
		return;
	}
	l->key = key;
	l->want_neighbor = true;
	l->cand = ci;
	memcpy(l->addr, c->addr, sizeof l->addr); /* both PN_ADDR_STR_MAX, NUL-terminated */
}

/* The candidate to dial next: not busy, due, not connected; good ones first,
 * then the fewest failures. -1: none. */
static int best_cand(const struct flood_node *fn, uint64_t now)
{
	int best = -1;
	for (int i = 0; i < fn->ncands; i++) {
		const struct cand *c = &fn->cands[i];
		if (c->busy || c->next_try_ms > now)
			continue;
		if (c->id_known && fn->o.peers.connected_cb && fn->o.peers.connected_cb(fn->o.peers.ud, c->id))
			continue;
		if (best < 0 || (c->good && !fn->cands[best].good) ||
		    (c->good == fn->cands[best].good && c->fails < fn->cands[best].fails))
			best = i;
	}
	return best;
}

void flood_node_tick(struct flood_node *fn, uint64_t now)
{
	if (fn->stopped)
		return;
	flood_tick(fn->core, now);
	drain(fn, now);
	uint32_t have = neighbor_count(fn), dialing = dialing_count(fn);
	/* Keep at least the minimum, dialling a few at a time, best candidates first. */
	while (have + dialing < min_nb(fn)) {
		int best = best_cand(fn, now);
		if (best < 0)
			break;
		dial(fn, best, now);
		dialing++;
	}
	if (!have && !dialing && now - fn->warned_ms > WARN_INTERVAL_MS) {
		fn->warned_ms = now;
		uint64_t soonest = UINT64_MAX;
		for (int i = 0; i < fn->ncands; i++)
			if (fn->cands[i].next_try_ms < soonest)
				soonest = fn->cands[i].next_try_ms;
		if (fn->ncands)
			PN_LOGW(fn->o.log, "no reachable peer (%d known, none answering); retrying in %llu s", fn->ncands,
				(unsigned long long)((soonest > now ? soonest - now : 0) + 999) / 1000);
		else
			PN_LOGW(fn->o.log, "no peer known: give --bootstrap ADDR:PORT");
	}
	if (have && now >= fn->next_peers_req_ms) {
		fn->next_peers_req_ms = now + PEERS_REQ_INTERVAL_MS + pn_prng_below(&fn->rng, PEERS_REQ_JITTER_MS);
		for (int i = 0; i < FLOOD_NODE_MAX_LINKS; i++)
			if (fn->links[i].key && fn->links[i].neighbor) {
				struct pn_msg m = {.type = PN_MSG_PEERS_REQ};
				send_msg(fn, fn->links[i].key, &m);
				break;
			}
	}
	if (fn->peers_dirty && now >= fn->next_save_ms) {
		fn->next_save_ms = now + SAVE_INTERVAL_MS;
		peers_save(fn);
	}
}

uint64_t flood_node_next_wakeup(const struct flood_node *fn, uint64_t now)
{
	if (fn->stopped)
		return UINT64_MAX;
	uint64_t next = flood_next_wakeup(fn->core);
	uint32_t have = neighbor_count(fn), dialing = dialing_count(fn);
	if (have + dialing < min_nb(fn)) {
		for (int i = 0; i < fn->ncands; i++) {
			const struct cand *c = &fn->cands[i];
			if (c->busy || (c->id_known && fn->o.peers.connected_cb &&
					fn->o.peers.connected_cb(fn->o.peers.ud, c->id)))
				continue;
			if (c->next_try_ms < next)
				next = c->next_try_ms;
		}
	}
	if (!have && !dialing && fn->warned_ms + WARN_INTERVAL_MS < next)
		next = fn->warned_ms + WARN_INTERVAL_MS + 1;
	if (have && fn->next_peers_req_ms < next)
		next = fn->next_peers_req_ms;
	if (fn->peers_dirty && fn->next_save_ms < next)
		next = fn->next_save_ms;
	return next;
}

void flood_node_get_stats(const struct flood_node *fn, struct flood_node_stats *out)
{
	out->neighbors = flood_neighbor_count(fn->core);
	out->candidates = (size_t)fn->ncands;
	out->lookups = fn->lookups;
	out->core = *flood_get_stats(fn->core);
}

/* ---- life ---- */

struct flood_node *flood_node_new(const struct flood_node_opts *opts)
{
	struct flood_node *fn = calloc(1, sizeof *fn);
	if (!fn)
		return NULL;
	fn->o = *opts;
	pn_prng_seed(&fn->rng, opts->seed);
	struct flood_opts fo = {
		.max_ttl = FLOOD_MAX_TTL,
		.seed = pn_prng_next(&fn->rng),
	};
	fn->core = flood_new(&fo);
	if (!fn->core) {
		free(fn);
		return NULL;
	}
	peers_load(fn);
	for (int i = 0; i < opts->nbootstrap; i++)
		(void)cand_add(fn, opts->bootstrap[i], NULL);
	return fn;
}

void flood_node_stop(struct flood_node *fn)
{
	if (fn->stopped)
		return;
	fn->stopped = true;
	if (fn->peers_dirty)
		peers_save(fn);
	while (fn->queries) {
		struct fquery *q = fn->queries;
		fn->queries = q->next;
		flood_cancel(fn->core, q->handle);
		fq_free(q);
	}
}

void flood_node_free(struct flood_node *fn)
{
	if (!fn)
		return;
	flood_node_stop(fn);
	flood_free(fn->core);
	free(fn);
}
