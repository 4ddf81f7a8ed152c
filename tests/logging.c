/* kumo_say and the log sink. */
#include "_kt.h"

#include <regex.h>
#include <stdio.h>
#include <string.h>

#define MAX_LINES 64

static struct {
    pthread_mutex_t mu;
    char lines[MAX_LINES][256];
    kumo_log_level levels[MAX_LINES];
    unsigned n;
} cap = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void capture(kumo_log_level level, const char *line, void *arg)
{
    (void)arg;
    pthread_mutex_lock(&cap.mu);
    if (cap.n < MAX_LINES) {
        snprintf(cap.lines[cap.n], sizeof cap.lines[0], "%s", line);
        cap.levels[cap.n] = level;
    }
    cap.n++;
    pthread_mutex_unlock(&cap.mu);
}

/* Lines containing `needle`. */
static unsigned count_lines(const char *needle, char *first, size_t len)
{
    unsigned k = 0;
    pthread_mutex_lock(&cap.mu);
    for (unsigned i = 0; i < cap.n && i < MAX_LINES; i++)
        if (strstr(cap.lines[i], needle)) {
            if (!k && first)
                snprintf(first, len, "%s", cap.lines[i]);
            k++;
        }
    pthread_mutex_unlock(&cap.mu);
    return k;
}

static void say_init(kumo_proc *self, void *st)
{
    kumo_say(self, "hello %d from %s", 42, (const char *)st);
}

KT_TEST(logging, say_format_level_and_sink)
{
    kt_env env = kt_env_start(kt_shards);
    kumo_log_set_sink(capture, NULL);

    kumo_log_set_level(KUMO_LOG_INFO);
    kumo_ref ref;
    kumo_pid p = kt_spawn(env.node, env.ib,
                          &(kumo_spawn_opts){.shard = KT_OTHER(kt_shards), .monitor = &ref},
                          say_init, "info");
    kt_down(env.ib, p, KUMO_NORMAL, "");
    char line[256] = "";
    cr_assert_eq(count_lines("hello 42 from info", line, sizeof line), 1);
    char pid[80], pattern[256];
    kumo_pid_str(p, pid, sizeof pid);
    snprintf(pattern, sizeof pattern,
             "^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{6} UTC pid://%s SAY "
             "hello 42 from info$",
             pid);
    regex_t re;
    cr_assert_eq(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
    cr_assert_eq(regexec(&re, line, 0, NULL, 0), 0, "say line \"%s\" does not match \"%s\"", line,
                 pattern);
    regfree(&re);

    /* Below the level: dropped. */
    kumo_log_set_level(KUMO_LOG_WARN);
    p = kt_spawn(env.node, env.ib,
                 &(kumo_spawn_opts){.shard = KT_OTHER(kt_shards), .monitor = &ref}, say_init,
                 "warn");
    kt_down(env.ib, p, KUMO_NORMAL, "");
    cr_assert_eq(count_lines("from warn", NULL, 0), 0, "a SAY line got through at level WARN");

    kumo_log_set_sink(NULL, NULL);
    kt_env_stop(&env);
}

KT_TEST(logging, engine_lines_reach_the_sink)
{
    kumo_log_set_sink(capture, NULL);
    kumo_log_set_level(KUMO_LOG_DEBUG);
    kumo_node_config cfg = {.shards = kt_shards, .no_pin = true, .spin_ns = 20000};
    kumo_node *extra = NULL;
    cr_assert_eq(kumo_node_start(&cfg, &extra), 0);
    kumo_node_free(extra);
    kumo_log_set_sink(NULL, NULL);
    /* kt_start checks the node above for leaks as part of its baseline;
     * this test's own node is the checked one. */
    unsigned n;
    pthread_mutex_lock(&cap.mu);
    n = cap.n;
    pthread_mutex_unlock(&cap.mu);
    cr_assert_gt(n, 0, "starting a node at DEBUG logged nothing");
    pthread_mutex_lock(&cap.mu);
    for (unsigned i = 0; i < n && i < MAX_LINES; i++) {
        cr_assert_eq(strchr(cap.lines[i], '\n'), NULL, "a log line holds a newline");
        cr_assert_geq(cap.levels[i], KUMO_LOG_DEBUG);
    }
    pthread_mutex_unlock(&cap.mu);
    kumo_node *node = kt_start(kt_shards);
    kt_stop(node);
}
