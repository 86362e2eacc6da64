"""The ``jaxreg`` console script: ``jaxreg --version``; ``jaxreg demo``, L1, L2 and dropout on real data in a minute.

Every argument (and the writability of the output paths) is checked before any
training, and a bad one gives one line on stderr and exit status 2, no traceback.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
import tempfile
from pathlib import Path

NUM_DIGITS = 1797  # sklearn.datasets.load_digits
MIN_TEST = 100  # digits kept out of the training split, at least
DEFAULT_OUT = "demo-out"
DEMO_MODULES = ("sklearn", "matplotlib", "rich")  # installed by the demo extra
MAX_SEED = 2**63 - 1  # jax.random.key takes a C long


class UsageError(Exception):
    """A bad command line: reported as one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print the usage too: keep it to one line
        raise UsageError(f"{self.prog}: error: {message}")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**63 - 1], got {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be an integer in [0, 2**63 - 1], got {value}")
    return value


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value


def _parser(configs: dict[str, str], defaults: dict) -> _Parser:
    import jaxreg

    parser = _Parser(prog="jaxreg", description="jaxreg: neural-network regularization for JAX.")
    parser.add_argument("--version", action="version", version=f"jaxreg {jaxreg.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="train one MLP on noisy digits under each regularizer; table and figure",
        description=(
            "Trains one Flax NNX MLP on scikit-learn's handwritten digits, with a small training\n"
            "split whose labels are partly random, once per regularization configuration (same\n"
            "initialization and data order), and reports train/test accuracy, gap, loss and exact zeros."
        ),
        epilog="configurations:\n" + "\n".join(f"  {name:17s} {text}" for name, text in configs.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "--epochs",
        type=_positive_int,
        default=defaults["epochs"],
        metavar="N",
        help="epochs (default %(default)s)",
    )
    demo.add_argument(
        "--seed",
        type=_seed,
        default=0,
        metavar="S",
        help="seed of split, labels, init, batches, masks, in [0, 2**63 - 1] (default 0)",
    )
    demo.add_argument(
        "--label-noise",
        type=_share,
        default=defaults["label_noise"],
        metavar="P",
        help="share of training labels replaced by a random class (default %(default)s)",
    )
    demo.add_argument(
        "--train-size",
        type=_positive_int,
        default=defaults["train_size"],
        metavar="N",
        help=f"training digits, the rest of the {NUM_DIGITS} are the test set (default %(default)s)",
    )
    demo.add_argument(
        "--configs",
        default=",".join(configs),
        metavar="A,B,C",
        help=f"comma-separated subset of: {', '.join(configs)}",
    )
    demo.add_argument(
        "--out",
        default=DEFAULT_OUT,
        metavar="DIR",
        help="folder for demo.png and results.json (default %(default)s)",
    )
    demo.add_argument("--json", dest="json_path", metavar="PATH", help="also write the results list here")
    demo.add_argument("--no-plot", action="store_true", help="skip the figure")
    return parser


def _check_writable_file(path: Path, what: str) -> None:
    """Proves ``path`` writable by opening it for appending (creating its folder if needed).

    A file that did not exist is removed again; an existing one is left as it was.
    """
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a"):
            pass
        if not existed:
            path.unlink()
    except OSError as e:
        raise UsageError(
            f"jaxreg demo: error: cannot write to {what} {str(path)!r}: {e.strerror or e}"
        ) from None


def _check_writable_folder(folder: Path, what: str) -> None:
    """Creates ``folder`` if needed and proves it writable by writing a probe file."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".jaxreg-probe-"):
            pass
    except OSError as e:
        raise UsageError(
            f"jaxreg demo: error: cannot write to {what} {str(folder)!r}: {e.strerror or e}"
        ) from None


def _require_demo_extra() -> None:
    missing = [m for m in DEMO_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(
            f"jaxreg demo: error: needs {', '.join(missing)}: install them with pip install 'jaxreg[demo]'"
        )


def _parse(argv: list[str] | None):
    from jaxreg.demo import _train as _demo  # imports JAX, compiles and runs nothing

    descriptions = {name: config.description for name, config in _demo.CONFIGS.items()}
    configs = list(descriptions)
    defaults = {"epochs": _demo.EPOCHS, "label_noise": _demo.LABEL_NOISE, "train_size": _demo.TRAIN_SIZE}
    args = _parser(descriptions, defaults).parse_args(argv)
    _require_demo_extra()
    names = [c.strip() for c in args.configs.split(",")] if args.configs.strip() else []
    unknown = [c for c in names if c and c not in configs]
    if unknown or not names or "" in names:
        if unknown:
            what = f"unknown configuration {unknown[0]!r}"
        elif names:
            what = f"empty configuration name in {args.configs!r}"
        else:
            what = "no configuration given"
        raise UsageError(f"jaxreg demo: error: --configs: {what} (choose from {', '.join(configs)})")
    args.configs = list(dict.fromkeys(names))
    if args.train_size < 10 or args.train_size > NUM_DIGITS - MIN_TEST:
        raise UsageError(
            f"jaxreg demo: error: --train-size must be in [10, {NUM_DIGITS - MIN_TEST}], got {args.train_size}"
        )
    args.out = Path(args.out)
    _check_writable_folder(args.out, "output folder")
    if args.json_path is not None:
        args.json_path = Path(args.json_path)
        if args.json_path.is_dir():
            raise UsageError(f"jaxreg demo: error: --json {str(args.json_path)!r} is a folder")
        _check_writable_file(args.json_path, "--json")
    return args


def _run_demo(args) -> None:
    from rich import box
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from jaxreg.demo import _train as _demo

    out, err = Console(), Console(stderr=True)
    data = _demo.load_data(args.seed, args.train_size, args.label_noise)
    title = (
        f"{len(data.y_train)} training digits ({data.num_noisy} labels random), {len(data.y_test)} test digits, "
        f"MLP 64-{_demo.HIDDEN}-{_demo.HIDDEN}-10, {args.epochs} epochs, seed {args.seed}"
    )
    out.print(title, soft_wrap=True)  # the table's header, printed once, before the progress bars
    results = []
    columns = (
        TextColumn("{task.description:>16}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("test acc {task.fields[acc]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err) as progress:
        for name in args.configs:
            task = progress.add_task(name, total=args.epochs, acc="-----")
            for item in _demo.train(name, data, args.seed, args.epochs):
                if isinstance(item, _demo.Result):
                    results.append(item)
                else:
                    progress.update(task, advance=1, acc=f"{item:.3f}")

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("config", no_wrap=True, min_width=max(len(n) for n in args.configs))
    for header in ("train acc", "test acc", "gap", "final loss", "zeros", "seconds"):
        table.add_column(header, justify="right", no_wrap=True)
    for r in results:
        table.add_row(
            r.config,
            f"{r.train_accuracy:.3f}",
            f"{r.test_accuracy:.3f}",
            f"{r.gap:+.3f}",
            f"{r.final_loss:.3f}",
            f"{r.zero_fraction:.1%}",
            f"{r.seconds:.1f}",
        )
    out.print(table)

    records = [r.as_json() for r in results]
    text = json.dumps(records, indent=2) + "\n"
    (args.out / "results.json").write_text(text)
    written = [args.out / "results.json"]
    if args.json_path is not None:
        args.json_path.write_text(text)
        written.append(args.json_path)
    if not args.no_plot:
        from jaxreg.demo._plot import save_figure

        save_figure(results, args.out / "demo.png", title)
        written.append(args.out / "demo.png")
    out.print("wrote " + ", ".join(str(p) for p in written))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``jaxreg`` console script; returns the exit status."""
    try:
        args = _parse(argv)
    except UsageError as e:
        print(" ".join(str(e).split()), file=sys.stderr)
        return 2
    if args.command == "demo":
        try:
            _run_demo(args)
        except KeyboardInterrupt:
            print("jaxreg demo: interrupted", file=sys.stderr)
            return 130
        except OSError as e:  # e.g. the folder vanished or filled up while training
            print(f"jaxreg demo: error: {e}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
