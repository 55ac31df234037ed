/* Client side of the client-server model. See client.h. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>
#include "node/client.h"
#include "crypto/crypto.h"
#include "net/net.h"
#include "proto/engine.h"
#include "store/store.h"
#include "util/log.h"
#include "wire/wire.h"

#define DEFAULT_WINDOW ENGINE_DEFAULT_INFLIGHT_SERVER /* 16 MiB in flight: 16 gave 0.55x nginx on loopback, 64 gave 0.62x */
#define MAX_WINDOW ENGINE_UPQ_MAX_SERVER
#define PEER_KEY 1                    /* the engine's name for the one connection */
#define DEFAULT_TIMEOUT_MS 30000
#define PROGRESS_INTERVAL_MS 200
#define RETRY_FIRST_MS 250   /* get: a dropped connection is dialled again after this, */
#define RETRY_MAX_MS 5000    /* doubling up to this, until --timeout passes without a chunk */
/* Chunks being verified and written on libuv's thread pool at once (a
 * buffer each, PN_CHUNK_SIZE, allocated on first use and reused): 4 MiB.
 * When all are busy the connection stops being read until one is free. */
#ifndef WRITE_POOL
#define WRITE_POOL 16 /* -DWRITE_POOL=1 in a test build exercises the pause */
#endif

struct session;

/* One chunk on its way to disk: copied out of the frame on the loop, hashed
 * and written on a pool thread, recorded back on the loop. */
struct chunk_job {
	uv_work_t work;
	struct session *s;
	struct store_partial *part;   /* only store_partial_pwrite_chunk() is used off the loop */
	uint8_t *buf;                 /* PN_CHUNK_SIZE; owned by the session, freed in session_end */
	uint8_t hash[PN_HASH_BYTES];  /* expected */
	struct pn_cid cid;
	uint32_t peer, index, len;
	int result;                   /* set by the pool thread */
	bool busy;
};

enum op { OP_GET, OP_PUT, OP_LS };

struct session {
	uv_loop_t loop;
	struct pn_identity id;
	struct pn_net *net;
	struct pn_conn *conn;
	const struct pn_client_opts *opts;
	enum op op;
	int result;          /* PN_EAGAIN while running */
	uint32_t next_req;
	uint8_t *out;        /* scratch for one frame */
	size_t out_cap;
	uv_timer_t progress_timer;
	bool progress_on;
	struct engine *engine;   /* get: the transfer, as a node downloading from one provider */
	uv_timer_t engine_timer;
	bool engine_timer_on;
	uv_timer_t retry_timer;  /* get: dials the server again after a drop */
	bool retry_timer_on;
	bool was_connected;      /* get: a connection got as far as the HELLO exchange */
	uint32_t retry_ms;       /* the next wait before dialling again */
	int last_err;            /* why the connection went, while reconnecting */
	uint32_t reconnects;
	char *err;               /* the caller's buffer for the one-line error */
	char hint[PATH_MAX + 128];
	const char *prog_label;  /* progress of the transfer running: what, how far */
	uint64_t prog_done, prog_total;
	uint64_t t0;

	/* get */
	struct pn_cid cid;
	const char *out_arg;
	bool overwrite;
	bool to_stdout;
	struct store_partial *part;
	char data_path[PATH_MAX + 16], state_path[PATH_MAX + 32];
	struct pn_get_result *res;
	uint32_t nchunks;
	uint32_t window;
	uint32_t stdout_next;    /* next chunk to copy to stdout */
	struct chunk_job jobs[WRITE_POOL];
	unsigned jobs_busy;
	bool read_paused;        /* frame_cb said PN_EAGAIN for want of a free job */

	/* put */
	char *const *paths;
	int npaths, cur;
	int put_fd;
	uint8_t *put_hashes;
	struct pn_put_result put_res;
	uint32_t put_req;
	uint8_t *put_bitmap;     /* server's bitmap, copied */
	uint32_t put_next;       /* next chunk to consider sending */
	bool put_sending;
	pn_put_done_cb put_cb;
	void *put_ud;

	/* ls */
	pn_ls_entry_cb ls_cb;
	void *ls_ud;
};

static void set_err(struct session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(struct session *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->err, PN_CLIENT_ERROR_MAX, fmt, ap);
	va_end(ap);
}

static void stop_progress(struct session *s, bool done);

static void finish(struct session *s, int result)
{
	if (s->result != PN_EAGAIN)
		return;
	s->result = result;
	if (s->engine_timer_on) {
		uv_timer_stop(&s->engine_timer);
		uv_close((uv_handle_t *)&s->engine_timer, NULL);
		s->engine_timer_on = false;
	}
	if (s->retry_timer_on) {
		uv_timer_stop(&s->retry_timer);
		uv_close((uv_handle_t *)&s->retry_timer, NULL);
		s->retry_timer_on = false;
	}
	stop_progress(s, result == PN_OK);
	if (s->conn)
		pn_conn_close(s->conn, 0);
	pn_net_close(s->net);
}

static void fail(struct session *s, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(struct session *s, int err, const char *fmt, ...)
{
	if (s->result != PN_EAGAIN)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->err, PN_CLIENT_ERROR_MAX, fmt, ap);
	va_end(ap);
	finish(s, err);
}

/* Fails with the message already in s->err. */
static void fail_keep(struct session *s, int err)
{
	if (s->result != PN_EAGAIN)
		return;
	finish(s, err);
}

