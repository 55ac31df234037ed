/* The status page's checks that need no network (src/http/http.c): the
 * --http address, the Host header, the token file. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "http/http.h"

Test(http, listen_must_be_ip_port_and_loopback_unless_public)
{
	char err[HTTP_ERR_MAX];
	cr_assert_eq(http_check_listen("127.0.0.1:8080", false, err, sizeof err), PN_OK);
	cr_assert_eq(http_check_listen("127.1.2.3:0", false, err, sizeof err), PN_OK);
	cr_assert_eq(http_check_listen("localhost:0", false, err, sizeof err), PN_OK);
	cr_assert_eq(http_check_listen("[::1]:8080", false, err, sizeof err), PN_OK);
	cr_assert_eq(http_check_listen("0.0.0.0:8080", false, err, sizeof err), PN_EACCES);
	cr_assert(strstr(err, "--http-public") && !strchr(err, '\n'), "%s", err);
	cr_assert_eq(http_check_listen("[::]:8080", false, err, sizeof err), PN_EACCES);
	cr_assert_eq(http_check_listen("0.0.0.0:8080", true, err, sizeof err), PN_OK);
	cr_assert_eq(http_check_listen("192.0.2.1:80", true, err, sizeof err), PN_OK);
	const char *bad[] = {"", "8080", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1",
			     "127.0.0.1:80x", "example.com:80", "::1:80", "[::1]80", "[::1]:", "[127.0.0.1]:80",
			     "127.0.0.1:123456"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		cr_assert_eq(http_check_listen(bad[i], true, err, sizeof err), PN_EINVAL, "%s", bad[i]);
	cr_assert_eq(http_check_listen(NULL, true, err, sizeof err), PN_EINVAL);
}

Test(http, host_header_must_name_an_address_or_localhost)
{
	const char *good[] = {"127.0.0.1", "127.0.0.1:8080", "localhost", "LOCALHOST:1", "[::1]", "[::1]:80",
			      "192.0.2.7:65535"};
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
		cr_assert(http_host_is_literal(good[i]), "%s", good[i]);
	const char *bad[] = {"", "evil.example", "evil.example:8080", "127.0.0.1.evil.example", "localhost.",
			     "127.0.0.1:", "127.0.0.1:80:80", "[::1", "[::1]x", "[evil]:80", "127.0.0.1:123456",
			     "localhost:http"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		cr_assert_not(http_host_is_literal(bad[i]), "%s", bad[i]);
	char huge[4096];
	memset(huge, '1', sizeof huge - 1);
	huge[sizeof huge - 1] = '\0';
	cr_assert_not(http_host_is_literal(huge));
}

static char tmpdir[64];

static void make_tmpdir(void)
{
	snprintf(tmpdir, sizeof tmpdir, "/tmp/pn-http-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
}

static void remove_tmpdir(void)
{
	char path[128];
	snprintf(path, sizeof path, "%s/%s", tmpdir, HTTP_TOKEN_FILE);
	unlink(path);
	rmdir(tmpdir);
}

Test(http, token_is_made_once_0600_and_read_back, .init = make_tmpdir, .fini = remove_tmpdir)
{
	char a[HTTP_TOKEN_HEX + 1], b[HTTP_TOKEN_HEX + 1], err[HTTP_ERR_MAX], path[128];
	cr_assert_eq(http_token_load_or_create(tmpdir, a, err, sizeof err), PN_OK, "%s", err);
	cr_assert_eq(strlen(a), HTTP_TOKEN_HEX);
	cr_assert_eq(strspn(a, "0123456789abcdef"), HTTP_TOKEN_HEX);
	snprintf(path, sizeof path, "%s/%s", tmpdir, HTTP_TOKEN_FILE);
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600);
	cr_assert_eq(http_token_load_or_create(tmpdir, b, err, sizeof err), PN_OK);
	cr_assert_str_eq(a, b, "the same token on the next start");
}

Test(http, malformed_token_file_is_refused, .init = make_tmpdir, .fini = remove_tmpdir)
{
	char tok[HTTP_TOKEN_HEX + 1], err[HTTP_ERR_MAX], path[128];
	snprintf(path, sizeof path, "%s/%s", tmpdir, HTTP_TOKEN_FILE);
	const char *bad[] = {"", "abc\n", "zz00000000000000000000000000000000000000000000000000000000000000\n",
			     "00000000000000000000000000000000000000000000000000000000000000000\n"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		FILE *f = fopen(path, "w");
		cr_assert_not_null(f);
		fputs(bad[i], f);
		fclose(f);
		cr_assert_eq(http_token_load_or_create(tmpdir, tok, err, sizeof err), PN_ECORRUPT, "case %zu", i);
		cr_assert(strstr(err, HTTP_TOKEN_FILE) && !strchr(err, '\n'), "%s", err);
	}
}
