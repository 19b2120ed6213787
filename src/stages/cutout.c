/* cutout.c — the cutout stage: the product without its background, as a
 * PNG or WebP with alpha, plus facts about the cut.
 *
 * Engines (param "engine"):
 *   "fast"  classical removal for studio shots on a plain background
 *           (image/cutout_fast.c): milliseconds, no model;
 *   "isnet" the ISNet salient-object model through ONNX Runtime
 *           (ml/isnet.c): about a second per image, needs
 *           `pixmill models install isnet`; opened in init;
 *   "auto"  (default) fast when the border looks like a plain background
 *           (its confidence reaches min_confidence), else isnet if it is
 *           installed (opened on first need), else skipped with the
 *           reason.
 * When the confidence of the engine used is under "min_confidence" the
 * stage writes no file and records {"skipped": true, "reason": ...}: a
 * missing cut-out is better than a bad one. Skipping is not a failure.
 *
 * Outputs: "cutout.png" (or .webp) at the decoded size (long edge at most
 * "max_edge"), cropped to the foreground's box plus "padding" px when
 * "crop" is true; and "cutout-<N>.<ext>", a smaller copy with long edge N,
 * when "preview" is N > 0.
 * Facts: ctx->meta "cutout": {"engine", "requested", "skipped", "reason",
 * "confidence", and when not skipped "bbox" [x, y, w, h] in source pixels
 * (EXIF-oriented), "fg_ratio", "size" [w, h] of the cut-out; the fast
 * engine adds "background" "#rrggbb" and "tolerance" (the ΔE used)}.
 *
 * Params (defaults filled in by check, unknown keys refused): "engine"
 * ("auto"), "format" ("png"; or "webp"), "quality" (webp, 90), "tolerance"
 * (ΔE, 6), "feather" (px, 1.5), "shadows" (true), "holes" (false),
 * "min_confidence" (0.5), "max_edge" (2048), "crop" (false), "padding"
 * (0), "preview" (0), "threads" (isnet intra-op threads; 0, the default,
 * is the cores divided among the engine's workers: 2 for --workers 1 on 2
 * cores, 1 for the default of one worker per core), "model" (isnet model
 * file; absent = the installed one).
 *
 * Threads: init/process/fini on one worker thread, with that worker's own
 * state (its own pm_isnet); check/decode_size on any thread.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "image/cutout_fast.h"
#include "ml/isnet.h"
#include "stages/stage.h"

enum engine { ENG_AUTO, ENG_FAST, ENG_ISNET };

typedef struct cut_state {
	enum engine engine;
	pm_encode_opts enc;	  /* format, quality */
	pm_cutout_fast_opts fast; /* tolerance, feather, shadows, holes */
	double min_conf;
	int max_edge, padding, preview, threads;
	bool crop;
	char *model;	     /* isnet model path (malloc'd) or NULL */
	pm_isnet *isnet;     /* this worker's model, NULL until opened */
	bool isnet_failed;   /* an open was tried and failed (auto) */
	char isnet_err[200]; /* why, for the skip reason */
} cut_state;

/* A cut-out decided on: alpha (malloc'd, w * h) and its facts. */
typedef struct cut_result {
	const char *engine;
	uint8_t *alpha;
	double confidence;
	char reason[700];
	bool skipped;
	bool has_bg; /* fast: background colour and tolerance known */
	uint8_t bg[3];
	double tolerance;
} cut_result;

static const char *const known_keys[] = {
    "stage",   "version", "engine",  "format",	       "quality",  "tolerance",
    "feather", "shadows", "holes",   "min_confidence", "max_edge", "crop",
    "padding", "preview", "threads", "model",
};

