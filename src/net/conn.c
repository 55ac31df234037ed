/* TCP + TLS 1.3 + framing on the libuv loop. See net.h. */
#include <assert.h>
#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>
#include <netinet/in.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include "net/net.h"
#include "net/conn_limit.h"
#include "net/conn_state.h"
#include "proto/prng.h"
#include "util/log.h"
#include "util/ratelimit.h"
#include "wire/wire.h"

#define SWEEP_INTERVAL_MS 1000
#define SWEEP_JITTER_MS 200
#define DRAIN_TIMEOUT_MS 5000
#define IN_BUF_MIN (16 * 1024 + 64)
#define IN_BUF_KEEP (64 * 1024)  /* a connection the sweep finds quiet keeps no read buffer above this */
#define SHAPE_TICK_MS 5
#define SHAPED_HIGH_WATER (512u * 1024) /* a rate-capped connection congests sooner */
/* A frame this small is gathered with the connection's other small frames
 * into one TLS record, sealed and written once per loop turn (before the
 * loop waits again) instead of a record and a write each: in a 32-node swarm
 * every chunk a node verifies sends HAVE, INTERESTED, CHUNK_REQ... and the
 * receiving process woke for each. Larger frames (chunks) go at once, after
 * whatever was gathered before them. */
#define BATCH_FRAME_MAX 2048
#define BATCH_MAX (16u * 1024) /* one TLS record's worth of plaintext */
/* After this many connections closed, the next sweep hands freed heap pages
 * back to the system (malloc_trim): a flood of short connections otherwise
 * leaves the process at its peak RSS. At most once per sweep. */
#define TRIM_AFTER_CLOSES 64

struct pn_net {
	uv_loop_t *loop;
	void (*closed_cb)(void *ud);    /* pn_net_close_cb */
	void *closed_ud;
	const struct pn_identity *id;
	struct pn_tls_ctx *ctx_server;
	struct pn_tls_ctx *ctx_client;
	struct pn_net_opts opts;        /* opts.log is not used: see log */
	struct pn_logger log;           /* a copy of *opts->log; cb NULL: silent */
	struct pn_prng prng;            /* timer jitter */
	uv_tcp_t listener;
	bool listening;
	pn_accept_cb accept_cb;
	uv_timer_t sweep;
	struct pn_conn *conns;
	size_t nconns;
	bool closing;
	int open_handles; /* listener + sweep + shape timers: the net is freed when 0 and no conns */
	struct pn_bucket up, down;
	uv_timer_t shape;
	bool shape_armed;
	uv_prepare_t flusher;           /* seals and writes gathered frames before the loop waits */
	struct pn_conn *flush_head;     /* connections with gathered frames */
	size_t shape_rr; /* round-robin position of the shaper */
	uint64_t bytes_up, bytes_down; /* ciphertext bytes written / read, all connections */
	void *data;
	uint8_t *scratch; /* one encoded frame at a time, for pn_conn_send_msg */
	struct pn_addr_table by_addr;   /* accepted connections per source address */
	size_t nhalfopen;               /* accepted connections whose handshake is not over */
	struct pn_conn *halfopen_oldest, *halfopen_newest; /* those, in the order accepted */
	uint64_t evicted;               /* half-open connections closed to make room */
	uint64_t refused_per_addr;      /* refused by halfopen_per_addr or conns_per_addr */
	uint64_t refusal_log_ms;        /* when the last refusal was logged */
	uint64_t refusals_unlogged;     /* refused since then without a line of their own */
	bool refusal_logged;            /* refusal_log_ms is set */
	size_t closed_since_trim;       /* connections closed since the last malloc_trim */
	bool trim_pending;              /* the next sweep trims the heap */
	/* Every read of every connection lands here: read_cb consumes it before
	 * the loop allocates the next one. */
	uint8_t read_buf[PN_NET_READ_BUF];
};

struct write_req {
	uv_write_t req;
	struct pn_conn *conn;
	struct write_req *next; /* in the connection's shaped queue */
	size_t len;
	uint8_t *buf;           /* malloc'd by the TLS session; data = buf + off */
	uint8_t *data;
};

static void write_req_free(struct write_req *w)
{
	free(w->buf);
	free(w);
}

/* The look-up of a host name that pn_net_connect_from dials, on libuv's
 * thread pool. Apart from the connection, because it may outlive it: a
 * connection closed while its name resolves detaches itself (req.data =
 * NULL) and resolve_cb frees what is left. */
struct resolve {
	uv_getaddrinfo_t req;           /* first: resolve_cb is handed &req. data: the connection, or NULL */
	struct sockaddr_storage source; /* the local address to bind, if has_source */
	bool has_source;
	uint16_t port;
};

struct pn_conn {
	struct pn_net *net;
	struct pn_conn *prev, *next;
	uv_tcp_t tcp;
	uv_connect_t connect_req;
	uv_shutdown_t shutdown_req;
	struct pn_tls *tls;
	struct resolve *resolve;       /* RESOLVING: the look-up of the host name dialled */
	const struct pn_conn_cbs *cbs;
	void *data;
	uint8_t *in;
	size_t in_len, in_cap;
	size_t frame_len;              /* while frame_cb runs on the frame at in + frame_off: its bytes */
	size_t frame_off;
	bool frame_taken;              /* pn_conn_take_frame took it: the rest was moved to a new in */
	struct pn_addr_count *src;     /* accepted: the count of its source address */
	size_t max_body;
	uint64_t created_ms, last_rx_ms, last_tx_ms, closing_ms;
	uint64_t ping_ms;               /* when our last keepalive PING went out */
	size_t queued;
	uint64_t bytes_in, bytes_out;
	int close_err;
	enum conn_state state;
	/* Flags independent of the lifecycle: */
	bool is_server, has_expected;  /* set once, at creation */
	bool processing, reprocess;    /* process() is on the stack / must run again */
	bool reading;                  /* uv_read_start is in effect */
	bool paused;                   /* frame_cb said PN_EAGAIN: no frames until pn_conn_resume */
	bool read_throttled;           /* reading stopped until the download bucket recovers */
	bool above_high;               /* the write queue passed the high water mark */
	bool write_dead;               /* the peer closed its side: drop writes, read to the end */
	bool halfopen;                 /* accepted, counted in nhalfopen until the handshake is over */
	struct pn_conn *ho_prev, *ho_next; /* in the net's half-open list while halfopen */
	bool sent_protocol_error;      /* an ERROR(PROTOCOL) frame went out: none is added at close */
	bool evicted;                  /* closed by pn_net_evict_halfopen to make room */
	struct write_req *shaped_head, *shaped_tail; /* waiting for upload tokens */
	uint8_t *batch;                /* small frames gathered this loop turn (BATCH_MAX), or NULL */
	size_t batch_len;
	bool flush_listed;             /* in the net's flush list */
	struct pn_conn *flush_next;
	uint8_t expected_id[PN_ID_BYTES];
	uint8_t peer_id[PN_ID_BYTES];
	char peer_addr[PN_ADDR_STR_MAX];
};

/* Wraps all of the session's pending ciphertext in a write request (no copy). */
static struct write_req *take_pending(struct pn_conn *c)
{
	size_t n;
	uint8_t *buf = pn_tls_take_out_buf(c->tls, &n);
	if (!buf)
		return NULL;
	struct write_req *w = malloc(sizeof *w);
	if (!w) {
		free(buf);
		return NULL;
	}
	w->conn = c;
	w->next = NULL;
	w->buf = w->data = buf;
	w->len = n;
	return w;
}

static void conn_set_state(struct pn_conn *c, enum conn_state to)
{
	assert(conn_transition_ok(c->state, to));
	c->state = to;
}

/* pn_conn_close has run (or the connection never got going): nothing more
 * is read, sent or handed to the owner. */
static bool conn_closing(const struct pn_conn *c)
{
	return c->state >= CONN_DRAINING;
}

