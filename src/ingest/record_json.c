/* record_json.c — pm_record to JSON and back (see record_json.h).
 *
 * Threads: pure functions; any thread.
 */
#include "ingest/record_json.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* Replaces every byte of s that does not start or belong to a valid UTF-8
 * sequence with '?': an error message cut at a fixed size may end inside a
 * character, which JSON cannot carry. */
static void utf8_clean(char *s)
{
	unsigned char *p = (unsigned char *)s;

	while (*p) {
		unsigned c = *p, cp;
		int n = c < 0x80		? 0
			: c >= 0xc2 && c < 0xe0 ? 1
			: c >= 0xe0 && c < 0xf0 ? 2
			: c >= 0xf0 && c < 0xf5 ? 3
						: -1;
		int i;

		if (n == 0) {
			p++;
			continue;
		}
		cp = n > 0 ? c & (0x3f >> n) : 0;
		for (i = 1; n > 0 && i <= n; i++) {
			if ((p[i] & 0xc0) != 0x80)
				break;
			cp = cp << 6 | (p[i] & 0x3f);
		}
		if (n < 0 || i <= n || (n == 2 && cp < 0x800) ||
		    (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff)) {
			*p++ = '?';
			continue;
		}
		p += n + 1;
	}
}

static int set_str(json_t *o, const char *name, const char *v)
{
	if (!v)
		return 0;
	return json_object_set_new(o, name, json_string(v));
}

pm_status pm_record_to_json(const pm_record *r, char **out, pm_err *err)
{
	json_t *o;
	int bad = 0;

	*out = NULL;
	if (!r || !r->key)
		return pm_fail(err, PM_ERR_INTERNAL, "record without a key");
	o = json_object();
	if (!o)
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	bad |= json_object_set_new(o, "ordinal",
				   json_integer((json_int_t)r->ordinal));
	bad |= set_str(o, "key", r->key);
	bad |= set_str(o, "id", r->id);
	bad |= set_str(o, "image", r->image);
	bad |= set_str(o, "candidates", r->candidates);
	bad |= set_str(o, "title", r->title);
	bad |= set_str(o, "price", r->price);
	bad |= set_str(o, "category", r->category);
	bad |= set_str(o, "attrs_json", r->attrs_json ? r->attrs_json : "{}");
	bad |= set_str(o, "status", pm_status_code(r->status));
	if (r->no_image)
		bad |= json_object_set_new(o, "no_image", json_true());
	if (r->status != PM_OK) {
		char msg[sizeof r->error];
		memcpy(msg, r->error, sizeof msg);
		msg[sizeof msg - 1] = 0;
		utf8_clean(msg);
		bad |= set_str(o, "error", msg);
	}
	if (!bad)
		*out = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (!*out)
		/* json_string refuses invalid UTF-8: the catalog readers
		 * only make valid UTF-8, so this is memory */
		return pm_fail(err, PM_ERR_NOMEM,
			       "record %s: cannot encode it as JSON", r->key);
	return PM_OK;
}

/* Copies string member name of o into *dst: absent or null leaves *dst
 * NULL; anything else than a string without NUL bytes is malformed. */
static pm_status get_str(json_t *o, const char *name, char **dst, pm_err *err)
{
	json_t *v = json_object_get(o, name);
	const char *s;
	size_t n;

	if (!v || json_is_null(v))
		return PM_OK;
	if (!json_is_string(v))
		return pm_fail(err, PM_ERR_CATALOG,
			       "queued record: \"%s\" is not a string", name);
	s = json_string_value(v);
	n = json_string_length(v);
	if (memchr(s, 0, n))
		return pm_fail(err, PM_ERR_CATALOG,
			       "queued record: \"%s\" holds a NUL byte", name);
	*dst = strdup(s);
	if (!*dst)
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	return PM_OK;
}

static int status_parse(const char *s)
{
	for (int i = 0; i < PM_STATUS_COUNT; i++)
		if (strcmp(pm_status_code((pm_status)i), s) == 0)
			return i;
	return -1;
}

