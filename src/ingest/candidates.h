/* candidates.h — rows with several image candidates (an `image_urls`
 * column): parsing and ranking.
 *
 * A candidate list is `|`-separated; each entry is a URL or path, optionally
 * followed by whitespace and a size hint the way HTML srcset writes it
 * (`800w`) or as `800x600`:
 *     https://cdn/a.jpg 1600w | https://cdn/a-small.jpg 400w | /img/a.gif
 * The engine fetches the candidates in rank order and keeps the first that
 * passes validation (a decodable image within the limits, at least
 * --min-dimension on its short edge); the others are recorded as rejected
 * or untried with the item.
 *
 * Ranking, most important first:
 *   1. format, guessed from the name: formats pixmill decodes well (JPEG,
 *      PNG, WebP, AVIF, HEIC, TIFF, JPEG XL) before unknown names, then GIF,
 *      then formats it refuses (SVG, PDF, BMP...);
 *   2. declared width, larger first (a candidate without a hint ranks after
 *      those with one that meets the minimum, before those that do not);
 *   3. position in the list.
 *
 * Threads: any; no shared state.
 */
#ifndef PM_CANDIDATES_H
#define PM_CANDIDATES_H

#include <stddef.h>

#define PM_MAX_CANDIDATES 16

typedef struct pm_candidate {
	char *url;	 /* owned; trimmed, without the hint */
	int width;	 /* declared width, 0 if none */
	int height;	 /* declared height, 0 if none */
	int position;	 /* 0-based place in the list as written */
	int format_rank; /* 0 good .. 3 refused */
} pm_candidate;

/* Parses and ranks list (NUL-terminated, untrusted). Empty entries are
 * skipped; at most max (<= PM_MAX_CANDIDATES) are kept, the rest counted
 * in *dropped (may be NULL). min_width: hints below it rank lower (0 =
 * none). Returns the number of candidates in out (caller frees them with
 * pm_candidates_free), or -1 when out of memory. */
int pm_candidates_parse(const char *list, int min_width, pm_candidate *out,
			int max, int *dropped);
void pm_candidates_free(pm_candidate *c, int n);

#endif
