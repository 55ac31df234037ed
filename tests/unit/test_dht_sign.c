/* Unit tests for src/crypto/dht_sign.c: the DHT's keys, a name's words, and
 * the signatures over datagrams and records. The key vectors were computed
 * with Python's hashlib from docs/PROTOCOL.md's definitions.
 */
#include <stdio.h>
#include <string.h>
#include <criterion/criterion.h>
#include "crypto/crypto.h"
#include "wire/dht_wire.h"
#include "dhtkey.h"
#include "testutil.h"

#define KEY_CID2_HEX "fb887212931e8acd554aa040ab596eeae10a194b3b5a3c3df1315a0438b3667e"
#define KEY_REPORT_HEX "d7859a2836ff664da89393c461bad26ffce9ac83d80de30f3848f525cb0ab3c0"
#define KEY_QUARTERLY_HEX "1b659b025700fdcaeb4ad1aebc0650bca91d3a6702bc9775c7785c2f3e082926"

static const char kw_name[] = "Quarterly report.pdf";

/* ================= keys ================= */

Test(keys, of_cid)
{
	uint8_t cid[PN_CID_BYTES], key[PN_HASH_BYTES], want[PN_HASH_BYTES];

	unhex(CID2_HEX, cid, sizeof(cid));
	unhex(KEY_CID2_HEX, want, sizeof(want));
	cr_assert_eq(pn_dht_key_of_cid(cid, key), PN_OK);
	cr_assert_arr_eq(key, want, sizeof(key));
	cid[39] ^= 1;
	cr_assert_eq(pn_dht_key_of_cid(cid, key), PN_OK);
	cr_assert_arr_neq(key, want, sizeof(key));
}

Test(keys, of_word_lower_cases_ascii_only)
{
	uint8_t key[PN_HASH_BYTES], want[PN_HASH_BYTES], other[PN_HASH_BYTES];
	static const char *const spellings[] = { "report", "REPORT", "RePoRt" };

	unhex(KEY_REPORT_HEX, want, sizeof(want));
	for (size_t i = 0; i < 3; i++) {
		cr_assert_eq(pn_dht_key_of_word(spellings[i], 6, key), PN_OK);
		cr_assert_arr_eq(key, want, sizeof(key), "%s", spellings[i]);
	}
	unhex(KEY_QUARTERLY_HEX, want, sizeof(want));
	cr_assert_eq(pn_dht_key_of_word("Quarterly", 9, key), PN_OK);
	cr_assert_arr_eq(key, want, sizeof(key));

	/* Bytes >= 0x80 are kept as they are: "CAFÉ" is "cafÉ", not "café". */
	uint8_t buf[64];
	memcpy(buf, "peernet-dht-word", 16);
	memcpy(buf + 16, "caf\xc3\x89", 5);
	cr_assert_eq(pn_sha256(buf, 21, want), PN_OK);
	cr_assert_eq(pn_dht_key_of_word("CAF\xc3\x89", 5, key), PN_OK);
	cr_assert_arr_eq(key, want, sizeof(key));
	cr_assert_eq(pn_dht_key_of_word("caf\xc3\xa9", 5, other), PN_OK);
	cr_assert_arr_neq(key, other, sizeof(key));
	/* Digits are word bytes. */
	cr_assert_eq(pn_dht_key_of_word("2024", 4, key), PN_OK);
}

