/* test_ckpt.c — safetensors I/O, model checkpoints and the optimizer.
 *
 * Round trips must be bit-identical; every malformed file must be refused
 * with a message naming the problem; a save that fails half-way must leave
 * the previous checkpoint intact; AdamW must match a double-precision
 * transcription of the update rule. */
#define _GNU_SOURCE
#include "opd.h"
#include "testutil.h"

#include <dirent.h>
#include <omp.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[256];

static void tmp_path(char *buf, size_t n, const char *name) {
    snprintf(buf, n, "%s/%s", tmpdir, name);
}

/* CU_ASSERT that the last error mentions `needle`, and show it. */
#define ASSERT_ERR_HAS(needle)                                                   \
    do {                                                                         \
        const char *e_ = opd_last_error();                                       \
        int ok_ = strstr(e_, (needle)) != NULL;                                  \
        printf("\n    error%s: %s", ok_ ? "" : " (MISSING '" needle "')", e_);  \
        CU_ASSERT(ok_);                                                          \
    } while (0)

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    CU_ASSERT_FATAL(f != NULL);
    CU_ASSERT(fwrite(data, 1, n, f) == n);
    fclose(f);
}

static unsigned char *read_file(const char *path, size_t *n) {
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(sz > 0 ? sz : 1);
    *n = fread(buf, 1, sz, f);
    fclose(f);
    return buf;
}

/* A hand-made file: length, the given header text verbatim, ndata bytes. */
static void write_raw_st(const char *path, const char *header, size_t ndata) {
    size_t hlen = strlen(header);
    size_t total = 8 + hlen + ndata;
    unsigned char *buf = calloc(total, 1);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    memcpy(buf + 8, header, hlen);
    for (size_t i = 0; i < ndata; i++) buf[8 + hlen + i] = (unsigned char)i;
    write_file(path, buf, total);
    free(buf);
}

/* ================================================================ safetensors */

/* One tensor of every dtype, including a scalar and an empty tensor. */
static void build_all_dtypes(opd_safetensors *st) {
    opd_st_init(st);
    float f32[6];
    int32_t i32[4];
    double f64[3];
    uint8_t u8[5];
    int64_t i64[2];
    for (int i = 0; i < 6; i++) f32[i] = 0.5f * i - 1.25f;
    for (int i = 0; i < 4; i++) i32[i] = -7 + 1000000 * i;
    for (int i = 0; i < 3; i++) f64[i] = 1.0 / (3.0 + i);
    for (int i = 0; i < 5; i++) u8[i] = (uint8_t)(250 + i);
    i64[0] = INT64_MIN + 3;
    i64[1] = (int64_t)1 << 40;
    int64_t s23[2] = {2, 3}, s4[1] = {4}, s3[1] = {3}, s5[1] = {5}, s2[1] = {2};
    int64_t s0[2] = {0, 7};
    float scalar = 42.0f;
    CU_ASSERT(opd_st_add(st, "z.f32", OPD_F32, 2, s23, f32) == 0);
    CU_ASSERT(opd_st_add(st, "a.i32", OPD_I32, 1, s4, i32) == 0);
    CU_ASSERT(opd_st_add(st, "m.f64", OPD_F64, 1, s3, f64) == 0);
    CU_ASSERT(opd_st_add(st, "b.u8", OPD_U8, 1, s5, u8) == 0);
    CU_ASSERT(opd_st_add(st, "c.i64", OPD_I64, 1, s2, i64) == 0);
    CU_ASSERT(opd_st_add(st, "scalar", OPD_F32, 0, NULL, &scalar) == 0);
    CU_ASSERT(opd_st_add(st, "empty", OPD_F32, 2, s0, NULL) == 0);
    CU_ASSERT(opd_st_set_meta(st, "format", "pt") == 0);
    CU_ASSERT(opd_st_set_meta(st, "note", "quotes \" and \\ and unicode \xc3\xa9") == 0);
    CU_ASSERT(opd_st_set_meta(st, "note2", "replaced") == 0);
    CU_ASSERT(opd_st_set_meta(st, "note2", "x") == 0);
}

static void test_st_roundtrip(void) {
    opd_safetensors st, rd;
    build_all_dtypes(&st);
    CU_ASSERT(st.nmeta == 3);
    CU_ASSERT(opd_st_add(&st, "a.i32", OPD_F32, 0, NULL, "abcd") == -1);  /* duplicate */
    ASSERT_ERR_HAS("added twice");
    char path[512];
    tmp_path(path, sizeof path, "all.safetensors");
    CU_ASSERT_FATAL(opd_st_write(&st, path) == 0);
    CU_ASSERT_FATAL(opd_st_read(path, &rd) == 0);
    CU_ASSERT(rd.n == st.n);
    /* written sorted by name */
    for (int i = 1; i < rd.n; i++) CU_ASSERT(strcmp(rd.t[i - 1].name, rd.t[i].name) < 0);
    int mismatches = 0;
    for (int i = 0; i < st.n; i++) {
        const opd_st_tensor *a = &st.t[i], *b = opd_st_find(&rd, a->name);
        CU_ASSERT_FATAL(b != NULL);
        int same = a->dtype == b->dtype && a->ndim == b->ndim && a->nbytes == b->nbytes &&
                   memcmp(a->data, b->data, a->nbytes) == 0;
        for (int d = 0; d < a->ndim; d++) same &= a->shape[d] == b->shape[d];
        mismatches += !same;
    }
    printf("\n    %d tensors (F32 I32 F64 U8 I64, scalar, empty), %d mismatches", st.n, mismatches);
    CU_ASSERT(mismatches == 0);
    CU_ASSERT(opd_st_find(&rd, "scalar")->nbytes == 4 && opd_st_find(&rd, "empty")->nbytes == 0);
    CU_ASSERT(rd.nmeta == 3);
    CU_ASSERT_STRING_EQUAL(opd_st_get_meta(&rd, "note"), "quotes \" and \\ and unicode \xc3\xa9");
    CU_ASSERT_STRING_EQUAL(opd_st_get_meta(&rd, "note2"), "x");
    CU_ASSERT(opd_st_get_meta(&rd, "absent") == NULL);

    /* the header is padded so the data buffer starts 8-byte aligned */
    size_t n;
    unsigned char *raw = read_file(path, &n);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | raw[i];
    printf("\n    header %llu bytes, file %zu bytes", (unsigned long long)hlen, n);
    CU_ASSERT(hlen % 8 == 0);
    free(raw);

    /* header-only read: same names and shapes, no data */
    opd_safetensors hd;
    CU_ASSERT_FATAL(opd_st_read_header(path, &hd) == 0);
    CU_ASSERT(hd.n == rd.n && hd.t[0].data == NULL);
    CU_ASSERT(strcmp(hd.t[0].name, rd.t[0].name) == 0);
    opd_st_free(&hd);

    /* writing what was read gives the same bytes */
    char path2[512];
    tmp_path(path2, sizeof path2, "all2.safetensors");
    CU_ASSERT(opd_st_write(&rd, path2) == 0);
    size_t n1, n2;
    unsigned char *b1 = read_file(path, &n1), *b2 = read_file(path2, &n2);
    CU_ASSERT(n1 == n2 && memcmp(b1, b2, n1) == 0);
    free(b1);
    free(b2);
    unlink(path2);
    opd_st_free(&st);
    opd_st_free(&rd);
}

