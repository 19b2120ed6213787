/* test_store.c — unit tests of the store: schema and migrations, jobs,
 * batched item/asset/output writes, resume state, dedup, failure grouping,
 * reader isolation, the full-text index and the gallery query
 * (pm_store_images).
 *
 * One conformance suite for every backend: the cases in conformance[] use
 * the store API (and a few raw SQL checks valid on both) and run against
 * SQLite, then — if PIXMILL_TEST_PG is set to a server URL without a
 * database, e.g. postgresql://pixmill@127.0.0.1:5432 (tests/store/pg.sh
 * starts such a server) — against PostgreSQL, each case in a database of
 * its own. Cases about SQLite files (migrations from old files, WAL) and
 * about PostgreSQL only (URL masking, concurrent first open, invalid UTF-8)
 * run on their backend only.
 *
 * Threads: single-threaded test program (test.h counters are not atomic),
 * except the concurrent-open case, whose threads only open and close.
 * Every SQLite database lives in a fresh mkdtemp directory, removed at the
 * end; PostgreSQL databases are named pmt_<case> and dropped at the start
 * of the case that makes them.
 */
#define _DEFAULT_SOURCE

#include "core/util.h"
#include "store/store.h"
#include "store/store_impl.h"
#include "test.h"

#include <libpq-fe.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static char dir[256];
static const char *pg_base; /* PIXMILL_TEST_PG, or NULL */
static bool on_pg;	    /* the conformance cases run against PostgreSQL */

static const char *dbpath(const char *name)
{
	static char buf[4][512];
	static int n;
	char *b = buf[n++ % 4];
	snprintf(b, sizeof buf[0], "%s/%s", dir, name);
	return b;
}

/* Raw handle for checks the store API does not expose. */
static sqlite3 *raw(const char *path)
{
	sqlite3 *db = NULL;
	if (sqlite3_open(path, &db) != SQLITE_OK) {
		fprintf(stderr, "raw open %s: %s\n", path, sqlite3_errmsg(db));
		exit(2);
	}
	return db;
}

static int64_t q_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;
	int64_t v = -12345;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		fprintf(stderr, "raw prepare %s: %s\n", sql,
			sqlite3_errmsg(db));
		return v;
	}
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_type(st, 0) == SQLITE_NULL
			? -1
			: sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static bool pg_run(PGconn *c, const char *sql);

/* A PostgreSQL connection to database db of the test server (exits if
 * it cannot connect: the server is the test's own). */
static PGconn *pg_raw(const char *db)
{
	char url[600];
	snprintf(url, sizeof url, "%s/%s", pg_base, db);
	PGconn *c = PQconnectdb(url);
	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "raw connect %s: %s\n", url, PQerrorMessage(c));
		exit(2);
	}
	pg_run(c, "SET client_min_messages = warning");
	return c;
}

static bool pg_run(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	ExecStatusType es = PQresultStatus(r);
	bool ok = es == PGRES_COMMAND_OK || es == PGRES_TUPLES_OK;
	if (!ok)
		fprintf(stderr, "raw %s: %s", sql, PQerrorMessage(c));
	PQclear(r);
	return ok;
}

/* The URL of a fresh, empty store for case name ("main.db"): a file in
 * dir on SQLite, a new database pmt_main on PostgreSQL. */
static const char *store_url(const char *name)
{
	static char buf[4][600];
	static int n;
	if (!on_pg)
		return dbpath(name);
	char db[64], sql[200];
	snprintf(db, sizeof db, "pmt_%.*s", (int)strcspn(name, "."), name);
	snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)",
		 db);
	PGconn *c = pg_raw("postgres");
	pg_run(c, sql);
	snprintf(sql, sizeof sql, "CREATE DATABASE %s", db);
	pg_run(c, sql);
	PQfinish(c);
	char *b = buf[n++ % 4];
	snprintf(b, sizeof buf[0], "%s/%s", pg_base, db);
	return b;
}

/* Raw access to a store, for checks the API does not expose: SQL that is
 * the same on both backends (booleans read as 0/1). */
typedef struct rawdb {
	sqlite3 *sq;
	PGconn *pg;
} rawdb;

static rawdb raw_open(const char *url)
{
	rawdb d = {0};
	if (on_pg) {
		d.pg = PQconnectdb(url);
		if (PQstatus(d.pg) != CONNECTION_OK) {
			fprintf(stderr, "raw connect: %s",
				PQerrorMessage(d.pg));
			exit(2);
		}
	} else {
		d.sq = raw(url);
	}
	return d;
}

static void raw_close(rawdb *d)
{
	if (d->pg)
		PQfinish(d->pg);
	if (d->sq)
		sqlite3_close(d->sq);
}

static int64_t rq_int(rawdb *d, const char *sql)
{
	if (d->sq)
		return q_int(d->sq, sql);
	int64_t v = -12345;
	PGresult *r = PQexec(d->pg, sql);
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		fprintf(stderr, "raw %s: %s", sql, PQerrorMessage(d->pg));
	else if (PQntuples(r) > 0) {
		const char *t = PQgetvalue(r, 0, 0);
		v = PQgetisnull(r, 0, 0) ? -1
		    : *t == 't'		 ? 1
		    : *t == 'f'		 ? 0
					 : strtoll(t, NULL, 10);
	}
	PQclear(r);
	return v;
}

/* Row id of the one item whose indexed text has word (count: how many
 * items have it). */
static int64_t fts_q(rawdb *d, bool count, const char *word)
{
	char sql[200];
	if (d->sq)
		snprintf(sql, sizeof sql,
			 "SELECT %s FROM items_fts WHERE items_fts MATCH '%s'",
			 count ? "COUNT(*)" : "rowid", word);
	else
		snprintf(sql, sizeof sql,
			 "SELECT %s FROM items WHERE fts @@"
			 " plainto_tsquery('simple', '%s')",
			 count ? "COUNT(*)" : "id", word);
	return rq_int(d, sql);
}
#define fts_id(d, w)	fts_q(d, false, w)
#define fts_count(d, w) fts_q(d, true, w)

static const pm_job_spec spec1 = {
    .key = "aaaa",
    .catalog = "/data/catalog.csv",
    .pipeline = "web",
    .pipeline_hash = "ph1",
    .pipeline_json = "{\"name\":\"web\"}",
    .out_dir = "/out",
};

static const pm_output_rec outs[3] = {
    {"256.webp", "ab/256.webp", "webp", 256, 200, 1000, "o1"},
    {"512.webp", "ab/512.webp", "webp", 512, 400, 3000, "o2"},
    {"1024.jpeg", "ab/1024.jpeg", "jpeg", 1024, 800, 9000, "o3"},
};

static pm_asset_rec asset_rec(const char *sha)
{
	return (pm_asset_rec){
	    .sha256 = sha,
	    .pipeline_hash = "ph1",
	    .format = "jpeg",
	    .width = 2000,
	    .height = 1600,
	    .bytes = 123456,
	    .phash = 0xF00DFACE12345678ull, /* high bit set */
	    .has_phash = true,
	    .colors_json = "[{\"hex\":\"#aabbcc\",\"share\":0.4}]",
	    .sharpness = NAN,
	    .meta_json = "{\"exif\":false}",
	    .n_outputs = 3,
	    .outputs = outs,
	};
}

static pm_item_rec item_rec(int64_t job, const char *key)
{
	return (pm_item_rec){
	    .job_id = job,
	    .key = key,
	    .ordinal = 1,
	    .id = key,
	    .image = "http://x/img.jpg",
	    .title = "A thing",
	    .price = "9.99",
	    .category = "misc",
	    .attrs_json = "{\"colour\":\"blue\"}",
	    .status = PM_OK,
	    .latency_ms = 12.5,
	    .attempts = 1,
	};
}

static int count_jobs_cb(const pm_job_info *ji, void *ud)
{
	pm_job_info *out = ud;
	if (out->id == 0) {
		*out = *ji;
		out->key = out->catalog = out->pipeline = NULL;
		out->pipeline_hash = out->out_dir = out->state = NULL;
	}
	return 0;
}

/* Every backend fills every slot of the vtable (a slot left NULL is a
 * crash for the one command that reaches it: it happened to job_ads on
 * PostgreSQL). The struct is a name followed by function pointers, all
 * of pointer size on the platforms pixmill builds for. */
static void check_vtable(const pm_store_backend *be)
{
	const size_t n = sizeof *be / sizeof(void *);
	void *slot;

	CHECK(be->name != NULL);
	for (size_t i = 1; i < n; i++) {
		memcpy(&slot, (const char *)be + i * sizeof(void *),
		       sizeof slot);
		if (!slot)
			printf("FAIL %s: vtable slot %zu is NULL\n", be->name,
			       i);
		CHECK(slot != NULL);
	}
}

static void test_vtables(void)
{
	check_vtable(&pm_store_sqlite);
	check_vtable(&pm_store_postgres);
}

static void test_open_errors(void)
{
	pm_store *s = NULL;
	pm_err err = {{0}};
	/* PostgreSQL: nothing listens on port 1; the error names the
	 * server but never the password. */
	CHECK_INT(pm_store_open("postgres://u:s3cret@127.0.0.1:1/db", false, &s,
				&err),
		  PM_ERR_STORE);
	CHECK(strstr(err.msg, "s3cret") == NULL);
	CHECK(strstr(err.msg, "postgres://u:***@127.0.0.1:1/db") != NULL);
	CHECK_INT(pm_store_open("postgresql://127.0.0.1:1/db?password=s3cret",
				true, &s, &err),
		  PM_ERR_STORE);
	CHECK(strstr(err.msg, "s3cret") == NULL);
	CHECK(s == NULL);
	CHECK_INT(pm_store_open("mysql://u:pw@h/db", false, &s, &err),
		  PM_ERR_UNSUPPORTED);
	CHECK(strstr(err.msg, "mysql://u:***@h/db") != NULL);
	CHECK_INT(pm_store_open("", false, &s, &err), PM_ERR_USAGE);
	CHECK_INT(pm_store_open("sqlite:", false, &s, &err), PM_ERR_USAGE);
	CHECK_INT(pm_store_open(dbpath("missing.db"), true, &s, &err),
		  PM_ERR_NOT_FOUND);
	CHECK(s == NULL);
	CHECK(access(dbpath("missing.db"), F_OK) != 0);

	/* An empty SQLite database has no pixmill schema. */
	sqlite3 *db = raw(dbpath("empty.db"));
	sqlite3_exec(db, "CREATE TABLE t(x)", NULL, NULL, NULL);
	sqlite3_close(db);
	CHECK_INT(pm_store_open(dbpath("empty.db"), true, &s, &err),
		  PM_ERR_STORE);
	CHECK(strstr(err.msg, "no pixmill schema") != NULL);
}

static void test_schema(void)
{
	pm_store *s = NULL;
	pm_err err = {{0}};
	char url[600];
	snprintf(url, sizeof url, "sqlite:%s", dbpath("schema.db"));
	CHECK_INT(pm_store_open(url, false, &s, &err), PM_OK);
	CHECK_INT(pm_store_schema_version(s), pm_sqlite_latest_version());
	CHECK(pm_sqlite_latest_version() >= 2);
	pm_store_close(s);

	sqlite3 *db = raw(dbpath("schema.db"));
	CHECK_INT(q_int(db, "PRAGMA user_version"), pm_sqlite_latest_version());
	sqlite3_stmt *st;
	sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL);
	sqlite3_step(st);
	CHECK_STR((const char *)sqlite3_column_text(st, 0), "wal");
	sqlite3_finalize(st);
	CHECK_INT(q_int(db, "SELECT COUNT(*) FROM sqlite_master WHERE name IN"
			    " ('jobs','items','assets','outputs','items_fts',"
			    " 'items_job_state','assets_phash',"
			    " 'items_sha256')"),
		  8);
	sqlite3_close(db);

	/* Reopening a current database is a no-op. */
	CHECK_INT(pm_store_open(dbpath("schema.db"), false, &s, &err), PM_OK);
	CHECK_INT(pm_store_schema_version(s), pm_sqlite_latest_version());
	pm_store_close(s);
}

static void test_migration(void)
{
	pm_err err = {{0}};
	void *conn = NULL;
	const char *p = dbpath("old.db");
	CHECK_INT(pm_sqlite_open_at(p, 1, &conn, &err), PM_OK);
	CHECK_INT(pm_store_sqlite.schema_version(conn), 1);
	pm_store_sqlite.close(conn);

	sqlite3 *db = raw(p);
	CHECK_INT(q_int(db, "PRAGMA user_version"), 1);
	CHECK_INT(q_int(db, "SELECT COUNT(*) FROM sqlite_master"
			    " WHERE name = 'items_sha256'"),
		  0);
	/* A v1 database with data in it. */
	CHECK_INT(
	    sqlite3_exec(db,
			 "INSERT INTO jobs (key, catalog, pipeline,"
			 " pipeline_hash, pipeline_json, out_dir,"
			 " created, updated)"
			 " VALUES ('old', 'c', 'p', 'h', '{}', '/o', 0, 0)",
			 NULL, NULL, NULL),
	    SQLITE_OK);
	sqlite3_close(db);

	/* Read-only opens an older schema without migrating it. */
	pm_store *s = NULL;
	CHECK_INT(pm_store_open(p, true, &s, &err), PM_OK);
	CHECK_INT(pm_store_schema_version(s), 1);
	pm_store_close(s);

	CHECK_INT(pm_store_open(p, false, &s, &err), PM_OK);
	CHECK_INT(pm_store_schema_version(s), pm_sqlite_latest_version());
	pm_job_info ji = {0};
	CHECK_INT(pm_store_jobs(s, 0, count_jobs_cb, &ji, &err), PM_OK);
	CHECK_INT(ji.runs, 1);
	pm_store_close(s);

	db = raw(p);
	CHECK_INT(q_int(db, "PRAGMA user_version"), pm_sqlite_latest_version());
	CHECK_INT(q_int(db, "SELECT COUNT(*) FROM sqlite_master"
			    " WHERE name = 'items_sha256'"),
		  1);
	CHECK_INT(q_int(db, "SELECT COUNT(*) FROM jobs WHERE key = 'old'"), 1);
	sqlite3_close(db);

	/* Out-of-range targets for the hook. */
	CHECK_INT(pm_sqlite_open_at(p, 0, &conn, &err), PM_ERR_USAGE);
}

static void test_newer(void)
{
	pm_err err = {{0}};
	pm_store *s = NULL;
	const char *p = dbpath("new.db");
	sqlite3 *db = raw(p);
	CHECK_INT(
	    sqlite3_exec(db, "PRAGMA user_version = 999", NULL, NULL, NULL),
	    SQLITE_OK);
	sqlite3_close(db);
	CHECK_INT(pm_store_open(p, false, &s, &err), PM_ERR_STORE);
	CHECK(s == NULL);
	char want[128];
	snprintf(want, sizeof want,
		 "database schema v999 is newer than this pixmill (v%d)",
		 pm_sqlite_latest_version());
	CHECK_STR(err.msg, want);
	err.msg[0] = 0;
	CHECK_INT(pm_store_open(p, true, &s, &err), PM_ERR_STORE);
	CHECK_STR(err.msg, want);
	db = raw(p);
	CHECK_INT(q_int(db, "PRAGMA user_version"), 999);
	CHECK_INT(q_int(db, "SELECT COUNT(*) FROM sqlite_master"), 0);
	sqlite3_close(db);
}

static int fail_cb(const char *code, const char *example, int64_t count,
		   void *ud)
{
	char *buf = ud;
	size_t n = strlen(buf);
	snprintf(buf + n, 512 - n, "%s:%lld:%s;", code, (long long)count,
		 example ? example : "-");
	return 0;
}

static int stop_cb(const pm_job_info *ji, void *ud)
{
	(*(int *)ud)++;
	return 1;
}

/* Keeps the second job listed (strings copied: they live only during the
 * call). */
struct jobs_acc {
	int n;
	pm_job_info second;
	char state[32], key[32];
};

static int second_job_cb(const pm_job_info *ji, void *ud)
{
	struct jobs_acc *acc = ud;
	if (++acc->n == 2) {
		acc->second = *ji;
		snprintf(acc->state, sizeof acc->state, "%s", ji->state);
		snprintf(acc->key, sizeof acc->key, "%s", ji->key);
	}
	return 0;
}

