/* store.h — the store interface: jobs, items, assets and outputs.
 *
 * The store is where "done" is decided: an item is done when its row says so
 * in a committed transaction. The embedded backend is SQLite (store/sqlite.c,
 * WAL, versioned schema with migrations); the PostgreSQL backend
 * (store/postgres.c, libpq) fills the same vtable, so nothing outside
 * src/store/ contains SQL.
 *
 * Tables (same concepts in every backend):
 *   jobs    one per (catalog, pipeline hash, output root): key, state, counts
 *   items   one per catalog record of a job: key, id, image, title, price,
 *           category, attrs, state (done|failed), status code, error,
 *           sha256 of the source, duplicate flag, attempts, latency
 *   assets  one per (source sha256, pipeline hash): format, size, bytes,
 *           phash, colours, sharpness, metadata JSON
 *   outputs one per (asset, name): relative path, format, width, height,
 *           bytes, sha256 of the output file
 *   items_fts  full-text index over title, category, attributes and the
 *           text seen in the item's image (OCR, later captions)
 *   embeddings one vector per (source sha256, model id): float32 BLOB
 *
 * Threads: a pm_store is one connection, used by one thread at a time.
 * Threads that keep session state (the run's writer thread with its
 * batches, a worker's LISTENing main loop) open their own; threads that
 * only run short queries (serve's HTTP handlers, the engine's image
 * threads) borrow one from a pool (store/pool.h) for the time of a
 * request or an item. SQLite WAL lets readers run beside the one writer.
 * On PostgreSQL each pm_store is one libpq connection.
 */
#ifndef PM_STORE_H
#define PM_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/status.h"

typedef struct pm_store pm_store;

/* Opens (creating and migrating if needed) the store named by url: a file
 * path or "sqlite:PATH", or a libpq URL "postgres://..." /
 * "postgresql://...". *out is owned by the
 * caller; close with pm_store_close. readonly = true opens without creating
 * or migrating (fails with PM_ERR_NOT_FOUND if the database does not exist). */
pm_status pm_store_open(const char *url, bool readonly, pm_store **out,
			pm_err *err);
void pm_store_close(pm_store *s);
/* Opens an existing store for queries: read-only if its schema is current,
 * else read-write once to migrate it (so a newer pixmill can query an
 * older store). PM_ERR_NOT_FOUND if it does not exist. */
pm_status pm_store_open_existing(const char *url, pm_store **out, pm_err *err);
/* Copies store URL url into out (size bytes, truncated) with any password
 * ("user:PASSWORD@", "password=PASSWORD") replaced by "***": the form to
 * print or log. */
void pm_store_url_mask(const char *url, char *out, size_t size);
/* Schema version after migrations (for `status` and tests). */
int pm_store_schema_version(pm_store *s);

/* ---- jobs ---- */

typedef struct pm_job_spec {
	const char *key;	   /* hex; identifies the job across re-runs */
	const char *catalog;	   /* absolute catalog path, for display */
	const char *pipeline;	   /* pipeline name */
	const char *pipeline_hash; /* hex SHA-256 of the canonical pipeline */
	const char *pipeline_json; /* canonical pipeline JSON */
	const char *out_dir;	   /* absolute output root */
} pm_job_spec;

/* Finds the job with spec->key or creates it; marks it "running", bumps its
 * run counter, and returns its id and the run number (1 for a new job). */
pm_status pm_store_job_open(pm_store *s, const pm_job_spec *spec,
			    int64_t *job_id, int *run_no, pm_err *err);
/* Sets the job's state ("done", "failed", "interrupted") and finish time. */
/* Records the run's http cache figures on the job (see pm_job_info). */
pm_status pm_store_job_net(pm_store *s, int64_t job_id, int64_t http_items,
			   int64_t http_hits, pm_err *err);
pm_status pm_store_job_finish(pm_store *s, int64_t job_id, const char *state,
			      pm_err *err);

