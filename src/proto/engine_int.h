/* Private to src/proto/engine*.c: the peer engine's state, shared by
 * engine.c (peers, messages, downloads, actions), engine_seed.c (what a
 * source sends: super-seeding and the upload pump) and engine_meta.c (the
 * name and hash list: META and HASHES served, and fetched by a download).
 * Not part of any API. */
#ifndef PN_PROTO_ENGINE_INT_H
#define PN_PROTO_ENGINE_INT_H
#ifndef PN_INTERNAL
#error "an internal header of libpeernet: a program includes <peernet.h> only"
#endif
#ifndef PN_PROTO_ENGINE_IMPL
#error "engine_int.h is private to src/proto/engine*.c"
#endif

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "proto/engine.h"
#include "proto/choker.h"
#include "proto/prng.h"
#include "proto/swarm.h"
#include "util/u32map.h"

struct pcid {                    /* what one connection knows of one content */
	struct pn_cid cid;
	uint8_t *bitmap;         /* their chunks; NULL until BITFIELD/HAVE */
	uint8_t *revealed;       /* super-seeding: chunks we have announced to them */
	bool they_want;          /* they sent INTERESTED */
	bool we_want;            /* we sent INTERESTED */
	bool bitfield_sent;      /* they have our holdings: HAVEs keep them current */
	bool in_swarm;
	bool probed;             /* a server: META_REQ sent */
	bool has_all;            /* a server that answered META */
	bool absent;             /* a server that answered NOT_FOUND */
	uint32_t probe_req;
};

struct upreq {
	struct pn_cid cid;
	uint32_t index, req_id;
};

struct peer {
	uint32_t key;
	uint8_t id[PN_ID_BYTES];
	bool id_known, outgoing, established, ready, closing;
	bool writable;           /* the connection can take another chunk */
	bool in_choker;
	bool seed_unchoked;      /* unchoked outside the choker: it only wants what we super-seed */
	bool am_choking, peer_choking;
	uint8_t role;
	uint16_t listen_port;
	uint32_t features;
	struct pcid *cids;
	uint32_t ncids, cids_cap;
	struct upreq *upq;       /* ring */
	uint32_t upq_head, upq_len, upq_cap;
	uint64_t bytes_to, bytes_from;
	uint32_t released;       /* requests withdrawn by our CANCEL or its CHOKE: a chunk it sends
				  * unasked may be a late answer to one of them */
};

struct download {
	struct download *next;
	struct pn_cid cid;
	uint32_t nchunks;
	char name[PN_NAME_MAX + 1];
	bool have_name;
	uint8_t *hashes;         /* nchunks*32 */
	uint32_t hashes_got;     /* pages are fetched in order: hashes [0, hashes_got) are known */
	bool hashes_done;        /* verified against the cid */
	bool hashes_recorded;    /* the owner recorded them: chunks may be requested */
	uint32_t hash_peer, hash_req, hash_first, hash_count;
	uint32_t meta_peer, meta_req;
	uint8_t *have;           /* chunks written */
	uint8_t *writing;        /* chunks handed to the owner, result pending */
	uint16_t *sent;          /* per chunk: copies we handed out to be sent (saturating) */
	uint32_t have_count;
	struct swarm *swarm;
	uint64_t started_ms, last_chunk_ms, stall_at;
	uint64_t bytes_down;
	bool done;
	bool streaming;          /* engine_set_streaming */
};

struct seed {                    /* super-seeding state of one complete content */
	struct seed *next;
	struct pn_cid cid;
	uint32_t nchunks;
	uint32_t *announced;     /* per chunk: to how many downloaders */
	uint32_t *sent;          /* per chunk: copies handed out to be sent */
};
#define MAX_SEEDS 64

struct queued {
	struct engine_action a;
	void *owned;             /* freed once the action has been handled */
	bool skip;               /* its peer closed meanwhile */
};

struct engine {
	struct engine_opts o;
	struct pn_prng prng;
	struct choker *choker;
	struct peer **peers;
	uint32_t npeers, peers_cap;
	struct pn_u32map peer_at;  /* peer key -> index in peers */
	uint32_t upq_total;        /* chunk requests queued over all peers */
	uint32_t nblocked;         /* peers not writable */
	uint32_t pump_cursor;    /* round-robin start of the upload pump */
	bool seed_retry;         /* a super-seeding top-up waits for the uplink to idle */
	struct download *downloads;
	uint32_t ndownloads;
	struct download *graveyard;
	struct seed *seeds;
	uint32_t nseeds;
	uint8_t banned[ENGINE_MAX_BANNED][PN_ID_BYTES];
	uint32_t nbanned, banned_next;
	uint32_t next_req;
	struct queued *queue;
	uint32_t qhead, qlen, qcap;
	void *popped_owned;      /* buffer of the last popped action */
	uint64_t now;
	struct engine_stats st;
};

