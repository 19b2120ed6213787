/* catalog.c — streaming catalog readers: CSV (RFC 4180), JSON Lines, plain
 * lists of paths/URLs and folders walked recursively, plus what they share:
 * opening and kind detection, the bounded byte source, image-path
 * resolution and record helpers. One file, so the shared helpers stay
 * private (static) and exist once.
 *
 * Memory: a text catalog holds one fixed read buffer (READ_BUF bytes), one
 * record buffer of at most max_record bytes and, for CSV, the header; a
 * folder holds one sorted name list per directory level being walked.
 *
 * Threads: a pm_catalog is used by one thread at a time (the ingest thread).
 * Nothing here has global state, so different catalogs may be read on
 * different threads at once. The current directory is read at open time.
 */
#include "ingest/catalog.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"

#define DEF_MAX_FIELD	((size_t)1 << 20)
#define DEF_MAX_RECORD	((size_t)4 << 20)
#define DEF_MAX_COLUMNS 1024
#define READ_BUF	(64 * 1024)

#define IMAGE_ALIASES                                                          \
	"image, image_url, url, path, file (or image_urls, images: several)"

/* Results of the low-level readers below. */
enum { RD_EOF = 0, RD_OK = 1, RD_IOERR = -1, RD_NOMEM = -2 };
/* src_getc/src_peek return a byte, or one of these. */
enum { SRC_EOF = -1, SRC_IOERR = -2 };

/* The bounded byte source: a file read through a fixed buffer, or a private
 * copy of a memory block (then fd is -1 and everything is in buf). */
struct src {
	int fd;		    /* owned; -1 for memory */
	unsigned char *buf; /* owned */
	size_t cap, pos, len;
	int eof;
	int err;       /* errno of a failed read, 0 if none */
	uint64_t line; /* 1 + newlines consumed so far */
};

/* A growable byte buffer; callers keep it within their own limit. */
struct buf {
	char *p; /* owned */
	size_t len, cap;
};

/* What a CSV column or JSONL field is used for. */
enum role {
	ROLE_ATTR = 0,
	ROLE_ID,
	ROLE_IMAGE,
	ROLE_TITLE,
	ROLE_PRICE,
	ROLE_CATEGORY,
	ROLE_IMAGES, /* several candidates */
};

/* The record field a column or JSON key of this role fills, or NULL (the
 * image and attributes are handled apart). */
static char **role_field(pm_record *r, enum role ro)
{
	switch (ro) {
	case ROLE_ID:
		return &r->id;
	case ROLE_TITLE:
		return &r->title;
	case ROLE_PRICE:
		return &r->price;
	case ROLE_CATEGORY:
		return &r->category;
	default:
		return NULL;
	}
}

/* One CSV row as read: field bytes are in c->rec at c->foff[i], c->flen[i]
 * for i < min(nfields, max_columns). */
struct csv_row {
	uint64_t line;	/* line the row starts on */
	int nfields;	/* fields seen, stored or not */
	int quoted_any; /* a field was quoted */
	int unterminated, long_field, long_record, too_many;
	int long_col; /* 0-based column of the first over-long field */
};

/* One directory level of a folder walk. */
struct level {
	char *rel; /* directory relative to the root, "" for the root; owned */
	char **names; /* sorted entry names, hidden ones left out; owned */
	size_t n, i;  /* count, next to visit */
};

struct pm_catalog {
	pm_catalog_kind kind;
	size_t max_field, max_record;
	int max_columns;
	int all_files;
	char *path;	/* for messages; owned */
	char *base_dir; /* absolute; relative images resolve here; owned */
	uint64_t ordinal;
	pm_status fatal; /* set once next failed fatally */

	struct src src;
	struct buf rec; /* the current record's bytes, <= max_record */

	/* CSV */
	char sep;
	int ncols;
	char **colname;	     /* header names, trimmed; owned */
	unsigned char *role; /* enum role per column; owned */
	size_t *foff, *flen; /* per stored field of the current row; owned */
	int fcap;

	/* folder */
	char *root; /* absolute, no trailing slash except "/"; owned */
	struct level *stack;
	size_t depth, stack_cap;
};

/* ---- small helpers ---- */

static int is_space(int ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' ||
	       ch == '\v' || ch == '\f';
}

static void trim(const char **s, size_t *n)
{
	while (*n && is_space((unsigned char)**s)) {
		(*s)++;
		(*n)--;
	}
	while (*n && is_space((unsigned char)(*s)[*n - 1]))
		(*n)--;
}

static int eq_ci(const char *s, size_t n, const char *lit)
{
	return strlen(lit) == n && strncasecmp(s, lit, n) == 0;
}

/* Strict UTF-8 (no overlongs, surrogates or NUL bytes). */
static int utf8_valid(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s, *e = p + n;

	while (p < e) {
		size_t l = *p ? pm_utf8_len(p, (size_t)(e - p)) : 0;
		if (l == 0)
			return 0;
		p += l;
	}
	return 1;
}

static enum role role_of(const char *s, size_t n)
{
	static const char *const aliases[] = {"image", "image_url", "url",
					      "path", "file"};

	if (eq_ci(s, n, "id"))
		return ROLE_ID;
	if (eq_ci(s, n, "title"))
		return ROLE_TITLE;
	if (eq_ci(s, n, "price"))
		return ROLE_PRICE;
	if (eq_ci(s, n, "category"))
		return ROLE_CATEGORY;
	for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
		if (eq_ci(s, n, aliases[i]))
			return ROLE_IMAGE;
	if (eq_ci(s, n, "image_urls") || eq_ci(s, n, "images") ||
	    eq_ci(s, n, "image_candidates"))
		return ROLE_IMAGES;
	return ROLE_ATTR;
}

static int buf_push(struct buf *b, char ch)
{
	if (b->len + 1 >= b->cap) {
		size_t ncap = b->cap ? b->cap * 2 : 256;
		char *np = realloc(b->p, ncap);

		if (!np)
			return -1;
		b->p = np;
		b->cap = ncap;
	}
	b->p[b->len++] = ch;
	return 0;
}

/* NUL-terminates b without counting the NUL in len. */
static int buf_terminate(struct buf *b)
{
	if (buf_push(b, 0))
		return -1;
	b->len--;
	return 0;
}

/* ---- paths ---- */

/* Lexically normalizes the absolute path p in place: collapses "//", drops
 * "." and resolves ".." (never above "/"), drops a trailing slash. */
static void path_clean(char *p)
{
	size_t n = strlen(p), r = 1, w = 1;

	while (r < n) {
		size_t s, len;

		while (r < n && p[r] == '/')
			r++;
		s = r;
		while (r < n && p[r] != '/')
			r++;
		len = r - s;
		if (len == 0 || (len == 1 && p[s] == '.'))
			continue;
		if (len == 2 && p[s] == '.' && p[s + 1] == '.') {
			if (w > 1) {
				w--;
				while (w > 1 && p[w - 1] != '/')
					w--;
			}
			continue;
		}
		memmove(p + w, p + s, len);
		w += len;
		p[w++] = '/';
	}
	if (w > 1)
		w--;
	p[0] = '/';
	p[w] = 0;
}

