/* test_catalog.c — unit tests for the catalog readers (ingest/catalog.c):
 * CSV, JSON Lines, lists and folders, kind detection, limits, malformed
 * rows and image-path resolution.
 *
 * Threads: single-threaded test program (main thread only).
 */
#include "ingest/catalog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"

static char tmpdir[256];
static char cwd[4096];

/* Writes content to dir/name; returns the path in a static buffer. */
static const char *put(const char *name, const char *content)
{
	static char path[1024];
	FILE *f;

	snprintf(path, sizeof path, "%s/%s", tmpdir, name);
	f = fopen(path, "wb");
	if (!f) {
		perror(path);
		exit(2);
	}
	fputs(content, f);
	fclose(f);
	return path;
}

static void mkd(const char *name)
{
	char path[1024];

	snprintf(path, sizeof path, "%s/%s", tmpdir, name);
	if (mkdir(path, 0755) != 0) {
		perror(path);
		exit(2);
	}
}

/* Opens an in-memory catalog; NULL (and a failed CHECK) on failure. */
static pm_catalog *open_str(pm_catalog_kind kind, const char *s,
			    const pm_catalog_opts *o)
{
	pm_catalog *c = NULL;
	pm_err err = {{0}};
	pm_status st = pm_catalog_open_mem(s, strlen(s), kind, o, &c, &err);

	CHECK_INT(st, PM_OK);
	if (st != PM_OK)
		fprintf(stderr, "  open_mem: %s\n", err.msg);
	return c;
}

/* The next record (caller frees), NULL at the end. */
static pm_record *next(pm_catalog *c)
{
	pm_record *r = NULL;
	pm_err err = {{0}};
	pm_status st;

	if (!c)
		return NULL;
	st = pm_catalog_next(c, &r, &err);
	CHECK_INT(st, PM_OK);
	if (st != PM_OK)
		fprintf(stderr, "  next: %s\n", err.msg);
	return r;
}

/* Expects a good record with this key and image. */
static pm_record *expect_ok(pm_catalog *c, const char *key, const char *image)
{
	pm_record *r = next(c);

	CHECK(r != NULL);
	if (!r)
		return NULL;
	CHECK_INT(r->status, PM_OK);
	if (r->status != PM_OK)
		fprintf(stderr, "  error: %s\n", r->error);
	CHECK_STR(r->key, key);
	CHECK_STR(r->image, image);
	return r;
}

/* Expects a malformed record with this key whose reason contains what. */
static void expect_bad(pm_catalog *c, const char *key, const char *what)
{
	pm_record *r = next(c);

	CHECK(r != NULL);
	if (!r)
		return;
	CHECK_INT(r->status, PM_ERR_CATALOG);
	CHECK_STR(r->key, key);
	CHECK(r->image == NULL);
	CHECK_STR(r->attrs_json, "{}");
	CHECK(strstr(r->error, what) != NULL);
	if (!strstr(r->error, what))
		fprintf(stderr, "  error \"%s\" lacks \"%s\"\n", r->error,
			what);
	pm_record_free(r);
}

static void expect_end(pm_catalog *c)
{
	pm_record *r = next(c);

	CHECK(r == NULL);
	pm_record_free(r);
	r = next(c); /* still the end */
	CHECK(r == NULL);
	pm_record_free(r);
}

