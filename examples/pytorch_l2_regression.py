"""A textbook PyTorch example of L2-regularized linear regression, rewritten with jaxreg and optax.

The PyTorch program writes ``optim.SGD(model.parameters(), lr=0.01, weight_decay=0.01)`` and says
this "adds ``0.01 * torch.norm(weight, 2)**2`` to the loss". It does not: SGD's
``weight_decay=lam`` adds ``lam * w`` to the gradient, which is the gradient of
``lam/2 * ||w||^2``, half the claimed term; and it decays the bias as well. In jaxreg:

* ``jaxreg.add_decayed_weights(lam)`` before ``optax.sgd`` is exactly PyTorch's coupled
  ``weight_decay=lam`` (tests/transforms/test_adding.py checks the trajectories against PyTorch);
* ``lam * jaxreg.l2_penalty(params)`` in the loss is the same thing: ``l2_penalty`` carries the 1/2;
* the claimed term ``lam * ||w||^2`` would be ``2 * lam * l2_penalty`` (Keras ``L2(lam)``).

Run:  python examples/pytorch_l2_regression.py
"""

import jax
import jax.numpy as jnp
import optax

import jaxreg

LR, LAM, EPOCHS = 0.01, 0.01, 300


def make_data(key, n=100, d=10):
    kx, kw, kn = jax.random.split(key, 3)
    x = jax.random.normal(kx, (n, d))
    y = x @ jax.random.normal(kw, (d,)) + 0.5 * jax.random.normal(kn, (n,))
    return x, y[:, None]


def mse(params, x, y):
    return jnp.mean((x @ params["kernel"] + params["bias"] - y) ** 2)


def train(tx, loss, params, x, y):
    @jax.jit
    def step(params, state):
        updates, state = tx.update(jax.grad(loss)(params, x, y), state, params)
        return optax.apply_updates(params, updates), state

    state = tx.init(params)
    for _ in range(EPOCHS):
        params, state = step(params, state)
    return params


def main():
    x, y = make_data(jax.random.key(0))
    params = {"kernel": jnp.zeros((10, 1)), "bias": jnp.zeros(1)}

    # 1. PyTorch's SGD(lr, weight_decay=LAM): coupled L2 on every parameter.
    coupled = train(optax.chain(jaxreg.add_decayed_weights(LAM), optax.sgd(LR)), mse, params, x, y)
    # 2. The same, as a penalty in the loss: LAM * 1/2 ||w||^2 (jaxreg.l2_penalty has the 1/2).
    in_loss = train(optax.sgd(LR), lambda p, x, y: mse(p, x, y) + LAM * jaxreg.l2_penalty(p), params, x, y)
    # 3. What the example claims SGD(weight_decay) adds: LAM * ||w||^2, twice as strong.
    claimed = train(
        optax.sgd(LR),
        lambda p, x, y: mse(p, x, y) + LAM * jnp.sum(p["kernel"] ** 2 + p["bias"] ** 2),
        params,
        x,
        y,
    )

    diff = max(
        float(jnp.max(jnp.abs(a - b)))
        for a, b in zip(jax.tree.leaves(coupled), jax.tree.leaves(in_loss), strict=True)
    )
    print(f"add_decayed_weights vs l2_penalty in the loss: max |diff| = {diff:.2e}")
    print(f"||w|| coupled decay     = {float(jnp.linalg.norm(coupled['kernel'])):.5f}")
    print(f"||w|| claimed term (2x) = {float(jnp.linalg.norm(claimed['kernel'])):.5f}")
    # Keep biases out of the decay, which PyTorch's weight_decay does not do for you:
    masked = optax.chain(jaxreg.add_decayed_weights(LAM, mask=jaxreg.masks.weights_only), optax.sgd(LR))
    p = train(masked, mse, params, x, y)
    print(f"with mask=weights_only, bias = {float(p['bias'][0]):.5f}")


if __name__ == "__main__":
    main()