/* Returns dir + "/" + rel (rel of n bytes), cleaned; caller owns it. */
static char *path_join(const char *dir, const char *rel, size_t n)
{
	size_t dl = strlen(dir);
	char *p = malloc(dl + n + 2);

	if (!p)
		return NULL;
	memcpy(p, dir, dl);
	p[dl] = '/';
	memcpy(p + dl + 1, rel, n);
	p[dl + n + 1] = 0;
	path_clean(p);
	return p;
}

/* Makes p absolute against the current directory, cleaned. Returns a new
 * string (caller owns it) or NULL with errno set. */
static char *path_abs(const char *p)
{
	char *cwd, *r;

	if (p[0] == '/') {
		r = strdup(p);
		if (r)
			path_clean(r);
		return r;
	}
	cwd = getcwd(NULL, 0);
	if (!cwd)
		return NULL;
	r = path_join(cwd, p, strlen(p));
	free(cwd);
	return r;
}

/* Percent-decodes the path of a file: URL. Returns 0 with *out set (caller
 * owns it), 1 with why filled, or RD_NOMEM. */
static int pct_decode(const char *s, size_t n, char **out, char *why, size_t wn)
{
	char *d = malloc(n + 1);
	size_t w = 0;

	if (!d)
		return RD_NOMEM;
	for (size_t i = 0; i < n; i++) {
		int hi, lo;

		if (s[i] != '%') {
			d[w++] = s[i];
			continue;
		}
		hi = i + 2 < n ? pm_hexval((unsigned char)s[i + 1]) : -1;
		lo = hi >= 0 ? pm_hexval((unsigned char)s[i + 2]) : -1;
		if (lo < 0) {
			snprintf(why, wn, "bad percent-escape in file:// URL");
			free(d);
			return 1;
		}
		d[w++] = (char)(hi << 4 | lo);
		i += 2;
	}
	if (!utf8_valid(d, w)) {
		snprintf(why, wn,
			 "file:// URL decodes to invalid UTF-8 or a NUL byte");
		free(d);
		return 1;
	}
	d[w] = 0;
	*out = d;
	return 0;
}

/* Whether s (n bytes) contains "://", i.e. is a URL with some scheme. */
static int has_scheme_sep(const char *s, size_t n)
{
	for (size_t i = 0; i + 3 <= n; i++)
		if (s[i] == ':' && s[i + 1] == '/' && s[i + 2] == '/')
			return 1;
	return 0;
}

/* Turns the image value s (n bytes of valid UTF-8) into what the record
 * holds: local paths made absolute against c->base_dir, file:// URLs into
 * their path, other URLs verbatim. Returns 0 with *out set (caller owns
 * it), 1 with why filled for a bad value, or RD_NOMEM. */
static int resolve_image(const pm_catalog *c, const char *s, size_t n,
			 char **out, char *why, size_t wn)
{
	trim(&s, &n);
	if (n == 0) {
		snprintf(why, wn, "empty image");
		return 1;
	}
	if (n >= 7 && strncasecmp(s, "file://", 7) == 0) {
		const char *h = s + 7, *e = s + n;
		const char *slash = memchr(h, '/', (size_t)(e - h));
		size_t hl = slash ? (size_t)(slash - h) : (size_t)(e - h);

		if (hl && !eq_ci(h, hl, "localhost")) {
			snprintf(why, wn,
				 "file:// URL names a remote host (%.*s)",
				 (int)(hl > 64 ? 64 : hl), h);
			return 1;
		}
		if (!slash) {
			snprintf(why, wn, "file:// URL has no path");
			return 1;
		}
		return pct_decode(slash, (size_t)(e - slash), out, why, wn);
	}
	if (n >= 6 && strncasecmp(s, "file:/", 6) == 0)
		return pct_decode(s + 5, n - 5, out, why, wn);
	if (has_scheme_sep(s, n) || s[0] == '/') {
		*out = strndup(s, n);
	} else {
		*out = path_join(c->base_dir, s, n);
	}
	return *out ? 0 : RD_NOMEM;
}

/* ---- records ---- */

/* A new record with the next ordinal and the given key (NULL: "r<ordinal>").
 * Returns NULL when out of memory. */
static pm_record *rec_new(pm_catalog *c, const char *key)
{
	pm_record *r = calloc(1, sizeof *r);
	char tmp[32];

	if (!r)
		return NULL;
	r->ordinal = ++c->ordinal;
	if (!key) {
		snprintf(tmp, sizeof tmp, "r%" PRIu64, r->ordinal);
		key = tmp;
	}
	r->key = strdup(key);
	if (!r->key) {
		free(r);
		return NULL;
	}
	return r;
}

