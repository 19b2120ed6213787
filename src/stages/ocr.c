/* ocr.c — the ocr stage: text in the image, through Tesseract's C API.
 *
 * Each worker thread owns one TessBaseAPI, created and loaded in init (the
 * language model load is the expensive part, ~50 ms for eng) and reused
 * for every item; fini ends it. process preprocesses ctx->image with
 * libvips and plain C (grey, upscale of small images, deskew, binarise;
 * each measured, see docs/DESIGN-NOTES.md "OCR preprocessing"), hands the
 * 8-bit buffer to Tesseract and puts the result into ctx->meta (created
 * if NULL; the context owns it and everything in it) under "ocr":
 *   {"text", "confidence" (mean word confidence 0-100), "lang", "psm",
 *    "angle" (deskew applied, degrees), "scale" (upscale applied),
 *    "line_px" (median text line height found, px; 0 unknown), "words":
 *    [[word, x, y, w, h, conf], ...] (at most 2000)}
 * Boxes are in the decoded image's pixels (ctx->image), mapped back
 * through the upscale and the deskew rotation.
 *
 * Params (defaults filled in by check): "lang" ("eng"; '+'-joined codes,
 * each must have <code>.traineddata installed), "psm" (Tesseract page
 * segmentation mode, 3 = automatic; 0 and 2 do no recognition and are
 * refused; the "recipes" pipeline uses 4, one column), "min_conf" (0-100:
 * words under it are dropped from text and words), "preprocess" (true;
 * false hands Tesseract the grey image as is), "binarize" ("adaptive" =
 * Sauvola, "otsu", or "none" = Tesseract's own Otsu), "deskew" (true),
 * "min_line_px" (text lines shorter than this, in px, are enlarged to
 * about 36 px, at most 3x and 12 MP; 0 = never), "decode_edge" (long
 * edge the engine decodes to, default 3000, at most 4000 so that the
 * binarisation's 32-bit sums cannot overflow), "timeout_ms" (Tesseract's
 * deadline per image, default 60000).
 *
 * OpenMP: Debian's libtesseract is built with OpenMP, and its parallel
 * LSTM loops make one worker 5-7x slower on a shared machine (measured:
 * 1.8 s vs 0.27 s per card). OMP_THREAD_LIMIT is read by libgomp once,
 * when it is loaded at program start, so setting it from here is too late
 * (measured: no effect). Instead each worker calls libgomp's
 * omp_set_max_active_levels(0) for itself (the setting is per thread in
 * GCC 11+'s libgomp) before init and before each recognition: with no
 * active parallel level allowed, every parallel region runs on the
 * calling thread. The function is found with dlsym, once (pthread_once),
 * so a Tesseract built without OpenMP needs nothing. The same once also
 * sets OMP_THREAD_LIMIT=1 (not overwriting a user's value) for an OpenMP
 * runtime loaded later; that setenv is process-wide and happens before
 * any worker's Tesseract init.
 *
 * Threads: init/process/fini on one worker thread with that worker's own
 * engine; check/decode_size on any thread (they read params and the
 * tessdata folder only).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <tesseract/capi.h>

#include "core/util.h"
#include "stages/stage.h"

#ifndef PM_TESSDATA_DEFAULT
#define PM_TESSDATA_DEFAULT "/usr/share/tesseract-ocr/5/tessdata"
#endif

#define OCR_MAX_WORDS	2000
#define OCR_MAX_TEXT	(256 * 1024) /* bytes of text kept */
#define OCR_MAX_SCALE	3.0
#define OCR_LINE_TARGET 36.0 /* px: line height the upscale aims for */
#define OCR_MAX_PIXELS	(12 * 1000 * 1000) /* after upscaling */
#define OCR_DESKEW_MAX	10.0		   /* degrees searched either way */
#define OCR_DESKEW_EDGE 800		   /* long edge of the estimate copy */

enum { BIN_NONE, BIN_OTSU, BIN_ADAPTIVE };

typedef struct ocr_state {
	TessBaseAPI *api;
	char lang[64];
	int psm;
	int min_conf;
	bool preprocess, deskew;
	int binarize;
	int min_line_px;
	int timeout_ms;
} ocr_state;

/* ---- once per process ---- */

static pthread_once_t omp_once = PTHREAD_ONCE_INIT;
static void (*omp_set_levels)(int); /* written once, under omp_once */

