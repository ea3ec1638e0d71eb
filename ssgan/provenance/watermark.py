"""An invisible watermark in the pixels: a 32-bit payload (:data:`TAG` and a 16-bit key id) that
survives JPEG, resizing to half and back, cropping, brightness changes and noise.

Design (numpy only; measured against the libraries in docs/provenance.md):

* **Payload → code bits.** ``m`` = TAG (16 bits) ‖ key id (16 bits) ‖ CRC-8(TAG ‖ key) → 40 bits,
  then a rate-1/2 convolutional code of constraint length 7 (generators 171, 133 octal, the
  NASA/802.11 code, 6 zero tail bits): :data:`CODE_BITS` = 2·(40 + 6) = 92 code bits, decoded by
  soft-decision Viterbi. The CRC and the tag are the check: a random image passes both with
  probability 2⁻²⁴.
* **Where the bits go.** A tile of :data:`PERIOD` × :data:`PERIOD` pixels is cut into
  :data:`CELL` × :data:`CELL` cells (16 × 16 = 256 cells). :data:`PILOT_CELLS` of them (chosen by a
  fixed seed) carry a known ±1 pilot; the others carry the code bits, each bit in
  ⌊192/92⌋ ≥ 2 cells scattered over the tile by the same seed, times a fixed ±1 scramble. A cell
  of sign s adds ``s·AMPLITUDE`` to R, G and B alike (luma only, so JPEG's chroma subsampling does
  not touch it). The tile repeats over the whole image. Cells of 4 px put the energy below a
  quarter of the sampling rate, which a resize to half and back keeps; JPEG quality 75 quantises
  those low DCT frequencies lightly.
* **Reading.** Luma, minus its 9 × 9 local mean (the picture's own content is mostly lower in
  frequency), divided by √(local mean of its square + :data:`FLOOR`²) (so edges and texture do not
  drown the flat regions' evidence), folded modulo the period: every
  tile adds into one P × P sum. A crop only shifts the fold cyclically: the shift is the argmax of
  the fold's circular cross-correlation with the pilot (one FFT, all P² shifts). Cell sums at that
  shift, unscrambled and summed per code bit, are the soft values Viterbi decodes.

``confidence`` is the pilot's agreement at the chosen shift, Σ pᵢvᵢ / Σ |vᵢ| ∈ [−1, 1] over the
pilot cells' sums vᵢ and signs pᵢ (1: every pilot cell agrees; unmarked pictures score about
0.4–0.6, the best of P² shifts being picked); a payload counts only when the CRC and the tag check
out. Images smaller than :data:`MIN_SIZE` on a side are not marked (too few tiles).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TAG = 0x5347  #: the ssgan tag, the payload's first 16 bits ("SG")
KEY_BITS = 16
PERIOD = 64
CELL = 4
PILOT_CELLS = 64
AMPLITUDE = 3.0  #: luma change per pixel (of 255): PSNR = 20·log10(255/3) ≈ 38.6 dB
FLOOR = 10.0
MIN_SIZE = 128
_G = (0o171, 0o133)
_K = 7
_SEED = 0x55A7
_LUMA = np.array([0.299, 0.587, 0.114])


@dataclass(frozen=True)
class Detection:
    """What :func:`extract` found: ``payload_ok`` (the CRC and the tag check), the key id when
    so, the pilot agreement ``confidence`` in [−1, 1], and the 32 decoded payload bits."""

    payload_ok: bool
    key_id: int | None
    confidence: float
    bits: tuple[int, ...] = ()


def _crc8(bits: np.ndarray) -> np.ndarray:
    """CRC-8 (polynomial x⁸+x²+x+1, initial 0) of a bit array, as 8 bits, most significant first."""
    reg = 0
    for b in bits:
        reg ^= int(b) << 7
        reg = ((reg << 1) ^ 0x07) & 0xFF if reg & 0x80 else (reg << 1) & 0xFF
    return np.array([(reg >> (7 - i)) & 1 for i in range(8)], np.int8)


def _to_bits(value: int, n: int) -> np.ndarray:
    return np.array([(value >> (n - 1 - i)) & 1 for i in range(n)], np.int8)


def payload_bits(key_id: int) -> np.ndarray:
    """The 32 payload bits: TAG then ``key_id`` (0 … 65535)."""
    if not 0 <= key_id < 1 << KEY_BITS:
        raise ValueError(f"watermark key id {key_id} is out of range; use 0..{(1 << KEY_BITS) - 1}")
    return np.concatenate([_to_bits(TAG, 16), _to_bits(key_id, KEY_BITS)])


def _parity(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    for s in (4, 2, 1):
        x ^= x >> s
    return x & 1


def _encode(bits: np.ndarray) -> np.ndarray:
    """Convolutional code: each input bit b shifts into a 7-bit register r = (state << 1) | b and
    emits parity(r & g) for g in :data:`_G`; 6 zero tail bits end in state 0."""
    state, out = 0, []
    for b in np.concatenate([bits, np.zeros(_K - 1, np.int8)]):
        reg = np.array((state << 1) | int(b))
        out += [int(_parity(reg & g)) for g in _G]
        state = int(reg) & ((1 << (_K - 1)) - 1)
    return np.array(out, np.int8)


def _viterbi(soft: np.ndarray, n_bits: int) -> np.ndarray:
    """Soft-decision Viterbi for :func:`_encode`: ``soft`` (2·(n_bits+6),) positive ↔ code bit 1;
    maximises Σ soft·(2c − 1) over paths ending in state 0."""
    n_states = 1 << (_K - 1)
    ns = np.arange(n_states)
    b = ns & 1
    prev = np.stack([ns >> 1, (ns >> 1) | (n_states >> 1)])  # the two predecessors of each state
    regs = (prev << 1) | b
    sym = np.stack([2 * _parity(regs & g) - 1 for g in _G], -1)  # (2, n_states, 2) in ±1
    metric = np.full(n_states, -np.inf)
    metric[0] = 0.0
    choices = []
    for t in range(len(soft) // 2):
        cand = metric[prev] + sym @ soft[2 * t: 2 * t + 2]
        pick = np.argmax(cand, 0)
        choices.append(pick)
        metric = cand[pick, ns]
    state, out = 0, []
    for pick in reversed(choices):
        out.append(state & 1)
        state = int(prev[pick[state], state])
    return np.array(out[::-1][:n_bits], np.int8)


def _layout() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(pilot cell indices, their signs, data cell → code bit index, data cell scramble signs)."""
    rng = np.random.default_rng(_SEED)
    n_cells = (PERIOD // CELL) ** 2
    order = rng.permutation(n_cells)
    pilot, data = order[:PILOT_CELLS], order[PILOT_CELLS:]
    pilot_sign = rng.choice([-1.0, 1.0], PILOT_CELLS)
    scramble = rng.choice([-1.0, 1.0], len(data))
    bit_of = np.arange(len(data)) % CODE_BITS
    return pilot, pilot_sign, np.stack([data, bit_of]), scramble


CODE_BITS = 2 * (16 + KEY_BITS + 8 + _K - 1)
_PILOT, _PILOT_SIGN, _DATA, _SCRAMBLE = _layout()


def _cells_to_tile(cells: np.ndarray) -> np.ndarray:
    """(256,) cell values → (PERIOD, PERIOD) pixels, each cell a CELL × CELL block."""
    side = PERIOD // CELL
    return np.kron(cells.reshape(side, side), np.ones((CELL, CELL)))


def tile_pattern(key_id: int) -> np.ndarray:
    """The ±1 (PERIOD, PERIOD) tile that carries ``key_id``: pilot cells and the code bits."""
    bits = payload_bits(key_id)
    code = _encode(np.concatenate([bits, _crc8(bits)]))
    cells = np.zeros((PERIOD // CELL) ** 2)
    cells[_PILOT] = _PILOT_SIGN
    cells[_DATA[0]] = (2.0 * code[_DATA[1]] - 1) * _SCRAMBLE
    return _cells_to_tile(cells)


def embed(rgb: np.ndarray, key_id: int) -> np.ndarray:
    """``rgb`` (H, W, 3) uint8 with the watermark added (a copy); images under :data:`MIN_SIZE`
    on a side come back unchanged. Values within :data:`AMPLITUDE` of 0 or 255 are first moved
    inside [A, 255 − A], so that saturated regions (white backgrounds, legends) carry both signs
    instead of losing half the pattern to clipping."""
    h, w = rgb.shape[:2]
    if min(h, w) < MIN_SIZE:
        return rgb.copy()
    tile = tile_pattern(key_id)
    delta = np.tile(tile, (-(-h // PERIOD), -(-w // PERIOD)))[:h, :w] * AMPLITUDE
    base = np.clip(rgb.astype(np.float64), AMPLITUDE, 255 - AMPLITUDE)  # room for both signs
    return np.rint(base + delta[..., None]).astype(np.uint8)


def _box_mean(x: np.ndarray, k: int) -> np.ndarray:
    """k × k local mean (edge-replicated), by cumulative sums."""
    r = k // 2
    p = np.pad(x, r + 1, mode="edge")
    c = p.cumsum(0).cumsum(1)
    s = c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]
    return s[: x.shape[0], : x.shape[1]] / (k * k)


def _fold(rgb: np.ndarray) -> np.ndarray:
    """The normalised high-pass luma summed modulo :data:`PERIOD` in both axes."""
    y = rgb[..., :3].astype(np.float64) @ _LUMA
    r = y - _box_mean(y, 9)
    r = r / np.sqrt(_box_mean(r * r, 9) + FLOOR**2)
    h, w = r.shape
    r = np.pad(r, ((0, -h % PERIOD), (0, -w % PERIOD)))
    return r.reshape(r.shape[0] // PERIOD, PERIOD, r.shape[1] // PERIOD, PERIOD).sum((0, 2))


def _pilot_tile() -> np.ndarray:
    cells = np.zeros((PERIOD // CELL) ** 2)
    cells[_PILOT] = _PILOT_SIGN
    return _cells_to_tile(cells)


_PILOT_FFT = np.conj(np.fft.fft2(_pilot_tile()))


def extract(rgb: np.ndarray) -> Detection:
    """Read the watermark of an (H, W, 3) uint8 image (any size ≥ one tile; cropped or not)."""
    if min(rgb.shape[:2]) < PERIOD:
        return Detection(False, None, 0.0)
    fold = _fold(rgb)
    corr = np.fft.ifft2(np.fft.fft2(fold) * _PILOT_FFT).real
    sy, sx = np.unravel_index(int(np.argmax(corr)), corr.shape)
    aligned = np.roll(fold, (-sy, -sx), (0, 1))
    side = PERIOD // CELL
    cells = aligned.reshape(side, CELL, side, CELL).sum((1, 3)).reshape(-1)
    pilot = cells[_PILOT] * _PILOT_SIGN
    confidence = float(pilot.sum() / (np.abs(pilot).sum() + 1e-12))
    soft = np.zeros(CODE_BITS)
    np.add.at(soft, _DATA[1], cells[_DATA[0]] * _SCRAMBLE)
    soft /= np.sqrt(np.mean(soft**2)) + 1e-12
    decoded = _viterbi(soft, 40)
    payload, crc = decoded[:32], decoded[32:]
    tag = int("".join(map(str, payload[:16])), 2)
    ok = bool(np.array_equal(crc, _crc8(payload)) and tag == TAG)
    key = int("".join(map(str, payload[16:])), 2) if ok else None
    return Detection(ok, key, confidence, tuple(int(b) for b in payload))
