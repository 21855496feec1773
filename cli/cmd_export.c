/* kdbench export: a saved model out of kdbench (standalone C). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "../compress/compress.h"
#include "../export/export.h"
#include "cli.h"

const char cli_export_usage[] =
    "usage: kdbench export MODEL --c DIR [--prefix NAME]\n\n"
    "Writes a saved model (.kdm, fp32 or compressed) as standalone C99: DIR/NAME.h,\n"
    "DIR/NAME.c and DIR/main.c (an example program).  Weights are const arrays in\n"
    "each layer's stored format (fp32, csr-fp32, int8, int8-dyn, int4, csr-int8);\n"
    "one entry point int NAME_predict(const float *x, float *probs) returns the\n"
    "class.  x is a sample as kdbench reads it (image bytes / 255); the model's\n"
    "standardisation is applied inside.  Needs only libm, allocates nothing.\n\n"
    "  --c DIR        the folder to write (created if missing; files replaced)\n"
    "  --prefix NAME  C identifier for the files and functions (default: model)\n\n"
    "Build the example: cc -O2 -std=c99 -o DIR/NAME DIR/main.c DIR/NAME.c -lm\n"
    "exit status: 0 success, 1 runtime failure (unreadable model, write error),\n"
    "2 usage error or a layer kind that cannot be exported (named)\n";

int cli_cmd_export(int argc, char **argv)
{
    static const struct option opts[] = {
        {"c", required_argument, 0, 'c'}, {"prefix", required_argument, 0, 'p'}, {0, 0, 0, 0}};
    const char *dir = NULL, *prefix = "model";
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'c': dir = optarg; break;
        case 'p': prefix = optarg; break;
        case ':': return cli_usage_error("export", "%s needs a value", argv[optind - 1]);
        default: return cli_usage_error("export", "unknown option \"%s\"", argv[optind - 1]);
        }
    }
    if (optind != argc - 1)
        return cli_usage_error("export", "one MODEL file expected");
    if (!dir)
        return cli_usage_error("export", "an output is needed: --c DIR");
    if (!export_c_prefix_ok(prefix))
        return cli_usage_error("export", "--prefix \"%s\" is not a C identifier of at most %d "
                               "characters (not starting with kd_)", prefix, EXPORT_PREFIX_MAX);
    kd_err e = {0};
    const char *path = argv[optind];
    nn_model *m = compress_model_load(path, &e);
    if (!m)
        return cli_fail(&e);
    int rc = export_c(m, dir, prefix, path, &e);
    if (rc == KD_OK)
        printf("wrote %s/%s.h, %s/%s.c and %s/main.c (%d layers)\n", dir, prefix, dir, prefix, dir,
               m->nlayers);
    nn_model_free(m);
    return rc == KD_OK ? KD_EXIT_OK : cli_fail(&e);
}
