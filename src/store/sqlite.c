/* sqlite.c — the SQLite backend of the store: schema, migrations and every
 * SQL statement pixmill runs against an embedded database.
 *
 * One sq_conn is one sqlite3 connection opened with SQLITE_OPEN_NOMUTEX:
 * it may be handed between threads but used by one thread at a time (the
 * store.h rule). Read-write connections run in WAL mode with
 * synchronous=NORMAL, foreign_keys=ON and a 10 s busy timeout, so the one
 * writer and any number of readers (each with its own connection) proceed
 * side by side. Every query is prepared once per connection (lazily, on
 * first use) and reset + cleared after each use, so no statement keeps a
 * read snapshot open between calls.
 *
 * Schema: migrations[] below, applied in order, each in its own
 * BEGIN IMMEDIATE transaction that also sets PRAGMA user_version to the
 * step's number. Only ever append a step; never edit a shipped one.
 *
 * Storage notes:
 *   items.state  'done' | 'failed'; items.code is pm_status_code(status)
 *   items.record_id  the catalog's "id" column (items.id is the row id,
 *                which is also the rowid of items_fts)
 *   assets.phash the uint64 perceptual hash stored as the int64 with the
 *                same bits (values >= 2^63 read back negative; cast the
 *                column back to uint64_t); NULL when not computed
 *   sharpness    NULL when NAN; timestamps are REAL unix seconds
 */
#define _POSIX_C_SOURCE 200809L

#include "store/store_impl.h"

#include <errno.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* ---- schema ---- */

static const char *const migrations[] = {
    /* v1: the four tables, their indexes and the full-text index. */
    "CREATE TABLE jobs ("
    " id INTEGER PRIMARY KEY,"
    " key TEXT NOT NULL UNIQUE,"
    " catalog TEXT NOT NULL,"
    " pipeline TEXT NOT NULL,"
    " pipeline_hash TEXT NOT NULL,"
    " pipeline_json TEXT NOT NULL,"
    " out_dir TEXT NOT NULL,"
    " state TEXT NOT NULL DEFAULT 'running',"
    " runs INTEGER NOT NULL DEFAULT 1,"
    " created REAL NOT NULL,"
    " updated REAL NOT NULL,"
    " finished REAL"
    ");"
    "CREATE TABLE assets ("
    " id INTEGER PRIMARY KEY,"
    " sha256 TEXT NOT NULL,"
    " pipeline_hash TEXT NOT NULL,"
    " format TEXT,"
    " width INTEGER,"
    " height INTEGER,"
    " bytes INTEGER,"
    " phash INTEGER,"
    " colors_json TEXT,"
    " sharpness REAL,"
    " meta_json TEXT,"
    " created REAL NOT NULL,"
    " updated REAL NOT NULL,"
    " UNIQUE (sha256, pipeline_hash)"
    ");"
    "CREATE INDEX assets_phash ON assets (phash);"
    "CREATE TABLE outputs ("
    " id INTEGER PRIMARY KEY,"
    " asset_id INTEGER NOT NULL REFERENCES assets (id) ON DELETE CASCADE,"
    " name TEXT NOT NULL,"
    " path TEXT NOT NULL,"
    " format TEXT,"
    " width INTEGER,"
    " height INTEGER,"
    " bytes INTEGER,"
    " sha256 TEXT,"
    " created REAL NOT NULL,"
    " updated REAL NOT NULL,"
    " UNIQUE (asset_id, name)"
    ");"
    "CREATE TABLE items ("
    " id INTEGER PRIMARY KEY,"
    " job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,"
    " key TEXT NOT NULL,"
    " ordinal INTEGER NOT NULL,"
    " record_id TEXT,"
    " image TEXT,"
    " title TEXT,"
    " price TEXT,"
    " category TEXT,"
    " attrs TEXT,"
    " state TEXT NOT NULL CHECK (state IN ('done', 'failed')),"
    " code TEXT NOT NULL,"
    " error TEXT,"
    " sha256 TEXT,"
    " duplicate INTEGER NOT NULL DEFAULT 0,"
    " attempts INTEGER NOT NULL DEFAULT 1,"
    " latency_ms REAL,"
    " asset_id INTEGER REFERENCES assets (id),"
    " created REAL NOT NULL,"
    " updated REAL NOT NULL,"
    " UNIQUE (job_id, key)"
    ");"
    "CREATE INDEX items_job_state ON items (job_id, state, code);"
    "CREATE INDEX items_asset ON items (asset_id);"
    "CREATE VIRTUAL TABLE items_fts USING fts5 ("
    " title, category, attrs, content = 'items', content_rowid = 'id');"
    "CREATE TRIGGER items_fts_ai AFTER INSERT ON items BEGIN"
    " INSERT INTO items_fts (rowid, title, category, attrs)"
    " VALUES (new.id, new.title, new.category, new.attrs);"
    "END;"
    "CREATE TRIGGER items_fts_ad AFTER DELETE ON items BEGIN"
    " INSERT INTO items_fts (items_fts, rowid, title, category, attrs)"
    " VALUES ('delete', old.id, old.title, old.category, old.attrs);"
    "END;"
    "CREATE TRIGGER items_fts_au AFTER UPDATE OF title, category, attrs"
    " ON items BEGIN"
    " INSERT INTO items_fts (items_fts, rowid, title, category, attrs)"
    " VALUES ('delete', old.id, old.title, old.category, old.attrs);"
    " INSERT INTO items_fts (rowid, title, category, attrs)"
    " VALUES (new.id, new.title, new.category, new.attrs);"
    "END;",

    /* v2: find every item (any job) made from a given source. */
    "CREATE INDEX items_sha256 ON items (sha256) WHERE sha256 IS NOT NULL;",

    /* v3: what each URL served last, for conditional re-fetch. */
    "CREATE TABLE urls ("
    " url TEXT PRIMARY KEY,"
    " etag TEXT,"
    " last_modified TEXT,"
    " sha256 TEXT NOT NULL,"
    " updated REAL NOT NULL"
    ") WITHOUT ROWID;",

    /* v4: jobs submitted over HTTP: a label, and why a job could not run. */
    "ALTER TABLE jobs ADD COLUMN name TEXT;"
    "ALTER TABLE jobs ADD COLUMN error TEXT;"
    "CREATE INDEX outputs_asset ON outputs (asset_id);",

    /* v5: rows with several image candidates: the choice and the
     * rejected ones. */
    "ALTER TABLE items ADD COLUMN candidates TEXT;",

    /* v6: visual embeddings per (model, source); the text seen in an
     * item's image (OCR, later captions: asset_text) in the full-text
     * index, which therefore keeps its own copy of what it indexes (the
     * text is not an items column). */
    "CREATE TABLE embeddings ("
    " id INTEGER PRIMARY KEY,"
    " sha256 TEXT NOT NULL,"
    " model TEXT NOT NULL,"
    " dim INTEGER NOT NULL,"
    " vec BLOB NOT NULL,"
    " created REAL NOT NULL,"
    " UNIQUE (model, sha256)"
    ");"
    "CREATE VIEW asset_text AS SELECT id, trim("
    " coalesce(CASE WHEN json_valid(meta_json)"
    "  THEN json_extract(meta_json, '$.ocr.text') END, '') || ' ' ||"
    " coalesce(CASE WHEN json_valid(meta_json)"
    "  THEN json_extract(meta_json, '$.caption') END, '')) AS text"
    " FROM assets;"
    "DROP TRIGGER items_fts_ai;"
    "DROP TRIGGER items_fts_ad;"
    "DROP TRIGGER items_fts_au;"
    "DROP TABLE items_fts;"
    "CREATE VIRTUAL TABLE items_fts USING fts5 ("
    " title, category, attrs, text);"
    "INSERT INTO items_fts (rowid, title, category, attrs, text)"
    " SELECT i.id, i.title, i.category, i.attrs,"
    " (SELECT text FROM asset_text t WHERE t.id = i.asset_id)"
    " FROM items i;"
    "CREATE TRIGGER items_fts_ai AFTER INSERT ON items BEGIN"
    " INSERT INTO items_fts (rowid, title, category, attrs, text)"
    " VALUES (new.id, new.title, new.category, new.attrs,"
    " (SELECT text FROM asset_text WHERE id = new.asset_id));"
    "END;"
    "CREATE TRIGGER items_fts_ad AFTER DELETE ON items BEGIN"
    " DELETE FROM items_fts WHERE rowid = old.id;"
    "END;"
    "CREATE TRIGGER items_fts_au"
    " AFTER UPDATE OF title, category, attrs, asset_id ON items BEGIN"
    " DELETE FROM items_fts WHERE rowid = old.id;"
    " INSERT INTO items_fts (rowid, title, category, attrs, text)"
    " VALUES (new.id, new.title, new.category, new.attrs,"
    " (SELECT text FROM asset_text WHERE id = new.asset_id));"
    "END;"
    "CREATE TRIGGER assets_fts_au AFTER UPDATE OF meta_json ON assets BEGIN"
    " DELETE FROM items_fts"
    "  WHERE rowid IN (SELECT id FROM items WHERE asset_id = new.id);"
    " INSERT INTO items_fts (rowid, title, category, attrs, text)"
    " SELECT id, title, category, attrs,"
    " (SELECT text FROM asset_text WHERE id = new.id)"
    " FROM items WHERE asset_id = new.id;"
    "END;",
    /* v7: the last run's http cache figures, for `status`. */
    "ALTER TABLE jobs ADD COLUMN http_items INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE jobs ADD COLUMN http_hits INTEGER NOT NULL DEFAULT 0;",
    /* v8: image search provider counters per UTC day (quota, health). */
    "CREATE TABLE provider_days ("
    " provider TEXT NOT NULL, day INTEGER NOT NULL,"
    " requests INTEGER NOT NULL DEFAULT 0, found INTEGER NOT NULL DEFAULT 0,"
    " empty INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0,"
    " results INTEGER NOT NULL DEFAULT 0, latency_ms REAL NOT NULL DEFAULT 0,"
    " PRIMARY KEY (provider, day)) WITHOUT ROWID;",

    /* v9: the tags of the analyze stage (meta_json analysis.tags, the
     * string elements of an array) join the OCR text and the caption in
     * the full-text index; the index is rebuilt once. */
    "DROP VIEW asset_text;"
    "CREATE VIEW asset_text AS SELECT id, trim("
    " coalesce(CASE WHEN json_valid(meta_json)"
    "  THEN json_extract(meta_json, '$.ocr.text') END, '') || ' ' ||"
    " coalesce(CASE WHEN json_valid(meta_json)"
    "  THEN json_extract(meta_json, '$.caption') END, '') || ' ' ||"
    " coalesce(CASE WHEN json_valid(meta_json) AND"
    "  json_type(meta_json, '$.analysis.tags') = 'array'"
    "  THEN (SELECT group_concat(value, ' ') FROM"
    "   json_each(meta_json, '$.analysis.tags') WHERE type = 'text')"
    "  END, '')) AS text"
    " FROM assets;"
    "DELETE FROM items_fts;"
    "INSERT INTO items_fts (rowid, title, category, attrs, text)"
    " SELECT i.id, i.title, i.category, i.attrs,"
    " (SELECT text FROM asset_text t WHERE t.id = i.asset_id)"
    " FROM items i;",

    /* v10: the shared queue (pixmill worker). queue: one row per
     * enqueued catalog record, queued -> claimed (leased to a worker
     * until lease_until) -> done | failed, back to queued when a lease
     * expires, a worker releases or requeues it, or `dlq retry` sends the
     * item back. queue_events: the attempt history. jobs.enqueued: NULL
     * for a job never enqueued, 0 while its enqueue runs, 1 once complete
     * (with enqueue_total records). The partial indexes keep a claim an
     * index scan however many rows are done. */
    "ALTER TABLE jobs ADD COLUMN enqueued INTEGER;"
    "ALTER TABLE jobs ADD COLUMN enqueue_total INTEGER NOT NULL DEFAULT 0;"
    "CREATE TABLE queue ("
    " id INTEGER PRIMARY KEY,"
    " job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,"
    " key TEXT NOT NULL,"
    " ordinal INTEGER NOT NULL,"
    " priority INTEGER NOT NULL DEFAULT 0,"
    " state TEXT NOT NULL DEFAULT 'queued'"
    "  CHECK (state IN ('queued', 'claimed', 'done', 'failed')),"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " lease_owner TEXT,"
    " lease_until REAL,"
    " not_before REAL NOT NULL DEFAULT 0,"
    " record_json TEXT NOT NULL,"
    " created REAL NOT NULL,"
    " updated REAL NOT NULL,"
    " UNIQUE (job_id, key)"
    ");"
    "CREATE INDEX queue_ready_job ON queue (job_id, priority DESC, id)"
    " WHERE state = 'queued';"
    "CREATE INDEX queue_ready ON queue (priority DESC, id)"
    " WHERE state = 'queued';"
    "CREATE INDEX queue_owner ON queue (lease_owner)"
    " WHERE state = 'claimed';"
    "CREATE INDEX queue_lease ON queue (lease_until)"
    " WHERE state = 'claimed';"
    "CREATE INDEX queue_claimed_job ON queue (job_id, lease_owner)"
    " WHERE state = 'claimed';"
    "CREATE TABLE queue_events ("
    " id INTEGER PRIMARY KEY,"
    " queue_id INTEGER NOT NULL REFERENCES queue (id) ON DELETE CASCADE,"
    " job_id INTEGER NOT NULL,"
    " key TEXT NOT NULL,"
    " event TEXT NOT NULL,"
    " worker TEXT,"
    " at REAL NOT NULL,"
    " detail TEXT"
    ");"
    "CREATE INDEX queue_events_item ON queue_events (job_id, key);"
    "CREATE INDEX queue_events_job ON queue_events (job_id, event);"
    "CREATE INDEX queue_events_queue ON queue_events (queue_id);",
    /* v11: `pixmill queue prune` deletes the queue rows and events of
     * finished jobs; jobs.queue_pruned (unix seconds, NULL = never)
     * says so, for status. Its queries use the indexes above (queue's
     * UNIQUE (job_id, key), queue_events_queue): no new index. */
    "ALTER TABLE jobs ADD COLUMN queue_pruned REAL;",
};

#define N_MIGRATIONS ((int)(sizeof migrations / sizeof migrations[0]))

/* ---- cached statements ---- */

enum {
	Q_BEGIN,
	Q_COMMIT,
	Q_ROLLBACK,
	Q_JOB_OPEN,
	Q_JOB_FINISH,
	Q_JOB_NET,
	Q_JOBS,
	Q_JOB_FAILURES,
	Q_JOB_COUNTS,
	Q_JOB_ADS,
	Q_ITEM_STATE,
	Q_ASSET_EXISTS,
	Q_ASSET_INSERT,
	Q_ASSET_ID,
	Q_ASSET_FOR_JOB,
	Q_OUTPUT_INSERT,
	Q_ITEM_UPSERT,
	Q_FAILED,
	Q_RETRY_FAILED,
	Q_URL_GET,
	Q_URL_PUT,
	Q_JOB_CREATE,
	Q_JOB_STATE,
	Q_ITEMS,
	Q_OUTPUTS,
	Q_RECENT,
	Q_SEARCH,
	Q_PHASH,
	Q_PHASH_NEAR,
	Q_TITLE,
	Q_STATS_JOBS,
	Q_STATS_DLQ,
	Q_EMB_PUT,
	Q_EMB_ALL,
	Q_EMB_GET,
	Q_EMB_STAMP,
	Q_ASSET_ITEMS_ALL,
	Q_ASSET_ITEMS_SHA,
	Q_FIND_ITEMS,
	Q_PROV_ADD,
	Q_PROV_DAYS,
	Q_IMAGES,
	Q_IMAGES_MATCH,
	Q_IMAGE_ASSETS,
	Q_Q_MARK,
	Q_Q_ENQUEUE,
	Q_Q_ENQUEUE_END,
	Q_Q_CLAIM,
	Q_Q_CLAIM_ANY,
	Q_Q_RUNNING,
	Q_Q_EVENT,
	Q_Q_NEXT,
	Q_Q_RENEW,
	Q_Q_RELEASE_DROP,
	Q_Q_RELEASE_EV,
	Q_Q_RELEASE,
	Q_Q_REAP_DROP,
	Q_Q_REAP_EV,
	Q_Q_REAP,
	Q_Q_REQUEUE,
	Q_Q_COMPLETE,
	Q_Q_FINISH,
	Q_Q_JOB_STATE,
	Q_Q_COUNTS,
	Q_Q_HISTORY,
	Q_RETRY_Q_EV,
	Q_RETRY_Q_JOBS,
	Q_RETRY_Q,
	Q_CANCEL_Q,
	Q_PRUNE_JOBS,
	Q_PRUNE_CHECK,
	Q_PRUNE_IDS,
	Q_PRUNE_EV,
	Q_PRUNE_ROW,
	Q_PRUNE_MARK,
	Q_PRUNE_COUNT,
	Q_COUNT
};