Test(keys, of_word_refuses_what_is_not_one_word)
{
	uint8_t key[PN_HASH_BYTES];
	char long_word[PN_NAME_MAX + 1];

	memset(long_word, 'w', sizeof(long_word));
	cr_assert_eq(pn_dht_key_of_word("ab", 2, key), PN_OK);
	cr_assert_eq(pn_dht_key_of_word("a", 1, key), PN_EINVAL);
	cr_assert_eq(pn_dht_key_of_word("", 0, key), PN_EINVAL);
	cr_assert_eq(pn_dht_key_of_word(NULL, 2, key), PN_EINVAL);
	cr_assert_eq(pn_dht_key_of_word("re port", 7, key), PN_EINVAL);
	cr_assert_eq(pn_dht_key_of_word("report.", 7, key), PN_EINVAL);
	cr_assert_eq(pn_dht_key_of_word("a-b", 3, key), PN_EINVAL);
	cr_assert_eq(pn_dht_key_of_word(long_word, PN_NAME_MAX, key), PN_OK);
	cr_assert_eq(pn_dht_key_of_word(long_word, PN_NAME_MAX + 1, key), PN_EINVAL);
}

/* ================= words of a name ================= */

static void check_words(const char *name, const char *const *want, size_t n_want)
{
	struct pn_dht_word words[PN_DHT_WORDS_MAX];
	size_t n = pn_dht_name_words(name, strlen(name), words, PN_DHT_WORDS_MAX);

	cr_assert_eq(n, n_want, "\"%s\": %zu words, want %zu", name, n, n_want);
	for (size_t i = 0; i < n; i++) {
		cr_assert_eq(words[i].len, strlen(want[i]), "\"%s\" word %zu", name, i);
		cr_assert_eq(memcmp(name + words[i].off, want[i], words[i].len), 0, "\"%s\" word %zu", name, i);
	}
}

Test(words, split_distinct_at_least_two_bytes)
{
	static const char *const w1[] = { "Quarterly", "report", "pdf" };
	check_words(kw_name, w1, 3);
	static const char *const w2[] = { "cd", "ef" };
	check_words("a b cd CD Cd ef-ef", w2, 2);
	static const char *const w3[] = { "2024", "Report", "v2", "tar", "gz" };
	check_words("__2024_Report (v2).tar.gz.V2", w3, 5);
	static const char *const w4[] = { "r\xc3\xa9sum\xc3\xa9", "\xc3\xa9t\xc3\xa9" };
	check_words("r\xc3\xa9sum\xc3\xa9 \xc3\xa9t\xc3\xa9.x", w4, 2);
	check_words("a.b-c d", NULL, 0);
	check_words("", NULL, 0);
	check_words("...", NULL, 0);
}

Test(words, most_words_and_max)
{
	/* 85 distinct two-letter words with one space between: 254 bytes. */
	char name[PN_NAME_MAX + 1];
	size_t len = 0;
	for (int i = 0; i < PN_DHT_WORDS_MAX; i++) {
		if (i)
			name[len++] = ' ';
		name[len++] = (char)('a' + i / 26);
		name[len++] = (char)('a' + i % 26);
	}
	cr_assert_eq(len, 254);
	struct pn_dht_word words[PN_DHT_WORDS_MAX];
	cr_assert_eq(pn_dht_name_words(name, len, words, PN_DHT_WORDS_MAX), PN_DHT_WORDS_MAX);
	cr_assert_eq(words[84].off, 252);
	cr_assert_eq(pn_dht_name_words(name, len, words, 10), 10);
	cr_assert_eq(words[9].off, 27);
	cr_assert_eq(pn_dht_name_words(name, len, words, 0), 0);
	cr_assert_eq(pn_dht_name_words(name, PN_NAME_MAX + 1, words, PN_DHT_WORDS_MAX), 0);
}

/* ================= datagrams ================= */

/* A signed FIND_NODE from id in d; returns its length. */
static size_t signed_find_node(const struct pn_identity *id, uint8_t *d, uint32_t txid)
{
	struct pn_dht_msg m;
	size_t len;

	memset(&m, 0, sizeof(m));
	m.type = PN_DHT_FIND_NODE;
	m.txid = txid;
	memset(m.u.target, 0x3c, sizeof(m.u.target));
	cr_assert_eq(pn_dht_encode(&m, d, &len), PN_OK);
	cr_assert_eq(pn_dht_sign_dgram(id, d, len), PN_OK);
	return len;
}

