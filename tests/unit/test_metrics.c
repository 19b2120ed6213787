/* test_metrics.c — unit tests for src/core/metrics: series ids, counters
 * summed over live and exited threads, histograms, gauges, escaping of
 * hostile label values, scrape callbacks, and the rendered text checked by
 * the real `promtool check metrics` (parse errors and lint problems).
 *
 * Threads: main thread, plus worker threads that only record metrics; all
 * CHECKs run on the main thread.
 */
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/metrics.h"
#include "test.h"

/* as in metrics.c, for builds without -DPM_VERSION/-DPM_GITREV */
#ifndef PM_VERSION
#define PM_VERSION "0.0.0"
#endif
#ifndef PM_GITREV
#define PM_GITREV "unknown"
#endif

/* ---- helpers ------------------------------------------------------------ */

static char *render(void)
{
	size_t n = 0;
	char *t = pm_metrics_render(&n);

	CHECK(t != NULL);
	if (!t)
		exit(1);
	CHECK_INT(strlen(t), n);
	return t;
}

/* Value of the one sample line "<series> <value>"; NAN if it is absent,
 * appears twice or its value does not parse. */
static double sample(const char *text, const char *series)
{
	size_t n = strlen(series);
	double v = NAN;
	int found = 0;

	for (const char *p = text; *p;) {
		const char *eol = strchr(p, '\n');
		char *end;

		if (!eol)
			eol = p + strlen(p);
		if (strncmp(p, series, n) == 0 && p[n] == ' ') {
			v = strtod(p + n + 1, &end);
			if (end != eol)
				return NAN;
			found++;
		}
		p = *eol ? eol + 1 : eol;
	}
	return found == 1 ? v : NAN;
}

