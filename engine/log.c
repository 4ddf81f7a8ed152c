#include "engine/log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Process-wide by nature (a logger is configured once per program); written
 * rarely, read with relaxed atomics. */
static _Atomic int log_level = -1;
static void (*_Atomic log_sink)(kumo_log_level, const char *, void *);
static void *_Atomic log_sink_arg;

static int level_from_env(void)
{
    const char *e = getenv("KUMO_LOG");
    if (!e)
        return KUMO_LOG_INFO;
    if (!strcmp(e, "debug"))
        return KUMO_LOG_DEBUG;
    if (!strcmp(e, "warn"))
        return KUMO_LOG_WARN;
    if (!strcmp(e, "error"))
        return KUMO_LOG_ERROR;
    return KUMO_LOG_INFO;
}

bool kumo__log_enabled(kumo_log_level level)
{
    int l = atomic_load_explicit(&log_level, memory_order_relaxed);
    if (l < 0) {
        l = level_from_env();
        atomic_store_explicit(&log_level, l, memory_order_relaxed);
    }
    return (int)level >= l;
}

void kumo_log_set_level(kumo_log_level level)
{
    atomic_store(&log_level, (int)level);
}

void kumo_log_set_sink(void (*sink)(kumo_log_level, const char *, void *), void *arg)
{
    atomic_store(&log_sink_arg, arg);
    atomic_store(&log_sink, sink);
}

void kumo__utc_now(char *buf, size_t len)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(buf, len, "%04d-%02d-%02d %02d:%02d:%02d.%06ld UTC", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000);
}

void kumo__log_line(kumo_log_level level, const char *line)
{
    void (*sink)(kumo_log_level, const char *, void *) = atomic_load(&log_sink);
    if (sink) {
        sink(level, line, atomic_load(&log_sink_arg));
        return;
    }
    /* One write(2) per line so lines from several shards never interleave. */
    size_t n = strlen(line);
    char stackbuf[1024];
    char *buf = n + 1 <= sizeof stackbuf ? stackbuf : malloc(n + 1);
    if (!buf)
        return;
    memcpy(buf, line, n);
    buf[n] = '\n';
    ssize_t w = write(STDERR_FILENO, buf, n + 1);
    (void)w;
    if (buf != stackbuf)
        free(buf);
}

void kumo__vlog(kumo_log_level level, const char *fmt, va_list ap)
{
    if (!kumo__log_enabled(level))
        return;
    static const char *names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
    char ts[48], line[1024];
    kumo__utc_now(ts, sizeof ts);
    int off = snprintf(line, sizeof line, "%s kumo %s ", ts, names[level]);
    vsnprintf(line + off, sizeof line - (size_t)off, fmt, ap);
    kumo__log_line(level, line);
}

void kumo__log(kumo_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kumo__vlog(level, fmt, ap);
    va_end(ap);
}
