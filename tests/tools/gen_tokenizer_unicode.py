#!/usr/bin/env python3
"""Generate runner/model/tokenizer_unicode.h: where `tokenizers` and utf8proc disagree.

Hugging Face `tokenizers` (BertNormalizer, BertPreTokenizer) classifies characters with
the `unicode_categories` crate (Unicode 8 tables) and decomposes with an NFD table that
is also older than utf8proc's (Unicode 15). For characters added or re-categorised since,
the two disagree, and the C tokenizer would give other ids than BertTokenizerFast. This
script asks the installed `tokenizers` about every code point, asks utf8proc (through
ctypes, the same library the C code links) the same question, and writes the
differences as sorted code-point ranges the C code consults before utf8proc.

Usage: gen_tokenizer_unicode.py [--check] [OUTPUT]
  --check: exit 1 when OUTPUT differs from what would be generated (CI drift check).
"""
import ctypes
import ctypes.util
import sys
from pathlib import Path

import tokenizers
from tokenizers import normalizers, pre_tokenizers

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUTPUT = ROOT / "runner/model/tokenizer_unicode.h"

CAT_MN, CAT_PC, CAT_PO, CAT_ZS, CAT_ZL, CAT_ZP = 6, 12, 18, 23, 24, 25
CAT_CC, CAT_CF, CAT_CS, CAT_CO = 26, 27, 28, 29


def load_utf8proc():
    lib = ctypes.CDLL(ctypes.util.find_library("utf8proc") or "libutf8proc.so.2")
    lib.utf8proc_category.restype = ctypes.c_int
    lib.utf8proc_category.argtypes = [ctypes.c_int32]
    lib.utf8proc_decompose_char.restype = ctypes.c_ssize_t
    lib.utf8proc_decompose_char.argtypes = [ctypes.c_int32, ctypes.POINTER(ctypes.c_int32),
                                            ctypes.c_ssize_t, ctypes.c_int,
                                            ctypes.POINTER(ctypes.c_int)]
    lib.utf8proc_get_property.restype = ctypes.POINTER(ctypes.c_int16)
    lib.utf8proc_get_property.argtypes = [ctypes.c_int32]
    lib.utf8proc_version.restype = ctypes.c_char_p
    lib.utf8proc_unicode_version.restype = ctypes.c_char_p
    return lib