/* An independent reader (Python's json + struct + numpy, no safetensors
 * package) agrees with our writer. */
static void test_st_python_reads(void) {
    if (access("/usr/bin/python3", X_OK) != 0) {
        printf("\n    /usr/bin/python3 not found: skipped");
        return;
    }
    char path[512];
    tmp_path(path, sizeof path, "all.safetensors");
    opd_safetensors st;
    build_all_dtypes(&st);
    CU_ASSERT_FATAL(opd_st_write(&st, path) == 0);
    opd_st_free(&st);
    const char *script =
        "import json, struct, sys\n"
        "import numpy as np\n"
        "b = open(sys.argv[1], 'rb').read()\n"
        "n = struct.unpack('<Q', b[:8])[0]\n"
        "h = json.loads(b[8:8 + n])\n"
        "data = b[8 + n:]\n"
        "dt = {'F32': '<f4', 'I32': '<i4', 'F64': '<f8', 'U8': 'u1', 'I64': '<i8'}\n"
        "def get(k):\n"
        "    e = h[k]; s, t = e['data_offsets']\n"
        "    return np.frombuffer(data[s:t], dtype=dt[e['dtype']]).reshape(e['shape'])\n"
        "assert h['__metadata__']['format'] == 'pt'\n"
        "assert get('z.f32').shape == (2, 3)\n"
        "assert (get('z.f32').ravel() == 0.5 * np.arange(6, dtype=np.float32) - 1.25).all()\n"
        "assert (get('a.i32') == -7 + 1000000 * np.arange(4)).all()\n"
        "assert (get('m.f64') == 1.0 / (3.0 + np.arange(3))).all()\n"
        "assert (get('b.u8') == 250 + np.arange(5)).all()\n"
        "assert get('c.i64')[0] == -2**63 + 3 and get('c.i64')[1] == 2**40\n"
        "assert get('scalar').shape == () and get('scalar') == 42\n"
        "assert get('empty').shape == (0, 7)\n"
        "print('python reader: OK')\n";
    char spath[512];
    tmp_path(spath, sizeof spath, "check.py");
    write_file(spath, script, strlen(script));
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s %s", spath, path);
    fflush(stdout);
    int rc = system(cmd);
    printf("    python3 exit status %d", rc);
    CU_ASSERT(rc == 0);
    unlink(spath);
}

/* Each malformed file is refused with a message naming file and problem. */
static void expect_read_fails(const char *path, const char *needle) {
    opd_safetensors st;
    int rc = opd_st_read(path, &st);
    CU_ASSERT(rc == -1);
    if (rc == 0) { opd_st_free(&st); return; }
    const char *e = opd_last_error();
    int ok = strstr(e, needle) != NULL && strstr(e, path) != NULL;
    printf("\n    %-28s -> %s%s", needle, e, ok ? "" : "   <-- EXPECTED ABOVE");
    CU_ASSERT(ok);
}

static void test_st_truncated(void) {
    char path[512], cut[512];
    tmp_path(path, sizeof path, "all.safetensors");
    tmp_path(cut, sizeof cut, "cut.safetensors");
    opd_safetensors st;
    build_all_dtypes(&st);
    CU_ASSERT_FATAL(opd_st_write(&st, path) == 0);
    opd_st_free(&st);
    size_t n;
    unsigned char *raw = read_file(path, &n);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | raw[i];
    /* inside the length, inside the header, inside the data, last byte */
    write_file(cut, raw, 0);
    expect_read_fails(cut, "shorter than the 8-byte");
    write_file(cut, raw, 5);
    expect_read_fails(cut, "shorter than the 8-byte");
    write_file(cut, raw, 8 + hlen / 2);
    expect_read_fails(cut, "does not fit the file");
    write_file(cut, raw, 8 + hlen + 10);
    expect_read_fails(cut, "past the end of the data buffer");
    write_file(cut, raw, n - 1);
    expect_read_fails(cut, "past the end of the data buffer");
    /* one byte too many */
    unsigned char *longer = calloc(n + 1, 1);
    memcpy(longer, raw, n);
    write_file(cut, longer, n + 1);
    expect_read_fails(cut, "trailing bytes");
    free(longer);
    /* not a safetensors file at all: a zip (torch .pt) and a GGUF magic */
    unsigned char zip[64] = {'P', 'K', 3, 4, 20, 0, 0, 0};
    write_file(cut, zip, sizeof zip);
    expect_read_fails(cut, "absurd");
    unsigned char gguf[64] = {'G', 'G', 'U', 'F', 3, 0, 0, 0, 0, 0, 0, 0};
    write_file(cut, gguf, sizeof gguf);
    expect_read_fails(cut, "absurd");
    /* a plausible length whose header is not JSON */
    unsigned char notjs[32] = {16, 0, 0, 0, 0, 0, 0, 0, 'h', 'e', 'l', 'l', 'o'};
    write_file(cut, notjs, sizeof notjs);
    expect_read_fails(cut, "does not start with '{'");
    char missing[512];
    tmp_path(missing, sizeof missing, "no-such-file.safetensors");
    expect_read_fails(missing, "cannot open");
    free(raw);
    unlink(cut);
}

