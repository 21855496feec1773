/* kdbench export: a saved model out of kdbench (ONNX, standalone C). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "../compress/compress.h"
#include "../export/export.h"
#include "cli.h"

const char cli_export_usage[] =
    "usage: kdbench export MODEL [--onnx FILE] [--c DIR [--prefix NAME]]\n\n"
    "Writes a saved model (.kdm, fp32 or compressed) out of kdbench: as an ONNX\n"
    "model, as standalone C99, or both.\n\n"
    "  --onnx FILE    an ONNX model (opset 13, IR 7; replaced atomically).  Input\n"
    "                 \"input\": float32 pixels scaled x/255, [N, C, H, W] ([N, F] for\n"
    "                 vector inputs); the model's standardisation is inside.  Outputs\n"
    "                 \"probs\" (softmax) and \"logits\", [N, classes].  fp32 layers as\n"
    "                 Gemm/Conv/BatchNormalization/Relu/MaxPool/Flatten; int8 and\n"
    "                 int8-dyn in integers (QuantizeLinear or DynamicQuantizeLinear,\n"
    "                 MatMulInteger, int32 bias); csr-fp32, csr-int8, csr-shared+huff\n"
    "                 as dense fp32 (ONNX has no standard sparse weights); int4 as\n"
    "                 fp32 (ONNX's INT4 needs opset 21, unknown to onnx 1.12's checker)\n"
    "  --c DIR        DIR/NAME.h, DIR/NAME.c and DIR/main.c (an example program),\n"
    "                 DIR created if missing, files replaced.  Weights are const\n"
    "                 arrays in each layer's stored format (fp32, csr-fp32, int8,\n"
    "                 int8-dyn, int4, csr-int8); one entry point\n"
    "                 int NAME_predict(const float *x, float *probs) returns the\n"
    "                 class; x is a sample as kdbench reads it (image bytes / 255),\n"
    "                 standardised inside.  Needs only libm, allocates nothing.\n"
    "  --prefix NAME  C identifier for the files and functions (default: model)\n\n"
    "Build the C example: cc -O2 -std=c99 -o DIR/NAME DIR/main.c DIR/NAME.c -lm\n"
    "exit status: 0 success, 1 runtime failure (unreadable model, write error),\n"
    "2 usage error or a layer kind that cannot be exported (named)\n";

/* What the ONNX file holds that differs from the model's stored formats. */
static void print_onnx_notes(const char *path, const nn_model *m, const export_onnx_notes *n)
{
    printf("wrote %s (ONNX opset %d, %d layers", path, EXPORT_ONNX_OPSET, m->nlayers);
    if (n->int8 || n->int8_dyn)
        printf("; int8 in integer ops: %d static, %d dynamic", n->int8, n->int8_dyn);
    printf(")\n");
    if (n->densified)
        printf("note: %d sparse or shared layer%s (%s) written as dense fp32 weights: ONNX has "
               "no standard sparse weights, so the file holds every zero\n",
               n->densified, n->densified > 1 ? "s" : "", n->densified_names);
    if (n->int4)
        printf("note: %d int4 layer%s (%s) written dequantized as fp32 weights: ONNX's INT4 "
               "tensors need opset 21, which onnx 1.12's checker does not know\n",
               n->int4, n->int4 > 1 ? "s" : "", n->int4_names);
}

int cli_cmd_export(int argc, char **argv)
{
    static const struct option opts[] = {{"c", required_argument, 0, 'c'},
                                         {"onnx", required_argument, 0, 'o'},
                                         {"prefix", required_argument, 0, 'p'},
                                         {0, 0, 0, 0}};
    const char *dir = NULL, *onnx = NULL, *prefix = "model";
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'c': dir = optarg; break;
        case 'o': onnx = optarg; break;
        case 'p': prefix = optarg; break;
        case ':': return cli_usage_error("export", "%s needs a value", argv[optind - 1]);
        default: return cli_usage_error("export", "unknown option \"%s\"", argv[optind - 1]);
        }
    }
    if (optind != argc - 1)
        return cli_usage_error("export", "one MODEL file expected");
    if (!dir && !onnx)
        return cli_usage_error("export", "an output is needed: --onnx FILE and/or --c DIR");
    if (onnx && !*onnx)
        return cli_usage_error("export", "--onnx needs a file name");
    if (!export_c_prefix_ok(prefix))
        return cli_usage_error("export", "--prefix \"%s\" is not a C identifier of at most %d "
                               "characters (not starting with kd_)", prefix, EXPORT_PREFIX_MAX);
    kd_err e = {0};
    const char *path = argv[optind];
    nn_model *m = compress_model_load(path, &e);
    if (!m)
        return cli_fail(&e);
    /* both checks before either file is written */
    int rc = onnx ? export_onnx_check(m, &e) : KD_OK;
    if (rc == KD_OK && dir)
        rc = export_c_check(m, &e);
    if (rc == KD_OK && onnx) {
        export_onnx_notes notes;
        rc = export_onnx(m, onnx, path, &notes, &e);
        if (rc == KD_OK)
            print_onnx_notes(onnx, m, &notes);
        else
            kd_err_prefix(&e, "writing the ONNX model");
    }
    if (rc == KD_OK && dir) {
        rc = export_c(m, dir, prefix, path, &e);
        if (rc == KD_OK)
            printf("wrote %s/%s.h, %s/%s.c and %s/main.c (%d layers)\n", dir, prefix, dir,
                   prefix, dir, m->nlayers);
    }
    nn_model_free(m);
    return rc == KD_OK ? KD_EXIT_OK : cli_fail(&e);
}
