"""Cross-check of opd's tokenizer.json reader (data/bpe.c) against Hugging Face
`tokenizers`: ids and decodes on a few thousand varied strings.

There is no model hub here, so the tokenizer.json files are BUILT with the
tokenizers library: small byte-level BPEs trained on generated text, with the
pre-tokenizer, normalizer, model options and special tokens of
  qwen2   Qwen2's Split regex + NFC + ByteLevel(use_regex=False),
          <|endoftext|> <|im_start|> <|im_end|> with ids after the model's
          vocab (as in the released file), ByteLevel post-processor
  llama3  Llama 3's Split regex, no normalizer, ignore_merges, a few whole-word
          tokens no merge reaches (so ignore_merges matters), merges written in
          the newer ["a", "b"] form for opd, <|begin_of_text|> <|eot_id|> ...
          and 20 <|reserved_special_token_N|>, Llama 3.1's post-processor
          (<|begin_of_text|> + opd's ids must be encode(add_special_tokens=True))
  gpt2    plain ByteLevel(use_regex=True) + NFC, and added tokens with
          single_word / lstrip / rstrip / normalized set
Every string is encoded by both (tokenizers with add_special_tokens=False);
the ids must be equal, opd's decode must equal tokenizers' decode (with and
without special tokens), and for qwen2 / llama3 decode(encode(s)) must give s
back (NFC(s) for qwen2).

usage: bpe_crosscheck.py BPE_DUMP WORKDIR
"""
import json
import os
import random
import subprocess
import sys
import time
import unicodedata

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

QWEN2_RE = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
LLAMA3_RE = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

WORDS = """the of and to in is you that it he was for on are as with his they at be this have
from or one had by word but not what all were we when your can said there use an each which she do
how their if will up other about out many then them these so some her would make like him into time
has look two more write go see number no way could people my than first water been call who oil its
now find long down day did get come made may part distill student teacher rollout horizon token
model gradient loss answer question reason step think compute because therefore however""".split()
CONTRACTIONS = ["don't", "it's", "we're", "they've", "I'm", "you'll", "he'd", "DON'T", "IT'S", "We'Re",
                "I'M", "YOU'LL", "she'D", "o'clock", "rock'n'roll", "'s", "'t", "''", "l'été"]
UNICODE = ["café", "naïve", "über", "straße", "Ærøskøbing", "façade", "jalapeño", "São Paulo", "Łódź",
           "Ελληνικά", "λόγος", "Русский", "язык", "中文", "你好世界", "東京都", "日本語のテキスト", "カタカナ",
           "한국어", "안녕하세요", "العربية", "مرحبا", "עברית", "हिन्दी", "नमस्ते", "தமிழ்", "ไทย", "Tiếng Việt",
           "😀", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷", "❤️", "🤖🧠", "∑∫√∞", "≤≥≠", "½¾", "①②③", "Ⅻ", "²³", "٣٤٥",
           "१२३", "ǅ", "ﬁ", "Å", "K", "ſ", "ı", "İ", "ß", "ẞ"]
# decomposed text: NFC changes it (e + combining acute -> é, Hangul jamo -> syllable)
COMBINING = ["e\u0301", "Cafe\u0301", "n\u0303", "A\u030a", "o\u0308\u0304", "\u1100\u1161\u11a8",
             "\u1e9b\u0323", "q\u0307\u0323", "a\u0328\u0301", "\u0301alone", "x\u20dd", "i\u0307"]
SPACES = [" ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n", "\r\n\r\n", " \n ", "\u00a0", "\u3000",
          "\u2003", "\u2028", "\u0085", "\u180e", "\u200b", "\u000b", "\u000c", " \t \n", "    \n    "]
PUNCT = list(".,;:!?()[]{}<>\"'`~@#$%^&*-_=+/\\|") + ["...", "--", "->", "=>", "::", "!=", "**", "//", "#include",
                                                      "```", "'''", "\"\"\"", "<|", "|>", "<|im", "end|>"]


RARE = ["zqxv", " zqxv", " wordless", " distillation", " studentTeacher", "zqxvzqxv"]


