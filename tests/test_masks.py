"""jaxreg.masks and the mask= argument: prefixes, callables, mismatches, optax; decayable on Flax trees, combinators, factors."""

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from helpers import params_tree

import jaxreg
from jaxreg._masking import key_path_str


def test_masks_prefix_callable_and_mismatch():
    p = params_tree()
    only_kernel = {"dense": {"kernel": True, "bias": False}, "conv": False, "step": False, "empty": None}
    np.testing.assert_allclose(
        jaxreg.l1_penalty(p, mask=only_kernel), np.abs(p["dense"]["kernel"]).sum(), rtol=1e-6
    )
    prefix = {"dense": False, "conv": True, "step": True, "empty": True}
    np.testing.assert_allclose(jaxreg.l1_penalty(p, mask=prefix), np.abs(p["conv"]).sum(), rtol=1e-6)
    np.testing.assert_allclose(
        jaxreg.l1_penalty(p, mask=jaxreg.masks.weights_only),
        np.abs(p["dense"]["kernel"]).sum() + np.abs(p["conv"]).sum(),
        rtol=1e-6,
    )
    with pytest.raises(ValueError, match=r"(?s)mask does not match.*mask\[.dense.\]"):
        jaxreg.l1_penalty(p, mask={"dense": {"kernel": True}, "conv": True, "step": True, "empty": None})


def test_masks_by_path_on_linen_and_nnx_and_weights_only():
    import flax.linen as nn
    from flax import nnx

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.Dense(3)(x)
            x = nn.LayerNorm()(x)
            return nn.Embed(5, 3)(jnp.zeros((1,), jnp.int32)) + x

    variables = jax.jit(Net().init)(jax.random.key(0), jnp.ones((1, 2)))  # one compilation
    got = jaxreg.masks.by_path(exclude=r"(bias|scale|embedding)")(variables)
    assert got == {
        "params": {
            "Dense_0": {"kernel": True, "bias": False},
            "LayerNorm_0": {"scale": False, "bias": False},
            "Embed_0": {"embedding": False},
        }
    }
    assert jaxreg.masks.weights_only(variables)["params"]["Embed_0"]["embedding"] is True
    assert (
        jaxreg.masks.by_path(include=r"^params/Dense_0/")(variables)["params"]["LayerNorm_0"]["scale"]
        is False
    )

    model = nnx.Sequential(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), nnx.LayerNorm(3, rngs=nnx.Rngs(0)))
    state = nnx.state(model, nnx.Param)
    mask = jaxreg.masks.by_path(exclude=r"(bias|scale)")(state)
    flat = {"/".join(map(str, k)): v for k, v in nnx.to_flat_state(mask)}
    assert flat == {
        "layers/0/bias": False,
        "layers/0/kernel": True,
        "layers/1/bias": False,
        "layers/1/scale": False,
    }
    # The mask drives a transform on nnx State directly.
    tx = jaxreg.add_decayed_weights(1.0, mask=jaxreg.masks.by_path(exclude=r"(bias|scale)"))
    u, _ = jax.jit(tx.update)(jax.tree.map(jnp.zeros_like, state), tx.init(state), state)
    np.testing.assert_allclose(u["layers"][0]["kernel"][...], state["layers"][0]["kernel"][...])
    np.testing.assert_array_equal(u["layers"][1]["scale"][...], 0.0)


@pytest.mark.parametrize("mask", [jaxreg.masks.weights_only, jaxreg.masks.by_path(exclude="b")])
def test_callable_mask_with_inject_hyperparams_needs_static_args(mask):
    p = {"w": jnp.ones((3, 2)), "b": jnp.ones(2)}
    zeros = jax.tree.map(jnp.zeros_like, p)
    # The documented form: the mask is static, the strength injected.
    tx = optax.inject_hyperparams(jaxreg.add_l1, static_args=("mask",))(strength=0.1, mask=mask)
    state = tx.init(p)
    update = jax.jit(tx.update)
    for strength in (0.1, 0.3):
        state.hyperparams["strength"] = jnp.asarray(strength)
        u, state = update(zeros, state, p)
        np.testing.assert_allclose(u["w"], strength, rtol=1e-6)
        np.testing.assert_array_equal(u["b"], 0.0)
    # Without it optax calls the mask as a schedule of the step count: jaxreg's masks say so
    # instead of selecting nothing (which silently disabled the regularization).
    bare = optax.inject_hyperparams(jaxreg.add_l1)(strength=0.1, mask=mask)
    with pytest.raises(TypeError, match=r"step count.*static_args=\('mask',\)"):
        bare.init(p)


