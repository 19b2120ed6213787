/* cutout_fast.c — the `fast` cut-out engine: background removal for
 * studio product shots on plain or near-plain backgrounds, in plain C on a
 * small copy of the image, plus the full-resolution edge band.
 *
 * Steps (see cutout_fast.h for the contract):
 *  1. Area-average the image to a working copy (long edge 512; alpha is
 *     flattened against white) and convert it to CIELAB (tables for the
 *     sRGB curve and the Lab cube root).
 *  2. Background model from the border ring: the densest colour of the
 *     ring seeds a quadratic model per Lab channel in (x, y), refitted on
 *     its inliers with shrinking thresholds, so a gradient or vignette is
 *     one background. The border's median ΔE from the model (its noise)
 *     widens the tolerance; the share of the ring within it is the cover.
 *     Under 30% cover there is no background to speak of: stop, no mask.
 *  3. Flood fill from the border: a pixel within the tolerance of the
 *     model is background; with shadows on, so is a pixel that is a darker
 *     copy of the model's colour (same Lab direction from black) reached
 *     from a background neighbour by a small step (soft shadows are
 *     gradual; a product's edge is not).
 *  4. Clean-up: enclosed background-coloured regions become holes only
 *     when asked (holes); foreground specks much smaller than the largest
 *     part are dropped.
 *  5. Full resolution: cells whose 3x3 neighbourhood is all one class are
 *     filled at once; pixels in mixed cells (the edge band) get an alpha
 *     from their own ΔE (a ramp: 0 at half the tolerance, 255 at one and
 *     a half). The band is then feathered with a small Gaussian, computed
 *     only where the result can change, through a ring of 2r + 1 rows.
 *  6. Confidence: the weakest of six signals, each mapped to 0..1: border
 *     cover (1 at >= 85%, 0 at <= 60%), border noise (1 at ΔE <= 3, 0 at
 *     >= 7), foreground ratio (0 under 0.2% or over 95%), foreground on
 *     the border (1 at <= 30% of the ring, 0 at >= 60%), separation (share
 *     of interior foreground within twice the tolerance: 1 at <= 20%, 0 at
 *     >= 50%) and background spread (the model's largest ΔE from its
 *     mean: 1 at <= 15, 0 at >= 30). Calibrated on synthetic studio shots
 *     (all 1.0) and the corpus photos (busy ones under 0.5).
 *
 * Ownership: the input image is borrowed; the result's alpha is malloc'd
 * and freed by pm_cutout_fast_result_free; everything else is released
 * before returning.
 * Threads: any thread at once; the constant tables are built once under
 * pthread_once.
 */
#include "image/cutout_fast.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image/image.h"

#define WORK_EDGE   512
#define LIN_N	    1024 /* steps of the sRGB -> linear table over 0..255 */
#define F_N	    2048 /* steps of the Lab f(t) table over 0..F_MAX */
#define F_MAX	    1.1f
#define MAX_FEATHER 20

static float lin_tab[LIN_N + 2];
static float f_tab[F_N + 2];
static pthread_once_t tab_once = PTHREAD_ONCE_INIT;

static void tab_init(void)
{
	for (int i = 0; i <= LIN_N + 1; i++) {
		double c = (double)i / LIN_N;
		if (c > 1)
			c = 1;
		lin_tab[i] =
		    (float)(c <= 0.04045 ? c / 12.92
					 : pow((c + 0.055) / 1.055, 2.4));
	}
	for (int i = 0; i <= F_N + 1; i++) {
		double t = (double)i * F_MAX / F_N;
		f_tab[i] =
		    (float)(t > 0.008856 ? cbrt(t) : 7.787 * t + 16.0 / 116.0);
	}
}

/* Linear interpolation in a table of n + 1 steps; x in steps. */
static inline float lut(const float *tab, int n, float x)
{
	int i;

	if (x <= 0)
		return tab[0];
	if (x >= (float)n)
		return tab[n];
	i = (int)x;
	return tab[i] + (x - (float)i) * (tab[i + 1] - tab[i]);
}

/* sRGB (0..255 each, gamma-encoded) to CIELAB (D65). */
static inline void rgb_lab(float r, float g, float b, float *lab)
{
	const float k = LIN_N / 255.0f, kf = F_N / F_MAX;
	float R = lut(lin_tab, LIN_N, r * k);
	float G = lut(lin_tab, LIN_N, g * k);
	float B = lut(lin_tab, LIN_N, b * k);
	float X = (0.4124564f * R + 0.3575761f * G + 0.1804375f * B) / 0.95047f;
	float Y = 0.2126729f * R + 0.7151522f * G + 0.0721750f * B;
	float Z = (0.0193339f * R + 0.1191920f * G + 0.9503041f * B) / 1.08883f;
	float fx = lut(f_tab, F_N, X * kf), fy = lut(f_tab, F_N, Y * kf);
	float fz = lut(f_tab, F_N, Z * kf);

	lab[0] = 116.0f * fy - 16.0f;
	lab[1] = 500.0f * (fx - fy);
	lab[2] = 200.0f * (fy - fz);
}

static inline float de2(const float *a, const float *b)
{
	float d0 = a[0] - b[0], d1 = a[1] - b[1], d2 = a[2] - b[2];
	return d0 * d0 + d1 * d1 + d2 * d2;
}

/* Whether lab is a darker copy of the background colour m: (L+16, a, b)
 * scales together when light is dimmed (Lab's cube root), so a shadow is
 * k * m with k in 0.5..1, within tol. */
