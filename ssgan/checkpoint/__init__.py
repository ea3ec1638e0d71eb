"""Checkpoints: one safetensors file per save, and the official release ``.pt`` files.

Layer 3 of ``LAYERS`` (tests/test_layout.py): may import kernels, distributed, jsonl, model,
classes. No drawing code: ``visualize`` is above it.

One module per concern (each public name is also importable from ``ssgan.checkpoint``):

``errors``
    :class:`CheckpointError` (every problem is one line naming the file).
``safetensors_file``
    the file format and its verification: :func:`write_safetensors`, the header check (size
    exactly what the header describes), the stored ``sha256`` (:data:`CHECKSUM_KEY`) and
    :func:`verify_checkpoint`.
``ssgan_format``
    what our tensor keys and metadata hold (``format=ssgan``, sections ``g_ema``, ``g``, ``d``,
    ``g_optim``, ``d_optim``, ``extra``), packing and reading them.
``atomic_write``
    never losing a checkpoint: temporary file (:func:`temp_path`), fsync, read-back, rename, fsync
    of the folder; a killed writer's leftovers (:func:`remove_stale_temps`).
``run_folder``
    a run's ``checkpoints/`` folder: :func:`checkpoint_path`, :func:`list_checkpoints`,
    :func:`latest_checkpoint` (the newest that verifies; corrupt ones skipped with a warning),
    :func:`update_latest`, :func:`resolve_checkpoint` (a run folder or ``…/checkpoints/latest`` → a
    file; every loading function accepts them).
``official``
    the official release ``.pt`` read with ``torch.load(weights_only=True)`` allowing only
    ``argparse.Namespace`` besides torch's own safe types (:func:`config_from_official`).
``save``, ``load``, ``convert``
    :func:`save_checkpoint`; :func:`load_checkpoint` (modules built and filled completely, or a
    :class:`CheckpointError`) and :func:`inspect_checkpoint`; :func:`convert_official`.
``param_digest``
    :func:`param_digest`, a sha256 of a module's weights.
"""

from ssgan.checkpoint.atomic_write import STALE_TEMP_SECONDS, is_temp, remove_stale_temps, temp_path
from ssgan.checkpoint.convert import convert_official
from ssgan.checkpoint.errors import CheckpointError
from ssgan.checkpoint.load import Checkpoint, inspect_checkpoint, load_checkpoint
from ssgan.checkpoint.official import config_from_official
from ssgan.checkpoint.param_digest import param_digest
from ssgan.checkpoint.run_folder import (
    LATEST,
    LATEST_TXT,
    STEP_RE,
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    resolve_checkpoint,
    update_latest,
)
from ssgan.checkpoint.safetensors_file import CHECKSUM_KEY, verify_checkpoint, write_safetensors
from ssgan.checkpoint.save import save_checkpoint
from ssgan.checkpoint.ssgan_format import FORMAT, FORMAT_VERSION, MODULE_SECTIONS, OPTIM_SECTIONS

__all__ = [
    "CHECKSUM_KEY", "FORMAT", "FORMAT_VERSION", "LATEST", "LATEST_TXT", "MODULE_SECTIONS", "OPTIM_SECTIONS",
    "STALE_TEMP_SECONDS", "STEP_RE", "Checkpoint", "CheckpointError", "checkpoint_path",
    "config_from_official", "convert_official", "inspect_checkpoint", "is_temp", "latest_checkpoint",
    "list_checkpoints", "load_checkpoint", "param_digest", "remove_stale_temps", "resolve_checkpoint",
    "save_checkpoint", "temp_path", "update_latest", "verify_checkpoint", "write_safetensors",
]
