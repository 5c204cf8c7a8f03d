/* Fuzz px_uri_parse: no crash on any text, and whatever it accepts is a
 * well-formed px_uri whose strings all live inside its own buffer. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "plexus/error.h"
#include "plexus/transport.h"

/* NUL-terminated within buf, not merely starting there. */
static void check_in_buf(const px_uri *u, const char *s)
{
    FUZZ_CHECK(s != NULL);
    FUZZ_CHECK(s >= u->buf && s < u->buf + sizeof(u->buf));
    size_t room = (size_t)(u->buf + sizeof(u->buf) - s);
    FUZZ_CHECK(memchr(s, '\0', room) != NULL);
}

static void check_accepted(const px_uri *u, size_t text_len)
{
    FUZZ_CHECK(text_len > 0 && text_len <= PX_URI_MAX);
    check_in_buf(u, u->scheme);
    check_in_buf(u, u->host);
    check_in_buf(u, u->path);
    FUZZ_CHECK(u->scheme[0] >= 'a' && u->scheme[0] <= 'z');
    for (const char *c = u->scheme; *c; c++)
        FUZZ_CHECK(!(*c >= 'A' && *c <= 'Z'));
    FUZZ_CHECK(u->port >= -1 && u->port <= 65535);
    FUZZ_CHECK(u->ipv6 == 0 || u->ipv6 == 1);
    if (u->ipv6)
        FUZZ_CHECK(strchr(u->host, ':') != NULL);
    if (u->port >= 0)
        FUZZ_CHECK(u->host[0] != '\0');
    /* The named schemes: a name and nothing else. */
    if (strcmp(u->scheme, "shm") == 0 || strcmp(u->scheme, "inproc") == 0)
        FUZZ_CHECK(u->path[0] != '\0' && u->host[0] == '\0' && u->port == -1);
    else
        FUZZ_CHECK(u->path[0] == '\0' || u->path[0] == '/');
    FUZZ_CHECK(u->n_opts <= PX_URI_MAX_OPTS);
    for (unsigned i = 0; i < u->n_opts; i++) {
        check_in_buf(u, u->opts[i].key);
        check_in_buf(u, u->opts[i].value);
        FUZZ_CHECK(u->opts[i].key[0] != '\0');
        /* Keys are unique, so lookup finds this very value. */
        FUZZ_CHECK(px_uri_opt_get(u, u->opts[i].key) == u->opts[i].value);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    px_uri *u = malloc(sizeof(*u));
    if (u == NULL) {
        free(text);
        return 0;
    }
    int rc = px_uri_parse(text, u);
    if (rc == 0) {
        check_accepted(u, strlen(text));
    } else {
        FUZZ_CHECK(rc == -PX_EBADURI || rc == -PX_EBADSCHEME || rc == -PX_EBADHOST ||
                   rc == -PX_EBADPORT || rc == -PX_EBADPATH || rc == -PX_EBADOPT);
        FUZZ_CHECK(u->n_opts == 0 && u->port == -1);
    }
    free(u);
    free(text);
    return 0;
}
