"""Fixtures of tests/test_text.sh: a byte-level BPE tokenizer.json (built with
tokenizers, Qwen2-style: the special tokens take the ids after the model's
vocabulary), tiny random Qwen2 teacher / student directories (transformers)
whose vocab_size pads the tokenizer's, one whose vocab is too small, and JSONL
prompt files.

usage: text_fixtures.py WORKDIR
"""
import json
import os
import random
import sys

import torch
import transformers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

QWEN2_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
            r"|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def problem(rng):
    a, b = rng.randint(1, 99), rng.randint(1, 99)
    return f"What is {a} plus {b}?", a + b


def tokenizer(path, rng):
    corpus = []
    for _ in range(2000):
        q, ans = problem(rng)
        corpus.append(f"{q} The answer is {ans}.")
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_RE), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=300, special_tokens=[], show_progress=False,
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer=tr)
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIALS])
    tok.save(path)
    return tok.get_vocab_size(with_added_tokens=True)


def model(path, vocab, seed, max_pos=64):
    cfg = transformers.Qwen2Config(vocab_size=vocab, hidden_size=32, intermediate_size=64,
                                   num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                   max_position_embeddings=max_pos, rms_norm_eps=1e-6, rope_theta=10000.0,
                                   tie_word_embeddings=False)
    torch.manual_seed(seed)
    m = transformers.Qwen2ForCausalLM(cfg)
    with torch.no_grad():   # logits away from ~0, so rollouts differ from uniform draws
        for name, p in m.named_parameters():
            if "norm" not in name:
                p.mul_(5.0)
    m.save_pretrained(path, safe_serialization=True)


def main():
    work = sys.argv[1]
    rng = random.Random(7)
    n = tokenizer(os.path.join(work, "tokenizer.json"), rng)
    V = 320
    assert n <= V, n
    model(os.path.join(work, "teacher"), V, 1)
    model(os.path.join(work, "student"), V, 2)
    model(os.path.join(work, "small_vocab"), 200, 3)   # < the tokenizer's ids
    model(os.path.join(work, "other_vocab"), 384, 4)   # fits the tokenizer, not the teacher
    with open(os.path.join(work, "prompts.jsonl"), "w") as f:
        for i in range(6):
            q, ans = problem(rng)
            row = {"prompt": q, "answer": ans} if i != 5 else {"prompt": q}
            f.write(json.dumps(row) + "\n")
    with open(os.path.join(work, "long.jsonl"), "w") as f:
        f.write(json.dumps({"prompt": "What is 1 plus 2?", "answer": 3}) + "\n")
        f.write(json.dumps({"prompt": " ".join(["What is 12 plus 34?"] * 20), "answer": 46}) + "\n")
    with open(os.path.join(work, "bad.jsonl"), "w") as f:
        f.write(json.dumps({"prompt": "What is 1 plus 2?", "answer": 3}) + "\n")
        f.write('{"prompt": "What is 2 plus 2?", "answer": 4\n')
    print(f"fixtures in {work}: tokenizer {n} ids, models vocab {V}")


main()
