/* fuzz_vision.c — libFuzzer target for the vision answer parser and
 * validator (src/vision/answer.c), which reads JSON from a remote API.
 *
 * The first byte picks whether product_match is asked for; the rest is
 * parsed twice: as a whole answer body, and (when it is valid UTF-8) as
 * the message content inside a well-formed chat completion, so the
 * content checks are reached without the fuzzer having to build the
 * envelope. Also fed to the error-message and Retry-After readers.
 * Invariants: no crash or out-of-bounds read (ASan); on success a
 * non-empty caption within PM_VISION_MAX_CAPTION bytes, at most
 * PM_VISION_MAX_TAGS tags of at most PM_VISION_MAX_TAG bytes, valid UTF-8
 * (json_dumps succeeds), a match_score in 0..1; on failure no caption or
 * tags and a NUL-terminated message.
 *
 * Threads: libFuzzer calls the entry point from one thread.
 */
#include "vision/vision.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check(const char *body, size_t len, bool match)
{
	pm_vision_answer a = {0};
	pm_err e = {{0}};
	pm_status s = pm_vision_parse(body, len, match, &a, &e);

	if (s == PM_OK) {
		size_t i;
		json_t *t;
		char *d;
		if (!a.caption || !a.caption[0] ||
		    strlen(a.caption) > PM_VISION_MAX_CAPTION ||
		    !json_is_array(a.tags) ||
		    json_array_size(a.tags) > PM_VISION_MAX_TAGS)
			abort();
		json_array_foreach(a.tags, i, t) if (!json_is_string(t) ||
						     json_string_length(t) >
							 PM_VISION_MAX_TAG ||
						     json_string_length(t) == 0)
		    abort();
		if (a.has_match != match ||
		    (match && !(a.match_score >= 0 && a.match_score <= 1)))
			abort();
		d = json_dumps(a.tags, 0);
		if (!d)
			abort();
		free(d);
		t = json_string(a.caption); /* NULL if not valid UTF-8 */
		if (!t)
			abort();
		json_decref(t);
	} else {
		if (a.caption || a.tags || s != PM_ERR_UPSTREAM)
			if (s != PM_ERR_NOMEM)
				abort();
		if (strnlen(e.msg, sizeof e.msg) >= sizeof e.msg)
			abort();
	}
	pm_vision_answer_clear(&a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	bool match;
	const char *body;
	char buf[256], *z;

	if (size < 1)
		return 0;
	match = data[0] & 1;
	body = (const char *)data + 1;
	size--;
	check(body, size, match);

	/* as the content of a well-formed answer */
	{
		json_t *c = json_stringn(body, size); /* NULL: not UTF-8 */
		if (c) {
			json_t *env = json_pack(
			    "{s:s,s:[{s:i,s:{s:s,s:O},s:s}],s:{s:i,s:i}}",
			    "model", "fuzz", "choices", "index", 0, "message",
			    "role", "assistant", "content", c, "finish_reason",
			    "stop", "usage", "prompt_tokens", 1,
			    "completion_tokens", 2);
			char *d = env ? json_dumps(env, 0) : NULL;
			if (d) {
				check(d, strlen(d), match);
				free(d);
			}
			json_decref(env);
			json_decref(c);
		}
	}

	pm_vision_error_message(body, size, buf, sizeof buf);
	if (strnlen(buf, sizeof buf) >= sizeof buf)
		abort();
	z = malloc(size + 1);
	if (!z)
		return 0;
	memcpy(z, body, size);
	z[size] = '\0';
	{
		double ra = pm_vision_retry_after(z, 1700000000);
		if (!(ra == -1 || (ra >= 0 && ra <= 86400)))
			abort();
	}
	free(z);
	return 0;
}
