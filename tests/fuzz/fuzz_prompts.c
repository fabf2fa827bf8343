/* libFuzzer harness: opd_prompts_read of a JSONL prompt file. */
#include "fuzz_common.h"
#include "opd_bpe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("prompts.jsonl", data, size);
    opd_prompt_set s;
    if (opd_prompts_read(path, &s) == 0) {
        /* an accepted file has prompts, each a string */
        if (s.n < 1) abort();
        for (int i = 0; i < s.n; i++)
            if (!s.item[i].prompt) abort();
        opd_prompts_free(&s);
    }
    unlink(path);
    return 0;
}
