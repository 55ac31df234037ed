/* The rule for text in JSON (src/util/json.c): valid UTF-8 exactly, else
 * U+FFFD for each bad byte plus key_hex with the exact bytes. */
#include <stdlib.h>
#include <string.h>
#include <criterion/criterion.h>
#include "util/json.h"
#include "util/text.h"

/* obj serialized the way the program writes it; freed by the caller. */
static char *dump(const json_t *obj)
{
	char *s = json_dumps(obj, PN__JSON_FLAGS);
	cr_assert_not_null(s);
	return s;
}

static void round_trip(const char *text, const char *want_json)
{
	json_t *o = json_object();
	cr_assert_eq(pn__json_set_text(o, "name", text), PN_OK);
	char *s = dump(o);
	cr_assert_str_eq(s, want_json, "%s", text);
	/* What was written parses back to the same bytes. */
	json_error_t e;
	json_t *back = json_loads(s, 0, &e);
	cr_assert_not_null(back, "%s: %s", s, e.text);
	char out[256];
	cr_assert_eq(pn__json_get_text(back, "name", out, sizeof out), PN_OK);
	cr_assert_str_eq(out, text);
	json_decref(back);
	free(s);
	json_decref(o);
}

Test(json, valid_utf8_is_kept_exactly)
{
	round_trip("report.pdf", "{\"name\":\"report.pdf\"}");
	round_trip("r\xc3\xa9sum\xc3\xa9", "{\"name\":\"r\xc3\xa9sum\xc3\xa9\"}");
	round_trip("\xf0\x9f\x98\x80", "{\"name\":\"\xf0\x9f\x98\x80\"}");
}

Test(json, quotes_backslashes_and_controls_are_escaped)
{
	round_trip("a\"b\\c", "{\"name\":\"a\\\"b\\\\c\"}");
	round_trip("a\nb\tc\x01" "d\x7f", "{\"name\":\"a\\nb\\tc\\u0001d\x7f\"}");
}

Test(json, invalid_utf8_gets_replacement_and_hex)
{
	round_trip("a\xff" "b", "{\"name\":\"a\xef\xbf\xbd" "b\",\"name_hex\":\"61ff62\"}");
	/* A truncated sequence: each of its bytes is replaced on its own. */
	round_trip("\xe2\x82", "{\"name\":\"\xef\xbf\xbd\xef\xbf\xbd\",\"name_hex\":\"e282\"}");
	round_trip("\xc0\xaf", "{\"name\":\"\xef\xbf\xbd\xef\xbf\xbd\",\"name_hex\":\"c0af\"}");   /* overlong */
	round_trip("\xed\xa0\x80", "{\"name\":\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\",\"name_hex\":\"eda080\"}"); /* surrogate */
	round_trip("\"\xfe\n", "{\"name\":\"\\\"\xef\xbf\xbd\\n\",\"name_hex\":\"22fe0a\"}");
}

Test(json, text_value_reports_exactness)
{
	bool exact = false;
	json_t *v = pn__json_text("ok", 2, &exact);
	cr_assert(exact);
	cr_assert_str_eq(json_string_value(v), "ok");
	json_decref(v);
	v = pn__json_text("\x80", 1, &exact);
	cr_assert_not(exact);
	cr_assert_str_eq(json_string_value(v), "\xef\xbf\xbd");
	json_decref(v);
}

static int get_from(const char *doc, char *out, size_t cap)
{
	json_error_t e;
	json_t *o = json_loads(doc, 0, &e);
	cr_assert_not_null(o, "%s: %s", doc, e.text);
	int r = pn__json_get_text(o, "path", out, cap);
	json_decref(o);
	return r;
}

Test(json, get_text_refuses_what_is_not_text)
{
	char out[8];
	cr_assert_eq(get_from("{}", out, sizeof out), PN_EINVAL);
	cr_assert_eq(get_from("{\"path\":1}", out, sizeof out), PN_EINVAL);
	cr_assert_eq(get_from("{\"path\":null}", out, sizeof out), PN_EINVAL);
	cr_assert_eq(get_from("{\"path\":\"a\",\"path_hex\":7}", out, sizeof out), PN_EINVAL);
	cr_assert_eq(get_from("{\"path\":\"a\",\"path_hex\":\"6\"}", out, sizeof out), PN_EINVAL);
	cr_assert_eq(get_from("{\"path\":\"a\",\"path_hex\":\"6g\"}", out, sizeof out), PN_EINVAL);
	cr_assert_eq(get_from("{\"path\":\"a\",\"path_hex\":\"6100\"}", out, sizeof out), PN_EINVAL, "NUL in hex");
	/* The hex wins over the text: it holds the exact bytes. */
	cr_assert_eq(get_from("{\"path\":\"x\",\"path_hex\":\"41ff\"}", out, sizeof out), PN_OK);
	cr_assert_str_eq(out, "A\xff");
	cr_assert_eq(get_from("{\"path\":\"A\"}", out, sizeof out), PN_OK);
	cr_assert_str_eq(out, "A");
}

Test(json, get_text_bounds)
{
	char out[4];
	cr_assert_eq(get_from("{\"path\":\"abc\"}", out, sizeof out), PN_OK);
	cr_assert_str_eq(out, "abc");
	cr_assert_eq(get_from("{\"path\":\"abcd\"}", out, sizeof out), PN_ETOOBIG);
	cr_assert_str_eq(out, "");
	cr_assert_eq(get_from("{\"path\":\"\",\"path_hex\":\"61626364\"}", out, sizeof out), PN_ETOOBIG);
	cr_assert_eq(get_from("{\"path\":\"\",\"path_hex\":\"616263\"}", out, sizeof out), PN_OK);
	cr_assert_str_eq(out, "abc");
	/* jansson refuses \u0000 in a string unless asked; a loaded NUL is refused here too. */
	json_t *o = json_object();
	json_object_set_new(o, "path", json_stringn("a\0b", 3));
	cr_assert_eq(pn__json_get_text(o, "path", out, sizeof out), PN_EINVAL);
	json_decref(o);
}

Test(json, utf8_seq_len)
{
	cr_assert_eq(pn_utf8_seq_len("a", 1), 1);
	cr_assert_eq(pn_utf8_seq_len("\x01", 1), 1);
	cr_assert_eq(pn_utf8_seq_len("\xc3\xa9z", 3), 2);
	cr_assert_eq(pn_utf8_seq_len("\xf0\x9f\x98\x80", 4), 4);
	cr_assert_eq(pn_utf8_seq_len("\xf0\x9f\x98\x80", 3), 0, "truncated");
	cr_assert_eq(pn_utf8_seq_len("\x80", 1), 0);
	cr_assert_eq(pn_utf8_seq_len("", 0), 0);
}