static int send_msg(struct session *s, const struct pn_msg *m)
{
	return pn_conn_send_msg(s->conn, m);
}

static const char *partial_hint(struct session *s)
{
	if (s->op == OP_GET && s->part && !s->to_stdout && store_partial_have_count(s->part) > 0)
		snprintf(s->hint, sizeof s->hint, "; partial download kept in %s, run the same command again to resume",
			 s->data_path);
	else
		s->hint[0] = 0;
	return s->hint;
}

static void report(struct session *s, enum pn_progress_event ev)
{
	s->opts->progress(s->opts->progress_ud, ev, s->prog_label, s->prog_done, s->prog_total, uv_now(&s->loop));
}

static void progress_cb(uv_timer_t *t)
{
	report(t->data, PN_PROGRESS_UPDATE);
}

static void start_progress(struct session *s, const char *label, uint64_t total, uint64_t done)
{
	if (!s->opts->progress || s->progress_on)
		return;
	s->prog_label = label;
	s->prog_total = total;
	s->prog_done = done;
	report(s, PN_PROGRESS_START);
	uv_timer_init(&s->loop, &s->progress_timer);
	s->progress_timer.data = s;
	uv_timer_start(&s->progress_timer, progress_cb, 0, PROGRESS_INTERVAL_MS);
	s->progress_on = true;
}

static void stop_progress(struct session *s, bool done)
{
	if (!s->progress_on)
		return;
	uv_timer_stop(&s->progress_timer);
	uv_close((uv_handle_t *)&s->progress_timer, NULL);
	s->progress_on = false;
	report(s, done ? PN_PROGRESS_DONE : PN_PROGRESS_ABORT);
}

/* ---------------------------------------------------------------- get */

/* Copies every newly contiguous verified chunk to stdout. */
static int get_stream_stdout(struct session *s)
{
	uint8_t *buf = s->out;
	while (s->stdout_next < s->nchunks && store_partial_has_chunk(s->part, s->stdout_next)) {
		uint32_t len;
		int r = store_partial_read_chunk(s->part, s->stdout_next, buf, &len);
		if (r != PN_OK)
			return r;
		size_t off = 0;
		while (off < len) {
			ssize_t w = write(STDOUT_FILENO, buf + off, len - off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				set_err(s, "writing to standard output: %s", strerror(errno));
				return PN_EIO;
			}
			off += (size_t)w;
		}
		s->stdout_next++;
	}
	return PN_OK;
}

static void get_complete(struct session *s)
{
	struct pn_get_result *res = s->res;
	if (s->to_stdout) {
		store_partial_discard(s->part);
		s->part = NULL;
	} else {
		int r = store_partial_complete(s->part, s->res->path, s->overwrite);
		if (r == PN_EEXIST) {
			fail(s, r, "%s already exists; use --force to overwrite it (download kept in %s)", res->path,
			     s->data_path);
			return;
		}
		if (r != PN_OK) {
			fail(s, r, "cannot complete %s: %s%s", res->path, pn_strerror(r), partial_hint(s));
			return;
		}
		s->part = NULL;
	}
	res->seconds = (double)(uv_hrtime() - s->t0) / 1e9;
	finish(s, PN_OK);
}

/* Opens the partial download for s->res->path (which must be set). */
static int get_open_partial(struct session *s, const char *name)
{
	if (s->to_stdout) {
		const char *tmp = getenv("TMPDIR");
		char id[PN_CID_STR_LEN + 1];
		pn_cid_format(&s->cid, id);
		snprintf(s->data_path, sizeof s->data_path, "%s/peernet-%s.%d.part", tmp ? tmp : "/tmp", id,
			 (int)getpid());
	} else {
		snprintf(s->data_path, sizeof s->data_path, "%s.pnpart", s->res->path);
	}
	snprintf(s->state_path, sizeof s->state_path, "%s.state", s->data_path);
	if (!s->to_stdout && !s->overwrite && access(s->res->path, F_OK) == 0) {
		set_err(s, "%s already exists; use --force to overwrite it", s->res->path);
		return PN_EEXIST;
	}
	int r = store_partial_open_log(s->data_path, s->state_path, &s->cid, name, s->opts->log, &s->part);
	if (r != PN_OK) {
		if (r == PN_ELINK)
			set_err(s, "refusing to write %s (or its .state): %s", s->data_path, pn_strerror(r));
		else
			set_err(s, "cannot write %s: %s", s->data_path,
				r == PN_EIO && errno ? strerror(errno) : pn_strerror(r));
		return r;
	}
	return PN_OK;
}

static void engine_pump(struct session *s);

/* The name is known: without -o the file is saved under it, in the current
 * directory (the decoder checked it: no '/', not "." or ".."). */
static void get_on_name(struct session *s, const char *name)
{
	snprintf(s->res->name, sizeof s->res->name, "%s", name);
	if (s->part)
		return;
	snprintf(s->res->path, sizeof s->res->path, "%s", s->res->name);
	int r = get_open_partial(s, s->res->name);
	if (r != PN_OK)
		fail_keep(s, r);
}

/* The hash list is verified: record it, re-verify what an earlier run left,
 * and let the engine ask for the chunks still missing. */