static void process(struct pn_conn *c);
static void conn_finish_close(struct pn_conn *c);
static void write_cb(uv_write_t *req, int status);

void pn_net_opts_default(struct pn_net_opts *o)
{
	memset(o, 0, sizeof *o);
	o->handshake_timeout_ms = PN_HANDSHAKE_TIMEOUT_MS;
	o->idle_timeout_ms = PN_IDLE_TIMEOUT_MS;
	o->write_stall_timeout_ms = PN_WRITE_STALL_TIMEOUT_MS;
	o->max_conns = 4096;
	o->halfopen_per_addr = PN_NET_HALFOPEN_PER_ADDR;
	o->conns_per_addr = PN_NET_CONNS_PER_ADDR;
	o->log = NULL; /* silent: each caller passes its own logger */
}

/* ---- addresses ---- */

static void sockaddr_set_port(struct sockaddr_storage *ss, uint16_t port)
{
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = htons(port);
	else
		((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
}

int pn_addr_split(const char *addr, bool allow_empty_host, char host[PN_ADDR_HOST_MAX], uint16_t *port,
		  struct sockaddr_storage *ss)
{
	const char *port_str;
	if (!addr || !*addr)
		return PN_EINVAL;
	if (addr[0] == '[') {
		const char *end = strchr(addr, ']');
		if (!end || end[1] != ':' || (size_t)(end - addr - 1) >= PN_ADDR_HOST_MAX)
			return PN_EINVAL;
		memcpy(host, addr + 1, (size_t)(end - addr - 1));
		host[end - addr - 1] = 0;
		port_str = end + 2;
	} else {
		const char *colon = strrchr(addr, ':');
		if (!colon) {
			host[0] = 0;
			port_str = addr;
		} else {
			if (strchr(addr, ':') != colon || (size_t)(colon - addr) >= PN_ADDR_HOST_MAX)
				return PN_EINVAL;
			memcpy(host, addr, (size_t)(colon - addr));
			host[colon - addr] = 0;
			port_str = colon + 1;
		}
	}
	if (!*port_str || strlen(port_str) > 5)
		return PN_EINVAL;
	unsigned long port_num = 0;
	for (const char *p = port_str; *p; p++) {
		if (*p < '0' || *p > '9')
			return PN_EINVAL;
		port_num = port_num * 10 + (unsigned long)(*p - '0');
	}
	if (port_num > 65535)
		return PN_EINVAL;
	*port = (uint16_t)port_num;
	if (!host[0]) {
		if (!allow_empty_host)
			return PN_EINVAL;
		strcpy(host, "0.0.0.0");
	}
	struct sockaddr_storage lit;
	memset(&lit, 0, sizeof lit);
	struct sockaddr_in *v4 = (struct sockaddr_in *)&lit;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&lit;
	if (inet_pton(AF_INET, host, &v4->sin_addr) == 1)
		v4->sin_family = AF_INET;
	else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1)
		v6->sin6_family = AF_INET6;
	else
		return PN_EAGAIN;
	sockaddr_set_port(&lit, *port);
	*ss = lit;
	return PN_OK;
}

int pn_addr_parse_numeric(const char *addr, struct sockaddr_storage *ss, bool allow_empty_host)
{
	char host[PN_ADDR_HOST_MAX];
	uint16_t port;
	int r = pn_addr_split(addr, allow_empty_host, host, &port, ss);
	return r == PN_EAGAIN ? PN_EINVAL : r;
}

int pn_addr_parse(const char *addr, struct sockaddr_storage *ss, bool allow_empty_host)
{
	char host[PN_ADDR_HOST_MAX];
	uint16_t port;
	int r = pn_addr_split(addr, allow_empty_host, host, &port, ss);
	if (r != PN_EAGAIN)
		return r;
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct addrinfo *res = NULL;
	if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res)
		return PN_ENOTFOUND;
	if (res->ai_addrlen > sizeof *ss) {
		freeaddrinfo(res);
		return PN_ENOTFOUND;
	}
	memset(ss, 0, sizeof *ss);
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	sockaddr_set_port(ss, port);
	freeaddrinfo(res);
	return PN_OK;
}

void pn_addr_format(const struct sockaddr *sa, char out[PN_ADDR_STR_MAX])
{
	char ip[INET6_ADDRSTRLEN] = "?";
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *v4 = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &v4->sin_addr, ip, sizeof ip);
		snprintf(out, PN_ADDR_STR_MAX, "%s:%u", ip, ntohs(v4->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)sa;
		/* An IPv4 client of a dual-stack listener ([::]:PORT) arrives as
		 * ::ffff:a.b.c.d: it prints, and counts, as the IPv4 address it is. */
		if (IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr)) {
			inet_ntop(AF_INET, v6->sin6_addr.s6_addr + 12, ip, sizeof ip);
			snprintf(out, PN_ADDR_STR_MAX, "%s:%u", ip, ntohs(v6->sin6_port));
			return;
		}
		inet_ntop(AF_INET6, &v6->sin6_addr, ip, sizeof ip);
		snprintf(out, PN_ADDR_STR_MAX, "[%s]:%u", ip, ntohs(v6->sin6_port));
	} else {
		snprintf(out, PN_ADDR_STR_MAX, "?");
	}
}

/* ---- net ---- */

static void net_maybe_free(struct pn_net *net)
{
	if (net->closing && net->open_handles == 0 && net->nconns == 0) {
		void (*cb)(void *) = net->closed_cb;
		void *ud = net->closed_ud;
		pn_tls_ctx_free(net->ctx_server);
		pn_tls_ctx_free(net->ctx_client);
		pn_addr_table_clear(&net->by_addr);
		free(net->scratch);
		free(net);
		if (cb)
			cb(ud);
	}
}

static void net_handle_closed_cb(uv_handle_t *h)
{
	struct pn_net *net = h->data;
	net->open_handles--;
	net_maybe_free(net);
}

static void sweep_cb(uv_timer_t *t);

/* The sweep runs about once a second, with jitter, while the net has
 * connections, and not at all without: an idle process does not wake for it. */
static void sweep_arm(struct pn_net *net)
{
	if ((net->nconns == 0 && !net->trim_pending) || net->closing || uv_is_active((uv_handle_t *)&net->sweep))
		return;
	uv_timer_start(&net->sweep, sweep_cb, SWEEP_INTERVAL_MS + pn_prng_below(&net->prng, SWEEP_JITTER_MS), 0);
}

