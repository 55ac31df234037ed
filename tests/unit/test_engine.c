/* The peer engine, wired back to back in memory: several engines exchange
 * real encoded frames (pn_msg_encode / pn_msg_decode) through a FIFO, each
 * with an in-memory store, and real transfers are checked byte for byte. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "peernet.h"
#include "crypto/crypto.h"
#include "proto/engine.h"
#include "store/store.h"
#include "util/buf.h"
#include "wire/wire.h"

#define H_MAX_NODES 12
#define H_MAX_LINKS 64
#define H_MAX_MSGS 200000
#define H_STEPS_MAX 2000000

struct hnode {
	struct engine *e;
	uint8_t id[PN_ID_BYTES];
	enum engine_role role;
	bool complete;           /* holds the content whole (the store's) */
	uint8_t *data;           /* F bytes: the content, or what was written */
	uint8_t *hashes;         /* recorded hash list */
	uint8_t *have_on_disk;   /* resume: chunks "on disk" before the engine started */
	uint8_t written_bm[64];  /* chunks written (up to 512) */
	bool done, stalled, not_found;
	int corrupt;             /* serve damaged chunks */
	int written, bad_written, closes_banned, dials;
	bool pause_uploads;      /* report every send as congested */
	char name[PN_NAME_MAX + 1];
	uint32_t cancels_seen;   /* CANCEL messages received */
	uint32_t chunks_sent;
	uint32_t sent_log[16];   /* indexes of the first 16 chunks sent, in order */
};

struct hlink {
	int a, b;                /* node indexes; the key on both sides is link index + 1 */
	bool open;
};

struct hmsg {
	int to;
	uint32_t key;
	uint8_t *frame;
	size_t len;
};

struct harness {
	struct hnode n[H_MAX_NODES];
	int nnodes;
	struct hlink l[H_MAX_LINKS];
	int nlinks;
	struct hmsg *q;
	size_t qhead, qlen;
	uint64_t now;
	struct pn_cid cid;
	uint8_t *content;        /* the true bytes */
	uint8_t *hashes;
	uint32_t nchunks;
	uint8_t *frame;          /* scratch */
};

static struct harness H;
static bool h_no_super_seed; /* engines made from now on announce everything */

static bool lookup_cb(void *ud, const struct pn_cid *cid, struct engine_content *out)
{
	struct hnode *n = ud;
	if (!n->complete || memcmp(cid, &H.cid, sizeof *cid))
		return false;
	out->name = n->name;
	out->hashes = H.hashes;
	out->bitmap = NULL;
	return true;
}

static const struct engine_store_ops store_ops = {.lookup = lookup_cb};

static void make_content(uint64_t size, uint32_t seed)
{
	H.nchunks = size ? (uint32_t)((size + PN_CHUNK_SIZE - 1) / PN_CHUNK_SIZE) : 1;
	H.content = malloc(size ? size : 1);
	cr_assert_not_null(H.content);
	uint32_t x = seed;
	for (uint64_t i = 0; i < size; i++) {
		x = x * 1103515245u + 12345u;
		H.content[i] = (uint8_t)(x >> 16);
	}
	H.hashes = malloc((size_t)H.nchunks * PN_HASH_BYTES);
	for (uint32_t i = 0; i < H.nchunks; i++) {
		uint64_t off = (uint64_t)i * PN_CHUNK_SIZE;
		uint64_t len = size - off < PN_CHUNK_SIZE ? size - off : PN_CHUNK_SIZE;
		cr_assert_eq(pn_sha256(H.content + off, size ? len : 0, H.hashes + (size_t)i * PN_HASH_BYTES), PN_OK);
	}
	cr_assert_eq(store_tree_root(H.hashes, H.nchunks, H.cid.root), PN_OK);
	H.cid.size = size;
}

static int add_node(enum engine_role role, bool complete, uint64_t seed)
{
	int i = H.nnodes++;
	struct hnode *n = &H.n[i];
	memset(n, 0, sizeof *n);
	n->role = role;
	n->complete = complete;
	memset(n->id, 0, sizeof n->id);
	n->id[0] = (uint8_t)(0x10 * (i + 1));
	n->id[31] = (uint8_t)i;
	snprintf(n->name, sizeof n->name, "file.bin");
	n->data = calloc(1, H.cid.size ? H.cid.size : 1);
	if (complete)
		memcpy(n->data, H.content, H.cid.size);
	struct engine_opts o = {
		.role = role,
		.listen_port = (uint16_t)(7000 + i),
		.seed = seed + (uint64_t)i,
		.store = &store_ops,
		.store_ud = n,
		.stall_ms = 5000,
		.request_timeout_ms = 2000,
		.no_super_seed = h_no_super_seed,
	};
	memcpy(o.self_id, n->id, PN_ID_BYTES);
	n->e = engine_new(&o, H.now);
	cr_assert_not_null(n->e);
	return i;
}

static void h_init(uint64_t size)
{
	memset(&H, 0, sizeof H);
	h_no_super_seed = false;
	H.now = 1000;
	H.q = calloc(H_MAX_MSGS, sizeof *H.q);
	H.frame = malloc(PN_FRAME_HDR + PN_FRAME_MAX);
	cr_assert(H.q && H.frame);
	make_content(size, 7);
}

static void h_free(void)
{
	for (int i = 0; i < H.nnodes; i++) {
		engine_free(H.n[i].e);
		free(H.n[i].data);
		free(H.n[i].hashes);
		free(H.n[i].have_on_disk);
	}
	for (size_t i = 0; i < H.qlen; i++)
		free(H.q[(H.qhead + i) % H_MAX_MSGS].frame);
	free(H.q);
	free(H.frame);
	free(H.content);
	free(H.hashes);
}

static bool bit_of(const uint8_t *bm, uint32_t i) { return bm && (bm[i / 8] & (0x80 >> (i % 8))); }

static struct hlink *link_of(int node, uint32_t key, int *other)
{
	if (key == 0 || key > (uint32_t)H.nlinks)
		return NULL;
	struct hlink *l = &H.l[key - 1];
	if (l->a == node)
		*other = l->b;
	else if (l->b == node)
		*other = l->a;
	else
		return NULL;
	return l;
}

static void enqueue(int to, uint32_t key, const uint8_t *frame, size_t len)
{
	cr_assert_lt(H.qlen, H_MAX_MSGS, "message queue overflow");
	struct hmsg *m = &H.q[(H.qhead + H.qlen++) % H_MAX_MSGS];
	m->to = to;
	m->key = key;
	m->frame = malloc(len);
	memcpy(m->frame, frame, len);
	m->len = len;
}

