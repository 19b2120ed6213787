/* cmd_worker.c — `pixmill worker --db URL`: one member of a fleet that
 * shares one store (queue and results). It picks the job of highest
 * priority from the store's queue, runs it in the engine's worker mode
 * (engine/run.h: claims batches under a lease, results complete their
 * claims), and repeats; idle, it waits for a notification (PostgreSQL
 * LISTEN/NOTIFY) or polls (SQLite).
 *
 * Leases: a heartbeat thread with a store connection of its own renews
 * this worker's leases every third of --lease and reaps expired ones
 * (any worker's) every few seconds, so the claims of a worker that died
 * go back to the queue and another takes them.
 * SIGTERM/SIGINT: stop claiming, finish the images in flight, release the
 * claims not started, exit 0 (a second signal leaves at once, 130).
 * A store error (PostgreSQL restarted) ends the current job's run; the
 * worker reconnects with a backoff (1, 2, 4 ... 30 s) and goes on.
 *
 * --listen: GET /metrics and GET /health (serve/probe.h) from a thread of
 * libmicrohttpd; it reads the worker's state (wstate) through atomics.
 *
 * Threads: the main thread runs the loop and the jobs (pm_run starts its
 * own); the heartbeat thread only renews and reaps; the probe's thread
 * only reads wstate (and the metrics); the signal handler only sets flags
 * (stop_flag, pm_run_cancel).
 */
#define _GNU_SOURCE
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cli/cli.h"
#include "core/metrics.h"
#include "core/util.h"
#include "engine/run.h"
#include "serve/probe.h"
#include "store/store.h"

#define MAX_SKIP    64
#define BACKOFF_MAX 30.0

typedef struct worker_cli {
	pm_run_cli c;
	const char *pipelines; /* "a,b" or NULL */
	double lease_s;
	int batch;
	const char *id;
	bool exit_when_idle;
	const char *listen, *port_file; /* --listen, --port-file or NULL */
} worker_cli;

/* set by the signal handler: stop claiming, drain, release, exit */
static atomic_int stop_flag;

static void on_signal(int sig)
{
	static volatile sig_atomic_t hits;

	(void)sig;
	if (hits++) {
		static const char msg[] = "\npixmill: worker stopped hard; its "
					  "claims go back to the queue when "
					  "their leases expire\n";
		if (write(2, msg, sizeof msg - 1) < 0) {
			/* nothing more to do in a signal handler */
		}
		_exit(130);
	}
	atomic_store(&stop_flag, 1);
	pm_run_cancel();
}

static int worker_opt(int id, const char *arg, void *ud)
{
	worker_cli *w = ud;
	long v;
	char *end;
	double d;

	switch (id) {
	case OPT_PIPELINES:
		if (!arg[0])
			return pm_cli_usage_error(
			    "worker", "--pipelines wants pipeline names");
		w->pipelines = arg;
		return 0;
	case OPT_LEASE:
		d = strtod(arg, &end);
		if (end == arg || *end || !(d >= 1 && d <= 86400))
			return pm_cli_usage_error(
			    "worker", "--lease wants 1 to 86400 seconds");
		w->lease_s = d;
		return 0;
	case OPT_BATCH:
		if (pm_cli_long(arg, 1, 10000, &v))
			return pm_cli_usage_error("worker",
						  "--batch wants 1 to 10000");
		w->batch = (int)v;
		return 0;
	case OPT_ID:
		if (!arg[0] || strlen(arg) > 100)
			return pm_cli_usage_error(
			    "worker", "--id wants a name of 1 to 100 bytes");
		w->id = arg;
		return 0;
	case OPT_EXIT_WHEN_IDLE:
		w->exit_when_idle = true;
		return 0;
	case OPT_LISTEN:
		w->listen = arg;
		return 0;
	case OPT_PORT_FILE:
		w->port_file = arg;
		return 0;
	}
	return pm_cli_run_opt(id, arg, &w->c);
}

