"""Physiology for any jaxnn model: measure its units the way V1 neurons are measured.

Stimuli are luminance images L(y, x) in [0, 1] (MNIST's scale: 0 black, 1 white), handed to
the model as (L - mean) / std, float32 (N, H, W, 1). Coordinates: x = column - (W-1)/2 to the
right, y = (H-1)/2 - row upwards; an orientation θ (degrees) is that of the bars, counter-
clockwise from horizontal, so a grating varies along u = -x·sin θ + y·cos θ:

    grating   L = ½ (1 + c · cos(2π f u + φ))          f cycles/pixel, contrast c, phase φ
    drift     φ_t = 2π t / T, t = 0..T-1                one cycle of the drift in T frames
    bar       L = 1 within |u - offset| < width/2 (and |v| < length/2 along the bar), else 0

A unit is (layer name as `jaxnn.intermediates` gives it, e.g. "serial[2] MaxPool", channel,
y, x), the position defaulting to the centre of the layer's map. From the response r_t over a
drift cycle (baseline b: the response to the blank screen at mean luminance, L = ½):

    F0 = (1/T) Σ_t r_t                 F1 = (2/T) |Σ_t r_t e^{-2πi t/T}|
    modulation ratio  F1 / (F0 - b)    (Skottun et al. 1991: simple cells > 1, complex < 1;
                                        a half-wave rectified sinusoid gives π/2)
    tuning response   R = max(F0 - b, 0) + F1   (the stimulus-driven rise of the mean plus the
                                        modulation: F1 for a linear unit, F0 for an energy unit)
    OSI = |Σ_θ R(θ) e^{2iθ}| / Σ_θ R(θ)   (1 - circular variance; Ringach et al. 2002), in [0, 1]

Receptive fields of a unit of a stack of local layers (convolutions, pools, elementwise):
theoretical, r_l = r_{l-1} + (k_l - 1)·j_{l-1}, j_l = j_{l-1}·s_l, start_l = start_{l-1} -
p_l·j_{l-1} (r_0 = j_0 = 1, start_0 = 0; k kernel, s stride, p low padding, read off each
layer's behaviour by `probe_geometry`); effective (Luo et al. 2016), the gradient ∂r/∂x of the
unit's response with respect to the input pixels, its size the side of the smallest square
centred on the theoretical field that holds a fraction (0.95) of Σ|∂r/∂x|.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn.backprop import intermediates
from jaxnn.combinators import serial, split_state
from jaxnn.core import Layer, LayerError, make_layer
from jaxnn.layers import Conv2D, ConvParams, Relu

__all__ = ["GratingSet", "Geometry", "ReceptiveField", "Tuning", "analyse", "bars",
           "drifting_gratings", "effective_receptive_field", "effective_size", "fourier",
           "grating", "layer_output", "measure", "modulation_ratio", "orientation_index",
           "gabor", "probe_geometry", "reference_cells", "theoretical_receptive_fields", "to_input",
           "unit_responses"]


# ----------------------------------------------------------------------------- stimuli
def _coords(size: tuple[int, int], orientation):
    """(u, v) (..., H, W): across and along bars of orientation θ (degrees, broadcast)."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    y, x = (h - 1) / 2 - yy, xx - (w - 1) / 2
    t = np.deg2rad(np.asarray(orientation, np.float64))[..., None, None]
    return -x * np.sin(t) + y * np.cos(t), x * np.cos(t) + y * np.sin(t)


def grating(size, orientation, frequency, phase=0.0, contrast=1.0) -> np.ndarray:
    """Luminance ½(1 + c cos(2π f u + φ)), (..., H, W) float64; arguments broadcast together."""
    u, _ = _coords(size, orientation)
    f, p, c = (np.asarray(a, np.float64)[..., None, None] for a in (frequency, phase, contrast))
    return 0.5 * (1.0 + c * np.cos(2 * np.pi * f * u + p))


def bars(size, orientation, offset=0.0, width=2.0, length=None) -> np.ndarray:
    """Luminance 1 on a bar (|u - offset| < width/2, |v| < length/2; length None: the whole
    image), 0 elsewhere, edges anti-aliased over one pixel; (..., H, W), arguments broadcast."""
    u, v = _coords(size, orientation)
    inside = np.clip(width / 2 + 0.5 - np.abs(u - np.asarray(offset, np.float64)[..., None, None]), 0, 1)
    if length is not None:
        inside = inside * np.clip(length / 2 + 0.5 - np.abs(v), 0, 1)
    return inside


