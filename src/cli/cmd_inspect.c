/* cmd_inspect.c — `pixmill inspect FILE`: what pixmill sees in one image:
 * sniffed format, header, limit verdict, hashes, colours, sharpness.
 *
 * Threads: main thread only.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/cli.h"
#include "core/util.h"
#include "image/image.h"

typedef struct inspect_cli {
	pm_limits lim;
	bool json;
} inspect_cli;

static int inspect_opt(int id, const char *arg, void *ud)
{
	inspect_cli *c = ud;
	int64_t v;

	switch (id) {
	case OPT_JSON:
		c->json = true;
		break;
	case OPT_MAX_BYTES:
	case OPT_MAX_PIXELS:
	case OPT_MAX_DIM:
	case OPT_MAX_FRAMES:
		v = id == OPT_MAX_BYTES ? pm_parse_size(arg) : atoll(arg);
		if (v <= 0)
			return pm_cli_usage_error(
			    "inspect", "limits want positive numbers");
		if (id == OPT_MAX_BYTES)
			c->lim.max_bytes = (uint64_t)v;
		else if (id == OPT_MAX_PIXELS)
			c->lim.max_pixels = (uint64_t)v;
		else if (id == OPT_MAX_DIM)
			c->lim.max_width = c->lim.max_height = (int)v;
		else
			c->lim.max_frames = (int)v;
		break;
	}
	return 0;
}

int pm_cmd_inspect(int argc, char **argv)
{
	inspect_cli c;
	pm_err err = {{0}};
	pm_status s;
	void *buf = NULL;
	size_t len = 0;
	pm_header h;
	char sha[65] = "";
	VipsImage *im = NULL;
	uint64_t ph = 0;
	pm_color col[8];
	int ncol = 0;
	double sharp = NAN;
	json_t *o;
	int i;

	pm_limits_default(&c.lim);
	c.json = false;
	i = pm_cli_parse("inspect", argc, argv, inspect_opt, &c);
	if (i == -2)
		return 0;
	if (i < 0)
		return 2;
	if (argc - i != 1)
		return pm_cli_usage_error("inspect", "expected one FILE");
	o = json_object();
	json_object_set_new(o, "file", json_string(argv[i]));
	s = pm_read_file(argv[i], c.lim.max_bytes, &buf, &len, &err);
	if (!s) {
		pm_sha256_hex(buf, len, sha);
		json_object_set_new(o, "bytes", json_integer((json_int_t)len));
		json_object_set_new(o, "sha256", json_string(sha));
		json_object_set_new(
		    o, "sniffed",
		    json_string(pm_format_name(pm_sniff(buf, len))));
		s = pm_image_probe(buf, len, &c.lim, &h, &err);
		if (h.width > 0) {
			json_object_set_new(
			    o, "header",
			    json_pack("{s:s,s:i,s:i,s:i,s:i,s:i,s:b,s:b,s:s}",
				      "format", pm_format_name(h.format),
				      "width", h.width, "height", h.height,
				      "frames", h.frames, "bands", h.bands,
				      "orientation", h.orientation, "alpha",
				      h.has_alpha, "icc", h.has_icc,
				      "interpretation", h.interpretation));
		}
	}
	if (!s)
		s = pm_image_decode(buf, len, 256, false, &im, &err);
	if (!s)
		s = pm_image_phash(im, &ph, &err);
	if (!s)
		s = pm_image_colors(im, 5, col, &ncol, &err);
	if (!s)
		s = pm_image_sharpness(im, &sharp, &err);
	if (!s) {
		char hx[17];
		json_t *cols = json_array();
		snprintf(hx, sizeof hx, "%016llx", (unsigned long long)ph);
		json_object_set_new(o, "phash", json_string(hx));
		for (int k = 0; k < ncol; k++) {
			char hex[8];
			snprintf(hex, sizeof hex, "#%02x%02x%02x", col[k].r,
				 col[k].g, col[k].b);
			json_array_append_new(cols,
					      json_pack("{s:s,s:f}", "hex", hex,
							"share", col[k].share));
		}
		json_object_set_new(o, "colors", cols);
		json_object_set_new(o, "sharpness", json_real(sharp));
	}
	json_object_set_new(o, "verdict", json_string(s ? "refused" : "ok"));
	if (s) {
		json_object_set_new(o, "code", json_string(pm_status_code(s)));
		json_object_set_new(o, "error", json_string(err.msg));
	}
	if (c.json) {
		char *txt = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		printf("%s\n", txt ? txt : "{}");
		free(txt);
	} else {
		const char *k;
		json_t *v;
		json_object_foreach(o, k, v)
		{
			char *txt =
			    json_is_string(v)
				? strdup(json_string_value(v))
				: json_dumps(v, JSON_COMPACT |
						    JSON_PRESERVE_ORDER |
						    JSON_ENCODE_ANY);
			printf("%-10s %s\n", k, txt ? txt : "");
			free(txt);
		}
	}
	json_decref(o);
	if (im)
		g_object_unref(im);
	free(buf);
	return s ? pm_status_exit(s) : 0;
}
