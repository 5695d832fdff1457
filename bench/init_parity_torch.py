# Parity check, transformers' side: does Hugging Face transformers load what `mimetic init` writes, and
# compute the logits our forward computed? bench/init-parity.ts writes the models (one folder each, with
# config.json, model.safetensors and ours.json = our ids and logits); this loads every folder with
# AutoModelForCausalLM.from_pretrained(folder, dtype=float32, output_loading_info=True), runs the same ids
# (on CUDA when available, TF32 off; else CPU) and prints one JSON line per model:
#   {model, loaded, error, missing_keys, unexpected_keys, mismatched_keys, max_abs_diff, max_rel_diff, ok, ...}
# max_rel_diff is max|ours - theirs| / max|ours|; ok is max_rel_diff < 1e-4. A model that fails to load is
# recorded (loaded: false, error) and, to tell a config quirk from a weights/forward problem, retried from a
# patched copy of its config.json (ints in float fields made floats; then also our extra keys dropped): see
# "patched". It never stops at one bad model and always exits 0.
#
# On the GPU host, from the repository root with bundle/ carried (rebuild it with `make bundle` after
# bench/init-parity.ts exists, so the bundle's toolkit has dist/bench/init-parity.js: run.sh resolves a
# relative --node script missing from the working tree inside the unpacked toolkit):
#
#   rm -rf /tmp/ip && bash bundle/run.sh --node dist/bench/init-parity.js /tmp/ip \
#     && python3 bench/init_parity_torch.py /tmp/ip > $OUT/init-parity.jsonl
#
# Needs Python 3 with torch, transformers (written against 5.x) and numpy (a transformers dependency).
import json
import math
import os
import shutil
import sys
import tempfile
import traceback

# Local folders only: never wait on the Hub (e.g. for optional kernels).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

TOLERANCE = 1e-4
# Config fields that transformers types as float (a strict dataclass rejects an int there in 5.x).
FLOAT_FIELDS = ("layer_norm_epsilon", "initializer_range", "time_step_min", "time_step_max", "time_step_floor", "time_step_scale")


def short_error(e, limit=3000):
    msg = f"{type(e).__name__}: {e}"
    if len(msg) > limit:
        msg = msg[:limit] + "..."
    return msg


def versions():
    out = {"python": sys.version.split()[0]}
    for name in ("torch", "transformers", "numpy"):
        try:
            mod = __import__(name)
            out[name] = getattr(mod, "__version__", "?")
        except Exception as e:  # noqa: BLE001
            out[name] = f"unavailable ({short_error(e, 200)})"
    return out


def pick_device(torch):
    if torch.cuda.is_available():
        # Exact float32: no TF32 in matmuls or in cuDNN's convolutions.
        for setter in (
            lambda: setattr(torch.backends.cuda.matmul, "allow_tf32", False),
            lambda: setattr(torch.backends.cudnn, "allow_tf32", False),
            lambda: torch.set_float32_matmul_precision("highest"),
        ):
            try:
                setter()
            except Exception:  # noqa: BLE001
                pass
        return "cuda"
    return "cpu"


def as_names(keys):
    if not keys:
        return []
    out = []
    for k in keys:
        out.append(k if isinstance(k, str) else repr(k))
    return sorted(out)


def from_pretrained(folder):
    import torch
    from transformers import AutoModelForCausalLM

    try:
        res = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, output_loading_info=True)
    except TypeError as e:
        # transformers before 4.56 knows only torch_dtype.
        if "dtype" not in str(e):
            raise
        res = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32, output_loading_info=True)
    if isinstance(res, tuple):
        model, info = res[0], (res[1] if len(res) > 1 else None)
    else:
        model, info = res, None
    return model, info


def info_get(info, key):
    """A loading-info field, whether transformers hands back a dict or an object."""
    if info is None:
        return None
    if isinstance(info, dict):
        return info.get(key)
    return getattr(info, key, None)


def run_and_compare(folder, ours, device, r):
    """Load `folder`, run ours["ids"], compare with ours["logits"]; fills `r` as it goes (so a later
    failure still shows how far it got)."""
    import numpy as np
    import torch

    model, info = from_pretrained(folder)
    r["loaded"] = True
    r["class"] = type(model).__name__
    r["missing_keys"] = as_names(info_get(info, "missing_keys"))
    r["unexpected_keys"] = as_names(info_get(info, "unexpected_keys"))
    r["mismatched_keys"] = as_names(info_get(info, "mismatched_keys"))
    if info_get(info, "error_msgs"):
        r["error_msgs"] = [str(m) for m in info_get(info, "error_msgs")]
    cfg = getattr(model, "config", None)
    if cfg is not None:
        keys = ("n_groups", "num_heads", "head_dim", "intermediate_size", "tie_word_embeddings", "time_step_limit", "mimetic")
        r["config_seen"] = {k: getattr(cfg, k) for k in keys if hasattr(cfg, k)}
    if ours is None:
        r["ok"] = False
        return
    model = model.to(device).eval()
    ids = torch.tensor(ours["ids"], dtype=torch.long, device=device)
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=False)
    theirs = out.logits.detach().float().cpu().numpy().astype(np.float64)
    ref = np.asarray(ours["logits"], dtype=np.float64)
    shape = tuple(ours["shape"])
    r["shape"] = list(theirs.shape)
    if tuple(theirs.shape) != shape:
        r["error"] = f"logits shape {list(theirs.shape)} != ours {list(shape)}"
        r["ok"] = False
        return
    ref = ref.reshape(shape)
    diff = np.abs(theirs - ref)
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    max_abs = float(np.max(diff)) if diff.size else 0.0
    r["max_abs_diff"] = max_abs
    r["max_abs_logit"] = scale
    r["max_rel_diff"] = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    r["finite"] = bool(np.all(np.isfinite(theirs)))
    r["ok"] = bool(r["finite"] and r["max_rel_diff"] < TOLERANCE)


