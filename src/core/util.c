/* util.c — hashing, clocks, sizes, process memory, durable writes, logging.
 *
 * Threads: any. The logger holds a mutex only around one fputs.
 */
#include "core/util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

size_t pm_utf8_len(const unsigned char *p, size_t n)
{
	unsigned c = p[0];
	size_t l;
	uint32_t cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		l = 2, cp = c & 0x1f;
	else if (c >= 0xe0 && c <= 0xef)
		l = 3, cp = c & 0x0f;
	else if (c >= 0xf0 && c <= 0xf4)
		l = 4, cp = c & 0x07;
	else
		return 0;
	if (n < l)
		return 0;
	for (size_t i = 1; i < l; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if ((l == 3 && cp < 0x800) ||
	    (l == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return l;
}

int pm_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

void pm_sha256_hex(const void *buf, size_t len, char hex[65])
{
	static const char digits[] = "0123456789abcdef";
	unsigned char md[32];
	unsigned int n = 0;

	/* EVP picks the SHA-NI / AVX2 implementation where the CPU has it. */
	EVP_Digest(buf, len, md, &n, EVP_sha256(), NULL);
	for (int i = 0; i < 32; i++) {
		hex[2 * i] = digits[md[i] >> 4];
		hex[2 * i + 1] = digits[md[i] & 15];
	}
	hex[64] = '\0';
}

int pm_cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, int ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return pthread_cond_timedwait(cv, mu, &ts);
}

double pm_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

double pm_wall(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int g_workers_hint; /* 0 = none; read and written atomically */

void pm_set_workers_hint(int workers)
{
	__atomic_store_n(&g_workers_hint, workers, __ATOMIC_RELAXED);
}

int pm_cores_per_worker(void)
{
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	int w = __atomic_load_n(&g_workers_hint, __ATOMIC_RELAXED);

	if (cores < 1)
		cores = 1;
	if (w < 1 || w > cores)
		w = w < 1 ? 1 : (int)cores;
	return (int)(cores / w);
}

double pm_cpu_time(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

double pm_parse_duration(const char *s)
{
	char *end;
	double v, mul = 1;
	size_t digits = 0, dots = 0, i;

	if (!s)
		return -1;
	/* decimal digits with at most one point: no sign, exponent, hex,
	 * inf or space, which strtod would take */
	for (i = 0; isdigit((unsigned char)s[i]) || s[i] == '.'; i++) {
		if (s[i] == '.')
			dots++;
		else
			digits++;
	}
	if (digits == 0 || dots > 1)
		return -1;
	errno = 0;
	v = strtod(s, &end);
	if (errno || end != s + i || !isfinite(v) || v < 0)
		return -1;
	switch (*end) {
	case '\0':
		break;
	case 's':
		end++;
		break;
	case 'm':
		mul = 60;
		end++;
		break;
	case 'h':
		mul = 3600;
		end++;
		break;
	case 'd':
		mul = 86400;
		end++;
		break;
	default:
		return -1;
	}
	if (*end || v * mul > 100.0 * 365 * 86400)
		return -1;
	return v * mul;
}

int64_t pm_parse_size(const char *s)
{
	char *end;
	double v;
	double mul = 1;

	if (!s || !*s)
		return -1;
	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || v < 0 || !isfinite(v))
		return -1;
	while (*end == ' ')
		end++;
	switch (*end) {
	case '\0':
		break;
	case 'k':
	case 'K':
		mul = 1024.0;
		end++;
		break;
	case 'm':
	case 'M':
		mul = 1024.0 * 1024;
		end++;
		break;
	case 'g':
	case 'G':
		mul = 1024.0 * 1024 * 1024;
		end++;
		break;
	case 't':
	case 'T':
		mul = 1024.0 * 1024 * 1024 * 1024;
		end++;
		break;
	case 'b':
	case 'B':
		break;
	default:
		return -1;
	}
	if (*end == 'i')
		end++;
	if (*end == 'B' || *end == 'b')
		end++;
	if (*end)
		return -1;
	v *= mul;
	if (v > 9.0e18)
		return -1;
	return (int64_t)v;
}

const char *pm_fmt_size(uint64_t bytes, char *buf, size_t n)
{
	static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double v = (double)bytes;
	int u = 0;

	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, n, "%llu B", (unsigned long long)bytes);
	else
		snprintf(buf, n, "%.1f %s", v, units[u]);
	return buf;
}

uint64_t pm_peak_rss(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru))
		return 0;
	return (uint64_t)ru.ru_maxrss * 1024;
}

uint64_t pm_cur_rss(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	unsigned long long size = 0, res = 0;

	if (!f)
		return 0;
	if (fscanf(f, "%llu %llu", &size, &res) != 2)
		res = 0;
	fclose(f);
	return res * (uint64_t)sysconf(_SC_PAGESIZE);
}

