/* The one name rule and the one keyword matcher (src/util/text.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <criterion/criterion.h>
#include "store/store.h"
#include "util/text.h"
#include "wire/wire.h"

#define S(lit) (lit), (sizeof(lit) - 1)

Test(text, name_rule)
{
	cr_assert(pn_name_valid(S("report.pdf")));
	cr_assert(pn_name_valid(S("r\xc3\xa9sum\xc3\xa9 v2.txt")));
	cr_assert(pn_name_valid(S("...")));
	cr_assert(pn_name_valid(S("a\xc2\xa0")), "no-break space");
	cr_assert(pn_name_valid(S("\xf0\x9f\x98\x80")), "U+1F600");
	cr_assert_not(pn_name_valid(S(".")));
	cr_assert_not(pn_name_valid(S("..")));
	cr_assert_not(pn_name_valid(S("a/b")));
	cr_assert_not(pn_name_valid(S("a\\b")));
	cr_assert_not(pn_name_valid(S("a\nb")));
	cr_assert_not(pn_name_valid(S("a\x7f")));
	cr_assert_not(pn_name_valid("a\0b", 3));
	cr_assert_not(pn_name_valid(S("a\xc2\x85")), "C1 control");
	cr_assert_not(pn_name_valid(S("\xc0\xaf")), "overlong");
	cr_assert_not(pn_name_valid(S("\xe0\x80\xaf")), "overlong, 3 bytes");
	cr_assert_not(pn_name_valid(S("\xed\xa0\x80")), "surrogate");
	cr_assert_not(pn_name_valid(S("\xf4\x90\x80\x80")), "above U+10FFFF");
	cr_assert_not(pn_name_valid(S("\xf8\x88\x80\x80\x80")), "5-byte form");
	cr_assert_not(pn_name_valid(S("\xe2\x82")), "truncated");
	cr_assert_not(pn_name_valid(S("\x80")), "lone continuation");
	cr_assert_not(pn_name_valid("", 0));
	cr_assert_not(pn_name_valid(NULL, 1));

	char longest[PN_NAME_MAX + 1];
	memset(longest, 'n', sizeof longest);
	cr_assert(pn_name_valid(longest, PN_NAME_MAX));
	cr_assert_not(pn_name_valid(longest, PN_NAME_MAX + 1));

	/* Text (a query) may hold slashes and dots, never controls. */
	cr_assert(pn_text_valid(S("a/b\\c .."), false));
	cr_assert_not(pn_text_valid(S("a/b"), true));
	cr_assert_not(pn_text_valid(S("a\tb"), false));
	cr_assert(pn_text_valid("", 0, true));
}

/* Invisible format controls are refused in names and queries: each of the
 * ranges' ends, in a name that would otherwise pass; their neighbours pass. */
Test(text, format_controls_refused)
{
	static const uint32_t bad[] = {0x200b, 0x200f, 0x202a, 0x202e, 0x2060, 0x2069, 0xfeff};
	static const uint32_t good[] = {0x200a, 0x2010, 0x2029, 0x202f, 0x205f, 0x206a, 0xfefe, 0xff00};
	for (size_t k = 0; k < sizeof bad / sizeof bad[0] + sizeof good / sizeof good[0]; k++) {
		bool is_bad = k < sizeof bad / sizeof bad[0];
		uint32_t cp = is_bad ? bad[k] : good[k - sizeof bad / sizeof bad[0]];
		char name[16];
		/* "a" + the code point as 3 UTF-8 bytes + "txt.exe" */
		int n = snprintf(name, sizeof name, "a%c%c%ctxt.exe", (char)(0xe0 | (cp >> 12)),
				 (char)(0x80 | ((cp >> 6) & 0x3f)), (char)(0x80 | (cp & 0x3f)));
		cr_assert_eq(pn_name_valid(name, (size_t)n), !is_bad, "U+%04X", cp);
		cr_assert_eq(pn_text_valid(name, (size_t)n, false), !is_bad, "U+%04X in a query", cp);
	}
	cr_assert_not(pn_name_valid(S("â®txt.exe")), "right-to-left override");
}

/* What goes to a terminal: visible UTF-8 kept, the rest as \xNN bytes. */
Test(text, escape_for_a_terminal)
{
	char out[64];
	cr_assert_str_eq(pn_text_escape(S("r\xc3\xa9sum\xc3\xa9.txt"), out, sizeof out), "r\xc3\xa9sum\xc3\xa9.txt");
	cr_assert_str_eq(pn_text_escape(S("evil\xe2\x80\xaetxt.exe"), out, sizeof out), "evil\\xe2\\x80\\xaetxt.exe");
	cr_assert_str_eq(pn_text_escape(S("a\nb\x1b[31m"), out, sizeof out), "a\\x0ab\\x1b[31m");
	cr_assert_str_eq(pn_text_escape(S("a\\b"), out, sizeof out), "a\\x5cb", "a backslash is escaped: no ambiguity");
	cr_assert_str_eq(pn_text_escape(S("\xc3(x\xe2\x82"), out, sizeof out), "\\xc3(x\\xe2\\x82", "invalid UTF-8");
	cr_assert_str_eq(pn_text_escape(S("abcdef"), out, 4), "abc", "truncated to fit");
	cr_assert_str_eq(pn_text_escape(S("\x01\x02"), out, 6), "\\x01", "an escape is never cut");
	/* Whatever comes in, what goes out passes the text rule. */
	for (unsigned seed = 1; seed < 2000; seed++) {
		unsigned char in[24];
		unsigned x = seed * 2654435761u;
		for (size_t i = 0; i < sizeof in; i++) {
			x ^= x << 13, x ^= x >> 17, x ^= x << 5;
			in[i] = (unsigned char)x;
		}
		pn_text_escape((const char *)in, sizeof in, out, sizeof out);
		cr_assert(pn_text_valid(out, strlen(out), false), "seed %u", seed);
	}
}

