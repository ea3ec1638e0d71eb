"""Test set-up and helpers shared by the test files.

* Without a GPU, Triton kernels run under its interpreter (set before any import); metric caches
  go to a temporary folder.
* Every test starts from the same global state and leaves none behind (:func:`_isolated`): one
  intra-op torch thread, no kernel backend override, the environment variables, the working
  directory, float32 default dtype, grad mode on, deterministic-algorithms mode, TF32 and float32
  matmul precision as the session started, the global torch RNG seeded 0. In-process runs of
  ``train.py`` set some of these (threads, TF32) and tests set others; without the restore, a
  test's numbers would depend on which tests ran before it. So a test changes global state in
  the test or a function-scoped fixture (``monkeypatch``), never in a module-scoped fixture.
* Helpers more than one test file uses: :data:`OFFICIAL_CFG`, :func:`official_pt`,
  :func:`read_png` (import them with ``from conftest import …``) and the :func:`cli_error`
  fixture.
"""

import argparse
import atexit
import os
import shutil
import tempfile
from pathlib import Path

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
# Real-data statistics of the metrics go to a throw-away cache, never the user's ~/.cache/ssgan
# (training runs in the tests evaluate the default metric; subprocesses inherit this too).
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="ssgan-tests-cache-")
atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], ignore_errors=True)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from ssgan import DualBranchDiscriminator, SemanticGenerator, SSGANConfig  # noqa: E402
from ssgan.cli import main as cli_main  # noqa: E402
from ssgan.kernels import use_backend  # noqa: E402

# The suite's tensors are tiny: one intra-op thread avoids the thread start-up and contention that
# make small convolutions many times slower on a 2-core CI machine.
THREADS = 1
torch.set_num_threads(THREADS)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def _torch_flags() -> tuple:
    return (torch.get_default_dtype(), torch.is_grad_enabled(), torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(), torch.get_float32_matmul_precision(),
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)


def _set_torch_flags(flags: tuple) -> None:
    dtype, grad, deterministic, warn_only, matmul, tf32_matmul, tf32_cudnn = flags
    torch.set_default_dtype(dtype)
    torch.set_grad_enabled(grad)
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    torch.set_float32_matmul_precision(matmul)
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32_matmul, tf32_cudnn


_SESSION_FLAGS = _torch_flags()
_SESSION_ENV = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
_SESSION_CWD = os.getcwd()


def _restore_environment() -> None:
    for key in set(os.environ) - set(_SESSION_ENV) - {"PYTEST_CURRENT_TEST"}:
        del os.environ[key]
    for key, value in _SESSION_ENV.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


def _reset_global_state() -> None:
    torch.set_num_threads(THREADS)
    _set_torch_flags(_SESSION_FLAGS)
    _restore_environment()
    os.chdir(_SESSION_CWD)
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _isolated():
    """The session's global state before the test (module doc), and again after it whatever the
    test changed; the kernel backend override is None inside and restored after."""
    _reset_global_state()
    with use_backend(None):
        yield
    _reset_global_state()


# ----- helpers shared by several test files ------------------------------------------------------

# The official code always builds the render net with channel_max 512 (lr_mlp 0.01): a config
# matching an official file has those values. Kept small elsewhere so that 512-channel convs stay cheap.
OFFICIAL_CFG = SSGANConfig(size=16, style_dim=32, n_mlp=2, channel_multiplier=1, seg_dim=3, local_layers=3,
                           local_channel=8, base_layers=1, depth_layers=2, coarse_size=8, coarse_channel=16,
                           min_feat_size=4, transparent_dims=(2,), channel_max=512)


def official_pt(path: Path, cfg: SSGANConfig = OFFICIAL_CFG) -> SemanticGenerator:
    """Write an official-format ``.pt`` (``g_ema``, ``d``, the official ``args``) of a randomly
    initialised ``cfg`` model to ``path``; returns its generator (eval mode)."""
    args = argparse.Namespace(
        size=cfg.size, latent=cfg.style_dim, n_mlp=cfg.n_mlp, channel_multiplier=cfg.channel_multiplier,
        seg_dim=cfg.seg_dim, local_layers=cfg.local_layers, local_channel=cfg.local_channel,
        base_layers=cfg.base_layers, depth_layers=cfg.depth_layers, coarse_size=cfg.coarse_size,
        coarse_channel=cfg.coarse_channel, min_feat_size=cfg.min_feat_size,
        residual_refine=cfg.residual_refine, detach_texture=cfg.detach_texture,
        transparent_dims=list(cfg.transparent_dims), dataset="celeba", lr=0.002, batch=16)
    G = SemanticGenerator(cfg).eval()
    torch.save({"g_ema": G.state_dict(), "d": DualBranchDiscriminator(cfg).state_dict(), "args": args}, path)
    return G


def read_png(path: Path) -> np.ndarray:
    """An image file as an RGB uint8 array (H, W, 3)."""
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture
def cli_error(capsys):
    """``cli_error(argv)``: runs ``ssgan argv``, checks it exits 2 with one ``ssgan: error: …`` line
    on stderr, and returns that line."""

    def run(argv: list[str]) -> str:
        with pytest.raises(SystemExit) as info:
            cli_main(argv)
        assert info.value.code == 2
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("ssgan: error: "), err
        return lines[0]

    return run