/* Connects a (dialler) to b and runs the handshake inputs. */
static uint32_t h_connect(int a, int b)
{
	cr_assert_lt(H.nlinks, H_MAX_LINKS);
	uint32_t key = (uint32_t)++H.nlinks;
	H.l[key - 1] = (struct hlink){.a = a, .b = b, .open = true};
	cr_assert_eq(engine_peer_add(H.n[a].e, key, true, H.n[b].id, H.now), PN_OK);
	cr_assert_eq(engine_peer_add(H.n[b].e, key, false, NULL, H.now), PN_OK);
	engine_peer_established(H.n[a].e, key, H.n[b].id, 0, H.now);
	engine_peer_established(H.n[b].e, key, H.n[a].id, 0, H.now);
	return key;
}

static void h_close(uint32_t key)
{
	struct hlink *l = &H.l[key - 1];
	if (!l->open)
		return;
	l->open = false;
	engine_peer_closed(H.n[l->a].e, key, H.now);
	engine_peer_closed(H.n[l->b].e, key, H.now);
}

/* Runs node i's actions. Returns how many there were. */
static int drain(int i)
{
	struct hnode *n = &H.n[i];
	struct engine_action a;
	int count = 0;
	while (engine_next_action(n->e, &a)) {
		count++;
		cr_assert_lt(count, 100000, "engine produced actions without end");
		const char *bad = engine_check(n->e);
		cr_assert_null(bad, "node %d: %s", i, bad);
		int other = -1;
		struct hlink *l = NULL;
		switch (a.type) {
		case ENGINE_SEND: {
			l = link_of(i, a.peer, &other);
			cr_assert_not_null(l, "SEND to unknown peer %u", a.peer);
			if (!l->open)
				break;
			struct pn_writer w;
			pn_wr_init(&w, H.frame, PN_FRAME_HDR + PN_FRAME_MAX);
			cr_assert_eq(pn_msg_encode(&a.msg, &w), PN_OK, "encode type 0x%02x", a.msg.type);
			enqueue(other, a.peer, w.data, w.len);
			break;
		}
		case ENGINE_SEND_CHUNK: {
			l = link_of(i, a.peer, &other);
			cr_assert_not_null(l);
			cr_assert(n->complete || bit_of(n->written_bm, a.index) || bit_of(n->have_on_disk, a.index),
				  "SEND_CHUNK of a chunk the node does not hold");
			uint32_t len = pn_cid_chunk_len(&a.cid, a.index);
			cr_assert_eq(len, a.len);
			uint8_t *data = H.frame + PN_FRAME_HDR + PN_CHUNK_MSG_HDR;
			memcpy(data, n->data + (size_t)a.index * PN_CHUNK_SIZE, len);
			if (n->corrupt && len)
				data[len / 2] ^= 0x5a;
			pn_chunk_hdr_encode(H.frame, a.req_id, &a.cid, a.index, len);
			if (l->open)
				enqueue(other, a.peer, H.frame, PN_FRAME_HDR + PN_CHUNK_MSG_HDR + len);
			n->chunks_sent++;
			if (n->chunks_sent <= 16)
				n->sent_log[n->chunks_sent - 1] = a.index;
			engine_chunk_sent(n->e, a.peer, &a.cid, a.index, len, true, n->pause_uploads, H.now);
			break;
		}
		case ENGINE_WRITE_CHUNK: {
			cr_assert_not_null(n->hashes, "WRITE_CHUNK before the hash list was recorded");
			bool ok = store_chunk_ok(n->hashes + (size_t)a.index * PN_HASH_BYTES, a.data, a.len);
			if (ok) {
				memcpy(n->data + (size_t)a.index * PN_CHUNK_SIZE, a.data, a.len);
				n->written++;
				n->written_bm[a.index / 8] |= (uint8_t)(0x80 >> (a.index % 8));
			} else {
				n->bad_written++;
			}
			engine_chunk_written(n->e, a.peer, &a.cid, a.index, ok ? PN_OK : PN_ECORRUPT, H.now);
			break;
		}
		case ENGINE_HASHES:
			cr_assert_eq(a.len, H.nchunks * PN_HASH_BYTES);
			cr_assert_eq(memcmp(a.data, H.hashes, a.len), 0);
			free(n->hashes);
			n->hashes = malloc(a.len);
			memcpy(n->hashes, a.data, a.len);
			engine_hashes_recorded(n->e, &a.cid, n->have_on_disk, H.now);
			break;
		case ENGINE_NAME:
			snprintf(n->name, sizeof n->name, "%s", a.name);
			break;
		case ENGINE_DIAL:
			n->dials++;
			break;
		case ENGINE_CLOSE:
			if (a.ban)
				n->closes_banned++;
			l = link_of(i, a.peer, &other);
			cr_assert_not_null(l);
			/* The close is seen by both ends after what is in flight. */
			if (l->open)
				h_close(a.peer);
			break;
		case ENGINE_PEER_READY:
			break;
		case ENGINE_DONE:
			cr_assert_not(n->done, "DONE twice");
			n->done = true;
			n->complete = true;
			break;
		case ENGINE_STALLED:
			n->stalled = true;
			break;
		case ENGINE_NOT_FOUND:
			n->not_found = true;
			break;
		case ENGINE_PEER_ERROR:
			break;
		}
	}
	return count;
}

/* Delivers messages and drains engines until nothing moves, or until
 * `until` returns true. Bounded. */
static void run(bool (*until)(void))
{
	for (long step = 0; step < H_STEPS_MAX; step++) {
		int acted = 0;
		for (int i = 0; i < H.nnodes; i++)
			acted += drain(i);
		if (until && until())
			return;
		if (H.qlen == 0 && acted == 0)
			return;
		if (H.qlen == 0)
			continue;
		struct hmsg m = H.q[H.qhead];
		H.qhead = (H.qhead + 1) % H_MAX_MSGS;
		H.qlen--;
		struct hlink *l = &H.l[m.key - 1];
		if (l->open) {
			struct pn_msg msg;
			cr_assert_eq(pn_msg_decode(m.frame + PN_FRAME_HDR, m.len - PN_FRAME_HDR, &msg), PN_OK);
			if (msg.type == PN_MSG_CANCEL)
				H.n[m.to].cancels_seen++;
			int r = engine_on_msg(H.n[m.to].e, m.key, &msg, H.now);
			if (r != PN_OK && r != PN_ENOTSUP) {
				drain(m.to);
				h_close(m.key);
			}
			drain(m.to);
		}
		free(m.frame);
		H.now += 1;
	}
	cr_assert_fail("the harness did not settle");
}

