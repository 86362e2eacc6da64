"""The flat public API of ``jaxreg/__init__.py``: __all__, light imports (Flax on first access), the version."""

import subprocess
import sys
import types

import jaxreg
import jaxreg.linen as jrl
import jaxreg.nnx as jrx


def test_submodules_are_reachable_from_the_package():
    import jaxreg as pkg

    assert pkg.linen.Dropout is jrl.Dropout
    assert pkg.nnx.Dropout is jrx.Dropout


def test_all_lists_every_public_name_once_and_each_resolves():
    assert len(jaxreg.__all__) == len(set(jaxreg.__all__))
    assert jaxreg.__all__ == sorted(jaxreg.__all__, key=lambda n: (not n[0].isupper(), n))
    for name in jaxreg.__all__:
        assert getattr(jaxreg, name) is not None
    helpers = {"annotations", "importlib", "TYPE_CHECKING", "Any"}
    public = {
        n for n, v in vars(jaxreg).items() if not n.startswith("_") and not isinstance(v, types.ModuleType)
    }
    assert public - helpers <= set(jaxreg.__all__)


def test_import_jaxreg_imports_neither_flax_nor_the_demo_dependencies():
    code = (
        "import sys, jaxreg\n"
        "print(sorted(m for m in ('flax', 'sklearn', 'matplotlib', 'rich', 'equinox') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_flax_packages_load_on_first_use():
    code = "import sys, jaxreg\nm = jaxreg.nnx.Dropout\nprint('flax' in sys.modules, jaxreg.linen.Dropout.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "Dropout"]
