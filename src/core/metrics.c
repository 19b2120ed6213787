/* metrics.c — the metric list, per-thread shards and the Prometheus text
 * renderer (format 0.0.4).
 *
 * Layout. Every series gets a range of slots: a counter one (its value), a
 * histogram nb+2 (one count per bucket, +Inf included, then the sum). Each
 * thread that writes a counter or histogram owns a shard: an array of
 * chunk pointers, each chunk PM_CHUNK 64-bit slots, allocated on first use.
 * Doubles are stored bit-cast in the same uint64 slots. A gauge is one
 * atomic uint64 inside its series entry.
 *
 * Threads:
 *  - pm_metric_add/observe on a shard: only its owner thread writes it,
 *    with relaxed atomic load+store (no read-modify-write needed, as there
 *    is one writer); the renderer reads it with relaxed loads. Chunk
 *    pointers are published with release / read with acquire.
 *  - mu guards insertion into the series table, the shard list, the
 *    retired totals and the slot-kind table. Readers of the series table
 *    (lookups, hot path) take no lock: entries are immutable once
 *    published (n_series and the hash slot are stored with release after
 *    the entry is written) and never removed.
 *  - cb_mu guards the callback list and is held while callbacks run, so
 *    pm_metrics_off_scrape waits for a running callback.
 *  - When a thread exits, the pthread key destructor folds its shard into
 *    the retired totals and unlinks it, both under mu; the renderer sums
 *    under mu too, so every value is counted exactly once.
 * Lock order: cb_mu before mu (callbacks may insert series).
 */
#include "core/metrics.h"
#include "core/util.h"

#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#ifndef PM_VERSION
#define PM_VERSION "0.0.0"
#endif
#ifndef PM_GITREV
#define PM_GITREV "unknown"
#endif

/* ---- the one list ---------------------------------------------------- */

typedef enum pm_mtype { PM_COUNTER, PM_GAUGE, PM_HISTOGRAM } pm_mtype;

typedef struct pm_metric_def {
	const char *name;
	const char *help;
	pm_mtype type;
	int nlabels;
	const char *labels[2];
	const double *buckets; /* histograms: upper bounds, ascending */
	int nbuckets;	       /* without +Inf */
	/* single-label counters: values created at the first scrape, so
	 * rate() sees them start from 0 */
	const char *const *preset;
	/* series made by their owner only (pm_metrics_show), not by every
	 * process's first scrape: metrics of one kind of process */
	bool lazy;
} pm_metric_def;

static const double http_buckets[] = {.0005, .001, .0025, .005, .01, .025, .05,
				      .1,    .25,  .5,	  1,	2.5, 5,	   10};
static const double item_buckets[] = {.005, .01, .025, .05, .1, .25,
				      .5,   1,	 2.5,  5,   10, 30};
static const char *const items_preset[] = {"done", "failed", "duplicate",
					   "cache_hit", NULL};
static const char *const fetch_preset[] = {"ok", "not_modified", "retry",
					   "error", NULL};
static const char *const cache_preset[] = {"hit", "miss", NULL};
static const char *const vision_preset[] = {
    "ok",	  "rate_limited", "server_error", "timeout", "network_error",
    "auth_error", "bad_request",  "bad_answer",	  NULL};
static const char *const tokens_preset[] = {"in", "out", NULL};
static const char *const ads_preset[] = {"placeholder", "bg_removed",
					 "bg_skipped", "dlq_retry", NULL};
static const char *const redis_fb_preset[] = {"rate_limit", "cache", "publish",
					      NULL};
static const char *const worker_items_preset[] = {"done", "failed", "lost",
						  "requeued", NULL};
static const double vision_buckets[] = {.1, .25, .5, 1, 2.5, 5, 10, 30, 60};

#define NB(a) ((int)(sizeof(a) / sizeof((a)[0])))