static inline bool shadow_like(const float *lab, const float *m, float tol)
{
	float v0 = lab[0] + 16, m0 = m[0] + 16;
	float mm = m0 * m0 + m[1] * m[1] + m[2] * m[2];
	float k, e0, e1, e2;

	if (mm < 1)
		return false;
	k = (v0 * m0 + lab[1] * m[1] + lab[2] * m[2]) / mm;
	if (k < 0.5f || k > 1.0f)
		return false;
	e0 = v0 - k * m0;
	e1 = lab[1] - k * m[1];
	e2 = lab[2] - k * m[2];
	return e0 * e0 + e1 * e1 + e2 * e2 <= tol * tol;
}

static pm_status vips_fail(pm_err *err, const char *what)
{
	return pm_vips_fail(err, PM_ERR_DECODE, what);
}

/* New reference to an in-memory 8-bit sRGB image of 3 or 4 bands (the
 * fourth alpha) equivalent to in. 0 or -1 (libvips error set). */
static int prepare(VipsImage *in, VipsImage **out)
{
	VipsImage *img = in, *t = NULL;

	g_object_ref(img);
	if (img->Bands <= 2 && img->Coding == VIPS_CODING_NONE &&
	    vips_image_get_interpretation(img) != VIPS_INTERPRETATION_B_W &&
	    vips_image_get_interpretation(img) != VIPS_INTERPRETATION_GREY16) {
		if (vips_copy(img, &t, "interpretation",
			      img->BandFmt == VIPS_FORMAT_USHORT
				  ? VIPS_INTERPRETATION_GREY16
				  : VIPS_INTERPRETATION_B_W,
			      NULL))
			goto fail;
		g_object_unref(img);
		img = t;
	}
	if (img->Coding != VIPS_CODING_NONE || img->Bands < 3 ||
	    vips_image_get_interpretation(img) != VIPS_INTERPRETATION_sRGB) {
		if (vips_colourspace(img, &t, VIPS_INTERPRETATION_sRGB, NULL))
			goto fail;
		g_object_unref(img);
		img = t;
	}
	if (img->Bands > 4 || img->Bands == 2) {
		if (vips_extract_band(img, &t, 0, "n", img->Bands > 4 ? 3 : 1,
				      NULL))
			goto fail;
		g_object_unref(img);
		img = t;
	}
	if (img->BandFmt != VIPS_FORMAT_UCHAR) {
		if (vips_cast_uchar(img, &t, NULL))
			goto fail;
		g_object_unref(img);
		img = t;
	}
	if (img->Bands < 3) {
		VipsImage *three[3] = {img, img, img};
		if (vips_bandjoin(three, &t, 3, NULL))
			goto fail;
		g_object_unref(img);
		img = t;
	}
	t = vips_image_copy_memory(img); /* a new ref if already in memory */
	g_object_unref(img);
	if (!t)
		return -1;
	*out = t;
	return 0;
fail:
	g_object_unref(img);
	return -1;
}

/* Everything one call allocates; freed by cut_free. */
typedef struct cut {
	int W, H, nb;	   /* input size and bands (3, or 4 with alpha) */
	const uint8_t *px; /* input pixels, borrowed from img */
	size_t stride;	   /* bytes per input row */
	int w, h;	   /* working copy */
	int *bx, *by;	   /* bin edges: w + 1, h + 1 input columns/rows */
	int *xmap;	   /* input column -> working column */
	float *rgb;	   /* w * h * 3, 0..255 */
	float *lab;	   /* w * h * 3 */
	float *mdl;	   /* w * h * 3: background model per pixel */
	float *d;	   /* w * h: ΔE from the model */
	uint8_t *cls;	   /* w * h: 0 fg, 1 bg colour, 2 bg shadow */
	uint8_t *edge;	   /* w * h: mixed 3x3 neighbourhood */
	int *queue;	   /* w * h */
	int *comp;	   /* w * h component ids */
	int *border;	   /* indices of the border ring */
	int n_border;
	double coef[3][6]; /* model: per Lab channel, 1 u v u2 v2 uv */
	float tol;	   /* effective tolerance */
	uint8_t *alpha;	   /* W * H, handed to the result */
	uint16_t *tmp;	   /* (2r + 1) * W ring: the feather pass */
	uint8_t *ca, *cb;  /* w * h cell sets for the feather */
} cut;

static void cut_free(cut *c)
{
	free(c->bx);
	free(c->by);
	free(c->xmap);
	free(c->rgb);
	free(c->lab);
	free(c->mdl);
	free(c->d);
	free(c->cls);
	free(c->edge);
	free(c->queue);
	free(c->comp);
	free(c->border);
	free(c->alpha);
	free(c->tmp);
	free(c->ca);
	free(c->cb);
}

static inline double clamp01(double x)
{
	return x < 0 ? 0 : x > 1 ? 1 : x;
}

/* Bin edges e[0..n] splitting 0..N into n non-empty runs; map[0..N)
 * (if not NULL) gives each index's bin. */
static void bins(int N, int n, int *e, int *map)
{
	for (int j = 0; j <= n; j++)
		e[j] = (int)((int64_t)j * N / n);
	for (int j = 0; j < n && map; j++)
		for (int x = e[j]; x < e[j + 1]; x++)
			map[x] = j;
}

