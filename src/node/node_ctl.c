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
#include "node/node_int.h"
#include "util/log.h"

#define CTL_MAX_CLIENTS 64
#define CTL_MAX_FIELDS 64

static void ctl_closed_cb(uv_handle_t *h)
{
	struct ctl_client *cc = h->data;
	struct node *n = cc->node;
	struct ctl_client **pp = &n->ctl_clients;
	while (*pp && *pp != cc)
		pp = &(*pp)->next;
	if (*pp)
		*pp = cc->next;
	ctl_client_gone(n, cc);
	free(cc);
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

void ctl_reply(struct ctl_client *cc, const char *fmt, ...)
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

void ctl_client_gone(struct node *n, struct ctl_client *cc)
{
	flood_ctl_gone(n, cc);
	for (struct download *d = n->downloads; d; d = d->next)
		for (struct ctl_waiter *w = d->waiters; w; w = w->next)
			if (w->client == cc)
				w->client = NULL; /* the download goes on in the background */
}

static struct ctl_client *search_client(struct node *n, uint32_t req_id)
{
	for (struct ctl_client *cc = n->ctl_clients; cc; cc = cc->next)
		if (cc->search_req == req_id && !cc->handled)
			return cc;
	return NULL;
}

void ctl_search_results(struct node *n, const struct pn_msg_dir_results *m)
{
	struct ctl_client *cc = search_client(n, m->req_id);
	if (!cc)
		return;
	size_t off = 0;
	struct pn_dir_result_entry e;
	while (pn_dir_result_next(m, &off, &e) == PN_OK) {
		char id[PN_CID_STR_LEN + 1];
		pn_cid_format(&e.cid, id);
		ctl_reply(cc, "result\t%s\t%u\t%llu\t%.*s\n", id, e.providers, (unsigned long long)e.cid.size,
			  (int)e.name_len, e.name);
	}
	ctl_finish(cc, NULL);
}

void ctl_search_failed(struct node *n, uint32_t req_id, const char *why)
{
	struct ctl_client *cc = search_client(n, req_id);
	if (cc)
		ctl_finish(cc, "search failed: %s", why);
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

static void do_status(struct node *n, struct ctl_client *cc)
{
	char idhex[PN_NODE_ID_STR_LEN + 1], q[600];
	pn_node_id_format(n->id.node_id, idhex);
	const char *mode = n->opts.discovery == PN_DISCOVERY_DIRECTORY ? "directory"
			   : n->opts.discovery == PN_DISCOVERY_FLOOD ? "flood" : "dht";
	size_t cap = 256 * 1024, len = 0;
	char *js = malloc(cap);
	if (!js) {
		ctl_finish(cc, "out of memory");
		return;
	}
	struct node_peer_status *peers = calloc(NODE_MAX_PEERS, sizeof *peers);
	struct node_transfer_status *xfers = calloc(NODE_MAX_DOWNLOADS, sizeof *xfers);
	if (!peers || !xfers) {
		free(js);
		free(peers);
		free(xfers);
		ctl_finish(cc, "out of memory");
		return;
	}
	size_t npeers = node_peers_snapshot(n, peers, NODE_MAX_PEERS);
	size_t nxfers = node_transfers_snapshot(n, xfers, NODE_MAX_DOWNLOADS);
	uint64_t bytes_up, bytes_down;
	node_totals(n, &bytes_up, &bytes_down);
#define J(...) do { if (len < cap) len += (size_t)snprintf(js + len, cap - len, __VA_ARGS__); } while (0)
	/* The address actually bound: the --listen host with the port the system chose. */
	char bound[PN_ADDR_STR_MAX + 8];
	snprintf(bound, sizeof bound, "%s", n->opts.listen);
	char *colon = strrchr(bound, ':');
	if (colon)
		snprintf(colon, sizeof bound - (size_t)(colon - bound), ":%u", n->port);
	json_str(q, sizeof q, bound);
	J("{\"node_id\":\"%s\",\"listen\":%s,\"port\":%u,\"discovery\":\"%s\"", idhex, q, n->port, mode);
	if (n->opts.directory) {
		json_str(q, sizeof q, n->opts.directory);
		J(",\"directory\":{\"address\":%s,\"connected\":%s}", q, dir_client_ready(n) ? "true" : "false");
	}
	if (n->flood) {
		const struct flood_stats *fs = flood_get_stats(n->flood);
		J(",\"flood\":{\"neighbors\":%zu,\"queries_started\":%llu,\"queries_sent\":%llu,\"queries_received\":%llu,"
		  "\"duplicates_dropped\":%llu,\"rate_limited\":%llu,\"hits_sent\":%llu,\"hits_received\":%llu}",
		  flood_neighbor_count(n->flood), (unsigned long long)fs->queries_started,
		  (unsigned long long)fs->queries_sent, (unsigned long long)fs->queries_received,
		  (unsigned long long)fs->duplicates_dropped, (unsigned long long)fs->rate_limited,
		  (unsigned long long)fs->hits_sent, (unsigned long long)fs->hits_received);
	}
	J(",\"peers\":[");
	int np = (int)npeers;
	for (size_t i = 0; i < npeers; i++) {
		const struct node_peer_status *p = &peers[i];
		char pid[PN_NODE_ID_STR_LEN + 1];
		pn_node_id_format(p->id, pid);
		json_str(q, sizeof q, p->addr);
		J("%s{\"id\":\"%s\",\"address\":%s,\"direction\":\"%s\",\"neighbor\":%s,\"seed_server\":%s,"
		  "\"choking_us\":%s,\"we_choke\":%s,\"bytes_to\":%llu,\"bytes_from\":%llu}",
		  i ? "," : "", pid, q, p->outgoing ? "out" : "in", p->neighbor ? "true" : "false",
		  p->seed_server ? "true" : "false", p->e.peer_choking ? "true" : "false",
		  p->e.am_choking ? "true" : "false", (unsigned long long)p->e.bytes_to, (unsigned long long)p->e.bytes_from);
	}
	J("],\"shares\":[");
	size_t ns = store_count(n->store);
	for (size_t i = 0; i < ns && len < cap - 1024; i++) {
		const struct store_object *o = store_at(n->store, i);
		char id[PN_CID_STR_LEN + 1];
		pn_cid_format(&o->cid, id);
		json_str(q, sizeof q, o->name);
		J("%s{\"id\":\"%s\",\"name\":%s,\"size\":%llu}", i ? "," : "", id, q, (unsigned long long)o->cid.size);
	}
	J("],\"transfers\":[");
	int nt = (int)nxfers;
	for (size_t i = 0; i < nxfers; i++) {
		const struct node_transfer_status *d = &xfers[i];
		char id[PN_CID_STR_LEN + 1];
		pn_cid_format(&d->cid, id);
		json_str(q, sizeof q, d->name);
		J("%s{\"id\":\"%s\",\"name\":%s,\"size\":%llu,\"chunks\":%u,\"chunks_have\":%u,\"bytes_downloaded\":%llu}",
		  i ? "," : "", id, q, (unsigned long long)d->cid.size, d->chunks, d->have, (unsigned long long)d->bytes_down);
	}
	uint64_t wire_up, wire_down;
	pn_net_bytes(n->net, &wire_up, &wire_down);
	J("],\"totals\":{\"bytes_uploaded\":%llu,\"bytes_downloaded\":%llu,\"wire_bytes_sent\":%llu,"
	  "\"wire_bytes_received\":%llu,\"lookups\":%llu,\"lookup_messages\":%llu}}",
	  (unsigned long long)bytes_up, (unsigned long long)bytes_down,
	  (unsigned long long)wire_up, (unsigned long long)wire_down, (unsigned long long)n->lookups,
	  (unsigned long long)n->lookup_msgs);
#undef J
	if (len >= cap) {
		free(js);
		free(peers);
		free(xfers);
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
	if (n->opts.directory)
		ctl_reply(cc, "text\tdirectory  %s, %s\n", n->opts.directory,
			  dir_client_ready(n) ? "registered" : "unreachable, retrying");
	if (n->flood) {
		const struct flood_stats *fs = flood_get_stats(n->flood);
		ctl_reply(cc, "text\tflood      %zu neighbours, %llu queries sent, %llu received, %llu duplicates dropped\n",
			  flood_neighbor_count(n->flood), (unsigned long long)fs->queries_sent,
			  (unsigned long long)fs->queries_received, (unsigned long long)fs->duplicates_dropped);
	}
	ctl_reply(cc, "text\tpeers      %d\n", np);
	for (size_t i = 0; i < npeers; i++) {
		const struct node_peer_status *p = &peers[i];
		char pid[PN_NODE_ID_STR_LEN + 1];
		pn_node_id_format(p->id, pid);
		ctl_reply(cc, "text\t  %.16s  %-22s %s  sent %llu  received %llu%s%s\n", pid, p->addr,
			  p->outgoing ? "out" : "in ", (unsigned long long)p->e.bytes_to, (unsigned long long)p->e.bytes_from,
			  p->e.am_choking ? "" : "  (unchoked)", p->seed_server ? "  (seed server)" : "");
	}
	ctl_reply(cc, "text\tshares     %zu\n", ns);
	for (size_t i = 0; i < ns; i++) {
		const struct store_object *o = store_at(n->store, i);
		char id[PN_CID_STR_LEN + 1];
		pn_cid_format(&o->cid, id);
		ctl_reply(cc, "text\t  %s  %llu  %s\n", id, (unsigned long long)o->cid.size, o->name);
	}
	ctl_reply(cc, "text\ttransfers  %d\n", nt);
	for (size_t i = 0; i < nxfers; i++) {
		const struct node_transfer_status *d = &xfers[i];
		char id[PN_CID_STR_LEN + 1];
		pn_cid_format(&d->cid, id);
		ctl_reply(cc, "text\t  %s  %u/%u chunks  %s\n", id, d->have, d->chunks, d->name);
	}
	ctl_reply(cc, "text\ttotals     uploaded %llu bytes, downloaded %llu bytes, %llu look-ups\n",
		  (unsigned long long)bytes_up, (unsigned long long)bytes_down,
		  (unsigned long long)n->lookups);
	free(peers);
	free(xfers);
	ctl_finish(cc, NULL);
}

static void do_add(struct node *n, struct ctl_client *cc, char **f, int nf)
{
	if (nf < 2) {
		ctl_finish(cc, "add: no file given");
		return;
	}
	for (int i = 1; i < nf; i++) {
		const struct store_object *o = NULL;
		int r = store_add_local(n->store, f[i], NULL, &o);
		if (r != PN_OK && r != PN_EEXIST) {
			ctl_finish(cc, "cannot share %s: %s", f[i],
				   r == PN_EIO && errno ? strerror(errno) : r == PN_EINVAL ? "not a regular file, or its name is not valid on the network" : pn_strerror(r));
			return;
		}
		char id[PN_CID_STR_LEN + 1];
		pn_cid_format(&o->cid, id);
		ctl_reply(cc, "file\t%s\t%s\t%llu\n", id, o->name, (unsigned long long)o->cid.size);
		dir_client_offer(n, &o->cid, o->name);
		pn_log_info("sharing %s  %s", id, o->name);
	}
	ctl_finish(cc, NULL);
}

static void do_search(struct node *n, struct ctl_client *cc, char **f, int nf)
{
	if (nf < 2 || !*f[1]) {
		ctl_finish(cc, "search: no words given");
		return;
	}
	if (n->flood) {
		int fr = flood_search(n, cc, f[1]);
		if (fr == PN_EINVAL)
			ctl_finish(cc, "search: the query must be 1 to %d bytes", PN_QUERY_DATA_MAX);
		else if (fr == PN_ECLOSED)
			ctl_finish(cc, "not connected to any peer (the bootstrap peers are unreachable); the node keeps retrying");
		else if (fr != PN_OK)
			ctl_finish(cc, "search failed: %s", pn_strerror(fr));
		return;
	}
	int r = dir_client_search(n, f[1], &cc->search_req);
	if (r == PN_EINVAL)
		ctl_finish(cc, "search: the query must be 1 to %d bytes", PN_DIR_QUERY_MAX);
	else if (r != PN_OK)
		ctl_finish(cc, "the directory at %s is unreachable (%s)", n->opts.directory ? n->opts.directory : "(none)",
			   n->dir_last_error[0] ? n->dir_last_error : "not connected");
}

static void do_get(struct node *n, struct ctl_client *cc, char **f, int nf)
{
	if (nf != 5) {
		ctl_finish(cc, "get: expected ID OUT CWD FORCE");
		return;
	}
	struct pn_cid cid;
	if (pn_cid_parse(f[1], &cid) != PN_OK) {
		ctl_finish(cc, "'%s' is not a content ID", f[1]);
		return;
	}
	bool to_stdout = !strcmp(f[2], "-");
	bool force = !strcmp(f[4], "1");
	char out[4096];
	out[0] = 0;
	if (!to_stdout && *f[2]) {
		snprintf(out, sizeof out, "%s%s%s", f[2][0] == '/' ? "" : f[3], f[2][0] == '/' ? "" : "/", f[2]);
		if (!force && access(out, F_OK) == 0) {
			ctl_finish(cc, "%s already exists; use --force to overwrite it", out);
			return;
		}
	}
	/* Without -o the file gets the content's own name in CWD, once that name is known. */
	int r = node_start_get(n, cc, &cid, out, f[3], to_stdout, force);
	if (r != PN_OK)
		ctl_finish(cc, "cannot start the download: %s", pn_strerror(r));
}

static void handle_line(struct ctl_client *cc, char *line)
{
	struct node *n = cc->node;
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
		do_add(n, cc, fields, nf);
	else if (!strcmp(fields[0], "search"))
		do_search(n, cc, fields, nf);
	else if (!strcmp(fields[0], "get"))
		do_get(n, cc, fields, nf);
	else if (!strcmp(fields[0], "status"))
		do_status(n, cc);
	else if (!strcmp(fields[0], "stop")) {
		ctl_finish(cc, NULL);
		node_stop(n);
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
	handle_line(cc, cc->buf);
}

static void ctl_connection_cb(uv_stream_t *server, int status)
{
	struct node *n = server->data;
	if (status < 0 || n->stopping)
		return;
	struct ctl_client *cc = calloc(1, sizeof *cc);
	if (!cc)
		return;
	cc->node = n;
	uv_pipe_init(n->loop, &cc->pipe, 0);
	cc->pipe.data = cc;
	cc->next = n->ctl_clients;
	n->ctl_clients = cc;
	int count = 0;
	for (struct ctl_client *x = n->ctl_clients; x; x = x->next)
		count++;
	if (uv_accept(server, (uv_stream_t *)&cc->pipe) != 0 || count > CTL_MAX_CLIENTS) {
		ctl_close(cc);
		return;
	}
	uv_read_start((uv_stream_t *)&cc->pipe, ctl_alloc_cb, ctl_read_cb);
}

int ctl_listen(struct node *n)
{
	if (n->opts.control_path)
		snprintf(n->control_path, sizeof n->control_path, "%s", n->opts.control_path);
	else
		snprintf(n->control_path, sizeof n->control_path, "%s/%s", n->opts.data_dir, PN_CONTROL_SOCKET);
	/* A socket file left by a node that died is removed; a live node keeps it. */
	uv_pipe_init(n->loop, &n->ctl_server, 0);
	n->ctl_server.data = n;
	struct stat st;
	if (lstat(n->control_path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			fprintf(stderr, "peernet node: %s exists and is not a socket; remove it or use --control\n",
				n->control_path);
			return PN_EEXIST;
		}
		/* Probe: a connect that succeeds means another node is running. */
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct sockaddr_un sun = {.sun_family = AF_UNIX};
		if (snprintf(sun.sun_path, sizeof sun.sun_path, "%s", n->control_path) >= (int)sizeof sun.sun_path) {
			fprintf(stderr, "peernet node: control socket path too long: %s\n", n->control_path);
			if (probe >= 0)
				close(probe);
			return PN_EINVAL;
		}
		bool live = probe >= 0 && connect(probe, (struct sockaddr *)&sun, sizeof sun) == 0;
		if (probe >= 0)
			close(probe);
		if (live) {
			fprintf(stderr, "peernet node: another node is running with %s; stop it first (peernet stop)\n",
				n->control_path);
			return PN_EEXIST;
		}
		unlink(n->control_path);
	}
	mode_t old = umask(0077);
	int r = uv_pipe_bind(&n->ctl_server, n->control_path);
	umask(old);
	if (r == 0)
		r = uv_listen((uv_stream_t *)&n->ctl_server, 16, ctl_connection_cb);
	if (r != 0) {
		fprintf(stderr, "peernet node: cannot create the control socket %s: %s\n", n->control_path, uv_strerror(r));
		uv_close((uv_handle_t *)&n->ctl_server, NULL);
		return PN_EIO;
	}
	chmod(n->control_path, 0600);
	n->ctl_listening = true;
	return PN_OK;
}

void ctl_close_all(struct node *n)
{
	for (struct ctl_client *cc = n->ctl_clients; cc; cc = cc->next)
		if (!cc->handled)
			ctl_finish(cc, "the node is stopping");
	if (n->ctl_listening) {
		uv_close((uv_handle_t *)&n->ctl_server, NULL);
		n->ctl_listening = false;
	}
}
