/* libFuzzer harness: opd_bpe_load of a tokenizer.json, then encoding and
 * decoding a fixed text with whatever it accepted. */
#include "fuzz_common.h"
#include "opd_bpe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("tokenizer.json", data, size);
    opd_bpe t;
    if (opd_bpe_load(&t, path) == 0) {
        static const char text[] = "Hello, world! 12345 \xc3\xa9t\xc3\xa9  \t\r\n<|im_end|> x";
        int ids[256];
        int n = opd_bpe_encode(&t, text, sizeof text - 1, ids, 256, 0);
        if (n < -1) abort();
        if (n > 0) {
            char out[4096];
            if (opd_bpe_decode(&t, ids, n, out, sizeof out, 0) < -1) abort();
        }
    }
    opd_bpe_free(&t);
    unlink(path);
    return 0;
}
