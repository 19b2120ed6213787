/* test_cutout.c — unit tests for the `fast` cut-out engine
 * (src/image/cutout_fast.c) and the cutout stage (src/stages/cutout.c).
 *
 * Synthetic studio shots are made with libvips with a known mask: shapes
 * (circle, rounded rectangles, a ring with a hole, a bottle with a
 * background-coloured label, two items, an item cut by the frame) over
 * white and coloured backgrounds, with a soft shadow, a gradient and a
 * vignette, camera noise and JPEG recompression. The `fast` engine must
 * reach IoU >= 0.9 against the known mask on each. A busy real photo from
 * the corpus must come out skipped with a reason; every file of the edge
 * corpus goes through the stage without a crash; the stage's outputs and
 * facts are checked. If the ISNet model is installed, engine=isnet must
 * give a sane cut-out of a photo; otherwise that test says it is skipped.
 *
 * Corpus: $PIXMILL_CORPUS, else ../shared/corpus (from the repo root).
 * Prints the `fast` engine's time at 2 MP (informational, never asserted).
 * Threads: single-threaded test program (the harness counters are not
 * atomic).
 */
#include "image/cutout_fast.h"
#include "image/image.h"
#include "stages/stage.h"
#include "test.h"

#include <ctype.h>
#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"
#include "ml/isnet.h"
#include "stages/pipeline.h"

/* ---- building synthetic shots with libvips ---- */

/* Test-only: a libvips failure here is a broken test setup. */
#define V(call)                                                                \
	do {                                                                   \
		if (call) {                                                    \
			fprintf(stderr, "%s:%d: libvips: %s\n", __FILE__,      \
				__LINE__, vips_error_buffer());                \
			abort();                                               \
		}                                                              \
	} while (0)

/* Replaces *img with out, unreffing the old one. */
static void swap(VipsImage **img, VipsImage *out)
{
	g_object_unref(*img);
	*img = out;
}

enum shape {
	SH_CIRCLE,
	SH_RRECT,
	SH_RING,   /* a disc with a hole through it */
	SH_BOTTLE, /* body and neck, with a background-coloured label */
	SH_TWO,	   /* two separate items */
	SH_CUT,	   /* a box cut by the bottom of the frame */
	SH_MUG,	   /* body plus a handle whose inside is background */
};

typedef struct scene {
	const char *name;
	int W, H;
	double bg[3], fg[3];
	enum shape shape;
	double gradient; /* brightness change left to right (fraction) */
	double vignette; /* darkening at the corners (fraction) */
	double shadow; /* darkening at a soft shadow's core (0..1), 0 = none */
	double noise;  /* gaussian noise sigma, 8-bit units */
	int jpeg_q;    /* recompress as JPEG at this quality, 0 = no */
	bool holes;    /* run with holes on */
} scene;

/* A new in-memory 1-band uchar canvas of w x h, all zero. */
static VipsImage *canvas(int w, int h)
{
	VipsImage *b, *m;
	V(vips_black(&b, w, h, NULL));
	V(vips_cast_uchar(b, &m, NULL));
	g_object_unref(b);
	b = vips_image_copy_memory(m);
	g_object_unref(m);
	if (!b)
		abort();
	return b;
}

static void disc(VipsImage *c, double cx, double cy, double r, double ink)
{
	double v[1] = {ink};
	V(vips_draw_circle(c, v, 1, (int)lrint(cx), (int)lrint(cy),
			   (int)lrint(r), "fill", TRUE, NULL));
}

static void rect(VipsImage *c, double x, double y, double w, double h,
		 double ink)
{
	double v[1] = {ink};
	V(vips_draw_rect(c, v, 1, (int)lrint(x), (int)lrint(y), (int)lrint(w),
			 (int)lrint(h), "fill", TRUE, NULL));
}

static void rrect(VipsImage *c, double x, double y, double w, double h,
		  double r, double ink)
{
	rect(c, x + r, y, w - 2 * r, h, ink);
	rect(c, x, y + r, w, h - 2 * r, ink);
	disc(c, x + r, y + r, r, ink);
	disc(c, x + w - r, y + r, r, ink);
	disc(c, x + r, y + h - r, r, ink);
	disc(c, x + w - r, y + h - r, r, ink);
}

/* Draws the item mask at 2x (the caller shrinks it: anti-aliased), and
 * the label mask (the background-coloured area inside the item) if any. */
static void draw_shape(enum shape s, VipsImage *m, VipsImage *label, int W,
		       int H)
{
	double mn = W < H ? W : H, cx = W / 2.0, cy = H / 2.0;

	switch (s) {
	case SH_CIRCLE:
		disc(m, cx, cy, 0.32 * mn, 255);
		break;
	case SH_RRECT:
		rrect(m, 0.27 * W, 0.2 * H, 0.46 * W, 0.6 * H, 0.08 * mn, 255);
		break;
	case SH_RING:
		disc(m, cx, cy, 0.36 * mn, 255);
		disc(m, cx, cy, 0.16 * mn, 0);
		break;
	case SH_BOTTLE:
		rrect(m, cx - 0.16 * mn, 0.3 * H, 0.32 * mn, 0.6 * H, 0.05 * mn,
		      255);
		rect(m, cx - 0.05 * mn, 0.12 * H, 0.1 * mn, 0.2 * H, 255);
		rect(label, cx - 0.12 * mn, 0.48 * H, 0.24 * mn, 0.22 * H, 255);
		break;
	case SH_TWO:
		disc(m, 0.3 * W, cy, 0.2 * mn, 255);
		rrect(m, 0.58 * W, 0.3 * H, 0.25 * W, 0.4 * H, 0.04 * mn, 255);
		break;
	case SH_CUT:
		rrect(m, 0.3 * W, 0.35 * H, 0.4 * W, 0.9 * H, 0.05 * mn, 255);
		break;
	case SH_MUG:
		rrect(m, 0.3 * W, 0.25 * H, 0.3 * W, 0.55 * H, 0.04 * mn, 255);
		disc(m, 0.6 * W, 0.52 * H, 0.15 * mn, 255);
		disc(m, 0.6 * W, 0.52 * H, 0.09 * mn, 0);
		rect(m, 0.5 * W, 0.3 * H, 0.1 * W, 0.45 * H, 255);
		break;
	}
}