def to_input(luminance, mean: float, std: float) -> np.ndarray:
    """(..., H, W) luminance -> float32 (N, H, W, 1) model input (L - mean) / std."""
    lum = np.asarray(luminance, np.float64)
    return ((lum.reshape(-1, *lum.shape[-2:], 1) - mean) / std).astype(np.float32)


class GratingSet(NamedTuple):
    """Drifting gratings: images (F·O·T, H, W, 1) in (frequency, orientation, time) order,
    blank (1, H, W, 1) at mean luminance; orientations (O,) degrees, frequencies (F,)."""
    images: np.ndarray
    blank: np.ndarray
    orientations: np.ndarray
    frequencies: np.ndarray
    steps: int


def drifting_gratings(size, orientations, frequencies, steps: int = 16, contrast: float = 1.0, *,
                      mean: float, std: float) -> GratingSet:
    """Every orientation × frequency drifting through one cycle in `steps` frames."""
    o, f = np.asarray(orientations, np.float64), np.asarray(frequencies, np.float64)
    phase = 2 * np.pi * np.arange(steps) / steps
    lum = grating(size, o[None, :, None], f[:, None, None], phase[None, None, :], contrast)
    return GratingSet(to_input(lum, mean, std), to_input(np.full(size, 0.5), mean, std), o, f, steps)


# ---------------------------------------------------------------------------- responses
def layer_output(model: Layer, params, x, layer: str, *, state=()) -> jax.Array:
    """The output of the layer named `layer` (a name `jaxnn.intermediates` gives) for input x."""
    outs = intermediates(model, params, jnp.asarray(x), state=state)
    for name, y in outs:
        if name == layer:
            return y
    raise LayerError(f"no layer named {layer!r}; expected one of {[n for n, _ in outs]}")


def _select(y, layer: str, channels=None, position=None):
    """y[:, py, px, channels] (N, len(channels)) of an (N, H, W, C) output ((N, C): channels only)."""
    y = np.asarray(y)
    n_ch = y.shape[-1]
    channels = np.arange(n_ch) if channels is None else np.atleast_1d(channels)
    bad = [int(c) for c in channels if not 0 <= c < n_ch]
    if bad:
        raise LayerError(f"{layer}: channel {bad[0]} out of range; expected 0..{n_ch - 1}")
    if y.ndim == 2:
        if position is not None:
            raise LayerError(f"{layer}: output {y.shape} has no spatial position; expected position=None")
        return y[:, channels]
    if y.ndim != 4:
        raise LayerError(f"{layer}: expected an (N, H, W, C) or (N, C) output, got {y.shape}")
    py, px = (y.shape[1] // 2, y.shape[2] // 2) if position is None else position
    if not (0 <= py < y.shape[1] and 0 <= px < y.shape[2]):
        raise LayerError(f"{layer}: position {(py, px)} outside its {y.shape[1]}×{y.shape[2]} map")
    return y[:, py, px][:, channels]


def unit_responses(model: Layer, params, x, layers, *, state=(), channels=None, position=None,
                   batch: int = 512) -> dict[str, np.ndarray]:
    """{layer: (N, U)} responses of the units (channels, default all, at `position`, default the
    map's centre) of each named layer to the images x (N, H, W, 1), in batches."""
    layers = [layers] if isinstance(layers, str) else list(layers)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in layers}
    for i in range(0, len(x), batch):
        outs = dict(intermediates(model, params, jnp.asarray(x[i:i + batch]), state=state))
        for name in layers:
            if name not in outs:
                raise LayerError(f"no layer named {name!r}; expected one of {list(outs)}")
            parts[name].append(_select(outs[name], name, channels, position))
    return {name: np.concatenate(p) for name, p in parts.items()}