static void get_on_hashes(struct session *s, const uint8_t *hashes, uint32_t len)
{
	if (!s->part) {
		fail(s, PN_EPROTO, "server %s sent no name for the content", s->opts->server);
		return;
	}
	int r = store_partial_has_hashes(s->part) ? PN_OK
		: store_partial_add_hashes(s->part, 0, len / PN_HASH_BYTES, hashes);
	if (r != PN_OK) {
		fail(s, r, "cannot store the hash list in %s: %s", s->state_path, pn_strerror(r));
		return;
	}
	uint64_t ok = 0;
	r = store_partial_verify_existing(s->part, &ok);
	if (r != PN_OK) {
		fail(s, r, "cannot read the partial download %s: %s", s->data_path, pn_strerror(r));
		return;
	}
	s->res->bytes_resumed = ok;
	start_progress(s, s->res->name, s->cid.size, ok);
	if (s->to_stdout && (r = get_stream_stdout(s)) != PN_OK) {
		fail_keep(s, r);
		return;
	}
	engine_hashes_recorded(s->engine, &s->cid, store_partial_bitmap(s->part), uv_now(&s->loop));
}

/* What a WRITE_CHUNK came to (r: PN_OK once the chunk is verified, written
 * and recorded): tells the engine, and fails the get on an error. */
static void get_written(struct session *s, uint32_t peer, const struct pn_cid *cid, uint32_t index, uint32_t len,
			int r)
{
	engine_chunk_written(s->engine, peer, cid, index, r, uv_now(&s->loop));
	if (r == PN_ECORRUPT) {
		if (s->conn) /* the close is caused by the peer's data: say why (docs/PROTOCOL.md) */
			(void)pn_conn_send_error(s->conn, 0, PN_WERR_CORRUPT, "a chunk does not match its hash");
		fail(s, r, "server sent chunk %u that does not match its hash; it was not written%s", index,
		     partial_hint(s));
		return;
	}
	if (r != PN_OK) {
		fail(s, r, "cannot write %s: %s%s", s->data_path, pn_strerror(r), partial_hint(s));
		return;
	}
	s->res->bytes_downloaded += len;
	s->prog_done += len;
	if (s->to_stdout && (r = get_stream_stdout(s)) != PN_OK)
		fail_keep(s, r);
}

/* A free job with its buffer, or NULL when all WRITE_POOL are busy (or a
 * buffer cannot be had). */
static struct chunk_job *job_free(struct session *s)
{
	for (unsigned i = 0; i < WRITE_POOL; i++) {
		struct chunk_job *job = &s->jobs[i];
		if (job->busy)
			continue;
		if (!job->buf && !(job->buf = malloc(PN_CHUNK_SIZE)))
			return NULL;
		return job;
	}
	return NULL;
}

/* On a pool thread: the hash check and the write, nothing that the loop
 * thread touches (the partial only through store_partial_pwrite_chunk). */
static void job_work_cb(uv_work_t *w)
{
	struct chunk_job *job = w->data;
	job->result = store_chunk_check(job->hash, job->buf, job->len);
	if (job->result == PN_OK)
		job->result = store_partial_pwrite_chunk(job->part, job->index, job->buf, job->len);
}

/* Back on the loop: record the chunk (its data is written: the bit may
 * follow), free the job, tell the engine, and read again if we had paused. */
static void job_done_cb(uv_work_t *w, int status)
{
	struct chunk_job *job = w->data;
	struct session *s = job->s;
	int r = status == 0 ? job->result : PN_EIO;
	/* The partial outlives every job: session_end closes it after the loop ran dry. */
	if (r == PN_OK)
		r = store_partial_mark_verified(job->part, job->index);
	job->busy = false;
	s->jobs_busy--;
	if (s->result != PN_EAGAIN)
		return; /* failed meanwhile: the chunk is kept for a resume, nothing more is asked */
	get_written(s, job->peer, &job->cid, job->index, job->len, r);
	engine_pump(s);
	if (s->read_paused && s->conn && s->result == PN_EAGAIN) {
		s->read_paused = false;
		pn_conn_resume(s->conn); /* hands the frame that found no free job */
	}
}

/* WRITE_CHUNK: the data points into the frame being handled, so it is copied
 * into a free job and hashed and written off the loop; the result comes back
 * to job_done_cb. frame_cb keeps a job free for every CHUNK it lets in; if
 * none is (out of memory), the chunk is verified and written here. */
static void get_on_write(struct session *s, const struct engine_action *a)
{
	struct chunk_job *job = s->part && store_partial_has_hashes(s->part) ? job_free(s) : NULL;
	if (job && a->len <= PN_CHUNK_SIZE) {
		job->s = s;
		job->part = s->part;
		job->cid = a->cid;
		job->peer = a->peer;
		job->index = a->index;
		job->len = a->len;
		memcpy(job->buf, a->data, a->len);
		const uint8_t *h = store_partial_hash(s->part, a->index);
		if (h) {
			memcpy(job->hash, h, PN_HASH_BYTES);
			job->work.data = job;
			if (uv_queue_work(&s->loop, &job->work, job_work_cb, job_done_cb) == 0) {
				job->busy = true;
				s->jobs_busy++;
				return;
			}
		}
	}
	int r = s->part ? store_partial_write_chunk(s->part, a->index, a->data, a->len) : PN_EINVAL;
	get_written(s, a->peer, &a->cid, a->index, a->len, r);
}

static void on_error_msg(struct session *s, uint32_t req_id, uint16_t code, const char *etext, size_t text_len);

static void engine_timer_cb(uv_timer_t *t)
{
	struct session *s = t->data;
	engine_tick(s->engine, uv_now(&s->loop));
	engine_pump(s);
}

