/* Finding data through the Kademlia DHT. See node_dht.h. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "node/node_dht.h"
#include "net/net.h"
#include "proto/prng.h"
#include "util/text.h"
#include "wire/wire.h"

#define RECV_BUF_BYTES 2048          /* > PN_DHT_DGRAM_MAX: a longer datagram is seen as too long */
#define SENT_FINDS 256               /* FIND_VALUE requests remembered, to check the records of their answers */
#define SENT_FIND_TTL_MS 30000
#define BAD_LOG_MS 10000             /* dropped datagrams are logged at most this often */
/* A sender address whose datagrams failed BAD_LIMIT times within BAD_WINDOW_MS
 * is not heard for BAD_BLOCK_MS: its datagrams are dropped before their
 * signature costs a verification. BAD_SLOTS addresses are tracked (a hash
 * table that forgets on collision). */
#define BAD_SLOTS 256
#define BAD_LIMIT 20
#define BAD_WINDOW_MS 10000
#define BAD_BLOCK_MS 60000
#define ANNOUNCE_SETTLE_MS 2000      /* after the table first fills: announce everything again then */
#define REANNOUNCE_MIN_MS 10000      /* ... and again when it has doubled, at most this often */
/* A join looks up this node's own ID, which finds its neighbourhood only: a
 * table that stays below FILL_BELOW contacts is filled by node look-ups of
 * IDs in the FILL_TARGETS farthest buckets (as a bucket refresh would, but
 * now rather than in an hour), FILL_ROUNDS times at most, FILL_MS apart. */
#define FILL_BELOW (DHT_K / 2)
#define FILL_TARGETS 4
#define FILL_ROUNDS 3
#define FILL_MS 4000

/* One content this node announces. */
struct offer {
	struct pn_cid cid;
	char name[PN_NAME_MAX + 1];
};

/* One result of a search: a content and how many publishers named it. */
struct sresult {
	struct pn_cid cid;
	char name[PN_NAME_MAX + 1];
	uint32_t providers;
};

/* A look-up this node started (a find or a search). */
struct dlookup {
	uint32_t handle;             /* the core's; 0: slot free */
	bool is_search;
	bool canceled;               /* a cancelled search: its records are ignored, its end unreported */
	struct pn_cid cid;           /* find: what for */
	void *token;                 /* search: the owner's token */
	char query[PN_DIR_QUERY_MAX + 1];
	uint32_t found;              /* find: providers reported */
	struct sresult *results;     /* search */
	size_t nresults;
};

/* A sender whose datagrams fail. */
struct bad_sender {
	struct pn_dht_addr addr;
	uint32_t count;
	uint64_t since_ms, blocked_until_ms;
};

/* A FIND_VALUE sent: the key its answer's records must be signed under. */
struct sent_find {
	uint32_t txid;
	uint8_t kind;
	uint8_t key[PN_DHT_KEY_BYTES];
	uint64_t sent_ms;
};

/* The look-up of one bootstrap node's host name, on libuv's thread pool. */
struct boot_lookup {
	uv_getaddrinfo_t req;        /* first: bootstrap_resolved_cb is handed &req. data: the dht_node */
	size_t index;                /* in bootstrap */
	uint16_t port;
};

struct dht_node {
	struct dht_node_opts o;
	char **bootstrap;            /* owned copies of o.bootstrap */
	struct boot_lookup **boot_lookups; /* per bootstrap name: its look-up under way, or NULL */
	size_t nboot_lookups;        /* those under way: the close waits for them */
	char *data_dir;
	struct dht *core;
	uv_udp_t udp;
	bool udp_open, v6sock, stopped;
	bool closing, close_reported; /* dht_node_close ran / closed_cb ran */
	void (*closed_cb)(void *ud);
	void *closed_ud;
	struct pn_prng rng;
	struct dlookup lookups[DHT_MAX_LOOKUPS];
	struct sent_find sent[SENT_FINDS];
	size_t sent_next;
	struct offer *offers;
	size_t noffers, offers_cap;
	uint64_t next_reboot_ms, next_save_ms, announce_at_ms, last_announce_ms;
	size_t announced_table;      /* table size at the last announce of everything */
	uint64_t fill_at_ms;         /* the next table fill (0: none planned) */
	unsigned fills;              /* fills done */
	bool table_dirty;
	uint64_t bad_logged_ms, bad_unlogged;
	char bad_last[160];
	uint64_t lookups_started, lookups_done, lookup_msgs;
	uint32_t cost_rounds[DHT_NODE_COST_WINDOW], cost_msgs[DHT_NODE_COST_WINDOW];
	size_t ncosts;
	uint64_t datagrams_in, datagrams_out, bad_datagrams, bad_records, send_failures;
	struct bad_sender bad[BAD_SLOTS];
	uint8_t rbuf[RECV_BUF_BYTES];
	uint8_t sbuf[PN_DHT_DGRAM_MAX];
};

/* ---- keys (src/crypto, dht_sign.c) ---- */

static bool key_of_cid(const uint8_t cid[PN_CID_BYTES], uint8_t key[PN_DHT_KEY_BYTES])
{
	return pn_dht_key_of_cid(cid, key) == PN_OK;
}

static bool key_of_word(const char *name, const struct pn_dht_word *w, uint8_t key[PN_DHT_KEY_BYTES])
{
	return pn_dht_key_of_word(name + w->off, w->len, key) == PN_OK;
}

/* ---- small helpers ---- */

static void cid_bytes(const struct pn_cid *cid, uint8_t out[PN_CID_BYTES])
{
	struct pn_writer w;
	pn_wr_init(&w, out, PN_CID_BYTES);
	pn_cid_write(&w, cid);
}

static bool cid_of_bytes(const uint8_t in[PN_CID_BYTES], struct pn_cid *cid)
{
	struct pn_reader r;
	pn_rd_init(&r, in, PN_CID_BYTES);
	pn_cid_read(&r, cid);
	return !r.err;
}

