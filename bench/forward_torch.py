# PyTorch counterpart of bench/forward.ts: transformers' MambaForCausalLM / Mamba2ForCausalLM with
# the shapes of mamba-130m-hf and mamba2-130m (random weights), batch 1 x 512 tokens, timed plain and
# with the same implicit-attention computation (mean attention, mean decay, C.B per layer, computed
# from prefix sums of delta, channel blocks at a time). Prints the same JSON as bench/forward.ts.
#
#   python bench/forward_torch.py [--device cuda] [--tokens 512] [--reps 3] [--attention-layers 24]
#                                 [--channel-block 64] [--models mamba1,mamba2] [--dtype float32]
import argparse, json, os, platform, resource, statistics, time
import torch
import torch.nn.functional as F
from transformers import MambaConfig, MambaForCausalLM, Mamba2Config, Mamba2ForCausalLM


def sync(dev):
    if dev.startswith("cuda"):
        torch.cuda.synchronize()


def build(kind, dev, dtype):
    if kind == "mamba1":
        cfg = MambaConfig(vocab_size=50280, hidden_size=768, state_size=16, num_hidden_layers=24, expand=2, conv_kernel=4,
                          time_step_rank=48, use_bias=False, use_conv_bias=True, tie_word_embeddings=True)
        model = MambaForCausalLM(cfg)
    else:
        cfg = Mamba2Config(vocab_size=50280, hidden_size=768, state_size=128, num_heads=24, head_dim=64, n_groups=1,
                           num_hidden_layers=24, expand=2, conv_kernel=4, chunk_size=256, use_bias=False, use_conv_bias=True,
                           tie_word_embeddings=True)
        model = Mamba2ForCausalLM(cfg)
    return model.to(dev, dtype).eval()


def causal(L, dev):
    return torch.tril(torch.ones(L, L, dtype=torch.bool, device=dev))


@torch.no_grad()
def mamba1_maps(mixer, h, block):
    """Mean attention, mean decay and C.B of a Mamba-1 layer, channel blocks at a time (as attention.ts)."""
    B_, L, _ = h.shape
    proj = mixer.in_proj(h).transpose(1, 2)
    x, _ = proj.chunk(2, dim=1)
    x = mixer.act(mixer.conv1d(x)[..., :L])
    ssm = mixer.x_proj(x.transpose(1, 2))
    dt, Bm, Cm = torch.split(ssm, [mixer.time_step_rank, mixer.ssm_state_size, mixer.ssm_state_size], dim=-1)
    delta = F.softplus(mixer.dt_proj(dt)).float()          # B, L, Din
    A = -torch.exp(mixer.A_log.float())                     # Din, N
    Bm, Cm = Bm.float(), Cm.float()
    mask = causal(L, h.device)
    S = torch.cumsum(delta, dim=1)                          # B, L, Din
    Din, N = A.shape
    att = torch.zeros(B_, L, L, device=h.device)
    dec = torch.zeros(B_, L, L, device=h.device)
    for d0 in range(0, Din, block):
        Sb = S[:, :, d0:d0 + block]                           # B, L, k
        seg = (Sb[:, :, None, :] - Sb[:, None, :, :]).masked_fill(~mask[None, :, :, None], 0.0)  # B, t, s, k
        db = delta[:, :, d0:d0 + block]                       # B, L(s), k
        for n in range(N):
            E = torch.exp(seg * A[d0:d0 + block, n])          # B, t, s, k
            dec += E.sum(-1)
            att += Cm[:, :, None, n] * Bm[:, None, :, n] * torch.einsum("btsk,bsk->bts", E, db)
    qk = torch.einsum("btn,bsn->bts", Cm, Bm)
    return att / Din * mask, dec / (Din * N) * mask, qk * mask