/* Fills a default number or checks one in [lo, hi]. */
static pm_status num_param(json_t *params, const char *key, double def,
			   double lo, double hi, bool integer, pm_err *err)
{
	json_t *v = json_object_get(params, key);

	if (!v) {
		json_object_set_new(params, key,
				    integer ? json_integer((json_int_t)def)
					    : json_real(def));
		return PM_OK;
	}
	if (integer ? !json_is_integer(v) : !json_is_number(v))
		return pm_fail(err, PM_ERR_PIPELINE,
			       "cutout: \"%s\" must be %s from %g to %g", key,
			       integer ? "an integer" : "a number", lo, hi);
	if (json_number_value(v) < lo || json_number_value(v) > hi)
		return pm_fail(err, PM_ERR_PIPELINE,
			       "cutout: \"%s\" must be from %g to %g", key, lo,
			       hi);
	if (!integer && json_is_integer(v)) /* 6 and 6.0 hash alike */
		json_object_set_new(params, key,
				    json_real(json_number_value(v)));
	return PM_OK;
}

static pm_status bool_param(json_t *params, const char *key, bool def,
			    pm_err *err)
{
	json_t *v = json_object_get(params, key);

	if (!v)
		json_object_set_new(params, key, json_boolean(def));
	else if (!json_is_boolean(v))
		return pm_fail(err, PM_ERR_PIPELINE,
			       "cutout: \"%s\" must be true or false", key);
	return PM_OK;
}

static pm_status cut_check(json_t *params, pm_err *err)
{
	json_t *engine = json_object_get(params, "engine");
	json_t *format = json_object_get(params, "format");
	json_t *model = json_object_get(params, "model");
	const char *key;
	json_t *v;
	pm_status s;

	json_object_foreach(params, key, v)
	{
		size_t i, n = sizeof known_keys / sizeof *known_keys;
		for (i = 0; i < n && strcmp(key, known_keys[i]) != 0; i++)
			;
		if (i == n)
			return pm_fail(err, PM_ERR_PIPELINE,
				       "cutout: unknown parameter \"%s\"", key);
	}
	if (!engine)
		json_object_set_new(params, "engine", json_string("auto"));
	else if (!json_is_string(engine) ||
		 (strcmp(json_string_value(engine), "auto") != 0 &&
		  strcmp(json_string_value(engine), "fast") != 0 &&
		  strcmp(json_string_value(engine), "isnet") != 0))
		return pm_fail(err, PM_ERR_PIPELINE,
			       "cutout: \"engine\" must be \"auto\", \"fast\" "
			       "or \"isnet\"");
	if (!format)
		json_object_set_new(params, "format", json_string("png"));
	else if (!json_is_string(format) ||
		 (pm_format_parse(json_string_value(format)) != PM_FMT_PNG &&
		  pm_format_parse(json_string_value(format)) != PM_FMT_WEBP))
		return pm_fail(err, PM_ERR_PIPELINE,
			       "cutout: \"format\" must be \"png\" or "
			       "\"webp\" (formats with alpha)");
	else
		json_object_set_new(params, "format",
				    json_string(pm_format_name(pm_format_parse(
					json_string_value(format)))));
	if (model && (!json_is_string(model) || !json_string_value(model)[0]))
		return pm_fail(err, PM_ERR_PIPELINE,
			       "cutout: \"model\" must be a file path");
	if ((s = num_param(params, "quality", 90, 1, 100, true, err)) ||
	    (s = num_param(params, "tolerance", 6, 0.5, 100, false, err)) ||
	    (s = num_param(params, "feather", 1.5, 0, 20, false, err)) ||
	    (s = num_param(params, "min_confidence", 0.5, 0, 1, false, err)) ||
	    (s = num_param(params, "max_edge", 2048, 16, 16384, true, err)) ||
	    (s = num_param(params, "padding", 0, 0, 4096, true, err)) ||
	    (s = num_param(params, "preview", 0, 0, 4096, true, err)) ||
	    (s = num_param(params, "threads", 0, 0, 64, true, err)) ||
	    (s = bool_param(params, "shadows", true, err)) ||
	    (s = bool_param(params, "holes", false, err)) ||
	    (s = bool_param(params, "crop", false, err)))
		return s;
	return PM_OK;
}

static int cut_decode_size(const json_t *params)
{
	return (int)json_integer_value(json_object_get(params, "max_edge"));
}

static void cut_fini(void *state)
{
	cut_state *st = state;

	if (!st)
		return;
	pm_isnet_close(st->isnet);
	free(st->model);
	free(st);
}