static bool addr_of_sockaddr(const struct sockaddr *sa, struct pn_dht_addr *out)
{
	memset(out, 0, sizeof *out);
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *v4 = (const struct sockaddr_in *)sa;
		out->family = 4;
		memcpy(out->ip, &v4->sin_addr, 4);
		out->port = ntohs(v4->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)sa;
		if (IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr)) {
			out->family = 4;
			memcpy(out->ip, v6->sin6_addr.s6_addr + 12, 4);
		} else {
			out->family = 6;
			memcpy(out->ip, &v6->sin6_addr, 16);
		}
		out->port = ntohs(v6->sin6_port);
	} else {
		return false;
	}
	return out->port != 0;
}

/* The socket address to send a to, in the socket's family (an IPv4 address
 * is mapped on an IPv6 socket); false if the socket cannot reach it. */
static bool sockaddr_of_addr(const struct pn_dht_addr *a, bool v6sock, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof *ss);
	if (a->family == 4 && !v6sock) {
		struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
		v4->sin_family = AF_INET;
		memcpy(&v4->sin_addr, a->ip, 4);
		v4->sin_port = htons(a->port);
		return true;
	}
	if (!v6sock || (a->family != 4 && a->family != 6))
		return false;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
	v6->sin6_family = AF_INET6;
	if (a->family == 4) {
		v6->sin6_addr.s6_addr[10] = 0xff;
		v6->sin6_addr.s6_addr[11] = 0xff;
		memcpy(v6->sin6_addr.s6_addr + 12, a->ip, 4);
	} else {
		memcpy(&v6->sin6_addr, a->ip, 16);
	}
	v6->sin6_port = htons(a->port);
	return true;
}

static void addr_text(const struct pn_dht_addr *a, char out[PN_ADDR_STR_MAX])
{
	struct sockaddr_storage ss;
	if (sockaddr_of_addr(a, a->family == 6, &ss))
		pn_addr_format((const struct sockaddr *)&ss, out);
	else
		snprintf(out, PN_ADDR_STR_MAX, "?");
}

static struct bad_sender *bad_slot(struct dht_node *dn, const struct pn_dht_addr *a)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < sizeof a->ip; i++)
		h = (h ^ a->ip[i]) * 1099511628211ull;
	h = (h ^ a->port ^ a->family) * 1099511628211ull;
	return &dn->bad[h % BAD_SLOTS];
}

static bool addr_same(const struct pn_dht_addr *a, const struct pn_dht_addr *b)
{
	return a->family == b->family && a->port == b->port && !memcmp(a->ip, b->ip, sizeof a->ip);
}

/* Whether datagrams from a are dropped unread for now. */
static bool sender_blocked(struct dht_node *dn, const struct pn_dht_addr *a, uint64_t now)
{
	const struct bad_sender *b = bad_slot(dn, a);
	return addr_same(&b->addr, a) && now < b->blocked_until_ms;
}

/* Counts a dropped datagram and logs, at most every BAD_LOG_MS, how many. */
static void bad_datagram(struct dht_node *dn, const struct pn_dht_addr *from, const char *why)
{
	uint64_t now = uv_now(dn->o.loop);
	char at[PN_ADDR_STR_MAX];
	struct bad_sender *b = bad_slot(dn, from);
	if (!addr_same(&b->addr, from) || now - b->since_ms >= BAD_WINDOW_MS) {
		if (!addr_same(&b->addr, from) || now >= b->blocked_until_ms) {
			memset(b, 0, sizeof *b);
			b->addr = *from;
		}
		b->since_ms = now;
		b->count = 0;
	}
	if (++b->count >= BAD_LIMIT && now >= b->blocked_until_ms)
		b->blocked_until_ms = now + BAD_BLOCK_MS;
	dn->bad_datagrams++;
	dn->bad_unlogged++;
	addr_text(from, at);
	snprintf(dn->bad_last, sizeof dn->bad_last, "%s from %s", why, at);
	if (dn->bad_logged_ms && now - dn->bad_logged_ms < BAD_LOG_MS)
		return;
	PN_LOGI(dn->o.log, "dht: dropped %llu datagram%s that did not verify (last: %s)",
		(unsigned long long)dn->bad_unlogged, dn->bad_unlogged == 1 ? "" : "s", dn->bad_last);
	dn->bad_logged_ms = now;
	dn->bad_unlogged = 0;
}

/* ---- the routing table file ---- */

static bool table_path(const struct dht_node *dn, char *out, size_t len)
{
	return dn->data_dir && snprintf(out, len, "%s/%s", dn->data_dir, DHT_NODE_TABLE_FILE) < (int)len;
}

/* Writes DATA/dht-table atomically: a temporary file, fsync, rename. */
static void table_save(struct dht_node *dn)
{
	char path[4200], tmp[4300];
	dn->table_dirty = false;
	if (!dn->core || !table_path(dn, path, sizeof path))
		return;
	struct pn_dht_contact *cs = calloc(DHT_NODE_TABLE_MAX, sizeof *cs);
	if (!cs)
		return;
	size_t n = dht_contacts(dn->core, cs, DHT_NODE_TABLE_MAX);
	if (n == 0) { /* keep what an earlier run saved: it is all there is to rejoin with */
		free(cs);
		return;
	}
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (!f) {
		if (fd >= 0)
			close(fd);
		free(cs);
		PN_LOGW(dn->o.log, "dht: cannot write %s: %s", tmp, strerror(errno));
		return;
	}
	for (size_t i = 0; i < n; i++) {
		char idhex[PN_NODE_ID_STR_LEN + 1], at[PN_ADDR_STR_MAX];
		pn_node_id_format(cs[i].id, idhex);
		addr_text(&cs[i].addr, at);
		fprintf(f, "%s %s\n", idhex, at);
	}
	free(cs);
	if (fflush(f) == 0 && fsync(fileno(f)) == 0 && fclose(f) == 0) {
		if (rename(tmp, path) != 0)
			unlink(tmp);
	} else {
		PN_LOGW(dn->o.log, "dht: cannot write %s: %s", tmp, strerror(errno));
		unlink(tmp);
	}
}

