/* test_hf.c — Hugging Face model directories (ref/hf_model.c): the 16-bit
 * float conversions over every one of their 65536 values against a direct
 * decoding by ldexp, save -> load round trips, and the refusals (each must
 * name the file and the key or tensor). The comparison with transformers
 * itself is tests/hf_crosscheck.sh. */
#include "opd_hf.h"
#include "testutil.h"

#include <dirent.h>
#include <jansson.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[512];

static uint32_t bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float from_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* ------------------------------------------------------------ conversions */
/* The textbook decoding of a binary float with `eb` exponent and `mb`
 * mantissa bits: (-1)^s * 2^(e - bias) * 1.m, or 2^(1 - bias) * 0.m. */
static double decode_ref(uint32_t h, int eb, int mb) {
    int s = (h >> (eb + mb)) & 1;
    int e = (h >> mb) & ((1 << eb) - 1);
    int man = h & ((1 << mb) - 1);
    int bias = (1 << (eb - 1)) - 1;
    double v;
    if (e == (1 << eb) - 1) v = man ? NAN : INFINITY;
    else if (e == 0) v = ldexp((double)man, 1 - bias - mb);
    else v = ldexp((double)((1 << mb) + man), e - bias - mb);
    return s ? -v : v;
}

static void test_f16_exhaustive(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float got = opd_f16_to_f32((uint16_t)h);
        double want = decode_ref(h, 5, 10);
        int ok;
        if (isnan(want))  /* NaN: stays NaN, sign and payload (top 10 mantissa bits) kept */
            ok = isnan(got) && (bits(got) >> 31) == (h >> 15) && ((bits(got) >> 13) & 0x3ff) == (h & 0x3ff);
        else
            ok = (double)got == want && !!signbit(got) == !!(h >> 15);
#ifdef __FLT16_MAX__
        /* and the compiler's own _Float16 conversion, bit for bit */
        if (!isnan(want)) {
            _Float16 x;
            uint16_t hh = (uint16_t)h;
            memcpy(&x, &hh, 2);
            ok = ok && bits((float)x) == bits(got);
        }
#endif
        if (!ok && bad++ < 5) printf("\n  f16 0x%04x -> %a, want %a", h, (double)got, want);
    }
    CU_ASSERT_EQUAL(bad, 0);
}

static void test_bf16_exhaustive(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float got = opd_bf16_to_f32((uint16_t)h);
        double want = decode_ref(h, 8, 7);
        int ok = isnan(want) ? isnan(got) && bits(got) == h << 16
                             : (double)got == want && !!signbit(got) == !!(h >> 15);
        /* round trip: every bf16 value is an fp32 that rounds to itself */
        if (!isnan(want)) ok = ok && opd_f32_to_bf16(got) == h;
        else ok = ok && isnan(opd_bf16_to_f32(opd_f32_to_bf16(got)));
        if (!ok && bad++ < 5) printf("\n  bf16 0x%04x -> %a, want %a", h, (double)got, want);
    }
    CU_ASSERT_EQUAL(bad, 0);
}

/* fp32 -> bf16 on every bf16 value with low halves at the rounding
 * boundaries (just below / at / just above the tie, both ends) and a few
 * others: the result must be the nearer neighbour, ties to the even one,
 * values past the largest bf16 by half an ulp or more to inf. */
