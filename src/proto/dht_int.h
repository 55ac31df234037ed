/* Private to src/proto/dht*.c: the DHT core's state, shared by dht.c (the
 * routing table, requests in flight, the action queue, messages and the
 * interface), dht_lookup.c (look-ups and announces) and dht_store.c
 * (records, write tokens, the rate limit, VALUES answers). Not an API. */
#ifndef PN_PROTO_DHT_INT_H
#define PN_PROTO_DHT_INT_H
#ifndef PN_INTERNAL
#error "an internal header of libpeernet: a program includes <peernet.h> only"
#endif
#ifndef PN_PROTO_DHT_IMPL
#error "dht_int.h is private to src/proto/dht*.c"
#endif

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "peernet.h"
#include "proto/dht.h"
#include "proto/prng.h"

#define IDB PN_DHT_KEY_BYTES
#define DHT_BITS (IDB * 8)
#define DEF_RPC_TIMEOUT_MS 2000
#define DEF_MAX_FAILS 3
#define DEF_REFRESH_MS 3600000u
#define DEF_RECORD_TTL_MS 7200000u
#define DEF_REPUBLISH_MS 3000000u
#define DEF_TOKEN_MS 600000u
#define DEF_RATE 50
#define DEF_MAX_RECORDS 65536
#define DEF_MAX_PER_PUBLISHER 4096
#define DEF_MAX_PER_KEY 512
#define RATE_BURST 2                  /* a sender may burst 2 seconds' worth */
#define RATE_SLOTS 64                 /* addresses the rate limit remembers */
#define RATE_PROBE 4
#define MAX_INTERNAL 16               /* join, refresh and announce look-ups */
#define LOOKUP_SLOTS (DHT_MAX_LOOKUPS + MAX_INTERNAL)
#define JOIN_REFRESH_SLOTS 8          /* of MAX_INTERNAL, the rest stays for announces */
#define SHORTLIST (3 * DHT_K)         /* candidates kept per look-up */
#define SEEN_MAX 4096                 /* distinct records remembered per look-up */
#define RPC_BITS 12
#define RPC_MAX (1u << RPC_BITS)
#define QUEUE_MAX 1024                /* queued SEND/RECORD/CONTACT actions */
#define ANNOUNCE_RETRY_MS 30000       /* an announce that reached nobody */
#define BATCH_DIV 64                  /* expiry sweeps batched to ttl/64 */
#define VALUES_MIN_CONTACTS 4         /* room kept for contacts next to records */
#define VALUES_BUDGET (PN_DHT_DGRAM_MAX - PN_DHT_HDR_BYTES - PN_DHT_SIG_BYTES - PN_DHT_TOKEN_BYTES - 2)
#define HT_INITIAL 16
#define HT_MAX (1u << 20)

struct entry {
	uint8_t id[IDB];
	struct pn_dht_addr addr;
	uint8_t fails;
	uint64_t last_seen;
};

struct bucket {
	uint64_t touched; /* last contact seen in it or look-up aimed into it */
	uint8_t n, cap, nrep;
	bool pinging;     /* an eviction ping to its oldest is in flight */
	struct entry *e;  /* least recently seen first */
	struct entry *rep; /* replacement cache, oldest first; DHT_K when made */
};

enum rpc_purpose { RPC_PING = 1, RPC_EVICT, RPC_LOOKUP, RPC_STORE };

struct rpc {
	bool used;
	bool id_known;
	uint8_t req_type;
	uint8_t purpose;
	uint16_t lk_slot;
	uint32_t txid;
	uint32_t lk_gen;
	struct pn_dht_addr addr;
	uint8_t id[IDB];
	uint64_t deadline;
	uint64_t sent;
};

enum sl_state { SL_NEW, SL_ASKED, SL_ANSWERED, SL_FAILED };

struct sl_entry {
	struct pn_dht_contact c;
	uint8_t state, depth;
	bool has_token;
	uint8_t token[PN_DHT_TOKEN_BYTES];
};

enum lk_purpose { LK_USER = 1, LK_JOIN, LK_REFRESH, LK_ANNOUNCE };

struct announce;

struct lookup {
	uint32_t handle; /* user look-ups; 0 for internal */
	uint32_t gen;
	uint8_t kind;    /* enum dht_lookup_kind */
	uint8_t purpose;
	bool finished, delivered, any_answer;
	int err;
	uint8_t key[IDB];
	uint32_t want, inflight, n;
	struct announce *ann;
	struct dht_lookup_stats stats;
	uint64_t *seen;
	uint32_t nseen, seencap;
	struct pn_dht_contact result[DHT_K];
	uint32_t nresult;
	struct sl_entry sl[SHORTLIST]; /* nearest first */
};

struct hnode {
	struct hnode *chain;
	uint8_t k[IDB];
};

struct htab {
	struct hnode **b;
	uint32_t nb, n;
};

struct srec {
	struct srec *next;
	uint64_t expires;
	uint8_t kind, name_len;
	uint8_t cid[PN_CID_BYTES];
	uint8_t publisher[PN_DHT_PUB_BYTES];
	uint8_t sig[PN_DHT_SIG_BYTES];
	struct pn_dht_addr addr;
	char name[];
};

struct skey { /* records under one key */
	struct hnode h;
	uint32_t n;
	struct srec *recs;
};

struct spub { /* records of one publisher */
	struct hnode h;
	uint32_t n;
};

struct announce {
	uint8_t key[IDB];
	struct pn_dht_record rec; /* rec.name points at name[] */
	uint64_t next_at;
	struct lookup *lk;
	char name[];
};

struct rate_slot {
	bool used;
	struct pn_dht_addr addr;
	uint64_t tokens_milli;
	uint64_t last;
};