/* Reads DATA/dht-table: each contact is pinged before the core trusts it. */
static void table_load(struct dht_node *dn, uint64_t now)
{
	char path[4200], line[256];
	if (!table_path(dn, path, sizeof path))
		return;
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	int count = 0;
	for (int lines = 0; count < DHT_NODE_TABLE_MAX && lines < 4 * DHT_NODE_TABLE_MAX && fgets(line, sizeof line, f);
	     lines++) {
		char idhex[PN_NODE_ID_STR_LEN + 2], at[PN_ADDR_STR_MAX];
		struct pn_dht_contact c;
		struct sockaddr_storage ss;
		if (sscanf(line, "%65s %63s", idhex, at) != 2 || pn_node_id_parse(idhex, c.id) != PN_OK ||
		    !pn_addr_text_valid(at, strlen(at), false) || (at[0] != '[' && !(at[0] >= '0' && at[0] <= '9')) ||
		    pn_addr_parse_numeric(at, &ss, false) != PN_OK || !addr_of_sockaddr((struct sockaddr *)&ss, &c.addr) ||
		    !memcmp(c.id, dn->o.id->node_id, PN_ID_BYTES))
			continue;
		dht_add_contact(dn->core, &c, now);
		count++;
	}
	fclose(f);
	if (count)
		PN_LOGI(dn->o.log, "dht: %d known nodes from %s", count, path);
}

/* ---- sending ---- */

static void remember_find(struct dht_node *dn, const struct pn_dht_msg *m, uint64_t now)
{
	struct sent_find *s = &dn->sent[dn->sent_next];
	dn->sent_next = (dn->sent_next + 1) % SENT_FINDS;
	s->txid = m->txid;
	s->kind = m->u.find_value.kind;
	memcpy(s->key, m->u.find_value.key, PN_DHT_KEY_BYTES);
	s->sent_ms = now ? now : 1;
}

static const struct sent_find *find_sent(const struct dht_node *dn, uint32_t txid, uint64_t now)
{
	for (size_t i = 0; i < SENT_FINDS; i++) {
		const struct sent_find *s = &dn->sent[i];
		if (s->sent_ms && s->txid == txid && now - s->sent_ms < SENT_FIND_TTL_MS)
			return s;
	}
	return NULL;
}

/* Encodes, signs and sends one message. */
static void send_msg(struct dht_node *dn, const struct pn_dht_addr *to, struct pn_dht_msg *m, uint64_t now)
{
	struct sockaddr_storage ss;
	size_t len = 0;
	if (!dn->udp_open || dn->stopped)
		return;
	if (!sockaddr_of_addr(to, dn->v6sock, &ss) || pn_dht_encode(m, dn->sbuf, &len) != PN_OK ||
	    pn_dht_sign_dgram(dn->o.id, dn->sbuf, len) != PN_OK) {
		dn->send_failures++;
		return;
	}
	if (m->type == PN_DHT_FIND_VALUE)
		remember_find(dn, m, now);
	uv_buf_t b = uv_buf_init((char *)dn->sbuf, (unsigned)len);
	if (uv_udp_try_send(&dn->udp, &b, 1, (const struct sockaddr *)&ss) < 0)
		dn->send_failures++;
	else
		dn->datagrams_out++;
}

/* ---- look-ups ---- */

static struct dlookup *lookup_by_handle(struct dht_node *dn, uint32_t handle)
{
	for (size_t i = 0; handle && i < DHT_MAX_LOOKUPS; i++)
		if (dn->lookups[i].handle == handle)
			return &dn->lookups[i];
	return NULL;
}

static struct dlookup *lookup_free_slot(struct dht_node *dn)
{
	for (size_t i = 0; i < DHT_MAX_LOOKUPS; i++)
		if (!dn->lookups[i].handle)
			return &dn->lookups[i];
	return NULL;
}

static void lookup_release(struct dlookup *l)
{
	free(l->results);
	memset(l, 0, sizeof *l);
}