/* Step 1: the working copy, in sRGB and Lab. */
static void downscale(cut *c)
{
	int w = c->w, h = c->h, nb = c->nb;
	uint32_t *acc = (uint32_t *)c->queue; /* w * 3 fits in w * h */

	for (int i = 0; i < h; i++) {
		int n_rows = c->by[i + 1] - c->by[i];
		memset(acc, 0, (size_t)w * 3 * sizeof *acc);
		for (int y = c->by[i]; y < c->by[i + 1]; y++) {
			const uint8_t *p = c->px + (size_t)y * c->stride;
			if (nb == 3) {
				for (int j = 0; j < w; j++) {
					uint32_t s0 = 0, s1 = 0, s2 = 0;
					for (int x = c->bx[j]; x < c->bx[j + 1];
					     x++, p += 3) {
						s0 += p[0];
						s1 += p[1];
						s2 += p[2];
					}
					acc[3 * j] += s0;
					acc[3 * j + 1] += s1;
					acc[3 * j + 2] += s2;
				}
			} else {
				for (int x = 0; x < c->W; x++, p += 4) {
					uint32_t *a = acc + 3 * c->xmap[x];
					uint32_t al = p[3],
						 bg = 255 * (255 - al);
					a[0] += (p[0] * al + bg) / 255;
					a[1] += (p[1] * al + bg) / 255;
					a[2] += (p[2] * al + bg) / 255;
				}
			}
		}
		for (int j = 0; j < w; j++) {
			float n = (float)(n_rows * (c->bx[j + 1] - c->bx[j]));
			float *q = c->rgb + 3 * ((size_t)i * w + j);
			q[0] = (float)acc[3 * j] / n;
			q[1] = (float)acc[3 * j + 1] / n;
			q[2] = (float)acc[3 * j + 2] / n;
			rgb_lab(q[0], q[1], q[2],
				c->lab + 3 * ((size_t)i * w + j));
		}
	}
}

/* The quadratic basis at working pixel (x, y). */
static inline void basis(const cut *c, int x, int y, double *b)
{
	double u = c->w > 1 ? (2.0 * x + 1) / c->w - 1 : 0;
	double v = c->h > 1 ? (2.0 * y + 1) / c->h - 1 : 0;
	b[0] = 1;
	b[1] = u;
	b[2] = v;
	b[3] = u * u;
	b[4] = v * v;
	b[5] = u * v;
}

static inline void model_at(const cut *c, int x, int y, float *out)
{
	double b[6];
	basis(c, x, y, b);
	for (int k = 0; k < 3; k++) {
		double s = 0;
		for (int i = 0; i < 6; i++)
			s += c->coef[k][i] * b[i];
		out[k] = (float)s;
	}
}

/* The model and the ΔE from it at every working pixel: per row, the
 * quadratic is A + B u + C u^2. */
static void model_all(cut *c)
{
	for (int y = 0; y < c->h; y++) {
		double b[6], A[3], B[3], C[3];
		basis(c, 0, y, b);
		for (int k = 0; k < 3; k++) {
			const double *q = c->coef[k];
			A[k] = q[0] + q[2] * b[2] + q[4] * b[4];
			B[k] = q[1] + q[5] * b[2];
			C[k] = q[3];
		}
		for (int x = 0; x < c->w; x++) {
			size_t i = (size_t)y * c->w + x;
			float *m = c->mdl + 3 * i;
			double u = c->w > 1 ? (2.0 * x + 1) / c->w - 1 : 0;
			for (int k = 0; k < 3; k++)
				m[k] = (float)(A[k] + u * (B[k] + u * C[k]));
			c->d[i] = sqrtf(de2(c->lab + 3 * i, m));
		}
	}
}

/* Solves the 6x6 system m x = r for 3 right-hand sides (Gaussian
 * elimination, partial pivoting). false if singular. */
static bool solve6(double m[6][6], double r[6][3], double x[3][6])
{
	for (int col = 0; col < 6; col++) {
		int piv = col;
		for (int i = col + 1; i < 6; i++)
			if (fabs(m[i][col]) > fabs(m[piv][col]))
				piv = i;
		if (fabs(m[piv][col]) < 1e-12)
			return false;
		if (piv != col) {
			for (int j = 0; j < 6; j++) {
				double t = m[col][j];
				m[col][j] = m[piv][j];
				m[piv][j] = t;
			}
			for (int k = 0; k < 3; k++) {
				double t = r[col][k];
				r[col][k] = r[piv][k];
				r[piv][k] = t;
			}
		}
		for (int i = col + 1; i < 6; i++) {
			double f = m[i][col] / m[col][col];
			for (int j = col; j < 6; j++)
				m[i][j] -= f * m[col][j];
			for (int k = 0; k < 3; k++)
				r[i][k] -= f * r[col][k];
		}
	}
	for (int k = 0; k < 3; k++)
		for (int i = 5; i >= 0; i--) {
			double s = r[i][k];
			for (int j = i + 1; j < 6; j++)
				s -= m[i][j] * x[k][j];
			x[k][i] = s / m[i][i];
		}
	return true;
}

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return (x > y) - (x < y);
}

/* Step 2: the background model from the border ring. Sets coef, tol and
 * the result's cover, noise and colour. */
