/* test_ml.c — unit tests for src/ml/: the ONNX embedding-model loader
 * (embed_model.c) on tiny models that tests/ml/make_tiny_model.py writes
 * with python3-onnx, and ISNet (isnet.c) on real photos when the model is
 * installed (`pixmill models install isnet --accept-license`; scripts/
 * test.sh does that first). Without the model the ISNet tests print SKIP.
 *
 * Loader: the vector has the model's length, is L2-normalised, matches a
 * numpy reference of the same graph on a test pattern (layout and
 * normalisation), is deterministic, differs between different images; a
 * symbolic output shape is resolved; bad descriptors (missing files,
 * wrong tensor names, garbage JSON, wrong types, hostile values, a model
 * that is not ONNX) fail with clear messages; every decodable file of the
 * edge corpus runs or fails cleanly; two threads opening and running
 * models at once (the first use of ONNX Runtime) agree.
 * Float16 -> float32 rewrite (onnx_fp32.c) of half.onnx: every float16
 * tensor, Cast and value type is widened, ONNX Runtime runs the result and
 * its output is x * k + b without float16 rounding (the float16 model's
 * output differs); a float32 model is left alone; every truncation of the
 * model and garbage bytes give PM_OK or a clear PM_ERR_UNSUPPORTED.
 * ISNet: mask size equals the input, foreground ratio in (0.02, 0.98), not
 * one value, the same bytes (SHA-256) on two runs; a 3x2 grey image works.
 *
 * Corpus: $PIXMILL_CORPUS, else ../shared/corpus (run from the repo root).
 * Threads: CHECK runs on the main thread only; test_threads starts two
 * threads that only fill their own result structs.
 */
#include "test.h"

#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"
#include "image/image.h"
#include "ml/embed_model.h"
#include "ml/isnet.h"
#include "ml/models.h"
#include "ml/onnx_fp32.h"
#include "ml/ort.h"

static char tmpdir[256];

static const char *corpus(void)
{
	const char *c = getenv("PIXMILL_CORPUS");
	return c && *c ? c : "../shared/corpus";
}

