/* run.c — the batch engine behind `pixmill run`.
 *
 * Design (see run.h for the picture):
 * - ingest thread: streams the catalog; a record already done in an earlier
 *   run of the same job is skipped (one indexed lookup); a malformed record
 *   goes straight to the writer as a failed item.
 * - fetch thread: reads local sources into memory, bounded in bytes in
 *   flight as well as in items. Network transports plug in here.
 * - workers: SHA-256 of the source, dedup (an in-flight table for this run,
 *   the store for earlier runs), header probe against the limits, a memory
 *   budget, one decode, the pipeline's stages, outputs written atomically.
 *   The store lookup (dedup) is done with a connection borrowed from the
 *   run's small pool (r->wpool, ceil(workers / 4)) for that one query.
 * - writer: the only thread that writes the store. It commits in batches
 *   (as many results as are waiting, up to 256), makes outputs durable
 *   first when asked (syncfs), appends committed items to the manifest and
 *   only then counts them done.
 * - image candidates (a row's image_urls) are tried in rank order on the
 *   fetch thread; one that a worker's verify stage rejects after decoding
 *   comes back to the fetch thread (send_back, take_back) for the next,
 *   so later candidates are never fetched once one passes. When no image
 *   of a row will do, a pipeline with a compose stage makes a placeholder
 *   (run_placeholder) instead of failing the item.
 * - worker mode (`pixmill worker`, run.h): the ingest thread claims
 *   batches of a job's records from the store's shared queue instead of
 *   reading a catalog (at most two batches unsettled, so a worker does not
 *   hoard); everything downstream is the same, except that the writer puts
 *   each result with its claim (a claim whose lease was lost writes
 *   nothing: counted "lost"), gives transient failures back to the queue
 *   with a backoff, and asks the store to finish the job after each
 *   commit.
 * Exactly-once: an item is done only when committed; item rows are keyed by
 * (job, record key) and written with upserts; output paths are derived from
 * hashes and written by rename, so redoing an item after a crash rewrites
 * identical bytes in the same places.
 *
 * Threads: pm_run on the main thread; the static functions below run on the
 * thread their name says. Shared state is the run struct: atomics for
 * counters, a mutex for the dedup table and one for the memory budget.
 */
#define _GNU_SOURCE
#include "engine/run.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "core/metrics.h"
#include "core/queue.h"
#include "core/util.h"
#include "engine/progress.h"
#include "engine/single.h"
#include "fetch/urlcache.h"
#include "fleet/fleet.h"
#include "ingest/candidates.h"
#include "ingest/record_json.h"
#include "stages/pipeline.h"
#include "stages/verify.h"
#include "store/pool.h"
#include "store/store.h"

static volatile sig_atomic_t cancel_flag;

void pm_run_cancel(void)
{
	cancel_flag = 1;
}

void pm_run_opts_default(pm_run_opts *o)
{
	memset(o, 0, sizeof *o);
	o->kind = PM_CATALOG_AUTO;
	o->out_dir = "pixmill-out";
	o->pipeline = "thumbnails";
	pm_limits_default(&o->limits);
	pm_fetch_opts_default(&o->fetch);
	/* A batch run waits for an open circuit's probe rather than failing
	 * items at once: a flaky origin should delay a catalog, not send
	 * good items to the dead-letter queue. */
	o->fetch.breaker_wait = true;
	o->durability = PM_SYNC_FILE;
	o->dedup = true;
	o->progress = 2;
	o->progress_interval = 5.0;
}

/* ---- the unit of work ---- */

/* A dedup table entry: one per source hash being processed in this run.
 * Lives while its owner is in flight or duplicates wait on it. */
typedef struct dedup_entry {
	char sha[65];
	int state;	      /* 0 in flight, 1 done, 2 failed */
	pm_status code;	      /* the owner's failure */
	char error[512];      /* the owner's failure message */
	int refs;	      /* duplicates not yet resolved by the writer */
	int owner_done;	      /* the owner's result was committed */
	struct work *waiters; /* duplicates parked until the owner commits */
	struct dedup_entry *next; /* hash chain */
} dedup_entry;

typedef struct work {
	pm_record *rec; /* owned */
	void *src;	/* source bytes (malloc'd), owned until freed */
	size_t src_len;
	double t_start; /* monotonic: when a worker took the item (or when
			   it failed before reaching one); latency is measured
			   from here to its commit, queue waits excluded */
	pm_status status;
	char error[512];
	char sha[65];	  /* the asset key: the source's SHA-256, or for a
			     pipeline that uses the row, pm_row_key of it */
	char src_sha[65]; /* the source's SHA-256 */
	bool have_sha;
	bool duplicate;
	dedup_entry *entry; /* dedup entry this item owns or waits on */
	bool owner;	    /* true if it owns entry */
	pm_header header;
	bool have_header;
	pm_item_ctx ctx;
	char asset_dir[160];
	char ctype[64]; /* Content-Type the origin declared, or "" */
	int attempts;	/* network requests made for it (0: local file) */
	/* http(s): validators sent with a conditional request (from the URL
	 * cache), then those the origin sent back; cond_sha is what the URL
	 * served last time; not_modified: it answered 304 */
	char etag[256];
	char lastmod[64];
	char cond_sha[65];
	bool not_modified;
	bool url_reused; /* bytes (or 304) from an earlier transfer of the
			    same URL in this run (urlcache.h) */
	pm_urlent *uent; /* the URL table entry whose transfer this item
			    owns; the fetch thread's */
	bool needs_own;	 /* waited on a 304 it cannot use: fetch it */
	/* several image candidates, ranked (ingest/candidates.h): the one
	 * being tried is cand[cand_i], also in rec->image */
	pm_candidate cand[PM_MAX_CANDIDATES];
	int n_cand, cand_i;
	json_t *cand_log;  /* [{url, result, reason}], owned */
	char provider[32]; /* the image search provider that supplied the
			      candidates, or "" (the row named them) */
	/* ads: holds_slot: it went to a worker with candidates left and
	 * holds a remote slot, so the fetch thread waits for it in case the
	 * verify stage rejects its image and it comes back (returned) for the
	 * next; placeholder: no image would do, composed with a placeholder;
	 * dlq_retry: it had failed in an earlier run */
	bool holds_slot, returned, placeholder, dlq_retry;
	/* worker mode: the claim this item completes (0: none), its claim
	 * count; lost: put_item said another worker holds it now; requeued:
	 * given back to the queue for a later attempt */
	int64_t queue_id;
	int q_attempts;
	bool lost, requeued;
	struct work *next; /* waiters chain */
} work;

#define DEDUP_BUCKETS 4096
#define LAT_BUCKETS   512

typedef struct run {
	const pm_run_opts *o;
	pm_pipeline *pipe;
	char db_url[PATH_MAX + 64];
	char store_id[17]; /* the fleet cache's name of the store */
	char out_root[PATH_MAX];
	char tmp_dir[PATH_MAX + 256]; /* OUT/.tmp (a worker: OUT/.tmp/ID):
					 emptied at start */
	pm_outstore *outs; /* outputs under out_root, temps in tmp_dir */
	char catalog_abs[PATH_MAX];
	int64_t job_id;
	int run_no;
	int workers;
	/* the image (worker) threads' store connections: a pool of
	 * ceil(workers / 4), each borrowed for one asset lookup and given
	 * back at once (owned here; made before the threads start, freed
	 * after they are joined) */
	pm_store_pool *wpool;
	pm_catalog *cat; /* owned by the ingest thread once it starts */
	/* worker mode (o->queue_job > 0): the lease owner, and the same made
	 * safe for file names (temporary folder, manifest) */
	bool queued;
	char worker[192], worker_file[192];
	double lease_s;
	atomic_llong lost, requeued;
	atomic_int preempted;
	/* claims taken and not yet settled (committed, requeued, lost or
	 * dropped): the ingest thread holds at most two batches, so one
	 * worker does not hoard a job's records */
	pthread_mutex_t cl_mu;
	pthread_cond_t cl_cv;
	int64_t claims_out;

	pm_queue *fetch_q, *work_q, *result_q;
	pm_urlcache *uc; /* in-run URL table; the fetch thread's */

	/* bytes of sources held in memory */
	pthread_mutex_t bytes_mu;
	pthread_cond_t bytes_cv;
	int64_t bytes_inflight, bytes_cap;

	/* memory budget for decoding */
	pthread_mutex_t mem_mu;
	pthread_cond_t mem_cv;
	int64_t mem_used;
	int mem_active;

	/* dedup table */
	pthread_mutex_t dd_mu;
	dedup_entry *dd[DEDUP_BUCKETS];

	/* counters for progress (written by one thread each, read by main) */
	atomic_llong seen, skipped, done, failed, dups, total;
	atomic_llong cache_hits; /* http 304s: unchanged, nothing fetched */
	atomic_llong url_reused; /* http items served by an earlier transfer
				    of the same URL in this run */
	atomic_llong http_items; /* http items done */
	atomic_llong placeholders, bg_removed, bg_skipped, dlq_retries;
	pm_verify_seen *chosen; /* images chosen in this run (verify stage) */
	atomic_int total_known;
	atomic_int writer_done;
	double t0;
	atomic_llong first_done_us;

	/* latency histogram, writer thread only: bucket i holds latencies
	 * in [1.05^i, 1.05^(i+1)) microseconds */
	int64_t lat[LAT_BUCKETS];
	int64_t lat_n;

	atomic_int stop; /* a fatal error: stop reading, drain */
	pm_status fatal; /* first fatal error (store), set once */
	pm_err fatal_err;
	pthread_mutex_t fatal_mu;

	/* http(s) sources: the engine's callback appends finished transfers
	 * here and the fetch thread hands them on to the workers */
	pm_fetch *fe;	     /* created on the first remote item */
	pm_fetch_opts fopts; /* o->fetch, body capped at max_bytes */
	pthread_mutex_t rq_mu;
	pthread_cond_t rq_cv;
	work *rq_head, *rq_tail; /* finished transfers, in order */
	int remote_out;		 /* submitted, not yet handed on */

	/* image searches of this run per provider (o->providers order);
	 * the ingest thread's until it is joined */
	pm_provider_day prov[PM_PROVIDERS_MAX];

	FILE *manifest;
	char manifest_path[PATH_MAX + 256];
	int out_fd; /* for syncfs */
} run;

/* Whether the run should stop reading and drain: a signal (pm_run_cancel),
 * its caller's flag (opts.cancel) or a fatal error. */
static bool stopping(run *r)
{
	return cancel_flag || atomic_load(&r->stop) ||
	       (r->o->cancel && atomic_load(r->o->cancel));
}

static void set_fatal(run *r, pm_status s, const pm_err *e)
{
	pthread_mutex_lock(&r->fatal_mu);
	if (!r->fatal) {
		r->fatal = s;
		r->fatal_err = *e;
	}
	pthread_mutex_unlock(&r->fatal_mu);
	atomic_store(&r->stop, 1);
}

static void work_free(work *w)
{
	if (!w)
		return;
	pm_record_free(w->rec);
	free(w->src);
	pm_item_ctx_clear(&w->ctx);
	pm_candidates_free(w->cand, w->n_cand);
	json_decref(w->cand_log);
	free(w);
}

static void work_fail(work *w, pm_status s, const pm_err *e)
{
	w->status = s;
	snprintf(w->error, sizeof w->error, "%s", e->msg);
}

/* ---- bytes in flight (fetch acquires, workers release) ---- */

static void bytes_acquire(run *r, int64_t n)
{
	pthread_mutex_lock(&r->bytes_mu);
	while (r->bytes_inflight > 0 && r->bytes_inflight + n > r->bytes_cap)
		pthread_cond_wait(&r->bytes_cv, &r->bytes_mu);
	r->bytes_inflight += n;
	pthread_mutex_unlock(&r->bytes_mu);
}

static void bytes_release(run *r, work *w)
{
	if (!w->src)
		return;
	pthread_mutex_lock(&r->bytes_mu);
	r->bytes_inflight -= (int64_t)w->src_len;
	pthread_cond_broadcast(&r->bytes_cv);
	pthread_mutex_unlock(&r->bytes_mu);
	free(w->src);
	w->src = NULL;
}

/* ---- memory budget (workers) ---- */

static void mem_acquire(run *r, int64_t est)
{
	int64_t lim = r->o->memory_limit;

	if (lim <= 0)
		return;
	pthread_mutex_lock(&r->mem_mu);
	/* Wait while the estimate or the real RSS is over the limit, unless
	 * nothing else is running: one image always makes progress. */
	while (r->mem_active > 0 &&
	       (r->mem_used + est > lim || (int64_t)pm_cur_rss() > lim)) {
		pm_cond_wait_ms(&r->mem_cv, &r->mem_mu, 20);
	}
	r->mem_used += est;
	r->mem_active++;
	pthread_mutex_unlock(&r->mem_mu);
}

static void mem_release(run *r, int64_t est)
{
	if (r->o->memory_limit <= 0)
		return;
	pthread_mutex_lock(&r->mem_mu);
	r->mem_used -= est;
	r->mem_active--;
	pthread_cond_broadcast(&r->mem_cv);
	pthread_mutex_unlock(&r->mem_mu);
}

/* ---- dedup table ---- */

static unsigned dd_bucket(const char *sha)
{
	unsigned h = 0;

	for (int i = 0; i < 8; i++)
		h = h * 16 + (unsigned)(sha[i] <= '9' ? sha[i] - '0'
						      : sha[i] - 'a' + 10);
	return h % DEDUP_BUCKETS;
}

static dedup_entry *dd_find(run *r, const char *sha)
{
	for (dedup_entry *e = r->dd[dd_bucket(sha)]; e; e = e->next)
		if (strcmp(e->sha, sha) == 0)
			return e;
	return NULL;
}