@torch.no_grad()
def mamba2_maps(mixer, h, block):
    B_, L, _ = h.shape
    proj = mixer.in_proj(h)
    d_mlp = (proj.shape[-1] - 2 * mixer.intermediate_size - 2 * mixer.n_groups * mixer.ssm_state_size - mixer.num_heads) // 2
    _, _, _, xBC, dt = proj.split([d_mlp, d_mlp, mixer.intermediate_size, mixer.conv_dim, mixer.num_heads], dim=-1)
    xBC = mixer.act(mixer.conv1d(xBC.transpose(1, 2))[..., :L].transpose(1, 2))
    _, Bm, Cm = torch.split(xBC, [mixer.intermediate_size, mixer.n_groups * mixer.ssm_state_size, mixer.n_groups * mixer.ssm_state_size], dim=-1)
    dt = F.softplus(dt + mixer.dt_bias).float()            # B, L, H
    A = -torch.exp(mixer.A_log.float())
    G, N, H = mixer.n_groups, mixer.ssm_state_size, mixer.num_heads
    qkG = torch.einsum("btgn,bsgn->bgts", Cm.float().view(B_, L, G, N), Bm.float().view(B_, L, G, N))
    mask = causal(L, h.device)
    S = torch.cumsum(dt, dim=1)
    att = torch.zeros(B_, L, L, device=h.device)
    dec = torch.zeros(B_, L, L, device=h.device)
    for h0 in range(0, H, block):
        Sb = S[:, :, h0:h0 + block].transpose(1, 2)           # B, k, L
        seg = (Sb[:, :, :, None] - Sb[:, :, None, :]).masked_fill(~mask, 0.0)
        E = torch.exp(seg * A[h0:h0 + block, None, None]) * mask
        groups = torch.arange(h0, min(H, h0 + block), device=h.device) // (H // G)
        att += (qkG[:, groups] * E * dt[:, None, :, h0:h0 + block].permute(0, 3, 1, 2)).sum(1)
        dec += E.sum(1)
    return att / H, dec / H, qkG.mean(1) * mask


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--attention-layers", type=int, default=24)
    ap.add_argument("--channel-block", type=int, default=64)
    ap.add_argument("--models", default="mamba1,mamba2")
    ap.add_argument("--dtype", default="float32")
    a = ap.parse_args()
    dev, dtype = a.device, getattr(torch, a.dtype)
    if dev.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    results = []
    for kind in a.models.split(","):
        model = build(kind, dev, dtype)
        ids = (torch.arange(a.tokens, device=dev) * 7919 % 50280)[None]
        with torch.no_grad():
            model(input_ids=ids)  # warm-up
            sync(dev)
            plain = []
            for _ in range(a.reps):
                t0 = time.perf_counter()
                model(input_ids=ids).logits.float().cpu()
                sync(dev)
                plain.append((time.perf_counter() - t0) * 1000)
            # With attention capture: the same forward plus each captured layer's maps from its mixer input.
            layers = list(range(min(a.attention_layers, len(model.backbone.layers))))
            caps = {}
            hooks = [model.backbone.layers[i].mixer.register_forward_pre_hook(lambda m, args, i=i: caps.__setitem__(i, args[0])) for i in layers]
            t0 = time.perf_counter()
            model(input_ids=ids).logits.float().cpu()
            for i in layers:
                mixer = model.backbone.layers[i].mixer
                maps = (mamba1_maps if kind == "mamba1" else mamba2_maps)(mixer, caps[i], a.channel_block)
                [m.cpu() for m in maps]
            sync(dev)
            with_attn = (time.perf_counter() - t0) * 1000
            for hk in hooks:
                hk.remove()
        p = statistics.median(plain)
        results.append({
            "model": "mamba-130m-hf shape" if kind == "mamba1" else "mamba2-130m shape",
            "parameters": sum(t.numel() for t in model.parameters()),
            "forward_ms": round(p),
            "forward_ms_all": [round(x) for x in plain],
            "forward_with_attention_ms": round(with_attn),
            "attention_layers": len(layers),
            "attention_ms_per_layer": round((with_attn - p) / max(1, len(layers))),
        })
        del model
        if dev.startswith("cuda"):
            torch.cuda.empty_cache()
    out = {"bench": "forward_torch", "backend": f"torch-{dev}", "batch": 1, "tokens": a.tokens, "reps": a.reps, "results": results,
           "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), "torch": torch.__version__,
           "python": platform.python_version(), "cpus": os.cpu_count()}
    if dev.startswith("cuda"):
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
        out["gpu"] = torch.cuda.get_device_name()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