/* A w x h 3-band float image of one colour. */
static VipsImage *flat(int w, int h, const double *rgb)
{
	VipsImage *b, *o;
	double a[3] = {0, 0, 0};
	V(vips_black(&b, w, h, "bands", 3, NULL));
	V(vips_linear(b, &o, a, (double *)rgb, 3, NULL));
	g_object_unref(b);
	return o;
}

/* img * (1 + gx * (x / w - 0.5)) * (1 - vig * r^2), r = 1 at a corner. */
static VipsImage *light(VipsImage *img, double gx, double vig)
{
	int w = img->Xsize, h = img->Ysize;
	VipsImage *xy, *x, *y, *t, *f, *o;

	V(vips_xyz(&xy, w, h, NULL));
	V(vips_extract_band(xy, &x, 0, NULL));
	V(vips_extract_band(xy, &y, 1, NULL));
	g_object_unref(xy);
	/* normalised offsets from the centre, -1..1 */
	V(vips_linear1(x, &t, 2.0 / w, -1.0, NULL));
	swap(&x, t);
	V(vips_linear1(y, &t, 2.0 / h, -1.0, NULL));
	swap(&y, t);
	/* f = (1 + gx x / 2) (1 - vig (x^2 + y^2) / 2) */
	V(vips_multiply(x, x, &t, NULL));
	V(vips_multiply(y, y, &f, NULL));
	V(vips_add(t, f, &o, NULL));
	g_object_unref(t);
	g_object_unref(f);
	V(vips_linear1(o, &f, -vig / 2, 1.0, NULL));
	g_object_unref(o);
	V(vips_linear1(x, &t, gx / 2, 1.0, NULL));
	V(vips_multiply(f, t, &o, NULL));
	g_object_unref(f);
	g_object_unref(t);
	g_object_unref(x);
	g_object_unref(y);
	V(vips_multiply(img, o, &t, NULL));
	g_object_unref(o);
	return t;
}

/* Builds the shot (*img: 3-band uchar, in memory) and its known mask
 * (*mask: 1-band uchar, 255 = the item). Both owned by the caller. */
static void make_scene(const scene *s, VipsImage **img, VipsImage **mask)
{
	int W = s->W, H = s->H;
	VipsImage *m2 = canvas(2 * W, 2 * H), *l2 = canvas(2 * W, 2 * H);
	VipsImage *m, *l, *bg, *fg, *t, *u;

	draw_shape(s->shape, m2, l2, 2 * W, 2 * H);
	V(vips_shrink(m2, &m, 2, 2, NULL));
	V(vips_shrink(l2, &l, 2, 2, NULL));
	g_object_unref(m2);
	g_object_unref(l2);
	V(vips_cast_uchar(m, &t, NULL));
	swap(&m, t);
	V(vips_cast_uchar(l, &t, NULL));
	swap(&l, t);

	bg = light(flat(W, H, s->bg), s->gradient, s->vignette);
	/* the item: its colour, lit from the left */
	t = flat(W, H, s->fg);
	fg = light(t, -0.3, 0);
	g_object_unref(t);
	if (s->shadow > 0) {
		/* an ellipse under the item, offset down and right, soft */
		VipsImage *sh = canvas(W, 2 * H), *e, *b;
		double mn = W < H ? W : H;
		disc(sh, 0.54 * W, 2 * 0.74 * H, 0.3 * mn * 1.0, 255);
		V(vips_resize(sh, &e, 1.0, "vscale", 0.5, NULL));
		g_object_unref(sh);
		V(vips_gaussblur(e, &b, 0.05 * mn, NULL));
		g_object_unref(e);
		V(vips_linear1(b, &e, -s->shadow / 255.0, 1.0, NULL));
		g_object_unref(b);
		V(vips_multiply(bg, e, &t, NULL));
		g_object_unref(e);
		swap(&bg, t);
	}
	/* the label shows the background colour inside the item */
	V(vips_ifthenelse(l, bg, fg, &t, "blend", TRUE, NULL));
	swap(&fg, t);
	V(vips_ifthenelse(m, fg, bg, &t, "blend", TRUE, NULL));
	g_object_unref(fg);
	g_object_unref(bg);
	g_object_unref(l);
	if (s->noise > 0) {
		VipsImage *n;
		V(vips_gaussnoise(&n, W, H, "sigma", s->noise, "mean", 0.0,
				  "seed", 42, NULL));
		V(vips_add(t, n, &u, NULL));
		g_object_unref(n);
		swap(&t, u);
	}
	V(vips_cast_uchar(t, &u, NULL));
	swap(&t, u);
	V(vips_copy(t, &u, "interpretation", VIPS_INTERPRETATION_sRGB, NULL));
	swap(&t, u);
	if (s->jpeg_q > 0) {
		void *buf;
		size_t len;
		V(vips_jpegsave_buffer(t, &buf, &len, "Q", s->jpeg_q, NULL));
		g_object_unref(t);
		t = vips_image_new_from_buffer(buf, len, "", NULL);
		if (!t)
			abort();
		u = vips_image_copy_memory(t);
		g_object_unref(t);
		g_free(buf);
		t = u;
	} else {
		u = vips_image_copy_memory(t);
		g_object_unref(t);
		t = u;
	}
	*img = t;
	*mask = vips_image_copy_memory(m);
	g_object_unref(m);
}

/* IoU of alpha >= 128 against mask >= 128. */
static double iou(const uint8_t *alpha, VipsImage *mask)
{
	const uint8_t *m = VIPS_IMAGE_ADDR(mask, 0, 0);
	size_t n = (size_t)mask->Xsize * mask->Ysize, inter = 0, uni = 0;

	for (size_t i = 0; i < n; i++) {
		bool a = alpha[i] >= 128, b = m[i] >= 128;
		inter += a && b;
		uni += a || b;
	}
	return uni ? (double)inter / uni : 1;
}

/* With $CUTOUT_TEST_DUMP set to a folder, saves each shot and its alpha
 * there as PNG, for looking at by eye. */
static void dump(const char *name, VipsImage *img, const uint8_t *alpha)
{
	const char *dir = getenv("CUTOUT_TEST_DUMP");
	char path[512], base[64];
	VipsImage *a;
	size_t k = 0;

	if (!dir)
		return;
	for (const char *p = name; *p && k < sizeof base - 1; p++)
		base[k++] = isalnum((unsigned char)*p) ? *p : '_';
	base[k] = '\0';
	snprintf(path, sizeof path, "%s/%s.png", dir, base);
	V(vips_image_write_to_file(img, path, NULL));
	a = vips_image_new_from_memory(alpha, (size_t)img->Xsize * img->Ysize,
				       img->Xsize, img->Ysize, 1,
				       VIPS_FORMAT_UCHAR);
	snprintf(path, sizeof path, "%s/%s-alpha.png", dir, base);
	V(vips_image_write_to_file(a, path, NULL));
	g_object_unref(a);
}

