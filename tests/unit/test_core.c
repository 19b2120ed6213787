/* test_core.c — unit tests for src/core: status table, queue, sizes,
 * SHA-256, atomic file writes.
 * Threads: main thread plus the producer/consumer threads it starts.
 */
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/queue.h"
#include "core/status.h"
#include "core/util.h"
#include "engine/progress.h"
#include "test.h"

static void test_status(void)
{
	pm_err e;

	CHECK_STR(pm_status_code(PM_OK), "ok");
	CHECK_STR(pm_status_code(PM_ERR_DECODE), "decode_error");
	CHECK_STR(pm_status_code((pm_status)9999), "unknown");
	CHECK_INT(pm_status_exit(PM_ERR_USAGE), 2);
	CHECK_INT(pm_status_exit(PM_ERR_CANCELLED), 130);
	CHECK_INT(pm_status_http(PM_ERR_TOO_LARGE), 413);
	/* every status has a distinct code */
	for (int a = 0; a < PM_STATUS_COUNT; a++)
		for (int b = a + 1; b < PM_STATUS_COUNT; b++)
			CHECK(strcmp(pm_status_code((pm_status)a),
				     pm_status_code((pm_status)b)) != 0);
	CHECK_INT(pm_fail(&e, PM_ERR_IO, "x%d", 42), PM_ERR_IO);
	CHECK_STR(e.msg, "x42");
}

static void test_sizes(void)
{
	char buf[32];

	CHECK_INT(pm_parse_size("512"), 512);
	CHECK_INT(pm_parse_size("64k"), 65536);
	CHECK_INT(pm_parse_size("256M"), 256ll << 20);
	CHECK_INT(pm_parse_size("2G"), 2ll << 30);
	CHECK_INT(pm_parse_size("1.5GiB"), 3ll << 29);
	CHECK_INT(pm_parse_size("10MB"), 10ll << 20);
	CHECK_INT(pm_parse_size(""), -1);
	CHECK_INT(pm_parse_size("12x"), -1);
	CHECK_INT(pm_parse_size("-5"), -1);
	CHECK_INT(pm_parse_size("1e30"), -1);
	CHECK(pm_parse_duration("90") == 90);
	CHECK(pm_parse_duration("45s") == 45);
	CHECK(pm_parse_duration("30m") == 1800);
	CHECK(pm_parse_duration("1.5h") == 5400);
	CHECK(pm_parse_duration("7d") == 7 * 86400);
	CHECK(pm_parse_duration("0") == 0);
	CHECK(pm_parse_duration("") == -1);
	CHECK(pm_parse_duration(NULL) == -1);
	CHECK(pm_parse_duration("-1d") == -1);
	CHECK(pm_parse_duration(" 5") == -1);
	CHECK(pm_parse_duration("5 d") == -1);
	CHECK(pm_parse_duration("5w") == -1);
	CHECK(pm_parse_duration("5dd") == -1);
	CHECK(pm_parse_duration("nan") == -1);
	CHECK(pm_parse_duration("inf") == -1);
	CHECK(pm_parse_duration("1e300") == -1);
	CHECK(pm_parse_duration("36501d") == -1);
	CHECK(pm_parse_duration("0xA") == -1);
	CHECK(pm_parse_duration("1e3s") == -1);
	CHECK(pm_parse_duration("1.2.3") == -1);
	CHECK(pm_parse_duration(".") == -1);
	CHECK(pm_parse_duration(".5d") == 43200);
	CHECK(pm_parse_duration("+5") == -1);
	CHECK_STR(pm_fmt_size(1536, buf, sizeof buf), "1.5 KiB");
	CHECK_STR(pm_fmt_size(12, buf, sizeof buf), "12 B");
}

static void test_sha(void)
{
	char h[65];

	pm_sha256_hex("abc", 3, h);
	CHECK_STR(h,
		  "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f2"
		  "0015ad");
	pm_sha256_hex("", 0, h);
	CHECK_STR(h,
		  "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b78"
		  "52b855");
}

static void test_files(void)
{
	char dir[] = "/tmp/pmcoreXXXXXX", path[512], sub[256];
	void *buf;
	size_t len;
	pm_err e;

	CHECK(mkdtemp(dir) != NULL);
	snprintf(sub, sizeof sub, "%s/a/b/c", dir);
	CHECK_INT(pm_mkdirs(sub, &e), PM_OK);
	snprintf(path, sizeof path, "%s/f.bin", sub);
	CHECK_INT(pm_write_file_atomic(path, NULL, "hello", 5, true, &e),
		  PM_OK);
	CHECK_INT(pm_write_file_atomic(path, dir, "bye", 3, false, &e), PM_OK);
	CHECK_INT(pm_read_file(path, 100, &buf, &len, &e), PM_OK);
	CHECK_INT(len, 3);
	CHECK(memcmp(buf, "bye", 3) == 0);
	free(buf);
	CHECK_INT(pm_read_file(path, 2, &buf, &len, &e), PM_ERR_TOO_LARGE);
	snprintf(path, sizeof path, "%s/missing", dir);
	CHECK_INT(pm_read_file(path, 100, &buf, &len, &e), PM_ERR_NOT_FOUND);
	CHECK_INT(pm_read_file(dir, 100, &buf, &len, &e), PM_ERR_IO);
	CHECK(pm_peak_rss() > 0);
	CHECK(pm_cur_rss() > 0);
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	CHECK_INT(system(cmd), 0);
}

