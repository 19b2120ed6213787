/* ort.c — shared ONNX Runtime plumbing (see ort.h): one OrtEnv per process,
 * sessions with pixmill's options, OrtStatus -> pm_err.
 *
 * Threads: any. The env is made under pthread_once and never released
 * (ONNX Runtime's own globals outlive it anyway); sessions are per caller.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ml/ort.h"

static pthread_once_t env_once = PTHREAD_ONCE_INIT;
static const OrtApi *g_api;
static OrtEnv *g_env;
static char g_init_err[256];

static void env_init(void)
{
	const OrtApiBase *base = OrtGetApiBase();
	const OrtApi *api = base ? base->GetApi(ORT_API_VERSION) : NULL;
	OrtStatus *st;

	if (!api) {
		snprintf(g_init_err, sizeof g_init_err,
			 "ONNX Runtime %s does not offer API version %d",
			 base ? base->GetVersionString() : "?",
			 ORT_API_VERSION);
		return;
	}
	/* Warnings only: ORT's INFO/VERBOSE go to stderr otherwise. */
	st = api->CreateEnv(ORT_LOGGING_LEVEL_ERROR, "pixmill", &g_env);
	if (st) {
		snprintf(g_init_err, sizeof g_init_err, "CreateEnv: %s",
			 api->GetErrorMessage(st));
		api->ReleaseStatus(st);
		g_env = NULL;
		return;
	}
	g_api = api;
}

const OrtApi *pm_ort_api(pm_err *err)
{
	pthread_once(&env_once, env_init);
	if (!g_api)
		pm_fail(err, PM_ERR_UNSUPPORTED, "onnxruntime: %s", g_init_err);
	return g_api;
}

OrtEnv *pm_ort_env(void)
{
	return g_env;
}

const char *pm_ort_version(void)
{
	const OrtApiBase *base = OrtGetApiBase();
	return base ? base->GetVersionString() : "?";
}

pm_status pm_ort_status(OrtStatus *st, const char *what, pm_err *err)
{
	pm_status s;
	OrtErrorCode code;

	if (!st)
		return PM_OK;
	code = g_api->GetErrorCode(st);
	switch (code) {
	case ORT_NO_SUCHFILE:
		s = PM_ERR_NOT_FOUND;
		break;
	case ORT_INVALID_ARGUMENT:
	case ORT_INVALID_GRAPH:
	case ORT_INVALID_PROTOBUF:
	case ORT_NO_MODEL:
	case ORT_NOT_IMPLEMENTED:
		s = PM_ERR_UNSUPPORTED;
		break;
	default:
		s = PM_ERR_INTERNAL;
		break;
	}
	pm_fail(err, s, "%s: onnxruntime: %s", what,
		g_api->GetErrorMessage(st));
	g_api->ReleaseStatus(st);
	return s;
}

/* The value of the environment flag name: 1 set (not "0"), 0 set to
 * "0", -1 unset or empty. */
static int env_flag(const char *name)
{
	const char *v = getenv(name);
	if (!v || !*v)
		return -1;
	return strcmp(v, "0") != 0;
}

/* New session options with pixmill's settings; *out is the caller's. */
static pm_status session_options(const OrtApi *api, const pm_ort_opts *o,
				 OrtSessionOptions **out, pm_err *err)
{
	OrtSessionOptions *so = NULL;
	pm_status s;
	int threads = o && o->threads > 0 ? o->threads : 1;
	int arena_env = env_flag("PIXMILL_ORT_ARENA");
	int pattern_env = env_flag("PIXMILL_ORT_MEM_PATTERN");
	bool arena = arena_env >= 0 ? arena_env : (o && o->arena);
	bool mem_pattern =
	    pattern_env >= 0 ? pattern_env : (o && o->mem_pattern);
	const char *prof = getenv("PIXMILL_ORT_PROFILE");

	*out = NULL;
	s = pm_ort_status(api->CreateSessionOptions(&so), "session options",
			  err);
	if (s)
		return s;
	/* One intra-op thread per worker by default; no inter-op pool
	 * (sequential execution). Spinning threads would burn the cores the
	 * other workers need, so they sleep when idle. */
	if ((s = pm_ort_status(api->SetIntraOpNumThreads(so, threads),
			       "intra-op threads", err)) ||
	    (s = pm_ort_status(api->SetInterOpNumThreads(so, 1),
			       "inter-op threads", err)) ||
	    (s = pm_ort_status(api->SetSessionExecutionMode(so, ORT_SEQUENTIAL),
			       "execution mode", err)) ||
	    (s = pm_ort_status(api->AddSessionConfigEntry(
				   so, "session.intra_op.allow_spinning", "0"),
			       "spinning", err)) ||
	    (s = pm_ort_status(
		 api->SetSessionGraphOptimizationLevel(so, ORT_ENABLE_ALL),
		 "graph optimisation", err)))
		goto fail;
	if (!arena &&
	    (s = pm_ort_status(api->DisableCpuMemArena(so), "arena", err)))
		goto fail;
	if (!mem_pattern && (s = pm_ort_status(api->DisableMemPattern(so),
					       "memory pattern", err)))
		goto fail;
	/* Diagnostics: PIXMILL_ORT_PROFILE=PREFIX writes ONNX Runtime's
	 * per-operator JSON profile to PREFIX_<date>.json when the session
	 * ends. */
	if (prof && *prof &&
	    (s = pm_ort_status(api->EnableProfiling(so, prof), "profiling",
			       err)))
		goto fail;
	*out = so;
	return PM_OK;
fail:
	api->ReleaseSessionOptions(so);
	return s;
}

