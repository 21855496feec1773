/* cli — the kdbench command line: a table of subcommands.  The only code that
 * prints errors and chooses exit statuses. */
#ifndef KD_CLI_H
#define KD_CLI_H

#include "../util/util.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
    const char *usage; /* full --help text */
} cli_command;

/* Prints e to stderr as "kdbench: FILE:LINE:COL: msg" and returns the exit
 * status for it (2 for config/usage errors, 1 otherwise). */
int cli_fail(const kd_err *e);
/* Prints a usage error and returns 2. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A MODEL argument that is a run directory or a training checkpoint gets a
 * usage error naming the model file(s) to use (returns 2); 0 otherwise
 * (anything else is left to the loader's own errors). */
int cli_model_arg(const char *cmd, const char *path);

int cli_cmd_run(int argc, char **argv);
int cli_cmd_check(int argc, char **argv);
int cli_cmd_eval(int argc, char **argv);
int cli_cmd_inspect(int argc, char **argv);
int cli_cmd_report(int argc, char **argv);
int cli_cmd_compare(int argc, char **argv);
int cli_cmd_serve(int argc, char **argv);
int cli_cmd_loadtest(int argc, char **argv);

extern const char cli_run_usage[], cli_check_usage[], cli_eval_usage[], cli_inspect_usage[];
extern const char cli_report_usage[], cli_compare_usage[], cli_serve_usage[], cli_loadtest_usage[];

int cli_cmd_export(int argc, char **argv);
extern const char cli_export_usage[];

#endif
