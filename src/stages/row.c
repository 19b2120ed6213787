/* row.c — the catalog row's text on an item context (title, price,
 * currency, brand) and the asset key of pipelines whose outputs depend on
 * it (stages with uses_row, such as compose).
 *
 * Threads: any thread, on a context that thread owns.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/util.h"
#include "stages/stage.h"

/* A string value under key (matched without case), or NULL. */
static const char *attr(json_t *o, const char *key)
{
	const char *k;
	json_t *v;

	json_object_foreach(o, k, v)
	{
		if (strcasecmp(k, key) == 0 && json_is_string(v))
			return json_string_value(v);
	}
	return NULL;
}

void pm_ctx_set_row(pm_item_ctx *ctx, const char *title, const char *price,
		    const char *attrs_json)
{
	json_decref(ctx->row_attrs);
	ctx->row_attrs = NULL;
	ctx->title = title;
	ctx->price = price;
	ctx->currency = NULL;
	ctx->brand = NULL;
	if (attrs_json && attrs_json[0]) {
		ctx->row_attrs = json_loads(attrs_json, 0, NULL);
		if (!json_is_object(ctx->row_attrs)) {
			json_decref(ctx->row_attrs);
			ctx->row_attrs = NULL;
		}
	}
	if (ctx->row_attrs) {
		ctx->currency = attr(ctx->row_attrs, "currency");
		ctx->brand = attr(ctx->row_attrs, "brand");
	}
}

void pm_row_key(const char *src_sha, const pm_item_ctx *ctx, char out[65])
{
	const char *f[4] = {ctx->title, ctx->price, ctx->currency, ctx->brand};
	size_t n = strlen(src_sha) + 16, o;
	char *buf;

	for (int i = 0; i < 4; i++)
		n += f[i] ? strlen(f[i]) + 2 : 2;
	buf = malloc(n);
	if (!buf) { /* cannot hash the text: fall back to the source */
		snprintf(out, 65, "%s", src_sha);
		return;
	}
	o = (size_t)snprintf(buf, n, "row1\x1f%s", src_sha);
	for (int i = 0; i < 4; i++) {
		/* \x1e marks a present field (absent and "" differ); \x1f
		 * separates fields */
		buf[o++] = '\x1f';
		if (f[i]) {
			buf[o++] = '\x1e';
			memcpy(buf + o, f[i], strlen(f[i]));
			o += strlen(f[i]);
		}
	}
	pm_sha256_hex(buf, o, out);
	free(buf);
}
