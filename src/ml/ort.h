/* ort.h — shared ONNX Runtime plumbing for src/ml/: the one OrtEnv of the
 * process, session creation with pixmill's options, and OrtStatus -> pm_err
 * conversion.
 *
 * Threads: every function may be called from any thread. The OrtEnv is
 * created once (pthread_once) and lives until exit. A session made by
 * pm_ort_session belongs to the caller's thread (one per worker: ONNX
 * Runtime allows concurrent Run on a session, but pixmill keeps them
 * per-thread so a worker never waits on another).
 */
#ifndef PM_ORT_H
#define PM_ORT_H

#include <stdbool.h>
#include <stdint.h>

#include <onnxruntime_c_api.h>
#include <vips/vips.h>

#include "core/status.h"

/* The ONNX Runtime API table, creating the process's OrtEnv on first use.
 * Returns NULL (and fills err) if the runtime could not start. */
const OrtApi *pm_ort_api(pm_err *err);

/* The process's OrtEnv (pm_ort_api must have succeeded first). */
OrtEnv *pm_ort_env(void);

/* The version string of the loaded library, e.g. "1.29.0". */
const char *pm_ort_version(void);

typedef struct pm_ort_opts {
	int threads;	  /* intra-op threads; <= 0 means 1 (workers already
			     parallelise across images) */
	bool arena;	  /* CPU memory arena (default off): blocks are kept
			     for the next run instead of being freed and
			     faulted in again; the env PIXMILL_ORT_ARENA=1 or
			     =0 overrides this (docs/BENCHMARKS.md) */
	bool mem_pattern; /* ORT's memory pattern (one block sized by the
			     first run, allocated for each later run): off
			     by default, see docs/BENCHMARKS.md; the env
			     PIXMILL_ORT_MEM_PATTERN=1 or =0 overrides it */
} pm_ort_opts;

/* Opens model_path as a new session with o's options (NULL = defaults),
 * full graph optimisation, sequential execution. On success *out is the
 * caller's (release with pm_ort_api(NULL)->ReleaseSession). PM_ERR_NOT_FOUND
 * if the file is missing, PM_ERR_UNSUPPORTED if ONNX Runtime refuses it. */
pm_status pm_ort_session(const char *model_path, const pm_ort_opts *o,
			 OrtSession **out, pm_err *err);

/* The same from a serialized model in memory (model[0..len), borrowed:
 * ONNX Runtime copies what it keeps, so the caller may free it once this
 * returns); name is for messages. */
pm_status pm_ort_session_mem(const void *model, size_t len, const char *name,
			     const pm_ort_opts *o, OrtSession **out,
			     pm_err *err);

/* Converts st (may be NULL = success) into a pm_status with "what: ORT
 * message" in err, and releases st. Returns PM_OK for NULL. */
pm_status pm_ort_status(OrtStatus *st, const char *what, pm_err *err);

/* Shape of a session's input or output tensor idx (output when is_output):
 * element type, rank (<= 8) and dims (-1 for symbolic). Also its name, in
 * name (truncated to name_len). */
pm_status pm_ort_io_info(OrtSession *s, bool is_output, size_t idx, char *name,
			 size_t name_len, ONNXTensorElementDataType *type,
			 int64_t dims[8], size_t *rank, pm_err *err);

/* Finds the index of the input (or output) called name; PM_ERR_NOT_FOUND
 * with the list of names there are otherwise. */
pm_status pm_ort_find_io(OrtSession *s, bool is_output, const char *name,
			 size_t *idx, pm_err *err);

/* in as a 3-band 8-bit image: alpha dropped, a grey band repeated, 16-bit
 * RGB/grey shifted to 8 bits, other formats clipped. *out is a new
 * reference (caller unrefs). 0 or -1 (libvips error buffer set). */
int pm_ml_rgb8(VipsImage *in, VipsImage **out);

/* in resized (bilinear) to exactly w x h, aspect not kept; vips_resize
 * rounds sizes, so an edge off by one is repeated or cropped. *out is a new
 * reference. 0 or -1. */
int pm_ml_resize_exact(VipsImage *in, int w, int h, VipsImage **out);

#endif
