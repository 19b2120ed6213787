/* metrics.h — Prometheus metrics: every metric declared in one list
 * (metrics.c), per-thread counters summed when /metrics is scraped.
 *
 * A metric (pm_metric) is a family: a name, a help line, a type and 0-2
 * label names. A series is one metric with concrete label values; look its
 * id up once with pm_metric_series and keep it, or use the shorthands that
 * look it up on every call (a hash probe, no lock).
 *
 * Counters and histograms are written to a shard that belongs to the
 * calling thread alone (no lock, no contended atomic); a scrape sums every
 * shard, and a thread's values are folded into a shared total when it
 * exits, so nothing is lost. Gauges hold one global value per series.
 *
 * Threads: every function may be called from any thread at any time,
 * except pm_metrics_reset_for_tests (see there). Scrape callbacks run on the
 * thread that calls pm_metrics_render.
 * Ownership: label values are copied (sanitised: invalid UTF-8 and control
 * bytes become '?', cut to PM_METRIC_LABEL_MAX bytes); the caller keeps its
 * strings. pm_metrics_render returns a malloc'd buffer the caller frees.
 */
#ifndef PM_METRICS_H
#define PM_METRICS_H

#include <stddef.h>

/* Series ids are never reused; past this many, pm_metric_series returns -1
 * (label values from callers must have a small, bounded set). */
#define PM_METRIC_SERIES_MAX 1024
/* A label value longer than this (bytes) is cut at a character boundary. */
#define PM_METRIC_LABEL_MAX 64
/* At most this many scrape callbacks. */
#define PM_METRIC_CALLBACKS_MAX 16

typedef enum pm_metric {
	PM_M_BUILD_INFO,    /* gauge {version,revision}, always 1 */
	PM_M_HTTP_REQUESTS, /* counter {route,code} */
	PM_M_HTTP_DURATION, /* histogram {route}, seconds */
	PM_M_HTTP_INFLIGHT, /* gauge */
	PM_M_JOBS,	    /* gauge {state} */
	PM_M_ITEMS, /* counter {result}: done|failed|duplicate|cache_hit */
	PM_M_ITEM_DURATION,  /* histogram, seconds */
	PM_M_STAGE_DURATION, /* histogram {stage}, seconds */
	PM_M_QUEUE_DEPTH,    /* gauge {queue} */
	PM_M_FETCH_BYTES,    /* counter */
	PM_M_FETCH_REQUESTS, /* counter {result}: ok|not_modified|retry|error */
	PM_M_URL_CACHE,	     /* counter {result}: hit|miss */
	PM_M_DLQ,	     /* gauge */
	PM_M_UPLOADS,	     /* counter {result} */
	/* vision model API (src/vision/): requests {outcome}: ok, rate_limited,
	 * server_error, timeout, network_error, auth_error, bad_request,
	 * bad_answer; tokens {direction}: in, out; cost in micro-dollars;
	 * request latency (s); allowed requests/s per key {key} (AIMD) */
	PM_M_VISION_REQUESTS,
	PM_M_VISION_TOKENS,
	PM_M_VISION_COST,
	PM_M_VISION_LATENCY,
	PM_M_VISION_KEY_RATE,
	/* image search providers (src/fetch/provider.c), by provider name:
	 * requests {provider,outcome}: ok, rate_limited, server_error,
	 * timeout, network_error, auth_error, bad_request, bad_answer;
	 * searches {provider,result}: found, empty, failed, over_quota;
	 * result URLs returned; request latency (s); requests counted
	 * against today's quota */
	PM_M_SEARCH_REQUESTS,
	PM_M_SEARCH_SEARCHES,
	PM_M_SEARCH_RESULTS,
	PM_M_SEARCH_LATENCY,
	PM_M_SEARCH_QUOTA_USED,
	/* ads pipeline items {result}: placeholder, bg_removed, bg_skipped,
	 * dlq_retry (tried again after failing in an earlier run) */
	PM_M_ADS,
	/* the optional Redis of a fleet (src/fleet/): 1 when connected (0
	 * when down or not configured); errors (commands or connects that
	 * failed); calls answered locally instead {op}: rate_limit, cache,
	 * publish; shared cache lookups {result}: hit, miss; seconds spent
	 * degraded (Redis configured but down) */
	PM_M_REDIS_UP,
	PM_M_REDIS_ERRORS,
	PM_M_REDIS_FALLBACKS,
	PM_M_REDIS_CACHE,
	PM_M_REDIS_DEGRADED,
	/* `pixmill worker` (src/cli/cmd_worker.c, engine/run.c worker mode):
	 * records claimed; claimed items settled {result}: done, failed,
	 * lost (lease taken over), requeued (transient failure, back in the
	 * queue); claims held (as of the last lease renewal); 1 when the
	 * store answers; store errors (reconnects follow); the job being
	 * run (0: idle); expired leases (any worker's) put back in the
	 * queue by this worker; job runs finished or paused */
	PM_M_WORKER_CLAIMS,
	PM_M_WORKER_ITEMS,
	PM_M_WORKER_LEASES,
	PM_M_WORKER_STORE_UP,
	PM_M_WORKER_STORE_ERRORS,
	PM_M_WORKER_JOB,
	PM_M_WORKER_REAPED,
	PM_M_WORKER_RUNS,
	/* serve's store connection pool (store/pool.h): connections
	 * {state}: open, in_use, idle; its bound; borrows that waited and
	 * the seconds they waited; connections opened; borrows or handles
	 * that failed {reason}: timeout (503), open_failed, broken,
	 * refused (given back inside a batch) */
	PM_M_DB_POOL_CONNS,
	PM_M_DB_POOL_MAX,
	PM_M_DB_POOL_WAITS,
	PM_M_DB_POOL_WAIT_SECONDS,
	PM_M_DB_POOL_OPENS,
	PM_M_DB_POOL_ERRORS,
	PM_M__COUNT
} pm_metric;