static const scene scenes[] = {
    {"red circle on white",
     800,
     600,
     {255, 255, 255},
     {200, 30, 40},
     SH_CIRCLE,
     0,
     0,
     0,
     0,
     0,
     false},
    {"blue rounded box on white, noise + JPEG q85",
     900,
     700,
     {250, 250, 250},
     {40, 70, 170},
     SH_RRECT,
     0,
     0,
     0,
     3,
     85,
     false},
    {"orange box on a blue-grey background",
     800,
     800,
     {170, 185, 200},
     {230, 120, 30},
     SH_RRECT,
     0,
     0,
     0,
     1.5,
     0,
     false},
    {"ring with a hole (holes on)",
     800,
     600,
     {245, 245, 245},
     {60, 120, 60},
     SH_RING,
     0,
     0,
     0,
     1,
     0,
     true},
    {"bottle with a white label on white",
     600,
     900,
     {255, 255, 255},
     {90, 40, 30},
     SH_BOTTLE,
     0,
     0,
     0,
     1,
     90,
     false},
    {"green item with a soft shadow",
     900,
     700,
     {240, 240, 240},
     {50, 140, 70},
     SH_CIRCLE,
     0,
     0,
     0.4,
     1.5,
     0,
     false},
    {"grey item with a soft shadow on white",
     900,
     700,
     {252, 252, 252},
     {120, 120, 125},
     SH_RRECT,
     0,
     0,
     0.3,
     1.5,
     88,
     false},
    {"purple item, vignette + gradient",
     1000,
     700,
     {235, 235, 230},
     {120, 50, 150},
     SH_CIRCLE,
     0.12,
     0.25,
     0,
     2,
     0,
     false},
    {"beige item on white (low contrast)",
     800,
     600,
     {255, 255, 255},
     {225, 205, 170},
     SH_RRECT,
     0,
     0,
     0,
     1,
     92,
     false},
    {"two items on a yellow background",
     1000,
     600,
     {240, 220, 120},
     {30, 60, 140},
     SH_TWO,
     0,
     0,
     0,
     2,
     0,
     false},
    {"box cut by the frame, gradient",
     800,
     800,
     {230, 230, 235},
     {160, 40, 60},
     SH_CUT,
     0.1,
     0,
     0,
     1.5,
     85,
     false},
    {"mug with a handle (holes on), vignette",
     900,
     700,
     {248, 248, 248},
     {30, 100, 160},
     SH_MUG,
     0,
     0.15,
     0,
     1.5,
     85,
     true},
};

static void test_fast_scenes(void)
{
	for (size_t i = 0; i < sizeof scenes / sizeof *scenes; i++) {
		const scene *s = &scenes[i];
		VipsImage *img, *mask;
		pm_cutout_fast_opts o;
		pm_cutout_fast_result r;
		pm_err e = {{0}};
		double q;

		make_scene(s, &img, &mask);
		pm_cutout_fast_defaults(&o);
		o.holes = s->holes;
		CHECK_INT(pm_cutout_fast(img, &o, &r, &e), PM_OK);
		CHECK(r.alpha != NULL);
		if (!r.alpha) {
			fprintf(stderr, "%s: no mask: %s\n", s->name, r.reason);
			g_object_unref(img);
			g_object_unref(mask);
			continue;
		}
		q = iou(r.alpha, mask);
		dump(s->name, img, r.alpha);
		printf("  %-48s IoU %.4f  conf %.2f  tol %.1f spread %.1f "
		       "cover %.2f noise %.1f (%s)\n",
		       s->name, q, r.confidence, r.tolerance, r.bg_spread,
		       r.border_cover, r.border_noise, r.reason);
		CHECK(q >= 0.9);
		CHECK(r.confidence >= 0.5);
		CHECK(r.fg_ratio > 0.01 && r.fg_ratio < 0.9);
		CHECK(r.bbox[2] > 0 && r.bbox[3] > 0);
		CHECK(r.bbox[0] + r.bbox[2] <= r.width);
		CHECK(r.bbox[1] + r.bbox[3] <= r.height);
		if (q < 0.9 || r.confidence < 0.5)
			fprintf(stderr,
				"scene \"%s\": IoU %.4f conf %.2f: %s\n",
				s->name, q, r.confidence, r.reason);
		if (s->shape == SH_BOTTLE) {
			/* the label, background-coloured, is kept */
			int x = s->W / 2, y = (int)(0.59 * s->H);
			CHECK(r.alpha[(size_t)y * s->W + x] == 255);
		}
		if (s->shape == SH_RING) {
			/* the hole is cut */
			CHECK(r.alpha[(size_t)(s->H / 2) * s->W + s->W / 2] ==
			      0);
		}
		pm_cutout_fast_result_free(&r);
		g_object_unref(img);
		g_object_unref(mask);
	}
}

/* Shadows off: the same shadowed shot keeps its shadow (the option is what
 * removes it); holes off: the ring's hole stays filled (the default keeps
 * enclosed background-coloured areas, like the bottle's label). */
static void test_fast_options(void)
{
	scene sh = scenes[5], ring = scenes[3];
	VipsImage *img, *mask;
	pm_cutout_fast_opts o;
	pm_cutout_fast_result r;
	pm_err e = {{0}};

	make_scene(&sh, &img, &mask);
	pm_cutout_fast_defaults(&o);
	o.shadows = false;
	CHECK_INT(pm_cutout_fast(img, &o, &r, &e), PM_OK);
	CHECK(r.alpha && iou(r.alpha, mask) < 0.9);
	pm_cutout_fast_result_free(&r);
	g_object_unref(img);
	g_object_unref(mask);

	ring.holes = false;
	make_scene(&ring, &img, &mask);
	pm_cutout_fast_defaults(&o);
	CHECK_INT(pm_cutout_fast(img, &o, &r, &e), PM_OK);
	CHECK(r.alpha &&
	      r.alpha[(size_t)(ring.H / 2) * ring.W + ring.W / 2] == 255);
	pm_cutout_fast_result_free(&r);
	g_object_unref(img);
	g_object_unref(mask);
}

