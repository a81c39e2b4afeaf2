"""The C BERT model against transformers on the same random 2-layer model.

BertFor{TokenClassification,SequenceClassification,MaskedLM},
DistilBertForTokenClassification, ElectraForTokenClassification (embedding_size !=
hidden_size, so the embeddings_project path runs) and RobertaFor{TokenClassification,
SequenceClassification,MaskedLM} (positions counted from pad_token_id + 1, one token type) with random weights (every
parameter, LayerNorm and biases included, drawn non-zero) is saved with save_pretrained
(config.json + model.safetensors). tests/tools/bert_torch_tool loads it through
bert_config_load / bert_load_safetensors, runs one forward/backward on a batch with
padding (mask zeros) and ignored labels (-100), then 10 AdamW steps with weight decay
(none on biases and LayerNorm) and gradient clipping, and saves the weights with
bert_save_safetensors. The same is done in PyTorch and compared:

- logits: |c - torch| <= 1e-5 * max|torch| + 1e-5 |torch| (observed <= 5.1e-7 absolute
  at scale ~1)
- loss: relative 1e-5
- every parameter gradient: |c - torch| <= 1e-5 * max|torch grad of that tensor| (observed
  <= 7.4e-7), i.e. errors are measured against the tensor's scale
- the 10 losses of AdamW training: relative 1e-5; the gradient norms before clipping 1e-5
- the weights after training load back into transformers (from_pretrained of the file the
  C side wrote) and equal torch's trained weights within 1% of LR x STEPS (the most Adam
  can move a weight), key biases aside (their gradient is rounding noise, see below).
"""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from safetensors.numpy import load_file  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

STEPS = 10
LR = 1e-3
WEIGHT_DECAY = 0.01


@pytest.fixture(scope="module")
def tool(runner_bin):
    path = Path(runner_bin).parent / "tools" / "bert_torch_tool"
    if not path.exists():
        pytest.skip(f"{path} is not built")
    return path


def make_model(arch, head):
    torch.manual_seed(1)
    common = dict(vocab_size=97, max_position_embeddings=40, num_labels=5)
    if arch == "distilbert":
        cfg = transformers.DistilBertConfig(dim=64, n_layers=2, n_heads=4, hidden_dim=128,
                                            dropout=0.0, attention_dropout=0.0, **common)
        cls = transformers.DistilBertForTokenClassification
    elif arch == "roberta":
        cfg = transformers.RobertaConfig(hidden_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, intermediate_size=128,
                                         type_vocab_size=1, pad_token_id=1,
                                         hidden_dropout_prob=0.0,
                                         attention_probs_dropout_prob=0.0,
                                         **dict(common, max_position_embeddings=42))
        cls = {"token": transformers.RobertaForTokenClassification,
               "sequence": transformers.RobertaForSequenceClassification,
               "mlm": transformers.RobertaForMaskedLM}[head]
    elif arch == "electra":
        cfg = transformers.ElectraConfig(embedding_size=32, hidden_size=64,
                                         num_hidden_layers=2, num_attention_heads=4,
                                         intermediate_size=128, hidden_dropout_prob=0.0,
                                         attention_probs_dropout_prob=0.0, **common)
        cls = transformers.ElectraForTokenClassification
    else:
        cfg = transformers.BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                      intermediate_size=128, type_vocab_size=2,
                                      hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                                      **common)
        cls = {"token": transformers.BertForTokenClassification,
               "sequence": transformers.BertForSequenceClassification,
               "mlm": transformers.BertForMaskedLM}[head]
    model = cls(cfg).float()
    with torch.no_grad():
        for name, p in model.named_parameters():
            # non-zero everywhere: LayerNorm around 1, the rest at a scale that keeps
            # activations O(1) so every term of every gradient matters
            if no_decay(name) and name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            elif p.dim() == 1:
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(0.05 * torch.randn_like(p))
    return model


def no_decay(name):
    """Biases and LayerNorm parameters (HF Trainer's rule) take no weight decay."""
    return "bias" in name or "LayerNorm" in name or "layer_norm" in name


