/* test_analyze.c — the vision client's pure parts and the analyze stage's
 * params (src/vision/, src/stages/analyze.c): the answer parser and
 * validator, the request body, Retry-After, base64, the key rotation and
 * AIMD rate of an endpoint (with a fake clock), key scrubbing, and that
 * API keys and operational settings stay out of the pipeline hash. The
 * HTTP side runs against tests/vision/server.py in
 * tests/vision/test_analyze.sh.
 *
 * Threads: main thread only.
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "core/metrics.h"
#include "stages/pipeline.h"
#include "test.h"
#include "vision/vision.h"

/* A chat completion whose message content is `content` (a JSON string
 * literal, already quoted). */
static char *envelope(const char *content, const char *finish)
{
	char *s = NULL;
	if (asprintf(&s,
		     "{\"id\":\"c1\",\"object\":\"chat.completion\","
		     "\"model\":\"m-1\",\"choices\":[{\"index\":0,"
		     "\"message\":{\"role\":\"assistant\",\"content\":%s},"
		     "\"finish_reason\":\"%s\"}],\"usage\":{\"prompt_tokens\":"
		     "120,\"completion_tokens\":30,\"total_tokens\":150}}",
		     content, finish) < 0)
		return NULL;
	return s;
}

static pm_status parse_content(const char *content, bool match,
			       pm_vision_answer *a, pm_err *e)
{
	char *b = envelope(content, "stop");
	pm_status s;
	memset(a, 0, sizeof *a);
	s = pm_vision_parse(b, strlen(b), match, a, e);
	free(b);
	return s;
}

static void test_parse_ok(void)
{
	pm_vision_answer a;
	pm_err e = {{0}};

	CHECK_INT(parse_content("\"{\\\"caption\\\":\\\"  a red mug  \\\","
				"\\\"tags\\\":[\\\"mug\\\",\\\" \\\","
				"\\\"red\\\"]}\"",
				false, &a, &e),
		  PM_OK);
	CHECK_STR(a.caption, "a red mug");
	CHECK_INT(json_array_size(a.tags), 2); /* the blank tag is dropped */
	CHECK_STR(json_string_value(json_array_get(a.tags, 1)), "red");
	CHECK_INT(a.tokens_in, 120);
	CHECK_INT(a.tokens_out, 30);
	CHECK_STR(a.model, "m-1");
	CHECK(!a.has_match);
	pm_vision_answer_clear(&a);

	/* with a title: product_match and match_score (an integer 1 is a
	 * number too) */
	CHECK_INT(parse_content("\"{\\\"caption\\\":\\\"x\\\",\\\"tags\\\":[],"
				"\\\"product_match\\\":true,"
				"\\\"match_score\\\":1}\"",
				true, &a, &e),
		  PM_OK);
	CHECK(a.has_match && a.product_match);
	CHECK(a.match_score == 1.0);
	pm_vision_answer_clear(&a);

	/* a Markdown fence around the object is tolerated */
	CHECK_INT(parse_content("\"```json\\n{\\\"caption\\\":\\\"c\\\","
				"\\\"tags\\\":[\\\"t\\\"]}\\n```\"",
				false, &a, &e),
		  PM_OK);
	CHECK_STR(a.caption, "c");
	pm_vision_answer_clear(&a);

	/* content as an array of parts */
	CHECK_INT(
	    parse_content("[{\"type\":\"text\",\"text\":\"{\\\"caption\\\":"
			  "\\\"p\\\",\\\"tags\\\":[]}\"}]",
			  false, &a, &e),
	    PM_OK);
	CHECK_STR(a.caption, "p");
	pm_vision_answer_clear(&a);
}

