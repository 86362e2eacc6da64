"""Generates tests/data/torch_sgd_reference.npz: PyTorch SGD trajectories that jaxreg must follow.

Run with any PyTorch (recorded: 2.13.0, CPU):  python tests/make_torch_reference.py
The test suite only reads the .npz, so torch is never needed to run it.

Trajectories, on a linear regression y ~ x @ w + b with mean-squared-error loss:
  l1:           torch.optim.SGD(lr) on mse + lam * w.abs().sum()         (bias not penalized)
  weight_decay: torch.optim.SGD(lr, momentum, weight_decay=lam) on mse    (decays w and b)
"""

import pathlib

import numpy as np
import torch

STEPS = 60
LR = 0.05
LAM_L1 = 0.3
LAM_WD = 0.1
MOMENTUM = 0.9


def main() -> None:
    rng = np.random.default_rng(42)
    x = rng.normal(size=(32, 5))
    w_true = np.array([1.5, 0.0, -2.0, 0.0, 0.3])
    y = x @ w_true + 0.7 + 0.1 * rng.normal(size=32)
    w0 = rng.normal(size=5) * 0.5
    b0 = np.array(0.1)
    out = {
        "x": x,
        "y": y,
        "w0": w0,
        "b0": b0,
        "lr": LR,
        "lam_l1": LAM_L1,
        "lam_wd": LAM_WD,
        "momentum": MOMENTUM,
    }

    def run(kind):
        w = torch.tensor(w0, dtype=torch.float64, requires_grad=True)
        b = torch.tensor(b0, dtype=torch.float64, requires_grad=True)
        xt, yt = torch.tensor(x), torch.tensor(y)
        if kind == "l1":
            opt = torch.optim.SGD([w, b], lr=LR)
        else:
            opt = torch.optim.SGD([w, b], lr=LR, momentum=MOMENTUM, weight_decay=LAM_WD)
        ws, bs = [], []
        for _ in range(STEPS):
            opt.zero_grad()
            loss = torch.mean((xt @ w + b - yt) ** 2)
            if kind == "l1":
                loss = loss + LAM_L1 * w.abs().sum()
            loss.backward()
            opt.step()
            ws.append(w.detach().numpy().copy())
            bs.append(float(b.detach()))
        return np.array(ws), np.array(bs)

    out["l1_w"], out["l1_b"] = run("l1")
    out["wd_w"], out["wd_b"] = run("weight_decay")
    out["torch_version"] = np.array(torch.__version__)
    path = pathlib.Path(__file__).parent / "data" / "torch_sgd_reference.npz"
    np.savez(path, **out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
