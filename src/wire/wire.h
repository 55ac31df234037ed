/* Wire format: framing and every message's encode/decode. Pure functions, no I/O.
 *
 * A frame is: u32 body length (big-endian), then the body: u8 type, payload.
 * The byte-by-byte layout of each message is in docs/PROTOCOL.md.
 *
 * Decoded messages point into the frame buffer they were decoded from
 * (names, hash lists, chunk data, list entries): they are valid only as long
 * as that buffer is, and are never freed separately.
 */
#ifndef PN_WIRE_H
#define PN_WIRE_H
#ifndef PN_INTERNAL
#error "an internal header of libpeernet: a program includes <peernet.h> only"
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "peernet.h"
#include "util/buf.h"
#include "util/text.h"

#define PN_FRAME_HDR 4                          /* u32 length */
#define PN_CHUNK_MSG_HDR (1 + 4 + PN_CID_BYTES + 4) /* type, req_id, cid, index */
#define PN_HASHES_MSG_HDR (1 + 4 + PN_CID_BYTES + 4 + 4) /* type, req_id, cid, first, count */
#define PN_HASHES_MAX 8192                      /* hashes in one HASHES message (256 KiB) */
#define PN_CHUNK_BODY_MAX (PN_CHUNK_MSG_HDR + PN_CHUNK_SIZE)
#define PN_HASHES_BODY_MAX (PN_HASHES_MSG_HDR + PN_HASHES_MAX * PN_HASH_BYTES)
/* Largest body of any type: a full HASHES page, 4 bytes more than a full CHUNK. */
#define PN_FRAME_MAX (PN_HASHES_BODY_MAX > PN_CHUNK_BODY_MAX ? PN_HASHES_BODY_MAX : PN_CHUNK_BODY_MAX)
#define PN_LIST_MAX 256                         /* entries in one LIST message */
#define PN_ERRMSG_MAX 255                       /* bytes of an ERROR message's text */

enum pn_msg_type {
	PN_MSG_HELLO = 0x01,
	PN_MSG_ERROR = 0x02,
	PN_MSG_PING = 0x03,
	PN_MSG_PONG = 0x04,

	PN_MSG_META_REQ = 0x10,
	PN_MSG_META = 0x11,
	PN_MSG_HASH_REQ = 0x12,
	PN_MSG_HASHES = 0x13,
	PN_MSG_CHUNK_REQ = 0x14,
	PN_MSG_CHUNK = 0x15,
	PN_MSG_CANCEL = 0x16,

	PN_MSG_LIST_REQ = 0x20,
	PN_MSG_LIST = 0x21,

	PN_MSG_PUT_BEGIN = 0x30,
	PN_MSG_PUT_STATUS = 0x31,
	PN_MSG_PUT_END = 0x32,
	PN_MSG_PUT_DONE = 0x33,

	/* swarm: between peer nodes (issue 3) */
	PN_MSG_INTERESTED = 0x40,     /* cid: I want this content */
	PN_MSG_NOT_INTERESTED = 0x41, /* cid */
	PN_MSG_BITFIELD = 0x42,       /* cid, nchunks, bitmap: what I hold of it */
	PN_MSG_HAVE = 0x43,           /* cid, index: I now hold this chunk */
	PN_MSG_CHOKE = 0x44,          /* (empty) I will not serve your chunk requests */
	PN_MSG_UNCHOKE = 0x45,        /* (empty) I will */

	/* directory: node <-> central look-up service (issue 3) */
	PN_MSG_DIR_REGISTER = 0x50,
	PN_MSG_DIR_OK = 0x51,
	PN_MSG_DIR_OFFER = 0x52,
	PN_MSG_DIR_WITHDRAW = 0x53,
	PN_MSG_DIR_FIND = 0x54,
	PN_MSG_DIR_PROVIDERS = 0x55,
	PN_MSG_DIR_SEARCH = 0x56,
	PN_MSG_DIR_RESULTS = 0x57,
	PN_MSG_DIR_BYE = 0x58,

