/* Finding data by flooding: neighbour links, peer exchange, queries and hits.
 * The decisions are the flood core's (src/proto/flood.c); this file keeps the
 * neighbour set between its minimum and maximum, remembers good peers in
 * DATA/peers, and carries the core's actions over the connections. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "node/node_int.h"
#include "util/log.h"

#define DEFAULT_MIN_NEIGHBORS 4
#define DEFAULT_MAX_NEIGHBORS 8
#define FEATURE_FLOOD 0x1u
#define PEERS_REQ_INTERVAL_MS 30000
#define SAVE_INTERVAL_MS 10000
#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 60000
#define WARN_INTERVAL_MS 10000
#define PEERS_FILE "peers"
#define PEERS_FILE_MAX 64
#define HIT_PAYLOAD_MAX (PN_ID_BYTES + 1 + PN_DIR_ADDR_MAX + 2 + PN_HIT_RESULTS_MAX * (PN_CID_BYTES + 2 + PN_NAME_MAX))

static uint32_t min_nb(struct node *n) { return n->opts.min_neighbors ? n->opts.min_neighbors : DEFAULT_MIN_NEIGHBORS; }
static uint32_t max_nb(struct node *n) { return n->opts.max_neighbors ? n->opts.max_neighbors : DEFAULT_MAX_NEIGHBORS; }

static uint32_t neighbor_count(struct node *n)
{
	uint32_t c = 0;
	for (struct peer *p = n->peers; p; p = p->next)
		c += p->neighbor;
	return c;
}

static uint32_t dialing_count(struct node *n)
{
	uint32_t c = 0;
	for (struct peer *p = n->peers; p; p = p->next)
		c += p->want_neighbor && !p->neighbor;
	return c;
}

bool flood_ready(struct node *n)
{
	return n->flood && neighbor_count(n) > 0;
}

uint32_t flood_hello_features(struct node *n, struct peer *p)
{
	if (!n->flood)
		return 0;
	/* We offer a link to a dialler while we have room, and ask for one only
	 * when we dialled for it; a full node says so in its HELLO, so the dialler
	 * does not count a link that is about to close. */
	if (p->outgoing)
		return p->want_neighbor ? FEATURE_FLOOD : 0;
	return neighbor_count(n) < max_nb(n) ? FEATURE_FLOOD : 0;
}

/* ---- candidates and the peers file ---- */

static int cand_find(struct node *n, const char *addr)
{
	for (int i = 0; i < n->ncands; i++)
		if (!strcmp(n->cands[i].addr, addr))
			return i;
	return -1;
}

static int cand_add(struct node *n, const char *addr, const uint8_t *id)
{
	if (id && !memcmp(id, n->id.node_id, PN_ID_BYTES))
		return -1; /* ourselves */
	int i = cand_find(n, addr);
	if (i < 0) {
		if (n->ncands >= NODE_MAX_CANDS) {
			/* Forget a candidate that never worked. */
			for (i = 0; i < n->ncands; i++)
				if (!n->cands[i].good && !n->cands[i].busy)
					break;
			if (i == n->ncands)
				return -1;
		} else {
			i = n->ncands++;
		}
		memset(&n->cands[i], 0, sizeof n->cands[i]);
		snprintf(n->cands[i].addr, sizeof n->cands[i].addr, "%s", addr);
	}
	if (id) {
		memcpy(n->cands[i].id, id, PN_ID_BYTES);
		n->cands[i].id_known = true;
	}
	return i;
}

static void peers_file_path(struct node *n, char *out, size_t len)
{
	snprintf(out, len, "%s/%s", n->opts.data_dir, PEERS_FILE);
}

/* DATA/peers: one "ADDR NODEID" per line, good peers first; read at start. */
static void peers_load(struct node *n)
{
	char path[4200], line[256];
	peers_file_path(n, path, sizeof path);
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
		int i = cand_add(n, addr, id);
		if (i >= 0)
			n->cands[i].good = true;
		count++;
	}
	fclose(f);
	if (count)
		pn_log_info("%d known peers from %s", count, path);
}