static void fit_background(cut *c, double tol0, pm_cutout_fast_result *r)
{
	int n = c->n_border, best = 0, best_n = -1, K = n < 64 ? n : 64;
	float win = (float)(1.5 * tol0), lab[3];
	double seed[3] = {0, 0, 0}, acc_rgb[3] = {0, 0, 0};
	const double th[3] = {3.0, 2.0, 1.5};
	float *dv;
	int m = 0, cnt = 0;

	/* Seed: the ring colour with most ring pixels within win. */
	for (int k = 0; k < K; k++) {
		const float *p =
		    c->lab + 3 * (size_t)c->border[(size_t)k * n / K];
		int cn = 0;
		for (int i = 0; i < n; i++)
			cn += de2(p, c->lab + 3 * (size_t)c->border[i]) <=
			      win * win;
		if (cn > best_n) {
			best_n = cn;
			best = c->border[(size_t)k * n / K];
		}
	}
	for (int i = 0; i < n; i++) {
		const float *q = c->lab + 3 * (size_t)c->border[i];
		if (de2(c->lab + 3 * (size_t)best, q) <= win * win) {
			for (int k = 0; k < 3; k++)
				seed[k] += q[k];
			cnt++;
		}
	}
	memset(c->coef, 0, sizeof c->coef);
	for (int k = 0; k < 3; k++)
		c->coef[k][0] = seed[k] / (cnt ? cnt : 1);

	/* Refit on inliers with shrinking thresholds. The ridge keeps the
	 * fit tame when only part of the ring is background. */
	for (int it = 0; it < 3; it++) {
		double M[6][6] = {{0}}, R[6][3] = {{0}}, X[3][6];
		float t = (float)(th[it] * tol0);
		int in = 0;
		for (int i = 0; i < n; i++) {
			int idx = c->border[i], x = idx % c->w, y = idx / c->w;
			const float *q = c->lab + 3 * (size_t)idx;
			double b[6];
			model_at(c, x, y, lab);
			if (de2(q, lab) > t * t)
				continue;
			basis(c, x, y, b);
			for (int a = 0; a < 6; a++) {
				for (int bb = 0; bb < 6; bb++)
					M[a][bb] += b[a] * b[bb];
				for (int k = 0; k < 3; k++)
					R[a][k] += b[a] * q[k];
			}
			in++;
		}
		if (in < 12)
			break;
		for (int a = 1; a < 6; a++)
			M[a][a] += (a < 3 ? 1e-3 : 2e-2) * in;
		if (!solve6(M, R, X))
			break;
		memcpy(c->coef, X, sizeof X);
	}

	/* Noise: median ΔE of the ring's inliers; cover: share within the
	 * widened tolerance. */
	dv = (float *)c->comp; /* n floats fit in w * h ints */
	for (int i = 0; i < n; i++) {
		int idx = c->border[i];
		model_at(c, idx % c->w, idx / c->w, lab);
		float d = sqrtf(de2(c->lab + 3 * (size_t)idx, lab));
		if (d <= 1.5 * tol0)
			dv[m++] = d;
	}
	if (m > 0) {
		qsort(dv, (size_t)m, sizeof *dv, cmp_float);
		r->border_noise = dv[m / 2];
	} else {
		r->border_noise = 1.5 * tol0;
	}
	c->tol = (float)(tol0 + 2.0 * r->border_noise);
	cnt = 0;
	for (int i = 0; i < n; i++) {
		int idx = c->border[i];
		model_at(c, idx % c->w, idx / c->w, lab);
		if (de2(c->lab + 3 * (size_t)idx, lab) <= c->tol * c->tol) {
			const float *q = c->rgb + 3 * (size_t)idx;
			for (int k = 0; k < 3; k++)
				acc_rgb[k] += q[k];
			cnt++;
		}
	}
	r->border_cover = n ? (double)cnt / n : 0;
	/* Spread: the model on a 5 x 5 grid against its mean there. */
	{
		float g[25][3], mean[3] = {0, 0, 0}, sp = 0;
		for (int k = 0; k < 25; k++) {
			model_at(c, (c->w - 1) * (k % 5) / 4,
				 (c->h - 1) * (k / 5) / 4, g[k]);
			for (int ch = 0; ch < 3; ch++)
				mean[ch] += g[k][ch] / 25;
		}
		for (int k = 0; k < 25; k++)
			sp = fmaxf(sp, sqrtf(de2(g[k], mean)));
		r->bg_spread = sp;
	}
	r->tolerance = c->tol;
	for (int k = 0; k < 3; k++)
		r->bg_rgb[k] = (uint8_t)lrint(acc_rgb[k] / (cnt ? cnt : 1));
}

/* Step 3: flood fill of the background from the border. */
static void flood(cut *c, bool shadows, float step)
{
	int w = c->w, h = c->h, head = 0, tail = 0;
	int *q = c->queue;

	memset(c->cls, 0, (size_t)w * h);
	for (int i = 0; i < c->n_border; i++) {
		int idx = c->border[i], x = idx % w, y = idx / w;
		if ((x == 0 || y == 0 || x == w - 1 || y == h - 1) &&
		    c->d[idx] <= c->tol && !c->cls[idx]) {
			c->cls[idx] = 1;
			q[tail++] = idx;
		}
	}
	while (head < tail) {
		int p = q[head++], x = p % w, y = p / w;
		int nbr[4], nn = 0;
		if (x > 0)
			nbr[nn++] = p - 1;
		if (x < w - 1)
			nbr[nn++] = p + 1;
		if (y > 0)
			nbr[nn++] = p - w;
		if (y < h - 1)
			nbr[nn++] = p + w;
		for (int k = 0; k < nn; k++) {
			int o = nbr[k];
			if (c->cls[o])
				continue;
			if (c->d[o] <= c->tol) {
				c->cls[o] = 1;
				q[tail++] = o;
			} else if (shadows &&
				   de2(c->lab + 3 * (size_t)p,
				       c->lab + 3 * (size_t)o) <= step * step &&
				   shadow_like(c->lab + 3 * (size_t)o,
					       c->mdl + 3 * (size_t)o,
					       c->tol)) {
				c->cls[o] = 2;
				q[tail++] = o;
			}
		}
	}
}

/* Labels the connected components of the pixels set in want (conn 4 or
 * 8) into comp (ids from 1; 0 elsewhere) and their sizes into sizes[id]
 * (room for w * h + 1). Returns the count. */