static void test_csv_basic(void)
{
	const char *csv =
	    "\xEF\xBB\xBF"
	    "id,Image_URL,title,price,category,color,size\r\n"
	    "1,http://x/a.jpg,\"Red \"\"big\"\" hat\",19.99,hats,red,L\r\n"
	    "\r\n"
	    "2,https://x/b.png,\"two\nlines\",,shoes,\"a,b\",\r\n"
	    "3,file:///srv/img/c%20d.jpg,,5,,,";
	pm_catalog *c = open_str(PM_CATALOG_CSV, csv, NULL);
	pm_record *r;

	CHECK_INT(pm_catalog_kind_of(c), PM_CATALOG_CSV);
	r = expect_ok(c, "r1", "http://x/a.jpg");
	CHECK_INT(r->ordinal, 1);
	CHECK_STR(r->id, "1");
	CHECK_STR(r->title, "Red \"big\" hat");
	CHECK_STR(r->price, "19.99");
	CHECK_STR(r->category, "hats");
	CHECK_STR(r->attrs_json, "{\"color\":\"red\",\"size\":\"L\"}");
	pm_record_free(r);
	r = expect_ok(c, "r2", "https://x/b.png");
	CHECK_INT(r->ordinal, 2);
	CHECK_STR(r->title, "two\nlines");
	CHECK(r->price == NULL);
	CHECK_STR(r->attrs_json, "{\"color\":\"a,b\",\"size\":\"\"}");
	pm_record_free(r);
	r = expect_ok(c, "r3", "/srv/img/c d.jpg");
	CHECK(r->title == NULL);
	CHECK(r->category == NULL);
	CHECK_STR(r->price, "5");
	pm_record_free(r);
	expect_end(c);
	pm_catalog_close(c);

	/* No attributes at all: "{}"; header-only: no records. */
	c = open_str(PM_CATALOG_CSV, "url\nhttp://a/1.jpg\n", NULL);
	r = expect_ok(c, "r1", "http://a/1.jpg");
	CHECK_STR(r->attrs_json, "{}");
	CHECK(r->id == NULL);
	pm_record_free(r);
	expect_end(c);
	pm_catalog_close(c);
	c = open_str(PM_CATALOG_CSV, "\n\nimage\n\n", NULL);
	expect_end(c);
	pm_catalog_close(c);
}

static void test_csv_malformed(void)
{
	const char *csv = "image,id\n"
			  "http://h/1.jpg,a\n"
			  "http://h/2.jpg,b,extra\n"
			  "http://h/3.jpg,\xC3\x28\n"
			  " ,d\n"
			  "file://evil.example/etc/passwd,e\n"
			  "http://h/6.jpg,f\n"
			  "http://h/7.jpg,\"unterminated\n"
			  "http://h/8.jpg,g\n";
	pm_catalog *c = open_str(PM_CATALOG_CSV, csv, NULL);
	pm_record *r;

	r = expect_ok(c, "r1", "http://h/1.jpg");
	pm_record_free(r);
	expect_bad(c, "r2", "line 3: 3 fields, header has 2");
	expect_bad(c, "r3", "line 4: column 2 (id) is not valid UTF-8");
	expect_bad(c, "r4", "line 5: empty image");
	expect_bad(c, "r5", "line 6: file:// URL names a remote host");
	r = expect_ok(c, "r6", "http://h/6.jpg");
	CHECK_STR(r->id, "f");
	CHECK_INT(r->ordinal, 6);
	pm_record_free(r);
	/* The open quote swallows the rest of the file. */
	expect_bad(c, "r7", "line 8: unterminated quoted field");
	expect_end(c);
	pm_catalog_close(c);
}

static void test_csv_limits(void)
{
	pm_catalog_opts o = {
	    .max_field = 8, .max_record = 40, .max_columns = 3};
	const char *csv = "image,a,b\n"
			  "/x/1.jpg,123456789,z\n" /* field of 9 bytes */
			  "/x/2.jpg,12345678,z\n"
			  "/x/3.jpg,\"a\nb\",c,d\n" /* 4 columns */
			  "/x/4.jpg,1234,\"1234\n5678\",z,z,z,z,z,z,z,z,z\n"
			  "/x/5.jpg,1,2\n";
	pm_catalog *c = open_str(PM_CATALOG_CSV, csv, &o);
	pm_record *r;
	pm_err err = {{0}};

	expect_bad(c, "r1", "line 2: field 2 longer than 8 bytes");
	r = expect_ok(c, "r2", "/x/2.jpg");
	CHECK_STR(r->attrs_json, "{\"a\":\"12345678\",\"b\":\"z\"}");
	pm_record_free(r);
	expect_bad(c, "r3", "line 4: more than 3 columns");
	expect_bad(c, "r4", "line 6: record longer than 40 bytes");
	r = expect_ok(c, "r5", "/x/5.jpg");
	pm_record_free(r);
	expect_end(c);
	pm_catalog_close(c);

	/* A header over the limits fails the open. */
	c = NULL;
	CHECK_INT(pm_catalog_open_mem("image,a,b,c\n/x.jpg,1,2,3\n", 24,
				      PM_CATALOG_CSV, &o, &c, &err),
		  PM_ERR_CATALOG);
	CHECK(c == NULL);
	CHECK(strstr(err.msg, "more than 3 columns") != NULL);
}

