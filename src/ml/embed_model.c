/* embed_model.c — a user-supplied ONNX image-embedding model run through
 * ONNX Runtime (see embed_model.h): the descriptor is parsed strictly
 * (unknown keys, wrong types and out-of-range values are errors that name
 * the key), the model's input and output are checked against it when it
 * is opened, and every vector is L2-normalised.
 *
 * Descriptor keys beyond the header's: "resize": "squash" (default:
 * stretch to size x size) or "center-crop" (shorter side to size, then the
 * centre, as CLIP preprocessors do). "mean" and "std" are optional
 * (defaults 0 and 1: plain 0..1 values).
 *
 * Threads: a pm_embed_model belongs to one thread (session, buffers);
 * several threads may each hold one.
 */
#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "core/util.h"
#include "ml/embed_model.h"
#include "ml/models.h"
#include "ml/ort.h"

#define MAX_DESCRIPTOR (64 * 1024)
#define MAX_SIZE       2048	   /* input edge */
#define MAX_DIM	       65536	   /* vector length */
#define MAX_MODEL      (2LL << 30) /* bytes: ONNX's protobuf limit */

struct pm_embed_model {
	const OrtApi *api;
	OrtSession *sess;
	OrtMemoryInfo *mem;
	char in_name[128], out_name[128];
	int size;  /* square input edge */
	bool crop; /* center-crop instead of squash */
	float mean[3], std[3];
	int dim;      /* output length per image */
	float *input; /* 3 x size x size, reused */
	char id[17];  /* 16 hex digits of the model file's SHA-256 */
};

void pm_embed_model_close(pm_embed_model *m)
{
	if (!m)
		return;
	if (m->sess)
		m->api->ReleaseSession(m->sess);
	if (m->mem)
		m->api->ReleaseMemoryInfo(m->mem);
	free(m->input);
	free(m);
}

int pm_embed_model_dim(const pm_embed_model *m)
{
	return m->dim;
}

const char *pm_embed_model_id(const pm_embed_model *m)
{
	return m->id;
}

/* Reads a 3-number array key into v (missing: keep the default). */
static pm_status read_triple(json_t *root, const char *key, float v[3],
			     bool positive, const char *path, pm_err *err)
{
	json_t *a = json_object_get(root, key), *x;
	size_t i;

	if (!a)
		return PM_OK;
	if (!json_is_array(a) || json_array_size(a) != 3)
		return pm_fail(err, PM_ERR_PIPELINE,
			       "%s: \"%s\" must be an array of 3 numbers", path,
			       key);
	json_array_foreach(a, i, x)
	{
		double d = json_number_value(x);
		if (!json_is_number(x) || !isfinite(d) ||
		    (positive ? d <= 0 : fabs(d) > 1e6))
			return pm_fail(err, PM_ERR_PIPELINE,
				       "%s: \"%s\"[%zu] must be a %s number",
				       path, key, i,
				       positive ? "positive" : "finite");
		v[i] = (float)d;
	}
	return PM_OK;
}

/* Parses the descriptor into m and the model path (resolved against the
 * descriptor's folder) into model. */
