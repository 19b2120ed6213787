/* cmd_run.c — `pixmill run CATALOG`: options into pm_run_opts, signals,
 * the end summary (text or JSON) and the exit code.
 *
 * Threads: main thread; the signal handler only calls pm_run_cancel (and
 * _exit on a second signal).
 */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cli/cli.h"
#include "core/util.h"
#include "engine/progress.h"
#include "engine/run.h"
#include "fleet/fleet.h"
#include "fleet/redis.h"

/* A decimal number in [lo, hi]; -1 if malformed or out of range. */
static int parse_num(const char *s, double lo, double hi, double *out)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || *end || !(v >= lo && v <= hi))
		return -1;
	*out = v;
	return 0;
}

int pm_cli_run_opt(int id, const char *arg, void *ud)
{
	pm_run_cli *c = ud;
	long v;
	double d;
	int64_t sz;

	switch (id) {
	case OPT_OUT:
		c->o.out_dir = arg;
		break;
	case OPT_DB:
		c->o.db = arg;
		break;
	case OPT_PIPELINE:
		c->o.pipeline = arg;
		break;
	case OPT_WORKERS:
		if (pm_cli_long(arg, 1, 256, &v))
			return pm_cli_usage_error(c->cmd,
						  "--workers wants 1 to 256");
		c->o.workers = (int)v;
		break;
	case OPT_MEMORY_LIMIT:
		sz = pm_parse_size(arg);
		if (sz < (16 << 20))
			return pm_cli_usage_error(
			    c->cmd, "--memory-limit wants a size of at "
				    "least 16M, such as 512M or 2G");
		c->o.memory_limit = sz;
		break;
	case OPT_FORMAT: {
		int k = pm_catalog_kind_parse(arg);
		if (k < 0)
			return pm_cli_usage_error(
			    c->cmd, "--format wants auto, csv, jsonl, "
				    "list or folder");
		c->o.kind = (pm_catalog_kind)k;
		break;
	}
	case OPT_SIZES:
		c->o.sizes = arg;
		break;
	case OPT_FORMATS:
		c->o.formats = arg;
		break;
	case OPT_TEMPLATES:
		/* the compose stage's default template folder; read when the
		 * pipeline loads, before any thread starts */
		if (!arg[0] || setenv("PIXMILL_TEMPLATES", arg, 1))
			return pm_cli_usage_error(c->cmd,
						  "--templates wants a folder");
		break;
	case OPT_QUALITY:
		if (pm_cli_long(arg, 1, 100, &v))
			return pm_cli_usage_error(c->cmd,
						  "--quality wants 1 to 100");
		c->o.quality = (int)v;
		break;
	case OPT_MAX_BYTES:
		sz = pm_parse_size(arg);
		if (sz <= 0)
			return pm_cli_usage_error(c->cmd,
						  "--max-bytes wants a size");
		c->o.limits.max_bytes = (uint64_t)sz;
		break;
	case OPT_MAX_PIXELS:
		if (pm_cli_long(arg, 1, 4000000000L, &v))
			return pm_cli_usage_error(c->cmd,
						  "--max-pixels wants a count");
		c->o.limits.max_pixels = (uint64_t)v;
		break;
	case OPT_MAX_DIM:
		if (pm_cli_long(arg, 1, 1000000, &v))
			return pm_cli_usage_error(
			    c->cmd, "--max-dimension wants pixels");
		c->o.limits.max_width = c->o.limits.max_height = (int)v;
		break;
	case OPT_MAX_FRAMES:
		if (pm_cli_long(arg, 1, 1000000, &v))
			return pm_cli_usage_error(c->cmd,
						  "--max-frames wants a count");
		c->o.limits.max_frames = (int)v;
		break;
	case OPT_DURABILITY:
		if (strcmp(arg, "file") == 0)
			c->o.durability = PM_SYNC_FILE;
		else if (strcmp(arg, "batch") == 0)
			c->o.durability = PM_SYNC_BATCH;
		else if (strcmp(arg, "none") == 0)
			c->o.durability = PM_SYNC_NONE;
		else
			return pm_cli_usage_error(
			    c->cmd, "--durability wants file, batch or "
				    "none");
		break;
	case OPT_MIN_DIM:
		if (pm_cli_long(arg, 0, 100000, &v))
			return pm_cli_usage_error(
			    c->cmd, "--min-dimension wants pixels");
		c->o.min_dimension = (int)v;
		break;
	case OPT_KEEP_META:
		c->o.keep_meta = true;
		break;
	case OPT_NO_DEDUP:
		c->o.dedup = false;
		break;
	case OPT_RETRY_FAILED:
		c->o.retry_failed = true;
		break;
	case OPT_ALL_FILES:
		c->o.all_files = true;
		break;
	case OPT_PROGRESS:
		if (strcmp(arg, "auto") == 0)
			c->o.progress = isatty(2) ? 1 : 2;
		else if (strcmp(arg, "bar") == 0)
			c->o.progress = 1;
		else if (strcmp(arg, "plain") == 0)
			c->o.progress = 2;
		else if (strcmp(arg, "none") == 0)
			c->o.progress = 0;
		else
			return pm_cli_usage_error(
			    c->cmd, "--progress wants auto, bar, plain or "
				    "none");
		c->progress_set = 1;
		break;
	case OPT_QUEUE_DEPTH:
		if (pm_cli_long(arg, 1, 100000, &v))
			return pm_cli_usage_error(
			    c->cmd, "--queue-depth wants 1 to 100000");
		c->o.queue_depth = (int)v;
		break;
	case OPT_URL_CACHE:
		if (pm_cli_long(arg, 0, 65536, &v))
			return pm_cli_usage_error(
			    c->cmd, "--url-cache wants 0 to 65536 (MiB)");
		c->o.url_cache_bytes = v ? v << 20 : -1;
		break;
	case OPT_REFRESH:
		c->o.refresh = true;
		break;
	case OPT_ALLOW_PRIVATE:
		c->o.fetch.allow_private = true;
		break;
	case OPT_ALLOW_HOST:
		c->o.fetch.allow_list = arg;
		break;
	case OPT_REDIS: {
		pm_redis_url u;
		pm_err e;
		if (pm_redis_url_parse(arg, &u, &e))
			return pm_cli_usage_error(c->cmd, "%s", e.msg);
		c->redis = arg;
		break;
	}
	case OPT_HOST_LIMIT: {
		pm_fetch_opts fo;
		pm_err e;
		pm_fetch_opts_default(&fo);
		fo.host_limits = arg;
		if (pm_fetch_opts_check(&fo, &e))
			return pm_cli_usage_error(c->cmd, e.msg);
		c->o.fetch.host_limits = arg;
		break;
	}
	case OPT_SEARCH_PROVIDER: {
		pm_provider *p = NULL;
		pm_err e;
		if (c->o.n_providers >= PM_PROVIDERS_MAX)
			return pm_cli_usage_error(
			    c->cmd, "at most %d --search-provider",
			    PM_PROVIDERS_MAX);
		if (pm_provider_parse_spec(arg, &p, &e))
			return pm_cli_usage_error(c->cmd, "%s", e.msg);
		for (int k = 0; k < c->o.n_providers; k++)
			if (strcmp(pm_provider_name(c->o.providers[k]),
				   pm_provider_name(p)) == 0) {
				pm_provider_free(p);
				return pm_cli_usage_error(
				    c->cmd,
				    "two search providers are named %s: "
				    "give one a name=",
				    pm_provider_name(c->o.providers[k]));
			}
		c->o.providers[c->o.n_providers++] = p; /* c owns it */
		break;
	}
	case OPT_CA_FILE:
		if (access(arg, R_OK) != 0)
			return pm_cli_usage_error(
			    c->cmd, "--ca-file: cannot read that file");
		c->o.fetch.ca_file = arg;
		break;
	case OPT_MAX_TRANSFERS:
		if (pm_cli_long(arg, 1, 4096, &v))
			return pm_cli_usage_error(
			    c->cmd, "--max-transfers wants 1 to 4096");
		c->o.fetch.max_transfers = (int)v;
		break;
	case OPT_PER_HOST:
		if (pm_cli_long(arg, 1, 1024, &v))
			return pm_cli_usage_error(c->cmd,
						  "--per-host wants 1 to 1024");
		c->o.fetch.per_host_max = (int)v;
		break;
	case OPT_PER_HOST_RPS:
		if (parse_num(arg, 0, 1e6, &d))
			return pm_cli_usage_error(
			    c->cmd, "--per-host-rps wants a rate >= 0");
		c->o.fetch.per_host_rps = d;
		break;
	case OPT_CONNECT_TIMEOUT:
		if (parse_num(arg, 0.001, 86400, &d))
			return pm_cli_usage_error(
			    c->cmd, "--connect-timeout wants seconds");
		c->o.fetch.connect_timeout_ms = (long)(d * 1000);
		break;
	case OPT_TIMEOUT:
		if (parse_num(arg, 0.001, 86400, &d))
			return pm_cli_usage_error(c->cmd,
						  "--timeout wants seconds");
		c->o.fetch.total_timeout_ms = (long)(d * 1000);
		break;
	case OPT_BREAKER_FAILURES:
		if (pm_cli_long(arg, 0, 1000, &v))
			return pm_cli_usage_error(
			    c->cmd, "--breaker-failures wants 0 to 1000");
		c->o.fetch.breaker_failures = (int)v;
		break;
	case OPT_BREAKER_OPEN:
		if (parse_num(arg, 0.001, 86400, &d))
			return pm_cli_usage_error(
			    c->cmd, "--breaker-open wants seconds");
		c->o.fetch.breaker_open_ms = (long)(d * 1000);
		break;
	case OPT_MAX_ATTEMPTS:
		if (pm_cli_long(arg, 1, 100, &v))
			return pm_cli_usage_error(
			    c->cmd, "--max-attempts wants 1 to 100");
		c->o.fetch.max_attempts = (int)v;
		break;
	case OPT_QUIET:
		c->quiet = true;
		break;
	case OPT_ENQUEUE_ONLY:
		c->enqueue_only = true;
		break;
	case OPT_PRIORITY:
		if (pm_cli_long(arg, -1000000, 1000000, &v))
			return pm_cli_usage_error(
			    c->cmd, "--priority wants -1000000 to 1000000");
		c->o.priority = (int)v;
		break;
	case OPT_JSON:
		c->o.json = true;
		break;
	case OPT_VERBOSE:
		c->verbose = true;
		break;
	}
	return 0;
}

