/* Client side of the client-server model: put, get and ls, each a transfer
 * on the caller's loop (peernet.h, "the client"). */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
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
#include "util/text.h"
#include "wire/wire.h"

#define DEFAULT_WINDOW ENGINE_DEFAULT_INFLIGHT_SERVER /* 16 MiB in flight: 16 gave 0.55x nginx on loopback, 64 gave 0.62x */
#define MAX_WINDOW ENGINE_UPQ_MAX_SERVER
#define PEER_KEY 1                    /* the engine's name for the one connection */
#define DEFAULT_TIMEOUT_MS 30000
#define PROGRESS_INTERVAL_MS 200
#define RETRY_FIRST_MS 250   /* get: a dropped connection is dialled again after this, */
#define RETRY_MAX_MS 5000    /* doubling up to this, until --timeout passes without a chunk */
#define WHY_MAX 1024         /* the one-line error */
/* Chunks being verified and written on libuv's thread pool at once (a
 * buffer each, PN_CHUNK_SIZE, allocated on first use and reused): 4 MiB.
 * When all are busy the connection stops being read until one is free. */
#ifndef WRITE_POOL
#define WRITE_POOL 16 /* -DWRITE_POOL=1 in a test build exercises the pause */
#endif

/* One chunk on its way to disk: copied out of the frame on the loop, hashed
 * and written on a pool thread, recorded back on the loop. */
struct chunk_job {
	uv_work_t work;
	struct pn_transfer *t;
	struct store_partial *part;   /* only store_partial_pwrite_chunk() is used off the loop */
	uint8_t *buf;                 /* buf_cap bytes, owned by the transfer, freed in transfer_end: a
				       * CHUNK frame taken from the connection, or a copy of its data */
	size_t buf_cap;
	const uint8_t *data;          /* the chunk's bytes, in buf */
	uint8_t hash[PN_HASH_BYTES];  /* expected */
	struct pn_cid cid;
	uint32_t peer, index, len;
	int result;                   /* set by the pool thread */
	bool busy;
};

enum op { OP_GET, OP_PUT, OP_LS };

struct pn_transfer {
	uv_loop_t *loop;
	struct pn_client_config cfg;  /* server and data_dir owned; server_id points into server_id_buf */
	uint8_t server_id_buf[PN_ID_BYTES];
	struct pn_client_events ev;
	struct pn_logger log;
	struct pn_identity id;
	bool have_id;
	struct pn_net *net;
	struct pn_conn *conn;
	enum op op;
	int result;          /* PN_EAGAIN while running */
	/* Still to finish before done: timer and net close callbacks, the put's
	 * hashing on the thread pool (chunk jobs are counted in jobs_busy). */
	unsigned closing;
	bool hashing;
	uint32_t next_req;
	uint8_t *out;        /* scratch for one frame */
	size_t out_cap;
	uv_timer_t progress_timer;
	bool progress_on;
	struct engine *engine;   /* get: the transfer, as a node downloading from one provider */
	uv_timer_t engine_timer;
	uv_timer_t retry_timer;  /* get: dials the server again after a drop */
	bool was_connected;      /* get: a connection got as far as the HELLO exchange */
	uint32_t retry_ms;       /* the next wait before dialling again */
	int last_err;            /* why the connection went, while reconnecting */
	uint32_t reconnects;
	char why[WHY_MAX];
	char hint[PATH_MAX + 128];
	struct pn_transfer_progress prog; /* of the file moving now */
	uint64_t t0;
	struct pn_transfer_result res;
	char res_name[PN_NAME_MAX + 1];
	char res_path[PATH_MAX];

	/* get */
	struct pn_cid cid;
	unsigned flags;
	bool stream;             /* PN_GET_STREAM: bytes to ev.data */
	bool temp;               /* no path with PN_GET_STREAM: the partial is a temporary file */
	struct store_partial *part;
	char data_path[PATH_MAX + 16], state_path[PATH_MAX + 32];
	uint32_t nchunks;
	uint32_t window;
	uint32_t stream_next;    /* next chunk to hand to ev.data */
	struct chunk_job jobs[WRITE_POOL];
	unsigned jobs_busy;
	bool read_paused;        /* frame_cb said PN_EAGAIN for want of a free job */

	/* put */
	char **paths;            /* owned, npaths of them */
	size_t npaths, cur;
	int put_fd;
	uv_work_t hash_work;     /* store_hash_fd on the thread pool */
	uint64_t hash_size;
	int hash_result;
	uint8_t *put_hashes;
	struct pn_cid put_cid;
	char put_name[PN_NAME_MAX + 1];
	uint64_t put_sent;       /* chunk bytes of the current file sent */
	uint32_t put_req;
	uint8_t *put_bitmap;     /* server's bitmap, copied */
	uint32_t put_next;       /* next chunk to consider sending */
	bool put_sending;
};

