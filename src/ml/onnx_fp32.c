/* onnx_fp32.c — float16 -> float32 rewrite of a serialized ONNX model (see
 * onnx_fp32.h).
 *
 * The protobuf wire format is walked message by message; only the fields
 * listed in `rewrite` are looked into, everything else is copied as it is.
 * A message whose size changes needs its new length before its bytes, so
 * every rewrite runs twice: a dry pass that only counts bytes, then the
 * pass that writes into a buffer sized by the first.
 *
 * ONNX field numbers used (onnx/onnx.proto): ModelProto.graph 7;
 * GraphProto node 1, initializer 5, input 11, output 12, value_info 13;
 * NodeProto op_type 4, attribute 5, domain 7; AttributeProto name 1, i 3,
 * t 5, g 6, tensors 10, graphs 11; TensorProto data_type 2, float_data 4,
 * int32_data 5, raw_data 9, external_data 13, data_location 14;
 * ValueInfoProto type 2; TypeProto tensor_type 1; TypeProto.Tensor
 * elem_type 1. Data types: FLOAT 1, FLOAT16 10.
 *
 * Threads: any; no shared state.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "ml/onnx_fp32.h"

#define T_FLOAT	  1
#define T_FLOAT16 10
#define MAX_DEPTH 16 /* sub-graphs in attributes nest; bounded */

enum kind { K_MODEL, K_GRAPH, K_NODE, K_ATTR, K_TENSOR, K_VINFO, K_TYPE, K_TT };

/* One field as read off the wire. */
typedef struct fld {
	uint32_t num;
	int wt;	    /* wire type: 0 varint, 1 fixed64, 2 bytes, 5 fixed32 */
	uint64_t v; /* wt 0: the value */
	const uint8_t *data;	  /* wt 2: the bytes */
	size_t dlen;		  /* wt 2: their length */
	const uint8_t *at, *next; /* the whole field, key included */
} fld;

/* Output: buf NULL counts bytes only (the dry pass). */
typedef struct wr {
	uint8_t *buf;
	size_t len;
	size_t widened;
	pm_err *err;
} wr;

static int rd_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	uint64_t r = 0;

	for (int shift = 0; shift < 64; shift += 7) {
		if (*p >= end)
			return -1;
		uint8_t c = *(*p)++;
		r |= (uint64_t)(c & 0x7f) << shift;
		if (!(c & 0x80)) {
			*v = r;
			return 0;
		}
	}
	return -1;
}

/* Reads the field at *p; 1 = one read, 0 = end of message, -1 = bad. */
static int next_field(const uint8_t **p, const uint8_t *end, fld *f)
{
	uint64_t key, n;

	if (*p >= end)
		return 0;
	f->at = *p;
	if (rd_varint(p, end, &key) || (key >> 3) == 0 ||
	    (key >> 3) > 0x1fffffff)
		return -1;
	f->num = (uint32_t)(key >> 3);
	f->wt = (int)(key & 7);
	switch (f->wt) {
	case 0:
		if (rd_varint(p, end, &f->v))
			return -1;
		break;
	case 1:
	case 5:
		n = f->wt == 1 ? 8 : 4;
		if ((size_t)(end - *p) < n)
			return -1;
		*p += n;
		break;
	case 2:
		if (rd_varint(p, end, &n) || n > (uint64_t)(end - *p))
			return -1;
		f->data = *p;
		f->dlen = (size_t)n;
		*p += n;
		break;
	default: /* groups (3, 4) are not in ONNX */
		return -1;
	}
	f->next = *p;
	return 1;
}

static void put(wr *w, const void *p, size_t n)
{
	if (w->buf)
		memcpy(w->buf + w->len, p, n);
	w->len += n;
}

static void put_varint(wr *w, uint64_t v)
{
	uint8_t b[10];
	size_t n = 0;

	do {
		b[n] = (uint8_t)(v & 0x7f);
		v >>= 7;
		if (v)
			b[n] |= 0x80;
		n++;
	} while (v);
	put(w, b, n);
}

static void put_key(wr *w, uint32_t num, int wt)
{
	put_varint(w, (uint64_t)num << 3 | (uint64_t)wt);
}

