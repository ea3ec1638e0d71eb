"""conftest's isolation: what one test changes in the global state is undone before the next one
runs (the two tests run in this order)."""

import os
from pathlib import Path

import torch

from ssgan.kernels import backend_for, set_backend

START = Path.cwd()


def test_a_test_that_changes_global_state(tmp_path):
    torch.set_num_threads(2)
    torch.set_default_dtype(torch.float64)
    torch.set_float32_matmul_precision("medium")
    torch.use_deterministic_algorithms(True)
    set_backend("triton")
    os.environ["SSGAN_BACKEND"] = "triton"
    os.environ.pop("XDG_CACHE_HOME")
    os.chdir(tmp_path)
    torch.rand(5)


def test_the_next_test_starts_from_the_session_state():
    assert torch.get_num_threads() == 1
    assert torch.get_default_dtype() == torch.float32
    assert torch.get_float32_matmul_precision() == "highest"
    assert not torch.are_deterministic_algorithms_enabled()
    assert "SSGAN_BACKEND" not in os.environ and "ssgan-tests-cache-" in os.environ["XDG_CACHE_HOME"]
    assert backend_for(torch.zeros(1), "fuse") == "reference"
    assert Path.cwd() == START
    assert torch.equal(torch.rand(3), torch.rand(3, generator=torch.Generator().manual_seed(0)))  # seeded 0
