"""Every GPU benchmark refuses to run without CUDA: exit status 2, one line on stderr saying
nothing was measured, no JSON written. CUDA is hidden from them, so this runs on GPU machines too."""

from __future__ import annotations

import pytest
import torch

from bench import invert, kernels, render_ops, train

RENDER_OPS_MESSAGE = ("python -m bench.render_ops needs a CUDA GPU; none is available, "
                      "so nothing was measured.")


@pytest.mark.parametrize(("main", "message"), [
    (invert.main, invert.NO_CUDA_MESSAGE),
    (kernels.main, kernels.NO_CUDA_MESSAGE),
    (train.main, train.NO_CUDA_MESSAGE),
    (render_ops.main, RENDER_OPS_MESSAGE),
], ids=["invert", "kernels", "train", "render_ops"])
def test_gpu_benchmark_without_cuda_exits_2(main, message, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "report.json"
    try:
        status = main(["--json", str(out)])
    except SystemExit as e:  # bench.timing.require_cuda
        status = e.code
    assert status == 2
    assert capsys.readouterr().err.strip() == message
    assert not out.exists()