static void test_jobs_and_items(void)
{
	pm_err err = {{0}};
	pm_store *s = NULL, *r = NULL;
	const char *p = store_url("main.db");
	CHECK_INT(pm_store_open(p, false, &s, &err), PM_OK);
	if (!s)
		return;

	/* Jobs: open twice → same id, runs 2. */
	int64_t job = 0, job2 = 0, other = 0;
	int run = 0;
	CHECK_INT(pm_store_job_open(s, &spec1, &job, &run, &err), PM_OK);
	CHECK(job > 0);
	CHECK_INT(run, 1);
	CHECK_INT(pm_store_job_finish(s, job, "interrupted", &err), PM_OK);
	CHECK_INT(pm_store_job_open(s, &spec1, &job2, &run, &err), PM_OK);
	CHECK_INT(job2, job);
	CHECK_INT(run, 2);
	pm_job_spec spec2 = spec1;
	spec2.key = "bbbb";
	spec2.pipeline_hash = "ph2";
	CHECK_INT(pm_store_job_open(s, &spec2, &other, &run, &err), PM_OK);
	CHECK(other != job);
	CHECK_INT(run, 1);
	CHECK_INT(pm_store_job_finish(s, 9999, "done", &err), PM_ERR_NOT_FOUND);

	/* A reader connection, opened before any item exists. */
	CHECK_INT(pm_store_open(p, true, &r, &err), PM_OK);

	/* Batch: done with asset + 3 outputs, failed, duplicate. */
	pm_asset_rec a = asset_rec("sha-A");
	pm_item_rec i1 = item_rec(job, "k1");
	i1.sha256 = "sha-A";
	i1.asset = &a;
	i1.title = "Red Apple Juice";
	pm_item_rec i2 = item_rec(job, "k2");
	i2.status = PM_ERR_DECODE;
	i2.error = "truncated JPEG";
	i2.sha256 = "sha-B";
	pm_item_rec i3 = item_rec(job, "k3");
	i3.sha256 = "sha-A";
	i3.duplicate = true;

	CHECK_INT(pm_store_begin(s, &err), PM_OK);
	CHECK_INT(pm_store_put_item(s, &i1, &err), PM_OK);
	CHECK_INT(pm_store_put_item(s, &i2, &err), PM_OK);
	CHECK_INT(pm_store_put_item(s, &i3, &err), PM_OK);

	/* Not visible to the reader before commit. */
	pm_item_state is = PM_ITEM_DONE;
	pm_status code = PM_ERR_INTERNAL;
	int64_t n = -1, d = -1, f = -1, dup = -1;
	CHECK_INT(pm_store_item_state(r, job, "k1", &is, &code, &err), PM_OK);
	CHECK_INT(is, PM_ITEM_NONE);
	CHECK_INT(pm_store_job_counts(r, job, &n, &d, &f, &dup, &err), PM_OK);
	CHECK_INT(n, 0);
	bool ex = true;
	CHECK_INT(pm_store_asset_exists(r, "sha-A", "ph1", &ex, &err), PM_OK);
	CHECK(!ex);

	CHECK_INT(pm_store_commit(s, &err), PM_OK);

	/* Counts from the writer and the reader. */
	CHECK_INT(pm_store_job_counts(s, job, &n, &d, &f, &dup, &err), PM_OK);
	CHECK_INT(n, 3);
	CHECK_INT(d, 2);
	CHECK_INT(f, 1);
	CHECK_INT(dup, 1);
	n = d = f = dup = -1;
	CHECK_INT(pm_store_job_counts(r, job, &n, &d, &f, &dup, &err), PM_OK);
	CHECK_INT(n, 3);
	CHECK_INT(d, 2);
	CHECK_INT(f, 1);
	CHECK_INT(dup, 1);
	CHECK_INT(pm_store_item_state(r, job, "k1", &is, &code, &err), PM_OK);
	CHECK_INT(is, PM_ITEM_DONE);
	CHECK_INT(code, PM_OK);

	/* Jobs list: newest first (other, then job), with counts. */
	pm_job_info ji = {0};
	CHECK_INT(pm_store_jobs(s, 0, count_jobs_cb, &ji, &err), PM_OK);
	CHECK_INT(ji.id, other);
	CHECK_INT(ji.items, 0);
	int calls = 0;
	CHECK_INT(pm_store_jobs(s, 0, stop_cb, &calls, &err), PM_OK);
	CHECK_INT(calls, 1);
	/* The second newest is job, with its counts. */
	struct jobs_acc acc = {0};
	CHECK_INT(pm_store_jobs(r, 0, second_job_cb, &acc, &err), PM_OK);
	CHECK_INT(acc.n, 2);
	CHECK_INT(acc.second.id, job);
	CHECK_INT(acc.second.runs, 2);
	CHECK_INT(acc.second.items, 3);
	CHECK_INT(acc.second.done, 2);
	CHECK_INT(acc.second.failed, 1);
	CHECK_INT(acc.second.duplicates, 1);
	CHECK_STR(acc.state, "running");
	CHECK_STR(acc.key, "aaaa");
	CHECK(acc.second.created > 1.6e9 &&
	      acc.second.updated >= acc.second.created);
	calls = 0;
	CHECK_INT(pm_store_jobs(s, 1, stop_cb, &calls, &err), PM_OK);
	CHECK_INT(calls, 1);

	/* Item states. */
	CHECK_INT(pm_store_item_state(s, job, "k2", &is, &code, &err), PM_OK);
	CHECK_INT(is, PM_ITEM_FAILED);
	CHECK_INT(code, PM_ERR_DECODE);
	CHECK_INT(pm_store_item_state(s, job, "k3", &is, &code, &err), PM_OK);
	CHECK_INT(is, PM_ITEM_DONE);
	CHECK_INT(pm_store_item_state(s, job, "nope", &is, &code, &err), PM_OK);
	CHECK_INT(is, PM_ITEM_NONE);
	CHECK_INT(pm_store_item_state(s, other, "k1", &is, &code, &err), PM_OK);
	CHECK_INT(is, PM_ITEM_NONE);

	/* Assets. */
	CHECK_INT(pm_store_asset_exists(s, "sha-A", "ph1", &ex, &err), PM_OK);
	CHECK(ex);
	CHECK_INT(pm_store_asset_exists(r, "sha-A", "ph1", &ex, &err), PM_OK);
	CHECK(ex);
	CHECK_INT(pm_store_asset_exists(s, "sha-A", "ph2", &ex, &err), PM_OK);
	CHECK(!ex);
	CHECK_INT(pm_store_asset_exists(s, "sha-B", "ph1", &ex, &err), PM_OK);
	CHECK(!ex);

	/* Raw checks of what was stored. */
	rawdb db = raw_open(p);
	CHECK_INT(rq_int(&db, "SELECT COUNT(*) FROM assets"), 1);
	CHECK_INT(rq_int(&db, "SELECT COUNT(*) FROM outputs"), 3);
	CHECK_INT(rq_int(&db, "SELECT COUNT(DISTINCT asset_id) FROM items"
			      " WHERE key IN ('k1','k3')"),
		  1);
	CHECK_INT(rq_int(&db, "SELECT asset_id FROM items WHERE key = 'k1'"),
		  rq_int(&db, "SELECT id FROM assets"));
	CHECK_INT(rq_int(&db, "SELECT asset_id FROM items WHERE key = 'k3'"),
		  rq_int(&db, "SELECT id FROM assets"));
	CHECK_INT(rq_int(&db, "SELECT asset_id IS NULL FROM items"
			      " WHERE key = 'k2'"),
		  1);
	CHECK_INT(rq_int(&db, "SELECT code = 'decode_error' FROM items"
			      " WHERE key = 'k2'"),
		  1);
	CHECK((uint64_t)rq_int(&db, "SELECT phash FROM assets") ==
	      0xF00DFACE12345678ull);
	CHECK_INT(rq_int(&db, "SELECT sharpness IS NULL FROM assets"), 1);
	CHECK_INT(rq_int(&db, "SELECT SUM(width) FROM outputs"),
		  256 + 512 + 1024);

	/* Same key twice (and same asset again) → one row, no new asset. */
	pm_item_rec i2b = i2;
	i2b.status = PM_OK;
	i2b.error = NULL;
	i2b.sha256 = "sha-A";
	i2b.attempts = 2;
	i2b.asset = &a;
	CHECK_INT(pm_store_begin(s, &err), PM_OK);
	CHECK_INT(pm_store_put_item(s, &i2b, &err), PM_OK);
	CHECK_INT(pm_store_put_item(s, &i2b, &err), PM_OK);
	CHECK_INT(pm_store_commit(s, &err), PM_OK);
	CHECK_INT(rq_int(&db, "SELECT COUNT(*) FROM items WHERE key = 'k2'"),
		  1);
	CHECK_INT(rq_int(&db, "SELECT attempts FROM items WHERE key = 'k2'"),
		  2);
	CHECK_INT(rq_int(&db, "SELECT COUNT(*) FROM assets"), 1);
	CHECK_INT(rq_int(&db, "SELECT COUNT(*) FROM outputs"), 3);
	CHECK_INT(pm_store_job_counts(s, job, &n, &d, &f, &dup, &err), PM_OK);
	CHECK_INT(n, 3);
	CHECK_INT(d, 3);
	CHECK_INT(f, 0);
	CHECK_INT(pm_store_item_state(s, job, "k2", &is, &code, &err), PM_OK);
	CHECK_INT(is, PM_ITEM_DONE);
	CHECK_INT(code, PM_OK);

	/* Rollback leaves nothing. */
	pm_item_rec i4 = item_rec(job, "k4");
	pm_asset_rec a4 = asset_rec("sha-C");
	i4.sha256 = "sha-C";
	i4.asset = &a4;
	CHECK_INT(pm_store_begin(s, &err), PM_OK);
	CHECK_INT(pm_store_put_item(s, &i4, &err), PM_OK);
	pm_store_rollback(s);
	pm_store_rollback(s); /* no transaction: harmless */
	CHECK_INT(pm_store_item_state(s, job, "k4", &is, &code, &err), PM_OK);
	CHECK_INT(is, PM_ITEM_NONE);
	CHECK_INT(pm_store_asset_exists(s, "sha-C", "ph1", &ex, &err), PM_OK);
	CHECK(!ex);
	CHECK_INT(pm_store_job_counts(s, job, &n, &d, &f, &dup, &err), PM_OK);
	CHECK_INT(n, 3);
	CHECK_INT(rq_int(&db, "SELECT COUNT(*) FROM outputs"), 3);

	/* A bad put poisons its batch: commit fails and keeps nothing. */
	pm_item_rec bad = item_rec(424242, "kbad"); /* no such job */
	CHECK_INT(pm_store_begin(s, &err), PM_OK);
	CHECK_INT(pm_store_put_item(s, &i4, &err), PM_OK);
	err.msg[0] = 0;
	CHECK_INT(pm_store_put_item(s, &bad, &err), PM_ERR_STORE);
	CHECK(strstr(err.msg, on_pg ? "foreign key" : "FOREIGN KEY") != NULL);
	CHECK_INT(pm_store_commit(s, &err), PM_ERR_STORE);
	CHECK(strstr(err.msg, "rolled back") != NULL);
	pm_store_rollback(s); /* harmless after a failed commit */
	CHECK_INT(pm_store_item_state(s, job, "k4", &is, &code, &err), PM_OK);
	CHECK_INT(is, PM_ITEM_NONE);
	CHECK_INT(pm_store_asset_exists(s, "sha-C", "ph1", &ex, &err), PM_OK);
	CHECK(!ex);
	/* The next batch is clean again. */
	CHECK_INT(pm_store_begin(s, &err), PM_OK);
	CHECK_INT(pm_store_put_item(s, &i4, &err), PM_OK);
	CHECK_INT(pm_store_commit(s, &err), PM_OK);
	CHECK_INT(pm_store_item_state(s, job, "k4", &is, &code, &err), PM_OK);
	CHECK_INT(is, PM_ITEM_DONE);
	/* A failed put outside a batch leaves nothing either. */
	CHECK_INT(pm_store_put_item(s, &bad, &err), PM_ERR_STORE);
	CHECK_INT(rq_int(&db, "SELECT COUNT(*) FROM items WHERE key = 'kbad'"),
		  0);
	/* A put outside a batch is its own transaction. */
	pm_item_rec i5 = item_rec(job, "k5");
	i5.status = PM_ERR_TOO_LARGE;
	i5.error = "too many pixels";
	CHECK_INT(pm_store_put_item(s, &i5, &err), PM_OK);
	CHECK_INT(pm_store_item_state(r, job, "k5", &is, &code, &err), PM_OK);
	CHECK_INT(is, PM_ITEM_FAILED);
	CHECK_INT(code, PM_ERR_TOO_LARGE);

	/* Failures grouped by code, most frequent first. */
	const char *errs[] = {"bad huffman", "truncated JPEG", "bad marker"};
	CHECK_INT(pm_store_begin(s, &err), PM_OK);
	for (int k = 0; k < 3; k++) {
		char key[16];
		snprintf(key, sizeof key, "f%d", k);
		pm_item_rec fi = item_rec(job, key);
		fi.status = PM_ERR_DECODE;
		fi.error = errs[k];
		CHECK_INT(pm_store_put_item(s, &fi, &err), PM_OK);
	}
	CHECK_INT(pm_store_commit(s, &err), PM_OK);
	char buf[512] = "";
	CHECK_INT(pm_store_job_failures(s, job, 0, fail_cb, buf, &err), PM_OK);
	CHECK_STR(buf, "decode_error:3:bad huffman;too_large:1:too many "
		       "pixels;");
	buf[0] = 0;
	CHECK_INT(pm_store_job_failures(r, job, 1, fail_cb, buf, &err), PM_OK);
	CHECK_STR(buf, "decode_error:3:bad huffman;");
	buf[0] = 0;
	CHECK_INT(pm_store_job_failures(s, other, 0, fail_cb, buf, &err),
		  PM_OK);
	CHECK_STR(buf, "");

	/* Reader isolation again, with a batch left open across reads. */
	pm_item_rec i6 = item_rec(job, "k6");
	CHECK_INT(pm_store_begin(s, &err), PM_OK);
	CHECK_INT(pm_store_put_item(s, &i6, &err), PM_OK);
	CHECK_INT(pm_store_item_state(s, job, "k6", &is, &code, &err), PM_OK);
	CHECK_INT(is, PM_ITEM_DONE); /* the writer sees its own batch */
	CHECK_INT(pm_store_item_state(r, job, "k6", &is, &code, &err), PM_OK);
	CHECK_INT(is, PM_ITEM_NONE);
	CHECK_INT(pm_store_commit(s, &err), PM_OK);
	CHECK_INT(pm_store_item_state(r, job, "k6", &is, &code, &err), PM_OK);
	CHECK_INT(is, PM_ITEM_DONE);

	/* The reader cannot write. */
	err.msg[0] = 0;
	CHECK(pm_store_put_item(r, &i6, &err) != PM_OK);
	CHECK(strstr(err.msg, on_pg ? "read-only" : "readonly") != NULL);

	/* Full-text index follows inserts and upserts. */
	CHECK_INT(fts_id(&db, "apple"),
		  rq_int(&db, "SELECT id FROM items WHERE key = 'k1'"));
	CHECK_INT(fts_count(&db, "juice"), 1);
	CHECK_INT(fts_count(&db, "blue"),
		  rq_int(&db, "SELECT COUNT(*) FROM items"));
	pm_item_rec i1b = i1;
	i1b.title = "Green Pear";
	i1b.asset = NULL;
	CHECK_INT(pm_store_put_item(s, &i1b, &err), PM_OK);
	CHECK_INT(fts_count(&db, "apple"), 0);
	CHECK_INT(fts_id(&db, "pear"),
		  rq_int(&db, "SELECT id FROM items WHERE key = 'k1'"));
	CHECK_INT(rq_int(&db, "SELECT asset_id FROM items WHERE key = 'k1'"),
		  rq_int(&db, "SELECT id FROM assets WHERE sha256 = 'sha-A'"));
	if (db.sq)
		CHECK_INT(sqlite3_exec(db.sq,
				       "INSERT INTO items_fts(items_fts, rank)"
				       " VALUES('integrity-check', 1)",
				       NULL, NULL, NULL),
			  SQLITE_OK);

	/* Job finish. */
	CHECK_INT(pm_store_job_finish(s, job, "done", &err), PM_OK);
	CHECK_INT(rq_int(&db, "SELECT finished IS NOT NULL AND state = 'done'"
			      " FROM jobs WHERE key = 'aaaa'"),
		  1);
	raw_close(&db);
	pm_store_close(r);
	pm_store_close(s);
}

/* The dead-letter queue: listing failed items with filters, and sending
 * them back (forgotten, so the next run does them). */
static int count_failed(const pm_failed_info *fi, void *ud)
{
	(void)fi;
	(*(int *)ud)++;
	return 0;
}

static void test_dlq(void)
{
	pm_err err = {{0}};
	pm_store *s = NULL;
	int64_t job = 0, n = -1;
	int run = 0, seen;
	pm_item_state is;
	pm_status code;

	CHECK_INT(pm_store_open(store_url("dlq.db"), false, &s, &err), PM_OK);
	if (!s)
		return;
	CHECK_INT(pm_store_job_open(s, &spec1, &job, &run, &err), PM_OK);
	pm_item_rec a = item_rec(job, "a"), b = item_rec(job, "b"),
		    c = item_rec(job, "c");
	a.status = PM_ERR_IO;
	a.error = "HTTP 500 (after 4 attempts)";
	a.attempts = 4;
	b.status = PM_ERR_DECODE;
	b.error = "truncated";
	CHECK_INT(pm_store_begin(s, &err), PM_OK);
	CHECK_INT(pm_store_put_item(s, &a, &err), PM_OK);
	CHECK_INT(pm_store_put_item(s, &b, &err), PM_OK);
	CHECK_INT(pm_store_put_item(s, &c, &err), PM_OK);
	CHECK_INT(pm_store_commit(s, &err), PM_OK);

	seen = 0;
	CHECK_INT(
	    pm_store_failed(s, 0, NULL, NULL, 0, count_failed, &seen, &err),
	    PM_OK);
	CHECK_INT(seen, 2); /* the done item is not a dead letter */
	seen = 0;
	CHECK_INT(pm_store_failed(s, job, "io_error", NULL, 0, count_failed,
				  &seen, &err),
		  PM_OK);
	CHECK_INT(seen, 1);
	seen = 0;
	CHECK_INT(pm_store_failed(s, job + 1, NULL, NULL, 0, count_failed,
				  &seen, &err),
		  PM_OK);
	CHECK_INT(seen, 0);

	CHECK_INT(pm_store_retry_failed(s, job, "io_error", NULL, &n, &err),
		  PM_OK);
	CHECK_INT(n, 1);
	CHECK_INT(pm_store_item_state(s, job, "a", &is, &code, &err), PM_OK);
	CHECK_INT(is, PM_ITEM_NONE);
	CHECK_INT(pm_store_item_state(s, job, "b", &is, &code, &err), PM_OK);
	CHECK_INT(is, PM_ITEM_FAILED);
	CHECK_INT(code, PM_ERR_DECODE);
	CHECK_INT(pm_store_retry_failed(s, 0, NULL, NULL, &n, &err), PM_OK);
	CHECK_INT(n, 1);
	CHECK_INT(pm_store_item_state(s, job, "c", &is, &code, &err), PM_OK);
	CHECK_INT(is, PM_ITEM_DONE);
	pm_store_close(s);
}

/* ---- serve's side: queued jobs, browsing, search ---- */

typedef struct seen_items {
	int n;
	char keys[8][16];
	int64_t last;
	int outputs;
} seen_items;

static int items_cb(const pm_item_info *ii, void *ud)
{
	seen_items *si = ud;
	if (si->n < 8)
		snprintf(si->keys[si->n], 16, "%s", ii->key);
	si->n++;
	si->last = (int64_t)ii->ordinal;
	return 0;
}

