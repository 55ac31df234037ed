/* The status page's HTTP server. See http.h. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include "http/http.h"
#include "crypto/crypto.h"
#include "util/json.h"

#define HTTP_PATH_MAX 4096
#define HTTP_HOST_MAX 255
#define HTTP_BACKLOG 16

/* The page, built in from src/http/page.html (page.c). */
extern const char pn__http_page[], pn__http_page_end[];

struct http_server {
	uv_loop_t *loop;
	struct MHD_Daemon *mhd;
	const struct pn_logger *log;
	struct http_ops ops;
	bool loopback;               /* bound to a loopback address: Host is checked */
	bool have_token;
	char token[HTTP_TOKEN_HEX + 1];
	uint16_t port;
	uv_poll_t poll;              /* libmicrohttpd's epoll descriptor */
	uv_timer_t timer;            /* at MHD_get_timeout */
	uv_timer_t history_timer;    /* a rate sample a second */
	uv_timer_t defer;            /* runs ops.stop_cb after an authorised POST /api/stop */
	unsigned open_handles;       /* loop handles not closed yet */
	bool in_run;                 /* inside MHD_run: a close waits for it to return */
	bool closing, stopped;
	bool stop_pending;
	void (*closed_cb)(void *ud);
	void *closed_ud;
	uint32_t history_up[HTTP_HISTORY], history_down[HTTP_HISTORY]; /* bytes per second, saturated */
	unsigned history_head, history_count;
};

static void http_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void http_errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* ------------------------------------------------------------ addresses */

/* Parses "IPV4:PORT", "[IPV6]:PORT" or "localhost:PORT". */
static bool parse_listen(const char *s, struct sockaddr_storage *out, bool *loopback)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *port;
	size_t len = strlen(s);
	if (len == 0 || len > HTTP_HOST_MAX)
		return false;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (!close || close[1] != ':' || (size_t)(close - s - 1) >= sizeof host)
			return false;
		memcpy(host, s + 1, (size_t)(close - s - 1));
		host[close - s - 1] = '\0';
		port = close + 2;
	} else {
		const char *colon = strrchr(s, ':');
		if (!colon || (size_t)(colon - s) >= sizeof host || memchr(s, ':', (size_t)(colon - s)))
			return false;
		memcpy(host, s, (size_t)(colon - s));
		host[colon - s] = '\0';
		port = colon + 1;
		if (!strcasecmp(host, "localhost"))
			strcpy(host, "127.0.0.1");
	}
	if (!*port || strlen(port) > 5 || strspn(port, "0123456789") != strlen(port) || atoi(port) > 65535)
		return false;
	memset(out, 0, sizeof *out);
	struct sockaddr_in *v4 = (struct sockaddr_in *)out;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)out;
	if (s[0] != '[' && inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons((uint16_t)atoi(port));
		*loopback = (ntohl(v4->sin_addr.s_addr) >> 24) == 127;
		return true;
	}
	if (s[0] == '[' && inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons((uint16_t)atoi(port));
		*loopback = IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr);
		return true;
	}
	return false;
}

int http_check_listen(const char *listen, bool public_ok, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	bool loopback;
	if (!listen || !parse_listen(listen, &ss, &loopback)) {
		http_errf(err, errlen, "bad status page address '%s': expected IP:PORT, e.g. 127.0.0.1:8080",
			  listen ? listen : "");
		return PN_EINVAL;
	}
	if (!loopback && !public_ok) {
		http_errf(err, errlen,
			  "the status page address %s is not a loopback address; add --http-public to serve it "
			  "to the network",
			  listen);
		return PN_EACCES;
	}
	return PN_OK;
}

