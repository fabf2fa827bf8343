/* cmd_golden.c — `opd golden write DIR` and `opd golden check REF CANDIDATE`. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "golden.h"

static const char *golden_help =
    "usage: opd golden write [--config config.json [--layers N]] [--keep-backend] DIR\n"
    "       opd golden check [--exact] [--quiet] [--manifest FILE] REF CANDIDATE\n"
    "\n"
    "write: the reference's golden tensors (one OPD step of a fixed tiny\n"
    "  teacher/student pair, every layer alone, the schedules) into DIR:\n"
    "  " OPD_GOLDEN_STEP_FILE ", " OPD_GOLDEN_LAYERS_FILE ", " OPD_GOLDEN_MANIFEST ".\n"
    "  --config F       at a real model's shapes instead: hidden, heads, kv heads,\n"
    "                   head_dim, intermediate, vocab, rope_theta, rms_eps of a\n"
    "                   Hugging Face config.json (or its directory), seeded\n"
    "                   random weights, --layers N blocks (default 1); see\n"
    "                   golden/README.md for what is kept at that size\n"
    "  --keep-backend   run the matmuls on the backend OPD_MATMUL selects instead\n"
    "                   of the reference's own gemm (to check that backend)\n"
    "check: compare CANDIDATE against REF tensor by tensor (both directories,\n"
    "  or both files) with the manifest's tolerances; prints max abs / rel\n"
    "  error, max ULP distance and NMSE per tensor and\n"
    "  'golden: N passed, M failed'. Exit 0 when all pass, 1 when any fails\n"
    "  (a missing tensor or a dtype/shape mismatch fails), 2 on a usage error,\n"
    "  an unreadable/corrupted file, a manifest file entry that is not a plain\n"
    "  file name, or when nothing was compared.\n"
    "  --exact          zero tolerance: every element bit-identical\n"
    "  --quiet          print only failing tensors and the summary\n"
    "  --manifest FILE  tolerances from FILE (default: REF/manifest.json, or\n"
    "                   manifest.json next to a REF file)\n";

static int golden_write(int argc, char **argv) {
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'}, {"layers", required_argument, 0, 'l'},
        {"keep-backend", no_argument, 0, 'k'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *config = NULL;
    int layers = 1, keep = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:l:kh", opts, NULL)) != -1) {
        switch (c) {
        case 'c': config = optarg; break;
        case 'l': if (cli_int("golden", "layers", optarg, 1, 1024, &layers)) return 2; break;
        case 'k': keep = 1; break;
        case 'h': printf("%s", golden_help); return 0;
        default: fprintf(stderr, "%s", golden_help); return 2;
        }
    }
    if (argc - optind != 1 || (!config && layers != 1)) {
        fprintf(stderr, "%s", golden_help);
        return 2;
    }
    const char *dir = argv[optind];
    opd_config cfg;
    if (config) {
        /* a config.json file or the directory holding one */
        char *cdir = strdup(config);
        size_t n = strlen(cdir);
        if (n >= 11 && !strcmp(cdir + n - 11, "config.json")) {
            char *slash = strrchr(cdir, '/');
            if (slash) *slash = '\0'; else strcpy(cdir, ".");
        }
        int rc = opd_hf_read_config(cdir, &cfg);
        free(cdir);
        if (rc != 0) return cli_fail("golden");
        cfg.n_layers = layers;
    }
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "opd golden: cannot create directory %s: %s\n", dir, strerror(errno));
        return 1;
    }
    if (opd_golden_write_shape(dir, config ? &cfg : NULL, keep) != 0) return cli_fail("golden");
    printf("opd golden: wrote %s/{%s,%s,%s}\n", dir, OPD_GOLDEN_STEP_FILE, OPD_GOLDEN_LAYERS_FILE,
           OPD_GOLDEN_MANIFEST);
    return 0;
}

static int golden_check(int argc, char **argv) {
    static const struct option opts[] = {
        {"exact", no_argument, 0, 'e'},
        {"quiet", no_argument, 0, 'q'},
        {"manifest", required_argument, 0, 'm'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    opd_golden_check_opts o = {.out = stdout};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "eqm:h", opts, NULL)) != -1) {
        switch (c) {
        case 'e': o.exact = 1; break;
        case 'q': o.quiet = 1; break;
        case 'm': o.manifest = optarg; break;
        case 'h': printf("%s", golden_help); return 0;
        default: fprintf(stderr, "%s", golden_help); return 2;
        }
    }
    if (argc - optind != 2) {
        fprintf(stderr, "opd golden check: need REF and CANDIDATE\n%s", golden_help);
        return 2;
    }
    int np, nf;
    int rc = opd_golden_check(argv[optind], argv[optind + 1], &o, &np, &nf);
    fflush(stdout);
    if (rc < 0) {
        fprintf(stderr, "opd golden check: %s\n", opd_last_error());
        return 2;
    }
    return rc == 0 ? 0 : 1;
}

int cmd_golden(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        printf("%s", golden_help);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "write")) return golden_write(argc - 1, argv + 1);
    if (!strcmp(argv[1], "check")) return golden_check(argc - 1, argv + 1);
    fprintf(stderr, "opd golden: unknown action '%s' (write or check)\n%s", argv[1], golden_help);
    return 2;
}
