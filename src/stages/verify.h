/* verify.h — the verify stage's parts that others call: the registry of
 * images chosen in a run (for the duplicate penalty) and the link that
 * gives a pipeline's verify stage the compose stage's product boxes.
 *
 * The registry holds the perceptual hash of every image the verify stage
 * passed in a run, with the record key of its row; a candidate whose hash
 * is within a few bits of another row's chosen image is a duplicate. It is
 * indexed by the four 16-bit quarters of the hash (two hashes within 3
 * bits share at least one quarter), so a lookup costs a few bucket scans,
 * not a scan of the run.
 *
 * Threads: pm_verify_seen_* from any thread (one mutex inside);
 * pm_verify_link on the thread that loads the pipeline.
 * Ownership: the engine creates the registry per run and frees it after
 * every worker has stopped; workers borrow it through pm_item_ctx.seen.
 */
#ifndef PM_VERIFY_H
#define PM_VERIFY_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "core/status.h"

typedef struct pm_verify_seen pm_verify_seen;

/* NULL when memory is short (the duplicate penalty is then off). */
pm_verify_seen *pm_verify_seen_new(void);
void pm_verify_seen_free(pm_verify_seen *s);
/* Whether another row's (key differs) chosen image is within max_dist
 * bits of phash (max_dist <= 3); when it is, *other_dist receives its
 * distance. */
bool pm_verify_seen_dup(pm_verify_seen *s, uint64_t phash, const char *key,
			int max_dist, int *other_dist);
/* Records phash as the image chosen for the row key (copied). */
void pm_verify_seen_add(pm_verify_seen *s, uint64_t phash, const char *key);

/* Pipeline load: sets each verify stage's "aspects" (width / height of
 * every product box) from the compose stage's "boxes" when the pipeline
 * has one. stages is the pipeline's "stages" array. */
pm_status pm_verify_link(json_t *stages, pm_err *err);

#endif
