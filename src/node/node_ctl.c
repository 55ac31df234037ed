/* The node's control socket: a Unix socket in the data directory (mode 0600)
 * on which `peernet add/search/get/status/stop` talk to a running node.
 *
 * Protocol (local, line-based): the client sends one request line, fields
 * separated by TAB:
 *   add PATH...            -> file ID NAME SIZE           (per file)
 *   search WORDS           -> result ID PROVIDERS SIZE NAME (per match)
 *   get ID OUT CWD FORCE   -> progress HAVE TOTAL PEERS NAME (repeated),
 *                             got ID NAME PATH SIZE DOWN RESUMED SECONDS PEERS
 *   status                 -> json {...} then text lines
 *   stop
 * and the node ends every answer with "ok" or "err MESSAGE". */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include "node/node_ctl.h"
#include "crypto/crypto.h"
#include "store/store.h"

#define CTL_MAX_CLIENTS 64          /* control connections at once; one more is told so and closed */
#define CTL_REQUEST_TIMEOUT_MS 10000 /* a connection that has not sent its request line by then is closed */
#define CTL_SWEEP_MS 1000            /* how often that is looked at, while such a connection exists */
#define CTL_MAX_FIELDS 64
#define CTL_LINE_MAX 8192
#define CTL_PATH_MAX 4096

struct ctl_client {
	struct ctl_server *cs;
	uv_pipe_t pipe;
	struct ctl_client *next;
	char buf[CTL_LINE_MAX];
	size_t len;
	uint64_t accepted_ms;
	bool requested;      /* its request line came (a get may then run for long) */
	bool handled, closing;
};

struct ctl_server {
	uv_loop_t *loop;
	struct store *store;
	struct ctl_ops ops;
	char path[CTL_PATH_MAX];
	uv_pipe_t pipe;
	uv_timer_t sweep;    /* runs only while a connection waits for its request line */
	bool listening, closing, bound, sweeping;
	struct ctl_client *clients;
	unsigned open;       /* handles not closed yet: the listener, the sweep, each client */
	void (*closed_cb)(void *ud);
	void *closed_ud;
};

static void ctl_maybe_closed(struct ctl_server *cs)
{
	if (cs->closing && cs->open == 0 && cs->closed_cb) {
		void (*cb)(void *) = cs->closed_cb;
		cs->closed_cb = NULL;
		cb(cs->closed_ud);
	}
}

static void server_handle_closed_cb(uv_handle_t *h)
{
	struct ctl_server *cs = h->data;
	cs->open--;
	ctl_maybe_closed(cs);
}

static void ctl_closed_cb(uv_handle_t *h)
{
	struct ctl_client *cc = h->data;
	struct ctl_server *cs = cc->cs;
	struct ctl_client **pp = &cs->clients;
	while (*pp && *pp != cc)
		pp = &(*pp)->next;
	if (*pp)
		*pp = cc->next;
	if (cs->ops.client_gone_cb)
		cs->ops.client_gone_cb(cs->ops.ud, cc);
	free(cc);
	cs->open--;
	ctl_maybe_closed(cs);
}

static void ctl_close(struct ctl_client *cc)
{
	if (cc->closing)
		return;
	cc->closing = true;
	uv_close((uv_handle_t *)&cc->pipe, ctl_closed_cb);
}

struct ctl_write {
	uv_write_t req;
	char data[];
};

static void ctl_write_cb(uv_write_t *req, int status)
{
	free(req->data);
}