/* Advances time in steps, ticking every engine at its wake-up. */
static void advance(uint64_t ms)
{
	uint64_t end = H.now + ms;
	while (H.now < end) {
		uint64_t next = end;
		for (int i = 0; i < H.nnodes; i++) {
			uint64_t w = engine_next_wakeup(H.n[i].e);
			if (w < next)
				next = w;
		}
		if (next > H.now)
			H.now = next;
		for (int i = 0; i < H.nnodes; i++)
			if (engine_next_wakeup(H.n[i].e) <= H.now)
				engine_tick(H.n[i].e, H.now);
		run(NULL);
		if (next == end)
			break;
	}
}

static void assert_has_content(int i)
{
	cr_assert(H.n[i].done, "node %d did not finish", i);
	cr_assert_eq(memcmp(H.n[i].data, H.content, H.cid.size), 0, "node %d holds other bytes", i);
}

/* ------------------------------------------------------------ tests */

Test(engine, node_downloads_from_a_seed_node)
{
	h_init(5 * PN_CHUNK_SIZE + 1234);
	int seed = add_node(ENGINE_NODE, true, 1);
	int dl = add_node(ENGINE_NODE, false, 2);
	uint32_t key = h_connect(dl, seed);
	run(NULL);
	cr_assert_eq(engine_want(H.n[dl].e, &H.cid, NULL, NULL, NULL, H.now), PN_OK);
	engine_peer_offer(H.n[dl].e, key, &H.cid, H.now);
	run(NULL);
	advance(20000); /* the choker unchokes at once (a free slot), but let timers run */
	assert_has_content(dl);
	cr_assert_str_eq(H.n[dl].name, "file.bin");
	cr_assert_eq(H.n[dl].written, 6);
	cr_assert_not(engine_downloading(H.n[dl].e, &H.cid));
	h_free();
}

Test(engine, client_downloads_from_a_server_with_a_long_pipeline)
{
	h_init(40 * PN_CHUNK_SIZE);
	int srv = add_node(ENGINE_SERVER, true, 1);
	int cl = add_node(ENGINE_CLIENT, false, 2);
	h_connect(cl, srv);
	run(NULL);
	cr_assert_eq(engine_want(H.n[cl].e, &H.cid, NULL, NULL, NULL, H.now), PN_OK);
	/* Count the requests in flight before any chunk is served. */
	H.n[srv].pause_uploads = false;
	run(NULL);
	assert_has_content(cl);
	cr_assert_eq(H.n[srv].chunks_sent, 40, "each chunk once");
	h_free();
}

Test(engine, client_hears_not_found_from_a_server)
{
	h_init(3 * PN_CHUNK_SIZE);
	int srv = add_node(ENGINE_SERVER, false, 1);
	int cl = add_node(ENGINE_CLIENT, false, 2);
	h_connect(cl, srv);
	cr_assert_eq(engine_want(H.n[cl].e, &H.cid, NULL, NULL, NULL, H.now), PN_OK);
	run(NULL);
	cr_assert(H.n[cl].not_found);
	cr_assert_not(H.n[cl].done);
	h_free();
}

Test(engine, client_downloads_from_a_node_and_hears_not_found_from_another)
{
	h_init(4 * PN_CHUNK_SIZE);
	int empty = add_node(ENGINE_NODE, false, 1);
	int cl = add_node(ENGINE_CLIENT, false, 2);
	h_connect(cl, empty);
	cr_assert_eq(engine_want(H.n[cl].e, &H.cid, NULL, NULL, NULL, H.now), PN_OK);
	run(NULL);
	cr_assert(H.n[cl].not_found, "a node without the content says so");
	h_free();

	h_init(4 * PN_CHUNK_SIZE);
	int seed = add_node(ENGINE_NODE, true, 1);
	cl = add_node(ENGINE_CLIENT, false, 2);
	/* As `get --server` does: the download is wanted before the connection is up. */
	cr_assert_eq(engine_want(H.n[cl].e, &H.cid, NULL, NULL, NULL, H.now), PN_OK);
	h_connect(cl, seed);
	run(NULL);
	advance(1000);
	assert_has_content(cl);
	h_free();
}

Test(engine, node_uses_a_server_as_one_more_provider)
{
	h_init(32 * PN_CHUNK_SIZE);
	int srv = add_node(ENGINE_SERVER, true, 1);
	int seed = add_node(ENGINE_NODE, true, 2);
	int dl = add_node(ENGINE_NODE, false, 3);
	uint32_t ks = h_connect(dl, srv);
	uint32_t kn = h_connect(dl, seed);
	run(NULL);
	cr_assert_eq(engine_want(H.n[dl].e, &H.cid, NULL, NULL, NULL, H.now), PN_OK);
	engine_peer_offer(H.n[dl].e, kn, &H.cid, H.now);
	run(NULL);
	advance(10000);
	assert_has_content(dl);
	struct engine_peer_info pi;
	cr_assert(engine_peer_info(H.n[dl].e, ks, &pi));
	cr_assert_gt(pi.bytes_from, 0, "the server served part of it");
	cr_assert(engine_peer_info(H.n[dl].e, kn, &pi));
	cr_assert_gt(pi.bytes_from, 0, "the node served part of it");
	h_free();
}

Test(engine, corrupt_provider_is_banned_and_the_download_finishes_from_others)
{
	h_init(16 * PN_CHUNK_SIZE);
	int bad = add_node(ENGINE_NODE, true, 1);
	int good = add_node(ENGINE_NODE, true, 2);
	int dl = add_node(ENGINE_NODE, false, 3);
	H.n[bad].corrupt = 1;
	uint32_t kb = h_connect(dl, bad);
	uint32_t kg = h_connect(dl, good);
	run(NULL);
	cr_assert_eq(engine_want(H.n[dl].e, &H.cid, NULL, NULL, NULL, H.now), PN_OK);
	engine_peer_offer(H.n[dl].e, kb, &H.cid, H.now);
	engine_peer_offer(H.n[dl].e, kg, &H.cid, H.now);
	run(NULL);
	advance(30000);
	assert_has_content(dl);
	cr_assert_geq(H.n[dl].bad_written, 1, "a damaged chunk reached the verifier");
	cr_assert_geq(H.n[dl].closes_banned, 1);
	cr_assert(engine_is_banned(H.n[dl].e, H.n[bad].id));
	cr_assert_not(H.l[kb - 1].open, "the corrupt provider's connection is closed");
	/* It may not come back. */
	cr_assert_eq(engine_peer_add(H.n[dl].e, 99, true, H.n[bad].id, H.now), PN_EACCES);
	h_free();
}

