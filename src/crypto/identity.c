/* Node identity: an Ed25519 key pair kept in DIR/identity.pem and a
 * self-signed certificate made from it on every load.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include "crypto/crypto.h"
#include "crypto/internal.h"
#include "util/text.h"

#define ED25519_PUBKEY_BYTES 32
#define IDENTITY_MAX_FILE 16384          /* a PKCS#8 Ed25519 PEM is ~120 bytes */
#define IDENTITY_FILE_MODE 0600
#define IDENTITY_DIR_MODE 0700
#define IDENTITY_PERM_FORBIDDEN 0077     /* no group or other bits */
#define CERT_SERIAL_BYTES 16
#define CERT_BACKDATE_SECONDS (24L * 60 * 60)
#define CERT_LIFETIME_DAYS (10 * 365 + 3)
#define TMP_SUFFIX_BYTES 8

static int errno_to_pn(int e)
{
	switch (e) {
	case EACCES:
	case EPERM:
	case EROFS:
		return PN_EACCES;
	case ENOSPC:
	case EDQUOT:
		return PN_ENOSPC;
	case ENOMEM:
		return PN_ENOMEM;
	case ENOENT:
		return PN_ENOTFOUND;
	default:
		return PN_EIO;
	}
}

/* Node ID of an Ed25519 key: SHA-256 of its 32-byte raw public key. */
static int node_id_of_key(EVP_PKEY *pkey, uint8_t out[PN_ID_BYTES])
{
	uint8_t pub[ED25519_PUBKEY_BYTES];
	size_t pub_len = sizeof pub;

	if (!EVP_PKEY_is_a(pkey, "ED25519"))
		return PN_EINVAL;
	if (EVP_PKEY_get_raw_public_key(pkey, pub, &pub_len) != 1 || pub_len != sizeof pub)
		return PN_EINVAL;
	return pn_sha256(pub, pub_len, out);
}

/* Used by tls.c: the node ID behind a peer's certificate, or PN_EINVAL when
 * its key is not Ed25519. */
int pn__cert_node_id(void *cert, uint8_t out[PN_ID_BYTES])
{
	EVP_PKEY *pkey = X509_get0_pubkey(cert);

	if (!pkey)
		return PN_EINVAL;
	return node_id_of_key(pkey, out);
}

/* A self-signed X.509 v3 certificate over pkey, subject and issuer
 * CN=<node ID hex>, random positive serial, valid from a day ago for ten
 * years. Returns a new X509 the caller frees, or NULL. */
static X509 *make_cert(EVP_PKEY *pkey, const uint8_t node_id[PN_ID_BYTES])
{
	char cn[PN_NODE_ID_STR_LEN + 1];
	uint8_t serial[CERT_SERIAL_BYTES];
	X509 *cert = X509_new();
	BIGNUM *bn = NULL;
	X509_NAME *name;

	if (!cert)
		return NULL;
	pn_node_id_format(node_id, cn);
	if (RAND_bytes(serial, sizeof serial) != 1)
		goto fail;
	serial[0] &= 0x7f; /* positive */
	serial[0] |= 0x01; /* and never zero */
	bn = BN_bin2bn(serial, sizeof serial, NULL);
	if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)))
		goto fail;
	if (X509_set_version(cert, X509_VERSION_3) != 1)
		goto fail;
	if (!X509_gmtime_adj(X509_getm_notBefore(cert), -CERT_BACKDATE_SECONDS))
		goto fail;
	if (!X509_time_adj_ex(X509_getm_notAfter(cert), CERT_LIFETIME_DAYS, 0, NULL))
		goto fail;
	name = X509_get_subject_name(cert);
	if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn,
				       -1, -1, 0) != 1)
		goto fail;
	if (X509_set_issuer_name(cert, name) != 1 || X509_set_pubkey(cert, pkey) != 1)
		goto fail;
	/* Ed25519 signs the message itself: no separate digest. */
	if (X509_sign(cert, pkey, NULL) <= 0)
		goto fail;
	BN_free(bn);
	return cert;
fail:
	BN_free(bn);
	X509_free(cert);
	return NULL;
}

/* Fills id from a key pair; takes ownership of pkey in every case. */
static int identity_from_key(EVP_PKEY *pkey, struct pn_identity *id)
{
	uint8_t node_id[PN_ID_BYTES];
	X509 *cert;
	int rc;

	rc = node_id_of_key(pkey, node_id);
	if (rc < 0) {
		EVP_PKEY_free(pkey);
		return rc;
	}
	cert = make_cert(pkey, node_id);
	if (!cert) {
		EVP_PKEY_free(pkey);
		ERR_clear_error();
		return PN_ENOMEM;
	}
	id->pkey = pkey;
	id->cert = cert;
	memcpy(id->node_id, node_id, sizeof node_id);
	return PN_OK;
}

