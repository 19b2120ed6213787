/* test_ocr.c — the ocr and recipe stages through their vtables: text
 * rendered with libvips/Pango (vips_text) is read back with a character
 * accuracy above a measured threshold (clean, rotated 4 degrees with the
 * deskew angle found, light text on dark, small text that needs the
 * upscale); word boxes land on the rendered text; params are checked
 * (missing language, psm 2, bad binarize); blank, tiny and alpha images
 * give results, not crashes; the recipe stage structures OCR text and
 * refuses to run without it.
 *
 * Thresholds: measured on this machine (Tesseract 5.3.0, eng 4.1.0):
 * clean 1.000, rotated 1.000, inverted 1.000, small 0.99+; asserted at
 * 0.95 (0.90 for small) to leave room for font and library versions.
 *
 * Threads: main thread only.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "stages/pipeline.h"
#include "stages/stage.h"
#include "test.h"

static const char *card_text = "Lemon Rice\n"
			       "Serves 4\n"
			       "Ingredients\n"
			       "1 1/2 cups basmati rice\n"
			       "3 cups water\n"
			       "2 tbsp butter, melted\n"
			       "Method\n"
			       "1. Rinse the rice until the water runs clear.\n"
			       "2. Cook on low for 15 minutes.";

/* Levenshtein distance, O(len a * len b) with two rows. */
static size_t lev(const char *a, const char *b)
{
	size_t na = strlen(a), nb = strlen(b);
	size_t *prev = malloc((nb + 1) * sizeof *prev);
	size_t *cur = malloc((nb + 1) * sizeof *cur);
	for (size_t j = 0; j <= nb; j++)
		prev[j] = j;
	for (size_t i = 1; i <= na; i++) {
		cur[0] = i;
		for (size_t j = 1; j <= nb; j++) {
			size_t c = prev[j - 1] + (a[i - 1] != b[j - 1]);
			if (prev[j] + 1 < c)
				c = prev[j] + 1;
			if (cur[j - 1] + 1 < c)
				c = cur[j - 1] + 1;
			cur[j] = c;
		}
		size_t *t = prev;
		prev = cur;
		cur = t;
	}
	size_t d = prev[nb];
	free(prev);
	free(cur);
	return d;
}

/* Whitespace runs folded to one space, ends trimmed; caller frees. */
static char *fold(const char *s)
{
	char *o = malloc(strlen(s) + 1);
	size_t j = 0;
	for (; *s; s++) {
		bool sp = *s == ' ' || *s == '\n' || *s == '\t' || *s == '\r';
		if (sp) {
			if (j && o[j - 1] != ' ')
				o[j++] = ' ';
		} else {
			o[j++] = *s;
		}
	}
	while (j && o[j - 1] == ' ')
		j--;
	o[j] = '\0';
	return o;
}

static double char_acc(const char *got, const char *want)
{
	char *g = fold(got), *w = fold(want);
	double a = 1.0 - (double)lev(g, w) / (double)strlen(w);
	free(g);
	free(w);
	return a < 0 ? 0 : a;
}

/* Renders text as dark on light (or light on dark) sRGB, margin 40 px,
 * optionally rotated. Caller unrefs. */
static VipsImage *render(const char *text, const char *font, int dpi,
			 bool invert, double angle)
{
	VipsImage *mask, *t, *img;
	if (vips_text(&mask, text, "font", font, "dpi", dpi, NULL))
		return NULL;
	if (vips_embed(mask, &t, 40, 40, vips_image_get_width(mask) + 80,
		       vips_image_get_height(mask) + 80, NULL))
		return NULL;
	g_object_unref(mask);
	if (!invert) {
		if (vips_invert(t, &mask, NULL))
			return NULL;
		g_object_unref(t);
		t = mask;
	}
	if (angle != 0) {
		double white = invert ? 0 : 255;
		VipsArrayDouble *bg = vips_array_double_new(&white, 1);
		int r = vips_rotate(t, &mask, angle, "background", bg, NULL);
		vips_area_unref(VIPS_AREA(bg));
		if (r)
			return NULL;
		g_object_unref(t);
		t = mask;
	}
	if (vips_colourspace(t, &img, VIPS_INTERPRETATION_sRGB, NULL))
		return NULL;
	g_object_unref(t);
	t = vips_image_copy_memory(img);
	g_object_unref(img);
	return t;
}

