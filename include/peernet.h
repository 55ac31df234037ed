/* peernet — public API.
 *
 * Everything a program linking libpeernet may use is declared here with the
 * pn_ prefix. Internal headers live beside their sources in src/.
 */
#ifndef PEERNET_H
#define PEERNET_H

#include <stddef.h>
#include <stdint.h>

#define PN_VERSION_STRING "0.1.0"
#define PN_PROTOCOL_VERSION 1

#if defined(__GNUC__)
#define PN_MUST_CHECK __attribute__((warn_unused_result))
/* Marks what the shared library exports: it is built with hidden visibility,
 * so only the declarations of this header are visible to programs. */
#define PN_EXTERN __attribute__((visibility("default")))
#else
#define PN_MUST_CHECK
#define PN_EXTERN
#endif

/* Every function that can fail returns 0 or one of these negative codes. */
enum pn_err {
	PN_OK = 0,
	PN_EINVAL = -1,       /* bad argument */
	PN_ENOMEM = -2,       /* out of memory */
	PN_EPROTO = -3,       /* malformed or out-of-order message */
	PN_ETOOBIG = -4,      /* a length exceeds its limit */
	PN_EAGAIN = -5,       /* need more bytes */
	PN_EIO = -6,          /* I/O error (errno has detail) */
	PN_ENOTFOUND = -7,    /* no such content */
	PN_EEXIST = -8,       /* already exists */
	PN_ECORRUPT = -9,     /* data does not match its hash */
	PN_ETLS = -10,        /* TLS failure */
	PN_EPEERID = -11,     /* peer identity is not the one expected */
	PN_ETIMEDOUT = -12,   /* timed out */
	PN_ECONNREFUSED = -13,/* connection refused / unreachable */
	PN_ENOSPC = -14,      /* disk full */
	PN_ECLOSED = -15,     /* connection closed */
	PN_EBADID = -16,      /* malformed content ID */
	PN_ELIMIT = -17,      /* a bound (rate, count, size) was exceeded */
	PN_ENOTSUP = -18,     /* not supported */
	PN_EACCES = -19,      /* permission denied */
	PN_ELINK = -20,       /* a symbolic link where a file is written: not followed */
	PN_ERR_MIN_ = -21
};

/* Returns a static, human-readable string for an error code. */
PN_EXTERN const char *pn_strerror(int err);

/* Content ID: the hash-tree root over the file's chunk hashes, plus its size.
 * Printed form: "pn1" followed by the RFC 4648 base32 (lower case, no padding)
 * of root[32] || size as 8 bytes big-endian: 3 + 64 characters. */
#define PN_HASH_BYTES 32
#define PN_ID_BYTES 32              /* node ID: SHA-256 of the Ed25519 public key */
#define PN_CID_BYTES 40             /* root + size, on the wire */
#define PN_CID_STR_LEN 67           /* printed form, without the NUL */
#define PN_NODE_ID_STR_LEN 64       /* node ID printed as lower-case hex */
#define PN_CHUNK_SIZE (256u * 1024u)
#define PN_MAX_CHUNKS (256u * 1024u) /* => largest file 64 GiB */
#define PN_MAX_FILE_SIZE ((uint64_t)PN_MAX_CHUNKS * PN_CHUNK_SIZE)
#define PN_NAME_MAX 255             /* bytes of a file name, UTF-8 */

struct pn_cid {
	uint8_t root[PN_HASH_BYTES];
	uint64_t size;
};

/* Writes the printed form and a NUL into out (PN_CID_STR_LEN + 1 bytes). */
PN_EXTERN void pn_cid_format(const struct pn_cid *cid, char out[PN_CID_STR_LEN + 1]);
/* Parses the printed form (case-insensitive). PN_EBADID on any error. */
PN_EXTERN PN_MUST_CHECK int pn_cid_parse(const char *s, struct pn_cid *out);
/* Number of chunks of a file of this size: max(1, ceil(size / PN_CHUNK_SIZE)). */
PN_EXTERN uint32_t pn_cid_chunks(const struct pn_cid *cid);
/* Length in bytes of chunk `index` (the last may be short; a 0-byte file has one 0-byte chunk). */
PN_EXTERN uint32_t pn_cid_chunk_len(const struct pn_cid *cid, uint32_t index);

#endif
