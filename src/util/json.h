/* JSON goes through jansson (Debian libjansson-dev). The one rule for text
 * that may not be valid UTF-8, such as file names and paths on disk (JSON
 * text is UTF-8 and jansson refuses anything else), is public: PN_JSON_FLAGS,
 * pn_json_text, pn_json_set_text and pn_json_get_text are in peernet.h,
 * implemented in json.c. A field `key` is always a JSON string, readable as
 * text; when its bytes are not valid UTF-8, each byte that is not part of
 * valid UTF-8 becomes U+FFFD in `key`, and `key_hex` holds the exact bytes in
 * lowercase hex, so that a program can still open the file. A script that
 * only shows names reads `key` and never breaks; one that needs the bytes
 * takes `key_hex` when present. This header adds two internal conveniences. */
#ifndef PN_UTIL_JSON_H
#define PN_UTIL_JSON_H
#ifndef PN_INTERNAL
#error "an internal header of libpeernet: a program includes <peernet.h> only"
#endif

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include "peernet.h"

/* obj with obj[key] set by pn_json_set_text; NULL (obj released) when obj
 * is NULL or memory ran out, so that calls chain. */
json_t *pn_json_with_text(json_t *obj, const char *key, const char *s);

/* obj with the fields of more (released) added after its own; NULL (both
 * released) when either is NULL or memory ran out. */
json_t *pn_json_merge(json_t *obj, json_t *more);

#endif
