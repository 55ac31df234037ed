/* The lifecycle of a struct pn_conn (src/net/conn.c), apart so that the
 * table of allowed changes can be unit-tested. Private to src/net/. */
#ifndef PN_NET_CONN_STATE_H
#define PN_NET_CONN_STATE_H
#ifndef PN_INTERNAL
#error "an internal header of libpeernet: a program includes <peernet.h> only"
#endif

#include <stdbool.h>
#include <stdint.h>

/* A connection's lifecycle. Every change goes through conn_set_state, which
 * asserts that it is in this table:
 *
 *   RESOLVING   -> CONNECTING | CLOSING      (a host name: uv_getaddrinfo under way)
 *   CONNECTING  -> HANDSHAKING | CLOSING     (a numeric address starts here)
 *   HANDSHAKING -> ESTABLISHED | CLOSING     (an accepted connection starts here)
 *   ESTABLISHED -> DRAINING | CLOSING        (only an established connection drains)
 *   DRAINING    -> CLOSING
 *   CLOSING     -> CLOSED
 */
enum conn_state {
	CONN_RESOLVING,   /* dialling a host name: its address is being looked up off the loop */
	CONN_CONNECTING,  /* dialling: the TCP connect is in flight */
	CONN_HANDSHAKING, /* TCP up, the TLS handshake under way */
	CONN_ESTABLISHED, /* TLS up and the peer's identity checked: frames flow */
	CONN_DRAINING,    /* pn_conn_close ran: queued bytes and close_notify go out, then shutdown */
	CONN_CLOSING,     /* uv_close of the handle under way */
	CONN_CLOSED,      /* the handle is closed: close_cb runs, then the connection is freed */
	CONN_NSTATES
};

#define CONN_TO(s) (1u << (s))
static const uint8_t conn_next[CONN_NSTATES] = {
	[CONN_RESOLVING] = CONN_TO(CONN_CONNECTING) | CONN_TO(CONN_CLOSING),
	[CONN_CONNECTING] = CONN_TO(CONN_HANDSHAKING) | CONN_TO(CONN_CLOSING),
	[CONN_HANDSHAKING] = CONN_TO(CONN_ESTABLISHED) | CONN_TO(CONN_CLOSING),
	[CONN_ESTABLISHED] = CONN_TO(CONN_DRAINING) | CONN_TO(CONN_CLOSING),
	[CONN_DRAINING] = CONN_TO(CONN_CLOSING),
	[CONN_CLOSING] = CONN_TO(CONN_CLOSED),
	[CONN_CLOSED] = 0,
};

/* Whether a lifecycle change from `from` to `to` is allowed. */
static inline bool conn_transition_ok(enum conn_state from, enum conn_state to)
{
	return from < CONN_NSTATES && to < CONN_NSTATES && (conn_next[from] & CONN_TO(to));
}

struct pn_conn;
/* A connection's state now: for tests. */
enum conn_state pn__conn_state(const struct pn_conn *c);

#endif
