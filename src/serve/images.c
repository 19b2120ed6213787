/* images.c — images over HTTP: uploads processed now (POST /api/images),
 * search by image, output files (GET /api/assets/...), recent outputs and
 * full-text search.
 *
 * Uploads and image searches need a decode, so they do not run on the
 * HTTP threads: the handler suspends the connection and queues the request
 * for the upload workers (as many as --workers, each with its own store
 * connection and pipeline runs); the worker fills the answer and resumes
 * the connection. The wait queue is bounded: past it, 503.
 *
 * Threads: srv_h_* on libmicrohttpd's threads; upload_main on the upload
 * workers. The wait queue is under s->up_mu, the uploads-job table under
 * s->uj_mu.
 */
#define _GNU_SOURCE
#include "serve/serve.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/metrics.h"
#include "core/util.h"
#include "engine/search.h"
#include "engine/single.h"
#include "stages/pipeline.h"

/* ---- outputs as JSON ---- */

typedef struct outs_ctx {
	json_t *arr;
	const char *sha;
} outs_ctx;

static json_t *output_json(const char *sha, const pm_output_info *oi)
{
	char url[256];

	snprintf(url, sizeof url, "/api/assets/%s/%s", sha, oi->name);
	return json_pack("{s:s,s:s,s:s?,s:i,s:i,s:I,s:s?}", "name", oi->name,
			 "url", url, "format", oi->format, "width", oi->width,
			 "height", oi->height, "bytes", (json_int_t)oi->bytes,
			 "sha256", oi->sha256);
}

static int outs_cb(const pm_output_info *oi, void *ud)
{
	outs_ctx *c = ud;
	json_t *j = output_json(c->sha, oi);

	if (j)
		json_array_append_new(c->arr, j);
	return 0;
}

pm_status srv_outputs_json(pm_store *st, const char *sha256,
			   const char *pipeline_hash, json_t *arr, pm_err *err)
{
	outs_ctx c = {arr, sha256};
	return pm_store_outputs(st, sha256, pipeline_hash, NULL, outs_cb, &c,
				err);
}

/* ---- the upload workers ---- */

bool srv_submit_upload(srv_req *q)
{
	srv *s = q->s;
	bool ok;

	pthread_mutex_lock(&s->up_mu);
	ok = !s->up_stop && s->up_len < s->conf.max_waiting_uploads &&
	     s->up_len < (int)(sizeof s->up_q / sizeof s->up_q[0]);
	if (ok) {
		atomic_store(&q->async, 1);
		/* Suspend before a worker can resume it. */
		MHD_suspend_connection(q->conn);
		s->up_q[(s->up_head + s->up_len) %
			(int)(sizeof s->up_q / sizeof s->up_q[0])] = q;
		s->up_len++;
		pthread_cond_signal(&s->up_cv);
	}
	pthread_mutex_unlock(&s->up_mu);
	if (!ok) {
		srv_reply_error(q, PM_ERR_BUSY,
				"every worker is busy and %d uploads wait "
				"already; try again shortly",
				s->conf.max_waiting_uploads);
		srv_reply_header(q, "Retry-After", "1");
		pm_metric_inc(PM_M_UPLOADS, "overloaded", NULL, 1);
	}
	return ok;
}

/* A worker's state: its store connection. */
typedef struct up_state {
	pm_store *st;
	/* the vectors image search compares with, loaded once and again
	 * only when the store's stamp moves (this worker's own) */
	pm_vecset *vs;
	char vs_model[64];
	int64_t vs_stamp;
} up_state;

static void *upload_main(void *arg)
{
	srv *s = arg;
	up_state w = {0};
	pm_err e;

	if (pm_store_open(s->db, false, &w.st, &e))
		pm_log(PM_LOG_ERROR, "upload worker: %s", e.msg);
	for (;;) {
		srv_req *q;

		pthread_mutex_lock(&s->up_mu);
		while (!s->up_len && !s->up_stop)
			pthread_cond_wait(&s->up_cv, &s->up_mu);
		if (!s->up_len) {
			pthread_mutex_unlock(&s->up_mu);
			break;
		}
		q = s->up_q[s->up_head];
		s->up_head = (s->up_head + 1) %
			     (int)(sizeof s->up_q / sizeof s->up_q[0]);
		s->up_len--;
		s->up_busy++;
		pthread_mutex_unlock(&s->up_mu);

		srv_upload_work(s, q, &w);
		atomic_store(&q->async, 2);
		MHD_resume_connection(q->conn); /* on_request answers */

		pthread_mutex_lock(&s->up_mu);
		s->up_busy--;
		pthread_mutex_unlock(&s->up_mu);
	}
	pm_vecset_free(w.vs);
	pm_store_close(w.st);
	vips_thread_shutdown();
	return NULL;
}

