/* A node's downloads and their waiters. See node_int.h.
 *
 * One download per content ID, shared by its waiters (struct pn_download: a
 * handle of the API or a control client's get). It starts or joins a
 * download, writes what the engine verified, streams it in order to the
 * waiters that asked (PN_GET_STREAM), delivers the finished object to the
 * path each waiter asked for, and asks discovery again for providers while
 * it runs. It calls nothing of node.c: what must finish from the loop, the
 * caller kicks (node__kick). */
#define PN_NODE_IMPL
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "node/node_int.h"

#define NODE_REFIND_MS 2000       /* ask the directory for more providers this often while downloading */
#define NODE_REFIND_EARLY_MS 300  /* ... and this often during its first NODE_EARLY_MS */
#define NODE_EARLY_MS 3000
#define NODE_REFIND_FLOOD_MS 5000 /* flood mode: re-query this often while no provider is connected */
#define NODE_REFIND_FLOOD_EARLY_MS 1000 /* ... and this often during the first NODE_EARLY_MS */
#define NODE_REFIND_DHT_MS 5000   /* DHT mode: look up again this often while no provider is connected */
#define NODE_REFIND_DHT_EARLY_MS 300 /* ... and this often during the first NODE_EARLY_MS (fellow downloaders announce as they start) */

/* ------------------------------------------------------------ downloads */

struct download *node__download_find(struct pn_node *n, const struct pn_cid *cid)
{
	for (struct download *d = n->downloads; d; d = d->next)
		if (!d->done && !memcmp(&d->cid, cid, sizeof *cid))
			return d;
	return NULL;
}

static void waiter_free(struct pn_download *w)
{
	free(w->path);
	free(w->dir);
	free(w->why);
	free(w);
}

/* Tells the waiter the end and frees it. */
void node__waiter_done(struct pn_download *w, int err, const struct pn_download_result *r, const char *why)
{
	if (w->canceled) {
		err = PN_ECANCELED;
		r = NULL;
		why = "cancelled";
	}
	if (w->ops && w->ops->done)
		w->ops->done(w, err, r, why);
	waiter_free(w);
}

/* Finishes w from the loop (pn_node_get and pn_download_cancel return first):
 * the caller kicks the node (node__kick). */
static void waiter_defer(struct pn_node *n, struct pn_download *w, int err, const char *why)
{
	w->err = err;
	free(w->why);
	w->why = why ? strdup(why) : NULL;
	w->dl = NULL;
	w->next = n->ready;
	n->ready = w;
}

void node__download_free(struct download *d)
{
	struct pn_node *n = d->node;
	struct download **dp = &n->downloads;
	while (*dp && *dp != d)
		dp = &(*dp)->next;
	if (*dp)
		*dp = d->next;
	engine_unwant(n->engine, &d->cid, node_now(n)); /* nothing if it completed */
	if (n->dht && !store_get(n->store, &d->cid))
		dht_node_withdraw(n->dht, &d->cid); /* it announced itself while it held part of it */
	if (d->part)
		store_put_release(n->store, d->part);
	while (d->waiters) {
		struct pn_download *w = d->waiters;
		d->waiters = w->next;
		waiter_free(w);
	}
	free(d);
}

void node__download_fail(struct download *d, int err, const char *fmt, ...)
{
	char msg[512], why[640];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	char id[PN_CID_STR_LEN + 1];
	cid_str(&d->cid, id);
	PN_LOGW(&d->node->log, "download %s failed: %s", id, msg);
	snprintf(why, sizeof why, "%s; the partial download is kept and resumes on the next get", msg);
	d->done = true;
	while (d->waiters) {
		struct pn_download *w = d->waiters;
		d->waiters = w->next;
		w->dl = NULL;
		node__waiter_done(w, err, NULL, why);
	}
	node__download_free(d);
}

/* Hands a PN_GET_STREAM waiter the verified bytes that follow what it had,
 * from the partial download (part) or the finished object (o). */
