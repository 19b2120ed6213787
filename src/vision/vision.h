/* vision.h — a client for vision models behind an OpenAI-compatible
 * chat-completions endpoint (POST {base_url}/chat/completions), used by the
 * analyze stage (src/stages/analyze.c).
 *
 * Three parts:
 *  - answer.c: the request body (model, a system message, a user message
 *    with a text part and the image as a data URL in an image_url part,
 *    response_format) and the parser/validator of the answer: the
 *    envelope (choices[0].message.content, usage) and the content, which
 *    must be a JSON object {"caption", "tags"[, "product_match",
 *    "match_score"]}. Pure functions; any thread.
 *  - limiter.c: one endpoint per (base_url, model), process-wide, shared
 *    by every worker thread: its API keys (secrets; never logged, stored or
 *    hashed: they are named key1, key2, ... everywhere else), the
 *    operational settings (timeouts, attempts, prices, rate bounds) and a
 *    per-key adaptive rate limit (AIMD: the rate is multiplied by
 *    rate_decrease on 429, 5xx, timeouts and network errors, a 429's
 *    Retry-After puts the key in a cool-down, and each success adds
 *    rate_increase up to rate_max). Keys are handed out round-robin,
 *    skipping keys that are disabled (401/403) or not ready yet. One mutex
 *    per endpoint guards all of it; a worker sleeps for its slot outside
 *    the lock. Endpoints live until the process exits.
 *  - client.c: one client per worker thread (a reused libcurl easy handle,
 *    so connections are kept alive), which runs one analysis with retries:
 *    exponential backoff with full jitter on 5xx, timeouts and network
 *    errors; 429 moves to another key at once (the key cools down); 401
 *    and 403 disable the key and move on; other 4xx fail the item at once;
 *    an answer that is not valid JSON or breaks the schema is asked for
 *    once more with a stricter instruction, then fails the item
 *    (PM_ERR_UPSTREAM with the reason).
 *
 * Threads: answer.c functions on any thread; pm_vision_ep_* on any thread
 * (each endpoint has its own mutex); a pm_vision_client on one thread at a
 * time.
 * Ownership: stated per function below.
 */
#ifndef PM_VISION_H
#define PM_VISION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

#include "core/status.h"

#define PM_VISION_MAX_TAGS    32   /* tags kept from an answer */
#define PM_VISION_MAX_TAG     64   /* bytes per tag (longer ones are cut) */
#define PM_VISION_MAX_CAPTION 1000 /* bytes of caption kept */
#define PM_VISION_MAX_KEYS    32   /* API keys per endpoint */
#define PM_VISION_MAX_TITLE   300  /* bytes of the title put in the prompt */

/* ---- answer.c: request body and answer ---- */

typedef struct pm_vision_req {
	const char *model;
	const char *prompt; /* what to describe; NULL = the built-in one */
	const char *title;  /* the product's title (asks for product_match),
			       or NULL */
	const char *response_format; /* "json_object", "json_schema", "none" */
	const char *detail;	  /* image_url detail: "auto", "low", "high" */
	int max_tokens;		  /* 0 = not sent */
	double temperature;	  /* < 0 = not sent */
	const char *retry_reason; /* why the previous answer was refused
				     (a stricter retry), or NULL */
	const char *image_b64;	  /* base64 of a JPEG, NUL-terminated */
} pm_vision_req;

/* The JSON request body; malloc'd, the caller frees it. NULL if memory is
 * short. */
char *pm_vision_request_body(const pm_vision_req *r);

typedef struct pm_vision_answer {
	char *caption;	/* malloc'd, owned by the answer */
	json_t *tags;	/* array of strings, owned by the answer */
	bool has_match; /* product_match/match_score were asked for */
	bool product_match;
	double match_score; /* 0..1 */
	int64_t tokens_in;  /* usage.prompt_tokens, -1 if absent */
	int64_t tokens_out; /* usage.completion_tokens, -1 if absent */
	char model[128];    /* "model" of the answer, or "" */
} pm_vision_answer;

/* Frees what an answer owns and zeroes it; safe on a zeroed answer. */
void pm_vision_answer_clear(pm_vision_answer *a);

