/* The peer engine: everything a node, a server or a client does with its
 * peers to move content, as one sans-I/O state machine.
 *
 * One engine per node, server or client. It owns, per connection, the HELLO
 * exchange and duplicate-connection resolution, interest, BITFIELD/HAVE,
 * choking (with choker.c), the upload queue with CANCEL, META/HASH_REQ
 * serving, and, per download, fetching the name and the hash list, chunk
 * requests (with swarm.c), end game, super-seeding, and banning a provider of
 * corrupt data. It never touches a socket, clock, timer, file or log:
 *
 *   inputs   engine_peer_add / _established / _closed, engine_on_msg (a
 *            decoded message from peer k), engine_chunk_sent, engine_chunk_written,
 *            engine_want / engine_unwant, engine_provider, engine_tick;
 *            every one carries the current time in milliseconds.
 *   outputs  engine_next_action(): send a message, send a chunk (the driver
 *            reads it from its store), write a chunk (the driver verifies it
 *            against its hash and writes it), record a hash list or a name,
 *            dial, close, and the events a driver reports (peer ready,
 *            download done or stalled, a provider's error).
 *   wake-up  engine_next_wakeup(): the time engine_tick must next run.
 *
 * Drain engine_next_action() after every input, before the next input. A
 * pointer inside an action is valid until the next call other than
 * engine_next_action(); a WRITE_CHUNK's data points into the message handed
 * to engine_on_msg, so drain before that message's buffer goes.
 *
 * What the engine's owner holds (complete files, partial downloads on disk)
 * it asks for through engine_store_ops: a read-only, synchronous view.
 *
 * Roles. A node serves with choking and downloads from nodes and servers. A
 * server only serves, to everyone that asks, never choking (the client-server
 * model). A client only downloads. A peer that says it is a server in its
 * HELLO is used like a web seed: it never chokes, and it holds a content in
 * full exactly when it answers META for it.
 */
#ifndef PN_PROTO_ENGINE_H
#define PN_PROTO_ENGINE_H
#ifndef PN_INTERNAL
#error "an internal header of libpeernet: a program includes <peernet.h> only"
#endif

#include <stdbool.h>
#include <stdint.h>
#include "peernet.h"
#include "wire/wire.h"

#define ENGINE_MAX_PEER_CIDS 32      /* contents one connection may be about at once */
#define ENGINE_UPQ_MAX 64            /* chunk requests queued per peer of a node; more is a protocol error */
#define ENGINE_UPQ_MAX_SERVER 256    /* ... per client of a server (a client's longest window) */
#define ENGINE_MAX_DOWNLOADS 32
#define ENGINE_MAX_BANNED 256
#define ENGINE_DEFAULT_INFLIGHT_NODE 4    /* requests in flight to a node: a short pipeline behind its cap */
#define ENGINE_DEFAULT_INFLIGHT_SERVER 64 /* ... to a server: 16 MiB, enough to fill a fast link */
#define ENGINE_DEFAULT_STALL_MS 30000
#define ENGINE_DEFAULT_MOVE_MS 50    /* a request to a node waiting this long moves to an idle holder */
#define ENGINE_SEED_REVEAL_AHEAD 4   /* super-seeding: chunks announced ahead to each downloader */
#define ENGINE_SEED_RETRY_MS 100     /* super-seeding: a top-up the busy uplink put off is tried again */
#define ENGINE_HELLO_MAX_BODY 64     /* before HELLO no frame may be larger */
#define ENGINE_LINK_FEATURE 1u       /* HELLO feature bit of a discovery link (flooding); such links are never merged as duplicates */

enum engine_role { ENGINE_NODE = 1, ENGINE_SERVER, ENGINE_CLIENT };

/* What the owner holds of a content it is not downloading through the engine. */
struct engine_content {
	const char *name;        /* NUL-terminated; "" if unknown */
	const uint8_t *hashes;   /* nchunks * 32, or NULL when the hash list is not known */
	const uint8_t *bitmap;   /* chunks held, ceil(nchunks/8) bytes MSB first; NULL: all */
};

