/* test_pipeline.c — unit tests for image/image.c (probe, decode, fit,
 * encode) and stages/ (pipeline parsing, hashing, overrides, running the
 * thumbnail and measuring stages on a generated image).
 * Threads: main thread only.
 */
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/util.h"
#include "image/image.h"
#include "stages/pipeline.h"
#include "test.h"

/* A w x h sRGB gradient encoded as fmt, with an optional EXIF orientation
 * (JPEG only). Caller g_frees *buf. */
static void make_image(int w, int h, pm_format fmt, int orientation, void **buf,
		       size_t *len)
{
	VipsImage *x, *x2, *r, *g, *rgb, *u;

	vips_xyz(&x, w, h, NULL);
	vips_extract_band(x, &r, 0, NULL);
	vips_extract_band(x, &g, 1, NULL);
	VipsImage *bands[3] = {r, g, r};
	vips_bandjoin(bands, &rgb, 3, NULL);
	vips_copy(rgb, &x2, "interpretation", VIPS_INTERPRETATION_sRGB, NULL);
	vips_cast_uchar(x2, &u, NULL);
	g_object_unref(x2);
	if (orientation)
		vips_image_set_int(u, VIPS_META_ORIENTATION, orientation);
	if (fmt == PM_FMT_PNG)
		vips_pngsave_buffer(u, buf, len, NULL);
	else
		vips_jpegsave_buffer(u, buf, len, NULL);
	g_object_unref(x);
	g_object_unref(r);
	g_object_unref(g);
	g_object_unref(rgb);
	g_object_unref(u);
}

static void test_probe_decode(void)
{
	void *buf;
	size_t len;
	pm_limits lim;
	pm_header h;
	pm_err e;
	VipsImage *im = NULL, *fit = NULL;

	pm_limits_default(&lim);
	make_image(300, 200, PM_FMT_PNG, 0, &buf, &len);
	CHECK_INT(pm_image_probe(buf, len, &lim, &h, &e), PM_OK);
	CHECK_INT(h.format, PM_FMT_PNG);
	CHECK_INT(h.width, 300);
	CHECK_INT(h.height, 200);
	CHECK_INT(h.frames, 1);
	lim.max_pixels = 300 * 200 - 1;
	CHECK_INT(pm_image_probe(buf, len, &lim, &h, &e), PM_ERR_TOO_LARGE);
	CHECK(strstr(e.msg, "pixels") != NULL);
	pm_limits_default(&lim);
	lim.max_width = 299;
	CHECK_INT(pm_image_probe(buf, len, &lim, &h, &e), PM_ERR_TOO_LARGE);
	pm_limits_default(&lim);
	lim.max_bytes = len - 1;
	CHECK_INT(pm_image_probe(buf, len, &lim, &h, &e), PM_ERR_TOO_LARGE);
	pm_limits_default(&lim);
	/* truncated PNG: header may read, decode must fail */
	CHECK(pm_image_decode(buf, len / 2, 100, false, &im, &e) ==
	      PM_ERR_DECODE);
	CHECK(im == NULL);
	CHECK_INT(pm_image_probe("hello world", 11, &lim, &h, &e),
		  PM_ERR_UNSUPPORTED);
	CHECK_INT(pm_image_probe("", 0, &lim, &h, &e), PM_ERR_DECODE);
	/* never enlarged */
	CHECK_INT(pm_image_decode(buf, len, 1000, false, &im, &e), PM_OK);
	CHECK_INT(vips_image_get_width(im), 300);
	CHECK_INT(pm_image_fit(im, 150, &fit, &e), PM_OK);
	CHECK_INT(vips_image_get_width(fit), 150);
	CHECK_INT(vips_image_get_height(fit), 100);
	g_object_unref(fit);
	g_object_unref(im);
	/* shrink on load to the long edge */
	CHECK_INT(pm_image_decode(buf, len, 60, false, &im, &e), PM_OK);
	CHECK_INT(vips_image_get_width(im), 60);
	CHECK_INT(vips_image_get_height(im), 40);
	CHECK_INT(vips_image_get_bands(im), 3);
	CHECK_INT(vips_image_get_format(im), VIPS_FORMAT_UCHAR);
	g_object_unref(im);
	g_free(buf);

	/* EXIF orientation 6 (90 cw): 300x200 stored becomes 200x300 */
	make_image(300, 200, PM_FMT_JPEG, 6, &buf, &len);
	CHECK_INT(pm_image_probe(buf, len, &lim, &h, &e), PM_OK);
	CHECK_INT(h.orientation, 6);
	CHECK_INT(pm_image_decode(buf, len, 1000, false, &im, &e), PM_OK);
	CHECK_INT(vips_image_get_width(im), 200);
	CHECK_INT(vips_image_get_height(im), 300);
	CHECK(vips_image_get_typeof(im, VIPS_META_EXIF_NAME) == 0);
	g_object_unref(im);
	/* keep_meta keeps EXIF */
	CHECK_INT(pm_image_decode(buf, len, 1000, true, &im, &e), PM_OK);
	CHECK(vips_image_get_typeof(im, VIPS_META_EXIF_NAME) != 0);

	/* encoders: each output sniffs as its format */
	pm_format fmts[] = {PM_FMT_WEBP, PM_FMT_JPEG, PM_FMT_PNG, PM_FMT_AVIF};
	for (int i = 0; i < 4; i++) {
		pm_encode_opts o = {
		    .format = fmts[i], .quality = 70, .effort = -1};
		void *ob = NULL;
		size_t ol = 0;
		CHECK_INT(pm_image_encode(im, &o, &ob, &ol, &e), PM_OK);
		CHECK_INT(pm_sniff(ob, ol), fmts[i]);
		g_free(ob);
	}
	pm_encode_opts gif = {.format = PM_FMT_GIF, .quality = 70};
	void *gb;
	size_t gl;
	CHECK_INT(pm_image_encode(im, &gif, &gb, &gl, &e), PM_ERR_UNSUPPORTED);
	g_object_unref(im);
	g_free(buf);
}