/* Carries out what the engine asks, then arms its timer. */
static void engine_pump(struct session *s)
{
	struct engine_action a;
	while (s->result == PN_EAGAIN && engine_next_action(s->engine, &a)) {
		switch (a.type) {
		case ENGINE_SEND:
			if (s->conn)
				(void)send_msg(s, &a.msg);
			break;
		case ENGINE_WRITE_CHUNK:
			get_on_write(s, &a);
			break;
		case ENGINE_HASHES:
			get_on_hashes(s, a.data, a.len);
			break;
		case ENGINE_NAME:
			get_on_name(s, a.name);
			break;
		case ENGINE_DONE:
			get_complete(s);
			break;
		case ENGINE_NOT_FOUND: {
			char id[PN_CID_STR_LEN + 1];
			pn_cid_format(&s->cid, id);
			fail(s, PN_ENOTFOUND, "server %s has no content with ID %s", s->opts->server, id);
			break;
		}
		case ENGINE_PEER_ERROR:
			on_error_msg(s, a.req_id, a.code, a.text, a.text_len);
			break;
		case ENGINE_STALLED:
			if (!s->conn && s->last_err)
				fail(s, PN_ETIMEDOUT, "lost the connection to %s and could not get it back in %u s (last: %s)%s",
				     s->opts->server, (s->opts->timeout_ms ? s->opts->timeout_ms : DEFAULT_TIMEOUT_MS) / 1000,
				     pn_strerror(s->last_err), partial_hint(s));
			else
				fail(s, PN_ETIMEDOUT, "server %s stopped sending (timed out)%s", s->opts->server,
				     partial_hint(s));
			break;
		case ENGINE_CLOSE:
			if (a.err == PN_ECLOSED) { /* the server ended it with ERROR(0, BUSY): as if dropped */
				if (s->conn)
					pn_conn_close(s->conn, PN_ECLOSED);
				break;
			}
			if (a.role && a.role != PN_ROLE_SERVER && a.role != PN_ROLE_NODE)
				fail(s, PN_EPROTO, "%s is not a peernet server (it is a %s)", s->opts->server,
				     a.role == PN_ROLE_DIRECTORY ? "directory" : "client");
			else
				fail(s, a.err ? a.err : PN_EPROTO, "server %s broke the protocol: %s%s", s->opts->server,
				     a.why ? a.why : pn_strerror(a.err), partial_hint(s));
			break;
		case ENGINE_SEND_CHUNK: /* a client serves nothing */
		case ENGINE_DIAL:
		case ENGINE_PEER_READY:
			break;
		}
	}
	if (s->result != PN_EAGAIN)
		return;
	uint64_t next = engine_next_wakeup(s->engine), now = uv_now(&s->loop);
	if (next != UINT64_MAX)
		uv_timer_start(&s->engine_timer, engine_timer_cb, next > now ? next - now : 0, 0);
	else
		uv_timer_stop(&s->engine_timer);
}

/* Starts the download in the engine: with the hash list and the verified
 * chunks of an earlier run when -o names a partial that has them. */
static int get_start(struct session *s)
{
	struct engine_opts eo = {
		.role = ENGINE_CLIENT,
		.sequential = true,
		.inflight_server = s->window,
		.inflight_node = s->window < ENGINE_UPQ_MAX ? s->window : ENGINE_UPQ_MAX,
		.stall_ms = s->opts->timeout_ms ? s->opts->timeout_ms : DEFAULT_TIMEOUT_MS,
		/* One provider answers in order: a request waits behind the other
		 * clients' as long as the server's uplink is shared, and asking again
		 * would only shrink the pipeline. Silence is caught by stall_ms. */
		.request_timeout_ms = 24u * 3600 * 1000,
		.seed = uv_hrtime(),
	};
	memcpy(eo.self_id, s->id.node_id, PN_ID_BYTES);
	s->engine = engine_new(&eo, uv_now(&s->loop));
	if (!s->engine) {
		set_err(s, "out of memory");
		return PN_ENOMEM;
	}
	uv_timer_init(&s->loop, &s->engine_timer);
	s->engine_timer.data = s;
	s->engine_timer_on = true;
	const uint8_t *hashes = NULL, *have = NULL;
	const char *name = NULL;
	if (s->part && store_partial_has_hashes(s->part)) {
		uint64_t ok = 0;
		int r = store_partial_verify_existing(s->part, &ok);
		if (r != PN_OK) {
			set_err(s, "cannot read the partial download %s: %s", s->data_path, pn_strerror(r));
			return r;
		}
		s->res->bytes_resumed = ok;
		hashes = store_partial_hash(s->part, 0);
		have = store_partial_bitmap(s->part);
		name = store_partial_name(s->part);
	}
	int r = engine_want(s->engine, &s->cid, name, hashes, have, uv_now(&s->loop));
	if (r != PN_OK) {
		set_err(s, "cannot start the download: %s", pn_strerror(r));
		return r;
	}
	r = engine_peer_add(s->engine, PEER_KEY, true, s->opts->server_id, uv_now(&s->loop));
	if (r != PN_OK) {
		set_err(s, "cannot start the download: %s", pn_strerror(r));
		return r;
	}
	return PN_OK;
}

/* ---------------------------------------------------------------- put */

static void put_next_file(struct session *s);