static void ctl_reply(struct ctl_client *cc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ctl_reply(struct ctl_client *cc, const char *fmt, ...)
{
	if (cc->closing)
		return;
	char line[8192];
	va_list ap;
	va_start(ap, fmt);
	int len = vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (len < 0)
		return;
	if ((size_t)len >= sizeof line)
		len = sizeof line - 1;
	/* A client that stopped reading is dropped rather than buffered for. */
	if (uv_stream_get_write_queue_size((uv_stream_t *)&cc->pipe) > 1024 * 1024) {
		ctl_close(cc);
		return;
	}
	struct ctl_write *w = malloc(sizeof *w + (size_t)len);
	if (!w)
		return;
	memcpy(w->data, line, (size_t)len);
	w->req.data = w;
	uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
	if (uv_write(&w->req, (uv_stream_t *)&cc->pipe, &b, 1, ctl_write_cb) != 0)
		free(w);
}

static void shutdown_cb(uv_shutdown_t *req, int status)
{
	struct ctl_client *cc = req->data;
	free(req);
	ctl_close(cc);
}

/* Ends the answer: "ok" when err_fmt is NULL, else "err MESSAGE"; then closes. */
void ctl_finish(struct ctl_client *cc, const char *err_fmt, ...)
{
	if (cc->closing || cc->handled)
		return;
	cc->handled = true;
	if (err_fmt) {
		char msg[1024];
		va_list ap;
		va_start(ap, err_fmt);
		vsnprintf(msg, sizeof msg, err_fmt, ap);
		va_end(ap);
		for (char *p = msg; *p; p++)
			if (*p == '\n' || *p == '\t')
				*p = ' ';
		ctl_reply(cc, "err\t%s\n", msg);
	} else {
		ctl_reply(cc, "ok\n");
	}
	uv_shutdown_t *req = malloc(sizeof *req);
	if (req) {
		req->data = cc;
		if (uv_shutdown(req, (uv_stream_t *)&cc->pipe, shutdown_cb) == 0)
			return;
		free(req);
	}
	ctl_close(cc);
}

void ctl_result(struct ctl_client *cc, const struct pn_cid *cid, uint32_t providers, const char *name,
		size_t name_len)
{
	char id[PN_CID_STR_LEN + 1];
	pn_cid_format(cid, id);
	ctl_reply(cc, "result\t%s\t%u\t%llu\t%.*s\n", id, providers, (unsigned long long)cid->size, (int)name_len, name);
}

void ctl_progress(struct ctl_client *cc, uint64_t have, uint64_t total, uint32_t peers, const char *name)
{
	ctl_reply(cc, "progress\t%llu\t%llu\t%u\t%s\n", (unsigned long long)have, (unsigned long long)total, peers,
		  name);
}

void ctl_got(struct ctl_client *cc, const struct pn_cid *cid, const char *name, const char *path, uint64_t down,
	     uint64_t resumed, double secs, unsigned peers)
{
	char id[PN_CID_STR_LEN + 1];
	pn_cid_format(cid, id);
	ctl_reply(cc, "got\t%s\t%s\t%s\t%llu\t%llu\t%llu\t%.3f\t%u\n", id, name, path, (unsigned long long)cid->size,
		  (unsigned long long)down, (unsigned long long)resumed, secs, peers);
}

static void json_str(char *out, size_t cap, const char *s)
{
	size_t k = 0;
	if (cap < 3)
		return;
	out[k++] = '"';
	for (; *s && k + 8 < cap; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\') {
			out[k++] = '\\';
			out[k++] = (char)ch;
		} else if (ch < 0x20) {
			k += (size_t)snprintf(out + k, cap - k, "\\u%04x", ch);
		} else {
			out[k++] = (char)ch;
		}
	}
	out[k++] = '"';
	out[k] = 0;
}