static void cost_add(struct dht_node *dn, const struct dht_lookup_stats *st)
{
	size_t i = dn->ncosts++ % DHT_NODE_COST_WINDOW;
	dn->cost_rounds[i] = st->rounds;
	dn->cost_msgs[i] = st->requests;
	dn->lookups_done++;
	dn->lookup_msgs += st->requests;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static uint32_t median(const uint32_t *v, size_t n)
{
	uint32_t tmp[DHT_NODE_COST_WINDOW];
	if (!n)
		return 0;
	memcpy(tmp, v, n * sizeof *v);
	qsort(tmp, n, sizeof *tmp, cmp_u32);
	return tmp[n / 2];
}

static int cmp_results(const void *a, const void *b)
{
	const struct sresult *x = a, *y = b;
	return x->providers > y->providers ? -1 : x->providers < y->providers;
}

/* A record of a look-up of ours. */
static void on_record(struct dht_node *dn, const struct dht_action *a)
{
	struct dlookup *l = lookup_by_handle(dn, a->handle);
	const struct pn_dht_record *rec = &a->rec;
	struct pn_cid cid;
	if (!l || l->canceled || !cid_of_bytes(rec->cid, &cid))
		return;
	if (!l->is_search) {
		struct discovery_provider p;
		if (rec->kind != PN_DHT_REC_PROVIDER || memcmp(&cid, &l->cid, sizeof cid) ||
		    pn_sha256(rec->publisher, PN_DHT_PUB_BYTES, p.id) != PN_OK ||
		    !memcmp(p.id, dn->o.id->node_id, PN_ID_BYTES))
			return;
		char at[PN_ADDR_STR_MAX];
		addr_text(&rec->addr, at);
		snprintf(p.addr, sizeof p.addr, "%s", at);
		l->found++;
		if (dn->o.events.providers_cb)
			dn->o.events.providers_cb(dn->o.events.ud, &cid, &p, 1, l->found);
		return;
	}
	if (rec->kind != PN_DHT_REC_KEYWORD || !rec->name_len ||
	    !pn_keywords_match(rec->name, rec->name_len, l->query, strlen(l->query)))
		return;
	for (size_t i = 0; i < l->nresults; i++) {
		if (!memcmp(&l->results[i].cid, &cid, sizeof cid)) {
			l->results[i].providers++; /* the core hands each (publisher, content) once */
			return;
		}
	}
	if (l->nresults >= DHT_NODE_MAX_RESULTS)
		return;
	struct sresult *r = &l->results[l->nresults++];
	r->cid = cid;
	memcpy(r->name, rec->name, rec->name_len);
	r->name[rec->name_len] = '\0';
	r->providers = 1;
}

static void on_lookup_done(struct dht_node *dn, const struct dht_action *a)
{
	struct dlookup *l = lookup_by_handle(dn, a->handle);
	if (!l)
		return;
	cost_add(dn, &a->stats);
	struct dlookup done = *l;
	memset(l, 0, sizeof *l); /* the slot is free before the owner hears of it */
	const struct discovery_events *ev = &dn->o.events;
	if (!done.is_search) {
		if (ev->lookup_done_cb)
			ev->lookup_done_cb(ev->ud, &done.cid, done.found ? PN_OK : a->err, done.found);
	} else if (!done.canceled) {
		qsort(done.results, done.nresults, sizeof *done.results, cmp_results);
		for (size_t i = 0; i < done.nresults && ev->search_result_cb; i++)
			ev->search_result_cb(ev->ud, done.token, &done.results[i].cid, done.results[i].providers,
					     done.results[i].name, strlen(done.results[i].name));
		if (ev->search_done_cb)
			ev->search_done_cb(ev->ud, done.token,
					   a->err && !done.nresults ? "no DHT node answered; the node keeps trying" : NULL);
	}
	free(done.results);
}

/* Runs every action the core has pending. Call after every call into it. */
static void pump(struct dht_node *dn, uint64_t now)
{
	struct dht_action a;
	while (dht_next_action(dn->core, &a)) {
		switch (a.type) {
		case DHT_ACT_SEND:
			send_msg(dn, &a.to, &a.msg, now);
			break;
		case DHT_ACT_RECORD:
			on_record(dn, &a);
			break;
		case DHT_ACT_LOOKUP_DONE:
			on_lookup_done(dn, &a);
			break;
		case DHT_ACT_CONTACT:
			dn->table_dirty = true;
			break;
		}
	}
	if (dn->o.events.wake_cb)
		dn->o.events.wake_cb(dn->o.events.ud);
}

/* ---- announcing ---- */

/* Signs rec under key and hands it to the core. */
static int announce_record(struct dht_node *dn, const uint8_t key[PN_DHT_KEY_BYTES], struct pn_dht_record *rec,
			   uint64_t now)
{
	int r = pn_dht_record_sign(dn->o.id, key, rec);
	return r != PN_OK ? r : dht_announce(dn->core, key, rec, now);
}

/* Announces one content: its PROVIDER record and a KEYWORD record per word. */
static int announce_offer(struct dht_node *dn, const struct offer *of, uint64_t now)
{
	struct pn_dht_record rec = {.kind = PN_DHT_REC_PROVIDER};
	uint8_t key[PN_DHT_KEY_BYTES];
	cid_bytes(&of->cid, rec.cid);
	if (!key_of_cid(rec.cid, key))
		return PN_ENOMEM;
	int r = announce_record(dn, key, &rec, now);
	size_t nlen = strlen(of->name);
	if (r != PN_OK || !nlen || !pn_name_valid(of->name, nlen))
		return r;
	struct pn_dht_word words[DHT_NODE_WORDS_MAX];
	size_t nw = pn_dht_name_words(of->name, nlen, words, DHT_NODE_WORDS_MAX);
	rec.kind = PN_DHT_REC_KEYWORD;
	rec.name = of->name;
	rec.name_len = (uint8_t)(nlen > PN_DHT_NAME_MAX ? PN_DHT_NAME_MAX : nlen);
	if (nlen > PN_DHT_NAME_MAX)
		return PN_OK; /* PN_NAME_MAX is the wire's limit too; kept for safety */
	for (size_t i = 0; i < nw && r == PN_OK; i++) {
		if (!key_of_word(of->name, &words[i], key))
			return PN_ENOMEM;
		r = announce_record(dn, key, &rec, now);
	}
	return r;
}

static void unannounce_offer(struct dht_node *dn, const struct offer *of)
{
	uint8_t raw[PN_CID_BYTES], key[PN_DHT_KEY_BYTES];
	cid_bytes(&of->cid, raw);
	if (key_of_cid(raw, key))
		dht_unannounce(dn->core, key, PN_DHT_REC_PROVIDER, raw);
	struct pn_dht_word words[DHT_NODE_WORDS_MAX];
	size_t nw = pn_dht_name_words(of->name, strlen(of->name), words, DHT_NODE_WORDS_MAX);
	for (size_t i = 0; i < nw; i++)
		if (key_of_word(of->name, &words[i], key))
			dht_unannounce(dn->core, key, PN_DHT_REC_KEYWORD, raw);
}

static void announce_all(struct dht_node *dn, uint64_t now)
{
	int failed = PN_OK;
	for (size_t i = 0; i < dn->noffers; i++) {
		int r = announce_offer(dn, &dn->offers[i], now);
		if (r != PN_OK)
			failed = r;
	}
	if (failed != PN_OK)
		PN_LOGW(dn->o.log, "dht: some contents could not be announced: %s", pn_strerror(failed));
	dn->last_announce_ms = now;
	dn->announced_table = dht_table_size(dn->core);
	pump(dn, now);
}

int dht_node_offer(struct dht_node *dn, const struct pn_cid *cid, const char *name, uint64_t now)
{
	if (dn->stopped)
		return PN_ECLOSED;
	struct offer *of = NULL;
	for (size_t i = 0; i < dn->noffers && !of; i++)
		if (!memcmp(&dn->offers[i].cid, cid, sizeof *cid))
			of = &dn->offers[i];
	if (of && !strcmp(of->name, name ? name : ""))
		return PN_OK; /* announced already; the core republishes it */
	if (of) {
		unannounce_offer(dn, of);
	} else {
		if (dn->noffers >= DHT_NODE_OFFERS_MAX)
			return PN_ELIMIT;
		if (dn->noffers == dn->offers_cap) {
			size_t cap = dn->offers_cap ? dn->offers_cap * 2 : 16;
			struct offer *grown = realloc(dn->offers, cap * sizeof *grown);
			if (!grown)
				return PN_ENOMEM;
			dn->offers = grown;
			dn->offers_cap = cap;
		}
		of = &dn->offers[dn->noffers++];
		of->cid = *cid;
	}
	snprintf(of->name, sizeof of->name, "%s", name ? name : "");
	int r = announce_offer(dn, of, now);
	pump(dn, now);
	return r;
}

void dht_node_withdraw(struct dht_node *dn, const struct pn_cid *cid)
{
	for (size_t i = 0; i < dn->noffers; i++) {
		if (memcmp(&dn->offers[i].cid, cid, sizeof *cid))
			continue;
		unannounce_offer(dn, &dn->offers[i]);
		dn->offers[i] = dn->offers[--dn->noffers];
		return;
	}
}

/* ---- receiving ---- */

/* Whether rec may sit under key: its kind, its signature, and its key. */
static bool record_ok(const struct pn_dht_record *rec, const uint8_t key[PN_DHT_KEY_BYTES], uint8_t kind)
{
	return rec->kind == kind && pn_dht_record_verify(rec, key) == PN_OK &&
	       pn_dht_record_key_check(rec, key) == PN_OK;
}

static void on_datagram(struct dht_node *dn, const uint8_t *buf, size_t len, const struct pn_dht_addr *from)
{
	uint64_t now = uv_now(dn->o.loop);
	struct pn_dht_msg m;
	uint8_t from_id[PN_ID_BYTES];
	dn->datagrams_in++;
	if (pn_dht_decode(buf, len, &m) != PN_OK) {
		bad_datagram(dn, from, "malformed");
		return;
	}
	int r = pn_dht_verify_dgram(buf, len, &m, from_id);
	if (r == PN_ENOMEM)
		return;
	if (r != PN_OK) {
		bad_datagram(dn, from, "bad signature");
		return;
	}
	if (!memcmp(from_id, dn->o.id->node_id, PN_ID_BYTES)) {
		bad_datagram(dn, from, "our own key");
		return;
	}
	if (m.type == PN_DHT_STORE &&
	    !record_ok(&m.u.store.record, m.u.store.key, m.u.store.record.kind == PN_DHT_REC_KEYWORD
								 ? PN_DHT_REC_KEYWORD : PN_DHT_REC_PROVIDER)) {
		bad_datagram(dn, from, "a record that does not verify");
		return;
	}
	if (m.type == PN_DHT_VALUES && m.u.nodes.n_records) {
		/* Records are signed under the key that was asked for: keep those
		 * that verify under it, drop the rest (the contacts still count). */
		const struct sent_find *s = find_sent(dn, m.txid, now);
		uint8_t kept = 0;
		for (uint8_t i = 0; i < m.u.nodes.n_records; i++) {
			if (s && record_ok(&m.u.nodes.records[i], s->key, s->kind))
				m.u.nodes.records[kept++] = m.u.nodes.records[i];
			else
				dn->bad_records++;
		}
		m.u.nodes.n_records = kept;
	}
	dht_on_message(dn->core, from, from_id, &m, now);
	pump(dn, now);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct dht_node *dn = h->data;
	*buf = uv_buf_init((char *)dn->rbuf, sizeof dn->rbuf);
}

static void recv_cb(uv_udp_t *u, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *sa, unsigned flags)
{
	struct dht_node *dn = u->data;
	struct pn_dht_addr from;
	if (nread <= 0 || !sa || dn->stopped || !addr_of_sockaddr(sa, &from))
		return;
	if (sender_blocked(dn, &from, uv_now(dn->o.loop))) {
		dn->datagrams_in++;
		dn->bad_datagrams++;
		return;
	}
	if ((flags & UV_UDP_PARTIAL) || (size_t)nread > PN_DHT_DGRAM_MAX) {
		dn->datagrams_in++;
		bad_datagram(dn, &from, "too long");
		return;
	}
	on_datagram(dn, (const uint8_t *)buf->base, (size_t)nread, &from);
}

/* ---- set-up and tear-down ---- */

static void maybe_closed(struct dht_node *dn);

/* A bootstrap node's host name looked up (or the look-up cancelled by
 * dht_node_stop): it is pinged, unless the node stopped meanwhile. */
static void bootstrap_resolved_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct boot_lookup *bl = (struct boot_lookup *)req;
	struct dht_node *dn = req->data;
	struct pn_dht_addr a;
	bool found = false;
	if (status == 0 && res) {
		/* The port is not looked up: the one given is put in before the check. */
		struct sockaddr_storage ss;
		if (res->ai_addrlen <= sizeof ss) {
			memset(&ss, 0, sizeof ss);
			memcpy(&ss, res->ai_addr, res->ai_addrlen);
			if (ss.ss_family == AF_INET)
				((struct sockaddr_in *)&ss)->sin_port = htons(bl->port);
			else if (ss.ss_family == AF_INET6)
				((struct sockaddr_in6 *)&ss)->sin6_port = htons(bl->port);
			found = addr_of_sockaddr((struct sockaddr *)&ss, &a);
		}
	}
	uv_freeaddrinfo(res);
	dn->boot_lookups[bl->index] = NULL;
	dn->nboot_lookups--;
	if (dn->stopped) {
		free(bl);
		maybe_closed(dn);
		return;
	}
	if (!found) {
		PN_LOGI(dn->o.log, "dht: cannot resolve the bootstrap node %s", dn->bootstrap[bl->index]);
	} else {
		uint64_t now = uv_now(dn->o.loop);
		dht_bootstrap(dn->core, &a, now);
		pump(dn, now);
	}
	free(bl);
}