static void write_text(const char *name, const char *text)
{
	char p[512];
	FILE *f;

	snprintf(p, sizeof p, "%s/%s", tmpdir, name);
	f = fopen(p, "w");
	CHECK(f != NULL);
	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

/* Opens descriptor NAME (in tmpdir) written with TEXT. */
static pm_status open_desc(const char *name, const char *text,
			   pm_embed_model **m, pm_err *err)
{
	char p[512];

	write_text(name, text);
	snprintf(p, sizeof p, "%s/%s", tmpdir, name);
	memset(err, 0, sizeof *err);
	return pm_embed_model_open(p, 1, m, err);
}

/* Runs make_tiny_model.py with the first python3 that has onnx. */
static bool make_models(void)
{
	static const char *const py[] = {"python3", "/usr/bin/python3", NULL};
	char cmd[1024];
	int i;

	for (i = 0; py[i]; i++) {
		snprintf(cmd, sizeof cmd,
			 "%s -c 'import onnx, numpy' 2>/dev/null && %s "
			 "tests/ml/make_tiny_model.py %s",
			 py[i], py[i], tmpdir);
		if (system(cmd) == 0)
			return true;
	}
	fprintf(stderr, "FAIL: no python3 with onnx and numpy "
			"(apt-get install python3-onnx python3-numpy)\n");
	return false;
}

/* A w x h 3-band image: pixel (x, y, c) = (x*7 + y*13 + c*50 + seed) % 256. */
static VipsImage *pattern(int w, int h, int seed)
{
	unsigned char *px = malloc((size_t)w * h * 3);
	VipsImage *im;
	int x, y, c;

	for (y = 0; y < h; y++)
		for (x = 0; x < w; x++)
			for (c = 0; c < 3; c++)
				px[((size_t)y * w + x) * 3 + c] =
				    (unsigned char)((x * 7 + y * 13 + c * 50 +
						     seed) %
						    256);
	im = vips_image_new_from_memory_copy(px, (size_t)w * h * 3, w, h, 3,
					     VIPS_FORMAT_UCHAR);
	free(px);
	return im;
}

static double norm2(const float *v, int n)
{
	double s = 0;
	for (int i = 0; i < n; i++)
		s += (double)v[i] * v[i];
	return sqrt(s);
}

static double dot(const float *a, const float *b, int n)
{
	double s = 0;
	for (int i = 0; i < n; i++)
		s += (double)a[i] * b[i];
	return s;
}

static const char *good_desc =
    "{\"model\": \"tiny.onnx\", \"input\": \"pixels\", \"output\": "
    "\"embedding\", \"size\": 32, \"mean\": [0.5, 0.4, 0.3], "
    "\"std\": [0.2, 0.25, 0.3]}";

static void test_loader(void)
{
	pm_embed_model *m = NULL, *m2 = NULL;
	pm_err err;
	pm_status s;
	float a[16], b[16], c[16], ref[16];
	char p[512], hex[65];
	VipsImage *pat, *pat2, *big;
	FILE *f;
	int i, n = 0;
	double maxdiff = 0;

	s = open_desc("good.json", good_desc, &m, &err);
	CHECK_INT(s, PM_OK);
	if (s) {
		fprintf(stderr, "open: %s\n", err.msg);
		return;
	}
	CHECK_INT(pm_embed_model_dim(m), 16);
	snprintf(p, sizeof p, "%s/tiny.onnx", tmpdir);
	CHECK_INT(pm_sha256_file(p, hex, NULL, &err), PM_OK);
	hex[16] = 0;
	CHECK_STR(pm_embed_model_id(m), hex);
	CHECK_INT(strlen(pm_embed_model_id(m)), 16);

	/* the numpy reference on the 32x32 pattern (no resampling) */
	snprintf(p, sizeof p, "%s/expected.txt", tmpdir);
	f = fopen(p, "r");
	CHECK(f != NULL);
	while (f && n < 16 && fscanf(f, "%f", &ref[n]) == 1)
		n++;
	if (f)
		fclose(f);
	CHECK_INT(n, 16);
	pat = pattern(32, 32, 0);
	CHECK_INT(pm_embed_model_run(m, pat, a, &err), PM_OK);
	for (i = 0; i < 16; i++)
		maxdiff = fmax(maxdiff, fabs(a[i] - ref[i]));
	if (maxdiff >= 1e-4)
		fprintf(stderr, "reference differs by %g\n", maxdiff);
	CHECK(maxdiff < 1e-4);
	CHECK(fabs(norm2(a, 16) - 1.0) < 1e-5);

	/* deterministic: same model twice, and a second instance */
	CHECK_INT(pm_embed_model_run(m, pat, b, &err), PM_OK);
	CHECK(memcmp(a, b, sizeof a) == 0);
	CHECK_INT(open_desc("good2.json", good_desc, &m2, &err), PM_OK);
	if (m2) {
		CHECK_INT(pm_embed_model_run(m2, pat, c, &err), PM_OK);
		CHECK(memcmp(a, c, sizeof a) == 0);
		CHECK_STR(pm_embed_model_id(m2), pm_embed_model_id(m));
	}
	pm_embed_model_close(m2);

	/* a different image gives a different vector; a bigger one is resized
	 */
	pat2 = pattern(32, 32, 97);
	CHECK_INT(pm_embed_model_run(m, pat2, b, &err), PM_OK);
	CHECK(fabs(norm2(b, 16) - 1.0) < 1e-5);
	CHECK(dot(a, b, 16) < 0.9999);
	big = pattern(300, 200, 5);
	CHECK_INT(pm_embed_model_run(m, big, c, &err), PM_OK);
	CHECK(fabs(norm2(c, 16) - 1.0) < 1e-5);
	CHECK(memcmp(a, c, sizeof a) != 0);
	g_object_unref(big);

	/* grey, grey + alpha, RGBA and 16-bit inputs all run */
	{
		VipsImage *grey = NULL, *ga = NULL, *rgba = NULL, *u16 = NULL;
		CHECK(vips_extract_band(pat, &grey, 0, NULL) == 0);
		CHECK(vips_bandjoin_const1(grey, &ga, 255, NULL) == 0);
		CHECK(vips_bandjoin_const1(pat, &rgba, 255, NULL) == 0);
		CHECK(vips_cast_ushort(pat, &u16, NULL) == 0);
		CHECK_INT(pm_embed_model_run(m, grey, c, &err), PM_OK);
		CHECK_INT(pm_embed_model_run(m, ga, b, &err), PM_OK);
		CHECK(memcmp(b, c, sizeof b) == 0); /* alpha is ignored */
		CHECK_INT(pm_embed_model_run(m, rgba, c, &err), PM_OK);
		CHECK(memcmp(a, c, sizeof a) == 0);
		CHECK_INT(pm_embed_model_run(m, u16, c, &err), PM_OK);
		g_object_unref(grey);
		g_object_unref(ga);
		g_object_unref(rgba);
		g_object_unref(u16);
	}
	g_object_unref(pat);
	g_object_unref(pat2);
	pm_embed_model_close(m);

	/* another output of the same model; center-crop resize */
	s = open_desc("feat.json",
		      "{\"model\": \"tiny.onnx\", \"input\": \"pixels\", "
		      "\"output\": \"features\", \"size\": 32, \"resize\": "
		      "\"center-crop\"}",
		      &m, &err);
	CHECK_INT(s, PM_OK);
	if (!s) {
		float v[8];
		big = pattern(320, 64, 1);
		CHECK_INT(pm_embed_model_dim(m), 8);
		CHECK_INT(pm_embed_model_run(m, big, v, &err), PM_OK);
		CHECK(fabs(norm2(v, 8) - 1.0) < 1e-5);
		g_object_unref(big);
	}
	pm_embed_model_close(m);

	/* symbolic shapes: the length comes from a run at open; absolute
	 * model path */
	snprintf(p, sizeof p,
		 "{\"model\": \"%s/tiny_dyn.onnx\", \"input\": \"pixels\", "
		 "\"output\": \"embedding\", \"size\": 32, \"mean\": [0.5, "
		 "0.4, 0.3], \"std\": [0.2, 0.25, 0.3]}",
		 tmpdir);
	s = open_desc("dyn.json", p, &m, &err);
	CHECK_INT(s, PM_OK);
	if (!s) {
		CHECK_INT(pm_embed_model_dim(m), 16);
		pat = pattern(32, 32, 0);
		CHECK_INT(pm_embed_model_run(m, pat, b, &err), PM_OK);
		for (i = 0, maxdiff = 0; i < 16; i++)
			maxdiff = fmax(maxdiff, fabs(b[i] - ref[i]));
		CHECK(maxdiff < 1e-4);
		g_object_unref(pat);
	}
	pm_embed_model_close(m);
}

/* Two threads open their own model at once (the first use of ONNX
 * Runtime in this process: the shared env is created under the race) and
 * embed the same image: each gets the same vector every time. */
typedef struct thr_arg {
	pm_status open_status;
	int same; /* runs whose vector equals the first */
	float first[16];
} thr_arg;

static void *thr_main(void *ud)
{
	thr_arg *a = ud;
	pm_embed_model *m = NULL;
	pm_err err;
	char p[512];
	float v[16];
	VipsImage *pat = pattern(48, 40, 11);

	snprintf(p, sizeof p, "%s/good.json", tmpdir);
	a->open_status = pm_embed_model_open(p, 1, &m, &err);
	for (int i = 0; m && i < 20; i++) {
		if (pm_embed_model_run(m, pat, i ? v : a->first, &err) != PM_OK)
			break;
		a->same += i == 0 || memcmp(v, a->first, sizeof v) == 0;
	}
	pm_embed_model_close(m);
	g_object_unref(pat);
	return NULL;
}

static void test_threads(void)
{
	pthread_t t[2];
	thr_arg a[2];

	memset(a, 0, sizeof a);
	write_text("good.json", good_desc);
	for (int i = 0; i < 2; i++)
		CHECK(pthread_create(&t[i], NULL, thr_main, &a[i]) == 0);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < 2; i++) {
		CHECK_INT(a[i].open_status, PM_OK);
		CHECK_INT(a[i].same, 20);
	}
	CHECK(memcmp(a[0].first, a[1].first, sizeof a[0].first) == 0);
}