/* The store's rule is the wire's plus the empty name, on every input. */
Test(text, store_rule_is_the_wire_rule_plus_empty)
{
	uint64_t x = 88172645463325252ull;
	char buf[8];

	cr_assert(store_name_valid("", 0));
	for (int i = 0; i < 200000; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		size_t len = x % sizeof buf;
		for (size_t j = 0; j < len; j++) {
			/* Bias towards the interesting bytes: ASCII, '.', '/', UTF-8 leads and continuations. */
			static const uint8_t pick[] = {'a', 'Z', '.', '/', '\\', 0x00, 0x1f, 0x7f, 0x80, 0x85, 0xa0,
						       0xbf, 0xc0, 0xc2, 0xe0, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff};
			uint8_t r = (uint8_t)(x >> (8 * (j % 7) + 3));
			buf[j] = (char)(r & 1 ? pick[r % sizeof pick] : r);
		}
		cr_assert_eq(store_name_valid(buf, len), len == 0 || pn_name_valid(buf, len));
	}
}

Test(text, keywords)
{
	const char *name = "Quarterly Report 2024 (r\xc3\xa9sum\xc3\xa9).pdf";
	size_t n = strlen(name);

	cr_assert(pn_keywords_match(name, n, S("quart rep")));
	cr_assert(pn_keywords_match(name, n, S("REPORT")));
	cr_assert(pn_keywords_match(name, n, S("  2024, pdf!")));
	cr_assert(pn_keywords_match(name, n, S("r\xc3\xa9s")), "UTF-8 stays inside a word");
	cr_assert(pn_keywords_match(name, n, S("pdf quarterly")), "any order");
	cr_assert_not(pn_keywords_match(name, n, S("port")), "a prefix of a word, not a middle");
	cr_assert_not(pn_keywords_match(name, n, S("quarterlyx")));
	cr_assert_not(pn_keywords_match(name, n, S("quart missing")), "every word must match");
	cr_assert_not(pn_keywords_match(name, n, S("  ,;  ")), "no word: no match");
	cr_assert_not(pn_keywords_match(name, n, "", 0));
	cr_assert_not(pn_keywords_match("", 0, S("a")));
	/* Only the given bytes of the name count. */
	cr_assert_not(pn_keywords_match("reportage", 3, S("report")));
	cr_assert(pn_name_has_word_prefix(S("a-b_c"), S("c")), "'_' splits words");
	cr_assert_not(pn_name_has_word_prefix(S("abc"), "", 0));
}

/* Reference: the matcher src/node/node_flood.c had (ASCII case-insensitive,
 * every query word a prefix of some word of the NUL-terminated name), which
 * pn_keywords_match replaces. Both must agree on every input. */
static char ref_lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c; }
static bool ref_word_byte(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
}
static bool ref_name_matches(const char *name, const uint8_t *query, size_t qlen)
{
	size_t i = 0;
	bool any = false;
	while (i < qlen) {
		while (i < qlen && !ref_word_byte(query[i]))
			i++;
		size_t start = i;
		while (i < qlen && ref_word_byte(query[i]))
			i++;
		size_t wlen = i - start;
		if (!wlen)
			break;
		any = true;
		bool found = false;
		for (const char *p = name; *p && !found;) {
			while (*p && !ref_word_byte((unsigned char)*p))
				p++;
			const char *ws = p;
			while (*p && ref_word_byte((unsigned char)*p))
				p++;
			if ((size_t)(p - ws) >= wlen) {
				size_t k = 0;
				while (k < wlen && ref_lower(ws[k]) == ref_lower((char)query[start + k]))
					k++;
				found = k == wlen;
			}
		}
		if (!found)
			return false;
	}
	return any;
}

Test(text, keywords_agree_with_the_flood_nodes_matcher)
{
	static const char alphabet[] = "abAB1 .-\xc3\xa9";
	uint64_t x = 0x9e3779b97f4a7c15ull;
	char name[12], query[6];

	for (int i = 0; i < 300000; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		size_t nlen = x % sizeof name, qlen = (x >> 8) % (sizeof query + 1);
		for (size_t j = 0; j < nlen; j++)
			name[j] = alphabet[(x >> (j * 5 % 59)) % (sizeof alphabet - 1)];
		name[nlen] = 0;
		for (size_t j = 0; j < qlen; j++)
			query[j] = alphabet[(x >> ((j * 7 + 3) % 59)) % (sizeof alphabet - 1)];
		cr_assert_eq(pn_keywords_match(name, nlen, query, qlen),
			     ref_name_matches(name, (const uint8_t *)query, qlen), "name '%s' query '%.*s'", name,
			     (int)qlen, query);
	}
}