static void test_st_bad_header(void) {
    char p[512];
    tmp_path(p, sizeof p, "bad.safetensors");
    const struct { const char *header; size_t ndata; const char *needle; } cases[] = {
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},}", 8, "invalid JSON header"},
        {"{\"a\": {\"dtype\": \"F32\" \"shape\": [2]}}", 8, "column"},
        {"[1, 2, 3]", 0, "does not start with '{'"},
        {"{\"a\": {\"dtype\": \"BF16\", \"shape\": [2], \"data_offsets\": [0, 4]}}", 4, "unsupported dtype 'BF16'"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [-2], \"data_offsets\": [0, 8]}}", 8, "shape[0] is not a non-negative integer"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2.5], \"data_offsets\": [0, 8]}}", 8, "shape[0] is not a non-negative integer"},
        {"{\"a\": {\"dtype\": \"F64\", \"shape\": [4294967296, 4294967296], \"data_offsets\": [0, 8]}}", 8, "overflows"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 8]}}", 8, "need 12"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 16]}}", 8, "past the end"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 0]}}", 8, "increasing"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2]}}", 8, "data_offsets"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
         " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}", 12, "overlap"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
         " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [12, 20]}}", 20, "belong to no tensor"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
         " \"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 16]}}", 16, "duplicate"},
        {"{\"__metadata__\": {\"step\": 3}}", 0, "not a string"},
        {"{\"__metadata__\": [\"x\"]}", 0, "not a JSON object"},
        {"{\"a\": [1, 2]}", 0, "not a JSON object"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_raw_st(p, cases[i].header, cases[i].ndata);
        expect_read_fails(p, cases[i].needle);
    }
    /* accepted: trailing-space padding, an empty file body, unknown extra keys */
    write_raw_st(p, "{\"__metadata__\": {\"k\": \"v\"}, \"a\": {\"dtype\": \"U8\", \"shape\": [3],"
                    " \"data_offsets\": [0, 3]}}     ", 3);
    opd_safetensors st;
    CU_ASSERT(opd_st_read(p, &st) == 0);
    CU_ASSERT(st.n == 1 && st.t[0].nbytes == 3 && ((unsigned char *)st.t[0].data)[2] == 2);
    CU_ASSERT(opd_st_get_meta(&st, "k") && strcmp(opd_st_get_meta(&st, "k"), "v") == 0);
    opd_st_free(&st);
    write_raw_st(p, "{}", 0);
    CU_ASSERT(opd_st_read(p, &st) == 0 && st.n == 0);
    opd_st_free(&st);
    unlink(p);
}

/* ================================================================ checkpoints */

static void small_config(opd_config *c) {
    opd_config_default(c);
    c->vocab_size = 32;
    c->d_model = 16;
    c->n_layers = 2;
    c->n_heads = 4;
    c->n_kv_heads = 2;
    c->d_ff = 48;
    c->max_seq_len = 64;
    c->qkv_bias = 1;
    c->tie_embeddings = 0;
    c->rope_theta = 5000.0f;
    c->rms_eps = 1e-5f;
}

static void fill_moments(opd_adamw *opt, uint64_t seed) {
    for (size_t i = 0; i < opt->n; i++) {
        opt->m[i] = 0.01f * opd_normal(seed, 1, 0, (uint32_t)i);
        opt->v[i] = 1e-4f * opd_uniform(seed, 2, 0, (uint32_t)i, 0);
    }
}

static void test_ckpt_roundtrip(void) {
    char path[512];
    tmp_path(path, sizeof path, "model.safetensors");
    opd_config cfg;
    small_config(&cfg);
    opd_model m;
    CU_ASSERT_FATAL(opd_model_init(&m, &cfg) == 0);
    opd_model_init_random(&m, 1234);
    opd_optim_config oc;
    opd_optim_config_default(&oc);
    oc.lr = 3e-4f;
    oc.lr_kind = OPD_LR_COSINE;
    oc.warmup_steps = 10;
    oc.total_steps = 1000;
    oc.min_lr_frac = 0.05f;
    oc.weight_decay = 0.1f;
    opd_adamw opt;
    opd_adamw_init(&opt, &oc, m.num_params);
    fill_moments(&opt, 99);
    opt.step = 12345;
    const char *keys[] = {"train.step", "train.note"};
    const char *vals[] = {"12345", "popd H0=64"};
    CU_ASSERT_FATAL(opd_model_save(&m, path, &opt, keys, vals, 2) == 0);

    opd_model m2;
    opd_adamw opt2;
    CU_ASSERT_FATAL(opd_model_load(&m2, path, &opt2) == 0);
    CU_ASSERT(memcmp(&m2.cfg, &cfg, sizeof cfg) == 0);
    CU_ASSERT(m2.num_params == m.num_params);
    CU_ASSERT(memcmp(m2.params_mem, m.params_mem, m.num_params * sizeof(float)) == 0);
    CU_ASSERT(opt2.n == opt.n && opt2.step == 12345);
    CU_ASSERT(memcmp(opt2.m, opt.m, opt.n * sizeof(float)) == 0);
    CU_ASSERT(memcmp(opt2.v, opt.v, opt.n * sizeof(float)) == 0);
    CU_ASSERT(memcmp(&opt2.cfg, &opt.cfg, sizeof oc) == 0);
    printf("\n    %zu params + 2 moments, max |diff| params %g m %g v %g",
           m.num_params, opd_max_abs_diff(m.params_mem, m2.params_mem, m.num_params),
           opd_max_abs_diff(opt.m, opt2.m, opt.n), opd_max_abs_diff(opt.v, opt2.v, opt.n));
    /* the named views point at the loaded weights */
    CU_ASSERT(m2.params.wq[5] == m.params.wq[5] && m2.params.lm_head[7] == m.params.lm_head[7]);

    /* metadata without loading; extra pairs pass through */
    char *s = opd_checkpoint_meta(path, "train.note");
    CU_ASSERT(s && strcmp(s, "popd H0=64") == 0);
    free(s);
    s = opd_checkpoint_meta(path, "opd.d_model");
    CU_ASSERT(s && strcmp(s, "16") == 0);
    free(s);
    s = opd_checkpoint_meta(path, "format");
    CU_ASSERT(s && strcmp(s, "pt") == 0);
    free(s);
    CU_ASSERT(opd_checkpoint_meta(path, "nope") == NULL);
    ASSERT_ERR_HAS("'nope' is missing");

    /* loading weights only from a full checkpoint is fine */
    opd_model m3;
    CU_ASSERT(opd_model_load(&m3, path, NULL) == 0);
    CU_ASSERT(memcmp(m3.params_mem, m.params_mem, m.num_params * sizeof(float)) == 0);
    opd_model_free(&m3);

    /* extra metadata must not overwrite the config */
    const char *bad_keys[] = {"opd.d_model"};
    const char *bad_vals[] = {"8"};
    char p2[512];
    tmp_path(p2, sizeof p2, "collide.safetensors");
    CU_ASSERT(opd_model_save(&m, p2, NULL, bad_keys, bad_vals, 1) == -1);
    ASSERT_ERR_HAS("collides");
    CU_ASSERT(access(p2, F_OK) != 0);

    opd_model_free(&m);
    opd_model_free(&m2);
    opd_adamw_free(&opt);
    opd_adamw_free(&opt2);
}

