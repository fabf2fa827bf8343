/* libFuzzer harness: `opd golden check REF CAND` with the input as
 * REF/manifest.json; REF and CAND hold one small safetensors file, a.st,
 * that manifest entries can name. */
#include "fuzz_common.h"
#include "golden.h"
#include "opd.h"

#include <sys/stat.h>

static char ref[128], cand[128];

static void setup(void) {
    snprintf(ref, sizeof ref, "%s/ref", fuzz_dir());
    snprintf(cand, sizeof cand, "%s/cand", fuzz_dir());
    mkdir(ref, 0700);
    mkdir(cand, 0700);
    opd_safetensors st;
    opd_st_init(&st);
    float x[6] = {1, 2, 3, 4, 5, 6};
    int64_t s2[2] = {2, 3}, s1[1] = {4};
    if (opd_st_add(&st, "x", OPD_F32, 2, s2, x) != 0 || opd_st_add(&st, "y", OPD_F32, 1, s1, x) != 0) abort();
    char p[256];
    snprintf(p, sizeof p, "%s/a.st", ref);
    if (opd_st_write(&st, p) != 0) abort();
    snprintf(p, sizeof p, "%s/a.st", cand);
    if (opd_st_write(&st, p) != 0) abort();
    opd_st_free(&st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!ref[0]) setup();
    char p[256];
    snprintf(p, sizeof p, "%s/manifest.json", ref);
    FILE *f = fopen(p, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) abort();
    opd_golden_check_opts o = {.out = NULL};
    int np, nf;
    int rc = opd_golden_check(ref, cand, &o, &np, &nf);
    if (rc == 0 && (nf != 0 || np == 0)) abort();   /* a pass compared something */
    return 0;
}
