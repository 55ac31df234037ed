/* Text rules shared by the wire format, the store and the look-up services:
 * which names are valid, and how keywords match a name. Pure functions. */
#ifndef PN_UTIL_TEXT_H
#define PN_UTIL_TEXT_H
#ifndef PN_INTERNAL
#error "an internal header of libpeernet: a program includes <peernet.h> only"
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "peernet.h"

/* Well-formed UTF-8 (no overlong forms, no surrogates, nothing above
 * U+10FFFF) with no control character (U+0000..U+001F, U+007F,
 * U+0080..U+009F); with no_slashes, no '/' or '\\' either. len may be 0. */
bool pn_text_valid(const char *s, size_t len, bool no_slashes);

/* The length of the well-formed UTF-8 sequence that starts s (len >= 1
 * bytes): 1 for any ASCII byte, control characters included; 0 if the bytes
 * at s are malformed, overlong, truncated, a surrogate or above U+10FFFF. */
size_t pn_utf8_seq_len(const char *s, size_t len);

/* A file name is valid if 1..PN_NAME_MAX bytes of pn_text_valid text without
 * '/' or '\\', and not "." or "..". The one name rule: the wire format uses
 * it as is, the store (store_name_valid) also accepts the empty name. */
bool pn_name_valid(const char *name, size_t len);

/* pn_text_escape (a name or path for a one-line message): peernet.h. */

/* The value of a hex digit (either case), or -1. */
static inline int pn_hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* ---- keywords ----
 * A name and a query are split into words on every byte that is not an
 * ASCII letter or digit or a byte >= 0x80 (so UTF-8 stays inside words);
 * comparison is ASCII case-insensitive; a query word matches a word of the
 * name it is a prefix of ("quart" finds "Quarterly"). */

static inline bool pn_word_byte(uint8_t c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
}

static inline uint8_t pn_ascii_lower(uint8_t c)
{
	return (c >= 'A' && c <= 'Z') ? (uint8_t)(c - 'A' + 'a') : c;
}

/* Whether some word of name (len bytes) starts with word (wlen word bytes). */
bool pn_name_has_word_prefix(const char *name, size_t len, const char *word, size_t wlen);

/* Whether every word of query is the prefix of some word of name: "quart
 * rep" matches "Quarterly Report.pdf". False if the query has no word. */
bool pn_keywords_match(const char *name, size_t name_len, const char *query, size_t query_len);

#endif