static int put_send_hashes(struct session *s)
{
	uint32_t n = pn_cid_chunks(&s->put_res.cid);
	for (uint32_t first = 0; first < n; first += PN_HASHES_MAX) {
		struct pn_msg m = {.type = PN_MSG_HASHES};
		m.u.hashes.req_id = s->put_req;
		m.u.hashes.cid = s->put_res.cid;
		m.u.hashes.first = first;
		m.u.hashes.count = n - first < PN_HASHES_MAX ? n - first : PN_HASHES_MAX;
		m.u.hashes.hashes = s->put_hashes + (size_t)first * PN_HASH_BYTES;
		int r = send_msg(s, &m);
		if (r != PN_OK)
			return r;
	}
	return PN_OK;
}

/* Sends missing chunks until the connection is congested or all are sent,
 * then PUT_END. Called again from writable_cb. */
static void put_pump(struct session *s)
{
	const struct pn_cid *cid = &s->put_res.cid;
	uint32_t n = pn_cid_chunks(cid);
	while (s->put_sending && s->put_next < n && !pn_conn_congested(s->conn)) {
		uint32_t i = s->put_next++;
		if (s->put_bitmap[i / 8] & (0x80 >> (i % 8)))
			continue;
		uint32_t len = pn_cid_chunk_len(cid, i);
		uint8_t *data = s->out + PN_FRAME_HDR + PN_CHUNK_MSG_HDR;
		ssize_t got = pread(s->put_fd, data, len, (off_t)i * PN_CHUNK_SIZE);
		if (got != (ssize_t)len) {
			fail(s, PN_EIO, "reading %s: %s", s->paths[s->cur], got < 0 ? strerror(errno) : "file changed while uploading");
			return;
		}
		if (!store_chunk_ok(s->put_hashes + (size_t)i * PN_HASH_BYTES, data, len)) {
			fail(s, PN_ECORRUPT, "%s changed while uploading; run the command again", s->paths[s->cur]);
			return;
		}
		pn_chunk_hdr_encode(s->out, s->put_req, cid, i, len);
		if (pn_conn_send(s->conn, s->out, PN_FRAME_HDR + PN_CHUNK_MSG_HDR + len) != PN_OK)
			return; /* close_cb reports it */
		s->put_res.bytes_sent += len;
		s->prog_done += len;
	}
	if (s->put_sending && s->put_next >= n) {
		s->put_sending = false;
		struct pn_msg m = {.type = PN_MSG_PUT_END};
		m.u.ref.req_id = s->put_req;
		m.u.ref.cid = *cid;
		(void)send_msg(s, &m);
	}
}

static void put_on_status(struct session *s, const struct pn_msg_put_status *m)
{
	if (m->req_id != s->put_req || memcmp(&m->cid, &s->put_res.cid, sizeof m->cid)) {
		fail(s, PN_EPROTO, "server answered for another upload");
		return;
	}
	size_t bm_len = ((size_t)m->nchunks + 7) / 8;
	free(s->put_bitmap);
	s->put_bitmap = malloc(bm_len);
	if (!s->put_bitmap) {
		fail(s, PN_ENOMEM, "out of memory");
		return;
	}
	memcpy(s->put_bitmap, m->bitmap, bm_len);
	uint64_t have = 0;
	for (uint32_t i = 0; i < m->nchunks; i++)
		if (m->bitmap[i / 8] & (0x80 >> (i % 8)))
			have += pn_cid_chunk_len(&m->cid, i);
	if (s->opts->progress && have < m->cid.size)
		start_progress(s, s->put_res.name, m->cid.size, have);
	if (!(m->flags & PN_PUT_HAVE_HASHES)) {
		int r = put_send_hashes(s);
		if (r != PN_OK)
			return;
	}
	s->put_next = 0;
	s->put_sending = true;
	put_pump(s);
}

static void put_on_done(struct session *s, const struct pn_msg_ref *m)
{
	if (m->req_id != s->put_req || memcmp(&m->cid, &s->put_res.cid, sizeof m->cid)) {
		fail(s, PN_EPROTO, "server confirmed another upload");
		return;
	}
	stop_progress(s, true);
	if (s->put_cb)
		s->put_cb(s->put_ud, &s->put_res);
	close(s->put_fd);
	s->put_fd = -1;
	free(s->put_hashes);
	s->put_hashes = NULL;
	s->cur++;
	put_next_file(s);
}

static void put_next_file(struct session *s)
{
	if (s->cur >= s->npaths) {
		finish(s, PN_OK);
		return;
	}
	const char *path = s->paths[s->cur];
	memset(&s->put_res, 0, sizeof s->put_res);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fail(s, PN_EIO, "cannot read %s: %s", path, strerror(errno));
		return;
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		fail(s, PN_EINVAL, "%s is not a regular file", path);
		return;
	}
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof tmp, "%s", path);
	const char *base = basename(tmp);
	if (!pn_name_valid(base, strlen(base))) {
		char shown[PATH_MAX];
		close(fd);
		fail(s, PN_EINVAL, "%s: the file name is not valid on the network (1-255 bytes of UTF-8, no control or "
		     "invisible format characters)", pn_text_escape(path, strlen(path), shown, sizeof shown));
		return;
	}
	snprintf(s->put_res.name, sizeof s->put_res.name, "%s", base);
	int r = store_hash_fd(fd, (uint64_t)st.st_size, &s->put_res.cid, &s->put_hashes);
	if (r != PN_OK) {
		close(fd);
		fail(s, r, "cannot hash %s: %s", path, r == PN_ETOOBIG ? "larger than 64 GiB" : pn_strerror(r));
		return;
	}
	s->put_fd = fd;
	struct pn_msg m = {.type = PN_MSG_PUT_BEGIN};
	m.u.meta.req_id = s->put_req = ++s->next_req;
	m.u.meta.cid = s->put_res.cid;
	m.u.meta.name = s->put_res.name;
	m.u.meta.name_len = (uint16_t)strlen(s->put_res.name);
	(void)send_msg(s, &m);
}

