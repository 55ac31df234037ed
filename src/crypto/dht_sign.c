/* The DHT's keys and signatures: the key of a content ID and of a keyword,
 * the words of a name, and Ed25519 signatures over datagrams and records
 * (docs/PROTOCOL.md, "DHT datagrams"; docs/DHT.md says why).
 *
 * Signing and checking go through OpenSSL's EVP interface, as identity.c
 * does; hashing through pn_sha256 (hash.c). The byte layout is the wire
 * layer's (src/wire/dht_wire.h): this file only reads the header's
 * sender_key field and the record's signed bytes it defines.
 */
#include <string.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include "crypto/crypto.h"
#include "util/text.h"
#include "wire/dht_wire.h"

#define CID_TAG "peernet-dht-cid"
#define WORD_TAG "peernet-dht-word"
#define CID_TAG_LEN (sizeof(CID_TAG) - 1)
#define WORD_TAG_LEN (sizeof(WORD_TAG) - 1)
/* Where sender_key sits in the header: magic (2), version, type, txid (4). */
#define SENDER_KEY_OFF (2 + 1 + 1 + 4)

_Static_assert(SENDER_KEY_OFF + PN_DHT_PUB_BYTES == PN_DHT_HDR_BYTES, "sender_key ends the header");
_Static_assert(PN_DHT_KEY_BYTES == PN_HASH_BYTES && PN_ID_BYTES == PN_HASH_BYTES, "keys are SHA-256");
_Static_assert(PN_DHT_WORDS_MAX * PN_DHT_WORD_MIN + (PN_DHT_WORDS_MAX - 1) <= PN_NAME_MAX &&
	       (PN_DHT_WORDS_MAX + 1) * PN_DHT_WORD_MIN + PN_DHT_WORDS_MAX > PN_NAME_MAX,
	       "PN_DHT_WORDS_MAX is the most words a name can hold");

/* ---- keys ---- */

int pn_dht_key_of_cid(const uint8_t cid[PN_CID_BYTES], uint8_t key[PN_HASH_BYTES])
{
	uint8_t buf[CID_TAG_LEN + PN_CID_BYTES];

	memcpy(buf, CID_TAG, CID_TAG_LEN);
	memcpy(buf + CID_TAG_LEN, cid, PN_CID_BYTES);
	return pn_sha256(buf, sizeof(buf), key);
}

int pn_dht_key_of_word(const char *word, size_t len, uint8_t key[PN_HASH_BYTES])
{
	uint8_t buf[WORD_TAG_LEN + PN_NAME_MAX];

	if (!word || len < PN_DHT_WORD_MIN || len > PN_NAME_MAX)
		return PN_EINVAL;
	memcpy(buf, WORD_TAG, WORD_TAG_LEN);
	for (size_t i = 0; i < len; i++) {
		uint8_t c = (uint8_t)word[i];
		if (!pn_word_byte(c))
			return PN_EINVAL;
		buf[WORD_TAG_LEN + i] = pn_ascii_lower(c);
	}
	return pn_sha256(buf, WORD_TAG_LEN + len, key);
}

static bool words_equal(const char *a, const char *b, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (pn_ascii_lower((uint8_t)a[i]) != pn_ascii_lower((uint8_t)b[i]))
			return false;
	return true;
}

size_t pn_dht_name_words(const char *name, size_t len, struct pn_dht_word *out, size_t max)
{
	size_t n = 0, i = 0;

	if (!name || len > PN_NAME_MAX)
		return 0;
	while (i < len && n < max) {
		while (i < len && !pn_word_byte((uint8_t)name[i]))
			i++;
		size_t start = i;
		while (i < len && pn_word_byte((uint8_t)name[i]))
			i++;
		size_t wlen = i - start;
		if (wlen < PN_DHT_WORD_MIN)
			continue;
		bool seen = false;
		for (size_t k = 0; k < n && !seen; k++)
			seen = out[k].len == wlen && words_equal(name + out[k].off, name + start, wlen);
		if (!seen)
			out[n++] = (struct pn_dht_word){ .off = (uint16_t)start, .len = (uint16_t)wlen };
	}
	return n;
}

/* ---- Ed25519 ---- */

/* Signs msg with id's key into sig[64]. */
static int ed25519_sign(const struct pn_identity *id, const uint8_t *msg, size_t len,
			uint8_t sig[PN_DHT_SIG_BYTES])
{
	EVP_MD_CTX *ctx;
	size_t sig_len = PN_DHT_SIG_BYTES;
	int rc = PN_ENOMEM;

	if (!id || !id->pkey || !EVP_PKEY_is_a(id->pkey, "ED25519"))
		return PN_EINVAL;
	ctx = EVP_MD_CTX_new();
	if (!ctx)
		goto out;
	/* Ed25519 signs the message itself: no digest. */
	if (EVP_DigestSignInit(ctx, NULL, NULL, NULL, id->pkey) != 1 ||
	    EVP_DigestSign(ctx, sig, &sig_len, msg, len) != 1 || sig_len != PN_DHT_SIG_BYTES)
		goto out;
	rc = PN_OK;
out:
	EVP_MD_CTX_free(ctx);
	ERR_clear_error();
	return rc;
}

/* Checks sig over msg against the raw public key pub. PN_EPEERID when the
 * signature is wrong or pub is not a key OpenSSL accepts. */