/* Sleeps up to s seconds, less if asked to stop. */
static void nap(double s)
{
	double until = pm_now() + s;

	while (!atomic_load(&stop_flag) && pm_now() < until)
		usleep(50 * 1000);
}

/* ---- what /health and /metrics show ---- */

/* Written by the main and heartbeat threads, read by the probe's. */
typedef struct wstate {
	const char *id; /* the worker's name */
	char db[512];	/* the store URL, password masked */
	double t0;
	atomic_llong job;    /* the job being run, 0 idle */
	atomic_llong leases; /* claims held at the last renewal */
	/* whether the last store call of the main loop / the heartbeat
	 * worked: the store is up when both did */
	atomic_int loop_ok, hb_ok;
} wstate;

static bool store_up(wstate *ws)
{
	return atomic_load(&ws->loop_ok) && atomic_load(&ws->hb_ok);
}

/* A store call failed (any thread): counted, and the store is down until
 * a call of that thread works again. */
static void store_failed(atomic_int *ok)
{
	atomic_store(ok, 0);
	pm_metric_inc(PM_M_WORKER_STORE_ERRORS, NULL, NULL, 1);
}

static void on_scrape(void *ud)
{
	wstate *ws = ud;

	pm_metric_put(PM_M_WORKER_STORE_UP, NULL, NULL, store_up(ws) ? 1 : 0);
	pm_metric_put(PM_M_WORKER_JOB, NULL, NULL,
		      (double)atomic_load(&ws->job));
	pm_metric_put(PM_M_WORKER_LEASES, NULL, NULL,
		      (double)atomic_load(&ws->leases));
}

/* GET /health: 200 while the store answers ("degraded" when the Redis
 * configured is down: local limits apply), 503 while it does not. */
static json_t *health(void *ud, int *code)
{
	wstate *ws = ud;
	pm_fleet_stats fs;
	bool up = store_up(ws);
	long long job = atomic_load(&ws->job);
	json_t *h;

	pm_fleet_stats_get(&fs);
	*code = up ? 200 : 503;
	/* --id and the store's path are the user's bytes: null where they
	 * are not UTF-8 (JSON strings must be), the rest still shown */
	h = json_pack("{s:s,s:s,s:o?,s:{s:s,s:o?},s:s,s:o?,s:o,s:f,s:I,s:b}",
		      "status", up && (!fs.on || fs.up) ? "ok" : "degraded",
		      "version", PM_VERSION, "worker", json_string(ws->id),
		      "store", "state", up ? "up" : "down", "url",
		      json_string(ws->db), "redis", pm_fleet_state(),
		      "redis_detail", pm_cli_fleet_json(&fs), "job",
		      job ? json_integer(job) : json_null(), "uptime_s",
		      pm_now() - ws->t0, "leases_held",
		      (json_int_t)atomic_load(&ws->leases), "stopping",
		      atomic_load(&stop_flag) != 0);
	return h;
}

/* Starts the probe of --listen (none without it) and writes --port-file. */
static pm_status probe_start(const worker_cli *w, wstate *ws, pm_probe **p,
			     pm_err *e)
{
	unsigned port = 0;
	pm_status s;
	char pb[16];
	int n;

	*p = NULL;
	if (!w->listen)
		return PM_OK;
	for (int m = PM_M_WORKER_CLAIMS; m <= PM_M_WORKER_RUNS; m++)
		pm_metrics_show((pm_metric)m);
	pm_metrics_on_scrape(on_scrape, ws);
	s = pm_probe_start(w->listen, health, ws, &port, p, e);
	if (s)
		return s;
	pm_log(PM_LOG_INFO, "metrics and health on port %u (--listen %s)", port,
	       w->listen);
	if (!w->port_file)
		return PM_OK;
	n = snprintf(pb, sizeof pb, "%u\n", port);
	return pm_write_file_atomic(w->port_file, NULL, pb, (size_t)n, false,
				    e);
}

static void probe_stop(pm_probe *p, wstate *ws)
{
	pm_probe_stop(p);
	pm_metrics_off_scrape(on_scrape, ws);
}