static void do_status(struct ctl_server *cs, struct ctl_client *cc)
{
	char idhex[PN_NODE_ID_STR_LEN + 1], q[600];
	size_t cap = 256 * 1024, len = 0;
	char *js = malloc(cap);
	struct ctl_status st = {0};
	st.peers = calloc(CTL_STATUS_PEERS_MAX, sizeof *st.peers);
	st.transfers = calloc(CTL_STATUS_TRANSFERS_MAX, sizeof *st.transfers);
	if (!js || !st.peers || !st.transfers) {
		free(js);
		free(st.peers);
		free(st.transfers);
		ctl_finish(cc, "out of memory");
		return;
	}
	cs->ops.status_cb(cs->ops.ud, &st);
	pn_node_id_format(st.node_id, idhex);
	const char *mode = st.discovery ? st.discovery : "?";
#define J(...) do { if (len < cap) len += (size_t)snprintf(js + len, cap - len, __VA_ARGS__); } while (0)
	/* The address actually bound: the --listen host with the port the system chose. */
	char bound[PN_ADDR_STR_MAX + 8];
	snprintf(bound, sizeof bound, "%s", st.listen ? st.listen : "");
	char *colon = strrchr(bound, ':');
	if (colon)
		snprintf(colon, sizeof bound - (size_t)(colon - bound), ":%u", st.port);
	json_str(q, sizeof q, bound);
	J("{\"node_id\":\"%s\",\"listen\":%s,\"port\":%u,\"discovery\":\"%s\"", idhex, q, st.port, mode);
	if (st.directory) {
		json_str(q, sizeof q, st.directory);
		J(",\"directory\":{\"address\":%s,\"connected\":%s,\"refused_shares\":%u}", q,
		  st.directory_registered ? "true" : "false", st.directory_refused);
	}
	if (st.flood) {
		const struct flood_stats *fs = &st.flood_stats;
		J(",\"flood\":{\"neighbors\":%zu,\"queries_started\":%llu,\"queries_sent\":%llu,\"queries_received\":%llu,"
		  "\"duplicates_dropped\":%llu,\"rate_limited\":%llu,\"hits_sent\":%llu,\"hits_received\":%llu}",
		  st.flood_neighbors, (unsigned long long)fs->queries_started,
		  (unsigned long long)fs->queries_sent, (unsigned long long)fs->queries_received,
		  (unsigned long long)fs->duplicates_dropped, (unsigned long long)fs->rate_limited,
		  (unsigned long long)fs->hits_sent, (unsigned long long)fs->hits_received);
	}
	J(",\"peers\":[");
	for (size_t i = 0; i < st.npeers; i++) {
		const struct ctl_peer_status *p = &st.peers[i];
		char pid[PN_NODE_ID_STR_LEN + 1];
		pn_node_id_format(p->id, pid);
		json_str(q, sizeof q, p->addr);
		J("%s{\"id\":\"%s\",\"address\":%s,\"direction\":\"%s\",\"neighbor\":%s,\"seed_server\":%s,"
		  "\"choking_us\":%s,\"we_choke\":%s,\"bytes_to\":%llu,\"bytes_from\":%llu}",
		  i ? "," : "", pid, q, p->outgoing ? "out" : "in", p->neighbor ? "true" : "false",
		  p->seed_server ? "true" : "false", p->peer_choking ? "true" : "false",
		  p->am_choking ? "true" : "false", (unsigned long long)p->bytes_to, (unsigned long long)p->bytes_from);
	}
	J("],\"shares\":[");
	size_t ns = cs->store ? store_count(cs->store) : 0;
	for (size_t i = 0; i < ns && len < cap - 1024; i++) {
		const struct store_object *o = store_at(cs->store, i);
		char id[PN_CID_STR_LEN + 1];
		pn_cid_format(&o->cid, id);
		json_str(q, sizeof q, o->name);
		J("%s{\"id\":\"%s\",\"name\":%s,\"size\":%llu}", i ? "," : "", id, q, (unsigned long long)o->cid.size);
	}
	J("],\"transfers\":[");
	for (size_t i = 0; i < st.ntransfers; i++) {
		const struct ctl_transfer_status *d = &st.transfers[i];
		char id[PN_CID_STR_LEN + 1];
		pn_cid_format(&d->cid, id);
		json_str(q, sizeof q, d->name);
		J("%s{\"id\":\"%s\",\"name\":%s,\"size\":%llu,\"chunks\":%u,\"chunks_have\":%u,\"bytes_downloaded\":%llu}",
		  i ? "," : "", id, q, (unsigned long long)d->cid.size, d->chunks, d->have, (unsigned long long)d->bytes_down);
	}
	J("],\"totals\":{\"bytes_uploaded\":%llu,\"bytes_downloaded\":%llu,\"wire_bytes_sent\":%llu,"
	  "\"wire_bytes_received\":%llu,\"lookups\":%llu,\"lookup_messages\":%llu}}",
	  (unsigned long long)st.bytes_up, (unsigned long long)st.bytes_down,
	  (unsigned long long)st.wire_up, (unsigned long long)st.wire_down, (unsigned long long)st.lookups,
	  (unsigned long long)st.lookup_msgs);
#undef J
	if (len >= cap) {
		free(js);
		free(st.peers);
		free(st.transfers);
		ctl_finish(cc, "status too large");
		return;
	}
	/* The JSON goes out as one line, possibly longer than ctl_reply's buffer. */
	struct ctl_write *w = malloc(sizeof *w + len + 6);
	if (w) {
		memcpy(w->data, "json\t", 5);
		memcpy(w->data + 5, js, len);
		w->data[5 + len] = '\n';
		w->req.data = w;
		uv_buf_t b = uv_buf_init(w->data, (unsigned)(len + 6));
		if (uv_write(&w->req, (uv_stream_t *)&cc->pipe, &b, 1, ctl_write_cb) != 0)
			free(w);
	}
	free(js);
	/* The plain form, for people. */
	ctl_reply(cc, "text\tnode       %s\n", idhex);
	ctl_reply(cc, "text\tlistening  %s, discovery %s\n", bound, mode);
	if (st.directory)
		ctl_reply(cc, "text\tdirectory  %s, %s%s\n", st.directory,
			  st.directory_registered ? "registered" : "unreachable, retrying",
			  st.directory_refused ? "; it refused to register some shares (its limits): others cannot find them" : "");
	if (st.directory && st.directory_refused)
		ctl_reply(cc, "text\t           %u shares not registered\n", st.directory_refused);
	if (st.flood) {
		const struct flood_stats *fs = &st.flood_stats;
		ctl_reply(cc, "text\tflood      %zu neighbours, %llu queries sent, %llu received, %llu duplicates dropped\n",
			  st.flood_neighbors, (unsigned long long)fs->queries_sent,
			  (unsigned long long)fs->queries_received, (unsigned long long)fs->duplicates_dropped);
	}
	ctl_reply(cc, "text\tpeers      %d\n", (int)st.npeers);
	for (size_t i = 0; i < st.npeers; i++) {
		const struct ctl_peer_status *p = &st.peers[i];
		char pid[PN_NODE_ID_STR_LEN + 1];
		pn_node_id_format(p->id, pid);
		ctl_reply(cc, "text\t  %.16s  %-22s %s  sent %llu  received %llu%s%s\n", pid, p->addr,
			  p->outgoing ? "out" : "in ", (unsigned long long)p->bytes_to, (unsigned long long)p->bytes_from,
			  p->am_choking ? "" : "  (unchoked)", p->seed_server ? "  (seed server)" : "");
	}
	ctl_reply(cc, "text\tshares     %zu\n", ns);
	for (size_t i = 0; i < ns; i++) {
		const struct store_object *o = store_at(cs->store, i);
		char id[PN_CID_STR_LEN + 1];
		pn_cid_format(&o->cid, id);
		ctl_reply(cc, "text\t  %s  %llu  %s\n", id, (unsigned long long)o->cid.size, o->name);
	}
	ctl_reply(cc, "text\ttransfers  %d\n", (int)st.ntransfers);
	for (size_t i = 0; i < st.ntransfers; i++) {
		const struct ctl_transfer_status *d = &st.transfers[i];
		char id[PN_CID_STR_LEN + 1];
		pn_cid_format(&d->cid, id);
		ctl_reply(cc, "text\t  %s  %u/%u chunks  %s\n", id, d->have, d->chunks, d->name);
	}
	ctl_reply(cc, "text\ttotals     uploaded %llu bytes, downloaded %llu bytes, %llu look-ups\n",
		  (unsigned long long)st.bytes_up, (unsigned long long)st.bytes_down, (unsigned long long)st.lookups);
	free(st.peers);
	free(st.transfers);
	ctl_finish(cc, NULL);
}

