/* block.h — one transformer block's wiring, shared by the full forward
 * (opd_model_forward, ref/model.c) and the KV-cached decode (ref/decode.c),
 * which differ only in their attention and in where the buffers live.
 * Internal to the library. */
#ifndef OPD_BLOCK_H
#define OPD_BLOCK_H

#include "opd.h"

/* The buffers of one block for N rows: views into opd_acts (the forward
 * keeps every layer's) or into the decode scratch (which reuses them). */
typedef struct {
    float *ln1, *ln1_rstd;   /* (N, C), (N)  n1(x)                              */
    float *q, *k, *v;        /* (N, NH*hd), (N, NKV*hd) x2, after RoPE           */
    float *atty;             /* (N, NH*hd)   the attention's output, before Wo   */
    float *res_mid;          /* (N, C)       h = x + Wo atty                     */
    float *ln2, *ln2_rstd;   /* (N, C), (N)  n2(h)                              */
    float *gate, *up;        /* (N, F)                                          */
    float *swiglu;           /* (N, F)       silu(gate) * up (may alias gate)    */
    float *res_out;          /* (N, C)       h + Wdown swiglu (may alias x)      */
} opd_block_bufs;

/* First half of block l: ln1 = n1(x); q, k, v = Wq|Wk|Wv ln1 (+ bias), RoPE
 * on q and k at positions pos (N). The attention runs between the halves. */
void block_attention_inputs(const opd_model *m, int l, const float *x, const int *pos,
                            int N, opd_block_bufs *o);
/* Second half: res_mid = x + Wo atty; res_out = res_mid + Wdown (silu(Wgate
 * n2(res_mid)) * Wup n2(res_mid)). res_out may alias x: x is read only
 * before res_out is written. */
void block_output(const opd_model *m, int l, const float *x, int N, opd_block_bufs *o);

#endif /* OPD_BLOCK_H */
