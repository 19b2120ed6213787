/* compose_bench.c — ms per composed ad, per template: renders one product
 * image with a row's text into each template N times (render + JPEG/WebP/
 * PNG encode as the template says) and prints the median and p90.
 *
 * Usage: compose_bench N IMAGE TEMPLATE.json...
 * Prints one line per template: "<name> <W>x<H> median_ms p90_ms render_ms
 * encode_ms cpu_ms" (medians; cpu_ms: process CPU time per ad, libvips'
 * helper threads included, which a busy shared machine inflates less than
 * wall time). Threads: the bench's own (one pm_adtext, like one worker).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/util.h"
#include "image/template.h"

static double cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	pm_err e = {{0}};
	pm_adtext *tx = NULL;
	VipsImage *prod = NULL;
	void *buf = NULL;
	size_t len = 0;
	int n = argc > 1 ? atoi(argv[1]) : 0;

	if (argc < 4 || n < 1) {
		fprintf(stderr, "usage: %s N IMAGE TEMPLATE.json...\n",
			argv[0]);
		return 2;
	}
	pm_image_preinit();
	if (VIPS_INIT(argv[0]))
		return 1;
	pm_image_global_init();
	if (pm_read_file(argv[2], 256u << 20, &buf, &len, &e) ||
	    pm_image_decode(buf, len, 1080, false, &prod, &e) ||
	    pm_adtext_new(&tx, &e)) {
		fprintf(stderr, "%s\n", e.msg);
		return 1;
	}
	free(buf);
	for (int a = 3; a < argc; a++) {
		pm_template *t = NULL;
		double *tot = calloc((size_t)n, sizeof *tot);
		double *ren = calloc((size_t)n, sizeof *ren);
		double *enc = calloc((size_t)n, sizeof *enc);
		double *cpu = calloc((size_t)n, sizeof *cpu);
		if (pm_template_load(argv[a], &t, &e) ||
		    pm_template_load_images(t, &e)) {
			fprintf(stderr, "%s\n", e.msg);
			return 1;
		}
		for (int i = 0; i < n; i++) {
			char title[128], price[32];
			pm_ad_row row = {title, price, "EUR", "Acme"};
			VipsImage *ad = NULL;
			json_t *facts = NULL;
			double t0 = pm_now(), t1, c0 = cpu_now();
			/* a different title each time: no cache helps */
			snprintf(title, sizeof title,
				 "Stainless steel water bottle %d, 750 ml, "
				 "keeps drinks cold for 24 hours",
				 i);
			snprintf(price, sizeof price, "%d.99", 10 + i);
			if (pm_ad_render(tx, t, prod, &row, &ad, &facts, &e)) {
				fprintf(stderr, "%s\n", e.msg);
				return 1;
			}
			t1 = pm_now();
			for (int f = 0; f < t->n_formats; f++) {
				void *out = NULL;
				size_t olen = 0;
				if (pm_image_encode(ad, &t->enc[f], &out, &olen,
						    &e)) {
					fprintf(stderr, "%s\n", e.msg);
					return 1;
				}
				g_free(out);
			}
			tot[i] = (pm_now() - t0) * 1000;
			ren[i] = (t1 - t0) * 1000;
			enc[i] = tot[i] - ren[i];
			cpu[i] = (cpu_now() - c0) * 1000;
			g_object_unref(ad);
			json_decref(facts);
		}
		qsort(tot, (size_t)n, sizeof *tot, cmp_d);
		qsort(ren, (size_t)n, sizeof *ren, cmp_d);
		qsort(enc, (size_t)n, sizeof *enc, cmp_d);
		qsort(cpu, (size_t)n, sizeof *cpu, cmp_d);
		printf("%s %dx%d %.1f %.1f %.1f %.1f %.1f\n", t->name, t->width,
		       t->height, tot[n / 2], tot[(n * 9) / 10], ren[n / 2],
		       enc[n / 2], cpu[n / 2]);
		free(tot);
		free(ren);
		free(enc);
		free(cpu);
		pm_template_free(t);
	}
	g_object_unref(prod);
	pm_adtext_free(tx);
	return 0;
}
