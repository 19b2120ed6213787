/* analyze.c — measurements of one decoded image: perceptual hash, dominant
 * colours and sharpness.
 *
 * Each measurement makes one small copy of the image (32x32 for the hash,
 * at most 64 px for colours, at most 256 px for sharpness) by exact area
 * averaging in C, reading the source rows through a VipsRegion (no copy of
 * an in-memory image; a lazy one is computed a strip at a time), then
 * measures in plain C on that buffer. libvips is used only to bring odd
 * inputs to 8-bit sRGB or grey (16-bit, float, CMYK, LAB... are converted;
 * more than 4 bands: the first 3 are used). Alpha is flattened against
 * white, premultiplied during the averaging so transparent pixels' colours
 * do not bleed in. Doing the resampling here rather than with vips_resize
 * keeps all three measurements of a 1024-px image near 4 ms on one core.
 *
 * Ownership: the input image is borrowed (never unreffed here); every
 * intermediate image and buffer is released before returning.
 * Threads: any thread, at once, after pm_image_global_init; no shared state.
 * (libvips's error buffer is process-wide: a message may carry text from a
 * concurrent failure in another thread.)
 */
#include "image/image.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A small flattened copy: w * h pixels of nb (1 grey, 3 RGB) floats in
 * 0..255, gamma-encoded sRGB. px is malloc'd, freed with free(). */
typedef struct small_img {
	float *px;
	int w, h, nb;
} small_img;

static pm_status vips_fail(pm_err *err, const char *what)
{
	return pm_vips_fail(err, PM_ERR_DECODE, what);
}

/* New reference to an 8-bit image with 1 (grey), 2 (grey+alpha), 3 (RGB) or
 * 4 (RGB+alpha) bands equivalent to in. */
static int to_uchar_srgb(VipsImage *in, VipsImage **out)
{
	VipsImage *img = in, *t;
	g_object_ref(img);

	VipsInterpretation it = vips_image_get_interpretation(img);
	VipsInterpretation want = VIPS_INTERPRETATION_ERROR;
	switch (it) {
	case VIPS_INTERPRETATION_sRGB:
	case VIPS_INTERPRETATION_B_W:
	case VIPS_INTERPRETATION_MULTIBAND:
	case VIPS_INTERPRETATION_RGB:
		break;
	case VIPS_INTERPRETATION_GREY16:
		want = VIPS_INTERPRETATION_B_W;
		break;
	default:
		want = VIPS_INTERPRETATION_sRGB;
		break;
	}
	if (img->Coding != VIPS_CODING_NONE)
		want = VIPS_INTERPRETATION_sRGB; /* LABQ/RAD: unpack */
	if (want != VIPS_INTERPRETATION_ERROR &&
	    vips_colourspace_issupported(img)) {
		if (vips_colourspace(img, &t, want, NULL))
			goto fail;
		pm_vips_swap(&img, t);
	}
	if (img->Bands > 4) {
		if (vips_extract_band(img, &t, 0, "n", 3, NULL))
			goto fail;
		pm_vips_swap(&img, t);
	}
	if (img->BandFmt != VIPS_FORMAT_UCHAR) {
		if (vips_cast(img, &t, VIPS_FORMAT_UCHAR, NULL))
			goto fail;
		pm_vips_swap(&img, t);
	}
	*out = img;
	return 0;
fail:
	g_object_unref(img);
	return -1;
}

/* Per-output-column source spans for area averaging along one axis: output
 * column o covers source [o * scale, (o + 1) * scale); span o starts at
 * source index x0[o] and has n[o] weights (overlap / scale, summing to 1)
 * at w + off[o]. */
typedef struct span_tab {
	int *x0, *n, *off;
	float *w;
} span_tab;

static void span_free(span_tab *t)
{
	free(t->x0);
	free(t->n);
	free(t->off);
	free(t->w);
}