static void test_parse_limits(void)
{
	pm_vision_answer a;
	pm_err e = {{0}};
	char content[8192], *p = content;

	/* 40 tags, one 100 bytes long: 32 kept, cut to 64 bytes */
	p += sprintf(p, "\"{\\\"caption\\\":\\\"c\\\",\\\"tags\\\":[");
	for (int i = 0; i < 40; i++)
		p += sprintf(
		    p, "%s\\\"%s%d\\\"", i ? "," : "",
		    i == 0 ? "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
			     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
			   : "t",
		    i);
	sprintf(p, "]}\"");
	CHECK_INT(parse_content(content, false, &a, &e), PM_OK);
	CHECK_INT(json_array_size(a.tags), PM_VISION_MAX_TAGS);
	CHECK_INT(strlen(json_string_value(json_array_get(a.tags, 0))),
		  PM_VISION_MAX_TAG);
	pm_vision_answer_clear(&a);
}

static void test_parse_bad(void)
{
	static const struct {
		const char *content;
		bool match;
		const char *reason; /* a part of the message */
	} bad[] = {
	    {"\"Sure! {caption: oops\"", false, "not a JSON object"},
	    {"\"[1,2]\"", false, "not a JSON object"},
	    {"\"{\\\"caption\\\":42,\\\"tags\\\":[]}\"", false, "\"caption\""},
	    {"\"{\\\"tags\\\":[]}\"", false, "\"caption\" is missing"},
	    {"\"{\\\"caption\\\":\\\"  \\\",\\\"tags\\\":[]}\"", false,
	     "empty"},
	    {"\"{\\\"caption\\\":\\\"c\\\",\\\"tags\\\":\\\"red\\\"}\"", false,
	     "\"tags\""},
	    {"\"{\\\"caption\\\":\\\"c\\\",\\\"tags\\\":[1]}\"", false,
	     "tag 1 is not a string"},
	    {"\"{\\\"caption\\\":\\\"c\\\",\\\"tags\\\":[]}\"", true,
	     "\"product_match\" is missing"},
	    {"\"{\\\"caption\\\":\\\"c\\\",\\\"tags\\\":[],\\\"product_"
	     "match\\\":"
	     "\\\"yes\\\",\\\"match_score\\\":0.5}\"",
	     true, "\"product_match\""},
	    {"\"{\\\"caption\\\":\\\"c\\\",\\\"tags\\\":[],\\\"product_"
	     "match\\\":"
	     "true,\\\"match_score\\\":1.5}\"",
	     true, "outside 0..1"},
	    {"\"{\\\"caption\\\":\\\"c\\\",\\\"caption\\\":\\\"d\\\","
	     "\\\"tags\\\":"
	     "[]}\"",
	     false, "not a JSON object"},
	    {"null", false, "no text"},
	};
	pm_vision_answer a;
	pm_err e;

	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		memset(&e, 0, sizeof e);
		CHECK_INT(parse_content(bad[i].content, bad[i].match, &a, &e),
			  PM_ERR_UPSTREAM);
		if (!strstr(e.msg, bad[i].reason))
			fprintf(stderr, "case %zu: \"%s\" lacks \"%s\"\n", i,
				e.msg, bad[i].reason);
		CHECK(strstr(e.msg, bad[i].reason) != NULL);
		CHECK(a.caption == NULL && a.tags == NULL);
		/* usage is kept for the cost counters even so */
		CHECK_INT(a.tokens_in, 120);
		pm_vision_answer_clear(&a);
	}

	/* the envelope itself */
	{
		static const char *const env[] = {
		    "",
		    "not json",
		    "[]",
		    "{\"choices\":[]}",
		    "{\"choices\":[{\"message\":\"x\"}]}",
		    "{\"error\":{\"message\":\"boom\"}}"};
		for (size_t i = 0; i < sizeof env / sizeof *env; i++) {
			memset(&a, 0, sizeof a);
			CHECK_INT(pm_vision_parse(env[i], strlen(env[i]), false,
						  &a, &e),
				  PM_ERR_UPSTREAM);
			CHECK_INT(a.tokens_in, -1);
			pm_vision_answer_clear(&a);
		}
	}
	/* a refusal, and an answer cut off at max_tokens */
	{
		const char *r = "{\"choices\":[{\"message\":{\"content\":null,"
				"\"refusal\":\"I can't\"}}]}";
		memset(&a, 0, sizeof a);
		CHECK_INT(pm_vision_parse(r, strlen(r), false, &a, &e),
			  PM_ERR_UPSTREAM);
		CHECK(strstr(e.msg, "refused") != NULL);
		char *b = envelope("\"{\\\"caption\\\":\\\"trunc\"", "length");
		CHECK_INT(pm_vision_parse(b, strlen(b), false, &a, &e),
			  PM_ERR_UPSTREAM);
		CHECK(strstr(e.msg, "max_tokens") != NULL);
		free(b);
	}
}