typedef struct runner {
	const pm_stage_vt *vt;
	json_t *params;
	void *state;
} runner;

static bool runner_open(runner *r, const char *stage, const char *params)
{
	pm_err e;
	r->vt = pm_stage_find(stage);
	r->params = json_loads(params, 0, NULL);
	r->state = NULL;
	if (!r->vt || !r->params)
		return false;
	if (r->vt->check(r->params, &e) ||
	    r->vt->init(r->params, &r->state, &e)) {
		fprintf(stderr, "%s: %s\n", stage, e.msg);
		return false;
	}
	return true;
}

static void runner_close(runner *r)
{
	if (r->vt && r->vt->fini)
		r->vt->fini(r->state);
	json_decref(r->params);
}

/* Runs ocr on img into ctx (ctx->meta owned by the caller). */
static pm_status run_ocr(runner *r, VipsImage *img, pm_item_ctx *ctx)
{
	pm_err e;
	memset(ctx, 0, sizeof *ctx);
	ctx->image = img;
	pm_status s = r->vt->process(r->state, ctx, &e);
	if (s)
		fprintf(stderr, "ocr: %s\n", e.msg);
	return s;
}

static const char *ocr_text(pm_item_ctx *ctx)
{
	return json_string_value(
	    json_object_get(json_object_get(ctx->meta, "ocr"), "text"));
}

static void test_accuracy(runner *r)
{
	static const struct {
		const char *what, *font;
		int dpi;
		bool invert;
		double angle, min_acc;
	} cases[] = {
	    {"clean serif", "DejaVu Serif 12", 150, false, 0, 0.95},
	    {"clean sans", "Liberation Sans 13", 150, false, 0, 0.95},
	    {"rotated 4 degrees", "DejaVu Sans 12", 150, false, 4, 0.95},
	    {"rotated -3 degrees", "FreeSerif 14", 150, false, -3, 0.95},
	    {"light on dark", "DejaVu Sans 12", 150, true, 0, 0.95},
	    {"small text (upscaled)", "DejaVu Sans 9", 96, false, 0, 0.90},
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		VipsImage *img = render(card_text, cases[i].font, cases[i].dpi,
					cases[i].invert, cases[i].angle);
		pm_item_ctx ctx;
		CHECK(img != NULL);
		if (!img)
			continue;
		CHECK_INT(run_ocr(r, img, &ctx), PM_OK);
		const char *t = ocr_text(&ctx);
		CHECK(t != NULL);
		double acc = t ? char_acc(t, card_text) : 0;
		printf("  %-24s char accuracy %.4f\n", cases[i].what, acc);
		if (acc < cases[i].min_acc)
			fprintf(stderr, "%s: got\n%s\n", cases[i].what, t);
		CHECK(acc >= cases[i].min_acc);
		json_t *o = json_object_get(ctx.meta, "ocr");
		double ang = json_real_value(json_object_get(o, "angle"));
		/* vips_rotate turns clockwise on screen for a positive angle;
		 * the deskew reports the skew it removed, same sign. */
		if (cases[i].angle != 0) {
			if (fabs(ang - cases[i].angle) > 0.6)
				fprintf(stderr, "%s: deskew angle %.1f\n",
					cases[i].what, ang);
			CHECK(fabs(ang - cases[i].angle) <= 0.6);
		}
		if (cases[i].dpi < 150)
			CHECK(json_real_value(json_object_get(o, "scale")) >
			      1.5);
		CHECK(json_real_value(json_object_get(o, "confidence")) > 50);
		CHECK_STR(json_string_value(json_object_get(o, "lang")), "eng");
		/* every word box inside the image, and "Lemon" at the top
		 * left (the title, unrotated cases) */
		json_t *words = json_object_get(o, "words"), *w;
		size_t k;
		int inside = 0, lemon = 0;
		int iw = vips_image_get_width(img),
		    ih = vips_image_get_height(img);
		json_array_foreach(words, k, w)
		{
			int x = (int)json_integer_value(json_array_get(w, 1));
			int y = (int)json_integer_value(json_array_get(w, 2));
			int ww = (int)json_integer_value(json_array_get(w, 3));
			int hh = (int)json_integer_value(json_array_get(w, 4));
			inside += x >= 0 && y >= 0 && ww > 0 && hh > 0 &&
				  x + ww <= iw && y + hh <= ih;
			if (strcmp(json_string_value(json_array_get(w, 0)),
				   "Lemon") == 0)
				lemon = x < iw / 3 && y < ih / 5;
		}
		CHECK(json_array_size(words) >= 30);
		CHECK_INT(inside, json_array_size(words));
		if (cases[i].angle == 0)
			CHECK(lemon);
		json_decref(ctx.meta);
		g_object_unref(img);
	}
}

