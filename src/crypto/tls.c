/* TLS 1.3 sessions driven through memory BIOs.
 *
 * A session never touches a socket: ciphertext from the network is written
 * into rbio, ciphertext for the network accumulates in wbio. Peers are
 * authenticated by node ID (SHA-256 of their Ed25519 key), not by a CA: the
 * certificate check below replaces OpenSSL's chain verification with "one
 * certificate, Ed25519 key, and the pinned node ID if there is one".
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include "crypto/crypto.h"
#include "crypto/internal.h"
#include "util/buf.h"

#define PN_TLS_CIPHERSUITES \
	"TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
#define PN_TLS_SIGALGS "ed25519"
/* Key exchange: a client sends an X25519 key share; P-256 is accepted. */
#define PN_TLS_GROUPS "X25519:P-256"
#define PN_ALPN_NAME "peernet/1"
#define PN_ALPN_NAME_LEN (sizeof PN_ALPN_NAME - 1)
#define PN_TLS_ERR_LEN 192
/* A drained memory BIO with a larger buffer than this is replaced. */
#define PN_TLS_BIO_KEEP (16u * 1024u)

/* ALPN wire form: length-prefixed names. */
static const unsigned char alpn_wire[] = {
	(unsigned char)PN_ALPN_NAME_LEN, 'p', 'e', 'e', 'r', 'n', 'e', 't', '/', '1'
};

/* The output BIO's type: a fixed number from the application range rather
 * than BIO_get_new_index(), which hands out one of 127 numbers per process
 * while every context makes its own method. */
#define PN_TLS_OUT_BIO_TYPE (0xfe | BIO_TYPE_SOURCE_SINK)
#define PN_TLS_IN_BIO_TYPE (0xfd | BIO_TYPE_SOURCE_SINK)

enum tls_state { TLS_HANDSHAKING, TLS_ESTABLISHED, TLS_FAILED };

/* A context: OpenSSL's, and the method of our output BIO (kept here, not in
 * a process-wide once-initialised global). */
struct pn_tls_ctx {
	SSL_CTX *ssl_ctx;
	BIO_METHOD *out_method;
	BIO_METHOD *in_method;
};

struct pn_tls {
	SSL *ssl;
	BIO *rbio;              /* ciphertext in (reads lent, then in); owned by ssl */
	const uint8_t *lent;    /* the caller's ciphertext, read in place until pn_tls_unlend */
	size_t lent_len;
	uint8_t *in;            /* ciphertext kept: what a lend left unread, or fed */
	size_t in_off, in_len, in_cap;
	BIO *wbio;              /* ciphertext out (appends to out); owned by ssl */
	uint8_t *out;           /* ciphertext waiting for the network */
	size_t out_len, out_cap;
	enum tls_state state;
	int fail_rc;            /* PN_ETLS or PN_EPEERID once failed */
	bool is_server;
	bool pinned;            /* expected_id is set */
	bool have_peer_id;
	bool id_mismatch;
	uint8_t expected_id[PN_ID_BYTES];
	uint8_t peer_id[PN_ID_BYTES];
	char err[PN_TLS_ERR_LEN];
};

static void set_reason(struct pn_tls *t, const char *reason)
{
	if (!t->err[0])
		snprintf(t->err, sizeof t->err, "%s", reason);
}

/* Marks the session failed with rc, keeps the first reason (ours, or the
 * first queued OpenSSL error), and empties the thread's error queue so it
 * cannot leak into another session. Returns rc. */
static int fail(struct pn_tls *t, int rc)
{
	unsigned long e = ERR_peek_error();

	if (!t->err[0]) {
		if (e)
			ERR_error_string_n(e, t->err, sizeof t->err);
		else
			set_reason(t, "TLS failure");
	}
	ERR_clear_error();
	t->state = TLS_FAILED;
	t->fail_rc = rc;
	return rc;
}

static struct pn_tls *session_of(SSL *ssl)
{
	return ssl ? SSL_get_app_data(ssl) : NULL;
}