static void test_request_body(void)
{
	pm_vision_req r = {.model = "gpt-4o-mini",
			   .title = "Red \"mug\"",
			   .response_format = "json_schema",
			   .detail = "low",
			   .max_tokens = 300,
			   .temperature = -1,
			   .retry_reason = "not a JSON object",
			   .image_b64 = "QUJD"};
	char *b = pm_vision_request_body(&r);
	json_t *j = b ? json_loads(b, 0, NULL) : NULL, *msgs, *user, *img;

	CHECK(j != NULL);
	CHECK_STR(json_string_value(json_object_get(j, "model")),
		  "gpt-4o-mini");
	CHECK_INT(json_integer_value(json_object_get(j, "max_tokens")), 300);
	CHECK(json_object_get(j, "temperature") == NULL);
	msgs = json_object_get(j, "messages");
	CHECK_INT(json_array_size(msgs), 2);
	CHECK_STR(
	    json_string_value(json_object_get(json_array_get(msgs, 0), "role")),
	    "system");
	CHECK(strstr(json_string_value(
			 json_object_get(json_array_get(msgs, 0), "content")),
		     "JSON") != NULL);
	user = json_object_get(json_array_get(msgs, 1), "content");
	CHECK_STR(
	    json_string_value(json_object_get(json_array_get(user, 0), "type")),
	    "text");
	/* the title is quoted as a JSON string; the retry reason is there */
	CHECK(strstr(json_string_value(
			 json_object_get(json_array_get(user, 0), "text")),
		     "\"Red \\\"mug\\\"\"") != NULL);
	CHECK(strstr(json_string_value(
			 json_object_get(json_array_get(user, 0), "text")),
		     "not a JSON object") != NULL);
	img = json_object_get(json_array_get(user, 1), "image_url");
	CHECK_STR(json_string_value(json_object_get(img, "url")),
		  "data:image/jpeg;base64,QUJD");
	CHECK_STR(json_string_value(json_object_get(img, "detail")), "low");
	{
		json_t *rf = json_object_get(j, "response_format");
		json_t *req = json_object_get(
		    json_object_get(json_object_get(rf, "json_schema"),
				    "schema"),
		    "required");
		CHECK_STR(json_string_value(json_object_get(rf, "type")),
			  "json_schema");
		CHECK_INT(json_array_size(req), 4);
	}
	json_decref(j);
	free(b);

	r.title = NULL;
	r.response_format = "json_object";
	r.temperature = 0;
	r.retry_reason = NULL;
	b = pm_vision_request_body(&r);
	j = b ? json_loads(b, 0, NULL) : NULL;
	CHECK_STR(json_string_value(json_object_get(
		      json_object_get(j, "response_format"), "type")),
		  "json_object");
	CHECK(json_is_number(json_object_get(j, "temperature")));
	CHECK(strstr(b, "product_match") == NULL);
	json_decref(j);
	free(b);
}