static void test_bf16_rounding(void) {
    static const uint32_t lows[] = {1, 0x1234, 0x7ffe, 0x7fff, 0x8000, 0x8001, 0xc000, 0xffff};
    int bad = 0;
    long n = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7f80) == 0x7f80) continue;               /* inf / NaN */
        for (size_t k = 0; k < sizeof lows / sizeof lows[0]; k++) {
            float f = from_bits((h << 16) | lows[k]);
            double lo = decode_ref(h, 8, 7);                 /* towards zero */
            double hi = (h & 0x7fff) == 0x7f7f ? copysign(ldexp(1.0, 128), lo)   /* "next" past max */
                                               : decode_ref(h + 1, 8, 7);
            double dlo = fabs((double)f - lo), dhi = fabs(hi - (double)f);
            uint16_t want = dlo < dhi ? h : dhi < dlo ? h + 1 : (h & 1) ? h + 1 : h;
            uint16_t got = opd_f32_to_bf16(f);
            n++;
            if (got != want && bad++ < 5) printf("\n  %a -> 0x%04x, want 0x%04x", (double)f, got, want);
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT(isnan(opd_bf16_to_f32(opd_f32_to_bf16(NAN))));
    CU_ASSERT_EQUAL(opd_f32_to_bf16(from_bits(0x7fffffffu)) & 0x7fc0, 0x7fc0);  /* NaN, not inf */
    CU_ASSERT_EQUAL(opd_f32_to_bf16(INFINITY), 0x7f80);
    CU_ASSERT_EQUAL(opd_f32_to_bf16(-INFINITY), 0xff80);
    CU_ASSERT(n > 400000);
}

/* ------------------------------------------------------------- round trip */
static void path_in(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", tmpdir, name); }

static void rm_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[1024];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    closedir(d);
    rmdir(dir);
}

static void small_model(opd_model *m, int qkv_bias, int tied) {
    opd_config c;
    opd_config_default(&c);
    c.vocab_size = 37; c.d_model = 16; c.n_layers = 2; c.n_heads = 4; c.n_kv_heads = 2;
    c.d_ff = 24; c.max_seq_len = 64; c.qkv_bias = qkv_bias; c.tie_embeddings = tied;
    c.rope_theta = 1e6f; c.rms_eps = 1e-5f;
    CU_ASSERT_FATAL(opd_model_init(m, &c) == 0);
    opd_model_init_random(m, 3);
}

static void test_round_trip(void) {
    for (int v = 0; v < 4; v++) {
        int qkv_bias = v & 1, tied = v >> 1;
        opd_model m, a, b;
        small_model(&m, qkv_bias, tied);
        char d32[600], d16[600];
        path_in(d32, sizeof d32, "rt32");
        path_in(d16, sizeof d16, "rt16");
        CU_ASSERT_FATAL(opd_hf_save(&m, d32, 0, NULL, 0) == 0);
        CU_ASSERT_FATAL(opd_hf_save(&m, d16, 1, NULL, 0) == 0);
        CU_ASSERT_FATAL(opd_hf_load(&a, d32) == 0);
        CU_ASSERT_FATAL(opd_model_load_any(&b, d16, NULL) == 0);
        CU_ASSERT(memcmp(&a.cfg, &m.cfg, sizeof m.cfg) == 0);
        CU_ASSERT(memcmp(&b.cfg, &m.cfg, sizeof m.cfg) == 0);
        CU_ASSERT(memcmp(a.params_mem, m.params_mem, m.num_params * sizeof(float)) == 0);
        size_t bad = 0;
        for (size_t i = 0; i < m.num_params; i++)
            bad += bits(b.params_mem[i]) != bits(opd_bf16_to_f32(opd_f32_to_bf16(m.params_mem[i])));
        CU_ASSERT_EQUAL(bad, 0);
        opd_model_free(&a);
        opd_model_free(&b);
        opd_model_free(&m);
        rm_dir(d32);
        rm_dir(d16);
    }
}

/* ---------------------------------------------------------------- errors */
/* A saved directory whose config.json gets key = val (JSON text; NULL
 * deletes the key); loading must fail with both `want` strings in the message. */