typedef struct pm_job_info {
	int64_t id;
	const char *key, *catalog, *pipeline, *pipeline_hash, *out_dir, *state;
	int runs;
	double created, updated; /* unix seconds */
	int64_t items, done, failed, duplicates;
	const char *name;  /* label given at submission, or NULL */
	const char *error; /* why the job could not run, or NULL */
	/* its last run's http items done, and how many of those needed no
	 * download (304s and URLs repeated within the run) */
	int64_t http_items, http_hits;
	/* the shared queue (all zero/false for a job never enqueued): on =
	 * the job has been enqueued; enqueued = its enqueue is complete
	 * (total records); rows queued and claimed now, and the distinct
	 * workers holding their leases */
	struct {
		bool on, enqueued;
		int64_t total, queued, claimed, workers;
	} queue;
	const char *pipeline_json; /* the canonical pipeline (workers run
				      the job from it) */
} pm_job_info;

/* Calls cb for each job, newest first (at most limit; 0 = all). The strings
 * in info live only during the call. cb returns non-zero to stop. */
pm_status pm_store_jobs(pm_store *s, int limit,
			int (*cb)(const pm_job_info *info, void *ud), void *ud,
			pm_err *err);

/* Calls cb once with job id's info; PM_ERR_NOT_FOUND if there is none. */
pm_status pm_store_job_get(pm_store *s, int64_t id,
			   int (*cb)(const pm_job_info *info, void *ud),
			   void *ud, pm_err *err);

/* Creates the job with spec->key in state "queued" (no run yet), or puts
 * an existing one back in the queue; *job_id receives its id. name is a
 * label (may be NULL). Used by `serve`, whose scheduler then runs it. */
pm_status pm_store_job_create(pm_store *s, const pm_job_spec *spec,
			      const char *name, int64_t *job_id, pm_err *err);
/* Sets the job's state and error message (NULL clears it); final = the
 * job is over (records the finish time). Setting "cancelled" also
 * deletes, in the same transaction, the job's queue rows still queued
 * (unclaimed) and their events; claimed rows finish or expire. */
pm_status pm_store_job_state(pm_store *s, int64_t job_id, const char *state,
			     const char *error, bool final, pm_err *err);

/* Image search providers (fetch/provider.h): per provider and UTC day,
 * what was asked of it. The day's requests are its quota count, which
 * holds across runs. */
typedef struct pm_provider_day {
	char provider[32]; /* the provider's configured name */
	int64_t day;	   /* UTC days since 1970-01-01 */
	int64_t requests;  /* HTTP requests (counted against the quota) */
	int64_t found;	   /* searches that returned image URLs */
	int64_t empty;	   /* searches that returned none */
	int64_t failed;	   /* searches that failed (error or quota) */
	int64_t results;   /* image URLs returned */
	double latency_ms; /* summed over the requests */
} pm_provider_day;

/* Adds d's counters to the row (d->provider, d->day), creating it. */
pm_status pm_store_provider_add(pm_store *s, const pm_provider_day *d,
				pm_err *err);
/* Rows with day >= since_day, by provider name then day; cb returns
 * non-zero to stop. */
pm_status pm_store_provider_days(pm_store *s, int64_t since_day,
				 int (*cb)(const pm_provider_day *d, void *ud),
				 void *ud, pm_err *err);

/* Counts jobs by state (cb per state) and failed items (*dlq, if not
 * NULL), for metrics and health. */
pm_status pm_store_stats(pm_store *s,
			 int (*cb)(const char *state, int64_t n, void *ud),
			 void *ud, int64_t *dlq, pm_err *err);

/* Failure reasons of a job grouped by status code: cb gets the code, one
 * example error message and the count; most frequent first. */
pm_status pm_store_job_failures(pm_store *s, int64_t job_id, int limit,
				int (*cb)(const char *code, const char *example,
					  int64_t count, void *ud),
				void *ud, pm_err *err);

/* ---- items (resume) ---- */

typedef enum pm_item_state {
	PM_ITEM_NONE = 0, /* never recorded: must be processed */
	PM_ITEM_DONE,	  /* committed done */
	PM_ITEM_FAILED,	  /* committed failed (with a status code) */
} pm_item_state;

/* State of item key in job. If failed, *code receives the stored pm_status. */
pm_status pm_store_item_state(pm_store *s, int64_t job_id, const char *key,
			      pm_item_state *state, pm_status *code,
			      pm_err *err);

/* ---- the dead-letter queue: failed items ---- */

typedef struct pm_failed_info {
	int64_t job_id;
	const char *key, *image, *code, *error, *catalog;
	int attempts;
	double updated; /* unix seconds */
} pm_failed_info;

