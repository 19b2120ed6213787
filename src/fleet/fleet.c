/* fleet.c — the process-wide Redis handle and what pixmill keeps in it:
 * token buckets, the shared cache, progress messages (see fleet.h).
 *
 * Threads: the handle pointer is set by pm_fleet_start and cleared by
 * pm_fleet_stop on the main thread while no other thread uses it (fleet.h);
 * in between, any thread reads it and calls into redis.c (thread-safe).
 * Counters are atomics. serve's feed runs one subscriber thread of its own
 * (feed_main) that writes the ring under feed_mu; readers (MHD threads)
 * copy out under feed_mu.
 */
#define _GNU_SOURCE
#include "fleet/fleet.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "core/metrics.h"
#include "core/util.h"
#include "fleet/redis.h"

/* Entries of the shared cache live this long (seconds): a URL's validators
 * a day (a stale entry only costs a conditional request that the origin
 * answers with the new bytes), an asset's existence a week. */
#define TTL_URL	  (24 * 3600)
#define TTL_ASSET (7 * 24 * 3600)

static pm_redis *g_redis;
static char *g_url; /* for the feed's own connection; secret, wiped */
static char g_who[128];
static _Atomic uint64_t n_rl_shared, n_rl_local, n_hits, n_misses, n_writes;
static uint64_t last_errors; /* scrape callback only (metrics' cb_mu) */

static void on_scrape(void *ud)
{
	pm_redis_stats st;

	(void)ud;
	if (!g_redis)
		return;
	pm_redis_stats_get(g_redis, &st);
	pm_metric_put(PM_M_REDIS_UP, NULL, NULL, st.up ? 1 : 0);
	pm_metric_put(PM_M_REDIS_DEGRADED, NULL, NULL, st.degraded_s);
	if (st.errors > last_errors)
		pm_metric_inc(PM_M_REDIS_ERRORS, NULL, NULL,
			      (double)(st.errors - last_errors));
	last_errors = st.errors;
}

pm_status pm_fleet_start(const char *url, const char *who, pm_err *err)
{
	pm_status s;

	if (g_redis || !url || !*url)
		return PM_OK;
	if (who && *who)
		snprintf(g_who, sizeof g_who, "%s", who);
	else {
		char host[64] = "";
		gethostname(host, sizeof host - 1);
		snprintf(g_who, sizeof g_who, "%s:%ld", host, (long)getpid());
	}
	s = pm_redis_open(url, NULL, &g_redis, err);
	if (s)
		return s;
	g_url = strdup(url);
	pm_metrics_on_scrape(on_scrape, NULL);
	return PM_OK;
}

void pm_fleet_stop(void)
{
	if (!g_redis)
		return;
	pm_metrics_off_scrape(on_scrape, NULL);
	pm_redis_close(g_redis);
	g_redis = NULL;
	if (g_url) {
		explicit_bzero(g_url, strlen(g_url));
		free(g_url);
		g_url = NULL;
	}
}

const char *pm_fleet_state(void)
{
	if (!g_redis)
		return "off";
	return pm_redis_is_up(g_redis) ? "up" : "down";
}

void pm_fleet_stats_get(pm_fleet_stats *st)
{
	pm_redis_stats rs;

	memset(st, 0, sizeof *st);
	st->rl_shared = atomic_load(&n_rl_shared);
	st->rl_local = atomic_load(&n_rl_local);
	st->cache_hits = atomic_load(&n_hits);
	st->cache_misses = atomic_load(&n_misses);
	st->cache_writes = atomic_load(&n_writes);
	if (!g_redis)
		return;
	pm_redis_stats_get(g_redis, &rs);
	st->on = true;
	st->up = rs.up;
	st->errors = rs.errors;
	st->fallbacks = rs.fallbacks;
	st->downs = rs.downs;
	st->degraded_s = rs.degraded_s;
	snprintf(st->url, sizeof st->url, "%s", rs.url);
	snprintf(st->last_error, sizeof st->last_error, "%s", rs.last_error);
}

/* ---- token buckets ---- */

static pm_status take(const char *key, double rps, double burst, long *wait_ms)
{
	pm_err e;

	*wait_ms = 0;
	if (!g_redis)
		return PM_ERR_IO;
	if (burst < 1)
		burst = 1;
	if (pm_redis_take(g_redis, key, rps, burst, wait_ms, &e)) {
		atomic_fetch_add(&n_rl_local, 1);
		pm_metric_inc(PM_M_REDIS_FALLBACKS, "rate_limit", NULL, 1);
		return PM_ERR_IO;
	}
	atomic_fetch_add(&n_rl_shared, 1);
	return PM_OK;
}

