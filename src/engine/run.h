/* run.h — `pixmill run`: one catalog through one pipeline, with threads.
 *
 *   ingest ─► fetch ─► workers (N) ─► writer
 *   (reads the   (reads the   (hash, dedup,     (batches commits,
 *    catalog,     bytes,       probe, decode     writes the manifest,
 *    skips done   bounded in   once, stages,     resolves duplicates)
 *    items)       bytes)       write outputs)
 * plus a counter thread that counts the catalog's records for the ETA.
 * Every queue is bounded; a full queue blocks its producer.
 *
 * Worker mode (`pixmill worker`, opts.queue_job > 0): the ingest thread
 * claims batches of one job's records from the store's shared queue
 * (store.h "the shared queue") instead of reading a catalog; the job's
 * pipeline and output root come from the store. The output root is shared
 * by every worker: a shared lock, a temporary folder and a manifest per
 * worker. Results complete their claim (a lost lease: counted, not
 * written); transient failures go back to the queue with a backoff.
 *
 * Threads: pm_run is called from the main thread; it starts and joins all
 * the others and returns when the run is over (or interrupted by
 * pm_run_cancel from a signal handler).
 */
#ifndef PM_RUN_H
#define PM_RUN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/status.h"
#include "fetch/fetch.h"
#include "fetch/provider.h"
#include "image/image.h"
#include "ingest/catalog.h"
#include "store/store.h"

typedef enum pm_durability {
	PM_SYNC_FILE = 0, /* fsync each output before renaming it (default) */
	PM_SYNC_BATCH,	  /* one syncfs of the output tree before each commit */
	PM_SYNC_NONE,	  /* leave it to the OS (scratch runs, benchmarks) */
} pm_durability;

/* Live counters of a run, for a caller on another thread (serve): the run
 * copies its counters here about every 50 ms. Zeroed by pm_run at start. */
typedef struct pm_run_live {
	atomic_llong seen, skipped, done, failed, dups, total, cache_hits;
	atomic_int total_known;
	atomic_llong job_id;	/* set once the job is open */
	_Atomic double elapsed; /* seconds since the run started */
} pm_run_live;

typedef struct pm_run_opts {
	const char *catalog;  /* path of a CSV/JSONL/list file or a folder */
	pm_catalog_kind kind; /* PM_CATALOG_AUTO to detect */
	const char *out_dir;  /* output root; created if missing */
	const char *db;	      /* store URL; NULL = OUT/pixmill.db */
	const char *pipeline; /* built-in name or JSON file */
	const char *sizes;    /* override thumbnail sizes "128,512" or NULL */
	const char *formats;  /* override thumbnail formats or NULL */
	int quality;	      /* override quality of every format, 0 = keep */
	int workers;	      /* 0 = number of cores */
	int64_t memory_limit; /* bytes; 0 = none */
	pm_limits limits;
	pm_durability durability;
	bool keep_meta;	   /* keep EXIF/XMP/ICC in outputs */
	int min_dimension; /* an image's short edge must be at least this
			      (0 = any); rows with several candidates move
			      on to the next one */
	bool dedup;	   /* process the same source bytes once */
	bool retry_failed; /* re-run items that failed in an earlier run */
	bool all_files;	   /* folders: every file, not only image names */
	bool refresh;	   /* re-check done http(s) items with conditional
			      requests; a changed image is processed again */
	int progress;	   /* 1 bar (TTY), 2 plain lines, 0 none */
	double progress_interval; /* seconds between plain lines */
	bool json;		  /* print the summary as JSON on stdout */
	int queue_depth;	  /* items per queue; 0 = 4 x workers */
	int64_t inflight_bytes;	  /* source bytes in memory; 0 = 256 MiB */
	int64_t url_cache_bytes;  /* bodies kept so a URL repeated in the
				     catalog is fetched once; -1 = none,
				     0 = 64 MiB */
	pm_fetch_opts fetch; /* http(s) sources: limits, retries, SSRF guard */
	/* Image search providers, tried in this order for rows that name no
	 * image (fetch/provider.h); their results become the row's ranked
	 * candidates. Not owned by the run; they must outlive it. */
	pm_provider *providers[PM_PROVIDERS_MAX];
	int n_providers;
	double t_start; /* pm_now() when the process started work (main);
			   0 = when pm_run starts. first_done_ms counts
			   from here. */
	/* For a caller that runs jobs on a thread of its own (serve); both
	 * may be NULL. Not owned by the run. */
	atomic_int *cancel; /* set non-zero to stop this run (drains) */
	pm_run_live *live;  /* counters copied here while it runs */
	/* Worker mode: > 0 = take this job's records from the shared queue
	 * (catalog, pipeline, sizes, formats and quality are ignored: the
	 * job says; out_dir, if set, overrides the job's output root). */
	int64_t queue_job;
	int queue_priority;    /* the job's priority; the run stops claiming
				  when the queue holds a higher one */
	const char *worker_id; /* lease owner, e.g. "host:pid" */
	int claim_batch;       /* records per claim; 0 = 4 x workers */
	double lease_s;	       /* lease of each claim; 0 = 30 s */
	/* Enqueue mode (pm_run_enqueue): the records' queue priority. */
	int priority;
} pm_run_opts;