static void sweep_cb(uv_timer_t *t)
{
	struct pn_net *net = t->data;
	uint64_t now = uv_now(net->loop);
	struct pn_conn *c = net->conns, *next;
	if (net->closing) { /* the drain deadline after pn_net_close: cut what is left */
		for (; c; c = next) {
			next = c->next;
			if (c->state == CONN_DRAINING)
				conn_finish_close(c);
		}
		return;
	}
	if (net->trim_pending) {
		net->trim_pending = false;
		net->closed_since_trim = 0;
#ifdef __GLIBC__
		malloc_trim(0);
#endif
	}
	for (; c; c = next) {
		next = c->next;
		if (conn_closing(c)) {
			if (c->state == CONN_DRAINING && now - c->closing_ms > DRAIN_TIMEOUT_MS)
				conn_finish_close(c);
			continue;
		}
		if (c->state < CONN_ESTABLISHED) {
			if (now - c->created_ms > net->opts.handshake_timeout_ms)
				pn_conn_close(c, PN_ETIMEDOUT);
			continue;
		}
		/* Quiet for a while: give back the buffers a transfer grew (not
		 * after every frame: a transfer would allocate one per chunk). */
		if (!c->queued && now - c->last_rx_ms > SWEEP_INTERVAL_MS && now - c->last_tx_ms > SWEEP_INTERVAL_MS) {
			pn_tls_trim(c->tls);
			if (c->in_len == 0 && c->in_cap > IN_BUF_KEEP) {
				free(c->in);
				c->in = NULL;
				c->in_cap = 0;
			}
		}
		if (c->queued && net->opts.write_stall_timeout_ms &&
		    now - c->last_tx_ms > net->opts.write_stall_timeout_ms) {
			pn_conn_close(c, PN_ETIMEDOUT);
			continue;
		}
		/* Keepalive (docs/PROTOCOL.md, Handshake and keepalive): once both
		 * HELLOs have passed (a frame each way), silence gets a PING, and a
		 * connection idle past the timeout is told why before it closes. */
		bool hello_done = c->bytes_in && c->bytes_out;
		if (net->opts.idle_timeout_ms && !c->queued && now - c->last_rx_ms > net->opts.idle_timeout_ms) {
			if (hello_done)
				(void)pn_conn_send_error(c, 0, PN_WERR_LIMIT, "idle timeout: no message received for too long");
			pn_conn_close(c, PN_ETIMEDOUT);
			continue;
		}
		uint64_t ping_after = PN_PING_INTERVAL_MS;
		if (net->opts.idle_timeout_ms && net->opts.idle_timeout_ms / 4 < ping_after)
			ping_after = net->opts.idle_timeout_ms / 4;
		if (hello_done && now - c->last_rx_ms >= ping_after && c->ping_ms <= c->last_rx_ms) {
			struct pn_msg ping = {.type = PN_MSG_PING};
			ping.u.ping.nonce = pn_prng_next(&net->prng);
			c->ping_ms = now;
			(void)pn_conn_send_msg(c, &ping);
		}
	}
	sweep_arm(net);
}

int pn_net_new(uv_loop_t *loop, const struct pn_identity *id, const struct pn_net_opts *opts,
	       struct pn_net **out)
{
	struct pn_net *net = calloc(1, sizeof *net);
	if (!net)
		return PN_ENOMEM;
	net->loop = loop;
	net->id = id;
	if (opts)
		net->opts = *opts;
	else
		pn_net_opts_default(&net->opts);
	if (net->opts.log)
		net->log = *net->opts.log;
	net->opts.log = NULL; /* the copy above is what counts; the caller's may go */
	/* Each net its own jitter: two processes (or two nets in one) started
	 * together do not sweep in step. */
	uint64_t seed;
	if (pn_random_bytes(&seed, sizeof seed) != PN_OK)
		seed = uv_hrtime() ^ (uint64_t)(uintptr_t)net;
	pn_prng_seed(&net->prng, seed);
	pn_addr_table_init(&net->by_addr, pn_prng_next(&net->prng));
	net->ctx_server = pn_tls_ctx_new(id, true);
	net->ctx_client = pn_tls_ctx_new(id, false);
	if (!net->ctx_server || !net->ctx_client) {
		pn_tls_ctx_free(net->ctx_server);
		pn_tls_ctx_free(net->ctx_client);
		free(net);
		return PN_ETLS;
	}
	uv_timer_init(loop, &net->sweep);
	net->sweep.data = net;
	net->open_handles = 1;
	uv_unref((uv_handle_t *)&net->sweep); /* armed by the first connection */
	uv_timer_init(loop, &net->shape);
	net->shape.data = net;
	net->open_handles++;
	uv_prepare_init(loop, &net->flusher);
	net->flusher.data = net;
	uv_unref((uv_handle_t *)&net->flusher); /* the connections keep the loop alive */
	net->open_handles++;
	pn_bucket_init(&net->up, 0, 0, uv_now(loop));
	pn_bucket_init(&net->down, 0, 0, uv_now(loop));
	*out = net;
	return PN_OK;
}

uv_loop_t *pn_net_loop(struct pn_net *net) { return net->loop; }
void pn_net_set_data(struct pn_net *net, void *data) { net->data = data; }
void *pn_net_data(const struct pn_net *net) { return net->data; }
size_t pn_net_conn_count(const struct pn_net *net) { return net->nconns; }
size_t pn_net_halfopen_count(const struct pn_net *net) { return net->nhalfopen; }
uint64_t pn_net_evicted_count(const struct pn_net *net) { return net->evicted; }
uint64_t pn_net_refused_per_addr(const struct pn_net *net) { return net->refused_per_addr; }

void pn_net_close_cb(struct pn_net *net, void (*closed)(void *ud), void *ud)
{
	net->closed_cb = closed;
	net->closed_ud = ud;
	pn_net_close(net);
}

void pn_net_close(struct pn_net *net)
{
	if (net->closing)
		return;
	net->closing = true;
	struct pn_conn *c = net->conns, *next;
	for (; c; c = next) {
		next = c->next;
		pn_conn_close(c, 0);
	}
	if (net->listening)
		uv_close((uv_handle_t *)&net->listener, net_handle_closed_cb);
	uv_close((uv_handle_t *)&net->shape, net_handle_closed_cb);
	uv_close((uv_handle_t *)&net->flusher, net_handle_closed_cb);
	/* Connections still draining (a peer that does not read its last bytes)
	 * get DRAIN_TIMEOUT_MS, then are cut: the sweep lives until the last is gone. */
	if (net->nconns == 0)
		uv_close((uv_handle_t *)&net->sweep, net_handle_closed_cb);
	else
		uv_timer_start(&net->sweep, sweep_cb, DRAIN_TIMEOUT_MS, 0);
}

/* ---- connections ---- */

/* SO_BINDTODEVICE on the handle's socket when the net has an interface:
 * its packets leave, and are accepted, only through that interface. */
static int bind_device(struct pn_net *net, uv_handle_t *h)
{
	if (!net->opts.bind_interface[0])
		return PN_OK;
	uv_os_fd_t fd;
	if (uv_fileno(h, &fd) != 0)
		return PN_EIO;
	if (setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, net->opts.bind_interface,
		       (socklen_t)strlen(net->opts.bind_interface)) != 0)
		return errno == EPERM ? PN_EACCES : errno == ENODEV ? PN_ENOTFOUND : PN_EIO;
	return PN_OK;
}

/* A new connection in its first state: HANDSHAKING for an accepted one (its
 * TCP is up already), CONNECTING or RESOLVING for one this end dials. */
static struct pn_conn *conn_new(struct pn_net *net, bool is_server, enum conn_state first)
{
	struct pn_conn *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	c->net = net;
	c->is_server = is_server;
	c->state = first;
	c->max_body = PN_FRAME_MAX;
	c->created_ms = c->last_rx_ms = c->last_tx_ms = uv_now(net->loop);
	uv_tcp_init(net->loop, &c->tcp);
	c->tcp.data = c;
	c->next = net->conns;
	if (net->conns)
		net->conns->prev = c;
	net->conns = c;
	net->nconns++;
	sweep_arm(net);
	return c;
}

static void conn_unlink(struct pn_conn *c)
{
	struct pn_net *net = c->net;
	if (c->prev)
		c->prev->next = c->next;
	else
		net->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	net->nconns--;
}

/* An accepted connection's handshake is over (done, failed or cut short). */
static void conn_halfopen_over(struct pn_conn *c)
{
	struct pn_net *net = c->net;
	if (!c->halfopen)
		return;
	c->halfopen = false;
	net->nhalfopen--;
	if (c->ho_prev)
		c->ho_prev->ho_next = c->ho_next;
	else
		net->halfopen_oldest = c->ho_next;
	if (c->ho_next)
		c->ho_next->ho_prev = c->ho_prev;
	else
		net->halfopen_newest = c->ho_prev;
	c->ho_prev = c->ho_next = NULL;
	if (c->src)
		pn_addr_count_handshake_over(c->src);
}

/* Takes c out of the net's flush list. */
static void flush_unlist(struct pn_conn *c)
{
	if (!c->flush_listed)
		return;
	struct pn_conn **pp = &c->net->flush_head;
	while (*pp != c)
		pp = &(*pp)->flush_next;
	*pp = c->flush_next;
	c->flush_next = NULL;
	c->flush_listed = false;
}