/* Opens this worker's ISNet once; remembers a failure. */
static pm_status isnet_need(cut_state *st, pm_err *err)
{
	pm_status s;

	if (st->isnet)
		return PM_OK;
	if (st->isnet_failed)
		return pm_fail(err, PM_ERR_NOT_FOUND, "%s", st->isnet_err);
	s = pm_isnet_open(st->model,
			  st->threads > 0 ? st->threads : pm_cores_per_worker(),
			  &st->isnet, err);
	if (s) {
		st->isnet_failed = true;
		snprintf(st->isnet_err, sizeof st->isnet_err, "%.199s",
			 err->msg);
	}
	return s;
}

static pm_status cut_init(const json_t *params, void **state, pm_err *err)
{
	cut_state *st = calloc(1, sizeof *st);
	const char *engine =
	    json_string_value(json_object_get(params, "engine"));
	json_t *model = json_object_get(params, "model");
	pm_status s;

	if (!st)
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	st->engine = strcmp(engine, "fast") == 0    ? ENG_FAST
		     : strcmp(engine, "isnet") == 0 ? ENG_ISNET
						    : ENG_AUTO;
	st->enc.format = pm_format_parse(
	    json_string_value(json_object_get(params, "format")));
	st->enc.quality =
	    (int)json_integer_value(json_object_get(params, "quality"));
	st->enc.effort = -1;
	pm_cutout_fast_defaults(&st->fast);
	st->fast.tolerance =
	    json_number_value(json_object_get(params, "tolerance"));
	st->fast.feather =
	    json_number_value(json_object_get(params, "feather"));
	st->fast.shadows = json_is_true(json_object_get(params, "shadows"));
	st->fast.holes = json_is_true(json_object_get(params, "holes"));
	st->min_conf =
	    json_number_value(json_object_get(params, "min_confidence"));
	st->max_edge =
	    (int)json_integer_value(json_object_get(params, "max_edge"));
	st->padding =
	    (int)json_integer_value(json_object_get(params, "padding"));
	st->preview =
	    (int)json_integer_value(json_object_get(params, "preview"));
	st->threads =
	    (int)json_integer_value(json_object_get(params, "threads"));
	st->crop = json_is_true(json_object_get(params, "crop"));
	if (json_is_string(model) &&
	    !(st->model = strdup(json_string_value(model)))) {
		cut_fini(st);
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	}
	/* Asked for by name: a missing model fails the run up front. */
	if (st->engine == ENG_ISNET && (s = isnet_need(st, err))) {
		cut_fini(st);
		return s;
	}
	*state = st;
	return PM_OK;
}

static inline double clamp01(double x)
{
	return x < 0 ? 0 : x > 1 ? 1 : x;
}

/* The fast engine on img; fills res (alpha handed over unless skipped). */
static pm_status run_fast(cut_state *st, VipsImage *img, cut_result *res,
			  pm_err *err)
{
	pm_cutout_fast_result fr;
	pm_status s = pm_cutout_fast(img, &st->fast, &fr, err);

	if (s)
		return s;
	res->engine = "fast";
	res->confidence = fr.confidence;
	res->has_bg = true;
	memcpy(res->bg, fr.bg_rgb, 3);
	res->tolerance = fr.tolerance;
	if (!fr.alpha || fr.confidence < st->min_conf) {
		res->skipped = true;
		snprintf(res->reason, sizeof res->reason,
			 "fast: confidence %.2f under %.2f: %s", fr.confidence,
			 st->min_conf, fr.reason);
	} else {
		snprintf(res->reason, sizeof res->reason, "%s", fr.reason);
		res->alpha = fr.alpha;
		fr.alpha = NULL;
	}
	pm_cutout_fast_result_free(&fr);
	return PM_OK;
}

