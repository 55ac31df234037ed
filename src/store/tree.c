/* Chunk hashing and the hash tree.
 *
 * Leaves are the SHA-256 of each chunk; a pair becomes SHA-256(0x01 || L || R);
 * an odd node at the end of a level is carried up unchanged. That rule gives
 * the same tree as splitting a range of n leaves at the largest power of two
 * below n, so the root is folded from a stack of complete subtrees without
 * allocating anything.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include "crypto/crypto.h"
#include "store/store.h"
#include "store/store_int.h"

#define TREE_NODE_PREFIX 0x01
#define TREE_STACK_MAX 33           /* log2(UINT32_MAX) + 1 subtrees at most */
#define HASH_READ_BLOCK (4u * PN_CHUNK_SIZE) /* bytes per pread in store_hash_fd */

struct subtree {
	uint8_t hash[PN_HASH_BYTES];
	uint32_t leaves;
};

/* Interior node: SHA-256(0x01 || left || right). */
static int tree_node(struct pn_sha256_many *h, const uint8_t left[PN_HASH_BYTES],
		     const uint8_t right[PN_HASH_BYTES], uint8_t out[PN_HASH_BYTES])
{
	uint8_t buf[1 + 2 * PN_HASH_BYTES];

	buf[0] = TREE_NODE_PREFIX;
	memcpy(buf + 1, left, PN_HASH_BYTES);
	memcpy(buf + 1 + PN_HASH_BYTES, right, PN_HASH_BYTES);
	return pn_sha256_many(h, buf, sizeof buf, out);
}

int store_tree_root(const uint8_t *hashes, uint32_t n, uint8_t root[PN_HASH_BYTES])
{
	struct subtree stack[TREE_STACK_MAX];
	struct pn_sha256_many h;
	size_t depth = 0;
	int err;

	if (n == 0) {
		memset(root, 0, PN_HASH_BYTES);
		return PN_OK;
	}
	if (n == 1) {
		memcpy(root, hashes, PN_HASH_BYTES);
		return PN_OK;
	}
	err = pn_sha256_many_init(&h);
	if (err)
		return err;
	/* Push each leaf; merge while the two top subtrees have the same size. */
	for (uint32_t i = 0; i < n && !err; i++) {
		memcpy(stack[depth].hash, hashes + (size_t)i * PN_HASH_BYTES, PN_HASH_BYTES);
		stack[depth].leaves = 1;
		depth++;
		while (!err && depth >= 2 && stack[depth - 1].leaves == stack[depth - 2].leaves) {
			err = tree_node(&h, stack[depth - 2].hash, stack[depth - 1].hash, stack[depth - 2].hash);
			stack[depth - 2].leaves *= 2;
			depth--;
		}
	}
	/* Left-over subtrees shrink from bottom to top: fold them right to left. */
	while (!err && depth >= 2) {
		err = tree_node(&h, stack[depth - 2].hash, stack[depth - 1].hash, stack[depth - 2].hash);
		stack[depth - 2].leaves += stack[depth - 1].leaves;
		depth--;
	}
	pn_sha256_many_free(&h);
	if (err)
		return err;
	memcpy(root, stack[0].hash, PN_HASH_BYTES);
	return PN_OK;
}

int store_chunk_check(const uint8_t expected[PN_HASH_BYTES], const void *data, size_t len)
{
	uint8_t got[PN_HASH_BYTES];
	int err;

	if (len > PN_CHUNK_SIZE)
		return PN_ECORRUPT;
	err = pn_sha256(data, len, got);
	if (err)
		return err;
	return CRYPTO_memcmp(got, expected, PN_HASH_BYTES) == 0 ? PN_OK : PN_ECORRUPT;
}

bool store_chunk_ok(const uint8_t expected[PN_HASH_BYTES], const void *data, size_t len)
{
	return store_chunk_check(expected, data, len) == PN_OK;
}

/* Reads the file in blocks of a few chunks and hashes each chunk. The caller
 * owns *hashes_out on success; nothing is allocated on failure. */
int store_hash_fd(int fd, uint64_t size, struct pn_cid *cid, uint8_t **hashes_out)
{
	uint8_t *hashes = NULL, *block = NULL;
	uint32_t nchunks;
	uint64_t off = 0;
	int err;

	if (size > PN_MAX_FILE_SIZE)
		return PN_ETOOBIG;
	cid->size = size;
	nchunks = pn_cid_chunks(cid);
	hashes = malloc((size_t)nchunks * PN_HASH_BYTES);
	block = malloc(HASH_READ_BLOCK);
	if (!hashes || !block) {
		err = PN_ENOMEM;
		goto fail;
	}
	if (size == 0)
		err = pn_sha256("", 0, hashes);
	else
		err = 0;
	while (!err && off < size) {
		size_t want = size - off < HASH_READ_BLOCK ? (size_t)(size - off) : HASH_READ_BLOCK;

		err = store_read_all(fd, block, want, off);
		if (err)
			goto fail;
		for (size_t pos = 0; pos < want && !err; pos += PN_CHUNK_SIZE) {
			size_t clen = want - pos < PN_CHUNK_SIZE ? want - pos : PN_CHUNK_SIZE;
			uint32_t index = (uint32_t)((off + pos) / PN_CHUNK_SIZE);

			err = pn_sha256(block + pos, clen, hashes + (size_t)index * PN_HASH_BYTES);
		}
		off += want;
	}
	if (!err)
		err = store_tree_root(hashes, nchunks, cid->root);
	if (err)
		goto fail;
	free(block);
	*hashes_out = hashes;
	return 0;
fail:
	free(block);
	free(hashes);
	return err;
}

int pn_cid_of_file(const char *path, struct pn_cid *out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return PN_EIO;
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		int r = fstat(fd, &st) != 0 ? PN_EIO : PN_EINVAL;
		close(fd);
		return r;
	}
	uint8_t *hashes = NULL;
	int r = store_hash_fd(fd, (uint64_t)st.st_size, out, &hashes);
	int saved = errno;
	free(hashes);
	close(fd);
	errno = saved;
	return r;
}
