/* Partial transfers: a data file written at chunk offsets plus a state file
 * holding the hash list and the bitmap of verified chunks (format in store.h
 * and docs/PROTOCOL.md).
 *
 * Crash rules: a chunk's data is written before its bitmap bit, and the
 * "hashes complete" flag only after the hash list is on disk and verified.
 * Nothing is fsynced per chunk: after a crash the bitmap may claim a chunk
 * whose data never reached the disk, which is why a resume calls
 * store_partial_verify_existing(). A partial is used from one thread,
 * except store_partial_pwrite_chunk(), which another thread may run while
 * the owner's thread goes on (the owner then records the chunk with
 * store_partial_mark_verified() once the write returned).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include "store/store.h"
#include "store/store_int.h"
#include "util/log.h"

#define DATA_FILE_MODE 0644
#define STATE_FILE_MODE 0644

struct store_partial {
	struct pn_cid cid;
	uint32_t nchunks;
	char name[PN_NAME_MAX + 1];
	char *data_path;
	char *state_path;
	int data_fd;
	int state_fd;
	uint8_t *hashes;       /* nchunks*32; unknown entries are zero */
	uint8_t *hash_known;   /* in memory only: which entries are known */
	uint32_t hashes_known;
	bool hashes_done;      /* every hash known and the root verified */
	uint8_t *have;         /* verified chunks, as in the state file */
	uint32_t have_count;
	bool finalized;        /* data moved to its final path, state file gone */
	struct pn_logger log;  /* a copy of the opener's; cb NULL: silent */
};

static bool bit_get(const uint8_t *bits, uint32_t i)
{
	return bits[i / 8] & (0x80u >> (i % 8));
}

static void bit_set(uint8_t *bits, uint32_t i)
{
	bits[i / 8] |= (uint8_t)(0x80u >> (i % 8));
}

static void bit_clear(uint8_t *bits, uint32_t i)
{
	bits[i / 8] &= (uint8_t)~(0x80u >> (i % 8));
}

static uint64_t hashes_offset(const struct store_partial *p)
{
	return STORE_STATE_FIXED + strlen(p->name);
}

static uint64_t bitmap_offset(const struct store_partial *p)
{
	return hashes_offset(p) + (uint64_t)p->nchunks * PN_HASH_BYTES;
}

static uint8_t state_flags(const struct store_partial *p)
{
	return p->hashes_done ? STORE_STATE_HASHES_DONE : 0;
}

void store_partial_free(struct store_partial *p)
{
	if (!p)
		return;
	if (p->data_fd >= 0)
		close(p->data_fd);
	if (p->state_fd >= 0)
		close(p->state_fd);
	free(p->data_path);
	free(p->state_path);
	free(p->hashes);
	free(p->hash_known);
	free(p->have);
	free(p);
}

static struct store_partial *partial_alloc(const char *data_path, const char *state_path, const struct pn_cid *cid,
					   const struct pn_logger *lg)
{
	struct store_partial *p = calloc(1, sizeof *p);
	size_t bitmap_len;

	if (!p)
		return NULL;
	if (lg)
		p->log = *lg;
	p->data_fd = -1;
	p->state_fd = -1;
	p->cid = *cid;
	p->nchunks = pn_cid_chunks(cid);
	bitmap_len = store_bitmap_bytes(p->nchunks);
	p->data_path = strdup(data_path);
	p->state_path = strdup(state_path);
	p->hashes = calloc(p->nchunks, PN_HASH_BYTES);
	p->hash_known = calloc(1, bitmap_len);
	p->have = calloc(1, bitmap_len);
	if (!p->data_path || !p->state_path || !p->hashes || !p->hash_known || !p->have) {
		store_partial_free(p);
		return NULL;
	}
	return p;
}