/* Done items with their asset (pm_asset_item), before the filters. */
#define ASSET_ITEM_COLS                                                        \
	"SELECT i.job_id, i.key, i.record_id, i.image, i.title, i.category,"   \
	" i.sha256, a.width, a.height, a.bytes, a.phash, a.sharpness"          \
	" FROM items i JOIN assets a ON a.id = i.asset_id"                     \
	" WHERE i.state = 'done' AND (?1 = 0 OR i.job_id = ?1)"

/* The gallery (pm_image_info): an asset with a title and the count of
 * its done items, in job ?1 (0 = any). One entry per source: with a job,
 * the asset of the job's pipeline; else the newest asset of each source.
 * Filters: ?3 format, ?4 has OCR text, ?5 has a caption, ?6 a tag. */
#define META(path)                                                             \
	"CASE WHEN json_valid(a.meta_json) THEN"                               \
	" json_extract(a.meta_json, '" path "') END"
/* Text Tesseract is sure of: two characters or more, mean word confidence
 * 60 or more (photos often give a few low-confidence marks). */
#define HAS_TEXT                                                               \
	"(length(trim(coalesce(" META(                                         \
	    "$.ocr.text") ", ''),"                                             \
			  " ' ' || char(9, 10, 13))) >= 2 AND coalesce(" META( \
			      "$.ocr.confidence") ", 0) >= 60)"
#define IMAGE_COLS                                                             \
	"SELECT a.sha256, a.pipeline_hash, a.format, a.width, a.height,"       \
	" a.bytes, a.phash, a.colors_json, a.sharpness, a.meta_json,"          \
	" a.created,"                                                          \
	" (SELECT title FROM items i WHERE i.sha256 = a.sha256"                \
	"  AND i.title IS NOT NULL AND (?1 = 0 OR i.job_id = ?1)"              \
	"  ORDER BY i.id DESC LIMIT 1),"                                       \
	" (SELECT COUNT(*) FROM items i WHERE i.sha256 = a.sha256"             \
	"  AND i.state = 'done' AND (?1 = 0 OR i.job_id = ?1)),"               \
	" (SELECT image FROM items i WHERE i.sha256 = a.sha256"                \
	"  AND i.state = 'done' AND (?1 = 0 OR i.job_id = ?1)"                 \
	"  ORDER BY i.job_id, i.ordinal LIMIT 1), " HAS_TEXT
#define IMAGE_WHERE                                                            \
	" WHERE (CASE WHEN ?1 = 0 THEN a.id = (SELECT max(a2.id) FROM"         \
	"  assets a2 WHERE a2.sha256 = a.sha256)"                              \
	"  ELSE a.pipeline_hash = (SELECT pipeline_hash FROM jobs"             \
	"  WHERE id = ?1) AND EXISTS (SELECT 1 FROM items i"                   \
	"  WHERE i.job_id = ?1 AND i.sha256 = a.sha256"                        \
	"  AND i.state = 'done') END)"                                         \
	" AND (?3 IS NULL OR a.format = ?3)"                                   \
	" AND (?4 = 0 OR " HAS_TEXT ")"                                        \
	" AND (?5 = 0 OR coalesce(" META(                                      \
	    "$.caption") ", '') <> '')"                                        \
			 " AND (?6 IS NULL OR EXISTS (SELECT 1 FROM "          \
			 "json_each(CASE WHEN"                                 \
			 "  json_valid(a.meta_json) THEN a.meta_json ELSE "    \
			 "'{}' END,"                                           \
			 "  '$.analysis.tags') WHERE value = ?6))"

/* Queue rows of the failed items pm_store_retry_failed forgets (?1 job
 * or 0, ?2 code, ?3 key), driven from the items index. */
#define RETRY_Q_IDS                                                            \
	" (SELECT q.id FROM items i JOIN queue q ON q.job_id = i.job_id"       \
	"  AND q.key = i.key WHERE i.state = 'failed' AND q.state = 'failed'"  \
	"  AND (?1 = 0 OR i.job_id = ?1) AND (?2 IS NULL OR i.code = ?2)"      \
	"  AND (?3 IS NULL OR i.key = ?3))"

#define CLAIM_SET                                                              \
	"UPDATE queue SET state = 'claimed', attempts = attempts + 1,"         \
	" lease_owner = ?3, lease_until = ?5, updated = ?6"                    \
	" WHERE id IN (SELECT id FROM queue WHERE state = 'queued'"            \
	"  AND not_before <= ?6"
#define CLAIM_END                                                              \
	" ORDER BY priority DESC, id LIMIT ?4)"                                \
	" RETURNING id, job_id, key, record_json, ordinal, attempts, priority"

