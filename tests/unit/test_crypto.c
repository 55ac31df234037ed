/* Unit tests for src/crypto: SHA-256, identities, node IDs, TLS sessions
 * pumped against each other in memory. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include "crypto/crypto.h"

#define MIB (1024u * 1024u)
#define PUMP_ROUNDS 16
#define PUMP_BUF 4096

/* RFC 8032 section 7.1, TEST 1, as a PKCS#8 PEM; its public key is
 * d75a9801...f707511a and the node ID below is SHA-256 of those 32 bytes.
 * docs/PROTOCOL.md (Secure channel) quotes the same vector. */
static const char rfc8032_key_pem[] =
	"-----BEGIN PRIVATE KEY-----\n"
	"MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n"
	"-----END PRIVATE KEY-----\n";
static const char rfc8032_node_id[] =
	"21fe31dfa154a261626bf854046fd2271b7bed4b6abe45aa58877ef47f9721b9";

static void hex_of(const uint8_t *p, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", p[i]);
}

static void assert_sha256(const void *data, size_t len, const char *want)
{
	uint8_t digest[PN_HASH_BYTES];
	char hex[2 * PN_HASH_BYTES + 1];

	cr_assert_eq(pn_sha256(data, len, digest), PN_OK);
	hex_of(digest, sizeof digest, hex);
	cr_assert_str_eq(hex, want);
	/* The many-digest hasher gives the same answer, also when reused. */
	struct pn_sha256_many h;
	cr_assert_eq(pn_sha256_many_init(&h), PN_OK);
	for (int i = 0; i < 2; i++) {
		memset(digest, 0, sizeof digest);
		cr_assert_eq(pn_sha256_many(&h, data, len, digest), PN_OK);
		hex_of(digest, sizeof digest, hex);
		cr_assert_str_eq(hex, want);
	}
	pn_sha256_many_free(&h);
}

Test(sha256, fips180_vectors)
{
	assert_sha256("", 0,
		      "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	assert_sha256("abc", 3,
		      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	assert_sha256(m448, strlen(m448),
		      "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
	char *million = malloc(MIB);
	cr_assert_not_null(million);
	memset(million, 'a', 1000000);
	assert_sha256(million, 1000000,
		      "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
	free(million);
}

#define HASH_THREADS 4
#define HASH_ROUNDS 2000

/* Each thread hashes "abc" repeatedly; every digest must be right. */
static void *hash_worker(void *arg)
{
	static const uint8_t want[PN_HASH_BYTES] = {
		0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde,
		0x5d, 0xae, 0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c,
		0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad,
	};
	uint8_t digest[PN_HASH_BYTES];
	long bad = 0;

	(void)arg;
	for (int i = 0; i < HASH_ROUNDS; i++) {
		bad += pn_sha256("abc", 3, digest) != PN_OK;
		bad += memcmp(digest, want, sizeof want) != 0;
	}
	return (void *)bad;
}

Test(sha256, concurrent_callers)
{
	pthread_t threads[HASH_THREADS];

	/* the first calls race on the one-time digest fetch */
	for (int i = 0; i < HASH_THREADS; i++)
		cr_assert_eq(pthread_create(&threads[i], NULL, hash_worker, NULL), 0);
	for (int i = 0; i < HASH_THREADS; i++) {
		void *bad;
		cr_assert_eq(pthread_join(threads[i], &bad), 0);
		cr_assert_null(bad, "wrong digests in thread %d", i);
	}
}

/* ---- identity ---- */

static char tmp_root[64];

static void make_tmp(void)
{
	snprintf(tmp_root, sizeof tmp_root, "/tmp/pn-crypto-test-XXXXXX");
	cr_assert_not_null(mkdtemp(tmp_root));
}

static void rm_tree(const char *path)
{
	DIR *d = opendir(path);
	if (!d) {
		unlink(path);
		return;
	}
	struct dirent *e;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		char sub[512];
		snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
		rm_tree(sub);
	}
	closedir(d);
	rmdir(path);
}

static void cleanup_tmp(void)
{
	rm_tree(tmp_root);
}

static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, data, len), (ssize_t)len);
	cr_assert_eq(fchmod(fd, mode), 0);
	close(fd);
}

static void key_path(char *out, size_t cap, const char *dir)
{
	snprintf(out, cap, "%s/%s", dir, PN_IDENTITY_FILE);
}

TestSuite(identity, .init = make_tmp, .fini = cleanup_tmp);

