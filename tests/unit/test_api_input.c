/* The helpers peernet.h gives a program for its user's words and for text
 * on a terminal, used the way the CLI uses them: only <peernet.h>. */
#include <criterion/criterion.h>
#include <string.h>
#include <peernet.h>

Test(api_input, address_check)
{
	char longest[PN_ADDR_MAX + 2];

	cr_assert(pn_addr_valid("127.0.0.1:7070"));
	cr_assert(pn_addr_valid("[::1]:7070"));
	cr_assert(pn_addr_valid("example.org:1"));
	cr_assert(!pn_addr_valid(NULL));
	cr_assert(!pn_addr_valid(""));
	cr_assert(!pn_addr_valid("host name:1"), "a space is not printable ASCII here");
	cr_assert(!pn_addr_valid("h\xc3\xa9:1"), "nothing above 0x7e");
	cr_assert(!pn_addr_valid("a\tb:1"));
	memset(longest, 'a', PN_ADDR_MAX);
	longest[PN_ADDR_MAX] = 0;
	cr_assert(pn_addr_valid(longest), "PN_ADDR_MAX bytes are allowed");
	longest[PN_ADDR_MAX] = 'a';
	longest[PN_ADDR_MAX + 1] = 0;
	cr_assert(!pn_addr_valid(longest), "one more is not");
}

Test(api_input, rates)
{
	uint64_t v = 7;

	cr_assert_eq(pn_parse_rate("500K", &v), PN_OK);
	cr_assert_eq(v, 500u * 1024);
	cr_assert_eq(pn_parse_rate("2M", &v), PN_OK);
	cr_assert_eq(v, 2u * 1024 * 1024);
	cr_assert_eq(pn_parse_rate("unlimited", &v), PN_OK);
	cr_assert_eq(v, 0);
	v = 7;
	cr_assert_eq(pn_parse_rate("2X", &v), PN_EINVAL);
	cr_assert_eq(pn_parse_rate("-1K", &v), PN_EINVAL);
	cr_assert_eq(pn_parse_rate("", &v), PN_EINVAL);
	cr_assert_eq(pn_parse_rate(NULL, &v), PN_EINVAL);
	cr_assert_eq(v, 7, "out is unchanged on an error");
}

Test(api_input, escape_for_one_line)
{
	char out[64];

	cr_assert_str_eq(pn_text_escape("a\nb", 3, out, sizeof out), "a\\x0ab");
	cr_assert_str_eq(pn_text_escape("caf\xc3\xa9", 5, out, sizeof out), "caf\xc3\xa9");
	cr_assert_str_eq(pn_text_escape("x\xff", 2, out, sizeof out), "x\\xff");
	cr_assert_str_eq(pn_text_escape("abcdef", 6, out, 4), "abc", "cut to cap, NUL-terminated");
}

Test(api_input, text_as_utf8)
{
	char out[64];

	cr_assert_str_eq(pn_text_utf8("ok.txt", 6, out, sizeof out), "ok.txt");
	cr_assert_str_eq(pn_text_utf8("r\xe9sum\xe9", 6, out, sizeof out), "r\xef\xbf\xbdsum\xef\xbf\xbd");
	cr_assert_str_eq(pn_text_utf8("a\nb", 3, out, sizeof out), "a\nb", "control characters are valid UTF-8");
	cr_assert_str_eq(pn_text_utf8("ab\xff", 3, out, 5), "ab", "cut before a U+FFFD that does not fit");
	cr_assert_str_eq(pn_text_utf8("caf\xc3\xa9", 5, out, 5), "caf", "cut at a character boundary");
	cr_assert_str_eq(pn_text_utf8("x", 1, out, 1), "");
}