static void on_signal(int sig)
{
	static volatile sig_atomic_t hits;

	(void)sig;
	if (hits++) {
		static const char msg[] = "\npixmill: stopped hard; run again "
					  "to resume\n";
		if (write(2, msg, sizeof msg - 1) < 0) {
			/* nothing more to do in a signal handler */
		}
		_exit(130);
	}
	pm_run_cancel();
}

void pm_cli_run_free(pm_run_cli *c)
{
	for (int i = 0; i < c->o.n_providers; i++)
		pm_provider_free(c->o.providers[i]);
	c->o.n_providers = 0;
}

json_t *pm_cli_provider_json(const pm_provider_day *d)
{
	return json_pack(
	    "{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:f}", "provider", d->provider, "day",
	    (json_int_t)d->day, "requests", (json_int_t)d->requests, "found",
	    (json_int_t)d->found, "empty", (json_int_t)d->empty, "failed",
	    (json_int_t)d->failed, "results", (json_int_t)d->results,
	    "latency_ms_avg",
	    d->requests ? d->latency_ms / (double)d->requests : 0.0);
}

void pm_cli_provider_line(FILE *f, const char *indent, const pm_provider_day *d)
{
	fprintf(f,
		"%s%-12s %lld requests, %lld searches: %lld found, %lld "
		"empty, %lld failed; %lld image URLs; %.0f ms per "
		"request\n",
		indent, d->provider, (long long)d->requests,
		(long long)(d->found + d->empty + d->failed),
		(long long)d->found, (long long)d->empty, (long long)d->failed,
		(long long)d->results,
		d->requests ? d->latency_ms / (double)d->requests : 0.0);
}

