/* Content: chunking, the hash tree, content IDs, and the on-disk store with
 * resumable partial transfers and atomic completion.
 *
 * Hash tree: leaf i = SHA-256(chunk i). The tree is built level by level:
 * a pair (L, R) becomes SHA-256(0x01 || L || R); an odd node at the end of a
 * level is carried up unchanged. The root of a one-chunk file is that chunk's
 * hash. A 0-byte file is one 0-byte chunk. (Exact rules: docs/PROTOCOL.md.)
 */
#ifndef PN_STORE_H
#define PN_STORE_H
#ifndef PN_INTERNAL
#error "an internal header of libpeernet: a program includes <peernet.h> only"
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "peernet.h"
#include "util/log.h"

/* Root over n chunk hashes (n >= 1), hashes laid out as n*32 bytes.
 * PN_OK, or PN_ENOMEM when hashing could not allocate (root is then unset). */
PN_MUST_CHECK int store_tree_root(const uint8_t *hashes, uint32_t n, uint8_t root[PN_HASH_BYTES]);

/* Hashes a whole open file (reading from offset 0, `size` bytes). On success
 * *hashes_out is a malloc'd array of chunks(size)*32 bytes the caller frees.
 * Returns PN_ETOOBIG above PN_MAX_FILE_SIZE, PN_EIO on a read error or short file. */
PN_MUST_CHECK int store_hash_fd(int fd, uint64_t size, struct pn_cid *cid, uint8_t **hashes_out);

/* Checks one chunk against its expected hash (thread-safe, no state):
 * PN_OK, PN_ECORRUPT when it does not match, PN_ENOMEM when it could not be
 * hashed (the data is then not known to be bad). */
PN_MUST_CHECK int store_chunk_check(const uint8_t expected[PN_HASH_BYTES], const void *data, size_t len);
/* store_chunk_check() == PN_OK. */
bool store_chunk_ok(const uint8_t expected[PN_HASH_BYTES], const void *data, size_t len);

/* ---- partial transfer ----
 * A download (or an upload on the server) in progress: a data file written at
 * chunk offsets, and a state file that records the hash list and which chunks
 * are verified on disk. State file layout (all big-endian), see PROTOCOL.md:
 *   "PNPART01" | cid (40) | u8 flags (bit0 hashes complete) | u16 name_len | name |
 *   hashes (nchunks*32, zero until known) | bitmap (ceil(nchunks/8), MSB first)
 */
struct store_partial;

/* Opens or creates the partial transfer at data_path / state_path for cid.
 * An existing state file for another cid, or one that does not parse, is
 * replaced (the data file is truncated). name may be NULL (keep the stored one).
 * The caller owns *out and ends it with store_partial_close() (files kept)
 * or store_partial_complete(). The partial logs through a copy of *lg
 * (NULL: silent). */
PN_MUST_CHECK int store_partial_open_log(const char *data_path, const char *state_path,
					 const struct pn_cid *cid, const char *name,
					 const struct pn_logger *lg, struct store_partial **out);
/* store_partial_open_log() without a logger: silent. */
PN_MUST_CHECK int store_partial_open(const char *data_path, const char *state_path,
				     const struct pn_cid *cid, const char *name,
				     struct store_partial **out);
void store_partial_close(struct store_partial *p);
/* Closes and deletes both files. */
void store_partial_discard(struct store_partial *p);

const struct pn_cid *store_partial_cid(const struct store_partial *p);
const char *store_partial_name(const struct store_partial *p); /* "" if none */
/* Where its data lives until it completes (chunks at index * PN_CHUNK_SIZE). */
const char *store_partial_data_path(const struct store_partial *p);
uint32_t store_partial_nchunks(const struct store_partial *p);

/* Hash list. add_hashes stores hashes[first..first+count); when every hash is
 * known it checks the root against the cid: PN_ECORRUPT (and forgets them all)
 * on mismatch. */
bool store_partial_has_hashes(const struct store_partial *p);
PN_MUST_CHECK int store_partial_add_hashes(struct store_partial *p, uint32_t first, uint32_t count,
					   const uint8_t *hashes);
