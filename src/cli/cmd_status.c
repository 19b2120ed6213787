/* cmd_status.c — `pixmill status`: jobs with their counts and the reasons
 * their items failed, as text or JSON; for jobs in the shared queue
 * (pixmill worker) their queue figures, and with --job J --item KEY one
 * item's attempt history.
 *
 * Threads: main thread only.
 */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cli/cli.h"
#include "fleet/fleet.h"
#include "fleet/redis.h"
#include "store/store.h"

typedef struct status_cli {
	const char *db;
	bool json;
	long limit;
	long long job;	  /* --job: only this job (0 = every job) */
	const char *item; /* --item: this item's queue history */
	bool limit_set;
	bool watch;
	const char *redis;
} status_cli;

static int status_opt(int id, const char *arg, void *ud)
{
	status_cli *c = ud;

	switch (id) {
	case OPT_DB:
		c->db = arg;
		break;
	case OPT_JSON:
		c->json = true;
		break;
	case OPT_LIMIT:
		if (pm_cli_long(arg, 1, LONG_MAX, &c->limit))
			return pm_cli_usage_error("status",
						  "--limit wants a count");
		c->limit_set = true;
		break;
	case OPT_JOB:
		return pm_cli_job("status", arg, &c->job);
	case OPT_ITEM:
		c->item = arg;
		break;
	case OPT_WATCH:
		c->watch = true;
		break;
	case OPT_REDIS: {
		pm_redis_url u;
		pm_err e;
		if (pm_redis_url_parse(arg, &u, &e))
			return pm_cli_usage_error("status", "%s", e.msg);
		c->redis = arg;
		break;
	}
	}
	return 0;
}

typedef struct status_ctx {
	pm_store *st;
	status_cli *c;
	json_t *arr;
	int n;
} status_ctx;

static int failure_json(const char *code, const char *example, int64_t count,
			void *ud)
{
	json_array_append_new(ud, json_pack("{s:s,s:s,s:I}", "code", code,
					    "example", example ? example : "",
					    "count", (json_int_t)count));
	return 0;
}

static int failure_text(const char *code, const char *example, int64_t count,
			void *ud)
{
	(void)ud;
	printf("      %-16s %8lld  e.g. %s\n", code, (long long)count,
	       example ? example : "");
	return 0;
}

/* The queue figures of a queue job: as a JSON object, or a text line. */
static json_t *queue_json(pm_store *st, const pm_job_info *j)
{
	pm_queue_counts qc;
	pm_err err;

	if (pm_store_queue_counts(st, j->id, &qc, &err) != PM_OK)
		memset(&qc, 0, sizeof qc);
	/* pruned: `pixmill queue prune` deleted the job's queue rows and
	 * events, so the figures below are zero (its items count) */
	return json_pack(
	    "{s:b,s:b,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "enqueued",
	    j->queue.enqueued, "pruned", qc.pruned > 0, "total",
	    (json_int_t)j->queue.total, "queued", (json_int_t)j->queue.queued,
	    "claimed", (json_int_t)j->queue.claimed, "workers",
	    (json_int_t)j->queue.workers, "done", (json_int_t)qc.done, "failed",
	    (json_int_t)qc.failed, "expired", (json_int_t)qc.expired, "retried",
	    (json_int_t)qc.retried);
}

static void queue_text(pm_store *st, const pm_job_info *j)
{
	pm_queue_counts qc;
	pm_err err;

	if (pm_store_queue_counts(st, j->id, &qc, &err) != PM_OK)
		memset(&qc, 0, sizeof qc);
	if (qc.pruned > 0 && qc.queued + qc.claimed == 0) {
		printf("    queue: pruned (rows and attempt history deleted; "
		       "the items above remain)  enqueue complete (%lld "
		       "records)\n",
		       (long long)j->queue.total);
		return;
	}
	printf("    queue: queued %lld  claimed %lld  workers %lld  "
	       "expired %lld  retried %lld  ",
	       (long long)j->queue.queued, (long long)j->queue.claimed,
	       (long long)j->queue.workers, (long long)qc.expired,
	       (long long)qc.retried);
	if (j->queue.enqueued)
		printf("enqueue complete (%lld records)\n",
		       (long long)j->queue.total);
	else
		printf("enqueue in progress\n");
}

