/* cutout_fast.h — classical background removal for studio product shots on
 * a plain or near-plain background (the cutout stage's `fast` engine), and
 * the mask statistics every cut-out engine reports.
 *
 * The background is estimated from the image border in CIELAB (a smooth
 * quadratic model, so gradients and vignettes fit), the border-connected
 * region within a ΔE tolerance of it is flood-filled (so background-coloured
 * areas inside the product are kept), soft shadows joined to the
 * background can be taken with it, specks are dropped, and the edge is
 * refined at full resolution and feathered. All of this works on a small
 * copy (long edge 512) except the edge band, so a 2-MP image takes a few
 * milliseconds. A confidence in 0..1 says whether the result can be
 * trusted; the caller decides what to do under its threshold.
 *
 * Threads: any thread, at once, after pm_image_global_init; no shared
 * mutable state (constant tables are built once under pthread_once).
 */
#ifndef PM_CUTOUT_FAST_H
#define PM_CUTOUT_FAST_H

#include <stdbool.h>
#include <stdint.h>

#include <vips/vips.h>

#include "core/status.h"

typedef struct pm_cutout_fast_opts {
	double tolerance; /* ΔE (CIE76) from the background model beyond which
			     a pixel is foreground; widened by the border's
			     own noise. Default 6. */
	double feather;	  /* edge softening radius in input pixels (0 = a
			     hard edge); default 1.5, at most 20 */
	bool shadows;	  /* soft shadows joined to the background (darker,
			     same chromaticity) go with it; default true */
	bool holes;	  /* enclosed regions that match the background are
			     holes and cut too; default false (they are kept:
			     a white label on a product on white) */
	int work_edge;	  /* long edge of the working copy; default 512 */
} pm_cutout_fast_opts;

typedef struct pm_cutout_fast_result {
	uint8_t *alpha;	   /* width * height, 255 = foreground; malloc'd, owned
			      by the result (pm_cutout_fast_result_free). NULL
			      when under 30% of the border matches one
			      background (then confidence is 0 and reason
			      says why). */
	int width, height; /* of the input */
	int bbox[4];	   /* x, y, w, h of alpha > 0, input pixels; all 0
			      when nothing is foreground */
	double fg_ratio;   /* mean alpha / 255 */
	double confidence; /* 0..1: the weakest of the signals below */
	char reason[200];  /* the weakest signal, in words */
	uint8_t bg_rgb[3]; /* background colour at the border (sRGB) */
	double tolerance;  /* the ΔE actually used */
	double border_cover; /* share of the border matching the background */
	double border_noise; /* median ΔE of the border from the model */
	double bg_spread;    /* largest ΔE of the model across the image from
				its mean: how far from one flat colour */
} pm_cutout_fast_result;

void pm_cutout_fast_defaults(pm_cutout_fast_opts *o);

/* Computes the cut-out mask of in (any libvips image: converted to 8-bit
 * sRGB as needed; an alpha band is respected: transparent stays
 * transparent). in is borrowed. On success *r is filled (r->alpha may be
 * NULL, see above); free it with pm_cutout_fast_result_free. Fails only on
 * libvips or memory errors. */
pm_status pm_cutout_fast(VipsImage *in, const pm_cutout_fast_opts *o,
			 pm_cutout_fast_result *r, pm_err *err);

void pm_cutout_fast_result_free(pm_cutout_fast_result *r);

/* Statistics of any alpha mask (w * h, 255 = foreground): bounding box of
 * alpha > 0 (x, y, w, h; zeros if empty), mean alpha / 255, and the share
 * of the outermost pixel ring with alpha >= 128. */
void pm_cutout_alpha_stats(const uint8_t *alpha, int w, int h, int bbox[4],
			   double *fg_ratio, double *border_fg);

#endif
