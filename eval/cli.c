/* cli.c — option parsing helpers shared by the subcommands. */
#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

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
    fprintf(stderr, "opd %s: %s\n", cmd, opd_last_error());
    return 1;
}

int cli_usage_error(const char *cmd) {
    fprintf(stderr, "opd %s: try 'opd %s --help'\n", cmd, cmd);
    return 2;
}

int cli_model_option(const char *cmd, int c, const char *arg, opd_config *cfg) {
    int rc = 0;
    switch (c) {
    case 1001: rc = cli_int(cmd, "vocab", arg, 2, 1 << 20, &cfg->vocab_size); break;
    case 1002: rc = cli_int(cmd, "d-model", arg, 2, 65536, &cfg->d_model); break;
    case 1003: rc = cli_int(cmd, "layers", arg, 1, 1024, &cfg->n_layers); break;
    case 1004: rc = cli_int(cmd, "heads", arg, 1, 4096, &cfg->n_heads); break;
    case 1005: rc = cli_int(cmd, "kv-heads", arg, 1, 4096, &cfg->n_kv_heads); break;
    case 1006: rc = cli_int(cmd, "ffn", arg, 1, 1 << 20, &cfg->d_ff); break;
    case 1007: rc = cli_int(cmd, "max-seq", arg, 1, 1 << 20, &cfg->max_seq_len); break;
    case 1008: rc = cli_int(cmd, "qkv-bias", arg, 0, 1, &cfg->qkv_bias); break;
    case 1009: rc = cli_int(cmd, "tie-embeddings", arg, 0, 1, &cfg->tie_embeddings); break;
    case 1010: rc = cli_float(cmd, "rope-theta", arg, 1.0001, 1e9, &cfg->rope_theta); break;
    case 1011: rc = cli_float(cmd, "rms-eps", arg, 1e-12, 0.5, &cfg->rms_eps); break;
    default: return 0;
    }
    return rc == 0 ? 1 : -1;
}