static int decode_verify(const uint8_t *d, size_t len, uint8_t sender_id[PN_ID_BYTES])
{
	struct pn_dht_msg m;
	const uint8_t *g = guard_copy(d, len);

	cr_assert_eq(pn_dht_decode(g, len, &m), PN_OK);
	return pn_dht_verify_dgram(g, len, &m, sender_id);
}

Test(dgram, sign_and_verify)
{
	struct pn_identity id;
	uint8_t d[PN_DHT_DGRAM_MAX], sender_id[PN_ID_BYTES], pub[PN_DHT_PUB_BYTES];
	size_t len;

	cr_assert_eq(pn_identity_ephemeral(&id), PN_OK);
	len = signed_find_node(&id, d, 77);
	cr_assert_eq(decode_verify(d, len, sender_id), PN_OK);
	/* The node ID is the one the identity (and TLS) gives the key. */
	cr_assert_arr_eq(sender_id, id.node_id, PN_ID_BYTES);
	size_t pub_len = sizeof(pub);
	cr_assert_eq(EVP_PKEY_get_raw_public_key(id.pkey, pub, &pub_len), 1);
	cr_assert_arr_eq(d + 8, pub, sizeof(pub), "sender_key is the raw public key");
	pn_identity_free(&id);
}

Test(dgram, wrong_signature_key_or_byte)
{
	struct pn_identity id, other;
	uint8_t d[PN_DHT_DGRAM_MAX], bad[PN_DHT_DGRAM_MAX], sender_id[PN_ID_BYTES], other_pub[PN_DHT_PUB_BYTES];
	size_t len, pub_len = sizeof(other_pub);

	fixed_identity(&id);
	cr_assert_eq(pn_identity_ephemeral(&other), PN_OK);
	cr_assert_eq(EVP_PKEY_get_raw_public_key(other.pkey, other_pub, &pub_len), 1);
	len = signed_find_node(&id, d, 1);
	cr_assert_eq(decode_verify(d, len, sender_id), PN_OK);

	/* Every single bit flipped anywhere: refused (a flipped magic, version
	 * or type does not even decode; everything else fails the signature). */
	for (size_t i = 0; i < len; i++) {
		for (int bit = 0; bit < 8; bit++) {
			struct pn_dht_msg m;
			memcpy(bad, d, len);
			bad[i] ^= (uint8_t)(1 << bit);
			const uint8_t *g = guard_copy(bad, len);
			if (pn_dht_decode(g, len, &m) != PN_OK)
				continue;
			cr_assert_eq(pn_dht_verify_dgram(g, len, &m, sender_id), PN_EPEERID, "byte %zu bit %d", i, bit);
		}
	}
	/* Another node's key in the header, this node's signature. */
	memcpy(bad, d, len);
	memcpy(bad + 8, other_pub, sizeof(other_pub));
	cr_assert_eq(decode_verify(bad, len, sender_id), PN_EPEERID);
	/* Another node's signature over the same bytes with this node's key. */
	memcpy(bad, d, len);
	cr_assert_eq(pn_dht_sign_dgram(&other, bad, len), PN_OK);
	memcpy(bad + 8, d + 8, PN_DHT_PUB_BYTES);
	cr_assert_eq(decode_verify(bad, len, sender_id), PN_EPEERID);
	/* A zero signature; a key that is no curve point at all. */
	memcpy(bad, d, len);
	memset(bad + len - PN_DHT_SIG_BYTES, 0, PN_DHT_SIG_BYTES);
	cr_assert_eq(decode_verify(bad, len, sender_id), PN_EPEERID);
	memcpy(bad, d, len);
	memset(bad + 8, 0xff, PN_DHT_PUB_BYTES);
	cr_assert_eq(decode_verify(bad, len, sender_id), PN_EPEERID);
	/* The untouched datagram still passes: the loop above worked on copies. */
	cr_assert_eq(decode_verify(d, len, sender_id), PN_OK);
	pn_identity_free(&other);
	pn_identity_free(&id);
}