static int components(cut *c, const uint8_t *want, int conn, int *sizes)
{
	int w = c->w, h = c->h, id = 0;

	memset(c->comp, 0, (size_t)w * h * sizeof *c->comp);
	for (int s = 0; s < w * h; s++) {
		int head = 0, tail = 0;
		if (c->comp[s] || !want[s])
			continue;
		id++;
		c->comp[s] = id;
		c->queue[tail++] = s;
		while (head < tail) {
			int p = c->queue[head++], x = p % w, y = p / w;
			int y0 = y > 0 ? -1 : 0, y1 = y < h - 1 ? 1 : 0;
			int x0 = x > 0 ? -1 : 0, x1 = x < w - 1 ? 1 : 0;
			for (int dy = y0; dy <= y1; dy++)
				for (int dx = x0; dx <= x1; dx++) {
					int o = p + dy * w + dx;
					if ((conn == 4 && dx && dy) ||
					    c->comp[o] || !want[o])
						continue;
					c->comp[o] = id;
					c->queue[tail++] = o;
				}
		}
		sizes[id] = tail;
	}
	return id;
}

/* Step 4: holes (when asked) and specks. Uses edge as scratch. */
static pm_status clean(cut *c, bool holes, pm_err *err)
{
	int n = c->w * c->h, nc, largest = 0;
	uint8_t *want = c->edge;
	int *sizes;
	double min_speck;

	sizes = malloc(((size_t)n + 1) * sizeof *sizes);
	if (!sizes)
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	if (holes) {
		/* enclosed, background-coloured, not tiny */
		int min_hole = n / 2000 > 4 ? n / 2000 : 4;
		for (int i = 0; i < n; i++)
			want[i] = c->cls[i] == 0 && c->d[i] <= c->tol;
		components(c, want, 4, sizes);
		for (int i = 0; i < n; i++)
			if (c->comp[i] && sizes[c->comp[i]] >= min_hole)
				c->cls[i] = 1;
	}
	for (int i = 0; i < n; i++)
		want[i] = c->cls[i] == 0;
	nc = components(c, want, 8, sizes);
	for (int k = 1; k <= nc; k++)
		if (sizes[k] > largest)
			largest = sizes[k];
	min_speck = fmax(n * 0.0002 + 1, largest * 0.02);
	for (int i = 0; i < n; i++)
		if (c->comp[i] && sizes[c->comp[i]] < min_speck)
			c->cls[i] = 1;
	free(sizes);
	return PM_OK;
}

/* Dilates the w x h set src by r cells (square) into dst, with running
 * counts along rows then columns (tmp: w * h scratch). */
static void dilate(const uint8_t *src, uint8_t *dst, uint8_t *tmp, int w, int h,
		   int r)
{
	for (int y = 0; y < h; y++) {
		const uint8_t *s = src + (size_t)y * w;
		uint8_t *t = tmp + (size_t)y * w;
		int cnt = 0;
		for (int x = 0; x < r && x < w; x++)
			cnt += s[x] != 0;
		for (int x = 0; x < w; x++) {
			if (x + r < w)
				cnt += s[x + r] != 0;
			if (x - r - 1 >= 0)
				cnt -= s[x - r - 1] != 0;
			t[x] = cnt > 0;
		}
	}
	for (int x = 0; x < w; x++) {
		int cnt = 0;
		for (int y = 0; y < r && y < h; y++)
			cnt += tmp[(size_t)y * w + x];
		for (int y = 0; y < h; y++) {
			if (y + r < h)
				cnt += tmp[(size_t)(y + r) * w + x];
			if (y - r - 1 >= 0)
				cnt -= tmp[(size_t)(y - r - 1) * w + x];
			dst[(size_t)y * w + x] = cnt > 0;
		}
	}
}

/* Cells whose 3x3 neighbourhood holds both foreground and background:
 * where a 1-cell dilation of the foreground and of the background meet.
 * scratch: 2 * w * h bytes. */
static void find_edges(cut *c, uint8_t *scratch)
{
	size_t n = (size_t)c->w * c->h;
	uint8_t *fg = scratch, *tmp = scratch + n;

	for (size_t i = 0; i < n; i++)
		fg[i] = c->cls[i] == 0;
	dilate(fg, c->edge, tmp, c->w, c->h, 1); /* near foreground */
	for (size_t i = 0; i < n; i++)
		fg[i] = !fg[i];
	dilate(fg, fg, tmp, c->w, c->h, 1); /* near background */
	for (size_t i = 0; i < n; i++)
		c->edge[i] = c->edge[i] && fg[i];
}

/* Whether cell (x, y) or a neighbour was taken as shadow. */
static bool near_shadow(const cut *c, int x, int y)
{
	for (int dy = -1; dy <= 1; dy++)
		for (int dx = -1; dx <= 1; dx++) {
			int nx = x + dx, ny = y + dy;
			if (nx >= 0 && ny >= 0 && nx < c->w && ny < c->h &&
			    c->cls[ny * c->w + nx] == 2)
				return true;
		}
	return false;
}

/* Alpha of one edge-band pixel from its own ΔE: a ramp from half to one
 * and a half times the tolerance (50% at the tolerance); shadow-like
 * pixels next to shadow cells are background. */
static inline uint8_t band_alpha(const uint8_t *p, const float *m, float t,
				 bool sh)
{
	float lab[3], a;

	rgb_lab(p[0], p[1], p[2], lab);
	a = (sqrtf(de2(lab, m)) - 0.5f * t) / t;
	if (a > 0 && sh && shadow_like(lab, m, t))
		a = 0;
	return a <= 0 ? 0 : a >= 1 ? 255 : (uint8_t)lrintf(a * 255);
}

/* Step 5a: the full-resolution alpha. Per working row, the first input
 * row of its bin is filled by runs of equal cells and copied to the
 * others; then the edge cells' pixels are computed one by one. */