static void do_add(struct ctl_server *cs, struct ctl_client *cc, char **f, int nf)
{
	if (nf < 2) {
		ctl_finish(cc, "add: no file given");
		return;
	}
	for (int i = 1; i < nf; i++) {
		const struct store_object *o = NULL;
		errno = 0;
		int r = cs->ops.add_cb(cs->ops.ud, f[i], &o);
		if (r != PN_OK && r != PN_EEXIST) {
			char shown[PATH_MAX];
			ctl_finish(cc, "cannot share %s: %s", pn_text_escape(f[i], strlen(f[i]), shown, sizeof shown),
				   r == PN_EIO && errno ? strerror(errno) : r == PN_EINVAL ? "not a regular file, or its name is not valid on the network" : pn_strerror(r));
			return;
		}
		char id[PN_CID_STR_LEN + 1];
		pn_cid_format(&o->cid, id);
		ctl_reply(cc, "file\t%s\t%s\t%llu\n", id, o->name, (unsigned long long)o->cid.size);
	}
	ctl_finish(cc, NULL);
}

static void do_search(struct ctl_server *cs, struct ctl_client *cc, char **f, int nf)
{
	if (nf < 2 || !*f[1]) {
		ctl_finish(cc, "search: no words given");
		return;
	}
	cs->ops.search_cb(cs->ops.ud, cc, f[1]);
}