/* True if the client's ALPN list (untrusted) names peernet/1. */
static bool alpn_list_has_ours(const unsigned char *in, unsigned int inlen)
{
	struct pn_reader r;

	pn_rd_init(&r, in, inlen);
	while (pn_rd_left(&r) > 0) {
		uint8_t name_len = pn_rd_u8(&r);
		const uint8_t *name = pn_rd_ptr(&r, name_len);
		if (!name)
			return false;
		if (name_len == PN_ALPN_NAME_LEN && !memcmp(name, PN_ALPN_NAME, PN_ALPN_NAME_LEN))
			return true;
	}
	return false;
}

/* Server: pick peernet/1 or end the handshake with no_application_protocol. */
static int alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
			  const unsigned char *in, unsigned int inlen, void *arg)
{
	(void)arg;
	if (!alpn_list_has_ours(in, inlen)) {
		struct pn_tls *t = session_of(ssl);
		if (t)
			set_reason(t, "client does not speak ALPN " PN_ALPN_NAME);
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	}
	*out = alpn_wire + 1;
	*outlen = (unsigned char)PN_ALPN_NAME_LEN;
	return SSL_TLSEXT_ERR_OK;
}

/* Server: a ClientHello without any ALPN extension never reaches the ALPN
 * callback, so refuse it here. */
static int client_hello_cb(SSL *ssl, int *alert, void *arg)
{
	const unsigned char *ext;
	size_t ext_len;

	(void)arg;
	if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation,
				      &ext, &ext_len) == 1)
		return SSL_CLIENT_HELLO_SUCCESS;
	struct pn_tls *t = session_of(ssl);
	if (t)
		set_reason(t, "client did not offer ALPN " PN_ALPN_NAME);
	*alert = SSL_AD_NO_APPLICATION_PROTOCOL;
	return SSL_CLIENT_HELLO_ERROR;
}

static bool alpn_selected_ok(const SSL *ssl)
{
	const unsigned char *sel = NULL;
	unsigned int sel_len = 0;

	SSL_get0_alpn_selected(ssl, &sel, &sel_len);
	return sel && sel_len == PN_ALPN_NAME_LEN && !memcmp(sel, PN_ALPN_NAME, sel_len);
}

static int reject(X509_STORE_CTX *store, int x509_err)
{
	X509_STORE_CTX_set_error(store, x509_err);
	return 0;
}

/* Replaces chain verification. Accepts exactly one certificate whose key is
 * Ed25519 (its self-signature proves nothing: the handshake's
 * CertificateVerify already proves the peer holds the key), records the
 * peer's node ID, and checks it against the pinned one. A client also checks
 * here that the server chose our ALPN, so it never sends its own
 * certificate to a server that does not speak peernet/1.
 * Returns 1 to accept, 0 to fail the handshake. */
static int verify_peer_cb(X509_STORE_CTX *store, void *arg)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct pn_tls *t = session_of(ssl);
	X509 *cert = X509_STORE_CTX_get0_cert(store);
	STACK_OF(X509) *sent = X509_STORE_CTX_get0_untrusted(store);
	uint8_t id[PN_ID_BYTES];

	(void)arg;
	if (!t || !cert)
		return reject(store, X509_V_ERR_UNSPECIFIED);
	if (sent && sk_X509_num(sent) > 1) {
		set_reason(t, "peer sent a certificate chain, expected one self-signed certificate");
		return reject(store, X509_V_ERR_CERT_CHAIN_TOO_LONG);
	}
	int id_rc = pn__cert_node_id(cert, id);
	if (id_rc < 0) {
		set_reason(t, id_rc == PN_ENOMEM ? "out of memory hashing the peer's key"
						 : "peer certificate key is not Ed25519");
		return reject(store, X509_V_ERR_CERT_REJECTED);
	}
	if (!t->is_server && !alpn_selected_ok(ssl)) {
		set_reason(t, "server did not select ALPN " PN_ALPN_NAME);
		return reject(store, X509_V_ERR_APPLICATION_VERIFICATION);
	}
	if (t->pinned && CRYPTO_memcmp(id, t->expected_id, PN_ID_BYTES) != 0) {
		char want[PN_NODE_ID_STR_LEN + 1], got[PN_NODE_ID_STR_LEN + 1];
		pn_node_id_format(t->expected_id, want);
		pn_node_id_format(id, got);
		snprintf(t->err, sizeof t->err, "peer identity mismatch: expected %s got %s",
			 want, got);
		t->id_mismatch = true;
		return reject(store, X509_V_ERR_APPLICATION_VERIFICATION);
	}
	memcpy(t->peer_id, id, PN_ID_BYTES);
	t->have_peer_id = true;
	return 1;
}

