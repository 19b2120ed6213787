/* fetch.c — the network fetch engine: one thread, one libcurl multi handle,
 * per-host queues, token buckets and circuit breakers, retries with backoff.
 * See fetch.h for the behaviour and the API.
 *
 * Threads: pm_fetch_submit, pm_fetch_cancel and pm_fetch_stats_get run on
 * any thread and touch only the inbox, the counters and the byte budget
 * (all under f->mu or atomic). Everything else (hosts, queues, the delayed
 * list, curl handles) belongs to the fetch thread alone, as do the curl
 * callbacks and the done callback.
 *
 * The life of a request (an "xfer"): submit puts it in the inbox and wakes
 * the loop with curl_multi_wakeup; the loop checks its URL and appends it to
 * its host's queue; the scheduler starts it when the global and per-host
 * limits, the host's token bucket and its breaker allow; when curl is done
 * the outcome is classified as success, redirect (back to a host queue,
 * maybe another host's), retry (to the delayed list, sorted by due time) or
 * failure; a success or failure is delivered to the done callback, and the
 * xfer is freed.
 */
#include "fetch/fetch.h"

#include "core/metrics.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "core/util.h"
#include "fetch/urlguard.h"
#include "fleet/fleet.h"

#ifndef PM_VERSION
#define PM_VERSION "0.0.0"
#endif

#define HOST_MAX 256

typedef struct host host;
typedef struct xfer xfer;

enum { BR_CLOSED, BR_OPEN, BR_HALF_OPEN };

struct xfer {
	xfer *next;	     /* inbox, host queue or delayed list */
	xfer *anext, *aprev; /* the active list */
	pm_fetch *f;
	char *url;     /* as submitted (owned) */
	char *cur_url; /* current hop (owned) */
	char *etag;    /* conditional validators (owned, may be NULL) */
	char *last_modified;
	void *ud;
	char host_name[HOST_MAX];
	host *h;
	int attempts, hops;
	bool redirecting; /* the next request is a redirect hop */
	bool is_probe;	  /* the half-open breaker's probe */
	double t_submit, t_start, not_before;
	char history[1024];
	size_t hist_len;
	/* The current request; reset by req_reset. */
	CURL *easy;
	struct curl_slist *hdrs;
	long code; /* from the last status line seen */
	char *body;
	size_t len, cap;
	int64_t reserved; /* bytes counted in f->inflight_bytes */
	int64_t declared; /* Content-Length, -1 if none */
	char r_etag[256], r_lm[128], r_ctype[256];
	double retry_after; /* seconds, < 0 if none */
	bool too_large, nomem;
	char refused[320];
	char errbuf[CURL_ERROR_SIZE];
};

struct host {
	host *hnext;	     /* hash chain */
	host *rnext, *rprev; /* ready ring: hosts with queued xfers */
	bool in_ready;
	char name[HOST_MAX];
	xfer *qhead, *qtail;
	int qlen;
	int active;
	int refs; /* xfers pointing here: queued, delayed, active */
	double tokens, t_tokens;
	double shared_after; /* the fleet's bucket said wait until then */
	int max;    /* transfers at once (per_host_max or an override) */
	double rps; /* requests/s, <= 0: none (per_host_rps or override) */
	int state, consec;
	double open_until;
	bool probing;
	double last_used;
};

struct pm_fetch {
	pm_fetch_opts o;
	char *allow_list, *user_agent, *ca_file; /* owned copies */
	struct host_limit {
		char pat[HOST_MAX]; /* "name" or "*.domain" */
		int max;
		double rps;
	} * limits; /* parsed host_limits (owned) */
	int n_limits;
	pm_urlguard *guard;
	pm_fetch_done_fn done;
	void *cb_ud;
	CURLM *multi;
	pthread_t thread;
	bool started;

	/* Shared with submitters, under mu. */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	xfer *inbox, *inbox_tail;
	int pending; /* submitted, not yet delivered */
	bool closing, cancelled;
	_Atomic int64_t inflight_bytes;

	/* Fetch thread only. */
	host **htab;
	size_t hcap, hcount, hosts_since_sweep;
	host *ready; /* the ring's current start */
	int n_ready;
	xfer *delayed;
	xfer *active_list;
	int active;
	uint64_t rng;

	/* Counters, any thread reads. */
	_Atomic uint64_t n_submitted, n_ok, n_failed, n_304, n_requests,
	    n_retries, n_refused, n_opens, n_bytes;
	_Atomic int n_active;
};

void pm_fetch_opts_default(pm_fetch_opts *o)
{
	memset(o, 0, sizeof *o);
	o->max_transfers = 64;
	o->max_queued = 1024;
	o->max_inflight_bytes = 256ll << 20;
	o->per_host_max = 8;
	o->per_host_rps = 10;
	o->connect_timeout_ms = 10000;
	o->total_timeout_ms = 60000;
	o->low_speed_limit = 1024;
	o->low_speed_time = 15;
	o->max_body = 64ll << 20;
	o->max_redirects = 5;
	o->max_attempts = 4;
	o->backoff_base_ms = 500;
	o->backoff_max_ms = 30000;
	o->breaker_failures = 5;
	o->breaker_open_ms = 30000;
}

/* ---- small helpers ---- */

static uint64_t rng_next(pm_fetch *f)
{
	/* xorshift64*: jitter only, no need for quality. */
	f->rng ^= f->rng >> 12;
	f->rng ^= f->rng << 25;
	f->rng ^= f->rng >> 27;
	return f->rng * 2685821657736338717ull;
}