/* Caller holds dd_mu. Frees e once nothing refers to it. */
static void dd_maybe_remove(run *r, dedup_entry *e)
{
	dedup_entry **pp;

	if (!e->owner_done || e->refs > 0)
		return;
	for (pp = &r->dd[dd_bucket(e->sha)]; *pp; pp = &(*pp)->next)
		if (*pp == e) {
			*pp = e->next;
			free(e);
			return;
		}
}

/* Worker: claims sha for w. Returns true if another item of this run owns
 * it (w becomes a waiting duplicate). */
static bool dd_claim(run *r, work *w)
{
	dedup_entry *e;
	bool dup = false;

	pthread_mutex_lock(&r->dd_mu);
	e = dd_find(r, w->sha);
	if (e) {
		e->refs++;
		w->entry = e;
		w->owner = false;
		dup = true;
	} else {
		e = calloc(1, sizeof *e);
		if (e) {
			memcpy(e->sha, w->sha, sizeof e->sha);
			unsigned b = dd_bucket(w->sha);
			e->next = r->dd[b];
			r->dd[b] = e;
			w->entry = e;
			w->owner = true;
		}
	}
	pthread_mutex_unlock(&r->dd_mu);
	return dup;
}

/* ---- ingest thread ---- */

static bool is_http(const char *s)
{
	return strncasecmp(s, "http://", 7) == 0 ||
	       strncasecmp(s, "https://", 8) == 0;
}

/* Failures worth another try on the next run (network, memory, store,
 * interruption); the others (bad rows, bad files) fail the same way again
 * and are only redone with --retry-failed. */
static bool transient(pm_status code)
{
	/* RATE, AUTH and BUSY come from outside services (a vision API):
	 * fixed keys or a calmer API make the next run succeed without
	 * --retry-failed. UPSTREAM (a model's unusable answer) is not: the
	 * same image and prompt tend to get the same answer, and each try
	 * is paid for. */
	return code == PM_ERR_IO || code == PM_ERR_NOMEM ||
	       code == PM_ERR_STORE || code == PM_ERR_CANCELLED ||
	       code == PM_ERR_LOCKED || code == PM_ERR_RATE ||
	       code == PM_ERR_AUTH || code == PM_ERR_BUSY;
}

/* Ingest thread: when this URL was fetched before and its asset exists
 * for this pipeline, arms a conditional request (If-None-Match /
 * If-Modified-Since): a 304 then costs no download and no image work. */
static pm_status url_cache_lookup(run *r, pm_store *st, work *w, pm_err *e)
{
	pm_url_info ui;
	bool found = false, exists = false;
	pm_status s;

	/* a 304 names bytes, not a row: for a pipeline that uses the row
	 * the asset key needs the row's text too, so no shortcut */
	if (pm_pipeline_uses_row(r->pipe))
		return PM_OK;
	/* the fleet's cache first (fleet.h): a hit saves the store two
	 * reads; a miss or an outage asks the store */
	if (pm_fleet_cache_url_get(r->store_id, w->rec->image, ui.sha256,
				   ui.etag, sizeof ui.etag, ui.last_modified,
				   sizeof ui.last_modified))
		found = true;
	else {
		s = pm_store_url_get(st, w->rec->image, &ui, &found, e);
		if (s || !found)
			return s;
	}
	exists = pm_fleet_cache_asset_get(r->store_id, ui.sha256,
					  pm_pipeline_hash(r->pipe));
	if (!exists) {
		s = pm_store_asset_exists(
		    st, ui.sha256, pm_pipeline_hash(r->pipe), &exists, e);
		if (s || !exists)
			return s;
	}
	snprintf(w->etag, sizeof w->etag, "%s", ui.etag);
	snprintf(w->lastmod, sizeof w->lastmod, "%s", ui.last_modified);
	memcpy(w->cond_sha, ui.sha256, sizeof w->cond_sha);
	return PM_OK;
}

/* Ingest thread: ranks a row's candidates; rec->image becomes the first
 * to try. */
static void take_candidates(run *r, work *w)
{
	int n = pm_candidates_parse(w->rec->candidates, r->o->min_dimension,
				    w->cand, PM_MAX_CANDIDATES, NULL);
	char *first;

	if (n <= 0)
		return; /* out of memory: the row's first image only */
	first = strdup(w->cand[0].url);
	if (!first) {
		pm_candidates_free(w->cand, n);
		return;
	}
	free(w->rec->image);
	w->rec->image = first;
	w->n_cand = n;
	w->cand_log = json_array();
}

/* Ingest thread: the quota each provider has used today, from the store
 * (so a daily quota holds across runs), and this run's counters. */
static int seed_one(const pm_provider_day *d, void *ud)
{
	run *r = ud;

	for (int i = 0; i < r->o->n_providers; i++)
		if (strcmp(d->provider, pm_provider_name(r->o->providers[i])) ==
		    0)
			pm_provider_seed_quota(r->o->providers[i], d->day,
					       d->requests);
	return 0;
}

static pm_status seed_providers(run *r, pm_store *st, pm_err *e)
{
	int64_t today = pm_provider_today();

	for (int i = 0; i < r->o->n_providers; i++) {
		snprintf(r->prov[i].provider, sizeof r->prov[i].provider, "%s",
			 pm_provider_name(r->o->providers[i]));
		r->prov[i].day = today;
	}
	if (!r->o->n_providers)
		return PM_OK;
	return pm_store_provider_days(st, today, seed_one, r, e);
}

/* Ingest thread: a row that names no image asks the providers in order
 * for candidates; the first that finds any supplies the row's candidate
 * list (ranked like a listed one, fetched in rank order, each URL through
 * the fetch engine and its SSRF guard). A provider that fails, is over
 * quota or finds nothing hands on to the next. When none finds any, the
 * row fails with every provider's reason, and the status of the first
 * passing failure (rate_limited, io_error, unauthorized: a later run
 * tries again), else upstream_error when an answer was unusable (a 4xx,
 * bad JSON), else not_found (every provider answered: nothing). Returns
 * non-PM_OK only for a store failure (fatal). */
static pm_status search_images(run *r, pm_store *st, work *w, pm_err *e)
{
	pm_record *rec = w->rec;
	pm_provider_hit *hits = NULL;
	char why[480] = "", query[256];
	pm_status fail = PM_ERR_NOT_FOUND;
	size_t wl = 0;

	hits = calloc(PM_PROVIDER_MAX_HITS, sizeof *hits);
	if (!hits)
		return pm_fail(e, PM_ERR_NOMEM, "out of memory");
	for (int i = 0; i < r->o->n_providers && !stopping(r); i++) {
		pm_provider *p = r->o->providers[i];
		pm_provider_day d = {0};
		pm_provider_call call;
		pm_err pe = {{0}};
		pm_status ps;
		int n = 0;

		pm_provider_query(p, rec->title, rec->id, rec->category,
				  rec->attrs_json, query, sizeof query);
		if (!query[0]) {
			snprintf(pe.msg, sizeof pe.msg,
				 "%s: nothing to search for (the query's "
				 "fields are empty)",
				 pm_provider_name(p));
			ps = PM_ERR_NOT_FOUND;
			memset(&call, 0, sizeof call);
		} else {
			ps = pm_provider_search(p, query, hits,
						PM_PROVIDER_MAX_HITS, &n, &call,
						&pe);
		}
		d = r->prov[i];
		memset(&r->prov[i], 0, sizeof r->prov[i]);
		snprintf(r->prov[i].provider, sizeof r->prov[i].provider, "%s",
			 d.provider);
		r->prov[i].day = d.day;
		r->prov[i].requests = d.requests + call.requests;
		r->prov[i].found = d.found + (!ps && n > 0);
		r->prov[i].empty = d.empty + (!ps && n == 0 && query[0]);
		r->prov[i].failed = d.failed + (ps != PM_OK && query[0]);
		r->prov[i].results = d.results + n;
		r->prov[i].latency_ms = d.latency_ms + call.latency_ms;
		if (query[0]) {
			pm_provider_day delta = {.day = pm_provider_today(),
						 .requests = call.requests,
						 .found = !ps && n > 0,
						 .empty = !ps && n == 0,
						 .failed = ps != PM_OK,
						 .results = n,
						 .latency_ms = call.latency_ms};
			pm_status ss;
			snprintf(delta.provider, sizeof delta.provider, "%s",
				 d.provider);
			ss = pm_store_provider_add(st, &delta, e);
			if (ss) {
				free(hits);
				return ss;
			}
		}
		if (!ps && n > 0) {
			struct {
				char *p;
				size_t len;
			} b = {0};
			FILE *f = open_memstream(&b.p, &b.len);
			if (!f) {
				free(hits);
				return pm_fail(e, PM_ERR_NOMEM,
					       "out of memory");
			}
			for (int k = 0; k < n; k++) {
				fprintf(f, "%s%s", k ? " | " : "", hits[k].url);
				if (hits[k].width && hits[k].height)
					fprintf(f, " %dx%d", hits[k].width,
						hits[k].height);
				else if (hits[k].width)
					fprintf(f, " %dw", hits[k].width);
			}
			if (fclose(f) || !b.p) {
				free(b.p);
				free(hits);
				return pm_fail(e, PM_ERR_NOMEM,
					       "out of memory");
			}
			free(rec->candidates);
			free(rec->image);
			rec->candidates = b.p; /* the record owns it */
			rec->image = strdup(hits[0].url);
			if (!rec->image) {
				free(hits);
				return pm_fail(e, PM_ERR_NOMEM,
					       "out of memory");
			}
			rec->status = PM_OK;
			rec->error[0] = '\0';
			snprintf(w->provider, sizeof w->provider, "%s",
				 d.provider);
			free(hits);
			return PM_OK;
		}
		if (!ps)
			snprintf(pe.msg, sizeof pe.msg, "%s: no results",
				 d.provider);
		if (ps == PM_ERR_UPSTREAM && fail == PM_ERR_NOT_FOUND)
			fail = ps;
		else if (ps && ps != PM_ERR_NOT_FOUND &&
			 ps != PM_ERR_UPSTREAM &&
			 (fail == PM_ERR_NOT_FOUND || fail == PM_ERR_UPSTREAM))
			fail = ps;
		if (wl < sizeof why)
			wl += (size_t)snprintf(why + wl, sizeof why - wl,
					       "%s%s", wl ? "; " : "", pe.msg);
	}
	free(hits);
	/* the whole reason in the item (w->error), a shorter one in the
	 * record */
	snprintf(w->error, sizeof w->error,
		 "%.80s; the image search found none: %.390s", rec->error, why);
	rec->status = fail;
	snprintf(rec->error, sizeof rec->error, "%.255s", w->error);
	return PM_OK;
}

/* Ingest thread: sends new work item w on its way, the same for catalog
 * records and claims: an image search for a row that names none, its
 * candidates, the URL cache's validators; then a record that failed goes
 * straight to the writer and the rest to the fetch thread. Takes w (freed
 * on every path that does not hand it on). PM_OK: handed on; *closed =
 * the fetch queue is closed (stop reading). Any other status is fatal
 * (the store failed). */
static pm_status ingest_route(run *r, pm_store *st, work *w, bool *closed,
			      pm_err *e)
{
	pm_record *rec = w->rec;
	pm_status s = PM_OK;

	*closed = false;
	w->t_start = pm_now();
	w->ctx.sharpness = NAN;
	if (rec->status != PM_OK && rec->no_image && r->o->n_providers > 0)
		s = search_images(r, st, w, e);
	if (!s && rec->status == PM_OK && rec->candidates)
		take_candidates(r, w);
	if (!s && rec->status == PM_OK && is_http(rec->image))
		s = url_cache_lookup(r, st, w, e);
	if (s) {
		work_free(w);
		return s;
	}
	if (rec->status != PM_OK) {
		w->status = rec->status;
		if (!w->error[0]) /* search_images may have said more */
			snprintf(w->error, sizeof w->error, "%s", rec->error);
		if (pm_queue_push(r->result_q, w))
			work_free(w);
		return PM_OK;
	}
	if (pm_queue_push(r->fetch_q, w)) {
		work_free(w);
		*closed = true;
	}
	return PM_OK;
}

/* Ingest thread: ingest_route for w, or, when w is NULL (its allocation
 * failed), out of memory; an error is made the run's fatal one. Takes w.
 * True when reading should stop: an error, or the fetch queue closed. */
static bool ingest_send(run *r, pm_store *st, work *w)
{
	pm_err e = {{0}};
	pm_status s;
	bool closed = false;

	if (w)
		s = ingest_route(r, st, w, &closed, &e);
	else
		s = pm_fail(&e, PM_ERR_NOMEM, "out of memory");
	if (s)
		set_fatal(r, s, &e);
	return s || closed;
}

/* Ingest thread, local run: reads the catalog and sends each record not
 * done yet (by the store st) down ingest_route. Stops at the catalog's end
 * or on cancel of the run. */
static void ingest_catalog(run *r, pm_store *st)
{
	pm_err e = {{0}};
	pm_status s;

	while (!stopping(r)) {
		pm_record *rec = NULL;
		bool prev_failed = false;
		work *w;

		s = pm_catalog_next(r->cat, &rec, &e);
		if (s) {
			set_fatal(r, s, &e);
			break;
		}
		if (!rec)
			break;
		atomic_fetch_add(&r->seen, 1);
		{ /* malformed rows have keys too: recorded once, not per run */
			pm_item_state state;
			pm_status code;
			s = pm_store_item_state(st, r->job_id, rec->key, &state,
						&code, &e);
			if (s) {
				pm_record_free(rec);
				set_fatal(r, s, &e);
				break;
			}
			if ((state == PM_ITEM_DONE &&
			     !(r->o->refresh && rec->image &&
			       is_http(rec->image))) ||
			    (state == PM_ITEM_FAILED && !r->o->retry_failed &&
			     !transient(code) &&
			     /* no image, no provider then: one now */
			     !(rec->no_image && r->o->n_providers &&
			       code == PM_ERR_CATALOG))) {
				atomic_fetch_add(&r->skipped, 1);
				pm_record_free(rec);
				continue;
			}
			prev_failed = state == PM_ITEM_FAILED;
		}
		w = calloc(1, sizeof *w);
		if (w) {
			w->rec = rec;
			w->dlq_retry = prev_failed;
		} else {
			pm_record_free(rec);
		}
		if (ingest_send(r, st, w))
			break;
	}
}