/* Encrypts the frames c gathered, as one TLS record, into its pending
 * ciphertext. */
static int batch_seal(struct pn_conn *c)
{
	if (!c->batch_len)
		return PN_OK;
	int r = pn_tls_write(c->tls, c->batch, c->batch_len);
	c->batch_len = 0;
	return r;
}

static void tcp_closed_cb(uv_handle_t *h)
{
	struct pn_conn *c = h->data;
	struct pn_net *net = c->net;
	conn_set_state(c, CONN_CLOSED);
	conn_unlink(c);
	conn_halfopen_over(c);
	if (c->src)
		pn_addr_table_release(&net->by_addr, c->src);
	if (++net->closed_since_trim >= TRIM_AFTER_CLOSES && !net->closing) {
		net->trim_pending = true;
		sweep_arm(net);
	}
	while (c->shaped_head) {
		struct write_req *w = c->shaped_head;
		c->shaped_head = w->next;
		write_req_free(w);
	}
	if (c->cbs && c->cbs->close_cb)
		c->cbs->close_cb(c, c->close_err);
	flush_unlist(c);
	pn_tls_free(c->tls);
	free(c->in);
	free(c->batch);
	free(c);
	if (net->closing && net->nconns == 0 && !uv_is_closing((uv_handle_t *)&net->sweep))
		uv_close((uv_handle_t *)&net->sweep, net_handle_closed_cb);
	net_maybe_free(net);
}

/* Closes the handle; tcp_closed_cb follows. Does nothing if that is under way. */
static void conn_finish_close(struct pn_conn *c)
{
	if (c->state >= CONN_CLOSING)
		return;
	if (c->resolve) {
		/* The look-up goes on without the connection: resolve_cb frees it. */
		c->resolve->req.data = NULL;
		(void)uv_cancel((uv_req_t *)&c->resolve->req);
		c->resolve = NULL;
	}
	conn_halfopen_over(c); /* uv_close gives the descriptor back now */
	conn_set_state(c, CONN_CLOSING);
	uv_close((uv_handle_t *)&c->tcp, tcp_closed_cb);
}

static void shutdown_cb(uv_shutdown_t *req, int status)
{
	struct pn_conn *c = req->data;
	conn_finish_close(c); /* also runs, cancelled, when the drain timed out first */
}

void pn_conn_close(struct pn_conn *c, int err)
{
	if (conn_closing(c))
		return;
	bool was_established = c->state == CONN_ESTABLISHED;
	if (was_established && err == PN_EPROTO && !c->sent_protocol_error) {
		/* The peer broke the protocol: it is told so before the close
		 * (docs/PROTOCOL.md, Framing), unless the owner said it already. */
		c->sent_protocol_error = true;
		(void)pn_conn_send_error(c, 0, PN_WERR_PROTOCOL, "protocol error");
		if (conn_closing(c))
			return; /* the send failed and closed the connection */
	}
	if (was_established && batch_seal(c) != PN_OK)
		was_established = false; /* nothing more can be written in order */
	c->close_err = err;
	c->closing_ms = uv_now(c->net->loop);
	if (c->reading) {
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->reading = false;
	}
	/* A connection that was up gets close_notify and whatever is still
	 * queued (an ERROR frame, say), unless it is the writes that stalled (a
	 * time-out with bytes still queued; an idle time-out has none, and its
	 * ERROR saying why is in the batch). */
	if (was_established && (err != PN_ETIMEDOUT || !c->queued) && uv_is_writable((uv_stream_t *)&c->tcp)) {
		/* What the upload cap held back goes first, in order: the TLS records
		 * that follow (close_notify) must not overtake it. */
		while (c->shaped_head) {
			struct write_req *w = c->shaped_head;
			c->shaped_head = w->next;
			uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)w->len);
			w->req.data = w;
			if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, write_cb) != 0) {
				c->queued -= w->len;
				write_req_free(w);
			}
		}
		c->shaped_tail = NULL;
		pn_tls_shutdown(c->tls);
		struct write_req *w = take_pending(c);
		if (w) {
			uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)w->len);
			w->req.data = w;
			if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, write_cb) == 0)
				c->queued += w->len;
			else
				write_req_free(w);
		}
		c->shutdown_req.data = c;
		if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, shutdown_cb) == 0) {
			conn_set_state(c, CONN_DRAINING);
			return;
		}
	}
	conn_finish_close(c);
}

static void write_cb(uv_write_t *req, int status)
{
	struct write_req *w = req->data;
	struct pn_conn *c = w->conn;
	c->queued -= w->len;
	write_req_free(w);
	if (status < 0) {
		if (conn_closing(c))
			return;
		if (status == UV_EPIPE || status == UV_ECONNRESET)
			c->write_dead = true; /* read what the peer said before it went */
		else
			pn_conn_close(c, PN_EIO);
		return;
	}
	c->last_tx_ms = uv_now(c->net->loop);
	if (conn_closing(c))
		return;
	if (c->queued < (c->net->up.rate ? SHAPED_HIGH_WATER / 2 : PN_CONN_LOW_WATER)) {
		if (c->above_high) {
			c->above_high = false;
			if (c->cbs && c->cbs->writable_cb)
				c->cbs->writable_cb(c);
		}
		if (c->paused && !conn_closing(c))
			pn_conn_resume(c);
	}
}

static void shape_cb(uv_timer_t *t);

static void arm_shape(struct pn_net *net)
{
	if (net->shape_armed || net->closing)
		return;
	uint64_t now = uv_now(net->loop);
	uint64_t wait = pn_bucket_wait_ms(&net->up, now);
	uint64_t wd = pn_bucket_wait_ms(&net->down, now);
	if (wd > wait)
		wait = wd;
	net->shape_armed = true;
	uv_timer_start(&net->shape, shape_cb, wait > SHAPE_TICK_MS ? wait : SHAPE_TICK_MS, 0);
}

/* Hands a write to libuv (after the upload bucket allowed it). */
static int submit_write(struct pn_conn *c, struct write_req *w)
{
	uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)w->len);
	w->req.data = w;
	int r = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, write_cb);
	if (r < 0)
		return PN_EIO;
	pn_bucket_take(&c->net->up, w->len, uv_now(c->net->loop));
	c->net->bytes_up += w->len;
	return PN_OK;
}

/* Moves the TLS session's pending ciphertext to the socket, or to the
 * connection's shaped queue when an upload cap is in debt. */
static int flush_out(struct pn_conn *c)
{
	struct pn_net *net = c->net;
	if (!c->tls || !pn_tls_pending_out(c->tls) || c->state >= CONN_CLOSING)
		return PN_OK;
	if (c->write_dead) {
		size_t n;
		free(pn_tls_take_out_buf(c->tls, &n));
		return PN_OK;
	}
	struct write_req *w = take_pending(c);
	if (!w)
		return PN_ENOMEM;
	uint64_t now = uv_now(net->loop);
	if (!c->queued)
		c->last_tx_ms = now;
	bool capped = net->up.rate != 0;
	if (capped && !c->shaped_head && w->len <= PN_NET_SHAPER_BYPASS) {
		/* A control message (a request, HAVE, CHOKE...) with nothing queued
		 * before it on its connection goes at once: its bytes count against
		 * the cap, but it does not wait for the debt of the chunks before it.
		 * Held behind them, every request and every HAVE of a node that
		 * uploads at its cap lost up to a chunk's time, at each hop. */
		if (submit_write(c, w) != PN_OK) {
			write_req_free(w);
			return PN_EIO;
		}
		c->queued += w->len;
	} else if (capped) {
		/* Capped: every write waits its turn in the shaped queues, released
		 * round-robin by shape_cb, so connections share the rate evenly. */
		if (c->shaped_tail)
			c->shaped_tail->next = w;
		else
			c->shaped_head = w;
		c->shaped_tail = w;
		c->queued += w->len;
		arm_shape(net);
	} else if (!c->queued && !capped) {
		/* Fast path: the socket usually takes it all at once. */
		uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)w->len);
		int r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
		if (r == UV_EPIPE || r == UV_ECONNRESET) {
			/* The peer is gone for writing, but what it sent before closing
			 * (often an ERROR saying why) is still to be read. */
			write_req_free(w);
			c->write_dead = true;
			return PN_OK;
		}
		if (r < 0 && r != UV_EAGAIN) {
			write_req_free(w);
			return PN_EIO;
		}
		size_t off = r > 0 ? (size_t)r : 0;
		net->bytes_up += off;
		if (off == w->len) {
			write_req_free(w);
			return PN_OK;
		}
		w->data += off;
		w->len -= off;
		if (submit_write(c, w) != PN_OK) {
			write_req_free(w);
			return PN_EIO;
		}
		c->queued += w->len;
	} else {
		if (submit_write(c, w) != PN_OK) {
			write_req_free(w);
			return PN_EIO;
		}
		c->queued += w->len;
	}
	if (pn_conn_congested(c))
		c->above_high = true;
	return PN_OK;
}