static pm_status parse_descriptor(const char *path, pm_embed_model *m,
				  char *model, size_t model_len, pm_err *err)
{
	static const char *const keys[] = {"model", "input", "output", "size",
					   "mean",  "std",   "resize", NULL};
	void *buf = NULL;
	size_t len = 0, i;
	json_error_t je;
	json_t *root = NULL, *v;
	const char *k, *mp, *rs;
	char dirbuf[4096];
	struct stat st;
	pm_status s;

	if (stat(path, &st) != 0)
		return pm_fail(
		    err, errno == ENOENT ? PM_ERR_NOT_FOUND : PM_ERR_IO,
		    "model descriptor %s: %s", path, strerror(errno));
	if (!S_ISREG(
		st.st_mode)) /* a FIFO or device would block or never end */
		return pm_fail(err, PM_ERR_IO,
			       "model descriptor %s: not a regular file", path);
	if ((s = pm_read_file(path, MAX_DESCRIPTOR, &buf, &len, err)))
		return s;
	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
	free(buf);
	if (!root)
		return pm_fail(err, PM_ERR_PIPELINE,
			       "%s: not valid JSON (line %d: %s)", path,
			       je.line, je.text);
	if (!json_is_object(root)) {
		s = pm_fail(err, PM_ERR_PIPELINE,
			    "%s: the descriptor must be a JSON object", path);
		goto out;
	}
	json_object_foreach(root, k, v)
	{
		for (i = 0; keys[i] && strcmp(keys[i], k) != 0; i++)
			;
		if (!keys[i]) {
			s = pm_fail(err, PM_ERR_PIPELINE,
				    "%s: unknown key \"%.64s\" (known: model, "
				    "input, output, size, mean, std, resize)",
				    path, k);
			goto out;
		}
	}
	mp = json_string_value(json_object_get(root, "model"));
	if (!mp || !*mp) {
		s = pm_fail(err, PM_ERR_PIPELINE,
			    "%s: \"model\" (path of the .onnx file) is "
			    "required",
			    path);
		goto out;
	}
	for (i = 0; i < 2; i++) {
		const char *key = i ? "output" : "input";
		const char *nm = json_string_value(json_object_get(root, key));
		char *dst = i ? m->out_name : m->in_name;
		size_t cap = i ? sizeof m->out_name : sizeof m->in_name;
		if (!nm || !*nm || strlen(nm) >= cap) {
			s = pm_fail(err, PM_ERR_PIPELINE,
				    "%s: \"%s\" (tensor name, a string of "
				    "1..%zu characters) is required",
				    path, key, cap - 1);
			goto out;
		}
		memcpy(dst, nm, strlen(nm) + 1);
	}
	v = json_object_get(root, "size");
	if (!json_is_integer(v) || json_integer_value(v) < 1 ||
	    json_integer_value(v) > MAX_SIZE) {
		s = pm_fail(err, PM_ERR_PIPELINE,
			    "%s: \"size\" (input edge in pixels) must be an "
			    "integer 1..%d",
			    path, MAX_SIZE);
		goto out;
	}
	m->size = (int)json_integer_value(v);
	m->mean[0] = m->mean[1] = m->mean[2] = 0.0f;
	m->std[0] = m->std[1] = m->std[2] = 1.0f;
	if ((s = read_triple(root, "mean", m->mean, false, path, err)) ||
	    (s = read_triple(root, "std", m->std, true, path, err)))
		goto out;
	v = json_object_get(root, "resize");
	rs = json_string_value(v);
	if (v && (!rs || (strcmp(rs, "squash") && strcmp(rs, "center-crop")))) {
		s = pm_fail(err, PM_ERR_PIPELINE,
			    "%s: \"resize\" must be \"squash\" or "
			    "\"center-crop\"",
			    path);
		goto out;
	}
	m->crop = rs && strcmp(rs, "center-crop") == 0;
	if (mp[0] == '/') {
		i = (size_t)snprintf(model, model_len, "%s", mp);
	} else {
		snprintf(dirbuf, sizeof dirbuf, "%s", path);
		i = (size_t)snprintf(model, model_len, "%s/%s", dirname(dirbuf),
				     mp);
	}
	if (i >= model_len)
		s = pm_fail(err, PM_ERR_PIPELINE, "%s: model path too long",
			    path);
out:
	json_decref(root);
	return s;
}

/* Checks the session's input and output against the descriptor and finds
 * the vector length (from the output shape, or by one run on a grey image
 * when the shape is symbolic). */