pm_status srv_uploads_start(srv *s, pm_err *err)
{
	s->up_threads = calloc((size_t)s->workers, sizeof *s->up_threads);
	if (!s->up_threads)
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	for (s->n_up = 0; s->n_up < s->workers; s->n_up++)
		if (pthread_create(&s->up_threads[s->n_up], NULL, upload_main,
				   s))
			return pm_fail(err, PM_ERR_NOMEM,
				       "cannot start the upload workers");
	return PM_OK;
}

/* Every queued upload is still processed and answered, then the workers
 * exit. */
void srv_uploads_stop(srv *s)
{
	pthread_mutex_lock(&s->up_mu);
	s->up_stop = true;
	pthread_cond_broadcast(&s->up_cv);
	pthread_mutex_unlock(&s->up_mu);
	for (int i = 0; i < s->n_up; i++)
		pthread_join(s->up_threads[i], NULL);
	free(s->up_threads);
	s->up_threads = NULL;
	s->n_up = 0;
}

/* ---- POST /api/images ---- */

/* The pipeline a request names, with its overrides. */
static pm_status request_pipeline(srv_req *q, const char *dflt,
				  pm_pipeline **out, pm_err *e)
{
	const char *name = srv_arg(q, "pipeline");
	const char *sizes = srv_arg(q, "sizes");
	const char *formats = srv_arg(q, "formats");
	int64_t quality;
	pm_status st;

	if (!name)
		name = dflt;
	if (strchr(name, '/') || name[0] == '.')
		return pm_fail(e, PM_ERR_PIPELINE,
			       "unknown pipeline %.100s (built-in: %s)", name,
			       pm_pipeline_builtin_names());
	if (!pm_http_int_param(srv_arg(q, "quality"), 1, 100, 0, &quality))
		return pm_fail(e, PM_ERR_USAGE, "quality wants 1 to 100");
	st = pm_pipeline_load(name, out, e);
	if (st)
		return st == PM_ERR_NOT_FOUND ? PM_ERR_PIPELINE : st;
	st = pm_pipeline_apply_options(*out, sizes, formats, (int)quality, e);
	return st;
}

/* The job uploads of one pipeline are recorded in, created on first use. */
static pm_status uploads_job(srv *s, pm_store *st, const pm_pipeline *p,
			     int64_t *id, pm_err *e)
{
	const char *h = pm_pipeline_hash(p);
	char keysrc[4400], key[65];
	pm_job_spec spec;
	pm_status rs = PM_OK;

	pthread_mutex_lock(&s->uj_mu);
	for (int i = 0; i < s->n_uj; i++)
		if (strcmp(s->uj[i].hash, h) == 0) {
			*id = s->uj[i].job_id;
			goto out;
		}
	snprintf(keysrc, sizeof keysrc, "uploads\n%s\n%s", h, s->out_root);
	pm_sha256_hex(keysrc, strlen(keysrc), key);
	spec.key = key;
	spec.catalog = "(uploads)";
	spec.pipeline = pm_pipeline_name(p);
	spec.pipeline_hash = h;
	spec.pipeline_json = pm_pipeline_canonical(p);
	spec.out_dir = s->out_root;
	rs = pm_store_job_create(st, &spec, "uploads", id, e);
	if (!rs)
		rs = pm_store_job_state(st, *id, "uploads", NULL, false, e);
	if (!rs && s->n_uj < (int)(sizeof s->uj / sizeof s->uj[0])) {
		snprintf(s->uj[s->n_uj].hash, 65, "%s", h);
		s->uj[s->n_uj].job_id = *id;
		s->n_uj++;
	}
out:
	pthread_mutex_unlock(&s->uj_mu);
	return rs;
}