static void start_reading(struct pn_conn *c);

/* Releases shaped writes while the upload bucket has tokens, one write per
 * connection per round so capped connections share the rate; restarts
 * connections whose reading was throttled. */
static void shape_cb(uv_timer_t *t)
{
	struct pn_net *net = t->data;
	net->shape_armed = false;
	uint64_t now = uv_now(net->loop);
	bool pending = false;
	/* Round-robin from where the last round stopped, one write per turn. */
	size_t n = net->nconns, idle_turns = 0;
	while (n && idle_turns < n && pn_bucket_ready(&net->up, now)) {
		size_t start = net->shape_rr++ % n;
		struct pn_conn *c = net->conns;
		for (size_t i = 0; c && i < start; i++)
			c = c->next;
		struct write_req *w = c ? c->shaped_head : NULL;
		if (!w || conn_closing(c)) {
			idle_turns++;
			continue;
		}
		idle_turns = 0;
		c->shaped_head = w->next;
		if (!c->shaped_head)
			c->shaped_tail = NULL;
		if (submit_write(c, w) != PN_OK) {
			c->queued -= w->len;
			write_req_free(w);
			pn_conn_close(c, PN_EIO);
		}
	}
	bool down_ok = pn_bucket_ready(&net->down, now);
	for (struct pn_conn *c = net->conns; c; c = c->next) {
		if (c->shaped_head && !conn_closing(c))
			pending = true;
		if (c->read_throttled) {
			if (down_ok && !conn_closing(c)) {
				c->read_throttled = false;
				start_reading(c);
			} else if (!conn_closing(c)) {
				pending = true;
			}
		}
	}
	if (pending)
		arm_shape(net);
}

void pn_net_set_rates(struct pn_net *net, uint64_t up_bps, uint64_t down_bps)
{
	uint64_t now = uv_now(net->loop);
	pn_bucket_init(&net->up, up_bps, 0, now);
	pn_bucket_init(&net->down, down_bps, 0, now);
	/* A cap holds from the first byte: no initial burst above the rate. */
	pn_bucket_empty(&net->up);
	pn_bucket_empty(&net->down);
}

uint64_t pn_net_upload_debt(struct pn_net *net)
{
	pn_bucket_refill(&net->up, uv_now(net->loop));
	return net->up.rate && net->up.tokens < 0 ? (uint64_t)-net->up.tokens : 0;
}

void pn_net_bytes(const struct pn_net *net, uint64_t *up, uint64_t *down)
{
	*up = net->bytes_up;
	*down = net->bytes_down;
}

/* Before the loop waits: seals and writes what each listed connection
 * gathered this turn. */
static void flusher_cb(uv_prepare_t *h)
{
	struct pn_net *net = h->data;
	while (net->flush_head) {
		struct pn_conn *c = net->flush_head;
		net->flush_head = c->flush_next;
		c->flush_next = NULL;
		c->flush_listed = false;
		if (conn_closing(c))
			continue; /* pn_conn_close sealed and wrote the batch */
		int r = batch_seal(c);
		free(c->batch);
		c->batch = NULL;
		if (r == PN_OK)
			r = flush_out(c);
		if (r != PN_OK)
			pn_conn_close(c, r);
	}
	uv_prepare_stop(h);
}

/* Gathers a small frame for this loop turn's write. false if it must go
 * now (no memory for the batch). */
static bool batch_add(struct pn_conn *c, const void *a, size_t alen, const void *b, size_t blen, int *r)
{
	*r = PN_OK;
	if (c->batch_len + alen + blen > BATCH_MAX && (*r = batch_seal(c)) != PN_OK)
		return true;
	if (!c->batch && !(c->batch = malloc(BATCH_MAX)))
		return false;
	memcpy(c->batch + c->batch_len, a, alen);
	if (blen)
		memcpy(c->batch + c->batch_len + alen, b, blen);
	c->batch_len += alen + blen;
	if (!c->flush_listed) {
		struct pn_net *net = c->net;
		c->flush_listed = true;
		c->flush_next = net->flush_head;
		net->flush_head = c;
		uv_prepare_start(&net->flusher, flusher_cb);
	}
	return true;
}

int pn_conn_send2(struct pn_conn *c, const void *a, size_t alen, const void *b, size_t blen)
{
	if (c->state != CONN_ESTABLISHED)
		return PN_ECLOSED;
	/* ERROR: type, req_id u32, code u16 after the length */
	const uint8_t *head = a;
	if (alen >= PN_FRAME_HDR + 7 && head[PN_FRAME_HDR] == PN_MSG_ERROR &&
	    ((unsigned)head[PN_FRAME_HDR + 5] << 8 | head[PN_FRAME_HDR + 6]) == PN_WERR_PROTOCOL)
		c->sent_protocol_error = true;
	int r;
	if (alen + blen <= BATCH_FRAME_MAX && batch_add(c, a, alen, b, blen, &r)) {
		if (r != PN_OK) {
			pn_conn_close(c, r);
			return r;
		}
		c->bytes_out += alen + blen;
		return PN_OK;
	}
	r = batch_seal(c); /* what was gathered goes first */
	pn_tls_reserve_out(c->tls, alen + blen);
	if (r == PN_OK)
		r = pn_tls_write(c->tls, a, alen);
	if (r == PN_OK && blen)
		r = pn_tls_write(c->tls, b, blen);
	if (r == PN_OK)
		r = flush_out(c);
	if (r != PN_OK) {
		pn_conn_close(c, r);
		return r;
	}
	c->bytes_out += alen + blen;
	return PN_OK;
}

int pn_conn_send_msg(struct pn_conn *c, const struct pn_msg *m)
{
	struct pn_net *net = c->net;
	if (!net->scratch && !(net->scratch = malloc(PN_FRAME_HDR + PN_FRAME_MAX)))
		return PN_ENOMEM;
	struct pn_writer w;
	pn_wr_init(&w, net->scratch, PN_FRAME_HDR + PN_FRAME_MAX);
	int r = pn_msg_encode(m, &w);
	if (r != PN_OK) {
		PN_LOGE(&net->log, "encoding message 0x%02x: %s", m->type, pn_strerror(r));
		return r;
	}
	return pn_conn_send(c, w.data, w.len);
}

int pn_conn_send_error(struct pn_conn *c, uint32_t req_id, uint16_t code, const char *text)
{
	struct pn_msg m = {.type = PN_MSG_ERROR};
	m.u.error.req_id = req_id;
	m.u.error.code = code;
	m.u.error.text = text;
	m.u.error.text_len = (uint16_t)strlen(text);
	return pn_conn_send_msg(c, &m);
}

int pn_conn_send(struct pn_conn *c, const void *frame, size_t len)
{
	return pn_conn_send2(c, frame, len, NULL, 0);
}