static BIO_METHOD *out_method_new(void);
static BIO_METHOD *in_method_new(void);

struct pn_tls_ctx *pn_tls_ctx_new(const struct pn_identity *id, bool is_server)
{
	SSL_CTX *ctx;
	struct pn_tls_ctx *c = NULL;

	/* The context is set up for both roles; each session picks its own. */
	(void)is_server;
	if (!id || !id->pkey || !id->cert)
		return NULL;
	ERR_clear_error();
	ctx = SSL_CTX_new(TLS_method());
	if (!ctx)
		goto fail;
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
	    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1 ||
	    SSL_CTX_set_ciphersuites(ctx, PN_TLS_CIPHERSUITES) != 1 ||
	    SSL_CTX_set1_sigalgs_list(ctx, PN_TLS_SIGALGS) != 1 ||
	    SSL_CTX_set1_groups_list(ctx, PN_TLS_GROUPS) != 1)
		goto fail;
	if (SSL_CTX_use_certificate(ctx, id->cert) != 1 ||
	    SSL_CTX_use_PrivateKey(ctx, id->pkey) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1)
		goto fail;
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	SSL_CTX_set_cert_verify_callback(ctx, verify_peer_cb, NULL);
	/* No resumption: every connection authenticates afresh, and no ticket
	 * or cache entry is kept per connection. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_CIPHER_SERVER_PREFERENCE);
	if (SSL_CTX_set_num_tickets(ctx, 0) != 1)
		goto fail;
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	/* Idle connections give their record buffers back. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	/* Client side offers peernet/1 (note: 0 means success here). */
	if (SSL_CTX_set_alpn_protos(ctx, alpn_wire, sizeof alpn_wire) != 0)
		goto fail;
	SSL_CTX_set_alpn_select_cb(ctx, alpn_select_cb, NULL);
	SSL_CTX_set_client_hello_cb(ctx, client_hello_cb, NULL);
	c = calloc(1, sizeof *c);
	if (!c)
		goto fail;
	c->out_method = out_method_new();
	c->in_method = in_method_new();
	if (!c->out_method || !c->in_method)
		goto fail;
	c->ssl_ctx = ctx;
	return c;
fail:
	free(c);
	SSL_CTX_free(ctx);
	ERR_clear_error();
	return NULL;
}

void *pn_tls_ctx_ssl(const struct pn_tls_ctx *ctx)
{
	return ctx->ssl_ctx;
}

void pn_tls_ctx_free(struct pn_tls_ctx *ctx)
{
	if (!ctx)
		return;
	SSL_CTX_free(ctx->ssl_ctx);
	BIO_meth_free(ctx->out_method);
	BIO_meth_free(ctx->in_method);
	free(ctx);
}

/* ---- the output BIO ----
 * Ciphertext is appended straight into t->out, a plain buffer that the
 * caller can take whole (pn_tls_take_out_buf) and hand to the socket without
 * another copy. A memory BIO would add a copy, and clean and regrow its
 * buffer as it drains. */

#define OUT_MIN_CAP (16u * 1024u)
#define TLS_RECORD_OVERHEAD 32u /* header, tag and content type of one TLS 1.3 record, rounded up */
#define TLS_RECORD_MAX 16384u

/* Makes room for `more` bytes after the first `len` of *buf (capacity *cap),
 * doubling from OUT_MIN_CAP. 0 when out of memory. */
