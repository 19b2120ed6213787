/* embed.h — the built-in visual embedding of the `embed` stage, exposed
 * for search queries and tests (the stage itself is pm_stage_embed in
 * stage.h).
 *
 * The built-in engine needs no model: a PM_EMBED_BUILTIN_DIM-float vector,
 * L2-normalised, made of a soft CIELAB colour histogram, a 4x4 grid of
 * mean colours and a 4x4 grid of edge-orientation histograms, the two
 * grids folded so the vector of a horizontally flipped image is the same.
 * Cosine similarity (a dot product) compares two vectors.
 *
 * Threads: any thread, at once, after pm_image_global_init; no shared
 * state.
 */
#ifndef PM_EMBED_H
#define PM_EMBED_H

#include <vips/vips.h>

#include "core/status.h"

#define PM_EMBED_BUILTIN_DIM 176
/* Stored with every built-in vector; bump the suffix when the features
 * change, so old and new vectors are never compared. */
#define PM_EMBED_BUILTIN_ID "builtin-v1"
/* Longest model id, with its NUL (pm_item_ctx.embedding_model). */
#define PM_EMBED_ID_MAX 40

/* Embeds in (the engine's decoded image: 8-bit sRGB, 3 or 4 bands; other
 * layouts are converted) into out, the caller's PM_EMBED_BUILTIN_DIM
 * floats. in is borrowed. */
pm_status pm_embed_builtin(VipsImage *in, float *out, pm_err *err);

#endif