static int outputs_cb(const pm_output_info *oi, void *ud)
{
	seen_items *si = ud;
	if (si->outputs < 8)
		snprintf(si->keys[si->outputs], 16, "%s", oi->name);
	si->outputs++;
	return 0;
}

static int hits_cb(const pm_search_hit *h, void *ud)
{
	seen_items *si = ud;
	if (si->n < 8)
		snprintf(si->keys[si->n], 16, "%s", h->key);
	si->n++;
	return 0;
}

static int phash_cb(const char *sha, const char *ph, uint64_t h, void *ud)
{
	seen_items *si = ud;
	(void)ph;
	if (strcmp(sha, "sha-S1") == 0 && h == 0xF00DFACE12345678ull)
		si->outputs++;
	si->n++;
	return 0;
}

static int state_cb(const char *state, int64_t n, void *ud)
{
	seen_items *si = ud;
	if (strcmp(state, "queued") == 0)
		si->n += (int)n;
	return 0;
}

static int job_name_cb(const pm_job_info *ji, void *ud)
{
	seen_items *si = ud;
	snprintf(si->keys[0], 16, "%s", ji->state);
	snprintf(si->keys[1], 16, "%s", ji->name ? ji->name : "");
	snprintf(si->keys[2], 16, "%s", ji->error ? ji->error : "");
	si->last = ji->runs;
	return 0;
}

static void test_serve_queries(void)
{
	pm_err err = {{0}};
	pm_store *s = NULL;
	int64_t job = 0, again = 0, job_open = 0, dlq = -1;
	int run = 0;
	seen_items si;
	char q[256], title[64];
	pm_text_query tq = {.match = q, .limit = 10};

	CHECK_INT(pm_store_open(store_url("serve.db"), false, &s, &err), PM_OK);
	if (!s)
		return;
	/* A queued job: no run yet; created again = the same job. */
	CHECK_INT(pm_store_job_create(s, &spec1, "spring", &job, &err), PM_OK);
	CHECK_INT(pm_store_job_create(s, &spec1, "spring", &again, &err),
		  PM_OK);
	CHECK_INT(again, job);
	memset(&si, 0, sizeof si);
	CHECK_INT(pm_store_job_get(s, job, job_name_cb, &si, &err), PM_OK);
	CHECK_STR(si.keys[0], "queued");
	CHECK_STR(si.keys[1], "spring");
	CHECK_INT(si.last, 0);
	CHECK_INT(pm_store_job_get(s, job + 100, NULL, NULL, &err),
		  PM_ERR_NOT_FOUND);
	memset(&si, 0, sizeof si);
	CHECK_INT(pm_store_stats(s, state_cb, &si, &dlq, &err), PM_OK);
	CHECK_INT(si.n, 1);
	CHECK_INT(dlq, 0);
	/* pm_run opens it: run 1, running. */
	CHECK_INT(pm_store_job_open(s, &spec1, &job_open, &run, &err), PM_OK);
	CHECK_INT(job_open, job);
	CHECK_INT(run, 1);
	CHECK_INT(pm_store_job_state(s, job, "failed", "boom", true, &err),
		  PM_OK);
	memset(&si, 0, sizeof si);
	CHECK_INT(pm_store_job_get(s, job, job_name_cb, &si, &err), PM_OK);
	CHECK_STR(si.keys[0], "failed");
	CHECK_STR(si.keys[2], "boom");
	CHECK_INT(pm_store_job_state(s, 999, "done", NULL, true, &err),
		  PM_ERR_NOT_FOUND);

	/* Five items: S1..S4 done (S3 the duplicate of S1), one failed. */
	pm_asset_rec a1 = asset_rec("sha-S1"), a2 = asset_rec("sha-S2");
	pm_item_rec it[5];
	const char *keys[5] = {"k1", "k2", "k3", "k4", "k5"};
	for (int i = 0; i < 5; i++) {
		it[i] = item_rec(job, keys[i]);
		it[i].ordinal = (uint64_t)(i + 1) * 10;
	}
	it[0].sha256 = "sha-S1";
	it[0].asset = &a1;
	it[0].title = "Blue ceramic teapot";
	it[1].sha256 = "sha-S2";
	it[1].asset = &a2;
	it[1].title = "Green garden chair";
	it[2].sha256 = "sha-S1";
	it[2].duplicate = true;
	it[3].title = "Teapot lid, spare";
	it[4].status = PM_ERR_DECODE;
	it[4].error = "truncated";
	CHECK_INT(pm_store_begin(s, &err), PM_OK);
	for (int i = 0; i < 5; i++)
		CHECK_INT(pm_store_put_item(s, &it[i], &err), PM_OK);
	CHECK_INT(pm_store_commit(s, &err), PM_OK);

	/* Paging: limit 2 from cursor 0 then from the last ordinal. */
	memset(&si, 0, sizeof si);
	CHECK_INT(pm_store_items(s, job, NULL, 0, 2, items_cb, &si, &err),
		  PM_OK);
	CHECK_INT(si.n, 2);
	CHECK_STR(si.keys[1], "k2");
	CHECK_INT(si.last, 20);
	memset(&si, 0, sizeof si);
	CHECK_INT(pm_store_items(s, job, NULL, 20, 10, items_cb, &si, &err),
		  PM_OK);
	CHECK_INT(si.n, 3);
	CHECK_STR(si.keys[0], "k3");
	memset(&si, 0, sizeof si);
	CHECK_INT(pm_store_items(s, job, "failed", 0, 10, items_cb, &si, &err),
		  PM_OK);
	CHECK_INT(si.n, 1);
	CHECK_STR(si.keys[0], "k5");

	/* Outputs: all of an asset, one by name, none of an unknown one. */
	memset(&si, 0, sizeof si);
	CHECK_INT(
	    pm_store_outputs(s, "sha-S1", "ph1", NULL, outputs_cb, &si, &err),
	    PM_OK);
	CHECK_INT(si.outputs, 3);
	memset(&si, 0, sizeof si);
	CHECK_INT(pm_store_outputs(s, "sha-S1", NULL, "512.webp", outputs_cb,
				   &si, &err),
		  PM_OK);
	CHECK_INT(si.outputs, 1);
	CHECK_STR(si.keys[0], "512.webp");
	memset(&si, 0, sizeof si);
	CHECK_INT(
	    pm_store_outputs(s, "sha-none", NULL, NULL, outputs_cb, &si, &err),
	    PM_OK);
	CHECK_INT(si.outputs, 0);
	memset(&si, 0, sizeof si);
	CHECK_INT(pm_store_recent_outputs(s, 10, outputs_cb, &si, &err), PM_OK);
	CHECK_INT(si.outputs, 2); /* one per asset */

	/* Full text: every word must match; user syntax is quoted away. */
	CHECK(pm_store_fts_query("teapot", q, sizeof q));
	memset(&si, 0, sizeof si);
	CHECK_INT(pm_store_search_text(s, &tq, hits_cb, &si, &err), PM_OK);
	CHECK_INT(si.n, 2);
	CHECK(pm_store_fts_query("ceramic TEAPOT", q, sizeof q));
	memset(&si, 0, sizeof si);
	CHECK_INT(pm_store_search_text(s, &tq, hits_cb, &si, &err), PM_OK);
	CHECK_INT(si.n, 1);
	CHECK_STR(si.keys[0], "k1");
	CHECK(pm_store_fts_query("\"teapot\" OR NEAR(* -", q, sizeof q));
	CHECK_STR(q, "\"teapot\" \"OR\" \"NEAR\"");
	memset(&si, 0, sizeof si);
	CHECK_INT(pm_store_search_text(s, &tq, hits_cb, &si, &err), PM_OK);
	CHECK_INT(si.n, 0);
	CHECK(!pm_store_fts_query("  *()\" - ", q, sizeof q));
	CHECK(!pm_store_fts_query("teapot", q, 5));

	/* Hashes and titles for search by image. */
	memset(&si, 0, sizeof si);
	CHECK_INT(pm_store_phashes(s, phash_cb, &si, &err), PM_OK);
	CHECK_INT(si.n, 2);
	CHECK_INT(si.outputs, 1); /* the 64-bit hash survives the round trip */
	CHECK_INT(pm_store_title(s, "sha-S2", title, sizeof title, &err),
		  PM_OK);
	CHECK_STR(title, "Green garden chair");
	CHECK_INT(pm_store_title(s, "sha-none", title, sizeof title, &err),
		  PM_OK);
	CHECK_STR(title, "");
	CHECK_INT(pm_store_stats(s, NULL, NULL, &dlq, &err), PM_OK);
	CHECK_INT(dlq, 1);
	pm_store_close(s);
}

/* ---- image text in full-text search; embeddings; items by asset ---- */

typedef struct text_hits {
	int n;
	char keys[8][16];
	char snippet[256];
	bool has_text[8];
} text_hits;

static int text_hits_cb(const pm_search_hit *h, void *ud)
{
	text_hits *t = ud;
	if (t->n < 8) {
		snprintf(t->keys[t->n], 16, "%s", h->key);
		t->has_text[t->n] = h->has_text;
	}
	if (t->n == 0)
		snprintf(t->snippet, sizeof t->snippet, "%s",
			 h->snippet ? h->snippet : "");
	t->n++;
	return 0;
}

static int text_search(pm_store *s, const char *words, int64_t job,
		       const char *cat, bool has_text, text_hits *t)
{
	char q[256];
	pm_err err = {{0}};
	pm_text_query tq = {.match = q,
			    .job_id = job,
			    .category = cat,
			    .has_text = has_text,
			    .limit = 10};
	memset(t, 0, sizeof *t);
	if (!pm_store_fts_query(words, q, sizeof q))
		return -1;
	return pm_store_search_text(s, &tq, text_hits_cb, t, &err);
}

/* The analyze stage's tags are searchable (the string elements of an
 * array), beside the caption; tags that are one string or a number, and
 * metadata that is not JSON, add nothing and break nothing. */
static void test_tags_search(void)
{
	pm_err err = {{0}};
	pm_store *s = NULL;
	int64_t job = 0;
	text_hits t;

	CHECK_INT(pm_store_open(store_url("tags.db"), false, &s, &err), PM_OK);
	if (!s)
		return;
	CHECK_INT(pm_store_job_open(s, &spec1, &job, NULL, &err), PM_OK);
	pm_asset_rec a = asset_rec("sha-G1"), b = asset_rec("sha-G2"),
		     c = asset_rec("sha-G3");
	a.meta_json = "{\"caption\":\"A red mug.\",\"analysis\":"
		      "{\"caption\":\"A red mug.\",\"tags\":"
		      "[\"ceramic\",\"kitchenware\",7,{\"x\":\"hidden\"}]}}";
	b.meta_json = "{\"analysis\":{\"tags\":\"porcelain\"}}";
	c.meta_json = "{\"analysis\":{\"tags\":[\"ceramic\"";
	pm_item_rec it[3];
	const char *keys[3] = {"g1", "g2", "g3"};
	pm_asset_rec *as[3] = {&a, &b, &c};
	for (int i = 0; i < 3; i++) {
		it[i] = item_rec(job, keys[i]);
		it[i].sha256 = as[i]->sha256;
		it[i].asset = as[i];
		it[i].title = "Item";
	}
	CHECK_INT(pm_store_begin(s, &err), PM_OK);
	for (int i = 0; i < 3; i++)
		CHECK_INT(pm_store_put_item(s, &it[i], &err), PM_OK);
	CHECK_INT(pm_store_commit(s, &err), PM_OK);
	CHECK_INT(text_search(s, "kitchenware", 0, NULL, false, &t), PM_OK);
	CHECK_INT(t.n, 1);
	CHECK_STR(t.keys[0], "g1");
	CHECK_INT(text_search(s, "ceramic", 0, NULL, false, &t), PM_OK);
	CHECK_INT(t.n, 1); /* g3's metadata is not JSON */
	CHECK_INT(text_search(s, "mug", 0, NULL, false, &t), PM_OK);
	CHECK_INT(t.n, 1);
	CHECK_INT(text_search(s, "porcelain", 0, NULL, false, &t), PM_OK);
	CHECK_INT(t.n, 0);
	CHECK_INT(text_search(s, "hidden", 0, NULL, false, &t), PM_OK);
	CHECK_INT(t.n, 0);
	pm_store_close(s);
}

typedef struct vec_seen {
	int n, bad;
	float first[4];
} vec_seen;

static int vec_cb(const char *sha, const float *v, int dim, void *ud)
{
	vec_seen *vs = ud;
	if (dim != 4 || !sha)
		vs->bad++;
	else if (vs->n == 0)
		memcpy(vs->first, v, sizeof vs->first);
	vs->n++;
	return 0;
}

typedef struct ai_seen {
	int n;
	char keys[8][16];
	int width;
	bool has_phash;
	double sharp;
} ai_seen;

static int ai_cb(const pm_asset_item *it, void *ud)
{
	ai_seen *a = ud;
	if (a->n < 8)
		snprintf(a->keys[a->n], 16, "%s", it->key);
	a->width = it->width;
	a->has_phash = it->has_phash;
	a->sharp = it->sharpness;
	a->n++;
	return 0;
}

static void test_text_and_vectors(void)
{
	pm_err err = {{0}};
	pm_store *s = NULL;
	int64_t job = 0, job2 = 0;
	text_hits t;
	const float v1[4] = {1, 0, 0, 0}, v2[4] = {0.6f, 0.8f, 0, 0};
	float got[8];
	int dim = -1;

	CHECK_INT(pm_store_open(store_url("text.db"), false, &s, &err), PM_OK);
	if (!s)
		return;
	pm_job_spec spec2 = spec1;
	spec2.key = "bbbb";
	CHECK_INT(pm_store_job_open(s, &spec1, &job, NULL, &err), PM_OK);
	CHECK_INT(pm_store_job_open(s, &spec2, &job2, NULL, &err), PM_OK);

	pm_asset_rec a1 = asset_rec("sha-T1"), a2 = asset_rec("sha-T2");
	a1.meta_json = "{\"ocr\":{\"text\":\"Preheat the oven to 200 C.\\n"
		       "Whisk two eggs\"}}";
	a1.embedding = v1;
	a1.embedding_dim = 4;
	a1.embedding_model = "m1";
	a1.sharpness = 42.5;
	a2.embedding = v2;
	a2.embedding_dim = 4;
	a2.embedding_model = "m1";
	pm_item_rec it[4];
	const char *keys[4] = {"r1", "r2", "r3", "r4"};
	for (int i = 0; i < 4; i++) {
		it[i] = item_rec(i < 3 ? job : job2, keys[i]);
		it[i].ordinal = (uint64_t)i + 1;
	}
	it[0].sha256 = "sha-T1";
	it[0].asset = &a1;
	it[0].title = "Recipe card";
	it[0].category = "cards";
	it[1].sha256 = "sha-T2";
	it[1].asset = &a2;
	it[1].title = "Oven glove";
	it[1].category = "kitchen";
	it[2].sha256 = "sha-T1"; /* same bytes: the same image text */
	it[2].duplicate = true;
	it[2].title = "Card copy";
	it[3].title = "Whisk";
	it[3].category = "kitchen";
	CHECK_INT(pm_store_begin(s, &err), PM_OK);
	for (int i = 0; i < 4; i++)
		CHECK_INT(pm_store_put_item(s, &it[i], &err), PM_OK);
	CHECK_INT(pm_store_commit(s, &err), PM_OK);

	/* OCR text is searchable, for both items of the source. */
	CHECK_INT(text_search(s, "preheat", 0, NULL, false, &t), PM_OK);
	CHECK_INT(t.n, 2);
	CHECK(t.has_text[0] && t.has_text[1]);
	CHECK(strstr(t.snippet, "[Preheat]") != NULL);
	/* title outranks image text: "oven" is r2's title, r1's text */
	CHECK_INT(text_search(s, "oven", 0, NULL, false, &t), PM_OK);
	CHECK_INT(t.n, 3);
	CHECK_STR(t.keys[0], "r2");
	CHECK(!t.has_text[0]);
	/* filters: has-text, category, job */
	CHECK_INT(text_search(s, "oven", 0, NULL, true, &t), PM_OK);
	CHECK_INT(t.n, 2);
	CHECK_INT(text_search(s, "oven", 0, "kitchen", false, &t), PM_OK);
	CHECK_INT(t.n, 1);
	CHECK_STR(t.keys[0], "r2");
	CHECK_INT(text_search(s, "whisk", 0, NULL, false, &t), PM_OK);
	CHECK_INT(t.n, 3); /* r1, r3 (text) and r4 (title) */
	CHECK_INT(text_search(s, "whisk", job2, NULL, false, &t), PM_OK);
	CHECK_INT(t.n, 1);
	CHECK_STR(t.keys[0], "r4");
	CHECK_INT(text_search(s, "whisk", job2, NULL, true, &t), PM_OK);
	CHECK_INT(t.n, 0);

	/* Embeddings: stored with the asset, read back bit for bit. */
	vec_seen vs = {0};
	CHECK_INT(pm_store_embeddings(s, "m1", vec_cb, &vs, &err), PM_OK);
	CHECK_INT(vs.n, 2);
	CHECK_INT(vs.bad, 0);
	memset(&vs, 0, sizeof vs);
	CHECK_INT(pm_store_embeddings(s, "other", vec_cb, &vs, &err), PM_OK);
	CHECK_INT(vs.n, 0);
	CHECK_INT(pm_store_embedding_get(s, "sha-T2", "m1", got, 8, &dim, &err),
		  PM_OK);
	CHECK_INT(dim, 4);
	CHECK(memcmp(got, v2, sizeof v2) == 0);
	CHECK_INT(pm_store_embedding_get(s, "sha-T2", "m1", got, 2, &dim, &err),
		  PM_ERR_INTERNAL);
	CHECK_INT(
	    pm_store_embedding_get(s, "sha-none", "m1", got, 8, &dim, &err),
	    PM_OK);
	CHECK_INT(dim, 0);
	/* put replaces */
	CHECK_INT(pm_store_embedding_put(s, "sha-T2", "m1", v1, 4, &err),
		  PM_OK);
	CHECK_INT(pm_store_embedding_get(s, "sha-T2", "m1", got, 8, &dim, &err),
		  PM_OK);
	CHECK(dim == 4 && got[0] == 1.0f && got[1] == 0.0f);

	/* Items by asset and by reference. */
	ai_seen ai = {0};
	CHECK_INT(pm_store_asset_items(s, 0, "sha-T1", ai_cb, &ai, &err),
		  PM_OK);
	CHECK_INT(ai.n, 2);
	CHECK_STR(ai.keys[0], "r1");
	CHECK_STR(ai.keys[1], "r3");
	CHECK_INT(ai.width, 2000);
	CHECK(ai.has_phash);
	CHECK(ai.sharp > 42 && ai.sharp < 43);
	memset(&ai, 0, sizeof ai);
	CHECK_INT(pm_store_asset_items(s, 0, NULL, ai_cb, &ai, &err), PM_OK);
	CHECK_INT(ai.n, 3); /* r4 has no asset */
	memset(&ai, 0, sizeof ai);
	CHECK_INT(pm_store_asset_items(s, job2, NULL, ai_cb, &ai, &err), PM_OK);
	CHECK_INT(ai.n, 0);
	memset(&ai, 0, sizeof ai);
	CHECK_INT(pm_store_find_items(s, 0, "r2", ai_cb, &ai, &err), PM_OK);
	CHECK_INT(ai.n, 1);
	CHECK_STR(ai.keys[0], "r2");
	pm_store_close(s);
}