/* Multiplies alpha by img's own alpha band, if it has one. */
static void keep_source_alpha(VipsImage *img, uint8_t *alpha)
{
	if (img->Bands != 4 || img->BandFmt != VIPS_FORMAT_UCHAR)
		return;
	for (int y = 0; y < img->Ysize; y++) {
		const uint8_t *p = VIPS_IMAGE_ADDR(img, 0, y);
		uint8_t *a = alpha + (size_t)y * img->Xsize;
		for (int x = 0; x < img->Xsize; x++)
			a[x] = (uint8_t)((a[x] * p[4 * x + 3] + 127) / 255);
	}
}

/* The isnet engine on img; confidence from how decided the mask is (a
 * good mask is nearly all 0 or 255) and whether it is a plausible object
 * (not empty, not everything, not all over the border). */
static pm_status run_isnet(cut_state *st, VipsImage *img, cut_result *res,
			   pm_err *err)
{
	VipsImage *mask = NULL;
	int w = img->Xsize, h = img->Ysize, bbox[4];
	size_t n = (size_t)w * h, decided = 0;
	double ratio, bfg, cc[3];
	const char *why[3];
	char buf[3][160];
	int weakest = 0;
	pm_status s;

	if ((s = isnet_need(st, err)) ||
	    (s = pm_isnet_mask(st->isnet, img, &mask, err)))
		return s;
	if (mask->Xsize != w || mask->Ysize != h || mask->Bands != 1 ||
	    mask->BandFmt != VIPS_FORMAT_UCHAR) {
		g_object_unref(mask);
		return pm_fail(err, PM_ERR_INTERNAL,
			       "isnet: mask is not %dx%d 8-bit", w, h);
	}
	res->alpha = malloc(n);
	if (!res->alpha) {
		g_object_unref(mask);
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	}
	memcpy(res->alpha, VIPS_IMAGE_ADDR(mask, 0, 0), n);
	g_object_unref(mask);
	/* ISNet ignores alpha; the fast engine applies it itself */
	keep_source_alpha(img, res->alpha);
	for (size_t i = 0; i < n; i++)
		decided += res->alpha[i] <= 25 || res->alpha[i] >= 230;
	pm_cutout_alpha_stats(res->alpha, w, h, bbox, &ratio, &bfg);
	cc[0] = clamp01(((double)decided / n - 0.8) / 0.15);
	snprintf(buf[0], sizeof buf[0],
		 "%.0f%% of the mask is clearly in or out",
		 100.0 * decided / n);
	cc[1] = ratio < 0.02 ? clamp01((ratio - 0.002) / 0.018)
			     : clamp01((0.97 - ratio) / 0.1);
	snprintf(buf[1], sizeof buf[1], "%s (foreground %.1f%%)",
		 ratio < 0.5 ? "no salient object found"
			     : "the object fills the whole image",
		 100 * ratio);
	cc[2] = clamp01((0.9 - bfg) / 0.4);
	snprintf(buf[2], sizeof buf[2],
		 "the foreground covers %.0f%% of the image border", 100 * bfg);
	for (int k = 0; k < 3; k++)
		why[k] = buf[k];
	for (int k = 1; k < 3; k++)
		if (cc[k] < cc[weakest])
			weakest = k;
	res->engine = "isnet";
	res->confidence = cc[weakest];
	if (res->confidence < st->min_conf) {
		res->skipped = true;
		snprintf(res->reason, sizeof res->reason,
			 "isnet: confidence %.2f under %.2f: %s",
			 res->confidence, st->min_conf, why[weakest]);
		free(res->alpha);
		res->alpha = NULL;
	} else {
		snprintf(res->reason, sizeof res->reason, "%s",
			 res->confidence >= 1 ? "clear salient object"
					      : why[weakest]);
	}
	return PM_OK;
}

/* Encodes im and adds it to ctx as name. */
static pm_status add_encoded(cut_state *st, pm_item_ctx *ctx, VipsImage *im,
			     const char *name, pm_err *err)
{
	pm_encode_opts o = st->enc;
	void *buf = NULL;
	size_t len = 0;
	pm_status s;

	o.keep_meta = ctx->keep_meta;
	s = pm_image_encode(im, &o, &buf, &len, err);
	if (!s)
		s = pm_ctx_add_output(ctx, name, pm_format_name(o.format),
				      im->Xsize, im->Ysize, buf, len, err);
	g_free(buf);
	return s;
}