static void peers_save(struct node *n)
{
	char path[4200], tmp[4300];
	peers_file_path(n, path, sizeof path);
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (!f)
		return;
	int count = 0;
	for (int i = 0; i < n->ncands && count < PEERS_FILE_MAX; i++) {
		struct cand *c = &n->cands[i];
		if (!c->good || !c->id_known)
			continue;
		char idhex[PN_NODE_ID_STR_LEN + 1];
		pn_node_id_format(c->id, idhex);
		fprintf(f, "%s %s\n", c->addr, idhex);
		count++;
	}
	if (fflush(f) == 0 && fsync(fileno(f)) == 0 && fclose(f) == 0)
		rename(tmp, path);
	else
		unlink(tmp);
	n->peers_dirty = false;
}

/* The address other nodes reach p at: where we dialled it, or its IP and HELLO port. */
static void peer_reach_addr(struct peer *p, char out[PN_ADDR_STR_MAX])
{
	if (p->outgoing || !p->listen_port) {
		snprintf(out, PN_ADDR_STR_MAX, "%s", p->addr);
		return;
	}
	char host[PN_ADDR_STR_MAX];
	snprintf(host, sizeof host, "%s", p->addr);
	char *colon = strrchr(host, ':');
	if (colon)
		*colon = 0;
	snprintf(out, PN_ADDR_STR_MAX, "%.48s:%u", host, p->listen_port);
}

/* ---- sending ---- */

static void send_peers(struct node *n, struct peer *to)
{
	uint8_t entries[PN_PEERS_MAX * (PN_ID_BYTES + 1 + PN_DIR_ADDR_MAX)];
	struct pn_writer w;
	pn_wr_init(&w, entries, sizeof entries);
	uint8_t count = 0;
	for (struct peer *p = n->peers; p && count < PN_PEERS_MAX; p = p->next) {
		if (!p->neighbor || p == to)
			continue;
		char addr[PN_ADDR_STR_MAX];
		peer_reach_addr(p, addr);
		if (strlen(addr) > PN_DIR_ADDR_MAX)
			continue;
		struct pn_dir_provider_entry e = {.node_id = p->id, .addr = addr, .addr_len = (uint8_t)strlen(addr)};
		pn_dir_provider_encode(&w, &e);
		count++;
	}
	/* Known good peers fill the list when we have few neighbours. */
	for (int i = 0; i < n->ncands && count < PN_PEERS_MAX; i++) {
		struct cand *c = &n->cands[i];
		if (!c->good || !c->id_known || c->busy || !memcmp(c->id, to->id, PN_ID_BYTES))
			continue;
		struct pn_dir_provider_entry e = {.node_id = c->id, .addr = c->addr, .addr_len = (uint8_t)strlen(c->addr)};
		pn_dir_provider_encode(&w, &e);
		count++;
	}
	struct pn_msg m = {.type = PN_MSG_PEERS};
	m.u.peers.count = count;
	m.u.peers.entries = entries;
	m.u.peers.entries_len = w.len;
	(void)node_send(n, to->conn, &m);
}

static void send_raw_hit(struct node *n, struct peer *p, const uint8_t qid[FLOOD_QID_BYTES], const uint8_t *payload,
			 size_t len)
{
	uint8_t *frame = n->out;
	size_t body = 1 + FLOOD_QID_BYTES + len;
	if (PN_FRAME_HDR + body > n->out_cap)
		return;
	pn_put_u32(frame, (uint32_t)body);
	frame[PN_FRAME_HDR] = PN_MSG_QUERY_HIT;
	memcpy(frame + PN_FRAME_HDR + 1, qid, FLOOD_QID_BYTES);
	memcpy(frame + PN_FRAME_HDR + 1 + FLOOD_QID_BYTES, payload, len);
	if (pn_conn_send(p->conn, frame, PN_FRAME_HDR + body) != PN_OK)
		pn_log_debug("%s: cannot forward a hit", p->addr);
}

