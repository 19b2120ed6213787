/* sniff.c — image format detection from magic bytes, and the format table
 * (names, MIME types, which formats pixmill decodes).
 *
 * pm_sniff looks at no more than the first 64 bytes of its buffer (256 for
 * SVG, whose "<svg" element may follow an XML declaration and a DOCTYPE) and
 * never reads past len. A format is reported only when its whole signature,
 * plus the few header fields used to check it is plausible, fits in len:
 * a truncated buffer gives PM_FMT_UNKNOWN rather than a guess.
 *
 * Threads: every function here is pure (no state, no allocation); any thread
 * may call them at any time, before or after pm_image_global_init.
 */
#include "image/image.h"

#include <string.h>

#define SNIFF_WINDOW 64
#define SVG_WINDOW   256

static const struct {
	const char *name; /* stable: stored in catalogs, shown over HTTP */
	const char *mime;
	bool decodable;
} fmt_table[PM_FMT_COUNT] = {
    [PM_FMT_UNKNOWN] = {"unknown", "application/octet-stream", false},
    [PM_FMT_JPEG] = {"jpeg", "image/jpeg", true},
    [PM_FMT_PNG] = {"png", "image/png", true},
    [PM_FMT_WEBP] = {"webp", "image/webp", true},
    [PM_FMT_GIF] = {"gif", "image/gif", true},
    [PM_FMT_TIFF] = {"tiff", "image/tiff", true},
    [PM_FMT_BMP] = {"bmp", "image/bmp", false},
    [PM_FMT_HEIF] = {"heif", "image/heif", true},
    [PM_FMT_AVIF] = {"avif", "image/avif", true},
    [PM_FMT_JXL] = {"jxl", "image/jxl", false},
    [PM_FMT_SVG] = {"svg", "image/svg+xml", false},
    [PM_FMT_PDF] = {"pdf", "application/pdf", false},
    [PM_FMT_ICO] = {"ico", "image/vnd.microsoft.icon", false},
    [PM_FMT_PSD] = {"psd", "image/vnd.adobe.photoshop", false},
};

