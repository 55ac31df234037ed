/* Fair shares of a listener's connection slots (src/net/conn_limit.c): a
 * count of the connections from each source address, the decision whether a
 * new one is admitted, and a node's reserve of slots for the peers it dials.
 * Private to src/net/ and its unit test; no socket, clock or loop in here. */
#ifndef PN_NET_CONN_LIMIT_H
#define PN_NET_CONN_LIMIT_H
#ifndef PN_INTERNAL
#error "an internal header of libpeernet: a program includes <peernet.h> only"
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Accepted connections from one source address whose TLS handshake has not
 * finished: one more is accepted and closed at once, before any TLS work.
 * High enough for a burst of 64 clients started together behind one address
 * (bench section c, a NAT), low enough that one source holds under two thirds
 * of a node's inbound peer slots. */
#define PN_NET_HALFOPEN_PER_ADDR 64
/* Accepted connections from one source address, in any state. */
#define PN_NET_CONNS_PER_ADDR 128
/* A refusal for one of the limits above is logged at most once per this
 * interval, with the count of those refused since the last such line. */
#define PN_NET_LIMIT_LOG_INTERVAL_MS 10000
/* Buckets of the per-address table (a power of two; chains hold the rest). */
#define PN_ADDR_TABLE_BUCKETS 1024
/* An IPv6 source is counted by its /64 prefix (one subscriber's block). */
#define PN_ADDR_V6_PREFIX_BYTES 8

/* What counts as one source: an IPv4 address (each 127.x.y.z apart, so tests
 * can bind several), or the /64 of an IPv6 address. An IPv4-mapped IPv6
 * address (::ffff:a.b.c.d, from a dual-stack listener) is its IPv4 address. */
struct pn_addr_key {
	uint8_t family; /* AF_INET or AF_INET6 */
	uint8_t bytes[16];
};

/* Fills *key from sa. Returns false for a family other than IPv4 or IPv6. */
bool pn_addr_key_from(const struct sockaddr *sa, struct pn_addr_key *key);

/* The connections from one source; freed by the table when total falls to 0. */
struct pn_addr_count {
	struct pn_addr_key key;
	uint32_t halfopen; /* accepted, TLS handshake not finished */
	uint32_t total;    /* accepted, any state until the handle is closed */
	struct pn_addr_count *next;
};

struct pn_addr_table {
	struct pn_addr_count *bucket[PN_ADDR_TABLE_BUCKETS];
	uint64_t seed;   /* keyed hash: an attacker cannot aim at one chain */
	size_t entries;
};

struct pn_conn_limits {
	uint32_t halfopen_per_addr; /* 0: no limit */
	uint32_t conns_per_addr;    /* 0: no limit */
};

enum pn_admit {
	PN_ADMIT_OK = 0,
	PN_ADMIT_HALFOPEN, /* halfopen_per_addr handshakes already under way from that source */
	PN_ADMIT_CONNS,    /* conns_per_addr connections already open from that source */
};

void pn_addr_table_init(struct pn_addr_table *t, uint64_t seed);
/* Frees every entry (for a net that closes with connections still counted). */
void pn_addr_table_clear(struct pn_addr_table *t);
/* The entry for key, created with zero counts if missing. Returns NULL when
 * out of memory. The entry stays until pn_addr_table_release brings its
 * total back to 0. */
struct pn_addr_count *pn_addr_table_get(struct pn_addr_table *t, const struct pn_addr_key *key);
/* Looks up key without creating it; NULL if no connection from it is counted. */
const struct pn_addr_count *pn_addr_table_find(const struct pn_addr_table *t, const struct pn_addr_key *key);

/* Whether one more connection from the source counted in c may be admitted. */
enum pn_admit pn_conn_admit(const struct pn_addr_count *c, const struct pn_conn_limits *lim);
/* Counts an admitted connection: halfopen and total one higher. */
void pn_addr_count_open(struct pn_addr_count *c);
/* The connection's handshake finished (or it closed before it did). */
void pn_addr_count_handshake_over(struct pn_addr_count *c);
/* The connection is gone; the entry is freed when it was the last (c is then invalid). */
void pn_addr_table_release(struct pn_addr_table *t, struct pn_addr_count *c);

/* A node's peer slots: whether it may accept one more connection when it has
 * `total` peers, `inbound` of them accepted (the rest it dialled), out of
 * `max` slots of which `reserved_outbound` are kept for peers it dials
 * itself. A dial needs only total < max. */
static inline bool pn_slots_accept_ok(size_t total, size_t inbound, size_t max, size_t reserved_outbound)
{
	size_t inbound_max = max > reserved_outbound ? max - reserved_outbound : 0;
	return total < max && inbound < inbound_max;
}

#endif