static void set_why(struct pn_transfer *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_why(struct pn_transfer *t, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(t->why, sizeof t->why, fmt, ap);
	va_end(ap);
}

static void stop_progress(struct pn_transfer *t, bool done);
static void transfer_maybe_end(struct pn_transfer *t);

static void timer_closed_cb(uv_handle_t *h)
{
	struct pn_transfer *t = h->data;
	t->closing--;
	transfer_maybe_end(t);
}

static void net_closed_cb(void *ud)
{
	struct pn_transfer *t = ud;
	t->net = NULL;
	t->closing--;
	transfer_maybe_end(t);
}

/* The transfer is over with result: every timer, the connection and the
 * net start closing; done comes once they and the pool work are finished
 * (transfer_maybe_end), always from a close callback or a pool callback, so
 * never from inside the call that ended it. */
static void finish(struct pn_transfer *t, int result)
{
	if (t->result != PN_EAGAIN)
		return;
	t->result = result;
	stop_progress(t, result == PN_OK);
	uv_handle_t *timers[] = {(uv_handle_t *)&t->engine_timer, (uv_handle_t *)&t->retry_timer,
				 (uv_handle_t *)&t->progress_timer};
	for (size_t i = 0; i < sizeof timers / sizeof timers[0]; i++) {
		t->closing++;
		uv_close(timers[i], timer_closed_cb);
	}
	if (t->conn)
		pn_conn_close(t->conn, 0);
	if (t->net) {
		t->closing++;
		pn_net_close_cb(t->net, net_closed_cb, t);
	}
}

static void fail(struct pn_transfer *t, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(struct pn_transfer *t, int err, const char *fmt, ...)
{
	if (t->result != PN_EAGAIN)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(t->why, sizeof t->why, fmt, ap);
	va_end(ap);
	finish(t, err);
}

/* Fails with the message already in t->why. */
static void fail_keep(struct pn_transfer *t, int err)
{
	finish(t, err);
}

static int send_msg(struct pn_transfer *t, const struct pn_msg *m)
{
	return pn_conn_send_msg(t->conn, m);
}

static const char *server_name(const struct pn_transfer *t)
{
	return t->cfg.server;
}

static const char *partial_hint(struct pn_transfer *t)
{
	if (t->op == OP_GET && t->part && !t->temp && store_partial_have_count(t->part) > 0)
		snprintf(t->hint, sizeof t->hint, "; partial download kept in %s, run the same command again to resume",
			 t->data_path);
	else
		t->hint[0] = 0;
	return t->hint;
}

static void report(struct pn_transfer *t, enum pn_transfer_phase phase)
{
	t->prog.phase = phase;
	t->ev.progress(t->ev.ud, t, &t->prog);
}

static void progress_cb(uv_timer_t *timer)
{
	report(timer->data, PN_TRANSFER_UPDATE);
}

static void start_progress(struct pn_transfer *t, const struct pn_cid *cid, const char *name, uint64_t done)
{
	if (!t->ev.progress || t->progress_on || t->result != PN_EAGAIN)
		return;
	t->prog.cid = *cid;
	t->prog.name = name;
	t->prog.total = cid->size;
	t->prog.have = done;
	t->progress_on = true;
	uv_timer_start(&t->progress_timer, progress_cb, PROGRESS_INTERVAL_MS, PROGRESS_INTERVAL_MS);
	report(t, PN_TRANSFER_START);
}

static void stop_progress(struct pn_transfer *t, bool done)
{
	if (!t->progress_on)
		return;
	uv_timer_stop(&t->progress_timer);
	t->progress_on = false;
	report(t, done ? PN_TRANSFER_DONE : PN_TRANSFER_ABORT);
}

/* ---------------------------------------------------------------- get */

/* Hands ev.data every newly contiguous verified chunk. */
static int get_stream(struct pn_transfer *t)
{
	uint8_t *buf = t->out;
	while (t->result == PN_EAGAIN && t->stream_next < t->nchunks && store_partial_has_chunk(t->part, t->stream_next)) {
		uint32_t len;
		int r = store_partial_read_chunk(t->part, t->stream_next, buf, &len);
		if (r != PN_OK) {
			set_why(t, "cannot read back %s: %s", t->data_path, pn_strerror(r));
			return r;
		}
		uint64_t offset = (uint64_t)t->stream_next * PN_CHUNK_SIZE;
		t->stream_next++;
		if (t->ev.data && len)
			t->ev.data(t->ev.ud, t, offset, buf, len);
	}
	return PN_OK;
}

static void get_complete(struct pn_transfer *t)
{
	int r;
	if (t->stream && (r = get_stream(t)) != PN_OK) {
		fail_keep(t, r);
		return;
	}
	if (t->result != PN_EAGAIN)
		return; /* cancelled from the data callback */
	if (t->temp) {
		store_partial_discard(t->part);
		t->part = NULL;
	} else {
		r = store_partial_complete(t->part, t->res_path, t->flags & PN_GET_OVERWRITE);
		if (r == PN_EEXIST) {
			fail(t, r, "%s already exists; use --force to overwrite it (download kept in %s)", t->res_path,
			     t->data_path);
			return;
		}
		if (r != PN_OK) {
			fail(t, r, "cannot complete %s: %s%s", t->res_path, pn_strerror(r), partial_hint(t));
			return;
		}
		t->part = NULL;
	}
	t->res.seconds = (double)(uv_hrtime() - t->t0) / 1e9;
	finish(t, PN_OK);
}

/* Opens the partial download for t->res_path (set unless temp). */
static int get_open_partial(struct pn_transfer *t, const char *name)
{
	if (t->temp) {
		const char *tmp = getenv("TMPDIR");
		char id[PN_CID_STR_LEN + 1];
		pn_cid_format(&t->cid, id);
		/* The address of t keeps two transfers of one process apart. */
		snprintf(t->data_path, sizeof t->data_path, "%s/peernet-%s.%d.%lx.part", tmp && *tmp ? tmp : "/tmp", id,
			 (int)getpid(), (unsigned long)(uintptr_t)t);
	} else {
		snprintf(t->data_path, sizeof t->data_path, "%s.pnpart", t->res_path);
	}
	snprintf(t->state_path, sizeof t->state_path, "%s.state", t->data_path);
	if (!t->temp && !(t->flags & PN_GET_OVERWRITE) && access(t->res_path, F_OK) == 0) {
		set_why(t, "%s already exists; use --force to overwrite it", t->res_path);
		return PN_EEXIST;
	}
	int r = store_partial_open_log(t->data_path, t->state_path, &t->cid, name, &t->log, &t->part);
	if (r != PN_OK) {
		if (r == PN_ELINK)
			set_why(t, "refusing to write %s (or its .state): %s", t->data_path, pn_strerror(r));
		else
			set_why(t, "cannot write %s: %s", t->data_path,
				r == PN_EIO && errno ? strerror(errno) : pn_strerror(r));
		return r;
	}
	return PN_OK;
}

static void engine_pump(struct pn_transfer *t);

/* The name is known: without a path the file is saved under it, in the
 * current directory (the decoder checked it: no '/', not "." or ".."). */
static void get_on_name(struct pn_transfer *t, const char *name)
{
	snprintf(t->res_name, sizeof t->res_name, "%s", name);
	if (t->part)
		return;
	snprintf(t->res_path, sizeof t->res_path, "%s", t->res_name);
	int r = get_open_partial(t, t->res_name);
	if (r != PN_OK)
		fail_keep(t, r);
}

/* The hash list is verified: record it, re-verify what an earlier run left,
 * and let the engine ask for the chunks still missing. */
static void get_on_hashes(struct pn_transfer *t, const uint8_t *hashes, uint32_t len)
{
	if (!t->part) {
		fail(t, PN_EPROTO, "server %s sent no name for the content", server_name(t));
		return;
	}
	int r = store_partial_has_hashes(t->part) ? PN_OK
		: store_partial_add_hashes(t->part, 0, len / PN_HASH_BYTES, hashes);
	if (r != PN_OK) {
		fail(t, r, "cannot store the hash list in %s: %s", t->state_path, pn_strerror(r));
		return;
	}
	uint64_t ok = 0;
	r = store_partial_verify_existing(t->part, &ok);
	if (r != PN_OK) {
		fail(t, r, "cannot read the partial download %s: %s", t->data_path, pn_strerror(r));
		return;
	}
	t->res.bytes_resumed = ok;
	start_progress(t, &t->cid, t->res_name, ok);
	if (t->stream && (r = get_stream(t)) != PN_OK) {
		fail_keep(t, r);
		return;
	}
	if (t->result != PN_EAGAIN)
		return;
	engine_hashes_recorded(t->engine, &t->cid, store_partial_bitmap(t->part), uv_now(t->loop));
}

/* What a WRITE_CHUNK came to (r: PN_OK once the chunk is verified, written
 * and recorded): tells the engine, and fails the get on an error. */
static void get_written(struct pn_transfer *t, uint32_t peer, const struct pn_cid *cid, uint32_t index, uint32_t len,
			int r)
{
	engine_chunk_written(t->engine, peer, cid, index, r, uv_now(t->loop));
	if (r == PN_ECORRUPT) {
		if (t->conn) /* the close is caused by the peer's data: say why (docs/PROTOCOL.md) */
			(void)pn_conn_send_error(t->conn, 0, PN_WERR_CORRUPT, "a chunk does not match its hash");
		fail(t, r, "server sent chunk %u that does not match its hash; it was not written%s", index,
		     partial_hint(t));
		return;
	}
	if (r != PN_OK) {
		fail(t, r, "cannot write %s: %s%s", t->data_path, pn_strerror(r), partial_hint(t));
		return;
	}
	t->res.bytes_downloaded += len;
	t->prog.have += len;
	if (t->stream && (r = get_stream(t)) != PN_OK)
		fail_keep(t, r);
}

/* A free job with its buffer, or NULL when all WRITE_POOL are busy (or a
 * buffer cannot be had). */
static struct chunk_job *job_free(struct pn_transfer *t)
{
	for (unsigned i = 0; i < WRITE_POOL; i++) {
		struct chunk_job *job = &t->jobs[i];
		if (job->busy)
			continue;
		return job;
	}
	return NULL;
}

/* Puts the chunk's bytes in job: the frame itself, taken from the
 * connection (job's old buffer becomes the connection's), or a copy. */
static bool job_take_data(struct pn_transfer *t, struct chunk_job *job, const uint8_t *data, uint32_t len)
{
	size_t cap;
	uint8_t *frame = t->conn ? pn_conn_take_frame(t->conn, data, job->buf, job->buf_cap, &cap) : NULL;
	if (frame) {
		job->buf = frame;
		job->buf_cap = cap;
		job->data = data;
		return true;
	}
	if (job->buf_cap < len || !job->buf) {
		free(job->buf);
		job->buf_cap = 0;
		if (!(job->buf = malloc(PN_CHUNK_SIZE)))
			return false;
		job->buf_cap = PN_CHUNK_SIZE;
	}
	memcpy(job->buf, data, len);
	job->data = job->buf;
	return true;
}

/* On a pool thread: the hash check and the write, nothing that the loop
 * thread touches (the partial only through store_partial_pwrite_chunk). */
static void job_work_cb(uv_work_t *w)
{
	struct chunk_job *job = w->data;
	job->result = store_chunk_check(job->hash, job->data, job->len);
	if (job->result == PN_OK)
		job->result = store_partial_pwrite_chunk(job->part, job->index, job->data, job->len);
}

/* Back on the loop: record the chunk (its data is written: the bit may
 * follow), free the job, tell the engine, and read again if we had paused. */
static void job_done_cb(uv_work_t *w, int status)
{
	struct chunk_job *job = w->data;
	struct pn_transfer *t = job->t;
	int r = status == 0 ? job->result : PN_EIO;
	/* The partial outlives every job: transfer_end closes it when none is busy. */
	if (r == PN_OK)
		r = store_partial_mark_verified(job->part, job->index);
	job->busy = false;
	t->jobs_busy--;
	if (t->result == PN_EAGAIN) {
		get_written(t, job->peer, &job->cid, job->index, job->len, r);
		engine_pump(t);
		if (t->read_paused && t->conn && t->result == PN_EAGAIN) {
			t->read_paused = false;
			pn_conn_resume(t->conn); /* hands the frame that found no free job */
		}
	} /* else: over meanwhile; the chunk is kept for a resume, nothing more is asked */
	transfer_maybe_end(t);
}

/* WRITE_CHUNK: the data points into the frame being handled, so it is copied
 * into a free job and hashed and written off the loop; the result comes back
 * to job_done_cb. frame_cb keeps a job free for every CHUNK it lets in; if
 * none is (out of memory), the chunk is verified and written here. */
static void get_on_write(struct pn_transfer *t, const struct engine_action *a)
{
	struct chunk_job *job = t->part && store_partial_has_hashes(t->part) ? job_free(t) : NULL;
	if (job && a->len <= PN_CHUNK_SIZE) {
		job->t = t;
		job->part = t->part;
		job->cid = a->cid;
		job->peer = a->peer;
		job->index = a->index;
		job->len = a->len;
		const uint8_t *h = store_partial_hash(t->part, a->index);
		if (h && job_take_data(t, job, a->data, a->len)) {
			memcpy(job->hash, h, PN_HASH_BYTES);
			job->work.data = job;
			if (uv_queue_work(t->loop, &job->work, job_work_cb, job_done_cb) == 0) {
				job->busy = true;
				t->jobs_busy++;
				return;
			}
		}
	}
	int r = t->part ? store_partial_write_chunk(t->part, a->index, a->data, a->len) : PN_EINVAL;
	get_written(t, a->peer, &a->cid, a->index, a->len, r);
}

static void on_error_msg(struct pn_transfer *t, uint32_t req_id, uint16_t code, const char *etext, size_t text_len);

static void engine_timer_cb(uv_timer_t *timer)
{
	struct pn_transfer *t = timer->data;
	engine_tick(t->engine, uv_now(t->loop));
	engine_pump(t);
}

/* Carries out what the engine asks, then arms its timer. */
static void engine_pump(struct pn_transfer *t)
{
	struct engine_action a;
	while (t->result == PN_EAGAIN && engine_next_action(t->engine, &a)) {
		switch (a.type) {
		case ENGINE_SEND:
			if (t->conn)
				(void)send_msg(t, &a.msg);
			break;
		case ENGINE_WRITE_CHUNK:
			get_on_write(t, &a);
			break;
		case ENGINE_HASHES:
			get_on_hashes(t, a.data, a.len);
			break;
		case ENGINE_NAME:
			get_on_name(t, a.name);
			break;
		case ENGINE_DONE:
			get_complete(t);
			break;
		case ENGINE_NOT_FOUND: {
			char id[PN_CID_STR_LEN + 1];
			pn_cid_format(&t->cid, id);
			fail(t, PN_ENOTFOUND, "server %s has no content with ID %s", server_name(t), id);
			break;
		}
		case ENGINE_PEER_ERROR:
			on_error_msg(t, a.req_id, a.code, a.text, a.text_len);
			break;
		case ENGINE_STALLED:
			if (!t->conn && t->last_err)
				fail(t, PN_ETIMEDOUT, "lost the connection to %s and could not get it back in %u s (last: %s)%s",
				     server_name(t), t->cfg.timeout_ms / 1000, pn_strerror(t->last_err), partial_hint(t));
			else
				fail(t, PN_ETIMEDOUT, "server %s stopped sending (timed out)%s", server_name(t),
				     partial_hint(t));
			break;
		case ENGINE_CLOSE:
			if (a.err == PN_ECLOSED) { /* the server ended it with ERROR(0, BUSY): as if dropped */
				if (t->conn)
					pn_conn_close(t->conn, PN_ECLOSED);
				break;
			}
			if (a.role && a.role != PN_ROLE_SERVER && a.role != PN_ROLE_NODE)
				fail(t, PN_EPROTO, "%s is not a peernet server (it is a %s)", server_name(t),
				     a.role == PN_ROLE_DIRECTORY ? "directory" : "client");
			else
				fail(t, a.err ? a.err : PN_EPROTO, "server %s broke the protocol: %s%s", server_name(t),
				     a.why ? a.why : pn_strerror(a.err), partial_hint(t));
			break;
		case ENGINE_SEND_CHUNK: /* a client serves nothing */
		case ENGINE_DIAL:
		case ENGINE_PEER_READY:
			break;
		}
	}
	if (t->result != PN_EAGAIN)
		return;
	uint64_t next = engine_next_wakeup(t->engine), now = uv_now(t->loop);
	if (next != UINT64_MAX)
		uv_timer_start(&t->engine_timer, engine_timer_cb, next > now ? next - now : 0, 0);
	else
		uv_timer_stop(&t->engine_timer);
}

/* Starts the download in the engine: with the hash list and the verified
 * chunks of an earlier run when the path names a partial that has them. */
static int get_start(struct pn_transfer *t)
{
	struct engine_opts eo = {
		.role = ENGINE_CLIENT,
		.sequential = true,
		.inflight_server = t->window,
		.inflight_node = t->window < ENGINE_UPQ_MAX ? t->window : ENGINE_UPQ_MAX,
		.stall_ms = t->cfg.timeout_ms,
		/* One provider answers in order: a request waits behind the other
		 * clients' as long as the server's uplink is shared, and asking again
		 * would only shrink the pipeline. Silence is caught by stall_ms. */
		.request_timeout_ms = 24u * 3600 * 1000,
		.seed = uv_hrtime() ^ (uint64_t)(uintptr_t)t,
	};
	memcpy(eo.self_id, t->id.node_id, PN_ID_BYTES);
	t->engine = engine_new(&eo, uv_now(t->loop));
	if (!t->engine) {
		set_why(t, "out of memory");
		return PN_ENOMEM;
	}
	const uint8_t *hashes = NULL, *have = NULL;
	const char *name = NULL;
	if (t->part && store_partial_has_hashes(t->part)) {
		uint64_t ok = 0;
		int r = store_partial_verify_existing(t->part, &ok);
		if (r != PN_OK) {
			set_why(t, "cannot read the partial download %s: %s", t->data_path, pn_strerror(r));
			return r;
		}
		t->res.bytes_resumed = ok;
		hashes = store_partial_hash(t->part, 0);
		have = store_partial_bitmap(t->part);
		name = store_partial_name(t->part);
	}
	int r = engine_want(t->engine, &t->cid, name, hashes, have, uv_now(t->loop));
	if (r != PN_OK) {
		set_why(t, "cannot start the download: %s", pn_strerror(r));
		return r;
	}
	r = engine_peer_add(t->engine, PEER_KEY, true, t->cfg.server_id, uv_now(t->loop));
	if (r != PN_OK) {
		set_why(t, "cannot start the download: %s", pn_strerror(r));
		return r;
	}
	return PN_OK;
}

/* ---------------------------------------------------------------- put */

static void put_next_file(struct pn_transfer *t);

static int put_send_hashes(struct pn_transfer *t)
{
	uint32_t n = pn_cid_chunks(&t->put_cid);
	for (uint32_t first = 0; first < n; first += PN_HASHES_MAX) {
		struct pn_msg m = {.type = PN_MSG_HASHES};
		m.u.hashes.req_id = t->put_req;
		m.u.hashes.cid = t->put_cid;
		m.u.hashes.first = first;
		m.u.hashes.count = n - first < PN_HASHES_MAX ? n - first : PN_HASHES_MAX;
		m.u.hashes.hashes = t->put_hashes + (size_t)first * PN_HASH_BYTES;
		int r = send_msg(t, &m);
		if (r != PN_OK)
			return r;
	}
	return PN_OK;
}

/* Sends missing chunks until the connection is congested or all are sent,
 * then PUT_END. Called again from writable_cb. */
static void put_pump(struct pn_transfer *t)
{
	const struct pn_cid *cid = &t->put_cid;
	uint32_t n = pn_cid_chunks(cid);
	while (t->put_sending && t->put_next < n && !pn_conn_congested(t->conn)) {
		uint32_t i = t->put_next++;
		if (t->put_bitmap[i / 8] & (0x80 >> (i % 8)))
			continue;
		uint32_t len = pn_cid_chunk_len(cid, i);
		uint8_t *data = t->out + PN_FRAME_HDR + PN_CHUNK_MSG_HDR;
		ssize_t got = pread(t->put_fd, data, len, (off_t)i * PN_CHUNK_SIZE);
		if (got != (ssize_t)len) {
			fail(t, PN_EIO, "reading %s: %s", t->paths[t->cur], got < 0 ? strerror(errno) : "file changed while uploading");
			return;
		}
		if (!store_chunk_ok(t->put_hashes + (size_t)i * PN_HASH_BYTES, data, len)) {
			fail(t, PN_ECORRUPT, "%s changed while uploading; run the command again", t->paths[t->cur]);
			return;
		}
		pn_chunk_hdr_encode(t->out, t->put_req, cid, i, len);
		if (pn_conn_send(t->conn, t->out, PN_FRAME_HDR + PN_CHUNK_MSG_HDR + len) != PN_OK)
			return; /* close_cb reports it */
		t->put_sent += len;
		t->res.bytes_sent += len;
		t->prog.have += len;
	}
	if (t->put_sending && t->put_next >= n) {
		t->put_sending = false;
		struct pn_msg m = {.type = PN_MSG_PUT_END};
		m.u.ref.req_id = t->put_req;
		m.u.ref.cid = *cid;
		(void)send_msg(t, &m);
	}
}

static void put_on_status(struct pn_transfer *t, const struct pn_msg_put_status *m)
{
	if (m->req_id != t->put_req || memcmp(&m->cid, &t->put_cid, sizeof m->cid)) {
		fail(t, PN_EPROTO, "server answered for another upload");
		return;
	}
	size_t bm_len = ((size_t)m->nchunks + 7) / 8;
	free(t->put_bitmap);
	t->put_bitmap = malloc(bm_len);
	if (!t->put_bitmap) {
		fail(t, PN_ENOMEM, "out of memory");
		return;
	}
	memcpy(t->put_bitmap, m->bitmap, bm_len);
	uint64_t have = 0;
	for (uint32_t i = 0; i < m->nchunks; i++)
		if (m->bitmap[i / 8] & (0x80 >> (i % 8)))
			have += pn_cid_chunk_len(&m->cid, i);
	if (have < m->cid.size)
		start_progress(t, &t->put_cid, t->put_name, have);
	if (t->result != PN_EAGAIN)
		return;
	if (!(m->flags & PN_PUT_HAVE_HASHES)) {
		int r = put_send_hashes(t);
		if (r != PN_OK)
			return;
	}
	t->put_next = 0;
	t->put_sending = true;
	put_pump(t);
}

static void put_on_done(struct pn_transfer *t, const struct pn_msg_ref *m)
{
	if (m->req_id != t->put_req || memcmp(&m->cid, &t->put_cid, sizeof m->cid)) {
		fail(t, PN_EPROTO, "server confirmed another upload");
		return;
	}
	stop_progress(t, true);
	close(t->put_fd);
	t->put_fd = -1;
	free(t->put_hashes);
	t->put_hashes = NULL;
	t->res.cid = t->put_cid;
	t->res.count++;
	if (t->ev.stored && t->result == PN_EAGAIN) {
		struct pn_put_info info = {.cid = t->put_cid, .name = t->put_name, .path = t->paths[t->cur],
					   .bytes_sent = t->put_sent};
		t->ev.stored(t->ev.ud, t, &info);
	}
	if (t->result != PN_EAGAIN)
		return; /* cancelled from the callback */
	t->cur++;
	put_next_file(t);
}

/* On a pool thread: the file's hash list and content ID. */
static void hash_work_cb(uv_work_t *w)
{
	struct pn_transfer *t = w->data;
	t->hash_result = store_hash_fd(t->put_fd, t->hash_size, &t->put_cid, &t->put_hashes);
}

/* Back on the loop: offer the file to the server with PUT_BEGIN. */
static void hash_done_cb(uv_work_t *w, int status)
{
	struct pn_transfer *t = w->data;
	int r = status == 0 ? t->hash_result : PN_ECANCELED;
	t->hashing = false;
	if (t->result != PN_EAGAIN) {
		transfer_maybe_end(t);
		return;
	}
	if (r != PN_OK) {
		fail(t, r, "cannot hash %s: %s", t->paths[t->cur], r == PN_ETOOBIG ? "larger than 64 GiB" : pn_strerror(r));
		transfer_maybe_end(t);
		return;
	}
	struct pn_msg m = {.type = PN_MSG_PUT_BEGIN};
	m.u.meta.req_id = t->put_req = ++t->next_req;
	m.u.meta.cid = t->put_cid;
	m.u.meta.name = t->put_name;
	m.u.meta.name_len = (uint16_t)strlen(t->put_name);
	(void)send_msg(t, &m);
}

/* Opens and checks the next file and hashes it on the thread pool (the loop
 * goes on meanwhile: other transfers, PINGs). */
static void put_next_file(struct pn_transfer *t)
{
	if (t->cur >= t->npaths) {
		t->res.seconds = (double)(uv_hrtime() - t->t0) / 1e9;
		finish(t, PN_OK);
		return;
	}
	const char *path = t->paths[t->cur];
	t->put_sent = 0;
	memset(&t->put_cid, 0, sizeof t->put_cid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fail(t, PN_EIO, "cannot read %s: %s", path, strerror(errno));
		return;
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		fail(t, PN_EINVAL, "%s is not a regular file", path);
		return;
	}
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof tmp, "%s", path);
	const char *base = basename(tmp);
	if (!pn_name_valid(base, strlen(base))) {
		char shown[PATH_MAX];
		close(fd);
		fail(t, PN_EINVAL, "%s: the file name is not valid on the network (1-255 bytes of UTF-8, no control or "
		     "invisible format characters)", pn_text_escape(path, strlen(path), shown, sizeof shown));
		return;
	}
	snprintf(t->put_name, sizeof t->put_name, "%s", base);
	t->put_fd = fd;
	t->hash_size = (uint64_t)st.st_size;
	t->hash_work.data = t;
	if (uv_queue_work(t->loop, &t->hash_work, hash_work_cb, hash_done_cb) != 0) {
		fail(t, PN_ENOMEM, "cannot hash %s: %s", path, pn_strerror(PN_ENOMEM));
		return;
	}
	t->hashing = true;
}

/* ---------------------------------------------------------------- ls */

static int ls_request(struct pn_transfer *t, uint32_t cursor)
{
	struct pn_msg m = {.type = PN_MSG_LIST_REQ};
	m.u.list_req.req_id = ++t->next_req;
	m.u.list_req.cursor = cursor;
	return send_msg(t, &m);
}

static void ls_on_list(struct pn_transfer *t, const struct pn_msg_list *l)
{
	size_t off = 0;
	struct pn_list_entry e;
	while (t->result == PN_EAGAIN && pn_list_next(l, &off, &e) == PN_OK) {
		char name[PN_NAME_MAX + 1];
		memcpy(name, e.name, e.name_len);
		name[e.name_len] = 0;
		t->res.count++;
		if (t->ev.entry)
			t->ev.entry(t->ev.ud, t, &e.cid, name);
	}
	if (t->result != PN_EAGAIN)
		return; /* cancelled from the callback */
	if (l->next_cursor) {
		(void)ls_request(t, l->next_cursor);
	} else {
		t->res.seconds = (double)(uv_hrtime() - t->t0) / 1e9;
		finish(t, PN_OK);
	}
}

/* ---------------------------------------------------------------- connection */

static void established_cb(struct pn_conn *c)
{
	struct pn_transfer *t = pn_conn_data(c);
	if (t->result != PN_EAGAIN)
		return;
	if (t->op == OP_GET) {
		t->was_connected = true;
		t->retry_ms = 0;
		t->last_err = 0;
		if (t->reconnects)
			PN_LOGI(&t->log, "connected to %s again (reconnection %u)", server_name(t), t->reconnects);
		engine_peer_established(t->engine, PEER_KEY, pn_conn_peer_id(c), 0, uv_now(t->loop));
		engine_pump(t);
		return;
	}
	struct pn_msg m = {.type = PN_MSG_HELLO};
	m.u.hello.version = PN_PROTOCOL_VERSION;
	m.u.hello.role = PN_ROLE_CLIENT;
	if (send_msg(t, &m) != PN_OK)
		return;
	if (t->op == OP_PUT)
		put_next_file(t);
	else
		(void)ls_request(t, 0);
}

static void on_error_msg(struct pn_transfer *t, uint32_t req_id, uint16_t code, const char *etext, size_t text_len)
{
	char text[PN_ERRMSG_MAX + 1];
	size_t n = 0;
	for (size_t i = 0; i < text_len && i < PN_ERRMSG_MAX; i++) /* never print a peer's control bytes */
		text[n++] = (etext[i] >= 0x20 && etext[i] != 0x7f) ? etext[i] : '?';
	text[n] = 0;
	/* A server that is stopping or full ends the connection with
	 * ERROR(0, BUSY): a download goes on as after a dropped connection,
	 * asking again on a new one (docs/PROTOCOL.md, Errors and closing). */
	if (req_id == 0 && code == PN_WERR_BUSY && t->op == OP_GET && t->was_connected) {
		PN_LOGI(&t->log, "server %s: %s; connecting again", server_name(t), text);
		return;
	}
	if (code == PN_WERR_NOT_FOUND && t->op == OP_GET) {
		char id[PN_CID_STR_LEN + 1];
		pn_cid_format(&t->cid, id);
		fail(t, PN_ENOTFOUND, "server %s has no content with ID %s", server_name(t), id);
		return;
	}
	fail(t, code == PN_WERR_NOT_FOUND ? PN_ENOTFOUND : PN_EPROTO, "server %s refused: %s%s", server_name(t),
	     text, partial_hint(t));
}

static int frame_cb(struct pn_conn *c, const uint8_t *body, size_t len)
{
	struct pn_transfer *t = pn_conn_data(c);
	struct pn_msg m;
	if (t->result != PN_EAGAIN)
		return PN_OK;
	int r = pn_msg_decode(body, len, &m);
	if (r != PN_OK) {
		(void)pn_conn_send_error(c, 0, PN_WERR_PROTOCOL, "malformed message"); /* before finish() closes */
		fail(t, PN_EPROTO, "server %s sent a malformed message (type 0x%02x)%s", server_name(t),
		     len ? body[0] : 0, partial_hint(t));
		return PN_OK;
	}
	if (t->op == OP_GET) {
		/* A chunk needs a free job (get_on_write): without one, leave the
		 * frame where it is and stop reading until a job is done (with
		 * none busy, get_on_write falls back to writing it here). */
		if (m.type == PN_MSG_CHUNK && t->jobs_busy && !job_free(t)) {
			t->read_paused = true;
			return PN_EAGAIN;
		}
		r = engine_on_msg(t->engine, PEER_KEY, &m, uv_now(t->loop));
		if (r == PN_ENOTSUP) {
			(void)pn_conn_send_error(c, 0, PN_WERR_PROTOCOL, "unexpected message");
			fail(t, PN_EPROTO, "server %s sent an unexpected message (type 0x%02x)", server_name(t), m.type);
		}
		engine_pump(t); /* within the frame: a WRITE_CHUNK points into body */
		return PN_OK;
	}
	switch (m.type) {
	case PN_MSG_HELLO:
		if (m.u.hello.role != PN_ROLE_SERVER) {
			(void)pn_conn_send_error(c, 0, PN_WERR_PROTOCOL, "unexpected role: LIST and PUT go to a server");
			fail(t, PN_EPROTO, "%s is not a peernet server (it is a %s)", server_name(t),
			     m.u.hello.role == PN_ROLE_NODE ? "peer node" : m.u.hello.role == PN_ROLE_DIRECTORY ? "directory" : "client");
		}
		return PN_OK;
	case PN_MSG_ERROR:
		on_error_msg(t, m.u.error.req_id, m.u.error.code, m.u.error.text, m.u.error.text_len);
		return PN_OK;
	case PN_MSG_PING: {
		struct pn_msg pong = {.type = PN_MSG_PONG};
		pong.u.ping.nonce = m.u.ping.nonce;
		(void)send_msg(t, &pong);
		return PN_OK;
	}
	case PN_MSG_PONG:
		return PN_OK;
	default:
		break;
	}
	if (t->op == OP_PUT && m.type == PN_MSG_PUT_STATUS && !t->hashing)
		put_on_status(t, &m.u.put_status);
	else if (t->op == OP_PUT && m.type == PN_MSG_PUT_DONE && !t->hashing)
		put_on_done(t, &m.u.ref);
	else if (t->op == OP_LS && m.type == PN_MSG_LIST)
		ls_on_list(t, &m.u.list);
	else
		fail(t, PN_EPROTO, "server %s sent an unexpected message (type 0x%02x)", server_name(t), m.type);
	return PN_OK;
}

static void writable_cb(struct pn_conn *c)
{
	struct pn_transfer *t = pn_conn_data(c);
	if (t->op == OP_PUT && t->result == PN_EAGAIN)
		put_pump(t);
	if (t->op == OP_GET && t->result == PN_EAGAIN) {
		engine_peer_writable(t->engine, PEER_KEY, uv_now(t->loop));
		engine_pump(t);
	}
}

static const struct pn_conn_cbs client_cbs;

/* A get whose connection went away for a reason the network gives (not the
 * server's word, not a wrong identity) dials again, and the engine resumes
 * from the chunks already verified; the engine's stall timer (timeout_ms
 * without a chunk) bounds it. */
static bool get_retryable(const struct pn_transfer *t, int err)
{
	if (t->op != OP_GET || !t->was_connected)
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

static uint32_t next_retry_ms(uint32_t ms)
{
	return ms ? (ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : ms * 2) : RETRY_FIRST_MS;
}

static void retry_cb(uv_timer_t *timer)
{
	struct pn_transfer *t = timer->data;
	if (t->result != PN_EAGAIN || t->conn)
		return;
	t->reconnects++;
	int r = pn_net_connect(t->net, t->cfg.server, t->cfg.server_id, &client_cbs, t, &t->conn);
	if (r == PN_OK)
		r = engine_peer_add(t->engine, PEER_KEY, true, t->cfg.server_id, uv_now(t->loop));
	if (r == PN_OK)
		return;
	t->last_err = r;
	if (t->conn) {
		pn_conn_close(t->conn, r);
		return; /* close_cb tries again */
	}
	t->retry_ms = next_retry_ms(t->retry_ms);
	uv_timer_start(&t->retry_timer, retry_cb, t->retry_ms, 0);
}

static void get_reconnect_later(struct pn_transfer *t, int err)
{
	t->last_err = err ? err : PN_ECLOSED;
	t->read_paused = false; /* that connection's paused frame is gone with it */
	engine_peer_closed(t->engine, PEER_KEY, uv_now(t->loop));
	engine_pump(t);
	if (t->result != PN_EAGAIN)
		return;
	t->retry_ms = next_retry_ms(t->retry_ms);
	PN_LOGI(&t->log, "connection to %s lost (%s); dialling again in %u ms", server_name(t),
		pn_strerror(t->last_err), t->retry_ms);
	uv_timer_start(&t->retry_timer, retry_cb, t->retry_ms, 0);
}

static void close_cb(struct pn_conn *c, int err)
{
	struct pn_transfer *t = pn_conn_data(c);
	t->conn = NULL;
	if (t->result != PN_EAGAIN)
		return;
	if (get_retryable(t, err)) {
		get_reconnect_later(t, err);
		return;
	}
	const char *srv = server_name(t);
	switch (err) {
	case PN_ENOTFOUND: /* the server's host name did not resolve (pn_net_connect looks it up off the loop) */
		fail(t, err, "cannot resolve the server address '%s'", t->cfg.server);
		break;
	case PN_ECONNREFUSED:
		fail(t, err, "cannot connect to %s: connection refused or unreachable; is `peernet serve` running there?%s",
		     srv, partial_hint(t));
		break;
	case PN_EPEERID:
		fail(t, err, "server at %s is not the one given by --server-id: %s; refusing to talk to it", srv,
		     pn_conn_tls_error(c));
		break;
	case PN_ETIMEDOUT:
		fail(t, err, "server %s stopped answering (timed out)%s", srv, partial_hint(t));
		break;
	case PN_ETLS:
		fail(t, err, "secure connection to %s failed (is it a peernet server?)%s", srv, partial_hint(t));
		break;
	default:
		fail(t, err ? err : PN_ECLOSED, "connection to %s lost: %s%s", srv, pn_strerror(err ? err : PN_ECLOSED),
		     partial_hint(t));
	}
}

static const struct pn_conn_cbs client_cbs = {
	.established_cb = established_cb,
	.frame_cb = frame_cb,
	.writable_cb = writable_cb,
	.close_cb = close_cb,
};

/* ---------------------------------------------------------------- lifetime */

/* Once the transfer is over and nothing it started is still running: closes
 * what is left (a partial download is kept only if it holds something worth
 * resuming), calls done, and frees the transfer. */
static void transfer_maybe_end(struct pn_transfer *t)
{
	if (t->result == PN_EAGAIN || t->closing || t->jobs_busy || t->hashing)
		return;
	for (unsigned i = 0; i < WRITE_POOL; i++)
		free(t->jobs[i].buf);
	engine_free(t->engine);
	if (t->part) {
		/* A temporary partial (PN_GET_STREAM without a path) is never resumed. */
		if (t->temp || store_partial_have_count(t->part) == 0)
			store_partial_discard(t->part);
		else
			store_partial_close(t->part);
		t->part = NULL;
	}
	if (t->put_fd >= 0)
		close(t->put_fd);
	if (t->have_id)
		pn_identity_free(&t->id);
	if (t->res.seconds == 0)
		t->res.seconds = (double)(uv_hrtime() - t->t0) / 1e9;
	t->res.name = t->res_name;
	t->res.path = t->res_path;
	if (t->result == PN_OK)
		t->why[0] = 0;
	else if (!t->why[0])
		set_why(t, "%s", pn_strerror(t->result));
	if (t->ev.done)
		t->ev.done(t->ev.ud, t, t->result, t->why, &t->res);
	for (size_t i = 0; i < t->npaths; i++)
		free(t->paths[i]);
	free(t->paths);
	free(t->put_bitmap);
	free(t->put_hashes);
	free(t->out);
	free((char *)t->cfg.server);
	free((char *)t->cfg.data_dir);
	free(t);
}

/* Checks the arguments and copies them; does no I/O. The timers are
 * initialised here, so that finish() always has something to close and
 * done always comes from the loop. */
static int transfer_new(uv_loop_t *loop, const struct pn_client_config *cfg, const struct pn_client_events *ev,
			enum op op, struct pn_transfer **out)
{
	*out = NULL;
	if (!loop || !cfg || !cfg->server || cfg->log_level > PN_LOG_DEBUG)
		return PN_EINVAL;
	struct pn_transfer *t = calloc(1, sizeof *t);
	if (!t)
		return PN_ENOMEM;
	t->cfg = *cfg;
	t->cfg.server = strdup(cfg->server);
	t->cfg.data_dir = cfg->data_dir ? strdup(cfg->data_dir) : NULL;
	t->out_cap = PN_FRAME_HDR + PN_FRAME_MAX;
	t->out = malloc(t->out_cap);
	if (!t->cfg.server || (cfg->data_dir && !t->cfg.data_dir) || !t->out) {
		free((char *)t->cfg.server);
		free((char *)t->cfg.data_dir);
		free(t->out);
		free(t);
		return PN_ENOMEM;
	}
	if (cfg->server_id) {
		memcpy(t->server_id_buf, cfg->server_id, PN_ID_BYTES);
		t->cfg.server_id = t->server_id_buf;
	}
	if (!t->cfg.timeout_ms)
		t->cfg.timeout_ms = DEFAULT_TIMEOUT_MS;
	t->window = cfg->window ? (cfg->window > MAX_WINDOW ? MAX_WINDOW : cfg->window) : DEFAULT_WINDOW;
	if (ev)
		t->ev = *ev;
	t->log = (struct pn_logger){.cb = t->ev.log, .ud = t->ev.ud, .level = cfg->log_level};
	t->loop = loop;
	t->op = op;
	t->result = PN_EAGAIN;
	t->put_fd = -1;
	t->t0 = uv_hrtime();
	uv_timer_init(loop, &t->engine_timer);
	uv_timer_init(loop, &t->retry_timer);
	uv_timer_init(loop, &t->progress_timer);
	t->engine_timer.data = t->retry_timer.data = t->progress_timer.data = t;
	*out = t;
	return PN_OK;
}

/* Loads the identity; fails the transfer (done follows) if it cannot. */
static int transfer_identity(struct pn_transfer *t)
{
	const char *dir = t->cfg.data_dir;
	int r = dir ? pn_identity_load_or_create(dir, &t->id) : pn_identity_ephemeral(&t->id);
	if (r != PN_OK) {
		fail(t, r, "cannot load an identity%s%s: %s", dir ? " from " : "", dir ? dir : "", pn_strerror(r));
		return r;
	}
	t->have_id = true;
	return PN_OK;
}

/* Sets up TLS and dials the server; fails the transfer if it cannot. */
static void transfer_connect(struct pn_transfer *t)
{
	if (t->result != PN_EAGAIN)
		return;
	struct pn_net_opts nopts;
	pn_net_opts_default(&nopts);
	nopts.log = &t->log;
	nopts.idle_timeout_ms = t->cfg.timeout_ms;
	nopts.handshake_timeout_ms = nopts.idle_timeout_ms < PN_HANDSHAKE_TIMEOUT_MS ? nopts.idle_timeout_ms
										: PN_HANDSHAKE_TIMEOUT_MS;
	nopts.write_stall_timeout_ms = nopts.idle_timeout_ms;
	int r = pn_net_new(t->loop, &t->id, &nopts, &t->net);
	if (r != PN_OK) {
		fail(t, r, "cannot set up TLS: %s", pn_strerror(r));
		return;
	}
	r = pn_net_connect(t->net, t->cfg.server, t->cfg.server_id, &client_cbs, t, &t->conn);
	if (r == PN_EINVAL)
		fail(t, r, "bad server address '%s': expected HOST:PORT", t->cfg.server);
	else if (r == PN_ENOTFOUND)
		fail(t, r, "cannot resolve the server address '%s'", t->cfg.server);
	else if (r != PN_OK)
		fail(t, r, "cannot connect to %s: %s", t->cfg.server, pn_strerror(r));
}

int pn_client_get(uv_loop_t *loop, const struct pn_client_config *cfg, const struct pn_client_events *ev,
		  const struct pn_cid *cid, const char *path, unsigned flags, pn_transfer **out)
{
	if (out)
		*out = NULL;
	if (!cid || cid->size > PN_MAX_FILE_SIZE || (flags & ~(PN_GET_OVERWRITE | PN_GET_STREAM)) ||
	    (path && (!*path || strlen(path) >= PATH_MAX)))
		return PN_EINVAL;
	struct pn_transfer *t;
	int r = transfer_new(loop, cfg, ev, OP_GET, &t);
	if (r != PN_OK)
		return r;
	t->cid = *cid;
	t->res.cid = *cid;
	t->nchunks = pn_cid_chunks(cid);
	t->flags = flags;
	t->stream = flags & PN_GET_STREAM;
	t->temp = t->stream && !path;
	if (out)
		*out = t;
	if (transfer_identity(t) != PN_OK)
		return PN_OK;
	if (path)
		snprintf(t->res_path, sizeof t->res_path, "%s", path);
	/* Open (and check) the output before asking the network for anything. */
	if ((path || t->temp) && (r = get_open_partial(t, NULL)) != PN_OK) {
		fail_keep(t, r);
		return PN_OK;
	}
	if ((r = get_start(t)) != PN_OK) {
		fail_keep(t, r);
		return PN_OK;
	}
	transfer_connect(t);
	return PN_OK;
}

int pn_client_put(uv_loop_t *loop, const struct pn_client_config *cfg, const struct pn_client_events *ev,
		  const char *const *paths, size_t npaths, pn_transfer **out)
{
	if (out)
		*out = NULL;
	if (!paths || !npaths)
		return PN_EINVAL;
	for (size_t i = 0; i < npaths; i++)
		if (!paths[i])
			return PN_EINVAL;
	char **copy = calloc(npaths, sizeof *copy);
	size_t ncopied = 0;
	while (copy && ncopied < npaths && (copy[ncopied] = strdup(paths[ncopied])))
		ncopied++;
	struct pn_transfer *t = NULL;
	int r = ncopied < npaths ? PN_ENOMEM : transfer_new(loop, cfg, ev, OP_PUT, &t);
	if (r != PN_OK) {
		for (size_t i = 0; i < ncopied; i++)
			free(copy[i]);
		free(copy);
		return r;
	}
	t->paths = copy;
	t->npaths = npaths;
	if (out)
		*out = t;
	if (transfer_identity(t) == PN_OK)
		transfer_connect(t);
	return PN_OK;
}

int pn_client_ls(uv_loop_t *loop, const struct pn_client_config *cfg, const struct pn_client_events *ev,
		 pn_transfer **out)
{
	if (out)
		*out = NULL;
	struct pn_transfer *t;
	int r = transfer_new(loop, cfg, ev, OP_LS, &t);
	if (r != PN_OK)
		return r;
	if (out)
		*out = t;
	if (transfer_identity(t) == PN_OK)
		transfer_connect(t);
	return PN_OK;
}

void pn_transfer_cancel(pn_transfer *t)
{
	if (!t || t->result != PN_EAGAIN)
		return;
	fail(t, PN_ECANCELED, "cancelled%s", partial_hint(t));
}
