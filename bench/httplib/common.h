/* Shared by the three benchmark servers: argument parsing and the /health
 * body, built per request as a real health handler would (snprintf of a few
 * fields), so every library does the same work per request. */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static atomic_ullong bench_requests;
static double bench_t0;

static double bench_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Writes the /health body into buf; returns its length. */
static int bench_health(char *buf, size_t size)
{
	unsigned long long n =
	    atomic_fetch_add_explicit(&bench_requests, 1, memory_order_relaxed);
	return snprintf(buf, size,
			"{\"status\":\"ok\",\"version\":\"%s\",\"pid\":%d,"
			"\"uptime_s\":%.3f,\"requests\":%llu}",
			"0.0-bench", (int)getpid(), bench_now() - bench_t0,
			n + 1);
}

#define BENCH_WEBP "image/webp"
#define BENCH_JSON "application/json"

#endif