/* A v5 database with an item whose asset has OCR text: after migration
 * the text is in the index. */
static void test_migration_text(void)
{
	pm_err err = {{0}};
	void *conn = NULL;
	const char *p = dbpath("v5.db");
	text_hits t;

	CHECK_INT(pm_sqlite_open_at(p, 5, &conn, &err), PM_OK);
	pm_store_sqlite.close(conn);
	sqlite3 *db = raw(p);
	CHECK_INT(
	    sqlite3_exec(
		db,
		"INSERT INTO jobs (key, catalog, pipeline, pipeline_hash,"
		" pipeline_json, out_dir, created, updated)"
		" VALUES ('old', 'c', 'p', 'h', '{}', '/o', 0, 0);"
		"INSERT INTO assets (sha256, pipeline_hash, meta_json,"
		" created, updated) VALUES ('s1', 'h',"
		" '{\"ocr\":{\"text\":\"fresh basil\"}}', 0, 0);"
		"INSERT INTO items (job_id, key, ordinal, title, state, code,"
		" sha256, asset_id, created, updated) VALUES (1, 'k', 1,"
		" 'Pesto', 'done', 'ok', 's1', 1, 0, 0);",
		NULL, NULL, NULL),
	    SQLITE_OK);
	sqlite3_close(db);
	pm_store *s = NULL;
	/* a query command opens it: migrated once, then queried */
	CHECK_INT(pm_store_open_existing(dbpath("none.db"), &s, &err),
		  PM_ERR_NOT_FOUND);
	CHECK(access(dbpath("none.db"), F_OK) != 0);
	CHECK_INT(pm_store_open_existing(p, &s, &err), PM_OK);
	if (!s)
		return;
	CHECK_INT(pm_store_schema_version(s), pm_sqlite_latest_version());
	CHECK_INT(text_search(s, "basil", 0, NULL, true, &t), PM_OK);
	CHECK_INT(t.n, 1);
	CHECK_INT(text_search(s, "pesto", 0, NULL, false, &t), PM_OK);
	CHECK_INT(t.n, 1);
	pm_store_close(s);
	db = raw(p);
	/* the asset's text changing re-indexes its items */
	CHECK_INT(sqlite3_exec(db,
			       "UPDATE assets SET meta_json ="
			       " '{\"caption\":\"a jar of pesto sauce\"}'",
			       NULL, NULL, NULL),
		  SQLITE_OK);
	CHECK_INT(q_int(db, "SELECT COUNT(*) FROM items_fts"
			    " WHERE items_fts MATCH 'basil'"),
		  0);
	CHECK_INT(q_int(db, "SELECT COUNT(*) FROM items_fts"
			    " WHERE items_fts MATCH 'jar'"),
		  1);
	CHECK_INT(sqlite3_exec(db,
			       "INSERT INTO items_fts(items_fts, rank)"
			       " VALUES('integrity-check', 1)",
			       NULL, NULL, NULL),
		  SQLITE_OK);
	sqlite3_close(db);
}

static int prov_rows(const pm_provider_day *d, void *ud)
{
	pm_provider_day *out = ud;
	int i = 0;

	while (out[i].provider[0])
		i++;
	if (i < 3)
		out[i] = *d;
	return 0;
}

/* Search provider counters per day: added up per (provider, day), listed
 * by name then day from since_day on. */
static void test_provider_days(void)
{
	pm_err err = {{0}};
	pm_store *s = NULL;
	pm_provider_day a = {.provider = "google",
			     .day = 20000,
			     .requests = 2,
			     .found = 1,
			     .empty = 1,
			     .results = 3,
			     .latency_ms = 10};
	pm_provider_day rows[4];

	CHECK_INT(pm_store_open(store_url("prov.db"), false, &s, &err), PM_OK);
	if (!s)
		return;
	CHECK_INT(pm_store_provider_add(s, &a, &err), PM_OK);
	a.requests = 5;
	a.failed = 1;
	a.found = a.empty = a.results = 0;
	CHECK_INT(pm_store_provider_add(s, &a, &err), PM_OK);
	a.day = 20001;
	CHECK_INT(pm_store_provider_add(s, &a, &err), PM_OK);
	snprintf(a.provider, sizeof a.provider, "bing");
	a.day = 19999; /* before since_day */
	CHECK_INT(pm_store_provider_add(s, &a, &err), PM_OK);
	memset(rows, 0, sizeof rows);
	CHECK_INT(pm_store_provider_days(s, 20000, prov_rows, rows, &err),
		  PM_OK);
	CHECK_STR(rows[0].provider, "google");
	CHECK_INT(rows[0].day, 20000);
	CHECK_INT(rows[0].requests, 7);
	CHECK_INT(rows[0].found, 1);
	CHECK_INT(rows[0].empty, 1);
	CHECK_INT(rows[0].failed, 1);
	CHECK_INT(rows[0].results, 3);
	CHECK(rows[0].latency_ms == 20);
	CHECK_STR(rows[1].provider, "google");
	CHECK_INT(rows[1].day, 20001);
	CHECK_INT(rows[1].requests, 5);
	CHECK(rows[2].provider[0] == '\0');
	/* every day: by provider name first */
	memset(rows, 0, sizeof rows);
	CHECK_INT(pm_store_provider_days(s, 0, prov_rows, rows, &err), PM_OK);
	CHECK_STR(rows[0].provider, "bing");
	CHECK_INT(rows[0].day, 19999);
	CHECK_INT(rows[0].requests, 5);
	CHECK_STR(rows[1].provider, "google");
	CHECK_INT(rows[2].day, 20001);
	pm_store_close(s);
}

/* SQLite: a v7 store (before provider_days) is migrated to have them. */
static void test_migration_providers(void)
{
	pm_err err = {{0}};
	pm_store *s = NULL;
	pm_provider_day a = {.provider = "google", .day = 20000, .requests = 4};
	pm_provider_day rows[4];
	void *conn = NULL;
	const char *p = dbpath("prov7.db");

	CHECK_INT(pm_sqlite_open_at(p, 7, &conn, &err), PM_OK);
	if (conn)
		pm_store_sqlite.close(conn);
	CHECK_INT(pm_store_open(p, false, &s, &err), PM_OK);
	if (!s)
		return;
	CHECK_INT(pm_store_schema_version(s), pm_sqlite_latest_version());
	CHECK_INT(pm_store_provider_add(s, &a, &err), PM_OK);
	memset(rows, 0, sizeof rows);
	CHECK_INT(pm_store_provider_days(s, 0, prov_rows, rows, &err), PM_OK);
	CHECK_STR(rows[0].provider, "google");
	CHECK_INT(rows[0].requests, 4);
	CHECK(rows[1].provider[0] == '\0');
	pm_store_close(s);
}

/* Ads counts of a job (pm_store_job_ads): placeholders, cutouts made
 * and skipped, over the job's done items that are not duplicates. */
typedef struct near_seen {
	int n;
	char sha[8][16];
	int d[8];
} near_seen;

static int near_cb(const char *sha, const char *ph, uint64_t h, int d, void *ud)
{
	near_seen *ns = ud;
	(void)ph;
	(void)h;
	if (ns->n < 8) {
		snprintf(ns->sha[ns->n], sizeof ns->sha[0], "%s", sha);
		ns->d[ns->n] = d;
	}
	ns->n++;
	return 0;
}

/* Hamming-distance search in SQL: nearest first, one per source, the
 * distance bound and the limit; the top bit of the hash counts. */
static void test_phash_near(void)
{
	pm_err err = {{0}};
	pm_store *s = NULL;
	int64_t job = 0;
	const uint64_t q = 0xF00DFACE12345678ull;
	/* distances 0, 1 (the sign bit), 3, 40, and no hash */
	const uint64_t h[5] = {q, q ^ (1ull << 63), q ^ 0x7ull,
			       q ^ 0xFFFFFFFFFFull, 0};
	const char *sha[5] = {"near-A", "near-B", "near-C", "near-D", "near-E"};
	pm_asset_rec a[6];
	pm_item_rec it;
	near_seen ns;

	CHECK_INT(pm_store_open(store_url("near.db"), false, &s, &err), PM_OK);
	if (!s)
		return;
	CHECK_INT(pm_store_job_open(s, &spec1, &job, NULL, &err), PM_OK);
	for (int i = 0; i < 5; i++) {
		a[i] = asset_rec(sha[i]);
		a[i].phash = h[i];
		a[i].has_phash = i < 4;
		it = item_rec(job, sha[i]);
		it.ordinal = (uint64_t)i + 1;
		it.sha256 = sha[i];
		it.asset = &a[i];
		CHECK_INT(pm_store_put_item(s, &it, &err), PM_OK);
	}
	/* a second pipeline's asset of the same source: still one hit */
	a[5] = asset_rec("near-C");
	a[5].pipeline_hash = "ph2";
	a[5].phash = h[2];
	it = item_rec(job, "near-C2");
	it.ordinal = 6;
	it.sha256 = "near-C";
	it.asset = &a[5];
	CHECK_INT(pm_store_put_item(s, &it, &err), PM_OK);

	memset(&ns, 0, sizeof ns);
	CHECK_INT(pm_store_phash_near(s, q, 10, 10, near_cb, &ns, &err), PM_OK);
	CHECK_INT(ns.n, 3);
	CHECK_STR(ns.sha[0], "near-A");
	CHECK_INT(ns.d[0], 0);
	CHECK_STR(ns.sha[1], "near-B");
	CHECK_INT(ns.d[1], 1);
	CHECK_STR(ns.sha[2], "near-C");
	CHECK_INT(ns.d[2], 3);
	memset(&ns, 0, sizeof ns);
	CHECK_INT(pm_store_phash_near(s, q, 64, 2, near_cb, &ns, &err), PM_OK);
	CHECK_INT(ns.n, 2); /* the limit */
	memset(&ns, 0, sizeof ns);
	CHECK_INT(pm_store_phash_near(s, q, 64, 10, near_cb, &ns, &err), PM_OK);
	CHECK_INT(ns.n, 4); /* the one without a hash is never a hit */
	CHECK_INT(ns.d[3], 40);
	memset(&ns, 0, sizeof ns);
	CHECK_INT(pm_store_phash_near(s, ~q, 20, 10, near_cb, &ns, &err),
		  PM_OK);
	CHECK_INT(ns.n, 0);
	CHECK_INT(pm_store_phash_near(s, q, 65, 10, near_cb, &ns, &err),
		  PM_ERR_USAGE);
	CHECK_INT(pm_store_phash_near(s, q, 10, 0, near_cb, &ns, &err),
		  PM_ERR_USAGE);
	pm_store_close(s);
}

static void test_job_ads(void)
{
	pm_err err = {{0}};
	pm_store *s = NULL;
	int64_t job = 0, other = 0, ph = -1, rm = -1, sk = -1;
	const char *meta[4] = {
	    "{\"placeholder\":{\"reason\":\"no image\"}}",
	    "{\"cutout\":{\"skipped\":false}}",
	    "{\"cutout\":{\"skipped\":true,\"reason\":\"x\"}}",
	    "{\"placeholder\":null,\"cutout\":{\"skipped\":\"maybe\"}}",
	};
	const char *sha[4] = {"sha-P", "sha-Q", "sha-R", "sha-S"};
	const char *keys[4] = {"p", "q", "r", "s"};
	pm_asset_rec a[4];
	pm_item_rec it;

	CHECK_INT(pm_store_open(store_url("ads.db"), false, &s, &err), PM_OK);
	if (!s)
		return;
	pm_job_spec spec2 = spec1;
	spec2.key = "eeee";
	CHECK_INT(pm_store_job_open(s, &spec1, &job, NULL, &err), PM_OK);
	CHECK_INT(pm_store_job_open(s, &spec2, &other, NULL, &err), PM_OK);
	for (int i = 0; i < 4; i++) {
		a[i] = asset_rec(sha[i]);
		a[i].meta_json = meta[i];
		it = item_rec(job, keys[i]);
		it.ordinal = (uint64_t)i + 1;
		it.sha256 = sha[i];
		it.asset = &a[i];
		CHECK_INT(pm_store_put_item(s, &it, &err), PM_OK);
	}
	/* a duplicate of the placeholder, a failed row: not counted */
	it = item_rec(job, "p2");
	it.ordinal = 5;
	it.sha256 = "sha-P";
	it.duplicate = true;
	CHECK_INT(pm_store_put_item(s, &it, &err), PM_OK);
	it = item_rec(job, "bad");
	it.ordinal = 6;
	it.status = PM_ERR_NOT_FOUND;
	CHECK_INT(pm_store_put_item(s, &it, &err), PM_OK);
	CHECK_INT(pm_store_job_ads(s, job, &ph, &rm, &sk, &err), PM_OK);
	CHECK_INT(ph, 1);
	CHECK_INT(rm, 1);
	CHECK_INT(sk, 1);
	CHECK_INT(pm_store_job_ads(s, other, &ph, &rm, &sk, &err), PM_OK);
	CHECK_INT(ph + rm + sk, 0);
	pm_store_close(s);
}

static void test_url_mask(void)
{
	char out[128];
	pm_store_url_mask("postgresql://u:pw@h:5432/db", out, sizeof out);
	CHECK_STR(out, "postgresql://u:***@h:5432/db");
	pm_store_url_mask("postgres://u@h/db?sslmode=require&password=x&a=b",
			  out, sizeof out);
	CHECK_STR(out, "postgres://u@h/db?sslmode=require&password=***&a=b");
	pm_store_url_mask("postgres://h/db", out, sizeof out);
	CHECK_STR(out, "postgres://h/db");
	/* an '@' after the host is not a password's end */
	pm_store_url_mask("postgres://h/db?x=a:b@c", out, sizeof out);
	CHECK_STR(out, "postgres://h/db?x=a:b@c");
	pm_store_url_mask("/tmp/a:b@c.db", out, sizeof out);
	CHECK_STR(out, "/tmp/a:b@c.db");
	/* libpq reads "pa?ss" as the password: '?' does not end it */
	pm_store_url_mask("postgres://u:pa?ss@h/db", out, sizeof out);
	CHECK_STR(out, "postgres://u:***@h/db");
	/* a "://" inside a parameter is no authority */
	pm_store_url_mask("x?password=postgres://u:pw@h&a=s://v:pw2@w", out,
			  sizeof out);
	CHECK(strstr(out, "x?password=***&") == out);
	CHECK(strstr(out, "u:pw@") == NULL);
	pm_store_url_mask("postgres://u:pw@h/db", out, 12);
	CHECK_STR(out, "postgres://");
}

/* Bad input reaches the store as it is: text that is not UTF-8 (stored
 * as is by SQLite, with '?' for the bad bytes by PostgreSQL), quotes and
 * SQL in values, a search for SQL, markers with quotes and commas. */
static int item_title_cb(const pm_item_info *ii, void *ud)
{
	snprintf(ud, 64, "%s", ii->title ? ii->title : "(null)");
	return 0;
}

static int snip_cb(const pm_search_hit *h, void *ud)
{
	snprintf(ud, 256, "%s", h->snippet ? h->snippet : "");
	return 1;
}

static void test_hostile_values(void)
{
	pm_err err = {{0}};
	pm_store *s = NULL;
	int64_t job = 0;
	char got[256] = "", match[256];

	CHECK_INT(pm_store_open(store_url("hostile.db"), false, &s, &err),
		  PM_OK);
	if (!s)
		return;
	CHECK_INT(pm_store_job_open(s, &spec1, &job, NULL, &err), PM_OK);
	pm_item_rec it = item_rec(job, "k'1\"; DROP TABLE items; --");
	it.title = "caf\xe9 \xff\xfe quote' \"dq\" $1 %s";
	it.error = "cut in the middle of \xe2\x82";
	it.status = PM_ERR_DECODE;
	CHECK_INT(pm_store_begin(s, &err), PM_OK);
	CHECK_INT(pm_store_put_item(s, &it, &err), PM_OK);
	CHECK_INT(pm_store_commit(s, &err), PM_OK);
	CHECK_INT(pm_store_items(s, job, NULL, 0, 0, item_title_cb, got, &err),
		  PM_OK);
	CHECK_STR(got, on_pg ? "caf? ?? quote' \"dq\" $1 %s"
			     : "caf\xe9 \xff\xfe quote' \"dq\" $1 %s");
	pm_item_state is = PM_ITEM_NONE;
	pm_status code = PM_OK;
	CHECK_INT(pm_store_item_state(s, job, it.key, &is, &code, &err), PM_OK);
	CHECK_INT(is, PM_ITEM_FAILED);
	CHECK_INT(code, PM_ERR_DECODE);

	/* done, so it is in the text index; the search text is SQL */
	it.status = PM_OK;
	it.error = NULL;
	it.title = "Quoted 'thing' \x01marker\x02";
	CHECK_INT(pm_store_put_item(s, &it, &err), PM_OK);
	CHECK(pm_store_fts_query("thing'; DROP TABLE items; --", match,
				 sizeof match));
	pm_text_query q = {
	    .match = match, .mark_open = "\"<b>, x", .mark_close = "</b>"};
	got[0] = 0;
	CHECK_INT(pm_store_search_text(s, &q, snip_cb, got, &err), PM_OK);
	CHECK_STR(got, ""); /* "drop" and "table" are in no item */
	CHECK(pm_store_fts_query("thing", match, sizeof match));
	CHECK_INT(pm_store_search_text(s, &q, snip_cb, got, &err), PM_OK);
	CHECK(strstr(got, "\"<b>, xthing</b>") != NULL);
	int64_t items = 0;
	CHECK_INT(pm_store_job_counts(s, job, &items, NULL, NULL, NULL, &err),
		  PM_OK);
	CHECK_INT(items, 1);
	pm_store_close(s);
}

