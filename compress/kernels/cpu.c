/* The CPU probe: __builtin_cpu_supports is called here and nowhere else.
 * The host's features never change while a process runs, so they are read
 * once; the cap (KD_ISA, kernels_isa_force) is the only state that moves. */
#include "cpu.h"

#include <cpuid.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static const char *const isa_names[KD_ISA_N] = {"scalar", "avx2", "avx512"};

static struct {
    kd_isa host, env_cap;
    int vnni512, avxvnni;
    const char *env_bad;
} probe;
static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static _Atomic int forced = KD_ISA_N;

/* Two bits __builtin_cpu_supports cannot name everywhere (clang 14, which
 * make fuzz builds with, knows neither), read from CPUID: F16C (leaf 1, ECX
 * bit 29) and AVX-VNNI (leaf 7 subleaf 1, EAX bit 4). */
static int has_f16c(void)
{
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c >> 29 & 1);
}

static int has_avxvnni(void)
{
    unsigned a, b, c, d;
    return __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a >> 4 & 1);
}

static void probe_run(void)
{
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
               has_f16c(); /* int4's fp16 scales; every AVX2 CPU has it */
    int avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    probe.host = avx512 ? KD_ISA_AVX512 : avx2 ? KD_ISA_AVX2 : KD_ISA_SCALAR;
    probe.vnni512 = avx512 && __builtin_cpu_supports("avx512vnni");
    probe.avxvnni = avx2 && has_avxvnni();
    probe.env_cap = KD_ISA_N;
    const char *s = getenv("KD_ISA");
    if (s && *s && kernels_isa_parse(s, &probe.env_cap) != 0) {
        probe.env_cap = KD_ISA_N;
        probe.env_bad = s;
    }
}

static void probe_init(void) { pthread_once(&probe_once, probe_run); }

kd_isa kernels_isa_host(void)
{
    probe_init();
    return probe.host;
}

kd_isa kernels_isa(void)
{
    probe_init();
    kd_isa l = probe.host;
    if (probe.env_cap < l)
        l = probe.env_cap;
    kd_isa f = (kd_isa)atomic_load_explicit(&forced, memory_order_relaxed);
    return f < l ? f : l;
}

int kernels_isa_supported(kd_isa level) { return level >= 0 && level <= kernels_isa_host(); }

const char *kernels_isa_name(kd_isa level)
{
    return level >= 0 && level < KD_ISA_N ? isa_names[level] : "?";
}

int kernels_isa_parse(const char *s, kd_isa *out)
{
    for (int i = 0; i < KD_ISA_N; i++)
        if (strcmp(s, isa_names[i]) == 0) {
            *out = (kd_isa)i;
            return 0;
        }
    return -1;
}

kd_isa kernels_isa_force(kd_isa level)
{
    probe_init();
    if (level < 0 || level > KD_ISA_N)
        level = KD_ISA_N;
    return (kd_isa)atomic_exchange(&forced, (int)level);
}

int kernels_has_vnni512(void) { return kernels_isa() == KD_ISA_AVX512 && probe.vnni512; }

/* Only at the host's own level: a cap below it (KD_ISA=avx2 on an AVX-512
 * host) stands for a plain AVX2 + FMA CPU such as AMD Zen 3, without extras. */
int kernels_has_avxvnni(void)
{
    kd_isa l = kernels_isa();
    return l >= KD_ISA_AVX2 && l == probe.host && probe.avxvnni;
}

const char *kernels_isa_label(void)
{
    switch (kernels_isa()) {
    case KD_ISA_AVX512:
        return probe.vnni512 ? "avx512-vnni" : "avx512";
    case KD_ISA_AVX2:
        return kernels_has_avxvnni() ? "avx2-vnni" : "avx2";
    default:
        return "scalar";
    }
}

const char *kernels_isa_env_error(void)
{
    probe_init();
    return probe.env_bad;
}
