/* urlcache.c — the in-run URL table (see urlcache.h): a chained hash
 * table of entries keyed by URL, with the finished ones on an LRU list
 * evicted from its cold end when the kept bytes or the entry count go
 * over their caps.
 *
 * Threads: one thread owns a pm_urlcache (no locking).
 */
#include "fetch/urlcache.h"

#include <stdlib.h>
#include <string.h>

enum { ENT_INFLIGHT, ENT_BODY, ENT_NM };

struct pm_urlent {
	int state;
	uint64_t hash;
	pm_urlc_result res; /* ENT_BODY: the kept copy (owned) */
	void **waiters;	    /* ENT_INFLIGHT: callers queued (owned) */
	int n_waiters, cap_waiters;
	struct pm_urlent *chain; /* hash chain */
	struct pm_urlent *lprev; /* LRU list (finished entries only) */
	struct pm_urlent *lnext;
	char url[];
};

struct pm_urlcache {
	pm_urlent **buckets;
	size_t nbuckets;		/* a power of two */
	pm_urlent *lru_head, *lru_tail; /* head: most recently used */
	int64_t cap_bytes;
	int max_entries;
	pm_urlc_stats st;
};

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

pm_urlcache *pm_urlcache_new(int64_t cap_bytes, int max_entries)
{
	pm_urlcache *c = calloc(1, sizeof *c);
	size_t n = 1024;

	if (!c)
		return NULL;
	if (max_entries < 1)
		max_entries = 1;
	while (n < (size_t)max_entries * 2 && n < (1u << 24))
		n <<= 1;
	c->buckets = calloc(n, sizeof *c->buckets);
	if (!c->buckets) {
		free(c);
		return NULL;
	}
	c->nbuckets = n;
	c->cap_bytes = cap_bytes > 0 ? cap_bytes : 0;
	c->max_entries = max_entries;
	return c;
}

static void ent_free(pm_urlent *e)
{
	free(e->res.body);
	free(e->waiters);
	free(e);
}

void pm_urlcache_free(pm_urlcache *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->nbuckets; i++)
		for (pm_urlent *e = c->buckets[i], *n; e; e = n) {
			n = e->chain;
			ent_free(e);
		}
	free(c->buckets);
	free(c);
}

static pm_urlent **slot_of(pm_urlcache *c, const char *url, uint64_t h)
{
	pm_urlent **pp = &c->buckets[h & (c->nbuckets - 1)];
	for (; *pp; pp = &(*pp)->chain)
		if ((*pp)->hash == h && strcmp((*pp)->url, url) == 0)
			break;
	return pp;
}

static void lru_unlink(pm_urlcache *c, pm_urlent *e)
{
	if (e->lprev)
		e->lprev->lnext = e->lnext;
	else
		c->lru_head = e->lnext;
	if (e->lnext)
		e->lnext->lprev = e->lprev;
	else
		c->lru_tail = e->lprev;
	e->lprev = e->lnext = NULL;
}

static void lru_push(pm_urlcache *c, pm_urlent *e)
{
	e->lprev = NULL;
	e->lnext = c->lru_head;
	if (c->lru_head)
		c->lru_head->lprev = e;
	c->lru_head = e;
	if (!c->lru_tail)
		c->lru_tail = e;
}

/* Unlinks e from its chain and frees it. */
static void drop(pm_urlcache *c, pm_urlent *e)
{
	pm_urlent **pp = slot_of(c, e->url, e->hash);
	if (*pp == e)
		*pp = e->chain;
	if (e->state != ENT_INFLIGHT) {
		lru_unlink(c, e);
		c->st.entries--;
		c->st.kept_bytes -= (int64_t)e->res.len;
	}
	ent_free(e);
}

static void evict(pm_urlcache *c)
{
	while (c->lru_tail && (c->st.kept_bytes > c->cap_bytes ||
			       c->st.entries > c->max_entries))
		drop(c, c->lru_tail);
}

pm_urlc_kind pm_urlcache_get(pm_urlcache *c, const char *url, void *caller,
			     pm_urlent **ent, pm_urlc_result *hit)
{
	uint64_t h = fnv1a(url);
	pm_urlent **pp = slot_of(c, url, h), *e = *pp;
	size_t ulen;

	*ent = NULL;
	c->st.lookups++;
	if (e && e->state == ENT_INFLIGHT) {
		if (e->n_waiters == e->cap_waiters) {
			int n = e->cap_waiters ? e->cap_waiters * 2 : 4;
			void **w = realloc(e->waiters, n * sizeof *w);
			if (!w)
				return PM_URLC_MISS; /* fetch it uncoalesced */
			e->waiters = w;
			e->cap_waiters = n;
		}
		e->waiters[e->n_waiters++] = caller;
		c->st.coalesced++;
		return PM_URLC_WAIT;
	}
	if (e && e->state == ENT_NM) {
		lru_unlink(c, e);
		lru_push(c, e);
		c->st.nm_hits++;
		return PM_URLC_NOT_MODIFIED;
	}
	if (e && e->state == ENT_BODY) {
		void *copy = malloc(e->res.len ? e->res.len : 1);
		if (!copy)
			return PM_URLC_MISS; /* the caller fetches it again */
		memcpy(copy, e->res.body, e->res.len);
		*hit = e->res;
		hit->body = copy;
		lru_unlink(c, e);
		lru_push(c, e);
		c->st.body_hits++;
		return PM_URLC_BODY;
	}
	ulen = strlen(url);
	e = calloc(1, sizeof *e + ulen + 1);
	if (!e)
		return PM_URLC_MISS;
	memcpy(e->url, url, ulen + 1);
	e->hash = h;
	e->state = ENT_INFLIGHT;
	e->chain = c->buckets[h & (c->nbuckets - 1)];
	c->buckets[h & (c->nbuckets - 1)] = e;
	*ent = e;
	return PM_URLC_MISS;
}

int pm_urlcache_finish(pm_urlcache *c, pm_urlent *e, bool ok, bool not_modified,
		       const pm_urlc_result *res, void ***waiters)
{
	int n = e->n_waiters;

	*waiters = e->waiters;
	e->waiters = NULL;
	e->n_waiters = e->cap_waiters = 0;
	if (ok && not_modified) {
		e->state = ENT_NM;
	} else if (ok && res && c->cap_bytes > 0 &&
		   (int64_t)res->len <= c->cap_bytes / 4 &&
		   (e->res.body = malloc(res->len ? res->len : 1))) {
		memcpy(e->res.body, res->body, res->len);
		e->res.len = res->len;
		memcpy(e->res.ctype, res->ctype, sizeof e->res.ctype);
		memcpy(e->res.etag, res->etag, sizeof e->res.etag);
		memcpy(e->res.lastmod, res->lastmod, sizeof e->res.lastmod);
		e->state = ENT_BODY;
	} else {
		drop(c, e); /* failed, or not worth keeping */
		return n;
	}
	c->st.entries++;
	c->st.kept_bytes += (int64_t)e->res.len;
	lru_push(c, e);
	evict(c);
	return n;
}

void pm_urlcache_stats(const pm_urlcache *c, pm_urlc_stats *out)
{
	*out = c->st;
}