static void hist_add(xfer *x, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void hist_add(xfer *x, const char *fmt, ...)
{
	va_list ap;
	size_t room = sizeof x->history - x->hist_len;
	int n;

	if (room <= 1)
		return;
	if (x->hist_len) {
		n = snprintf(x->history + x->hist_len, room, "; ");
		x->hist_len += (size_t)n < room ? (size_t)n : room - 1;
		room = sizeof x->history - x->hist_len;
	}
	va_start(ap, fmt);
	n = vsnprintf(x->history + x->hist_len, room, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	x->hist_len += (size_t)n < room ? (size_t)n : room - 1;
}

/* Copies header value v (len n, maybe with CRLF) into dst, trimmed. */
static void copy_value(char *dst, size_t dn, const char *v, size_t n)
{
	while (n && (*v == ' ' || *v == '\t')) {
		v++;
		n--;
	}
	while (n && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' ' ||
		     v[n - 1] == '\t'))
		n--;
	if (n >= dn)
		n = dn - 1;
	memcpy(dst, v, n);
	dst[n] = '\0';
}

/* Header values that are safe to send back in a request header. */
static bool header_safe(const char *s)
{
	if (!s || !*s || strlen(s) > 1000)
		return false;
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

/* Gives n bytes of the budget back and wakes blocked submitters. */
static void bytes_release(pm_fetch *f, int64_t n)
{
	if (n <= 0)
		return;
	pthread_mutex_lock(&f->mu);
	atomic_fetch_sub(&f->inflight_bytes, n);
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
}

static void bytes_reserve(xfer *x, int64_t want)
{
	if (want > x->reserved) {
		atomic_fetch_add(&x->f->inflight_bytes, want - x->reserved);
		x->reserved = want;
	}
}

/* ---- hosts ---- */

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static bool host_evictable(pm_fetch *f, host *h, double now)
{
	double idle = (double)f->o.breaker_open_ms / 1000.0;
	if (h->rps > 0 && h->max / h->rps > idle)
		idle = h->max / h->rps;
	if (idle < 1)
		idle = 1;
	return h->refs == 0 && h->active == 0 && !h->in_ready &&
	       now - h->last_used > idle &&
	       (h->state != BR_OPEN || now >= h->open_until);
}

/* Frees idle hosts so a catalog of millions of hosts stays bounded. */
static void hosts_sweep(pm_fetch *f, double now)
{
	for (size_t i = 0; i < f->hcap; i++) {
		host **pp = &f->htab[i];
		while (*pp) {
			host *h = *pp;
			if (host_evictable(f, h, now)) {
				*pp = h->hnext;
				free(h);
				f->hcount--;
			} else {
				pp = &h->hnext;
			}
		}
	}
}

static bool htab_grow(pm_fetch *f)
{
	size_t ncap = f->hcap ? f->hcap * 2 : 256;
	host **nt = calloc(ncap, sizeof *nt);
	if (!nt)
		return false;
	for (size_t i = 0; i < f->hcap; i++) {
		host *h = f->htab[i];
		while (h) {
			host *next = h->hnext;
			size_t b = hash_str(h->name) & (ncap - 1);
			h->hnext = nt[b];
			nt[b] = h;
			h = next;
		}
	}
	free(f->htab);
	f->htab = nt;
	f->hcap = ncap;
	return true;
}

/* The host named name, created if new; NULL if memory is short. */
static host *host_get(pm_fetch *f, const char *name, double now)
{
	host *h;
	size_t b;

	if (f->hcap) {
		b = hash_str(name) & (f->hcap - 1);
		for (h = f->htab[b]; h; h = h->hnext)
			if (strcmp(h->name, name) == 0)
				return h;
	}
	if (f->hcount > 1024 && ++f->hosts_since_sweep >= f->hcount / 4) {
		f->hosts_since_sweep = 0;
		hosts_sweep(f, now);
	}
	if (f->hcount + 1 > f->hcap * 3 / 4 && !htab_grow(f))
		return NULL;
	h = calloc(1, sizeof *h);
	if (!h)
		return NULL;
	snprintf(h->name, sizeof h->name, "%s", name);
	h->max = f->o.per_host_max;
	h->rps = f->o.per_host_rps;
	for (int i = 0; i < f->n_limits; i++) {
		const char *p = f->limits[i].pat;
		size_t nl = strlen(name), pl = strlen(p);
		bool hit = p[0] == '*'
			       ? nl > pl - 1 && strcasecmp(name + nl - (pl - 1),
							   p + 1) == 0
			       : strcasecmp(name, p) == 0;
		if (hit) {
			h->max = f->limits[i].max;
			h->rps = f->limits[i].rps;
			break;
		}
	}
	h->tokens = h->max;
	h->t_tokens = now;
	h->last_used = now;
	b = hash_str(name) & (f->hcap - 1);
	h->hnext = f->htab[b];
	f->htab[b] = h;
	f->hcount++;
	return h;
}

static void ready_add(pm_fetch *f, host *h)
{
	if (h->in_ready)
		return;
	h->in_ready = true;
	f->n_ready++;
	if (!f->ready) {
		h->rnext = h->rprev = h;
		f->ready = h;
		return;
	}
	h->rnext = f->ready;
	h->rprev = f->ready->rprev;
	h->rprev->rnext = h;
	f->ready->rprev = h;
}

static void ready_remove(pm_fetch *f, host *h)
{
	if (!h->in_ready)
		return;
	h->in_ready = false;
	f->n_ready--;
	if (h->rnext == h) {
		f->ready = NULL;
	} else {
		h->rprev->rnext = h->rnext;
		h->rnext->rprev = h->rprev;
		if (f->ready == h)
			f->ready = h->rnext;
	}
	h->rnext = h->rprev = NULL;
}

/* Appends x to host h's queue; x holds a reference to h from now on. */
static void host_enqueue(pm_fetch *f, host *h, xfer *x)
{
	if (x->h != h) {
		if (x->h)
			x->h->refs--;
		h->refs++;
		x->h = h;
	}
	x->next = NULL;
	if (h->qtail)
		h->qtail->next = x;
	else
		h->qhead = x;
	h->qtail = x;
	h->qlen++;
	ready_add(f, h);
}

static xfer *host_pop(host *h)
{
	xfer *x = h->qhead;
	if (!x)
		return NULL;
	h->qhead = x->next;
	if (!h->qhead)
		h->qtail = NULL;
	h->qlen--;
	x->next = NULL;
	return x;
}

/* The breaker: a failure that says the host is unwell. */
static void host_failed(pm_fetch *f, host *h, bool probe, double now)
{
	h->consec++;
	if (probe)
		h->probing = false;
	if (f->o.breaker_failures <= 0)
		return;
	if (h->state == BR_HALF_OPEN ||
	    (h->state == BR_CLOSED && h->consec >= f->o.breaker_failures)) {
		h->state = BR_OPEN;
		h->open_until = now + f->o.breaker_open_ms / 1000.0;
		h->probing = false;
		atomic_fetch_add(&f->n_opens, 1);
		pm_log(PM_LOG_WARN,
		       "fetch: circuit open for %s after %d consecutive "
		       "failures; probing again in %.0f s",
		       h->name, h->consec, f->o.breaker_open_ms / 1000.0);
	}
}

/* The host answered sensibly (any HTTP answer but 5xx/408/429). */
static void host_ok(host *h)
{
	h->consec = 0;
	h->state = BR_CLOSED;
	h->probing = false;
}

/* ---- delivery ---- */

static void req_reset(pm_fetch *f, xfer *x)
{
	if (x->easy) {
		curl_multi_remove_handle(f->multi, x->easy);
		curl_easy_cleanup(x->easy);
		x->easy = NULL;
	}
	curl_slist_free_all(x->hdrs);
	x->hdrs = NULL;
	free(x->body);
	x->body = NULL;
	x->len = x->cap = 0;
	bytes_release(f, x->reserved);
	x->reserved = 0;
	x->code = 0;
	x->declared = -1;
	x->r_etag[0] = x->r_lm[0] = x->r_ctype[0] = '\0';
	x->retry_after = -1;
	x->too_large = x->nomem = false;
	x->refused[0] = '\0';
	x->errbuf[0] = '\0';
}

static void xfer_free(xfer *x)
{
	free(x->url);
	free(x->cur_url);
	free(x->etag);
	free(x->last_modified);
	free(x->body);
	free(x);
}

/* Hands the outcome to the callback and frees x. status PM_OK delivers the
 * body (ownership passes); otherwise msg is the reason. */
static void deliver(pm_fetch *f, xfer *x, pm_status status, const char *msg,
		    bool not_modified)
{
	pm_fetch_result r;
	int64_t reserved = x->reserved;

	memset(&r, 0, sizeof r);
	r.ud = x->ud;
	r.status = status;
	r.error = status == PM_OK ? "" : (msg ? msg : "failed");
	r.url = x->url;
	r.final_url = x->cur_url;
	r.http_code = x->code;
	if (status == PM_OK && !not_modified) {
		if (!x->body) {
			x->body = malloc(1); /* an empty body is not NULL */
			if (x->body)
				x->body[0] = '\0';
		}
		r.body = x->body;
		r.len = x->len;
		x->body = NULL;
	}
	r.etag = x->r_etag[0] ? x->r_etag : NULL;
	r.last_modified = x->r_lm[0] ? x->r_lm : NULL;
	r.content_type = x->r_ctype[0] ? x->r_ctype : NULL;
	r.not_modified = status == PM_OK && not_modified;
	r.attempts = x->attempts;
	r.redirects = x->hops;
	r.history = x->history;
	r.elapsed_s = pm_now() - x->t_submit;
	if (status == PM_OK) {
		atomic_fetch_add(&f->n_ok, 1);
		if (not_modified)
			atomic_fetch_add(&f->n_304, 1);
		pm_metric_inc(PM_M_FETCH_REQUESTS,
			      not_modified ? "not_modified" : "ok", NULL, 1);
		pm_metric_inc(PM_M_FETCH_BYTES, NULL, NULL, (double)r.len);
	} else {
		atomic_fetch_add(&f->n_failed, 1);
		pm_metric_inc(PM_M_FETCH_REQUESTS, "error", NULL, 1);
	}
	if (x->h) {
		x->h->refs--;
		x->h->last_used = pm_now();
	}
	f->done(&r, f->cb_ud); /* the body is the callback's now */
	if (x->easy) {
		curl_multi_remove_handle(f->multi, x->easy);
		curl_easy_cleanup(x->easy);
	}
	curl_slist_free_all(x->hdrs);
	pthread_mutex_lock(&f->mu);
	atomic_fetch_sub(&f->inflight_bytes, reserved);
	f->pending--;
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
	xfer_free(x);
}

static void deliver_fail(pm_fetch *f, xfer *x, pm_status s, const char *fmt,
			 ...) __attribute__((format(printf, 4, 5)));
static void deliver_fail(pm_fetch *f, xfer *x, pm_status s, const char *fmt,
			 ...)
{
	pm_err e;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(e.msg, sizeof e.msg, fmt, ap);
	va_end(ap);
	deliver(f, x, s, e.msg, false);
}

/* ---- curl callbacks (fetch thread) ---- */

static bool is_2xx(long c)
{
	return c >= 200 && c < 300;
}

static size_t on_header(char *buf, size_t size, size_t n, void *ud)
{
	xfer *x = ud;
	pm_fetch *f = x->f;
	size_t len = size * n;
	const char *colon;
	size_t name_len;
	const char *v;
	size_t vlen;

	if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
		/* A new response (a 1xx may come before the real one). */
		const char *p = memchr(buf, ' ', len);
		x->code = p ? strtol(p + 1, NULL, 10) : 0;
		x->declared = -1;
		x->r_etag[0] = x->r_lm[0] = x->r_ctype[0] = '\0';
		x->retry_after = -1;
		return len;
	}
	colon = memchr(buf, ':', len);
	if (!colon)
		return len;
	name_len = (size_t)(colon - buf);
	v = colon + 1;
	vlen = len - name_len - 1;
#define IS(h) (name_len == sizeof(h) - 1 && strncasecmp(buf, h, name_len) == 0)
	if (IS("content-length")) {
		char tmp[32];
		copy_value(tmp, sizeof tmp, v, vlen);
		char *end;
		long long cl = strtoll(tmp, &end, 10);
		if (end == tmp || *end || cl < 0)
			return len;
		x->declared = cl;
		if (!is_2xx(x->code))
			return len;
		if (cl > f->o.max_body) {
			x->too_large = true;
			return 0; /* aborts the transfer */
		}
		/* Count the whole body now and allocate it once. */
		bytes_reserve(x, cl);
		if ((size_t)cl + 1 > x->cap) {
			char *nb = realloc(x->body, (size_t)cl + 1);
			if (nb) {
				x->body = nb;
				x->cap = (size_t)cl + 1;
			}
		}
	} else if (IS("etag")) {
		copy_value(x->r_etag, sizeof x->r_etag, v, vlen);
	} else if (IS("last-modified")) {
		copy_value(x->r_lm, sizeof x->r_lm, v, vlen);
	} else if (IS("content-type")) {
		copy_value(x->r_ctype, sizeof x->r_ctype, v, vlen);
	} else if (IS("retry-after")) {
		char tmp[128];
		char *end;
		copy_value(tmp, sizeof tmp, v, vlen);
		double s = strtod(tmp, &end);
		if (end != tmp && !*end && s >= 0 && isfinite(s)) {
			x->retry_after = s;
		} else {
			time_t t = curl_getdate(tmp, NULL);
			if (t != -1) {
				double d = difftime(t, time(NULL));
				x->retry_after = d > 0 ? d : 0;
			}
		}
	}
#undef IS
	return len;
}

static size_t on_body(char *buf, size_t size, size_t n, void *ud)
{
	xfer *x = ud;
	pm_fetch *f = x->f;
	size_t len = size * n;

	if (!is_2xx(x->code))
		return len; /* error pages and redirects: not kept */
	if ((int64_t)(x->len + len) > f->o.max_body) {
		x->too_large = true;
		return 0;
	}
	if (x->len + len + 1 > x->cap) {
		size_t ncap = x->cap ? x->cap * 2 : 64 * 1024;
		while (ncap < x->len + len + 1)
			ncap *= 2;
		if ((int64_t)ncap > f->o.max_body + 1)
			ncap = (size_t)f->o.max_body + 1;
		char *nb = realloc(x->body, ncap);
		if (!nb) {
			x->nomem = true;
			return 0;
		}
		x->body = nb;
		x->cap = ncap;
	}
	memcpy(x->body + x->len, buf, len);
	x->len += len;
	x->body[x->len] = '\0';
	bytes_reserve(x, (int64_t)x->len);
	atomic_fetch_add(&f->n_bytes, len);
	return len;
}

/* The SSRF check, on the very address curl is about to connect to. */
static curl_socket_t on_open_socket(void *ud, curlsocktype purpose,
				    struct curl_sockaddr *a)
{
	xfer *x = ud;
	char why[sizeof x->refused];

	if (purpose != CURLSOCKTYPE_IPCXN) {
		snprintf(x->refused, sizeof x->refused,
			 "refused: unexpected socket type");
		return CURL_SOCKET_BAD;
	}
	if (!pm_urlguard_connect_allowed(x->f->guard, x->host_name, &a->addr,
					 why, sizeof why)) {
		if (!x->refused[0])
			memcpy(x->refused, why, sizeof why);
		return CURL_SOCKET_BAD;
	}
	return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

/* ---- starting a request ---- */

static bool start(pm_fetch *f, xfer *x, double now)
{
	CURL *e;
	char hdr[1200];

	req_reset(f, x);
	e = curl_easy_init();
	if (!e)
		return false;
	x->easy = e;
	x->t_start = now;
	if (!x->redirecting) {
		x->attempts++;
		if (x->attempts > 1)
			atomic_fetch_add(&f->n_retries, 1);
	}
	x->redirecting = false;
	if (x->etag && header_safe(x->etag)) {
		snprintf(hdr, sizeof hdr, "If-None-Match: %s", x->etag);
		x->hdrs = curl_slist_append(x->hdrs, hdr);
	}
	if (x->last_modified && header_safe(x->last_modified)) {
		snprintf(hdr, sizeof hdr, "If-Modified-Since: %s",
			 x->last_modified);
		struct curl_slist *l = curl_slist_append(x->hdrs, hdr);
		if (l)
			x->hdrs = l;
	}
	curl_easy_setopt(e, CURLOPT_URL, x->cur_url);
	curl_easy_setopt(e, CURLOPT_PRIVATE, x);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	/* Redirects are followed by the engine, hop by hop, so each target
	 * is checked and rate-limited as its own host; MAXREDIRS is only a
	 * second fence. */
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_MAXREDIRS, (long)f->o.max_redirects);
	curl_easy_setopt(e, CURLOPT_PROXY, ""); /* no proxy from the env */
	curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
	curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, x);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, f->o.connect_timeout_ms);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, f->o.total_timeout_ms);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, f->o.low_speed_limit);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, f->o.low_speed_time);
	curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE,
			 (curl_off_t)f->o.max_body);
	curl_easy_setopt(e, CURLOPT_USERAGENT, f->user_agent);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdrs);
	curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
	curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	if (f->ca_file)
		curl_easy_setopt(e, CURLOPT_CAINFO, f->ca_file);
	/* No CURLOPT_ACCEPT_ENCODING: image bodies do not compress. */
	if (curl_multi_add_handle(f->multi, e) != CURLM_OK)
		return false;
	x->h->active++;
	x->h->last_used = now;
	f->active++;
	atomic_store(&f->n_active, f->active);
	atomic_fetch_add(&f->n_requests, 1);
	x->aprev = NULL;
	x->anext = f->active_list;
	if (f->active_list)
		f->active_list->aprev = x;
	f->active_list = x;
	return true;
}

