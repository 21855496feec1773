/* Replays files through a fuzz target without libFuzzer: each argument is a
 * file or a folder (every regular file in it, sorted), fed to
 * LLVMFuzzerTestOneInput once.  Built with any compiler (make fuzz-replay:
 * gcc with ASan+UBSan) so the corpus runs where clang is not installed. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return 1;
    }
    size_t cap = 1 << 16, n = 0;
    uint8_t *p = malloc(cap);
    for (size_t r; p && (r = fread(p + n, 1, cap - n, f)) > 0;) {
        n += r;
        if (n == cap) {
            uint8_t *q = realloc(p, cap *= 2);
            if (!q)
                free(p);
            p = q;
        }
    }
    int bad = ferror(f) || !p;
    fclose(f);
    if (bad) {
        fprintf(stderr, "%s: cannot read\n", path);
        free(p);
        return 1;
    }
    /* an exact-size copy, so reads past the end are caught */
    uint8_t *exact = malloc(n ? n : 1);
    memcpy(exact, p, n);
    free(p);
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_dir(const char *path, int *count)
{
    DIR *d = opendir(path);
    if (!d) {
        perror(path);
        return 1;
    }
    char **names = NULL;
    size_t n = 0;
    for (struct dirent *de; (de = readdir(d));) {
        char full[4096];
        struct stat st;
        snprintf(full, sizeof full, "%s/%s", path, de->d_name);
        if (stat(full, &st) == 0 && S_ISREG(st.st_mode)) {
            names = realloc(names, (n + 1) * sizeof *names);
            names[n++] = strdup(full);
        }
    }
    closedir(d);
    qsort(names, n, sizeof *names, by_name);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        rc |= run_file(names[i]);
        free(names[i]);
        ++*count;
    }
    free(names);
    return rc;
}

int main(int argc, char **argv)
{
    int rc = 0, count = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
            rc |= run_dir(argv[i], &count);
        } else {
            rc |= run_file(argv[i]);
            count++;
        }
    }
    printf("replay: %d inputs%s\n", count, rc ? " (some could not be read)" : "");
    return rc;
}
