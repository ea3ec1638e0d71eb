"""The built-in procedural portraits: :class:`ProceduralFaces` (``--data faces``), 9 named classes
with shading, textured backgrounds, varied skin and hair and per-item attributes, drawn at any
resolution with no download, and :func:`export_faces`, which writes them as an image / label
folder with ``classes.json`` and ``attributes.csv`` (``ssgan data synthetic --kind faces``).

Every shape is evaluated analytically at the pixel centres of a ``size × size`` grid over the
unit square (x right, y down), so 32 px and 256 px items show the same portrait. The head is an
egg-shaped ellipse in a slightly rotated frame: with (u, v) the offsets from its centre rotated
by the head's angle, the face coordinates are f_x = u / (a·(1 − 0.18·max(f_y, 0))), f_y = v / b
and the face is f_x² + f_y² ≤ 1. Shading is Lambertian on that ellipsoid's normal
n = (f_x, f_y, √(1 − f_x² − f_y²)) with a random light direction ℓ:
shade = 0.5 + 0.55·max(n·ℓ, 0).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ssgan.data.base import ItemDataset, write_item
from ssgan.data.synthetic import stripes

#: The classes, in label order (a run on this data stores them in its checkpoints).
FACE_CLASSES: tuple[str, ...] = ("background", "skin", "hair", "eyes", "brows", "nose", "mouth",
                                 "glasses", "beard")
#: The partly transparent class (alpha-blended over what lies below; its label wins).
FACE_TRANSPARENT: tuple[int, ...] = (FACE_CLASSES.index("glasses"),)
#: The 0/1 attributes every item carries (``attributes.csv`` columns after ``name``).
FACE_ATTRIBUTES: tuple[str, ...] = ("smiling", "bald", "bangs", "beard", "glasses", "long_hair")
#: Hair styles (``bald`` is the attribute of the same name).
HAIR_STYLES: tuple[str, ...] = ("short", "long", "curly", "bald")

SKIN_TONES = np.array([[0.98, 0.84, 0.74], [0.93, 0.74, 0.60], [0.82, 0.62, 0.46], [0.66, 0.46, 0.32],
                       [0.47, 0.32, 0.22], [0.33, 0.22, 0.15]])
HAIR_COLOURS = np.array([[0.07, 0.06, 0.05], [0.22, 0.13, 0.07], [0.42, 0.27, 0.14], [0.86, 0.72, 0.44],
                         [0.60, 0.25, 0.10], [0.62, 0.62, 0.62]])
IRIS_COLOURS = np.array([[0.30, 0.18, 0.08], [0.25, 0.45, 0.70], [0.30, 0.50, 0.30], [0.12, 0.08, 0.05]])
FRAME_COLOURS = np.array([[0.05, 0.05, 0.05], [0.30, 0.17, 0.08], [0.80, 0.65, 0.30], [0.72, 0.74, 0.78],
                          [0.60, 0.10, 0.12]])


def grid_noise(rng: np.random.Generator, centres: np.ndarray, cells: int) -> np.ndarray:
    """Smooth noise on the pixel grid, roughly N(0, 1): a ``(cells+1)²`` lattice of N(0, 1) values
    interpolated with the smoothstep weights s(t) = t²(3 − 2t), one axis after the other (x, then
    y) at the 1-D pixel ``centres`` (on the unit square, so resolution independent; the same
    field as :func:`ssgan.data.synthetic.value_noise` on a grid, in O(n²) instead of its
    gathers per pixel)."""
    lattice = rng.standard_normal((cells + 1, cells + 1))
    g = centres * cells
    i0 = np.clip(np.floor(g).astype(np.int64), 0, cells - 1)
    t = g - i0
    t = t * t * (3 - 2 * t)
    rows = lattice[:, i0] * (1 - t) + lattice[:, i0 + 1] * t  # (cells+1, n): along x
    return rows[i0] * (1 - t)[:, None] + rows[i0 + 1] * t[:, None]


@dataclass(frozen=True)
class FaceParams:
    """Every random choice of one portrait but its noise textures (drawn first, so
    :meth:`ProceduralFaces.attributes` costs no drawing)."""

    attributes: dict[str, int]
    hair_style: str
    head: tuple[float, float, float, float, float]  # cx, cy, a, b, rotation
    light: tuple[float, float, float]
    skin: np.ndarray
    hair: np.ndarray
    background: tuple[int, np.ndarray, np.ndarray, float, float]  # kind, colour 0, colour 1, angle, period
    eyes: tuple[float, float, float, float, float]  # dx, y, half width, half height, gaze (face units of a)
    iris: np.ndarray
    brows: tuple[float, float, float]  # gap above the eyes, arch, thickness (units of a)
    nose: tuple[float, float]  # bottom (units of b), width (units of a)
    mouth: tuple[float, float, float]  # y (units of b), half width, lip height (units of a)
    lips: np.ndarray
    hairline: tuple[float, float, float]  # height (units of b), wave amplitude, wave count
    long_length: float
    glasses: tuple[float, float, float, float, int]  # radius factor, frame thickness, alpha, lens tint, round
    frame: np.ndarray


def draw_params(rng: np.random.Generator) -> FaceParams:
    """The random choices of one portrait, from ``rng`` (a fixed number of draws, whatever is present)."""
    u = rng.uniform
    style = HAIR_STYLES[int(rng.choice(4, p=[0.35, 0.3, 0.2, 0.15]))]
    bald = style == "bald"
    flags = u(size=4)
    attributes = {"smiling": int(flags[0] < 0.5), "bald": int(bald),
                  "bangs": int(not bald and flags[1] < 0.4), "beard": int(flags[2] < 0.3),
                  "glasses": int(flags[3] < 0.35), "long_hair": int(style == "long")}
    head = (0.5 + u(-0.03, 0.03), 0.47 + u(-0.03, 0.03), u(0.26, 0.29), u(0.33, 0.37), u(-0.12, 0.12))
    skin = np.clip(SKIN_TONES[rng.integers(len(SKIN_TONES))] + u(-0.04, 0.04, 3), 0, 1)
    hair = np.clip(HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] * u(0.85, 1.15) + u(-0.03, 0.03, 3), 0, 1)
    background = (int(rng.integers(4)), u(0.1, 0.95, 3), u(0.1, 0.95, 3), u(0, math.pi), u(0.05, 0.14))
    eye_w = u(0.19, 0.23)
    eyes = (u(0.38, 0.45), u(-0.12, -0.03), eye_w, eye_w * u(0.5, 0.62), u(-0.25, 0.25))
    lips = np.clip(skin * 0.55 + np.array([u(0.35, 0.5), u(0.08, 0.16), u(0.1, 0.18)]), 0, 1)
    return FaceParams(
        attributes=attributes, hair_style=style, head=head,
        light=(u(-0.7, 0.7), u(-0.7, 0.0), 1.0), skin=skin, hair=hair, background=background,
        eyes=eyes, iris=IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))], brows=(u(0.32, 0.4), u(0.06, 0.12),
                                                                             u(0.09, 0.12)),
        nose=(u(0.28, 0.36), u(0.22, 0.28)), mouth=(u(0.52, 0.6), u(0.34, 0.42), u(0.08, 0.1)), lips=lips,
        hairline=(u(-0.72, -0.58), u(0.02, 0.06), u(3, 7)), long_length=u(1.0, 1.6),
        glasses=(u(1.25, 1.5), u(0.05, 0.07), u(0.7, 0.95), u(0.05, 0.3), int(u() < 0.5)),
        frame=FRAME_COLOURS[rng.integers(len(FRAME_COLOURS))])


class Canvas:
    """An image (H, W, 3) float and its label (H, W) uint8 being painted; ``x``, ``y``: pixel centres
    on the unit square."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.x, self.y = x, y
        self.img = np.zeros(x.shape + (3,))
        self.label = np.zeros(x.shape, dtype=np.uint8)

    def paint(self, region: np.ndarray, k: int, colour: np.ndarray | tuple[float, ...]) -> None:
        """Label ``region`` as class ``k`` and give it ``colour`` (a (3,) colour or an (H, W, 3) field)."""
        self.label[region] = k
        colour = np.asarray(colour, dtype=np.float64)
        self.img[region] = colour[region] if colour.ndim == 3 else colour

    def blend(self, region: np.ndarray, colour: np.ndarray | tuple[float, ...], alpha: float) -> None:
        """Alpha-blend ``colour`` over ``region`` without touching the label."""
        colour = np.asarray(colour, dtype=np.float64)
        c = colour[region] if colour.ndim == 3 else colour
        self.img[region] = alpha * c + (1 - alpha) * self.img[region]


