"""PyTorch peer of bench/cpu_bert.c: the same two cases, the same thread count.

  train: BertForTokenClassification (bert-base shape, 9 labels), forward + backward +
         AdamW (no decay on biases and LayerNorm), gradient clipping at 1.0, 8 x 128,
         dropout on (train mode), as the C bench does
  infer: BertModel with the MiniLM-L6 shape (L6 C384 NH12 F1536), eval + no_grad,
         mean pooling + L2 normalisation, 32 x 128; with --precision bf16 under
         torch.autocast("cpu", dtype=torch.bfloat16) (PyTorch's CPU bf16: its linear
         layers through oneDNN's bf16 matmul), named "... bf16" as the C bench does

  python bench/pytorch_bert.py [--threads N] [--iters N] [--only train|infer]
                               [--precision fp32|bf16] [--infer-shape BxT]
Prints one JSON line per case, like bench_cpu_bert.
"""
import argparse
import contextlib
import json
import time

import torch
import transformers


def bert_config(L, C, NH, F):
    return transformers.BertConfig(vocab_size=30522, hidden_size=C, num_hidden_layers=L,
                                   num_attention_heads=NH, intermediate_size=F,
                                   max_position_embeddings=512, type_vocab_size=2,
                                   num_labels=9)


def batch(B, T, V=30522, labels=9):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, V, (B, T), generator=g)
    return ids, torch.ones(B, T, dtype=torch.long), torch.randint(0, labels, (B, T), generator=g)


def bench_train(iters):
    model = transformers.BertForTokenClassification(bert_config(12, 768, 12, 3072))
    model.train()
    params = list(model.named_parameters())
    nd = lambda n: "bias" in n or "LayerNorm" in n  # noqa: E731
    opt = torch.optim.AdamW([{"params": [p for n, p in params if not nd(n)], "weight_decay": 0.01},
                             {"params": [p for n, p in params if nd(n)], "weight_decay": 0.0}],
                            lr=1e-5)
    ids, mask, labels = batch(8, 128)
    total, cpu, loss = 0.0, 0.0, None
    for it in range(-1, iters):  # -1 warms up
        t0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad()
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if it >= 0:
            total += time.perf_counter() - t0
            cpu += time.process_time() - c0
    return "bert-base train 8x128", 8 * 128, total, cpu, loss.item()


def bench_infer(iters, precision="fp32", B=32, T=128):
    model = transformers.BertModel(bert_config(6, 384, 12, 1536), add_pooling_layer=False)
    model.eval()
    ids, mask, _ = batch(B, T)
    total, cpu = 0.0, 0.0
    bf16 = precision == "bf16"
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with torch.no_grad(), autocast:
        for it in range(-1, iters):
            t0, c0 = time.perf_counter(), time.process_time()
            h = model(input_ids=ids, attention_mask=mask).last_hidden_state
            m = mask.unsqueeze(-1).float()
            emb = (h.float() * m).sum(1) / m.sum(1).clamp(min=1e-9)
            torch.nn.functional.normalize(emb, p=2, dim=1)
            if it >= 0:
                total += time.perf_counter() - t0
                cpu += time.process_time() - c0
    return f"minilm-l6 infer {B}x{T}" + (" bf16" if bf16 else ""), B * T, total, cpu, 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--only", choices=["train", "infer"])
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                    help="of the infer case (train stays fp32)")
    ap.add_argument("--infer-shape", default="32x128", metavar="BxT",
                    help="batch x sequence of the infer case (1x128, 1x32: one sentence)")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    B, T = (int(x) for x in args.infer_shape.split("x"))
    infer = lambda iters: bench_infer(iters, args.precision, B, T)  # noqa: E731
    cases = [bench_train, infer]
    if args.only:
        cases = [bench_train if args.only == "train" else infer]
    for case in cases:
        name, tokens, total, cpu, loss = case(args.iters)
        precision = args.precision if case is infer else "fp32"
        print(json.dumps({"case": name, "impl": "pytorch", "precision": precision,
                          "threads": torch.get_num_threads(),
                          "iters": args.iters, "seconds_per_iter": round(total / args.iters, 4),
                          "cpu_seconds_per_iter": round(cpu / args.iters, 4),
                          "tokens_per_s": round(tokens * args.iters / total, 1),
                          "last_loss": round(loss, 5), "torch": torch.__version__}),
              flush=True)


if __name__ == "__main__":
    main()
