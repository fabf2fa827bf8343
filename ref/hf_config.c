/* hf_config.c — a Hugging Face config.json -> opd_config (opd_hf_read_config):
 * map the keys opd has, refuse what opd cannot compute (rope_scaling,
 * sliding window, MLP / o_proj biases, another activation, ...) with one
 * line naming the file and the key. */
#include "hf_internal.h"

#include <limits.h>
#include <math.h>

/* --------------------------------------------------------------- config */
/* An integer key in [lo, hi]; absent or null: def (def < 0: required). */
static int cfg_int(json_t *root, const char *path, const char *key, long def,
                   long lo, long hi, int *out) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        if (def < 0) return opd_set_error("%s: key '%s' is missing", path, key);
        *out = (int)def;
        return 0;
    }
    if (!json_is_integer(v))
        return opd_set_error("%s: key '%s' is not an integer", path, key);
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return opd_set_error("%s: key '%s' = %" JSON_INTEGER_FORMAT " out of range [%ld, %ld]",
                             path, key, x, lo, hi);
    *out = (int)x;
    return 0;
}

static int cfg_num(json_t *root, const char *path, const char *key, double def,
                   double *out) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) { *out = def; return 0; }
    if (!json_is_number(v)) return opd_set_error("%s: key '%s' is not a number", path, key);
    *out = json_number_value(v);
    if (!isfinite(*out)) return opd_set_error("%s: key '%s' is not finite", path, key);
    return 0;
}

static int cfg_bool(json_t *root, const char *path, const char *key, int def, int *out) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) { *out = def; return 0; }
    if (!json_is_boolean(v)) return opd_set_error("%s: key '%s' is not true or false", path, key);
    *out = json_is_true(v);
    return 0;
}

/* A key that must be absent, null or false (or 0) because opd has no such
 * feature: `why` says what opd does instead. */
static int cfg_refuse(json_t *root, const char *path, const char *key, const char *why) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v) || json_is_false(v)) return 0;
    if (json_is_number(v) && json_number_value(v) == 0.0) return 0;
    return opd_set_error("%s: key '%s' is not supported (%s)", path, key, why);
}