static void do_get(struct ctl_server *cs, struct ctl_client *cc, char **f, int nf)
{
	if (nf != 5) {
		ctl_finish(cc, "get: expected ID OUT CWD FORCE");
		return;
	}
	struct ctl_get_request req = {0};
	if (pn_cid_parse(f[1], &req.cid) != PN_OK) {
		ctl_finish(cc, "'%s' is not a content ID", f[1]);
		return;
	}
	req.to_stdout = !strcmp(f[2], "-");
	req.force = !strcmp(f[4], "1");
	char out[CTL_PATH_MAX];
	out[0] = 0;
	if (!req.to_stdout && *f[2]) {
		snprintf(out, sizeof out, "%s%s%s", f[2][0] == '/' ? "" : f[3], f[2][0] == '/' ? "" : "/", f[2]);
		if (!req.force && access(out, F_OK) == 0) {
			ctl_finish(cc, "%s already exists; use --force to overwrite it", out);
			return;
		}
	}
	/* Without -o the file gets the content's own name in CWD, once that name is known. */
	req.out_path = out;
	req.cwd = f[3];
	int r = cs->ops.get_cb(cs->ops.ud, cc, &req);
	if (r != PN_OK)
		ctl_finish(cc, "cannot start the download: %s", pn_strerror(r));
}

static void handle_line(struct ctl_client *cc, char *line)
{
	struct ctl_server *cs = cc->cs;
	char *fields[CTL_MAX_FIELDS];
	int nf = 0;
	for (char *p = line; nf < CTL_MAX_FIELDS;) {
		fields[nf++] = p;
		char *tab = strchr(p, '\t');
		if (!tab)
			break;
		*tab = 0;
		p = tab + 1;
	}
	if (!strcmp(fields[0], "add"))
		do_add(cs, cc, fields, nf);
	else if (!strcmp(fields[0], "search"))
		do_search(cs, cc, fields, nf);
	else if (!strcmp(fields[0], "get"))
		do_get(cs, cc, fields, nf);
	else if (!strcmp(fields[0], "status"))
		do_status(cs, cc);
	else if (!strcmp(fields[0], "stop")) {
		ctl_finish(cc, NULL);
		cs->ops.stop_cb(cs->ops.ud);
	} else
		ctl_finish(cc, "unknown control command '%.40s'", fields[0]);
}

static void ctl_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct ctl_client *cc = h->data;
	buf->base = cc->buf + cc->len;
	buf->len = sizeof cc->buf - cc->len - 1;
}

static void ctl_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct ctl_client *cc = s->data;
	if (nread < 0) {
		if (!cc->handled)
			ctl_close(cc);
		else
			uv_read_stop(s);
		return;
	}
	if (cc->handled)
		return; /* one request per connection */
	cc->len += (size_t)nread;
	cc->buf[cc->len] = 0;
	char *nl = memchr(cc->buf, '\n', cc->len);
	if (!nl) {
		if (cc->len >= sizeof cc->buf - 1)
			ctl_finish(cc, "request too long");
		return;
	}
	*nl = 0;
	uv_read_stop(s);
	cc->requested = true;
	handle_line(cc, cc->buf);
}

/* Closes the connections that have not sent their request in time; stops when none waits. */
static void sweep_cb(uv_timer_t *t)
{
	struct ctl_server *cs = t->data;
	uint64_t now = uv_now(cs->loop);
	bool waiting = false;
	for (struct ctl_client *cc = cs->clients; cc; cc = cc->next) {
		if (cc->requested || cc->handled || cc->closing)
			continue;
		if (now - cc->accepted_ms >= CTL_REQUEST_TIMEOUT_MS)
			ctl_finish(cc, "no request within %d s", CTL_REQUEST_TIMEOUT_MS / 1000);
		else
			waiting = true;
	}
	if (!waiting) {
		uv_timer_stop(&cs->sweep);
		cs->sweeping = false;
	}
}

static void ctl_connection_cb(uv_stream_t *server, int status)
{
	struct ctl_server *cs = server->data;
	if (status < 0 || cs->closing)
		return;
	struct ctl_client *cc = calloc(1, sizeof *cc);
	if (!cc)
		return;
	cc->cs = cs;
	uv_pipe_init(cs->loop, &cc->pipe, 0);
	cs->open++;
	cc->pipe.data = cc;
	cc->next = cs->clients;
	cs->clients = cc;
	int count = 0;
	for (struct ctl_client *x = cs->clients; x; x = x->next)
		count++;
	if (uv_accept(server, (uv_stream_t *)&cc->pipe) != 0) {
		ctl_close(cc);
		return;
	}
	if (count > CTL_MAX_CLIENTS) {
		ctl_finish(cc, "the node serves %d control connections already; try again later", CTL_MAX_CLIENTS);
		return;
	}
	cc->accepted_ms = uv_now(cs->loop);
	if (!cs->sweeping && uv_timer_start(&cs->sweep, sweep_cb, CTL_SWEEP_MS, CTL_SWEEP_MS) == 0)
		cs->sweeping = true;
	uv_read_start((uv_stream_t *)&cc->pipe, ctl_alloc_cb, ctl_read_cb);
}