Test(engine, cancel_withdraws_a_queued_upload)
{
	h_init(8 * PN_CHUNK_SIZE);
	int seed = add_node(ENGINE_NODE, true, 1);
	int peer = add_node(ENGINE_NODE, false, 2);
	uint32_t key = h_connect(peer, seed);
	run(NULL);
	/* Hand-made downloader: interest, then requests while the seed's link is congested. */
	struct pn_msg m = {.type = PN_MSG_INTERESTED};
	m.u.cidref.cid = H.cid;
	cr_assert_eq(engine_on_msg(H.n[seed].e, key, &m, H.now), PN_OK);
	drain(seed); /* BITFIELD, UNCHOKE */
	H.n[seed].pause_uploads = true;
	for (uint32_t i = 0; i < 4; i++) {
		struct pn_msg q = {.type = PN_MSG_CHUNK_REQ};
		q.u.ref.req_id = 100 + i;
		q.u.ref.cid = H.cid;
		q.u.ref.index = i;
		cr_assert_eq(engine_on_msg(H.n[seed].e, key, &q, H.now), PN_OK);
	}
	drain(seed); /* one chunk goes, then the link is congested */
	cr_assert_eq(H.n[seed].chunks_sent, 1);
	struct pn_msg c = {.type = PN_MSG_CANCEL};
	c.u.ref.req_id = 200;
	c.u.ref.cid = H.cid;
	c.u.ref.index = 2;
	cr_assert_eq(engine_on_msg(H.n[seed].e, key, &c, H.now), PN_OK);
	struct engine_peer_info pi;
	cr_assert(engine_peer_info(H.n[seed].e, key, &pi));
	cr_assert_eq(pi.upq, 2, "chunks 1 and 3 wait; 2 was withdrawn");
	H.n[seed].pause_uploads = false;
	engine_peer_writable(H.n[seed].e, key, H.now);
	drain(seed);
	cr_assert_eq(H.n[seed].chunks_sent, 3);
	struct engine_stats st;
	engine_stats(H.n[seed].e, &st);
	cr_assert_eq(st.cancels_honoured, 1);
	h_free();
}

Test(engine, choked_peer_requests_are_dropped_and_optimistic_unchoke_rotates)
{
	h_init(8 * PN_CHUNK_SIZE);
	h_no_super_seed = true; /* a super-seeding source unchokes everyone: see the next test */
	int seed = add_node(ENGINE_NODE, true, 1);
	/* 4 regular slots and one optimistic: 6 downloaders leave one choked. */
	int dls[6];
	uint32_t keys[6];
	for (int i = 0; i < 6; i++) {
		dls[i] = add_node(ENGINE_NODE, false, (uint64_t)(10 + i));
		keys[i] = h_connect(dls[i], seed);
	}
	run(NULL);
	for (int i = 0; i < 6; i++) {
		struct pn_msg m = {.type = PN_MSG_INTERESTED};
		m.u.cidref.cid = H.cid;
		cr_assert_eq(engine_on_msg(H.n[seed].e, keys[i], &m, H.now), PN_OK);
	}
	drain(seed);
	int unchoked = 0;
	struct engine_peer_info pi;
	for (int i = 0; i < 6; i++) {
		cr_assert(engine_peer_info(H.n[seed].e, keys[i], &pi));
		unchoked += !pi.am_choking;
	}
	cr_assert_eq(unchoked, 5, "4 regular slots and the optimistic one, got %d", unchoked);
	/* A choked peer's request is dropped without an answer. */
	int choked = -1;
	for (int i = 0; i < 6 && choked < 0; i++) {
		cr_assert(engine_peer_info(H.n[seed].e, keys[i], &pi));
		if (pi.am_choking)
			choked = i;
	}
	struct pn_msg q = {.type = PN_MSG_CHUNK_REQ};
	q.u.ref.req_id = 5;
	q.u.ref.cid = H.cid;
	q.u.ref.index = 0;
	uint32_t before = H.n[seed].chunks_sent;
	cr_assert_eq(engine_on_msg(H.n[seed].e, keys[choked], &q, H.now), PN_OK);
	drain(seed);
	cr_assert_eq(H.n[seed].chunks_sent, before);
	cr_assert(engine_peer_info(H.n[seed].e, keys[choked], &pi));
	cr_assert_eq(pi.upq, 0);
	/* Over two optimistic periods every choked peer gets a turn. */
	bool seen_unchoked[6] = {0};
	for (int round = 0; round < 12; round++) {
		H.now += 15000;
		engine_tick(H.n[seed].e, H.now);
		drain(seed);
		for (int i = 0; i < 6; i++) {
			cr_assert(engine_peer_info(H.n[seed].e, keys[i], &pi));
			if (!pi.am_choking)
				seen_unchoked[i] = true;
		}
	}
	for (int i = 0; i < 6; i++)
		cr_assert(seen_unchoked[i], "peer %d was never unchoked", i);
	h_free();
}

Test(engine, super_seeding_source_unchokes_every_downloader)
{
	h_init(8 * PN_CHUNK_SIZE);
	int seed = add_node(ENGINE_NODE, true, 1);
	uint32_t keys[8];
	for (int i = 0; i < 8; i++) {
		int d = add_node(ENGINE_NODE, false, (uint64_t)(30 + i));
		keys[i] = h_connect(d, seed);
	}
	run(NULL);
	for (int i = 0; i < 8; i++) {
		struct pn_msg m = {.type = PN_MSG_INTERESTED};
		m.u.cidref.cid = H.cid;
		cr_assert_eq(engine_on_msg(H.n[seed].e, keys[i], &m, H.now), PN_OK);
	}
	drain(seed);
	struct engine_peer_info pi;
	for (int i = 0; i < 8; i++) {
		cr_assert(engine_peer_info(H.n[seed].e, keys[i], &pi));
		cr_assert_not(pi.am_choking, "downloader %d: its few shown chunks must be fetchable", i);
	}
	/* A rechoke later does not choke them. */
	H.now += 60000;
	engine_tick(H.n[seed].e, H.now);
	drain(seed);
	for (int i = 0; i < 8; i++) {
		cr_assert(engine_peer_info(H.n[seed].e, keys[i], &pi));
		cr_assert_not(pi.am_choking);
	}
	h_free();
}