static void test_ckpt_tied_weights_only(void) {
    char path[512];
    tmp_path(path, sizeof path, "tied.safetensors");
    opd_config cfg;
    small_config(&cfg);
    cfg.tie_embeddings = 1;
    cfg.qkv_bias = 0;
    cfg.n_kv_heads = 4;
    opd_model m, m2;
    CU_ASSERT_FATAL(opd_model_init(&m, &cfg) == 0);
    opd_model_init_random(&m, 7);
    CU_ASSERT_FATAL(opd_model_save(&m, path, NULL, NULL, NULL, 0) == 0);
    opd_safetensors st;
    CU_ASSERT_FATAL(opd_st_read(path, &st) == 0);
    CU_ASSERT(st.n == opd_param_tensor_count(&cfg));
    CU_ASSERT(opd_st_find(&st, "lm_head.weight") == NULL);
    CU_ASSERT(opd_st_find(&st, "model.layers.1.self_attn.q_proj.bias") == NULL);
    CU_ASSERT(opd_st_find(&st, "model.layers.1.mlp.down_proj.weight") != NULL);
    opd_st_free(&st);
    CU_ASSERT_FATAL(opd_model_load(&m2, path, NULL) == 0);
    CU_ASSERT(memcmp(m2.params_mem, m.params_mem, m.num_params * sizeof(float)) == 0);
    CU_ASSERT(m2.params.lm_head == m2.params.wte);
    opd_model_free(&m2);
    /* asking for optimizer state from a weights-only file */
    opd_adamw opt;
    CU_ASSERT(opd_model_load(&m2, path, &opt) == -1);
    ASSERT_ERR_HAS("no optimizer state");
    CU_ASSERT(m2.params_mem == NULL && opt.m == NULL);
    opd_model_free(&m);
    unlink(path);
}

/* Read a checkpoint, let `edit` change it, write it back, expect `needle`. */
static void expect_load_fails(const char *src, void (*edit)(opd_safetensors *),
                              const char *needle, int with_opt) {
    char dst[512];
    tmp_path(dst, sizeof dst, "edited.safetensors");
    opd_safetensors st;
    CU_ASSERT_FATAL(opd_st_read(src, &st) == 0);
    edit(&st);
    CU_ASSERT_FATAL(opd_st_write(&st, dst) == 0);
    opd_st_free(&st);
    opd_model m;
    opd_adamw opt;
    int rc = opd_model_load(&m, dst, with_opt ? &opt : NULL);
    CU_ASSERT(rc == -1);
    if (rc == 0) {
        opd_model_free(&m);
        if (with_opt) opd_adamw_free(&opt);
        return;
    }
    const char *e = opd_last_error();
    int ok = strstr(e, needle) != NULL && strstr(e, dst) != NULL;
    printf("\n    %-44s -> %s%s", needle, e, ok ? "" : "   <-- EXPECTED ABOVE");
    CU_ASSERT(ok);
    unlink(dst);
}

static opd_st_tensor *find_mut(opd_safetensors *st, const char *name) {
    return (opd_st_tensor *)opd_st_find(st, name);
}

static void edit_q_shape(opd_safetensors *st) {
    opd_st_tensor *t = find_mut(st, "model.layers.1.self_attn.q_proj.weight");
    t->shape[0] = 8;                   /* (16, 16) -> (8, 16) */
    t->nbytes /= 2;
}
static void edit_q_rank(opd_safetensors *st) {
    opd_st_tensor *t = find_mut(st, "model.layers.0.self_attn.q_proj.weight");
    t->ndim = 1;
    t->shape[0] = 256;
}
static void edit_drop_tensor(opd_safetensors *st) {
    opd_st_tensor *t = find_mut(st, "model.layers.0.mlp.up_proj.weight");
    free(t->name);
    free(t->data);
    *t = st->t[--st->n];
    st->n_indexed = 0;   /* entries moved: the name index no longer holds */
}
static void edit_dtype(opd_safetensors *st) {
    find_mut(st, "model.norm.weight")->dtype = OPD_I32;   /* same byte size */
}
static void edit_extra_tensor(opd_safetensors *st) {
    int64_t shape[1] = {2};
    float x[2] = {1, 2};
    opd_st_add(st, "model.layers.0.self_attn.rotary_emb.inv_freq", OPD_F32, 1, shape, x);
}
static void edit_extra_optim(opd_safetensors *st) {
    int64_t shape[1] = {2};
    float x[2] = {1, 2};
    opd_st_add(st, "optimizer.m.model.bogus", OPD_F32, 1, shape, x);
}
static void edit_meta_text(opd_safetensors *st) { opd_st_set_meta(st, "opd.d_model", "sixteen"); }
static void edit_meta_trailing(opd_safetensors *st) { opd_st_set_meta(st, "opd.n_layers", "2x"); }
static void edit_meta_heads(opd_safetensors *st) { opd_st_set_meta(st, "opd.n_heads", "3"); }
static void edit_meta_dff(opd_safetensors *st) { opd_st_set_meta(st, "opd.d_ff", "64"); }
static void edit_meta_theta(opd_safetensors *st) { opd_st_set_meta(st, "opd.rope_theta", "nan"); }
static void edit_meta_huge(opd_safetensors *st) { opd_st_set_meta(st, "opd.vocab_size", "99999999999"); }
static void edit_meta_drop(opd_safetensors *st) {
    for (int i = 0; i < st->nmeta; i++) {
        if (strcmp(st->meta_keys[i], "opd.n_kv_heads") == 0) {
            free(st->meta_keys[i]);
            free(st->meta_vals[i]);
            st->meta_keys[i] = st->meta_keys[st->nmeta - 1];
            st->meta_vals[i] = st->meta_vals[st->nmeta - 1];
            st->nmeta--;
            return;
        }
    }
}
static void edit_optim_v_shape(opd_safetensors *st) {
    opd_st_tensor *t = find_mut(st, "optimizer.v.model.norm.weight");
    t->shape[0] = 4;
    t->nbytes = 16;
}
static void edit_optim_step(opd_safetensors *st) { opd_st_set_meta(st, "opd.optim.step", "-3"); }
static void edit_optim_kind(opd_safetensors *st) { opd_st_set_meta(st, "opd.optim.lr_schedule", "linear"); }
static void edit_optim_step_huge(opd_safetensors *st) { opd_st_set_meta(st, "opd.optim.step", "9223372036854775807"); }
static void edit_optim_lr(opd_safetensors *st) { opd_st_set_meta(st, "opd.optim.lr", "-1"); }
static void edit_optim_warmup(opd_safetensors *st) { opd_st_set_meta(st, "opd.optim.warmup_steps", "-5"); }
static void edit_meta_space(opd_safetensors *st) { opd_st_set_meta(st, "opd.d_model", " 16"); }
static void edit_meta_empty(opd_safetensors *st) { opd_st_set_meta(st, "opd.d_model", ""); }

