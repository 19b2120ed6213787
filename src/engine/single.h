/* single.h — one image through a pipeline, now, outside a batch run: what
 * `serve` does for POST /api/images (and image search queries).
 *
 * The batch engine (run.c) and this path share the per-item steps: hash,
 * dedup against the store, header probe against the limits, one decode,
 * the stages, and the store record built from the stages' context
 * (pm_asset_from_ctx). Here the caller's thread does all of it and commits
 * the item itself.
 *
 * Threads: any thread, with its own pm_pipeline_run and pm_store (neither
 * is shared); the pm_pipeline is read-only and may be shared.
 */
#ifndef PM_SINGLE_H
#define PM_SINGLE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/status.h"
#include "image/image.h"
#include "stages/pipeline.h"
#include "store/store.h"

/* Fills as from a processed item's context. sha256 is the source hash,
 * header its probed header. *meta receives a malloc'd JSON string (or
 * NULL) that as->meta_json points to: the caller frees it after the put. */
void pm_asset_from_ctx(pm_asset_rec *as, const pm_item_ctx *ctx,
		       const char *sha256, const pm_header *header,
		       size_t src_len, const char *pipeline_hash, char **meta);

typedef struct pm_single_opts {
	const pm_pipeline *pipe;
	pm_pipeline_run *pr;  /* the calling thread's, for pipe */
	pm_store *st;	      /* the calling thread's connection */
	int64_t job_id;	      /* job the item is recorded in (uploads) */
	const char *out_root; /* absolute */
	pm_outstore *outs;    /* outputs go there (the caller's, shared by its
				 threads); NULL if the pipeline makes no
				 files */
	const pm_limits *limits;
	bool sync;	     /* fsync outputs before renaming them */
	const char *title;   /* recorded with the item (searchable), or NULL */
	bool record;	     /* false: only compute (search by image) */
	bool want_embedding; /* hand the embed stage's vector to the result */
} pm_single_opts;

typedef struct pm_single_result {
	char sha256[65];
	pm_header header;  /* as probed */
	int width, height; /* oriented */
	bool duplicate;	   /* the asset existed: no image work */
	uint64_t phash;	   /* when the pipeline computes it (or a */
	bool has_phash;	   /* duplicate's stored one is unknown here) */
	double ms;	   /* wall time spent */
	/* with want_embedding, when the pipeline embeds (not for a duplicate):
	 * embedding_dim floats, malloc'd, the caller's to free; else NULL */
	float *embedding;
	int embedding_dim;
	char embedding_model[40];
} pm_single_result;

/* Processes src[0..len) (not owned). On success the asset, its outputs and
 * an item keyed by the hash are committed (unless !o->record) and res says
 * what was done; the outputs can then be listed with pm_store_outputs. An
 * image that is broken, too large or not an image fails with its status. */
pm_status pm_single_process(const pm_single_opts *o, const void *src,
			    size_t len, pm_single_result *res, pm_err *err);

#endif
