/* answer.c — the chat-completions request body for an image analysis and
 * the parser/validator of the answer (see vision.h). The answer comes from
 * outside: every field is checked for type and bounds, and nothing in it
 * is trusted to be JSON, UTF-8 we did not check, or short
 * (fuzz/fuzz_vision.c).
 *
 * Threads: any; every function works on its arguments only.
 */
#define _GNU_SOURCE
#include "vision/vision.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

/* The built-in instruction; changing it changes answers, so it comes with
 * a bump of the analyze stage's version (stages/analyze.c). */
static const char default_prompt[] =
    "You describe images of a product catalog so people can find them by "
    "searching. Write a one-sentence caption of what the image shows and "
    "up to 10 short lowercase tags (objects, colours, materials, style).";

static const char format_plain[] =
    " Answer with one JSON object and nothing else: "
    "{\"caption\": string, \"tags\": [string]}.";
static const char format_match[] =
    " The catalog title of the product is given below. Also judge whether "
    "the image shows that product. Answer with one JSON object and nothing "
    "else: {\"caption\": string, \"tags\": [string], \"product_match\": "
    "boolean, \"match_score\": number from 0 to 1 (how sure you are that "
    "the image shows the product)}.";

static json_t *schema(bool match)
{
	json_t *props =
	    json_pack("{s:{s:s},s:{s:s,s:{s:s}}}", "caption", "type", "string",
		      "tags", "type", "array", "items", "type", "string");
	json_t *req = json_pack("[s,s]", "caption", "tags");

	if (!props || !req) {
		json_decref(props);
		json_decref(req);
		return NULL;
	}
	if (match) {
		json_object_set_new(props, "product_match",
				    json_pack("{s:s}", "type", "boolean"));
		json_object_set_new(props, "match_score",
				    json_pack("{s:s}", "type", "number"));
		json_array_append_new(req, json_string("product_match"));
		json_array_append_new(req, json_string("match_score"));
	}
	return json_pack("{s:s,s:{s:s,s:b,s:{s:s,s:o,s:o,s:b}}}", "type",
			 "json_schema", "json_schema", "name",
			 "pixmill_image_analysis", "strict", 1, "schema",
			 "type", "object", "properties", props, "required", req,
			 "additionalProperties", 0);
}