static void print_summary(const pm_run_summary *s)
{
	char rss[32], el[32];

	pm_fmt_size(s->peak_rss, rss, sizeof rss);
	pm_fmt_duration(s->wall_s, el, sizeof el);
	if (s->done + s->failed == 0 && s->skipped > 0) {
		fprintf(
		    stderr,
		    "pixmill: nothing to do: all %lld items of this catalog "
		    "were already processed (job %lld, run %d). Use "
		    "--retry-failed to redo failed ones.\n",
		    (long long)s->skipped, (long long)s->job_id, s->run_no);
	}
	fprintf(stderr,
		"pixmill: job %lld run %d: %lld items read, %lld done (%lld "
		"duplicates, %lld not modified), %lld failed, %lld already "
		"processed earlier\n",
		(long long)s->job_id, s->run_no, (long long)s->seen,
		(long long)s->done, (long long)s->duplicates,
		(long long)s->cache_hits, (long long)s->failed,
		(long long)s->skipped);
	if (s->http_items > 0)
		fprintf(stderr,
			"pixmill: http cache: %.1f%% of %lld http items needed "
			"no download (%lld not modified, %lld repeated URLs "
			"served by an earlier download)\n",
			100.0 * (double)(s->cache_hits + s->url_reused) /
			    (double)s->http_items,
			(long long)s->http_items, (long long)s->cache_hits,
			(long long)s->url_reused);
	if (s->done + s->failed > 0)
		fprintf(stderr,
			"pixmill: %.1f s (%s), %.1f images/s, latency p50 %.1f "
			"ms p95 %.1f ms, first item done %.1f ms after start, "
			"peak RSS %s\n",
			s->wall_s, el, s->images_per_s, s->p50_ms, s->p95_ms,
			s->first_done_ms, rss);
	for (int i = 0; i < s->n_providers; i++)
		pm_cli_provider_line(stderr, "pixmill: image search ",
				     &s->providers[i]);
	if (s->placeholders + s->bg_removed + s->bg_skipped > 0)
		fprintf(stderr,
			"pixmill: ads: total %lld, success %lld, failed %lld, "
			"placeholder %lld, bg_removed %lld, bg_skipped %lld, "
			"cache_hits %lld, dlq_retries %lld\n",
			(long long)(s->done + s->failed), (long long)s->done,
			(long long)s->failed, (long long)s->placeholders,
			(long long)s->bg_removed, (long long)s->bg_skipped,
			(long long)(s->cache_hits + s->url_reused),
			(long long)s->dlq_retries);
	else if (s->dlq_retries > 0)
		fprintf(stderr,
			"pixmill: %lld items tried again after failing in an "
			"earlier run\n",
			(long long)s->dlq_retries);
	fprintf(stderr,
		"pixmill: whole job: %lld items, %lld done, %lld failed\n"
		"pixmill: outputs in %s\npixmill: manifest %s\npixmill: "
		"database %s\n",
		(long long)s->job_items, (long long)s->job_done,
		(long long)s->job_failed, s->out_dir, s->manifest, s->db);
	if (s->job_failed > 0)
		fprintf(stderr,
			"pixmill: see why with: pixmill status --db "
			"%s\n",
			s->db);
}