static void waiter_stream(struct pn_node *n, struct pn_download *w, struct store_partial *part,
			  const struct store_object *o, const struct pn_cid *cid)
{
	if (!(w->flags & PN_GET_STREAM) || !w->ops || w->err || w->canceled)
		return;
	if (w->ops->ready) { /* only say how far: the reader reads the file itself */
		if (o || !part)
			return; /* complete: the done callback names the object */
		uint64_t was = w->streamed;
		while (w->streamed < cid->size &&
		       store_partial_has_chunk(part, (uint32_t)(w->streamed / PN_CHUNK_SIZE))) {
			uint64_t end = (w->streamed / PN_CHUNK_SIZE + 1) * (uint64_t)PN_CHUNK_SIZE;
			w->streamed = end < cid->size ? end : cid->size;
		}
		if (w->streamed > was)
			w->ops->ready(w, store_partial_data_path(part), w->streamed);
		return;
	}
	if (!w->ops->data)
		return;
	if (!n->stream_buf && !(n->stream_buf = malloc(PN_CHUNK_SIZE)))
		return;
	while (w->streamed < cid->size && !w->err && !w->canceled) {
		uint32_t idx = (uint32_t)(w->streamed / PN_CHUNK_SIZE), len = 0;
		int r;
		if (o)
			r = store_read_chunk(n->store, o, idx, n->stream_buf, &len);
		else if (part && store_partial_has_chunk(part, idx))
			r = store_partial_read_chunk(part, idx, n->stream_buf, &len);
		else
			return;
		if (r != PN_OK) {
			PN_LOGE(&n->log, "reading chunk %u to stream it: %s", idx, pn_strerror(r));
			return;
		}
		uint64_t off = w->streamed - (uint64_t)idx * PN_CHUNK_SIZE;
		if (off >= len)
			return;
		w->streamed += len - off;
		w->ops->data(w, w->streamed - (len - off), n->stream_buf + off, len - off);
	}
}

/* Copies the object's file to path (atomically, without replacing an
 * existing file unless force). Returns 0 or an errno-style message in err. */
static int deliver_file(struct pn_node *n, const struct store_object *o, const char *path, bool force, char *err,
			size_t errlen)
{
	char src[NODE_PATH_MAX + 128], id[PN_CID_STR_LEN + 1], tmp[NODE_PATH_MAX + 32];
	cid_str(&o->cid, id);
	snprintf(src, sizeof src, "%s/objects/%s", n->cfg->data_dir, id);
	if (!force && access(path, F_OK) == 0) {
		snprintf(err, errlen, "%s already exists; use --force to overwrite it", path);
		return -1;
	}
	if (snprintf(tmp, sizeof tmp, "%s.pntmp", path) >= (int)sizeof tmp) {
		snprintf(err, errlen, "output path too long");
		return -1;
	}
	int in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0) {
		snprintf(err, errlen, "cannot read %s: %s", src, strerror(errno));
		return -1;
	}
	/* PATH.pntmp is made afresh, never opened through a link planted there. */
	int out = unlink(tmp) == 0 || errno == ENOENT ? open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644)
						     : -1;
	if (out < 0) {
		snprintf(err, errlen, "cannot write %s: %s", path,
			 errno == EEXIST ? "a file appeared at its temporary name (PATH.pntmp) while it was made" : strerror(errno));
		close(in);
		return -1;
	}
	uint64_t left = o->cid.size;
	int rc = 0;
	while (left > 0) {
		ssize_t k = copy_file_range(in, NULL, out, NULL, left > (1u << 30) ? (1u << 30) : left, 0);
		if (k <= 0) {
			/* Fall back to read/write (e.g. across file systems on old kernels). */
			char buf[65536];
			ssize_t got = read(in, buf, sizeof buf);
			if (got <= 0 || write(out, buf, (size_t)got) != got) {
				rc = -1;
				break;
			}
			k = got;
		}
		left -= (uint64_t)k;
	}
	if (rc == 0 && fsync(out) != 0)
		rc = -1;
	int saved = errno;
	close(in);
	close(out);
	if (rc == 0 && rename(tmp, path) != 0) {
		rc = -1;
		saved = errno;
	}
	if (rc != 0) {
		unlink(tmp);
		snprintf(err, errlen, "cannot write %s: %s", path, strerror(saved));
	}
	return rc;
}

/* The content is held (o): stream what the waiter has not had, write its
 * file if it asked for one, and tell it. */
