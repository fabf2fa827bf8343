/* cli.c — what the subcommands share (cli.h). */
#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int cli_long(const char *cmd, const char *opt, const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0') {
        fprintf(stderr, "opd %s: --%s: '%s' is not an integer\n", cmd, opt, s);
        return -1;
    }
    if (v < lo || v > hi) {
        fprintf(stderr, "opd %s: --%s: %ld is out of range [%ld, %ld]\n", cmd, opt, v, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_int(const char *cmd, const char *opt, const char *s, long lo, long hi, int *out) {
    long v;
    if (cli_long(cmd, opt, s, lo, hi, &v) != 0) return -1;
    *out = (int)v;
    return 0;
}

int cli_float(const char *cmd, const char *opt, const char *s, double lo, double hi, float *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || !isfinite(v)) {
        fprintf(stderr, "opd %s: --%s: '%s' is not a finite number\n", cmd, opt, s);
        return -1;
    }
    if (v < lo || v > hi) {
        fprintf(stderr, "opd %s: --%s: %g is out of range [%g, %g]\n", cmd, opt, v, lo, hi);
        return -1;
    }
    *out = (float)v;
    return 0;
}

int cli_u64(const char *cmd, const char *opt, const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end != '\0' || s[0] == '-') {
        fprintf(stderr, "opd %s: --%s: '%s' is not a non-negative integer\n", cmd, opt, s);
        return -1;
    }
    *out = (uint64_t)v;
    return 0;
}

int cli_fail(const char *cmd) {
    if (opd_dist_size() > 1)   /* which rank failed */
        fprintf(stderr, "opd %s (rank %d of %d): %s\n", cmd, opd_dist_rank(), opd_dist_size(), opd_last_error());
    else
        fprintf(stderr, "opd %s: %s\n", cmd, opd_last_error());
    return 1;
}

int cli_usage_error(const char *cmd) {
    fprintf(stderr, "opd %s: try 'opd %s --help'\n", cmd, cmd);
    return 2;
}

void cli_deprecated(const char *cmd, const char *old, const char *now) {
    fprintf(stderr, "opd %s: %s is deprecated, use %s\n", cmd, old, now);
}

int cli_device(const char *cmd, const char *name, opd_device_kind *out) {
    if (!strcmp(name, "cpu")) { *out = OPD_DEVICE_CPU; return 0; }
    if (!strcmp(name, "cuda")) {
        if (opd_device_have_cuda()) { *out = OPD_DEVICE_CUDA; return 0; }
        fprintf(stderr, "opd %s: --device cuda: this opd was built without CUDA: ./configure --with-cuda\n", cmd);
        return -1;
    }
    fprintf(stderr, "opd %s: --device: '%s' is not cpu or cuda\n", cmd, name);
    return -1;
}

int cli_mkdir_p(const char *cmd, const char *dir) {
    char *p = strdup(dir);
    int rc = 0;
    for (char *s = p + 1; ; s++) {
        if (*s != '/' && *s != '\0') continue;
        char c = *s;
        *s = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST) {
            fprintf(stderr, "opd %s: cannot create directory %s: %s\n", cmd, p, strerror(errno));
            rc = -1;
            break;
        }
        *s = c;
        if (c == '\0') break;
    }
    free(p);
    return rc;
}

char *cli_path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = opd_malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

int cli_progress_tty(void) { return isatty(fileno(stderr)); }

int cli_model_option(const char *cmd, int c, const char *arg, opd_config *cfg) {
    int rc = 0;
    switch (c) {
    case OPT_VOCAB: rc = cli_int(cmd, "vocab", arg, 2, 1 << 20, &cfg->vocab_size); break;
    case OPT_D_MODEL: rc = cli_int(cmd, "d-model", arg, 2, 65536, &cfg->d_model); break;
    case OPT_LAYERS: rc = cli_int(cmd, "layers", arg, 1, 1024, &cfg->n_layers); break;
    case OPT_HEADS: rc = cli_int(cmd, "heads", arg, 1, 4096, &cfg->n_heads); break;
    case OPT_KV_HEADS: rc = cli_int(cmd, "kv-heads", arg, 1, 4096, &cfg->n_kv_heads); break;
    case OPT_FFN: rc = cli_int(cmd, "ffn", arg, 1, 1 << 20, &cfg->d_ff); break;
    case OPT_MAX_SEQ: rc = cli_int(cmd, "max-seq", arg, 1, 1 << 20, &cfg->max_seq_len); break;
    case OPT_QKV_BIAS: rc = cli_int(cmd, "qkv-bias", arg, 0, 1, &cfg->qkv_bias); break;
    case OPT_TIE_EMBEDDINGS: rc = cli_int(cmd, "tie-embeddings", arg, 0, 1, &cfg->tie_embeddings); break;
    case OPT_ROPE_THETA: rc = cli_float(cmd, "rope-theta", arg, 1.0001, 1e9, &cfg->rope_theta); break;
    case OPT_RMS_EPS: rc = cli_float(cmd, "rms-eps", arg, 1e-12, 0.5, &cfg->rms_eps); break;
    default: return 0;
    }
    return rc == 0 ? 1 : -1;
}
