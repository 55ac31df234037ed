/* The fixed Ed25519 key of the DHT test vectors (header only: each test is
 * one program): RFC 8032's test 1 key, whose public key is
 * d75a9801...0751 1a. Ed25519 signatures are deterministic, so datagrams
 * signed with it can be checked byte for byte.
 */
#ifndef PN_TESTS_DHTKEY_H
#define PN_TESTS_DHTKEY_H

#include <string.h>
#include <criterion/criterion.h>
#include <openssl/evp.h>
#include "crypto/crypto.h"

#define RFC8032_SEED_HEX "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
#define RFC8032_PUB_HEX "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"

/* An identity from a 32-byte Ed25519 seed, without a certificate (the DHT
 * signs with the key only). Freed with pn_identity_free. */
static inline void identity_from_seed(const uint8_t seed[32], struct pn_identity *id)
{
	uint8_t pub[32];
	size_t pub_len = sizeof(pub);

	memset(id, 0, sizeof(*id));
	id->pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
	cr_assert_not_null(id->pkey);
	cr_assert_eq(EVP_PKEY_get_raw_public_key(id->pkey, pub, &pub_len), 1);
	cr_assert_eq(pn_sha256(pub, sizeof(pub), id->node_id), PN_OK);
}

static inline void fixed_identity(struct pn_identity *id)
{
	static const uint8_t seed[32] = {
		0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c, 0xc4,
		0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60,
	};
	identity_from_seed(seed, id);
}

#endif
