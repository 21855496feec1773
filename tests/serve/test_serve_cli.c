/* kdbench serve and loadtest as a user runs them: a child process on port 0,
 * its port read from its first line, requests, SIGTERM, exit 0; usage errors
 * and a bad model file at start-up.  Every wait is bounded. */
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sfix.h"

typedef struct {
    pid_t pid;
    int out; /* the child's stdout */
    int port;
} sf_child;

/* Starts "kdbench serve ARGS --port 0" with stdout on a pipe; reads the
 * "listening on http://127.0.0.1:PORT" line (10 s at most). */
static void child_start(sf_child *c, const char *const *args, int nargs)
{
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    c->pid = fork();
    ck_assert_int_ge(c->pid, 0);
    if (c->pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        const char *argv[32] = {kdt_bin(), "serve"};
        int n = 2;
        for (int i = 0; i < nargs && n < 28; i++)
            argv[n++] = args[i];
        argv[n++] = "--port";
        argv[n++] = "0";
        argv[n] = NULL;
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(p[1]);
    c->out = p[0];
    char line[256] = "";
    size_t len = 0;
    double until = kd_now() + 10;
    while (!strchr(line, '\n') && len < sizeof line - 1 && kd_now() < until) {
        struct pollfd pf = {.fd = c->out, .events = POLLIN};
        if (poll(&pf, 1, 100) == 1) {
            ssize_t k = read(c->out, line + len, sizeof line - 1 - len);
            if (k <= 0)
                break;
            len += (size_t)k;
            line[len] = 0;
        }
    }
    ck_assert_msg(sscanf(line, "listening on http://127.0.0.1:%d", &c->port) == 1,
                  "first line: \"%s\"", line);
}

/* Sends sig and waits (10 s at most) for the child's exit status; -1 if it
 * did not exit (then it is killed). */
static int child_stop(sf_child *c, int sig)
{
    kill(c->pid, sig);
    int st = 0;
    for (double until = kd_now() + 10; kd_now() < until; usleep(20000))
        if (waitpid(c->pid, &st, WNOHANG) == c->pid) {
            close(c->out);
            return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        }
    kill(c->pid, SIGKILL);
    waitpid(c->pid, &st, 0);
    close(c->out);
    return -1;
}

/* A thread of pid other than the main one that does not block SIGTERM (one
 * of OpenBLAS's, started before main), or 0. */
static pid_t unblocked_thread(pid_t pid)
{
    char path[128], line[256];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    struct dirent *de;
    pid_t found = 0;
    while (d && !found && (de = readdir(d))) {
        pid_t tid = (pid_t)atoi(de->d_name);
        if (tid <= 0 || tid == pid)
            continue;
        snprintf(path, sizeof path, "/proc/%d/task/%d/status", (int)pid, (int)tid);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        unsigned long long blk = ~0ull;
        while (fgets(line, sizeof line, f))
            if (!strncmp(line, "SigBlk:", 7))
                blk = strtoull(line + 7, NULL, 16);
        fclose(f);
        if (!(blk & (1ull << (SIGTERM - 1))))
            found = tid;
    }
    if (d)
        closedir(d);
    return found;
}

/* SIGTERM delivered to whichever thread the kernel picks still drains and
 * exits 0: here, sent to a thread that does not block it. */
START_TEST(test_cli_serve_signal_any_thread)
{
    char dir[256], model[512];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(model, sizeof model, "%s/small.kdm", dir);
    nn_model *m = sf_model(24);
    kd_err e = {0};
    ck_assert_int_eq(nn_model_save(m, model, &e), KD_OK);
    nn_model_free(m);
    const char *args[] = {model};
    sf_child c;
    child_start(&c, args, 1);
    pid_t tid = unblocked_thread(c.pid);
    if (!tid) {
        child_stop(&c, SIGTERM);
        KDT_SKIP("no thread of the server leaves SIGTERM unblocked (OpenBLAS without a pool)");
    }
    ck_assert_int_eq(syscall(SYS_tgkill, c.pid, tid, SIGTERM), 0);
    int st = 0;
    double until = kd_now() + 10;
    while (waitpid(c.pid, &st, WNOHANG) != c.pid && kd_now() < until)
        usleep(20000);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x (signal %d)", st,
                  WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    close(c.out);
}
END_TEST

START_TEST(test_cli_serve)
{
    char dir[256], model[512], keyf[512], out[8192];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(model, sizeof model, "%s/small.kdm", dir);
    snprintf(keyf, sizeof keyf, "%s/key", dir);
    nn_model *m = sf_model(21);
    kd_err e = {0};
    ck_assert_int_eq(nn_model_save(m, model, &e), KD_OK);
    nn_model_free(m);
    kdt_write(keyf, "  k3y-123 \n", 11);
    const char *args[] = {model, "--api-key-file", keyf, "--threads", "2"};
    sf_child c;
    child_start(&c, args, 5);
    kd_buf a = {0}, b = {0};
    ck_assert_int_eq(sf_req(c.port, "GET", "/v2/health/ready", NULL, NULL, &a), 200);
    ck_assert_int_eq(sf_req(c.port, "GET", "/v2/models/small", NULL, NULL, &a), 401);
    const char *key = "Authorization: Bearer k3y-123\r\n";
    ck_assert_int_eq(sf_req(c.port, "GET", "/v2/models/small", key, NULL, &a), 200);
    sf_infer_body(&b, 0, 3, 1);
    ck_assert_int_eq(sf_req(c.port, "POST", "/v2/models/small/infer", key, (char *)b.p, &a), 200);
    float p[3 * S_OUT];
    sf_infer_probs((char *)a.p, p, 3, NULL);
    /* the load tester against it: bounded by count */
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "loadtest http://127.0.0.1:%d --concurrency 4 --requests 200 "
             "--seconds 20 --api-key-file %s", c.port, keyf);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "%s", cmd), 0);
    ck_assert_msg(strstr(out, "req/s") && strstr(out, "small"), "%s", out);
    long ok = -1, failed = -1;
    const char *row = strstr(out, "\nsmall");
    ck_assert_msg(row && sscanf(row, " small %*d %ld %ld", &ok, &failed) == 2, "%s", out);
    ck_assert_int_eq(ok, 200);
    ck_assert_int_eq(failed, 0);
    /* without the key every request fails: the load tester says so */
    snprintf(cmd, sizeof cmd, "loadtest http://127.0.0.1:%d --requests 10 --seconds 5", c.port);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "%s", cmd), 1);
    ck_assert_int_eq(child_stop(&c, SIGTERM), 0);
    /* the port is closed after exit */
    serve_client *cl = serve_client_new("127.0.0.1", c.port, 2, &e);
    int status;
    ck_assert_int_eq(serve_client_request(cl, "GET", "/v2/health/live", NULL, NULL, 0, &status,
                                          NULL, &e), KD_EIO);
    serve_client_free(cl);
    /* SIGINT drains and exits 0 too */
    child_start(&c, args, 1);
    ck_assert_int_eq(sf_req(c.port, "GET", "/v2/health/live", NULL, NULL, &a), 200);
    ck_assert_int_eq(child_stop(&c, SIGINT), 0);
    kd_buf_free(&a);
    kd_buf_free(&b);
}
END_TEST

