/* The DHT's datagrams: encode and decode. Pure functions, no I/O, no crypto.
 *
 * The DHT speaks UDP (docs/DHT.md says why). One datagram is one message:
 *
 *   "pD"  u8 version (1)  u8 type  u32 txid  sender_key[32]  body  sig[64]
 *
 * sender_key is the sender's raw Ed25519 public key; its node ID is
 * SHA-256(sender_key). sig is the sender's Ed25519 signature over every byte
 * before it. This layer only lays the bytes out: the driver signs what
 * pn_dht_encode wrote (pn_dht_encode leaves the last 64 bytes for it) and
 * checks the signature and the ID binding of what pn_dht_decode read, before
 * the core sees the message. The byte-by-byte layout of every body is in
 * docs/PROTOCOL.md, "DHT datagrams".
 *
 * Decoded messages point into the datagram they were decoded from (names,
 * signatures, keys of records); they are valid as long as that buffer is.
 */
#ifndef PN_WIRE_DHT_H
#define PN_WIRE_DHT_H
#ifndef PN_INTERNAL
#error "an internal header of libpeernet: a program includes <peernet.h> only"
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "peernet.h"
#include "util/buf.h"

#define PN_DHT_MAGIC0 'p'
#define PN_DHT_MAGIC1 'D'
#define PN_DHT_VERSION 1
#define PN_DHT_KEY_BYTES 32      /* keys and node IDs: 256 bits */
#define PN_DHT_PUB_BYTES 32      /* Ed25519 public key */
#define PN_DHT_SIG_BYTES 64      /* Ed25519 signature */
#define PN_DHT_TOKEN_BYTES 16    /* write token (STORE) */
#define PN_DHT_HDR_BYTES (2 + 1 + 1 + 4 + PN_DHT_PUB_BYTES)
/* Largest datagram sent or accepted: fits the IPv6 minimum MTU (1280) with
 * the IPv6 and UDP headers. */
#define PN_DHT_DGRAM_MAX 1232
#define PN_DHT_NODES_MAX 20      /* contacts in one NODES/VALUES message (= k) */
#define PN_DHT_RECORDS_MAX 16    /* records in one VALUES message */
#define PN_DHT_NAME_MAX 255      /* bytes of a keyword record's file name */

enum pn_dht_type {
	PN_DHT_PING = 0x01,       /* body: empty */
	PN_DHT_PONG = 0x02,       /* body: addr (the requester's address as seen by the replier) */
	PN_DHT_FIND_NODE = 0x03,  /* body: target[32] */
	PN_DHT_NODES = 0x04,      /* body: u8 n, n contacts */
	PN_DHT_FIND_VALUE = 0x05, /* body: u8 kind, key[32] */
	PN_DHT_VALUES = 0x06,     /* body: token[16], u8 n, n contacts, u8 m, m records (with addr) */
	PN_DHT_STORE = 0x07,      /* body: token[16], key[32], one record (without addr) */
	PN_DHT_STORED = 0x08,     /* body: u8 status (enum pn_dht_store_status) */
};

/* What a record says. */
enum pn_dht_kind {
	PN_DHT_REC_PROVIDER = 1, /* the publisher serves content `cid`; key = pn_dht_key_of_cid(cid) */
	PN_DHT_REC_KEYWORD = 2,  /* content `cid` is named `name`; key = pn_dht_key_of_word(a word of name) */
};

enum pn_dht_store_status {
	PN_DHT_STORE_OK = 0,
	PN_DHT_STORE_NOT_CLOSE = 1, /* this node is not among the k closest it knows to the key */
	PN_DHT_STORE_FULL = 2,      /* a bound on records (per publisher, per key, in all) is reached */
	PN_DHT_STORE_BAD_TOKEN = 3, /* the token was not one this node gave the sender lately */
	PN_DHT_STORE_INVALID = 4,   /* the record is malformed or its key does not match it */
};

/* An endpoint: family 4 or 6; ip holds 4 or 16 bytes (the rest zero); port
 * in host order, never 0. On the wire: u8 family, 4 or 16 bytes, u16 port. */
struct pn_dht_addr {
	uint8_t family;
	uint8_t ip[16];
	uint16_t port;
};

/* A node: its ID (SHA-256 of its public key) and its UDP endpoint, which is
 * also the TCP endpoint it serves transfers on (same port number). On the
 * wire: id[32], addr. */
struct pn_dht_contact {
	uint8_t id[PN_DHT_KEY_BYTES];
	struct pn_dht_addr addr;
};

