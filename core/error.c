/* Error strings, generated from PX_ERROR_LIST so a new code cannot be
 * forgotten here. */
#include "plexus/error.h"

#include <limits.h>

/* INT_MIN has no positive counterpart; map it to a value no code uses. */
static int err_abs(int err)
{
    if (err == INT_MIN)
        return INT_MAX;
    return err < 0 ? -err : err;
}

/* A switch rather than a table: the values are sparse (errno values and
 * PX_EBASE + n) and the compiler rejects a duplicated value for us. */
const char *px_strerror(int err)
{
    switch (err_abs(err)) {
#define PX_ERR_TEXT(name, value, text)                                                             \
    case (value):                                                                                  \
        return text;
        PX_ERROR_LIST(PX_ERR_TEXT)
#undef PX_ERR_TEXT
    case 0:
        return "success";
    default:
        return "unknown error";
    }
}

const char *px_errname(int err)
{
    switch (err_abs(err)) {
#define PX_ERR_NAME(name, value, text)                                                             \
    case (value):                                                                                  \
        return #name;
        PX_ERROR_LIST(PX_ERR_NAME)
#undef PX_ERR_NAME
    case 0:
        return "PX_OK";
    default:
        return "PX_E?";
    }
}