Test(engine, super_seeding_shows_each_downloader_its_own_chunks)
{
	h_init(16 * PN_CHUNK_SIZE);
	int seed = add_node(ENGINE_NODE, true, 1);
	int a = add_node(ENGINE_NODE, false, 2);
	int b = add_node(ENGINE_NODE, false, 3);
	uint32_t ka = h_connect(a, seed), kb = h_connect(b, seed);
	run(NULL);
	/* Capture the BITFIELDs the seed sends. */
	struct pn_msg m = {.type = PN_MSG_INTERESTED};
	m.u.cidref.cid = H.cid;
	cr_assert_eq(engine_on_msg(H.n[seed].e, ka, &m, H.now), PN_OK);
	cr_assert_eq(engine_on_msg(H.n[seed].e, kb, &m, H.now), PN_OK);
	struct engine_action act;
	uint8_t shown[2][2] = {{0}};
	int nbf = 0;
	while (engine_next_action(H.n[seed].e, &act)) {
		if (act.type == ENGINE_SEND && act.msg.type == PN_MSG_BITFIELD) {
			cr_assert_lt(nbf, 2);
			memcpy(shown[nbf++], act.msg.u.bitfield.bitmap, 2);
		}
	}
	cr_assert_eq(nbf, 2);
	int ca = 0, cb = 0, both = 0;
	for (uint32_t i = 0; i < 16; i++) {
		ca += bit_of(shown[0], i);
		cb += bit_of(shown[1], i);
		both += bit_of(shown[0], i) && bit_of(shown[1], i);
	}
	cr_assert_eq(ca, ENGINE_SEED_REVEAL_AHEAD, "a few chunks, not all 16");
	cr_assert_eq(cb, ENGINE_SEED_REVEAL_AHEAD);
	cr_assert_eq(both, 0, "each downloader is shown different chunks");
	/* When a downloader reports one of them, one more is revealed. */
	uint32_t first = 0;
	while (!bit_of(shown[0], first))
		first++;
	struct pn_msg h = {.type = PN_MSG_HAVE};
	h.u.cidref.cid = H.cid;
	h.u.cidref.index = first;
	cr_assert_eq(engine_on_msg(H.n[seed].e, ka, &h, H.now), PN_OK);
	int haves = 0;
	while (engine_next_action(H.n[seed].e, &act))
		if (act.type == ENGINE_SEND && act.msg.type == PN_MSG_HAVE) {
			haves++;
			cr_assert_not(bit_of(shown[0], act.msg.u.cidref.index));
			cr_assert_not(bit_of(shown[1], act.msg.u.cidref.index), "not one shown to the other");
		}
	cr_assert_eq(haves, 1);
	h_free();
}

/* A reader of the stream (get -o -) from a super-seeding node: the seed's
 * reveals follow the index among equally announced chunks, and the reader's
 * stream window asks in order, so the chunks leave the seed from chunk 0 up
 * and the reader's output never waits for the last chunk to start. */
Test(engine, super_seeding_seed_feeds_a_stream_reader_in_order)
{
	h_init(16 * PN_CHUNK_SIZE);
	int seed = add_node(ENGINE_NODE, true, 1);
	int dl = add_node(ENGINE_NODE, false, 2);
	uint32_t key = h_connect(dl, seed);
	run(NULL);
	cr_assert_eq(engine_want(H.n[dl].e, &H.cid, NULL, NULL, NULL, H.now), PN_OK);
	engine_set_streaming(H.n[dl].e, &H.cid, true);
	engine_peer_offer(H.n[dl].e, key, &H.cid, H.now);
	run(NULL);
	advance(20000);
	assert_has_content(dl);
	cr_assert_eq(H.n[seed].chunks_sent, 16, "one copy of each chunk");
	for (uint32_t i = 0; i < 16; i++)
		cr_assert_eq(H.n[seed].sent_log[i], i, "chunk %u left the seed as #%u", H.n[seed].sent_log[i], i);
	h_free();
}

Test(engine, swarm_of_five_finishes_with_the_seed_sending_about_one_copy)
{
	h_init(48 * PN_CHUNK_SIZE);
	int seed = add_node(ENGINE_NODE, true, 1);
	int dls[5];
	for (int i = 0; i < 5; i++)
		dls[i] = add_node(ENGINE_NODE, false, (uint64_t)(20 + i));
	/* Full mesh, as a directory would give: every downloader is told every
	 * other node offers the content. */
	uint32_t keys[H_MAX_LINKS];
	int nk = 0;
	for (int i = 0; i < 5; i++) {
		keys[nk++] = h_connect(dls[i], seed);
		for (int j = 0; j < i; j++)
			keys[nk++] = h_connect(dls[i], dls[j]);
	}
	run(NULL);
	for (int i = 0; i < 5; i++)
		cr_assert_eq(engine_want(H.n[dls[i]].e, &H.cid, NULL, NULL, NULL, H.now), PN_OK);
	for (int k = 0; k < nk; k++) {
		struct hlink *l = &H.l[keys[k] - 1];
		engine_peer_offer(H.n[l->a].e, keys[k], &H.cid, H.now);
		if (l->b != seed)
			engine_peer_offer(H.n[l->b].e, keys[k], &H.cid, H.now);
	}
	run(NULL);
	advance(120000);
	for (int i = 0; i < 5; i++)
		assert_has_content(dls[i]);
	/* Without rate limits the harness has no idle uplink to hold back second
	 * copies, but super-seeding still spreads the seed's work. */
	uint32_t traded = 0;
	for (int i = 0; i < 5; i++)
		traded += H.n[dls[i]].chunks_sent;
	cr_assert_gt(traded, 0, "the downloaders traded among themselves");
	cr_assert_lt(H.n[seed].chunks_sent, 5 * 48, "the seed did not send every copy");
	h_free();
}

/* BITFIELD frames waiting in the harness's queue for node `to`. */
static int queued_bitfields_to(int to)
{
	int count = 0;
	for (size_t i = 0; i < H.qlen; i++) {
		const struct hmsg *m = &H.q[(H.qhead + i) % H_MAX_MSGS];
		if (m->to == to && m->len > PN_FRAME_HDR && m->frame[PN_FRAME_HDR] == PN_MSG_BITFIELD)
			count++;
	}
	return count;
}

/* docs/PROTOCOL.md, Swarm, 2: a peer gets our BITFIELD once; interest that
 * goes and comes back is not answered with another (the HAVEs kept it
 * current), which spared one message in seven in a 32-node swarm. */