static void expect_config_error(int qkv_bias, const char *key, const char *val,
                                const char *want1, const char *want2) {
    opd_model m, x;
    small_model(&m, qkv_bias, 0);
    char dir[600], cfg[700];
    path_in(dir, sizeof dir, "bad");
    CU_ASSERT_FATAL(opd_hf_save(&m, dir, 0, NULL, 0) == 0);
    opd_model_free(&m);
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    json_t *root = json_load_file(cfg, 0, NULL);
    CU_ASSERT_FATAL(root != NULL);
    if (val) json_object_set_new(root, key, json_loads(val, JSON_DECODE_ANY, NULL));
    else json_object_del(root, key);
    CU_ASSERT_FATAL(json_dump_file(root, cfg, 0) == 0);
    json_decref(root);
    int rc = opd_model_load_any(&x, dir, NULL);
    CU_ASSERT_EQUAL(rc, -1);
    const char *e = opd_last_error();
    int ok = rc == -1 && strstr(e, want1) && (!want2 || strstr(e, want2)) && !strchr(e, '\n');
    if (!ok) printf("\n  %s = %s: got '%s'", key, val ? val : "(deleted)", e);
    CU_ASSERT(ok);
    rm_dir(dir);
}

static void test_config_errors(void) {
    expect_config_error(1, "model_type", "\"mistral\"", "config.json: key 'model_type'", "mistral");
    expect_config_error(1, "architectures", "[\"Qwen2ForSequenceClassification\"]", "config.json: key 'architectures'", NULL);
    expect_config_error(1, "rope_scaling", "{\"type\": \"linear\", \"factor\": 2.0}",
                        "config.json: key 'rope_scaling' is not supported", "plain RoPE");
    expect_config_error(1, "use_sliding_window", "true", "config.json: key 'use_sliding_window'", NULL);
    expect_config_error(1, "hidden_act", "\"gelu\"", "config.json: key 'hidden_act'", NULL);
    expect_config_error(1, "head_dim", "8", "config.json: key 'head_dim'", NULL);
    expect_config_error(1, "rms_norm_eps", "0", "config.json: key 'rms_norm_eps'", NULL);
    expect_config_error(1, "rope_theta", "-1", "config.json: key 'rope_theta'", NULL);
    expect_config_error(1, "num_attention_heads", "16", "config.json: key 'num_attention_heads'", "odd head dim");
    expect_config_error(1, "hidden_size", NULL, "config.json: key 'hidden_size' is missing", NULL);
    expect_config_error(1, "num_key_value_heads", "3", "config.json: key 'num_key_value_heads'", NULL);
    expect_config_error(1, "tie_word_embeddings", "1", "config.json: key 'tie_word_embeddings'", NULL);
    expect_config_error(0, "attention_bias", "true", "config.json: key 'attention_bias'", "o_proj");
    expect_config_error(0, "mlp_bias", "true", "config.json: key 'mlp_bias'", NULL);
    /* a config that disagrees with the weights: the tensor and both shapes */
    expect_config_error(1, "intermediate_size", "32", "model.safetensors: tensor 'model.layers.0.mlp.gate_proj.weight'",
                        "shape [24, 16], but config.json gives [32, 16]");
}

/* Rewrites dir/model.safetensors with opd's safetensors writer: every
 * parameter as F32, except `odd` stored as dtype `dt` (F64 or U8), plus an
 * optional extra tensor `extra`. */
static void rewrite_weights(const opd_model *m, const char *dir, const char *odd,
                            opd_dtype dt, const char *extra) {
    int nt = opd_param_tensor_count(&m->cfg);
    opd_tensor_info *ts = calloc(nt, sizeof *ts);
    opd_param_tensors(&m->cfg, ts);
    opd_safetensors st;
    opd_st_init(&st);
    opd_st_set_meta(&st, "format", "pt");
    for (int i = 0; i < nt; i++) {
        int64_t shp[2] = {ts[i].shape[0], ts[i].shape[1]};
        const float *src = m->params_mem + ts[i].offset;
        if (odd && !strcmp(ts[i].name, odd)) {
            size_t es = opd_dtype_size(dt);
            unsigned char *buf = calloc(ts[i].numel, es);
            if (dt == OPD_F64)
                for (size_t j = 0; j < ts[i].numel; j++) ((double *)buf)[j] = src[j];
            CU_ASSERT(opd_st_add(&st, ts[i].name, dt, ts[i].ndim, shp, buf) == 0);
            free(buf);
        } else {
            CU_ASSERT(opd_st_add(&st, ts[i].name, OPD_F32, ts[i].ndim, shp, src) == 0);
        }
    }
    if (extra) {
        int64_t shp[2] = {m->cfg.vocab_size, m->cfg.d_model};
        CU_ASSERT(opd_st_add(&st, extra, OPD_F32, 2, shp, m->params.wte) == 0);
    }
    char path[700];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CU_ASSERT(opd_st_write(&st, path) == 0);
    opd_st_free(&st);
    free(ts);
}