static void ocr_global_once(void)
{
	setenv("OMP_THREAD_LIMIT", "1", 0);
	*(void **)&omp_set_levels =
	    dlsym(RTLD_DEFAULT, "omp_set_max_active_levels");
}

/* libgomp keeps max-active-levels per thread (in the thread's task ICVs
 * since GCC 11), so each worker sets it for itself; it is a store, cheap
 * enough to repeat before every recognition. */
static void omp_serial_here(void)
{
	pthread_once(&omp_once, ocr_global_once);
	if (omp_set_levels)
		omp_set_levels(0);
}

/* ---- params ---- */

static const char *tessdata_dir(char *buf, size_t n)
{
	const char *p = getenv("TESSDATA_PREFIX");
	struct stat sb;

	if (p && *p) {
		/* Tesseract accepts the folder itself or its parent. */
		snprintf(buf, n, "%s/tessdata", p);
		if (stat(buf, &sb) == 0 && S_ISDIR(sb.st_mode))
			return buf;
		snprintf(buf, n, "%s", p);
		return buf;
	}
	snprintf(buf, n, "%s", PM_TESSDATA_DEFAULT);
	return buf;
}

/* Names of the installed languages, comma-separated, into buf. */
static void installed_langs(const char *dir, char *buf, size_t n)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t used = 0;

	buf[0] = '\0';
	if (!d)
		return;
	while ((de = readdir(d)) != NULL) {
		size_t l = strlen(de->d_name);
		const char *suf = ".traineddata";
		size_t sl = strlen(suf);
		if (l <= sl || strcmp(de->d_name + l - sl, suf) != 0 ||
		    strcmp(de->d_name, "osd.traineddata") == 0)
			continue;
		int w = snprintf(buf + used, n - used, "%s%.*s",
				 used ? ", " : "", (int)(l - sl), de->d_name);
		if (w < 0 || (size_t)w >= n - used)
			break;
		used += (size_t)w;
	}
	closedir(d);
}

/* lang: one or more codes ([A-Za-z0-9_-]) joined by '+', each installed. */
static pm_status check_lang(const char *lang, pm_err *err)
{
	char dir[1024], path[1200], have[512], code[64];
	const char *p = lang;
	struct stat sb;

	if (!*lang || strlen(lang) >= 64)
		return pm_fail(err, PM_ERR_PIPELINE,
			       "ocr: \"lang\" must be 1 to 63 characters");
	tessdata_dir(dir, sizeof dir);
	while (*p) {
		size_t n = strcspn(p, "+");
		if (n == 0 || n >= sizeof code)
			return pm_fail(err, PM_ERR_PIPELINE,
				       "ocr: bad \"lang\" \"%s\" (codes joined "
				       "by '+', e.g. eng+deu)",
				       lang);
		memcpy(code, p, n);
		code[n] = '\0';
		for (size_t i = 0; i < n; i++)
			if (!isalnum((unsigned char)code[i]) &&
			    code[i] != '_' && code[i] != '-')
				return pm_fail(err, PM_ERR_PIPELINE,
					       "ocr: bad language code \"%s\"",
					       code);
		snprintf(path, sizeof path, "%s/%s.traineddata", dir, code);
		if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) {
			installed_langs(dir, have, sizeof have);
			return pm_fail(err, PM_ERR_PIPELINE,
				       "ocr: language \"%s\" is not installed "
				       "(no %s; installed: %s; Debian package "
				       "tesseract-ocr-%s)",
				       code, path, have[0] ? have : "none",
				       code);
		}
		p += n;
		if (*p == '+')
			p++;
	}
	return PM_OK;
}

static pm_status int_param(json_t *params, const char *key, int def, int lo,
			   int hi, pm_err *err)
{
	json_t *v = json_object_get(params, key);

	if (!v) {
		json_object_set_new(params, key, json_integer(def));
		return PM_OK;
	}
	if (!json_is_integer(v) || json_integer_value(v) < lo ||
	    json_integer_value(v) > hi)
		return pm_fail(err, PM_ERR_PIPELINE,
			       "ocr: \"%s\" must be an integer from %d to %d",
			       key, lo, hi);
	return PM_OK;
}

static pm_status bool_param(json_t *params, const char *key, bool def,
			    pm_err *err)
{
	json_t *v = json_object_get(params, key);

	if (!v) {
		json_object_set_new(params, key, json_boolean(def));
		return PM_OK;
	}
	if (!json_is_boolean(v))
		return pm_fail(err, PM_ERR_PIPELINE,
			       "ocr: \"%s\" must be true or false", key);
	return PM_OK;
}