/* The listener could not be set up: the server goes with its handle. */
static void failed_close_cb(uv_handle_t *h)
{
	free(h->data);
}

/* Binds and listens on cs->path. A socket file left by a node that died is
 * removed; a live node keeps it. */
static int ctl_listen(struct ctl_server *cs, char *err, size_t errlen)
{
	struct stat st;
	if (lstat(cs->path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "%s exists and is not a socket; remove it or use --control", cs->path);
			return PN_EEXIST;
		}
		/* Probe: a connect that succeeds means another node is running. */
		struct sockaddr_un sun = {.sun_family = AF_UNIX};
		if (snprintf(sun.sun_path, sizeof sun.sun_path, "%s", cs->path) >= (int)sizeof sun.sun_path) {
			snprintf(err, errlen, "control socket path too long: %s", cs->path);
			return PN_EINVAL;
		}
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		bool live = probe >= 0 && connect(probe, (struct sockaddr *)&sun, sizeof sun) == 0;
		if (probe >= 0)
			close(probe);
		if (live) {
			snprintf(err, errlen, "another node is running with %s; stop it first (peernet stop)", cs->path);
			return PN_EEXIST;
		}
		unlink(cs->path);
	}
	uv_pipe_init(cs->loop, &cs->pipe, 0);
	cs->pipe.data = cs;
	mode_t old = umask(0077);
	int r = uv_pipe_bind(&cs->pipe, cs->path);
	umask(old);
	if (r == 0) {
		cs->bound = true;
		r = uv_listen((uv_stream_t *)&cs->pipe, 16, ctl_connection_cb);
	}
	if (r != 0) {
		snprintf(err, errlen, "cannot create the control socket %s: %s", cs->path, uv_strerror(r));
		if (cs->bound)
			unlink(cs->path);
		uv_close((uv_handle_t *)&cs->pipe, failed_close_cb);
		return PN_EIO;
	}
	chmod(cs->path, 0600);
	cs->listening = true;
	cs->open += 2; /* the listener and the sweep */
	uv_timer_init(cs->loop, &cs->sweep);
	cs->sweep.data = cs;
	return PN_OK;
}

int ctl_server_new(const struct ctl_server_opts *opts, struct ctl_server **out, char *err, size_t errlen)
{
	*out = NULL;
	struct ctl_server *cs = calloc(1, sizeof *cs);
	if (!cs) {
		snprintf(err, errlen, "out of memory");
		return PN_ENOMEM;
	}
	cs->loop = opts->loop;
	cs->store = opts->store;
	cs->ops = opts->ops;
	if (snprintf(cs->path, sizeof cs->path, "%s", opts->path) >= (int)sizeof cs->path) {
		snprintf(err, errlen, "control socket path too long: %s", opts->path);
		free(cs);
		return PN_EINVAL;
	}
	int r = ctl_listen(cs, err, errlen);
	if (r != PN_OK) {
		if (r != PN_EIO)
			free(cs); /* else freed when its handle has closed, from the loop */
		return r;
	}
	*out = cs;
	return PN_OK;
}

void ctl_server_close(struct ctl_server *cs, void (*closed)(void *ud), void *ud)
{
	if (!cs)
		return;
	cs->closed_cb = closed;
	cs->closed_ud = ud;
	cs->closing = true;
	for (struct ctl_client *cc = cs->clients; cc; cc = cc->next)
		if (!cc->handled)
			ctl_finish(cc, "the node is stopping");
	if (cs->listening) {
		uv_close((uv_handle_t *)&cs->pipe, server_handle_closed_cb);
		uv_close((uv_handle_t *)&cs->sweep, server_handle_closed_cb);
		cs->listening = false;
		cs->sweeping = false;
	}
	ctl_maybe_closed(cs); /* nothing was open */
}

void ctl_server_free(struct ctl_server *cs)
{
	if (!cs)
		return;
	if (cs->bound)
		unlink(cs->path);
	free(cs);
}
