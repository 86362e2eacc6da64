"""CutMix, the mixup/CutMix switch, random erasing, and mixup's pairing and per-example options.

Oracles: NumPy transcriptions of timm's ``rand_bbox`` + ``cutmix_bbox_and_lam``
(timm 1.0, ``timm/data/mixup.py``) and of torchvision's
``RandomErasing.get_params`` (``torchvision/transforms/transforms.py``), fed the
same uniforms as the code under test (only the source of randomness differs:
``np.random.randint(0, n)`` is ``floor(u * n)``). Statistical bounds:

* a count ``k`` of ``n`` Bernoulli(``p``) events: ``|k - n p| < 5 sqrt(n p (1 - p))``;
* a sample mean against an independent Monte Carlo oracle: the difference is
  below 5 standard errors ``5 sqrt(s1^2 / n1 + s2^2 / n2)``;
* the empirical CDF of ``n`` i.i.d. draws: ``sqrt(n) sup |F_n - F| < 2.69``
  (Dvoretzky-Kiefer-Wolfowitz with Massart's constant: probability < 1e-6).

Keys are fixed, so the tests are reproducible.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jaxreg
from jaxreg._stochastic._mixing import cutmix_box, erase_box

H, W = 8, 12


def _assert_binomial(k, n, p):
    assert abs(k - n * p) < 5 * math.sqrt(n * p * (1 - p)), (k, n * p)


def _assert_means_agree(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    se = math.sqrt(a.var() / a.size + b.var() / b.size)
    assert abs(a.mean() - b.mean()) < 5 * se, (a.mean(), b.mean(), se)


# ----------------------------------------------------------------------------- oracles


def _timm_rand_bbox_and_lam(h, w, lam, cy, cx):
    """timm ``rand_bbox(img_shape, lam)`` with the centre given, then ``correct_lam``."""
    ratio = np.sqrt(1 - lam)
    cut_h, cut_w = int(h * ratio), int(w * ratio)
    yl = np.clip(cy - cut_h // 2, 0, h)
    yh = np.clip(cy + (cut_h + 1) // 2, 0, h)
    xl = np.clip(cx - cut_w // 2, 0, w)
    xh = np.clip(cx + (cut_w + 1) // 2, 0, w)
    bbox_area = (yh - yl) * (xh - xl)
    return yl, yh, xl, xh, 1.0 - bbox_area / float(h * w)


def _torchvision_erase_params(h, w, scale, ratio, u_area, u_ratio, u_top, u_left):
    """torchvision ``RandomErasing.get_params`` with its uniforms given; ``None`` if no attempt fits."""
    area = h * w
    log_ratio = np.log(np.asarray(ratio, np.float32))  # torch.log(torch.tensor(ratio))
    for a in range(10):
        erase_area = area * float(np.float32(scale[0] + (scale[1] - scale[0]) * u_area[a]))
        aspect_ratio = math.exp(float(np.float32(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * u_ratio[a])))
        bh = round(math.sqrt(erase_area * aspect_ratio))  # Python round: half to even
        bw = round(math.sqrt(erase_area / aspect_ratio))
        if not (bh < h and bw < w):
            continue
        return int(u_top * (h - bh + 1)), int(u_left * (w - bw + 1)), bh, bw
    return None


def test_cutmix_box_is_timms_for_every_centre():
    lams = np.concatenate([np.linspace(0, 1, 97), np.random.default_rng(0).beta(1.0, 1.0, 40)]).astype(
        np.float32
    )
    lam, cy, cx = (a.ravel() for a in np.meshgrid(lams, np.arange(H), np.arange(W), indexing="ij"))
    # Jitted, as in cutmix (one compiled program instead of one per operation).
    box = jax.jit(cutmix_box, static_argnums=(3, 4))
    got = box(jnp.asarray(lam), jnp.asarray((cy + 0.5) / H), jnp.asarray((cx + 0.5) / W), H, W)
    bounds, lam_c = np.stack([np.asarray(g) for g in got[:4]], 1).tolist(), np.asarray(got[4]).tolist()
    for i, (lam_i, cy_i, cx_i) in enumerate(zip(lam.tolist(), cy.tolist(), cx.tolist(), strict=True)):
        want = _timm_rand_bbox_and_lam(H, W, lam_i, cy_i, cx_i)
        assert bounds[i] == [int(v) for v in want[:4]], (lam_i, cy_i, cx_i)
        assert lam_c[i] == pytest.approx(want[4], abs=1e-6)


@pytest.mark.parametrize(("scale", "ratio"), [((0.02, 1 / 3), (0.3, 3.3)), ((0.3, 0.9), (0.2, 5.0))])
def test_erase_box_is_torchvisions(scale, ratio):
    rng = np.random.default_rng(1)
    n = 3000
    u = rng.random((n, 22), dtype=np.float32)
    # Jitted, as in random_erasing (one compiled program instead of one per operation).
    got = jax.jit(erase_box, static_argnums=(4, 5, 6, 7))(
        jnp.asarray(u[:, :10]),
        jnp.asarray(u[:, 10:20]),
        jnp.asarray(u[:, 20]),
        jnp.asarray(u[:, 21]),
        H,
        W,
        scale,
        ratio,
    )
    top, left, bh, bw, fits = (np.asarray(g) for g in got)
    misses = 0
    for i in range(n):
        want = _torchvision_erase_params(H, W, scale, ratio, u[i, :10], u[i, 10:20], u[i, 20], u[i, 21])
        misses += want is None
        assert bool(fits[i]) == (want is not None)
        if want is not None:
            assert (int(top[i]), int(left[i]), int(bh[i]), int(bw[i])) == want, i
    if scale[1] > 0.5:
        assert misses > 0  # the second case really exercises "no attempt fits"


# ----------------------------------------------------------------------------- cutmix


def _images(n=16, c=2, seed=0):
    return jnp.asarray(np.random.default_rng(seed).standard_normal((n, H, W, c)).astype(np.float32))


CUTMIX_CASES = [(pairing, per_example) for pairing in ("flip", "roll") for per_example in (False, True)]
CUTMIX_N, CUTMIX_CLASSES = 4000, 5


def _rectangles(mask, case):
    """The bounding boxes ``(top, bottom, left, right)`` of boolean ``(n, H, W)`` masks, asserting each is one rectangle.

    An empty mask gives ``(0, 0, 0, 0)``. ``case`` names the case in a failure.
    """
    rows, cols = mask.any(2), mask.any(1)
    nonempty = rows.any(1)

    def span(hit, size):
        first = hit.argmax(1)
        last = size - hit[:, ::-1].argmax(1)  # one past the last hit
        return np.where(nonempty, first, 0), np.where(nonempty, last, 0)

    top, bottom = span(rows, H)
    left, right = span(cols, W)
    r, c = np.arange(H), np.arange(W)
    box = ((top[:, None] <= r) & (r < bottom[:, None]))[:, :, None] & (
        (left[:, None] <= c) & (c < right[:, None])
    )[:, None, :]
    np.testing.assert_array_equal(mask, box, err_msg=case)
    return np.stack([top, bottom, left, right], 1)


@pytest.fixture(scope="module")
def cutmixed():
    """The four cases (pairing x per_example) of cutmix on one batch, from one jitted program.

    The Beta sampler is most of a compilation, and the program's size grows less than the count of
    compilations would; both CutMix tests below assert on these outputs.
    """
    x, y = _images(CUTMIX_N, 2), jnp.arange(CUTMIX_N) % CUTMIX_CLASSES
    mixed = jax.jit(
        lambda k: [
            jaxreg.cutmix(k, x, y, 1.0, num_classes=CUTMIX_CLASSES, per_example=per_example, pairing=pairing)
            for pairing, per_example in CUTMIX_CASES
        ]
    )(jax.random.key(3))
    return (
        np.asarray(x),
        np.asarray(y),
        {case: (np.asarray(xm), np.asarray(ym)) for case, (xm, ym) in zip(CUTMIX_CASES, mixed, strict=True)},
    )


def _pasted(xm, xn, partner, case):
    """Where each example shows its partner (every channel), asserting the rest is the example itself."""
    pasted = (xm == partner).all(-1) & (xm != xn).all(-1)
    kept = (xm == xn).all(-1)
    bad = np.flatnonzero(~(pasted | kept).all(axis=(1, 2)))
    assert bad.size == 0, (case, bad[:10])
    return pasted


def test_cutmix_pastes_a_rectangle_of_the_partner_and_weights_labels_by_its_area(cutmixed):
    xn, y, mixed = cutmixed
    onehot = np.eye(CUTMIX_CLASSES, dtype=np.float32)[y]
    for (pairing, per_example), (xm, ym) in mixed.items():
        case = f"pairing={pairing}, per_example={per_example}"
        partner = np.flip(xn, 0) if pairing == "flip" else np.roll(xn, 1, 0)
        y_partner = np.flip(onehot, 0) if pairing == "flip" else np.roll(onehot, 1, 0)
        pasted = _pasted(xm, xn, partner, case)
        boxes = _rectangles(pasted, case)  # every example's pasted region is one rectangle
        lam = (1 - pasted.sum(axis=(1, 2)) / (H * W))[:, None]
        np.testing.assert_allclose(
            ym, lam * onehot + (1 - lam) * y_partner, rtol=1e-6, atol=1e-7, err_msg=case
        )
        # One box per batch, or per example.
        assert (len(np.unique(boxes, axis=0)) == 1) == (not per_example), (case, np.unique(boxes, axis=0))


def test_cutmix_corrected_lambda_has_timms_distribution(cutmixed):
    """Per-example corrected lambda against timm's procedure run in NumPy (independent randomness)."""
    alpha = 1.0  # the fixture's
    xn, _, mixed = cutmixed
    xm, _ = mixed["flip", True]
    # The label weight of the example itself, 1 - pasted area (the previous test checks that the labels
    # carry it), for the first half of the batch: 2000 independent boxes.
    pasted = _pasted(xm, xn, np.flip(xn, 0), "flip, per example")
    lam_ours = 1 - pasted[: CUTMIX_N // 2].sum(axis=(1, 2)) / (H * W)
    rng = np.random.default_rng(2)
    m = 20000
    # timm's draws (np.random.beta, np.random.randint), made for all m boxes at once.
    draws = zip(
        rng.beta(alpha, alpha, m).tolist(),
        rng.integers(0, H, m).tolist(),
        rng.integers(0, W, m).tolist(),
        strict=True,
    )
    lam_timm = [_timm_rand_bbox_and_lam(H, W, lam, cy, cx)[4] for lam, cy, cx in draws]
    _assert_means_agree(lam_ours, lam_timm)
    _assert_means_agree(lam_ours**2, np.asarray(lam_timm) ** 2)


def test_mixup_per_example_lambda_is_beta_distributed():
    n, alpha = 4000, 0.4
    x = jnp.zeros((n, 1))
    y = jnp.arange(n) % 2  # flip pairs opposite parities: y_mixed[i, y_i] = lambda_i
    # Jitted: one program instead of one per operation.
    _, ym = jax.jit(lambda k: jaxreg.mixup(k, x, y, alpha, num_classes=2, per_example=True, pairing="flip"))(
        jax.random.key(0)
    )
    lam = np.asarray(ym)[np.arange(n), np.asarray(y)]
    d = stats.kstest(lam, stats.beta(alpha, alpha).cdf).statistic
    assert math.sqrt(n) * d < 2.69
    assert len(np.unique(lam)) > n // 2  # one lambda per example


def _batch_of_8():
    """8 examples of 8 features and labels in 3 classes: the shapes of test_mixup.py's eager calls,
    so that the eager operations compile once for all of them."""
    return jnp.asarray(np.random.default_rng(0).standard_normal((8, 8)).astype(np.float32)), jnp.arange(8) % 3


def test_mixup_default_is_unchanged_permutation_and_batch_lambda():
    # Images (8, H, W, 1): lambda broadcasts over the trailing axes, bit for bit.
    x, y = _images(8, 1), jnp.arange(8) % 3
    key = jax.random.key(4)
    xm, ym = jaxreg.mixup(key, x, y, 0.2, num_classes=3)
    key_lam, key_perm = jax.random.split(key)
    lam = np.asarray(jax.random.beta(key_lam, 0.2, 0.2))
    perm = np.asarray(jax.random.permutation(key_perm, 8))
    # The mixing in NumPy float32 (each operation rounded once, as JAX's).
    x, onehot = np.asarray(x), np.eye(3, dtype=np.float32)[np.asarray(y)]
    assert lam.dtype == x.dtype == np.float32
    np.testing.assert_array_equal(xm, lam * x + (1 - lam) * x[perm])
    np.testing.assert_array_equal(ym, lam * onehot + (1 - lam) * onehot[perm])


@pytest.mark.parametrize(
    ("pairing", "partner"), [("flip", lambda a: a[::-1]), ("roll", lambda a: np.roll(a, 1, 0))]
)
def test_mixup_flip_and_roll_pair_as_timm_and_torchvision(pairing, partner):
    x, y = (np.asarray(a) for a in _batch_of_8())
    xm, ym = jaxreg.mixup(jax.random.key(0), x, y, 1.0, num_classes=3, pairing=pairing)
    lam = float(ym[0, y[0]]) if partner(y)[0] != y[0] else None
    assert lam is not None
    np.testing.assert_allclose(xm, lam * x + (1 - lam) * partner(x), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- mixup_or_cutmix


def _is_cut(xm, x, xp):
    return ((xm == x) | (xm == xp)).all(axis=(1, 2, 3))


def test_mixup_or_cutmix_per_example_switch_is_binomial_and_labels_follow_each_rule():
    n, p = 2000, 0.3
    x = _images(n, 1)
    y = jnp.arange(n) % 2
    xm, ym = jax.jit(
        lambda k, s: jaxreg.mixup_or_cutmix(
            k,
            x,
            y,
            mixup_alpha=0.8,
            cutmix_alpha=1.0,
            switch_prob=s,
            num_classes=2,
            per_example=True,
            pairing="flip",
        )
    )(jax.random.key(0), jnp.float32(p))
    xm, xn, xp = np.asarray(xm), np.asarray(x), np.asarray(x)[::-1]
    cut = _is_cut(xm, xn, xp)
    _assert_binomial(int(cut.sum()), n, p)
    lam = np.asarray(ym)[np.arange(n), np.asarray(y)]
    area = (xm != xn).any(-1).mean(axis=(1, 2))
    np.testing.assert_allclose(lam[cut], 1 - area[cut], atol=1e-6)
    mixed = lam[~cut][:, None, None, None] * xn[~cut] + (1 - lam[~cut])[:, None, None, None] * xp[~cut]
    np.testing.assert_allclose(xm[~cut], mixed, rtol=1e-5, atol=1e-5)


def test_mixup_or_cutmix_per_batch_switch_is_binomial_over_keys():
    k, p = 400, 0.5
    x = _images(4, 1)
    y = jnp.arange(4) % 2
    run = jax.jit(
        jax.vmap(
            lambda key: jaxreg.mixup_or_cutmix(
                key, x, y, mixup_alpha=0.5, cutmix_alpha=1.0, num_classes=2, pairing="roll"
            )[0]
        )
    )
    xm = np.asarray(run(jax.random.split(jax.random.key(0), k)))
    xn, xp = np.asarray(x), np.roll(np.asarray(x), 1, 0)
    per_example = np.stack([_is_cut(b, xn, xp) for b in xm])
    assert (per_example.all(1) | ~per_example.any(1)).all()  # one decision for the whole batch
    _assert_binomial(int(per_example.all(1).sum()), k, p)


# ----------------------------------------------------------------------------- random_erasing


def test_random_erasing_rate_and_area_match_torchvision():
    n, p, scale, ratio = 3000, 0.4, (0.05, 0.3), (0.5, 2.0)  # every attempt fits an 8 x 12 image
    x = jnp.ones((n, H, W, 2))
    y = np.asarray(jaxreg.random_erasing(jax.random.key(0), x, probability=p, scale=scale, ratio=ratio))
    erased = (y == 0).any(-1)
    assert ((y == 0).all(-1) | (y == 1).all(-1)).all()  # every channel of a pixel together
    is_erased = erased.any(axis=(1, 2))
    _assert_binomial(int(is_erased.sum()), n, p)
    _rectangles(erased[is_erased], "random_erasing")  # each erased region is one rectangle
    rng = np.random.default_rng(3)
    areas = []
    for _ in range(20000):
        u = rng.random(22, dtype=np.float32)
        _, _, bh, bw = _torchvision_erase_params(H, W, scale, ratio, u[:10], u[10:20], u[20], u[21])
        areas.append(bh * bw / (H * W))
    _assert_means_agree(erased[is_erased].mean(axis=(1, 2)), areas)


def test_random_erasing_normal_value_and_numbers():
    x = jnp.full((256, H, W, 3), 7.0)
    y = np.asarray(jaxreg.random_erasing(jax.random.key(1), x, probability=1.0, value="normal"))
    noise = y[y != 7.0]
    n = noise.size
    assert n > 1000
    assert abs(noise.mean()) < 5 / math.sqrt(n)
    assert abs(noise.var() - 1) < 5 * math.sqrt(2 / n)
    z = np.asarray(jaxreg.random_erasing(jax.random.key(1), x, probability=1.0, value=-1.5))
    assert set(np.unique(z).tolist()) == {-1.5, 7.0}


def test_random_erasing_no_op_cases_need_no_key():
    x = _images(4, 3)
    np.testing.assert_array_equal(jaxreg.random_erasing(None, x, deterministic=True), x)
    np.testing.assert_array_equal(jaxreg.random_erasing(None, x, probability=0.0), x)
    with pytest.raises(ValueError, match="random_erasing needs a PRNG key"):
        jaxreg.random_erasing(None, x)


def test_deterministic_mixing_returns_inputs_and_one_hot_labels():
    x, y = _images(4, 1), jnp.array([0, 1, 2, 1])
    for xm, ym in (
        jaxreg.cutmix(None, x, y, 1.0, num_classes=3, deterministic=True),
        jaxreg.mixup_or_cutmix(
            None, x, y, mixup_alpha=0.2, cutmix_alpha=1.0, num_classes=3, deterministic=True
        ),
    ):
        np.testing.assert_array_equal(xm, x)
        np.testing.assert_array_equal(ym, jax.nn.one_hot(y, 3))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda x, y: jaxreg.cutmix(jax.random.key(0), x[0], y, 1.0, num_classes=3),
            ValueError,
            "x must have exactly 4",
        ),
        (
            lambda x, y: jaxreg.cutmix(jax.random.key(0), x, y, 0.0, num_classes=3),
            ValueError,
            "alpha must be",
        ),
        (
            lambda x, y: jaxreg.cutmix(jax.random.key(0), x, y, 1.0, num_classes=3, pairing="shuffle"),
            ValueError,
            "pairing must be one of",
        ),
        (
            lambda x, y: jaxreg.mixup(jax.random.key(0), x, y, 1.0, num_classes=3, pairing="zip"),
            ValueError,
            "pairing must be one of",
        ),
        (
            lambda x, y: jaxreg.mixup_or_cutmix(
                jax.random.key(0), x, y, mixup_alpha=1.0, cutmix_alpha=1.0, switch_prob=1.5, num_classes=3
            ),
            ValueError,
            r"switch_prob must lie in \[0, 1\], got 1.5",
        ),
        (
            lambda x, y: jaxreg.mixup_or_cutmix(
                jax.random.key(0), x, y, mixup_alpha=1.0, cutmix_alpha=-1.0, num_classes=3
            ),
            ValueError,
            "cutmix_alpha must be",
        ),
        (
            lambda x, y: jaxreg.random_erasing(jax.random.key(0), x, probability=2.0),
            ValueError,
            "probability must lie",
        ),
        (
            lambda x, y: jaxreg.random_erasing(jax.random.key(0), x, scale=(0.5, 0.1)),
            ValueError,
            r"scale\[0\] must be <= scale\[1\]",
        ),
        (
            lambda x, y: jaxreg.random_erasing(jax.random.key(0), x, scale=(0.1, 2.0)),
            ValueError,
            r"scale\[1\] must lie",
        ),
        (
            lambda x, y: jaxreg.random_erasing(jax.random.key(0), x, ratio=(0.0, 2.0)),
            ValueError,
            r"ratio\[0\] must be",
        ),
        (
            lambda x, y: jaxreg.random_erasing(jax.random.key(0), x, value="ones"),
            ValueError,
            "value must be one of",
        ),
        (lambda x, y: jaxreg.random_erasing(jax.random.key(0), x[0]), ValueError, "x must have exactly 4"),
    ],
)
def test_argument_errors_name_the_argument(call, error, match):
    x, y = _images(4, 1), jnp.array([0, 1, 2, 1])
    with pytest.raises(error, match=match):
        call(x, y)