/* The fleet's Redis in the summary: what it shared, and whether (and how
 * long) the run went on without it. */
void pm_cli_print_fleet(const pm_fleet_stats *f)
{
	if (!f->on)
		return;
	fprintf(stderr,
		"pixmill: redis %s: %s; %llu shared rate-limit tokens, %llu "
		"left to the local limit; cache %llu hits, %llu misses\n",
		f->url, f->downs ? "DEGRADED" : "up",
		(unsigned long long)f->rl_shared,
		(unsigned long long)f->rl_local,
		(unsigned long long)f->cache_hits,
		(unsigned long long)f->cache_misses);
	if (f->downs)
		fprintf(stderr,
			"pixmill: redis was down %llu time(s), %.1f s in all "
			"(%s): local rate limits and the store were used "
			"meanwhile\n",
			(unsigned long long)f->downs, f->degraded_s,
			f->last_error);
}

json_t *pm_cli_fleet_json(const pm_fleet_stats *f)
{
	if (!f->on)
		return json_pack("{s:s}", "state", "off");
	return json_pack(
	    "{s:s,s:s,s:b,s:I,s:f,s:I,s:I,s:I,s:I,s:I,s:I,s:s}", "state",
	    f->up ? "up" : "down", "url", f->url, "degraded", f->downs > 0,
	    "downs", (json_int_t)f->downs, "degraded_s", f->degraded_s,
	    "errors", (json_int_t)f->errors, "rl_shared",
	    (json_int_t)f->rl_shared, "rl_local", (json_int_t)f->rl_local,
	    "cache_hits", (json_int_t)f->cache_hits, "cache_misses",
	    (json_int_t)f->cache_misses, "cache_writes",
	    (json_int_t)f->cache_writes, "last_error", f->last_error);
}

