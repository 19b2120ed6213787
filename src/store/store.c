/* store.c — the public pm_store_* functions: pick a backend from the URL
 * and forward each call through its vtable (store_impl.h).
 *
 * URLs: "sqlite:PATH" (also "sqlite://PATH", so "sqlite:///abs/db" works) or
 * a plain path → SQLite; "postgres://" and "postgresql://" → PostgreSQL
 * (the whole URL goes to libpq); any other "scheme://" →
 * PM_ERR_UNSUPPORTED.
 *
 * Threads: no shared mutable state here; a pm_store is used by one thread
 * at a time (see store.h). Ownership: pm_store_open hands *out to the
 * caller, who frees it (and the backend connection inside) with
 * pm_store_close.
 */
#include "store/store_impl.h"

#include "core/util.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

struct pm_store {
	const pm_store_backend *be;
	void *conn;    /* owned; freed by be->close */
	bool in_batch; /* between a successful begin and commit/rollback
			  (pm_store_in_batch; the pool refuses such a
			  handle) */
};

static bool has_prefix(const char *s, const char *p)
{
	return strncmp(s, p, strlen(p)) == 0;
}

/* Where "SCHEME://" ends, if url starts with one; else NULL. */
static const char *after_scheme(const char *url)
{
	const char *p = url;
	if (!isalpha((unsigned char)*p))
		return NULL;
	while (isalnum((unsigned char)*p) || *p == '+' || *p == '-' ||
	       *p == '.')
		p++;
	return strncmp(p, "://", 3) == 0 ? p + 3 : NULL;
}

void pm_store_url_mask(const char *url, char *out, size_t size)
{
	size_t n = 0;
	const char *p = url, *at = NULL, *colon = NULL;
	const char *auth = after_scheme(url);

	if (size == 0)
		return;
	/* "user:password@": libpq ends it at the first '@' before the
	 * first '/'; the last one is taken here, so that nothing a parser
	 * could read as the password is shown. */
	if (auth) {
		size_t end = strcspn(auth, "/");
		for (size_t i = 0; i < end; i++)
			if (auth[i] == '@')
				at = auth + i;
		if (at)
			colon = memchr(auth, ':', (size_t)(at - auth));
	}
	while (*p && n + 1 < size) {
		if (colon && p == colon + 1) {
			for (const char *m = "***"; *m && n + 1 < size; m++)
				out[n++] = *m;
			p = at;
			continue;
		}
		if ((p == url || p[-1] == '?' || p[-1] == '&') &&
		    strncmp(p, "password=", 9) == 0) {
			for (const char *m = "password=***"; *m && n + 1 < size;
			     m++)
				out[n++] = *m;
			p += strcspn(p, "&#");
			continue;
		}
		out[n++] = *p++;
	}
	out[n] = 0;
}

pm_status pm_store_open(const char *url, bool readonly, pm_store **out,
			pm_err *err)
{
	if (!out)
		return pm_fail(err, PM_ERR_USAGE, "store: no output pointer");
	*out = NULL;
	if (!url || !*url)
		return pm_fail(err, PM_ERR_USAGE, "store: empty store URL");

	const pm_store_backend *be = NULL;
	const char *target = url;
	if (has_prefix(url, "postgres://") ||
	    has_prefix(url, "postgresql://")) {
		be = &pm_store_postgres;
	} else if (has_prefix(url, "sqlite:")) {
		target = url + strlen("sqlite:");
		if (has_prefix(target, "//"))
			target += 2;
		be = &pm_store_sqlite;
	} else if (strstr(url, "://")) {
		char shown[512];
		pm_store_url_mask(url, shown, sizeof shown);
		return pm_fail(err, PM_ERR_UNSUPPORTED,
			       "store URL %s: unknown scheme (use a path, "
			       "sqlite:PATH or postgres://)",
			       shown);
	} else {
		be = &pm_store_sqlite;
	}
	if (!*target)
		return pm_fail(err, PM_ERR_USAGE, "store URL %s: empty path",
			       url);

	pm_store *s = calloc(1, sizeof *s);
	if (!s)
		return pm_fail(err, PM_ERR_NOMEM, "store: out of memory");
	s->be = be;
	pm_status st = be->open(target, readonly, &s->conn, err);
	if (st != PM_OK) {
		free(s);
		return st;
	}
	*out = s;
	return PM_OK;
}

