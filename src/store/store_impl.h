/* store_impl.h — private to src/store/: the backend vtable behind store.h.
 *
 * store.c parses the URL, picks a backend and forwards every pm_store_* call
 * through a pm_store_backend. A backend is one file (sqlite.c, postgres.c)
 * that defines one const pm_store_backend; its connection
 * state is an opaque pointer that the backend allocates in open and frees in
 * close. Each function has the meaning of the store.h function of the same
 * name, with the pm_store replaced by the backend's connection. Every
 * slot is filled (tests/unit/test_store.c checks): store.c calls them
 * without a NULL test.
 *
 * Threads: same rule as store.h: one connection is used by one thread at a
 * time; the vtables themselves are immutable and shared by all threads.
 */
#ifndef PM_STORE_IMPL_H
#define PM_STORE_IMPL_H

#include "store/store.h"

typedef struct pm_store_backend {
	const char *name; /* "sqlite" or "postgres" */
	/* Newest schema version this binary knows (its number of
	 * migrations); an older store is migrated by a read-write open. */
	int (*latest_version)(void);
	/* target is what the backend connects to: for SQLite the file path
	 * (URL scheme removed), for PostgreSQL the whole URL. On success
	 * *conn is owned by the caller and freed with close. */
	pm_status (*open)(const char *target, bool readonly, void **conn,
			  pm_err *err);
	void (*close)(void *conn);
	int (*schema_version)(void *conn);

	pm_status (*job_open)(void *conn, const pm_job_spec *spec,
			      int64_t *job_id, int *run_no, pm_err *err);
	pm_status (*job_net)(void *conn, int64_t job_id, int64_t http_items,
			     int64_t http_hits, pm_err *err);
	pm_status (*job_finish)(void *conn, int64_t job_id, const char *state,
				pm_err *err);
	pm_status (*jobs)(void *conn, int64_t id, int limit,
			  int (*cb)(const pm_job_info *info, void *ud),
			  void *ud, pm_err *err);
	pm_status (*job_failures)(void *conn, int64_t job_id, int limit,
				  int (*cb)(const char *code,
					    const char *example, int64_t count,
					    void *ud),
				  void *ud, pm_err *err);
	pm_status (*job_counts)(void *conn, int64_t job_id, int64_t *items,
				int64_t *done, int64_t *failed,
				int64_t *duplicates, pm_err *err);
	pm_status (*job_ads)(void *conn, int64_t job_id, int64_t out[3],
			     pm_err *err);

	pm_status (*failed)(void *conn, int64_t job_id, const char *code,
			    const char *key, int limit,
			    int (*cb)(const pm_failed_info *info, void *ud),
			    void *ud, pm_err *err);
	pm_status (*retry_failed)(void *conn, int64_t job_id, const char *code,
				  const char *key, int64_t *n, pm_err *err);
	pm_status (*url_get)(void *conn, const char *url, pm_url_info *info,
			     bool *found, pm_err *err);
	pm_status (*item_state)(void *conn, int64_t job_id, const char *key,
				pm_item_state *state, pm_status *code,
				pm_err *err);
	pm_status (*asset_exists)(void *conn, const char *sha256,
				  const char *pipeline_hash, bool *exists,
				  pm_err *err);

	pm_status (*begin)(void *conn, pm_err *err);
	pm_status (*put_item)(void *conn, const pm_item_rec *item, pm_err *err);
	pm_status (*commit)(void *conn, pm_err *err);
	void (*rollback)(void *conn);

	pm_status (*job_create)(void *conn, const pm_job_spec *spec,
				const char *name, int64_t *job_id, pm_err *err);
	pm_status (*job_state)(void *conn, int64_t job_id, const char *state,
			       const char *error, bool final, pm_err *err);
	pm_status (*items)(void *conn, int64_t job_id, const char *state,
			   int64_t after, int limit,
			   int (*cb)(const pm_item_info *info, void *ud),
			   void *ud, pm_err *err);
	pm_status (*outputs)(void *conn, const char *sha256,
			     const char *pipeline_hash, const char *name,
			     int (*cb)(const pm_output_info *info, void *ud),
			     void *ud, pm_err *err);
	pm_status (*recent)(void *conn, int limit,
			    int (*cb)(const pm_output_info *info, void *ud),
			    void *ud, pm_err *err);
	pm_status (*search)(void *conn, const pm_text_query *q,
			    int (*cb)(const pm_search_hit *hit, void *ud),
			    void *ud, pm_err *err);
	pm_status (*embeddings)(void *conn, const char *model,
				int (*cb)(const char *sha256, const float *vec,
					  int dim, void *ud),
				void *ud, pm_err *err);
	pm_status (*embedding_get)(void *conn, const char *sha256,
				   const char *model, float *out, int cap,
				   int *dim, pm_err *err);
	pm_status (*embeddings_stamp)(void *conn, int64_t *stamp, pm_err *err);
	pm_status (*embedding_put)(void *conn, const char *sha256,
				   const char *model, const float *vec, int dim,
				   pm_err *err);
	pm_status (*asset_items)(void *conn, int64_t job_id, const char *sha256,
				 const char *ref,
				 int (*cb)(const pm_asset_item *it, void *ud),
				 void *ud, pm_err *err);
	pm_status (*phash_near)(
	    void *conn, uint64_t phash, int max_distance, int limit,
	    int (*cb)(const char *sha256, const char *pipeline_hash,
		      uint64_t phash, int distance, void *ud),
	    void *ud, pm_err *err);
	pm_status (*phashes)(void *conn,
			     int (*cb)(const char *sha256,
				       const char *pipeline_hash,
				       uint64_t phash, void *ud),
			     void *ud, pm_err *err);
	pm_status (*images)(void *conn, const pm_image_query *q,
			    int (*cb)(const pm_image_info *info, void *ud),
			    void *ud, pm_err *err);
	pm_status (*title)(void *conn, const char *sha256, char *buf,
			   size_t size, pm_err *err);
	pm_status (*stats)(void *conn,
			   int (*cb)(const char *state, int64_t n, void *ud),
			   void *ud, int64_t *dlq, pm_err *err);
	/* Image search provider counters per UTC day (added in schema v8
	 * of the SQLite backend: table provider_days). provider_add adds
	 * the counters of d to its (provider, day) row, creating it
	 * (an upsert; it runs outside any open batch, on its own
	 * connection); provider_days lists rows with day >= since_day
	 * ordered by provider, day. */
	pm_status (*provider_add)(void *conn, const pm_provider_day *d,
				  pm_err *err);
	pm_status (*provider_days)(void *conn, int64_t since_day,
				   int (*cb)(const pm_provider_day *d,
					     void *ud),
				   void *ud, pm_err *err);
	/* The shared queue (SQLite schema v10, PostgreSQL v4: tables queue
	 * and queue_events, jobs.enqueued and jobs.enqueue_total); each has
	 * the meaning of its store.h function. Output pointers store.c
	 * guarantees non-NULL: added/n (it passes a dummy), out/n_out,
	 * job_id/priority, finished, c, woken. */
	pm_status (*enqueue)(void *conn, int64_t job_id, int priority,
			     const pm_enqueue_rec *recs, int n, int64_t *added,
			     pm_err *err);
	pm_status (*enqueue_end)(void *conn, int64_t job_id, int64_t total,
				 pm_err *err);
	pm_status (*claim)(void *conn, int64_t job_id, const char *worker,
			   int n, double lease_s, pm_claim **out, int *n_out,
			   pm_err *err);
	pm_status (*queue_next)(void *conn, int64_t *job_id, int *priority,
				pm_err *err);
	pm_status (*lease_renew)(void *conn, const char *worker, double lease_s,
				 int64_t *n, pm_err *err);
	pm_status (*lease_release)(void *conn, const char *worker, int64_t *n,
				   pm_err *err);
	pm_status (*lease_reap)(void *conn, int64_t *n, pm_err *err);
	pm_status (*requeue)(void *conn, int64_t queue_id, const char *worker,
			     double delay_s, const char *reason, pm_err *err);
	pm_status (*queue_wait)(void *conn, int timeout_ms, bool *woken,
				pm_err *err);
	pm_status (*queue_finish)(void *conn, int64_t job_id, bool *finished,
				  pm_err *err);
	pm_status (*job_state_of)(void *conn, int64_t job_id, char *state,
				  size_t size, pm_err *err);
	pm_status (*queue_counts)(void *conn, int64_t job_id,
				  pm_queue_counts *c, pm_err *err);
	pm_status (*queue_history)(void *conn, int64_t job_id, const char *key,
				   int (*cb)(const char *event,
					     const char *worker, double at,
					     const char *detail, void *ud),
				   void *ud, pm_err *err);
	/* job_id 0 = every job; cutoff = unix seconds (updated before it);
	 * batch = rows per transaction; out zeroed by the caller */
	pm_status (*queue_prune)(void *conn, int64_t job_id, double cutoff,
				 bool dry_run, int batch, pm_queue_pruned *out,
				 pm_err *err);
} pm_store_backend;

/* Sorts claims by the queue's order: priority (given per claim in prio,
 * same length) high first, then queue_id. For backends whose RETURNING
 * order is unspecified. */
void pm_claims_sort(pm_claim *c, int *prio, int n);

/* The pm_status whose code name (pm_status_code) is text, for the code
 * column of items; PM_ERR_STORE if there is none (a corrupt row). */
pm_status pm_store_code_parse(const char *text, pm_status *out, pm_err *err);

extern const pm_store_backend pm_store_sqlite;
extern const pm_store_backend pm_store_postgres;

/* ---- SQLite test hooks (used by tests/unit/test_store.c only) ---- */

/* Newest schema version this binary knows (the number of migrations). */
int pm_sqlite_latest_version(void);
/* Like pm_store_sqlite.open(path, false, ...) but migrates only up to
 * version target (1 .. latest), to build "old" databases in tests. */
pm_status pm_sqlite_open_at(const char *path, int target, void **conn,
			    pm_err *err);

/* ---- PostgreSQL test hook ---- */

/* Newest PostgreSQL schema version (its number of migrations). */
int pm_pg_latest_version(void);

#endif