/* Plain images with nothing on them, and tiny ones: no cut-out worth
 * keeping, no crash. */
static void test_fast_degenerate(void)
{
	static const int sizes[][2] = {{640, 480}, {1, 1}, {1, 40},
				       {40, 1},	   {3, 3}, {2000, 2}};
	for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
		double white[3] = {250, 250, 250};
		VipsImage *f = flat(sizes[i][0], sizes[i][1], white), *u, *m;
		pm_cutout_fast_opts o;
		pm_cutout_fast_result r;
		pm_err e = {{0}};
		V(vips_cast_uchar(f, &u, NULL));
		m = vips_image_copy_memory(u);
		pm_cutout_fast_defaults(&o);
		CHECK_INT(pm_cutout_fast(m, &o, &r, &e), PM_OK);
		CHECK(r.confidence < 0.5);
		CHECK(r.reason[0] != '\0');
		CHECK_INT(r.width, sizes[i][0]);
		pm_cutout_fast_result_free(&r);
		g_object_unref(m);
		g_object_unref(u);
		g_object_unref(f);
	}
}

/* Other pixel formats than 8-bit sRGB (the engine converts): grey,
 * grey + alpha, 16-bit RGB, float Lab. The item is still found. */
static void test_fast_formats(void)
{
	static const VipsInterpretation to[] = {
	    VIPS_INTERPRETATION_B_W, VIPS_INTERPRETATION_RGB16,
	    VIPS_INTERPRETATION_LAB, VIPS_INTERPRETATION_GREY16};
	scene s = scenes[0];
	VipsImage *img, *mask;

	make_scene(&s, &img, &mask);
	for (size_t i = 0; i < sizeof to / sizeof *to + 1; i++) {
		VipsImage *t, *a = NULL;
		pm_cutout_fast_opts o;
		pm_cutout_fast_result r;
		pm_err e = {{0}};
		if (i < sizeof to / sizeof *to) {
			V(vips_colourspace(img, &t, to[i], NULL));
		} else { /* grey + opaque alpha */
			VipsImage *g;
			V(vips_colourspace(img, &g, VIPS_INTERPRETATION_B_W,
					   NULL));
			a = canvas(s.W, s.H);
			rect(a, 0, 0, s.W, s.H, 255);
			V(vips_bandjoin2(g, a, &t, NULL));
			g_object_unref(g);
		}
		pm_cutout_fast_defaults(&o);
		CHECK_INT(pm_cutout_fast(t, &o, &r, &e), PM_OK);
		CHECK(r.alpha && iou(r.alpha, mask) >= 0.9);
		pm_cutout_fast_result_free(&r);
		g_object_unref(t);
		if (a)
			g_object_unref(a);
	}
	g_object_unref(img);
	g_object_unref(mask);
}

/* An item on a transparent canvas (RGBA): what was transparent stays
 * transparent, the item is kept. */
static void test_fast_rgba(void)
{
	scene s = scenes[0];
	VipsImage *img, *mask, *a, *rgba;
	pm_cutout_fast_opts o;
	pm_cutout_fast_result r;
	pm_err e = {{0}};

	make_scene(&s, &img, &mask);
	/* alpha: opaque only in the left half */
	a = canvas(s.W, s.H);
	rect(a, 0, 0, s.W / 2.0, s.H, 255);
	V(vips_bandjoin2(img, a, &rgba, NULL));
	pm_cutout_fast_defaults(&o);
	CHECK_INT(pm_cutout_fast(rgba, &o, &r, &e), PM_OK);
	CHECK(r.alpha != NULL);
	if (r.alpha) {
		size_t mid = (size_t)(s.H / 2) * s.W;
		CHECK(r.alpha[mid + s.W / 2 - 20] == 255); /* item, opaque */
		CHECK(r.alpha[mid + s.W / 2 + 20] == 0);   /* item, clear */
		CHECK(r.alpha[mid + 5] == 0);		   /* background */
	}
	pm_cutout_fast_result_free(&r);
	g_object_unref(rgba);
	g_object_unref(a);
	g_object_unref(img);
	g_object_unref(mask);
}

/* Two threads cutting the same image at once get the same mask as one
 * thread alone (no shared mutable state; the tables are built once). */
typedef struct thr_arg {
	VipsImage *img;
	uint8_t *alpha; /* malloc'd copy of the result */
	pm_status s;
} thr_arg;

static void *thr_cut(void *p)
{
	thr_arg *a = p;
	pm_cutout_fast_opts o;
	pm_cutout_fast_result r;
	pm_err e = {{0}};
	size_t n = (size_t)a->img->Xsize * a->img->Ysize;

	pm_cutout_fast_defaults(&o);
	for (int i = 0; i < 3; i++) {
		a->s = pm_cutout_fast(a->img, &o, &r, &e);
		if (a->s || !r.alpha)
			return NULL;
		free(a->alpha);
		a->alpha = malloc(n);
		memcpy(a->alpha, r.alpha, n);
		pm_cutout_fast_result_free(&r);
	}
	return NULL;
}

static void test_fast_threads(void)
{
	scene s = scenes[7];
	VipsImage *img, *mask;
	thr_arg a[3] = {{0}};
	pthread_t t[2];
	size_t n = (size_t)s.W * s.H;

	make_scene(&s, &img, &mask);
	for (int i = 0; i < 3; i++)
		a[i].img = img;
	thr_cut(&a[2]); /* reference, one thread */
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, thr_cut, &a[i]);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < 3; i++)
		CHECK(a[i].s == PM_OK && a[i].alpha != NULL);
	if (a[0].alpha && a[1].alpha && a[2].alpha) {
		CHECK(memcmp(a[0].alpha, a[2].alpha, n) == 0);
		CHECK(memcmp(a[1].alpha, a[2].alpha, n) == 0);
	}
	for (int i = 0; i < 3; i++)
		free(a[i].alpha);
	g_object_unref(img);
	g_object_unref(mask);
}

