/* embed_model.h — a user-supplied ONNX image-embedding model (for example
 * a CLIP image tower) run through ONNX Runtime, for the embed stage's
 * `model` parameter.
 *
 * The model is described by a small JSON descriptor:
 *   {"model": "clip.onnx",          path, relative to the descriptor
 *    "input": "pixel_values",        input tensor name (NCHW float32)
 *    "output": "image_embeds",       output tensor name ([1, dim] float32)
 *    "size": 224,                    square input edge, pixels
 *    "mean": [0.481, 0.458, 0.408],  per-channel, on 0..1 values
 *    "std":  [0.269, 0.261, 0.276]}
 *
 * Threads: a pm_embed_model belongs to one worker thread (stage init /
 * process / fini); several threads may each hold their own.
 */
#ifndef PM_EMBED_MODEL_H
#define PM_EMBED_MODEL_H

#include <vips/vips.h>

#include "core/status.h"

typedef struct pm_embed_model pm_embed_model;

/* Loads the descriptor and the model it names. On success *out is the
 * caller's, to free with pm_embed_model_close. */
pm_status pm_embed_model_open(const char *descriptor_path, int threads,
			      pm_embed_model **out, pm_err *err);

/* Length of the vectors the model produces. */
int pm_embed_model_dim(const pm_embed_model *m);

/* A short stable id for the model (hex prefix of the model file's
 * SHA-256), stored with every vector so vectors of different models are
 * never compared. Owned by m. */
const char *pm_embed_model_id(const pm_embed_model *m);

/* Embeds in (sRGB, 8-bit, any size): resizes to size x size, normalises,
 * runs, and writes dim floats, L2-normalised, into out (the caller's
 * buffer of pm_embed_model_dim(m) floats). */
pm_status pm_embed_model_run(pm_embed_model *m, VipsImage *in, float *out,
			     pm_err *err);

/* Frees m; NULL is fine. */
void pm_embed_model_close(pm_embed_model *m);

#endif
