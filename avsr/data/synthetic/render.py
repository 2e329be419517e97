"""Vectorised rendering of mouth-region frames from articulation parameters.

Every frame is drawn from implicit curves in a mouth-centred coordinate system: the upper and
lower lips are the bands between an inner aperture (an ellipse whose height is the ``open``
parameter) and outer contours (with a cupid's bow on top); inside the aperture lie a dark
cavity, upper and lower teeth bands and a tongue blob. The head moves (translation, rotation,
scale random walks), the light drifts (gain, contrast, direction) and the sensor adds noise.

Only the articulation parameters carry information about speech; everything else (appearance,
jitter, lighting, noise) is either fixed per speaker or drawn independently of the speech.
Equal parameters, appearance and motion give equal frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .speakers import Appearance

__all__ = ["Motion", "sample_motion", "still_motion", "render_frames", "SIZE"]

SIZE = 96


@dataclass(frozen=True)
class Motion:
    """Per-frame nuisance: head pose and lighting, each of shape (T,)."""

    dx: np.ndarray        # horizontal shift (px)
    dy: np.ndarray        # vertical shift (px)
    angle: np.ndarray     # in-plane rotation (radians)
    scale: np.ndarray     # relative scale (1 = none)
    gain: np.ndarray      # brightness multiplier
    contrast: np.ndarray  # contrast multiplier around mid-grey
    light: np.ndarray     # extra directional-light strength


def _ar1(rng: np.random.Generator, n: int, sigma: float, phi: float, limit: float) -> np.ndarray:
    """A mean-reverting random walk (AR(1)) clipped to +-limit, started in its stationary law."""
    noise = rng.normal(0.0, sigma, n).astype(np.float32)
    out = np.empty(n, np.float32)
    x = rng.normal(0.0, sigma / np.sqrt(1 - phi * phi))
    for i in range(n):
        x = phi * x + noise[i]
        out[i] = x
    return np.clip(out, -limit, limit)


def sample_motion(rng: np.random.Generator, num_frames: int) -> Motion:
    """Head jitter and lighting drift for one clip, independent of the speech."""
    n = num_frames
    return Motion(
        dx=_ar1(rng, n, 0.35, 0.93, 4.0), dy=_ar1(rng, n, 0.3, 0.93, 3.0),
        angle=_ar1(rng, n, 0.006, 0.95, 0.07), scale=1.0 + _ar1(rng, n, 0.005, 0.95, 0.05),
        gain=1.0 + _ar1(rng, n, 0.01, 0.97, 0.15), contrast=1.0 + _ar1(rng, n, 0.01, 0.97, 0.15),
        light=_ar1(rng, n, 0.01, 0.97, 0.12),
    )


def still_motion(num_frames: int) -> Motion:
    """No head motion and constant light (for tests and inspection)."""
    z = np.zeros(num_frames, np.float32)
    return Motion(z, z, z, z + 1, z + 1, z + 1, z)


_NOISE_BANK: np.ndarray | None = None


def _noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Unit Gaussian sensor noise: a random window into a fixed bank (drawing millions of
    normals per clip would cost more than drawing the clip)."""
    global _NOISE_BANK
    if _NOISE_BANK is None:
        _NOISE_BANK = np.random.default_rng(0x401CE).standard_normal(1 << 22, dtype=np.float32)
    n = int(np.prod(shape))
    if n >= _NOISE_BANK.size:
        return rng.standard_normal(shape, dtype=np.float32)
    start = int(rng.integers(0, _NOISE_BANK.size - n))
    return _NOISE_BANK[start:start + n].reshape(shape)


def _ramp(x: np.ndarray) -> np.ndarray:
    """Anti-aliased step: 0 below -0.5 px, 1 above +0.5 px (x in pixels)."""
    return np.clip(x + 0.5, 0.0, 1.0)


