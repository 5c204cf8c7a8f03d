/* The URI option tables of the transports (px_transport.options) agree
 * with their parsers: every option described is accepted by check_uri,
 * with its example value, wherever the table says it has an effect; an
 * option no table names is refused. The inproc plugin is loaded from the
 * build tree, so its table is checked too. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plexus/plexus.h"
#include "plexus/transport.h"
#include "px_check.h"

/* A URI every check_uri accepts for each scheme, connect and listen. */
static const struct {
    const char *scheme, *base;
} bases[] = {
    {"tcp", "tcp://127.0.0.1:7000"},  {"unix", "unix:///tmp/px-options-test.sock"},
    {"shm", "shm://px-options-test"}, {"inproc", "inproc://px-options-test"},
    {"rdma", "rdma://10.0.0.1:7000"},
};

static const char *base_of(const char *scheme)
{
    for (size_t i = 0; i < sizeof bases / sizeof bases[0]; i++)
        if (strcmp(bases[i].scheme, scheme) == 0)
            return bases[i].base;
    return NULL;
}

static int check(const char *base, const char *key, const char *value, int listener)
{
    char uri[PX_URI_MAX];
    int n = snprintf(uri, sizeof uri, "%s?%s=%s", base, key, value);
    ck_assert(n > 0 && (size_t)n < sizeof uri);
    return px_transport_check_uri(uri, listener);
}

static unsigned n_checked;

static void check_table(const px_transport *t, void *arg)
{
    (void)arg;
    ck_assert_msg(t->options != NULL, "transport %s describes no options", t->name);
    for (const px_tp_option *o = t->options; o->name; o++) {
        ck_assert_msg(o->name[0] && o->values && o->def && o->example && o->doc && o->doc[0],
                      "%s: option %s is not fully described", t->name, o->name);
        ck_assert_msg(o->where & (PX_TP_OPT_CONNECT | PX_TP_OPT_LISTEN),
                      "%s: option %s has an effect nowhere", t->name, o->name);
        for (const px_tp_option *p = t->options; p < o; p++)
            ck_assert_msg(strcmp(p->name, o->name) != 0, "%s: option %s twice", t->name, o->name);
    }
    for (const char *const *sc = t->schemes; *sc; sc++) {
        const char *base = base_of(*sc);
        ck_assert_msg(base != NULL, "no test URI for scheme %s: add one to bases[]", *sc);
        /* The base itself is fine, so a refusal below is the option's. */
        ck_assert_int_eq(px_transport_check_uri(base, 0), 0);
        ck_assert_int_eq(px_transport_check_uri(base, 1), 0);
        for (const px_tp_option *o = t->options; o->name; o++) {
            for (int listener = 0; listener < 2; listener++) {
                unsigned flag = listener ? PX_TP_OPT_LISTEN : PX_TP_OPT_CONNECT;
                if (!(o->where & flag))
                    continue;
                ck_assert_msg(check(base, o->name, o->example, listener) == 0,
                              "%s://: the table's option %s=%s is refused by check_uri (%s)", *sc,
                              o->name, o->example, listener ? "listen" : "connect");
                n_checked++;
            }
        }
        px_log_level saved = px_log_get_level();
        px_log_set_level(PX_LOG_OFF);
        ck_assert_int_eq(check(base, "px_no_such_option", "1", 0), -PX_EBADOPT);
        ck_assert_int_eq(check(base, "px_no_such_option", "1", 1), -PX_EBADOPT);
        px_log_set_level(saved);
    }
}

START_TEST(tables_agree_with_parsers)
{
    setenv("PX_PLUGIN_DIR", PX_TEST_PLUGIN_DIR, 1);
    ck_assert_str_eq(px_transport_plugin_dir(), PX_TEST_PLUGIN_DIR);
    ck_assert_ptr_nonnull(px_transport_find("tcp"));
    ck_assert_ptr_nonnull(px_transport_find("shm"));
    ck_assert_ptr_nonnull(px_transport_find("inproc"));
    ck_assert_int_ge(px_transport_foreach(check_table, NULL), 3);
    /* tcp and unix: 3 options both ways; shm: 3 both ways, 2 connect only. */
    ck_assert_uint_ge(n_checked, 2 * 2 * 3 + 2 * 3 + 2);
}
END_TEST

/* The options the transports are documented to take are in their tables. */
static int has_option(const char *scheme, const char *name)
{
    const px_transport *t = px_transport_find(scheme);
    ck_assert_ptr_nonnull(t);
    for (const px_tp_option *o = t->options; o && o->name; o++)
        if (strcmp(o->name, name) == 0)
            return 1;
    return 0;
}

START_TEST(known_options_described)
{
    setenv("PX_PLUGIN_DIR", PX_TEST_PLUGIN_DIR, 1);
    ck_assert(has_option("tcp", "nodelay") && has_option("tcp", "sndbuf") &&
              has_option("tcp", "rcvbuf"));
    ck_assert(has_option("unix", "sndbuf"));
    ck_assert(has_option("shm", "allow_uid") && has_option("shm", "cma") &&
              has_option("shm", "ring") && has_option("shm", "spin_us"));
    const px_transport *t = px_transport_find("inproc");
    ck_assert_ptr_nonnull(t);
    ck_assert_ptr_nonnull(t->options);
    ck_assert_ptr_null(t->options[0].name); /* takes none */
}
END_TEST

START_TEST(plugin_dir_default)
{
    unsetenv("PX_PLUGIN_DIR");
    ck_assert_str_eq(px_transport_plugin_dir(), px_get_build_info()->plugin_dir);
    setenv("PX_PLUGIN_DIR", "", 1);
    ck_assert_str_eq(px_transport_plugin_dir(), px_get_build_info()->plugin_dir);
}
END_TEST

PX_CHECK_MAIN("transport_options", tables_agree_with_parsers, known_options_described,
              plugin_dir_default)