static int load_fails_with(const char *dir, const char *w1, const char *w2) {
    opd_model x;
    int rc = opd_model_load_any(&x, dir, NULL);
    const char *e = opd_last_error();
    int ok = rc == -1 && strstr(e, w1) && (!w2 || strstr(e, w2)) && !strchr(e, '\n');
    if (!ok) printf("\n  want '%s': got rc %d '%s'", w1, rc, rc ? e : "");
    if (rc == 0) opd_model_free(&x);
    return ok;
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs(text, f);
    fclose(f);
}

static void test_weight_errors(void) {
    opd_model m, x;
    small_model(&m, 1, 1);     /* tied */
    char dir[600], p[700];
    path_in(dir, sizeof dir, "w");
    CU_ASSERT_FATAL(opd_hf_save(&m, dir, 0, NULL, 0) == 0);

    /* a redundant lm_head in a tied model is skipped; the embedding is the head */
    rewrite_weights(&m, dir, NULL, OPD_F32, "lm_head.weight");
    CU_ASSERT_FATAL(opd_hf_load(&x, dir) == 0);
    CU_ASSERT(memcmp(x.params_mem, m.params_mem, m.num_params * sizeof(float)) == 0);
    opd_model_free(&x);
    /* RoPE buffers of older checkpoints: skipped */
    rewrite_weights(&m, dir, NULL, OPD_F32, "model.layers.0.self_attn.rotary_emb.inv_freq");
    /* (the extra above has a made-up shape; what matters is that it is skipped) */
    CU_ASSERT_FATAL(opd_hf_load(&x, dir) == 0);
    opd_model_free(&x);
    /* anything else unexpected is refused by name */
    rewrite_weights(&m, dir, NULL, OPD_F32, "model.layers.0.self_attn.o_proj.bias");
    CU_ASSERT(load_fails_with(dir, "model.safetensors: unexpected tensor 'model.layers.0.self_attn.o_proj.bias'", NULL));
    /* dtypes we do not convert */
    rewrite_weights(&m, dir, "model.norm.weight", OPD_F64, NULL);
    CU_ASSERT(load_fails_with(dir, "model.safetensors: tensor 'model.norm.weight': dtype F64 is not supported", NULL));
    rewrite_weights(&m, dir, "model.layers.1.mlp.up_proj.weight", OPD_U8, NULL);
    CU_ASSERT(load_fails_with(dir, "tensor 'model.layers.1.mlp.up_proj.weight': dtype U8 is not supported", NULL));
    /* a missing tensor */
    rewrite_weights(&m, dir, NULL, OPD_F32, NULL);
    snprintf(p, sizeof p, "%s/config.json", dir);
    json_t *root = json_load_file(p, 0, NULL);
    json_object_set_new(root, "tie_word_embeddings", json_false());
    json_dump_file(root, p, 0);
    json_decref(root);
    CU_ASSERT(load_fails_with(dir, "model.safetensors: tensor 'lm_head.weight' is missing", NULL));
    root = json_load_file(p, 0, NULL);
    json_object_set_new(root, "tie_word_embeddings", json_true());
    json_dump_file(root, p, 0);
    json_decref(root);

    /* sharded: an index naming a shard that is not there */
    char idx[800];
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", dir);
    write_text(idx, "{\"metadata\": {}, \"weight_map\": {\"model.norm.weight\": \"model-00002-of-00002.safetensors\"}}");
    CU_ASSERT(load_fails_with(dir, "model.safetensors.index.json: missing shard 'model-00002-of-00002.safetensors'", NULL));
    write_text(idx, "{\"metadata\": {}, \"weight_map\": {\"model.norm.weight\": \"model.safetensors\"}}");
    CU_ASSERT(load_fails_with(dir, "model.safetensors.index.json: tensor 'model.embed_tokens.weight' is not in weight_map", NULL));
    write_text(idx, "{\"metadata\": {}, \"weight_map\": {\"model.norm.weight\": \"../x.safetensors\"}}");
    CU_ASSERT(load_fails_with(dir, "weight_map entry 'model.norm.weight' is not a file name", NULL));
    unlink(idx);
    /* a truncated file */
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    struct stat sb;
    CU_ASSERT_FATAL(stat(p, &sb) == 0);
    CU_ASSERT(truncate(p, sb.st_size - 4) == 0);
    CU_ASSERT(load_fails_with(dir, "model.safetensors: tensor", "data buffer"));
    unlink(p);
    CU_ASSERT(load_fails_with(dir, "neither model.safetensors nor model.safetensors.index.json", NULL));

    /* a directory holds no optimizer */
    opd_adamw opt;
    CU_ASSERT(opd_model_load_any(&x, dir, &opt) == -1);
    CU_ASSERT(strstr(opd_last_error(), "no optimizer state") != NULL);
    rm_dir(dir);

    /* export: never into a non-empty directory, and nothing left behind */
    CU_ASSERT_FATAL(mkdir(dir, 0755) == 0);
    snprintf(p, sizeof p, "%s/keep.txt", dir);
    write_text(p, "x");
    CU_ASSERT(opd_hf_save(&m, dir, 0, NULL, 0) == -1);
    CU_ASSERT(strstr(opd_last_error(), "exists and is not empty") != NULL);
    rm_dir(dir);
    const char *missing[] = {"/nonexistent/tokenizer.json"};
    CU_ASSERT(opd_hf_save(&m, dir, 0, missing, 1) == -1);
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    int leftovers = 0;
    while (d && (e = readdir(d))) leftovers += e->d_name[0] != '.';
    if (d) closedir(d);
    CU_ASSERT_EQUAL(leftovers, 0);
    opd_model_free(&m);
}

