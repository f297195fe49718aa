/*
 * HTML output for the status page. Device names, reasons and event details come from devices
 * and the network, so text is escaped here once, for every caller: markup characters become
 * entities, and characters that could hide or reorder what is shown (C0/C1 controls, bidi
 * overrides, broken UTF-8) become visible stand-ins.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api-private.h"
#include "util.h"

/* A page is tens of KiB per hundred devices; the cap stops a runaway before memory does. */
#define HTML_MAX_BYTES (16u * 1024 * 1024)

static void html_append(struct api_html *h, const char *s, size_t n)
{
	if (h->failed || !fgw_buf_grow(&h->buf, &h->cap, h->len + n + 1, HTML_MAX_BYTES)) {
		h->failed = true;
		return;
	}
	memcpy(h->buf + h->len, s, n);
	h->len += n;
	h->buf[h->len] = '\0';
}

void api_html_raw(struct api_html *h, const char *s)
{
	html_append(h, s, strlen(s));
}

void api_html_printf(struct api_html *h, const char *fmt, ...)
{
	char small[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	/* Callers format numbers and fixed words only; text goes through api_html_text(). */
	if (n < 0 || (size_t) n >= sizeof(small)) {
		h->failed = true;
		return;
	}
	html_append(h, small, (size_t) n);
}

/* Length of the valid UTF-8 sequence at @s (1 to 4), or 0 if it is not one. */
static size_t utf8_len(const unsigned char *s)
{
	size_t n;
	unsigned cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, cp = s[0] & 0x07;
	else
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	/* Overlong forms, UTF-16 surrogates and values past U+10FFFF are not text. */
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

/* Whether the @n-byte sequence at @s is a C1 control or a bidi embedding/override/isolate. */
static bool hidden_char(const unsigned char *s, size_t n)
{
	if (n == 2)
		return s[0] == 0xc2 && s[1] <= 0x9f; /* U+0080..U+009F */
	if (n == 3 && s[0] == 0xe2 && s[1] == 0x80)
		return s[2] >= 0xaa && s[2] <= 0xae; /* U+202A..U+202E */
	if (n == 3 && s[0] == 0xe2 && s[1] == 0x81)
		return s[2] >= 0xa6 && s[2] <= 0xa9; /* U+2066..U+2069 */
	return false;
}

void api_html_text(struct api_html *h, const char *text)
{
	static const char replacement[] = "\xef\xbf\xbd"; /* U+FFFD */
	const unsigned char *s = (const unsigned char *) text;

	while (*s) {
		size_t n = utf8_len(s);
		char pic[4];

		if (n == 0 || hidden_char(s, n)) {
			html_append(h, replacement, 3);
			s += n ? n : 1;
			continue;
		}
		if (n > 1) {
			html_append(h, (const char *) s, n);
			s += n;
			continue;
		}
		switch (*s) {
		case '&':
			api_html_raw(h, "&amp;");
			break;
		case '<':
			api_html_raw(h, "&lt;");
			break;
		case '>':
			api_html_raw(h, "&gt;");
			break;
		case '"':
			api_html_raw(h, "&quot;");
			break;
		case '\'':
			api_html_raw(h, "&#39;");
			break;
		default:
			if (*s < 0x20 || *s == 0x7f) {
				/* U+2400 + c, U+2421 for DEL: the control is shown, not obeyed. */
				unsigned cp = *s == 0x7f ? 0x2421 : 0x2400u + *s;
				pic[0] = (char) (0xe0 | (cp >> 12));
				pic[1] = (char) (0x80 | ((cp >> 6) & 0x3f));
				pic[2] = (char) (0x80 | (cp & 0x3f));
				html_append(h, pic, 3);
			} else {
				html_append(h, (const char *) s, 1);
			}
		}
		s++;
	}
}