static void active_remove(pm_fetch *f, xfer *x)
{
	if (x->aprev)
		x->aprev->anext = x->anext;
	else
		f->active_list = x->anext;
	if (x->anext)
		x->anext->aprev = x->aprev;
	x->anext = x->aprev = NULL;
	x->h->active--;
	f->active--;
	atomic_store(&f->n_active, f->active);
}

/* ---- outcomes ---- */

/* Puts x on the delayed list, due at x->not_before. */
static void delay_insert(pm_fetch *f, xfer *x)
{
	xfer **pp = &f->delayed;
	while (*pp && (*pp)->not_before <= x->not_before)
		pp = &(*pp)->next;
	x->next = *pp;
	*pp = x;
}

/* Retry if the budget allows, else fail with reason. */
static void retry_or_fail(pm_fetch *f, xfer *x, const char *reason, double now)
{
	if (x->attempts < f->o.max_attempts) {
		pm_metric_inc(PM_M_FETCH_REQUESTS, "retry", NULL, 1);
		double cap = (double)f->o.backoff_base_ms *
			     pow(2.0, (double)(x->attempts - 1));
		if (cap > (double)f->o.backoff_max_ms)
			cap = (double)f->o.backoff_max_ms;
		double delay_ms = cap * (double)(rng_next(f) >> 11) / 0x1p53;
		if (x->retry_after >= 0) {
			double ra = x->retry_after * 1000.0;
			if (ra > (double)f->o.backoff_max_ms)
				ra = (double)f->o.backoff_max_ms;
			if (ra > delay_ms)
				delay_ms = ra;
		}
		x->not_before = now + delay_ms / 1000.0;
		req_reset(f, x);
		delay_insert(f, x);
		return;
	}
	if (x->attempts > 1)
		deliver_fail(f, x, PM_ERR_IO, "%s (after %d attempts)", reason,
			     x->attempts);
	else
		deliver_fail(f, x, PM_ERR_IO, "%s", reason);
}

