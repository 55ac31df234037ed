#include <stdio.h>
#include <string.h>
#include <uv.h>
#include "progress.h"

#define BAR_WIDTH 24

void pn_format_bytes(uint64_t bytes, char out[16])
{
	/* Arrays, not pointers: no relocation, so the table stays in .rodata. */
	static const char units[][4] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double v = (double)bytes;
	int u = 0;
	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(out, 16, "%llu B", (unsigned long long)bytes);
	else
		snprintf(out, 16, "%.1f %s", v, units[u]);
}

void pn_progress_init(struct progress_bar *p, const char *label, uint64_t total, uint64_t done, uint64_t now_ms)
{
	memset(p, 0, sizeof *p);
	snprintf(p->label, sizeof p->label, "%s", label);
	p->total = total;
	p->done = p->start_done = done;
	p->start_ms = p->last_ms = now_ms;
}

void pn_progress_add(struct progress_bar *p, uint64_t bytes) { p->done += bytes; }

void pn_progress_draw(struct progress_bar *p, uint64_t now_ms)
{
	char line[160], done_s[16], total_s[16], rate_s[16];
	double frac = p->total ? (double)p->done / (double)p->total : 1.0;
	if (frac > 1)
		frac = 1;
	int fill = (int)(frac * BAR_WIDTH);
	char bar[BAR_WIDTH + 1];
	for (int i = 0; i < BAR_WIDTH; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[BAR_WIDTH] = 0;
	double secs = (double)(now_ms - p->start_ms) / 1000.0;
	double rate = secs > 0 ? (double)(p->done - p->start_done) / secs : 0;
	pn_format_bytes(p->done, done_s);
	pn_format_bytes(p->total, total_s);
	pn_format_bytes((uint64_t)rate, rate_s);
	char eta[16] = "--";
	if (rate > 0 && p->done < p->total)
		snprintf(eta, sizeof eta, "%.0fs", (double)(p->total - p->done) / rate);
	int n = snprintf(line, sizeof line, "\r%-20.20s [%s] %3.0f%%  %s / %s  %s/s  eta %s", p->label, bar,
			 frac * 100, done_s, total_s, rate_s, eta);
	if (n < 0)
		return;
	int pad = p->last_len > n ? p->last_len - n : 0;
	fprintf(stderr, "%s%*s", line, pad, "");
	fflush(stderr);
	p->last_len = n;
	p->last_ms = now_ms;
}

void pn_progress_done(struct progress_bar *p)
{
	pn_progress_draw(p, uv_hrtime() / 1000000);
	fputc('\n', stderr);
	fflush(stderr);
}

void pn_progress_clear(struct progress_bar *p)
{
	if (p->last_len)
		fprintf(stderr, "\r%*s\r", p->last_len, "");
	fflush(stderr);
}