/* Marks r malformed with a reason; drops every field but the key. */
static void rec_fail(pm_record *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void rec_fail(pm_record *r, const char *fmt, ...)
{
	va_list ap;

	free(r->id);
	free(r->image);
	free(r->candidates);
	free(r->title);
	free(r->price);
	free(r->category);
	free(r->attrs_json);
	r->id = r->image = r->title = r->price = r->category = NULL;
	r->candidates = r->attrs_json = NULL;
	r->status = PM_ERR_CATALOG;
	va_start(ap, fmt);
	vsnprintf(r->error, sizeof r->error, fmt, ap);
	va_end(ap);
}

void pm_record_free(pm_record *r)
{
	if (!r)
		return;
	free(r->key);
	free(r->id);
	free(r->image);
	free(r->candidates);
	free(r->title);
	free(r->price);
	free(r->category);
	free(r->attrs_json);
	free(r);
}

/* Records a fatal failure of c; later calls to next return it again. */
static pm_status cat_fatal(pm_catalog *c, int rd, pm_err *err)
{
	if (rd == RD_IOERR)
		c->fatal = pm_fail(err, PM_ERR_IO, "read %s: %s", c->path,
				   strerror(c->src.err));
	else
		c->fatal = pm_fail(err, PM_ERR_NOMEM,
				   "out of memory reading catalog %s", c->path);
	return c->fatal;
}

/* Completes r (attrs "{}" if unset) and hands it to the caller via *out;
 * r may be NULL (allocation failed). Ownership of r passes to *out. */
static pm_status emit(pm_catalog *c, pm_record *r, pm_record **out, pm_err *err)
{
	if (r && !r->attrs_json)
		r->attrs_json = strdup("{}");
	if (!r || !r->attrs_json) {
		pm_record_free(r);
		return cat_fatal(c, RD_NOMEM, err);
	}
	*out = r;
	return PM_OK;
}

/* Sets r->image from a raw value, or fails r with "line N: reason".
 * Returns 0, or RD_NOMEM. */
/* A row that names no image at all: malformed, but unlike rec_fail its
 * fields stay, so an image search provider can look for one (no_image). */
static void rec_no_image(pm_record *r, uint64_t line, const char *why)
{
	free(r->image);
	free(r->candidates);
	r->image = r->candidates = NULL;
	r->status = PM_ERR_CATALOG;
	r->no_image = 1;
	snprintf(r->error, sizeof r->error, "line %" PRIu64 ": %s", line, why);
}

static int rec_set_image(pm_catalog *c, pm_record *r, uint64_t line,
			 const char *s, size_t n)
{
	char why[200];
	const char *t = s;
	size_t tn = n;
	int rc;

	if (t)
		trim(&t, &tn);
	if (!t || tn == 0) {
		rec_no_image(r, line, "empty image");
		return 0;
	}
	rc = resolve_image(c, s, n, &r->image, why, sizeof why);
	if (rc == 1)
		rec_fail(r, "line %" PRIu64 ": %s", line, why);
	return rc == RD_NOMEM ? RD_NOMEM : 0;
}

/* Sets r->candidates (and r->image, if the row has no single image) from
 * a "|"-separated list, each entry resolved like an image and its size
 * hint kept; first, when not NULL, goes in front (a row's `image`).
 * Fails r when no entry is usable. Returns 0, or RD_NOMEM. */
static int rec_set_candidates(pm_catalog *c, pm_record *r, uint64_t line,
			      const char *s, size_t n)
{
	struct buf b = {0};
	char why[200] = "";
	const char *p = s, *end = s + n;
	int good = 0, rc = 0;

	if (r->image) {
		for (const char *q = r->image; *q; q++)
			if (buf_push(&b, *q))
				goto nomem;
		good++;
	}
	while (p < end) {
		const char *e = memchr(p, '|', (size_t)(end - p));
		const char *ts, *hint = NULL;
		size_t tn, hn = 0;
		char *res = NULL;

		if (!e)
			e = end;
		ts = p;
		tn = (size_t)(e - p);
		p = e < end ? e + 1 : end;
		trim(&ts, &tn);
		if (tn == 0)
			continue;
		/* A trailing " 800w" / " 800x600" hint stays as written. */
		for (size_t i = tn; i > 0; i--)
			if (ts[i - 1] == ' ' || ts[i - 1] == '\t') {
				const char *h = ts + i;
				size_t hl = tn - i;
				if (hl && h[0] >= '0' && h[0] <= '9' &&
				    (h[hl - 1] == 'w' || h[hl - 1] == 'W' ||
				     memchr(h, 'x', hl) ||
				     memchr(h, 'X', hl))) {
					hint = h;
					hn = hl;
					tn = i - 1;
					trim(&ts, &tn);
				}
				break;
			}
		rc = resolve_image(c, ts, tn, &res, why, sizeof why);
		if (rc == RD_NOMEM)
			goto nomem;
		if (rc)
			continue; /* a bad entry: the others may do */
		if (!r->image && !(r->image = strdup(res))) {
			free(res);
			goto nomem;
		}
		if (good && (buf_push(&b, ' ') || buf_push(&b, '|') ||
			     buf_push(&b, ' '))) {
			free(res);
			goto nomem;
		}
		for (const char *q = res; *q; q++)
			if (buf_push(&b, *q)) {
				free(res);
				goto nomem;
			}
		free(res);
		if (hint) {
			if (buf_push(&b, ' '))
				goto nomem;
			for (size_t i = 0; i < hn; i++)
				if (buf_push(&b, hint[i]))
					goto nomem;
		}
		good++;
	}
	if (!good) {
		free(b.p);
		rec_fail(r, "line %" PRIu64 ": no usable image candidate%s%s",
			 line, why[0] ? ": " : "", why);
		return 0;
	}
	if (buf_terminate(&b))
		goto nomem;
	r->candidates = b.p; /* the record owns it */
	return 0;
nomem:
	free(b.p);
	return RD_NOMEM;
}

/* Dumps attrs (compact, keys in insertion order) into r->attrs_json and
 * releases attrs. Returns 0 or RD_NOMEM. */
static int rec_set_attrs(pm_record *r, json_t *attrs)
{
	char *s = json_dumps(attrs, JSON_COMPACT);

	json_decref(attrs);
	if (!s)
		return RD_NOMEM;
	/* json_dumps allocates with jansson's allocator, malloc by default;
	 * copy so the record only ever holds plain malloc'd strings. */
	r->attrs_json = strdup(s);
	free(s);
	return r->attrs_json ? 0 : RD_NOMEM;
}

/* ---- the byte source ---- */

/* Reads more bytes into s->buf. Returns 1 if bytes were added, 0 at the end,
 * -1 on a read error (s->err set). */
static int src_more(struct src *s)
{
	if (s->err)
		return -1;
	if (s->fd < 0 || s->eof)
		return 0;
	if (s->pos > 0) {
		memmove(s->buf, s->buf + s->pos, s->len - s->pos);
		s->len -= s->pos;
		s->pos = 0;
	}
	if (s->len == s->cap)
		return 1;
	for (;;) {
		ssize_t n = read(s->fd, s->buf + s->len, s->cap - s->len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			s->err = errno ? errno : EIO;
			return -1;
		}
		if (n == 0) {
			s->eof = 1;
			return 0;
		}
		s->len += (size_t)n;
		return 1;
	}
}

static inline int src_peek(struct src *s)
{
	if (s->pos == s->len) {
		int r = src_more(s);

		if (r <= 0)
			return r < 0 ? SRC_IOERR : SRC_EOF;
	}
	return s->buf[s->pos];
}

static inline int src_getc(struct src *s)
{
	int ch = src_peek(s);

	if (ch >= 0) {
		s->pos++;
		if (ch == '\n')
			s->line++;
	}
	return ch;
}

/* Fills the buffer as far as it goes (for sniffing), then skips a UTF-8
 * BOM. Returns 0 or -1 on a read error. */
static int src_start(struct src *s)
{
	while (s->len < s->cap && !s->eof) {
		if (src_more(s) < 0)
			return -1;
	}
	if (s->len - s->pos >= 3 &&
	    memcmp(s->buf + s->pos, "\xEF\xBB\xBF", 3) == 0)
		s->pos += 3;
	return 0;
}

/* Reads one line (without its "\n" or "\r\n") into c->rec, NUL-terminated.
 * *line is the line number, *too_long is set when the line exceeded
 * max_record (the excess is consumed, not kept). */
static int read_line(pm_catalog *c, uint64_t *line, int *too_long)
{
	struct src *s = &c->src;
	int ch;

	c->rec.len = 0;
	*too_long = 0;
	*line = s->line;
	ch = src_getc(s);
	if (ch == SRC_EOF)
		return RD_EOF;
	for (; ch != SRC_EOF && ch != '\n'; ch = src_getc(s)) {
		if (ch == SRC_IOERR)
			return RD_IOERR;
		if (c->rec.len >= c->max_record) {
			*too_long = 1;
			continue;
		}
		if (buf_push(&c->rec, (char)ch))
			return RD_NOMEM;
	}
	if (c->rec.len && c->rec.p[c->rec.len - 1] == '\r')
		c->rec.len--;
	return buf_terminate(&c->rec) ? RD_NOMEM : RD_OK;
}

/* ---- CSV ---- */

static int csv_field_begin(pm_catalog *c, struct csv_row *row)
{
	int i = row->nfields++;

	if (i >= c->max_columns) {
		row->too_many = 1;
		return 0;
	}
	if (i >= c->fcap) {
		int ncap = c->fcap ? c->fcap * 2 : 16;
		size_t *o, *l;

		if (ncap > c->max_columns)
			ncap = c->max_columns;
		o = realloc(c->foff, (size_t)ncap * sizeof *o);
		if (!o)
			return RD_NOMEM;
		c->foff = o;
		l = realloc(c->flen, (size_t)ncap * sizeof *l);
		if (!l)
			return RD_NOMEM;
		c->flen = l;
		c->fcap = ncap;
	}
	c->foff[i] = c->rec.len;
	c->flen[i] = 0;
	return 0;
}

/* Appends ch to the current field unless a limit is already passed. */
static int csv_add(pm_catalog *c, struct csv_row *row, int ch)
{
	int i = row->nfields - 1;

	if (i >= c->max_columns || row->long_record)
		return 0;
	if (c->flen[i] >= c->max_field) {
		if (!row->long_field) {
			row->long_field = 1;
			row->long_col = i;
		}
		return 0;
	}
	if (buf_push(&c->rec, (char)ch))
		return RD_NOMEM;
	c->flen[i]++;
	return 0;
}

/* Reads one CSV record (RFC 4180, plus CR-less line ends) into c->rec. The
 * whole record is always consumed, whatever limit it passes. */
static int csv_read_row(pm_catalog *c, struct csv_row *row)
{
	struct src *s = &c->src;
	size_t raw = 0;
	int inq = 0, at_start = 1, ch;

	memset(row, 0, sizeof *row);
	c->rec.len = 0;
	if (buf_terminate(&c->rec)) /* so c->rec.p is never NULL */
		return RD_NOMEM;
	row->line = s->line;
	ch = src_peek(s);
	if (ch == SRC_EOF)
		return RD_EOF;
	if (csv_field_begin(c, row))
		return RD_NOMEM;
	for (;;) {
		ch = src_getc(s);
		if (ch == SRC_IOERR)
			return RD_IOERR;
		if (ch == SRC_EOF) {
			row->unterminated = inq;
			break;
		}
		if (++raw > c->max_record)
			row->long_record = 1;
		if (inq) {
			if (ch == '"') {
				int nx = src_peek(s);

				if (nx == SRC_IOERR)
					return RD_IOERR;
				if (nx != '"') {
					inq = 0;
					continue;
				}
				src_getc(s);
				raw++;
			}
			if (csv_add(c, row, ch))
				return RD_NOMEM;
			continue;
		}
		if (ch == '"' && at_start) {
			inq = 1;
			at_start = 0;
			row->quoted_any = 1;
			continue;
		}
		at_start = 0;
		if (ch == c->sep) {
			if (csv_field_begin(c, row))
				return RD_NOMEM;
			at_start = 1;
			continue;
		}
		if (ch == '\n')
			break;
		if (ch == '\r') {
			int nx = src_peek(s);

			if (nx == SRC_IOERR)
				return RD_IOERR;
			if (nx == '\n') {
				src_getc(s);
				break;
			}
		}
		if (csv_add(c, row, ch))
			return RD_NOMEM;
	}
	return RD_OK;
}

/* A blank line: one unquoted field of only white space. */
static int csv_blank(const pm_catalog *c, const struct csv_row *row)
{
	const char *p;
	size_t n;

	if (row->nfields != 1 || row->quoted_any || row->long_record ||
	    row->long_field)
		return 0;
	p = c->rec.p + c->foff[0];
	n = c->flen[0];
	trim(&p, &n);
	return n == 0;
}

/* Reads the next non-blank row. */
static int csv_next_row(pm_catalog *c, struct csv_row *row)
{
	int rd;

	do
		rd = csv_read_row(c, row);
	while (rd == RD_OK && csv_blank(c, row));
	return rd;
}

/* Why row is malformed as a whole, into why; 0 if it is not. */
static int csv_row_problem(const pm_catalog *c, const struct csv_row *row,
			   char *why, size_t wn)
{
	if (row->unterminated)
		snprintf(why, wn,
			 "line %" PRIu64
			 ": unterminated quoted field (no closing quote "
			 "before the end of the file)",
			 row->line);
	else if (row->long_record)
		snprintf(why, wn,
			 "line %" PRIu64 ": record longer than %zu bytes",
			 row->line, c->max_record);
	else if (row->too_many)
		snprintf(why, wn, "line %" PRIu64 ": more than %d columns",
			 row->line, c->max_columns);
	else if (row->long_field)
		snprintf(why, wn,
			 "line %" PRIu64 ": field %d longer than %zu bytes",
			 row->line, row->long_col + 1, c->max_field);
	else
		return 0;
	return 1;
}

/* Picks the separator from the first non-blank line in the buffer: ','
 * when it has one outside quotes, else a tab, else ';'. */
static char csv_sniff_sep(const struct src *s)
{
	const unsigned char *p = s->buf + s->pos, *e = s->buf + s->len;
	int inq = 0, tab = 0, semi = 0;

	while (p < e && is_space(*p))
		p++;
	for (; p < e && (inq || *p != '\n'); p++) {
		if (*p == '"')
			inq = !inq;
		else if (!inq && *p == ',')
			return ',';
		else if (!inq && *p == '\t')
			tab = 1;
		else if (!inq && *p == ';')
			semi = 1;
	}
	return tab ? '\t' : semi ? ';' : ',';
}

static pm_status csv_start(pm_catalog *c, int tsv, pm_err *err)
{
	struct csv_row row;
	char why[200];
	int rd, image_col = -1;
	unsigned seen = 0;

	c->sep = tsv ? '\t' : csv_sniff_sep(&c->src);
	rd = csv_next_row(c, &row);
	if (rd == RD_EOF)
		return pm_fail(err, PM_ERR_CATALOG,
			       "%s: empty CSV, no header row", c->path);
	if (rd < 0)
		return cat_fatal(c, rd, err);
	if (csv_row_problem(c, &row, why, sizeof why))
		return pm_fail(err, PM_ERR_CATALOG, "%s: header: %s", c->path,
			       why);
	c->ncols = row.nfields;
	c->colname = calloc((size_t)c->ncols, sizeof *c->colname);
	c->role = calloc((size_t)c->ncols, sizeof *c->role);
	if (!c->colname || !c->role)
		return cat_fatal(c, RD_NOMEM, err);
	for (int i = 0; i < c->ncols; i++) {
		const char *p = c->rec.p + c->foff[i];
		size_t n = c->flen[i];
		enum role ro;

		trim(&p, &n);
		if (!utf8_valid(p, n))
			return pm_fail(err, PM_ERR_CATALOG,
				       "%s: header: column %d is not valid "
				       "UTF-8",
				       c->path, i + 1);
		c->colname[i] = strndup(p, n);
		if (!c->colname[i])
			return cat_fatal(c, RD_NOMEM, err);
		/* The first column of each known name wins; repeats are
		 * kept as attributes. */
		ro = role_of(p, n);
		if (ro != ROLE_ATTR && !(seen & 1u << ro)) {
			seen |= 1u << ro;
			c->role[i] = (unsigned char)ro;
			if (ro == ROLE_IMAGE || ro == ROLE_IMAGES)
				image_col = i;
		}
	}
	if (image_col < 0)
		return pm_fail(err, PM_ERR_CATALOG,
			       "no image column (expected one of " IMAGE_ALIASES
			       ")");
	return PM_OK;
}

/* Fills r from a well-formed row. Returns 0 or RD_NOMEM. */
static int csv_fill(pm_catalog *c, pm_record *r, const struct csv_row *row)
{
	json_t *attrs = json_object();
	const char *img = NULL, *imgs = NULL;
	size_t imgn = 0, imgsn = 0;
	int rc;

	if (!attrs)
		return RD_NOMEM;
	for (int i = 0; i < c->ncols; i++) {
		const char *v = c->rec.p + c->foff[i];
		size_t n = c->flen[i];
		char **dst = NULL;

		if (!utf8_valid(v, n)) {
			json_decref(attrs);
			rec_fail(r,
				 "line %" PRIu64
				 ": column %d (%s) is not valid UTF-8",
				 row->line, i + 1, c->colname[i]);
			return 0;
		}
		dst = role_field(r, (enum role)c->role[i]);
		switch ((enum role)c->role[i]) {
		case ROLE_IMAGE:
			img = v;
			imgn = n;
			break;
		case ROLE_IMAGES:
			imgs = v;
			imgsn = n;
			break;
		case ROLE_ATTR:
			if (json_object_set_new(attrs, c->colname[i],
						json_stringn(v, n))) {
				json_decref(attrs);
				return RD_NOMEM;
			}
			break;
		default: /* a record field: dst */
			break;
		}
		if (dst && n) {
			*dst = strndup(v, n);
			if (!*dst) {
				json_decref(attrs);
				return RD_NOMEM;
			}
		}
	}
	if (rec_set_attrs(r, attrs))
		return RD_NOMEM;
	if (imgs)
		trim(&imgs, &imgsn);
	if (!imgs || imgsn == 0)
		return rec_set_image(c, r, row->line, img, imgn);
	if (img) {
		const char *t = img;
		size_t tn = imgn;
		trim(&t, &tn);
		if (tn) {
			rc = rec_set_image(c, r, row->line, img, imgn);
			if (rc || r->status)
				return rc;
		}
	}
	return rec_set_candidates(c, r, row->line, imgs, imgsn);
}

static pm_status csv_next(pm_catalog *c, pm_record **out, pm_err *err)
{
	struct csv_row row;
	pm_record *r;
	char why[200];
	int rd = csv_next_row(c, &row);

	if (rd == RD_EOF)
		return PM_OK;
	if (rd < 0)
		return cat_fatal(c, rd, err);
	r = rec_new(c, NULL);
	if (!r)
		return cat_fatal(c, RD_NOMEM, err);
	if (csv_row_problem(c, &row, why, sizeof why))
		rec_fail(r, "%s", why);
	else if (row.nfields != c->ncols)
		rec_fail(r, "line %" PRIu64 ": %d fields, header has %d",
			 row.line, row.nfields, c->ncols);
	else if (csv_fill(c, r, &row)) {
		pm_record_free(r);
		return cat_fatal(c, RD_NOMEM, err);
	}
	return emit(c, r, out, err);
}

/* ---- JSON Lines ---- */

/* Prints a double in the fewest digits that read back the same (plainly
 * when it is a whole number of reasonable size). */
static void fmt_real(double d, char *b, size_t n)
{
	if (d > -1e15 && d < 1e15 && d == (double)(long long)d) {
		snprintf(b, n, "%.0f", d); /* 1e3 -> "1000" */
		return;
	}
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(b, n, "%.*g", prec, d);
		if (strtod(b, NULL) == d)
			return;
	}
}

