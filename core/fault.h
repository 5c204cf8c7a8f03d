/* Fault injection, for testing the paths behind a failure that is hard to
 * provoke (an allocation that fails, a buffer the pool declines).
 *
 * Built in only with PX_FAULT_INJECTION (a CMake option, on by default in
 * Debug builds); elsewhere px_fault_mask() is 0 and costs nothing. The
 * environment variable PX_FAULT=name[,name...] names the faults, read when
 * a context is created; each context keeps its own copy, so nothing here
 * is global state. */
#ifndef PX_CORE_FAULT_H
#define PX_CORE_FAULT_H

enum px_fault {
    PX_FAULT_BUF_GET = 1u << 0, /* "buf_get": every px_buf_get() declines */
};

#ifdef PX_FAULT_INJECTION
/* The faults PX_FAULT names (unknown names are ignored). */
unsigned px_fault_mask(void);
#else
static inline unsigned px_fault_mask(void)
{
    return 0;
}
#endif

#endif
