"""Credit assignment without weight transport: feedback alignment, direct feedback alignment and
sign symmetry beside backprop, as learning rules with the one step signature.

Backprop sends the error back through the transposed forward weights, dC/dX_{i-1} = dC/dX_i · W_iᵀ
for a Dense layer: a synapse would have to read the weight of the synapse downstream of it (the
weight-transport problem). The methods here replace Wᵀ by something a circuit could have, and
keep every weight-gradient formula as it is (dC/dW_i = X_{i-1}ᵀ · δ_i for a Dense layer, the
correlation of X_{i-1} with δ_i for a Conv2D), δ_i being the method's error at the layer's output.

Feedback is data passed to the hand-written backward. A Dense or Conv2D backward computes dC/dW
from its residual (the input x) and dy only, and dx from its weights w. So the model's own
`backward`, called with a *feedback tree* — params whose weight leaves (the `w` of every
`DenseParams` / `ConvParams` node) are replaced by feedback matrices B of the same shape — sends
the error back through B while each dW keeps its formula; every other leaf (biases, the params
of other layers: BatchNorm, Subsample, recurrent cells, which so keep exact backprop) is the
layer's own. The methods differ only in the feedback tree:

    "backprop"  B = W                                               (== gradient(loss, "manual"))
    "fa"        B fixed random, drawn once                          (Lillicrap et al. 2016)
    "usf"       B = sign(W) · mean|W|  (one magnitude per layer)    (Liao, Leibo & Poggio 2016)
    "brsf"      B = sign(W) ⊙ |R|, R redrawn every batch           (Moskovitz et al. 2018)
    "frsf"      B = sign(W) ⊙ |R|, R drawn once                    (fixed random magnitudes)

uSF's magnitude: mean|W| of the layer, recomputed from W each step, so the feedback has the
scale of the weights it stands for (any optimiser, plain SGD included, sees errors of
backprop's size) and equal-magnitude weights W = c·sign(W) give B = W exactly. It is one
scalar per layer read from W, not the weights themselves.

"dfa" (Nøkland 2016) sends the output error e = dJ/dy (the loss's hand-written backward, shape
(N, C)) straight to every hidden weight layer through a fixed random matrix B_k (C, D_k). A
`serial` model is cut into blocks, one per weight layer: the weight layer k and the layers after
it up to the next weight layer (its nonlinearity, pooling, flatten). The cotangent at the end of
block k is

    δ_k = (e · B_k) reshaped to the block's output (N, ...)        (hidden blocks)
    δ_K = e, carried back through the layers after the last weight layer (the last block)

and each block's own layers carry δ_k back to their weight layer, whose hand-written backward
gives dW_k (for a ReLU block: dW_k = X_{k-1}ᵀ · ((e·B_k) ⊙ f'(a_k)), Nøkland's rule). Layers
before the first weight layer receive the first block's dx, as in backprop. DFA supports a
`serial` model whose children are layers (a Dense or Conv2D child, or a layer without weight
layers inside it); a nested combinator holding weight layers is refused with an error naming
the method and the child. DFA is written as the backward of the model's forward pass
(`dfa_view`), so the forward runs once, as for backprop.

Initial feedback (fa, frsf, dfa): `feedback_init` (default He-normal, the modern LeNet-5's
weight init: truncated normal with variance 2/fan_in) applied to each weight's shape (kh, kw, in,
out) or (in, out); for frsf/brsf its absolute value gives the magnitudes; for DFA's B_k it is
applied to the (C, D_k) matrix (fan-in C). Layer l draws from fold_in(key(seed), l); brSF's
batch draws from fold_in(fold_in(step key, FEEDBACK_STREAM), l), a stream no child of a
`serial` model uses (those take fold_in(step key, i) for small i), so a model with dropout
sees the key it would see under `gradient`.

The rule's state (fa, frsf, dfa) is a tuple of the feedback arrays, weight layers in the order
of `jax.tree.leaves(params)`: part of the `TrainState`, so checkpointed and resumed bit for bit;
backprop, usf and brsf carry `()`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import backprop, initializers
from jaxnn.core import Layer, LayerError
from jaxnn.layers.conv import ConvParams
from jaxnn.layers.dense import DenseParams
from jaxnn.losses import Loss
from jaxnn.train import chunks
from jaxnn.train.step import Rule

METHODS = ("backprop", "fa", "dfa", "usf", "brsf", "frsf")
FEEDBACK_METHODS = METHODS[1:]
WEIGHT_PARAMS = (DenseParams, ConvParams)  # params whose backward reads w only for dx
FEEDBACK_STREAM = 0x5EED  # fold_in(step key, FEEDBACK_STREAM): brSF's per-batch magnitudes

Params = Any
Feedback = tuple  # the rule's state: one array per weight layer (or per hidden block for dfa)


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"credit: method must be one of {METHODS}, got {method!r}")
    return method


def has_feedback(node: Any) -> bool:
    """Whether a params node is a weight layer's (DenseParams or ConvParams): its `w` gets
    feedback."""
    return isinstance(node, WEIGHT_PARAMS)


def weight_layers(params: Params) -> list[tuple[str, Any]]:
    """[(path, DenseParams/ConvParams)] of every weight layer in params (or in a gradient tree
    shaped like params), in tree order; path as `jax.tree_util.keystr` gives it, e.g. "[0]"."""
    flat, _ = jax.tree_util.tree_flatten_with_path(params, is_leaf=has_feedback)
    return [(jax.tree_util.keystr(path), node) for path, node in flat if has_feedback(node)]


def replace_weights(params: Params, weights: Sequence[jax.Array]) -> Params:
    """params with the `w` of the l-th weight layer replaced by weights[l] (shape checked)."""
    flat, treedef = jax.tree.flatten(params, is_leaf=has_feedback)
    nodes = [node for node in flat if has_feedback(node)]
    if len(nodes) != len(weights):
        raise ValueError(f"credit: expected feedback for {len(nodes)} weight layers, got {len(weights)}")
    it = iter(weights)
    out = []
    for node in flat:
        if has_feedback(node):
            b = next(it)
            if b.shape != node.w.shape:
                raise ValueError(f"credit: feedback of shape {b.shape} for a weight of shape "
                                 f"{node.w.shape}")
            node = node._replace(w=b.astype(node.w.dtype))
        out.append(node)
    return jax.tree.unflatten(treedef, out)


def _draw(init: Callable, key: jax.Array, shapes: Sequence[tuple], dtypes: Sequence[Any]) -> tuple:
    return tuple(init(jax.random.fold_in(key, i), shape, dtype)
                 for i, (shape, dtype) in enumerate(zip(shapes, dtypes)))


def feedback_params(method: str, params: Params, feedback: Feedback = (), key: jax.Array | None = None,
                    *, feedback_init: Callable = initializers.he_normal) -> Params:
    """The feedback tree of `method` (module docstring): params with every weight w replaced by
    its feedback B. feedback: the rule's state (fa: B; frsf: |R|); key: the step key (brsf)."""
    ws = [node.w for _, node in weight_layers(params)]
    if check_method(method) == "backprop":
        return params
    if method == "fa":
        return replace_weights(params, feedback)
    if method == "usf":
        return replace_weights(params, [jnp.sign(w) * jnp.mean(jnp.abs(w)) for w in ws])
    if method == "frsf":
        return replace_weights(params, [jnp.sign(w) * m for w, m in zip(ws, feedback)])
    if method == "brsf":
        if key is None:
            raise ValueError("credit 'brsf': needs the step key (magnitudes are drawn every batch)")
        mags = _draw(feedback_init, jax.random.fold_in(key, FEEDBACK_STREAM),
                     [w.shape for w in ws], [w.dtype for w in ws])
        return replace_weights(params, [jnp.sign(w) * jnp.abs(m) for w, m in zip(ws, mags)])
    raise ValueError(f"credit: method {method!r} has no feedback tree (dfa projects the output "
                     f"error; see dfa_view)")


