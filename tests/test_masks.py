"""jaxreg.masks (weights_only, by_path) and the mask= argument: prefixes, callables, mismatches, optax."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import params_tree

import jaxreg


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

    variables = Net().init(jax.random.key(0), jnp.ones((1, 2)))
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
    u, _ = tx.update(jax.tree.map(jnp.zeros_like, state), tx.init(state), state)
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
