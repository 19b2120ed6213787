/* server.c — `pixmill serve`'s HTTP side: the libmicrohttpd daemon, the
 * route table, authentication, rate limits, answers (JSON, files, errors,
 * compression), the operations routes (health, metrics, OpenAPI, chart
 * series, the embedded dashboard), the ticker, and start/stop.
 *
 * Request life (see serve.h for the threads): libmicrohttpd calls
 * on_request several times per request: first with no body (we route,
 * authenticate and rate-limit there, before reading a byte of body), then
 * with body chunks (kept up to the route's limit), then once more with no
 * data: the handler runs. Quick handlers answer at once; uploads suspend
 * the connection until an upload worker has the answer. on_completed
 * records the request's metrics and frees it.
 *
 * Threads: on_request/on_completed on libmicrohttpd's pool threads; the
 * ticker on its own; pm_serve on the main thread. HTTP threads borrow a
 * store connection from a pool (s->pool) for one request at a time: the
 * borrowed handle sits in thread-local storage while the handler runs
 * and goes back to the pool when it returns.
 */
#define _GNU_SOURCE
#include "serve/serve.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/metrics.h"
#include "fleet/fleet.h"
#include "core/util.h"
#include "serve/web_assets.h"
#include "store/store.h"

static volatile sig_atomic_t stop_flag;

/* ---- the drain watchdog ----
 * After SIGTERM, shutdown goes through phases (the running job, uploads,
 * the HTTP daemon, the ticker, the stores). Each is named here as it
 * starts and logged, and a watchdog thread gives the whole drain
 * PIXMILL_DRAIN_GRACE seconds (default 150): past that it logs the phase
 * it is stuck in and leaves with exit code 5 (internal), so a hang is
 * bounded and says where it was. Nothing committed is lost; what was in
 * flight and not committed is redone by the next run of its job. */
static _Atomic(const char *) drain_phase;
static atomic_int drain_over;

static void drain_enter(const char *phase)
{
	atomic_store(&drain_phase, phase);
	pm_log(PM_LOG_DEBUG, "shutdown: %s", phase);
}

static void *drain_watchdog(void *arg)
{
	double grace = 150, t0 = pm_now();
	const char *env = getenv("PIXMILL_DRAIN_GRACE");

	(void)arg;
	if (env && atof(env) > 0)
		grace = atof(env);
	while (!atomic_load(&drain_over)) {
		if (pm_now() - t0 > grace) {
			char msg[256];
			int n = snprintf(msg, sizeof msg,
					 "pixmill serve: shutdown still in "
					 "\"%s\" after %.0f s "
					 "(PIXMILL_DRAIN_GRACE): leaving now\n",
					 atomic_load(&drain_phase), grace);
			if (n > 0 && write(2, msg, (size_t)n) < 0)
				n = 0;
			_exit(5);
		}
		usleep(100 * 1000);
	}
	return NULL;
}

void pm_serve_stop(void)
{
	stop_flag = 1;
}

void pm_serve_opts_default(pm_serve_opts *o)
{
	memset(o, 0, sizeof *o);
	o->listen = "127.0.0.1:8080";
	o->data = "pixmill-data";
	pm_limits_default(&o->limits);
	pm_fetch_opts_default(&o->fetch);
	o->fetch.breaker_wait = true;
	o->durability = PM_SYNC_FILE;
}

/* ---- routes ---- */

enum {
	F_BODY = 1,   /* reads a catalog body (max_body) */
	F_UPLOAD = 2, /* reads an image body (max_upload) */
	F_OPS = 4,    /* operations: open unless protect_ops */
	F_QKEY = 8,   /* accepts ?api_key= (EventSource cannot set headers) */
	F_ASSET = 16, /* an output file: open when public_assets is set */
};

typedef struct route {
	const char *method;
	const char *pattern; /* {x} captures one segment */
	void (*fn)(srv_req *q);
	unsigned flags;
	const char *summary; /* for the OpenAPI document */
	const char *query;   /* query parameters, comma-separated */
	const char *ok;	     /* success status, for OpenAPI */
} route;

static void h_health(srv_req *q);
static void h_live(srv_req *q);
static void h_ready(srv_req *q);
static void h_metrics(srv_req *q);
static void h_openapi(srv_req *q);
static void h_stats(srv_req *q);

static const route routes[] = {
    {"POST", "/api/jobs", srv_h_job_create, F_BODY, "Submit a catalog",
     "pipeline,sizes,formats,quality,name", "202"},
    {"GET", "/api/jobs", srv_h_jobs, 0, "Recent jobs", "limit", "200"},
    {"GET", "/api/jobs/{id}", srv_h_job_get, 0, "One job", "", "200"},
    {"DELETE", "/api/jobs/{id}", srv_h_job_cancel, 0, "Cancel a job", "",
     "202"},
    {"GET", "/api/jobs/{id}/events", srv_h_job_events, F_QKEY,
     "Job progress as Server-Sent Events", "api_key", "200"},
    {"GET", "/api/fleet/events", srv_h_fleet_events, F_QKEY,
     "The fleet's progress messages (--redis) as Server-Sent Events", "api_key",
     "200"},
    {"GET", "/api/jobs/{id}/items", srv_h_job_items, 0,
     "Page through a job's items", "state,limit,cursor", "200"},
    {"POST", "/api/jobs/{id}/retry", srv_h_job_retry, 0,
     "Retry a job's failed items", "reason", "202"},
    {"GET", "/api/failed", srv_h_failed, 0, "The dead-letter queue",
     "job,reason,limit", "200"},
    {"POST", "/api/images", srv_h_image, F_UPLOAD,
     "Process one uploaded image now", "pipeline,sizes,formats,quality,title",
     "200"},
    {"GET", "/api/images", srv_h_images, 0,
     "The image gallery, filtered (catalog views)",
     "q,job,format,has_text,has_caption,tag,duplicates,limit,cursor", "200"},
    {"GET", "/api/images/{sha256}", srv_h_image_get, 0,
     "One image: outputs, facts, OCR text, caption, duplicates, similar", "",
     "200"},
    {"GET", "/api/assets/{sha256}/{name}", srv_h_asset, F_ASSET,
     "An output file", "", "200"},
    {"GET", "/api/outputs", srv_h_outputs, 0, "Recent outputs", "limit", "200"},
    {"GET", "/api/search/text", srv_h_search_text, 0,
     "Full-text search (titles, attributes, OCR text)",
     "q,limit,job,category,has_text", "200"},
    {"POST", "/api/search/image", srv_h_search_image, F_UPLOAD,
     "Nearest images by embedding and perceptual hash", "limit,max_distance",
     "200"},
    {"GET", "/api/stats", h_stats, 0, "Per-second series for the charts", "",
     "200"},
    {"GET", "/api/openapi.json", h_openapi, F_OPS, "This document", "", "200"},
    {"GET", "/health", h_health, F_OPS, "Health with component status", "",
     "200"},
    {"GET", "/health/live", h_live, F_OPS, "Liveness", "", "200"},
    {"GET", "/health/ready", h_ready, F_OPS, "Readiness", "", "200"},
    {"GET", "/metrics", h_metrics, F_OPS, "Prometheus metrics", "", "200"},
};
#define N_ROUTES     ((int)(sizeof routes / sizeof routes[0]))
#define ROUTE_STATIC N_ROUTES /* the dashboard's files */