static int grow(uint8_t **buf, size_t *cap, size_t len, size_t more)
{
	if (*cap - len >= more)
		return 1;
	size_t c = *cap ? *cap : OUT_MIN_CAP;
	while (c - len < more) {
		if (c > SIZE_MAX / 2)
			return 0;
		c *= 2;
	}
	uint8_t *n = realloc(*buf, c);
	if (!n)
		return 0;
	*buf = n;
	*cap = c;
	return 1;
}

static int out_reserve(struct pn_tls *t, size_t more)
{
	return grow(&t->out, &t->out_cap, t->out_len, more);
}

static int out_write(BIO *b, const char *data, size_t len, size_t *written)
{
	struct pn_tls *t = BIO_get_data(b);
	if (!t || !out_reserve(t, len))
		return 0;
	memcpy(t->out + t->out_len, data, len);
	t->out_len += len;
	*written = len;
	return 1;
}

static long out_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct pn_tls *t = BIO_get_data(b);
	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1;
	case BIO_CTRL_PENDING:
	case BIO_CTRL_WPENDING:
		return t ? (long)t->out_len : 0;
	default:
		return 0;
	}
}

static int out_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static int out_destroy(BIO *b)
{
	return 1; /* t->out belongs to the session */
}

/* The output BIO's method, one per context; NULL when out of memory. */
static BIO_METHOD *out_method_new(void)
{
	BIO_METHOD *m = BIO_meth_new(PN_TLS_OUT_BIO_TYPE, "peernet-out");
	if (m && BIO_meth_set_write_ex(m, out_write) && BIO_meth_set_ctrl(m, out_ctrl) &&
	    BIO_meth_set_create(m, out_create) && BIO_meth_set_destroy(m, out_destroy))
		return m;
	BIO_meth_free(m);
	return NULL;
}

/* The input BIO reads ciphertext where it lies: first what was kept from
 * earlier, then the caller's read buffer, lent for the length of one
 * pn_tls_lend .. pn_tls_unlend (no copy into a memory BIO). */
static int in_read(BIO *b, char *data, size_t want, size_t *got)
{
	struct pn_tls *t = BIO_get_data(b);
	size_t n = 0;

	BIO_clear_retry_flags(b);
	if (t && t->in_len > t->in_off) {
		n = t->in_len - t->in_off < want ? t->in_len - t->in_off : want;
		memcpy(data, t->in + t->in_off, n);
		t->in_off += n;
		if (t->in_off == t->in_len)
			t->in_off = t->in_len = 0;
	}
	if (t && n < want && t->lent_len) {
		size_t m = t->lent_len < want - n ? t->lent_len : want - n;
		memcpy(data + n, t->lent, m);
		t->lent += m;
		t->lent_len -= m;
		n += m;
	}
	if (n == 0) {
		BIO_set_retry_read(b); /* no bytes yet: never end of file */
		*got = 0;
		return 0;
	}
	*got = n;
	return 1;
}

static long in_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct pn_tls *t = BIO_get_data(b);
	switch (cmd) {
	case BIO_CTRL_PENDING:
		return t ? (long)(t->in_len - t->in_off + t->lent_len) : 0;
	case BIO_CTRL_FLUSH:
		return 1;
	default:
		return 0;
	}
}

static BIO_METHOD *in_method_new(void)
{
	BIO_METHOD *m = BIO_meth_new(PN_TLS_IN_BIO_TYPE, "peernet-in");
	if (m && BIO_meth_set_read_ex(m, in_read) && BIO_meth_set_ctrl(m, in_ctrl) &&
	    BIO_meth_set_create(m, out_create) && BIO_meth_set_destroy(m, out_destroy))
		return m;
	BIO_meth_free(m);
	return NULL;
}