static int parse_config(json_t *root, const char *path, opd_config *out) {
    json_t *mt = json_object_get(root, "model_type");
    if (!json_is_string(mt))
        return opd_set_error("%s: key 'model_type' is missing (opd loads qwen2 and llama)", path);
    const char *type = json_string_value(mt);
    int qwen2 = strcmp(type, "qwen2") == 0, llama = strcmp(type, "llama") == 0;
    if (!qwen2 && !llama)
        return opd_set_error("%s: key 'model_type' = \"%s\" is not supported (opd loads qwen2 and llama)",
                             path, type);
    const char *arch = qwen2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM";
    json_t *ja = json_object_get(root, "architectures");
    if (ja && !json_is_null(ja)) {
        if (!json_is_array(ja) || json_array_size(ja) != 1 || !json_is_string(json_array_get(ja, 0)))
            return opd_set_error("%s: key 'architectures' must be [\"%s\"]", path, arch);
        const char *a = json_string_value(json_array_get(ja, 0));
        if (strcmp(a, arch) != 0)
            return opd_set_error("%s: key 'architectures' = [\"%s\"] is not supported (opd loads %s for model_type %s)",
                                 path, a, arch, type);
    }

    opd_config c;
    opd_config_default(&c);
    int mpe = 0;
    if (cfg_int(root, path, "hidden_size", -1, 2, 65536, &c.d_model) ||
        cfg_int(root, path, "num_hidden_layers", -1, 1, 1024, &c.n_layers) ||
        cfg_int(root, path, "num_attention_heads", -1, 1, 65536, &c.n_heads) ||
        cfg_int(root, path, "num_key_value_heads", c.n_heads, 1, 65536, &c.n_kv_heads) ||
        cfg_int(root, path, "intermediate_size", -1, 1, 1 << 20, &c.d_ff) ||
        cfg_int(root, path, "vocab_size", -1, 2, 1 << 20, &c.vocab_size) ||
        /* transformers' defaults: Qwen2Config 32768, LlamaConfig 2048 */
        cfg_int(root, path, "max_position_embeddings", qwen2 ? 32768 : 2048, 1, INT_MAX, &mpe))
        return -1;
    if (c.d_model % c.n_heads != 0)
        return opd_set_error("%s: key 'num_attention_heads' = %d does not divide hidden_size %d",
                             path, c.n_heads, c.d_model);
    if (c.n_heads % c.n_kv_heads != 0)
        return opd_set_error("%s: key 'num_key_value_heads' = %d does not divide num_attention_heads %d",
                             path, c.n_kv_heads, c.n_heads);
    int head_dim;
    if (cfg_int(root, path, "head_dim", c.d_model / c.n_heads, 1, 65536, &head_dim)) return -1;
    if (head_dim != c.d_model / c.n_heads)
        return opd_set_error("%s: key 'head_dim' = %d is not supported (opd's head dim is hidden_size / "
                             "num_attention_heads = %d)", path, head_dim, c.d_model / c.n_heads);
    if (head_dim % 2 != 0)
        return opd_set_error("%s: key 'num_attention_heads' = %d gives an odd head dim %d (RoPE needs it even)",
                             path, c.n_heads, head_dim);
    c.max_seq_len = mpe < OPD_HF_MAX_SEQ_LEN ? mpe : OPD_HF_MAX_SEQ_LEN;

    double theta = 0, eps = 0;
    if (cfg_num(root, path, "rope_theta", 10000.0, &theta) ||
        cfg_num(root, path, "rms_norm_eps", 1e-6, &eps) ||
        cfg_bool(root, path, "tie_word_embeddings", 0, &c.tie_embeddings))
        return -1;
    if (!(eps > 0.0 && eps < 1.0)) return opd_set_error("%s: key 'rms_norm_eps' = %g is not in (0, 1)", path, eps);
    if (!(theta > 1.0 && theta < 3.0e38)) return opd_set_error("%s: key 'rope_theta' = %g is not a number > 1", path, theta);
    /* transformers applies both in fp32 (eps is added to an fp32 tensor) */
    c.rope_theta = (float)theta;
    c.rms_eps = (float)eps;

    json_t *act = json_object_get(root, "hidden_act");
    if (act && !(json_is_string(act) && strcmp(json_string_value(act), "silu") == 0))
        return opd_set_error("%s: key 'hidden_act' is not supported (opd's MLP is SwiGLU with silu)", path);
    if (cfg_refuse(root, path, "rope_scaling", "opd implements plain RoPE") ||
        cfg_refuse(root, path, "attention_dropout", "opd has no dropout") ||
        cfg_refuse(root, path, "mlp_bias", "opd's MLP has no biases"))
        return -1;
    if (qwen2) {
        /* Qwen2: bias on q/k/v, always; none on o_proj */
        c.qkv_bias = 1;
        if (cfg_refuse(root, path, "use_sliding_window", "opd attends over the whole sequence"))
            return -1;
    } else {
        /* LlamaAttention puts attention_bias on q, k, v AND o_proj; opd has
         * no o_proj bias */
        c.qkv_bias = 0;
        if (cfg_refuse(root, path, "attention_bias", "Llama's attention_bias includes an o_proj bias, "
                                                     "which opd does not have"))
            return -1;
    }
    if (opd_config_validate(&c, path) != 0) return -1;
    *out = c;
    return 0;
}

int opd_hf_read_config(const char *dir, opd_config *cfg) {
    char *path = join(dir, "config.json");
    if (!is_file(path)) {
        free(path);
        return opd_set_error("%s: no config.json: not a Hugging Face model directory", dir);
    }
    json_t *root = opd_hf_load_json(path, HF_MAX_CONFIG);
    int rc = root ? parse_config(root, path, cfg) : -1;
    json_decref(root);
    free(path);
    return rc;
}

