/* Error strings, version, logging levels, the hook and PX_LOG. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/log.h"
#include "plexus/plexus.h"
#include "px_check.h"

START_TEST(strerror_both_signs)
{
    ck_assert_str_eq(px_strerror(-PX_EAGAIN),
                     "resource temporarily unavailable: queue full, try again");
    ck_assert_str_eq(px_strerror(PX_EAGAIN), px_strerror(-PX_EAGAIN));
    ck_assert_str_eq(px_strerror(-PX_EBADURI), "malformed URI");
    ck_assert_str_eq(px_strerror(PX_EPEER), "peer reported an error");
    ck_assert_str_eq(px_strerror(0), "success");
    ck_assert_str_eq(px_strerror(-99999), "unknown error");
    ck_assert_str_eq(px_strerror(INT_MIN), "unknown error");
    ck_assert_str_eq(px_strerror(INT_MAX), "unknown error");
    ck_assert_str_eq(px_strerror(-(PX_EBASE + 17)), "unknown error");
    ck_assert_str_eq(px_strerror(-PX_ENOTBUILT), "transport known but not built into this plexus");
}
END_TEST

START_TEST(errname)
{
    ck_assert_str_eq(px_errname(-PX_EAGAIN), "PX_EAGAIN");
    ck_assert_str_eq(px_errname(PX_EVERSION), "PX_EVERSION");
    ck_assert_str_eq(px_errname(-PX_EINVAL), "PX_EINVAL");
    ck_assert_int_eq(PX_EINVAL, EINVAL);
    ck_assert_int_eq(PX_EBADURI, 4097);
    ck_assert_str_eq(px_errname(0), "PX_OK"); /* 0 is no error, and says so */
    ck_assert_str_eq(px_errname(-12345), "PX_E?");
    ck_assert_str_eq(px_errname(INT_MIN), "PX_E?");
}
END_TEST

/* Every code in the list maps back to its own name and text: catches two
 * codes sharing a value. */