bool pn_conn_congested(const struct pn_conn *c)
{
	return c->queued > (c->net->up.rate ? SHAPED_HIGH_WATER : PN_CONN_HIGH_WATER);
}
size_t pn_conn_queued(const struct pn_conn *c) { return c->queued; }
void pn_conn_set_data(struct pn_conn *c, void *data) { c->data = data; }
void *pn_conn_data(const struct pn_conn *c) { return c->data; }
const struct pn_conn_cbs *pn_conn_cbs_get(const struct pn_conn *c) { return c->cbs; }
const char *pn_conn_peer_addr(const struct pn_conn *c) { return c->peer_addr; }
const char *pn_conn_tls_error(const struct pn_conn *c) { return c->tls ? pn_tls_last_error(c->tls) : "no error"; }
const uint8_t *pn_conn_peer_id(const struct pn_conn *c) { return c->peer_id; }
bool pn_conn_is_established(const struct pn_conn *c) { return c->state == CONN_ESTABLISHED; }
enum conn_state pn__conn_state(const struct pn_conn *c) { return c->state; }
bool pn_conn_evicted(const struct pn_conn *c) { return c->evicted; }

int pn_conn_local_ip(const struct pn_conn *c, char out[PN_ADDR_STR_MAX])
{
	struct sockaddr_storage ss;
	int len = sizeof ss;
	if (uv_tcp_getsockname(&c->tcp, (struct sockaddr *)&ss, &len) != 0)
		return PN_EIO;
	pn_addr_format((struct sockaddr *)&ss, out);
	char *colon = strrchr(out, ':');
	if (colon)
		*colon = 0;
	return PN_OK;
}
struct pn_net *pn_conn_net(const struct pn_conn *c) { return c->net; }
uint64_t pn_conn_bytes_in(const struct pn_conn *c) { return c->bytes_in; }
uint64_t pn_conn_bytes_out(const struct pn_conn *c) { return c->bytes_out; }
void pn_conn_set_max_frame(struct pn_conn *c, size_t max_body) { c->max_body = max_body; }

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	/* One buffer for the whole net: read_cb consumes it before the next alloc. */
	struct pn_conn *c = h->data;
	buf->base = (char *)c->net->read_buf;
	buf->len = sizeof c->net->read_buf;
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct pn_conn *c = s->data;
	if (conn_closing(c))
		return;
	if (nread < 0) {
		pn_conn_close(c, nread == UV_EOF ? PN_ECLOSED : PN_EIO);
		return;
	}
	if (nread == 0)
		return;
	struct pn_net *net = c->net;
	net->bytes_down += (uint64_t)nread;
	if (net->down.rate) {
		uint64_t now = uv_now(net->loop);
		pn_bucket_take(&net->down, (uint64_t)nread, now);
		if (!pn_bucket_ready(&net->down, now) && c->reading) {
			uv_read_stop((uv_stream_t *)&c->tcp);
			c->reading = false;
			c->read_throttled = true;
			arm_shape(net);
		}
	}
	/* An accepted connection gets its TLS session with its first bytes: one
	 * that never sends any costs no TLS memory while it waits. */
	if (!c->tls && !(c->tls = pn_tls_new(net->ctx_server, true, NULL))) {
		pn_conn_close(c, PN_ENOMEM);
		return;
	}
	/* The session reads the ciphertext in place; what it leaves (a partial
	 * record, or all of it while the owner has paused) it keeps a copy of
	 * before the buffer is read into again. */
	pn_tls_lend(c->tls, buf->base, (size_t)nread);
	process(c);
	if (pn_tls_unlend(c->tls) != PN_OK)
		pn_conn_close(c, PN_ENOMEM);
}

static void start_reading(struct pn_conn *c)
{
	if (!c->reading && !conn_closing(c) && !c->paused && !c->read_throttled) {
		if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) == 0)
			c->reading = true;
	}
}

void pn_conn_resume(struct pn_conn *c)
{
	if (conn_closing(c))
		return;
	c->paused = false;
	start_reading(c);
	process(c);
}

/* The peer broke the framing: ERROR(0, PROTOCOL, text) goes out first
 * (docs/PROTOCOL.md, Framing), then the connection closes, draining. */
static void close_bad_frame(struct pn_conn *c, int err, const char *text)
{
	if (c->state == CONN_ESTABLISHED && !c->sent_protocol_error)
		(void)pn_conn_send_error(c, 0, PN_WERR_PROTOCOL, text); /* closes c if it fails */
	pn_conn_close(c, err);
}

/* Hands every whole frame in the plaintext buffer to the owner. Returns
 * false if the connection closed or paused. */
static bool deliver_frames(struct pn_conn *c)
{
	size_t off = 0;
	bool go_on = true;
	while (!conn_closing(c)) {
		const uint8_t *p = c->in + off;
		size_t avail = c->in_len - off;
		size_t body_len;
		if (avail >= PN_FRAME_HDR && pn_get_u32(p) == 0) {
			PN_LOGI(&c->net->log, "%s: zero-length frame, closing", c->peer_addr);
			close_bad_frame(c, PN_EPROTO, "zero-length frame");
			go_on = false;
			break;
		}
		if (avail >= PN_FRAME_HDR + 1) {
			uint32_t declared = pn_get_u32(p);
			size_t type_max = pn_msg_max_body(p[PN_FRAME_HDR]);
			if (type_max == 0) {
				PN_LOGI(&c->net->log, "%s: unknown message type 0x%02x, closing", c->peer_addr,
					p[PN_FRAME_HDR]);
				close_bad_frame(c, PN_EPROTO, "unknown message type");
				go_on = false;
				break;
			}
			if (declared > type_max || declared > c->max_body) {
				PN_LOGI(&c->net->log, "%s: frame of %u bytes exceeds the limit for type 0x%02x, closing",
					c->peer_addr, declared, p[PN_FRAME_HDR]);
				close_bad_frame(c, PN_ETOOBIG, "frame too large for its type");
				go_on = false;
				break;
			}
		}
		int r = pn_frame_check(p, avail, c->max_body, &body_len);
		if (r == PN_EAGAIN)
			break;
		if (r != PN_OK) {
			PN_LOGI(&c->net->log, "%s: bad frame (%s), closing", c->peer_addr, pn_strerror(r));
			close_bad_frame(c, r, "bad frame");
			go_on = false;
			break;
		}
		c->last_rx_ms = uv_now(c->net->loop);
		c->frame_off = off;
		c->frame_len = PN_FRAME_HDR + body_len;
		r = c->cbs->frame_cb(c, p + PN_FRAME_HDR, body_len);
		c->frame_len = 0;
		bool taken = c->frame_taken;
		c->frame_taken = false;
		/* A taken frame is consumed whatever r says: c->in now holds what
		 * followed it, from its start. */
		if (taken) {
			c->bytes_in += PN_FRAME_HDR + body_len;
			off = 0;
		}
		if (r == PN_EAGAIN) {
			c->paused = true;
			if (c->reading) {
				uv_read_stop((uv_stream_t *)&c->tcp);
				c->reading = false;
			}
			go_on = false;
			break;
		}
		if (r != PN_OK) {
			pn_conn_close(c, r);
			go_on = false;
			break;
		}
		if (!taken) {
			c->bytes_in += PN_FRAME_HDR + body_len;
			off += PN_FRAME_HDR + body_len;
		}
	}
	if (conn_closing(c))
		return false;
	if (off) {
		memmove(c->in, c->in + off, c->in_len - off);
		c->in_len -= off;
	}
	return go_on;
}

