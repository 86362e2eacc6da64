"""A tiny GAN on 2-D data with a gradient penalty on the critic: WGAN-GP or R1, in flax NNX.

The data are eight Gaussians on a ring (radius 2, standard deviation 0.05); the
generator and the critic are small MLPs. Two losses:

* ``--penalty wgan-gp`` (Gulrajani et al. 2017): the critic minimizes
  ``E D(fake) - E D(real) + 10 * jaxreg.gradient_penalty(key, D, real, fake)``,
  five critic steps per generator step, Adam with the paper's betas (0.5, 0.9)
  and ten times its learning rate (1e-3, for short runs); the penalty pulls the
  critic's gradient norm at random interpolates towards 1.
* ``--penalty r1`` (Mescheder et al. 2018): the non-saturating GAN loss, the
  critic adding ``gamma / 2 * jaxreg.r1_penalty(D, real)`` (gamma = 1), which
  pulls the gradient at the real data towards 0; one critic step per generator
  step, Adam(1e-3, b1=0, b2=0.99).

Every ``--log-every`` generator steps the script prints the critic's loss, the
penalty and the mean norm of the critic's input gradient where the penalty
acts (at interpolates for WGAN-GP, at real samples for R1), measured here with
``jax.vmap(jax.grad(...))`` one example at a time, independently of jaxreg, and
at the end the mean distance of generated samples to the nearest mode.

Run: ``python examples/gan_gradient_penalty.py [--penalty wgan-gp|r1] [--steps 1000]``
(about a minute on a laptop CPU at the default size).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import jaxreg

CENTERS = 2.0 * np.stack([np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)], axis=1)


def sample_real(key, n):
    """n points from the mixture of eight Gaussians on the ring."""
    k_mode, k_noise = jax.random.split(key)
    centers = jnp.asarray(CENTERS, jnp.float32)[jax.random.randint(k_mode, (n,), 0, 8)]
    return centers + 0.05 * jax.random.normal(k_noise, (n, 2))


class MLP(nnx.Module):
    """Linear -> SiLU -> Linear -> SiLU -> Linear (smooth: the penalty differentiates through it)."""

    def __init__(self, d_in, hidden, d_out, *, rngs: nnx.Rngs):
        self.l1 = nnx.Linear(d_in, hidden, rngs=rngs)
        self.l2 = nnx.Linear(hidden, hidden, rngs=rngs)
        self.l3 = nnx.Linear(hidden, d_out, rngs=rngs)

    def __call__(self, x):
        return self.l3(jax.nn.silu(self.l2(jax.nn.silu(self.l1(x)))))


def per_example_grad_norms(critic, x):
    """||grad_x D(x_i)|| one example at a time (the quantity the penalties act on)."""
    grads = jax.vmap(jax.grad(lambda xi: critic(xi[None])[0, 0]))(x)
    return jnp.linalg.norm(grads, axis=1)


def make_steps(penalty: str, batch: int, strength: float):
    @nnx.jit
    def critic_step(critic, generator, optimizer, key):
        k_real, k_z, k_gp = jax.random.split(key, 3)
        real = sample_real(k_real, batch)
        fake = generator(jax.random.normal(k_z, (batch, 2)))

        def loss_fn(critic):
            def score(x):
                return critic(x)  # (batch, 1): one score per example

            if penalty == "wgan-gp":
                pen = jaxreg.gradient_penalty(k_gp, score, real, fake)
                loss = jnp.mean(score(fake)) - jnp.mean(score(real)) + strength * pen
            else:
                pen = jaxreg.r1_penalty(score, real)
                adversarial = jnp.mean(jax.nn.softplus(-score(real))) + jnp.mean(jax.nn.softplus(score(fake)))
                loss = adversarial + strength / 2 * pen
            return loss, pen

        (loss, pen), grads = nnx.value_and_grad(loss_fn, has_aux=True)(critic)
        optimizer.update(critic, grads)
        if penalty == "wgan-gp":  # measure where the penalty acts: random interpolates
            eps = jax.random.uniform(jax.random.fold_in(k_gp, 1), (batch, 1))
            at = eps * real + (1 - eps) * fake
        else:
            at = real
        return loss, pen, jnp.mean(per_example_grad_norms(critic, at))

    @nnx.jit
    def generator_step(critic, generator, optimizer, key):
        z = jax.random.normal(key, (batch, 2))

        def loss_fn(generator):
            score = critic(generator(z))
            return -jnp.mean(score) if penalty == "wgan-gp" else jnp.mean(jax.nn.softplus(-score))

        loss, grads = nnx.value_and_grad(loss_fn)(generator)
        optimizer.update(generator, grads)
        return loss

    return critic_step, generator_step


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--penalty", choices=["wgan-gp", "r1"], default="wgan-gp")
    parser.add_argument("--steps", type=int, default=1000, help="generator steps")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--log-every", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()

    wgan = args.penalty == "wgan-gp"
    n_critic, strength = (5, 10.0) if wgan else (1, 1.0)  # lambda = 10 (WGAN-GP); gamma = 1 (R1)
    tx = optax.adam(1e-3, b1=0.5, b2=0.9) if wgan else optax.adam(1e-3, b1=0.0, b2=0.99)
    rngs = nnx.Rngs(args.seed)
    critic = MLP(2, args.hidden, 1, rngs=rngs)
    generator = MLP(2, args.hidden, 2, rngs=rngs)
    opt_c = nnx.Optimizer(critic, tx, wrt=nnx.Param)
    opt_g = nnx.Optimizer(generator, tx, wrt=nnx.Param)
    critic_step, generator_step = make_steps(args.penalty, args.batch, strength)

    where = "interpolates" if wgan else "real samples"
    print(f"{args.penalty}: {n_critic} critic step(s) per generator step, penalty strength {strength}")
    key = jax.random.key(args.seed + 1)
    for step in range(1, args.steps + 1):
        for _ in range(n_critic):
            key, k = jax.random.split(key)
            loss, pen, gnorm = critic_step(critic, generator, opt_c, k)
        key, k = jax.random.split(key)
        generator_step(critic, generator, opt_g, k)
        if step % args.log_every == 0 or step == 1:
            print(
                f"step {step:5d}  critic loss {float(loss):+.4f}  penalty {float(pen):.4f}  "
                f"grad norm at {where} {float(gnorm):.3f}"
            )
    samples = np.asarray(generator(jax.random.normal(jax.random.key(99), (2000, 2))))
    distance = np.min(np.linalg.norm(samples[:, None, :] - CENTERS[None], axis=2), axis=1).mean()
    print(
        f"mean distance of generated samples to the nearest mode {distance:.3f} ({time.perf_counter() - start:.1f} s)"
    )


if __name__ == "__main__":
    main()
