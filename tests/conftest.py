"""Test set-up: without a GPU, Triton kernels run under its interpreter (set before any import);
metric caches in a temporary folder."""

import atexit
import os
import shutil
import tempfile

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
# Real-data statistics of the metrics go to a throw-away cache, never the user's ~/.cache/ssgan
# (training runs in the tests evaluate the default metric; subprocesses inherit this too).
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="ssgan-tests-cache-")
atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], ignore_errors=True)

import pytest  # noqa: E402

# The suite's tensors are tiny: one intra-op thread avoids the thread start-up and contention that
# make small convolutions many times slower on a 2-core CI machine.
torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