/* Starts the look-up of bootstrap node i's host name, unless one is under way. */
static void bootstrap_resolve(struct dht_node *dn, size_t i, const char *host, uint16_t port)
{
	if (dn->boot_lookups[i])
		return;
	struct boot_lookup *bl = calloc(1, sizeof *bl);
	if (!bl) {
		PN_LOGI(dn->o.log, "dht: cannot resolve the bootstrap node %s", dn->bootstrap[i]);
		return;
	}
	bl->index = i;
	bl->port = port;
	bl->req.data = dn;
	/* An IPv4 socket reaches IPv4 addresses only. */
	struct addrinfo hints = {.ai_family = dn->v6sock ? AF_UNSPEC : AF_INET, .ai_socktype = SOCK_DGRAM};
	if (uv_getaddrinfo(dn->o.loop, &bl->req, bootstrap_resolved_cb, host, NULL, &hints) != 0) {
		free(bl);
		PN_LOGI(dn->o.log, "dht: cannot resolve the bootstrap node %s", dn->bootstrap[i]);
		return;
	}
	dn->boot_lookups[i] = bl;
	dn->nboot_lookups++;
}

/* Pings every bootstrap node: an IP address now, a host name once
 * uv_getaddrinfo has looked it up (the loop does not wait for DNS). */