/* Sends x to its redirect target, or fails it. */
static void follow(pm_fetch *f, xfer *x, const char *to, double now)
{
	char host_name[HOST_MAX];
	pm_err e;
	pm_status s;
	host *h;
	char *copy;

	if (x->hops >= f->o.max_redirects) {
		hist_add(x, "%d: too many redirects", x->attempts);
		deliver_fail(
		    f, x, PM_ERR_IO,
		    "too many redirects (more than %d), last to %.300s",
		    f->o.max_redirects, to);
		return;
	}
	s = pm_urlguard_url_host(to, host_name, sizeof host_name, &e);
	if (s) {
		atomic_fetch_add(&f->n_refused, 1);
		hist_add(x, "%d: HTTP %ld, redirect refused", x->attempts,
			 x->code);
		deliver_fail(f, x, s, "redirect to %.300s refused: %s", to,
			     e.msg);
		return;
	}
	copy = strdup(to);
	h = copy ? host_get(f, host_name, now) : NULL;
	if (!h) {
		free(copy);
		deliver_fail(f, x, PM_ERR_NOMEM, "out of memory");
		return;
	}
	free(x->cur_url);
	x->cur_url = copy;
	snprintf(x->host_name, sizeof x->host_name, "%s", host_name);
	x->hops++;
	x->redirecting = true;
	req_reset(f, x);
	host_enqueue(f, h, x);
}

