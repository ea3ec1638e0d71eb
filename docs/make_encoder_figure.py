"""The encoder picture of docs/editing.md: photo | encoder reconstruction | edit | difference map.

    python docs/make_encoder_figure.py --ckpt G.safetensors --encoder enc.safetensors  # encoder_edit.png

Rows: held-out items of the built-in dataset (seed 1: neither the generator nor the encoder saw
them). The reconstruction is the encoder's alone (5 passes, no optimisation). The edit copies one
class's codes (default: class 1, the face, texture only) from a random sample into the encoded
codes (:func:`ssgan.edit.editing.mix`); the difference map is |edit − reconstruction| as
``ssgan mix`` writes it (diff.png), with the share of the change inside the class's dilated mask
(:mod:`ssgan.edit.locality`) printed per row.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from ssgan import visualize as V
from ssgan.checkpoint import load_checkpoint, param_digest
from ssgan.data import SyntheticFaces
from ssgan.edit import editing as E
from ssgan.edit import encoder as EN
from ssgan.edit.locality import change_locality
from ssgan.provenance import COMPOSITE, Provenance, save_image, software


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True)
    p.add_argument("--encoder", required=True)
    p.add_argument("--rows", type=int, default=4)
    p.add_argument("--cls", type=int, default=1, help="class whose codes the edit copies")
    p.add_argument("--part", default="texture", choices=("shape", "texture", "all"))
    p.add_argument("--seed", type=int, default=5, help="seed of the reference sample")
    p.add_argument("--out", default=str(Path(__file__).parent / "encoder_edit.png"))
    args = p.parse_args()
    G = load_checkpoint(args.ckpt).g_ema
    enc, _ = EN.load_encoder(args.encoder, G)
    data = SyntheticFaces(G.config.size, args.rows, seed=1, seg_dim=G.config.seg_dim)
    photos = torch.stack([data[i]["image"] for i in range(args.rows)])
    codes = EN.encode(G, enc, photos)
    reference = E.sample_latents(G, args.rows, seed=args.seed)
    res = E.mix(G, codes, reference, [args.cls], args.part)
    with torch.no_grad():
        before, after = E.render(G, codes), E.render(G, torch.as_tensor(res["latent"]))
    share = change_locality(before, after, [args.cls])
    print(f"class {args.cls} {args.part}: share of |dRGB| inside the dilated mask {share['share']:.3f} "
          f"(area {share['area']:.3f})")
    tiles = []
    for i in range(args.rows):
        tiles += [V.to_uint8(photos[i:i + 1])[0], res["source"][i], res["result"][i], res["diff"][i]]
    prov = Provenance(COMPOSITE, "docs-encoder-figure", software(), param_digest(G), True, 0)
    save_image(V.grid(V.enlarge(np.stack(tiles)), ncol=4), args.out, prov)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
