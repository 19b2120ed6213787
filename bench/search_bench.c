/* search_bench.c — latency of exact search by image (engine/search.c) at
 * catalog scale, for bench/search.sh.
 *
 * Usage: search_bench [--n N] [--queries Q] [--k K] DB
 * Fills a new store DB with N synthetic done items (one job), each with an
 * asset carrying a random 64-bit pHash and a random unit vector of the
 * built-in model's length (176 floats), through the store API in batches
 * of 1000, as a run would. Then, in one process:
 *   load   pm_vecset_load / pm_hashset_load from the store (what each CLI
 *          query pays; a long-lived server would keep the set)
 *   scan   Q queries (perturbed stored vectors / hashes) of top-K by
 *          cosine (the vectorised scan) and by Hamming distance; plus the
 *          same cosine scan as a naive one-accumulator loop, which the
 *          compiler cannot vectorise without -ffast-math
 * Prints median and p95 per query in ms, one "key value" line each.
 *
 * Threads: one thread. Built by bench/search.sh against libpixmill.a.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/util.h"
#include "engine/search.h"
#include "stages/embed.h"
#include "store/store.h"

#define DIM PM_EMBED_BUILTIN_DIM

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static float gauss(void)
{
	double u = ((next() >> 11) + 1.0) / 9007199254740993.0;
	double v = (next() >> 11) / 9007199254740992.0;
	return (float)(sqrt(-2 * log(u)) * cos(2 * M_PI * v));
}

static void unit(float *v)
{
	double s = 0;
	for (int i = 0; i < DIM; i++) {
		v[i] = gauss();
		s += (double)v[i] * v[i];
	}
	for (int i = 0; i < DIM; i++)
		v[i] = (float)(v[i] / sqrt(s));
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static void report(const char *what, double *ms, int n)
{
	qsort(ms, (size_t)n, sizeof *ms, cmp_d);
	printf("%s_median_ms %.3f\n%s_p95_ms %.3f\n", what, ms[n / 2], what,
	       ms[(int)(n * 0.95)]);
}

/* The scan as one would first write it: one running sum. */
static int naive_topk(const float *v, size_t n, const float *q, int k,
		      float *best)
{
	int m = 0;
	for (size_t i = 0; i < n; i++) {
		float s = 0;
		for (int j = 0; j < DIM; j++)
			s += v[i * DIM + j] * q[j];
		if (m == k && s <= best[m - 1])
			continue;
		int j = m < k ? m++ : m - 1;
		while (j > 0 && best[j - 1] < s) {
			best[j] = best[j - 1];
			j--;
		}
		best[j] = s;
	}
	return m;
}

