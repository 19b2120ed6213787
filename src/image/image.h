/* image.h — everything pixmill does to one image: sniff its format from its
 * bytes, probe its header against limits before decoding, decode it once
 * with shrink-on-load, resize, encode, and measure it (perceptual hash,
 * dominant colours, sharpness).
 *
 * Built on libvips. Call pm_image_global_init once per process before any
 * other function (it blocks untrusted loaders and sets libvips to one thread
 * per operation: pixmill parallelises across images, not inside one).
 *
 * Threads: after pm_image_global_init, every function may be called from any
 * thread at once; each call works only on its arguments. VipsImage pointers
 * follow GObject reference counting: an out parameter is a new reference
 * owned by the caller (g_object_unref when done).
 */
#ifndef PM_IMAGE_H
#define PM_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <vips/vips.h>

#include "core/status.h"

/* ---- formats (sniff.c) ---- */

typedef enum pm_format {
	PM_FMT_UNKNOWN = 0,
	PM_FMT_JPEG,
	PM_FMT_PNG,
	PM_FMT_WEBP,
	PM_FMT_GIF,
	PM_FMT_TIFF,
	PM_FMT_BMP,
	PM_FMT_HEIF, /* HEIC/HEIF (ftyp heic, heix, mif1, msf1, hevc...) */
	PM_FMT_AVIF, /* ftyp avif/avis */
	PM_FMT_JXL,
	PM_FMT_SVG,
	PM_FMT_PDF,
	PM_FMT_ICO,
	PM_FMT_PSD,
	PM_FMT_COUNT
} pm_format;

/* Format from the first bytes (up to 64 are looked at); never reads past
 * len. PM_FMT_UNKNOWN if nothing matches. */
pm_format pm_sniff(const void *buf, size_t len);
/* "jpeg", "png", "webp", "gif", "tiff", "bmp", "heif", "avif", "jxl",
 * "svg", "pdf", "ico", "psd", "unknown". */
const char *pm_format_name(pm_format f);
/* Inverse of pm_format_name (also accepts "jpg", "tif"); PM_FMT_UNKNOWN if
 * unknown. */
pm_format pm_format_parse(const char *s);
/* Whether pixmill decodes this format (JPEG, PNG, WebP, GIF, TIFF, HEIF,
 * AVIF). Others are refused as PM_ERR_UNSUPPORTED before libvips sees them. */
bool pm_format_decodable(pm_format f);
/* MIME type, e.g. "image/webp". */
const char *pm_format_mime(pm_format f);

/* ---- probe, decode, encode (image.c) ---- */

typedef struct pm_limits {
	uint64_t max_bytes;  /* source bytes */
	uint64_t max_pixels; /* width * height of one frame */
	int max_width;
	int max_height;
	int max_frames; /* frames/pages in the file */
} pm_limits;

/* Sane defaults: 256 MiB, 100 MP, 30000 x 30000, 1000 frames. */
void pm_limits_default(pm_limits *l);

typedef struct pm_header {
	pm_format format;
	int width, height; /* as stored (before EXIF orientation) */
	int frames;	   /* pages/frames, >= 1 */
	int bands;
	int orientation; /* EXIF orientation 1..8 (1 if absent) */
	bool has_alpha;
	bool has_icc;
	char interpretation[24]; /* e.g. "srgb", "cmyk", "b-w" */
} pm_header;

/* Call before VIPS_INIT: keeps libvips from loading its dynamic modules at
 * start-up (ImageMagick, PDF, OpenSlide, JPEG XL: ~35 ms we never use, as
 * pixmill refuses those formats anyway). The HEIF/AVIF module is then
 * loaded on first use. Does nothing if the user set VIPSHOME. */
void pm_image_preinit(void);
void pm_image_global_init(void);

/* Sniffs buf and reads only its header; refuses what it must before any
 * pixel is decoded: unknown or undecodable formats (PM_ERR_UNSUPPORTED),
 * bytes/pixels/dimensions/frames over lim (PM_ERR_TOO_LARGE), unreadable
 * headers (PM_ERR_DECODE). */
pm_status pm_image_probe(const void *buf, size_t len, const pm_limits *lim,
			 pm_header *out, pm_err *err);

/* Moves libvips' error buffer into err (one line, prefixed with what)
 * and clears it; returns s. Any thread (libvips' buffer is per thread). */
pm_status pm_vips_fail(pm_err *err, pm_status s, const char *what);
/* Replaces *img (a reference the caller owns) with next, dropping the old
 * one; next's reference moves to *img. */
void pm_vips_swap(VipsImage **img, VipsImage *next);

/* Decodes buf once, shrinking on load so the long edge is at most
 * long_edge (never enlarged), applying EXIF orientation, converting to
 * sRGB (8-bit, 3 or 4 bands), first frame only. The result is in memory.
 * keep_meta keeps EXIF/XMP/ICC on the image for encoders to copy. */
pm_status pm_image_decode(const void *buf, size_t len, int long_edge,
			  bool keep_meta, VipsImage **out, pm_err *err);

/* Resizes an in-memory image so its long edge is at most long_edge (never
 * enlarged; a smaller image is returned as a new reference unchanged). */
pm_status pm_image_fit(VipsImage *in, int long_edge, VipsImage **out,
		       pm_err *err);

typedef struct pm_encode_opts {
	pm_format format; /* JPEG, PNG, WEBP, AVIF */
	int quality;	  /* 1..100 (lossy formats) */
	int effort;	  /* encoder effort; -1 = our default for the format
			     (webp 2, others libvips') */
	bool keep_meta;	  /* copy metadata into the output */
} pm_encode_opts;

/* Encodes into a new buffer owned by the caller (g_free). */
pm_status pm_image_encode(VipsImage *in, const pm_encode_opts *o, void **buf,
			  size_t *len, pm_err *err);

/* ---- measurements (analyze.c) ---- */

/* 64-bit DCT perceptual hash (pHash-style: 32x32 luminance, 8x8 low
 * frequencies without DC compared with their median). Similar images have a
 * small Hamming distance. */
pm_status pm_image_phash(VipsImage *in, uint64_t *out, pm_err *err);
int pm_phash_distance(uint64_t a, uint64_t b);

typedef struct pm_color {
	uint8_t r, g, b;
	double share; /* fraction of pixels, 0..1 */
} pm_color;

/* Up to max dominant colours (k-means in a perceptual space on a small
 * copy), sorted by share, descending. *n receives how many were found.
 * Deterministic: the same image gives the same colours. */
pm_status pm_image_colors(VipsImage *in, int max, pm_color *out, int *n,
			  pm_err *err);

/* Sharpness score: variance of the Laplacian of the luminance on a copy
 * scaled to a 256-px long edge (so images of any size compare). */
pm_status pm_image_sharpness(VipsImage *in, double *out, pm_err *err);

#endif