static void test_csv_header_errors(void)
{
	pm_catalog *c = NULL;
	pm_err err = {{0}};
	const char *s = "id,title\n1,x\n";

	CHECK_INT(
	    pm_catalog_open_mem(s, strlen(s), PM_CATALOG_CSV, NULL, &c, &err),
	    PM_ERR_CATALOG);
	CHECK(c == NULL);
	CHECK_STR(
	    err.msg,
	    "no image column (expected one of image, "
	    "image_url, url, path, file (or image_urls, images: several))");
	CHECK_INT(pm_catalog_open_mem("", 0, PM_CATALOG_CSV, NULL, &c, &err),
		  PM_ERR_CATALOG);
	CHECK(strstr(err.msg, "no header") != NULL);
	s = "\"image,id\n1,2\n";
	CHECK_INT(
	    pm_catalog_open_mem(s, strlen(s), PM_CATALOG_CSV, NULL, &c, &err),
	    PM_ERR_CATALOG);
	CHECK(strstr(err.msg, "unterminated") != NULL);
}

static void test_csv_separators(void)
{
	pm_catalog *c;
	pm_record *r;

	c = open_str(PM_CATALOG_CSV, "id;path;note\n7;/p/a.jpg;x,y\n", NULL);
	r = expect_ok(c, "r1", "/p/a.jpg");
	CHECK_STR(r->id, "7");
	CHECK_STR(r->attrs_json, "{\"note\":\"x,y\"}");
	pm_record_free(r);
	expect_end(c);
	pm_catalog_close(c);

	c = open_str(PM_CATALOG_CSV, "FILE\tTitle\n/p/b.jpg\tHello; you\n",
		     NULL);
	r = expect_ok(c, "r1", "/p/b.jpg");
	CHECK_STR(r->title, "Hello; you");
	pm_record_free(r);
	expect_end(c);
	pm_catalog_close(c);

	/* Two image aliases: the first column wins, the other is an attr. */
	c = open_str(PM_CATALOG_CSV, "url,image\nhttp://a/1,/b/2\n", NULL);
	r = expect_ok(c, "r1", "http://a/1");
	CHECK_STR(r->attrs_json, "{\"image\":\"/b/2\"}");
	pm_record_free(r);
	pm_catalog_close(c);
}

/* Many rows, crossing the reader's buffer many times. */
static void test_csv_streaming(void)
{
	const char *path;
	char *big;
	size_t cap = 4 << 20, len = 0;
	pm_catalog *c = NULL;
	pm_err err = {{0}};
	pm_record *r;
	int n = 0, bad = 0, rows = 40000;
	char want[64];

	big = malloc(cap);
	len += (size_t)sprintf(big + len, "id,image,desc\n");
	for (int i = 1; i <= rows; i++)
		len += (size_t)sprintf(big + len,
				       "%d,http://h/%d.jpg,\"multi\nline "
				       "\"\"%d\"\"\"\n",
				       i, i, i);
	path = put("big.csv", big);
	free(big);
	CHECK_INT(pm_catalog_open(path, NULL, &c, &err), PM_OK);
	/* Checked in bulk: one CHECK per property, not per row. */
	while (pm_catalog_next(c, &r, &err) == PM_OK && r) {
		n++;
		snprintf(want, sizeof want, "http://h/%d.jpg", n);
		if (r->status != PM_OK || strcmp(r->image, want) != 0)
			bad++;
		if (n == rows) {
			CHECK_STR(r->attrs_json,
				  "{\"desc\":\"multi\\nline \\\"40000\\\"\"}");
			CHECK_STR(r->key, "r40000");
		}
		pm_record_free(r);
	}
	CHECK_INT(n, rows);
	CHECK_INT(bad, 0);
	pm_catalog_close(c);
}