static void waiter_complete(struct pn_node *n, struct pn_download *w, const struct store_object *o, uint64_t down,
			    uint64_t resumed, double secs, unsigned peers)
{
	waiter_stream(n, w, NULL, o, &o->cid);
	char path[NODE_PATH_MAX + PN_NAME_MAX + 2] = "";
	if (w->path || w->dir) {
		char err[8400];
		int len = w->path ? snprintf(path, sizeof path, "%s", w->path)
				  : snprintf(path, sizeof path, "%s/%s", w->dir, o->name);
		if (len >= (int)sizeof path) {
			node__waiter_done(w, PN_EINVAL, NULL, "output path too long (the node keeps the file in its store)");
			return;
		}
		if (deliver_file(n, o, path, w->flags & PN_GET_OVERWRITE, err, sizeof err) != 0) {
			char why[8500];
			snprintf(why, sizeof why, "%s (the node keeps the file in its store)", err);
			node__waiter_done(w, PN_EIO, NULL, why);
			return;
		}
	}
	struct pn_download_result r = {
		.cid = o->cid,
		.name = o->name,
		.path = path,
		.bytes_downloaded = down,
		.bytes_resumed = resumed,
		.seconds = secs,
		.providers = peers,
	};
	node__waiter_done(w, PN_OK, &r, NULL);
}

void node__download_complete(struct download *d)
{
	struct pn_node *n = d->node;
	const struct store_object *o = NULL;
	struct store_partial *part = d->part;
	d->part = NULL;
	int r = store_put_finish(n->store, part, &o);
	if (r != PN_OK) {
		d->part = part;
		node__download_fail(d, r, "cannot complete the download: %s", pn_strerror(r));
		return;
	}
	char id[PN_CID_STR_LEN + 1];
	cid_str(&d->cid, id);
	double secs = (double)(node_now(n) - d->started_ms) / 1000.0;
	uint64_t down = d->cid.size - d->bytes_resumed;
	unsigned peers = d->providers_seen;
	PN_LOGI(&n->log, "downloaded %s  %s: %llu bytes in %.2f s", id, o->name, (unsigned long long)down, secs);
	d->done = true;
	while (d->waiters) {
		struct pn_download *w = d->waiters;
		d->waiters = w->next;
		w->dl = NULL;
		waiter_complete(n, w, o, down, d->bytes_resumed, secs, peers);
	}
	node__download_free(d);
}

/* The hash list is complete and verified: record it, re-verify what a
 * previous run left on disk, and let the engine request chunks. */
void node__download_hashes(struct pn_node *n, struct download *d, const uint8_t *hashes, uint32_t len)
{
	int r = store_partial_has_hashes(d->part) ? PN_OK
		: store_partial_add_hashes(d->part, 0, len / PN_HASH_BYTES, hashes);
	if (r != PN_OK) {
		node__download_fail(d, r, "cannot store the hash list: %s", pn_strerror(r));
		return;
	}
	uint64_t ok = 0;
	r = store_partial_verify_existing(d->part, &ok);
	if (r != PN_OK) {
		node__download_fail(d, r, "cannot read the partial download: %s", pn_strerror(r));
		return;
	}
	d->bytes_resumed = ok;
	engine_hashes_recorded(n->engine, &d->cid, store_partial_bitmap(d->part), node_now(n));
}

void node__write_chunk(struct pn_node *n, const struct peer *p, const struct engine_action *a)
{
	struct download *d = node__download_find(n, &a->cid);
	if (!d || !d->part) {
		engine_chunk_written(n->engine, a->peer, &a->cid, a->index, PN_EINVAL, node_now(n));
		return;
	}
	int r = store_partial_write_chunk(d->part, a->index, a->data, a->len);
	if (r == PN_ECORRUPT)
		PN_LOGW(&n->log, "%s sent chunk %u that does not match its hash: peer dropped and refused",
			p ? p->addr : "a peer", a->index);
	engine_chunk_written(n->engine, a->peer, &a->cid, a->index, r, node_now(n));
	if (r != PN_OK && r != PN_ECORRUPT)
		node__download_fail(d, r, "cannot write the download: %s", pn_strerror(r));
	else if (r == PN_OK)
		for (struct pn_download *w = d->waiters; w; w = w->next)
			waiter_stream(n, w, d->part, NULL, &d->cid);
}

