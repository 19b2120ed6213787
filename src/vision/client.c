/* client.c — one worker's vision API client: a libcurl easy handle reused
 * for every request (keep-alive), and the retry loop of one analysis (see
 * vision.h for the policy).
 *
 * Threads: a client belongs to one thread at a time (the analyze stage
 * makes one per worker in init and frees it in fini). The endpoint it
 * points to is shared and locks itself. curl_global_init is done once by
 * the program (main) before threads start; a client never calls it.
 */
#define _GNU_SOURCE
#include "vision/vision.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "core/metrics.h"
#include "core/util.h"

#define BODY_MAX     (4u << 20) /* bytes of answer kept */
#define BACKOFF_BASE 0.5	/* seconds, doubled per attempt */
#define BACKOFF_MAX  30.0

struct pm_vision_client {
	pm_vision_ep *ep; /* shared, never freed */
	CURL *curl;	  /* reused: keeps the connection alive */
	char url[1100];	  /* {base_url}/chat/completions */
	char errbuf[CURL_ERROR_SIZE];
	pm_vision_recv ans; /* the answer: body (up to BODY_MAX) and
			       Retry-After */
	unsigned seed;	    /* jitter */
};

size_t pm_vision_recv_body(char *p, size_t sz, size_t n, void *ud)
{
	pm_vision_recv *a = ud;
	size_t len = sz * n;

	if (a->len + len > a->max) {
		a->over = true;
		return 0; /* aborts the transfer */
	}
	if (a->len + len + 1 > a->cap) {
		size_t cap = a->cap ? a->cap : 16384;
		char *nb;
		while (cap < a->len + len + 1)
			cap *= 2;
		nb = realloc(a->body, cap);
		if (!nb)
			return 0;
		a->body = nb;
		a->cap = cap;
	}
	memcpy(a->body + a->len, p, len);
	a->len += len;
	a->body[a->len] = '\0';
	return len;
}

size_t pm_vision_recv_header(char *p, size_t sz, size_t n, void *ud)
{
	pm_vision_recv *a = ud;
	size_t len = sz * n;
	static const char name[] = "retry-after:";

	if (len > sizeof name - 1 &&
	    strncasecmp(p, name, sizeof name - 1) == 0) {
		size_t v = len - (sizeof name - 1);
		if (v >= sizeof a->retry_after)
			v = sizeof a->retry_after - 1;
		memcpy(a->retry_after, p + sizeof name - 1, v);
		a->retry_after[v] = '\0';
		for (char *q = a->retry_after; *q; q++)
			if (*q == '\r' || *q == '\n')
				*q = '\0';
	}
	return len;
}

bool pm_vision_recv_reset(pm_vision_recv *a, size_t max)
{
	a->max = max;
	a->len = 0;
	a->over = false;
	a->retry_after[0] = '\0';
	if (!a->body) {
		a->body = malloc(1);
		if (!a->body)
			return false;
		a->cap = 1;
	}
	a->body[0] = '\0';
	return true;
}

pm_status pm_vision_client_new(pm_vision_ep *ep, const char *base_url,
			       pm_vision_client **out, pm_err *err)
{
	pm_vision_client *c;
	size_t n = strlen(base_url);

	*out = NULL;
	if (strncasecmp(base_url, "http://", 7) != 0 &&
	    strncasecmp(base_url, "https://", 8) != 0)
		return pm_fail(err, PM_ERR_PIPELINE,
			       "analyze: base_url must start with http:// or "
			       "https://");
	while (n > 0 && base_url[n - 1] == '/')
		n--;
	if (n + sizeof "/chat/completions" > sizeof c->url)
		return pm_fail(err, PM_ERR_PIPELINE,
			       "analyze: base_url is too long");
	c = calloc(1, sizeof *c);
	if (!c)
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	c->ep = ep;
	snprintf(c->url, sizeof c->url, "%.*s/chat/completions", (int)n,
		 base_url);
	c->seed = (unsigned)(pm_now() * 1e6) ^ (unsigned)(uintptr_t)c;
	c->curl = curl_easy_init();
	if (!c->curl) {
		free(c);
		return pm_fail(err, PM_ERR_NOMEM, "curl_easy_init failed");
	}
	*out = c;
	return PM_OK;
}

void pm_vision_client_free(pm_vision_client *c)
{
	if (!c)
		return;
	curl_easy_cleanup(c->curl);
	free(c->ans.body);
	free(c);
}

