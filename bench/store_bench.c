/* store_bench.c — store overhead per item: pm_store_put_item plus its share
 * of pm_store_commit, on any store URL (SQLite file or postgres://), for
 * bench/store.sh.
 *
 * Usage: store_bench [--n N] [--batch B] URL
 * Opens URL (a new, empty store), opens one job and writes N done items
 * the way the run's writer does: begin, B puts, commit, again. Each item
 * is a realistic row: title, category, attributes, a new asset (its own
 * sha256, pHash, colours, metadata) with 3 outputs. Prints "key value"
 * lines: us_per_item (wall time of the puts and commits over N) and
 * items_per_s.
 *
 * Threads: one thread. Built by the Makefile ($(BUILD)/bench/store_bench,
 * with bench/bench_fixture.c) against libpixmill.a; run by bench/store.sh.
 */
#include <stdio.h>
#include <string.h>

#include "bench_fixture.h"
#include "core/util.h"

int main(int argc, char **argv)
{
	long n = 2000, batch = 256;
	pm_err err = {{0}};
	pm_store *st = NULL;
	int64_t job = 0;
	const char *url = bench_args("store_bench", argc, argv, &n, &batch);

	if (!url)
		return 2;
	if (bench_open(url, "bench", &st, &job, &err))
		return bench_fail("store_bench", &err);
	double t0 = bench_mono();
	pm_status s = PM_OK;
	for (long i = 0; i < n && !s; i++) {
		char key[32], sha[65], id[32], title[96], paths[3][96];
		snprintf(key, sizeof key, "r%ld", i + 1);
		snprintf(id, sizeof id, "sku-%ld", 100000 + i);
		snprintf(title, sizeof title, "Product %ld in blue cotton", i);
		pm_sha256_hex(key, strlen(key), sha);
		static const char *const names[3] = {"256.webp", "512.webp",
						     "1024.webp"};
		pm_output_rec outs[3];
		for (int k = 0; k < 3; k++) {
			snprintf(paths[k], sizeof paths[k], "%.2s/%s/%s", sha,
				 sha, names[k]);
			outs[k] = (pm_output_rec){names[k], paths[k], "webp",
						  256 << k, 200 << k, 4000 << k,
						  sha};
		}
		pm_asset_rec a = {
		    .sha256 = sha,
		    .pipeline_hash = "ph-bench",
		    .format = "jpeg",
		    .width = 2000,
		    .height = 1600,
		    .bytes = 250000,
		    .phash = (uint64_t)i * 0x9e3779b97f4a7c15ull,
		    .has_phash = true,
		    .colors_json = "[{\"hex\":\"#336699\",\"share\":0.5}]",
		    .sharpness = 40.0,
		    .meta_json = "{\"exif\":false}",
		    .n_outputs = 3,
		    .outputs = outs,
		};
		pm_item_rec it = {
		    .job_id = job,
		    .key = key,
		    .ordinal = (uint64_t)i + 1,
		    .id = id,
		    .image = "images/p.jpg",
		    .title = title,
		    .price = "19.99",
		    .category = "shirts",
		    .attrs_json = "{\"color\":\"blue\",\"size\":\"M\"}",
		    .status = PM_OK,
		    .sha256 = sha,
		    .latency_ms = 120.0,
		    .attempts = 1,
		    .asset = &a,
		};
		if (i % batch == 0)
			s = pm_store_begin(st, &err);
		if (!s)
			s = pm_store_put_item(st, &it, &err);
		if (!s && (i % batch == batch - 1 || i == n - 1))
			s = pm_store_commit(st, &err);
	}
	double dt = bench_mono() - t0;
	if (s)
		return bench_fail("store_bench", &err);
	int64_t done = 0;
	pm_store_job_counts(st, job, NULL, &done, NULL, NULL, &err);
	pm_store_close(st);
	if (done != n) {
		fprintf(stderr, "store_bench: %lld items done, want %ld\n",
			(long long)done, n);
		return 1;
	}
	printf("us_per_item %.1f\n", dt * 1e6 / (double)n);
	printf("items_per_s %.0f\n", (double)n / dt);
	return 0;
}