/* Worker mode: claims after which a record that never got a result (its
 * workers died or lost their leases each time) fails instead of being
 * tried again, so one record that crashes every worker cannot take the
 * fleet down one worker at a time. */
#define QUEUE_MAX_CLAIMS 6

/* Ingest thread, worker mode: the work item for claim c. Its record is
 * decoded from the queue row; one that does not decode (or names another
 * key) becomes a malformed record with the claim's key, which fails like a
 * malformed catalog row. NULL when memory is short. */
static work *claim_work(const pm_claim *c)
{
	work *w = calloc(1, sizeof *w);
	pm_record *rec = NULL;
	pm_err e = {{0}};
	pm_status s;
	const char *key = c->key ? c->key : "";

	if (!w)
		return NULL;
	s = pm_record_from_json(c->record_json,
				c->record_json ? strlen(c->record_json) : 0,
				&rec, &e);
	if (!s && strcmp(rec->key, key) != 0) {
		s = pm_fail(&e, PM_ERR_CATALOG,
			    "queued record: key \"%.60s\" in a queue row of "
			    "key \"%.60s\"",
			    rec->key, key);
		pm_record_free(rec);
		rec = NULL;
	}
	if (s) {
		rec = calloc(1, sizeof *rec);
		if (rec) {
			rec->key = strdup(key);
			rec->attrs_json = strdup("{}");
		}
		if (!rec || !rec->key || !rec->attrs_json) {
			pm_record_free(rec);
			free(w);
			return NULL;
		}
		rec->ordinal = c->ordinal;
		rec->status = s == PM_ERR_NOMEM ? PM_ERR_NOMEM : PM_ERR_CATALOG;
		snprintf(rec->error, sizeof rec->error, "%.255s", e.msg);
	}
	if (rec->status == PM_OK && c->attempts > QUEUE_MAX_CLAIMS) {
		/* a poison record: every worker that took it died on it or
		 * lost its lease; not tried again (dlq retry sends it back) */
		rec->status = PM_ERR_INTERNAL;
		snprintf(
		    rec->error, sizeof rec->error,
		    "claimed %d times without a result: the workers that "
		    "took it died or lost their lease (see status --item); "
		    "not tried again",
		    c->attempts - 1);
	}
	w->rec = rec;
	w->queue_id = c->queue_id;
	w->q_attempts = c->attempts;
	return w;
}

/* Ingest thread, worker mode: whether to stop claiming this job because
 * the queue's next job is another one of higher priority. */
static bool preempt_check(run *r, pm_store *st)
{
	int64_t next = 0;
	int prio = 0;
	pm_err e = {{0}};

	if (pm_store_queue_next(st, &next, &prio, &e))
		return false; /* the claim will say whether the store is ok */
	if (next > 0 && next != r->job_id && prio > r->o->queue_priority) {
		pm_log(PM_LOG_INFO,
		       "job %lld: job %lld of priority %d is waiting: "
		       "stopping claims of this one (priority %d)",
		       (long long)r->job_id, (long long)next, prio,
		       r->o->queue_priority);
		atomic_store(&r->preempted, 1);
		return true;
	}
	return false;
}

/* Ingest thread, worker mode: whether the job was cancelled (serve's
 * DELETE /api/jobs/ID); asked at most every 5 s (*next_check). */
static bool cancel_check(run *r, pm_store *st, double *next_check)
{
	char state[32];
	pm_err e = {{0}};

	if (pm_now() < *next_check)
		return false;
	*next_check = pm_now() + 5.0;
	if (pm_store_job_state_of(st, r->job_id, state, sizeof state, &e))
		return false; /* the claim will say whether the store is ok */
	if (strcmp(state, "cancelled") && strcmp(state, "cancelling"))
		return false;
	pm_log(PM_LOG_INFO, "job %lld was cancelled: no more claims of it",
	       (long long)r->job_id);
	return true;
}

/* Ingest thread, worker mode: claims batches of the job's records and
 * sends each down the same path as a catalog's (the resume check is the
 * queue's: a queued row is never a done item). Stops when a claim comes
 * back empty, when a job of higher priority waits, when the job is
 * cancelled, or on cancel of the run. */
static void ingest_queue(run *r, pm_store *st)
{
	pm_err e = {{0}};
	pm_status s;
	int batch = r->o->claim_batch > 0 ? r->o->claim_batch : 4 * r->workers;
	double next_check = pm_now() + 5.0;

	while (!stopping(r) && !preempt_check(r, st) &&
	       !cancel_check(r, st, &next_check)) {
		pm_claim *c = NULL;
		int n = 0, i;

		pthread_mutex_lock(&r->cl_mu);
		while (r->claims_out + batch > 2 * batch && !stopping(r))
			pm_cond_wait_ms(&r->cl_cv, &r->cl_mu, 100);
		pthread_mutex_unlock(&r->cl_mu);
		if (stopping(r))
			break;
		s = pm_store_claim(st, r->job_id, r->worker, batch, r->lease_s,
				   &c, &n, &e);
		if (s) {
			set_fatal(r, s, &e);
			break;
		}
		if (n == 0) {
			/* a cancel deletes the queued rows: say so if that
			 * is why */
			next_check = 0;
			cancel_check(r, st, &next_check);
			pm_claims_free(c, n);
			break;
		}
		pthread_mutex_lock(&r->cl_mu);
		r->claims_out += n;
		pthread_mutex_unlock(&r->cl_mu);
		pm_metric_inc(PM_M_WORKER_CLAIMS, NULL, NULL, n);
		for (i = 0; i < n; i++) {
			atomic_fetch_add(&r->seen, 1);
			if (ingest_send(r, st, claim_work(&c[i])))
				break;
		}
		pm_claims_free(c, n);
		if (i < n)
			break;
	}
}

/* Ingest thread: with its own store connection (owned here), the run's
 * providers seeded in it, it feeds the stages after it from the catalog
 * (ingest_catalog) or, in worker mode, from the queue's claims
 * (ingest_queue); then it closes the connection and the fetch queue, so
 * those stages drain and end. */
static void *ingest_main(void *arg)
{
	run *r = arg;
	pm_store *st = NULL;
	pm_err e = {{0}};
	pm_status s = pm_store_open(r->db_url, false, &st, &e);

	if (!s)
		s = seed_providers(r, st, &e);
	if (s)
		set_fatal(r, s, &e);
	else if (r->queued)
		ingest_queue(r, st);
	else
		ingest_catalog(r, st);
	pm_store_close(st);
	pm_queue_close(r->fetch_q);
	return NULL;
}

/* ---- counter thread: counts records so progress can show an ETA ---- */

static void *count_main(void *arg)
{
	run *r = arg;
	pm_catalog_opts co = {.kind = r->o->kind,
			      .folder_all_files = r->o->all_files};
	pm_catalog *c = NULL;
	pm_record *rec;
	pm_err e;
	long long n = 0;

	if (pm_catalog_open(r->catalog_abs, &co, &c, &e))
		return NULL;
	while (!stopping(r) && pm_catalog_next(c, &rec, &e) == PM_OK && rec) {
		n++;
		pm_record_free(rec);
		if ((n & 1023) == 0)
			atomic_store(&r->total, n);
	}
	pm_catalog_close(c);
	if (!stopping(r)) {
		atomic_store(&r->total, n);
		atomic_store(&r->total_known, 1);
	}
	return NULL;
}

/* ---- fetch thread ---- */

static bool is_url(const char *s)
{
	const char *p = strstr(s, "://");

	if (!p || p == s)
		return false;
	for (const char *q = s; q < p; q++)
		if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') ||
		      (*q >= '0' && *q <= '9') || *q == '+' || *q == '-' ||
		      *q == '.'))
			return false;
	return true;
}

/* Remote items submitted and not yet handed on to the workers. Bounds the
 * finished-but-waiting list, hence the memory of downloaded bodies. */
#define REMOTE_WINDOW 128

/* Any thread: appends w to the list the fetch thread hands on (finished
 * transfers, items workers send back) and wakes it. */
static void rq_append(run *r, work *w)
{
	pthread_mutex_lock(&r->rq_mu);
	w->next = NULL;
	if (r->rq_tail)
		r->rq_tail->next = w;
	else
		r->rq_head = w;
	r->rq_tail = w;
	pthread_cond_broadcast(&r->rq_cv);
	pthread_mutex_unlock(&r->rq_mu);
}

/* Fetch engine thread: must return quickly (every transfer waits). Takes
 * the body (ownership moves to the work item). */
static void fetch_done(pm_fetch_result *res, void *ud)
{
	run *r = ud;
	work *w = res->ud;

	w->attempts = res->attempts;
	if (res->status) {
		w->status = res->status;
		snprintf(w->error, sizeof w->error, "%s%s%s",
			 res->error ? res->error : "fetch failed",
			 res->history && res->attempts > 1 ? "; attempts: "
							   : "",
			 res->history && res->attempts > 1 ? res->history : "");
	} else if (res->not_modified) {
		w->not_modified = true; /* same bytes as cond_sha */
		if (res->etag)
			snprintf(w->etag, sizeof w->etag, "%s", res->etag);
	} else {
		w->src = res->body;
		w->src_len = res->len;
		res->body = NULL;
		snprintf(w->ctype, sizeof w->ctype, "%s",
			 res->content_type ? res->content_type : "");
		snprintf(w->etag, sizeof w->etag, "%s",
			 res->etag ? res->etag : "");
		snprintf(w->lastmod, sizeof w->lastmod, "%s",
			 res->last_modified ? res->last_modified : "");
	}
	rq_append(r, w);
}

static bool cand_advance(run *r, work *w, bool from_remote);
static bool submit_remote(run *r, work *w);
static void take_back(run *r, work *w);

static void bytes_add(run *r, size_t n)
{
	pthread_mutex_lock(&r->bytes_mu);
	r->bytes_inflight += (int64_t)n;
	pthread_mutex_unlock(&r->bytes_mu);
}

static bool wants_placeholder(const run *r, const work *w);
static void slot_release(run *r, work *w);

/* Fetch thread: w is ready (bytes in, or failed): on to a worker, or to
 * the writer when it failed (unless the pipeline makes a placeholder of
 * it). An item with candidates left holds a remote slot while a worker
 * has it: the verify stage may send it back for the next. */
static void push_on(run *r, work *w)
{
	bool to_worker = !w->status || wants_placeholder(r, w);

	if (to_worker && !w->status && w->cand_i + 1 < w->n_cand) {
		pthread_mutex_lock(&r->rq_mu);
		r->remote_out++;
		pthread_mutex_unlock(&r->rq_mu);
		w->holds_slot = true;
	}
	if (pm_queue_push(to_worker ? r->work_q : r->result_q, w)) {
		slot_release(r, w);
		bytes_release(r, w);
		work_free(w);
	}
}

enum { ROUTE_FETCH, ROUTE_WAIT, ROUTE_READY };

/* Fetch thread: looks w's http URL up in the run's URL table.
 * ROUTE_FETCH: w goes to the network (w->uent is set when it owns the
 * URL's entry); ROUTE_WAIT: a transfer of that URL is in flight and w
 * comes back through its owner (url_settle); ROUTE_READY: w holds the
 * bytes of an earlier transfer, or its 304. */
static int url_route(run *r, work *w)
{
	pm_urlc_result hit;
	pm_urlent *ent = NULL;

	if (!r->uc)
		return ROUTE_FETCH;
	switch (pm_urlcache_get(r->uc, w->rec->image, w, &ent, &hit)) {
	case PM_URLC_WAIT:
		return ROUTE_WAIT;
	case PM_URLC_BODY:
		w->src = hit.body; /* ownership moves to w */
		w->src_len = hit.len;
		memcpy(w->ctype, hit.ctype, sizeof w->ctype);
		memcpy(w->etag, hit.etag, sizeof w->etag);
		memcpy(w->lastmod, hit.lastmod, sizeof w->lastmod);
		w->url_reused = true;
		bytes_add(r, w->src_len);
		return ROUTE_READY;
	case PM_URLC_NOT_MODIFIED:
		if (!w->cond_sha[0])
			return ROUTE_FETCH; /* nothing to be "not modified" to
					     */
		w->not_modified = true;
		w->url_reused = true;
		return ROUTE_READY;
	case PM_URLC_MISS:
		w->uent = ent;
		return ROUTE_FETCH;
	}
	return ROUTE_FETCH;
}

/* Fetch thread: d waited on o's transfer of the same URL; d takes a copy
 * of its outcome (the bytes, the 304, or the failure). Returns true when
 * d needs a request of its own instead (a 304 it has nothing to compare
 * with). */
static bool take_outcome(run *r, work *d, const work *o)
{
	pm_err e = {{0}};

	if (o->status) {
		d->status = o->status;
		snprintf(d->error, sizeof d->error, "%s", o->error);
	} else if (o->not_modified) {
		if (!d->cond_sha[0])
			return true;
		d->not_modified = true;
		d->url_reused = true;
	} else if (!(d->src = malloc(o->src_len ? o->src_len : 1))) {
		work_fail(d, pm_fail(&e, PM_ERR_NOMEM, "out of memory"), &e);
	} else {
		memcpy(d->src, o->src, o->src_len);
		d->src_len = o->src_len;
		memcpy(d->ctype, o->ctype, sizeof d->ctype);
		memcpy(d->etag, o->etag, sizeof d->etag);
		memcpy(d->lastmod, o->lastmod, sizeof d->lastmod);
		d->url_reused = true;
		bytes_add(r, d->src_len);
	}
	return false;
}