/* Calls cb for failed items, oldest job first then catalog order. job_id 0
 * = every job; code/key NULL = any. At most limit (0 = all). The strings
 * in info live only during the call; cb returns non-zero to stop. */
pm_status pm_store_failed(pm_store *s, int64_t job_id, const char *code,
			  const char *key, int limit,
			  int (*cb)(const pm_failed_info *info, void *ud),
			  void *ud, pm_err *err);
/* Sends failed items back: forgets them (same filters as pm_store_failed),
 * so the next run of their job processes them again; items of a queued job
 * go back in the queue (and the job to "running") for the workers.
 * *n = how many. */
pm_status pm_store_retry_failed(pm_store *s, int64_t job_id, const char *code,
				const char *key, int64_t *n, pm_err *err);

/* ---- the URL cache: validators of what each URL served last ---- */

typedef struct pm_url_info {
	char etag[256];		/* "" if none */
	char last_modified[64]; /* "" if none */
	char sha256[65];	/* of the bytes served */
} pm_url_info;

/* *found = whether url has been fetched and recorded (done) before. */
pm_status pm_store_url_get(pm_store *s, const char *url, pm_url_info *info,
			   bool *found, pm_err *err);

/* ---- assets (dedup across runs) ---- */

/* True if an asset (sha256 hex, pipeline hash) has been committed. */
pm_status pm_store_asset_exists(pm_store *s, const char *sha256,
				const char *pipeline_hash, bool *exists,
				pm_err *err);

/* ---- results: written by the writer thread in batches ---- */

typedef struct pm_output_rec {
	const char *name;   /* e.g. "512.webp"; unique within an asset */
	const char *path;   /* relative to the job's out_dir */
	const char *format; /* "webp", "jpeg", "png", "avif" */
	int width, height;
	int64_t bytes;
	const char *sha256; /* hex SHA-256 of the output file */
} pm_output_rec;

typedef struct pm_asset_rec {
	const char *sha256;	   /* of the source bytes */
	const char *pipeline_hash; /* with sha256, the asset's identity */
	const char *format;	   /* sniffed source format */
	int width, height;	   /* oriented source size */
	int64_t bytes;		   /* source size */
	uint64_t phash;		   /* 64-bit perceptual hash */
	bool has_phash;
	const char *colors_json; /* e.g. [{"hex":"#aabbcc","share":0.4}], or
				    NULL */
	double sharpness;	 /* higher is sharper; NAN if not computed */
	const char *meta_json;	 /* other per-asset facts as a JSON object,
				    or NULL */
	/* the embed stage's vector (embedding_dim floats), stored under
	 * (sha256, embedding_model); NULL if none. Borrowed. */
	const float *embedding;
	int embedding_dim;
	const char *embedding_model;
	int n_outputs;
	const pm_output_rec *outputs;
} pm_asset_rec;

typedef struct pm_item_rec {
	int64_t job_id;
	const char *key; /* resume key within the job */
	uint64_t ordinal;
	const char *id, *image, *title, *price, *category; /* may be NULL */
	const char *attrs_json;				   /* may be NULL */
	pm_status status;   /* PM_OK = done, else failed with this code */
	const char *error;  /* reason when failed, else NULL */
	const char *sha256; /* source hash, NULL if never read */
	bool duplicate;	    /* the asset existed already (this or an
			       earlier run): no image work was done */
	double latency_ms;  /* from fetch start to result */
	int attempts;	    /* processing attempts so far, >= 1 */
	const pm_asset_rec *asset; /* the new asset to insert with its
				      outputs, or NULL (failed or duplicate) */
	/* http(s) sources: the validators the origin sent with the bytes
	 * (either may be NULL); with sha256 they are remembered per URL for
	 * conditional re-fetch. */
	const char *url_etag, *url_last_modified;
	/* rows with several image candidates: which was chosen and why the
	 * others were not, as a JSON array; NULL otherwise */
	const char *candidates_json;
	/* the shared queue (pixmill worker): the claim this result completes
	 * (0 = not a queued item) and the worker that holds its lease. The
	 * put then first marks the queue row done (status PM_OK) or failed,
	 * only if that worker still holds it; if not (its lease expired and
	 * another worker took it), nothing is written and put_item returns
	 * PM_ERR_CONFLICT, the batch stays usable. */
	int64_t queue_id;
	const char *lease_owner;
} pm_item_rec;

