/* Experiment configs: the YAML parse and the whole validation walk, with up
 * to four --set overrides.  Input: the YAML, then each override after a
 * FUZZ_SEP byte.  A config that loads is dumped (config_dump walks every
 * resolved value). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../config/config.h"
#include "fuzz.h"

#define MAX_SETS 4

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *part[1 + MAX_SETS];
    size_t len[1 + MAX_SETS];
    int n = fuzz_split(data, size, part, len, 1 + MAX_SETS);
    char *sets[MAX_SETS] = {0};
    for (int i = 1; i < n; i++) { /* overrides are C strings */
        sets[i - 1] = malloc(len[i] + 1);
        if (!sets[i - 1])
            abort();
        memcpy(sets[i - 1], part[i], len[i]);
        sets[i - 1][len[i]] = 0;
    }
    exp_spec *s = calloc(1, sizeof *s);
    if (!s)
        abort();
    kd_err e = {0};
    if (config_load_string("fuzz.yaml", (const char *)part[0], len[0],
                           (const char *const *)sets, n - 1, s, &e) == KD_OK) {
        char *buf = NULL;
        size_t blen = 0;
        FILE *f = open_memstream(&buf, &blen);
        if (f) {
            config_dump(s, f);
            fclose(f);
        }
        free(buf);
    }
    free(s);
    for (int i = 0; i < n - 1; i++)
        free(sets[i]);
    return 0;
}
