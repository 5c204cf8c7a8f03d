/**
 * @file
 * plexus — fast messaging between processes and hosts.
 *
 * The umbrella header: include this one. Request/reply and one-way
 * messages over tcp://, unix://, shm:// and rdma:// behind one API; see
 * plexus/session.h for the object model and the exactly-once rule.
 */
#ifndef PLEXUS_PLEXUS_H
#define PLEXUS_PLEXUS_H

#include "plexus/api.h"

#include "plexus/error.h"
#include "plexus/log.h"
#include "plexus/context.h"
#include "plexus/memory.h"
#include "plexus/session.h"

/** The major version of these headers. */
#define PX_VERSION_MAJOR 0
/** The minor version of these headers (0.x: a new minor version may change the API). */
#define PX_VERSION_MINOR 1
/** The patch level of these headers. */
#define PX_VERSION_PATCH 0

#ifdef __cplusplus
extern "C" {
#endif

/** The library's version.
 * @return "0.1.0": a static string. */
PX_API const char *px_version(void);

/** How this libplexus was built (what px-info prints). Static strings. */
typedef struct px_build_info {
    const char *version;    /**< px_version() */
    const char *build_type; /**< CMAKE_BUILD_TYPE: "Release", "Debug", ... */
    const char *compiler;   /**< "GNU 12.2.0" */
    const char *sanitizers; /**< PX_SANITIZE: "" or "address,undefined" */
    const char *plugin_dir; /**< the installed plugin directory, used when
                               $PX_PLUGIN_DIR is unset */
    int rdma;               /**< 1: rdma-core was found at build time */
    int fault_injection;    /**< 1: the PX_FAULT hooks are compiled in */
} px_build_info;

/** How this libplexus was built.
 * @return never NULL; valid for the life of the process. */
PX_API const px_build_info *px_get_build_info(void);

#ifdef __cplusplus
}
#endif
#endif