/* ORT says ORT_FAIL for many a malformed model: for the caller it is a
 * model we cannot use, not a bug of ours. */
static pm_status created(pm_status s, OrtSession **out)
{
	if (s) {
		*out = NULL;
		if (s == PM_ERR_INTERNAL)
			s = PM_ERR_UNSUPPORTED;
	}
	return s;
}

pm_status pm_ort_session(const char *model_path, const pm_ort_opts *o,
			 OrtSession **out, pm_err *err)
{
	const OrtApi *api = pm_ort_api(err);
	OrtSessionOptions *so = NULL;
	pm_status s;
	struct stat sb;

	*out = NULL;
	if (!api)
		return PM_ERR_UNSUPPORTED;
	if (stat(model_path, &sb) != 0)
		return pm_fail(err,
			       errno == ENOENT ? PM_ERR_NOT_FOUND : PM_ERR_IO,
			       "model %s: %s", model_path, strerror(errno));
	if (!S_ISREG(sb.st_mode))
		return pm_fail(err, PM_ERR_IO, "model %s: not a regular file",
			       model_path);
	if ((s = session_options(api, o, &so, err)))
		return s;
	s = created(
	    pm_ort_status(api->CreateSession(g_env, model_path, so, out),
			  model_path, err),
	    out);
	api->ReleaseSessionOptions(so);
	return s;
}

pm_status pm_ort_session_mem(const void *model, size_t len, const char *name,
			     const pm_ort_opts *o, OrtSession **out,
			     pm_err *err)
{
	const OrtApi *api = pm_ort_api(err);
	OrtSessionOptions *so = NULL;
	pm_status s;

	*out = NULL;
	if (!api)
		return PM_ERR_UNSUPPORTED;
	if ((s = session_options(api, o, &so, err)))
		return s;
	s = created(pm_ort_status(
			api->CreateSessionFromArray(g_env, model, len, so, out),
			name, err),
		    out);
	api->ReleaseSessionOptions(so);
	return s;
}

/* Frees a string ONNX Runtime allocated for us. */
static void ort_free(OrtAllocator *alloc, void *p)
{
	OrtStatus *st = g_api->AllocatorFree(alloc, p);
	if (st)
		g_api->ReleaseStatus(st);
}

pm_status pm_ort_io_info(OrtSession *sess, bool is_output, size_t idx,
			 char *name, size_t name_len,
			 ONNXTensorElementDataType *type, int64_t dims[8],
			 size_t *rank, pm_err *err)
{
	const OrtApi *api = g_api;
	OrtAllocator *alloc = NULL;
	OrtTypeInfo *ti = NULL;
	const OrtTensorTypeAndShapeInfo *tsi = NULL;
	char *nm = NULL;
	size_t r = 0;
	pm_status s;

	if ((s = pm_ort_status(api->GetAllocatorWithDefaultOptions(&alloc),
			       "allocator", err)))
		return s;
	s = pm_ort_status(is_output
			      ? api->SessionGetOutputName(sess, idx, alloc, &nm)
			      : api->SessionGetInputName(sess, idx, alloc, &nm),
			  "tensor name", err);
	if (s)
		return s;
	if (name && name_len) {
		snprintf(name, name_len, "%s", nm);
	}
	ort_free(alloc, nm);
	s = pm_ort_status(is_output
			      ? api->SessionGetOutputTypeInfo(sess, idx, &ti)
			      : api->SessionGetInputTypeInfo(sess, idx, &ti),
			  "tensor type", err);
	if (s)
		return s;
	if ((s = pm_ort_status(api->CastTypeInfoToTensorInfo(ti, &tsi),
			       "tensor info", err)))
		goto out;
	if (!tsi) {
		s = pm_fail(err, PM_ERR_UNSUPPORTED, "%s %zu is not a tensor",
			    is_output ? "output" : "input", idx);
		goto out;
	}
	if ((s = pm_ort_status(api->GetTensorElementType(tsi, type),
			       "element type", err)) ||
	    (s = pm_ort_status(api->GetDimensionsCount(tsi, &r), "rank", err)))
		goto out;
	if (r > 8) {
		s = pm_fail(err, PM_ERR_UNSUPPORTED, "tensor of rank %zu", r);
		goto out;
	}
	s = pm_ort_status(api->GetDimensions(tsi, dims, r), "dims", err);
	*rank = r;
out:
	api->ReleaseTypeInfo(ti);
	return s;
}