pm_status pm_fleet_take_host(const char *host, double rps, double burst,
			     long *wait_ms)
{
	char key[300];

	snprintf(key, sizeof key, "pixmill:rl:host:%s", host);
	return take(key, rps, burst, wait_ms);
}

pm_status pm_fleet_take_key(const char *api_key, double rps, double burst,
			    long *wait_ms)
{
	char hex[65], key[64];

	pm_sha256_hex(api_key, strlen(api_key), hex);
	snprintf(key, sizeof key, "pixmill:rl:key:%.16s", hex);
	return take(key, rps, burst, wait_ms);
}

/* ---- the shared cache ---- */

void pm_fleet_store_id(const char *db_url, double first_job_created,
		       char id[17])
{
	char shown[PATH_MAX + 64], real[PATH_MAX], hex[65];
	char ident[PATH_MAX + 128];
	const char *p = db_url;

	if (strstr(db_url, "://")) {
		pm_redis_url_mask(db_url, shown, sizeof shown);
		p = shown;
	} else {
		if (strncmp(p, "sqlite:", 7) == 0)
			p += 7;
		if (realpath(p, real))
			p = real;
	}
	snprintf(ident, sizeof ident, "%s\n%.6f", p, first_job_created);
	pm_sha256_hex(ident, strlen(ident), hex);
	memcpy(id, hex, 16);
	id[16] = 0;
}

static void cache_count(bool hit)
{
	atomic_fetch_add(hit ? &n_hits : &n_misses, 1);
	pm_metric_inc(PM_M_REDIS_CACHE, hit ? "hit" : "miss", NULL, 1);
}

static void cache_fallback(void)
{
	pm_metric_inc(PM_M_REDIS_FALLBACKS, "cache", NULL, 1);
}

static void url_key(const char *store_id, const char *url, char *key,
		    size_t size)
{
	char hex[65];
	pm_sha256_hex(url, strlen(url), hex);
	snprintf(key, size, "pixmill:c:%s:u:%s", store_id, hex);
}