/* ------------------------------------------------------------ a waiter comes, or goes */

int node__count_downloads(const struct pn_node *n)
{
	int count = 0;
	for (const struct download *x = n->downloads; x; x = x->next)
		count++;
	return count;
}

/* Starts or joins the download of cid for a new waiter (path: the file to
 * write, dir: write DIR/NAME, both NULL: none). PN_OK with *out, or an error
 * with one line in why. On PN_OK the caller kicks the node (node__kick): the
 * waiter hears what follows from the loop. */
int node__get(struct pn_node *n, const struct pn_cid *cid, const char *path, const char *dir, unsigned flags,
	      const struct waiter_ops *ops, void *user, struct pn_download **out, char *why, size_t whylen)
{
	*out = NULL;
	struct pn_download *w = calloc(1, sizeof *w);
	if (!w || (path && !(w->path = strdup(path))) || (dir && !(w->dir = strdup(dir)))) {
		if (w)
			waiter_free(w);
		snprintf(why, whylen, "out of memory");
		return PN_ENOMEM;
	}
	w->node = n;
	w->ops = ops;
	w->user = user;
	w->cid = *cid;
	w->flags = flags;
	if (store_get(n->store, cid)) {
		waiter_defer(n, w, PN_OK, NULL);
		*out = w;
		return PN_OK;
	}
	struct download *d = node__download_find(n, cid);
	if (d) {
		w->dl = d;
		w->next = d->waiters;
		d->waiters = w;
		*out = w;
		if (flags & PN_GET_STREAM) /* a reader: the next chunks it needs first */
			engine_set_streaming(n->engine, cid, true);
		return PN_OK; /* the caller kicks the node: what is verified already streams from the loop */
	}
	/* Discovery not up yet (the node is still connecting to its directory or
	 * neighbours, or lost them): the download starts anyway and its look-up
	 * goes out when discovery is back (node__refind); --peer-timeout without a
	 * provider ends it with a line saying what it waited for. */
	int count = node__count_downloads(n), r;
	if (count >= NODE_MAX_DOWNLOADS) {
		waiter_free(w);
		snprintf(why, whylen, "too many downloads at once (%d); try again when one ends", count);
		return PN_ELIMIT;
	}
	d = calloc(1, sizeof *d);
	if (!d) {
		waiter_free(w);
		snprintf(why, whylen, "out of memory");
		return PN_ENOMEM;
	}
	d->node = n;
	d->cid = *cid;
	d->started_ms = node_now(n);
	r = store_put_begin(n->store, cid, NULL, &d->part);
	if (r != PN_OK) {
		free(d);
		waiter_free(w);
		snprintf(why, whylen, "cannot start the download in the store: %s", pn_strerror(r));
		return r;
	}
	const char *stored_name = store_partial_name(d->part);
	if (stored_name && *stored_name) {
		snprintf(d->name, sizeof d->name, "%s", stored_name);
		d->have_meta = true;
	}
	const uint8_t *hashes = NULL, *have = NULL;
	if (store_partial_has_hashes(d->part)) {
		uint64_t ok = 0;
		r = store_partial_verify_existing(d->part, &ok);
		if (r != PN_OK) {
			store_put_release(n->store, d->part);
			free(d);
			waiter_free(w);
			snprintf(why, whylen, "cannot read the partial download: %s", pn_strerror(r));
			return r;
		}
		d->bytes_resumed = ok;
		hashes = store_partial_hash(d->part, 0);
		have = store_partial_bitmap(d->part);
	}
	w->dl = d;
	d->waiters = w;
	d->next = n->downloads;
	n->downloads = d;
	r = engine_want(n->engine, cid, d->have_meta ? d->name : NULL, hashes, have, node_now(n));
	if (r != PN_OK) {
		d->waiters = NULL;
		waiter_free(w);
		d->done = true;
		node__download_free(d);
		snprintf(why, whylen, "cannot start the download: %s", pn_strerror(r));
		return r;
	}
	*out = w;
	if (flags & PN_GET_STREAM)
		engine_set_streaming(n->engine, cid, true);
	if (d->have_meta && n->dir)
		dir_client_offer(n->dir, cid, d->name);
	if (d->have_meta && n->dht)
		(void)dht_node_offer(n->dht, cid, d->name, node_now(n));
	d->finding = true;
	d->last_find_ms = node_now(n);
	d->looked_up = !n->flood && n->dir && dir_client_ready(n->dir);
	r = n->flood ? flood_node_find(n->flood, cid, node_now(n))
	    : n->dht ? dht_node_find(n->dht, cid, node_now(n))
	    : d->looked_up ? dir_client_find(n->dir, cid) : PN_ENOTSUP;
	/* A look-up may have answered at once and ended the download already. */
	if (r != PN_OK && (d = node__download_find(n, cid))) {
		d->finding = false;
		d->last_find_ms = 0; /* ask as soon as discovery is up */
	}
	/* Everything may be on disk already: the engine then says DONE, and the
	 * waiter hears it from the loop, not from inside this call (the caller
	 * kicks the node). */
	return PN_OK;
}