static bool have_image(srv_req *q)
{
	if (!q->file || q->file_len == 0) {
		srv_reply_error(q, PM_ERR_USAGE,
				"the body is empty: send the image bytes (or "
				"a multipart field \"file\")");
		return false;
	}
	return true;
}

void srv_h_image(srv_req *q)
{
	if (atomic_load(&q->s->draining)) {
		srv_reply_error(q, PM_ERR_BUSY, "the server is shutting down");
		srv_reply_header(q, "Retry-After", "5");
		return;
	}
	if (have_image(q))
		srv_submit_upload(q);
}

void srv_h_search_image(srv_req *q)
{
	if (have_image(q))
		srv_submit_upload(q);
}

/* The options every single-image request of an upload worker shares:
 * its pipeline run and store connection, the output folders, the limits
 * and the durability. The caller adds what differs (job, title,
 * record). */
static void single_opts(srv *s, up_state *w, pm_pipeline *p,
			pm_pipeline_run *pr, pm_single_opts *so)
{
	memset(so, 0, sizeof *so);
	so->pipe = p;
	so->pr = pr;
	so->st = w->st;
	so->out_root = s->out_root;
	so->outs = s->outs;
	so->limits = &s->o->limits;
	so->sync = s->o->durability == PM_SYNC_FILE;
}

static void do_upload(srv *s, srv_req *q, up_state *w)
{
	pm_pipeline *p = NULL;
	pm_pipeline_run *pr = NULL;
	pm_single_opts so = {0};
	pm_single_result res;
	pm_err e = {{0}};
	pm_status st;
	int64_t job;
	const char *title = srv_arg(q, "title");
	json_t *outs, *j;
	char ph[17];

	if (!w->st) {
		srv_reply_error(q, PM_ERR_STORE, "the store is not available");
		return;
	}
	st = request_pipeline(q, "thumbnails", &p, &e);
	if (!st)
		st = uploads_job(s, w->st, p, &job, &e);
	if (!st)
		st = pm_pipeline_run_new(p, &pr, &e);
	if (st)
		goto out;
	single_opts(s, w, p, pr, &so);
	so.job_id = job;
	so.title = title && strlen(title) <= 500 ? title : NULL;
	so.record = true;
	st = pm_single_process(&so, q->file, q->file_len, &res, &e);
	if (st)
		goto out;
	atomic_fetch_add(&s->items_total, 1);
	pm_metric_inc(PM_M_ITEMS, res.duplicate ? "duplicate" : "done", NULL,
		      1);
	pm_metric_obs(PM_M_ITEM_DURATION, NULL, NULL, res.ms / 1000.0);
	outs = json_array();
	st = srv_outputs_json(w->st, res.sha256, pm_pipeline_hash(p), outs, &e);
	if (st) {
		json_decref(outs);
		goto out;
	}
	snprintf(ph, sizeof ph, "%016llx", (unsigned long long)res.phash);
	j = json_pack(
	    "{s:s,s:s,s:i,s:i,s:I,s:s?,s:b,s:f,s:s,s:o}", "sha256", res.sha256,
	    "format", pm_format_name(res.header.format), "width", res.width,
	    "height", res.height, "bytes", (json_int_t)q->file_len, "phash",
	    res.has_phash ? ph : NULL, "duplicate", res.duplicate, "ms", res.ms,
	    "pipeline", pm_pipeline_name(p), "outputs", outs);
	srv_reply_json(q, 200, j);
	pm_metric_inc(PM_M_UPLOADS, "ok", NULL, 1);
out:
	if (st) {
		srv_reply_error(q, st, "%s", e.msg);
		pm_metric_inc(PM_M_UPLOADS, pm_status_code(st), NULL, 1);
	}
	pm_pipeline_run_free(pr);
	pm_pipeline_free(p);
}

/* ---- POST /api/search/image ---- */

#define NEAR_MAX 100

typedef struct near_ctx {
	uint64_t q;
	int max_d, limit, n;
	struct {
		char sha[65];
		char ph[65];
		int d;
	} best[NEAR_MAX];
} near_ctx;

/* One hit of pm_store_phash_near, which sends them nearest first, one
 * per source, at most limit. */