static EVP_PKEY *generate_key(void)
{
	EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");

	if (!pkey)
		ERR_clear_error();
	return pkey;
}

int pn_identity_ephemeral(struct pn_identity *id)
{
	EVP_PKEY *pkey;

	memset(id, 0, sizeof *id);
	pkey = generate_key();
	if (!pkey)
		return PN_ENOMEM;
	return identity_from_key(pkey, id);
}

void pn_identity_free(struct pn_identity *id)
{
	if (!id)
		return;
	EVP_PKEY_free(id->pkey);
	X509_free(id->cert);
	memset(id, 0, sizeof *id);
}

/* Refuses to prompt for a passphrase: an encrypted key file is an error. */
static int no_passphrase_cb(char *buf, int size, int rwflag, void *u)
{
	(void)buf; (void)size; (void)rwflag; (void)u;
	return 0;
}

/* Decodes a PEM private key from memory. PN_EINVAL if it is not one, or
 * not Ed25519. On success *out is the caller's. */
static int decode_key(const char *pem, size_t len, EVP_PKEY **out)
{
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	EVP_PKEY *pkey;

	if (!bio)
		return PN_ENOMEM;
	pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase_cb, NULL);
	BIO_free(bio);
	ERR_clear_error();
	if (!pkey)
		return PN_EINVAL;
	if (!EVP_PKEY_is_a(pkey, "ED25519")) {
		EVP_PKEY_free(pkey);
		return PN_EINVAL;
	}
	*out = pkey;
	return PN_OK;
}

/* Reads the key file at path. PN_ENOTFOUND if it does not exist, PN_EACCES
 * if group or others may access it, PN_EINVAL if it is not an Ed25519
 * PKCS#8 PEM key. The file's bytes are wiped after decoding. */
static int read_key_file(const char *path, EVP_PKEY **out)
{
	char buf[IDENTITY_MAX_FILE + 1];
	struct stat st;
	size_t len = 0;
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return errno_to_pn(errno);
	if (fstat(fd, &st) < 0) {
		rc = errno_to_pn(errno);
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = PN_EINVAL;
		goto out;
	}
	if (st.st_mode & IDENTITY_PERM_FORBIDDEN) {
		rc = PN_EACCES;
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, buf + len, sizeof buf - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = errno_to_pn(errno);
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len == sizeof buf) {
			rc = PN_EINVAL; /* far larger than any Ed25519 key file */
			goto out;
		}
	}
	rc = decode_key(buf, len, out);
out:
	OPENSSL_cleanse(buf, sizeof buf);
	close(fd);
	return rc;
}

static int write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno_to_pn(errno);
		p += n;
		len -= (size_t)n;
	}
	return PN_OK;
}

static void fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd >= 0) {
		(void)fsync(fd);
		close(fd);
	}
}

/* Publishes tmp as path unless path already exists: PN_EEXIST then.
 * renameat2(RENAME_NOREPLACE) where the file system has it, else link(). */
static int publish_no_replace(const char *tmp, const char *path)
{
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0)
		return PN_OK;
	if (errno == EEXIST)
		return PN_EEXIST;
	if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP)
		return errno_to_pn(errno);
	if (link(tmp, path) == 0) {
		unlink(tmp);
		return PN_OK;
	}
	return errno == EEXIST ? PN_EEXIST : errno_to_pn(errno);
}

/* Writes pkey as a PKCS#8 PEM to dir/identity.pem atomically: a temporary
 * file made with O_EXCL and mode 0600, fsynced, then moved into place
 * without replacing a file another process may have published meanwhile
 * (PN_EEXIST then). */