/* Fetch thread: w's transfer of a URL it owns in the URL table ended (w
 * holds the bytes, the 304 or the failure): the table keeps the outcome
 * and every item waiting on it takes a copy. The waiters come back in
 * *out (malloc'd, the caller's; see waiters_on), to go on after w, so the
 * first row of a URL stays the one that does the work. */
static int url_settle(run *r, work *w, void ***out)
{
	pm_urlc_result res = {0};
	int n;

	*out = NULL;
	if (!w->uent)
		return 0;
	res.body = w->src;
	res.len = w->src_len;
	memcpy(res.ctype, w->ctype, sizeof res.ctype);
	memcpy(res.etag, w->etag, sizeof res.etag);
	memcpy(res.lastmod, w->lastmod, sizeof res.lastmod);
	n = pm_urlcache_finish(r->uc, w->uent, w->status == PM_OK,
			       w->not_modified, w->src ? &res : NULL, out);
	w->uent = NULL;
	for (int i = 0; i < n; i++)
		if (take_outcome(r, (*out)[i], w))
			((work *)(*out)[i])->needs_own = true;
	return n;
}

/* Fetch thread: the waiters url_settle returned go on (they hold no
 * remote slot); frees the array. */
static void waiters_on(run *r, void **ws, int n)
{
	for (int i = 0; i < n; i++) {
		work *d = ws[i];
		if (d->needs_own) {
			d->needs_own = false;
			if (submit_remote(r, d))
				continue; /* its own request, its own slot */
		} else if (d->n_cand > 1 && cand_advance(r, d, false))
			continue;
		push_on(r, d);
	}
	free(ws);
}

/* Fetch thread: passes finished transfers on (blocking on a full work
 * queue is fine here: the engine's thread never waits for us). */
static void hand_on(run *r)
{
	work *list, *w;

	pthread_mutex_lock(&r->rq_mu);
	list = r->rq_head;
	r->rq_head = r->rq_tail = NULL;
	pthread_mutex_unlock(&r->rq_mu);
	while ((w = list)) {
		list = w->next;
		w->next = NULL;
		void **ws;
		int n;

		if (w->returned) {
			take_back(r, w);
			continue;
		}
		if (w->src)
			bytes_add(r, w->src_len);
		n = url_settle(r, w, &ws);
		if (w->n_cand > 1 && cand_advance(r, w, true)) {
			/* the next candidate is in flight */
			waiters_on(r, ws, n);
			continue;
		}
		push_on(r, w);
		pthread_mutex_lock(&r->rq_mu);
		r->remote_out--;
		pthread_cond_broadcast(&r->rq_cv);
		pthread_mutex_unlock(&r->rq_mu);
		waiters_on(r, ws, n);
	}
}

/* Fetch thread: waits until the remote window has room (handing on
 * finished transfers meanwhile) and takes a slot. */
static void remote_slot(run *r)
{
	pthread_mutex_lock(&r->rq_mu);
	while (r->remote_out >= REMOTE_WINDOW) {
		if (r->rq_head) {
			pthread_mutex_unlock(&r->rq_mu);
			hand_on(r);
			pthread_mutex_lock(&r->rq_mu);
			continue;
		}
		pthread_cond_wait(&r->rq_cv, &r->rq_mu);
	}
	r->remote_out++;
	pthread_mutex_unlock(&r->rq_mu);
}

/* Fetch thread: a remote item goes to the engine; its result comes back
 * through fetch_done. Returns false if it failed at once (w->status). */
static bool submit_remote(run *r, work *w)
{
	pm_err e = {{0}};
	pm_status s = PM_OK;
	pm_fetch_req req = {
	    .url = w->rec->image,
	    .etag = w->cond_sha[0] && w->etag[0] ? w->etag : NULL,
	    .last_modified =
		w->cond_sha[0] && w->lastmod[0] ? w->lastmod : NULL,
	    .ud = w,
	};

	if (!r->fe)
		s = pm_fetch_new(&r->fopts, fetch_done, r, &r->fe, &e);
	if (!s) {
		remote_slot(r);
		s = pm_fetch_submit(r->fe, &req, &e);
		if (s) {
			pthread_mutex_lock(&r->rq_mu);
			r->remote_out--;
			pthread_mutex_unlock(&r->rq_mu);
		}
	}
	if (s) {
		void **ws;
		work_fail(w, s, &e);
		/* nobody can be waiting yet, but the entry must go */
		waiters_on(r, ws, url_settle(r, w, &ws));
	}
	return s == PM_OK;
}

static pm_status read_local(run *r, work *w, pm_err *e)
{
	const char *src = w->rec->image;
	struct stat sb;
	int64_t want = 0;
	pm_status s;

	if (stat(src, &sb) == 0 && S_ISREG(sb.st_mode) &&
	    (uint64_t)sb.st_size <= r->o->limits.max_bytes)
		want = sb.st_size;
	bytes_acquire(r, want);
	s = pm_read_file(src, r->o->limits.max_bytes, &w->src, &w->src_len, e);
	/* Account for what was really read. */
	pthread_mutex_lock(&r->bytes_mu);
	r->bytes_inflight += (int64_t)w->src_len - want;
	pthread_cond_broadcast(&r->bytes_cv);
	pthread_mutex_unlock(&r->bytes_mu);
	return s;
}

/* Fetch thread: starts on w's current source. True if it went to the
 * network (the result comes back through fetch_done); false if w is ready:
 * its bytes are read, or w->status says why not. */
static bool start_source(run *r, work *w)
{
	pm_err e = {{0}};
	const char *src = w->rec->image;
	pm_status s;

	if (is_http(src)) {
		int route = url_route(r, w);
		if (route == ROUTE_WAIT)
			return true;
		if (route == ROUTE_READY)
			return false;
		return submit_remote(r, w);
	}
	if (is_url(src)) {
		const char *colon = strchr(src, ':');
		s = pm_fail(&e, PM_ERR_UNSUPPORTED,
			    "URL scheme \"%.*s\" is not supported "
			    "(http, https, file and local paths are)",
			    (int)(colon - src), src);
		work_fail(w, s, &e);
		return false;
	}
	s = read_local(r, w, &e);
	if (s)
		work_fail(w, s, &e);
	return false;
}

/* Whether w's current candidate will do: fetched, a decodable image
 * within the limits, and at least --min-dimension on its short edge.
 * Else *code and reason say why not. */
static bool cand_ok(run *r, work *w, pm_status *code, char *reason, size_t size)
{
	pm_header h;
	pm_err e = {{0}};
	pm_status s;
	int mn;

	if (w->status) {
		*code = w->status;
		snprintf(reason, size, "%.380s", w->error);
		return false;
	}
	if (w->not_modified)
		return true;
	s = pm_image_probe(w->src, w->src_len, &r->o->limits, &h, &e);
	if (s) {
		*code = s;
		snprintf(reason, size, "%.380s", e.msg);
		return false;
	}
	mn = h.width < h.height ? h.width : h.height;
	if (r->o->min_dimension > 0 && mn < r->o->min_dimension) {
		*code = PM_ERR_TOO_SMALL;
		snprintf(reason, size, "%dx%d is under --min-dimension %d",
			 h.width, h.height, r->o->min_dimension);
		return false;
	}
	return true;
}

/* w moves on to its next candidate, from a clean slate. False (and
 * w->status) when memory is short. */
static bool cand_step(work *w)
{
	pm_err e = {{0}};

	w->cand_i++;
	free(w->rec->image);
	w->rec->image = strdup(w->cand[w->cand_i].url);
	w->status = PM_OK;
	w->error[0] = w->ctype[0] = w->etag[0] = w->lastmod[0] = 0;
	w->cond_sha[0] = 0;
	w->not_modified = false;
	if (!w->rec->image) {
		work_fail(w, pm_fail(&e, PM_ERR_NOMEM, "out of memory"), &e);
		return false;
	}
	return true;
}

static void cand_note(work *w, int i, const char *result, const char *why)
{
	json_t *o =
	    json_pack("{s:s,s:s}", "url", w->cand[i].url, "result", result);

	if (!o)
		return;
	if (why)
		json_object_set_new(o, "reason", json_string(why));
	if (w->cand[i].width)
		json_object_set_new(o, "width_hint",
				    json_integer(w->cand[i].width));
	if (w->provider[0])
		json_object_set_new(o, "provider", json_string(w->provider));
	json_array_append_new(w->cand_log, o);
}

/* Fetch thread: judges w's current candidate once its bytes (or failure)
 * are in. The first that will do is kept (the rest are not fetched); a
 * rejected one makes way for the next. Returns true when the next went to
 * the network: its result comes back through fetch_done, in the remote
 * slot w already holds when from_remote. False: w is ready to go on, done
 * or failed (w->status). */
static bool cand_advance(run *r, work *w, bool from_remote)
{
	for (;;) {
		char reason[400];
		pm_status code = PM_OK;
		pm_err e = {{0}};

		if (cand_ok(r, w, &code, reason, sizeof reason)) {
			cand_note(w, w->cand_i, "chosen", NULL);
			for (int i = w->cand_i + 1; i < w->n_cand; i++)
				cand_note(w, i, "untried", NULL);
			return false;
		}
		cand_note(w, w->cand_i, "rejected", reason);
		bytes_release(r, w);
		if (w->cand_i + 1 >= w->n_cand) {
			w->status = code;
			snprintf(w->error, sizeof w->error,
				 "none of the %d image candidates will do; "
				 "the last: %.400s",
				 w->n_cand, reason);
			return false;
		}
		if (!cand_step(w))
			return false;
		if (from_remote && is_http(w->rec->image)) {
			/* Keeps the remote slot it holds, unless it waits on
			 * another item's transfer of the same URL. */
			pm_fetch_req req = {.url = w->rec->image, .ud = w};
			pm_status s;
			int route = url_route(r, w);

			if (route == ROUTE_READY)
				continue; /* judged at the top */
			if (route == ROUTE_WAIT) {
				pthread_mutex_lock(&r->rq_mu);
				r->remote_out--;
				pthread_cond_broadcast(&r->rq_cv);
				pthread_mutex_unlock(&r->rq_mu);
				return true;
			}
			s = pm_fetch_submit(r->fe, &req, &e);
			if (!s)
				return true;
			work_fail(w, s, &e);
			{
				void **ws;
				waiters_on(r, ws, url_settle(r, w, &ws));
			}
			continue;
		}
		if (start_source(r, w))
			return true;
	}
}

/* Fetch thread: w came back from a worker, whose verify stage rejected
 * its image (the candidate log says why); on to its next candidate, with
 * the same early termination as cand_advance. */
static void take_back(run *r, work *w)
{
	w->returned = false;
	slot_release(r, w);
	if (cand_step(w) && (start_source(r, w) || cand_advance(r, w, false)))
		return; /* in flight */
	push_on(r, w);
}

static void *fetch_main(void *arg)
{
	run *r = arg;
	work *w;
	bool cancelled = false;
	int64_t keep = r->o->url_cache_bytes;

	/* Without the table (out of memory) every row fetches its own. */
	r->uc = pm_urlcache_new(keep < 0 ? 0 : keep ? keep : 64ll << 20, 65536);

	for (;;) {
		hand_on(r);
		if (stopping(r) && r->fe && !cancelled) {
			pm_fetch_cancel(
			    r->fe); /* results come back cancelled */
			cancelled = true;
		}
		w = pm_queue_pop_timeout(r->fetch_q, 20);
		if (!w) {
			if (pm_queue_done(r->fetch_q))
				break;
			continue;
		}
		w->t_start = pm_now();
		if (start_source(r, w))
			continue;
		if (w->n_cand > 1 && cand_advance(r, w, false))
			continue;
		push_on(r, w);
	}
	/* Wait for every transfer, handing results on as they finish. */
	pthread_mutex_lock(&r->rq_mu);
	while (r->remote_out > 0) {
		if (!r->rq_head) {
			if (stopping(r) && r->fe && !cancelled) {
				pthread_mutex_unlock(&r->rq_mu);
				pm_fetch_cancel(r->fe);
				cancelled = true;
				pthread_mutex_lock(&r->rq_mu);
				continue;
			}
			pm_cond_wait_ms(&r->rq_cv, &r->rq_mu, 50);
			continue;
		}
		pthread_mutex_unlock(&r->rq_mu);
		hand_on(r);
		pthread_mutex_lock(&r->rq_mu);
	}
	pthread_mutex_unlock(&r->rq_mu);
	if (r->fe) {
		pm_fetch_close(r->fe);
		pm_fetch_free(r->fe);
		r->fe = NULL;
	}
	if (r->uc) {
		pm_urlc_stats us;
		pm_urlcache_stats(r->uc, &us);
		pm_log(PM_LOG_DEBUG,
		       "URL table: %lld lookups, %lld merged into a transfer "
		       "in flight, %lld bodies and %lld 304s reused, %lld "
		       "bytes kept at the end",
		       (long long)us.lookups, (long long)us.coalesced,
		       (long long)us.body_hits, (long long)us.nm_hits,
		       (long long)us.kept_bytes);
		pm_urlcache_free(r->uc);
		r->uc = NULL;
	}
	pm_queue_close(r->work_q);
	return NULL;
}

/* ---- workers ---- */

typedef struct worker_arg {
	run *r;
	int idx;
} worker_arg;

/* Whether a declared Content-Type may hold an image: image/..., or the
 * generic binary types servers use when they do not know. */
static bool declared_image(const char *ctype)
{
	return strncasecmp(ctype, "image/", 6) == 0 ||
	       strncasecmp(ctype, "application/octet-stream", 24) == 0 ||
	       strncasecmp(ctype, "binary/", 7) == 0;
}

/* ---- ads: rejected candidates and placeholders ---- */

/* Any thread: gives back the remote slot w holds (push_on), waking the
 * fetch thread, which waits for every slot before it ends. */
