/* jobs.c — jobs over HTTP: submission (spooled to DATA/jobs/), the
 * scheduler that runs them one at a time with the batch engine, progress
 * (JSON and Server-Sent Events), items, cancel, retry and the dead-letter
 * queue.
 *
 * A submitted catalog is written to DATA/jobs/STAMP/catalog.csv (or
 * .jsonl) with its options in options.json, then the job is created in the
 * store ("queued") and its id queued here. The scheduler runs pm_run on it
 * with all the workers; pm_run skips what is done, so a job interrupted by
 * a shutdown or a crash simply runs again after a restart (srv_jobs_start
 * re-queues every unfinished job whose catalog is under DATA/jobs/).
 *
 * With --enqueue (a store shared with `pixmill worker` processes) no job
 * runs here: a submitted catalog goes into the store's shared queue
 * (pm_run_enqueue, with the body's "priority"), and a job's progress is
 * the queue's (pm_job_info.queue) and its items'.
 *
 * Threads: handlers on libmicrohttpd's threads; the scheduler on its own;
 * srv_sse_tick on the ticker. The queue and `running` are under s->mu;
 * SSE streams under s->sse_mu.
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

#include "core/util.h"
#include "fleet/fleet.h"
#include "ingest/catalog.h"
#include "stages/pipeline.h"

/* ---- job JSON ---- */

static bool final_state(const char *st)
{
	return strcmp(st, "done") == 0 || strcmp(st, "cancelled") == 0 ||
	       strcmp(st, "failed") == 0;
}

typedef struct job_view {
	srv *s;
	json_t *j;
} job_view;

static int job_cb(const pm_job_info *ji, void *ud)
{
	job_view *v = ud;
	srv *s = v->s;
	char self[64], ev[80], items[80];
	double progress;
	json_t *j;

	snprintf(self, sizeof self, "/api/jobs/%lld", (long long)ji->id);
	snprintf(ev, sizeof ev, "%s/events", self);
	snprintf(items, sizeof items, "%s/items", self);
	j = json_pack("{s:I,s:s?,s:s,s:s,s:f,s:f,s:I,s:I,s:I,s:I,s:I,s:s?,"
		      "s:{s:s,s:s,s:s}}",
		      "id", (json_int_t)ji->id, "name", ji->name, "state",
		      ji->state, "pipeline", ji->pipeline, "created",
		      ji->created, "updated", ji->updated, "items",
		      (json_int_t)ji->items, "done", (json_int_t)ji->done,
		      "failed", (json_int_t)ji->failed, "duplicates",
		      (json_int_t)ji->duplicates, "runs", (json_int_t)ji->runs,
		      "error", ji->error, "urls", "self", self, "events", ev,
		      "items", items);
	if (!j)
		return 1;
	pthread_mutex_lock(&s->mu);
	if (s->running == ji->id && atomic_load(&s->live.job_id) == ji->id) {
		pm_run_live *l = &s->live;
		int64_t total = atomic_load(&l->total);
		bool known = atomic_load(&l->total_known);
		int64_t now_done =
		    atomic_load(&l->done) + atomic_load(&l->failed);
		int64_t processed = now_done + atomic_load(&l->skipped);
		double el = atomic_load(&l->elapsed);
		double rate = el > 0.5 ? (double)now_done / el : 0;

		progress = total > 0 ? (double)processed / (double)total : 0;
		if (progress > 1)
			progress = 1;
		json_object_set_new(j, "total", json_integer(total));
		json_object_set_new(j, "total_known", json_boolean(known));
		json_object_set_new(j, "rate", json_real(rate));
		if (known && rate > 0)
			json_object_set_new(
			    j, "eta_s",
			    json_real((double)(total - processed) / rate));
		json_object_set_new(j, "cache_hits",
				    json_integer(atomic_load(&l->cache_hits)));
		json_object_set_new(j, "elapsed_s", json_real(el));
	} else if (ji->queue.on) {
		/* enqueued for workers: the queue says how far it is */
		int64_t total =
		    ji->queue.enqueued ? ji->queue.total : ji->items;
		progress = strcmp(ji->state, "done") == 0 ? 1.0
			   : total > 0
			       ? (double)(ji->done + ji->failed) / (double)total
			       : 0.0;
		if (progress > 1)
			progress = 1;
		json_object_set_new(j, "total", json_integer(total));
		json_object_set_new(j, "total_known",
				    json_boolean(ji->queue.enqueued));
		/* workers hold some of it: it runs, though not here */
		if (strcmp(ji->state, "queued") == 0 && ji->queue.claimed > 0)
			json_object_set_new(j, "state", json_string("running"));
		json_object_set_new(
		    j, "queue",
		    json_pack("{s:b,s:I,s:I,s:I,s:I}", "enqueued",
			      ji->queue.enqueued, "total",
			      (json_int_t)ji->queue.total, "queued",
			      (json_int_t)ji->queue.queued, "claimed",
			      (json_int_t)ji->queue.claimed, "workers",
			      (json_int_t)ji->queue.workers));
	} else {
		progress =
		    strcmp(ji->state, "done") == 0 ? 1.0
		    : ji->items > 0 && final_state(ji->state)
			? (double)(ji->done + ji->failed) / (double)ji->items
			: 0.0;
		json_object_set_new(j, "total", json_integer(ji->items));
		json_object_set_new(j, "total_known",
				    json_boolean(final_state(ji->state)));
	}
	pthread_mutex_unlock(&s->mu);
	json_object_set_new(j, "progress", json_real(progress));
	v->j = j;
	return 0;
}