/* Writes the cut-out (and its preview) of img with alpha. */
static pm_status write_outputs(cut_state *st, pm_item_ctx *ctx, VipsImage *img,
			       const uint8_t *alpha, const int bbox[4],
			       int size[2], pm_err *err)
{
	VipsImage *a = NULL, *rgb = NULL, *t = NULL, *out = NULL, *pv = NULL;
	const char *ext = pm_format_name(st->enc.format);
	char name[32];
	pm_status s = PM_OK;

	/* alpha is borrowed: the encoders finish before it is freed */
	a = vips_image_new_from_memory(alpha, (size_t)img->Xsize * img->Ysize,
				       img->Xsize, img->Ysize, 1,
				       VIPS_FORMAT_UCHAR);
	if (!a || vips_extract_band(img, &rgb, 0, "n", 3, NULL) ||
	    vips_bandjoin2(rgb, a, &t, NULL) ||
	    vips_copy(t, &out, "interpretation", VIPS_INTERPRETATION_sRGB,
		      NULL)) {
		s = pm_fail(err, PM_ERR_ENCODE, "cutout: %s",
			    vips_error_buffer());
		vips_error_clear();
		goto out;
	}
	if (st->crop && bbox[2] > 0 && bbox[3] > 0) {
		int x0 = bbox[0] - st->padding, y0 = bbox[1] - st->padding;
		int x1 = bbox[0] + bbox[2] + st->padding;
		int y1 = bbox[1] + bbox[3] + st->padding;
		x0 = x0 < 0 ? 0 : x0;
		y0 = y0 < 0 ? 0 : y0;
		x1 = x1 > img->Xsize ? img->Xsize : x1;
		y1 = y1 > img->Ysize ? img->Ysize : y1;
		g_object_unref(t);
		t = out;
		out = NULL;
		if (vips_crop(t, &out, x0, y0, x1 - x0, y1 - y0, NULL)) {
			s = pm_fail(err, PM_ERR_ENCODE, "cutout: crop: %s",
				    vips_error_buffer());
			vips_error_clear();
			goto out;
		}
	}
	size[0] = out->Xsize;
	size[1] = out->Ysize;
	snprintf(name, sizeof name, "cutout.%s", ext);
	if ((s = add_encoded(st, ctx, out, name, err)))
		goto out;
	if (st->preview > 0) {
		if ((s = pm_image_fit(out, st->preview, &pv, err)))
			goto out;
		snprintf(name, sizeof name, "cutout-%d.%s", st->preview, ext);
		s = add_encoded(st, ctx, pv, name, err);
	}
out:
	if (pv)
		g_object_unref(pv);
	if (out)
		g_object_unref(out);
	if (t)
		g_object_unref(t);
	if (rgb)
		g_object_unref(rgb);
	if (a)
		g_object_unref(a);
	return s;
}

/* bbox of the w x h cut-out in the source's (EXIF-oriented) pixels. */
static void to_source(const pm_item_ctx *ctx, int w, int h, const int b[4],
		      int out[4])
{
	double sw = w, sh = h, fx, fy;
	int x0, y0, x1, y1;

	if (ctx->header && ctx->header->width > 0 && ctx->header->height > 0) {
		bool swap = ctx->header->orientation >= 5;
		sw = swap ? ctx->header->height : ctx->header->width;
		sh = swap ? ctx->header->width : ctx->header->height;
	}
	fx = sw / w;
	fy = sh / h;
	x0 = (int)floor(b[0] * fx);
	y0 = (int)floor(b[1] * fy);
	x1 = (int)ceil((b[0] + b[2]) * fx);
	y1 = (int)ceil((b[1] + b[3]) * fy);
	out[0] = x0;
	out[1] = y0;
	out[2] = (x1 > (int)sw ? (int)sw : x1) - x0;
	out[3] = (y1 > (int)sh ? (int)sh : y1) - y0;
}