static void test_jsonl(void)
{
	const char *s =
	    "{\"id\": 42, \"url\": \"http://h/a.jpg\", \"price\": 19.99, "
	    "\"tags\": [\"x\", 1], \"stock\": 3}\n"
	    "\n"
	    "   \r\n"
	    "{\"id\": \"sku-7\", \"IMAGE\": \"/abs/b.png\", \"price\": "
	    "\"12.50\", \"title\": \"T\", \"category\": \"C\"}\r\n"
	    "{\"id\": 1, \"image\": \"/x.jpg\"\n"
	    "[1, 2]\n"
	    "{\"id\": 3, \"title\": \"no image\"}\n"
	    "{\"image\": 5}\n"
	    "{\"image\": \"/y.jpg\", \"id\": {\"a\": 1}}\n"
	    "{\"path\": \"/z.jpg\", \"price\": 5, \"id\": 1e3, \"title\": "
	    "null}\n"
	    "{\"file\": \"/q.jpg\", \"price\": 0.1} trailing\n"
	    "{\"file\": \"/w.jpg\", \"price\": -2.5e-7}";
	pm_catalog *c = open_str(PM_CATALOG_JSONL, s, NULL);
	pm_record *r;

	r = expect_ok(c, "r1", "http://h/a.jpg");
	CHECK_STR(r->id, "42");
	CHECK_STR(r->price, "19.99");
	CHECK(r->title == NULL);
	CHECK_STR(r->attrs_json, "{\"tags\":[\"x\",1],\"stock\":3}");
	pm_record_free(r);
	r = expect_ok(c, "r2", "/abs/b.png");
	CHECK_STR(r->id, "sku-7");
	CHECK_STR(r->price, "12.50");
	CHECK_STR(r->title, "T");
	CHECK_STR(r->category, "C");
	CHECK_STR(r->attrs_json, "{}");
	pm_record_free(r);
	expect_bad(c, "r3", "line 5: bad JSON");
	expect_bad(c, "r4", "line 6: not a JSON object");
	expect_bad(c, "r5", "line 7: no image field");
	expect_bad(c, "r6", "line 8: image must be a string");
	expect_bad(c, "r7", "line 9: \"id\" must be a string or number");
	r = expect_ok(c, "r8", "/z.jpg");
	CHECK_STR(r->price, "5");
	CHECK_STR(r->id, "1000");
	CHECK(r->title == NULL);
	pm_record_free(r);
	expect_bad(c, "r9", "line 11: bad JSON");
	r = expect_ok(c, "r10", "/w.jpg");
	CHECK_STR(r->price, "-2.5e-07");
	pm_record_free(r);
	expect_end(c);
	pm_catalog_close(c);

	/* Over-long lines are skipped with a reason; reading goes on. */
	pm_catalog_opts o = {.max_record = 30};
	c = open_str(PM_CATALOG_JSONL,
		     "{\"image\": \"/a-very-long-name-indeed.jpg\"}\n"
		     "{\"image\": \"/ok.jpg\"}\n",
		     &o);
	expect_bad(c, "r1", "line 1: record longer than 30 bytes");
	r = expect_ok(c, "r2", "/ok.jpg");
	pm_record_free(r);
	expect_end(c);
	pm_catalog_close(c);
}

static void test_list(void)
{
	char want[4200];
	const char *s = "# a comment\n"
			"\n"
			"  http://h/a.jpg  \n"
			"   # indented comment\r\n"
			"img/b.jpg\r\n"
			"./c/../d.png\n"
			"file:///tmp/with%20space%2F%C3%A9.jpg\n"
			"file://localhost/srv/x.jpg\n"
			"file://server/share/x.jpg\n"
			"file:///bad%zz.jpg\n"
			"file:///nul%00.jpg\n"
			"s3://bucket/key.jpg\n"
			"\xff\xfe\n"
			"/abs/last.jpg";
	pm_catalog *c = open_str(PM_CATALOG_LIST, s, NULL);
	pm_record *r;

	r = expect_ok(c, "r1", "http://h/a.jpg");
	CHECK_STR(r->attrs_json, "{}");
	CHECK(r->id == NULL);
	pm_record_free(r);
	snprintf(want, sizeof want, "%s/img/b.jpg", cwd);
	r = expect_ok(c, "r2", want);
	pm_record_free(r);
	snprintf(want, sizeof want, "%s/d.png", cwd);
	r = expect_ok(c, "r3", want);
	pm_record_free(r);
	r = expect_ok(c, "r4", "/tmp/with space/\xC3\xA9.jpg");
	pm_record_free(r);
	r = expect_ok(c, "r5", "/srv/x.jpg");
	pm_record_free(r);
	expect_bad(c, "r6", "line 9: file:// URL names a remote host");
	expect_bad(c, "r7", "line 10: bad percent-escape");
	expect_bad(c, "r8", "line 11: file:// URL decodes to invalid");
	r = expect_ok(c, "r9", "s3://bucket/key.jpg");
	pm_record_free(r);
	expect_bad(c, "r10", "line 13: not valid UTF-8");
	r = expect_ok(c, "r11", "/abs/last.jpg");
	CHECK_INT(r->ordinal, 11);
	pm_record_free(r);
	expect_end(c);
	pm_catalog_close(c);
}

