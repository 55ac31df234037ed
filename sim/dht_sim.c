/* The DHT simulator (see dht_sim.h and sim/README.md, "The DHT").
 *
 * Events sit in the event queue (evq.h), ordered by (virtual ms, sequence
 * number), so a run is the same on every machine. A message is counted when a core asks to
 * send it, whether or not the network then loses it or its addressee has
 * left. Messages are handed over as struct pn_dht_msg (deep-copied, since an
 * action's pointers die with the next call into the core), and encoded with
 * pn_dht_encode only to count their bytes.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "peernet.h"
#include "proto/dht.h"
#include "proto/prng.h"
#include "wire/dht_wire.h"
#include "dht_sim.h"
#include "evq.h"

#define DS_NEVER UINT64_MAX
#define DS_NONE UINT32_MAX
#define DS_PORT 7070
#define DS_MAX_INDEX (1u << 24)     /* node index fits the address 10.x.y.z */
#define DS_MIN_AGE_MS 60000         /* a querier has been up this long */
#define DS_PICK_TRIES 1000
#define DS_MAX_TX 1024              /* requests of one look-up the driver follows */
#define DS_DRAIN_MS 300000          /* after the window: look-ups still running may end */
#define DS_PROGRESS_MS 60000
#define DS_EVQ_FIRST 4096           /* events the queue first makes room for */
#define DS_EVQ_MAX (1u << 27)       /* events queued at most (4 GiB) */
#define DS_BOOT_PER_JOINER 2

/* Independent streams: a change in loss does not move the items, etc. */
#define DS_STREAM_ID 0x6964u
#define DS_STREAM_NET 0x6e6574u
#define DS_STREAM_WORK 0x776f726bu
#define DS_STREAM_ASK 0x61736bu
#define DS_STREAM_CHURN 0x636875u
#define DS_STREAM_NODE 0x6e6f6465u
#define DS_STREAM_LAT 0x6c6174u

enum ev_kind { EV_MSG = 1, EV_TIMER, EV_JOIN, EV_ANNOUNCE, EV_LOOKUP, EV_LEAVE, EV_ARRIVE, EV_PROGRESS, EV_REBOOT };

struct msg {
	uint32_t from, to;
	uint32_t next_free;
	uint32_t bytes;
	char *names;              /* owned copy of the records' names, or NULL */
	struct pn_dht_msg m;
};

/* A look-up the driver follows while it runs. */
struct track {
	uint32_t lookup;          /* index into s->lk */
	uint32_t handle;
	uint32_t next;            /* the node's next track, or DS_NONE */
	uint32_t ntx;
	uint32_t tx[DS_MAX_TX];   /* txids of its requests */
};

struct node {
	struct dht *d;            /* NULL once it left */
	uint64_t timer_at;
	uint64_t last_tick;
	uint64_t up_at;
	uint32_t live_pos;
	uint32_t tracks;          /* first track of this node, or DS_NONE */
	uint32_t boot[DS_BOOT_PER_JOINER]; /* its bootstrap nodes, pinged again while its table is empty */
	uint32_t nboot;
	bool reboot_queued;       /* an EV_REBOOT is pending */
};

struct dsim {
	struct dht_sim_params p;
	struct node *nodes;
	uint32_t nnodes, nodes_cap;
	uint32_t *live;           /* indices of live nodes */
	uint32_t nlive;

	struct evq evq;
	uint64_t now, events;

	struct msg *msgs;
	uint32_t nmsgs, msgs_cap, free_msg;

	struct track *tracks;
	uint32_t ntracks, tracks_cap, free_track;

	uint32_t *holders;        /* items * copies */
	uint32_t *ask_from, *ask_item;
	struct dht_sim_lookup *lk;
	uint64_t *start;          /* per look-up, when it started */

	struct pn_prng net, churn, node_seeds, ask;
	uint64_t lat_key;

	uint64_t window_start, window_end;
	uint64_t msgs_at_window, msgs_at_end;
	uint32_t lookups_pending;  /* started and not done */
	struct dht_sim_result *r;
	uint8_t enc[PN_DHT_DGRAM_MAX];
};

/* ---------------- ids, keys and addresses ---------------- */