static const pm_metric_def defs[PM_M__COUNT] = {
    [PM_M_BUILD_INFO] = {.name = "pixmill_build_info",
			 .help = "Version and git revision of this pixmill; "
				 "always 1.",
			 .type = PM_GAUGE,
			 .nlabels = 2,
			 .labels = {"version", "revision"}},
    [PM_M_HTTP_REQUESTS] = {.name = "pixmill_http_requests_total",
			    .help = "HTTP requests answered, by route and "
				    "status code.",
			    .type = PM_COUNTER,
			    .nlabels = 2,
			    .labels = {"route", "code"}},
    [PM_M_HTTP_DURATION] = {.name = "pixmill_http_request_duration_seconds",
			    .help = "Time to answer an HTTP request, by route.",
			    .type = PM_HISTOGRAM,
			    .nlabels = 1,
			    .labels = {"route"},
			    .buckets = http_buckets,
			    .nbuckets = NB(http_buckets)},
    [PM_M_HTTP_INFLIGHT] = {.name = "pixmill_http_requests_in_flight",
			    .help = "HTTP requests being answered now.",
			    .type = PM_GAUGE},
    [PM_M_JOBS] = {.name = "pixmill_jobs",
		   .help = "Jobs known to the server, by state.",
		   .type = PM_GAUGE,
		   .nlabels = 1,
		   .labels = {"state"}},
    [PM_M_ITEMS] = {.name = "pixmill_items_total",
		    .help = "Catalog items finished, by result.",
		    .type = PM_COUNTER,
		    .nlabels = 1,
		    .labels = {"result"},
		    .preset = items_preset},
    [PM_M_ITEM_DURATION] = {.name = "pixmill_item_duration_seconds",
			    .help = "Time to process one catalog item, end to "
				    "end.",
			    .type = PM_HISTOGRAM,
			    .buckets = item_buckets,
			    .nbuckets = NB(item_buckets)},
    [PM_M_STAGE_DURATION] = {.name = "pixmill_stage_duration_seconds",
			     .help = "Time spent in one pipeline stage for one "
				     "item.",
			     .type = PM_HISTOGRAM,
			     .nlabels = 1,
			     .labels = {"stage"},
			     .buckets = item_buckets,
			     .nbuckets = NB(item_buckets)},
    [PM_M_QUEUE_DEPTH] = {.name = "pixmill_queue_depth",
			  .help = "Items waiting in an internal queue, by "
				  "queue.",
			  .type = PM_GAUGE,
			  .nlabels = 1,
			  .labels = {"queue"}},
    [PM_M_FETCH_BYTES] = {.name = "pixmill_fetch_bytes_total",
			  .help = "Bytes downloaded from image origins.",
			  .type = PM_COUNTER},
    [PM_M_FETCH_REQUESTS] = {.name = "pixmill_fetch_requests_total",
			     .help = "HTTP requests to image origins, by "
				     "result.",
			     .type = PM_COUNTER,
			     .nlabels = 1,
			     .labels = {"result"},
			     .preset = fetch_preset},
    [PM_M_URL_CACHE] = {.name = "pixmill_url_cache_total",
			.help = "URL cache lookups, by result.",
			.type = PM_COUNTER,
			.nlabels = 1,
			.labels = {"result"},
			.preset = cache_preset},
    [PM_M_DLQ] = {.name = "pixmill_dlq_items",
		  .help = "Items in the dead-letter queue (failed, awaiting "
			  "retry).",
		  .type = PM_GAUGE},
    [PM_M_UPLOADS] = {.name = "pixmill_uploads_total",
		      .help = "Image uploads, by result.",
		      .type = PM_COUNTER,
		      .nlabels = 1,
		      .labels = {"result"}},
    [PM_M_VISION_REQUESTS] = {.name = "pixmill_vision_requests_total",
			      .help = "Requests to the vision model API, by "
				      "outcome.",
			      .type = PM_COUNTER,
			      .nlabels = 1,
			      .labels = {"outcome"},
			      .preset = vision_preset},
    [PM_M_VISION_TOKENS] = {.name = "pixmill_vision_tokens_total",
			    .help = "Tokens the vision model API billed, in "
				    "(prompt) and out (completion).",
			    .type = PM_COUNTER,
			    .nlabels = 1,
			    .labels = {"direction"},
			    .preset = tokens_preset},
    [PM_M_VISION_COST] = {.name = "pixmill_vision_cost_microdollars_total",
			  .help = "Cost of the vision model API calls in "
				  "millionths of a dollar, from the configured "
				  "prices per 1000 tokens.",
			  .type = PM_COUNTER},
    [PM_M_VISION_LATENCY] = {.name = "pixmill_vision_request_duration_seconds",
			     .help = "Time of one vision model API request.",
			     .type = PM_HISTOGRAM,
			     .buckets = vision_buckets,
			     .nbuckets = NB(vision_buckets)},
    [PM_M_VISION_KEY_RATE] = {.name = "pixmill_vision_key_rate",
			      .help = "Requests per second each vision API "
				      "key may send now (adaptive).",
			      .type = PM_GAUGE,
			      .nlabels = 1,
			      .labels = {"key"}},
    [PM_M_SEARCH_REQUESTS] = {.name = "pixmill_search_requests_total",
			      .help = "Requests to image search providers, by "
				      "provider and outcome.",
			      .type = PM_COUNTER,
			      .nlabels = 2,
			      .labels = {"provider", "outcome"}},
    [PM_M_SEARCH_SEARCHES] = {.name = "pixmill_search_searches_total",
			      .help = "Image searches for rows without an "
				      "image, by provider and result.",
			      .type = PM_COUNTER,
			      .nlabels = 2,
			      .labels = {"provider", "result"}},
    [PM_M_SEARCH_RESULTS] = {.name = "pixmill_search_results_total",
			     .help = "Image URLs the search providers "
				     "returned.",
			     .type = PM_COUNTER,
			     .nlabels = 1,
			     .labels = {"provider"}},
    [PM_M_SEARCH_LATENCY] = {.name = "pixmill_search_request_duration_seconds",
			     .help = "Time of one image search request.",
			     .type = PM_HISTOGRAM,
			     .nlabels = 1,
			     .labels = {"provider"},
			     .buckets = vision_buckets,
			     .nbuckets = NB(vision_buckets)},
    [PM_M_SEARCH_QUOTA_USED] = {.name = "pixmill_search_quota_used",
				.help = "Requests an image search provider has "
					"made today (UTC) against its daily "
					"quota.",
				.type = PM_GAUGE,
				.nlabels = 1,
				.labels = {"provider"}},
    [PM_M_ADS] = {.name = "pixmill_ads_items_total",
		  .help = "Ads pipeline items: composed with a placeholder, "
			  "background removed or kept (cut-out skipped), "
			  "and items retried after failing in an earlier run.",
		  .type = PM_COUNTER,
		  .nlabels = 1,
		  .labels = {"result"},
		  .preset = ads_preset},
    [PM_M_REDIS_UP] = {.name = "pixmill_redis_up",
		       .help =
			   "1 when the fleet's Redis (--redis) is "
			   "connected, 0 when it is down or not configured.",
		       .type = PM_GAUGE},
    [PM_M_REDIS_ERRORS] = {.name = "pixmill_redis_errors_total",
			   .help = "Redis commands or connects that failed.",
			   .type = PM_COUNTER},
    [PM_M_REDIS_FALLBACKS] = {.name = "pixmill_redis_fallbacks_total",
			      .help = "Calls answered without Redis (down or "
				      "failing): local rate limit, store "
				      "lookup, progress not published; by op.",
			      .type = PM_COUNTER,
			      .nlabels = 1,
			      .labels = {"op"},
			      .preset = redis_fb_preset},
    [PM_M_REDIS_CACHE] = {.name = "pixmill_redis_cache_total",
			  .help = "Shared cache lookups in Redis (URL "
				  "validators, asset existence), by result.",
			  .type = PM_COUNTER,
			  .nlabels = 1,
			  .labels = {"result"},
			  .preset = cache_preset},
    [PM_M_REDIS_DEGRADED] = {.name = "pixmill_redis_degraded_seconds",
			     .help = "Seconds this process has run with its "
				     "Redis configured but down.",
			     .type = PM_GAUGE},
    /* lazy: shown by `pixmill worker` only (it creates the series) */
    [PM_M_WORKER_CLAIMS] = {.name = "pixmill_worker_claims_total",
			    .help = "Queue records this worker claimed.",
			    .type = PM_COUNTER,
			    .lazy = true},
    [PM_M_WORKER_ITEMS] = {.name = "pixmill_worker_items_total",
			   .help = "Claimed items this worker settled: done, "
				   "failed, lost (lease taken over) or "
				   "requeued (transient failure).",
			   .type = PM_COUNTER,
			   .nlabels = 1,
			   .labels = {"result"},
			   .preset = worker_items_preset,
			   .lazy = true},
    [PM_M_WORKER_LEASES] = {.name = "pixmill_worker_leases_held",
			    .help = "Claims this worker holds, as of its last "
				    "lease renewal.",
			    .type = PM_GAUGE,
			    .lazy = true},
    [PM_M_WORKER_STORE_UP] = {.name = "pixmill_worker_store_up",
			      .help = "1 when the worker's store answers, 0 "
				      "while it is unreachable.",
			      .type = PM_GAUGE,
			      .lazy = true},
    [PM_M_WORKER_STORE_ERRORS] = {.name = "pixmill_worker_store_errors_total",
				  .help = "Store errors of this worker (each "
					  "followed by a reconnect).",
				  .type = PM_COUNTER,
				  .lazy = true},
    [PM_M_WORKER_JOB] = {.name = "pixmill_worker_current_job",
			 .help = "Id of the job this worker runs, 0 when "
				 "idle.",
			 .type = PM_GAUGE,
			 .lazy = true},
    [PM_M_WORKER_REAPED] = {.name = "pixmill_worker_reaped_total",
			    .help = "Expired leases (any worker's) this worker "
				    "put back in the queue.",
			    .type = PM_COUNTER,
			    .lazy = true},
    [PM_M_WORKER_RUNS] = {.name = "pixmill_worker_job_runs_total",
			  .help = "Job runs this worker finished or paused.",
			  .type = PM_COUNTER,
			  .lazy = true},
    /* lazy: shown by `pixmill serve` only (its scrape sets them) */
    [PM_M_DB_POOL_CONNS] = {.name = "pixmill_db_pool_connections",
			    .help = "Store connections of serve's pool by "
				    "state: open, in_use, idle.",
			    .type = PM_GAUGE,
			    .nlabels = 1,
			    .labels = {"state"},
			    .lazy = true},
    [PM_M_DB_POOL_MAX] = {.name = "pixmill_db_pool_max",
			  .help = "Most store connections serve's pool "
				  "opens (--db-pool).",
			  .type = PM_GAUGE,
			  .lazy = true},
    [PM_M_DB_POOL_WAITS] = {.name = "pixmill_db_pool_waits_total",
			    .help = "Requests that waited for a store "
				    "connection (all in use).",
			    .type = PM_COUNTER,
			    .lazy = true},
    [PM_M_DB_POOL_WAIT_SECONDS] = {.name = "pixmill_db_pool_wait_seconds_total",
				   .help = "Seconds requests spent waiting "
					   "for a store connection.",
				   .type = PM_COUNTER,
				   .lazy = true},
    [PM_M_DB_POOL_OPENS] = {.name = "pixmill_db_pool_opens_total",
			    .help = "Store connections serve's pool opened.",
			    .type = PM_COUNTER,
			    .lazy = true},
    [PM_M_DB_POOL_ERRORS] = {.name = "pixmill_db_pool_errors_total",
			     .help = "Pool failures by reason: timeout (a "
				     "request waited in vain and got 503, or a "
				     "scrape went without the store's gauges), "
				     "open_failed, broken, refused.",
			     .type = PM_COUNTER,
			     .nlabels = 1,
			     .labels = {"reason"},
			     .lazy = true},
};