static void fill_alpha(cut *c, bool shadows)
{
	int W = c->W, w = c->w;

	for (int i = 0; i < c->h; i++) {
		const uint8_t *cls = c->cls + (size_t)i * w;
		uint8_t *tpl = c->alpha + (size_t)c->by[i] * W;
		for (int j = 0; j < w;) {
			uint8_t v = cls[j] == 0 ? 255 : 0;
			int k = j + 1;
			while (k < w && (cls[k] == 0 ? 255 : 0) == v)
				k++;
			memset(tpl + c->bx[j], v,
			       (size_t)(c->bx[k] - c->bx[j]));
			j = k;
		}
		for (int y = c->by[i] + 1; y < c->by[i + 1]; y++)
			memcpy(c->alpha + (size_t)y * W, tpl, (size_t)W);
		for (int j = 0; j < w; j++) {
			size_t ci = (size_t)i * w + j;
			const float *m = c->mdl + 3 * ci;
			bool sh;
			if (!c->edge[ci])
				continue;
			sh = shadows && near_shadow(c, j, i);
			for (int y = c->by[i]; y < c->by[i + 1]; y++) {
				const uint8_t *src =
				    c->px + (size_t)y * c->stride;
				uint8_t *row = c->alpha + (size_t)y * W;
				for (int x = c->bx[j]; x < c->bx[j + 1]; x++)
					row[x] =
					    band_alpha(src + (size_t)x * c->nb,
						       m, c->tol, sh);
			}
		}
	}
}

/* Input-column spans [x0, x1) of the runs of set cells in one working row
 * of set (w cells); returns the number of spans written to sp (2 ints
 * each, room for w + 1). */
static int row_spans(const cut *c, const uint8_t *set, int *sp)
{
	int n = 0;

	for (int j = 0; j < c->w;) {
		int k;
		if (!set[j]) {
			j++;
			continue;
		}
		for (k = j + 1; k < c->w && set[k]; k++)
			;
		sp[2 * n] = c->bx[j];
		sp[2 * n + 1] = c->bx[k];
		n++;
		j = k;
	}
	return n;
}

/* Step 5b: Gaussian feather of the edge band. Only cells within reach of
 * an edge cell can change (elsewhere the window is one constant value). */
static pm_status feather(cut *c, double radius, pm_err *err)
{
	int W = c->W, H = c->H, w = c->w, h = c->h;
	int r = (int)ceil(radius), kw[2 * MAX_FEATHER + 1], R;
	int min_bin = W / w < H / h ? W / w : H / h;
	double sigma = radius / 2, ksum = 0, kd[2 * MAX_FEATHER + 1];
	uint8_t *scratch;
	int sum = 0, *spans;

	if (radius <= 0)
		return PM_OK;
	if (sigma < 0.3)
		sigma = 0.3;
	for (int k = -r; k <= r; k++)
		ksum += kd[k + r] = exp(-(double)k * k / (2 * sigma * sigma));
	for (int k = -r; k <= r; k++)
		sum += kw[k + r] = (int)lrint(kd[k + r] / ksum * 256);
	kw[r] += 256 - sum; /* weights sum to exactly 256 */
	if (min_bin < 1)
		min_bin = 1;
	R = (r + min_bin - 1) / min_bin;

	/* tmp: a ring of the last 2r + 1 horizontally blurred rows (small,
	 * so no page faults over a whole image's worth of memory) */
	c->tmp = malloc((size_t)(2 * r + 1) * W * sizeof *c->tmp);
	c->ca = malloc((size_t)w * h);
	c->cb = malloc((size_t)w * h);
	scratch = malloc((size_t)w * h);
	spans = malloc(4 * ((size_t)w + 1) * sizeof *spans);
	if (!c->tmp || !c->ca || !c->cb || !scratch || !spans) {
		free(scratch);
		free(spans);
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	}
	dilate(c->edge, c->ca, scratch, w, h, R);     /* output cells */
	dilate(c->edge, c->cb, scratch, w, h, 2 * R); /* horizontal pass */
	free(scratch);

	/* Rows top to bottom: before output row y, the horizontal pass has
	 * run on every row up to y + r (over the cells of cb in its working
	 * row); output row y then reads rows y - r .. y + r from the ring,
	 * over the cells of ca (all within the rows' cb cells). */
	int hi = 0, hcell = -1, hn = 0, vcell = 0, vn = 0, next = 0;
	int *hsp = spans, *vsp = spans + 2 * ((size_t)w + 1);
	const int nr = 2 * r + 1;
	for (int y = 0; y < H; y++) {
		int need = y + r < H ? y + r : H - 1;
		for (; next <= need; next++) {
			const uint8_t *a = c->alpha + (size_t)next * W;
			uint16_t *o = c->tmp + (size_t)(next % nr) * W;
			while (c->by[hi + 1] <= next)
				hi++;
			if (hi != hcell) {
				hn = row_spans(c, c->cb + (size_t)hi * w, hsp);
				hcell = hi;
			}
			for (int k = 0; k < hn; k++)
				for (int x = hsp[2 * k]; x < hsp[2 * k + 1];
				     x++) {
					int sm = 0;
					if (x >= r && x + r < W) {
						for (int t = -r; t <= r; t++)
							sm += kw[t + r] *
							      a[x + t];
					} else {
						for (int t = -r; t <= r; t++) {
							int xx = x + t;
							xx = xx < 0    ? 0
							     : xx >= W ? W - 1
								       : xx;
							sm += kw[t + r] * a[xx];
						}
					}
					o[x] = (uint16_t)sm;
				}
		}
		while (c->by[vcell + 1] <= y)
			vcell++;
		if (y == c->by[vcell])
			vn = row_spans(c, c->ca + (size_t)vcell * w, vsp);
		if (vn) {
			uint8_t *a = c->alpha + (size_t)y * W;
			const uint16_t *rows[2 * MAX_FEATHER + 1];
			for (int t = -r; t <= r; t++) {
				int yy = y + t;
				yy = yy < 0 ? 0 : yy >= H ? H - 1 : yy;
				rows[t + r] = c->tmp + (size_t)(yy % nr) * W;
			}
			for (int k = 0; k < vn; k++)
				for (int x = vsp[2 * k]; x < vsp[2 * k + 1];
				     x++) {
					int sm = 0;
					for (int t = 0; t < nr; t++)
						sm += kw[t] * rows[t][x];
					a[x] = (uint8_t)((sm + 32768) >> 16);
				}
		}
	}
	free(spans);
	return PM_OK;
}