/* ---- answering queries ---- */

static char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c; }
static bool word_byte(unsigned char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80; }

/* True if every word of query is a prefix of some word of name (ASCII case-insensitive). */
static bool name_matches(const char *name, const uint8_t *query, size_t qlen)
{
	size_t i = 0;
	bool any = false;
	while (i < qlen) {
		while (i < qlen && !word_byte(query[i]))
			i++;
		size_t start = i;
		while (i < qlen && word_byte(query[i]))
			i++;
		size_t wlen = i - start;
		if (!wlen)
			break;
		any = true;
		bool found = false;
		for (const char *p = name; *p && !found;) {
			while (*p && !word_byte((unsigned char)*p))
				p++;
			const char *ws = p;
			while (*p && word_byte((unsigned char)*p))
				p++;
			if ((size_t)(p - ws) >= wlen) {
				size_t k = 0;
				while (k < wlen && ascii_lower(ws[k]) == ascii_lower((char)query[start + k]))
					k++;
				found = k == wlen;
			}
		}
		if (!found)
			return false;
	}
	return any;
}

/* Our address as seen by the neighbour a query came from. */
static void our_addr(struct node *n, uint32_t nb, char out[PN_ADDR_STR_MAX])
{
	char ip[PN_ADDR_STR_MAX] = "127.0.0.1";
	struct peer *p = nb ? node_peer_by_key(n, nb) : NULL;
	if (n->opts.announce_host)
		snprintf(ip, sizeof ip, "%s", n->opts.announce_host);
	else if (p && p->conn)
		(void)pn_conn_local_ip(p->conn, ip);
	snprintf(out, PN_ADDR_STR_MAX, "%.48s:%u", ip, n->port);
}

