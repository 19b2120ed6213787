/* fuzz_image.c — libFuzzer target for image validation: sniff, header
 * probe against limits, and (for what passes) a small decode, exactly as a
 * worker does with an untrusted file.
 * Threads: libFuzzer's thread only.
 */
#include <stddef.h>
#include <stdint.h>

#include "image/image.h"

static void quiet(const gchar *d, GLogLevelFlags l, const gchar *m, gpointer u)
{
	(void)d;
	(void)l;
	(void)m;
	(void)u;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	if (VIPS_INIT((*argv)[0]))
		return 1;
	pm_image_global_init();
	/* Keep libvips quiet: warnings on every corrupt input drown the log. */
	g_log_set_handler("VIPS", G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE,
			  quiet, NULL);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	pm_limits lim;
	pm_header h;
	pm_err e;
	VipsImage *im = NULL;

	pm_limits_default(&lim);
	/* Small limits keep each run fast; the checks are the same. */
	lim.max_pixels = 4u << 20;
	lim.max_width = lim.max_height = 8192;
	lim.max_frames = 64;
	if (pm_image_probe(data, size, &lim, &h, &e) != PM_OK)
		return 0;
	if (pm_image_decode(data, size, 64, false, &im, &e) == PM_OK) {
		uint64_t ph;
		pm_image_phash(im, &ph, &e);
		g_object_unref(im);
	}
	return 0;
}