START_TEST(test_cli_serve_usage)
{
    char dir[256], model[512], bad[512], keyf[512], out[8192];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(model, sizeof model, "%s/m.kdm", dir);
    snprintf(bad, sizeof bad, "%s/bad.kdm", dir);
    snprintf(keyf, sizeof keyf, "%s/empty", dir);
    nn_model *m = sf_model(22);
    kd_err e = {0};
    ck_assert_int_eq(nn_model_save(m, model, &e), KD_OK);
    nn_model_free(m);
    kdt_write(bad, "KDBM\x02\0\0\0 truncated", 18);
    kdt_write(keyf, "\n", 1);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "serve --help"), 0);
    ck_assert_ptr_nonnull(strstr(out, "--max-delay-us"));
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "loadtest --help"), 0);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "serve"), 2);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "serve %s --port x", model), 2);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "serve %s --port 70000", model), 2);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "serve %s --max-batch 0", model), 2);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "serve %s --bogus", model), 2);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "serve %s --host nowhere --port 0", model), 2);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "serve %s --api-key-file %s --port 0", model,
                                 keyf), 2);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "serve %s/none.kdm --port 0", dir), 2);
    /* a model file that fails verification: refused at start-up, named */
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "serve %s %s --port 0", model, bad), 1);
    ck_assert_msg(strstr(out, "bad.kdm"), "%s", out);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "loadtest"), 2);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "loadtest localhost:80"), 2);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "loadtest http://127.0.0.1:1 --seconds 0"), 2);
    /* nothing listens on port 1: a runtime failure, quickly */
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "loadtest http://127.0.0.1:1 --seconds 2"), 1);
}
END_TEST

/* A minimal valid experiment named NAME with the given serve section. */
static void write_exp(const char *path, const char *name, const char *serve)
{
    char y[2048];
    int n = snprintf(y, sizeof y,
                     "name: %s\ndata: {dataset: fashion-mnist}\nteacher:\n  layers:\n"
                     "    - {type: flatten}\n    - {type: dense, units: 10}\n"
                     "  train: {epochs: 1, optimizer: {kind: sgd, lr: 0.1}}\n%s",
                     name, serve);
    kdt_write(path, y, (size_t)n);
}