void pm_run_opts_default(pm_run_opts *o);

typedef struct pm_run_summary {
	int64_t job_id;
	int run_no;
	int64_t seen;	    /* records read from the catalog this run */
	int64_t skipped;    /* already done (or failed) in an earlier run */
	int64_t done;	    /* done in this run (duplicates included) */
	int64_t failed;	    /* failed in this run */
	int64_t duplicates; /* done in this run without image work */
	int64_t cache_hits; /* of those, http 304 Not Modified */
	int64_t url_reused; /* http items served by an earlier download
			       of the same URL in this run */
	int64_t http_items; /* http items done (hit rate denominator) */
	/* ads (pipelines with verify, cutout and compose stages): items done
	 * with a placeholder because no image would do; items whose cut-out
	 * was made or skipped; items retried after failing in an earlier
	 * run (transient failures, --retry-failed) */
	int64_t placeholders, bg_removed, bg_skipped, dlq_retries;
	int64_t job_items, job_done, job_failed; /* whole job, after run */
	double wall_s;
	double first_done_ms; /* from t_start to the first committed item */
	double images_per_s;  /* processed (done + failed) per second */
	double p50_ms, p95_ms;
	uint64_t peak_rss;
	bool interrupted;
	/* worker mode: results not written because the lease was lost
	 * (another worker has the item); transient failures put back in the
	 * queue for a later attempt; whether the run stopped for a job of
	 * higher priority */
	int64_t lost, requeued;
	bool preempted;
	/* this run's image searches, per provider in the order configured
	 * (day: the UTC day the run started) */
	pm_provider_day providers[PM_PROVIDERS_MAX];
	int n_providers;
	char manifest[4352];
	char db[4352];
	char out_dir[4096];
} pm_run_summary;

pm_status pm_run(const pm_run_opts *o, pm_run_summary *sum, pm_err *err);

/* Creates the job o describes in state "queued" without running it, so a
 * caller (serve) has its id at once; a later pm_run with the same options
 * runs it. Checks the options and the pipeline like pm_run does. */
pm_status pm_run_prepare(const pm_run_opts *o, const char *name,
			 int64_t *job_id, pm_err *err);

/* `run --enqueue-only`: resolves catalog, pipeline and output root as
 * pm_run does (same job key), creates the job queued and streams the
 * catalog into the shared queue in batches, then marks the enqueue
 * complete. Idempotent: records already queued or done are left alone.
 * *enqueued = records added, *present = records that were already there;
 * *job_id = the job; name labels it (may be NULL). */
pm_status pm_run_enqueue(const pm_run_opts *o, const char *name,
			 int64_t *job_id, int64_t *enqueued, int64_t *present,
			 pm_err *err);

/* Async-signal-safe: asks the running pm_run to stop reading the catalog
 * and finish what is in flight. */
void pm_run_cancel(void);

#endif