static int bin_parse(const char *s)
{
	if (!s)
		return -1;
	if (strcmp(s, "none") == 0)
		return BIN_NONE;
	if (strcmp(s, "otsu") == 0)
		return BIN_OTSU;
	if (strcmp(s, "adaptive") == 0)
		return BIN_ADAPTIVE;
	return -1;
}

static pm_status ocr_check(json_t *params, pm_err *err)
{
	json_t *lang = json_object_get(params, "lang");
	json_t *bin = json_object_get(params, "binarize");
	pm_status s;

	if (!lang) {
		lang = json_string("eng");
		json_object_set_new(params, "lang", lang);
	}
	if (!json_is_string(lang))
		return pm_fail(err, PM_ERR_PIPELINE,
			       "ocr: \"lang\" must be a string such as "
			       "\"eng\" or \"eng+deu\"");
	s = check_lang(json_string_value(lang), err);
	if (s)
		return s;
	s = int_param(params, "psm", 3, 1, 13, err);
	if (s)
		return s;
	if (json_integer_value(json_object_get(params, "psm")) == 2)
		return pm_fail(err, PM_ERR_PIPELINE,
			       "ocr: \"psm\" 2 (layout only) does no "
			       "recognition; use 1 or 3 to 13");
	if ((s = int_param(params, "min_conf", 0, 0, 100, err)) ||
	    (s = int_param(params, "min_line_px", 16, 0, 200, err)) ||
	    (s = int_param(params, "decode_edge", 3000, 64, 4000, err)) ||
	    (s = int_param(params, "timeout_ms", 60000, 100, 3600000, err)) ||
	    (s = bool_param(params, "preprocess", true, err)) ||
	    (s = bool_param(params, "deskew", true, err)))
		return s;
	if (!bin) {
		bin = json_string("adaptive");
		json_object_set_new(params, "binarize", bin);
	}
	if (bin_parse(json_string_value(bin)) < 0)
		return pm_fail(err, PM_ERR_PIPELINE,
			       "ocr: \"binarize\" must be \"adaptive\", "
			       "\"otsu\" or \"none\"");
	return PM_OK;
}

static int ocr_decode_size(const json_t *params)
{
	return (int)json_integer_value(json_object_get(params, "decode_edge"));
}

/* ---- per worker ---- */

static void ocr_fini(void *state)
{
	ocr_state *st = state;

	if (!st)
		return;
	if (st->api) {
		TessBaseAPIEnd(st->api);
		TessBaseAPIDelete(st->api);
	}
	free(st);
}

static pm_status ocr_init(const json_t *params, void **state, pm_err *err)
{
	ocr_state *st = calloc(1, sizeof *st);
	char dir[1024];

	*state = NULL;
	if (!st)
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	omp_serial_here();
	snprintf(st->lang, sizeof st->lang, "%s",
		 json_string_value(json_object_get(params, "lang")));
	st->psm = (int)json_integer_value(json_object_get(params, "psm"));
	st->min_conf =
	    (int)json_integer_value(json_object_get(params, "min_conf"));
	st->preprocess = json_is_true(json_object_get(params, "preprocess"));
	st->deskew = json_is_true(json_object_get(params, "deskew"));
	st->binarize =
	    bin_parse(json_string_value(json_object_get(params, "binarize")));
	st->min_line_px =
	    (int)json_integer_value(json_object_get(params, "min_line_px"));
	st->timeout_ms =
	    (int)json_integer_value(json_object_get(params, "timeout_ms"));
	st->api = TessBaseAPICreate();
	if (!st->api) {
		free(st);
		return pm_fail(err, PM_ERR_NOMEM, "ocr: no Tesseract engine");
	}
	if (TessBaseAPIInit3(st->api, NULL, st->lang) != 0) {
		ocr_fini(st);
		return pm_fail(
		    err, PM_ERR_PIPELINE,
		    "ocr: Tesseract could not load language "
		    "\"%s\" from %s",
		    json_string_value(json_object_get(params, "lang")),
		    tessdata_dir(dir, sizeof dir));
	}
	/* Tesseract's diagnostics ("Empty page!!", resolution guesses) go
	 * nowhere instead of interleaving with our stderr. */
	TessBaseAPISetVariable(st->api, "debug_file", "/dev/null");
	TessBaseAPISetPageSegMode(st->api, (TessPageSegMode)st->psm);
	/* Our binarisation makes ink dark on light, so Tesseract's second
	 * pass over low-confidence lines with the image inverted can only
	 * cost time (measured: 3% of recognition on the cards). */
	if (st->preprocess && st->binarize != BIN_NONE)
		TessBaseAPISetVariable(st->api, "tessedit_do_invert", "0");
	*state = st;
	return PM_OK;
}