/* Writes the whole state file from memory (atomically) and reopens it. */
static int state_rewrite(struct store_partial *p)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int err, fd;

	err = store_state_encode(&p->cid, state_flags(p), p->name, p->hashes, p->have, &buf, &len);
	if (err)
		return err;
	err = store_write_file_atomic(p->state_path, buf, len, STATE_FILE_MODE);
	free(buf);
	if (err)
		return err;
	fd = open(p->state_path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return store_err_open(errno);
	if (p->state_fd >= 0)
		close(p->state_fd);
	p->state_fd = fd;
	return 0;
}

/* Loads a state file for p->cid into p. false: none, or not usable. */
static bool state_load(struct store_partial *p, int *fatal)
{
	struct store_state st;
	uint8_t *buf = NULL;
	size_t len = 0;
	int err;

	*fatal = 0;
	err = store_read_file(p->state_path, store_state_max_len(p->nchunks), &buf, &len);
	if (err == PN_ENOTFOUND)
		return false;
	if (err == PN_ETOOBIG) {
		PN_LOGW(&p->log, "store: %s is too large for its transfer: starting afresh", p->state_path);
		return false;
	}
	if (err) {
		*fatal = err;
		return false;
	}
	err = store_state_parse(buf, len, &st);
	if (err == PN_ENOMEM) {
		*fatal = err;
		goto fail;
	}
	if (err) {
		PN_LOGW(&p->log, "store: %s unusable (%s): starting afresh", p->state_path, pn_strerror(err));
		goto fail;
	}
	if (st.cid.size != p->cid.size || memcmp(st.cid.root, p->cid.root, PN_HASH_BYTES) != 0) {
		PN_LOGW(&p->log, "store: %s belongs to another transfer: starting afresh", p->state_path);
		goto fail;
	}
	memcpy(p->name, st.name, sizeof p->name);
	memcpy(p->hashes, st.hashes, (size_t)p->nchunks * PN_HASH_BYTES);
	memcpy(p->have, st.bitmap, store_bitmap_bytes(p->nchunks));
	p->hashes_done = st.flags & STORE_STATE_HASHES_DONE;
	for (uint32_t i = 0; i < p->nchunks; i++) {
		static const uint8_t zero[PN_HASH_BYTES];

		if (p->hashes_done || memcmp(p->hashes + (size_t)i * PN_HASH_BYTES, zero, PN_HASH_BYTES) != 0) {
			bit_set(p->hash_known, i);
			p->hashes_known++;
		}
		if (bit_get(p->have, i))
			p->have_count++;
	}
	free(buf);
	return true;
fail:
	free(buf);
	return false;
}

int store_partial_open(const char *data_path, const char *state_path, const struct pn_cid *cid,
		       const char *name, struct store_partial **out)
{
	return store_partial_open_log(data_path, state_path, cid, name, NULL, out);
}

/* Opens or creates the partial; see store.h. Resources: p, the data file and
 * the state file, released together on failure. */
