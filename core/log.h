/* Internal logging: PX_LOGD/I/W/E(fmt, ...). The level check is inline so a
 * disabled debug line costs one load and a branch. */
#ifndef PX_CORE_LOG_H
#define PX_CORE_LOG_H

#include "plexus/log.h"

extern int px_log_level_cur; /* atomic int, read relaxed */

#include <stdarg.h>

void px_log_vwrite(px_log_level level, const char *file, int line, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));
void px_log_write(px_log_level level, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define PX_LOG_AT(lvl, ...)                                                                        \
    do {                                                                                           \
        if (__atomic_load_n(&px_log_level_cur, __ATOMIC_RELAXED) <= (int)(lvl))                    \
            px_log_write((lvl), __FILE__, __LINE__, __VA_ARGS__);                                  \
    } while (0)
#define PX_LOGD(...) PX_LOG_AT(PX_LOG_DEBUG, __VA_ARGS__)
#define PX_LOGI(...) PX_LOG_AT(PX_LOG_INFO, __VA_ARGS__)
#define PX_LOGW(...) PX_LOG_AT(PX_LOG_WARN, __VA_ARGS__)
#define PX_LOGE(...) PX_LOG_AT(PX_LOG_ERROR, __VA_ARGS__)

#endif
