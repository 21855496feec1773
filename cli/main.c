/* kdbench: subcommand dispatch, --help, --version. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "../compress/kernels/cpu.h"


static const cli_command commands[] = {
    {"run", cli_cmd_run, "run an experiment end to end", cli_run_usage},
    {"check", cli_cmd_check, "validate an experiment config", cli_check_usage},
    {"eval", cli_cmd_eval, "evaluate a saved model on a test set", cli_eval_usage},
    {"inspect", cli_cmd_inspect, "show a model file's layers, shapes and sizes",
     cli_inspect_usage},
    {"report", cli_cmd_report, "write a run's report (tables and plots) from its result files",
     cli_report_usage},
    {"compare", cli_cmd_compare, "compare variants from several runs or model files",
     cli_compare_usage},
    {"export", cli_cmd_export, "write a saved model as ONNX or standalone C", cli_export_usage},
    {"serve", cli_cmd_serve, "serve models over HTTP (v2 protocol, /predict, /metrics)",
     cli_serve_usage},
    {"loadtest", cli_cmd_loadtest, "load a kdbench server; requests/s and latency percentiles",
     cli_loadtest_usage},
};
#define NCOMMANDS (int)(sizeof commands / sizeof commands[0])

static void usage(FILE *f)
{
    fprintf(f, "usage: kdbench COMMAND [ARGS]   (kdbench COMMAND --help for details)\n\n"
               "kdbench " KD_VERSION
               " - knowledge distillation and model compression workbench\n\ncommands:\n");
    for (int i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nexit status: 0 success, 1 runtime failure, 2 usage or config error\n");
}

int cli_fail(const kd_err *e)
{
    char buf[2048];
    fprintf(stderr, "kdbench: %s\n", kd_err_str(e, buf, sizeof buf));
    return e->code == KD_ECONFIG ? KD_EXIT_USAGE : KD_EXIT_FAIL;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "kdbench %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(kdbench %s --help for usage)\n", cmd);
    return KD_EXIT_USAGE;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return KD_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        if (argc > 2)
            for (int i = 0; i < NCOMMANDS; i++)
                if (!strcmp(argv[2], commands[i].name)) {
                    fputs(commands[i].usage, stdout);
                    return KD_EXIT_OK;
                }
        usage(stdout);
        return KD_EXIT_OK;
    }
    if (!strcmp(cmd, "--version")) {
        printf("kdbench %s\n", KD_VERSION);
        return KD_EXIT_OK;
    }
    if (kernels_isa_env_error()) {
        fprintf(stderr, "kdbench: KD_ISA=\"%s\": expected scalar, avx2 or avx512\n",
                kernels_isa_env_error());
        return KD_EXIT_USAGE;
    }
    for (int i = 0; i < NCOMMANDS; i++)
        if (!strcmp(cmd, commands[i].name)) {
            for (int j = 2; j < argc; j++)
                if (!strcmp(argv[j], "--help") || !strcmp(argv[j], "-h")) {
                    fputs(commands[i].usage, stdout);
                    return KD_EXIT_OK;
                }
            return commands[i].run(argc - 1, argv + 1);
        }
    const char *names[NCOMMANDS];
    for (int i = 0; i < NCOMMANDS; i++)
        names[i] = commands[i].name;
    const char *near = kd_suggest(cmd, names, NCOMMANDS);
    if (near) {
        fprintf(stderr, "kdbench: unknown command \"%s\" (did you mean \"%s\"?)\n"
                        "(kdbench --help lists the commands)\n", cmd, near);
        return KD_EXIT_USAGE;
    }
    fprintf(stderr, "kdbench: unknown command \"%s\"\n\n", cmd);
    usage(stderr);
    return KD_EXIT_USAGE;
}
