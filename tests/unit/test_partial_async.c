/* Unit tests for the two halves of a partial's chunk write that an owner
 * with a thread pool uses: store_partial_pwrite_chunk() on other threads,
 * store_partial_mark_verified() on the partial's own (src/store/partial.c). */
#include <criterion/criterion.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/evp.h>
#include "peernet.h"
#include "store/store.h"

#define C PN_CHUNK_SIZE
#define NCHUNKS 9
#define SIZE ((size_t)(NCHUNKS - 1) * C + 1234) /* a short last chunk */
#define NTHREADS 4

static char tmpdir[64];
static char data_path[128], state_path[128];
static uint8_t *content;
static uint8_t hashes[NCHUNKS * PN_HASH_BYTES];
static struct pn_cid cid;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	return remove(path);
}

static size_t clen(uint32_t i)
{
	return i == NCHUNKS - 1 ? SIZE - (size_t)i * C : C;
}

static void setup(void)
{
	uint32_t x = 12345;

	snprintf(tmpdir, sizeof tmpdir, "/tmp/pn-partial-async-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
	snprintf(data_path, sizeof data_path, "%s/data", tmpdir);
	snprintf(state_path, sizeof state_path, "%s/state", tmpdir);
	content = malloc(SIZE);
	cr_assert_not_null(content);
	for (size_t i = 0; i < SIZE; i++) {
		x ^= x << 13; x ^= x >> 17; x ^= x << 5;
		content[i] = (uint8_t)x;
	}
	for (uint32_t i = 0; i < NCHUNKS; i++)
		cr_assert(EVP_Digest(content + (size_t)i * C, clen(i), hashes + (size_t)i * PN_HASH_BYTES, NULL,
				     EVP_sha256(), NULL));
	cr_assert_eq(store_tree_root(hashes, NCHUNKS, cid.root), PN_OK);
	cid.size = SIZE;
}

static void teardown(void)
{
	nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(content);
}

static struct store_partial *open_with_hashes(void)
{
	struct store_partial *p = NULL;

	cr_assert_eq(store_partial_open_log(data_path, state_path, &cid, "f", NULL, &p), PN_OK);
	if (!store_partial_has_hashes(p))
		cr_assert_eq(store_partial_add_hashes(p, 0, NCHUNKS, hashes), PN_OK);
	return p;
}

struct writer {
	pthread_t th;
	const struct store_partial *p;
	uint32_t first; /* writes chunks first, first + NTHREADS, ... */
	int result;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;

	w->result = PN_OK;
	for (uint32_t i = w->first; i < NCHUNKS && w->result == PN_OK; i += NTHREADS)
		w->result = store_partial_pwrite_chunk(w->p, i, content + (size_t)i * C, clen(i));
	return NULL;
}

TestSuite(partial_async, .init = setup, .fini = teardown);

Test(partial_async, threads_write_then_owner_records)
{
	struct store_partial *p = open_with_hashes();
	struct writer w[NTHREADS];
	uint64_t ok = 0;

	for (uint32_t t = 0; t < NTHREADS; t++) {
		w[t].p = p;
		w[t].first = t;
		cr_assert_eq(pthread_create(&w[t].th, NULL, writer_main, &w[t]), 0);
	}
	for (uint32_t t = 0; t < NTHREADS; t++) {
		cr_assert_eq(pthread_join(w[t].th, NULL), 0);
		cr_assert_eq(w[t].result, PN_OK);
	}
	cr_assert_eq(store_partial_have_count(p), 0, "writing the data records nothing");
	for (uint32_t i = 0; i < NCHUNKS; i++)
		cr_assert_eq(store_partial_mark_verified(p, NCHUNKS - 1 - i), PN_OK);
	cr_assert_eq(store_partial_mark_verified(p, 2), PN_OK, "again is harmless");
	cr_assert_eq(store_partial_have_count(p), NCHUNKS);
	store_partial_close(p);

	p = open_with_hashes();
	cr_assert_eq(store_partial_have_count(p), NCHUNKS, "the bits are in the state file");
	cr_assert_eq(store_partial_verify_existing(p, &ok), PN_OK);
	cr_assert_eq(ok, SIZE);
	cr_assert_eq(store_partial_complete(p, data_path, true), PN_OK);
}

Test(partial_async, data_without_bit_is_not_claimed)
{
	struct store_partial *p = open_with_hashes();
	uint64_t ok = 1;

	/* A crash between the data write and the bit: the chunk is fetched again. */
	cr_assert_eq(store_partial_pwrite_chunk(p, 3, content + 3 * C, C), PN_OK);
	store_partial_close(p);
	p = open_with_hashes();
	cr_assert_not(store_partial_has_chunk(p, 3));
	cr_assert_eq(store_partial_verify_existing(p, &ok), PN_OK);
	cr_assert_eq(ok, 0);
	cr_assert_eq(store_partial_mark_verified(p, 3), PN_OK);
	cr_assert_eq(store_partial_verify_existing(p, &ok), PN_OK);
	cr_assert_eq(ok, C);
	store_partial_close(p);
}

Test(partial_async, bad_arguments)
{
	struct store_partial *p = NULL;

	cr_assert_eq(store_partial_open_log(data_path, state_path, &cid, "f", NULL, &p), PN_OK);
	cr_assert_eq(store_partial_mark_verified(p, 0), PN_EINVAL, "needs the hash list");
	cr_assert_eq(store_partial_add_hashes(p, 0, NCHUNKS, hashes), PN_OK);
	cr_assert_eq(store_partial_pwrite_chunk(p, NCHUNKS, content, C), PN_EINVAL, "index past the end");
	cr_assert_eq(store_partial_pwrite_chunk(p, 0, content, C - 1), PN_EINVAL, "wrong length");
	cr_assert_eq(store_partial_pwrite_chunk(p, NCHUNKS - 1, content, C), PN_EINVAL, "last chunk is short");
	cr_assert_eq(store_partial_mark_verified(p, NCHUNKS), PN_EINVAL, "index past the end");
	cr_assert_eq(store_partial_have_count(p), 0);
	store_partial_close(p);
}
