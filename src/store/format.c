/* The two on-disk formats (object .meta, partial .state): parsers for
 * untrusted files, encoders, and the file-name rule. Pure functions. */
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include "store/store.h"
#include "store/store_int.h"
#include "util/buf.h"
#include "util/text.h"

bool store_name_valid(const char *name, size_t len)
{
	/* The one name rule (util/text.c), plus the empty name ("unknown"). */
	return len == 0 || pn_name_valid(name, len);
}

size_t store_bitmap_bytes(uint32_t nchunks)
{
	return ((size_t)nchunks + 7) / 8;
}

size_t store_meta_max_len(uint32_t nchunks)
{
	return STORE_META_FIXED + PN_NAME_MAX + (size_t)nchunks * PN_HASH_BYTES;
}

size_t store_state_max_len(uint32_t nchunks)
{
	return STORE_STATE_FIXED + PN_NAME_MAX + (size_t)nchunks * PN_HASH_BYTES + store_bitmap_bytes(nchunks);
}

/* Reads the magic, the cid and checks the size; returns the chunk count or 0
 * with r->err set. */
static uint32_t read_head(struct pn_reader *r, const char *magic, struct pn_cid *cid)
{
	const uint8_t *m = pn_rd_ptr(r, STORE_MAGIC_LEN);

	if (m && memcmp(m, magic, STORE_MAGIC_LEN) != 0)
		pn_rd_fail(r, PN_EPROTO);
	pn_rd_bytes(r, cid->root, PN_HASH_BYTES);
	cid->size = pn_rd_u64(r);
	if (!r->err && cid->size > PN_MAX_FILE_SIZE)
		pn_rd_fail(r, PN_ETOOBIG);
	return r->err ? 0 : pn_cid_chunks(cid);
}

static void read_name(struct pn_reader *r, char name[PN_NAME_MAX + 1])
{
	uint16_t len = pn_rd_u16(r);
	const uint8_t *p;

	name[0] = '\0';
	if (!r->err && len > PN_NAME_MAX) {
		pn_rd_fail(r, PN_EPROTO);
		return;
	}
	p = pn_rd_ptr(r, len);
	if (!p)
		return;
	if (!store_name_valid((const char *)p, len)) {
		pn_rd_fail(r, PN_EPROTO);
		return;
	}
	memcpy(name, p, len);
	name[len] = '\0';
}

/* A truncated file is malformed, not "need more". */
static int reader_result(const struct pn_reader *r)
{
	if (r->err == PN_EAGAIN)
		return PN_EPROTO;
	if (r->err)
		return r->err;
	return r->off == r->len ? 0 : PN_EPROTO;
}

/* PN_OK when the hashes give cid's root, PN_ECORRUPT when not, PN_ENOMEM. */
static int root_check(const struct pn_cid *cid, const uint8_t *hashes, uint32_t nchunks)
{
	uint8_t root[PN_HASH_BYTES];
	int err = store_tree_root(hashes, nchunks, root);

	if (err)
		return err;
	return CRYPTO_memcmp(root, cid->root, PN_HASH_BYTES) == 0 ? PN_OK : PN_ECORRUPT;
}