static int ed25519_verify(const uint8_t pub[PN_DHT_PUB_BYTES], const uint8_t *msg, size_t len,
			  const uint8_t sig[PN_DHT_SIG_BYTES])
{
	EVP_PKEY *pkey;
	EVP_MD_CTX *ctx = NULL;
	int rc = PN_ENOMEM;

	pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, PN_DHT_PUB_BYTES);
	if (!pkey) {
		rc = PN_EPEERID;
		goto out;
	}
	ctx = EVP_MD_CTX_new();
	if (!ctx || EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pkey) != 1)
		goto out;
	rc = EVP_DigestVerify(ctx, sig, PN_DHT_SIG_BYTES, msg, len) == 1 ? PN_OK : PN_EPEERID;
out:
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(pkey);
	ERR_clear_error();
	return rc;
}

static int raw_public_key(const struct pn_identity *id, uint8_t pub[PN_DHT_PUB_BYTES])
{
	size_t pub_len = PN_DHT_PUB_BYTES;

	if (!id || !id->pkey || !EVP_PKEY_is_a(id->pkey, "ED25519") ||
	    EVP_PKEY_get_raw_public_key(id->pkey, pub, &pub_len) != 1 || pub_len != PN_DHT_PUB_BYTES) {
		ERR_clear_error();
		return PN_EINVAL;
	}
	return PN_OK;
}

/* ---- datagrams ---- */

int pn_dht_sign_dgram(const struct pn_identity *id, uint8_t *dgram, size_t len)
{
	int rc;

	if (!dgram || len < PN_DHT_HDR_BYTES + PN_DHT_SIG_BYTES || len > PN_DHT_DGRAM_MAX)
		return PN_EINVAL;
	rc = raw_public_key(id, dgram + SENDER_KEY_OFF);
	if (rc < 0)
		return rc;
	return ed25519_sign(id, dgram, len - PN_DHT_SIG_BYTES, dgram + len - PN_DHT_SIG_BYTES);
}

int pn_dht_verify_dgram(const uint8_t *dgram, size_t len, const struct pn_dht_msg *m,
			uint8_t sender_id[PN_ID_BYTES])
{
	int rc;

	/* m must describe these very bytes: the signature is the last 64 of
	 * them and the key the one in the header. */
	if (!dgram || !m || len < PN_DHT_HDR_BYTES + PN_DHT_SIG_BYTES || len > PN_DHT_DGRAM_MAX ||
	    m->signed_len != len - PN_DHT_SIG_BYTES || m->sig != dgram + m->signed_len ||
	    memcmp(m->sender_key, dgram + SENDER_KEY_OFF, PN_DHT_PUB_BYTES) != 0)
		return PN_EINVAL;
	rc = ed25519_verify(m->sender_key, dgram, m->signed_len, m->sig);
	if (rc < 0)
		return rc;
	return pn_sha256(m->sender_key, PN_DHT_PUB_BYTES, sender_id);
}

/* ---- records ---- */

int pn_dht_record_sign(const struct pn_identity *id, const uint8_t key[PN_HASH_BYTES], struct pn_dht_record *r)
{
	uint8_t signed_bytes[PN_DHT_SIGNED_MAX];
	size_t n;
	int rc;

	if (!r || !key || (r->name_len && !r->name))
		return PN_EINVAL;
	rc = raw_public_key(id, r->publisher);
	if (rc < 0)
		return rc;
	n = pn_dht_record_signed_bytes(r, key, signed_bytes);
	return ed25519_sign(id, signed_bytes, n, r->sig);
}

int pn_dht_record_verify(const struct pn_dht_record *r, const uint8_t key[PN_HASH_BYTES])
{
	uint8_t signed_bytes[PN_DHT_SIGNED_MAX];
	size_t n;

	if (!r || !key || (r->name_len && !r->name))
		return PN_EINVAL;
	n = pn_dht_record_signed_bytes(r, key, signed_bytes);
	return ed25519_verify(r->publisher, signed_bytes, n, r->sig);
}

int pn_dht_record_key_check(const struct pn_dht_record *r, const uint8_t key[PN_HASH_BYTES])
{
	struct pn_dht_word words[PN_DHT_WORDS_MAX];
	uint8_t want[PN_HASH_BYTES];
	size_t n;
	int rc;

	if (!r || !key)
		return PN_EINVAL;
	switch (r->kind) {
	case PN_DHT_REC_PROVIDER:
		rc = pn_dht_key_of_cid(r->cid, want);
		if (rc < 0)
			return rc;
		return memcmp(want, key, PN_HASH_BYTES) == 0 ? PN_OK : PN_EINVAL;
	case PN_DHT_REC_KEYWORD:
		if (!r->name || !r->name_len)
			return PN_EINVAL;
		n = pn_dht_name_words(r->name, r->name_len, words, PN_DHT_WORDS_MAX);
		for (size_t i = 0; i < n; i++) {
			rc = pn_dht_key_of_word(r->name + words[i].off, words[i].len, want);
			if (rc < 0)
				return rc;
			if (memcmp(want, key, PN_HASH_BYTES) == 0)
				return PN_OK;
		}
		return PN_EINVAL;
	default:
		return PN_EINVAL;
	}
}
