# PyTorch counterpart of bench/train-step-gpu.ts (issue 6's shapes): transformers' MambaForCausalLM /
# Mamba2ForCausalLM (the reference paths: no mamba_ssm kernels), 4 layers, d_model 256, state 16
# (Mamba-2: 8 heads of 64), vocab 32, batch 32, seq len 64 and 256; one step = forward, next-token
# cross-entropy, backward, clip_grad_norm_(1.0), torch.optim.AdamW (lr 1e-3, wd 0.1), the loss read
# back. Prints one JSON line per arch and length with the keys of train-step-gpu.ts.
#
#   python bench/train-step-torch.py [--device cuda] [--archs mamba1,mamba2] [--lengths 64,256] [--steps 10]
#
# --experiment: issue 10's shapes as train-step-gpu.ts --experiment (4 layers, d_model 256, L 220,
# batch 32 and 256; Mamba-1 N16; Mamba-2 head dim 64, N 16, 64, 128, 256, 512), one JSON line each,
# "error" where the reference path runs out of memory (its SSD materialises [b, c, l, l, h, n]).
#
#   python bench/train-step-torch.py --device cuda --experiment [--batches 32,256] [--steps 5]
import argparse, json, statistics, time
import torch
import torch.nn.functional as F
from transformers import MambaConfig, MambaForCausalLM, Mamba2Config, Mamba2ForCausalLM


def build(arch, d, layers, state, vocab, L):
    if arch == "mamba1":
        return MambaForCausalLM(MambaConfig(vocab_size=vocab, hidden_size=d, state_size=state, num_hidden_layers=layers, expand=2,
                                            conv_kernel=4, use_bias=False, use_conv_bias=True, tie_word_embeddings=True))
    return Mamba2ForCausalLM(Mamba2Config(vocab_size=vocab, hidden_size=d, state_size=state, num_heads=2 * d // 64, head_dim=64,
                                          n_groups=1, num_hidden_layers=layers, expand=2, conv_kernel=4, chunk_size=min(256, L),
                                          use_bias=False, use_conv_bias=True, tie_word_embeddings=True))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--archs", default="mamba1,mamba2")
    ap.add_argument("--lengths", default="64,256")
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--state", type=int, default=16)
    ap.add_argument("--vocab", type=int, default=32)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--experiment", action="store_true")
    ap.add_argument("--batches", default="32,256")
    a = ap.parse_args()
    dev = a.device
    if dev.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    sync = torch.cuda.synchronize if dev.startswith("cuda") else (lambda: None)
    if a.experiment:
        runs = [(b, arch, state, 220) for b in [int(x) for x in a.batches.split(",")]
                for arch, state in [("mamba1", 16)] + [("mamba2", n) for n in (16, 64, 128, 256, 512)]]
    else:
        runs = [(a.batch, arch, a.state, L) for arch in a.archs.split(",") for L in [int(x) for x in a.lengths.split(",")]]
    for batch, arch, state, L in runs:
        row = {"bench": "train-step-experiment" if a.experiment else "train-step", "backend": f"torch-{dev}", "arch": arch, "dModel": a.d_model,
               "layers": a.layers, "state": state, "vocab": a.vocab, "batch": batch, "context": L, "steps": a.steps,
               "torch_version": torch.__version__, "gpu": torch.cuda.get_device_name() if dev.startswith("cuda") else None}
        try:
            row["torch"] = run(a, dev, sync, arch, state, batch, L)
        except Exception as e:  # out of memory at the largest shapes: reported, the next shape still runs
            row["error"] = str(e).splitlines()[0][:300]
        print(json.dumps(row), flush=True)
        if dev.startswith("cuda"):
            torch.cuda.empty_cache()


def run(a, dev, sync, arch, state, batch, L):
    torch.manual_seed(0)
    model = build(arch, a.d_model, a.layers, state, a.vocab, L).to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
    times, fb, losses = [], [], []
    for s in range(a.steps + 1):
        ids = torch.randint(0, a.vocab, (batch, L), device=dev)
        sync()
        t0 = time.perf_counter()
        logits = model(input_ids=ids).logits
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, a.vocab), ids[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        losses.append(loss.item())
        t1 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sync()
        if s > 0:
            times.append((time.perf_counter() - t0) * 1000)
            fb.append((t1 - t0) * 1000)
    ms = statistics.median(times)
    del model, opt
    return {"msPerStep": round(ms, 2), "forwardBackwardMs": round(statistics.median(fb), 2),
            "updateMs": round(ms - statistics.median(fb), 2), "medianTokensPerSec": round(batch * L / (ms / 1000)),
            "firstLoss": losses[0], "lastLoss": losses[-1]}


if __name__ == "__main__":
    main()
