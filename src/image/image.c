/* image.c — probe, decode-once, fit and encode, on libvips.
 *
 * The order of defences for a hostile file: sniff the bytes (unknown and
 * untrusted formats never reach libvips), read only the header and compare
 * bytes, dimensions, pixels and frames with the limits, and only then
 * decode, with shrink-on-load so a large JPEG is decoded at 1/2, 1/4 or 1/8
 * scale straight from its DCT coefficients. Loaders run with
 * fail_on=error so a truncated or corrupt file is an error, not a grey
 * image.
 *
 * Threads: after pm_image_global_init, any thread; calls share nothing.
 */
#include "image/image.h"

#include <gmodule.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#ifndef PM_VIPS_MODULEDIR
#define PM_VIPS_MODULEDIR "/usr/lib/x86_64-linux-gnu/vips-modules-8.14"
#endif

static bool lazy_modules; /* preinit kept libvips from loading modules */
static pthread_once_t heif_once = PTHREAD_ONCE_INIT;

void pm_image_preinit(void)
{
	/* libvips finds its modules under $VIPSHOME/lib; a prefix with no
	 * modules in it means none are loaded. */
	if (getenv("VIPSHOME"))
		return;
	setenv("VIPSHOME", "/nonexistent/pixmill-no-vips-modules", 1);
	lazy_modules = true;
}

static void load_heif(void)
{
	/* The module registers its loaders and savers when opened
	 * (g_module_check_init); it stays loaded for the process. */
	GModule *m = g_module_open(PM_VIPS_MODULEDIR "/vips-heif.so",
				   G_MODULE_BIND_LAZY | G_MODULE_BIND_LOCAL);
	if (m)
		g_module_make_resident(m);
}

/* HEIF/AVIF support, loaded on first need; any thread. */
static void need_heif(void)
{
	if (lazy_modules)
		pthread_once(&heif_once, load_heif);
}

void pm_limits_default(pm_limits *l)
{
	l->max_bytes = 256ull << 20;
	l->max_pixels = 100000000ull;
	l->max_width = 30000;
	l->max_height = 30000;
	l->max_frames = 1000;
}

void pm_image_global_init(void)
{
	/* One thread per libvips operation: pixmill runs one image per worker
	 * thread, so inner threads would only fight over the same cores. */
	vips_concurrency_set(1);
	/* Every image is new; the operation cache would only hold memory. */
	vips_cache_set_max(0);
	vips_cache_set_max_mem(0);
	/* Refuse loaders libvips marks untrusted (ImageMagick, PDF, SVG...). */
	vips_block_untrusted_set(TRUE);
}

pm_status pm_vips_fail(pm_err *err, pm_status s, const char *what)
{
	char buf[400];
	const char *v = vips_error_buffer();
	size_t n;

	snprintf(buf, sizeof buf, "%s", v ? v : "");
	vips_error_clear();
	/* Keep the message on one line. */
	for (n = 0; buf[n]; n++)
		if (buf[n] == '\n')
			buf[n] = buf[n + 1] ? ';' : '\0';
	return pm_fail(err, s, "%s: %s", what, buf[0] ? buf : "libvips error");
}

void pm_vips_swap(VipsImage **img, VipsImage *next)
{
	g_object_unref(*img);
	*img = next;
}