static void test_params(void)
{
	pm_err e;
	const pm_stage_vt *vt = pm_stage_find("ocr");
	json_t *p;

	CHECK(vt != NULL);
	p = json_pack("{s:s}", "lang", "xx_nope");
	CHECK_INT(vt->check(p, &e), PM_ERR_PIPELINE);
	CHECK(strstr(e.msg, "not installed") != NULL);
	CHECK(strstr(e.msg, "eng") != NULL); /* lists what is installed */
	json_decref(p);
	p = json_pack("{s:s}", "lang", "../../etc/passwd");
	CHECK_INT(vt->check(p, &e), PM_ERR_PIPELINE);
	json_decref(p);
	p = json_pack("{s:i}", "psm", 2);
	CHECK_INT(vt->check(p, &e), PM_ERR_PIPELINE);
	json_decref(p);
	p = json_pack("{s:i}", "psm", 14);
	CHECK_INT(vt->check(p, &e), PM_ERR_PIPELINE);
	json_decref(p);
	p = json_pack("{s:s}", "binarize", "magic");
	CHECK_INT(vt->check(p, &e), PM_ERR_PIPELINE);
	json_decref(p);
	p = json_object();
	CHECK_INT(vt->check(p, &e), PM_OK);
	CHECK_STR(json_string_value(json_object_get(p, "lang")), "eng");
	CHECK_INT(json_integer_value(json_object_get(p, "psm")), 3);
	CHECK_STR(json_string_value(json_object_get(p, "binarize")),
		  "adaptive");
	CHECK_INT(vt->decode_size(p), 3000);
	json_decref(p);
	/* the built-in pipelines load, and recipes uses psm 4 */
	pm_pipeline *pl = NULL;
	CHECK_INT(pm_pipeline_load("ocr", &pl, &e), PM_OK);
	pm_pipeline_free(pl);
	CHECK_INT(pm_pipeline_load("recipes", &pl, &e), PM_OK);
	CHECK(pl && strstr(pm_pipeline_canonical(pl), "\"psm\":4") != NULL);
	pm_pipeline_free(pl);
}

static void test_odd_images(runner *r)
{
	pm_item_ctx ctx;
	VipsImage *img, *t;

	/* blank white page: empty text, no words */
	vips_black(&t, 300, 200, "bands", 3, NULL);
	vips_invert(t, &img, NULL);
	g_object_unref(t);
	t = vips_image_copy_memory(img);
	g_object_unref(img);
	CHECK_INT(run_ocr(r, t, &ctx), PM_OK);
	CHECK_STR(ocr_text(&ctx), "");
	json_decref(ctx.meta);
	g_object_unref(t);

	/* 1x1 */
	vips_black(&t, 1, 1, "bands", 3, NULL);
	img = vips_image_copy_memory(t);
	g_object_unref(t);
	CHECK_INT(run_ocr(r, img, &ctx), PM_OK);
	CHECK(ocr_text(&ctx) != NULL);
	json_decref(ctx.meta);
	g_object_unref(img);

	/* RGBA text: alpha flattened against white */
	img = render("Alpha Channel Text", "DejaVu Sans 14", 150, false, 0);
	vips_bandjoin_const1(img, &t, 255, NULL);
	g_object_unref(img);
	img = vips_image_copy_memory(t);
	g_object_unref(t);
	CHECK_INT(run_ocr(r, img, &ctx), PM_OK);
	CHECK(ocr_text(&ctx) &&
	      char_acc(ocr_text(&ctx), "Alpha Channel Text") > 0.9);
	json_decref(ctx.meta);
	g_object_unref(img);

	/* noise: whatever it reads, the result is well-formed */
	vips_gaussnoise(&t, 400, 300, "sigma", 60.0, "mean", 128.0, NULL);
	vips_cast_uchar(t, &img, NULL);
	g_object_unref(t);
	vips_colourspace(img, &t, VIPS_INTERPRETATION_sRGB, NULL);
	g_object_unref(img);
	img = vips_image_copy_memory(t);
	g_object_unref(t);
	CHECK_INT(run_ocr(r, img, &ctx), PM_OK);
	CHECK(json_is_array(
	    json_object_get(json_object_get(ctx.meta, "ocr"), "words")));
	json_decref(ctx.meta);
	g_object_unref(img);
}