bool http_host_is_literal(const char *host)
{
	char name[HTTP_HOST_MAX + 1];
	size_t len = strlen(host);
	if (len == 0 || len > HTTP_HOST_MAX)
		return false;
	const char *port;
	if (host[0] == '[') {
		const char *close = strchr(host, ']');
		if (!close)
			return false;
		memcpy(name, host + 1, (size_t)(close - host - 1));
		name[close - host - 1] = '\0';
		port = close[1] == ':' ? close + 2 : close[1] == '\0' ? NULL : "x";
		struct in6_addr a6;
		if (inet_pton(AF_INET6, name, &a6) != 1)
			return false;
	} else {
		const char *colon = strchr(host, ':');
		size_t nlen = colon ? (size_t)(colon - host) : len;
		memcpy(name, host, nlen);
		name[nlen] = '\0';
		port = colon ? colon + 1 : NULL;
		struct in_addr a4;
		if (strcasecmp(name, "localhost") != 0 && inet_pton(AF_INET, name, &a4) != 1)
			return false;
	}
	return !port || (*port && strlen(port) <= 5 && strspn(port, "0123456789") == strlen(port));
}

/* ------------------------------------------------------------ the token */

static bool all_hex(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (!isxdigit((unsigned char)s[i]))
			return false;
	return true;
}

int http_token_load_or_create(const char *data_dir, char out[HTTP_TOKEN_HEX + 1], char *err, size_t errlen)
{
	char path[HTTP_PATH_MAX];
	if (snprintf(path, sizeof path, "%s/%s", data_dir, HTTP_TOKEN_FILE) >= (int)sizeof path) {
		http_errf(err, errlen, "the data directory's path is too long");
		return PN_EINVAL;
	}
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd >= 0) {
		char buf[HTTP_TOKEN_HEX + 2];
		ssize_t got = read(fd, buf, sizeof buf);
		close(fd);
		if (got > 0 && buf[got - 1] == '\n')
			got--;
		if (got != HTTP_TOKEN_HEX || !all_hex(buf, HTTP_TOKEN_HEX)) {
			http_errf(err, errlen, "%s is not %d hex digits; delete it and a new token is made", path,
				  HTTP_TOKEN_HEX);
			return PN_ECORRUPT;
		}
		memcpy(out, buf, HTTP_TOKEN_HEX);
		out[HTTP_TOKEN_HEX] = '\0';
		return PN_OK;
	}
	if (errno != ENOENT) {
		http_errf(err, errlen, "cannot read %s: %s", path, strerror(errno));
		return PN_EIO;
	}
	uint8_t rnd[HTTP_TOKEN_HEX / 2];
	if (pn_random_bytes(rnd, sizeof rnd) != PN_OK) {
		http_errf(err, errlen, "no randomness for the status page's token");
		return PN_EIO;
	}
	for (size_t i = 0; i < sizeof rnd; i++)
		snprintf(out + 2 * i, 3, "%02x", rnd[i]);
	OPENSSL_cleanse(rnd, sizeof rnd);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		http_errf(err, errlen, "cannot create %s: %s", path, strerror(errno));
		return PN_EIO;
	}
	char line[HTTP_TOKEN_HEX + 1];
	memcpy(line, out, HTTP_TOKEN_HEX);
	line[HTTP_TOKEN_HEX] = '\n';
	bool ok = write(fd, line, sizeof line) == (ssize_t)sizeof line && fsync(fd) == 0;
	ok = close(fd) == 0 && ok;
	if (!ok) {
		unlink(path);
		http_errf(err, errlen, "cannot write %s", path);
		return PN_EIO;
	}
	return PN_OK;
}

/* "Bearer TOKEN" with the right token, compared in constant time. */
static bool authorised(const struct http_server *hs, const char *value)
{
	static const char scheme[] = "Bearer ";
	if (!hs->have_token || !value || strncasecmp(value, scheme, sizeof scheme - 1) != 0)
		return false;
	value += sizeof scheme - 1;
	return strlen(value) == HTTP_TOKEN_HEX && CRYPTO_memcmp(value, hs->token, HTTP_TOKEN_HEX) == 0;
}

/* ------------------------------------------------------------ answers */

/* Queues body (freed by libmicrohttpd when must_free) with the page's
 * headers, and "Allow: ALLOW" unless allow is NULL. */