class ProceduralFaces(ItemDataset):
    """Procedural portraits (module doc): no download, any resolution, 9 classes
    (:data:`FACE_CLASSES`; ``glasses`` partly transparent) and 0/1 attributes
    (:data:`FACE_ATTRIBUTES`).

    Item ``i`` is drawn from a NumPy generator seeded with ``(seed, i)`` only, so it is
    reproducible and independent of the global RNGs and of worker processes. Items hold the
    usual ``image`` / ``mask`` / ``label`` and ``attributes``: a float tensor in the order of
    :data:`FACE_ATTRIBUTES` (:meth:`attributes` gives them by name, without drawing the image).

    What is drawn: a textured background (gradient, stripes, blobs or tiles, with noise); long
    hair behind the head; neck and ears; the shaded face with cheek colour and skin noise; an
    optional beard with moustache; a shaded nose with nostrils; almond eyes with iris, pupil and
    lid line; arched brows; a closed or smiling (open, teeth) mouth; hair on top (short, curly
    or long; bangs or a hairline; none when bald) with strands; optional glasses (round or
    square rims, bridge and temples, alpha-blended; tinted lenses) on top.
    """

    CLASS_NAMES = FACE_CLASSES
    MIN_CLASSES = len(FACE_CLASSES)

    def __init__(self, size: int, length: int, seed: int = 0, seg_dim: int = len(FACE_CLASSES),
                 hflip: bool = False):
        if seg_dim != len(FACE_CLASSES):
            raise ValueError(f"the faces data draws {len(FACE_CLASSES)} classes ({', '.join(FACE_CLASSES)}); "
                             f"train it with --preset small (or --seg-dim {len(FACE_CLASSES)} --transparent "
                             f"glasses), not seg_dim={seg_dim}")
        if not 8 <= size <= 1024 or length < 1:
            raise ValueError(f"need 8 <= size <= 1024 and length >= 1, got size={size}, length={length}")
        self.size, self.length, self.seed, self.seg_dim = int(size), int(length), int(seed), int(seg_dim)
        self.hflip = bool(hflip)
        self.has_labels = True
        self.class_names = FACE_CLASSES
        c = (np.arange(self.size, dtype=np.float64) + 0.5) / self.size
        self._y, self._x = np.meshgrid(c, c, indexing="ij")

    def __len__(self) -> int:
        return self.length

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, int(index), 22])

    def params(self, index: int) -> FaceParams:
        """Item ``index``'s random choices."""
        return draw_params(self._rng(index))

    def attributes(self, index: int) -> dict[str, int]:
        """Item ``index``'s attributes, {name: 0 or 1} in the order of :data:`FACE_ATTRIBUTES`."""
        return dict(self.params(self._check_index(int(index))).attributes)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = super().__getitem__(index)
        values = self.attributes(index)
        item["attributes"] = torch.tensor([float(values[k]) for k in FACE_ATTRIBUTES])
        return item

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return self.render(index)

    def render(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Item ``index`` as (uint8 image ``(H, W, 3)``, uint8 label ``(H, W)``), unflipped."""
        rng = self._rng(index)
        p = draw_params(rng)
        canvas = Canvas(self._x, self._y)
        face = FaceFrame(self._x, self._y, p)
        _background(canvas, p, rng)
        hair = _strands(face, p, rng)
        _hair(canvas, face, p, hair, behind=True)
        _head(canvas, face, p, rng)
        if p.attributes["beard"]:
            _beard(canvas, face, p, hair)
        _nose(canvas, face, p)
        _eyes(canvas, face, p)
        _brows(canvas, face, p, hair)
        _mouth(canvas, face, p)
        _hair(canvas, face, p, hair, behind=False)
        if p.attributes["glasses"]:
            _glasses(canvas, face, p)
        grain = 0.012 * grid_noise(rng, self._x[0], max(8, self.size // 2))
        image = np.clip((canvas.img + grain[..., None]) * 255 + 0.5, 0, 255).astype(np.uint8)
        return image, canvas.label


class FaceFrame:
    """The head's frame (module doc): ``u``, ``v`` the rotated offsets from the head's centre (image
    units), ``fx``, ``fy`` the face coordinates, ``r2`` = fx² + fy², ``shade`` the Lambertian
    shading, and :meth:`to_image` for placing features."""

    def __init__(self, x: np.ndarray, y: np.ndarray, p: FaceParams):
        self.centres = x[0]
        self.cx, self.cy, self.a, self.b, rot = p.head
        self.cos, self.sin = math.cos(rot), math.sin(rot)
        dx, dy = x - self.cx, y - self.cy
        self.u = dx * self.cos + dy * self.sin
        self.v = -dx * self.sin + dy * self.cos
        self.fy = self.v / self.b
        self.fx = self.u / (self.a * (1 - 0.18 * np.clip(self.fy, 0, None)))
        self.r2 = self.fx**2 + self.fy**2
        light = np.array(p.light) / np.linalg.norm(p.light)
        nz = np.sqrt(np.clip(1 - self.r2, 0, None))
        self.shade = 0.5 + 0.55 * np.clip(self.fx * light[0] + self.fy * light[1] + nz * light[2], 0, None)
        self.light = light

    def local(self, ux: float, vy: float) -> tuple[np.ndarray, np.ndarray]:
        """Offsets (image units, head-aligned) of every pixel from the head point (ux·a, vy·b)."""
        return self.u - ux * self.a, self.v - vy * self.b


def _background(c: Canvas, p: FaceParams, rng: np.random.Generator) -> None:
    kind, c0, c1, angle, period = p.background
    x, y = c.x, c.y
    t = np.clip((x - 0.5) * math.cos(angle) + (y - 0.5) * math.sin(angle) + 0.5, 0, 1)
    noise = grid_noise(rng, x[0], 5)
    if kind == 1:  # stripes
        t = 0.5 + 0.5 * np.tanh(3 * stripes(x, y, angle, period, 0.0))
    elif kind == 2:  # blobs
        t = 0.5 + 0.5 * np.tanh(2.5 * grid_noise(rng, x[0], 4))
    elif kind == 3:  # tiles
        cells = 1 / period
        t = ((np.floor(x * cells) + np.floor(y * cells)) % 2) * 0.7 + 0.15 * t
    field = c0 * (1 - t[..., None]) + c1 * t[..., None] + 0.05 * noise[..., None]
    vignette = 1 - 0.35 * ((x - 0.5) ** 2 + (y - 0.5) ** 2)
    c.paint(np.ones_like(x, dtype=bool), 0, field * vignette[..., None])


def _strands(f: FaceFrame, p: FaceParams, rng: np.random.Generator) -> np.ndarray:
    """Hair colour field (hair, brows, beard): strands radiating from the crown, noise, darker
    away from the light."""
    angle = np.arctan2(f.v + 1.2 * f.b, f.u)
    wobble = grid_noise(rng, f.centres, 6)
    lines = np.sin(angle * 60 + 2.5 * wobble)
    fine = grid_noise(rng, f.centres, 40)
    light = 0.75 + 0.35 * np.clip((f.u * f.light[0] + f.v * f.light[1]) / (1.4 * f.a) + 0.4, -0.6, 0.6)
    shade = light * (1 + 0.08 * lines + 0.08 * fine)
    return np.clip(p.hair[None, None] * shade[..., None] + 0.03 * lines[..., None], 0, 1)


def _hair(c: Canvas, f: FaceFrame, p: FaceParams, colour: np.ndarray, behind: bool) -> None:
    """Long hair behind the head (``behind``), else the hair on top: a cap over the head ellipse
    grown by 12 % (curly: 30 %, bumpy) above the hairline or the bangs' edge."""
    style = p.hair_style
    if behind:
        if style == "long":
            across = np.abs(f.u) / (f.a * 1.3)
            region = (across <= 1) & (f.fy >= -0.9) & (f.fy <= p.long_length - 0.35 * across**2)
            c.paint(region, 2, colour * 0.85)
        return
    if style == "bald":
        return
    grow = 1.3 if style == "curly" else 1.12
    theta = np.arctan2(f.fy, f.fx)
    bumps = 1 + (0.06 * np.sin(9 * theta) if style == "curly" else 0)
    hx, hy = f.u / (f.a * grow), (f.v + 0.06 * f.b) / (f.b * grow)
    cap = hx**2 + hy**2 <= bumps**2
    height, amp, waves = p.hairline
    if p.attributes["bangs"]:
        edge = p.eyes[1] - p.brows[0] - 0.14 + amp * np.sin(waves * 3 * f.fx)
    else:
        edge = height + 0.35 * f.fx**2 + amp * np.sin(waves * f.fx)
    sides = (f.r2 > 1) & (f.fy <= (0.45 if style == "long" else 0.0))
    c.paint(cap & ((f.fy <= edge) | sides), 2, colour)


def _head(c: Canvas, f: FaceFrame, p: FaceParams, rng: np.random.Generator) -> None:
    """Neck, ears and the face: skin tone × shading, cheek colour, skin noise."""
    noise = grid_noise(rng, c.x[0], 30)[..., None]
    skin = p.skin[None, None]
    neck = (np.abs(f.u) <= 0.55 * f.a) & (f.fy >= 0.5)
    c.paint(neck, 1, skin * (0.62 + 0.1 * np.clip(f.fy - 1, 0, 1))[..., None] + 0.02 * noise)
    for side in (-1, 1):
        eu, ev = f.local(side * 0.98, 0.0)
        ear = (eu / (0.16 * f.a)) ** 2 + (ev / (0.2 * f.b)) ** 2 <= 1
        c.paint(ear, 1, skin * 0.82 + 0.02 * noise)
    cheeks = sum(np.exp(-(((f.fx - s * 0.5) / 0.22) ** 2 + ((f.fy - 0.25) / 0.18) ** 2)) for s in (-1, 1))
    field = skin * f.shade[..., None] + np.array([0.06, -0.02, -0.02]) * cheeks[..., None] + 0.025 * noise
    c.paint(f.r2 <= 1, 1, np.clip(field, 0, 1))


def _beard(c: Canvas, f: FaceFrame, p: FaceParams, hair: np.ndarray) -> None:
    """Chin and jaw below a curve rising towards the ears, and a moustache above the mouth."""
    my, half_w, lip = p.mouth
    jaw = (f.r2 <= 1.08) & (f.fy >= 0.66 - 0.6 * f.fx**2) & (f.fy > 0.0)
    mu, mv = f.local(0.0, my)
    moustache = (np.abs(mu) <= (half_w + 0.05) * f.a) & (mv >= -2.6 * lip * f.a) & (mv <= 0)
    c.paint(jaw | moustache, 8, hair * 0.9)


def _nose(c: Canvas, f: FaceFrame, p: FaceParams) -> None:
    """A ridge widening from between the eyes to the tip, rounded wings, nostrils; shaded by side."""
    bottom, width = p.nose
    top = p.eyes[1] + 0.08
    t = np.clip((f.fy - top) / (bottom - top), 0, 1)
    half = (0.05 + width * 0.55 * t**2) * f.a
    ridge = (f.fy >= top) & (f.fy <= bottom) & (np.abs(f.u) <= half)
    wu, wv = f.local(0.0, bottom - 0.03)
    wings = (wu / (width * f.a)) ** 2 + (wv / (0.07 * f.b)) ** 2 <= 1
    region = ridge | wings
    side = np.clip(f.u / (width * f.a), -1, 1) * np.sign(f.light[0] or 1.0)
    shade = f.shade * (0.88 + 0.2 * side) - 0.12 * t
    colour = p.skin[None, None] * shade[..., None]
    for s in (-1, 1):
        nu, nv = f.local(s * width * 0.45, bottom - 0.015)
        nostril = (nu / (0.06 * f.a)) ** 2 + (nv / (0.03 * f.b)) ** 2 <= 1
        colour[nostril] *= 0.35
    c.paint(region, 5, np.clip(colour, 0, 1))


def _eyes(c: Canvas, f: FaceFrame, p: FaceParams) -> None:
    """Almond eyes: white, iris, pupil, a dark upper lid."""
    dx, ey, half_w, half_h, gaze = p.eyes
    for s in (-1, 1):
        eu, ev = f.local(s * dx, ey)
        t = eu / (half_w * f.a)
        lid = half_h * f.a * np.clip(1 - t**2, 0, None)
        almond = (np.abs(t) <= 1) & (np.abs(ev) <= lid)
        colour = np.zeros(c.img.shape)
        au, av, alid = eu[almond], ev[almond], lid[almond]
        r = np.sqrt((au - gaze * half_w * f.a) ** 2 + av**2)
        iris_r = 0.95 * half_h * f.a
        inside = np.where((r <= iris_r)[:, None], p.iris * 0.9, np.array([0.93, 0.91, 0.88]) * 0.95)
        inside[r <= 0.45 * iris_r] = 0.03
        inside[av <= -0.55 * alid] *= 0.25
        colour[almond] = inside
        c.paint(almond, 3, colour)


def _brows(c: Canvas, f: FaceFrame, p: FaceParams, hair: np.ndarray) -> None:
    """Arched bands above the eyes, thicker at the inner end, in a darkened hair colour."""
    dx, ey, half_w, _, _ = p.eyes
    gap, arch, thick = p.brows
    colour = hair * 0.7
    for s in (-1, 1):
        bu, bv = f.local(s * dx, ey - gap)
        t = bu / (1.2 * half_w * f.a)
        centre = -arch * f.b * (1 - t**2) + 0.02 * s * t * f.b
        band = (np.abs(t) <= 1) & (np.abs(bv - centre) <= 0.5 * thick * f.a * (1.2 - 0.4 * s * t))
        c.paint(band, 4, colour)


def _mouth(c: Canvas, f: FaceFrame, p: FaceParams) -> None:
    """Lips between two curves; smiling: corners up, deeper lower lip, teeth showing."""
    my, half_w, lip = p.mouth
    mu, mv = f.local(0.0, my)
    t = mu / (half_w * f.a)
    bulge = np.sqrt(np.clip(1 - t**2, 0, None)) * lip * f.a
    smiling = p.attributes["smiling"]
    lift = (0.9 if smiling else 0.1) * lip * f.a * t**2
    upper = -bulge * (0.7 if smiling else 1.0) - lift
    lower = bulge * (1.8 if smiling else 1.0) - lift
    region = (np.abs(t) <= 1) & (mv >= upper) & (mv <= lower)
    shade = f.shade * (1 + 0.25 * np.clip(mv / (lip * f.a), -1, 1))
    colour = p.lips[None, None] * shade[..., None]
    if smiling:
        inner = ((np.abs(t) <= 0.8) & (mv >= upper + 0.5 * lip * f.a * (1 - t**2))
                 & (mv <= lower - 0.55 * bulge))
        teeth = np.array([0.95, 0.93, 0.86]) * (1 - 0.5 * (np.abs(np.sin(t * 9)) < 0.12))[..., None]
        colour[inner] = teeth[inner]
        colour[inner & (mv > -lift + 0.35 * bulge)] = np.array([0.25, 0.05, 0.06])
    else:
        colour[np.abs(mv + lift) <= 0.12 * lip * f.a + 0.004] *= 0.4
    c.paint(region, 6, np.clip(colour, 0, 1))


def _glasses(c: Canvas, f: FaceFrame, p: FaceParams) -> None:
    """Round or square rims around the eyes, bridge and temples, alpha-blended (label wins); lenses
    tinted without a label."""
    dx, ey, half_w, _, _ = p.eyes
    grow, thick, alpha, tint, round_rims = p.glasses
    radius = grow * half_w * f.a
    frame = np.zeros_like(c.x, dtype=bool)
    lens = np.zeros_like(frame)
    for s in (-1, 1):
        gu, gv = f.local(s * dx, ey)
        d = np.sqrt(gu**2 + gv**2) if round_rims else np.maximum(np.abs(gu), 1.35 * np.abs(gv))
        frame |= np.abs(d - radius) <= 0.5 * thick * f.a
        lens |= d < radius
    bu, bv = f.local(0.0, ey)
    inner = dx * f.a - radius
    frame |= (np.abs(bu) <= inner) & (np.abs(bv + 0.02 * f.b) <= 0.4 * thick * f.a)
    outer = (np.abs(f.u) >= dx * f.a + radius) & (f.r2 <= 1.05) & (np.abs(bv) <= 0.4 * thick * f.a)
    frame |= outer
    c.blend(lens & ~frame, np.array([0.75, 0.85, 0.95]), tint)
    c.label[frame] = FACE_TRANSPARENT[0]
    c.blend(frame, p.frame, alpha)


def export_faces(out_dir: str | Path, n: int, size: int, seed: int = 0) -> Path:
    """Write ``n`` :class:`ProceduralFaces` items as ``out_dir/images/<i>.png``, ``labels/<i>.png``
    (mode L), ``classes.json`` (the names, glasses transparent) and ``attributes.csv`` (``name``
    then :data:`FACE_ATTRIBUTES`, one row per item: what ``ssgan direction --attributes`` reads)."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    ds = ProceduralFaces(size, n, seed)
    rows = []
    for i in range(n):
        image, label = ds.render(i)
        write_item(out, str(i), image, label)
        attrs = ds.attributes(i)
        rows.append([str(i)] + [str(attrs[k]) for k in FACE_ATTRIBUTES])
    classes = {"classes": list(FACE_CLASSES), "transparent": [FACE_CLASSES[t] for t in FACE_TRANSPARENT]}
    (out / "classes.json").write_text(json.dumps(classes, indent=1) + "\n")
    with (out / "attributes.csv").open("w", newline="") as f:
        csv.writer(f).writerows([["name", *FACE_ATTRIBUTES], *rows])
    return out

