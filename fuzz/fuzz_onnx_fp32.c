/* fuzz_onnx_fp32.c — libFuzzer target for the float16 -> float32 model
 * rewrite (src/ml/onnx_fp32.c): the input is taken as a serialized ONNX
 * model. Any input must give PM_OK (with a model or with nothing to
 * widen) or PM_ERR_UNSUPPORTED with a message; nothing may crash, hang or
 * leak. The rewritten model is rewritten again: it has nothing left in
 * float16, so the second pass widens nothing.
 *
 * Threads: libFuzzer calls LLVMFuzzerTestOneInput from one thread.
 */
#include <stdint.h>
#include <stdlib.h>

#include "ml/onnx_fp32.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *out = NULL, *again = NULL;
	size_t len = 0, len2 = 0, n = 0, n2 = 0;
	pm_err err;
	pm_status s = pm_onnx_to_fp32(data, size, &out, &len, &n, &err);

	if (s != PM_OK && (s != PM_ERR_UNSUPPORTED || out || !err.msg[0]))
		__builtin_trap();
	if (s == PM_OK && (out != NULL) != (n > 0))
		__builtin_trap();
	if (out) {
		/* the output is ours; widening it again finds nothing */
		s = pm_onnx_to_fp32(out, len, &again, &len2, &n2, &err);
		if (s != PM_OK || again || n2)
			__builtin_trap();
		free(out);
	}
	return 0;
}