/* Lines starting with prefix. */
static int count_lines(const char *text, const char *prefix)
{
	size_t n = strlen(prefix);
	int c = 0;

	for (const char *p = text; p && *p;) {
		if (strncmp(p, prefix, n) == 0)
			c++;
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return c;
}

/* The pixmill_* part (process_* values change between renders). */
static char *own_part(char *text)
{
	char *p = strstr(text, "# HELP process_");

	if (p)
		*p = '\0';
	return text;
}

static int have_promtool(void)
{
	return system("command -v promtool >/dev/null 2>&1") == 0;
}

/* Feeds text to `promtool check metrics`; returns its exit status (0 = no
 * parse error, no lint problem) and its output in out. */
static int promtool(const char *text, char *out, size_t outsz)
{
	char path[] = "/tmp/pm_test_promtool_XXXXXX", cmd[128];
	int fd = mkstemp(path), st;
	FILE *p, *f;
	size_t n = 0;

	out[0] = '\0';
	if (fd < 0)
		return -1;
	close(fd);
	snprintf(cmd, sizeof cmd, "promtool check metrics >%s 2>&1", path);
	p = popen(cmd, "w");
	if (!p) {
		unlink(path);
		return -1;
	}
	fputs(text, p);
	st = pclose(p);
	f = fopen(path, "r");
	if (f) {
		n = fread(out, 1, outsz - 1, f);
		fclose(f);
	}
	out[n] = '\0';
	unlink(path);
	return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void check_promtool(const char *text, const char *what)
{
	char out[4096];
	int rc;

	if (!have_promtool()) {
		fprintf(stderr,
			"promtool not found in PATH: install the Debian "
			"package 'prometheus' (CI does)\n");
		CHECK(!"promtool is installed");
		return;
	}
	rc = promtool(text, out, sizeof out);
	if (rc != 0 || out[0])
		fprintf(stderr, "promtool on %s (exit %d):\n%s\n", what, rc,
			out);
	CHECK_INT(rc, 0);
	CHECK_STR(out, "");
}

/* ---- tests ----------------------------------------------------------------
 */

/* Before any recording: every family has HELP/TYPE once, unlabelled and
 * preset series render 0, build info is 1, process metrics are there. */
static void test_empty(void)
{
	char *t = render();

	CHECK_INT(count_lines(t, "# HELP "), PM_M__COUNT + 6);
	CHECK_INT(count_lines(t, "# TYPE "), PM_M__COUNT + 6);
	CHECK_INT(count_lines(t, "# HELP pixmill_http_requests_total "), 1);
	CHECK_INT(count_lines(t, "# TYPE pixmill_http_requests_total counter"),
		  1);
	CHECK_INT(count_lines(t, "# TYPE pixmill_http_request_duration_seconds "
				 "histogram"),
		  1);
	CHECK_INT(count_lines(t, "# TYPE pixmill_jobs gauge"), 1);
	CHECK_INT(count_lines(t, "pixmill_http_requests_total{"), 0);
	CHECK(sample(t, "pixmill_fetch_bytes_total") == 0);
	CHECK(sample(t, "pixmill_dlq_items") == 0);
	CHECK(sample(t, "pixmill_http_requests_in_flight") == 0);
	CHECK(sample(t, "pixmill_items_total{result=\"cache_hit\"}") == 0);
	CHECK(sample(t,
		     "pixmill_fetch_requests_total{result=\"not_modified\"}") ==
	      0);
	CHECK(sample(t, "pixmill_url_cache_total{result=\"miss\"}") == 0);
	CHECK(sample(t, "pixmill_item_duration_seconds_bucket{le=\"+Inf\"}") ==
	      0);
	CHECK(sample(t, "pixmill_item_duration_seconds_count") == 0);
	CHECK_INT(count_lines(t, "pixmill_build_info{version=\""), 1);
	CHECK(strstr(t, "\n# TYPE process_cpu_seconds_total counter\n"));
	CHECK(sample(t, "process_resident_memory_bytes") > 0);
	CHECK(sample(t, "process_virtual_memory_bytes") > 0);
	CHECK(sample(t, "process_open_fds") >= 3);
	CHECK(sample(t, "process_max_fds") >= 3);
	CHECK(sample(t, "process_cpu_seconds_total") >= 0);
	CHECK(sample(t, "process_start_time_seconds") > 1.5e9);
	CHECK(t[strlen(t) - 1] == '\n');
	/* lazy families (pixmill worker's): no series until shown */
	CHECK(isnan(sample(t, "pixmill_worker_store_up")));
	CHECK_INT(count_lines(t, "pixmill_worker_items_total{"), 0);
	check_promtool(t, "the empty render");
	free(t);
	pm_metrics_show(PM_M_WORKER_ITEMS);
	pm_metrics_show(PM_M_WORKER_STORE_UP);
	pm_metrics_show(PM_M__COUNT); /* out of range: ignored */
	t = render();
	CHECK(sample(t, "pixmill_worker_store_up") == 0);
	CHECK_INT(count_lines(t, "pixmill_worker_items_total{"), 4);
	CHECK(sample(t, "pixmill_worker_items_total{result=\"lost\"}") == 0);
	CHECK(isnan(sample(t, "pixmill_worker_claims_total")));
	free(t);
}

static void test_series(void)
{
	char a[300], b[300];
	int s1 = pm_metric_series(PM_M_HTTP_REQUESTS, "/api/jobs", "200");
	int s2 = pm_metric_series(PM_M_HTTP_REQUESTS, "/api/jobs", "404");

	CHECK(s1 >= 0);
	CHECK(s2 >= 0 && s2 != s1);
	CHECK_INT(pm_metric_series(PM_M_HTTP_REQUESTS, "/api/jobs", "200"), s1);
	/* label values are copied */
	snprintf(a, sizeof a, "/api/jobs");
	CHECK_INT(pm_metric_series(PM_M_HTTP_REQUESTS, a, "200"), s1);
	memset(a, 'x', sizeof a);
	CHECK_INT(pm_metric_series(PM_M_HTTP_REQUESTS, "/api/jobs", "200"), s1);
	/* the same values under another metric is another series */
	CHECK(pm_metric_series(PM_M_HTTP_DURATION, "/api/jobs", NULL) >= 0);
	CHECK(pm_metric_series(PM_M_HTTP_DURATION, "/api/jobs", NULL) != s1);
	/* wrong label counts, bad metric */
	CHECK_INT(pm_metric_series(PM_M_HTTP_REQUESTS, "/x", NULL), -1);
	CHECK_INT(pm_metric_series(PM_M_HTTP_REQUESTS, NULL, NULL), -1);
	CHECK_INT(pm_metric_series(PM_M_HTTP_REQUESTS, NULL, "200"), -1);
	CHECK_INT(pm_metric_series(PM_M_DLQ, "x", NULL), -1);
	CHECK_INT(pm_metric_series(PM_M_ITEMS, "done", "x"), -1);
	CHECK_INT(pm_metric_series(PM_M_ITEMS, NULL, NULL), -1);
	CHECK_INT(pm_metric_series(PM_M__COUNT, NULL, NULL), -1);
	CHECK_INT(pm_metric_series((pm_metric)-1, NULL, NULL), -1);
	CHECK(pm_metric_series(PM_M_DLQ, NULL, NULL) >= 0);
	/* values cut at 64 bytes: equal prefixes are one series */
	memset(a, 'a', 200);
	a[200] = '\0';
	memset(b, 'a', 64);
	snprintf(b + 64, sizeof b - 64, "different tail");
	CHECK(pm_metric_series(PM_M_UPLOADS, a, NULL) >= 0);
	CHECK_INT(pm_metric_series(PM_M_UPLOADS, a, NULL),
		  pm_metric_series(PM_M_UPLOADS, b, NULL));
}

static void test_noop(void)
{
	int c = pm_metric_series(PM_M_FETCH_BYTES, NULL, NULL);
	int g = pm_metric_series(PM_M_DLQ, NULL, NULL);
	int h = pm_metric_series(PM_M_ITEM_DURATION, NULL, NULL);
	char *before = own_part(render()), *after;

	pm_metric_add(-1, 1);
	pm_metric_observe(-1, 1);
	pm_metric_set(-1, 1);
	pm_metric_gauge_add(-1, 1);
	pm_metric_add(1000000, 1);
	pm_metric_observe(PM_METRIC_SERIES_MAX, 1);
	pm_metric_set(-7, 1);
	pm_metric_inc(PM_M_FETCH_BYTES, "x", NULL, 1); /* wrong labels */
	pm_metric_obs(PM_M__COUNT, NULL, NULL, 1);
	pm_metric_put(PM_M_DLQ, "x", NULL, 1);
	/* the wrong type for the series */
	pm_metric_set(c, 5);
	pm_metric_observe(c, 5);
	pm_metric_add(g, 5);
	pm_metric_observe(g, 5);
	pm_metric_add(h, 5);
	pm_metric_set(h, 5);
	/* counters only go up */
	pm_metric_add(c, -3);
	pm_metric_add(c, NAN);
	pm_metric_observe(h, NAN);
	after = own_part(render());
	CHECK_STR(after, before);
	free(before);
	free(after);
}

static void test_counter_gauge(void)
{
	char *t;
	int q = pm_metric_series(PM_M_QUEUE_DEPTH, "fetch", NULL);

	pm_metric_inc(PM_M_UPLOADS, "ok", NULL, 1);
	pm_metric_inc(PM_M_UPLOADS, "ok", NULL, 0.5);
	pm_metric_inc(PM_M_FETCH_BYTES, NULL, NULL, 1 << 20);
	pm_metric_inc(PM_M_HTTP_REQUESTS, "/health", "200", 2);
	pm_metric_set(q, 7);
	pm_metric_set(q, 3);
	pm_metric_put(PM_M_QUEUE_DEPTH, "store", NULL, -2.5);
	pm_metric_put(PM_M_JOBS, "running", NULL, 4);
	pm_metric_gauge_add(pm_metric_series(PM_M_HTTP_INFLIGHT, NULL, NULL),
			    1);
	pm_metric_gauge_add(pm_metric_series(PM_M_HTTP_INFLIGHT, NULL, NULL),
			    1);
	pm_metric_gauge_add(pm_metric_series(PM_M_HTTP_INFLIGHT, NULL, NULL),
			    -1);
	t = render();
	CHECK(sample(t, "pixmill_uploads_total{result=\"ok\"}") == 1.5);
	CHECK(sample(t, "pixmill_fetch_bytes_total") == 1048576);
	CHECK(strstr(t, "\npixmill_fetch_bytes_total 1048576\n"));
	CHECK(sample(t, "pixmill_http_requests_total{route=\"/health\","
			"code=\"200\"}") == 2);
	CHECK(sample(t, "pixmill_queue_depth{queue=\"fetch\"}") == 3);
	CHECK(sample(t, "pixmill_queue_depth{queue=\"store\"}") == -2.5);
	CHECK(sample(t, "pixmill_jobs{state=\"running\"}") == 4);
	CHECK(sample(t, "pixmill_http_requests_in_flight") == 1);
	/* HELP/TYPE still once per family, series grouped under it */
	CHECK_INT(count_lines(t, "# HELP pixmill_queue_depth "), 1);
	CHECK_INT(count_lines(t, "pixmill_queue_depth{"), 2);
	free(t);
}

static void test_histogram(void)
{
	static const double obs[] = {0.003, 0.005, 0.03, 1, 100, 0};
	static const struct {
		const char *le;
		int n;
	} want[] = {{"0.005", 3}, {"0.01", 3}, {"0.025", 3}, {"0.05", 4},
		    {"0.1", 4},	  {"0.25", 4}, {"0.5", 4},   {"1", 5},
		    {"2.5", 5},	  {"5", 5},    {"10", 5},    {"30", 5},
		    {"+Inf", 6}};
	int s = pm_metric_series(PM_M_STAGE_DURATION, "decode", NULL);
	char name[128], *t;

	for (size_t i = 0; i < sizeof obs / sizeof obs[0]; i++)
		pm_metric_observe(s, obs[i]);
	pm_metric_obs(PM_M_ITEM_DURATION, NULL, NULL, 0.2);
	pm_metric_obs(PM_M_HTTP_DURATION, "/metrics", NULL, 0.0007);
	t = render();
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
		snprintf(
		    name, sizeof name,
		    "pixmill_stage_duration_seconds_bucket{stage=\"decode\","
		    "le=\"%s\"}",
		    want[i].le);
		CHECK(sample(t, name) == want[i].n);
	}
	CHECK_INT(count_lines(t, "pixmill_stage_duration_seconds_bucket{stage="
				 "\"decode\""),
		  13);
	CHECK(fabs(sample(
		       t,
		       "pixmill_stage_duration_seconds_sum{stage=\"decode\"}") -
		   101.038) < 1e-9);
	CHECK(
	    sample(t,
		   "pixmill_stage_duration_seconds_count{stage=\"decode\"}") ==
	    6);
	CHECK(sample(t, "pixmill_item_duration_seconds_bucket{le=\"0.1\"}") ==
	      0);
	CHECK(sample(t, "pixmill_item_duration_seconds_bucket{le=\"0.25\"}") ==
	      1);
	CHECK(sample(t, "pixmill_item_duration_seconds_sum") == 0.2);
	CHECK(sample(t, "pixmill_item_duration_seconds_count") == 1);
	CHECK(sample(t, "pixmill_http_request_duration_seconds_bucket{route="
			"\"/metrics\",le=\"0.0005\"}") == 0);
	CHECK(sample(t, "pixmill_http_request_duration_seconds_bucket{route="
			"\"/metrics\",le=\"0.001\"}") == 1);
	free(t);
}

static void test_escaping(void)
{
	char long_v[200], cut1[80], cut2[80], want[160], *t;

	pm_metric_inc(PM_M_UPLOADS, "a\"b\\c\nd", NULL, 1);
	pm_metric_inc(PM_M_UPLOADS, "} 99\n# TYPE x counter\nx_total 1", NULL,
		      1);
	pm_metric_inc(PM_M_UPLOADS, "\xff\xc3(", NULL, 1);    /* bad UTF-8 */
	pm_metric_inc(PM_M_UPLOADS, "\r\x01\x7f\t", NULL, 1); /* controls */
	pm_metric_inc(PM_M_UPLOADS, "caf\xc3\xa9", NULL, 1);
	pm_metric_inc(PM_M_UPLOADS, "s\xed\xa0\x80\xc0\xaf", NULL, 1);
	/* surrogate, overlong */ /* é is fine */
	pm_metric_inc(PM_M_HTTP_REQUESTS, "/r", "\"\\", 1);
	memset(long_v, 'L', sizeof long_v - 1);
	long_v[sizeof long_v - 1] = '\0';
	pm_metric_inc(PM_M_UPLOADS, long_v, NULL, 1);
	/* a 2-byte character that would cross the 64-byte cap is dropped */
	memset(cut1, 'x', 63);
	snprintf(cut1 + 63, sizeof cut1 - 63, "\xc3\xa9");
	memset(cut2, 'y', 62);
	snprintf(cut2 + 62, sizeof cut2 - 62, "\xc3\xa9");
	pm_metric_inc(PM_M_UPLOADS, cut1, NULL, 1);
	pm_metric_inc(PM_M_UPLOADS, cut2, NULL, 1);
	t = render();
	CHECK(sample(t, "pixmill_uploads_total{result=\"a\\\"b\\\\c\\nd\"}") ==
	      1);
	CHECK(sample(t, "pixmill_uploads_total{result=\"} 99\\n# TYPE x "
			"counter\\nx_total 1\"}") == 1);
	CHECK_INT(count_lines(t, "# TYPE x"), 0);
	CHECK_INT(count_lines(t, "x_total"), 0);
	CHECK(sample(t, "pixmill_uploads_total{result=\"?\?(\"}") == 1);
	CHECK(sample(t, "pixmill_uploads_total{result=\"???\t\"}") == 1);
	CHECK(sample(t, "pixmill_uploads_total{result=\"caf\xc3\xa9\"}") == 1);
	CHECK(sample(t, "pixmill_uploads_total{result=\"s?\?\?\?\?\"}") == 1);
	CHECK(sample(t, "pixmill_http_requests_total{route=\"/r\",code="
			"\"\\\"\\\\\"}") == 1);
	snprintf(want, sizeof want, "pixmill_uploads_total{result=\"%.64s\"}",
		 long_v);
	CHECK(sample(t, want) == 1);
	snprintf(want, sizeof want, "pixmill_uploads_total{result=\"%.63s\"}",
		 cut1);
	CHECK(sample(t, want) == 1);
	snprintf(want, sizeof want, "pixmill_uploads_total{result=\"%s\"}",
		 cut2);
	CHECK(sample(t, want) == 1);
	check_promtool(t, "hostile label values");
	free(t);
}

/* ---- threads ----------------------------------------------------------------
 */

#define NTHREADS 4
#define NINC	 100000

typedef struct worker_arg {
	int counter;		 /* series id */
	pthread_barrier_t *hold; /* NULL: exit when done */
} worker_arg;

static void *worker(void *p)
{
	worker_arg *w = p;

	for (int i = 0; i < NINC; i++) {
		pm_metric_add(w->counter, 1);
		if (i % 10 == 0) {
			pm_metric_inc(PM_M_ITEMS, "done", NULL, 1);
			pm_metric_obs(PM_M_STAGE_DURATION, "threads", NULL,
				      0.003);
		}
	}
	if (w->hold) {
		pthread_barrier_wait(w->hold); /* counting done */
		pthread_barrier_wait(w->hold); /* main has rendered */
	}
	return NULL;
}

static void run_workers(pthread_barrier_t *hold, int *renders_ok)
{
	pthread_t th[NTHREADS];
	worker_arg w = {pm_metric_series(PM_M_FETCH_BYTES, NULL, NULL), hold};
	double last = 0;

	for (int i = 0; i < NTHREADS; i++)
		pthread_create(&th[i], NULL, worker, &w);
	if (!hold) {
		/* scrape while they count: never goes backwards */
		for (int i = 0; i < 20; i++) {
			char *t = render();
			double v = sample(t, "pixmill_fetch_bytes_total");

			if (!(v >= last))
				*renders_ok = 0;
			last = v;
			free(t);
		}
		for (int i = 0; i < NTHREADS; i++)
			pthread_join(th[i], NULL);
		return;
	}
	pthread_barrier_wait(hold);
	{
		/* workers are alive: their shards are summed live */
		char *t = render();

		CHECK(sample(t, "pixmill_fetch_bytes_total") ==
		      2.0 * NTHREADS * NINC + 5);
		free(t);
	}
	pthread_barrier_wait(hold);
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(th[i], NULL);
}

static void test_threads(void)
{
	pthread_barrier_t hold;
	int renders_ok = 1;
	char *t;

	pm_metrics_reset_for_tests();
	pm_metric_inc(PM_M_FETCH_BYTES, NULL, NULL, 5); /* main's own shard */
	/* round 1: threads that exit; their values are folded on exit */
	run_workers(NULL, &renders_ok);
	CHECK(renders_ok);
	t = render();
	CHECK(sample(t, "pixmill_fetch_bytes_total") ==
	      1.0 * NTHREADS * NINC + 5);
	CHECK(sample(t, "pixmill_items_total{result=\"done\"}") ==
	      NTHREADS * NINC / 10);
	free(t);
	/* round 2: threads still alive while rendering, then exited */
	pthread_barrier_init(&hold, NULL, NTHREADS + 1);
	run_workers(&hold, &renders_ok);
	pthread_barrier_destroy(&hold);
	t = render();
	CHECK(sample(t, "pixmill_fetch_bytes_total") ==
	      2.0 * NTHREADS * NINC + 5);
	CHECK(sample(t, "pixmill_items_total{result=\"done\"}") ==
	      2 * NTHREADS * NINC / 10);
	CHECK(sample(t,
		     "pixmill_stage_duration_seconds_bucket{stage="
		     "\"threads\",le=\"0.005\"}") == 2 * NTHREADS * NINC / 10);
	CHECK(sample(t, "pixmill_stage_duration_seconds_count{stage="
			"\"threads\"}") == 2 * NTHREADS * NINC / 10);
	CHECK(fabs(sample(t, "pixmill_stage_duration_seconds_sum{stage="
			     "\"threads\"}") -
		   0.003 * 2 * NTHREADS * NINC / 10) < 1e-6);
	check_promtool(t, "after the thread rounds");
	free(t);
}

/* ---- callbacks, reset, capacity --------------------------------------------
 */

static void on_scrape(void *ud)
{
	int *calls = ud;

	(*calls)++;
	pm_metric_put(PM_M_DLQ, NULL, NULL, *calls * 10);
	pm_metric_put(PM_M_JOBS, "queued", NULL, 2); /* may insert a series */
}

static void count_call(void *ud)
{
	(*(int *)ud)++;
}

static void test_callbacks(void)
{
	int calls = 0, many[PM_METRIC_CALLBACKS_MAX + 1] = {0}, total = 0;
	char *t;

	pm_metrics_on_scrape(on_scrape, &calls);
	pm_metrics_on_scrape(on_scrape, &calls); /* no-op */
	t = render();
	CHECK_INT(calls, 1);
	CHECK(sample(t, "pixmill_dlq_items") == 10);
	CHECK(sample(t, "pixmill_jobs{state=\"queued\"}") == 2);
	free(t);
	free(render());
	CHECK_INT(calls, 2);
	pm_metrics_off_scrape(on_scrape, &calls);
	free(render());
	CHECK_INT(calls, 2);
	/* at most PM_METRIC_CALLBACKS_MAX; the rest are dropped */
	for (int i = 0; i <= PM_METRIC_CALLBACKS_MAX; i++)
		pm_metrics_on_scrape(count_call, &many[i]);
	free(render());
	for (int i = 0; i <= PM_METRIC_CALLBACKS_MAX; i++)
		total += many[i];
	CHECK_INT(total, PM_METRIC_CALLBACKS_MAX);
	CHECK_INT(many[PM_METRIC_CALLBACKS_MAX], 0);
	/* reset drops callbacks and zeroes values */
	pm_metrics_reset_for_tests();
	free(render());
	CHECK_INT(many[0], 1);
	t = render();
	CHECK(sample(t, "pixmill_dlq_items") == 0);
	CHECK(sample(t, "pixmill_fetch_bytes_total") == 0);
	CHECK(sample(t, "pixmill_uploads_total{result=\"ok\"}") == 0);
	CHECK(sample(t, "pixmill_stage_duration_seconds_count{stage="
			"\"decode\"}") == 0);
	CHECK_INT(count_lines(t, "pixmill_build_info{"), 1);
	/* The revision is the library's (an incremental build may have
	 * compiled it at another commit than this test): any, value 1. */
	CHECK_INT(count_lines(t, "pixmill_build_info{version=\"" PM_VERSION
				 "\",revision=\""),
		  1);
	CHECK(strstr(strstr(t, "pixmill_build_info{"), "} 1\n") != NULL);
	free(t);
}

/* Last: fills the series table. */
static void test_full(void)
{
	int keep = pm_metric_series(PM_M_FETCH_BYTES, NULL, NULL), last = 0,
	    n = 0;
	char v[32], *t;

	for (int i = 0; i < 2 * PM_METRIC_SERIES_MAX && last >= 0; i++) {
		snprintf(v, sizeof v, "r%d", i);
		last = pm_metric_series(PM_M_HTTP_DURATION, v, NULL);
		pm_metric_observe(last, 0.01);
		n++;
	}
	CHECK_INT(last, -1);
	CHECK(n < PM_METRIC_SERIES_MAX);
	CHECK_INT(pm_metric_series(PM_M_FETCH_BYTES, NULL, NULL), keep);
	CHECK_INT(pm_metric_series(PM_M_HTTP_DURATION, "r0", NULL) >= 0, 1);
	CHECK_INT(pm_metric_series(PM_M_HTTP_DURATION, "new", NULL), -1);
	pm_metric_add(keep, 3);
	t = render();
	CHECK(sample(t, "pixmill_fetch_bytes_total") == 3);
	CHECK(sample(t, "pixmill_http_request_duration_seconds_count{route="
			"\"r0\"}") == 1);
	check_promtool(t, "a full series table");
	free(t);
}

/* The promtool harness itself notices a lint problem and a parse error. */
static void test_promtool_harness(void)
{
	char out[4096];

	if (!have_promtool())
		return; /* check_promtool already failed loudly */
	CHECK(promtool("# HELP bad x\n# TYPE bad counter\nbad 1\n", out,
		       sizeof out) != 0);
	CHECK(promtool("bad{\n", out, sizeof out) != 0);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN); /* promtool may exit before reading all */
	test_empty();
	test_series();
	test_noop();
	test_counter_gauge();
	test_histogram();
	test_escaping();
	test_threads();
	test_callbacks();
	test_full();
	test_promtool_harness();
	TEST_DONE();
}