pm_status pm_image_probe(const void *buf, size_t len, const pm_limits *lim,
			 pm_header *out, pm_err *err)
{
	pm_format f;
	VipsImage *im;
	const char *interp;
	uint64_t px;

	memset(out, 0, sizeof *out);
	if (len == 0)
		return pm_fail(err, PM_ERR_DECODE, "empty file");
	if (len > lim->max_bytes)
		return pm_fail(err, PM_ERR_TOO_LARGE,
			       "%zu bytes is over the limit of %llu", len,
			       (unsigned long long)lim->max_bytes);
	f = pm_sniff(buf, len);
	out->format = f;
	if (f == PM_FMT_UNKNOWN)
		return pm_fail(err, PM_ERR_UNSUPPORTED,
			       "not an image format pixmill knows");
	if (!pm_format_decodable(f))
		return pm_fail(err, PM_ERR_UNSUPPORTED,
			       "%s images are not decoded (untrusted or "
			       "unsupported format)",
			       pm_format_name(f));

	if (f == PM_FMT_HEIF || f == PM_FMT_AVIF)
		need_heif();
	im = vips_image_new_from_buffer(buf, len, "", "access",
					VIPS_ACCESS_SEQUENTIAL, NULL);
	if (!im)
		return pm_vips_fail(err, PM_ERR_DECODE, "unreadable header");

	out->width = vips_image_get_width(im);
	out->height = vips_image_get_height(im);
	out->bands = vips_image_get_bands(im);
	out->frames = vips_image_get_n_pages(im);
	if (out->frames < 1)
		out->frames = 1;
	out->orientation = vips_image_get_orientation(im);
	if (out->orientation < 1 || out->orientation > 8)
		out->orientation = 1;
	out->has_alpha = vips_image_hasalpha(im);
	out->has_icc = vips_image_get_typeof(im, VIPS_META_ICC_NAME) != 0;
	interp = vips_enum_nick(VIPS_TYPE_INTERPRETATION,
				vips_image_get_interpretation(im));
	snprintf(out->interpretation, sizeof out->interpretation, "%s",
		 interp ? interp : "unknown");
	g_object_unref(im);

	/* Multi-page loaders report the height of one page when n=1. */
	px = (uint64_t)out->width * (uint64_t)out->height;
	if (out->width <= 0 || out->height <= 0)
		return pm_fail(err, PM_ERR_DECODE, "bad dimensions %dx%d",
			       out->width, out->height);
	if (out->width > lim->max_width || out->height > lim->max_height)
		return pm_fail(err, PM_ERR_TOO_LARGE,
			       "%dx%d is over the %dx%d dimension limit",
			       out->width, out->height, lim->max_width,
			       lim->max_height);
	if (px > lim->max_pixels)
		return pm_fail(err, PM_ERR_TOO_LARGE,
			       "%llu pixels is over the limit of %llu",
			       (unsigned long long)px,
			       (unsigned long long)lim->max_pixels);
	if (out->frames > lim->max_frames)
		return pm_fail(err, PM_ERR_TOO_LARGE,
			       "%d frames is over the limit of %d", out->frames,
			       lim->max_frames);
	return PM_OK;
}

/* Removes every metadata field an encoder would copy. */
static void *strip_field(VipsImage *im, const char *name, GValue *v, void *a)
{
	(void)v;
	(void)a;
	if (strcmp(name, VIPS_META_EXIF_NAME) == 0 ||
	    strcmp(name, VIPS_META_XMP_NAME) == 0 ||
	    strcmp(name, VIPS_META_IPTC_NAME) == 0 ||
	    strcmp(name, VIPS_META_ICC_NAME) == 0 ||
	    strcmp(name, VIPS_META_PHOTOSHOP_NAME) == 0 ||
	    strncmp(name, "exif-", 5) == 0 ||
	    strncmp(name, "png-comment", 11) == 0 ||
	    strncmp(name, "gif-", 4) == 0)
		vips_image_remove(im, name);
	return NULL;
}

static void strip_meta(VipsImage *im)
{
	/* vips_image_map walks a snapshot of the names, so removing while
	 * walking is safe. */
	vips_image_map(im, strip_field, NULL);
}

/* in is consumed (unreffed) in every case; *out is a new reference. */
static int to_srgb8(VipsImage *in, VipsImage **out)
{
	VipsImage *t = NULL;

	if (vips_image_get_interpretation(in) != VIPS_INTERPRETATION_sRGB ||
	    vips_image_get_format(in) != VIPS_FORMAT_UCHAR) {
		if (vips_colourspace(in, &t, VIPS_INTERPRETATION_sRGB, NULL)) {
			g_object_unref(in);
			return -1;
		}
		g_object_unref(in);
		in = t;
	}
	if (vips_image_get_format(in) != VIPS_FORMAT_UCHAR) {
		if (vips_cast_uchar(in, &t, NULL)) {
			g_object_unref(in);
			return -1;
		}
		g_object_unref(in);
		in = t;
	}
	*out = in;
	return 0;
}

pm_status pm_image_decode(const void *buf, size_t len, int long_edge,
			  bool keep_meta, VipsImage **out, pm_err *err)
{
	VipsImage *t = NULL, *mem;

	*out = NULL;
	/* long_edge <= 0: any size, so the image's own (SIZE_DOWN never
	 * enlarges; the probe has already bounded the pixels). */
	if (long_edge <= 0)
		long_edge = VIPS_MAX_COORD;
	/* fail_on=error: a truncated or corrupt file fails instead of being
	 * padded with grey. */
	if (vips_thumbnail_buffer((void *)buf, len, &t, long_edge, "height",
				  long_edge, "size", VIPS_SIZE_DOWN,
				  "option_string", "fail_on=error", NULL))
		return pm_vips_fail(err, PM_ERR_DECODE, "decode failed");
	if (to_srgb8(t, &t))
		return pm_vips_fail(err, PM_ERR_DECODE,
				    "colour conversion failed");
	/* Run the whole lazy pipeline (decode, shrink, colour) once, here. */
	mem = vips_image_copy_memory(t);
	g_object_unref(t);
	if (!mem)
		return pm_vips_fail(err, PM_ERR_DECODE, "decode failed");
	if (!keep_meta)
		strip_meta(mem);
	vips_image_remove(mem, VIPS_META_ORIENTATION);
	*out = mem;
	return PM_OK;
}

