/* candidates.c — parsing and ranking of multi-candidate image lists; see
 * candidates.h.
 *
 * Threads: any; no shared state.
 */
#define _GNU_SOURCE
#include "ingest/candidates.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The file name's extension, lower-cased, from a URL or path: the last
 * path segment, before any query or fragment. */
static void ext_of(const char *url, char *ext, size_t size)
{
	const char *end = url + strcspn(url, "?#");
	const char *dot = NULL, *p;
	size_t n;

	ext[0] = 0;
	for (p = url; p < end; p++) {
		if (*p == '/')
			dot = NULL;
		else if (*p == '.')
			dot = p;
	}
	if (!dot)
		return;
	n = (size_t)(end - dot - 1);
	if (n == 0 || n >= size)
		return;
	for (size_t i = 0; i < n; i++)
		ext[i] = (char)tolower((unsigned char)dot[1 + i]);
	ext[n] = 0;
}

static int format_rank(const char *url)
{
	static const char *const good[] = {"jpg",  "jpeg", "jpe",  "png",
					   "webp", "avif", "heic", "heif",
					   "tif",  "tiff", "jxl"};
	static const char *const refused[] = {"svg", "svgz", "pdf", "bmp",
					      "ico", "eps",  "psd", "html",
					      "htm", "txt"};
	char ext[16];

	ext_of(url, ext, sizeof ext);
	if (!ext[0])
		return 1;
	for (size_t i = 0; i < sizeof good / sizeof *good; i++)
		if (strcmp(ext, good[i]) == 0)
			return 0;
	if (strcmp(ext, "gif") == 0)
		return 2;
	for (size_t i = 0; i < sizeof refused / sizeof *refused; i++)
		if (strcmp(ext, refused[i]) == 0)
			return 3;
	return 1;
}

/* Reads a size hint "800w" or "800x600" (whole token); 0 if it is not
 * one. */
static int parse_hint(const char *s, size_t n, int *w, int *h)
{
	long a = 0, b = 0;
	size_t i = 0;

	while (i < n && isdigit((unsigned char)s[i]) && a < 1000000)
		a = a * 10 + (s[i++] - '0');
	if (i == 0 || a == 0 || a >= 1000000)
		return 0;
	if (i + 1 == n && (s[i] == 'w' || s[i] == 'W')) {
		*w = (int)a;
		return 1;
	}
	if (i < n && (s[i] == 'x' || s[i] == 'X')) {
		size_t j = ++i;
		while (i < n && isdigit((unsigned char)s[i]) && b < 1000000)
			b = b * 10 + (s[i++] - '0');
		if (i == n && i > j && b > 0 && b < 1000000) {
			*w = (int)a;
			*h = (int)b;
			return 1;
		}
	}
	return 0;
}

/* Hint class: 0 = meets the minimum, 1 = no hint, 2 = below it. */
static int hint_class(const pm_candidate *c, int min_width)
{
	if (c->width == 0)
		return 1;
	return c->width >= min_width ? 0 : 2;
}

static int cmp(const void *pa, const void *pb, void *ctx)
{
	const pm_candidate *a = pa, *b = pb;
	int mw = *(const int *)ctx;

	if (a->format_rank != b->format_rank)
		return a->format_rank - b->format_rank;
	if (hint_class(a, mw) != hint_class(b, mw))
		return hint_class(a, mw) - hint_class(b, mw);
	if (a->width != b->width)
		return b->width - a->width;
	return a->position - b->position;
}

int pm_candidates_parse(const char *list, int min_width, pm_candidate *out,
			int max, int *dropped)
{
	int n = 0, pos = 0, drop = 0;
	const char *p = list;

	if (max > PM_MAX_CANDIDATES)
		max = PM_MAX_CANDIDATES;
	while (p && *p) {
		const char *end = p + strcspn(p, "|");
		const char *s = p, *e = end, *sp;
		int w = 0, h = 0;

		p = *end ? end + 1 : end;
		while (s < e && isspace((unsigned char)*s))
			s++;
		while (e > s && isspace((unsigned char)e[-1]))
			e--;
		if (s == e)
			continue;
		/* A trailing hint: the last whitespace-separated token. */
		for (sp = e; sp > s && !isspace((unsigned char)sp[-1]); sp--)
			;
		if (sp > s && parse_hint(sp, (size_t)(e - sp), &w, &h)) {
			e = sp;
			while (e > s && isspace((unsigned char)e[-1]))
				e--;
		}
		if (n == max) {
			drop++;
			pos++;
			continue;
		}
		out[n].url = strndup(s, (size_t)(e - s));
		if (!out[n].url) {
			pm_candidates_free(out, n);
			return -1;
		}
		out[n].width = w;
		out[n].height = h;
		out[n].position = pos++;
		out[n].format_rank = format_rank(out[n].url);
		n++;
	}
	qsort_r(out, (size_t)n, sizeof *out, cmp, &min_width);
	if (dropped)
		*dropped = drop;
	return n;
}

void pm_candidates_free(pm_candidate *c, int n)
{
	for (int i = 0; i < n; i++) {
		free(c[i].url);
		c[i].url = NULL;
	}
}