/* ---- PostgreSQL only ---- */

typedef struct open_arg {
	const char *url;
	pm_status st;
	int version;
} open_arg;

static void *open_thread(void *ud)
{
	open_arg *a = ud;
	pm_store *s = NULL;
	pm_err err = {{0}};
	a->st = pm_store_open(a->url, false, &s, &err);
	if (s)
		a->version = pm_store_schema_version(s);
	pm_store_close(s);
	return NULL;
}

static void test_pg_schema(void)
{
	pm_err err = {{0}};
	pm_store *s = NULL;
	const char *url = store_url("schema.db");

	/* An empty database has no pixmill schema: read-only does not make
	 * one. */
	CHECK_INT(pm_store_open(url, true, &s, &err), PM_ERR_NOT_FOUND);
	CHECK(strstr(err.msg, "no pixmill schema") != NULL);
	CHECK(s == NULL);
	CHECK_INT(pm_store_open_existing(url, &s, &err), PM_ERR_NOT_FOUND);

	/* Four processes' worth of first opens at once: each migration is
	 * applied once (the advisory lock), every open sees the latest. */
	pthread_t th[4];
	open_arg args[4];
	for (int i = 0; i < 4; i++) {
		args[i] = (open_arg){.url = url, .st = PM_ERR_INTERNAL};
		pthread_create(&th[i], NULL, open_thread, &args[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		CHECK_INT(args[i].st, PM_OK);
		CHECK_INT(args[i].version, pm_pg_latest_version());
	}
	rawdb db = raw_open(url);
	CHECK_INT(rq_int(&db, "SELECT COUNT(*) FROM pixmill_migrations"),
		  pm_pg_latest_version());
	CHECK_INT(rq_int(&db, "SELECT max(version) FROM pixmill_migrations"),
		  pm_pg_latest_version());
	CHECK_INT(rq_int(&db, "SELECT COUNT(*) FROM pg_indexes WHERE indexname"
			      " IN ('items_fts', 'items_job_state',"
			      " 'assets_phash', 'items_sha256')"),
		  4);
	CHECK_INT(rq_int(&db, "SELECT indexdef LIKE '%USING gin%'"
			      " FROM pg_indexes WHERE indexname = 'items_fts'"),
		  1);

	/* Read-only sessions cannot write; reopening is a no-op. */
	CHECK_INT(pm_store_open_existing(url, &s, &err), PM_OK);
	CHECK_INT(pm_store_schema_version(s), pm_pg_latest_version());
	int64_t job = 0;
	CHECK(pm_store_job_open(s, &spec1, &job, NULL, &err) != PM_OK);
	CHECK(strstr(err.msg, "read-only") != NULL);
	pm_store_close(s);

	/* A role with data privileges only (no CREATE) opens a current
	 * store read-write and writes. */
	CHECK(pg_run(db.pg,
		     "DO $$ BEGIN CREATE ROLE pmt_app LOGIN;"
		     " EXCEPTION WHEN duplicate_object THEN NULL; END $$"));
	CHECK(pg_run(db.pg,
		     "REVOKE CREATE ON SCHEMA public FROM PUBLIC;"
		     " GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES"
		     " IN SCHEMA public TO pmt_app;"
		     " GRANT USAGE ON ALL SEQUENCES IN SCHEMA public"
		     " TO pmt_app"));
	char app[600];
	const char *host = strchr(strstr(pg_base, "://") + 3, '@');
	snprintf(app, sizeof app, "postgresql://pmt_app%s/pmt_schema",
		 host ? host : "@127.0.0.1");
	CHECK_INT(pm_store_open(app, false, &s, &err), PM_OK);
	if (s) {
		CHECK_INT(pm_store_job_open(s, &spec1, &job, NULL, &err),
			  PM_OK);
		pm_store_close(s);
		s = NULL;
	}
	/* ... but cannot make the schema of a new database */
	snprintf(app, sizeof app, "postgresql://pmt_app%s/pmt_noperm",
		 host ? host : "@127.0.0.1");
	rawdb np = raw_open(store_url("noperm.db"));
	CHECK(pg_run(np.pg, "REVOKE CREATE ON SCHEMA public FROM PUBLIC"));
	raw_close(&np);
	CHECK_INT(pm_store_open(app, false, &s, &err), PM_ERR_STORE);
	CHECK(strstr(err.msg, "permission denied") != NULL);
	CHECK(s == NULL);

	/* A newer schema is refused, read-write and read-only. */
	CHECK(pg_run(db.pg, "INSERT INTO pixmill_migrations (version)"
			    " VALUES (999)"));
	char want[128];
	snprintf(want, sizeof want,
		 "database schema v999 is newer than this pixmill (v%d)",
		 pm_pg_latest_version());
	CHECK_INT(pm_store_open(url, false, &s, &err), PM_ERR_STORE);
	CHECK_STR(err.msg, want);
	CHECK_INT(pm_store_open(url, true, &s, &err), PM_ERR_STORE);
	CHECK_STR(err.msg, want);
	CHECK(s == NULL);
	raw_close(&db);

	/* A database that does not exist. */
	char bad[600];
	snprintf(bad, sizeof bad, "%s/pmt_no_such_db", pg_base);
	CHECK_INT(pm_store_open(bad, false, &s, &err), PM_ERR_STORE);
	CHECK(strstr(err.msg, "pmt_no_such_db") != NULL);
}

/* A batch whose put fails (a lock held elsewhere times out) leaves
 * nothing, and the connection works afterwards. */
static void test_pg_failed_batch(void)
{
	pm_err err = {{0}};
	pm_store *s = NULL;
	const char *url = store_url("batch.db");
	int64_t job = 0, items = -1;

	CHECK_INT(pm_store_open(url, false, &s, &err), PM_OK);
	if (!s)
		return;
	CHECK_INT(pm_store_job_open(s, &spec1, &job, NULL, &err), PM_OK);
	rawdb db = raw_open(url);
	CHECK(pg_run(db.pg, "ALTER TABLE items ADD CONSTRAINT no_bad"
			    " CHECK (key <> 'bad')"));
	pm_item_rec ok1 = item_rec(job, "ok1"), bad = item_rec(job, "bad");
	CHECK_INT(pm_store_begin(s, &err), PM_OK);
	CHECK_INT(pm_store_put_item(s, &ok1, &err), PM_OK);
	CHECK_INT(pm_store_put_item(s, &bad, &err), PM_ERR_STORE);
	CHECK(strstr(err.msg, "no_bad") != NULL);
	CHECK_INT(pm_store_commit(s, &err), PM_ERR_STORE);
	CHECK_INT(rq_int(&db, "SELECT COUNT(*) FROM items"), 0);
	/* outside a batch: its own transaction */
	CHECK_INT(pm_store_put_item(s, &bad, &err), PM_ERR_STORE);
	CHECK_INT(pm_store_put_item(s, &ok1, &err), PM_OK);
	CHECK_INT(pm_store_job_counts(s, job, &items, NULL, NULL, NULL, &err),
		  PM_OK);
	CHECK_INT(items, 1);
	/* rollback drops an open batch */
	pm_item_rec ok2 = item_rec(job, "ok2");
	CHECK_INT(pm_store_begin(s, &err), PM_OK);
	CHECK_INT(pm_store_put_item(s, &ok2, &err), PM_OK);
	pm_store_rollback(s);
	CHECK_INT(rq_int(&db, "SELECT COUNT(*) FROM items"), 1);
	raw_close(&db);
	pm_store_close(s);
}

/* The server drops every connection (a restart, a failover): the next
 * call fails, the one after reconnects — read-only stays read-only — and
 * a batch open at the time is lost, never half applied. */
static void kill_others(rawdb *db)
{
	CHECK_INT(rq_int(db, "SELECT COUNT(pg_terminate_backend(pid))"
			     " FROM pg_stat_activity WHERE datname ="
			     " current_database() AND pid <> pg_backend_pid()"),
		  2);
}

static void test_pg_reconnect(void)
{
	pm_err err = {{0}};
	pm_store *s = NULL, *r = NULL;
	const char *url = store_url("reconnect.db");
	int64_t job = 0, items = -1;

	CHECK_INT(pm_store_open(url, false, &s, &err), PM_OK);
	CHECK_INT(pm_store_open(url, true, &r, &err), PM_OK);
	if (!s || !r)
		return;
	CHECK_INT(pm_store_job_open(s, &spec1, &job, NULL, &err), PM_OK);
	CHECK_INT(pm_store_job_counts(r, job, &items, NULL, NULL, NULL, &err),
		  PM_OK);
	rawdb db = raw_open(url);
	kill_others(&db);
	CHECK_INT(pm_store_job_counts(s, job, &items, NULL, NULL, NULL, &err),
		  PM_ERR_STORE);
	CHECK_INT(pm_store_job_counts(s, job, &items, NULL, NULL, NULL, &err),
		  PM_OK);
	CHECK_INT(pm_store_job_counts(r, job, &items, NULL, NULL, NULL, &err),
		  PM_ERR_STORE);
	CHECK_INT(pm_store_job_counts(r, job, &items, NULL, NULL, NULL, &err),
		  PM_OK);
	CHECK(pm_store_job_open(r, &spec1, &job, NULL, &err) != PM_OK);
	CHECK(strstr(err.msg, "read-only") != NULL);

	pm_item_rec a = item_rec(job, "a"), b = item_rec(job, "b");
	CHECK_INT(pm_store_begin(s, &err), PM_OK);
	CHECK_INT(pm_store_put_item(s, &a, &err), PM_OK);
	kill_others(&db);
	CHECK_INT(pm_store_put_item(s, &b, &err), PM_ERR_STORE);
	CHECK_INT(pm_store_put_item(s, &b, &err), PM_ERR_STORE);
	CHECK_INT(pm_store_commit(s, &err), PM_ERR_STORE);
	CHECK_INT(rq_int(&db, "SELECT COUNT(*) FROM items"), 0);
	CHECK_INT(pm_store_put_item(s, &b, &err), PM_OK);
	CHECK_INT(rq_int(&db, "SELECT COUNT(*) FROM items"), 1);
	raw_close(&db);
	pm_store_close(r);
	pm_store_close(s);
}

/* ---- images: the gallery query (pm_store_images) ---- */

typedef struct image_list {
	int n;
	char sha[8][16];
	char title[8][32];
	int64_t items[8];
	bool has_text[8];
	char ph[8][8];
	int stop_after; /* 0 = all */
} image_list;

static int image_cb(const pm_image_info *in, void *ud)
{
	image_list *l = ud;
	if (l->n < 8) {
		snprintf(l->sha[l->n], sizeof l->sha[0], "%s", in->sha256);
		snprintf(l->title[l->n], sizeof l->title[0], "%s",
			 in->title ? in->title : "-");
		snprintf(l->ph[l->n], sizeof l->ph[0], "%s", in->pipeline_hash);
		l->items[l->n] = in->items;
		l->has_text[l->n] = in->has_text;
	}
	l->n++;
	return l->stop_after && l->n >= l->stop_after;
}

static int images(pm_store *s, const pm_image_query *q, image_list *l)
{
	pm_err err = {{0}};
	memset(l, 0, sizeof *l);
	return pm_store_images(s, q, image_cb, l, &err);
}

static void test_images(void)
{
	pm_err err = {{0}};
	pm_store *s = NULL;
	int64_t job = 0, job2 = 0;
	image_list l;
	char match[64];

	CHECK_INT(pm_store_open(store_url("images.db"), false, &s, &err),
		  PM_OK);
	if (!s)
		return;
	pm_job_spec spec2 = spec1;
	spec2.key = "cccc";
	spec2.pipeline_hash = "ph2";
	CHECK_INT(pm_store_job_open(s, &spec1, &job, NULL, &err), PM_OK);
	CHECK_INT(pm_store_job_open(s, &spec2, &job2, NULL, &err), PM_OK);

	/* job 1 (ph1): A with confident text, a caption and tags, on two
	 * rows; B with low-confidence marks (not text); C a PNG with a
	 * broken meta. Job 2 (ph2): B again, by another pipeline. */
	pm_asset_rec a = asset_rec("sha-A"), b = asset_rec("sha-B"),
		     c = asset_rec("sha-C"), b2 = asset_rec("sha-B");
	a.meta_json = "{\"ocr\":{\"text\":\"Zephyr pumps\",\"confidence\":91},"
		      "\"caption\":\"A pump on a bench.\",\"analysis\":"
		      "{\"caption\":\"A pump on a bench.\",\"tags\":"
		      "[\"pump\",\"metal\"]}}";
	b.meta_json = "{\"ocr\":{\"text\":\" |~ \\n\",\"confidence\":30}}";
	c.meta_json = "not json {";
	c.format = "png";
	b2.pipeline_hash = "ph2";
	b2.meta_json = NULL;
	pm_item_rec it[5];
	const char *keys[5] = {"r1", "r2", "r3", "r4", "r1"};
	for (int i = 0; i < 5; i++) {
		it[i] = item_rec(i < 4 ? job : job2, keys[i]);
		it[i].ordinal = (uint64_t)(i < 4 ? i + 1 : 1);
	}
	it[0].sha256 = "sha-A";
	it[0].asset = &a;
	it[0].title = "Pump";
	it[1].sha256 = "sha-A";
	it[1].duplicate = true;
	it[1].title = "Pump copy";
	it[2].sha256 = "sha-B";
	it[2].asset = &b;
	it[2].title = "Meadow";
	it[3].sha256 = "sha-C";
	it[3].asset = &c;
	it[3].title = NULL;
	it[3].image = "/photos/c.png";
	it[4].sha256 = "sha-B";
	it[4].asset = &b2;
	it[4].title = "Meadow again";
	CHECK_INT(pm_store_begin(s, &err), PM_OK);
	for (int i = 0; i < 5; i++)
		CHECK_INT(pm_store_put_item(s, &it[i], &err), PM_OK);
	CHECK_INT(pm_store_commit(s, &err), PM_OK);

	/* every source once, newest asset first (B by ph2, made last) */
	CHECK_INT(images(s, &(pm_image_query){0}, &l), PM_OK);
	CHECK_INT(l.n, 3);
	CHECK_STR(l.sha[0], "sha-B");
	CHECK_STR(l.ph[0], "ph2");
	CHECK_STR(l.sha[1], "sha-C");
	CHECK_STR(l.sha[2], "sha-A");
	CHECK_INT(l.items[2], 2);
	CHECK(l.has_text[2] && !l.has_text[0] && !l.has_text[1]);
	/* a job: its assets, its items only */
	CHECK_INT(images(s, &(pm_image_query){.job_id = job}, &l), PM_OK);
	CHECK_INT(l.n, 3);
	CHECK_STR(l.sha[0], "sha-C");
	CHECK_STR(l.ph[1], "ph1");
	CHECK_STR(l.title[1], "Meadow");
	CHECK_INT(images(s, &(pm_image_query){.job_id = job2}, &l), PM_OK);
	CHECK_INT(l.n, 1);
	CHECK_STR(l.title[0], "Meadow again");
	CHECK_INT(l.items[0], 1);
	CHECK_INT(images(s, &(pm_image_query){.job_id = 999}, &l), PM_OK);
	CHECK_INT(l.n, 0);
	/* filters: confident text only, caption, tag, format */
	CHECK_INT(images(s, &(pm_image_query){.has_text = true}, &l), PM_OK);
	CHECK_INT(l.n, 1);
	CHECK_STR(l.sha[0], "sha-A");
	CHECK_INT(images(s, &(pm_image_query){.has_caption = true}, &l), PM_OK);
	CHECK_INT(l.n, 1);
	CHECK_INT(images(s, &(pm_image_query){.tag = "metal"}, &l), PM_OK);
	CHECK_INT(l.n, 1);
	CHECK_INT(images(s, &(pm_image_query){.tag = "pum"}, &l), PM_OK);
	CHECK_INT(l.n, 0);
	CHECK_INT(images(s, &(pm_image_query){.format = "png"}, &l), PM_OK);
	CHECK_INT(l.n, 1);
	CHECK_STR(l.sha[0], "sha-C");
	CHECK_STR(l.title[0], "-");
	/* text: titles and image text, every word; combined with a job */
	CHECK(pm_store_fts_query("zephyr", match, sizeof match));
	CHECK_INT(images(s, &(pm_image_query){.match = match}, &l), PM_OK);
	CHECK_INT(l.n, 1);
	CHECK_STR(l.sha[0], "sha-A");
	CHECK(pm_store_fts_query("meadow", match, sizeof match));
	CHECK_INT(images(s, &(pm_image_query){.match = match}, &l), PM_OK);
	CHECK_INT(l.n, 1);
	CHECK_STR(l.sha[0], "sha-B");
	CHECK_INT(
	    images(s, &(pm_image_query){.match = match, .job_id = job2}, &l),
	    PM_OK);
	CHECK_INT(l.n, 1);
	CHECK_STR(l.ph[0], "ph2");
	CHECK_INT(
	    images(s, &(pm_image_query){.match = match, .has_text = true}, &l),
	    PM_OK);
	CHECK_INT(l.n, 0);
	/* one source: every asset of it, filters ignored */
	CHECK_INT(images(s,
			 &(pm_image_query){.sha256 = "sha-B", .has_text = true},
			 &l),
		  PM_OK);
	CHECK_INT(l.n, 2);
	CHECK_STR(l.ph[0], "ph2");
	CHECK_STR(l.ph[1], "ph1");
	CHECK_INT(images(s, &(pm_image_query){.sha256 = "sha-none"}, &l),
		  PM_OK);
	CHECK_INT(l.n, 0);
	/* hostile facts, in a job of their own: D's meta is an array (no
	 * facts), E's tags are one string and its caption a number */
	pm_job_spec spec3 = spec1;
	spec3.key = "dddd";
	spec3.pipeline_hash = "ph3";
	int64_t job3 = 0;
	CHECK_INT(pm_store_job_open(s, &spec3, &job3, NULL, &err), PM_OK);
	pm_asset_rec d = asset_rec("sha-D"), e = asset_rec("sha-E");
	d.pipeline_hash = e.pipeline_hash = "ph3";
	d.meta_json = "[{\"ocr\":{\"text\":\"hello\",\"confidence\":99},"
		      "\"caption\":\"x\",\"analysis\":{\"tags\":[\"metal\"]}}]";
	e.meta_json = "{\"ocr\":{\"text\":\" ok \",\"confidence\":75},"
		      "\"caption\":42,\"analysis\":{\"tags\":\"metal\"}}";
	pm_item_rec id = item_rec(job3, "d"), ie = item_rec(job3, "e");
	id.sha256 = "sha-D";
	id.asset = &d;
	ie.sha256 = "sha-E";
	ie.asset = &e;
	ie.ordinal = 2;
	CHECK_INT(pm_store_put_item(s, &id, &err), PM_OK);
	CHECK_INT(pm_store_put_item(s, &ie, &err), PM_OK);
	CHECK_INT(images(s, &(pm_image_query){.job_id = job3}, &l), PM_OK);
	CHECK_INT(l.n, 2);
	CHECK(!l.has_text[1] && l.has_text[0]);
	CHECK_INT(
	    images(s, &(pm_image_query){.job_id = job3, .has_text = true}, &l),
	    PM_OK);
	CHECK_INT(l.n, 1);
	CHECK_STR(l.sha[0], "sha-E");
	CHECK_INT(images(s,
			 &(pm_image_query){.job_id = job3, .has_caption = true},
			 &l),
		  PM_OK);
	CHECK_INT(l.n, 1);
	CHECK_STR(l.sha[0], "sha-E");
	CHECK_INT(
	    images(s, &(pm_image_query){.job_id = job3, .tag = "metal"}, &l),
	    PM_OK);
	CHECK_INT(l.n, 1);
	CHECK_STR(l.sha[0], "sha-E");
	/* the callback stops the scan */
	memset(&l, 0, sizeof l);
	l.stop_after = 2;
	CHECK_INT(pm_store_images(s, &(pm_image_query){0}, image_cb, &l, &err),
		  PM_OK);
	CHECK_INT(l.n, 2);
	pm_store_close(s);
}

/* ---- the shared queue ---- */

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0)
		;
}