static pm_status parse(json_t *o, pm_record *r, pm_err *err)
{
	static const char *const known[] = {
	    "ordinal",	  "key",    "id",	"image",
	    "candidates", "title",  "price",	"category",
	    "attrs_json", "status", "no_image", "error",
	};
	json_t *v;
	char *status = NULL, *error = NULL;
	const char *k;
	pm_status s;
	int code;

	json_object_foreach(o, k, v)
	{
		size_t i;
		for (i = 0; i < sizeof known / sizeof known[0]; i++)
			if (strcmp(k, known[i]) == 0)
				break;
		if (i == sizeof known / sizeof known[0])
			return pm_fail(err, PM_ERR_CATALOG,
				       "queued record: unknown field \"%.60s\"",
				       k);
	}
	v = json_object_get(o, "ordinal");
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return pm_fail(err, PM_ERR_CATALOG,
			       "queued record: \"ordinal\" is not a "
			       "non-negative integer");
	r->ordinal = (uint64_t)json_integer_value(v);
	if ((s = get_str(o, "key", &r->key, err)) ||
	    (s = get_str(o, "id", &r->id, err)) ||
	    (s = get_str(o, "image", &r->image, err)) ||
	    (s = get_str(o, "candidates", &r->candidates, err)) ||
	    (s = get_str(o, "title", &r->title, err)) ||
	    (s = get_str(o, "price", &r->price, err)) ||
	    (s = get_str(o, "category", &r->category, err)) ||
	    (s = get_str(o, "attrs_json", &r->attrs_json, err)))
		return s;
	if (!r->key || !r->key[0])
		return pm_fail(err, PM_ERR_CATALOG,
			       "queued record: no \"key\"");
	if (!r->attrs_json && !(r->attrs_json = strdup("{}")))
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	{ /* the stages read it as an object */
		json_t *a = json_loads(r->attrs_json, JSON_DECODE_ANY, NULL);
		bool okay = json_is_object(a);
		json_decref(a);
		if (!okay)
			return pm_fail(err, PM_ERR_CATALOG,
				       "queued record: \"attrs_json\" is not "
				       "the text of a JSON object");
	}
	v = json_object_get(o, "no_image");
	if (v && !json_is_boolean(v))
		return pm_fail(err, PM_ERR_CATALOG,
			       "queued record: \"no_image\" is not a boolean");
	r->no_image = json_is_true(v);
	if ((s = get_str(o, "status", &status, err)))
		return s;
	code = status ? status_parse(status) : 0;
	free(status);
	if (code < 0 || (code != PM_OK && code != PM_ERR_CATALOG))
		/* the readers only make ok and bad_catalog_row records */
		return pm_fail(err, PM_ERR_CATALOG,
			       "queued record: \"status\" is not ok or "
			       "bad_catalog_row");
	r->status = (pm_status)code;
	if ((s = get_str(o, "error", &error, err)))
		return s;
	if (r->status != PM_OK) {
		snprintf(r->error, sizeof r->error, "%s",
			 error ? error : "malformed record");
		utf8_clean(r->error);
		free(error);
		return PM_OK;
	}
	free(error);
	if (!r->image || !r->image[0])
		return pm_fail(err, PM_ERR_CATALOG,
			       "queued record: no \"image\"");
	if (r->no_image)
		return pm_fail(err, PM_ERR_CATALOG,
			       "queued record: \"no_image\" on a record with "
			       "an image");
	return PM_OK;
}

pm_status pm_record_from_json(const char *text, size_t len, pm_record **out,
			      pm_err *err)
{
	json_error_t je;
	json_t *o;
	pm_record *r;
	pm_status s;

	*out = NULL;
	if (!text)
		return pm_fail(err, PM_ERR_CATALOG, "queued record: empty");
	if (len > PM_RECORD_JSON_MAX)
		return pm_fail(err, PM_ERR_CATALOG,
			       "queued record: %zu bytes, over the %u limit",
			       len, PM_RECORD_JSON_MAX);
	o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
	if (!o)
		return pm_fail(err, PM_ERR_CATALOG,
			       "queued record: not JSON: %.200s (at %d)",
			       je.text, je.position);
	if (!json_is_object(o)) {
		json_decref(o);
		return pm_fail(err, PM_ERR_CATALOG,
			       "queued record: not a JSON object");
	}
	r = calloc(1, sizeof *r);
	if (!r) {
		json_decref(o);
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	}
	s = parse(o, r, err);
	json_decref(o);
	if (s) {
		pm_record_free(r);
		return s;
	}
	*out = r;
	return PM_OK;
}