static int job_cb(const pm_job_info *j, void *ud)
{
	status_ctx *sc = ud;
	pm_err err;

	int64_t ph = 0, bgr = 0, bgs = 0;

	sc->n++;
	pm_store_job_ads(sc->st, j->id, &ph, &bgr, &bgs, &err);
	if (sc->c->json) {
		json_t *f = json_array();
		pm_store_job_failures(sc->st, j->id, 10, failure_json, f, &err);
		json_array_append_new(
		    sc->arr,
		    json_pack(
			"{s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:i,s:f,s:f,"
			"s:I,s:I,s:I,s:I,s:o,s:I,s:I,s:o,"
			"s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I}}",
			"id", (json_int_t)j->id, "key", j->key, "catalog",
			j->catalog, "pipeline", j->pipeline, "pipeline_hash",
			j->pipeline_hash, "out", j->out_dir, "state", j->state,
			"runs", j->runs, "created", j->created, "updated",
			j->updated, "items", (json_int_t)j->items, "done",
			(json_int_t)j->done, "failed", (json_int_t)j->failed,
			"duplicates", (json_int_t)j->duplicates, "failures", f,
			"http_items", (json_int_t)j->http_items, "http_hits",
			(json_int_t)j->http_hits, "http_hit_rate",
			j->http_items > 0 ? json_real((double)j->http_hits /
						      (double)j->http_items)
					  : json_null(),
			"stats", "total", (json_int_t)j->items, "success",
			(json_int_t)j->done, "failed", (json_int_t)j->failed,
			"placeholder", (json_int_t)ph, "bg_removed",
			(json_int_t)bgr, "bg_skipped", (json_int_t)bgs,
			"cache_hits", (json_int_t)j->http_hits));
		if (j->queue.on)
			json_object_set_new(
			    json_array_get(sc->arr,
					   json_array_size(sc->arr) - 1),
			    "queue", queue_json(sc->st, j));
		return 0;
	}
	char when[32];
	time_t t = (time_t)j->updated;
	struct tm tm;
	localtime_r(&t, &tm);
	strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
	printf("job %lld  %-11s  %s  runs %d  updated %s\n", (long long)j->id,
	       j->state, j->catalog, j->runs, when);
	printf("    pipeline %s (%.12s)  out %s\n", j->pipeline,
	       j->pipeline_hash, j->out_dir);
	printf("    items %lld  done %lld  failed %lld  duplicates %lld\n",
	       (long long)j->items, (long long)j->done, (long long)j->failed,
	       (long long)j->duplicates);
	if (j->queue.on)
		queue_text(sc->st, j);
	if (j->http_items > 0)
		printf("    http cache (last run): %.1f%% of %lld http items "
		       "needed no download\n",
		       100.0 * (double)j->http_hits / (double)j->http_items,
		       (long long)j->http_items);
	if (ph + bgr + bgs > 0)
		printf("    ads: placeholder %lld  bg_removed %lld  bg_skipped "
		       "%lld\n",
		       (long long)ph, (long long)bgr, (long long)bgs);
	if (j->failed > 0) {
		printf("    failures by reason:\n");
		pm_store_job_failures(sc->st, j->id, 10, failure_text, NULL,
				      &err);
	}
	return 0;
}

/* Image search providers: counters summed over every day the store
 * has, and today's requests (the quota count). */
typedef struct prov_sum {
	pm_provider_day tot[PM_PROVIDERS_MAX * 4];
	int64_t today[PM_PROVIDERS_MAX * 4];
	int n;
} prov_sum;

static int prov_cb(const pm_provider_day *d, void *ud)
{
	prov_sum *ps = ud;
	int i;

	for (i = 0; i < ps->n; i++)
		if (strcmp(ps->tot[i].provider, d->provider) == 0)
			break;
	if (i == ps->n) {
		if (ps->n == (int)(sizeof ps->tot / sizeof *ps->tot))
			return 0; /* more names than shown */
		memset(&ps->tot[i], 0, sizeof ps->tot[i]);
		memcpy(ps->tot[i].provider, d->provider,
		       sizeof ps->tot[i].provider);
		ps->today[i] = 0;
		ps->n++;
	}
	ps->tot[i].day = d->day;
	ps->tot[i].requests += d->requests;
	ps->tot[i].found += d->found;
	ps->tot[i].empty += d->empty;
	ps->tot[i].failed += d->failed;
	ps->tot[i].results += d->results;
	ps->tot[i].latency_ms += d->latency_ms;
	if (d->day == pm_provider_today())
		ps->today[i] = d->requests;
	return 0;
}

