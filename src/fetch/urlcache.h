/* urlcache.h — the in-run URL table: coalesces requests for a URL already
 * in flight and keeps the bodies of recently fetched URLs in an LRU
 * bounded in bytes, so a URL that appears on many rows of a catalog is
 * downloaded once per run.
 *
 * An entry is either in flight (one owner's transfer; later requests for
 * the URL wait on it as opaque "waiters") or finished (a copy of the body
 * with its validators, or "not modified"). Failed transfers are not kept:
 * the next row with that URL tries again.
 *
 * Threads: not thread-safe; one thread (the run's fetch thread) owns a
 * pm_urlcache and makes every call.
 */
#ifndef PM_URLCACHE_H
#define PM_URLCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pm_urlcache pm_urlcache;
typedef struct pm_urlent pm_urlent;

typedef enum {
	PM_URLC_MISS,	     /* not known: the caller fetches and owns it */
	PM_URLC_WAIT,	     /* in flight: the caller was added as a waiter */
	PM_URLC_BODY,	     /* fetched earlier: *hit holds a copy to take */
	PM_URLC_NOT_MODIFIED /* fetched earlier, answered 304 */
} pm_urlc_kind;

/* What a finished transfer leaves behind, and what a hit gives back. */
typedef struct pm_urlc_result {
	void *body; /* malloc'd; on a hit the caller owns it */
	size_t len;
	char ctype[64];
	char etag[256];
	char lastmod[64];
} pm_urlc_result;

/* cap_bytes bounds the bodies kept (0 disables keeping bodies; in-flight
 * coalescing still works). max_entries bounds finished entries. NULL when
 * out of memory. */
pm_urlcache *pm_urlcache_new(int64_t cap_bytes, int max_entries);
/* Frees the table and every kept body. No entry may be in flight. */
void pm_urlcache_free(pm_urlcache *c);

/* Looks url up for one request by caller (an opaque pointer):
 * - MISS: an in-flight entry owned by the caller now exists (*ent, to
 *   pass to pm_urlcache_finish once the transfer ends);
 * - WAIT: caller was queued behind the owner; pm_urlcache_finish hands it
 *   back;
 * - BODY: *hit holds a malloc'd copy of the body and its headers (the
 *   caller owns hit->body);
 * - NOT_MODIFIED: the URL answered 304 earlier in the run.
 * Out of memory degrades to MISS with *ent NULL (fetch, uncoalesced). */
pm_urlc_kind pm_urlcache_get(pm_urlcache *c, const char *url, void *caller,
			     pm_urlent **ent, pm_urlc_result *hit);

/* Ends ent's transfer. ok: res (NULL when not_modified) is kept as a copy
 * if it fits the byte cap; not ok: the entry is dropped. *waiters becomes
 * the malloc'd array of the callers queued behind the owner, in the
 * order they came (the caller frees the array; NULL when none), and the
 * count is returned. ent is invalid after the call. */
int pm_urlcache_finish(pm_urlcache *c, pm_urlent *ent, bool ok,
		       bool not_modified, const pm_urlc_result *res,
		       void ***waiters);

/* Counters for the run's summary. */
typedef struct pm_urlc_stats {
	int64_t lookups, coalesced, body_hits, nm_hits, kept_bytes;
	int entries;
} pm_urlc_stats;
void pm_urlcache_stats(const pm_urlcache *c, pm_urlc_stats *out);

#endif