START_TEST(every_code)
{
    int n = 0;
#define CHECK_CODE(name, value, text)                                                              \
    ck_assert_str_eq(px_errname(-(value)), #name);                                                 \
    ck_assert_str_eq(px_strerror(-(value)), text);                                                 \
    n++;
    PX_ERROR_LIST(CHECK_CODE)
#undef CHECK_CODE
    ck_assert_int_ge(n, 53); /* the codes of 0.1.0; more may come */
}
END_TEST

START_TEST(version)
{
    ck_assert_str_eq(px_version(), "0.1.0");
}
END_TEST

static char got[2048];
static int got_level = -1;
static int got_calls;
static void *got_user;

static void hook(px_log_level level, const char *msg, void *user)
{
    snprintf(got, sizeof(got), "%s", msg);
    got_level = (int)level;
    got_user = user;
    got_calls++;
    errno = EIO; /* the hook may clobber errno; px_log_write restores it */
}

static void hook_reset(void)
{
    got[0] = '\0';
    got_level = -1;
    got_calls = 0;
    got_user = NULL;
}

START_TEST(set_level)
{
    ck_assert_int_eq(px_log_set_level(PX_LOG_DEBUG), 0);
    ck_assert_int_eq(px_log_get_level(), PX_LOG_DEBUG);
    ck_assert_int_eq(px_log_set_level(PX_LOG_OFF), 0);
    ck_assert_int_eq(px_log_level_cur, PX_LOG_OFF);
    ck_assert_int_eq(px_log_set_level((px_log_level)5), -PX_EINVAL);
    ck_assert_int_eq(px_log_set_level((px_log_level)-1), -PX_EINVAL);
    ck_assert_int_eq(px_log_get_level(), PX_LOG_OFF);
    ck_assert_str_eq(px_log_level_name(PX_LOG_DEBUG), "debug");
    ck_assert_str_eq(px_log_level_name(PX_LOG_WARN), "warn");
    ck_assert_str_eq(px_log_level_name(PX_LOG_OFF), "off");
    ck_assert_str_eq(px_log_level_name((px_log_level)9), "?");
}
END_TEST

START_TEST(hook_format)
{
    int tag;
    hook_reset();
    px_log_set_hook(hook, &tag);
    px_log_set_level(PX_LOG_INFO);
    errno = ENOENT;
    int line = __LINE__ + 1;
    PX_LOGW("hello %d %s", 42, "x");
    ck_assert_int_eq(errno, ENOENT);
    ck_assert_int_eq(got_calls, 1);
    ck_assert_int_eq(got_level, PX_LOG_WARN);
    ck_assert_ptr_eq(got_user, &tag);
    char want[128];
    snprintf(want, sizeof(want), "plexus[WARN] test_error_log.c:%d: hello 42 x", line);
    ck_assert_str_eq(got, want);
    PX_LOGE("e");
    ck_assert_int_eq(got_level, PX_LOG_ERROR);
    ck_assert_ptr_nonnull(strstr(got, "plexus[ERROR] "));
    PX_LOGI("i");
    ck_assert_ptr_nonnull(strstr(got, "plexus[INFO] "));
    ck_assert_int_eq(got_calls, 3);
    px_log_set_hook(NULL, NULL);
}
END_TEST

START_TEST(level_filters)
{
    hook_reset();
    px_log_set_hook(hook, NULL);
    px_log_set_level(PX_LOG_WARN);
    PX_LOGD("no");
    PX_LOGI("no");
    ck_assert_int_eq(got_calls, 0);
    PX_LOGW("yes");
    ck_assert_int_eq(got_calls, 1);
    px_log_set_level(PX_LOG_OFF);
    PX_LOGE("no");
    ck_assert_int_eq(got_calls, 1);
    px_log_set_level(PX_LOG_DEBUG);
    PX_LOGD("d");
    ck_assert_int_eq(got_calls, 2);
    ck_assert_ptr_nonnull(strstr(got, "plexus[DEBUG] "));
    /* OFF is a level, not a message severity. */
    px_log_write(PX_LOG_OFF, "f.c", 1, "x");
    px_log_write((px_log_level)7, "f.c", 1, "x");
    ck_assert_int_eq(got_calls, 2);
    px_log_set_hook(NULL, NULL);
}
END_TEST

START_TEST(truncation)
{
    char big[3000];
    memset(big, 'z', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    hook_reset();
    px_log_set_hook(hook, NULL);
    px_log_set_level(PX_LOG_DEBUG);
    PX_LOGE("%s", big);
    ck_assert_uint_eq(strlen(got), 1023);
    ck_assert_str_eq(got + 1020, "...");
    ck_assert_int_eq(got[1019], 'z');
    /* A file name longer than the line. */
    px_log_write(PX_LOG_ERROR, big, 1, "m");
    ck_assert_uint_eq(strlen(got), 1023);
    ck_assert_str_eq(got + 1020, "...");
    px_log_write(PX_LOG_ERROR, NULL, 5, "m");
    ck_assert_str_eq(got, "plexus[ERROR] ?:5: m");
    px_log_write(PX_LOG_ERROR, "/a/b/c.c", 5, "%s", "");
    ck_assert_str_eq(got, "plexus[ERROR] c.c:5: ");
    px_log_set_hook(NULL, NULL);
}
END_TEST

/* Run this binary again with PX_LOG set (NULL: unset); it exits with the
 * level it started at. */
static int level_from_env(const char *value)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (value)
            setenv("PX_LOG", value, 1);
        else
            unsetenv("PX_LOG");
        execl("/proc/self/exe", "test_error_log", "--print-level", (char *)NULL);
        _exit(100);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

START_TEST(env_level)
{
    ck_assert_int_eq(level_from_env(NULL), PX_LOG_WARN);
    ck_assert_int_eq(level_from_env("debug"), PX_LOG_DEBUG);
    ck_assert_int_eq(level_from_env("INFO"), PX_LOG_INFO);
    ck_assert_int_eq(level_from_env("warn"), PX_LOG_WARN);
    ck_assert_int_eq(level_from_env("warning"), PX_LOG_WARN);
    ck_assert_int_eq(level_from_env("error"), PX_LOG_ERROR);
    ck_assert_int_eq(level_from_env("off"), PX_LOG_OFF);
    ck_assert_int_eq(level_from_env(""), PX_LOG_WARN);
    ck_assert_int_eq(level_from_env("verbose"), PX_LOG_WARN);
    ck_assert_int_eq(level_from_env("debugx"), PX_LOG_WARN);
}
END_TEST

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--print-level") == 0)
        return (int)px_log_get_level();
    const TTest *const tests[] = {
        strerror_both_signs, errname,       every_code, version,  set_level,
        hook_format,         level_filters, truncation, env_level};
    return px_check_run("error_log", tests, sizeof(tests) / sizeof(tests[0]));
}