static const char *route_label(int r)
{
	if (r >= 0 && r < N_ROUTES)
		return routes[r].pattern;
	return r == ROUTE_STATIC ? "/ (dashboard)" : "(unmatched)";
}

/* ---- answers ---- */

static void reply_reset(srv_reply *r)
{
	free(r->body);
	if (r->fd >= 0)
		close(r->fd);
	if (r->resp)
		MHD_destroy_response(r->resp);
	memset(r, 0, sizeof *r);
	r->fd = -1;
}

void srv_reply_text(srv_req *q, int status, const char *ctype, const char *text,
		    size_t len)
{
	reply_reset(&q->reply);
	q->reply.status = status;
	snprintf(q->reply.ctype, sizeof q->reply.ctype, "%s", ctype);
	q->reply.body = malloc(len + 1);
	if (q->reply.body) {
		memcpy(q->reply.body, text, len);
		q->reply.len = len;
	}
}

void srv_reply_json(srv_req *q, int status, json_t *j)
{
	char *txt = j ? json_dumps(j, JSON_COMPACT) : NULL;

	json_decref(j);
	reply_reset(&q->reply);
	if (!txt) {
		status = 500;
		txt = strdup("{\"error\":{\"code\":\"internal\","
			     "\"message\":\"could not build the answer\"}}");
	}
	q->reply.status = status;
	snprintf(q->reply.ctype, sizeof q->reply.ctype,
		 "application/json; charset=utf-8");
	q->reply.body = txt; /* the reply owns it */
	q->reply.len = txt ? strlen(txt) : 0;
}

void srv_reply_error(srv_req *q, pm_status st, const char *fmt, ...)
{
	char msg[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	srv_reply_json(q, pm_status_http(st),
		       json_pack("{s:{s:s,s:s}}", "error", "code",
				 pm_status_code(st), "message", msg));
}

void srv_reply_header(srv_req *q, const char *name, const char *value)
{
	srv_reply *r = &q->reply;

	if (r->n_hdr >= (int)(sizeof r->hdr / sizeof r->hdr[0]))
		return;
	snprintf(r->hdr[r->n_hdr][0], sizeof r->hdr[0][0], "%s", name);
	snprintf(r->hdr[r->n_hdr][1], sizeof r->hdr[0][1], "%s", value);
	r->n_hdr++;
}

const char *srv_header(srv_req *q, const char *name)
{
	return MHD_lookup_connection_value(q->conn, MHD_HEADER_KIND, name);
}

const char *srv_arg(srv_req *q, const char *name)
{
	const char *v =
	    MHD_lookup_connection_value(q->conn, MHD_GET_ARGUMENT_KIND, name);
	json_t *f;

	if (v)
		return v;
	f = q->fields ? json_object_get(q->fields, name) : NULL;
	return f ? json_string_value(f) : NULL;
}

/* ---- store connections: borrowed per request from s->pool ---- */

/* The handle this thread borrowed for the request it is handling (owned
 * by the thread from srv_store until srv_store_release), and whether a
 * borrow in this request found the pool exhausted past its wait. */
static __thread pm_store *tl_store;
static __thread bool tl_pool_busy;

pm_store *srv_store(srv *s, pm_err *err)
{
	pm_status st;

	if (tl_store)
		return tl_store;
	st = pm_store_pool_get(s->pool, SRV_POOL_WAIT_MS, &tl_store, err);
	if (st) {
		tl_store = NULL;
		if (st == PM_ERR_BUSY)
			tl_pool_busy = true;
		return NULL;
	}
	return tl_store;
}

void srv_store_release(srv *s)
{
	/* A PostgreSQL connection the server dropped reconnects by itself
	 * at its next call (store/postgres.c), so handles go back healthy;
	 * one left inside a batch would be refused by the pool. */
	pm_store_pool_put(s->pool, tl_store, false);
	tl_store = NULL;
	tl_pool_busy = false; /* read by store_done before this */
}

/* After a handler: the store goes back; if the pool stayed exhausted the
 * answer becomes a 503 like the other overload answers. */
static void store_done(srv_req *q)
{
	bool busy = tl_pool_busy;

	srv_store_release(q->s);
	if (busy && atomic_load(&q->async) == 0) {
		srv_reply_error(q, PM_ERR_BUSY,
				"all %d store connections are busy: retry "
				"later",
				q->s->pool_max);
		srv_reply_header(q, "Retry-After", "1");
	}
}

/* ---- compression ---- */

/* Compressed copies of the dashboard's files, made once per encoding. */
static pthread_mutex_t zcache_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
	const pm_web_asset *a;
	pm_encoding enc;
	void *z;
	size_t len;
} zcache[64];
static int n_zcache;

static const void *asset_compressed(const pm_web_asset *a, pm_encoding enc,
				    size_t *len)
{
	const void *out = NULL;
	void *z;
	size_t zl;
	pm_err e;

	pthread_mutex_lock(&zcache_mu);
	for (int i = 0; i < n_zcache; i++)
		if (zcache[i].a == a && zcache[i].enc == enc) {
			*len = zcache[i].len;
			out = zcache[i].z;
			goto out;
		}
	if (n_zcache < (int)(sizeof zcache / sizeof zcache[0]) &&
	    !pm_compress(enc, a->data, a->len, &z, &zl, &e)) {
		zcache[n_zcache].a = a;
		zcache[n_zcache].enc = enc;
		zcache[n_zcache].z = z; /* the cache owns it until exit */
		zcache[n_zcache].len = zl;
		n_zcache++;
		*len = zl;
		out = z;
	}
out:
	pthread_mutex_unlock(&zcache_mu);
	return out;
}

static void zcache_free(void)
{
	pthread_mutex_lock(&zcache_mu);
	for (int i = 0; i < n_zcache; i++)
		free(zcache[i].z);
	n_zcache = 0;
	pthread_mutex_unlock(&zcache_mu);
}

#define COMPRESS_MIN 1024

/* Compresses the reply's body in place when the client accepts it and the
 * type and size are worth it. */
static void maybe_compress(srv_req *q)
{
	srv_reply *r = &q->reply;
	pm_encoding enc;
	void *z;
	size_t zl;
	pm_err e;

	if (!r->body || r->len < COMPRESS_MIN || r->no_compress ||
	    !pm_http_compressible(r->ctype))
		return;
	srv_reply_header(q, "Vary", "Accept-Encoding");
	enc = pm_http_choose_encoding(srv_header(q, "Accept-Encoding"));
	if (enc == PM_ENC_IDENTITY ||
	    pm_compress(enc, r->body, r->len, &z, &zl, &e))
		return;
	free(r->body);
	r->body = z; /* the reply owns the compressed copy */
	r->len = zl;
	srv_reply_header(q, "Content-Encoding", pm_encoding_name(enc));
}