/* Batch: begin, put any number of results, commit. Putting the same
 * (job_id, key) twice leaves one row (an upsert); inserting an asset or
 * output that exists is a no-op. Nothing is visible to other connections
 * before commit; after a crash, an uncommitted batch is simply absent. */
pm_status pm_store_begin(pm_store *s, pm_err *err);
pm_status pm_store_put_item(pm_store *s, const pm_item_rec *item, pm_err *err);
pm_status pm_store_commit(pm_store *s, pm_err *err);
void pm_store_rollback(pm_store *s);
/* True between a successful pm_store_begin and its commit or rollback (a
 * handle in that state holds session state: store/pool.h refuses it). */
bool pm_store_in_batch(const pm_store *s);

/* ---- browsing and search (serve) ----
 * The strings in each info live only during the callback; cb returns
 * non-zero to stop. */

typedef struct pm_item_info {
	const char *key, *id, *title, *image;
	const char *state; /* "done" or "failed" */
	const char *code;  /* pm_status code name */
	const char *error; /* or NULL */
	const char *sha256;
	const char *pipeline_hash; /* of its asset, NULL if it has none */
	const char *candidates;	   /* JSON array, or NULL (single image) */
	uint64_t ordinal;
	bool duplicate;
	int attempts;
	double latency_ms;
} pm_item_info;

/* Items of a job in catalog order with ordinal > after; state "done",
 * "failed" or NULL for both; at most limit. */
pm_status pm_store_items(pm_store *s, int64_t job_id, const char *state,
			 int64_t after, int limit,
			 int (*cb)(const pm_item_info *info, void *ud),
			 void *ud, pm_err *err);

typedef struct pm_output_info {
	const char *asset_sha256;  /* the source's hash */
	const char *pipeline_hash; /* of the asset */
	const char *name, *path, *format, *sha256;
	const char *title; /* recent outputs only: a title of the source */
	int width, height;
	int64_t bytes;
} pm_output_info;

/* Outputs of the assets made from source sha256: of one pipeline, or of
 * any (pipeline_hash NULL, newest asset first); name NULL = every output. */
pm_status pm_store_outputs(pm_store *s, const char *sha256,
			   const char *pipeline_hash, const char *name,
			   int (*cb)(const pm_output_info *info, void *ud),
			   void *ud, pm_err *err);
/* The first output of each of the newest `limit` assets. */
pm_status pm_store_recent_outputs(pm_store *s, int limit,
				  int (*cb)(const pm_output_info *info,
					    void *ud),
				  void *ud, pm_err *err);

typedef struct pm_search_hit {
	int64_t job_id;
	const char *key, *title, *sha256, *image, *pipeline_hash;
	const char *id;	      /* the catalog's id, or NULL */
	const char *category; /* or NULL */
	const char *snippet;  /* the best-matching passage, matches between
				 the query's markers */
	bool has_text;	      /* the image has OCR text */
	double score;	      /* higher is better (BM25 on SQLite,
				 ts_rank_cd on PostgreSQL) */
} pm_search_hit;

typedef struct pm_text_query {
	const char *match;    /* pm_store_fts_query's output */
	int64_t job_id;	      /* 0 = every job */
	const char *category; /* exact category, or NULL = any */
	bool has_text;	      /* only items whose image has OCR text */
	int limit;	      /* at most this many hits (0 = no limit) */
	const char *mark_open, *mark_close; /* around matches in snippets;
					       NULL = "[" and "]" */
} pm_text_query;

/* Full-text search over titles, categories, attributes and image text
 * (OCR, captions), ranked by BM25 (SQLite) or ts_rank_cd (PostgreSQL),
 * title weighing most; best first. */
pm_status pm_store_search_text(pm_store *s, const pm_text_query *q,
			       int (*cb)(const pm_search_hit *hit, void *ud),
			       void *ud, pm_err *err);
/* Turns free text into an FTS5 query that matches rows containing every
 * word (each word quoted, so no syntax of the user's reaches FTS5).
 * Returns false if the text has no word or does not fit in size. */
bool pm_store_fts_query(const char *text, char *out, size_t size);

/* The sources whose perceptual hash is within max_distance bits of phash
 * (Hamming distance, computed by the database: one pass over the assets,
 * nothing loaded into the client), nearest first, then by sha256; one
 * per source (its newest asset); at most limit (1 .. 1000). */
