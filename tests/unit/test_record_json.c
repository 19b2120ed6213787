/* test_record_json.c — unit tests for the queued-record codec
 * (ingest/record_json.c): every field of records the catalog readers make
 * survives pm_record_to_json / pm_record_from_json, and hostile texts fail
 * with PM_ERR_CATALOG and a reason.
 *
 * Threads: single-threaded test program (main thread only).
 */
#include "ingest/record_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"

static int same(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* Encodes r, decodes it again and compares every field. */
static void round_trip(const pm_record *r)
{
	char *txt = NULL;
	pm_record *b = NULL;
	pm_err err = {{0}};

	CHECK_INT(pm_record_to_json(r, &txt, &err), PM_OK);
	if (!txt)
		return;
	CHECK_INT(pm_record_from_json(txt, strlen(txt), &b, &err), PM_OK);
	if (!b) {
		fprintf(stderr, "  %s: %s\n", txt, err.msg);
		free(txt);
		return;
	}
	CHECK_INT(b->ordinal, r->ordinal);
	CHECK(same(b->key, r->key));
	CHECK(same(b->id, r->id));
	CHECK(same(b->image, r->image));
	CHECK(same(b->candidates, r->candidates));
	CHECK(same(b->title, r->title));
	CHECK(same(b->price, r->price));
	CHECK(same(b->category, r->category));
	CHECK(same(b->attrs_json, r->attrs_json));
	CHECK_INT(b->status, r->status);
	CHECK_INT(b->no_image, r->no_image);
	if (r->status)
		CHECK_STR(b->error, r->error);
	free(txt);
	pm_record_free(b);
}

/* Every record of a catalog in memory goes through round_trip; returns
 * how many. */
static int catalog_round_trip(const char *text, pm_catalog_kind kind)
{
	pm_catalog *c = NULL;
	pm_record *r = NULL;
	pm_err err;
	int n = 0;

	CHECK_INT(pm_catalog_open_mem(text, strlen(text), kind, NULL, &c, &err),
		  PM_OK);
	while (c && pm_catalog_next(c, &r, &err) == PM_OK && r) {
		round_trip(r);
		pm_record_free(r);
		n++;
	}
	pm_catalog_close(c);
	return n;
}

static void test_catalog_records(void)
{
	/* ids, titles, prices, categories, extra columns, candidates, a
	 * row without image (no_image), a malformed row, UTF-8 */
	CHECK_INT(catalog_round_trip(
		      "id,image,title,price,category,brand,image_urls\n"
		      "1,/a.jpg,Chaise \"Lou\",12.50,Mobilier,Ikéa,\n"
		      "2,,Sans image,3,,,\n"
		      "3,,,,,,http://x/a.jpg 800w | /b.png\n"
		      "4,/c.jpg,\"multi\nline\",,,,\n",
		      PM_CATALOG_CSV),
		  4);
	CHECK_INT(
	    catalog_round_trip("{\"image\":\"/a.jpg\",\"n\":[1,{\"b\":2}]}"
			       "\n{\"title\":\"no image\"}\nnot json\n"
			       "{\"image\":\"http://h/x.png\","
			       "\"price\":9.99}\n",
			       PM_CATALOG_JSONL),
	    4);
	CHECK_INT(
	    catalog_round_trip("/x.jpg\nhttp://h/y.png\n", PM_CATALOG_LIST), 2);
}

static void test_fields(void)
{
	pm_record r = {.ordinal = 77,
		       .key = "r77",
		       .id = "sku-1",
		       .image = "/img/a.jpg",
		       .title = "T",
		       .price = "1.5",
		       .category = "C",
		       .attrs_json = "{\"a\":\"b\"}"};
	char *txt = NULL;
	pm_err err;

	CHECK_INT(pm_record_to_json(&r, &txt, &err), PM_OK);
	CHECK(txt && strstr(txt, "\"ordinal\":77"));
	CHECK(txt && strstr(txt, "\"status\":\"ok\""));
	CHECK(txt && !strstr(txt, "\"error\""));
	free(txt);
	round_trip(&r);
	/* a malformed row keeps its reason, even one cut inside a UTF-8
	 * character */
	r.image = NULL;
	r.status = PM_ERR_CATALOG;
	memset(r.error, 'x', sizeof r.error);
	r.error[sizeof r.error - 2] = (char)0xc3; /* half of "é" */
	r.error[sizeof r.error - 1] = 0;
	CHECK_INT(pm_record_to_json(&r, &txt, &err), PM_OK);
	free(txt);
	r.error[sizeof r.error - 2] = '?';
	round_trip(&r);
	/* no key: a bug of the caller */
	r.key = NULL;
	CHECK_INT(pm_record_to_json(&r, &txt, &err), PM_ERR_INTERNAL);
}

static void expect_bad(const char *text, const char *why)
{
	pm_record *r = (pm_record *)1;
	pm_err err = {{0}};
	pm_status s =
	    pm_record_from_json(text, text ? strlen(text) : 0, &r, &err);

	CHECK_INT(s, PM_ERR_CATALOG);
	CHECK(r == NULL);
	if (why && !strstr(err.msg, why)) {
		t_failed++;
		fprintf(stderr, "  %s: error \"%s\", want \"%s\"\n", text,
			err.msg, why);
	}
}

static void test_hostile(void)
{
	static char big[PM_RECORD_JSON_MAX + 16];
	char nul[] = "{\"ordinal\":1,\"key\":\"r1\",\"image\":\"/a\\u0000b\"}";

	expect_bad(NULL, "empty");
	expect_bad("", "not JSON");
	expect_bad("{", "not JSON");
	expect_bad("[1,2]", "not a JSON object");
	expect_bad("\"str\"", "not JSON"); /* no JSON_DECODE_ANY */
	expect_bad("{\"key\":\"r1\",\"image\":\"/a\"}", "ordinal");
	expect_bad("{\"ordinal\":-1,\"key\":\"r1\",\"image\":\"/a\"}",
		   "ordinal");
	expect_bad("{\"ordinal\":1.5,\"key\":\"r1\",\"image\":\"/a\"}",
		   "ordinal");
	expect_bad("{\"ordinal\":1,\"image\":\"/a\"}", "key");
	expect_bad("{\"ordinal\":1,\"key\":\"\",\"image\":\"/a\"}", "key");
	expect_bad("{\"ordinal\":1,\"key\":5,\"image\":\"/a\"}", "\"key\"");
	expect_bad("{\"ordinal\":1,\"key\":\"r1\"}", "image");
	expect_bad("{\"ordinal\":1,\"key\":\"r1\",\"image\":[\"/a\"]}",
		   "\"image\" is not a string");
	expect_bad(nul, "NUL");
	expect_bad("{\"ordinal\":1,\"key\":\"r1\",\"image\":\"/a\","
		   "\"attrs_json\":\"[1]\"}",
		   "attrs_json");
	expect_bad("{\"ordinal\":1,\"key\":\"r1\",\"image\":\"/a\","
		   "\"attrs_json\":\"{\"}",
		   "attrs_json");
	expect_bad("{\"ordinal\":1,\"key\":\"r1\",\"image\":\"/a\","
		   "\"status\":\"decode_error\"}",
		   "status");
	expect_bad("{\"ordinal\":1,\"key\":\"r1\",\"image\":\"/a\","
		   "\"status\":\"nonsense\"}",
		   "status");
	expect_bad("{\"ordinal\":1,\"key\":\"r1\",\"image\":\"/a\","
		   "\"no_image\":1}",
		   "no_image");
	expect_bad("{\"ordinal\":1,\"key\":\"r1\",\"image\":\"/a\","
		   "\"evil\":1}",
		   "unknown field");
	expect_bad("{\"ordinal\":1,\"key\":\"r1\",\"key\":\"r2\","
		   "\"image\":\"/a\"}",
		   "not JSON");
	expect_bad("{\"ordinal\":1,\"key\":\"r1\",\"image\":\"\xff\"}",
		   "not JSON");
	memset(big, ' ', sizeof big - 1);
	expect_bad(big, "limit");
	{ /* deep nesting is refused by the parser, not a stack overflow */
		size_t n = 100000;
		char *deep = malloc(2 * n + 1);
		if (deep) {
			memset(deep, '[', n);
			memset(deep + n, ']', n);
			deep[2 * n] = 0;
			expect_bad(deep, NULL);
			free(deep);
		}
	}
	{ /* a malformed record as queued: it stays malformed, with reason */
		pm_record *r = NULL;
		pm_err err;
		const char *t =
		    "{\"ordinal\":3,\"key\":\"r3\",\"status\":"
		    "\"bad_catalog_row\",\"error\":\"line 4: bad\"}";
		CHECK_INT(pm_record_from_json(t, strlen(t), &r, &err), PM_OK);
		if (r) {
			CHECK_INT(r->status, PM_ERR_CATALOG);
			CHECK_STR(r->error, "line 4: bad");
			CHECK_STR(r->attrs_json, "{}");
			CHECK(r->image == NULL);
		}
		pm_record_free(r);
	}
}

int main(void)
{
	test_catalog_records();
	test_fields();
	test_hostile();
	TEST_DONE();
}