/* Waiters cancelled since the last tick leave their downloads (a download
 * nobody waits for any more stops, its partial kept), and the waiters on the
 * ready list are finished. true: it deferred a cancelled waiter, and the
 * caller kicks the node (node__kick). */
bool node__waiters_run(struct pn_node *n)
{
	bool deferred = false;
	for (struct download *d = n->downloads; d; d = d->next)
		if (d->part) /* what a previous run verified, for a waiter that just came */
			for (struct pn_download *w = d->waiters; w; w = w->next)
				waiter_stream(n, w, d->part, NULL, &d->cid);
	for (struct download *d = n->downloads, *dnext; d; d = dnext) {
		dnext = d->next;
		bool had = d->waiters != NULL;
		for (struct pn_download **wp = &d->waiters; *wp;) {
			struct pn_download *w = *wp;
			if (!w->canceled) {
				wp = &w->next;
				continue;
			}
			*wp = w->next;
			w->dl = NULL;
			waiter_defer(n, w, PN_ECANCELED, "cancelled");
			deferred = true;
		}
		if (had && !d->waiters) {
			char id[PN_CID_STR_LEN + 1];
			cid_str(&d->cid, id);
			PN_LOGI(&n->log, "download %s cancelled; the partial download is kept", id);
			d->done = true;
			node__download_free(d);
		}
	}
	while (n->ready) {
		struct pn_download *w = n->ready;
		n->ready = w->next;
		const struct store_object *o = NULL;
		if (w->err == PN_OK && !w->canceled && (o = store_get(n->store, &w->cid)) != NULL)
			waiter_complete(n, w, o, 0, o->cid.size, 0, 0);
		else
			node__waiter_done(w, w->err ? w->err : PN_ECANCELED, NULL, w->why ? w->why : "cancelled");
	}
	return deferred;
}

/* Progress for everyone waiting on a download. */
void node__report_progress(struct pn_node *n)
{
	for (struct download *d = n->downloads; d; d = d->next) {
		struct engine_download_info info;
		if (!d->part || !engine_download_info(n->engine, &d->cid, &info))
			continue;
		struct pn_progress pr = {.cid = d->cid, .name = d->name, .have = info.bytes_have, .total = d->cid.size,
					 .peers = info.peers, .chunks = info.nchunks, .chunks_have = info.have,
					 .bytes_downloaded = info.bytes_down};
		for (struct pn_download *w = d->waiters; w; w = w->next)
			if (w->ops && w->ops->progress && !w->canceled)
				w->ops->progress(w, &pr);
	}
}

bool node__waiters_want_progress(const struct pn_node *n)
{
	for (const struct download *d = n->downloads; d; d = d->next)
		for (const struct pn_download *w = d->waiters; w; w = w->next)
			if (w->ops && w->ops->progress)
				return true;
	return false;
}

/* ------------------------------------------------------------ more providers */