static void print_json(const pm_run_summary *s, const pm_fleet_stats *f)
{
	json_t *o = json_pack(
	    "{s:I,s:i,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:f,"
	    "s:f,s:f,"
	    "s:f,s:I,s:b,s:s,s:s,s:s}",
	    "job", (json_int_t)s->job_id, "run", s->run_no, "items_read",
	    (json_int_t)s->seen, "done", (json_int_t)s->done, "failed",
	    (json_int_t)s->failed, "duplicates", (json_int_t)s->duplicates,
	    "cache_hits", (json_int_t)s->cache_hits, "url_reused",
	    (json_int_t)s->url_reused, "http_items", (json_int_t)s->http_items,
	    "already_done", (json_int_t)s->skipped, "job_items",
	    (json_int_t)s->job_items, "job_done", (json_int_t)s->job_done,
	    "job_failed", (json_int_t)s->job_failed, "wall_s", s->wall_s,
	    "images_per_s", s->images_per_s, "p50_ms", s->p50_ms, "p95_ms",
	    s->p95_ms, "first_done_ms", s->first_done_ms, "peak_rss_bytes",
	    (json_int_t)s->peak_rss, "interrupted", s->interrupted, "out",
	    s->out_dir, "manifest", s->manifest, "db", s->db);
	char *txt;

	if (s->n_providers) {
		json_t *a = json_array();
		for (int i = 0; i < s->n_providers; i++)
			json_array_append_new(
			    a, pm_cli_provider_json(&s->providers[i]));
		json_object_set_new(o, "search_providers", a);
	}
	/* the ads figures under the names users know them by */
	json_object_set_new(
	    o, "stats",
	    json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "total",
		      (json_int_t)(s->done + s->failed), "success",
		      (json_int_t)s->done, "failed", (json_int_t)s->failed,
		      "placeholder", (json_int_t)s->placeholders, "bg_removed",
		      (json_int_t)s->bg_removed, "bg_skipped",
		      (json_int_t)s->bg_skipped, "cache_hits",
		      (json_int_t)(s->cache_hits + s->url_reused),
		      "dlq_retries", (json_int_t)s->dlq_retries));
	json_object_set_new(o, "redis", pm_cli_fleet_json(f));
	txt = json_dumps(o, JSON_INDENT(2));
	if (txt)
		printf("%s\n", txt);
	free(txt);
	json_decref(o);
}