/* The first range of at most max_count hashes still unknown; false if none. */
bool store_partial_missing_hashes(const struct store_partial *p, uint32_t max_count,
				  uint32_t *first, uint32_t *count);
/* Pointer to hash i (valid only if store_partial_has_hashes). */
const uint8_t *store_partial_hash(const struct store_partial *p, uint32_t index);

/* Re-hashes every chunk the state file says is on disk, and forgets those
 * that fail. Sets *bytes_ok to the verified bytes kept. Call after the hash
 * list is complete when resuming. */
PN_MUST_CHECK int store_partial_verify_existing(struct store_partial *p, uint64_t *bytes_ok);

bool store_partial_has_chunk(const struct store_partial *p, uint32_t index);
uint32_t store_partial_have_count(const struct store_partial *p);
const uint8_t *store_partial_bitmap(const struct store_partial *p); /* ceil(n/8) bytes */

/* Verifies the chunk against its hash (PN_ECORRUPT, nothing written, on
 * mismatch), writes it, and records it. PN_ENOSPC / PN_EIO on write errors.
 * Requires the hash list. */
PN_MUST_CHECK int store_partial_write_chunk(struct store_partial *p, uint32_t index,
					    const void *data, size_t len);
/* Same, for data the caller has already verified with store_chunk_ok(). */
PN_MUST_CHECK int store_partial_write_verified(struct store_partial *p, uint32_t index,
					       const void *data, size_t len);

/* The two halves of store_partial_write_verified(), for an owner that
 * writes chunks on other threads. store_partial_pwrite_chunk() only writes
 * the data of chunk index (already verified by the caller) at its offset in
 * the data file: it is thread-safe, touches no state, and may run on any
 * thread while the partial is open (never during close, discard or
 * complete). PN_EINVAL for a bad index or length, PN_ENOSPC / PN_EIO on
 * write errors. Once it returned PN_OK, store_partial_mark_verified(), on
 * the partial's own thread, records the chunk (in memory and in the state
 * file: data before bit); a chunk already recorded is PN_OK. Requires the
 * hash list. */
PN_MUST_CHECK int store_partial_pwrite_chunk(const struct store_partial *p, uint32_t index, const void *data,
					     size_t len);
PN_MUST_CHECK int store_partial_mark_verified(struct store_partial *p, uint32_t index);

/* With every chunk present: fsync the data, rename it to final_path, remove
 * the state file, free p. If final_path exists and !overwrite: PN_EEXIST and p
 * stays open. PN_EAGAIN (p open) if a chunk is missing. On other errors p
 * stays open too. */
PN_MUST_CHECK int store_partial_complete(struct store_partial *p, const char *final_path, bool overwrite);

/* Reads chunk `index` of a partial that has it (for serving). buf holds
 * PN_CHUNK_SIZE bytes; *len gets the chunk's length. */
PN_MUST_CHECK int store_partial_read_chunk(struct store_partial *p, uint32_t index, uint8_t *buf, uint32_t *len);

/* ---- content store in a data directory ----
 * DIR/objects/<cid>       complete content
 * DIR/objects/<cid>.meta  "PNMETA01" | cid (40) | u16 name_len | name | hashes
 * DIR/incoming/<cid>.part, <cid>.state   uploads in progress
 */
struct store;

struct store_object {
	struct pn_cid cid;
	char name[PN_NAME_MAX + 1];
	uint32_t nchunks;
	uint8_t *hashes; /* nchunks*32, owned by the store */
	uint64_t added;  /* insertion sequence number: listing order */
};

/* Opens (creating if needed) the store in dir and loads every objects/<cid>.meta
 * whose hash list matches its cid; others are logged and skipped. The store
 * and its partials log through a copy of *lg (NULL: silent). */
PN_MUST_CHECK int store_open_log(const char *dir, const struct pn_logger *lg, struct store **out);
/* store_open_log() without a logger: silent. */
PN_MUST_CHECK int store_open(const char *dir, struct store **out);
void store_close(struct store *s);