static const char *const queries[Q_COUNT] = {
    /* ---- the shared queue; job filters are ranges (?lo, ?hi: a job
     * is [id, id], every job [1, max]) so that indexes apply ---- */
    [Q_Q_MARK] = "UPDATE jobs SET enqueued = 0, queue_pruned = NULL,"
		 " updated = ?2 WHERE id = ?1",
    [Q_Q_ENQUEUE] =
	"INSERT INTO queue (job_id, key, ordinal, priority, state, attempts,"
	" not_before, record_json, created, updated)"
	" SELECT ?1, ?2, ?3, ?4, 'queued', 0, 0, ?5, ?6, ?6"
	" WHERE NOT EXISTS (SELECT 1 FROM items"
	"  WHERE job_id = ?1 AND key = ?2 AND state = 'done')"
	" ON CONFLICT (job_id, key) DO NOTHING",
    [Q_Q_ENQUEUE_END] = "UPDATE jobs SET enqueued = 1, enqueue_total = ?2,"
			" queue_pruned = NULL, updated = ?3 WHERE id = ?1",
    /* ?1 the job, ?3 worker, ?4 n, ?5 lease end, ?6 now; an index scan
     * in claim order (queue_ready_job, or queue_ready for any job: a
     * job range here would sort every queued row of the range) */
    [Q_Q_CLAIM] = CLAIM_SET " AND job_id = ?1" CLAIM_END,
    [Q_Q_CLAIM_ANY] = CLAIM_SET " AND ?1 = 0" CLAIM_END,
    [Q_Q_RUNNING] = "UPDATE jobs SET state = 'running', updated = ?2"
		    " WHERE id = ?1 AND state = 'queued'",
    [Q_Q_EVENT] = "INSERT INTO queue_events (queue_id, job_id, key, event,"
		  " worker, at, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [Q_Q_NEXT] = "SELECT job_id, priority FROM queue WHERE state = 'queued'"
		 " AND not_before <= ?1 ORDER BY priority DESC, id LIMIT 1",
    [Q_Q_RENEW] = "UPDATE queue SET lease_until = ?2"
		  " WHERE state = 'claimed' AND lease_owner = ?1",
    /* a cancelled job's rows are deleted, not put back (no worker
     * would claim them); events first, while the rows still name their
     * worker */
    [Q_Q_RELEASE_DROP] = "DELETE FROM queue WHERE state = 'claimed'"
			 " AND lease_owner = ?1 AND EXISTS (SELECT 1 FROM jobs"
			 "  j WHERE j.id = queue.job_id"
			 "  AND j.state = 'cancelled')",
    [Q_Q_RELEASE_EV] =
	"INSERT INTO queue_events (queue_id, job_id, key, event, worker, at)"
	" SELECT id, job_id, key, 'released', lease_owner, ?2 FROM queue"
	" WHERE state = 'claimed' AND lease_owner = ?1",
    [Q_Q_RELEASE] = "UPDATE queue SET state = 'queued',"
		    " attempts = max(attempts - 1, 0), lease_owner = NULL,"
		    " lease_until = NULL, updated = ?2"
		    " WHERE state = 'claimed' AND lease_owner = ?1",
    [Q_Q_REAP_DROP] = "DELETE FROM queue WHERE state = 'claimed'"
		      " AND lease_until < ?1 AND EXISTS (SELECT 1 FROM jobs j"
		      "  WHERE j.id = queue.job_id AND j.state = 'cancelled')",
    [Q_Q_REAP_EV] =
	"INSERT INTO queue_events (queue_id, job_id, key, event, worker, at)"
	" SELECT id, job_id, key, 'expired', lease_owner, ?1 FROM queue"
	" WHERE state = 'claimed' AND lease_until < ?1",
    [Q_Q_REAP] = "UPDATE queue SET state = 'queued', lease_owner = NULL,"
		 " lease_until = NULL, updated = ?1"
		 " WHERE state = 'claimed' AND lease_until < ?1",
    [Q_Q_REQUEUE] = "UPDATE queue SET state = 'queued', lease_owner = NULL,"
		    " lease_until = NULL, not_before = ?3, updated = ?4"
		    " WHERE id = ?1 AND lease_owner = ?2 AND state = 'claimed'"
		    " RETURNING job_id, key",
    /* the put's conditional completion: ?3 'done' or 'failed' */
    [Q_Q_COMPLETE] = "UPDATE queue SET state = ?3, lease_until = NULL,"
		     " updated = ?6 WHERE id = ?1 AND lease_owner = ?2"
		     " AND state = 'claimed' AND job_id = ?4 AND key = ?5",
    [Q_Q_FINISH] = "UPDATE jobs SET state = 'done', updated = ?2, finished = ?2"
		   " WHERE id = ?1 AND enqueued = 1"
		   " AND state NOT IN ('done', 'cancelled', 'cancelling')"
		   " AND NOT EXISTS (SELECT 1 FROM queue WHERE job_id = ?1"
		   "  AND state = 'queued')"
		   " AND NOT EXISTS (SELECT 1 FROM queue WHERE job_id = ?1"
		   "  AND state = 'claimed')",
    [Q_Q_JOB_STATE] = "SELECT state FROM jobs WHERE id = ?1",
    [Q_Q_COUNTS] = "SELECT"
		   " (SELECT COUNT(*) FROM queue WHERE state = 'queued'"
		   "  AND job_id BETWEEN ?1 AND ?2),"
		   " (SELECT COUNT(*) FROM queue WHERE state = 'claimed'"
		   "  AND job_id BETWEEN ?1 AND ?2),"
		   " (SELECT COUNT(*) FROM queue WHERE state = 'done'"
		   "  AND job_id BETWEEN ?1 AND ?2),"
		   " (SELECT COUNT(*) FROM queue WHERE state = 'failed'"
		   "  AND job_id BETWEEN ?1 AND ?2),"
		   " (SELECT COUNT(*) FROM queue_events WHERE event = 'expired'"
		   "  AND job_id BETWEEN ?1 AND ?2),"
		   " (SELECT COUNT(*) FROM queue_events WHERE event = 'retry'"
		   "  AND job_id BETWEEN ?1 AND ?2),"
		   " (SELECT COUNT(DISTINCT lease_owner) FROM queue"
		   "  WHERE state = 'claimed' AND job_id BETWEEN ?1 AND ?2),"
		   " (SELECT COUNT(*) FILTER (WHERE enqueued IS NOT NULL) > 0"
		   "  AND COUNT(*) FILTER (WHERE enqueued = 0) = 0"
		   "  FROM jobs WHERE id BETWEEN ?1 AND ?2),"
		   " (SELECT coalesce(SUM(enqueue_total), 0) FROM jobs"
		   "  WHERE enqueued = 1 AND id BETWEEN ?1 AND ?2),"
		   " (SELECT COUNT(*) FROM jobs WHERE queue_pruned IS NOT NULL"
		   "  AND id BETWEEN ?1 AND ?2)",
    [Q_Q_HISTORY] = "SELECT event, worker, at, detail FROM queue_events"
		    " WHERE job_id = ?1 AND key = ?2 ORDER BY id",
    [Q_RETRY_Q_EV] = "INSERT INTO queue_events (queue_id, job_id, key,"
		     " event, worker, at, detail)"
		     " SELECT id, job_id, key, 'retry', NULL, ?4, 'dlq retry'"
		     " FROM queue WHERE id IN" RETRY_Q_IDS,
    [Q_RETRY_Q_JOBS] =
	"UPDATE jobs SET state = 'running', finished = NULL, updated = ?4"
	" WHERE state = 'done' AND id IN (SELECT job_id FROM queue"
	" WHERE id IN" RETRY_Q_IDS ")",
    [Q_RETRY_Q] = "UPDATE queue SET state = 'queued', attempts = 0,"
		  " lease_owner = NULL, lease_until = NULL, not_before = 0,"
		  " updated = ?4 WHERE id IN" RETRY_Q_IDS,
    /* a cancelled job's unclaimed rows (their events cascade) */
    [Q_CANCEL_Q] = "DELETE FROM queue WHERE job_id = ?1 AND state = 'queued'",
    /* ---- pruning: ?1..?2 the job range, ?3 the cutoff ---- */
    [Q_PRUNE_JOBS] = "SELECT j.id FROM jobs j WHERE j.id BETWEEN ?1 AND ?2"
		     " AND j.state IN ('done', 'failed', 'cancelled')"
		     " AND j.updated < ?3 AND EXISTS (SELECT 1 FROM queue q"
		     "  WHERE q.job_id = j.id) ORDER BY j.id",
    /* the job is still prunable (in the batch's transaction) */
    [Q_PRUNE_CHECK] =
	"SELECT 1 FROM jobs j WHERE j.id = ?1"
	" AND j.state IN ('done', 'failed', 'cancelled')"
	" AND j.updated < ?2 AND NOT EXISTS (SELECT 1 FROM"
	"  queue q WHERE q.job_id = j.id AND q.state = 'claimed')",
    [Q_PRUNE_IDS] = "SELECT id FROM queue WHERE job_id = ?1 LIMIT ?2",
    [Q_PRUNE_EV] = "DELETE FROM queue_events WHERE queue_id = ?1",
    [Q_PRUNE_ROW] = "DELETE FROM queue WHERE id = ?1",
    [Q_PRUNE_MARK] = "UPDATE jobs SET queue_pruned = ?2 WHERE id = ?1",
    [Q_PRUNE_COUNT] = "SELECT (SELECT COUNT(*) FROM queue WHERE job_id = ?1),"
		      " (SELECT COUNT(*) FROM queue_events WHERE job_id = ?1)",
    [Q_IMAGES] =
	IMAGE_COLS ", 0 FROM assets a" IMAGE_WHERE " ORDER BY a.id DESC",
    /* ?2 the FTS5 query; an image's score is its best item's (the
     * search's BM25 weights). MATERIALIZED keeps bm25() in the query
     * that has the MATCH. */
    [Q_IMAGES_MATCH] =
	"WITH m AS MATERIALIZED (SELECT rowid AS rid,"
	" -bm25(items_fts, 4.0, 2.0, 1.0, 1.0) AS score FROM items_fts"
	" WHERE items_fts MATCH ?2),"
	" h AS (SELECT i.sha256, max(m.score) AS score FROM m"
	" JOIN items i ON i.id = m.rid WHERE i.sha256 IS NOT NULL"
	" AND (?1 = 0 OR i.job_id = ?1) GROUP BY i.sha256) " IMAGE_COLS
	", h.score FROM assets a JOIN h ON h.sha256 = a.sha256" IMAGE_WHERE
	" ORDER BY h.score DESC, a.id DESC",
    [Q_IMAGE_ASSETS] = IMAGE_COLS ", 0 FROM assets a WHERE a.sha256 = ?2"
				  " AND ?3 IS NULL AND ?4 = 0 AND ?5 = 0"
				  " AND ?6 IS NULL ORDER BY a.id DESC",
    [Q_JOB_CREATE] =
	"INSERT INTO jobs (key, catalog, pipeline, pipeline_hash,"
	" pipeline_json, out_dir, state, runs, created, updated, name)"
	" VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'queued', 0, ?7, ?7, ?8)"
	" ON CONFLICT (key) DO UPDATE SET state = 'queued',"
	" updated = excluded.updated, name = excluded.name, error = NULL"
	" RETURNING id",
    [Q_JOB_STATE] = "UPDATE jobs SET state = ?2, error = ?3, updated = ?4,"
		    " finished = CASE WHEN ?5 THEN ?4 ELSE NULL END"
		    " WHERE id = ?1",
    [Q_ITEMS] = "SELECT i.key, i.ordinal, i.record_id, i.title, i.image,"
		" i.state, i.code, i.error, i.sha256, i.duplicate,"
		" i.attempts, i.latency_ms, a.pipeline_hash, i.candidates"
		" FROM items i JOIN jobs j ON j.id = i.job_id"
		" LEFT JOIN assets a ON a.sha256 = i.sha256"
		" AND a.pipeline_hash = j.pipeline_hash"
		" WHERE i.job_id = ?1 AND (?2 IS NULL OR i.state = ?2)"
		" AND i.ordinal > ?3 ORDER BY i.ordinal LIMIT ?4",
    [Q_OUTPUTS] =
	"SELECT o.name, o.path, o.format, o.width, o.height,"
	" o.bytes, o.sha256, a.pipeline_hash FROM assets a"
	" JOIN outputs o ON o.asset_id = a.id"
	" WHERE a.sha256 = ?1 AND (?2 IS NULL OR a.pipeline_hash = ?2)"
	" AND (?3 IS NULL OR o.name = ?3)"
	" ORDER BY a.id DESC, o.id",
    [Q_RECENT] = "SELECT a.sha256, o.name, o.path, o.format, o.width,"
		 " o.height, o.bytes, o.sha256, a.pipeline_hash,"
		 " (SELECT title FROM items i WHERE i.sha256 = a.sha256"
		 "  AND i.title IS NOT NULL LIMIT 1)"
		 " FROM outputs o JOIN assets a ON a.id = o.asset_id"
		 " WHERE o.id IN (SELECT MIN(o2.id) FROM outputs o2"
		 "  GROUP BY o2.asset_id ORDER BY o2.asset_id DESC LIMIT ?1)"
		 " ORDER BY o.asset_id DESC",
    /* BM25 column weights: title 4, category 2, attributes 1, image
     * text 1. */
    [Q_SEARCH] = "SELECT i.job_id, i.key, i.title, i.sha256, i.image,"
		 " -bm25(items_fts, 4.0, 2.0, 1.0, 1.0) AS score,"
		 " j.pipeline_hash,"
		 " snippet(items_fts, -1, ?5, ?6, '...', 16),"
		 " i.category, coalesce(f.text, '') <> '', i.record_id"
		 " FROM items_fts f JOIN items i ON i.id = f.rowid"
		 " JOIN jobs j ON j.id = i.job_id"
		 " WHERE items_fts MATCH ?1"
		 " AND (?3 = 0 OR i.job_id = ?3)"
		 " AND (?4 IS NULL OR i.category = ?4)"
		 " AND (?7 = 0 OR coalesce(f.text, '') <> '')"
		 " ORDER BY bm25(items_fts, 4.0, 2.0, 1.0, 1.0) LIMIT ?2",
    [Q_EMB_PUT] = "INSERT INTO embeddings (sha256, model, dim, vec, created)"
		  " VALUES (?1, ?2, ?3, ?4, ?5)"
		  " ON CONFLICT (model, sha256) DO UPDATE SET"
		  " dim = excluded.dim, vec = excluded.vec,"
		  " created = excluded.created",
    /* a sequential scan beats the (model, sha256) index here: rows come in
     * insertion order, not in random sha256 order */
    [Q_EMB_ALL] = "SELECT sha256, dim, vec FROM embeddings NOT INDEXED"
		  " WHERE model = ?1",
    [Q_EMB_GET] = "SELECT dim, vec FROM embeddings"
		  " WHERE model = ?1 AND sha256 = ?2",
    [Q_EMB_STAMP] = "SELECT coalesce(max(id), 0) FROM embeddings",
    [Q_ASSET_ITEMS_ALL] =
	ASSET_ITEM_COLS " ORDER BY i.sha256, i.job_id, i.ordinal",
    [Q_ASSET_ITEMS_SHA] =
	ASSET_ITEM_COLS " AND i.sha256 = ?2 ORDER BY i.job_id, i.ordinal",
    [Q_FIND_ITEMS] = ASSET_ITEM_COLS
    " AND (i.key = ?2 OR i.record_id = ?2) ORDER BY i.id DESC",
    [Q_PHASH] = "SELECT sha256, pipeline_hash, phash FROM assets"
		" WHERE phash IS NOT NULL",
    /* pm_hamming: the connection's C function (hamming_fn) */
    [Q_PHASH_NEAR] =
	"SELECT a.sha256, a.pipeline_hash, a.phash, a.d FROM"
	" (SELECT id, sha256, pipeline_hash, phash,"
	"  pm_hamming(phash, ?1) AS d FROM assets"
	"  WHERE phash IS NOT NULL) a"
	" WHERE a.d <= ?2 AND a.id = (SELECT MAX(b.id) FROM assets b"
	"  WHERE b.sha256 = a.sha256 AND b.phash IS NOT NULL)"
	" ORDER BY a.d, a.sha256 LIMIT ?3",
    [Q_TITLE] = "SELECT title FROM items WHERE sha256 = ?1"
		" AND title IS NOT NULL ORDER BY id DESC LIMIT 1",
    [Q_STATS_JOBS] = "SELECT state, COUNT(*) FROM jobs GROUP BY state",
    [Q_STATS_DLQ] = "SELECT COUNT(*) FROM items WHERE state = 'failed'",
    [Q_PROV_ADD] =
	"INSERT INTO provider_days (provider, day, requests, found, empty,"
	" failed, results, latency_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
	" ON CONFLICT (provider, day) DO UPDATE SET"
	" requests = requests + ?3, found = found + ?4, empty = empty + ?5,"
	" failed = failed + ?6, results = results + ?7,"
	" latency_ms = latency_ms + ?8",
    [Q_PROV_DAYS] = "SELECT provider, day, requests, found, empty, failed,"
		    " results, latency_ms FROM provider_days WHERE day >= ?1"
		    " ORDER BY provider, day",
    [Q_URL_GET] = "SELECT etag, last_modified, sha256 FROM urls WHERE url = ?1",
    [Q_URL_PUT] = "INSERT INTO urls (url, etag, last_modified, sha256, updated)"
		  " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (url) DO UPDATE SET"
		  " etag = excluded.etag,"
		  " last_modified = excluded.last_modified,"
		  " sha256 = excluded.sha256, updated = excluded.updated",
    [Q_FAILED] = "SELECT i.job_id, i.key, i.image, i.code, i.error,"
		 " i.attempts, i.updated, j.catalog"
		 " FROM items i JOIN jobs j ON j.id = i.job_id"
		 " WHERE i.state = 'failed' AND (?1 = 0 OR i.job_id = ?1)"
		 " AND (?2 IS NULL OR i.code = ?2)"
		 " AND (?3 IS NULL OR i.key = ?3)"
		 " ORDER BY i.job_id, i.ordinal LIMIT ?4",
    [Q_RETRY_FAILED] = "DELETE FROM items WHERE state = 'failed'"
		       " AND (?1 = 0 OR job_id = ?1)"
		       " AND (?2 IS NULL OR code = ?2)"
		       " AND (?3 IS NULL OR key = ?3)",
    [Q_BEGIN] = "BEGIN IMMEDIATE",
    [Q_COMMIT] = "COMMIT",
    [Q_ROLLBACK] = "ROLLBACK",
    [Q_JOB_OPEN] = "INSERT INTO jobs (key, catalog, pipeline, pipeline_hash,"
		   " pipeline_json, out_dir, state, runs, created, updated)"
		   " VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'running', 1, ?7, ?7)"
		   " ON CONFLICT (key) DO UPDATE SET runs = runs + 1,"
		   " state = 'running', updated = excluded.updated,"
		   " finished = NULL"
		   " RETURNING id, runs",
    [Q_JOB_FINISH] = "UPDATE jobs SET state = ?2, updated = ?3,"
		     " finished = ?3 WHERE id = ?1",
    [Q_JOB_NET] = "UPDATE jobs SET http_items = ?2, http_hits = ?3"
		  " WHERE id = ?1",
    [Q_JOBS] = "WITH j AS (SELECT * FROM jobs WHERE (?2 = 0 OR id = ?2)"
	       " ORDER BY id DESC LIMIT ?1)"
	       " SELECT j.id, j.key, j.catalog, j.pipeline, j.pipeline_hash,"
	       " j.out_dir, j.state, j.runs, j.created, j.updated,"
	       " COUNT(i.id),"
	       " COUNT(i.id) FILTER (WHERE i.state = 'done'),"
	       " COUNT(i.id) FILTER (WHERE i.state = 'failed'),"
	       " COUNT(i.id) FILTER (WHERE i.state = 'done' AND i.duplicate),"
	       " j.name, j.error, j.http_items, j.http_hits,"
	       " j.enqueued IS NOT NULL, coalesce(j.enqueued, 0),"
	       " j.enqueue_total,"
	       " CASE WHEN j.enqueued IS NOT NULL THEN (SELECT COUNT(*)"
	       "  FROM queue q WHERE q.job_id = j.id AND q.state = 'queued')"
	       "  ELSE 0 END,"
	       " CASE WHEN j.enqueued IS NOT NULL THEN (SELECT COUNT(*)"
	       "  FROM queue q WHERE q.job_id = j.id AND q.state = 'claimed')"
	       "  ELSE 0 END,"
	       " CASE WHEN j.enqueued IS NOT NULL THEN (SELECT"
	       "  COUNT(DISTINCT q.lease_owner) FROM queue q"
	       "  WHERE q.job_id = j.id AND q.state = 'claimed') ELSE 0 END,"
	       " j.pipeline_json"
	       " FROM j LEFT JOIN items i ON i.job_id = j.id"
	       " GROUP BY j.id ORDER BY j.id DESC",
    [Q_JOB_FAILURES] = "SELECT code, MIN(error), COUNT(*) AS n FROM items"
		       " WHERE job_id = ?1 AND state = 'failed'"
		       " GROUP BY code ORDER BY n DESC, code LIMIT ?2",
    [Q_JOB_ADS] = "SELECT"
		  " COALESCE(SUM(json_extract(a.meta_json, '$.placeholder')"
		  " IS NOT NULL), 0),"
		  " COALESCE(SUM(json_extract(a.meta_json, '$.cutout.skipped')"
		  " = 0), 0),"
		  " COALESCE(SUM(json_extract(a.meta_json, '$.cutout.skipped')"
		  " = 1), 0)"
		  " FROM items i JOIN assets a ON a.id = i.asset_id"
		  " WHERE i.job_id = ?1 AND i.state = 'done'"
		  " AND i.duplicate = 0 AND json_valid(a.meta_json)",
    [Q_JOB_COUNTS] = "SELECT COUNT(*),"
		     " COUNT(*) FILTER (WHERE state = 'done'),"
		     " COUNT(*) FILTER (WHERE state = 'failed'),"
		     " COUNT(*) FILTER (WHERE state = 'done' AND duplicate)"
		     " FROM items WHERE job_id = ?1",
    [Q_ITEM_STATE] = "SELECT state, code FROM items"
		     " WHERE job_id = ?1 AND key = ?2",
    [Q_ASSET_EXISTS] = "SELECT 1 FROM assets"
		       " WHERE sha256 = ?1 AND pipeline_hash = ?2",
    [Q_ASSET_INSERT] =
	"INSERT OR IGNORE INTO assets (sha256, pipeline_hash, format,"
	" width, height, bytes, phash, colors_json, sharpness,"
	" meta_json, created, updated)"
	" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)",
    [Q_ASSET_ID] = "SELECT id FROM assets"
		   " WHERE sha256 = ?1 AND pipeline_hash = ?2",
    [Q_ASSET_FOR_JOB] = "SELECT a.id FROM jobs j JOIN assets a"
			" ON a.pipeline_hash = j.pipeline_hash"
			" WHERE j.id = ?1 AND a.sha256 = ?2",
    [Q_OUTPUT_INSERT] =
	"INSERT OR IGNORE INTO outputs (asset_id, name, path, format,"
	" width, height, bytes, sha256, created, updated)"
	" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
    [Q_ITEM_UPSERT] =
	"INSERT INTO items (job_id, key, ordinal, record_id, image,"
	" title, price, category, attrs, state, code, error, sha256,"
	" duplicate, attempts, latency_ms, asset_id, created, updated,"
	" candidates)"
	" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12,"
	" ?13, ?14, ?15, ?16, ?17, ?18, ?18, ?19)"
	" ON CONFLICT (job_id, key) DO UPDATE SET"
	" ordinal = excluded.ordinal, record_id = excluded.record_id,"
	" image = excluded.image, title = excluded.title,"
	" price = excluded.price, category = excluded.category,"
	" attrs = excluded.attrs, state = excluded.state,"
	" code = excluded.code, error = excluded.error,"
	" sha256 = excluded.sha256, duplicate = excluded.duplicate,"
	" attempts = excluded.attempts,"
	" latency_ms = excluded.latency_ms,"
	" asset_id = excluded.asset_id, updated = excluded.updated,"
	" candidates = excluded.candidates",
};

typedef struct sq_conn {
	sqlite3 *db;
	char *path;
	bool readonly;
	int version;		   /* user_version after open/migration */
	sqlite3_stmt *st[Q_COUNT]; /* prepared on first use; owned */
	bool put_failed;	   /* a put failed inside the open batch */
} sq_conn;

/* ---- helpers ---- */

static double now_unix(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Records the connection's last error. Busy/locked after the busy timeout
 * means another connection holds the write lock: PM_ERR_LOCKED. */
static pm_status sq_fail(sqlite3 *db, pm_err *err, const char *what)
{
	int rc = sqlite3_errcode(db) & 0xff;
	pm_status st = (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
			   ? PM_ERR_LOCKED
			   : PM_ERR_STORE;
	return pm_fail(err, st, "sqlite: %s: %s", what, sqlite3_errmsg(db));
}

/* Returns the cached statement q, prepared if needed, ready for binding. */
static sqlite3_stmt *q_get(sq_conn *c, int q, pm_err *err)
{
	if (!c->st[q]) {
		if (sqlite3_prepare_v3(c->db, queries[q], -1,
				       SQLITE_PREPARE_PERSISTENT, &c->st[q],
				       NULL) != SQLITE_OK) {
			sq_fail(c->db, err, "prepare");
			c->st[q] = NULL;
			return NULL;
		}
	}
	return c->st[q];
}

/* Ends a use of a cached statement: releases its snapshot and bindings. */
static void q_done(sqlite3_stmt *st)
{
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
}

static int b_text(sqlite3_stmt *st, int i, const char *s)
{
	return s ? sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC)
		 : sqlite3_bind_null(st, i);
}

static int b_i64(sqlite3_stmt *st, int i, int64_t v)
{
	return sqlite3_bind_int64(st, i, v);
}

static int b_dbl(sqlite3_stmt *st, int i, double v)
{
	return isnan(v) ? sqlite3_bind_null(st, i)
			: sqlite3_bind_double(st, i, v);
}

/* Runs a statement that returns no rows (or whose rows are ignored). */
static pm_status q_exec(sq_conn *c, int q, const char *what, pm_err *err)
{
	sqlite3_stmt *st = q_get(c, q, err);
	if (!st)
		return PM_ERR_STORE;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		;
	pm_status s = rc == SQLITE_DONE ? PM_OK : sq_fail(c->db, err, what);
	q_done(st);
	return s;
}

static const char *col_text(sqlite3_stmt *st, int i)
{
	return (const char *)sqlite3_column_text(st, i);
}

static pm_status read_user_version(sqlite3 *db, int *v, pm_err *err)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) !=
	    SQLITE_OK)
		return sq_fail(db, err, "read schema version");
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*v = sqlite3_column_int(st, 0);
	pm_status s =
	    rc == SQLITE_ROW ? PM_OK : sq_fail(db, err, "read schema version");
	sqlite3_finalize(st);
	return s;
}