int store_meta_parse(const uint8_t *buf, size_t len, struct pn_cid *cid, char name[PN_NAME_MAX + 1],
		     uint8_t **hashes_out)
{
	struct pn_reader r;
	const uint8_t *hashes;
	uint32_t nchunks;
	uint8_t *copy;
	int err;

	pn_rd_init(&r, buf, len);
	nchunks = read_head(&r, STORE_META_MAGIC, cid);
	read_name(&r, name);
	hashes = pn_rd_ptr(&r, r.err ? 0 : (size_t)nchunks * PN_HASH_BYTES);
	err = reader_result(&r);
	if (err)
		return err;
	err = root_check(cid, hashes, nchunks);
	if (err)
		return err;
	copy = malloc((size_t)nchunks * PN_HASH_BYTES);
	if (!copy)
		return PN_ENOMEM;
	memcpy(copy, hashes, (size_t)nchunks * PN_HASH_BYTES);
	*hashes_out = copy;
	return 0;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

int store_state_parse(const uint8_t *buf, size_t len, struct store_state *out)
{
	struct pn_reader r;
	size_t bitmap_len;
	int err;

	memset(out, 0, sizeof *out);
	pn_rd_init(&r, buf, len);
	out->nchunks = read_head(&r, STORE_PART_MAGIC, &out->cid);
	out->flags = pn_rd_u8(&r);
	if (!r.err && (out->flags & ~STORE_STATE_HASHES_DONE))
		pn_rd_fail(&r, PN_EPROTO);
	read_name(&r, out->name);
	bitmap_len = store_bitmap_bytes(out->nchunks);
	out->hashes = pn_rd_ptr(&r, r.err ? 0 : (size_t)out->nchunks * PN_HASH_BYTES);
	out->bitmap = pn_rd_ptr(&r, r.err ? 0 : bitmap_len);
	err = reader_result(&r);
	if (err)
		return err;
	/* Bits past the last chunk are zero. */
	if (out->nchunks % 8 && (out->bitmap[bitmap_len - 1] & (0xffu >> (out->nchunks % 8))))
		return PN_EPROTO;
	if (!(out->flags & STORE_STATE_HASHES_DONE)) {
		/* No chunk can be verified before the hash list is. */
		if (!all_zero(out->bitmap, bitmap_len))
			return PN_EPROTO;
	} else {
		return root_check(&out->cid, out->hashes, out->nchunks);
	}
	return 0;
}

static void write_head(struct pn_writer *w, const char *magic, const struct pn_cid *cid)
{
	pn_wr_bytes(w, magic, STORE_MAGIC_LEN);
	pn_wr_bytes(w, cid->root, PN_HASH_BYTES);
	pn_wr_u64(w, cid->size);
}

int store_meta_encode(const struct pn_cid *cid, const char *name, const uint8_t *hashes,
		      uint8_t **out, size_t *out_len)
{
	uint32_t nchunks = pn_cid_chunks(cid);
	size_t name_len = strlen(name), cap = store_meta_max_len(nchunks);
	struct pn_writer w;
	uint8_t *buf;

	if (cid->size > PN_MAX_FILE_SIZE || !store_name_valid(name, name_len))
		return PN_EINVAL;
	buf = malloc(cap);
	if (!buf)
		return PN_ENOMEM;
	pn_wr_init(&w, buf, cap);
	write_head(&w, STORE_META_MAGIC, cid);
	pn_wr_u16(&w, (uint16_t)name_len);
	pn_wr_bytes(&w, name, name_len);
	pn_wr_bytes(&w, hashes, (size_t)nchunks * PN_HASH_BYTES);
	if (w.err) {
		free(buf);
		return PN_EINVAL;
	}
	*out = buf;
	*out_len = w.len;
	return 0;
}

int store_state_encode(const struct pn_cid *cid, uint8_t flags, const char *name, const uint8_t *hashes,
		       const uint8_t *bitmap, uint8_t **out, size_t *out_len)
{
	uint32_t nchunks = pn_cid_chunks(cid);
	size_t name_len = strlen(name), cap = store_state_max_len(nchunks);
	struct pn_writer w;
	uint8_t *buf;

	if (cid->size > PN_MAX_FILE_SIZE || !store_name_valid(name, name_len))
		return PN_EINVAL;
	buf = malloc(cap);
	if (!buf)
		return PN_ENOMEM;
	pn_wr_init(&w, buf, cap);
	write_head(&w, STORE_PART_MAGIC, cid);
	pn_wr_u8(&w, flags);
	pn_wr_u16(&w, (uint16_t)name_len);
	pn_wr_bytes(&w, name, name_len);
	pn_wr_bytes(&w, hashes, (size_t)nchunks * PN_HASH_BYTES);
	pn_wr_bytes(&w, bitmap, store_bitmap_bytes(nchunks));
	if (w.err) {
		free(buf);
		return PN_EINVAL;
	}
	*out = buf;
	*out_len = w.len;
	return 0;
}