static bool span_build(span_tab *t, int src, int dst)
{
	double scale = (double)src / dst;
	int cap = dst * ((int)ceil(scale) + 2);
	t->x0 = malloc(dst * sizeof(int));
	t->n = malloc(dst * sizeof(int));
	t->off = malloc(dst * sizeof(int));
	t->w = malloc((size_t)cap * sizeof(float));
	if (!t->x0 || !t->n || !t->off || !t->w)
		return false;
	int k = 0;
	for (int o = 0; o < dst; o++) {
		double a = o * scale, b = (o + 1) * scale;
		int lo = (int)floor(a), hi = (int)ceil(b); /* [lo, hi) */
		if (hi > src)
			hi = src;
		if (lo >= hi)
			lo = hi - 1;
		t->x0[o] = lo;
		t->off[o] = k;
		for (int x = lo; x < hi && k < cap; x++) {
			double ov = fmin(b, x + 1.0) - fmax(a, (double)x);
			if (ov < 1e-9 && x > lo) /* rounding sliver */
				break;
			t->w[k++] = (float)(ov > 0 ? ov / scale : 0);
		}
		t->n[o] = k - t->off[o];
	}
	return true;
}

/* One source row (ib bands of uchar, the last one alpha if alpha) averaged
 * horizontally into acc (ow * (nb + 1): premultiplied colour, then alpha,
 * both 0..255). */
static void hpass(const uint8_t *row, int ib, int nb, bool alpha,
		  const span_tab *t, int ow, float *acc)
{
	for (int o = 0; o < ow; o++) {
		const float *w = t->w + t->off[o];
		const uint8_t *p = row + (size_t)t->x0[o] * ib;
		float c0 = 0, c1 = 0, c2 = 0, al = 0;
		int n = t->n[o];
		if (!alpha && nb == 3) {
			for (int i = 0; i < n; i++, p += ib) {
				c0 += w[i] * p[0];
				c1 += w[i] * p[1];
				c2 += w[i] * p[2];
			}
			al = 255;
		} else if (!alpha) {
			for (int i = 0; i < n; i++, p += ib)
				c0 += w[i] * p[0];
			al = 255;
		} else if (nb == 3) {
			for (int i = 0; i < n; i++, p += ib) {
				float a = w[i] * p[3];
				c0 += a * p[0];
				c1 += a * p[1];
				c2 += a * p[2];
				al += a;
			}
			c0 /= 255;
			c1 /= 255;
			c2 /= 255;
		} else {
			for (int i = 0; i < n; i++, p += ib) {
				float a = w[i] * p[1];
				c0 += a * p[0];
				al += a;
			}
			c0 /= 255;
		}
		float *q = acc + (size_t)o * (nb + 1);
		q[0] = c0;
		if (nb == 3) {
			q[1] = c1;
			q[2] = c2;
		}
		q[nb] = al;
	}
}

#define STRIP 64 /* source rows fetched per region request */

/* Makes a small copy of in by area averaging (a box filter exact to the
 * sub-pixel; also enlarges, by pixel replication, when asked to). If tw > 0
 * the copy is exactly tw x th, aspect ignored; otherwise its long edge is
 * at most long_edge (never enlarged). Rows are read through a VipsRegion in
 * strips, so an in-memory image is not copied and a lazy one is computed
 * a strip at a time. */
