/* The public entry points: read the text, build the tree, apply the
 * overrides, walk the schema.  Everything allocated here is freed here. */
#include <string.h>

#include "internal.h"

int config_load_string_facts(const char *name, const char *text, size_t len,
                             const char *const *overrides, int noverrides,
                             const cfg_data_facts *f, exp_spec *out, kd_err *e)
{
    kd_err local;
    cfg_ctx c = {.file = name ? name : "<config>", .ovr = overrides, .facts = f,
                 .e = e ? e : &local};
    memset(out, 0, sizeof *out);
    cfg_node *root = NULL;
    int rc = cfg_parse(&c, text, len, -1, &root);
    for (int i = 0; rc == KD_OK && i < noverrides; i++)
        rc = cfg_override(&c, root, i);
    if (rc == KD_OK) {
        snprintf(out->file, sizeof out->file, "%s", c.file);
        rc = cfg_walk(&c, root, out);
    }
    cfg_node_free(root);
    if (rc != KD_OK)
        memset(out, 0, sizeof *out);
    return rc;
}

int config_load_string(const char *name, const char *text, size_t len, const char *const *overrides,
                       int noverrides, exp_spec *out, kd_err *e)
{
    return config_load_string_facts(name, text, len, overrides, noverrides, NULL, out, e);
}

int config_load_facts(const char *path, const char *const *overrides, int noverrides,
                      const cfg_data_facts *f, exp_spec *out, kd_err *e)
{
    uint8_t *text = NULL;
    size_t len = 0;
    memset(out, 0, sizeof *out);
    /* one byte over the limit, so that a file of exactly the limit is read whole */
    int rc = kd_read_file(path, CFG_MAX_INPUT + 1, &text, &len, e);
    if (rc == KD_EFORMAT)
        return kd_err_at(e, KD_ECONFIG, path, 0, 0,
                         "larger than %u bytes; not an experiment config", CFG_MAX_INPUT);
    if (rc != KD_OK)
        return rc;
    rc = config_load_string_facts(path, (const char *)text, len, overrides, noverrides, f, out, e);
    kd_free(text);
    return rc;
}

int config_load(const char *path, const char *const *overrides, int noverrides, exp_spec *out,
                kd_err *e)
{
    return config_load_facts(path, overrides, noverrides, NULL, out, e);
}