/* The text of a scalar JSON value: a string as is, a number printed, null
 * as NULL. Returns 0 (*out owned by the caller), 1 for another type, or
 * RD_NOMEM. */
static int json_text(json_t *v, char **out)
{
	char tmp[64];

	*out = NULL;
	if (json_is_null(v))
		return 0;
	if (json_is_string(v)) {
		*out = strndup(json_string_value(v), json_string_length(v));
	} else if (json_is_integer(v)) {
		snprintf(tmp, sizeof tmp, "%" JSON_INTEGER_FORMAT,
			 json_integer_value(v));
		*out = strdup(tmp);
	} else if (json_is_real(v)) {
		fmt_real(json_real_value(v), tmp, sizeof tmp);
		*out = strdup(tmp);
	} else {
		return 1;
	}
	return *out ? 0 : RD_NOMEM;
}

/* Fills r from one parsed JSON object. Returns 0 or RD_NOMEM. */
static int jsonl_fill(pm_catalog *c, pm_record *r, uint64_t line, json_t *o)
{
	json_t *attrs = json_object(), *v, *img = NULL, *imgs = NULL;
	const char *k;
	unsigned seen = 0;

	if (!attrs)
		return RD_NOMEM;
	json_object_foreach(o, k, v)
	{
		enum role ro = role_of(k, strlen(k));
		char **dst = NULL;
		int rc;

		if (ro == ROLE_ATTR || (seen & 1u << ro)) {
			if (json_object_set(attrs, k, v)) {
				json_decref(attrs);
				return RD_NOMEM;
			}
			continue;
		}
		seen |= 1u << ro;
		if (ro == ROLE_IMAGES) {
			imgs = v;
			continue;
		}
		dst = role_field(r, ro);
		if (!dst) { /* the image */
			img = v;
			continue;
		}
		rc = json_text(v, dst);
		if (rc == RD_NOMEM) {
			json_decref(attrs);
			return RD_NOMEM;
		}
		if (rc == 0 && *dst && strlen(*dst) > c->max_field)
			rc = 2;
		if (rc) {
			json_decref(attrs);
			rec_fail(r,
				 rc == 1
				     ? "line %" PRIu64
				       ": \"%s\" must be a string or number"
				     : "line %" PRIu64
				       ": \"%s\" longer than the field limit",
				 line, k);
			return 0;
		}
	}
	if (imgs) {
		/* A list: a "|"-separated string or an array of strings. */
		struct buf b = {0};
		int rc = 0;
		if (json_is_string(imgs)) {
			const char *t = json_string_value(imgs);
			while (*t && !rc)
				rc = buf_push(&b, *t++);
		} else if (json_is_array(imgs)) {
			size_t i;
			json_t *e;
			json_array_foreach(imgs, i, e)
			{
				const char *t = json_string_value(e);
				if (!t)
					continue;
				if (b.len)
					rc |= buf_push(&b, '|');
				while (*t && !rc)
					rc = buf_push(&b, *t++);
			}
		}
		if (rc || buf_terminate(&b)) {
			free(b.p);
			json_decref(attrs);
			return RD_NOMEM;
		}
		if (b.len > c->max_field || !utf8_valid(b.p, b.len)) {
			free(b.p);
			json_decref(attrs);
			rec_fail(r,
				 "line %" PRIu64 ": image_urls must be valid "
				 "UTF-8 of at most %zu bytes",
				 line, c->max_field);
			return 0;
		}
		if (img && json_is_string(img) && json_string_length(img)) {
			rc = rec_set_image(c, r, line, json_string_value(img),
					   json_string_length(img));
			if (rc || r->status) {
				free(b.p);
				json_decref(attrs);
				return rc;
			}
		}
		if (rec_set_attrs(r, attrs)) {
			free(b.p);
			return RD_NOMEM;
		}
		rc = rec_set_candidates(c, r, line, b.p ? b.p : "", b.len);
		free(b.p);
		return rc;
	}
	if (!img || json_is_null(img)) {
		if (rec_set_attrs(r, attrs))
			return RD_NOMEM;
		rec_no_image(r, line,
			     "no image field (expected one of " IMAGE_ALIASES
			     ")");
		return 0;
	}
	if (!json_is_string(img) || json_string_length(img) > c->max_field) {
		json_decref(attrs);
		rec_fail(r,
			 "line %" PRIu64 ": image must be a string of at "
			 "most %zu bytes",
			 line, c->max_field);
		return 0;
	}
	if (rec_set_attrs(r, attrs))
		return RD_NOMEM;
	return rec_set_image(c, r, line, json_string_value(img),
			     json_string_length(img));
}