/* ---------------------------------------------------------------- ls */

static int ls_request(struct session *s, uint32_t cursor)
{
	struct pn_msg m = {.type = PN_MSG_LIST_REQ};
	m.u.list_req.req_id = ++s->next_req;
	m.u.list_req.cursor = cursor;
	return send_msg(s, &m);
}

static void ls_on_list(struct session *s, const struct pn_msg_list *l)
{
	size_t off = 0;
	struct pn_list_entry e;
	while (pn_list_next(l, &off, &e) == PN_OK) {
		char name[PN_NAME_MAX + 1];
		memcpy(name, e.name, e.name_len);
		name[e.name_len] = 0;
		s->ls_cb(s->ls_ud, &e.cid, name);
	}
	if (l->next_cursor)
		(void)ls_request(s, l->next_cursor);
	else
		finish(s, PN_OK);
}

/* ---------------------------------------------------------------- connection */

static void established_cb(struct pn_conn *c)
{
	struct session *s = pn_conn_data(c);
	if (s->op == OP_GET) {
		s->was_connected = true;
		s->retry_ms = 0;
		s->last_err = 0;
		if (s->reconnects)
			PN_LOGI(s->opts->log, "connected to %s again (reconnection %u)", s->opts->server, s->reconnects);
		engine_peer_established(s->engine, PEER_KEY, pn_conn_peer_id(c), 0, uv_now(&s->loop));
		engine_pump(s);
		return;
	}
	struct pn_msg m = {.type = PN_MSG_HELLO};
	m.u.hello.version = PN_PROTOCOL_VERSION;
	m.u.hello.role = PN_ROLE_CLIENT;
	if (send_msg(s, &m) != PN_OK)
		return;
	switch (s->op) {
	case OP_GET:
		break;
	case OP_PUT:
		put_next_file(s);
		break;
	case OP_LS:
		(void)ls_request(s, 0);
		break;
	}
}

static void on_error_msg(struct session *s, uint32_t req_id, uint16_t code, const char *etext, size_t text_len)
{
	char text[PN_ERRMSG_MAX + 1];
	size_t n = 0;
	for (size_t i = 0; i < text_len && i < PN_ERRMSG_MAX; i++) /* never print a peer's control bytes */
		text[n++] = (etext[i] >= 0x20 && etext[i] != 0x7f) ? etext[i] : '?';
	text[n] = 0;
	/* A server that is stopping or full ends the connection with
	 * ERROR(0, BUSY): a download goes on as after a dropped connection,
	 * asking again on a new one (docs/PROTOCOL.md, Errors and closing). */
	if (req_id == 0 && code == PN_WERR_BUSY && s->op == OP_GET && s->was_connected) {
		PN_LOGI(s->opts->log, "server %s: %s; connecting again", s->opts->server, text);
		return;
	}
	if (code == PN_WERR_NOT_FOUND && s->op == OP_GET) {
		char id[PN_CID_STR_LEN + 1];
		pn_cid_format(&s->cid, id);
		fail(s, PN_ENOTFOUND, "server %s has no content with ID %s", s->opts->server, id);
		return;
	}
	fail(s, code == PN_WERR_NOT_FOUND ? PN_ENOTFOUND : PN_EPROTO, "server %s refused: %s%s", s->opts->server,
	     text, partial_hint(s));
}

static int frame_cb(struct pn_conn *c, const uint8_t *body, size_t len)
{
	struct session *s = pn_conn_data(c);
	struct pn_msg m;
	if (s->result != PN_EAGAIN)
		return PN_OK;
	int r = pn_msg_decode(body, len, &m);
	if (r != PN_OK) {
		(void)pn_conn_send_error(c, 0, PN_WERR_PROTOCOL, "malformed message"); /* before finish() closes */
		fail(s, PN_EPROTO, "server %s sent a malformed message (type 0x%02x)%s", s->opts->server,
		     len ? body[0] : 0, partial_hint(s));
		return PN_OK;
	}
	if (s->op == OP_GET) {
		/* A chunk needs a free job (get_on_write): without one, leave the
		 * frame where it is and stop reading until a job is done (with
		 * none busy, get_on_write falls back to writing it here). */
		if (m.type == PN_MSG_CHUNK && s->jobs_busy && !job_free(s)) {
			s->read_paused = true;
			return PN_EAGAIN;
		}
		r = engine_on_msg(s->engine, PEER_KEY, &m, uv_now(&s->loop));
		if (r == PN_ENOTSUP) {
			(void)pn_conn_send_error(c, 0, PN_WERR_PROTOCOL, "unexpected message");
			fail(s, PN_EPROTO, "server %s sent an unexpected message (type 0x%02x)", s->opts->server, m.type);
		}
		engine_pump(s); /* within the frame: a WRITE_CHUNK points into body */
		return PN_OK;
	}
	switch (m.type) {
	case PN_MSG_HELLO:
		if (m.u.hello.role != PN_ROLE_SERVER) {
			(void)pn_conn_send_error(c, 0, PN_WERR_PROTOCOL, "unexpected role: LIST and PUT go to a server");
			fail(s, PN_EPROTO, "%s is not a peernet server (it is a %s)", s->opts->server,
			     m.u.hello.role == PN_ROLE_NODE ? "peer node" : m.u.hello.role == PN_ROLE_DIRECTORY ? "directory" : "client");
		}
		return PN_OK;
	case PN_MSG_ERROR:
		on_error_msg(s, m.u.error.req_id, m.u.error.code, m.u.error.text, m.u.error.text_len);
		return PN_OK;
	case PN_MSG_PING: {
		struct pn_msg pong = {.type = PN_MSG_PONG};
		pong.u.ping.nonce = m.u.ping.nonce;
		(void)send_msg(s, &pong);
		return PN_OK;
	}
	case PN_MSG_PONG:
		return PN_OK;
	default:
		break;
	}
	if (s->op == OP_PUT && m.type == PN_MSG_PUT_STATUS)
		put_on_status(s, &m.u.put_status);
	else if (s->op == OP_PUT && m.type == PN_MSG_PUT_DONE)
		put_on_done(s, &m.u.ref);
	else if (s->op == OP_LS && m.type == PN_MSG_LIST)
		ls_on_list(s, &m.u.list);
	else
		fail(s, PN_EPROTO, "server %s sent an unexpected message (type 0x%02x)", s->opts->server, m.type);
	return PN_OK;
}

