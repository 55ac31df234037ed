/* The libuv driver: TCP connections carrying TLS 1.3 and framed messages.
 *
 * A struct pn_net holds the loop-wide parts (the TLS context, the connection
 * list, the timeout sweep). A struct pn_conn is one connection: it reads
 * ciphertext, drives the TLS session, splits frames, checks each frame's
 * length against its type's limit before buffering it, and hands whole frame
 * bodies to its owner. Writes are queued and counted so the owner can stop
 * producing when a peer stops reading.
 *
 * Lifetime: a connection is freed only after its on_close callback ran, and
 * on_close runs exactly once, from the loop, after pn_conn_close() or a fault.
 */
#ifndef PN_NET_H
#define PN_NET_H
#ifndef PN_INTERNAL
#error "an internal header of libpeernet: a program includes <peernet.h> only"
#endif

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>
#include "peernet.h"
#include "crypto/crypto.h"
#include "util/log.h"
#include "wire/wire.h"

#define PN_NET_READ_BUF (256 * 1024)
#define PN_NET_SHAPER_BYPASS 1024 /* under an upload cap, a write this small with nothing queued before it on
				   * its connection skips the shaper queue (still counted against the rate) */
#define PN_CONN_HIGH_WATER (2u * 1024 * 1024)  /* stop producing above this many queued bytes */
#define PN_CONN_LOW_WATER (512u * 1024)        /* resume below this */
#define PN_HANDSHAKE_TIMEOUT_MS 10000
#define PN_IDLE_TIMEOUT_MS 120000
#define PN_PING_INTERVAL_MS 30000 /* PING after this long without a frame (or a quarter of the idle timeout) */
#define PN_WRITE_STALL_TIMEOUT_MS 30000
#define PN_ADDR_STR_MAX 64

struct pn_conn;
struct pn_net;

struct pn_conn_cbs {
	/* TLS is up and the peer's identity checked. */
	void (*established_cb)(struct pn_conn *c);
	/* One whole frame body (type byte first), valid only during the call.
	 * Return PN_OK when handled; PN_EAGAIN to be handed the same frame again
	 * later (reading pauses until pn_conn_resume, or until the write queue
	 * drains below PN_CONN_LOW_WATER); any other negative code closes the
	 * connection with that error. */
	int (*frame_cb)(struct pn_conn *c, const uint8_t *body, size_t len);
	/* The write queue fell below PN_CONN_LOW_WATER after being above it. May be NULL. */
	void (*writable_cb)(struct pn_conn *c);
	/* Last call for this connection; err is 0 for a clean close. */
	void (*close_cb)(struct pn_conn *c, int err);
};

struct pn_net_opts {
	/* Every socket of this net (the listener and each connection it dials)
	 * is bound to this network interface (SO_BINDTODEVICE); "": none. */
	char bind_interface[16];
	uint32_t handshake_timeout_ms;
	uint32_t idle_timeout_ms;       /* no frame received for this long: close (0 = never) */
	uint32_t write_stall_timeout_ms;/* bytes queued but none written for this long: close */
	uint32_t max_conns;             /* accepted connections beyond this are refused */
	uint32_t halfopen_per_addr;     /* accepted, handshake unfinished, per source (0 = no limit) */
	uint32_t conns_per_addr;        /* accepted, per source (0 = no limit); see conn_limit.h */
	/* Where the net logs (peers refused, handshakes failed, bad frames):
	 * copied by pn_net_new, so it need not outlive the call. NULL: silent. */
	const struct pn_logger *log;
};

/* The defaults (log NULL: silent; callers pass their own). pn_net_new with
 * opts NULL uses these. */
void pn_net_opts_default(struct pn_net_opts *o);

/* Creates the loop-wide state. identity is borrowed and must outlive net. */
PN_MUST_CHECK int pn_net_new(uv_loop_t *loop, const struct pn_identity *id, const struct pn_net_opts *opts,
			     struct pn_net **out);
/* Closes every connection (their close_cb run) and the listener; the net is
 * freed once the loop has run their close callbacks. */