def feedback_view(model: Layer, feedback: Params) -> Layer:
    """The model with its backward fed the feedback tree instead of its params: forward and apply
    unchanged; backward(params, residuals, dy) = model.backward(feedback, residuals, dy)."""
    def backward(params, residuals, dy):
        return model.backward(feedback, residuals, dy)
    return model._replace(backward=backward)


# --------------------------------------------------------------------------------- DFA
def _dfa_layout(model: Layer, params: Params) -> list[int]:
    """Indices of the weight-layer children of a serial model (checked)."""
    if not isinstance(model, Layer) or model.name != "serial" or not model.children:
        raise LayerError(f"credit 'dfa': supports a serial model of layers, got "
                         f"{getattr(model, 'name', type(model).__name__)!r}")
    if not isinstance(params, (tuple, list)) or len(params) != len(model.children):
        raise LayerError(f"credit 'dfa': expected params for {len(model.children)} layers")
    idx = []
    for i, (child, p) in enumerate(zip(model.children, params)):
        if has_feedback(p):
            idx.append(i)
        elif weight_layers(p):
            raise LayerError(f"credit 'dfa': supports a serial model of layers; child serial[{i}] "
                             f"{child.name} holds weight layers inside it (a nested combinator)")
    if not idx:
        raise LayerError("credit 'dfa': the model has no weight layer (Dense or Conv2D)")
    return idx


