"""The same training command writes the same checkpoint as before: a 4-step run of ``train.py``
compared, tensor by tensor, with a golden record made from the code as it was.

The record (``tests/data/golden_tiny_4steps.safetensors``, written by
``python tests/test_golden_checkpoint.py``) holds, for every tensor of the step-4 checkpoint (G,
D, G-EMA, both optimisers' states, the per-rank extras), its float64 sum, sum of absolute values
and L2 norm, and a sample of up to :data:`SAMPLE` of its elements (evenly strided, exact
float32); integer tensors (the RNG states) whole. Its metadata holds the checkpoint's metadata
that the run's numbers fix: the model configuration, the optimisers' hyper-parameters, the step,
the sections and the resolved objective (``meta["train"]``); these compare exactly. The run's
arguments and class names are not compared (flag spellings and built-in class names may change
without changing a number).

Tolerance. On the machine kind that made the record (same torch build and ATen CPU capability)
every value must be bit-identical. Elsewhere float results differ by rounding: the CPU kernels
vectorise and so sum in another order (AVX-512 vs AVX2 code paths in ATen, oneDNN and MKL), and
a GAN step feeds those differences on. Measured on the record's machine with the AVX2 paths
forced (``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2``), the
4-step checkpoint differs from the AVX-512 one by at most 8.6e-6 in relative L2 norm per tensor
(‖x − x_gold‖ / ‖x_gold‖, every tensor of every section; median 3e-8). :data:`RTOL` = 1e-4 is
over 10× that; a change of the training is far above it (measured the same way, of the 2 042
recorded float quantities): ``--lr 0.0041`` instead of 0.004 puts 1 320 outside RTOL (median
relative change 2.9e-3), ``--lambda-mask 99`` instead of 100 1 083 (5.8e-4), the G loss × 1.01
1 075; the lr and λ also change the compared metadata. Each check is
``|a − a_gold| ≤ RTOL · scale + ATOL`` with the scale of that quantity: the sample's L2 norm for
the sample (as one vector), the L1 norm for the sum, the L2 norm for the norms. ATOL (1e-12 per
element) only keeps all-zero tensors comparable. CPUs without AVX2 (ATen capability ``DEFAULT``)
take other kernels whose results differ by up to 2e-2 after 4 steps (measured the same way): the
test skips there, saying why.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ssgan.train import loop as train

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "data" / "golden_tiny_4steps.safetensors"
RUN = ["--steps", "4", "--batch", "4", "--log-every", "2", "--ckpt-every", "4", "--sample-every", "4",
       "--metrics", "none", "--device", "cpu", "--threads", "1"]
SAMPLE = 64  # elements kept per tensor
RTOL, ATOL = 1e-4, 1e-12
META_KEYS = ("config", "g_optim", "d_optim", "step", "sections", "format", "format_version")
RUN_META_KEYS = ("train", "world_size", "global_batch", "seed")  # from the checkpoint's meta["meta"]


def environment() -> dict[str, str]:
    return {"torch": torch.__version__, "cpu": torch.backends.cpu.get_cpu_capability()}


def run_checkpoint(outdir: Path) -> Path:
    """The golden command's step-4 checkpoint, trained into ``outdir``."""
    assert train.main([*RUN, "--outdir", str(outdir)]) == 0
    return outdir / "checkpoints" / "0000004.safetensors"


def record(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A checkpoint's record (module doc): ``name/stats`` (sum, L1, L2; float64), ``name/sample``
    for float tensors, ``name/int`` for integer ones; and the compared metadata."""
    tensors: dict[str, torch.Tensor] = {}
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        for name in f.keys():
            t = f.get_tensor(name).reshape(-1)
            if not t.is_floating_point():
                tensors[f"{name}/int"] = t.clone()
                continue
            x = t.double().numpy()  # NumPy's sums: the same with any number of torch threads
            tensors[f"{name}/stats"] = torch.tensor([x.sum(), np.abs(x).sum(), np.sqrt(np.square(x).sum())])
            idx = torch.linspace(0, t.numel() - 1, min(SAMPLE, t.numel())).round().long()
            tensors[f"{name}/sample"] = t[idx].float().clone()
    run_meta = json.loads(meta["meta"])
    kept = {k: meta[k] for k in META_KEYS}
    kept["meta"] = json.dumps({k: run_meta[k] for k in RUN_META_KEYS}, sort_keys=True)
    return tensors, kept


def differences(got: dict[str, torch.Tensor], gold: dict[str, torch.Tensor], rtol: float, atol: float
                ) -> list[str]:
    """The recorded quantities of ``got`` outside the tolerance of ``gold`` (module doc)."""
    bad = sorted(set(got) ^ set(gold))
    for key, want in sorted(gold.items()):
        if key not in got:
            continue
        have = got[key]
        if key.endswith("/int"):
            if not torch.equal(have, want):
                bad.append(key)
            continue
        have, want = have.double(), want.double()
        if key.endswith("/sample"):
            err, scale, n = (have - want).norm().item(), want.norm().item(), want.numel()
            ok = err <= rtol * scale + atol * math.sqrt(n)
        else:
            d = (have - want).abs()  # sum, L1, L2 against the L1, L1, L2 norms
            ok = bool((d <= rtol * want[[1, 1, 2]] + atol).all())
        if not ok:
            bad.append(f"{key}: {have.tolist()[:4]} vs {want.tolist()[:4]}")
    return bad


def test_same_checkpoint_as_before(tmp_path):
    with safe_open(str(GOLDEN), "pt") as f:
        gold_meta = f.metadata()
        gold = {k: f.get_tensor(k) for k in f.keys()}
    made_on = json.loads(gold_meta.pop("environment"))
    if environment()["cpu"] == "DEFAULT":
        pytest.skip("this CPU has no AVX2: ATen's DEFAULT kernels round differently (module doc)")
    got, meta = record(run_checkpoint(tmp_path / "run"))
    assert meta == {k: v for k, v in gold_meta.items() if k != "made_by"}
    exact = environment() == made_on
    bad = differences(got, gold, 0.0 if exact else RTOL, 0.0 if exact else ATOL)
    tolerance = "bit-identical (same torch and CPU kind)" if exact else f"rtol {RTOL}"
    assert not bad, f"{len(bad)} recorded values differ ({tolerance}): {bad[:10]}"


def write_golden() -> None:
    """Make the record from the code as it is (only when a change of the numbers is intended)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        tensors, meta = record(run_checkpoint(Path(tmp) / "run"))
    meta["environment"] = json.dumps(environment(), sort_keys=True)
    meta["made_by"] = "python tests/test_golden_checkpoint.py: python train.py " + " ".join(RUN)
    save_file(tensors, str(GOLDEN), metadata=meta)
    print(f"wrote {GOLDEN} ({GOLDEN.stat().st_size} bytes, {len(tensors)} tensors)")


if __name__ == "__main__":
    write_golden()