_MESH_SCRIPT = textwrap.dedent(
    """
    import re, jax, jax.numpy as jnp
    from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
    from jaxreg._stochastic._pairing import partners
    for mode in (AxisType.Auto, AxisType.Explicit):
        mesh = jax.make_mesh((8,), ("b",), axis_types=(mode,))
        batch_sharded = NamedSharding(mesh, P("b"))
        x = jax.device_put(jnp.ones((64, 8, 8, 3)), batch_sharded)
        for pairing in ("permutation", "flip", "roll"):
            f = jax.jit(lambda k, x: partners(k, pairing, x)[0], out_shardings=batch_sharded)
            try:
                with jax.set_mesh(mesh):
                    hlo = f.lower(jax.random.key(0), x).compile().as_text()
            except Exception as e:
                print(mode.name, pairing, type(e).__name__)
                continue
            pattern = r"f32\\[(\\d+),8,8,3\\][^=\\n]*? (all-gather|all-to-all|collective-permute|all-reduce)(?:-start)?\\("
            ops = re.findall(pattern, hlo)
            print(mode.name, pairing, *sorted(set(f"{op}:{rows}" for rows, op in ops)))
    """
)


def test_pairing_costs_on_a_batch_sharded_mesh_are_the_documented_ones():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    out = subprocess.run(
        [sys.executable, "-c", _MESH_SCRIPT], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.split("\n")[:6] == [
        "Auto permutation all-gather:64",  # the whole batch on every device
        "Auto flip collective-permute:8",  # whole shards exchanged
        "Auto roll collective-permute:1",  # one example per device
        "Explicit permutation ShardingTypeError",
        "Explicit flip collective-permute:8",
        "Explicit roll ShardingTypeError",
    ]