struct engine_store_ops {
	/* Fills *out and returns true when the owner holds cid complete (or in
	 * part, with its hash list). Pointers stay valid until the next engine call. */
	bool (*lookup)(void *ud, const struct pn_cid *cid, struct engine_content *out);
	/* Bytes accepted for sending on all connections and not yet on the wire
	 * (the upload cap holds them back). May be NULL: 0. A super-seeding
	 * source sends second copies only while this is below one chunk. */
	uint64_t (*backlog)(void *ud);
};

struct store;
/* A lookup for engine_store_ops over a content store (src/store): its
 * complete objects, by name and hash list. */
bool engine_store_lookup(const struct store *s, const struct pn_cid *cid, struct engine_content *out);

struct engine_opts {
	enum engine_role role;
	uint8_t self_id[PN_ID_BYTES];
	uint16_t listen_port;        /* in our HELLO */
	uint32_t upload_slots;       /* node: regular unchoke slots, 0 = choker default */
	uint32_t rechoke_ms, optimistic_ms; /* node: 0 = 5000 and 15000 */
	uint32_t inflight_node;      /* 0 = ENGINE_DEFAULT_INFLIGHT_NODE */
	uint32_t inflight_server;    /* 0 = ENGINE_DEFAULT_INFLIGHT_SERVER */
	uint32_t request_timeout_ms; /* 0 = the swarm's default */
	uint32_t request_move_ms;    /* a request waiting this long at a node moves to a holder with
				      * nothing of ours pending; 0 = ENGINE_DEFAULT_MOVE_MS, UINT32_MAX = never */
	uint32_t stall_ms;           /* a download that got no chunk for this long is reported stalled; 0 = default */
	bool no_super_seed;          /* node: announce everything to every downloader */
	bool sequential;             /* request chunks in order (a client: streaming, resume by prefix) */
	uint64_t backlog_max;        /* with store->backlog: hand out no chunk while that many bytes wait
				      * behind the upload cap (requests stay in the queues, where CANCEL
				      * and CHOKE still reach them); 0 = no limit */
	uint64_t seed;               /* PRNG seed: ties, optimistic unchokes, super-seeding picks */
	const struct engine_store_ops *store;
	void *store_ud;
};

enum engine_action_type {
	ENGINE_SEND = 1,     /* send msg to peer */
	ENGINE_SEND_CHUNK,   /* read chunk index of cid and send it to peer as CHUNK(req_id, ...); then engine_chunk_sent() */
	ENGINE_WRITE_CHUNK,  /* verify data (len bytes) as chunk index of cid and write it; then engine_chunk_written() */
	ENGINE_HASHES,       /* the hash list of a download is complete and matches its cid: data, nchunks*32
			      * bytes; record it, then engine_hashes_recorded() (chunks are requested after that) */
	ENGINE_NAME,         /* a download's name is known: name */
	ENGINE_DIAL,         /* connect to id at addr; then engine_peer_add(..., outgoing, id) and engine_peer_offer(cid) */
	ENGINE_CLOSE,        /* close the connection to peer with err (0: a clean close); why says what for */
	ENGINE_PEER_READY,   /* peer's HELLO was accepted: role, listen_port, features */
	ENGINE_DONE,         /* every chunk of the download cid is written: complete it; the engine has forgotten it */
	ENGINE_STALLED,      /* the download cid got no chunk for stall_ms (reported once per period) */
	ENGINE_NOT_FOUND,    /* peer (a server) does not have cid */
	ENGINE_PEER_ERROR,   /* peer sent ERROR: code, text (not NUL-terminated, text_len bytes) */
};

