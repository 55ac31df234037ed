/* Private to src/store/: file-system helpers and partial-transfer hooks the
 * content store needs. Nothing outside src/store/ includes this. */
#ifndef PN_STORE_INT_H
#define PN_STORE_INT_H
#ifndef PN_INTERNAL
#error "an internal header of libpeernet: a program includes <peernet.h> only"
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "peernet.h"

#define STORE_PART_MAGIC "PNPART01"
#define STORE_META_MAGIC "PNMETA01"
#define STORE_MAGIC_LEN 8
#define STORE_STATE_HASHES_DONE 0x01u /* flags bit0: hash list complete and verified */
#define STORE_TMP_SUFFIX ".tmp"
#define STORE_META_FIXED (STORE_MAGIC_LEN + PN_CID_BYTES + 2)      /* magic, cid, name_len */
#define STORE_STATE_FIXED (STORE_MAGIC_LEN + PN_CID_BYTES + 1 + 2) /* magic, cid, flags, name_len */
#define STORE_STATE_FLAGS_OFF (STORE_MAGIC_LEN + PN_CID_BYTES)

/* Sizes of the on-disk formats for a file of nchunks chunks. */
size_t store_bitmap_bytes(uint32_t nchunks);
size_t store_meta_max_len(uint32_t nchunks);
size_t store_state_max_len(uint32_t nchunks);

/* Encoders: *out is malloc'd, the caller frees it. PN_EINVAL for a bad name. */
PN_MUST_CHECK int store_meta_encode(const struct pn_cid *cid, const char *name, const uint8_t *hashes,
				    uint8_t **out, size_t *out_len);
PN_MUST_CHECK int store_state_encode(const struct pn_cid *cid, uint8_t flags, const char *name,
				     const uint8_t *hashes, const uint8_t *bitmap, uint8_t **out, size_t *out_len);

/* errno of a failed write / open, as a PN_E* code. */
int store_err_write(int e);
int store_err_open(int e);

/* pwrite / pread the whole buffer at off, retrying short transfers.
 * Read: PN_EIO on an error or end of file before len bytes. */
PN_MUST_CHECK int store_write_all(int fd, const void *buf, size_t len, uint64_t off);
PN_MUST_CHECK int store_read_all(int fd, void *buf, size_t len, uint64_t off);

/* fsync the directory holding path (or the directory itself). */
PN_MUST_CHECK int store_fsync_parent(const char *path);
PN_MUST_CHECK int store_fsync_dir(const char *dir);

/* Reads a whole regular file of at most max bytes into a malloc'd buffer the
 * caller frees. PN_ETOOBIG if larger, PN_ENOTFOUND if missing. */
PN_MUST_CHECK int store_read_file(const char *path, size_t max, uint8_t **out, size_t *len);

/* Writes path atomically: path.tmp, fsync, rename over path, fsync the directory. */
PN_MUST_CHECK int store_write_file_atomic(const char *path, const void *buf, size_t len, int mode);

/* Moves from to to. Without overwrite an existing `to` gives PN_EEXIST and
 * nothing moves (renameat2 RENAME_NOREPLACE, else link+unlink, else an
 * O_EXCL placeholder renamed over). With overwrite a plain rename. */
PN_MUST_CHECK int store_move(const char *from, const char *to, bool overwrite);

/* Copies len bytes of src_fd from offset 0 to dst_fd (copy_file_range, then
 * read/write). PN_EIO if the source ends early. */
PN_MUST_CHECK int store_copy_fd(int src_fd, int dst_fd, uint64_t len);

/* malloc'd "a/b" or "a/b<suffix>"; NULL on allocation failure. */
char *store_path_join(const char *dir, const char *file, const char *suffix);

/* Partial hooks for the store: finalize moves the data into place and
 * removes the state file but keeps p alive (other uploaders may still hold
 * it); free releases p without touching the files. */
struct store_partial;
PN_MUST_CHECK int store_partial_finalize(struct store_partial *p, const char *final_path, bool overwrite);
bool store_partial_finalized(const struct store_partial *p);
void store_partial_free(struct store_partial *p);
const uint8_t *store_partial_hashes(const struct store_partial *p);

#endif