/* run --enqueue-only: the catalog into the shared queue, a summary. */
static int enqueue(pm_run_cli *c)
{
	int64_t job = 0, added = 0, present = 0;
	pm_err err = {{0}};
	double t0 = pm_now();
	pm_status s = pm_run_enqueue(&c->o, NULL, &job, &added, &present, &err);
	char db[512];

	pm_cli_run_free(c);
	if (s) {
		pm_log(s == PM_ERR_CANCELLED ? PM_LOG_WARN : PM_LOG_ERROR, "%s",
		       err.msg);
		return pm_status_exit(s);
	}
	if (c->o.db)
		pm_store_url_mask(c->o.db, db, sizeof db);
	else {
		char abs[PATH_MAX];
		snprintf(db, sizeof db, "%.490s/pixmill.db",
			 realpath(c->o.out_dir, abs) ? abs : c->o.out_dir);
	}
	if (c->o.json) {
		json_t *o = json_pack(
		    "{s:I,s:I,s:I,s:i,s:s,s:f}", "job", (json_int_t)job,
		    "enqueued", (json_int_t)added, "already_present",
		    (json_int_t)present, "priority", c->o.priority, "db", db,
		    "wall_s", pm_now() - t0);
		char *txt = o ? json_dumps(o, JSON_INDENT(2)) : NULL;
		if (txt)
			printf("%s\n", txt);
		free(txt);
		json_decref(o);
	} else if (!c->quiet)
		fprintf(stderr,
			"pixmill: job %lld: %lld records enqueued, %lld "
			"already present (priority %d) in %.1f s\n"
			"pixmill: start workers with: pixmill worker --db "
			"%s\n",
			(long long)job, (long long)added, (long long)present,
			c->o.priority, pm_now() - t0, db);
	return 0;
}

int pm_cmd_run(int argc, char **argv)
{
	pm_run_cli c;
	pm_run_summary sum;
	pm_fleet_stats fleet;
	pm_err err = {{0}};
	pm_status s;
	int i;
	struct sigaction sa;

	memset(&c, 0, sizeof c);
	pm_run_opts_default(&c.o);
	c.cmd = "run";
	c.o.progress = isatty(2) ? 1 : 2;
	i = pm_cli_parse("run", argc, argv, pm_cli_run_opt, &c);
	if (i == -2)
		return 0;
	if (i < 0)
		return 2;
	if (argc - i != 1)
		return pm_cli_usage_error("run", "expected one CATALOG (a CSV, "
						 "JSONL or list file, or a "
						 "folder)");
	c.o.catalog = argv[i];
	c.o.t_start = pm_cli_t0;
	if (c.quiet)
		c.o.progress = 0;
	pm_log_setup(c.verbose ? PM_LOG_DEBUG : PM_LOG_INFO, -1);

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	pm_log(PM_LOG_DEBUG, "t+%.1f ms: libvips ready",
	       (pm_now() - pm_cli_t0) * 1e3);
	if (c.enqueue_only)
		return enqueue(&c);
	s = pm_fleet_start(c.redis, NULL, &err);
	if (s) {
		pm_cli_run_free(&c);
		pm_log(PM_LOG_ERROR, "%s", err.msg);
		return pm_status_exit(s);
	}
	s = pm_run(&c.o, &sum, &err);
	pm_cli_run_free(&c);
	pm_fleet_stats_get(&fleet);
	pm_fleet_stop();
	if (s && s != PM_ERR_CANCELLED) {
		pm_log(PM_LOG_ERROR, "%s", err.msg);
		return pm_status_exit(s);
	}
	if (c.o.json)
		print_json(&sum, &fleet);
	else if (!c.quiet) {
		print_summary(&sum);
		pm_cli_print_fleet(&fleet);
	}
	if (s == PM_ERR_CANCELLED) {
		pm_log(PM_LOG_WARN, "%s", err.msg);
		return pm_status_exit(s);
	}
	return sum.job_failed > 0 ? 1 : 0;
}