/* Adds the providers to o (JSON) or prints them; a store from before
 * schema v8 has none. */
static void providers_out(pm_store *st, json_t *o)
{
	prov_sum *ps = calloc(1, sizeof *ps);
	pm_err err;

	if (!ps)
		return;
	if (pm_store_schema_version(st) >= 8 &&
	    pm_store_provider_days(st, 0, prov_cb, ps, &err) == PM_OK) {
		json_t *a = o ? json_array() : NULL;
		if (!o && ps->n)
			printf("image search providers (all runs):\n");
		for (int i = 0; i < ps->n; i++) {
			if (o) {
				json_t *j = pm_cli_provider_json(&ps->tot[i]);
				json_object_del(j, "day");
				json_object_set_new(
				    j, "today_requests",
				    json_integer((json_int_t)ps->today[i]));
				json_array_append_new(a, j);
				continue;
			}
			pm_cli_provider_line(stdout, "    ", &ps->tot[i]);
			printf("    %-12s today (UTC) %lld requests\n", "",
			       (long long)ps->today[i]);
		}
		if (o)
			json_object_set_new(o, "search_providers", a);
	}
	free(ps);
}

typedef struct hist_out {
	json_t *arr; /* JSON, or NULL for text */
	const status_cli *c;
	int n;
} hist_out;

static int hist_cb(const char *event, const char *worker, double at,
		   const char *detail, void *ud)
{
	hist_out *h = ud;
	char when[48];
	time_t t = (time_t)at;
	struct tm tm;

	h->n++;
	if (h->arr) {
		json_array_append_new(
		    h->arr,
		    json_pack("{s:s,s:o,s:f,s:o}", "event", event, "worker",
			      worker ? json_string(worker) : json_null(), "at",
			      at, "detail",
			      detail ? json_string(detail) : json_null()));
		return 0;
	}
	if (h->n == 1)
		printf("job %lld item %s:\n", h->c->job, h->c->item);
	localtime_r(&t, &tm);
	strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
	printf("  %s.%03d  %-9s %s%s%s\n", when,
	       (int)((at - (double)t) * 1000) % 1000, event,
	       worker ? worker : "-", detail ? "  " : "", detail ? detail : "");
	return 0;
}

/* `status --job J --item KEY`: the item's attempt history. */
static pm_status item_history(pm_store *st, const status_cli *c, pm_err *err)
{
	hist_out h = {.arr = c->json ? json_array() : NULL, .c = c};
	pm_status s;

	s = pm_store_queue_history(st, c->job, c->item, hist_cb, &h, err);
	if (s == PM_OK && h.n == 0) {
		pm_queue_counts qc;
		if (pm_store_queue_counts(st, c->job, &qc, err) == PM_OK &&
		    qc.pruned > 0)
			s = pm_fail(err, PM_ERR_NOT_FOUND,
				    "no queue history for item %s of job %lld "
				    "(its queue was pruned: `pixmill queue "
				    "prune`)",
				    c->item, c->job);
	}
	if (s == PM_OK && h.n == 0)
		s = pm_fail(err, PM_ERR_NOT_FOUND,
			    "no queue history for item %s of job %lld "
			    "(never enqueued)",
			    c->item, c->job);
	if (s == PM_OK && c->json) {
		json_t *o =
		    json_pack("{s:I,s:s,s:O}", "job", (json_int_t)c->job, "key",
			      c->item, "events", h.arr);
		char *txt = json_dumps(o, JSON_INDENT(2));
		printf("%s\n", txt ? txt : "{}");
		free(txt);
		json_decref(o);
	}
	json_decref(h.arr);
	return s;
}

/* ---- status --watch: the fleet's progress messages (fleet.h) ---- */

static volatile int watch_stop;

static void watch_signal(int sig)
{
	(void)sig;
	watch_stop = 1;
}

typedef struct watch_ctx {
	status_cli *c;
	long seen;
} watch_ctx;

/* One message: {job, done, failed, dups, worker, t}. Anything else on the
 * channel (another program, a hostile publisher) is shown as skipped. */
