/* prune_bench.c — pruning the shared queue (pixmill queue prune) on any
 * store URL (SQLite file or postgres://), for bench/prune.sh.
 *
 * Usage: prune_bench fill [--n N] URL
 *        prune_bench prune [--dry-run] URL
 * fill: on a new, empty store, one job of N records enqueued (calls of
 * 500), drained as a worker drains it (claims of 500, a minimal done item
 * put with each claim's queue_id, one commit per claim), so the job ends
 * "done" with N done queue rows and 2 N events (claimed, done); plus a
 * second job of 1,000 records left queued (which a prune must keep).
 * Prints "fill_s SECONDS".
 * prune: pm_store_queue_prune of every job finished (older than 0 s) and
 * prints "prune_s", "jobs", "rows", "events"; then checks that the queued
 * job kept its 1,000 rows (exit 1 if not).
 *
 * Threads: one thread. Built by bench/prune.sh against libpixmill.a.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_fixture.h"
#include "store/store.h"

/* Enqueues n records "PREFIX-i" of job (the enqueue left complete). */
static int enqueue(pm_store *st, int64_t job, const char *prefix, long n)
{
	pm_err err = {{0}};
	pm_enqueue_rec recs[500];
	char keys[500][32];

	for (long i = 0; i < n; i += 500) {
		int m = (int)(n - i < 500 ? n - i : 500);
		for (int k = 0; k < m; k++) {
			snprintf(keys[k], sizeof keys[k], "%s-%ld", prefix,
				 i + k + 1);
			recs[k] = (pm_enqueue_rec){
			    keys[k], (uint64_t)(i + k + 1),
			    "{\"id\":\"sku-1\",\"image\":\"images/p.jpg\","
			    "\"title\":\"Product in blue "
			    "cotton\",\"price\":\"19.99\"}"};
		}
		if (pm_store_enqueue(st, job, 0, recs, m, NULL, &err))
			return bench_fail("prune_bench", &err);
	}
	if (pm_store_enqueue_end(st, job, n, &err))
		return bench_fail("prune_bench", &err);
	return 0;
}

static int fill(pm_store *st, long n)
{
	pm_err err = {{0}};
	pm_job_spec sp = bench_spec("bench-prune-done");
	int64_t job = 0, job2 = 0;
	long completed = 0;
	bool fin = false;
	double t0 = bench_mono();

	if (pm_store_job_open(st, &sp, &job, NULL, &err))
		return bench_fail("prune_bench", &err);
	if (enqueue(st, job, "d", n))
		return 1;
	for (;;) {
		pm_claim *cl = NULL;
		int got = 0;
		if (pm_store_claim(st, job, "bench-worker", 500, 600, &cl, &got,
				   &err))
			return bench_fail("prune_bench", &err);
		if (got == 0)
			break;
		if (pm_store_begin(st, &err))
			return bench_fail("prune_bench", &err);
		for (int i = 0; i < got; i++) {
			pm_item_rec it = {
			    .job_id = cl[i].job_id,
			    .key = cl[i].key,
			    .ordinal = cl[i].ordinal,
			    .status = PM_OK,
			    .attempts = 1,
			    .queue_id = cl[i].queue_id,
			    .lease_owner = "bench-worker",
			};
			if (pm_store_put_item(st, &it, &err))
				return bench_fail("prune_bench", &err);
		}
		if (pm_store_commit(st, &err))
			return bench_fail("prune_bench", &err);
		completed += got;
		pm_claims_free(cl, got);
	}
	if (pm_store_queue_finish(st, job, &fin, &err))
		return bench_fail("prune_bench", &err);
	if (completed != n || !fin) {
		fprintf(stderr, "prune_bench: %ld completed, want %ld\n",
			completed, n);
		return 1;
	}
	sp = bench_spec("bench-prune-queued");
	if (pm_store_job_create(st, &sp, NULL, &job2, &err))
		return bench_fail("prune_bench", &err);
	if (enqueue(st, job2, "q", 1000))
		return 1;
	printf("fill_s %.2f\n", bench_mono() - t0);
	return 0;
}

static int prune(pm_store *st, bool dry_run)
{
	pm_err err = {{0}};
	pm_queue_pruned pr;
	pm_queue_counts qc;
	double t0 = bench_mono();

	if (pm_store_queue_prune(st, 0, 0, dry_run, &pr, &err))
		return bench_fail("prune_bench", &err);
	printf("prune_s %.3f\njobs %lld\nrows %lld\nevents %lld\n",
	       bench_mono() - t0, (long long)pr.jobs, (long long)pr.rows,
	       (long long)pr.events);
	if (pm_store_queue_counts(st, 0, &qc, &err))
		return bench_fail("prune_bench", &err);
	if (qc.queued != 1000) {
		fprintf(stderr,
			"prune_bench: %lld queued rows left, want 1000\n",
			(long long)qc.queued);
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	long n = 100000;
	bool dry_run = false;
	const char *url = NULL, *mode = argc > 1 ? argv[1] : "";
	pm_err err = {{0}};
	pm_store *st = NULL;
	int rc;

	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--n") == 0 && i + 1 < argc)
			n = strtol(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--dry-run") == 0)
			dry_run = true;
		else
			url = argv[i];
	}
	if (!url || n < 1 ||
	    (strcmp(mode, "fill") != 0 && strcmp(mode, "prune") != 0)) {
		fprintf(stderr, "usage: prune_bench fill [--n N] URL | "
				"prune [--dry-run] URL\n");
		return 2;
	}
	if (pm_store_open(url, false, &st, &err))
		return bench_fail("prune_bench", &err);
	rc = strcmp(mode, "fill") == 0 ? fill(st, n) : prune(st, dry_run);
	pm_store_close(st);
	return rc;
}