/* ---- series table ----------------------------------------------------- */

#define PM_SLOTS_MAX 16384 /* enough for every series being a histogram */
#define PM_CHUNK     256
#define PM_NCHUNKS   (PM_SLOTS_MAX / PM_CHUNK)
#define PM_HASH_SIZE 2048 /* power of two, >= 2 * PM_METRIC_SERIES_MAX */

typedef struct pm_series {
	pm_metric metric;
	int base;		/* first slot (counters, histograms) */
	_Atomic uint64_t gauge; /* gauges: the value, bit-cast */
	char lv[2][PM_METRIC_LABEL_MAX + 1]; /* "" for absent labels */
} pm_series;

typedef struct pm_shard {
	_Atomic(_Atomic uint64_t *) chunks[PM_NCHUNKS];
	struct pm_shard *next; /* shard list; under mu */
} pm_shard;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pm_series series_tab[PM_METRIC_SERIES_MAX];
static _Atomic int n_series;		     /* published entries */
static _Atomic int hash_tab[PM_HASH_SIZE];   /* series id + 1; 0 = empty */
static int n_slots;			     /* under mu */
static unsigned char slot_dbl[PM_SLOTS_MAX]; /* under mu: slot holds a double */
static uint64_t retired[PM_SLOTS_MAX]; /* under mu: totals of exited threads */
static pm_shard *shards;	       /* under mu: live threads' shards */
static atomic_int full_warned;