int main(int argc, char **argv)
{
	long n = 10000;
	int queries = 200, k = 10;
	const char *db = NULL;
	pm_err err = {{0}};
	pm_store *st = NULL;
	int64_t job = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--n") && i + 1 < argc)
			n = atol(argv[++i]);
		else if (!strcmp(argv[i], "--queries") && i + 1 < argc)
			queries = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--k") && i + 1 < argc)
			k = atoi(argv[++i]);
		else
			db = argv[i];
	}
	if (!db || n < 1 || queries < 1 || k < 1 || k > 1000) {
		fprintf(stderr, "usage: search_bench [--n N] [--queries Q] "
				"[--k K] DB\n");
		return 2;
	}
	remove(db);
	pm_job_spec spec = {"bench",	"(synthetic)", "bench",
			    "bench-ph", "{}",	       "/tmp"};
	if (pm_store_open(db, false, &st, &err) ||
	    pm_store_job_open(st, &spec, &job, NULL, &err)) {
		fprintf(stderr, "store: %s\n", err.msg);
		return 1;
	}

	/* fill */
	float *all = malloc((size_t)n * DIM * sizeof *all);
	uint64_t *hashes = malloc((size_t)n * sizeof *hashes);
	char(*shas)[65] = malloc((size_t)n * sizeof *shas);
	if (!all || !hashes || !shas)
		return 1;
	double t0 = pm_now();
	for (long i = 0; i < n; i++) {
		char *sha = shas[i], key[32];
		snprintf(sha, 65, "%016llx%048lx", (unsigned long long)next(),
			 i);
		snprintf(key, sizeof key, "k%ld", i);
		unit(all + i * DIM);
		hashes[i] = next();
		pm_asset_rec a = {.sha256 = sha,
				  .pipeline_hash = "bench-ph",
				  .format = "jpeg",
				  .width = 100,
				  .height = 100,
				  .bytes = 1000,
				  .phash = hashes[i],
				  .has_phash = true,
				  .sharpness = NAN,
				  .embedding = all + i * DIM,
				  .embedding_dim = DIM,
				  .embedding_model = PM_EMBED_BUILTIN_ID};
		pm_item_rec it = {.job_id = job,
				  .key = key,
				  .ordinal = (uint64_t)i,
				  .status = PM_OK,
				  .sha256 = sha,
				  .attempts = 1,
				  .asset = &a};
		if ((i % 1000 == 0 && pm_store_begin(st, &err)) ||
		    pm_store_put_item(st, &it, &err) ||
		    ((i % 1000 == 999 || i == n - 1) &&
		     pm_store_commit(st, &err))) {
			fprintf(stderr, "put: %s\n", err.msg);
			return 1;
		}
	}
	printf("n %ld\ndim %d\nfill_s %.2f\n", n, DIM, pm_now() - t0);

	/* load */
	pm_vecset *vs = NULL;
	pm_hashset hs;
	t0 = pm_now();
	if (pm_vecset_load(st, PM_EMBED_BUILTIN_ID, &vs, &err)) {
		fprintf(stderr, "load: %s\n", err.msg);
		return 1;
	}
	printf("load_vectors_ms %.1f\n", (pm_now() - t0) * 1000);
	t0 = pm_now();
	if (pm_hashset_load(st, &hs, &err)) {
		fprintf(stderr, "load: %s\n", err.msg);
		return 1;
	}
	printf("load_hashes_ms %.1f\n", (pm_now() - t0) * 1000);
	if ((long)pm_vecset_count(vs) != n || (long)hs.n != n) {
		fprintf(stderr, "loaded %zu vectors, %zu hashes of %ld\n",
			pm_vecset_count(vs), hs.n, n);
		return 1;
	}

	/* scan */
	double *ms = malloc((size_t)queries * sizeof *ms);
	pm_vec_hit *vh = malloc((size_t)k * sizeof *vh);
	pm_hash_hit *hh = malloc((size_t)k * sizeof *hh);
	float *best = malloc((size_t)k * sizeof *best);
	float q[DIM];
	int self = 0;
	for (int r = 0; r < queries; r++) {
		long t = (long)(next() % (uint64_t)n);
		for (int j = 0; j < DIM; j++) /* a near copy of item t */
			q[j] = all[t * DIM + j] + 0.01f * gauss();
		t0 = pm_now();
		int got = pm_vecset_topk(vs, q, k, NULL, vh);
		ms[r] = (pm_now() - t0) * 1000;
		self +=
		    got > 0 && !strcmp(pm_vecset_sha(vs, vh[0].index), shas[t]);
	}
	report("cosine", ms, queries);
	printf("cosine_top1_is_source %d/%d\n", self, queries);
	for (int r = 0; r < queries; r++) {
		long t = (long)(next() % (uint64_t)n);
		memcpy(q, all + t * DIM, sizeof q);
		t0 = pm_now();
		naive_topk(all, (size_t)n, q, k, best);
		ms[r] = (pm_now() - t0) * 1000;
	}
	report("cosine_naive", ms, queries);
	for (int r = 0; r < queries; r++) {
		uint64_t qh = hashes[next() % (uint64_t)n] ^ (1ull << (r % 64));
		t0 = pm_now();
		pm_hashset_topk(&hs, qh, k, 64, NULL, hh);
		ms[r] = (pm_now() - t0) * 1000;
	}
	report("phash", ms, queries);

	free(ms);
	free(vh);
	free(hh);
	free(best);
	free(all);
	free(hashes);
	free(shas);
	pm_vecset_free(vs);
	pm_hashset_clear(&hs);
	pm_store_close(st);
	return 0;
}