/* ISNet refuses a model that is not ISNet (the tiny one), clearly. */
static void test_isnet_wrong_model(void)
{
	pm_isnet *n = (pm_isnet *)1;
	pm_err err = {{0}};
	char p[512];

	snprintf(p, sizeof p, "%s/tiny.onnx", tmpdir);
	CHECK(pm_isnet_open(p, 1, &n, &err) != PM_OK);
	CHECK(n == NULL);
	CHECK(strstr(err.msg, "no input named \"input\"") != NULL);
}

/* Runs half.onnx's graph m (x: 32 floats -> y: 64) on x. */
static bool run_xy(const void *m, size_t len, const float *x, float *y)
{
	const OrtApi *api = pm_ort_api(NULL);
	const int64_t shape[4] = {1, 2, 4, 4};
	const char *in[1] = {"x"}, *out[1] = {"y"};
	OrtSession *sess = NULL;
	OrtMemoryInfo *mem = NULL;
	OrtValue *tin = NULL, *tout = NULL;
	float *py = NULL;
	pm_err err = {{0}};
	bool ok = false;

	if (!api || pm_ort_session_mem(m, len, "half", NULL, &sess, &err) ||
	    pm_ort_status(api->CreateCpuMemoryInfo(OrtDeviceAllocator,
						   OrtMemTypeDefault, &mem),
			  "mem", &err) ||
	    pm_ort_status(api->CreateTensorWithDataAsOrtValue(
			      mem, (void *)x, 32 * sizeof(float), shape, 4,
			      ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, &tin),
			  "in", &err) ||
	    pm_ort_status(api->Run(sess, NULL, in,
				   (const OrtValue *const *)&tin, 1, out, 1,
				   &tout),
			  "run", &err) ||
	    pm_ort_status(api->GetTensorMutableData(tout, (void **)&py), "out",
			  &err))
		fprintf(stderr, "run_xy: %s\n", err.msg);
	else {
		memcpy(y, py, 64 * sizeof(float));
		ok = true;
	}
	if (tout)
		api->ReleaseValue(tout);
	if (tin)
		api->ReleaseValue(tin);
	if (mem)
		api->ReleaseMemoryInfo(mem);
	if (sess)
		api->ReleaseSession(sess);
	return ok;
}