/* A JSON string of s; bytes that are not valid UTF-8 (a message cut in the
 * middle of a character) become '?'. */
static json_t *jstr(const char *s)
{
	char buf[1024];
	json_t *j = json_string(s);
	size_t i;

	if (j)
		return j;
	snprintf(buf, sizeof buf, "%s", s);
	for (i = 0; buf[i]; i++)
		if ((unsigned char)buf[i] >= 0x80)
			buf[i] = '?';
	return json_string(buf);
}

static double round3(double x)
{
	return round(x * 1000) / 1000;
}

static pm_status cut_process(void *state, pm_item_ctx *ctx, pm_err *err)
{
	static const char *const names[] = {"auto", "fast", "isnet"};
	cut_state *st = state;
	cut_result res = {0};
	VipsImage *img = NULL;
	json_t *facts;
	pm_status s;

	if ((s = pm_image_fit(ctx->image, st->max_edge, &img, err)))
		return s;
	if (st->engine != ENG_ISNET) {
		if ((s = run_fast(st, img, &res, err)))
			goto out;
	}
	if (st->engine == ENG_ISNET ||
	    (st->engine == ENG_AUTO && res.skipped)) {
		char fast_reason[sizeof res.reason];
		pm_err e2 = {{0}};
		snprintf(fast_reason, sizeof fast_reason, "%s", res.reason);
		if (st->engine == ENG_AUTO && isnet_need(st, &e2)) {
			/* not installed (or unusable): stay skipped */
			snprintf(res.reason, sizeof res.reason,
				 "%.300s; isnet unavailable: %.300s",
				 fast_reason, e2.msg);
		} else {
			memset(&res, 0, sizeof res);
			if ((s = run_isnet(st, img, &res, err)))
				goto out;
			if (res.skipped && st->engine == ENG_AUTO) {
				char r2[sizeof res.reason];
				snprintf(r2, sizeof r2, "%s", res.reason);
				snprintf(res.reason, sizeof res.reason,
					 "%.300s; %.300s", fast_reason, r2);
			}
		}
	}

	facts = json_object();
	json_object_set_new(facts, "engine", json_string(res.engine));
	json_object_set_new(facts, "requested", json_string(names[st->engine]));
	json_object_set_new(facts, "skipped", json_boolean(res.skipped));
	json_object_set_new(facts, "reason", jstr(res.reason));
	json_object_set_new(facts, "confidence",
			    json_real(round3(res.confidence)));
	if (res.has_bg) {
		char hex[8];
		snprintf(hex, sizeof hex, "#%02x%02x%02x", res.bg[0], res.bg[1],
			 res.bg[2]);
		json_object_set_new(facts, "background", json_string(hex));
		json_object_set_new(facts, "tolerance",
				    json_real(round3(res.tolerance)));
	}
	if (!res.skipped) {
		int bbox[4], src[4], size[2] = {0, 0};
		double ratio;
		pm_cutout_alpha_stats(res.alpha, img->Xsize, img->Ysize, bbox,
				      &ratio, NULL);
		s = write_outputs(st, ctx, img, res.alpha, bbox, size, err);
		if (s) {
			json_decref(facts);
			goto out;
		}
		to_source(ctx, img->Xsize, img->Ysize, bbox, src);
		json_object_set_new(
		    facts, "bbox",
		    json_pack("[iiii]", src[0], src[1], src[2], src[3]));
		json_object_set_new(facts, "fg_ratio",
				    json_real(round3(ratio)));
		json_object_set_new(facts, "size",
				    json_pack("[ii]", size[0], size[1]));
	}
	if (!ctx->meta)
		ctx->meta = json_object();
	json_object_set_new(ctx->meta, "cutout", facts);
out:
	free(res.alpha);
	g_object_unref(img);
	return s;
}

const pm_stage_vt pm_stage_cutout = {
    .name = "cutout",
    .version = 2, /* 2: isnet computes in float32 (masks differ by 1/255
		     in a few pixels) */
    .check = cut_check,
    .decode_size = cut_decode_size,
    .init = cut_init,
    .process = cut_process,
    .fini = cut_fini,
};