static bool is_hex64(const char *s, size_t n)
{
	if (n != 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (pm_hexval(s[i]) < 0)
			return false;
	return true;
}

bool pm_fleet_cache_url_get(const char *store_id, const char *url,
			    char sha256[65], char *etag, size_t etag_size,
			    char *lastmod, size_t lastmod_size)
{
	char key[128], *v = NULL, *t1, *t2;
	size_t len;
	pm_err e;

	if (!g_redis)
		return false;
	url_key(store_id, url, key, sizeof key);
	if (pm_redis_get(g_redis, key, &v, &len, &e)) {
		cache_fallback();
		return false;
	}
	/* "sha \t etag \t lastmod"; anything else (another version, a
	 * hostile writer) is a miss */
	if (!v || strlen(v) != len || !(t1 = strchr(v, '\t')) ||
	    !is_hex64(v, (size_t)(t1 - v)) || !(t2 = strchr(t1 + 1, '\t')) ||
	    strchr(t2 + 1, '\t') || (size_t)(t2 - t1 - 1) >= etag_size ||
	    strlen(t2 + 1) >= lastmod_size || (t2 == t1 + 1 && !t2[1])) {
		free(v);
		cache_count(false);
		return false;
	}
	memcpy(sha256, v, 64);
	sha256[64] = 0;
	memcpy(etag, t1 + 1, (size_t)(t2 - t1 - 1));
	etag[t2 - t1 - 1] = 0;
	snprintf(lastmod, lastmod_size, "%s", t2 + 1);
	free(v);
	cache_count(true);
	return true;
}

void pm_fleet_cache_url_put(const char *store_id, const char *url,
			    const char *sha256, const char *etag,
			    const char *lastmod)
{
	char key[128], val[65 + 256 + 128 + 4];
	pm_err e;
	int n;

	if (!g_redis || !sha256 || strlen(sha256) != 64)
		return;
	if ((etag && strchr(etag, '\t')) || (lastmod && strchr(lastmod, '\t')))
		return;
	n = snprintf(val, sizeof val, "%s\t%s\t%s", sha256, etag ? etag : "",
		     lastmod ? lastmod : "");
	if (n < 0 || (size_t)n >= sizeof val)
		return;
	url_key(store_id, url, key, sizeof key);
	if (pm_redis_set(g_redis, key, val, (size_t)n, TTL_URL, &e))
		cache_fallback();
	else
		atomic_fetch_add(&n_writes, 1);
}

bool pm_fleet_cache_asset_get(const char *store_id, const char *sha256,
			      const char *pipeline_hash)
{
	char key[200], *v = NULL;
	pm_err e;
	bool hit;

	if (!g_redis)
		return false;
	snprintf(key, sizeof key, "pixmill:c:%s:a:%.64s:%.64s", store_id,
		 sha256, pipeline_hash);
	if (pm_redis_get(g_redis, key, &v, NULL, &e)) {
		cache_fallback();
		return false;
	}
	hit = v && strcmp(v, "1") == 0;
	free(v);
	cache_count(hit);
	return hit;
}

void pm_fleet_cache_asset_put(const char *store_id, const char *sha256,
			      const char *pipeline_hash)
{
	char key[200];
	pm_err e;

	if (!g_redis)
		return;
	snprintf(key, sizeof key, "pixmill:c:%s:a:%.64s:%.64s", store_id,
		 sha256, pipeline_hash);
	if (pm_redis_set(g_redis, key, "1", 1, TTL_ASSET, &e))
		cache_fallback();
	else
		atomic_fetch_add(&n_writes, 1);
}

/* ---- progress ---- */

void pm_fleet_progress(int64_t job, int64_t done, int64_t failed, int64_t dups)
{
	json_t *o;
	char *txt;
	pm_err e;

	if (!g_redis)
		return;
	o = json_pack("{s:I,s:I,s:I,s:I,s:s,s:f}", "job", (json_int_t)job,
		      "done", (json_int_t)done, "failed", (json_int_t)failed,
		      "dups", (json_int_t)dups, "worker", g_who, "t",
		      pm_wall());
	txt = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (!txt)
		return;
	if (pm_redis_publish(g_redis, PM_FLEET_CHANNEL, txt, &e))
		pm_metric_inc(PM_M_REDIS_FALLBACKS, "publish", NULL, 1);
	free(txt);
}

/* ---- serve's feed ---- */

static pthread_mutex_t feed_mu = PTHREAD_MUTEX_INITIALIZER;
static char feed_ring[PM_FLEET_FEED_KEEP][PM_FLEET_FEED_MSG];
static uint64_t feed_head; /* number of the newest message (feed_mu) */
static pthread_t feed_thread;
static bool feed_running;
static volatile int feed_stop;

static int feed_on_msg(const char *msg, size_t len, void *ud)
{
	(void)ud;
	if (len >= PM_FLEET_FEED_MSG || memchr(msg, '\n', len) ||
	    memchr(msg, '\r', len) || memchr(msg, 0, len))
		return 0; /* not ours, or would break an SSE line */
	pthread_mutex_lock(&feed_mu);
	feed_head++;
	memcpy(feed_ring[feed_head % PM_FLEET_FEED_KEEP], msg, len);
	feed_ring[feed_head % PM_FLEET_FEED_KEEP][len] = 0;
	pthread_mutex_unlock(&feed_mu);
	return 0;
}

static void *feed_main(void *arg)
{
	pm_err e;

	(void)arg;
	pm_redis_subscribe(g_url, PM_FLEET_CHANNEL, feed_on_msg, NULL,
			   &feed_stop, &e);
	return NULL;
}

pm_status pm_fleet_feed_start(pm_err *err)
{
	if (!g_redis || !g_url || feed_running)
		return PM_OK;
	feed_stop = 0;
	if (pthread_create(&feed_thread, NULL, feed_main, NULL))
		return pm_fail(err, PM_ERR_NOMEM,
			       "could not start the fleet feed thread");
	feed_running = true;
	return PM_OK;
}

void pm_fleet_feed_stop(void)
{
	if (!feed_running)
		return;
	feed_stop = 1;
	pthread_join(feed_thread, NULL);
	feed_running = false;
}

uint64_t pm_fleet_feed_head(void)
{
	uint64_t h;
	pthread_mutex_lock(&feed_mu);
	h = feed_head;
	pthread_mutex_unlock(&feed_mu);
	return h;
}

bool pm_fleet_feed_next(uint64_t *seq, char *buf, size_t size)
{
	bool got = false;

	pthread_mutex_lock(&feed_mu);
	if (*seq < feed_head) {
		uint64_t n = *seq + 1;
		if (feed_head - n >= PM_FLEET_FEED_KEEP)
			n = feed_head - PM_FLEET_FEED_KEEP + 1;
		snprintf(buf, size, "%s", feed_ring[n % PM_FLEET_FEED_KEEP]);
		*seq = n;
		got = true;
	}
	pthread_mutex_unlock(&feed_mu);
	return got;
}