static void test_ckpt_bad(void) {
    char path[512];
    tmp_path(path, sizeof path, "good.safetensors");
    opd_config cfg;
    small_config(&cfg);
    opd_model m;
    CU_ASSERT_FATAL(opd_model_init(&m, &cfg) == 0);
    opd_model_init_random(&m, 5);
    opd_optim_config oc;
    opd_optim_config_default(&oc);
    opd_adamw opt;
    opd_adamw_init(&opt, &oc, m.num_params);
    fill_moments(&opt, 3);
    CU_ASSERT_FATAL(opd_model_save(&m, path, &opt, NULL, NULL, 0) == 0);
    opd_model_free(&m);
    opd_adamw_free(&opt);

    expect_load_fails(path, edit_q_shape,
                      "'model.layers.1.self_attn.q_proj.weight': expected shape [16, 16] for this config, found [8, 16]", 0);
    expect_load_fails(path, edit_q_rank, "expected shape [16, 16] for this config, found [256]", 0);
    expect_load_fails(path, edit_drop_tensor, "tensor 'model.layers.0.mlp.up_proj.weight' is missing", 0);
    expect_load_fails(path, edit_dtype, "'model.norm.weight': expected dtype F32, found I32", 0);
    expect_load_fails(path, edit_extra_tensor, "unexpected tensor 'model.layers.0.self_attn.rotary_emb.inv_freq'", 0);
    expect_load_fails(path, edit_extra_optim, "unexpected tensor 'optimizer.m.model.bogus'", 0);
    expect_load_fails(path, edit_meta_text, "'opd.d_model' = \"sixteen\" is not an integer", 0);
    expect_load_fails(path, edit_meta_trailing, "'opd.n_layers' = \"2x\" is not an integer", 0);
    expect_load_fails(path, edit_meta_heads, "n_heads 3 must be >= 1 and divide d_model 16", 0);
    expect_load_fails(path, edit_meta_dff, "'model.layers.0.mlp.gate_proj.weight': expected shape [64, 16] for this config, found [48, 16]", 0);
    expect_load_fails(path, edit_meta_theta, "'opd.rope_theta' = \"nan\" is not a finite number", 0);
    expect_load_fails(path, edit_meta_huge, "'opd.vocab_size' = 99999999999 out of range", 0);
    expect_load_fails(path, edit_meta_drop, "metadata key 'opd.n_kv_heads' is missing", 0);
    expect_load_fails(path, edit_optim_v_shape, "'optimizer.v.model.norm.weight': expected shape [16] for this config, found [4]", 1);
    expect_load_fails(path, edit_optim_step, "'opd.optim.step' = -3 out of range", 1);
    expect_load_fails(path, edit_optim_kind, "\"linear\" is not constant or cosine", 1);
    expect_load_fails(path, edit_optim_step_huge, "'opd.optim.step' = 9223372036854775807 out of range", 1);
    expect_load_fails(path, edit_optim_lr, "'opd.optim.lr' = -1 out of range", 1);
    expect_load_fails(path, edit_optim_warmup, "must be >= 0", 1);
    expect_load_fails(path, edit_meta_space, "'opd.d_model' = \" 16\" is not an integer", 0);
    expect_load_fails(path, edit_meta_empty, "'opd.d_model' = \"\" is not an integer", 0);
    unlink(path);
}

/* A save that dies half-way (file size limit: the kernel refuses the write)
 * must leave the previous checkpoint as it was and no temporary behind. */
static void test_ckpt_atomic_failure(void) {
    char path[512];
    tmp_path(path, sizeof path, "atomic.safetensors");
    opd_config cfg;
    small_config(&cfg);
    opd_model a, b;
    CU_ASSERT_FATAL(opd_model_init(&a, &cfg) == 0);
    CU_ASSERT_FATAL(opd_model_init(&b, &cfg) == 0);
    opd_model_init_random(&a, 1);
    opd_model_init_random(&b, 2);
    CU_ASSERT_FATAL(opd_model_save(&a, path, NULL, NULL, NULL, 0) == 0);
    size_t n_before;
    unsigned char *before = read_file(path, &n_before);

    struct rlimit old;
    CU_ASSERT_FATAL(getrlimit(RLIMIT_FSIZE, &old) == 0);
    /* nothing may be printed while the limit holds: the test log is a file */
    fflush(stdout);
    fflush(stderr);
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = old;
    lim.rlim_cur = 4096;   /* the checkpoint is ~70 KB */
    int set_ok = setrlimit(RLIMIT_FSIZE, &lim) == 0;
    int rc = opd_model_save(&b, path, NULL, NULL, NULL, 0);
    int restored = setrlimit(RLIMIT_FSIZE, &old) == 0;
    signal(SIGXFSZ, old_handler);

    CU_ASSERT_FATAL(set_ok && restored);
    CU_ASSERT(rc == -1);
    ASSERT_ERR_HAS("write failed");
    printf("\n    checkpoint %zu bytes, limit 4096", n_before);
    size_t n_after;
    unsigned char *after = read_file(path, &n_after);
    CU_ASSERT(after && n_after == n_before && memcmp(before, after, n_before) == 0);
    opd_model c;
    CU_ASSERT_FATAL(opd_model_load(&c, path, NULL) == 0);
    CU_ASSERT(memcmp(c.params_mem, a.params_mem, a.num_params * sizeof(float)) == 0);
    /* no temporary left in the directory */
    int leftovers = 0;
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strstr(e->d_name, ".tmp.")) { leftovers++; printf("\n    leftover: %s", e->d_name); }
    closedir(d);
    CU_ASSERT(leftovers == 0);
    /* and with the limit gone the save works */
    CU_ASSERT(opd_model_save(&b, path, NULL, NULL, NULL, 0) == 0);
    free(before);
    free(after);
    opd_model_free(&a);
    opd_model_free(&b);
    opd_model_free(&c);
    unlink(path);
}

/* A file's metadata config is only a claim: a header-only file declaring
 * a model of ~1e14 parameters is refused by name before anything is
 * allocated (it used to calloc from the config first and abort). */
static void test_ckpt_claims_without_tensors(void) {
    char path[512];
    tmp_path(path, sizeof path, "claims.safetensors");
    opd_config cfg;
    opd_config_default(&cfg);
    cfg.vocab_size = 1 << 20;
    cfg.d_model = 65536;
    cfg.n_layers = 1024;
    cfg.d_ff = 1 << 20;
    cfg.n_heads = 64;
    cfg.n_kv_heads = 8;
    CU_ASSERT_FATAL(opd_config_validate(&cfg, "test") == 0);
    opd_safetensors st;
    opd_st_init(&st);
    opd_config_to_meta(&cfg, &st);
    CU_ASSERT_FATAL(opd_st_write(&st, path) == 0);
    opd_st_free(&st);
    opd_model m;
    opd_adamw opt;
    CU_ASSERT(opd_model_load(&m, path, NULL) == -1);
    ASSERT_ERR_HAS("tensor 'model.embed_tokens.weight' is missing");
    CU_ASSERT(m.params_mem == NULL);
    CU_ASSERT(opd_model_load(&m, path, &opt) == -1);
    CU_ASSERT(m.params_mem == NULL && opt.m == NULL);
    CU_ASSERT(opd_peak_rss_kb() < 500 * 1024);
    unlink(path);
}