Test(engine, interest_that_comes_back_gets_no_second_bitfield)
{
	h_init(6 * PN_CHUNK_SIZE);
	h_no_super_seed = true;
	int seed = add_node(ENGINE_NODE, true, 1);
	int dl = add_node(ENGINE_NODE, false, 2);
	uint32_t k = h_connect(dl, seed);
	run(NULL);
	struct pn_msg m = {.type = PN_MSG_INTERESTED};
	m.u.cidref.cid = H.cid;
	for (int round = 0; round < 3; round++) {
		m.type = PN_MSG_INTERESTED;
		cr_assert_eq(engine_on_msg(H.n[seed].e, k, &m, H.now), PN_OK);
		drain(seed);
		cr_assert_eq(queued_bitfields_to(dl), 1, "round %d: one BITFIELD in all", round);
		m.type = PN_MSG_NOT_INTERESTED;
		cr_assert_eq(engine_on_msg(H.n[seed].e, k, &m, H.now), PN_OK);
		drain(seed);
	}
	h_free();
}

Test(engine, resume_fetches_only_missing_chunks)
{
	h_init(10 * PN_CHUNK_SIZE);
	int seed = add_node(ENGINE_NODE, true, 1);
	int dl = add_node(ENGINE_NODE, false, 2);
	/* Chunks 0..5 are already verified on disk. */
	uint8_t have[2] = {0xfc, 0x00};
	memcpy(H.n[dl].data, H.content, 6 * PN_CHUNK_SIZE);
	H.n[dl].hashes = malloc(10 * PN_HASH_BYTES);
	memcpy(H.n[dl].hashes, H.hashes, 10 * PN_HASH_BYTES);
	uint32_t key = h_connect(dl, seed);
	run(NULL);
	cr_assert_eq(engine_want(H.n[dl].e, &H.cid, "file.bin", H.hashes, have, H.now), PN_OK);
	engine_peer_offer(H.n[dl].e, key, &H.cid, H.now);
	run(NULL);
	advance(5000);
	assert_has_content(dl);
	cr_assert_eq(H.n[dl].written, 4, "only the 4 missing chunks were fetched");
	h_free();
}

Test(engine, resume_after_hash_list_reports_what_is_on_disk)
{
	h_init(10 * PN_CHUNK_SIZE);
	int seed = add_node(ENGINE_NODE, true, 1);
	int dl = add_node(ENGINE_NODE, false, 2);
	H.n[dl].have_on_disk = calloc(1, 2);
	H.n[dl].have_on_disk[0] = 0x80; /* chunk 0 */
	memcpy(H.n[dl].data, H.content, PN_CHUNK_SIZE);
	uint32_t key = h_connect(dl, seed);
	run(NULL);
	cr_assert_eq(engine_want(H.n[dl].e, &H.cid, NULL, NULL, NULL, H.now), PN_OK);
	engine_peer_offer(H.n[dl].e, key, &H.cid, H.now);
	run(NULL);
	advance(5000);
	assert_has_content(dl);
	cr_assert_eq(H.n[dl].written, 9);
	h_free();
}

Test(engine, duplicate_connections_keep_the_one_dialled_by_the_smaller_id)
{
	h_init(2 * PN_CHUNK_SIZE);
	int a = add_node(ENGINE_NODE, false, 1); /* id 0x10.. < 0x20.. */
	int b = add_node(ENGINE_NODE, false, 2);
	uint32_t ab = h_connect(a, b); /* dialled by the smaller ID: kept */
	uint32_t ba = h_connect(b, a);
	run(NULL);
	cr_assert(H.l[ab - 1].open);
	cr_assert_not(H.l[ba - 1].open);
	h_free();
}

Test(engine, stall_is_reported_and_a_lost_provider_is_replaced)
{
	h_init(12 * PN_CHUNK_SIZE);
	int s1 = add_node(ENGINE_NODE, true, 1);
	int s2 = add_node(ENGINE_NODE, true, 2);
	int dl = add_node(ENGINE_NODE, false, 3);
	uint32_t k1 = h_connect(dl, s1);
	run(NULL);
	cr_assert_eq(engine_want(H.n[dl].e, &H.cid, NULL, NULL, NULL, H.now), PN_OK);
	/* Nobody offers it: the download stalls and says so. */
	advance(6000);
	cr_assert(H.n[dl].stalled);
	engine_peer_offer(H.n[dl].e, k1, &H.cid, H.now);
	H.n[s1].pause_uploads = true; /* s1 sends one chunk then nothing */
	run(NULL);
	h_close(k1);
	uint32_t k2 = h_connect(dl, s2);
	engine_peer_offer(H.n[dl].e, k2, &H.cid, H.now);
	run(NULL);
	advance(10000);
	assert_has_content(dl);
	h_free();
}

Test(engine, peer_must_start_with_hello_and_a_known_role)
{
	h_init(PN_CHUNK_SIZE);
	int srv = add_node(ENGINE_SERVER, true, 1);
	cr_assert_eq(engine_peer_add(H.n[srv].e, 1, false, NULL, H.now), PN_OK);
	uint8_t id[PN_ID_BYTES] = {9};
	engine_peer_established(H.n[srv].e, 1, id, 0, H.now);
	struct pn_msg m = {.type = PN_MSG_CHUNK_REQ};
	m.u.ref.cid = H.cid;
	cr_assert_eq(engine_on_msg(H.n[srv].e, 1, &m, H.now), PN_EPROTO);
	struct engine_action a;
	bool closed = false, error = false;
	while (engine_next_action(H.n[srv].e, &a)) {
		closed |= a.type == ENGINE_CLOSE;
		error |= a.type == ENGINE_SEND && a.msg.type == PN_MSG_ERROR;
	}
	cr_assert(closed && error, "ERROR(PROTOCOL) then close");
	/* A directory saying HELLO to a server is refused. */
	cr_assert_eq(engine_peer_add(H.n[srv].e, 2, false, NULL, H.now), PN_OK);
	engine_peer_established(H.n[srv].e, 2, id, 0, H.now);
	struct pn_msg h = {.type = PN_MSG_HELLO};
	h.u.hello.version = PN_PROTOCOL_VERSION;
	h.u.hello.role = PN_ROLE_DIRECTORY;
	cr_assert_neq(engine_on_msg(H.n[srv].e, 2, &h, H.now), PN_OK);
	h_free();
}

Test(engine, too_many_requests_close_the_connection)
{
	h_init(PN_CHUNK_SIZE);
	int seed = add_node(ENGINE_NODE, true, 1);
	int peer = add_node(ENGINE_NODE, false, 2);
	uint32_t key = h_connect(peer, seed);
	run(NULL);
	struct pn_msg m = {.type = PN_MSG_INTERESTED};
	m.u.cidref.cid = H.cid;
	cr_assert_eq(engine_on_msg(H.n[seed].e, key, &m, H.now), PN_OK);
	drain(seed);
	H.n[seed].pause_uploads = true;
	int r = PN_OK;
	for (uint32_t i = 0; i < ENGINE_UPQ_MAX + 2 && r == PN_OK; i++) {
		struct pn_msg q = {.type = PN_MSG_CHUNK_REQ};
		q.u.ref.req_id = i + 1;
		q.u.ref.cid = H.cid;
		q.u.ref.index = 0;
		r = engine_on_msg(H.n[seed].e, key, &q, H.now);
		drain(seed);
	}
	cr_assert_eq(r, PN_ELIMIT);
	h_free();
}

