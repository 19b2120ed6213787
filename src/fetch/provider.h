/* provider.h — image search providers: when a catalog row names no image,
 * a provider searches the web for its product and supplies candidate
 * image URLs (docs/PROVIDERS.md).
 *
 * A provider is one configured search API. What differs between APIs is a
 * small vtable, pm_provider_api: how to build the request (URL and
 * headers) and how to read the answer. Two ship:
 *   - "google": the Google Custom Search JSON API, image search:
 *       GET {endpoint}?key=KEY&cx=CX&q=QUERY&searchType=image&num=N
 *       -> {"items": [{"link": URL, "image": {"width", "height"}}]}
 *   - "bing": Bing Image Search v7:
 *       GET {endpoint}?q=QUERY&count=N, header Ocp-Apim-Subscription-Key
 *       -> {"value": [{"contentUrl": URL, "width", "height"}]}
 * The endpoint is configurable, so a compatible self-hosted API or a local
 * test server can stand in.
 *
 * Each provider has its own rate limit (requests/s, default 2: the
 * limiter of src/vision/limiter.c, one endpoint per provider, which also
 * honours Retry-After after a 429), a daily quota of requests per UTC day
 * (seeded from the store by the engine, so it holds across runs), retries
 * with backoff on 5xx, timeouts and network errors, and health counters
 * (Prometheus metrics here; per-day totals in the store, written by the
 * engine from the pm_provider_call of each search).
 *
 * API keys are secrets: read from the environment (key=env:VAR) or the
 * spec, kept in the provider only, never logged, stored or put into error
 * messages (scrubbed from anything that echoes the request URL).
 *
 * Threads: pm_provider_parse_spec and pm_provider_free on one thread
 * (the CLI's main thread, before runs start); pm_provider_search and the
 * accessors on any thread (each provider has a mutex for its quota and
 * stats; the HTTP request is made without it). Parsers: any thread.
 * Ownership: stated per function.
 */
#ifndef PM_PROVIDER_H
#define PM_PROVIDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define PM_PROVIDERS_MAX     8		/* providers per process */
#define PM_PROVIDER_MAX_HITS 10		/* results asked for and kept */
#define PM_PROVIDER_MAX_URL  2048	/* a longer result URL is skipped */
#define PM_PROVIDER_MAX_BODY (2u << 20) /* bytes of answer read */

typedef struct pm_provider_hit {
	char url[PM_PROVIDER_MAX_URL + 1]; /* http(s), no spaces or '|' */
	int width, height;		   /* declared, 0 if not given */
} pm_provider_hit;

/* ---- parsers (pure; any thread) ---- */

/* Reads a Google CSE / Bing v7 answer body (untrusted, len bytes, need not
 * be NUL-terminated). Keeps at most max (<= PM_PROVIDER_MAX_HITS) usable
 * results in out, in the API's order: http(s) URLs of at most
 * PM_PROVIDER_MAX_URL bytes without whitespace, control characters or
 * '|'; other entries are skipped. Sizes outside 1..1000000 read as 0. An
 * answer without results ({} or an empty list) is PM_OK with *n = 0.
 * PM_ERR_UPSTREAM with a reason when the body is not JSON or has the
 * wrong shape. */
pm_status pm_provider_parse_google(const char *body, size_t len,
				   pm_provider_hit *out, int max, int *n,
				   pm_err *err);
pm_status pm_provider_parse_bing(const char *body, size_t len,
				 pm_provider_hit *out, int max, int *n,
				 pm_err *err);

/* ---- providers ---- */

typedef struct pm_provider pm_provider;

/* What one search did, for the caller's stats and the store. */
typedef struct pm_provider_call {
	int requests;	   /* HTTP requests made (each counts to the quota) */
	bool ok;	   /* a readable answer came back (maybe empty) */
	int results;	   /* hits returned */
	double latency_ms; /* summed over the requests */
} pm_provider_call;

/* Parses one --search-provider spec:
 *     KIND[,name=NAME][,endpoint=URL][,key=env:VAR|KEY][,cx=ID][,rps=R]
 *         [,quota=N][,max=N][,query=FIELD+FIELD...][,timeout=SEC]
 *         [,attempts=N]
 * KIND is google or bing. Defaults: name = KIND, the API's public
 * endpoint, rps 2, quota 0 (none), max 10, query title+brand, timeout 10,
 * attempts 3. Query fields: title, id, category, or an attribute (column)
 * name, joined with spaces; empty ones are left out. PM_ERR_USAGE with a
 * message that never contains the key. On success *out is owned by the
 * caller (pm_provider_free). */
pm_status pm_provider_parse_spec(const char *spec, pm_provider **out,
				 pm_err *err);
void pm_provider_free(pm_provider *p);

const char *pm_provider_name(const pm_provider *p);
const char *pm_provider_kind(const pm_provider *p);
int64_t pm_provider_quota(const pm_provider *p); /* 0 = none */

/* The search query for a row: the configured fields from title, id,
 * category and attrs_json (any may be NULL), joined with spaces, control
 * characters dropped, at most n-1 bytes. "" when all are empty. */
void pm_provider_query(const pm_provider *p, const char *title, const char *id,
		       const char *category, const char *attrs_json, char *buf,
		       size_t n);

/* The quota used on UTC day `day` (days since 1970-01-01) as the store
 * knows it: the provider counts on from the larger of this and its own
 * count. */
void pm_provider_seed_quota(pm_provider *p, int64_t day, int64_t used);
/* Today's UTC day number. */
int64_t pm_provider_today(void);

/* One search: waits for the provider's rate limit, retries 5xx, 408,
 * timeouts and network errors with backoff, and 429 after its Retry-After
 * (while that is within the wait bound). On PM_OK, out[0..*n) holds up to
 * max hits (*n may be 0: nothing found). Failures, with the reason in err
 * (prefixed with the provider's name): PM_ERR_RATE (over the daily quota,
 * or rate limited past the attempts), PM_ERR_AUTH (401/403),
 * PM_ERR_UPSTREAM (unreadable answer, other 4xx), PM_ERR_IO (timeouts,
 * 5xx, network). *call says what was done either way. */
pm_status pm_provider_search(pm_provider *p, const char *query,
			     pm_provider_hit *out, int max, int *n,
			     pm_provider_call *call, pm_err *err);

#endif