static int write_key_file(const char *dir, const char *path, EVP_PKEY *pkey)
{
	char tmp[PATH_MAX];
	uint8_t rnd[TMP_SUFFIX_BYTES];
	char suffix[2 * TMP_SUFFIX_BYTES + 1];
	BIO *mem = NULL;
	char *pem;
	long pem_len;
	int fd = -1, rc;

	if (RAND_bytes(rnd, sizeof rnd) != 1) {
		ERR_clear_error();
		return PN_EIO;
	}
	for (size_t i = 0; i < sizeof rnd; i++)
		snprintf(suffix + 2 * i, 3, "%02x", rnd[i]);
	if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%s", path, suffix) >= sizeof tmp)
		return PN_EINVAL;

	mem = BIO_new(BIO_s_secmem());
	if (!mem || PEM_write_bio_PrivateKey(mem, pkey, NULL, NULL, 0, NULL, NULL) != 1) {
		rc = PN_ENOMEM;
		goto out;
	}
	pem_len = BIO_get_mem_data(mem, &pem);
	if (pem_len <= 0) {
		rc = PN_ENOMEM;
		goto out;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, IDENTITY_FILE_MODE);
	if (fd < 0) {
		rc = errno_to_pn(errno);
		goto out;
	}
	/* The umask may only take bits away; make sure of exactly 0600. */
	if (fchmod(fd, IDENTITY_FILE_MODE) < 0) {
		rc = errno_to_pn(errno);
		goto out_unlink;
	}
	rc = write_all(fd, pem, (size_t)pem_len);
	if (rc < 0)
		goto out_unlink;
	if (fsync(fd) < 0) {
		rc = errno_to_pn(errno);
		goto out_unlink;
	}
	if (close(fd) < 0) {
		fd = -1;
		rc = errno_to_pn(errno);
		goto out_unlink;
	}
	fd = -1;
	rc = publish_no_replace(tmp, path);
	if (rc < 0)
		goto out_unlink;
	fsync_dir(dir);
	goto out;
out_unlink:
	if (fd >= 0)
		close(fd);
	fd = -1;
	unlink(tmp);
out:
	if (fd >= 0)
		close(fd);
	BIO_free(mem); /* secure-heap BIO: cleared on free */
	ERR_clear_error();
	return rc;
}

/* mkdir -p with mode 0700 for every directory it creates. */
static int make_dirs(const char *dir)
{
	char path[PATH_MAX];
	size_t len = strlen(dir);

	if (len == 0 || len >= sizeof path)
		return PN_EINVAL;
	memcpy(path, dir, len + 1);
	for (size_t i = 1; i <= len; i++) {
		if (path[i] != '/' && path[i] != '\0')
			continue;
		char saved = path[i];
		path[i] = '\0';
		if (mkdir(path, IDENTITY_DIR_MODE) < 0 && errno != EEXIST)
			return errno_to_pn(errno);
		path[i] = saved;
	}
	struct stat st;
	if (stat(dir, &st) < 0)
		return errno_to_pn(errno);
	return S_ISDIR(st.st_mode) ? PN_OK : PN_EINVAL;
}

int pn_identity_load_or_create(const char *dir, struct pn_identity *id)
{
	char path[PATH_MAX];
	EVP_PKEY *pkey = NULL;
	int rc;

	memset(id, 0, sizeof *id);
	if (!dir || !*dir)
		return PN_EINVAL;
	if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, PN_IDENTITY_FILE) >= sizeof path)
		return PN_EINVAL;

	rc = read_key_file(path, &pkey);
	if (rc == PN_ENOTFOUND) {
		rc = make_dirs(dir);
		if (rc < 0)
			return rc;
		pkey = generate_key();
		if (!pkey)
			return PN_ENOMEM;
		rc = write_key_file(dir, path, pkey);
		if (rc == PN_EEXIST) {
			/* Another process created it first: use theirs. */
			EVP_PKEY_free(pkey);
			pkey = NULL;
			rc = read_key_file(path, &pkey);
		}
	}
	if (rc < 0) {
		EVP_PKEY_free(pkey);
		return rc;
	}
	return identity_from_key(pkey, id);
}

void pn_node_id_format(const uint8_t id[PN_ID_BYTES], char out[PN_NODE_ID_STR_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < PN_ID_BYTES; i++) {
		out[2 * i] = hex[id[i] >> 4];
		out[2 * i + 1] = hex[id[i] & 0x0f];
	}
	out[PN_NODE_ID_STR_LEN] = '\0';
}

int pn_node_id_parse(const char *s, uint8_t out[PN_ID_BYTES])
{
	uint8_t id[PN_ID_BYTES];

	if (!s)
		return PN_EINVAL;
	for (size_t i = 0; i < PN_ID_BYTES; i++) {
		int hi = pn_hex_value(s[2 * i]);
		int lo = hi < 0 ? -1 : pn_hex_value(s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return PN_EINVAL;
		id[i] = (uint8_t)(hi << 4 | lo);
	}
	if (s[PN_NODE_ID_STR_LEN] != '\0')
		return PN_EINVAL;
	memcpy(out, id, sizeof id);
	return PN_OK;
}
