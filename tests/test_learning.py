"""Training learns: the tiny model trained on the built-in data for a fixed budget generates masks
with the data's class frequencies, with eyes and mouths, and the masks agree with the images.

The mask-vs-image check is independent of the generator: a small per-pixel classifier, trained here
on the built-in data to read the class layout off RGB, labels the *generated* images; its labels
are compared with the generated masks (mIoU over background, face, eyes and mouth).

Measured (seed 0, one CPU thread; data 0.697 / 0.236 / 0.019 / 0.017 / 0.031 for background /
face / eyes / mouth / glasses): G-EMA 0.697 / 0.256 / 0.019 / 0.015 / 0.014, eyes in 99.6 % and
mouths in 91 % of the masks, mask-vs-image mIoU 0.52. It fails when learning breaks: with the G
loss's sign flipped G-EMA's masks are 0 / 0.67 / 0.30 / 0.03 / 0 (mIoU 0.00); with the celeba
presets' R1 weights (--r1-img 10 --r1-seg 1000) they have no eyes or mouths (0.778 / 0.222 / 0 /
0 / 0, mIoU 0.34).

Three late snapshots, and the test passes when one of them passes every check. A GAN's trajectory
is chaotic: a rounding difference anywhere (another CPU's vector width: AVX2 and AVX-512 runs of
train.py differ by ~1e-5 relative after 4 steps, see tests/test_golden_checkpoint.py; another
torch or library build) gives another trajectory, and at this budget the small classes are still
arriving. Measured on the seed-0 run above (G-EMA at steps 700 / 800 / 900): mouths in 0 % / 0 % /
91 % of the masks, eyes in 93 % / 94 % / 99.6 %, mIoU 0.458 / 0.428 / 0.516, class-frequency gap
0.020 / 0.027 / 0.020. So one snapshot read at one step decides on where that trajectory happens
to be (the mIoU at step 800 is under its bar, the mouths come between steps 800 and 900): the
checks stay as they were, and the run passes when G-EMA meets all of them at step 700, 800 or
900. A broken objective meets them at none (the failing cases above are far from the bars).

Self-contained: the run's flags name everything the result depends on (one thread, eager fp32,
no loader workers, no metrics, seed 0), and :func:`pinned` sets the global state the measures
use (one torch thread, the reference kernels, float32, grad mode, fp32 matmuls), whatever ran
before.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from ssgan.checkpoint import load_checkpoint
from ssgan.data.synthetic import SyntheticFaces
from ssgan.kernels import use_backend
from ssgan.metrics.segmentation import iou_counts, mean_iou, pixel_frequencies
from ssgan.model.generator import SemanticGenerator
from ssgan.train import loop as train
from ssgan.train.rundir import list_checkpoints

ROOT = Path(__file__).resolve().parents[1]

STEPS, BATCH, LR = 900, 8, 0.004  # the budget: the default run (tiny, lr 0.004) for 900 of its 1200 steps
SNAPSHOT_EVERY, SNAPSHOTS = 100, 3  # G-EMA at steps 700, 800, 900 (module doc)
N_EVAL = 256  # fixed latents for the measures
MEASURED = (0, 1, 2, 3)  # background, face, eyes, mouth (glasses: a thin, partly transparent ring)
SMALL = (2, 3)  # eyes and mouth: about 2 % of the pixels each
MAX_FREQ_GAP = 0.05  # |generated − data| pixel frequency, every class
MIN_SMALL_RATIO = 0.4  # generated eyes / mouth pixels ≥ this × the data's
MIN_PRESENT = 0.5  # fraction of generated masks that contain eyes (mouth)
MIN_MIOU = 0.43  # generated mask vs the reader's reading of the generated image


def data_batch(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n items of the built-in data as (images in [-1, 1] (n, 3, H, W), labels (n, H, W))."""
    ds = SyntheticFaces(size, n, seed=seed, seg_dim=5)
    items = [ds.render(i) for i in range(n)]
    img = torch.from_numpy(np.stack([im for im, _ in items])).permute(0, 3, 1, 2).float() / 127.5 - 1
    return img, torch.from_numpy(np.stack([lab for _, lab in items])).long()


def miou(pred: torch.Tensor, target: torch.Tensor, k: int) -> float:
    """Mean IoU over the MEASURED classes (a class missing from both maps scores 0), all maps pooled."""
    return float(mean_iou(iou_counts(pred, target, k).sum(0), classes=MEASURED))