def test_mask_mismatch_in_a_transform_says_where():
    tx = jaxreg.prox_l1(0.1, 0.1, mask={"a": True, "c": True})
    with pytest.raises(ValueError, match=r"(?s)mask does not match the structure of params.*'c'"):
        tx.init({"a": jnp.ones(1), "b": jnp.ones(1)})


D, HEADS = 8, 2


class LinenBlock(nn.Module):
    @nn.compact
    def __call__(self, x, _=None):
        h = nn.LayerNorm()(x)
        h = nn.MultiHeadDotProductAttention(num_heads=HEADS)(h)
        x = x + h
        h = nn.RMSNorm()(x)
        h = nn.Dense(2 * D)(h)
        h = nn.Conv(2 * D, (3,))(h)
        h = nn.BatchNorm(use_running_average=True)(h)
        h = nn.GroupNorm(num_groups=2)(h)
        return x + nn.Dense(D)(h), None


class LinenModel(nn.Module):
    stacked: bool

    @nn.compact
    def __call__(self, tokens):
        x = nn.Embed(16, D)(tokens)
        x = x + self.param("pos_embedding", nn.initializers.normal(0.02), (tokens.shape[-1], D))
        if self.stacked:
            x, _ = nn.scan(
                LinenBlock,
                variable_axes={"params": 0, "batch_stats": 0},
                split_rngs={"params": True},
                length=3,
            )()(x, None)
        else:
            x, _ = LinenBlock()(x)
        return nn.Dense(16, name="head")(nn.LayerNorm()(x))


# The leaves (path suffixes) that weight decay should touch, written by hand from the modules' docs.
LINEN_BLOCK_DECAYED = {
    "MultiHeadDotProductAttention_0/query/kernel",
    "MultiHeadDotProductAttention_0/key/kernel",
    "MultiHeadDotProductAttention_0/value/kernel",
    "MultiHeadDotProductAttention_0/out/kernel",
    "Dense_0/kernel",
    "Dense_1/kernel",
    "Conv_0/kernel",
}


