#include <string.h>

#include "util.h"

/*
 * Text from a device or the network is escaped before a log or a terminal sees it. journald
 * starts a new record at every newline and reads a "<N>" priority at its start, and a terminal
 * obeys C0 controls, DEL and the C1 controls (U+0080..U+009F: 0x9b is a CSI on terminals that
 * honour 8-bit controls). Valid UTF-8 that prints is kept as it is, so a device's name in
 * another script still reads as that name; everything else becomes \xNN, and the backslash
 * itself \\, so an escaped text can never be mistaken for the text it escapes.
 */

/* Length of the printable UTF-8 sequence at s (max n bytes), or 0 when it must be escaped. */
static size_t printable_utf8_len(const unsigned char *s, size_t n)
{
	uint32_t cp;
	size_t len;

	if (s[0] >= 0x20 && s[0] < 0x7f)
		return s[0] == '\\' ? 0 : 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	/* Overlong forms, surrogates, beyond Unicode, C1 controls and the line/paragraph
	 * separators some viewers break on. */
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp <= 0x9f) || cp == 0x2028 ||
	    cp == 0x2029)
		return 0;
	return len;
}

FGW_EXPORT size_t fgw_escape_text(char *dst, size_t size, const char *src, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = (const unsigned char *) src;
	size_t out = 0, i = 0, end = 0;
	bool full = false;

	if (!src)
		len = 0;
	while (i < len) {
		size_t keep = printable_utf8_len(s + i, len - i);
		char esc[4];
		const char *piece = esc;
		size_t plen;

		if (keep) {
			piece = (const char *) s + i;
			plen = keep;
		} else if (s[i] == '\\') {
			esc[0] = esc[1] = '\\';
			plen = 2;
		} else {
			esc[0] = '\\';
			esc[1] = 'x';
			esc[2] = hex[s[i] >> 4];
			esc[3] = hex[s[i] & 0xf];
			plen = 4;
		}
		/* Never cut a piece in half: a truncated escape or UTF-8 sequence is worse than a
		 * shorter text. */
		if (!full && out + plen < size) {
			memcpy(dst + out, piece, plen);
			end = out + plen;
		} else {
			full = true; /* stop writing, keep counting */
		}
		out += plen;
		i += keep ? keep : 1;
	}
	if (size)
		dst[end] = '\0';
	return out;
}

FGW_EXPORT char *fgw_escape_dup(const char *src)
{
	size_t len = src ? strlen(src) : 0;
	size_t need = fgw_escape_text(NULL, 0, src, len) + 1;
	char *dst = malloc(need);

	if (dst)
		fgw_escape_text(dst, need, src, len);
	return dst;
}

FGW_EXPORT bool fgw_text_is_clean(const char *src, size_t len)
{
	return fgw_escape_text(NULL, 0, src, len) == len;
}
