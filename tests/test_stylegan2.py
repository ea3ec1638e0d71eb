"""The StyleGAN2 baseline (``--arch stylegan2``): its modulated convolution is the fixed one when
the style is 1, the layout and mixing of its codes, the image-only discriminator, checkpoints that
record the arch (old ones are SemanticStyleGAN), and the commands: a short run's checkpoint is
accepted by generate, invert, encoder train, direction and edit, refused in one line by
SemanticStyleGAN-only ones."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from ssgan.checkpoint import load_checkpoint, save_checkpoint
from ssgan.cli import main
from ssgan.model import DualBranchDiscriminator, SSGANConfig, StyleGAN2Generator, build_generator, preset
from ssgan.model.layers import FixedStyledConv

SG2 = preset("tiny").replace(arch="stylegan2")


def test_config_records_the_arch_and_old_configs_are_semantic():
    assert "arch" not in preset("tiny").to_dict()  # SemanticStyleGAN checkpoints keep their bytes
    assert SSGANConfig.from_dict(preset("tiny").to_dict()).arch == "semanticstylegan"
    assert SSGANConfig.from_dict(SG2.to_dict()) == SG2 and SG2.to_dict()["arch"] == "stylegan2"
    assert SG2.n_latent == SG2.n_latent_expand == 2 * 5 - 2
    with pytest.raises(ValueError, match="unknown arch 'gan'"):
        preset("tiny").replace(arch="gan")


@pytest.mark.parametrize("upsample", [False, True])
def test_per_sample_style_of_one_is_the_fixed_modulation(upsample):
    torch.manual_seed(0)
    conv = FixedStyledConv(6, 5, 3, upsample=upsample)
    conv.modulation.data.uniform_(0.5, 1.5)
    x, noise = torch.randn(2, 6, 8, 8), torch.randn(2, 1, 16 if upsample else 8, 16 if upsample else 8)
    assert torch.allclose(conv(x, noise, style=torch.ones(2, 6)), conv(x, noise), atol=1e-5)
    s = torch.rand(2, 6) + 0.5  # per-sample style: sample b is the fixed conv with modulation · s_b
    out = conv(x, noise, style=s)
    for b in range(2):
        single = FixedStyledConv(6, 5, 3, upsample=upsample)
        single.load_state_dict(conv.state_dict())
        single.modulation.data = conv.modulation.data * s[b].view(1, 6, 1, 1)
        assert torch.allclose(out[b:b + 1], single(x[b:b + 1], noise[b:b + 1]), atol=1e-5)


def test_generator_codes_mixing_and_image_only_discriminator():
    torch.manual_seed(0)
    G = build_generator(SG2)
    assert isinstance(G, StyleGAN2Generator) and G.n_latent == 8
    w1, w2 = G.mapping(torch.randn(3, 128)), G.mapping(torch.randn(3, 128))
    assert torch.equal(G.mix_with_choice(w1, w2, torch.zeros(3, 1, 1, dtype=torch.long)), G.mix_styles([w1]))
    mixed = G.mix_with_choice(w1, w2, torch.tensor([1, 3, 7]).view(3, 1, 1))
    assert torch.equal(mixed[1, :5], w1[1].expand(5, -1)) and torch.equal(mixed[1, 5:], w2[1].expand(3, -1))
    out = G.synthesize(G.mix_styles([w1]), randomize_noise=False)
    assert out.rgb.shape == (3, 3, 32, 32) and out.seg is None and out.coarse is None
    D = DualBranchDiscriminator(SG2)
    assert D.convs_seg is None and D(torch.randn(4, 3, 32, 32)).shape == (4, 1)
    with pytest.raises(ValueError, match="image-only"):
        D(torch.randn(4, 3, 32, 32), torch.randn(4, 5, 32, 32))


def test_checkpoint_round_trip(tmp_path):
    G = build_generator(SG2).eval()
    path = save_checkpoint(tmp_path / "g.safetensors", SG2, g_ema=G, d=DualBranchDiscriminator(SG2))
    ck = load_checkpoint(path)
    assert ck.config.arch == "stylegan2" and isinstance(ck.g_ema, StyleGAN2Generator)
    w = G.mix_styles([G.mapping(torch.randn(2, 128))])
    again = ck.g_ema.synthesize(w, randomize_noise=False).rgb
    assert torch.equal(again, G.synthesize(w, randomize_noise=False).rgb)


def test_unknown_arch_is_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--arch", "stylegan3", "--steps", "1"])
    assert e.value.code == 2 and "--arch" in capsys.readouterr().err


def _fails(argv: list[str], capsys, words: str) -> None:
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and words in err and "--arch stylegan2" in err, err
    assert len(err.splitlines()) == 1, err


@pytest.mark.slow
def test_a_short_stylegan2_run_serves_every_command(tmp_path, capsys):
    run, o = tmp_path / "run", tmp_path
    assert main(["train", "--preset", "small", "--arch", "stylegan2", "--data", "faces", "--steps", "2",
                 "--batch", "4", "--ckpt-every", "2", "--sample-every", "2", "--outdir", str(run)]) == 0
    ck = load_checkpoint(run)
    assert ck.config.arch == "stylegan2" and ck.classes.names[-1] == "beard" and ck.d.convs_seg is None
    main(["generate", str(run), "-n", "4", "--outdir", str(o / "gen"), "--quiet"])
    assert len(list((o / "gen" / "latent").glob("*.npy"))) == 4 and not (o / "gen" / "mask").exists()
    photos = o / "photos"
    main(["data", "synthetic", str(photos), "--kind", "faces", "-n", "2", "--size", "64", "--seed", "9"])
    main(["invert", str(run), "--images", str(o / "photos" / "images"), "--steps", "2", "--outdir",
          str(o / "inv"), "--quiet"])
    assert json.loads((o / "inv" / "metrics.json").read_text())["mean"]["psnr"] > 0
    main(["encoder", "train", str(run), "--steps", "1", "--outdir", str(o / "enc")])
    assert (o / "enc" / "encoder.safetensors").is_file()
    with (o / "attr.csv").open("w", newline="") as f:
        csv.writer(f).writerows([["name", "smiling"]] + [[f"{i:06d}", i % 2] for i in range(4)])
    main(["direction", str(run), "--latents", str(o / "gen" / "latent"), "--attributes", str(o / "attr.csv"),
          "--attribute", "smiling", "--out", str(o / "dir.npy")])
    main(["edit", str(run), "--latent", str(o / "gen" / "latent" / "000000.npy"), "--direction",
          str(o / "dir.npy"), "--strength=-2,0,2", "--outdir", str(o / "edit")])
    assert len(list((o / "edit").glob("frame_*.png"))) == 3
    capsys.readouterr()
    latent = str(o / "gen" / "latent" / "000000.npy")
    _fails(["mix", str(run), "--source", latent, "--reference", latent, "--classes", "hair", "--outdir",
            str(o / "mix")], capsys, "region mix")
    _fails(["invert", str(run), "--images", str(o / "photos" / "images"), "--labels",
            str(o / "photos" / "labels"), "--steps", "1", "--outdir", str(o / "inv2")], capsys, "mask-guided")
    _fails(["direction", str(run), "--latents", str(o / "gen" / "latent"), "--attributes",
            str(o / "attr.csv"), "--attribute", "smiling", "--out", str(o / "d2.npy"), "--classes", "mouth"],
           capsys, "--classes")
