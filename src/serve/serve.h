/* serve.h — `pixmill serve`: the HTTP API, its job scheduler and upload
 * workers, in one process. Public part: pm_serve_opts and pm_serve; the
 * rest is shared by the files of src/serve/ only.
 *
 *   libmicrohttpd threads (epoll, pool) ─► route ─► handler
 *        quick handlers (jobs, items, search, health, metrics, assets)
 *        answer on the HTTP thread; slow ones (uploads, image search)
 *        suspend the connection and hand a task to the upload workers,
 *        which resume it with the answer.
 *   scheduler thread: runs queued jobs one at a time with pm_run (the
 *        batch engine, its own N workers), publishing live counters.
 *   ticker thread: once a second, samples the charts' series, checks the
 *        store is writable, and wakes the Server-Sent Event streams.
 *
 * Threads: pm_serve runs on the main thread and returns after SIGTERM or
 * SIGINT (pm_serve_stop, async-signal-safe) once everything drained. The
 * srv struct is shared: its fields say how they are protected.
 */
#ifndef PM_SERVE_H
#define PM_SERVE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <microhttpd.h>

#include "core/status.h"
#include "engine/run.h"
#include "image/image.h"
#include "serve/httputil.h"
#include "store/outstore.h"
#include "store/pool.h"
#include "store/store.h"

typedef struct pm_serve_opts {
	const char *listen; /* "ADDR:PORT"; default 127.0.0.1:8080 */
	const char *data;   /* data folder; default ./pixmill-data */
	const char *db;	    /* store URL; default DATA/pixmill.db */
	const char *config; /* JSON config file or NULL */
	int workers;	    /* engine workers per job and upload workers;
			       0 = cores */
	int http_threads;   /* libmicrohttpd pool; 0 = cores */
	int db_pool;	    /* store connections the HTTP threads share (a pool,
			       store/pool.h); 0 = min(HTTP threads, 4) */
	pm_limits limits;   /* image limits */
	int min_dimension;  /* short edge at least this (0 = any) */
	pm_fetch_opts fetch;
	/* image search providers for every job (fetch/provider.h); owned by
	 * the caller, alive until pm_serve returns */
	pm_provider *providers[PM_PROVIDERS_MAX];
	int n_providers;
	pm_durability durability;
	const char *port_file; /* write the bound port here once listening */
	bool enqueue; /* POST /api/jobs enqueues in the shared store (db)
			 for `pixmill worker` processes: no job runs in
			 this process */
} pm_serve_opts;

void pm_serve_opts_default(pm_serve_opts *o);
/* Runs the server until pm_serve_stop; returns PM_OK after a clean drain. */
pm_status pm_serve(const pm_serve_opts *o, pm_err *err);
/* Async-signal-safe: starts the graceful shutdown. */
void pm_serve_stop(void);

/* ---- private to src/serve/ ---- */

#define SRV_MAX_KEYS 64
#define SRV_QUEUE    256 /* most queued jobs the scheduler holds */
#define SRV_STATS_N  300 /* seconds of chart history */
#define SRV_LAT_B    64	 /* latency histogram buckets per second */

typedef struct srv_key {
	char name[64];
	char sha256[65]; /* hex SHA-256 of the key; the key is never kept */
} srv_key;

/* Settings from the command line and the config file; read-only once the
 * server starts. */
typedef struct srv_conf {
	srv_key keys[SRV_MAX_KEYS];
	int n_keys;
	bool protect_ops;   /* /health* and /metrics need a key too */
	bool public_assets; /* GET /api/assets/... needs no key */
	double rate, burst; /* per key (or client address), 0 = unlimited */
	char cors[8][256];  /* allowed origins, exact match */
	int n_cors;
	int64_t max_body;   /* POST /api/jobs body */
	int64_t max_upload; /* POST /api/images body */
	int max_queued_jobs;
	int max_waiting_uploads;
	int conn_timeout; /* seconds of inactivity before a close */
	int max_conns;
	int per_ip_conns;
} srv_conf;

typedef struct srv srv;
typedef struct srv_req srv_req;

/* An answer being built by a handler: a body (owned, malloc'd) or a file
 * range, plus extra headers. */
typedef struct srv_reply {
	int status;
	char ctype[96];
	char *body; /* malloc'd; freed by the server */
	size_t len;
	bool no_compress; /* already compressed or binary */
	int fd;		  /* file answer when >= 0: [off, off+len) */
	int64_t off;
	char hdr[6][2][256]; /* extra headers: name, value */
	int n_hdr;
	struct MHD_Response *resp; /* prepared response (streams) */
} srv_reply;

typedef struct srv_upload srv_upload;

/* One HTTP request, from its first call to its completion callback. */
struct srv_req {
	srv *s;
	struct MHD_Connection *conn;
	double t0;
	int route; /* index in the route table, -1 none */
	char method[8];
	char path[1024];
	char caps[4][128]; /* path captures */
	int n_caps;
	char key_name[64]; /* the API key's name, "" = anonymous */
	char *body;	   /* request body, malloc'd, bounded */
	size_t body_len, body_cap;
	int64_t body_max;
	bool too_large; /* body went over body_max: discarded */
	bool answered;	/* a response was queued */
	/* multipart fields (filled from body when it is multipart) */
	char *file; /* the file part (catalog/file), points into part */
	size_t file_len;
	char *part; /* malloc'd copy of the file part */
	size_t part_cap;
	char file_ctype[96];
	char file_name[256];
	json_t *fields; /* small text fields: object, owned */
	/* async work (uploads): set by the worker, read after resume */
	atomic_int async; /* 0 none, 1 running, 2 done */
	srv_reply reply;
};