def main(argv):
    check = "--check" in argv
    args = [a for a in argv if not a.startswith("--")]
    output = Path(args[0]) if args else DEFAULT_OUTPUT

    u = load_utf8proc()
    buf = (ctypes.c_int32 * 32)()
    last = ctypes.c_int(0)
    DECOMPOSE = 1 << 3  # UTF8PROC_DECOMPOSE

    def nfd(cp):
        n = u.utf8proc_decompose_char(cp, buf, 32, DECOMPOSE, ctypes.byref(last))
        return list(buf[:n])

    def is_ws(cp):  # the C tokenizer's whitespace rule (White_Space), no table needed
        return cp in (9, 10, 11, 12, 13, 0x85) or u.utf8proc_category(cp) in (CAT_ZS, CAT_ZL, CAT_ZP)

    clean = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=False,
                                       strip_accents=False, lowercase=False)
    strip = normalizers.BertNormalizer(clean_text=False, handle_chinese_chars=False,
                                       strip_accents=True, lowercase=False)
    pre = pre_tokenizers.BertPreTokenizer()

    def combining_class(cp):  # utf8proc_property_t: int16 category, int16 combining_class
        return u.utf8proc_get_property(cp)[1]

    # Two spacing marks that are kept by strip_accents and whose combining classes
    # (216, 226) every version knows: probes for the canonical ordering of NFD.
    probes = ["\U0001D165", "\U0001D16D"]

    control, punct, mark, no_nfd, ccc_zero = [], [], [], [], []
    for cp in range(0x110000):
        if 0xD800 <= cp < 0xE000 or cp in (9, 10, 13):
            continue
        c = chr(cp)
        cat = u.utf8proc_category(cp)
        # clean_text drops "other" characters (Cc, Cf, Co, Cs in its tables).
        hf_control = clean.normalize_str("a" + c + "b") == "ab"
        if cp not in (0, 0xFFFD) and hf_control != (cat in (CAT_CC, CAT_CF, CAT_CS, CAT_CO)):
            control.append(cp)
        # BertPreTokenizer isolates ASCII punctuation and P* characters.
        pieces = pre.pre_tokenize_str("a" + c + "b")
        hf_punct = len(pieces) == 3 and pieces[1][0] == c
        ascii_punct = 33 <= cp <= 126 and not c.isalnum()
        if not is_ws(cp) and hf_punct != (ascii_punct or CAT_PC <= cat <= CAT_PO):
            punct.append(cp)
        # strip_accents: NFD, then drop Mn.
        hf_strip = [ord(x) for x in strip.normalize_str(c)]
        parts = nfd(cp)
        if parts == [cp]:
            hf_mark = hf_strip == []
            if hf_mark != (cat == CAT_MN):
                mark.append(cp)
        elif hf_strip == [cp]:
            no_nfd.append(cp)
        # NFD orders combining marks by class; characters newer than the tables of
        # `tokenizers` have class 0 there, which only shows for characters it keeps.
        if hf_strip == [cp] and combining_class(cp) != 0:
            reordered = any(strip.normalize_str(a + b) != a + b
                            for y in probes for a, b in ((c, y), (y, c)))
            if not reordered:
                ccc_zero.append(cp)
        # Decompositions otherwise agree; check_output below verifies through ids.

    def ranges(cps):
        out = []
        for cp in cps:
            if out and out[-1][1] == cp - 1:
                out[-1][1] = cp
            else:
                out.append([cp, cp])
        return out

    def table(name, why, cps):
        lines = [f"// {why}", f"static const uint32_t {name}[][2] = {{"]
        rs = ranges(cps) or [[0x110000, 0x110000]]  # never empty: C forbids empty arrays
        for i in range(0, len(rs), 4):
            lines.append("    " + " ".join("{0x%04X, 0x%04X}," % tuple(r) for r in rs[i:i + 4]))
        lines.append("};")
        return "\n".join(lines)

    text = "\n".join([
        "#pragma once",
        "// GENERATED by tests/tools/gen_tokenizer_unicode.py: do not edit.",
        f"// `tokenizers` {tokenizers.__version__} vs utf8proc "
        f"{u.utf8proc_version().decode()} (Unicode {u.utf8proc_unicode_version().decode()}).",
        "// Code points where BertTokenizerFast's character classes differ from utf8proc's",
        "// (its tables are Unicode 8 era); tokenizer.c flips utf8proc's answer inside them.",
        "#include <stdint.h>",
        "",
        table("TOKENIZER_CONTROL_FLIP", "clean_text: drop (\"other\") differs", control),
        table("TOKENIZER_PUNCT_FLIP", "pre-tokenizer: punctuation differs", punct),
        table("TOKENIZER_MARK_FLIP", "strip_accents: non-spacing mark (Mn) differs", mark),
        table("TOKENIZER_NO_DECOMPOSE", "strip_accents: no NFD decomposition in `tokenizers`",
              no_nfd),
        table("TOKENIZER_COMBINING_CLASS_ZERO",
              "strip_accents: canonical combining class 0 (unknown) in `tokenizers`", ccc_zero),
        "",
    ])
    if check:
        current = output.read_text() if output.exists() else ""
        if current != text:
            print(f"{output} is out of date: run {sys.argv[0]}", file=sys.stderr)
            return 1
        return 0
    output.write_text(text)
    print(f"{output}: control {len(control)}, punct {len(punct)}, mark {len(mark)}, "
          f"no_nfd {len(no_nfd)}, ccc_zero {len(ccc_zero)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
