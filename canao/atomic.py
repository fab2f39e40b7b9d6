"""Atomic writes: results appear whole or not at all, even after kill -9."""
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path


def write_with(path, write, binary: bool = False) -> None:
    """``write(file)`` into a temp file in ``path``'s folder, fsync, then an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text(path, text: str) -> None:
    """Write ``text`` to ``path`` through a temp file in the same folder and an atomic rename."""
    write_with(path, lambda f: f.write(text))


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


@contextmanager
def staged_dir(final, force: bool = False):
    """Yield a temp folder beside ``final``; rename it into place only if the block succeeds.

    An existing ``final`` is refused unless ``force`` (then it is replaced only after success).
    """
    from .errors import CanaoError

    final = Path(final)
    if final.exists() and not force:
        raise CanaoError(f"output folder {final} already exists", "pass --force to replace it, or choose another -o")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the artifact should look like any folder
    try:
        yield tmp
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def quiet_native_stderr():
    """Silence C++ log lines (TVM's VM prints a warning per saved/loaded scope) for one call."""
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
