/* Helpers shared between the files of src/crypto/ only. */
#ifndef PN_CRYPTO_INTERNAL_H
#define PN_CRYPTO_INTERNAL_H
#ifndef PN_INTERNAL
#error "an internal header of libpeernet: a program includes <peernet.h> only"
#endif

#include <stdint.h>
#include "peernet.h"

/* The node ID behind an X509* certificate: SHA-256 of its raw Ed25519
 * public key. PN_EINVAL when the key is not Ed25519. */
int pn__cert_node_id(void *cert, uint8_t out[PN_ID_BYTES]);

#endif