static void test_pipeline_parse(void)
{
	pm_pipeline *p = NULL, *q = NULL;
	pm_err e;
	char h1[65];

	CHECK_INT(pm_pipeline_load("thumbnails", &p, &e), PM_OK);
	CHECK_STR(pm_pipeline_name(p), "thumbnails");
	CHECK_INT(pm_pipeline_decode_size(p), 1024);
	CHECK(strstr(pm_pipeline_canonical(p), "\"sizes\":[128,512,1024]") !=
	      NULL);
	CHECK(strstr(pm_pipeline_canonical(p), "\"webp\":80") != NULL);
	snprintf(h1, sizeof h1, "%s", pm_pipeline_hash(p));
	CHECK_INT(strlen(h1), 64);
	/* the same pipeline written out in full hashes the same */
	CHECK_INT(pm_pipeline_parse(pm_pipeline_canonical(p), &q, &e), PM_OK);
	CHECK_STR(pm_pipeline_hash(q), h1);
	pm_pipeline_free(q);
	/* an override changes the hash */
	CHECK_INT(pm_pipeline_override(p, "thumbnail", "sizes",
				       json_pack("[i]", 64), &e),
		  PM_OK);
	CHECK(strcmp(pm_pipeline_hash(p), h1) != 0);
	CHECK_INT(pm_pipeline_decode_size(p), 256); /* measuring stages */
	CHECK_INT(pm_pipeline_override(p, "cutout", "x", json_true(), &e),
		  PM_ERR_USAGE);
	pm_pipeline_free(p);

	/* "jpg" canonicalises to "jpeg": same hash */
	CHECK_INT(pm_pipeline_parse("{\"stages\":[{\"stage\":\"thumbnail\","
				    "\"formats\":[\"jpg\"]}]}",
				    &p, &e),
		  PM_OK);
	CHECK_INT(pm_pipeline_parse("{\"stages\":[{\"stage\":\"thumbnail\","
				    "\"formats\":[\"jpeg\"]}]}",
				    &q, &e),
		  PM_OK);
	CHECK_STR(pm_pipeline_hash(p), pm_pipeline_hash(q));
	pm_pipeline_free(p);
	pm_pipeline_free(q);

	const char *bad[] = {
	    "[]",
	    "{\"stages\":[]}",
	    "{\"stages\":[{\"stage\":\"nope\"}]}",
	    "{\"stages\":[{\"stage\":\"thumbnail\",\"sizes\":[0]}]}",
	    "{\"stages\":[{\"stage\":\"thumbnail\",\"sizes\":\"big\"}]}",
	    "{\"stages\":[{\"stage\":\"thumbnail\",\"formats\":[\"bmp\"]}]}",
	    "{\"stages\":[{\"stage\":\"thumbnail\",\"quality\":{\"webp\":0}}"
	    "]}",
	    "{\"stages\":[{\"stage\":\"colors\",\"count\":99}]}",
	    "{\"stages\":[{\"stage\":\"thumbnail\"}], \"stages\":[]}",
	    "{not json",
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		p = NULL;
		CHECK_INT(pm_pipeline_parse(bad[i], &p, &e), PM_ERR_PIPELINE);
		CHECK(p == NULL);
	}
	CHECK_INT(pm_pipeline_load("nosuch", &p, &e), PM_ERR_PIPELINE);
	CHECK_INT(pm_pipeline_load("/nonexistent/p.json", &p, &e),
		  PM_ERR_PIPELINE);
}