static int blank_or_comment(const char *p, size_t n, int comments)
{
	trim(&p, &n);
	return n == 0 || (comments && p[0] == '#');
}

/* Line readers (JSONL, lists): reads up to the next line that is not
 * blank (nor a '#' comment when comments is set) into c->rec and makes its
 * record. Returns RD_OK with *r owned by the caller, RD_EOF, or a negative
 * RD_ error. */
static int next_line_record(pm_catalog *c, int comments, uint64_t *line,
			    int *too_long, pm_record **r)
{
	int rd;

	*r = NULL;
	do
		rd = read_line(c, line, too_long);
	while (rd == RD_OK && !*too_long &&
	       blank_or_comment(c->rec.p, c->rec.len, comments));
	if (rd != RD_OK)
		return rd;
	*r = rec_new(c, NULL);
	return *r ? RD_OK : RD_NOMEM;
}

static pm_status jsonl_next(pm_catalog *c, pm_record **out, pm_err *err)
{
	uint64_t line;
	int too_long, rd;
	pm_record *r;
	json_error_t je;
	json_t *o;

	rd = next_line_record(c, 0, &line, &too_long, &r);
	if (rd == RD_EOF)
		return PM_OK;
	if (rd < 0)
		return cat_fatal(c, rd, err);
	if (too_long) {
		rec_fail(r, "line %" PRIu64 ": record longer than %zu bytes",
			 line, c->max_record);
		return emit(c, r, out, err);
	}
	o = json_loadb(c->rec.p, c->rec.len, 0, &je);
	if (!o) {
		rec_fail(r, "line %" PRIu64 ": bad JSON at column %d: %s", line,
			 je.column, je.text);
	} else if (!json_is_object(o)) {
		rec_fail(r, "line %" PRIu64 ": not a JSON object", line);
	} else if (jsonl_fill(c, r, line, o)) {
		json_decref(o);
		pm_record_free(r);
		return cat_fatal(c, RD_NOMEM, err);
	}
	json_decref(o);
	return emit(c, r, out, err);
}