/* pm_cutout_alpha_stats against a plain count. */
static void test_alpha_stats(void)
{
	int w = 37, h = 23, bbox[4];
	uint8_t *a = calloc((size_t)w * h, 1);
	double ratio, bfg;
	uint64_t sum = 0;

	pm_cutout_alpha_stats(a, w, h, bbox, &ratio, &bfg);
	CHECK(bbox[0] == 0 && bbox[1] == 0 && bbox[2] == 0 && bbox[3] == 0);
	CHECK(ratio == 0 && bfg == 0);
	for (int y = 5; y < 20; y++)
		for (int x = 3; x < 36; x++)
			a[y * w + x] = (uint8_t)(x * 7 + y);
	a[5 * w + 3] = 0;     /* a corner of the box stays empty */
	a[22 * w + 36] = 200; /* on the border ring */
	for (int i = 0; i < w * h; i++)
		sum += a[i];
	pm_cutout_alpha_stats(a, w, h, bbox, &ratio, &bfg);
	CHECK_INT(bbox[0], 3);
	CHECK_INT(bbox[1], 5);
	CHECK_INT(bbox[2], 34);
	CHECK_INT(bbox[3], 18);
	CHECK(fabs(ratio - sum / 255.0 / (w * h)) < 1e-9);
	CHECK(fabs(bfg - 1.0 / (2 * w + 2 * (h - 2))) < 1e-9);
	/* long rows: the eight-at-a-time sum, with its lane folding */
	free(a);
	w = 5000;
	h = 3;
	a = malloc((size_t)w * h);
	memset(a, 255, (size_t)w * h);
	pm_cutout_alpha_stats(a, w, h, bbox, &ratio, &bfg);
	CHECK(fabs(ratio - 1.0) < 1e-12);
	CHECK_INT(bbox[2], 5000);
	free(a);
}

/* ---- corpus ---- */

static const char *corpus_dir(char *buf, size_t n, const char *sub)
{
	const char *env = getenv("PIXMILL_CORPUS");
	struct stat sb;

	snprintf(buf, n, "%s/%s", env ? env : "../shared/corpus", sub);
	if (stat(buf, &sb) == 0)
		return buf;
	snprintf(buf, n, "/work/shared/corpus/%s", sub);
	return stat(buf, &sb) == 0 ? buf : NULL;
}

/* Reads, probes and decodes a file as the engine does (long edge 2048);
 * NULL with the reason in err if it is refused. */
static VipsImage *load(const char *path, pm_header *hdr, pm_err *err)
{
	void *buf;
	size_t len;
	pm_limits lim;
	VipsImage *im = NULL;

	pm_limits_default(&lim);
	if (pm_read_file(path, 1u << 30, &buf, &len, err))
		return NULL;
	if (pm_image_probe(buf, len, &lim, hdr, err) == PM_OK)
		pm_image_decode(buf, len, 2048, false, &im, err);
	free(buf);
	return im;
}

/* Busy real photos: the fast engine must not trust itself on them. */
static void test_fast_busy_photos(void)
{
	static const char *busy[] = {"opencv_fruits.jpg",
				     "tuxpaint_rocks.jpg",
				     "mate_GreenMeadow.jpg",
				     "palapeli_castle-maintenon.jpg",
				     "skimage_coffee.png",
				     "digikam_body-background_iphone7_p3.jpg",
				     "lxqt_Butterfly-Kenneth-Wimer.jpg"};
	char dir[512], path[1024];
	int seen = 0;

	if (!corpus_dir(dir, sizeof dir, "photos")) {
		printf("SKIP busy photos: corpus/photos not found\n");
		return;
	}
	for (size_t i = 0; i < sizeof busy / sizeof *busy; i++) {
		pm_header hdr;
		pm_err e = {{0}};
		pm_cutout_fast_opts o;
		pm_cutout_fast_result r;
		VipsImage *im;

		snprintf(path, sizeof path, "%s/%s", dir, busy[i]);
		if (!(im = load(path, &hdr, &e)))
			continue;
		seen++;
		pm_cutout_fast_defaults(&o);
		CHECK_INT(pm_cutout_fast(im, &o, &r, &e), PM_OK);
		printf("  busy %-40s conf %.2f (%s)\n", busy[i], r.confidence,
		       r.reason);
		CHECK(r.confidence < 0.5);
		CHECK(r.reason[0] != '\0');
		pm_cutout_fast_result_free(&r);
		g_object_unref(im);
	}
	CHECK(seen >= 5);
}

/* ---- the stage ---- */

static char tmpdir[256];
static pm_outstore *outs; /* on tmpdir, for the whole program */

/* A context on img writing under tmpdir/<asset>. */
static void ctx_init(pm_item_ctx *ctx, VipsImage *img, const pm_header *hdr,
		     const char *asset)
{
	char dir[512];

	memset(ctx, 0, sizeof *ctx);
	ctx->image = img;
	ctx->header = hdr;
	ctx->out_root = tmpdir;
	ctx->asset_dir = asset;
	ctx->outs = outs;
	ctx->sharpness = NAN;
	ctx->sha256 = "0000";
	snprintf(dir, sizeof dir, "%s/%s", tmpdir, asset);
	mkdir(dir, 0755);
}

/* Runs the stage with params (JSON text; defaults filled) on ctx. */
static pm_status run_stage(const char *params, pm_item_ctx *ctx, pm_err *e)
{
	json_error_t je;
	json_t *p = json_loads(params, 0, &je);
	void *state = NULL;
	pm_status s;

	if (!p)
		return PM_ERR_PIPELINE;
	s = pm_stage_cutout.check(p, e);
	if (!s)
		s = pm_stage_cutout.init(p, &state, e);
	if (!s) {
		s = pm_stage_cutout.process(state, ctx, e);
		pm_stage_cutout.fini(state);
	}
	json_decref(p);
	return s;
}

static json_t *facts(pm_item_ctx *ctx)
{
	return json_object_get(ctx->meta, "cutout");
}

