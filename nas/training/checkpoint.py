"""Training state on disk: written to a temp file, fsynced and renamed, so kill -9 leaves either the
previous checkpoint or the new one, never half of one."""
import os
from pathlib import Path
from typing import Optional


def save(path, state: dict) -> None:
    import torch

    from canao.atomic import write_with

    write_with(path, lambda f: torch.save(state, f), binary=True)


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
