"""The backend switch: a Python override for every op or for named ops only, then SSGAN_BACKEND,
then the device default; the fallback rule where Triton cannot run; ssgan without Triton."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ssgan.kernels import (
    TritonUnavailable,
    backend,
    backend_for,
    bias_act,
    bias_act_reference,
    interpreting,
    upfirdn2d,
    upfirdn2d_reference,
    use_backend,
)
from ssgan.kernels.backend import OPS


def test_override_for_named_ops_only(monkeypatch):
    monkeypatch.delenv("SSGAN_BACKEND", raising=False)
    t = torch.zeros(1)
    assert {backend_for(t, op) for op in OPS} == {"reference"}  # the CPU default
    with use_backend("triton", ops=("fuse", "grouped_mlp")):
        assert {op: backend_for(t, op) for op in OPS} == {
            "bias_act": "reference", "fuse": "triton", "grouped_mlp": "triton", "upfirdn2d": "reference"}
        with use_backend("reference"):  # nested: every op
            assert {backend_for(t, op) for op in OPS} == {"reference"}
        assert backend_for(t, "fuse") == "triton"
    assert backend_for(t, "fuse") == "reference"
    monkeypatch.setenv("SSGAN_BACKEND", "triton")
    with use_backend("reference", ops=("upfirdn2d",)):  # the others follow the environment
        assert backend_for(t, "upfirdn2d") == "reference" and backend_for(t, "bias_act") == "triton"


def test_unknown_op_is_an_error():
    with pytest.raises(ValueError, match="unknown ssgan op"), use_backend("triton", ops=("fuze",)):
        pass


# ------------------------------------------------------------------------------------------------
# The fallback rule (backend.py): where the Triton kernels cannot run, the default choice takes the
# reference maths silently and a forced ``triton`` raises TritonUnavailable.
# ------------------------------------------------------------------------------------------------

def test_uncovered_inputs_default_falls_back_forced_raises(monkeypatch):
    """Inputs outside the kernels (a negative gain, a trainable filter): under the default choice on
    a device Triton runs on (a GPU, or the interpreter on CPU with the default made to pick triton
    as it does for CUDA tensors) the reference result; forced, the reason."""
    monkeypatch.delenv("SSGAN_BACKEND", raising=False)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    x, k = torch.randn(2, 3, 4, 4, device=device), torch.ones(2, 2, device=device).requires_grad_()
    cases = [(lambda: bias_act(x, gain=-1.0), lambda: bias_act_reference(x, gain=-1.0), "gain -1.0"),
             (lambda: upfirdn2d(x, k), lambda: upfirdn2d_reference(x, k), "filter requires grad")]
    monkeypatch.setattr(backend, "backend_for", lambda t, op=None: "triton")
    assert x.is_cuda or interpreting()  # conftest: without a GPU the kernels run on CPU tensors
    for op, ref, why in cases:
        torch.testing.assert_close(op(), ref(), rtol=0, atol=0)
        with use_backend("triton"), pytest.raises(TritonUnavailable, match=why):
            op()


_WITHOUT = r"""
import os, sys
mode = sys.argv[1]
if mode == "no-triton":  # as on macOS: every `import triton` fails
    sys.modules["triton"] = sys.modules["triton.language"] = None
    os.environ["TRITON_INTERPRET"] = "1"  # even asked for, the interpreter needs Triton
else:
    os.environ.pop("TRITON_INTERPRET", None)
import torch
import ssgan
from ssgan import SemanticGenerator, preset
K = ssgan.kernels
torch.manual_seed(0)
x, k = torch.randn(2, 3, 4, 4), torch.ones(2, 2) / 4
h, depth = torch.randn(2, 3, 5, 16), torch.randn(2, 3, 5)
fw, fb = torch.randn(3, 8, 16), torch.randn(3, 8)
w = K.modulated_weights(torch.randn(3, 2, 16, 16), torch.randn(2, 3, 2, 16))
mlp = (h, w, torch.randn(3, 2, 16), torch.randn(3, 16), torch.randn(3), 1)
calls = {"bias_act": (K.bias_act, K.bias_act_reference, (x, torch.randn(3))),
         "upfirdn2d": (K.upfirdn2d, K.upfirdn2d_reference, (x, k, 2, 1, (1, 1))),
         "fuse": (K.fuse, K.fuse_reference, (h, depth, fw, fb)),
         "grouped_mlp": (K.grouped_mlp, K.grouped_mlp_reference, mlp)}
assert not K.interpreting()
def outputs(fn, args):
    out = fn(*args)
    return (out,) if torch.is_tensor(out) else out
for name, (op, ref, args) in calls.items():  # the default choice: the reference maths
    assert all(torch.equal(a, b) for a, b in zip(outputs(op, args), outputs(ref, args), strict=True)), name
G = SemanticGenerator(preset("tiny")).eval()
with torch.no_grad():
    assert G.synthesize(G.layout([torch.randn(1, G.style_dim)])).rgb.shape == (1, 3, 32, 32)
os.environ["SSGAN_BACKEND"] = "triton"
for name, (op, _, args) in calls.items():  # forced: one clear error per op
    try:
        op(*args)
    except K.TritonUnavailable as e:
        print(name, "|", e)
    else:
        raise AssertionError(f"{name}: forced triton ran without Triton / interpreter")
if mode == "no-triton":
    assert sys.modules["triton"] is None, "something imported Triton"
"""


@pytest.mark.parametrize("mode", ["no-triton", "cpu-without-interpreter"])
def test_without_triton_or_interpreter(mode):
    """``import ssgan`` and every op without Triton (``import triton`` fails, as on macOS) or, on
    CPU, without the interpreter: the default choice runs the reference maths (a tiny generator
    too); ``SSGAN_BACKEND=triton`` is a TritonUnavailable error per op, with the reason."""
    env = {k: v for k, v in os.environ.items() if k != "SSGAN_BACKEND"}
    root = Path(__file__).resolve().parent.parent
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", _WITHOUT, mode], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = dict(line.split(" | ") for line in proc.stdout.strip().splitlines())
    assert set(lines) == set(OPS)
    why = "Triton is not installed" if mode == "no-triton" else "TRITON_INTERPRET=1"
    for op, message in lines.items():
        assert message.startswith(f"ssgan.kernels.{op}: the triton backend was forced") and why in message
