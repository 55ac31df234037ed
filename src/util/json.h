/* JSON goes through jansson (Debian libjansson-dev), inside the library
 * only: the public face is text (peernet.h, "output"), so a program never
 * needs jansson's types. The one rule for text that may not be valid UTF-8,
 * such as file names and paths on disk (JSON text is UTF-8 and jansson
 * refuses anything else): a field `key` is always a JSON string, readable
 * as text; when its bytes are not valid UTF-8, each byte that is not part of
 * valid UTF-8 becomes U+FFFD in `key`, and `key_hex` holds the exact bytes
 * in lowercase hex, so that a program can still open the file. A script
 * that only shows names reads `key` and never breaks; one that needs the
 * bytes takes `key_hex` when present. */
#ifndef PN_UTIL_JSON_H
#define PN_UTIL_JSON_H
#ifndef PN_INTERNAL
#error "an internal header of libpeernet: a program includes <peernet.h> only"
#endif

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include "peernet.h"

/* How every JSON document is written: one line, no spaces, fields in the
 * order they were set, reals to 10 significant digits. */
#define PN__JSON_FLAGS (JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10))

/* The JSON string of s (len bytes): s when it is valid UTF-8, else s with
 * every byte that is not part of valid UTF-8 replaced by U+FFFD; *exact (may
 * be NULL) tells which. A new reference, or NULL when out of memory. */
json_t *pn__json_text(const char *s, size_t len, bool *exact);
/* Sets obj[key] to the text s (NUL-terminated) by the rule, and obj[key_hex]
 * when s is not valid UTF-8. key is at most 58 bytes. 0, PN_EINVAL (key too
 * long) or PN_ENOMEM (obj may then hold key without key_hex). */
PN_MUST_CHECK int pn__json_set_text(json_t *obj, const char *key, const char *s);
/* Reads back what the rule wrote: the bytes of obj[key_hex] when it is
 * there, else the string obj[key]; into out (cap bytes, NUL-terminated).
 * 0; PN_EINVAL when the field is missing, not a string, not hex, or holds a
 * NUL; PN_ETOOBIG when it does not fit (out is then ""). */
PN_MUST_CHECK int pn__json_get_text(const json_t *obj, const char *key, char *out, size_t cap);

/* obj with obj[key] set by pn__json_set_text; NULL (obj released) when obj
 * is NULL or memory ran out, so that calls chain. */
json_t *pn__json_with_text(json_t *obj, const char *key, const char *s);

/* obj with the fields of more (released) added after its own; NULL (both
 * released) when either is NULL or memory ran out. */
json_t *pn__json_merge(json_t *obj, json_t *more);

/* v written by PN__JSON_FLAGS into a new string (free()), or NULL (v NULL
 * or out of memory); v is released. */
char *pn__json_dump(json_t *v);

#endif
