/* pipeline.h — a pipeline: an ordered list of stages with parameters,
 * declared in a JSON file or picked by name, identified by a hash.
 *
 * File format (JSON):
 *   {"name": "thumbnails",
 *    "stages": [{"stage": "thumbnail", "sizes": [128, 512, 1024],
 *                "formats": ["webp"], "quality": {"webp": 80}},
 *               {"stage": "phash"}, {"stage": "colors", "count": 5},
 *               {"stage": "quality"}]}
 * Each stage fills its defaults in at load, so the canonical form (sorted
 * keys, compact, with every stage's version) says everything that affects
 * the outputs; its SHA-256 is the pipeline hash recorded with every result.
 *
 * Threads: a loaded pm_pipeline is read-only and shared by all threads.
 * A pm_pipeline_run (stage states) belongs to one worker thread.
 */
#ifndef PM_PIPELINE_H
#define PM_PIPELINE_H

#include <jansson.h>

#include "core/status.h"
#include "stages/stage.h"

typedef struct pm_pipeline pm_pipeline;
typedef struct pm_pipeline_run pm_pipeline_run;

/* Names of the built-in pipelines, comma-separated. */
const char *pm_pipeline_builtin_names(void);

/* spec is a built-in name or a path to a JSON file. *out is owned by the
 * caller (pm_pipeline_free). */
pm_status pm_pipeline_load(const char *spec, pm_pipeline **out, pm_err *err);
/* Same from JSON text (for tests and the HTTP API). */
pm_status pm_pipeline_parse(const char *json_text, pm_pipeline **out,
			    pm_err *err);
void pm_pipeline_free(pm_pipeline *p);

/* Overrides one parameter of every stage named `stage` (e.g. thumbnail
 * sizes from --sizes), then re-checks and re-hashes. value is stolen. */
pm_status pm_pipeline_override(pm_pipeline *p, const char *stage,
			       const char *key, json_t *value, pm_err *err);

/* The command-line / query overrides of the thumbnail stage: sizes
 * "128,512" and formats "webp,jpeg" (NULL = keep), quality 1-100 for every
 * lossy format (0 = keep). PM_ERR_USAGE with a reason for a bad value. */
pm_status pm_pipeline_apply_options(pm_pipeline *p, const char *sizes,
				    const char *formats, int quality,
				    pm_err *err);

/* What loading a built-in pipeline left out, for the user to see (the
 * catalog pipeline without a vision endpoint skips its analyze stage), or
 * NULL. Static text. */
const char *pm_pipeline_note(const pm_pipeline *p);

const char *pm_pipeline_name(const pm_pipeline *p);
const char *pm_pipeline_hash(const pm_pipeline *p);	 /* 64 hex */
const char *pm_pipeline_canonical(const pm_pipeline *p); /* JSON text */
int pm_pipeline_decode_size(const pm_pipeline *p);
/* Whether any stage needs decoded pixels (else only hashing happens). */
int pm_pipeline_needs_pixels(const pm_pipeline *p);
/* Whether a stage's outputs depend on the row's text (pm_stage_vt
 * uses_row): the engine then keys assets with pm_row_key. */
int pm_pipeline_uses_row(const pm_pipeline *p);
/* Whether a stage runs for placeholder items (pm_stage_vt placeholder):
 * the engine then turns an item whose images all failed for good into a
 * placeholder instead of a failure. */
int pm_pipeline_placeholders(const pm_pipeline *p);

pm_status pm_pipeline_run_new(const pm_pipeline *p, pm_pipeline_run **out,
			      pm_err *err);
/* Runs every stage on ctx in order; stops at the first failure. */
pm_status pm_pipeline_run_item(pm_pipeline_run *r, pm_item_ctx *ctx,
			       pm_err *err);
void pm_pipeline_run_free(pm_pipeline_run *r);

/* Frees what stages allocated into ctx (colors_json, meta). */
void pm_item_ctx_clear(pm_item_ctx *ctx);

#endif