pm_status pm_store_open_existing(const char *url, pm_store **out, pm_err *err)
{
	pm_status st = pm_store_open(url, true, out, err);

	if (st || pm_store_schema_version(*out) >= (*out)->be->latest_version())
		return st;
	pm_store_close(*out);
	*out = NULL;
	return pm_store_open(url, false, out, err);
}

void pm_store_close(pm_store *s)
{
	if (!s)
		return;
	s->be->close(s->conn);
	free(s);
}

int pm_store_schema_version(pm_store *s)
{
	return s->be->schema_version(s->conn);
}

pm_status pm_store_job_open(pm_store *s, const pm_job_spec *spec,
			    int64_t *job_id, int *run_no, pm_err *err)
{
	return s->be->job_open(s->conn, spec, job_id, run_no, err);
}

pm_status pm_store_job_net(pm_store *s, int64_t job_id, int64_t http_items,
			   int64_t http_hits, pm_err *err)
{
	return s->be->job_net(s->conn, job_id, http_items, http_hits, err);
}

pm_status pm_store_provider_add(pm_store *s, const pm_provider_day *d,
				pm_err *err)
{
	return s->be->provider_add(s->conn, d, err);
}

pm_status pm_store_provider_days(pm_store *s, int64_t since_day,
				 int (*cb)(const pm_provider_day *d, void *ud),
				 void *ud, pm_err *err)
{
	return s->be->provider_days(s->conn, since_day, cb, ud, err);
}

pm_status pm_store_job_finish(pm_store *s, int64_t job_id, const char *state,
			      pm_err *err)
{
	return s->be->job_finish(s->conn, job_id, state, err);
}

pm_status pm_store_jobs(pm_store *s, int limit,
			int (*cb)(const pm_job_info *info, void *ud), void *ud,
			pm_err *err)
{
	return s->be->jobs(s->conn, 0, limit, cb, ud, err);
}

pm_status pm_store_job_failures(pm_store *s, int64_t job_id, int limit,
				int (*cb)(const char *code, const char *example,
					  int64_t count, void *ud),
				void *ud, pm_err *err)
{
	return s->be->job_failures(s->conn, job_id, limit, cb, ud, err);
}

pm_status pm_store_failed(pm_store *s, int64_t job_id, const char *code,
			  const char *key, int limit,
			  int (*cb)(const pm_failed_info *info, void *ud),
			  void *ud, pm_err *err)
{
	return s->be->failed(s->conn, job_id, code, key, limit, cb, ud, err);
}

pm_status pm_store_retry_failed(pm_store *s, int64_t job_id, const char *code,
				const char *key, int64_t *n, pm_err *err)
{
	return s->be->retry_failed(s->conn, job_id, code, key, n, err);
}

pm_status pm_store_url_get(pm_store *s, const char *url, pm_url_info *info,
			   bool *found, pm_err *err)
{
	return s->be->url_get(s->conn, url, info, found, err);
}

pm_status pm_store_item_state(pm_store *s, int64_t job_id, const char *key,
			      pm_item_state *state, pm_status *code,
			      pm_err *err)
{
	return s->be->item_state(s->conn, job_id, key, state, code, err);
}

pm_status pm_store_asset_exists(pm_store *s, const char *sha256,
				const char *pipeline_hash, bool *exists,
				pm_err *err)
{
	return s->be->asset_exists(s->conn, sha256, pipeline_hash, exists, err);
}

pm_status pm_store_begin(pm_store *s, pm_err *err)
{
	pm_status st = s->be->begin(s->conn, err);
	s->in_batch = st == PM_OK;
	return st;
}

bool pm_store_in_batch(const pm_store *s)
{
	return s && s->in_batch;
}

pm_status pm_store_put_item(pm_store *s, const pm_item_rec *item, pm_err *err)
{
	return s->be->put_item(s->conn, item, err);
}