static void writable_cb(struct pn_conn *c)
{
	struct session *s = pn_conn_data(c);
	if (s->op == OP_PUT && s->result == PN_EAGAIN)
		put_pump(s);
	if (s->op == OP_GET && s->result == PN_EAGAIN) {
		engine_peer_writable(s->engine, PEER_KEY, uv_now(&s->loop));
		engine_pump(s);
	}
}

static const struct pn_conn_cbs client_cbs;

/* A get whose connection went away for a reason the network gives (not the
 * server's word, not a wrong identity) dials again, and the engine resumes
 * from the chunks already verified; the engine's stall timer (--timeout
 * without a chunk) bounds it. */
static bool get_retryable(const struct session *s, int err)
{
	if (s->op != OP_GET || !s->was_connected)
		return false; /* a server never reached is not waited for */
	switch (err) {
	case PN_EPEERID:
	case PN_ETLS:
	case PN_EPROTO:
	case PN_ETOOBIG:
		return false;
	default:
		return true;
	}
}

static void retry_cb(uv_timer_t *t)
{
	struct session *s = t->data;
	if (s->result != PN_EAGAIN || s->conn)
		return;
	s->reconnects++;
	int r = pn_net_connect(s->net, s->opts->server, s->opts->server_id, &client_cbs, s, &s->conn);
	if (r == PN_OK)
		r = engine_peer_add(s->engine, PEER_KEY, true, s->opts->server_id, uv_now(&s->loop));
	if (r == PN_OK)
		return;
	s->last_err = r;
	if (s->conn) {
		pn_conn_close(s->conn, r);
		return; /* close_cb tries again */
	}
	s->retry_ms = s->retry_ms ? (s->retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : s->retry_ms * 2) : RETRY_FIRST_MS;
	uv_timer_start(&s->retry_timer, retry_cb, s->retry_ms, 0);
}

static void get_reconnect_later(struct session *s, int err)
{
	s->last_err = err ? err : PN_ECLOSED;
	s->read_paused = false; /* that connection's paused frame is gone with it */
	engine_peer_closed(s->engine, PEER_KEY, uv_now(&s->loop));
	engine_pump(s);
	if (s->result != PN_EAGAIN)
		return;
	if (!s->retry_timer_on) {
		uv_timer_init(&s->loop, &s->retry_timer);
		s->retry_timer.data = s;
		s->retry_timer_on = true;
	}
	s->retry_ms = s->retry_ms ? (s->retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : s->retry_ms * 2) : RETRY_FIRST_MS;
	PN_LOGI(s->opts->log, "connection to %s lost (%s); dialling again in %u ms", s->opts->server,
		pn_strerror(s->last_err), s->retry_ms);
	uv_timer_start(&s->retry_timer, retry_cb, s->retry_ms, 0);
}

static void close_cb(struct pn_conn *c, int err)
{
	struct session *s = pn_conn_data(c);
	s->conn = NULL;
	if (s->result != PN_EAGAIN)
		return;
	if (get_retryable(s, err)) {
		get_reconnect_later(s, err);
		return;
	}
	const char *srv = s->opts->server;
	switch (err) {
	case PN_ECONNREFUSED:
		fail(s, err, "cannot connect to %s: connection refused or unreachable; is `peernet serve` running there?%s",
		     srv, partial_hint(s));
		break;
	case PN_EPEERID:
		fail(s, err, "server at %s is not the one given by --server-id: %s; refusing to talk to it", srv,
		     pn_conn_tls_error(c));
		break;
	case PN_ETIMEDOUT:
		fail(s, err, "server %s stopped answering (timed out)%s", srv, partial_hint(s));
		break;
	case PN_ETLS:
		fail(s, err, "secure connection to %s failed (is it a peernet server?)%s", srv, partial_hint(s));
		break;
	default:
		fail(s, err ? err : PN_ECLOSED, "connection to %s lost: %s%s", srv, pn_strerror(err ? err : PN_ECLOSED),
		     partial_hint(s));
	}
}

static const struct pn_conn_cbs client_cbs = {
	.established_cb = established_cb,
	.frame_cb = frame_cb,
	.writable_cb = writable_cb,
	.close_cb = close_cb,
};