static void test_recipe_stage(runner *ocr)
{
	runner rs;
	pm_item_ctx ctx;
	pm_err e;

	CHECK(runner_open(&rs, "recipe", "{}"));
	memset(&ctx, 0, sizeof ctx);
	CHECK_INT(rs.vt->process(rs.state, &ctx, &e), PM_ERR_PIPELINE);
	CHECK(strstr(e.msg, "ocr") != NULL);

	VipsImage *img = render(card_text, "DejaVu Serif 12", 150, false, 0);
	CHECK_INT(run_ocr(ocr, img, &ctx), PM_OK);
	CHECK_INT(rs.vt->process(rs.state, &ctx, &e), PM_OK);
	json_t *rec = json_object_get(ctx.meta, "recipe");
	CHECK_STR(json_string_value(json_object_get(rec, "title")),
		  "Lemon Rice");
	json_t *ing = json_object_get(rec, "ingredients");
	CHECK_INT(json_array_size(ing), 3);
	json_t *first = json_array_get(ing, 0);
	CHECK(fabs(json_real_value(json_object_get(first, "qty")) - 1.5) <
	      1e-9);
	CHECK_STR(json_string_value(json_object_get(first, "unit")), "cup");
	CHECK_STR(json_string_value(json_object_get(first, "name")),
		  "basmati rice");
	CHECK_INT(json_array_size(json_object_get(rec, "steps")), 2);
	json_decref(ctx.meta);
	g_object_unref(img);
	runner_close(&rs);
}

int main(int argc, char **argv)
{
	runner r;

	(void)argc;
	if (VIPS_INIT(argv[0]))
		return 1;
	pm_image_global_init();
	test_params();
	CHECK(runner_open(&r, "ocr", "{}"));
	test_accuracy(&r);
	test_odd_images(&r);
	test_recipe_stage(&r);
	runner_close(&r);
	/* min_conf drops low-confidence words from words and text */
	{
		runner all, strict;
		pm_item_ctx a, b;
		VipsImage *img = render("Noisy words: qzxv wkpt 123 Lemon Rice",
					"DejaVu Sans 12", 150, false, 0);
		CHECK(runner_open(&all, "ocr", "{}"));
		CHECK(runner_open(&strict, "ocr", "{\"min_conf\":95}"));
		CHECK_INT(run_ocr(&all, img, &a), PM_OK);
		CHECK_INT(run_ocr(&strict, img, &b), PM_OK);
		json_t *wa =
		    json_object_get(json_object_get(a.meta, "ocr"), "words");
		json_t *wb =
		    json_object_get(json_object_get(b.meta, "ocr"), "words");
		size_t k;
		json_t *w;
		int low = 0;
		json_array_foreach(wb, k, w)
		{
			low += json_real_value(json_array_get(w, 5)) < 95;
		}
		CHECK(json_array_size(wa) >= json_array_size(wb));
		CHECK_INT(low, 0);
		CHECK(strlen(ocr_text(&a)) >= strlen(ocr_text(&b)));
		json_decref(a.meta);
		json_decref(b.meta);
		g_object_unref(img);
		runner_close(&all);
		runner_close(&strict);
	}
	/* a second engine in the same process (as a second worker has) */
	CHECK(runner_open(&r, "ocr", "{\"psm\":6,\"binarize\":\"none\"}"));
	test_recipe_stage(&r);
	runner_close(&r);
	TEST_DONE();
}
