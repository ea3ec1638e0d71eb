"""The backend switch: a Python override for every op or for named ops only, then SSGAN_BACKEND,
then the device default."""

import pytest
import torch

from ssgan.kernels import backend_for, use_backend
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