struct engine_action {
	enum engine_action_type type;
	uint32_t peer;
	int err;                 /* CLOSE */
	const char *why;         /* CLOSE: a static string */
	bool ban;                /* CLOSE: the peer's ID is refused from now on */
	struct pn_msg msg;       /* SEND */
	struct pn_cid cid;       /* SEND_CHUNK, WRITE_CHUNK, HASHES, NAME, DIAL, DONE, STALLED, NOT_FOUND */
	uint32_t index, req_id;  /* SEND_CHUNK, WRITE_CHUNK */
	const uint8_t *data;     /* WRITE_CHUNK, HASHES */
	uint32_t len;            /* WRITE_CHUNK */
	const char *name;        /* NAME (NUL-terminated) */
	uint8_t id[PN_ID_BYTES]; /* DIAL */
	char addr[64];           /* DIAL */
	uint8_t role;            /* PEER_READY */
	uint16_t listen_port;    /* PEER_READY */
	uint32_t features;       /* PEER_READY */
	uint16_t code;           /* PEER_ERROR */
	const char *text;        /* PEER_ERROR */
	uint16_t text_len;       /* PEER_ERROR */
};

struct engine_download_info {
	char name[PN_NAME_MAX + 1]; /* "" until known */
	bool have_hashes;
	uint32_t nchunks, have;     /* chunks */
	uint64_t bytes_have;        /* verified bytes held */
	uint64_t bytes_down;        /* chunk bytes received this session */
	uint32_t peers;             /* providers in its swarm */
	uint64_t started_ms;
};

struct engine_peer_info {
	uint8_t id[PN_ID_BYTES];
	uint8_t role;
	bool ready;                 /* HELLO accepted */
	bool am_choking, peer_choking;
	uint32_t ncids;
	uint32_t upq;               /* chunk requests waiting to be sent */
	uint64_t bytes_to, bytes_from;
};

struct engine_stats {
	uint64_t bytes_up, bytes_down; /* chunk payload */
	uint64_t chunks_up, chunks_down;
	uint64_t bad_chunks, cancels_sent, cancels_honoured;
	uint32_t peers, downloads;
};

struct engine;

/* NULL on allocation failure or bad options. Free with engine_free. */
struct engine *engine_new(const struct engine_opts *opts, uint64_t now);
void engine_free(struct engine *e);

/* ---- peers: k is a key the caller chooses, unique among live peers ---- */

/* A connection exists (dialled: outgoing, with the expected ID; or accepted:
 * id NULL). PN_EEXIST for a key in use, PN_EACCES for a banned ID, PN_ENOMEM. */
PN_MUST_CHECK int engine_peer_add(struct engine *e, uint32_t k, bool outgoing, const uint8_t *id, uint64_t now);
/* The secure channel is up and the peer's ID checked: the engine sends HELLO
 * (with hello_features). */
void engine_peer_established(struct engine *e, uint32_t k, const uint8_t id[PN_ID_BYTES], uint32_t hello_features,
			     uint64_t now);
/* Gone: its requests go to others, its upload queue is dropped. */
void engine_peer_closed(struct engine *e, uint32_t k, uint64_t now);
/* Tell the engine that peer k is said to hold cid (a provider from a look-up). */
void engine_peer_offer(struct engine *e, uint32_t k, const struct pn_cid *cid, uint64_t now);
/* The connection can take more (after a SEND_CHUNK found it congested). */
void engine_peer_writable(struct engine *e, uint32_t k, uint64_t now);

/* A decoded message from peer k. Returns PN_OK; PN_ENOTSUP for a type the
 * engine does not handle (directory, flooding, uploads, listing: the driver's);
 * PN_EAGAIN (a server only) when a client that does not read has filled its
 * upload queue: hand the frame again once the connection drained; another negative code when the peer broke the protocol: the driver closes
 * the connection with that error (a CLOSE action may say why). */
PN_MUST_CHECK int engine_on_msg(struct engine *e, uint32_t k, const struct pn_msg *m, uint64_t now);

