"""The ``canao`` command line. Each subcommand lives in its own module with ``register(subparsers)``."""
import argparse
import importlib
import os
import sys

from .errors import CanaoError

# Modules contributing subcommands, in --help order. A module may live in any canao package.
COMMAND_MODULES = [
    "canao.commands.compile_cmd",
    "canao.commands.run_cmd",
    "canao.commands.inspect_cmd",
    "canao.commands.benchmark_cmd",
    "canao.codegen.cli",
    "canao.nas.cli",
    "canao.nas.search_cli",
    "canao.nas.finetune_cli",
    "canao.android_runner.cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="canao",
        description="Compiler-aware optimization of Transformer models on Apache TVM (Relax): "
        "import -> LP-Fusion -> tune/build -> measure -> search.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__import__('canao').__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _quiet_third_party() -> None:
    """Keep the terminal for CANAO's own output: torch/transformers/TF chatter goes away."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import warnings

    warnings.filterwarnings("ignore")


def main(argv=None) -> int:
    return dispatch(build_parser(), argv)


def dispatch(parser: argparse.ArgumentParser, argv=None) -> int:
    """Parse, run the chosen handler, and turn a CanaoError into one line on stderr and exit 2."""
    _quiet_third_party()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except CanaoError as exc:
        print(f"canao: error: {exc.one_line()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("canao: interrupted (finished results were kept; rerun to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
