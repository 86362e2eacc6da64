"""Renders benchmark JSON files as the README's performance section (markdown).

Usage, from the repository root::

    python -m benchmarks --json benchmarks/results/cpu.json
    python -m benchmarks.readme benchmarks/results/cpu.json [more.json ...] [--write docs/performance.md]

Without ``--write`` the markdown goes to stdout; with it, the text between
``<!-- BEGIN benchmarks -->`` and ``<!-- END benchmarks -->`` in the
given file is replaced, so that the README's figures are generated, never
typed. Several JSON files (e.g. one from CPU, one from a GPU) give one
subsection each.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable
from typing import Any

BEGIN = "<!-- BEGIN benchmarks -->"
END = "<!-- END benchmarks -->"


def _size(n: int) -> str:
    k = round(math.log2(n)) if n > 0 else 0
    if 2**k == n and k >= 10:
        return f"2^{k}"
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k" if n >= 1e3 else str(n)


def _num(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "-"
    if abs(x) >= 10 ** (digits - 1):
        return f"{x:.0f}"
    return f"{x:.{digits}g}"


def _ms(row: dict[str, Any], who: str = "jaxreg") -> str:
    iqr = row.get(f"{who}_iqr_ms")
    return _num(row[f"{who}_ms"]) + (f" ± {_num(iqr / 2, 2)}" if iqr is not None else "")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:+.0f}%"


def _table(header: list[str], rows: Iterable[list[str]], align: str) -> list[str]:
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join(":--" if a == "l" else "--:" for a in align) + "|")
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _by_case(rows: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, dict[str, Any]]]:
    """(name, size) -> {baseline kind or label: row}, in the order of the file."""
    out: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    for r in rows:
        out.setdefault((r["name"], r["size"]), {})[r.get("baseline_kind") or r["baseline"]] = r
    return out


def _environment(doc: dict[str, Any]) -> list[str]:
    v = doc["versions"]
    line = (
        f"**{doc['backend']}**, {doc['device']}; jax {v['jax']}, jaxlib {v.get('jaxlib', '?')}, "
        f"flax {v['flax']}, optax {v['optax']}, jaxreg {v['jaxreg']}, Python {v.get('python', '?')}; "
        f"{doc.get('started_utc', '?')}, commit {doc.get('git_commit') or '?'}, "
        f"{doc.get('repeats', '?')} repeats, "
        f"the run took {doc.get('duration_s', 0):.0f} s."
    )
    lines = [line, ""]
    if doc.get("interrupted"):
        lines += [
            "The run was interrupted: only the cases measured before the interrupt are here.",
            "",
        ]
    floor = _dispatch_floor(doc)
    if floor is not None:
        lines += [
            f"On an accelerator every timed call includes its dispatch and the `block_until_ready` "
            f"round trip: the fastest call of the suite, `x * 2` at {_size(floor[1])} elements, took "
            f"{_num(floor[0])} ms. Where times are near that, the ratios compare this overhead more than "
            "the kernels; the largest size is the closest to the kernels' own cost.",
            "",
        ]
    load, cores = doc.get("loadavg_at_start"), doc.get("cpu_count")
    if load and cores and doc["backend"] == "cpu" and load[0] > 0.5 * cores:
        lines += [
            f"The machine was busy (load average {load[0]:.1f} on {cores} cores at the start): "
            "absolute times are noisy; the ratios, timed interleaved in one process, hold better.",
            "",
        ]
    return lines


def _dispatch_floor(doc: dict[str, Any]) -> tuple[float, int] | None:
    """(ms, size) of the fastest `x * 2` call, on a backend other than the CPU; else ``None``."""
    if doc["backend"] == "cpu":
        return None
    x2 = [
        (r["baseline_ms"], r["size"])
        for r in doc["results"]
        if r.get("baseline_kind") == "elementwise" and r.get("baseline_ms") is not None
    ]
    return min(x2) if x2 else None


def _targets(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    for r in rows:
        if "target" not in r:
            continue
        if "compilations" in r:
            measured = f"{r['traces']} trace(s), {r['compilations']} XLA compilation(s)"
        elif r.get("baseline_kind") == "none":
            measured = f"{_pct(r['overhead_pct'])} (flax-style: {_pct(r.get('flax_overhead_pct'))})"
        elif r.get("baseline_kind") == "elementwise":
            measured = f"{1 / r['ratio']:.2f}x the time of x * 2"
        else:
            measured = f"{r['ratio']:.1f}x faster"
        out.append(
            [
                f"{r['name']} {_size(r['size'])}: {r['target']}",
                measured,
                "yes" if r["target_met"] else "**no**",
            ]
        )
    return _table(["target", "measured", "met"], out, "llc") if out else []


def _dropout_rows(cases, sizes=None, jax_sampler: bool = False) -> list[list[str]]:
    out = []
    for (name, size), by in cases.items():
        if sizes is not None and size not in sizes:
            continue
        x2, fl, ref = by.get("elementwise"), by.get("flax"), by.get("reference")
        first = x2 or fl or ref
        if first is None or first.get("group") != "dropout":
            continue
        out.append(
            [
                f"`{first.get('op', name)}`",
                first.get("mode", "") + ("" if first.get("dtype", "float32") == "float32" else " bf16"),
                _size(size),
                _ms(first),
                _num(first["gbps"]),
                f"{1 / x2['ratio']:.2f}x" if x2 else "-",
                f"{fl['ratio']:.2f}x" if fl else "n/a",
                f"{ref['ratio']:.2f}x" if ref else "-",
            ]
        )
        if jax_sampler:
            js = by.get("jax-sampler")
            out[-1].append(f"{js['ratio']:.2f}x" if js else "-")
    return out


def _page_fault_note(dropout: list[dict[str, Any]], largest: int) -> list[str]:
    """Says so when the largest size is bound by page faults of fresh outputs (CPU)."""

    def x2_fwd(size, op=None):
        return [
            r
            for r in dropout
            if r["size"] == size
            and r.get("baseline_kind") == "elementwise"
            and r.get("mode") == "fwd"
            and r.get("dtype", "float32") == "float32"
            and (op is None or r.get("op") == op)
        ]

    def faulting(size):
        pages = size * 4 / 4096  # float32 output, 4 KiB pages
        return any((r.get("baseline_page_faults_per_call") or 0) >= 0.5 * pages for r in x2_fwd(size))

    if not faulting(largest):
        return []
    faults = max(r["baseline_page_faults_per_call"] for r in x2_fwd(largest))
    lines = [
        f"At {_size(largest)} elements every call page-faults its fresh output in: `x * 2` took "
        f"{faults:.0f} minor page faults per call, one per 4 KiB page of its "
        f"{largest * 4 / 2**20:.0f} MiB output (glibc maps buffers of 32 MiB and more afresh). "
        "That cost bounds `x * 2` and every op alike at this size."
    ]
    clean = sorted({r["size"] for r in dropout if not faulting(r["size"])})
    if clean and x2_fwd(clean[-1], "dropout"):
        r = x2_fwd(clean[-1], "dropout")[0]
        lines[0] += (
            f" At {_size(clean[-1])} elements, where buffers are reused, `dropout` forward takes "
            f"{1 / r['ratio']:.2f}x the time of `x * 2`: the cost of drawing the mask when memory "
            "traffic is not the limit."
        )
    return [*lines, ""]


def render(doc: dict[str, Any], json_path: str, all_paths: list[str] | None = None) -> list[str]:
    rows = doc["results"]
    lines = _environment(doc)
    lines += [
        f"Measured by `{doc.get('command', 'python -m benchmarks')}`, rendered by "
        f"`python -m benchmarks.readme {' '.join(all_paths or [json_path])} --write docs/performance.md`. "
        "Medians after compilation (± half the interquartile range), each function timed "
        "interleaved with its baselines, `jax.block_until_ready` after every call.",
        "",
    ]
    # The attention row against "no dropout" also carries flax-style's overhead.
    cases = _by_case(rows)
    for by in cases.values():
        if "none" in by and "flax" in by:
            by["none"]["flax_overhead_pct"] = by["flax"]["baseline_overhead_pct"]
    targets = _targets(rows)
    if targets:
        title = "Targets:" if doc["backend"] == "cpu" else "Targets (set for the CPU; shown for comparison):"
        lines += [title, "", *targets, ""]

    dropout = [r for r in rows if r.get("group") == "dropout"]
    if dropout:
        largest = max(r["size"] for r in dropout)
        header = [
            "op",
            "mode",
            "size",
            "jaxreg ms",
            "GB/s",
            "time / `x * 2`",
            "speedup vs Flax",
            "vs jax.random",
        ]
        jax_sampler = any(r.get("baseline_kind") == "jax-sampler" for r in dropout)
        bf16 = any(r.get("dtype") == "bfloat16" for r in dropout)
        dtypes = (
            "float32 (bfloat16 where the mode says bf16, against `x * 2` in bfloat16)" if bf16 else "float32"
        )
        if jax_sampler:
            header.append("vs `sampler='jax'`")
        align = "llrrrrrr" + "r" * jax_sampler
        lines += [
            f"Dropout family in training mode, {dtypes}, rate 0.1, {_size(largest)} elements "
            "(GB/s counts the arrays read and written; `x * 2` is the memory-bandwidth limit; "
            "speedups are the baseline's time over jaxreg's; n/a: Flax has no equivalent; "
            "`sampler='jax'`: the same jaxreg op drawing its mask with `jax.random.bernoulli`):",
            "",
            *_table(header, _dropout_rows(cases, {largest}, jax_sampler), align),
            "",
        ]
        lines += _page_fault_note(dropout, largest)
        if len({r["size"] for r in dropout}) > 1:
            lines += [
                "<details><summary>All sizes</summary>",
                "",
                *_table(header, _dropout_rows(cases, None, jax_sampler), align),
                "",
                "</details>",
                "",
            ]

    attention = [r for r in rows if r.get("group") == "attention"]
    if attention:
        a = attention[0]
        d = a.get("dims", {})
        none = next((r for r in attention if r["baseline_kind"] == "none"), None)
        variants = [["no dropout", _ms(none, "baseline"), "-"]] if none else []
        variants.append(["`jaxreg.dropout`", _ms(a), _pct(a.get("overhead_pct"))])
        for r in attention:
            if r["baseline_kind"] != "none":
                variants.append([r["baseline"], _ms(r, "baseline"), _pct(r.get("baseline_overhead_pct"))])
        lines += [
            f"Attention block forward+backward (batch {d.get('batch')}, {d.get('heads')} heads, "
            f"{d.get('tokens')} tokens, head dim {d.get('head_dim')}), dropout({a.get('rate')}) on the "
            "probabilities and on the residual:",
            "",
            *_table(["dropout", "ms", "overhead vs no dropout"], variants, "lrr"),
            "",
        ]

    optim = [r for r in rows if r.get("group") == "optim"]
    if optim:
        n = optim[0]["size"]
        table, prev = [], None
        for r in optim:
            same, prev = r["name"] == prev, r["name"]
            table.append(
                [
                    "" if same else f"`{r['name'].removesuffix(' step')}`",
                    "" if same else _ms(r),
                    r["baseline"],
                    _ms(r, "baseline"),
                    f"{r['ratio']:.2f}",
                    _pct(r.get("overhead_pct")) if r.get("baseline_kind") == "none" else "",
                    "" if same else _num(r["gbps"]),
                ]
            )
        lines += [
            f"One optimizer step on {n / 1e6:.1f}M float32 parameters (gradients given; params and state donated "
            "and threaded from step to step as in a training loop; ratio = "
            "baseline / jaxreg; overhead over the optimizer alone):",
            "",
            *_table(["step", "ms", "baseline", "baseline ms", "ratio", "overhead", "GB/s"], table, "lrlrrrr"),
            "",
        ]

    for r in (r for r in rows if r.get("group") == "compile"):
        lines += [
            f"Compile time of a training step (MLP, {_size(r['size'])} parameters: "
            f"{', '.join(r.get('regularizers', []))}), first call of a fresh `jax.jit`:",
            "",
            *_table(
                [
                    "step",
                    "first call ms",
                    "trace / lower / XLA compile ms",
                    f"compilations in {r['steps']} steps",
                ],
                [
                    [
                        "regularized",
                        _ms(r),
                        " / ".join(_num(r.get(f"jaxreg_{k}_ms")) for k in ("trace", "lower", "xla_compile")),
                        str(r["compilations"]),
                    ],
                    [
                        r["baseline"],
                        _ms(r, "baseline"),
                        " / ".join(
                            _num(r.get(f"baseline_{k}_ms")) for k in ("trace", "lower", "xla_compile")
                        ),
                        str(r.get("baseline_compilations", "-")),
                    ],
                ],
                "lrrr",
            ),
            "",
        ]
    if doc.get("skipped"):
        reasons = sorted({s["reason"] for s in doc["skipped"]})
        lines += [f"Skipped: {'; '.join(reasons)}.", ""]
    if doc.get("errors"):
        lines += ["Errors: " + "; ".join(f"{e['name']}: {e['error']}" for e in doc["errors"]), ""]
    return lines


def markdown(paths: list[str]) -> str:
    lines = [
        "Every figure below is generated from the JSON output of the benchmark suite in "
        "`benchmarks/`, never typed by hand. Each case times jaxreg and its baselines "
        "side by side in one process; ratio = baseline time / jaxreg time, above 1 means jaxreg "
        "is faster.",
        "",
        "```bash",
        "python -m benchmarks --json benchmarks/results/cpu.json   # the full suite",
        f"python -m benchmarks.readme {' '.join(paths)} --write docs/performance.md   # this section",
        "python -m benchmarks --quick   # a smoke test; also --filter SUBSTRING, --repeats N, --sizes 16,20",
        "bash benchmarks/device_run.sh   # on a GPU or TPU machine: writes benchmarks/results/gpu.json (or tpu.json)",
        "```",
        "",
    ]
    for path in paths:
        with open(path) as f:
            doc = json.load(f)
        if len(paths) > 1:
            lines += [f"### {doc['backend']}: {doc['device']}", ""]
        lines += render(doc, path, paths)
    return "\n".join(lines).rstrip() + "\n"


def replace_section(text: str, body: str) -> str:
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"markers {BEGIN!r} and {END!r} not found in order")
    return text[: start + len(BEGIN)] + "\n" + body + text[end:]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.readme", description=__doc__.splitlines()[0])
    p.add_argument("json", nargs="+", help="results written by python -m benchmarks --json")
    p.add_argument("--write", metavar="README", help="replace the benchmarks section of this file")
    args = p.parse_args(argv)
    body = markdown(args.json)
    if args.write:
        with open(args.write) as f:
            text = f.read()
        with open(args.write, "w") as f:
            f.write(replace_section(text, body))
    else:
        sys.stdout.write(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
