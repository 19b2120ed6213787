/* test_verify.c — unit tests for stages/verify.c: the chosen-image
 * registry (duplicates by pHash distance, never the row's own image), the
 * parameter checks, the link to the compose stage's boxes, and the stage
 * on generated images: a plain studio shot passes, a tiny blurred one is
 * rejected on its score, OCR words naming another product reject and
 * words naming it match, the vision verdict rejects, a duplicate is
 * penalised and kept only as a row's last candidate.
 * Threads: main thread only.
 */
#include <math.h>
#include <stdlib.h>

#include "image/image.h"
#include "stages/pipeline.h"
#include "stages/verify.h"
#include "test.h"

static void test_registry(void)
{
	pm_verify_seen *s = pm_verify_seen_new();
	int d = -1;

	CHECK(s != NULL);
	CHECK(!pm_verify_seen_dup(s, 0x1234567890abcdefull, "a", 3, &d));
	pm_verify_seen_add(s, 0x1234567890abcdefull, "a");
	/* the same row's own image is no duplicate */
	CHECK(!pm_verify_seen_dup(s, 0x1234567890abcdefull, "a", 3, &d));
	CHECK(pm_verify_seen_dup(s, 0x1234567890abcdefull, "b", 3, &d));
	CHECK_INT(d, 0);
	/* 3 bits apart, one in each of three quarters: still found */
	CHECK(pm_verify_seen_dup(
	    s, 0x1234567890abcdefull ^ 0x0001000100010000ull, "b", 3, &d));
	CHECK_INT(d, 3);
	/* 4 bits apart: not a duplicate at distance 3 */
	CHECK(!pm_verify_seen_dup(
	    s, 0x1234567890abcdefull ^ 0x0001000100010001ull, "b", 3, &d));
	/* many entries in one bucket */
	for (int i = 0; i < 5000; i++)
		pm_verify_seen_add(s, (uint64_t)i << 16, "x");
	CHECK(pm_verify_seen_dup(s, (uint64_t)4999 << 16, "y", 0, &d));
	CHECK(!pm_verify_seen_dup(s, (uint64_t)4999 << 16, "x", 0, &d));
	pm_verify_seen_free(s);
	pm_verify_seen_free(NULL);
	CHECK(!pm_verify_seen_dup(NULL, 1, "a", 3, &d));
}

static void test_params(void)
{
	static const char *const bad[] = {
	    "{\"stage\":\"verify\",\"min_score\":2}",
	    "{\"stage\":\"verify\",\"bogus\":1}",
	    "{\"stage\":\"verify\",\"aspects\":[]}",
	    "{\"stage\":\"verify\",\"aspects\":[0]}",
	    "{\"stage\":\"verify\",\"aspects\":\"wide\"}",
	    "{\"stage\":\"verify\",\"ocr_min_words\":1.5}",
	    NULL};
	pm_err e = {{0}};

	for (int i = 0; bad[i]; i++) {
		json_t *p = json_loads(bad[i], 0, NULL);
		CHECK(pm_stage_verify.check(p, &e) == PM_ERR_PIPELINE);
		CHECK(strstr(e.msg, "verify:") != NULL);
		json_decref(p);
	}
	json_t *p = json_loads("{\"stage\":\"verify\"}", 0, NULL);
	CHECK(pm_stage_verify.check(p, &e) == PM_OK);
	CHECK(fabs(json_number_value(json_object_get(p, "min_score")) - 0.35) <
	      1e-9);
	CHECK_INT(json_array_size(json_object_get(p, "aspects")), 1);
	json_decref(p);

	/* the ads built-in: verify gets one aspect per template product box */
	pm_pipeline *pipe = NULL;
	if (pm_pipeline_load("ads", &pipe, &e) == PM_OK) {
		json_t *root = json_loads(pm_pipeline_canonical(pipe), 0, NULL);
		json_t *st = json_array_get(json_object_get(root, "stages"), 0);
		json_t *comp =
		    json_array_get(json_object_get(root, "stages"), 2);
		CHECK_STR(json_string_value(json_object_get(st, "stage")),
			  "verify");
		CHECK(json_array_size(json_object_get(st, "aspects")) ==
		      json_array_size(json_object_get(comp, "boxes")));
		CHECK(json_array_size(json_object_get(st, "aspects")) >= 1);
		CHECK(pm_pipeline_placeholders(pipe));
		json_decref(root);
		pm_pipeline_free(pipe);
	} else {
		fprintf(stderr, "ads pipeline: %s\n", e.msg);
		CHECK(0);
	}
}

/* A w x h image: white with a blue disc (studio), or noise blurred. */
static VipsImage *studio(int w, int h)
{
	VipsImage *b, *out;
	double blue[3] = {30, 90, 200};

	vips_black(&b, w, h, "bands", 3, NULL);
	vips_linear1(b, &out, 1, 255, "uchar", TRUE, NULL);
	g_object_unref(b);
	vips_image_wio_input(out);
	vips_draw_circle(out, blue, 3, w / 2, h / 2, h / 3, "fill", TRUE, NULL);
	return out;
}

static VipsImage *blurred(int w, int h)
{
	VipsImage *n, *u, *g, *out;

	vips_gaussnoise(&n, w, h, "sigma", 60.0, "mean", 128.0, NULL);
	vips_cast_uchar(n, &u, NULL);
	vips_gaussblur(u, &g, 4, NULL);
	VipsImage *bands[3] = {g, g, g};
	vips_bandjoin(bands, &out, 3, NULL);
	g_object_unref(n);
	g_object_unref(u);
	g_object_unref(g);
	return out;
}