Test(dgram, verify_needs_the_decoded_bytes)
{
	struct pn_identity id;
	uint8_t d[PN_DHT_DGRAM_MAX], copy[PN_DHT_DGRAM_MAX], sender_id[PN_ID_BYTES];
	struct pn_dht_msg m;
	size_t len;

	fixed_identity(&id);
	len = signed_find_node(&id, d, 5);
	cr_assert_eq(pn_dht_decode(d, len, &m), PN_OK);
	memcpy(copy, d, len);
	cr_assert_eq(pn_dht_verify_dgram(copy, len, &m, sender_id), PN_EINVAL, "m's sig points elsewhere");
	cr_assert_eq(pn_dht_verify_dgram(d, len - 1, &m, sender_id), PN_EINVAL);
	m.sender_key[0] ^= 1;
	cr_assert_eq(pn_dht_verify_dgram(d, len, &m, sender_id), PN_EINVAL, "m's key is not the datagram's");
	m.sender_key[0] ^= 1;
	cr_assert_eq(pn_dht_verify_dgram(d, len, &m, sender_id), PN_OK);
	cr_assert_eq(pn_dht_verify_dgram(NULL, len, &m, sender_id), PN_EINVAL);

	cr_assert_eq(pn_dht_sign_dgram(&id, d, PN_DHT_HDR_BYTES + PN_DHT_SIG_BYTES - 1), PN_EINVAL);
	cr_assert_eq(pn_dht_sign_dgram(&id, d, PN_DHT_DGRAM_MAX + 1), PN_EINVAL);
	struct pn_identity none = { 0 };
	cr_assert_eq(pn_dht_sign_dgram(&none, d, len), PN_EINVAL);
	pn_identity_free(&id);
}

/* ================= records ================= */

static struct pn_dht_record kw_record(void)
{
	struct pn_dht_record r = { .kind = PN_DHT_REC_KEYWORD, .name = kw_name,
				   .name_len = (uint8_t)strlen(kw_name) };
	unhex(CID2_HEX, r.cid, sizeof(r.cid));
	return r;
}

Test(record, sign_and_verify_and_tamper)
{
	struct pn_identity id, other;
	uint8_t key[PN_HASH_BYTES], other_key[PN_HASH_BYTES], other_pub[PN_DHT_PUB_BYTES];
	struct pn_dht_record r = kw_record(), bad;
	size_t pub_len = sizeof(other_pub);

	fixed_identity(&id);
	cr_assert_eq(pn_identity_ephemeral(&other), PN_OK);
	cr_assert_eq(EVP_PKEY_get_raw_public_key(other.pkey, other_pub, &pub_len), 1);
	cr_assert_eq(pn_dht_key_of_word("report", 6, key), PN_OK);
	cr_assert_eq(pn_dht_key_of_word("pdf", 3, other_key), PN_OK);
	cr_assert_eq(pn_dht_record_sign(&id, key, &r), PN_OK);
	uint8_t want_pub[PN_DHT_PUB_BYTES];
	unhex(RFC8032_PUB_HEX, want_pub, sizeof(want_pub));
	cr_assert_arr_eq(r.publisher, want_pub, sizeof(want_pub));
	cr_assert_eq(pn_dht_record_verify(&r, key), PN_OK);

	/* Moved to another key (even one of its own words): refused. */
	cr_assert_eq(pn_dht_record_verify(&r, other_key), PN_EPEERID);
	/* Claimed by another publisher. */
	bad = r;
	memcpy(bad.publisher, other_pub, sizeof(other_pub));
	cr_assert_eq(pn_dht_record_verify(&bad, key), PN_EPEERID);
	/* Signed by another node under this one's name. */
	bad = r;
	cr_assert_eq(pn_dht_record_sign(&other, key, &bad), PN_OK);
	cr_assert_eq(pn_dht_record_verify(&bad, key), PN_OK);
	memcpy(bad.publisher, r.publisher, sizeof(r.publisher));
	cr_assert_eq(pn_dht_record_verify(&bad, key), PN_EPEERID);
	/* Any field changed. */
	bad = r;
	bad.cid[39] ^= 1;
	cr_assert_eq(pn_dht_record_verify(&bad, key), PN_EPEERID);
	bad = r;
	bad.kind = PN_DHT_REC_PROVIDER;
	cr_assert_eq(pn_dht_record_verify(&bad, key), PN_EPEERID);
	bad = r;
	bad.name = "Quarterly report.PDF";
	cr_assert_eq(pn_dht_record_verify(&bad, key), PN_EPEERID);
	bad = r;
	bad.name_len--;
	cr_assert_eq(pn_dht_record_verify(&bad, key), PN_EPEERID);
	bad = r;
	bad.sig[63] ^= 0x80;
	cr_assert_eq(pn_dht_record_verify(&bad, key), PN_EPEERID);
	/* The address is not signed (the storer fills it in). */
	bad = r;
	bad.addr.family = 4;
	bad.addr.port = 9;
	cr_assert_eq(pn_dht_record_verify(&bad, key), PN_OK);
	cr_assert_eq(pn_dht_record_verify(&r, key), PN_OK);
	pn_identity_free(&other);
	pn_identity_free(&id);
}