def render_frames(
    params: np.ndarray,
    appearance: Appearance,
    motion: Motion,
    noise_rng: np.random.Generator | None = None,
    size: int = SIZE,
    block: int = 2,
) -> np.ndarray:
    """Draw mouth-region frames.

    Args:
        params: (T, 5) articulation parameters (open, width, round, teeth, tongue) in [0, 1].
        appearance: the speaker's look.
        motion: per-frame head pose and lighting, each (T,).
        noise_rng: generator for sensor noise; ``None`` renders without noise.
        size: output height and width.
        block: frames drawn at once. Small blocks keep the temporaries in cache and below
            malloc's mmap threshold (whole-clip temporaries cost more in page faults than in
            arithmetic); the result does not depend on it.

    Returns:
        (T, size, size, 3) uint8 RGB frames.
    """
    params = np.asarray(params, np.float32)
    if params.ndim != 2 or params.shape[1] != 5:
        raise ValueError(f"params must be (T, 5), got {params.shape}")
    T = params.shape[0]
    for name, value in vars(motion).items():
        if np.shape(value) != (T,):
            raise ValueError(f"motion.{name} must be ({T},), got {np.shape(value)}")
    noise = None
    if noise_rng is not None and appearance.noise > 0:
        noise = _noise(noise_rng, (T, size, size))
    out = np.empty((T, size, size, 3), np.uint8)
    # Buffers for the composite, reused by every block (allocated once per clip).
    buf = np.empty((3, block, size, size), np.float32), np.empty((block, size, size), np.float32)
    for a in range(0, T, block):
        b = min(a + block, T)
        part = Motion(**{k: np.asarray(v, np.float32)[a:b] for k, v in vars(motion).items()})
        img = _render_block(params[a:b], appearance, part,
                            None if noise is None else noise[a:b], size, buf)
        out[a:b] = img.transpose(1, 2, 3, 0)
    return out


