// Per-CPU dispatch shared by the kernels: AVX-512 and AVX2 clones of a portable body, picked
// at run time, so one binary runs on any x86-64 and uses the widest vectors available.
#pragma once

#include "CKernels.h"

#define SDF_INLINE static inline __attribute__((always_inline))

// Fully unrolls the loop it precedes (constant trip counts over register tiles, so that the
// accumulators stay in registers). -O3 did this by itself; SwiftPM's release builds use -O2, and
// a package that others depend on cannot set -O3 (unsafeFlags).
#if defined(__clang__)
#define SDF_UNROLL _Pragma("clang loop unroll(full)")
#else
#define SDF_UNROLL _Pragma("GCC unroll 16")
#endif

// The widest instruction set this thread's kernels may use (sdf_isa_cap_set; CKernels.h names the
// levels). Per thread, so that two runs in one process can use different caps: the Swift side sets it
// for the thread that runs a computation and for each worker of its parallel loops.
extern _Thread_local int sdf_isa_cap;

#if defined(__x86_64__)
#define SDF_X86 1
#define SDF_AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,f16c")))
#define SDF_AVX2 __attribute__((target("avx2,fma,f16c")))
// The CPU checks (each a load of the CPU model the runtime reads once at start-up, which also
// checks that the OS saves the vector registers): every feature the SDF_AVX512 clones are built for.
SDF_INLINE int sdf_cpu_avx512(void) {
    return sdf_isa_cap >= SDF_ISA_AVX512 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq");
}
SDF_INLINE int sdf_cpu_avx2(void) { return sdf_isa_cap >= SDF_ISA_AVX2 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
// Defines name_avx512 from the inline body avx512_body (which may use AVX-512 intrinsics),
// name_avx2 and name_generic from plain_body, and the public name that picks one per call.
#define SDF_MULTIVERSION_BODIES(name, avx512_body, plain_body, params, args) \
    SDF_AVX512 static void name##_avx512 params { avx512_body args; }         \
    SDF_AVX2 static void name##_avx2 params { plain_body args; }              \
    static void name##_generic params { plain_body args; }                   \
    void name params {                                                        \
        if (sdf_cpu_avx512()) name##_avx512 args;                             \
        else if (sdf_cpu_avx2()) name##_avx2 args;                            \
        else name##_generic args;                                             \
    }
#else
#define SDF_X86 0
#define SDF_MULTIVERSION_BODIES(name, avx512_body, plain_body, params, args) \
    void name params { plain_body args; }
#endif
// The same clones, all from the inline body name_body.
#define SDF_MULTIVERSION(name, params, args) SDF_MULTIVERSION_BODIES(name, name##_body, name##_body, params, args)