/* Series = one metric with concrete label values. Thread-safe, idempotent
 * (same args -> same id); returns -1 if m is out of range, the label count
 * is wrong (pass NULL for labels the metric does not have) or the table is
 * full. Label values are copied. Lookups after the first are lock-free
 * (append-only table + mutex for insertion only). */
int pm_metric_series(pm_metric m, const char *l1, const char *l2);

/* Each of these is a no-op when series is -1 (or any invalid id) or names a
 * metric of another type; they never fail otherwise. */
/* counter += v (v < 0 and NaN are ignored: counters only go up). */
void pm_metric_add(int series, double v);
/* histogram: one observation (NaN is ignored). */
void pm_metric_observe(int series, double v);
/* gauge = v (one global value per series, atomic). */
void pm_metric_set(int series, double v);
/* gauge += v (atomic; v may be negative), e.g. requests in flight. */
void pm_metric_gauge_add(int series, double v);

/* Shorthands that look the series up each time (no-op when it is -1): */
void pm_metric_inc(pm_metric m, const char *l1, const char *l2, double v);
void pm_metric_obs(pm_metric m, const char *l1, const char *l2, double v);
void pm_metric_put(pm_metric m, const char *l1, const char *l2, double v);

/* fn(ud) is called at the start of each render, on the rendering thread, so
 * owners can set gauges (queue depths, job counts, DLQ size). At most
 * PM_METRIC_CALLBACKS_MAX (more are dropped with a warning); registering
 * the same (fn, ud) twice is a no-op. fn may call the pm_metric_* functions
 * above but not pm_metrics_on_scrape/off_scrape/render (deadlock). ud stays
 * owned by the caller; it must live until pm_metrics_off_scrape. */
void pm_metrics_on_scrape(void (*fn)(void *ud), void *ud);
/* Removes (fn, ud). When it returns, fn is not running and never will be
 * again, so ud may be freed. */
void pm_metrics_off_scrape(void (*fn)(void *ud), void *ud);

/* Makes m's series (its unlabelled one, or one per preset label value)
 * so scrapes show them from now on, at 0 until used. Every metric but the
 * lazy ones (pixmill_worker_*, which only `pixmill worker` shows) gets this
 * at the first scrape. */
void pm_metrics_show(pm_metric m);

/* Prometheus text exposition format 0.0.4, NUL-terminated; *len (if not
 * NULL) gets its length. malloc'd, the caller frees it. NULL if memory is
 * short. Includes the process_* metrics read from /proc/self. */
char *pm_metrics_render(size_t *len);

/* Tests only: zeroes every value (counters, histograms, gauges, including
 * the totals of exited threads) and drops the scrape callbacks. Series ids
 * stay valid. No other thread may be writing metrics meanwhile. */
void pm_metrics_reset_for_tests(void);

#endif