pm_status
pm_store_phash_near(pm_store *s, uint64_t phash, int max_distance, int limit,
		    int (*cb)(const char *sha256, const char *pipeline_hash,
			      uint64_t phash, int distance, void *ud),
		    void *ud, pm_err *err);
/* Every asset's perceptual hash (for nearest-image search). */
pm_status pm_store_phashes(pm_store *s,
			   int (*cb)(const char *sha256,
				     const char *pipeline_hash, uint64_t phash,
				     void *ud),
			   void *ud, pm_err *err);
/* ---- embeddings (search by image) ---- */

/* Calls cb for every stored vector of model (id as in pm_asset_rec), in
 * no particular order. vec (dim floats) lives only during the call. */
pm_status pm_store_embeddings(pm_store *s, const char *model,
			      int (*cb)(const char *sha256, const float *vec,
					int dim, void *ud),
			      void *ud, pm_err *err);
/* Copies source sha256's vector of model into out (cap floats): *dim =
 * its length, 0 if there is none (PM_ERR_INTERNAL if over cap). */
pm_status pm_store_embedding_get(pm_store *s, const char *sha256,
				 const char *model, float *out, int cap,
				 int *dim, pm_err *err);
/* A number that changes whenever a vector is added or replaced (the
 * largest row id), so a caller holding loaded vectors knows when to
 * reload them. */
pm_status pm_store_embeddings_stamp(pm_store *s, int64_t *stamp, pm_err *err);
/* Stores (or replaces) one vector outside an item put (backfills,
 * benchmarks). Inside a batch if one is open. */
pm_status pm_store_embedding_put(pm_store *s, const char *sha256,
				 const char *model, const float *vec, int dim,
				 pm_err *err);

/* ---- items by asset (search results, duplicates) ---- */

typedef struct pm_asset_item {
	int64_t job_id;
	const char *key, *id, *image, *title, *category; /* id: catalog id */
	const char *sha256;				 /* the source's */
	int width, height;				 /* of the source */
	int64_t bytes;
	uint64_t phash;
	bool has_phash;
	double sharpness; /* NAN if not measured */
} pm_asset_item;

/* Done items with an asset, with their asset's facts: of source sha256
 * (NULL = every source, ordered by sha256, then job and catalog order),
 * of job_id (0 = every job). */
pm_status pm_store_asset_items(pm_store *s, int64_t job_id, const char *sha256,
			       int (*cb)(const pm_asset_item *it, void *ud),
			       void *ud, pm_err *err);
/* Done items whose key or catalog id is ref (job_id 0 = any job), newest
 * first. */
pm_status pm_store_find_items(pm_store *s, int64_t job_id, const char *ref,
			      int (*cb)(const pm_asset_item *it, void *ud),
			      void *ud, pm_err *err);

/* ---- images: the catalog gallery (serve) ---- */

typedef struct pm_image_query {
	const char *sha256; /* one source: every asset made from it, newest
			       first (the filters below are ignored) */
	int64_t job_id;	    /* 0 = every job: one entry per source (its
			       newest asset); else that job's assets */
	const char *format; /* source format ("jpeg", "png", ...) or NULL */
	bool has_text;	    /* only images with OCR text (has_text below) */
	bool has_caption;   /* only images with a caption (analyze) */
	const char *tag;    /* only images the analyze stage tagged so */
	const char *match;  /* FTS5 query (pm_store_fts_query), or NULL: ranked
			       by its best item's BM25 instead of newest
			       first */
} pm_image_query;

typedef struct pm_image_info {
	const char *sha256, *pipeline_hash, *format;
	int width, height; /* oriented source size */
	int64_t bytes;
	uint64_t phash;
	bool has_phash;
	const char *colors_json; /* or NULL */
	double sharpness;	 /* NAN if not measured */
	const char *meta_json;	 /* the stages' facts (ocr, caption,
				    analysis...), or NULL */
	double created;		 /* unix seconds */
	const char *title;	 /* a title of an item of it, or NULL */
	const char *image;	 /* the first item's path or URL, or NULL */
	bool has_text;		 /* OCR text of mean word confidence >= 60 */
	int64_t items;		 /* done items made from it (in the job) */
	double score;		 /* BM25 with a match, else 0 */
} pm_image_info;

