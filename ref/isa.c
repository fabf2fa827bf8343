/* isa.c — which instruction-set path the kernels take.
 *
 * Chosen once, from the CPU's features (the widest it has), or forced with
 * OPD_ISA=avx512|avx2|scalar so one machine can run every path. The choice
 * never changes a result: every path gives the same bits (kernels.h). A
 * path the CPU lacks is refused with a warning and the best one it has is
 * used instead. */
#include "opd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* -1 until chosen; read without a lock once set (the first call may come
 * from inside a parallel region: attention runs its gemms per head) */
static int isa_state = -1;
const char *opd_isa_name(opd_isa i) {
    return i == OPD_ISA_AVX512 ? "avx512" : i == OPD_ISA_AVX2 ? "avx2" : "scalar";
}

int opd_isa_parse(const char *name, opd_isa *out) {
    if (!strcmp(name, "avx512")) *out = OPD_ISA_AVX512;
    else if (!strcmp(name, "avx2")) *out = OPD_ISA_AVX2;
    else if (!strcmp(name, "scalar")) *out = OPD_ISA_SCALAR;
    else return opd_set_error("OPD_ISA '%s' is not avx512, avx2 or scalar", name);
    return 0;
}

int opd_isa_supported(opd_isa i) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (i == OPD_ISA_AVX512) return !!__builtin_cpu_supports("avx512f");
    if (i == OPD_ISA_AVX2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 1 : 0;
#else
    if (i != OPD_ISA_SCALAR) return 0;
#endif
    return 1;
}

static opd_isa isa_best(void) {
    if (opd_isa_supported(OPD_ISA_AVX512)) return OPD_ISA_AVX512;
    if (opd_isa_supported(OPD_ISA_AVX2)) return OPD_ISA_AVX2;
    return OPD_ISA_SCALAR;
}

static opd_isa isa_choose(void) {
    opd_isa want = isa_best();
    const char *env = getenv("OPD_ISA");
    if (env && *env) {
        opd_isa req;
        if (opd_isa_parse(env, &req) != 0)
            fprintf(stderr, "opd: %s; using %s\n", opd_last_error(), opd_isa_name(want));
        else if (!opd_isa_supported(req))
            fprintf(stderr, "opd: OPD_ISA=%s but this CPU does not have it; using %s\n", env,
                    opd_isa_name(want));
        else
            want = req;
    }
    return want;
}

opd_isa opd_isa_get(void) {
    int v = __atomic_load_n(&isa_state, __ATOMIC_ACQUIRE);
    if (v >= 0) return (opd_isa)v;
#pragma omp critical(opd_isa_choice)
    {
        if (__atomic_load_n(&isa_state, __ATOMIC_ACQUIRE) < 0)
            __atomic_store_n(&isa_state, (int)isa_choose(), __ATOMIC_RELEASE);
    }
    return (opd_isa)__atomic_load_n(&isa_state, __ATOMIC_ACQUIRE);
}

int opd_isa_set(opd_isa i) {
    if (!opd_isa_supported(i))
        return opd_set_error("this CPU cannot run the %s path", opd_isa_name(i));
    __atomic_store_n(&isa_state, (int)i, __ATOMIC_RELEASE);
    return 0;
}
