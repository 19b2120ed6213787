/* test_embed.c — unit tests for the embed stage (src/stages/embed.c) and
 * the brute-force search (src/engine/search.c).
 *
 * The built-in vector is unit length for odd inputs (flat, 1x1, grey,
 * alpha, 16-bit); on the corpus photos ($PIXMILL_CORPUS/photos, default
 * /work/shared/corpus/photos) a mirror image scores ~1.0, and a 90% crop,
 * a 50% resize and a JPEG q=40 copy are each nearer to their own original
 * than to any other photo. The stage's vtable: params check, context
 * results, clear. Top-k of the vector and hash scans against a naive
 * reference. Every file of the edge corpus through decode + embed: a
 * status, never a crash.
 *
 * Prints the time of one embedding (informational; meaningful only in an
 * optimised, unsanitised build; --no-timing skips it).
 * Threads: single-threaded test program.
 */
#include "engine/search.h"
#include "stages/embed.h"
#include "stages/pipeline.h"
#include "stages/stage.h"
#include "test.h"

#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "core/util.h"

#define DIM PM_EMBED_BUILTIN_DIM

static char corpus[512];

static double dotv(const float *a, const float *b, int n)
{
	double s = 0;
	for (int i = 0; i < n; i++)
		s += (double)a[i] * b[i];
	return s;
}

static bool embed(VipsImage *im, float *v)
{
	pm_err err = {{0}};
	pm_status s = pm_embed_builtin(im, v, &err);
	if (s)
		fprintf(stderr, "embed: %s\n", err.msg);
	return s == PM_OK;
}

static void unref(VipsImage *im)
{
	if (im)
		g_object_unref(im);
}

/* ---- odd inputs ---- */

static void test_odd_inputs(void)
{
	float v[DIM];
	VipsImage *a = NULL, *b = NULL, *c = NULL;

	/* flat grey, 1x1, grey + alpha, 16-bit grey, RGBA */
	CHECK(vips_black(&a, 64, 48, "bands", 3, NULL) == 0);
	CHECK(vips_linear1(a, &b, 1.0, 128.0, "uchar", TRUE, NULL) == 0);
	CHECK(embed(b, v));
	CHECK(fabs(dotv(v, v, DIM) - 1.0) < 1e-4);
	unref(a);
	unref(b);
	CHECK(vips_black(&a, 1, 1, "bands", 3, NULL) == 0);
	CHECK(embed(a, v));
	CHECK(fabs(dotv(v, v, DIM) - 1.0) < 1e-4);
	unref(a);
	CHECK(vips_black(&a, 40, 30, "bands", 2, NULL) == 0);
	CHECK(embed(a, v));
	CHECK(fabs(dotv(v, v, DIM) - 1.0) < 1e-4);
	unref(a);
	/* 16-bit grey */
	CHECK(vips_black(&a, 30, 20, NULL) == 0);
	CHECK(vips_linear1(a, &b, 1.0, 40000.0, NULL) == 0);
	CHECK(vips_cast(b, &c, VIPS_FORMAT_USHORT, NULL) == 0);
	unref(a);
	a = NULL;
	CHECK(vips_copy(c, &a, "interpretation", VIPS_INTERPRETATION_GREY16,
			NULL) == 0);
	CHECK(embed(a, v));
	CHECK(fabs(dotv(v, v, DIM) - 1.0) < 1e-4);
	unref(a);
	unref(b);
	unref(c);
	a = b = c = NULL;
	CHECK(vips_black(&a, 50, 50, "bands", 4, NULL) == 0);
	CHECK(embed(a, v));
	unref(a);
	pm_err err = {{0}};
	CHECK(pm_embed_builtin(NULL, v, &err) != PM_OK);
}

/* ---- the stage vtable ---- */

