/* test_image_analyze.c — unit tests for src/image/sniff.c (format magic,
 * names, MIME types) and src/image/analyze.c (perceptual hash, dominant
 * colours, sharpness) on images synthesised with libvips, plus photos from
 * /work/shared/corpus/photos when that directory exists.
 *
 * Also prints the time of phash + colours + sharpness on a 1024-px image
 * (informational; meaningful only in an optimised, unsanitised build).
 * Threads: single-threaded test program (the harness counters are not
 * atomic).
 */
#include "image/image.h"
#include "test.h"

#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#define PHOTO_DIR "/work/shared/corpus/photos"

/* ---- sniff ---- */

/* Sniffs a heap copy of exactly len bytes, so ASan sees any over-read. */
static pm_format sniff_exact(const void *p, size_t len)
{
	uint8_t *b = malloc(len ? len : 1);
	if (len)
		memcpy(b, p, len);
	pm_format f = pm_sniff(b, len);
	free(b);
	return f;
}

struct sample {
	const char *what;
	const uint8_t *bytes;
	size_t len; /* bytes of sample */
	size_t sig; /* bytes needed to recognise it */
	pm_format fmt;
};

static const uint8_t s_jpeg[] = {0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 'J',
				 'F',  'I',  'F',  0x00, 0x01, 0x01, 0x00};
static const uint8_t s_png[] = {0x89, 'P',  'N',  'G',	0x0D, 0x0A, 0x1A, 0x0A,
				0x00, 0x00, 0x00, 0x0D, 'I',  'H',  'D',  'R'};
static const uint8_t s_gif87[] = "GIF87a\x10\x00\x10\x00";
static const uint8_t s_gif89[] = "GIF89a\x10\x00\x10\x00";
static const uint8_t s_webp[] = "RIFF\x24\x00\x00\x00WEBPVP8 ";
static const uint8_t s_tiff_ii[] = {'I',  'I',	0x2A, 0x00, 0x08,
				    0x00, 0x00, 0x00, 0x00, 0x00};
static const uint8_t s_tiff_mm[] = {'M',  'M',	0x00, 0x2A, 0x00,
				    0x00, 0x00, 0x08, 0x00, 0x00};
static const uint8_t s_bmp[] = {'B',  'M',  0x46, 0x00, 0x00, 0x00, 0x00,
				0x00, 0x00, 0x00, 0x36, 0x00, 0x00, 0x00,
				0x28, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00,
				0x00, 0x02, 0x00, 0x00, 0x00};
static const uint8_t s_heic[] = {0x00, 0x00, 0x00, 0x18, 'f', 't', 'y', 'p',
				 'h',  'e',  'i',  'c',	 0,   0,   0,	0,
				 'm',  'i',  'f',  '1',	 'h', 'e', 'i', 'c'};
static const uint8_t s_avif[] = {
    0x00, 0x00, 0x00, 0x1C, 'f', 't', 'y', 'p', 'a', 'v', 'i', 'f', 0,	 0,
    0,	  0,	'a',  'v',  'i', 'f', 'm', 'i', 'f', '1', 'm', 'i', 'a', 'f'};
/* AVIF with major brand mif1: the avif compatible brand wins */
static const uint8_t s_avif_mif1[] = {
    0x00, 0x00, 0x00, 0x20, 'f', 't', 'y', 'p', 'm', 'i', 'f',
    '1',  0,	0,    0,    0,	 'm', 'i', 'f', '1', 'm', 'i',
    'a',  'f',	'M',  'A',  '1', 'B', 'a', 'v', 'i', 'f'};
/* a 256-byte ftyp box starts 00 00 01 00, like an ICO */
static const uint8_t s_heic256[] = {0x00, 0x00, 0x01, 0x00, 'f', 't', 'y',
				    'p',  'h',	'e',  'i',  'x', 0,   0,
				    0,	  0,	'm',  'i',  'f', '1'};
static const uint8_t s_jxl_cs[] = {0xFF, 0x0A, 0xFA, 0x7F, 0x01, 0x90};
static const uint8_t s_jxl_box[] = {0x00, 0x00, 0x00, 0x0C, 'J',  'X',
				    'L',  ' ',	0x0D, 0x0A, 0x87, 0x0A,
				    0x00, 0x00, 0x00, 0x14};
static const uint8_t s_pdf[] = "%PDF-1.7\n%\xE2\xE3";
static const uint8_t s_ico[] = {0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x10,
				0x10, 0x00, 0x00, 0x01, 0x00, 0x20, 0x00};
static const uint8_t s_psd[] = {'8', 'B', 'P', 'S', 0x00, 0x01,
				0,   0,	  0,   0,   0,	  0};