/* The driver sent (ok) or could not read (!ok) the chunk of a SEND_CHUNK;
 * congested: the connection is full, send nothing more until engine_peer_writable. */
void engine_chunk_sent(struct engine *e, uint32_t k, const struct pn_cid *cid, uint32_t index, uint32_t len, bool ok,
		       bool congested, uint64_t now);
/* The result of a WRITE_CHUNK: PN_OK, PN_ECORRUPT (the data failed its hash:
 * the sender is banned and closed), or an I/O error (the download stalls on
 * that chunk; the owner should engine_unwant and report it). */
void engine_chunk_written(struct engine *e, uint32_t k, const struct pn_cid *cid, uint32_t index, int result,
			  uint64_t now);

/* ---- downloads ---- */

/* Start fetching cid. name: known name or NULL. hashes: the verified hash list
 * (nchunks*32, copied) or NULL to fetch it. have: chunks already verified on
 * disk (only with hashes), or NULL. PN_EINVAL for an ID past PN_MAX_FILE_SIZE,
 * PN_EEXIST if already wanted, PN_ELIMIT
 * beyond ENGINE_MAX_DOWNLOADS, PN_ENOTSUP for a server, PN_ENOMEM. */
PN_MUST_CHECK int engine_want(struct engine *e, const struct pn_cid *cid, const char *name, const uint8_t *hashes,
			      const uint8_t *have, uint64_t now);
/* The owner recorded the hash list of an ENGINE_HASHES; have: the chunks it
 * already holds verified (resuming), or NULL. */
void engine_hashes_recorded(struct engine *e, const struct pn_cid *cid, const uint8_t *have, uint64_t now);
/* Stop fetching cid (failed or cancelled): requests are cancelled, providers told NOT_INTERESTED. */
void engine_unwant(struct engine *e, const struct pn_cid *cid, uint64_t now);
/* A look-up found a provider: connect to it unless a connection to that ID
 * exists (then it is offered cid). Ignores our own ID and banned IDs. */
void engine_provider(struct engine *e, const uint8_t id[PN_ID_BYTES], const char *addr, const struct pn_cid *cid,
		     uint64_t now);
/* false if cid is not being downloaded. */
bool engine_download_info(const struct engine *e, const struct pn_cid *cid, struct engine_download_info *out);
bool engine_downloading(const struct engine *e, const struct pn_cid *cid);
/* A reader consumes cid in order while it downloads (or no longer): the
 * next ENGINE_STREAM_WINDOW chunks are asked for first, in order. */
void engine_set_streaming(struct engine *e, const struct pn_cid *cid, bool on);
#define ENGINE_STREAM_WINDOW 8
/* A provider connection that holds chunks of cid exists. */
bool engine_download_has_providers(const struct engine *e, const struct pn_cid *cid);

/* ---- time ---- */

void engine_tick(struct engine *e, uint64_t now);
/* Chunk requests wait because the upload backlog is full: the driver should
 * drain again (engine_next_action) once some of it has gone out. */
bool engine_uploads_waiting(const struct engine *e);
/* When engine_tick must next run (UINT64_MAX: nothing pending). */
uint64_t engine_next_wakeup(const struct engine *e);

/* Pops the next action; false when none is pending. */
bool engine_next_action(struct engine *e, struct engine_action *out);

bool engine_peer_info(const struct engine *e, uint32_t k, struct engine_peer_info *out);
void engine_stats(const struct engine *e, struct engine_stats *out);

/* Recounts what the engine keeps as running totals and indexes (queued
 * requests, blocked peers, the key index) and checks them: NULL when all
 * agree, else what is wrong. For tests and the simulator; O(peers). */
const char *engine_check(const struct engine *e);

/* The port our HELLO gives from now on (a listener learns it after the engine exists). */
void engine_set_listen_port(struct engine *e, uint16_t port);
bool engine_is_banned(const struct engine *e, const uint8_t id[PN_ID_BYTES]);

#endif