/* kdbench serve RUN_DIR takes RUN_DIR/config.yaml's serve section, and
 * kdbench serve X.yaml serves runs/NAME with X's; a flag overrides a key. */
START_TEST(test_cli_serve_config)
{
    char dir[256], path[512], keyf[512], other[512], cfg[1200];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/runs", dir);
    kd_err e = {0};
    ck_assert_int_eq(kd_mkdirs(path, &e), KD_OK);
    snprintf(path, sizeof path, "%s/runs/exp1", dir);
    ck_assert_int_eq(kd_mkdirs(path, &e), KD_OK);
    snprintf(path, sizeof path, "%s/runs/exp1/teacher.kdm", dir);
    nn_model *m = sf_model(23);
    ck_assert_int_eq(nn_model_save(m, path, &e), KD_OK);
    nn_model_free(m);
    snprintf(keyf, sizeof keyf, "%s/key", dir);
    snprintf(other, sizeof other, "%s/other", dir);
    kdt_write(keyf, "from-yaml\n", 10);
    kdt_write(other, "from-flag\n", 10);
    snprintf(cfg, sizeof cfg, "serve: {api_key_file: \"%s\", max_batch: 1, port: 1}\n", keyf);
    snprintf(path, sizeof path, "%s/runs/exp1/config.yaml", dir);
    write_exp(path, "exp1", cfg);
    snprintf(path, sizeof path, "%s/runs/exp1", dir);
    const char *yk = "Authorization: Bearer from-yaml\r\n", *fk = "Authorization: Bearer from-flag\r\n";
    kd_buf a = {0};
    const char *args1[] = {path};
    sf_child c;
    child_start(&c, args1, 1); /* --port 0 (appended) overrides port: 1 */
    ck_assert_int_eq(sf_req(c.port, "GET", "/v2/models/teacher", NULL, NULL, &a), 401);
    ck_assert_int_eq(sf_req(c.port, "GET", "/v2/models/teacher", yk, NULL, &a), 200);
    ck_assert_msg(strstr((char *)a.p, "\"batching\":\"shared\""), "%s", (char *)a.p);
    ck_assert_int_eq(child_stop(&c, SIGTERM), 0);
    const char *args2[] = {path, "--api-key-file", other};
    child_start(&c, args2, 3);
    ck_assert_int_eq(sf_req(c.port, "GET", "/v2/models/teacher", yk, NULL, &a), 401);
    ck_assert_int_eq(sf_req(c.port, "GET", "/v2/models/teacher", fk, NULL, &a), 200);
    ck_assert_int_eq(child_stop(&c, SIGTERM), 0);
    /* the experiment YAML: its run folder, from the working directory */
    ck_assert_int_eq(chdir(dir), 0);
    snprintf(path, sizeof path, "%s/x.yaml", dir);
    write_exp(path, "exp1", "serve:\n  api_key_file: other\n");
    const char *args3[] = {"x.yaml"};
    child_start(&c, args3, 1);
    ck_assert_int_eq(sf_req(c.port, "GET", "/v2/models/teacher", NULL, NULL, &a), 401);
    ck_assert_int_eq(sf_req(c.port, "GET", "/v2/models/teacher", fk, NULL, &a), 200);
    ck_assert_int_eq(child_stop(&c, SIGTERM), 0);
    kd_buf_free(&a);
    /* a bad serve key: FILE:LINE:COL with a did-you-mean, exit 2 before serving */
    char out[4096];
    write_exp(path, "exp1", "serve:\n  max_batch: 8\n  max_bacth: 4\n");
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "serve x.yaml --port 0"), 2);
    ck_assert_msg(strstr(out, "x.yaml:10:3") && strstr(out, "max_batch"), "%s", out);
    write_exp(path, "exp1", "serve: {max_queue: 0}\n");
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "serve x.yaml --port 0"), 2);
    ck_assert_msg(strstr(out, "x.yaml:8:") && strstr(out, "serve.max_queue"), "%s", out);
    snprintf(path, sizeof path, "%s/runs/exp1/config.yaml", dir);
    write_exp(path, "exp1", "serve: {host: nowhere}\n");
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "serve runs/exp1 --port 0"), 2);
    ck_assert_msg(strstr(out, "config.yaml:8:") && strstr(out, "serve.host"), "%s", out);
}
END_TEST

Suite *suite_serve_cli(void)
{
    Suite *s = suite_create("serve_cli");
    TCase *tc = tcase_create("cli");
    tcase_set_timeout(tc, 90);
    tcase_add_test(tc, test_cli_serve);
    tcase_add_test(tc, test_cli_serve_usage);
    tcase_add_test(tc, test_cli_serve_config);
    tcase_add_test(tc, test_cli_serve_signal_any_thread);
    suite_add_tcase(s, tc);
    return s;
}
