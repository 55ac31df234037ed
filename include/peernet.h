/* peernet — public API.
 *
 * Everything a program linking libpeernet may use is declared here with the
 * pn_ prefix. Internal headers live beside their sources in src/ and refuse
 * to be included from outside the library.
 *
 * Rules that hold for every function below:
 * * A node, server or directory lives on the caller's uv_loop_t and is used
 *   from that loop's thread only. Several may share one loop or one process.
 * * Functions that can fail return 0 (PN_OK) or a negative PN_E* code.
 * * Strings and structs passed in are copied before the call returns unless a
 *   comment says otherwise; pointers handed to a callback are valid only
 *   during that callback.
 * * Handles are opaque. Every handle that *_new gave out must be closed with
 *   its *_close, which finishes asynchronously: the handle's memory is freed
 *   just before its close callback runs, so the callback must not use it.
 * * The library prints nothing, installs no signal handler and keeps no
 *   process-wide state; its lines go to the log callback the program sets.
 *   Like any libuv program, one that embeds peernet should ignore SIGPIPE
 *   (signal(SIGPIPE, SIG_IGN)): a peer closing mid-write must not kill it.
 */
#ifndef PEERNET_H
#define PEERNET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The loop everything runs on is libuv's; a program that runs one includes
 * <uv.h> itself. (C11 allows this typedef to repeat uv.h's.) */
struct uv_loop_s;
typedef struct uv_loop_s uv_loop_t;

#define PN_VERSION_MAJOR 0
#define PN_VERSION_MINOR 1
#define PN_VERSION_PATCH 0
#define PN_VERSION_STR_(x) #x
#define PN_VERSION_XSTR_(a, b, c) PN_VERSION_STR_(a) "." PN_VERSION_STR_(b) "." PN_VERSION_STR_(c)
#define PN_VERSION_STRING PN_VERSION_XSTR_(PN_VERSION_MAJOR, PN_VERSION_MINOR, PN_VERSION_PATCH)
/* One number that grows with every release: 0x00MMmmpp. */
#define PN_VERSION_HEX ((PN_VERSION_MAJOR << 16) | (PN_VERSION_MINOR << 8) | PN_VERSION_PATCH)
#define PN_PROTOCOL_VERSION 1

#if defined(__GNUC__)
#define PN_MUST_CHECK __attribute__((warn_unused_result))
/* Marks what the shared library exports: it is built with hidden visibility,
 * so only the declarations of this header are visible to programs. */
#define PN_EXTERN __attribute__((visibility("default")))
#else
#define PN_MUST_CHECK
#define PN_EXTERN
#endif

/* Every function that can fail returns 0 or one of these negative codes. */
enum pn_err {
	PN_OK = 0,
	PN_EINVAL = -1,       /* bad argument */
	PN_ENOMEM = -2,       /* out of memory */
	PN_EPROTO = -3,       /* malformed or out-of-order message */
	PN_ETOOBIG = -4,      /* a length exceeds its limit */
	PN_EAGAIN = -5,       /* need more bytes */
	PN_EIO = -6,          /* I/O error (errno has detail) */
	PN_ENOTFOUND = -7,    /* no such content */
	PN_EEXIST = -8,       /* already exists */
	PN_ECORRUPT = -9,     /* data does not match its hash */
	PN_ETLS = -10,        /* TLS failure */
	PN_EPEERID = -11,     /* peer identity is not the one expected */
	PN_ETIMEDOUT = -12,   /* timed out */
	PN_ECONNREFUSED = -13,/* connection refused / unreachable */
	PN_ENOSPC = -14,      /* disk full */
	PN_ECLOSED = -15,     /* connection closed */
	PN_EBADID = -16,      /* malformed content ID */
	PN_ELIMIT = -17,      /* a bound (rate, count, size) was exceeded */
	PN_ENOTSUP = -18,     /* not supported */
	PN_EACCES = -19,      /* permission denied */
	PN_ELINK = -20,       /* a symbolic link where a file is written: not followed */
	PN_ECANCELED = -21,   /* cancelled by the caller, or the handle is closing */
	PN_EBUSY = -22,       /* the handle is not in a state that allows this call */
	PN_EREMOTE = -23,     /* the other side refused the request (the message says why) */
	PN_ERR_MIN_ = -24
};

/* Returns a static, human-readable string for an error code. */
PN_EXTERN const char *pn_strerror(int err);

/* Content ID: the hash-tree root over the file's chunk hashes, plus its size.
 * Printed form: "pn1" followed by the RFC 4648 base32 (lower case, no padding)
 * of root[32] || size as 8 bytes big-endian: 3 + 64 characters. */
#define PN_HASH_BYTES 32
#define PN_ID_BYTES 32              /* node ID: SHA-256 of the Ed25519 public key */
#define PN_CID_BYTES 40             /* root + size, on the wire */
#define PN_CID_STR_LEN 67           /* printed form, without the NUL */
#define PN_NODE_ID_STR_LEN 64       /* node ID printed as lower-case hex */
#define PN_CHUNK_SIZE (256u * 1024u)
#define PN_MAX_CHUNKS (256u * 1024u) /* => largest file 64 GiB */
#define PN_MAX_FILE_SIZE ((uint64_t)PN_MAX_CHUNKS * PN_CHUNK_SIZE)
#define PN_NAME_MAX 255             /* bytes of a file name, UTF-8 */

struct pn_cid {
	uint8_t root[PN_HASH_BYTES];
	uint64_t size;
};

/* Writes the printed form and a NUL into out (PN_CID_STR_LEN + 1 bytes). */
PN_EXTERN void pn_cid_format(const struct pn_cid *cid, char out[PN_CID_STR_LEN + 1]);
/* Parses the printed form (case-insensitive). PN_EBADID on any error. */
PN_EXTERN PN_MUST_CHECK int pn_cid_parse(const char *s, struct pn_cid *out);
/* Number of chunks of a file of this size: max(1, ceil(size / PN_CHUNK_SIZE)). */
PN_EXTERN uint32_t pn_cid_chunks(const struct pn_cid *cid);
/* Length in bytes of chunk `index` (the last may be short; a 0-byte file has one 0-byte chunk). */
PN_EXTERN uint32_t pn_cid_chunk_len(const struct pn_cid *cid, uint32_t index);
/* The content ID of the regular file at path, as a node sharing it would
 * compute it (every chunk hashed; nothing is stored or sent). The caller's
 * thread is busy meanwhile, about a second per GiB. 0; PN_EINVAL for what is
 * not a regular file, PN_ETOOBIG above PN_MAX_FILE_SIZE, PN_EIO (errno set)
 * when it cannot be read, PN_ENOMEM. */
PN_EXTERN PN_MUST_CHECK int pn_cid_of_file(const char *path, struct pn_cid *out);

/* "MAJOR.MINOR.PATCH" of the library actually linked (PN_VERSION_STRING is
 * that of the header compiled against). Static string. */
PN_EXTERN const char *pn_version(void);

/* ------------------------------------------------------------------ logging */

enum pn_log_level { PN_LOG_ERROR = 0, PN_LOG_WARN = 1, PN_LOG_INFO = 2, PN_LOG_DEBUG = 3 };

/* Receives one finished line (no trailing newline), valid only during the call. */
typedef void (*pn_log_cb)(void *ud, enum pn_log_level level, const char *line);

/* "error", "warn", "info", "debug" (static; "?" when out of range). */
PN_EXTERN const char *pn_log_level_name(enum pn_log_level level);
/* Parses one of those names: 0, or PN_EINVAL (out unchanged). */
PN_EXTERN PN_MUST_CHECK int pn_log_level_parse(const char *s, enum pn_log_level *out);
/* A ready-made pn_log_cb: writes "HH:MM:SS.mmm TAG LEVEL: line" (UTC) to
 * stderr in one write(2). ud is the tag, a const char * (NULL: "peernet"). */
PN_EXTERN void pn_log_stderr_cb(void *ud, enum pn_log_level level, const char *line);

/* The data directory a program should use when the user names none:
 * $PEERNET_DATA, else $XDG_DATA_HOME/peernet, else $HOME/.local/share/peernet.
 * Writes a NUL-terminated path into out (cut to len bytes). */
PN_EXTERN void pn_default_data_dir(char *out, size_t len);

/* The control socket's file name inside a data directory, where the CLI puts
 * it (pn_node_config.control_path) and looks for it. */
#define PN_CONTROL_SOCKET "control.sock"
/* Its protocol is JSON lines, one request per connection (described at the
 * top of src/node/node_ctl.c; bounds in docs/PROTOCOL.md, "Local control
 * socket"), which pn_ctl_* below speak: a request line and a reply line are
 * at most these many bytes, the newline included. */
#define PN_CONTROL_REQUEST_MAX (64 * 1024)
#define PN_CONTROL_REPLY_MAX (1024 * 1024)

/* A node ID prints as PN_NODE_ID_STR_LEN lower-case hex digits (and a NUL);
 * parse accepts either case and nothing else (PN_EINVAL). */
PN_EXTERN void pn_node_id_format(const uint8_t id[PN_ID_BYTES], char out[PN_NODE_ID_STR_LEN + 1]);
PN_EXTERN PN_MUST_CHECK int pn_node_id_parse(const char *s, uint8_t out[PN_ID_BYTES]);

/* ------------------------------------------------------------------ user input
 *
 * What a program checks its user's words with, so that it answers as the
 * library would, naming the word that is wrong. */

/* Bytes of an address "HOST:PORT" ("[v6]:PORT", "name:PORT") a node is given
 * (bootstrap, seed server, directory) or gives out (an announced host and
 * its port). */
#define PN_ADDR_MAX 63
/* Bytes of a search query (pn_node_search). */
#define PN_QUERY_MAX 255

/* Whether s may be an address: 1 to PN_ADDR_MAX printable ASCII characters,
 * no space (whether it resolves is known only when it is dialled). */
PN_EXTERN bool pn_addr_valid(const char *s);
/* Parses a rate in bytes per second: "500K", "2M", "1.5G", "800" (K, M, G
 * are powers of 1024; a trailing B is allowed); "0" and "unlimited" are 0,
 * no cap. 0, or PN_EINVAL (out unchanged). */
PN_EXTERN PN_MUST_CHECK int pn_parse_rate(const char *s, uint64_t *out);
/* Copies s (len bytes, any bytes: a file name, a path) into out (cap >= 1
 * bytes, NUL-terminated, cut if it does not fit) so that it can go into a
 * one-line message on a terminal: valid, visible UTF-8 is kept; control
 * bytes, bytes of invalid UTF-8 and invisible format controls become \xNN.
 * Returns out. */
PN_EXTERN char *pn_text_escape(const char *s, size_t len, char *out, size_t cap);

/* Copies s (len bytes, any bytes) into out (cap >= 1 bytes, NUL-terminated,
 * cut at a character boundary if it does not fit) as valid UTF-8: each byte
 * that is not part of valid UTF-8 becomes U+FFFD, the way a JSON text field
 * of the library shows it (see "Output" below). Returns out. */
PN_EXTERN char *pn_text_utf8(const char *s, size_t len, char *out, size_t cap);

/* ------------------------------------------------------------------ the node
 *
 * A peer-to-peer node: it serves what its store holds to other nodes, finds
 * providers through its discovery method, and downloads from all of them at
 * once. Create it with pn_node_new, start it with pn_node_start, close it
 * with pn_node_close. */

typedef struct pn_node pn_node;
typedef struct pn_download pn_download;
typedef struct pn_search pn_search;

enum pn_discovery { PN_DISCOVERY_DIRECTORY = 1, PN_DISCOVERY_FLOOD = 2, PN_DISCOVERY_DHT = 3 };

struct pn_node_config {
	const char *listen;          /* "HOST:PORT" for peers ("[::]:0": any address of both families, a free port) */
	const char *data_dir;        /* identity and store; created (0700) if missing */
	/* Keep every connection of the node (peers, directory, seed servers) on
	 * this network interface, as VPN users want (SO_BINDTODEVICE, which
	 * needs CAP_NET_RAW); NULL: any. At most 15 characters. */
	const char *bind_interface;
	/* A Unix socket for `peernet add/get/search/status/stop` (mode 0600);
	 * NULL: none. */
	const char *control_path;
	enum pn_discovery discovery; /* 0: PN_DISCOVERY_DIRECTORY */
	const char *directory;       /* "HOST:PORT" of the look-up service (directory discovery) */
	const char *announce_host;   /* host the directory registers; NULL: the address it sees */
	/* flood discovery: nodes to join through, neighbour counts (0: 4 and 8),
	 * hop limit of queries (0: 5, at most 7), no expanding ring */
	const char *const *bootstrap;
	size_t nbootstrap;
	uint32_t min_neighbors, max_neighbors;
	uint8_t ttl;
	bool plain_flood;
	/* `peernet serve` servers used as one more provider of every download */
	const char *const *seed_servers;
	size_t nseed_servers;
	uint64_t up_rate, down_rate; /* bytes per second, 0: no cap */
	uint32_t peer_timeout_ms;    /* no provider reachable this long: a download fails; 0: 30 s */
	uint32_t upload_slots;       /* peers unchoked at once; 0: the default (4) */
	enum pn_log_level log_level; /* lines above it are not formatted; 0 is PN_LOG_ERROR */
	/* The status page (see "The status page" below); NULL: none. */
	const char *http_listen;
	bool http_public;
};

/* What a download reports. */
struct pn_progress {
	struct pn_cid cid;
	const char *name;            /* the content's name ("" before its META came) */
	uint64_t have, total;        /* verified bytes, size */
	uint32_t peers;              /* providers connected */
	uint32_t chunks;             /* chunks of the content */
	uint32_t chunks_have;        /* of those, verified */
	uint64_t bytes_downloaded;   /* chunk bytes received in this run */
};

struct pn_download_result {
	struct pn_cid cid;
	const char *name;
	const char *path;            /* where the file was written; "" if no path was asked */
	uint64_t bytes_downloaded;   /* chunk bytes fetched in this run */
	uint64_t bytes_resumed;      /* verified bytes reused from an earlier attempt */
	double seconds;
	uint32_t providers;          /* providers that sent chunks */
};

struct pn_peer_info {
	uint8_t id[PN_ID_BYTES];
	char addr[64];               /* "HOST:PORT" */
	bool outgoing;               /* we dialled it */
	bool neighbor;               /* a flooding neighbour */
	bool seed_server;            /* a --seed-server connection */
	bool peer_choking, am_choking;
	uint64_t bytes_to, bytes_from; /* chunk bytes sent to it, received from it */
	uint64_t rate_to, rate_from;   /* the same per second, over the last few seconds */
};

/* Every callback may be NULL; each gets ud first. None runs after the
 * node's close callback, and none runs from inside the pn_node_* call that
 * caused it except where said. */
struct pn_node_events {
	void *ud;
	pn_log_cb log;
	/* A connection to a node finished its handshake (joined) or closed. */
	void (*peer)(void *ud, pn_node *n, const struct pn_peer_info *peer, bool joined);
	/* About four times a second while a download moves, and once when it starts. */
	void (*progress)(void *ud, pn_download *d, const struct pn_progress *p);
	/* The next bytes of a download started with PN_GET_STREAM, in order,
	 * offset first; the sum of len reaches the size before done is called. */
	void (*data)(void *ud, pn_download *d, uint64_t offset, const void *buf, size_t len);
	/* A download is over: err PN_OK and r set, or an error with one line in
	 * why (r NULL). The download handle is freed after this returns. */
	void (*done)(void *ud, pn_download *d, int err, const struct pn_download_result *r, const char *why);
	/* A client of the control socket asked the node to stop (`peernet
	 * stop`). The node does nothing itself: the program decides (the CLI
	 * closes the node). NULL: the request is refused. */
	void (*stop_requested)(void *ud, pn_node *n);
};

/* Checks and copies cfg and ev (and every string they point to); does no
 * I/O. PN_EINVAL for a bad config. */
PN_EXTERN PN_MUST_CHECK int pn_node_new(uv_loop_t *loop, const struct pn_node_config *cfg,
					const struct pn_node_events *ev, pn_node **out);
/* Opens the identity and the store, listens, starts discovery and the
 * control socket. On failure: a PN_E* code, and pn_node_error says why in one
 * line; the node must still be closed. */
PN_EXTERN PN_MUST_CHECK int pn_node_start(pn_node *n);
/* Ends every download and search (done with PN_ECANCELED), closes every
 * connection and the control socket, then frees the node and calls
 * closed(ud) from the loop. Safe on a node that never started or failed to
 * start. NULL closed: no callback. */
PN_EXTERN void pn_node_close(pn_node *n, void (*closed)(void *ud), void *ud);
/* The last error of a pn_node_* call, one line ("" if none). Owned by the node. */
PN_EXTERN const char *pn_node_error(const pn_node *n);
/* The port bound (0 before start). */
PN_EXTERN uint16_t pn_node_port(const pn_node *n);
/* The node's ID: SHA-256 of its Ed25519 public key (zero before start). */
PN_EXTERN void pn_node_id(const pn_node *n, uint8_t out[PN_ID_BYTES]);

/* Shares a regular file: hashes it and copies it into the store (the loop is
 * busy meanwhile; a large file takes about a second per GiB), then offers it.
 * PN_EEXIST if already shared (cid set all the same). out may be NULL. */
PN_EXTERN PN_MUST_CHECK int pn_node_share(pn_node *n, const char *path, struct pn_cid *out);
/* Stops sharing cid and deletes it from the store; the directory is told
 * (flooding simply stops answering for it). Requests for it that peers still
 * send get NOT_FOUND. PN_ENOTFOUND if the store does not hold it. */
PN_EXTERN PN_MUST_CHECK int pn_node_unshare(pn_node *n, const struct pn_cid *cid);

#define PN_GET_OVERWRITE 0x1u /* replace an existing file at path */
#define PN_GET_STREAM 0x2u    /* also hand the bytes to events.data, in order, as they are verified */
/* Downloads cid from every provider the node finds (and keeps it shared).
 * path: where the finished file goes (NULL: only into the store; a
 * directory: the content's name inside it). Several calls for one cid share
 * one download; each gets its own handle and its own done. user: see
 * pn_download_user. progress, data and done arrive through the node's events. */
PN_EXTERN PN_MUST_CHECK int pn_node_get(pn_node *n, const struct pn_cid *cid, const char *path, unsigned flags,
					void *user, pn_download **out);
/* Withdraws this handle: done follows with PN_ECANCELED (from the loop, not
 * from inside this call). The download itself stops when no handle is left;
 * what it verified is kept for a later resume. */
PN_EXTERN void pn_download_cancel(pn_download *d);
PN_EXTERN void *pn_download_user(const pn_download *d);
PN_EXTERN const struct pn_cid *pn_download_cid(const pn_download *d);

/* One search answer: valid during the callback. */
struct pn_search_hit {
	struct pn_cid cid;
	const char *name;            /* name_len bytes, not NUL-terminated (names may hold any byte but NUL) */
	size_t name_len;
	uint32_t providers;          /* how many nodes offer it, as far as discovery knows */
};
/* Searches names across the network for every word of query. result runs for
 * each hit, then done once (err PN_OK, or an error with one line in why);
 * the handle is freed after done returns. out may be NULL. */
PN_EXTERN PN_MUST_CHECK int pn_node_search(pn_node *n, const char *query,
					   void (*result)(void *ud, const struct pn_search_hit *hit),
					   void (*done)(void *ud, int err, const char *why), void *ud,
					   pn_search **out);
/* done follows with PN_ECANCELED (from the loop). */
PN_EXTERN void pn_search_cancel(pn_search *s);

struct pn_node_status {
	uint8_t node_id[PN_ID_BYTES];
	uint16_t port;
	enum pn_discovery discovery;
	bool discovery_ready;        /* registered with the directory / has a neighbour */
	uint32_t directory_refused;  /* shares the directory refused to register (its limits) */
	size_t peers, neighbors, downloads, shares;
	uint64_t bytes_up, bytes_down; /* chunk bytes */
	uint64_t wire_up, wire_down;   /* every byte on the wire, TLS included */
	uint64_t lookups, lookup_msgs; /* look-ups made, messages they cost */
	uint64_t rate_up, rate_down;   /* chunk bytes per second over the last few seconds */
};
PN_EXTERN void pn_node_status(const pn_node *n, struct pn_node_status *out);
/* Fills at most max entries; returns how many peers there are. */
PN_EXTERN size_t pn_node_peers(const pn_node *n, struct pn_peer_info *out, size_t max);
/* Running downloads, as in the progress event; names valid until the next
 * call into the node. Returns how many there are. */
PN_EXTERN size_t pn_node_downloads(const pn_node *n, struct pn_progress *out, size_t max);
/* Shared objects from index `from` on; names valid until the next call into
 * the node. Returns how many there are in all. */
struct pn_share_info {
	struct pn_cid cid;
	const char *name;
};
PN_EXTERN size_t pn_node_shares(const pn_node *n, size_t from, struct pn_share_info *out, size_t max);

/* A node's whole status, as `peernet status` shows it: the counters of
 * pn_node_status and the lists of pn_node_peers, pn_node_shares and
 * pn_node_downloads, as a running node reports them on its control socket
 * (pn_ctl_status) and renders them (pn_node_report_json/_text). Every
 * pointer in it is owned by whoever handed the report out. */
struct pn_flood_info {
	uint64_t queries_started;    /* by this node (each ring step counts) */
	uint64_t queries_sent, queries_received;
	uint64_t duplicates_dropped, rate_limited;
	uint64_t hits_sent, hits_received;
};
struct pn_node_report {
	/* status.peers, .downloads: the lengths of the lists below;
	 * status.shares: shares in all (the list may hold fewer) */
	struct pn_node_status status;
	const char *listen;          /* the address bound: the --listen host with the port */
	const char *directory;       /* "HOST:PORT" of the directory; NULL: directory discovery is off */
	bool flood_on;               /* flood discovery: flood is set */
	struct pn_flood_info flood;
	const struct pn_peer_info *peers;
	size_t npeers;
	const struct pn_share_info *shares;  /* the first nshares of status.shares */
	size_t nshares;
	const struct pn_progress *transfers; /* running downloads (have and peers are 0 here) */
	size_t ntransfers;
};

/* ---------------------------------------------------------- the control client
 *
 * What `peernet add/search/get/status/stop` do: one request to a node
 * running in another process, through its control socket (the file
 * PN_CONTROL_SOCKET of its data directory, or its control_path), on the
 * caller's loop. Each pn_ctl_* call opens one connection for one request;
 * the answer comes through the events, and ends with exactly one call of
 * done, from the loop (never from inside the pn_ctl_* call). The library
 * frees the handle right after done returns; by then its connection is
 * closed, so a program may uv_loop_close() once the last done returned.
 * The node's replies are untrusted bytes: whatever is not a well-formed
 * reply ends the request with PN_EPROTO. */

typedef struct pn_ctl pn_ctl;

/* Every callback may be NULL; each gets ud first; pointers are valid only
 * during the call. */
struct pn_ctl_events {
	void *ud;
	/* add: one file is shared (also when it was already), in order */
	void (*shared)(void *ud, pn_ctl *c, const struct pn_share_info *file);
	/* search: one hit (name_len bytes of valid UTF-8: each byte of the
	 * name that is not part of valid UTF-8 arrives as U+FFFD) */
	void (*hit)(void *ud, pn_ctl *c, const struct pn_search_hit *hit);
	/* get: how far the download is (chunks, chunks_have and
	 * bytes_downloaded are 0 here) */
	void (*progress)(void *ud, pn_ctl *c, const struct pn_progress *p);
	/* get with PN_GET_STREAM: the first upto bytes of the content are
	 * verified and may be read from the file at path (the node's partial
	 * download; the same file goes on holding them when it completes) */
	void (*stream)(void *ud, pn_ctl *c, const char *path, uint64_t upto);
	/* get: the download is complete (path: the file written, or the node's
	 * copy for PN_GET_STREAM) */
	void (*got)(void *ud, pn_ctl *c, const struct pn_download_result *r);
	/* status: the node's report */
	void (*status)(void *ud, pn_ctl *c, const struct pn_node_report *r);
	/* The end, exactly once: err PN_OK, or a PN_E* code and one line in
	 * why ("" on success): PN_ECONNREFUSED (no node listens at the
	 * socket), PN_EINVAL (the socket path does not fit a Unix socket),
	 * PN_EREMOTE (the node refused or failed the request: why is its
	 * message), PN_ECLOSED (the node closed without ending its answer),
	 * PN_EPROTO (an answer that is not one), PN_ECANCELED, PN_ENOMEM. */
	void (*done)(void *ud, pn_ctl *c, int err, const char *why);
};

/* Each returns PN_EINVAL (a NULL argument, or as said) or PN_ETOOBIG (the
 * request line would be longer than PN_CONTROL_REQUEST_MAX) or PN_ENOMEM
 * and starts nothing; otherwise 0 with *out set (out may be NULL), and every
 * later failure comes to done. control is the socket's path; it and every
 * other argument are copied. */

/* Shares npaths (>= 1) files through the node: shared runs for each. */
PN_EXTERN PN_MUST_CHECK int pn_ctl_add(uv_loop_t *loop, const char *control, const struct pn_ctl_events *ev,
				       const char *const *paths, size_t npaths, pn_ctl **out);
/* Searches the network through the node: hit runs for each answer. query:
 * 1 to PN_QUERY_MAX bytes of valid UTF-8 (else PN_EINVAL). */
PN_EXTERN PN_MUST_CHECK int pn_ctl_search(uv_loop_t *loop, const char *control, const struct pn_ctl_events *ev,
					  const char *query, pn_ctl **out);
/* Has the node download cid: progress, then got. path: where the file goes,
 * relative to cwd unless absolute; NULL: the content's name in cwd. cwd: an
 * absolute path (else PN_EINVAL). flags: PN_GET_OVERWRITE (replace an
 * existing file), PN_GET_STREAM (path is not used: the stream events say
 * where the bytes are as they are verified). */
PN_EXTERN PN_MUST_CHECK int pn_ctl_get(uv_loop_t *loop, const char *control, const struct pn_ctl_events *ev,
				       const struct pn_cid *cid, const char *path, const char *cwd, unsigned flags,
				       pn_ctl **out);
/* Asks for the node's report: status runs once. */
PN_EXTERN PN_MUST_CHECK int pn_ctl_status(uv_loop_t *loop, const char *control, const struct pn_ctl_events *ev,
					  pn_ctl **out);
/* Asks the node to stop (its program decides: see stop_requested). */
PN_EXTERN PN_MUST_CHECK int pn_ctl_stop(uv_loop_t *loop, const char *control, const struct pn_ctl_events *ev,
					pn_ctl **out);
/* Ends the request: done follows with PN_ECANCELED, from the loop (callable
 * from any of its callbacks). A download the node started goes on for its
 * other clients, or stops when it has none. Nothing if done already ran. */
PN_EXTERN void pn_ctl_cancel(pn_ctl *c);

/* ---------------------------------------------------------------- the server
 *
 * The central server of the client-server model (`peernet serve`): stores
 * what clients upload and serves it to them, through the same transfer
 * engine as a node that only seeds. */

typedef struct pn_server pn_server;

struct pn_server_config {
	const char *listen;            /* "HOST:PORT" */
	const char *data_dir;          /* store and identity */
	uint32_t handshake_timeout_ms; /* 0: 10 s */
	uint32_t idle_timeout_ms;      /* 0: 120 s */
	uint32_t max_conns;            /* 0: 4096 */
	uint64_t up_rate, down_rate;   /* bytes per second, 0: no cap */
	enum pn_log_level log_level;
	const char *http_listen;       /* the status page; NULL: none */
	bool http_public;
};
struct pn_server_events {
	void *ud;
	pn_log_cb log;
	/* An upload finished and the object is stored (also when it was already). */
	void (*stored)(void *ud, pn_server *s, const struct pn_cid *cid, const char *name);
};
struct pn_server_status {
	uint8_t node_id[PN_ID_BYTES];
	uint16_t port;
	size_t objects;                /* stored */
	uint64_t bytes;                /* their sizes together */
	size_t connections;            /* open now */
	uint64_t connections_total;    /* accepted since the start */
	uint64_t bytes_served;         /* chunk bytes sent */
	uint64_t wire_up, wire_down;   /* every byte on the wire, TLS included */
};
PN_EXTERN PN_MUST_CHECK int pn_server_new(uv_loop_t *loop, const struct pn_server_config *cfg,
					  const struct pn_server_events *ev, pn_server **out);
PN_EXTERN PN_MUST_CHECK int pn_server_start(pn_server *s);
PN_EXTERN void pn_server_close(pn_server *s, void (*closed)(void *ud), void *ud);
PN_EXTERN const char *pn_server_error(const pn_server *s);
PN_EXTERN uint16_t pn_server_port(const pn_server *s);
PN_EXTERN void pn_server_status(const pn_server *s, struct pn_server_status *out);

/* ---------------------------------------------------------------- the client
 *
 * The client side of the client-server model (`peernet put/get/ls
 * --server`): each operation is a transfer on the caller's loop, on its own
 * TLS connection to the server, and several may run at once on one loop.
 *
 * A transfer reports through the events given when it starts, and ends with
 * exactly one call of done, from the loop (never from inside the pn_client_*
 * or pn_transfer_cancel call that caused it). By then everything it owned is
 * closed (its timers, its connection, the chunk writes it had on the thread
 * pool), so a program may uv_loop_close() as soon as the last done returned.
 * The library frees the handle right after done returns: the program never
 * frees it and must not use it after done. */

typedef struct pn_transfer pn_transfer;

/* Copied (with every string it points to) by the pn_client_* call. */
struct pn_client_config {
	const char *server;          /* "HOST:PORT" of the server */
	const uint8_t *server_id;    /* PN_ID_BYTES: refuse any other server; NULL: any */
	const char *data_dir;        /* the client's identity from here (created if missing); NULL: an ephemeral one */
	uint32_t window;             /* get: chunk requests in flight; 0: the default (64); at most 256 */
	uint32_t timeout_ms;         /* nothing from the server this long: fail (get dials again meanwhile); 0: 30 s */
	enum pn_log_level log_level; /* lines above it are not formatted; 0 is PN_LOG_ERROR */
};

/* Where a transfer's progress is, for a progress bar: START once when bytes
 * begin to move (have may be > 0 on a resume), UPDATE about five times a
 * second, then DONE or ABORT once (before done). A put reports each file
 * whose bytes the server does not hold yet. */
enum pn_transfer_phase { PN_TRANSFER_START, PN_TRANSFER_UPDATE, PN_TRANSFER_DONE, PN_TRANSFER_ABORT };
struct pn_transfer_progress {
	enum pn_transfer_phase phase;
	struct pn_cid cid;
	const char *name;            /* the file's name */
	uint64_t have, total;        /* bytes verified (get) or sent or already held (put), size */
};

/* How far a transfer went: complete when done has err PN_OK, and filled as
 * far as it went when not. */
struct pn_transfer_result {
	struct pn_cid cid;           /* get: the content; put: the last file stored */
	const char *name;            /* get: the content's name ("" if it never came) */
	const char *path;            /* get: the file written ("" for PN_GET_STREAM without a path) */
	uint64_t bytes_downloaded;   /* get: chunk bytes fetched in this run */
	uint64_t bytes_resumed;      /* get: verified bytes reused from an earlier attempt */
	uint64_t bytes_sent;         /* put: chunk bytes uploaded (the server lacked them) */
	size_t count;                /* put: files stored; ls: entries listed */
	double seconds;
};

/* One stored file of a put. */
struct pn_put_info {
	struct pn_cid cid;
	const char *name;            /* the name it is stored under: the path's last component */
	const char *path;            /* as given to pn_client_put */
	uint64_t bytes_sent;         /* chunk bytes of this file uploaded (0 if the server had them all) */
};

/* Every callback may be NULL; each gets ud first; pointers are valid only
 * during the call. log may also run from inside the pn_client_* call. */
struct pn_client_events {
	void *ud;
	pn_log_cb log;
	void (*progress)(void *ud, pn_transfer *t, const struct pn_transfer_progress *p);
	/* get with PN_GET_STREAM: the content's bytes in order as they are
	 * verified, offset first; their lengths add up to the size before done. */
	void (*data)(void *ud, pn_transfer *t, uint64_t offset, const void *buf, size_t len);
	/* put: a file is stored on the server (also when it held it already). */
	void (*stored)(void *ud, pn_transfer *t, const struct pn_put_info *file);
	/* ls: one entry of the server's listing (name NUL-terminated, validated). */
	void (*entry)(void *ud, pn_transfer *t, const struct pn_cid *cid, const char *name);
	/* The end, exactly once, from the loop: err PN_OK, or a PN_E* code and
	 * one line in why saying what went wrong and what to do (why is "" on
	 * success). r is never NULL. The handle is freed when this returns. */
	void (*done)(void *ud, pn_transfer *t, int err, const char *why, const struct pn_transfer_result *r);
};

/* Downloads cid from the server, verifying every chunk against it.
 * path: the file to write (it grows as PATH.pnpart and PATH.pnpart.state,
 * which a later get of the same path resumes, and is renamed into place when
 * complete); an existing file is kept (done fails with PN_EEXIST) unless
 * PN_GET_OVERWRITE. path NULL: without PN_GET_STREAM, the content's name in
 * the current directory; with it, nothing is kept (a temporary file in
 * $TMPDIR, removed before done). PN_GET_STREAM: the bytes also go to
 * events.data. A dropped connection is dialled again and the download
 * resumes until timeout_ms passes without a chunk.
 * Returns PN_EINVAL (bad argument: cfg without server, unknown flags) or
 * PN_ENOMEM and starts nothing; otherwise 0 with *out set (out may be
 * NULL), and every later failure, a bad address included, comes to done. */
PN_EXTERN PN_MUST_CHECK int pn_client_get(uv_loop_t *loop, const struct pn_client_config *cfg,
					  const struct pn_client_events *ev, const struct pn_cid *cid,
					  const char *path, unsigned flags, pn_transfer **out);
/* Uploads npaths regular files in order on one connection; stored runs for
 * each. What the server holds already is not sent again. paths are copied.
 * Returns as pn_client_get. */
PN_EXTERN PN_MUST_CHECK int pn_client_put(uv_loop_t *loop, const struct pn_client_config *cfg,
					  const struct pn_client_events *ev, const char *const *paths,
					  size_t npaths, pn_transfer **out);
/* Lists what the server holds: entry runs for each object. Returns as
 * pn_client_get. */
PN_EXTERN PN_MUST_CHECK int pn_client_ls(uv_loop_t *loop, const struct pn_client_config *cfg,
					 const struct pn_client_events *ev, pn_transfer **out);
/* Ends the transfer: done follows with PN_ECANCELED and "cancelled", from
 * the loop, not from inside this call (callable from any of its callbacks).
 * A get keeps what it verified for a later resume. Nothing if the transfer
 * is already ending (done then says how it ended). */
PN_EXTERN void pn_transfer_cancel(pn_transfer *t);

/* ------------------------------------------------------------- the directory
 *
 * The central look-up service of the peer-to-peer model (`peernet
 * directory`): nodes register what they offer and ask who offers what. */

typedef struct pn_directory pn_directory;

struct pn_directory_config {
	const char *listen;          /* "HOST:PORT" */
	const char *data_dir;        /* identity; NULL: an ephemeral one */
	uint32_t heartbeat_ms;       /* asked of nodes; dropped after 3 missed; 0: 10 s */
	uint32_t max_nodes;          /* 0: the default (see docs/PROTOCOL.md, Limits) */
	uint32_t rate_per_s;         /* requests per second per connection; 0: the default */
	enum pn_log_level log_level;
	const char *http_listen;     /* the status page; NULL: none */
	bool http_public;
};
struct pn_directory_events {
	void *ud;
	pn_log_cb log;
};
struct pn_directory_status {
	uint8_t node_id[PN_ID_BYTES];
	uint16_t port;
	size_t nodes, offers, connections;
	uint64_t requests;
};
PN_EXTERN PN_MUST_CHECK int pn_directory_new(uv_loop_t *loop, const struct pn_directory_config *cfg,
					     const struct pn_directory_events *ev, pn_directory **out);
PN_EXTERN PN_MUST_CHECK int pn_directory_start(pn_directory *d);
PN_EXTERN void pn_directory_close(pn_directory *d, void (*closed)(void *ud), void *ud);
PN_EXTERN const char *pn_directory_error(const pn_directory *d);
PN_EXTERN uint16_t pn_directory_port(const pn_directory *d);
PN_EXTERN void pn_directory_status(const pn_directory *d, struct pn_directory_status *out);

/* ----------------------------------------------------------- the status page
 *
 * A node, a server or a directory whose config names http_listen
 * ("127.0.0.1:8080"; "[::1]:0" or port 0: a free port) serves a small web
 * page of its status from its *_start on, on the same loop (no thread):
 *
 *   GET  /             the page: identity, peers, shares, transfers with
 *                      progress, totals and a live chart of the rates
 *   GET  /api/status   the status as JSON; for a node the very document
 *                      `peernet status --json` prints
 *   GET  /api/history  the upload and download rates of the last minutes
 *   POST /api/stop     a node only: with "Authorization: Bearer TOKEN", the
 *                      token read from DATA/http-token (made, mode 0600, at
 *                      the start), calls events.stop_requested; 403 without.
 *
 * Everything else is read-only. The address must be a loopback one unless
 * http_public is set (the start fails with one line in *_error); connections,
 * request sizes and silences are bounded. Closing the handle stops the page
 * first. The functions below give the port bound (0: no page). */
PN_EXTERN uint16_t pn_node_http_port(const pn_node *n);
PN_EXTERN uint16_t pn_server_http_port(const pn_server *s);
PN_EXTERN uint16_t pn_directory_http_port(const pn_directory *d);

/* ----------------------------------------------------------------- output
 *
 * The JSON a program prints for what the functions above hand out: the
 * very text of `peernet ... --json`, so that scripts read one format. Each
 * renders one JSON value on one line, without spaces or a newline, into a
 * new NUL-terminated string *out that the caller releases with free(); 0,
 * or PN_EINVAL (a NULL argument) or PN_ENOMEM, with *out NULL.
 *
 * Names and paths on disk are any bytes while JSON is UTF-8. One rule
 * carries them: a text field "x" is always a JSON string; when its bytes
 * are not valid UTF-8, each byte that is not part of valid UTF-8 is U+FFFD
 * in "x", and "x_hex" holds the exact bytes in lower-case hex. The control
 * socket follows the same rule, so a control client gets the exact bytes. */

/* {"id","name","size"}: a file shared (add) or listed (ls). */
PN_EXTERN PN_MUST_CHECK int pn_share_json(const struct pn_share_info *s, char **out);
/* {"id","name","size","bytes_sent"}: a file put on a server. */
PN_EXTERN PN_MUST_CHECK int pn_put_json(const struct pn_put_info *f, char **out);
/* {"id","name","size","providers"}: a search hit. */
PN_EXTERN PN_MUST_CHECK int pn_search_hit_json(const struct pn_search_hit *h, char **out);
/* The outcome of a node's download: {"id","ok":true,"name","path","size",
 * "bytes_downloaded","bytes_resumed","seconds","peers"} when r is not NULL,
 * else {"id","ok":false,"error":why}. */
PN_EXTERN PN_MUST_CHECK int pn_download_json(const struct pn_cid *cid, const struct pn_download_result *r,
					     const char *why, char **out);
/* The outcome of a client's get from a server: err PN_OK gives
 * {"id","ok":true,"name","path","size","bytes_downloaded","bytes_resumed",
 * "seconds","mib_per_s"}, an error {"id","ok":false,"error":why,
 * "bytes_downloaded","bytes_resumed"}. */
PN_EXTERN PN_MUST_CHECK int pn_transfer_json(const struct pn_cid *cid, int err, const char *why,
					     const struct pn_transfer_result *r, char **out);
/* The report as one JSON object: the document of `peernet status --json`
 * and of a status page's /api/status. */
PN_EXTERN PN_MUST_CHECK int pn_node_report_json(const struct pn_node_report *r, char **out);
/* The report as `peernet status` prints it for people: lines, each ending
 * in a newline; names as pn_text_utf8 makes them. */
PN_EXTERN PN_MUST_CHECK int pn_node_report_text(const struct pn_node_report *r, char **out);

#endif