void pn_net_close(struct pn_net *net);
/* pn_net_close, then closed(ud) from the loop once the net is freed. */
void pn_net_close_cb(struct pn_net *net, void (*closed)(void *ud), void *ud);
uv_loop_t *pn_net_loop(struct pn_net *net);
/* The owner's pointer, for accept_cb. */
void pn_net_set_data(struct pn_net *net, void *data);
void *pn_net_data(const struct pn_net *net);
size_t pn_net_conn_count(const struct pn_net *net);
/* Accepted connections open now whose TLS handshake has not finished. */
size_t pn_net_halfopen_count(const struct pn_net *net);
/* Logs "PEER: refused, COUNT WHAT" at most once per PN_NET_LIMIT_LOG_INTERVAL_MS
 * (conn_limit.h) for the whole net, with the number of refusals left unlogged
 * since the last such line: for an owner's accept_cb that refuses. */
void pn_net_log_refusal(struct pn_net *net, const char *peer, const char *what, size_t count);
/* Closes the oldest accepted connection whose TLS handshake is still under
 * way (its close_cb follows with PN_ELIMIT), to make room for a new one when
 * every slot is taken: a flood of stalled handshakes from many sources then
 * costs the attacker its oldest, not a real client its turn (a real handshake
 * takes milliseconds). spare (may be NULL) is never the one closed: the
 * connection an accept_cb is deciding on. Returns false if there was none.
 * Used for max_conns, and by a node whose inbound share of peer slots is full. */
bool pn_net_evict_halfopen(struct pn_net *net, const struct pn_conn *spare);
/* Half-open connections closed so far by pn_net_evict_halfopen. */
uint64_t pn_net_evicted_count(const struct pn_net *net);
/* Accepted connections refused so far by a per-source limit (halfopen_per_addr, conns_per_addr). */
uint64_t pn_net_refused_per_addr(const struct pn_net *net);

/* Listens on addr ("host:port", "[v6]:port", ":port" or "port"); each accepted
 * connection gets cbs and user data from accept_cb's return; accept_cb may
 * return NULL cbs to refuse. *bound_port gets the port actually bound. */
typedef const struct pn_conn_cbs *(*pn_accept_cb)(struct pn_net *net, struct pn_conn *c);
PN_MUST_CHECK int pn_net_listen(struct pn_net *net, const char *addr, pn_accept_cb accept_cb,
				uint16_t *bound_port);

/* Starts a connection to addr. If expected_id is not NULL the peer must have
 * that node ID. established_cb or close_cb follows. A host name is looked up
 * without blocking the loop; one that does not resolve ends in close_cb with
 * PN_ENOTFOUND. An error returned leaves nothing (close_cb does not run). */
PN_MUST_CHECK int pn_net_connect(struct pn_net *net, const char *addr, const uint8_t *expected_id,
				 const struct pn_conn_cbs *cbs, void *data, struct pn_conn **out);
/* Like pn_net_connect from the local address source_ip ("127.0.5.5", "::1";
 * NULL: any), so that a test or a benchmark on loopback can appear as several
 * sources to the per-source limits. PN_EINVAL if source_ip is not an address. */
PN_MUST_CHECK int pn_net_connect_from(struct pn_net *net, const char *source_ip, const char *addr,
				      const uint8_t *expected_id, const struct pn_conn_cbs *cbs, void *data,
				      struct pn_conn **out);

/* Parses "host:port" (with [v6] brackets) into a socket address, resolving
 * host with a blocking getaddrinfo (PN_ENOTFOUND if it does not resolve):
 * for start-up only (a listen address), never on a running loop. */
PN_MUST_CHECK int pn_addr_parse(const char *addr, struct sockaddr_storage *ss, bool allow_empty_host);
/* Splits addr ("host:port", "[v6]:port", ":port" or "port") into host and
 * port, without a look-up. PN_OK with *ss set when host is an IP literal (or
 * empty, as 0.0.0.0, and allowed); PN_EAGAIN when host is a name to look up
 * (host and *port set, *ss untouched: uv_getaddrinfo it); PN_EINVAL when addr
 * is not an address. */
#define PN_ADDR_HOST_MAX 256
PN_MUST_CHECK int pn_addr_split(const char *addr, bool allow_empty_host, char host[PN_ADDR_HOST_MAX], uint16_t *port,
				struct sockaddr_storage *ss);
/* Like pn_addr_parse for an IP literal only: a host name is PN_EINVAL. Never blocks. */
PN_MUST_CHECK int pn_addr_parse_numeric(const char *addr, struct sockaddr_storage *ss, bool allow_empty_host);
void pn_addr_format(const struct sockaddr *sa, char out[PN_ADDR_STR_MAX]);