static void bootstrap(struct dht_node *dn, uint64_t now)
{
	for (size_t i = 0; i < dn->o.nbootstrap; i++) {
		struct sockaddr_storage ss;
		struct pn_dht_addr a;
		char host[PN_ADDR_HOST_MAX];
		uint16_t port;
		int r = pn_addr_split(dn->bootstrap[i], false, host, &port, &ss);
		if (r == PN_EAGAIN) {
			bootstrap_resolve(dn, i, host, port);
			continue;
		}
		if (r != PN_OK || !addr_of_sockaddr((struct sockaddr *)&ss, &a)) {
			PN_LOGI(dn->o.log, "dht: cannot resolve the bootstrap node %s", dn->bootstrap[i]);
			continue;
		}
		dht_bootstrap(dn->core, &a, now);
	}
	dn->next_reboot_ms = now + DHT_REBOOT_MS + pn_prng_below(&dn->rng, DHT_REBOOT_MS / 5);
}

/* A socket bound to the listener's address and port, dual-stack on "::".
 * Returns the descriptor, or a negative PN_E* code with why. */
static int udp_socket(const struct dht_node_opts *o, bool *v6, char *why, size_t whylen)
{
	struct sockaddr_storage ss;
	if (pn_addr_parse(o->listen, &ss, true) != PN_OK) {
		snprintf(why, whylen, "the DHT cannot bind %s: not an address", o->listen);
		return PN_EINVAL;
	}
	*v6 = ss.ss_family == AF_INET6;
	if (*v6)
		((struct sockaddr_in6 *)&ss)->sin6_port = htons(o->port);
	else
		((struct sockaddr_in *)&ss)->sin_port = htons(o->port);
	int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		snprintf(why, whylen, "cannot open the DHT's UDP socket: %s", strerror(errno));
		return PN_EIO;
	}
	int off = 0;
	if (*v6)
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
	if (o->bind_interface &&
	    setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, o->bind_interface, (socklen_t)strlen(o->bind_interface)) != 0) {
		int e = errno;
		close(fd);
		snprintf(why, whylen, "cannot bind the DHT's UDP socket to the interface %s: %s", o->bind_interface,
			 strerror(e));
		return e == EPERM ? PN_EACCES : PN_EIO;
	}
	if (bind(fd, (struct sockaddr *)&ss, *v6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in)) != 0) {
		int e = errno;
		close(fd);
		snprintf(why, whylen, "cannot bind the DHT's UDP port %u on %s: %s", o->port, o->listen,
			 e == EADDRINUSE ? "address already in use" : strerror(e));
		return e == EADDRINUSE ? PN_EEXIST : PN_EIO;
	}
	return fd;
}

static void free_strings(struct dht_node *dn)
{
	for (size_t i = 0; dn->bootstrap && i < dn->o.nbootstrap; i++)
		free(dn->bootstrap[i]);
	free(dn->bootstrap);
	free(dn->boot_lookups);
	free(dn->data_dir);
}