/* The job's JSON (new reference) or NULL with err set. */
static json_t *job_json(srv *s, int64_t id, pm_err *err)
{
	job_view v = {s, NULL};
	pm_store *st = srv_store(s, err);

	if (!st || pm_store_job_get(st, id, job_cb, &v, err))
		return NULL;
	return v.j;
}

static bool job_id_arg(srv_req *q, int64_t *id)
{
	if (!pm_http_int_param(q->caps[0], 1, INT64_MAX, 0, id)) {
		srv_reply_error(q, PM_ERR_NOT_FOUND, "no job %.40s",
				q->caps[0]);
		return false;
	}
	return true;
}

static void reply_status(srv_req *q, pm_status st, const pm_err *e)
{
	srv_reply_error(q, st, "%s", e->msg);
}

/* ---- the queue and the scheduler ---- */

int srv_jobs_queued(srv *s)
{
	int n;
	pthread_mutex_lock(&s->mu);
	n = s->q_len;
	pthread_mutex_unlock(&s->mu);
	return n;
}

/* Under s->mu. */
static bool queued_locked(srv *s, int64_t id)
{
	for (int i = 0; i < s->q_len; i++)
		if (s->queue[(s->q_head + i) % SRV_QUEUE] == id)
			return true;
	return false;
}

/* Under s->mu: appends id unless it is queued or running. */
static bool enqueue_locked(srv *s, int64_t id)
{
	if (queued_locked(s, id) || s->running == id)
		return true;
	if (s->q_len == SRV_QUEUE)
		return false;
	s->queue[(s->q_head + s->q_len) % SRV_QUEUE] = id;
	s->q_len++;
	pthread_cond_signal(&s->cv);
	return true;
}

/* Under s->mu: removes id from the queue; false if it was not there. */
static bool dequeue_locked(srv *s, int64_t id)
{
	int i, n = 0;
	int64_t keep[SRV_QUEUE];

	if (!queued_locked(s, id))
		return false;
	for (i = 0; i < s->q_len; i++) {
		int64_t x = s->queue[(s->q_head + i) % SRV_QUEUE];
		if (x != id)
			keep[n++] = x;
	}
	for (i = 0; i < n; i++)
		s->queue[i] = keep[i];
	s->q_head = 0;
	s->q_len = n;
	return true;
}

/* The spooled options of a job (options.json beside its catalog). */
typedef struct job_files {
	char dir[PATH_MAX + 512];
	char catalog[PATH_MAX + 560];
	char pipeline[256], sizes[256], formats[128];
	int quality;
} job_files;

static pm_status read_options(const char *dir, job_files *f, pm_err *err)
{
	char path[PATH_MAX + 600];
	json_error_t je;
	json_t *j;
	const char *v;

	snprintf(path, sizeof path, "%s/options.json", dir);
	j = json_load_file(path, 0, &je);
	if (!j)
		return pm_fail(err, PM_ERR_NOT_FOUND, "%s: %s", path, je.text);
	v = json_string_value(json_object_get(j, "pipeline"));
	snprintf(f->pipeline, sizeof f->pipeline, "%s", v ? v : "thumbnails");
	v = json_string_value(json_object_get(j, "sizes"));
	snprintf(f->sizes, sizeof f->sizes, "%s", v ? v : "");
	v = json_string_value(json_object_get(j, "formats"));
	snprintf(f->formats, sizeof f->formats, "%s", v ? v : "");
	f->quality = (int)json_integer_value(json_object_get(j, "quality"));
	v = json_string_value(json_object_get(j, "catalog"));
	snprintf(f->catalog, sizeof f->catalog, "%s/%s", dir,
		 v ? v : "catalog.csv");
	json_decref(j);
	return PM_OK;
}

static void run_opts(srv *s, const job_files *f, pm_run_opts *ro)
{
	pm_run_opts_default(ro);
	ro->catalog = f->catalog;
	ro->out_dir = s->out_root;
	ro->db = s->db;
	ro->pipeline = f->pipeline;
	ro->sizes = f->sizes[0] ? f->sizes : NULL;
	ro->formats = f->formats[0] ? f->formats : NULL;
	ro->quality = f->quality;
	ro->workers = s->workers;
	ro->limits = s->o->limits;
	ro->min_dimension = s->o->min_dimension;
	ro->fetch = s->o->fetch;
	ro->fetch.breaker_wait = true;
	memcpy(ro->providers, s->o->providers, sizeof ro->providers);
	ro->n_providers = s->o->n_providers;
	ro->durability = s->o->durability;
	ro->progress = 0;
	ro->cancel = &s->run_cancel;
	ro->live = &s->live;
}

typedef struct catalog_of {
	char path[PATH_MAX];
} catalog_of;