static void answer_local(struct node *n, const struct flood_action *a)
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
		const struct store_object *o = r.err ? NULL : store_get(n->store, &cid);
		struct download *d = o || r.err ? NULL : node_download_find(n, &cid);
		const char *name = o ? o->name : d && d->have_meta && d->part && store_partial_have_count(d->part) ? d->name : NULL;
		if (name && *name) {
			struct pn_list_entry e = {.cid = cid, .name = name, .name_len = (uint16_t)strlen(name)};
			pn_list_entry_encode(&ew, &e);
			count = ew.err ? 0 : 1;
		}
	} else if (a->q.kind == FLOOD_KEYWORDS) {
		size_t total = store_count(n->store);
		for (size_t i = 0; i < total && count < PN_HIT_RESULTS_MAX; i++) {
			const struct store_object *o = store_at(n->store, i);
			if (!o->name[0] || !name_matches(o->name, a->q.data, a->q.len))
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
	our_addr(n, a->nb, addr);
	struct pn_writer w;
	pn_wr_init(&w, payload, sizeof payload);
	pn_wr_bytes(&w, n->id.node_id, PN_ID_BYTES);
	pn_wr_u8(&w, (uint8_t)strlen(addr));
	pn_wr_bytes(&w, addr, strlen(addr));
	pn_wr_u16(&w, count);
	pn_wr_bytes(&w, entries, ew.len);
	if (!w.err)
		flood_answer(n->flood, a->q.id, payload, w.len, node_now(n));
}

/* ---- our own queries ---- */

static struct fquery *fq_find(struct node *n, uint32_t handle)
{
	for (struct fquery *q = n->fqueries; q; q = q->next)
		if (q->handle == handle)
			return q;
	return NULL;
}

static void fq_free(struct node *n, struct fquery *q)
{
	struct fquery **pp = &n->fqueries;
	while (*pp && *pp != q)
		pp = &(*pp)->next;
	if (*pp)
		*pp = q->next;
	free(q->results);
	free(q);
}

static void deliver_hit(struct node *n, const struct flood_action *a)
{
	struct fquery *q = fq_find(n, a->handle);
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
	char addr[PN_DIR_ADDR_MAX + 1];
	memcpy(addr, m.u.query_hit.addr, m.u.query_hit.addr_len);
	addr[m.u.query_hit.addr_len] = 0;
	size_t off = 0;
	struct pn_list_entry e;
	while (pn_hit_next(&m.u.query_hit, &off, &e) == PN_OK) {
		if (q->is_get) {
			if (!memcmp(&e.cid, &q->cid, sizeof e.cid)) {
				node_connect_provider(n, m.u.query_hit.node_id, addr, &e.cid);
				node_download_providers(n, &e.cid, 1);
			}
			continue;
		}
		int i;
		for (i = 0; i < q->nresults; i++)
			if (!memcmp(&q->results[i].cid, &e.cid, sizeof e.cid))
				break;
		if (i == q->nresults) {
			if (q->nresults >= NODE_MAX_FLOOD_RESULTS)
				continue;
			struct fresult *r = &q->results[q->nresults++];
			memset(r, 0, sizeof *r);
			r->cid = e.cid;
			memcpy(r->name, e.name, e.name_len);
			r->name[e.name_len] = 0;
		}
		if (memcmp(q->results[i].last_node, m.u.query_hit.node_id, PN_ID_BYTES)) {
			q->results[i].providers++;
			memcpy(q->results[i].last_node, m.u.query_hit.node_id, PN_ID_BYTES);
		}
	}
}

static void query_done(struct node *n, const struct flood_action *a)
{
	struct fquery *q = fq_find(n, a->handle);
	if (!q)
		return;
	if (q->is_get) {
		struct download *d = node_download_find(n, &q->cid);
		if (d)
			d->finding = false; /* may ask again later if no provider connects */
		if (!q->hits)
			node_download_providers(n, &q->cid, 0);
	} else if (q->client) {
		/* Most providers first. */
		for (int i = 1; i < q->nresults; i++)
			for (int j = i; j > 0 && q->results[j].providers > q->results[j - 1].providers; j--) {
				struct fresult t = q->results[j];
				q->results[j] = q->results[j - 1];
				q->results[j - 1] = t;
			}
		for (int i = 0; i < q->nresults; i++) {
			char id[PN_CID_STR_LEN + 1];
			pn_cid_format(&q->results[i].cid, id);
			ctl_reply(q->client, "result\t%s\t%u\t%llu\t%s\n", id, q->results[i].providers,
				  (unsigned long long)q->results[i].cid.size, q->results[i].name);
		}
		ctl_finish(q->client, NULL);
	}
	fq_free(n, q);
}

static void drain(struct node *n)
{
	struct flood_action a;
	while (n->flood && flood_next_action(n->flood, &a)) {
		struct peer *p = a.type == FLOOD_SEND_QUERY || a.type == FLOOD_SEND_HIT || a.type == FLOOD_DROP_NEIGHBOR
					 ? node_peer_by_key(n, a.nb) : NULL;
		switch (a.type) {
		case FLOOD_SEND_QUERY:
			if (p && p->neighbor) {
				struct pn_msg m = {.type = PN_MSG_QUERY};
				memcpy(m.u.query.qid, a.q.id, PN_QID_BYTES);
				m.u.query.ttl = a.q.ttl;
				m.u.query.hops = a.q.hops;
				m.u.query.kind = a.q.kind;
				m.u.query.len = a.q.len;
				m.u.query.data = a.q.data;
				(void)node_send(n, p->conn, &m);
			}
			break;
		case FLOOD_SEND_HIT:
			if (p && p->neighbor)
				send_raw_hit(n, p, a.qid, a.payload, a.len);
			break;
		case FLOOD_LOCAL_QUERY:
			answer_local(n, &a);
			break;
		case FLOOD_DELIVER_HIT:
			deliver_hit(n, &a);
			break;
		case FLOOD_DROP_NEIGHBOR:
			if (p) {
				pn_log_warn("%s sends queries too fast: dropped", p->addr);
				pn_conn_close(p->conn, PN_ELIMIT);
			}
			break;
		case FLOOD_QUERY_DONE:
			query_done(n, &a);
			break;
		}
	}
}

static struct fquery *fq_start(struct node *n, uint8_t kind, const uint8_t *data, uint16_t len, uint32_t want)
{
	struct fquery *q = calloc(1, sizeof *q);
	if (!q)
		return NULL;
	uint8_t ttl = n->opts.ttl ? n->opts.ttl : FLOOD_DEFAULT_TTL;
	int h = flood_start(n->flood, kind, data, len, ttl, !n->opts.plain_flood, want, node_now(n));
	if (h <= 0) {
		free(q);
		return NULL;
	}
	q->handle = (uint32_t)h;
	q->next = n->fqueries;
	n->fqueries = q;
	return q;
}

int flood_find(struct node *n, const struct pn_cid *cid)
{
	if (!flood_ready(n))
		return PN_ECLOSED;
	uint8_t data[PN_CID_BYTES];
	struct pn_writer w;
	pn_wr_init(&w, data, sizeof data);
	pn_cid_write(&w, cid);
	/* A few providers are enough to swarm; a popular file stops the ring early. */
	struct fquery *q = fq_start(n, FLOOD_CID, data, PN_CID_BYTES, 3);
	if (!q)
		return PN_ELIMIT;
	q->is_get = true;
	q->cid = *cid;
	n->lookups++;
	drain(n);
	return PN_OK;
}

int flood_search(struct node *n, struct ctl_client *cc, const char *query)
{
	if (!flood_ready(n))
		return PN_ECLOSED;
	size_t len = strlen(query);
	if (!len || len > PN_QUERY_DATA_MAX)
		return PN_EINVAL;
	/* Three answering nodes are enough to stop widening, as for a get: beyond
	 * that the ring would cost more than a plain flood for every search. */
	struct fquery *q = fq_start(n, FLOOD_KEYWORDS, (const uint8_t *)query, (uint16_t)len, 3);
	if (!q)
		return PN_ELIMIT;
	q->results = calloc(NODE_MAX_FLOOD_RESULTS, sizeof *q->results);
	if (!q->results) {
		flood_cancel(n->flood, q->handle);
		fq_free(n, q);
		return PN_ENOMEM;
	}
	q->client = cc;
	n->lookups++;
	drain(n);
	return PN_OK;
}

void flood_ctl_gone(struct node *n, struct ctl_client *cc)
{
	for (struct fquery *q = n->fqueries, *next; q; q = next) {
		next = q->next;
		if (q->client == cc) {
			flood_cancel(n->flood, q->handle);
			fq_free(n, q);
		}
	}
}

/* ---- neighbours ---- */

static void make_neighbor(struct node *n, struct peer *p)
{
	if (flood_neighbor_add(n->flood, p->key, node_now(n)) != PN_OK)
		return;
	p->neighbor = true;
	char addr[PN_ADDR_STR_MAX];
	peer_reach_addr(p, addr);
	int i = cand_add(n, addr, p->id);
	if (i >= 0) {
		n->cands[i].good = true;
		n->cands[i].busy = true;
		n->cands[i].fails = 0;
		n->peers_dirty = true;
	}
	pn_log_info("neighbour %s (%u of %u-%u)", addr, neighbor_count(n), min_nb(n), max_nb(n));
	struct pn_msg m = {.type = PN_MSG_PEERS_REQ};
	(void)node_send(n, p->conn, &m);
}

bool flood_on_hello(struct node *n, struct peer *p, const struct pn_msg_hello *h)
{
	if (!n->flood || !(h->features & FEATURE_FLOOD))
		return true;
	if (p->outgoing) {
		if (p->want_neighbor)
			make_neighbor(n, p);
		return true;
	}
	/* They ask to be our neighbour. */
	if (neighbor_count(n) >= max_nb(n)) {
		send_peers(n, p); /* somewhere else to go */
		pn_conn_close(p->conn, 0);
		return false;
	}
	make_neighbor(n, p);
	return true;
}

void flood_peer_closed(struct node *n, struct peer *p)
{
	if (p->cand >= 0 && p->cand < n->ncands) {
		struct cand *c = &n->cands[p->cand];
		c->busy = false;
		if (!p->neighbor) {
			c->fails++;
			uint64_t backoff = BACKOFF_MIN_MS << (c->fails < 6 ? c->fails : 6);
			c->next_try_ms = node_now(n) + (backoff > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff);
		} else {
			c->next_try_ms = node_now(n) + BACKOFF_MIN_MS;
		}
	}
	if (p->neighbor) {
		if (n->flood) /* gone already while the node stops */
			flood_neighbor_remove(n->flood, p->key);
		char addr[PN_ADDR_STR_MAX];
		peer_reach_addr(p, addr);
		int i = cand_find(n, addr);
		if (i >= 0)
			n->cands[i].busy = false;
		pn_log_info("lost neighbour %s (%u left)", addr, neighbor_count(n) - 1);
		p->neighbor = false;
	}
}

int flood_on_msg(struct node *n, struct peer *p, const struct pn_msg *m, const uint8_t *body, size_t len)
{
	if (!n->flood)
		return PN_ENOTSUP;
	uint64_t now = node_now(n);
	switch (m->type) {
	case PN_MSG_PEERS_REQ:
		if (p->neighbor)
			send_peers(n, p);
		return PN_OK;
	case PN_MSG_PEERS: {
		size_t off = 0;
		struct pn_dir_provider_entry e;
		while (pn_peers_next(&m->u.peers, &off, &e) == PN_OK) {
			char addr[PN_DIR_ADDR_MAX + 1];
			memcpy(addr, e.addr, e.addr_len);
			addr[e.addr_len] = 0;
			(void)cand_add(n, addr, e.node_id);
		}
		return PN_OK;
	}
	case PN_MSG_QUERY: {
		if (!p->neighbor)
			return PN_OK; /* queries travel on neighbour links only */
		struct flood_query q;
		memcpy(q.id, m->u.query.qid, FLOOD_QID_BYTES);
		q.ttl = m->u.query.ttl;
		q.hops = m->u.query.hops;
		q.kind = m->u.query.kind;
		q.len = m->u.query.len;
		q.data = m->u.query.data;
		flood_on_query(n->flood, p->key, &q, now);
		drain(n);
		return PN_OK;
	}
	case PN_MSG_QUERY_HIT:
		if (!p->neighbor)
			return PN_OK;
		flood_on_hit(n->flood, p->key, m->u.query_hit.qid, body + 1 + PN_QID_BYTES, len - 1 - PN_QID_BYTES, now);
		drain(n);
		return PN_OK;
	default:
		return PN_ENOTSUP;
	}
}

static void dial(struct node *n, int ci)
{
	struct cand *c = &n->cands[ci];
	struct peer *p = node_peer_new(n, NULL, true, c->id_known ? c->id : NULL);
	if (!p)
		return;
	p->want_neighbor = true;
	p->cand = ci;
	snprintf(p->addr, sizeof p->addr, "%s", c->addr);
	struct pn_conn *conn;
	int r = pn_net_connect(n->net, c->addr, c->id_known ? c->id : NULL, &node_peer_cbs, p, &conn);
	c->busy = true;
	if (r != PN_OK) {
		/* Unlink and free the peer we just made; count the failure. */
		engine_peer_closed(n->engine, p->key, node_now(n));
		n->peers = p->next;
		free(p);
		c->busy = false;
		c->fails++;
		c->next_try_ms = node_now(n) + BACKOFF_MAX_MS;
		return;
	}
	p->conn = conn;
}

void flood_node_tick(struct node *n, uint64_t now)
{
	if (!n->flood || n->stopping)
		return;
	flood_tick(n->flood, now);
	drain(n);
	uint32_t have = neighbor_count(n), dialing = dialing_count(n);
	/* Keep at least the minimum, dialling a few at a time, best candidates first. */
	while (have + dialing < min_nb(n)) {
		int best = -1;
		for (int i = 0; i < n->ncands; i++) {
			struct cand *c = &n->cands[i];
			if (c->busy || c->next_try_ms > now)
				continue;
			if (c->id_known && node_peer_by_id(n, c->id))
				continue;
			if (best < 0 || (c->good && !n->cands[best].good) ||
			    (c->good == n->cands[best].good && c->fails < n->cands[best].fails))
				best = i;
		}
		if (best < 0)
			break;
		dial(n, best);
		dialing++;
	}
	if (!have && !dialing && now - n->flood_warned_ms > WARN_INTERVAL_MS) {
		n->flood_warned_ms = now;
		uint64_t soonest = UINT64_MAX;
		for (int i = 0; i < n->ncands; i++)
			if (n->cands[i].next_try_ms < soonest)
				soonest = n->cands[i].next_try_ms;
		if (n->ncands)
			pn_log_warn("no reachable peer (%d known, none answering); retrying in %llu s", n->ncands,
				    (unsigned long long)((soonest > now ? soonest - now : 0) + 999) / 1000);
		else
			pn_log_warn("no peer known: give --bootstrap ADDR:PORT");
	}
	if (have && now >= n->flood_next_peers_req_ms) {
		n->flood_next_peers_req_ms = now + PEERS_REQ_INTERVAL_MS + node_rand(n) % 5000;
		for (struct peer *p = n->peers; p; p = p->next)
			if (p->neighbor) {
				struct pn_msg m = {.type = PN_MSG_PEERS_REQ};
				(void)node_send(n, p->conn, &m);
				break;
			}
	}
	if (n->peers_dirty && now >= n->flood_next_save_ms) {
		n->flood_next_save_ms = now + SAVE_INTERVAL_MS;
		peers_save(n);
	}
}

/* When flood_node_tick next has something to do (UINT64_MAX: nothing). */
uint64_t flood_node_next_wakeup(struct node *n, uint64_t now)
{
	if (!n->flood || n->stopping)
		return UINT64_MAX;
	uint64_t next = flood_next_wakeup(n->flood);
	uint32_t have = neighbor_count(n), dialing = dialing_count(n);
	if (have + dialing < min_nb(n)) {
		for (int i = 0; i < n->ncands; i++) {
			struct cand *c = &n->cands[i];
			if (c->busy || (c->id_known && node_peer_by_id(n, c->id)))
				continue;
			if (c->next_try_ms < next)
				next = c->next_try_ms;
		}
	}
	if (!have && !dialing && n->flood_warned_ms + WARN_INTERVAL_MS < next)
		next = n->flood_warned_ms + WARN_INTERVAL_MS + 1;
	if (have && n->flood_next_peers_req_ms < next)
		next = n->flood_next_peers_req_ms;
	if (n->peers_dirty && n->flood_next_save_ms < next)
		next = n->flood_next_save_ms;
	return next;
}

int flood_setup(struct node *n)
{
	if (n->opts.discovery != PN_DISCOVERY_FLOOD)
		return PN_OK;
	struct flood_opts fo = {
		.max_ttl = FLOOD_MAX_TTL,
		.seed = n->rng ^ ((uint64_t)n->id.node_id[4] << 16),
	};
	n->flood = flood_new(&fo);
	if (!n->flood)
		return PN_ENOMEM;
	peers_load(n);
	for (int i = 0; i < n->opts.nbootstrap; i++)
		(void)cand_add(n, n->opts.bootstrap[i], NULL);
	return PN_OK;
}

void flood_teardown(struct node *n)
{
	if (!n->flood)
		return;
	if (n->peers_dirty)
		peers_save(n);
	while (n->fqueries) {
		struct fquery *q = n->fqueries;
		if (q->client)
			ctl_finish(q->client, "the node is stopping");
		fq_free(n, q);
	}
	flood_free(n->flood);
	n->flood = NULL;
}
