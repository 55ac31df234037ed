/* Content IDs: printed form and chunk arithmetic.
 *
 * Printed form: "pn1" + base32 (RFC 4648 alphabet, lower case, no padding)
 * of root[32] || size (u64 big-endian). 40 bytes are 320 bits, exactly 64
 * base32 characters, so the printed form has no padding bits at all.
 */
#include <string.h>
#include "peernet.h"

#define CID_PREFIX "pn1"
#define CID_PREFIX_LEN 3
#define B32_BITS 5                  /* bits per base32 character */
#define B32_GROUP_BYTES 5           /* 5 bytes ... */
#define B32_GROUP_CHARS 8           /* ... are 8 characters */
#define CID_B32_LEN (PN_CID_BYTES / B32_GROUP_BYTES * B32_GROUP_CHARS)
#define SIZE_BYTES 8

_Static_assert(PN_CID_BYTES % B32_GROUP_BYTES == 0, "cid is a whole number of base32 groups");
_Static_assert(CID_PREFIX_LEN + CID_B32_LEN == PN_CID_STR_LEN, "printed length");

static const char b32_alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";

/* Value of one base32 character, either case; -1 if not in the alphabet. */
static int b32_value(char c)
{
	if (c >= 'a' && c <= 'z')
		return c - 'a';
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= '2' && c <= '7')
		return c - '2' + 26;
	return -1;
}

static void cid_to_bytes(const struct pn_cid *cid, uint8_t out[PN_CID_BYTES])
{
	memcpy(out, cid->root, PN_HASH_BYTES);
	for (int i = 0; i < SIZE_BYTES; i++)
		out[PN_HASH_BYTES + i] = (uint8_t)(cid->size >> (8 * (SIZE_BYTES - 1 - i)));
}

void pn_cid_format(const struct pn_cid *cid, char out[PN_CID_STR_LEN + 1])
{
	uint8_t raw[PN_CID_BYTES];
	uint32_t acc = 0;
	int nbits = 0;
	size_t o = CID_PREFIX_LEN;

	cid_to_bytes(cid, raw);
	memcpy(out, CID_PREFIX, CID_PREFIX_LEN);
	for (size_t i = 0; i < PN_CID_BYTES; i++) {
		acc = (acc << 8) | raw[i];
		nbits += 8;
		while (nbits >= B32_BITS) {
			nbits -= B32_BITS;
			out[o++] = b32_alphabet[(acc >> nbits) & 0x1f];
		}
	}
	/* 320 bits divide evenly by 5: nbits is 0 here (asserted above). */
	out[o] = '\0';
}

int pn_cid_parse(const char *s, struct pn_cid *out)
{
	uint8_t raw[PN_CID_BYTES];
	uint32_t acc = 0;
	int nbits = 0;
	size_t o = 0;

	if (!s || !out)
		return PN_EBADID;
	/* Length first, without reading past the NUL of a short string. */
	for (size_t i = 0; i <= PN_CID_STR_LEN; i++) {
		if (s[i] == '\0') {
			if (i != PN_CID_STR_LEN)
				return PN_EBADID;
			break;
		}
		if (i == PN_CID_STR_LEN)
			return PN_EBADID;
	}
	if ((s[0] != 'p' && s[0] != 'P') || (s[1] != 'n' && s[1] != 'N') || s[2] != '1')
		return PN_EBADID;
	for (size_t i = CID_PREFIX_LEN; i < PN_CID_STR_LEN; i++) {
		int v = b32_value(s[i]);
		if (v < 0)
			return PN_EBADID;
		acc = (acc << B32_BITS) | (uint32_t)v;
		nbits += B32_BITS;
		if (nbits >= 8) {
			nbits -= 8;
			raw[o++] = (uint8_t)(acc >> nbits);
		}
		acc &= (1u << nbits) - 1;
	}
	/* Left-over bits would be padding; they must be zero (none for 40 bytes). */
	if (o != PN_CID_BYTES || acc != 0)
		return PN_EBADID;

	uint64_t size = 0;
	for (int i = 0; i < SIZE_BYTES; i++)
		size = (size << 8) | raw[PN_HASH_BYTES + i];
	if (size > PN_MAX_FILE_SIZE)
		return PN_EBADID;
	memcpy(out->root, raw, PN_HASH_BYTES);
	out->size = size;
	return PN_OK;
}

/* Saturates at UINT32_MAX for a size no valid ID can have. */
uint32_t pn_cid_chunks(const struct pn_cid *cid)
{
	uint64_t n;

	if (cid->size == 0)
		return 1;
	n = (cid->size - 1) / PN_CHUNK_SIZE + 1;
	return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

/* 0 for an index past the end. */
uint32_t pn_cid_chunk_len(const struct pn_cid *cid, uint32_t index)
{
	uint32_t n = pn_cid_chunks(cid);

	if (index >= n)
		return 0;
	if (index + 1 < n)
		return PN_CHUNK_SIZE;
	uint64_t rest = cid->size - (uint64_t)index * PN_CHUNK_SIZE;
	return rest > PN_CHUNK_SIZE ? PN_CHUNK_SIZE : (uint32_t)rest;
}