struct qact {
	struct dht_action a;
	struct pn_dht_contact contact; /* CONTACT */
	char names[];                  /* copies of the names msg/rec point at */
};

struct dht {
	struct dht_opts o;
	struct pn_prng prng;
	uint64_t secret, hkey;
	size_t mem;
	struct bucket *buckets[DHT_BITS];
	size_t table_n;
	bool joined;
	/* After a join look-up: buckets jr_next .. jr_end-1 (farther than
	 * the closest neighbour) still to refresh (Kademlia, section 2.3). */
	uint16_t jr_next, jr_end;

	struct rpc *rpcs;
	uint32_t rpc_cap, rpc_used, rpc_hint;

	struct lookup *lk[LOOKUP_SLOTS];
	uint32_t n_user, n_internal, last_handle, gen, n_finished;

	struct htab keys, pubs;
	size_t nrecords;
	uint64_t rec_sweep;

	struct announce **ann;
	uint32_t nann, anncap;
	uint64_t ann_next;
	bool ann_waiting; /* a due announce waits for a look-up slot */

	struct rate_slot *rate;

	struct qact **q;
	uint32_t qlen, qrd, qcap;

	struct dht_stats stats;
};

/* ---- small helpers ---- */

static inline uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static inline uint64_t add_sat(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static inline uint64_t min64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

static inline bool id_eq(const uint8_t *a, const uint8_t *b)
{
	return !memcmp(a, b, IDB);
}

/* Leading bits a and b share (DHT_BITS if equal). */
static inline unsigned common_prefix(const uint8_t *a, const uint8_t *b)
{
	for (unsigned i = 0; i < IDB; i++) {
		uint8_t x = a[i] ^ b[i];

		if (x) {
			unsigned n = i * 8;

			while (!(x & 0x80)) {
				x <<= 1;
				n++;
			}
			return n;
		}
	}
	return DHT_BITS;
}

/* The wire helper's rules, kept here so the core needs no wire code. */
static inline bool addr_ok(const struct pn_dht_addr *a)
{
	return (a->family == 4 || a->family == 6) && a->port != 0;
}

static inline size_t addr_len(const struct pn_dht_addr *a)
{
	return 1 + (a->family == 6 ? 16u : 4u) + 2;
}

static inline size_t contact_len(const struct pn_dht_contact *c)
{
	return IDB + addr_len(&c->addr);
}

static inline bool addr_eq(const struct pn_dht_addr *a, const struct pn_dht_addr *b)
{
	return a->family == b->family && a->port == b->port &&
	       !memcmp(a->ip, b->ip, a->family == 6 ? 16 : 4);
}

static inline void *mem_calloc(struct dht *d, size_t size)
{
	void *p = calloc(1, size);

	if (p)
		d->mem += size;
	return p;
}

static inline void mem_free(struct dht *d, void *p, size_t size)
{
	if (p) {
		d->mem -= size;
		free(p);
	}
}

static inline uint64_t batch_ms(uint32_t period)
{
	uint64_t g = period / BATCH_DIV;

	return g ? g : 1;
}

/* ---- across the files (dht__ prefix) ---- */

struct qact *dht__q_push(struct dht *d, enum dht_action_type type, size_t extra);
void dht__rpc_release(struct dht *d, struct rpc *r);
struct rpc *dht__send_request(struct dht *d, uint8_t type, const struct pn_dht_addr *to, const uint8_t *id,
				uint8_t purpose, uint64_t now);
struct bucket *dht__bucket_get(struct dht *d, unsigned i, bool make);
size_t dht__table_closest(const struct dht *d, const uint8_t *key, const uint8_t *except,
			    struct pn_dht_contact *out, size_t max);
bool dht__token_ok(const struct dht *d, const struct pn_dht_addr *a, const uint8_t tok[PN_DHT_TOKEN_BYTES],
		     uint64_t now);
bool dht__rate_ok(struct dht *d, const struct pn_dht_addr *a, uint64_t now);
void dht__records_sweep(struct dht *d, uint64_t now);
bool dht__record_shape_ok(const struct pn_dht_record *r);
/* The live records of `kind` this node stores under key, up to max, into out
 * (names point into the store: valid until the next call into the core). */
size_t dht__local_records(const struct dht *d, const uint8_t *key, uint8_t kind, uint64_t now,
			  struct pn_dht_record *out, size_t max);
uint8_t dht__store_record(struct dht *d, const uint8_t *key, const struct pn_dht_record *rec,
			    const struct pn_dht_addr *from, uint64_t now);
int dht__sl_find(const struct lookup *lk, const uint8_t *id);
void dht__lookup_step(struct dht *d, struct lookup *lk, uint32_t slot, uint64_t now);
void dht__lookup_free(struct dht *d, uint32_t slot);
struct lookup *dht__lookup_start(struct dht *d, uint8_t kind, const uint8_t *key, uint32_t want, uint8_t purpose,
				   uint64_t now);
void dht__lookup_on_reply(struct dht *d, struct lookup *lk, uint32_t slot, const uint8_t *from_id,
			    const struct pn_dht_msg *m, uint64_t now);
struct lookup *dht__lookup_by_handle(struct dht *d, uint32_t handle, uint32_t *slot);
void dht__announces_run(struct dht *d, uint64_t now);
int dht__announce_find(const struct dht *d, const uint8_t *key, uint8_t kind, const uint8_t *cid);
void dht__announce_drop(struct dht *d, uint32_t i);
void dht__answer_values(struct dht *d, const struct pn_dht_addr *from, const uint8_t *from_id,
			  const struct pn_dht_msg *m, uint64_t now);
void dht__store_free(struct dht *d);

#endif