static void test_stage_params(void)
{
	static const char *bad[] = {
	    "{\"engine\":\"magic\"}", "{\"format\":\"jpeg\"}",
	    "{\"tolerance\":0}",      "{\"tolerance\":\"6\"}",
	    "{\"feather\":21}",	      "{\"min_confidence\":1.5}",
	    "{\"max_edge\":8}",	      "{\"max_edge\":1024.5}",
	    "{\"crop\":1}",	      "{\"preview\":-1}",
	    "{\"tolerence\":6}",      "{\"model\":\"\"}",
	    "{\"threads\":-1}",	      "{\"quality\":101}",
	};
	json_t *p = json_object();
	pm_err e = {{0}};

	CHECK_INT(pm_stage_cutout.check(p, &e), PM_OK);
	CHECK_STR(json_string_value(json_object_get(p, "engine")), "auto");
	CHECK_STR(json_string_value(json_object_get(p, "format")), "png");
	CHECK(json_real_value(json_object_get(p, "tolerance")) == 6.0);
	CHECK(json_real_value(json_object_get(p, "min_confidence")) == 0.5);
	CHECK_INT(json_integer_value(json_object_get(p, "max_edge")), 2048);
	CHECK_INT(pm_stage_cutout.decode_size(p), 2048);
	CHECK(json_is_false(json_object_get(p, "crop")));
	/* 0: the cores divided among the workers */
	CHECK_INT(json_integer_value(json_object_get(p, "threads")), 0);
	json_decref(p);
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		p = json_loads(bad[i], 0, NULL);
		e.msg[0] = '\0';
		CHECK_INT(pm_stage_cutout.check(p, &e), PM_ERR_PIPELINE);
		CHECK(strstr(e.msg, "cutout") != NULL);
		json_decref(p);
	}
	/* integer tolerance is stored as a real: same hash as 6.0 */
	p = json_loads("{\"tolerance\":6,\"format\":\"WEBP\"}", 0, NULL);
	CHECK_INT(pm_stage_cutout.check(p, &e), PM_OK);
	CHECK(json_is_real(json_object_get(p, "tolerance")));
	CHECK_STR(json_string_value(json_object_get(p, "format")), "webp");
	json_decref(p);
	/* the built-in pipeline */
	{
		pm_pipeline *pl = NULL;
		CHECK_INT(pm_pipeline_load("cutout", &pl, &e), PM_OK);
		if (pl) {
			CHECK(strstr(pm_pipeline_canonical(pl),
				     "\"stage\":\"cutout\"") != NULL);
			CHECK(pm_pipeline_decode_size(pl) >= 2048);
			pm_pipeline_free(pl);
		}
	}
}

/* Decodes an output file of ctx; NULL if absent. */
static VipsImage *read_output(pm_item_ctx *ctx, const char *name)
{
	char path[1024];
	VipsImage *im, *m;

	for (int i = 0; i < ctx->n_outputs; i++) {
		if (strcmp(ctx->outputs[i].name, name) != 0)
			continue;
		snprintf(path, sizeof path, "%s/%s", tmpdir,
			 ctx->outputs[i].path);
		im = vips_image_new_from_file(path, NULL);
		if (!im)
			return NULL;
		m = vips_image_copy_memory(im);
		g_object_unref(im);
		return m;
	}
	return NULL;
}

static void test_stage_outputs(void)
{
	scene s = scenes[2]; /* orange box on blue-grey, 800 x 800 */
	VipsImage *img, *mask, *out;
	pm_header hdr = {0};
	pm_item_ctx ctx;
	pm_err e = {{0}};
	json_t *f, *bb;

	make_scene(&s, &img, &mask);
	/* the source was twice as large, stored rotated (orientation 6) */
	hdr.width = 2 * s.H;
	hdr.height = 2 * s.W;
	hdr.orientation = 6;
	ctx_init(&ctx, img, &hdr, "a1");
	CHECK_INT(run_stage("{\"engine\":\"fast\",\"preview\":128}", &ctx, &e),
		  PM_OK);
	f = facts(&ctx);
	CHECK(f != NULL);
	CHECK_STR(json_string_value(json_object_get(f, "engine")), "fast");
	CHECK_STR(json_string_value(json_object_get(f, "requested")), "fast");
	CHECK(json_is_false(json_object_get(f, "skipped")));
	CHECK(json_real_value(json_object_get(f, "confidence")) >= 0.5);
	CHECK(json_real_value(json_object_get(f, "fg_ratio")) > 0.2);
	CHECK(json_is_string(json_object_get(f, "background")));
	CHECK_INT(ctx.n_outputs, 2);
	CHECK_STR(ctx.outputs[0].name, "cutout.png");
	CHECK_STR(ctx.outputs[1].name, "cutout-128.png");
	bb = json_object_get(f, "bbox");
	/* item: x 0.27 W .. 0.73 W, y 0.2 H .. 0.8 H, in source pixels (2x);
	 * the box holds every pixel with alpha > 0, feathered fringe
	 * included: a few pixels wider */
	CHECK(json_array_size(bb) == 4);
	CHECK(labs((long)json_integer_value(json_array_get(bb, 0)) -
		   (long)(2 * 0.27 * s.W)) <= 10);
	CHECK(labs((long)json_integer_value(json_array_get(bb, 1)) -
		   (long)(2 * 0.2 * s.H)) <= 10);
	CHECK(labs((long)json_integer_value(json_array_get(bb, 2)) -
		   (long)(2 * 0.46 * s.W)) <= 20);
	CHECK(labs((long)json_integer_value(json_array_get(bb, 3)) -
		   (long)(2 * 0.6 * s.H)) <= 20);
	out = read_output(&ctx, "cutout.png");
	CHECK(out != NULL);
	if (out) {
		CHECK_INT(out->Bands, 4);
		CHECK_INT(out->Xsize, s.W);
		/* its alpha is the known mask */
		VipsImage *a;
		V(vips_extract_band(out, &a, 3, NULL));
		VipsImage *am = vips_image_copy_memory(a);
		CHECK(iou(VIPS_IMAGE_ADDR(am, 0, 0), mask) >= 0.9);
		g_object_unref(am);
		g_object_unref(a);
		g_object_unref(out);
	}
	out = read_output(&ctx, "cutout-128.png");
	CHECK(out && out->Bands == 4 && out->Xsize == 128);
	if (out)
		g_object_unref(out);
	pm_item_ctx_clear(&ctx);

	/* crop, webp, a smaller max edge */
	ctx_init(&ctx, img, NULL, "a2");
	CHECK_INT(run_stage("{\"engine\":\"auto\",\"crop\":true,\"format\":"
			    "\"webp\",\"max_edge\":400,\"padding\":4}",
			    &ctx, &e),
		  PM_OK);
	f = facts(&ctx);
	CHECK_STR(json_string_value(json_object_get(f, "engine")), "fast");
	CHECK_STR(json_string_value(json_object_get(f, "requested")), "auto");
	CHECK_INT(ctx.n_outputs, 1);
	CHECK_STR(ctx.outputs[0].name, "cutout.webp");
	out = read_output(&ctx, "cutout.webp");
	CHECK(out != NULL);
	if (out) {
		/* the box at 400 px: 0.46 * 400 wide plus 2 x 4 padding */
		CHECK_INT(out->Bands, 4);
		CHECK(abs(out->Xsize - (int)(0.46 * 400 + 8)) <= 6);
		CHECK(abs(out->Ysize - (int)(0.6 * 400 + 8)) <= 6);
		g_object_unref(out);
	}
	/* without a header, bbox is in the decoded image's pixels */
	bb = json_object_get(facts(&ctx), "bbox");
	CHECK(labs((long)json_integer_value(json_array_get(bb, 0)) -
		   (long)(0.27 * 400)) <= 4);
	pm_item_ctx_clear(&ctx);
	g_object_unref(img);
	g_object_unref(mask);
}