pm_status pm_image_fit(VipsImage *in, int long_edge, VipsImage **out,
		       pm_err *err)
{
	int w = vips_image_get_width(in), h = vips_image_get_height(in);
	int longest = w > h ? w : h;
	double scale;
	VipsImage *t = NULL, *r = NULL;
	bool alpha = vips_image_hasalpha(in);

	*out = NULL;
	if (longest <= long_edge) {
		g_object_ref(in);
		*out = in;
		return PM_OK;
	}
	scale = (double)long_edge / longest;
	if (alpha) {
		/* Resample premultiplied so transparent pixels do not bleed
		 * their colour into the edges. */
		if (vips_premultiply(in, &t, NULL))
			return pm_vips_fail(err, PM_ERR_ENCODE,
					    "resize failed");
		if (vips_resize(t, &r, scale, NULL)) {
			g_object_unref(t);
			return pm_vips_fail(err, PM_ERR_ENCODE,
					    "resize failed");
		}
		g_object_unref(t);
		if (vips_unpremultiply(r, &t, NULL)) {
			g_object_unref(r);
			return pm_vips_fail(err, PM_ERR_ENCODE,
					    "resize failed");
		}
		g_object_unref(r);
		if (vips_cast_uchar(t, &r, NULL)) {
			g_object_unref(t);
			return pm_vips_fail(err, PM_ERR_ENCODE,
					    "resize failed");
		}
		g_object_unref(t);
	} else if (vips_resize(in, &r, scale, NULL)) {
		return pm_vips_fail(err, PM_ERR_ENCODE, "resize failed");
	}
	*out = vips_image_copy_memory(r);
	g_object_unref(r);
	if (!*out)
		return pm_vips_fail(err, PM_ERR_ENCODE, "resize failed");
	return PM_OK;
}

pm_status pm_image_encode(VipsImage *in, const pm_encode_opts *o, void **buf,
			  size_t *len, pm_err *err)
{
	VipsImage *flat = NULL;
	int rc;
	int q = o->quality > 0 && o->quality <= 100 ? o->quality : 80;
	gboolean strip = !o->keep_meta;

	*buf = NULL;
	*len = 0;
	switch (o->format) {
	case PM_FMT_WEBP:
		/* Our default effort is 2, not libvips' 4: on the bundled
		 * examples it takes 0.54x the CPU for 1.9% more bytes
		 * (docs/BENCHMARKS.md, "WebP effort"). */
		rc = vips_webpsave_buffer(in, buf, len, "Q", q, "effort",
					  o->effort >= 0 ? o->effort : 2,
					  "strip", strip, NULL);
		break;
	case PM_FMT_JPEG:
		if (vips_image_hasalpha(in)) {
			double white[3] = {255, 255, 255};
			VipsArrayDouble *bg = vips_array_double_new(white, 3);
			rc = vips_flatten(in, &flat, "background", bg, NULL);
			vips_area_unref(VIPS_AREA(bg));
			if (rc)
				break;
			in = flat;
		}
		rc = vips_jpegsave_buffer(in, buf, len, "Q", q,
					  "optimize_coding", TRUE, "strip",
					  strip, NULL);
		break;
	case PM_FMT_PNG:
		rc = vips_pngsave_buffer(in, buf, len, "compression",
					 o->effort >= 0 ? o->effort : 6,
					 "strip", strip, NULL);
		break;
	case PM_FMT_AVIF:
		need_heif();
		rc = o->effort >= 0
			 ? vips_heifsave_buffer(
			       in, buf, len, "Q", q, "compression",
			       VIPS_FOREIGN_HEIF_COMPRESSION_AV1, "effort",
			       o->effort, "strip", strip, NULL)
			 : vips_heifsave_buffer(
			       in, buf, len, "Q", q, "compression",
			       VIPS_FOREIGN_HEIF_COMPRESSION_AV1, "strip",
			       strip, NULL);
		break;
	default:
		return pm_fail(err, PM_ERR_UNSUPPORTED, "cannot encode %s",
			       pm_format_name(o->format));
	}
	if (flat)
		g_object_unref(flat);
	if (rc)
		return pm_vips_fail(err, PM_ERR_ENCODE, "encode failed");
	return PM_OK;
}
