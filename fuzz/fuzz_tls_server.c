/* libFuzzer target: the input is ciphertext from an unknown client, fed to
 * a fresh server session. The handshake and, should it ever complete, the
 * reads must fail cleanly: no crash, no leak, no unbounded output.
 *
 * Seed: fuzz/corpus/fuzz_tls_server/ holds a real ClientHello from a
 * peernet client session.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include "crypto/crypto.h"

#define FUZZ_READ_BUF 4096
#define FUZZ_MAX_READS 64

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct pn_identity server_identity;
static void *server_ctx;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	/* One identity and context for the whole run: key generation and
	 * context set-up are not what is being tested. */
	if (pn_identity_ephemeral(&server_identity) < 0)
		abort();
	server_ctx = pn_tls_ctx_new(&server_identity, true);
	if (!server_ctx)
		abort();
	return 0;
}

/* Takes out and discards whatever the session wants to send. */
static void drain(struct pn_tls *t)
{
	uint8_t out[FUZZ_READ_BUF];

	while (pn_tls_take_out(t, out, sizeof out) > 0)
		;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pn_tls *t = pn_tls_new(server_ctx, true, NULL);
	uint8_t plain[FUZZ_READ_BUF];
	int rc;

	if (!t)
		abort();
	/* The bytes come as the network delivers them: a first part lent in
	 * place (what the handshake leaves of it is kept), the rest lent after. */
	size_t cut = size ? data[0] % (size + 1) : 0;
	pn_tls_lend(t, data, cut);
	rc = pn_tls_handshake(t);
	drain(t);
	if (pn_tls_unlend(t) != PN_OK)
		abort();
	if (rc == PN_EAGAIN) {
		pn_tls_lend(t, data + cut, size - cut);
		rc = pn_tls_handshake(t);
		drain(t);
		if (pn_tls_unlend(t) != PN_OK)
			abort();
	} else if (pn_tls_feed(t, data + cut, size - cut) < 0) {
		abort();
	}
	if (rc == PN_OK) {
		for (int i = 0; i < FUZZ_MAX_READS; i++) {
			long n = pn_tls_read(t, plain, sizeof plain);
			if (n <= 0)
				break;
		}
		drain(t);
	} else if (rc != PN_EAGAIN && rc != PN_ETLS && rc != PN_EPEERID) {
		abort(); /* outside the documented contract */
	}
	/* A failed session stays failed. */
	if (rc == PN_ETLS && pn_tls_handshake(t) != PN_ETLS)
		abort();
	(void)pn_tls_last_error(t);
	pn_tls_free(t);
	return 0;
}