/* ---- the heartbeat thread ---- */

typedef struct heartbeat {
	const char *db, *worker;
	double lease_s;
	wstate *ws;
	atomic_int quit;
	atomic_llong reaped, renew_failures;
} heartbeat;

static void *heartbeat_main(void *arg)
{
	heartbeat *h = arg;
	pm_store *st = NULL;
	double next_open = 0, next_renew = 0, next_reap = 0, backoff = 1;
	double every_renew = h->lease_s / 3, every_reap;

	every_reap = every_renew < 5 ? every_renew : 5;
	while (!atomic_load(&h->quit)) {
		double now = pm_now();
		pm_err e = {{0}};

		if (!st && now >= next_open) {
			if (pm_store_open(h->db, false, &st, &e)) {
				store_failed(&h->ws->hb_ok);
				pm_log(PM_LOG_WARN,
				       "heartbeat: store: %s; again in %.0f s",
				       e.msg, backoff);
				st = NULL;
				next_open = now + backoff;
				backoff = backoff * 2 > BACKOFF_MAX
					      ? BACKOFF_MAX
					      : backoff * 2;
			} else
				backoff = 1;
		}
		if (st && now >= next_renew) {
			int64_t n = 0;
			if (pm_store_lease_renew(st, h->worker, h->lease_s, &n,
						 &e)) {
				atomic_fetch_add(&h->renew_failures, 1);
				store_failed(&h->ws->hb_ok);
				pm_log(PM_LOG_WARN,
				       "heartbeat: renewing leases: %s", e.msg);
				pm_store_close(st);
				st = NULL;
				continue;
			}
			atomic_store(&h->ws->leases, n);
			atomic_store(&h->ws->hb_ok, 1);
			next_renew = now + every_renew;
		}
		if (st && now >= next_reap) {
			int64_t n = 0;
			if (pm_store_lease_reap(st, &n, &e)) {
				store_failed(&h->ws->hb_ok);
				pm_log(PM_LOG_WARN,
				       "heartbeat: reaping leases: %s", e.msg);
				pm_store_close(st);
				st = NULL;
				continue;
			}
			atomic_store(&h->ws->hb_ok, 1);
			if (n > 0) {
				atomic_fetch_add(&h->reaped, n);
				pm_metric_inc(PM_M_WORKER_REAPED, NULL, NULL,
					      (double)n);
				pm_log(PM_LOG_INFO,
				       "%lld expired leases put back in the "
				       "queue",
				       (long long)n);
			}
			next_reap = now + every_reap;
		}
		usleep(100 * 1000);
	}
	pm_store_close(st);
	return NULL;
}

/* ---- choosing a job ---- */

typedef struct loop {
	worker_cli *w;
	const char *worker;	/* lease owner */
	int64_t skip[MAX_SKIP]; /* jobs that cannot run here */
	int n_skip;
} loop;

static bool skipped(const loop *l, int64_t job)
{
	for (int i = 0; i < l->n_skip; i++)
		if (l->skip[i] == job)
			return true;
	return false;
}

/* Whether pipeline name is one --pipelines lists (or there is no list). */
static bool pipeline_ok(const loop *l, const char *name)
{
	const char *p = l->w->pipelines;
	size_t n;

	if (!p)
		return true;
	if (!name)
		return false;
	n = strlen(name);
	while (*p) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		if (len == n && strncmp(p, name, n) == 0)
			return true;
		p += len + (comma ? 1 : 0);
	}
	return false;
}

typedef struct job_look {
	const loop *l;
	char pipeline[128];
	char state[32];
	bool found;
	/* fallback scan: candidate jobs, oldest last */
	int64_t ids[256];
	int n;
} job_look;

static int job_look_cb(const pm_job_info *ji, void *ud)
{
	job_look *j = ud;

	snprintf(j->pipeline, sizeof j->pipeline, "%s",
		 ji->pipeline ? ji->pipeline : "");
	snprintf(j->state, sizeof j->state, "%s", ji->state ? ji->state : "");
	j->found = true;
	return 1;
}

