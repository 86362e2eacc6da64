"""The package's shape: a flat public API, light imports, the console script's version and extras."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

import jaxreg
from jaxreg.demo import _cli


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


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"jaxreg {jaxreg.__version__}"


def test_demo_without_the_demo_extra_names_the_install_command(monkeypatch, capsys):
    real_find_spec = _cli.importlib.util.find_spec
    monkeypatch.setattr(
        _cli.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "sklearn" else real_find_spec(name, *a),
    )
    assert _cli.main(["demo", "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "pip install 'jaxreg[demo]'" in err[0] and "sklearn" in err[0]