pm_status pm_store_commit(pm_store *s, pm_err *err)
{
	/* A failed commit rolls the batch back (every backend): closed
	 * either way. */
	s->in_batch = false;
	return s->be->commit(s->conn, err);
}

void pm_store_rollback(pm_store *s)
{
	s->in_batch = false;
	s->be->rollback(s->conn);
}

pm_status pm_store_job_counts(pm_store *s, int64_t job_id, int64_t *items,
			      int64_t *done, int64_t *failed,
			      int64_t *duplicates, pm_err *err)
{
	return s->be->job_counts(s->conn, job_id, items, done, failed,
				 duplicates, err);
}

pm_status pm_store_job_ads(pm_store *s, int64_t job_id, int64_t *placeholder,
			   int64_t *bg_removed, int64_t *bg_skipped,
			   pm_err *err)
{
	int64_t v[3] = {0, 0, 0};
	pm_status st = s->be->job_ads(s->conn, job_id, v, err);

	*placeholder = v[0];
	*bg_removed = v[1];
	*bg_skipped = v[2];
	return st;
}

typedef struct job_get_ctx {
	int (*cb)(const pm_job_info *info, void *ud);
	void *ud;
	bool found;
} job_get_ctx;

static int job_get_cb(const pm_job_info *info, void *ud)
{
	job_get_ctx *g = ud;
	g->found = true;
	return g->cb ? g->cb(info, g->ud) : 0;
}

pm_status pm_store_job_get(pm_store *s, int64_t id,
			   int (*cb)(const pm_job_info *info, void *ud),
			   void *ud, pm_err *err)
{
	job_get_ctx g = {cb, ud, false};
	pm_status st;

	if (id <= 0)
		return pm_fail(err, PM_ERR_NOT_FOUND, "no job %lld",
			       (long long)id);
	st = s->be->jobs(s->conn, id, 1, job_get_cb, &g, err);
	if (!st && !g.found)
		st = pm_fail(err, PM_ERR_NOT_FOUND, "no job %lld",
			     (long long)id);
	return st;
}

pm_status pm_store_job_create(pm_store *s, const pm_job_spec *spec,
			      const char *name, int64_t *job_id, pm_err *err)
{
	return s->be->job_create(s->conn, spec, name, job_id, err);
}

pm_status pm_store_job_state(pm_store *s, int64_t job_id, const char *state,
			     const char *error, bool final, pm_err *err)
{
	return s->be->job_state(s->conn, job_id, state, error, final, err);
}

pm_status pm_store_stats(pm_store *s,
			 int (*cb)(const char *state, int64_t n, void *ud),
			 void *ud, int64_t *dlq, pm_err *err)
{
	return s->be->stats(s->conn, cb, ud, dlq, err);
}

pm_status pm_store_items(pm_store *s, int64_t job_id, const char *state,
			 int64_t after, int limit,
			 int (*cb)(const pm_item_info *info, void *ud),
			 void *ud, pm_err *err)
{
	return s->be->items(s->conn, job_id, state, after, limit, cb, ud, err);
}

pm_status pm_store_outputs(pm_store *s, const char *sha256,
			   const char *pipeline_hash, const char *name,
			   int (*cb)(const pm_output_info *info, void *ud),
			   void *ud, pm_err *err)
{
	return s->be->outputs(s->conn, sha256, pipeline_hash, name, cb, ud,
			      err);
}

pm_status pm_store_recent_outputs(pm_store *s, int limit,
				  int (*cb)(const pm_output_info *info,
					    void *ud),
				  void *ud, pm_err *err)
{
	return s->be->recent(s->conn, limit, cb, ud, err);
}

pm_status pm_store_search_text(pm_store *s, const pm_text_query *q,
			       int (*cb)(const pm_search_hit *hit, void *ud),
			       void *ud, pm_err *err)
{
	if (!q || !q->match)
		return pm_fail(err, PM_ERR_USAGE, "search: no query");
	return s->be->search(s->conn, q, cb, ud, err);
}

pm_status pm_store_images(pm_store *s, const pm_image_query *q,
			  int (*cb)(const pm_image_info *info, void *ud),
			  void *ud, pm_err *err)
{
	if (!q)
		return pm_fail(err, PM_ERR_USAGE, "images: no query");
	return s->be->images(s->conn, q, cb, ud, err);
}

