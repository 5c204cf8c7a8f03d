#include "plexus/plexus.h"

#define PX_STR_(x) #x
#define PX_STR(x)  PX_STR_(x)

/* Given for this file by CMakeLists.txt; the fallbacks keep it building
 * elsewhere (a fuzz target, say). */
#ifndef PX_BUILD_TYPE
#define PX_BUILD_TYPE ""
#endif
#ifndef PX_BUILD_COMPILER
#define PX_BUILD_COMPILER ""
#endif
#ifndef PX_BUILD_SANITIZE
#define PX_BUILD_SANITIZE ""
#endif
#ifndef PX_PLUGIN_DEFAULT_DIR
#define PX_PLUGIN_DEFAULT_DIR "/usr/local/lib/plexus"
#endif
#ifndef PX_HAVE_RDMA
#define PX_HAVE_RDMA 0
#endif
#ifdef PX_FAULT_INJECTION
#define PX_BUILD_FAULT 1
#else
#define PX_BUILD_FAULT 0
#endif

const char *px_version(void)
{
    return PX_STR(PX_VERSION_MAJOR) "." PX_STR(PX_VERSION_MINOR) "." PX_STR(PX_VERSION_PATCH);
}

static const px_build_info build_info = {
    .version = PX_STR(PX_VERSION_MAJOR) "." PX_STR(PX_VERSION_MINOR) "." PX_STR(PX_VERSION_PATCH),
    .build_type = PX_BUILD_TYPE,
    .compiler = PX_BUILD_COMPILER,
    .sanitizers = PX_BUILD_SANITIZE,
    .plugin_dir = PX_PLUGIN_DEFAULT_DIR,
    .rdma = PX_HAVE_RDMA ? 1 : 0,
    .fault_injection = PX_BUILD_FAULT,
};

const px_build_info *px_get_build_info(void)
{
    return &build_info;
}
