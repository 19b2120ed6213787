/* pool.h — a bounded, thread-safe pool of pm_store handles over one store
 * URL, for any backend (SQLite or PostgreSQL: it only calls pm_store_open
 * and pm_store_close).
 *
 * A pm_store is one connection used by one thread at a time (store.h). A
 * pool lets many threads share at most `max` of them: a thread borrows a
 * handle with pm_store_pool_get, uses it alone, and gives it back with
 * pm_store_pool_put. Handles are opened lazily (the first `max` borrowers
 * that find none idle open one each, outside the pool's lock), kept idle
 * for reuse (the most recently returned first, so a quiet process keeps
 * using the same warm connection), and closed by pm_store_pool_free or
 * when given back broken. When all `max` are out, a borrower waits on a
 * condition variable up to its timeout, then gets PM_ERR_BUSY.
 *
 * What must not be pooled: a connection whose session holds state across
 * calls, i.e. one inside a batch (pm_store_begin .. commit/rollback) or
 * one that LISTENs (pm_store_queue_wait on PostgreSQL). A handle given
 * back inside an open batch is refused: rolled back and closed (logged as
 * a bug). Threads that LISTEN keep their own pm_store.
 *
 * Ownership: the pool owns every handle it opened. A borrowed handle
 * belongs to the borrowing thread from pm_store_pool_get until it passes
 * it to pm_store_pool_put; it must not be closed (pm_store_close) by the
 * borrower, nor used after the put. pm_store_pool_free closes the idle
 * handles; every borrowed one must have been put back first.
 *
 * Threads: pm_store_pool_get/put/stats may be called from any thread at
 * any time; pm_store_pool_new and pm_store_pool_free by the owner, when no
 * other thread uses the pool.
 */
#ifndef PM_STORE_POOL_H
#define PM_STORE_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/status.h"
#include "store/store.h"

typedef struct pm_store_pool pm_store_pool;

/* Most handles a pool may hold. */
#define PM_STORE_POOL_MAX 256

/* Counters since pm_store_pool_new; a snapshot taken under the lock. */
typedef struct pm_store_pool_stats {
	int max;	       /* the bound */
	int open;	       /* handles open now (idle + in use + opening) */
	int in_use;	       /* borrowed now */
	int idle;	       /* open, waiting to be borrowed */
	int peak_open;	       /* most handles open at once */
	int64_t gets;	       /* successful borrows */
	int64_t waits;	       /* borrows that had to wait (none idle,
				  max open) */
	double wait_s;	       /* total time borrowers spent waiting */
	int64_t timeouts;      /* borrows that waited and gave up
				  (PM_ERR_BUSY after timeout_ms > 0) */
	int64_t busy;	       /* borrows with timeout_ms 0 that found
				  none (PM_ERR_BUSY at once, a "try") */
	int64_t opens;	       /* handles opened */
	int64_t open_failures; /* pm_store_open errors */
	int64_t broken;	       /* handles given back broken (closed) */
	int64_t refused;       /* handles given back inside a batch */
} pm_store_pool_stats;

/* Makes a pool of at most max (1 .. PM_STORE_POOL_MAX) handles on url,
 * each opened with pm_store_open(url, readonly). Opens nothing yet (the
 * caller opens the store once first if it wants errors at start-up). url
 * is copied. *out is owned by the caller: pm_store_pool_free. */
pm_status pm_store_pool_new(const char *url, bool readonly, int max,
			    pm_store_pool **out, pm_err *err);

/* Borrows a handle into *st: an idle one, or a new one while fewer than
 * max are open, or else waits up to timeout_ms (0 = do not wait, < 0 =
 * wait as long as it takes) for one to be given back. PM_ERR_BUSY when
 * the wait ran out; the store's error when opening failed. */
pm_status pm_store_pool_get(pm_store_pool *p, int timeout_ms, pm_store **st,
			    pm_err *err);

/* Gives st (from pm_store_pool_get on p) back. broken = the caller saw a
 * connection-level error: the handle is closed instead of being reused
 * (a later borrower opens a new one). A handle inside an open batch is
 * refused: rolled back and closed. st NULL is a no-op. */
void pm_store_pool_put(pm_store_pool *p, pm_store *st, bool broken);

void pm_store_pool_stats_get(pm_store_pool *p, pm_store_pool_stats *out);

/* Closes the idle handles and frees p (NULL: no-op). Every borrowed
 * handle must have been put back first: if one is still out (a bug), the
 * error is logged and p is left allocated (its idle handles closed), so
 * a late put does not touch freed memory. */
void pm_store_pool_free(pm_store_pool *p);

#endif