/* Images (assets) for the gallery and an image's page, newest first (or
 * best match first); cb returns non-zero to stop, which is how a caller
 * pages. The strings live only during the call. */
pm_status pm_store_images(pm_store *s, const pm_image_query *q,
			  int (*cb)(const pm_image_info *info, void *ud),
			  void *ud, pm_err *err);

/* A title of an item made from source sha256, "" if none. */
pm_status pm_store_title(pm_store *s, const char *sha256, char *buf,
			 size_t size, pm_err *err);

/* ---- the shared queue: many `pixmill worker` processes, one store ----
 *
 * `run --enqueue-only` (or serve) writes a job's catalog records into the
 * queue; workers claim batches, each claim with a lease (an expiry time)
 * that their heartbeat renews. A result is written with the claim's
 * queue_id and lease_owner (pm_item_rec), in the same transaction that
 * completes the queue row. A lease that expires (the worker died) puts
 * the row back, its attempt counted and an "expired" event in its
 * history. On PostgreSQL claims use SELECT ... FOR UPDATE SKIP LOCKED, the
 * clock is the server's, and enqueue/reap NOTIFY idle workers, who LISTEN;
 * on SQLite (one machine) claims run in a BEGIN IMMEDIATE transaction and
 * an idle worker polls. Priority: higher first, then enqueue order. */

typedef struct pm_enqueue_rec {
	const char *key;	 /* the item's resume key within the job */
	uint64_t ordinal;	 /* catalog order */
	const char *record_json; /* the catalog record (pm_record_to_json) */
} pm_enqueue_rec;

/* Adds n records to job_id's queue at priority, in one transaction. A
 * (job, key) already queued, claimed or finished is left alone, and so is
 * a key already done in items; *added (may be NULL) = rows added. */
pm_status pm_store_enqueue(pm_store *s, int64_t job_id, int priority,
			   const pm_enqueue_rec *recs, int n, int64_t *added,
			   pm_err *err);
/* Marks job_id's enqueue complete with total records (until then the job
 * cannot be finished by workers draining its queue) and wakes workers. */
pm_status pm_store_enqueue_end(pm_store *s, int64_t job_id, int64_t total,
			       pm_err *err);

typedef struct pm_claim {
	int64_t queue_id, job_id;
	char *key;	   /* owned by the claim array */
	char *record_json; /* owned by the claim array */
	uint64_t ordinal;
	int attempts; /* claims so far, this one included (>= 1) */
} pm_claim;

/* Claims up to n queued rows of job_id (0 = any job; highest priority,
 * then oldest) for worker with a lease of lease_s seconds, in one
 * transaction. *out (free with pm_claims_free) and *n_out receive them;
 * *n_out = 0 when none is ready. */
pm_status pm_store_claim(pm_store *s, int64_t job_id, const char *worker, int n,
			 double lease_s, pm_claim **out, int *n_out,
			 pm_err *err);
void pm_claims_free(pm_claim *c, int n);
/* The job that holds the next claimable row (highest priority, oldest)
 * and its priority; *job_id = 0 if the queue has nothing ready. */
pm_status pm_store_queue_next(pm_store *s, int64_t *job_id, int *priority,
			      pm_err *err);
/* Extends every lease worker holds to now + lease_s; *n = leases held. */
pm_status pm_store_lease_renew(pm_store *s, const char *worker, double lease_s,
			       int64_t *n, pm_err *err);
/* Puts every row worker holds back in the queue (a draining worker's
 * unstarted claims); the attempt is not counted against it ("released"
 * event). *n = rows released (may be NULL). Rows of a cancelled job are
 * deleted instead (no worker would claim them). */
pm_status pm_store_lease_release(pm_store *s, const char *worker, int64_t *n,
				 pm_err *err);
/* Puts rows whose lease has expired back in the queue with an "expired"
 * event naming their worker; *n = rows (may be NULL). Any worker may
 * call it; concurrent calls do not double-count. Expired rows of a
 * cancelled job are deleted instead (not counted in *n). */
pm_status pm_store_lease_reap(pm_store *s, int64_t *n, pm_err *err);
/* Gives a claim back for a later attempt (a transient failure): the row
 * is queued again, claimable after delay_s, with a "retry" event and the
 * reason. PM_ERR_CONFLICT if worker no longer holds it. */
