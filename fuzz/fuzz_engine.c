/* libFuzzer target: the peer engine (src/proto/engine.c, with the choker and
 * the swarm scheduler behind it) as a state machine, the way a driver runs it.
 *
 * Three engines: T, whose role (node, server or client) and store (nothing,
 * a content whole, a content in part with a bitmap from the input) the first
 * bytes choose; a seed node or server holding contents A and B; a node that
 * holds B and downloads A. Real engines are linked in memory and exchange
 * real frames (pn_msg_encode, pn_msg_decode). The rest of the input is a
 * sequence of operations: deliver queued frames, inject a message built from
 * the input (or raw bytes that decode) into any engine from any of its peer
 * keys, including outsiders with any ID (a fresh one, another engine's, its
 * own), advance time and tick, add and close peers, answer the deferred
 * SEND_CHUNK / WRITE_CHUNK / DIAL actions (ok, I/O error, congested, dial
 * failed), want and unwant contents with or without the hash list and a
 * resume bitmap, offer providers.
 *
 * After every input each engine is drained fully and checked: engine_check()
 * is NULL; every SEND encodes and goes to a live peer; a SEND_CHUNK is of a
 * chunk the engine holds, with the right length; a WRITE_CHUNK comes after
 * the hash list was recorded; a HASHES list hashes to its content ID; a DONE
 * comes once, after every chunk was written; the peer and download counts
 * agree with what the harness added. Any disagreement calls abort().
 *
 * Contents: A has 3 chunks (2 full and a tail), B one short chunk, C 300
 * chunks whose hash list is known but whose data nobody has (every chunk of
 * it fails its hash), D an ID from the input that nobody knows.
 *
 * Built with -DFUZZ_ENGINE_TRACE it prints every action, to read a crash. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "peernet.h"
#include "crypto/crypto.h"
#include "proto/engine.h"
#include "store/store.h"
#include "util/buf.h"
#include "util/text.h"
#include "wire/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NODES 3
#define NC 4                 /* contents A, B, C, D */
#define C_A 0
#define C_B 1
#define C_C 2
#define C_D 3
#define A_SIZE (2ull * PN_CHUNK_SIZE + 777)
#define B_SIZE 1000ull
#define C_CHUNKS 300
#define BM_MAX ((C_CHUNKS + 7) / 8)
#define KEYS_MAX 12          /* live peer keys per engine */
#define PEND_MAX 32          /* deferred SEND_CHUNK / WRITE_CHUNK per engine */
#define DIALS_MAX 8
#define CLOSES_MAX 32
#define QUEUE_MAX 2048       /* frames in flight between engines */
#define OPS_MAX 300
#define RUN_STEPS 400        /* frames one RUN operation delivers at most */
#define ACTIONS_MAX 20000    /* actions one drain may yield; more is a runaway */
#define SETTLE_MAX 64
#define RAW_MAX 96

enum op {
	OP_DELIVER, OP_RUN, OP_INJECT, OP_RAW, OP_TICK, OP_CONNECT, OP_CLOSE, OP_WRITE_RESULT, OP_SEND_RESULT,
	OP_WRITABLE, OP_WANT, OP_UNWANT, OP_OFFER, OP_PROVIDER, OP_DIAL_RESULT, OP_RELINK, OP_COUNT
};

struct key {
	uint32_t k;
	int other;               /* the linked engine, or -1: an outsider the input speaks for */
	bool established;
	bool closing;            /* the engine asked to close it */
	uint8_t id[PN_ID_BYTES];
};

struct pend_write {
	uint32_t k;
	int c;
	uint32_t index;
	bool good;               /* the data matched its hash */
};

struct pend_send {
	uint32_t k;
	int c;
	uint32_t index, req_id, len;
};

struct dial {
	uint8_t id[PN_ID_BYTES];
	int c;
};

struct hnode {
	struct engine *e;
	enum engine_role role;
	uint8_t id[PN_ID_BYTES];
	bool holds[NC];              /* complete in the store */
	bool partial[NC];            /* in part in the store: partial_bm */
	uint8_t partial_bm[NC][BM_MAX];
	uint8_t held[NC][BM_MAX];    /* chunks written by its downloads (or on disk when wanted) */
	bool wanted[NC];
	bool done_seen[NC];
	bool hashes_recorded[NC];
	struct key keys[KEYS_MAX];
	int nkeys;
	struct pend_write pw[PEND_MAX];
	int npw;
	struct pend_send ps[PEND_MAX];
	int nps;
	struct dial dials[DIALS_MAX];
	int ndials;
	uint32_t closes[CLOSES_MAX];
	int ncloses;
	char name[NC][PN_NAME_MAX + 1];
};

/* A frame in flight, or a CHUNK (kept by reference: no 256 KiB copies). */
struct qmsg {
	int to;
	uint32_t k;
	size_t len;
	uint8_t *frame;
	int chunk_c;             /* CHUNK of this content, or -1 */
	uint32_t index, req_id;
};

struct input {
	const uint8_t *p;
	size_t left;
};

static struct hnode N[NODES];
static struct qmsg Q[QUEUE_MAX];
static uint32_t qhead, qlen;
static uint64_t now;
static uint32_t next_key;