static pm_status exec_sql(sqlite3 *db, const char *sql, const char *what,
			  pm_err *err)
{
	char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK)
		return PM_OK;
	pm_status s = sq_fail(db, err, what);
	if (msg)
		pm_fail(err, s, "sqlite: %s: %s", what, msg);
	sqlite3_free(msg);
	return s;
}

static pm_status too_new(int v, pm_err *err)
{
	return pm_fail(err, PM_ERR_STORE,
		       "database schema v%d is newer than this pixmill (v%d)",
		       v, N_MIGRATIONS);
}

/* Brings the schema to version target, one transaction per step. The
 * version is re-read inside each transaction, so two processes opening
 * the same new database at once do not both apply a step. */
static pm_status migrate(sq_conn *c, int target, pm_err *err)
{
	for (;;) {
		int v = 0;
		pm_status s = read_user_version(c->db, &v, err);
		if (s != PM_OK)
			return s;
		if (v > N_MIGRATIONS)
			return too_new(v, err);
		if (v >= target) {
			c->version = v;
			return PM_OK;
		}
		s = exec_sql(c->db, "BEGIN IMMEDIATE", "begin migration", err);
		if (s != PM_OK)
			return s;
		s = read_user_version(c->db, &v, err);
		if (s == PM_OK && v < target) {
			char what[64], pragma[64];
			snprintf(what, sizeof what, "migration to v%d", v + 1);
			snprintf(pragma, sizeof pragma,
				 "PRAGMA user_version = %d", v + 1);
			s = exec_sql(c->db, migrations[v], what, err);
			if (s == PM_OK)
				s = exec_sql(c->db, pragma, what, err);
		}
		if (s == PM_OK)
			s = exec_sql(c->db, "COMMIT", "commit migration", err);
		if (s != PM_OK) {
			sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
			return s;
		}
	}
}

/* ---- open / close ---- */

static void sq_close(void *conn)
{
	sq_conn *c = conn;
	if (!c)
		return;
	for (int i = 0; i < Q_COUNT; i++)
		sqlite3_finalize(c->st[i]);
	if (c->db && !c->readonly)
		sqlite3_exec(c->db, "PRAGMA optimize", NULL, NULL, NULL);
	sqlite3_close(c->db);
	free(c->path);
	free(c);
}

/* pm_hamming(a, b): the number of bits that differ between two 64-bit
 * integers (perceptual hashes); NULL if either is not an integer. */
static void hamming_fn(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	(void)argc;
	if (sqlite3_value_type(argv[0]) != SQLITE_INTEGER ||
	    sqlite3_value_type(argv[1]) != SQLITE_INTEGER) {
		sqlite3_result_null(ctx);
		return;
	}
	sqlite3_result_int(
	    ctx, __builtin_popcountll((uint64_t)sqlite3_value_int64(argv[0]) ^
				      (uint64_t)sqlite3_value_int64(argv[1])));
}

static pm_status sq_open_at(const char *path, bool readonly, int target,
			    void **out, pm_err *err)
{
	*out = NULL;
	struct stat sb;
	if (readonly && stat(path, &sb) != 0) {
		int e = errno;
		return pm_fail(err, e == ENOENT ? PM_ERR_NOT_FOUND : PM_ERR_IO,
			       "store %s: %s", path, strerror(e));
	}
	sq_conn *c = calloc(1, sizeof *c);
	if (!c || !(c->path = strdup(path))) {
		free(c);
		return pm_fail(err, PM_ERR_NOMEM, "store: out of memory");
	}
	c->readonly = readonly;
	int flags = SQLITE_OPEN_NOMUTEX |
		    (readonly ? SQLITE_OPEN_READONLY
			      : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
	pm_status s = PM_OK;
	if (sqlite3_open_v2(path, &c->db, flags, NULL) != SQLITE_OK) {
		if (c->db)
			s = pm_fail(err, PM_ERR_STORE, "store %s: %s", path,
				    sqlite3_errmsg(c->db));
		else
			s = pm_fail(err, PM_ERR_NOMEM, "store: out of memory");
		goto fail;
	}
	sqlite3_busy_timeout(c->db, 10000);
	if (sqlite3_create_function(
		c->db, "pm_hamming", 2,
		SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS, NULL,
		hamming_fn, NULL, NULL) != SQLITE_OK) {
		s = sq_fail(c->db, err, path);
		goto fail;
	}
	if (!readonly) {
		sqlite3_stmt *st;
		if (sqlite3_prepare_v2(c->db, "PRAGMA journal_mode = WAL", -1,
				       &st, NULL) != SQLITE_OK) {
			s = sq_fail(c->db, err, path);
			goto fail;
		}
		const char *mode = NULL;
		if (sqlite3_step(st) == SQLITE_ROW)
			mode = col_text(st, 0);
		bool wal = mode && strcmp(mode, "wal") == 0;
		bool mem = strcmp(path, ":memory:") == 0;
		if (!wal && !mem)
			s = mode ? pm_fail(err, PM_ERR_STORE,
					   "store %s: cannot use WAL "
					   "(journal mode is %s)",
					   path, mode)
				 : sq_fail(c->db, err, path);
		sqlite3_finalize(st);
		if (s != PM_OK)
			goto fail;
		s = exec_sql(c->db,
			     "PRAGMA synchronous = NORMAL;"
			     "PRAGMA foreign_keys = ON;",
			     path, err);
		if (s != PM_OK)
			goto fail;
		s = migrate(c, target, err);
		if (s != PM_OK)
			goto fail;
	} else {
		s = exec_sql(c->db, "PRAGMA foreign_keys = ON", path, err);
		if (s == PM_OK)
			s = read_user_version(c->db, &c->version, err);
		if (s != PM_OK)
			goto fail;
		if (c->version == 0) {
			s = pm_fail(err, PM_ERR_STORE,
				    "store %s: no pixmill schema", path);
			goto fail;
		}
		if (c->version > N_MIGRATIONS) {
			s = too_new(c->version, err);
			goto fail;
		}
		/* An older schema is readable: queries that need newer
		 * objects fail with PM_ERR_STORE when first prepared. */
	}
	*out = c;
	return PM_OK;
fail:
	sq_close(c);
	return s;
}

static pm_status sq_open(const char *path, bool readonly, void **out,
			 pm_err *err)
{
	return sq_open_at(path, readonly, N_MIGRATIONS, out, err);
}

int pm_sqlite_latest_version(void)
{
	return N_MIGRATIONS;
}

pm_status pm_sqlite_open_at(const char *path, int target, void **conn,
			    pm_err *err)
{
	if (target < 1 || target > N_MIGRATIONS)
		return pm_fail(err, PM_ERR_USAGE, "no schema version %d",
			       target);
	return sq_open_at(path, false, target, conn, err);
}

static int sq_schema_version(void *conn)
{
	return ((sq_conn *)conn)->version;
}

/* ---- jobs ---- */

static pm_status sq_job_open(void *conn, const pm_job_spec *spec,
			     int64_t *job_id, int *run_no, pm_err *err)
{
	sq_conn *c = conn;
	if (!spec || !spec->key)
		return pm_fail(err, PM_ERR_INTERNAL, "job_open: no job key");
	sqlite3_stmt *st = q_get(c, Q_JOB_OPEN, err);
	if (!st)
		return PM_ERR_STORE;
	pm_status s = PM_OK;
	if (b_text(st, 1, spec->key) || b_text(st, 2, spec->catalog) ||
	    b_text(st, 3, spec->pipeline) ||
	    b_text(st, 4, spec->pipeline_hash) ||
	    b_text(st, 5, spec->pipeline_json) ||
	    b_text(st, 6, spec->out_dir) || b_dbl(st, 7, now_unix())) {
		s = sq_fail(c->db, err, "open job");
		goto out;
	}
	if (sqlite3_step(st) != SQLITE_ROW) {
		s = sq_fail(c->db, err, "open job");
		goto out;
	}
	if (job_id)
		*job_id = sqlite3_column_int64(st, 0);
	if (run_no)
		*run_no = sqlite3_column_int(st, 1);
	/* Step to completion so the RETURNING statement finishes. */
	if (sqlite3_step(st) != SQLITE_DONE)
		s = sq_fail(c->db, err, "open job");
out:
	q_done(st);
	return s;
}

static pm_status sq_job_finish(void *conn, int64_t job_id, const char *state,
			       pm_err *err)
{
	sq_conn *c = conn;
	sqlite3_stmt *st = q_get(c, Q_JOB_FINISH, err);
	if (!st)
		return PM_ERR_STORE;
	pm_status s = PM_OK;
	if (b_i64(st, 1, job_id) || b_text(st, 2, state) ||
	    b_dbl(st, 3, now_unix()) || sqlite3_step(st) != SQLITE_DONE)
		s = sq_fail(c->db, err, "finish job");
	else if (sqlite3_changes(c->db) == 0)
		s = pm_fail(err, PM_ERR_NOT_FOUND, "no job %lld",
			    (long long)job_id);
	q_done(st);
	return s;
}

static pm_status sq_job_net(void *conn, int64_t job_id, int64_t http_items,
			    int64_t http_hits, pm_err *err)
{
	sq_conn *c = conn;
	sqlite3_stmt *st = q_get(c, Q_JOB_NET, err);
	pm_status s = PM_OK;

	if (!st)
		return PM_ERR_STORE;
	if (b_i64(st, 1, job_id) || b_i64(st, 2, http_items) ||
	    b_i64(st, 3, http_hits) || sqlite3_step(st) != SQLITE_DONE)
		s = sq_fail(c->db, err, "job http figures");
	q_done(st);
	return s;
}

static pm_status sq_jobs(void *conn, int64_t id, int limit,
			 int (*cb)(const pm_job_info *info, void *ud), void *ud,
			 pm_err *err)
{
	sq_conn *c = conn;
	sqlite3_stmt *st = q_get(c, Q_JOBS, err);
	if (!st)
		return PM_ERR_STORE;
	pm_status s = PM_OK;
	if (b_i64(st, 1, limit > 0 ? limit : -1) || b_i64(st, 2, id)) {
		s = sq_fail(c->db, err, "list jobs");
		goto out;
	}
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		pm_job_info ji = {
		    .id = sqlite3_column_int64(st, 0),
		    .key = col_text(st, 1),
		    .catalog = col_text(st, 2),
		    .pipeline = col_text(st, 3),
		    .pipeline_hash = col_text(st, 4),
		    .out_dir = col_text(st, 5),
		    .state = col_text(st, 6),
		    .runs = sqlite3_column_int(st, 7),
		    .created = sqlite3_column_double(st, 8),
		    .updated = sqlite3_column_double(st, 9),
		    .items = sqlite3_column_int64(st, 10),
		    .done = sqlite3_column_int64(st, 11),
		    .failed = sqlite3_column_int64(st, 12),
		    .duplicates = sqlite3_column_int64(st, 13),
		    .name = col_text(st, 14),
		    .error = col_text(st, 15),
		    .http_items = sqlite3_column_int64(st, 16),
		    .http_hits = sqlite3_column_int64(st, 17),
		    .queue =
			{
			    .on = sqlite3_column_int(st, 18) != 0,
			    .enqueued = sqlite3_column_int(st, 19) == 1,
			    .total = sqlite3_column_int64(st, 20),
			    .queued = sqlite3_column_int64(st, 21),
			    .claimed = sqlite3_column_int64(st, 22),
			    .workers = sqlite3_column_int64(st, 23),
			},
		    .pipeline_json = col_text(st, 24),
		};
		if (cb && cb(&ji, ud))
			goto out;
	}
	if (rc != SQLITE_DONE)
		s = sq_fail(c->db, err, "list jobs");
out:
	q_done(st);
	return s;
}

static pm_status sq_job_failures(void *conn, int64_t job_id, int limit,
				 int (*cb)(const char *code,
					   const char *example, int64_t count,
					   void *ud),
				 void *ud, pm_err *err)
{
	sq_conn *c = conn;
	sqlite3_stmt *st = q_get(c, Q_JOB_FAILURES, err);
	if (!st)
		return PM_ERR_STORE;
	pm_status s = PM_OK;
	if (b_i64(st, 1, job_id) || b_i64(st, 2, limit > 0 ? limit : -1)) {
		s = sq_fail(c->db, err, "job failures");
		goto out;
	}
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (cb && cb(col_text(st, 0), col_text(st, 1),
			     sqlite3_column_int64(st, 2), ud))
			goto out;
	}
	if (rc != SQLITE_DONE)
		s = sq_fail(c->db, err, "job failures");
out:
	q_done(st);
	return s;
}

static pm_status sq_job_counts(void *conn, int64_t job_id, int64_t *items,
			       int64_t *done, int64_t *failed,
			       int64_t *duplicates, pm_err *err)
{
	sq_conn *c = conn;
	sqlite3_stmt *st = q_get(c, Q_JOB_COUNTS, err);
	if (!st)
		return PM_ERR_STORE;
	pm_status s = PM_OK;
	if (b_i64(st, 1, job_id) || sqlite3_step(st) != SQLITE_ROW) {
		s = sq_fail(c->db, err, "job counts");
	} else {
		if (items)
			*items = sqlite3_column_int64(st, 0);
		if (done)
			*done = sqlite3_column_int64(st, 1);
		if (failed)
			*failed = sqlite3_column_int64(st, 2);
		if (duplicates)
			*duplicates = sqlite3_column_int64(st, 3);
	}
	q_done(st);
	return s;
}

static pm_status sq_job_ads(void *conn, int64_t job_id, int64_t out[3],
			    pm_err *err)
{
	sq_conn *c = conn;
	sqlite3_stmt *st = q_get(c, Q_JOB_ADS, err);
	pm_status s = PM_OK;

	if (!st)
		return PM_ERR_STORE;
	if (b_i64(st, 1, job_id) || sqlite3_step(st) != SQLITE_ROW)
		s = sq_fail(c->db, err, "job ads counts");
	else
		for (int i = 0; i < 3; i++)
			out[i] = sqlite3_column_int64(st, i);
	q_done(st);
	return s;
}

/* ---- items and assets ---- */

static pm_status sq_item_state(void *conn, int64_t job_id, const char *key,
			       pm_item_state *state, pm_status *code,
			       pm_err *err)
{
	sq_conn *c = conn;
	sqlite3_stmt *st = q_get(c, Q_ITEM_STATE, err);
	if (!st)
		return PM_ERR_STORE;
	pm_item_state is = PM_ITEM_NONE;
	pm_status cd = PM_OK, s = PM_OK;
	int rc = SQLITE_ERROR;
	if (b_i64(st, 1, job_id) || b_text(st, 2, key) ||
	    ((rc = sqlite3_step(st)) != SQLITE_ROW && rc != SQLITE_DONE)) {
		s = sq_fail(c->db, err, "item state");
	} else if (rc == SQLITE_ROW) {
		const char *sv = col_text(st, 0);
		if (sv && strcmp(sv, "done") == 0) {
			is = PM_ITEM_DONE;
		} else {
			is = PM_ITEM_FAILED;
			s = pm_store_code_parse(col_text(st, 1), &cd, err);
		}
	}
	q_done(st);
	if (s != PM_OK)
		return s;
	if (state)
		*state = is;
	if (code)
		*code = cd;
	return PM_OK;
}