static pm_status check_io(pm_embed_model *m, const char *model, pm_err *err)
{
	ONNXTensorElementDataType t;
	int64_t d[8];
	size_t idx, rank, i;
	long long dim = 1;
	bool known = true;
	pm_status s;

	if ((s = pm_ort_find_io(m->sess, false, m->in_name, &idx, err)) ||
	    (s = pm_ort_io_info(m->sess, false, idx, NULL, 0, &t, d, &rank,
				err)))
		return s;
	if (t != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || rank != 4 ||
	    (d[1] > 0 && d[1] != 3) || (d[2] > 0 && d[2] != m->size) ||
	    (d[3] > 0 && d[3] != m->size))
		return pm_fail(
		    err, PM_ERR_PIPELINE,
		    "%s: input \"%s\" is %s of rank %zu [%lld, %lld, "
		    "%lld, %lld]; the descriptor wants float32 "
		    "[1, 3, %d, %d]",
		    model, m->in_name,
		    t == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT ? "float32"
							     : "not float32",
		    rank, rank > 0 ? (long long)d[0] : 0LL,
		    rank > 1 ? (long long)d[1] : 0LL,
		    rank > 2 ? (long long)d[2] : 0LL,
		    rank > 3 ? (long long)d[3] : 0LL, m->size, m->size);
	if ((s = pm_ort_find_io(m->sess, true, m->out_name, &idx, err)) ||
	    (s = pm_ort_io_info(m->sess, true, idx, NULL, 0, &t, d, &rank,
				err)))
		return s;
	if (t != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || rank < 1)
		return pm_fail(err, PM_ERR_PIPELINE,
			       "%s: output \"%s\" is not a float32 tensor",
			       model, m->out_name);
	for (i = 1; i < rank; i++) {
		if (d[i] <= 0)
			known = false;
		else
			dim *= d[i];
	}
	if (rank == 1)
		known = false; /* [dim] without batch: learn it from a run */
	if (known) {
		if (dim < 1 || dim > MAX_DIM)
			return pm_fail(err, PM_ERR_PIPELINE,
				       "%s: output \"%s\" has %lld values per "
				       "image (1..%d supported)",
				       model, m->out_name, dim, MAX_DIM);
		m->dim = (int)dim;
	}
	return PM_OK;
}

/* Runs the session on m->input; on success *out is the output value (the
 * caller releases it) and *count its number of floats. */
static pm_status run_raw(pm_embed_model *m, OrtValue **out, size_t *count,
			 pm_err *err)
{
	const OrtApi *api = m->api;
	const int64_t shape[4] = {1, 3, m->size, m->size};
	const char *in_names[1] = {m->in_name}, *out_names[1] = {m->out_name};
	OrtValue *tin = NULL;
	OrtTensorTypeAndShapeInfo *info = NULL;
	pm_status s;

	*out = NULL;
	s = pm_ort_status(
	    api->CreateTensorWithDataAsOrtValue(
		m->mem, m->input, sizeof(float) * 3 * (size_t)m->size * m->size,
		shape, 4, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, &tin),
	    "embed input", err);
	if (s)
		return s;
	if ((s = pm_ort_status(api->Run(m->sess, NULL, in_names,
					(const OrtValue *const *)&tin, 1,
					out_names, 1, out),
			       "embed run", err)) ||
	    (s = pm_ort_status(api->GetTensorTypeAndShape(*out, &info),
			       "embed output", err)) ||
	    (s = pm_ort_status(api->GetTensorShapeElementCount(info, count),
			       "embed output", err))) {
		if (*out)
			api->ReleaseValue(*out);
		*out = NULL;
	}
	if (info)
		api->ReleaseTensorTypeAndShapeInfo(info);
	api->ReleaseValue(tin);
	return s;
}

pm_status pm_embed_model_open(const char *descriptor_path, int threads,
			      pm_embed_model **out, pm_err *err)
{
	char model[4096], hex[65];
	pm_ort_opts o = {.threads = threads > 0 ? threads : 1};
	struct stat st;
	pm_embed_model *m;
	size_t plane;
	pm_status s;

	*out = NULL;
	if (!descriptor_path || !*descriptor_path)
		return pm_fail(err, PM_ERR_USAGE, "no model descriptor given");
	m = calloc(1, sizeof *m);
	if (!m)
		return pm_fail(err, PM_ERR_NOMEM, "embed model: out of memory");
	if ((s = parse_descriptor(descriptor_path, m, model, sizeof model,
				  err)))
		goto fail;
	if (stat(model, &st) == 0 && S_ISREG(st.st_mode) &&
	    (st.st_size < 1 || st.st_size > MAX_MODEL)) {
		s = pm_fail(err, PM_ERR_UNSUPPORTED,
			    "%s: model file %s is %lld bytes (1 byte to 2 GiB "
			    "supported)",
			    descriptor_path, model, (long long)st.st_size);
		goto fail;
	}
	if ((s = pm_sha256_file(model, hex, NULL, err))) {
		if (s == PM_ERR_NOT_FOUND)
			s = pm_fail(err, PM_ERR_NOT_FOUND,
				    "%s: model file %s does not exist",
				    descriptor_path, model);
		goto fail;
	}
	memcpy(m->id, hex, 16);
	m->id[16] = 0;
	if (!(m->api = pm_ort_api(err))) {
		s = PM_ERR_UNSUPPORTED;
		goto fail;
	}
	plane = (size_t)m->size * m->size;
	m->input = malloc(sizeof(float) * 3 * plane);
	if (!m->input) {
		s = pm_fail(err, PM_ERR_NOMEM, "embed model: out of memory");
		goto fail;
	}
	if ((s = pm_ort_status(m->api->CreateCpuMemoryInfo(OrtDeviceAllocator,
							   OrtMemTypeDefault,
							   &m->mem),
			       "memory info", err)) ||
	    (s = pm_ort_session(model, &o, &m->sess, err)) ||
	    (s = check_io(m, model, err)))
		goto fail;
	if (m->dim == 0) { /* symbolic output shape: one run on mid-grey */
		OrtValue *v = NULL;
		size_t count = 0, i;
		for (i = 0; i < 3 * plane; i++)
			m->input[i] =
			    (0.5f - m->mean[i / plane]) / m->std[i / plane];
		if ((s = run_raw(m, &v, &count, err)))
			goto fail;
		m->api->ReleaseValue(v);
		if (count < 1 || count > MAX_DIM) {
			s = pm_fail(err, PM_ERR_PIPELINE,
				    "%s: output \"%s\" has %zu values (1..%d "
				    "supported)",
				    model, m->out_name, count, MAX_DIM);
			goto fail;
		}
		m->dim = (int)count;
	}
	*out = m;
	return PM_OK;
fail:
	pm_embed_model_close(m);
	return s;
}