/* A job cancelled (serve's DELETE /api/jobs/ID): its unclaimed records
 * were deleted with the cancel (pm_store_job_state), and claims of it
 * that come back (release, expiry) are deleted too. */
static bool cancelled(const char *state)
{
	return strcmp(state, "cancelled") == 0 ||
	       strcmp(state, "cancelling") == 0;
}

static int job_scan_cb(const pm_job_info *ji, void *ud)
{
	job_look *j = ud;

	if (j->n < (int)(sizeof j->ids / sizeof j->ids[0]) &&
	    !skipped(j->l, ji->id) && pipeline_ok(j->l, ji->pipeline) &&
	    ji->state && strcmp(ji->state, "done") != 0 &&
	    strcmp(ji->state, "failed") != 0 && !cancelled(ji->state))
		j->ids[j->n++] = ji->id;
	return 0;
}

/* The job to run next: the queue's next (highest priority, oldest), if
 * this worker may run it; else (--pipelines, or a job that cannot run
 * here) the oldest job it may run with records queued, which then runs
 * unpreempted. *job = 0 when there is none; *blocked = the queue holds
 * work, only none for this worker. */
static pm_status pick_job(loop *l, pm_store *st, int64_t *job, int *prio,
			  char *pipeline, size_t psize, bool *blocked,
			  pm_err *e)
{
	job_look j = {.l = l};
	int64_t next = 0;
	int p = 0;
	pm_status s;

	*job = 0;
	*blocked = false;
	s = pm_store_queue_next(st, &next, &p, e);
	if (s || !next)
		return s;
	if (!skipped(l, next)) {
		s = pm_store_job_get(st, next, job_look_cb, &j, e);
		if (s == PM_ERR_NOT_FOUND) /* a queue row of no job */
			s = PM_OK;
		if (s)
			return s;
		if (j.found && pipeline_ok(l, j.pipeline) &&
		    !cancelled(j.state)) {
			*job = next;
			*prio = p;
			snprintf(pipeline, psize, "%s", j.pipeline);
			return PM_OK;
		}
	}
	*blocked = true;
	s = pm_store_jobs(st, 1000, job_scan_cb, &j, e);
	for (int i = j.n - 1; !s && i >= 0; i--) {
		pm_queue_counts qc;
		s = pm_store_queue_counts(st, j.ids[i], &qc, e);
		if (s || qc.queued == 0)
			continue;
		j.found = false;
		s = pm_store_job_get(st, j.ids[i], job_look_cb, &j, e);
		if (s || !j.found)
			continue;
		*job = j.ids[i];
		*prio = INT_MAX; /* not preempted: the top job is not ours */
		snprintf(pipeline, psize, "%s", j.pipeline);
		return PM_OK;
	}
	return s;
}

/* ---- the store connection of the main loop ---- */

/* Opens *st, retrying a store that cannot be reached with a backoff
 * (logged) until it can or the worker is asked to stop. Other failures
 * (a URL that is not a store) are returned. */
static pm_status connect_store(const char *db, wstate *ws, pm_store **st,
			       pm_err *e)
{
	double backoff = 1;

	for (;;) {
		pm_status s = pm_store_open(db, false, st, e);
		if (!s) {
			atomic_store(&ws->loop_ok, 1);
			return PM_OK;
		}
		*st = NULL;
		store_failed(&ws->loop_ok);
		if (s != PM_ERR_STORE && s != PM_ERR_IO)
			return s;
		if (atomic_load(&stop_flag))
			return PM_ERR_CANCELLED;
		pm_log(PM_LOG_WARN, "store: %s; reconnecting in %.0f s", e->msg,
		       backoff);
		nap(backoff);
		if (atomic_load(&stop_flag))
			return pm_fail(e, PM_ERR_CANCELLED, "stopped");
		backoff = backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : backoff * 2;
	}
}

/* Whether a job run's failure says the store (or the connection to it)
 * is in trouble: reconnect and go on. */
