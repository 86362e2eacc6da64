"""Generates tests/data/orthogonal_reference.npz: PyTorch's orthogonal parametrization, values and gradients.

Run with any PyTorch (recorded: 2.14.1):  python tests/make_orthogonal_reference.py
The test suite only reads the .npz, so torch is never needed to run it.

For each shape (square, tall, wide, a batch), each map (``"cayley"``, ``"matrix_exp"``,
``"householder"``) and with or without a base (``use_trivialization``), the unconstrained
matrix ``a`` is copied into ``torch.nn.utils.parametrizations.orthogonal``'s ``original``
(and a random orthogonal ``base`` into its buffer), and the script records the parametrized
weight ``q`` and the gradient of ``sum(g * q)`` with respect to ``a``, in float64.

The Householder map reads the diagonal of ``a`` as column signs, which PyTorch's
``right_inverse`` sets to +-1: it gets ``a_householder``, ``a`` with its diagonal replaced
by random signs (from a second generator, so that the other arrays do not change). One
more case records what PyTorch does with a diagonal that is not +-1
(``4x4/householder/trunc``: ``a_householder`` with the diagonal (-1, 0.5, 1.5, -0.25)).
"""

import pathlib

import numpy as np

SHAPES = [(4, 4), (5, 3), (3, 5), (2, 4, 3)]
MAPS = ["cayley", "matrix_exp", "householder"]
TRUNC_DIAGONAL = [-1.0, 0.5, 1.5, -0.25]


def main() -> None:
    # torch is imported here, not at the top: pytest --doctest-modules imports this file without it.
    import torch
    from torch.nn.utils.parametrizations import orthogonal

    class Holder(torch.nn.Module):
        def __init__(self, shape):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(shape, dtype=torch.float64))

    def parametrized(name, a, g, base):
        """``(q, grad of sum(g * q) with respect to a)`` of PyTorch's map ``name``; ``base`` or None."""
        holder = Holder(a.shape)
        orthogonal(holder, "weight", orthogonal_map=name, use_trivialization=base is not None)
        with torch.no_grad():
            holder.parametrizations.weight.original.copy_(torch.from_numpy(a))
            if base is not None:
                holder.parametrizations.weight[0].base.copy_(torch.from_numpy(base))
        q = holder.weight
        (q * torch.from_numpy(g)).sum().backward()
        return q.detach().numpy(), holder.parametrizations.weight.original.grad.numpy()

    rng, sign_rng = np.random.default_rng(0), np.random.default_rng(1)
    out = {"torch_version": np.array(torch.__version__)}
    for shape in SHAPES:
        n, k = max(shape[-2:]), min(shape[-2:])
        a = rng.normal(size=shape)
        g = rng.normal(size=shape)
        base = np.linalg.qr(rng.normal(size=(*shape[:-2], n, n)))[0]
        a_householder = a.copy()
        a_householder[..., range(k), range(k)] = sign_rng.choice([-1.0, 1.0], size=(*shape[:-2], k))
        tag = "x".join(map(str, shape))
        out[f"{tag}/a"], out[f"{tag}/g"], out[f"{tag}/base"] = a, g, base
        out[f"{tag}/a_householder"] = a_householder
        for name in MAPS:
            for use_base in (False, True):
                key = f"{tag}/{name}/{'base' if use_base else 'plain'}"
                a_map = a_householder if name == "householder" else a
                out[f"{key}/q"], out[f"{key}/grad"] = parametrized(name, a_map, g, base if use_base else None)
    a_trunc = out["4x4/a_householder"].copy()
    a_trunc[range(4), range(4)] = TRUNC_DIAGONAL
    out["4x4/householder/trunc/a"] = a_trunc
    out["4x4/householder/trunc/q"], _ = parametrized("householder", a_trunc, out["4x4/g"], None)
    path = pathlib.Path(__file__).parent / "data" / "orthogonal_reference.npz"
    np.savez(path, **out)
    print(f"wrote {path} ({len(out)} arrays)")


if __name__ == "__main__":
    main()
