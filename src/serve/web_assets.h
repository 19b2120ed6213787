/* web_assets.h — the dashboard's static files (web/: index.html, app.js,
 * style.css, favicon.svg; uPlot's dist files from web/node_modules; the
 * licence text), embedded in the binary so `pixmill serve` needs nothing on
 * disk to serve `/`. The data lives in $(BUILD)/gen/web_assets.c, which
 * scripts/embed-web.py generates from those files at build time; each asset
 * has its URL path, Content-Type, bytes and a strong ETag (the quoted first
 * 32 hex digits of the bytes' SHA-256).
 *
 * Threads: everything here is read-only static data and
 * pm_web_asset_find keeps no state, so any thread may call it at any time.
 */
#ifndef PM_WEB_ASSETS_H
#define PM_WEB_ASSETS_H

#include <stddef.h>

typedef struct pm_web_asset {
	const char *path;	   /* "/index.html", "/vendor/uPlot.min.css" */
	const char *ctype;	   /* "text/html; charset=utf-8" */
	const unsigned char *data; /* len bytes (NUL-terminated, not counted) */
	size_t len;
	const char *etag; /* strong entity tag, quotes included */
} pm_web_asset;

/* "/" maps to "/index.html"; NULL if unknown. Thread-safe (read-only data).
 * path is the URL path without the query; anything from a '?' on is
 * ignored. Matching is exact and case-sensitive. */
const pm_web_asset *pm_web_asset_find(const char *path);

/* The whole table, for listing and tests: *n gets the count. */
const pm_web_asset *pm_web_assets(size_t *n);

#endif