static int catalog_cb(const pm_job_info *ji, void *ud)
{
	snprintf(((catalog_of *)ud)->path, PATH_MAX, "%s", ji->catalog);
	return 0;
}

static void run_job(srv *s, pm_store *st, int64_t id)
{
	catalog_of c = {{0}};
	job_files f;
	pm_run_opts ro;
	pm_run_summary sum;
	pm_err e = {{0}};
	pm_status rs;
	char *slash;
	bool user_cancel;

	memset(&f, 0, sizeof f);
	if (pm_store_job_get(st, id, catalog_cb, &c, &e))
		goto fail;
	snprintf(f.dir, sizeof f.dir, "%s", c.path);
	slash = strrchr(f.dir, '/');
	if (slash)
		*slash = 0;
	if (read_options(f.dir, &f, &e))
		goto fail;
	run_opts(s, &f, &ro);
	pm_log(PM_LOG_INFO, "job %lld: running (%s)", (long long)id, f.catalog);
	rs = pm_run(&ro, &sum, &e);
	atomic_fetch_add(&s->items_total, sum.done + sum.failed);
	pthread_mutex_lock(&s->mu);
	user_cancel = s->cancel_requested;
	s->running = 0;
	s->cancel_requested = false;
	atomic_store(&s->run_cancel, 0);
	pthread_mutex_unlock(&s->mu);
	pm_log(PM_LOG_INFO,
	       "job %lld: %s: %lld done, %lld failed, %lld skipped in %.1f s",
	       (long long)id, rs ? pm_status_code(rs) : "ok",
	       (long long)sum.done, (long long)sum.failed,
	       (long long)sum.skipped, sum.wall_s);
	if (user_cancel) {
		pm_store_job_state(st, id, "cancelled", NULL, true, &e);
		return;
	}
	if (rs == PM_ERR_CANCELLED || sum.interrupted) {
		/* A shutdown: it resumes after the restart. */
		pm_store_job_state(st, id, "interrupted", NULL, false, &e);
		return;
	}
	if (rs)
		goto fail;
	return;
fail:
	pthread_mutex_lock(&s->mu);
	s->running = 0;
	pthread_mutex_unlock(&s->mu);
	pm_log(PM_LOG_WARN, "job %lld failed: %s", (long long)id, e.msg);
	pm_store_job_state(st, id, "failed", e.msg, true, NULL);
}

static void *sched_main(void *arg)
{
	srv *s = arg;
	pm_store *st = NULL;
	pm_err e;

	if (pm_store_open(s->db, false, &st, &e)) {
		pm_log(PM_LOG_ERROR, "scheduler: %s", e.msg);
		return NULL;
	}
	for (;;) {
		int64_t id;

		pthread_mutex_lock(&s->mu);
		while (!s->q_len && !atomic_load(&s->draining))
			pm_cond_wait_ms(&s->cv, &s->mu, 500);
		if (atomic_load(&s->draining)) {
			pthread_mutex_unlock(&s->mu);
			break;
		}
		id = s->queue[s->q_head];
		s->q_head = (s->q_head + 1) % SRV_QUEUE;
		s->q_len--;
		s->running = id;
		s->cancel_requested = false;
		atomic_store(&s->run_cancel, 0);
		atomic_store(&s->live.job_id, 0);
		pthread_mutex_unlock(&s->mu);
		run_job(s, st, id);
	}
	pm_store_close(st);
	return NULL;
}

typedef struct recover_ctx {
	srv *s;
	int64_t ids[SRV_QUEUE];
	int n;
	pm_store *st;
} recover_ctx;

static int recover_cb(const pm_job_info *ji, void *ud)
{
	recover_ctx *r = ud;
	size_t jl = strlen(r->s->jobs_dir);

	if (strncmp(ji->catalog, r->s->jobs_dir, jl) != 0 ||
	    ji->catalog[jl] != '/')
		return 0; /* not one of ours (a CLI run, or uploads) */
	if (strcmp(ji->state, "cancelling") == 0) {
		pm_store_job_state(r->st, ji->id, "cancelled", NULL, true,
				   NULL);
		return 0;
	}
	if ((strcmp(ji->state, "queued") == 0 ||
	     strcmp(ji->state, "running") == 0 ||
	     strcmp(ji->state, "interrupted") == 0) &&
	    r->n < SRV_QUEUE)
		r->ids[r->n++] = ji->id;
	return 0;
}

pm_status srv_jobs_start(srv *s, pm_err *err)
{
	recover_ctx r = {.s = s};
	pm_status st;

	if (s->o->enqueue) {
		pm_log(PM_LOG_INFO, "jobs are enqueued for `pixmill worker` "
				    "processes, not run here (--enqueue)");
		return PM_OK;
	}
	st = pm_store_open(s->db, false, &r.st, err);
	if (!st)
		st = pm_store_jobs(r.st, 0, recover_cb, &r, err);
	pm_store_close(r.st);
	if (st)
		return st;
	/* Newest first from the store: queue oldest first. */
	pthread_mutex_lock(&s->mu);
	for (int i = r.n - 1; i >= 0; i--)
		enqueue_locked(s, r.ids[i]);
	pthread_mutex_unlock(&s->mu);
	if (r.n)
		pm_log(PM_LOG_INFO, "resuming %d unfinished job(s)", r.n);
	if (pthread_create(&s->sched, NULL, sched_main, s))
		return pm_fail(err, PM_ERR_NOMEM, "cannot start the scheduler");
	return PM_OK;
}

