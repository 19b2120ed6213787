/* fetch.h — the network fetch engine: one thread running a libcurl multi
 * loop that downloads http(s) URLs into memory like a well-behaved crawler.
 *
 * What it does for each submitted request:
 *   - checks the URL (pm_urlguard_check_url) and every address a socket is
 *     opened to (the SSRF guard, see urlguard.h); follows redirects itself,
 *     at most max_redirects, re-checking each target and sending each hop
 *     through its own host's limits;
 *   - limits: max_transfers at once, max_inflight_bytes held by transfers,
 *     and per host at most per_host_max at once and per_host_rps requests
 *     per second (token bucket, burst = per_host_max). Each host has its
 *     own queue, so a slow host never holds back the others. When the
 *     process has joined a fleet (--redis, src/fleet/fleet.h), a request
 *     also needs a token from the fleet's bucket of its host, so the
 *     fleet keeps to per_host_rps as one client; while Redis is off or
 *     down, the local bucket alone applies;
 *   - connection reuse and HTTP/2 multiplexing; no Accept-Encoding (image
 *     bodies do not compress);
 *   - timeouts: connect, total, and low speed (slow drip); max_body checked
 *     against Content-Length and again while streaming;
 *   - conditional requests (If-None-Match / If-Modified-Since) when the
 *     request carries an ETag or Last-Modified; a 304 is a success with
 *     not_modified set and no body;
 *   - retries with exponential backoff and full jitter on timeouts,
 *     connection errors and resets, 5xx, 408 and 429, honouring Retry-After
 *     (seconds or HTTP-date, capped at backoff_max_ms); no retry on other
 *     4xx; at most max_attempts requests per item;
 *   - a per-host circuit breaker: breaker_failures consecutive failures
 *     open it; while open, requests to that host fail at once ("circuit
 *     open", no request is sent; with breaker_wait they wait in the
 *     host's queue instead); after breaker_open_ms one probe request is
 *     let through (half-open) and its outcome closes or reopens it.
 *
 * Threads: pm_fetch_new, pm_fetch_close and pm_fetch_free from one owning
 * thread, never from the done callback; pm_fetch_submit, pm_fetch_cancel
 * and pm_fetch_stats_get from any thread, the done callback included. The
 * done callback runs on the fetch thread, one result at a time: it must be
 * quick and must not block for long, because every transfer waits while it
 * runs (a long stall can trip the low-speed timeout of live transfers).
 *
 * Limits worth knowing: the byte budget counts a transfer's Content-Length
 * from its headers, or its bytes so far when there is none, so it is a soft
 * bound: transfers already started may overshoot it by up to max_body each
 * (no new transfer starts while it is spent). Submission is bounded
 * globally (max_transfers + max_queued), so a catalog dominated by one
 * slow or rate-limited host fills that bound and the submitter waits.
 */
#ifndef PM_FETCH_H
#define PM_FETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct pm_fetch_opts {
	int max_transfers;	    /* transfers at once (64) */
	int max_queued;		    /* accepted but not started (1024) */
	int64_t max_inflight_bytes; /* bytes held by transfers (256 MiB) */
	int per_host_max;	    /* transfers at once per host (8) */
	double per_host_rps;	 /* requests/s per host, <= 0: no limit (10) */
	long connect_timeout_ms; /* (10000) */
	long total_timeout_ms;	 /* whole request (60000) */
	long low_speed_limit;	 /* bytes/s ... (1024) */
	long low_speed_time;	 /* ... for this many seconds aborts (15) */
	int64_t max_body;	 /* bytes (64 MiB) */
	int max_redirects;	 /* (5) */
	int max_attempts;	 /* requests per item, >= 1 (4) */
	long backoff_base_ms;	 /* first retry waits up to this (500) */
	long backoff_max_ms;	 /* no wait longer, Retry-After too (30000) */
	int breaker_failures;	 /* consecutive failures, 0: off (5) */
	long breaker_open_ms;	 /* open this long, then probe (30000) */
	bool breaker_wait;	 /* open: requests wait for the probe
				    instead of failing at once (false) */
	bool allow_private;	 /* turn the private-address check off */
	const char *allow_list;	 /* hosts and CIDRs let through; copied */
	const char *user_agent;	 /* NULL: "pixmill/VERSION"; copied */
	/* Per-host overrides of per_host_max and per_host_rps, as
	 * "HOST=N[/RPS],..." where HOST is a name or "*.domain" (every
	 * subdomain); the first match wins. NULL: none. Copied. */
	const char *host_limits;
	const char *ca_file; /* PEM bundle trusted instead of the system's
				(NULL: the system's); copied */
} pm_fetch_opts;