static void add_cors(srv_req *q, struct MHD_Response *resp)
{
	const char *origin = srv_header(q, "Origin");

	if (!origin)
		return;
	for (int i = 0; i < q->s->conf.n_cors; i++)
		if (strcmp(q->s->conf.cors[i], origin) == 0) {
			MHD_add_response_header(
			    resp, "Access-Control-Allow-Origin", origin);
			MHD_add_response_header(resp, "Vary", "Origin");
			MHD_add_response_header(
			    resp, "Access-Control-Allow-Headers",
			    "Authorization, X-API-Key, Content-Type");
			MHD_add_response_header(resp,
						"Access-Control-Allow-Methods",
						"GET, POST, DELETE, OPTIONS");
			return;
		}
}

/* Queues q->reply on the connection. */
static enum MHD_Result send_reply(srv_req *q)
{
	srv_reply *r = &q->reply;
	struct MHD_Response *resp;
	enum MHD_Result ret;

	if (!r->status)
		srv_reply_error(q, PM_ERR_INTERNAL, "no answer");
	if (r->resp) {
		resp = r->resp;
		r->resp = NULL;
	} else if (r->fd >= 0) {
		resp = MHD_create_response_from_fd_at_offset64(
		    (uint64_t)r->len, r->fd, (uint64_t)r->off);
		if (resp)
			r->fd = -1; /* the response closes it */
	} else {
		maybe_compress(q);
		resp = MHD_create_response_from_buffer(
		    r->len, r->body ? r->body : (char *)"",
		    r->body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
		if (resp)
			r->body = NULL; /* the response frees it */
	}
	if (!resp)
		return MHD_NO;
	if (r->ctype[0])
		MHD_add_response_header(resp, "Content-Type", r->ctype);
	for (int i = 0; i < r->n_hdr; i++)
		MHD_add_response_header(resp, r->hdr[i][0], r->hdr[i][1]);
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	add_cors(q, resp);
	ret = MHD_queue_response(q->conn, (unsigned)r->status, resp);
	MHD_destroy_response(resp);
	q->answered = true;
	return ret;
}

/* ---- authentication and rate limits ---- */

/* The key a request carries: Authorization: Bearer, X-API-Key, or (for
 * streams) ?api_key=. */
static const char *request_key(srv_req *q, bool qkey)
{
	const char *a = srv_header(q, "Authorization");

	if (a && strncasecmp(a, "Bearer ", 7) == 0) {
		a += 7;
		while (*a == ' ')
			a++;
		return a;
	}
	a = srv_header(q, "X-API-Key");
	if (a)
		return a;
	if (qkey)
		return MHD_lookup_connection_value(
		    q->conn, MHD_GET_ARGUMENT_KIND, "api_key");
	return NULL;
}

/* True if the request may go on; else an error is queued in q->reply. */
static bool authenticate(srv_req *q, const route *rt)
{
	srv_conf *c = &q->s->conf;
	const char *key;
	char hex[65];
	int found = -1;

	if (c->n_keys == 0 || (rt && (rt->flags & F_OPS) && !c->protect_ops) ||
	    (rt && (rt->flags & F_ASSET) && c->public_assets) ||
	    q->route == ROUTE_STATIC)
		return true;
	key = request_key(q, rt && (rt->flags & F_QKEY));
	if (!key || !*key) {
		srv_reply_error(q, PM_ERR_AUTH, "an API key is required");
		srv_reply_header(q, "WWW-Authenticate", "Bearer");
		return false;
	}
	pm_http_key_hash(key, strlen(key), hex);
	/* Every configured key is compared, in constant time each, so the
	 * time taken says nothing about which one matched. */
	for (int i = 0; i < c->n_keys; i++)
		if (pm_http_key_equal((const unsigned char *)hex,
				      (const unsigned char *)c->keys[i].sha256,
				      64) &&
		    found < 0)
			found = i;
	if (found < 0) {
		srv_reply_error(q, PM_ERR_AUTH, "the API key is not valid");
		srv_reply_header(q, "WWW-Authenticate", "Bearer");
		return false;
	}
	snprintf(q->key_name, sizeof q->key_name, "%s", c->keys[found].name);
	return true;
}

static void client_addr(srv_req *q, char *buf, size_t size)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(
	    q->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const struct sockaddr *sa = ci ? ci->client_addr : NULL;

	buf[0] = 0;
	if (sa && sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr,
			  buf, (socklen_t)size);
	else if (sa && sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6,
			  &((const struct sockaddr_in6 *)sa)->sin6_addr, buf,
			  (socklen_t)size);
}

/* Token bucket per key name (or client address without keys). */
static bool rate_ok(srv_req *q)
{
	srv *s = q->s;
	char who[80];
	double wait = 0, now = pm_now();
	int i;

	if (s->conf.rate <= 0)
		return true;
	if (q->key_name[0])
		snprintf(who, sizeof who, "k:%s", q->key_name);
	else {
		char a[56];
		client_addr(q, a, sizeof a);
		snprintf(who, sizeof who, "a:%s", a);
	}
	pthread_mutex_lock(&s->rl_mu);
	for (i = 0; i < s->rl_n; i++)
		if (strcmp(s->rl[i].who, who) == 0)
			break;
	if (i == s->rl_n) {
		if (s->rl_n == s->rl_cap) {
			/* Bounded: when full, forget the buckets that are
			 * full again (idle clients). */
			int k = 0;
			for (int j = 0; j < s->rl_n; j++) {
				pm_bucket b = s->rl[j].b;
				if (pm_bucket_take(&b, now) > 0 ||
				    b.tokens + 1 < b.burst)
					s->rl[k++] = s->rl[j];
			}
			s->rl_n = k;
			i = k;
		}
		if (i < s->rl_cap) {
			snprintf(s->rl[i].who, sizeof s->rl[i].who, "%s", who);
			pm_bucket_init(&s->rl[i].b, s->conf.rate, s->conf.burst,
				       now);
			s->rl_n++;
		}
	}
	if (i < s->rl_n)
		wait = pm_bucket_take(&s->rl[i].b, now);
	pthread_mutex_unlock(&s->rl_mu);
	if (wait > 0) {
		char ra[32];
		snprintf(ra, sizeof ra, "%d", (int)ceil(wait));
		srv_reply_error(q, PM_ERR_RATE,
				"rate limit: at most %g requests per second",
				s->conf.rate);
		srv_reply_header(q, "Retry-After", ra);
		return false;
	}
	return true;
}

/* ---- multipart bodies ---- */

static enum MHD_Result on_field(void *cls, enum MHD_ValueKind kind,
				const char *key, const char *filename,
				const char *ctype, const char *enc,
				const char *data, uint64_t off, size_t size)
{
	srv_req *q = cls;

	if (filename || (key && (strcmp(key, "file") == 0 ||
				 strcmp(key, "catalog") == 0))) {
		/* The one file part; later file parts are ignored. */
		if (q->file_name[0] == 0 && off == 0) {
			snprintf(q->file_name, sizeof q->file_name, "%s",
				 filename ? filename : key);
			snprintf(q->file_ctype, sizeof q->file_ctype, "%s",
				 ctype ? ctype : "");
		} else if (off == 0)
			return MHD_YES;
		if (q->file_len + size > q->part_cap) {
			size_t cap = (q->file_len + size) * 2 + 4096;
			char *p = realloc(q->part, cap);
			if (!p)
				return MHD_NO;
			q->part = p;
			q->part_cap = cap;
		}
		memcpy(q->part + q->file_len, data, size);
		q->file_len += size;
		q->file = q->part;
		return MHD_YES;
	}
	if (!key || size > 1024 || off > 1024)
		return MHD_YES;
	if (!q->fields)
		q->fields = json_object();
	{
		const char *prev =
		    json_string_value(json_object_get(q->fields, key));
		char buf[2100];
		snprintf(buf, sizeof buf, "%s%.*s", off ? prev ? prev : "" : "",
			 (int)size, data);
		json_object_set_new(q->fields, key, json_string(buf));
	}
	return MHD_YES;
}

/* If the body is multipart/form-data, splits it into the file part and the
 * text fields; else the whole body is the file. */
static bool parse_body(srv_req *q)
{
	const char *ct = srv_header(q, "Content-Type");
	struct MHD_PostProcessor *pp;
	bool ok;

	if (!ct || strncasecmp(ct, "multipart/form-data", 19) != 0) {
		q->file = q->body;
		q->file_len = q->body_len;
		snprintf(q->file_ctype, sizeof q->file_ctype, "%s",
			 ct ? ct : "");
		return true;
	}
	pp = MHD_create_post_processor(q->conn, 64 * 1024, on_field, q);
	if (!pp) {
		srv_reply_error(q, PM_ERR_USAGE,
				"the multipart body has no boundary");
		return false;
	}
	ok = MHD_post_process(pp, q->body ? q->body : "", q->body_len) ==
	     MHD_YES;
	ok = MHD_destroy_post_processor(pp) == MHD_YES && ok;
	if (!ok) {
		srv_reply_error(q, PM_ERR_USAGE,
				"the multipart body could not be parsed");
		return false;
	}
	return true;
}

/* ---- the request cycle ---- */

static int find_route(srv_req *q, bool *method_ok)
{
	int any = -1;

	*method_ok = false;
	for (int i = 0; i < N_ROUTES; i++) {
		if (!pm_route_match(routes[i].pattern, q->path, q->caps, 4,
				    &q->n_caps))
			continue;
		any = i;
		if (strcmp(routes[i].method, q->method) == 0 ||
		    (strcmp(q->method, "HEAD") == 0 &&
		     strcmp(routes[i].method, "GET") == 0)) {
			*method_ok = true;
			return i;
		}
	}
	return any;
}

/* The dashboard's files, with ETag revalidation and precompression. */
static void serve_static(srv_req *q)
{
	const pm_web_asset *a = pm_web_asset_find(q->path);
	pm_encoding enc;
	const void *z;
	size_t zl;

	if (!a) {
		srv_reply_error(q, PM_ERR_NOT_FOUND, "no route %s %.200s",
				q->method, q->path);
		return;
	}
	if (pm_http_etag_match(srv_header(q, "If-None-Match"), a->etag)) {
		srv_reply_text(q, 304, "", "", 0);
		srv_reply_header(q, "ETag", a->etag);
		return;
	}
	srv_reply_text(q, 200, a->ctype, (const char *)a->data, a->len);
	q->reply.no_compress = true;
	srv_reply_header(q, "ETag", a->etag);
	srv_reply_header(q, "Cache-Control", "no-cache");
	srv_reply_header(q, "Content-Security-Policy",
			 "default-src 'self'; img-src 'self' blob: data:; "
			 "style-src 'self' 'unsafe-inline'");
	if (a->len < COMPRESS_MIN || !pm_http_compressible(a->ctype))
		return;
	srv_reply_header(q, "Vary", "Accept-Encoding");
	enc = pm_http_choose_encoding(srv_header(q, "Accept-Encoding"));
	if (enc == PM_ENC_IDENTITY || !(z = asset_compressed(a, enc, &zl)))
		return;
	free(q->reply.body);
	q->reply.body = malloc(zl);
	if (!q->reply.body) {
		srv_reply_error(q, PM_ERR_NOMEM, "out of memory");
		return;
	}
	memcpy(q->reply.body, z, zl);
	q->reply.len = zl;
	srv_reply_header(q, "Content-Encoding", pm_encoding_name(enc));
}

/* First call of a request: route, authenticate, rate-limit and check the
 * declared body size. False = an answer is ready in q->reply. */
static bool admit(srv_req *q)
{
	bool method_ok;
	const route *rt;
	const char *cl;

	q->route = find_route(q, &method_ok);
	if (q->route < 0) {
		if (strcmp(q->method, "GET") == 0 ||
		    strcmp(q->method, "HEAD") == 0) {
			q->route = ROUTE_STATIC;
			return rate_ok(q);
		}
		srv_reply_error(q, PM_ERR_NOT_FOUND, "no route %s %.200s",
				q->method, q->path);
		return false;
	}
	rt = &routes[q->route];
	if (strcmp(q->method, "OPTIONS") == 0 && q->s->conf.n_cors) {
		srv_reply_text(q, 204, "", "", 0);
		return false;
	}
	if (!method_ok) {
		srv_reply_error(q, PM_ERR_METHOD, "%s is not allowed on %.200s",
				q->method, q->path);
		{
			char allow[64] = "";
			char caps[4][128];
			int nc;
			for (int i = 0; i < N_ROUTES; i++)
				if (pm_route_match(routes[i].pattern, q->path,
						   caps, 4, &nc) &&
				    strlen(allow) + 10 < sizeof allow) {
					if (allow[0])
						strcat(allow, ", ");
					strcat(allow, routes[i].method);
				}
			srv_reply_header(q, "Allow", allow);
		}
		return false;
	}
	if (!authenticate(q, rt) || !rate_ok(q))
		return false;
	q->body_max = (rt->flags & F_UPLOAD) ? q->s->conf.max_upload
		      : (rt->flags & F_BODY) ? q->s->conf.max_body
					     : 64 * 1024;
	cl = srv_header(q, "Content-Length");
	if (cl && strtoll(cl, NULL, 10) > q->body_max) {
		srv_reply_error(q, PM_ERR_TOO_LARGE,
				"the body is over the limit of %lld bytes",
				(long long)q->body_max);
		srv_reply_header(q, "Connection", "close");
		return false;
	}
	return true;
}

static bool body_append(srv_req *q, const char *data, size_t n)
{
	if (q->too_large || q->body_len + n > (size_t)q->body_max) {
		q->too_large = true;
		return true;
	}
	if (q->body_len + n + 1 > q->body_cap) {
		size_t cap = q->body_cap ? q->body_cap : 16384;
		char *p;
		while (cap < q->body_len + n + 1)
			cap *= 2;
		p = realloc(q->body, cap);
		if (!p)
			return false;
		q->body = p;
		q->body_cap = cap;
	}
	memcpy(q->body + q->body_len, data, n);
	q->body_len += n;
	q->body[q->body_len] = 0;
	return true;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
				  const char *url, const char *method,
				  const char *version, const char *upload,
				  size_t *upload_size, void **req_cls)
{
	srv *s = cls;
	srv_req *q = *req_cls;

	if (!q) {
		q = calloc(1, sizeof *q);
		if (!q)
			return MHD_NO;
		q->s = s;
		q->conn = conn;
		q->t0 = pm_now();
		q->reply.fd = -1;
		snprintf(q->method, sizeof q->method, "%s", method);
		snprintf(q->path, sizeof q->path, "%s", url);
		*req_cls = q; /* freed in on_completed */
		if (!admit(q))
			return send_reply(q);
		return MHD_YES;
	}
	if (q->answered) {
		*upload_size = 0; /* discard the rest of a refused body */
		return MHD_YES;
	}
	if (*upload_size) {
		if (!body_append(q, upload, *upload_size))
			return MHD_NO;
		*upload_size = 0;
		return MHD_YES;
	}
	if (atomic_load(&q->async) == 2)
		return send_reply(q); /* an upload worker answered */
	if (atomic_load(&q->async) == 1)
		return MHD_YES; /* spurious call while suspended */
	if (q->too_large) {
		srv_reply_error(q, PM_ERR_TOO_LARGE,
				"the body is over the limit of %lld bytes",
				(long long)q->body_max);
		return send_reply(q);
	}
	if (q->route == ROUTE_STATIC) {
		serve_static(q);
		return send_reply(q);
	}
	if (q->body_len && !parse_body(q))
		return send_reply(q);
	routes[q->route].fn(q);
	store_done(q);
	if (atomic_load(&q->async) == 1)
		return MHD_YES; /* suspended: a worker answers */
	return send_reply(q);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
			 enum MHD_RequestTerminationCode toe)
{
	srv_req *q = *req_cls;
	srv *s = cls;
	char code[8];
	double dt;

