/* pool.c — the store connection pool (pool.h): a mutex, a condition
 * variable on the monotonic clock, and a stack of idle handles.
 *
 * Threads: see pool.h. Everything in struct pm_store_pool is guarded by
 * mu except url, readonly and max (set by pm_store_pool_new, read-only
 * after). Handles are opened and closed outside mu (a PostgreSQL connect
 * takes a round trip or more); a slot is reserved first (n_open counts
 * handles being opened), so no more than max ever exist at once.
 */
#include "store/pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/util.h"

struct pm_store_pool {
	char *url; /* owned copy */
	bool readonly;
	int max;

	pthread_mutex_t mu;
	pthread_cond_t cv; /* signalled when a handle is put back or a slot
			      frees up (CLOCK_MONOTONIC) */
	pm_store **idle;   /* [max]; idle[0 .. n_idle) owned by the pool */
	int n_idle;
	int n_open;   /* idle + borrowed + being opened */
	int n_in_use; /* borrowed (owned by their borrowers) */
	pm_store_pool_stats st;
};

pm_status pm_store_pool_new(const char *url, bool readonly, int max,
			    pm_store_pool **out, pm_err *err)
{
	pm_store_pool *p;
	pthread_condattr_t ca;

	*out = NULL;
	if (!url || max < 1 || max > PM_STORE_POOL_MAX)
		return pm_fail(err, PM_ERR_USAGE,
			       "store pool: size %d is not 1 to %d", max,
			       PM_STORE_POOL_MAX);
	p = calloc(1, sizeof *p);
	if (!p)
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	p->url = strdup(url);
	p->idle = calloc((size_t)max, sizeof *p->idle);
	if (!p->url || !p->idle) {
		free(p->url);
		free(p->idle);
		free(p);
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	}
	p->readonly = readonly;
	p->max = max;
	p->st.max = max;
	pthread_mutex_init(&p->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->cv, &ca);
	pthread_condattr_destroy(&ca);
	*out = p;
	return PM_OK;
}

static double mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

pm_status pm_store_pool_get(pm_store_pool *p, int timeout_ms, pm_store **st,
			    pm_err *err)
{
	struct timespec dl;
	double t0 = 0;
	bool waited = false;
	pm_status s;

	*st = NULL;
	pthread_mutex_lock(&p->mu);
	for (;;) {
		if (p->n_idle > 0) {
			/* The most recently returned: LIFO. */
			*st = p->idle[--p->n_idle];
			p->n_in_use++;
			break;
		}
		if (p->n_open < p->max) {
			pm_store *h = NULL;
			p->n_open++; /* the slot is ours while we open */
			if (p->n_open > p->st.peak_open)
				p->st.peak_open = p->n_open;
			pthread_mutex_unlock(&p->mu);
			s = pm_store_open(p->url, p->readonly, &h, err);
			pthread_mutex_lock(&p->mu);
			if (s) {
				p->n_open--;
				p->st.open_failures++;
				/* a waiter may try to open in our place */
				pthread_cond_signal(&p->cv);
				goto out;
			}
			p->st.opens++;
			p->n_in_use++;
			*st = h;
			break;
		}
		if (timeout_ms == 0) {
			s = PM_ERR_BUSY;
			p->st.busy++;
			goto busy;
		}
		if (!waited) {
			waited = true;
			t0 = mono_now();
			p->st.waits++;
			if (timeout_ms > 0) {
				clock_gettime(CLOCK_MONOTONIC, &dl);
				dl.tv_sec += timeout_ms / 1000;
				dl.tv_nsec +=
				    (long)(timeout_ms % 1000) * 1000000L;
				if (dl.tv_nsec >= 1000000000L) {
					dl.tv_sec++;
					dl.tv_nsec -= 1000000000L;
				}
			}
		}
		if (timeout_ms < 0)
			pthread_cond_wait(&p->cv, &p->mu);
		else if (pthread_cond_timedwait(&p->cv, &p->mu, &dl) ==
			     ETIMEDOUT &&
			 p->n_idle == 0 && p->n_open >= p->max) {
			s = PM_ERR_BUSY;
			p->st.timeouts++;
			goto busy;
		}
	}
	s = PM_OK;
	p->st.gets++;
	goto out;
busy:
	pm_fail(err, s,
		"store pool: all %d connections in use for %d ms (raise the "
		"pool size or retry later)",
		p->max, timeout_ms);
out:
	if (waited)
		p->st.wait_s += mono_now() - t0;
	pthread_mutex_unlock(&p->mu);
	return s;
}

void pm_store_pool_put(pm_store_pool *p, pm_store *st, bool broken)
{
	bool refused = false;

	if (!st)
		return;
	if (pm_store_in_batch(st)) {
		/* A caller bug: the batch's session state must not reach
		 * the next borrower. */
		pm_log(PM_LOG_ERROR, "store pool: a handle was given back "
				     "inside an open batch: rolled back and "
				     "closed");
		pm_store_rollback(st);
		refused = true;
	}
	pthread_mutex_lock(&p->mu);
	p->n_in_use--;
	if (broken || refused || p->n_idle >= p->max) {
		p->n_open--;
		if (refused)
			p->st.refused++;
		else
			p->st.broken++;
	} else {
		p->idle[p->n_idle++] = st; /* the pool owns it again */
		st = NULL;
	}
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
	pm_store_close(st); /* NULL when kept */
}

void pm_store_pool_stats_get(pm_store_pool *p, pm_store_pool_stats *out)
{
	pthread_mutex_lock(&p->mu);
	*out = p->st;
	out->open = p->n_open;
	out->in_use = p->n_in_use;
	out->idle = p->n_idle;
	pthread_mutex_unlock(&p->mu);
}

void pm_store_pool_free(pm_store_pool *p)
{
	int out;

	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	out = p->n_in_use;
	while (p->n_idle > 0) {
		pm_store_close(p->idle[--p->n_idle]);
		p->n_open--;
	}
	pthread_mutex_unlock(&p->mu);
	if (out > 0) {
		pm_log(PM_LOG_ERROR,
		       "store pool: freed with %d handle(s) still borrowed: "
		       "left allocated",
		       out);
		return;
	}
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	free(p->idle);
	free(p->url);
	free(p);
}
