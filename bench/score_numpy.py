# numpy peer of `mimetic score` for bench/score.ts: the same forward pass (Mamba-1 or Mamba-2, HF
# layout, float32) over a safetensors checkpoint, the same implicit-attention maps (mean attention,
# mean decay) and the same per-layer scores (cbIdentity, cbRowCos, maskOnes, lookbehind, mimetic),
# written as plain vectorised numpy the way a user would:
#   - Mamba-1 maps: one exp per pair s <= t, channel and state (lower triangle only), pairs in chunks;
#   - Mamba-2: the scan in its quadratic (attention) form y_h = (C.B o exp(A_h (S_t - S_s)) o dt_s) x_h,
#     the same matrices the maps average.
# Only numpy is needed. Prints one JSON object: {"layers": [...scores...], "seconds": ...}.
#
#   python3 bench/score_numpy.py CHECKPOINT_DIR --probe PROBE.json [--layers 0-3]
import argparse, json, os, struct, sys, time

import numpy as np

DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}


class Checkpoint:
    """Tensors of a (possibly sharded) safetensors checkpoint, read on demand as float32."""

    def __init__(self, folder):
        self.folder = folder
        index = os.path.join(folder, "model.safetensors.index.json")
        files = sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index) else ["model.safetensors"]
        self.where = {}
        for f in files:
            path = os.path.join(folder, f)
            with open(path, "rb") as fh:
                n = struct.unpack("<Q", fh.read(8))[0]
                header = json.loads(fh.read(n))
            for name, info in header.items():
                if name != "__metadata__":
                    self.where[name] = (path, 8 + n, info)

    def __contains__(self, name):
        return name in self.where

    def read(self, name):
        path, base, info = self.where[name]
        a, b = info["data_offsets"]
        raw = np.fromfile(path, dtype=DTYPES[info["dtype"]], count=(b - a) // np.dtype(DTYPES[info["dtype"]]).itemsize, offset=base + a)
        if info["dtype"] == "BF16":
            raw = (raw.astype(np.uint32) << 16).view(np.float32)
        return raw.astype(np.float32, copy=False).reshape(info["shape"])


def rms_norm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * (w if w is not None else 1)


def softplus(x):
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def silu(x):
    return x / (1 + np.exp(-x))


def conv_silu(x, w, b):
    """Depthwise causal conv1d (torch pads K-1 on the left of the kept outputs), then SiLU. x [B, L, C], w [C, 1, K]."""
    Bsz, L, C = x.shape
    K = w.shape[2]
    xp = np.concatenate([np.zeros((Bsz, K - 1, C), np.float32), x], axis=1)
    y = np.zeros_like(x) + (b if b is not None else 0)
    for k in range(K):
        y += xp[:, k:k + L, :] * w[:, 0, k]
    return silu(y)


def linear(x, w, b=None):
    y = x @ w.T
    return y + b if b is not None else y


def mamba1_layer(get, h, cfg, ti, si):
    Din, N, R = cfg["intermediate_size"], cfg["state_size"], cfg["time_step_rank"]
    proj = linear(h, get("mixer.in_proj.weight"), get("mixer.in_proj.bias"))
    x, z = proj[..., :Din], proj[..., Din:]
    u = conv_silu(x, get("mixer.conv1d.weight"), get("mixer.conv1d.bias"))
    ssm = linear(u, get("mixer.x_proj.weight"))
    dt, Bm, Cm = ssm[..., :R], ssm[..., R:R + N], ssm[..., R + N:]
    delta = softplus(linear(dt, get("mixer.dt_proj.weight"), get("mixer.dt_proj.bias")))
    A = -np.exp(get("mixer.A_log"))  # [Din, N]
    Bsz, L, _ = u.shape
    # The selective scan, time step by time step, all channels and states at once.
    hs = np.zeros((Bsz, Din, N), np.float32)
    y = np.empty_like(u)
    for t in range(L):
        hs = np.exp(delta[:, t, :, None] * A) * hs + (delta[:, t] * u[:, t])[:, :, None] * Bm[:, t, None, :]
        y[:, t] = np.einsum("bdn,bn->bd", hs, Cm[:, t]) + get("mixer.D") * u[:, t]
    out = linear(y * silu(z), get("mixer.out_proj.weight"), get("mixer.out_proj.bias"))
    # Maps over the lower triangle: alpha[t, s] = sum_{d,n} C_t[n] B_s[n] dt_s[d] exp(A[d,n] (S_t - S_s)[d]) / Din.
    P = len(ti)
    att = np.zeros((Bsz, P), np.float64)
    dec = np.zeros((Bsz, P), np.float64)
    chunk = max(1, (1 << 20) // Din)
    for b in range(Bsz):
        S = np.cumsum(delta[b], axis=0, dtype=np.float32)
        for p0 in range(0, P, chunk):
            t, s = ti[p0:p0 + chunk], si[p0:p0 + chunk]
            seg = S[t] - S[s]  # [pairs, Din], >= 0
            ds = delta[b, s]
            cb = Cm[b, t] * Bm[b, s]  # [pairs, N]
            a_acc = np.zeros(len(t), np.float32)
            d_acc = np.zeros(len(t), np.float32)
            for n in range(N):
                E = np.exp(seg * A[:, n])
                d_acc += E.sum(axis=1)
                a_acc += cb[:, n] * np.einsum("pd,pd->p", E, ds)
            att[b, p0:p0 + chunk] = a_acc / Din
            dec[b, p0:p0 + chunk] = d_acc / (Din * N)
    return out, att, dec


def mamba2_layer(get, h, cfg, ti, si):
    Din, N, H, Pd, G = cfg["intermediate_size"], cfg["state_size"], cfg["num_heads"], cfg["head_dim"], cfg.get("n_groups", 1)
    eps = cfg.get("layer_norm_epsilon", 1e-5)
    proj = linear(h, get("mixer.in_proj.weight"), get("mixer.in_proj.bias"))
    conv_dim = Din + 2 * G * N
    d_mlp = (proj.shape[-1] - 2 * Din - 2 * G * N - H) // 2
    z = proj[..., 2 * d_mlp:2 * d_mlp + Din]
    xBC = conv_silu(proj[..., 2 * d_mlp + Din:2 * d_mlp + Din + conv_dim], get("mixer.conv1d.weight"), get("mixer.conv1d.bias"))
    dtr = proj[..., 2 * d_mlp + Din + conv_dim:]
    Bsz, L, _ = h.shape
    x = xBC[..., :Din].reshape(Bsz, L, H, Pd)
    Bm = xBC[..., Din:Din + G * N].reshape(Bsz, L, G, N)
    Cm = xBC[..., Din + G * N:].reshape(Bsz, L, G, N)
    delta = softplus(dtr + get("mixer.dt_bias"))
    lo, hi = [float(v["__float__"]) if isinstance(v, dict) else float(v) for v in cfg.get("time_step_limit", [0, "inf"])]
    if lo > 0 or np.isfinite(hi):
        delta = np.clip(delta, lo, hi)
    A = -np.exp(get("mixer.A_log"))  # [H]
    grp = np.arange(H) // (H // G)
    mask = np.tril(np.ones((L, L), bool))
    y = np.empty((Bsz, L, H, Pd), np.float32)
    att = np.zeros((Bsz, len(ti)), np.float64)
    dec = np.zeros((Bsz, len(ti)), np.float64)
    for b in range(Bsz):
        S = np.cumsum(delta[b], axis=0, dtype=np.float32)  # [L, H]
        seg = np.where(mask[:, :, None], S[:, None, :] - S[None, :, :], 0)  # [t, s, H]
        E = np.exp(seg * A) * mask[:, :, None]
        qk = np.einsum("tgn,sgn->gts", Cm[b], Bm[b])  # [G, t, s]
        M = qk[grp] * E.transpose(2, 0, 1) * delta[b].T[:, None, :]  # [H, t, s]
        y[b] = np.einsum("hts,shp->thp", M, x[b]) + get("mixer.D")[:, None] * x[b]
        att[b] = M.mean(axis=0)[ti, si]
        dec[b] = E.mean(axis=2)[ti, si]
    g = (y.reshape(Bsz, L, Din) * silu(z)).reshape(Bsz, L, G, Din // G)
    yn = rms_norm(g, None, eps).reshape(Bsz, L, Din) * get("mixer.norm.weight")
    return linear(yn, get("mixer.out_proj.weight"), get("mixer.out_proj.bias")), att, dec


def gram(W):
    W = W.astype(np.float64)
    return W @ W.T


def bc_scores(WB, WC):
    N = WB.shape[0]
    WB, WC = WB.astype(np.float64), WC.astype(np.float64)
    tr = float(np.sum(WC * WB))
    fro2 = float(np.sum(gram(WC) * gram(WB)))
    ident = 0.0 if fro2 == 0 else tr / (np.sqrt(N) * np.sqrt(fro2))
    bc, bb, cc = np.sum(WB * WC, 1), np.sum(WB * WB, 1), np.sum(WC * WC, 1)
    cos = np.where((bb > 0) & (cc > 0), bc / np.sqrt(np.maximum(bb * cc, 1e-300)), 0.0)
    return ident, float(cos.mean())


def lookbehind(att, ti, si, L, period):
    """att over the lower-triangle pairs [B, P]: the share of |alpha| one period back, rows t >= period."""
    Bsz = att.shape[0]
    full = np.zeros((Bsz, L, L))
    full[:, ti, si] = np.abs(att)
    den = full.sum(axis=2)[:, period:]
    t = np.arange(period, L)
    num = full[:, t, t - period] + full[:, t, t - period + 1]
    ratio = np.where(den > 0, num / np.where(den > 0, den, 1), 0)
    return float(ratio.sum() / (Bsz * (L - period)))


def parse_layers(spec, n):
    if not spec:
        return list(range(n))
    out = set()
    for part in spec.split(","):
        a, _, b = part.partition("-")
        out.update(range(int(a), int(b or a) + 1))
    return sorted(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("--probe", required=True, help='JSON {"ids": [[...]], "period": m}')
    ap.add_argument("--layers", default="")
    a = ap.parse_args()
    t0 = time.perf_counter()
    cfg = json.load(open(os.path.join(a.checkpoint, "config.json")))
    m2 = cfg.get("model_type") == "mamba2"
    probe = json.load(open(a.probe))
    ids = np.array(probe["ids"], np.int64)
    period = probe.get("period")
    Bsz, L = ids.shape
    ck = Checkpoint(a.checkpoint)
    layers = parse_layers(a.layers, cfg["num_hidden_layers"])
    eps = cfg.get("layer_norm_epsilon", 1e-5)
    ti, si = np.tril_indices(L)
    h = ck.read("backbone.embeddings.weight")[ids]
    out = []
    for i in range(max(layers) + 1):
        pre = f"backbone.layers.{i}."
        get = lambda short: ck.read(pre + short) if (pre + short) in ck else None
        x = rms_norm(h, get("norm.weight"), eps)
        mix, att, dec = (mamba2_layer if m2 else mamba1_layer)(get, x, cfg, ti, si)
        h = h + mix
        if i not in layers:
            continue
        N = cfg["state_size"]
        if m2:
            W = get("mixer.in_proj.weight")
            Din, G = cfg["intermediate_size"], cfg.get("n_groups", 1)
            pairs = [(W[2 * Din + g * N:2 * Din + (g + 1) * N], W[2 * Din + G * N + g * N:2 * Din + G * N + (g + 1) * N]) for g in range(G)]
        else:
            W, R = get("mixer.x_proj.weight"), cfg["time_step_rank"]
            pairs = [(W[R:R + N], W[R + N:R + 2 * N])]
        sc = [bc_scores(WB, WC) for WB, WC in pairs]
        ident = float(np.mean([s[0] for s in sc]))
        cos = float(np.mean([s[1] for s in sc]))
        mask_ones = float(dec.sum() / (Bsz * len(ti)))
        lb = lookbehind(att, ti, si, L, period) if period is not None else None
        parts = [mask_ones, max(0.0, ident)] + ([lb] if lb is not None else [])
        out.append({"layer": i, "cbIdentity": ident, "cbRowCos": cos, "maskOnes": mask_ones, "lookbehind": lb, "mimetic": sum(parts) / len(parts)})
    json.dump({"layers": out, "seconds": time.perf_counter() - t0, "numpy": np.__version__}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