static void slot_release(run *r, work *w)
{
	if (!w->holds_slot)
		return;
	w->holds_slot = false;
	pthread_mutex_lock(&r->rq_mu);
	r->remote_out--;
	pthread_cond_broadcast(&r->rq_cv);
	pthread_mutex_unlock(&r->rq_mu);
}

/* Failures that say the image will not do, for good (not the network's
 * passing trouble, not the row's text). */
static bool image_failure(pm_status s)
{
	return s == PM_ERR_NOT_FOUND || s == PM_ERR_UNSUPPORTED ||
	       s == PM_ERR_TOO_LARGE || s == PM_ERR_DECODE ||
	       s == PM_ERR_MISMATCH || s == PM_ERR_TOO_SMALL ||
	       s == PM_ERR_REJECTED;
}

/* Whether failed w becomes a placeholder: its pipeline composes one (a
 * compose stage) and no image of the row will do. */
static bool wants_placeholder(const run *r, const work *w)
{
	return pm_pipeline_placeholders(r->pipe) && image_failure(w->status) &&
	       !w->duplicate;
}

/* Worker: the candidate log's entry for w's current candidate, noted
 * "chosen" by the fetch thread, becomes "rejected" with the verify
 * stage's reason and facts; the "untried" ones after it go (the fetch
 * thread notes them again). */
static void cand_reject_note(work *w)
{
	json_t *o, *facts;

	if (!w->cand_log)
		return;
	while (json_array_size(w->cand_log) > (size_t)w->cand_i)
		json_array_remove(w->cand_log,
				  json_array_size(w->cand_log) - 1);
	o = json_pack("{s:s,s:s,s:s}", "url", w->cand[w->cand_i].url, "result",
		      "rejected", "reason", w->error);
	facts = w->ctx.meta ? json_object_get(w->ctx.meta, "verify") : NULL;
	if (o && facts)
		json_object_set(o, "verify", facts);
	if (o)
		json_array_append_new(w->cand_log, o);
}

/* Worker: w's image was rejected by the verify stage; when it has
 * candidates left (it holds a slot), it goes back to the fetch thread for
 * the next one and true is returned. Its dedup claim on the rejected
 * image is dropped, unless other items wait on it: then it ends here. */
static bool send_back(run *r, work *w)
{
	if (w->status != PM_ERR_REJECTED)
		return false;
	cand_reject_note(w);
	if (!w->holds_slot)
		return false;
	if (w->entry) {
		dedup_entry *e = w->entry, **pp;
		bool waited = false;
		pthread_mutex_lock(&r->dd_mu);
		if (e->refs > 0)
			waited = true;
		else
			for (pp = &r->dd[dd_bucket(e->sha)]; *pp;
			     pp = &(*pp)->next)
				if (*pp == e) {
					*pp = e->next;
					free(e);
					break;
				}
		pthread_mutex_unlock(&r->dd_mu);
		if (waited)
			return false;
		w->entry = NULL;
		w->owner = false;
	}
	bytes_release(r, w);
	pm_item_ctx_clear(&w->ctx);
	memset(&w->header, 0, sizeof w->header);
	w->have_sha = w->have_header = w->duplicate = false;
	w->returned = true;
	rq_append(r, w);
	return true;
}

/* Worker: no image of w's row will do (w->status says why): the pipeline's
 * placeholder stages (compose) run without an image, and the item is done
 * with meta "placeholder": {"code", "reason"} (and the rejected image's
 * "verify" facts when there was one). Its asset is keyed on the row's text
 * alone. */
static void run_placeholder(run *r, pm_pipeline_run *pr, work *w)
{
	static const char none[65] =
	    "0000000000000000000000000000000000000000000000000000000000000000";
	json_t *facts, *vf;
	char why[600], dir[4600];
	pm_err e = {{0}};
	pm_status s;

	if (w->n_cand > 1 && strncmp(w->error, "none of", 7) != 0)
		snprintf(why, sizeof why,
			 "none of the %d image candidates will do; the last: "
			 "%.500s",
			 w->n_cand, w->error);
	else
		snprintf(why, sizeof why, "%s", w->error);
	facts = json_pack("{s:s,s:s}", "code", pm_status_code(w->status),
			  "reason", why);
	vf = w->ctx.meta ? json_object_get(w->ctx.meta, "verify") : NULL;
	if (facts && vf)
		json_object_set(facts, "verify", vf);
	bytes_release(r, w);
	pm_item_ctx_clear(&w->ctx);
	memset(&w->header, 0, sizeof w->header);
	w->have_header = false;
	w->status = PM_OK;
	w->error[0] = 0;
	pm_ctx_set_row(&w->ctx, w->rec->title, w->rec->price,
		       w->rec->attrs_json);
	memcpy(w->src_sha, none, sizeof w->src_sha);
	pm_row_key(none, &w->ctx, w->sha);
	w->have_sha = true;
	snprintf(w->asset_dir, sizeof w->asset_dir, "%.2s/%.2s/%s-%.12s",
		 w->sha, w->sha + 2, w->sha, pm_pipeline_hash(r->pipe));
	snprintf(dir, sizeof dir, "%s/%s", r->out_root, w->asset_dir);
	s = pm_mkdirs(dir, &e);
	if (!s && !(w->ctx.meta = json_object()))
		s = pm_fail(&e, PM_ERR_NOMEM, "out of memory");
	if (s) {
		json_decref(facts);
		work_fail(w, s, &e);
		return;
	}
	json_object_set_new(w->ctx.meta, "placeholder", facts);
	w->ctx.sha256 = w->src_sha;
	w->ctx.header = &w->header;
	w->ctx.image = NULL;
	w->ctx.placeholder = true;
	w->ctx.out_root = r->out_root;
	w->ctx.asset_dir = w->asset_dir;
	w->ctx.outs = r->outs;
	w->ctx.sync = r->o->durability == PM_SYNC_FILE;
	s = pm_pipeline_run_item(pr, &w->ctx, &e);
	if (s)
		work_fail(w, s, &e);
	else
		w->placeholder = true;
}

/* Runs the pipeline on w; w->status says how it went. */
static void process_one(run *r, pm_pipeline_run *pr, work *w)
{
	pm_err e = {{0}};
	pm_status s;
	VipsImage *im = NULL;
	char dir[4600];
	int64_t est = 0;
	int edge = pm_pipeline_decode_size(r->pipe);

	if (w->not_modified) {
		/* 304: the bytes are the ones recorded for this URL, whose
		 * asset exists (the ingest thread checked): a cache hit. */
		memcpy(w->sha, w->cond_sha, sizeof w->sha);
		w->have_sha = true;
		w->duplicate = true;
		return;
	}
	pm_sha256_hex(w->src, w->src_len, w->sha);
	memcpy(w->src_sha, w->sha, sizeof w->sha);
	pm_ctx_set_row(&w->ctx, w->rec->title, w->rec->price,
		       w->rec->attrs_json);
	if (pm_pipeline_uses_row(r->pipe))
		/* outputs depend on the row's text too (compose): the asset,
		 * its dedup and its folder are keyed on both, so rows that
		 * share an image but not their text get their own ads */
		pm_row_key(w->src_sha, &w->ctx, w->sha);
	w->have_sha = true;
	if (r->o->dedup) {
		bool exists = false;
		if (dd_claim(r, w)) {
			w->duplicate = true; /* the writer resolves it */
			return;
		}
		exists = pm_fleet_cache_asset_get(r->store_id, w->sha,
						  pm_pipeline_hash(r->pipe));
		s = PM_OK;
		if (!exists) {
			/* borrowed for this one lookup: the image work
			 * around it needs no connection */
			pm_store *st = NULL;
			s = pm_store_pool_get(r->wpool, -1, &st, &e);
			if (s)
				set_fatal(r, s, &e); /* as a failed open was */
			else
				s = pm_store_asset_exists(
				    st, w->sha, pm_pipeline_hash(r->pipe),
				    &exists, &e);
			pm_store_pool_put(r->wpool, st, false);
		}
		if (s) {
			work_fail(w, s, &e);
			return;
		}
		if (exists) {
			w->duplicate = true; /* done in an earlier run */
			return;
		}
	}
	s = pm_image_probe(w->src, w->src_len, &r->o->limits, &w->header, &e);
	w->have_header = w->header.format != PM_FMT_UNKNOWN && s == PM_OK;
	if (s == PM_ERR_UNSUPPORTED && w->ctype[0] && !declared_image(w->ctype))
		s = pm_fail(&e, PM_ERR_MISMATCH,
			    "the origin sent %.40s, not an image (%s)",
			    w->ctype,
			    pm_format_name(pm_sniff(w->src, w->src_len)));
	if (!s && r->o->min_dimension > 0) {
		int a = w->header.width, b = w->header.height;
		if ((a < b ? a : b) < r->o->min_dimension)
			s = pm_fail(&e, PM_ERR_TOO_SMALL,
				    "%dx%d is under --min-dimension %d", a, b,
				    r->o->min_dimension);
	}
	if (s) {
		work_fail(w, s, &e);
		return;
	}
	if (!pm_pipeline_needs_pixels(r->pipe))
		return;
	/* The decoded image, the resizes of it and the encoded outputs. */
	if (edge <= 0) /* any size: the image's own */
		edge = w->header.width > w->header.height ? w->header.width
							  : w->header.height;
	est = (int64_t)w->src_len + (int64_t)edge * edge * 4 * 3 + (8 << 20);
	mem_acquire(r, est);
	s = pm_image_decode(w->src, w->src_len, edge, r->o->keep_meta, &im, &e);
	if (s)
		goto out;
	snprintf(w->asset_dir, sizeof w->asset_dir, "%.2s/%.2s/%s-%.12s",
		 w->sha, w->sha + 2, w->sha, pm_pipeline_hash(r->pipe));
	snprintf(dir, sizeof dir, "%s/%s", r->out_root, w->asset_dir);
	s = pm_mkdirs(dir, &e);
	if (s)
		goto out;
	w->ctx.src = w->src;
	w->ctx.src_len = w->src_len;
	w->ctx.sha256 = w->src_sha;
	w->ctx.header = &w->header;
	w->ctx.image = im;
	w->ctx.out_root = r->out_root;
	w->ctx.asset_dir = w->asset_dir;
	w->ctx.outs = r->outs;
	w->ctx.sync = r->o->durability == PM_SYNC_FILE;
	w->ctx.keep_meta = r->o->keep_meta;
	w->ctx.seen = r->chosen;
	w->ctx.row_key = w->rec->key;
	w->ctx.more_candidates = w->cand_i + 1 < w->n_cand;
	s = pm_pipeline_run_item(pr, &w->ctx, &e);
	w->ctx.image = NULL;
out:
	if (im)
		g_object_unref(im);
	mem_release(r, est);
	if (s)
		work_fail(w, s, &e);
}

static void *worker_main(void *arg)
{
	worker_arg *wa = arg;
	run *r = wa->r;
	pm_pipeline_run *pr = NULL;
	pm_err e = {{0}};
	pm_status s;
	work *w;

	s = pm_pipeline_run_new(r->pipe, &pr, &e);
	if (s)
		set_fatal(r, s, &e);
	while ((w = pm_queue_pop(r->work_q))) {
		w->t_start = pm_now();
		if (stopping(r)) {
			/* Not started: left for the next run (the writer
			 * drops cancelled items unrecorded), so a cancel or
			 * a signal waits only for the images being worked
			 * on, not for the queue behind them. */
			pm_err ce = {{0}};
			work_fail(w,
				  pm_fail(&ce, PM_ERR_CANCELLED,
					  "stopped before it started"),
				  &ce);
		} else if (!s && !w->status)
			process_one(r, pr, w);
		else if (s)
			work_fail(w, s, &e);
		if (!s && send_back(r, w))
			continue; /* on to its next candidate */
		slot_release(r, w);
		if (!s && wants_placeholder(r, w))
			run_placeholder(r, pr, w);
		bytes_release(r, w);
		if (pm_queue_push(r->result_q, w))
			work_free(w);
	}
	pm_pipeline_run_free(pr);
	vips_thread_shutdown();
	return NULL;
}

/* ---- writer thread ---- */

static void lat_add(run *r, double ms)
{
	double us = ms * 1000.0;
	int b = us <= 1 ? 0 : (int)(log(us) / log(1.05));

	if (b >= LAT_BUCKETS)
		b = LAT_BUCKETS - 1;
	r->lat[b]++;
	r->lat_n++;
}

static double lat_quantile(const run *r, double q)
{
	int64_t want = (int64_t)ceil(q * (double)r->lat_n), acc = 0;

	if (r->lat_n == 0)
		return 0;
	for (int b = 0; b < LAT_BUCKETS; b++) {
		acc += r->lat[b];
		if (acc >= want) /* the bucket's geometric middle */
			return pow(1.05, b + 0.5) / 1000.0;
	}
	return pow(1.05, LAT_BUCKETS) / 1000.0;
}