/* Keeps len more bytes of ciphertext in t->in. 0 when out of memory. */
static int in_keep(struct pn_tls *t, const uint8_t *p, size_t len)
{
	if (t->in_off) { /* move what is left to the front first */
		memmove(t->in, t->in + t->in_off, t->in_len - t->in_off);
		t->in_len -= t->in_off;
		t->in_off = 0;
	}
	if (!grow(&t->in, &t->in_cap, t->in_len, len))
		return 0;
	memcpy(t->in + t->in_len, p, len);
	t->in_len += len;
	return 1;
}

static BIO *new_out_bio(const BIO_METHOD *method, struct pn_tls *t)
{
	BIO *b = BIO_new(method);
	if (b)
		BIO_set_data(b, t);
	return b;
}

struct pn_tls *pn_tls_new(struct pn_tls_ctx *ctx, bool is_server, const uint8_t *expected_id)
{
	struct pn_tls *t;
	BIO *rbio = NULL, *wbio = NULL;

	if (!ctx)
		return NULL;
	t = calloc(1, sizeof *t);
	if (!t)
		return NULL;
	ERR_clear_error();
	t->ssl = SSL_new(ctx->ssl_ctx);
	rbio = new_out_bio(ctx->in_method, t);
	wbio = new_out_bio(ctx->out_method, t);
	if (!t->ssl || !rbio || !wbio)
		goto fail;
	SSL_set_bio(t->ssl, rbio, wbio); /* ssl owns both from here */
	t->rbio = rbio;
	t->wbio = wbio;
	SSL_set_app_data(t->ssl, t);
	t->is_server = is_server;
	if (is_server)
		SSL_set_accept_state(t->ssl);
	else
		SSL_set_connect_state(t->ssl);
	if (expected_id) {
		memcpy(t->expected_id, expected_id, PN_ID_BYTES);
		t->pinned = true;
	}
	t->state = TLS_HANDSHAKING;
	return t;
fail:
	BIO_free(rbio);
	BIO_free(wbio);
	SSL_free(t->ssl);
	free(t);
	ERR_clear_error();
	return NULL;
}

void pn_tls_free(struct pn_tls *t)
{
	if (!t)
		return;
	SSL_free(t->ssl); /* frees both BIOs; OpenSSL wipes the key schedule */
	free(t->out);
	free(t->in);
	free(t);
}

/* Swaps a drained memory BIO whose buffer grew past PN_TLS_BIO_KEEP for a
 * fresh one, so that one large transfer does not pin its buffer for the
 * life of an idle connection. */
/* Gives back a drained buffer that one large transfer grew, so that it is
 * not pinned for the life of an idle connection. */
static void shrink_bio(struct pn_tls *t, bool out)
{
	if (out) {
		if (!t->out_len) {
			free(t->out);
			t->out = NULL;
			t->out_cap = 0;
		}
		return;
	}
	if (t->in_len == t->in_off && t->in_cap > PN_TLS_BIO_KEEP) {
		free(t->in);
		t->in = NULL;
		t->in_off = t->in_len = t->in_cap = 0;
	}
}

int pn_tls_feed(struct pn_tls *t, const void *ct, size_t len)
{
	/* A failed session reads nothing more: drop the bytes, keep no memory. */
	if (t->state == TLS_FAILED || len == 0)
		return PN_OK;
	return in_keep(t, ct, len) ? PN_OK : PN_ENOMEM;
}

void pn_tls_lend(struct pn_tls *t, const void *ct, size_t len)
{
	if (t->state == TLS_FAILED)
		return; /* as pn_tls_feed: dropped */
	t->lent = ct;
	t->lent_len = len;
}

int pn_tls_unlend(struct pn_tls *t)
{
	int r = PN_OK;
	if (t->lent_len && t->state != TLS_FAILED && !in_keep(t, t->lent, t->lent_len))
		r = PN_ENOMEM;
	t->lent = NULL;
	t->lent_len = 0;
	return r;
}

/* The handshake has just completed: make sure of ALPN and the peer ID. */
static int finish_handshake(struct pn_tls *t)
{
	if (!alpn_selected_ok(t->ssl)) {
		set_reason(t, "peer did not agree on ALPN " PN_ALPN_NAME);
		return fail(t, PN_ETLS);
	}
	if (!t->have_peer_id) {
		set_reason(t, "peer presented no certificate");
		return fail(t, PN_ETLS);
	}
	t->state = TLS_ESTABLISHED;
	return PN_OK;
}