typedef struct hist {
	int n;
	char ev[16][16];
	char worker[16][32];
	char detail[16][64];
	double at[16];
} hist;

static int hist_cb(const char *event, const char *worker, double at,
		   const char *detail, void *ud)
{
	hist *h = ud;
	if (h->n < 16) {
		snprintf(h->ev[h->n], sizeof h->ev[0], "%s", event);
		snprintf(h->worker[h->n], sizeof h->worker[0], "%s",
			 worker ? worker : "-");
		snprintf(h->detail[h->n], sizeof h->detail[0], "%s",
			 detail ? detail : "-");
		h->at[h->n] = at;
	}
	h->n++;
	return 0;
}

static hist history(pm_store *s, int64_t job, const char *key)
{
	hist h;
	pm_err err = {{0}};
	memset(&h, 0, sizeof h);
	CHECK_INT(pm_store_queue_history(s, job, key, hist_cb, &h, &err),
		  PM_OK);
	return h;
}

static pm_queue_counts qcounts(pm_store *s, int64_t job)
{
	pm_queue_counts c;
	pm_err err = {{0}};
	CHECK_INT(pm_store_queue_counts(s, job, &c, &err), PM_OK);
	return c;
}

/* A done (or failed) result of claim k by worker. */
static pm_item_rec claim_result(const pm_claim *k, const char *worker,
				pm_status status)
{
	pm_item_rec it = item_rec(k->job_id, k->key);
	it.ordinal = k->ordinal;
	it.attempts = k->attempts;
	it.status = status;
	it.error = status ? "it broke" : NULL;
	it.image = NULL;
	it.queue_id = k->queue_id;
	it.lease_owner = worker;
	return it;
}

static int job_info_cb(const pm_job_info *ji, void *ud)
{
	pm_job_info *out = ud;
	*out = *ji;
	out->key = out->catalog = out->pipeline = NULL;
	out->pipeline_hash = out->out_dir = out->name = out->error = NULL;
	out->state = out->pipeline_json = NULL;
	return 0;
}

static const pm_job_spec spec_q2 = {
    .key = "q2",
    .catalog = "/data/q2.csv",
    .pipeline = "web",
    .pipeline_hash = "ph1",
    .pipeline_json = "{}",
    .out_dir = "/out",
};

/* enqueue, priorities, claims, conflicting puts, release, requeue */
static void test_queue_basic(void)
{
	pm_err err = {{0}};
	pm_store *s = NULL, *s2 = NULL;
	int64_t job = 0, added = -1, n = -1, nj = -1;
	int run = 0, got = 0, prio = -1;
	pm_claim *cl = NULL;
	pm_item_state is;
	pm_status code;
	const char *url = store_url("queue.db");

	CHECK_INT(pm_store_open(url, false, &s, &err), PM_OK);
	CHECK_INT(pm_store_open(url, false, &s2, &err), PM_OK);
	if (!s || !s2)
		return;
	CHECK_INT(pm_store_job_open(s, &spec1, &job, &run, &err), PM_OK);
	/* a job never enqueued has no queue figures */
	pm_job_info ji = {0};
	CHECK_INT(pm_store_job_get(s, job, job_info_cb, &ji, &err), PM_OK);
	CHECK(!ji.queue.on);
	CHECK_INT(qcounts(s, job).queued, 0);
	CHECK(!qcounts(s, job).enqueued);
	CHECK_INT(pm_store_enqueue(s, job + 100, 0,
				   &(pm_enqueue_rec){"x", 1, "{}"}, 1, &added,
				   &err),
		  PM_ERR_NOT_FOUND);
	/* k0 is done already (an earlier run): never enqueued */
	pm_item_rec done0 = item_rec(job, "k0");
	CHECK_INT(pm_store_put_item(s, &done0, &err), PM_OK);

	pm_enqueue_rec recs[5];
	char keys[5][16], json[5][48];
	for (int i = 0; i < 5; i++) {
		snprintf(keys[i], sizeof keys[i], "k%d", i);
		snprintf(json[i], sizeof json[i], "{\"id\":\"k%d\",\"n\":%d}",
			 i, i);
		recs[i] = (pm_enqueue_rec){keys[i], (uint64_t)i + 1, json[i]};
	}
	CHECK_INT(pm_store_enqueue(s, job, 0, recs, 5, &added, &err), PM_OK);
	CHECK_INT(added, 4);
	CHECK_INT(pm_store_enqueue(s, job, 0, recs, 5, &added, &err), PM_OK);
	CHECK_INT(added, 0); /* idempotent */
	CHECK_INT(pm_store_enqueue(s, job, 9, recs + 3, 2, NULL, &err), PM_OK);
	pm_enqueue_rec hi[2] = {{"hi1", 10, "{\"hi\":1}"},
				{"hi2", 11, "{\"hi\":2}"}};
	CHECK_INT(pm_store_enqueue(s, job, 5, hi, 2, &added, &err), PM_OK);
	CHECK_INT(added, 2);
	pm_queue_counts qc = qcounts(s, job);
	CHECK_INT(qc.queued, 6);
	CHECK_INT(qc.claimed, 0);
	CHECK(!qc.enqueued);
	CHECK_INT(pm_store_job_get(s, job, job_info_cb, &ji, &err), PM_OK);
	CHECK(ji.queue.on);
	CHECK(!ji.queue.enqueued);
	CHECK_INT(ji.queue.queued, 6);
	CHECK_INT(pm_store_queue_next(s, &nj, &prio, &err), PM_OK);
	CHECK_INT(nj, job);
	CHECK_INT(prio, 5);

	/* priority first, then enqueue order */
	CHECK_INT(pm_store_claim(s, job, "w1", 3, 60, &cl, &got, &err), PM_OK);
	CHECK_INT(got, 3);
	if (got == 3) {
		CHECK_STR(cl[0].key, "hi1");
		CHECK_STR(cl[1].key, "hi2");
		CHECK_STR(cl[2].key, "k1");
		CHECK_STR(cl[0].record_json, "{\"hi\":1}");
		CHECK_STR(cl[2].record_json, "{\"id\":\"k1\",\"n\":1}");
		CHECK_INT(cl[0].ordinal, 10);
		CHECK_INT(cl[0].attempts, 1);
		CHECK_INT(cl[2].job_id, job);
	}
	/* the second connection gets the others, never the same rows */
	pm_claim *cl2 = NULL;
	int got2 = 0;
	CHECK_INT(pm_store_claim(s2, 0, "w2", 2, 60, &cl2, &got2, &err), PM_OK);
	CHECK_INT(got2, 2);
	for (int i = 0; i < got2 && got == 3; i++)
		for (int j = 0; j < got; j++)
			CHECK(cl2[i].queue_id != cl[j].queue_id);
	if (got2 == 2) {
		CHECK_STR(cl2[0].key, "k2");
		CHECK_STR(cl2[1].key, "k3");
	}
	qc = qcounts(s, job);
	CHECK_INT(qc.queued, 1);
	CHECK_INT(qc.claimed, 5);
	CHECK_INT(qc.workers, 2);
	CHECK_INT(qcounts(s, 0).claimed, 5);
	CHECK_INT(pm_store_job_get(s, job, job_info_cb, &ji, &err), PM_OK);
	CHECK_INT(ji.queue.claimed, 5);
	CHECK_INT(ji.queue.workers, 2);

	if (got == 3 && got2 == 2) {
		/* a put by a worker that does not hold the row: nothing is
		 * written, the batch goes on */
		pm_item_rec wrong = claim_result(&cl[1], "w2", PM_OK);
		CHECK_INT(pm_store_put_item(s, &wrong, &err), PM_ERR_CONFLICT);
		CHECK_INT(pm_store_item_state(s, job, "hi2", &is, &code, &err),
			  PM_OK);
		CHECK_INT(is, PM_ITEM_NONE);
		CHECK_INT(pm_store_begin(s, &err), PM_OK);
		pm_item_rec r0 = claim_result(&cl[0], "w1", PM_OK);
		CHECK_INT(pm_store_put_item(s, &r0, &err), PM_OK);
		CHECK_INT(pm_store_put_item(s, &wrong, &err), PM_ERR_CONFLICT);
		pm_item_rec r2 = claim_result(&cl[2], "w1", PM_OK);
		CHECK_INT(pm_store_put_item(s, &r2, &err), PM_OK);
		/* the same row twice: the second finds it done */
		CHECK_INT(pm_store_put_item(s, &r2, &err), PM_ERR_CONFLICT);
		CHECK_INT(pm_store_commit(s, &err), PM_OK);
		CHECK_INT(pm_store_item_state(s, job, "hi1", &is, &code, &err),
			  PM_OK);
		CHECK_INT(is, PM_ITEM_DONE);
		CHECK_INT(pm_store_item_state(s, job, "k1", &is, &code, &err),
			  PM_OK);
		CHECK_INT(is, PM_ITEM_DONE);
		CHECK_INT(pm_store_item_state(s, job, "hi2", &is, &code, &err),
			  PM_OK);
		CHECK_INT(is, PM_ITEM_NONE);
		/* hi2 fails for good */
		pm_item_rec r1 = claim_result(&cl[1], "w1", PM_ERR_DECODE);
		CHECK_INT(pm_store_put_item(s, &r1, &err), PM_OK);
		CHECK_INT(pm_store_item_state(s, job, "hi2", &is, &code, &err),
			  PM_OK);
		CHECK_INT(is, PM_ITEM_FAILED);
		hist h = history(s, job, "hi2");
		CHECK_INT(h.n, 2);
		CHECK_STR(h.ev[0], "claimed");
		CHECK_STR(h.ev[1], "failed");
		CHECK_STR(h.worker[1], "w1");
		CHECK(strstr(h.detail[1], "decode_error") != NULL);
		CHECK(h.at[1] >= h.at[0]);

		/* w2 drains: its rows go back, attempts not counted */
		CHECK_INT(pm_store_lease_release(s2, "w2", &n, &err), PM_OK);
		CHECK_INT(n, 2);
		CHECK_INT(pm_store_lease_release(s2, "w2", &n, &err), PM_OK);
		CHECK_INT(n, 0);
		h = history(s, job, "k2");
		CHECK_INT(h.n, 2);
		CHECK_STR(h.ev[1], "released");
		CHECK_STR(h.worker[1], "w2");
	}
	pm_claims_free(cl, got);
	pm_claims_free(cl2, got2);
	qc = qcounts(s, job);
	CHECK_INT(qc.queued, 3);
	CHECK_INT(qc.claimed, 0);
	CHECK_INT(qc.done, 2);
	CHECK_INT(qc.failed, 1);
	CHECK_INT(qc.workers, 0);

	/* requeue: k2 at once (attempt counted), k3 not before an hour */
	CHECK_INT(pm_store_claim(s, job, "w1", 2, 60, &cl, &got, &err), PM_OK);
	CHECK_INT(got, 2);
	if (got == 2) {
		CHECK_STR(cl[0].key, "k2");
		CHECK_INT(cl[0].attempts, 1); /* the release did not count */
		CHECK_INT(pm_store_requeue(s, cl[0].queue_id, "w1", 0,
					   "HTTP 503", &err),
			  PM_OK);
		CHECK_INT(pm_store_requeue(s, cl[1].queue_id, "w1", 3600,
					   "rate limited", &err),
			  PM_OK);
		CHECK_INT(
		    pm_store_requeue(s, cl[1].queue_id, "w1", 0, "again", &err),
		    PM_ERR_CONFLICT);
	}
	pm_claims_free(cl, got);
	CHECK_INT(pm_store_claim(s, job, "w3", 10, 60, &cl, &got, &err), PM_OK);
	CHECK_INT(got, 2); /* k2 and k4; k3 waits */
	if (got == 2) {
		CHECK_STR(cl[0].key, "k2");
		CHECK_INT(cl[0].attempts, 2);
		CHECK_STR(cl[1].key, "k4");
	}
	hist h = history(s, job, "k2");
	CHECK_INT(h.n, 5);
	CHECK_STR(h.ev[2], "claimed");
	CHECK_STR(h.ev[3], "retry");
	CHECK_STR(h.detail[3], "HTTP 503");
	CHECK_STR(h.ev[4], "claimed");
	CHECK_STR(h.worker[4], "w3");
	CHECK_INT(qcounts(s, job).retried, 2);
	pm_claims_free(cl, got);
	/* nothing ready: no claim, no error */
	CHECK_INT(pm_store_claim(s, job, "w3", 10, 60, &cl, &got, &err), PM_OK);
	CHECK_INT(got, 0);
	CHECK(cl == NULL);
	CHECK_INT(pm_store_queue_next(s, &nj, &prio, &err), PM_OK);
	CHECK_INT(nj, 0);
	/* the wait returns (SQLite: a short sleep) */
	bool woken = true;
	CHECK_INT(pm_store_queue_wait(s, on_pg ? 50 : 10, &woken, &err), PM_OK);
	CHECK(!woken);
	/* usage errors */
	CHECK_INT(pm_store_claim(s, job, "", 1, 60, &cl, &got, &err),
		  PM_ERR_USAGE);
	CHECK_INT(pm_store_claim(s, job, "w", 1, -1, &cl, &got, &err),
		  PM_ERR_USAGE);
	CHECK_INT(pm_store_enqueue(s, job, 0, &(pm_enqueue_rec){NULL, 1, "{}"},
				   1, &added, &err),
		  PM_ERR_USAGE);
	pm_store_close(s2);
	pm_store_close(s);
}