static void test_fp32(void)
{
	/* half.onnx's constants as float16 holds them */
	const float k[2] = {0.333251953125f, -2.5f}, b = 0.0999755859375f;
	char p[512];
	void *m16 = NULL, *m32 = NULL;
	uint8_t *wide = NULL;
	size_t len = 0, len32 = 0, wlen = 0, widened = 0, n_fp16_off = 0;
	float x[32], y16[64], y32[64];
	pm_err err = {{0}};
	int i;

	snprintf(p, sizeof p, "%s/half.onnx", tmpdir);
	CHECK_INT(pm_read_file(p, 1 << 20, &m16, &len, &err), PM_OK);
	snprintf(p, sizeof p, "%s/tiny.onnx", tmpdir);
	CHECK_INT(pm_read_file(p, 1 << 20, &m32, &len32, &err), PM_OK);
	if (!m16 || !m32)
		goto out;
	CHECK_INT(pm_onnx_to_fp32(m16, len, &wide, &wlen, &widened, &err),
		  PM_OK);
	/* k and b, both Casts' "to" (one already float), xh's value type */
	CHECK_INT((int)widened, 4);
	CHECK(wide != NULL && wlen > len);
	for (i = 0; i < 32; i++)
		x[i] = 0.1f * (float)i + 0.01f;
	CHECK(run_xy(m16, len, x, y16));
	CHECK(wide && run_xy(wide, wlen, x, y32));
	for (i = 0; i < 64; i++) { /* y = [a, a], a = x * k + b */
		float want = x[i % 32] * k[i % 32 / 16] + b;
		CHECK(fabsf(y32[i] - want) <= 1e-6f * (1 + fabsf(want)));
		n_fp16_off += fabsf(y16[i] - want) > 1e-5f;
	}
	/* the float16 graph rounds: proof that the widened one does not */
	CHECK(n_fp16_off > 0);
	/* a float32 model: nothing to do */
	free(wide);
	wide = (uint8_t *)1;
	CHECK_INT(pm_onnx_to_fp32(m32, len32, &wide, &wlen, &widened, &err),
		  PM_OK);
	CHECK(wide == NULL && widened == 0);
	/* every prefix of the model, and garbage: no crash, a clear answer */
	for (size_t cut = 0; cut < len; cut++) {
		pm_status s =
		    pm_onnx_to_fp32(m16, cut, &wide, &wlen, &widened, &err);
		CHECK(s == PM_OK || s == PM_ERR_UNSUPPORTED);
		CHECK(s == PM_OK || (wide == NULL && err.msg[0]));
		free(wide);
		wide = NULL;
	}
	memset(m32, 0xff, len32);
	CHECK_INT(pm_onnx_to_fp32(m32, len32, &wide, &wlen, &widened, &err),
		  PM_ERR_UNSUPPORTED);
	CHECK(strstr(err.msg, "onnx fp32") != NULL);
out:
	free(m16);
	free(m32);
}