/* The catalog pipeline: the analyze stage only with a vision endpoint
 * (PIXMILL_VISION_URL and PIXMILL_VISION_MODEL), else a note. */
static void test_catalog_pipeline(void)
{
	pm_pipeline *p = NULL, *q = NULL;
	pm_err e;
	const char *c, *an, *emb;

	unsetenv("PIXMILL_VISION_URL");
	unsetenv("PIXMILL_VISION_MODEL");
	CHECK_INT(pm_pipeline_load("catalog", &p, &e), PM_OK);
	if (!p)
		return;
	c = pm_pipeline_canonical(p);
	CHECK(strstr(c, "\"stage\":\"analyze\"") == NULL);
	CHECK(strstr(c, "\"stage\":\"ocr\"") != NULL);
	CHECK(strstr(c, "\"stage\":\"embed\"") != NULL);
	CHECK(strstr(c, "\"sizes\":[256,1024]") != NULL);
	CHECK(pm_pipeline_note(p) &&
	      strstr(pm_pipeline_note(p), "analyze stage is skipped"));
	/* a URL without a model is not an endpoint */
	setenv("PIXMILL_VISION_URL", "http://127.0.0.1:9/v1", 1);
	CHECK_INT(pm_pipeline_load("catalog", &q, &e), PM_OK);
	if (q)
		CHECK_STR(pm_pipeline_hash(q), pm_pipeline_hash(p));
	pm_pipeline_free(q);
	q = NULL;
	setenv("PIXMILL_VISION_MODEL", "vision-m1", 1);
	CHECK_INT(pm_pipeline_load("catalog", &q, &e), PM_OK);
	if (q) {
		c = pm_pipeline_canonical(q);
		an = strstr(c, "\"stage\":\"analyze\"");
		emb = strstr(c, "\"stage\":\"embed\"");
		CHECK(an && emb && an < emb);
		CHECK(strstr(c, "\"model\":\"vision-m1\"") != NULL);
		CHECK(pm_pipeline_note(q) == NULL);
		CHECK(strcmp(pm_pipeline_hash(q), pm_pipeline_hash(p)) != 0);
	}
	pm_pipeline_free(q);
	pm_pipeline_free(p);
	unsetenv("PIXMILL_VISION_URL");
	unsetenv("PIXMILL_VISION_MODEL");
	/* the other built-ins have no note */
	CHECK_INT(pm_pipeline_load("thumbnails", &p, &e), PM_OK);
	if (p)
		CHECK(pm_pipeline_note(p) == NULL);
	pm_pipeline_free(p);
}