static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static pthread_key_t shard_key;
static __thread pm_shard *tl_shard; /* this thread's shard, or NULL */

static pthread_mutex_t cb_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
	void (*fn)(void *ud);
	void *ud;
} cbs[PM_METRIC_CALLBACKS_MAX]; /* under cb_mu */
static int n_cbs;		/* under cb_mu */

static uint64_t d2u(double d)
{
	uint64_t u;

	memcpy(&u, &d, sizeof u);
	return u;
}

static double u2d(uint64_t u)
{
	double d;

	memcpy(&d, &u, sizeof d);
	return d;
}

/* Copies s into out (PM_METRIC_LABEL_MAX + 1 bytes): valid UTF-8 only
 * (each bad byte becomes '?'), control bytes other than tab and newline
 * become '?', cut at a character boundary. NULL gives "". */
static void label_clean(const char *s, char *out)
{
	const unsigned char *p = (const unsigned char *)(s ? s : "");
	size_t o = 0;

	while (*p) {
		unsigned c = p[0];
		size_t n = 1;
		uint32_t cp = 0;

		if (c >= 0xc2 && c <= 0xdf) {
			n = 2;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 3;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 4;
			cp = c & 0x07;
		}
		for (size_t i = 1; i < n; i++) {
			if ((p[i] & 0xc0) != 0x80) {
				n = 0; /* truncated sequence */
				break;
			}
			cp = cp << 6 | (p[i] & 0x3f);
		}
		/* overlong, surrogate or past U+10FFFF */
		if ((n == 3 &&
		     (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
		    (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
			n = 0;
		if (o + (n ? n : 1) > PM_METRIC_LABEL_MAX)
			break;
		if (n == 0 || (n == 1 && c >= 0x80) ||
		    (n == 1 &&
		     ((c < 0x20 && c != '\t' && c != '\n') || c == 0x7f))) {
			out[o++] = '?';
			p++;
			continue;
		}
		memcpy(out + o, p, n);
		o += n;
		p += n;
	}
	out[o] = '\0';
}

static unsigned label_hash(pm_metric m, const char *a, const char *b)
{
	uint32_t h = 2166136261u ^ (uint32_t)m;

	for (; *a; a++)
		h = (h ^ (unsigned char)*a) * 16777619u;
	h = (h ^ 0xff) * 16777619u; /* separator; never in valid UTF-8 */
	for (; *b; b++)
		h = (h ^ (unsigned char)*b) * 16777619u;
	return h;
}

/* Lock-free probe; -1 if absent. */
static int series_find(pm_metric m, const char *a, const char *b, unsigned h)
{
	for (unsigned i = 0; i < PM_HASH_SIZE; i++) {
		unsigned at = (h + i) & (PM_HASH_SIZE - 1);
		int v =
		    atomic_load_explicit(&hash_tab[at], memory_order_acquire);
		const pm_series *s;

		if (v == 0)
			return -1;
		s = &series_tab[v - 1];
		if (s->metric == m && strcmp(s->lv[0], a) == 0 &&
		    strcmp(s->lv[1], b) == 0)
			return v - 1;
	}
	return -1;
}

static int slots_of(const pm_metric_def *d)
{
	switch (d->type) {
	case PM_COUNTER:
		return 1;
	case PM_HISTOGRAM:
		return d->nbuckets + 2;
	default:
		return 0;
	}
}

int pm_metric_series(pm_metric m, const char *l1, const char *l2)
{
	char a[PM_METRIC_LABEL_MAX + 1], b[PM_METRIC_LABEL_MAX + 1];
	const pm_metric_def *d;
	unsigned h;
	int id, n, need;

	if ((int)m < 0 || m >= PM_M__COUNT)
		return -1;
	d = &defs[m];
	if ((d->nlabels >= 1) != (l1 != NULL) ||
	    (d->nlabels >= 2) != (l2 != NULL))
		return -1;
	label_clean(l1, a);
	label_clean(l2, b);
	h = label_hash(m, a, b);
	id = series_find(m, a, b, h);
	if (id >= 0)
		return id;

	pthread_mutex_lock(&mu);
	id = series_find(m, a, b, h); /* lost a race to another inserter? */
	n = atomic_load_explicit(&n_series, memory_order_relaxed);
	need = slots_of(d);
	if (id < 0 && n < PM_METRIC_SERIES_MAX &&
	    n_slots + need <= PM_SLOTS_MAX) {
		pm_series *s = &series_tab[n];
		unsigned at = h & (PM_HASH_SIZE - 1);

		s->metric = m;
		s->base = n_slots;
		atomic_store_explicit(&s->gauge, d2u(0), memory_order_relaxed);
		memcpy(s->lv[0], a, sizeof a);
		memcpy(s->lv[1], b, sizeof b);
		for (int i = 0; i < need; i++)
			slot_dbl[n_slots + i] =
			    d->type == PM_COUNTER || i == need - 1;
		n_slots += need;
		id = n;
		atomic_store_explicit(&n_series, n + 1, memory_order_release);
		while (atomic_load_explicit(&hash_tab[at],
					    memory_order_relaxed) != 0)
			at = (at + 1) & (PM_HASH_SIZE - 1);
		atomic_store_explicit(&hash_tab[at], id + 1,
				      memory_order_release);
	}
	pthread_mutex_unlock(&mu);
	if (id < 0 && !atomic_exchange(&full_warned, 1))
		pm_log(PM_LOG_WARN,
		       "metrics: series table full; %s{%s,%s} not recorded",
		       d->name, a, b);
	return id;
}

/* Published series of the given type, or NULL. */
static pm_series *series_get(int id, pm_mtype type)
{
	pm_series *s;

	if (id < 0 ||
	    id >= atomic_load_explicit(&n_series, memory_order_acquire))
		return NULL;
	s = &series_tab[id];
	return defs[s->metric].type == type ? s : NULL;
}

/* ---- per-thread shards -------------------------------------------------- */

/* Adds src (slot bits) to the total t, by slot kind. */
static void slot_acc(uint64_t *t, uint64_t src, int dbl)
{
	if (dbl)
		*t = d2u(u2d(*t) + u2d(src));
	else
		*t += src;
}

static void shard_sum(pm_shard *sh, uint64_t *tot, int nslots)
{
	for (int c = 0; c * PM_CHUNK < nslots; c++) {
		_Atomic uint64_t *ch =
		    atomic_load_explicit(&sh->chunks[c], memory_order_acquire);

		if (!ch)
			continue;
		for (int i = 0; i < PM_CHUNK && c * PM_CHUNK + i < nslots;
		     i++) {
			int k = c * PM_CHUNK + i;

			slot_acc(
			    &tot[k],
			    atomic_load_explicit(&ch[i], memory_order_relaxed),
			    slot_dbl[k]);
		}
	}
}

/* Key destructor, on the exiting thread: fold sh into retired, unlink it
 * and free it (the shard and its chunks are owned by the list until now). */
static void shard_retire(void *arg)
{
	pm_shard *sh = arg;

	pthread_mutex_lock(&mu);
	shard_sum(sh, retired, n_slots);
	for (pm_shard **pp = &shards; *pp; pp = &(*pp)->next) {
		if (*pp == sh) {
			*pp = sh->next;
			break;
		}
	}
	pthread_mutex_unlock(&mu);
	for (int c = 0; c < PM_NCHUNKS; c++)
		free((void *)atomic_load_explicit(&sh->chunks[c],
						  memory_order_relaxed));
	free(sh);
	if (tl_shard == sh)
		tl_shard = NULL; /* a later destructor gets a fresh shard */
}

static void key_init(void)
{
	if (pthread_key_create(&shard_key, shard_retire) != 0)
		abort(); /* only fails when out of keys: a bug */
}

/* This thread's slot k, allocating its shard/chunk on first use; NULL if
 * memory is short (the value is then dropped). Owner thread only. */
static _Atomic uint64_t *my_slot(int k)
{
	pm_shard *sh = tl_shard;
	_Atomic uint64_t *ch;

	if (!sh) {
		pthread_once(&key_once, key_init);
		sh = calloc(1, sizeof *sh);
		if (!sh)
			return NULL;
		pthread_mutex_lock(&mu);
		sh->next = shards; /* the list owns it until the thread exits */
		shards = sh;
		pthread_mutex_unlock(&mu);
		/* if this fails, the shard stays listed (still summed) */
		pthread_setspecific(shard_key, sh);
		tl_shard = sh;
	}
	ch = atomic_load_explicit(&sh->chunks[k / PM_CHUNK],
				  memory_order_relaxed);
	if (!ch) {
		ch = calloc(PM_CHUNK, sizeof *ch);
		if (!ch)
			return NULL;
		atomic_store_explicit(&sh->chunks[k / PM_CHUNK], ch,
				      memory_order_release);
	}
	return &ch[k % PM_CHUNK];
}

static void slot_add_d(int k, double v)
{
	_Atomic uint64_t *p = my_slot(k);

	if (p)
		atomic_store_explicit(
		    p,
		    d2u(u2d(atomic_load_explicit(p, memory_order_relaxed)) + v),
		    memory_order_relaxed);
}

static void slot_inc(int k)
{
	_Atomic uint64_t *p = my_slot(k);

	if (p)
		atomic_store_explicit(
		    p, atomic_load_explicit(p, memory_order_relaxed) + 1,
		    memory_order_relaxed);
}

/* ---- recording ------------------------------------------------------------
 */

void pm_metric_add(int series, double v)
{
	pm_series *s = series_get(series, PM_COUNTER);

	if (s && v >= 0) /* also false for NaN */
		slot_add_d(s->base, v);
}

void pm_metric_observe(int series, double v)
{
	pm_series *s = series_get(series, PM_HISTOGRAM);
	const pm_metric_def *d;
	int b = 0;

	if (!s || isnan(v))
		return;
	d = &defs[s->metric];
	while (b < d->nbuckets && v > d->buckets[b])
		b++;
	slot_inc(s->base + b);
	slot_add_d(s->base + d->nbuckets + 1, v);
}

void pm_metric_set(int series, double v)
{
	pm_series *s = series_get(series, PM_GAUGE);

	if (s)
		atomic_store_explicit(&s->gauge, d2u(v), memory_order_relaxed);
}

void pm_metric_gauge_add(int series, double v)
{
	pm_series *s = series_get(series, PM_GAUGE);
	uint64_t old, nw;

	if (!s)
		return;
	old = atomic_load_explicit(&s->gauge, memory_order_relaxed);
	do
		nw = d2u(u2d(old) + v);
	while (!atomic_compare_exchange_weak_explicit(
	    &s->gauge, &old, nw, memory_order_relaxed, memory_order_relaxed));
}

void pm_metric_inc(pm_metric m, const char *l1, const char *l2, double v)
{
	pm_metric_add(pm_metric_series(m, l1, l2), v);
}

void pm_metric_obs(pm_metric m, const char *l1, const char *l2, double v)
{
	pm_metric_observe(pm_metric_series(m, l1, l2), v);
}

void pm_metric_put(pm_metric m, const char *l1, const char *l2, double v)
{
	pm_metric_set(pm_metric_series(m, l1, l2), v);
}

/* ---- callbacks ------------------------------------------------------------
 */

void pm_metrics_on_scrape(void (*fn)(void *ud), void *ud)
{
	int i;

	if (!fn)
		return;
	pthread_mutex_lock(&cb_mu);
	for (i = 0; i < n_cbs; i++)
		if (cbs[i].fn == fn && cbs[i].ud == ud)
			break;
	if (i == n_cbs && n_cbs < PM_METRIC_CALLBACKS_MAX) {
		cbs[n_cbs].fn = fn;
		cbs[n_cbs].ud = ud;
		n_cbs++;
	} else if (i == n_cbs) {
		pm_log(PM_LOG_WARN, "metrics: more than %d scrape callbacks",
		       PM_METRIC_CALLBACKS_MAX);
	}
	pthread_mutex_unlock(&cb_mu);
}

void pm_metrics_off_scrape(void (*fn)(void *ud), void *ud)
{
	pthread_mutex_lock(&cb_mu);
	for (int i = 0; i < n_cbs; i++) {
		if (cbs[i].fn == fn && cbs[i].ud == ud) {
			memmove(&cbs[i], &cbs[i + 1],
				(size_t)(n_cbs - i - 1) * sizeof cbs[0]);
			n_cbs--;
			break;
		}
	}
	pthread_mutex_unlock(&cb_mu);
}

/* ---- rendering ------------------------------------------------------------
 */

typedef struct sbuf {
	char *p;
	size_t len, cap;
	int oom;
} sbuf;

static void sb_reserve(sbuf *b, size_t more)
{
	size_t cap = b->cap ? b->cap : 4096;
	char *p;

	if (b->oom || b->len + more + 1 <= b->cap)
		return;
	while (cap < b->len + more + 1)
		cap *= 2;
	p = realloc(b->p, cap);
	if (!p) {
		b->oom = 1;
		return;
	}
	b->p = p;
	b->cap = cap;
}

static void sb_printf(sbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->oom = 1;
		return;
	}
	sb_reserve(b, (size_t)n);
	if (b->oom)
		return;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

/* Escapes per the text format: \\ and \n always, \" in label values. */
static void sb_escaped(sbuf *b, const char *s, int quote)
{
	sb_reserve(b, 2 * strlen(s));
	if (b->oom)
		return;
	for (; *s; s++) {
		if (*s == '\\' || (*s == '"' && quote)) {
			b->p[b->len++] = '\\';
			b->p[b->len++] = *s;
		} else if (*s == '\n') {
			b->p[b->len++] = '\\';
			b->p[b->len++] = 'n';
		} else {
			b->p[b->len++] = *s;
		}
	}
	b->p[b->len] = '\0';
}

/* Shortest text that reads back as v (Go ParseFloat syntax). */
static const char *fmt_num(double v, char buf[32])
{
	if (isnan(v))
		return "NaN";
	if (isinf(v))
		return v > 0 ? "+Inf" : "-Inf";
	if (v == floor(v) && fabs(v) < 1e15) {
		snprintf(buf, 32, "%.0f", v);
		return buf;
	}
	snprintf(buf, 32, "%.15g", v);
	if (strtod(buf, NULL) != v)
		snprintf(buf, 32, "%.17g", v);
	return buf;
}

/* name{l1="v1",l2="v2"[,le="x"]} — the labels part is omitted if empty. */
static void sb_series(sbuf *b, const char *name, const char *suffix,
		      const pm_series *s, const char *le)
{
	const pm_metric_def *d = &defs[s->metric];
	int n = 0;

	sb_printf(b, "%s%s", name, suffix);
	for (int i = 0; i < d->nlabels; i++) {
		sb_printf(b, "%s%s=\"", n++ ? "," : "{", d->labels[i]);
		sb_escaped(b, s->lv[i], 1);
		sb_printf(b, "\"");
	}
	if (le)
		sb_printf(b, "%sle=\"%s\"", n++ ? "," : "{", le);
	if (n)
		sb_printf(b, "}");
}

static const char *type_name(pm_mtype t)
{
	return t == PM_COUNTER ? "counter"
	       : t == PM_GAUGE ? "gauge"
			       : "histogram";
}

static void render_family(sbuf *b, pm_metric m, const uint64_t *tot, int ns)
{
	const pm_metric_def *d = &defs[m];
	char num[32], le[32];

	sb_printf(b, "# HELP %s ", d->name);
	sb_escaped(b, d->help, 0);
	sb_printf(b, "\n# TYPE %s %s\n", d->name, type_name(d->type));
	for (int id = 0; id < ns; id++) {
		pm_series *s = &series_tab[id];
		uint64_t cum = 0;

		if (s->metric != m)
			continue;
		switch (d->type) {
		case PM_COUNTER:
			sb_series(b, d->name, "", s, NULL);
			sb_printf(b, " %s\n", fmt_num(u2d(tot[s->base]), num));
			break;
		case PM_GAUGE:
			sb_series(b, d->name, "", s, NULL);
			sb_printf(b, " %s\n",
				  fmt_num(u2d(atomic_load_explicit(
					      &s->gauge, memory_order_relaxed)),
					  num));
			break;
		case PM_HISTOGRAM:
			for (int i = 0; i <= d->nbuckets; i++) {
				cum += tot[s->base + i];
				sb_series(b, d->name, "_bucket", s,
					  i < d->nbuckets
					      ? fmt_num(d->buckets[i], le)
					      : "+Inf");
				sb_printf(b, " %" PRIu64 "\n", cum);
			}
			sb_series(b, d->name, "_sum", s, NULL);
			sb_printf(
			    b, " %s\n",
			    fmt_num(u2d(tot[s->base + d->nbuckets + 1]), num));
			sb_series(b, d->name, "_count", s, NULL);
			sb_printf(b, " %" PRIu64 "\n", cum);
			break;
		}
	}
}

static void proc_metric(sbuf *b, const char *name, const char *type,
			const char *help, double v)
{
	char num[32];

	sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %s\n", name, help, name,
		  type, name, fmt_num(v, num));
}

/* The standard process_* metrics of Prometheus clients, from /proc/self.
 * Any that cannot be read are left out. */
static void render_process(sbuf *b)
{
	char line[1024], *p, *save = NULL;
	double tck = (double)sysconf(_SC_CLK_TCK);
	double utime = -1, stime = -1, start = -1, vsize = -1, rss = -1;
	double btime = -1;
	struct rlimit rl;
	FILE *f;
	DIR *dir;

	f = fopen("/proc/self/stat", "r");
	if (f && fgets(line, sizeof line, f) && (p = strrchr(line, ')'))) {
		/* fields after "(comm)" start at field 3 (state) */
		int field = 3;

		for (char *t = strtok_r(p + 1, " \n", &save); t;
		     t = strtok_r(NULL, " \n", &save), field++) {
			if (field == 14)
				utime = strtod(t, NULL);
			else if (field == 15)
				stime = strtod(t, NULL);
			else if (field == 22)
				start = strtod(t, NULL);
			else if (field == 23)
				vsize = strtod(t, NULL);
			else if (field == 24)
				rss = strtod(t, NULL);
		}
	}
	if (f)
		fclose(f);
	f = fopen("/proc/stat", "r");
	while (f && fgets(line, sizeof line, f))
		if (strncmp(line, "btime ", 6) == 0)
			btime = strtod(line + 6, NULL);
	if (f)
		fclose(f);

	if (tck > 0 && utime >= 0 && stime >= 0)
		proc_metric(b, "process_cpu_seconds_total", "counter",
			    "Total user and system CPU time spent in seconds.",
			    (utime + stime) / tck);
	dir = opendir("/proc/self/fd");
	if (dir) {
		int n = 0;

		while (readdir(dir))
			n++;
		closedir(dir);
		/* not ".", ".." nor the descriptor that read the folder */
		proc_metric(b, "process_open_fds", "gauge",
			    "Number of open file descriptors.", n - 3);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		proc_metric(b, "process_max_fds", "gauge",
			    "Maximum number of open file descriptors.",
			    rl.rlim_cur == RLIM_INFINITY ? INFINITY
							 : (double)rl.rlim_cur);
	if (vsize >= 0)
		proc_metric(b, "process_virtual_memory_bytes", "gauge",
			    "Virtual memory size in bytes.", vsize);
	if (rss >= 0)
		proc_metric(b, "process_resident_memory_bytes", "gauge",
			    "Resident memory size in bytes.",
			    rss * (double)sysconf(_SC_PAGESIZE));
	if (tck > 0 && start >= 0 && btime >= 0)
		proc_metric(b, "process_start_time_seconds", "gauge",
			    "Start time of the process since unix epoch in "
			    "seconds.",
			    btime + start / tck);
}

/* Series every scrape shows even before first use. */
static void ensure_defaults(void)
{
	pm_metric_put(PM_M_BUILD_INFO, PM_VERSION, PM_GITREV, 1);
	for (int m = 0; m < PM_M__COUNT; m++) {
		if (!defs[m].lazy)
			pm_metrics_show((pm_metric)m);
	}
}

void pm_metrics_show(pm_metric m)
{
	if (m < 0 || m >= PM_M__COUNT)
		return;
	if (defs[m].nlabels == 0)
		pm_metric_series(m, NULL, NULL);
	for (const char *const *v = defs[m].preset; v && *v; v++)
		pm_metric_series(m, *v, NULL);
}

char *pm_metrics_render(size_t *len)
{
	sbuf b = {0};
	uint64_t *tot;
	int ns, nslots;

	if (len)
		*len = 0;
	pthread_mutex_lock(&cb_mu);
	for (int i = 0; i < n_cbs; i++)
		cbs[i].fn(cbs[i].ud);
	pthread_mutex_unlock(&cb_mu);
	ensure_defaults();

	pthread_mutex_lock(&mu);
	ns = atomic_load_explicit(&n_series, memory_order_relaxed);
	nslots = n_slots;
	tot = malloc((size_t)(nslots ? nslots : 1) * sizeof *tot);
	if (!tot) {
		pthread_mutex_unlock(&mu);
		return NULL;
	}
	memcpy(tot, retired, (size_t)nslots * sizeof *tot);
	for (pm_shard *sh = shards; sh; sh = sh->next)
		shard_sum(sh, tot, nslots);
	pthread_mutex_unlock(&mu);

	/* entries below ns are immutable (gauges are read atomically) */
	for (int m = 0; m < PM_M__COUNT; m++)
		render_family(&b, (pm_metric)m, tot, ns);
	render_process(&b);
	free(tot);
	if (b.oom || !b.p) {
		free(b.p);
		return NULL;
	}
	if (len)
		*len = b.len;
	return b.p; /* ownership passes to the caller */
}

void pm_metrics_reset_for_tests(void)
{
	pthread_mutex_lock(&cb_mu);
	n_cbs = 0;
	pthread_mutex_unlock(&cb_mu);
	pthread_mutex_lock(&mu);
	memset(retired, 0, sizeof retired);
	for (pm_shard *sh = shards; sh; sh = sh->next) {
		for (int c = 0; c < PM_NCHUNKS; c++) {
			_Atomic uint64_t *ch = atomic_load_explicit(
			    &sh->chunks[c], memory_order_relaxed);

			for (int i = 0; ch && i < PM_CHUNK; i++)
				atomic_store_explicit(&ch[i], 0,
						      memory_order_relaxed);
		}
	}
	for (int i = 0; i < atomic_load(&n_series); i++)
		atomic_store_explicit(&series_tab[i].gauge, d2u(0),
				      memory_order_relaxed);
	pthread_mutex_unlock(&mu);
}