/* ---- preprocessing ---- */

static pm_status vfail(pm_err *err, const char *what)
{
	char w[128];
	snprintf(w, sizeof w, "ocr: %s", what);
	return pm_vips_fail(err, PM_ERR_DECODE, w);
}

/* New reference to a 1-band uchar grey version of in (alpha flattened
 * against white). */
static int to_grey(VipsImage *in, VipsImage **out)
{
	VipsImage *img = in, *t;

	g_object_ref(img);
	if (vips_image_hasalpha(img)) {
		VipsArrayDouble *bg;
		double white[3] = {255, 255, 255};
		bg = vips_array_double_new(white, img->Bands >= 3 ? 3 : 1);
		int r = vips_flatten(img, &t, "background", bg, NULL);
		vips_area_unref(VIPS_AREA(bg));
		if (r)
			goto fail;
		pm_vips_swap(&img, t);
	}
	if (img->Bands >= 3) {
		if (vips_colourspace(img, &t, VIPS_INTERPRETATION_B_W, NULL))
			goto fail;
		pm_vips_swap(&img, t);
	}
	if (img->Bands > 1) {
		if (vips_extract_band(img, &t, 0, NULL))
			goto fail;
		pm_vips_swap(&img, t);
	}
	if (img->BandFmt != VIPS_FORMAT_UCHAR) {
		if (vips_cast_uchar(img, &t, NULL))
			goto fail;
		pm_vips_swap(&img, t);
	}
	*out = img;
	return 0;
fail:
	g_object_unref(img);
	return -1;
}

/* Otsu's threshold of a 256-bin histogram. */
static int otsu(const uint64_t hist[256])
{
	uint64_t total = 0;
	double sum = 0, sumb = 0, wb = 0, best = -1;
	int t = 128;

	for (int i = 0; i < 256; i++) {
		total += hist[i];
		sum += (double)i * hist[i];
	}
	if (total == 0)
		return t;
	for (int i = 0; i < 256; i++) {
		wb += hist[i];
		if (wb == 0)
			continue;
		double wf = (double)total - wb;
		if (wf == 0)
			break;
		sumb += (double)i * hist[i];
		double mb = sumb / wb, mf = (sum - sumb) / wf;
		double between = wb * wf * (mb - mf) * (mb - mf);
		if (between > best) {
			best = between;
			t = i;
		}
	}
	return t;
}

/* Skew of the text lines, degrees (positive: lines fall to the right, i.e.
 * the image was rotated clockwise), by the projection profile: the angle
 * at which the row sums of dark pixels, taken along lines of that slope,
 * are most peaked (sum of squared differences of adjacent bins). A coarse
 * pass at 0.5 degree steps over +-10, then 0.1 degree steps around the
 * best. Works on a copy with a long edge of 800 px. 0 when there is too
 * little ink to tell. Also gives the median height of the text lines in
 * grey's pixels (*line_h; 0 if unknown), which decides the upscale. */