	if (!q)
		return;
	dt = pm_now() - q->t0;
	snprintf(code, sizeof code, "%d",
		 q->reply.status ? q->reply.status : 499);
	pm_metric_inc(PM_M_HTTP_REQUESTS, route_label(q->route), code, 1);
	pm_metric_obs(PM_M_HTTP_DURATION, route_label(q->route), NULL, dt);
	/* This second's latency histogram, for the dashboard's chart. */
	{
		int b = dt <= 1e-4 ? 0 : (int)(log(dt / 1e-4) / log(1.25)) + 1;
		if (b >= SRV_LAT_B)
			b = SRV_LAT_B - 1;
		pthread_mutex_lock(&s->st_mu);
		s->st_lat[b]++;
		pthread_mutex_unlock(&s->st_mu);
	}
	reply_reset(&q->reply);
	free(q->body);
	free(q->part);
	json_decref(q->fields);
	free(q);
	*req_cls = NULL;
}

/* ---- operations ---- */

static json_t *health_json(srv *s, bool *ready)
{
	int queued = srv_jobs_queued(s);
	int waiting;
	bool store_ok = atomic_load(&s->store_ok);
	bool draining = atomic_load(&s->draining);
	bool jobs_full = queued >= s->conf.max_queued_jobs;
	bool up_full;
	char db_shown[sizeof s->db]; /* never the password */

	pm_store_url_mask(s->db, db_shown, sizeof db_shown);

	pthread_mutex_lock(&s->up_mu);
	waiting = s->up_len;
	up_full = waiting >= s->conf.max_waiting_uploads;
	pthread_mutex_unlock(&s->up_mu);
	*ready = store_ok && !draining && !jobs_full && !up_full;
	/* the fleet's Redis (--redis): optional, so "down" is reported but
	 * does not make the server unready (local limits and the store
	 * apply meanwhile) */
	json_t *h = json_pack(
	    "{s:s,s:s,s:f,s:{s:{s:s,s:s},s:{s:s,s:i,s:i,s:I},s:{s:s,s:i,s:i,"
	    "s:i}}}",
	    "status",
	    draining ? "draining"
	    : *ready ? "ok"
		     : "degraded",
	    "version", PM_VERSION, "uptime_s", pm_now() - s->started,
	    "components", "store", "status", store_ok ? "ok" : "unwritable",
	    "url", db_shown, "jobs", "status", jobs_full ? "full" : "ok",
	    "queued", queued, "max_queued", s->conf.max_queued_jobs, "running",
	    (json_int_t)s->running, "uploads", "status",
	    up_full ? "full" : "ok", "waiting", waiting, "max_waiting",
	    s->conf.max_waiting_uploads, "workers", s->n_up);
	if (h) {
		pm_fleet_stats fs;
		pm_fleet_stats_get(&fs);
		json_object_set_new(h, "redis", json_string(pm_fleet_state()));
		json_object_set_new(
		    json_object_get(h, "components"), "redis",
		    fs.on
			? json_pack("{s:s,s:s,s:I,s:f,s:s}", "status",
				    fs.up ? "up" : "down", "url", fs.url,
				    "downs", (json_int_t)fs.downs, "degraded_s",
				    fs.degraded_s, "last_error", fs.last_error)
			: json_pack("{s:s}", "status", "off"));
	}
	return h;
}

static void h_health(srv_req *q)
{
	bool ready;
	srv_reply_json(q, 200, health_json(q->s, &ready));
}

static void h_live(srv_req *q)
{
	srv_reply_json(q, 200, json_pack("{s:s}", "status", "ok"));
}

static void h_ready(srv_req *q)
{
	bool ready;
	json_t *h = health_json(q->s, &ready);

	json_object_set_new(h, "ready", json_boolean(ready));
	srv_reply_json(q, ready ? 200 : 503, h);
	if (!ready)
		srv_reply_header(q, "Retry-After", "1");
}

static int count_state(const char *state, int64_t n, void *ud)
{
	(void)ud;
	pm_metric_put(PM_M_JOBS, state, NULL, (double)n);
	return 0;
}

/* The store pool's figures: gauges as they are, counters by what they
 * grew since the last scrape (pool_seen, under pool_seen_mu: scrapes may
 * overlap on two HTTP threads). */
static pthread_mutex_t pool_seen_mu = PTHREAD_MUTEX_INITIALIZER;
static pm_store_pool_stats pool_seen;

static void pool_metrics(srv *s)
{
	pm_store_pool_stats ps;

	pm_store_pool_stats_get(s->pool, &ps);
	pm_metric_put(PM_M_DB_POOL_CONNS, "open", NULL, ps.open);
	pm_metric_put(PM_M_DB_POOL_CONNS, "in_use", NULL, ps.in_use);
	pm_metric_put(PM_M_DB_POOL_CONNS, "idle", NULL, ps.idle);
	pm_metric_put(PM_M_DB_POOL_MAX, NULL, NULL, ps.max);
	pthread_mutex_lock(&pool_seen_mu);
	pm_metric_inc(PM_M_DB_POOL_WAITS, NULL, NULL,
		      (double)(ps.waits - pool_seen.waits));
	pm_metric_inc(PM_M_DB_POOL_WAIT_SECONDS, NULL, NULL,
		      ps.wait_s - pool_seen.wait_s);
	pm_metric_inc(PM_M_DB_POOL_OPENS, NULL, NULL,
		      (double)(ps.opens - pool_seen.opens));
	pm_metric_inc(PM_M_DB_POOL_ERRORS, "timeout", NULL,
		      (double)(ps.timeouts - pool_seen.timeouts));
	pm_metric_inc(PM_M_DB_POOL_ERRORS, "open_failed", NULL,
		      (double)(ps.open_failures - pool_seen.open_failures));
	pm_metric_inc(PM_M_DB_POOL_ERRORS, "broken", NULL,
		      (double)(ps.broken - pool_seen.broken));
	pm_metric_inc(PM_M_DB_POOL_ERRORS, "refused", NULL,
		      (double)(ps.refused - pool_seen.refused));
	pool_seen = ps;
	pthread_mutex_unlock(&pool_seen_mu);
}

/* Before each scrape: gauges that are read, not counted. */
static void on_scrape(void *ud)
{
	srv *s = ud;
	pm_err e;
	pm_store *st = srv_store(s, &e);
	int64_t dlq = 0;

	static const char *states[] = {"queued",    "running",	   "done",
				       "cancelled", "interrupted", "failed",
				       "uploads",   "cancelling"};
	for (size_t i = 0; i < sizeof states / sizeof *states; i++)
		pm_metric_put(PM_M_JOBS, states[i], NULL, 0);
	if (st && !pm_store_stats(st, count_state, NULL, &dlq, &e))
		pm_metric_put(PM_M_DLQ, NULL, NULL, (double)dlq);
	/* No store connection within the wait: the scrape still answers
	 * (200, without the store's gauges; the pool's figures say why)
	 * rather than turning into the 503 of other requests. */
	tl_pool_busy = false;
	pool_metrics(s);
	pm_metric_put(PM_M_QUEUE_DEPTH, "jobs", NULL, srv_jobs_queued(s));
	pthread_mutex_lock(&s->up_mu);
	pm_metric_put(PM_M_QUEUE_DEPTH, "uploads", NULL, s->up_len);
	pthread_mutex_unlock(&s->up_mu);
}

static void h_metrics(srv_req *q)
{
	size_t len = 0;
	char *txt = pm_metrics_render(&len);

	if (!txt) {
		srv_reply_error(q, PM_ERR_NOMEM, "out of memory");
		return;
	}
	srv_reply_text(q, 200, "text/plain; version=0.0.4; charset=utf-8", "",
		       0);
	free(q->reply.body);
	q->reply.body = txt; /* the reply owns it */
	q->reply.len = len;
}

/* The OpenAPI document, generated from the route table so the two cannot
 * disagree. */
static void h_openapi(srv_req *q)
{
	json_t *paths = json_object();

	for (int i = 0; i < N_ROUTES; i++) {
		const route *rt = &routes[i];
		char path[256], m[16], buf[256], *save = NULL;
		json_t *p, *op, *params = json_array();

		snprintf(path, sizeof path, "%s", rt->pattern);
		p = json_object_get(paths, path);
		if (!p) {
			p = json_object();
			json_object_set_new(paths, path, p);
		}
		/* Path parameters. */
		for (const char *c = rt->pattern; (c = strchr(c, '{'));) {
			const char *e = strchr(c, '}');
			if (!e)
				break;
			json_array_append_new(
			    params, json_pack("{s:s%,s:s,s:b,s:{s:s}}", "name",
					      c + 1, (size_t)(e - c - 1), "in",
					      "path", "required", 1, "schema",
					      "type", "string"));
			c = e;
		}
		snprintf(buf, sizeof buf, "%s", rt->query);
		for (char *t = strtok_r(buf, ",", &save); t;
		     t = strtok_r(NULL, ",", &save))
			json_array_append_new(
			    params, json_pack("{s:s,s:s,s:b,s:{s:s}}", "name",
					      t, "in", "query", "required", 0,
					      "schema", "type", "string"));
		op = json_pack("{s:s,s:o,s:{s:{s:s},s:{s:s}}}", "summary",
			       rt->summary, "parameters", params, "responses",
			       rt->ok, "description", "success", "default",
			       "description",
			       "error: {\"error\": {\"code\", \"message\"}}");
		if (rt->flags & (F_BODY | F_UPLOAD))
			json_object_set_new(
			    op, "requestBody",
			    json_pack("{s:b,s:{s:{},s:{},s:{}}}", "required", 1,
				      "content",
				      (rt->flags & F_BODY) ? "text/csv"
							   : "image/*",
				      (rt->flags & F_BODY)
					  ? "application/x-ndjson"
					  : "application/octet-stream",
				      "multipart/form-data"));
		snprintf(m, sizeof m, "%s", rt->method);
		for (char *c = m; *c; c++)
			*c = (char)tolower((unsigned char)*c);
		json_object_set_new(p, m, op);
	}
	srv_reply_json(
	    q, 200,
	    json_pack(
		"{s:s,s:{s:s,s:s,s:s},s:o,s:{s:{s:{s:s,s:s}}},s:[{s:[]}]}",
		"openapi", "3.0.3", "info", "title", "pixmill", "version",
		PM_VERSION, "description",
		"Image catalog engine: jobs, uploads, assets, search.", "paths",
		paths, "components", "securitySchemes", "bearer", "type",
		"http", "scheme", "bearer", "security", "bearer"));
}

static void h_stats(srv_req *q)
{
	srv *s = q->s;
	json_t *t = json_array(), *it = json_array(), *p50 = json_array(),
	       *p95 = json_array();

	pthread_mutex_lock(&s->st_mu);
	for (int i = 0; i < s->st_n; i++) {
		int k = (s->st_pos - s->st_n + i + SRV_STATS_N) % SRV_STATS_N;
		json_array_append_new(t, json_real(s->st_t[k]));
		json_array_append_new(it, json_real(s->st_items[k]));
		json_array_append_new(p50, isnan(s->st_p50[k])
					       ? json_null()
					       : json_real(s->st_p50[k]));
		json_array_append_new(p95, isnan(s->st_p95[k])
					       ? json_null()
					       : json_real(s->st_p95[k]));
	}
	pthread_mutex_unlock(&s->st_mu);
	srv_reply_json(q, 200,
		       json_pack("{s:o,s:o,s:o,s:o}", "t", t, "items_per_s", it,
				 "req_p50_ms", p50, "req_p95_ms", p95));
}

/* ---- the ticker ---- */

static double lat_quantile(const int64_t *h, int64_t n, double qt)
{
	int64_t want = (int64_t)ceil(qt * (double)n), c = 0;

	for (int b = 0; b < SRV_LAT_B; b++) {
		c += h[b];
		if (c >= want && c > 0)
			return b == 0 ? 0.1 : 0.1 * pow(1.25, b); /* ms */
	}
	return 0;
}

static void sample_stats(srv *s)
{
	int64_t items = atomic_load(&s->items_total), n = 0;
	int k;

	pthread_mutex_lock(&s->st_mu);
	for (int b = 0; b < SRV_LAT_B; b++)
		n += s->st_lat[b];
	k = s->st_pos;
	s->st_t[k] = pm_wall();
	s->st_items[k] = (double)(items - s->st_last_items);
	/* No request in this second: no latency (NAN, sent as null), which
	 * the chart draws as a gap rather than as a fall to 0 ms. */
	s->st_p50[k] = n ? lat_quantile(s->st_lat, n, 0.50) : NAN;
	s->st_p95[k] = n ? lat_quantile(s->st_lat, n, 0.95) : NAN;
	s->st_last_items = items;
	memset(s->st_lat, 0, sizeof s->st_lat);
	s->st_pos = (k + 1) % SRV_STATS_N;
	if (s->st_n < SRV_STATS_N)
		s->st_n++;
	pthread_mutex_unlock(&s->st_mu);
}

static void *ticker_main(void *arg)
{
	srv *s = arg;
	pm_store *st = NULL;
	pm_err e;
	int n = 0;

	while (!atomic_load(&s->stop_ticker)) {
		usleep(250 * 1000);
		srv_sse_tick(s);
		if (++n % 4)
			continue;
		sample_stats(s);
		if (n % 8 == 0) {
			/* Writable: can we take the write lock? With a
			 * connection borrowed from the HTTP threads' pool for
			 * the check, without waiting: if they hold every one
			 * now, the last answer stands (busy says nothing
			 * about writability) and the next tick tries again. */
			bool ok = false;
			pm_status ps = pm_store_pool_get(s->pool, 0, &st, &e);
			if (ps == PM_ERR_BUSY)
				continue;
			if (st && !pm_store_begin(st, &e)) {
				pm_store_rollback(st);
				ok = true;
			}
			pm_store_pool_put(s->pool, st, false);
			st = NULL;
			atomic_store(&s->store_ok, ok);
		}
	}
	return NULL;
}

/* ---- start and stop ---- */

static pm_status load_config(srv *s, pm_err *err)
{
	srv_conf *c = &s->conf;
	json_error_t je;
	json_t *j, *v;
	size_t i;

	c->max_body = 64ll << 20;
	c->max_upload = 32ll << 20;
	c->max_queued_jobs = 16;
	c->max_waiting_uploads = 32;
	c->conn_timeout = 30;
	c->max_conns = 1024;
	c->per_ip_conns = 0;
	if (!s->o->config)
		return PM_OK;
	j = json_load_file(s->o->config, JSON_REJECT_DUPLICATES, &je);
	if (!j || !json_is_object(j)) {
		json_decref(j);
		return pm_fail(err, PM_ERR_USAGE, "config %s: line %d: %s",
			       s->o->config, je.line, je.text);
	}
	v = json_object_get(j, "api_keys");
	for (i = 0; json_is_array(v) && i < json_array_size(v); i++) {
		json_t *k = json_array_get(v, i);
		const char *name =
		    json_string_value(json_object_get(k, "name"));
		const char *h = json_string_value(json_object_get(k, "sha256"));
		if (!h || strlen(h) != 64 ||
		    strspn(h, "0123456789abcdef") != 64 ||
		    c->n_keys == SRV_MAX_KEYS) {
			json_decref(j);
			return pm_fail(
			    err, PM_ERR_USAGE,
			    "config: api_keys[%zu] needs \"sha256\": "
			    "64 lower-case hex digits (pixmill "
			    "hash-key prints it)",
			    i);
		}
		snprintf(c->keys[c->n_keys].name, sizeof c->keys[0].name, "%s",
			 name ? name : "key");
		memcpy(c->keys[c->n_keys].sha256, h, 65);
		c->n_keys++;
	}
	c->protect_ops = json_is_true(json_object_get(j, "protect_ops"));
	v = json_object_get(j, "public_assets");
	if (v && !json_is_boolean(v)) {
		json_decref(j);
		return pm_fail(err, PM_ERR_USAGE,
			       "config: public_assets wants true or false");
	}
	c->public_assets = json_is_true(v);
	v = json_object_get(j, "rate_limit");
	if (json_is_object(v)) {
		c->rate = json_number_value(json_object_get(v, "per_second"));
		c->burst = json_number_value(json_object_get(v, "burst"));
		if (c->burst < 1)
			c->burst = c->rate > 1 ? c->rate : 1;
	}
	v = json_object_get(j, "cors_origins");
	for (i = 0; json_is_array(v) && i < json_array_size(v) && c->n_cors < 8;
	     i++) {
		const char *o = json_string_value(json_array_get(v, i));
		if (o)
			snprintf(c->cors[c->n_cors++], sizeof c->cors[0], "%s",
				 o);
	}
#define CONF_INT(name, field, lo, hi)                                          \
	do {                                                                   \
		json_t *x = json_object_get(j, name);                          \
		if (x &&                                                       \
		    (!json_is_integer(x) || json_integer_value(x) < (lo) ||    \
		     json_integer_value(x) > (hi))) {                          \
			json_decref(j);                                        \
			return pm_fail(                                        \
			    err, PM_ERR_USAGE,                                 \
			    "config: %s wants an integer from %lld "           \
			    "to %lld",                                         \
			    name, (long long)(lo), (long long)(hi));           \
		}                                                              \
		if (x)                                                         \
			c->field = json_integer_value(x);                      \
	} while (0)
	CONF_INT("max_body", max_body, 1024, 1ll << 40);
	CONF_INT("max_upload", max_upload, 1024, 1ll << 34);
	CONF_INT("max_queued_jobs", max_queued_jobs, 1, SRV_QUEUE);
	CONF_INT("max_waiting_uploads", max_waiting_uploads, 1, 1024);
	CONF_INT("connection_timeout", conn_timeout, 1, 3600);
	CONF_INT("max_connections", max_conns, 4, 100000);
	CONF_INT("per_ip_connections", per_ip_conns, 0, 100000);
#undef CONF_INT
	json_decref(j);
	return PM_OK;
}

/* libmicrohttpd's percent-decoding of paths and query values, except that
 * an encoded NUL (%00) is left as written: decoded, it would cut the
 * string short and "/api/jobs/1%00x" would name job 1. Left encoded, the
 * route's own decoding (pm_url_decode) refuses it. */
static size_t unescape(void *cls, struct MHD_Connection *c, char *s)
{
	char *r = s, *w = s;

	(void)cls;
	(void)c;
	while (*r) {
		int hi, lo;
		if (r[0] == '%' && (hi = pm_hexval(r[1])) >= 0 &&
		    (lo = pm_hexval(r[2])) >= 0 && (hi | lo)) {
			*w++ = (char)(hi * 16 + lo);
			r += 3;
		} else {
			*w++ = *r++;
		}
	}
	*w = 0;
	return (size_t)(w - s);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char buf[512];
	(void)cls;
	vsnprintf(buf, sizeof buf, fmt, ap);
	buf[strcspn(buf, "\n")] = 0;
	pm_log(PM_LOG_DEBUG, "http: %s", buf);
}

static void srv_free(srv *s)
{
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->up_mu);
	pthread_cond_destroy(&s->up_cv);
	pthread_mutex_destroy(&s->uj_mu);
	pthread_mutex_destroy(&s->rl_mu);
	pthread_mutex_destroy(&s->sse_mu);
	pthread_mutex_destroy(&s->st_mu);
	free(s->rl);
	pm_outstore_close(s->outs); /* every thread that used it has ended */
	free(s);
}