static void test_dispatch(void) {
    char *d = NULL;
    CU_ASSERT(opd_hf_path(tmpdir, &d) == 1 && d && !strcmp(d, tmpdir));
    free(d);
    CU_ASSERT(opd_hf_path("/some/where/config.json", &d) == 1 && !strcmp(d, "/some/where"));
    free(d);
    CU_ASSERT(opd_hf_path("model.safetensors.index.json", &d) == 1 && !strcmp(d, "."));
    free(d);
    CU_ASSERT(opd_hf_path("/some/where/model.safetensors", NULL) == 0);
    CU_ASSERT(opd_hf_path("ckpt.safetensors", NULL) == 0);
}

int main(void) {
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/opd_test_hf.XXXXXX", base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 1; }
    if (CU_initialize_registry() != CUE_SUCCESS) return 1;
    opd_test_suite("16-bit floats", (opd_test_case[]){
        {"f16 -> f32, all 65536", test_f16_exhaustive},
        {"bf16 -> f32, all 65536", test_bf16_exhaustive},
        {"f32 -> bf16 nearest even", test_bf16_rounding},
        {NULL, NULL}});
    opd_test_suite("hf directories", (opd_test_case[]){
        {"save / load round trip", test_round_trip},
        {"config refusals", test_config_errors},
        {"weight refusals", test_weight_errors},
        {"path dispatch", test_dispatch},
        {NULL, NULL}});
    int rc = opd_test_run();
    rm_dir(tmpdir);
    return rc;
}