/* A descriptor that must fail with status want and a message containing
 * needle. */
static void bad(const char *text, pm_status want, const char *needle)
{
	pm_embed_model *m = (pm_embed_model *)1;
	pm_err err;
	pm_status s = open_desc("bad.json", text, &m, &err);

	CHECK_INT(s, want);
	CHECK(m == NULL);
	if (!strstr(err.msg, needle)) {
		fprintf(stderr, "message \"%s\" lacks \"%s\" (descriptor %s)\n",
			err.msg, needle, text);
		CHECK(0);
	}
	if (s == PM_OK)
		pm_embed_model_close(m);
}

static void test_bad_descriptors(void)
{
	pm_embed_model *m = (pm_embed_model *)1;
	pm_err err = {{0}};
	char p[512];

	/* the descriptor itself is missing */
	snprintf(p, sizeof p, "%s/nope.json", tmpdir);
	CHECK_INT(pm_embed_model_open(p, 1, &m, &err), PM_ERR_NOT_FOUND);
	CHECK(m == NULL);
	CHECK(strstr(err.msg, "nope.json") != NULL);

	bad("{\"model\": \"missing.onnx\", \"input\": \"pixels\", \"output\": "
	    "\"embedding\", \"size\": 32}",
	    PM_ERR_NOT_FOUND, "missing.onnx does not exist");
	bad("{\"model\": \"tiny.onnx\", \"input\": \"pixel_values\", "
	    "\"output\": \"embedding\", \"size\": 32}",
	    PM_ERR_NOT_FOUND,
	    "no input named \"pixel_values\" (it has: "
	    "\"pixels\")");
	bad("{\"model\": \"tiny.onnx\", \"input\": \"pixels\", \"output\": "
	    "\"image_embeds\", \"size\": 32}",
	    PM_ERR_NOT_FOUND, "no output named \"image_embeds\"");
	bad("this is not json {", PM_ERR_PIPELINE, "not valid JSON");
	bad("", PM_ERR_PIPELINE, "not valid JSON");
	bad("[1, 2, 3]", PM_ERR_PIPELINE, "must be a JSON object");
	bad("{\"input\": \"pixels\", \"output\": \"embedding\", \"size\": 32}",
	    PM_ERR_PIPELINE, "\"model\"");
	bad("{\"model\": \"tiny.onnx\", \"output\": \"embedding\", \"size\": "
	    "32}",
	    PM_ERR_PIPELINE, "\"input\"");
	bad("{\"model\": \"tiny.onnx\", \"input\": \"pixels\", \"output\": "
	    "\"embedding\", \"size\": \"32\"}",
	    PM_ERR_PIPELINE, "\"size\"");
	bad("{\"model\": \"tiny.onnx\", \"input\": \"pixels\", \"output\": "
	    "\"embedding\", \"size\": 99999999999}",
	    PM_ERR_PIPELINE, "\"size\"");
	bad("{\"model\": \"tiny.onnx\", \"input\": \"pixels\", \"output\": "
	    "\"embedding\", \"size\": 64}",
	    PM_ERR_PIPELINE, "wants float32 [1, 3, 64, 64]");
	bad("{\"model\": \"tiny.onnx\", \"input\": \"pixels\", \"output\": "
	    "\"embedding\", \"size\": 32, \"std\": [1, 0, 1]}",
	    PM_ERR_PIPELINE, "\"std\"[1] must be a positive number");
	bad("{\"model\": \"tiny.onnx\", \"input\": \"pixels\", \"output\": "
	    "\"embedding\", \"size\": 32, \"mean\": [0.5, 0.5]}",
	    PM_ERR_PIPELINE, "\"mean\" must be an array of 3 numbers");
	bad("{\"model\": \"tiny.onnx\", \"input\": \"pixels\", \"output\": "
	    "\"embedding\", \"size\": 32, \"mean\": [0.5, \"x\", 0.5]}",
	    PM_ERR_PIPELINE, "\"mean\"[1]");
	bad("{\"model\": \"tiny.onnx\", \"input\": \"pixels\", \"output\": "
	    "\"embedding\", \"size\": 32, \"szie\": 3}",
	    PM_ERR_PIPELINE, "unknown key \"szie\"");
	bad("{\"model\": \"tiny.onnx\", \"model\": \"x.onnx\", \"input\": "
	    "\"pixels\", \"output\": \"embedding\", \"size\": 32}",
	    PM_ERR_PIPELINE, "not valid JSON");
	bad("{\"model\": \"tiny.onnx\", \"input\": \"pixels\", \"output\": "
	    "\"embedding\", \"size\": 32, \"resize\": \"zoom\"}",
	    PM_ERR_PIPELINE, "\"resize\"");
	/* special files must not hang: a device as the model, a FIFO as the
	 * descriptor */
	bad("{\"model\": \"/dev/zero\", \"input\": \"pixels\", \"output\": "
	    "\"embedding\", \"size\": 32}",
	    PM_ERR_IO, "not a regular file");
	snprintf(p, sizeof p, "%s/fifo.json", tmpdir);
	CHECK(mkfifo(p, 0644) == 0);
	m = (pm_embed_model *)1;
	CHECK_INT(pm_embed_model_open(p, 1, &m, &err), PM_ERR_IO);
	CHECK(m == NULL);
	CHECK(strstr(err.msg, "not a regular file") != NULL);
	/* a model file that is not ONNX, an empty one, a folder */
	write_text("garbage.onnx", "GIF89a this is not a protobuf at all");
	bad("{\"model\": \"garbage.onnx\", \"input\": \"pixels\", \"output\": "
	    "\"embedding\", \"size\": 32}",
	    PM_ERR_UNSUPPORTED, "garbage.onnx");
	write_text("empty.onnx", "");
	bad("{\"model\": \"empty.onnx\", \"input\": \"pixels\", \"output\": "
	    "\"embedding\", \"size\": 32}",
	    PM_ERR_UNSUPPORTED, "empty.onnx is 0 bytes");
	/* a /proc file (size 0, yet readable) is refused, not hashed */
	bad("{\"model\": \"/proc/self/status\", \"input\": \"pixels\", "
	    "\"output\": \"embedding\", \"size\": 32}",
	    PM_ERR_UNSUPPORTED, "is 0 bytes");
	snprintf(p, sizeof p, "%s/dir.onnx", tmpdir);
	mkdir(p, 0755);
	m = (pm_embed_model *)1;
	write_text("bad.json", "{\"model\": \"dir.onnx\", \"input\": "
			       "\"pixels\", \"output\": \"embedding\", "
			       "\"size\": 32}");
	snprintf(p, sizeof p, "%s/bad.json", tmpdir);
	CHECK(pm_embed_model_open(p, 1, &m, &err) != PM_OK);
	CHECK(m == NULL);
	pm_embed_model_close(NULL);
}