def _concrete(abstract, seed=0):
    """Arrays of the structure, shapes and dtypes of ``abstract`` (``jax.eval_shape`` of a model's
    init), drawn in NumPy: the params tree that init returns, without compiling the model (seconds
    here); the mask rules read its paths and shapes, the AdamW test its values, whatever they are.
    ``jax.device_put`` (not ``jnp.asarray``, which compiles a copy for each new shape) moves them."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda a: jax.device_put(rng.standard_normal(a.shape).astype(a.dtype)), abstract)


def _selected(mask_tree, params):
    flags = jax.tree.leaves(mask_tree)
    paths = [key_path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    assert len(flags) == len(paths)
    return {p for p, f in zip(paths, flags, strict=True) if f}


@pytest.mark.parametrize("stacked", [False, True])
def test_decayable_on_a_linen_transformer(stacked):
    tokens = np.zeros((2, 5), np.int32)  # only its shape and dtype are read (eval_shape)
    variables = _concrete(jax.eval_shape(LinenModel(stacked).init, jax.random.key(0), tokens))
    params = variables["params"]
    block = "ScanLinenBlock_0" if stacked else "LinenBlock_0"
    want = {f"{block}/{p}" for p in LINEN_BLOCK_DECAYED} | {"head/kernel"}
    got = _selected(jaxreg.masks.decayable(params), params)
    assert got == want
    if stacked:  # the stacked norm scales are 2-D: the shape rule decays them, the name rule does not
        assert params[block]["LayerNorm_0"]["scale"].shape == (3, D)
        assert f"{block}/LayerNorm_0/scale" in _selected(jaxreg.masks.weights_only(params), params)


class NnxBlock(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.ln = nnx.LayerNorm(D, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(HEADS, D, D, decode=False, rngs=rngs)
        self.rms = nnx.RMSNorm(D, rngs=rngs)
        self.up = nnx.Linear(D, 2 * D, rngs=rngs)
        self.conv = nnx.Conv(2 * D, 2 * D, (3,), rngs=rngs)
        self.bn = nnx.BatchNorm(2 * D, rngs=rngs)
        self.down = nnx.Linear(2 * D, D, rngs=rngs)


NNX_BLOCK_DECAYED = {
    "attn/query/kernel",
    "attn/key/kernel",
    "attn/value/kernel",
    "attn/out/kernel",
    "up/kernel",
    "conv/kernel",
    "down/kernel",
}


class NnxModel(nnx.Module):
    def __init__(self, stacked: bool, rngs: nnx.Rngs):
        self.embed = nnx.Embed(16, D, rngs=rngs)
        self.pos_embedding = nnx.Param(jnp.zeros((5, D)))
        if stacked:

            @nnx.split_rngs(splits=3)
            @nnx.vmap(in_axes=(0,), out_axes=0)
            def make(rngs):
                return NnxBlock(rngs)

            self.blocks = make(rngs)
        else:
            self.blocks = NnxBlock(rngs)
        self.norm = nnx.LayerNorm(D, rngs=rngs)
        self.head = nnx.Linear(D, 16, rngs=rngs)


@functools.cache
def _nnx_params(stacked):
    """``nnx.state(NnxModel(stacked), nnx.Param)`` (see :func:`_concrete`), shared by the tests below,
    which only read it."""
    return _concrete(nnx.state(nnx.eval_shape(lambda: NnxModel(stacked, nnx.Rngs(0))), nnx.Param))


@pytest.mark.parametrize("stacked", [False, True])
def test_decayable_on_an_nnx_transformer(stacked):
    state = _nnx_params(stacked)
    want = {f"blocks/{p}" for p in NNX_BLOCK_DECAYED} | {"head/kernel"}
    got = _selected(jaxreg.masks.decayable(state), state)
    assert got == want
    if stacked:
        assert state["blocks"]["ln"]["scale"].shape == (3, D)
        assert state["blocks"]["attn"]["query"]["bias"].shape == (3, HEADS, D // HEADS)
    # The attention biases are 2-D even unstacked: weights_only decays them, decayable does not.
    assert "blocks/attn/query/bias" in _selected(jaxreg.masks.weights_only(state), state)


def test_decayable_as_the_adamw_mask_on_nnx_state():
    params = _nnx_params(True)
    zeros = jax.tree.map(np.zeros_like, params)
    tx = optax.adamw(1.0, weight_decay=0.5, mask=jaxreg.masks.decayable)
    updates = jax.jit(lambda zeros, params: tx.update(zeros, tx.init(params), params)[0])(zeros, params)
    decayed = _selected(jaxreg.masks.decayable(params), params)
    for (path, u), w in zip(
        jax.tree_util.tree_flatten_with_path(updates)[0], jax.tree.leaves(params), strict=True
    ):
        expected = -0.5 * np.asarray(w) if key_path_str(path) in decayed else np.zeros(w.shape)
        np.testing.assert_allclose(np.asarray(u), expected, rtol=1e-6, atol=0)


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class LayerNorm:  # stands for equinox.nn.LayerNorm: its scale is a leaf named "weight"
    weight: jax.Array
    bias: jax.Array


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class Linear:  # stands for equinox.nn.Linear
    weight: jax.Array
    bias: jax.Array


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class Block:
    norm1: LayerNorm
    proj: Linear
    scale_weight: LayerNorm  # a field name that says nothing: the module type decides


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class SpectralNorm:  # stands for equinox.nn.SpectralNorm: a wrapper whose layer is decayed
    layer: Linear


def test_decayable_uses_the_module_type_where_the_pytree_carries_it():
    ln = lambda: LayerNorm(jnp.ones(4), jnp.zeros(4))  # noqa: E731
    block = Block(norm1=ln(), proj=Linear(jnp.ones((4, 4)), jnp.zeros(4)), scale_weight=ln())
    assert _selected(jaxreg.masks.decayable(block), block) == {"proj/weight"}
    wrapped = SpectralNorm(Linear(jnp.ones((4, 4)), jnp.zeros(4)))
    assert _selected(jaxreg.masks.decayable(wrapped), wrapped) == {"layer/weight"}


def test_decayable_on_pytorch_style_names():
    names = {
        "transformer/wte/weight": False,
        "transformer/wpe/weight": False,
        "transformer/h/0/ln_1/weight": False,
        "transformer/h/0/attn/c_attn/weight": True,
        "transformer/h/0/attn/c_attn/bias": False,
        "transformer/ln_f/weight": False,
        "encoder/layer/0/output/LayerNorm/weight": False,
        "bn1/weight": False,
        "layer1/0/conv1/weight": True,
        "fc/weight": True,
    }
    params = {name: jnp.ones((2, 2)) for name in names}
    mask = jaxreg.masks.decayable(params)
    assert mask == names


def test_combinators_follow_optax_semantics():
    params = {"a": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}, "lora_a": jnp.ones((2, 1))}
    tree = {"a": {"kernel": True, "bias": True}, "lora_a": False}
    both = jaxreg.masks.all_of(jaxreg.masks.decayable, tree)
    assert callable(both)
    assert both(params) == {"a": {"bias": False, "kernel": True}, "lora_a": False}
    either = jaxreg.masks.any_of(jaxreg.masks.decayable, jaxreg.masks.by_path(include="lora_"))
    assert either(params) == {"a": {"bias": False, "kernel": True}, "lora_a": True}
    assert jaxreg.masks.negate(tree) == {"a": {"bias": False, "kernel": False}, "lora_a": True}
    assert not callable(jaxreg.masks.all_of(tree, tree))
    assert jaxreg.masks.negate(jaxreg.masks.decayable)(params) == {
        "a": {"bias": True, "kernel": False},
        "lora_a": True,
    }
    # usable as jaxreg's and optax's mask=
    mask = jaxreg.masks.all_of(jaxreg.masks.decayable, jaxreg.masks.by_path(exclude="^a/"))
    zeros = jax.tree.map(jnp.zeros_like, params)
    for tx in (jaxreg.add_decayed_weights(1.0, mask=mask), optax.add_decayed_weights(1.0, mask=mask)):
        updates, _ = tx.update(zeros, tx.init(params), params)
        assert float(jnp.sum(jnp.abs(updates["a"]["kernel"]))) == 0.0  # excluded by the path rule
        assert float(jnp.sum(jnp.abs(updates["lora_a"]))) == 0.0  # not decayable


def test_combinator_errors_name_the_problem():
    with pytest.raises(ValueError, match="at least one mask"):
        jaxreg.masks.all_of()
    with pytest.raises(TypeError, match="mask 1 is None"):
        jaxreg.masks.any_of(jaxreg.masks.decayable, None)
    with pytest.raises(ValueError, match="same structure"):
        jaxreg.masks.all_of({"a": True}, {"b": True})


def test_factors_first_match_wins_and_validates():
    params = {
        "embed": {"embedding": jnp.ones((3, 2))},
        "dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)},
    }
    f = jaxreg.masks.factors([(r"embedding", 0.0), (r"dense/", 2.0), (r"kernel$", 3.0)], default=0.5)
    assert f(params) == {"dense": {"bias": 2.0, "kernel": 2.0}, "embed": {"embedding": 0.0}}
    with pytest.raises(ValueError, match="rules\\[0\\] factor"):
        jaxreg.masks.factors([("a", -1.0)])
    with pytest.raises(TypeError, match="rules\\[0\\]"):
        jaxreg.masks.factors(["kernel"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="default"):
        jaxreg.masks.factors([], default=float("nan"))