/* Server-wide state. */
struct srv {
	const pm_serve_opts *o;
	srv_conf conf;
	struct MHD_Daemon *d;
	char data[4096];     /* absolute data folder */
	char out_root[4200]; /* DATA/out */
	char tmp_dir[4300];  /* DATA/out/.tmp-api: uploads' temporary files */
	pm_outstore *outs;   /* outputs: put by uploads, read by GET
				/api/assets; any thread, owned here */
	char jobs_dir[4200]; /* DATA/jobs */
	char db[4352];
	/* store connections of the HTTP threads: a request borrows one on
	 * its first srv_store and the dispatcher gives it back when the
	 * handler returns (any thread; owned here, freed at shutdown once
	 * the HTTP daemon has stopped) */
	pm_store_pool *pool;
	int pool_max;
	int workers;
	double started; /* pm_now() */
	double started_unix;
	atomic_int draining;
	atomic_int store_ok; /* last writability check passed */

	/* the scheduler: queued job ids, FIFO (mu, cv) */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int64_t queue[SRV_QUEUE];
	int q_head, q_len;
	int64_t running;       /* job being run, 0 none */
	atomic_int run_cancel; /* asks the running job to stop */
	bool cancel_requested; /* the user cancelled it (not a drain) */
	pm_run_live live;      /* its counters */
	pthread_t sched;

	/* upload workers (up_mu, up_cv) */
	pthread_mutex_t up_mu;
	pthread_cond_t up_cv;
	srv_req *up_q[1024];
	int up_head, up_len, up_busy;
	pthread_t *up_threads;
	int n_up;
	bool up_stop;
	pthread_mutex_t uj_mu; /* uploads jobs per pipeline hash */
	struct {
		char hash[65];
		int64_t job_id;
	} uj[32];
	int n_uj;

	/* rate limit buckets by key name or client address (rl_mu) */
	pthread_mutex_t rl_mu;
	struct srv_bucket {
		char who[80];
		pm_bucket b;
	} * rl;
	int rl_n, rl_cap;

	/* Server-Sent Event streams waiting for the next tick (sse_mu) */
	pthread_mutex_t sse_mu;
	struct sse_stream *sse;
	pthread_t ticker;
	atomic_int stop_ticker;

	/* chart series (st_mu): one slot per second */
	pthread_mutex_t st_mu;
	double st_t[SRV_STATS_N];
	double st_items[SRV_STATS_N];
	double st_p50[SRV_STATS_N], st_p95[SRV_STATS_N];
	int64_t st_lat[SRV_LAT_B]; /* this second's request latencies */
	int st_pos, st_n;
	int64_t st_last_items;
	atomic_llong items_total; /* items finished (jobs and uploads) */
};

/* server.c */
void srv_reply_json(srv_req *q, int status, json_t *j); /* steals j */
void srv_reply_error(srv_req *q, pm_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void srv_reply_text(srv_req *q, int status, const char *ctype, const char *text,
		    size_t len); /* copies text */
void srv_reply_header(srv_req *q, const char *name, const char *value);
const char *srv_arg(srv_req *q, const char *name); /* query or form field */
const char *srv_header(srv_req *q, const char *name);
/* The store connection of the request the calling HTTP thread is
 * handling: borrowed from s->pool on the first call within the request
 * (waiting up to SRV_POOL_WAIT_MS), the same one on later calls; given
 * back by the dispatcher when the handler returns (srv_store_release).
 * The caller must not keep it past its handler. NULL after an error
 * written to err; when the pool stayed exhausted, the dispatcher turns
 * the request's answer into a 503 "overloaded" with Retry-After. */
pm_store *srv_store(srv *s, pm_err *err);
/* Gives the calling thread's borrowed connection back to the pool (a
 * no-op if it holds none). Called by the dispatcher after each handler,
 * and by callbacks that run outside one (event streams). */
void srv_store_release(srv *s);
#define SRV_POOL_WAIT_MS 5000
/* Hands q to the upload workers; false (and a 503 queued) when full. */
bool srv_submit_upload(srv_req *q);

/* jobs.c */
pm_status srv_jobs_start(srv *s, pm_err *err);
void srv_jobs_stop(srv *s);
void srv_h_job_create(srv_req *q);
void srv_h_jobs(srv_req *q);
void srv_h_job_get(srv_req *q);
void srv_h_job_events(srv_req *q);
void srv_h_fleet_events(srv_req *q); /* the fleet's progress (--redis) */
void srv_h_job_items(srv_req *q);
void srv_h_job_cancel(srv_req *q);
void srv_h_job_retry(srv_req *q);
void srv_h_failed(srv_req *q);
void srv_sse_tick(srv *s);
void srv_sse_stop(srv *s);
int srv_jobs_queued(srv *s);

/* images.c */
pm_status srv_uploads_start(srv *s, pm_err *err);
void srv_uploads_stop(srv *s);
void srv_h_image(srv_req *q);
void srv_h_asset(srv_req *q);
void srv_h_outputs(srv_req *q);
void srv_h_search_text(srv_req *q);
void srv_h_search_image(srv_req *q);
/* catalog.c */
void srv_h_images(srv_req *q);
void srv_h_image_get(srv_req *q);
/* Runs on an upload worker: processes q and fills q->reply. */
void srv_upload_work(srv *s, srv_req *q, void *wstate);
/* Adds the outputs of asset (sha256, pipeline_hash or NULL) to arr. */
pm_status srv_outputs_json(pm_store *st, const char *sha256,
			   const char *pipeline_hash, json_t *arr, pm_err *err);

#endif
