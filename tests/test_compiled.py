"""Inductor-compiled inference (:mod:`ssgan.model.compiled`): the fall-back to eager, the cache
folder, the threads, the flags; compiled and eager outputs agree to float tolerance (slow: compiling
the tiny model takes tens of seconds)."""

from __future__ import annotations

import os

import pytest
import torch

from ssgan.cli import build_parser
from ssgan.model import compiled as C


def test_fallback_to_eager_with_one_warning(capsys):
    calls = []

    def eager(x):
        calls.append(x)
        return x + 1

    def broken(x):
        raise RuntimeError("C++ compile error\nmore lines")

    f = C.Compiled(eager, "the test function", enabled=False)
    assert not f.enabled and f(1) == 2
    f.compiled = broken  # what a failed inductor compile looks like to the caller
    assert f(2) == 3 and f(3) == 4 and not f.enabled and calls == [1, 2, 3]
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["ssgan: warning: torch.compile of the test function failed (RuntimeError: C++ compile "
                   "error); running eager"]


def test_cache_folder_and_cores(monkeypatch, tmp_path):
    monkeypatch.delenv(C.CACHE_ENV, raising=False)
    assert C.use_inductor_cache() == C.DEFAULT_CACHE.expanduser()
    assert os.environ[C.CACHE_ENV] == str(C.DEFAULT_CACHE.expanduser())
    monkeypatch.setenv(C.CACHE_ENV, str(tmp_path))
    assert C.use_inductor_cache() == tmp_path
    threads = torch.get_num_threads()
    try:
        assert C.use_all_cores() == len(os.sched_getaffinity(0)) == torch.get_num_threads()
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("command", ["generate", "mix", "invert", "serve", "encoder train"])
def test_compile_flag(command):
    base = {"generate": ["generate", "ck", "--outdir", "o"],
            "mix": ["mix", "ck", "--outdir", "o", "--source", "a", "--reference", "b", "--classes", "1"],
            "invert": ["invert", "ck", "--images", "i", "--outdir", "o"],
            "serve": ["serve", "ck"],
            "encoder train": ["encoder", "train", "ck", "--outdir", "o"]}[command]
    parser = build_parser()
    assert parser.parse_args(base).compile is C.DEFAULTS[command]
    assert parser.parse_args(base + ["--no-compile"]).compile is False
    assert parser.parse_args(base + ["--compile"]).compile is True


def test_auto_compiles_large_models_only():
    """serve's default (auto): compiled from 128 px, where it was measured to pay; a flag wins."""
    assert C.DEFAULTS["serve"] is None
    assert C.compile_default(None, 256) and not C.compile_default(None, 32)
    assert C.compile_default(True, 32) and not C.compile_default(False, 256)


@pytest.mark.slow
def test_compiled_matches_eager(tmp_path, monkeypatch):
    """Editor renders (full and one-class cached), generate's synthesis and an inversion step's
    loss and gradient: compiled = eager to float tolerance, on the tiny model."""
    from ssgan.classes import ClassInfo, default_names
    from ssgan.edit import editing as E
    from ssgan.edit import inversion as I
    from ssgan.edit.perceptual import MSSSIMDistance
    from ssgan.model.config import preset
    from ssgan.model.generator import SemanticGenerator
    from ssgan.serve.engine import Engine, LocalCache

    monkeypatch.setenv(C.CACHE_ENV, str(tmp_path / "inductor"))
    cfg = preset("tiny")
    torch.manual_seed(0)
    G = SemanticGenerator(cfg).eval()
    names = ClassInfo(default_names(cfg.seg_dim))
    eager, compiled = Engine(G, names), Engine(G, names, compile=True)
    base = eager.sample(3)
    edited = eager.replace(base, eager.sample(4), [2], "texture")
    for engine in (eager, compiled):
        cache = LocalCache()
        engine.outs = [engine.render(base, cache), engine.render(edited, cache), engine.render(edited)]
        assert cache.recomputed == [2]
    for a, b in zip(eager.outs, compiled.outs):
        torch.testing.assert_close(b.rgb, a.rgb, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(b.seg, a.seg, atol=1e-4, rtol=1e-4)
    assert compiled._fuse_render.enabled and compiled._local_all.enabled  # nothing fell back

    latent = E.sample_latents(G, 2, seed=5, truncation=0.7)
    want = E.render(G, latent).rgb
    G2 = SemanticGenerator(cfg).eval()
    G2.load_state_dict(G.state_dict())
    C.compile_synthesis(G2)
    torch.testing.assert_close(E.render(G2, latent).rgb, want, atol=1e-4, rtol=1e-4)
    assert G2.synthesize.enabled

    images, mean = want.clamp(-1, 1), E.mean_w(G, 0, 500).view(1, 1, -1).expand(2, G.n_latent, -1)
    G.requires_grad_(False)
    grads = []
    for fn in (I.search_loss, I.compiled_search_loss()):
        w = (mean + 0.1).clone().requires_grad_(True)
        loss, rgb = fn(G, MSSSIMDistance(), w, mean, images, None, I.InversionConfig())
        loss.sum().backward()
        grads.append((loss.detach(), w.grad))
    torch.testing.assert_close(grads[1][0], grads[0][0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(grads[1][1], grads[0][1], atol=1e-7, rtol=1e-3)
    assert I.compiled_search_loss().enabled