static int session_init(struct session *s, const struct pn_client_opts *o, enum op op)
{
	memset(s, 0, sizeof *s);
	s->err = o->error;
	s->err[0] = 0;
	s->opts = o;
	s->op = op;
	s->result = PN_EAGAIN;
	s->put_fd = -1;
	s->window = o->window ? (o->window > MAX_WINDOW ? MAX_WINDOW : o->window) : DEFAULT_WINDOW;
	s->t0 = uv_hrtime();
	s->out_cap = PN_FRAME_HDR + PN_FRAME_MAX;
	s->out = malloc(s->out_cap);
	if (!s->out) {
		set_err(s, "out of memory");
		return PN_ENOMEM;
	}
	int r = o->data_dir ? pn_identity_load_or_create(o->data_dir, &s->id) : pn_identity_ephemeral(&s->id);
	if (r != PN_OK) {
		set_err(s, "cannot load an identity%s%s: %s", o->data_dir ? " from " : "", o->data_dir ? o->data_dir : "",
			pn_strerror(r));
		free(s->out);
		return r;
	}
	uv_loop_init(&s->loop);
	return PN_OK;
}

/* Connects and runs the loop until the operation ends. */
static int session_run(struct session *s)
{
	struct pn_net_opts nopts;
	pn_net_opts_default(&nopts);
	nopts.log = s->opts->log;
	nopts.idle_timeout_ms = s->opts->timeout_ms ? s->opts->timeout_ms : DEFAULT_TIMEOUT_MS;
	nopts.handshake_timeout_ms = nopts.idle_timeout_ms < PN_HANDSHAKE_TIMEOUT_MS ? nopts.idle_timeout_ms
										: PN_HANDSHAKE_TIMEOUT_MS;
	nopts.write_stall_timeout_ms = nopts.idle_timeout_ms;
	int r = pn_net_new(&s->loop, &s->id, &nopts, &s->net);
	if (r != PN_OK) {
		set_err(s, "cannot set up TLS: %s", pn_strerror(r));
		return r;
	}
	r = pn_net_connect(s->net, s->opts->server, s->opts->server_id, &client_cbs, s, &s->conn);
	if (r != PN_OK) {
		if (r == PN_EINVAL)
			set_err(s, "bad server address '%s': expected HOST:PORT", s->opts->server);
		else if (r == PN_ENOTFOUND)
			set_err(s, "cannot resolve the server address '%s'", s->opts->server);
		else
			set_err(s, "cannot connect to %s: %s", s->opts->server, pn_strerror(r));
		s->result = r;
		pn_net_close(s->net);
	}
	uv_run(&s->loop, UV_RUN_DEFAULT);
	return s->result == PN_EAGAIN ? PN_ECLOSED : s->result;
}

static void session_end(struct session *s)
{
	uv_run(&s->loop, UV_RUN_DEFAULT); /* and every chunk job: none is busy after this */
	for (unsigned i = 0; i < WRITE_POOL; i++)
		free(s->jobs[i].buf);
	if (uv_loop_close(&s->loop) != 0)
		PN_LOGD(s->opts->log, "client loop still had handles at exit");
	pn_identity_free(&s->id);
	free(s->out);
	engine_free(s->engine);
	free(s->put_bitmap);
	free(s->put_hashes);
	if (s->put_fd >= 0)
		close(s->put_fd);
	if (s->part) {
		/* Keep a partial download only if it holds something worth resuming. */
		if (store_partial_have_count(s->part) == 0)
			store_partial_discard(s->part);
		else
			store_partial_close(s->part);
	}
}

int pn_client_get(const struct pn_client_opts *o, const struct pn_cid *cid, const char *out_path, bool overwrite,
		  struct pn_get_result *res)
{
	struct session s;
	memset(res, 0, sizeof *res);
	int r = session_init(&s, o, OP_GET);
	if (r != PN_OK)
		return r;
	s.cid = *cid;
	s.res = res;
	s.nchunks = pn_cid_chunks(cid);
	s.overwrite = overwrite;
	res->cid = *cid;
	s.to_stdout = out_path && !strcmp(out_path, "-");
	if (out_path) {
		snprintf(res->path, sizeof res->path, "%s", s.to_stdout ? "-" : out_path);
		/* Open (and check) the output before asking the network for anything. */
		r = get_open_partial(&s, NULL);
		if (r != PN_OK) {
			s.result = r;
			goto out;
		}
	}
	r = get_start(&s);
	if (r != PN_OK) {
		s.result = r;
		goto out;
	}
	r = session_run(&s);
out:
	session_end(&s);
	return s.result == PN_EAGAIN ? r : s.result;
}

int pn_client_put(const struct pn_client_opts *o, char *const *paths, int npaths, pn_put_done_cb cb, void *ud)
{
	struct session s;
	int r = session_init(&s, o, OP_PUT);
	if (r != PN_OK)
		return r;
	s.paths = paths;
	s.npaths = npaths;
	s.put_cb = cb;
	s.put_ud = ud;
	r = session_run(&s);
	session_end(&s);
	return r;
}

int pn_client_ls(const struct pn_client_opts *o, pn_ls_entry_cb cb, void *ud)
{
	struct session s;
	int r = session_init(&s, o, OP_LS);
	if (r != PN_OK)
		return r;
	s.ls_cb = cb;
	s.ls_ud = ud;
	r = session_run(&s);
	session_end(&s);
	return r;
}