int pn_tls_handshake(struct pn_tls *t)
{
	int r;

	if (t->state == TLS_ESTABLISHED)
		return PN_OK;
	if (t->state == TLS_FAILED)
		return t->fail_rc;
	ERR_clear_error();
	r = SSL_do_handshake(t->ssl);
	if (r == 1)
		return finish_handshake(t);
	if (SSL_get_error(t->ssl, r) == SSL_ERROR_WANT_READ) {
		ERR_clear_error();
		return PN_EAGAIN;
	}
	return fail(t, t->id_mismatch ? PN_EPEERID : PN_ETLS);
}

bool pn_tls_established(const struct pn_tls *t)
{
	return t->state == TLS_ESTABLISHED;
}

long pn_tls_read(struct pn_tls *t, void *buf, size_t cap)
{
	size_t n = 0;
	int r;

	if (t->state != TLS_ESTABLISHED || cap == 0)
		return PN_ETLS;
	if (cap > INT_MAX)
		cap = INT_MAX;
	ERR_clear_error();
	r = SSL_read_ex(t->ssl, buf, cap, &n);
	if (r == 1)
		return (long)n;
	switch (SSL_get_error(t->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		ERR_clear_error();
		return PN_EAGAIN;
	case SSL_ERROR_ZERO_RETURN:
		ERR_clear_error();
		return PN_ECLOSED;
	default:
		return fail(t, PN_ETLS);
	}
}

int pn_tls_write(struct pn_tls *t, const void *pt, size_t len)
{
	const uint8_t *p = pt;

	if (t->state != TLS_ESTABLISHED)
		return PN_ETLS;
	while (len > 0) {
		size_t chunk = len > INT_MAX ? INT_MAX : len;
		size_t written = 0;
		ERR_clear_error();
		if (SSL_write_ex(t->ssl, p, chunk, &written) != 1 || written == 0)
			return fail(t, PN_ETLS);
		p += written;
		len -= written;
	}
	return PN_OK;
}

size_t pn_tls_take_out(struct pn_tls *t, void *buf, size_t cap)
{
	size_t n = t->out_len < cap ? t->out_len : cap;
	if (!n)
		return 0;
	memcpy(buf, t->out, n);
	memmove(t->out, t->out + n, t->out_len - n);
	t->out_len -= n;
	return n;
}

uint8_t *pn_tls_take_out_buf(struct pn_tls *t, size_t *len)
{
	uint8_t *b = t->out;
	*len = t->out_len;
	if (!b || !t->out_len) {
		*len = 0;
		return NULL;
	}
	t->out = NULL;
	t->out_len = t->out_cap = 0;
	return b;
}

void pn_tls_reserve_out(struct pn_tls *t, size_t plaintext)
{
	size_t records = plaintext / TLS_RECORD_MAX + 1;
	(void)out_reserve(t, plaintext + records * TLS_RECORD_OVERHEAD);
}

size_t pn_tls_pending_out(const struct pn_tls *t)
{
	return t->out_len;
}

void pn_tls_trim(struct pn_tls *t)
{
	shrink_bio(t, false);
	shrink_bio(t, true);
}


void pn_tls_shutdown(struct pn_tls *t)
{
	if (t->state != TLS_ESTABLISHED)
		return;
	ERR_clear_error();
	(void)SSL_shutdown(t->ssl);
	ERR_clear_error();
}

int pn_tls_peer_id(const struct pn_tls *t, uint8_t out[PN_ID_BYTES])
{
	if (t->state != TLS_ESTABLISHED || !t->have_peer_id)
		return PN_EINVAL;
	memcpy(out, t->peer_id, PN_ID_BYTES);
	return PN_OK;
}

const char *pn_tls_last_error(const struct pn_tls *t)
{
	return t->err[0] ? t->err : "no error";
}
