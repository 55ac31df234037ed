/* The helpers peernet.h gives a program for its user's words and for JSON
 * text, used the way the CLI uses them: only <peernet.h> and <jansson.h>. */
#include <criterion/criterion.h>
#include <string.h>
#include <jansson.h>
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

Test(api_input, json_text_rule_round_trip)
{
	static const char bad[] = "r\xe9sum\xe9.txt"; /* Latin-1, not UTF-8 */
	char back[64];
	bool exact = true;
	json_t *obj = json_object();

	cr_assert_eq(pn_json_set_text(obj, "name", "ok.txt"), PN_OK);
	cr_assert_eq(pn_json_set_text(obj, "path", bad), PN_OK);
	cr_assert_str_eq(json_string_value(json_object_get(obj, "name")), "ok.txt");
	cr_assert_null(json_object_get(obj, "name_hex"));
	cr_assert_str_eq(json_string_value(json_object_get(obj, "path")), "r\xef\xbf\xbdsum\xef\xbf\xbd.txt");
	cr_assert_str_eq(json_string_value(json_object_get(obj, "path_hex")), "72e973756de92e747874");
	cr_assert_eq(pn_json_get_text(obj, "path", back, sizeof back), PN_OK);
	cr_assert_str_eq(back, bad, "the exact bytes come back");
	cr_assert_eq(pn_json_get_text(obj, "none", back, sizeof back), PN_EINVAL);
	cr_assert_eq(pn_json_get_text(obj, "path", back, 5), PN_ETOOBIG);

	json_t *s = pn_json_text(bad, strlen(bad), &exact);
	cr_assert_not_null(s);
	cr_assert(!exact);
	json_decref(s);
	char *text = json_dumps(obj, PN_JSON_FLAGS);
	cr_assert_not_null(text);
	cr_assert_null(strchr(text, ' '), "PN_JSON_FLAGS writes compact JSON: %s", text);
	free(text);
	json_decref(obj);
}