static bool store_trouble(pm_status s)
{
	return s == PM_ERR_STORE || s == PM_ERR_IO || s == PM_ERR_NOMEM ||
	       s == PM_ERR_LOCKED;
}

typedef struct totals {
	int64_t jobs, done, failed, duplicates, lost, requeued, released;
	int64_t errors;
} totals;

static void print_text(const char *worker, const totals *t, double wall,
		       const heartbeat *h, const pm_fleet_stats *f)
{
	pm_cli_print_fleet(f);
	fprintf(stderr,
		"pixmill: worker %s: %lld job runs, %lld items done (%lld "
		"duplicates), %lld failed, %lld lost (lease taken over), "
		"%lld requeued, %lld claims released, %lld expired leases "
		"reaped, %.1f s\n",
		worker, (long long)t->jobs, (long long)t->done,
		(long long)t->duplicates, (long long)t->failed,
		(long long)t->lost, (long long)t->requeued,
		(long long)t->released, (long long)atomic_load(&h->reaped),
		wall);
}

static void print_json(const char *worker, const totals *t, double wall,
		       const heartbeat *h, const pm_fleet_stats *f)
{
	json_t *o = json_pack(
	    "{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:o}", "worker",
	    worker, "jobs", (json_int_t)t->jobs, "done", (json_int_t)t->done,
	    "failed", (json_int_t)t->failed, "duplicates",
	    (json_int_t)t->duplicates, "lost", (json_int_t)t->lost, "requeued",
	    (json_int_t)t->requeued, "released", (json_int_t)t->released,
	    "reaped", (json_int_t)atomic_load(&h->reaped), "store_errors",
	    (json_int_t)t->errors, "wall_s", wall, "redis",
	    pm_cli_fleet_json(f));
	char *txt = o ? json_dumps(o, JSON_INDENT(2)) : NULL;

	if (txt)
		printf("%s\n", txt);
	free(txt);
	json_decref(o);
}

/* Puts back every claim this worker still holds (after a job's run: the
 * ones a drain left unstarted; after a store error: the aborted run's). */
static void release_claims(pm_store *st, const char *worker, totals *t)
{
	int64_t n = 0;
	pm_err e = {{0}};

	if (!st)
		return;
	if (pm_store_lease_release(st, worker, &n, &e))
		pm_log(PM_LOG_WARN, "releasing claims: %s", e.msg);
	else if (n > 0) {
		t->released += n;
		pm_log(PM_LOG_INFO, "%lld unstarted claims back in the queue",
		       (long long)n);
	}
}

