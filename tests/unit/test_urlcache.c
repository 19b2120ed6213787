/* test_urlcache.c — the in-run URL table: coalescing of requests in
 * flight, kept bodies and 304s, failures not kept, LRU eviction by bytes
 * and by entries.
 *
 * Threads: main thread only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fetch/urlcache.h"
#include "test.h"

static pm_urlc_result body(const char *text)
{
	pm_urlc_result r = {0};
	r.body = (void *)text;
	r.len = strlen(text);
	snprintf(r.ctype, sizeof r.ctype, "image/jpeg");
	snprintf(r.etag, sizeof r.etag, "\"e-%s\"", text);
	return r;
}

static void test_coalesce_and_keep(void)
{
	pm_urlcache *c = pm_urlcache_new(1 << 20, 100);
	pm_urlent *owner = NULL, *e2 = NULL;
	pm_urlc_result hit = {0}, res = body("JPEGBYTES");
	int a, b, d;
	void **w = NULL;

	CHECK(c != NULL);
	CHECK_INT(pm_urlcache_get(c, "http://h/a.jpg", &a, &owner, &hit),
		  PM_URLC_MISS);
	CHECK(owner != NULL);
	CHECK_INT(pm_urlcache_get(c, "http://h/a.jpg", &b, &e2, &hit),
		  PM_URLC_WAIT);
	CHECK(e2 == NULL);
	CHECK_INT(pm_urlcache_get(c, "http://h/a.jpg", &d, &e2, &hit),
		  PM_URLC_WAIT);
	/* another URL is its own entry */
	CHECK_INT(pm_urlcache_get(c, "http://h/b.jpg", &a, &e2, &hit),
		  PM_URLC_MISS);
	CHECK(e2 != NULL && e2 != owner);
	CHECK_INT(pm_urlcache_finish(c, owner, true, false, &res, &w), 2);
	CHECK(w != NULL && w[0] == &b && w[1] == &d); /* in arrival order */
	free(w);
	/* now a hit, with a private copy */
	CHECK_INT(pm_urlcache_get(c, "http://h/a.jpg", &a, &owner, &hit),
		  PM_URLC_BODY);
	CHECK(owner == NULL);
	CHECK_INT((long)hit.len, 9);
	CHECK(hit.body != res.body && memcmp(hit.body, "JPEGBYTES", 9) == 0);
	CHECK_STR(hit.etag, "\"e-JPEGBYTES\"");
	CHECK_STR(hit.ctype, "image/jpeg");
	free(hit.body);
	/* a failure is not kept: the next request fetches again */
	CHECK_INT(pm_urlcache_finish(c, e2, false, false, NULL, &w), 0);
	CHECK(w == NULL);
	CHECK_INT(pm_urlcache_get(c, "http://h/b.jpg", &a, &e2, &hit),
		  PM_URLC_MISS);
	CHECK(e2 != NULL);
	/* a 304 is kept as such */
	CHECK_INT(pm_urlcache_finish(c, e2, true, true, NULL, &w), 0);
	CHECK_INT(pm_urlcache_get(c, "http://h/b.jpg", &a, &e2, &hit),
		  PM_URLC_NOT_MODIFIED);
	pm_urlc_stats st;
	pm_urlcache_stats(c, &st);
	CHECK_INT((long)st.coalesced, 2);
	CHECK_INT((long)st.body_hits, 1);
	CHECK_INT((long)st.nm_hits, 1);
	CHECK_INT(st.entries, 2);
	CHECK_INT((long)st.kept_bytes, 9);
	pm_urlcache_free(c);
}

static void test_eviction(void)
{
	/* 100 bytes of bodies at most (and no body over a quarter of it) */
	pm_urlcache *c = pm_urlcache_new(100, 3);
	pm_urlent *e = NULL;
	pm_urlc_result hit, r20 = body("01234567890123456789"),
			    r30 = body("012345678901234567890123456789");
	void **w;
	char url[32];

	for (int i = 0; i < 3; i++) {
		snprintf(url, sizeof url, "http://h/%d", i);
		CHECK_INT(pm_urlcache_get(c, url, c, &e, &hit), PM_URLC_MISS);
		CHECK_INT(pm_urlcache_finish(c, e, true, false, &r20, &w), 0);
	}
	/* touch 0 so 1 is the coldest */
	CHECK_INT(pm_urlcache_get(c, "http://h/0", c, &e, &hit), PM_URLC_BODY);
	free(hit.body);
	CHECK_INT(pm_urlcache_get(c, "http://h/3", c, &e, &hit), PM_URLC_MISS);
	CHECK_INT(pm_urlcache_finish(c, e, true, false, &r20, &w), 0);
	/* over 3 entries: 1 went */
	CHECK_INT(pm_urlcache_get(c, "http://h/1", c, &e, &hit), PM_URLC_MISS);
	CHECK_INT(pm_urlcache_finish(c, e, false, false, NULL, &w), 0);
	CHECK_INT(pm_urlcache_get(c, "http://h/0", c, &e, &hit), PM_URLC_BODY);
	free(hit.body);
	/* a body over a quarter of the cap is not kept */
	CHECK_INT(pm_urlcache_get(c, "http://h/big", c, &e, &hit),
		  PM_URLC_MISS);
	CHECK_INT(pm_urlcache_finish(c, e, true, false, &r30, &w), 0);
	CHECK_INT(pm_urlcache_get(c, "http://h/big", c, &e, &hit),
		  PM_URLC_MISS);
	CHECK_INT(pm_urlcache_finish(c, e, false, false, NULL, &w), 0);
	pm_urlc_stats st;
	pm_urlcache_stats(c, &st);
	CHECK(st.entries <= 3);
	CHECK(st.kept_bytes <= 100);
	pm_urlcache_free(c);

	/* cap 0: coalescing only, nothing kept */
	c = pm_urlcache_new(0, 10);
	CHECK_INT(pm_urlcache_get(c, "http://h/x", c, &e, &hit), PM_URLC_MISS);
	CHECK_INT(pm_urlcache_get(c, "http://h/x", &hit, &e, &hit),
		  PM_URLC_WAIT);
	CHECK_INT(pm_urlcache_get(c, "http://h/x", c, &e, &hit), PM_URLC_WAIT);
	pm_urlcache_free(c); /* frees the in-flight entry and its waiters */
}

int main(void)
{
	test_coalesce_and_keep();
	test_eviction();
	TEST_DONE();
}