static void test_helpers(void)
{
	char *s, buf[64];

	s = pm_vision_base64("", 0);
	CHECK_STR(s, "");
	free(s);
	s = pm_vision_base64("f", 1);
	CHECK_STR(s, "Zg==");
	free(s);
	s = pm_vision_base64("foobar", 6);
	CHECK_STR(s, "Zm9vYmFy");
	free(s);

	CHECK(pm_vision_retry_after(NULL, 0) == -1);
	CHECK(pm_vision_retry_after("5", 0) == 5);
	CHECK(pm_vision_retry_after(" 2.5 ", 0) == 2.5);
	CHECK(pm_vision_retry_after("soon", 0) == -1);
	CHECK(pm_vision_retry_after("-3", 0) == -1);
	CHECK(pm_vision_retry_after("Thu, 01 Jan 1970 00:01:40 GMT", 90) == 10);
	CHECK(pm_vision_retry_after("Thu, 01 Jan 1970 00:01:40 GMT", 200) == 0);

	{
		const char *eb = "{\"error\":{\"message\":\"bad\\nthing\"}}";
		pm_vision_error_message(eb, strlen(eb), buf, sizeof buf);
	}
	CHECK_STR(buf, "bad thing");
	pm_vision_error_message("<html>", 6, buf, sizeof buf);
	CHECK_STR(buf, "");
}

static void test_limiter(void)
{
	pm_err e = {{0}};
	pm_vision_ep *ep = pm_vision_ep_get("http://limiter.test/v1", "m", &e);
	pm_vision_cfg c;
	int k;
	double at, now = 1000;
	char msg[128];

	CHECK(ep != NULL);
	if (!ep)
		return;
	pm_vision_ep_get_cfg(ep, &c);
	c.rate_start = 100;
	c.rate_max = 100;
	c.rate_min = 0.5;
	c.rate_increase = 1;
	c.rate_decrease = 0.5;
	c.max_wait_s = 60;
	pm_vision_ep_set_cfg(ep, &c);
	CHECK_INT(pm_vision_ep_add_key(ep, "secret-aaaa", &e), PM_OK);
	CHECK_INT(pm_vision_ep_add_key(ep, "secret-bbbb", &e), PM_OK);
	CHECK_INT(pm_vision_ep_add_key(ep, "secret-cccc", &e), PM_OK);
	CHECK_INT(pm_vision_ep_add_key(ep, "secret-aaaa", &e), PM_OK);
	CHECK_INT(pm_vision_ep_key_count(ep), 3); /* the duplicate ignored */
	CHECK_INT(pm_vision_ep_add_key(ep, "zq9 secret", &e), PM_ERR_PIPELINE);
	CHECK(strstr(e.msg, "zq9") == NULL);

	/* round robin */
	for (int i = 0; i < 6; i++) {
		CHECK_INT(pm_vision_ep_pick(ep, now, &k, &at, &e), PM_OK);
		CHECK_INT(k, i % 3);
	}
	/* a 429 with Retry-After 5 on key 2 (index 1): halved, skipped
	 * while it cools down */
	pm_vision_ep_report(ep, 1, PM_VO_RATE, 5, now);
	CHECK(pm_vision_ep_rate(ep, 1, NULL) == 50);
	for (int i = 0; i < 4; i++) {
		CHECK_INT(pm_vision_ep_pick(ep, now + 1 + i, &k, &at, &e),
			  PM_OK);
		CHECK(k != 1);
	}
	CHECK_INT(pm_vision_ep_pick(ep, now + 6, &k, &at, &e), PM_OK);
	CHECK_INT(pm_vision_ep_pick(ep, now + 6, &k, &at, &e), PM_OK);
	CHECK_INT(pm_vision_ep_pick(ep, now + 6, &k, &at, &e), PM_OK);
	/* additive increase, capped */
	pm_vision_ep_report(ep, 1, PM_VO_OK, -1, now);
	CHECK(pm_vision_ep_rate(ep, 1, NULL) == 51);
	pm_vision_ep_report(ep, 0, PM_VO_OK, -1, now);
	CHECK(pm_vision_ep_rate(ep, 0, NULL) == 100);
	/* overload halves down to rate_min */
	for (int i = 0; i < 10; i++)
		pm_vision_ep_report(ep, 2, PM_VO_OVERLOAD, -1, now);
	CHECK(pm_vision_ep_rate(ep, 2, NULL) == 0.5);
	/* ... and a slow key is paced: 2 s between its slots */
	{
		double t1, t2;
		int k1 = -1;
		now = 2000;
		for (int i = 0; i < 3 && k1 != 2; i++)
			pm_vision_ep_pick(ep, now, &k1, &t1, &e);
		CHECK_INT(k1, 2);
		/* key 3's next slot is 2 s later: the others go first */
		CHECK_INT(pm_vision_ep_pick(ep, now, &k, &t2, &e), PM_OK);
		CHECK(k != 2);
	}
	/* 401 disables keys; with none left, PM_ERR_AUTH */
	pm_vision_ep_report(ep, 0, PM_VO_AUTH, -1, now);
	pm_vision_ep_report(ep, 1, PM_VO_AUTH, -1, now);
	for (int i = 0; i < 3; i++) {
		CHECK_INT(
		    pm_vision_ep_pick(ep, now + 10 * (i + 1), &k, &at, &e),
		    PM_OK);
		CHECK_INT(k, 2);
	}
	/* a cool-down past max_wait_s: PM_ERR_RATE, nothing reserved */
	pm_vision_ep_report(ep, 2, PM_VO_RATE, 500, now + 100);
	CHECK_INT(pm_vision_ep_pick(ep, now + 100, &k, &at, &e), PM_ERR_RATE);
	pm_vision_ep_report(ep, 2, PM_VO_AUTH, -1, now);
	CHECK_INT(pm_vision_ep_pick(ep, now + 1000, &k, &at, &e), PM_ERR_AUTH);
	CHECK(strstr(e.msg, "secret") == NULL);

	/* scrubbing */
	snprintf(msg, sizeof msg,
		 "Incorrect key secret-bbbb, really secret-bbbb");
	pm_vision_ep_scrub(ep, msg);
	CHECK_STR(msg, "Incorrect key ***, really ***");
}