/* ---- lists ---- */

static pm_status list_next(pm_catalog *c, pm_record **out, pm_err *err)
{
	uint64_t line;
	int too_long, rd;
	pm_record *r;
	const char *p;
	size_t n;

	rd = next_line_record(c, 1, &line, &too_long, &r);
	if (rd == RD_EOF)
		return PM_OK;
	if (rd < 0)
		return cat_fatal(c, rd, err);
	p = c->rec.p;
	n = c->rec.len;
	trim(&p, &n);
	if (too_long)
		rec_fail(r, "line %" PRIu64 ": line longer than %zu bytes",
			 line, c->max_record);
	else if (n > c->max_field)
		rec_fail(r, "line %" PRIu64 ": path longer than %zu bytes",
			 line, c->max_field);
	else if (!utf8_valid(p, n))
		rec_fail(r, "line %" PRIu64 ": not valid UTF-8", line);
	else if (rec_set_image(c, r, line, p, n)) {
		pm_record_free(r);
		return cat_fatal(c, RD_NOMEM, err);
	}
	return emit(c, r, out, err);
}

/* ---- folders ---- */

static int has_image_ext(const char *name)
{
	static const char *const exts[] = {"jpg",  "jpeg", "png",  "webp",
					   "gif",  "tif",  "tiff", "bmp",
					   "heic", "heif", "avif", "jxl"};
	const char *dot = strrchr(name, '.');

	if (!dot)
		return 0;
	for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++)
		if (strcasecmp(dot + 1, exts[i]) == 0)
			return 1;
	return 0;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void level_free(struct level *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->names[i]);
	free(l->names);
	free(l->rel);
	memset(l, 0, sizeof *l);
}

/* root + "/" + rel; caller owns it. */
static char *folder_abs(const pm_catalog *c, const char *rel)
{
	size_t rl = strlen(c->root), n = strlen(rel);
	int slash = rl > 0 && c->root[rl - 1] != '/' && n > 0;
	char *p = malloc(rl + n + 2);

	if (!p)
		return NULL;
	memcpy(p, c->root, rl);
	if (slash)
		p[rl] = '/';
	memcpy(p + rl + slash, rel, n + 1);
	return p;
}

/* Pushes the directory rel (owned by the callee from here on, freed on
 * failure) onto the walk. Returns 0, an errno value, or -1 out of memory. */
static int folder_push(pm_catalog *c, char *rel)
{
	struct level l = {.rel = rel};
	size_t cap = 0;
	char *abs = folder_abs(c, rel);
	DIR *d;
	struct dirent *e;
	int e_no = 0;

	if (!abs) {
		free(rel);
		return -1;
	}
	d = opendir(abs);
	free(abs);
	if (!d) {
		e_no = errno ? errno : EIO;
		free(rel);
		return e_no;
	}
	for (;;) {
		errno = 0;
		e = readdir(d);
		if (!e) {
			e_no = errno;
			break;
		}
		if (e->d_name[0] == '.')
			continue;
		if (l.n == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			char **nn = realloc(l.names, ncap * sizeof *nn);

			if (!nn) {
				e_no = -1;
				break;
			}
			l.names = nn;
			cap = ncap;
		}
		l.names[l.n] = strdup(e->d_name);
		if (!l.names[l.n]) {
			e_no = -1;
			break;
		}
		l.n++;
	}
	closedir(d);
	if (!e_no && c->depth == c->stack_cap) {
		size_t ncap = c->stack_cap ? c->stack_cap * 2 : 8;
		struct level *ns = realloc(c->stack, ncap * sizeof *ns);

		if (ns) {
			c->stack = ns;
			c->stack_cap = ncap;
		} else {
			e_no = -1;
		}
	}
	if (e_no) {
		level_free(&l);
		return e_no;
	}
	if (l.n)
		qsort(l.names, l.n, sizeof *l.names, cmp_name);
	c->stack[c->depth++] = l;
	return 0;
}

/* A key for rel that is valid UTF-8: rel itself, or with every byte >= 0x80
 * written as %XX when rel is not valid UTF-8. Caller owns it. */