/* Found by fuzz_engine: a want of an ID no message can carry (size past
 * PN_MAX_FILE_SIZE) was accepted, and the META_REQ it then sent did not
 * encode. It is refused, and nothing is sent. */
Test(engine, want_refuses_an_id_past_the_largest_file)
{
	h_init(PN_CHUNK_SIZE);
	int cl = add_node(ENGINE_NODE, false, 1);
	int seed = add_node(ENGINE_NODE, true, 2);
	h_connect(cl, seed);
	run(NULL);
	struct pn_cid big = H.cid;
	big.size = PN_MAX_FILE_SIZE + 1;
	cr_assert_eq(engine_want(H.n[cl].e, &big, NULL, NULL, NULL, H.now), PN_EINVAL);
	cr_assert_not(engine_downloading(H.n[cl].e, &big));
	struct engine_action a;
	cr_assert_not(engine_next_action(H.n[cl].e, &a), "nothing to send for a refused want");
	big.size = PN_MAX_FILE_SIZE;
	cr_assert_eq(engine_want(H.n[cl].e, &big, NULL, NULL, NULL, H.now), PN_OK);
	run(NULL); /* the META_REQ for the largest file encodes (drain asserts it) */
	h_free();
}

Test(engine, unwant_cancels_the_requests_in_flight)
{
	h_init(40 * PN_CHUNK_SIZE);
	int srv = add_node(ENGINE_SERVER, true, 1);
	int cl = add_node(ENGINE_CLIENT, false, 2);
	uint32_t key = h_connect(cl, srv);
	run(NULL);
	H.n[srv].pause_uploads = true; /* one chunk goes, the rest wait in the server's queue */
	cr_assert_eq(engine_want(H.n[cl].e, &H.cid, NULL, NULL, NULL, H.now), PN_OK);
	run(NULL);
	struct engine_peer_info pi;
	cr_assert(engine_peer_info(H.n[srv].e, key, &pi));
	cr_assert_gt(pi.upq, 8, "the client's pipeline waits at the server (%u)", pi.upq);
	uint32_t queued = pi.upq;
	/* The download is dropped (a disk error, a user's cancel): every request
	 * the server has not answered is withdrawn, and its queue empties. */
	engine_unwant(H.n[cl].e, &H.cid, H.now);
	run(NULL);
	cr_assert_geq(H.n[srv].cancels_seen, queued, "%u CANCELs for %u queued", H.n[srv].cancels_seen, queued);
	cr_assert(engine_peer_info(H.n[srv].e, key, &pi));
	cr_assert_eq(pi.upq, 0);
	H.n[srv].pause_uploads = false;
	engine_peer_writable(H.n[srv].e, key, H.now);
	run(NULL);
	cr_assert_leq(H.n[srv].chunks_sent, 2, "%u chunks sent after the cancel", H.n[srv].chunks_sent);
	cr_assert_not(H.n[cl].done);
	h_free();
}

Test(engine, a_new_provider_sends_only_what_is_missing)
{
	h_init(16 * PN_CHUNK_SIZE);
	int s1 = add_node(ENGINE_NODE, true, 1);
	int s2 = add_node(ENGINE_NODE, true, 2);
	int dl = add_node(ENGINE_NODE, false, 3);
	uint32_t k1 = h_connect(dl, s1);
	run(NULL);
	cr_assert_eq(engine_want(H.n[dl].e, &H.cid, NULL, NULL, NULL, H.now), PN_OK);
	engine_peer_offer(H.n[dl].e, k1, &H.cid, H.now);
	H.n[s1].pause_uploads = true; /* s1 sends one chunk then nothing */
	run(NULL);
	advance(1000);
	cr_assert_eq(H.n[dl].written, 1);
	h_close(k1);
	run(NULL);
	advance(3000);
	uint32_t k2 = h_connect(dl, s2);
	engine_peer_offer(H.n[dl].e, k2, &H.cid, H.now);
	run(NULL);
	advance(10000);
	assert_has_content(dl);
	cr_assert_eq(H.n[s2].chunks_sent, 15, "s2 sent %u chunks for the 15 missing", H.n[s2].chunks_sent);
	h_free();
}

Test(engine, chunks_crossing_a_choke_are_kept_not_fetched_twice)
{
	h_init(12 * PN_CHUNK_SIZE);
	h_no_super_seed = true;
	int seed = add_node(ENGINE_NODE, true, 1);
	int dl = add_node(ENGINE_NODE, false, 2);
	uint32_t key = h_connect(dl, seed);
	run(NULL);
	H.n[seed].pause_uploads = true; /* the requests wait in the seed's queue */
	cr_assert_eq(engine_want(H.n[dl].e, &H.cid, NULL, NULL, NULL, H.now), PN_OK);
	engine_peer_offer(H.n[dl].e, key, &H.cid, H.now);
	run(NULL);
	int before = H.n[dl].written;
	struct engine_peer_info pi;
	cr_assert(engine_peer_info(H.n[seed].e, key, &pi));
	cr_assert_gt(pi.upq, 1, "requests queued at the seed: %u", pi.upq);
	/* A CHOKE reaches the downloader (as if sent before the requests came):
	 * it counts its requests as dropped. The seed sends them anyway. */
	struct pn_msg c = {.type = PN_MSG_CHOKE};
	cr_assert_eq(engine_on_msg(H.n[dl].e, key, &c, H.now), PN_OK);
	drain(dl);
	H.n[seed].pause_uploads = false;
	engine_peer_writable(H.n[seed].e, key, H.now);
	run(NULL);
	cr_assert_eq(H.n[dl].written, before + (int)pi.upq, "the chunks that crossed the CHOKE are kept");
	struct pn_msg u = {.type = PN_MSG_UNCHOKE};
	cr_assert_eq(engine_on_msg(H.n[dl].e, key, &u, H.now), PN_OK);
	run(NULL);
	advance(20000);
	assert_has_content(dl);
	cr_assert_eq(H.n[seed].chunks_sent, 12, "each chunk once, not %u", H.n[seed].chunks_sent);
	h_free();
}