	/* flooding: between neighbour nodes (issue 4) */
	PN_MSG_PEERS_REQ = 0x60,      /* (empty) who else do you know? */
	PN_MSG_PEERS = 0x61,          /* addresses of other nodes */
	PN_MSG_QUERY = 0x62,          /* a flooded query */
	PN_MSG_QUERY_HIT = 0x63,      /* an answer, routed back along the query's path */
};

enum pn_role { PN_ROLE_CLIENT = 1, PN_ROLE_SERVER = 2, PN_ROLE_NODE = 3, PN_ROLE_DIRECTORY = 4 };

/* Error codes carried in an ERROR message (stable on the wire). */
enum pn_wire_err {
	PN_WERR_PROTOCOL = 1,   /* malformed or unexpected message; connection closes */
	PN_WERR_NOT_FOUND = 2,  /* no such content */
	PN_WERR_LIMIT = 3,      /* a bound was exceeded (size, rate, count) */
	PN_WERR_CORRUPT = 4,    /* uploaded data failed its hash check */
	PN_WERR_INTERNAL = 5,   /* the peer failed (disk full, I/O error) */
	PN_WERR_BUSY = 6,       /* try again later */
};

struct pn_msg_hello {
	uint8_t version;   /* PN_PROTOCOL_VERSION */
	uint8_t role;      /* enum pn_role */
	uint16_t listen_port; /* port the sender accepts peers on, 0 for none */
	uint32_t features; /* bit set, 0 for now; unknown bits are ignored */
};

struct pn_msg_error {
	uint32_t req_id;   /* request this answers, 0 for the connection */
	uint16_t code;     /* enum pn_wire_err; never 0, unknown codes are allowed */
	uint16_t text_len; /* <= PN_ERRMSG_MAX */
	const char *text;  /* not NUL-terminated */
};

struct pn_msg_ping { uint64_t nonce; };

/* META_REQ, CHUNK_REQ, CANCEL, PUT_END, PUT_DONE share this shape. */
struct pn_msg_ref {
	uint32_t req_id;
	struct pn_cid cid;
	uint32_t index; /* CHUNK_REQ, CANCEL: chunk index < chunks(cid); otherwise not on
			 * the wire, 0 after decode, and encode rejects a non-zero one */
};

struct pn_msg_meta { /* also PUT_BEGIN */
	uint32_t req_id;
	struct pn_cid cid;
	uint16_t name_len; /* pn_name_valid(name, name_len) */
	const char *name;  /* not NUL-terminated */
};

struct pn_msg_hash_req {
	uint32_t req_id;
	struct pn_cid cid;
	uint32_t first;
	uint32_t count; /* 1..PN_HASHES_MAX, first+count <= chunks(cid) */
};

struct pn_msg_hashes {
	uint32_t req_id;
	struct pn_cid cid;
	uint32_t first;
	uint32_t count;         /* 1..PN_HASHES_MAX, first+count <= chunks(cid) */
	const uint8_t *hashes;  /* count * 32 bytes */
};

struct pn_msg_chunk {
	uint32_t req_id;
	struct pn_cid cid;
	uint32_t index;        /* < chunks(cid) */
	uint32_t len;          /* == pn_cid_chunk_len(cid, index) */
	const uint8_t *data;
};

struct pn_msg_list_req {
	uint32_t req_id;
	uint32_t cursor; /* 0 for the first page, else the LIST's next_cursor */
};

struct pn_list_entry {
	struct pn_cid cid;
	uint16_t name_len;
	const char *name;
};

struct pn_msg_list {
	uint32_t req_id;
	uint32_t next_cursor; /* 0 when this is the last page */
	uint16_t count;       /* <= PN_LIST_MAX */
	/* Entries are decoded one at a time with pn_list_next() from these bytes. */
	const uint8_t *entries;
	size_t entries_len;
};

struct pn_msg_put_status {
	uint32_t req_id;
	struct pn_cid cid;
	uint8_t flags;          /* bit 0: the receiver already has the complete hash list */
	uint32_t nchunks;       /* == chunks(cid) */
	const uint8_t *bitmap;  /* ceil(nchunks/8) bytes; bit i (MSB first) = has chunk i */
};
#define PN_PUT_HAVE_HASHES 0x01