int store_partial_open_log(const char *data_path, const char *state_path, const struct pn_cid *cid,
			   const char *name, const struct pn_logger *lg, struct store_partial **out)
{
	struct store_partial *p;
	struct stat st;
	bool resume, rewrite;
	int err, fatal;

	if (!data_path || !state_path || !cid || !out)
		return PN_EINVAL;
	if (cid->size > PN_MAX_FILE_SIZE)
		return PN_ETOOBIG;
	if (name && !store_name_valid(name, strlen(name)))
		return PN_EINVAL;
	p = partial_alloc(data_path, state_path, cid, lg);
	if (!p)
		return PN_ENOMEM;
	resume = state_load(p, &fatal);
	if (fatal) {
		err = fatal;
		goto fail;
	}
	if (!resume) {
		memset(p->hashes, 0, (size_t)p->nchunks * PN_HASH_BYTES);
		memset(p->hash_known, 0, store_bitmap_bytes(p->nchunks));
		memset(p->have, 0, store_bitmap_bytes(p->nchunks));
		p->hashes_known = p->have_count = 0;
		p->hashes_done = false;
		p->name[0] = '\0';
	}
	rewrite = !resume;
	if (name && strcmp(name, p->name) != 0) {
		snprintf(p->name, sizeof p->name, "%s", name);
		rewrite = true;
	}

	/* Never through a symbolic link planted where the partial goes. */
	p->data_fd = open(data_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | (resume ? 0 : O_TRUNC), DATA_FILE_MODE);
	if (p->data_fd < 0) {
		err = store_err_open(errno);
		goto fail;
	}
	if (fstat(p->data_fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		err = PN_EIO;
		goto fail;
	}
	/* Sparse: no space is reserved, so a later write may still hit ENOSPC. */
	if ((uint64_t)st.st_size != p->cid.size && ftruncate(p->data_fd, (off_t)p->cid.size) < 0) {
		err = store_err_write(errno);
		goto fail;
	}
	if (rewrite) {
		err = state_rewrite(p); /* a fresh file, or one with the new name */
		if (err)
			goto fail;
	} else {
		p->state_fd = open(state_path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
		if (p->state_fd < 0) {
			err = store_err_open(errno);
			goto fail;
		}
	}
	*out = p;
	return 0;
fail:
	store_partial_free(p);
	return err;
}

int store_partial_set_name(struct store_partial *p, const char *name)
{
	char old[PN_NAME_MAX + 1];
	int err;

	if (!name || !store_name_valid(name, strlen(name)) || p->finalized)
		return PN_EINVAL;
	if (!strcmp(name, p->name))
		return 0;
	memcpy(old, p->name, sizeof old);
	snprintf(p->name, sizeof p->name, "%s", name);
	err = state_rewrite(p);
	if (err)
		memcpy(p->name, old, sizeof old);
	return err;
}

void store_partial_close(struct store_partial *p)
{
	store_partial_free(p);
}

void store_partial_discard(struct store_partial *p)
{
	if (!p)
		return;
	if (!p->finalized) {
		unlink(p->data_path);
		unlink(p->state_path);
	}
	store_partial_free(p);
}

const struct pn_cid *store_partial_cid(const struct store_partial *p) { return &p->cid; }
const char *store_partial_name(const struct store_partial *p) { return p->name; }
uint32_t store_partial_nchunks(const struct store_partial *p) { return p->nchunks; }
bool store_partial_has_hashes(const struct store_partial *p) { return p->hashes_done; }
const uint8_t *store_partial_hashes(const struct store_partial *p) { return p->hashes; }
bool store_partial_finalized(const struct store_partial *p) { return p->finalized; }
uint32_t store_partial_have_count(const struct store_partial *p) { return p->have_count; }
const uint8_t *store_partial_bitmap(const struct store_partial *p) { return p->have; }

const uint8_t *store_partial_hash(const struct store_partial *p, uint32_t index)
{
	return index < p->nchunks ? p->hashes + (size_t)index * PN_HASH_BYTES : NULL;
}

bool store_partial_has_chunk(const struct store_partial *p, uint32_t index)
{
	return index < p->nchunks && bit_get(p->have, index);
}

/* The hash list failed its root: forget every entry, in memory and on disk. */
static int forget_hashes(struct store_partial *p)
{
	memset(p->hashes, 0, (size_t)p->nchunks * PN_HASH_BYTES);
	memset(p->hash_known, 0, store_bitmap_bytes(p->nchunks));
	p->hashes_known = 0;
	return store_write_all(p->state_fd, p->hashes, (size_t)p->nchunks * PN_HASH_BYTES, hashes_offset(p));
}

/* Every hash is known: check the root, then make the hash list durable
 * before the flag that says it is complete. */
static int hashes_finish(struct store_partial *p)
{
	uint8_t root[PN_HASH_BYTES], flags = STORE_STATE_HASHES_DONE;
	int err;

	err = store_tree_root(p->hashes, p->nchunks, root);
	if (err)
		return err; /* not known to be wrong: keep the hashes */
	if (CRYPTO_memcmp(root, p->cid.root, PN_HASH_BYTES) != 0) {
		err = forget_hashes(p);
		if (err)
			PN_LOGW(&p->log, "store: cannot clear the hash list of %s: %s", p->state_path, pn_strerror(err));
		return PN_ECORRUPT;
	}
	if (fdatasync(p->state_fd) < 0)
		return store_err_write(errno);
	err = store_write_all(p->state_fd, &flags, 1, STORE_STATE_FLAGS_OFF);
	if (err)
		return err;
	p->hashes_done = true;
	return 0;
}

int store_partial_add_hashes(struct store_partial *p, uint32_t first, uint32_t count, const uint8_t *hashes)
{
	size_t off = (size_t)first * PN_HASH_BYTES, len = (size_t)count * PN_HASH_BYTES;
	int err;

	if (p->finalized || first > p->nchunks || count > p->nchunks - first || (count && !hashes))
		return PN_EINVAL;
	if (p->hashes_done)
		return CRYPTO_memcmp(p->hashes + off, hashes, len) == 0 ? 0 : PN_ECORRUPT;
	if (count == 0)
		return 0;
	memcpy(p->hashes + off, hashes, len);
	err = store_write_all(p->state_fd, hashes, len, hashes_offset(p) + off);
	if (err)
		return err;
	for (uint32_t i = first; i < first + count; i++) {
		if (!bit_get(p->hash_known, i)) {
			bit_set(p->hash_known, i);
			p->hashes_known++;
		}
	}
	if (p->hashes_known == p->nchunks)
		return hashes_finish(p);
	return 0;
}

bool store_partial_missing_hashes(const struct store_partial *p, uint32_t max_count, uint32_t *first,
				  uint32_t *count)
{
	uint32_t i = 0, n = 0;

	if (p->hashes_done || max_count == 0)
		return false;
	while (i < p->nchunks && bit_get(p->hash_known, i))
		i++;
	if (i == p->nchunks)
		return false;
	while (i + n < p->nchunks && n < max_count && !bit_get(p->hash_known, i + n))
		n++;
	*first = i;
	*count = n;
	return true;
}

/* Writes bit `index` of the bitmap as it is in memory into the state file. */
static int bitmap_sync_byte(struct store_partial *p, uint32_t index)
{
	return store_write_all(p->state_fd, &p->have[index / 8], 1, bitmap_offset(p) + index / 8);
}

int store_partial_verify_existing(struct store_partial *p, uint64_t *bytes_ok)
{
	uint8_t *buf;
	uint64_t ok = 0;
	int err = 0;

	if (p->finalized)
		return PN_EINVAL;
	if (!p->hashes_done) {
		*bytes_ok = 0; /* the state parser guarantees no chunk is claimed */
		return 0;
	}
	buf = malloc(PN_CHUNK_SIZE);
	if (!buf)
		return PN_ENOMEM;
	for (uint32_t i = 0; i < p->nchunks; i++) {
		uint32_t len = pn_cid_chunk_len(&p->cid, i);

		if (!bit_get(p->have, i))
			continue;
		/* A chunk the file is too short for is as bad as a wrong one. */
		int check = store_read_all(p->data_fd, buf, len, (uint64_t)i * PN_CHUNK_SIZE);
		if (check == 0)
			check = store_chunk_check(p->hashes + (size_t)i * PN_HASH_BYTES, buf, len);
		if (check == PN_OK) {
			ok += len;
			continue;
		}
		if (check == PN_ENOMEM) {
			err = check; /* not known to be bad: keep it */
			break;
		}
		PN_LOGI(&p->log, "store: chunk %u of %s failed verification: fetching it again", i, p->data_path);
		bit_clear(p->have, i);
		p->have_count--;
		err = bitmap_sync_byte(p, i);
		if (err)
			break;
	}
	free(buf);
	if (!err)
		*bytes_ok = ok;
	return err;
}

/* Thread-safe (see store.h): reads only what never changes while the
 * partial is open (cid, nchunks, the data file's descriptor). */
int store_partial_pwrite_chunk(const struct store_partial *p, uint32_t index, const void *data, size_t len)
{
	if (index >= p->nchunks || len != pn_cid_chunk_len(&p->cid, index))
		return PN_EINVAL;
	return store_write_all(p->data_fd, data, len, (uint64_t)index * PN_CHUNK_SIZE);
}

/* The caller's store_partial_pwrite_chunk() returned before this runs, so
 * the data precedes the bit in the state file (the crash rule above). */
int store_partial_mark_verified(struct store_partial *p, uint32_t index)
{
	int err;

	if (!p->hashes_done || p->finalized || index >= p->nchunks)
		return PN_EINVAL;
	if (bit_get(p->have, index))
		return 0;
	bit_set(p->have, index);
	err = bitmap_sync_byte(p, index);
	if (err) {
		bit_clear(p->have, index);
		return err;
	}
	p->have_count++;
	return 0;
}

int store_partial_write_verified(struct store_partial *p, uint32_t index, const void *data, size_t len)
{
	int err;

	if (!p->hashes_done || index >= p->nchunks || len != pn_cid_chunk_len(&p->cid, index))
		return PN_EINVAL;
	/* Already here (always, once finalized): a late duplicate is harmless. */
	if (bit_get(p->have, index))
		return 0;
	err = store_partial_pwrite_chunk(p, index, data, len);
	if (err)
		return err;
	return store_partial_mark_verified(p, index);
}

int store_partial_write_chunk(struct store_partial *p, uint32_t index, const void *data, size_t len)
{
	if (!p->hashes_done || index >= p->nchunks || len != pn_cid_chunk_len(&p->cid, index))
		return PN_EINVAL;
	int err = store_chunk_check(p->hashes + (size_t)index * PN_HASH_BYTES, data, len);

	if (err)
		return err;
	return store_partial_write_verified(p, index, data, len);
}

int store_partial_read_chunk(struct store_partial *p, uint32_t index, uint8_t *buf, uint32_t *len)
{
	uint32_t clen;
	int err;

	if (index >= p->nchunks)
		return PN_EINVAL;
	if (!bit_get(p->have, index))
		return PN_ENOTFOUND;
	clen = pn_cid_chunk_len(&p->cid, index);
	err = store_read_all(p->data_fd, buf, clen, (uint64_t)index * PN_CHUNK_SIZE);
	if (err)
		return err;
	*len = clen;
	return 0;
}

int store_partial_finalize(struct store_partial *p, const char *final_path, bool overwrite)
{
	int err;

	if (p->finalized || !final_path)
		return PN_EINVAL;
	if (p->have_count != p->nchunks)
		return PN_EAGAIN;
	if (fdatasync(p->data_fd) < 0)
		return store_err_write(errno);
	err = store_move(p->data_path, final_path, overwrite);
	if (err)
		return err;
	/* The data is durable and in place; a lost directory entry update is
	 * the only risk left, and the state file still describes the data. */
	err = store_fsync_parent(final_path);
	if (err)
		PN_LOGW(&p->log, "store: cannot sync the directory of %s: %s", final_path, pn_strerror(err));
	close(p->state_fd);
	p->state_fd = -1;
	if (unlink(p->state_path) < 0 && errno != ENOENT)
		PN_LOGW(&p->log, "store: cannot remove %s: %s", p->state_path, strerror(errno));
	p->finalized = true;
	return 0;
}

int store_partial_complete(struct store_partial *p, const char *final_path, bool overwrite)
{
	int err = store_partial_finalize(p, final_path, overwrite);

	if (err)
		return err;
	store_partial_free(p);
	return 0;
}

const char *store_partial_data_path(const struct store_partial *p)
{
	return p->data_path;
}
