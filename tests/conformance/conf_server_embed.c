/* conf_server as a function inside the suite (see conf_server.h). */
#define CONF_SERVER_EMBED
#include "conf_server.c"