/* Every edge-corpus file that decodes runs through the loader cleanly. */
static void test_edge_corpus(void)
{
	pm_embed_model *m = NULL;
	pm_err err;
	char dir[512], p[1024];
	struct dirent *e;
	DIR *d;
	int ran = 0, ok = 0;

	if (open_desc("edge.json", good_desc, &m, &err) != PM_OK)
		return;
	snprintf(dir, sizeof dir, "%s/edge", corpus());
	d = opendir(dir);
	if (!d) {
		printf("SKIP edge corpus: no %s\n", dir);
		pm_embed_model_close(m);
		return;
	}
	while ((e = readdir(d))) {
		void *buf = NULL;
		size_t len = 0;
		pm_header h;
		pm_limits lim;
		VipsImage *im = NULL;
		float v[16];

		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
		pm_limits_default(&lim);
		if (pm_read_file(p, lim.max_bytes, &buf, &len, &err) ||
		    pm_image_probe(buf, len, &lim, &h, &err) ||
		    pm_image_decode(buf, len, 2048, false, &im, &err)) {
			free(buf);
			continue;
		}
		ran++;
		if (pm_embed_model_run(m, im, v, &err) == PM_OK) {
			ok++;
			CHECK(fabs(norm2(v, 16) - 1.0) < 1e-4);
		} else {
			CHECK(err.msg[0] != 0);
		}
		g_object_unref(im);
		free(buf);
	}
	closedir(d);
	printf("edge corpus: %d decodable files embedded, %d ok\n", ran, ok);
	CHECK(ran > 0);
	pm_embed_model_close(m);
}

