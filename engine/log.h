/* The library's only way to print: one whole line per call. */
#ifndef KUMO_ENGINE_LOG_H
#define KUMO_ENGINE_LOG_H

#include <kumo/kumo.h>

void kumo__log(kumo_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void kumo__vlog(kumo_log_level level, const char *fmt, va_list ap);
/* Writes a preformatted line (no trailing newline) through the sink. */
void kumo__log_line(kumo_log_level level, const char *line);
bool kumo__log_enabled(kumo_log_level level);
/* "YYYY-MM-DD HH:MM:SS.uuuuuu UTC" into buf (>= 32 bytes). */
void kumo__utc_now(char *buf, size_t len);

#endif