/* Fills o with the defaults above. Start from this, then change fields. */
void pm_fetch_opts_default(pm_fetch_opts *o);

/* Checks o as pm_fetch_new would (bounds, host_limits syntax), so a
 * command line can refuse bad values before any work starts. */
pm_status pm_fetch_opts_check(const pm_fetch_opts *o, pm_err *err);

/* One request. Every string is copied by pm_fetch_submit: the caller keeps
 * ownership of its own. */
typedef struct pm_fetch_req {
	const char *url;
	const char *etag;	   /* NULL, or the ETag of the copy we hold */
	const char *last_modified; /* NULL, or its Last-Modified */
	void *ud;		   /* handed back in the result, untouched */
} pm_fetch_req;

/* The outcome of one request, passed to the done callback.
 * Ownership: body is malloc'd and passes to the callback, which must
 * free() it (or keep it); it is NULL when there is no body. Every string
 * is owned by the engine and valid only until the callback returns: copy
 * what you keep. */
typedef struct pm_fetch_result {
	void *ud;	       /* from the request */
	pm_status status;      /* PM_OK, or why it failed (below) */
	const char *error;     /* "" on success, else the reason */
	const char *url;       /* as submitted */
	const char *final_url; /* after redirects */
	long http_code;	       /* of the last response, 0 if none */
	void *body;	       /* PM_OK and not 304: the bytes (NUL after) */
	size_t len;
	const char *etag;	   /* NULL if the response had none */
	const char *last_modified; /* NULL if none */
	const char *content_type;  /* NULL if none */
	bool not_modified;	   /* 304 to a conditional request */
	int attempts;	     /* requests sent (redirect hops not counted) */
	int redirects;	     /* redirects followed */
	const char *history; /* "1: timeout after 10.0s; 2: HTTP 200" */
	double elapsed_s;    /* from submit to this result */
} pm_fetch_result;
/* Failure statuses: PM_ERR_IO network errors, timeouts, HTTP errors, open
 * circuit, too many redirects; PM_ERR_NOT_FOUND 404 and 410;
 * PM_ERR_TOO_LARGE body over max_body; PM_ERR_UNSUPPORTED scheme other than
 * http(s), userinfo, or an address refused by the SSRF guard ("refused:
 * ..."); PM_ERR_CATALOG malformed URL; PM_ERR_CANCELLED pm_fetch_cancel;
 * PM_ERR_NOMEM. */

typedef void (*pm_fetch_done_fn)(pm_fetch_result *r, void *cb_ud);

typedef struct pm_fetch pm_fetch;

/* Starts the fetch thread. opts is copied (NULL: defaults). done is called
 * once per submitted request, on the fetch thread, with cb_ud. PM_ERR_USAGE
 * for a bad option or allow list. *out is owned by the caller, who must
 * pm_fetch_close then pm_fetch_free it. */
pm_status pm_fetch_new(const pm_fetch_opts *opts, pm_fetch_done_fn done,
		       void *cb_ud, pm_fetch **out, pm_err *err);

/* Queues a request. Blocks while max_transfers + max_queued requests are
 * pending or the in-flight byte budget is spent (backpressure), except when
 * called from the done callback (it never blocks there). PM_OK means the
 * callback will be called exactly once for it; PM_ERR_CANCELLED after
 * close or cancel, PM_ERR_NOMEM: then no callback comes. */
pm_status pm_fetch_submit(pm_fetch *f, const pm_fetch_req *req, pm_err *err);

/* Fails every pending and in-flight request with PM_ERR_CANCELLED (their
 * callbacks still come) and refuses new ones. Returns at once. */
void pm_fetch_cancel(pm_fetch *f);

/* No more submissions: waits for every pending request to finish (retries
 * and backoff included), then joins the thread. */
void pm_fetch_close(pm_fetch *f);
/* Frees a closed engine. */
void pm_fetch_free(pm_fetch *f);

/* Counters for progress and metrics; a consistent-enough snapshot. */
typedef struct pm_fetch_stats {
	uint64_t submitted, succeeded, failed;
	uint64_t not_modified;	/* 304s */
	uint64_t requests;	/* HTTP requests sent, retries included */
	uint64_t retries;	/* requests that were retries */
	uint64_t refused;	/* SSRF guard refusals */
	uint64_t breaker_opens; /* circuits opened */
	uint64_t bytes;		/* body bytes received */
	int64_t inflight_bytes; /* held by transfers now */
	int active;		/* transfers now */
	int pending;		/* submitted, no result yet */
} pm_fetch_stats;
void pm_fetch_stats_get(pm_fetch *f, pm_fetch_stats *st);

#endif
