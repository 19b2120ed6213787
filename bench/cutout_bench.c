/* cutout_bench.c — times the `fast` cut-out engine (pm_cutout_fast) and
 * the encoding of its result, for bench/cutout.sh.
 *
 * Usage: cutout_bench [--runs N] [--size WxH] [FILE...]
 *        cutout_bench --write DIR N [--size WxH]
 * Without files it synthesises a studio shot with libvips (an item with a
 * soft shadow on a near-white background, JPEG q90) at --size (default
 * 1732x1155, 2.0 MP). --write saves N such shots (items of different
 * colours, sizes and places) as DIR/shot-NN.jpg and exits. Each image is
 * decoded once (like the engine does), then the engine runs N times
 * (default 25); prints the median and min wall and thread-CPU ms per run,
 * the median time of the cut-out's PNG and WebP encodings, the result's
 * confidence, and the process's peak RSS.
 *
 * Threads: one thread. Built by bench/cutout.sh against libpixmill.a.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/util.h"
#include "image/cutout_fast.h"
#include "image/image.h"

static double cpu_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp_d);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Synthetic studio shot number k as JPEG q90 bytes (*buf: g_free); 0 or
 * -1 on a libvips error. */
static int synth_jpeg(int w, int h, int k, void **buf, size_t *len)
{
	VipsImage *t[16] = {NULL};
	double bg[3] = {246, 246, 244}, z[3] = {0};
	double fg[3] = {40 + (k * 53) % 180, 60 + (k * 97) % 160,
			50 + (k * 31) % 190};
	double mn = w < h ? w : h, ink[1] = {255};
	double sx = 0.8 + 0.05 * (k % 5), dx = 0.02 * (k % 7) - 0.06;
	int ok = 0;

	/* item mask: a rounded box drawn on a memory canvas */
	if (vips_black(&t[0], w, h, NULL) || vips_cast_uchar(t[0], &t[1], NULL))
		goto out;
	t[2] = vips_image_copy_memory(t[1]);
	if (!t[2] ||
	    vips_draw_rect(t[2], ink, 1, (int)((0.3 + dx) * w), (int)(0.22 * h),
			   (int)(0.4 * sx * w), (int)(0.58 * h), "fill", TRUE,
			   NULL) ||
	    vips_draw_circle(t[2], ink, 1, (int)((0.3 + dx + 0.2 * sx) * w),
			     (int)(0.22 * h), (int)(0.2 * sx * w), "fill", TRUE,
			     NULL) ||
	    vips_gaussblur(t[2], &t[3], 0.7, NULL) ||
	    vips_cast_uchar(t[3], &t[4], NULL))
		goto out;
	/* background with a soft vignette, and a shadow */
	if (vips_black(&t[5], w, h, "bands", 3, NULL) ||
	    vips_linear(t[5], &t[6], z, bg, 3, NULL) ||
	    vips_black(&t[7], w, h, NULL))
		goto out;
	t[8] = vips_image_copy_memory(t[7]);
	if (!t[8] ||
	    vips_draw_circle(t[8], ink, 1, (int)(0.55 * w), (int)(0.8 * h),
			     (int)(0.22 * mn), "fill", TRUE, NULL) ||
	    vips_gaussblur(t[8], &t[9], 0.05 * mn, NULL) ||
	    vips_linear1(t[9], &t[10], -0.3 / 255, 1.0, NULL) ||
	    vips_multiply(t[6], t[10], &t[11], NULL))
		goto out;
	/* the item, composited, plus noise, through JPEG q90 */
	if (vips_black(&t[12], w, h, "bands", 3, NULL) ||
	    vips_linear(t[12], &t[13], z, fg, 3, NULL) ||
	    vips_ifthenelse(t[4], t[13], t[11], &t[14], "blend", TRUE, NULL) ||
	    vips_cast_uchar(t[14], &t[15], NULL) ||
	    vips_jpegsave_buffer(t[15], buf, len, "Q", 90, NULL))
		goto out;
	ok = 1;
out:
	for (int i = 0; i < 16; i++)
		if (t[i])
			g_object_unref(t[i]);
	if (!ok)
		fprintf(stderr, "synth: %s\n", vips_error_buffer());
	return ok ? 0 : -1;
}

/* Synthetic shot 0, decoded as the engine decodes; NULL on error. */
static VipsImage *synth(int w, int h)
{
	VipsImage *out = NULL;
	void *buf = NULL;
	size_t len = 0;
	pm_err e = {{0}};

	if (synth_jpeg(w, h, 0, &buf, &len))
		return NULL;
	if (pm_image_decode(buf, len, 100000, false, &out, &e))
		fprintf(stderr, "decode: %s\n", e.msg);
	g_free(buf);
	return out;
}

