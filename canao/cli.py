"""The ``canao`` command line. Each subcommand lives in its own module with ``register(subparsers)``."""
import argparse
import textwrap
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
    "canao.commands.profile_cmd",
    "canao.codegen.cli",
    "canao.nas.cli",
    "canao.nas.search_cli",
    "canao.nas.finetune_cli",
    "canao.android_runner.cli",
]


VERBOSE_HELP = ("show other libraries' warnings and native log lines on the terminal (by default they go to "
                "a log file: the command's output folder, or ~/.cache/canao/logs)")


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter without breaking lines at hyphens, so names such as
    ``canao-stock-fusion`` or ``litert-xnnpack`` in --help stay whole (and copy-pasteable)."""

    def _split_lines(self, text, width):
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)

    def _fill_text(self, text, width, indent):
        return textwrap.fill(" ".join(text.split()), width, initial_indent=indent, subsequent_indent=indent,
                             break_on_hyphens=False)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="canao", formatter_class=HelpFormatter,
        description="Compiler-aware optimization of Transformer models on Apache TVM (Relax): "
        "import -> LP-Fusion -> tune/build -> measure -> search. Other libraries' warnings and log lines "
        "go to a log file (the command's output folder, or ~/.cache/canao/logs); -v shows them.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__import__('canao').__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    for p in sub.choices.values():
        p.formatter_class = HelpFormatter
    _add_verbose(sub)
    return parser


def _add_verbose(sub) -> None:
    """`canao COMMAND ... -v` works as well as `canao -v COMMAND ...` (SUPPRESS keeps the top-level value)."""
    seen = set()
    for p in sub.choices.values():
        if id(p) in seen or any("-v" in a.option_strings or "--verbose" in a.option_strings for a in p._actions):
            continue
        seen.add(id(p))
        p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
        if hasattr(p, "_subparsers") and p._subparsers is not None:  # nested commands (e.g. canao device start)
            for action in p._subparsers._group_actions:
                if isinstance(action, argparse._SubParsersAction):
                    _add_verbose(action)


def _environment(verbose: bool) -> None:
    """Offline model loading always; progress bars sparse when stderr is not a terminal; with -v,
    libraries keep their own log levels."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not sys.stderr.isatty():  # a pipe or a CI log: a progress line every 15 s, not ten a second
        os.environ.setdefault("TQDM_MININTERVAL", "15")
    if not verbose:  # they would only go to the log file; fewer lines to route
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def main(argv=None) -> int:
    return dispatch(build_parser(), argv)


def dispatch(parser: argparse.ArgumentParser, argv=None) -> int:
    """Parse, run the chosen handler, and turn a CanaoError into one line on stderr and exit 2.

    Unless -v, other libraries' output goes to a log file (canao.logs) while the command runs; an
    error line and an uncaught traceback are printed after the streams are restored.
    """
    from . import logs

    args = parser.parse_args(argv)
    verbose = bool(getattr(args, "verbose", False))
    _environment(verbose)
    if not verbose:
        logs.start(getattr(args, "command", None) or "canao")
    try:
        return args.func(args) or 0
    except CanaoError as exc:
        logs.stop()
        print(f"canao: error: {exc.one_line()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        logs.stop()
        print("canao: interrupted (finished results were kept; rerun to resume)", file=sys.stderr)
        return 130
    except Exception:
        path = logs.log_path()
        logs.stop()
        if path is not None:
            print(f"canao: other libraries' output of this run is in {path}", file=sys.stderr)
        raise
    finally:
        logs.stop()


if __name__ == "__main__":
    sys.exit(main())
