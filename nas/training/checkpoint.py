"""Training state on disk: written to a temp file, fsynced and renamed, so kill -9 leaves either the
previous checkpoint or the new one, never half of one."""
import os
import tempfile
from pathlib import Path
from typing import Optional


def save(path, state: dict) -> None:
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path) -> Optional[dict]:
    """The saved state, or None when there is none yet."""
    import torch

    path = Path(path)
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


def cache_root() -> Path:
    """``$CANAO_CACHE`` (default ``~/.cache/canao``): where trained models live between runs."""
    return Path(os.environ.get("CANAO_CACHE") or Path.home() / ".cache" / "canao")
