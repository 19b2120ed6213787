/* queue_bench.c — the shared queue's overhead per item on any store URL
 * (SQLite file or postgres://), for bench/queue.sh.
 *
 * Usage: queue_bench [--n N] [--batch B] URL
 * Opens URL (a new, empty store) and one job, enqueues N records (in
 * chunks of 500, as run --enqueue-only would), then drains the queue as a
 * worker does: claim B rows, begin, put_item of a minimal done item with
 * the claim's queue_id and lease owner for each, commit; again until the
 * queue is empty. Then, for comparison, the same N minimal puts in
 * batches of B without a queue (a second job). Prints "key value" lines,
 * microseconds per item: enqueue_us, claim_us, complete_us (puts and
 * commits), queue_us (claim + complete), plain_put_us (the puts without a
 * queue).
 *
 * Threads: one thread. Built by the Makefile ($(BUILD)/bench/queue_bench,
 * with bench/bench_fixture.c) against libpixmill.a; run by bench/queue.sh.
 */
#include <stdio.h>
#include <stdlib.h>

#include "bench_fixture.h"

static int fail(const pm_err *err)
{
	return bench_fail("queue_bench", err);
}

/* A minimal done item: what the queue adds to is measured, not the
 * asset writes every put pays anyway (bench/store.sh measures those). */
static pm_item_rec minimal(int64_t job, const char *key, uint64_t ordinal)
{
	return (pm_item_rec){
	    .job_id = job,
	    .key = key,
	    .ordinal = ordinal,
	    .status = PM_OK,
	    .attempts = 1,
	};
}

int main(int argc, char **argv)
{
	long n = 2000, batch = 16;
	pm_err err = {{0}};
	pm_store *st = NULL;
	int64_t job = 0, job2 = 0, added = 0;
	const char *url = bench_args("queue_bench", argc, argv, &n, &batch);

	if (!url)
		return 2;
	if (bench_open(url, "bench-queue", &st, &job, &err) ||
	    bench_job(st, "bench-plain", &job2, &err))
		return fail(&err);

	char(*keys)[24] = calloc((size_t)n, sizeof *keys);
	pm_enqueue_rec *recs = calloc((size_t)n, sizeof *recs);
	if (!keys || !recs)
		return 1;
	for (long i = 0; i < n; i++) {
		snprintf(keys[i], sizeof keys[i], "r%ld", i + 1);
		recs[i] = (pm_enqueue_rec){
		    keys[i], (uint64_t)i + 1,
		    "{\"id\":\"sku-1\",\"image\":\"images/p.jpg\","
		    "\"title\":\"Product in blue "
		    "cotton\",\"price\":\"19.99\"}"};
	}
	double t0 = bench_mono();
	for (long i = 0; i < n; i += 500) {
		int64_t a = 0;
		if (pm_store_enqueue(st, job, 0, recs + i,
				     (int)(n - i < 500 ? n - i : 500), &a,
				     &err))
			return fail(&err);
		added += a;
	}
	if (pm_store_enqueue_end(st, job, n, &err))
		return fail(&err);
	double t_enq = bench_mono() - t0, t_claim = 0, t_done = 0;
	if (added != n) {
		fprintf(stderr, "queue_bench: %lld enqueued, want %ld\n",
			(long long)added, n);
		return 1;
	}

	long completed = 0;
	for (;;) {
		pm_claim *cl = NULL;
		int got = 0;
		double a = bench_mono();
		if (pm_store_claim(st, job, "bench-worker", (int)batch, 300,
				   &cl, &got, &err))
			return fail(&err);
		double b = bench_mono();
		t_claim += b - a;
		if (got == 0)
			break;
		if (pm_store_begin(st, &err))
			return fail(&err);
		for (int i = 0; i < got; i++) {
			pm_item_rec it =
			    minimal(cl[i].job_id, cl[i].key, cl[i].ordinal);
			it.queue_id = cl[i].queue_id;
			it.lease_owner = "bench-worker";
			if (pm_store_put_item(st, &it, &err))
				return fail(&err);
		}
		if (pm_store_commit(st, &err))
			return fail(&err);
		t_done += bench_mono() - b;
		completed += got;
		pm_claims_free(cl, got);
	}
	bool fin = false;
	if (pm_store_queue_finish(st, job, &fin, &err))
		return fail(&err);
	if (completed != n || !fin) {
		fprintf(stderr, "queue_bench: %ld completed, want %ld\n",
			completed, n);
		return 1;
	}

	t0 = bench_mono();
	for (long i = 0; i < n; i++) {
		pm_item_rec it = minimal(job2, keys[i], (uint64_t)i + 1);
		if (i % batch == 0 && pm_store_begin(st, &err))
			return fail(&err);
		if (pm_store_put_item(st, &it, &err))
			return fail(&err);
		if ((i % batch == batch - 1 || i == n - 1) &&
		    pm_store_commit(st, &err))
			return fail(&err);
	}
	double t_plain = bench_mono() - t0;
	pm_store_close(st);
	free(keys);
	free(recs);
	printf("enqueue_us %.1f\n", t_enq * 1e6 / (double)n);
	printf("claim_us %.1f\n", t_claim * 1e6 / (double)n);
	printf("complete_us %.1f\n", t_done * 1e6 / (double)n);
	printf("queue_us %.1f\n", (t_claim + t_done) * 1e6 / (double)n);
	printf("plain_put_us %.1f\n", t_plain * 1e6 / (double)n);
	return 0;
}
