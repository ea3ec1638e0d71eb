"""Training curves (ssgan.train.plot): curves.png written and redrawn by a short train.py run, the
redraw budget, overlaying runs with ``python -m ssgan.train.plot``, one-line errors for bad input, the
smoothing, and TensorBoard event files (``train.py --tensorboard``)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ssgan.train import loop as train
from ssgan.train import outputs, plot

ROOT = Path(__file__).resolve().parents[1]

BASE = ["--preset", "tiny", "--batch", "4", "--length", "16", "--d-reg-every", "2", "--g-reg-every", "2",
        "--device", "cpu", "--ckpt-every", "100", "--sample-every", "3"]


def fake_run(folder: Path, n: int = 30, scale: float = 1.0, metrics: bool = False) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(int(scale * 10))
    with open(folder / plot.STATS, "w") as f:
        for i in range(1, n + 1):
            rec = {"step": 10 * i, "kimg": 0.08 * i, "d": scale * (1 + 0.2 * rng.standard_normal()),
                   "g": 2 + rng.standard_normal(), "real_score": 1.0, "fake_score": -1.0,
                   "r1_img": 0.01 * i, "r1_seg": 0.001 * i, "path": 0.02, "path_length": 0.2,
                   "mean_path_length": 0.01 * i, "mask": 0.1 / i, "sec_per_kimg": 30.0, "peak_mem_mb": 500}
            f.write(json.dumps(rec) + "\n")
        f.write('{"step": 9999, "kimg"')  # a torn last line (the run is still writing)
    if metrics:
        with open(folder / plot.METRICS, "w") as f:
            for i in (1, 2):
                f.write(json.dumps({"step": 100 * i, "kimg": 0.8 * i, "metric": "maskfd10k",
                                    "value": 50.0 / i, "seconds": 3.0}) + "\n")
    return folder


@pytest.mark.slow
def test_train_writes_and_redraws_curves_and_tensorboard(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")  # a dev extra: installed in CI
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    seen = []  # the number of records each redraw saw
    draw = plot.draw

    def spy(runs, path, *a, **k):
        seen.append(len(runs[0].stats))
        return draw(runs, path, *a, **k)

    monkeypatch.setattr(plot, "draw", spy)
    # an unlimited budget: redraw at every log step (the budget itself is tested below)
    monkeypatch.setattr(outputs, "CurveWriter", lambda out: plot.CurveWriter(out, budget=1e9))
    out = tmp_path / "run"
    assert train.main([*BASE, "--outdir", str(out), "--steps", "6", "--log-every", "2", "--tensorboard"]) == 0
    assert seen[:3] == [1, 2, 3]  # redrawn at each log step with the new record; then the final draw
    png = Image.open(out / plot.CURVES)
    assert png.format == "PNG" and png.width > 1000 and png.height > 400
    assert not list(out.glob(".*.tmp"))  # written through a temporary file, renamed
    acc = EventAccumulator(str(out)).Reload()
    tags = acc.Tags()
    assert {"Loss/d", "Loss/g", "Loss/mask", "Reg/r1_img", "Scores/real_score",
            "Progress/kimg"} <= set(tags["scalars"])
    assert [e.step for e in acc.Scalars("Loss/d")] == [2, 4, 6]
    assert tags["images"] == ["samples"] and [e.step for e in acc.Images("samples")] == [3, 6]


def test_tensorboard_missing_is_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    assert train.main([*BASE, "--outdir", str(tmp_path / "run"), "--steps", "2", "--tensorboard"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install tensorboard" in err


def test_redraw_budget(tmp_path, monkeypatch):
    run = fake_run(tmp_path / "run")
    clock = [100.0]

    def tick():  # every reading of the clock is 0.05 s later: each draw "takes" 0.05 s
        clock[0] += 0.05
        return clock[0]

    monkeypatch.setattr(plot.time, "perf_counter", tick)
    writer = plot.CurveWriter(run, budget=0.05)
    assert writer.update()  # the first: always; took 0.05 s, so the next is due 1 s later
    assert not writer.update()  # too soon: skipped
    assert writer.update(final=True)  # the final draw always happens
    clock[0] += 10.0
    assert writer.update()


def test_broken_drawing_never_stops_training(tmp_path, capsys):
    writer = plot.CurveWriter(tmp_path / "no-such-run")
    assert not writer.update() and not writer.update(final=True)
    err = capsys.readouterr().err
    assert err.count("warning") == 1 and "ssgan plot " in err and not writer.enabled


def test_overlay_two_runs(tmp_path, capsys):
    a = fake_run(tmp_path / "lr-0.002", scale=1.0, metrics=True)
    b = fake_run(tmp_path / "lr-0.004", scale=2.0)
    runs = [plot.load_run(a), plot.load_run(b)]
    assert len(runs[0].stats) == 30  # the torn line skipped
    fig = plot.figure(runs)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["lr-0.002", "lr-0.004"]
    titles = [ax.get_title() for ax in fig.axes]
    assert "D and G losses" in titles and "metric: maskfd10k" in titles
    losses = fig.axes[titles.index("D and G losses")]
    assert len(losses.lines) == 2 * 2 * 2  # 2 runs × (D, G) × (raw, smoothed)
    assert fig.axes[titles.index("R1 penalty")].get_yscale() == "log"
    out = tmp_path / "both.png"
    assert plot.main([str(a), str(b), "--out", str(out)]) == 0
    assert Image.open(out).format == "PNG" and f"wrote {out}" in capsys.readouterr().out


def test_missing_stats_is_one_line_error(tmp_path, capsys):
    good = fake_run(tmp_path / "good")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as info:
        plot.main([str(good), str(tmp_path / "empty"), "--out", str(tmp_path / "x.png")])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("ssgan: error: ")
    assert str(tmp_path / "empty" / "stats.jsonl") in err
    assert not (tmp_path / "x.png").exists()


def test_ema_smooth():
    assert plot.ema_smooth([3.0, 3.0, 3.0], 0.9) == pytest.approx([3.0, 3.0, 3.0])  # debiased
    s = plot.ema_smooth([0.0, 1.0, 1.0], 0.5)
    assert s == pytest.approx([0.0, 0.5 / 0.75, 0.75 / 0.875])
    assert plot.ema_smooth([1.0, 2.0], 0.0) == [1.0, 2.0]
    with pytest.raises(ValueError):
        plot.ema_smooth([1.0], 1.0)
