/* fuzz_embed_desc.c — libFuzzer target for the ONNX embedding-model
 * descriptor (src/ml/embed_model.c): the input is written as a descriptor
 * file and opened with pm_embed_model_open. Any input must give PM_OK or a
 * status with a message; nothing may crash, hang or leak. The folder holds
 * no model, so opens stop at the model file (relative paths) unless the
 * input names an absolute one, which ONNX Runtime then refuses.
 *
 * Threads: libFuzzer calls LLVMFuzzerTestOneInput from one thread.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ml/embed_model.h"

static char dir[] = "/tmp/pm-fuzz-embed-XXXXXX";
static char path[64];

static void cleanup(void)
{
	unlink(path);
	rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	pm_embed_model *m = NULL;
	pm_err err;
	pm_status s;
	FILE *f;

	if (!path[0]) {
		if (!mkdtemp(dir))
			abort();
		snprintf(path, sizeof path, "%s/d.json", dir);
		atexit(cleanup);
	}
	f = fopen(path, "wb");
	if (!f)
		abort();
	if (size && fwrite(data, 1, size, f) != size)
		abort();
	fclose(f);
	memset(&err, 0, sizeof err);
	s = pm_embed_model_open(path, 1, &m, &err);
	if (s == PM_OK) {
		if (!m || pm_embed_model_dim(m) < 1 ||
		    strlen(pm_embed_model_id(m)) != 16)
			__builtin_trap();
		pm_embed_model_close(m);
	} else if (m || !err.msg[0]) {
		__builtin_trap(); /* a failure leaves no model and says why */
	}
	return 0;
}
