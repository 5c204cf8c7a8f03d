/**
 * @file
 * plexus — URIs: the parser every transport shares.
 *
 * For transports: applications pass URIs as strings. */
#ifndef PLEXUS_URI_H
#define PLEXUS_URI_H

#include <stddef.h>

#include "plexus/api.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- URIs -----------------------------------------------------------------
 * scheme://host:port/path?key=value&key=value
 *   tcp://127.0.0.1:7000   tcp://[::1]:0   tcp://localhost:7000
 *   unix:///run/app.sock   shm://name      rdma://10.0.0.1:7000
 *   inproc://name
 */
#define PX_URI_MAX      1024 /**< the longest URI text px_uri_parse() accepts, in bytes */
#define PX_URI_MAX_OPTS 16   /**< the most options (?key=value) one URI may carry */

/** One option of a URI's query. */
typedef struct px_uri_opt {
    const char *key;   /**< the name */
    const char *value; /**< "" when given as ?key */
} px_uri_opt;

/** A parsed URI: scheme://host:port/path?key=value&key=value, for example
 * tcp://127.0.0.1:7000, tcp://[::1]:0, unix:///run/app.sock, shm://name,
 * rdma://10.0.0.1:7000, inproc://name. */
typedef struct px_uri {
    const char *scheme; /**< lower case */
    const char *host;   /**< without brackets; "" when none */
    int port;           /**< -1 when none, else 0..65535 */
    int ipv6;           /**< host was bracketed */
    const char *path;   /**< after host[:port] (starts with '/'), or shm's name; "" when none */
    unsigned n_opts;    /**< options in opts */
    px_uri_opt opts[PX_URI_MAX_OPTS]; /**< the options, in the order given */
    char buf[PX_URI_MAX + 8];         /**< storage the pointers above point into */
} px_uri;

/** Parse `text` into `out`, which owns all its strings.
 * For shm:// and inproc:// the name goes to `path`, `host` is "". A
 * bracketed IPv6 host keeps its zone as "addr%zone" (RFC 6874's "%25"
 * accepted). On error `out` holds no strings and n_opts is 0.
 * @param text the URI, NUL-terminated
 * @param[out] out the parsed URI
 * @return 0;
 * -PX_EINVAL (NULL argument); -PX_EBADURI (no "://", empty, too long, bad
 * or %00 escape), -PX_EBADSCHEME (empty, not starting with a letter, or
 * characters outside [A-Za-z0-9+.-]; stored lower-cased), -PX_EBADHOST
 * (nothing after "://", a port without a host, empty/unbalanced brackets,
 * illegal characters), -PX_EBADPORT (not 1-5 digits for 0..65535),
 * -PX_EBADPATH (shm or inproc name not [A-Za-z0-9._-]+, control or '#' characters in
 * a path), -PX_EBADOPT (empty key, key outside [A-Za-z0-9._-], raw space or
 * control character in a value, too many options, duplicate key; "?" must
 * be followed by an option). */
PX_API int px_uri_parse(const char *text, px_uri *out);

/** The value of option `key`.
 * @param uri a parsed URI
 * @param key the option's name
 * @return its value ("" for ?key alone), or NULL when the URI has none. */
PX_API const char *px_uri_opt_get(const px_uri *uri, const char *key);

#ifdef __cplusplus
}
#endif
#endif