/* Sends one whole frame (length prefix included). The bytes are copied
 * before return. A small frame (up to 2 KiB) is gathered with the others of
 * this loop turn and written, as one TLS record, before the loop waits again;
 * a larger one is encrypted and written at once, after them. Returns PN_OK or
 * an error (the connection is then closing). Sending never blocks: check
 * pn_conn_congested(). */
PN_MUST_CHECK int pn_conn_send(struct pn_conn *c, const void *frame, size_t len);
/* Like pn_conn_send for a frame given in two pieces (header + data). */
PN_MUST_CHECK int pn_conn_send2(struct pn_conn *c, const void *a, size_t alen, const void *b, size_t blen);
/* From frame_cb only: takes the plaintext buffer that holds the frame being
 * delivered, so its bytes need not be copied (a CHUNK handed to a hashing
 * thread). `inside` is a pointer into that frame (it stays valid: the memory
 * is the caller's now; free() it). Possible only when the frame starts the
 * buffer, which is the usual case for a large frame. The connection goes on
 * with `spare` (spare_cap bytes, at least 16 KiB + 64, handed over; NULL: one
 * is allocated), where what followed the frame is copied. Returns the buffer
 * (*cap: its size), or NULL when it cannot be taken; `spare` is then still
 * the caller's. */
uint8_t *pn_conn_take_frame(struct pn_conn *c, const void *inside, uint8_t *spare, size_t spare_cap, size_t *cap);
/* Encodes m into the net's scratch buffer and sends it. Returns PN_OK or an
 * error (logged once: an encode failure is a bug in the caller). A send that
 * fails closes the connection, and its close_cb reports why, so a caller with
 * nothing else to undo may ignore the result. */
int pn_conn_send_msg(struct pn_conn *c, const struct pn_msg *m);
/* Sends ERROR(req_id, code, text). */
int pn_conn_send_error(struct pn_conn *c, uint32_t req_id, uint16_t code, const char *text);
bool pn_conn_congested(const struct pn_conn *c);
size_t pn_conn_queued(const struct pn_conn *c);

/* Closes the connection (flushing what is queued if possible); close_cb follows
 * from the loop. Safe to call more than once and from inside callbacks. */
void pn_conn_close(struct pn_conn *c, int err);
/* Resumes handing frames after a frame_cb returned PN_EAGAIN. */
void pn_conn_resume(struct pn_conn *c);

void pn_conn_set_data(struct pn_conn *c, void *data);
void *pn_conn_data(const struct pn_conn *c);
const struct pn_conn_cbs *pn_conn_cbs_get(const struct pn_conn *c);
const char *pn_conn_peer_addr(const struct pn_conn *c); /* "ip:port" */
/* Why the TLS layer refused or failed, e.g. "peer identity mismatch: expected
 * <ID> got <ID>" (docs/PROTOCOL.md); "no error" if it did not. Valid in close_cb. */
const char *pn_conn_tls_error(const struct pn_conn *c);
const uint8_t *pn_conn_peer_id(const struct pn_conn *c); /* valid once established */
/* The IP of this end of the connection (the address the peer reached us at), without the port. */
int pn_conn_local_ip(const struct pn_conn *c, char out[PN_ADDR_STR_MAX]);
bool pn_conn_is_established(const struct pn_conn *c); /* TLS up, and not closing */
/* Closed by pn_net_evict_halfopen (close_cb's err is PN_ELIMIT): the net has
 * logged it, at most once per interval, so an owner need not log each one. */
bool pn_conn_evicted(const struct pn_conn *c);
struct pn_net *pn_conn_net(const struct pn_conn *c);
uint64_t pn_conn_bytes_in(const struct pn_conn *c);  /* plaintext frame bytes received */
uint64_t pn_conn_bytes_out(const struct pn_conn *c); /* plaintext frame bytes sent */
/* Caps the bytes per second all connections of net send (up) and receive
 * (down) together; 0 = no cap. */
void pn_net_set_rates(struct pn_net *net, uint64_t up_bps, uint64_t down_bps);
/* Ciphertext bytes sent and received by all connections so far. */
void pn_net_bytes(const struct pn_net *net, uint64_t *up, uint64_t *down);
/* Bytes the upload cap is in debt for: what it must earn back before the
 * next write goes out (0 without a cap or out of debt). */
uint64_t pn_net_upload_debt(struct pn_net *net);

/* Tighten the frame limit (max body) for this connection; default PN_FRAME_MAX. */
void pn_conn_set_max_frame(struct pn_conn *c, size_t max_body);

#endif