/* opd_st_find through the name index: tensors added in reverse order,
 * before and after a write + read, and names that are not there. */
static void test_st_index(void) {
    char path[512];
    tmp_path(path, sizeof path, "many.safetensors");
    opd_safetensors st;
    opd_st_init(&st);
    const int n = 3000;
    float v = 1;
    for (int i = n - 1; i >= 0; i--) {
        char name[32];
        snprintf(name, sizeof name, "t%05d", i);
        CU_ASSERT_FATAL(opd_st_add(&st, name, OPD_F32, 0, NULL, &v) == 0);
    }
    for (int pass = 0; pass < 2; pass++) {
        int bad = 0;
        for (int i = 0; i < n; i++) {
            char name[32];
            snprintf(name, sizeof name, "t%05d", i);
            const opd_st_tensor *t = opd_st_find(&st, name);
            bad += !t || strcmp(t->name, name) != 0;
        }
        CU_ASSERT(bad == 0);
        CU_ASSERT(opd_st_find(&st, "t") == NULL && opd_st_find(&st, "t99999") == NULL);
        CU_ASSERT(opd_st_add(&st, "t01234", OPD_F32, 0, NULL, &v) == -1);
        if (pass == 0) {
            CU_ASSERT_FATAL(opd_st_write(&st, path) == 0);
            opd_st_free(&st);
            CU_ASSERT_FATAL(opd_st_read(path, &st) == 0);
            CU_ASSERT(st.n == n);
        }
    }
    opd_st_free(&st);
    unlink(path);
}

/* Outputs that exist and are not regular files are refused, untouched; the
 * parsers refuse such inputs without blocking on them. */
static void test_special_files(void) {
    char fifo[512], dir[512], link[512], target[512];
    tmp_path(fifo, sizeof fifo, "fifo");
    tmp_path(dir, sizeof dir, "adir");
    tmp_path(link, sizeof link, "link");
    tmp_path(target, sizeof target, "target");
    CU_ASSERT_FATAL(mkfifo(fifo, 0600) == 0);
    CU_ASSERT_FATAL(mkdir(dir, 0700) == 0);
    CU_ASSERT_FATAL(symlink(target, link) == 0);
    const void *parts[1] = {"x"};
    size_t sizes[1] = {1};
    CU_ASSERT(opd_atomic_write(fifo, parts, sizes, 1) == -1);
    ASSERT_ERR_HAS("is a FIFO (named pipe): refusing to replace it");
    CU_ASSERT(opd_atomic_write(dir, parts, sizes, 1) == -1);
    ASSERT_ERR_HAS("is a directory: refusing to replace it");
    CU_ASSERT(opd_atomic_write(link, parts, sizes, 1) == -1);
    ASSERT_ERR_HAS("is a symbolic link");
    struct stat sb;
    CU_ASSERT(lstat(fifo, &sb) == 0 && S_ISFIFO(sb.st_mode));
    CU_ASSERT(lstat(link, &sb) == 0 && S_ISLNK(sb.st_mode));
    CU_ASSERT(access(target, F_OK) != 0);
    opd_safetensors st;
    CU_ASSERT(opd_st_read(fifo, &st) == -1);   /* would block forever on open */
    ASSERT_ERR_HAS("is a FIFO (named pipe), not a regular file");
    CU_ASSERT(opd_st_read(dir, &st) == -1);
    ASSERT_ERR_HAS("is a directory, not a regular file");
    unlink(fifo);
    unlink(link);
    rmdir(dir);
}

/* ================================================================ optimizer */

/* V=4, C=2, L=1, one head, tied: 42 parameters, norms and matrices both. */
static void tiny_config(opd_config *c) {
    opd_config_default(c);
    c->vocab_size = 4;
    c->d_model = 2;
    c->n_layers = 1;
    c->n_heads = 1;
    c->n_kv_heads = 1;
    c->d_ff = 2;
    c->max_seq_len = 8;
    c->qkv_bias = 1;
    c->tie_embeddings = 1;
}

/* decay flag of every parameter element, from the tensor table */
static int *decay_mask(const opd_config *cfg, size_t n) {
    int nt = opd_param_tensor_count(cfg);
    opd_tensor_info *ts = calloc(nt, sizeof *ts);
    opd_param_tensors(cfg, ts);
    int *mask = calloc(n, sizeof *mask);
    for (int k = 0; k < nt; k++)
        for (size_t j = 0; j < ts[k].numel; j++) mask[ts[k].offset + j] = ts[k].decay;
    free(ts);
    return mask;
}