static void test_limiter_pacing(void)
{
	pm_err e = {{0}};
	pm_vision_ep *ep = pm_vision_ep_get("http://pacing.test/v1", "m", &e);
	pm_vision_cfg c;
	int k;
	double at;

	pm_vision_ep_get_cfg(ep, &c);
	c.rate_start = 2;
	c.rate_min = 0.5;
	c.rate_max = 2;
	pm_vision_ep_set_cfg(ep, &c);
	/* no keys: one anonymous slot, paced at 2/s */
	CHECK_INT(pm_vision_ep_pick(ep, 10, &k, &at, &e), PM_OK);
	CHECK_INT(k, -1);
	CHECK(at == 10);
	CHECK_INT(pm_vision_ep_pick(ep, 10, &k, &at, &e), PM_OK);
	CHECK(fabs(at - 10.5) < 1e-9);
	CHECK_INT(pm_vision_ep_pick(ep, 10, &k, &at, &e), PM_OK);
	CHECK(fabs(at - 11.0) < 1e-9);

	/* environment keys, trimmed, empty ones skipped */
	setenv("PIXMILL_VISION_KEYS", " env-key-1 , env-key-2,,", 1);
	CHECK_INT(pm_vision_ep_add_env_keys(ep, &e), PM_OK);
	CHECK_INT(pm_vision_ep_key_count(ep), 2);
	setenv("PIXMILL_VISION_KEYS", "env-key-3", 1);
	CHECK_INT(pm_vision_ep_add_env_keys(ep, &e), PM_OK); /* once only */
	CHECK_INT(pm_vision_ep_key_count(ep), 2);
	unsetenv("PIXMILL_VISION_KEYS");
}

static char *pipeline_json(const char *extra)
{
	char *s = NULL;
	if (asprintf(&s,
		     "{\"name\":\"v\",\"stages\":[{\"stage\":\"analyze\","
		     "\"base_url\":\"http://127.0.0.1:9/v1\",%s}]}",
		     extra) < 0)
		return NULL;
	return s;
}