/* ---- swarm ---- */

/* INTERESTED, NOT_INTERESTED: u8 type, cid. HAVE: cid, u32 index (< chunks). */
struct pn_msg_cidref {
	struct pn_cid cid;
	uint32_t index; /* HAVE only */
};

/* BITFIELD: cid, u32 nchunks (== chunks(cid)), ceil(nchunks/8) bitmap bytes,
 * MSB first, trailing bits zero. CHOKE and UNCHOKE have an empty payload. */
struct pn_msg_bitfield {
	struct pn_cid cid;
	uint32_t nchunks;
	const uint8_t *bitmap;
};

/* ---- directory ---- */

#define PN_DIR_ADDR_MAX PN_ADDR_MAX /* bytes of "ip:port" / "[v6]:port" / host (peernet.h) */
#define PN_DIR_OFFER_MAX 256    /* entries in one DIR_OFFER */
#define PN_DIR_RESULTS_MAX 100  /* entries in DIR_PROVIDERS / DIR_RESULTS */
#define PN_DIR_QUERY_MAX PN_QUERY_MAX /* bytes of a search query (peernet.h) */

/* DIR_REGISTER: u32 req_id, u16 listen_port (1..65535), u8 host_len (0..63),
 * host (printable ASCII, no space; empty: the directory uses the address the
 * connection comes from). */
struct pn_msg_dir_register {
	uint32_t req_id;
	uint16_t listen_port;
	uint8_t host_len;
	const char *host;
};

/* DIR_OK: u32 req_id, u32 heartbeat_ms (how often the node should PING; 0 in
 * answers other than to DIR_REGISTER). */
struct pn_msg_dir_ok {
	uint32_t req_id;
	uint32_t heartbeat_ms;
};

/* DIR_OFFER: u32 req_id, u16 count (1..PN_DIR_OFFER_MAX), count entries each
 * cid, u16 name_len, name (pn_name_valid). Iterate with pn_list_next-like
 * pn_dir_offer_next(). */
struct pn_msg_dir_offer {
	uint32_t req_id;
	uint16_t count;
	const uint8_t *entries;
	size_t entries_len;
};

/* DIR_WITHDRAW, DIR_FIND: u32 req_id, cid. DIR_BYE: u32 req_id only (cid zero, not on the wire). */
struct pn_msg_dir_ref {
	uint32_t req_id;
	struct pn_cid cid;
};

/* DIR_PROVIDERS: u32 req_id, cid, u32 total (providers known), u16 count
 * (<= PN_DIR_RESULTS_MAX, <= total), count entries each node_id[32],
 * u8 addr_len (1..63), addr (printable ASCII, no space). */
struct pn_msg_dir_providers {
	uint32_t req_id;
	struct pn_cid cid;
	uint32_t total;
	uint16_t count;
	const uint8_t *entries;
	size_t entries_len;
};

struct pn_dir_provider_entry {
	const uint8_t *node_id; /* 32 bytes */
	uint8_t addr_len;
	const char *addr;
};

/* DIR_SEARCH: u32 req_id, u16 query_len (1..PN_DIR_QUERY_MAX), query (UTF-8). */
struct pn_msg_dir_search {
	uint32_t req_id;
	uint16_t query_len;
	const char *query;
};

/* DIR_RESULTS: u32 req_id, u16 count (<= PN_DIR_RESULTS_MAX), count entries
 * each cid, u32 providers, u16 name_len, name (pn_name_valid). */
struct pn_msg_dir_results {
	uint32_t req_id;
	uint16_t count;
	const uint8_t *entries;
	size_t entries_len;
};

struct pn_dir_result_entry {
	struct pn_cid cid;
	uint32_t providers;
	uint16_t name_len;
	const char *name;
};

/* ---- flooding ---- */

