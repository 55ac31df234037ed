/* Unit tests for src/store: hash tree vectors, partial transfers, the
 * content store and its two on-disk parsers. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/evp.h>
#include "peernet.h"
#include "store/store.h"
#include "util/log.h"

/* A logger that counts what it is handed. */
struct log_capture {
	int lines, skipped;
	enum pn_log_level worst;
	char last[PN_LOG_LINE_MAX];
};

static void capture_cb(void *ud, enum pn_log_level level, const char *line)
{
	struct log_capture *c = ud;

	if (!c->lines || level < c->worst)
		c->worst = level;
	c->lines++;
	c->skipped += strstr(line, "skipped") != NULL;
	snprintf(c->last, sizeof c->last, "%s", line);
}

#define C PN_CHUNK_SIZE

/* ---- helpers ---- */

static char tmpdir[64];

static void make_tmpdir(void)
{
	snprintf(tmpdir, sizeof tmpdir, "/tmp/pn-store-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	return remove(path);
}

static void remove_tmpdir(void)
{
	nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static char *tpath(const char *name)
{
	static char bufs[4][256];
	static int next;
	char *p = bufs[next++ % 4];

	snprintf(p, 256, "%s/%s", tmpdir, name);
	return p;
}

/* SHA-256 computed here through EVP, independently of the store's code. */
static void sha(const void *data, size_t len, uint8_t out[32])
{
	unsigned int n = 0;

	cr_assert(EVP_Digest(data, len, out, &n, EVP_sha256(), NULL));
}

static void node(const uint8_t l[32], const uint8_t r[32], uint8_t out[32])
{
	uint8_t buf[65];

	buf[0] = 0x01;
	memcpy(buf + 1, l, 32);
	memcpy(buf + 33, r, 32);
	sha(buf, sizeof buf, out);
}

static void hex(const uint8_t *p, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", p[i]);
}

static void write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");

	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	if (len)
		cr_assert_eq(fwrite(data, 1, len, f), len);
	cr_assert_eq(fclose(f), 0);
}

static uint8_t *read_whole(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf;
	long n;

	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc(n ? (size_t)n : 1);
	cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static bool exists(const char *path)
{
	return access(path, F_OK) == 0;
}

/* Test content: a deterministic pattern, its chunk hashes and its cid. */
struct content {
	uint8_t *data;
	size_t size;
	uint32_t n;
	uint8_t *hashes;
	struct pn_cid cid;
};

static void content_make(struct content *c, size_t size, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 1;

	c->size = size;
	c->data = malloc(size ? size : 1);
	for (size_t i = 0; i < size; i++) {
		x ^= x << 13; x ^= x >> 17; x ^= x << 5;
		c->data[i] = (uint8_t)x;
	}
	c->n = size ? (uint32_t)((size - 1) / C + 1) : 1;
	c->hashes = malloc((size_t)c->n * 32);
	for (uint32_t i = 0; i < c->n; i++) {
		size_t off = (size_t)i * C, len = size - off < C ? size - off : C;

		sha(c->data + off, size ? len : 0, c->hashes + (size_t)i * 32);
	}
	cr_assert_eq(store_tree_root(c->hashes, c->n, c->cid.root), 0);
	c->cid.size = size;
}

static void content_free(struct content *c)
{
	free(c->data);
	free(c->hashes);
}

static size_t chunk_len(const struct content *c, uint32_t i)
{
	size_t off = (size_t)i * C;

	return c->size - off < C ? c->size - off : C;
}

static int write_chunk(struct store_partial *p, const struct content *c, uint32_t i)
{
	return store_partial_write_chunk(p, i, c->data + (size_t)i * C, chunk_len(c, i));
}

/* ---- hash tree ---- */

TestSuite(tree);

static void leaves(uint8_t h[8][32])
{
	for (int i = 0; i < 8; i++) {
		uint8_t b = (uint8_t)i;

		sha(&b, 1, h[i]);
	}
}

static void check_root(const uint8_t h[8][32], uint32_t n, const uint8_t expect[32], const char *expect_hex)
{
	uint8_t root[32];
	char got[65], want[65];

	cr_assert_eq(store_tree_root(&h[0][0], n, root), 0);
	hex(root, 32, got);
	hex(expect, 32, want);
	cr_assert_str_eq(got, want, "n=%u", n);
	cr_assert_str_eq(got, expect_hex, "n=%u", n);
}

Test(tree, hand_spelled_roots)
{
	uint8_t h[8][32], n01[32], n23[32], n0123[32], n45[32], n456[32], r[32];

	leaves(h);
	node(h[0], h[1], n01);
	node(h[2], h[3], n23);
	node(n01, n23, n0123);
	node(h[4], h[5], n45);
	node(n45, h[6], n456);

	check_root(h, 1, h[0], "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d");
	check_root(h, 2, n01, "c71a16f21f917ed84ea2caa90b0904c9179a4c9c2369a9b4ec57e11a3f25a7a2");
	node(n01, h[2], r);
	check_root(h, 3, r, "d78663a8f1a2d99ee97fe38a605be2f54e2872c3a63a13077d617e4a940725bd");
	check_root(h, 4, n0123, "3c27c71481d08c1350991b07d3399aced347c594b1e5a4e23625786605998fd0");
	node(n0123, h[4], r);
	check_root(h, 5, r, "550347fe72bcb7c23a0576eb793f410a6192c5d678b483eb1adfd880720b55ea");
	node(n0123, n456, r);
	check_root(h, 7, r, "cc73b298e8e4f30a03faa5269796029c17e3fe4b1519250482ddc00a7d2e20da");
}

static void check_file_vector(const void *data, size_t size, const char *root_hex, const char *printed)
{
	struct pn_cid cid;
	uint8_t *hashes = NULL;
	char got[65], str[PN_CID_STR_LEN + 1];
	int fd;

	write_file(tpath("vec"), data, size);
	fd = open(tpath("vec"), O_RDONLY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(store_hash_fd(fd, size, &cid, &hashes), 0);
	close(fd);
	hex(cid.root, 32, got);
	cr_assert_str_eq(got, root_hex, "size %zu", size);
	cr_assert_eq(cid.size, size);
	pn_cid_format(&cid, str);
	cr_assert_str_eq(str, printed);
	free(hashes);
}

Test(tree, file_vectors, .init = make_tmpdir, .fini = remove_tmpdir)
{
	uint8_t *zeros = calloc(1, C + 1);

	check_file_vector("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
			  "pn14oymiquy7qobjgx36tejs35zeqt24qpemsnzgtfeswmrw6csxbkqaaaaaaaaaaaa");
	check_file_vector("a", 1, "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb",
			  "pn1zklycewkdo64v6wcggzzui64jwtyn37ycr6e44vzqb3yll7ojc5qaaaaaaaaaaab");
	check_file_vector(zeros, C, "8a39d2abd3999ab73c34db2476849cddf303ce389b35826850f9a700589b4a90",
			  "pn1ri45fk6ttgnlopbu3mshnbe43xzqhtrytm2ye2cq7gtqawe3jkiaaaaaaaaaiaaa");
	check_file_vector(zeros, C + 1, "592ed55032758a7525dea034666b999f0c0c591a99f2ce233353947ad4ed8a70",
			  "pn1lexnkubsowfhkjo6ua2gm24zt4gaywi2thzm4iztkokhvvhnrjyaaaaaaaaaiaab");
	free(zeros);
}

Test(tree, hash_fd_matches_chunks, .init = make_tmpdir, .fini = remove_tmpdir)
{
	struct content c;
	struct pn_cid cid;
	uint8_t *hashes = NULL;
	int fd;

	content_make(&c, 9 * C + 1234, 7); /* 10 chunks: more than one read block */
	write_file(tpath("f"), c.data, c.size);
	fd = open(tpath("f"), O_RDONLY);
	cr_assert_eq(store_hash_fd(fd, c.size, &cid, &hashes), 0);
	cr_assert_eq(memcmp(hashes, c.hashes, (size_t)c.n * 32), 0);
	cr_assert_eq(memcmp(cid.root, c.cid.root, 32), 0);
	free(hashes);
	hashes = NULL;
	cr_assert_eq(store_hash_fd(fd, c.size + 1, &cid, &hashes), PN_EIO, "short file");
	cr_assert_null(hashes);
	cr_assert_eq(store_hash_fd(fd, PN_MAX_FILE_SIZE + 1, &cid, &hashes), PN_ETOOBIG);
	close(fd);
	content_free(&c);
}

Test(tree, chunk_ok)
{
	uint8_t h[32];

	sha("hello", 5, h);
	cr_assert(store_chunk_ok(h, "hello", 5));
	cr_assert_not(store_chunk_ok(h, "hellp", 5));
	cr_assert_not(store_chunk_ok(h, "hell", 4));
	cr_assert_eq(store_chunk_check(h, "hello", 5), 0);
	cr_assert_eq(store_chunk_check(h, "hellp", 5), PN_ECORRUPT);
}

Test(tree, name_rule)
{
	cr_assert(store_name_valid("", 0));
	cr_assert(store_name_valid("report.pdf", 10));
	cr_assert(store_name_valid("r\xc3\xa9sum\xc3\xa9 v2.txt", 14));
	cr_assert(store_name_valid("...", 3));
	cr_assert_not(store_name_valid(".", 1));
	cr_assert_not(store_name_valid("..", 2));
	cr_assert_not(store_name_valid("a/b", 3));
	cr_assert_not(store_name_valid("a\\b", 3));
	cr_assert_not(store_name_valid("a\xc2\x85", 3), "C1 control");
	cr_assert(store_name_valid("a\xc2\xa0", 3), "no-break space");
	cr_assert_not(store_name_valid("a\nb", 3));
	cr_assert_not(store_name_valid("a\0b", 3));
	cr_assert_not(store_name_valid("\xc0\xaf", 2), "overlong");
	cr_assert_not(store_name_valid("\xed\xa0\x80", 3), "surrogate");
	cr_assert_not(store_name_valid("\xe2\x82", 2), "truncated");
	char long_name[PN_NAME_MAX + 2];
	memset(long_name, 'x', sizeof long_name);
	cr_assert(store_name_valid(long_name, PN_NAME_MAX));
	cr_assert_not(store_name_valid(long_name, PN_NAME_MAX + 1));
}

/* ---- partial transfers ---- */

TestSuite(partial, .init = make_tmpdir, .fini = remove_tmpdir);

static struct store_partial *popen_ok(const struct content *c, const char *name)
{
	struct store_partial *p = NULL;

	cr_assert_eq(store_partial_open(tpath("data"), tpath("state"), &c->cid, name, &p), 0);
	return p;
}

static void give_hashes(struct store_partial *p, const struct content *c)
{
	cr_assert_eq(store_partial_add_hashes(p, 0, c->n, c->hashes), 0);
	cr_assert(store_partial_has_hashes(p));
}

Test(partial, write_close_reopen)
{
	struct content c;
	struct store_partial *p;
	uint32_t first, count;
	uint64_t ok = 1;
	uint8_t *buf = malloc(C);
	uint32_t len = 0;

	content_make(&c, 3 * C + 100, 1);
	p = popen_ok(&c, "file.bin");
	cr_assert_eq(store_partial_nchunks(p), 4);
	cr_assert(store_partial_missing_hashes(p, 2, &first, &count));
	cr_assert_eq(first, 0);
	cr_assert_eq(count, 2);
	cr_assert_eq(write_chunk(p, &c, 0), PN_EINVAL, "needs the hash list");
	cr_assert_eq(store_partial_add_hashes(p, 1, 2, c.hashes + 32), 0);
	cr_assert_not(store_partial_has_hashes(p));
	cr_assert(store_partial_missing_hashes(p, 10, &first, &count));
	cr_assert_eq(first, 0);
	cr_assert_eq(count, 1);
	store_partial_close(p);

	/* The known hashes survive a reopen without the flag. */
	p = popen_ok(&c, NULL);
	cr_assert_str_eq(store_partial_name(p), "file.bin");
	cr_assert(store_partial_missing_hashes(p, 10, &first, &count));
	cr_assert_eq(first, 0);
	cr_assert_eq(count, 1);
	cr_assert_eq(store_partial_add_hashes(p, 0, 1, c.hashes), 0);
	cr_assert(store_partial_missing_hashes(p, 10, &first, &count));
	cr_assert_eq(first, 3);
	cr_assert_eq(count, 1);
	cr_assert_eq(store_partial_add_hashes(p, 3, 1, c.hashes + 96), 0);
	cr_assert(store_partial_has_hashes(p));
	cr_assert_not(store_partial_missing_hashes(p, 10, &first, &count));
	cr_assert_eq(store_partial_add_hashes(p, 3, 2, c.hashes), PN_EINVAL, "range past the end");
	cr_assert_eq(write_chunk(p, &c, 0), 0);
	cr_assert_eq(write_chunk(p, &c, 3), 0);
	cr_assert_eq(write_chunk(p, &c, 3), 0, "again is harmless");
	cr_assert_eq(store_partial_write_chunk(p, 1, c.data, C - 1), PN_EINVAL, "wrong length");
	cr_assert_eq(store_partial_have_count(p), 2);
	store_partial_close(p);

	p = popen_ok(&c, NULL);
	cr_assert(store_partial_has_hashes(p));
	cr_assert(store_partial_has_chunk(p, 0));
	cr_assert_not(store_partial_has_chunk(p, 1));
	cr_assert_not(store_partial_has_chunk(p, 2));
	cr_assert(store_partial_has_chunk(p, 3));
	cr_assert_eq(store_partial_bitmap(p)[0], 0x90);
	cr_assert_eq(store_partial_verify_existing(p, &ok), 0);
	cr_assert_eq(ok, C + 100);
	cr_assert_eq(store_partial_read_chunk(p, 3, buf, &len), 0);
	cr_assert_eq(len, 100);
	cr_assert_eq(memcmp(buf, c.data + 3 * C, 100), 0);
	cr_assert_eq(store_partial_read_chunk(p, 1, buf, &len), PN_ENOTFOUND);
	cr_assert_eq(memcmp(store_partial_hash(p, 2), c.hashes + 64, 32), 0);
	store_partial_close(p);
	free(buf);
	content_free(&c);
}

Test(partial, corrupt_chunk_on_disk_is_dropped)
{
	struct content c;
	struct store_partial *p;
	uint64_t ok = 0;
	int fd;

	content_make(&c, 4 * C - 5, 2);
	p = popen_ok(&c, NULL);
	give_hashes(p, &c);
	for (uint32_t i = 0; i < c.n; i++)
		cr_assert_eq(write_chunk(p, &c, i), 0);
	store_partial_close(p);

	fd = open(tpath("data"), O_RDWR);
	uint8_t b = c.data[C + 777] ^ 0x40;
	cr_assert_eq(pwrite(fd, &b, 1, C + 777), 1);
	close(fd);

	p = popen_ok(&c, NULL);
	cr_assert_eq(store_partial_have_count(p), 4);
	cr_assert_eq(store_partial_verify_existing(p, &ok), 0);
	cr_assert_eq(ok, c.size - C);
	cr_assert_eq(store_partial_have_count(p), 3);
	cr_assert_not(store_partial_has_chunk(p, 1));
	cr_assert(store_partial_has_chunk(p, 0));
	cr_assert(store_partial_has_chunk(p, 2));
	cr_assert(store_partial_has_chunk(p, 3));
	store_partial_close(p);

	/* The dropped chunk is recorded in the state file too. */
	p = popen_ok(&c, NULL);
	cr_assert_eq(store_partial_have_count(p), 3);
	cr_assert_eq(write_chunk(p, &c, 1), 0);
	cr_assert_eq(store_partial_verify_existing(p, &ok), 0);
	cr_assert_eq(ok, c.size);
	store_partial_close(p);
	content_free(&c);
}

Test(partial, missing_data_file_drops_claims)
{
	struct content c;
	struct store_partial *p;
	uint64_t ok = 1;

	content_make(&c, 2 * C, 3);
	p = popen_ok(&c, NULL);
	give_hashes(p, &c);
	cr_assert_eq(write_chunk(p, &c, 1), 0);
	store_partial_close(p);
	cr_assert_eq(unlink(tpath("data")), 0);
	p = popen_ok(&c, NULL);
	cr_assert_eq(store_partial_verify_existing(p, &ok), 0);
	cr_assert_eq(ok, 0);
	cr_assert_eq(store_partial_have_count(p), 0);
	store_partial_close(p);
	content_free(&c);
}

Test(partial, wrong_chunk_writes_nothing)
{
	struct content c;
	struct store_partial *p;
	uint8_t *bad, *disk;
	size_t len;

	content_make(&c, 2 * C, 4);
	p = popen_ok(&c, NULL);
	give_hashes(p, &c);
	bad = malloc(C);
	memcpy(bad, c.data + C, C);
	bad[C / 2] ^= 1;
	cr_assert_eq(store_partial_write_chunk(p, 1, bad, C), PN_ECORRUPT);
	cr_assert_eq(store_partial_write_chunk(p, 0, c.data + C, C), PN_ECORRUPT, "right data, wrong index");
	cr_assert_not(store_partial_has_chunk(p, 1));
	cr_assert_eq(store_partial_have_count(p), 0);
	store_partial_close(p);
	disk = read_whole(tpath("data"), &len);
	cr_assert_eq(len, 2 * C);
	for (size_t i = 0; i < len; i++)
		cr_assert_eq(disk[i], 0, "byte %zu written", i);
	free(disk);
	free(bad);
	content_free(&c);
}

Test(partial, wrong_hash_list_is_forgotten)
{
	struct content c;
	struct store_partial *p;
	uint8_t *bad;
	uint32_t first, count;

	content_make(&c, 5 * C, 5);
	bad = malloc((size_t)c.n * 32);
	memcpy(bad, c.hashes, (size_t)c.n * 32);
	bad[2 * 32 + 5] ^= 0x80;
	p = popen_ok(&c, NULL);
	cr_assert_eq(store_partial_add_hashes(p, 0, 3, bad), 0);
	cr_assert_eq(store_partial_add_hashes(p, 3, 2, bad + 96), PN_ECORRUPT);
	cr_assert_not(store_partial_has_hashes(p));
	cr_assert(store_partial_missing_hashes(p, 100, &first, &count));
	cr_assert_eq(first, 0);
	cr_assert_eq(count, 5);
	store_partial_close(p);
	/* Forgotten on disk as well. */
	p = popen_ok(&c, NULL);
	cr_assert(store_partial_missing_hashes(p, 100, &first, &count));
	cr_assert_eq(count, 5);
	give_hashes(p, &c);
	cr_assert_eq(store_partial_add_hashes(p, 2, 1, bad + 64), PN_ECORRUPT, "differs from the verified list");
	cr_assert_eq(store_partial_add_hashes(p, 2, 1, c.hashes + 64), 0);
	cr_assert(store_partial_has_hashes(p));
	store_partial_close(p);
	free(bad);
	content_free(&c);
}

static void sha_file(const char *path, uint8_t out[32])
{
	size_t len;
	uint8_t *buf = read_whole(path, &len);

	sha(buf, len, out);
	free(buf);
}

Test(partial, complete_moves_into_place)
{
	struct content c;
	struct store_partial *p;
	uint8_t want[32], got[32];

	content_make(&c, 2 * C + 3, 6);
	p = popen_ok(&c, NULL);
	give_hashes(p, &c);
	cr_assert_eq(write_chunk(p, &c, 0), 0);
	cr_assert_eq(write_chunk(p, &c, 2), 0);
	cr_assert_eq(store_partial_complete(p, tpath("final"), false), PN_EAGAIN);
	cr_assert_eq(write_chunk(p, &c, 1), 0);
	cr_assert_eq(store_partial_complete(p, tpath("final"), false), 0);
	sha(c.data, c.size, want);
	sha_file(tpath("final"), got);
	cr_assert_eq(memcmp(want, got, 32), 0);
	cr_assert_not(exists(tpath("state")));
	cr_assert_not(exists(tpath("data")));
	content_free(&c);
}

Test(partial, complete_refuses_existing_path)
{
	struct content c;
	struct store_partial *p;
	uint8_t want[32], got[32], *buf = malloc(C);
	uint32_t len;
	size_t flen;

	content_make(&c, C + 1, 7);
	write_file(tpath("final"), "keep me", 7);
	p = popen_ok(&c, NULL);
	give_hashes(p, &c);
	cr_assert_eq(write_chunk(p, &c, 0), 0);
	cr_assert_eq(write_chunk(p, &c, 1), 0);
	cr_assert_eq(store_partial_complete(p, tpath("final"), false), PN_EEXIST);
	uint8_t *kept = read_whole(tpath("final"), &flen);
	cr_assert_eq(flen, 7);
	cr_assert_eq(memcmp(kept, "keep me", 7), 0);
	free(kept);
	/* Still usable. */
	cr_assert(exists(tpath("state")));
	cr_assert_eq(store_partial_read_chunk(p, 1, buf, &len), 0);
	cr_assert_eq(len, 1);
	cr_assert_eq(buf[0], c.data[C]);
	cr_assert_eq(store_partial_complete(p, tpath("other"), false), 0);
	sha(c.data, c.size, want);
	sha_file(tpath("other"), got);
	cr_assert_eq(memcmp(want, got, 32), 0);
	free(buf);
	content_free(&c);
}

Test(partial, complete_overwrite)
{
	struct content c;
	struct store_partial *p;
	uint8_t want[32], got[32];

	content_make(&c, 10, 8);
	write_file(tpath("final"), "old", 3);
	p = popen_ok(&c, NULL);
	give_hashes(p, &c);
	cr_assert_eq(write_chunk(p, &c, 0), 0);
	cr_assert_eq(store_partial_complete(p, tpath("final"), true), 0);
	sha(c.data, c.size, want);
	sha_file(tpath("final"), got);
	cr_assert_eq(memcmp(want, got, 32), 0);
	content_free(&c);
}

Test(partial, empty_file)
{
	struct content c;
	struct store_partial *p;
	size_t len = 1;

	content_make(&c, 0, 9);
	p = popen_ok(&c, NULL);
	cr_assert_eq(store_partial_nchunks(p), 1);
	give_hashes(p, &c);
	cr_assert_eq(store_partial_write_chunk(p, 0, "", 0), 0);
	cr_assert_eq(store_partial_complete(p, tpath("final"), false), 0);
	free(read_whole(tpath("final"), &len));
	cr_assert_eq(len, 0);
	content_free(&c);
}

Test(partial, garbage_state_starts_fresh)
{
	struct content c;
	struct store_partial *p;
	uint8_t garbage[300];
	size_t len;

	content_make(&c, 2 * C, 10);
	for (size_t i = 0; i < sizeof garbage; i++)
		garbage[i] = (uint8_t)(i * 7);
	write_file(tpath("state"), garbage, sizeof garbage);
	write_file(tpath("data"), "leftover", 8);
	struct log_capture cap = {0};
	struct pn_logger lg = {.cb = capture_cb, .ud = &cap, .level = PN_LOG_DEBUG};
	p = NULL;
	cr_assert_eq(store_partial_open_log(tpath("data"), tpath("state"), &c.cid, "n", &lg, &p), 0);
	cr_assert_eq(cap.lines, 1);
	cr_assert(strstr(cap.last, "unusable") && strstr(cap.last, "starting afresh"), "%s", cap.last);
	cr_assert_not(store_partial_has_hashes(p));
	cr_assert_eq(store_partial_have_count(p), 0);
	store_partial_close(p);
	/* A fresh, parsable state file and a data file of the right size. */
	uint8_t *st = read_whole(tpath("state"), &len);
	struct store_state parsed;
	cr_assert_eq(store_state_parse(st, len, &parsed), 0);
	cr_assert_str_eq(parsed.name, "n");
	free(st);
	free(read_whole(tpath("data"), &len));
	cr_assert_eq(len, 2 * C);
	content_free(&c);
}

Test(partial, state_of_another_cid_starts_fresh)
{
	struct content a, b;
	struct store_partial *p;

	content_make(&a, 2 * C, 11);
	content_make(&b, 2 * C, 12);
	p = popen_ok(&a, NULL);
	give_hashes(p, &a);
	cr_assert_eq(write_chunk(p, &a, 0), 0);
	store_partial_close(p);
	p = popen_ok(&b, NULL);
	cr_assert_not(store_partial_has_hashes(p));
	cr_assert_eq(store_partial_have_count(p), 0);
	cr_assert_eq(memcmp(store_partial_cid(p)->root, b.cid.root, 32), 0);
	store_partial_close(p);
	content_free(&a);
	content_free(&b);
}

/* A symbolic link where the partial or its state goes is never followed:
 * the open fails with PN_ELINK and the link's target is untouched; a link at
 * the state's temporary name is replaced, not written through. */
Test(partial, symlinks_not_followed)
{
	struct content c;
	struct store_partial *p = NULL;
	char target[4096];

	content_make(&c, 3 * PN_CHUNK_SIZE, 17);
	snprintf(target, sizeof target, "%s", tpath("victim"));
	write_file(target, "keep", 4);
	cr_assert_eq(symlink(target, tpath("data")), 0);
	cr_assert_eq(store_partial_open(tpath("data"), tpath("state"), &c.cid, NULL, &p), PN_ELINK);
	cr_assert_eq(unlink(tpath("data")), 0);
	cr_assert_eq(symlink(target, tpath("state")), 0);
	cr_assert_eq(store_partial_open(tpath("data"), tpath("state"), &c.cid, NULL, &p), PN_ELINK);
	cr_assert_eq(unlink(tpath("state")), 0);
	char tmp[4200];
	snprintf(tmp, sizeof tmp, "%s.tmp", tpath("state"));
	cr_assert_eq(symlink(target, tmp), 0);
	p = popen_ok(&c, NULL);
	give_hashes(p, &c);
	store_partial_close(p);
	struct stat st;
	cr_assert_eq(stat(target, &st), 0);
	cr_assert_eq(st.st_size, 4, "the link's target was written");
	cr_assert_eq(lstat(tpath("state"), &st), 0);
	cr_assert(S_ISREG(st.st_mode));
	content_free(&c);
}

Test(partial, names)
{
	struct content c;
	struct store_partial *p = NULL;

	content_make(&c, 100, 13);
	cr_assert_eq(store_partial_open(tpath("data"), tpath("state"), &c.cid, "a/b", &p), PN_EINVAL);
	p = popen_ok(&c, NULL);
	cr_assert_str_eq(store_partial_name(p), "");
	give_hashes(p, &c);
	cr_assert_eq(write_chunk(p, &c, 0), 0);
	cr_assert_eq(store_partial_set_name(p, "first.txt"), 0);
	cr_assert_eq(store_partial_set_name(p, "bad\n"), PN_EINVAL);
	store_partial_close(p);
	p = popen_ok(&c, NULL);
	cr_assert_str_eq(store_partial_name(p), "first.txt");
	store_partial_close(p);
	p = popen_ok(&c, "second name.txt");
	cr_assert_str_eq(store_partial_name(p), "second name.txt");
	cr_assert(store_partial_has_chunk(p, 0), "renaming keeps the progress");
	store_partial_discard(p);
	cr_assert_not(exists(tpath("data")));
	cr_assert_not(exists(tpath("state")));
	content_free(&c);
}

/* ---- state parser ---- */

/* A state file built byte by byte, independently of the encoder. */
static size_t build_state(uint8_t *out, const struct content *c, uint8_t flags, const char *name,
			  const uint8_t *bitmap)
{
	size_t o = 0, nlen = strlen(name), blen = (c->n + 7) / 8;

	memcpy(out, "PNPART01", 8); o += 8;
	memcpy(out + o, c->cid.root, 32); o += 32;
	for (int i = 7; i >= 0; i--)
		out[o++] = (uint8_t)(c->size >> (8 * i));
	out[o++] = flags;
	out[o++] = (uint8_t)(nlen >> 8);
	out[o++] = (uint8_t)nlen;
	memcpy(out + o, name, nlen); o += nlen;
	memcpy(out + o, c->hashes, (size_t)c->n * 32); o += (size_t)c->n * 32;
	memcpy(out + o, bitmap, blen); o += blen;
	return o;
}

Test(state_parse, valid_truncations_and_fields)
{
	struct content c;
	struct store_state st;
	uint8_t buf[1024], bitmap[2] = {0xa0, 0x80}; /* chunks 0, 2, 8 */
	size_t len;

	content_make(&c, 8 * C + 1, 14); /* 9 chunks: a 2-byte bitmap */
	len = build_state(buf, &c, 1, "x.bin", bitmap);
	cr_assert_eq(store_state_parse(buf, len, &st), 0);
	cr_assert_eq(st.nchunks, 9);
	cr_assert_eq(st.flags, 1);
	cr_assert_str_eq(st.name, "x.bin");
	cr_assert_eq(st.cid.size, c.size);
	cr_assert_eq(memcmp(st.cid.root, c.cid.root, 32), 0);
	cr_assert_eq(memcmp(st.hashes, c.hashes, 9 * 32), 0);
	cr_assert_eq(st.bitmap[0], 0xa0);
	cr_assert_eq(st.bitmap[1], 0x80);

	for (size_t cut = 0; cut < len; cut++) {
		uint8_t *exact = malloc(cut ? cut : 1); /* so ASan sees any over-read */

		memcpy(exact, buf, cut);
		cr_assert_eq(store_state_parse(exact, cut, &st), PN_EPROTO, "truncated to %zu", cut);
		free(exact);
	}
	buf[len] = 0;
	cr_assert_eq(store_state_parse(buf, len + 1, &st), PN_EPROTO, "trailing byte");

	uint8_t m[1024];
	memcpy(m, buf, len); m[0] = 'X';
	cr_assert_eq(store_state_parse(m, len, &st), PN_EPROTO, "magic");
	memcpy(m, buf, len); m[48] = 0x03;
	cr_assert_eq(store_state_parse(m, len, &st), PN_EPROTO, "unknown flag");
	memcpy(m, buf, len); m[52] = '/';
	cr_assert_eq(store_state_parse(m, len, &st), PN_EPROTO, "bad name");
	memcpy(m, buf, len); m[len - 1] = 0xc0;
	cr_assert_eq(store_state_parse(m, len, &st), PN_EPROTO, "bit past the last chunk");
	memcpy(m, buf, len); m[60] ^= 1;
	cr_assert_eq(store_state_parse(m, len, &st), PN_ECORRUPT, "hash list does not give the root");
	memcpy(m, buf, len); m[48] = 0;
	cr_assert_eq(store_state_parse(m, len, &st), PN_EPROTO, "chunks without a hash list");
	memcpy(m, buf, len); m[49] = 0x01; /* name_len 0x105 */
	cr_assert_eq(store_state_parse(m, len, &st), PN_EPROTO, "name too long");
	memcpy(m, buf, len); m[40] = 0x01; /* size way above the limit */
	cr_assert_eq(store_state_parse(m, len, &st), PN_ETOOBIG, "size");

	uint8_t zero_bitmap[2] = {0, 0};
	len = build_state(buf, &c, 0, "", zero_bitmap);
	memset(buf + 51, 0, 9 * 32);
	cr_assert_eq(store_state_parse(buf, len, &st), 0, "no hashes known yet");
	content_free(&c);
}

/* ---- content store ---- */

TestSuite(store, .init = make_tmpdir, .fini = remove_tmpdir);

static struct store *sopen_ok(void)
{
	struct store *s = NULL;

	cr_assert_eq(store_open(tpath("store"), &s), 0);
	return s;
}

static const struct store_object *upload(struct store *s, const struct content *c, const char *name)
{
	struct store_partial *p = NULL;
	const struct store_object *o = NULL;

	cr_assert_eq(store_put_begin(s, &c->cid, name, &p), 0);
	cr_assert_eq(store_partial_add_hashes(p, 0, c->n, c->hashes), 0);
	for (uint32_t i = 0; i < c->n; i++)
		cr_assert_eq(write_chunk(p, c, i), 0);
	cr_assert_eq(store_put_finish(s, p, &o), 0);
	cr_assert_not_null(o);
	return o;
}

static char *object_path(const struct content *c, const char *suffix)
{
	static char path[512];
	char cidstr[PN_CID_STR_LEN + 1];

	pn_cid_format(&c->cid, cidstr);
	snprintf(path, sizeof path, "%s/store/objects/%s%s", tmpdir, cidstr, suffix);
	return path;
}

Test(store, put_reopen_read)
{
	struct content c;
	struct store *s = sopen_ok();
	const struct store_object *o;
	struct store_partial *p = NULL;
	uint8_t *buf = malloc(C);
	uint32_t len = 0;
	struct stat st;

	cr_assert_eq(stat(tpath("store"), &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0700);
	content_make(&c, 3 * C + 17, 20);
	o = upload(s, &c, "three.bin");
	cr_assert_str_eq(o->name, "three.bin");
	cr_assert_eq(o->nchunks, 4);
	cr_assert_eq(store_count(s), 1);
	cr_assert_eq(store_at(s, 0), o);
	cr_assert_eq(store_get(s, &c.cid), o);
	cr_assert_eq(store_total_bytes(s), c.size);
	cr_assert_eq(store_put_begin(s, &c.cid, "again", &p), PN_EEXIST);
	cr_assert_eq(store_read_chunk(s, o, 3, buf, &len), 0);
	cr_assert_eq(len, 17);
	cr_assert_eq(memcmp(buf, c.data + 3 * C, 17), 0);
	cr_assert_eq(store_read_chunk(s, o, 4, buf, &len), PN_EINVAL);
	store_close(s);

	s = sopen_ok();
	cr_assert_eq(store_count(s), 1);
	o = store_get(s, &c.cid);
	cr_assert_not_null(o);
	cr_assert_str_eq(o->name, "three.bin");
	cr_assert_eq(memcmp(o->hashes, c.hashes, (size_t)c.n * 32), 0);
	cr_assert_eq(store_total_bytes(s), c.size);
	for (uint32_t i = 0; i < c.n; i++) {
		cr_assert_eq(store_read_chunk(s, o, i, buf, &len), 0);
		cr_assert_eq(len, chunk_len(&c, i));
		cr_assert_eq(memcmp(buf, c.data + (size_t)i * C, len), 0);
	}
	cr_assert_eq(store_put_begin(s, &c.cid, NULL, &p), PN_EEXIST);
	store_close(s);
	free(buf);
	content_free(&c);
}

Test(store, shared_upload_and_resume)
{
	struct content c;
	struct store *s = sopen_ok();
	struct store_partial *p1 = NULL, *p2 = NULL;
	const struct store_object *o1 = NULL, *o2 = NULL;

	content_make(&c, 2 * C + 9, 21);
	cr_assert_eq(store_put_begin(s, &c.cid, NULL, &p1), 0);
	cr_assert_eq(store_put_begin(s, &c.cid, "named.txt", &p2), 0);
	cr_assert_eq(p1, p2, "one partial per cid");
	cr_assert_str_eq(store_partial_name(p1), "named.txt");
	cr_assert_eq(store_partial_add_hashes(p1, 0, c.n, c.hashes), 0);
	cr_assert_eq(write_chunk(p1, &c, 0), 0);
	cr_assert_eq(store_put_finish(s, p1, &o1), PN_EAGAIN);
	store_put_release(s, p1);
	store_put_release(s, p2);
	store_close(s);

	/* A new process resumes the upload from incoming/. */
	s = sopen_ok();
	cr_assert_eq(store_count(s), 0);
	cr_assert_eq(store_put_begin(s, &c.cid, "late name", &p1), 0);
	cr_assert_str_eq(store_partial_name(p1), "named.txt", "first name wins");
	cr_assert(store_partial_has_hashes(p1));
	cr_assert(store_partial_has_chunk(p1, 0));
	cr_assert_eq(store_put_begin(s, &c.cid, NULL, &p2), 0);
	cr_assert_eq(write_chunk(p1, &c, 1), 0);
	cr_assert_eq(write_chunk(p2, &c, 2), 0);
	cr_assert_eq(store_put_finish(s, p1, &o1), 0);
	cr_assert_eq(write_chunk(p2, &c, 2), 0, "a late writer is harmless");
	cr_assert_eq(store_put_finish(s, p2, &o2), 0, "the other uploader sees it done");
	cr_assert_eq(o1, o2);
	cr_assert_str_eq(o1->name, "named.txt");
	store_close(s);
	content_free(&c);
}

Test(store, bad_meta_and_objects_are_skipped)
{
	struct content a, b, d;
	struct store *s = sopen_ok();
	uint8_t *meta;
	size_t len;

	content_make(&a, C + 1, 30);
	content_make(&b, 5, 31);
	content_make(&d, 77, 32);
	upload(s, &a, "a");
	upload(s, &b, "b");
	upload(s, &d, "d");
	store_close(s);

	/* a: a flipped hash in its .meta. */
	meta = read_whole(object_path(&a, ".meta"), &len);
	meta[len - 1] ^= 1;
	write_file(object_path(&a, ".meta"), meta, len);
	free(meta);
	/* b: the object file has the wrong size. */
	write_file(object_path(&b, ""), "1234", 4);
	/* stray files */
	write_file(tpath("store/objects/not-a-cid.meta"), "x", 1);
	write_file(tpath("store/objects/pn1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.meta"), "x", 1);

	/* Each skip is logged, through the logger the store was given. */
	struct log_capture cap = {0};
	struct pn_logger lg = {.cb = capture_cb, .ud = &cap, .level = PN_LOG_INFO};
	cr_assert_eq(store_open_log(tpath("store"), &lg, &s), 0);
	/* not-a-cid.meta is not even looked at: its name is not a cid's */
	cr_assert_eq(cap.lines, 3, "%d lines, last: %s", cap.lines, cap.last);
	cr_assert_eq(cap.skipped, 3);
	cr_assert_eq(cap.worst, PN_LOG_WARN);
	store_close(s);
	lg.level = PN_LOG_ERROR;
	cr_assert_eq(store_open_log(tpath("store"), &lg, &s), 0);
	cr_assert_eq(cap.lines, 3, "warnings dropped at level error");
	store_close(s);
	cr_assert_eq(store_open_log(tpath("store"), NULL, &s), 0, "no logger: silent");
	cr_assert_eq(store_count(s), 1);
	store_close(s);

	s = sopen_ok();
	cr_assert_eq(store_count(s), 1);
	cr_assert_null(store_get(s, &a.cid));
	cr_assert_null(store_get(s, &b.cid));
	cr_assert_not_null(store_get(s, &d.cid));
	cr_assert_eq(store_total_bytes(s), 77);
	/* A skipped object can be uploaded again. */
	upload(s, &a, "a again");
	cr_assert_eq(store_count(s), 2);
	store_close(s);
	content_free(&a);
	content_free(&b);
	content_free(&d);
}

Test(store, add_local_and_many_objects)
{
	struct store *s = sopen_ok();
	const struct store_object *o = NULL, *again = NULL;
	struct content c;
	uint8_t *buf = malloc(C);
	uint32_t len;
	enum { MANY = 300 };

	content_make(&c, 2 * C + 100, 40);
	write_file(tpath("local.dat"), c.data, c.size);
	cr_assert_eq(store_add_local(s, tpath("local.dat"), NULL, &o), 0);
	cr_assert_str_eq(o->name, "local.dat");
	cr_assert_eq(memcmp(o->cid.root, c.cid.root, 32), 0);
	cr_assert_eq(store_read_chunk(s, o, 2, buf, &len), 0);
	cr_assert_eq(len, 100);
	cr_assert_eq(memcmp(buf, c.data + 2 * C, 100), 0);
	cr_assert_eq(store_add_local(s, tpath("local.dat"), "other", &again), PN_EEXIST);
	cr_assert_eq(again, o);
	cr_assert_eq(store_add_local(s, tpath("nope"), NULL, &again), PN_ENOTFOUND);
	cr_assert_eq(store_add_local(s, tmpdir, "dir", &again), PN_EINVAL);

	for (int i = 0; i < MANY; i++) {
		char name[32];

		snprintf(name, sizeof name, "small-%d", i);
		write_file(tpath("small"), name, strlen(name));
		cr_assert_eq(store_add_local(s, tpath("small"), name, &o), 0);
	}
	cr_assert_eq(store_count(s), MANY + 1);
	for (size_t i = 0; i < store_count(s); i++) {
		const struct store_object *x = store_at(s, i);

		cr_assert_eq(store_get(s, &x->cid), x);
		cr_assert_eq(x->added, i);
		cr_assert_eq(store_read_chunk(s, x, 0, buf, &len), 0, "more objects than cached fds");
	}
	store_close(s);
	s = sopen_ok();
	cr_assert_eq(store_count(s), MANY + 1);
	cr_assert_not_null(store_get(s, &c.cid));
	store_close(s);
	free(buf);
	content_free(&c);
}

/* ---- meta parser ---- */

static size_t build_meta(uint8_t *out, const struct content *c, const char *name)
{
	size_t o = 0, nlen = strlen(name);

	memcpy(out, "PNMETA01", 8); o += 8;
	memcpy(out + o, c->cid.root, 32); o += 32;
	for (int i = 7; i >= 0; i--)
		out[o++] = (uint8_t)(c->size >> (8 * i));
	out[o++] = (uint8_t)(nlen >> 8);
	out[o++] = (uint8_t)nlen;
	memcpy(out + o, name, nlen); o += nlen;
	memcpy(out + o, c->hashes, (size_t)c->n * 32); o += (size_t)c->n * 32;
	return o;
}

Test(meta_parse, valid_truncations_and_fields)
{
	struct content c;
	struct pn_cid cid;
	char name[PN_NAME_MAX + 1];
	uint8_t buf[512], m[512], *hashes = NULL;
	size_t len;

	content_make(&c, 3 * C, 50);
	len = build_meta(buf, &c, "m.txt");
	cr_assert_eq(store_meta_parse(buf, len, &cid, name, &hashes), 0);
	cr_assert_str_eq(name, "m.txt");
	cr_assert_eq(cid.size, c.size);
	cr_assert_eq(memcmp(hashes, c.hashes, 3 * 32), 0);
	free(hashes);
	for (size_t cut = 0; cut < len; cut++) {
		uint8_t *exact = malloc(cut ? cut : 1);

		memcpy(exact, buf, cut);
		hashes = NULL;
		cr_assert_eq(store_meta_parse(exact, cut, &cid, name, &hashes), PN_EPROTO, "truncated to %zu", cut);
		cr_assert_null(hashes);
		free(exact);
	}
	buf[len] = 0;
	cr_assert_eq(store_meta_parse(buf, len + 1, &cid, name, &hashes), PN_EPROTO, "trailing byte");
	memcpy(m, buf, len); m[7] = '2';
	cr_assert_eq(store_meta_parse(m, len, &cid, name, &hashes), PN_EPROTO, "magic");
	memcpy(m, buf, len); m[len - 40] ^= 4;
	cr_assert_eq(store_meta_parse(m, len, &cid, name, &hashes), PN_ECORRUPT, "hash");
	memcpy(m, buf, len); m[8] ^= 4;
	cr_assert_eq(store_meta_parse(m, len, &cid, name, &hashes), PN_ECORRUPT, "root");
	memcpy(m, buf, len); m[50] = 0x7f;
	cr_assert_eq(store_meta_parse(m, len, &cid, name, &hashes), PN_EPROTO, "control character in name");
	memcpy(m, buf, len); m[41] = 0xff;
	cr_assert_eq(store_meta_parse(m, len, &cid, name, &hashes), PN_ETOOBIG, "size");
	content_free(&c);
}

Test(store, leftovers_of_a_crash)
{
	struct content c;
	struct store *s = sopen_ok();
	const struct store_object *o;

	store_close(s);
	content_make(&c, C + 3, 60);
	/* An object file without its .meta (crash between the two renames),
	 * and a half-made copy of store_add_local. */
	write_file(object_path(&c, ""), "stale", 5);
	write_file(tpath("store/incoming/add-abc123"), "half", 4);
	write_file(tpath("store/incoming/keep-me"), "other", 5);
	s = sopen_ok();
	cr_assert_eq(store_count(s), 0);
	cr_assert_not(exists(tpath("store/incoming/add-abc123")));
	cr_assert(exists(tpath("store/incoming/keep-me")));
	o = upload(s, &c, "c");
	cr_assert_eq(store_get(s, &c.cid), o);
	store_close(s);
	s = sopen_ok();
	cr_assert_eq(store_count(s), 1);
	store_close(s);
	content_free(&c);
}

Test(store, remove_deletes_one_object_and_keeps_the_rest, .init = make_tmpdir, .fini = remove_tmpdir)
{
	struct store *s;
	cr_assert_eq(store_open(tpath("data"), &s), PN_OK);
	const struct store_object *o;
	struct pn_cid cids[3];
	char name[32];
	for (int i = 0; i < 3; i++) {
		char body[100];
		snprintf(name, sizeof name, "f%d", i);
		memset(body, 'a' + i, sizeof body);
		write_file(tpath(name), body, sizeof body - (size_t)i);
		cr_assert_eq(store_add_local(s, tpath(name), NULL, &o), PN_OK);
		cids[i] = o->cid;
	}
	uint64_t total = store_total_bytes(s);
	cr_assert_eq(store_remove(s, &cids[1]), PN_OK);
	cr_assert_eq(store_remove(s, &cids[1]), PN_ENOTFOUND);
	cr_assert_eq(store_count(s), 2);
	cr_assert_eq(store_total_bytes(s), total - cids[1].size);
	cr_assert_null(store_get(s, &cids[1]));
	cr_assert_not_null(store_get(s, &cids[0]));
	cr_assert_not_null(store_get(s, &cids[2]));
	cr_assert_str_eq(store_at(s, 0)->name, "f0", "listing order is kept");
	cr_assert_str_eq(store_at(s, 1)->name, "f2");
	store_close(s);
	cr_assert_eq(store_open(tpath("data"), &s), PN_OK);
	cr_assert_eq(store_count(s), 2, "the removal survives a reopen");
	cr_assert_null(store_get(s, &cids[1]));
	store_close(s);
}
