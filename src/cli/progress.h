/* A one-line progress bar on stderr: label, bar, percent, bytes, rate, ETA. */
#ifndef PN_CLI_PROGRESS_H
#define PN_CLI_PROGRESS_H

#include <stdint.h>

struct progress_bar {
	char label[48];
	uint64_t total, done, start_done;
	uint64_t start_ms, last_ms;
	int last_len;
};

void pn_progress_init(struct progress_bar *p, const char *label, uint64_t total, uint64_t done, uint64_t now_ms);
void pn_progress_add(struct progress_bar *p, uint64_t bytes);
void pn_progress_draw(struct progress_bar *p, uint64_t now_ms);
/* Draws the final state and ends the line. */
void pn_progress_done(struct progress_bar *p);
/* Erases the line (before an error message). */
void pn_progress_clear(struct progress_bar *p);
/* Formats a byte count as "12.3 MiB" into out (16 bytes). */
void pn_format_bytes(uint64_t bytes, char out[16]);

#endif