static bool retryable_curl(CURLcode c)
{
	switch (c) {
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_HTTP3:
	case CURLE_QUIC_CONNECT_ERROR:
		return true;
	default:
		return false;
	}
}

/* Classifies a finished request of x and acts on it. */
static void finish(pm_fetch *f, xfer *x, CURLcode res, double now)
{
	char reason[600];
	double took = now - x->t_start;
	host *h = x->h;
	bool probe = x->is_probe;
	long code = 0;

	x->is_probe = false;
	active_remove(f, x);
	curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
	if (code)
		x->code = code;
	if (x->nomem) {
		if (probe)
			h->probing = false;
		deliver_fail(f, x, PM_ERR_NOMEM, "out of memory for the body");
		return;
	}
	if (x->too_large || res == CURLE_FILESIZE_EXCEEDED) {
		host_ok(h);
		hist_add(x, "%d: too large", x->attempts);
		if (x->declared > f->o.max_body)
			deliver_fail(f, x, PM_ERR_TOO_LARGE,
				     "body of %lld bytes (Content-Length) is "
				     "over the limit of %lld",
				     (long long)x->declared,
				     (long long)f->o.max_body);
		else
			deliver_fail(f, x, PM_ERR_TOO_LARGE,
				     "body is over the limit of %lld bytes "
				     "(stopped while streaming)",
				     (long long)f->o.max_body);
		return;
	}
	if (res != CURLE_OK) {
		if (x->refused[0] && res == CURLE_COULDNT_CONNECT) {
			if (probe)
				h->probing = false;
			atomic_fetch_add(&f->n_refused, 1);
			hist_add(x, "%d: refused", x->attempts);
			deliver_fail(f, x, PM_ERR_UNSUPPORTED, "%s",
				     x->refused);
			return;
		}
		const char *detail =
		    x->errbuf[0] ? x->errbuf : curl_easy_strerror(res);
		if (res == CURLE_OPERATION_TIMEDOUT) {
			/* libcurl says "Connection timed out after N ms"
			 * while connecting; a request on a reused connection
			 * has no connect time either, so the time alone
			 * cannot tell. */
			if (strncmp(x->errbuf, "Operation too slow", 18) == 0)
				snprintf(reason, sizeof reason,
					 "too slow: under %ld B/s for %ld s",
					 f->o.low_speed_limit,
					 f->o.low_speed_time);
			else if (strncmp(x->errbuf, "Connection timed out",
					 20) == 0 ||
				 strncmp(x->errbuf, "Failed to connect", 17) ==
				     0)
				snprintf(reason, sizeof reason,
					 "connect timeout after %.1fs", took);
			else
				snprintf(reason, sizeof reason,
					 "timeout after %.1fs", took);
		} else {
			snprintf(reason, sizeof reason, "%s", detail);
		}
		hist_add(x, "%d: %s", x->attempts, reason);
		if (!retryable_curl(res)) {
			host_ok(h); /* TLS/protocol trouble: not an outage */
			deliver_fail(f, x, PM_ERR_IO, "%s", reason);
			return;
		}
		host_failed(f, h, probe, now);
		retry_or_fail(f, x, reason, now);
		return;
	}
	code = x->code;
	if (is_2xx(code) || code == 304) {
		host_ok(h);
		hist_add(x, "%d: HTTP %ld", x->attempts, code);
		deliver(f, x, PM_OK, NULL, code == 304);
		return;
	}
	if (code >= 300 && code < 400) {
		char *to = NULL;
		host_ok(h);
		curl_easy_getinfo(x->easy, CURLINFO_REDIRECT_URL, &to);
		if (to && (code == 301 || code == 302 || code == 303 ||
			   code == 307 || code == 308)) {
			char *copy = strdup(to); /* freed with the handle */
			if (!copy) {
				deliver_fail(f, x, PM_ERR_NOMEM,
					     "out of memory");
				return;
			}
			follow(f, x, copy, now);
			free(copy);
			return;
		}
		hist_add(x, "%d: HTTP %ld", x->attempts, code);
		deliver_fail(f, x, PM_ERR_IO,
			     "HTTP %ld without a usable Location", code);
		return;
	}
	snprintf(reason, sizeof reason, "HTTP %ld", code);
	hist_add(x, "%d: %s", x->attempts, reason);
	if (code == 404 || code == 410) {
		host_ok(h);
		deliver_fail(f, x, PM_ERR_NOT_FOUND, "%s", reason);
		return;
	}
	if (code == 408 || code == 429 || code >= 500) {
		host_failed(f, h, probe, now);
		retry_or_fail(f, x, reason, now);
		return;
	}
	host_ok(h);
	deliver_fail(f, x, PM_ERR_IO, "%s", reason);
}