uint8_t *pn_conn_take_frame(struct pn_conn *c, const void *inside, uint8_t *spare, size_t spare_cap, size_t *cap)
{
	const uint8_t *q = inside;
	if (!c->frame_len || c->frame_taken || c->frame_off != 0 || q < c->in || q >= c->in + c->frame_len)
		return NULL;
	size_t rest = c->in_len - c->frame_len;
	if (spare && (spare_cap < rest || spare_cap < IN_BUF_MIN))
		return NULL;
	if (!spare) {
		spare_cap = rest > IN_BUF_MIN ? rest : IN_BUF_MIN;
		if (!(spare = malloc(spare_cap)))
			return NULL;
	}
	if (rest)
		memcpy(spare, c->in + c->frame_len, rest);
	uint8_t *frame = c->in;
	*cap = c->in_cap;
	c->in = spare;
	c->in_cap = spare_cap;
	c->in_len = rest;
	c->frame_taken = true;
	return frame;
}

/* Makes room for more plaintext: enough for the frame being received. */
static int in_reserve(struct pn_conn *c)
{
	size_t want = IN_BUF_MIN;
	if (c->in_len >= PN_FRAME_HDR) {
		size_t frame = PN_FRAME_HDR + (size_t)pn_get_u32(c->in);
		if (frame > want)
			want = frame;
	}
	if (c->in_len + 1 > want)
		want = c->in_len + IN_BUF_MIN;
	if (want > PN_FRAME_HDR + c->max_body + IN_BUF_MIN)
		want = PN_FRAME_HDR + c->max_body + IN_BUF_MIN;
	if (c->in_cap >= want && c->in_cap > c->in_len)
		return PN_OK;
	if (want <= c->in_len)
		return PN_ETOOBIG;
	uint8_t *n = realloc(c->in, want);
	if (!n)
		return PN_ENOMEM;
	c->in = n;
	c->in_cap = want;
	return PN_OK;
}

static void process(struct pn_conn *c)
{
	if (c->processing) {
		c->reprocess = true;
		return;
	}
	c->processing = true;
	do {
		c->reprocess = false;
		if (conn_closing(c) || !c->tls || c->state == CONN_RESOLVING)
			break;
		if (c->state < CONN_ESTABLISHED) {
			int r = pn_tls_handshake(c->tls);
			int fr = flush_out(c);
			if (r == PN_EAGAIN && fr == PN_OK)
				break;
			if (r != PN_OK || fr != PN_OK) {
				int err = r != PN_OK ? r : fr;
				PN_LOGI(&c->net->log, "%s: handshake failed: %s", c->peer_addr,
					r == PN_OK ? pn_strerror(fr) : pn_tls_last_error(c->tls));
				pn_conn_close(c, err);
				break;
			}
			conn_set_state(c, CONN_ESTABLISHED);
			conn_halfopen_over(c);
			c->last_rx_ms = uv_now(c->net->loop);
			if (pn_tls_peer_id(c->tls, c->peer_id) != PN_OK) {
				pn_conn_close(c, PN_ETLS);
				break;
			}
			if (c->cbs->established_cb)
				c->cbs->established_cb(c);
			if (conn_closing(c))
				break;
		}
		for (int rounds = 0; rounds < 1024 && !conn_closing(c) && !c->paused; rounds++) {
			if (!deliver_frames(c))
				break;
			int r = in_reserve(c);
			if (r != PN_OK) {
				pn_conn_close(c, r);
				break;
			}
			long n = pn_tls_read(c->tls, c->in + c->in_len, c->in_cap - c->in_len);
			if (n == PN_EAGAIN)
				break;
			if (n < 0) {
				if (n != PN_ECLOSED)
					PN_LOGI(&c->net->log, "%s: TLS error: %s", c->peer_addr,
						pn_tls_last_error(c->tls));
				pn_conn_close(c, n == PN_ECLOSED ? PN_ECLOSED : PN_ETLS);
				break;
			}
			c->in_len += (size_t)n;
		}
		if (!conn_closing(c)) {
			/* The replies to these frames go in one write. */
			int r = batch_seal(c);
			if (r == PN_OK)
				r = flush_out(c);
			if (r != PN_OK)
				pn_conn_close(c, r);
		}
	} while (c->reprocess && !conn_closing(c));
	c->processing = false;
}

/* Whether a refusal may be logged now: at most once per
 * PN_NET_LIMIT_LOG_INTERVAL_MS for the whole net, so a flood of refusals does
 * not flood the log. If so, *unlogged gets the count of those not logged since
 * the last line; if not, this one is counted. */
static bool refusal_log_due(struct pn_net *net, uint64_t *unlogged)
{
	uint64_t now = uv_now(net->loop);
	if (net->refusal_logged && now - net->refusal_log_ms < PN_NET_LIMIT_LOG_INTERVAL_MS) {
		net->refusals_unlogged++;
		return false;
	}
	*unlogged = net->refusals_unlogged;
	net->refusal_logged = true;
	net->refusal_log_ms = now;
	net->refusals_unlogged = 0;
	return true;
}

void pn_net_log_refusal(struct pn_net *net, const char *peer, const char *what, size_t count)
{
	uint64_t unlogged;
	if (!refusal_log_due(net, &unlogged))
		return;
	if (unlogged)
		PN_LOGW(&net->log, "%s: refused, %zu %s (%llu more refused in the last %u s)", peer, count, what,
			(unsigned long long)unlogged, PN_NET_LIMIT_LOG_INTERVAL_MS / 1000);
	else
		PN_LOGW(&net->log, "%s: refused, %zu %s", peer, count, what);
}

bool pn_net_evict_halfopen(struct pn_net *net, const struct pn_conn *spare)
{
	struct pn_conn *victim = net->halfopen_oldest;
	if (victim && victim == spare)
		victim = victim->ho_next;
	uint64_t unlogged;
	if (!victim)
		return false;
	net->evicted++;
	if (refusal_log_due(net, &unlogged))
		PN_LOGW(&net->log, "%s: every slot taken, closing this oldest of %zu unfinished handshakes to let a new "
			"connection in (%llu more refused or closed in the last %u s)", victim->peer_addr,
			net->nhalfopen, (unsigned long long)unlogged, PN_NET_LIMIT_LOG_INTERVAL_MS / 1000);
	victim->evicted = true;
	pn_conn_close(victim, PN_ELIMIT);
	return true;
}

static void connection_cb(uv_stream_t *server, int status)
{
	struct pn_net *net = server->data;
	if (status < 0 || net->closing)
		return;
	struct pn_conn *c = conn_new(net, true, CONN_HANDSHAKING);
	if (!c)
		return;
	if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
		conn_finish_close(c);
		return;
	}
	struct sockaddr_storage ss;
	int sl = sizeof ss;
	bool have_addr = uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0;
	if (have_addr)
		pn_addr_format((struct sockaddr *)&ss, c->peer_addr);
	else
		strcpy(c->peer_addr, "?");
	if (net->nconns > net->opts.max_conns && !pn_net_evict_halfopen(net, NULL)) {
		pn_net_log_refusal(net, c->peer_addr, "connections already", net->nconns - 1);
		conn_finish_close(c);
		return;
	}
	/* A fair share per source: refused here, before any TLS work, so that
	 * refusing a flood costs an accept and a close. */
	struct pn_addr_key key;
	if (have_addr && pn_addr_key_from((struct sockaddr *)&ss, &key)) {
		struct pn_addr_count *src = pn_addr_table_get(&net->by_addr, &key);
		if (!src) {
			conn_finish_close(c);
			return;
		}
		struct pn_conn_limits lim = {net->opts.halfopen_per_addr, net->opts.conns_per_addr};
		enum pn_admit admit = pn_conn_admit(src, &lim);
		if (admit != PN_ADMIT_OK) {
			net->refused_per_addr++;
			if (admit == PN_ADMIT_HALFOPEN)
				pn_net_log_refusal(net, c->peer_addr, "handshakes already under way from that address",
					    src->halfopen);
			else
				pn_net_log_refusal(net, c->peer_addr, "connections already open from that address", src->total);
			conn_finish_close(c);
			return;
		}
		pn_addr_count_open(src);
		c->src = src;
	}
	c->halfopen = true;
	net->nhalfopen++;
	c->ho_prev = net->halfopen_newest;
	if (net->halfopen_newest)
		net->halfopen_newest->ho_next = c;
	else
		net->halfopen_oldest = c;
	net->halfopen_newest = c;
	uv_tcp_nodelay(&c->tcp, 1);
	c->cbs = net->accept_cb(net, c);
	if (!c->cbs) {
		conn_finish_close(c);
		return;
	}
	start_reading(c);
}

