/* queue.c — bounded blocking FIFO (ring buffer, one mutex, two condvars).
 *
 * Threads: any; see queue.h. The hot path is one lock per push/pop, which is
 * far below the per-image cost (milliseconds) it sits between.
 */
#include "core/queue.h"
#include "core/util.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

struct pm_queue {
	pthread_mutex_t mu;
	pthread_cond_t not_empty; /* signalled on push and close */
	pthread_cond_t not_full;  /* signalled on pop and close */
	void **ring;		  /* cap slots */
	size_t cap, head, len;	  /* head = index of the oldest item */
	int closed;		  /* no more pushes */
};

pm_queue *pm_queue_new(size_t cap)
{
	pm_queue *q;

	if (cap == 0)
		return NULL;
	q = calloc(1, sizeof *q);
	if (!q)
		return NULL;
	q->ring = calloc(cap, sizeof *q->ring);
	if (!q->ring) {
		free(q);
		return NULL;
	}
	q->cap = cap;
	pthread_mutex_init(&q->mu, NULL);
	pthread_cond_init(&q->not_empty, NULL);
	pthread_cond_init(&q->not_full, NULL);
	return q;
}

void pm_queue_free(pm_queue *q)
{
	if (!q)
		return;
	pthread_mutex_destroy(&q->mu);
	pthread_cond_destroy(&q->not_empty);
	pthread_cond_destroy(&q->not_full);
	free(q->ring);
	free(q);
}

pm_status pm_queue_push(pm_queue *q, void *item)
{
	pthread_mutex_lock(&q->mu);
	while (q->len == q->cap && !q->closed)
		pthread_cond_wait(&q->not_full, &q->mu);
	if (q->closed) {
		pthread_mutex_unlock(&q->mu);
		return PM_ERR_CANCELLED;
	}
	q->ring[(q->head + q->len) % q->cap] = item;
	q->len++;
	pthread_cond_signal(&q->not_empty);
	pthread_mutex_unlock(&q->mu);
	return PM_OK;
}

static void *take(pm_queue *q)
{
	void *item = q->ring[q->head];

	q->head = (q->head + 1) % q->cap;
	q->len--;
	pthread_cond_signal(&q->not_full);
	return item;
}

void *pm_queue_pop(pm_queue *q)
{
	void *item = NULL;

	pthread_mutex_lock(&q->mu);
	while (q->len == 0 && !q->closed)
		pthread_cond_wait(&q->not_empty, &q->mu);
	if (q->len > 0)
		item = take(q);
	pthread_mutex_unlock(&q->mu);
	return item;
}

void *pm_queue_pop_timeout(pm_queue *q, int timeout_ms)
{
	void *item = NULL;

	pthread_mutex_lock(&q->mu);
	while (q->len == 0 && !q->closed)
		if (pm_cond_wait_ms(&q->not_empty, &q->mu, timeout_ms) ==
		    ETIMEDOUT)
			break;
	if (q->len > 0)
		item = take(q);
	pthread_mutex_unlock(&q->mu);
	return item;
}

void pm_queue_close(pm_queue *q)
{
	pthread_mutex_lock(&q->mu);
	q->closed = 1;
	pthread_cond_broadcast(&q->not_empty);
	pthread_cond_broadcast(&q->not_full);
	pthread_mutex_unlock(&q->mu);
}

int pm_queue_done(pm_queue *q)
{
	int d;

	pthread_mutex_lock(&q->mu);
	d = q->closed && q->len == 0;
	pthread_mutex_unlock(&q->mu);
	return d;
}

size_t pm_queue_len(pm_queue *q)
{
	size_t n;

	pthread_mutex_lock(&q->mu);
	n = q->len;
	pthread_mutex_unlock(&q->mu);
	return n;
}