/* When the discovery of d next wants to ask again (UINT64_MAX: not now). */
uint64_t node__download_refind_at(struct pn_node *n, const struct download *d)
{
	if (d->finding)
		return UINT64_MAX;
	uint64_t period;
	if (n->flood)
		period = node_now(n) - d->started_ms < NODE_EARLY_MS ? NODE_REFIND_FLOOD_EARLY_MS : NODE_REFIND_FLOOD_MS;
	else if (n->dht && dht_node_ready(n->dht))
		period = node_now(n) - d->started_ms < NODE_EARLY_MS ? NODE_REFIND_DHT_EARLY_MS : NODE_REFIND_DHT_MS;
	else if (n->dir && dir_client_ready(n->dir))
		period = node_now(n) - d->started_ms < NODE_EARLY_MS ? NODE_REFIND_EARLY_MS : NODE_REFIND_MS;
	else
		return UINT64_MAX;
	return d->last_find_ms + period + 1;
}

/* Sends a directory look-up for d now. */
static void dir_find_now(struct pn_node *n, struct download *d, uint64_t now)
{
	struct pn_cid cid = d->cid;
	d->last_find_ms = now;
	d->finding = true;
	d->looked_up = true;
	if (dir_client_find(n->dir, &cid) != PN_OK && (d = node__download_find(n, &cid)))
		d->finding = false;
}

/* Our offer of d has just gone to the directory: ask it at once, not at the
 * next period. The answer holds the downloaders that offered before us and
 * we dial them now; those that offer after us find and dial us the same way.
 * At the next period each pair is then already connected, where otherwise
 * both of a pair, started together, learnt of each other at the same re-ask
 * and dialled each other (two TLS handshakes, one connection kept). */
void node__find_after_offer(struct pn_node *n, struct download *d)
{
	if (n->flood || n->dht || !n->dir || d->finding || !dir_client_ready(n->dir))
		return;
	if (pn_log_enabled(&n->log, PN_LOG_DEBUG)) {
		char id[PN_CID_STR_LEN + 1];
		pn_cid_format(&d->cid, id);
		PN_LOGD(&n->log, "%s offered: asking the directory for the providers that offered before us", id);
	}
	dir_find_now(n, d, node_now(n));
}

/* Asks discovery again for the providers of downloads that need more. A
 * look-up's answer may end a download, so each is looked up afresh. */
void node__refind(struct pn_node *n, uint64_t now)
{
	struct pn_cid due[NODE_MAX_DOWNLOADS];
	size_t ndue = 0;
	for (struct download *d = n->downloads; d && ndue < NODE_MAX_DOWNLOADS; d = d->next)
		if (!d->finding)
			due[ndue++] = d->cid;
	for (size_t i = 0; i < ndue; i++) {
		struct download *d = node__download_find(n, &due[i]);
		if (!d || d->finding)
			continue;
		bool early = now - d->started_ms < NODE_EARLY_MS;
		if (n->flood) {
			/* Flooding is costly: ask again only while no provider is connected;
			 * early on, now and then: fellow downloaders answer once they hold chunks. */
			if (now - d->last_find_ms > (early ? NODE_REFIND_FLOOD_EARLY_MS : NODE_REFIND_FLOOD_MS) &&
			    (early || !engine_download_has_providers(n->engine, &d->cid))) {
				d->finding = true;
				int r = flood_node_find(n->flood, &due[i], now);
				if ((d = node__download_find(n, &due[i]))) {
					if (r == PN_OK)
						d->last_find_ms = now;
					else
						d->finding = false;
				}
			}
		} else if (n->dht) {
			/* As flooding: again while no provider is connected, and early on. */
			if (dht_node_ready(n->dht) &&
			    now - d->last_find_ms > (early ? NODE_REFIND_DHT_EARLY_MS : NODE_REFIND_DHT_MS) &&
			    (early || !engine_download_has_providers(n->engine, &d->cid))) {
				d->finding = true;
				int r = dht_node_find(n->dht, &due[i], now);
				if ((d = node__download_find(n, &due[i]))) {
					if (r == PN_OK)
						d->last_find_ms = now;
					else
						d->finding = false;
				}
			}
		} else if (n->dir && now - d->last_find_ms > (early ? NODE_REFIND_EARLY_MS : NODE_REFIND_MS) &&
			   dir_client_ready(n->dir)) {
			/* Early in a download ask often: fellow downloaders register as they start. */
			dir_find_now(n, d, now);
		}
	}
}