def gen_text(rng, n_pieces, specials=()):
    out = []
    for _ in range(n_pieces):
        r = rng.random()
        if r < 0.40:
            w = rng.choice(WORDS)
            w = w.upper() if rng.random() < 0.1 else (w.capitalize() if rng.random() < 0.2 else w)
            out.append(w)
        elif r < 0.48:
            out.append(rng.choice(CONTRACTIONS))
        elif r < 0.60:
            out.append(rng.choice(UNICODE))
        elif r < 0.64:
            out.append(rng.choice(COMBINING))
        elif r < 0.72:
            k = rng.choice([1, 2, 3, 4, 5, 7, 12, 25])
            out.append("".join(rng.choice("0123456789") for _ in range(k)))
        elif r < 0.76:
            out.append(f"{rng.randint(-999, 99999)}.{rng.randint(0, 999)}")
        elif r < 0.86:
            out.append(rng.choice(PUNCT))
        elif r < 0.96:
            out.append(rng.choice(SPACES))
        elif specials:  # test strings only: added tokens, and words only the llama3 vocab has whole
            out.append(rng.choice(specials) if rng.random() < 0.8 else rng.choice(RARE))
        sep = rng.random()
        out.append(" " if sep < 0.7 else ("" if sep < 0.85 else rng.choice(SPACES)))
    return "".join(out)


def edge_cases(specials):
    r = random.Random(5)
    long_word = "".join(r.choice("abcdefghijklmnopqrstuvwxyzé") for _ in range(20000))
    e = [long_word, "the" * 5000, "", " ", "  ", "\n", "\r\n", "\r\n\r\n", "\t\t\t", " \t\n\r\n ", "a", "ab", "hello", " hello", "hello ",
         "1234567890" * 20, "9" * 1000, " " * 5000 + "x", "x" + " " * 5000, "\n" * 300, "a\u0301" * 50,
         "don't DON'T Don'T", "ſ's 'S 'ſ", "K's", "'ll've're", "''''", "a'b'c'", "😀" * 100,
         "👨‍👩‍👧‍👦👨‍👩‍👧‍👦", "中文" * 200, "\u180e\u180e a", "\u0085x\u0085", "\u2028\u2029", "\u00a0\u00a0x",
         "ab" * 500, "the " * 300] + RARE
    for s in specials:
        e += [s, s + s, " " + s, s + " ", "x" + s + "y", s + "\u0301", "e" + s + "\u0301",
              s[:-1], s[1:], s + s[:-2], "<" + s, s + ">", "\n" + s + "\n", f"{s}user\nhi{s}\n"]
    return e


def train(corpus, vocab_size, pre_tok, normalizer, specials, ignore_merges=False, specials_after=False):
    """specials_after: the special tokens get the ids after the model's vocab
    and are not in it, as in the released Qwen2 and Llama 3 files."""
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tok
    tok.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[] if specials_after else list(specials),
                             show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer=tr)
    if specials_after:
        tok.add_special_tokens([AddedToken(sp, special=True, normalized=False) for sp in specials])
    return tok


