/* progress.h — live progress for long runs: a bar with count, rate and ETA
 * on a terminal, or a plain line every few seconds otherwise.
 *
 * Threads: one thread (the main thread) owns a pm_progress and calls
 * update; it reads counters that other threads update atomically.
 */
#ifndef PM_PROGRESS_H
#define PM_PROGRESS_H

#include <stdbool.h>

typedef struct pm_progress_state {
	long long done, failed, dups, skipped, seen, total;
	int total_known; /* total is final */
	double elapsed;	 /* seconds since start */
} pm_progress_state;

typedef struct pm_progress pm_progress;

/* mode: 1 = bar (only if stderr is a TTY, else plain), 2 = plain lines
 * every interval seconds, 0 = nothing (returns NULL). */
pm_progress *pm_progress_new(int mode, double interval);
void pm_progress_update(pm_progress *p, const pm_progress_state *s, bool final);
void pm_progress_free(pm_progress *p);

/* "1h02m", "3m07s", "12s" into buf. */
const char *pm_fmt_duration(double s, char *buf, int n);

#endif
