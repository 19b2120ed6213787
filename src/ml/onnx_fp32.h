/* onnx_fp32.h — rewrites an ONNX model stored in float16 as float32, in
 * memory, so that ONNX Runtime's CPU provider runs it without the Cast
 * nodes and layout reorders an fp16 graph costs it (ISNet: docs/
 * BENCHMARKS.md).
 *
 * What changes (ONNX protobuf, model -> graph -> node/initializer/
 * value_info, and the tensors and sub-graphs of attributes): float16
 * tensors become float32 (raw_data or int32_data, widened exactly), the
 * "to" of Cast nodes 10 (FLOAT16) becomes 1 (FLOAT) so the casts turn into
 * no-ops that ONNX Runtime removes, and value types FLOAT16 become FLOAT.
 * Everything else is copied byte for byte. The result computes what the
 * fp16 model computes, without its intermediate rounding to 16 bits.
 *
 * The input is untrusted (a model file given by path): every length is
 * checked, nesting is bounded, and anything this rewriter does not
 * understand is a PM_ERR_UNSUPPORTED, after which the caller loads the file
 * as it is.
 *
 * Threads: any; no shared state.
 */
#ifndef PM_ONNX_FP32_H
#define PM_ONNX_FP32_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* Rewrites the serialized ModelProto in[0..len) as float32. On PM_OK *out
 * is a malloc'd model of *out_len bytes (the caller frees it) and
 * *widened the number of float16 tensors and types changed; when that is
 * 0, *out is NULL (the model had nothing in float16). On failure *out is
 * NULL and err says why. */
pm_status pm_onnx_to_fp32(const uint8_t *in, size_t len, uint8_t **out,
			  size_t *out_len, size_t *widened, pm_err *err);

#endif
