/* hf_model.c — Hugging Face model directories (see opd_hf.h).
 *
 * A directory written by transformers' save_pretrained holds config.json and
 * either model.safetensors or model.safetensors.index.json naming shard
 * files ("weight_map": tensor name -> file). opd's tensor names are already
 * the Hugging Face ones (opd_param_tensors), so loading is: map the config,
 * refuse what opd cannot compute, check every tensor's dtype and shape
 * against it, then read the tensors one at a time, converting BF16 / F16 to
 * fp32 on the way.
 *
 * The safetensors headers are parsed in hf_load.c (not by ref/safetensors.c)
 * because that reader knows neither BF16 nor F16 and reads the data into its
 * own copies; there the data goes straight into the model's buffer. Nothing
 * in a file is trusted: sizes are checked against the file before they are
 * used.
 *
 * Files: this one (what the others share: the 16-bit floats, JSON files),
 * hf_config.c (config.json), hf_load.c (the weights in), hf_save.c (a model
 * out), hf_open.c (which path is a Hugging Face model; loading either kind);
 * hf_internal.h their internal declarations.
 */
#include "hf_internal.h"

#include <errno.h>
#include <stdint.h>

/* ------------------------------------------------------ 16-bit floats */
float opd_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float opd_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1f;      /* biased by 15 */
    uint32_t man = h & 0x3ff;             /* 10 bits */
    uint32_t u;
    if (exp == 0x1f) {                    /* inf, or NaN with its payload */
        u = sign | 0x7f800000u | (man << 13);
    } else if (exp != 0) {                /* normal: rebias 15 -> 127 */
        u = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man == 0) {                /* +-0 */
        u = sign;
    } else {
        /* subnormal: man * 2^-24. With k the top set bit of man (0..9), that
         * is 1.f * 2^(k-24): a normal fp32 with exponent field k - 24 + 127. */
        int k = 31 - __builtin_clz(man);
        u = sign | ((uint32_t)(k + 103) << 23) | ((man << (23 - k)) & 0x7fffffu);
    }
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

uint16_t opd_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u)         /* NaN: truncating could give inf */
        return (uint16_t)((u >> 16) | 0x0040u);
    /* add half an ulp of bf16, minus one unless the kept lsb is odd: ties go
     * to the even neighbour; a carry into the exponent is the right result
     * (up to inf for values past the largest bf16) */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* ------------------------------------------------------------ JSON files */
json_t *opd_hf_load_json(const char *path, size_t limit) {
    struct stat sb;
    if (stat(path, &sb) != 0) {
        opd_set_error("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    if ((uint64_t)sb.st_size > limit) {
        opd_set_error("%s: %lld bytes, more than the %zu a file of this kind may have",
                      path, (long long)sb.st_size, limit);
        return NULL;
    }
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        opd_set_error("%s: invalid JSON: %s (line %d, column %d)", path, jerr.text, jerr.line, jerr.column);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        opd_set_error("%s: not a JSON object", path);
        return NULL;
    }
    return root;
}