#define PN_QID_BYTES 16
#define PN_PEERS_MAX 32         /* entries in one PEERS */
#define PN_QUERY_DATA_MAX 255   /* bytes of a query's keywords or content ID */
#define PN_HIT_RESULTS_MAX 32   /* results in one QUERY_HIT */
#define PN_FLOOD_MAX_TTL 7

/* PEERS: u8 count (<= PN_PEERS_MAX), entries each node_id[32], u8 addr_len
 * (1..PN_DIR_ADDR_MAX), addr (pn_addr_text_valid) — the same entry layout
 * as DIR_PROVIDERS; iterate with pn_peers_next. */
struct pn_msg_peers {
	uint8_t count;
	const uint8_t *entries;
	size_t entries_len;
};

/* QUERY: qid[16], u8 ttl (1..PN_FLOOD_MAX_TTL... receivers clamp, so any
 * value 0..255 decodes), u8 hops, u8 kind (1 keywords, 2 content ID),
 * u16 len, data: kind 1: 1..PN_QUERY_DATA_MAX bytes of UTF-8 without
 * control bytes; kind 2: exactly 40 bytes, a content ID in wire form. */
struct pn_msg_query {
	uint8_t qid[PN_QID_BYTES];
	uint8_t ttl;
	uint8_t hops;
	uint8_t kind;
	uint16_t len;
	const uint8_t *data;
};

/* QUERY_HIT: qid[16], node_id[32] of the provider, u8 addr_len
 * (1..PN_DIR_ADDR_MAX), addr, u16 count (1..PN_HIT_RESULTS_MAX), entries each
 * cid, u16 name_len, name (pn_name_valid) — LIST entry layout; iterate with
 * pn_hit_next. */
struct pn_msg_query_hit {
	uint8_t qid[PN_QID_BYTES];
	const uint8_t *node_id;
	uint8_t addr_len;
	const char *addr;
	uint16_t count;
	const uint8_t *entries;
	size_t entries_len;
};

struct pn_msg {
	uint8_t type;
	union {
		struct pn_msg_hello hello;
		struct pn_msg_error error;
		struct pn_msg_ping ping;      /* PING, PONG */
		struct pn_msg_ref ref;        /* META_REQ, CHUNK_REQ, CANCEL, PUT_END, PUT_DONE */
		struct pn_msg_meta meta;      /* META, PUT_BEGIN */
		struct pn_msg_hash_req hash_req;
		struct pn_msg_hashes hashes;
		struct pn_msg_chunk chunk;
		struct pn_msg_list_req list_req;
		struct pn_msg_list list;
		struct pn_msg_put_status put_status;
		struct pn_msg_cidref cidref;  /* INTERESTED, NOT_INTERESTED, HAVE */
		struct pn_msg_bitfield bitfield;
		struct pn_msg_dir_register dir_register;
		struct pn_msg_dir_ok dir_ok;
		struct pn_msg_dir_offer dir_offer;
		struct pn_msg_dir_ref dir_ref; /* DIR_WITHDRAW, DIR_FIND, DIR_BYE */
		struct pn_msg_dir_providers dir_providers;
		struct pn_msg_dir_search dir_search;
		struct pn_msg_dir_results dir_results;
		struct pn_msg_peers peers;
		struct pn_msg_query query;
		struct pn_msg_query_hit query_hit;
	} u;
};

/* Splits a stream: given the bytes received so far, returns PN_OK and sets
 * *body_len when a whole frame is present (the body starts at buf+PN_FRAME_HDR),
 * PN_EAGAIN when more bytes are needed, PN_ETOOBIG when the declared length
 * exceeds max_body, PN_EPROTO when it is 0. As soon as the type byte has
 * arrived it also returns PN_ETOOBIG if the length exceeds pn_msg_max_body()
 * of a known type, so an oversized frame is refused before it is buffered.
 * (Unknown types are left to pn_msg_decode, which says PN_EPROTO.) */
PN_MUST_CHECK int pn_frame_check(const uint8_t *buf, size_t len, size_t max_body, size_t *body_len);

/* Largest body a message of this type may have; 0 for an unknown type. */
size_t pn_msg_max_body(uint8_t type);