static void test_stage(void)
{
	const pm_stage_vt *vt = pm_stage_find("embed");
	pm_err err = {{0}};
	void *state = NULL;

	CHECK(vt != NULL);
	if (!vt)
		return;
	json_t *p = json_pack("{s:s}", "stage", "embed");
	CHECK_INT(vt->check(p, &err), PM_OK);
	CHECK_INT(vt->decode_size(p), 256);
	json_object_set_new(p, "model", json_string("/nonexistent/model.json"));
	CHECK_INT(vt->check(p, &err), PM_ERR_PIPELINE);
	CHECK(strstr(err.msg, "model") != NULL);
	json_object_set_new(p, "model", json_integer(3));
	CHECK_INT(vt->check(p, &err), PM_ERR_PIPELINE);
	/* a descriptor without a usable size */
	const char *desc = "/tmp/pm_test_embed_desc.json";
	FILE *f = fopen(desc, "w");
	if (f) {
		fputs("{\"model\": \"x.onnx\", \"size\": 3}", f);
		fclose(f);
		json_object_set_new(p, "model", json_string(desc));
		CHECK_INT(vt->check(p, &err), PM_ERR_PIPELINE);
		CHECK(strstr(err.msg, "size") != NULL);
	}
	/* a good size, but the model file is missing */
	f = fopen(desc, "w");
	if (f) {
		fputs("{\"model\": \"pm_no_such_model.onnx\", \"size\": 32}",
		      f);
		fclose(f);
		CHECK_INT(vt->check(p, &err), PM_ERR_PIPELINE);
		CHECK(strstr(err.msg, "model file") != NULL);
		remove(desc);
	}
	json_object_del(p, "model");
	CHECK_INT(vt->check(p, &err), PM_OK);

	CHECK_INT(vt->init(p, &state, &err), PM_OK);
	VipsImage *im = NULL;
	CHECK(vips_xyz(&im, 80, 60, NULL) == 0);
	VipsImage *im8 = NULL, *rgb = NULL;
	CHECK(vips_cast(im, &im8, VIPS_FORMAT_UCHAR, NULL) == 0);
	CHECK(vips_bandjoin_const1(im8, &rgb, 9, NULL) == 0);
	pm_item_ctx ctx = {.image = rgb, .sharpness = NAN};
	CHECK_INT(vt->process(state, &ctx, &err), PM_OK);
	CHECK(ctx.embedding != NULL);
	CHECK_INT(ctx.embedding_dim, DIM);
	CHECK_STR(ctx.embedding_model, PM_EMBED_BUILTIN_ID);
	CHECK(json_is_object(json_object_get(ctx.meta, "embed")));
	if (ctx.embedding)
		CHECK(fabs(dotv(ctx.embedding, ctx.embedding, DIM) - 1) < 1e-4);
	pm_item_ctx_clear(&ctx);
	CHECK(ctx.embedding == NULL);
	CHECK_INT(ctx.embedding_dim, 0);
	vt->fini(state);
	unref(im);
	unref(im8);
	unref(rgb);
	json_decref(p);

	/* in a pipeline, with its version filled in */
	pm_pipeline *pipe = NULL;
	CHECK_INT(pm_pipeline_parse("{\"stages\":[{\"stage\":\"embed\"}]}",
				    &pipe, &err),
		  PM_OK);
	if (pipe)
		CHECK_INT(pm_pipeline_decode_size(pipe), 256);
	pm_pipeline_free(pipe);
}

/* ---- corpus photos and their edited copies ---- */

static VipsImage *load(const char *path, int edge)
{
	void *buf = NULL;
	size_t len = 0;
	pm_err err = {{0}};
	VipsImage *im = NULL;

	if (pm_read_file(path, 1 << 28, &buf, &len, &err))
		return NULL;
	if (pm_image_decode(buf, len, edge, false, &im, &err))
		im = NULL;
	free(buf);
	return im;
}

/* Decodes im re-encoded as JPEG at quality q. */
static VipsImage *recompress(VipsImage *im, int q)
{
	void *buf = NULL;
	size_t len = 0;
	VipsImage *out = NULL;
	pm_err err = {{0}};

	if (vips_jpegsave_buffer(im, &buf, &len, "Q", q, NULL))
		return NULL;
	if (pm_image_decode(buf, len, 8192, false, &out, &err))
		out = NULL;
	g_free(buf);
	return out;
}

static int list_dir(const char *dir, char names[][512], int max, bool images)
{
	DIR *d = opendir(dir);
	int n = 0;
	struct dirent *e;

	if (!d)
		return 0;
	while ((e = readdir(d)) && n < max) {
		size_t l = strlen(e->d_name);
		if (e->d_name[0] == '.')
			continue;
		if (images &&
		    !(l > 4 && (strcmp(e->d_name + l - 4, ".jpg") == 0 ||
				strcmp(e->d_name + l - 4, ".png") == 0)))
			continue;
		snprintf(names[n++], 512, "%s/%s", dir, e->d_name);
	}
	closedir(d);
	qsort(names, (size_t)n, 512,
	      (int (*)(const void *, const void *))strcmp);
	return n;
}

