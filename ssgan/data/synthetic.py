"""The built-in procedural dataset: :class:`SyntheticFaces`, "faces" of 5 or more classes drawn at
any resolution with no download (tests, CPU training), and :func:`export_synthetic`, which writes
them as image / label folders (``ssgan data synthetic``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ssgan.data.base import ItemDataset, write_item


def value_noise(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, cells: int) -> np.ndarray:
    """Smooth noise, roughly N(0, 1), defined on the unit square (so resolution independent):
    random values on a ``(cells+1)^2`` lattice, interpolated bicubically-smooth between them."""
    lattice = rng.standard_normal((cells + 1, cells + 1))
    gx, gy = x * cells, y * cells
    x0 = np.clip(np.floor(gx).astype(np.int64), 0, cells - 1)
    y0 = np.clip(np.floor(gy).astype(np.int64), 0, cells - 1)
    fx, fy = gx - x0, gy - y0
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    top = lattice[y0, x0] * (1 - fx) + lattice[y0, x0 + 1] * fx
    bottom = lattice[y0 + 1, x0] * (1 - fx) + lattice[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def stripes(x: np.ndarray, y: np.ndarray, angle: float, period: float, phase: float) -> np.ndarray:
    """A sine stripe pattern in [-1, 1] (period in image-width units)."""
    t = x * math.cos(angle) + y * math.sin(angle)
    return np.sin(2 * math.pi * t / period + phase)


class SyntheticFaces(ItemDataset):
    """Procedural "faces" for tests and CPU training: no download, any resolution.

    Item ``i`` is drawn from a NumPy generator seeded with ``(seed, i)`` only, so it is
    reproducible and independent of the global RNGs and of worker processes. Shapes are evaluated
    analytically at the pixel centres of a ``size x size`` grid over the unit square, so
    32 px and 256 px items show the same scene.

    Classes (``seg_dim`` = K >= 5; fewer raises ``ValueError``):

    * 0 background: a two-colour linear gradient plus smooth noise;
    * 1 face: a large rotated ellipse, skin tone with jitter, shading and a fine noise texture;
    * 2 eyes: two dark discs with a radial gradient;
    * 3 mouth: a horizontal ellipse, reddish, with horizontal stripes;
    * 4 glasses (present in ~60 % of items): two rings and a bridge whose colour is
      alpha-blended (alpha 0.45..0.75) over what lies below while its label wins: the
      partly transparent class (``tiny`` preset: ``transparent_dims=(4,)``);
    * 5 .. K-1 (when K > 5): extra striped shapes (rotated rectangles, triangles, discs, in turn:
      :data:`EXTRA_SHAPES`) at random places, each present in ~70 % of items, behind or in front
      of the face.

    ``class_names``: these classes' names (:data:`CLASS_NAMES`, then ``rectangle5``,
    ``triangle6``, ``disc7``, ``rectangle8`` …), which a run on this data stores in its checkpoints.
    ``hflip``: flip each item horizontally with probability 1/2 (torch RNG).
    """

    #: The names of classes 0 .. 4, as drawn by :meth:`render`.
    CLASS_NAMES: tuple[str, ...] = ("background", "face", "eyes", "mouth", "glasses")
    #: The shapes of the extra classes 5, 6, 7, 8 … in turn (see :meth:`_extra_shape`).
    EXTRA_SHAPES: tuple[str, ...] = ("rectangle", "triangle", "disc")
    MIN_CLASSES = len(CLASS_NAMES)

    def __init__(self, size: int, length: int, seed: int = 0, seg_dim: int = 5, hflip: bool = False):
        if seg_dim < self.MIN_CLASSES:
            raise ValueError(
                f"SyntheticFaces draws {self.MIN_CLASSES} classes ({', '.join(self.CLASS_NAMES)}) and "
                f"needs seg_dim >= {self.MIN_CLASSES}, got seg_dim={seg_dim}"
            )
        if seg_dim > 256:
            raise ValueError(f"seg_dim={seg_dim} is too large (labels are stored as uint8, at most 256)")
        if size < 1 or length < 1:
            raise ValueError(f"need size >= 1 and length >= 1, got size={size}, length={length}")
        self.size, self.length, self.seed, self.seg_dim = int(size), int(length), int(seed), int(seg_dim)
        self.hflip = bool(hflip)
        self.has_labels = True
        extra = range(self.MIN_CLASSES, self.seg_dim)
        self.class_names = self.CLASS_NAMES + tuple(f"{self._shape(k)}{k}" for k in extra)
        c = (np.arange(self.size, dtype=np.float64) + 0.5) / self.size
        self._y, self._x = np.meshgrid(c, c, indexing="ij")

    def __len__(self) -> int:
        return self.length

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return self.render(index)

    def render(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Item ``index`` as (uint8 image ``(H, W, 3)``, uint8 label ``(H, W)``), unflipped."""
        rng = np.random.default_rng([self.seed, int(index)])
        x, y = self._x, self._y
        u = rng.uniform
        img = np.empty((self.size, self.size, 3))
        label = np.zeros((self.size, self.size), dtype=np.uint8)

        def paint(region: np.ndarray, k: int, colour: np.ndarray) -> None:
            label[region] = k
            img[region] = colour[region]

        # 0: background gradient + smooth noise.
        c0, c1 = u(0.05, 0.95, 3), u(0.05, 0.95, 3)
        angle = u(0, 2 * math.pi)
        t = np.clip((x - 0.5) * math.cos(angle) + (y - 0.5) * math.sin(angle) + 0.5, 0, 1)[..., None]
        img[:] = c0 * (1 - t) + c1 * t + 0.06 * value_noise(rng, x, y, 6)[..., None]

        # Extra classes 5..K-1: parameters now, painted behind or in front of the face.
        extras = [self._extra_shape(rng, k) for k in range(self.MIN_CLASSES, self.seg_dim)]
        for region, k, colour, behind in extras:
            if region is not None and behind:
                paint(region, k, colour)

        # 1: face ellipse in a rotated frame (fx, fy: face-local coordinates in units of a, b).
        cx, cy = 0.5 + u(-0.1, 0.1), 0.52 + u(-0.08, 0.08)
        a, b, rot = u(0.24, 0.32), u(0.30, 0.38), u(-0.35, 0.35)
        cos, sin = math.cos(rot), math.sin(rot)
        fx = ((x - cx) * cos + (y - cy) * sin) / a
        fy = (-(x - cx) * sin + (y - cy) * cos) / b
        r2 = fx * fx + fy * fy
        tones = np.array([[0.96, 0.80, 0.69], [0.87, 0.67, 0.52], [0.70, 0.50, 0.36], [0.45, 0.31, 0.22]])
        skin = tones[rng.integers(len(tones))] + u(-0.06, 0.06, 3)
        skin_col = skin * (1.08 - 0.3 * r2)[..., None] + 0.04 * value_noise(rng, x, y, 24)[..., None]
        paint(r2 <= 1, 1, skin_col)

        def to_image(lx: float, ly: float) -> tuple[float, float]:
            """Face-local (units of a, b) -> image coordinates."""
            return cx + lx * a * cos - ly * b * sin, cy + lx * a * sin + ly * b * cos

        # 2: eyes.
        eye_y, eye_dx, eye_r = u(-0.28, -0.12), u(0.32, 0.45), u(0.045, 0.065)
        eye_col = u(0.02, 0.3, 3)
        eyes = [to_image(s * eye_dx, eye_y) for s in (-1, 1)]
        for ex, ey in eyes:
            d = np.sqrt((x - ex) ** 2 + (y - ey) ** 2)
            paint(d <= eye_r, 2, eye_col * (0.5 + 0.7 * d / eye_r)[..., None])

        # 3: mouth, a horizontal ellipse (in the face frame) with horizontal stripes.
        mx, my = to_image(u(-0.08, 0.08), u(0.35, 0.55))
        mw, mh = u(0.3, 0.5) * a, u(0.035, 0.06)
        mu = ((x - mx) * cos + (y - my) * sin) / mw
        mv = (-(x - mx) * sin + (y - my) * cos) / mh
        mouth_col = np.array([u(0.55, 0.9), u(0.08, 0.3), u(0.12, 0.35)])
        lines = stripes(x, y, rot + math.pi / 2, u(0.025, 0.045), u(0, 2 * math.pi))
        paint(mu * mu + mv * mv <= 1, 3, mouth_col * (1 + 0.18 * lines)[..., None])

        for region, k, colour, behind in extras:
            if region is not None and not behind:
                paint(region, k, colour)

        # 4: glasses: rings around the eyes and a bridge, alpha-blended, label wins.
        if u() < 0.6:
            ring_r, thick = eye_r * u(1.7, 2.3), u(0.03, 0.045)
            alpha = u(0.45, 0.75)
            frame = np.zeros_like(x, dtype=bool)
            for ex, ey in eyes:
                ex, ey = ex + u(-0.01, 0.01), ey + u(-0.01, 0.01)
                d = np.sqrt((x - ex) ** 2 + (y - ey) ** 2)
                frame |= np.abs(d - ring_r) <= thick / 2
            # bridge: a bar between the rings along the eye line
            (lx, ly), (rx, ry) = eyes
            ux, uy = (rx - lx), (ry - ly)
            length = math.hypot(ux, uy)
            ux, uy = ux / length, uy / length
            along = (x - lx) * ux + (y - ly) * uy
            across = -(x - lx) * uy + (y - ly) * ux
            frame |= (np.abs(across) <= thick / 2) & (along >= ring_r) & (along <= length - ring_r)
            glass_col = u(0.0, 1.0, 3) * (1 + 0.15 * stripes(x, y, u(0, math.pi), 0.04, 0.0))[..., None]
            label[frame] = 4
            img[frame] = alpha * glass_col[frame] + (1 - alpha) * img[frame]

        image = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
        return image, label

    def _shape(self, k: int) -> str:
        """The shape of extra class ``k`` >= 5."""
        return self.EXTRA_SHAPES[(k - self.MIN_CLASSES) % len(self.EXTRA_SHAPES)]

    def _extra_shape(self, rng: np.random.Generator, k: int):
        """(region | None, k, colour field, behind_face) for extra class ``k`` (always draws the
        same random numbers so that items stay reproducible whatever is present)."""
        x, y = self._x, self._y
        present = rng.uniform() < 0.7
        behind = rng.uniform() < 0.4
        cx, cy = rng.uniform(0.1, 0.9, 2)
        s, rot = rng.uniform(0.07, 0.16), rng.uniform(0, math.pi)
        colour = rng.uniform(0.0, 1.0, 3)
        st = stripes(x, y, rng.uniform(0, math.pi), rng.uniform(0.02, 0.05), rng.uniform(0, 2 * math.pi))
        field = np.clip(colour * (1 + 0.2 * st)[..., None], 0, 1)
        if not present:
            return None, k, field, behind
        lx = (x - cx) * math.cos(rot) + (y - cy) * math.sin(rot)
        ly = -(x - cx) * math.sin(rot) + (y - cy) * math.cos(rot)
        shape = self._shape(k)
        if shape == "rectangle":  # rotated
            region = (np.abs(lx) <= s) & (np.abs(ly) <= 0.6 * s)
        elif shape == "triangle":  # apex up in its own frame
            region = (ly <= 0.6 * s) & (ly >= -s + 1.6 * np.abs(lx))
        else:  # disc
            region = lx * lx + ly * ly <= s * s
        return region, k, field, behind


def export_synthetic(out_dir: str | Path, n: int, size: int, seed: int = 0, seg_dim: int = 5) -> Path:
    """Write ``n`` :class:`SyntheticFaces` items as ``out_dir/images/<i>.png`` and
    ``out_dir/labels/<i>.png`` (mode L), a folder that :func:`ssgan.data.open_dataset` reads back."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    ds = SyntheticFaces(size, n, seed, seg_dim)
    for i in range(n):
        image, label = ds.render(i)
        write_item(out, str(i), image, label)
    return out
