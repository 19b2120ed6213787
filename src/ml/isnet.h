/* isnet.h — ISNet salient-object segmentation through ONNX Runtime: turns
 * an sRGB image into a foreground mask for the cutout stage's `isnet`
 * engine.
 *
 * Threads: a pm_isnet belongs to one worker thread (created in the stage's
 * init, used by its process, freed in fini); different threads may each
 * hold their own at the same time.
 */
#ifndef PM_ISNET_H
#define PM_ISNET_H

#include <vips/vips.h>

#include "core/status.h"

typedef struct pm_isnet pm_isnet;

/* Opens the model. model_path NULL means the one `pixmill models install
 * isnet` installed; threads is ONNX Runtime's intra-op thread count (0 =
 * 1). On success *out is the caller's, to free with pm_isnet_close. */
pm_status pm_isnet_open(const char *model_path, int threads, pm_isnet **out,
			pm_err *err);

/* Runs the model on in (sRGB, 8-bit, 3 or 4 bands, any size). On success
 * *mask is a new 1-band 8-bit image (255 = foreground) of in's width and
 * height, owned by the caller (g_object_unref). */
pm_status pm_isnet_mask(pm_isnet *n, VipsImage *in, VipsImage **mask,
			pm_err *err);

/* Frees n; NULL is fine. */
void pm_isnet_close(pm_isnet *n);

#endif