int dht_node_new(const struct dht_node_opts *opts, uint64_t now, struct dht_node **out, char *why, size_t whylen)
{
	*out = NULL;
	struct dht_node *dn = calloc(1, sizeof *dn);
	if (!dn) {
		snprintf(why, whylen, "out of memory");
		return PN_ENOMEM;
	}
	dn->o = *opts;
	bool oom = (opts->data_dir && !(dn->data_dir = strdup(opts->data_dir))) ||
		   (opts->nbootstrap && !(dn->bootstrap = calloc(opts->nbootstrap, sizeof *dn->bootstrap))) ||
		   (opts->nbootstrap && !(dn->boot_lookups = calloc(opts->nbootstrap, sizeof *dn->boot_lookups)));
	for (size_t i = 0; !oom && i < opts->nbootstrap; i++)
		oom = !(dn->bootstrap[i] = strdup(opts->bootstrap[i]));
	dn->o.data_dir = dn->data_dir;
	dn->o.bootstrap = (const char *const *)dn->bootstrap;
	dn->o.listen = NULL;
	dn->o.bind_interface = NULL;
	pn_prng_seed(&dn->rng, opts->seed);
	struct dht_opts co = {.seed = pn_prng_next(&dn->rng)};
	memcpy(co.id, opts->id->node_id, PN_ID_BYTES);
	int r = PN_ENOMEM;
	if (oom || !(dn->core = dht_new(&co))) {
		snprintf(why, whylen, "out of memory");
		goto fail;
	}
	int fd = udp_socket(opts, &dn->v6sock, why, whylen);
	if (fd < 0) {
		r = fd;
		goto fail;
	}
	if (uv_udp_init(opts->loop, &dn->udp) != 0) {
		close(fd);
		snprintf(why, whylen, "cannot set up the DHT's UDP socket");
		r = PN_EIO;
		goto fail;
	}
	dn->udp.data = dn;
	dn->udp_open = true;
	/* From here on the handle must be closed from the loop: a failure is
	 * the socket's own, and dht_node_close ends it. */
	if (uv_udp_open(&dn->udp, fd) != 0 || uv_udp_recv_start(&dn->udp, alloc_cb, recv_cb) != 0)
		PN_LOGW(dn->o.log, "dht: cannot receive on the UDP socket");
	table_load(dn, now);
	bootstrap(dn, now);
	pump(dn, now);
	*out = dn;
	return PN_OK;
fail:
	dht_free(dn->core);
	free_strings(dn);
	free(dn);
	return r;
}

static void drop_lookups(struct dht_node *dn)
{
	for (size_t i = 0; i < DHT_MAX_LOOKUPS; i++) {
		if (!dn->lookups[i].handle)
			continue;
		dht_lookup_cancel(dn->core, dn->lookups[i].handle);
		lookup_release(&dn->lookups[i]);
	}
}

void dht_node_stop(struct dht_node *dn)
{
	if (dn->stopped)
		return;
	table_save(dn);
	drop_lookups(dn);
	dn->stopped = true;
	if (dn->udp_open)
		uv_udp_recv_stop(&dn->udp);
	/* Look-ups not started yet are cancelled; the others end unheeded.
	 * Each reports to bootstrap_resolved_cb either way. */
	for (size_t i = 0; i < dn->o.nbootstrap; i++)
		if (dn->boot_lookups[i])
			(void)uv_cancel((uv_req_t *)&dn->boot_lookups[i]->req);
}

/* Once the socket is closed and no look-up is under way: closed_cb, once. */
static void maybe_closed(struct dht_node *dn)
{
	if (!dn->closing || dn->close_reported || dn->udp_open || dn->nboot_lookups)
		return;
	dn->close_reported = true;
	if (dn->closed_cb)
		dn->closed_cb(dn->closed_ud);
}

static void udp_closed_cb(uv_handle_t *h)
{
	struct dht_node *dn = h->data;
	dn->udp_open = false;
	maybe_closed(dn);
}

void dht_node_close(struct dht_node *dn, void (*closed)(void *ud), void *ud)
{
	dht_node_stop(dn);
	dn->closed_cb = closed;
	dn->closed_ud = ud;
	dn->closing = true;
	uv_close((uv_handle_t *)&dn->udp, udp_closed_cb);
}

void dht_node_free(struct dht_node *dn)
{
	if (!dn)
		return;
	assert(dn->nboot_lookups == 0 && "dht_node_free before the close callback");
	drop_lookups(dn);
	dht_free(dn->core);
	free(dn->offers);
	free_strings(dn);
	free(dn);
}

/* ---- look-ups for the node ---- */

bool dht_node_ready(const struct dht_node *dn)
{
	return !dn->stopped && dht_table_size(dn->core) > 0;
}

int dht_node_find(struct dht_node *dn, const struct pn_cid *cid, uint64_t now)
{
	if (!dht_node_ready(dn))
		return PN_ECLOSED;
	struct dlookup *l = lookup_free_slot(dn);
	uint8_t raw[PN_CID_BYTES], key[PN_DHT_KEY_BYTES];
	if (!l)
		return PN_ELIMIT;
	cid_bytes(cid, raw);
	if (!key_of_cid(raw, key))
		return PN_ENOMEM;
	int h = dht_lookup(dn->core, DHT_LOOKUP_PROVIDERS, key, DHT_NODE_FIND_WANT, now);
	if (h <= 0)
		return h < 0 ? h : PN_ELIMIT;
	l->handle = (uint32_t)h;
	l->cid = *cid;
	dn->lookups_started++;
	pump(dn, now);
	return PN_OK;
}

int dht_node_search(struct dht_node *dn, const char *query, void *token, uint64_t now)
{
	if (!dht_node_ready(dn))
		return PN_ECLOSED;
	size_t qlen = strlen(query);
	if (qlen == 0 || qlen > PN_DIR_QUERY_MAX)
		return PN_EINVAL;
	struct pn_dht_word words[PN_DHT_WORDS_MAX];
	size_t nw = pn_dht_name_words(query, qlen, words, PN_DHT_WORDS_MAX), best = 0;
	if (!nw)
		return PN_EINVAL;
	for (size_t i = 1; i < nw; i++) /* the longest word: the rarest, in practice */
		if (words[i].len > words[best].len)
			best = i;
	uint8_t key[PN_DHT_KEY_BYTES];
	struct dlookup *l = lookup_free_slot(dn);
	if (!l)
		return PN_ELIMIT;
	if (!key_of_word(query, &words[best], key))
		return PN_ENOMEM;
	struct sresult *results = calloc(DHT_NODE_MAX_RESULTS, sizeof *results);
	if (!results)
		return PN_ENOMEM;
	int h = dht_lookup(dn->core, DHT_LOOKUP_KEYWORD, key, 0, now);
	if (h <= 0) {
		free(results);
		return h < 0 ? h : PN_ELIMIT;
	}
	l->handle = (uint32_t)h;
	l->is_search = true;
	l->token = token;
	l->results = results;
	memcpy(l->query, query, qlen + 1);
	dn->lookups_started++;
	pump(dn, now);
	return PN_OK;
}

