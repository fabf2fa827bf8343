/* opd_hf.h — Hugging Face model directories (ref/hf_*.c): read what
 * transformers' save_pretrained writes for Qwen2 and Llama models, and write
 * an opd model as such a directory.
 *
 * Read: config.json (model_type "qwen2" or "llama") plus model.safetensors or
 * a sharded model.safetensors.index.json; weights in F32, BF16 or F16 are
 * converted to fp32 exactly. Anything opd cannot represent (rope_scaling,
 * sliding window, MLP / o_proj biases, another activation, ...) is refused
 * with one line naming the file and the key or tensor.
 * Write: config.json + model.safetensors (F32, or BF16 rounded to nearest
 * even), into a temporary directory renamed into place. */
#ifndef OPD_HF_H
#define OPD_HF_H

#include "opd.h"

#ifdef __cplusplus
extern "C" {
#endif

/* max_seq_len of a loaded model: min(max_position_embeddings, this). opd
 * sizes no buffer by max_seq_len (activations and KV caches are sized by the
 * batch actually run), so this is only the limit opd_config_validate takes. */
#define OPD_HF_MAX_SEQ_LEN (1 << 20)

/* Parse DIR/config.json into cfg (nothing else read). */
int opd_hf_read_config(const char *dir, opd_config *cfg);
/* Load DIR (config + weights) into a fresh model (m uninitialised on entry).
 * Every shape is checked against the config and every data range against
 * its file before the parameters are allocated; tensors are read one at a
 * time, so peak memory is the fp32 model plus a few MiB. */
int opd_hf_load(opd_model *m, const char *dir);
/* Write m as a Hugging Face directory DIR (must not exist, or be empty):
 * Qwen2ForCausalLM when qkv_bias, else LlamaForCausalLM. bf16: weights as
 * BF16 rounded to nearest even, else F32. extra_files (n_extra, may be 0)
 * are copied in under their base names (tokenizer.json, ...). */
int opd_hf_save(const opd_model *m, const char *dir, int bf16,
                const char *const *extra_files, int n_extra);
/* 1 when path names a Hugging Face model: a directory, a config.json /
 * model.safetensors.index.json file, or a model.safetensors with a
 * config.json next to it (then *dir_out, if not NULL, receives a malloc'd
 * directory path). 0 for anything else (an opd checkpoint). */
int opd_hf_path(const char *path, char **dir_out);
/* A Hugging Face model (opd_hf_path) or an opd checkpoint (opd_model_load).
 * opt must be NULL for a Hugging Face directory: it holds no optimizer. */
int opd_model_load_any(opd_model *m, const char *path, opd_adamw *opt);

/* Exact 16-bit float conversions. bf16 is the upper half of an fp32; f16 is
 * IEEE binary16 (subnormals, infinities and NaN payloads kept). */
float opd_bf16_to_f32(uint16_t h);
float opd_f16_to_f32(uint16_t h);
/* fp32 -> bf16, round to nearest, ties to even; NaN stays a (quiet) NaN. */
uint16_t opd_f32_to_bf16(float f);

#ifdef __cplusplus
}
#endif
#endif /* OPD_HF_H */