static int estimate_skew(VipsImage *grey, double *angle, double *line_h)
{
	int w = vips_image_get_width(grey), h = vips_image_get_height(grey);
	int lw = w > h ? w : h;
	double sc = lw > OCR_DESKEW_EDGE ? (double)OCR_DESKEW_EDGE / lw : 1.0;
	VipsImage *small = NULL;
	uint8_t *buf = NULL;
	size_t len;
	int *xs = NULL, *ys = NULL;
	double *bins = NULL;
	int ret = -1;

	*angle = 0;
	*line_h = 0;
	if (sc < 1.0) {
		if (vips_resize(grey, &small, sc, NULL))
			return -1;
	} else {
		small = grey;
		g_object_ref(small);
	}
	buf = vips_image_write_to_memory(small, &len);
	w = vips_image_get_width(small);
	h = vips_image_get_height(small);
	g_object_unref(small);
	if (!buf)
		return -1;
	if (w < 16 || h < 16) {
		ret = 0;
		goto out;
	}
	uint64_t hist[256] = {0};
	for (size_t i = 0; i < (size_t)w * h; i++)
		hist[buf[i]]++;
	int thr = otsu(hist);
	/* Ink is the minority side of the threshold. */
	size_t dark = 0;
	for (int i = 0; i <= thr; i++)
		dark += hist[i];
	bool ink_dark = dark * 2 <= (size_t)w * h;
	size_t n_ink = ink_dark ? dark : (size_t)w * h - dark;
	if (n_ink < 50) {
		ret = 0;
		goto out;
	}
	/* Subsample to at most 60k ink pixels. */
	size_t stride = n_ink / 60000 + 1, k = 0, seen = 0;
	xs = malloc((n_ink / stride + 1) * sizeof *xs);
	ys = malloc((n_ink / stride + 1) * sizeof *ys);
	int nb = h + w + 2;
	double span = tan(OCR_DESKEW_MAX * M_PI / 180) * w;
	nb = h + (int)ceil(2 * span) + 4;
	bins = malloc((size_t)nb * sizeof *bins);
	if (!xs || !ys || !bins)
		goto out;
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++) {
			uint8_t v = buf[(size_t)y * w + x];
			bool ink = ink_dark ? v <= thr : v > thr;
			if (!ink)
				continue;
			if (seen++ % stride == 0 && k < n_ink / stride + 1) {
				xs[k] = x;
				ys[k] = y;
				k++;
			}
		}
	double best_a = 0, best_s = -1;
	for (int pass = 0; pass < 2; pass++) {
		double lo = pass ? best_a - 0.5 : -OCR_DESKEW_MAX;
		double hi = pass ? best_a + 0.5 : OCR_DESKEW_MAX;
		double step = pass ? 0.1 : 0.5;
		for (double a = lo; a <= hi + 1e-9; a += step) {
			double t = tan(a * M_PI / 180);
			memset(bins, 0, (size_t)nb * sizeof *bins);
			for (size_t i = 0; i < k; i++) {
				int b =
				    (int)lround(ys[i] - xs[i] * t + span) + 2;
				if (b >= 0 && b < nb)
					bins[b] += 1;
			}
			double s = 0;
			for (int b = 1; b < nb; b++)
				s += (bins[b] - bins[b - 1]) *
				     (bins[b] - bins[b - 1]);
			/* ties (flat profiles): prefer the smaller angle */
			if (s > best_s * (1 + 1e-9) ||
			    (s >= best_s && fabs(a) < fabs(best_a))) {
				best_s = s;
				best_a = a;
			}
		}
	}
	*angle = best_a;
	/* Line height: runs of the profile at the best angle above a fifth
	 * of the mean of the non-empty bins; the median run, in the input's
	 * pixels. */
	{
		double t = tan(best_a * M_PI / 180), sum = 0;
		int nz = 0, runs[512], nr = 0, run = 0;
		memset(bins, 0, (size_t)nb * sizeof *bins);
		for (size_t i = 0; i < k; i++) {
			int b = (int)lround(ys[i] - xs[i] * t + span) + 2;
			if (b >= 0 && b < nb)
				bins[b] += 1;
		}
		for (int b = 0; b < nb; b++)
			if (bins[b] > 0) {
				sum += bins[b];
				nz++;
			}
		double thr_b = nz ? 0.2 * sum / nz : 1;
		for (int b = 0; b <= nb && nr < 512; b++) {
			if (b < nb && bins[b] >= thr_b) {
				run++;
				continue;
			}
			if (run >= 2)
				runs[nr++] = run;
			run = 0;
		}
		if (nr > 0) {
			/* median by partial insertion sort (nr <= 512) */
			for (int i = 1; i < nr; i++)
				for (int j = i; j > 0 && runs[j] < runs[j - 1];
				     j--) {
					int tmp = runs[j];
					runs[j] = runs[j - 1];
					runs[j - 1] = tmp;
				}
			*line_h = runs[nr / 2] / sc;
		}
	}
	ret = 0;
out:
	g_free(buf);
	free(xs);
	free(ys);
	free(bins);
	return ret;
}

/* Rotates grey by -angle about its centre onto a same-size white canvas. */
static int rotate_same(VipsImage *in, double angle, VipsImage **out)
{
	double r = -angle * M_PI / 180, c = cos(r), s = sin(r);
	double cx = vips_image_get_width(in) / 2.0;
	double cy = vips_image_get_height(in) / 2.0;
	VipsArrayInt *area;
	VipsArrayDouble *bg;
	int box[4] = {0, 0, vips_image_get_width(in),
		      vips_image_get_height(in)};
	double white = 255;
	int ret;

	area = vips_array_int_new(box, 4);
	bg = vips_array_double_new(&white, 1);
	/* out = R (p - centre) + centre */
	ret = vips_affine(in, out, c, -s, s, c, "oarea", area, "odx",
			  cx - c * cx + s * cy, "ody", cy - s * cx - c * cy,
			  "background", bg, "interpolate",
			  vips_interpolate_bilinear_static(), NULL);
	vips_area_unref(VIPS_AREA(area));
	vips_area_unref(VIPS_AREA(bg));
	return ret;
}

