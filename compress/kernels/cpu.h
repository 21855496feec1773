/* cpu — the one CPU-feature probe behind every kernel's run-time dispatch.
 *
 * Levels are ordered: a kernel written for level L runs on any host whose
 * level is >= L.  AVX2 means AVX2 + FMA + F16C; AVX512 means AVX-512
 * F/BW/VL/DQ.
 * The level kernels use is the host's, capped by the KD_ISA environment
 * variable (scalar | avx2 | avx512, read once) and by kernels_isa_force
 * (tests and benchmarks), so every lower path can be run on any host.
 * Extra features (VNNI) count only when the level they need is in use. */
#ifndef KD_COMPRESS_KERNELS_CPU_H
#define KD_COMPRESS_KERNELS_CPU_H

typedef enum { KD_ISA_SCALAR = 0, KD_ISA_AVX2, KD_ISA_AVX512, KD_ISA_N } kd_isa;

/* The widest level this CPU runs (ignores KD_ISA and forcing). */
kd_isa kernels_isa_host(void);
/* The level kernels dispatch on now: min(host, KD_ISA, forced cap). */
kd_isa kernels_isa(void);
/* 1 when level <= the host's. */
int kernels_isa_supported(kd_isa level);
/* "scalar", "avx2", "avx512" ("?" out of range). */
const char *kernels_isa_name(kd_isa level);
/* Parses a level name; 0, or -1 for an unknown name. */
int kernels_isa_parse(const char *s, kd_isa *out);
/* Caps the level for this process at min(level, KD_ISA, host); returns the
 * cap before the call (KD_ISA_N = no cap).  For tests and benchmarks. */
kd_isa kernels_isa_force(kd_isa level);
/* AVX-512 VNNI in use (level AVX512 and the CPU has avx512vnni). */
int kernels_has_vnni512(void);
/* AVX-VNNI (256-bit) in use: the CPU has avxvnni and the level is the
 * host's own (a forced lower level is a plain CPU of that level). */
int kernels_has_avxvnni(void);
/* The kernel path in use for reports: "scalar", "avx2", "avx2-vnni",
 * "avx512", "avx512-vnni". */
const char *kernels_isa_label(void);
/* The KD_ISA value when it names no level (for the CLI to refuse), else NULL. */
const char *kernels_isa_env_error(void);

#endif