static pm_status sq_url_get(void *conn, const char *url, pm_url_info *info,
			    bool *found, pm_err *err)
{
	sq_conn *c = conn;
	sqlite3_stmt *st = q_get(c, Q_URL_GET, err);
	pm_status s = PM_OK;
	int rc;

	*found = false;
	memset(info, 0, sizeof *info);
	if (!st)
		return PM_ERR_STORE;
	if (b_text(st, 1, url) ||
	    ((rc = sqlite3_step(st)) != SQLITE_ROW && rc != SQLITE_DONE)) {
		s = sq_fail(c->db, err, "URL lookup");
	} else if (rc == SQLITE_ROW) {
		const char *e = col_text(st, 0), *l = col_text(st, 1),
			   *h = col_text(st, 2);
		snprintf(info->etag, sizeof info->etag, "%s", e ? e : "");
		snprintf(info->last_modified, sizeof info->last_modified, "%s",
			 l ? l : "");
		snprintf(info->sha256, sizeof info->sha256, "%s", h ? h : "");
		*found = true;
	}
	q_done(st);
	return s;
}

static pm_status sq_asset_exists(void *conn, const char *sha256,
				 const char *pipeline_hash, bool *exists,
				 pm_err *err)
{
	sq_conn *c = conn;
	sqlite3_stmt *st = q_get(c, Q_ASSET_EXISTS, err);
	if (!st)
		return PM_ERR_STORE;
	pm_status s = PM_OK;
	int rc = SQLITE_ERROR;
	if (b_text(st, 1, sha256) || b_text(st, 2, pipeline_hash) ||
	    ((rc = sqlite3_step(st)) != SQLITE_ROW && rc != SQLITE_DONE))
		s = sq_fail(c->db, err, "asset exists");
	else if (exists)
		*exists = rc == SQLITE_ROW;
	q_done(st);
	return s;
}

/* Runs a single-row id lookup: *id = first column, or 0 if no row. */
static pm_status lookup_id(sq_conn *c, sqlite3_stmt *st, int64_t *id,
			   const char *what, pm_err *err)
{
	int rc = sqlite3_step(st);
	pm_status s = PM_OK;
	if (rc == SQLITE_ROW)
		*id = sqlite3_column_int64(st, 0);
	else if (rc == SQLITE_DONE)
		*id = 0;
	else
		s = sq_fail(c->db, err, what);
	q_done(st);
	return s;
}

/* Stores (or replaces) one vector as a float32 BLOB in native order. */
static pm_status put_embedding(sq_conn *c, const char *sha256,
			       const char *model, const float *vec, int dim,
			       double now, pm_err *err)
{
	sqlite3_stmt *st = q_get(c, Q_EMB_PUT, err);
	pm_status s = PM_OK;

	if (!st)
		return PM_ERR_STORE;
	if (b_text(st, 1, sha256) || b_text(st, 2, model) ||
	    b_i64(st, 3, dim) ||
	    sqlite3_bind_blob(st, 4, vec, (int)((size_t)dim * sizeof *vec),
			      SQLITE_STATIC) ||
	    b_dbl(st, 5, now) || sqlite3_step(st) != SQLITE_DONE)
		s = sq_fail(c->db, err, "store embedding");
	q_done(st);
	return s;
}

/* Inserts the asset and its outputs if absent; *asset_id = its row id. */
static pm_status put_asset(sq_conn *c, const pm_asset_rec *a, double now,
			   int64_t *asset_id, pm_err *err)
{
	sqlite3_stmt *st = q_get(c, Q_ASSET_INSERT, err);
	if (!st)
		return PM_ERR_STORE;
	int64_t ph = 0;
	memcpy(&ph, &a->phash, sizeof ph); /* same bits, see top */
	int rc = b_text(st, 1, a->sha256) || b_text(st, 2, a->pipeline_hash) ||
		 b_text(st, 3, a->format) || b_i64(st, 4, a->width) ||
		 b_i64(st, 5, a->height) || b_i64(st, 6, a->bytes) ||
		 (a->has_phash ? b_i64(st, 7, ph) : sqlite3_bind_null(st, 7)) ||
		 b_text(st, 8, a->colors_json) || b_dbl(st, 9, a->sharpness) ||
		 b_text(st, 10, a->meta_json) || b_dbl(st, 11, now);
	if (rc || sqlite3_step(st) != SQLITE_DONE) {
		pm_status s = sq_fail(c->db, err, "insert asset");
		q_done(st);
		return s;
	}
	q_done(st);

	st = q_get(c, Q_ASSET_ID, err);
	if (!st)
		return PM_ERR_STORE;
	if (b_text(st, 1, a->sha256) || b_text(st, 2, a->pipeline_hash)) {
		pm_status s = sq_fail(c->db, err, "find asset");
		q_done(st);
		return s;
	}
	pm_status s = lookup_id(c, st, asset_id, "find asset", err);
	if (s != PM_OK)
		return s;
	if (*asset_id == 0)
		return pm_fail(err, PM_ERR_INTERNAL,
			       "asset %s vanished after insert", a->sha256);
	if (a->embedding && a->embedding_dim > 0 && a->embedding_model) {
		s = put_embedding(c, a->sha256, a->embedding_model,
				  a->embedding, a->embedding_dim, now, err);
		if (s != PM_OK)
			return s;
	}

	for (int i = 0; i < a->n_outputs; i++) {
		const pm_output_rec *o = &a->outputs[i];
		st = q_get(c, Q_OUTPUT_INSERT, err);
		if (!st)
			return PM_ERR_STORE;
		rc = b_i64(st, 1, *asset_id) || b_text(st, 2, o->name) ||
		     b_text(st, 3, o->path) || b_text(st, 4, o->format) ||
		     b_i64(st, 5, o->width) || b_i64(st, 6, o->height) ||
		     b_i64(st, 7, o->bytes) || b_text(st, 8, o->sha256) ||
		     b_dbl(st, 9, now);
		if (rc || sqlite3_step(st) != SQLITE_DONE) {
			s = sq_fail(c->db, err, "insert output");
			q_done(st);
			return s;
		}
		q_done(st);
	}
	return PM_OK;
}

static pm_status put_item_body(sq_conn *c, const pm_item_rec *it, pm_err *err)
{
	double now = now_unix();
	bool done = it->status == PM_OK;
	int64_t asset_id = 0;
	pm_status s;

	if (it->asset) {
		s = put_asset(c, it->asset, now, &asset_id, err);
		if (s != PM_OK)
			return s;
	} else if (done && it->sha256) {
		/* A duplicate: the asset of (sha256, job's pipeline hash). */
		sqlite3_stmt *st = q_get(c, Q_ASSET_FOR_JOB, err);
		if (!st)
			return PM_ERR_STORE;
		if (b_i64(st, 1, it->job_id) || b_text(st, 2, it->sha256)) {
			s = sq_fail(c->db, err, "find asset");
			q_done(st);
			return s;
		}
		s = lookup_id(c, st, &asset_id, "find asset", err);
		if (s != PM_OK)
			return s;
	}

	sqlite3_stmt *st = q_get(c, Q_ITEM_UPSERT, err);
	if (!st)
		return PM_ERR_STORE;
	int rc = b_i64(st, 1, it->job_id) || b_text(st, 2, it->key) ||
		 b_i64(st, 3, (int64_t)it->ordinal) || b_text(st, 4, it->id) ||
		 b_text(st, 5, it->image) || b_text(st, 6, it->title) ||
		 b_text(st, 7, it->price) || b_text(st, 8, it->category) ||
		 b_text(st, 9, it->attrs_json) ||
		 b_text(st, 10, done ? "done" : "failed") ||
		 b_text(st, 11, pm_status_code(it->status)) ||
		 b_text(st, 12, it->error) || b_text(st, 13, it->sha256) ||
		 b_i64(st, 14, it->duplicate ? 1 : 0) ||
		 b_i64(st, 15, it->attempts) || b_dbl(st, 16, it->latency_ms) ||
		 (done && asset_id ? b_i64(st, 17, asset_id)
				   : sqlite3_bind_null(st, 17)) ||
		 b_dbl(st, 18, now) || b_text(st, 19, it->candidates_json);
	if (rc || sqlite3_step(st) != SQLITE_DONE)
		s = sq_fail(c->db, err, "put item");
	else
		s = PM_OK;
	q_done(st);
	if (s == PM_OK && done && it->sha256 && it->image &&
	    (it->url_etag || it->url_last_modified)) {
		st = q_get(c, Q_URL_PUT, err);
		if (!st)
			return PM_ERR_STORE;
		if (b_text(st, 1, it->image) || b_text(st, 2, it->url_etag) ||
		    b_text(st, 3, it->url_last_modified) ||
		    b_text(st, 4, it->sha256) || b_dbl(st, 5, now) ||
		    sqlite3_step(st) != SQLITE_DONE)
			s = sq_fail(c->db, err, "remember URL");
		q_done(st);
	}
	return s;
}

/* Appends one row to queue_events (worker, detail may be NULL). */
static pm_status q_event(sq_conn *c, int64_t queue_id, int64_t job_id,
			 const char *key, const char *event, const char *worker,
			 double at, const char *detail, pm_err *err)
{
	sqlite3_stmt *st = q_get(c, Q_Q_EVENT, err);
	pm_status s = PM_OK;

	if (!st)
		return PM_ERR_STORE;
	if (b_i64(st, 1, queue_id) || b_i64(st, 2, job_id) ||
	    b_text(st, 3, key) || b_text(st, 4, event) ||
	    b_text(st, 5, worker) || b_dbl(st, 6, at) ||
	    b_text(st, 7, detail) || sqlite3_step(st) != SQLITE_DONE)
		s = sq_fail(c->db, err, "queue event");
	q_done(st);
	return s;
}

/* A queued item's result: marks its queue row done or failed if
 * it->lease_owner still holds it (PM_ERR_CONFLICT, nothing written, if
 * not: a 0-row UPDATE, so the transaction stays usable), with its
 * event. */
static pm_status queue_complete(sq_conn *c, const pm_item_rec *it, pm_err *err)
{
	sqlite3_stmt *st = q_get(c, Q_Q_COMPLETE, err);
	bool done = it->status == PM_OK;
	double now = now_unix();
	pm_status s = PM_OK;
	char detail[1024];

	if (!st)
		return PM_ERR_STORE;
	if (!it->lease_owner)
		return pm_fail(err, PM_ERR_CONFLICT,
			       "put_item %s: queue row %lld without a lease "
			       "owner",
			       it->key, (long long)it->queue_id);
	if (b_i64(st, 1, it->queue_id) || b_text(st, 2, it->lease_owner) ||
	    b_text(st, 3, done ? "done" : "failed") ||
	    b_i64(st, 4, it->job_id) || b_text(st, 5, it->key) ||
	    b_dbl(st, 6, now) || sqlite3_step(st) != SQLITE_DONE)
		s = sq_fail(c->db, err, "complete queue row");
	else if (sqlite3_changes(c->db) == 0)
		s = pm_fail(err, PM_ERR_CONFLICT,
			    "put_item %s: worker %s no longer holds queue row "
			    "%lld (its lease expired)",
			    it->key, it->lease_owner, (long long)it->queue_id);
	q_done(st);
	if (s != PM_OK)
		return s;
	if (!done)
		snprintf(detail, sizeof detail, "%s%s%s",
			 pm_status_code(it->status), it->error ? ": " : "",
			 it->error ? it->error : "");
	return q_event(c, it->queue_id, it->job_id, it->key,
		       done ? "done" : "failed", it->lease_owner, now,
		       done ? NULL : detail, err);
}

/* Outside a batch a put is its own transaction. Inside one, a failed put
 * may leave part of its rows (e.g. the asset without the item), so it
 * poisons the batch: commit then rolls back and fails. (A savepoint per put
 * would avoid that, but makes FTS5 flush its index at every put: 3x
 * slower.) A put whose queue claim was lost (PM_ERR_CONFLICT) wrote
 * nothing and leaves the batch usable. */
static pm_status sq_put_item(void *conn, const pm_item_rec *it, pm_err *err)
{
	sq_conn *c = conn;
	bool own_tx = sqlite3_get_autocommit(c->db) != 0;
	pm_status s = PM_OK;
	if (!it || !it->key)
		s = pm_fail(err, PM_ERR_INTERNAL, "put_item: no item key");
	else if ((unsigned)it->status >= PM_STATUS_COUNT)
		s = pm_fail(err, PM_ERR_INTERNAL, "put_item %s: bad status %d",
			    it->key, (int)it->status);
	else if (own_tx)
		s = q_exec(c, Q_BEGIN, "put item", err);
	if (s == PM_OK && it->queue_id != 0)
		s = queue_complete(c, it, err);
	if (s == PM_OK)
		s = put_item_body(c, it, err);
	if (s == PM_OK && own_tx)
		s = q_exec(c, Q_COMMIT, "put item", err);
	if (s != PM_OK) {
		if (!own_tx && s != PM_ERR_CONFLICT)
			c->put_failed = true;
		else if (own_tx && !sqlite3_get_autocommit(c->db))
			q_exec(c, Q_ROLLBACK, "rollback", NULL);
	}
	return s;
}

/* ---- transactions ---- */

static pm_status sq_begin(void *conn, pm_err *err)
{
	sq_conn *c = conn;
	c->put_failed = false;
	return q_exec(c, Q_BEGIN, "begin", err);
}

/* A failed commit leaves nothing: the batch is rolled back (calling
 * rollback afterwards is harmless). */
static pm_status sq_commit(void *conn, pm_err *err)
{
	sq_conn *c = conn;
	pm_status s;
	if (c->put_failed)
		s = pm_fail(err, PM_ERR_STORE,
			    "batch rolled back: a put in it failed");
	else
		s = q_exec(c, Q_COMMIT, "commit", err);
	if (s != PM_OK && !sqlite3_get_autocommit(c->db))
		q_exec(c, Q_ROLLBACK, "rollback", NULL);
	c->put_failed = false;
	return s;
}

static void sq_rollback(void *conn)
{
	sq_conn *c = conn;
	c->put_failed = false;
	if (!sqlite3_get_autocommit(c->db))
		q_exec(c, Q_ROLLBACK, "rollback", NULL);
}

static pm_status sq_failed(void *conn, int64_t job_id, const char *code,
			   const char *key, int limit,
			   int (*cb)(const pm_failed_info *info, void *ud),
			   void *ud, pm_err *err)
{
	sq_conn *c = conn;
	sqlite3_stmt *st = q_get(c, Q_FAILED, err);
	pm_status s = PM_OK;
	int rc;

	if (!st)
		return PM_ERR_STORE;
	if (b_i64(st, 1, job_id) || b_text(st, 2, code) || b_text(st, 3, key) ||
	    b_i64(st, 4, limit > 0 ? limit : -1)) {
		s = sq_fail(c->db, err, "failed items");
		goto out;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		pm_failed_info fi = {
		    .job_id = sqlite3_column_int64(st, 0),
		    .key = col_text(st, 1),
		    .image = col_text(st, 2),
		    .code = col_text(st, 3),
		    .error = col_text(st, 4),
		    .attempts = sqlite3_column_int(st, 5),
		    .updated = sqlite3_column_double(st, 6),
		    .catalog = col_text(st, 7),
		};
		if (cb && cb(&fi, ud))
			goto out;
	}
	if (rc != SQLITE_DONE)
		s = sq_fail(c->db, err, "failed items");
out:
	q_done(st);
	return s;
}

/* Forgets the failed items; their queue rows (a queued job's) go back to
 * queued with a "retry" event and their job, if done, back to running;
 * all in one transaction (the open batch's, if there is one). */
