"""examples/transformer_weight_decay.py runs at a small size and decays what it says."""

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_transformer_weight_decay_example():
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "transformer_weight_decay.py"), "--steps", "4"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    decayed = {
        name: set(paths.split(", "))
        for name, paths in re.findall(r"^(weights_only|decayable) decays: (.*)$", out.stdout, re.M)
    }
    kernels = {
        f"blocks/{m}/kernel" for m in ("attn/query", "attn/key", "attn/value", "attn/out", "up", "down")
    }
    assert decayed["decayable"] == kernels | {"head/kernel"}
    assert {"blocks/ln1/scale", "blocks/attn/query/bias", "embed/embedding", "pos_embedding"} <= decayed[
        "weights_only"
    ]
    losses = [float(v) for v in re.findall(r"validation loss (\S+)", out.stdout)]
    assert len(losses) == 6 and all(0 < v < 10 for v in losses)