/* ---- the loop ---- */

/* Takes the inbox and routes each new request to its host queue. */
static void drain_inbox(pm_fetch *f, double now)
{
	xfer *x, *next;
	bool cancelled;
	pm_err e;

	pthread_mutex_lock(&f->mu);
	x = f->inbox;
	f->inbox = f->inbox_tail = NULL;
	cancelled = f->cancelled;
	pthread_mutex_unlock(&f->mu);
	for (; x; x = next) {
		next = x->next;
		x->next = NULL;
		if (cancelled) {
			deliver_fail(f, x, PM_ERR_CANCELLED, "cancelled");
			continue;
		}
		pm_status s = pm_urlguard_url_host(x->url, x->host_name,
						   sizeof x->host_name, &e);
		if (s) {
			if (s == PM_ERR_UNSUPPORTED)
				atomic_fetch_add(&f->n_refused, 1);
			deliver(f, x, s, e.msg, false);
			continue;
		}
		host *h = host_get(f, x->host_name, now);
		if (!h) {
			deliver_fail(f, x, PM_ERR_NOMEM, "out of memory");
			continue;
		}
		host_enqueue(f, h, x);
	}
}

/* Fails every request of a host whose circuit is open. */
static void fail_open_host(pm_fetch *f, host *h, double now)
{
	xfer *x;
	while ((x = host_pop(h))) {
		hist_add(x, "circuit open");
		deliver_fail(f, x, PM_ERR_IO,
			     "circuit open for %s: %d consecutive failures, "
			     "next probe in %.0f s (no request sent)",
			     h->name, h->consec, h->open_until - now);
	}
}

/* The fleet's token bucket of h (src/fleet/fleet.h), asked once the local
 * bucket has a token: true to go (a shared token was taken, or Redis is
 * off or down: the local limit alone applies), false to wait (wake moved
 * to when the fleet's bucket will have one). A wait is remembered, so the
 * loop does not ask Redis again before then. One call is one round trip
 * on loopback or the LAN; a dead Redis costs at most its command timeout
 * once, then nothing until it is retried (redis.h). */
static bool shared_token(host *h, double now, double *wake)
{
	long wait_ms = 0;

	if (now < h->shared_after) {
		if (h->shared_after < *wake)
			*wake = h->shared_after;
		return false;
	}
	if (pm_fleet_take_host(h->name, h->rps, h->max, &wait_ms) != PM_OK ||
	    wait_ms <= 0)
		return true;
	h->shared_after = now + (double)wait_ms / 1000.0;
	if (h->shared_after < *wake)
		*wake = h->shared_after;
	return false;
}

/* Moves due retries to their hosts and starts what the limits allow, one
 * request per host per round, round robin over the hosts with queued work.
 * Returns the next time something becomes startable (INFINITY: only a
 * completion or a submission can change anything). */
static double schedule(pm_fetch *f, double now)
{
	double wake = INFINITY;
	bool progress = true;

	while (f->delayed && f->delayed->not_before <= now) {
		xfer *x = f->delayed;
		f->delayed = x->next;
		host_enqueue(f, x->h, x);
	}
	if (f->delayed)
		wake = f->delayed->not_before;
	while (progress && f->ready) {
		int n = f->n_ready;
		progress = false;
		for (int i = 0; i < n && f->ready; i++) {
			host *h = f->ready;
			f->ready = h->rnext; /* the next round starts after h */
			if (f->active >= f->o.max_transfers ||
			    atomic_load(&f->inflight_bytes) >=
				f->o.max_inflight_bytes)
				return wake;
			if (h->state == BR_OPEN && now >= h->open_until) {
				h->state = BR_HALF_OPEN;
				h->probing = false;
			}
			if (h->state == BR_OPEN && f->o.breaker_wait) {
				if (h->open_until < wake)
					wake = h->open_until;
				continue; /* parked until the probe */
			}
			if (h->state == BR_OPEN)
				fail_open_host(f, h, now);
			if (!h->qhead) {
				ready_remove(f, h);
				continue;
			}
			if (h->active >= h->max ||
			    (h->state == BR_HALF_OPEN && h->probing))
				continue;
			if (h->rps > 0) {
				double burst = h->max;
				h->tokens += (now - h->t_tokens) * h->rps;
				if (h->tokens > burst)
					h->tokens = burst;
				h->t_tokens = now;
				if (h->tokens < 1) {
					double t =
					    now + (1 - h->tokens) / h->rps;
					if (t < wake)
						wake = t;
					continue;
				}
				if (!shared_token(h, now, &wake))
					continue;
				h->tokens -= 1;
			}
			xfer *x = host_pop(h);
			if (h->state == BR_HALF_OPEN) {
				h->probing = true;
				x->is_probe = true;
			}
			if (!start(f, x, now)) {
				if (x->is_probe)
					h->probing = false;
				x->is_probe = false;
				req_reset(f, x);
				deliver_fail(f, x, PM_ERR_NOMEM,
					     "could not start a transfer");
			}
			progress = true;
			if (!h->qhead)
				ready_remove(f, h);
		}
	}
	return wake;
}

/* Fails everything still held: pm_fetch_cancel. */
static void cancel_all(pm_fetch *f)
{
	while (f->active_list) {
		xfer *x = f->active_list;
		active_remove(f, x);
		hist_add(x, "%d: cancelled", x->attempts);
		deliver_fail(f, x, PM_ERR_CANCELLED, "cancelled");
	}
	while (f->delayed) {
		xfer *x = f->delayed;
		f->delayed = x->next;
		deliver_fail(f, x, PM_ERR_CANCELLED, "cancelled");
	}
	while (f->ready) {
		host *h = f->ready;
		xfer *x;
		while ((x = host_pop(h)))
			deliver_fail(f, x, PM_ERR_CANCELLED, "cancelled");
		ready_remove(f, h);
	}
}

