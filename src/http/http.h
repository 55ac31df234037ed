/* The status page: a small HTTP server on the owner's uv_loop_t, for a node,
 * a server or a directory (include/peernet.h, http_listen).
 *
 * libmicrohttpd parses HTTP; it runs in its "external epoll" mode, driven
 * from the loop: its one epoll descriptor is watched with a uv_poll_t and a
 * uv_timer_t is armed at MHD_get_timeout, and every request is answered
 * inside MHD_run on the loop's thread. So the owner is asked for its status
 * when a request comes, with no thread, no lock and no stale copy.
 *
 *   GET  /              the page (src/http/page.html, built in)
 *   GET  /api/status    the owner's status document (for a node the one
 *                       `peernet status --json` prints)
 *   GET  /api/history   upload and download rates, one a second, oldest first
 *   POST /api/stop      with "Authorization: Bearer TOKEN" (DATA/http-token):
 *                       asks the owner to stop; 403 without it. Only when the
 *                       owner can stop and has a data directory.
 *
 * Bounds: HTTP_MAX_CONNS connections (HTTP_MAX_CONNS_PER_IP from one
 * address), HTTP_CONN_MEMORY bytes for a request's line and headers (a larger
 * one is answered 431 or 414 by libmicrohttpd and closed), HTTP_TIMEOUT_S of
 * silence; a request body is never read. Bound to a loopback address unless
 * public_ok, and then a Host header that names something other than an IP
 * address or localhost is refused (DNS rebinding). */
#ifndef PN_HTTP_HTTP_H
#define PN_HTTP_HTTP_H
#ifndef PN_INTERNAL
#error "an internal header of libpeernet: a program includes <peernet.h> only"
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include <uv.h>
#include "peernet.h"
#include "util/log.h"

#define HTTP_MAX_CONNS 32
#define HTTP_MAX_CONNS_PER_IP 16
#define HTTP_CONN_MEMORY (16 * 1024)
#define HTTP_TIMEOUT_S 15
#define HTTP_HISTORY 600              /* rate samples kept for the chart: ten minutes */
#define HTTP_HISTORY_MS 1000
#define HTTP_TOKEN_FILE "http-token"
#define HTTP_TOKEN_HEX 64             /* 32 random bytes, hex */
#define HTTP_ERR_MAX 512

struct http_server;

/* What the server asks of its owner; each runs on the loop. */
struct http_ops {
	void *ud;
	/* The status document: a new reference, or NULL (out of memory: 500). */
	json_t *(*status_cb)(void *ud);
	/* Upload and download rates now, bytes per second. */
	void (*rates_cb)(void *ud, uint64_t *up, uint64_t *down);
	/* An authorised POST /api/stop: runs from the loop after the answer is
	 * queued, never from inside libmicrohttpd. NULL: no such endpoint. */
	void (*stop_cb)(void *ud);
};

struct http_opts {
	uv_loop_t *loop;
	const char *listen;          /* "IPV4:PORT", "[IPV6]:PORT" or "localhost:PORT"; port 0: a free one */
	bool public_ok;              /* an address other than loopback is allowed */
	const char *data_dir;        /* where the token lives; NULL: no POST /api/stop */
	const struct pn_logger *log; /* borrowed; outlives the server */
	struct http_ops ops;
};

/* Checks listen alone: PN_OK, or PN_EINVAL (not IP:PORT) or PN_EACCES (not
 * loopback and not public_ok) with one line in err. */
PN_MUST_CHECK int http_check_listen(const char *listen, bool public_ok, char *err, size_t errlen);

/* Listens and starts answering. PN_OK, or an error with one line in err and
 * nothing left to free. */
PN_MUST_CHECK int http_server_new(const struct http_opts *o, struct http_server **out, char *err, size_t errlen);
/* The port bound. */
uint16_t http_server_port(const struct http_server *hs);
/* Stops libmicrohttpd at once (every HTTP connection closes; the owner is
 * not asked anything more), then closes the loop handles and frees; closed(ud)
 * runs from the loop once that is done. Safe from inside an ops callback. */
void http_server_close(struct http_server *hs, void (*closed)(void *ud), void *ud);

/* Reads DATA/http-token, or creates it (mode 0600, 32 random bytes as hex)
 * when missing. PN_OK with out set (a NUL ends it), or an error with one line
 * in err (a token file that is not HTTP_TOKEN_HEX hex digits: PN_ECORRUPT). */
PN_MUST_CHECK int http_token_load_or_create(const char *data_dir, char out[HTTP_TOKEN_HEX + 1], char *err,
					    size_t errlen);

/* Whether a Host header value names an IP address or localhost, with or
 * without a port (what a browser sends for the loopback page). */
bool http_host_is_literal(const char *host);

#endif