pm_status pm_store_requeue(pm_store *s, int64_t queue_id, const char *worker,
			   double delay_s, const char *reason, pm_err *err);
/* Waits up to timeout_ms for work: returns early when another process
 * enqueued or reaped (PostgreSQL LISTEN/NOTIFY; SQLite just sleeps up to
 * 250 ms). *woken (may be NULL) = a notification arrived. */
pm_status pm_store_queue_wait(pm_store *s, int timeout_ms, bool *woken,
			      pm_err *err);
/* Copies job_id's state ("queued", "running", "done", "cancelled", ...)
 * into state (size bytes, truncated): one lookup by id, no counts, so a
 * worker may poll it while it runs the job (to stop claiming a cancelled
 * one). PM_ERR_NOT_FOUND if there is no such job. */
pm_status pm_store_job_state_of(pm_store *s, int64_t job_id, char *state,
				size_t size, pm_err *err);
/* Sets job_id "done" if its enqueue is complete and no row of it is
 * queued or claimed, unless it was cancelled; *finished = whether it is
 * (now or already) done. */
pm_status pm_store_queue_finish(pm_store *s, int64_t job_id, bool *finished,
				pm_err *err);

typedef struct pm_queue_counts {
	int64_t queued, claimed, done, failed;
	int64_t expired; /* "expired" events: leases that ran out */
	int64_t retried; /* "retry" events: transient failures requeued */
	int64_t workers; /* distinct workers holding a lease now */
	bool enqueued;	 /* the enqueue is complete */
	int64_t total;	 /* records enqueued (when complete) */
	int64_t pruned;	 /* jobs whose queue rows pm_store_queue_prune
			    deleted (their figures above are gone) */
} pm_queue_counts;

/* Queue figures of job_id (0 = every job). All zero for a job that was
 * never queued. */
pm_status pm_store_queue_counts(pm_store *s, int64_t job_id, pm_queue_counts *c,
				pm_err *err);

/* The attempt history of one queued item, oldest first: event is
 * "claimed", "expired", "released", "retry", "done" or "failed"; worker
 * who held it; at = unix seconds; detail = a reason or NULL. */
pm_status pm_store_queue_history(pm_store *s, int64_t job_id, const char *key,
				 int (*cb)(const char *event,
					   const char *worker, double at,
					   const char *detail, void *ud),
				 void *ud, pm_err *err);

/* What pm_store_queue_prune deleted (or, dry run, would delete). */
typedef struct pm_queue_pruned {
	int64_t jobs;	/* jobs whose queue rows went */
	int64_t rows;	/* queue rows */
	int64_t events; /* queue_events rows (attempt history) */
} pm_queue_pruned;

/* Deletes the queue rows and queue events of jobs in a final state
 * ("done", "failed", "cancelled") last updated more than older_than_s
 * seconds ago (0 = any time) and holding no claimed row: job_id's, or
 * (0) every such job's. Running, queued and interrupted jobs are never
 * touched; a job's items and results stay, only its attempt history
 * and queue figures go (pm_queue_counts.pruned counts such jobs). The
 * deletion runs in transactions of at most PM_QUEUE_PRUNE_BATCH rows,
 * so a big prune holds no long lock; dry_run only counts. *out gets the
 * figures. PM_ERR_NOT_FOUND if job_id names no job, PM_ERR_CONFLICT if
 * it is not in a final state. Re-enqueueing a pruned job queues its
 * records again except the items already done (pm_store_enqueue). */
#define PM_QUEUE_PRUNE_BATCH 10000
pm_status pm_store_queue_prune(pm_store *s, int64_t job_id, double older_than_s,
			       bool dry_run, pm_queue_pruned *out, pm_err *err);

/* Counts of the job's items (for the end summary and tests). */
pm_status pm_store_job_counts(pm_store *s, int64_t job_id, int64_t *items,
			      int64_t *done, int64_t *failed,
			      int64_t *duplicates, pm_err *err);

/* The ads figures of a job's items done with their own image work (not
 * duplicates): composed with a placeholder, cut-out made (background
 * removed), cut-out skipped (background kept); from the assets' facts. */
pm_status pm_store_job_ads(pm_store *s, int64_t job_id, int64_t *placeholder,
			   int64_t *bg_removed, int64_t *bg_skipped,
			   pm_err *err);

#endif