static int near_cb(const char *sha, const char *ph, uint64_t h, int d, void *ud)
{
	near_ctx *c = ud;

	(void)h;
	if (c->n >= c->limit)
		return 1;
	snprintf(c->best[c->n].sha, 65, "%s", sha);
	snprintf(c->best[c->n].ph, 65, "%s", ph);
	c->best[c->n].d = d;
	c->n++;
	return 0;
}

/* The limit nearest stored images to the query's vector (cosine, built-in
 * model), appended to arr as {sha256, score, title, outputs}. */
static pm_status embedding_hits(up_state *w, const pm_single_result *res,
				int limit, json_t *arr, pm_err *e)
{
	pm_store *st = w->st;
	pm_vecset *vs;
	pm_vec_hit hits[NEAR_MAX];
	pm_status rs;
	int64_t stamp = 0;
	int n;

	if (!res->embedding)
		return PM_OK;
	/* Loading 100k vectors takes ~0.5 s and the scan ~8 ms: keep them
	 * until a vector is added (docs/BENCHMARKS.md, "Search"). */
	rs = pm_store_embeddings_stamp(st, &stamp, e);
	if (rs)
		return rs;
	if (!w->vs || stamp != w->vs_stamp ||
	    strcmp(w->vs_model, res->embedding_model) != 0) {
		pm_vecset_free(w->vs);
		w->vs = NULL;
		rs = pm_vecset_load(st, res->embedding_model, &w->vs, e);
		if (rs)
			return rs;
		w->vs_stamp = stamp;
		snprintf(w->vs_model, sizeof w->vs_model, "%s",
			 res->embedding_model);
	}
	vs = w->vs;
	n = pm_vecset_dim(vs) == res->embedding_dim
		? pm_vecset_topk(vs, res->embedding, limit, NULL, hits)
		: 0;
	for (int i = 0; i < n; i++) {
		char title[512];
		const char *sha = pm_vecset_sha(vs, hits[i].index);
		json_t *outs = json_array();
		pm_store_title(st, sha, title, sizeof title, e);
		srv_outputs_json(st, sha, NULL, outs, e);
		json_array_append_new(
		    arr, json_pack("{s:s,s:f,s:s?,s:o}", "sha256", sha, "score",
				   (double)hits[i].score, "title",
				   title[0] ? title : NULL, "outputs", outs));
	}
	return PM_OK;
}

static void do_search_image(srv *s, srv_req *q, up_state *w)
{
	pm_pipeline *p = NULL;
	pm_pipeline_run *pr = NULL;
	pm_single_opts so = {0};
	pm_single_result res;
	pm_err e = {{0}};
	pm_status st;
	int64_t limit, maxd;
	near_ctx *c = NULL;
	json_t *arr, *emb;
	char ph[17];

	memset(&res, 0, sizeof res);

	if (!pm_http_int_param(srv_arg(q, "limit"), 1, NEAR_MAX, 10, &limit) ||
	    !pm_http_int_param(srv_arg(q, "max_distance"), 0, 64, 20, &maxd)) {
		srv_reply_error(q, PM_ERR_USAGE,
				"limit wants 1 to %d and max_distance 0 to 64",
				NEAR_MAX);
		return;
	}
	if (!w->st) {
		srv_reply_error(q, PM_ERR_STORE, "the store is not available");
		return;
	}
	/* Only the hash and the vector of the query image: nothing is
	 * written. */
	st = pm_pipeline_parse("{\"name\":\"query\",\"stages\":[{\"stage\":"
			       "\"embed\"},{\"stage\":\"phash\"}]}",
			       &p, &e);
	if (!st)
		st = pm_pipeline_run_new(p, &pr, &e);
	if (st)
		goto out;
	single_opts(s, w, p, pr, &so);
	so.record = false;
	so.want_embedding = true;
	st = pm_single_process(&so, q->file, q->file_len, &res, &e);
	if (st)
		goto out;
	if (!res.has_phash) {
		st = pm_fail(&e, PM_ERR_INTERNAL, "no hash for the query");
		goto out;
	}
	c = calloc(1, sizeof *c);
	if (!c) {
		st = pm_fail(&e, PM_ERR_NOMEM, "out of memory");
		goto out;
	}
	c->q = res.phash;
	c->max_d = (int)maxd;
	c->limit = (int)limit;
	/* the distances are computed by the store (SQL), not by loading
	 * every hash here */
	st = pm_store_phash_near(w->st, c->q, c->max_d, c->limit, near_cb, c,
				 &e);
	if (st)
		goto out;
	arr = json_array();
	for (int i = 0; i < c->n; i++) {
		char title[512];
		json_t *outs = json_array();
		pm_store_title(w->st, c->best[i].sha, title, sizeof title, &e);
		srv_outputs_json(w->st, c->best[i].sha, c->best[i].ph, outs,
				 &e);
		json_array_append_new(
		    arr,
		    json_pack("{s:s,s:i,s:s?,s:o}", "sha256", c->best[i].sha,
			      "distance", c->best[i].d, "title",
			      title[0] ? title : NULL, "outputs", outs));
	}
	emb = json_array();
	st = embedding_hits(w, &res, (int)limit, emb, &e);
	if (st) {
		json_decref(arr);
		json_decref(emb);
		goto out;
	}
	snprintf(ph, sizeof ph, "%016llx", (unsigned long long)res.phash);
	srv_reply_json(q, 200,
		       json_pack("{s:{s:s,s:s,s:s?},s:o,s:o}", "query", "phash",
				 ph, "sha256", res.sha256, "model",
				 res.embedding ? res.embedding_model : NULL,
				 "results", arr, "embedding", emb));
out:
	if (st)
		srv_reply_error(q, st, "%s", e.msg);
	free(res.embedding);
	free(c);
	pm_pipeline_run_free(pr);
	pm_pipeline_free(p);
}