/* A downloader passes on first the chunk it has sent least: of two chunks
 * only it holds, both start to spread instead of one waiting behind the
 * other's copies. */
Test(engine, a_downloader_serves_its_least_sent_chunk_first)
{
	h_init(8 * PN_CHUNK_SIZE);
	int x = add_node(ENGINE_NODE, false, 1);
	int p = add_node(ENGINE_NODE, false, 2);
	int q = add_node(ENGINE_NODE, false, 3);
	static uint8_t have[1] = {0xe0}; /* chunks 0, 1, 2 on disk */
	memcpy(H.n[x].data, H.content, 3 * PN_CHUNK_SIZE);
	H.n[x].have_on_disk = have;
	uint32_t kp = h_connect(p, x), kq = h_connect(q, x);
	run(NULL);
	cr_assert_eq(engine_want(H.n[x].e, &H.cid, "file.bin", H.hashes, have, H.now), PN_OK);
	struct pn_msg m = {.type = PN_MSG_INTERESTED};
	m.u.cidref.cid = H.cid;
	cr_assert_eq(engine_on_msg(H.n[x].e, kp, &m, H.now), PN_OK);
	cr_assert_eq(engine_on_msg(H.n[x].e, kq, &m, H.now), PN_OK);
	drain(x);
	H.n[x].pause_uploads = true; /* one chunk per link, then it is congested */
	struct { uint32_t key, index; } reqs[] = {{kq, 0}, {kp, 2}, {kq, 2}, {kp, 1}};
	for (uint32_t i = 0; i < 4; i++) {
		struct pn_msg r = {.type = PN_MSG_CHUNK_REQ};
		r.u.ref.req_id = 100 + i;
		r.u.ref.cid = H.cid;
		r.u.ref.index = reqs[i].index;
		cr_assert_eq(engine_on_msg(H.n[x].e, reqs[i].key, &r, H.now), PN_OK);
		drain(x);
	}
	cr_assert_eq(H.n[x].chunks_sent, 2, "chunk 0 to q and chunk 2 to p went, the rest wait");
	/* Both links free up: chunk 1 (never sent) goes before chunk 2 (sent once). */
	engine_peer_writable(H.n[x].e, kq, H.now);
	engine_peer_writable(H.n[x].e, kp, H.now);
	drain(x);
	cr_assert_eq(H.n[x].chunks_sent, 4);
	cr_assert_eq(H.n[x].sent_log[2], 1, "chunk %u went first", H.n[x].sent_log[2]);
	cr_assert_eq(H.n[x].sent_log[3], 2);
	H.n[x].have_on_disk = NULL;
	h_free();
}

/* A server peer that has said HELLO as a client, on engine node srv. */
static uint32_t ready_client_of(int srv, uint32_t key)
{
	uint8_t id[PN_ID_BYTES] = {7};
	cr_assert_eq(engine_peer_add(H.n[srv].e, key, false, NULL, H.now), PN_OK);
	engine_peer_established(H.n[srv].e, key, id, 0, H.now);
	struct pn_msg h = {.type = PN_MSG_HELLO};
	h.u.hello.version = PN_PROTOCOL_VERSION;
	h.u.hello.role = PN_ROLE_CLIENT;
	cr_assert_eq(engine_on_msg(H.n[srv].e, key, &h, H.now), PN_OK);
	struct engine_action a;
	while (engine_next_action(H.n[srv].e, &a))
		;
	return key;
}

/* What the engine does next: whether it sent ERROR(0, code) and closed. */
static bool error0_then_close(int node, uint16_t code)
{
	struct engine_action a;
	bool error = false, closed = false;
	while (engine_next_action(H.n[node].e, &a)) {
		if (a.type == ENGINE_SEND && a.msg.type == PN_MSG_ERROR && !closed)
			error |= a.msg.u.error.req_id == 0 && a.msg.u.error.code == code;
		closed |= a.type == ENGINE_CLOSE;
	}
	return error && closed;
}

/* docs/PROTOCOL.md, Requests: req_id 0, and a req_id of a chunk request still
 * queued, are violations: ERROR(0, PROTOCOL), then the close. */
Test(engine, request_ids_zero_or_still_queued_are_violations)
{
	h_init(4 * PN_CHUNK_SIZE);
	int srv = add_node(ENGINE_SERVER, true, 1);
	H.n[srv].pause_uploads = true;
	uint32_t k = ready_client_of(srv, 1);
	struct pn_msg q = {.type = PN_MSG_META_REQ};
	q.u.ref.cid = H.cid;
	cr_assert_eq(engine_on_msg(H.n[srv].e, k, &q, H.now), PN_EPROTO);
	cr_assert(error0_then_close(srv, PN_WERR_PROTOCOL));

	k = ready_client_of(srv, 2);
	struct pn_msg c = {.type = PN_MSG_CHUNK_REQ};
	c.u.ref.cid = H.cid;
	c.u.ref.req_id = 5;
	cr_assert_eq(engine_on_msg(H.n[srv].e, k, &c, H.now), PN_OK);
	c.u.ref.index = 1; /* another chunk, the same req_id while the first waits */
	cr_assert_eq(engine_on_msg(H.n[srv].e, k, &c, H.now), PN_EPROTO);
	cr_assert(error0_then_close(srv, PN_WERR_PROTOCOL));
	h_free();
}

/* docs/PROTOCOL.md, Errors and closing: ERROR(0, ...) from a peer ends the
 * connection; an ERROR about one request does not. */
Test(engine, error_0_from_a_peer_ends_the_connection)
{
	h_init(PN_CHUNK_SIZE);
	int srv = add_node(ENGINE_SERVER, true, 1);
	uint32_t k = ready_client_of(srv, 1);
	struct pn_msg e = {.type = PN_MSG_ERROR};
	e.u.error.req_id = 9;
	e.u.error.code = PN_WERR_INTERNAL;
	cr_assert_eq(engine_on_msg(H.n[srv].e, k, &e, H.now), PN_OK);
	struct engine_action a;
	bool closed = false;
	while (engine_next_action(H.n[srv].e, &a))
		closed |= a.type == ENGINE_CLOSE;
	cr_assert(!closed, "an ERROR about a request leaves the connection open");
	e.u.error.req_id = 0;
	e.u.error.code = PN_WERR_BUSY;
	cr_assert_eq(engine_on_msg(H.n[srv].e, k, &e, H.now), PN_OK);
	while (engine_next_action(H.n[srv].e, &a))
		closed |= a.type == ENGINE_CLOSE && a.peer == k;
	cr_assert(closed, "ERROR(0) ends the connection");
	h_free();
}