void srv_jobs_stop(srv *s)
{
	if (s->o->enqueue)
		return; /* no scheduler */
	pthread_mutex_lock(&s->mu);
	atomic_store(&s->draining, 1);
	atomic_store(&s->run_cancel, 1); /* the running job drains */
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	pthread_join(s->sched, NULL);
}

/* ---- handlers ---- */

/* Whether text looks like JSON Lines (first non-blank byte '{'). */
static bool looks_jsonl(const char *p, size_t n)
{
	size_t i = 0;

	if (n >= 3 && (unsigned char)p[0] == 0xEF &&
	    (unsigned char)p[1] == 0xBB && (unsigned char)p[2] == 0xBF)
		i = 3;
	while (i < n &&
	       (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'))
		i++;
	return i < n && p[i] == '{';
}

static void remove_spool(const char *dir)
{
	char p[PATH_MAX + 600];
	const char *names[] = {"catalog.csv", "catalog.jsonl", "options.json"};

	for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
		snprintf(p, sizeof p, "%s/%s", dir, names[i]);
		unlink(p);
	}
	rmdir(dir);
}

/* Reads the first record, so an unreadable catalog is a 400 now rather
 * than a failed job later. */
static pm_status check_catalog(const char *path, pm_err *err)
{
	pm_catalog_opts co = {.kind = PM_CATALOG_AUTO};
	pm_catalog *c = NULL;
	pm_record *rec = NULL;
	pm_status st = pm_catalog_open(path, &co, &c, err);

	if (st)
		return st;
	st = pm_catalog_next(c, &rec, err);
	if (!st && !rec)
		st = pm_fail(err, PM_ERR_CATALOG, "the catalog has no records");
	pm_record_free(rec);
	pm_catalog_close(c);
	return st;
}

void srv_h_job_create(srv_req *q)
{
	srv *s = q->s;
	const char *pipeline = srv_arg(q, "pipeline");
	const char *sizes = srv_arg(q, "sizes"),
		   *formats = srv_arg(q, "formats");
	const char *name = srv_arg(q, "name"), *qs = srv_arg(q, "quality");
	const char *ps = srv_arg(q, "priority");
	int64_t quality = 0, id = 0, priority = 0;
	job_files f;
	pm_run_opts ro;
	pm_err e = {{0}};
	pm_status st;
	json_t *opts, *j;
	char path[PATH_MAX + 600], *txt;
	bool jsonl, full;
	static atomic_uint seq;

	if (atomic_load(&s->draining)) {
		srv_reply_error(q, PM_ERR_BUSY, "the server is shutting down");
		srv_reply_header(q, "Retry-After", "5");
		return;
	}
	pthread_mutex_lock(&s->mu);
	full = s->q_len >= s->conf.max_queued_jobs;
	pthread_mutex_unlock(&s->mu);
	if (full) {
		srv_reply_error(q, PM_ERR_BUSY,
				"%d jobs are waiting already; try later",
				s->conf.max_queued_jobs);
		srv_reply_header(q, "Retry-After", "10");
		return;
	}
	if (!q->file || q->file_len == 0) {
		srv_reply_error(q, PM_ERR_CATALOG,
				"the body is empty: send a CSV or JSON Lines "
				"catalog (or a multipart field \"catalog\")");
		return;
	}
	if (!pm_http_int_param(qs, 1, 100, 0, &quality)) {
		srv_reply_error(q, PM_ERR_USAGE, "quality wants 1 to 100");
		return;
	}
	if (!pm_http_int_param(ps, -1000000, 1000000, 0, &priority)) {
		srv_reply_error(q, PM_ERR_USAGE,
				"priority wants -1000000 to 1000000");
		return;
	}
	if ((name && strlen(name) > 200) || (sizes && strlen(sizes) > 200) ||
	    (formats && strlen(formats) > 100) ||
	    (pipeline && strlen(pipeline) > 200)) {
		srv_reply_error(q, PM_ERR_USAGE, "an option is too long");
		return;
	}
	if (pipeline && (strchr(pipeline, '/') || pipeline[0] == '.')) {
		/* Only built-in pipelines by name: a path would let a client
		 * read files on the server. */
		srv_reply_error(q, PM_ERR_PIPELINE,
				"unknown pipeline %s (built-in: %s)", pipeline,
				pm_pipeline_builtin_names());
		return;
	}
	memset(&f, 0, sizeof f);
	snprintf(f.dir, sizeof f.dir, "%s/%.0f-%u-%d", s->jobs_dir,
		 pm_wall() * 1000, atomic_fetch_add(&seq, 1), (int)getpid());
	if (mkdir(f.dir, 0755)) {
		srv_reply_error(q, PM_ERR_IO, "cannot spool the catalog: %s",
				strerror(errno));
		return;
	}
	jsonl = looks_jsonl(q->file, q->file_len);
	snprintf(f.catalog, sizeof f.catalog, "%s/catalog.%s", f.dir,
		 jsonl ? "jsonl" : "csv");
	st = pm_write_file_atomic(f.catalog, NULL, q->file, q->file_len,
				  s->o->durability == PM_SYNC_FILE, &e);
	if (!st)
		st = check_catalog(f.catalog, &e);
	if (st)
		goto fail;
	snprintf(f.pipeline, sizeof f.pipeline, "%s",
		 pipeline ? pipeline : "thumbnails");
	snprintf(f.sizes, sizeof f.sizes, "%s", sizes ? sizes : "");
	snprintf(f.formats, sizeof f.formats, "%s", formats ? formats : "");
	f.quality = (int)quality;
	opts = json_pack("{s:s,s:s,s:s,s:s,s:i,s:s?}", "catalog",
			 jsonl ? "catalog.jsonl" : "catalog.csv", "pipeline",
			 f.pipeline, "sizes", f.sizes, "formats", f.formats,
			 "quality", f.quality, "name", name);
	txt = opts ? json_dumps(opts, JSON_INDENT(2)) : NULL;
	json_decref(opts);
	snprintf(path, sizeof path, "%s/options.json", f.dir);
	st = txt ? pm_write_file_atomic(path, NULL, txt, strlen(txt),
					s->o->durability == PM_SYNC_FILE, &e)
		 : pm_fail(&e, PM_ERR_NOMEM, "out of memory");
	free(txt);
	if (st)
		goto fail;
	run_opts(s, &f, &ro);
	if (s->o->enqueue) {
		/* for the workers: the records into the shared queue */
		int64_t added = 0, present = 0;
		ro.priority = (int)priority;
		ro.cancel = NULL;
		st = pm_run_enqueue(&ro, name, &id, &added, &present, &e);
		if (st)
			goto fail;
		pm_log(PM_LOG_INFO,
		       "job %lld: %lld records enqueued (%lld already), "
		       "priority %lld",
		       (long long)id, (long long)added, (long long)present,
		       (long long)priority);
		goto created;
	}
	st = pm_run_prepare(&ro, name, &id, &e);
	if (st)
		goto fail;
	pthread_mutex_lock(&s->mu);
	full = !enqueue_locked(s, id);
	pthread_mutex_unlock(&s->mu);
	if (full) {
		/* Stays "queued" in the store: a restart picks it up. */
		srv_reply_error(q, PM_ERR_BUSY, "the job queue is full");
		srv_reply_header(q, "Retry-After", "10");
		return;
	}
created:
	j = job_json(s, id, &e);
	if (!j) {
		reply_status(q, PM_ERR_STORE, &e);
		return;
	}
	snprintf(path, sizeof path, "/api/jobs/%lld", (long long)id);
	srv_reply_json(q, 202, j);
	srv_reply_header(q, "Location", path);
	return;
fail:
	remove_spool(f.dir);
	reply_status(q, st == PM_ERR_NOT_FOUND ? PM_ERR_PIPELINE : st, &e);
}

typedef struct list_ctx {
	srv *s;
	json_t *arr;
} list_ctx;

static int jobs_cb(const pm_job_info *ji, void *ud)
{
	list_ctx *l = ud;
	job_view v = {l->s, NULL};

	job_cb(ji, &v);
	if (v.j)
		json_array_append_new(l->arr, v.j);
	return 0;
}

void srv_h_jobs(srv_req *q)
{
	list_ctx l = {q->s, json_array()};
	int64_t limit;
	pm_err e;
	pm_store *st = srv_store(q->s, &e);

	if (!pm_http_int_param(srv_arg(q, "limit"), 1, 1000, 50, &limit)) {
		json_decref(l.arr);
		srv_reply_error(q, PM_ERR_USAGE, "limit wants 1 to 1000");
		return;
	}
	if (!st || pm_store_jobs(st, (int)limit, jobs_cb, &l, &e)) {
		json_decref(l.arr);
		reply_status(q, PM_ERR_STORE, &e);
		return;
	}
	srv_reply_json(q, 200, json_pack("{s:o}", "jobs", l.arr));
}

void srv_h_job_get(srv_req *q)
{
	int64_t id;
	pm_err e;
	json_t *j;

	if (!job_id_arg(q, &id))
		return;
	j = job_json(q->s, id, &e);
	if (!j) {
		reply_status(q, PM_ERR_NOT_FOUND, &e);
		return;
	}
	srv_reply_json(q, 200, j);
}

typedef struct items_ctx {
	pm_store *st;
	json_t *arr;
	int64_t last;
	int n, limit;
	bool more; /* a row past the page exists: there is a next page */
	pm_status err;
	pm_err e;
} items_ctx;

static int item_cb(const pm_item_info *ii, void *ud)
{
	items_ctx *c = ud;
	json_t *outs, *j;

	if (c->n == c->limit) {
		/* The extra row asked for: the page is full and more follow. */
		c->more = true;
		return 1;
	}
	outs = json_array();
	if (ii->sha256 && ii->pipeline_hash && strcmp(ii->state, "done") == 0) {
		c->err = srv_outputs_json(c->st, ii->sha256, ii->pipeline_hash,
					  outs, &c->e);
		if (c->err) {
			json_decref(outs);
			return 1;
		}
	}
	j = json_pack("{s:s,s:I,s:s?,s:s?,s:s?,s:s,s:s,s:s?,s:s?,s:b,s:i,"
		      "s:f,s:o}",
		      "key", ii->key, "ordinal", (json_int_t)ii->ordinal, "id",
		      ii->id, "title", ii->title, "image", ii->image, "state",
		      ii->state, "code", ii->code, "error", ii->error, "sha256",
		      ii->sha256, "duplicate", ii->duplicate, "attempts",
		      ii->attempts, "latency_ms", ii->latency_ms, "outputs",
		      outs);
	if (j && ii->candidates)
		json_object_set_new(j, "candidates",
				    json_loads(ii->candidates, 0, NULL));
	if (j)
		json_array_append_new(c->arr, j);
	c->last = (int64_t)ii->ordinal;
	c->n++;
	return 0;
}

void srv_h_job_items(srv_req *q)
{
	int64_t id, limit, cursor;
	const char *state = srv_arg(q, "state");
	items_ctx c = {0};
	pm_err e = {{0}};
	pm_status st;
	char next[32];

	if (!job_id_arg(q, &id))
		return;
	if (state && strcmp(state, "done") && strcmp(state, "failed")) {
		srv_reply_error(q, PM_ERR_USAGE, "state wants done or failed");
		return;
	}
	if (!pm_http_int_param(srv_arg(q, "limit"), 1, 500, 100, &limit) ||
	    !pm_http_int_param(srv_arg(q, "cursor"), 0, INT64_MAX, 0,
			       &cursor)) {
		srv_reply_error(q, PM_ERR_USAGE,
				"limit wants 1 to 500 and cursor a value "
				"from next_cursor");
		return;
	}
	c.st = srv_store(q->s, &e);
	if (!c.st || pm_store_job_get(c.st, id, NULL, NULL, &e)) {
		reply_status(q, c.st ? PM_ERR_NOT_FOUND : PM_ERR_STORE, &e);
		return;
	}
	c.arr = json_array();
	c.limit = (int)limit;
	/* One row more than the page: next_cursor is null unless it exists. */
	st = pm_store_items(c.st, id, state, cursor, (int)limit + 1, item_cb,
			    &c, &e);
	if (st || c.err) {
		json_decref(c.arr);
		reply_status(q, st ? st : c.err, st ? &e : &c.e);
		return;
	}
	snprintf(next, sizeof next, "%lld", (long long)c.last);
	srv_reply_json(q, 200,
		       json_pack("{s:o,s:s?}", "items", c.arr, "next_cursor",
				 c.more ? next : NULL));
}

typedef struct state_of {
	char state[32];
} state_of;

static int state_cb(const pm_job_info *ji, void *ud)
{
	snprintf(((state_of *)ud)->state, 32, "%s", ji->state);
	return 0;
}

void srv_h_job_cancel(srv_req *q)
{
	srv *s = q->s;
	int64_t id;
	state_of so = {{0}};
	pm_err e;
	pm_store *st;
	const char *to = NULL;
	json_t *j;

	if (!job_id_arg(q, &id))
		return;
	st = srv_store(s, &e);
	if (!st || pm_store_job_get(st, id, state_cb, &so, &e)) {
		reply_status(q, st ? PM_ERR_NOT_FOUND : PM_ERR_STORE, &e);
		return;
	}
	pthread_mutex_lock(&s->mu);
	if (s->running == id) {
		s->cancel_requested = true;
		atomic_store(&s->run_cancel, 1); /* the run drains */
		to = "cancelling";
	} else if (dequeue_locked(s, id) ||
		   strcmp(so.state, "interrupted") == 0 ||
		   strcmp(so.state, "queued") == 0 ||
		   /* run by workers: they see it within 5 s and stop
		    * claiming its records */
		   (s->o->enqueue && strcmp(so.state, "running") == 0)) {
		to = "cancelled";
	}
	pthread_mutex_unlock(&s->mu);
	if (!to) {
		srv_reply_error(q, PM_ERR_CONFLICT, "job %lld is %s already",
				(long long)id, so.state);
		return;
	}
	if (pm_store_job_state(st, id, to, NULL, strcmp(to, "cancelled") == 0,
			       &e)) {
		reply_status(q, PM_ERR_STORE, &e);
		return;
	}
	j = job_json(s, id, &e);
	srv_reply_json(q, 202, j);
}

void srv_h_job_retry(srv_req *q)
{
	srv *s = q->s;
	int64_t id, n = 0;
	const char *reason = srv_arg(q, "reason");
	state_of so = {{0}};
	pm_err e;
	pm_store *st;
	bool ok;

	if (!job_id_arg(q, &id))
		return;
	if (atomic_load(&s->draining)) {
		srv_reply_error(q, PM_ERR_BUSY, "the server is shutting down");
		return;
	}
	st = srv_store(s, &e);
	if (!st || pm_store_job_get(st, id, state_cb, &so, &e)) {
		reply_status(q, st ? PM_ERR_NOT_FOUND : PM_ERR_STORE, &e);
		return;
	}
	if (strcmp(so.state, "uploads") == 0) {
		srv_reply_error(q, PM_ERR_CONFLICT,
				"uploads are not retried: upload again");
		return;
	}
	if (pm_store_retry_failed(st, id, reason, NULL, &n, &e)) {
		reply_status(q, PM_ERR_STORE, &e);
		return;
	}
	pthread_mutex_lock(&s->mu);
	/* --enqueue: the store put them back in the workers' queue */
	ok = s->o->enqueue || enqueue_locked(s, id);
	pthread_mutex_unlock(&s->mu);
	if (!ok) {
		srv_reply_error(q, PM_ERR_BUSY, "the job queue is full");
		return;
	}
	if (s->running != id)
		pm_store_job_state(st, id, "queued", NULL, false, &e);
	srv_reply_json(q, 202,
		       json_pack("{s:I,s:I,s:s}", "id", (json_int_t)id,
				 "retried", (json_int_t)n, "state", "queued"));
}

typedef struct failed_ctx {
	json_t *arr;
} failed_ctx;

static int failed_cb(const pm_failed_info *fi, void *ud)
{
	failed_ctx *c = ud;
	json_t *j = json_pack("{s:I,s:s,s:s?,s:s,s:s?,s:i,s:f}", "job_id",
			      (json_int_t)fi->job_id, "key", fi->key, "image",
			      fi->image, "code", fi->code, "error", fi->error,
			      "attempts", fi->attempts, "updated", fi->updated);
	if (j)
		json_array_append_new(c->arr, j);
	return 0;
}

void srv_h_failed(srv_req *q)
{
	int64_t job, limit;
	failed_ctx c;
	pm_err e;
	pm_store *st;

	if (!pm_http_int_param(srv_arg(q, "job"), 0, INT64_MAX, 0, &job) ||
	    !pm_http_int_param(srv_arg(q, "limit"), 1, 1000, 100, &limit)) {
		srv_reply_error(q, PM_ERR_USAGE,
				"job wants a job id and limit 1 to 1000");
		return;
	}
	st = srv_store(q->s, &e);
	c.arr = json_array();
	if (!st || pm_store_failed(st, job, srv_arg(q, "reason"), NULL,
				   (int)limit, failed_cb, &c, &e)) {
		json_decref(c.arr);
		reply_status(q, PM_ERR_STORE, &e);
		return;
	}
	srv_reply_json(q, 200, json_pack("{s:o}", "items", c.arr));
}

/* ---- Server-Sent Events ---- */

typedef struct sse_stream {
	srv *s;
	struct MHD_Connection *conn;
	int64_t job_id;
	char buf[8192]; /* the event being sent */
	size_t len, pos;
	char *last;	/* data of the last progress event, malloc'd */
	double last_t;	/* when it was sent (pm_now) */
	bool ended;	/* the end event is queued: close after it */
	bool fleet;	/* /api/fleet/events: the fleet's messages */
	uint64_t fseq;	/* the last fleet message sent (fleet.h) */
	bool suspended; /* waiting for the ticker (under sse_mu) */
	bool closing;	/* server shutdown (under sse_mu) */
	struct sse_stream *next;
} sse_stream;

static void sse_event(sse_stream *ss, const char *ev, const char *data)
{
	int n = snprintf(ss->buf, sizeof ss->buf, "event: %s\ndata: %s\n\n", ev,
			 data);
	ss->len = n < (int)sizeof ss->buf ? (size_t)n : sizeof ss->buf - 1;
	ss->pos = 0;
}

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max);