def patch_floats(cfg):
    """Ints where transformers expects floats become floats (0 -> 0.0). Returns the keys changed."""
    changed = []
    for k in FLOAT_FIELDS:
        v = cfg.get(k)
        if isinstance(v, int) and not isinstance(v, bool):
            cfg[k] = float(v)
            changed.append(k)
    tl = cfg.get("time_step_limit")
    if isinstance(tl, list):
        new = [float(x) if isinstance(x, int) and not isinstance(x, bool) else x for x in tl]
        if new != tl or any(type(a) is not type(b) for a, b in zip(new, tl)):
            cfg["time_step_limit"] = new
            changed.append("time_step_limit")
    return changed


def patch_extras(cfg):
    """Drop what our writer adds beyond transformers' own config.json. Returns the keys changed."""
    changed = []
    if "mimetic" in cfg:
        del cfg["mimetic"]
        changed.append("-mimetic")
    if cfg.get("model_type") == "mamba2" and "intermediate_size" in cfg:
        del cfg["intermediate_size"]
        changed.append("-intermediate_size")
    if "torch_dtype" in cfg:
        cfg.setdefault("dtype", cfg.pop("torch_dtype"))
        changed.append("torch_dtype->dtype")
    return changed


def retry_patched(folder, ours, device):
    """After a failed load: retry from patched copies of config.json, mildest patch first."""
    with open(os.path.join(folder, "config.json")) as f:
        raw = json.load(f)  # {"__float__": "Infinity"} stays a dict, as written
    attempts = []
    cfg = json.loads(json.dumps(raw))
    changed = []
    for name, fn in (("floats", patch_floats), ("floats+extras", patch_extras)):
        step = fn(cfg)
        if not step:
            continue
        changed = changed + step
        tmp = tempfile.mkdtemp(prefix="init-parity-")
        try:
            dst = os.path.join(tmp, os.path.basename(folder.rstrip("/")))
            shutil.copytree(folder, dst)
            with open(os.path.join(dst, "config.json"), "w") as f:
                json.dump(cfg, f, indent=2)
            a = {"patch": name, "changed": list(changed), "loaded": False}
            try:
                run_and_compare(dst, ours, device, a)
            except Exception as e:  # noqa: BLE001
                a["error"] = short_error(e)
                a["ok"] = False
            attempts.append(a)
            if a.get("loaded"):
                break
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return attempts


def check_model(folder, device, vers):
    name = os.path.basename(folder.rstrip("/"))
    rec = {"model": name, "loaded": False, "error": None, "device": device}
    ours = None
    ours_path = os.path.join(folder, "ours.json")
    try:
        with open(ours_path) as f:
            ours = json.load(f)
        if ours.get("note"):
            rec["note"] = ours["note"]
    except Exception as e:  # noqa: BLE001
        rec["error"] = f"ours.json: {short_error(e)}"
    try:
        run_and_compare(folder, ours, device, rec)
    except Exception as e:  # noqa: BLE001
        rec["error"] = short_error(e)
        rec["traceback_tail"] = traceback.format_exc().strip().splitlines()[-6:]
        rec["ok"] = False
        if not rec.get("loaded"):
            try:
                rec["patched"] = retry_patched(folder, ours, device)
            except Exception as e2:  # noqa: BLE001
                rec["patched"] = [{"error": short_error(e2)}]
    rec.setdefault("ok", False)
    rec["versions"] = vers
    return rec


def plain(v):
    """JSON-safe: non-finite floats as strings, tuples as lists, anything odd as its repr."""
    if isinstance(v, float):
        return v if math.isfinite(v) else repr(v)
    if isinstance(v, (str, int, bool)) or v is None:
        return v
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    return repr(v)


def emit(rec):
    print(json.dumps(plain(rec), allow_nan=False), flush=True)


def main():
    if len(sys.argv) != 2:
        print("usage: python3 bench/init_parity_torch.py FOLDER  (FOLDER as written by dist/bench/init-parity.js)", file=sys.stderr)
        return
    root = sys.argv[1]
    vers = versions()
    try:
        entries = sorted(os.listdir(root))
    except Exception as e:  # noqa: BLE001
        emit({"model": None, "loaded": False, "ok": False, "error": f"{root}: {short_error(e)}", "versions": vers})
        return
    folders = [os.path.join(root, d) for d in entries if os.path.isfile(os.path.join(root, d, "config.json"))]
    if not folders:
        emit({"model": None, "loaded": False, "ok": False, "error": f"{root}: no model folders (with config.json)", "versions": vers})
        return
    try:
        import torch

        device = pick_device(torch)
    except Exception as e:  # noqa: BLE001
        for d in folders:
            emit({"model": os.path.basename(d), "loaded": False, "ok": False, "error": f"torch: {short_error(e)}", "versions": vers})
        return
    for d in folders:
        try:
            rec = check_model(d, device, vers)
        except Exception as e:  # noqa: BLE001
            rec = {"model": os.path.basename(d), "loaded": False, "ok": False, "error": short_error(e), "versions": vers}
        emit(rec)


if __name__ == "__main__":
    try:
        main()
    except Exception:  # noqa: BLE001
        traceback.print_exc()
    sys.exit(0)
