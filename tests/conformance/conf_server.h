/* conf_server as a function, for the suite's in-process server (see
 * conf_server.c). */
#ifndef CONF_SERVER_H
#define CONF_SERVER_H

#include <stdio.h>

/* Serve as `conf_server argv[1..]` would, printing its URI lines to `out`;
 * returns its exit code. One at a time per process. */
int conf_server_main(int argc, char **argv, FILE *out);
/* What SIGTERM is to the process: finish and return. Any thread. */
void conf_server_terminate(void);

#endif