/* Parks a stream that has nothing to send until the next tick. */
static ssize_t sse_park(sse_stream *ss)
{
	pthread_mutex_lock(&ss->s->sse_mu);
	ss->suspended = true;
	MHD_suspend_connection(ss->conn);
	pthread_mutex_unlock(&ss->s->sse_mu);
	return 0;
}

/* sse_read of /api/fleet/events: the next message of the fleet's feed
 * (fleet.h) as an `event: fleet`, a ping when idle, `end` at shutdown. */
static ssize_t fleet_read(sse_stream *ss, bool closing, void *cls, uint64_t pos,
			  char *buf, size_t max)
{
	char msg[PM_FLEET_FEED_MSG];

	if (closing) {
		sse_event(ss, "end", "{}");
		ss->ended = true;
	} else if (pm_fleet_feed_next(&ss->fseq, msg, sizeof msg)) {
		sse_event(ss, "fleet", msg);
		ss->last_t = pm_now();
	} else if (pm_now() - ss->last_t >= 15) {
		ss->len =
		    (size_t)snprintf(ss->buf, sizeof ss->buf, ": ping\n\n");
		ss->pos = 0;
		ss->last_t = pm_now();
	}
	if (ss->pos < ss->len)
		return sse_read(cls, pos, buf, max);
	return sse_park(ss);
}

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	sse_stream *ss = cls;
	srv *s = ss->s;
	bool closing;
	pm_err e;
	json_t *j;
	char *data;
	const char *state;
	bool fin;

	(void)pos;
	if (ss->pos < ss->len) {
		size_t n = ss->len - ss->pos;
		if (n > max)
			n = max;
		memcpy(buf, ss->buf + ss->pos, n);
		ss->pos += n;
		return (ssize_t)n;
	}
	if (ss->ended)
		return MHD_CONTENT_READER_END_OF_STREAM;
	pthread_mutex_lock(&s->sse_mu);
	closing = ss->closing;
	pthread_mutex_unlock(&s->sse_mu);
	if (ss->fleet)
		return fleet_read(ss, closing, cls, pos, buf, max);
	j = job_json(s, ss->job_id, &e);
	/* outside a handler: nothing else gives the connection back */
	srv_store_release(s);
	if (!j)
		return MHD_CONTENT_READER_END_WITH_ERROR;
	state = json_string_value(json_object_get(j, "state"));
	fin = state && final_state(state); /* before j (and state) go */
	data = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (!data)
		return MHD_CONTENT_READER_END_WITH_ERROR;
	if (fin || closing) {
		sse_event(ss, "end", data);
		ss->ended = true;
	} else if (!ss->last ||
		   (strcmp(ss->last, data) && pm_now() - ss->last_t >= 0.9)) {
		sse_event(ss, "progress", data);
		ss->last_t = pm_now();
		free(ss->last);
		ss->last = data; /* the stream owns it now */
		data = NULL;
	} else if (pm_now() - ss->last_t >= 15) {
		/* A comment keeps proxies from closing an idle stream. */
		ss->len =
		    (size_t)snprintf(ss->buf, sizeof ss->buf, ": ping\n\n");
		ss->pos = 0;
		ss->last_t = pm_now();
	}
	free(data);
	if (ss->pos < ss->len)
		return sse_read(cls, pos, buf, max);
	return sse_park(ss); /* nothing new: until the next tick */
}