static pm_status sq_retry_failed(void *conn, int64_t job_id, const char *code,
				 const char *key, int64_t *n, pm_err *err)
{
	static const int steps[] = {Q_RETRY_Q_EV, Q_RETRY_Q_JOBS, Q_RETRY_Q,
				    Q_RETRY_FAILED};
	sq_conn *c = conn;
	bool own_tx = sqlite3_get_autocommit(c->db) != 0;
	double now = now_unix();
	pm_status s = PM_OK;

	*n = 0;
	if (own_tx && (s = q_exec(c, Q_BEGIN, "retry failed items", err)))
		return s;
	for (size_t i = 0; s == PM_OK && i < sizeof steps / sizeof *steps;
	     i++) {
		sqlite3_stmt *st = q_get(c, steps[i], err);
		if (!st) {
			s = PM_ERR_STORE;
			break;
		}
		if (b_i64(st, 1, job_id) || b_text(st, 2, code) ||
		    b_text(st, 3, key) ||
		    (steps[i] != Q_RETRY_FAILED && b_dbl(st, 4, now)) ||
		    sqlite3_step(st) != SQLITE_DONE)
			s = sq_fail(c->db, err, "retry failed items");
		else if (steps[i] == Q_RETRY_FAILED)
			*n = sqlite3_changes64(c->db);
		q_done(st);
	}
	if (own_tx && s == PM_OK)
		s = q_exec(c, Q_COMMIT, "retry failed items", err);
	if (s != PM_OK) {
		*n = 0;
		if (own_tx && !sqlite3_get_autocommit(c->db))
			q_exec(c, Q_ROLLBACK, "rollback", NULL);
		else if (!own_tx)
			c->put_failed = true;
	}
	return s;
}

/* ---- jobs submitted over HTTP, browsing and search ---- */

static pm_status sq_job_create(void *conn, const pm_job_spec *spec,
			       const char *name, int64_t *job_id, pm_err *err)
{
	sq_conn *c = conn;
	sqlite3_stmt *st = q_get(c, Q_JOB_CREATE, err);
	pm_status s = PM_OK;

	if (!st)
		return PM_ERR_STORE;
	if (b_text(st, 1, spec->key) || b_text(st, 2, spec->catalog) ||
	    b_text(st, 3, spec->pipeline) ||
	    b_text(st, 4, spec->pipeline_hash) ||
	    b_text(st, 5, spec->pipeline_json) ||
	    b_text(st, 6, spec->out_dir) || b_dbl(st, 7, now_unix()) ||
	    b_text(st, 8, name) || sqlite3_step(st) != SQLITE_ROW) {
		s = sq_fail(c->db, err, "create job");
		goto out;
	}
	*job_id = sqlite3_column_int64(st, 0);
	if (sqlite3_step(st) != SQLITE_DONE)
		s = sq_fail(c->db, err, "create job");
out:
	q_done(st);
	return s;
}

static pm_status tx_open(sq_conn *c, bool *own, const char *what, pm_err *err);
static pm_status tx_close(sq_conn *c, bool own, pm_status s, const char *what,
			  pm_err *err);

static pm_status sq_job_state(void *conn, int64_t job_id, const char *state,
			      const char *error, bool final, pm_err *err)
{
	sq_conn *c = conn;
	bool cancel = state && strcmp(state, "cancelled") == 0, own = false;
	pm_status s = cancel ? tx_open(c, &own, "cancel job", err) : PM_OK;
	sqlite3_stmt *st = s ? NULL : q_get(c, Q_JOB_STATE, err);

	if (s)
		return s;
	if (!st) {
		s = PM_ERR_STORE;
		goto out;
	}
	if (b_i64(st, 1, job_id) || b_text(st, 2, state) ||
	    b_text(st, 3, error) || b_dbl(st, 4, now_unix()) ||
	    b_i64(st, 5, final) || sqlite3_step(st) != SQLITE_DONE)
		s = sq_fail(c->db, err, "set job state");
	else if (sqlite3_changes(c->db) == 0)
		s = pm_fail(err, PM_ERR_NOT_FOUND, "no job %lld",
			    (long long)job_id);
	q_done(st);
	/* a cancelled job's unclaimed queue rows go with it: no worker
	 * would claim them */
	if (s == PM_OK && cancel) {
		if (!(st = q_get(c, Q_CANCEL_Q, err)))
			s = PM_ERR_STORE;
		else if (b_i64(st, 1, job_id) ||
			 sqlite3_step(st) != SQLITE_DONE)
			s = sq_fail(c->db, err, "cancel job");
		if (st)
			q_done(st);
	}
out:
	return cancel ? tx_close(c, own, s, "cancel job", err) : s;
}

static pm_status sq_items(void *conn, int64_t job_id, const char *state,
			  int64_t after, int limit,
			  int (*cb)(const pm_item_info *info, void *ud),
			  void *ud, pm_err *err)
{
	sq_conn *c = conn;
	sqlite3_stmt *st = q_get(c, Q_ITEMS, err);
	pm_status s = PM_OK;
	int rc;

	if (!st)
		return PM_ERR_STORE;
	if (b_i64(st, 1, job_id) || b_text(st, 2, state) ||
	    b_i64(st, 3, after) || b_i64(st, 4, limit > 0 ? limit : -1)) {
		s = sq_fail(c->db, err, "list items");
		goto out;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		pm_item_info ii = {
		    .key = col_text(st, 0),
		    .ordinal = sqlite3_column_int64(st, 1),
		    .id = col_text(st, 2),
		    .title = col_text(st, 3),
		    .image = col_text(st, 4),
		    .state = col_text(st, 5),
		    .code = col_text(st, 6),
		    .error = col_text(st, 7),
		    .sha256 = col_text(st, 8),
		    .duplicate = sqlite3_column_int(st, 9) != 0,
		    .attempts = sqlite3_column_int(st, 10),
		    .latency_ms = sqlite3_column_double(st, 11),
		    .pipeline_hash = col_text(st, 12),
		    .candidates = col_text(st, 13),
		};
		if (cb && cb(&ii, ud))
			goto out;
	}
	if (rc != SQLITE_DONE)
		s = sq_fail(c->db, err, "list items");
out:
	q_done(st);
	return s;
}

static void output_info(sqlite3_stmt *st, int at, pm_output_info *oi)
{
	oi->name = col_text(st, at);
	oi->path = col_text(st, at + 1);
	oi->format = col_text(st, at + 2);
	oi->width = sqlite3_column_int(st, at + 3);
	oi->height = sqlite3_column_int(st, at + 4);
	oi->bytes = sqlite3_column_int64(st, at + 5);
	oi->sha256 = col_text(st, at + 6);
	oi->pipeline_hash = col_text(st, at + 7);
}

static pm_status sq_outputs(void *conn, const char *sha256,
			    const char *pipeline_hash, const char *name,
			    int (*cb)(const pm_output_info *info, void *ud),
			    void *ud, pm_err *err)
{
	sq_conn *c = conn;
	sqlite3_stmt *st = q_get(c, Q_OUTPUTS, err);
	pm_status s = PM_OK;
	int rc;

	if (!st)
		return PM_ERR_STORE;
	if (b_text(st, 1, sha256) || b_text(st, 2, pipeline_hash) ||
	    b_text(st, 3, name)) {
		s = sq_fail(c->db, err, "list outputs");
		goto out;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		pm_output_info oi = {.asset_sha256 = sha256};
		output_info(st, 0, &oi);
		if (cb && cb(&oi, ud))
			goto out;
	}
	if (rc != SQLITE_DONE)
		s = sq_fail(c->db, err, "list outputs");
out:
	q_done(st);
	return s;
}

static pm_status sq_recent(void *conn, int limit,
			   int (*cb)(const pm_output_info *info, void *ud),
			   void *ud, pm_err *err)
{
	sq_conn *c = conn;
	sqlite3_stmt *st = q_get(c, Q_RECENT, err);
	pm_status s = PM_OK;
	int rc;

	if (!st)
		return PM_ERR_STORE;
	if (b_i64(st, 1, limit > 0 ? limit : -1)) {
		s = sq_fail(c->db, err, "recent outputs");
		goto out;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		pm_output_info oi = {.asset_sha256 = col_text(st, 0),
				     .title = col_text(st, 9)};
		output_info(st, 1, &oi);
		if (cb && cb(&oi, ud))
			goto out;
	}
	if (rc != SQLITE_DONE)
		s = sq_fail(c->db, err, "recent outputs");
out:
	q_done(st);
	return s;
}

static pm_status sq_search(void *conn, const pm_text_query *q,
			   int (*cb)(const pm_search_hit *hit, void *ud),
			   void *ud, pm_err *err)
{
	sq_conn *c = conn;
	sqlite3_stmt *st = q_get(c, Q_SEARCH, err);
	pm_status s = PM_OK;
	int rc;

	if (!st)
		return PM_ERR_STORE;
	if (b_text(st, 1, q->match) ||
	    b_i64(st, 2, q->limit > 0 ? q->limit : -1) ||
	    b_i64(st, 3, q->job_id) || b_text(st, 4, q->category) ||
	    b_text(st, 5, q->mark_open ? q->mark_open : "[") ||
	    b_text(st, 6, q->mark_close ? q->mark_close : "]") ||
	    b_i64(st, 7, q->has_text ? 1 : 0)) {
		s = sq_fail(c->db, err, "search");
		goto out;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		pm_search_hit h = {
		    .job_id = sqlite3_column_int64(st, 0),
		    .key = col_text(st, 1),
		    .title = col_text(st, 2),
		    .sha256 = col_text(st, 3),
		    .image = col_text(st, 4),
		    .score = sqlite3_column_double(st, 5),
		    .pipeline_hash = col_text(st, 6),
		    .snippet = col_text(st, 7),
		    .category = col_text(st, 8),
		    .has_text = sqlite3_column_int(st, 9) != 0,
		    .id = col_text(st, 10),
		};
		if (cb && cb(&h, ud))
			goto out;
	}
	if (rc != SQLITE_DONE)
		s = sq_fail(c->db, err, "search");
out:
	q_done(st);
	return s;
}

static pm_status sq_images(void *conn, const pm_image_query *q,
			   int (*cb)(const pm_image_info *info, void *ud),
			   void *ud, pm_err *err)
{
	sq_conn *c = conn;
	sqlite3_stmt *st = q_get(c,
				 q->sha256  ? Q_IMAGE_ASSETS
				 : q->match ? Q_IMAGES_MATCH
					    : Q_IMAGES,
				 err);
	pm_status s = PM_OK;
	int rc;

	if (!st)
		return PM_ERR_STORE;
	if (b_i64(st, 1, q->sha256 ? 0 : q->job_id) ||
	    b_text(st, 2, q->sha256 ? q->sha256 : q->match) ||
	    b_text(st, 3, q->sha256 ? NULL : q->format) ||
	    b_i64(st, 4, !q->sha256 && q->has_text) ||
	    b_i64(st, 5, !q->sha256 && q->has_caption) ||
	    b_text(st, 6, q->sha256 ? NULL : q->tag)) {
		s = sq_fail(c->db, err, "images");
		goto out;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		pm_image_info in = {
		    .sha256 = col_text(st, 0),
		    .pipeline_hash = col_text(st, 1),
		    .format = col_text(st, 2),
		    .width = sqlite3_column_int(st, 3),
		    .height = sqlite3_column_int(st, 4),
		    .bytes = sqlite3_column_int64(st, 5),
		    .phash = (uint64_t)sqlite3_column_int64(st, 6),
		    .has_phash = sqlite3_column_type(st, 6) != SQLITE_NULL,
		    .colors_json = col_text(st, 7),
		    .sharpness = sqlite3_column_type(st, 8) == SQLITE_NULL
				     ? NAN
				     : sqlite3_column_double(st, 8),
		    .meta_json = col_text(st, 9),
		    .created = sqlite3_column_double(st, 10),
		    .title = col_text(st, 11),
		    .items = sqlite3_column_int64(st, 12),
		    .image = col_text(st, 13),
		    .has_text = sqlite3_column_int(st, 14) != 0,
		    .score = sqlite3_column_double(st, 15),
		};
		if (cb && cb(&in, ud))
			goto out;
	}
	if (rc != SQLITE_DONE)
		s = sq_fail(c->db, err, "images");
out:
	q_done(st);
	return s;
}

static pm_status
sq_phash_near(void *conn, uint64_t phash, int max_distance, int limit,
	      int (*cb)(const char *sha256, const char *pipeline_hash,
			uint64_t phash, int distance, void *ud),
	      void *ud, pm_err *err)
{
	sq_conn *c = conn;
	sqlite3_stmt *st = q_get(c, Q_PHASH_NEAR, err);
	pm_status s = PM_OK;
	int rc;

	if (!st)
		return PM_ERR_STORE;
	if (b_i64(st, 1, (int64_t)phash) || b_i64(st, 2, max_distance) ||
	    b_i64(st, 3, limit)) {
		s = sq_fail(c->db, err, "hash search");
		goto out;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (cb && cb(col_text(st, 0), col_text(st, 1),
			     (uint64_t)sqlite3_column_int64(st, 2),
			     sqlite3_column_int(st, 3), ud))
			goto out;
	}
	if (rc != SQLITE_DONE)
		s = sq_fail(c->db, err, "hash search");
out:
	q_done(st);
	return s;
}

static pm_status sq_phashes(void *conn,
			    int (*cb)(const char *sha256,
				      const char *pipeline_hash, uint64_t phash,
				      void *ud),
			    void *ud, pm_err *err)
{
	sq_conn *c = conn;
	sqlite3_stmt *st = q_get(c, Q_PHASH, err);
	pm_status s = PM_OK;
	int rc;

	if (!st)
		return PM_ERR_STORE;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (cb && cb(col_text(st, 0), col_text(st, 1),
			     (uint64_t)sqlite3_column_int64(st, 2), ud))
			goto out;
	}
	if (rc != SQLITE_DONE)
		s = sq_fail(c->db, err, "scan hashes");
out:
	q_done(st);
	return s;
}

static pm_status sq_embeddings(void *conn, const char *model,
			       int (*cb)(const char *sha256, const float *vec,
					 int dim, void *ud),
			       void *ud, pm_err *err)
{
	sq_conn *c = conn;
	sqlite3_stmt *st = q_get(c, Q_EMB_ALL, err);
	pm_status s = PM_OK;
	float *buf = NULL;
	int cap = 0, rc;

	if (!st)
		return PM_ERR_STORE;
	if (b_text(st, 1, model)) {
		s = sq_fail(c->db, err, "embeddings");
		goto out;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		int dim = sqlite3_column_int(st, 1);
		const void *blob = sqlite3_column_blob(st, 2);
		int n = sqlite3_column_bytes(st, 2);
		if (dim < 1 || !blob || n != dim * (int)sizeof(float))
			continue; /* not a vector of this shape: skip it */
		if (dim > cap) {
			float *nb = realloc(buf, (size_t)dim * sizeof *buf);
			if (!nb) {
				s = pm_fail(err, PM_ERR_NOMEM, "out of memory");
				goto out;
			}
			buf = nb;
			cap = dim;
		}
		memcpy(buf, blob, (size_t)n); /* the blob may be unaligned */
		if (cb && cb(col_text(st, 0), buf, dim, ud))
			goto out;
	}
	if (rc != SQLITE_DONE)
		s = sq_fail(c->db, err, "embeddings");
out:
	free(buf);
	q_done(st);
	return s;
}

static pm_status sq_embeddings_stamp(void *conn, int64_t *stamp, pm_err *err)
{
	sq_conn *c = conn;
	sqlite3_stmt *st = q_get(c, Q_EMB_STAMP, err);
	pm_status s = PM_OK;

	*stamp = 0;
	if (!st)
		return PM_ERR_STORE;
	if (sqlite3_step(st) == SQLITE_ROW)
		*stamp = sqlite3_column_int64(st, 0);
	else
		s = sq_fail(c->db, err, "embeddings stamp");
	q_done(st);
	return s;
}