/* Sum of n bytes, eight at a time (16-bit lanes, folded before they can
 * overflow). */
static uint64_t byte_sum(const uint8_t *p, size_t n)
{
	const uint64_t lo = 0x00ff00ff00ff00ffull;
	uint64_t total = 0;
	size_t i = 0;

	while (i + 8 <= n) {
		uint64_t acc = 0;
		for (int k = 0; k < 128 && i + 8 <= n; k++, i += 8) {
			uint64_t v;
			memcpy(&v, p + i, 8);
			acc += (v & lo) + ((v >> 8) & lo);
		}
		total += (acc & 0xffff) + ((acc >> 16) & 0xffff) +
			 ((acc >> 32) & 0xffff) + (acc >> 48);
	}
	for (; i < n; i++)
		total += p[i];
	return total;
}

void pm_cutout_alpha_stats(const uint8_t *alpha, int w, int h, int bbox[4],
			   double *fg_ratio, double *border_fg)
{
	int x0 = w, y0 = h, x1 = -1, y1 = -1, nb = 0, fb = 0;
	uint64_t sum = 0;

	for (int y = 0; y < h; y++) {
		const uint8_t *row = alpha + (size_t)y * w;
		uint64_t rs = byte_sum(row, (size_t)w);
		if (rs) {
			/* only look where the box could still grow */
			for (int x = 0; x < x0; x++)
				if (row[x]) {
					x0 = x;
					break;
				}
			for (int x = w - 1; x > x1; x--)
				if (row[x]) {
					x1 = x;
					break;
				}
			if (y < y0)
				y0 = y;
			y1 = y;
		}
		sum += rs;
		if (y == 0 || y == h - 1) {
			for (int x = 0; x < w; x++)
				fb += row[x] >= 128;
			nb += w;
		} else {
			fb += (row[0] >= 128) + (w > 1 && row[w - 1] >= 128);
			nb += w > 1 ? 2 : 1;
		}
	}
	if (x1 < 0) {
		bbox[0] = bbox[1] = bbox[2] = bbox[3] = 0;
	} else {
		bbox[0] = x0;
		bbox[1] = y0;
		bbox[2] = x1 - x0 + 1;
		bbox[3] = y1 - y0 + 1;
	}
	if (fg_ratio)
		*fg_ratio =
		    w > 0 && h > 0 ? (double)sum / 255.0 / ((double)w * h) : 0;
	if (border_fg)
		*border_fg = nb ? (double)fb / nb : 0;
}

void pm_cutout_fast_defaults(pm_cutout_fast_opts *o)
{
	o->tolerance = 6;
	o->feather = 1.5;
	o->shadows = true;
	o->holes = false;
	o->work_edge = WORK_EDGE;
}

void pm_cutout_fast_result_free(pm_cutout_fast_result *r)
{
	free(r->alpha);
	r->alpha = NULL;
}

/* Step 6: confidence from the working copy; sets r->confidence, reason. */
static void confidence(cut *c, pm_cutout_fast_result *r)
{
	int n = c->w * c->h, fg = 0, ring = 0, ring_fg = 0, past = 0, amb = 0;
	double ratio, bfg, sep, cc[6];
	char why[6][160];
	int weakest = 0;

	for (int i = 0; i < n; i++) {
		int x = i % c->w, y = i / c->w;
		bool f = c->cls[i] == 0;
		fg += f;
		if (x == 0 || y == 0 || x == c->w - 1 || y == c->h - 1) {
			ring++;
			ring_fg += f;
		}
		if (f && !c->edge[i] && c->d[i] > c->tol) {
			past++;
			amb += c->d[i] <= 2 * c->tol;
		}
	}
	ratio = (double)fg / n;
	bfg = ring ? (double)ring_fg / ring : 1;
	sep = past ? (double)amb / past : 0;

	cc[0] = clamp01((r->border_cover - 0.6) / 0.25);
	snprintf(why[0], sizeof why[0],
		 "%.0f%% of the border matches one background colour",
		 100 * r->border_cover);
	cc[1] = clamp01((7 - r->border_noise) / 4);
	snprintf(why[1], sizeof why[1],
		 "the background is not plain (border noise ΔE %.1f)",
		 r->border_noise);
	cc[2] = ratio < 0.02 ? clamp01((ratio - 0.002) / 0.018)
			     : clamp01((0.95 - ratio) / 0.1);
	snprintf(why[2], sizeof why[2], "%s (foreground %.1f%% of the image)",
		 ratio < 0.5 ? "almost nothing differs from the background"
			     : "almost everything differs from the background",
		 100 * ratio);
	cc[3] = clamp01((0.6 - bfg) / 0.3);
	snprintf(why[3], sizeof why[3],
		 "the foreground covers %.0f%% of the image border", 100 * bfg);
	cc[4] = clamp01((0.5 - sep) / 0.3);
	snprintf(why[4], sizeof why[4],
		 "weak separation: %.0f%% of the foreground is within twice "
		 "the tolerance of the background",
		 100 * sep);
	cc[5] = clamp01((30 - r->bg_spread) / 15);
	snprintf(why[5], sizeof why[5],
		 "the background changes too much across the image (ΔE "
		 "%.0f): not one backdrop",
		 r->bg_spread);
	for (int k = 1; k < 6; k++)
		if (cc[k] < cc[weakest])
			weakest = k;
	r->confidence = cc[weakest];
	if (cc[weakest] >= 1)
		snprintf(r->reason, sizeof r->reason,
			 "plain background: %.0f%% of the border within ΔE "
			 "%.1f",
			 100 * r->border_cover, r->tolerance);
	else
		snprintf(r->reason, sizeof r->reason, "%s", why[weakest]);
}