void srv_upload_work(srv *s, srv_req *q, void *wstate)
{
	if (q->route >= 0 && strstr(q->path, "/search/"))
		do_search_image(s, q, wstate);
	else
		do_upload(s, q, wstate);
}

/* ---- GET /api/assets/{sha256}/{name} ---- */

static bool hex64(const char *s)
{
	return strlen(s) == 64 && strspn(s, "0123456789abcdef") == 64;
}

static bool safe_name(const char *s)
{
	size_t n = strlen(s);

	return n > 0 && n < 64 && s[0] != '.' &&
	       strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			 "0123456789._-") == n &&
	       !strstr(s, "..");
}

typedef struct find_ctx {
	char path[512];
	char sha[65];
	char format[16];
	bool found;
} find_ctx;

static int find_cb(const pm_output_info *oi, void *ud)
{
	find_ctx *f = ud;

	snprintf(f->path, sizeof f->path, "%s", oi->path);
	snprintf(f->sha, sizeof f->sha, "%s", oi->sha256 ? oi->sha256 : "");
	snprintf(f->format, sizeof f->format, "%s",
		 oi->format ? oi->format : "");
	f->found = true;
	return 1; /* the newest is enough */
}

static const char *format_ctype(const char *f)
{
	if (strcmp(f, "webp") == 0)
		return "image/webp";
	if (strcmp(f, "jpeg") == 0)
		return "image/jpeg";
	if (strcmp(f, "png") == 0)
		return "image/png";
	if (strcmp(f, "avif") == 0)
		return "image/avif";
	return "application/octet-stream";
}

/* A per-thread memo of asset lookups (HTTP threads only; no locks): an
 * output's file is content-addressed and never rewritten, so the store is
 * asked once per (sha, name) per thread and MEMO_TTL seconds, which keeps
 * SQLite and its file locks off the hot path of repeated GETs. A newer
 * output of the same name (another pipeline) shows within MEMO_TTL. */
#define MEMO_SLOTS 64
#define MEMO_TTL   10.0
typedef struct asset_memo {
	char sha[65];
	char name[64];
	double t; /* pm_now() when stored; 0 = empty */
	find_ctx f;
} asset_memo;
static __thread asset_memo memo[MEMO_SLOTS];

