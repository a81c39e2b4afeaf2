#!/usr/bin/env python3
"""Generate the byte-level BPE vocabulary of the demo data (data/demo/vocab.json and
merges.txt), which `runner --architecture roberta` trains from scratch with when no
--model is given, as `bert` uses data/demo/vocab.txt.

No RoBERTa vocabulary can be bundled from elsewhere (roberta-base's is OpenAI's GPT-2
vocabulary), so this one is trained by Hugging Face `tokenizers` on the demo sentences
themselves (CC0, data/README.md), the same way RoBERTa's was trained on its corpus:
byte-level, cased, GPT-2's pre-tokenizer, special tokens <s> <pad> </s> <unk> <mask> at
ids 0-4 as in roberta-base. Every word is seen with the space the NER job puts before
each word (add_prefix_space), so each frequent word becomes one token. Deterministic:
the same corpus gives the same bytes.

Usage (needs the `tokenizers` package: the test venv has it):
  .venv/bin/python scripts/make_demo_bpe.py            # writes data/demo/vocab.json, merges.txt
  .venv/bin/python scripts/make_demo_bpe.py --check    # exit 1 when the files are out of date
"""
import argparse
import csv
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "demo"
SPECIAL = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
# The demo has 536 distinct words. Merging stops once no pair is seen MIN_FREQUENCY
# times, at 1,655 tokens (256 bytes, 5 specials, the merges), below VOCAB_SIZE: then every
# word seen twice is one token (26,972 tokens for the 26,785 words of the corpus).
VOCAB_SIZE = 2000
MIN_FREQUENCY = 2


def train(dataset, out_dir):
    from tokenizers import ByteLevelBPETokenizer
    with open(dataset, newline="") as f:
        sentences = [row["sentence"] for row in csv.DictReader(f)]
    bpe = ByteLevelBPETokenizer(add_prefix_space=True)
    bpe.train_from_iterator(sentences, vocab_size=VOCAB_SIZE, min_frequency=MIN_FREQUENCY,
                            special_tokens=SPECIAL, show_progress=False)
    bpe.save_model(str(out_dir))
    return [Path(out_dir) / name for name in ("vocab.json", "merges.txt")]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEMO / "dataset.csv", help="the corpus (CSV)")
    ap.add_argument("--out", type=Path, default=DEMO, help="where vocab.json and merges.txt go")
    ap.add_argument("--check", action="store_true", help="compare instead of writing")
    args = ap.parse_args()
    if not args.check:
        for path in train(args.data, args.out):
            print(path)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        stale = [p.name for p in train(args.data, tmp)
                 if not (args.out / p.name).exists() or
                 (args.out / p.name).read_bytes() != p.read_bytes()]
    if stale:
        print(f"{args.out}: {', '.join(stale)} out of date: run {sys.argv[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