pm_status pm_mkdirs(const char *path, pm_err *err)
{
	char buf[4096];
	size_t n = strlen(path);

	if (n == 0 || n >= sizeof buf)
		return pm_fail(err, PM_ERR_IO, "bad folder path");
	memcpy(buf, path, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		char c = buf[i];
		buf[i] = '\0';
		if (mkdir(buf, 0755) && errno != EEXIST)
			return pm_fail(err, PM_ERR_IO, "mkdir %s: %s", buf,
				       strerror(errno));
		buf[i] = c;
	}
	return PM_OK;
}

pm_status pm_write_tmp_fd(int fd, const char *tmp, const void *buf, size_t len,
			  bool sync, pm_err *err)
{
	const char *p = buf;
	size_t left = len;
	int e;

	while (left > 0) {
		ssize_t w = write(fd, p, left);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			e = errno;
			close(fd);
			unlink(tmp);
			return pm_fail(err, PM_ERR_IO, "write %s: %s", tmp,
				       strerror(e));
		}
		p += w;
		left -= (size_t)w;
	}
	if (sync && fsync(fd)) {
		e = errno;
		close(fd);
		unlink(tmp);
		return pm_fail(err, PM_ERR_IO, "fsync %s: %s", tmp,
			       strerror(e));
	}
	if (close(fd)) {
		e = errno;
		unlink(tmp);
		return pm_fail(err, PM_ERR_IO, "close %s: %s", tmp,
			       strerror(e));
	}
	return PM_OK;
}

pm_status pm_write_file_atomic(const char *path, const char *tmp_dir,
			       const void *buf, size_t len, bool sync,
			       pm_err *err)
{
	char tmp[4200];
	int fd;
	pm_status s;
	static unsigned long counter;
	unsigned long c = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);

	if (tmp_dir)
		snprintf(tmp, sizeof tmp, "%s/%ld.%lu.tmp", tmp_dir,
			 (long)getpid(), c);
	else
		snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%lu", path,
			 (long)getpid(), c);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return pm_fail(err, PM_ERR_IO, "create %s: %s", tmp,
			       strerror(errno));
	s = pm_write_tmp_fd(fd, tmp, buf, len, sync, err);
	if (s)
		return s;
	if (rename(tmp, path)) {
		int e = errno;
		unlink(tmp);
		return pm_fail(err, PM_ERR_IO, "rename to %s: %s", path,
			       strerror(e));
	}
	return PM_OK;
}

pm_status pm_read_file(const char *path, uint64_t max, void **out, size_t *len,
		       pm_err *err)
{
	int fd;
	struct stat st;
	char *buf;
	size_t got = 0;

	*out = NULL;
	*len = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return pm_fail(err,
			       errno == ENOENT ? PM_ERR_NOT_FOUND : PM_ERR_IO,
			       "open %s: %s", path, strerror(errno));
	if (fstat(fd, &st)) {
		int e = errno;
		close(fd);
		return pm_fail(err, PM_ERR_IO, "stat %s: %s", path,
			       strerror(e));
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return pm_fail(err, PM_ERR_IO, "%s is not a regular file",
			       path);
	}
	if ((uint64_t)st.st_size > max) {
		close(fd);
		return pm_fail(err, PM_ERR_TOO_LARGE,
			       "%lld bytes is over the limit of %llu",
			       (long long)st.st_size, (unsigned long long)max);
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		close(fd);
		return pm_fail(err, PM_ERR_NOMEM, "out of memory reading %s",
			       path);
	}
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;
			free(buf);
			close(fd);
			return pm_fail(err, PM_ERR_IO, "read %s: %s", path,
				       strerror(e));
		}
		if (r == 0)
			break; /* the file shrank under us: take what is there
				*/
		got += (size_t)r;
	}
	close(fd);
	buf[got] = '\0';
	*out = buf;
	*len = got;
	return PM_OK;
}

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static pm_log_level log_min = PM_LOG_INFO;
static int log_colour = -1;

void pm_log_setup(pm_log_level min, int colour)
{
	log_min = min;
	log_colour = colour;
}

bool pm_log_colour(void)
{
	if (log_colour < 0) {
		const char *nc = getenv("NO_COLOR");
		log_colour = isatty(2) && !(nc && *nc);
	}
	return log_colour;
}

void pm_log(pm_log_level lvl, const char *fmt, ...)
{
	static const char *names[] = {"debug", "info", "warning", "error"};
	static const char *colours[] = {"\033[2m", "", "\033[33m", "\033[31m"};
	char line[2048];
	va_list ap;
	int n;

	if (lvl < log_min)
		return;
	va_start(ap, fmt);
	n = vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	(void)n;
	pthread_mutex_lock(&log_mu);
	if (pm_log_colour() && lvl != PM_LOG_INFO)
		fprintf(stderr, "%spixmill: %s:\033[0m %s\n", colours[lvl],
			names[lvl], line);
	else if (lvl == PM_LOG_INFO)
		fprintf(stderr, "pixmill: %s\n", line);
	else
		fprintf(stderr, "pixmill: %s: %s\n", names[lvl], line);
	pthread_mutex_unlock(&log_mu);
}