static void test_photos(void)
{
	static char names[64][512];
	static float vec[64][DIM];
	char dir[600];
	int np, ok = 0, edits = 0;
	double worst_flip = 1, worst_margin = 1;

	snprintf(dir, sizeof dir, "%s/photos", corpus);
	np = list_dir(dir, names, 64, true);
	if (np == 0) {
		printf("%s absent: photo checks skipped\n", dir);
		return;
	}
	for (int i = 0; i < np; i++) {
		VipsImage *im = load(names[i], 1024);
		CHECK(im && embed(im, vec[i]));
		unref(im);
	}
	for (int i = 0; i < np; i++) {
		VipsImage *im = load(names[i], 1024), *e[4] = {0};
		const char *what[4] = {"flip", "crop", "resize", "q40"};
		if (!im)
			continue;
		vips_flip(im, &e[0], VIPS_DIRECTION_HORIZONTAL, NULL);
		vips_crop(im, &e[1], im->Xsize / 20, im->Ysize / 20,
			  im->Xsize * 9 / 10, im->Ysize * 9 / 10, NULL);
		vips_resize(im, &e[2], 0.5, NULL);
		e[3] = recompress(im, 40);
		for (int k = 0; k < 4; k++) {
			float v[DIM];
			if (!e[k] || !embed(e[k], v)) {
				CHECK(!"edit failed");
				continue;
			}
			edits++;
			int best = -1;
			double bs = -2, second = -2;
			for (int j = 0; j < np; j++) {
				double s = dotv(v, vec[j], DIM);
				if (s > bs) {
					second = bs;
					bs = s;
					best = j;
				} else if (s > second) {
					second = s;
				}
			}
			if (best != i)
				fprintf(stderr, "%s %s: nearest is %s\n",
					names[i], what[k], names[best]);
			CHECK_INT(best, i);
			ok += best == i;
			if (k == 0) {
				double s = dotv(v, vec[i], DIM);
				CHECK(s > 0.99);
				worst_flip = fmin(worst_flip, s);
			}
			worst_margin = fmin(worst_margin, bs - second);
		}
		for (int k = 0; k < 4; k++)
			unref(e[k]);
		unref(im);
	}
	printf("photos: %d, edits found as top hit %d/%d, worst flip cosine "
	       "%.4f, worst margin over the next photo %.3f\n",
	       np, ok, edits, worst_flip, worst_margin);
}

/* ---- the edge corpus: a status for every file, never a crash ---- */

static void test_edge(void)
{
	static char names[128][512];
	char dir[600];
	int n, embedded = 0, refused = 0;
	pm_limits lim;

	snprintf(dir, sizeof dir, "%s/edge", corpus);
	n = list_dir(dir, names, 128, false);
	if (n == 0) {
		printf("%s absent: edge checks skipped\n", dir);
		return;
	}
	pm_limits_default(&lim);
	for (int i = 0; i < n; i++) {
		void *buf = NULL;
		size_t len = 0;
		pm_err err = {{0}};
		pm_header h;
		VipsImage *im = NULL;
		float v[DIM];
		if (pm_read_file(names[i], 1 << 28, &buf, &len, &err)) {
			refused++;
			continue;
		}
		if (pm_image_probe(buf, len, &lim, &h, &err) ||
		    pm_image_decode(buf, len, 256, false, &im, &err)) {
			refused++;
		} else if (pm_embed_builtin(im, v, &err) == PM_OK) {
			embedded++;
			CHECK(fabs(dotv(v, v, DIM) - 1.0) < 1e-3);
		} else {
			refused++;
			CHECK(err.msg[0] != 0);
		}
		unref(im);
		free(buf);
	}
	CHECK_INT(embedded + refused, n);
	printf("edge corpus: %d files, %d embedded, %d refused with a status\n",
	       n, embedded, refused);
}

/* ---- search ---- */

static float frand(uint64_t *s)
{
	*s = *s * 6364136223846793005ull + 1442695040888963407ull;
	return (float)((*s >> 40) & 0xffffff) / (float)0x1000000 - 0.5f;
}

static void unit(float *v, int n, uint64_t *seed)
{
	double s = 0;
	for (int i = 0; i < n; i++) {
		v[i] = frand(seed);
		s += (double)v[i] * v[i];
	}
	for (int i = 0; i < n; i++)
		v[i] = (float)(v[i] / sqrt(s));
}