static const uint8_t s_svg[] = "<svg xmlns=\"http://www.w3.org/2000/svg\"/>";
static const uint8_t s_svg_bom[] = "\xEF\xBB\xBF \n\t<svg width=\"1\"/>";
static const uint8_t s_svg_xml[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n"
    "<!DOCTYPE svg PUBLIC \"-//W3C//DTD SVG 1.1//EN\" "
    "\"http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd\">\n"
    "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"10\"/>";

#define SAMPLE(w, a, sig, f)                                                   \
	{                                                                      \
		w, a, sizeof a, sig, f                                         \
	}
#define SAMPLE_S(w, a, sig, f)                                                 \
	{                                                                      \
		w, a, sizeof a - 1, sig, f                                     \
	}

static const struct sample samples[] = {
    SAMPLE("jpeg", s_jpeg, 3, PM_FMT_JPEG),
    SAMPLE("png", s_png, 8, PM_FMT_PNG),
    SAMPLE_S("gif87a", s_gif87, 6, PM_FMT_GIF),
    SAMPLE_S("gif89a", s_gif89, 6, PM_FMT_GIF),
    SAMPLE_S("webp", s_webp, 12, PM_FMT_WEBP),
    SAMPLE("tiff ii", s_tiff_ii, 4, PM_FMT_TIFF),
    SAMPLE("tiff mm", s_tiff_mm, 4, PM_FMT_TIFF),
    SAMPLE("bmp", s_bmp, 18, PM_FMT_BMP),
    SAMPLE("heic", s_heic, 12, PM_FMT_HEIF),
    SAMPLE("avif", s_avif, 12, PM_FMT_AVIF),
    SAMPLE("avif/mif1", s_avif_mif1, 32, PM_FMT_AVIF),
    SAMPLE("heix 256", s_heic256, 12, PM_FMT_HEIF),
    SAMPLE("jxl codestream", s_jxl_cs, 2, PM_FMT_JXL),
    SAMPLE("jxl container", s_jxl_box, 12, PM_FMT_JXL),
    SAMPLE_S("pdf", s_pdf, 5, PM_FMT_PDF),
    SAMPLE("ico", s_ico, 14, PM_FMT_ICO),
    SAMPLE("psd", s_psd, 6, PM_FMT_PSD),
    SAMPLE_S("svg", s_svg, 4, PM_FMT_SVG),
    SAMPLE_S("svg bom", s_svg_bom, 10, PM_FMT_SVG),
    SAMPLE_S("svg xml", s_svg_xml, 161, PM_FMT_SVG),
};
#define NSAMPLES (sizeof samples / sizeof samples[0])

static void test_sniff_magic(void)
{
	for (size_t i = 0; i < NSAMPLES; i++) {
		const struct sample *s = &samples[i];
		pm_format f = sniff_exact(s->bytes, s->len);
		if (f != s->fmt)
			fprintf(stderr, "sample %s sniffed as %s\n", s->what,
				pm_format_name(f));
		CHECK_INT(f, s->fmt);
		/* exactly the signature is enough; one byte less is not */
		CHECK_INT(sniff_exact(s->bytes, s->sig), s->fmt);
		/* every prefix: never another format, UNKNOWN if short */
		int bad = 0;
		for (size_t n = 0; n < s->len; n++) {
			pm_format g = sniff_exact(s->bytes, n);
			/* a cut ftyp box may show only the mif1 brand */
			if (g != PM_FMT_UNKNOWN && g != s->fmt &&
			    !(s->fmt == PM_FMT_AVIF && g == PM_FMT_HEIF))
				bad++;
			if (n < s->sig && g != PM_FMT_UNKNOWN &&
			    s->fmt != PM_FMT_SVG &&
			    !(s->fmt == PM_FMT_AVIF && g == PM_FMT_HEIF))
				bad++;
		}
		if (bad)
			fprintf(stderr, "sample %s: %d bad prefixes\n", s->what,
				bad);
		CHECK_INT(bad, 0);
	}
	CHECK_INT(pm_sniff(NULL, 0), PM_FMT_UNKNOWN);
	CHECK_INT(pm_sniff(NULL, 10), PM_FMT_UNKNOWN);
	CHECK_INT(sniff_exact("", 0), PM_FMT_UNKNOWN);
}

static void test_sniff_negative(void)
{
	/* near misses */
	CHECK_INT(sniff_exact("GIF88a......", 12), PM_FMT_UNKNOWN);
	CHECK_INT(sniff_exact("RIFF\0\0\0\0WAVEfmt ", 16), PM_FMT_UNKNOWN);
	CHECK_INT(sniff_exact("BM this is text, not a bitmap", 29),
		  PM_FMT_UNKNOWN);
	CHECK_INT(sniff_exact("8BPS\0\x09......", 12), PM_FMT_UNKNOWN);
	CHECK_INT(sniff_exact("\0\0\1\0\0\0\0\0\0\0", 10), PM_FMT_UNKNOWN);
	CHECK_INT(sniff_exact("hello world", 11), PM_FMT_UNKNOWN);
	static const uint8_t mp4[] = {
	    0x00, 0x00, 0x00, 0x18, 'f', 't', 'y', 'p', 'i', 's', 'o', 'm',
	    0,	  0,	2,    0,    'i', 's', 'o', 'm', 'm', 'p', '4', '2'};
	CHECK_INT(sniff_exact(mp4, sizeof mp4), PM_FMT_UNKNOWN);
	/* compatible brands beyond the box size are not brands */
	static const uint8_t short_box[] = {
	    0x00, 0x00, 0x00, 0x10, 'f', 't', 'y', 'p', 'i', 's',
	    'o',  'm',	0,    0,    0,	 0,   'a', 'v', 'i', 'f'};
	CHECK_INT(sniff_exact(short_box, sizeof short_box), PM_FMT_UNKNOWN);
	const char *xml = "<?xml version=\"1.0\"?><html><body/></html>";
	CHECK_INT(sniff_exact(xml, strlen(xml)), PM_FMT_UNKNOWN);
	CHECK_INT(sniff_exact("<svgfoo/>", 9), PM_FMT_UNKNOWN);
	CHECK_INT(sniff_exact("   <svg>", 8), PM_FMT_SVG);
	/* "<svg" past the 256-byte window is not looked for */
	char big[600];
	memset(big, ' ', sizeof big);
	memcpy(big, "<?xml version=\"1.0\"?>", 21);
	memcpy(big + 400, "<svg>", 5);
	CHECK_INT(sniff_exact(big, sizeof big), PM_FMT_UNKNOWN);
	/* a bigger buffer does not change the answer */
	uint8_t pad[200];
	memset(pad, 0xAB, sizeof pad);
	memcpy(pad, s_png, sizeof s_png);
	CHECK_INT(sniff_exact(pad, sizeof pad), PM_FMT_PNG);
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static void test_sniff_random(void)
{
	/* random bytes, and magic-prefixed random bytes, of every length
	 * 0..70: never crash or over-read, always a valid enum */
	uint8_t buf[80];
	int bad = 0;
	for (int it = 0; it < 20000; it++) {
		size_t len = rng() % 71;
		for (size_t i = 0; i < len; i++)
			buf[i] = (uint8_t)rng();
		if (it % 2) {
			const struct sample *s = &samples[rng() % NSAMPLES];
			size_t k = rng() % (s->len + 1);
			memcpy(buf, s->bytes, k < len ? k : len);
		}
		pm_format f = sniff_exact(buf, len);
		if ((unsigned)f >= PM_FMT_COUNT)
			bad++;
		if (!pm_format_name(f))
			bad++;
	}
	CHECK_INT(bad, 0);
}

static void test_format_names(void)
{
	static const char *names[PM_FMT_COUNT] = {
	    "unknown", "jpeg", "png", "webp", "gif", "tiff", "bmp",
	    "heif",    "avif", "jxl", "svg",  "pdf", "ico",  "psd"};
	for (int f = 0; f < PM_FMT_COUNT; f++) {
		CHECK_STR(pm_format_name((pm_format)f), names[f]);
		CHECK_INT(pm_format_parse(pm_format_name((pm_format)f)), f);
		const char *m = pm_format_mime((pm_format)f);
		CHECK(m != NULL && strchr(m, '/') != NULL);
	}
	CHECK_INT(pm_format_parse("jpg"), PM_FMT_JPEG);
	CHECK_INT(pm_format_parse("JPEG"), PM_FMT_JPEG);
	CHECK_INT(pm_format_parse("tif"), PM_FMT_TIFF);
	CHECK_INT(pm_format_parse("Png"), PM_FMT_PNG);
	CHECK_INT(pm_format_parse("heic"), PM_FMT_HEIF);
	CHECK_INT(pm_format_parse("bogus"), PM_FMT_UNKNOWN);
	CHECK_INT(pm_format_parse("jpegx"), PM_FMT_UNKNOWN);
	CHECK_INT(pm_format_parse(""), PM_FMT_UNKNOWN);
	CHECK_INT(pm_format_parse(NULL), PM_FMT_UNKNOWN);
	CHECK_STR(pm_format_name((pm_format)99), "unknown");
	CHECK_STR(pm_format_name((pm_format)-1), "unknown");
	CHECK_STR(pm_format_mime(PM_FMT_WEBP), "image/webp");
	CHECK_STR(pm_format_mime(PM_FMT_JPEG), "image/jpeg");
	CHECK_STR(pm_format_mime(PM_FMT_SVG), "image/svg+xml");
	CHECK_STR(pm_format_mime((pm_format)99), "application/octet-stream");

	int ndec = 0;
	for (int f = 0; f < PM_FMT_COUNT; f++)
		ndec += pm_format_decodable((pm_format)f);
	CHECK_INT(ndec, 7);
	CHECK(pm_format_decodable(PM_FMT_JPEG));
	CHECK(pm_format_decodable(PM_FMT_PNG));
	CHECK(pm_format_decodable(PM_FMT_WEBP));
	CHECK(pm_format_decodable(PM_FMT_GIF));
	CHECK(pm_format_decodable(PM_FMT_TIFF));
	CHECK(pm_format_decodable(PM_FMT_HEIF));
	CHECK(pm_format_decodable(PM_FMT_AVIF));
	CHECK(!pm_format_decodable(PM_FMT_SVG));
	CHECK(!pm_format_decodable(PM_FMT_UNKNOWN));
	CHECK(!pm_format_decodable((pm_format)99));
}

/* ---- synthetic images (each returns a new in-memory reference, or NULL
 * after reporting a failed CHECK) ---- */

static VipsImage *need(int rc, VipsImage *t)
{
	if (rc) {
		fprintf(stderr, "vips: %s\n", vips_error_buffer());
		vips_error_clear();
		CHECK(!"vips call failed");
		return NULL;
	}
	return t;
}

/* Takes ownership of lazy; returns an in-memory sRGB copy. */
static VipsImage *finish(VipsImage *lazy, VipsInterpretation it)
{
	if (!lazy)
		return NULL;
	VipsImage *t = NULL, *m;
	int rc = vips_copy(lazy, &t, "interpretation", it, NULL);
	g_object_unref(lazy);
	if (rc)
		return need(rc, NULL);
	m = vips_image_copy_memory(t);
	g_object_unref(t);
	return need(m == NULL, m);
}

static VipsImage *mk_flat(int w, int h, int bands, const double *v)
{
	VipsImage *b = NULL, *o = NULL;
	double one[4] = {1, 1, 1, 1};
	if (vips_black(&b, w, h, "bands", bands, NULL))
		return need(-1, NULL);
	int rc =
	    vips_linear(b, &o, one, (double *)v, bands, "uchar", TRUE, NULL);
	g_object_unref(b);
	if (rc)
		return need(rc, NULL);
	return finish(o, bands >= 3 ? VIPS_INTERPRETATION_sRGB
				    : VIPS_INTERPRETATION_B_W);
}

static VipsImage *mk_rgb(int w, int h, double r, double g, double b)
{
	double v[3] = {r, g, b};
	return mk_flat(w, h, 3, v);
}

/* Grey noise of sigma 60 around 128, replicated to 3 bands. */
static VipsImage *mk_noise(int w, int h, int seed)
{
	VipsImage *n = NULL, *t = NULL, *u = NULL;
	if (vips_gaussnoise(&n, w, h, "sigma", 60.0, "mean", 128.0, "seed",
			    seed, NULL))
		return need(-1, NULL);
	int rc = vips_cast(n, &t, VIPS_FORMAT_UCHAR, NULL);
	g_object_unref(n);
	if (rc)
		return need(rc, NULL);
	VipsImage *in[3] = {t, t, t};
	rc = vips_bandjoin(in, &u, 3, NULL);
	g_object_unref(t);
	if (rc)
		return need(rc, NULL);
	return finish(u, VIPS_INTERPRETATION_sRGB);
}

/* A smooth random scene: 16x12 noise enlarged to w x h (soft blobs, the
 * low-frequency content a perceptual hash looks at). */
static VipsImage *mk_blobs(int w, int h, int seed)
{
	VipsImage *n = mk_noise(16, 12, seed), *o = NULL;
	if (!n)
		return NULL;
	int rc = vips_resize(n, &o, w / 16.0, "vscale", h / 12.0, "kernel",
			     VIPS_KERNEL_CUBIC, NULL);
	g_object_unref(n);
	if (rc)
		return need(rc, NULL);
	return finish(o, VIPS_INTERPRETATION_sRGB);
}

/* Left half a, right half b. */
static VipsImage *mk_halves(VipsImage *a, VipsImage *b)
{
	VipsImage *o = NULL;
	if (!a || !b)
		return NULL;
	if (vips_join(a, b, &o, VIPS_DIRECTION_HORIZONTAL, NULL))
		return need(-1, NULL);
	return finish(o, VIPS_INTERPRETATION_sRGB);
}

static VipsImage *mk_resized(VipsImage *in, double scale)
{
	VipsImage *o = NULL;
	if (!in)
		return NULL;
	if (vips_resize(in, &o, scale, NULL))
		return need(-1, NULL);
	return finish(o, VIPS_INTERPRETATION_sRGB);
}

static VipsImage *mk_blurred(VipsImage *in, double sigma)
{
	VipsImage *o = NULL;
	if (!in)
		return NULL;
	if (vips_gaussblur(in, &o, sigma, NULL))
		return need(-1, NULL);
	return finish(o, VIPS_INTERPRETATION_sRGB);
}

/* in plus gaussian noise of the given sigma. */
static VipsImage *mk_noisy(VipsImage *in, double sigma, int seed)
{
	VipsImage *n = NULL, *s = NULL, *c = NULL;
	if (!in)
		return NULL;
	if (vips_gaussnoise(&n, in->Xsize, in->Ysize, "sigma", sigma, "mean",
			    0.0, "seed", seed, NULL))
		return need(-1, NULL);
	int rc = vips_add(in, n, &s, NULL);
	g_object_unref(n);
	if (rc)
		return need(rc, NULL);
	rc = vips_cast(s, &c, VIPS_FORMAT_UCHAR, NULL);
	g_object_unref(s);
	if (rc)
		return need(rc, NULL);
	return finish(c, VIPS_INTERPRETATION_sRGB);
}

/* x (axis 0) or y (axis 1) ramp 0..255, grey. */
static VipsImage *mk_gradient(int w, int h, int axis)
{
	VipsImage *xy = NULL, *b = NULL, *o = NULL;
	if (vips_xyz(&xy, w, h, NULL))
		return need(-1, NULL);
	int rc = vips_extract_band(xy, &b, axis, NULL);
	g_object_unref(xy);
	if (rc)
		return need(rc, NULL);
	double s = 255.0 / ((axis ? h : w) - 1);
	rc = vips_linear1(b, &o, s, 0.0, "uchar", TRUE, NULL);
	g_object_unref(b);
	if (rc)
		return need(rc, NULL);
	return finish(o, VIPS_INTERPRETATION_B_W);
}

static void unref(VipsImage *im)
{
	if (im)
		g_object_unref(im);
}

static bool near(double a, double b, double tol)
{
	return fabs(a - b) <= tol;
}

/* ---- colours ---- */

static void test_colors(void)
{
	pm_color c[16];
	int n = -1;
	pm_err err = {{0}};

	VipsImage *red = mk_rgb(200, 150, 255, 0, 0);
	if (!red)
		return;
	CHECK_INT(pm_image_colors(red, 8, c, &n, &err), PM_OK);
	CHECK_INT(n, 1);
	CHECK(c[0].r >= 253 && c[0].g <= 2 && c[0].b <= 2);
	CHECK(near(c[0].share, 1.0, 1e-9));

	/* deterministic and bounded by max */
	pm_color c2[16];
	int n2 = -1;
	CHECK_INT(pm_image_colors(red, 1, c2, &n2, &err), PM_OK);
	CHECK_INT(n2, 1);
	CHECK(c2[0].r == c[0].r && c2[0].g == c[0].g && c2[0].b == c[0].b);
	CHECK_INT(pm_image_colors(red, 0, c2, &n2, &err), PM_OK);
	CHECK_INT(n2, 0);
	CHECK(pm_image_colors(red, 4, NULL, &n2, &err) != PM_OK);

	VipsImage *blue = mk_rgb(100, 150, 0, 0, 255);
	VipsImage *half = mk_halves(red, blue); /* 300 x 150: 2/3 red */
	VipsImage *red2 = mk_rgb(100, 150, 255, 0, 0);
	VipsImage *even = mk_halves(red2, blue); /* 200 x 150: half each */
	if (half && even) {
		CHECK_INT(pm_image_colors(even, 8, c, &n, &err), PM_OK);
		CHECK(n >= 2);
		bool red_first = c[0].r > 200;
		const pm_color *r = red_first ? &c[0] : &c[1];
		const pm_color *b = red_first ? &c[1] : &c[0];
		CHECK(r->r >= 250 && r->g <= 5 && r->b <= 5);
		CHECK(b->b >= 250 && b->r <= 5 && b->g <= 5);
		CHECK(near(c[0].share, 0.5, 0.04));
		CHECK(near(c[1].share, 0.5, 0.04));
		CHECK(c[0].share + c[1].share > 0.97);
		double sum = 0;
		for (int i = 0; i < n; i++) {
			sum += c[i].share;
			if (i)
				CHECK(c[i].share <= c[i - 1].share);
		}
		CHECK(near(sum, 1.0, 1e-9));

		CHECK_INT(pm_image_colors(half, 8, c, &n, &err), PM_OK);
		CHECK(n >= 2);
		CHECK(c[0].r >= 250 && c[0].b <= 5); /* red is the larger */
		CHECK(near(c[0].share, 2.0 / 3, 0.04));
		CHECK(c[1].b >= 250 && c[1].r <= 5);
		CHECK(near(c[1].share, 1.0 / 3, 0.04));
		/* max = 1: the one colour is between them */
		CHECK_INT(pm_image_colors(even, 1, c, &n, &err), PM_OK);
		CHECK_INT(n, 1);
		CHECK(near(c[0].share, 1.0, 1e-9));
	}
	unref(half);
	unref(even);
	unref(red2);
	unref(blue);
	unref(red);

	/* grey 1-band */
	double grey = 128;
	VipsImage *g = mk_flat(64, 64, 1, &grey);
	if (g) {
		CHECK_INT(pm_image_colors(g, 16, c, &n, &err), PM_OK);
		CHECK_INT(n, 1);
		CHECK(c[0].r == 128 && c[0].g == 128 && c[0].b == 128);
	}
	unref(g);

	/* alpha is flattened against white */
	double clear[4] = {255, 0, 0, 0}, opaque[4] = {0, 200, 0, 255};
	double halfa[2] = {0, 128};
	VipsImage *ta = mk_flat(80, 80, 4, clear);
	VipsImage *oa = mk_flat(80, 80, 4, opaque);
	VipsImage *ga = mk_flat(80, 80, 2, halfa);
	if (ta && oa && ga) {
		CHECK_INT(pm_image_colors(ta, 4, c, &n, &err), PM_OK);
		CHECK_INT(n, 1);
		CHECK(c[0].r == 255 && c[0].g == 255 && c[0].b == 255);
		CHECK_INT(pm_image_colors(oa, 4, c, &n, &err), PM_OK);
		CHECK_INT(n, 1);
		CHECK(c[0].r <= 1 && near(c[0].g, 200, 1) && c[0].b <= 1);
		CHECK_INT(pm_image_colors(ga, 4, c, &n, &err), PM_OK);
		CHECK_INT(n, 1);
		CHECK(near(c[0].r, 127, 2) && c[0].r == c[0].g);
	}
	unref(ta);
	unref(oa);
	unref(ga);

	/* noise: max colours, all distinct, sorted */
	VipsImage *nz = mk_noise(300, 200, 7);
	if (nz) {
		CHECK_INT(pm_image_colors(nz, 40, c, &n, &err), PM_OK);
		CHECK(n >= 2 && n <= 16);
		int sorted = 1;
		for (int i = 1; i < n; i++)
			sorted &= c[i].share <= c[i - 1].share;
		CHECK(sorted);
		pm_color d[16];
		int m = 0;
		CHECK_INT(pm_image_colors(nz, 40, d, &m, &err), PM_OK);
		int same = m == n;
		for (int i = 0; same && i < n; i++)
			same = c[i].r == d[i].r && c[i].g == d[i].g &&
			       c[i].b == d[i].b && c[i].share == d[i].share;
		CHECK(same);
	}
	unref(nz);
}

/* ---- phash ---- */

static void test_phash(void)
{
	pm_err err = {{0}};
	uint64_t a = 0, b = 0;

	CHECK_INT(pm_phash_distance(0, 0), 0);
	CHECK_INT(pm_phash_distance(0, ~0ull), 64);
	CHECK_INT(pm_phash_distance(0xF0, 0x0F), 8);

	VipsImage *n1 = mk_blobs(512, 384, 11);
	VipsImage *n2 = mk_blobs(512, 384, 12);
	VipsImage *small = mk_resized(n1, 0.37);
	VipsImage *noisy = mk_noisy(n1, 8, 99);
	if (n1 && n2 && small && noisy) {
		CHECK_INT(pm_image_phash(n1, &a, &err), PM_OK);
		CHECK_INT(pm_image_phash(n1, &b, &err), PM_OK);
		CHECK(a == b);
		CHECK(!(a & 1)); /* the DC slot is never set */
		/* 63 AC bits split at their median: 31 above */
		CHECK_INT(__builtin_popcountll(a), 31);
		CHECK_INT(pm_image_phash(small, &b, &err), PM_OK);
		CHECK(pm_phash_distance(a, b) <= 6);
		CHECK_INT(pm_image_phash(noisy, &b, &err), PM_OK);
		CHECK(pm_phash_distance(a, b) <= 6);
		CHECK_INT(pm_image_phash(n2, &b, &err), PM_OK);
		int d = pm_phash_distance(a, b);
		if (d < 20)
			fprintf(stderr, "different images: distance %d\n", d);
		CHECK(d >= 20);
	}
	unref(n1);
	unref(n2);
	unref(small);
	unref(noisy);

	/* A gradient along x and one along y are NOT far apart by this
	 * hash: a 1-D image has DCT energy only in row 0 (or column 0), so
	 * the two can differ in at most 14 of the 63 bits, and with most
	 * coefficients 0 the median rule leaves nearly all bits clear in
	 * both. 2-D scenes (above, and the photos) are what it separates. */
	VipsImage *gx = mk_gradient(400, 300, 0),
		  *gy = mk_gradient(400, 300, 1);
	if (gx && gy) {
		CHECK_INT(pm_image_phash(gx, &a, &err), PM_OK);
		CHECK_INT(pm_image_phash(gy, &b, &err), PM_OK);
		CHECK(pm_phash_distance(a, b) <= 14);
	}
	unref(gx);
	unref(gy);

	/* a flat image hashes to 0; tiny and thin images work */
	double v[3] = {10, 200, 30};
	VipsImage *flat = mk_flat(50, 40, 3, v);
	VipsImage *dot = mk_flat(1, 1, 3, v);
	VipsImage *thin = mk_noise(2000, 1, 3);
	if (flat && dot && thin) {
		CHECK_INT(pm_image_phash(flat, &a, &err), PM_OK);
		CHECK(a == 0);
		CHECK_INT(pm_image_phash(dot, &a, &err), PM_OK);
		CHECK(a == 0);
		CHECK_INT(pm_image_phash(thin, &a, &err), PM_OK);
	}
	unref(flat);
	unref(dot);
	unref(thin);
}

/* ---- sharpness ---- */

static void test_sharpness(void)
{
	pm_err err = {{0}};
	double s1 = -1, s2 = -1, s3 = -1;

	VipsImage *nz = mk_noise(1024, 768, 5);
	VipsImage *bl = mk_blurred(nz, 4.0);
	double v[3] = {90, 90, 200};
	VipsImage *flat = mk_flat(640, 480, 3, v);
	if (nz && bl && flat) {
		CHECK_INT(pm_image_sharpness(nz, &s1, &err), PM_OK);
		CHECK_INT(pm_image_sharpness(bl, &s2, &err), PM_OK);
		CHECK(s1 > 0 && s2 > 0);
		CHECK(s1 > 10 * s2);
		CHECK_INT(pm_image_sharpness(flat, &s3, &err), PM_OK);
		CHECK(s3 < 1e-9);
		double again = -1;
		CHECK_INT(pm_image_sharpness(nz, &again, &err), PM_OK);
		CHECK(again == s1);
	}
	unref(nz);
	unref(bl);
	unref(flat);

	/* small images are measured as is; under 3 px scores 0 */
	VipsImage *tiny = mk_noise(2, 50, 4);
	VipsImage *sm = mk_noise(100, 80, 4);
	if (tiny && sm) {
		CHECK_INT(pm_image_sharpness(tiny, &s1, &err), PM_OK);
		CHECK(s1 == 0);
		CHECK_INT(pm_image_sharpness(sm, &s1, &err), PM_OK);
		CHECK(s1 > 1000); /* noise of sigma 60, not blurred */
	}
	unref(tiny);
	unref(sm);
}

/* ---- odd inputs and errors ---- */

static void test_odd_inputs(void)
{
	pm_err err = {{0}};
	uint64_t h = 0;
	double s = 0;
	pm_color c[4];
	int n = 0;

	CHECK(pm_image_phash(NULL, &h, &err) != PM_OK);
	CHECK(err.msg[0] != '\0');
	CHECK(pm_image_sharpness(NULL, &s, &err) != PM_OK);
	CHECK(pm_image_colors(NULL, 4, c, &n, &err) != PM_OK);

	/* 16-bit RGB and float images are converted, not misread */
	VipsImage *red = mk_rgb(64, 48, 255, 0, 0), *t16 = NULL, *r16 = NULL;
	if (red && !vips_cast(red, &t16, VIPS_FORMAT_USHORT, NULL)) {
		VipsImage *t = NULL;
		if (!vips_linear1(t16, &t, 257.0, 0.0, NULL) &&
		    !vips_cast(t, &r16, VIPS_FORMAT_USHORT, NULL)) {
			VipsImage *u = r16;
			r16 = finish(u, VIPS_INTERPRETATION_RGB16);
		}
		unref(t);
	}
	if (r16) {
		CHECK_INT(pm_image_colors(r16, 4, c, &n, &err), PM_OK);
		CHECK_INT(n, 1);
		CHECK(c[0].r >= 253 && c[0].g <= 2 && c[0].b <= 2);
		CHECK_INT(pm_image_sharpness(r16, &s, &err), PM_OK);
		CHECK(s < 1e-9);
	} else {
		CHECK(!"could not make a 16-bit image");
	}
	unref(t16);
	unref(r16);
	unref(red);

	/* a lazy image (decoded a strip at a time) measures as its in-memory
	 * copy does */
	VipsImage *bl = mk_blobs(300, 200, 5);
	void *enc = NULL;
	size_t elen = 0;
	if (bl && !vips_pngsave_buffer(bl, &enc, &elen, NULL)) {
		VipsImage *lazy = vips_image_new_from_buffer(
		    enc, elen, "", "access", VIPS_ACCESS_SEQUENTIAL, NULL);
		uint64_t h1 = 1, h2 = 2;
		pm_color c1[8], c2[8];
		int n1 = 0, n2 = -1;
		double s1 = 1, s2 = 2;
		CHECK(lazy != NULL);
		if (lazy) {
			CHECK_INT(pm_image_phash(bl, &h1, &err), PM_OK);
			CHECK_INT(pm_image_phash(lazy, &h2, &err), PM_OK);
			CHECK(h1 == h2);
			g_object_unref(lazy);
		}
		/* sequential access: a fresh image for each measurement */
		lazy = vips_image_new_from_buffer(enc, elen, "", NULL);
		if (lazy) {
			CHECK_INT(pm_image_colors(bl, 8, c1, &n1, &err), PM_OK);
			CHECK_INT(pm_image_colors(lazy, 8, c2, &n2, &err),
				  PM_OK);
			CHECK(n1 == n2 && c1[0].r == c2[0].r &&
			      c1[0].share == c2[0].share);
			CHECK_INT(pm_image_sharpness(bl, &s1, &err), PM_OK);
			CHECK_INT(pm_image_sharpness(lazy, &s2, &err), PM_OK);
			CHECK(s1 == s2);
			g_object_unref(lazy);
		}
	}
	g_free(enc);
	unref(bl);

	/* a lazy image whose pixels fail to decode: an error, not a crash */
	VipsImage *nz = mk_noise(256, 256, 1);
	void *png = NULL;
	size_t len = 0;
	if (nz &&
	    !vips_pngsave_buffer(nz, &png, &len, "compression", 0, NULL)) {
		VipsImage *bad = vips_image_new_from_buffer(png, len / 2, "",
							    "fail", TRUE, NULL);
		if (bad) {
			err.msg[0] = '\0';
			pm_status st = pm_image_phash(bad, &h, &err);
			CHECK_INT(st, PM_ERR_DECODE);
			CHECK(err.msg[0] != '\0');
			g_object_unref(bad);
		}
		vips_error_clear();
	}
	g_free(png);
	unref(nz);
}

/* ---- concurrency: one shared image, measured from several threads ---- */

struct job {
	VipsImage *im;
	uint64_t h;
	double sharp;
	pm_color c[8];
	int n;
	int fails;
};

static void *job_run(void *arg)
{
	struct job *j = arg;
	pm_err err;
	for (int i = 0; i < 10; i++) {
		j->fails += pm_image_phash(j->im, &j->h, &err) != PM_OK;
		j->fails +=
		    pm_image_colors(j->im, 8, j->c, &j->n, &err) != PM_OK;
		j->fails += pm_image_sharpness(j->im, &j->sharp, &err) != PM_OK;
	}
	return NULL;
}

static void test_threads(void)
{
	VipsImage *im = mk_blobs(400, 300, 8);
	if (!im)
		return;
	struct job jobs[4];
	pthread_t th[4];
	for (int i = 0; i < 4; i++) {
		memset(&jobs[i], 0, sizeof jobs[i]);
		jobs[i].im = im;
		CHECK_INT(pthread_create(&th[i], NULL, job_run, &jobs[i]), 0);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	int same = 1;
	for (int i = 0; i < 4; i++) {
		CHECK_INT(jobs[i].fails, 0);
		same &= jobs[i].h == jobs[0].h &&
			jobs[i].sharp == jobs[0].sharp &&
			jobs[i].n == jobs[0].n &&
			jobs[i].c[0].share == jobs[0].c[0].share;
	}
	CHECK(same);
	g_object_unref(im);
}

/* ---- photos from the shared corpus (skipped if absent) ---- */

static VipsImage *load_fit(const char *path, int edge)
{
	VipsImage *t = NULL;
	if (vips_thumbnail(path, &t, edge, "size", VIPS_SIZE_DOWN, NULL))
		return need(-1, NULL);
	return finish(t, VIPS_INTERPRETATION_sRGB);
}

static int list_photos(char names[][512], int max)
{
	DIR *d = opendir(PHOTO_DIR);
	if (!d)
		return 0;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) && n < max) {
		size_t l = strlen(e->d_name);
		if (l > 4 && (strcmp(e->d_name + l - 4, ".jpg") == 0 ||
			      strcmp(e->d_name + l - 4, ".png") == 0))
			snprintf(names[n++], 512, "%s/%s", PHOTO_DIR,
				 e->d_name);
	}
	closedir(d);
	qsort(names, (size_t)n, 512,
	      (int (*)(const void *, const void *))strcmp);
	return n;
}

static void test_photos(void)
{
	static char names[64][512];
	int np = list_photos(names, 64);
	if (np == 0) {
		printf("%s absent: photo checks skipped\n", PHOTO_DIR);
		return;
	}
	pm_err err = {{0}};
	int worst = 0, checked = 0;
	uint64_t hashes[64];
	for (int i = 0; i < np; i++) {
		VipsImage *a = load_fit(names[i], 1024);
		VipsImage *b = mk_resized(a, 0.5);
		uint64_t ha = 0, hb = 0;
		if (a && b && pm_image_phash(a, &ha, &err) == PM_OK &&
		    pm_image_phash(b, &hb, &err) == PM_OK) {
			int d = pm_phash_distance(ha, hb);
			if (d > 6)
				fprintf(stderr, "%s: 50%% distance %d\n",
					names[i], d);
			CHECK(d <= 6);
			worst = d > worst ? d : worst;
			hashes[checked++] = ha;
		} else {
			CHECK(!"photo phash failed");
		}
		unref(a);
		unref(b);
	}
	/* different photos are mostly far apart */
	int pairs = 0, far = 0;
	for (int i = 0; i < checked; i++)
		for (int j = i + 1; j < checked; j++, pairs++)
			far += pm_phash_distance(hashes[i], hashes[j]) >= 16;
	CHECK(pairs == 0 || far >= pairs * 9 / 10);
	printf("photos: %d checked, worst 50%% phash distance %d, "
	       "%d/%d distinct pairs >= 16 apart\n",
	       checked, worst, far, pairs);
}

/* ---- timing ---- */

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void time_analysis(void)
{
	static char names[64][512];
	VipsImage *im = NULL;
	const char *what = "synthetic 1024x768";
	int np = list_photos(names, 64);
	if (np > 0) {
		im = load_fit(names[0], 1024);
		what = names[0];
	}
	if (!im)
		im = mk_blobs(1024, 768, 21);
	if (!im)
		return;
	pm_err err = {{0}};
	uint64_t h;
	pm_color c[8];
	int n;
	double s;
	int iters = 40;
	double t_ph = 0, t_co = 0, t_sh = 0;
	for (int i = 0; i < iters; i++) {
		double t0 = now_ms();
		pm_image_phash(im, &h, &err);
		double t1 = now_ms();
		pm_image_colors(im, 8, c, &n, &err);
		double t2 = now_ms();
		pm_image_sharpness(im, &s, &err);
		double t3 = now_ms();
		t_ph += t1 - t0;
		t_co += t2 - t1;
		t_sh += t3 - t2;
	}
	printf("timing (%s, %dx%d, %d bands): phash %.2f ms, colors %.2f ms, "
	       "sharpness %.2f ms, total %.2f ms per image\n",
	       what, im->Xsize, im->Ysize, im->Bands, t_ph / iters,
	       t_co / iters, t_sh / iters, (t_ph + t_co + t_sh) / iters);
	g_object_unref(im);
}

int main(int argc, char **argv)
{
	if (VIPS_INIT(argv[0]))
		return 2;
	vips_concurrency_set(1); /* as pm_image_global_init does */
	vips_cache_set_max(0);

	test_sniff_magic();
	test_sniff_negative();
	test_sniff_random();
	test_format_names();
	test_colors();
	test_phash();
	test_sharpness();
	test_odd_inputs();
	test_threads();
	test_photos();
	if (argc < 2 || strcmp(argv[1], "--no-timing") != 0)
		time_analysis();

	vips_shutdown();
	TEST_DONE();
}