static void test_params(void)
{
	pm_pipeline *p1 = NULL, *p2 = NULL, *p3 = NULL, *p4 = NULL;
	pm_err e = {{0}};
	char *j;

	j = pipeline_json("\"model\":\"m1\",\"api_keys\":[\"sk-top-secret-1\"],"
			  "\"timeout_ms\":5000,\"price_in_per_1k\":0.15");
	CHECK_INT(pm_pipeline_parse(j, &p1, &e), PM_OK);
	free(j);
	j = pipeline_json("\"model\":\"m1\",\"api_keys\":[\"sk-other-key-2\"],"
			  "\"max_attempts\":2,\"rate_max\":5");
	CHECK_INT(pm_pipeline_parse(j, &p2, &e), PM_OK);
	free(j);
	j = pipeline_json("\"model\":\"m2\"");
	CHECK_INT(pm_pipeline_parse(j, &p3, &e), PM_OK);
	free(j);
	j = pipeline_json("\"model\":\"m1\",\"prompt\":\"Describe the dish.\"");
	CHECK_INT(pm_pipeline_parse(j, &p4, &e), PM_OK);
	free(j);
	if (p1 && p2 && p3 && p4) {
		/* keys and operational settings: out of the canonical form
		 * and the hash; model and prompt: in */
		CHECK(strstr(pm_pipeline_canonical(p1), "secret") == NULL);
		CHECK(strstr(pm_pipeline_canonical(p1), "api_keys") == NULL);
		CHECK(strstr(pm_pipeline_canonical(p1), "timeout") == NULL);
		CHECK(strstr(pm_pipeline_canonical(p2), "sk-other") == NULL);
		CHECK_STR(pm_pipeline_hash(p1), pm_pipeline_hash(p2));
		CHECK(strcmp(pm_pipeline_hash(p1), pm_pipeline_hash(p3)) != 0);
		CHECK(strcmp(pm_pipeline_hash(p1), pm_pipeline_hash(p4)) != 0);
		CHECK_INT(pm_pipeline_decode_size(p1), 768);
		/* the settings went to the endpoint */
		pm_vision_ep *ep =
		    pm_vision_ep_get("http://127.0.0.1:9/v1", "m1", &e);
		pm_vision_cfg c;
		pm_vision_ep_get_cfg(ep, &c);
		CHECK_INT(c.timeout_ms, 5000);
		CHECK_INT(c.max_attempts, 2);
		CHECK(c.price_in == 0.15);
		CHECK(c.rate_max == 5);
		CHECK_INT(pm_vision_ep_key_count(ep), 2);
	}
	pm_pipeline_free(p1);
	pm_pipeline_free(p2);
	pm_pipeline_free(p3);
	pm_pipeline_free(p4);

	static const struct {
		const char *json;
		const char *reason;
	} bad[] = {
	    {"{\"name\":\"v\",\"stages\":[{\"stage\":\"analyze\",\"model\":"
	     "\"m\"}]}",
	     "\"base_url\" is required"},
	    {"{\"name\":\"v\",\"stages\":[{\"stage\":\"analyze\",\"base_url\":"
	     "\"ftp://x/v1\",\"model\":\"m\"}]}",
	     "http://"},
	    {"{\"name\":\"v\",\"stages\":[{\"stage\":\"analyze\",\"base_url\":"
	     "\"http://x/v1\"}]}",
	     "\"model\" is required"},
	    {"{\"name\":\"v\",\"stages\":[{\"stage\":\"analyze\",\"base_url\":"
	     "\"http://x/v1\",\"model\":\"m\",\"response_format\":\"xml\"}]}",
	     "response_format"},
	    {"{\"name\":\"v\",\"stages\":[{\"stage\":\"analyze\",\"base_url\":"
	     "\"http://x/v1\",\"model\":\"m\",\"max_edge\":10}]}",
	     "max_edge"},
	    {"{\"name\":\"v\",\"stages\":[{\"stage\":\"analyze\",\"base_url\":"
	     "\"http://x/v1\",\"model\":\"m\",\"timeout_ms\":\"x\"}]}",
	     "timeout_ms"},
	    {"{\"name\":\"v\",\"stages\":[{\"stage\":\"analyze\",\"base_url\":"
	     "\"http://x/v1\",\"model\":\"m\",\"api_keys\":[\"bad key "
	     "123\"]}]}",
	     "API key"},
	};
	/* base_url and model from the environment, then hashed as if
	 * written */
	{
		pm_pipeline *p = NULL;
		setenv("PIXMILL_VISION_URL", "http://127.0.0.1:9/v1", 1);
		setenv("PIXMILL_VISION_MODEL", "env-model", 1);
		CHECK_INT(pm_pipeline_parse("{\"name\":\"v\",\"stages\":[{"
					    "\"stage\":\"analyze\"}]}",
					    &p, &e),
			  PM_OK);
		CHECK(p && strstr(pm_pipeline_canonical(p),
				  "\"model\":\"env-model\"") != NULL);
		CHECK(p && strstr(pm_pipeline_canonical(p),
				  "http://127.0.0.1:9/v1") != NULL);
		pm_pipeline_free(p);
		unsetenv("PIXMILL_VISION_URL");
		unsetenv("PIXMILL_VISION_MODEL");
	}
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		pm_pipeline *p = NULL;
		memset(&e, 0, sizeof e);
		CHECK_INT(pm_pipeline_parse(bad[i].json, &p, &e),
			  PM_ERR_PIPELINE);
		CHECK(strstr(e.msg, bad[i].reason) != NULL);
		CHECK(strstr(e.msg, "bad key") == NULL);
		pm_pipeline_free(p);
	}
}