static void test_topk(void)
{
	enum { N = 3000, D = 37, K = 7 };
	static float v[N][D];
	float q[D];
	uint64_t seed = 42;
	pm_vecset *vs = NULL;
	pm_err err = {{0}};
	pm_vec_hit hits[K + 5];
	char sha[65];

	CHECK_INT(pm_vecset_new(D, &vs, &err), PM_OK);
	if (!vs)
		return;
	CHECK_INT(pm_vecset_topk(vs, q, K, NULL, hits), 0); /* empty */
	for (int i = 0; i < N; i++) {
		unit(v[i], D, &seed);
		snprintf(sha, sizeof sha, "%064d", i);
		CHECK_INT(pm_vecset_add(vs, sha, v[i], &err), PM_OK);
	}
	CHECK_INT((int)pm_vecset_count(vs), N);
	unit(q, D, &seed);
	int n = pm_vecset_topk(vs, q, K, NULL, hits);
	CHECK_INT(n, K);
	/* against a naive scan: same order, same scores */
	bool taken[N] = {0};
	for (int r = 0; r < K; r++) {
		int best = -1;
		double bs = -3;
		for (int i = 0; i < N; i++)
			if (!taken[i] && dotv(q, v[i], D) > bs) {
				bs = dotv(q, v[i], D);
				best = i;
			}
		taken[best] = true;
		CHECK_INT((int)hits[r].index, best);
		CHECK(fabs(hits[r].score - bs) < 1e-5);
		CHECK(fabs(pm_vecset_score(vs, hits[r].index, q) - bs) < 1e-5);
	}
	/* the query's own vector is first, unless excluded */
	n = pm_vecset_topk(vs, v[123], 3, NULL, hits);
	CHECK_INT((int)hits[0].index, 123);
	CHECK(fabs(hits[0].score - 1) < 1e-5);
	n = pm_vecset_topk(vs, v[123], 3, pm_vecset_sha(vs, 123), hits);
	CHECK_INT(n, 3);
	CHECK((int)hits[0].index != 123);
	pm_vecset_free(vs);

	/* k above the count */
	CHECK_INT(pm_vecset_new(D, &vs, &err), PM_OK);
	pm_vecset_add(vs, "a", v[0], &err);
	pm_vecset_add(vs, "b", v[1], &err);
	CHECK_INT(pm_vecset_topk(vs, q, K + 5, NULL, hits), 2);
	CHECK(hits[0].score >= hits[1].score);
	pm_vecset_free(vs);

	/* hashes: nearest first, max distance, exclude */
	pm_hashset hs = {0};
	pm_hash_hit hh[4];
	pm_hashset_add(&hs, "h0", 0xffull, &err);
	pm_hashset_add(&hs, "h1", 0x0ull, &err);
	pm_hashset_add(&hs, "h2", 0x7ull, &err);
	pm_hashset_add(&hs, "h3", ~0ull, &err);
	n = pm_hashset_topk(&hs, 0x1ull, 4, 64, NULL, hh);
	CHECK_INT(n, 4);
	CHECK_INT((int)hh[0].index, 1);
	CHECK_INT(hh[0].distance, 1);
	CHECK_INT((int)hh[1].index, 2);
	CHECK_INT(hh[3].distance, 63);
	CHECK_INT(pm_hashset_topk(&hs, 0x1ull, 4, 2, NULL, hh), 2);
	CHECK_INT(pm_hashset_topk(&hs, 0x1ull, 4, 2, "h1", hh), 1);
	pm_hashset_clear(&hs);
}

/* ---- timing ---- */

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void time_embed(void)
{
	char dir[600];
	static char names[4][512];
	float v[DIM];

	snprintf(dir, sizeof dir, "%s/photos", corpus);
	if (list_dir(dir, names, 1, true) < 1)
		return;
	for (int edge = 256; edge <= 1024; edge *= 4) {
		VipsImage *im = load(names[0], edge);
		if (!im)
			continue;
		embed(im, v);
		double t0 = now_ms();
		for (int i = 0; i < 20; i++)
			embed(im, v);
		printf("timing: built-in embedding of a %dx%d image: %.2f ms\n",
		       im->Xsize, im->Ysize, (now_ms() - t0) / 20);
		unref(im);
	}
}

int main(int argc, char **argv)
{
	const char *c = getenv("PIXMILL_CORPUS");

	snprintf(corpus, sizeof corpus, "%s",
		 c && *c ? c : "/work/shared/corpus");
	pm_image_preinit();
	if (VIPS_INIT(argv[0]))
		return 2;
	pm_image_global_init();

	test_odd_inputs();
	test_stage();
	test_topk();
	test_photos();
	test_edge();
	if (argc < 2 || strcmp(argv[1], "--no-timing") != 0)
		time_embed();

	vips_shutdown();
	TEST_DONE();
}