/* lease expiry, reap, renew */
static void test_queue_lease(void)
{
	pm_err err = {{0}};
	pm_store *s = NULL;
	int64_t job = 0, n = -1;
	int run = 0, got = 0;
	pm_claim *cl = NULL;
	pm_item_state is;
	pm_status code;

	const char *url = store_url("lease.db");

	CHECK_INT(pm_store_open(url, false, &s, &err), PM_OK);
	if (!s)
		return;
	CHECK_INT(pm_store_job_open(s, &spec1, &job, &run, &err), PM_OK);
	pm_enqueue_rec recs[2] = {{"a", 1, "{\"a\":1}"}, {"b", 2, "{}"}};
	CHECK_INT(pm_store_enqueue(s, job, 0, recs, 2, NULL, &err), PM_OK);
	CHECK_INT(pm_store_claim(s, job, "w1", 1, 0.2, &cl, &got, &err), PM_OK);
	CHECK_INT(got, 1);
	pm_claim first = {0};
	if (got == 1)
		first = cl[0];
	pm_claim *cl2 = NULL;
	int got2 = 0;
	CHECK_INT(pm_store_claim(s, job, "w9", 1, 0.2, &cl2, &got2, &err),
		  PM_OK);
	CHECK_INT(got2, 1);
	/* w9 renews its lease for a minute */
	CHECK_INT(pm_store_lease_renew(s, "w9", 60, &n, &err), PM_OK);
	CHECK_INT(n, 1);
	sleep_ms(600);
	CHECK_INT(pm_store_lease_reap(s, &n, &err), PM_OK);
	CHECK_INT(n, 1); /* w1's: w9 renewed */
	CHECK_INT(pm_store_lease_reap(s, &n, &err), PM_OK);
	CHECK_INT(n, 0); /* counted once */
	pm_queue_counts qc = qcounts(s, job);
	CHECK_INT(qc.expired, 1);
	CHECK_INT(qc.queued, 1);
	CHECK_INT(qc.claimed, 1);
	CHECK_INT(qc.workers, 1);

	pm_claim *cl3 = NULL;
	int got3 = 0;
	CHECK_INT(pm_store_claim(s, job, "w2", 5, 60, &cl3, &got3, &err),
		  PM_OK);
	CHECK_INT(got3, 1);
	if (got3 == 1 && got == 1) {
		CHECK_STR(cl3[0].key, "a");
		CHECK_INT(cl3[0].attempts, 2);
		CHECK_INT(cl3[0].queue_id, first.queue_id);
		/* w1 comes back from the dead: its put is refused and
		 * writes nothing; the batch still commits w2's other work */
		pm_item_rec late = claim_result(&first, "w1", PM_OK);
		/* with an asset, outputs, a vector and URL validators: none
		 * of them may be written */
		pm_asset_rec la = asset_rec("sha-late");
		static const float vec[4] = {1, 2, 3, 4};
		la.embedding = vec;
		la.embedding_dim = 4;
		la.embedding_model = "m";
		late.asset = &la;
		late.sha256 = "sha-late";
		late.image = "http://x/late.jpg";
		late.url_etag = "\"e1\"";
		CHECK_INT(pm_store_begin(s, &err), PM_OK);
		CHECK_INT(pm_store_put_item(s, &late, &err), PM_ERR_CONFLICT);
		pm_item_rec other = item_rec(job, "unqueued");
		CHECK_INT(pm_store_put_item(s, &other, &err), PM_OK);
		CHECK_INT(pm_store_commit(s, &err), PM_OK);
		CHECK_INT(pm_store_item_state(s, job, "a", &is, &code, &err),
			  PM_OK);
		CHECK_INT(is, PM_ITEM_NONE);
		CHECK_INT(
		    pm_store_item_state(s, job, "unqueued", &is, &code, &err),
		    PM_OK);
		CHECK_INT(is, PM_ITEM_DONE);
		rawdb d = raw_open(url);
		CHECK_INT(rq_int(&d, "SELECT COUNT(*) FROM assets"), 0);
		CHECK_INT(rq_int(&d, "SELECT COUNT(*) FROM outputs"), 0);
		CHECK_INT(rq_int(&d, "SELECT COUNT(*) FROM embeddings"), 0);
		CHECK_INT(rq_int(&d, "SELECT COUNT(*) FROM urls"), 0);
		CHECK_INT(rq_int(&d, "SELECT COUNT(*) FROM queue_events"
				     " WHERE event IN ('done', 'failed')"),
			  0);
		raw_close(&d);
		/* the same put by the worker that holds the claim writes
		 * all of it */
		pm_item_rec full = late;
		full.queue_id = cl3[0].queue_id;
		full.lease_owner = "w2";
		full.attempts = 2;
		CHECK_INT(pm_store_put_item(s, &full, &err), PM_OK);
		CHECK_INT(pm_store_item_state(s, job, "a", &is, &code, &err),
			  PM_OK);
		CHECK_INT(is, PM_ITEM_DONE);
		d = raw_open(url);
		CHECK_INT(rq_int(&d, "SELECT COUNT(*) FROM assets"), 1);
		CHECK_INT(rq_int(&d, "SELECT COUNT(*) FROM outputs"), 3);
		CHECK_INT(rq_int(&d, "SELECT COUNT(*) FROM embeddings"), 1);
		CHECK_INT(rq_int(&d, "SELECT COUNT(*) FROM urls"), 1);
		CHECK_INT(rq_int(&d, "SELECT COUNT(*) FROM items WHERE"
				     " key = 'a' AND asset_id IS NOT NULL"),
			  1);
		raw_close(&d);
		hist h = history(s, job, "a");
		CHECK_INT(h.n, 4);
		CHECK_STR(h.ev[0], "claimed");
		CHECK_STR(h.worker[0], "w1");
		CHECK_STR(h.ev[1], "expired");
		CHECK_STR(h.worker[1], "w1");
		CHECK_STR(h.ev[2], "claimed");
		CHECK_STR(h.worker[2], "w2");
		CHECK_STR(h.ev[3], "done");
		CHECK_STR(h.worker[3], "w2");
		for (int i = 1; i < h.n && i < 4; i++)
			CHECK(h.at[i] >= h.at[i - 1]);
	}
	pm_claims_free(cl, got);
	pm_claims_free(cl2, got2);
	pm_claims_free(cl3, got3);
	hist none = history(s, job, "never");
	CHECK_INT(none.n, 0);
	pm_store_close(s);
}

/* finish only when enqueue is complete and nothing is pending; dlq retry
 * sends queued items back */
static void test_queue_finish(void)
{
	pm_err err = {{0}};
	pm_store *s = NULL;
	int64_t job = 0, n = -1;
	int run = 0, got = 0;
	bool fin = true;
	pm_claim *cl = NULL;
	const char *url = store_url("qfinish.db");

	CHECK_INT(pm_store_open(url, false, &s, &err), PM_OK);
	if (!s)
		return;
	CHECK_INT(pm_store_job_open(s, &spec_q2, &job, &run, &err), PM_OK);
	{ /* the state alone, as a worker polls it */
		char state[32] = "x", tiny[3] = "x";
		CHECK_INT(
		    pm_store_job_state_of(s, job, state, sizeof state, &err),
		    PM_OK);
		CHECK_STR(state, "running");
		CHECK_INT(
		    pm_store_job_state_of(s, job, tiny, sizeof tiny, &err),
		    PM_OK);
		CHECK_STR(tiny, "ru");
		CHECK_INT(pm_store_job_state_of(s, job + 100, state,
						sizeof state, &err),
			  PM_ERR_NOT_FOUND);
		CHECK_STR(state, "");
		CHECK_INT(
		    pm_store_job_state(s, job, "cancelled", NULL, true, &err),
		    PM_OK);
		CHECK_INT(
		    pm_store_job_state_of(s, job, state, sizeof state, &err),
		    PM_OK);
		CHECK_STR(state, "cancelled");
		/* enqueued jobs wait "queued" until their first claim */
		CHECK_INT(
		    pm_store_job_state(s, job, "queued", NULL, false, &err),
		    PM_OK);
	}
	pm_enqueue_rec recs[2] = {{"a", 1, "{}"}, {"b", 2, "{}"}};
	CHECK_INT(pm_store_enqueue(s, job, 0, recs, 2, NULL, &err), PM_OK);
	CHECK_INT(pm_store_queue_finish(s, job, &fin, &err), PM_OK);
	CHECK(!fin); /* enqueue not complete */
	CHECK_INT(pm_store_enqueue_end(s, job, 2, &err), PM_OK);
	CHECK_INT(pm_store_enqueue_end(s, job + 100, 2, &err),
		  PM_ERR_NOT_FOUND);
	pm_queue_counts qc = qcounts(s, job);
	CHECK(qc.enqueued);
	CHECK_INT(qc.total, 2);
	CHECK_INT(pm_store_queue_finish(s, job, &fin, &err), PM_OK);
	CHECK(!fin); /* two rows queued */
	CHECK_INT(pm_store_claim(s, job, "w1", 2, 60, &cl, &got, &err), PM_OK);
	CHECK_INT(got, 2);
	{ /* the first claim makes the job "running" */
		char state[32] = "x";
		CHECK_INT(
		    pm_store_job_state_of(s, job, state, sizeof state, &err),
		    PM_OK);
		CHECK_STR(state, "running");
	}
	if (got == 2) {
		pm_item_rec ok = claim_result(&cl[0], "w1", PM_OK);
		CHECK_INT(pm_store_put_item(s, &ok, &err), PM_OK);
		CHECK_INT(pm_store_queue_finish(s, job, &fin, &err), PM_OK);
		CHECK(!fin); /* b is claimed */
		pm_item_rec bad = claim_result(&cl[1], "w1", PM_ERR_IO);
		CHECK_INT(pm_store_put_item(s, &bad, &err), PM_OK);
	}
	pm_claims_free(cl, got);
	CHECK_INT(pm_store_queue_finish(s, job, &fin, &err), PM_OK);
	CHECK(fin);
	CHECK_INT(pm_store_queue_finish(s, job, &fin, &err), PM_OK);
	CHECK(fin); /* already done */
	CHECK_INT(pm_store_queue_finish(s, job + 100, &fin, &err),
		  PM_ERR_NOT_FOUND);
	pm_job_info ji = {0};
	CHECK_INT(pm_store_job_get(s, job, job_info_cb, &ji, &err), PM_OK);
	CHECK(ji.queue.on && ji.queue.enqueued);
	CHECK_INT(ji.queue.total, 2);
	CHECK_INT(ji.failed, 1);
	rawdb d = raw_open(url);
	CHECK_INT(rq_int(&d, "SELECT COUNT(*) FROM jobs WHERE state = 'done'"),
		  1);

	/* dlq retry: the failed item is queued again, the job runs again */
	CHECK_INT(pm_store_retry_failed(s, job, NULL, NULL, &n, &err), PM_OK);
	CHECK_INT(n, 1);
	CHECK_INT(rq_int(&d, "SELECT COUNT(*) FROM jobs WHERE state ="
			     " 'running'"),
		  1);
	qc = qcounts(s, job);
	CHECK_INT(qc.queued, 1);
	CHECK_INT(qc.failed, 0);
	CHECK_INT(qc.done, 1);
	CHECK_INT(pm_store_queue_finish(s, job, &fin, &err), PM_OK);
	CHECK(!fin);
	CHECK_INT(pm_store_claim(s, 0, "w2", 5, 60, &cl, &got, &err), PM_OK);
	CHECK_INT(got, 1);
	if (got == 1) {
		CHECK_STR(cl[0].key, "b");
		CHECK_INT(cl[0].attempts, 1); /* a fresh start */
		pm_item_rec ok = claim_result(&cl[0], "w2", PM_OK);
		CHECK_INT(pm_store_put_item(s, &ok, &err), PM_OK);
	}
	pm_claims_free(cl, got);
	hist h = history(s, job, "b");
	CHECK_INT(h.n, 5);
	CHECK_STR(h.ev[2], "retry");
	CHECK_STR(h.detail[2], "dlq retry");
	CHECK_STR(h.ev[4], "done");
	CHECK_INT(pm_store_queue_finish(s, job, &fin, &err), PM_OK);
	CHECK(fin);
	raw_close(&d);
	pm_store_close(s);
}

/* record_json as the catalog gives it: invalid UTF-8, quotes, 4 MB */
static void test_queue_hostile(void)
{
	pm_err err = {{0}};
	pm_store *s = NULL;
	int64_t job = 0, added = 0;
	int run = 0, got = 0;
	pm_claim *cl = NULL;
	size_t big_n = 4u << 20;
	char *big = malloc(big_n + 1);

	if (!big)
		return;
	for (size_t i = 0; i < big_n; i++)
		big[i] = "ab'\"\\{}x"[i % 8];
	big[big_n] = 0;
	CHECK_INT(pm_store_open(store_url("qhostile.db"), false, &s, &err),
		  PM_OK);
	if (!s) {
		free(big);
		return;
	}
	CHECK_INT(pm_store_job_open(s, &spec1, &job, &run, &err), PM_OK);
	pm_enqueue_rec recs[3] = {
	    {"bad\xff\xfekey", 1, "{\"t\":\"caf\xe9 \xff\"}"},
	    {"quote'); DROP TABLE queue; --", 2, "'\"\\"},
	    {"big", 3, big},
	};
	CHECK_INT(pm_store_enqueue(s, job, 0, recs, 3, &added, &err), PM_OK);
	CHECK_INT(added, 3);
	CHECK_INT(pm_store_claim(s, job, "w\xff", 3, 60, &cl, &got, &err),
		  PM_OK);
	CHECK_INT(got, 3);
	if (got == 3) {
		/* PostgreSQL stores text as UTF-8: bad bytes become '?' */
		CHECK_STR(cl[0].key, on_pg ? "bad??key" : "bad\xff\xfekey");
		CHECK_STR(cl[0].record_json, on_pg
						 ? "{\"t\":\"caf? ?\"}"
						 : "{\"t\":\"caf\xe9 \xff\"}");
		CHECK_STR(cl[1].key, "quote'); DROP TABLE queue; --");
		CHECK_STR(cl[1].record_json, "'\"\\");
		CHECK(strlen(cl[2].record_json) == big_n);
		CHECK(strcmp(cl[2].record_json, big) == 0);
		/* the claim's own key completes it */
		pm_item_rec r = claim_result(&cl[1], "w\xff", PM_OK);
		CHECK_INT(pm_store_put_item(s, &r, &err), PM_OK);
		pm_item_rec r0 = claim_result(&cl[0], "w\xff", PM_OK);
		r0.key = cl[0].key;
		CHECK_INT(pm_store_put_item(s, &r0, &err), PM_OK);
	}
	pm_claims_free(cl, got);
	CHECK_INT(qcounts(s, job).done, 2);
	free(big);
	pm_store_close(s);
}

/* 4 threads, each with its own connection, claim and complete 2,000
 * items in batches: every item completed exactly once. */
#define STRESS_ITEMS 2000
typedef struct stress_arg {
	const char *url;
	int64_t job;
	char worker[16];
	int completed, conflicts, batches;
	pm_status st;
	char msg[sizeof(pm_err)];
} stress_arg;

static void *stress_thread(void *ud)
{
	stress_arg *a = ud;
	pm_store *s = NULL;
	pm_err err = {{0}};

	a->st = pm_store_open(a->url, false, &s, &err);
	while (a->st == PM_OK) {
		pm_claim *cl = NULL;
		int got = 0;
		a->st = pm_store_claim(s, a->job, a->worker, 16, 60, &cl, &got,
				       &err);
		if (a->st || got == 0) {
			pm_claims_free(cl, got);
			break;
		}
		a->st = pm_store_begin(s, &err);
		for (int i = 0; a->st == PM_OK && i < got; i++) {
			pm_item_rec it = claim_result(&cl[i], a->worker, PM_OK);
			pm_status ps = pm_store_put_item(s, &it, &err);
			if (ps == PM_OK)
				a->completed++;
			else if (ps == PM_ERR_CONFLICT)
				a->conflicts++;
			else
				a->st = ps;
		}
		if (a->st == PM_OK)
			a->st = pm_store_commit(s, &err);
		else
			pm_store_rollback(s);
		a->batches++;
		pm_claims_free(cl, got);
	}
	if (a->st)
		snprintf(a->msg, sizeof a->msg, "%s", err.msg);
	pm_store_close(s);
	return NULL;
}

static void test_queue_stress(void)
{
	pm_err err = {{0}};
	pm_store *s = NULL;
	int64_t job = 0, added = 0;
	int run = 0;
	const char *url = store_url("qstress.db");
	pm_enqueue_rec *recs = calloc(STRESS_ITEMS, sizeof *recs);
	char(*keys)[16] = calloc(STRESS_ITEMS, sizeof *keys);

	if (!recs || !keys)
		goto out;
	CHECK_INT(pm_store_open(url, false, &s, &err), PM_OK);
	if (!s)
		goto out;
	CHECK_INT(pm_store_job_open(s, &spec1, &job, &run, &err), PM_OK);
	for (int i = 0; i < STRESS_ITEMS; i++) {
		snprintf(keys[i], sizeof keys[i], "s%05d", i);
		recs[i] = (pm_enqueue_rec){keys[i], (uint64_t)i, "{}"};
	}
	/* in chunks, as run --enqueue-only streams a catalog */
	for (int i = 0; i < STRESS_ITEMS; i += 500) {
		int64_t a = 0;
		CHECK_INT(pm_store_enqueue(s, job, 0, recs + i, 500, &a, &err),
			  PM_OK);
		added += a;
	}
	CHECK_INT(added, STRESS_ITEMS);
	CHECK_INT(pm_store_enqueue_end(s, job, STRESS_ITEMS, &err), PM_OK);

	stress_arg args[4];
	pthread_t th[4];
	memset(args, 0, sizeof args);
	for (int i = 0; i < 4; i++) {
		args[i].url = url;
		args[i].job = job;
		snprintf(args[i].worker, sizeof args[i].worker, "sw%d", i);
		pthread_create(&th[i], NULL, stress_thread, &args[i]);
	}
	int completed = 0, conflicts = 0;
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		if (args[i].st)
			printf("stress thread %d: %s\n", i, args[i].msg);
		CHECK_INT(args[i].st, PM_OK);
		completed += args[i].completed;
		conflicts += args[i].conflicts;
	}
	CHECK_INT(completed, STRESS_ITEMS);
	CHECK_INT(conflicts, 0);
	pm_queue_counts qc = qcounts(s, job);
	CHECK_INT(qc.done, STRESS_ITEMS);
	CHECK_INT(qc.queued + qc.claimed + qc.failed, 0);
	int64_t items = 0, done = 0;
	CHECK_INT(pm_store_job_counts(s, job, &items, &done, NULL, NULL, &err),
		  PM_OK);
	CHECK_INT(items, STRESS_ITEMS);
	CHECK_INT(done, STRESS_ITEMS);
	rawdb d = raw_open(url);
	/* each row claimed once and completed once */
	CHECK_INT(rq_int(&d, "SELECT COUNT(*) FROM queue WHERE attempts <> 1"),
		  0);
	CHECK_INT(rq_int(&d, "SELECT COUNT(*) FROM queue_events"
			     " WHERE event = 'claimed'"),
		  STRESS_ITEMS);
	CHECK_INT(rq_int(&d, "SELECT COUNT(DISTINCT queue_id) FROM"
			     " queue_events WHERE event = 'done'"),
		  STRESS_ITEMS);
	CHECK_INT(rq_int(&d, "SELECT COUNT(*) FROM queue_events"
			     " WHERE event = 'done'"),
		  STRESS_ITEMS);
	raw_close(&d);
	bool fin = false;
	CHECK_INT(pm_store_queue_finish(s, job, &fin, &err), PM_OK);
	CHECK(fin);
	pm_store_close(s);
out:
	free(recs);
	free(keys);
}

/* PostgreSQL: a waiting worker is woken by another connection's enqueue
 * (LISTEN/NOTIFY). The timeout is generous: only "woken" is asserted. */
typedef struct wait_arg {
	pm_store *s;
	bool woken;
	pm_status st;
} wait_arg;