/* A signed statement stored under a key. On the wire: u8 kind, cid[40],
 * u8 name_len, name (kind KEYWORD: 1..PN_DHT_NAME_MAX bytes that
 * pn_name_valid accepts; kind PROVIDER: 0 bytes), publisher[32], sig[64],
 * and, in VALUES only, addr. sig is the publisher's Ed25519 signature over
 * pn_dht_record_signed_bytes(). The key is not in the record: it is the key
 * of the STORE or FIND_VALUE that carries it. */
struct pn_dht_record {
	uint8_t kind;
	uint8_t cid[PN_CID_BYTES];
	uint8_t name_len;
	const char *name;
	uint8_t publisher[PN_DHT_PUB_BYTES];
	uint8_t sig[PN_DHT_SIG_BYTES];
	struct pn_dht_addr addr; /* VALUES: where the storer saw the publisher; else unused */
};

/* What a record's signature covers: "peernet-dht-record-1" (20 bytes), kind,
 * key[32], cid[40], u8 name_len, name. Writes at most
 * PN_DHT_SIGNED_MAX bytes into out and returns how many. */
#define PN_DHT_SIGNED_MAX (20 + 1 + PN_DHT_KEY_BYTES + PN_CID_BYTES + 1 + PN_DHT_NAME_MAX)
size_t pn_dht_record_signed_bytes(const struct pn_dht_record *r, const uint8_t key[PN_DHT_KEY_BYTES],
				  uint8_t out[PN_DHT_SIGNED_MAX]);

struct pn_dht_msg {
	uint8_t type; /* enum pn_dht_type */
	uint32_t txid; /* chosen by the requester, echoed by the reply */
	uint8_t sender_key[PN_DHT_PUB_BYTES];
	const uint8_t *sig; /* decode: points at the signature; encode: ignored */
	size_t signed_len;  /* decode: bytes the signature covers (everything before it) */
	union {
		struct pn_dht_addr pong; /* PONG: the requester's endpoint as the replier saw it */
		uint8_t target[PN_DHT_KEY_BYTES]; /* FIND_NODE */
		struct {
			uint8_t kind;
			uint8_t key[PN_DHT_KEY_BYTES];
		} find_value;
		struct { /* NODES (token and records unused), VALUES */
			uint8_t token[PN_DHT_TOKEN_BYTES];
			uint8_t n_nodes;
			struct pn_dht_contact nodes[PN_DHT_NODES_MAX];
			uint8_t n_records;
			struct pn_dht_record records[PN_DHT_RECORDS_MAX];
		} nodes;
		struct {
			uint8_t token[PN_DHT_TOKEN_BYTES];
			uint8_t key[PN_DHT_KEY_BYTES];
			struct pn_dht_record record;
		} store;
		uint8_t stored; /* STORED: enum pn_dht_store_status */
	} u;
};

/* Decodes one datagram. 0, or PN_EPROTO (bad magic, version, type, length,
 * field out of range, trailing bytes, more than the MAX counts). Checks no
 * signature. */
PN_MUST_CHECK int pn_dht_decode(const uint8_t *dgram, size_t len, struct pn_dht_msg *out);

/* Encodes m into out (at most PN_DHT_DGRAM_MAX bytes) with a zeroed
 * signature: the caller signs out[0 .. *len - 64) and writes the signature
 * into the last 64 bytes. NODES and VALUES carry as many of m's contacts and
 * records, in order, as fit in PN_DHT_DGRAM_MAX (the rest are left out, and
 * n_nodes/n_records of the datagram say how many went); in VALUES the
 * records are fitted first and the contacts take the room left, so that a
 * full list of contacts never crowds out every record. 0, or PN_EINVAL if a
 * field is out of range (anything pn_dht_decode would reject). */
PN_MUST_CHECK int pn_dht_encode(const struct pn_dht_msg *m, uint8_t out[PN_DHT_DGRAM_MAX], size_t *len);

/* Bytes of an address, a contact and a record on the wire (an address of
 * a family other than 4 or 6 counts 0). */
size_t pn_dht_addr_wire_len(const struct pn_dht_addr *a);
size_t pn_dht_contact_wire_len(const struct pn_dht_contact *c);
size_t pn_dht_record_wire_len(const struct pn_dht_record *r, bool with_addr);

/* Valid endpoint: family 4 or 6, port not 0. */
bool pn_dht_addr_valid(const struct pn_dht_addr *a);

#endif
