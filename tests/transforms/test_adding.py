"""add_l1 and add_decayed_weights: PyTorch SGD trajectories (tests/data) and the README's core section."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import DATA

import jaxreg

REF = DATA / "torch_sgd_reference.npz"


def _run(tx, params, loss, steps):
    @jax.jit
    def step(p, s):
        u, s = tx.update(jax.grad(loss)(p), s, p)
        return optax.apply_updates(p, u), s

    state, traj = tx.init(params), []
    for _ in range(steps):
        params, state = step(params, state)
        traj.append(params)
    return traj


@pytest.fixture(scope="module")
def ref():
    return dict(np.load(REF))


def _mse(ref):
    x, y = jax.device_put(ref["x"]), jax.device_put(ref["y"])
    return lambda p: jnp.mean((x @ p["w"] + p["b"] - y) ** 2)


def test_add_l1_follows_torch_sgd_on_l1_loss(ref):
    with jax.enable_x64(True):
        params = {"w": jax.device_put(ref["w0"]), "b": jax.device_put(ref["b0"])}
        tx = optax.chain(
            jaxreg.add_l1(float(ref["lam_l1"]), mask={"w": True, "b": False}), optax.sgd(float(ref["lr"]))
        )
        traj = _run(tx, params, _mse(ref), len(ref["l1_w"]))
        np.testing.assert_allclose(np.stack([p["w"] for p in traj]), ref["l1_w"], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(np.stack([p["b"] for p in traj]), ref["l1_b"], rtol=1e-10, atol=1e-12)


def test_add_decayed_weights_follows_torch_sgd_weight_decay_momentum(ref):
    with jax.enable_x64(True):
        params = {"w": jax.device_put(ref["w0"]), "b": jax.device_put(ref["b0"])}
        tx = optax.chain(
            jaxreg.add_decayed_weights(float(ref["lam_wd"])),
            optax.sgd(float(ref["lr"]), momentum=float(ref["momentum"])),
        )
        traj = _run(tx, params, _mse(ref), len(ref["wd_w"]))
        np.testing.assert_allclose(np.stack([p["w"] for p in traj]), ref["wd_w"], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(np.stack([p["b"] for p in traj]), ref["wd_b"], rtol=1e-10, atol=1e-12)
        # ... and SGD(weight_decay=lam) is the gradient of lam/2 ||w||^2, i.e. lam * l2_penalty, not lam * ||w||^2.
        lam = float(ref["lam_wd"])
        loss = lambda p: _mse(ref)(p) + lam * jaxreg.l2_penalty(p)  # noqa: E731
        traj2 = _run(
            optax.sgd(float(ref["lr"]), momentum=float(ref["momentum"])), params, loss, len(ref["wd_w"])
        )
        np.testing.assert_allclose(np.stack([p["w"] for p in traj2]), ref["wd_w"], rtol=1e-10, atol=1e-12)