pm_status pm_serve(const pm_serve_opts *o, pm_err *err)
{
	srv *s = calloc(1, sizeof *s);
	struct sockaddr_storage sa;
	pm_status st;
	pm_store *store = NULL;
	bool ticker = false, jobs = false, uploads = false, watchdog = false;
	pthread_t t_watchdog;
	int threads;
	unsigned flags;

	if (!s)
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	stop_flag = 0;
	s->o = o;
	s->started = pm_now();
	s->started_unix = pm_wall();
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	pthread_mutex_init(&s->up_mu, NULL);
	pthread_cond_init(&s->up_cv, NULL);
	pthread_mutex_init(&s->uj_mu, NULL);
	pthread_mutex_init(&s->rl_mu, NULL);
	pthread_mutex_init(&s->sse_mu, NULL);
	pthread_mutex_init(&s->st_mu, NULL);
	s->rl_cap = 4096;
	s->rl = calloc((size_t)s->rl_cap, sizeof *s->rl);
	s->workers =
	    o->workers > 0 ? o->workers : (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (s->workers < 1)
		s->workers = 1;
	pm_set_workers_hint(s->workers);
	st = load_config(s, err);
	if (st)
		goto out;
	if (!pm_http_parse_listen(o->listen, &sa, err)) {
		st = PM_ERR_USAGE;
		goto out;
	}
	st = pm_mkdirs(o->data, err);
	if (st)
		goto out;
	if (!realpath(o->data, s->data)) {
		st = pm_fail(err, PM_ERR_IO, "data folder %s: %s", o->data,
			     strerror(errno));
		goto out;
	}
	snprintf(s->out_root, sizeof s->out_root, "%s/out", s->data);
	snprintf(s->tmp_dir, sizeof s->tmp_dir, "%s/.tmp-api", s->out_root);
	snprintf(s->jobs_dir, sizeof s->jobs_dir, "%s/jobs", s->data);
	if (o->db)
		snprintf(s->db, sizeof s->db, "%s", o->db);
	else
		snprintf(s->db, sizeof s->db, "%s/pixmill.db", s->data);
	st = pm_mkdirs(s->tmp_dir, err);
	if (!st)
		st = pm_outstore_local_open(s->out_root, s->tmp_dir, &s->outs,
					    err);
	if (!st)
		st = pm_mkdirs(s->jobs_dir, err);
	if (st)
		goto out;
	/* Create and migrate the store before any thread uses it. */
	st = pm_store_open(s->db, false, &store, err);
	pm_store_close(store);
	if (st)
		goto out;
	threads = o->http_threads > 0 ? o->http_threads
				      : (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (threads < 1)
		threads = 1;
	s->pool_max = o->db_pool > 0 ? o->db_pool : threads < 4 ? threads : 4;
	if (s->pool_max > PM_STORE_POOL_MAX)
		s->pool_max = PM_STORE_POOL_MAX;
	st = pm_store_pool_new(s->db, false, s->pool_max, &s->pool, err);
	if (st)
		goto out;
	memset(&pool_seen, 0, sizeof pool_seen);
	atomic_store(&s->store_ok, 1);
	pm_metric_put(PM_M_BUILD_INFO, PM_VERSION, PM_GITREV, 1);
	pm_metrics_on_scrape(on_scrape, s);

	st = srv_uploads_start(s, err);
	if (st)
		goto out;
	uploads = true;
	st = srv_jobs_start(s, err);
	if (st)
		goto out;
	jobs = true;
	ticker = pthread_create(&s->ticker, NULL, ticker_main, s) == 0;

	flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
		MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG |
		(sa.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0);
	s->d = MHD_start_daemon(
	    flags, 0, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, &sa,
	    MHD_OPTION_THREAD_POOL_SIZE, (unsigned)threads,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)s->conf.conn_timeout,
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned)s->conf.max_conns,
	    MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)s->conf.per_ip_conns,
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
	    MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
	    MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL,
	    MHD_OPTION_LISTENING_ADDRESS_REUSE, 1, MHD_OPTION_EXTERNAL_LOGGER,
	    mhd_log, NULL, MHD_OPTION_END);
	if (!s->d) {
		st = pm_fail(err, PM_ERR_IO, "cannot listen on %s: %s",
			     o->listen, strerror(errno));
		goto out;
	}
	{
		const union MHD_DaemonInfo *di =
		    MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
		unsigned port = di ? di->port : 0;
		char url[96];
		pm_http_listen_url(&sa, port, url, sizeof url);
		pm_log(PM_LOG_INFO,
		       "serving %s (data %s, %d workers, %d http threads, "
		       "%d store connections for them)",
		       url, s->data, s->workers, threads, s->pool_max);
		if (o->port_file) {
			char pb[16];
			int n = snprintf(pb, sizeof pb, "%u\n", port);
			pm_write_file_atomic(o->port_file, NULL, pb, (size_t)n,
					     false, err);
		}
	}
	while (!stop_flag)
		usleep(100 * 1000);

	/* Graceful shutdown: not ready, refuse new work, drain. */
	pm_log(PM_LOG_INFO, "draining: finishing work in flight");
	atomic_store(&s->draining, 1);
	atomic_store(&drain_over, 0);
	drain_enter("start");
	watchdog = pthread_create(&t_watchdog, NULL, drain_watchdog, NULL) == 0;
	st = PM_OK;
out:
	if (jobs) {
		drain_enter("the running job");
		srv_jobs_stop(s); /* the running job drains and commits */
	}
	if (uploads) {
		drain_enter("uploads in flight");
		srv_uploads_stop(s); /* uploads in flight finish */
	}
	if (s->d) {
		drain_enter("event streams and the HTTP daemon");
		srv_sse_stop(s);
		MHD_stop_daemon(s->d);
	}
	if (ticker) {
		drain_enter("the ticker");
		atomic_store(&s->stop_ticker, 1);
		pthread_join(s->ticker, NULL);
	}
	drain_enter("closing the stores");
	pm_metrics_off_scrape(on_scrape, s);
	pm_store_pool_free(s->pool); /* the HTTP threads have ended */
	s->pool = NULL;
	zcache_free();
	srv_free(s);
	if (watchdog) {
		atomic_store(&drain_over, 1);
		pthread_join(t_watchdog, NULL);
	}
	return st;
}