static char *folder_key(const char *rel)
{
	size_t n = strlen(rel), w = 0;
	char *k;

	if (utf8_valid(rel, n))
		return strdup(rel);
	k = malloc(n * 3 + 1);
	if (!k)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)rel[i];

		if (ch < 0x80)
			k[w++] = (char)ch;
		else
			w += (size_t)sprintf(k + w, "%%%02X", ch);
	}
	k[w] = 0;
	return k;
}

/* A new record keyed rel: the file's absolute path as image, or, when why
 * is not NULL, a malformed record with that reason. Caller owns it; NULL
 * when out of memory. */
static pm_record *folder_record(pm_catalog *c, const char *rel, const char *why)
{
	char *key = folder_key(rel);
	pm_record *r;

	if (!key)
		return NULL;
	r = rec_new(c, key);
	free(key);
	if (!r)
		return NULL;
	if (why) {
		rec_fail(r, "%s", why);
		return r;
	}
	r->image = folder_abs(c, rel);
	if (!r->image) {
		pm_record_free(r);
		return NULL;
	}
	if (!utf8_valid(r->image, strlen(r->image)))
		rec_fail(r, "file name is not valid UTF-8");
	return r;
}

static pm_status folder_next(pm_catalog *c, pm_record **out, pm_err *err)
{
	while (c->depth) {
		struct level *l = &c->stack[c->depth - 1];
		const char *name;
		char *rel, *abs, why[200];
		struct stat st;
		size_t pl, nl;
		int rc;

		if (l->i == l->n) {
			level_free(l);
			c->depth--;
			continue;
		}
		name = l->names[l->i++];
		pl = strlen(l->rel);
		nl = strlen(name);
		rel = malloc(pl + nl + 2);
		if (!rel)
			return cat_fatal(c, RD_NOMEM, err);
		if (pl)
			sprintf(rel, "%s/%s", l->rel, name);
		else
			memcpy(rel, name, nl + 1);
		abs = folder_abs(c, rel);
		if (!abs) {
			free(rel);
			return cat_fatal(c, RD_NOMEM, err);
		}
		rc = lstat(abs, &st);
		if (rc == 0 && S_ISLNK(st.st_mode)) {
			/* Follow links to files, never to directories. */
			rc = stat(abs, &st);
			if (rc == 0 && !S_ISREG(st.st_mode))
				rc = -1;
		}
		free(abs);
		if (rc != 0 || (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))) {
			free(rel); /* vanished, or not a file: skip */
			continue;
		}
		if (S_ISDIR(st.st_mode)) {
			char *relcopy = strdup(rel);

			if (!relcopy) {
				free(rel);
				return cat_fatal(c, RD_NOMEM, err);
			}
			/* l may move when the stack grows; not used below. */
			rc = folder_push(c, relcopy);
			if (rc == 0) {
				free(rel);
				continue;
			}
			if (rc < 0) {
				free(rel);
				return cat_fatal(c, RD_NOMEM, err);
			}
			snprintf(why, sizeof why, "cannot read directory: %s",
				 strerror(rc));
			*out = folder_record(c, rel, why);
		} else if (c->all_files || has_image_ext(name)) {
			*out = folder_record(c, rel, NULL);
		} else {
			free(rel);
			continue;
		}
		free(rel);
		return emit(c, *out, out, err);
	}
	return PM_OK;
}

static pm_status folder_open(pm_catalog *c, const char *path, pm_err *err)
{
	char *rel;
	int rc;

	c->root = path_abs(path);
	if (!c->root)
		return pm_fail(err, PM_ERR_IO, "%s: %s", path, strerror(errno));
	c->base_dir = strdup(c->root);
	rel = strdup("");
	if (!c->base_dir || !rel) {
		free(rel);
		return cat_fatal(c, RD_NOMEM, err);
	}
	rc = folder_push(c, rel);
	if (rc < 0)
		return cat_fatal(c, RD_NOMEM, err);
	if (rc > 0)
		return pm_fail(err, rc == ENOENT ? PM_ERR_NOT_FOUND : PM_ERR_IO,
			       "read folder %s: %s", path, strerror(rc));
	return PM_OK;
}

/* ---- opening and detection ---- */

const char *pm_catalog_kind_name(pm_catalog_kind k)
{
	switch (k) {
	case PM_CATALOG_AUTO:
		return "auto";
	case PM_CATALOG_CSV:
		return "csv";
	case PM_CATALOG_JSONL:
		return "jsonl";
	case PM_CATALOG_LIST:
		return "list";
	case PM_CATALOG_FOLDER:
		return "folder";
	}
	return "unknown";
}

int pm_catalog_kind_parse(const char *s)
{
	for (int k = PM_CATALOG_AUTO; s && k <= PM_CATALOG_FOLDER; k++)
		if (strcasecmp(s, pm_catalog_kind_name((pm_catalog_kind)k)) ==
		    0)
			return k;
	return -1;
}

pm_catalog_kind pm_catalog_kind_of(const pm_catalog *c)
{
	return c->kind;
}

void pm_catalog_close(pm_catalog *c)
{
	if (!c)
		return;
	if (c->src.fd >= 0)
		close(c->src.fd);
	free(c->src.buf);
	free(c->rec.p);
	for (int i = 0; c->colname && i < c->ncols; i++)
		free(c->colname[i]);
	free(c->colname);
	free(c->role);
	free(c->foff);
	free(c->flen);
	while (c->depth)
		level_free(&c->stack[--c->depth]);
	free(c->stack);
	free(c->root);
	free(c->base_dir);
	free(c->path);
	free(c);
}

/* A new catalog with limits from opts (defaults for zeros); caller owns. */
static pm_catalog *cat_new(const pm_catalog_opts *opts, const char *path)
{
	pm_catalog *c = calloc(1, sizeof *c);

	if (!c)
		return NULL;
	c->src.fd = -1;
	c->src.line = 1;
	c->max_field =
	    opts && opts->max_field ? opts->max_field : DEF_MAX_FIELD;
	c->max_record =
	    opts && opts->max_record ? opts->max_record : DEF_MAX_RECORD;
	c->max_columns =
	    opts && opts->max_columns > 0 ? opts->max_columns : DEF_MAX_COLUMNS;
	c->all_files = opts ? opts->folder_all_files : 0;
	c->path = strdup(path);
	if (!c->path) {
		free(c);
		return NULL;
	}
	return c;
}

/* The kind named by a file name's extension, or AUTO. Sets *tsv for .tsv. */
static pm_catalog_kind kind_from_ext(const char *path, int *tsv)
{
	const char *slash = strrchr(path, '/'), *dot = strrchr(path, '.');

	*tsv = 0;
	if (!dot || (slash && dot < slash))
		return PM_CATALOG_AUTO;
	dot++;
	if (strcasecmp(dot, "csv") == 0)
		return PM_CATALOG_CSV;
	if (strcasecmp(dot, "tsv") == 0) {
		*tsv = 1;
		return PM_CATALOG_CSV;
	}
	if (strcasecmp(dot, "jsonl") == 0 || strcasecmp(dot, "ndjson") == 0 ||
	    strcasecmp(dot, "json") == 0)
		return PM_CATALOG_JSONL;
	if (strcasecmp(dot, "txt") == 0 || strcasecmp(dot, "list") == 0 ||
	    strcasecmp(dot, "lst") == 0)
		return PM_CATALOG_LIST;
	return PM_CATALOG_AUTO;
}

