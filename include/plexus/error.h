/**
 * @file
 * plexus — error codes.
 *
 * Every plexus call returns 0 (or a count) on success and a negative error
 * code on failure: -PX_EINVAL, -PX_EAGAIN, ...  Where an errno value means
 * the same thing the code *is* that errno value, so strerror-style tooling
 * keeps working; codes specific to plexus live above PX_EBASE.
 *
 * The list below is the only place a code is defined: the enum and the
 * strings returned by px_strerror()/px_errname() are generated from it.
 */
#ifndef PLEXUS_ERROR_H
#define PLEXUS_ERROR_H

#include "plexus/api.h"

#include <errno.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Codes specific to plexus are above this one (errno values are below). */
#define PX_EBASE 4096

/** Every error code, as X(name, value, description): the one place a code
 * is defined; enum px_error and the strings of px_strerror() and
 * px_errname() are generated from it.
 * @param X a macro taking (name, value, description) */
#define PX_ERROR_LIST(X)                                                                           \
    X(PX_EPERM, EPERM, "operation not permitted")                                                  \
    X(PX_ENOENT, ENOENT, "no such object")                                                         \
    X(PX_EINTR, EINTR, "interrupted")                                                              \
    X(PX_EIO, EIO, "input/output error")                                                           \
    X(PX_EBADF, EBADF, "bad file descriptor")                                                      \
    X(PX_EAGAIN, EAGAIN, "resource temporarily unavailable: queue full, try again")                \
    X(PX_ENOMEM, ENOMEM, "out of memory")                                                          \
    X(PX_EACCES, EACCES, "permission denied")                                                      \
    X(PX_EFAULT, EFAULT, "bad address")                                                            \
    X(PX_EBUSY, EBUSY, "object busy")                                                              \
    X(PX_EEXIST, EEXIST, "object exists")                                                          \
    X(PX_EINVAL, EINVAL, "invalid argument")                                                       \
    X(PX_ENFILE, ENFILE, "too many open files in system")                                          \
    X(PX_EMFILE, EMFILE, "too many open files")                                                    \
    X(PX_ENOSPC, ENOSPC, "no space left")                                                          \
    X(PX_EPIPE, EPIPE, "broken pipe")                                                              \
    X(PX_ERANGE, ERANGE, "value out of range")                                                     \
    X(PX_ENAMETOOLONG, ENAMETOOLONG, "name too long")                                              \
    X(PX_ENOSYS, ENOSYS, "not available in this version of plexus")                                \
    X(PX_EPROTO, EPROTO, "protocol error: malformed frame from peer")                              \
    X(PX_EMSGSIZE, EMSGSIZE, "message too large")                                                  \
    X(PX_EPROTONOSUPPORT, EPROTONOSUPPORT, "protocol version not supported")                       \
    X(PX_EOPNOTSUPP, EOPNOTSUPP, "operation not supported by this transport")                      \
    X(PX_EAFNOSUPPORT, EAFNOSUPPORT, "address family not supported")                               \
    X(PX_EADDRINUSE, EADDRINUSE, "address already in use")                                         \
    X(PX_EADDRNOTAVAIL, EADDRNOTAVAIL, "address not available")                                    \
    X(PX_ENETUNREACH, ENETUNREACH, "network unreachable")                                          \
    X(PX_ECONNABORTED, ECONNABORTED, "connection aborted")                                         \
    X(PX_ECONNRESET, ECONNRESET, "connection reset by peer")                                       \
    X(PX_ENOBUFS, ENOBUFS, "no buffer space")                                                      \
    X(PX_EISCONN, EISCONN, "already connected")                                                    \
    X(PX_ENOTCONN, ENOTCONN, "not connected")                                                      \
    X(PX_ESHUTDOWN, ESHUTDOWN, "connection is shutting down")                                      \
    X(PX_ETIMEDOUT, ETIMEDOUT, "timed out")                                                        \
    X(PX_ECONNREFUSED, ECONNREFUSED, "connection refused")                                         \
    X(PX_EHOSTUNREACH, EHOSTUNREACH, "host unreachable")                                           \
    X(PX_EALREADY, EALREADY, "already in progress")                                                \
    X(PX_ECANCELED, ECANCELED, "canceled")                                                         \
    X(PX_EBADURI, PX_EBASE + 1, "malformed URI")                                                   \
    X(PX_EBADSCHEME, PX_EBASE + 2, "unknown URI scheme: no transport registered for it")           \
    X(PX_EBADHOST, PX_EBASE + 3, "malformed or unresolvable host in URI")                          \
    X(PX_EBADPORT, PX_EBASE + 4, "malformed or out-of-range port in URI")                          \
    X(PX_EBADPATH, PX_EBASE + 5, "malformed path in URI")                                          \
    X(PX_EBADOPT, PX_EBASE + 6, "unknown or malformed option")                                     \
    X(PX_EREJECTED, PX_EBASE + 7, "session rejected by the server")                                \
    X(PX_EREDIRECTED, PX_EBASE + 8, "session redirected by the server")                            \
    X(PX_EDISCONNECTED, PX_EBASE + 9, "connection lost before completion")                         \
    X(PX_EFLUSHED, PX_EBASE + 10, "flushed at teardown before completion")                         \
    X(PX_EVERSION, PX_EBASE + 11, "peer speaks an incompatible protocol version")                  \
    X(PX_ECLOSED, PX_EBASE + 12, "object is closed")                                               \
    X(PX_ETOOMANY, PX_EBASE + 13, "limit reached (sessions, connections or iovecs)")               \
    X(PX_ESHORTBUF, PX_EBASE + 14, "receive buffer shorter than the incoming message")             \
    X(PX_EPEER, PX_EBASE + 15, "peer reported an error")                                           \
    X(PX_ENOTBUILT, PX_EBASE + 16, "transport known but not built into this plexus")

/** The error codes: PX_EPERM, PX_ENOENT, ... PX_ENOTBUILT, each with the
 * value and meaning PX_ERROR_LIST gives it. Calls return them negated. */
enum px_error {
/** PX_ERROR_LIST's X for the enum: `name = (value),`.
 * @param name the code's name
 * @param value its value
 * @param text its description (unused here) */
#define PX_ERROR_ENUM(name, value, text) name = (value),
    PX_ERROR_LIST(PX_ERROR_ENUM)
#undef PX_ERROR_ENUM
};

/** A static, human-readable description of `err` (either sign accepted).
 * Any thread.
 * @param err an error code, -PX_E... or PX_E...
 * @return never NULL; unknown codes give "unknown error". */
PX_API const char *px_strerror(int err);

/** The symbolic name ("PX_EAGAIN") of `err` (either sign). Any thread.
 * @param err an error code, -PX_E... or PX_E..., or 0
 * @return the name, "PX_OK" for 0, or "PX_E?" when unknown (a static string). */
PX_API const char *px_errname(int err);

#ifdef __cplusplus
}
#endif
#endif