static pm_status get_small(VipsImage *in, int tw, int th, int long_edge,
			   small_img *s, pm_err *err)
{
	VipsImage *img = NULL;
	VipsRegion *reg = NULL;
	span_tab ht = {0};
	float *acc = NULL;
	double *out = NULL;
	pm_status st = PM_OK;

	memset(s, 0, sizeof *s);
	if (!in || in->Xsize < 1 || in->Ysize < 1)
		return pm_fail(err, PM_ERR_INTERNAL, "analyze: no image");
	if (to_uchar_srgb(in, &img))
		return vips_fail(err, "analyze: convert");

	int W = img->Xsize, H = img->Ysize, ib = img->Bands;
	bool alpha = ib == 2 || ib == 4;
	int nb = ib >= 3 ? 3 : 1;
	int ow = tw, oh = th;
	if (tw <= 0) {
		int le = W > H ? W : H;
		double sc = le > long_edge ? (double)le / long_edge : 1.0;
		ow = (int)lrint(W / sc);
		oh = (int)lrint(H / sc);
		ow = ow < 1 ? 1 : ow;
		oh = oh < 1 ? 1 : oh;
	}
	double sy = (double)H / oh;
	size_t stride = (size_t)ow * (nb + 1);
	acc = malloc(stride * sizeof(float));
	out = calloc((size_t)oh * stride, sizeof(double));
	if (!acc || !out || !span_build(&ht, W, ow)) {
		st = pm_fail(err, PM_ERR_NOMEM, "analyze: out of memory");
		goto out;
	}
	if (!(reg = vips_region_new(img)))
		goto vfail;
	for (int y0 = 0; y0 < H; y0 += STRIP) {
		VipsRect r = {0, y0, W, H - y0 < STRIP ? H - y0 : STRIP};
		if (vips_region_prepare(reg, &r))
			goto vfail;
		for (int y = y0; y < y0 + r.height; y++) {
			const uint8_t *row = VIPS_REGION_ADDR(reg, 0, y);
			hpass(row, ib, nb, alpha, &ht, ow, acc);
			/* output rows whose span [oy*sy, (oy+1)*sy) meets
			 * [y, y+1) */
			int oy = (int)floor(y / sy);
			for (; oy < oh; oy++) {
				double a = oy * sy, b = a + sy;
				if (a >= y + 1)
					break;
				double ov = fmin(b, y + 1.0) - fmax(a, y);
				if (ov <= 0)
					continue;
				double wy = ov / sy;
				double *q = out + (size_t)oy * stride;
				for (size_t i = 0; i < stride; i++)
					q[i] += wy * acc[i];
			}
		}
	}

	s->px = malloc((size_t)ow * oh * nb * sizeof(float));
	if (!s->px) {
		st = pm_fail(err, PM_ERR_NOMEM, "analyze: out of memory");
		goto out;
	}
	s->w = ow;
	s->h = oh;
	s->nb = nb;
	for (size_t i = 0; i < (size_t)ow * oh; i++) {
		const double *q = out + i * (nb + 1);
		/* flatten over white: premultiplied colour + (255 - alpha) */
		double under = 255.0 - q[nb];
		for (int c = 0; c < nb; c++) {
			double v = q[c] + under;
			s->px[i * nb + c] = (float)(v < 0     ? 0
						    : v > 255 ? 255
							      : v);
		}
	}
	goto out;
vfail:
	st = vips_fail(err, "analyze: read pixels");
out:
	if (reg)
		g_object_unref(reg);
	span_free(&ht);
	free(acc);
	free(out);
	g_object_unref(img);
	return st;
}

/* Rec. 601 luma of pixel i, as in classic pHash. */
static double luma(const small_img *s, size_t i)
{
	const float *p = s->px + i * s->nb;
	if (s->nb == 1)
		return p[0];
	return 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
}

/* ---- perceptual hash ---- */

#define PH_N 32 /* luminance grid */
#define PH_K 8	/* low frequencies kept per axis */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* 32x32 area-averaged luminance (aspect ignored), 2-D DCT-II, the top-left 8x8
 * block. The DC term (mean brightness) is excluded: the median is taken over
 * the 63 AC terms and bit 0 (the DC slot) is always 0; bit i (i = row * 8 +
 * col) is set if coefficient i is above that median. The first row and
 * column are kept (unlike the original pHash, which drops them) because
 * they carry the pure horizontal and vertical structure. */
pm_status pm_image_phash(VipsImage *in, uint64_t *out, pm_err *err)
{
	if (!out)
		return pm_fail(err, PM_ERR_INTERNAL, "phash: no output");
	small_img s;
	pm_status st = get_small(in, PH_N, PH_N, 0, &s, err);
	if (st != PM_OK)
		return st;

	double cosv[PH_K][PH_N];
	for (int u = 0; u < PH_K; u++)
		for (int x = 0; x < PH_N; x++)
			cosv[u][x] = cos(M_PI * (2 * x + 1) * u / (2.0 * PH_N));

	double lum[PH_N][PH_N], rows[PH_N][PH_K], coef[PH_K * PH_K];
	for (int y = 0; y < PH_N; y++)
		for (int x = 0; x < PH_N; x++)
			lum[y][x] = luma(&s, (size_t)y * PH_N + x);
	free(s.px);

	for (int y = 0; y < PH_N; y++)
		for (int u = 0; u < PH_K; u++) {
			double a = 0;
			for (int x = 0; x < PH_N; x++)
				a += lum[y][x] * cosv[u][x];
			rows[y][u] = a;
		}
	for (int v = 0; v < PH_K; v++)
		for (int u = 0; u < PH_K; u++) {
			double a = 0;
			for (int y = 0; y < PH_N; y++)
				a += rows[y][u] * cosv[v][y];
			/* snap float rounding noise (the copy is made in float)
			 * to 0, so flat and 1-D images hash stably: 0.05 is a
			 * pattern of about 1/5000 of a grey level */
			coef[v * PH_K + u] = fabs(a) < 0.05 ? 0.0 : a;
		}

	double sorted[PH_K * PH_K - 1];
	memcpy(sorted, coef + 1, sizeof sorted);
	qsort(sorted, PH_K * PH_K - 1, sizeof(double), cmp_double);
	double median = sorted[(PH_K * PH_K - 1) / 2];

	uint64_t h = 0;
	for (int i = 1; i < PH_K * PH_K; i++)
		if (coef[i] > median)
			h |= (uint64_t)1 << i;
	*out = h;
	return PM_OK;
}