pm_status pm_cutout_fast(VipsImage *in, const pm_cutout_fast_opts *opts,
			 pm_cutout_fast_result *r, pm_err *err)
{
	pm_cutout_fast_opts o = *opts;
	VipsImage *img = NULL;
	cut c;
	pm_status s = PM_OK;
	int longest, bw;
	size_t n;

	pthread_once(&tab_once, tab_init);
	memset(r, 0, sizeof *r);
	memset(&c, 0, sizeof c);
	if (!(o.tolerance >= 0.5))
		o.tolerance = 0.5;
	if (o.tolerance > 100)
		o.tolerance = 100;
	if (!(o.feather >= 0))
		o.feather = 0;
	if (o.feather > MAX_FEATHER)
		o.feather = MAX_FEATHER;
	if (o.work_edge < 16)
		o.work_edge = WORK_EDGE;

	if (prepare(in, &img))
		return vips_fail(err, "cutout: colour conversion failed");
	c.W = vips_image_get_width(img);
	c.H = vips_image_get_height(img);
	c.nb = vips_image_get_bands(img);
	c.px = VIPS_IMAGE_ADDR(img, 0, 0);
	c.stride = VIPS_IMAGE_SIZEOF_LINE(img);
	r->width = c.W;
	r->height = c.H;
	longest = c.W > c.H ? c.W : c.H;
	if (longest <= o.work_edge) {
		c.w = c.W;
		c.h = c.H;
	} else {
		double sc = (double)o.work_edge / longest;
		c.w = (int)lrint(c.W * sc);
		c.h = (int)lrint(c.H * sc);
		c.w = c.w < 1 ? 1 : c.w > c.W ? c.W : c.w;
		c.h = c.h < 1 ? 1 : c.h > c.H ? c.H : c.h;
	}
	n = (size_t)c.w * c.h;
	c.bx = malloc(((size_t)c.w + 1) * sizeof(int));
	c.by = malloc(((size_t)c.h + 1) * sizeof(int));
	c.xmap = malloc((size_t)c.W * sizeof(int));
	c.rgb = malloc(n * 3 * sizeof(float));
	c.lab = malloc(n * 3 * sizeof(float));
	c.mdl = malloc(n * 3 * sizeof(float));
	c.d = malloc(n * sizeof(float));
	c.cls = malloc(n);
	c.edge = malloc(n);
	/* queue doubles as the row accumulator (3 w) of the downscale */
	c.queue =
	    malloc((n > 3 * (size_t)c.w ? n : 3 * (size_t)c.w) * sizeof(int));
	c.comp = malloc(n * sizeof(int));
	c.border = malloc(n * sizeof(int));
	if (!c.bx || !c.by || !c.xmap || !c.rgb || !c.lab || !c.mdl || !c.d ||
	    !c.cls || !c.edge || !c.queue || !c.comp || !c.border) {
		s = pm_fail(err, PM_ERR_NOMEM, "out of memory");
		goto out;
	}
	bins(c.W, c.w, c.bx, c.xmap);
	bins(c.H, c.h, c.by, NULL);
	downscale(&c);

	/* The border ring: about 1% of the short side, at least 1 px. */
	bw = (c.w < c.h ? c.w : c.h) / 100;
	if (bw < 1)
		bw = 1;
	for (int y = 0; y < c.h; y++)
		for (int x = 0; x < c.w; x++)
			if (x < bw || y < bw || x >= c.w - bw || y >= c.h - bw)
				c.border[c.n_border++] = y * c.w + x;

	fit_background(&c, o.tolerance, r);
	if (r->border_cover < 0.3) {
		r->confidence = 0;
		snprintf(r->reason, sizeof r->reason,
			 "the border is not a plain background: %.0f%% of "
			 "it matches one colour",
			 100 * r->border_cover);
		goto out;
	}
	model_all(&c);
	flood(&c, o.shadows, 0.5f * c.tol);
	s = clean(&c, o.holes, err);
	if (s)
		goto out;
	find_edges(&c, (uint8_t *)c.comp); /* comp is free now */
	confidence(&c, r);

	c.alpha = malloc((size_t)c.W * c.H);
	if (!c.alpha) {
		s = pm_fail(err, PM_ERR_NOMEM, "out of memory");
		goto out;
	}
	fill_alpha(&c, o.shadows);
	s = feather(&c, o.feather, err);
	if (s)
		goto out;
	if (c.nb == 4) /* transparent in the source stays transparent */
		for (int y = 0; y < c.H; y++) {
			const uint8_t *p = c.px + (size_t)y * c.stride + 3;
			uint8_t *a = c.alpha + (size_t)y * c.W;
			for (int x = 0; x < c.W; x++, p += 4)
				a[x] = (uint8_t)((a[x] * *p + 127) / 255);
		}
	pm_cutout_alpha_stats(c.alpha, c.W, c.H, r->bbox, &r->fg_ratio, NULL);
	r->alpha = c.alpha;
	c.alpha = NULL;
out:
	cut_free(&c);
	g_object_unref(img);
	return s;
}