static VipsImage *load_photo(const char *name)
{
	char p[1024];
	void *buf = NULL;
	size_t len = 0;
	VipsImage *im = NULL;
	pm_err err;

	snprintf(p, sizeof p, "%s/photos/%s", corpus(), name);
	if (pm_read_file(p, 256 << 20, &buf, &len, &err) ||
	    pm_image_decode(buf, len, 30000, false, &im, &err))
		fprintf(stderr, "%s: %s\n", p, err.msg);
	free(buf);
	return im;
}

/* Checks a mask and returns the SHA-256 of its pixels in hex. */
static void check_mask(VipsImage *in, VipsImage *mask, char hex[65],
		       const char *what)
{
	size_t len = 0, i, fg = 0;
	unsigned char *px, lo = 255, hi = 0;
	double ratio;

	CHECK_INT(mask->Xsize, in->Xsize);
	CHECK_INT(mask->Ysize, in->Ysize);
	CHECK_INT(mask->Bands, 1);
	CHECK_INT(mask->BandFmt, VIPS_FORMAT_UCHAR);
	px = vips_image_write_to_memory(mask, &len);
	CHECK(px != NULL);
	if (!px)
		return;
	for (i = 0; i < len; i++) {
		fg += px[i] >= 128;
		lo = px[i] < lo ? px[i] : lo;
		hi = px[i] > hi ? px[i] : hi;
	}
	ratio = (double)fg / (double)len;
	printf("isnet %s: %dx%d foreground %.4f values %d..%d\n", what,
	       mask->Xsize, mask->Ysize, ratio, lo, hi);
	CHECK(ratio > 0.02 && ratio < 0.98);
	CHECK(hi - lo >= 128); /* not all one value: a real mask */
	pm_sha256_hex(px, len, hex);
	g_free(px);
}