static int watch_msg(const char *msg, size_t len, void *ud)
{
	watch_ctx *w = ud;
	json_error_t je;
	json_t *o = json_loadb(msg, len, 0, &je);
	json_int_t job = 0, done = 0, failed = 0, dups = 0;
	const char *who = NULL;
	double t = 0;

	if (!o || json_unpack(o, "{s:I,s:I,s:I,s:I,s:s,s:F}", "job", &job,
			      "done", &done, "failed", &failed, "dups", &dups,
			      "worker", &who, "t", &t)) {
		fprintf(stderr, "pixmill status: skipped a message that is "
				"not pixmill progress\n");
	} else if (w->c->json) {
		char *txt = json_dumps(o, JSON_COMPACT);
		if (txt)
			printf("%s\n", txt);
		free(txt);
	} else {
		char when[32], name[65];
		size_t n = 0;
		/* the worker's name as printable ASCII: a message is outside
		 * input, and a terminal obeys escape sequences */
		for (const char *p = who; *p && n + 1 < sizeof name; p++)
			name[n++] = *p >= 0x20 && *p < 0x7f ? *p : '?';
		name[n] = 0;
		time_t tt = (time_t)t;
		struct tm tm;
		localtime_r(&tt, &tm);
		strftime(when, sizeof when, "%H:%M:%S", &tm);
		printf("%s  job %lld  %-24s  done %lld  failed %lld  "
		       "duplicates %lld\n",
		       when, (long long)job, name, (long long)done,
		       (long long)failed, (long long)dups);
	}
	fflush(stdout);
	json_decref(o);
	w->seen++;
	return w->c->limit_set && w->seen >= w->c->limit;
}

static int watch(status_cli *c)
{
	watch_ctx w = {c, 0};
	struct sigaction sa;
	pm_err err = {{0}};
	char shown[320];
	pm_status s;

	if (!c->redis)
		return pm_cli_usage_error("status",
					  "--watch needs --redis URL");
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = watch_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	pm_redis_url_mask(c->redis, shown, sizeof shown);
	fprintf(stderr, "pixmill status: watching %s on %s (Ctrl-C stops)\n",
		PM_FLEET_CHANNEL, shown);
	s = pm_redis_subscribe(c->redis, PM_FLEET_CHANNEL, watch_msg, &w,
			       &watch_stop, &err);
	if (s) {
		fprintf(stderr, "pixmill status: %s\n", err.msg);
		return pm_status_exit(s);
	}
	return 0;
}

int pm_cmd_status(int argc, char **argv)
{
	status_cli c = {.db = "pixmill-out/pixmill.db", .limit = 20};
	status_ctx sc = {0};
	char shown[4352]; /* c.db without its password */
	pm_err err = {{0}};
	pm_status s;
	int i = pm_cli_parse("status", argc, argv, status_opt, &c);

	if (i == -2)
		return 0;
	if (i < 0)
		return 2;
	if (i < argc)
		return pm_cli_usage_error("status", "unexpected argument %s",
					  argv[i]);
	if (c.item && !c.job)
		return pm_cli_usage_error("status", "--item wants --job");
	if (c.watch)
		return watch(&c);
	if (c.redis)
		return pm_cli_usage_error("status",
					  "--redis goes with --watch");
	s = pm_store_open_existing(c.db, &sc.st, &err);
	if (s) {
		fprintf(stderr, "pixmill status: %s\n", err.msg);
		return pm_status_exit(s);
	}
	if (c.item) {
		s = item_history(sc.st, &c, &err);
		if (s)
			fprintf(stderr, "pixmill status: %s\n", err.msg);
		pm_store_close(sc.st);
		return s ? pm_status_exit(s) : 0;
	}
	sc.c = &c;
	sc.arr = json_array();
	pm_store_url_mask(c.db, shown, sizeof shown);
	if (c.job)
		s = pm_store_job_get(sc.st, (int64_t)c.job, job_cb, &sc, &err);
	else
		s = pm_store_jobs(sc.st, (int)c.limit, job_cb, &sc, &err);
	if (s) {
		fprintf(stderr, "pixmill status: %s\n", err.msg);
	} else if (c.json) {
		json_t *o =
		    json_pack("{s:s,s:i,s:O}", "db", shown, "schema",
			      pm_store_schema_version(sc.st), "jobs", sc.arr);
		providers_out(sc.st, o);
		char *txt = json_dumps(o, JSON_INDENT(2));
		printf("%s\n", txt ? txt : "{}");
		free(txt);
		json_decref(o);
	} else {
		if (sc.n == 0)
			printf("no jobs in %s\n", shown);
		providers_out(sc.st, NULL);
	}
	json_decref(sc.arr);
	pm_store_close(sc.st);
	return s ? pm_status_exit(s) : 0;
}