/* The float32 bits of IEEE float16 h (exact: every half is a float). */
static uint32_t half_bits(uint16_t h)
{
	uint32_t sign = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 0x1f,
		 m = h & 0x3ff;

	if (e == 0) {
		int s = 0;
		if (!m)
			return sign;
		while (!(m & 0x400)) { /* subnormal: normalise */
			m <<= 1;
			s++;
		}
		return sign | (uint32_t)(113 - s) << 23 | (m & 0x3ff) << 13;
	}
	if (e == 31) /* inf, NaN (payload kept) */
		return sign | 0xffu << 23 | m << 13;
	return sign | (e + 112) << 23 | m << 13;
}

static void put_f32(wr *w, uint16_t h)
{
	uint32_t b = half_bits(h);
	uint8_t le[4] = {(uint8_t)b, (uint8_t)(b >> 8), (uint8_t)(b >> 16),
			 (uint8_t)(b >> 24)};
	put(w, le, 4);
}

static int bad(wr *w, const char *what)
{
	pm_fail(w->err, PM_ERR_UNSUPPORTED, "onnx fp32: %s", what);
	return -1;
}

static int rewrite(wr *w, enum kind k, const uint8_t *p, size_t n, bool cast,
		   int depth);

/* A length-delimited field f holding a message of kind k, rewritten. */
static int sub(wr *w, const fld *f, enum kind k, bool cast, int depth)
{
	wr dry = {NULL, 0, 0, w->err};

	if (rewrite(&dry, k, f->data, f->dlen, cast, depth + 1))
		return -1;
	put_key(w, f->num, 2);
	put_varint(w, dry.len);
	return rewrite(w, k, f->data, f->dlen, cast, depth + 1);
}

static bool bytes_is(const fld *f, const char *s)
{
	return f->dlen == strlen(s) && memcmp(f->data, s, f->dlen) == 0;
}

/* Pre-scan of a message for the things that decide how its fields are
 * rewritten: node "Cast" of the standard domain, attribute name "to",
 * tensor data type and whether its data is stored outside the model. */
typedef struct scan {
	bool std_cast, name_to, external;
	uint64_t dtype;
} scan;

static int prescan(wr *w, enum kind k, const uint8_t *p, size_t n, scan *sc)
{
	const uint8_t *end = p + n;
	bool is_cast = false, std_domain = true;
	fld f;
	int r;

	memset(sc, 0, sizeof *sc);
	while ((r = next_field(&p, end, &f)) == 1) {
		if (k == K_NODE && f.wt == 2 && f.num == 4)
			is_cast = bytes_is(&f, "Cast");
		else if (k == K_NODE && f.wt == 2 && f.num == 7)
			std_domain = f.dlen == 0 || bytes_is(&f, "ai.onnx");
		else if (k == K_ATTR && f.wt == 2 && f.num == 1)
			sc->name_to = bytes_is(&f, "to");
		else if (k == K_TENSOR && f.wt == 0 && f.num == 2)
			sc->dtype = f.v;
		else if (k == K_TENSOR &&
			 ((f.wt == 0 && f.num == 14 && f.v) || f.num == 13))
			sc->external = true;
	}
	sc->std_cast = is_cast && std_domain;
	return r < 0 ? bad(w, "malformed protobuf") : 0;
}

/* int32_data of a float16 tensor (the halves as integers), packed or not,
 * as float_data. */
static int tensor_int32(wr *w, const fld *f)
{
	const uint8_t *q, *end;
	uint64_t v;
	size_t count = 0;

	if (f->wt == 0) {
		put_key(w, 4, 5);
		put_f32(w, (uint16_t)f->v);
		return 0;
	}
	if (f->wt != 2)
		return bad(w, "int32_data of an unexpected wire type");
	for (q = f->data, end = q + f->dlen; q < end; count++)
		if (rd_varint(&q, end, &v))
			return bad(w, "malformed int32_data");
	put_key(w, 4, 2);
	put_varint(w, (uint64_t)count * 4);
	for (q = f->data; q < end;) {
		(void)rd_varint(&q, end, &v);
		put_f32(w, (uint16_t)v);
	}
	return 0;
}

