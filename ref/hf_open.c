/* hf_open.c — which path is a Hugging Face model directory, and loading a
 * model from either kind of path: an opd checkpoint (ref/checkpoint.c) or a
 * Hugging Face directory (hf_load.c). See opd_hf.h. */
#include "hf_internal.h"

#include <errno.h>
#include <stdint.h>

/* ------------------------------------------------------------- dispatch */
int opd_hf_path(const char *path, char **dir_out) {
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        if (dir_out) *dir_out = xstrdup(path);
        return 1;
    }
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    int hf = strcmp(base, "config.json") == 0 || strcmp(base, "model.safetensors.index.json") == 0;
    if (!hf && strcmp(base, "model.safetensors") == 0) {
        /* the weights file of a directory: HF when a config.json sits next
         * to it (opd's own checkpoints keep their config inside) */
        size_t n = slash ? (size_t)(slash - path) + 1 : 0;
        char *cfg = opd_malloc(n + sizeof "config.json");
        memcpy(cfg, path, n);
        strcpy(cfg + n, "config.json");
        hf = is_file(cfg);
        free(cfg);
    }
    if (!hf) return 0;
    if (dir_out) {
        size_t n = slash ? (size_t)(slash - path) : 0;
        if (slash && n == 0) n = 1;   /* "/config.json" */
        char *d = opd_malloc(n + 2);
        if (slash) { memcpy(d, path, n); d[n] = '\0'; }
        else strcpy(d, ".");
        *dir_out = d;
    }
    return 1;
}

int opd_model_load_any(opd_model *m, const char *path, opd_adamw *opt) {
    char *dir = NULL;
    if (!opd_hf_path(path, &dir)) return opd_model_load(m, path, opt);
    int rc;
    if (opt) {
        memset(m, 0, sizeof *m);
        rc = opd_set_error("%s: a Hugging Face model directory holds no optimizer state "
                           "(resuming needs an opd checkpoint)", path);
    } else {
        rc = opd_hf_load(m, dir);
    }
    free(dir);
    return rc;
}