static void sse_free(void *cls)
{
	sse_stream *ss = cls;
	srv *s = ss->s;

	pthread_mutex_lock(&s->sse_mu);
	for (sse_stream **p = &s->sse; *p; p = &(*p)->next)
		if (*p == ss) {
			*p = ss->next;
			break;
		}
	pthread_mutex_unlock(&s->sse_mu);
	free(ss->last);
	free(ss);
}

/* Starts the event stream ss (filled in by the caller) as q's reply. */
static void sse_reply(srv_req *q, sse_stream *ss)
{
	srv *s = q->s;
	struct MHD_Response *resp;

	resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096,
						 sse_read, ss, sse_free);
	if (!resp) {
		free(ss);
		srv_reply_error(q, PM_ERR_NOMEM, "out of memory");
		return;
	}
	pthread_mutex_lock(&s->sse_mu);
	ss->next = s->sse; /* the list holds it until sse_free */
	s->sse = ss;
	pthread_mutex_unlock(&s->sse_mu);
	srv_reply_text(q, 200, "text/event-stream", "", 0);
	q->reply.resp = resp; /* the reply owns it until it is queued */
	q->reply.no_compress = true;
	srv_reply_header(q, "Cache-Control", "no-cache");
	srv_reply_header(q, "X-Accel-Buffering", "no");
}

