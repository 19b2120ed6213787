/* bench_fixture.h — what the store benches (bench/store_bench.c,
 * bench/queue_bench.c) share: the clock, their command line
 * ([--n N] [--batch B] URL), the store and the bench jobs opened in it.
 *
 * Threads: the benches are single-threaded; nothing here keeps state, so
 * any thread may call it.
 */
#ifndef PM_BENCH_FIXTURE_H
#define PM_BENCH_FIXTURE_H

#include <stdint.h>

#include "store/store.h"

/* Seconds on the monotonic clock. */
double bench_mono(void);

/* Reads "[--n N] [--batch B] URL" for the program `name`: *n and *batch
 * come in holding the defaults and go out as given. Returns the URL (a
 * string of argv), or NULL after printing the usage to stderr when the URL
 * is missing or N or B is out of range (N >= 1, 1 <= B <= 100000). */
const char *bench_args(const char *name, int argc, char **argv, long *n,
		       long *batch);

/* The bench's job spec with key `key` (static strings; key is borrowed). */
pm_job_spec bench_spec(const char *key);
/* Opens (creates) a thumbnails job of key `key` in st and sets *job. */
pm_status bench_job(pm_store *st, const char *key, int64_t *job, pm_err *err);

/* Opens the store at url (meant to be new and empty) and a first job of
 * key `key` in it (bench_job). On success the caller owns *st and closes
 * it with pm_store_close; on failure *st is NULL. */
pm_status bench_open(const char *url, const char *key, pm_store **st,
		     int64_t *job, pm_err *err);

/* Prints "NAME: <err's message>" to stderr; returns 1 (main's exit code). */
int bench_fail(const char *name, const pm_err *err);

#endif