int pm_cmd_worker(int argc, char **argv)
{
	pm_fleet_stats fleet;
	worker_cli w;
	loop l;
	heartbeat hb;
	wstate ws;
	pm_probe *probe = NULL;
	totals t = {0};
	pthread_t t_hb;
	bool hb_started = false;
	pm_store *st = NULL;
	pm_err e = {{0}};
	pm_status s = PM_OK;
	char id[160], host[128];
	struct sigaction sa;
	double t0 = pm_now(), run_backoff = 1;
	bool quiet_next = false;
	int i;

	memset(&w, 0, sizeof w);
	pm_run_opts_default(&w.c.o);
	w.c.cmd = "worker";
	w.c.o.out_dir = NULL; /* the job's, unless --out */
	w.lease_s = 30;
	i = pm_cli_parse("worker", argc, argv, worker_opt, &w);
	if (i == -2)
		return 0;
	if (i < 0)
		return 2;
	if (i < argc)
		return pm_cli_usage_error("worker", "no arguments expected");
	if (!w.c.o.db)
		return pm_cli_usage_error(
		    "worker", "--db names the shared store (postgres://...)");
	if (w.port_file && !w.listen)
		return pm_cli_usage_error("worker",
					  "--port-file goes with --listen");
	if (w.id)
		snprintf(id, sizeof id, "%s", w.id);
	else {
		if (gethostname(host, sizeof host))
			snprintf(host, sizeof host, "localhost");
		host[sizeof host - 1] = 0;
		snprintf(id, sizeof id, "%s:%ld", host, (long)getpid());
	}
	pm_log_setup(w.c.verbose ? PM_LOG_DEBUG : PM_LOG_INFO, -1);
	/* Redis (optional): shared rate limits, lookup cache, progress */
	s = pm_fleet_start(w.c.redis, id, &e);
	if (s) {
		pm_cli_run_free(&w.c);
		pm_log(PM_LOG_ERROR, "%s", e.msg);
		return pm_status_exit(s);
	}
	memset(&ws, 0, sizeof ws);
	ws.id = id;
	ws.t0 = t0;
	pm_store_url_mask(w.c.o.db, ws.db, sizeof ws.db);
	atomic_store(&ws.hb_ok, 1);
	s = probe_start(&w, &ws, &probe, &e);
	if (s) {
		probe_stop(probe, &ws);
		pm_fleet_stop();
		pm_cli_run_free(&w.c);
		pm_log(PM_LOG_ERROR, "%s", e.msg);
		return pm_status_exit(s);
	}

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	atomic_store(&stop_flag, 0);

	memset(&l, 0, sizeof l);
	l.w = &w;
	l.worker = id;
	memset(&hb, 0, sizeof hb);
	hb.db = w.c.o.db;
	hb.worker = id;
	hb.lease_s = w.lease_s;
	hb.ws = &ws;

	w.c.o.progress = 0;
	w.c.o.worker_id = id;
	w.c.o.lease_s = w.lease_s;
	w.c.o.claim_batch = w.batch;
	w.c.o.cancel = &stop_flag;
	w.c.o.t_start = 0;

	s = connect_store(w.c.o.db, &ws, &st, &e);
	if (s) {
		probe_stop(probe, &ws);
		pm_fleet_stop();
		pm_cli_run_free(&w.c);
		if (s == PM_ERR_CANCELLED)
			return 0;
		pm_log(PM_LOG_ERROR, "%s", e.msg);
		return pm_status_exit(s);
	}
	{
		pm_log(PM_LOG_INFO,
		       "worker %s: store %s, %d threads, lease %.0f s%s%s", id,
		       ws.db,
		       w.c.o.workers > 0 ? w.c.o.workers
					 : (int)sysconf(_SC_NPROCESSORS_ONLN),
		       w.lease_s, w.pipelines ? ", pipelines " : "",
		       w.pipelines ? w.pipelines : "");
	}
	/* claims left by an earlier process of the same --id */
	release_claims(st, id, &t);
	hb_started = pthread_create(&t_hb, NULL, heartbeat_main, &hb) == 0;
	if (!hb_started)
		pm_log(PM_LOG_WARN, "no heartbeat thread: leases of long jobs "
				    "may expire");

	while (!atomic_load(&stop_flag)) {
		int64_t job = 0;
		int prio = 0;
		bool blocked = false;
		char pipeline[128] = "";
		pm_run_summary sum;

		if (!st) {
			s = connect_store(w.c.o.db, &ws, &st, &e);
			if (s == PM_ERR_CANCELLED)
				break;
			if (s) {
				pm_log(PM_LOG_ERROR, "%s", e.msg);
				break;
			}
			pm_log(PM_LOG_INFO, "store reachable again");
			release_claims(st, id, &t);
		}
		if (quiet_next) {
			/* the last run found nothing to claim: let the queue
			 * move before asking again */
			quiet_next = false;
			if (pm_store_queue_wait(st, 500, NULL, &e))
				goto store_error;
		}
		s = pick_job(&l, st, &job, &prio, pipeline, sizeof pipeline,
			     &blocked, &e);
		if (s)
			goto store_error;
		if (!job) {
			if (w.exit_when_idle) {
				pm_queue_counts qc;
				s = pm_store_queue_counts(st, 0, &qc, &e);
				if (s)
					goto store_error;
				if (qc.claimed == 0 &&
				    (qc.queued == 0 || blocked)) {
					pm_log(PM_LOG_INFO,
					       "nothing %s: exiting",
					       blocked ? "this worker can run "
							 "is queued"
						       : "queued or claimed");
					break;
				}
			}
			/* blocked (only other pipelines' work is queued):
			 * the fallback scan is not cheap, ask less often; a
			 * notification still wakes the worker at once */
			s = pm_store_queue_wait(st, blocked ? 10000 : 2000,
						NULL, &e);
			if (s)
				goto store_error;
			continue;
		}
		pm_log(PM_LOG_INFO, "job %lld (%s, priority %s%d): start",
		       (long long)job, pipeline, prio == INT_MAX ? ">=" : "",
		       prio == INT_MAX ? 0 : prio);
		w.c.o.queue_job = job;
		w.c.o.queue_priority = prio;
		atomic_store(&ws.job, job);
		s = pm_run(&w.c.o, &sum, &e);
		atomic_store(&ws.job, 0);
		/* what it committed counts, however it ended */
		t.done += sum.done;
		t.failed += sum.failed;
		t.duplicates += sum.duplicates;
		t.lost += sum.lost;
		t.requeued += sum.requeued;
		if (s && s != PM_ERR_CANCELLED) {
			pm_log(PM_LOG_ERROR, "job %lld: %s", (long long)job,
			       e.msg);
			if (store_trouble(s)) {
				t.errors++;
				store_failed(&ws.loop_ok);
				/* the run's claims: released once the store
				 * answers again (or they expire) */
				pm_store_close(st);
				st = NULL;
				nap(run_backoff);
				run_backoff = run_backoff * 2 > BACKOFF_MAX
						  ? BACKOFF_MAX
						  : run_backoff * 2;
				continue;
			}
			/* its pipeline or output root cannot be had here */
			if (l.n_skip < MAX_SKIP)
				l.skip[l.n_skip++] = job;
			pm_log(PM_LOG_WARN,
			       "job %lld: skipped by this worker from now on",
			       (long long)job);
			continue;
		}
		run_backoff = 1;
		t.jobs++;
		pm_metric_inc(PM_M_WORKER_RUNS, NULL, NULL, 1);
		pm_log(PM_LOG_INFO,
		       "job %lld: %s: %lld done, %lld failed, %lld lost, %lld "
		       "requeued in %.1f s; whole job %lld/%lld done, %lld "
		       "failed",
		       (long long)job,
		       s == PM_ERR_CANCELLED ? "stopped"
		       : sum.preempted	     ? "paused for a job of higher "
					       "priority"
					     : "finish",
		       (long long)sum.done, (long long)sum.failed,
		       (long long)sum.lost, (long long)sum.requeued, sum.wall_s,
		       (long long)sum.job_done, (long long)sum.job_items,
		       (long long)sum.job_failed);
		release_claims(st, id, &t);
		if (sum.seen == 0)
			quiet_next = true;
		s = PM_OK;
		continue;
	store_error:
		t.errors++;
		store_failed(&ws.loop_ok);
		pm_log(PM_LOG_WARN, "store: %s", e.msg);
		pm_store_close(st);
		st = NULL;
		s = PM_OK;
	}
	/* draining is over: whatever this worker still holds goes back */
	if (!st && atomic_load(&stop_flag)) {
		pm_err oe;
		if (pm_store_open(w.c.o.db, false, &st, &oe))
			st = NULL;
	}
	release_claims(st, id, &t);
	pm_store_close(st);
	if (hb_started) {
		atomic_store(&hb.quit, 1);
		pthread_join(t_hb, NULL);
	}
	probe_stop(probe, &ws);
	pm_cli_run_free(&w.c);
	pm_fleet_stats_get(&fleet);
	pm_fleet_stop();
	if (w.c.o.json)
		print_json(id, &t, pm_now() - t0, &hb, &fleet);
	else
		print_text(id, &t, pm_now() - t0, &hb, &fleet);
	if (s)
		return pm_status_exit(s);
	return 0;
}