def dfa_block_shapes(model: Layer, input_shape: tuple) -> tuple[tuple, list[tuple]]:
    """(the output shape of one example, [the output shape of one example of each hidden
    block]): the shapes of DFA's matrices B_k (C, *block output), C = prod(output shape).
    input_shape: with the batch axis (-1 or any size). Shapes only: nothing is computed."""
    shape = (1, *tuple(input_shape)[1:])

    def outputs():
        _, params, state = model.init(jax.random.key(0), shape)
        idx = _dfa_layout(model, params)
        outs = backprop.intermediates(model, params, jnp.zeros(shape, jax.tree.leaves(params)[0].dtype),
                                      state=state)
        return [outs[j - 1][1] for j in idx[1:]], outs[-1][1]

    blocks, out = jax.eval_shape(outputs)
    return tuple(out.shape[1:]), [tuple(b.shape[1:]) for b in blocks]


def dfa_view(model: Layer, projections: Feedback) -> Layer:
    """The serial model with DFA's backward (module docstring): backward(params, residuals, e)
    -> (dparams, dx), e = dJ/dy (N, ...); projections: B_k (C, *block output) per hidden weight
    layer, C = the size of one example's output."""
    children = model.children

    def backward(params, residuals, e):
        idx = _dfa_layout(model, params)
        if len(projections) != len(idx) - 1:
            raise ValueError(f"credit 'dfa': expected {len(idx) - 1} feedback matrices (one per "
                             f"hidden weight layer), got {len(projections)}")
        n = len(children)
        e_flat = e.reshape(e.shape[0], -1)
        dparams: list = [None] * n
        ends = idx[1:] + [n]
        dy = e
        for k in reversed(range(len(idx))):
            if k < len(idx) - 1:
                b = projections[k]
                dy = (e_flat @ b.reshape(b.shape[0], -1)).reshape(e.shape[0], *b.shape[1:])
            for i in reversed(range(idx[k], ends[k])):
                dparams[i], dy = children[i].backward(params[i], residuals[i], dy)
        for i in reversed(range(idx[0])):  # layers before the first weight layer: as backprop
            dparams[i], dy = children[i].backward(params[i], residuals[i], dy)
        return tuple(dparams), dy

    return model._replace(backward=backward)


# -------------------------------------------------------------------------------- rule
def init_feedback(method: str, params: Params, key: jax.Array, *,
                  feedback_init: Callable = initializers.he_normal,
                  dfa_shapes: tuple[tuple, list[tuple]] | None = None) -> Feedback:
    """The rule's state for `method`: fa: B per weight layer (feedback_init of W's shape);
    frsf: |R| likewise; dfa: B_k (C, *block output) per hidden weight layer, feedback_init of
    the (C, D_k) matrix (dfa_shapes from `dfa_block_shapes`); backprop, usf, brsf: ()."""
    ws = [node.w for _, node in weight_layers(params)]
    if check_method(method) in ("fa", "frsf"):
        drawn = _draw(feedback_init, key, [w.shape for w in ws], [w.dtype for w in ws])
        return drawn if method == "fa" else tuple(jnp.abs(d) for d in drawn)
    if method == "dfa":
        if dfa_shapes is None:
            raise ValueError("credit 'dfa': the feedback matrices need the block shapes "
                             "(dfa_block_shapes(model, input_shape))")
        out_shape, blocks = dfa_shapes
        c, dtype = int(np.prod(out_shape)), ws[-1].dtype
        drawn = _draw(feedback_init, key, [(c, int(np.prod(s))) for s in blocks], [dtype] * len(blocks))
        return tuple(d.reshape(c, *s) for d, s in zip(drawn, blocks))
    return ()