pm_status pm_ort_find_io(OrtSession *sess, bool is_output, const char *name,
			 size_t *idx, pm_err *err)
{
	const OrtApi *api = g_api;
	OrtAllocator *alloc = NULL;
	size_t n = 0, i, used = 0;
	char names[256] = "";
	pm_status s;

	if ((s = pm_ort_status(api->GetAllocatorWithDefaultOptions(&alloc),
			       "allocator", err)) ||
	    (s = pm_ort_status(is_output ? api->SessionGetOutputCount(sess, &n)
					 : api->SessionGetInputCount(sess, &n),
			       "tensor count", err)))
		return s;
	for (i = 0; i < n; i++) {
		char *nm = NULL;
		bool same;

		s = pm_ort_status(
		    is_output ? api->SessionGetOutputName(sess, i, alloc, &nm)
			      : api->SessionGetInputName(sess, i, alloc, &nm),
		    "tensor name", err);
		if (s)
			return s;
		same = strcmp(nm, name) == 0;
		if (used < sizeof names) {
			int w = snprintf(names + used, sizeof names - used,
					 "%s\"%s\"", i ? ", " : "", nm);
			used += w > 0 ? (size_t)w : 0;
		}
		ort_free(alloc, nm);
		if (same) {
			*idx = i;
			return PM_OK;
		}
	}
	return pm_fail(err, PM_ERR_NOT_FOUND,
		       "the model has no %s named \"%s\" (it has: %s)",
		       is_output ? "output" : "input", name,
		       n ? names : "none");
}

/* Resizes in to exactly w x h (bilinear); vips_resize rounds the output
 * size, so an off-by-one edge is cropped or repeated. *out is the
 * caller's. */
int pm_ml_resize_exact(VipsImage *in, int w, int h, VipsImage **out)
{
	VipsImage *r = NULL, *e = NULL;

	if (vips_resize(in, &r, (double)w / in->Xsize, "vscale",
			(double)h / in->Ysize, "kernel", VIPS_KERNEL_LINEAR,
			NULL))
		return -1;
	if (r->Xsize == w && r->Ysize == h) {
		*out = r;
		return 0;
	}
	if (vips_embed(r, &e, 0, 0, w, h, "extend", VIPS_EXTEND_COPY, NULL)) {
		g_object_unref(r);
		return -1;
	}
	g_object_unref(r);
	*out = e;
	return 0;
}

/* in as 3-band uchar: alpha dropped, grey repeated, other formats cast. */
int pm_ml_rgb8(VipsImage *in, VipsImage **out)
{
	VipsImage *a = NULL, *b = NULL;
	int rc;

	if (in->Bands >= 3) {
		rc = vips_extract_band(in, &a, 0, "n", 3, NULL);
	} else { /* grey (+ alpha): the first band three times */
		rc = vips_extract_band(in, &b, 0, NULL);
		if (!rc) {
			VipsImage *grey[3] = {b, b, b};
			rc = vips_bandjoin(grey, &a, 3, NULL);
		}
		if (b)
			g_object_unref(b);
		b = NULL;
	}
	if (rc)
		goto fail;
	if (a->BandFmt != VIPS_FORMAT_UCHAR) {
		/* 16-bit RGB/grey: keep the top 8 bits; anything else is
		 * clipped to 0..255 */
		bool sixteen = in->Type == VIPS_INTERPRETATION_RGB16 ||
			       in->Type == VIPS_INTERPRETATION_GREY16;
		if (vips_cast(a, &b, VIPS_FORMAT_UCHAR, "shift", sixteen, NULL))
			goto fail;
		g_object_unref(a);
		a = b;
		b = NULL;
	}
	*out = a;
	return 0;
fail:
	if (a)
		g_object_unref(a);
	if (b)
		g_object_unref(b);
	return -1;
}
