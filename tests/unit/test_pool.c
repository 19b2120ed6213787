/* test_pool.c — the store connection pool (store/pool.h): many threads
 * (more than the pool's bound) borrow, query and give back handles; the
 * number of connections open at once is counted independently of the
 * pool (SQLite: file descriptors on the database file in /proc/self/fd;
 * PostgreSQL: pg_stat_activity) and never exceeds the bound; every
 * borrower completes; a borrow past its timeout gets PM_ERR_BUSY; a
 * broken handle is replaced; a handle given back inside a batch is
 * refused; free with handles idle closes them (ASan/LSan check the rest).
 *
 * Runs on SQLite, then on PostgreSQL when PIXMILL_TEST_PG is set to a
 * server URL without a database (tests/store/pg.sh style, e.g.
 * postgresql://pixmill@127.0.0.1:5432): each case in a database of its
 * own.
 *
 * Threads: the borrower threads only touch atomics and their own slots;
 * CHECKs run on the main thread (test.h's counters are not atomic).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/pool.h"
#include "test.h"

static char dir[256];
static const char *pg_base; /* PIXMILL_TEST_PG, or NULL */
static bool on_pg;

static bool pg_exec(const char *db, const char *sql, long long *val)
{
	char url[600];
	snprintf(url, sizeof url, "%s/%s", pg_base, db);
	PGconn *c = PQconnectdb(url);
	bool ok = PQstatus(c) == CONNECTION_OK;
	if (ok) {
		PGresult *r = PQexec(c, sql);
		ExecStatusType es = PQresultStatus(r);
		ok = es == PGRES_COMMAND_OK || es == PGRES_TUPLES_OK;
		if (ok && val && PQntuples(r) == 1)
			*val = atoll(PQgetvalue(r, 0, 0));
		if (!ok)
			fprintf(stderr, "raw %s: %s", sql, PQerrorMessage(c));
		PQclear(r);
	} else {
		fprintf(stderr, "raw connect %s: %s", url, PQerrorMessage(c));
	}
	PQfinish(c);
	return ok;
}

/* A fresh store for case name: a file in dir, or database pmp_NAME. */
static const char *store_url(const char *name)
{
	static char buf[8][600];
	static int n;
	char *b = buf[n++ % 8];
	if (!on_pg) {
		snprintf(b, sizeof buf[0], "%s/%s.db", dir, name);
		return b;
	}
	char sql[200];
	snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS pmp_%s WITH (FORCE)",
		 name);
	pg_exec("postgres", sql, NULL);
	snprintf(sql, sizeof sql, "CREATE DATABASE pmp_%s", name);
	pg_exec("postgres", sql, NULL);
	snprintf(b, sizeof buf[0], "%s/pmp_%s", pg_base, name);
	return b;
}

/* Connections open on the store now, counted outside the pool: SQLite:
 * descriptors of this process on the database file itself; PostgreSQL:
 * pixmill's sessions on the case's database. -1 if it cannot tell. */
static long long conns_open(const char *name, const char *url)
{
	if (on_pg) {
		char sql[300];
		long long n = -1;
		snprintf(sql, sizeof sql,
			 "SELECT count(*) FROM pg_stat_activity WHERE "
			 "datname = 'pmp_%s' AND application_name = "
			 "'pixmill'",
			 name);
		return pg_exec("postgres", sql, &n) ? n : -1;
	}
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	long long n = 0;
	char p[300], t[700];
	if (!d)
		return -1;
	while ((de = readdir(d))) {
		ssize_t k;
		snprintf(p, sizeof p, "/proc/self/fd/%s", de->d_name);
		k = readlink(p, t, sizeof t - 1);
		if (k <= 0)
			continue;
		t[k] = 0;
		if (strcmp(t, url) == 0)
			n++;
	}
	closedir(d);
	return n;
}

/* ---- many borrowers, a small pool ---- */

#define N_THREADS 12
#define N_ROUNDS  25
#define POOL_MAX  3

typedef struct borrower {
	pm_store_pool *pool;
	int done;     /* rounds that borrowed, queried and gave back */
	int failures; /* borrow or query errors */
	char err[600];
} borrower;

static atomic_int out_now, out_peak;

static int count_cb(const char *state, int64_t n, void *ud)
{
	(void)state, (void)n, (void)ud;
	return 0;
}