static enum MHD_Result answer(struct MHD_Connection *c, unsigned code, const char *type, char *body, size_t len,
			      bool must_free, const char *allow)
{
	struct MHD_Response *r =
		MHD_create_response_from_buffer(len, body, must_free ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
	if (!r) {
		if (must_free)
			free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(r, "X-Frame-Options", "DENY");
	MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
	MHD_add_response_header(r, "Content-Security-Policy",
				"default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
				"connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'");
	if (allow)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
	enum MHD_Result ret = MHD_queue_response(c, code, r);
	MHD_destroy_response(r);
	return ret;
}

/* Queues v (released) as JSON. */
static enum MHD_Result answer_json(struct MHD_Connection *c, unsigned code, json_t *v, const char *allow)
{
	char *text = v ? json_dumps(v, PN__JSON_FLAGS) : NULL;
	json_decref(v);
	if (!text) {
		static char oom[] = "{\"error\":\"out of memory\"}";
		return answer(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "application/json", oom, strlen(oom), false, NULL);
	}
	return answer(c, code, "application/json", text, strlen(text), true, allow);
}

static enum MHD_Result answer_error(struct MHD_Connection *c, unsigned code, const char *why)
{
	return answer_json(c, code, pn__json_with_text(json_object(), "error", why), NULL);
}

/* 405 with the methods the path takes. */
static enum MHD_Result answer_not_allowed(struct MHD_Connection *c, const char *allow, const char *why)
{
	return answer_json(c, MHD_HTTP_METHOD_NOT_ALLOWED, pn__json_with_text(json_object(), "error", why), allow);
}

static json_t *history_json(const struct http_server *hs)
{
	json_t *up = json_array(), *down = json_array();
	bool ok = up && down;
	for (unsigned k = 0; ok && k < hs->history_count; k++) {
		unsigned i = (hs->history_head + HTTP_HISTORY - hs->history_count + k) % HTTP_HISTORY;
		ok = json_array_append_new(up, json_integer(hs->history_up[i])) == 0 &&
		     json_array_append_new(down, json_integer(hs->history_down[i])) == 0;
	}
	if (!ok) {
		json_decref(up);
		json_decref(down);
		return NULL;
	}
	return json_pack("{s:I,s:o,s:o}", "interval_ms", (json_int_t)HTTP_HISTORY_MS, "upload", up, "download", down);
}

static void defer_cb(uv_timer_t *t)
{
	struct http_server *hs = t->data;
	if (!hs->stop_pending || hs->closing)
		return;
	hs->stop_pending = false;
	PN_LOGI(hs->log, "status page: stop requested");
	hs->ops.stop_cb(hs->ops.ud);
}

static enum MHD_Result stop_request(struct http_server *hs, struct MHD_Connection *c)
{
	const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	if (!authorised(hs, auth)) {
		PN_LOGI(hs->log, "status page: POST /api/stop without the right token, refused");
		return answer_error(c, MHD_HTTP_FORBIDDEN,
				    "a state change needs \"Authorization: Bearer TOKEN\" with the token in DATA/"
				    HTTP_TOKEN_FILE);
	}
	hs->stop_pending = true;
	uv_timer_start(&hs->defer, defer_cb, 0, 0);
	return answer_json(c, MHD_HTTP_ACCEPTED, json_pack("{s:b}", "stopping", 1), NULL);
}

/* Every request. A GET or HEAD that announces no body is answered on
 * libmicrohttpd's second call, once the request is complete, so the
 * connection can stay open for the page's next poll; anything else on the
 * first call, before a body is read (libmicrohttpd then closes the
 * connection after the answer), so a body is never read. */
static enum MHD_Result access_cb(void *cls, struct MHD_Connection *c, const char *url, const char *method,
				 const char *version, const char *upload_data, size_t *upload_data_size,
				 void **req_state)
{
	static int seen; /* its address marks a request whose first call came */
	struct http_server *hs = cls;
	if (hs->closing)
		return MHD_NO;
	bool get = !strcmp(method, MHD_HTTP_METHOD_GET) || !strcmp(method, MHD_HTTP_METHOD_HEAD);
	if (!*req_state && get &&
	    !MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH) &&
	    !MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING)) {
		*req_state = &seen;
		return MHD_YES;
	}
	if (hs->loopback) {
		const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
		if (host && !http_host_is_literal(host))
			return answer_error(c, MHD_HTTP_FORBIDDEN, "the Host header must be an IP address or localhost");
	}
	bool post = !strcmp(method, MHD_HTTP_METHOD_POST);
	if (!strcmp(url, "/api/stop") && hs->ops.stop_cb && hs->have_token) {
		if (!post)
			return answer_not_allowed(c, "POST", "use POST");
		return stop_request(hs, c);
	}
	bool known = !strcmp(url, "/") || !strcmp(url, "/index.html") || !strcmp(url, "/api/status") ||
		     !strcmp(url, "/api/history");
	if (!known)
		return answer_error(c, MHD_HTTP_NOT_FOUND, "no such page");
	if (!get)
		return answer_not_allowed(c, "GET, HEAD", "the status page is read-only");
	if (!strcmp(url, "/api/status"))
		return answer_json(c, MHD_HTTP_OK, hs->ops.status_cb(hs->ops.ud), NULL);
	if (!strcmp(url, "/api/history"))
		return answer_json(c, MHD_HTTP_OK, history_json(hs), NULL);
	return answer(c, MHD_HTTP_OK, "text/html; charset=utf-8", (char *)pn__http_page,
		      (size_t)(pn__http_page_end - pn__http_page), false, NULL);
}