pm_status pm_store_embeddings(pm_store *s, const char *model,
			      int (*cb)(const char *sha256, const float *vec,
					int dim, void *ud),
			      void *ud, pm_err *err)
{
	return s->be->embeddings(s->conn, model, cb, ud, err);
}

pm_status pm_store_embeddings_stamp(pm_store *s, int64_t *stamp, pm_err *err)
{
	return s->be->embeddings_stamp(s->conn, stamp, err);
}

pm_status pm_store_embedding_get(pm_store *s, const char *sha256,
				 const char *model, float *out, int cap,
				 int *dim, pm_err *err)
{
	return s->be->embedding_get(s->conn, sha256, model, out, cap, dim, err);
}

pm_status pm_store_embedding_put(pm_store *s, const char *sha256,
				 const char *model, const float *vec, int dim,
				 pm_err *err)
{
	if (!sha256 || !model || !vec || dim < 1)
		return pm_fail(err, PM_ERR_INTERNAL,
			       "embedding_put: bad "
			       "arguments");
	return s->be->embedding_put(s->conn, sha256, model, vec, dim, err);
}

pm_status pm_store_asset_items(pm_store *s, int64_t job_id, const char *sha256,
			       int (*cb)(const pm_asset_item *it, void *ud),
			       void *ud, pm_err *err)
{
	return s->be->asset_items(s->conn, job_id, sha256, NULL, cb, ud, err);
}

pm_status pm_store_find_items(pm_store *s, int64_t job_id, const char *ref,
			      int (*cb)(const pm_asset_item *it, void *ud),
			      void *ud, pm_err *err)
{
	if (!ref)
		return pm_fail(err, PM_ERR_USAGE, "find items: no reference");
	return s->be->asset_items(s->conn, job_id, NULL, ref, cb, ud, err);
}

bool pm_store_fts_query(const char *text, char *out, size_t size)
{
	size_t n = 0;
	int words = 0;
	const unsigned char *p = (const unsigned char *)text;

	if (!text || size < 1)
		return false;
	while (*p) {
		/* A word: a run of letters, digits and any non-ASCII byte
		 * (UTF-8 letters); everything else separates words. */
		while (*p && !(isalnum(*p) || *p >= 0x80))
			p++;
		if (!*p)
			break;
		if (n + 3 >= size)
			return false;
		if (words++)
			out[n++] = ' ';
		out[n++] = '"';
		while (*p && (isalnum(*p) || *p >= 0x80)) {
			if (n + 2 >= size)
				return false;
			out[n++] = (char)*p++;
		}
		out[n++] = '"';
	}
	out[n] = 0;
	return words > 0;
}

pm_status pm_store_phashes(pm_store *s,
			   int (*cb)(const char *sha256,
				     const char *pipeline_hash, uint64_t phash,
				     void *ud),
			   void *ud, pm_err *err)
{
	return s->be->phashes(s->conn, cb, ud, err);
}

pm_status
pm_store_phash_near(pm_store *s, uint64_t phash, int max_distance, int limit,
		    int (*cb)(const char *sha256, const char *pipeline_hash,
			      uint64_t phash, int distance, void *ud),
		    void *ud, pm_err *err)
{
	if (max_distance < 0 || max_distance > 64 || limit < 1 || limit > 1000)
		return pm_fail(err, PM_ERR_USAGE,
			       "phash search: distance 0..64 and limit "
			       "1..1000");
	return s->be->phash_near(s->conn, phash, max_distance, limit, cb, ud,
				 err);
}

pm_status pm_store_title(pm_store *s, const char *sha256, char *buf,
			 size_t size, pm_err *err)
{
	return s->be->title(s->conn, sha256, buf, size, err);
}

pm_status pm_store_code_parse(const char *text, pm_status *out, pm_err *err)
{
	for (int i = 0; i < PM_STATUS_COUNT; i++) {
		if (text && strcmp(pm_status_code((pm_status)i), text) == 0) {
			*out = (pm_status)i;
			return PM_OK;
		}
	}
	return pm_fail(err, PM_ERR_STORE, "unknown status code '%s' in store",
		       text ? text : "(null)");
}