static void *borrow_main(void *arg)
{
	borrower *b = arg;
	for (int i = 0; i < N_ROUNDS; i++) {
		pm_store *st = NULL;
		pm_err e = {{0}};
		int64_t dlq = 0;
		if (pm_store_pool_get(b->pool, -1, &st, &e)) {
			b->failures++;
			snprintf(b->err, sizeof b->err, "%s", e.msg);
			continue;
		}
		int now = atomic_fetch_add(&out_now, 1) + 1;
		int peak = atomic_load(&out_peak);
		while (now > peak &&
		       !atomic_compare_exchange_weak(&out_peak, &peak, now))
			;
		if (pm_store_stats(st, count_cb, NULL, &dlq, &e)) {
			b->failures++;
			snprintf(b->err, sizeof b->err, "%s", e.msg);
		} else {
			b->done++;
		}
		usleep(2000); /* hold it a little: borrowers overlap */
		atomic_fetch_sub(&out_now, 1);
		pm_store_pool_put(b->pool, st, false);
	}
	return NULL;
}

static void test_many_threads(void)
{
	const char *url = store_url("many");
	pm_store_pool *p = NULL;
	pm_store *st = NULL;
	pm_err e = {{0}};
	pthread_t t[N_THREADS];
	borrower b[N_THREADS];
	pm_store_pool_stats s;
	long long seen_max = 0, c;

	/* Create and migrate once, as serve does before its pool. */
	CHECK_INT(pm_store_open(url, false, &st, &e), PM_OK);
	pm_store_close(st);
	CHECK_INT(pm_store_pool_new(url, false, POOL_MAX, &p, &e), PM_OK);
	if (!p)
		return;
	atomic_store(&out_now, 0);
	atomic_store(&out_peak, 0);
	memset(b, 0, sizeof b);
	for (int i = 0; i < N_THREADS; i++) {
		b[i].pool = p;
		pthread_create(&t[i], NULL, borrow_main, &b[i]);
	}
	/* Count connections from outside while they run. */
	for (int k = 0; k < 40; k++) {
		c = conns_open("many", url);
		if (c > seen_max)
			seen_max = c;
		usleep(5000);
	}
	for (int i = 0; i < N_THREADS; i++)
		pthread_join(t[i], NULL);
	c = conns_open("many", url);
	if (c > seen_max)
		seen_max = c;
	for (int i = 0; i < N_THREADS; i++) {
		CHECK_INT(b[i].done, N_ROUNDS);
		CHECK_INT(b[i].failures, 0);
		if (b[i].failures)
			fprintf(stderr, "  borrower %d: %s\n", i, b[i].err);
	}
	CHECK(atomic_load(&out_peak) <= POOL_MAX);
	CHECK(atomic_load(&out_peak) >= 1);
	CHECK(seen_max >= 1);
	CHECK(seen_max <= POOL_MAX);
	printf("  %d threads, pool of %d: at most %lld connections seen "
	       "open, %d borrowed at once\n",
	       N_THREADS, POOL_MAX, seen_max, atomic_load(&out_peak));
	pm_store_pool_stats_get(p, &s);
	CHECK_INT(s.max, POOL_MAX);
	CHECK_INT(s.gets, N_THREADS * N_ROUNDS);
	CHECK_INT(s.in_use, 0);
	CHECK(s.open <= POOL_MAX && s.open >= 1);
	CHECK_INT(s.idle, s.open);
	CHECK(s.peak_open <= POOL_MAX);
	CHECK(s.opens <= POOL_MAX);
	CHECK_INT(s.timeouts, 0);
	CHECK_INT(s.broken, 0);
	CHECK(s.wait_s >= 0);
	/* free with every handle idle: all closed */
	pm_store_pool_free(p);
	if (on_pg) {
		/* the server ends a session a moment after the client
		 * leaves: poll (the check is the count, not the time) */
		for (int k = 0; k < 100 && conns_open("many", url) != 0; k++)
			usleep(100000);
	}
	CHECK_INT(conns_open("many", url), 0);
}

/* ---- timeouts, waiting, broken and refused handles ---- */

typedef struct waiter {
	pm_store_pool *pool;
	int timeout_ms;
	pm_status st;
	pm_store *got;
} waiter;

static void *wait_main(void *arg)
{
	waiter *w = arg;
	pm_err e = {{0}};
	w->st = pm_store_pool_get(w->pool, w->timeout_ms, &w->got, &e);
	return NULL;
}

