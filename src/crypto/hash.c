/* SHA-256 through OpenSSL's EVP interface.
 *
 * The digest is fetched from the default provider once and shared: an
 * EVP_MD is immutable after the fetch, so concurrent EVP_Digest calls on it
 * from libuv's thread pool are safe.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <openssl/evp.h>
#include "crypto/crypto.h"

static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;
static const EVP_MD *sha256_md;

static void sha256_fetch(void)
{
	/* An explicit fetch saves the implicit per-call look-up that
	 * EVP_sha256() costs under OpenSSL 3. Kept for the life of the process. */
	EVP_MD *md = EVP_MD_fetch(NULL, "SHA2-256", NULL);
	sha256_md = md ? md : EVP_sha256();
}

void pn_sha256(const void *data, size_t len, uint8_t out[PN_HASH_BYTES])
{
	unsigned int out_len = 0;

	pthread_once(&sha256_once, sha256_fetch);
	if (EVP_Digest(data, len, out, &out_len, sha256_md, NULL) != 1 ||
	    out_len != PN_HASH_BYTES) {
		/* Only an allocation failure gets here. A wrong hash would be
		 * taken for corrupt data, so stop instead of returning one. */
		fputs("peernet: SHA-256 failed (out of memory?)\n", stderr);
		abort();
	}
}
