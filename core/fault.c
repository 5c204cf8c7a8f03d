/* Fault injection; see fault.h. */
#include "core/fault.h"

#ifdef PX_FAULT_INJECTION
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

static const struct {
    const char *name;
    unsigned bit;
} faults[] = {
    {"buf_get", PX_FAULT_BUF_GET},
};

unsigned px_fault_mask(void)
{
    const char *env = getenv("PX_FAULT");
    unsigned mask = 0;
    for (const char *p = env; p && *p;) {
        size_t n = strcspn(p, ",");
        for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++)
            if (strlen(faults[i].name) == n && strncmp(p, faults[i].name, n) == 0)
                mask |= faults[i].bit;
        p += n + (p[n] == ',');
    }
    if (mask)
        PX_LOGW("fault injection on: PX_FAULT=%s", env);
    return mask;
}
#else
/* An empty translation unit is not valid C: keep one declaration. */
typedef int px_fault_unused;
#endif