Test(record, provider_key_check)
{
	struct pn_identity id;
	struct pn_dht_record p = { .kind = PN_DHT_REC_PROVIDER };
	uint8_t key[PN_HASH_BYTES], word_key[PN_HASH_BYTES];

	unhex(CID2_HEX, p.cid, sizeof(p.cid));
	unhex(KEY_CID2_HEX, key, sizeof(key));
	fixed_identity(&id);
	cr_assert_eq(pn_dht_record_sign(&id, key, &p), PN_OK);
	cr_assert_eq(pn_dht_record_verify(&p, key), PN_OK);
	cr_assert_eq(pn_dht_record_key_check(&p, key), PN_OK);
	cr_assert_eq(pn_dht_key_of_word("report", 6, word_key), PN_OK);
	cr_assert_eq(pn_dht_record_key_check(&p, word_key), PN_EINVAL);
	p.cid[0] ^= 1;
	cr_assert_eq(pn_dht_record_key_check(&p, key), PN_EINVAL);
	pn_identity_free(&id);
}

Test(record, keyword_key_check)
{
	struct pn_dht_record r = kw_record();
	uint8_t key[PN_HASH_BYTES];
	static const char *const words[] = { "quarterly", "REPORT", "pdf" };
	static const char *const not_words[] = { "quart", "reports", "pd", "quarterlyreport" };

	for (size_t i = 0; i < 3; i++) {
		cr_assert_eq(pn_dht_key_of_word(words[i], strlen(words[i]), key), PN_OK);
		cr_assert_eq(pn_dht_record_key_check(&r, key), PN_OK, "%s", words[i]);
	}
	for (size_t i = 0; i < 4; i++) {
		cr_assert_eq(pn_dht_key_of_word(not_words[i], strlen(not_words[i]), key), PN_OK);
		cr_assert_eq(pn_dht_record_key_check(&r, key), PN_EINVAL, "%s", not_words[i]);
	}
	cr_assert_eq(pn_dht_key_of_cid(r.cid, key), PN_OK);
	cr_assert_eq(pn_dht_record_key_check(&r, key), PN_EINVAL, "a keyword record under its cid's key");
	r.kind = 3;
	cr_assert_eq(pn_dht_key_of_word("pdf", 3, key), PN_OK);
	cr_assert_eq(pn_dht_record_key_check(&r, key), PN_EINVAL);
}