static int rewrite(wr *w, enum kind k, const uint8_t *p, size_t n, bool cast,
		   int depth)
{
	const uint8_t *end = p + n;
	scan sc = {0};
	fld f;
	int r;

	if (depth > MAX_DEPTH)
		return bad(w, "messages nested too deeply");
	if ((k == K_NODE || k == K_ATTR || k == K_TENSOR) &&
	    prescan(w, k, p, n, &sc))
		return -1;
	if (k == K_TENSOR && sc.dtype != T_FLOAT16) {
		put(w, p, n); /* nothing to widen */
		return 0;
	}
	if (k == K_TENSOR && sc.external)
		return bad(w, "float16 tensor stored outside the model");
	if (k == K_TENSOR && w->buf)
		w->widened++;
	while ((r = next_field(&p, end, &f)) == 1) {
		enum kind child = K_MODEL; /* K_MODEL: copy as is */
		int rc = 0;

		switch (k) {
		case K_MODEL:
			child = f.num == 7 ? K_GRAPH : K_MODEL;
			break;
		case K_GRAPH:
			child = f.num == 1   ? K_NODE
				: f.num == 5 ? K_TENSOR
				: (f.num == 11 || f.num == 12 || f.num == 13)
				    ? K_VINFO
				    : K_MODEL;
			break;
		case K_NODE:
			child = f.num == 5 ? K_ATTR : K_MODEL;
			break;
		case K_ATTR:
			if (f.wt == 0 && f.num == 3 && cast && sc.name_to &&
			    f.v == T_FLOAT16) {
				put_key(w, 3, 0);
				put_varint(w, T_FLOAT);
				w->widened += w->buf != NULL;
				continue;
			}
			child = (f.num == 5 || f.num == 10)   ? K_TENSOR
				: (f.num == 6 || f.num == 11) ? K_GRAPH
							      : K_MODEL;
			break;
		case K_TENSOR:
			if (f.num == 2 && f.wt == 0) {
				put_key(w, 2, 0);
				put_varint(w, T_FLOAT);
				continue;
			}
			if (f.num == 9 && f.wt == 2) {
				if (f.dlen % 2)
					return bad(w, "float16 raw_data of odd "
						      "length");
				put_key(w, 9, 2);
				put_varint(w, (uint64_t)f.dlen * 2);
				if (w->buf)
					for (size_t i = 0; i < f.dlen; i += 2)
						put_f32(w,
							(uint16_t)(f.data[i] |
								   f.data[i + 1]
								       << 8));
				else
					w->len += f.dlen * 2;
				continue;
			}
			if (f.num == 5) {
				if (tensor_int32(w, &f))
					return -1;
				continue;
			}
			break;
		case K_VINFO:
			child = f.num == 2 ? K_TYPE : K_MODEL;
			break;
		case K_TYPE:
			child = f.num == 1 ? K_TT : K_MODEL;
			break;
		case K_TT:
			if (f.num == 1 && f.wt == 0 && f.v == T_FLOAT16) {
				put_key(w, 1, 0);
				put_varint(w, T_FLOAT);
				w->widened += w->buf != NULL;
				continue;
			}
			break;
		}
		if (child != K_MODEL && f.wt == 2)
			rc = sub(w, &f, child, k == K_NODE && sc.std_cast,
				 depth);
		else
			put(w, f.at, (size_t)(f.next - f.at));
		if (rc)
			return -1;
	}
	return r < 0 ? bad(w, "malformed protobuf") : 0;
}

pm_status pm_onnx_to_fp32(const uint8_t *in, size_t len, uint8_t **out,
			  size_t *out_len, size_t *widened, pm_err *err)
{
	wr dry = {NULL, 0, 0, err}, w = {NULL, 0, 0, err};

	*out = NULL;
	*out_len = 0;
	*widened = 0;
	if (rewrite(&dry, K_MODEL, in, len, false, 0))
		return PM_ERR_UNSUPPORTED; /* every failure is bad() */
	w.buf = malloc(dry.len ? dry.len : 1);
	if (!w.buf)
		return pm_fail(err, PM_ERR_NOMEM,
			       "onnx fp32: out of memory (%zu bytes)", dry.len);
	if (rewrite(&w, K_MODEL, in, len, false, 0)) {
		free(w.buf);
		return PM_ERR_UNSUPPORTED;
	}
	if (w.len != dry.len) { /* the two passes must agree */
		free(w.buf);
		return pm_fail(err, PM_ERR_INTERNAL,
			       "onnx fp32: sized %zu bytes, wrote %zu", dry.len,
			       w.len);
	}
	if (!w.widened) {
		free(w.buf);
		return PM_OK;
	}
	*out = w.buf;
	*out_len = w.len;
	*widened = w.widened;
	return PM_OK;
}