/* Whether buf[off .. off+n) is inside len and equals magic. */
static bool has(const uint8_t *b, size_t len, size_t off, const void *magic,
		size_t n)
{
	return len >= off && len - off >= n && memcmp(b + off, magic, n) == 0;
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* "BM" alone is too weak (any text starting "BM..."): also require a known
 * DIB header size and a pixel-data offset inside the headers' range. */
static bool plausible_bmp(const uint8_t *b, size_t len)
{
	if (len < 18 || b[0] != 'B' || b[1] != 'M')
		return false;
	uint32_t dib = le32(b + 14);
	uint32_t off = le32(b + 10);
	if (dib != 12 && dib != 16 && dib != 40 && dib != 52 && dib != 56 &&
	    dib != 64 && dib != 108 && dib != 124)
		return false;
	return off >= 14 + dib;
}

/* 00 00 01 00 is shared with many binary files: require a non-zero image
 * count and a plausible first directory entry (reserved byte 0, 0 or 1
 * colour planes, a known bit depth), so 14 bytes are needed. */
static bool plausible_ico(const uint8_t *b, size_t len)
{
	static const uint8_t m[4] = {0x00, 0x00, 0x01, 0x00};
	if (len < 14 || !has(b, len, 0, m, 4))
		return false;
	unsigned count = b[4] | b[5] << 8, planes = b[10] | b[11] << 8;
	unsigned bpp = b[12] | b[13] << 8;
	if (count == 0 || b[9] != 0 || planes > 1)
		return false;
	return bpp == 0 || bpp == 1 || bpp == 2 || bpp == 4 || bpp == 8 ||
	       bpp == 16 || bpp == 24 || bpp == 32;
}

static bool brand_is(const uint8_t *p, const char *const *list)
{
	for (; *list; list++)
		if (memcmp(p, *list, 4) == 0)
			return true;
	return false;
}

/* ISO-BMFF: an ftyp box first; its major brand and compatible brands (as far
 * as the box, len and the sniff window allow) decide AVIF or HEIF. An AVIF
 * brand anywhere wins, because AVIF files often carry major brand mif1. */
static pm_format sniff_ftyp(const uint8_t *b, size_t len)
{
	static const char *const avif[] = {"avif", "avis", "avio", NULL};
	static const char *const heif[] = {"heic", "heix", "hevc",
					   "hevx", "heim", "heis",
					   "mif1", "msf1", NULL};
	if (len < 12 || memcmp(b + 4, "ftyp", 4) != 0)
		return PM_FMT_UNKNOWN;
	uint32_t box = be32(b);
	if (box < 12)
		return PM_FMT_UNKNOWN;
	size_t end = box;
	if (end > len)
		end = len;
	if (end > SNIFF_WINDOW)
		end = SNIFF_WINDOW;
	bool is_avif = brand_is(b + 8, avif), is_heif = brand_is(b + 8, heif);
	/* compatible brands start after the 4-byte minor version */
	for (size_t off = 16; off + 4 <= end; off += 4) {
		is_avif = is_avif || brand_is(b + off, avif);
		is_heif = is_heif || brand_is(b + off, heif);
	}
	if (is_avif)
		return PM_FMT_AVIF;
	return is_heif ? PM_FMT_HEIF : PM_FMT_UNKNOWN;
}

static bool is_xml_space(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* "<svg" followed by a name delimiter (or the end of the buffer). */
static bool svg_tag_at(const uint8_t *b, size_t len, size_t i)
{
	if (!has(b, len, i, "<svg", 4))
		return false;
	if (i + 4 >= len)
		return true;
	uint8_t c = b[i + 4];
	return is_xml_space(c) || c == '>' || c == '/';
}

/* Optional UTF-8 BOM and whitespace, then "<svg", or a prologue ("<?xml",
 * "<!DOCTYPE", "<!--") with "<svg" within the first 256 bytes. */
static bool sniff_svg(const uint8_t *b, size_t len)
{
	static const uint8_t bom[3] = {0xEF, 0xBB, 0xBF};
	size_t end = len < SVG_WINDOW ? len : SVG_WINDOW;
	size_t i = has(b, end, 0, bom, 3) ? 3 : 0;
	while (i < end && is_xml_space(b[i]))
		i++;
	if (svg_tag_at(b, end, i))
		return true;
	if (!has(b, end, i, "<?xml", 5) && !has(b, end, i, "<!DOCTYPE", 9) &&
	    !has(b, end, i, "<!--", 4))
		return false;
	for (; i + 4 <= end; i++)
		if (svg_tag_at(b, end, i))
			return true;
	return false;
}

pm_format pm_sniff(const void *buf, size_t len)
{
	static const uint8_t jpeg[3] = {0xFF, 0xD8, 0xFF};
	static const uint8_t png[8] = {0x89, 'P',  'N',	 'G',
				       0x0D, 0x0A, 0x1A, 0x0A};
	static const uint8_t jxl_box[12] = {0x00, 0x00, 0x00, 0x0C, 'J',  'X',
					    'L',  ' ',	0x0D, 0x0A, 0x87, 0x0A};
	static const uint8_t jxl_cs[2] = {0xFF, 0x0A};
	static const uint8_t tiff_ii[4] = {'I', 'I', 0x2A, 0x00};
	static const uint8_t tiff_mm[4] = {'M', 'M', 0x00, 0x2A};
	static const uint8_t bigtiff_ii[4] = {'I', 'I', 0x2B, 0x00};
	static const uint8_t bigtiff_mm[4] = {'M', 'M', 0x00, 0x2B};
	const uint8_t *b = buf;

	if (!b || len == 0)
		return PM_FMT_UNKNOWN;
	if (has(b, len, 0, jpeg, 3))
		return PM_FMT_JPEG;
	if (has(b, len, 0, png, 8))
		return PM_FMT_PNG;
	if (has(b, len, 0, "GIF87a", 6) || has(b, len, 0, "GIF89a", 6))
		return PM_FMT_GIF;
	if (has(b, len, 0, "RIFF", 4) && has(b, len, 8, "WEBP", 4))
		return PM_FMT_WEBP;
	if (has(b, len, 0, tiff_ii, 4) || has(b, len, 0, tiff_mm, 4) ||
	    has(b, len, 0, bigtiff_ii, 4) || has(b, len, 0, bigtiff_mm, 4))
		return PM_FMT_TIFF;
	if (has(b, len, 0, jxl_box, 12) || has(b, len, 0, jxl_cs, 2))
		return PM_FMT_JXL;
	/* before ICO: a 256-byte ftyp box also starts 00 00 01 00 */
	pm_format f = sniff_ftyp(b, len);
	if (f != PM_FMT_UNKNOWN)
		return f;
	if (plausible_bmp(b, len))
		return PM_FMT_BMP;
	if (has(b, len, 0, "%PDF-", 5))
		return PM_FMT_PDF;
	if (has(b, len, 0, "8BPS", 4) && len >= 6 && b[4] == 0 &&
	    (b[5] == 1 || b[5] == 2))
		return PM_FMT_PSD;
	if (plausible_ico(b, len))
		return PM_FMT_ICO;
	if (sniff_svg(b, len))
		return PM_FMT_SVG;
	return PM_FMT_UNKNOWN;
}

const char *pm_format_name(pm_format f)
{
	if ((unsigned)f >= PM_FMT_COUNT)
		return fmt_table[PM_FMT_UNKNOWN].name;
	return fmt_table[f].name;
}

static bool ascii_ieq(const char *a, const char *b)
{
	for (; *a && *b; a++, b++) {
		char x = *a, y = *b;
		if (x >= 'A' && x <= 'Z')
			x = (char)(x - 'A' + 'a');
		if (y >= 'A' && y <= 'Z')
			y = (char)(y - 'A' + 'a');
		if (x != y)
			return false;
	}
	return *a == *b;
}

/* Case-insensitive; besides the names also accepts "jpg", "tif", "heic". */
pm_format pm_format_parse(const char *s)
{
	if (!s)
		return PM_FMT_UNKNOWN;
	if (ascii_ieq(s, "jpg"))
		return PM_FMT_JPEG;
	if (ascii_ieq(s, "tif"))
		return PM_FMT_TIFF;
	if (ascii_ieq(s, "heic"))
		return PM_FMT_HEIF;
	for (int f = PM_FMT_UNKNOWN + 1; f < PM_FMT_COUNT; f++)
		if (ascii_ieq(s, fmt_table[f].name))
			return (pm_format)f;
	return PM_FMT_UNKNOWN;
}

bool pm_format_decodable(pm_format f)
{
	return (unsigned)f < PM_FMT_COUNT && fmt_table[f].decodable;
}

const char *pm_format_mime(pm_format f)
{
	if ((unsigned)f >= PM_FMT_COUNT)
		return fmt_table[PM_FMT_UNKNOWN].mime;
	return fmt_table[f].mime;
}