int pm_phash_distance(uint64_t a, uint64_t b)
{
	return __builtin_popcountll(a ^ b);
}

/* ---- dominant colours ---- */

#define COL_EDGE  64  /* long edge of the copy clustered */
#define COL_MAXK  16  /* most colours returned */
#define COL_ITERS 16  /* Lloyd iterations cap */
#define COL_MERGE 3.0 /* delta E 1976 under which clusters merge */
#define COL_BITS  5   /* histogram bits per RGB channel */
#define COL_BINS  (1 << (3 * COL_BITS))

typedef struct lab {
	double l, a, b;
} lab;

typedef struct wpoint {
	lab c;	  /* mean Lab of the pixels in the bin */
	double w; /* pixel count */
} wpoint;

static double srgb_to_linear(double v)
{
	v /= 255.0;
	return v <= 0.04045 ? v / 12.92 : pow((v + 0.055) / 1.055, 2.4);
}

static double linear_to_srgb(double v)
{
	v = v <= 0.0031308 ? v * 12.92 : 1.055 * pow(v, 1.0 / 2.4) - 0.055;
	return v * 255.0;
}

/* D65 reference white */
#define WX 0.95047
#define WY 1.0
#define WZ 1.08883

static double lab_f(double t)
{
	return t > 216.0 / 24389.0 ? cbrt(t) : (24389.0 / 27.0 * t + 16) / 116;
}

static double lab_finv(double t)
{
	return t > 6.0 / 29.0 ? t * t * t : (116 * t - 16) * 27.0 / 24389.0;
}

static lab lin_to_lab(double r, double g, double b)
{
	double x = 0.4124564 * r + 0.3575761 * g + 0.1804375 * b;
	double y = 0.2126729 * r + 0.7151522 * g + 0.0721750 * b;
	double z = 0.0193339 * r + 0.1191920 * g + 0.9503041 * b;
	double fx = lab_f(x / WX), fy = lab_f(y / WY), fz = lab_f(z / WZ);
	return (lab){116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)};
}

static uint8_t to_u8(double v)
{
	if (!(v > 0))
		return 0;
	if (v >= 255)
		return 255;
	return (uint8_t)lrint(v);
}

static void lab_to_rgb8(lab c, pm_color *o)
{
	double fy = (c.l + 16) / 116, fx = fy + c.a / 500, fz = fy - c.b / 200;
	double x = WX * lab_finv(fx), y = WY * lab_finv(fy);
	double z = WZ * lab_finv(fz);
	double r = 3.2404542 * x - 1.5371385 * y - 0.4985314 * z;
	double g = -0.9692660 * x + 1.8760108 * y + 0.0415560 * z;
	double b = 0.0556434 * x - 0.2040259 * y + 1.0572252 * z;
	o->r = to_u8(linear_to_srgb(r < 0 ? 0 : r > 1 ? 1 : r));
	o->g = to_u8(linear_to_srgb(g < 0 ? 0 : g > 1 ? 1 : g));
	o->b = to_u8(linear_to_srgb(b < 0 ? 0 : b > 1 ? 1 : b));
}

static double dist2(lab p, lab q)
{
	double dl = p.l - q.l, da = p.a - q.a, db = p.b - q.b;
	return dl * dl + da * da + db * db;
}

/* Groups the pixels of s into RGB histogram bins (5 bits a channel), each
 * a weighted point at the mean Lab of its pixels. Returns the number of
 * points written to pts (at most w * h), or -1 on allocation failure. */