/* Catalog files: relative images resolve against the catalog's folder. */
static void test_files_and_detection(void)
{
	pm_catalog *c = NULL;
	pm_err err = {{0}};
	pm_record *r;
	char want[1024];
	const char *p;
	pm_catalog_opts o = {0};

	mkd("cat");
	p = put("cat/items.csv", "image,id\nimg/a.jpg,1\n../up.png,2\n");
	CHECK_INT(pm_catalog_open(p, NULL, &c, &err), PM_OK);
	CHECK_INT(pm_catalog_kind_of(c), PM_CATALOG_CSV);
	snprintf(want, sizeof want, "%s/cat/img/a.jpg", tmpdir);
	r = expect_ok(c, "r1", want);
	pm_record_free(r);
	snprintf(want, sizeof want, "%s/up.png", tmpdir);
	r = expect_ok(c, "r2", want);
	pm_record_free(r);
	expect_end(c);
	pm_catalog_close(c);

	/* A relative catalog path resolves against the current directory. */
	CHECK_INT(chdir(tmpdir), 0);
	CHECK_INT(pm_catalog_open("cat/../cat/items.csv", NULL, &c, &err),
		  PM_OK);
	snprintf(want, sizeof want, "%s/cat/img/a.jpg", tmpdir);
	r = expect_ok(c, "r1", want);
	pm_record_free(r);
	pm_catalog_close(c);
	CHECK_INT(chdir(cwd), 0);

	/* Detection from the contents when the extension says nothing. */
	p = put("cat/a.dat", "\n  {\"image\": \"x.jpg\"}\n");
	CHECK_INT(pm_catalog_open(p, NULL, &c, &err), PM_OK);
	CHECK_INT(pm_catalog_kind_of(c), PM_CATALOG_JSONL);
	snprintf(want, sizeof want, "%s/cat/x.jpg", tmpdir);
	r = expect_ok(c, "r1", want);
	pm_record_free(r);
	pm_catalog_close(c);

	p = put("cat/b.dat", "sku,\"Image_Url\"\n1,http://h/1.jpg\n");
	CHECK_INT(pm_catalog_open(p, NULL, &c, &err), PM_OK);
	CHECK_INT(pm_catalog_kind_of(c), PM_CATALOG_CSV);
	r = expect_ok(c, "r1", "http://h/1.jpg");
	CHECK_STR(r->attrs_json, "{\"sku\":\"1\"}");
	pm_record_free(r);
	pm_catalog_close(c);

	p = put("cat/c", "/a,b.jpg\nhttp://h/2.jpg\n");
	CHECK_INT(pm_catalog_open(p, NULL, &c, &err), PM_OK);
	CHECK_INT(pm_catalog_kind_of(c), PM_CATALOG_LIST);
	r = expect_ok(c, "r1", "/a,b.jpg");
	pm_record_free(r);
	pm_catalog_close(c);

	/* The extension decides over the contents. */
	p = put("cat/d.txt", "{\"image\": \"x.jpg\"}\n");
	CHECK_INT(pm_catalog_open(p, NULL, &c, &err), PM_OK);
	CHECK_INT(pm_catalog_kind_of(c), PM_CATALOG_LIST);
	pm_catalog_close(c);
	p = put("cat/e.NDJSON", "{\"image\": \"/e.jpg\"}\n");
	CHECK_INT(pm_catalog_open(p, NULL, &c, &err), PM_OK);
	CHECK_INT(pm_catalog_kind_of(c), PM_CATALOG_JSONL);
	pm_catalog_close(c);
	p = put("cat/f.tsv", "image\tname\n/f.jpg\ta,b\n");
	CHECK_INT(pm_catalog_open(p, NULL, &c, &err), PM_OK);
	r = expect_ok(c, "r1", "/f.jpg");
	CHECK_STR(r->attrs_json, "{\"name\":\"a,b\"}");
	pm_record_free(r);
	pm_catalog_close(c);

	/* An explicit kind wins over detection. */
	o.kind = PM_CATALOG_LIST;
	p = put("cat/g.csv", "image\n/g.jpg\n");
	CHECK_INT(pm_catalog_open(p, &o, &c, &err), PM_OK);
	CHECK_INT(pm_catalog_kind_of(c), PM_CATALOG_LIST);
	snprintf(want, sizeof want, "%s/cat/image", tmpdir);
	r = expect_ok(c, "r1", want);
	pm_record_free(r);
	pm_catalog_close(c);

	/* Failures at open. */
	snprintf(want, sizeof want, "%s/nope.csv", tmpdir);
	CHECK_INT(pm_catalog_open(want, NULL, &c, &err), PM_ERR_NOT_FOUND);
	CHECK(c == NULL);
	o.kind = PM_CATALOG_FOLDER;
	CHECK_INT(pm_catalog_open(p, &o, &c, &err), PM_ERR_CATALOG);
	o.kind = PM_CATALOG_CSV;
	snprintf(want, sizeof want, "%s/cat", tmpdir);
	CHECK_INT(pm_catalog_open(want, &o, &c, &err), PM_ERR_CATALOG);
	CHECK_INT(
	    pm_catalog_open_mem("x", 1, PM_CATALOG_FOLDER, NULL, &c, &err),
	    PM_ERR_USAGE);
	CHECK(c == NULL);
}