static void test_timeout_and_broken(void)
{
	const char *url = store_url("one");
	pm_store_pool *p = NULL;
	pm_store *a = NULL, *b = NULL;
	pm_err e = {{0}};
	pm_store_pool_stats s;
	int64_t dlq;

	CHECK_INT(pm_store_pool_new(url, false, 0, &p, &e), PM_ERR_USAGE);
	CHECK(p == NULL);
	CHECK_INT(pm_store_pool_new(url, false, PM_STORE_POOL_MAX + 1, &p, &e),
		  PM_ERR_USAGE);
	CHECK_INT(pm_store_pool_new(url, false, 1, &p, &e), PM_OK);
	if (!p)
		return;
	CHECK_INT(pm_store_pool_get(p, 0, &a, &e), PM_OK);
	CHECK(a != NULL);
	/* the one handle is out: no wait, then a short wait, both busy */
	CHECK_INT(pm_store_pool_get(p, 0, &b, &e), PM_ERR_BUSY);
	CHECK(b == NULL);
	CHECK_INT(pm_store_pool_get(p, 50, &b, &e), PM_ERR_BUSY);
	CHECK(b == NULL);
	CHECK(strstr(e.msg, "in use") != NULL);
	pm_store_pool_stats_get(p, &s);
	CHECK_INT(s.timeouts, 1);
	CHECK_INT(s.busy, 1);
	CHECK_INT(s.waits, 1);
	CHECK_INT(s.in_use, 1);
	CHECK_INT(s.open, 1);

	/* a waiter gets the handle when it comes back */
	{
		waiter w = {p, 60000, PM_ERR_INTERNAL, NULL};
		pthread_t t;
		pthread_create(&t, NULL, wait_main, &w);
		usleep(50000);
		pm_store_pool_put(p, a, false);
		pthread_join(t, NULL);
		CHECK_INT(w.st, PM_OK);
		CHECK(w.got == a); /* the same connection, reused */
		a = w.got;
	}

	/* broken: closed, and the next borrower opens a new one */
	pm_store_pool_put(p, a, true);
	pm_store_pool_stats_get(p, &s);
	CHECK_INT(s.broken, 1);
	CHECK_INT(s.open, 0);
	CHECK_INT(s.opens, 1);
	CHECK_INT(pm_store_pool_get(p, 0, &a, &e), PM_OK);
	CHECK_INT(pm_store_stats(a, count_cb, NULL, &dlq, &e), PM_OK);
	pm_store_pool_stats_get(p, &s);
	CHECK_INT(s.opens, 2);
	CHECK_INT(s.open, 1);

	/* given back inside a batch: refused (rolled back, closed) */
	CHECK_INT(pm_store_begin(a, &e), PM_OK);
	CHECK(pm_store_in_batch(a));
	pm_store_pool_put(p, a, false);
	pm_store_pool_stats_get(p, &s);
	CHECK_INT(s.refused, 1);
	CHECK_INT(s.open, 0);
	CHECK_INT(pm_store_pool_get(p, 0, &a, &e), PM_OK);
	CHECK(!pm_store_in_batch(a));
	CHECK_INT(pm_store_begin(a, &e), PM_OK);
	CHECK_INT(pm_store_commit(a, &e), PM_OK);
	CHECK(!pm_store_in_batch(a));
	pm_store_pool_put(p, a, false);
	pm_store_pool_stats_get(p, &s);
	CHECK_INT(s.idle, 1);
	CHECK_INT(s.gets, 4);
	pm_store_pool_free(p);
}

/* ---- a store that cannot be opened ---- */

static void test_open_failure(void)
{
	char url[600];
	pm_store_pool *p = NULL;
	pm_store *a = NULL;
	pm_err e = {{0}};
	pm_store_pool_stats s;

	if (on_pg)
		snprintf(url, sizeof url, "%s/pmp_no_such_db", pg_base);
	else
		snprintf(url, sizeof url, "%s/missing/none.db", dir);
	CHECK_INT(pm_store_pool_new(url, true, 2, &p, &e), PM_OK);
	if (!p)
		return;
	CHECK(pm_store_pool_get(p, 0, &a, &e) != PM_OK);
	CHECK(a == NULL);
	CHECK(e.msg[0] != 0);
	pm_store_pool_stats_get(p, &s);
	CHECK_INT(s.open_failures, 1);
	CHECK_INT(s.open, 0);
	CHECK_INT(s.in_use, 0);
	/* the slot was given back: a second try fails the same way, not
	 * with "busy" */
	CHECK(pm_store_pool_get(p, 0, &a, &e) != PM_ERR_BUSY);
	pm_store_pool_free(p);
}

static void run_all(void)
{
	test_many_threads();
	test_timeout_and_broken();
	test_open_failure();
}

int main(void)
{
	snprintf(dir, sizeof dir, "/tmp/pm_test_pool.XXXXXX");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 2;
	}
	printf("-- SQLite\n");
	run_all();
	pg_base = getenv("PIXMILL_TEST_PG");
	if (pg_base && *pg_base) {
		printf("-- PostgreSQL: %s\n", pg_base);
		on_pg = true;
		run_all();
	} else {
		printf("SKIP PostgreSQL cases: PIXMILL_TEST_PG is not set "
		       "(tests/store/pg.sh starts a server)\n");
	}
	{
		char cmd[300];
		snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", dir);
	}
	TEST_DONE();
}