Test(identity, created_0600_and_reloads_same_id)
{
	char dir[128], path[192];
	struct pn_identity a, b;
	struct stat st;

	snprintf(dir, sizeof dir, "%s/data/node", tmp_root); /* two missing levels */
	cr_assert_eq(pn_identity_load_or_create(dir, &a), PN_OK);
	cr_assert_eq(stat(dir, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0700);
	key_path(path, sizeof path, dir);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert(S_ISREG(st.st_mode));
	cr_assert_eq(st.st_mode & 0777, 0600);

	/* node_id is SHA-256 of the raw public key */
	uint8_t pub[32], want[PN_ID_BYTES];
	size_t pub_len = sizeof pub;
	cr_assert_eq(EVP_PKEY_get_raw_public_key(a.pkey, pub, &pub_len), 1);
	cr_assert_eq(pub_len, 32);
	cr_assert_eq(pn_sha256(pub, pub_len, want), PN_OK);
	cr_assert_arr_eq(a.node_id, want, PN_ID_BYTES);

	/* the certificate: CN = node ID hex, self-signed, verifies under its own key */
	char cn[128], hex[PN_NODE_ID_STR_LEN + 1];
	pn_node_id_format(a.node_id, hex);
	cr_assert(X509_NAME_get_text_by_NID(X509_get_subject_name(a.cert), NID_commonName,
					    cn, sizeof cn) > 0);
	cr_assert_str_eq(cn, hex);
	cr_assert_eq(X509_NAME_cmp(X509_get_subject_name(a.cert), X509_get_issuer_name(a.cert)), 0);
	cr_assert_eq(X509_verify(a.cert, a.pkey), 1);
	cr_assert(X509_cmp_current_time(X509_get0_notBefore(a.cert)) < 0);
	cr_assert(X509_cmp_current_time(X509_get0_notAfter(a.cert)) > 0);

	cr_assert_eq(pn_identity_load_or_create(dir, &b), PN_OK);
	cr_assert_arr_eq(a.node_id, b.node_id, PN_ID_BYTES);
	/* a fresh certificate (new random serial) over the same key */
	cr_assert_neq(ASN1_INTEGER_cmp(X509_get0_serialNumber(a.cert),
				       X509_get0_serialNumber(b.cert)), 0);
	pn_identity_free(&a);
	pn_identity_free(&b);

	/* no temporary files left behind */
	DIR *d = opendir(dir);
	int entries = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		entries += e->d_name[0] != '.';
	closedir(d);
	cr_assert_eq(entries, 1);
}

Test(identity, rfc8032_key_gives_documented_node_id)
{
	char path[192];
	struct pn_identity id;
	uint8_t want[PN_ID_BYTES];

	key_path(path, sizeof path, tmp_root);
	write_file(path, rfc8032_key_pem, strlen(rfc8032_key_pem), 0600);
	cr_assert_eq(pn_identity_load_or_create(tmp_root, &id), PN_OK);
	cr_assert_eq(pn_node_id_parse(rfc8032_node_id, want), PN_OK);
	cr_assert_arr_eq(id.node_id, want, PN_ID_BYTES);
	pn_identity_free(&id);
}

Test(identity, group_or_other_readable_refused)
{
	char path[192];
	struct pn_identity id;

	key_path(path, sizeof path, tmp_root);
	write_file(path, rfc8032_key_pem, strlen(rfc8032_key_pem), 0644);
	cr_assert_eq(pn_identity_load_or_create(tmp_root, &id), PN_EACCES);
	cr_assert_null(id.pkey);
	cr_assert_eq(chmod(path, 0640), 0);
	cr_assert_eq(pn_identity_load_or_create(tmp_root, &id), PN_EACCES);
	cr_assert_eq(chmod(path, 0604), 0);
	cr_assert_eq(pn_identity_load_or_create(tmp_root, &id), PN_EACCES);
	cr_assert_eq(chmod(path, 0400), 0);
	cr_assert_eq(pn_identity_load_or_create(tmp_root, &id), PN_OK);
	pn_identity_free(&id);
}

static void assert_key_file_refused(const void *data, size_t len)
{
	char path[192];
	struct pn_identity id;

	key_path(path, sizeof path, tmp_root);
	unlink(path);
	write_file(path, data, len, 0600);
	cr_assert_eq(pn_identity_load_or_create(tmp_root, &id), PN_EINVAL);
	cr_assert_null(id.pkey);
	cr_assert_null(id.cert);
	cr_assert_eq(ERR_peek_error(), 0, "OpenSSL error queue left non-empty");
	/* the bad file is left alone, not replaced by a new key */
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq((size_t)st.st_size, len);
}

/* Writes pkey as PKCS#8 PEM into a malloc'd string (caller frees). */
static char *pem_of(EVP_PKEY *pkey, const EVP_CIPHER *enc, size_t *len)
{
	BIO *mem = BIO_new(BIO_s_mem());
	char *p;
	cr_assert_eq(PEM_write_bio_PrivateKey(mem, pkey, enc, NULL, 0, NULL,
					      enc ? (void *)"secret" : NULL), 1);
	long n = BIO_get_mem_data(mem, &p);
	char *copy = malloc((size_t)n);
	memcpy(copy, p, (size_t)n);
	*len = (size_t)n;
	BIO_free(mem);
	return copy;
}

Test(identity, garbage_and_foreign_keys_refused)
{
	static const char garbage[] = "this is not a key\n\x01\x02\x03";
	assert_key_file_refused(garbage, sizeof garbage);
	assert_key_file_refused("", 0);
	/* a PEM frame around bytes that are not a key */
	static const char bad_pem[] = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
	assert_key_file_refused(bad_pem, strlen(bad_pem));
	/* a truncated Ed25519 key */
	assert_key_file_refused(rfc8032_key_pem, 40);

	size_t len;
	EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	cr_assert_not_null(rsa);
	char *pem = pem_of(rsa, NULL, &len);
	assert_key_file_refused(pem, len);
	free(pem);
	EVP_PKEY_free(rsa);

	EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	cr_assert_not_null(ec);
	pem = pem_of(ec, NULL, &len);
	assert_key_file_refused(pem, len);
	free(pem);
	EVP_PKEY_free(ec);

	/* an encrypted Ed25519 key: refused, never a passphrase prompt */
	EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	cr_assert_not_null(ed);
	pem = pem_of(ed, EVP_aes_128_cbc(), &len);
	assert_key_file_refused(pem, len);
	free(pem);
	EVP_PKEY_free(ed);
}

Test(identity, directory_is_a_file)
{
	char path[192];
	struct pn_identity id;

	snprintf(path, sizeof path, "%s/plain", tmp_root);
	write_file(path, "x", 1, 0600);
	cr_assert_lt(pn_identity_load_or_create(path, &id), 0);
	cr_assert_lt(pn_identity_load_or_create("", &id), 0);
}

Test(identity, ephemeral_differs_each_time)
{
	struct pn_identity a, b;

	cr_assert_eq(pn_identity_ephemeral(&a), PN_OK);
	cr_assert_eq(pn_identity_ephemeral(&b), PN_OK);
	cr_assert_arr_neq(a.node_id, b.node_id, PN_ID_BYTES);
	cr_assert_eq(X509_verify(a.cert, a.pkey), 1);
	pn_identity_free(&a);
	pn_identity_free(&b);
	pn_identity_free(&a); /* freeing twice is harmless: the struct was cleared */
}

/* ---- node IDs ---- */

Test(node_id, format_parse_round_trip)
{
	uint8_t id[PN_ID_BYTES], back[PN_ID_BYTES];
	char s[PN_NODE_ID_STR_LEN + 1];

	for (size_t i = 0; i < PN_ID_BYTES; i++)
		id[i] = (uint8_t)(i * 37 + 0xa5);
	pn_node_id_format(id, s);
	cr_assert_eq(strlen(s), PN_NODE_ID_STR_LEN);
	for (size_t i = 0; i < PN_NODE_ID_STR_LEN; i++)
		cr_assert(strchr("0123456789abcdef", s[i]), "not lower-case hex: %s", s);
	cr_assert_eq(pn_node_id_parse(s, back), PN_OK);
	cr_assert_arr_eq(id, back, PN_ID_BYTES);

	char upper[PN_NODE_ID_STR_LEN + 1];
	for (size_t i = 0; i <= PN_NODE_ID_STR_LEN; i++)
		upper[i] = (char)(s[i] >= 'a' && s[i] <= 'f' ? s[i] - 32 : s[i]);
	memset(back, 0, sizeof back);
	cr_assert_eq(pn_node_id_parse(upper, back), PN_OK);
	cr_assert_arr_eq(id, back, PN_ID_BYTES);

	uint8_t zero[PN_ID_BYTES] = {0};
	pn_node_id_format(zero, s);
	cr_assert_str_eq(s, "0000000000000000000000000000000000000000000000000000000000000000");
}

Test(node_id, bad_input_refused)
{
	const char *good = rfc8032_node_id;
	uint8_t out[PN_ID_BYTES], before[PN_ID_BYTES];
	char s[PN_NODE_ID_STR_LEN + 8];

	memset(out, 0x5a, sizeof out);
	memcpy(before, out, sizeof out);
	cr_assert_eq(pn_node_id_parse(NULL, out), PN_EINVAL);
	cr_assert_eq(pn_node_id_parse("", out), PN_EINVAL);
	snprintf(s, sizeof s, "%.*s", PN_NODE_ID_STR_LEN - 1, good);  /* 63 digits */
	cr_assert_eq(pn_node_id_parse(s, out), PN_EINVAL);
	snprintf(s, sizeof s, "%s0", good);                            /* 65 digits */
	cr_assert_eq(pn_node_id_parse(s, out), PN_EINVAL);
	snprintf(s, sizeof s, "%s ", good);                            /* trailing space */
	cr_assert_eq(pn_node_id_parse(s, out), PN_EINVAL);
	snprintf(s, sizeof s, " %.*s", PN_NODE_ID_STR_LEN - 1, good);  /* leading space */
	cr_assert_eq(pn_node_id_parse(s, out), PN_EINVAL);
	static const char bad_chars[] = "gG:/@`xz-+\x80";
	for (size_t i = 0; i < sizeof bad_chars - 1; i++) {
		snprintf(s, sizeof s, "%s", good);
		s[17] = bad_chars[i];
		cr_assert_eq(pn_node_id_parse(s, out), PN_EINVAL, "accepted %c", bad_chars[i]);
	}
	snprintf(s, sizeof s, "0x%.*s", PN_NODE_ID_STR_LEN - 2, good);
	cr_assert_eq(pn_node_id_parse(s, out), PN_EINVAL);
	cr_assert_arr_eq(out, before, PN_ID_BYTES, "output written on failure");
}

/* ---- TLS ---- */

struct pair {
	struct pn_identity client_id, server_id;
	void *client_ctx, *server_ctx;
	struct pn_tls *client, *server;
};

static struct pair P;

static void pair_setup(void)
{
	memset(&P, 0, sizeof P);
	cr_assert_eq(pn_identity_ephemeral(&P.client_id), PN_OK);
	cr_assert_eq(pn_identity_ephemeral(&P.server_id), PN_OK);
	P.client_ctx = pn_tls_ctx_new(&P.client_id, false);
	P.server_ctx = pn_tls_ctx_new(&P.server_id, true);
	cr_assert_not_null(P.client_ctx);
	cr_assert_not_null(P.server_ctx);
}

static void pair_teardown(void)
{
	pn_tls_free(P.client);
	pn_tls_free(P.server);
	pn_tls_ctx_free(P.client_ctx);
	pn_tls_ctx_free(P.server_ctx);
	pn_identity_free(&P.client_id);
	pn_identity_free(&P.server_id);
}

/* Moves every pending ciphertext byte from one session into the other;
 * returns how many moved. */
static size_t move_bytes(struct pn_tls *from, struct pn_tls *to)
{
	uint8_t buf[PUMP_BUF];
	size_t n, total = 0;

	while ((n = pn_tls_take_out(from, buf, sizeof buf)) > 0) {
		cr_assert_eq(pn_tls_feed(to, buf, n), PN_OK);
		total += n;
	}
	cr_assert_eq(pn_tls_pending_out(from), 0);
	return total;
}

/* Runs both handshakes until neither needs more input (or a round limit). */
static void pump_handshake(struct pn_tls *c, struct pn_tls *s, int *crc, int *src)
{
	for (int round = 0; round < PUMP_ROUNDS; round++) {
		*crc = pn_tls_handshake(c);
		move_bytes(c, s);
		*src = pn_tls_handshake(s);
		move_bytes(s, c);
		if (*crc != PN_EAGAIN && *src != PN_EAGAIN)
			return;
	}
}

static void connect_pair(const uint8_t *client_expects, const uint8_t *server_expects,
			 int *crc, int *src)
{
	P.client = pn_tls_new(P.client_ctx, false, client_expects);
	P.server = pn_tls_new(P.server_ctx, true, server_expects);
	cr_assert_not_null(P.client);
	cr_assert_not_null(P.server);
	pump_handshake(P.client, P.server, crc, src);
}

/* Reads exactly len plaintext bytes from t into out. */
static void read_exactly(struct pn_tls *t, uint8_t *out, size_t len)
{
	size_t got = 0;
	while (got < len) {
		long n = pn_tls_read(t, out + got, len - got);
		cr_assert_gt(n, 0, "read returned %ld after %zu of %zu bytes", n, got, len);
		got += (size_t)n;
	}
	uint8_t extra;
	cr_assert_eq(pn_tls_read(t, &extra, 1), PN_EAGAIN);
}

/* Sends len bytes one way and checks they arrive intact. */
static void transfer(struct pn_tls *from, struct pn_tls *to, size_t len)
{
	uint8_t *data = malloc(len), *got = malloc(len);
	cr_assert(data && got);
	for (size_t i = 0; i < len; i++)
		data[i] = (uint8_t)(i * 131 + (i >> 8));
	cr_assert_eq(pn_tls_write(from, data, len), PN_OK);
	cr_assert_gt(pn_tls_pending_out(from), len, "ciphertext shorter than plaintext");
	move_bytes(from, to);
	read_exactly(to, got, len);
	cr_assert_arr_eq(data, got, len);
	free(data);
	free(got);
}

TestSuite(tls, .init = pair_setup, .fini = pair_teardown);

Test(tls, handshake_and_data_both_ways)
{
	int crc, src;
	uint8_t id[PN_ID_BYTES];

	connect_pair(NULL, NULL, &crc, &src);
	cr_assert_eq(crc, PN_OK, "client: %s", pn_tls_last_error(P.client));
	cr_assert_eq(src, PN_OK, "server: %s", pn_tls_last_error(P.server));
	cr_assert(pn_tls_established(P.client));
	cr_assert(pn_tls_established(P.server));
	cr_assert_eq(pn_tls_handshake(P.client), PN_OK); /* idempotent */

	cr_assert_eq(pn_tls_peer_id(P.client, id), PN_OK);
	cr_assert_arr_eq(id, P.server_id.node_id, PN_ID_BYTES);
	cr_assert_eq(pn_tls_peer_id(P.server, id), PN_OK);
	cr_assert_arr_eq(id, P.client_id.node_id, PN_ID_BYTES);

	uint8_t none[16];
	cr_assert_eq(pn_tls_read(P.client, none, sizeof none), PN_EAGAIN);
	cr_assert_eq(pn_tls_read(P.server, none, sizeof none), PN_EAGAIN);

	transfer(P.client, P.server, 5);
	transfer(P.server, P.client, 5);
	transfer(P.client, P.server, MIB);
	transfer(P.server, P.client, MIB);
	transfer(P.client, P.server, 1);

	/* close_notify: the other side reads PN_ECLOSED */
	pn_tls_shutdown(P.client);
	cr_assert_gt(pn_tls_pending_out(P.client), 0);
	move_bytes(P.client, P.server);
	cr_assert_eq(pn_tls_read(P.server, none, sizeof none), PN_ECLOSED);
}

Test(tls, negotiated_parameters)
{
	int crc, src;

	connect_pair(NULL, NULL, &crc, &src);
	cr_assert_eq(crc, PN_OK);
	cr_assert_eq(src, PN_OK);
	/* reach under the opaque handle only through OpenSSL's own view */
	SSL_CTX *ctx = pn_tls_ctx_ssl(P.server_ctx);
	cr_assert_eq(SSL_CTX_get_min_proto_version(ctx), TLS1_3_VERSION);
	cr_assert_eq(SSL_CTX_get_max_proto_version(ctx), TLS1_3_VERSION);
	cr_assert_eq(SSL_CTX_get_verify_mode(ctx),
		     SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT);
}

Test(tls, pinned_server_id_accepted)
{
	int crc, src;

	connect_pair(P.server_id.node_id, P.client_id.node_id, &crc, &src);
	cr_assert_eq(crc, PN_OK, "client: %s", pn_tls_last_error(P.client));
	cr_assert_eq(src, PN_OK, "server: %s", pn_tls_last_error(P.server));
	transfer(P.client, P.server, 100);
}

Test(tls, client_pin_mismatch_fails_with_peerid)
{
	uint8_t wrong[PN_ID_BYTES];
	int crc, src;
	char want[PN_NODE_ID_STR_LEN + 1], got[PN_NODE_ID_STR_LEN + 1], msg[256];

	memcpy(wrong, P.server_id.node_id, sizeof wrong);
	wrong[31] ^= 1;
	connect_pair(wrong, NULL, &crc, &src);
	cr_assert_eq(crc, PN_EPEERID);
	cr_assert_eq(pn_tls_handshake(P.client), PN_EPEERID); /* stays failed */
	cr_assert_not(pn_tls_established(P.client));
	pn_node_id_format(wrong, want);
	pn_node_id_format(P.server_id.node_id, got);
	snprintf(msg, sizeof msg, "peer identity mismatch: expected %s got %s", want, got);
	cr_assert_str_eq(pn_tls_last_error(P.client), msg);
	cr_assert_eq(ERR_peek_error(), 0, "error queue leaked");

	/* the client's alert ends the server's handshake too */
	cr_assert_eq(src, PN_ETLS, "server: %d", src);
	uint8_t id[PN_ID_BYTES], buf[64];
	cr_assert_eq(pn_tls_peer_id(P.client, id), PN_EINVAL);
	cr_assert_lt(pn_tls_read(P.client, buf, sizeof buf), 0);
	cr_assert_eq(pn_tls_write(P.client, "x", 1), PN_ETLS);
}

Test(tls, server_pin_mismatch_reads_no_plaintext)
{
	uint8_t wrong[PN_ID_BYTES] = {1, 2, 3};
	int crc, src;

	P.client = pn_tls_new(P.client_ctx, false, NULL);
	P.server = pn_tls_new(P.server_ctx, true, wrong);
	/* ClientHello -> server flight -> client finishes (TLS 1.3: the
	 * client is done before the server has checked its certificate). */
	cr_assert_eq(pn_tls_handshake(P.client), PN_EAGAIN);
	move_bytes(P.client, P.server);
	cr_assert_eq(pn_tls_handshake(P.server), PN_EAGAIN);
	move_bytes(P.server, P.client);
	crc = pn_tls_handshake(P.client);
	cr_assert_eq(crc, PN_OK, "%s", pn_tls_last_error(P.client));
	/* the client sends application data right behind its Finished */
	cr_assert_eq(pn_tls_write(P.client, "secret", 6), PN_OK);
	move_bytes(P.client, P.server);
	src = pn_tls_handshake(P.server);
	cr_assert_eq(src, PN_EPEERID);
	cr_assert(strstr(pn_tls_last_error(P.server), "peer identity mismatch"));
	uint8_t buf[64];
	long n = pn_tls_read(P.server, buf, sizeof buf);
	cr_assert_lt(n, 0, "got %ld plaintext bytes from the wrong peer", n);
	uint8_t id[PN_ID_BYTES];
	cr_assert_eq(pn_tls_peer_id(P.server, id), PN_EINVAL);

	/* the server's alert reaches the client as a TLS failure */
	move_bytes(P.server, P.client);
	cr_assert_eq(pn_tls_read(P.client, buf, sizeof buf), PN_ETLS);
	cr_assert_str_neq(pn_tls_last_error(P.client), "no error");
}

Test(tls, garbage_to_server_fails)
{
	uint8_t junk[1024];
	struct pn_tls *t;

	srand(12345);
	for (size_t i = 0; i < sizeof junk; i++)
		junk[i] = (uint8_t)rand();
	junk[0] = 'G'; /* not a TLS record type */
	P.server = pn_tls_new(P.server_ctx, true, NULL);
	cr_assert_eq(pn_tls_feed(P.server, junk, sizeof junk), PN_OK);
	cr_assert_eq(pn_tls_handshake(P.server), PN_ETLS);
	cr_assert_str_neq(pn_tls_last_error(P.server), "no error");
	cr_assert_eq(ERR_peek_error(), 0, "error queue leaked");
	uint8_t buf[16];
	cr_assert_eq(pn_tls_read(P.server, buf, sizeof buf), PN_ETLS);
	/* a failed session swallows further input without keeping it */
	cr_assert_eq(pn_tls_feed(P.server, junk, sizeof junk), PN_OK);
	cr_assert_eq(pn_tls_handshake(P.server), PN_ETLS);

	/* many random inputs: each either waits for more or fails, never more */
	for (int round = 0; round < 300; round++) {
		size_t len = 1 + (size_t)rand() % sizeof junk;
		for (size_t i = 0; i < len; i++)
			junk[i] = (uint8_t)rand();
		if (round % 2)
			junk[0] = 0x16; /* a handshake record header, to go deeper */
		t = pn_tls_new(P.server_ctx, true, NULL);
		cr_assert_eq(pn_tls_feed(t, junk, len), PN_OK);
		int rc = pn_tls_handshake(t);
		cr_assert(rc == PN_ETLS || rc == PN_EAGAIN, "rc %d", rc);
		cr_assert_not(pn_tls_established(t));
		pn_tls_free(t);
	}
}

Test(tls, truncated_handshake_waits)
{
	uint8_t hello[PUMP_BUF];
	int crc, src;

	P.client = pn_tls_new(P.client_ctx, false, NULL);
	P.server = pn_tls_new(P.server_ctx, true, NULL);
	cr_assert_eq(pn_tls_handshake(P.client), PN_EAGAIN);
	size_t len = pn_tls_take_out(P.client, hello, sizeof hello);
	cr_assert_gt(len, 100);
	cr_assert_eq(hello[0], 0x16, "not a handshake record");

	/* every strict prefix of the ClientHello leaves the server waiting */
	for (size_t cut = 1; cut < len; cut += 37) {
		struct pn_tls *t = pn_tls_new(P.server_ctx, true, NULL);
		cr_assert_eq(pn_tls_feed(t, hello, cut), PN_OK);
		cr_assert_eq(pn_tls_handshake(t), PN_EAGAIN, "cut %zu", cut);
		cr_assert_eq(pn_tls_pending_out(t), 0);
		pn_tls_free(t);
	}

	/* the rest arrives later, one byte at a time at first */
	size_t half = len / 2;
	cr_assert_eq(pn_tls_feed(P.server, hello, half), PN_OK);
	cr_assert_eq(pn_tls_handshake(P.server), PN_EAGAIN);
	cr_assert_eq(pn_tls_feed(P.server, hello + half, 1), PN_OK);
	cr_assert_eq(pn_tls_handshake(P.server), PN_EAGAIN);
	cr_assert_eq(pn_tls_feed(P.server, hello + half + 1, len - half - 1), PN_OK);
	cr_assert_eq(pn_tls_handshake(P.server), PN_EAGAIN); /* now waits for the client's flight */
	cr_assert_gt(pn_tls_pending_out(P.server), 0);
	move_bytes(P.server, P.client);
	pump_handshake(P.client, P.server, &crc, &src);
	cr_assert_eq(crc, PN_OK);
	cr_assert_eq(src, PN_OK);
}

Test(tls, not_established_refuses_io)
{
	uint8_t buf[8], id[PN_ID_BYTES];

	P.client = pn_tls_new(P.client_ctx, false, NULL);
	cr_assert_not(pn_tls_established(P.client));
	cr_assert_eq(pn_tls_write(P.client, "x", 1), PN_ETLS);
	cr_assert_eq(pn_tls_read(P.client, buf, sizeof buf), PN_ETLS);
	cr_assert_eq(pn_tls_peer_id(P.client, id), PN_EINVAL);
	cr_assert_eq(pn_tls_pending_out(P.client), 0);
	cr_assert_eq(pn_tls_take_out(P.client, buf, sizeof buf), 0);
	cr_assert_str_eq(pn_tls_last_error(P.client), "no error");
}

/* A plain OpenSSL TLS 1.3 endpoint with no ALPN at all (or the one given),
 * presenting `id`, accepting any certificate. Drives one side of a session
 * through memory BIOs like pn_tls does. */
struct raw {
	SSL_CTX *ctx;
	SSL *ssl;
	BIO *in, *out;
};

static int accept_any_cb(X509_STORE_CTX *store, void *arg)
{
	(void)store; (void)arg;
	return 1;
}

static void raw_new(struct raw *r, const struct pn_identity *id, bool is_server,
		    const unsigned char *alpn, size_t alpn_len)
{
	r->ctx = SSL_CTX_new(TLS_method());
	cr_assert_not_null(r->ctx);
	SSL_CTX_set_min_proto_version(r->ctx, TLS1_3_VERSION);
	cr_assert_eq(SSL_CTX_use_certificate(r->ctx, id->cert), 1);
	cr_assert_eq(SSL_CTX_use_PrivateKey(r->ctx, id->pkey), 1);
	SSL_CTX_set_verify(r->ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_cert_verify_callback(r->ctx, accept_any_cb, NULL);
	if (alpn)
		cr_assert_eq(SSL_CTX_set_alpn_protos(r->ctx, alpn, (unsigned)alpn_len), 0);
	r->ssl = SSL_new(r->ctx);
	r->in = BIO_new(BIO_s_mem());
	r->out = BIO_new(BIO_s_mem());
	BIO_set_mem_eof_return(r->in, -1);
	SSL_set_bio(r->ssl, r->in, r->out);
	if (is_server)
		SSL_set_accept_state(r->ssl);
	else
		SSL_set_connect_state(r->ssl);
}

static void raw_free(struct raw *r)
{
	SSL_free(r->ssl);
	SSL_CTX_free(r->ctx);
	ERR_clear_error();
}

/* Pumps a raw endpoint against a pn_tls session; returns the session's
 * last handshake result. */
static int pump_raw(struct raw *r, struct pn_tls *t)
{
	uint8_t buf[PUMP_BUF];
	int rc = PN_EAGAIN;

	for (int round = 0; round < PUMP_ROUNDS; round++) {
		(void)SSL_do_handshake(r->ssl);
		int n;
		while ((n = BIO_read(r->out, buf, sizeof buf)) > 0)
			cr_assert_eq(pn_tls_feed(t, buf, (size_t)n), PN_OK);
		rc = pn_tls_handshake(t);
		size_t m;
		while ((m = pn_tls_take_out(t, buf, sizeof buf)) > 0)
			cr_assert_eq(BIO_write(r->in, buf, (int)m), (int)m);
		if (rc != PN_EAGAIN)
			break;
	}
	return rc;
}

Test(tls, server_refuses_client_without_alpn)
{
	struct raw r;

	raw_new(&r, &P.client_id, false, NULL, 0);
	P.server = pn_tls_new(P.server_ctx, true, NULL);
	cr_assert_eq(pump_raw(&r, P.server), PN_ETLS);
	cr_assert(strstr(pn_tls_last_error(P.server), "ALPN"), "%s", pn_tls_last_error(P.server));
	cr_assert_not(SSL_is_init_finished(r.ssl));
	raw_free(&r);
}

Test(tls, server_refuses_other_alpn)
{
	static const unsigned char h2[] = "\x02h2\x09peernet/2";
	struct raw r;

	raw_new(&r, &P.client_id, false, h2, sizeof h2 - 1);
	P.server = pn_tls_new(P.server_ctx, true, NULL);
	cr_assert_eq(pump_raw(&r, P.server), PN_ETLS);
	cr_assert(strstr(pn_tls_last_error(P.server), "ALPN"), "%s", pn_tls_last_error(P.server));
	raw_free(&r);
}

Test(tls, client_refuses_server_without_alpn)
{
	struct raw r;

	raw_new(&r, &P.server_id, true, NULL, 0);
	P.client = pn_tls_new(P.client_ctx, false, NULL);
	cr_assert_eq(pump_raw(&r, P.client), PN_ETLS);
	cr_assert(strstr(pn_tls_last_error(P.client), "ALPN"), "%s", pn_tls_last_error(P.client));
	raw_free(&r);
}

Test(tls, client_refuses_tls12_server)
{
	struct raw r;

	raw_new(&r, &P.server_id, true, NULL, 0);
	SSL_set_min_proto_version(r.ssl, TLS1_2_VERSION);
	SSL_set_max_proto_version(r.ssl, TLS1_2_VERSION);
	P.client = pn_tls_new(P.client_ctx, false, NULL);
	cr_assert_eq(pump_raw(&r, P.client), PN_ETLS);
	raw_free(&r);
}

Test(tls, server_refuses_non_ed25519_client)
{
	/* A client whose certificate carries a P-256 key. */
	struct pn_identity ec_id = {0};
	EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	X509 *cert = X509_new();
	cr_assert(ec && cert);
	ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
	X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
	X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(cert), "CN", MBSTRING_ASC,
				   (const unsigned char *)"ec", -1, -1, 0);
	X509_set_issuer_name(cert, X509_get_subject_name(cert));
	X509_set_pubkey(cert, ec);
	cr_assert_gt(X509_sign(cert, ec, EVP_sha256()), 0);
	ec_id.pkey = ec;
	ec_id.cert = cert;

	static const unsigned char alpn[] = "\x09peernet/1";
	struct raw r;
	raw_new(&r, &ec_id, false, alpn, sizeof alpn - 1);
	P.server = pn_tls_new(P.server_ctx, true, NULL);
	/* Our signature_algorithms admit only Ed25519, so the client finds no
	 * usable certificate and sends none; the certificate check would
	 * refuse the P-256 key if one came. */
	cr_assert_eq(pump_raw(&r, P.server), PN_ETLS);
	cr_assert(strstr(pn_tls_last_error(P.server), "certificate"), "%s",
		  pn_tls_last_error(P.server));
	cr_assert_not(pn_tls_established(P.server));
	uint8_t id[PN_ID_BYTES];
	cr_assert_eq(pn_tls_peer_id(P.server, id), PN_EINVAL);
	raw_free(&r);
	pn_identity_free(&ec_id);
}

Test(tls, sessions_share_one_context_for_both_roles)
{
	/* A peer-to-peer node dials and accepts with the same context. */
	int crc, src;

	P.client = pn_tls_new(P.server_ctx, false, P.server_id.node_id);
	P.server = pn_tls_new(P.server_ctx, true, NULL);
	pump_handshake(P.client, P.server, &crc, &src);
	cr_assert_eq(crc, PN_OK, "%s", pn_tls_last_error(P.client));
	cr_assert_eq(src, PN_OK, "%s", pn_tls_last_error(P.server));
	transfer(P.server, P.client, 1000);
}

Test(random, bytes_differ)
{
	uint8_t a[32] = {0}, b[32] = {0};

	cr_assert_eq(pn_random_bytes(a, sizeof a), PN_OK);
	cr_assert_eq(pn_random_bytes(b, sizeof b), PN_OK);
	cr_assert_neq(memcmp(a, b, sizeof a), 0);
	cr_assert_eq(pn_random_bytes(a, 0), PN_OK);
}

/* Every context has its own output BIO method: many contexts, made and freed
 * in turn, keep working (BIO_get_new_index would run out after 127). */
Test(tls, many_contexts)
{
	struct pn_identity id;

	cr_assert_eq(pn_identity_ephemeral(&id), PN_OK);
	for (int i = 0; i < 300; i++) {
		struct pn_tls_ctx *ctx = pn_tls_ctx_new(&id, i & 1);
		cr_assert_not_null(ctx, "context %d", i);
		struct pn_tls *t = pn_tls_new(ctx, i & 1, NULL);
		cr_assert_not_null(t, "session on context %d", i);
		if (!(i & 1)) {
			cr_assert_eq(pn_tls_handshake(t), PN_EAGAIN);
			cr_assert_gt(pn_tls_pending_out(t), 0, "the ClientHello went through the output BIO");
		}
		pn_tls_free(t);
		pn_tls_ctx_free(ctx);
	}
	pn_identity_free(&id);
}