void pm_vision_sleep_until(double at)
{
	double d = at - pm_now();
	struct timespec ts;

	if (d <= 0)
		return;
	ts.tv_sec = (time_t)d;
	ts.tv_nsec = (long)((d - (double)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* One POST; *code gets the HTTP status (0 when there was no answer). */
static CURLcode post(pm_vision_client *c, const char *body, const char *key,
		     int timeout_ms, long *code)
{
	struct curl_slist *h = NULL;
	char auth[640];
	CURLcode rc;
	CURL *e = c->curl;

	c->errbuf[0] = '\0';
	if (!pm_vision_recv_reset(&c->ans, BODY_MAX))
		return CURLE_OUT_OF_MEMORY;
	*code = 0;
	curl_easy_reset(e); /* keeps the connection cache */
	h = curl_slist_append(h, "Content-Type: application/json");
	h = curl_slist_append(h, "Accept: application/json");
	h = curl_slist_append(h, "Expect:");
	if (key && *key) {
		snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
		h = curl_slist_append(h, auth);
		explicit_bzero(auth, sizeof auth);
	}
	curl_easy_setopt(e, CURLOPT_URL, c->url);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
			 (curl_off_t)strlen(body));
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
			 (long)(timeout_ms < 10000 ? timeout_ms : 10000));
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, pm_vision_recv_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &c->ans);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, pm_vision_recv_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, &c->ans);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->errbuf);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "pixmill-vision/1");
	rc = curl_easy_perform(e);
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, code);
	/* the header list held the key: wipe it before it is freed */
	for (struct curl_slist *p = h; p; p = p->next)
		explicit_bzero(p->data, strlen(p->data));
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(h);
	return rc;
}

double pm_vision_backoff(unsigned *seed, int attempt)
{
	double cap = BACKOFF_BASE * pow(2, attempt - 1);
	if (cap > BACKOFF_MAX)
		cap = BACKOFF_MAX;
	return cap * ((double)rand_r(seed) / RAND_MAX); /* full jitter */
}

static void count_usage(const pm_vision_cfg *cfg, const pm_vision_answer *a)
{
	double cost = 0;

	if (a->tokens_in > 0) {
		pm_metric_inc(PM_M_VISION_TOKENS, "in", NULL,
			      (double)a->tokens_in);
		cost += (double)a->tokens_in * cfg->price_in / 1000.0;
	}
	if (a->tokens_out > 0) {
		pm_metric_inc(PM_M_VISION_TOKENS, "out", NULL,
			      (double)a->tokens_out);
		cost += (double)a->tokens_out * cfg->price_out / 1000.0;
	}
	if (cost > 0)
		pm_metric_inc(PM_M_VISION_COST, NULL, NULL, cost * 1e6);
}