/* Parses the body of a 200 answer: the chat completion envelope, then
 * choices[0].message.content as a JSON object (a ```json fence around it
 * is tolerated), validated: "caption" a non-empty string, "tags" an array
 * of strings, and when want_match, "product_match" a boolean and
 * "match_score" a number from 0 to 1. Usage and model are filled in even
 * when the content is refused. PM_ERR_UPSTREAM with the reason in err
 * (never more than a short excerpt of the content). out must be zeroed or
 * cleared; on failure it holds no caption or tags. */
pm_status pm_vision_parse(const char *body, size_t len, bool want_match,
			  pm_vision_answer *out, pm_err *err);

/* error.message of an API error body ({"error": {"message": ...}}), cut
 * to n-1 bytes, control characters replaced; "" if there is none. */
void pm_vision_error_message(const char *body, size_t len, char *buf, size_t n);

/* Seconds a Retry-After header value asks for (delta-seconds or an
 * HTTP-date, relative to now); -1 if absent or unreadable. */
double pm_vision_retry_after(const char *value, time_t now);

/* Base64 (RFC 4648, no line breaks) of buf; malloc'd and NUL-terminated,
 * the caller frees it; NULL if memory is short. */
char *pm_vision_base64(const void *buf, size_t len);

/* ---- limiter.c: endpoints, keys, adaptive rate ---- */

typedef struct pm_vision_cfg {
	int timeout_ms;	      /* whole request */
	int max_attempts;     /* requests per item (401/403 not counted) */
	double price_in;      /* dollars per 1000 prompt tokens */
	double price_out;     /* dollars per 1000 completion tokens */
	double rate_start;    /* requests/s per key at first */
	double rate_min;      /* never slower than this */
	double rate_max;      /* never faster than this */
	double rate_increase; /* added per success (requests/s) */
	double rate_decrease; /* factor on 429, 5xx, timeouts (0..1) */
	double max_wait_s;    /* longest wait for a key before giving up */
	bool no_metrics;      /* keep out of the vision metrics (an endpoint
				 used as a plain rate limiter: image search
				 providers, src/fetch/provider.c) */
} pm_vision_cfg;

void pm_vision_cfg_default(pm_vision_cfg *c);

typedef struct pm_vision_ep pm_vision_ep;

/* The endpoint for (base_url, model), created on first use (with default
 * settings and no keys); lives until the process exits. NULL (and
 * PM_ERR_NOMEM / PM_ERR_PIPELINE) if memory is short or 64 endpoints
 * exist. */
pm_vision_ep *pm_vision_ep_get(const char *base_url, const char *model,
			       pm_err *err);
void pm_vision_ep_get_cfg(pm_vision_ep *ep, pm_vision_cfg *out);
void pm_vision_ep_set_cfg(pm_vision_ep *ep, const pm_vision_cfg *c);
/* Sets every key's rate (and the no-key rate) back to rate_start. */
void pm_vision_ep_reset_rate(pm_vision_ep *ep);
/* Adds an API key (copied; duplicates ignored). PM_ERR_PIPELINE if the
 * key is under 4 bytes, has spaces or control characters, is over 512 bytes, or
 * the endpoint has PM_VISION_MAX_KEYS already. The message never contains
 * the key. */
pm_status pm_vision_ep_add_key(pm_vision_ep *ep, const char *key, pm_err *err);
/* Adds the comma-separated keys of the environment variable
 * PIXMILL_VISION_KEYS, once per endpoint. */
pm_status pm_vision_ep_add_env_keys(pm_vision_ep *ep, pm_err *err);
int pm_vision_ep_key_count(pm_vision_ep *ep);

/* Reserves the next send slot at time now (pm_now() seconds): the key
 * (index; -1 means no key: the endpoint has none, send without
 * Authorization) and the time *at >= now to send. Round-robin among the
 * keys that are not disabled, taking the one ready first. PM_ERR_AUTH
 * when every key is disabled; PM_ERR_RATE (nothing reserved) when the
 * wait would be over max_wait_s. */
pm_status pm_vision_ep_pick(pm_vision_ep *ep, double now, int *key, double *at,
			    pm_err *err);

/* After the slot of pm_vision_ep_pick (and its sleep): waits for the
 * fleet's shared bucket of this API key (src/fleet/fleet.h, when the
 * process has --redis), at the key's current rate, so a fleet sends no
 * faster than one process would. The bucket is named by the SHA-256 of
 * ident when given (a search provider's key), else of the key's secret,
 * else (no key) of the endpoint's base URL and model; the secret itself
 * never leaves the process. Returns at once when Redis is off or down
 * (the local limit applies). PM_ERR_RATE when the wait would pass
 * max_wait_s. Sleeps on the calling thread; takes no lock while it does. */
