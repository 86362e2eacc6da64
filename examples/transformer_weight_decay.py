"""Weight decay on a small transformer language model with scanned layers.

A character-level NNX transformer (token and positional embeddings, a stack of
pre-norm blocks created with ``nnx.vmap`` and run with ``jax.lax.scan``,
multi-head causal attention, LayerNorm, an MLP) is trained on text that ships
with Python (the docstrings of a few standard-library modules), once per
weight-decay configuration, from the same initialization and batches: AdamW
with each mask, then jaxreg's decoupled (learning-rate independent), corrected
(AdamC) and cautious weight decay with the ``decayable`` mask.

It prints which parameters each mask decays (``jaxreg.masks.decayable`` leaves
out the attention biases, the stacked LayerNorm scales and biases and the
embeddings, which ``weights_only`` decays because they are 2-D) and the
validation loss of each configuration.

Run: ``python examples/transformer_weight_decay.py [--steps N]`` (about a
minute on a laptop CPU with the default 300 steps).
"""

from __future__ import annotations

import argparse
import argparse as _argparse_text
import json
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import jaxreg

D, HEADS, LAYERS, SEQ, BATCH = 32, 4, 3, 32, 16
PEAK_LR, WEIGHT_DECAY = 3e-3, 0.1


def corpus() -> str:
    """Text that ships with Python: the docstrings of argparse, json and textwrap."""
    return "\n".join(m.__doc__ or "" for m in (_argparse_text, json, textwrap))


class Block(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.ln1 = nnx.LayerNorm(D, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(HEADS, D, D, decode=False, rngs=rngs)
        self.ln2 = nnx.LayerNorm(D, rngs=rngs)
        self.up = nnx.Linear(D, 4 * D, rngs=rngs)
        self.down = nnx.Linear(4 * D, D, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        causal = nnx.make_causal_mask(jnp.ones(x.shape[:2]))
        x = x + self.attn(self.ln1(x), mask=causal)
        return x + self.down(jax.nn.gelu(self.up(self.ln2(x))))


class LanguageModel(nnx.Module):
    def __init__(self, vocab: int, rngs: nnx.Rngs):
        self.embed = nnx.Embed(vocab, D, rngs=rngs)
        self.pos_embedding = nnx.Param(0.02 * jax.random.normal(rngs.params(), (SEQ, D)))

        @nnx.split_rngs(splits=LAYERS)
        @nnx.vmap(in_axes=(0,), out_axes=0)
        def make_blocks(rngs: nnx.Rngs) -> Block:
            return Block(rngs)

        self.blocks = make_blocks(rngs)  # every block parameter has a leading axis of size LAYERS
        self.ln_f = nnx.LayerNorm(D, rngs=rngs)
        self.head = nnx.Linear(D, vocab, rngs=rngs)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        x = self.embed(tokens) + self.pos_embedding[: tokens.shape[1]]
        graphdef, stacked = nnx.split(self.blocks)

        def layer(x, state):
            return nnx.merge(graphdef, state)(x), None

        x, _ = jax.lax.scan(layer, x, stacked)
        return self.head(self.ln_f(x))


def configurations(total_steps: int) -> dict[str, optax.GradientTransformation]:
    schedule = optax.warmup_cosine_decay_schedule(0.0, PEAK_LR, max(total_steps // 10, 1), total_steps)
    decay = jaxreg.masks.decayable
    return {
        "adam, no decay": optax.adam(schedule),
        "adamw, weights_only mask": optax.adamw(
            schedule, weight_decay=WEIGHT_DECAY, mask=jaxreg.masks.weights_only
        ),
        "adamw, decayable mask": optax.adamw(schedule, weight_decay=WEIGHT_DECAY, mask=decay),
        # The same decay per step at the peak, but following the schedule's shape, not the learning rate.
        "decoupled_weight_decay": optax.chain(
            optax.scale_by_adam(),
            optax.scale_by_learning_rate(schedule),
            jaxreg.decoupled_weight_decay(
                PEAK_LR * WEIGHT_DECAY, schedule=lambda t: schedule(t) / PEAK_LR, mask=decay
            ),
        ),
        "corrected_weight_decay": optax.chain(
            optax.scale_by_adam(),
            jaxreg.corrected_weight_decay(WEIGHT_DECAY, schedule, max_learning_rate=PEAK_LR, mask=decay),
            optax.scale_by_learning_rate(schedule),
        ),
        "cautious_weight_decay": optax.chain(
            optax.scale_by_adam(),
            jaxreg.cautious_weight_decay(WEIGHT_DECAY, mask=decay),
            optax.scale_by_learning_rate(schedule),
        ),
    }


def path_str(path) -> str:
    if isinstance(path[-1], jax.tree_util.GetAttrKey) and path[-1].name == "value":
        path = path[:-1]  # nnx.Param keeps its array under the attribute .value
    return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def selected(mask_fn, params) -> list[str]:
    flags = jax.tree.leaves(mask_fn(params))
    paths = [path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    return [p for p, f in zip(paths, flags, strict=True) if f]


def main(steps: int = 300, seed: int = 0) -> dict[str, float]:
    text = corpus()
    chars = sorted(set(text))
    data = np.array([chars.index(c) for c in text], np.int32)
    split = int(0.9 * len(data))
    train, valid = data[:split], data[split:]
    model = LanguageModel(len(chars), nnx.Rngs(seed))
    graphdef, params0 = nnx.split(model, nnx.Param)

    print(f"{len(data)} characters, vocabulary {len(chars)}, {LAYERS} scanned layers of width {D}")
    for name, mask in (("weights_only", jaxreg.masks.weights_only), ("decayable", jaxreg.masks.decayable)):
        print(f"{name} decays: " + ", ".join(selected(mask, params0)))

    def loss_fn(params, tokens):
        logits = nnx.merge(graphdef, params)(tokens[:, :-1])
        return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()

    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(train) - SEQ - 1, size=(steps, BATCH))
    batches = np.stack([np.stack([train[s : s + SEQ + 1] for s in row]) for row in starts])
    valid_starts = np.arange(0, len(valid) - SEQ - 1, SEQ)
    valid_batch = jnp.asarray(np.stack([valid[s : s + SEQ + 1] for s in valid_starts]))

    # The model's forward and backward pass is compiled once; each optimizer's update on its own.
    value_and_grad = jax.jit(jax.value_and_grad(loss_fn))
    valid_loss = jax.jit(loss_fn)
    results = {}
    for name, tx in configurations(steps).items():

        @jax.jit
        def apply(grads, opt_state, params, tx=tx):
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state

        params, opt_state = params0, tx.init(params0)
        for tokens in batches:
            _, grads = value_and_grad(params, jnp.asarray(tokens))
            params, opt_state = apply(grads, opt_state, params)
        results[name] = float(valid_loss(params, valid_batch))
        kernel_norm = float(jnp.sqrt(sum(jnp.sum(jnp.square(w)) for w in jax.tree.leaves(params))))
        print(f"{name:32s} validation loss {results[name]:.3f}   parameter norm {kernel_norm:.2f}")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps per configuration")
    main(parser.parse_args().steps)