static uint64_t mix64(uint64_t z)
{
	z += PN_PRNG_GAMMA;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* 256 bits from (seed, tag, index): four rounds of splitmix's finalizer. */
static void mix256(uint64_t seed, uint32_t tag, uint64_t index, uint8_t out[32])
{
	uint64_t h = mix64(seed ^ mix64(((uint64_t)tag << 32) ^ index));

	for (int w = 0; w < 4; w++) {
		h = mix64(h + (uint64_t)w);
		for (int b = 0; b < 8; b++)
			out[w * 8 + b] = (uint8_t)(h >> (56 - 8 * b));
	}
}

/* A node's public key names it: its index in the first 4 bytes. Its ID is
 * a mix of the key, standing in for SHA-256 of it. */
static void node_pub(const struct dsim *s, uint32_t idx, uint8_t pub[PN_DHT_PUB_BYTES])
{
	mix256(s->p.seed, 0x707562u, idx, pub);
	pub[0] = (uint8_t)(idx >> 24);
	pub[1] = (uint8_t)(idx >> 16);
	pub[2] = (uint8_t)(idx >> 8);
	pub[3] = (uint8_t)idx;
}

static uint32_t pub_index(const uint8_t pub[PN_DHT_PUB_BYTES])
{
	return (uint32_t)pub[0] << 24 | (uint32_t)pub[1] << 16 | (uint32_t)pub[2] << 8 | pub[3];
}

static void node_id(const struct dsim *s, uint32_t idx, uint8_t id[PN_DHT_KEY_BYTES])
{
	mix256(s->p.seed, DS_STREAM_ID, idx, id);
}

static void node_addr(uint32_t idx, struct pn_dht_addr *a)
{
	memset(a, 0, sizeof(*a));
	a->family = 4;
	a->ip[0] = 10;
	a->ip[1] = (uint8_t)(idx >> 16);
	a->ip[2] = (uint8_t)(idx >> 8);
	a->ip[3] = (uint8_t)idx;
	a->port = DS_PORT;
}

static uint32_t addr_index(const struct dsim *s, const struct pn_dht_addr *a)
{
	if (a->family != 4 || a->ip[0] != 10 || a->port != DS_PORT)
		return DS_NONE;
	uint32_t idx = (uint32_t)a->ip[1] << 16 | (uint32_t)a->ip[2] << 8 | a->ip[3];

	return idx < s->nnodes ? idx : DS_NONE;
}

static void item_cid(uint64_t seed, uint32_t item, uint8_t cid[PN_CID_BYTES])
{
	uint8_t h[32];

	mix256(seed, 0x636964u, item, cid);
	mix256(seed, 0x73697au, item, h);
	memcpy(cid + 32, h, PN_CID_BYTES - 32);
}

/* Stands in for SHA-256("peernet-dht-cid" || cid). */
static void item_key(uint64_t seed, uint32_t item, uint8_t key[PN_DHT_KEY_BYTES])
{
	mix256(seed, 0x6b6579u, item, key);
}

/* One-way latency of a node pair: fixed for the run, uniform in [min, max]. */
static uint64_t latency(const struct dsim *s, uint32_t a, uint32_t b)
{
	uint32_t lo = a < b ? a : b, hi = a < b ? b : a;
	uint64_t h = mix64(s->lat_key ^ mix64(((uint64_t)lo << 32) | hi));
	uint32_t span = s->p.lat_max_ms - s->p.lat_min_ms + 1;

	return s->p.lat_min_ms + h % span;
}

static double unit(struct pn_prng *r)
{
	return (double)(pn_prng_next(r) >> 11) * 0x1.0p-53; /* [0, 1) */
}

static uint64_t exp_ms(struct pn_prng *r, double per_ms)
{
	return (uint64_t)(-log(1.0 - unit(r)) / per_ms) + 1;
}

/* ---------------- nodes ---------------- */

static void live_add(struct dsim *s, uint32_t idx)
{
	s->nodes[idx].live_pos = s->nlive;
	s->live[s->nlive++] = idx;
}

static void live_remove(struct dsim *s, uint32_t idx)
{
	uint32_t pos = s->nodes[idx].live_pos, last = s->live[--s->nlive];

	s->live[pos] = last;
	s->nodes[last].live_pos = pos;
}

/* A new node (index = the next free one), up at once. PN_ENOMEM, PN_ELIMIT. */
static int node_start(struct dsim *s, uint32_t *out)
{
	if (s->nnodes == DS_MAX_INDEX)
		return PN_ELIMIT;
	if (s->nnodes == s->nodes_cap) {
		uint32_t cap = s->nodes_cap ? 2 * s->nodes_cap : 1024;
		struct node *n = realloc(s->nodes, (size_t)cap * sizeof(*n));
		uint32_t *l;

		if (!n)
			return PN_ENOMEM;
		s->nodes = n;
		l = realloc(s->live, (size_t)cap * sizeof(*l));
		if (!l)
			return PN_ENOMEM;
		s->live = l;
		s->nodes_cap = cap;
	}
	uint32_t idx = s->nnodes;
	struct node *nd = &s->nodes[idx];
	struct dht_opts o;

	memset(&o, 0, sizeof(o));
	node_id(s, idx, o.id);
	o.seed = pn_prng_next(&s->node_seeds);
	o.rpc_timeout_ms = s->p.rpc_timeout_ms;
	o.max_fails = s->p.max_fails;
	o.refresh_ms = s->p.refresh_ms;
	memset(nd, 0, sizeof(*nd));
	nd->d = dht_new(&o);
	if (!nd->d)
		return PN_ENOMEM;
	nd->timer_at = DS_NEVER;
	nd->last_tick = DS_NEVER;
	nd->up_at = s->now;
	nd->tracks = DS_NONE;
	s->nnodes++;
	live_add(s, idx);
	*out = idx;
	return 0;
}

static bool alive(const struct dsim *s, uint32_t idx)
{
	return idx < s->nnodes && s->nodes[idx].d != NULL;
}

/* ---------------- look-ups the driver follows ---------------- */

static struct track *track_find_handle(struct dsim *s, uint32_t node, uint32_t handle)
{
	for (uint32_t t = s->nodes[node].tracks; t != DS_NONE; t = s->tracks[t].next)
		if (s->tracks[t].handle == handle)
			return &s->tracks[t];
	return NULL;
}

static int track_new(struct dsim *s, uint32_t node, uint32_t handle, uint32_t lookup)
{
	uint32_t t;

	if (s->free_track != DS_NONE) {
		t = s->free_track;
		s->free_track = s->tracks[t].next;
	} else {
		if (s->ntracks == s->tracks_cap) {
			uint32_t cap = s->tracks_cap ? 2 * s->tracks_cap : 16;
			struct track *n = realloc(s->tracks, (size_t)cap * sizeof(*n));

			if (!n)
				return PN_ENOMEM;
			s->tracks = n;
			s->tracks_cap = cap;
		}
		t = s->ntracks++;
	}
	struct track *tr = &s->tracks[t];

	tr->lookup = lookup;
	tr->handle = handle;
	tr->ntx = 0;
	tr->next = s->nodes[node].tracks;
	s->nodes[node].tracks = t;
	return 0;
}

static void track_end(struct dsim *s, uint32_t node, uint32_t handle)
{
	uint32_t *link = &s->nodes[node].tracks;

	while (*link != DS_NONE) {
		uint32_t t = *link;

		if (s->tracks[t].handle == handle) {
			*link = s->tracks[t].next;
			s->tracks[t].next = s->free_track;
			s->free_track = t;
			return;
		}
		link = &s->tracks[t].next;
	}
}

/* The look-up of `node` that sent the request with this txid, if followed. */
static struct track *track_of_reply(struct dsim *s, uint32_t node, uint32_t txid)
{
	for (uint32_t t = s->nodes[node].tracks; t != DS_NONE; t = s->tracks[t].next) {
		struct track *tr = &s->tracks[t];

		for (uint32_t i = 0; i < tr->ntx; i++)
			if (tr->tx[i] == txid)
				return tr;
	}
	return NULL;
}

/* Node `node`'s followed look-up that a FIND_VALUE for key belongs to. */
static struct track *track_of_request(struct dsim *s, uint32_t node, const uint8_t key[PN_DHT_KEY_BYTES])
{
	for (uint32_t t = s->nodes[node].tracks; t != DS_NONE; t = s->tracks[t].next) {
		struct track *tr = &s->tracks[t];
		uint8_t k[PN_DHT_KEY_BYTES];

		item_key(s->p.seed, s->lk[tr->lookup].item, k);
		if (!memcmp(k, key, sizeof(k)))
			return tr;
	}
	return NULL;
}

/* ---------------- messages ---------------- */

static int msg_alloc(struct dsim *s, uint32_t *slot)
{
	if (s->free_msg != DS_NONE) {
		*slot = s->free_msg;
		s->free_msg = s->msgs[*slot].next_free;
		return 0;
	}
	if (s->nmsgs == s->msgs_cap) {
		uint32_t cap = s->msgs_cap ? 2 * s->msgs_cap : 1024;
		struct msg *m = realloc(s->msgs, (size_t)cap * sizeof(*m));

		if (!m)
			return PN_ENOMEM;
		s->msgs = m;
		s->msgs_cap = cap;
	}
	*slot = s->nmsgs++;
	return 0;
}

static void msg_free(struct dsim *s, uint32_t slot)
{
	free(s->msgs[slot].names);
	s->msgs[slot].names = NULL;
	s->msgs[slot].next_free = s->free_msg;
	s->free_msg = slot;
}

static bool is_request(uint8_t type)
{
	return type == PN_DHT_PING || type == PN_DHT_FIND_NODE || type == PN_DHT_FIND_VALUE ||
	       type == PN_DHT_STORE;
}

/* Copies the names the records of m point at into one buffer m owns. */
static int own_names(struct msg *mm)
{
	struct pn_dht_msg *m = &mm->m;
	struct pn_dht_record *recs = NULL;
	size_t n = 0, total = 0;

	if (m->type == PN_DHT_VALUES || m->type == PN_DHT_NODES) {
		recs = m->u.nodes.records;
		n = m->u.nodes.n_records;
	} else if (m->type == PN_DHT_STORE) {
		recs = &m->u.store.record;
		n = 1;
	}
	for (size_t i = 0; i < n; i++)
		total += recs[i].name ? recs[i].name_len : 0;
	mm->names = NULL;
	if (total == 0) {
		for (size_t i = 0; i < n; i++)
			recs[i].name = NULL;
		return 0;
	}
	mm->names = malloc(total);
	if (!mm->names)
		return PN_ENOMEM;
	size_t at = 0;

	for (size_t i = 0; i < n; i++) {
		if (!recs[i].name || !recs[i].name_len) {
			recs[i].name = NULL;
			continue;
		}
		memcpy(mm->names + at, recs[i].name, recs[i].name_len);
		recs[i].name = mm->names + at;
		at += recs[i].name_len;
	}
	return 0;
}

static int send_msg(struct dsim *s, uint32_t from, const struct dht_action *a)
{
	struct pn_dht_msg m = a->msg;
	size_t len = 0;
	uint32_t to = addr_index(s, &a->to), slot;
	int rc;

	node_pub(s, from, m.sender_key);
	if (pn_dht_encode(&m, s->enc, &len) != 0) {
		s->r->encode_failed++;
		len = 0;
	}
	s->r->msgs_total++;
	s->r->bytes_total += len;
	if (m.type == PN_DHT_FIND_VALUE) {
		struct track *tr = track_of_request(s, from, m.u.find_value.key);

		if (tr) {
			struct dht_sim_lookup *l = &s->lk[tr->lookup];

			l->bytes += len;
			if (!l->success)
				l->msgs_to_first++;
			if (tr->ntx < DS_MAX_TX)
				tr->tx[tr->ntx++] = m.txid;
		}
	}
	if (to == DS_NONE || !alive(s, to)) {
		s->r->to_dead++;
		return 0;
	}
	if (s->p.loss > 0 && unit(&s->net) < s->p.loss) {
		s->r->lost++;
		return 0;
	}
	rc = msg_alloc(s, &slot);
	if (rc)
		return rc;
	struct msg *mm = &s->msgs[slot];

	mm->from = from;
	mm->to = to;
	mm->bytes = (uint32_t)len;
	mm->m = m;
	mm->m.sig = NULL;
	rc = own_names(mm);
	if (rc == 0)
		rc = evq_push(&s->evq, s->now + latency(s, from, to), EV_MSG, slot, 0);
	if (rc) {
		msg_free(s, slot);
		return rc;
	}
	return 0;
}

/* ---------------- the driver ---------------- */

static void on_record(struct dsim *s, uint32_t node, const struct dht_action *a)
{
	struct track *tr = track_find_handle(s, node, a->handle);

	if (!tr || a->rec.kind != PN_DHT_REC_PROVIDER)
		return;
	struct dht_sim_lookup *l = &s->lk[tr->lookup];
	uint32_t pub = pub_index(a->rec.publisher);

	if (l->success)
		return;
	if (alive(s, pub)) {
		l->success = true;
		l->stale_only = false;
		l->first_ms = s->now - s->start[tr->lookup];
	} else {
		l->stale_only = true;
	}
}

static void on_lookup_done(struct dsim *s, uint32_t node, const struct dht_action *a)
{
	struct track *tr = track_find_handle(s, node, a->handle);

	if (!tr)
		return;
	struct dht_sim_lookup *l = &s->lk[tr->lookup];

	l->done = true;
	l->done_ms = s->now - s->start[tr->lookup];
	l->rounds = l->success ? a->stats.rounds_to_first : a->stats.rounds;
	l->msgs = a->stats.requests + a->stats.replies;
	l->timeouts = a->stats.timeouts;
	s->lookups_pending--;
	track_end(s, node, a->handle);
}

static void schedule_timer(struct dsim *s, uint32_t idx)
{
	struct node *nd = &s->nodes[idx];
	uint64_t w = dht_next_wakeup(nd->d);

	if (w == DS_NEVER)
		return;
	if (w < s->now || (w == s->now && nd->last_tick == s->now))
		w = s->now + 1; /* never spin at one instant */
	if (w < nd->timer_at && evq_push(&s->evq, w, EV_TIMER, idx, 0) == 0)
		nd->timer_at = w;
}

/* Carries out every action node idx has pending, then re-arms its timer. */
static int drain(struct dsim *s, uint32_t idx)
{
	struct dht_action a;
	int rc = 0;

	while (s->nodes[idx].d && dht_next_action(s->nodes[idx].d, &a)) {
		switch (a.type) {
		case DHT_ACT_SEND:
			rc = send_msg(s, idx, &a);
			break;
		case DHT_ACT_RECORD:
			on_record(s, idx, &a);
			break;
		case DHT_ACT_LOOKUP_DONE:
			on_lookup_done(s, idx, &a);
			break;
		case DHT_ACT_CONTACT:
			break;
		}
		if (rc)
			return rc;
	}
	if (!s->nodes[idx].d)
		return 0;
	schedule_timer(s, idx);
	/* As the node's driver: while the table is empty (every answer lost,
	 * the bootstrap nodes gone, or every contact failed since), the
	 * bootstrap nodes are pinged again every DHT_REBOOT_MS. */
	struct node *nd = &s->nodes[idx];

	if (nd->nboot && !nd->reboot_queued && dht_table_size(nd->d) == 0) {
		rc = evq_push(&s->evq, s->now + DHT_REBOOT_MS, EV_REBOOT, idx, 0);
		nd->reboot_queued = rc == 0;
	}
	return rc;
}

static void bootstrap_through(struct dsim *s, uint32_t idx, uint32_t through)
{
	struct pn_dht_addr a;

	node_addr(through, &a);
	dht_bootstrap(s->nodes[idx].d, &a, s->now);
}

/* A joiner is given DS_BOOT_PER_JOINER distinct bootstrap nodes. */
static int join(struct dsim *s, uint32_t idx)
{
	uint32_t b = s->p.bootstrap, first = pn_prng_below(&s->churn, b);
	struct node *nd = &s->nodes[idx];

	nd->boot[nd->nboot++] = first;
	if (b > 1 && DS_BOOT_PER_JOINER > 1)
		nd->boot[nd->nboot++] = (first + 1 + pn_prng_below(&s->churn, b - 1)) % b;
	for (uint32_t i = 0; i < nd->nboot; i++)
		bootstrap_through(s, idx, nd->boot[i]);
	return drain(s, idx);
}

static int leave(struct dsim *s)
{
	uint32_t candidates = s->nlive, idx = DS_NONE;

	for (uint32_t t = 0; t < DS_PICK_TRIES && candidates > s->p.bootstrap; t++) {
		uint32_t c = s->live[pn_prng_below(&s->churn, s->nlive)];

		if (c >= s->p.bootstrap) {
			idx = c;
			break;
		}
	}
	if (idx == DS_NONE)
		return 0;
	struct node *nd = &s->nodes[idx];

	/* its followed look-ups die with it */
	for (uint32_t t = nd->tracks; t != DS_NONE;) {
		uint32_t next = s->tracks[t].next;
		struct dht_sim_lookup *l = &s->lk[s->tracks[t].lookup];

		l->querier_left = true;
		s->lookups_pending--;
		s->tracks[t].next = s->free_track;
		s->free_track = t;
		t = next;
	}
	nd->tracks = DS_NONE;
	dht_free(nd->d);
	nd->d = NULL;
	live_remove(s, idx);
	s->r->left++;
	return 0;
}

static uint32_t live_holders(const struct dsim *s, uint32_t item)
{
	uint32_t n = 0;

	for (uint32_t c = 0; c < s->p.copies; c++)
		n += alive(s, s->holders[(size_t)item * s->p.copies + c]);
	return n;
}

static bool holds(const struct dsim *s, uint32_t item, uint32_t node)
{
	for (uint32_t c = 0; c < s->p.copies; c++)
		if (s->holders[(size_t)item * s->p.copies + c] == node)
			return true;
	return false;
}

static int start_lookup(struct dsim *s, uint32_t i)
{
	struct dht_sim_lookup *l = &s->lk[i];
	uint32_t from = s->ask_from[i];
	uint8_t key[PN_DHT_KEY_BYTES];

	l->item = s->ask_item[i];
	l->live_holders = live_holders(s, l->item);
	/* a querier that left is replaced by a random live node, up for a while, not a holder */
	for (uint32_t t = 0; t < DS_PICK_TRIES && !alive(s, from); t++) {
		uint32_t c = s->live[pn_prng_below(&s->churn, s->nlive)];

		if (s->now - s->nodes[c].up_at >= DS_MIN_AGE_MS && !holds(s, l->item, c))
			from = c;
	}
	l->from = from;
	if (!alive(s, from) || l->live_holders == 0)
		return 0; /* not started: counted apart */
	item_key(s->p.seed, l->item, key);
	l->started = true;
	s->start[i] = s->now;
	int h = dht_lookup(s->nodes[from].d, DHT_LOOKUP_PROVIDERS, key, s->p.want, s->now);

	if (h <= 0) {
		l->done = true; /* refused: a failure */
		return drain(s, from);
	}
	int rc = track_new(s, from, (uint32_t)h, i);

	if (rc)
		return rc;
	s->lookups_pending++;
	return drain(s, from);
}

static int announce(struct dsim *s, uint32_t slot)
{
	uint32_t item = slot / s->p.copies, holder = s->holders[slot];
	struct pn_dht_record rec;
	uint8_t key[PN_DHT_KEY_BYTES];

	if (!alive(s, holder))
		return 0;
	memset(&rec, 0, sizeof(rec));
	rec.kind = PN_DHT_REC_PROVIDER;
	item_cid(s->p.seed, item, rec.cid);
	node_pub(s, holder, rec.publisher);
	item_key(s->p.seed, item, key);
	(void)dht_announce(s->nodes[holder].d, key, &rec, s->now);
	return drain(s, holder);
}

static int churn_next(struct dsim *s, uint32_t kind)
{
	double per_ms = s->p.churn_per_hour * s->p.nodes / 3600000.0;
	uint64_t at = s->now + exp_ms(&s->churn, per_ms);

	return at < s->window_end ? evq_push(&s->evq, at, kind, 0, 0) : 0;
}

static int step(struct dsim *s)
{
	struct evq_ev e = evq_pop(&s->evq);
	uint32_t idx;
	int rc;

	s->now = e.at;
	s->events++;
	switch (e.kind) {
	case EV_MSG: {
		struct msg *mm = &s->msgs[e.a];
		uint32_t to = mm->to;

		rc = 0;
		if (alive(s, to)) {
			struct pn_dht_addr from;
			uint8_t from_id[PN_DHT_KEY_BYTES];

			if (!is_request(mm->m.type)) {
				struct track *tr = track_of_reply(s, to, mm->m.txid);

				if (tr) {
					struct dht_sim_lookup *l = &s->lk[tr->lookup];

					l->bytes += mm->bytes;
					if (!l->success)
						l->msgs_to_first++;
				}
			}
			node_addr(mm->from, &from);
			node_id(s, mm->from, from_id);
			dht_on_message(s->nodes[to].d, &from, from_id, &mm->m, s->now);
			rc = drain(s, to);
		} else {
			s->r->to_dead++;
		}
		msg_free(s, e.a);
		return rc;
	}
	case EV_REBOOT: {
		struct node *nd = &s->nodes[e.a];

		nd->reboot_queued = false;
		if (!nd->d || dht_table_size(nd->d) > 0)
			return 0; /* gone, or has contacts again */
		s->r->rebootstraps++;
		for (uint32_t i = 0; i < nd->nboot; i++)
			bootstrap_through(s, e.a, nd->boot[i]);
		return drain(s, e.a);
	}
	case EV_TIMER: {
		struct node *nd = &s->nodes[e.a];

		if (!nd->d || e.at != nd->timer_at)
			return 0; /* gone, or superseded */
		nd->timer_at = DS_NEVER;
		nd->last_tick = s->now;
		dht_tick(nd->d, s->now);
		return drain(s, e.a);
	}
	case EV_JOIN:
		rc = node_start(s, &idx);
		if (rc || idx < s->p.bootstrap)
			return rc; /* bootstrap nodes: see dht_sim_run */
		return join(s, idx);
	case EV_ANNOUNCE:
		return announce(s, e.a);
	case EV_LOOKUP:
		return start_lookup(s, e.a);
	case EV_LEAVE:
		rc = leave(s);
		return rc ? rc : churn_next(s, EV_LEAVE);
	case EV_ARRIVE:
		rc = node_start(s, &idx);
		if (rc == 0)
			rc = join(s, idx);
		s->r->joined++;
		return rc ? rc : churn_next(s, EV_ARRIVE);
	case EV_PROGRESS:
		fprintf(stderr, "dht-sim: N=%u t=%" PRIu64 " s: %u live, %" PRIu64 " messages, %zu events queued\n",
			s->p.nodes, s->now / 1000, s->nlive, s->r->msgs_total, evq_len(&s->evq));
		return evq_len(&s->evq) ? evq_push(&s->evq, s->now + DS_PROGRESS_MS, EV_PROGRESS, 0, 0) : 0;
	}
	return 0;
}

/* ---------------- the workload ---------------- */

static struct dht_sim_params with_defaults(const struct dht_sim_params *in)
{
	struct dht_sim_params p = *in;

	if (!p.bootstrap)
		p.bootstrap = DHT_SIM_DEFAULT_BOOTSTRAP;
	if (p.bootstrap > p.nodes)
		p.bootstrap = p.nodes;
	if (!p.items)
		p.items = DHT_SIM_DEFAULT_ITEMS;
	if (!p.copies)
		p.copies = DHT_SIM_DEFAULT_COPIES;
	if (!p.lookups)
		p.lookups = DHT_SIM_DEFAULT_LOOKUPS;
	if (!p.want)
		p.want = DHT_SIM_DEFAULT_WANT;
	if (!p.lat_min_ms && !p.lat_max_ms) {
		p.lat_min_ms = DHT_SIM_DEFAULT_LAT_MIN_MS;
		p.lat_max_ms = DHT_SIM_DEFAULT_LAT_MAX_MS;
	}
	if (!p.join_s)
		p.join_s = DHT_SIM_DEFAULT_JOIN_S;
	if (!p.settle_s)
		p.settle_s = DHT_SIM_DEFAULT_SETTLE_S;
	if (!p.announce_s)
		p.announce_s = DHT_SIM_DEFAULT_ANNOUNCE_S;
	if (!p.window_s)
		p.window_s = DHT_SIM_DEFAULT_WINDOW_S;
	return p;
}

static bool params_ok(const struct dht_sim_params *p)
{
	return p->nodes >= 2 && p->nodes < DS_MAX_INDEX / 2 && p->copies < p->nodes && p->lat_min_ms <= p->lat_max_ms &&
	       p->loss >= 0 && p->loss < 1 && p->churn_per_hour >= 0 && p->churn_per_hour <= 100;
}

/* Holders: distinct random nodes of the first N (any, bootstrap nodes too).
 * Look-ups: a random item and a random node of the first N not holding it. */
static int workload(const struct dht_sim_params *p, uint32_t *holders, uint32_t *from, uint32_t *item)
{
	struct pn_prng work, ask;

	pn_prng_seed(&work, p->seed ^ ((uint64_t)DS_STREAM_WORK << 32));
	pn_prng_seed(&ask, p->seed ^ ((uint64_t)DS_STREAM_ASK << 32));
	for (uint32_t it = 0; it < p->items; it++) {
		uint32_t *h = holders + (size_t)it * p->copies;

		for (uint32_t c = 0; c < p->copies;) {
			uint32_t nd = pn_prng_below(&work, p->nodes);
			bool dup = false;

			for (uint32_t k = 0; k < c && !dup; k++)
				dup = h[k] == nd;
			if (!dup)
				h[c++] = nd;
		}
	}
	for (uint32_t i = 0; i < p->lookups; i++) {
		uint32_t it = pn_prng_below(&ask, p->items), f;
		bool held;

		do {
			f = pn_prng_below(&ask, p->nodes);
			held = false;
			for (uint32_t c = 0; c < p->copies && !held; c++)
				held = holders[(size_t)it * p->copies + c] == f;
		} while (held);
		from[i] = f;
		item[i] = it;
	}
	return 0;
}

int dht_sim_workload(const struct dht_sim_params *in, uint32_t *holders, uint32_t *lookup_from,
		     uint32_t *lookup_item)
{
	struct dht_sim_params p = with_defaults(in);

	if (!params_ok(&p))
		return PN_EINVAL;
	return workload(&p, holders, lookup_from, lookup_item);
}

/* ---------------- results ---------------- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

/* Nearest rank: the smallest value with at least pct% of them at or below it. */
static double pctl(uint64_t *v, size_t n, double pct)
{
	if (n == 0)
		return 0;
	size_t rank = (size_t)ceil(pct / 100.0 * (double)n);

	if (rank < 1)
		rank = 1;
	return (double)v[rank - 1];
}

enum field { F_ROUNDS, F_MSGS, F_MSGS_FIRST, F_FIRST_MS, F_BYTES, F_TIMEOUTS };

/* A look-up that counts: started, with a live holder, its querier stayed. */
static bool counted(const struct dht_sim_lookup *l)
{
	return l->started && l->live_holders > 0 && !l->querier_left;
}

static uint64_t field_of(const struct dht_sim_lookup *l, enum field f)
{
	switch (f) {
	case F_ROUNDS:
		return l->rounds;
	case F_MSGS:
		return l->msgs;
	case F_MSGS_FIRST:
		return l->msgs_to_first;
	case F_FIRST_MS:
		return l->first_ms;
	case F_BYTES:
		return l->bytes;
	case F_TIMEOUTS:
		return l->timeouts;
	}
	return 0;
}

/* Median, 99th percentile and mean of a field over the counted look-ups
 * that finished (only_success: that found a live provider). v has room for
 * every look-up. */
static void collect(const struct dsim *s, uint64_t *v, enum field f, bool only_success, double *med, double *p99,
		    double *mean)
{
	size_t k = 0;
	double sum = 0;

	for (size_t i = 0; i < s->p.lookups; i++) {
		const struct dht_sim_lookup *l = &s->lk[i];

		if (!counted(l) || !l->done || (only_success && !l->success))
			continue;
		v[k] = field_of(l, f);
		sum += (double)v[k++];
	}
	qsort(v, k, sizeof(*v), cmp_u64);
	if (med)
		*med = pctl(v, k, 50);
	if (p99)
		*p99 = pctl(v, k, 99);
	if (mean)
		*mean = k ? sum / (double)k : 0;
}

static int summarise(struct dsim *s)
{
	struct dht_sim_result *r = s->r;
	uint64_t *v = calloc(s->p.lookups ? s->p.lookups : 1, sizeof(*v));

	if (!v)
		return PN_ENOMEM;
	r->lookups = s->p.lookups;
	for (size_t i = 0; i < s->p.lookups; i++) {
		const struct dht_sim_lookup *l = &s->lk[i];

		if (l->live_holders == 0) {
			r->no_live_holder++;
			continue;
		}
		if (!counted(l))
			continue;
		r->counted++;
		r->done += l->done;
		r->success += l->success;
		r->stale_only += l->stale_only && !l->success;
	}
	collect(s, v, F_ROUNDS, true, &r->rounds_median, &r->rounds_p99, &r->rounds_mean);
	collect(s, v, F_MSGS, false, &r->msgs_median, &r->msgs_p99, &r->msgs_mean);
	collect(s, v, F_MSGS_FIRST, true, &r->msgs_first_median, &r->msgs_first_p99, NULL);
	collect(s, v, F_FIRST_MS, true, &r->first_ms_median, &r->first_ms_p99, NULL);
	collect(s, v, F_BYTES, false, NULL, NULL, &r->bytes_mean);
	collect(s, v, F_TIMEOUTS, false, NULL, NULL, &r->timeouts_mean);
	free(v);

	double tsum = 0, msum = 0, rsum = 0;

	r->table_min = UINT32_MAX;
	for (uint32_t i = 0; i < s->nlive; i++) {
		const struct dht *d = s->nodes[s->live[i]].d;
		size_t t = dht_table_size(d), m = dht_memory(d);
		const struct dht_stats *st = dht_get_stats(d);

		tsum += (double)t;
		msum += (double)m;
		rsum += (double)dht_records_stored(d);
		if (t < r->table_min)
			r->table_min = (uint32_t)t;
		if (t > r->table_max)
			r->table_max = (uint32_t)t;
		if (m > r->memory_max)
			r->memory_max = m;
		r->actions_dropped += st->actions_dropped;
		r->unexpected_replies += st->unexpected_replies;
		r->rate_limited += st->rate_limited;
		r->stores_refused += st->stores_refused;
		r->stores_accepted += st->stores_accepted;
	}
	r->table_mean = s->nlive ? tsum / s->nlive : 0;
	r->memory_mean = s->nlive ? msum / s->nlive : 0;
	r->records_mean = s->nlive ? rsum / s->nlive : 0;
	r->nodes_start = s->p.nodes;
	r->nodes_end = s->nlive;
	r->events = s->events;
	r->virtual_s = (double)s->now / 1000.0;
	r->bg_msgs_per_node_hour = (double)(s->msgs_at_end - s->msgs_at_window) / (double)s->p.nodes /
				   ((double)s->p.window_s / 3600.0);
	return 0;
}

/* ---------------- the run ---------------- */

static void dsim_free(struct dsim *s)
{
	for (uint32_t i = 0; i < s->nnodes; i++)
		dht_free(s->nodes[i].d);
	for (uint32_t i = 0; i < s->nmsgs; i++)
		free(s->msgs[i].names);
	free(s->nodes);
	free(s->live);
	evq_free(&s->evq);
	free(s->msgs);
	free(s->tracks);
	free(s->holders);
	free(s->ask_from);
	free(s->ask_item);
	free(s->lk);
	free(s->start);
}

static int run_until(struct dsim *s, uint64_t until)
{
	while (evq_len(&s->evq) > 0 && evq_next_at(&s->evq) <= until) {
		int rc = step(s);

		if (rc)
			return rc;
	}
	if (s->now < until)
		s->now = until;
	return 0;
}

/* Schedules the scenario's events: joins, announcements, look-ups, churn. */
static int plan(struct dsim *s)
{
	struct pn_prng when;
	uint64_t join_ms = (uint64_t)s->p.join_s * 1000;
	uint64_t announce_at = join_ms + (uint64_t)s->p.settle_s * 1000;
	int rc = 0;

	pn_prng_seed(&when, s->p.seed ^ ((uint64_t)DS_STREAM_CHURN << 40));
	/* the bootstrap nodes at 0, through node 0; the rest over the join window */
	for (uint32_t i = 0; i < s->p.nodes && rc == 0; i++) {
		uint64_t at = i < s->p.bootstrap ? 0 : 1 + pn_prng_below(&when, (uint32_t)join_ms);

		rc = evq_push(&s->evq, at, EV_JOIN, i, 0);
	}
	for (uint32_t i = 0; i < s->p.items * s->p.copies && rc == 0; i++)
		rc = evq_push(&s->evq, announce_at + pn_prng_below(&when, s->p.announce_s * 1000 + 1), EV_ANNOUNCE, i, 0);
	/* the window opens once the announcements have had a minute to land */
	s->window_start = announce_at + (uint64_t)s->p.announce_s * 1000 + 60000;
	s->window_end = s->window_start + (uint64_t)s->p.window_s * 1000;
	for (uint32_t i = 0; i < s->p.lookups && rc == 0; i++)
		rc = evq_push(&s->evq, s->window_start + pn_prng_below(&when, s->p.window_s * 1000), EV_LOOKUP, i, 0);
	if (rc == 0 && s->p.churn_per_hour > 0) {
		s->now = s->window_start;
		rc = churn_next(s, EV_LEAVE);
		if (rc == 0)
			rc = churn_next(s, EV_ARRIVE);
		s->now = 0;
	}
	if (rc == 0 && s->p.progress)
		rc = evq_push(&s->evq, DS_PROGRESS_MS, EV_PROGRESS, 0, 0);
	return rc;
}

int dht_sim_run(const struct dht_sim_params *in, struct dht_sim_result *out, struct dht_sim_lookup *lookups_out)
{
	struct dht_sim_params p = with_defaults(in);
	struct dsim s;
	int rc;

	if (!params_ok(&p) || !out)
		return PN_EINVAL;
	memset(&s, 0, sizeof(s));
	memset(out, 0, sizeof(*out));
	s.p = p;
	s.r = out;
	s.free_msg = DS_NONE;
	s.free_track = DS_NONE;
	evq_init(&s.evq, DS_EVQ_FIRST, DS_EVQ_MAX);
	pn_prng_seed(&s.net, p.seed ^ ((uint64_t)DS_STREAM_NET << 32));
	pn_prng_seed(&s.churn, p.seed ^ ((uint64_t)DS_STREAM_CHURN << 32));
	pn_prng_seed(&s.node_seeds, p.seed ^ ((uint64_t)DS_STREAM_NODE << 32));
	s.lat_key = mix64(p.seed ^ ((uint64_t)DS_STREAM_LAT << 32));
	s.holders = calloc((size_t)p.items * p.copies, sizeof(*s.holders));
	s.ask_from = calloc(p.lookups, sizeof(*s.ask_from));
	s.ask_item = calloc(p.lookups, sizeof(*s.ask_item));
	s.lk = calloc(p.lookups, sizeof(*s.lk));
	s.start = calloc(p.lookups, sizeof(*s.start));
	if (!s.holders || !s.ask_from || !s.ask_item || !s.lk || !s.start) {
		rc = PN_ENOMEM;
		goto out;
	}
	rc = workload(&p, s.holders, s.ask_from, s.ask_item);
	if (rc == 0)
		rc = plan(&s);
	if (rc == 0) {
		/* The N joiners are started in index order at equal times, so node
		 * i is index i; bootstrap nodes other than 0 go through node 0. */
		rc = run_until(&s, 0);
		for (uint32_t i = 1; rc == 0 && i < p.bootstrap && i < s.nnodes; i++) {
			bootstrap_through(&s, i, 0);
			rc = drain(&s, i);
		}
	}
	if (rc == 0)
		rc = run_until(&s, s.window_start);
	s.msgs_at_window = out->msgs_total;
	if (rc == 0)
		rc = run_until(&s, s.window_end);
	s.msgs_at_end = out->msgs_total;
	while (rc == 0 && s.lookups_pending > 0 && evq_len(&s.evq) > 0 && evq_next_at(&s.evq) <= s.window_end + DS_DRAIN_MS)
		rc = step(&s);
	if (rc == 0)
		rc = summarise(&s);
	if (rc == 0 && lookups_out)
		memcpy(lookups_out, s.lk, (size_t)p.lookups * sizeof(*s.lk));
out:
	dsim_free(&s);
	return rc;
}
