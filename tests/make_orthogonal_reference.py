"""Generates tests/data/orthogonal_reference.npz: PyTorch's orthogonal parametrization, values and gradients.

Run with any PyTorch (recorded: 2.14.1, CPU):  python tests/make_orthogonal_reference.py
The test suite only reads the .npz, so torch is never needed to run it.

For each shape (square, tall, wide, a batch), each map (``"cayley"``, ``"matrix_exp"``)
and with or without a base (``use_trivialization``), the unconstrained matrix ``a`` is
copied into ``torch.nn.utils.parametrizations.orthogonal``'s ``original`` (and a random
orthogonal ``base`` into its buffer), and the script records the parametrized weight
``q`` and the gradient of ``sum(g * q)`` with respect to ``a``, in float64.
"""

import pathlib

import numpy as np

SHAPES = [(4, 4), (5, 3), (3, 5), (2, 4, 3)]
MAPS = ["cayley", "matrix_exp"]


def main() -> None:
    # torch is imported here, not at the top: pytest --doctest-modules imports this file without it.
    import torch
    from torch.nn.utils.parametrizations import orthogonal

    class Holder(torch.nn.Module):
        def __init__(self, shape):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(shape, dtype=torch.float64))

    rng = np.random.default_rng(0)
    out = {"torch_version": np.array(torch.__version__)}
    for shape in SHAPES:
        n = max(shape[-2:])
        a = rng.normal(size=shape)
        g = rng.normal(size=shape)
        base = np.linalg.qr(rng.normal(size=(*shape[:-2], n, n)))[0]
        tag = "x".join(map(str, shape))
        out[f"{tag}/a"], out[f"{tag}/g"], out[f"{tag}/base"] = a, g, base
        for name in MAPS:
            for use_base in (False, True):
                holder = Holder(shape)
                orthogonal(holder, "weight", orthogonal_map=name, use_trivialization=use_base)
                with torch.no_grad():
                    holder.parametrizations.weight.original.copy_(torch.from_numpy(a))
                    if use_base:
                        holder.parametrizations.weight[0].base.copy_(torch.from_numpy(base))
                q = holder.weight
                (q * torch.from_numpy(g)).sum().backward()
                key = f"{tag}/{name}/{'base' if use_base else 'plain'}"
                out[f"{key}/q"] = q.detach().numpy()
                out[f"{key}/grad"] = holder.parametrizations.weight.original.grad.numpy()
    path = pathlib.Path(__file__).parent / "data" / "orthogonal_reference.npz"
    np.savez(path, **out)
    print(f"wrote {path} ({len(out)} arrays)")


if __name__ == "__main__":
    main()