#define N_ITEMS 20000
static pm_queue *q;
static long consumed_sum;
static pthread_mutex_t sum_mu = PTHREAD_MUTEX_INITIALIZER;

static void *producer(void *arg)
{
	long base = (long)arg;

	for (long i = 1; i <= N_ITEMS; i++)
		if (pm_queue_push(q, (void *)(base + i)))
			break;
	return NULL;
}

static void *consumer(void *arg)
{
	void *it;
	long s = 0;

	(void)arg;
	while ((it = pm_queue_pop(q)))
		s += (long)it;
	pthread_mutex_lock(&sum_mu);
	consumed_sum += s;
	pthread_mutex_unlock(&sum_mu);
	return NULL;
}

static void test_queue(void)
{
	pthread_t p[3], c[3];
	long want = 0;

	CHECK(pm_queue_new(0) == NULL);
	q = pm_queue_new(2);
	CHECK_INT(pm_queue_push(q, (void *)1), PM_OK);
	CHECK_INT(pm_queue_push(q, (void *)2), PM_OK);
	CHECK_INT(pm_queue_len(q), 2);
	CHECK(pm_queue_pop_timeout(q, 10) == (void *)1);
	CHECK(pm_queue_pop(q) == (void *)2);
	CHECK(pm_queue_pop_timeout(q, 20) == NULL); /* timeout */
	CHECK(!pm_queue_done(q));
	pm_queue_close(q);
	CHECK(pm_queue_done(q));
	CHECK_INT(pm_queue_push(q, (void *)3), PM_ERR_CANCELLED);
	CHECK(pm_queue_pop(q) == NULL);
	pm_queue_free(q);

	/* 3 producers, 3 consumers through a queue of 4: nothing lost */
	q = pm_queue_new(4);
	consumed_sum = 0;
	for (long i = 0; i < 3; i++) {
		pthread_create(&p[i], NULL, producer, (void *)(i * 1000000));
		pthread_create(&c[i], NULL, consumer, NULL);
	}
	for (int i = 0; i < 3; i++)
		pthread_join(p[i], NULL);
	pm_queue_close(q);
	for (int i = 0; i < 3; i++)
		pthread_join(c[i], NULL);
	for (long i = 0; i < 3; i++)
		want +=
		    i * 1000000L * N_ITEMS + (long)N_ITEMS * (N_ITEMS + 1) / 2;
	CHECK_INT(consumed_sum, want);
	pm_queue_free(q);
}

static void test_progress(void)
{
	char b[32];

	CHECK_STR(pm_fmt_duration(0, b, sizeof b), "0s");
	CHECK_STR(pm_fmt_duration(59.4, b, sizeof b), "59s");
	CHECK_STR(pm_fmt_duration(187, b, sizeof b), "3m07s");
	CHECK_STR(pm_fmt_duration(3720, b, sizeof b), "1h02m");
	CHECK_STR(pm_fmt_duration(-1, b, sizeof b), "--");
	CHECK(pm_progress_new(0, 1) == NULL);
}

/* The workers hint: the cores are shared out among the workers. */
static void test_workers_hint(void)
{
	int cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
	double c0 = pm_cpu_time();
	volatile double x = 0;

	CHECK_INT(pm_cores_per_worker(), cores); /* no hint: all */
	pm_set_workers_hint(1);
	CHECK_INT(pm_cores_per_worker(), cores);
	pm_set_workers_hint(cores);
	CHECK_INT(pm_cores_per_worker(), 1);
	pm_set_workers_hint(cores * 4); /* more workers than cores */
	CHECK_INT(pm_cores_per_worker(), 1);
	pm_set_workers_hint(0);
	CHECK_INT(pm_cores_per_worker(), cores);
	/* process CPU time moves forward with work */
	for (int i = 0; i < 20000000; i++)
		x += i * 0.5;
	CHECK(pm_cpu_time() > c0);
}

int main(void)
{
	test_progress();
	test_status();
	test_sizes();
	test_sha();
	test_files();
	test_queue();
	test_workers_hint();
	TEST_DONE();
}