static void manifest_line(run *r, const work *w)
{
	json_t *o = json_object();
	const pm_record *rec = w->rec;
	char *line;

	json_object_set_new(o, "key", json_string(rec->key));
	if (rec->id)
		json_object_set_new(o, "id", json_string(rec->id));
	if (rec->image)
		json_object_set_new(o, "image", json_string(rec->image));
	json_object_set_new(o, "state",
			    json_string(w->status ? "failed" : "done"));
	json_object_set_new(o, "pipeline_hash",
			    json_string(pm_pipeline_hash(r->pipe)));
	if (w->status) {
		json_object_set_new(o, "code",
				    json_string(pm_status_code(w->status)));
		json_object_set_new(o, "error", json_string(w->error));
	}
	if (w->have_sha)
		json_object_set_new(o, "sha256", json_string(w->sha));
	if (w->cand_log)
		json_object_set(o, "candidates", w->cand_log);
	if (w->provider[0])
		json_object_set_new(o, "search_provider",
				    json_string(w->provider));
	if (!w->status)
		json_object_set_new(o, "duplicate", json_boolean(w->duplicate));
	if (w->not_modified && !w->status)
		json_object_set_new(o, "not_modified", json_true());
	if (w->have_header) {
		json_object_set_new(
		    o, "format", json_string(pm_format_name(w->header.format)));
		int sw = w->header.orientation >= 5;
		json_object_set_new(
		    o, "width",
		    json_integer(sw ? w->header.height : w->header.width));
		json_object_set_new(
		    o, "height",
		    json_integer(sw ? w->header.width : w->header.height));
		json_object_set_new(o, "bytes",
				    json_integer((json_int_t)w->src_len));
	}
	if (!w->status && !w->duplicate) {
		json_t *outs = json_array();
		for (int i = 0; i < w->ctx.n_outputs; i++) {
			const pm_output_rec *out = &w->ctx.outputs[i];
			json_array_append_new(
			    outs, json_pack("{s:s,s:s,s:s,s:i,s:i,s:I}", "name",
					    out->name, "path", out->path,
					    "format", out->format, "width",
					    out->width, "height", out->height,
					    "bytes", (json_int_t)out->bytes));
		}
		json_object_set_new(o, "outputs", outs);
		if (w->ctx.has_phash) {
			char hx[17];
			snprintf(hx, sizeof hx, "%016llx",
				 (unsigned long long)w->ctx.phash);
			json_object_set_new(o, "phash", json_string(hx));
		}
		if (w->ctx.colors_json)
			json_object_set_new(
			    o, "colors",
			    json_loads(w->ctx.colors_json, 0, NULL));
		if (!isnan(w->ctx.sharpness))
			json_object_set_new(o, "sharpness",
					    json_real(w->ctx.sharpness));
		if (w->ctx.meta)
			json_object_update(o, w->ctx.meta);
	}
	line = json_dumps(o, JSON_COMPACT);
	if (line) {
		fputs(line, r->manifest);
		fputc('\n', r->manifest);
		free(line);
	}
	json_decref(o);
}

/* Builds the store record for w and puts it into the open batch. */
static pm_status put_work(run *r, pm_store *st, work *w, pm_err *e)
{
	pm_item_rec it = {0};
	pm_asset_rec as = {0};
	char *meta = NULL, *cands = NULL;
	pm_status s;

	it.job_id = r->job_id;
	it.key = w->rec->key;
	it.ordinal = w->rec->ordinal;
	it.id = w->rec->id;
	it.image = w->rec->image;
	it.title = w->rec->title;
	it.price = w->rec->price;
	it.category = w->rec->category;
	it.attrs_json = w->rec->attrs_json;
	it.status = w->status;
	it.error = w->status ? w->error : NULL;
	it.sha256 = w->have_sha ? w->sha : NULL;
	it.duplicate = w->duplicate && !w->status;
	it.latency_ms = (pm_now() - w->t_start) * 1000.0;
	it.attempts = w->attempts > 1 ? w->attempts : 1;
	it.url_etag = w->etag[0] ? w->etag : NULL;
	if (w->cand_log)
		cands = json_dumps(w->cand_log, JSON_COMPACT);
	it.candidates_json = cands;
	it.url_last_modified = w->lastmod[0] ? w->lastmod : NULL;
	it.queue_id = w->queue_id;
	it.lease_owner = w->queue_id ? r->worker : NULL;
	if (!w->status && !w->duplicate) {
		pm_asset_from_ctx(&as, &w->ctx, w->sha, &w->header, w->src_len,
				  pm_pipeline_hash(r->pipe), &meta);
		it.asset = &as;
	}
	s = pm_store_put_item(st, &it, e);
	free(meta);
	free(cands);
	return s;
}

/* Gives a waiting duplicate its owner's outcome. */
static void resolve_dup(work *w, const dedup_entry *e)
{
	if (e->state == 2) {
		w->status = e->code;
		snprintf(w->error, sizeof w->error,
			 "same bytes as an item "
			 "that failed: %.470s",
			 e->error);
	}
}

typedef struct batch {
	work *items[256];
	int n;
} batch;

/* Writer, worker mode: w's claim is settled (written, requeued, lost or
 * dropped): the ingest thread may claim more. */
static void claim_settled(run *r, const work *w)
{
	if (!w->queue_id)
		return;
	pthread_mutex_lock(&r->cl_mu);
	r->claims_out--;
	pthread_cond_broadcast(&r->cl_cv);
	pthread_mutex_unlock(&r->cl_mu);
}

/* Writer: takes w into the batch, or parks it behind its dedup owner. */
static void writer_take(run *r, batch *b, work *w)
{
	if (w->status == PM_ERR_CANCELLED) {
		claim_settled(r, w);
		/* Stopped by a signal before it finished: not recorded, so
		 * the next run does it. */
		work_free(w);
		return;
	}
	if (w->entry && !w->owner) {
		dedup_entry *e = w->entry;
		pthread_mutex_lock(&r->dd_mu);
		if (!e->owner_done) {
			w->next = e->waiters;
			e->waiters = w;
			pthread_mutex_unlock(&r->dd_mu);
			return;
		}
		resolve_dup(w, e);
		e->refs--;
		w->entry = NULL;
		dd_maybe_remove(r, e);
		pthread_mutex_unlock(&r->dd_mu);
	}
	b->items[b->n++] = w;
}

/* Writer: the ads counters for committed w (see pm_run_summary). */
static void count_ads(run *r, const work *w)
{
	json_t *cut =
	    w->ctx.meta ? json_object_get(w->ctx.meta, "cutout") : NULL;

	if (w->dlq_retry) {
		atomic_fetch_add(&r->dlq_retries, 1);
		pm_metric_inc(PM_M_ADS, "dlq_retry", NULL, 1);
	}
	if (w->status)
		return;
	if (w->placeholder) {
		atomic_fetch_add(&r->placeholders, 1);
		pm_metric_inc(PM_M_ADS, "placeholder", NULL, 1);
	} else if (cut && !w->duplicate) {
		bool skipped = json_is_true(json_object_get(cut, "skipped"));
		atomic_fetch_add(skipped ? &r->bg_skipped : &r->bg_removed, 1);
		pm_metric_inc(PM_M_ADS, skipped ? "bg_skipped" : "bg_removed",
			      NULL, 1);
	}
}

/* Writer, after a commit: tells the fleet's cache (fleet.h) what the
 * store now knows about w, as put_work and the store wrote it: its asset
 * exists, and (http, with validators) what its URL served. */
static void fleet_remember(run *r, const work *w)
{
	if (w->status || !w->have_sha)
		return;
	pm_fleet_cache_asset_put(r->store_id, w->sha,
				 pm_pipeline_hash(r->pipe));
	if (w->rec->image && is_http(w->rec->image) &&
	    (w->etag[0] || w->lastmod[0]))
		pm_fleet_cache_url_put(r->store_id, w->rec->image, w->sha,
				       w->etag, w->lastmod);
}

/* After a commit: count, log and free the batch; parked duplicates of the
 * committed owners move to *ready (a writer-local list, so the writer never
 * blocks on its own queue). */
static void writer_after_commit(run *r, batch *b, work **ready)
{
	for (int i = 0; i < b->n; i++) {
		work *w = b->items[i];
		if (w->lost || w->requeued) {
			/* not ours to record: another worker holds it, or a
			 * later attempt does it */
			atomic_fetch_add(w->lost ? &r->lost : &r->requeued, 1);
			pm_metric_inc(PM_M_WORKER_ITEMS,
				      w->lost ? "lost" : "requeued", NULL, 1);
			pm_log(PM_LOG_DEBUG, "%s: %s", w->rec->key,
			       w->lost ? "lease lost: another worker has it"
				       : "transient failure: back in the "
					 "queue");
			goto dedup;
		}
		manifest_line(r, w);
		if (w->status) {
			atomic_fetch_add(&r->failed, 1);
			pm_log(PM_LOG_DEBUG, "%s (%s): %s: %s", w->rec->key,
			       w->rec->image ? w->rec->image : "-",
			       pm_status_code(w->status), w->error);
		} else
			atomic_fetch_add(&r->done, 1);
		if (w->queue_id)
			pm_metric_inc(PM_M_WORKER_ITEMS,
				      w->status ? "failed" : "done", NULL, 1);
		if (!w->status && w->duplicate)
			atomic_fetch_add(&r->dups, 1);
		if (!w->status && w->not_modified)
			atomic_fetch_add(&r->cache_hits, 1);
		else if (!w->status && w->url_reused)
			atomic_fetch_add(&r->url_reused, 1);
		if (!w->status && w->rec->image && is_http(w->rec->image))
			atomic_fetch_add(&r->http_items, 1);
		count_ads(r, w);
		fleet_remember(r, w);
		if (atomic_load(&r->first_done_us) == 0) {
			atomic_store(&r->first_done_us,
				     (long long)((pm_now() - r->t0) * 1e6) + 1);
			pm_log(PM_LOG_DEBUG,
			       "t+%.1f ms: first item committed (%.1f ms in "
			       "its worker)",
			       (pm_now() - r->t0) * 1e3,
			       (pm_now() - w->t_start) * 1e3);
		}
		lat_add(r, (pm_now() - w->t_start) * 1000.0);
		pm_metric_inc(PM_M_ITEMS,
			      w->status		? "failed"
			      : w->not_modified ? "cache_hit"
			      : w->duplicate	? "duplicate"
						: "done",
			      NULL, 1);
		pm_metric_obs(PM_M_ITEM_DURATION, NULL, NULL,
			      pm_now() - w->t_start);
		if (!w->status && w->rec->image && is_http(w->rec->image))
			pm_metric_inc(PM_M_URL_CACHE,
				      w->not_modified || w->url_reused ? "hit"
								       : "miss",
				      NULL, 1);
	dedup:
		if (w->entry && w->owner) {
			dedup_entry *e = w->entry;
			pthread_mutex_lock(&r->dd_mu);
			e->owner_done = 1;
			e->state = w->status ? 2 : 1;
			e->code = w->status;
			snprintf(e->error, sizeof e->error, "%s", w->error);
			while (e->waiters) {
				work *d = e->waiters;
				e->waiters = d->next;
				resolve_dup(d, e);
				e->refs--;
				d->entry = NULL;
				d->next = *ready;
				*ready = d;
			}
			dd_maybe_remove(r, e);
			pthread_mutex_unlock(&r->dd_mu);
		}
		claim_settled(r, w);
		work_free(w);
	}
	fflush(r->manifest);
	if (b->n > 0)
		pm_fleet_progress(r->job_id, atomic_load(&r->done),
				  atomic_load(&r->failed),
				  atomic_load(&r->dups));
	b->n = 0;
}

/* Worker mode: claims a transient failure may take before it fails for
 * good (the first attempt included). */
#define QUEUE_MAX_ATTEMPTS 3

/* Writer, worker mode: items of the batch that failed for a passing
 * reason (the network) with attempts left go back to the queue, claimable
 * again after a backoff (2, 4 s), instead of failing. A claim this worker
 * no longer holds is lost. */
static pm_status writer_requeue(run *r, pm_store *st, batch *b, pm_err *e)
{
	for (int i = 0; i < b->n; i++) {
		work *w = b->items[i];
		double delay;
		pm_status s;

		if (!w->queue_id || !w->status || !transient(w->status) ||
		    w->q_attempts >= QUEUE_MAX_ATTEMPTS)
			continue;
		delay =
		    2.0 * (1 << (w->q_attempts > 0 ? w->q_attempts - 1 : 0));
		s = pm_store_requeue(st, w->queue_id, r->worker, delay,
				     w->error, e);
		if (s == PM_ERR_CONFLICT)
			w->lost = true;
		else if (s)
			return s;
		else
			w->requeued = true;
	}
	return PM_OK;
}

static pm_status writer_commit(run *r, pm_store *st, batch *b, pm_err *e)
{
	pm_status s;

	if (b->n == 0)
		return PM_OK;
	if (r->o->durability == PM_SYNC_BATCH && syncfs(r->out_fd))
		return pm_fail(e, PM_ERR_IO, "syncfs %s: %s", r->out_root,
			       strerror(errno));
	if (r->queued && (s = writer_requeue(r, st, b, e)))
		return s;
	s = pm_store_begin(st, e);
	for (int i = 0; !s && i < b->n; i++) {
		work *w = b->items[i];
		if (w->lost || w->requeued)
			continue;
		s = put_work(r, st, w, e);
		if (s == PM_ERR_CONFLICT && w->queue_id) {
			/* the lease ran out and another worker took the
			 * item: nothing was written, the batch goes on */
			w->lost = true;
			s = PM_OK;
		}
	}
	if (!s)
		s = pm_store_commit(st, e);
	if (s) {
		pm_store_rollback(st);
		return s;
	}
	if (r->queued) {
		bool finished = false;
		s = pm_store_queue_finish(st, r->job_id, &finished, e);
		if (!s && finished)
			pm_log(PM_LOG_DEBUG, "job %lld: queue drained: done",
			       (long long)r->job_id);
	}
	return s;
}

/* Group commit for --durability batch: one syncfs makes every output
 * written so far durable, so it pays to let results gather until `until`
 * (at most GROUP_WINDOW_S after the previous commit) or a full batch. An
 * idle writer commits the first result at once. */
#define GROUP_WINDOW_S 0.1

static void group_wait(run *r, batch *b, double until)
{
	double now;
	work *w;

	while (b->n < 256 && (now = pm_now()) < until) {
		w = pm_queue_pop_timeout(r->result_q,
					 (int)((until - now) * 1000.0) + 1);
		if (w)
			writer_take(r, b, w);
		else if (pm_queue_done(r->result_q))
			break;
	}
}