int pn_net_listen(struct pn_net *net, const char *addr, pn_accept_cb accept_cb, uint16_t *bound_port)
{
	struct sockaddr_storage ss;
	int r = pn_addr_parse(addr, &ss, true);
	if (r != PN_OK)
		return r;
	uv_tcp_init(net->loop, &net->listener);
	net->listener.data = net;
	net->listening = true;
	net->open_handles++;
	net->accept_cb = accept_cb;
	r = uv_tcp_bind(&net->listener, (struct sockaddr *)&ss, 0);
	if (r == 0 && (r = bind_device(net, (uv_handle_t *)&net->listener)) != PN_OK)
		return r;
	if (r == 0)
		r = uv_listen((uv_stream_t *)&net->listener, 511, connection_cb);
	if (r != 0) {
		errno = -r;
		return r == UV_EADDRINUSE ? PN_EEXIST : r == UV_EACCES ? PN_EACCES : PN_EIO;
	}
	if (bound_port) {
		struct sockaddr_storage b;
		int bl = sizeof b;
		uv_tcp_getsockname(&net->listener, (struct sockaddr *)&b, &bl);
		*bound_port = ntohs(b.ss_family == AF_INET ? ((struct sockaddr_in *)&b)->sin_port
						       : ((struct sockaddr_in6 *)&b)->sin6_port);
	}
	return PN_OK;
}

static void connect_cb(uv_connect_t *req, int status)
{
	struct pn_conn *c = req->data;
	if (conn_closing(c))
		return;
	if (status < 0) {
		pn_conn_close(c, status == UV_ETIMEDOUT ? PN_ETIMEDOUT : PN_ECONNREFUSED);
		return;
	}
	conn_set_state(c, CONN_HANDSHAKING);
	uv_tcp_nodelay(&c->tcp, 1);
	start_reading(c);
	process(c); /* sends the ClientHello */
}

int pn_net_connect(struct pn_net *net, const char *addr, const uint8_t *expected_id,
		   const struct pn_conn_cbs *cbs, void *data, struct pn_conn **out)
{
	return pn_net_connect_from(net, NULL, addr, expected_id, cbs, data, out);
}

/* Opens c's socket toward ss, bound to the net's interface and to source
 * (NULL: any), and starts the TCP connect: connect_cb follows. Returns PN_OK
 * or the error; c is then the caller's to close. */
static int conn_dial(struct pn_conn *c, const struct sockaddr_storage *ss, const struct sockaddr_storage *source)
{
	struct pn_net *net = c->net;
	if (net->opts.bind_interface[0]) {
		/* The socket must exist before connect to carry the option. */
		uv_os_sock_t sock = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (sock < 0 || uv_tcp_open(&c->tcp, sock) != 0) {
			if (sock >= 0)
				close(sock);
			return PN_EIO;
		}
		int r = bind_device(net, (uv_handle_t *)&c->tcp);
		if (r != PN_OK)
			return r;
	}
	if (source && uv_tcp_bind(&c->tcp, (const struct sockaddr *)source, 0) != 0)
		return PN_EINVAL;
	pn_addr_format((const struct sockaddr *)ss, c->peer_addr);
	c->connect_req.data = c;
	if (uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)ss, connect_cb) != 0)
		return PN_ECONNREFUSED;
	return PN_OK;
}

/* The host name of a RESOLVING connection looked up (or the look-up
 * cancelled): dial its first address, or close with PN_ENOTFOUND, what
 * pn_addr_parse says of a name that does not resolve. */
static void resolve_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct resolve *rs = (struct resolve *)req;
	struct pn_conn *c = req->data;
	struct sockaddr_storage ss;
	bool found = status == 0 && res && res->ai_addrlen <= sizeof ss;
	if (found) {
		memset(&ss, 0, sizeof ss);
		memcpy(&ss, res->ai_addr, res->ai_addrlen);
		sockaddr_set_port(&ss, rs->port);
	}
	uv_freeaddrinfo(res);
	if (!c) { /* closed while it resolved */
		free(rs);
		return;
	}
	c->resolve = NULL;
	if (!found) {
		free(rs);
		pn_conn_close(c, PN_ENOTFOUND);
		return;
	}
	conn_set_state(c, CONN_CONNECTING);
	int r = conn_dial(c, &ss, rs->has_source ? &rs->source : NULL);
	free(rs);
	if (r != PN_OK)
		pn_conn_close(c, r);
}

/* A numeric address is dialled at once; a host name is looked up with
 * uv_getaddrinfo (the loop does not wait for DNS): the connection is
 * returned RESOLVING, and a name that does not resolve closes it with
 * PN_ENOTFOUND through close_cb. An error returned leaves nothing behind
 * (close_cb does not run). */
int pn_net_connect_from(struct pn_net *net, const char *source_ip, const char *addr, const uint8_t *expected_id,
			const struct pn_conn_cbs *cbs, void *data, struct pn_conn **out)
{
	struct sockaddr_storage ss, src;
	char host[PN_ADDR_HOST_MAX];
	uint16_t port;
	int r = pn_addr_split(addr, false, host, &port, &ss);
	if (r != PN_OK && r != PN_EAGAIN)
		return r;
	bool numeric = r == PN_OK;
	if (source_ip) {
		memset(&src, 0, sizeof src);
		struct sockaddr_in *v4 = (struct sockaddr_in *)&src;
		struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&src;
		if (inet_pton(AF_INET, source_ip, &v4->sin_addr) == 1)
			v4->sin_family = AF_INET;
		else if (inet_pton(AF_INET6, source_ip, &v6->sin6_addr) == 1)
			v6->sin6_family = AF_INET6;
		else
			return PN_EINVAL;
	}
	struct pn_conn *c = conn_new(net, false, numeric ? CONN_CONNECTING : CONN_RESOLVING);
	if (!c)
		return PN_ENOMEM;
	c->cbs = cbs;
	c->data = data;
	if (expected_id) {
		c->has_expected = true;
		memcpy(c->expected_id, expected_id, PN_ID_BYTES);
	}
	c->tls = pn_tls_new(net->ctx_client, false, expected_id);
	if (!c->tls) {
		r = PN_ETLS;
		goto fail;
	}
	if (numeric) {
		r = conn_dial(c, &ss, source_ip ? &src : NULL);
		if (r != PN_OK)
			goto fail;
		*out = c;
		return PN_OK;
	}
	struct resolve *rs = calloc(1, sizeof *rs);
	if (!rs) {
		r = PN_ENOMEM;
		goto fail;
	}
	rs->port = port;
	rs->has_source = source_ip != NULL;
	if (source_ip)
		rs->source = src;
	rs->req.data = c;
	snprintf(c->peer_addr, sizeof c->peer_addr, "%s", addr); /* the name, until it resolves */
	/* With a source address, only addresses of its family can be reached from it. */
	struct addrinfo hints = {.ai_family = source_ip ? src.ss_family : AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	if (uv_getaddrinfo(net->loop, &rs->req, resolve_cb, host, NULL, &hints) != 0) {
		free(rs);
		pn_conn_close(c, PN_ENOTFOUND); /* close_cb follows, from the loop */
	} else {
		c->resolve = rs;
	}
	*out = c;
	return PN_OK;
fail:
	c->close_err = r;
	c->cbs = NULL; /* nothing is left for the caller: close_cb does not run */
	conn_finish_close(c);
	return r;
}
