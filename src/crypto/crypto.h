/* Node identity, TLS 1.3 sessions over memory buffers, SHA-256.
 *
 * Everything here is OpenSSL's: no home-made handshake or cipher. The TLS
 * session (struct pn_tls) does no I/O itself: ciphertext from the network is
 * fed in, plaintext is read out, plaintext is written in and ciphertext is
 * taken out for the network. src/net/ moves those bytes over sockets.
 */
#ifndef PN_CRYPTO_H
#define PN_CRYPTO_H
#ifndef PN_INTERNAL
#error "an internal header of libpeernet: a program includes <peernet.h> only"
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "peernet.h"

/* ---- hashing ---- */

/* SHA-256 of a buffer. Thread-safe. PN_OK, or PN_ENOMEM when OpenSSL could
 * not allocate (out is then not a hash: never use it as one). */
PN_MUST_CHECK int pn_sha256(const void *data, size_t len, uint8_t out[PN_HASH_BYTES]);

/* Many small digests in a row (the nodes of a hash tree): the digest is
 * fetched once and one context reused. One per thread; init returns PN_OK or
 * PN_ENOMEM (nothing to free then); pn_sha256_many returns as pn_sha256. */
struct pn_sha256_many {
	void *md;  /* EVP_MD*, owned */
	void *ctx; /* EVP_MD_CTX*, owned */
};
PN_MUST_CHECK int pn_sha256_many_init(struct pn_sha256_many *h);
PN_MUST_CHECK int pn_sha256_many(struct pn_sha256_many *h, const void *data, size_t len,
				 uint8_t out[PN_HASH_BYTES]);
void pn_sha256_many_free(struct pn_sha256_many *h);

/* ---- randomness ---- */

/* len bytes from OpenSSL's CSPRNG: PN_OK or PN_EIO. */
PN_MUST_CHECK int pn_random_bytes(void *buf, size_t len);

/* ---- identity ---- */

struct pn_identity {
	void *pkey;  /* EVP_PKEY*: Ed25519 key pair, owned */
	void *cert;  /* X509*: self-signed certificate over pkey, owned */
	uint8_t node_id[PN_ID_BYTES]; /* SHA-256 of the 32-byte raw public key */
};

#define PN_IDENTITY_FILE "identity.pem"

/* Loads DIR/identity.pem (PKCS#8 PEM private key), or creates it with mode 0600
 * if it does not exist (creating DIR with 0700 if needed). Refuses a key file
 * readable by group or others (PN_EACCES) and any key that is not Ed25519
 * (PN_EINVAL). The certificate is made fresh from the key on each load. On
 * success the caller owns *id and frees it with pn_identity_free(). */
PN_MUST_CHECK int pn_identity_load_or_create(const char *dir, struct pn_identity *id);
/* A fresh identity that lives only in memory (clients without a data directory). */
PN_MUST_CHECK int pn_identity_ephemeral(struct pn_identity *id);
void pn_identity_free(struct pn_identity *id);

/* pn_node_id_format and pn_node_id_parse: peernet.h. */

/* ---- the DHT's keys and signatures (dht_sign.c; docs/PROTOCOL.md, "DHT
 * datagrams"). The datagram layout is src/wire/dht_wire.h's. ---- */

struct pn_dht_msg;
struct pn_dht_record;

#define PN_DHT_WORD_MIN 2  /* shorter words are not published */
/* Publishable words of one name: a 255-byte name has at most 85 words of 2
 * bytes or more (each followed by a separator but the last). */
#define PN_DHT_WORDS_MAX 85

/* Key of a content ID: SHA-256("peernet-dht-cid" || cid), cid in its 40-byte
 * wire form. 0, or PN_ENOMEM (key is then not a key). */
PN_MUST_CHECK int pn_dht_key_of_cid(const uint8_t cid[PN_CID_BYTES], uint8_t key[PN_HASH_BYTES]);

