/* fuzz_common.h — shared by the libFuzzer harnesses (tests/fuzz/): the
 * parsers take paths, so each input is written to a file in a private
 * temporary directory first. Built only with ./configure --enable-fuzz. */
#ifndef OPD_FUZZ_COMMON_H
#define OPD_FUZZ_COMMON_H

#define _GNU_SOURCE   /* nftw */

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <ftw.h>

static char fuzz_dir_path[64];

static int fuzz_rm(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    remove(p);
    return 0;
}

static void fuzz_cleanup(void) {
    if (fuzz_dir_path[0]) nftw(fuzz_dir_path, fuzz_rm, 16, FTW_DEPTH | FTW_PHYS);
}

/* One directory per process (libFuzzer -jobs/-fork run several at once),
 * removed at exit. */
static const char *fuzz_dir(void) {
    if (!fuzz_dir_path[0]) {
        snprintf(fuzz_dir_path, sizeof fuzz_dir_path, "/tmp/opd-fuzz-XXXXXX");
        if (!mkdtemp(fuzz_dir_path)) { perror("mkdtemp"); abort(); }
        atexit(fuzz_cleanup);
    }
    return fuzz_dir_path;
}

/* Writes data to DIR/name and returns the path (a static buffer). */
__attribute__((unused)) static const char *fuzz_write(const char *name, const uint8_t *data, size_t size) {
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", fuzz_dir(), name);
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); abort(); }
    if (size && fwrite(data, 1, size, f) != size) { perror(path); abort(); }
    if (fclose(f) != 0) { perror(path); abort(); }
    return path;
}

#endif