/* Decodes one frame body (type byte first). Checks every field against its
 * limit, and that the body has no trailing bytes. Returns PN_OK, PN_EPROTO
 * (malformed, truncated, unknown type, field out of range) or PN_ETOOBIG
 * (len exceeds pn_msg_max_body of the type). On error *out is unspecified. */
PN_MUST_CHECK int pn_msg_decode(const uint8_t *body, size_t len, struct pn_msg *out);

/* Encodes a whole frame (length prefix included) into w. Returns PN_OK,
 * PN_EINVAL if a field is out of range (anything pn_msg_decode would reject;
 * nothing is written then), PN_ETOOBIG if w is too small (w->err is then
 * set and what was written is garbage). decode(encode(m)) == m always. */
PN_MUST_CHECK int pn_msg_encode(const struct pn_msg *m, struct pn_writer *w);

/* Encodes only the frame header and message header of a CHUNK of `len` bytes
 * (PN_FRAME_HDR + PN_CHUNK_MSG_HDR bytes into hdr), so the data can be read
 * from disk straight after it. Trusted input: the caller makes sure that
 * index < chunks(cid) and len == pn_cid_chunk_len(cid, index). */
void pn_chunk_hdr_encode(uint8_t hdr[PN_FRAME_HDR + PN_CHUNK_MSG_HDR], uint32_t req_id,
			 const struct pn_cid *cid, uint32_t index, uint32_t len);

/* Iterates LIST entries: *off starts at 0. Returns PN_OK with *e filled, PN_EAGAIN
 * at the end, PN_EPROTO on a malformed entry (cannot happen after pn_msg_decode
 * accepted the message). */
PN_MUST_CHECK int pn_list_next(const struct pn_msg_list *l, size_t *off, struct pn_list_entry *e);
/* Appends one LIST entry in wire form to w (for building the entries of a
 * struct pn_msg_list to pass to pn_msg_encode). An invalid entry (bad name,
 * size > PN_MAX_FILE_SIZE) writes nothing and sets w->err to PN_EINVAL. */
void pn_list_entry_encode(struct pn_writer *w, const struct pn_list_entry *e);

/* Iterators and entry encoders of the directory lists, same contract as
 * pn_list_next / pn_list_entry_encode. A DIR_OFFER entry is a pn_list_entry. */
PN_MUST_CHECK int pn_dir_offer_next(const struct pn_msg_dir_offer *m, size_t *off, struct pn_list_entry *e);
PN_MUST_CHECK int pn_dir_provider_next(const struct pn_msg_dir_providers *m, size_t *off,
				       struct pn_dir_provider_entry *e);
void pn_dir_provider_encode(struct pn_writer *w, const struct pn_dir_provider_entry *e);
PN_MUST_CHECK int pn_dir_result_next(const struct pn_msg_dir_results *m, size_t *off, struct pn_dir_result_entry *e);
void pn_dir_result_encode(struct pn_writer *w, const struct pn_dir_result_entry *e);
/* PEERS entries (same form as DIR_PROVIDERS entries) and QUERY_HIT results
 * (same form as LIST entries). */
PN_MUST_CHECK int pn_peers_next(const struct pn_msg_peers *m, size_t *off, struct pn_dir_provider_entry *e);
PN_MUST_CHECK int pn_hit_next(const struct pn_msg_query_hit *m, size_t *off, struct pn_list_entry *e);

/* Printable ASCII (0x21..0x7e), 1..PN_DIR_ADDR_MAX bytes (0 allowed if allow_empty). */
bool pn_addr_text_valid(const char *s, size_t len, bool allow_empty);

/* A file name on the wire: pn_name_valid() (util/text.h, included above). */

/* Wire form of a content ID: root[32] || size u64 BE. pn_cid_read fails the
 * reader with PN_EPROTO when size > PN_MAX_FILE_SIZE. */
void pn_cid_write(struct pn_writer *w, const struct pn_cid *cid);
void pn_cid_read(struct pn_reader *r, struct pn_cid *cid);

#endif
