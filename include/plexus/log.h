/**
 * @file
 * plexus — logging.
 *
 * Messages at or above the current level go to the hook, or to stderr when
 * no hook is set. The level starts from the environment variable
 * PX_LOG=debug|info|warn|error|off (default: warn).
 */
#ifndef PLEXUS_LOG_H
#define PLEXUS_LOG_H

#include "plexus/api.h"

#ifdef __cplusplus
extern "C" {
#endif

/** How important a log message is; messages below the current level are
 * dropped. */
typedef enum px_log_level {
    PX_LOG_DEBUG = 0, /**< debugging detail */
    PX_LOG_INFO = 1,  /**< informational */
    PX_LOG_WARN = 2,  /**< warnings (the default level) */
    PX_LOG_ERROR = 3, /**< errors */
    PX_LOG_OFF = 4,   /**< as a level: log nothing */
} px_log_level;

/** Receives one formatted line, without a trailing newline. Called on the
 * thread that logged; must not call back into plexus.
 * @param level the message's level
 * @param msg the line (valid during the call only)
 * @param user the pointer given to px_log_set_hook() */
typedef void (*px_log_hook)(px_log_level level, const char *msg, void *user);

/** Set the level. Any thread (an atomic store).
 * @param level messages at or above it are logged; PX_LOG_OFF: none
 * @return 0; -PX_EINVAL. */
PX_API int px_log_set_level(px_log_level level);
/** The current level (PX_LOG, or what px_log_set_level() set).
 * @return the level. */
PX_API px_log_level px_log_get_level(void);

/** Route log lines to `hook` (NULL: back to stderr). Set this before other
 * threads log; the pair (hook, user) is not swapped atomically.
 * @param hook receives every line logged, or NULL for stderr
 * @param user passed to every call of `hook` */
PX_API void px_log_set_hook(px_log_hook hook, void *user);

/** The name of a level.
 * @param level the level
 * @return "debug", "info", ... (a static string). */
PX_API const char *px_log_level_name(px_log_level level);

#ifdef __cplusplus
}
#endif
#endif
