/* test_provider.c — unit tests of the image search providers
 * (src/fetch/provider.c): the Google CSE and Bing v7 answer parsers, spec
 * parsing (defaults, errors that never echo the key), query building, the
 * quota seed, and the catalog's no_image rows they search for.
 *
 * Threads: main thread only.
 */
#include <stdlib.h>
#include <string.h>

#include "fetch/provider.h"
#include "ingest/catalog.h"
#include "test.h"

#define LEN(s) (sizeof(s) - 1)

static void test_google(void)
{
	pm_provider_hit h[PM_PROVIDER_MAX_HITS];
	pm_err e = {{0}};
	int n = -1;
	static const char ok[] =
	    "{\"kind\":\"customsearch#search\",\"items\":["
	    "{\"link\":\"https://a.example/x.jpg\",\"image\":{\"width\":800,"
	    "\"height\":600}},"
	    "{\"link\":\"ftp://b.example/y.jpg\"},"	/* not http */
	    "{\"link\":\"https://b.example/a b.jpg\"}," /* a space */
	    "{\"link\":\"https://b.example/a|b.jpg\"}," /* a bar */
	    "{\"title\":\"no link\"},"			/* no link */
	    "7,"					/* not an object */
	    "{\"link\":\"http://c.example/z.png\",\"image\":{\"width\":-5,"
	    "\"height\":\"300\"}}]}";

	CHECK_INT(pm_provider_parse_google(ok, LEN(ok), h, 10, &n, &e), PM_OK);
	CHECK_INT(n, 2);
	CHECK_STR(h[0].url, "https://a.example/x.jpg");
	CHECK_INT(h[0].width, 800);
	CHECK_INT(h[0].height, 600);
	CHECK_STR(h[1].url, "http://c.example/z.png");
	CHECK_INT(h[1].width, 0); /* out of range reads as 0 */
	CHECK_INT(h[1].height, 300);

	/* max bounds the hits */
	CHECK_INT(pm_provider_parse_google(ok, LEN(ok), h, 1, &n, &e), PM_OK);
	CHECK_INT(n, 1);

	/* Google leaves "items" out when nothing is found */
	CHECK_INT(
	    pm_provider_parse_google("{\"kind\":\"x\"}", 12, h, 10, &n, &e),
	    PM_OK);
	CHECK_INT(n, 0);

	CHECK_INT(pm_provider_parse_google("{\"items\": [", 11, h, 10, &n, &e),
		  PM_ERR_UPSTREAM);
	CHECK(strstr(e.msg, "not JSON") != NULL);
	CHECK_INT(n, 0);
	CHECK_INT(pm_provider_parse_google("[1,2]", 5, h, 10, &n, &e),
		  PM_ERR_UPSTREAM);
	CHECK_INT(pm_provider_parse_google("{\"items\":{}}", 12, h, 10, &n, &e),
		  PM_ERR_UPSTREAM);
	CHECK(strstr(e.msg, "not a list") != NULL);
	/* not NUL-terminated: only len bytes are read */
	CHECK_INT(pm_provider_parse_google("{}garbage", 2, h, 10, &n, &e),
		  PM_OK);
}

static void test_bing(void)
{
	pm_provider_hit h[PM_PROVIDER_MAX_HITS];
	pm_err e = {{0}};
	int n = -1;
	char big[PM_PROVIDER_MAX_URL + 200];
	char *body;
	static const char ok[] =
	    "{\"_type\":\"Images\",\"value\":["
	    "{\"contentUrl\":\"https://th.example/1.jpg\",\"width\":1024,"
	    "\"height\":768},"
	    "{\"contentUrl\":\"https://th.example/2.webp\"}]}";

	CHECK_INT(pm_provider_parse_bing(ok, LEN(ok), h, 10, &n, &e), PM_OK);
	CHECK_INT(n, 2);
	CHECK_STR(h[0].url, "https://th.example/1.jpg");
	CHECK_INT(h[0].width, 1024);
	CHECK_INT(h[1].width, 0);
	/* a Google-shaped answer is no Bing answer: no results */
	{
		static const char g[] =
		    "{\"items\":[{\"link\":\"http://a/b\"}]}";
		CHECK_INT(pm_provider_parse_bing(g, LEN(g), h, 10, &n, &e),
			  PM_OK);
	}
	CHECK_INT(n, 0);
	/* an over-long URL is skipped */
	memset(big, 'a', sizeof big);
	memcpy(big, "https://", 8);
	big[sizeof big - 1] = '\0';
	body = malloc(sizeof big + 64);
	snprintf(body, sizeof big + 64, "{\"value\":[{\"contentUrl\":\"%s\"}]}",
		 big);
	CHECK_INT(pm_provider_parse_bing(body, strlen(body), h, 10, &n, &e),
		  PM_OK);
	CHECK_INT(n, 0);
	free(body);
}