static inline bool bit(const uint8_t *bm, uint32_t i) { return bm && (bm[i / 8] & (0x80 >> (i % 8))); }
static inline void bit_set(uint8_t *bm, uint32_t i) { bm[i / 8] |= (uint8_t)(0x80 >> (i % 8)); }
static inline size_t bm_len(uint32_t nchunks) { return ((size_t)nchunks + 7) / 8; }
static inline bool cid_eq(const struct pn_cid *a, const struct pn_cid *b) { return !memcmp(a, b, sizeof *a); }
/* A bitmap of nchunks set bits (malloc'd, the caller frees), or NULL. */
static inline uint8_t *bm_full(uint32_t nchunks)
{
	uint8_t *bm = calloc(1, bm_len(nchunks));
	if (bm)
		for (uint32_t i = 0; i < nchunks; i++)
			bit_set(bm, i);
	return bm;
}

static inline bool bm_any(const uint8_t *bm, uint32_t nchunks)
{
	for (size_t i = 0; bm && i < bm_len(nchunks); i++)
		if (bm[i])
			return true;
	return false;
}

/* A node serves with choking and super-seeding; a server serves everyone; a client no one. */
static inline bool serves_p2p(const struct engine *e) { return e->o.role == ENGINE_NODE; }

/* Our view of cid for serving: from a download in progress, or the owner. */
struct held {
	bool any;
	bool complete;
	const char *name;
	const uint8_t *hashes;   /* NULL: not known */
	const uint8_t *bitmap;   /* NULL with complete: all */
};

/* engine.c */
struct pcid *eng__pcid_get(struct peer *p, const struct pn_cid *cid, bool create);
void eng__send_cidref(struct engine *e, struct peer *p, enum pn_msg_type type, const struct pn_cid *cid,
		      uint32_t index);
/* Queues an action for peer (0: none); it owns `owned` (malloc'd or NULL) and
 * frees it once handled. NULL when out of memory (owned is freed then). */
struct engine_action *eng__push(struct engine *e, enum engine_action_type type, uint32_t peer, void *owned);
/* Queues a message. Its pointers must stay valid until it is handled: they
 * point into `owned` (freed after) or into state that outlives the drain. */
bool eng__send_msg(struct engine *e, struct peer *p, const struct pn_msg *m, void *owned);
void eng__send_error(struct engine *e, struct peer *p, uint32_t req_id, uint16_t code, const char *text);
/* A fresh request ID: never 0. */
uint32_t eng__new_req(struct engine *e);
/* ERROR(0, PROTOCOL, why), then the close; returns PN_EPROTO. */
int eng__violation(struct engine *e, struct peer *p, const char *why);
/* A provider of data that failed its hash: told why, cut off, and not dialled again. */
void eng__ban_peer(struct engine *e, struct peer *p, const char *why);
/* Our download of cid, or NULL. */
struct download *eng__dl_get(const struct engine *e, const struct pn_cid *cid);
struct held eng__hold_of(struct engine *e, const struct pn_cid *cid);
/* Adds p to d's swarm once it has started and p's holdings are known (a server: once it answered META). */
void eng__swarm_join(struct engine *e, struct download *d, struct peer *p, struct pcid *pc);

/* engine_meta.c */
/* Asks p for what d still needs before chunks: the name, then the hash list. */
void eng__dl_try_meta_and_hashes(struct engine *e, struct download *d, struct peer *p, struct pcid *pc);
/* Asks p META for pc's content: its answer says whether it holds it. */
void eng__probe(struct engine *e, struct peer *p, struct pcid *pc);
/* Asks d's hash list of the first peer that can give it, unless a request is out or the list is complete. */
void eng__dl_find_hash_provider(struct engine *e, struct download *d);
/* META_REQ and HASH_REQ answered from what we hold; META and HASHES taken
 * when they answer our requests. */
int eng__on_meta_req(struct engine *e, struct peer *p, const struct pn_msg_ref *q);
int eng__on_hash_req(struct engine *e, struct peer *p, const struct pn_msg_hash_req *q);
int eng__on_meta(struct engine *e, struct peer *p, const struct pn_msg_meta *m);
int eng__on_hashes(struct engine *e, struct peer *p, const struct pn_msg_hashes *m);

/* engine_seed.c */
/* Starts super-seeding pc's content to p: fills pc->revealed. false: show everything. */
bool eng__seed_start(struct engine *e, struct peer *p, struct pcid *pc);
/* p reported index: if it was one we showed it, show one more. */
void eng__seed_on_have(struct engine *e, struct peer *p, struct pcid *pc, uint32_t index);
/* The source's uplink would idle: show one more chunk to each downloader of cid holding all it was shown. */
void eng__seed_top_up(struct engine *e, const struct pn_cid *cid);
/* One queued chunk request as a SEND_CHUNK action; false when none may go now. */
bool eng__pump_uploads(struct engine *e, struct engine_action *out);

/* Every change of a peer's queue length or writability goes through these,
 * so the engine's totals stay exact and idle checks cost nothing. */
static inline void eng__upq_clear(struct engine *e, struct peer *p)
{
	e->upq_total -= p->upq_len;
	p->upq_len = 0;
}

static inline void eng__set_writable(struct engine *e, struct peer *p, bool writable)
{
	if (p->writable == writable)
		return;
	p->writable = writable;
	if (writable)
		e->nblocked--;
	else
		e->nblocked++;
}

#endif
