"""A textbook PyTorch example of L1-regularized linear regression, rewritten with jaxreg and optax.

The PyTorch program adds ``0.1 * torch.norm(weight, 1)`` to the MSE loss *and* builds
``optim.SGD(..., weight_decay=0.1)`` with the comment "weight_decay is the L1 strength". That
comment is wrong: PyTorch's ``weight_decay`` is coupled **L2** (it adds ``0.1 * w`` to the
gradient of every parameter, bias included), so the program applies L1 *and* L2. Here the two
are separate, explicit transforms:

* ``jaxreg.add_l1(lam)``: the example's update rule w <- w - lr * (dJ/dw + lam * sign(w)),
  placed before ``optax.sgd``; it hovers around zero but does not reach it;
* ``jaxreg.prox_l1(lam, lr)``: the proximal (soft-thresholding) step, placed after it; it
  lands on exact zeros.

Run:  python examples/pytorch_l1_regression.py
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxreg

LR, LAM, EPOCHS = 0.05, 0.1, 500


def make_data(key, n=200, d=10):
    kx, kn = jax.random.split(key)
    x = jax.random.normal(kx, (n, d))
    w_true = jnp.array([2.0, -3.0, 0.0, 0.0, 1.5, 0.0, 0.0, 0.0, 0.5, 0.0])
    y = x @ w_true + 0.3 + 0.1 * jax.random.normal(kn, (n,))
    return x, y[:, None]


def init_params(key, d=10):
    return {"linear": {"kernel": 0.1 * jax.random.normal(key, (d, 1)), "bias": jnp.zeros(1)}}


def mse(params, x, y):
    pred = x @ params["linear"]["kernel"] + params["linear"]["bias"]
    return jnp.mean((pred - y) ** 2)  # nn.MSELoss()


def train(tx, params, x, y):
    @jax.jit
    def step(params, state):
        grads = jax.grad(mse)(params, x, y)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    state = tx.init(params)
    for _ in range(EPOCHS):
        params, state = step(params, state)
    return params


def main():
    x, y = make_data(jax.random.key(0))
    params = init_params(jax.random.key(1))
    only_kernel = jaxreg.masks.by_path(include="kernel")  # the example penalizes model.linear.weight only

    # The example's update rule: the L1 subgradient, added before the learning-rate scaling.
    subgradient = optax.chain(jaxreg.add_l1(LAM, mask=only_kernel), optax.sgd(LR))
    # The same objective, solved with the proximal step: exact zeros.
    proximal = optax.chain(optax.sgd(LR), jaxreg.prox_l1(LAM, LR, mask=only_kernel))
    # What the PyTorch program really ran: L1 in the loss plus SGD(weight_decay=0.1), i.e. L2 on all params.
    l1_and_l2 = optax.chain(
        jaxreg.add_l1(LAM, mask=only_kernel), jaxreg.add_decayed_weights(0.1), optax.sgd(LR)
    )

    for name, tx in [
        ("add_l1", subgradient),
        ("prox_l1", proximal),
        ("add_l1 + weight decay", l1_and_l2),
    ]:
        p = train(tx, params, x, y)
        w = p["linear"]["kernel"][:, 0]
        print(
            f"{name:22s} loss={mse(p, x, y):.4f} exact zeros={int(jnp.sum(w == 0))}/10  w={np.array2string(np.asarray(w), precision=3, suppress_small=True)}"
        )


if __name__ == "__main__":
    main()