/* Key of a keyword: SHA-256("peernet-dht-word" || word), the word with its
 * ASCII letters lower-cased. word is PN_DHT_WORD_MIN..PN_NAME_MAX bytes that
 * are all word bytes (pn_word_byte), else PN_EINVAL. 0, PN_EINVAL, PN_ENOMEM. */
PN_MUST_CHECK int pn_dht_key_of_word(const char *word, size_t len, uint8_t key[PN_HASH_BYTES]);

/* One word of a name: name[off .. off + len). */
struct pn_dht_word {
	uint16_t off;
	uint16_t len;
};

/* Splits name (len <= PN_NAME_MAX bytes) into its distinct words of
 * PN_DHT_WORD_MIN bytes or more, split as search splits (pn_word_byte) and
 * compared ASCII case-insensitively; the first spelling of a word is kept,
 * in order of first appearance. Writes at most max and returns how many. */
size_t pn_dht_name_words(const char *name, size_t len, struct pn_dht_word *out, size_t max);

/* Signs a datagram that pn_dht_encode wrote (len bytes, the last 64 the
 * signature's place): writes id's raw public key as sender_key, then id's
 * Ed25519 signature over dgram[0 .. len - 64) into the last 64 bytes.
 * 0, or PN_EINVAL (len out of range, id not Ed25519), PN_ENOMEM. */
PN_MUST_CHECK int pn_dht_sign_dgram(const struct pn_identity *id, uint8_t *dgram, size_t len);

/* Checks a datagram that pn_dht_decode read from dgram (len bytes) into m:
 * m->sig must be sender_key's Ed25519 signature over the m->signed_len
 * bytes before it. On success writes the sender's node ID, SHA-256 of
 * sender_key, to sender_id. 0, or PN_EPEERID (bad signature, or a key that
 * is not a valid Ed25519 point), PN_EINVAL (m was not decoded from dgram),
 * PN_ENOMEM. */
PN_MUST_CHECK int pn_dht_verify_dgram(const uint8_t *dgram, size_t len, const struct pn_dht_msg *m,
				      uint8_t sender_id[PN_ID_BYTES]);

/* Signs record r for key: sets r->publisher to id's raw public key and
 * r->sig to the signature over pn_dht_record_signed_bytes(r, key). r's
 * other fields must already be set. 0, PN_EINVAL, PN_ENOMEM. */
PN_MUST_CHECK int pn_dht_record_sign(const struct pn_identity *id, const uint8_t key[PN_HASH_BYTES],
				     struct pn_dht_record *r);

/* Checks r->sig against r->publisher over pn_dht_record_signed_bytes(r,
 * key). 0, PN_EPEERID (bad signature), PN_ENOMEM. */
PN_MUST_CHECK int pn_dht_record_verify(const struct pn_dht_record *r, const uint8_t key[PN_HASH_BYTES]);

/* Whether key is the key r belongs under: for a PROVIDER record the key of
 * its cid, for a KEYWORD record the key of one of the words of its name
 * (pn_dht_name_words). 0 if it is, PN_EINVAL if not (or r is malformed),
 * PN_ENOMEM. */
PN_MUST_CHECK int pn_dht_record_key_check(const struct pn_dht_record *r, const uint8_t key[PN_HASH_BYTES]);

/* ---- TLS ---- */

struct pn_tls_ctx; /* a context, opaque */

/* A TLS 1.3-only context presenting `id`, requiring and accepting the peer's
 * self-signed Ed25519 certificate (identity is checked by node ID, not by a
 * CA), ALPN "peernet/1". Returns NULL on failure. The context holds its own
 * references to the key and certificate. The caller frees it with
 * pn_tls_ctx_free, after every session made on it.
 * The context is set up for both roles: a node may dial and accept with one
 * context; the role of each session is pn_tls_new's is_server. */