static void test_mem_detection(void)
{
	pm_catalog *c;

	c = open_str(PM_CATALOG_AUTO, "\xEF\xBB\xBF{\"url\": \"http://a\"}\n",
		     NULL);
	CHECK_INT(pm_catalog_kind_of(c), PM_CATALOG_JSONL);
	pm_catalog_close(c);
	c = open_str(PM_CATALOG_AUTO, "title, URL\nx,http://a\n", NULL);
	CHECK_INT(pm_catalog_kind_of(c), PM_CATALOG_CSV);
	pm_catalog_close(c);
	c = open_str(PM_CATALOG_AUTO, "title,link\nx,http://a\n", NULL);
	CHECK_INT(pm_catalog_kind_of(c), PM_CATALOG_LIST);
	pm_catalog_close(c);
	c = open_str(PM_CATALOG_AUTO, "", NULL);
	CHECK_INT(pm_catalog_kind_of(c), PM_CATALOG_LIST);
	expect_end(c);
	pm_catalog_close(c);
}

static void test_folder(void)
{
	pm_catalog *c = NULL;
	pm_err err = {{0}};
	pm_catalog_opts o = {0};
	char root[600], want[1024], link_target[1024];
	static const char *const order[] = {
	    "Z.JPG",
	    "a.png",
	    "b.jpeg",
	    "lnk.jpg",
	    "sub/deeper/y.webp",
	    "sub/z.jpg",
	    "sub2/x.avif",
	};
	static const char *const order_all[] = {
	    "Z.JPG",	 "a.png",      "b.jpeg",
	    "c.txt",	 "lnk.jpg",    "sub/deeper/y.webp",
	    "sub/z.jpg", "sub2/noext", "sub2/x.avif",
	};
	size_t i;
	pm_record *r;

	mkd("tree");
	mkd("tree/sub");
	mkd("tree/sub/deeper");
	mkd("tree/sub2");
	mkd("tree/.hdir");
	put("tree/b.jpeg", "x");
	put("tree/a.png", "x");
	put("tree/Z.JPG", "x");
	put("tree/c.txt", "x");
	put("tree/.hidden.jpg", "x");
	put("tree/.hdir/in.jpg", "x");
	put("tree/sub/z.jpg", "x");
	put("tree/sub/deeper/y.webp", "x");
	put("tree/sub2/x.avif", "x");
	put("tree/sub2/noext", "x");
	snprintf(root, sizeof root, "%s/tree", tmpdir);
	snprintf(link_target, sizeof link_target, "%s/tree/sub", tmpdir);
	snprintf(want, sizeof want, "%s/tree/sublink", tmpdir);
	CHECK_INT(symlink(link_target, want), 0); /* a dir link: skipped */
	snprintf(link_target, sizeof link_target, "%s/tree/a.png", tmpdir);
	snprintf(want, sizeof want, "%s/tree/lnk.jpg", tmpdir);
	CHECK_INT(symlink(link_target, want), 0); /* a file link: kept */
	snprintf(want, sizeof want, "%s/tree/sub/loop", tmpdir);
	CHECK_INT(symlink(root, want), 0); /* a loop: not followed */

	CHECK_INT(pm_catalog_open(root, NULL, &c, &err), PM_OK);
	CHECK_INT(pm_catalog_kind_of(c), PM_CATALOG_FOLDER);
	for (i = 0; i < sizeof order / sizeof order[0]; i++) {
		snprintf(want, sizeof want, "%s/%s", root, order[i]);
		r = expect_ok(c, order[i], want);
		if (r) {
			CHECK_INT(r->ordinal, i + 1);
			CHECK_STR(r->attrs_json, "{}");
		}
		pm_record_free(r);
	}
	expect_end(c);
	pm_catalog_close(c);

	/* Every file, with a trailing slash and a relative root. */
	o.folder_all_files = 1;
	o.kind = PM_CATALOG_FOLDER;
	CHECK_INT(chdir(tmpdir), 0);
	CHECK_INT(pm_catalog_open("./tree/", &o, &c, &err), PM_OK);
	CHECK_INT(chdir(cwd), 0);
	for (i = 0; i < sizeof order_all / sizeof order_all[0]; i++) {
		snprintf(want, sizeof want, "%s/%s", root, order_all[i]);
		r = expect_ok(c, order_all[i], want);
		pm_record_free(r);
	}
	expect_end(c);
	pm_catalog_close(c);

	/* An unreadable subfolder is a malformed record, not the end. */
	if (geteuid() != 0) {
		snprintf(want, sizeof want, "%s/tree/sub", tmpdir);
		chmod(want, 0);
		CHECK_INT(pm_catalog_open(root, NULL, &c, &err), PM_OK);
		for (i = 0; i < 4; i++)
			pm_record_free(next(c));
		expect_bad(c, "sub", "cannot read directory");
		chmod(want, 0755);
		snprintf(want, sizeof want, "%s/sub2/x.avif", root);
		r = expect_ok(c, "sub2/x.avif", want);
		pm_record_free(r);
		pm_catalog_close(c);
	}
}