/* The client against a port where nothing listens: an io_error after
 * max_attempts, and a clear message. */
static void test_client_refused(void)
{
	pm_err e = {{0}};
	pm_vision_ep *ep = pm_vision_ep_get("http://127.0.0.1:1/v1", "m", &e);
	pm_vision_client *c = NULL;
	pm_vision_cfg cfg;
	pm_vision_req r = {.model = "m",
			   .response_format = "json_object",
			   .temperature = -1,
			   .image_b64 = "QUJD"};
	pm_vision_answer a = {0};
	pm_vision_stats st;

	pm_vision_ep_get_cfg(ep, &cfg);
	cfg.max_attempts = 2;
	cfg.timeout_ms = 2000;
	cfg.rate_start = cfg.rate_max = 1000;
	pm_vision_ep_set_cfg(ep, &cfg);
	CHECK_INT(pm_vision_client_new(ep, "ftp://x", &c, &e), PM_ERR_PIPELINE);
	CHECK_INT(pm_vision_client_new(ep, "http://127.0.0.1:1/v1/", &c, &e),
		  PM_OK);
	CHECK_INT(pm_vision_analyze(c, &r, &a, &st, &e), PM_ERR_IO);
	CHECK_INT(st.requests, 2);
	CHECK(strstr(e.msg, "vision API request failed") != NULL);
	CHECK(a.caption == NULL);
	pm_vision_client_free(c);

	/* counted in the declared metrics */
	{
		char *m = pm_metrics_render(NULL);
		CHECK(m && strstr(m, "pixmill_vision_requests_total{outcome="
				     "\"network_error\"} 2") != NULL);
		CHECK(m && strstr(m, "# TYPE pixmill_vision_request_duration_"
				     "seconds histogram") != NULL);
		CHECK(m && strstr(m, "pixmill_vision_key_rate{key=\"key1\"}") !=
			       NULL);
		free(m);
	}
}

int main(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	test_parse_ok();
	test_parse_limits();
	test_parse_bad();
	test_request_body();
	test_helpers();
	test_limiter();
	test_limiter_pacing();
	test_params();
	test_client_refused();
	curl_global_cleanup();
	TEST_DONE();
}