struct pn_tls_ctx *pn_tls_ctx_new(const struct pn_identity *id, bool is_server);
void pn_tls_ctx_free(struct pn_tls_ctx *ctx);
/* OpenSSL's SSL_CTX* behind ctx (borrowed), for tests that check its settings. */
void *pn_tls_ctx_ssl(const struct pn_tls_ctx *ctx);

struct pn_tls; /* one session, opaque */

/* A session on ctx, which must outlive it. If expected_id is not NULL the
 * peer must present that node ID or the handshake fails with PN_EPEERID.
 * Caller frees with pn_tls_free. */
struct pn_tls *pn_tls_new(struct pn_tls_ctx *ctx, bool is_server, const uint8_t *expected_id);
void pn_tls_free(struct pn_tls *t);

/* Hands ciphertext from the network to the session. Always consumes all of it
 * (the memory BIO grows); callers bound how much they feed before reading. */
PN_MUST_CHECK int pn_tls_feed(struct pn_tls *t, const void *ct, size_t len);
/* Lends ct (len bytes the caller keeps in place) to the session: the next
 * handshake steps and reads take ciphertext straight from it. The caller
 * must call pn_tls_unlend before ct changes or goes away; it keeps what was
 * not read (PN_ENOMEM if it cannot). */
void pn_tls_lend(struct pn_tls *t, const void *ct, size_t len);
PN_MUST_CHECK int pn_tls_unlend(struct pn_tls *t);

/* Advances the handshake. Returns PN_OK when it is complete, PN_EAGAIN when it
 * needs more input, PN_ETLS or PN_EPEERID on failure. After each call, send
 * what pn_tls_pending_out reports (on failure that is the alert). A failed
 * session stays failed. In TLS 1.3 a client completes before the server has
 * checked the client's certificate, so the server may still refuse: its
 * alert then arrives as PN_ETLS from pn_tls_read. */
PN_MUST_CHECK int pn_tls_handshake(struct pn_tls *t);
bool pn_tls_established(const struct pn_tls *t);

/* Reads decrypted bytes: returns the count (> 0), PN_EAGAIN if none are ready,
 * PN_ECLOSED on a clean close_notify, PN_ETLS on failure or if the session is
 * not established. Reading may queue ciphertext (a KeyUpdate reply): check
 * pn_tls_pending_out afterwards. */
PN_MUST_CHECK long pn_tls_read(struct pn_tls *t, void *buf, size_t cap);

/* Encrypts plaintext; the ciphertext is then taken with pn_tls_take_out.
 * Returns PN_OK or PN_ETLS (also if the session is not established). */
PN_MUST_CHECK int pn_tls_write(struct pn_tls *t, const void *pt, size_t len);

/* Ciphertext waiting to go to the network. Moves up to cap bytes into buf and
 * returns the count (0 if none). */
size_t pn_tls_take_out(struct pn_tls *t, void *buf, size_t cap);
size_t pn_tls_pending_out(const struct pn_tls *t);
/* Takes all pending ciphertext at once, without copying: returns a malloc'd
 * buffer the caller frees with free() (NULL and *len 0 if none). */
uint8_t *pn_tls_take_out_buf(struct pn_tls *t, size_t *len);
/* Makes room for the ciphertext of `plaintext` bytes about to be written, so
 * the output buffer grows once rather than record by record. */
void pn_tls_reserve_out(struct pn_tls *t, size_t plaintext);

/* Gives back the memory of drained buffers that grew during a transfer.
 * Buffers are kept while data flows (re-growing them for every record costs
 * more than the transfer); the caller trims a session once it goes quiet. */
void pn_tls_trim(struct pn_tls *t);

/* Sends close_notify (taken out like any other ciphertext). */
void pn_tls_shutdown(struct pn_tls *t);

/* The peer's node ID once established; PN_EINVAL before. */
PN_MUST_CHECK int pn_tls_peer_id(const struct pn_tls *t, uint8_t out[PN_ID_BYTES]);

/* A one-line description of the last TLS failure (static buffer per session). */
const char *pn_tls_last_error(const struct pn_tls *t);

#endif