# ---------------------------------------------------------------------------- analysis
def fourier(r, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """(F0, F1): the mean of r along `axis` (one drift cycle) and the amplitude of its first
    harmonic, (2/T)|Σ_t r_t e^{-2πi t/T}| (r_t = a + A cos(2πt/T + ψ) gives (a, A))."""
    r = np.moveaxis(np.asarray(r, np.float64), axis, -1)
    spectrum = np.fft.rfft(r, axis=-1)
    return r.mean(-1), 2 * np.abs(spectrum[..., 1]) / r.shape[-1]


def modulation_ratio(r, baseline=0.0, axis: int = -1) -> np.ndarray:
    """F1 / (F0 - baseline); inf where the mean does not rise above the baseline but the
    response is modulated, nan where neither."""
    f0, f1 = fourier(r, axis)
    rise = f0 - np.asarray(baseline, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(rise > 0, f1 / np.where(rise > 0, rise, 1.0), np.where(f1 > 0, np.inf, np.nan))


def orientation_index(tuning, orientations, axis: int = -1) -> np.ndarray:
    """OSI = |Σ R(θ) e^{2iθ}| / Σ R(θ) of non-negative tuning curves R (nan where Σ R = 0)."""
    r = np.moveaxis(np.asarray(tuning, np.float64), axis, -1)
    total = r.sum(-1)
    vector = np.abs((r * np.exp(2j * np.deg2rad(np.asarray(orientations, np.float64)))).sum(-1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, vector / np.where(total > 0, total, 1.0), np.nan)


class Tuning(NamedTuple):
    """Measurements of U units on a GratingSet of F frequencies, O orientations, T frames."""
    response: np.ndarray          # (U, F, O, T) raw responses
    baseline: np.ndarray          # (U,) response to the blank screen
    drive: np.ndarray             # (U, F, O) R = max(F0 - b, 0) + F1
    tuning: np.ndarray            # (U, O) R at the preferred frequency
    preferred_orientation: np.ndarray  # (U,) degrees, argmax of the tuning curve
    preferred_frequency: np.ndarray    # (U,) cycles/pixel
    osi: np.ndarray               # (U,)
    f1f0: np.ndarray              # (U,) modulation ratio at the preferred (frequency, orientation)
    responsive: np.ndarray        # (U,) bool: peak R above 1e-3 of the population's largest


def analyse(response, baseline, stimuli: GratingSet) -> Tuning:
    """Tuning from responses (N_stimuli, U) to stimuli.images and (1, U) (or (U,)) to the blank."""
    n_f, n_o = len(stimuli.frequencies), len(stimuli.orientations)
    r = np.asarray(response, np.float64).T.reshape(-1, n_f, n_o, stimuli.steps)
    b = np.asarray(baseline, np.float64).reshape(-1)
    f0, f1 = fourier(r)
    drive = np.maximum(f0 - b[:, None, None], 0.0) + f1
    best = drive.reshape(len(r), -1).argmax(-1)
    fi, oi = np.unravel_index(best, (n_f, n_o))
    units = np.arange(len(r))
    tuning = drive[units, fi]
    peak = drive.reshape(len(r), -1).max(-1)
    return Tuning(r, b, drive, tuning, stimuli.orientations[oi], stimuli.frequencies[fi],
                  orientation_index(tuning, stimuli.orientations),
                  modulation_ratio(r[units, fi, oi], b), peak > 1e-3 * max(peak.max(initial=0), 1e-30))


def measure(model: Layer, params, stimuli: GratingSet, layers, *, state=(), position=None,
            batch: int = 512) -> dict[str, Tuning]:
    """{layer: Tuning} of every channel (at `position`, default the centre) of the named layers."""
    layers = [layers] if isinstance(layers, str) else list(layers)
    resp = unit_responses(model, params, stimuli.images, layers, state=state, position=position, batch=batch)
    blank = unit_responses(model, params, stimuli.blank, layers, state=state, position=position)
    return {name: analyse(resp[name], blank[name], stimuli) for name in layers}


# ----------------------------------------------------------------------- receptive fields
class Geometry(NamedTuple):
    """A local layer's window per spatial axis: kernel k, stride s, low padding p."""
    kernel: tuple[int, ...]  # one entry per spatial axis (H, W)
    stride: tuple[int, ...]
    pad: tuple[int, ...]


class ReceptiveField(NamedTuple):
    """size r, jump j and start per axis: unit i covers input pixels start + i·j .. + r - 1."""
    size: tuple[int, ...]  # one entry per spatial axis (H, W)
    jump: tuple[int, ...]
    start: tuple[int, ...]

    def box(self, y: int, x: int) -> tuple[tuple[int, int], ...]:
        """((row0, row1), (col0, col1)) inclusive, in input pixels (may reach past the image)."""
        return tuple((s + i * j, s + i * j + r - 1)
                     for s, i, j, r in zip(self.start, (y, x), self.jump, self.size))

    def centre(self, y: int, x: int) -> tuple[float, ...]:
        return tuple((lo + hi) / 2 for lo, hi in self.box(y, x))


def probe_geometry(fn: Callable, input_shape, *, seed: int = 0) -> Geometry:
    """Kernel, stride and low padding of a local map fn: (1, H, W, C) -> (1, H', W', C'), read
    off its behaviour: every input row (column) in turn is raised by 3..5 over a random base
    (two bases, in [0, 1) and [-1, 0)); the rows moving output unit i form its support.
    k = the widest support, s = the shift between supports of neighbouring whole-window units,
    p = i·s - first row of unit i. Raises LayerError for a map that is not local."""
    rng = np.random.default_rng(seed)
    _, h, w, c = input_shape
    images, idx = [], np.arange(max(h, w))
    for lo in (0.0, -1.0):  # one call: per base, the base, then each row, then each column bumped
        base = (lo + rng.random((1, h, w, c))).astype(np.float32)
        rows, cols = np.repeat(base, h, 0), np.repeat(base, w, 0)
        rows[idx[:h], idx[:h]] += rng.uniform(3, 5, (h, w, c)).astype(np.float32)
        cols[idx[:w], :, idx[:w]] += rng.uniform(3, 5, (w, h, c)).astype(np.float32)
        images += [base, rows, cols]
    y = np.asarray(fn(np.concatenate(images)))
    if y.ndim != 4:
        raise LayerError(f"not a local (N, H, W, C) map: output shape {y.shape}")
    mid = (y.shape[1] // 2, y.shape[2] // 2)
    geo, half = [], 1 + h + w
    for axis, n, first in ((1, h, 1), (2, w, 1 + h)):
        support = np.zeros((n, y.shape[axis]), bool)
        for b in (0, half):
            at = [slice(b + first, b + first + n), mid[0], mid[1]]
            at[axis] = slice(None)
            ref = [b, mid[0], mid[1]]
            ref[axis] = slice(None)
            support |= np.abs(y[tuple(at)] - y[tuple(ref)]).max(-1) > 0      # (n, out)
        spans = [np.flatnonzero(support[:, i]) for i in range(support.shape[1])]
        k = max(len(r) and r[-1] - r[0] + 1 for r in spans)
        if k == 0 or (k == n and support.shape[1] > 1 and all(len(r) == n for r in spans)):
            raise LayerError(f"not a local map: an output unit depends on all {n} input rows or none")
        whole = [i for i, r in enumerate(spans) if len(r) and r[-1] - r[0] + 1 == k]
        s = (spans[whole[1]][0] - spans[whole[0]][0]) // (whole[1] - whole[0]) if len(whole) > 1 else 1
        geo.append((int(k), int(s), int(whole[0] * s - spans[whole[0]][0])))
    return Geometry(*(tuple(g[i] for g in geo) for i in range(3)))


def theoretical_receptive_fields(model: Layer, params, input_shape, *, state=()
                                 ) -> dict[str, ReceptiveField]:
    """{name: ReceptiveField} of each layer of a `serial` model, from its input on, up to the
    first layer that is not a local map (Flatten, Dense), by the recursion in the module doc."""
    if not isinstance(model, Layer) or model.name != "serial":
        raise LayerError(f"expected a serial model, got {getattr(model, 'name', model)!r}")
    states = split_state("serial", state, len(model.children))
    shape, out = (1, *input_shape[1:]), {}
    r, j, start = np.ones(2, int), np.ones(2, int), np.zeros(2, int)
    for i, (child, p, s) in enumerate(zip(model.children, params, states)):
        fn = lambda x, child=child, p=p, s=s: child.apply(p, s, jnp.asarray(x), train=False)[0]  # noqa: E731
        try:
            g = probe_geometry(fn, shape)
        except (LayerError, TypeError, ValueError):
            break
        r, start, j = r + (np.array(g.kernel) - 1) * j, start - np.array(g.pad) * j, j * np.array(g.stride)
        out[f"serial[{i}] {child.name}"] = ReceptiveField(*(tuple(int(v) for v in a) for a in (r, j, start)))
        shape = jax.eval_shape(fn, jax.ShapeDtypeStruct(shape, jnp.float32)).shape
    return out


def effective_receptive_field(model: Layer, params, x, layer: str, *, state=(), channels=None,
                              position=None) -> tuple[np.ndarray, np.ndarray]:
    """(mean ∂r/∂x, mean |∂r/∂x|), each (U, H, W): the gradient of each unit's response (channels,
    default all, at `position`, default the centre) with respect to the input pixels (summed
    over input channels), averaged over the images x (N, H, W, C), by one jax.vjp of the model."""
    x = jnp.asarray(x)
    y = jax.eval_shape(lambda v: layer_output(model, params, v, layer, state=state), x)
    _select(np.zeros((1, *y.shape[1:]), np.float32), layer, channels, position)  # checks
    channels = np.arange(y.shape[-1]) if channels is None else np.atleast_1d(channels)
    where = () if len(y.shape) == 2 else (
        (y.shape[1] // 2, y.shape[2] // 2) if position is None else tuple(position))

    @jax.jit
    def gradients(params, x):  # (U, N, H, W, C): one pullback per unit, vmapped
        y, pullback = jax.vjp(lambda v: layer_output(model, params, v, layer, state=state), x)
        onehot = jnp.zeros((len(channels), *y.shape), y.dtype)
        onehot = onehot.at[(jnp.arange(len(channels)), slice(None), *where, jnp.asarray(channels))].set(1.0)
        return jax.vmap(pullback)(onehot)[0]

    g = np.asarray(gradients(params, x), np.float64).sum(-1)
    signed, mass = g.mean(1), np.abs(g).mean(1)
    return signed, mass


def effective_size(mass, centre, fraction: float = 0.95) -> int:
    """Side of the smallest square centred on `centre` (row, col; may be half-integer) holding
    `fraction` of the total mass of a non-negative (H, W) map (0 for an all-zero map)."""
    mass = np.asarray(mass, np.float64)
    total = mass.sum()
    if total <= 0:
        return 0
    rows, cols = np.arange(mass.shape[0])[:, None], np.arange(mass.shape[1])[None, :]
    dist = np.maximum(np.abs(rows - centre[0]), np.abs(cols - centre[1]))  # Chebyshev distance
    side = 1 + int(2 * (centre[0] % 1) + 0.5)
    while mass[dist <= (side - 1) / 2].sum() < fraction * total * (1 - 1e-12):
        side += 2
    return side



# ------------------------------------------------------------------- reference cells
def gabor(size, orientation, frequency, sigma, phase=0.0) -> np.ndarray:
    """exp(-(x² + y²)/(2σ²)) cos(2π f u + φ) at the image centre, its mean removed (a blank
    screen drives it by 0); (H, W) float64."""
    u, v = _coords(size, orientation)
    g = np.exp(-(u ** 2 + v ** 2) / (2 * sigma ** 2)) * np.cos(2 * np.pi * frequency * u + phase)
    return (g - g.mean())[0] if g.ndim == 3 else g - g.mean()


def _energy() -> Layer:
    """y = Σ_c x_c² over channels, (N, H, W, C) -> (N, H, W, 1); backward dx = 2x·dy."""
    return make_layer("Energy", lambda key, shape: ((*shape[:-1], 1), ()),
                      lambda params, x: (jnp.sum(x * x, -1, keepdims=True), x),
                      lambda params, x, dy: ((), 2 * x * dy))


def reference_cells(size, orientation: float, frequency: float, sigma: float
                    ) -> dict[str, tuple[Layer, tuple]]:
    """{"simple": (model, params), "complex": (model, params)} of one unit each, on input
    (N, H, W, 1) with H, W = size: simple = max(0, <g_0, x>), a half-wave rectified linear
    Gabor; complex = <g_0, x>² + <g_90, x>², the energy model (a quadrature pair of Gabors
    with phases 0 and 90°, squared and summed; Adelson & Bergen 1985). Each is a `serial`
    model (Conv2D of kernel H×W, VALID) measured like any other."""
    def conv(*phases):
        w = np.stack([gabor(size, orientation, frequency, sigma, p) for p in phases], -1)
        return ConvParams(jnp.asarray(w[:, :, None, :], jnp.float32), jnp.zeros(len(phases), jnp.float32))
    return {"simple": (serial(Conv2D(1, tuple(size)), Relu()), (conv(0.0), ())),
            "complex": (serial(Conv2D(2, tuple(size)), _energy()), (conv(0.0, np.pi / 2), ()))}
