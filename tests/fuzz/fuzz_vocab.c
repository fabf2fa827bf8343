/* libFuzzer harness: opd_tokenizer_load of a vocabulary file. */
#include "fuzz_common.h"
#include "opd_data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("vocab.txt", data, size);
    opd_tokenizer tok;
    if (opd_tokenizer_load(&tok, path) == 0) {
        /* a loaded vocabulary maps each ordinary token back to its id */
        if (tok.vocab_size < 3 || tok.vocab_size > OPD_TOK_MAX_VOCAB) abort();
        for (int id = 3; id < tok.vocab_size; id++)
            if (tok.char_to_id[(unsigned char)tok.token[id][0]] != id) abort();
    }
    unlink(path);
    return 0;
}