static void *writer_main(void *arg)
{
	run *r = arg;
	pm_store *st = NULL;
	pm_err e = {{0}};
	pm_status s;
	batch *b = calloc(1, sizeof *b);
	work *w, *ready = NULL;
	double last_commit = 0;

	if (!b) {
		pm_fail(&e, PM_ERR_NOMEM, "out of memory");
		set_fatal(r, PM_ERR_NOMEM, &e);
		goto drain;
	}
	s = pm_store_open(r->db_url, false, &st, &e);
	if (s) {
		set_fatal(r, s, &e);
		goto drain;
	}
	for (;;) {
		/* Duplicates woken by the last commit go first. */
		while (ready && b->n < 256) {
			w = ready;
			ready = w->next;
			w->next = NULL;
			b->items[b->n++] = w;
		}
		if (b->n == 0) {
			w = pm_queue_pop(r->result_q);
			if (!w)
				break;
			writer_take(r, b, w);
		}
		/* Then whatever else is already waiting, up to a batch. */
		while (b->n < 256 && (w = pm_queue_pop_timeout(r->result_q, 0)))
			writer_take(r, b, w);
		if (r->o->durability == PM_SYNC_BATCH)
			group_wait(r, b, last_commit + GROUP_WINDOW_S);
		if (b->n == 0)
			continue; /* only parked duplicates came */
		s = writer_commit(r, st, b, &e);
		last_commit = pm_now();
		if (s) {
			set_fatal(r, s, &e);
			for (int i = 0; i < b->n; i++)
				work_free(b->items[i]);
			b->n = 0;
			goto drain;
		}
		writer_after_commit(r, b, &ready);
	}
	goto out;
drain:
	while ((w = pm_queue_pop(r->result_q)))
		work_free(w);
out:
	while (ready) {
		w = ready;
		ready = w->next;
		work_free(w);
	}
	free(b);
	pm_store_close(st);
	atomic_store(&r->writer_done, 1);
	return NULL;
}

/* ---- setup and the main loop ---- */

static pm_status apply_overrides(run *r, pm_err *e)
{
	return pm_pipeline_apply_options(r->pipe, r->o->sizes, r->o->formats,
					 r->o->quality, e);
}

static pm_status clear_tmp(const char *dir, pm_err *e)
{
	DIR *d;
	struct dirent *de;
	pm_status s = pm_mkdirs(dir, e);

	if (s)
		return s;
	d = opendir(dir);
	if (!d)
		return pm_fail(e, PM_ERR_IO, "open %s: %s", dir,
			       strerror(errno));
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			unlinkat(dirfd(d), de->d_name, 0);
	closedir(d);
	return PM_OK;
}

/* The job's identity: its key is the hash of catalog, pipeline and output
 * root, so the same command finds the same job. key is 65 bytes. */
static void job_spec(const run *r, pm_job_spec *spec, char *key)
{
	char keysrc[PATH_MAX * 2 + 128];

	snprintf(keysrc, sizeof keysrc, "%s\n%s\n%s", r->catalog_abs,
		 pm_pipeline_hash(r->pipe), r->out_root);
	pm_sha256_hex(keysrc, strlen(keysrc), key);
	spec->key = key;
	spec->catalog = r->catalog_abs;
	spec->pipeline = pm_pipeline_name(r->pipe);
	spec->pipeline_hash = pm_pipeline_hash(r->pipe);
	spec->pipeline_json = pm_pipeline_canonical(r->pipe);
	spec->out_dir = r->out_root;
}

static int created_cb(const pm_job_info *info, void *ud)
{
	*(double *)ud = info->created;
	return 0;
}

/* The store's name in the fleet's cache (fleet.h): its URL or path, and
 * when its first job was made, so a store deleted and made again at the
 * same place never sees what Redis remembers of the old one. */
static void store_identity(run *r, pm_store *st)
{
	double created = 0;
	pm_err e;

	if (pm_store_job_get(st, 1, created_cb, &created, &e) != PM_OK)
		pm_store_job_get(st, r->job_id, created_cb, &created, &e);
	pm_fleet_store_id(r->db_url, created, r->store_id);
}

static pm_status open_job(run *r, pm_err *e)
{
	pm_store *st = NULL;
	char key[65];
	pm_job_spec spec;
	pm_status s;

	s = pm_store_open(r->db_url, false, &st, e);
	if (s)
		return s;
	job_spec(r, &spec, key);
	s = pm_store_job_open(st, &spec, &r->job_id, &r->run_no, e);
	if (!s)
		store_identity(r, st);
	pm_store_close(st);
	return s;
}

/* Loads the pipeline (with the overrides), resolves the catalog and the
 * output root (created) and names the store: what pm_run and
 * pm_run_prepare both need before they touch the job. */
static pm_status resolve(run *r, pm_err *err)
{
	const pm_run_opts *o = r->o;
	pm_status s = pm_pipeline_load(o->pipeline, &r->pipe, err);

	if (!s)
		s = apply_overrides(r, err);
	if (s)
		return s;
	if (pm_pipeline_note(r->pipe)) /* on stderr, like a warning */
		pm_log(PM_LOG_INFO, "%s", pm_pipeline_note(r->pipe));
	if (!realpath(o->catalog, r->catalog_abs))
		return pm_fail(err, PM_ERR_NOT_FOUND, "catalog %s: %s",
			       o->catalog, strerror(errno));
	s = pm_mkdirs(o->out_dir, err);
	if (s)
		return s;
	if (!realpath(o->out_dir, r->out_root))
		return pm_fail(err, PM_ERR_IO, "output folder %s: %s",
			       o->out_dir, strerror(errno));
	if (o->db)
		snprintf(r->db_url, sizeof r->db_url, "%s", o->db);
	else
		snprintf(r->db_url, sizeof r->db_url, "%s/pixmill.db",
			 r->out_root);
	return PM_OK;
}

/* Worker mode: the job's pipeline and output root from the store (a
 * pipeline that no longer hashes the same, say from another pixmill
 * version, is refused: its outputs would land elsewhere). */
typedef struct queued_job {
	char *pipeline_json, *pipeline_hash, *out_dir, *catalog, *state;
} queued_job;

static int queued_job_cb(const pm_job_info *ji, void *ud)
{
	queued_job *q = ud;

	q->pipeline_json = ji->pipeline_json ? strdup(ji->pipeline_json) : NULL;
	q->pipeline_hash = ji->pipeline_hash ? strdup(ji->pipeline_hash) : NULL;
	q->out_dir = ji->out_dir ? strdup(ji->out_dir) : NULL;
	q->catalog = ji->catalog ? strdup(ji->catalog) : NULL;
	return 1;
}

static pm_status resolve_queued(run *r, pm_err *err)
{
	const pm_run_opts *o = r->o;
	queued_job q = {0};
	pm_store *st = NULL;
	const char *out;
	pm_status s;

	if (!o->db)
		return pm_fail(err, PM_ERR_USAGE, "a worker needs --db");
	snprintf(r->db_url, sizeof r->db_url, "%s", o->db);
	s = pm_store_open(r->db_url, false, &st, err);
	if (!s)
		s = pm_store_job_get(st, o->queue_job, queued_job_cb, &q, err);
	pm_store_close(st);
	if (s)
		goto out;
	if (!q.pipeline_json || !q.pipeline_hash || !q.out_dir) {
		s = pm_fail(err, PM_ERR_NOMEM, "out of memory");
		goto out;
	}
	s = pm_pipeline_parse(q.pipeline_json, &r->pipe, err);
	if (!s && strcmp(pm_pipeline_hash(r->pipe), q.pipeline_hash) != 0)
		s = pm_fail(err, PM_ERR_PIPELINE,
			    "its pipeline hashes to %.12s here, not %.12s as "
			    "recorded (a different pixmill version?)",
			    pm_pipeline_hash(r->pipe), q.pipeline_hash);
	if (s)
		goto out;
	snprintf(r->catalog_abs, sizeof r->catalog_abs, "%s",
		 q.catalog ? q.catalog : "");
	out = o->out_dir ? o->out_dir : q.out_dir;
	{ /* the shared root must be there: made here, it would be a
	   * folder of this machine's that no one else sees */
		struct stat sb;
		if (stat(out, &sb) || !S_ISDIR(sb.st_mode)) {
			s = pm_fail(err, PM_ERR_NOT_FOUND,
				    "output root %s is not on this machine: "
				    "mount the shared root there, or give "
				    "--out",
				    out);
			goto out;
		}
	}
	if (!realpath(out, r->out_root))
		s = pm_fail(err, PM_ERR_IO, "output folder %s: %s", out,
			    strerror(errno));
out:
	free(q.pipeline_json);
	free(q.pipeline_hash);
	free(q.out_dir);
	free(q.catalog);
	return s;
}

/* Worker mode: id made safe as one file name component. */
static void file_safe(const char *id, char *out, size_t size)
{
	size_t i;

	for (i = 0; id[i] && i + 1 < size; i++) {
		char c = id[i];
		out[i] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
				 (c >= '0' && c <= '9') || c == '-' ||
				 c == '_' || (c == '.' && i > 0) || c == ':'
			     ? c
			     : '_';
	}
	out[i] = 0;
	if (!out[0])
		snprintf(out, size, "worker");
}

pm_status pm_run_prepare(const pm_run_opts *o, const char *name,
			 int64_t *job_id, pm_err *err)
{
	run *r = calloc(1, sizeof *r);
	pm_store *st = NULL;
	pm_job_spec spec;
	char key[65];
	pm_status s;

	if (!r)
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	r->o = o;
	s = resolve(r, err);
	if (!s)
		s = pm_store_open(r->db_url, false, &st, err);
	if (!s) {
		job_spec(r, &spec, key);
		s = pm_store_job_create(st, &spec, name, job_id, err);
	}
	pm_store_close(st);
	pm_pipeline_free(r->pipe);
	free(r);
	return s;
}

/* Copies the counters to the caller's live view (serve). */
static void live_copy(run *r)
{
	pm_run_live *l = r->o->live;

	atomic_store(&l->seen, atomic_load(&r->seen));
	atomic_store(&l->skipped, atomic_load(&r->skipped));
	atomic_store(&l->done, atomic_load(&r->done));
	atomic_store(&l->failed, atomic_load(&r->failed));
	atomic_store(&l->dups, atomic_load(&r->dups));
	atomic_store(&l->total, atomic_load(&r->total));
	atomic_store(&l->cache_hits, atomic_load(&r->cache_hits));
	atomic_store(&l->total_known, atomic_load(&r->total_known));
	atomic_store(&l->elapsed, pm_now() - r->t0);
}

static pm_status finish_job(run *r, pm_run_summary *sum, pm_err *e)
{
	pm_store *st = NULL;
	int64_t dups;
	pm_status s = pm_store_open(r->db_url, false, &st, e);

	if (s)
		return s;
	s = pm_store_job_finish(st, r->job_id,
				sum->interrupted ? "interrupted" : "done", e);
	if (!s && atomic_load(&r->http_items) > 0)
		s = pm_store_job_net(st, r->job_id, atomic_load(&r->http_items),
				     atomic_load(&r->cache_hits) +
					 atomic_load(&r->url_reused),
				     e);
	if (!s)
		s = pm_store_job_counts(st, r->job_id, &sum->job_items,
					&sum->job_done, &sum->job_failed, &dups,
					e);
	pm_store_close(st);
	return s;
}

static void progress_tick(run *r, pm_progress *pg, bool final)
{
	pm_progress_state ps = {
	    .done = atomic_load(&r->done),
	    .failed = atomic_load(&r->failed),
	    .dups = atomic_load(&r->dups),
	    .skipped = atomic_load(&r->skipped),
	    .seen = atomic_load(&r->seen),
	    .total = atomic_load(&r->total),
	    .total_known = atomic_load(&r->total_known),
	    .elapsed = pm_now() - r->t0,
	};
	pm_progress_update(pg, &ps, final);
}