def build(workdir, rng):
    corpus = [gen_text(rng, rng.randint(5, 60)) for _ in range(4000)]
    built = {}

    # (a) Qwen2
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = train(corpus, 3000, pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_RE), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]), normalizers.NFC(), specials,
        specials_after=True)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    path = os.path.join(workdir, "qwen2.json")
    tok.save(path)
    built["qwen2"] = (tok, path, specials)

    # (b) Llama 3: ignore_merges, whole-word tokens no merge reaches (added to
    # the vocab before the special tokens, whose ids come after it), array
    # merges for opd
    specials = ["<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"] + \
        [f"<|reserved_special_token_{i}|>" for i in range(20)]
    tok = train(corpus, 3000, pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_RE), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]), None, [], ignore_merges=True)
    d = json.loads(tok.to_str())
    vocab = d["model"]["vocab"]
    for w in ["Ġzqxv", "zqxv", "Ġwordless", "Ġdistillation", "ĠstudentTeacher"]:
        if w not in vocab:
            vocab[w] = max(vocab.values()) + 1

    def with_specials(d):
        tok = Tokenizer.from_str(json.dumps(d))
        tok.add_special_tokens([AddedToken(sp, special=True, normalized=False) for sp in specials])
        # Llama 3.1's post-processor (opd, like add_special_tokens=False, does not apply it)
        bos = ("<|begin_of_text|>", tok.token_to_id("<|begin_of_text|>"))
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A $B",
                                          special_tokens=[bos])])
        return tok

    ref = with_specials(d)
    d = json.loads(ref.to_str())
    d["model"]["merges"] = [m.split(" ") for m in d["model"]["merges"]]
    path = os.path.join(workdir, "llama3.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(d, f, ensure_ascii=False)
    d = json.loads(ref.to_str())
    d["model"]["ignore_merges"] = False
    built["llama3"] = (ref, path, specials)
    built["llama3_without_ignore"] = Tokenizer.from_str(json.dumps(d))

    # (c) GPT-2 style, with the added-token options set
    tok = train(corpus, 2000, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
                normalizers.NFC(), ["<|endoftext|>"])
    tok.add_tokens([AddedToken("[SW]", single_word=True, normalized=False),
                    AddedToken("<L>", lstrip=True, normalized=False),
                    AddedToken("<R>", rstrip=True, normalized=False),
                    AddedToken("<LR>", lstrip=True, rstrip=True, normalized=False),
                    AddedToken("café", normalized=True),
                    AddedToken("word", single_word=True, normalized=True),
                    AddedToken(" spaced out", normalized=False)])
    tok.add_special_tokens([AddedToken("<|sep|>", special=True)])
    path = os.path.join(workdir, "gpt2.json")
    tok.save(path)
    built["gpt2"] = (tok, path, ["<|endoftext|>", "[SW]", "<L>", "<R>", "<LR>", "cafe\u0301", "café", "word",
                                 " spaced out", "<|sep|>"])
    return built


def main():
    dump, workdir = sys.argv[1], sys.argv[2]
    rng = random.Random(20240516)
    t0 = time.time()
    built = build(workdir, rng)
    print(f"built 3 tokenizer.json files in {time.time() - t0:.1f} s")
    failed = 0
    for name in ["qwen2", "llama3", "gpt2"]:
        tok, path, specials = built[name]
        strings = edge_cases(specials) + [gen_text(rng, rng.randint(1, 80), specials) for _ in range(3000)]
        spath = os.path.join(workdir, name + ".strings.jsonl")
        with open(spath, "w", encoding="utf-8") as f:
            for s in strings:
                f.write(json.dumps(s) + "\n")
        res = subprocess.run([dump, path, spath], capture_output=True, text=True)
        if res.returncode != 0:
            print(f"FAIL {name}: bpe_dump exited {res.returncode}: {res.stderr.strip()}")
            failed += 1
            continue
        lines = res.stdout.split("\n")[:-1]
        assert len(lines) == len(strings), (len(lines), len(strings))
        t1 = time.time()
        ref = tok.encode_batch(strings, add_special_tokens=False)
        hf_secs = time.time() - t1
        mism, shown, ntok, special_hits, nonascii = 0, 0, 0, 0, 0
        for s, line, enc in zip(strings, lines, ref):
            want = enc.ids
            ntok += len(want)
            special_hits += any(sp in s for sp in specials)
            nonascii += any(ord(c) > 127 for c in s)
            problems = []
            if line.startswith("ERROR"):
                problems.append(line)
            else:
                ids_s, dec_hex, dec_skip_hex = line.split("\t")
                got = [int(x) for x in ids_s.split()] if ids_s else []
                if got != want:
                    k = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
                    lo = max(0, k - 3)
                    problems.append(f"ids differ from token {k}: {tok.decode(want[lo:k + 3])!r}\n"
                                    f"      opd        {got[lo:k + 8]}\n      tokenizers {want[lo:k + 8]}")
                dec = bytes.fromhex(dec_hex)
                dec_skip = bytes.fromhex(dec_skip_hex)
                # tokenizers replaces invalid UTF-8 by U+FFFD, opd keeps the bytes
                if dec.decode("utf-8", "replace") != tok.decode(want, skip_special_tokens=False):
                    problems.append(f"decode differs: {dec[:80]!r}")
                if dec_skip.decode("utf-8", "replace") != tok.decode(want, skip_special_tokens=True):
                    problems.append(f"decode (skip special) differs: {dec_skip[:80]!r}")
                if name == "llama3":  # the post-processor only puts <|begin_of_text|> in front
                    if [tok.token_to_id("<|begin_of_text|>")] + got != tok.encode(s).ids:
                        problems.append("<|begin_of_text|> + ids is not encode(add_special_tokens=True)")
                back = unicodedata.normalize("NFC", s) if name == "qwen2" else s
                if name != "gpt2" and dec != back.encode():
                    problems.append(f"no round trip: {dec[:80]!r}")
            if problems:
                mism += 1
                if shown < 5:
                    shown += 1
                    print(f"  MISMATCH {name} on {s[:100]!r}:\n    " + "\n    ".join(problems))
        extra = ""
        if name == "llama3":
            other = built["llama3_without_ignore"].encode_batch(strings, add_special_tokens=False)
            changed = sum(a.ids != b.ids for a, b in zip(ref, other))
            extra = f", ignore_merges changes {changed} of them"
        print(f"{name}: {len(strings)} strings ({nonascii} non-ASCII, {special_hits} with added tokens), "
              f"{ntok} tokens, vocab {tok.get_vocab_size()}: {mism} mismatches{extra}; "
              f"opd {res.stderr.strip().split(' in ')[-1]}, tokenizers {hf_secs:.3f} s (batch, threaded)")
        failed += mism > 0
    print("bpe cross-check:", "FAIL" if failed else "PASS")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