pm_status pm_embed_model_run(pm_embed_model *m, VipsImage *in, float *out,
			     pm_err *err)
{
	const size_t plane = (size_t)m->size * m->size;
	VipsImage *rgb = NULL, *sq = NULL;
	OrtValue *v = NULL;
	unsigned char *px = NULL;
	float *res = NULL;
	size_t len = 0, count = 0, i;
	double norm = 0;
	pm_status s = PM_OK;
	int c;

	if (!in || in->Xsize < 1 || in->Ysize < 1)
		return pm_fail(err, PM_ERR_DECODE, "embed: empty image");
	if (pm_ml_rgb8(in, &rgb) ||
	    (m->crop
		 ? vips_thumbnail_image(rgb, &sq, m->size, "height", m->size,
					"size", VIPS_SIZE_BOTH, "crop",
					VIPS_INTERESTING_CENTRE, NULL)
		 : pm_ml_resize_exact(rgb, m->size, m->size, &sq)) ||
	    !(px = vips_image_write_to_memory(sq, &len))) {
		s = pm_fail(err, PM_ERR_DECODE, "embed: resize: %s",
			    vips_error_buffer());
		vips_error_clear();
		goto out;
	}
	if (len != 3 * plane) {
		s = pm_fail(err, PM_ERR_INTERNAL,
			    "embed: resized to %dx%d, not %dx%d", sq->Xsize,
			    sq->Ysize, m->size, m->size);
		goto out;
	}
	for (c = 0; c < 3; c++) {
		const float mean = m->mean[c], inv = 1.0f / m->std[c];
		float *dst = m->input + (size_t)c * plane;
		for (i = 0; i < plane; i++)
			dst[i] = (px[3 * i + c] / 255.0f - mean) * inv;
	}
	if ((s = run_raw(m, &v, &count, err)) ||
	    (s = pm_ort_status(m->api->GetTensorMutableData(v, (void **)&res),
			       "embed output", err)))
		goto out;
	if (count != (size_t)m->dim) {
		s = pm_fail(err, PM_ERR_INTERNAL,
			    "embed: the model gave %zu values, not %d", count,
			    m->dim);
		goto out;
	}
	for (i = 0; i < count; i++)
		norm += (double)res[i] * res[i];
	if (!(norm > 0) || !isfinite(norm)) {
		s = pm_fail(err, PM_ERR_INTERNAL,
			    "embed: the model gave a %s vector",
			    isfinite(norm) ? "zero" : "non-finite");
		goto out;
	}
	norm = 1.0 / sqrt(norm);
	for (i = 0; i < count; i++)
		out[i] = (float)(res[i] * norm);
out:
	if (v)
		m->api->ReleaseValue(v);
	g_free(px);
	if (sq)
		g_object_unref(sq);
	if (rgb)
		g_object_unref(rgb);
	return s;
}