static int bin_pixels(const small_img *s, wpoint *pts)
{
	int *slot = malloc(COL_BINS * sizeof(int));
	if (!slot)
		return -1;
	memset(slot, 0xff, COL_BINS * sizeof(int)); /* -1: empty */
	double lin[256];
	for (int i = 0; i < 256; i++)
		lin[i] = srgb_to_linear(i);

	int n = 0;
	size_t npx = (size_t)s->w * s->h;
	for (size_t i = 0; i < npx; i++) {
		const float *p = s->px + i * s->nb;
		int r = (int)lrintf(p[0]);
		int g = s->nb == 3 ? (int)lrintf(p[1]) : r;
		int b = s->nb == 3 ? (int)lrintf(p[2]) : r;
		int key = (r >> (8 - COL_BITS)) << (2 * COL_BITS) |
			  (g >> (8 - COL_BITS)) << COL_BITS |
			  (b >> (8 - COL_BITS));
		lab c = lin_to_lab(lin[r], lin[g], lin[b]);
		int k = slot[key];
		if (k < 0) {
			k = slot[key] = n++;
			pts[k] = (wpoint){{0, 0, 0}, 0};
		}
		pts[k].c.l += c.l;
		pts[k].c.a += c.a;
		pts[k].c.b += c.b;
		pts[k].w += 1;
	}
	free(slot);
	for (int k = 0; k < n; k++) {
		pts[k].c.l /= pts[k].w;
		pts[k].c.a /= pts[k].w;
		pts[k].c.b /= pts[k].w;
	}
	return n;
}

/* Weighted k-means on pts. Initialisation is deterministic: the heaviest
 * point, then repeatedly the point maximising weight * squared distance to
 * its nearest centre (a greedy k-means++). Writes up to k centres and their
 * weights; returns how many. */
static int kmeans(const wpoint *pts, int n, int k, int *assign, wpoint *cent)
{
	double *d2 = malloc((size_t)n * sizeof(double));
	if (!d2)
		return -1;
	int best = 0;
	for (int i = 1; i < n; i++)
		if (pts[i].w > pts[best].w)
			best = i;
	int nc = 0;
	cent[nc++].c = pts[best].c;
	for (int i = 0; i < n; i++)
		d2[i] = dist2(pts[i].c, cent[0].c);
	while (nc < k) {
		int far = -1;
		double fv = 0;
		for (int i = 0; i < n; i++)
			if (pts[i].w * d2[i] > fv) {
				fv = pts[i].w * d2[i];
				far = i;
			}
		if (far < 0)
			break; /* every point sits on a centre */
		cent[nc].c = pts[far].c;
		for (int i = 0; i < n; i++) {
			double d = dist2(pts[i].c, cent[nc].c);
			if (d < d2[i])
				d2[i] = d;
		}
		nc++;
	}
	free(d2);

	for (int i = 0; i < n; i++)
		assign[i] = -1;
	for (int it = 0; it < COL_ITERS; it++) {
		bool changed = false;
		for (int i = 0; i < n; i++) {
			int bj = 0;
			double bd = dist2(pts[i].c, cent[0].c);
			for (int j = 1; j < nc; j++) {
				double d = dist2(pts[i].c, cent[j].c);
				if (d < bd) {
					bd = d;
					bj = j;
				}
			}
			if (assign[i] != bj) {
				assign[i] = bj;
				changed = true;
			}
		}
		if (!changed && it > 0)
			break;
		lab sum[COL_MAXK];
		double w[COL_MAXK];
		memset(sum, 0, sizeof sum);
		memset(w, 0, sizeof w);
		for (int i = 0; i < n; i++) {
			int j = assign[i];
			sum[j].l += pts[i].w * pts[i].c.l;
			sum[j].a += pts[i].w * pts[i].c.a;
			sum[j].b += pts[i].w * pts[i].c.b;
			w[j] += pts[i].w;
		}
		for (int j = 0; j < nc; j++) {
			cent[j].w = w[j];
			if (w[j] > 0)
				cent[j].c =
				    (lab){sum[j].l / w[j], sum[j].a / w[j],
					  sum[j].b / w[j]};
		}
	}
	/* drop empty clusters */
	int m = 0;
	for (int j = 0; j < nc; j++)
		if (cent[j].w > 0)
			cent[m++] = cent[j];
	return m;
}