static void test_pipeline_run(void)
{
	pm_pipeline *p;
	pm_pipeline_run *r;
	pm_item_ctx ctx;
	pm_header h;
	pm_limits lim;
	pm_err e;
	void *buf;
	size_t len;
	char dir[] = "/tmp/pmpipeXXXXXX", sub[300], cmd[300];
	VipsImage *im;
	pm_outstore *os = NULL;

	pm_limits_default(&lim);
	CHECK(mkdtemp(dir) != NULL);
	CHECK_INT(pm_outstore_local_open(dir, dir, &os, &e), PM_OK);
	snprintf(sub, sizeof sub, "%s/asset", dir);
	CHECK_INT(pm_mkdirs(sub, &e), PM_OK);
	CHECK_INT(
	    pm_pipeline_parse("{\"stages\":[{\"stage\":\"thumbnail\",\"sizes\":"
			      "[100,40,100],\"formats\":[\"webp\",\"png\"]},"
			      "{\"stage\":\"phash\"},{\"stage\":\"colors\"},"
			      "{\"stage\":\"quality\"}]}",
			      &p, &e),
	    PM_OK);
	CHECK_INT(pm_pipeline_run_new(p, &r, &e), PM_OK);
	make_image(400, 300, PM_FMT_PNG, 0, &buf, &len);
	CHECK_INT(pm_image_probe(buf, len, &lim, &h, &e), PM_OK);
	CHECK_INT(pm_image_decode(buf, len, pm_pipeline_decode_size(p), false,
				  &im, &e),
		  PM_OK);
	memset(&ctx, 0, sizeof ctx);
	ctx.sharpness = NAN;
	ctx.src = buf;
	ctx.src_len = len;
	ctx.sha256 = "00";
	ctx.header = &h;
	ctx.image = im;
	ctx.out_root = dir;
	ctx.asset_dir = "asset";
	ctx.outs = os;
	CHECK_INT(pm_pipeline_run_item(r, &ctx, &e), PM_OK);
	/* the duplicate size 100 is produced once: 2 sizes x 2 formats */
	CHECK_INT(ctx.n_outputs, 4);
	CHECK_STR(ctx.outputs[0].name, "100.webp");
	CHECK_INT(ctx.outputs[0].width, 100);
	CHECK_INT(ctx.outputs[0].height, 75);
	CHECK_STR(ctx.outputs[3].name, "40.png");
	CHECK_INT(ctx.outputs[3].width, 40);
	CHECK_INT(ctx.outputs[3].height, 30);
	CHECK_STR(ctx.outputs[3].path, "asset/40.png");
	snprintf(cmd, sizeof cmd, "%s/asset/40.png", dir);
	CHECK(access(cmd, F_OK) == 0);
	CHECK(ctx.has_phash);
	CHECK(ctx.colors_json && ctx.colors_json[0] == '[');
	CHECK(!isnan(ctx.sharpness));
	CHECK(json_is_real(json_object_get(ctx.meta, "quality")));
	pm_item_ctx_clear(&ctx);
	pm_pipeline_run_free(r);
	pm_pipeline_free(p);

	/* sizes above the image's own: the same bytes, encoded once; a
	 * smaller size differs */
	CHECK_INT(pm_pipeline_parse("{\"stages\":[{\"stage\":\"thumbnail\","
				    "\"sizes\":[1000,800,100]}]}",
				    &p, &e),
		  PM_OK);
	CHECK_INT(pm_pipeline_run_new(p, &r, &e), PM_OK);
	memset(&ctx, 0, sizeof ctx);
	ctx.sharpness = NAN;
	ctx.src = buf;
	ctx.src_len = len;
	ctx.sha256 = "00";
	ctx.header = &h;
	ctx.image = im;
	ctx.out_root = dir;
	ctx.asset_dir = "asset";
	ctx.outs = os;
	CHECK_INT(pm_pipeline_run_item(r, &ctx, &e), PM_OK);
	CHECK_INT(ctx.n_outputs, 3);
	CHECK_INT(ctx.outputs[0].width, vips_image_get_width(im));
	CHECK_INT(ctx.outputs[1].width, vips_image_get_width(im));
	CHECK_STR(ctx.out_sha[0], ctx.out_sha[1]);
	CHECK(strcmp(ctx.out_sha[1], ctx.out_sha[2]) != 0);
	CHECK_INT(ctx.outputs[2].width, 100);
	pm_item_ctx_clear(&ctx);
	g_object_unref(im);
	g_free(buf);
	pm_pipeline_run_free(r);
	pm_pipeline_free(p);
	pm_outstore_close(os);
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	CHECK_INT(system(cmd), 0);
}

int main(int argc, char **argv)
{
	(void)argc;
	if (VIPS_INIT(argv[0]))
		return 1;
	pm_image_global_init();
	test_probe_decode();
	test_pipeline_parse();
	test_catalog_pipeline();
	test_pipeline_run();
	vips_shutdown();
	TEST_DONE();
}
