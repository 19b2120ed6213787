/* bench_fixture.c — the clock, command line, store and job set-up that
 * bench/store_bench.c and bench/queue_bench.c share (bench_fixture.h).
 *
 * Threads: the benches are single-threaded; nothing here keeps state, so
 * any thread may call it.
 */
#include "bench_fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double bench_mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

const char *bench_args(const char *name, int argc, char **argv, long *n,
		       long *batch)
{
	const char *url = NULL;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--n") == 0 && i + 1 < argc)
			*n = strtol(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc)
			*batch = strtol(argv[++i], NULL, 10);
		else
			url = argv[i];
	}
	if (!url || *n < 1 || *batch < 1 || *batch > 100000) {
		fprintf(stderr, "usage: %s [--n N] [--batch B] URL\n", name);
		return NULL;
	}
	return url;
}

pm_job_spec bench_spec(const char *key)
{
	return (pm_job_spec){
	    .key = key,
	    .catalog = "/bench/catalog.csv",
	    .pipeline = "thumbnails",
	    .pipeline_hash = "ph-bench",
	    .pipeline_json = "{}",
	    .out_dir = "/bench/out",
	};
}

pm_status bench_job(pm_store *st, const char *key, int64_t *job, pm_err *err)
{
	const pm_job_spec spec = bench_spec(key);
	return pm_store_job_open(st, &spec, job, NULL, err);
}

pm_status bench_open(const char *url, const char *key, pm_store **st,
		     int64_t *job, pm_err *err)
{
	pm_status s;

	*st = NULL;
	s = pm_store_open(url, false, st, err);
	if (!s)
		s = bench_job(*st, key, job, err);
	if (s) {
		pm_store_close(*st);
		*st = NULL;
	}
	return s;
}

int bench_fail(const char *name, const pm_err *err)
{
	fprintf(stderr, "%s: %s\n", name, err->msg);
	return 1;
}