/* Merges the closest pair of centres while it is nearer than COL_MERGE. */
static int merge_close(wpoint *cent, int nc)
{
	for (;;) {
		int bi = -1, bj = -1;
		double bd = COL_MERGE * COL_MERGE;
		for (int i = 0; i < nc; i++)
			for (int j = i + 1; j < nc; j++) {
				double d = dist2(cent[i].c, cent[j].c);
				if (d < bd) {
					bd = d;
					bi = i;
					bj = j;
				}
			}
		if (bi < 0)
			return nc;
		double wi = cent[bi].w, wj = cent[bj].w, w = wi + wj;
		cent[bi].c = (lab){(cent[bi].c.l * wi + cent[bj].c.l * wj) / w,
				   (cent[bi].c.a * wi + cent[bj].c.a * wj) / w,
				   (cent[bi].c.b * wi + cent[bj].c.b * wj) / w};
		cent[bi].w = w;
		cent[bj] = cent[--nc];
	}
}

static int cmp_share(const void *a, const void *b)
{
	const wpoint *x = a, *y = b;
	if (x->w != y->w)
		return x->w < y->w ? 1 : -1;
	if (x->c.l != y->c.l) /* ties: lighter first, for determinism */
		return x->c.l < y->c.l ? 1 : -1;
	return (x->c.a < y->c.a) - (x->c.a > y->c.a);
}

/* k = min(max, 16) k-means clusters in CIELAB (D65) on a copy with a long
 * edge of at most 64 px, alpha flattened against white; clusters closer
 * than delta E 3 are merged (a flat image gives one colour). */
pm_status pm_image_colors(VipsImage *in, int max, pm_color *out, int *n,
			  pm_err *err)
{
	if (n)
		*n = 0;
	if (!out || !n || max < 0)
		return pm_fail(err, PM_ERR_INTERNAL, "colors: bad arguments");
	if (max == 0)
		return PM_OK;
	int k = max < COL_MAXK ? max : COL_MAXK;

	small_img s;
	pm_status st = get_small(in, 0, 0, COL_EDGE, &s, err);
	if (st != PM_OK)
		return st;
	size_t npx = (size_t)s.w * s.h;
	wpoint *pts = malloc(npx * sizeof(wpoint));
	int *assign = malloc(npx * sizeof(int));
	wpoint cent[COL_MAXK];
	int np = pts && assign ? bin_pixels(&s, pts) : -1;
	int nc = np > 0 ? kmeans(pts, np, k, assign, cent) : np;
	free(s.px);
	free(pts);
	free(assign);
	if (nc < 0)
		return pm_fail(err, PM_ERR_NOMEM, "colors: out of memory");

	nc = merge_close(cent, nc);
	qsort(cent, (size_t)nc, sizeof(wpoint), cmp_share);
	for (int j = 0; j < nc; j++) {
		lab_to_rgb8(cent[j].c, &out[j]);
		out[j].share = cent[j].w / (double)npx;
	}
	*n = nc;
	return PM_OK;
}

/* ---- sharpness ---- */

#define SHARP_EDGE 256

/* Variance of the 3x3 Laplacian (0 1 0 / 1 -4 1 / 0 1 0) of Rec. 601 luma
 * (0..255) over interior pixels, on a copy whose long edge is 256 px. A
 * smaller image is measured as is: enlarging it would only blur it and
 * understate its sharpness. Images under 3 px on a side score 0. */
pm_status pm_image_sharpness(VipsImage *in, double *out, pm_err *err)
{
	if (!out)
		return pm_fail(err, PM_ERR_INTERNAL, "sharpness: no output");
	*out = 0;
	small_img s;
	pm_status st = get_small(in, 0, 0, SHARP_EDGE, &s, err);
	if (st != PM_OK)
		return st;
	int w = s.w, h = s.h;
	if (w < 3 || h < 3) {
		free(s.px);
		return PM_OK;
	}
	float *y = malloc((size_t)w * h * sizeof(float));
	if (!y) {
		free(s.px);
		return pm_fail(err, PM_ERR_NOMEM, "sharpness: out of memory");
	}
	for (size_t i = 0; i < (size_t)w * h; i++)
		y[i] = (float)luma(&s, i);
	free(s.px);

	double sum = 0, sum2 = 0;
	for (int r = 1; r < h - 1; r++) {
		const float *row = y + (size_t)r * w;
		for (int c = 1; c < w - 1; c++) {
			double l = (double)row[c - 1] + row[c + 1] +
				   row[c - w] + row[c + w] - 4.0 * row[c];
			sum += l;
			sum2 += l * l;
		}
	}
	free(y);
	double cnt = (double)(w - 2) * (h - 2);
	double mean = sum / cnt, var = sum2 / cnt - mean * mean;
	*out = var > 0 ? var : 0;
	return PM_OK;
}
