/* progress.c — progress bar and plain progress lines on stderr.
 *
 * The rate is a moving one (items over the last ~5 s), so the ETA follows
 * the current speed rather than the average since start.
 * Threads: the owning thread only.
 */
#include "engine/progress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "core/util.h"

#define WINDOW 64

struct pm_progress {
	int bar;	 /* draw a bar (TTY) rather than lines */
	double interval; /* seconds between plain lines */
	double last_print;
	double t[WINDOW]; /* ring of (time, processed) samples */
	long long n[WINDOW];
	int head, count;
	double last_sample;
	int drew; /* a bar line is on screen */
};

pm_progress *pm_progress_new(int mode, double interval)
{
	pm_progress *p;

	if (mode == 0)
		return NULL;
	p = calloc(1, sizeof *p);
	if (!p)
		return NULL;
	p->bar = mode == 1 && isatty(2);
	p->interval = interval > 0 ? interval : 5.0;
	p->last_print = 0;
	return p;
}

void pm_progress_free(pm_progress *p)
{
	free(p);
}

const char *pm_fmt_duration(double s, char *buf, int n)
{
	long t = (long)(s + 0.5);

	if (s < 0 || s > 1e8)
		snprintf(buf, (size_t)n, "--");
	else if (t >= 3600)
		snprintf(buf, (size_t)n, "%ldh%02ldm", t / 3600, t / 60 % 60);
	else if (t >= 60)
		snprintf(buf, (size_t)n, "%ldm%02lds", t / 60, t % 60);
	else
		snprintf(buf, (size_t)n, "%lds", t);
	return buf;
}

static double rate(pm_progress *p, double now, long long processed)
{
	/* Sample at most every 100 ms; rate over the oldest kept sample. */
	if (p->count == 0 || now - p->last_sample >= 0.1) {
		p->t[p->head] = now;
		p->n[p->head] = processed;
		p->head = (p->head + 1) % WINDOW;
		if (p->count < WINDOW)
			p->count++;
		p->last_sample = now;
	}
	int oldest = (p->head - p->count + WINDOW) % WINDOW;
	double dt = now - p->t[oldest];
	if (dt <= 0.2)
		return now > 0 ? processed / now : 0;
	return (processed - p->n[oldest]) / dt;
}

void pm_progress_update(pm_progress *p, const pm_progress_state *s, bool final)
{
	long long processed = s->done + s->failed;
	long long todo = s->total - s->skipped;
	double r = rate(p, s->elapsed, processed);
	char eta[32], el[32], line[256];
	double frac = todo > 0 ? (double)processed / (double)todo : 0;

	if (frac > 1)
		frac = 1;
	if (final && processed == 0 && !p->drew)
		return; /* nothing was processed: the summary says so */
	if (!final && s->elapsed - p->last_print < (p->bar ? 0.1 : p->interval))
		return;
	p->last_print = s->elapsed;
	if (s->total_known && r > 0)
		pm_fmt_duration((double)(todo - processed) / r, eta,
				sizeof eta);
	else
		snprintf(eta, sizeof eta, "--");
	pm_fmt_duration(s->elapsed, el, sizeof el);
	if (p->bar) {
		struct winsize ws;
		int width = 80, barw;
		char bar[128];
		int fill;
		if (ioctl(2, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 40)
			width = ws.ws_col;
		snprintf(line, sizeof line,
			 " %lld/%lld%s  %.1f img/s  ETA %s  failed %lld  "
			 "dup %lld",
			 processed, todo > 0 ? todo : 0,
			 s->total_known ? "" : "+", r, eta, s->failed, s->dups);
		barw = width - (int)strlen(line) - 4;
		if (barw > 50)
			barw = 50;
		if (barw < 10)
			barw = 10;
		fill = (int)(frac * barw);
		for (int i = 0; i < barw; i++)
			bar[i] = i < fill ? '#' : (i == fill ? '>' : '.');
		bar[barw] = '\0';
		fprintf(stderr, "\r\033[K[%s]%s", bar, line);
		p->drew = 1;
		if (final)
			fputc('\n', stderr);
	} else {
		fprintf(stderr,
			"pixmill: progress %lld/%lld%s items (%.0f%%), %.1f "
			"img/s, elapsed %s, ETA %s, failed %lld, dup %lld, "
			"skipped %lld\n",
			processed, todo > 0 ? todo : 0,
			s->total_known ? "" : "+", frac * 100, r, el, eta,
			s->failed, s->dups, s->skipped);
	}
	fflush(stderr);
}
