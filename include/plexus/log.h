/* plexus — logging.
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

typedef enum px_log_level {
    PX_LOG_DEBUG = 0,
    PX_LOG_INFO = 1,
    PX_LOG_WARN = 2,
    PX_LOG_ERROR = 3,
    PX_LOG_OFF = 4,
} px_log_level;

/* Receives one formatted line, without a trailing newline. Called on the
 * thread that logged; must not call back into plexus. */
typedef void (*px_log_hook)(px_log_level level, const char *msg, void *user);

/* Set the level. Any thread (an atomic store). Returns 0; -PX_EINVAL. */
PX_API int px_log_set_level(px_log_level level);
PX_API px_log_level px_log_get_level(void);

/* Route log lines to `hook` (NULL: back to stderr). Set this before other
 * threads log; the pair (hook, user) is not swapped atomically. */
PX_API void px_log_set_hook(px_log_hook hook, void *user);

/* "debug", "info", ... */
PX_API const char *px_log_level_name(px_log_level level);

#ifdef __cplusplus
}
#endif
#endif
