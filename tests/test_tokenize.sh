#!/bin/sh
# opd tokenize on the CUnit fixture (tests/bpe_tiny.json): encode, decode,
# templates, stdin, prompt-file lengths, and the exit codes of its errors.
set -u
OPD=${OPD:-./opd}
tok="${OPD_SRCDIR:-.}/tests/bpe_tiny.json"
fail=0
check() {  # check NAME WANT GOT
    if [ "$2" = "$3" ]; then echo "ok   $1"; else echo "FAIL $1: want '$2', got '$3'"; fail=1; fi
}
check "encode" "260 265 266" "$("$OPD" tokenize --tokenizer "$tok" --text 'hello world<|end|>')"
check "encode, added tokens as text" "60 124 101 110 100 124 62" \
    "$("$OPD" tokenize --tokenizer "$tok" --text '<|end|>' --no-added)"
check "decode" "hello world<|end|>" "$("$OPD" tokenize --tokenizer "$tok" --text '260 265 266' --decode)"
check "decode, skip special" "hello world" \
    "$("$OPD" tokenize --tokenizer "$tok" --text '260 265 266' --decode --skip-special)"
check "stdin" "260" "$(printf hello | "$OPD" tokenize --tokenizer "$tok" --file -)"
check "template none" "1" "$("$OPD" tokenize --tokenizer "$tok" --text hello --count)"
check "template chatml" "52" "$("$OPD" tokenize --tokenizer "$tok" --text hi --template chatml --count)"
ids=$("$OPD" tokenize --tokenizer "$tok" --text "$(printf 'caf\303\251 \360\237\230\200\ttab')")
check "round trip" "$(printf 'caf\303\251 \360\237\230\200\ttab')" "$("$OPD" tokenize --tokenizer "$tok" --text "$ids" --decode)"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
printf '{"prompt": "hello", "answer": "1"}\n\n{"prompt": "hello world"}\n' > "$dir/p.jsonl"
check "prompt lengths" "$(printf '1\t51\n3\t52\n# 2 prompts, 103 ids, mean 51.5, longest 52 (line 3)')" \
    "$("$OPD" tokenize --tokenizer "$tok" --prompts "$dir/p.jsonl" --template chatml)"
printf '{"prompt": "x"}\n{"prompt": 1}\n' > "$dir/bad.jsonl"
"$OPD" tokenize --tokenizer "$tok" --prompts "$dir/bad.jsonl" 2>"$dir/err"; check "bad prompt file exits 1" 1 $?
check "bad prompt file names the line" 1 "$(grep -c 'bad.jsonl:2:' "$dir/err")"
"$OPD" tokenize --tokenizer "$tok" --text 'x y' --decode 2>/dev/null; check "bad id exits 1" 1 $?
"$OPD" tokenize --tokenizer /nonexistent.json --text x 2>/dev/null; check "missing file exits 1" 1 $?
"$OPD" tokenize --text x 2>/dev/null; check "no tokenizer exits 2" 2 $?
"$OPD" tokenize --tokenizer "$tok" --text x --file y 2>/dev/null; check "text and file exits 2" 2 $?
exit $fail