/* ---- the shared queue ---- */

/* Most rows one claim returns (the backends allocate the array up
 * front). */
#define PM_CLAIM_MAX 65536

/* A worker name or a lease length a backend can store. */
static pm_status check_worker(const char *worker, const char *what, pm_err *err)
{
	if (!worker || !*worker)
		return pm_fail(err, PM_ERR_USAGE, "%s: no worker name", what);
	return PM_OK;
}

static pm_status check_lease(double lease_s, const char *what, pm_err *err)
{
	if (!(lease_s > 0 && lease_s <= 365.0 * 86400))
		return pm_fail(err, PM_ERR_USAGE,
			       "%s: lease of %g s is not a positive duration "
			       "(up to a year)",
			       what, lease_s);
	return PM_OK;
}

pm_status pm_store_enqueue(pm_store *s, int64_t job_id, int priority,
			   const pm_enqueue_rec *recs, int n, int64_t *added,
			   pm_err *err)
{
	int64_t dummy = 0;

	if (!added)
		added = &dummy;
	*added = 0;
	if (n < 0 || (n > 0 && !recs))
		return pm_fail(err, PM_ERR_USAGE, "enqueue: bad records");
	for (int i = 0; i < n; i++)
		if (!recs[i].key || !recs[i].record_json)
			return pm_fail(err, PM_ERR_USAGE,
				       "enqueue: record %d has no key or "
				       "no record",
				       i);
	if (n == 0)
		return PM_OK;
	return s->be->enqueue(s->conn, job_id, priority, recs, n, added, err);
}

pm_status pm_store_enqueue_end(pm_store *s, int64_t job_id, int64_t total,
			       pm_err *err)
{
	return s->be->enqueue_end(s->conn, job_id, total, err);
}

pm_status pm_store_claim(pm_store *s, int64_t job_id, const char *worker, int n,
			 double lease_s, pm_claim **out, int *n_out,
			 pm_err *err)
{
	pm_status st;

	if (!out || !n_out)
		return pm_fail(err, PM_ERR_USAGE, "claim: no output pointer");
	*out = NULL;
	*n_out = 0;
	if ((st = check_worker(worker, "claim", err)) ||
	    (st = check_lease(lease_s, "claim", err)))
		return st;
	if (n < 1)
		return PM_OK;
	if (n > PM_CLAIM_MAX)
		n = PM_CLAIM_MAX; /* fewer than asked is allowed */
	return s->be->claim(s->conn, job_id, worker, n, lease_s, out, n_out,
			    err);
}

void pm_claims_free(pm_claim *c, int n)
{
	if (!c)
		return;
	for (int i = 0; i < n; i++) {
		free(c[i].key);
		free(c[i].record_json);
	}
	free(c);
}

void pm_claims_sort(pm_claim *c, int *prio, int n)
{
	/* insertion sort: claim batches are small */
	for (int i = 1; i < n; i++) {
		pm_claim x = c[i];
		int p = prio[i], j = i - 1;
		while (j >= 0 &&
		       (prio[j] < p ||
			(prio[j] == p && c[j].queue_id > x.queue_id))) {
			c[j + 1] = c[j];
			prio[j + 1] = prio[j];
			j--;
		}
		c[j + 1] = x;
		prio[j + 1] = p;
	}
}

pm_status pm_store_queue_next(pm_store *s, int64_t *job_id, int *priority,
			      pm_err *err)
{
	int64_t j = 0;
	int p = 0;
	pm_status st = s->be->queue_next(s->conn, &j, &p, err);

	if (job_id)
		*job_id = st ? 0 : j;
	if (priority)
		*priority = st ? 0 : p;
	return st;
}

pm_status pm_store_lease_renew(pm_store *s, const char *worker, double lease_s,
			       int64_t *n, pm_err *err)
{
	int64_t dummy = 0;
	pm_status st;

	if (!n)
		n = &dummy;
	*n = 0;
	if ((st = check_worker(worker, "lease renew", err)) ||
	    (st = check_lease(lease_s, "lease renew", err)))
		return st;
	return s->be->lease_renew(s->conn, worker, lease_s, n, err);
}