pm_status pm_vision_analyze(pm_vision_client *c, pm_vision_req *req,
			    pm_vision_answer *out, pm_vision_stats *stats,
			    pm_err *err)
{
	pm_vision_cfg cfg;
	pm_status last = PM_ERR_IO;
	pm_err last_err = {{0}};
	char *body = NULL;
	char reason[200] = "";
	bool strict_used = false;
	int attempts = 0, refusals = 0;
	pm_status s;

	memset(stats, 0, sizeof *stats);
	pm_vision_ep_get_cfg(c->ep, &cfg);
	req->retry_reason = NULL;
	body = pm_vision_request_body(req);
	if (!body)
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	for (;;) {
		int key;
		double at, t0, ra;
		long code;
		CURLcode rc;
		char secret[600], label[16], msg[256];

		if (attempts >= cfg.max_attempts) {
			s = last;
			*err = last_err;
			break;
		}
		s = pm_vision_ep_pick(c->ep, pm_now(), &key, &at, err);
		if (s)
			break;
		pm_vision_sleep_until(at);
		s = pm_vision_ep_shared_wait(c->ep, key, NULL, err);
		if (s)
			break;
		pm_vision_ep_key(c->ep, key, secret, sizeof secret, label,
				 sizeof label);
		t0 = pm_now();
		rc = post(c, body, secret, cfg.timeout_ms, &code);
		explicit_bzero(secret, sizeof secret);
		stats->requests++;
		pm_metric_obs(PM_M_VISION_LATENCY, NULL, NULL, pm_now() - t0);
		ra = pm_vision_retry_after(
		    c->ans.retry_after[0] ? c->ans.retry_after : NULL,
		    time(NULL));
		if (c->ans.over) {
			/* asking again would bring the same flood */
			pm_metric_inc(PM_M_VISION_REQUESTS, "bad_answer", NULL,
				      1);
			pm_vision_ep_report(c->ep, key, PM_VO_NEUTRAL, -1,
					    pm_now());
			s = pm_fail(err, PM_ERR_UPSTREAM,
				    "the vision API's answer is over %u bytes",
				    BODY_MAX);
			break;
		}
		if (rc != CURLE_OK) {
			bool to = rc == CURLE_OPERATION_TIMEDOUT;
			attempts++;
			pm_metric_inc(PM_M_VISION_REQUESTS,
				      to ? "timeout" : "network_error", NULL,
				      1);
			pm_vision_ep_report(c->ep, key, PM_VO_OVERLOAD, -1,
					    pm_now());
			last = PM_ERR_IO;
			if (to)
				pm_fail(&last_err, PM_ERR_IO,
					"the vision API did not answer within "
					"timeout_ms %d (%d attempts)",
					cfg.timeout_ms, attempts);
			else
				pm_fail(&last_err, PM_ERR_IO,
					"vision API request failed: %s (%d "
					"attempts)",
					c->errbuf[0] ? c->errbuf
						     : curl_easy_strerror(rc),
					attempts);
			if (attempts < cfg.max_attempts)
				pm_vision_sleep_until(
				    pm_now() +
				    pm_vision_backoff(&c->seed, attempts));
			continue;
		}
		if (code == 200) {
			pm_vision_answer_clear(out);
			s = pm_vision_parse(c->ans.body, c->ans.len,
					    req->title && *req->title, out,
					    err);
			count_usage(&cfg, out);
			pm_vision_ep_report(c->ep, key, PM_VO_OK, -1, pm_now());
			attempts++;
			if (!s) {
				pm_metric_inc(PM_M_VISION_REQUESTS, "ok", NULL,
					      1);
				stats->latency_ms = (pm_now() - t0) * 1000.0;
				snprintf(stats->key, sizeof stats->key, "%s",
					 label);
				break;
			}
			pm_metric_inc(PM_M_VISION_REQUESTS, "bad_answer", NULL,
				      1);
			if (s != PM_ERR_UPSTREAM || strict_used)
				break;
			/* once more, with a stricter instruction */
			strict_used = true;
			snprintf(reason, sizeof reason, "%.190s", err->msg);
			req->retry_reason = reason;
			free(body);
			body = pm_vision_request_body(req);
			req->retry_reason = NULL;
			if (!body) {
				s = pm_fail(err, PM_ERR_NOMEM, "out of memory");
				break;
			}
			last = s;
			last_err = *err;
			if (attempts >= cfg.max_attempts)
				attempts = cfg.max_attempts - 1;
			continue;
		}
		pm_vision_error_message(c->ans.body, c->ans.len, msg,
					sizeof msg);
		pm_vision_ep_scrub(c->ep, msg);
		if (code == 401 || code == 403) {
			pm_metric_inc(PM_M_VISION_REQUESTS, "auth_error", NULL,
				      1);
			pm_vision_ep_report(c->ep, key, PM_VO_AUTH, -1,
					    pm_now());
			if (key >= 0)
				pm_log(
				    PM_LOG_WARN,
				    "vision API key %s refused (%ld): not used "
				    "again in this process",
				    label, code);
			if (key < 0 || ++refusals > PM_VISION_MAX_KEYS) {
				s = pm_fail(err, PM_ERR_AUTH,
					    "the vision API refused the "
					    "request (%ld) and no API key is "
					    "configured (PIXMILL_VISION_KEYS)",
					    code);
				break;
			}
			continue; /* not counted: try the next key */
		}
		attempts++;
		if (code == 429) {
			pm_metric_inc(PM_M_VISION_REQUESTS, "rate_limited",
				      NULL, 1);
			pm_vision_ep_report(c->ep, key, PM_VO_RATE, ra,
					    pm_now());
			last = PM_ERR_RATE;
			pm_fail(&last_err, PM_ERR_RATE,
				"the vision API kept answering 429 (rate "
				"limited) for %d attempts%s%s",
				attempts, msg[0] ? ": " : "", msg);
			continue; /* the key cools down; another may go */
		}
		if (code >= 500 || code == 408) {
			pm_metric_inc(PM_M_VISION_REQUESTS, "server_error",
				      NULL, 1);
			pm_vision_ep_report(c->ep, key, PM_VO_OVERLOAD, ra,
					    pm_now());
			last = PM_ERR_IO;
			pm_fail(&last_err, PM_ERR_IO,
				"the vision API answered %ld for %d "
				"attempts%s%s",
				code, attempts, msg[0] ? ": " : "", msg);
			if (attempts < cfg.max_attempts)
				pm_vision_sleep_until(
				    pm_now() +
				    (ra > 0 ? fmin(ra, cfg.max_wait_s)
					    : pm_vision_backoff(&c->seed,
								attempts)));
			continue;
		}
		/* 400, 404, 413, 422...: the same request fails again */
		pm_metric_inc(PM_M_VISION_REQUESTS, "bad_request", NULL, 1);
		pm_vision_ep_report(c->ep, key, PM_VO_NEUTRAL, -1, pm_now());
		s = pm_fail(err, PM_ERR_UPSTREAM,
			    "the vision API answered %ld%s%s%s", code,
			    code == 404 ? " (check base_url and model)" : "",
			    msg[0] ? ": " : "", msg);
		break;
	}
	free(body);
	if (s)
		pm_vision_answer_clear(out);
	return s;
}