static void *wait_thread(void *ud)
{
	wait_arg *a = ud;
	pm_err err = {{0}};
	a->st = pm_store_queue_wait(a->s, 30000, &a->woken, &err);
	return NULL;
}

static void test_pg_queue_wait(void)
{
	pm_err err = {{0}};
	pm_store *s = NULL, *w = NULL;
	int64_t job = 0;
	int run = 0;
	bool woken = true;
	const char *url = store_url("qwait.db");

	CHECK_INT(pm_store_open(url, false, &s, &err), PM_OK);
	CHECK_INT(pm_store_open(url, false, &w, &err), PM_OK);
	if (!s || !w)
		return;
	CHECK_INT(pm_store_job_open(s, &spec1, &job, &run, &err), PM_OK);
	/* the first wait LISTENs; nothing is pending */
	CHECK_INT(pm_store_queue_wait(w, 0, &woken, &err), PM_OK);
	CHECK(!woken);
	wait_arg a = {.s = w};
	pthread_t th;
	pthread_create(&th, NULL, wait_thread, &a);
	sleep_ms(100);
	CHECK_INT(pm_store_enqueue(s, job, 0, &(pm_enqueue_rec){"k", 1, "{}"},
				   1, NULL, &err),
		  PM_OK);
	pthread_join(th, NULL);
	CHECK_INT(a.st, PM_OK);
	CHECK(a.woken);
	/* an expired lease reaped elsewhere wakes too */
	pm_claim *cl = NULL;
	int got = 0;
	int64_t n = 0;
	CHECK_INT(pm_store_claim(s, job, "w1", 1, 0.05, &cl, &got, &err),
		  PM_OK);
	pm_claims_free(cl, got);
	sleep_ms(200);
	CHECK_INT(pm_store_lease_reap(s, &n, &err), PM_OK);
	CHECK_INT(n, 1);
	woken = false;
	CHECK_INT(pm_store_queue_wait(w, 30000, &woken, &err), PM_OK);
	CHECK(woken);
	/* a connection the server dropped LISTENs again after the
	 * reconnect */
	rawdb d = raw_open(url);
	rq_int(&d, "SELECT COUNT(pg_terminate_backend(pid)) FROM"
		   " pg_stat_activity WHERE datname = current_database()"
		   " AND pid <> pg_backend_pid()");
	raw_close(&d);
	sleep_ms(100);
	woken = true;
	pm_status st = pm_store_queue_wait(w, 100, &woken, &err);
	CHECK(st == PM_OK || st == PM_ERR_STORE); /* noticed the loss */
	pm_store_close(s);
	s = NULL;
	CHECK_INT(pm_store_open(url, false, &s, &err), PM_OK);
	CHECK_INT(pm_store_queue_wait(w, 0, &woken, &err), PM_OK);
	a = (wait_arg){.s = w};
	pthread_create(&th, NULL, wait_thread, &a);
	sleep_ms(100);
	CHECK_INT(pm_store_enqueue_end(s, job, 1, &err), PM_OK);
	pthread_join(th, NULL);
	CHECK_INT(a.st, PM_OK);
	CHECK(a.woken);
	pm_store_close(w);
	pm_store_close(s);
}

/* Puts a job's last update hours_ago hours back (raw SQL, both
 * backends). */
static void job_age(rawdb *d, int64_t job, int hours_ago)
{
	char sql[160];
	snprintf(sql, sizeof sql,
		 "UPDATE jobs SET updated = updated - %d WHERE id = %lld"
		 " RETURNING 1",
		 hours_ago * 3600, (long long)job);
	CHECK_INT(rq_int(d, sql), 1);
}

static int64_t job_rows(rawdb *d, const char *table, int64_t job)
{
	char sql[120];
	snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM %s WHERE job_id = %lld",
		 table, (long long)job);
	return rq_int(d, sql);
}

/* A job with n records enqueued (complete) and the first done claims
 * claimed by w and put: done, failed (every third) or left claimed
 * (leave_claimed); the rest stays queued. */
static int64_t prune_job(pm_store *s, const char *key, int n, int done,
			 bool leave_claimed)
{
	pm_err err = {{0}};
	pm_job_spec sp = spec1;
	int64_t job = 0, added = 0;
	int run = 0, got = 0;
	pm_claim *cl = NULL;
	pm_enqueue_rec recs[16];
	char keys[16][48];

	sp.key = key;
	CHECK_INT(pm_store_job_open(s, &sp, &job, &run, &err), PM_OK);
	for (int i = 0; i < n && i < 16; i++) {
		snprintf(keys[i], sizeof keys[i], "%s-%d", key, i);
		recs[i] = (pm_enqueue_rec){keys[i], (uint64_t)i + 1, "{}"};
	}
	CHECK_INT(pm_store_enqueue(s, job, 0, recs, n, &added, &err), PM_OK);
	CHECK_INT(added, n);
	CHECK_INT(pm_store_enqueue_end(s, job, n, &err), PM_OK);
	if (done == 0)
		return job;
	CHECK_INT(pm_store_claim(s, job, "w", done, 60, &cl, &got, &err),
		  PM_OK);
	CHECK_INT(got, done);
	for (int i = 0; i < got && !leave_claimed; i++) {
		pm_item_rec it = claim_result(
		    &cl[i], "w", i % 3 == 2 ? PM_ERR_DECODE : PM_OK);
		CHECK_INT(pm_store_put_item(s, &it, &err), PM_OK);
	}
	pm_claims_free(cl, got);
	return job;
}

/* pm_store_queue_prune: only old final jobs without claimed rows, the
 * cutoff, the job filter, dry runs, batches, a pruned job's figures
 * and its re-enqueue; cancel drops the unclaimed rows */
static void test_queue_prune(void)
{
	pm_err err = {{0}};
	pm_store *s = NULL;
	pm_queue_pruned pr = {-1, -1, -1};
	const char *url = store_url("qprune.db");
	const pm_store_backend *be =
	    on_pg ? &pm_store_postgres : &pm_store_sqlite;

	CHECK_INT(pm_store_open(url, false, &s, &err), PM_OK);
	if (!s)
		return;
	rawdb d = raw_open(url);
	/* old: done, 6 rows (4 done, 2 failed items); running: 3 of 5
	 * done; recent: done now; claimed: done long ago but a row still
	 * claimed (a worker may still put it); cancelled: 2 of 4 claimed */
	int64_t old = prune_job(s, "p-old", 6, 6, false);
	int64_t running = prune_job(s, "p-run", 5, 3, false);
	int64_t recent = prune_job(s, "p-recent", 2, 2, false);
	int64_t claimed = prune_job(s, "p-claimed", 3, 1, true);
	int64_t cancelled = prune_job(s, "p-cancel", 4, 2, true);
	bool fin = false;
	CHECK_INT(pm_store_queue_finish(s, old, &fin, &err), PM_OK);
	CHECK(fin);
	CHECK_INT(pm_store_queue_finish(s, recent, &fin, &err), PM_OK);
	CHECK(fin);
	CHECK_INT(pm_store_job_state(s, claimed, "done", NULL, true, &err),
		  PM_OK);
	job_age(&d, old, 48);
	job_age(&d, running, 48);
	job_age(&d, claimed, 48);
	int64_t old_ev = job_rows(&d, "queue_events", old);
	CHECK_INT(old_ev, 12); /* claimed + done/failed per row */
	int64_t run_rows = job_rows(&d, "queue", running);
	int64_t run_ev = job_rows(&d, "queue_events", running);

	/* cancel: the 2 unclaimed rows go at once (their events too), the
	 * 2 claimed stay */
	CHECK_INT(
	    pm_store_job_state(s, cancelled, "cancelled", NULL, true, &err),
	    PM_OK);
	pm_queue_counts qc = qcounts(s, cancelled);
	CHECK_INT(qc.queued, 0);
	CHECK_INT(qc.claimed, 2);
	CHECK_INT(job_rows(&d, "queue", cancelled), 2);
	/* other states leave the rows alone */
	CHECK_INT(pm_store_job_state(s, running, "running", NULL, false, &err),
		  PM_OK);
	CHECK_INT(qcounts(s, running).queued, 2);
	CHECK_INT(pm_store_job_state(s, 99999, "cancelled", NULL, true, &err),
		  PM_ERR_NOT_FOUND);
	job_age(&d, running, 48);
	/* nothing of the cancelled job is left to claim */
	{
		pm_claim *cl = NULL;
		int got = -1;
		CHECK_INT(
		    pm_store_claim(s, cancelled, "w2", 5, 60, &cl, &got, &err),
		    PM_OK);
		CHECK_INT(got, 0);
		pm_claims_free(cl, got);
	}

	/* usage and hostile job ids */
	CHECK_INT(pm_store_queue_prune(s, 99999, 0, false, &pr, &err),
		  PM_ERR_NOT_FOUND);
	CHECK_INT(pm_store_queue_prune(s, running, 0, false, &pr, &err),
		  PM_ERR_CONFLICT);
	CHECK(strstr(err.msg, "running") != NULL);
	CHECK_INT(pm_store_queue_prune(s, -1, 0, false, &pr, &err),
		  PM_ERR_USAGE);
	CHECK_INT(pm_store_queue_prune(s, 0, -5, false, &pr, &err),
		  PM_ERR_USAGE);
	CHECK_INT(pm_store_queue_prune(s, 0, 0, false, NULL, &err),
		  PM_ERR_USAGE);

	/* dry run: counts, deletes nothing; the cutoff keeps the recent
	 * job, the claimed row its job, the cancelled job's claims it */
	CHECK_INT(pm_store_queue_prune(s, 0, 3600, true, &pr, &err), PM_OK);
	CHECK_INT(pr.jobs, 1);
	CHECK_INT(pr.rows, 6);
	CHECK_INT(pr.events, old_ev);
	CHECK_INT(job_rows(&d, "queue", old), 6);
	CHECK_INT(job_rows(&d, "queue_events", old), old_ev);
	/* the job filter: the recent job is too young */
	CHECK_INT(pm_store_queue_prune(s, recent, 3600, false, &pr, &err),
		  PM_OK);
	CHECK_INT(pr.jobs, 0);
	CHECK_INT(pr.rows, 0);
	CHECK_INT(job_rows(&d, "queue", recent), 2);

	/* in batches of 4 rows (the backend's slot; the API uses 10,000):
	 * 6 rows = 2 transactions */
	void *conn = NULL;
	CHECK_INT(be->open(url, false, &conn, &err), PM_OK);
	if (conn) {
		memset(&pr, 0, sizeof pr);
		CHECK_INT(be->queue_prune(conn, 0, pm_wall() - 3600, false, 4,
					  &pr, &err),
			  PM_OK);
		be->close(conn);
	}
	CHECK_INT(pr.jobs, 1);
	CHECK_INT(pr.rows, 6);
	CHECK_INT(pr.events, old_ev);
	CHECK_INT(job_rows(&d, "queue", old), 0);
	CHECK_INT(job_rows(&d, "queue_events", old), 0);
	CHECK_INT(job_rows(&d, "queue", running), run_rows);
	CHECK_INT(job_rows(&d, "queue_events", running), run_ev);
	CHECK_INT(job_rows(&d, "queue", recent), 2);
	CHECK_INT(job_rows(&d, "queue", claimed), 3);
	CHECK_INT(job_rows(&d, "queue", cancelled), 2);
	/* again: nothing left */
	CHECK_INT(pm_store_queue_prune(s, 0, 3600, false, &pr, &err), PM_OK);
	CHECK_INT(pr.rows, 0);
	CHECK_INT(pr.jobs, 0);

	/* the pruned job: items stay, queue figures are zero and say so,
	 * its history is gone */
	pm_item_state is;
	pm_status code;
	CHECK_INT(pm_store_item_state(s, old, "p-old-0", &is, &code, &err),
		  PM_OK);
	CHECK_INT(is, PM_ITEM_DONE);
	CHECK_INT(pm_store_item_state(s, old, "p-old-2", &is, &code, &err),
		  PM_OK);
	CHECK_INT(is, PM_ITEM_FAILED);
	qc = qcounts(s, old);
	CHECK_INT(qc.pruned, 1);
	CHECK_INT(qc.queued + qc.claimed + qc.done + qc.failed, 0);
	CHECK(qc.enqueued);
	CHECK_INT(qc.total, 6);
	CHECK_INT(qcounts(s, running).pruned, 0);
	CHECK_INT(qcounts(s, 0).pruned, 1);
	CHECK_INT(history(s, old, "p-old-0").n, 0);
	pm_job_info ji = {0};
	CHECK_INT(pm_store_job_get(s, old, job_info_cb, &ji, &err), PM_OK);
	CHECK(ji.queue.on);
	CHECK_INT(ji.queue.queued, 0);
	CHECK_INT(ji.queue.claimed, 0);

	/* with no cutoff (0 s) the recent job goes too, by id */
	CHECK_INT(pm_store_queue_prune(s, recent, 0, false, &pr, &err), PM_OK);
	CHECK_INT(pr.jobs, 1);
	CHECK_INT(pr.rows, 2);
	CHECK_INT(job_rows(&d, "queue", recent), 0);

	/* re-enqueue of the pruned job: done items stay done, the failed
	 * ones are queued again (their rows are gone), the mark goes */
	pm_enqueue_rec recs[6];
	char keys[6][24];
	int64_t added = 0;
	for (int i = 0; i < 6; i++) {
		snprintf(keys[i], sizeof keys[i], "p-old-%d", i);
		recs[i] = (pm_enqueue_rec){keys[i], (uint64_t)i + 1, "{}"};
	}
	CHECK_INT(pm_store_job_state(s, old, "queued", NULL, false, &err),
		  PM_OK);
	CHECK_INT(pm_store_enqueue(s, old, 0, recs, 6, &added, &err), PM_OK);
	CHECK_INT(added, 2);
	CHECK_INT(pm_store_enqueue_end(s, old, 6, &err), PM_OK);
	qc = qcounts(s, old);
	CHECK_INT(qc.pruned, 0);
	CHECK_INT(qc.queued, 2);
	CHECK_INT(pm_store_queue_finish(s, old, &fin, &err), PM_OK);
	CHECK(!fin);
	/* a queued job is never pruned, whatever its age */
	job_age(&d, old, 48);
	CHECK_INT(pm_store_queue_prune(s, 0, 0, false, &pr, &err), PM_OK);
	CHECK_INT(job_rows(&d, "queue", old), 2);
	CHECK_INT(job_rows(&d, "queue", running), run_rows);

	/* a cancelled job's claims that come back (a draining worker's
	 * release, an expired lease) are deleted, not queued again: the
	 * claimed job's row goes back, the cancelled job's 2 go */
	int64_t n = -1;
	CHECK_INT(pm_store_lease_release(s, "w", &n, &err), PM_OK);
	CHECK_INT(n, 1);
	CHECK_INT(qcounts(s, claimed).queued, 3);
	CHECK_INT(job_rows(&d, "queue", cancelled), 0);
	CHECK_INT(job_rows(&d, "queue_events", cancelled), 0);
	{
		pm_job_spec sp = spec1;
		pm_claim *cl = NULL;
		int got = 0, run = 0;
		int64_t job = 0;
		pm_enqueue_rec two[2] = {{"r1", 1, "{}"}, {"r2", 2, "{}"}};
		sp.key = "p-reap";
		CHECK_INT(pm_store_job_open(s, &sp, &job, &run, &err), PM_OK);
		CHECK_INT(pm_store_enqueue(s, job, 0, two, 2, NULL, &err),
			  PM_OK);
		CHECK_INT(pm_store_enqueue_end(s, job, 2, &err), PM_OK);
		CHECK_INT(
		    pm_store_claim(s, job, "w9", 1, 0.05, &cl, &got, &err),
		    PM_OK);
		CHECK_INT(got, 1);
		pm_claims_free(cl, got);
		CHECK_INT(
		    pm_store_job_state(s, job, "cancelled", NULL, true, &err),
		    PM_OK);
		CHECK_INT(job_rows(&d, "queue", job), 1); /* the claimed one */
		sleep_ms(300);
		CHECK_INT(pm_store_lease_reap(s, &n, &err), PM_OK);
		CHECK_INT(n, 0);
		CHECK_INT(job_rows(&d, "queue", job), 0);
		CHECK_INT(job_rows(&d, "queue_events", job), 0);
		/* no row left: a worker's finish leaves it cancelled */
		bool fin2 = true;
		char state[32] = "";
		CHECK_INT(pm_store_queue_finish(s, job, &fin2, &err), PM_OK);
		CHECK(!fin2);
		CHECK_INT(
		    pm_store_job_state_of(s, job, state, sizeof state, &err),
		    PM_OK);
		CHECK_STR(state, "cancelled");
	}

	raw_close(&d);
	pm_store_close(s);
}

int main(void)
{
	snprintf(dir, sizeof dir, "/tmp/pm_test_store.XXXXXX");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 2;
	}
	/* the same cases on every backend */
	static void (*const conformance[])(void) = {
	    test_jobs_and_items, test_dlq,
	    test_serve_queries,	 test_text_and_vectors,
	    test_hostile_values, test_tags_search,
	    test_images,	 test_provider_days,
	    test_job_ads,	 test_queue_basic,
	    test_queue_lease,	 test_queue_finish,
	    test_queue_hostile,	 test_queue_stress,
	    test_queue_prune,	 test_phash_near,
	};
	int n_conf = (int)(sizeof conformance / sizeof conformance[0]);

	test_vtables();
	test_open_errors();
	test_url_mask();
	test_schema();
	test_migration();
	test_newer();
	test_migration_text();
	test_migration_providers();
	for (int i = 0; i < n_conf; i++)
		conformance[i]();

	pg_base = getenv("PIXMILL_TEST_PG");
	if (pg_base && *pg_base) {
		printf("-- PostgreSQL: %s\n", pg_base);
		on_pg = true;
		test_pg_schema();
		test_pg_failed_batch();
		test_pg_reconnect();
		test_pg_queue_wait();
		for (int i = 0; i < n_conf; i++)
			conformance[i]();
	} else {
		printf("SKIP PostgreSQL cases: PIXMILL_TEST_PG is not set"
		       " (tests/store/pg.sh sets it)\n");
	}

	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (t_failed == 0 && system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	TEST_DONE();
}
