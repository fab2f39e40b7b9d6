"""Keep the terminal for CANAO: other libraries' chatter goes to a log file, ours stays visible.

``start()`` (called by the CLI before a command runs, unless ``-v``):

* file descriptor 2 is pointed at a log file, so native log lines (TVM's ``Warning: ...``, absl,
  oneDNN, XNNPACK banners, subprocesses) land there instead of on the terminal;
* ``sys.stdout`` / ``sys.stderr`` become routing streams: a write whose author (the first caller
  frame outside I/O plumbing such as logging, warnings, tqdm, rich) is CANAO code goes to the
  terminal and is copied to the log; a write from any other library goes to the log only;
* ``warnings.showwarning`` routes by the warning's source file the same way, so a CANAO warning
  (e.g. "matmul stays fp32") stays on the terminal and a torch deprecation goes to the log;
* Python ``logging`` records from other libraries go to the log.

``move_into(folder)`` moves the log next to a command's outputs once the command knows them.
Without ``start()`` (``-v``, or canao used as a library) nothing is redirected.
"""
import io
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Optional

# modules that write on someone else's behalf: the author is further up the stack
_PLUMBING = ("logging", "warnings", "tqdm", "rich", "io", "codecs", "contextlib", "traceback", "_io",
             "canao.logs", "threading", "pprint", "builtins")
_CANAO_PACKAGES = ("canao", "__main__")

_state = {"log": None, "path": None, "terminal_err": None, "terminal_out": None, "roots": None,
          "saved": None}


def cache_dir() -> Path:
    return Path(os.environ.get("CANAO_CACHE", Path.home() / ".cache" / "canao"))


def log_path() -> Optional[Path]:
    """The log file of this command, or None when nothing is redirected (-v)."""
    return _state["path"]


def active() -> bool:
    return _state["log"] is not None


def _canao_roots():
    """Folders whose files count as CANAO code (canao/ and the subpackages mapped from fusion/ ...)."""
    if _state["roots"] is None:
        import importlib.util

        roots = [os.path.dirname(os.path.abspath(__file__))]
        for sub in ("fusion", "codegen", "nas", "android_runner"):
            try:
                spec = importlib.util.find_spec(f"canao.{sub}")
            except (ImportError, ValueError):
                spec = None
            if spec is not None and spec.submodule_search_locations:
                roots += [os.path.abspath(p) for p in spec.submodule_search_locations]
        _state["roots"] = tuple(r + os.sep for r in roots)
    return _state["roots"]


def is_canao_file(filename: str) -> bool:
    return bool(filename) and os.path.abspath(filename).startswith(_canao_roots())


def _author_is_canao() -> bool:
    """True when the innermost non-plumbing frame on the stack belongs to CANAO (or nothing does)."""
    frame = sys._getframe(2)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if not any(module == p or module.startswith(p + ".") for p in _PLUMBING):
            return module.split(".")[0] in _CANAO_PACKAGES or is_canao_file(frame.f_code.co_filename)
        frame = frame.f_back
    return True  # e.g. the interpreter printing an uncaught exception: the user must see it


class _RoutingStream(io.TextIOBase):
    """sys.stdout / sys.stderr while the log is active: CANAO's writes to the terminal (and the log),
    everyone else's to the log only."""

    def __init__(self, terminal, label: str):
        super().__init__()
        self.terminal, self.label = terminal, label

    def write(self, text):
        if not text:
            return 0
        log = _state["log"]
        if _author_is_canao():
            self.terminal.write(text)
            if log is not None and "\r" not in text:  # progress bars stay off the log
                log.write(text)
        elif log is not None:
            log.write(text)
        return len(text)

    def flush(self):
        self.terminal.flush()
        if _state["log"] is not None:
            _state["log"].flush()

    def isatty(self):
        return self.terminal.isatty()

    def fileno(self):
        return self.terminal.fileno()

    @property
    def encoding(self):
        return getattr(self.terminal, "encoding", "utf-8")

    def writable(self):
        return True


def _showwarning(message, category, filename, lineno, file=None, line=None):
    text = warnings.formatwarning(message, category, filename, lineno, line)
    log = _state["log"]
    if log is not None:
        log.write(text)
        log.flush()
    if log is None or is_canao_file(filename):
        terminal = _state["terminal_err"] or sys.stderr
        terminal.write(text)
        terminal.flush()


def start(command: str = "canao") -> Path:
    """Redirect third-party output of this process into a fresh log file; return its path."""
    if active():
        return _state["path"]
    folder = cache_dir() / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    _prune(folder, keep=30)
    path = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{command}-{os.getpid()}.log"
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    log = open(path, "a", buffering=1, encoding="utf-8", errors="replace")
    saved_fd = os.dup(2)
    os.dup2(log.fileno(), 2)
    terminal_err = os.fdopen(saved_fd, "w", buffering=1, encoding="utf-8", errors="replace", closefd=True)
    terminal_out = sys.stdout
    _state.update(log=log, path=path, terminal_err=terminal_err, terminal_out=terminal_out,
                  saved=(sys.stdout, sys.stderr, warnings.showwarning, logging.lastResort))
    sys.stdout = _RoutingStream(terminal_out, "stdout")
    sys.stderr = _RoutingStream(terminal_err, "stderr")
    warnings.showwarning = _showwarning
    import faulthandler

    faulthandler.enable(file=terminal_err)  # a native crash still reaches the user, not just the log
    handler = logging.StreamHandler(log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.lastResort = handler
    root = logging.getLogger()
    handler.setLevel(logging.INFO)
    root.addHandler(handler)
    _state["handler"] = handler
    log.write(f"canao {command}: log of {' '.join(sys.argv)} at {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    return path


def stop() -> None:
    """Undo ``start()``: streams, fd 2, warnings and logging back as they were; the log is kept."""
    if not active():
        return
    out, err, showwarning, last_resort = _state["saved"]
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass
    sys.stdout, sys.stderr = out, err
    warnings.showwarning = showwarning
    logging.lastResort = last_resort
    logging.getLogger().removeHandler(_state["handler"])
    import faulthandler

    faulthandler.disable()
    terminal_err = _state["terminal_err"]
    terminal_err.flush()
    os.dup2(terminal_err.fileno(), 2)
    terminal_err.close()
    _state["log"].close()
    _state.update(log=None, terminal_err=None, terminal_out=None, saved=None)


def terminal():
    """The user's stderr (what fd 2 was before ``start()``), for CANAO's own progress and notes."""
    return _state["terminal_err"] or sys.stderr


def move_into(folder, name: str = "canao.log") -> Optional[Path]:
    """Move the active log into ``folder`` (next to a command's outputs); return the new path."""
    if not active():
        return None
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    new_path = folder / name
    old_path, old = _state["path"], _state["log"]
    if new_path.resolve() == Path(old_path).resolve():
        return new_path
    old.flush()
    new = open(new_path, "w", buffering=1, encoding="utf-8", errors="replace")
    new.write(Path(old_path).read_text(encoding="utf-8", errors="replace"))
    new.flush()
    os.dup2(new.fileno(), 2)
    _state["handler"].setStream(new)
    _state.update(log=new, path=new_path)
    old.close()
    try:
        os.unlink(old_path)
    except OSError:
        pass
    return new_path


def _prune(folder: Path, keep: int) -> None:
    logs = sorted(folder.glob("*.log"), key=lambda p: p.stat().st_mtime)
    for p in logs[:-keep] if len(logs) > keep else []:
        try:
            p.unlink()
        except OSError:
            pass