/* In-place binarisation of a w*h grey buffer to 0 (ink) / 255. Light text
 * on a dark ground is inverted first (the majority of pixels decides).
 * Otsu: one global threshold. Adaptive: Sauvola's rule, a pixel is ink
 * when it is under m * (1 + k * (s / 128 - 1)) with m and s the mean and
 * standard deviation of a window about 1/40 of the long edge across (at
 * least 31 px), from integral images, k = 0.34: it follows a photo's
 * brightness across the card and keeps flat texture (low s) as ground. */
static int binarize(uint8_t *px, int w, int h, int mode)
{
	size_t n = (size_t)w * h;
	uint64_t hist[256] = {0};

	for (size_t i = 0; i < n; i++)
		hist[px[i]]++;
	int thr = otsu(hist);
	size_t dark = 0;
	for (int i = 0; i <= thr; i++)
		dark += hist[i];
	if (dark * 2 > n) { /* light text on dark: make ink dark */
		for (size_t i = 0; i < n; i++)
			px[i] = (uint8_t)(255 - px[i]);
		thr = 254 - thr;
	}
	if (mode == BIN_OTSU) {
		for (size_t i = 0; i < n; i++)
			px[i] = px[i] <= thr ? 0 : 255;
		return 0;
	}
	int lw = w > h ? w : h;
	int r = lw / 80;
	if (r < 15)
		r = 15;
	size_t W = (size_t)w + 1;
	/* sums of up to OCR_MAX_PIXELS values of 255 fit 32 bits; the
	 * squares need 64 */
	uint32_t *s1 = calloc(W * (h + 1), sizeof *s1);
	uint64_t *s2 = calloc(W * (h + 1), sizeof *s2);
	if (!s1 || !s2) {
		free(s1);
		free(s2);
		return -1;
	}
	for (int y = 0; y < h; y++) {
		uint32_t r1 = 0;
		uint64_t r2 = 0;
		for (int x = 0; x < w; x++) {
			uint32_t v = px[(size_t)y * w + x];
			r1 += v;
			r2 += (uint64_t)v * v;
			s1[(size_t)(y + 1) * W + x + 1] =
			    s1[(size_t)y * W + x + 1] + r1;
			s2[(size_t)(y + 1) * W + x + 1] =
			    s2[(size_t)y * W + x + 1] + r2;
		}
	}
	for (int y = 0; y < h; y++) {
		int y0 = y - r < 0 ? 0 : y - r;
		int y1 = y + r + 1 > h ? h : y + r + 1;
		for (int x = 0; x < w; x++) {
			int x0 = x - r < 0 ? 0 : x - r;
			int x1 = x + r + 1 > w ? w : x + r + 1;
			size_t a = (size_t)y0 * W + x0, b = (size_t)y0 * W + x1;
			size_t c = (size_t)y1 * W + x0, d = (size_t)y1 * W + x1;
			double cnt = (double)(x1 - x0) * (y1 - y0);
			double m =
			    (double)(s1[d] - s1[b] - s1[c] + s1[a]) / cnt;
			double q =
			    (double)(s2[d] - s2[b] - s2[c] + s2[a]) / cnt;
			double sd = sqrt(fmax(0, q - m * m));
			double t = m * (1 + 0.34 * (sd / 128 - 1));
			uint8_t *p = &px[(size_t)y * w + x];
			*p = *p < t ? 0 : 255;
		}
	}
	free(s1);
	free(s2);
	return 0;
}

typedef struct prepped {
	uint8_t *px; /* g_free */
	int w, h;
	double scale, angle, line_px;
} prepped;

