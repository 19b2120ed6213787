/* test_fetch.c — tests of the network fetch engine (src/fetch/fetch.c)
 * against the test origin (tests/fetch/origin.c, built beside this program
 * as BUILD/tests/origin), which it starts on a free loopback port and
 * stops at the end.
 *
 * Covers: byte-exact bodies, conditional requests and 304, retries with
 * backoff and Retry-After, no retry on 404, max_body against Content-Length
 * and chunked streams, slow-drip and hang timeouts, redirects, the SSRF
 * guard on the first hop and on redirects, per-host rate and concurrency
 * limits, backpressure, the circuit breaker (open, fail fast, half-open
 * probe) and cancellation. Timing checks are lower bounds only.
 *
 * Threads: CHECKs run on the main thread only; the engine's done callback
 * runs on the fetch thread and only copies results under a mutex.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>

#include "core/util.h"
#include "fetch/fetch.h"
#include "test.h"

static pid_t origin_pid;
static int port;

/* ---- the origin ---- */

/* $PIXMILL_ORIGIN, else "origin" in this program's own folder. */
static const char *origin_path(void)
{
	static char path[4096];
	const char *env = getenv("PIXMILL_ORIGIN");
	ssize_t n;

	if (env && *env)
		return env;
	n = readlink("/proc/self/exe", path, sizeof path - 8);
	if (n <= 0)
		return "origin";
	path[n] = '\0';
	char *slash = strrchr(path, '/');
	strcpy(slash ? slash + 1 : path, "origin");
	return path;
}

static bool origin_start(void)
{
	int fds[2];
	char line[64];
	size_t got = 0;

	if (pipe(fds))
		return false;
	origin_pid = fork();
	if (origin_pid < 0)
		return false;
	if (origin_pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the test */
		dup2(fds[1], 1);
		close(fds[0]);
		close(fds[1]);
		execl(origin_path(), "origin", "0", (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	while (got < sizeof line - 1) {
		ssize_t r = read(fds[0], line + got, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0 || line[got] == '\n')
			break;
		got++;
	}
	line[got] = '\0';
	close(fds[0]);
	port = atoi(line);
	return port > 0;
}

static void origin_stop(void)
{
	if (origin_pid > 0) {
		kill(origin_pid, SIGTERM);
		waitpid(origin_pid, NULL, 0);
		origin_pid = 0;
	}
}

static size_t sink(char *p, size_t s, size_t n, void *ud)
{
	char *buf = ud;
	size_t have = strlen(buf), len = s * n;
	if (have + len < 256) {
		memcpy(buf + have, p, len);
		buf[have + len] = '\0';
	}
	return len;
}

/* GETs a plain-text number from the origin (a /count query). */
static long origin_num(const char *path_and_query)
{
	char url[1024], buf[256] = "";
	CURL *e = curl_easy_init();

	snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port,
		 path_and_query);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sink);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, buf);
	curl_easy_setopt(e, CURLOPT_PROXY, "");
	curl_easy_perform(e);
	curl_easy_cleanup(e);
	return atol(buf);
}

/* How many requests the origin saw for path (no query characters other
 * than '?', '=', '&', which are escaped here). */
static long count_of(const char *path)
{
	char q[1024] = "/count?path=";
	size_t n = strlen(q);
	for (const char *p = path; *p && n < sizeof q - 4; p++) {
		if (*p == '?' || *p == '=' || *p == '&') {
			n += (size_t)snprintf(q + n, sizeof q - n, "%%%02X",
					      (unsigned char)*p);
		} else {
			q[n++] = *p;
			q[n] = '\0';
		}
	}
	return origin_num(q);
}

static char *url_of(const char *path)
{
	static char bufs[32][1024];
	static int next;
	char *b = bufs[next++ % 32];
	snprintf(b, 1024, "http://127.0.0.1:%d%s", port, path);
	return b;
}