def _render_block(params: np.ndarray, ap: Appearance, motion: Motion, noise: np.ndarray | None,
                  size: int, buf: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Render (T, 5) parameters to (3, T, size, size) uint8, channels first, using ``buf``
    (a (3, >=T, size, size) and a (>=T, size, size) float32 buffer); see
    :func:`render_frames`."""
    T = params.shape[0]
    col = lambda v: np.asarray(v, np.float32)  # noqa: E731

    def per_frame(v: np.ndarray) -> np.ndarray:
        return np.asarray(v, np.float32).reshape(T, 1, 1)

    op, wd, rd, th, tg = (per_frame(params[:, i]) for i in range(5))
    # Local mouth coordinates of every pixel for every frame (rotation/scale/shift of the head).
    grid = np.arange(size, dtype=np.float32)
    X, Y = grid[None, None, :], grid[None, :, None]
    cx = per_frame(ap.center[0] + motion.dx)
    cy = per_frame(ap.center[1] + motion.dy)
    ca, sa = per_frame(np.cos(motion.angle)), per_frame(np.sin(motion.angle))
    s = per_frame(ap.scale * motion.scale)
    Xc, Yc = X - cx, Y - cy
    xl = (ca * Xc + sa * Yc) / s
    yl = (ca * Yc - sa * Xc) / s
    px = s  # one local unit = s pixels: anti-aliasing works in pixels

    # Shape of the mouth for this frame's articulation.
    half_w = ap.half_width * (0.82 + 0.36 * wd - 0.24 * rd)
    height = 2.0 * ap.max_open * op
    inner_w = half_w * (0.9 - 0.42 * rd)
    thin = 1.0 - 0.25 * (wd - 0.5)  # stretched lips look thinner
    t_up = ap.upper_lip * (1.0 + 0.45 * rd) * thin
    t_lo = ap.lower_lip * (1.0 + 0.35 * rd) * thin
    u = xl / half_w
    au = np.abs(u)
    env = np.sqrt(np.clip(1.0 - u * u, 0.0, 1.0))
    ui = xl / inner_w
    env_i = np.sqrt(np.clip(1.0 - ui * ui, 0.0, 1.0))
    yc = yl + ap.smile * u * u  # the mouth line curves up (or down) towards the corners
    # The jaw drops the lower lip more than the upper lip rises.
    in_top = -0.4 * height * env_i
    in_bot = 0.6 * height * env_i
    bow = (1.0 + 0.25 * np.exp(-(((au - 0.28) / 0.16) ** 2))
           - ap.bow * 0.45 * np.exp(-((u / 0.1) ** 2)))
    # Outer contours follow the full-width ellipse, so rounded lips bulge smoothly outwards
    # around a narrower aperture instead of hugging it.
    sq_env = np.sqrt(env)  # env ** 0.5 and ** 0.75 round the lip ends (cheaper than pow)
    out_top = -0.4 * height * env - t_up * sq_env * bow
    out_bot = 0.6 * height * env + t_lo * sq_env * np.sqrt(sq_env)
    corner = _ramp((1.0 - au) * half_w * px)
    lips = _ramp((yc - out_top) * px) * _ramp((out_bot - yc) * px) * corner
    cav = (_ramp((yc - in_top) * px) * _ramp((in_bot - yc) * px)
           * _ramp((1.0 - np.abs(ui)) * inner_w * px))

    # Skin with fixed directional shading plus the drifting light, a crease under the lower
    # lip (it moves with the jaw) and optional stubble.
    la = ap.light_angle
    light = (ap.shade + per_frame(motion.light)) / 48.0
    shade = 1.0 + light * (math.cos(la) * xl + math.sin(la) * yl)
    shade -= 0.13 * np.exp(-(((yc - out_bot - 6.0) / 3.0) ** 2)) * np.exp(-((u / 1.1) ** 2))
    shade += 0.06 * np.exp(-(((yc - out_top + 4.0) / 3.0) ** 2)) * np.exp(-((u / 0.25) ** 2))
    if ap.stubble > 0:
        h = np.sin(np.floor(xl * 0.9) * 12.9898 + np.floor(yl * 0.9) * 78.233) * 43758.547
        dots = ((h - np.floor(h)) < ap.stubble * 0.3).astype(np.float32)
        far = np.clip((np.abs(yc) - 0.5 * (out_bot - out_top) - 2.0) / 3.0, 0.0, 1.0)
        shade -= 0.22 * dots * far

    # Mouth interior: cavity darker towards the corners, tongue, teeth in front of both.
    depth = 0.6 + 0.4 * env_i
    tongue = np.clip(1.0 - ((xl / (inner_w * 0.62)) ** 2
                            + ((yc - in_bot + 0.28 * height) / (0.3 * height + 1.5)) ** 2), 0, 1)
    a_tongue = np.minimum(tongue * 4.0, 1.0) * tg
    teeth_h = th * np.minimum(0.45 * height, 6.0) + 0.5
    upper_t = _ramp((in_top + teeth_h - yc) * px) * np.minimum(th * 1.5, 1.0)
    lower_t = _ramp((yc - in_bot + 0.5 * teeth_h) * px) * np.minimum(th, 1.0) * 0.7
    a_teeth = np.maximum(upper_t, lower_t)
    period = xl * np.float32(0.9 / (2 * np.pi))
    gaps = 1.0 - np.float32(0.12) * ((period - np.floor(period)) < 0.064)  # lines between teeth
    # Lips: highlight on the lower lip, slightly darker upper lip.
    lip_shade = (1.0 + 0.14 * np.exp(-(((yc - in_bot - 0.45 * t_lo) / (0.3 * t_lo)) ** 2)) * env
                 - np.float32(0.06) * (yc < 0))

    # Composite as a weighted sum of flat colours (skin, lip, cavity, tongue, teeth): one
    # small matrix product instead of per-layer RGB blends, which dominate the cost otherwise.
    not_cav = 1.0 - cav
    not_teeth = 1.0 - a_teeth
    layers = (
        shade * (1.0 - lips) * not_cav,
        lip_shade * lips * not_cav,
        cav * depth * (1.0 - a_tongue) * not_teeth,
        cav * a_tongue * not_teeth,
        cav * gaps * a_teeth,
    )
    colors = np.stack([col(ap.skin), col(ap.lip), col(ap.cavity), col(ap.tongue), col(ap.teeth)])
    img, tmp = buf[0][:, :T], buf[1][:T]  # channels first: contiguous per channel
    for ch in range(3):
        np.multiply(layers[0], colors[0, ch], out=img[ch])
        for k in range(1, len(layers)):
            img[ch] += np.multiply(layers[k], colors[k, ch], out=tmp)

    # Camera: contrast and gain drift (an affine map per frame), then sensor noise.
    c = np.asarray(motion.contrast, np.float32).reshape(1, T, 1, 1)
    g = np.asarray(motion.gain, np.float32).reshape(1, T, 1, 1)
    img *= c * g
    img += 128.0 * (1.0 - c) * g + 0.5
    if noise is not None:
        img += noise * np.float32(ap.noise)
    np.clip(img, 0, 255, out=img)
    return img.astype(np.uint8)