/* Half-transparent source through the stage: the cut-out keeps the
 * source's alpha once (not squared). */
static void test_stage_rgba(void)
{
	scene s = scenes[0];
	VipsImage *img, *mask, *a, *rgba, *out;
	pm_item_ctx ctx;
	pm_err e = {{0}};

	make_scene(&s, &img, &mask);
	a = canvas(s.W, s.H);
	rect(a, 0, 0, s.W, s.H, 128);
	V(vips_bandjoin2(img, a, &rgba, NULL));
	ctx_init(&ctx, rgba, NULL, "r1");
	CHECK_INT(run_stage("{\"engine\":\"fast\"}", &ctx, &e), PM_OK);
	out = read_output(&ctx, "cutout.png");
	CHECK(out && out->Bands == 4);
	if (out) {
		const uint8_t *p =
		    VIPS_IMAGE_ADDR(out, s.W / 2, s.H / 2);    /* the item */
		const uint8_t *q = VIPS_IMAGE_ADDR(out, 3, 3); /* background */
		CHECK(abs(p[3] - 128) <= 2);
		CHECK_INT(q[3], 0);
		g_object_unref(out);
	}
	pm_item_ctx_clear(&ctx);
	g_object_unref(rgba);
	g_object_unref(a);
	g_object_unref(img);
	g_object_unref(mask);
}

/* A busy photo through the stage: skipped, with a reason, no file. */
static void test_stage_skips_busy(void)
{
	char dir[512], path[1024];
	pm_header hdr;
	pm_item_ctx ctx;
	pm_err e = {{0}};
	VipsImage *im;
	json_t *f;

	if (!corpus_dir(dir, sizeof dir, "photos")) {
		printf("SKIP stage on a busy photo: corpus/photos not found\n");
		return;
	}
	snprintf(path, sizeof path, "%s/tuxpaint_rocks.jpg", dir);
	im = load(path, &hdr, &e);
	CHECK(im != NULL);
	if (!im)
		return;
	ctx_init(&ctx, im, &hdr, "b1");
	CHECK_INT(run_stage("{\"engine\":\"fast\"}", &ctx, &e), PM_OK);
	f = facts(&ctx);
	CHECK(json_is_true(json_object_get(f, "skipped")));
	CHECK(strstr(json_string_value(json_object_get(f, "reason")),
		     "confidence") != NULL);
	CHECK(json_object_get(f, "bbox") == NULL);
	CHECK_INT(ctx.n_outputs, 0);
	printf("  stage on a busy photo: %s\n",
	       json_string_value(json_object_get(f, "reason")));
	pm_item_ctx_clear(&ctx);

	/* auto: isnet takes over if installed, else skipped saying so */
	ctx_init(&ctx, im, &hdr, "b2");
	CHECK_INT(
	    run_stage("{\"engine\":\"auto\",\"max_edge\":1024}", &ctx, &e),
	    PM_OK);
	f = facts(&ctx);
	CHECK_STR(json_string_value(json_object_get(f, "requested")), "auto");
	if (strcmp(json_string_value(json_object_get(f, "engine")), "fast") ==
	    0) {
		CHECK(json_is_true(json_object_get(f, "skipped")));
		CHECK(strstr(json_string_value(json_object_get(f, "reason")),
			     "isnet unavailable") != NULL);
		CHECK_INT(ctx.n_outputs, 0);
	} else {
		CHECK_STR(json_string_value(json_object_get(f, "engine")),
			  "isnet");
		CHECK_INT(ctx.n_outputs,
			  json_is_true(json_object_get(f, "skipped")) ? 0 : 1);
	}
	printf("  auto on a busy photo: engine %s, %s\n",
	       json_string_value(json_object_get(f, "engine")),
	       json_string_value(json_object_get(f, "reason")));
	pm_item_ctx_clear(&ctx);
	g_object_unref(im);
}

/* Every file of the edge corpus through the stage (fast, and fast keeping
 * any result): a clean result or a clean refusal before it, never a
 * crash. */
static void test_stage_edge_corpus(void)
{
	char dir[512], path[1024];
	DIR *d;
	struct dirent *de;
	int files = 0, staged = 0;

	if (!corpus_dir(dir, sizeof dir, "edge")) {
		printf("SKIP edge corpus: corpus/edge not found\n");
		return;
	}
	d = opendir(dir);
	while (d && (de = readdir(d))) {
		pm_header hdr;
		pm_item_ctx ctx;
		pm_err e = {{0}};
		VipsImage *im;
		if (de->d_name[0] == '.')
			continue;
		files++;
		snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
		if (!(im = load(path, &hdr, &e)))
			continue; /* refused before any stage: fine */
		for (int k = 0; k < 2; k++) {
			pm_status s;
			ctx_init(&ctx, im, &hdr, "edge");
			/* the second run keeps whatever it finds, so every
			 * file also goes through the encoders */
			s = run_stage(k ? "{\"engine\":\"fast\",\"min_"
					  "confidence\":0,\"preview\":64}"
					: "{\"engine\":\"fast\",\"crop\":true}",
				      &ctx, &e);
			CHECK_INT(s, PM_OK);
			if (s)
				fprintf(stderr, "edge %s: %s\n", de->d_name,
					e.msg);
			CHECK(facts(&ctx) != NULL);
			staged++;
			pm_item_ctx_clear(&ctx);
		}
		g_object_unref(im);
	}
	if (d)
		closedir(d);
	printf("  edge corpus: %d files, %d stage runs\n", files, staged);
	CHECK(files >= 20);
	CHECK(staged >= 2 * 15);
}