static void *fetch_main(void *arg)
{
	pm_fetch *f = arg;

	for (;;) {
		double now = pm_now();
		bool cancelled, finished = false;
		int running = 0;
		CURLMsg *m;
		int left;

		drain_inbox(f, now);
		pthread_mutex_lock(&f->mu);
		cancelled = f->cancelled;
		pthread_mutex_unlock(&f->mu);
		if (cancelled)
			cancel_all(f);
		double wake = schedule(f, now);
		curl_multi_perform(f->multi, &running);
		while ((m = curl_multi_info_read(f->multi, &left))) {
			if (m->msg != CURLMSG_DONE)
				continue;
			xfer *x = NULL;
			CURLcode res = m->data.result;
			curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE,
					  (char **)&x);
			finish(f, x, res, pm_now());
			finished = true;
		}
		pthread_mutex_lock(&f->mu);
		bool over = f->closing && f->pending == 0 && !f->inbox;
		bool more = f->inbox != NULL;
		pthread_mutex_unlock(&f->mu);
		if (over)
			break;
		if (finished || more)
			continue; /* slots freed: schedule again first */
		int timeout = 1000;
		if (wake < INFINITY) {
			double ms = (wake - pm_now()) * 1000.0;
			timeout = ms <= 0 ? 0 : ms >= 1000 ? 1000 : (int)ms + 1;
		}
		curl_multi_poll(f->multi, NULL, 0, timeout, NULL);
	}
	return NULL;
}

/* ---- the public API ---- */

/* Parses spec ("HOST=N[/RPS],...") into *out (malloc'd, the caller's;
 * NULL when spec is NULL or empty) and *n. */
static pm_status parse_host_limits(const char *spec, struct host_limit **out,
				   int *n, pm_err *err)
{
	struct host_limit *v = NULL;
	int cnt = 0;
	const char *p = spec;

	*out = NULL;
	*n = 0;
	while (p && *p) {
		const char *end = strchr(p, ','), *eq;
		size_t len = end ? (size_t)(end - p) : strlen(p);
		char item[HOST_MAX + 64], *rest;
		long max;
		double rps = -1;
		struct host_limit *nv;

		if (len == 0 || len >= sizeof item)
			goto bad;
		memcpy(item, p, len);
		item[len] = 0;
		eq = strchr(item, '=');
		if (!eq || eq == item || (size_t)(eq - item) >= HOST_MAX ||
		    (item[0] == '*' && (eq - item < 3 || item[1] != '.')))
			goto bad;
		errno = 0;
		max = strtol(eq + 1, &rest, 10);
		if (rest == eq + 1 || errno || max < 1 || max > 1024)
			goto bad;
		if (*rest == '/') {
			char *r2;
			rps = strtod(rest + 1, &r2);
			if (r2 == rest + 1 || *r2 || !isfinite(rps) || rps < 0)
				goto bad;
		} else if (*rest)
			goto bad;
		nv = realloc(v, (cnt + 1) * sizeof *v);
		if (!nv) {
			free(v);
			return pm_fail(err, PM_ERR_NOMEM, "out of memory");
		}
		v = nv;
		snprintf(v[cnt].pat, sizeof v[cnt].pat, "%.*s",
			 (int)(eq - item), item);
		v[cnt].max = (int)max;
		v[cnt].rps = rps; /* < 0: keep per_host_rps (set below) */
		cnt++;
		p = end ? end + 1 : NULL;
	}
	*out = v;
	*n = cnt;
	return PM_OK;
bad:
	free(v);
	return pm_fail(err, PM_ERR_USAGE,
		       "host limits: \"%.80s\" is not HOST=N[/RPS] (N 1 to "
		       "1024 transfers, RPS requests/s, 0 for no limit; HOST "
		       "a name or *.domain), comma-separated",
		       p);
}

static pm_status check_opts(const pm_fetch_opts *o, pm_err *err)
{
	if (o->max_transfers < 1 || o->max_queued < 0 || o->per_host_max < 1)
		return pm_fail(err, PM_ERR_USAGE,
			       "fetch: max_transfers and per_host_max must be "
			       "at least 1");
	if (o->max_inflight_bytes < 1 || o->max_body < 1)
		return pm_fail(err, PM_ERR_USAGE,
			       "fetch: byte limits must be positive");
	if (o->max_attempts < 1 || o->max_redirects < 0)
		return pm_fail(err, PM_ERR_USAGE,
			       "fetch: max_attempts must be at least 1");
	if (o->connect_timeout_ms < 0 || o->total_timeout_ms < 0 ||
	    o->low_speed_limit < 0 || o->low_speed_time < 0 ||
	    o->backoff_base_ms < 0 || o->backoff_max_ms < 0 ||
	    o->breaker_open_ms < 0 || !isfinite(o->per_host_rps))
		return pm_fail(err, PM_ERR_USAGE,
			       "fetch: timeouts and delays must not be "
			       "negative");
	return PM_OK;
}

pm_status pm_fetch_opts_check(const pm_fetch_opts *o, pm_err *err)
{
	struct host_limit *v;
	int n;
	pm_status s = check_opts(o, err);

	if (!s)
		s = parse_host_limits(o->host_limits, &v, &n, err);
	if (!s)
		free(v);
	return s;
}