void srv_h_fleet_events(srv_req *q)
{
	sse_stream *ss;

	if (strcmp(pm_fleet_state(), "off") == 0) {
		srv_reply_error(q, PM_ERR_NOT_FOUND,
				"this server runs without --redis: no fleet");
		return;
	}
	ss = calloc(1, sizeof *ss);
	if (!ss) {
		srv_reply_error(q, PM_ERR_NOMEM, "out of memory");
		return;
	}
	ss->s = q->s;
	ss->conn = q->conn;
	ss->fleet = true;
	ss->fseq = pm_fleet_feed_head(); /* from now on */
	ss->last_t = pm_now();
	sse_reply(q, ss);
}

void srv_h_job_events(srv_req *q)
{
	srv *s = q->s;
	int64_t id;
	pm_err e;
	json_t *j;
	sse_stream *ss;

	if (!job_id_arg(q, &id))
		return;
	j = job_json(s, id, &e);
	if (!j) {
		reply_status(q, PM_ERR_NOT_FOUND, &e);
		return;
	}
	json_decref(j);
	ss = calloc(1, sizeof *ss);
	if (!ss) {
		srv_reply_error(q, PM_ERR_NOMEM, "out of memory");
		return;
	}
	ss->s = s;
	ss->conn = q->conn;
	ss->job_id = id;
	sse_reply(q, ss);
}

/* Wakes every parked stream (ticker thread). The connections are collected
 * under the lock and resumed outside it: a parked connection cannot close,
 * so its stream stays valid until resumed. */
static void sse_wake(srv *s, bool closing)
{
	struct MHD_Connection *wake[256];
	int n = 0;

	pthread_mutex_lock(&s->sse_mu);
	for (sse_stream *ss = s->sse; ss; ss = ss->next) {
		if (closing)
			ss->closing = true;
		if (ss->suspended && n < 256) {
			ss->suspended = false;
			wake[n++] = ss->conn;
		}
	}
	pthread_mutex_unlock(&s->sse_mu);
	for (int i = 0; i < n; i++)
		MHD_resume_connection(wake[i]);
}

void srv_sse_tick(srv *s)
{
	sse_wake(s, false);
}

void srv_sse_stop(srv *s)
{
	sse_wake(s, true);
	usleep(100 * 1000); /* let the streams send their end event */
	sse_wake(s, true);
}