pm_status pm_store_lease_release(pm_store *s, const char *worker, int64_t *n,
				 pm_err *err)
{
	int64_t dummy = 0;
	pm_status st;

	if (!n)
		n = &dummy;
	*n = 0;
	if ((st = check_worker(worker, "lease release", err)))
		return st;
	return s->be->lease_release(s->conn, worker, n, err);
}

pm_status pm_store_lease_reap(pm_store *s, int64_t *n, pm_err *err)
{
	int64_t dummy = 0;

	if (!n)
		n = &dummy;
	*n = 0;
	return s->be->lease_reap(s->conn, n, err);
}

pm_status pm_store_requeue(pm_store *s, int64_t queue_id, const char *worker,
			   double delay_s, const char *reason, pm_err *err)
{
	pm_status st;

	if ((st = check_worker(worker, "requeue", err)))
		return st;
	if (!(delay_s >= 0 && delay_s <= 365.0 * 86400))
		return pm_fail(err, PM_ERR_USAGE,
			       "requeue: delay of %g s out of range", delay_s);
	return s->be->requeue(s->conn, queue_id, worker, delay_s, reason, err);
}

pm_status pm_store_queue_wait(pm_store *s, int timeout_ms, bool *woken,
			      pm_err *err)
{
	bool dummy = false;

	if (!woken)
		woken = &dummy;
	*woken = false;
	if (timeout_ms < 0)
		timeout_ms = 0;
	return s->be->queue_wait(s->conn, timeout_ms, woken, err);
}

pm_status pm_store_job_state_of(pm_store *s, int64_t job_id, char *state,
				size_t size, pm_err *err)
{
	if (size)
		state[0] = 0;
	return s->be->job_state_of(s->conn, job_id, state, size, err);
}

pm_status pm_store_queue_finish(pm_store *s, int64_t job_id, bool *finished,
				pm_err *err)
{
	bool dummy = false;

	if (!finished)
		finished = &dummy;
	*finished = false;
	return s->be->queue_finish(s->conn, job_id, finished, err);
}

pm_status pm_store_queue_counts(pm_store *s, int64_t job_id, pm_queue_counts *c,
				pm_err *err)
{
	if (!c)
		return pm_fail(err, PM_ERR_USAGE, "queue counts: no output");
	memset(c, 0, sizeof *c);
	return s->be->queue_counts(s->conn, job_id, c, err);
}

pm_status pm_store_queue_history(pm_store *s, int64_t job_id, const char *key,
				 int (*cb)(const char *event,
					   const char *worker, double at,
					   const char *detail, void *ud),
				 void *ud, pm_err *err)
{
	if (!key || !cb)
		return pm_fail(err, PM_ERR_USAGE, "queue history: no key");
	return s->be->queue_history(s->conn, job_id, key, cb, ud, err);
}

pm_status pm_store_queue_prune(pm_store *s, int64_t job_id, double older_than_s,
			       bool dry_run, pm_queue_pruned *out, pm_err *err)
{
	char state[32];
	pm_status st;

	if (!out)
		return pm_fail(err, PM_ERR_USAGE, "queue prune: no output");
	memset(out, 0, sizeof *out);
	if (job_id < 0 || !(older_than_s >= 0))
		return pm_fail(err, PM_ERR_USAGE,
			       "queue prune: bad job or age");
	if (job_id > 0) {
		st = s->be->job_state_of(s->conn, job_id, state, sizeof state,
					 err);
		if (st)
			return st;
		if (strcmp(state, "done") && strcmp(state, "failed") &&
		    strcmp(state, "cancelled"))
			return pm_fail(err, PM_ERR_CONFLICT,
				       "job %lld is %s: only done, failed or "
				       "cancelled jobs are pruned",
				       (long long)job_id, state);
	}
	return s->be->queue_prune(s->conn, job_id, pm_wall() - older_than_s,
				  dry_run, PM_QUEUE_PRUNE_BATCH, out, err);
}