static void test_adamw_reference(void) {
    opd_config cfg;
    tiny_config(&cfg);
    opd_model m;
    CU_ASSERT_FATAL(opd_model_init(&m, &cfg) == 0);
    opd_model_alloc_grads(&m);
    size_t n = m.num_params;
    opd_model_init_random(&m, 11);
    for (size_t i = 0; i < n; i++) m.params_mem[i] += 0.3f * opd_normal(3, 0, 0, (uint32_t)i);
    int *mask = decay_mask(&cfg, n);
    opd_optim_config oc;
    opd_optim_config_default(&oc);
    oc.lr = 1e-2f;
    oc.weight_decay = 0.1f;
    oc.grad_clip = 0.0f;
    oc.lr_kind = OPD_LR_COSINE;
    oc.warmup_steps = 2;
    oc.total_steps = 6;
    oc.min_lr_frac = 0.2f;
    opd_adamw opt;
    opd_adamw_init(&opt, &oc, n);

    double *p = malloc(n * sizeof *p), *mm = calloc(n, sizeof *mm), *vv = calloc(n, sizeof *vv);
    for (size_t i = 0; i < n; i++) p[i] = m.params_mem[i];
    double max_rel = 0, max_abs = 0;
    for (int step = 0; step < 8; step++) {
        for (size_t i = 0; i < n; i++)
            m.grads_mem[i] = opd_normal(17, (uint32_t)step, 0, (uint32_t)i) * (1.0f + (float)(i % 5));
        /* the rule written out in double, independently of optim.c */
        double lr = step < 2 ? 1e-2 * step / 2.0
                             : 1e-2 * (0.2 + 0.8 * 0.5 * (1 + cos(M_PI * (step - 2) / 4.0)));
        if (step >= 6) lr = 1e-2 * 0.2;
        int t = step + 1;
        for (size_t i = 0; i < n; i++) {
            double g = m.grads_mem[i];
            mm[i] = 0.9 * mm[i] + 0.1 * g;
            vv[i] = 0.95 * vv[i] + 0.05 * g * g;
            double mhat = mm[i] / (1 - pow(0.9, t)), vhat = vv[i] / (1 - pow(0.95, t));
            if (mask[i]) p[i] *= 1 - lr * 0.1;
            p[i] -= lr * mhat / (sqrt(vhat) + 1e-8);
        }
        opd_adamw_update(&opt, &m);
        double step_abs = 0, step_rel = 0;
        for (size_t i = 0; i < n; i++) {
            double d = fabs(m.params_mem[i] - p[i]);
            if (d > step_abs) step_abs = d;
            if (d / (fabs(p[i]) + 1e-3) > step_rel) step_rel = d / (fabs(p[i]) + 1e-3);
        }
        if (step == 0) printf("\n    after 1 step : max abs %.3g, max rel %.3g", step_abs, step_rel);
        if (step_abs > max_abs) max_abs = step_abs;
        if (step_rel > max_rel) max_rel = step_rel;
        if (step == 0) CU_ASSERT(step_abs == 0.0 || step_abs < 1e-7);  /* lr(0) = 0: only moments move */
    }
    printf("\n    after 8 steps: max abs %.3g, max rel %.3g (n = %zu, step = %ld)", max_abs, max_rel, n, opt.step);
    CU_ASSERT(max_rel < 1e-5);
    CU_ASSERT(opt.step == 8);
    /* relative to the largest moment: single elements near 0 are all
     * cancellation, not error */
    double mom_err = 0, mom_max = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(opt.m[i] - mm[i]);
        if (d > mom_err) mom_err = d;
        if (fabs(mm[i]) > mom_max) mom_max = fabs(mm[i]);
    }
    mom_err /= mom_max;
    printf("\n    first moment max abs error / max |m| = %.3g", mom_err);
    CU_ASSERT(mom_err < 1e-5);
    free(p);
    free(mm);
    free(vv);
    free(mask);
    opd_adamw_free(&opt);
    opd_model_free(&m);
}

/* With zero gradients the Adam term is zero, so a step is pure decay:
 * matrices shrink by exactly (1 - lr wd), norms and biases don't move. */
static void test_adamw_decay_only_on_matrices(void) {
    opd_config cfg;
    tiny_config(&cfg);
    opd_model m;
    CU_ASSERT_FATAL(opd_model_init(&m, &cfg) == 0);
    opd_model_alloc_grads(&m);
    opd_model_init_random(&m, 4);
    size_t n = m.num_params;
    for (size_t i = 0; i < n; i++) m.params_mem[i] += 0.5f;   /* biases nonzero too */
    float *before = malloc(n * sizeof(float));
    memcpy(before, m.params_mem, n * sizeof(float));
    int *mask = decay_mask(&cfg, n);
    opd_optim_config oc;
    opd_optim_config_default(&oc);
    oc.lr = 0.5f;
    oc.weight_decay = 0.2f;
    opd_adamw opt;
    opd_adamw_init(&opt, &oc, n);
    float norm = opd_adamw_update(&opt, &m);
    CU_ASSERT(norm == 0.0f);
    int wrong = 0, ndecay = 0;
    for (size_t i = 0; i < n; i++) {
        float want = mask[i] ? before[i] * (1.0f - 0.5f * 0.2f) : before[i];
        wrong += m.params_mem[i] != want;
        ndecay += mask[i];
    }
    printf("\n    %d of %zu elements decayed, %d wrong", ndecay, n, wrong);
    CU_ASSERT(wrong == 0);
    CU_ASSERT(ndecay > 0 && (size_t)ndecay < n);
    /* tied head: the tensor table covers every parameter exactly once */
    int nt = opd_param_tensor_count(&cfg);
    opd_tensor_info *ts = calloc(nt, sizeof *ts);
    opd_param_tensors(&cfg, ts);
    int *cover = calloc(n, sizeof *cover);
    for (int k = 0; k < nt; k++) {
        CU_ASSERT(strcmp(ts[k].name, "lm_head.weight") != 0);
        for (size_t j = 0; j < ts[k].numel; j++) cover[ts[k].offset + j]++;
    }
    int badcover = 0;
    for (size_t i = 0; i < n; i++) badcover += cover[i] != 1;
    CU_ASSERT(badcover == 0);
    free(cover);
    free(ts);
    free(before);
    free(mask);
    opd_adamw_free(&opt);
    opd_model_free(&m);
}

static void test_adamw_clipping(void) {
    opd_config cfg;
    tiny_config(&cfg);
    opd_model m;
    CU_ASSERT_FATAL(opd_model_init(&m, &cfg) == 0);
    opd_model_alloc_grads(&m);
    size_t n = m.num_params;
    double ss = 0;
    for (size_t i = 0; i < n; i++) {
        m.grads_mem[i] = (float)((int)(i % 7) - 3);
        ss += (double)m.grads_mem[i] * m.grads_mem[i];
    }
    opd_optim_config oc;
    opd_optim_config_default(&oc);
    oc.grad_clip = 1.0f;
    opd_adamw opt;
    opd_adamw_init(&opt, &oc, n);
    float norm = opd_adamw_update(&opt, &m);
    float after = opd_grad_norm(m.grads_mem, n);
    printf("\n    norm %.6f (exact %.6f), after clipping %.7f (clip 1)", norm, sqrt(ss), after);
    CU_ASSERT(fabs(norm - sqrt(ss)) < 1e-5 * sqrt(ss));
    CU_ASSERT(fabs(after - 1.0f) < 2e-6);
    /* the first moment saw the clipped gradient */
    CU_ASSERT(fabsf(opt.m[1] - 0.1f * m.grads_mem[1]) < 1e-7f);
    /* below the threshold nothing is scaled */
    for (size_t i = 0; i < n; i++) m.grads_mem[i] = 1e-3f * (float)(i % 3);
    float *g0 = malloc(n * sizeof(float));
    memcpy(g0, m.grads_mem, n * sizeof(float));
    opd_adamw_update(&opt, &m);
    CU_ASSERT(memcmp(g0, m.grads_mem, n * sizeof(float)) == 0);
    CU_ASSERT(opt.step == 2);
    /* a NaN gradient is reported and the update skipped */
    float *p0 = malloc(n * sizeof(float));
    memcpy(p0, m.params_mem, n * sizeof(float));
    m.grads_mem[3] = NAN;
    CU_ASSERT(isnan(opd_adamw_update(&opt, &m)));
    CU_ASSERT(opt.step == 2 && memcmp(p0, m.params_mem, n * sizeof(float)) == 0);
    free(g0);
    free(p0);
    opd_adamw_free(&opt);
    opd_model_free(&m);
}