static void test_kind_names(void)
{
	CHECK_INT(pm_catalog_kind_parse("csv"), PM_CATALOG_CSV);
	CHECK_INT(pm_catalog_kind_parse("JSONL"), PM_CATALOG_JSONL);
	CHECK_INT(pm_catalog_kind_parse("list"), PM_CATALOG_LIST);
	CHECK_INT(pm_catalog_kind_parse("folder"), PM_CATALOG_FOLDER);
	CHECK_INT(pm_catalog_kind_parse("auto"), PM_CATALOG_AUTO);
	CHECK_INT(pm_catalog_kind_parse("xml"), -1);
	CHECK_INT(pm_catalog_kind_parse(NULL), -1);
	CHECK_STR(pm_catalog_kind_name(PM_CATALOG_JSONL), "jsonl");
	CHECK_STR(pm_catalog_kind_name((pm_catalog_kind)99), "unknown");
}

static void cleanup(void)
{
	char cmd[600];

	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmpdir);
}

int main(void)
{
	const char *t = getenv("TMPDIR");

	snprintf(tmpdir, sizeof tmpdir, "%s/pm_catalog_XXXXXX",
		 t && *t ? t : "/tmp");
	if (!mkdtemp(tmpdir) || !getcwd(cwd, sizeof cwd)) {
		perror("setup");
		return 2;
	}
	test_csv_basic();
	test_csv_malformed();
	test_csv_limits();
	test_csv_header_errors();
	test_csv_separators();
	test_csv_streaming();
	test_jsonl();
	test_list();
	test_files_and_detection();
	test_mem_detection();
	test_folder();
	test_kind_names();
	cleanup();
	TEST_DONE();
}
