"""Generates tests/data/decay_reference.npz: timm AdamW trajectories with and without corrected weight decay.

Rerun with torch and timm installed (recorded: torch 2.14.1, timm 1.0.31, CPU, float64), e.g. in a
throwaway virtual environment:

    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch timm numpy
    /tmp/torchenv/bin/python tests/make_decay_reference.py

The test suite (tests/transforms/test_decay.py) only reads the .npz, so neither torch nor timm is
needed to run it. torch and timm are imported inside main(), so that pytest's --doctest-modules can
import this file without them.

The optimizer is ``timm.optim.AdamWLegacy`` (what ``timm.optim.create_optimizer_v2("adamc", ...)``
builds): with ``corrected_weight_decay=True`` it snapshots the constructor ``lr`` as ``max_lr`` and,
each step, multiplies the parameters by ``1 - weight_decay * lr_t**2 / max_lr`` before the Adam step
``lr_t * m_hat / (sqrt(v_hat) + eps)``; with ``False`` the factor is ``1 - weight_decay * lr_t``
(AdamW). The problem: least squares ``0.5 * mean((x @ w + b - y)**2)`` on fixed random data, both
``w`` (5, 3) and ``b`` (3,) decayed, the learning rate set by hand each step to a warmup-cosine
schedule (the values are stored as ``lr``; the test rebuilds it with
``optax.warmup_cosine_decay_schedule`` and checks it against them):

    lr_t = INIT + (PEAK - INIT) * t / WARMUP                                  for t < WARMUP
    lr_t = END + (PEAK - END) * 0.5 * (1 + cos(pi * (t - WARMUP) / (STEPS - WARMUP)))   otherwise

Stored: the data, the initial parameters, the hyperparameters, ``lr`` (STEPS,), and the parameters
after each step: ``corrected_w`` (STEPS, 5, 3), ``corrected_b`` (STEPS, 3), ``plain_w``, ``plain_b``.
"""

import math
import pathlib

import numpy as np

STEPS = 30
WARMUP = 5
INIT_LR = 0.005
PEAK_LR = 0.05
END_LR = 0.001
WEIGHT_DECAY = 0.5
BETAS = (0.9, 0.99)
EPS = 1e-8


def lr_at(t: int) -> float:
    if t < WARMUP:
        return INIT_LR + (PEAK_LR - INIT_LR) * t / WARMUP
    frac = (t - WARMUP) / (STEPS - WARMUP)
    return END_LR + (PEAK_LR - END_LR) * 0.5 * (1 + math.cos(math.pi * frac))


def main() -> None:
    import timm
    import torch
    from timm.optim import AdamWLegacy

    rng = np.random.default_rng(2506)
    x = rng.normal(size=(16, 5))
    y = x @ rng.normal(size=(5, 3)) + 0.3 + 0.1 * rng.normal(size=(16, 3))
    w0 = rng.normal(size=(5, 3))
    b0 = rng.normal(size=3)
    lrs = np.array([lr_at(t) for t in range(STEPS)])

    def run(corrected: bool):
        w = torch.tensor(w0, dtype=torch.float64, requires_grad=True)
        b = torch.tensor(b0, dtype=torch.float64, requires_grad=True)
        xt, yt = torch.tensor(x), torch.tensor(y)
        opt = AdamWLegacy(
            [w, b],
            lr=PEAK_LR,  # snapshotted as max_lr by corrected_weight_decay
            betas=BETAS,
            eps=EPS,
            weight_decay=WEIGHT_DECAY,
            corrected_weight_decay=corrected,
            foreach=False,
        )
        ws, bs = [], []
        for t in range(STEPS):
            for group in opt.param_groups:
                group["lr"] = float(lrs[t])
            opt.zero_grad()
            loss = 0.5 * torch.mean((xt @ w + b - yt) ** 2)
            loss.backward()
            opt.step()
            ws.append(w.detach().numpy().copy())
            bs.append(b.detach().numpy().copy())
        return np.array(ws), np.array(bs)

    corrected_w, corrected_b = run(corrected=True)
    plain_w, plain_b = run(corrected=False)
    out = pathlib.Path(__file__).parent / "data" / "decay_reference.npz"
    np.savez(
        out,
        x=x,
        y=y,
        w0=w0,
        b0=b0,
        lr=lrs,
        init_lr=INIT_LR,
        peak_lr=PEAK_LR,
        end_lr=END_LR,
        warmup_steps=WARMUP,
        weight_decay=WEIGHT_DECAY,
        b1=BETAS[0],
        b2=BETAS[1],
        eps=EPS,
        corrected_w=corrected_w,
        corrected_b=corrected_b,
        plain_w=plain_w,
        plain_b=plain_b,
    )
    print(f"wrote {out} (torch {torch.__version__}, timm {timm.__version__})")


if __name__ == "__main__":
    main()