def rule(loss: Loss, method: str, *, seed: int = 0, key: jax.Array | None = None,
         model: Layer | None = None, input_shape: tuple | None = None,
         feedback_init: Callable = initializers.he_normal, chunk: int | None = None) -> Rule:
    """The learning rule of `method` (one of METHODS; module docstring) on `loss`, for
    `jaxnn.make_step(model, rule, optimizer)` like `jaxnn.gradient(loss, "manual")`.

    updates: each weight layer's dW = the layer's weight-gradient formula with the method's δ;
    ascend=False; the model's state advances (train=True); metrics {"loss": J}. The rule's
    state (`init(params)`) holds the feedback (fa, frsf, dfa), drawn from `key` (default
    jax.random.key(seed)) and unchanged by the step. dfa needs `model` (a serial of layers)
    and `input_shape` (with the batch axis) to size its matrices. chunk: examples per chunk
    (`jaxnn.train.chunks`, exact for any loss), None for the whole batch.
    """
    check_method(method)
    chunks.check_chunk(chunk)
    base = jax.random.key(seed) if key is None else key
    dfa_shapes = None
    if method == "dfa":
        if model is None or input_shape is None:
            raise ValueError("credit 'dfa': pass model= (a serial of layers) and input_shape= "
                             "(with the batch axis) to size the feedback matrices")
        dfa_shapes = dfa_block_shapes(model, tuple(input_shape))

    def init(params):
        return init_feedback(method, params, base, feedback_init=feedback_init, dfa_shapes=dfa_shapes)

    def view(model, params, rule_state, key):
        if method == "dfa":
            return dfa_view(model, rule_state)
        return feedback_view(model, feedback_params(method, params, rule_state, key,
                                                    feedback_init=feedback_init))

    def update(model, params, model_state, batch, rule_state, key):
        v = view(model, params, rule_state, key)
        if chunk is None:
            vg = backprop.value_and_grad(v, loss, "manual", jit=False)
        else:
            vg = chunks.value_and_grad(v, loss, "manual", chunk)
        (value, model_state), grads = vg(params, model_state, *batch, key)
        return grads, model_state, rule_state, {"loss": value}

    return Rule(f"credit[{method}]", update, False, init)


# --------------------------------------------------------------------------- alignment
def angle(a: Any, b: Any) -> jax.Array:
    """The angle in degrees between two pytrees read as flat vectors: arccos(⟨a,b⟩ / ‖a‖‖b‖);
    NaN when either is zero."""
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    dot = sum(jnp.vdot(x, y) for x, y in zip(la, lb))
    na = jnp.sqrt(sum(jnp.vdot(x, x) for x in la))
    nb = jnp.sqrt(sum(jnp.vdot(y, y) for y in lb))
    cos = dot / (na * nb)
    return jnp.degrees(jnp.arccos(jnp.clip(cos, -1.0, 1.0)))


def angles(updates: Params, reference: Params) -> list[jax.Array]:
    """Per weight layer (tree order), the angle in degrees between the method's weight update
    `w` and the reference's (backprop's dJ/dW on the same batch), each flattened."""
    mine, ref = weight_layers(updates), weight_layers(reference)
    if [p for p, _ in mine] != [p for p, _ in ref]:
        raise ValueError("credit.angles: the two trees hold different weight layers")
    return [angle(a.w, b.w) for (_, a), (_, b) in zip(mine, ref)]


def alignment(model: Layer, loss: Loss, the_rule: Rule, params: Params, model_state: Any,
              batch: tuple, rule_state: Any, key: jax.Array) -> list[jax.Array]:
    """Per weight layer, the angle (degrees) between `the_rule`'s update and backprop's gradient
    (the hand-written chain rule) on the same batch, key and state. Not jitted."""
    updates, *_ = the_rule.update(model, params, model_state, batch, rule_state, key)
    (_, _), grads = backprop.value_and_grad(model, loss, "manual", jit=False)(
        params, model_state, *batch, key)
    return angles(updates, grads)


__all__ = ["FEEDBACK_METHODS", "FEEDBACK_STREAM", "METHODS", "WEIGHT_PARAMS", "alignment", "angle",
           "angles", "check_method", "dfa_block_shapes", "dfa_view", "feedback_params",
           "feedback_view", "has_feedback", "init_feedback", "replace_weights", "rule",
           "weight_layers"]