static int bench_one(const char *name, VipsImage *im, int runs)
{
	double *wall = calloc((size_t)runs, sizeof *wall);
	double *cpu = calloc((size_t)runs, sizeof *cpu);
	double png[5], webp[5];
	pm_cutout_fast_opts o;
	pm_cutout_fast_result r = {0};
	pm_err e = {{0}};

	if (!wall || !cpu)
		return 1;
	char rss0[32], rss1[32];
	uint64_t before = pm_peak_rss();

	pm_cutout_fast_defaults(&o);
	for (int i = 0; i < runs; i++) {
		double t0 = pm_now(), c0 = cpu_ms();
		pm_cutout_fast_result_free(&r);
		if (pm_cutout_fast(im, &o, &r, &e)) {
			fprintf(stderr, "%s: %s\n", name, e.msg);
			return 1;
		}
		cpu[i] = cpu_ms() - c0;
		wall[i] = (pm_now() - t0) * 1e3;
	}
	pm_fmt_size(before, rss0, sizeof rss0);
	pm_fmt_size(pm_peak_rss(), rss1, sizeof rss1);
	/* The encodings the stage does when it keeps a cut-out. */
	for (int i = 0; i < 5 && r.alpha; i++) {
		VipsImage *rgb = NULL, *a, *rgba = NULL;
		pm_encode_opts eo = {.format = PM_FMT_PNG, .effort = -1};
		void *buf;
		size_t len;
		double t0;
		a = vips_image_new_from_memory(
		    r.alpha, (size_t)r.width * r.height, r.width, r.height, 1,
		    VIPS_FORMAT_UCHAR);
		if (vips_extract_band(im, &rgb, 0, "n", 3, NULL) ||
		    vips_bandjoin2(rgb, a, &rgba, NULL))
			return 1;
		t0 = pm_now();
		if (pm_image_encode(rgba, &eo, &buf, &len, &e))
			return 1;
		png[i] = (pm_now() - t0) * 1e3;
		g_free(buf);
		eo.format = PM_FMT_WEBP;
		eo.quality = 90;
		t0 = pm_now();
		if (pm_image_encode(rgba, &eo, &buf, &len, &e))
			return 1;
		webp[i] = (pm_now() - t0) * 1e3;
		g_free(buf);
		g_object_unref(rgba);
		g_object_unref(rgb);
		g_object_unref(a);
	}
	double med_wall = median(wall, runs), med_cpu = median(cpu, runs);
	printf("%s: %dx%d (%.2f MP), %d runs: fast engine median %.2f ms "
	       "(min %.2f), thread CPU median %.2f ms; confidence %.2f, "
	       "fg %.1f%%",
	       name, r.width, r.height, r.width * (double)r.height / 1e6, runs,
	       med_wall, wall[0], med_cpu, r.confidence, 100 * r.fg_ratio);
	printf("; peak RSS %s before the engine, %s after its runs", rss0,
	       rss1);
	if (r.alpha)
		printf("; encode RGBA median: png %.1f ms, webp q90 %.1f ms",
		       median(png, 5), median(webp, 5));
	printf("\n");
	pm_cutout_fast_result_free(&r);
	free(wall);
	free(cpu);
	return 0;
}

int main(int argc, char **argv)
{
	int runs = 25, w = 1732, h = 1155, nfiles = 0, rc = 0;
	char rss[32];

	pm_image_preinit();
	if (VIPS_INIT(argv[0]))
		return 2;
	pm_image_global_init();
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
			runs = atoi(argv[++i]);
		else if (strcmp(argv[i], "--size") == 0 && i + 1 < argc)
			sscanf(argv[++i], "%dx%d", &w, &h);
	}
	if (runs < 1)
		runs = 1;
	for (int i = 1; i + 2 < argc + 0 && i < argc; i++) {
		if (strcmp(argv[i], "--write") != 0)
			continue;
		for (int k = 0; k < atoi(argv[i + 2]); k++) {
			char path[4096];
			void *buf;
			size_t len;
			pm_err e = {{0}};
			if (synth_jpeg(w, h, k, &buf, &len))
				return 1;
			snprintf(path, sizeof path, "%s/shot-%02d.jpg",
				 argv[i + 1], k);
			if (pm_write_file_atomic(path, NULL, buf, len, false,
						 &e)) {
				fprintf(stderr, "%s\n", e.msg);
				return 1;
			}
			g_free(buf);
		}
		return 0;
	}
	for (int i = 1; i < argc; i++) {
		void *buf;
		size_t len;
		pm_err e = {{0}};
		VipsImage *im;

		if (strcmp(argv[i], "--runs") == 0 ||
		    strcmp(argv[i], "--size") == 0) {
			i++;
			continue;
		}
		nfiles++;
		if (pm_read_file(argv[i], 1u << 30, &buf, &len, &e) ||
		    pm_image_decode(buf, len, 100000, false, &im, &e)) {
			fprintf(stderr, "%s: %s\n", argv[i], e.msg);
			rc = 1;
			continue;
		}
		free(buf);
		rc |= bench_one(argv[i], im, runs);
		g_object_unref(im);
	}
	if (nfiles == 0) {
		VipsImage *im = synth(w, h);
		if (!im)
			return 1;
		rc |= bench_one("synthetic studio shot", im, runs);
		g_object_unref(im);
	}
	printf("peak RSS %s\n", pm_fmt_size(pm_peak_rss(), rss, sizeof rss));
	vips_shutdown();
	return rc;
}