void dht_node_search_cancel(struct dht_node *dn, void *token)
{
	for (size_t i = 0; i < DHT_MAX_LOOKUPS; i++) {
		struct dlookup *l = &dn->lookups[i];
		if (l->handle && l->is_search && l->token == token) {
			dht_lookup_cancel(dn->core, l->handle);
			lookup_release(l);
		}
	}
}

/* ---- time ---- */

/* Node look-ups of an ID in each of the farthest buckets: this node's ID
 * with bit i flipped and random bits after it. Their answers enter the
 * table; the look-ups are not the node's (no event, no cost counted). */
static void table_fill(struct dht_node *dn, uint64_t now)
{
	for (unsigned i = 0; i < FILL_TARGETS; i++) {
		uint8_t target[PN_DHT_KEY_BYTES];
		for (size_t b = 0; b < PN_DHT_KEY_BYTES; b += 8) {
			uint64_t v = pn_prng_next(&dn->rng);
			memcpy(target + b, &v, 8);
		}
		for (unsigned bit = 0; bit < i; bit++) {
			uint8_t mask = (uint8_t)(0x80u >> bit);
			target[0] = (uint8_t)((target[0] & ~mask) | (dn->o.id->node_id[0] & mask));
		}
		uint8_t mask = (uint8_t)(0x80u >> i);
		target[0] = (uint8_t)((target[0] & ~mask) | (~dn->o.id->node_id[0] & mask));
		(void)dht_lookup(dn->core, DHT_LOOKUP_NODES, target, 0, now);
	}
	dn->fills++;
}

void dht_node_tick(struct dht_node *dn, uint64_t now)
{
	if (dn->stopped)
		return;
	if (dht_next_wakeup(dn->core) <= now)
		dht_tick(dn->core, now);
	size_t size = dht_table_size(dn->core);
	if (size == 0 && now >= dn->next_reboot_ms)
		bootstrap(dn, now);
	if (size > 0 && size < FILL_BELOW && dn->fills < FILL_ROUNDS && !dn->fill_at_ms)
		dn->fill_at_ms = now + (dn->fills ? FILL_MS : ANNOUNCE_SETTLE_MS / 2);
	if (dn->fill_at_ms && now >= dn->fill_at_ms) {
		dn->fill_at_ms = 0;
		if (size > 0 && size < FILL_BELOW)
			table_fill(dn, now);
	}
	/* The first contacts: what was announced into an empty table goes out
	 * again once the join has found the neighbourhood; and again whenever
	 * the table has doubled since (the records' closest nodes moved). */
	if (size > 0 && !dn->announce_at_ms && (!dn->announced_table || size >= 2 * dn->announced_table) &&
	    now - dn->last_announce_ms >= REANNOUNCE_MIN_MS)
		dn->announce_at_ms = now + ANNOUNCE_SETTLE_MS;
	if (dn->announce_at_ms && now >= dn->announce_at_ms) {
		dn->announce_at_ms = 0;
		announce_all(dn, now);
	}
	if (dn->table_dirty && now >= dn->next_save_ms) {
		dn->next_save_ms = now + DHT_NODE_SAVE_MS;
		table_save(dn);
	}
	pump(dn, now);
}

uint64_t dht_node_next_wakeup(const struct dht_node *dn)
{
	if (dn->stopped)
		return UINT64_MAX;
	uint64_t next = dht_next_wakeup(dn->core);
	if (dht_table_size(dn->core) == 0 && dn->next_reboot_ms < next)
		next = dn->next_reboot_ms;
	if (dn->announce_at_ms && dn->announce_at_ms < next)
		next = dn->announce_at_ms;
	if (dn->fill_at_ms && dn->fill_at_ms < next)
		next = dn->fill_at_ms;
	if (dn->table_dirty && dn->next_save_ms < next)
		next = dn->next_save_ms;
	return next;
}

void dht_node_get_stats(const struct dht_node *dn, struct dht_node_stats *out)
{
	memset(out, 0, sizeof *out);
	out->contacts = dht_table_size(dn->core);
	out->records_stored = dht_records_stored(dn->core);
	out->offers = dn->noffers;
	out->lookups = dn->lookups_started;
	out->lookups_done = dn->lookups_done;
	out->lookup_msgs = dn->lookup_msgs;
	size_t n = dn->ncosts < DHT_NODE_COST_WINDOW ? dn->ncosts : DHT_NODE_COST_WINDOW;
	if (dn->ncosts) {
		size_t last = (dn->ncosts - 1) % DHT_NODE_COST_WINDOW;
		out->rounds_last = dn->cost_rounds[last];
		out->msgs_last = dn->cost_msgs[last];
	}
	out->rounds_median = median(dn->cost_rounds, n);
	out->msgs_median = median(dn->cost_msgs, n);
	out->datagrams_in = dn->datagrams_in;
	out->datagrams_out = dn->datagrams_out;
	out->bad_datagrams = dn->bad_datagrams;
	out->bad_records = dn->bad_records;
	out->send_failures = dn->send_failures;
	out->core = *dht_get_stats(dn->core);
}
