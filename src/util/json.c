/* Text in JSON by one rule (see json.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "util/json.h"
#include "util/text.h"

#define JSON_KEY_MAX 64                 /* key plus "_hex" and its NUL */
#define REPLACEMENT "\xef\xbf\xbd"      /* U+FFFD in UTF-8 */
#define REPLACEMENT_LEN 3

json_t *pn__json_text(const char *s, size_t len, bool *exact)
{
	size_t bad = 0;
	for (size_t i = 0; i < len;) {
		size_t n = pn_utf8_seq_len(s + i, len - i);
		bad += n == 0;
		i += n ? n : 1;
	}
	if (exact)
		*exact = bad == 0;
	if (bad == 0)
		return json_stringn(s, len);
	/* Each bad byte becomes three: len + 2 * bad bytes (at most 3 * len). */
	char *fixed = malloc(len + 2 * bad);
	if (!fixed)
		return NULL;
	size_t o = 0;
	for (size_t i = 0; i < len;) {
		size_t n = pn_utf8_seq_len(s + i, len - i);
		if (n) {
			memcpy(fixed + o, s + i, n);
			o += n;
			i += n;
		} else {
			memcpy(fixed + o, REPLACEMENT, REPLACEMENT_LEN);
			o += REPLACEMENT_LEN;
			i++;
		}
	}
	json_t *v = json_stringn(fixed, o);
	free(fixed);
	return v;
}

int pn__json_set_text(json_t *obj, const char *key, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	char hkey[JSON_KEY_MAX];
	size_t len = strlen(s);
	bool exact;
	if (snprintf(hkey, sizeof hkey, "%s_hex", key) >= (int)sizeof hkey)
		return PN_EINVAL;
	if (json_object_set_new(obj, key, pn__json_text(s, len, &exact)) != 0)
		return PN_ENOMEM;
	if (exact)
		return PN_OK;
	char *h = malloc(2 * len + 1);
	if (!h)
		return PN_ENOMEM;
	for (size_t i = 0; i < len; i++) {
		h[2 * i] = hex[(unsigned char)s[i] >> 4];
		h[2 * i + 1] = hex[(unsigned char)s[i] & 15];
	}
	int r = json_object_set_new(obj, hkey, json_stringn(h, 2 * len)) == 0 ? PN_OK : PN_ENOMEM;
	free(h);
	return r;
}

json_t *pn__json_with_text(json_t *obj, const char *key, const char *s)
{
	if (obj && pn__json_set_text(obj, key, s) != PN_OK) {
		json_decref(obj);
		return NULL;
	}
	return obj;
}

json_t *pn__json_merge(json_t *obj, json_t *more)
{
	if (obj && more && json_object_update(obj, more) == 0) {
		json_decref(more);
		return obj;
	}
	json_decref(obj);
	json_decref(more);
	return NULL;
}

int pn__json_get_text(const json_t *obj, const char *key, char *out, size_t cap)
{
	char hkey[JSON_KEY_MAX];
	if (cap == 0)
		return PN_ETOOBIG;
	out[0] = 0;
	if (snprintf(hkey, sizeof hkey, "%s_hex", key) >= (int)sizeof hkey)
		return PN_EINVAL;
	const json_t *h = json_object_get(obj, hkey);
	if (h) {
		if (!json_is_string(h))
			return PN_EINVAL;
		const char *t = json_string_value(h);
		size_t n = json_string_length(h);
		if (n % 2)
			return PN_EINVAL;
		if (n / 2 >= cap)
			return PN_ETOOBIG;
		for (size_t i = 0; i < n; i += 2) {
			int hi = pn_hex_value(t[i]), lo = pn_hex_value(t[i + 1]);
			if (hi < 0 || lo < 0 || (hi | lo) == 0) {
				out[0] = 0;
				return PN_EINVAL;
			}
			out[i / 2] = (char)(hi << 4 | lo);
		}
		out[n / 2] = 0;
		return PN_OK;
	}
	const json_t *v = json_object_get(obj, key);
	if (!json_is_string(v))
		return PN_EINVAL;
	size_t n = json_string_length(v);
	if (memchr(json_string_value(v), 0, n))
		return PN_EINVAL;
	if (n >= cap)
		return PN_ETOOBIG;
	memcpy(out, json_string_value(v), n + 1);
	return PN_OK;
}

char *pn__json_dump(json_t *v)
{
	char *s = v ? json_dumps(v, PN__JSON_FLAGS) : NULL;
	json_decref(v);
	return s;
}