/* The kind suggested by the first bytes: '{' is JSONL; a first line with a
 * comma and an image-alias column is CSV; anything else a list. */
static pm_catalog_kind kind_from_bytes(const struct src *s)
{
	const char *p = (const char *)s->buf + s->pos;
	const char *e = (const char *)s->buf + s->len, *eol;

	while (p < e && is_space((unsigned char)*p))
		p++;
	if (p < e && *p == '{')
		return PM_CATALOG_JSONL;
	eol = memchr(p, '\n', (size_t)(e - p));
	if (!eol)
		eol = e;
	if (!memchr(p, ',', (size_t)(eol - p)))
		return PM_CATALOG_LIST;
	for (;;) {
		const char *q = memchr(p, ',', (size_t)(eol - p));
		int last = !q;
		size_t n;

		if (!q)
			q = eol;
		n = (size_t)(q - p);
		trim(&p, &n);
		if (n >= 2 && p[0] == '"' && p[n - 1] == '"') {
			p++;
			n -= 2;
		}
		if (role_of(p, n) == ROLE_IMAGE || role_of(p, n) == ROLE_IMAGES)
			return PM_CATALOG_CSV;
		if (last)
			return PM_CATALOG_LIST;
		p = q + 1;
	}
}

/* Finishes opening a text catalog whose source is ready. On failure c is
 * freed and *out stays NULL. */
static pm_status cat_start(pm_catalog *c, pm_catalog_kind kind, int tsv,
			   pm_catalog **out, pm_err *err)
{
	pm_status st = PM_OK;

	if (kind == PM_CATALOG_AUTO)
		kind = kind_from_bytes(&c->src);
	c->kind = kind;
	if (kind == PM_CATALOG_CSV)
		st = csv_start(c, tsv, err);
	if (st != PM_OK) {
		pm_catalog_close(c);
		return st;
	}
	*out = c;
	return PM_OK;
}

static int kind_valid(pm_catalog_kind k)
{
	return k >= PM_CATALOG_AUTO && k <= PM_CATALOG_FOLDER;
}

pm_status pm_catalog_open(const char *path, const pm_catalog_opts *opts,
			  pm_catalog **out, pm_err *err)
{
	pm_catalog_kind kind = opts ? opts->kind : PM_CATALOG_AUTO;
	pm_catalog_kind ext;
	pm_catalog *c;
	struct stat st;
	const char *slash;
	char *dir;
	int tsv;

	*out = NULL;
	if (!path || !*path)
		return pm_fail(err, PM_ERR_USAGE, "no catalog path given");
	if (!kind_valid(kind))
		return pm_fail(err, PM_ERR_USAGE, "unknown catalog kind %d",
			       (int)kind);
	if (stat(path, &st) != 0)
		return pm_fail(err,
			       errno == ENOENT || errno == ENOTDIR
				   ? PM_ERR_NOT_FOUND
				   : PM_ERR_IO,
			       "catalog %s: %s", path, strerror(errno));
	if (S_ISDIR(st.st_mode) && kind != PM_CATALOG_AUTO &&
	    kind != PM_CATALOG_FOLDER)
		return pm_fail(err, PM_ERR_CATALOG,
			       "catalog %s is a directory, not a %s file", path,
			       pm_catalog_kind_name(kind));
	if (!S_ISDIR(st.st_mode) && kind == PM_CATALOG_FOLDER)
		return pm_fail(err, PM_ERR_CATALOG,
			       "catalog %s is not a directory", path);
	c = cat_new(opts, path);
	if (!c)
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	if (S_ISDIR(st.st_mode)) {
		pm_status rc;

		c->kind = PM_CATALOG_FOLDER;
		rc = folder_open(c, path, err);
		if (rc != PM_OK) {
			pm_catalog_close(c);
			return rc;
		}
		*out = c;
		return PM_OK;
	}

	slash = strrchr(path, '/');
	dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path))
		    : strdup(".");
	if (dir) {
		c->base_dir = path_abs(dir);
		free(dir);
	}
	if (!c->base_dir) {
		pm_catalog_close(c);
		return pm_fail(err, PM_ERR_IO,
			       "catalog %s: cannot resolve its "
			       "folder",
			       path);
	}
	c->src.fd = open(path, O_RDONLY | O_CLOEXEC);
	if (c->src.fd < 0) {
		int e = errno;

		pm_catalog_close(c);
		return pm_fail(err, e == ENOENT ? PM_ERR_NOT_FOUND : PM_ERR_IO,
			       "open %s: %s", path, strerror(e));
	}
	c->src.cap = READ_BUF;
	c->src.buf = malloc(c->src.cap);
	if (!c->src.buf) {
		pm_catalog_close(c);
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	}
	if (src_start(&c->src)) {
		pm_status rc = pm_fail(err, PM_ERR_IO, "read %s: %s", path,
				       strerror(c->src.err));

		pm_catalog_close(c);
		return rc;
	}
	ext = kind_from_ext(path, &tsv);
	if (kind == PM_CATALOG_AUTO)
		kind = ext;
	return cat_start(c, kind, tsv, out, err);
}

pm_status pm_catalog_open_mem(const void *data, size_t len,
			      pm_catalog_kind kind, const pm_catalog_opts *opts,
			      pm_catalog **out, pm_err *err)
{
	pm_catalog *c;

	*out = NULL;
	if (!kind_valid(kind) || kind == PM_CATALOG_FOLDER)
		return pm_fail(err, PM_ERR_USAGE,
			       "catalog kind %s cannot be read from memory",
			       pm_catalog_kind_name(kind));
	c = cat_new(opts, "<memory>");
	if (!c)
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	c->base_dir = getcwd(NULL, 0);
	c->src.cap = len;
	c->src.len = len;
	c->src.eof = 1;
	c->src.buf = malloc(len ? len : 1);
	if (!c->base_dir || !c->src.buf) {
		pm_catalog_close(c);
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	}
	if (len)
		memcpy(c->src.buf, data, len);
	src_start(&c->src);
	return cat_start(c, kind, 0, out, err);
}

pm_status pm_catalog_next(pm_catalog *c, pm_record **out, pm_err *err)
{
	*out = NULL;
	if (c->fatal != PM_OK)
		return pm_fail(err, c->fatal,
			       "catalog %s: reading already failed", c->path);
	switch (c->kind) {
	case PM_CATALOG_CSV:
		return csv_next(c, out, err);
	case PM_CATALOG_JSONL:
		return jsonl_next(c, out, err);
	case PM_CATALOG_LIST:
		return list_next(c, out, err);
	case PM_CATALOG_FOLDER:
		return folder_next(c, out, err);
	case PM_CATALOG_AUTO:
		break;
	}
	return pm_fail(err, PM_ERR_INTERNAL, "catalog kind not decided");
}
