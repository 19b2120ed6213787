/* queue.h — a bounded blocking FIFO of pointers between threads.
 *
 * Every queue between pipeline steps is one of these, bounded at creation:
 * a full queue blocks its producer (backpressure), an empty one blocks its
 * consumer. Closing wakes everyone: producers get PM_ERR_CANCELLED, and
 * consumers drain what is left and then get NULL.
 *
 * Threads: any number of producers and consumers at once.
 * Ownership: push hands the pointer to the queue; pop hands it to the
 * caller. pm_queue_free does not free queued pointers (drain first).
 */
#ifndef PM_QUEUE_H
#define PM_QUEUE_H

#include <stddef.h>

#include "core/status.h"

typedef struct pm_queue pm_queue;

/* NULL if cap is 0 or memory is short. */
pm_queue *pm_queue_new(size_t cap);
void pm_queue_free(pm_queue *q);

/* Blocks while full. PM_ERR_CANCELLED if the queue is closed (the item was
 * not taken: the caller still owns it). */
pm_status pm_queue_push(pm_queue *q, void *item);
/* Blocks while empty and open. Returns NULL once closed and drained. */
void *pm_queue_pop(pm_queue *q);
/* Like pop, but waits at most timeout_ms; NULL on timeout too (check
 * pm_queue_done to tell them apart). */
void *pm_queue_pop_timeout(pm_queue *q, int timeout_ms);
/* No more pushes will succeed; consumers drain then see NULL. */
void pm_queue_close(pm_queue *q);
/* Closed and empty. */
int pm_queue_done(pm_queue *q);
size_t pm_queue_len(pm_queue *q);

#endif