/* Runs the stage with the given params on im; the status, and the
 * verify facts in *facts (a new reference, or NULL). */
static pm_status run(const char *params, VipsImage *im, json_t *meta,
		     pm_verify_seen *seen, const char *key, bool more,
		     json_t **facts)
{
	json_t *p = json_loads(params, 0, NULL);
	pm_item_ctx ctx = {0};
	pm_header h = {0};
	void *st = NULL;
	pm_err e = {{0}};
	pm_status s;

	pm_stage_verify.check(p, &e);
	pm_stage_verify.init(p, &st, &e);
	h.width = im->Xsize;
	h.height = im->Ysize;
	ctx.image = im;
	ctx.header = &h;
	ctx.title = "Blue ceramic bowl";
	ctx.brand = "Acme";
	ctx.meta = meta;
	ctx.seen = seen;
	ctx.row_key = key;
	ctx.more_candidates = more;
	s = pm_stage_verify.process(st, &ctx, &e);
	*facts = json_incref(json_object_get(ctx.meta, "verify"));
	json_decref(ctx.meta);
	pm_stage_verify.fini(st);
	json_decref(p);
	return s;
}

static json_t *ocr_words(const char *w1, const char *w2)
{
	return json_pack("{s:{s:s,s:[[s,i,i,i,i,f],[s,i,i,i,i,f]]}}", "ocr",
			 "text", "", "words", w1, 10, 500, 200, 60, 91.0, w2,
			 220, 500, 200, 60, 88.0);
}

static void test_stage(void)
{
	VipsImage *good = studio(900, 900), *bad = blurred(80, 60);
	pm_verify_seen *seen = pm_verify_seen_new();
	const char *P = "{\"stage\":\"verify\"}";
	json_t *f = NULL;

	CHECK(run(P, good, NULL, NULL, "r1", false, &f) == PM_OK);
	CHECK(json_is_true(json_object_get(f, "passed")));
	CHECK(json_real_value(json_object_get(json_object_get(f, "parts"),
					      "plainness")) > 0.9);
	CHECK(json_real_value(json_object_get(f, "score")) >= 0.35);
	json_decref(f);

	CHECK(run(P, bad, NULL, NULL, "r1", false, &f) == PM_ERR_REJECTED);
	CHECK(json_real_value(json_object_get(f, "score")) < 0.35);
	CHECK(strstr(json_string_value(json_object_get(f, "reason")),
		     "quality score") != NULL);
	json_decref(f);

	/* OCR: another brand's words reject, the product's words match */
	CHECK(run(P, good, ocr_words("GLOBEX", "KETTLE"), NULL, "r1", false,
		  &f) == PM_ERR_REJECTED);
	CHECK_STR(json_string_value(
		      json_object_get(json_object_get(f, "ocr"), "verdict")),
		  "contradiction");
	json_decref(f);
	CHECK(run(P, good, ocr_words("ACME", "KETTLE"), NULL, "r1", false,
		  &f) == PM_OK);
	CHECK_STR(json_string_value(
		      json_object_get(json_object_get(f, "ocr"), "verdict")),
		  "match");
	CHECK(json_object_get(json_object_get(f, "parts"), "text") != NULL);
	json_decref(f);

	/* vision: a "no" rejects, a confident "yes" passes */
	CHECK(run(P, good,
		  json_pack("{s:{s:b,s:f}}", "analysis", "product_match", 0,
			    "match_score", 0.1),
		  NULL, "r1", false, &f) == PM_ERR_REJECTED);
	json_decref(f);
	CHECK(run(P, good,
		  json_pack("{s:{s:b,s:f}}", "analysis", "product_match", 1,
			    "match_score", 0.9),
		  NULL, "r1", false, &f) == PM_OK);
	json_decref(f);

	/* duplicates: the first row's image is registered when it passes;
	 * another row with the same image is penalised; with min_score set
	 * so the penalty decides, it is rejected while it has candidates
	 * left and kept as its last one */
	const char *D = "{\"stage\":\"verify\",\"min_score\":0.6,"
			"\"duplicate_penalty\":0.5}";
	CHECK(run(D, good, NULL, seen, "r1", false, &f) == PM_OK);
	json_decref(f);
	/* the row itself again (a resumed or repeated row): no penalty */
	CHECK(run(D, good, NULL, seen, "r1", true, &f) == PM_OK);
	CHECK(json_object_get(json_object_get(f, "parts"), "duplicate") ==
	      NULL);
	json_decref(f);
	CHECK(run(D, good, NULL, seen, "r2", true, &f) == PM_ERR_REJECTED);
	CHECK(json_object_get(json_object_get(f, "parts"), "duplicate") !=
	      NULL);
	json_decref(f);
	CHECK(run(D, good, NULL, seen, "r2", false, &f) == PM_OK);
	CHECK(json_is_true(json_object_get(f, "kept_duplicate")));
	json_decref(f);

	pm_verify_seen_free(seen);
	g_object_unref(good);
	g_object_unref(bad);
}

int main(int argc, char **argv)
{
	(void)argc;
	if (VIPS_INIT(argv[0]))
		return 1;
	pm_image_global_init();
	test_registry();
	test_params();
	test_stage();
	vips_shutdown();
	TEST_DONE();
}
