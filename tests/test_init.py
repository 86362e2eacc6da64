"""The flat public API of ``jaxreg/__init__.py``: jaxreg.linen and jaxreg.nnx load on first access."""

import jaxreg.linen as jrl
import jaxreg.nnx as jrx


def test_submodules_are_reachable_from_the_package():
    import jaxreg as pkg

    assert pkg.linen.Dropout is jrl.Dropout
    assert pkg.nnx.Dropout is jrx.Dropout
