/* util.h — small helpers shared by every module: hashing, clocks, sizes,
 * process memory, durable file writes, logging.
 *
 * Threads: all functions may be called from any thread. pm_log serialises
 * its writes to stderr with a lock so lines never interleave.
 */
#ifndef PM_UTIL_H
#define PM_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#include <pthread.h>

/* pthread_cond_timedwait for at most ms milliseconds from now (the caller
 * holds mu). Returns like pthread_cond_timedwait (ETIMEDOUT on timeout). */
int pm_cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, int ms);

/* SHA-256 of buf as 64 lowercase hex digits plus NUL in hex (65 bytes). */
void pm_sha256_hex(const void *buf, size_t len, char hex[65]);
/* The value of one hex digit (either case), or -1 if c is not one. */
int pm_hexval(int c);
/* Length (1-4) of the valid UTF-8 sequence at p, of which n bytes may be
 * read (n >= 1); 0 if it is invalid (overlong, surrogate, past U+10FFFF,
 * truncated). A NUL byte is a sequence of length 1. */
size_t pm_utf8_len(const unsigned char *p, size_t n);

/* Monotonic seconds (CLOCK_MONOTONIC) and wall-clock unix seconds. */
double pm_now(void);
double pm_wall(void);
/* CPU seconds (user + system) used by the whole process so far, all its
 * threads included (CLOCK_PROCESS_CPUTIME_ID). */
double pm_cpu_time(void);

/* A hint for stages that run threads of their own (ONNX Runtime's
 * intra-op pool): how many workers the engine runs at once. The run engine
 * and the server set it when they start their workers; any thread. */
void pm_set_workers_hint(int workers);
/* Online cores divided among the hinted workers (all cores when no hint
 * was given), at least 1. Any thread. */
int pm_cores_per_worker(void);

/* Parses "512", "64k", "256M", "2G", "1.5GiB" (powers of 1024) into bytes;
 * -1 if malformed. */
int64_t pm_parse_size(const char *s);
/* Parses a duration: a decimal number (digits, at most one point) of
 * seconds with an optional unit s, m, h or d ("90", "30m", "1.5h",
 * "7d"), at most 100 years, into seconds; -1 if malformed. */
double pm_parse_duration(const char *s);
/* Formats bytes as "12.3 MiB" into buf. */
const char *pm_fmt_size(uint64_t bytes, char *buf, size_t n);

/* Peak resident set size of the process so far, in bytes. */
uint64_t pm_peak_rss(void);
/* Current resident set size, in bytes (0 if unknown). */
uint64_t pm_cur_rss(void);

/* mkdir -p with mode 0755. */
pm_status pm_mkdirs(const char *path, pm_err *err);

/* Writes len bytes of buf to fd, the new temporary file tmp, then fsyncs
 * it (if sync) and closes it. Takes fd: it is closed on every path; on a
 * failure tmp is removed too. What pm_write_file_atomic and the output
 * store do before they rename tmp into place. */
pm_status pm_write_tmp_fd(int fd, const char *tmp, const void *buf, size_t len,
			  bool sync, pm_err *err);
/* Writes buf to path durably: a temporary file in tmp_dir (NULL = path's
 * own folder; it must be on the same filesystem), fsync when sync is true,
 * then rename over path. The folder must exist. Readers never see a
 * partial file, and a crash leaves at most a stray file in tmp_dir. */
pm_status pm_write_file_atomic(const char *path, const char *tmp_dir,
			       const void *buf, size_t len, bool sync,
			       pm_err *err);

/* Reads a whole file, at most max bytes (PM_ERR_TOO_LARGE past that).
 * *out is malloc'd and owned by the caller. */
pm_status pm_read_file(const char *path, uint64_t max, void **out, size_t *len,
		       pm_err *err);

typedef enum pm_log_level {
	PM_LOG_DEBUG,
	PM_LOG_INFO,
	PM_LOG_WARN,
	PM_LOG_ERROR
} pm_log_level;

/* Minimum level printed (default INFO) and whether to colour (default: if
 * stderr is a TTY and NO_COLOR is unset). */
void pm_log_setup(pm_log_level min, int colour);
bool pm_log_colour(void);
void pm_log(pm_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