/* A model that cannot be opened: engine=isnet fails in init, before any
 * item (the run stops with the reason); auto keeps going and records why
 * it skipped. */
static void test_isnet_missing(void)
{
	scene s = scenes[0];
	VipsImage *img, *mask;
	pm_item_ctx ctx;
	pm_err e = {{0}};
	json_t *p = json_loads("{\"engine\":\"isnet\",\"model\":"
			       "\"/nonexistent/isnet.onnx\"}",
			       0, NULL);
	void *state = NULL;
	const char *reason;

	CHECK_INT(pm_stage_cutout.check(p, &e), PM_OK);
	CHECK(pm_stage_cutout.init(p, &state, &e) != PM_OK);
	CHECK(state == NULL);
	CHECK(e.msg[0] != '\0');
	json_decref(p);

	/* auto on a plain studio shot: fast, isnet never needed */
	make_scene(&s, &img, &mask);
	ctx_init(&ctx, img, NULL, "m1");
	CHECK_INT(
	    run_stage("{\"model\":\"/nonexistent/isnet.onnx\"}", &ctx, &e),
	    PM_OK);
	CHECK_STR(json_string_value(json_object_get(facts(&ctx), "engine")),
		  "fast");
	CHECK_INT(ctx.n_outputs, 1);
	pm_item_ctx_clear(&ctx);
	g_object_unref(img);
	g_object_unref(mask);

	/* auto on a plain grey frame (nothing on it): fast is not sure, isnet
	 * cannot open: skipped, both reasons recorded */
	{
		double grey[3] = {128, 128, 128};
		VipsImage *f = flat(300, 200, grey), *u;
		V(vips_cast_uchar(f, &u, NULL));
		img = vips_image_copy_memory(u);
		g_object_unref(u);
		g_object_unref(f);
	}
	ctx_init(&ctx, img, NULL, "m2");
	CHECK_INT(
	    run_stage("{\"model\":\"/nonexistent/isnet.onnx\"}", &ctx, &e),
	    PM_OK);
	CHECK(json_is_true(json_object_get(facts(&ctx), "skipped")));
	reason = json_string_value(json_object_get(facts(&ctx), "reason"));
	CHECK(reason && strstr(reason, "fast: confidence") != NULL);
	CHECK(reason && strstr(reason, "isnet unavailable") != NULL);
	CHECK_INT(ctx.n_outputs, 0);
	pm_item_ctx_clear(&ctx);
	g_object_unref(img);
}

/* engine=isnet when the model is installed; a visible skip otherwise. */
static void test_isnet(void)
{
	char dir[512], path[1024];
	pm_isnet *n = NULL;
	pm_err e = {{0}};
	pm_status s = pm_isnet_open(NULL, 2, &n, &e);
	pm_header hdr;
	pm_item_ctx ctx;
	VipsImage *im;
	json_t *f;
	char sha[2][65];

	if (s) {
		printf("SKIP isnet tests: %s\n", e.msg);
		return;
	}
	pm_isnet_close(n);
	if (!corpus_dir(dir, sizeof dir, "photos")) {
		printf("SKIP isnet tests: corpus/photos not found\n");
		return;
	}
	snprintf(path, sizeof path, "%s/palapeli_european-honey-bee.jpg", dir);
	im = load(path, &hdr, &e);
	CHECK(im != NULL);
	if (!im)
		return;
	for (int k = 0; k < 2; k++) {
		ctx_init(&ctx, im, &hdr, "isnet");
		CHECK_INT(run_stage("{\"engine\":\"isnet\",\"threads\":2,"
				    "\"max_edge\":1024}",
				    &ctx, &e),
			  PM_OK);
		f = facts(&ctx);
		if (k == 0) {
			char *j = json_dumps(f, JSON_COMPACT);
			printf("  isnet on %s: %s\n", path, j ? j : "");
			free(j);
		}
		CHECK_STR(json_string_value(json_object_get(f, "engine")),
			  "isnet");
		CHECK(json_is_false(json_object_get(f, "skipped")));
		CHECK(json_real_value(json_object_get(f, "fg_ratio")) > 0.01);
		CHECK(json_real_value(json_object_get(f, "fg_ratio")) < 0.9);
		CHECK_INT(ctx.n_outputs, 1);
		snprintf(sha[k], sizeof sha[k], "%s",
			 ctx.n_outputs ? ctx.out_sha[0] : "");
		pm_item_ctx_clear(&ctx);
	}
	/* the same input gives the same bytes */
	CHECK_STR(sha[0], sha[1]);
	g_object_unref(im);
}

/* The engine's time at 2 MP (informational). */
static void time_fast(void)
{
	scene s = scenes[5];
	VipsImage *img, *mask;
	pm_cutout_fast_opts o;
	pm_cutout_fast_result r;
	pm_err e = {{0}};
	double best = 1e9;

	s.W = 1732;
	s.H = 1155;
	make_scene(&s, &img, &mask);
	pm_cutout_fast_defaults(&o);
	for (int i = 0; i < 5; i++) {
		double t0 = pm_now();
		if (pm_cutout_fast(img, &o, &r, &e) == PM_OK)
			pm_cutout_fast_result_free(&r);
		best = fmin(best, pm_now() - t0);
	}
	printf("timing: fast cut-out at %dx%d: best of 5 %.1f ms\n", s.W, s.H,
	       best * 1e3);
	g_object_unref(img);
	g_object_unref(mask);
}

int main(int argc, char **argv)
{
	pm_image_preinit();
	if (VIPS_INIT(argv[0]))
		return 2;
	pm_image_global_init();

	snprintf(tmpdir, sizeof tmpdir, "/tmp/pm-test-cutout-XXXXXX");
	if (!mkdtemp(tmpdir) ||
	    pm_outstore_local_open(tmpdir, tmpdir, &outs, NULL))
		return 2;
	test_fast_scenes();
	test_fast_options();
	test_fast_degenerate();
	test_fast_rgba();
	test_fast_formats();
	test_alpha_stats();
	test_fast_threads();
	test_fast_busy_photos();
	test_stage_params();
	test_stage_outputs();
	test_stage_rgba();
	test_stage_skips_busy();
	test_stage_edge_corpus();
	test_isnet_missing();
	test_isnet();
	if (argc < 2 || strcmp(argv[1], "--no-timing") != 0)
		time_fast();

	pm_outstore_close(outs);
	vips_shutdown();
	TEST_DONE();
}