static pm_status preprocess(const ocr_state *st, VipsImage *in, prepped *pp,
			    pm_err *err)
{
	VipsImage *img = NULL, *t;
	size_t len;

	memset(pp, 0, sizeof *pp);
	pp->scale = 1;
	if (to_grey(in, &img))
		return vfail(err, "grey conversion failed");
	int w = vips_image_get_width(img), h = vips_image_get_height(img);
	double a = 0, line_h = 0;
	if (st->preprocess && (st->deskew || st->min_line_px > 0) &&
	    estimate_skew(img, &a, &line_h)) {
		g_object_unref(img);
		return vfail(err, "layout estimate failed");
	}
	pp->line_px = line_h;
	/* Upscale when the text lines are short: Tesseract's LSTM reads best
	 * at line heights of 30-40 px. */
	if (st->preprocess && st->min_line_px > 0 && line_h > 0 &&
	    line_h < st->min_line_px) {
		double s = OCR_LINE_TARGET / line_h;
		if (s > OCR_MAX_SCALE)
			s = OCR_MAX_SCALE;
		if ((double)w * h * s * s > OCR_MAX_PIXELS)
			s = sqrt((double)OCR_MAX_PIXELS / ((double)w * h));
		if (s > 1.05) {
			if (vips_resize(img, &t, s, "kernel", VIPS_KERNEL_CUBIC,
					NULL)) {
				g_object_unref(img);
				return vfail(err, "upscale failed");
			}
			pm_vips_swap(&img, t);
			pp->scale = s;
		}
	}
	if (st->preprocess && st->deskew && fabs(a) >= 0.3) {
		if (rotate_same(img, a, &t)) {
			g_object_unref(img);
			return vfail(err, "deskew rotation failed");
		}
		pm_vips_swap(&img, t);
		pp->angle = a;
	}
	pp->px = vips_image_write_to_memory(img, &len);
	pp->w = vips_image_get_width(img);
	pp->h = vips_image_get_height(img);
	g_object_unref(img);
	if (!pp->px)
		return vfail(err, "preprocessing failed");
	if (len != (size_t)pp->w * pp->h) {
		g_free(pp->px);
		pp->px = NULL;
		return pm_fail(err, PM_ERR_INTERNAL, "ocr: bad grey buffer");
	}
	if (st->preprocess && st->binarize != BIN_NONE &&
	    binarize(pp->px, pp->w, pp->h, st->binarize)) {
		g_free(pp->px);
		pp->px = NULL;
		return pm_fail(err, PM_ERR_NOMEM, "ocr: out of memory");
	}
	return PM_OK;
}

/* ---- recognition ---- */

/* Maps a box in the preprocessed image back to ctx->image pixels: undo
 * the deskew rotation (about the centre) and the upscale; clamps. */
static void map_box(const prepped *pp, int iw, int ih, int x0, int y0, int x1,
		    int y1, int out[4])
{
	double r = pp->angle * M_PI / 180, c = cos(r), s = sin(r);
	double cx = pp->w / 2.0, cy = pp->h / 2.0;
	double px[4] = {x0, x1, x0, x1}, py[4] = {y0, y0, y1, y1};
	double mnx = 1e18, mny = 1e18, mxx = -1e18, mxy = -1e18;

	for (int i = 0; i < 4; i++) {
		double dx = px[i] - cx, dy = py[i] - cy;
		double ox = c * dx - s * dy + cx, oy = s * dx + c * dy + cy;
		ox /= pp->scale;
		oy /= pp->scale;
		mnx = fmin(mnx, ox);
		mny = fmin(mny, oy);
		mxx = fmax(mxx, ox);
		mxy = fmax(mxy, oy);
	}
	mnx = fmax(0, fmin(mnx, iw));
	mxx = fmax(0, fmin(mxx, iw));
	mny = fmax(0, fmin(mny, ih));
	mxy = fmax(0, fmin(mxy, ih));
	out[0] = (int)floor(mnx);
	out[1] = (int)floor(mny);
	out[2] = (int)ceil(mxx) - out[0];
	out[3] = (int)ceil(mxy) - out[1];
}

/* Appendable text buffer, capped at OCR_MAX_TEXT. */
typedef struct tbuf {
	char *p;
	size_t len, cap;
} tbuf;