def train_reader(k: int, size: int) -> nn.Module:
    """A per-pixel classifier RGB → class (five 3×3 convs, receptive field 11 px), trained on
    built-in items other than the GAN's (seed 1)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(32, 32, 3, padding=2, dilation=2), nn.ReLU(),
                        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, k, 1))
    img, lab = data_batch(1024, size, seed=1)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(300):
        idx = torch.randint(len(img), (32,), generator=gen)
        x = img[idx]  # blurred by a random amount: generated images are smoother than the data
        t = torch.rand(32, 1, 1, 1, generator=gen)
        x = (1 - t) * x + t * F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
        loss = F.cross_entropy(net(x), lab[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@pytest.fixture
def pinned():
    """The global state the run and the measures use, set here and put back after."""
    saved = (torch.get_num_threads(), torch.get_default_dtype(), torch.is_grad_enabled(),
             torch.get_float32_matmul_precision())
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    torch.set_grad_enabled(True)
    torch.set_float32_matmul_precision("highest")
    with use_backend("reference"):
        yield
    torch.set_num_threads(saved[0])
    torch.set_default_dtype(saved[1])
    torch.set_grad_enabled(saved[2])
    torch.set_float32_matmul_precision(saved[3])


def measure(G: SemanticGenerator, reader: nn.Module, want: torch.Tensor) -> dict[str, float]:
    """G's masks on N_EVAL fixed latents (fixed noise): the largest class-frequency gap to the data
    (``want``), eyes and mouth pixels relative to the data's and the fraction of masks holding
    them, and the mIoU of the masks against the reader's reading of the images."""
    cfg = G.config
    z = torch.randn(N_EVAL, cfg.style_dim, generator=torch.Generator().manual_seed(123))
    with torch.no_grad():
        fake = [G.synthesize(G.mix_styles([G.mapping(c)]), randomize_noise=False) for c in z.split(64)]
        rgb = torch.cat([f.rgb for f in fake]).clamp(-1, 1)
        mask = torch.cat([f.seg for f in fake]).argmax(1)
        agreement = miou(reader(rgb).argmax(1), mask, cfg.seg_dim)
    got = pixel_frequencies(mask, cfg.seg_dim)
    out = {"freq_gap": (got - want).abs().max().item(), "miou": agreement}
    for c, name in zip(SMALL, ("eyes", "mouth"), strict=True):
        out[f"{name}_ratio"] = (got[c] / want[c]).item()
        out[f"{name}_present"] = (mask == c).flatten(1).any(1).float().mean().item()
    return out


@pytest.mark.slow
def test_tiny_model_learns_faces_with_matching_masks(tmp_path, pinned):
    out = tmp_path / "run"
    assert train.main(["--outdir", str(out), "--steps", str(STEPS), "--batch", str(BATCH), "--lr", str(LR),
                       "--seed", "0", "--device", "cpu", "--threads", "1", "--workers", "0",
                       "--precision", "fp32", "--no-compile", "--metrics", "none", "--log-every", "100",
                       "--sample-every", str(STEPS), "--ckpt-every", str(SNAPSHOT_EVERY),
                       "--keep", str(SNAPSHOTS)]) == 0
    paths = list_checkpoints(out / "checkpoints")
    assert [p.name for p in paths] == [f"{STEPS - SNAPSHOT_EVERY * i:07d}.safetensors"
                                       for i in reversed(range(SNAPSHOTS))]
    models = [load_checkpoint(p).g_ema.eval() for p in paths]
    cfg = models[0].config
    _, data_lab = data_batch(N_EVAL, cfg.size, seed=0)
    want = pixel_frequencies(data_lab, cfg.seg_dim)
    reader = train_reader(cfg.seg_dim, cfg.size)
    with torch.no_grad():
        held_img, held_lab = data_batch(128, cfg.size, seed=2)
        reader_miou = miou(reader(held_img).argmax(1), held_lab, cfg.seg_dim)
    each = [measure(G, reader, want) for G in models]
    report = (f"data {want.numpy().round(3)}; reader on held-out data {reader_miou:.3f}; "
              + "; ".join(f"step {int(p.stem)}: " + ", ".join(f"{k} {v:.3f}" for k, v in e.items())
                          for p, e in zip(paths, each, strict=True)))
    print(report)
    assert reader_miou > 0.8, report  # the reader itself works
    assert any(learned(e) for e in each), report


def learned(m: dict[str, float]) -> bool:
    """Every check on one snapshot's measures (:func:`measure`)."""
    small = all(m[f"{name}_ratio"] >= MIN_SMALL_RATIO and m[f"{name}_present"] >= MIN_PRESENT
                for name in ("eyes", "mouth"))
    return m["freq_gap"] <= MAX_FREQ_GAP and small and m["miou"] >= MIN_MIOU