pm_status pm_run(const pm_run_opts *o, pm_run_summary *sum, pm_err *err)
{
	run *r;
	pm_status s;
	pthread_t t_ingest, t_fetch, t_writer, t_count;
	pthread_t *t_workers = NULL;
	worker_arg *wargs = NULL;
	int n_started = 0, lock_fd = -1;
	bool count_started = false;
	pm_catalog_opts co = {.kind = o->kind,
			      .folder_all_files = o->all_files};
	pm_progress *pg = NULL;
	char path[PATH_MAX + 64];
	int qd;

	memset(sum, 0, sizeof *sum);
	cancel_flag = 0;
	if (o->live) {
		pm_run_live *l = o->live;
		atomic_store(&l->seen, 0);
		atomic_store(&l->skipped, 0);
		atomic_store(&l->done, 0);
		atomic_store(&l->failed, 0);
		atomic_store(&l->dups, 0);
		atomic_store(&l->total, 0);
		atomic_store(&l->cache_hits, 0);
		atomic_store(&l->total_known, 0);
		atomic_store(&l->elapsed, 0.0);
	}
	r = calloc(1, sizeof *r);
	if (!r)
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	r->o = o;
	r->out_fd = -1;
	r->t0 = o->t_start > 0 ? o->t_start : pm_now();
	pthread_mutex_init(&r->bytes_mu, NULL);
	pthread_cond_init(&r->bytes_cv, NULL);
	pthread_mutex_init(&r->mem_mu, NULL);
	pthread_cond_init(&r->mem_cv, NULL);
	pthread_mutex_init(&r->dd_mu, NULL);
	pthread_mutex_init(&r->fatal_mu, NULL);
	pthread_mutex_init(&r->rq_mu, NULL);
	pthread_cond_init(&r->rq_cv, NULL);
	pthread_mutex_init(&r->cl_mu, NULL);
	pthread_cond_init(&r->cl_cv, NULL);
	r->fopts = o->fetch;
	if (r->fopts.max_body <= 0 ||
	    (uint64_t)r->fopts.max_body > o->limits.max_bytes)
		r->fopts.max_body = (int64_t)o->limits.max_bytes;
	r->workers =
	    o->workers > 0 ? o->workers : (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (r->workers < 1)
		r->workers = 1;
	if (r->workers > 256)
		r->workers = 256;
	pm_set_workers_hint(r->workers);
	r->bytes_cap = o->inflight_bytes > 0 ? o->inflight_bytes : 256ll << 20;

	r->queued = o->queue_job > 0;
	if (r->queued) {
		snprintf(r->worker, sizeof r->worker, "%s",
			 o->worker_id && o->worker_id[0] ? o->worker_id
							 : "worker");
		file_safe(r->worker, r->worker_file, sizeof r->worker_file);
		r->lease_s = o->lease_s > 0 ? o->lease_s : 30.0;
		r->job_id = o->queue_job;
		s = resolve_queued(r, err);
	} else
		s = resolve(r, err);
	if (s)
		goto out;
	r->chosen = pm_verify_seen_new(); /* NULL: no duplicate penalty */
	/* One run per output folder at a time; workers share theirs (a
	 * shared lock: a local run on the same root waits for none of them
	 * and none of them for it, but they never run together). */
	snprintf(path, sizeof path, "%s/.pixmill.lock", r->out_root);
	lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (lock_fd < 0 ||
	    flock(lock_fd, (r->queued ? LOCK_SH : LOCK_EX) | LOCK_NB)) {
		s = pm_fail(err, PM_ERR_LOCKED,
			    "another pixmill run is using %s", r->out_root);
		goto out;
	}
	r->out_fd = open(r->out_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	/* Temporary files live in one folder, so what a crashed run left
	 * behind is found without walking the tree. We hold the lock, so
	 * nothing in it is in use; a worker has a folder of its own in it
	 * (OUT/.tmp/ID), which only it clears. */
	if (r->queued)
		snprintf(r->tmp_dir, sizeof r->tmp_dir, "%s/.tmp/%s",
			 r->out_root, r->worker_file);
	else
		snprintf(r->tmp_dir, sizeof r->tmp_dir, "%s/.tmp", r->out_root);
	s = clear_tmp(r->tmp_dir, err);
	if (!s)
		s = pm_outstore_local_open(r->out_root, r->tmp_dir, &r->outs,
					   err);
	if (s)
		goto out;
	if (!r->queued) {
		s = pm_catalog_open(r->catalog_abs, &co, &r->cat, err);
		if (s)
			goto out;
		pm_log(PM_LOG_DEBUG, "t+%.1f ms: catalog open (%s)",
		       (pm_now() - r->t0) * 1e3,
		       pm_catalog_kind_name(pm_catalog_kind_of(r->cat)));
		s = open_job(r, err);
		if (s)
			goto out;
	}
	if (o->live)
		atomic_store(&o->live->job_id, r->job_id);
	pm_log(PM_LOG_DEBUG, "t+%.1f ms: store open, job %lld run %d",
	       (pm_now() - r->t0) * 1e3, (long long)r->job_id, r->run_no);
	snprintf(path, sizeof path, "%s/manifests", r->out_root);
	s = pm_mkdirs(path, err);
	if (s)
		goto out;
	if (r->queued) /* one per worker and job, over its runs of it */
		snprintf(r->manifest_path, sizeof r->manifest_path,
			 "%s/manifests/job%lld-%s.jsonl", r->out_root,
			 (long long)r->job_id, r->worker_file);
	else
		snprintf(r->manifest_path, sizeof r->manifest_path,
			 "%s/manifests/job%lld-run%d.jsonl", r->out_root,
			 (long long)r->job_id, r->run_no);
	r->manifest = fopen(r->manifest_path, r->queued ? "a" : "w");
	if (!r->manifest) {
		s = pm_fail(err, PM_ERR_IO, "create %s: %s", r->manifest_path,
			    strerror(errno));
		goto out;
	}

	qd = o->queue_depth > 0 ? o->queue_depth : 4 * r->workers;
	r->fetch_q = pm_queue_new((size_t)qd);
	r->work_q = pm_queue_new((size_t)qd);
	r->result_q = pm_queue_new((size_t)qd * 4 + 256);
	t_workers = calloc((size_t)r->workers, sizeof *t_workers);
	wargs = calloc((size_t)r->workers, sizeof *wargs);
	if (!r->fetch_q || !r->work_q || !r->result_q || !t_workers || !wargs) {
		s = pm_fail(err, PM_ERR_NOMEM, "out of memory");
		goto out;
	}
	s = pm_store_pool_new(r->db_url, false, (r->workers + 3) / 4, &r->wpool,
			      err);
	if (s)
		goto out;
	pg = pm_progress_new(o->progress, o->progress_interval);

	pthread_create(&t_writer, NULL, writer_main, r);
	for (n_started = 0; n_started < r->workers; n_started++) {
		wargs[n_started].r = r;
		wargs[n_started].idx = n_started;
		pthread_create(&t_workers[n_started], NULL, worker_main,
			       &wargs[n_started]);
	}
	pthread_create(&t_fetch, NULL, fetch_main, r);
	pthread_create(&t_ingest, NULL, ingest_main, r);
	if (!r->queued)
		count_started =
		    pthread_create(&t_count, NULL, count_main, r) == 0;
	pm_log(PM_LOG_DEBUG, "t+%.1f ms: %d workers started",
	       (pm_now() - r->t0) * 1e3, r->workers);

	while (!atomic_load(&r->writer_done)) {
		/* Workers and writer stop by themselves once the queues
		 * close; this loop only reports. */
		usleep(50 * 1000);
		if (pg)
			progress_tick(r, pg, false);
		if (o->live)
			live_copy(r);
		if (pm_queue_done(r->work_q) && !pm_queue_done(r->result_q)) {
			/* Fetch is over: once every worker has finished,
			 * nothing else can reach the writer. */
			for (int i = 0; i < n_started; i++)
				pthread_join(t_workers[i], NULL);
			n_started = 0;
			pm_queue_close(r->result_q);
		}
	}
	for (int i = 0; i < n_started; i++)
		pthread_join(t_workers[i], NULL);
	pthread_join(t_ingest, NULL);
	pthread_join(t_fetch, NULL);
	pthread_join(t_writer, NULL);
	if (count_started) {
		pthread_join(t_count, NULL);
	}
	sum->interrupted = stopping(r) && !r->fatal;
	if (o->live)
		live_copy(r);
	if (pg) {
		progress_tick(r, pg, true);
	}
	/* what this run committed, also when it ends on an error */
	sum->job_id = r->job_id;
	sum->seen = atomic_load(&r->seen);
	sum->done = atomic_load(&r->done);
	sum->failed = atomic_load(&r->failed);
	sum->duplicates = atomic_load(&r->dups);
	sum->lost = atomic_load(&r->lost);
	sum->requeued = atomic_load(&r->requeued);
	sum->preempted = atomic_load(&r->preempted);
	if (r->fatal) {
		s = r->fatal;
		*err = r->fatal_err;
		goto out;
	}
	if (r->queued) {
		/* the job's state is the queue's (pm_store_queue_finish) */
		pm_store *st = NULL;
		int64_t dups;
		s = pm_store_open(r->db_url, false, &st, err);
		if (!s)
			s = pm_store_job_counts(st, r->job_id, &sum->job_items,
						&sum->job_done,
						&sum->job_failed, &dups, err);
		pm_store_close(st);
	} else
		s = finish_job(r, sum, err);
	if (s)
		goto out;
	sum->run_no = r->run_no;
	sum->skipped = atomic_load(&r->skipped);
	sum->cache_hits = atomic_load(&r->cache_hits);
	sum->url_reused = atomic_load(&r->url_reused);
	sum->http_items = atomic_load(&r->http_items);
	sum->n_providers = o->n_providers;
	memcpy(sum->providers, r->prov, sizeof r->prov);
	sum->placeholders = atomic_load(&r->placeholders);
	sum->bg_removed = atomic_load(&r->bg_removed);
	sum->bg_skipped = atomic_load(&r->bg_skipped);
	sum->dlq_retries = atomic_load(&r->dlq_retries);
	sum->wall_s = pm_now() - r->t0;
	sum->first_done_ms = atomic_load(&r->first_done_us) / 1000.0;
	sum->images_per_s =
	    sum->wall_s > 0 ? (sum->done + sum->failed) / sum->wall_s : 0;
	sum->p50_ms = lat_quantile(r, 0.50);
	sum->p95_ms = lat_quantile(r, 0.95);
	sum->peak_rss = pm_peak_rss();
	snprintf(sum->manifest, sizeof sum->manifest, "%s", r->manifest_path);
	pm_store_url_mask(r->db_url, sum->db, sizeof sum->db); /* shown */
	snprintf(sum->out_dir, sizeof sum->out_dir, "%s", r->out_root);
	if (sum->interrupted)
		s = pm_fail(err, PM_ERR_CANCELLED,
			    "interrupted; run the same command again to "
			    "finish");
out:
	pm_progress_free(pg);
	if (r->manifest)
		fclose(r->manifest);
	pm_catalog_close(r->cat);
	pm_queue_free(r->fetch_q);
	pm_queue_free(r->work_q);
	pm_queue_free(r->result_q);
	pm_store_pool_free(r->wpool); /* its borrowers have been joined */
	free(t_workers);
	free(wargs);
	pm_pipeline_free(r->pipe);
	for (int i = 0; i < DEDUP_BUCKETS; i++)
		while (r->dd[i]) {
			dedup_entry *e = r->dd[i];
			r->dd[i] = e->next;
			free(e);
		}
	pm_verify_seen_free(r->chosen);
	if (r->out_fd >= 0)
		close(r->out_fd);
	pm_outstore_close(r->outs);
	if (r->queued && r->tmp_dir[0])
		rmdir(r->tmp_dir); /* this worker's, if empty */
	if (lock_fd >= 0)
		close(lock_fd);
	pthread_mutex_destroy(&r->bytes_mu);
	pthread_cond_destroy(&r->bytes_cv);
	pthread_mutex_destroy(&r->mem_mu);
	pthread_cond_destroy(&r->mem_cv);
	pthread_mutex_destroy(&r->dd_mu);
	pthread_mutex_destroy(&r->fatal_mu);
	pthread_mutex_destroy(&r->rq_mu);
	pthread_cond_destroy(&r->rq_cv);
	pthread_mutex_destroy(&r->cl_mu);
	pthread_cond_destroy(&r->cl_cv);
	free(r);
	return s;
}

/* ---- run --enqueue-only ---- */

#define ENQUEUE_BATCH 1000

/* Frees the record texts of recs[0..n). */
static void enqueue_clear(pm_enqueue_rec *recs, char **keys, int n)
{
	for (int i = 0; i < n; i++) {
		free(keys[i]);
		free((char *)recs[i].record_json);
	}
}

pm_status pm_run_enqueue(const pm_run_opts *o, const char *name,
			 int64_t *job_id, int64_t *enqueued, int64_t *present,
			 pm_err *err)
{
	run *r = calloc(1, sizeof *r);
	pm_catalog_opts co = {.kind = o->kind,
			      .folder_all_files = o->all_files};
	pm_enqueue_rec *recs = calloc(ENQUEUE_BATCH, sizeof *recs);
	char **keys = calloc(ENQUEUE_BATCH, sizeof *keys);
	pm_store *st = NULL;
	pm_job_spec spec;
	char key[65];
	int64_t total = 0, added_all = 0;
	int n = 0;
	pm_status s;

	*job_id = *enqueued = *present = 0;
	cancel_flag = 0;
	if (!r || !recs || !keys) {
		s = pm_fail(err, PM_ERR_NOMEM, "out of memory");
		goto out;
	}
	r->o = o;
	s = resolve(r, err);
	if (!s)
		s = pm_catalog_open(r->catalog_abs, &co, &r->cat, err);
	if (!s)
		s = pm_store_open(r->db_url, false, &st, err);
	if (s)
		goto out;
	job_spec(r, &spec, key);
	s = pm_store_job_create(st, &spec, name, job_id, err);
	if (s)
		goto out;
	pm_log(PM_LOG_DEBUG, "job %lld: enqueueing %s", (long long)*job_id,
	       r->catalog_abs);
	for (;;) {
		pm_record *rec = NULL;
		char *txt = NULL;
		int64_t added = 0;

		if (stopping(r)) {
			s = pm_fail(err, PM_ERR_CANCELLED,
				    "interrupted after %lld records; run the "
				    "same command again to finish",
				    (long long)(total - n));
			goto out;
		}
		s = pm_catalog_next(r->cat, &rec, err);
		if (s)
			goto out;
		if (rec) {
			s = pm_record_to_json(rec, &txt, err);
			if (!s) {
				keys[n] = rec->key; /* moves to keys */
				rec->key = NULL;
				recs[n].key = keys[n];
				recs[n].ordinal = rec->ordinal;
				recs[n].record_json = txt;
				n++;
				total++;
			}
			pm_record_free(rec);
			if (s)
				goto out;
		}
		if (n == ENQUEUE_BATCH || (!rec && n > 0)) {
			s = pm_store_enqueue(st, *job_id, o->priority, recs, n,
					     &added, err);
			enqueue_clear(recs, keys, n);
			n = 0;
			if (s)
				goto out;
			added_all += added;
		}
		if (!rec)
			break;
	}
	s = pm_store_enqueue_end(st, *job_id, total, err);
	if (!s) { /* nothing left to do (all done before): done now */
		bool finished = false;
		s = pm_store_queue_finish(st, *job_id, &finished, err);
	}
	*enqueued = added_all;
	*present = total - added_all;
out:
	if (recs && keys)
		enqueue_clear(recs, keys, n);
	free(recs);
	free(keys);
	pm_store_close(st);
	if (r) {
		pm_catalog_close(r->cat);
		pm_pipeline_free(r->pipe);
	}
	free(r);
	return s;
}