static pm_status sq_embedding_get(void *conn, const char *sha256,
				  const char *model, float *out, int cap,
				  int *dim, pm_err *err)
{
	sq_conn *c = conn;
	sqlite3_stmt *st = q_get(c, Q_EMB_GET, err);
	pm_status s = PM_OK;
	int rc;

	*dim = 0;
	if (!st)
		return PM_ERR_STORE;
	if (b_text(st, 1, model) || b_text(st, 2, sha256)) {
		s = sq_fail(c->db, err, "embedding");
		goto out;
	}
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		int d = sqlite3_column_int(st, 0);
		const void *blob = sqlite3_column_blob(st, 1);
		int n = sqlite3_column_bytes(st, 1);
		if (d < 1 || !blob || n != d * (int)sizeof(float))
			s = pm_fail(err, PM_ERR_STORE,
				    "embedding of %s: malformed", sha256);
		else if (d > cap)
			s = pm_fail(err, PM_ERR_INTERNAL,
				    "embedding of %s: %d floats, room for %d",
				    sha256, d, cap);
		else {
			memcpy(out, blob, (size_t)n);
			*dim = d;
		}
	} else if (rc != SQLITE_DONE) {
		s = sq_fail(c->db, err, "embedding");
	}
out:
	q_done(st);
	return s;
}

static pm_status sq_embedding_put(void *conn, const char *sha256,
				  const char *model, const float *vec, int dim,
				  pm_err *err)
{
	return put_embedding(conn, sha256, model, vec, dim, now_unix(), err);
}

static pm_status sq_asset_items(void *conn, int64_t job_id, const char *sha256,
				const char *ref,
				int (*cb)(const pm_asset_item *it, void *ud),
				void *ud, pm_err *err)
{
	sq_conn *c = conn;
	int q = ref	 ? Q_FIND_ITEMS
		: sha256 ? Q_ASSET_ITEMS_SHA
			 : Q_ASSET_ITEMS_ALL;
	sqlite3_stmt *st = q_get(c, q, err);
	pm_status s = PM_OK;
	int rc;

	if (!st)
		return PM_ERR_STORE;
	if (b_i64(st, 1, job_id) ||
	    (q != Q_ASSET_ITEMS_ALL && b_text(st, 2, ref ? ref : sha256))) {
		s = sq_fail(c->db, err, "items of assets");
		goto out;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		pm_asset_item it = {
		    .job_id = sqlite3_column_int64(st, 0),
		    .key = col_text(st, 1),
		    .id = col_text(st, 2),
		    .image = col_text(st, 3),
		    .title = col_text(st, 4),
		    .category = col_text(st, 5),
		    .sha256 = col_text(st, 6),
		    .width = sqlite3_column_int(st, 7),
		    .height = sqlite3_column_int(st, 8),
		    .bytes = sqlite3_column_int64(st, 9),
		    .phash = (uint64_t)sqlite3_column_int64(st, 10),
		    .has_phash = sqlite3_column_type(st, 10) != SQLITE_NULL,
		    .sharpness = sqlite3_column_type(st, 11) == SQLITE_NULL
				     ? NAN
				     : sqlite3_column_double(st, 11),
		};
		if (cb && cb(&it, ud))
			goto out;
	}
	if (rc != SQLITE_DONE)
		s = sq_fail(c->db, err, "items of assets");
out:
	q_done(st);
	return s;
}

static pm_status sq_title(void *conn, const char *sha256, char *buf,
			  size_t size, pm_err *err)
{
	sq_conn *c = conn;
	sqlite3_stmt *st = q_get(c, Q_TITLE, err);
	pm_status s = PM_OK;
	int rc;

	buf[0] = 0;
	if (!st)
		return PM_ERR_STORE;
	if (b_text(st, 1, sha256)) {
		s = sq_fail(c->db, err, "title");
		goto out;
	}
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		snprintf(buf, size, "%s", col_text(st, 0));
	else if (rc != SQLITE_DONE)
		s = sq_fail(c->db, err, "title");
out:
	q_done(st);
	return s;
}

static pm_status sq_stats(void *conn,
			  int (*cb)(const char *state, int64_t n, void *ud),
			  void *ud, int64_t *dlq, pm_err *err)
{
	sq_conn *c = conn;
	sqlite3_stmt *st = q_get(c, Q_STATS_JOBS, err);
	pm_status s = PM_OK;
	int rc;

	if (!st)
		return PM_ERR_STORE;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		if (cb)
			cb(col_text(st, 0), sqlite3_column_int64(st, 1), ud);
	if (rc != SQLITE_DONE)
		s = sq_fail(c->db, err, "job stats");
	q_done(st);
	if (s || !dlq)
		return s;
	st = q_get(c, Q_STATS_DLQ, err);
	if (!st)
		return PM_ERR_STORE;
	if (sqlite3_step(st) == SQLITE_ROW)
		*dlq = sqlite3_column_int64(st, 0);
	else
		s = sq_fail(c->db, err, "dead-letter count");
	q_done(st);
	return s;
}

static pm_status sq_provider_add(void *conn, const pm_provider_day *d,
				 pm_err *err)
{
	sq_conn *c = conn;
	sqlite3_stmt *st = q_get(c, Q_PROV_ADD, err);
	pm_status s = PM_OK;

	if (!st)
		return PM_ERR_STORE;
	if (sqlite3_bind_text(st, 1, d->provider, -1, SQLITE_TRANSIENT) ||
	    b_i64(st, 2, d->day) || b_i64(st, 3, d->requests) ||
	    b_i64(st, 4, d->found) || b_i64(st, 5, d->empty) ||
	    b_i64(st, 6, d->failed) || b_i64(st, 7, d->results) ||
	    sqlite3_bind_double(st, 8, d->latency_ms) ||
	    sqlite3_step(st) != SQLITE_DONE)
		s = sq_fail(c->db, err, "search provider counters");
	q_done(st);
	return s;
}

static pm_status sq_provider_days(void *conn, int64_t since_day,
				  int (*cb)(const pm_provider_day *d, void *ud),
				  void *ud, pm_err *err)
{
	sq_conn *c = conn;
	sqlite3_stmt *st = q_get(c, Q_PROV_DAYS, err);
	pm_status s = PM_OK;
	int rc;

	if (!st)
		return PM_ERR_STORE;
	if (b_i64(st, 1, since_day)) {
		s = sq_fail(c->db, err, "search provider counters");
		goto out;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		pm_provider_day d = {0};
		snprintf(d.provider, sizeof d.provider, "%s", col_text(st, 0));
		d.day = sqlite3_column_int64(st, 1);
		d.requests = sqlite3_column_int64(st, 2);
		d.found = sqlite3_column_int64(st, 3);
		d.empty = sqlite3_column_int64(st, 4);
		d.failed = sqlite3_column_int64(st, 5);
		d.results = sqlite3_column_int64(st, 6);
		d.latency_ms = sqlite3_column_double(st, 7);
		if (cb(&d, ud)) {
			rc = SQLITE_DONE;
			break;
		}
	}
	if (rc != SQLITE_DONE)
		s = sq_fail(c->db, err, "search provider counters");
out:
	q_done(st);
	return s;
}

/* ---- the shared queue ----
 *
 * Every change runs in a BEGIN IMMEDIATE transaction (or in the open
 * batch, if the caller has one), so claims from several processes on one
 * file are serialized by SQLite's write lock; the 10 s busy timeout makes
 * a contender wait for it rather than fail. Times are this machine's
 * clock (the processes sharing a file share the machine). */

/* Starts a transaction unless one is open; *own = this call owns it. */
static pm_status tx_open(sq_conn *c, bool *own, const char *what, pm_err *err)
{
	*own = sqlite3_get_autocommit(c->db) != 0;
	return *own ? q_exec(c, Q_BEGIN, what, err) : PM_OK;
}

/* Ends what tx_open began: commit if s is PM_OK, else roll back (an
 * error inside a caller's batch poisons it, as a failed put does). */
static pm_status tx_close(sq_conn *c, bool own, pm_status s, const char *what,
			  pm_err *err)
{
	if (own && s == PM_OK)
		s = q_exec(c, Q_COMMIT, what, err);
	if (s != PM_OK) {
		if (own && !sqlite3_get_autocommit(c->db))
			q_exec(c, Q_ROLLBACK, "rollback", NULL);
		else if (!own && s != PM_ERR_CONFLICT)
			c->put_failed = true;
	}
	return s;
}

/* The job range of a filter: one job, or every job (0). */
static void job_range(int64_t job_id, int64_t *lo, int64_t *hi)
{
	*lo = job_id > 0 ? job_id : 1;
	*hi = job_id > 0 ? job_id : INT64_MAX;
}

static pm_status sq_enqueue(void *conn, int64_t job_id, int priority,
			    const pm_enqueue_rec *recs, int n, int64_t *added,
			    pm_err *err)
{
	sq_conn *c = conn;
	double now = now_unix();
	bool own;
	pm_status s = tx_open(c, &own, "enqueue", err);
	sqlite3_stmt *st;

	if (s)
		return s;
	if (!(st = q_get(c, Q_Q_MARK, err)))
		s = PM_ERR_STORE;
	else if (b_i64(st, 1, job_id) || b_dbl(st, 2, now) ||
		 sqlite3_step(st) != SQLITE_DONE)
		s = sq_fail(c->db, err, "enqueue");
	else if (sqlite3_changes(c->db) == 0)
		s = pm_fail(err, PM_ERR_NOT_FOUND, "enqueue: no job %lld",
			    (long long)job_id);
	if (st)
		q_done(st);
	for (int i = 0; s == PM_OK && i < n; i++) {
		if (!(st = q_get(c, Q_Q_ENQUEUE, err))) {
			s = PM_ERR_STORE;
			break;
		}
		if (b_i64(st, 1, job_id) || b_text(st, 2, recs[i].key) ||
		    b_i64(st, 3, (int64_t)recs[i].ordinal) ||
		    b_i64(st, 4, priority) ||
		    b_text(st, 5, recs[i].record_json) || b_dbl(st, 6, now) ||
		    sqlite3_step(st) != SQLITE_DONE)
			s = sq_fail(c->db, err, "enqueue");
		else
			*added += sqlite3_changes(c->db);
		q_done(st);
	}
	s = tx_close(c, own, s, "enqueue", err);
	if (s != PM_OK)
		*added = 0;
	return s;
}

static pm_status sq_enqueue_end(void *conn, int64_t job_id, int64_t total,
				pm_err *err)
{
	sq_conn *c = conn;
	sqlite3_stmt *st = q_get(c, Q_Q_ENQUEUE_END, err);
	pm_status s = PM_OK;

	if (!st)
		return PM_ERR_STORE;
	if (b_i64(st, 1, job_id) || b_i64(st, 2, total) ||
	    b_dbl(st, 3, now_unix()) || sqlite3_step(st) != SQLITE_DONE)
		s = sq_fail(c->db, err, "end enqueue");
	else if (sqlite3_changes(c->db) == 0)
		s = pm_fail(err, PM_ERR_NOT_FOUND, "end enqueue: no job %lld",
			    (long long)job_id);
	q_done(st);
	return s;
}

static char *dup_col(sqlite3_stmt *st, int i)
{
	const char *t = col_text(st, i);
	return strdup(t ? t : "");
}

/* Sets job_id "running" if it is still "queued" (its first claim). */
static pm_status q_job_running(sq_conn *c, int64_t job_id, double now,
			       pm_err *err)
{
	sqlite3_stmt *st = q_get(c, Q_Q_RUNNING, err);
	int rc;

	if (!st)
		return PM_ERR_STORE;
	if (b_i64(st, 1, job_id) || b_dbl(st, 2, now))
		return sq_fail(c->db, err, "claim");
	rc = sqlite3_step(st);
	q_done(st);
	return rc == SQLITE_DONE ? PM_OK : sq_fail(c->db, err, "claim");
}

static pm_status sq_claim(void *conn, int64_t job_id, const char *worker, int n,
			  double lease_s, pm_claim **out, int *n_out,
			  pm_err *err)
{
	sq_conn *c = conn;
	double now = now_unix();
	pm_claim *cl = calloc((size_t)n, sizeof *cl);
	int *prio = calloc((size_t)n, sizeof *prio);
	int got = 0, rc = SQLITE_ERROR;
	bool own = false;
	pm_status s = PM_OK;
	sqlite3_stmt *st = NULL;

	if (!cl || !prio) {
		free(cl);
		free(prio);
		return pm_fail(err, PM_ERR_NOMEM, "claim: out of memory");
	}
	if ((s = tx_open(c, &own, "claim", err)))
		goto out;
	if (!(st = q_get(c, job_id > 0 ? Q_Q_CLAIM : Q_Q_CLAIM_ANY, err))) {
		s = PM_ERR_STORE;
		goto close;
	}
	if (b_i64(st, 1, job_id) || b_text(st, 3, worker) || b_i64(st, 4, n) ||
	    b_dbl(st, 5, now + lease_s) || b_dbl(st, 6, now)) {
		s = sq_fail(c->db, err, "claim");
		goto close;
	}
	/* the rows first (the UPDATE is complete by the first row), then
	 * their events */
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		pm_claim *k = &cl[got];
		if (got == n)
			continue; /* LIMIT n: cannot happen */
		k->queue_id = sqlite3_column_int64(st, 0);
		k->job_id = sqlite3_column_int64(st, 1);
		k->key = dup_col(st, 2);
		k->record_json = dup_col(st, 3);
		k->ordinal = (uint64_t)sqlite3_column_int64(st, 4);
		k->attempts = sqlite3_column_int(st, 5);
		prio[got] = sqlite3_column_int(st, 6);
		got++;
		if (!k->key || !k->record_json) {
			s = pm_fail(err, PM_ERR_NOMEM, "claim: out of memory");
			break;
		}
	}
	if (s == PM_OK && rc != SQLITE_DONE)
		s = sq_fail(c->db, err, "claim");
	q_done(st);
	for (int i = 0; s == PM_OK && i < got; i++) {
		s = q_event(c, cl[i].queue_id, cl[i].job_id, cl[i].key,
			    "claimed", worker, now, NULL, err);
		/* a job still "queued" becomes "running" (once per job
		 * of the claim) */
		if (s == PM_OK && (i == 0 || cl[i].job_id != cl[i - 1].job_id))
			s = q_job_running(c, cl[i].job_id, now, err);
	}
close:
	s = tx_close(c, own, s, "claim", err);
out:
	if (s != PM_OK) {
		pm_claims_free(cl, got);
		free(prio);
		return s;
	}
	pm_claims_sort(cl, prio, got);
	free(prio);
	if (got == 0) {
		free(cl);
		cl = NULL;
	}
	*out = cl;
	*n_out = got;
	return PM_OK;
}

static pm_status sq_queue_next(void *conn, int64_t *job_id, int *priority,
			       pm_err *err)
{
	sq_conn *c = conn;
	sqlite3_stmt *st = q_get(c, Q_Q_NEXT, err);
	pm_status s = PM_OK;
	int rc;

	if (!st)
		return PM_ERR_STORE;
	if (b_dbl(st, 1, now_unix()) ||
	    ((rc = sqlite3_step(st)) != SQLITE_ROW && rc != SQLITE_DONE)) {
		s = sq_fail(c->db, err, "next queued job");
	} else if (rc == SQLITE_ROW) {
		*job_id = sqlite3_column_int64(st, 0);
		*priority = sqlite3_column_int(st, 1);
	}
	q_done(st);
	return s;
}

static pm_status sq_lease_renew(void *conn, const char *worker, double lease_s,
				int64_t *n, pm_err *err)
{
	sq_conn *c = conn;
	sqlite3_stmt *st = q_get(c, Q_Q_RENEW, err);
	pm_status s = PM_OK;

	if (!st)
		return PM_ERR_STORE;
	if (b_text(st, 1, worker) || b_dbl(st, 2, now_unix() + lease_s) ||
	    sqlite3_step(st) != SQLITE_DONE)
		s = sq_fail(c->db, err, "renew leases");
	else
		*n = sqlite3_changes64(c->db);
	q_done(st);
	return s;
}

/* Runs a (drop, events, update) triple of statements whose parameters
 * are (text a or none, time; the drop's may stop before the time) in one
 * transaction; *n = rows updated. */
