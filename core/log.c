/* Logging: one level shared by the process, one optional hook. */
#include "core/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "plexus/error.h"

#define LOG_LINE_MAX 1024

int px_log_level_cur = PX_LOG_WARN;

static px_log_hook log_hook;
static void *log_hook_user;

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};
static const char *const level_tags[] = {"DEBUG", "INFO", "WARN", "ERROR", "OFF"};

static int level_valid(int level)
{
    return level >= PX_LOG_DEBUG && level <= PX_LOG_OFF;
}

static int level_parse(const char *s)
{
    for (int i = PX_LOG_DEBUG; i <= PX_LOG_OFF; i++)
        if (strcasecmp(s, level_names[i]) == 0)
            return i;
    if (strcasecmp(s, "warning") == 0)
        return PX_LOG_WARN;
    return -1;
}

/* A constructor rather than a lazy check in PX_LOG_AT, so the disabled-level
 * fast path stays one load and a branch. */
__attribute__((constructor)) static void log_init_from_env(void)
{
    const char *env = getenv("PX_LOG");
    if (env == NULL || *env == '\0')
        return;
    int level = level_parse(env);
    if (level < 0) {
        fprintf(stderr, "plexus[WARN] PX_LOG=%s is not one of debug|info|warn|error|off\n", env);
        return;
    }
    __atomic_store_n(&px_log_level_cur, level, __ATOMIC_RELAXED);
}

int px_log_set_level(px_log_level level)
{
    if (!level_valid((int)level))
        return -PX_EINVAL;
    __atomic_store_n(&px_log_level_cur, (int)level, __ATOMIC_RELAXED);
    return 0;
}

px_log_level px_log_get_level(void)
{
    return (px_log_level)__atomic_load_n(&px_log_level_cur, __ATOMIC_RELAXED);
}

void px_log_set_hook(px_log_hook hook, void *user)
{
    __atomic_store_n(&log_hook_user, user, __ATOMIC_RELAXED);
    __atomic_store_n(&log_hook, hook, __ATOMIC_RELEASE);
}

const char *px_log_level_name(px_log_level level)
{
    return level_valid((int)level) ? level_names[level] : "?";
}

/* Build paths are absolute and long; the file name is enough because each
 * concept lives in exactly one file. */
static const char *file_base(const char *file)
{
    const char *slash = file ? strrchr(file, '/') : NULL;
    if (file == NULL)
        return "?";
    return slash ? slash + 1 : file;
}

/* Mark a cut line so nobody mistakes it for the whole message. */
static void mark_truncated(char *line, size_t size)
{
    static const char mark[] = "...";
    memcpy(line + size - sizeof(mark), mark, sizeof(mark));
}

void px_log_vwrite(px_log_level level, const char *file, int line, const char *fmt, va_list ap)
{
    if (!level_valid((int)level) || level == PX_LOG_OFF)
        return;
    int saved_errno = errno; /* callers log between a failing call and reading errno */
    char msg[LOG_LINE_MAX];
    int n =
        snprintf(msg, sizeof(msg), "plexus[%s] %s:%d: ", level_tags[level], file_base(file), line);
    if (n >= 0 && (size_t)n < sizeof(msg)) {
        int m = vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
        if (m < 0)
            msg[n] = '\0';
        else if ((size_t)m >= sizeof(msg) - (size_t)n)
            mark_truncated(msg, sizeof(msg));
    } else if (n >= 0) {
        mark_truncated(msg, sizeof(msg));
    } else {
        msg[0] = '\0';
    }
    px_log_hook hook = __atomic_load_n(&log_hook, __ATOMIC_ACQUIRE);
    if (hook)
        hook(level, msg, __atomic_load_n(&log_hook_user, __ATOMIC_RELAXED));
    else
        fprintf(stderr, "%s\n", msg);
    errno = saved_errno;
}

void px_log_write(px_log_level level, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    px_log_vwrite(level, file, line, fmt, ap);
    va_end(ap);
}