def make_batch(head, B=3, T=12, V=97, arch="bert"):
    g = torch.Generator().manual_seed(2)
    # RoBERTa pads with id 1 and derives positions from ids != 1: real tokens avoid it
    roberta = arch == "roberta"
    pad = 1 if roberta else 0
    ids = torch.randint(2 if roberta else 1, V, (B, T), generator=g)
    types = torch.randint(0, 1 if roberta else 2, (B, T), generator=g)
    lengths = [T, T - 4, 5]  # padding in two rows
    mask = torch.zeros(B, T, dtype=torch.long)
    for b, n in enumerate(lengths):
        mask[b, :n] = 1
        ids[b, n:] = pad
        types[b, n:] = 0
    if head == "sequence":
        labels = torch.tensor([3, -100, 4])
    else:
        classes = V if head == "mlm" else 5
        labels = torch.randint(0, classes, (B, T), generator=g)
        labels[mask == 0] = -100
        labels[0, 3] = -100  # an ignored real token too
        labels[1, 0] = -100
        if head == "mlm":  # as a masked-LM batch: a few positions only
            keep = torch.rand(B, T, generator=g) < 0.4
            labels[~keep] = -100
            labels[0, 1] = 7
    return ids, types, mask, labels


def adamw(model):
    """torch.optim.AdamW with no decay on biases and LayerNorm weights (as HF Trainer)."""
    params = list(model.named_parameters())
    return torch.optim.AdamW(
        [{"params": [p for n, p in params if not no_decay(n)], "weight_decay": WEIGHT_DECAY},
         {"params": [p for n, p in params if no_decay(n)], "weight_decay": 0.0}],
        lr=LR, betas=(0.9, 0.999), eps=1e-8)


def forward(model, arch, ids, types, mask, labels):
    kwargs = dict(input_ids=ids, attention_mask=mask, labels=labels)
    if arch != "distilbert":  # DistilBERT has no token types
        kwargs["token_type_ids"] = types
    return model(**kwargs)


# The key bias gets exactly zero gradient in exact arithmetic (a constant added to every
# score of a row leaves the softmax unchanged): both sides hold rounding noise there.
KEY_BIAS = "attention.self.key.bias"

CASES = [("bert", "token"), ("bert", "sequence"), ("bert", "mlm"), ("distilbert", "token"),
         ("electra", "token"), ("roberta", "token"), ("roberta", "sequence"),
         ("roberta", "mlm")]