static pm_status ev_update(sq_conn *c, int q_drop, int q_ev, int q_up,
			   const char *text, int64_t *n, const char *what,
			   pm_err *err)
{
	double now = now_unix();
	int qs[3] = {q_drop, q_ev, q_up};
	bool own;
	pm_status s = tx_open(c, &own, what, err);

	for (int i = 0; s == PM_OK && i < 3; i++) {
		sqlite3_stmt *st = q_get(c, qs[i], err);
		int np = st ? sqlite3_bind_parameter_count(st) : 0;
		if (!st) {
			s = PM_ERR_STORE;
			break;
		}
		if ((text
			 ? b_text(st, 1, text) || (np >= 2 && b_dbl(st, 2, now))
			 : b_dbl(st, 1, now)) ||
		    sqlite3_step(st) != SQLITE_DONE)
			s = sq_fail(c->db, err, what);
		else if (i == 2)
			*n = sqlite3_changes64(c->db);
		q_done(st);
	}
	s = tx_close(c, own, s, what, err);
	if (s != PM_OK)
		*n = 0;
	return s;
}

static pm_status sq_lease_release(void *conn, const char *worker, int64_t *n,
				  pm_err *err)
{
	return ev_update(conn, Q_Q_RELEASE_DROP, Q_Q_RELEASE_EV, Q_Q_RELEASE,
			 worker, n, "release leases", err);
}

static pm_status sq_lease_reap(void *conn, int64_t *n, pm_err *err)
{
	return ev_update(conn, Q_Q_REAP_DROP, Q_Q_REAP_EV, Q_Q_REAP, NULL, n,
			 "reap expired leases", err);
}

static pm_status sq_requeue(void *conn, int64_t queue_id, const char *worker,
			    double delay_s, const char *reason, pm_err *err)
{
	sq_conn *c = conn;
	double now = now_unix();
	int64_t job = 0;
	char *key = NULL;
	bool own;
	int rc = SQLITE_ERROR;
	pm_status s = tx_open(c, &own, "requeue", err);
	sqlite3_stmt *st = s ? NULL : q_get(c, Q_Q_REQUEUE, err);

	if (s == PM_OK && !st)
		s = PM_ERR_STORE;
	if (s == PM_OK) {
		if (b_i64(st, 1, queue_id) || b_text(st, 2, worker) ||
		    b_dbl(st, 3, now + delay_s) || b_dbl(st, 4, now) ||
		    ((rc = sqlite3_step(st)) != SQLITE_ROW &&
		     rc != SQLITE_DONE)) {
			s = sq_fail(c->db, err, "requeue");
		} else if (rc == SQLITE_DONE) {
			s = pm_fail(err, PM_ERR_CONFLICT,
				    "requeue: worker %s does not hold queue "
				    "row %lld",
				    worker, (long long)queue_id);
		} else {
			job = sqlite3_column_int64(st, 0);
			if (!(key = dup_col(st, 1)))
				s = pm_fail(err, PM_ERR_NOMEM,
					    "requeue: out of memory");
			else if (sqlite3_step(st) != SQLITE_DONE)
				s = sq_fail(c->db, err, "requeue");
		}
		q_done(st);
	}
	if (s == PM_OK)
		s = q_event(c, queue_id, job, key, "retry", worker, now, reason,
			    err);
	free(key);
	return tx_close(c, own, s, "requeue", err);
}

/* Several processes share an SQLite file on one machine: an idle worker
 * polls, 250 ms at most per call. */
static pm_status sq_queue_wait(void *conn, int timeout_ms, bool *woken,
			       pm_err *err)
{
	int ms = timeout_ms < 250 ? timeout_ms : 250;
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	(void)conn;
	(void)err;
	*woken = false;
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
	return PM_OK;
}

static pm_status sq_job_state_of(void *conn, int64_t job_id, char *state,
				 size_t size, pm_err *err)
{
	sq_conn *c = conn;
	sqlite3_stmt *st = q_get(c, Q_Q_JOB_STATE, err);
	pm_status s = PM_OK;
	int rc;

	if (!st)
		return PM_ERR_STORE;
	if (b_i64(st, 1, job_id) ||
	    ((rc = sqlite3_step(st)) != SQLITE_ROW && rc != SQLITE_DONE))
		s = sq_fail(c->db, err, "job state");
	else if (rc == SQLITE_DONE)
		s = pm_fail(err, PM_ERR_NOT_FOUND, "no job %lld",
			    (long long)job_id);
	else if (size)
		snprintf(state, size, "%s",
			 col_text(st, 0) ? col_text(st, 0) : "");
	q_done(st);
	return s;
}

static pm_status sq_queue_finish(void *conn, int64_t job_id, bool *finished,
				 pm_err *err)
{
	sq_conn *c = conn;
	sqlite3_stmt *st = q_get(c, Q_Q_FINISH, err);
	pm_status s = PM_OK;
	int rc;

	if (!st)
		return PM_ERR_STORE;
	if (b_i64(st, 1, job_id) || b_dbl(st, 2, now_unix()) ||
	    sqlite3_step(st) != SQLITE_DONE)
		s = sq_fail(c->db, err, "finish queued job");
	q_done(st);
	if (s != PM_OK)
		return s;
	if (!(st = q_get(c, Q_Q_JOB_STATE, err)))
		return PM_ERR_STORE;
	if (b_i64(st, 1, job_id) ||
	    ((rc = sqlite3_step(st)) != SQLITE_ROW && rc != SQLITE_DONE))
		s = sq_fail(c->db, err, "finish queued job");
	else if (rc == SQLITE_DONE)
		s = pm_fail(err, PM_ERR_NOT_FOUND, "no job %lld",
			    (long long)job_id);
	else
		*finished =
		    col_text(st, 0) && strcmp(col_text(st, 0), "done") == 0;
	q_done(st);
	return s;
}

static pm_status sq_queue_counts(void *conn, int64_t job_id,
				 pm_queue_counts *qc, pm_err *err)
{
	sq_conn *c = conn;
	sqlite3_stmt *st = q_get(c, Q_Q_COUNTS, err);
	int64_t lo, hi;
	pm_status s = PM_OK;

	if (!st)
		return PM_ERR_STORE;
	job_range(job_id, &lo, &hi);
	if (b_i64(st, 1, lo) || b_i64(st, 2, hi) ||
	    sqlite3_step(st) != SQLITE_ROW) {
		s = sq_fail(c->db, err, "queue counts");
	} else {
		qc->queued = sqlite3_column_int64(st, 0);
		qc->claimed = sqlite3_column_int64(st, 1);
		qc->done = sqlite3_column_int64(st, 2);
		qc->failed = sqlite3_column_int64(st, 3);
		qc->expired = sqlite3_column_int64(st, 4);
		qc->retried = sqlite3_column_int64(st, 5);
		qc->workers = sqlite3_column_int64(st, 6);
		qc->enqueued = sqlite3_column_int(st, 7) != 0;
		qc->total = sqlite3_column_int64(st, 8);
		qc->pruned = sqlite3_column_int64(st, 9);
	}
	q_done(st);
	return s;
}

static pm_status sq_queue_history(void *conn, int64_t job_id, const char *key,
				  int (*cb)(const char *event,
					    const char *worker, double at,
					    const char *detail, void *ud),
				  void *ud, pm_err *err)
{
	sq_conn *c = conn;
	sqlite3_stmt *st = q_get(c, Q_Q_HISTORY, err);
	pm_status s = PM_OK;
	int rc;

	if (!st)
		return PM_ERR_STORE;
	if (b_i64(st, 1, job_id) || b_text(st, 2, key)) {
		s = sq_fail(c->db, err, "queue history");
		goto out;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *ev = col_text(st, 0);
		if (cb(ev ? ev : "", col_text(st, 1),
		       sqlite3_column_double(st, 2), col_text(st, 3), ud)) {
			rc = SQLITE_DONE;
			break;
		}
	}
	if (rc != SQLITE_DONE)
		s = sq_fail(c->db, err, "queue history");
out:
	q_done(st);
	return s;
}

/* ---- pruning the queue ----
 *
 * The jobs to prune are listed first; each is then emptied in
 * transactions of at most batch rows: the ids of a batch, then per id
 * its events and its row (prepared statements, one write transaction),
 * after re-checking that the job is still prunable. */

/* The prunable jobs of [lo, hi] updated before cutoff: *ids (malloc'd,
 * the caller frees it), *n. */
static pm_status prune_jobs(sq_conn *c, int64_t lo, int64_t hi, double cutoff,
			    int64_t **ids, int *n, pm_err *err)
{
	sqlite3_stmt *st = q_get(c, Q_PRUNE_JOBS, err);
	int rc = SQLITE_ERROR, cap = 0;
	pm_status s = PM_OK;

	*ids = NULL;
	*n = 0;
	if (!st)
		return PM_ERR_STORE;
	if (b_i64(st, 1, lo) || b_i64(st, 2, hi) || b_dbl(st, 3, cutoff)) {
		s = sq_fail(c->db, err, "queue prune");
		goto out;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (*n == cap) {
			int64_t *m;
			cap = cap ? cap * 2 : 64;
			if (!(m = realloc(*ids, (size_t)cap * sizeof *m))) {
				s = pm_fail(err, PM_ERR_NOMEM,
					    "queue prune: out of memory");
				goto out;
			}
			*ids = m;
		}
		(*ids)[(*n)++] = sqlite3_column_int64(st, 0);
	}
	if (rc != SQLITE_DONE)
		s = sq_fail(c->db, err, "queue prune");
out:
	q_done(st);
	if (s != PM_OK) {
		free(*ids);
		*ids = NULL;
		*n = 0;
	}
	return s;
}

/* Runs statement q with ?1 = a (and ?2 = b if b_set); *n (may be NULL)
 * = rows it changed, *row0 and *row1 (may be NULL) = the first row's
 * columns; *found = it returned a row. */
static pm_status prune_step(sq_conn *c, int q, int64_t a, bool b_set, double b,
			    int64_t *n, int64_t *row0, int64_t *row1,
			    bool *found, pm_err *err)
{
	sqlite3_stmt *st = q_get(c, q, err);
	pm_status s = PM_OK;
	int rc;

	if (!st)
		return PM_ERR_STORE;
	if (b_i64(st, 1, a) || (b_set && b_dbl(st, 2, b)) ||
	    ((rc = sqlite3_step(st)) != SQLITE_ROW && rc != SQLITE_DONE)) {
		s = sq_fail(c->db, err, "queue prune");
	} else {
		if (found)
			*found = rc == SQLITE_ROW;
		if (rc == SQLITE_ROW && row0)
			*row0 = sqlite3_column_int64(st, 0);
		if (rc == SQLITE_ROW && row1)
			*row1 = sqlite3_column_int64(st, 1);
		if (n)
			*n = sqlite3_changes64(c->db);
	}
	q_done(st);
	return s;
}

/* One batch of job's rows in one transaction; *rows = 0 when the job
 * has none left (or is no longer prunable). */
static pm_status prune_batch(sq_conn *c, int64_t job, double cutoff, int batch,
			     int64_t *ids, int64_t *rows, int64_t *events,
			     pm_err *err)
{
	sqlite3_stmt *st;
	bool own, ok = false;
	int n = 0, rc = SQLITE_ERROR;
	pm_status s = tx_open(c, &own, "queue prune", err);

	*rows = *events = 0;
	if (s)
		return s;
	s = prune_step(c, Q_PRUNE_CHECK, job, true, cutoff, NULL, NULL, NULL,
		       &ok, err);
	if (s || !ok)
		goto close;
	if (!(st = q_get(c, Q_PRUNE_IDS, err))) {
		s = PM_ERR_STORE;
		goto close;
	}
	if (b_i64(st, 1, job) || b_i64(st, 2, batch)) {
		s = sq_fail(c->db, err, "queue prune");
	} else {
		while (n < batch && (rc = sqlite3_step(st)) == SQLITE_ROW)
			ids[n++] = sqlite3_column_int64(st, 0);
		if (rc != SQLITE_ROW && rc != SQLITE_DONE)
			s = sq_fail(c->db, err, "queue prune");
	}
	q_done(st);
	for (int i = 0; s == PM_OK && i < n; i++) {
		int64_t e = 0, r = 0;
		s = prune_step(c, Q_PRUNE_EV, ids[i], false, 0, &e, NULL, NULL,
			       NULL, err);
		if (s == PM_OK)
			s = prune_step(c, Q_PRUNE_ROW, ids[i], false, 0, &r,
				       NULL, NULL, NULL, err);
		*events += e;
		*rows += r;
	}
	if (s == PM_OK && n < batch) /* the last batch: say so */
		s = prune_step(c, Q_PRUNE_MARK, job, true, now_unix(), NULL,
			       NULL, NULL, NULL, err);
close:
	s = tx_close(c, own, s, "queue prune", err);
	if (s != PM_OK)
		*rows = *events = 0;
	return s;
}

static pm_status sq_queue_prune(void *conn, int64_t job_id, double cutoff,
				bool dry_run, int batch, pm_queue_pruned *out,
				pm_err *err)
{
	sq_conn *c = conn;
	int64_t lo, hi, *jobs = NULL, *ids = NULL;
	int nj = 0;
	pm_status s;

	if (batch < 1)
		batch = 1;
	job_range(job_id, &lo, &hi);
	s = prune_jobs(c, lo, hi, cutoff, &jobs, &nj, err);
	if (s == PM_OK && !dry_run && nj > 0 &&
	    !(ids = malloc((size_t)batch * sizeof *ids)))
		s = pm_fail(err, PM_ERR_NOMEM, "queue prune: out of memory");
	for (int j = 0; s == PM_OK && j < nj; j++) {
		int64_t rows = 0, events = 0, r, e;
		if (dry_run) {
			bool ok = false;
			s = prune_step(c, Q_PRUNE_CHECK, jobs[j], true, cutoff,
				       NULL, NULL, NULL, &ok, err);
			if (s == PM_OK && ok)
				s = prune_step(c, Q_PRUNE_COUNT, jobs[j], false,
					       0, NULL, &rows, &events, NULL,
					       err);
		} else {
			do {
				s = prune_batch(c, jobs[j], cutoff, batch, ids,
						&r, &e, err);
				rows += r;
				events += e;
			} while (s == PM_OK && r == batch);
		}
		out->jobs += rows > 0;
		out->rows += rows;
		out->events += events;
	}
	free(ids);
	free(jobs);
	return s;
}

const pm_store_backend pm_store_sqlite = {
    .name = "sqlite",
    .latest_version = pm_sqlite_latest_version,
    .open = sq_open,
    .close = sq_close,
    .schema_version = sq_schema_version,
    .job_open = sq_job_open,
    .job_finish = sq_job_finish,
    .job_net = sq_job_net,
    .jobs = sq_jobs,
    .job_failures = sq_job_failures,
    .job_counts = sq_job_counts,
    .job_ads = sq_job_ads,
    .failed = sq_failed,
    .retry_failed = sq_retry_failed,
    .url_get = sq_url_get,
    .item_state = sq_item_state,
    .asset_exists = sq_asset_exists,
    .begin = sq_begin,
    .put_item = sq_put_item,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .job_create = sq_job_create,
    .job_state = sq_job_state,
    .items = sq_items,
    .outputs = sq_outputs,
    .recent = sq_recent,
    .search = sq_search,
    .phashes = sq_phashes,
    .phash_near = sq_phash_near,
    .images = sq_images,
    .title = sq_title,
    .embeddings = sq_embeddings,
    .embeddings_stamp = sq_embeddings_stamp,
    .embedding_get = sq_embedding_get,
    .embedding_put = sq_embedding_put,
    .asset_items = sq_asset_items,
    .stats = sq_stats,
    .provider_add = sq_provider_add,
    .provider_days = sq_provider_days,
    .enqueue = sq_enqueue,
    .enqueue_end = sq_enqueue_end,
    .claim = sq_claim,
    .queue_next = sq_queue_next,
    .lease_renew = sq_lease_renew,
    .lease_release = sq_lease_release,
    .lease_reap = sq_lease_reap,
    .requeue = sq_requeue,
    .queue_wait = sq_queue_wait,
    .queue_finish = sq_queue_finish,
    .job_state_of = sq_job_state_of,
    .queue_counts = sq_queue_counts,
    .queue_history = sq_queue_history,
    .queue_prune = sq_queue_prune,
};