static asset_memo *memo_slot(const char *sha, const char *name)
{
	unsigned h = 2166136261u;
	for (const char *p = name; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	for (int i = 0; i < 16 && sha[i]; i++) /* hex: well mixed already */
		h = (h ^ (unsigned char)sha[i]) * 16777619u;
	return &memo[h % MEMO_SLOTS];
}

static bool memo_get(const char *sha, const char *name, find_ctx *f)
{
	asset_memo *m = memo_slot(sha, name);

	if (m->t == 0 || pm_now() - m->t > MEMO_TTL ||
	    strcmp(m->sha, sha) != 0 || strcmp(m->name, name) != 0)
		return false;
	*f = m->f;
	return true;
}

static void memo_put(const char *sha, const char *name, const find_ctx *f)
{
	asset_memo *m = memo_slot(sha, name);

	snprintf(m->sha, sizeof m->sha, "%.64s", sha);
	snprintf(m->name, sizeof m->name, "%.63s", name);
	m->f = *f;
	m->t = pm_now();
}

void srv_h_asset(srv_req *q)
{
	srv *s = q->s;
	const char *sha = q->caps[0], *name = q->caps[1];
	find_ctx f = {0};
	pm_err e;
	pm_store *st;
	char etag[80], len_s[64];
	int64_t a, b, size;
	int fd, r;

	if (!hex64(sha) || !safe_name(name)) {
		srv_reply_error(q, PM_ERR_USAGE,
				"an asset is /api/assets/SHA256/NAME: 64 hex "
				"digits and a file name such as 256.webp");
		return;
	}
	if (!memo_get(sha, name, &f)) {
		st = srv_store(s, &e);
		if (!st ||
		    pm_store_outputs(st, sha, NULL, name, find_cb, &f, &e)) {
			srv_reply_error(q, PM_ERR_STORE, "%s", e.msg);
			return;
		}
		if (f.found)
			memo_put(sha, name, &f);
	}
	if (!f.found || strstr(f.path, "..") || f.path[0] == '/') {
		srv_reply_error(q, PM_ERR_NOT_FOUND, "no output %s of %s", name,
				sha);
		return;
	}
	snprintf(etag, sizeof etag, "\"%.64s\"", f.sha);
	if (f.sha[0] &&
	    pm_http_etag_match(srv_header(q, "If-None-Match"), etag)) {
		srv_reply_text(q, 304, "", "", 0);
		srv_reply_header(q, "ETag", etag);
		srv_reply_header(q, "Cache-Control",
				 "public, max-age=31536000, immutable");
		return;
	}
	if (pm_outstore_open_fd(s->outs, f.path, &fd, &size, &e)) {
		srv_reply_error(q, PM_ERR_NOT_FOUND,
				"output %s of %s is recorded but its file is "
				"missing",
				name, sha);
		return;
	}
	srv_reply_text(q, 200, format_ctype(f.format), "", 0);
	free(q->reply.body);
	q->reply.body = NULL;
	q->reply.fd = fd; /* the reply owns it */
	q->reply.off = 0;
	q->reply.len = (size_t)size;
	q->reply.no_compress = true;
	if (f.sha[0])
		srv_reply_header(q, "ETag", etag);
	srv_reply_header(q, "Cache-Control",
			 "public, max-age=31536000, immutable");
	srv_reply_header(q, "Accept-Ranges", "bytes");
	r = pm_http_range(srv_header(q, "Range"), size, &a, &b);
	if (r < 0) {
		snprintf(len_s, sizeof len_s, "bytes */%lld", (long long)size);
		srv_reply_error(q, PM_ERR_TOO_LARGE,
				"the range is outside the %lld bytes",
				(long long)size);
		q->reply.status = 416;
		srv_reply_header(q, "Content-Range", len_s);
		return;
	}
	if (r > 0) {
		q->reply.status = 206;
		q->reply.off = a;
		q->reply.len = (size_t)(b - a + 1);
		snprintf(len_s, sizeof len_s, "bytes %lld-%lld/%lld",
			 (long long)a, (long long)b, (long long)size);
		srv_reply_header(q, "Content-Range", len_s);
	}
}

/* ---- GET /api/outputs ---- */

typedef struct recent_ctx {
	pm_store *st;
	json_t *arr;
} recent_ctx;

static int recent_cb(const pm_output_info *oi, void *ud)
{
	recent_ctx *c = ud;
	json_t *j = output_json(oi->asset_sha256, oi);
	json_t *outs = json_array();
	pm_err e;

	/* Every output of the asset, so a page can pick the size it
	 * wants (the dashboard's gallery takes the one nearest 256 px). */
	if (j && outs &&
	    srv_outputs_json(c->st, oi->asset_sha256, oi->pipeline_hash, outs,
			     &e) == PM_OK) {
		json_object_set(j, "outputs", outs);
	}
	json_decref(outs);
	if (j) {
		/* sha256 is the source's, as in the asset URL and search
		 * results; the file's own hash stays as output_sha256. */
		json_object_set(j, "output_sha256",
				json_object_get(j, "sha256"));
		json_object_set_new(j, "sha256", json_string(oi->asset_sha256));
		if (oi->title)
			json_object_set_new(j, "title", json_string(oi->title));
		json_array_append_new(c->arr, j);
	}
	return 0;
}

void srv_h_outputs(srv_req *q)
{
	int64_t limit;
	pm_err e;
	pm_store *st;
	json_t *arr;

	if (!pm_http_int_param(srv_arg(q, "limit"), 1, 200, 24, &limit)) {
		srv_reply_error(q, PM_ERR_USAGE, "limit wants 1 to 200");
		return;
	}
	st = srv_store(q->s, &e);
	arr = json_array();
	if (!st || pm_store_recent_outputs(st, (int)limit, recent_cb,
					   &(recent_ctx){st, arr}, &e)) {
		json_decref(arr);
		srv_reply_error(q, PM_ERR_STORE, "%s", e.msg);
		return;
	}
	srv_reply_json(q, 200, json_pack("{s:o}", "outputs", arr));
}

/* ---- GET /api/search/text ---- */

typedef struct text_ctx {
	pm_store *st;
	json_t *arr;
} text_ctx;

static int text_cb(const pm_search_hit *h, void *ud)
{
	text_ctx *c = ud;
	json_t *outs = json_array();
	pm_err e;

	if (h->sha256)
		srv_outputs_json(c->st, h->sha256, h->pipeline_hash, outs, &e);
	json_array_append_new(
	    c->arr,
	    json_pack("{s:I,s:s,s:s?,s:s?,s:s?,s:s?,s:s?,s:s?,s:b,s:f,s:o}",
		      "job_id", (json_int_t)h->job_id, "key", h->key, "id",
		      h->id, "title", h->title, "image", h->image, "sha256",
		      h->sha256, "category", h->category, "snippet", h->snippet,
		      "has_text", h->has_text, "score", h->score, "outputs",
		      outs));
	return 0;
}

void srv_h_search_text(srv_req *q)
{
	const char *text = srv_arg(q, "q");
	const char *cat = srv_arg(q, "category");
	const char *ht = srv_arg(q, "has_text");
	char match[1200];
	int64_t limit, job;
	pm_text_query tq = {0};
	text_ctx c;
	pm_err e;

	if (!pm_http_int_param(srv_arg(q, "limit"), 1, 100, 20, &limit)) {
		srv_reply_error(q, PM_ERR_USAGE, "limit wants 1 to 100");
		return;
	}
	if (!pm_http_int_param(srv_arg(q, "job"), 1, INT64_MAX, 0, &job)) {
		srv_reply_error(q, PM_ERR_USAGE, "job wants a job id");
		return;
	}
	if (ht && strcmp(ht, "true") && strcmp(ht, "false") &&
	    strcmp(ht, "1") && strcmp(ht, "0")) {
		srv_reply_error(q, PM_ERR_USAGE,
				"has_text wants true or false");
		return;
	}
	if (cat && strlen(cat) > 500) {
		srv_reply_error(q, PM_ERR_USAGE,
				"category wants at most 500 bytes");
		return;
	}
	if (!text || strlen(text) > 1000 ||
	    !pm_store_fts_query(text, match, sizeof match)) {
		srv_reply_error(q, PM_ERR_USAGE,
				"q wants some words to search for (at most "
				"1000 bytes)");
		return;
	}
	tq.match = match;
	tq.limit = (int)limit;
	tq.job_id = job;
	tq.category = cat && *cat ? cat : NULL;
	tq.has_text = ht && (strcmp(ht, "true") == 0 || strcmp(ht, "1") == 0);
	c.st = srv_store(q->s, &e);
	c.arr = json_array();
	if (!c.st || pm_store_search_text(c.st, &tq, text_cb, &c, &e)) {
		json_decref(c.arr);
		srv_reply_error(q, PM_ERR_STORE, "%s", e.msg);
		return;
	}
	srv_reply_json(q, 200,
		       json_pack("{s:s,s:o}", "query", text, "results", c.arr));
}