@pytest.mark.parametrize("arch,head", CASES, ids=[f"{a}-{h}" for a, h in CASES])
def test_matches_transformers(tmp_path, tool, arch, head):
    model = make_model(arch, head)
    model.save_pretrained(tmp_path)  # config.json + model.safetensors, HF names
    ids, types, mask, labels = make_batch(head, arch=arch)
    assert (mask == 0).any() and (labels == -100).any()

    # torch reference: one forward/backward
    model.train()
    out = forward(model, arch, ids, types, mask, labels)
    out.loss.backward()
    ref_loss = out.loss.item()
    ref_logits = out.logits.detach().numpy()
    ref_grads = {n: p.grad.detach().numpy().copy() for n, p in model.named_parameters()}
    norm0 = float(np.sqrt(sum((g.astype(np.float64) ** 2).sum() for g in ref_grads.values())))
    clip = 0.5 * norm0  # so that clipping really happens

    # torch reference: STEPS AdamW steps from the same weights
    model = make_model(arch, head)
    opt = adamw(model)
    losses, norms = [], []
    for _ in range(STEPS):
        opt.zero_grad()
        loss = forward(model, arch, ids, types, mask, labels).loss
        loss.backward()
        norms.append(torch.nn.utils.clip_grad_norm_(model.parameters(), clip).item())
        opt.step()
        losses.append(loss.item())

    case = {"head": head, "num_labels": 5, "B": ids.shape[0], "T": ids.shape[1],
            "ids": ids.flatten().tolist(), "token_types": types.flatten().tolist(),
            "mask": mask.flatten().tolist(), "labels": labels.flatten().tolist(),
            "steps": STEPS, "lr": LR, "weight_decay": WEIGHT_DECAY, "max_grad_norm": clip,
            "threads": 2}
    (tmp_path / "case.json").write_text(json.dumps(case))
    proc = subprocess.run([str(tool), str(tmp_path)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = load_file(str(tmp_path / "out.safetensors"))
    res = json.loads((tmp_path / "losses.json").read_text())

    # logits and loss
    logits = got["logits"].reshape(ref_logits.shape)
    if arch == "roberta" and head != "sequence":
        # transformers gives padding the padding index's position; the C side numbers
        # every slot. Padding is masked out of attention and loss, so only its own
        # logits differ: compare the real tokens'.
        real = mask.numpy().astype(bool)
        logits, ref_logits = logits[real], ref_logits[real]
    scale = np.abs(ref_logits).max()
    err = np.abs(logits - ref_logits)
    print(f"{arch}-{head}: logits max error {err.max():.2e} (scale {scale:.2e}), "
          f"loss {res['loss']:.8f} vs {ref_loss:.8f}")
    assert (err <= 1e-5 * scale + 1e-5 * np.abs(ref_logits)).all(), \
        f"logits differ by {err.max():.3g} (scale {scale:.3g})"
    assert abs(res["loss"] - ref_loss) <= 1e-5 * abs(ref_loss), (res["loss"], ref_loss)

    # every parameter gradient, by name, against the scale of its tensor
    # (the key bias gets exactly zero gradient in exact arithmetic: a constant added to
    # every score of a row leaves its softmax unchanged; both sides hold rounding noise
    # there, so it is compared against the scale of all gradients instead)
    global_scale = max(np.abs(g).max() for g in ref_grads.values())
    worst = (0.0, "")
    for name, g_ref in ref_grads.items():
        key = "grad." + name
        assert key in got, f"no gradient for {name}"
        g = got[key].reshape(g_ref.shape)
        tscale = np.abs(g_ref).max()
        if KEY_BIAS in name.replace("k_lin", "self.key"):
            assert tscale < 1e-6 * global_scale and np.abs(g).max() < 1e-6 * global_scale
            continue
        assert tscale > 1e-4 * global_scale, f"{name}: torch gradient ~0, the test is vacuous"
        rel = float(np.abs(g - g_ref).max() / tscale)
        worst = max(worst, (rel, name))
        assert rel <= 1e-5, f"{name}: gradient off by {rel:.3g} of its scale"
    print(f"{arch}-{head}: worst gradient error {worst[0]:.2e} of scale ({worst[1]})")
    assert len([k for k in got if k.startswith("grad.")]) == len(ref_grads)

    # AdamW training
    print(f"{arch}-{head}: losses C {res['losses']}\n  torch {losses}")
    assert len(res["losses"]) == STEPS
    np.testing.assert_allclose(res["losses"], losses, rtol=1e-5, atol=0)
    np.testing.assert_allclose(res["grad_norms"], norms, rtol=1e-5, atol=0)
    assert norms[0] > clip  # clipping was exercised
    assert losses[-1] < losses[0]  # and it learns

    # the weights written by the C side load in transformers and equal torch's
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "config.json").write_text((tmp_path / "config.json").read_text())
    os.replace(tmp_path / "after.safetensors", saved / "model.safetensors")
    loaded = type(model).from_pretrained(saved)
    trained = dict(model.named_parameters())
    for name, p in loaded.named_parameters():
        ref_p = trained[name].detach().numpy()
        diff = np.abs(p.detach().numpy() - ref_p).max()
        if KEY_BIAS in name.replace("k_lin", "self.key"):
            # Adam turns its pure-noise gradient into full steps of up to LR each
            assert diff <= 2 * LR * STEPS
            continue
        # Adam moves a weight by at most ~LR per step whatever its gradient, so rounding
        # differences in near-zero gradients show up as a fraction of LR: allow 1% of
        # the largest possible move
        assert diff <= 0.01 * LR * STEPS, f"{name}: trained weights differ by {diff:.3g}"