static void mhd_log_cb(void *cls, const char *fmt, va_list ap)
{
	struct http_server *hs = cls;
	char line[PN_LOG_LINE_MAX];
	vsnprintf(line, sizeof line, fmt, ap);
	size_t len = strlen(line);
	while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		line[--len] = '\0';
	PN_LOGD(hs->log, "status page: %s", line);
}

/* ------------------------------------------------------------ the loop */

static void finish_close(struct http_server *hs);
static void timer_cb(uv_timer_t *t);

/* Lets libmicrohttpd do what is ready, then arms the timer at its next
 * deadline (0 when it holds data it has not processed yet). */
static void http_run(struct http_server *hs)
{
	hs->in_run = true;
	MHD_run(hs->mhd);
	hs->in_run = false;
	if (hs->closing) {
		finish_close(hs);
		return;
	}
	MHD_UNSIGNED_LONG_LONG timeout;
	if (MHD_get_timeout(hs->mhd, &timeout) == MHD_YES)
		uv_timer_start(&hs->timer, timer_cb, timeout, 0);
	else
		uv_timer_stop(&hs->timer);
}

static void timer_cb(uv_timer_t *t)
{
	http_run(t->data);
}

static void poll_cb(uv_poll_t *p, int status, int events)
{
	http_run(p->data);
}

static void history_cb(uv_timer_t *t)
{
	struct http_server *hs = t->data;
	uint64_t up = 0, down = 0;
	hs->ops.rates_cb(hs->ops.ud, &up, &down);
	hs->history_up[hs->history_head] = up > UINT32_MAX ? UINT32_MAX : (uint32_t)up;
	hs->history_down[hs->history_head] = down > UINT32_MAX ? UINT32_MAX : (uint32_t)down;
	hs->history_head = (hs->history_head + 1) % HTTP_HISTORY;
	if (hs->history_count < HTTP_HISTORY)
		hs->history_count++;
}

/* ------------------------------------------------------------ start and stop */

