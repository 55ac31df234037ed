/* Text rules: valid names, keyword matching (see text.h). */
#include <string.h>
#include "util/buf.h"
#include "util/text.h"

/* UTF-8 code point limits. */
#define UTF8_MAX_CP 0x10ffffu
#define UTF8_SURR_LO 0xd800u
#define UTF8_SURR_HI 0xdfffu
#define C1_LO 0x80u
#define C1_HI 0x9fu
#define ASCII_CTRL_END 0x20u
#define ASCII_DEL 0x7fu

/* Invisible format controls: zero-width characters and marks, the
 * bidirectional embeddings, overrides and isolates, the byte order mark.
 * They let a name show other than it is (U+202E makes "txt.exe" print as
 * "exe.txt"), so text with them is refused, not shown escaped: a name that
 * lies about its extension has no honest use. */
static bool invisible_format(uint32_t cp)
{
	return (cp >= 0x200bu && cp <= 0x200fu) || (cp >= 0x202au && cp <= 0x202eu) ||
	       (cp >= 0x2060u && cp <= 0x2069u) || cp == 0xfeffu;
}

/* Reads one UTF-8 sequence whose lead byte `lead` (>= 0x80) was just read.
 * Returns the code point, or UINT32_MAX if the sequence is malformed,
 * overlong, truncated, a surrogate, or above U+10FFFF. */
static uint32_t utf8_rest(struct pn_reader *r, uint8_t lead)
{
	uint32_t cp, min;
	int extra;

	if ((lead & 0xe0) == 0xc0) {
		cp = lead & 0x1f;
		extra = 1;
		min = 0x80;
	} else if ((lead & 0xf0) == 0xe0) {
		cp = lead & 0x0f;
		extra = 2;
		min = 0x800;
	} else if ((lead & 0xf8) == 0xf0) {
		cp = lead & 0x07;
		extra = 3;
		min = 0x10000;
	} else {
		return UINT32_MAX;
	}
	while (extra--) {
		if (pn_rd_left(r) == 0)
			return UINT32_MAX;
		uint8_t cont = pn_rd_u8(r);
		if ((cont & 0xc0) != 0x80)
			return UINT32_MAX;
		cp = (cp << 6) | (cont & 0x3f);
	}
	if (cp < min || cp > UTF8_MAX_CP || (cp >= UTF8_SURR_LO && cp <= UTF8_SURR_HI))
		return UINT32_MAX;
	return cp;
}

size_t pn_utf8_seq_len(const char *s, size_t len)
{
	struct pn_reader r;

	pn_rd_init(&r, s, len);
	if (!pn_rd_left(&r))
		return 0;
	uint8_t b = pn_rd_u8(&r);
	if (b < C1_LO)
		return 1;
	return utf8_rest(&r, b) == UINT32_MAX ? 0 : r.off;
}

bool pn_text_valid(const char *s, size_t len, bool no_slashes)
{
	struct pn_reader r;

	pn_rd_init(&r, s, len);
	while (pn_rd_left(&r)) {
		uint8_t b = pn_rd_u8(&r);
		if (b < C1_LO) {
			if (b < ASCII_CTRL_END || b == ASCII_DEL)
				return false;
			if (no_slashes && (b == '/' || b == '\\'))
				return false;
			continue;
		}
		uint32_t cp = utf8_rest(&r, b);
		if (cp == UINT32_MAX || (cp >= C1_LO && cp <= C1_HI) || invisible_format(cp))
			return false;
	}
	return true;
}

char *pn_text_escape(const char *s, size_t len, char *out, size_t cap)
{
	static const char hex[] = "0123456789abcdef";
	struct pn_reader r;
	size_t o = 0;

	pn_rd_init(&r, s, len);
	while (pn_rd_left(&r)) {
		size_t at = r.off;
		uint8_t b = pn_rd_u8(&r);
		bool ok;
		if (b < C1_LO) {
			ok = b >= ASCII_CTRL_END && b != ASCII_DEL && b != '\\';
		} else {
			uint32_t cp = utf8_rest(&r, b);
			ok = cp != UINT32_MAX && !(cp >= C1_LO && cp <= C1_HI) && !invisible_format(cp);
			if (cp == UINT32_MAX)
				r.off = at + 1; /* escape the lead byte alone; look at the next one afresh */
		}
		size_t n = r.off - at;
		if (ok) {
			if (o + n >= cap)
				break;
			for (size_t i = 0; i < n; i++)
				out[o++] = s[at + i];
			continue;
		}
		if (o + 4 * n >= cap)
			break;
		for (size_t i = 0; i < n; i++) {
			uint8_t c = (uint8_t)s[at + i];
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	if (cap)
		out[o < cap ? o : cap - 1] = '\0';
	return out;
}

bool pn_name_valid(const char *name, size_t len)
{
	if (!name || len == 0 || len > PN_NAME_MAX)
		return false;
	if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
		return false;
	return pn_text_valid(name, len, true);
}

bool pn_name_has_word_prefix(const char *name, size_t len, const char *word, size_t wlen)
{
	const uint8_t *s = (const uint8_t *)name, *w = (const uint8_t *)word;

	if (wlen == 0)
		return false;
	for (size_t i = 0; i + wlen <= len; i++) {
		if (i > 0 && pn_word_byte(s[i - 1]))
			continue; /* not the start of a word */
		size_t j = 0;

		while (j < wlen && pn_word_byte(s[i + j]) && pn_ascii_lower(s[i + j]) == pn_ascii_lower(w[j]))
			j++;
		if (j == wlen)
			return true;
	}
	return false;
}

bool pn_keywords_match(const char *name, size_t name_len, const char *query, size_t query_len)
{
	const uint8_t *q = (const uint8_t *)query;
	size_t i = 0;
	bool any = false;

	while (i < query_len) {
		if (!pn_word_byte(q[i])) {
			i++;
			continue;
		}
		size_t start = i;

		while (i < query_len && pn_word_byte(q[i]))
			i++;
		if (!pn_name_has_word_prefix(name, name_len, query + start, i - start))
			return false;
		any = true;
	}
	return any;
}

char *pn_text_utf8(const char *s, size_t len, char *out, size_t cap)
{
	static const char replacement[] = "\xef\xbf\xbd"; /* U+FFFD */
	size_t o = 0;

	if (!cap)
		return out;
	for (size_t i = 0; i < len;) {
		size_t n = pn_utf8_seq_len(s + i, len - i);
		const char *piece = n ? s + i : replacement;
		size_t plen = n ? n : sizeof replacement - 1;
		if (o + plen >= cap)
			break;
		memcpy(out + o, piece, plen);
		o += plen;
		i += n ? n : 1;
	}
	out[o] = '\0';
	return out;
}