/* Copies at most max bytes of s, cut at a UTF-8 character boundary. */
static char *utf8_cut_dup(const char *s, size_t max)
{
	size_t n = strlen(s);
	char *d;

	if (n > max) {
		n = max;
		while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
			n--;
	}
	d = malloc(n + 1);
	if (d) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

char *pm_vision_request_body(const pm_vision_req *r)
{
	bool match = r->title && *r->title;
	json_t *root = NULL, *user = NULL, *msgs = NULL;
	char *sys = NULL, *text = NULL, *url = NULL, *out = NULL, *title = NULL;
	size_t n;

	if (asprintf(&sys, "%s%s", r->prompt ? r->prompt : default_prompt,
		     match ? format_match : format_plain) < 0) {
		sys = NULL;
		goto out;
	}
	if (match) {
		/* The title is untrusted text: quoted as a JSON string, cut,
		 * and the answer is validated whatever it says. */
		json_t *t;
		char *cut = utf8_cut_dup(r->title, PM_VISION_MAX_TITLE);
		if (!cut)
			goto out;
		t = json_string(cut);
		free(cut);
		title = t ? json_dumps(t, JSON_ENCODE_ANY) : NULL;
		json_decref(t);
		if (!title)
			goto out;
	}
	if (asprintf(&text, "%s%s%s%s%s",
		     match ? "Catalog title: " : "Describe this image.",
		     match ? title : "",
		     r->retry_reason ? " Your previous answer was refused ("
				     : "",
		     r->retry_reason ? r->retry_reason : "",
		     r->retry_reason ? "). Reply with exactly one JSON object "
				       "with the fields asked for, no other "
				       "text."
				     : "") < 0) {
		text = NULL;
		goto out;
	}
	n = strlen(r->image_b64);
	url = malloc(n + 32);
	if (!url)
		goto out;
	memcpy(url, "data:image/jpeg;base64,", 23);
	memcpy(url + 23, r->image_b64, n + 1);
	user = json_pack("{s:s,s:[{s:s,s:s},{s:s,s:{s:s,s:s}}]}", "role",
			 "user", "content", "type", "text", "text", text,
			 "type", "image_url", "image_url", "url", url, "detail",
			 r->detail ? r->detail : "auto");
	if (!user)
		goto out;
	msgs =
	    json_pack("[{s:s,s:s},O]", "role", "system", "content", sys, user);
	if (!msgs)
		goto out;
	root = json_pack("{s:s,s:O}", "model", r->model, "messages", msgs);
	if (!root)
		goto out;
	if (r->max_tokens > 0)
		json_object_set_new(root, "max_tokens",
				    json_integer(r->max_tokens));
	if (r->temperature >= 0)
		json_object_set_new(root, "temperature",
				    json_real(r->temperature));
	if (r->response_format &&
	    strcmp(r->response_format, "json_object") == 0)
		json_object_set_new(root, "response_format",
				    json_pack("{s:s}", "type", "json_object"));
	else if (r->response_format &&
		 strcmp(r->response_format, "json_schema") == 0)
		json_object_set_new(root, "response_format", schema(match));
	out = json_dumps(root, JSON_COMPACT);
out:
	json_decref(root);
	json_decref(msgs);
	json_decref(user);
	free(sys);
	free(text);
	free(url);
	free(title);
	return out;
}

void pm_vision_answer_clear(pm_vision_answer *a)
{
	free(a->caption);
	json_decref(a->tags);
	memset(a, 0, sizeof *a);
}

/* A short, printable excerpt of untrusted text for an error message. */
static void excerpt(const char *s, size_t len, char *buf, size_t n)
{
	size_t j = 0;

	for (size_t i = 0; i < len && j + 1 < n && j < 60; i++) {
		unsigned char c = (unsigned char)s[i];
		buf[j++] = (c < 0x20 || c >= 0x7f) ? '?' : (char)c;
	}
	buf[j] = '\0';
}

/* Strips whitespace and a Markdown code fence (```json ... ```). */
static void unfence(const char **s, size_t *len)
{
	const char *p = *s, *e = *s + *len;

	while (p < e && isspace((unsigned char)*p))
		p++;
	while (e > p && isspace((unsigned char)e[-1]))
		e--;
	if (e - p >= 6 && memcmp(p, "```", 3) == 0 &&
	    memcmp(e - 3, "```", 3) == 0) {
		const char *nl = memchr(p, '\n', (size_t)(e - p));
		if (nl && nl < e - 3) {
			p = nl + 1;
			e -= 3;
			while (e > p && isspace((unsigned char)e[-1]))
				e--;
		}
	}
	*s = p;
	*len = (size_t)(e - p);
}

static char *trim_dup(const char *s, size_t max)
{
	size_t n;

	while (isspace((unsigned char)*s))
		s++;
	n = strlen(s);
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		n--;
	{
		char *tmp = strndup(s, n), *d;
		if (!tmp)
			return NULL;
		d = utf8_cut_dup(tmp, max);
		free(tmp);
		return d;
	}
}

/* Validates the content object into out. */
static pm_status check_content(json_t *c, bool want_match,
			       pm_vision_answer *out, pm_err *err)
{
	json_t *cap = json_object_get(c, "caption");
	json_t *tags = json_object_get(c, "tags");
	json_t *t;
	size_t i;

	if (!json_is_string(cap))
		return pm_fail(err, PM_ERR_UPSTREAM,
			       "the model's answer breaks the schema: "
			       "\"caption\" is %s, not a string",
			       cap ? "of another type" : "missing");
	if (!json_is_array(tags))
		return pm_fail(err, PM_ERR_UPSTREAM,
			       "the model's answer breaks the schema: \"tags\" "
			       "is %s, not an array of strings",
			       tags ? "of another type" : "missing");
	out->caption = trim_dup(json_string_value(cap), PM_VISION_MAX_CAPTION);
	if (!out->caption)
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	if (!out->caption[0])
		return pm_fail(err, PM_ERR_UPSTREAM,
			       "the model's answer breaks the schema: "
			       "\"caption\" is empty");
	out->tags = json_array();
	if (!out->tags)
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	json_array_foreach(tags, i, t)
	{
		char *v;
		if (!json_is_string(t))
			return pm_fail(err, PM_ERR_UPSTREAM,
				       "the model's answer breaks the schema: "
				       "tag %zu is not a string",
				       i + 1);
		if (json_array_size(out->tags) >= PM_VISION_MAX_TAGS)
			continue;
		v = trim_dup(json_string_value(t), PM_VISION_MAX_TAG);
		if (!v)
			return pm_fail(err, PM_ERR_NOMEM, "out of memory");
		if (*v)
			json_array_append_new(out->tags, json_string(v));
		free(v);
	}
	out->has_match = want_match;
	if (want_match) {
		json_t *m = json_object_get(c, "product_match");
		json_t *sc = json_object_get(c, "match_score");
		double v;
		if (!json_is_boolean(m))
			return pm_fail(err, PM_ERR_UPSTREAM,
				       "the model's answer breaks the schema: "
				       "\"product_match\" is %s, not true or "
				       "false",
				       m ? "of another type" : "missing");
		if (!json_is_number(sc))
			return pm_fail(err, PM_ERR_UPSTREAM,
				       "the model's answer breaks the schema: "
				       "\"match_score\" is %s, not a number",
				       sc ? "of another type" : "missing");
		v = json_number_value(sc);
		if (!(v >= 0 && v <= 1))
			return pm_fail(err, PM_ERR_UPSTREAM,
				       "the model's answer breaks the schema: "
				       "\"match_score\" %g is outside 0..1",
				       v);
		out->product_match = json_is_true(m);
		out->match_score = v;
	}
	return PM_OK;
}

static int64_t usage_int(json_t *usage, const char *k)
{
	json_t *v = json_object_get(usage, k);

	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return -1;
	return (int64_t)json_integer_value(v);
}

pm_status pm_vision_parse(const char *body, size_t len, bool want_match,
			  pm_vision_answer *out, pm_err *err)
{
	json_error_t je;
	json_t *root = NULL, *content = NULL, *c = NULL, *msg, *ch, *fr;
	const char *text;
	size_t tlen;
	char ex[64];
	bool cut;
	pm_status s;

	out->tokens_in = out->tokens_out = -1;
	out->model[0] = '\0';
	root = json_loadb(body, len, 0, &je);
	if (!json_is_object(root)) {
		excerpt(body, len, ex, sizeof ex);
		s = pm_fail(err, PM_ERR_UPSTREAM,
			    "the vision API's answer is not a JSON object "
			    "(%s): \"%s\"",
			    root ? "wrong type" : je.text, ex);
		goto out;
	}
	{
		json_t *u = json_object_get(root, "usage");
		json_t *m = json_object_get(root, "model");
		if (json_is_object(u)) {
			out->tokens_in = usage_int(u, "prompt_tokens");
			out->tokens_out = usage_int(u, "completion_tokens");
		}
		if (json_is_string(m))
			snprintf(out->model, sizeof out->model, "%s",
				 json_string_value(m));
		for (char *p = out->model; *p; p++)
			if ((unsigned char)*p < 0x20)
				*p = '?';
	}
	ch = json_array_get(json_object_get(root, "choices"), 0);
	msg = json_object_get(ch, "message");
	if (!json_is_object(msg)) {
		s = pm_fail(err, PM_ERR_UPSTREAM,
			    "the vision API's answer has no "
			    "choices[0].message");
		goto out;
	}
	fr = json_object_get(ch, "finish_reason");
	cut =
	    json_is_string(fr) && strcmp(json_string_value(fr), "length") == 0;
	content = json_object_get(msg, "content");
	if (json_is_array(content)) {
		/* content parts: the text of the first text part */
		json_t *part;
		size_t i;
		json_array_foreach(content, i, part)
		{
			json_t *t = json_object_get(part, "text");
			if (json_is_string(t)) {
				content = t;
				break;
			}
		}
	}
	if (!json_is_string(content)) {
		json_t *ref = json_object_get(msg, "refusal");
		if (json_is_string(ref)) {
			const char *r = json_string_value(ref);
			excerpt(r, strlen(r), ex, sizeof ex);
			s = pm_fail(err, PM_ERR_UPSTREAM,
				    "the model refused: \"%s\"", ex);
		} else
			s = pm_fail(err, PM_ERR_UPSTREAM,
				    "the vision API's answer has no text in "
				    "choices[0].message.content");
		goto out;
	}
	text = json_string_value(content);
	tlen = json_string_length(content);
	unfence(&text, &tlen);
	c = json_loadb(text, tlen, JSON_REJECT_DUPLICATES, &je);
	if (!json_is_object(c)) {
		excerpt(text, tlen, ex, sizeof ex);
		s = pm_fail(err, PM_ERR_UPSTREAM,
			    "the model's answer is not a JSON object%s (%s): "
			    "\"%s\"",
			    cut ? " (cut off at max_tokens)" : "",
			    c ? "wrong type" : je.text, ex);
		goto out;
	}
	s = check_content(c, want_match, out, err);
out:
	if (s) {
		free(out->caption);
		out->caption = NULL;
		json_decref(out->tags);
		out->tags = NULL;
	}
	json_decref(c);
	json_decref(root);
	return s;
}

void pm_vision_error_message(const char *body, size_t len, char *buf, size_t n)
{
	json_t *root, *m;

	if (n == 0)
		return;
	buf[0] = '\0';
	root = json_loadb(body, len, 0, NULL);
	m = json_object_get(json_object_get(root, "error"), "message");
	if (json_is_string(m)) {
		const char *s = json_string_value(m);
		size_t j = 0, i = 0;
		for (; s[i] && j + 1 < n && j < 200; i++)
			buf[j++] = ((unsigned char)s[i] < 0x20) ? ' ' : s[i];
		if (((unsigned char)s[i] & 0xC0) == 0x80) {
			/* cut inside a character: drop its first bytes */
			while (j > 0 &&
			       ((unsigned char)buf[j - 1] & 0xC0) == 0x80)
				j--;
			if (j > 0)
				j--;
		}
		buf[j] = '\0';
	}
	json_decref(root);
}

double pm_vision_retry_after(const char *v, time_t now)
{
	char *end;
	double d;
	struct tm tm;

	if (!v)
		return -1;
	while (isspace((unsigned char)*v))
		v++;
	if (!*v)
		return -1;
	if (isdigit((unsigned char)*v)) {
		d = strtod(v, &end);
		while (isspace((unsigned char)*end))
			end++;
		if (*end || !isfinite(d) || d < 0)
			return -1;
		return d > 86400 ? 86400 : d;
	}
	memset(&tm, 0, sizeof tm);
	end = strptime(v, "%a, %d %b %Y %H:%M:%S GMT", &tm);
	if (!end)
		return -1;
	{
		time_t t = timegm(&tm);
		if (t == (time_t)-1)
			return -1;
		d = difftime(t, now);
		return d < 0 ? 0 : d > 86400 ? 86400 : d;
	}
}

char *pm_vision_base64(const void *buf, size_t len)
{
	size_t n = 4 * ((len + 2) / 3);
	char *out;

	if (len > ((size_t)1 << 30))
		return NULL;
	out = malloc(n + 1);
	if (!out)
		return NULL;
	/* EVP_EncodeBlock takes an int length: encode in slices of a
	 * multiple of 3 bytes. */
	{
		const unsigned char *p = buf;
		size_t done = 0, o = 0;
		const size_t slice = 3 * (1 << 20);
		while (done < len) {
			size_t k = len - done < slice ? len - done : slice;
			o += (size_t)EVP_EncodeBlock((unsigned char *)out + o,
						     p + done, (int)k);
			done += k;
		}
		out[o] = '\0';
	}
	return out;
}