pm_status pm_fetch_new(const pm_fetch_opts *opts, pm_fetch_done_fn done,
		       void *cb_ud, pm_fetch **out, pm_err *err)
{
	pm_fetch *f;
	pm_status s;

	*out = NULL;
	if (!done)
		return pm_fail(err, PM_ERR_USAGE, "fetch: no done callback");
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return pm_fail(err, PM_ERR_INTERNAL,
			       "fetch: curl_global_init failed");
	f = calloc(1, sizeof *f);
	if (!f) {
		curl_global_cleanup();
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	}
	if (opts)
		f->o = *opts;
	else
		pm_fetch_opts_default(&f->o);
	pthread_mutex_init(&f->mu, NULL);
	pthread_cond_init(&f->cv, NULL);
	f->done = done;
	f->cb_ud = cb_ud;
	s = check_opts(&f->o, err);
	if (s)
		goto fail;
	f->allow_list = f->o.allow_list ? strdup(f->o.allow_list) : NULL;
	f->user_agent =
	    strdup(f->o.user_agent ? f->o.user_agent : "pixmill/" PM_VERSION);
	f->ca_file = f->o.ca_file ? strdup(f->o.ca_file) : NULL;
	f->o.allow_list = f->allow_list;
	f->o.user_agent = f->user_agent;
	f->o.ca_file = f->ca_file;
	if (!f->user_agent || (opts && opts->allow_list && !f->allow_list) ||
	    (opts && opts->ca_file && !f->ca_file)) {
		s = pm_fail(err, PM_ERR_NOMEM, "out of memory");
		goto fail;
	}
	s = parse_host_limits(f->o.host_limits, &f->limits, &f->n_limits, err);
	if (s)
		goto fail;
	f->o.host_limits = NULL; /* parsed; the caller's string may go */
	s = pm_urlguard_new(f->o.allow_private, f->allow_list, &f->guard, err);
	if (s)
		goto fail;
	f->rng = (uint64_t)(pm_wall() * 1e6) ^ ((uint64_t)getpid() << 32) ^
		 (uint64_t)(uintptr_t)f;
	if (!f->rng)
		f->rng = 88172645463325252ull;
	f->multi = curl_multi_init();
	if (!f->multi) {
		s = pm_fail(err, PM_ERR_NOMEM, "fetch: curl_multi_init failed");
		goto fail;
	}
	curl_multi_setopt(f->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
	{
		int most = f->o.per_host_max;
		for (int i = 0; i < f->n_limits; i++) {
			if (f->limits[i].rps < 0)
				f->limits[i].rps = f->o.per_host_rps;
			if (f->limits[i].max > most)
				most = f->limits[i].max;
		}
		curl_multi_setopt(f->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
				  (long)most);
	}
	curl_multi_setopt(f->multi, CURLMOPT_MAXCONNECTS,
			  (long)f->o.max_transfers * 2);
	if (pthread_create(&f->thread, NULL, fetch_main, f)) {
		s = pm_fail(err, PM_ERR_INTERNAL,
			    "fetch: could not start the thread");
		goto fail;
	}
	f->started = true;
	*out = f;
	return PM_OK;
fail:
	pm_fetch_free(f);
	return s;
}

pm_status pm_fetch_submit(pm_fetch *f, const pm_fetch_req *req, pm_err *err)
{
	xfer *x;
	bool own_thread;

	if (!req || !req->url)
		return pm_fail(err, PM_ERR_USAGE, "fetch: request without URL");
	x = calloc(1, sizeof *x);
	if (!x)
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	x->f = f;
	x->ud = req->ud;
	x->url = strdup(req->url);
	x->cur_url = strdup(req->url);
	x->etag = req->etag ? strdup(req->etag) : NULL;
	x->last_modified =
	    req->last_modified ? strdup(req->last_modified) : NULL;
	x->declared = -1;
	x->retry_after = -1;
	if (!x->url || !x->cur_url || (req->etag && !x->etag) ||
	    (req->last_modified && !x->last_modified)) {
		xfer_free(x);
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	}
	x->t_submit = pm_now();
	own_thread = f->started && pthread_equal(pthread_self(), f->thread);
	pthread_mutex_lock(&f->mu);
	while (!own_thread && !f->closing && !f->cancelled &&
	       (f->pending >= f->o.max_transfers + f->o.max_queued ||
		atomic_load(&f->inflight_bytes) >= f->o.max_inflight_bytes))
		pthread_cond_wait(&f->cv, &f->mu);
	if (f->cancelled || (f->closing && !own_thread)) {
		pthread_mutex_unlock(&f->mu);
		xfer_free(x);
		return pm_fail(err, PM_ERR_CANCELLED,
			       "fetch: the engine is closing");
	}
	f->pending++;
	if (f->inbox_tail)
		f->inbox_tail->next = x;
	else
		f->inbox = x;
	f->inbox_tail = x;
	pthread_mutex_unlock(&f->mu);
	atomic_fetch_add(&f->n_submitted, 1);
	curl_multi_wakeup(f->multi);
	return PM_OK;
}

void pm_fetch_cancel(pm_fetch *f)
{
	pthread_mutex_lock(&f->mu);
	f->cancelled = true;
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
	curl_multi_wakeup(f->multi);
}

void pm_fetch_close(pm_fetch *f)
{
	if (!f || !f->started)
		return;
	pthread_mutex_lock(&f->mu);
	f->closing = true;
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
	curl_multi_wakeup(f->multi);
	pthread_join(f->thread, NULL);
	f->started = false;
}

void pm_fetch_free(pm_fetch *f)
{
	if (!f)
		return;
	pm_fetch_close(f);
	for (size_t i = 0; i < f->hcap; i++) {
		host *h = f->htab[i];
		while (h) {
			host *next = h->hnext;
			free(h);
			h = next;
		}
	}
	free(f->htab);
	if (f->multi)
		curl_multi_cleanup(f->multi);
	pm_urlguard_free(f->guard);
	free(f->allow_list);
	free(f->user_agent);
	free(f->ca_file);
	free(f->limits);
	pthread_mutex_destroy(&f->mu);
	pthread_cond_destroy(&f->cv);
	free(f);
	curl_global_cleanup();
}

void pm_fetch_stats_get(pm_fetch *f, pm_fetch_stats *st)
{
	memset(st, 0, sizeof *st);
	st->submitted = atomic_load(&f->n_submitted);
	st->succeeded = atomic_load(&f->n_ok);
	st->failed = atomic_load(&f->n_failed);
	st->not_modified = atomic_load(&f->n_304);
	st->requests = atomic_load(&f->n_requests);
	st->retries = atomic_load(&f->n_retries);
	st->refused = atomic_load(&f->n_refused);
	st->breaker_opens = atomic_load(&f->n_opens);
	st->bytes = atomic_load(&f->n_bytes);
	st->inflight_bytes = atomic_load(&f->inflight_bytes);
	st->active = atomic_load(&f->n_active);
	pthread_mutex_lock(&f->mu);
	st->pending = f->pending;
	pthread_mutex_unlock(&f->mu);
}