static void tb_add(tbuf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > OCR_MAX_TEXT)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t nc = b->cap ? b->cap * 2 : 4096;
		while (nc < b->len + n + 1)
			nc *= 2;
		char *q = realloc(b->p, nc);
		if (!q)
			return;
		b->p = q;
		b->cap = nc;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static pm_status ocr_process(void *state, pm_item_ctx *ctx, pm_err *err)
{
	ocr_state *st = state;
	prepped pp;
	pm_status s;
	ETEXT_DESC *mon = NULL;
	TessResultIterator *ri = NULL;
	json_t *words = NULL, *res = NULL;
	tbuf text = {0};
	double conf_sum = 0;
	int n_conf = 0, iw, ih;

	if (!ctx->image)
		return pm_fail(err, PM_ERR_INTERNAL, "ocr: no image");
	iw = vips_image_get_width(ctx->image);
	ih = vips_image_get_height(ctx->image);
	s = preprocess(st, ctx->image, &pp, err);
	if (s)
		return s;
	TessBaseAPISetImage(st->api, pp.px, pp.w, pp.h, 1, pp.w);
	/* Cards and photos carry no trustworthy DPI; 300 matches the sizes
	 * the upscale aims for and silences Tesseract's estimate. */
	TessBaseAPISetSourceResolution(st->api, 300);
	omp_serial_here();
	mon = TessMonitorCreate();
	if (mon)
		TessMonitorSetDeadlineMSecs(mon, st->timeout_ms);
	double t0 = pm_now();
	int rc = TessBaseAPIRecognize(st->api, mon);
	double took = pm_now() - t0;
	if (rc != 0) {
		s = pm_fail(err, PM_ERR_DECODE,
			    "ocr: Tesseract recognition failed (%s)",
			    took * 1000 >= st->timeout_ms ? "deadline passed"
							  : "error");
		goto out;
	}
	words = json_array();
	ri = TessBaseAPIGetIterator(st->api);
	if (ri) {
		TessPageIterator *pi = TessResultIteratorGetPageIterator(ri);
		bool first = true;
		do {
			char *wt = TessResultIteratorGetUTF8Text(ri, RIL_WORD);
			int x0, y0, x1, y1, box[4];
			float cf = TessResultIteratorConfidence(ri, RIL_WORD);
			if (!wt)
				continue;
			if (cf < st->min_conf || !wt[0]) {
				TessDeleteText(wt);
				continue;
			}
			if (!first) {
				if (TessPageIteratorIsAtBeginningOf(pi,
								    RIL_PARA))
					tb_add(&text, "\n\n", 2);
				else if (TessPageIteratorIsAtBeginningOf(
					     pi, RIL_TEXTLINE))
					tb_add(&text, "\n", 1);
				else
					tb_add(&text, " ", 1);
			}
			first = false;
			tb_add(&text, wt, strlen(wt));
			conf_sum += cf;
			n_conf++;
			if (json_array_size(words) < OCR_MAX_WORDS &&
			    TessPageIteratorBoundingBox(pi, RIL_WORD, &x0, &y0,
							&x1, &y1)) {
				map_box(&pp, iw, ih, x0, y0, x1, y1, box);
				json_t *wj = json_pack(
				    "[s,i,i,i,i,f]", wt, box[0], box[1], box[2],
				    box[3], round(cf * 10) / 10);
				/* json_pack refuses invalid UTF-8: skip the
				 * word's box, keep its text. */
				if (wj)
					json_array_append_new(words, wj);
			}
			TessDeleteText(wt);
		} while (TessResultIteratorNext(ri, RIL_WORD));
		TessResultIteratorDelete(ri);
	}
	if (!ctx->meta)
		ctx->meta = json_object();
	res = json_object();
	json_t *tj = json_stringn(text.p ? text.p : "", text.len);
	json_object_set_new(res, "text", tj ? tj : json_string(""));
	json_object_set_new(
	    res, "confidence",
	    json_real(n_conf ? round(conf_sum / n_conf * 10) / 10 : 0));
	json_object_set_new(res, "lang", json_string(st->lang));
	json_object_set_new(res, "psm", json_integer(st->psm));
	json_object_set_new(res, "angle", json_real(round(pp.angle * 10) / 10));
	json_object_set_new(res, "scale",
			    json_real(round(pp.scale * 1000) / 1000));
	json_object_set_new(res, "line_px", json_real(round(pp.line_px)));
	json_object_set_new(res, "words", words);
	words = NULL;
	json_object_set_new(ctx->meta, "ocr", res);
	s = PM_OK;
out:
	json_decref(words);
	free(text.p);
	if (mon)
		TessMonitorDelete(mon);
	TessBaseAPIClear(st->api);
	g_free(pp.px);
	return s;
}

const pm_stage_vt pm_stage_ocr = {
    .name = "ocr",
    .version = 1,
    .check = ocr_check,
    .decode_size = ocr_decode_size,
    .init = ocr_init,
    .process = ocr_process,
    .fini = ocr_fini,
};