static void test_isnet(void)
{
	static const char *const photos[] = {"palapeli_european-honey-bee.jpg",
					     "opencv_fruits.jpg", NULL};
	pm_isnet *n = NULL;
	pm_err err = {{0}};
	char path[4096], h1[65], h2[65];
	VipsImage *im, *mask = NULL;
	pm_status s;
	int i;

	/* an explicit missing path is a clear error */
	CHECK_INT(pm_isnet_open("/nonexistent/isnet.onnx", 1, &n, &err),
		  PM_ERR_NOT_FOUND);
	CHECK(n == NULL);
	if (pm_models_path(NULL, "isnet", path, sizeof path, &err) != PM_OK ||
	    access(path, R_OK) != 0) {
		printf("SKIP isnet tests: model not installed (%s); run "
		       "`pixmill models install isnet --accept-license`\n",
		       path);
		return;
	}
	s = pm_isnet_open(NULL, 1, &n, &err);
	CHECK_INT(s, PM_OK);
	if (s) {
		fprintf(stderr, "isnet open: %s\n", err.msg);
		return;
	}
	for (i = 0; photos[i]; i++) {
		im = load_photo(photos[i]);
		CHECK(im != NULL);
		if (!im)
			continue;
		s = pm_isnet_mask(n, im, &mask, &err);
		CHECK_INT(s, PM_OK);
		if (s) {
			fprintf(stderr, "isnet: %s\n", err.msg);
			g_object_unref(im);
			continue;
		}
		check_mask(im, mask, i ? h2 : h1, photos[i]);
		g_object_unref(mask);
		mask = NULL;
		if (i == 0) { /* deterministic: the same bytes again */
			CHECK_INT(pm_isnet_mask(n, im, &mask, &err), PM_OK);
			if (mask) {
				check_mask(im, mask, h2, "again");
				CHECK_STR(h2, h1);
				g_object_unref(mask);
				mask = NULL;
			}
			printf("isnet mask sha256 %s (%s)\n", h1, photos[i]);
		}
		g_object_unref(im);
	}
	/* a tiny grey input: a mask of the same size, no crash */
	{
		VipsImage *grey = NULL;
		im = pattern(3, 2, 0);
		CHECK(vips_extract_band(im, &grey, 0, NULL) == 0);
		CHECK_INT(pm_isnet_mask(n, grey, &mask, &err), PM_OK);
		if (mask) {
			CHECK_INT(mask->Xsize, 3);
			CHECK_INT(mask->Ysize, 2);
			CHECK_INT(mask->Bands, 1);
			g_object_unref(mask);
		}
		g_object_unref(grey);
		g_object_unref(im);
	}
	pm_isnet_close(n);
}

int main(int argc, char **argv)
{
	(void)argc;
	if (VIPS_INIT(argv[0]))
		return 2;
	pm_image_global_init();
	snprintf(tmpdir, sizeof tmpdir, "/tmp/pm-test-ml-XXXXXX");
	CHECK(mkdtemp(tmpdir) != NULL);
	if (make_models()) {
		test_threads();
		test_loader();
		test_bad_descriptors();
		test_edge_corpus();
		test_isnet_wrong_model();
		test_fp32();
	} else {
		CHECK(0);
	}
	test_isnet();
	{
		char cmd[512];
		snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", tmpdir);
	}
	vips_shutdown();
	TEST_DONE();
}