/* Fixed for the run. */
static bool inited;
static struct pn_cid cids[NC];
static uint8_t *cdata[NC];       /* the true bytes (A, B); NULL: none exist */
static uint8_t *chashes[NC];     /* the true hash lists (A, B, C); NULL for D */
static uint32_t cchunks[NC];
static uint8_t zeros[PN_CHUNK_SIZE];
static uint8_t scratch[PN_CHUNK_SIZE];
static uint8_t frame[PN_FRAME_HDR + PN_FRAME_MAX];

/* A failed invariant says which one before abort(). */
#define check(ok)                                                                              \
	do {                                                                                   \
		if (!(ok)) {                                                                   \
			fprintf(stderr, "fuzz_engine.c:%d: %s does not hold\n", __LINE__, #ok); \
			abort();                                                               \
		}                                                                              \
	} while (0)

static uint8_t next(struct input *in)
{
	if (!in->left)
		return 0;
	in->left--;
	return *in->p++;
}

static uint32_t next32(struct input *in)
{
	uint32_t v = 0;
	for (int i = 0; i < 4; i++)
		v = v << 8 | next(in);
	return v;
}

static bool bit(const uint8_t *bm, uint32_t i) { return bm[i / 8] & (0x80 >> (i % 8)); }
static void set_bit(uint8_t *bm, uint32_t i) { bm[i / 8] |= (uint8_t)(0x80 >> (i % 8)); }

static void make_content(int c, uint64_t size, uint32_t seed, bool with_data)
{
	cids[c].size = size;
	cchunks[c] = pn_cid_chunks(&cids[c]);
	chashes[c] = malloc((size_t)cchunks[c] * PN_HASH_BYTES);
	check(chashes[c] != NULL);
	uint32_t x = seed;
	if (with_data) {
		cdata[c] = malloc(size ? size : 1);
		check(cdata[c] != NULL);
		for (uint64_t i = 0; i < size; i++) {
			x = x * 1103515245u + 12345u;
			cdata[c][i] = (uint8_t)(x >> 16);
		}
		for (uint32_t i = 0; i < cchunks[c]; i++) {
			uint64_t off = (uint64_t)i * PN_CHUNK_SIZE;
			check(pn_sha256(cdata[c] + off, pn_cid_chunk_len(&cids[c], i), chashes[c] + (size_t)i * PN_HASH_BYTES) ==
			      PN_OK);
		}
	} else {
		for (size_t i = 0; i < (size_t)cchunks[c] * PN_HASH_BYTES; i++) {
			x = x * 1103515245u + 12345u;
			chashes[c][i] = (uint8_t)(x >> 16);
		}
	}
	check(store_tree_root(chashes[c], cchunks[c], cids[c].root) == PN_OK);
}

static void init_once(void)
{
	if (inited)
		return;
	inited = true;
	make_content(C_A, A_SIZE, 7, true);
	make_content(C_B, B_SIZE, 11, true);
	make_content(C_C, (uint64_t)C_CHUNKS * PN_CHUNK_SIZE, 13, false);
}

static int content_of(const struct pn_cid *cid)
{
	for (int c = 0; c < NC; c++)
		if (!memcmp(cid, &cids[c], sizeof *cid))
			return c;
	return -1;
}

static bool lookup_cb(void *ud, const struct pn_cid *cid, struct engine_content *out)
{
	struct hnode *n = ud;
	int c = content_of(cid);
	if (c < 0 || !chashes[c] || (!n->holds[c] && !n->partial[c]))
		return false;
	out->name = n->name[c];
	out->hashes = chashes[c];
	out->bitmap = n->holds[c] ? NULL : n->partial_bm[c];
	return true;
}

static const struct engine_store_ops store_ops = {.lookup = lookup_cb};

static bool holds_chunk(const struct hnode *n, int c, uint32_t index)
{
	return n->holds[c] || (n->partial[c] && bit(n->partial_bm[c], index)) || bit(n->held[c], index);
}

static struct key *key_get(struct hnode *n, uint32_t k)
{
	for (int i = 0; i < n->nkeys; i++)
		if (n->keys[i].k == k)
			return &n->keys[i];
	return NULL;
}

static void key_drop(struct hnode *n, uint32_t k)
{
	for (int i = 0; i < n->nkeys; i++)
		if (n->keys[i].k == k) {
			n->keys[i] = n->keys[--n->nkeys];
			return;
		}
}

static void ask_close(struct hnode *n, uint32_t k)
{
	for (int i = 0; i < n->ncloses; i++)
		if (n->closes[i] == k)
			return;
	if (n->ncloses < CLOSES_MAX)
		n->closes[n->ncloses++] = k;
}

/* NULL when the queue is full (the link is then closed). */
static struct qmsg *enqueue(int to, uint32_t k, const uint8_t *f, size_t len)
{
	if (qlen == QUEUE_MAX) {
		/* The link is full: the driver would drop the connection. */
		ask_close(&N[to], k);
		return NULL;
	}
	struct qmsg *m = &Q[(qhead + qlen++) % QUEUE_MAX];
	m->to = to;
	m->k = k;
	m->len = len;
	m->chunk_c = -1;
	m->frame = malloc(len);
	check(m->frame != NULL);
	memcpy(m->frame, f, len);
	return m;
}

static void check_counts(int i)
{
	struct hnode *n = &N[i];
	const char *bad = engine_check(n->e);
	check(bad == NULL);
	struct engine_stats st;
	engine_stats(n->e, &st);
	check(st.peers == (uint32_t)n->nkeys);
	uint32_t downloads = 0;
	for (int c = 0; c < NC; c++)
		downloads += n->wanted[c];
	check(st.downloads == downloads);
	for (int j = 0; j < n->nkeys; j++) {
		struct engine_peer_info pi;
		check(engine_peer_info(n->e, n->keys[j].k, &pi));
	}
}

/* Runs engine i's actions, checking each. The deferred ones are kept for
 * the input to answer. */
static void drain(int i)
{
	struct hnode *n = &N[i];
	struct engine_action a;
	int count = 0;

	check(engine_check(n->e) == NULL);
	while (engine_next_action(n->e, &a)) {
		check(++count < ACTIONS_MAX);
#ifdef FUZZ_ENGINE_TRACE
		fprintf(stderr, "t=%llu engine %d: action %d peer %u type 0x%02x index %u\n", (unsigned long long)now, i,
			a.type, a.peer, a.type == ENGINE_SEND ? a.msg.type : 0, a.index);
		if (a.type == ENGINE_CLOSE)
			fprintf(stderr, "  close: %s\n", a.why ? a.why : "");
#endif
		check(engine_check(n->e) == NULL);
		struct key *key = NULL;
		int c = content_of(&a.cid);
		switch (a.type) {
		case ENGINE_SEND: {
			key = key_get(n, a.peer);
			check(key != NULL && !key->closing);
			struct pn_writer w;
			pn_wr_init(&w, frame, sizeof frame);
			int enc = pn_msg_encode(&a.msg, &w);
			if (enc != PN_OK)
				fprintf(stderr, "engine %d sent type 0x%02x that does not encode (%d)\n", i, a.msg.type, enc);
			check(enc == PN_OK);
			if (key->other >= 0)
				enqueue(key->other, a.peer, w.data, w.len);
			break;
		}
		case ENGINE_SEND_CHUNK:
			key = key_get(n, a.peer);
			check(key != NULL && !key->closing);
			check(c >= 0 && a.index < cchunks[c] && holds_chunk(n, c, a.index));
			check(a.len == pn_cid_chunk_len(&a.cid, a.index));
			if (n->nps == PEND_MAX) { /* the oldest read finishes */
				engine_chunk_sent(n->e, n->ps[0].k, &cids[n->ps[0].c], n->ps[0].index, n->ps[0].len, true,
						  false, now);
				n->ps[0] = n->ps[--n->nps];
			}
			n->ps[n->nps++] = (struct pend_send){a.peer, c, a.index, a.req_id, a.len};
			break;
		case ENGINE_WRITE_CHUNK:
			check(c >= 0 && n->wanted[c] && n->hashes_recorded[c] && a.index < cchunks[c]);
			check(a.len == pn_cid_chunk_len(&a.cid, a.index));
			/* Verified now: a.data is gone after the next input. */
			bool good_now = store_chunk_ok(chashes[c] + (size_t)a.index * PN_HASH_BYTES, a.data, a.len);
			uint32_t wk = a.peer, windex = a.index;
			if (n->npw == PEND_MAX) {
				struct pend_write *p = &n->pw[0];
				bool good = p->good;
				uint32_t pk = p->k, pidx = p->index;
				int pc = p->c;
				n->pw[0] = n->pw[--n->npw];
				if (good)
					set_bit(n->held[pc], pidx);
				engine_chunk_written(n->e, pk, &cids[pc], pidx, good ? PN_OK : PN_ECORRUPT, now);
			}
			n->pw[n->npw++] = (struct pend_write){wk, c, windex, good_now};
			break;
		case ENGINE_HASHES: {
			check(c >= 0 && n->wanted[c] && !n->hashes_recorded[c]);
			check(a.data != NULL && a.len == cchunks[c] * PN_HASH_BYTES);
			uint8_t root[PN_HASH_BYTES];
			check(store_tree_root(a.data, cchunks[c], root) == PN_OK);
			check(memcmp(root, a.cid.root, PN_HASH_BYTES) == 0);
			n->hashes_recorded[c] = true;
			bool any = false;
			for (uint32_t b = 0; b < BM_MAX; b++)
				any |= n->held[c][b] != 0;
			engine_hashes_recorded(n->e, &a.cid, any ? n->held[c] : NULL, now);
			break;
		}
		case ENGINE_NAME:
			check(a.name != NULL && pn_name_valid(a.name, strlen(a.name)));
			break;
		case ENGINE_DIAL:
			check(memcmp(a.id, n->id, PN_ID_BYTES) != 0);
			check(memchr(a.addr, 0, sizeof a.addr) != NULL);
			if (n->ndials < DIALS_MAX) {
				memcpy(n->dials[n->ndials].id, a.id, PN_ID_BYTES);
				n->dials[n->ndials++].c = c;
			}
			break;
		case ENGINE_CLOSE:
			key = key_get(n, a.peer);
			check(key != NULL);
			key->closing = true;
			ask_close(n, a.peer);
			break;
		case ENGINE_PEER_READY:
			check(key_get(n, a.peer) != NULL);
			break;
		case ENGINE_DONE:
			check(c >= 0 && n->wanted[c] && !n->done_seen[c]);
			for (uint32_t j = 0; j < cchunks[c]; j++)
				check(bit(n->held[c], j));
			n->done_seen[c] = true;
			n->wanted[c] = false;
			n->hashes_recorded[c] = false;
			n->holds[c] = true;
			break;
		case ENGINE_STALLED:
			check(c >= 0 && n->wanted[c]);
			break;
		case ENGINE_NOT_FOUND:
			break;
		case ENGINE_PEER_ERROR:
			check(a.text_len <= PN_ERRMSG_MAX);
			break;
		default:
			abort();
		}
	}
}

/* Closes every key an engine asked to close (both ends of a link), drains
 * again, until all is quiet. */
static void settle(void)
{
	for (int round = 0; round < SETTLE_MAX; round++) {
		bool any = false;
		for (int i = 0; i < NODES; i++)
			drain(i);
		for (int i = 0; i < NODES; i++) {
			struct hnode *n = &N[i];
			while (n->ncloses) {
				uint32_t k = n->closes[--n->ncloses];
				struct key *key = key_get(n, k);
				if (!key)
					continue;
				int other = key->other;
				key_drop(n, k);
				engine_peer_closed(n->e, k, now);
				if (other >= 0 && key_get(&N[other], k)) {
					key_drop(&N[other], k);
					engine_peer_closed(N[other].e, k, now);
				}
				any = true;
			}
		}
		if (!any)
			break;
	}
	for (int i = 0; i < NODES; i++)
		check_counts(i);
}

/* Hands a decoded message to engine i from key k, as a driver does. */
static void feed(int i, uint32_t k, const struct pn_msg *m)
{
	int r = engine_on_msg(N[i].e, k, m, now);
	drain(i);
	if (r != PN_OK && r != PN_ENOTSUP && r != PN_EAGAIN)
		ask_close(&N[i], k);
	check(r <= 0);
	settle();
}

static void deliver_one(void)
{
	if (!qlen)
		return;
	struct qmsg m = Q[qhead];
	qhead = (qhead + 1) % QUEUE_MAX;
	qlen--;
	if (m.chunk_c >= 0 && key_get(&N[m.to], m.k)) {
		struct pn_msg msg = {.type = PN_MSG_CHUNK};
		msg.u.chunk = (struct pn_msg_chunk){m.req_id, cids[m.chunk_c], m.index,
						    pn_cid_chunk_len(&cids[m.chunk_c], m.index),
						    cdata[m.chunk_c] ? cdata[m.chunk_c] + (size_t)m.index * PN_CHUNK_SIZE : zeros};
		feed(m.to, m.k, &msg);
	} else if (key_get(&N[m.to], m.k)) {
		struct pn_msg msg;
		size_t body_len;
		check(pn_frame_check(m.frame, m.len, PN_FRAME_MAX, &body_len) == PN_OK);
		check(body_len + PN_FRAME_HDR == m.len);
		check(pn_msg_decode(m.frame + PN_FRAME_HDR, body_len, &msg) == PN_OK);
		feed(m.to, m.k, &msg);
	}
	free(m.frame);
}

static void resolve_send(int i, int j, bool ok, bool congested)
{
	struct hnode *n = &N[i];
	struct pend_send p = n->ps[j];
	n->ps[j] = n->ps[--n->nps];
	struct key *key = key_get(n, p.k);
	if (ok && key && key->other >= 0) {
		uint8_t hdr[PN_FRAME_HDR + PN_CHUNK_MSG_HDR];
		pn_chunk_hdr_encode(hdr, p.req_id, &cids[p.c], p.index, p.len);
		struct qmsg *q = enqueue(key->other, p.k, hdr, sizeof hdr);
		if (q) {
			q->chunk_c = p.c;
			q->index = p.index;
			q->req_id = p.req_id;
		}
	}
	engine_chunk_sent(n->e, p.k, &cids[p.c], p.index, p.len, ok, congested, now);
	settle();
}

static void resolve_write(int i, int j, int io_error)
{
	struct hnode *n = &N[i];
	struct pend_write p = n->pw[j];
	n->pw[j] = n->pw[--n->npw];
	int result = p.good ? (io_error ? io_error : PN_OK) : PN_ECORRUPT;
	if (result == PN_OK)
		set_bit(n->held[p.c], p.index);
	engine_chunk_written(n->e, p.k, &cids[p.c], p.index, result, now);
	settle();
}

/* Delivers frames and answers every deferred action with success. */
static void run_all(int steps)
{
	for (int s = 0; s < steps; s++) {
		bool moved = false;
		for (int i = 0; i < NODES; i++) {
			while (N[i].npw) {
				resolve_write(i, 0, 0);
				moved = true;
			}
			while (N[i].nps) {
				resolve_send(i, 0, true, false);
				moved = true;
			}
		}
		if (qlen) {
			deliver_one();
			moved = true;
		}
		if (!moved)
			break;
	}
}

static int pick_node(struct input *in)
{
	uint8_t b = next(in) % 5;
	return b < NODES ? b : 0; /* T more often */
}

static struct key *pick_key(struct input *in, int i)
{
	struct hnode *n = &N[i];
	uint8_t b = next(in);
	return n->nkeys ? &n->keys[b % n->nkeys] : NULL;
}

static void pick_cid(struct input *in, struct pn_cid *out, int *c)
{
	uint8_t b = next(in);
	*c = b % NC;
	*out = cids[*c];
	if (*c == C_D) {
		memset(out->root, next(in), sizeof out->root);
		out->size = (uint64_t)next32(in) << (b >> 5); /* sometimes past PN_MAX_FILE_SIZE */
	}
}

/* IDs an outsider may claim: fresh ones, another engine's, the engine's own. */
static void pick_id(struct input *in, uint8_t id[PN_ID_BYTES])
{
	uint8_t b = next(in);
	if (b % 4 == 3)
		memcpy(id, N[(b / 4) % NODES].id, PN_ID_BYTES);
	else {
		memset(id, 0xe0, PN_ID_BYTES);
		id[31] = b % 8;
	}
}

static void link_engines(int a, int b)
{
	struct hnode *na = &N[a], *nb = &N[b];
	if (na->nkeys == KEYS_MAX || nb->nkeys == KEYS_MAX)
		return;
	uint32_t k = ++next_key;
	if (engine_peer_add(na->e, k, true, nb->id, now) != PN_OK)
		return;
	if (engine_peer_add(nb->e, k, false, NULL, now) != PN_OK) {
		engine_peer_closed(na->e, k, now);
		return;
	}
	na->keys[na->nkeys++] = (struct key){.k = k, .other = b, .established = true};
	memcpy(na->keys[na->nkeys - 1].id, nb->id, PN_ID_BYTES);
	nb->keys[nb->nkeys++] = (struct key){.k = k, .other = a, .established = true};
	memcpy(nb->keys[nb->nkeys - 1].id, na->id, PN_ID_BYTES);
	engine_peer_established(na->e, k, nb->id, 0, now);
	engine_peer_established(nb->e, k, na->id, 0, now);
	settle();
}

/* An outsider connects (or is dialled): the input speaks for it. */
static uint32_t add_outsider(int i, bool outgoing, const uint8_t id[PN_ID_BYTES], bool establish, uint32_t features)
{
	struct hnode *n = &N[i];
	if (n->nkeys == KEYS_MAX)
		return 0;
	uint32_t k = ++next_key;
	int r = engine_peer_add(n->e, k, outgoing, outgoing ? id : NULL, now);
	check(r == PN_OK || r == PN_EACCES || r == PN_ENOMEM);
	if (r != PN_OK) {
		settle();
		return 0;
	}
	struct key *key = &n->keys[n->nkeys++];
	*key = (struct key){.k = k, .other = -1};
	memcpy(key->id, id, PN_ID_BYTES);
	if (establish) {
		key->established = true;
		engine_peer_established(n->e, k, id, features, now);
	}
	settle();
	return k;
}

/* Builds a message of a type the engine handles from the input; false when
 * the fields do not make a valid message (the decoder would refuse it). */
static bool build_msg(struct input *in, struct pn_msg *m, int target)
{
	static const uint8_t types[] = {
		PN_MSG_HELLO, PN_MSG_ERROR, PN_MSG_PING, PN_MSG_PONG, PN_MSG_META_REQ, PN_MSG_META,
		PN_MSG_HASH_REQ, PN_MSG_HASHES, PN_MSG_CHUNK_REQ, PN_MSG_CHUNK, PN_MSG_CANCEL, PN_MSG_INTERESTED,
		PN_MSG_NOT_INTERESTED, PN_MSG_BITFIELD, PN_MSG_HAVE, PN_MSG_CHOKE, PN_MSG_UNCHOKE, PN_MSG_LIST_REQ,
		PN_MSG_PUT_BEGIN, PN_MSG_DIR_OK,
	};
	static const char *const names[] = {"file.bin", "b", "report 2024.pdf", "x.txt"};
	static uint8_t bitmap[BM_MAX], text[PN_ERRMSG_MAX];
	int c;
	uint8_t b;

	memset(m, 0, sizeof *m);
	m->type = types[next(in) % sizeof types];
	switch (m->type) {
	case PN_MSG_HELLO:
		b = next(in);
		m->u.hello.version = b & 0x80 ? next(in) : PN_PROTOCOL_VERSION;
		m->u.hello.role = (uint8_t)(1 + b % 4);
		m->u.hello.listen_port = (uint16_t)(b & 0x40 ? 0 : 7000 + (b & 7));
		m->u.hello.features = b & 0x20 ? next32(in) : (b & 0x10 ? ENGINE_LINK_FEATURE : 0);
		break;
	case PN_MSG_ERROR:
		b = next(in);
		m->u.error.req_id = b & 0x80 ? next32(in) : b % 8;
		m->u.error.code = (uint16_t)(1 + next(in) % 8);
		m->u.error.text_len = (uint16_t)(next(in) % 16);
		for (uint16_t j = 0; j < m->u.error.text_len; j++)
			text[j] = next(in);
		m->u.error.text = (const char *)text;
		break;
	case PN_MSG_PING:
	case PN_MSG_PONG:
		m->u.ping.nonce = next32(in);
		break;
	case PN_MSG_META_REQ:
	case PN_MSG_CHUNK_REQ:
	case PN_MSG_CANCEL:
		b = next(in);
		m->u.ref.req_id = b & 0x80 ? next32(in) : b % 16;
		pick_cid(in, &m->u.ref.cid, &c);
		if (m->type != PN_MSG_META_REQ)
			m->u.ref.index = next(in) % (pn_cid_chunks(&m->u.ref.cid) + 1);
		break;
	case PN_MSG_META:
	case PN_MSG_PUT_BEGIN:
		b = next(in);
		m->u.meta.req_id = b & 0x80 ? next32(in) : b % 16;
		pick_cid(in, &m->u.meta.cid, &c);
		m->u.meta.name = names[next(in) % 4];
		m->u.meta.name_len = (uint16_t)strlen(m->u.meta.name);
		break;
	case PN_MSG_HASH_REQ:
	case PN_MSG_HASHES: {
		b = next(in);
		m->u.hashes.req_id = b & 0x80 ? next32(in) : b % 16;
		pick_cid(in, &m->u.hashes.cid, &c);
		uint32_t nch = pn_cid_chunks(&m->u.hashes.cid);
		m->u.hashes.first = next(in) % (nch + 1);
		b = next(in);
		m->u.hashes.count = b & 0x80 ? nch - m->u.hashes.first : (uint32_t)b % 8 + 1;
		if (m->type == PN_MSG_HASHES) {
			if (m->u.hashes.count > PN_HASHES_MAX || m->u.hashes.first + m->u.hashes.count > nch)
				return false;
			if (chashes[c] && !(b & 0x40)) {
				m->u.hashes.hashes = chashes[c] + (size_t)m->u.hashes.first * PN_HASH_BYTES;
			} else {
				memset(scratch, next(in), (size_t)m->u.hashes.count * PN_HASH_BYTES);
				m->u.hashes.hashes = scratch;
			}
		}
		break;
	}
	case PN_MSG_CHUNK: {
		b = next(in);
		m->u.chunk.req_id = b & 0x80 ? next32(in) : b % 16;
		pick_cid(in, &m->u.chunk.cid, &c);
		uint32_t nch = pn_cid_chunks(&m->u.chunk.cid);
		m->u.chunk.index = next(in) % nch;
		m->u.chunk.len = pn_cid_chunk_len(&m->u.chunk.cid, m->u.chunk.index);
		if (m->u.chunk.len > PN_CHUNK_SIZE)
			return false;
		if (cdata[c] && !(b & 0x40)) {
			m->u.chunk.data = cdata[c] + (size_t)m->u.chunk.index * PN_CHUNK_SIZE;
		} else {
			memset(scratch, next(in), m->u.chunk.len);
			m->u.chunk.data = scratch;
		}
		break;
	}
	case PN_MSG_INTERESTED:
	case PN_MSG_NOT_INTERESTED:
	case PN_MSG_HAVE:
		pick_cid(in, &m->u.cidref.cid, &c);
		if (m->type == PN_MSG_HAVE)
			m->u.cidref.index = next(in) % pn_cid_chunks(&m->u.cidref.cid);
		break;
	case PN_MSG_BITFIELD: {
		pick_cid(in, &m->u.bitfield.cid, &c);
		uint32_t nch = pn_cid_chunks(&m->u.bitfield.cid);
		if (nch > C_CHUNKS)
			return false;
		m->u.bitfield.nchunks = nch;
		b = next(in);
		for (uint32_t j = 0; j < (nch + 7) / 8; j++)
			bitmap[j] = b & 0x80 ? 0xff : (b & 0x40 ? 0 : next(in));
		if (nch % 8)
			bitmap[(nch - 1) / 8] &= (uint8_t)(0xff << (8 - nch % 8));
		m->u.bitfield.bitmap = bitmap;
		break;
	}
	case PN_MSG_LIST_REQ:
		m->u.list_req.req_id = next(in);
		break;
	case PN_MSG_DIR_OK:
	default:
		/* Not the engine's: it must say PN_ENOTSUP (or refuse it). */
		m->type = PN_MSG_CHOKE + (next(in) & 1);
		break;
	}
	(void)target;
	return true;
}

/* Encodes m and decodes it again: the engine gets what a driver would. */
static bool roundtrip(const struct pn_msg *m, struct pn_msg *out)
{
	struct pn_writer w;
	pn_wr_init(&w, frame, sizeof frame);
	if (pn_msg_encode(m, &w) != PN_OK)
		return false;
	check(pn_msg_decode(w.data + PN_FRAME_HDR, w.len - PN_FRAME_HDR, out) == PN_OK);
	return true;
}

static void setup(struct input *in)
{
	uint8_t b0 = next(in), b1 = next(in), b2 = next(in);
	static const enum engine_role roles[] = {ENGINE_NODE, ENGINE_SERVER, ENGINE_CLIENT};

	memset(N, 0, sizeof N);
	qhead = qlen = 0;
	now = 1000;
	next_key = 0;
	N[0].role = roles[b0 % 3];
	N[1].role = b0 & 0x80 ? ENGINE_SERVER : ENGINE_NODE;
	N[2].role = ENGINE_NODE;
	for (int i = 0; i < NODES; i++) {
		memset(N[i].id, 0, PN_ID_BYTES);
		N[i].id[0] = (uint8_t)(0x10 * (i + 1));
		N[i].id[31] = (uint8_t)i;
		for (int c = 0; c < NC; c++)
			strcpy(N[i].name[c], "file.bin");
	}
	/* T's store. */
	switch ((b0 >> 2) % 5) {
	case 1:
		N[0].holds[C_A] = true;
		break;
	case 2:
		N[0].partial[C_A] = true;
		N[0].partial_bm[C_A][0] = next(in) & 0xe0; /* 3 chunks: trailing bits zero */
		break;
	case 3:
		N[0].partial[C_C] = true;
		for (int j = 0; j < 4; j++)
			N[0].partial_bm[C_C][next(in) % BM_MAX] = next(in);
		N[0].partial_bm[C_C][BM_MAX - 1] &= (uint8_t)(0xff << (8 * BM_MAX - C_CHUNKS));
		break;
	case 4:
		N[0].holds[C_B] = true;
		break;
	}
	N[1].holds[C_A] = N[1].holds[C_B] = true;
	N[2].holds[C_B] = true;
	for (int i = 0; i < NODES; i++) {
		struct engine_opts o = {
			.role = N[i].role,
			.listen_port = (uint16_t)(7000 + i),
			.seed = (uint64_t)b1 << 8 | (uint64_t)i,
			.store = &store_ops,
			.store_ud = &N[i],
			.stall_ms = i == 0 && (b2 & 1) ? 300 : 5000,
			.request_timeout_ms = i == 0 && (b2 & 2) ? 150 : 2000,
			.upload_slots = i == 0 ? (uint32_t)(b2 >> 6) : 0,
			.rechoke_ms = i == 0 && (b2 & 4) ? 200 : 0,
			.optimistic_ms = i == 0 && (b2 & 4) ? 500 : 0,
			.inflight_node = i == 0 ? (uint32_t)(b2 >> 3) % 4 : 0,
			.inflight_server = i == 0 ? (uint32_t)(b2 >> 3) % 4 : 0,
			.no_super_seed = b1 & 1,
			.sequential = i == 0 && (b1 & 2),
		};
		memcpy(o.self_id, N[i].id, PN_ID_BYTES);
		N[i].e = engine_new(&o, now);
		check(N[i].e != NULL);
	}
	/* Who dials whom: T dials unless it is a server. */
	if (!(b1 & 0x10))
		N[0].role == ENGINE_SERVER ? link_engines(1, 0) : link_engines(0, 1);
	if (!(b1 & 0x20))
		N[0].role == ENGINE_SERVER ? link_engines(2, 0) : link_engines(0, 2);
	if (!(b1 & 0x40) && N[1].role == ENGINE_NODE)
		link_engines(2, 1);
	else if (!(b1 & 0x40))
		link_engines(2, 1);
	if ((b2 & 0x20) && engine_want(N[2].e, &cids[C_A], NULL, NULL, NULL, now) == PN_OK)
		N[2].wanted[C_A] = true;
	for (int j = 0; j < N[2].nkeys; j++)
		engine_peer_offer(N[2].e, N[2].keys[j].k, &cids[C_A], now);
	settle();
}

static void op_want(struct input *in, int i)
{
	struct hnode *n = &N[i];
	int c;
	struct pn_cid cid;
	pick_cid(in, &cid, &c);
	uint8_t b = next(in);
	bool with_hashes = (b & 1) && chashes[c] && c != C_D;
	uint8_t have[BM_MAX] = {0};
	if (with_hashes && (b & 2)) {
		for (uint32_t j = 0; j < (cchunks[c] + 7) / 8; j++)
			have[j] = b & 4 ? next(in) : 0;
		if (cchunks[c] % 8)
			have[(cchunks[c] - 1) / 8] &= (uint8_t)(0xff << (8 - cchunks[c] % 8));
	}
	const char *name = b & 8 ? "wanted.bin" : NULL;
	int r = engine_want(n->e, &cid, name, with_hashes ? chashes[c] : NULL, with_hashes && (b & 2) ? have : NULL,
			    now);
#ifdef FUZZ_ENGINE_TRACE
	fprintf(stderr, "t=%llu engine %d: want %d -> %d\n", (unsigned long long)now, i, c, r);
#endif
	if (r == PN_OK) {
		if (c == C_D) {
			/* An unknown ID: nobody can answer for it; let it go again. */
			engine_unwant(n->e, &cid, now);
			settle();
			return;
		}
		check(!n->wanted[c]);
		n->wanted[c] = true;
		n->done_seen[c] = false;
		n->hashes_recorded[c] = with_hashes;
		memset(n->held[c], 0, BM_MAX);
		if (with_hashes && (b & 2))
			memcpy(n->held[c], have, BM_MAX);
	} else {
		check(r == PN_EEXIST || r == PN_ELIMIT || r == PN_ENOTSUP || r == PN_EINVAL || r == PN_EBADID ||
		      r == PN_ENOMEM);
		if (r == PN_EEXIST)
			check(c == C_D || n->wanted[c]);
	}
	settle();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = {data, size};
	struct pn_msg m, d;

	init_once();
	setup(&in);
	for (int op = 0; op < OPS_MAX && in.left; op++) {
		uint8_t b = next(&in);
		int i = pick_node(&in);
		struct hnode *n = &N[i];
		switch (b % OP_COUNT) {
		case OP_DELIVER:
			deliver_one();
			break;
		case OP_RUN:
			run_all(RUN_STEPS);
			break;
		case OP_INJECT: {
			struct key *key = pick_key(&in, i);
			if (key && build_msg(&in, &m, i) && roundtrip(&m, &d))
				feed(i, key->k, &d);
			break;
		}
		case OP_RAW: {
			struct key *key = pick_key(&in, i);
			size_t len = next(&in) % RAW_MAX + 1;
			if (len > in.left)
				len = in.left;
			if (key && len && pn_msg_decode(in.p, len, &d) == PN_OK)
				feed(i, key->k, &d);
			in.p += len;
			in.left -= len;
			break;
		}
		case OP_TICK: {
			uint8_t t = next(&in);
			uint64_t wake = engine_next_wakeup(n->e);
			if (t & 0x80 && wake != UINT64_MAX && wake > now)
				now = wake; /* straight to T's next wake-up */
			else
				now += (uint64_t)(t & 0x7f) * (t & 0x40 ? 1000 : 10);
			for (int j = 0; j < NODES; j++)
				if (engine_next_wakeup(N[j].e) <= now)
					engine_tick(N[j].e, now);
			settle();
			break;
		}
		case OP_CONNECT: {
			uint8_t id[PN_ID_BYTES];
			uint8_t f = next(&in);
			pick_id(&in, id);
			add_outsider(i, f & 1, id, !(f & 2), f & 4 ? ENGINE_LINK_FEATURE : 0);
			break;
		}
		case OP_CLOSE: {
			struct key *key = pick_key(&in, i);
			if (key) {
				key->closing = true;
				ask_close(n, key->k);
				settle();
			}
			break;
		}
		case OP_WRITE_RESULT: {
			uint8_t f = next(&in);
			if (n->npw)
				resolve_write(i, f % n->npw, f & 0x80 ? (f & 0x40 ? PN_ENOSPC : PN_EIO) : 0);
			break;
		}
		case OP_SEND_RESULT: {
			uint8_t f = next(&in);
			if (n->nps)
				resolve_send(i, f % n->nps, !(f & 0x80), f & 0x40);
			break;
		}
		case OP_WRITABLE: {
			struct key *key = pick_key(&in, i);
			if (key) {
				engine_peer_writable(n->e, key->k, now);
				settle();
			}
			break;
		}
		case OP_WANT:
			op_want(&in, i);
			break;
		case OP_UNWANT: {
			int c;
			struct pn_cid cid;
			pick_cid(&in, &cid, &c);
			engine_unwant(n->e, &cid, now);
			if (c != C_D) {
				n->wanted[c] = false;
				n->hashes_recorded[c] = false;
			}
			settle();
			break;
		}
		case OP_OFFER: {
			struct key *key = pick_key(&in, i);
			int c;
			struct pn_cid cid;
			pick_cid(&in, &cid, &c);
			if (key) {
				engine_peer_offer(n->e, key->k, &cid, now);
				settle();
			}
			break;
		}
		case OP_PROVIDER: {
			uint8_t id[PN_ID_BYTES];
			int c;
			struct pn_cid cid;
			pick_id(&in, id);
			pick_cid(&in, &cid, &c);
			engine_provider(n->e, id, next(&in) & 1 ? "127.0.0.1:7001" : "[::1]:9", &cid, now);
			settle();
			break;
		}
		case OP_DIAL_RESULT: {
			uint8_t f = next(&in);
			if (!n->ndials)
				break;
			struct dial dl = n->dials[f % n->ndials];
			n->dials[f % n->ndials] = n->dials[--n->ndials];
			int other = -1;
			for (int j = 0; j < NODES; j++)
				if (j != i && !memcmp(N[j].id, dl.id, PN_ID_BYTES))
					other = j;
			if (f & 0x80) { /* the dial failed */
				uint32_t k = add_outsider(i, true, dl.id, false, 0);
				if (k) {
					ask_close(n, k);
					settle();
				}
			} else if (other >= 0 && N[other].role != ENGINE_CLIENT) {
				link_engines(i, other);
				if (dl.c >= 0 && n->nkeys)
					engine_peer_offer(n->e, n->keys[n->nkeys - 1].k, &cids[dl.c], now);
				settle();
			} else {
				uint32_t k = add_outsider(i, true, dl.id, true, 0);
				if (k && dl.c >= 0) {
					engine_peer_offer(n->e, k, &cids[dl.c], now);
					settle();
				}
			}
			break;
		}
		case OP_RELINK: {
			int j = pick_node(&in);
			if (j != i && N[j].role != ENGINE_CLIENT && N[i].role != ENGINE_SERVER)
				link_engines(i, j);
			break;
		}
		}
	}

	/* Everything in flight lands; time runs on. */
	run_all(QUEUE_MAX);
	now += 60000;
	for (int j = 0; j < NODES; j++)
		engine_tick(N[j].e, now);
	settle();
	run_all(QUEUE_MAX);

	for (int i = 0; i < NODES; i++) {
		engine_free(N[i].e);
		N[i].e = NULL;
	}
	while (qlen) {
		free(Q[qhead].frame);
		qhead = (qhead + 1) % QUEUE_MAX;
		qlen--;
	}
	return 0;
}