/* The bytes the origin serves for /img/NAME?size=N. */
static bool body_matches(const char *name, const char *body, size_t len,
			 size_t want)
{
	int seed = (int)strlen(name) * 13 + (unsigned char)name[0];
	if (!body || len != want)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)body[i] != (i * 7 + (size_t)seed) % 251)
			return false;
	return true;
}

/* ---- collecting results ---- */

typedef struct res {
	bool done;
	pm_status status;
	char error[600];
	long code;
	char *body;
	size_t len;
	char etag[256], lm[128], ctype[128], final_url[1024];
	bool has_etag, not_modified;
	int attempts, redirects;
	char history[1024];
	double elapsed;
} res;

typedef struct coll {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	res *r;
	int n, got;
	pm_fetch *f; /* for stats from the callback */
	int max_pending;
} coll;

static void on_done(pm_fetch_result *r, void *ud)
{
	coll *c = ud;
	int i = (int)(intptr_t)r->ud;

	pthread_mutex_lock(&c->mu);
	if (i >= 0 && i < c->n) {
		res *o = &c->r[i];
		o->done = true;
		o->status = r->status;
		snprintf(o->error, sizeof o->error, "%s", r->error);
		o->code = r->http_code;
		o->body = r->body; /* ours now */
		o->len = r->len;
		o->has_etag = r->etag != NULL;
		snprintf(o->etag, sizeof o->etag, "%s", r->etag ? r->etag : "");
		snprintf(o->lm, sizeof o->lm, "%s",
			 r->last_modified ? r->last_modified : "");
		snprintf(o->ctype, sizeof o->ctype, "%s",
			 r->content_type ? r->content_type : "");
		snprintf(o->final_url, sizeof o->final_url, "%s", r->final_url);
		o->not_modified = r->not_modified;
		o->attempts = r->attempts;
		o->redirects = r->redirects;
		snprintf(o->history, sizeof o->history, "%s", r->history);
		o->elapsed = r->elapsed_s;
	} else {
		free(r->body);
	}
	c->got++;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

static void coll_init(coll *c, int n)
{
	memset(c, 0, sizeof *c);
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	c->r = calloc((size_t)n, sizeof *c->r);
	c->n = n;
}

static void coll_wait(coll *c, int n)
{
	pthread_mutex_lock(&c->mu);
	while (c->got < n)
		pthread_cond_wait(&c->cv, &c->mu);
	pthread_mutex_unlock(&c->mu);
}

static void coll_free(coll *c)
{
	for (int i = 0; i < c->n; i++)
		free(c->r[i].body);
	free(c->r);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
}

/* Test defaults: quick backoff, no rate limit. */
static pm_fetch_opts test_opts(void)
{
	pm_fetch_opts o;
	pm_fetch_opts_default(&o);
	o.allow_private = true;
	o.per_host_rps = 0;
	o.backoff_base_ms = 50;
	o.backoff_max_ms = 2000;
	o.connect_timeout_ms = 3000;
	o.total_timeout_ms = 10000;
	o.breaker_failures = 0; /* test_breaker turns it on */
	return o;
}

static pm_fetch *engine(const pm_fetch_opts *o, coll *c)
{
	pm_fetch *f = NULL;
	pm_err e = {{0}};
	pm_status s = pm_fetch_new(o, on_done, c, &f, &e);
	if (s)
		fprintf(stderr, "pm_fetch_new: %s\n", e.msg);
	CHECK_INT(s, PM_OK);
	c->f = f;
	return f;
}

static void submit(pm_fetch *f, int i, const char *url, const char *etag,
		   const char *lm)
{
	pm_err e = {{0}};
	pm_fetch_req rq = {url, etag, lm, (void *)(intptr_t)i};
	pm_status s = pm_fetch_submit(f, &rq, &e);
	if (s)
		fprintf(stderr, "submit %s: %s\n", url, e.msg);
	CHECK_INT(s, PM_OK);
}

/* Fetches n URLs at once with opts o into c (c is initialised here). */
static void fetch_all(const pm_fetch_opts *o, coll *c, int n,
		      const char *const *urls)
{
	coll_init(c, n);
	pm_fetch *f = engine(o, c);
	if (!f)
		return;
	for (int i = 0; i < n; i++)
		submit(f, i, urls[i], NULL, NULL);
	pm_fetch_close(f);
	CHECK_INT(c->got, n);
	pm_fetch_free(f);
}

static void show(const char *what, const res *r)
{
	if (r->status != PM_OK || getenv("TEST_VERBOSE"))
		fprintf(stderr,
			"  %s: %s \"%s\" http=%ld attempts=%d history=\"%s\"\n",
			what, pm_status_code(r->status), r->error, r->code,
			r->attempts, r->history);
}

/* ---- tests ---- */

static void test_bodies_and_conditionals(void)
{
	pm_fetch_opts o = test_opts();
	coll c;
	const char *urls[] = {url_of("/img/alpha?size=5000"),
			      url_of("/img/big?size=3000000"),
			      url_of("/img/z?size=0")};

	fetch_all(&o, &c, 3, urls);
	show("alpha", &c.r[0]);
	CHECK_INT(c.r[0].status, PM_OK);
	CHECK_INT(c.r[0].code, 200);
	CHECK(body_matches("alpha", c.r[0].body, c.r[0].len, 5000));
	CHECK(c.r[0].etag[0] == '"');
	CHECK_STR(c.r[0].lm, "Wed, 21 Oct 2015 07:28:00 GMT");
	CHECK_STR(c.r[0].ctype, "image/jpeg");
	CHECK_INT(c.r[0].attempts, 1);
	CHECK_STR(c.r[0].history, "1: HTTP 200");
	CHECK(!c.r[0].not_modified);
	CHECK_INT(c.r[1].status, PM_OK);
	CHECK(body_matches("big", c.r[1].body, c.r[1].len, 3000000));
	CHECK_INT(c.r[2].status, PM_OK);
	CHECK(c.r[2].body != NULL);
	CHECK_INT(c.r[2].len, 0);

	/* Conditional requests: a matching ETag, a Last-Modified, a stale
	 * ETag. */
	char etag[256];
	snprintf(etag, sizeof etag, "%s", c.r[0].etag);
	coll_free(&c);
	coll_init(&c, 4);
	pm_fetch *f = engine(&o, &c);
	submit(f, 0, url_of("/img/alpha?size=5000"), etag, NULL);
	submit(f, 1, url_of("/img/alpha?size=5000"), NULL,
	       "Wed, 21 Oct 2015 07:28:00 GMT");
	submit(f, 2, url_of("/img/alpha?size=5000"), "\"stale\"", NULL);
	/* A validator with a line break is not sent (header injection). */
	submit(f, 3, url_of("/img/alpha?size=5000"), "\"x\"\r\nX-Evil: 1",
	       NULL);
	pm_fetch_close(f);
	pm_fetch_free(f);
	CHECK_INT(c.r[0].status, PM_OK);
	CHECK(c.r[0].not_modified);
	CHECK_INT(c.r[0].code, 304);
	CHECK(c.r[0].body == NULL);
	CHECK_INT(c.r[0].len, 0);
	CHECK_STR(c.r[0].etag, etag);
	CHECK_INT(c.r[1].status, PM_OK);
	CHECK(c.r[1].not_modified);
	CHECK_INT(c.r[2].status, PM_OK);
	CHECK(!c.r[2].not_modified);
	CHECK(body_matches("alpha", c.r[2].body, c.r[2].len, 5000));
	CHECK_INT(c.r[3].status, PM_OK);
	CHECK(!c.r[3].not_modified);
	coll_free(&c);

	/* Request headers: our User-Agent, no Accept-Encoding. */
	const char *h[] = {url_of("/headers")};
	fetch_all(&o, &c, 1, h);
	CHECK_INT(c.r[0].status, PM_OK);
	CHECK(c.r[0].body && strstr(c.r[0].body, "user-agent: pixmill/"));
	CHECK(c.r[0].body && !strstr(c.r[0].body, "accept-encoding"));
	CHECK(c.r[0].body && !strstr(c.r[0].body, "x-evil"));
	coll_free(&c);
}

static void test_retries(void)
{
	pm_fetch_opts o = test_opts();
	coll c;
	const char *urls[] = {
	    url_of("/status/503?times=2"),
	    url_of("/retry-after/2?after=1"),
	    url_of("/status/404"),
	    url_of("/status/410"),
	    url_of("/status/403"),
	    url_of("/status/500?times=100"),
	    url_of("/reset?times=1"),
	    url_of("/status/408?times=1"),
	    url_of("/retry-after/1?after=2&date=1"),
	};
	int n = (int)(sizeof urls / sizeof *urls);

	o.max_attempts = 4;
	fetch_all(&o, &c, n, urls);
	/* 503 twice, then 200 on attempt 3. */
	show("503x2", &c.r[0]);
	CHECK_INT(c.r[0].status, PM_OK);
	CHECK_INT(c.r[0].attempts, 3);
	CHECK_STR(c.r[0].history, "1: HTTP 503; 2: HTTP 503; 3: HTTP 200");
	CHECK_INT(count_of("/status/503?times=2"), 3);
	/* 429 with Retry-After: 1, twice: at least 2 s in all. */
	show("429", &c.r[1]);
	CHECK_INT(c.r[1].status, PM_OK);
	CHECK_INT(c.r[1].attempts, 3);
	CHECK_STR(c.r[1].history, "1: HTTP 429; 2: HTTP 429; 3: HTTP 200");
	CHECK(c.r[1].elapsed >= 2.0);
	/* 404 and 410: not found, never retried. */
	CHECK_INT(c.r[2].status, PM_ERR_NOT_FOUND);
	CHECK_INT(c.r[2].attempts, 1);
	CHECK_INT(c.r[2].code, 404);
	CHECK_INT(count_of("/status/404"), 1);
	CHECK_INT(c.r[3].status, PM_ERR_NOT_FOUND);
	CHECK_INT(c.r[3].attempts, 1);
	/* Another 4xx: failed, not retried. */
	CHECK_INT(c.r[4].status, PM_ERR_IO);
	CHECK_INT(c.r[4].attempts, 1);
	CHECK_STR(c.r[4].error, "HTTP 403");
	CHECK_INT(count_of("/status/403"), 1);
	/* A 500 that never recovers: the whole budget, then failed. */
	CHECK_INT(c.r[5].status, PM_ERR_IO);
	CHECK_INT(c.r[5].attempts, 4);
	CHECK_STR(c.r[5].error, "HTTP 500 (after 4 attempts)");
	CHECK_INT(count_of("/status/500?times=100"), 4);
	/* A connection reset is retried. */
	show("reset", &c.r[6]);
	CHECK_INT(c.r[6].status, PM_OK);
	/* 2, or 1 when libcurl itself re-sent the request after the reset of
	 * a reused keep-alive connection. */
	CHECK(c.r[6].attempts == 1 || c.r[6].attempts == 2);
	/* 408 is retried. */
	CHECK_INT(c.r[7].status, PM_OK);
	CHECK_INT(c.r[7].attempts, 2);
	/* Retry-After as an HTTP-date (second resolution: >= 1 s). */
	show("429 date", &c.r[8]);
	CHECK_INT(c.r[8].status, PM_OK);
	CHECK_INT(c.r[8].attempts, 2);
	CHECK(c.r[8].elapsed >= 0.9);
	coll_free(&c);
}

static void test_limits_and_timeouts(void)
{
	pm_fetch_opts o = test_opts();
	coll c;
	const char *urls[] = {
	    url_of("/big"),
	    url_of("/big-chunked"),
	    url_of("/img/edge?size=100001"),
	    url_of("/img/edge?size=100000"),
	    url_of("/slow"),
	};
	int n = (int)(sizeof urls / sizeof *urls);
	double t0 = pm_now();

	o.max_body = 100000;
	o.max_attempts = 1;
	o.low_speed_limit = 100; /* /slow drips 10 B/s */
	o.low_speed_time = 2;
	fetch_all(&o, &c, n, urls);
	show("big", &c.r[0]);
	CHECK_INT(c.r[0].status, PM_ERR_TOO_LARGE);
	CHECK(strstr(c.r[0].error, "Content-Length") != NULL);
	show("big-chunked", &c.r[1]);
	CHECK_INT(c.r[1].status, PM_ERR_TOO_LARGE);
	CHECK(strstr(c.r[1].error, "streaming") != NULL);
	CHECK(c.r[1].body == NULL);
	CHECK_INT(c.r[2].status, PM_ERR_TOO_LARGE);
	CHECK_INT(c.r[3].status, PM_OK);
	CHECK(body_matches("edge", c.r[3].body, c.r[3].len, 100000));
	show("slow", &c.r[4]);
	CHECK_INT(c.r[4].status, PM_ERR_IO);
	CHECK(strstr(c.r[4].error, "too slow") != NULL);
	CHECK(strstr(c.r[4].history, "1: too slow") != NULL);
	CHECK(c.r[4].elapsed >= 1.9);
	CHECK(pm_now() - t0 >= 1.9);
	coll_free(&c);

	/* A hung request times out (total timeout, 1 s), and a timeout is
	 * retried: two requests, at least 2 s. */
	o.max_attempts = 2;
	o.total_timeout_ms = 1000;
	o.low_speed_time = 0;
	const char *h[] = {url_of("/hang?n=2")};
	fetch_all(&o, &c, 1, h);
	show("hang", &c.r[0]);
	CHECK_INT(c.r[0].status, PM_ERR_IO);
	CHECK(strstr(c.r[0].error, "timeout after") != NULL);
	CHECK(c.r[0].elapsed >= 1.95);
	CHECK_INT(c.r[0].attempts, 2);
	CHECK(strncmp(c.r[0].history, "1: timeout after", 16) == 0);
	CHECK(strstr(c.r[0].history, "; 2: timeout after") != NULL);
	CHECK_INT(count_of("/hang?n=2"), 2);
	coll_free(&c);
}

static void test_redirects(void)
{
	pm_fetch_opts o = test_opts();
	coll c;
	char to[512];
	snprintf(to, sizeof to, "/redirect?to=http://127.0.0.1:%d/img/r", port);
	const char *urls[] = {
	    url_of("/redirect?to=/img/r%3Fsize%3D300"),
	    url_of(to),
	    url_of("/loop"),
	    url_of("/redirect?to=ftp://127.0.0.1/x"),
	    url_of("/redirect?to=http://u:p@127.0.0.1/x&code=301"),
	};
	int n = (int)(sizeof urls / sizeof *urls);

	fetch_all(&o, &c, n, urls);
	show("redirect", &c.r[0]);
	CHECK_INT(c.r[0].status, PM_OK);
	CHECK_INT(c.r[0].redirects, 1);
	CHECK_INT(c.r[0].attempts, 1);
	CHECK(body_matches("r", c.r[0].body, c.r[0].len, 300));
	CHECK(strstr(c.r[0].final_url, "/img/r?size=300") != NULL);
	CHECK_INT(c.r[1].status, PM_OK);
	CHECK(body_matches("r", c.r[1].body, c.r[1].len, 1000));
	/* A loop stops after max_redirects (5) hops: 6 requests. */
	CHECK_INT(c.r[2].status, PM_ERR_IO);
	CHECK(strstr(c.r[2].error, "too many redirects") != NULL);
	CHECK_INT(count_of("/loop"), 6);
	/* Redirects to another scheme or with userinfo are refused. */
	show("to ftp", &c.r[3]);
	CHECK_INT(c.r[3].status, PM_ERR_UNSUPPORTED);
	CHECK(strstr(c.r[3].error, "ftp") != NULL);
	CHECK_INT(c.r[4].status, PM_ERR_UNSUPPORTED);
	CHECK(strstr(c.r[4].error, "userinfo") != NULL);
	coll_free(&c);
}

static void test_ssrf(void)
{
	pm_fetch_opts o = test_opts();
	coll c;
	char hop[512];

	/* Default guard: the first hop to 127.0.0.1 is refused, and no
	 * request reaches the origin. */
	o.allow_private = false;
	const char *a[] = {url_of("/img/s1"), "ftp://example.com/a.jpg",
			   "http://user:pw@example.com/a.jpg", "not a url"};
	fetch_all(&o, &c, 4, a);
	show("s1", &c.r[0]);
	CHECK_INT(c.r[0].status, PM_ERR_UNSUPPORTED);
	CHECK(strstr(c.r[0].error,
		     "refused: 127.0.0.1 is a loopback address") != NULL);
	CHECK(strstr(c.r[0].error, "--allow-private") != NULL);
	CHECK_INT(count_of("/img/s1"), 0);
	CHECK_INT(c.r[1].status, PM_ERR_UNSUPPORTED);
	CHECK_INT(c.r[1].attempts, 0);
	CHECK_INT(c.r[2].status, PM_ERR_UNSUPPORTED);
	CHECK_INT(c.r[3].status, PM_ERR_CATALOG);
	coll_free(&c);

	/* "localhost" is allow-listed by name, 127.0.0.1 is not: the first
	 * hop goes through, its redirect to 127.0.0.1 is refused. */
	o.allow_list = "localhost";
	snprintf(hop, sizeof hop,
		 "http://localhost:%d/redirect?to=http://127.0.0.1:%d/img/s2",
		 port, port);
	char ok[512];
	snprintf(ok, sizeof ok, "http://localhost:%d/img/s4", port);
	const char *b[] = {hop, ok};
	fetch_all(&o, &c, 2, b);
	show("s2", &c.r[0]);
	CHECK_INT(c.r[0].status, PM_ERR_UNSUPPORTED);
	CHECK(strstr(c.r[0].error, "refused: 127.0.0.1") != NULL);
	CHECK_INT(c.r[0].redirects, 1);
	CHECK_INT(count_of("/img/s2"), 0);
	CHECK_INT(c.r[1].status, PM_OK);
	CHECK(body_matches("s4", c.r[1].body, c.r[1].len, 1000));
	coll_free(&c);

	/* A CIDR on the allow list opens that range. */
	o.allow_list = "127.0.0.0/8";
	const char *d[] = {url_of("/img/s3")};
	fetch_all(&o, &c, 1, d);
	CHECK_INT(c.r[0].status, PM_OK);
	CHECK_INT(count_of("/img/s3"), 1);
	coll_free(&c);

	/* A malformed allow list is a usage error. */
	pm_fetch *f = NULL;
	pm_err e;
	o.allow_list = "10.0.0.0/99";
	CHECK_INT(pm_fetch_new(&o, on_done, &c, &f, &e), PM_ERR_USAGE);
	CHECK(f == NULL);
}

static void test_parallel_limits(void)
{
	enum { N = 200 };
	pm_fetch_opts o = test_opts();
	coll c;
	char urls[N][128];
	double t0;
	int ok = 0, bodies = 0;
	pm_fetch_stats st;

	origin_num("/stats/reset");
	o.per_host_rps = 50;
	o.per_host_max = 4;
	o.max_transfers = 16;
	o.max_queued = 8; /* submit blocks: pending <= 24 */
	coll_init(&c, N);
	pm_fetch *f = engine(&o, &c);
	t0 = pm_now();
	for (int i = 0; i < N; i++) {
		snprintf(urls[i], sizeof urls[i],
			 "http://127.0.0.1:%d/img/p%d?size=2000&delay=20", port,
			 i);
		submit(f, i, urls[i], NULL, NULL);
		pm_fetch_stats_get(f, &st);
		if (st.pending > c.max_pending)
			c.max_pending = st.pending;
	}
	pm_fetch_close(f);
	double took = pm_now() - t0;
	pm_fetch_stats_get(f, &st);
	pm_fetch_free(f);
	for (int i = 0; i < N; i++) {
		char name[16];
		snprintf(name, sizeof name, "p%d", i);
		ok += c.r[i].status == PM_OK;
		bodies += body_matches(name, c.r[i].body, c.r[i].len, 2000);
	}
	CHECK_INT(ok, N);
	CHECK_INT(bodies, N);
	/* 50 req/s with a burst of 4: (200 - 4) / 50 = 3.92 s at least. */
	fprintf(stderr, "  parallel: %d requests in %.2f s\n", N, took);
	CHECK(took >= 3.5);
	long max_active = origin_num("/count?max_active=127.0.0.1");
	long max_sec = origin_num("/count?max_per_sec=127.0.0.1");
	fprintf(stderr, "  parallel: max concurrency %ld, max per second %ld\n",
		max_active, max_sec);
	CHECK(max_active >= 1 && max_active <= 4);
	/* At most burst + rate in any second (a little slack for arrival
	 * jitter at the origin). */
	CHECK(max_sec <= 50 + 4 + 3);
	CHECK(c.max_pending <= 16 + 8);
	CHECK_INT(st.submitted, N);
	CHECK_INT(st.succeeded, N);
	CHECK_INT(st.requests, N);
	CHECK_INT(st.pending, 0);
	CHECK_INT(st.active, 0);
	CHECK_INT(st.inflight_bytes, 0);
	CHECK_INT(st.bytes, (uint64_t)N * 2000);
	coll_free(&c);
}

/* Submits one URL to f and waits for its result in slot i. */
static res *one(pm_fetch *f, coll *c, int i, const char *url)
{
	submit(f, i, url, NULL, NULL);
	coll_wait(c, i + 1);
	return &c->r[i];
}

static void test_breaker(void)
{
	pm_fetch_opts o = test_opts();
	coll c;
	res *r;
	pm_fetch_stats st;

	o.breaker_failures = 3;
	o.breaker_open_ms = 60000;
	o.max_attempts = 1;
	coll_init(&c, 8);
	pm_fetch *f = engine(&o, &c);
	for (int i = 0; i < 3; i++) {
		char p[64];
		snprintf(p, sizeof p, "/status/500?b=%d", i);
		r = one(f, &c, i, url_of(p));
		CHECK_INT(r->status, PM_ERR_IO);
		CHECK_INT(r->attempts, 1);
	}
	/* Open: later requests fail at once, without reaching the origin. */
	r = one(f, &c, 3, url_of("/img/b1"));
	show("b1", r);
	CHECK_INT(r->status, PM_ERR_IO);
	CHECK(strstr(r->error, "circuit open") != NULL);
	CHECK_INT(r->attempts, 0);
	CHECK_STR(r->history, "circuit open");
	r = one(f, &c, 4, url_of("/img/b1"));
	CHECK(strstr(r->error, "circuit open") != NULL);
	CHECK_INT(count_of("/img/b1"), 0);
	/* Another host is not affected. */
	char other[256];
	snprintf(other, sizeof other, "http://localhost:%d/img/b1", port);
	r = one(f, &c, 5, other);
	CHECK_INT(r->status, PM_OK);
	pm_fetch_stats_get(f, &st);
	CHECK_INT(st.breaker_opens, 1);
	pm_fetch_close(f);
	pm_fetch_free(f);
	coll_free(&c);

	/* Half-open: after breaker_open_ms one probe goes through; a failed
	 * probe reopens the circuit, a good one closes it. */
	o.breaker_open_ms = 700;
	coll_init(&c, 8);
	f = engine(&o, &c);
	for (int i = 0; i < 3; i++)
		one(f, &c, i, url_of("/status/500?h=1"));
	r = one(f, &c, 3, url_of("/img/b2"));
	CHECK(strstr(r->error, "circuit open") != NULL);
	usleep(800 * 1000);
	r = one(f, &c, 4, url_of("/status/500?h=probe"));
	CHECK_STR(r->error, "HTTP 500"); /* the probe went out... */
	r = one(f, &c, 5, url_of("/img/b2"));
	CHECK(strstr(r->error, "circuit open") != NULL); /* ...and failed */
	CHECK_INT(count_of("/img/b2"), 0);
	usleep(800 * 1000);
	r = one(f, &c, 6, url_of("/img/b2"));
	CHECK_INT(r->status, PM_OK); /* the probe succeeded: closed */
	r = one(f, &c, 7, url_of("/img/b3"));
	CHECK_INT(r->status, PM_OK);
	CHECK_INT(count_of("/img/b2"), 1);
	pm_fetch_stats_get(f, &st);
	CHECK_INT(st.breaker_opens, 2);
	pm_fetch_close(f);
	pm_fetch_free(f);
	coll_free(&c);

	/* breaker_wait: requests to an open host wait for the probe. */
	o.breaker_wait = true;
	coll_init(&c, 5);
	f = engine(&o, &c);
	for (int i = 0; i < 3; i++)
		one(f, &c, i, url_of("/status/500?w=1"));
	submit(f, 3, url_of("/img/b5"), NULL, NULL);
	submit(f, 4, url_of("/img/b6"), NULL, NULL);
	coll_wait(&c, 5);
	CHECK_INT(c.r[3].status, PM_OK);
	CHECK_INT(c.r[4].status, PM_OK);
	CHECK(c.r[3].elapsed >= 0.65);
	CHECK_INT(count_of("/img/b5"), 1);
	pm_fetch_close(f);
	pm_fetch_free(f);
	coll_free(&c);
}

static void test_cancel(void)
{
	pm_fetch_opts o = test_opts();
	coll c;
	pm_err e;
	double t0;

	o.total_timeout_ms = 60000;
	coll_init(&c, 4);
	pm_fetch *f = engine(&o, &c);
	submit(f, 0, url_of("/hang?c=1"), NULL, NULL);
	submit(f, 1, url_of("/hang?c=2"), NULL, NULL);
	submit(f, 2, url_of("/status/503?c=3"), NULL, NULL); /* backoff */
	usleep(300 * 1000);
	t0 = pm_now();
	pm_fetch_cancel(f);
	coll_wait(&c, 3);
	CHECK(pm_now() - t0 < 5); /* not the 60 s timeout */
	for (int i = 0; i < 3; i++)
		CHECK_INT(c.r[i].status, PM_ERR_CANCELLED);
	pm_fetch_req rq = {url_of("/img/x"), NULL, NULL, (void *)3};
	CHECK_INT(pm_fetch_submit(f, &rq, &e), PM_ERR_CANCELLED);
	pm_fetch_close(f);
	pm_fetch_free(f);
	CHECK_INT(c.got, 3);
	coll_free(&c);

	/* Bad options. */
	pm_fetch_opts bad = test_opts();
	bad.max_transfers = 0;
	f = NULL;
	CHECK_INT(pm_fetch_new(&bad, on_done, &c, &f, &e), PM_ERR_USAGE);
	CHECK_INT(pm_fetch_new(NULL, NULL, &c, &f, &e), PM_ERR_USAGE);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (!origin_start()) {
		fprintf(stderr, "could not start %s\n", origin_path());
		origin_stop();
		CHECK(0);
		TEST_DONE();
	}
	test_bodies_and_conditionals();
	test_retries();
	test_limits_and_timeouts();
	test_redirects();
	test_ssrf();
	test_parallel_limits();
	test_breaker();
	test_cancel();
	origin_stop();
	curl_global_cleanup();
	TEST_DONE();
}