size_t store_count(const struct store *s);
/* Object i in insertion order (0 <= i < store_count). */
const struct store_object *store_at(const struct store *s, size_t i);
const struct store_object *store_get(const struct store *s, const struct pn_cid *cid);
uint64_t store_total_bytes(const struct store *s);

/* Reads chunk `index` of a complete object into buf (PN_CHUNK_SIZE bytes);
 * *len gets its length. Keeps a small cache of open descriptors. */
PN_MUST_CHECK int store_read_chunk(struct store *s, const struct store_object *o, uint32_t index,
				   uint8_t *buf, uint32_t *len);

/* Starts or joins an upload of cid. If the object is already complete returns
 * PN_EEXIST. Otherwise returns a partial shared by every uploader of the same
 * cid (reference counted): release it with store_put_release(). */
PN_MUST_CHECK int store_put_begin(struct store *s, const struct pn_cid *cid, const char *name,
				  struct store_partial **out);
void store_put_release(struct store *s, struct store_partial *p);
/* When every chunk is present: makes the object complete (fsync, rename,
 * meta written atomically), adds it to the index and returns it in *out (may be NULL).
 * The partial is released by this call on success. PN_EAGAIN if chunks are missing. */
PN_MUST_CHECK int store_put_finish(struct store *s, struct store_partial *p, const struct store_object **out);

/* Hashes an existing regular file and copies it into the store (a snapshot:
 * the copy is what gets hashed, so a file changing meanwhile cannot give a
 * wrong ID). name NULL means the path's last component. On success *out (may
 * be NULL) is the new object. If the content is already stored: PN_EEXIST and
 * *out is the existing object. PN_EINVAL for a bad name or a non-regular file. */
PN_MUST_CHECK int store_add_local(struct store *s, const char *path, const char *name,
				  const struct store_object **out);

/* Deletes a complete object: its .meta first (so a crash in between leaves no
 * object that store_open would load), then its data. Pointers to it become
 * invalid. PN_ENOTFOUND if not stored, PN_EIO if the .meta cannot be removed
 * (the object then stays). */
PN_MUST_CHECK int store_remove(struct store *s, const struct pn_cid *cid);

/* A usable file name: pn_name_valid() (util/text.h: at most PN_NAME_MAX bytes
 * of valid UTF-8, no control character, no '/' or backslash, not "." or
 * ".."), or the empty name ("unknown"). */
bool store_name_valid(const char *name, size_t len);

/* Sets the name recorded in a partial's state file (rewritten atomically).
 * PN_EINVAL if the name is not valid. */
PN_MUST_CHECK int store_partial_set_name(struct store_partial *p, const char *name);

/* Parsers of the two on-disk formats, exposed for tests and fuzzing. They
 * never trust the file: every length is checked. Both return PN_EPROTO for a
 * malformed file (bad magic, truncated, trailing bytes, bad name, a field out
 * of range), PN_ETOOBIG for a size above PN_MAX_FILE_SIZE and PN_ECORRUPT when
 * a hash list that must be complete does not give the cid's root.
 * store_meta_parse: on success *hashes_out is malloc'd (chunks*32), caller frees. */
PN_MUST_CHECK int store_meta_parse(const uint8_t *buf, size_t len, struct pn_cid *cid, char name[PN_NAME_MAX + 1],
				   uint8_t **hashes_out);

/* A parsed state file. hashes and bitmap point into the parsed buffer. The
 * bitmap's bits past nchunks are zero; it is all zero unless the hash list is
 * complete (flags bit0), in which case the hashes give the cid's root. */
struct store_state {
	struct pn_cid cid;
	uint8_t flags;
	char name[PN_NAME_MAX + 1];
	uint32_t nchunks;
	const uint8_t *hashes; /* nchunks*32; an all-zero entry is unknown */
	const uint8_t *bitmap; /* ceil(nchunks/8), MSB first */
};
PN_MUST_CHECK int store_state_parse(const uint8_t *buf, size_t len, struct store_state *out);

#endif