static void test_lr_schedule(void) {
    opd_optim_config c;
    opd_optim_config_default(&c);
    CU_ASSERT(c.lr == 1e-3f && c.beta1 == 0.9f && c.beta2 == 0.95f && c.grad_clip == 1.0f);
    CU_ASSERT(opd_lr_at(&c, 0) == 1e-3f && opd_lr_at(&c, 1000000) == 1e-3f);
    /* the constant schedule warms up too (it used to ignore warmup_steps, so
     * a warm-started student met full-size AdamW steps on its first update) */
    c.warmup_steps = 10;
    printf("\n  constant + warmup 10: lr(0) %g lr(5) %g lr(10) %g lr(10^6) %g", opd_lr_at(&c, 0),
           opd_lr_at(&c, 5), opd_lr_at(&c, 10), opd_lr_at(&c, 1000000));
    CU_ASSERT(opd_lr_at(&c, 0) == 0.0f);
    CU_ASSERT(fabsf(opd_lr_at(&c, 5) - 5e-4f) < 1e-9f);
    CU_ASSERT(opd_lr_at(&c, 10) == 1e-3f && opd_lr_at(&c, 1000000) == 1e-3f);
    c.warmup_steps = 0;
    c.lr = 2.0f;
    c.lr_kind = OPD_LR_COSINE;
    c.warmup_steps = 10;
    c.total_steps = 110;
    c.min_lr_frac = 0.1f;
    const struct { long step; double want; } table[] = {
        {0, 0.0}, {1, 0.2}, {5, 1.0}, {9, 1.8},                 /* warmup */
        {10, 2.0},                                              /* peak */
        {35, 0.2 + 1.8 * 0.5 * (1 + cos(M_PI * 0.25))},
        {60, 1.1},                                              /* half way */
        {85, 0.2 + 1.8 * 0.5 * (1 + cos(M_PI * 0.75))},
        {109, 0.2 + 1.8 * 0.5 * (1 + cos(M_PI * 0.99))},
        {110, 0.2}, {5000, 0.2},                                /* floor */
    };
    double worst = 0;
    printf("\n    step   lr        want");
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        float got = opd_lr_at(&c, table[i].step);
        double err = fabs(got - table[i].want);
        printf("\n    %4ld   %.6f  %.6f", table[i].step, got, table[i].want);
        if (err > worst) worst = err;
    }
    printf("\n    max abs error %.3g", worst);
    CU_ASSERT(worst < 1e-6);
    /* monotone down after warmup */
    int mono = 1;
    for (long s = 11; s < 120; s++) mono &= opd_lr_at(&c, s) <= opd_lr_at(&c, s - 1);
    CU_ASSERT(mono);
}

/* Thread count changes no bit of the norm or the update. */
static void test_optim_thread_determinism(void) {
    size_t n = 300001;   /* several norm chunks */
    float *g = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) g[i] = opd_normal(8, 0, 0, (uint32_t)i);
    omp_set_num_threads(1);
    float n1 = opd_grad_norm(g, n);
    omp_set_num_threads(3);
    float n3 = opd_grad_norm(g, n);
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += (double)g[i] * g[i];
    printf("\n    norm 1 thread %.9g, 3 threads %.9g, plain double %.9g", n1, n3, sqrt(ss));
    CU_ASSERT(memcmp(&n1, &n3, sizeof n1) == 0);
    CU_ASSERT(fabs(n1 - sqrt(ss)) < 1e-6 * sqrt(ss));
    free(g);

    opd_config cfg;
    small_config(&cfg);
    cfg.d_model = 64;
    cfg.d_ff = 512;    /* 32768-element matrices: the parallel path */
    opd_model a, b;
    opd_adamw oa, ob;
    opd_optim_config oc;
    opd_optim_config_default(&oc);
    opd_model *ms[2] = {&a, &b};
    opd_adamw *os[2] = {&oa, &ob};
    int threads[2] = {1, 3};
    for (int r = 0; r < 2; r++) {
        CU_ASSERT_FATAL(opd_model_init(ms[r], &cfg) == 0);
        opd_model_init_random(ms[r], 21);
        opd_model_alloc_grads(ms[r]);
        opd_adamw_init(os[r], &oc, ms[r]->num_params);
        omp_set_num_threads(threads[r]);
        for (int s = 0; s < 3; s++) {
            for (size_t i = 0; i < ms[r]->num_params; i++)
                ms[r]->grads_mem[i] = 0.01f * opd_normal(9, (uint32_t)s, 0, (uint32_t)i);
            opd_adamw_update(os[r], ms[r]);
        }
    }
    omp_set_num_threads(2);
    CU_ASSERT(memcmp(a.params_mem, b.params_mem, a.num_params * sizeof(float)) == 0);
    CU_ASSERT(memcmp(oa.v, ob.v, oa.n * sizeof(float)) == 0);
    printf("\n    %zu params, 3 updates, 1 vs 3 threads max |diff| %g", a.num_params,
           opd_max_abs_diff(a.params_mem, b.params_mem, a.num_params));
    for (int r = 0; r < 2; r++) {
        opd_model_free(ms[r]);
        opd_adamw_free(os[r]);
    }
}

static void cleanup_tmpdir(void) {
    DIR *d = opendir(tmpdir);
    if (!d) return;
    struct dirent *e;
    char p[768];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(tmpdir);
}

int main(void) {
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/opd-ckpt-XXXXXX", base && base[0] ? base : "/tmp");
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 2; }
    if (CU_initialize_registry() != CUE_SUCCESS) return 2;
    static const opd_test_case cases[] = {
        {"safetensors round trip, all dtypes + metadata", test_st_roundtrip},
        {"safetensors readable by python json+struct+numpy", test_st_python_reads},
        {"safetensors truncated / not safetensors", test_st_truncated},
        {"safetensors malformed headers", test_st_bad_header},
        {"checkpoint round trip with optimizer, bit-identical", test_ckpt_roundtrip},
        {"checkpoint tied embeddings, weights only", test_ckpt_tied_weights_only},
        {"checkpoint refuses mismatched files", test_ckpt_bad},
        {"checkpoint save failure leaves old file", test_ckpt_atomic_failure},
        {"checkpoint claiming a huge config without tensors", test_ckpt_claims_without_tensors},
        {"safetensors name index", test_st_index},
        {"special files as outputs and inputs", test_special_files},
        {"adamw vs double reference", test_adamw_reference},
        {"adamw weight decay only on matrices", test_adamw_decay_only_on_matrices},
        {"adamw global-norm clipping", test_adamw_clipping},
        {"lr schedule table", test_lr_schedule},
        {"optimizer thread determinism", test_optim_thread_determinism},
        {0, 0}};
    opd_test_suite("ckpt", cases);
    int rc = opd_test_run();
    cleanup_tmpdir();
    return rc;
}