static void test_spec(void)
{
	pm_provider *p = NULL;
	pm_err e = {{0}};
	char q[256];

	setenv("PM_UNIT_KEY", "unit-secret-key-42", 1);
	CHECK_INT(pm_provider_parse_spec("google,key=env:PM_UNIT_KEY", &p, &e),
		  PM_ERR_USAGE); /* no cx */
	CHECK(strstr(e.msg, "cx=") != NULL);
	CHECK_INT(pm_provider_parse_spec(
		      "google,cx=abc,key=env:PM_UNIT_KEY,rps=fast", &p, &e),
		  PM_ERR_USAGE);
	CHECK(strstr(e.msg, "unit-secret") == NULL);
	CHECK_INT(
	    pm_provider_parse_spec("bing,key=unit-secret-key-42,x=1", &p, &e),
	    PM_ERR_USAGE);
	CHECK(strstr(e.msg, "unit-secret") == NULL);
	CHECK(strstr(e.msg, "unknown setting") != NULL);
	CHECK_INT(pm_provider_parse_spec("altavista", &p, &e), PM_ERR_USAGE);
	CHECK_INT(pm_provider_parse_spec("bing,key=env:PM_UNIT_NOPE", &p, &e),
		  PM_ERR_USAGE);
	CHECK_INT(pm_provider_parse_spec("bing,name=bad name", &p, &e),
		  PM_ERR_USAGE);
	CHECK_INT(pm_provider_parse_spec("bing,endpoint=ftp://x", &p, &e),
		  PM_ERR_USAGE);
	CHECK_INT(pm_provider_parse_spec("bing,max=11", &p, &e), PM_ERR_USAGE);
	CHECK(p == NULL);

	CHECK_INT(pm_provider_parse_spec("google,cx=abc,key=env:PM_UNIT_KEY,"
					 "name=g2,quota=7",
					 &p, &e),
		  PM_OK);
	CHECK_STR(pm_provider_name(p), "g2");
	CHECK_STR(pm_provider_kind(p), "google");
	CHECK_INT(pm_provider_quota(p), 7);
	/* default query: title + brand (an attribute) */
	pm_provider_query(p, "Red\tkettle ", "id1", "kitchen",
			  "{\"brand\":\" Acme \",\"colour\":\"red\"}", q,
			  sizeof q);
	CHECK_STR(q, "Red kettle Acme");
	pm_provider_query(p, NULL, NULL, NULL, NULL, q, sizeof q);
	CHECK_STR(q, "");
	/* cut at a character boundary */
	pm_provider_query(p, "ab\xc3\xa9", NULL, NULL, "{}", q, 5);
	CHECK_STR(q, "ab");
	pm_provider_free(p);

	CHECK_INT(
	    pm_provider_parse_spec("bing,query=id+category+colour", &p, &e),
	    PM_OK);
	pm_provider_query(p, "T", "id1", "kitchen", "{\"colour\":\"red\"}", q,
			  sizeof q);
	CHECK_STR(q, "id1 kitchen red");
	pm_provider_free(p);
}

/* Rows naming no image keep their fields (no_image); other bad rows do
 * not. */
static void test_catalog_no_image(void)
{
	static const char csv[] = "id,image,title,brand\n"
				  "a,,Red kettle,Acme\n"
				  "b,file://remote/x.jpg,Bad,Z\n";
	static const char jsonl[] = "{\"id\":\"c\",\"title\":\"Blue mug\"}\n";
	pm_catalog *c = NULL;
	pm_record *r = NULL;
	pm_err e = {{0}};

	CHECK_INT(
	    pm_catalog_open_mem(csv, LEN(csv), PM_CATALOG_CSV, NULL, &c, &e),
	    PM_OK);
	CHECK_INT(pm_catalog_next(c, &r, &e), PM_OK);
	CHECK(r && r->status == PM_ERR_CATALOG && r->no_image);
	CHECK_STR(r->title, "Red kettle");
	CHECK(r->attrs_json && strstr(r->attrs_json, "Acme"));
	CHECK_STR(r->error, "line 2: empty image");
	pm_record_free(r);
	CHECK_INT(pm_catalog_next(c, &r, &e), PM_OK);
	CHECK(r && r->status == PM_ERR_CATALOG && !r->no_image);
	CHECK(r->title == NULL);
	pm_record_free(r);
	pm_catalog_close(c);

	CHECK_INT(pm_catalog_open_mem(jsonl, LEN(jsonl), PM_CATALOG_JSONL, NULL,
				      &c, &e),
		  PM_OK);
	CHECK_INT(pm_catalog_next(c, &r, &e), PM_OK);
	CHECK(r && r->status == PM_ERR_CATALOG && r->no_image);
	CHECK_STR(r->title, "Blue mug");
	pm_record_free(r);
	pm_catalog_close(c);
}

int main(void)
{
	test_google();
	test_bing();
	test_spec();
	test_catalog_no_image();
	TEST_DONE();
}