pm_status pm_vision_ep_shared_wait(pm_vision_ep *ep, int key, const char *ident,
				   pm_err *err);

typedef enum pm_vision_outcome {
	PM_VO_OK,	/* a 200: speed up */
	PM_VO_RATE,	/* 429: slow down, cool down for retry_after */
	PM_VO_OVERLOAD, /* 5xx, timeout, network error: slow down */
	PM_VO_AUTH,	/* 401/403: disable the key */
	PM_VO_NEUTRAL	/* other answers: no change */
} pm_vision_outcome;

/* Reports how a request sent with key went (retry_after in seconds, < 0
 * if none). */
void pm_vision_ep_report(pm_vision_ep *ep, int key, pm_vision_outcome o,
			 double retry_after, double now);
/* The key's secret into buf (for the Authorization header only) and its
 * name ("key1", ...) into label; "" for key -1. */
void pm_vision_ep_key(pm_vision_ep *ep, int key, char *buf, size_t n,
		      char *label, size_t label_n);
/* Current rate (requests/s) of a key, and whether it is disabled. */
double pm_vision_ep_rate(pm_vision_ep *ep, int key, bool *disabled);
/* Replaces every occurrence of a key's secret in s by "***". */
void pm_vision_ep_scrub(pm_vision_ep *ep, char *s);

/* ---- client.c: one worker's client ---- */

/* An HTTP answer being received with libcurl (also used by the image
 * search providers, src/fetch/provider.c): the body, bounded, and the
 * Retry-After header. Owned by its user; free body when done. */
typedef struct pm_vision_recv {
	char *body;	      /* malloc'd, NUL-terminated, grows up to max */
	size_t len, cap, max; /* bytes held, allocated, allowed */
	bool over;	      /* the answer was over max (transfer aborted) */
	char retry_after[64]; /* the Retry-After value, or "" */
} pm_vision_recv;

/* Before each request: empties the answer (body "" after, so it can be
 * read even when nothing came). false if memory is short. */
bool pm_vision_recv_reset(pm_vision_recv *a, size_t max);
/* CURLOPT_WRITEFUNCTION and CURLOPT_HEADERFUNCTION, with a
 * pm_vision_recv as their data. */
size_t pm_vision_recv_body(char *p, size_t sz, size_t n, void *ud);
size_t pm_vision_recv_header(char *p, size_t sz, size_t n, void *ud);

/* Sleeps until pm_now() reaches at (EINTR resumed). */
void pm_vision_sleep_until(double at);
/* A backoff before retry `attempt` (1, 2, ...): full jitter up to 0.5 s
 * doubled per attempt, at most 30 s. seed: the caller's rand_r state. */
double pm_vision_backoff(unsigned *seed, int attempt);

typedef struct pm_vision_client pm_vision_client;

/* base_url must be http:// or https:// (PM_ERR_PIPELINE otherwise). The
 * client keeps a pointer to ep (endpoints are never freed). *out is owned
 * by the caller (pm_vision_client_free). */
pm_status pm_vision_client_new(pm_vision_ep *ep, const char *base_url,
			       pm_vision_client **out, pm_err *err);
void pm_vision_client_free(pm_vision_client *c);

typedef struct pm_vision_stats {
	int requests;	   /* HTTP requests made for this analysis */
	double latency_ms; /* of the request that answered */
	char key[16];	   /* name of the key that answered, or "" */
} pm_vision_stats;

/* One analysis with retries (see the top of this file). req->retry_reason
 * is set internally for the stricter retry. On success *out holds the
 * answer (the caller clears it). Failures: PM_ERR_UPSTREAM (bad answer or
 * a 4xx), PM_ERR_AUTH (every key refused), PM_ERR_RATE (rate limited past
 * the attempts or the wait), PM_ERR_IO (timeouts, 5xx, network). */
pm_status pm_vision_analyze(pm_vision_client *c, pm_vision_req *req,
			    pm_vision_answer *out, pm_vision_stats *stats,
			    pm_err *err);

#endif