int http_server_new(const struct http_opts *o, struct http_server **out, char *err, size_t errlen)
{
	*out = NULL;
	struct sockaddr_storage ss;
	bool loopback;
	int r = http_check_listen(o->listen, o->public_ok, err, errlen);
	if (r != PN_OK)
		return r;
	if (!parse_listen(o->listen, &ss, &loopback) || !o->ops.status_cb || !o->ops.rates_cb)
		return PN_EINVAL;
	struct http_server *hs = calloc(1, sizeof *hs);
	if (!hs) {
		http_errf(err, errlen, "out of memory");
		return PN_ENOMEM;
	}
	hs->loop = o->loop;
	hs->log = o->log;
	hs->ops = o->ops;
	hs->loopback = loopback && !o->public_ok;
	if (o->ops.stop_cb && o->data_dir) {
		r = http_token_load_or_create(o->data_dir, hs->token, err, errlen);
		if (r != PN_OK) {
			free(hs);
			return r;
		}
		hs->have_token = true;
	}
	unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG | (ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0);
	hs->mhd = MHD_start_daemon(flags, 0, NULL, NULL, access_cb, hs,
				   MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
				   MHD_OPTION_CONNECTION_LIMIT, (unsigned int)HTTP_MAX_CONNS,
				   MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int)HTTP_MAX_CONNS_PER_IP,
				   MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_CONN_MEMORY,
				   MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)HTTP_TIMEOUT_S,
				   MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned int)HTTP_BACKLOG,
				   MHD_OPTION_EXTERNAL_LOGGER, mhd_log_cb, hs,
				   MHD_OPTION_END);
	if (!hs->mhd) {
		http_errf(err, errlen, "cannot serve the status page on %s: %s", o->listen,
			  errno == EADDRINUSE ? "address already in use" : strerror(errno ? errno : EINVAL));
		OPENSSL_cleanse(hs->token, sizeof hs->token);
		free(hs);
		return PN_EIO;
	}
	const union MHD_DaemonInfo *port = MHD_get_daemon_info(hs->mhd, MHD_DAEMON_INFO_BIND_PORT);
	const union MHD_DaemonInfo *efd = MHD_get_daemon_info(hs->mhd, MHD_DAEMON_INFO_EPOLL_FD);
	if (!port || !efd || uv_poll_init(hs->loop, &hs->poll, efd->epoll_fd) != 0) {
		MHD_stop_daemon(hs->mhd);
		http_errf(err, errlen, "cannot serve the status page on %s: libmicrohttpd gave no port or descriptor",
			  o->listen);
		free(hs);
		return PN_EIO;
	}
	hs->port = port->port;
	uv_timer_init(hs->loop, &hs->timer);
	uv_timer_init(hs->loop, &hs->history_timer);
	uv_timer_init(hs->loop, &hs->defer);
	hs->poll.data = hs->timer.data = hs->history_timer.data = hs->defer.data = hs;
	hs->open_handles = 4;
	uv_poll_start(&hs->poll, UV_READABLE, poll_cb);
	uv_timer_start(&hs->history_timer, history_cb, HTTP_HISTORY_MS, HTTP_HISTORY_MS);
	*out = hs;
	return PN_OK;
}

uint16_t http_server_port(const struct http_server *hs)
{
	return hs->port;
}

static void handle_closed_cb(uv_handle_t *h)
{
	struct http_server *hs = h->data;
	if (--hs->open_handles)
		return;
	void (*cb)(void *) = hs->closed_cb;
	void *ud = hs->closed_ud;
	OPENSSL_cleanse(hs->token, sizeof hs->token);
	free(hs);
	if (cb)
		cb(ud);
}

/* The poll stops before libmicrohttpd closes the descriptor it watches. */
static void finish_close(struct http_server *hs)
{
	if (hs->stopped)
		return;
	hs->stopped = true;
	uv_poll_stop(&hs->poll);
	MHD_stop_daemon(hs->mhd);
	hs->mhd = NULL;
	uv_close((uv_handle_t *)&hs->poll, handle_closed_cb);
	uv_close((uv_handle_t *)&hs->timer, handle_closed_cb);
	uv_close((uv_handle_t *)&hs->history_timer, handle_closed_cb);
	uv_close((uv_handle_t *)&hs->defer, handle_closed_cb);
}

void http_server_close(struct http_server *hs, void (*closed)(void *ud), void *ud)
{
	if (!hs || hs->closing)
		return;
	hs->closing = true;
	hs->closed_cb = closed;
	hs->closed_ud = ud;
	if (!hs->in_run)
		finish_close(hs);
}
