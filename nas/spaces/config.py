"""Space configs: one YAML per experiment (HAT's habit), read and checked before any model is built.

A config names its space (``space: hat`` or ``space: bert``), the fixed model settings, the choices
of every stack and the LSRA settings. Every bad value is a one-line CanaoError naming the file, the
key and what would be accepted.
"""
from pathlib import Path
from typing import Dict, Iterable, Optional

from canao.errors import CanaoError

LAYER_TYPES = ("attention", "lsra")
CONV_TYPES = ("dynamic", "lightweight")


def configs_dir() -> Path:
    """The bundled configs: the top-level configs/ folder, installed as package canao.configs."""
    from canao import configs

    return Path(configs.__file__).resolve().parent


def resolve_config(name_or_path) -> Path:
    """A path to a YAML file, or a config name such as ``hat_wmt14_en_de`` looked up in configs/."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    candidate = configs_dir() / f"{name_or_path}.yaml"
    if candidate.is_file():
        return candidate
    known = ", ".join(sorted(p.stem for p in configs_dir().glob("*.yaml"))) or "none"
    raise CanaoError(f"space config '{name_or_path}' does not exist",
                     f"pass a YAML path or one of the bundled configs: {known}")


def load_config(name_or_path) -> dict:
    """Read a space config; the ``_source`` key records where it came from for error messages."""
    import yaml

    path = resolve_config(name_or_path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise CanaoError(f"{path.name} is not valid YAML{where}", "fix the syntax (indentation, colons)") from exc
    if not isinstance(data, dict):
        raise CanaoError(f"{path.name} must be a YAML mapping", "start it with `space: hat` or `space: bert`")
    data["_source"] = path.name
    return data


class ConfigReader:
    """Typed access to one config section with errors that name file and key."""

    def __init__(self, config: dict, section: Optional[str] = None):
        self.source = config.get("_source", "config")
        self.section = section
        self.data = config if section is None else config.get(section)
        if self.data is None:
            self.fail(f"has no '{section}' section", f"add a '{section}:' mapping")
        if not isinstance(self.data, dict):
            self.fail(f"section '{section}' must be a mapping", "indent its keys under it")

    def where(self, key: str) -> str:
        return f"{self.source}: {self.section + '.' if self.section else ''}{key}"

    def fail(self, cause: str, fix: str):
        prefix = f"{self.source}" + (f" section '{self.section}'" if self.section and "section" not in cause else "")
        raise CanaoError(f"{prefix} {cause}", fix)

    def only(self, keys: Iterable[str]) -> None:
        allowed = set(keys) | ({"_source"} if self.section is None else set())
        unknown = sorted(set(self.data) - allowed)
        if unknown:
            raise CanaoError(f"{self.where(unknown[0])} is not a known key",
                             f"known keys here: {', '.join(sorted(set(keys)))}")

    def get(self, key: str, default=None, required: bool = False):
        if key not in self.data:
            if required:
                raise CanaoError(f"{self.where(key)} is missing", "add it (see configs/*.yaml for examples)")
            return default
        return self.data[key]

    def int(self, key: str, default=None, minimum: int = 1) -> int:
        value = self.get(key, default, required=default is None)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise CanaoError(f"{self.where(key)} = {value!r} must be an integer >= {minimum}", "fix the value")
        return value

    def choice(self, key: str, options, default=None):
        value = self.get(key, default, required=default is None)
        if value not in options:
            raise CanaoError(f"{self.where(key)} = {value!r} is not one of {list(options)}", "pick one of those")
        return value

    def int_list(self, key: str, required: bool = True, minimum: int = 1, default=None,
                 unique: bool = True) -> tuple:
        value = self.get(key, default, required=required)
        if not isinstance(value, (list, tuple)) or not value:
            raise CanaoError(f"{self.where(key)} = {value!r} must be a non-empty list of integers",
                             f"write e.g. {key}: [4, 8]")
        for v in value:
            if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
                raise CanaoError(f"{self.where(key)} has {v!r}; every choice must be an integer >= {minimum}",
                                 "fix that value")
        if unique and len(set(value)) != len(value):
            raise CanaoError(f"{self.where(key)} = {list(value)} repeats a choice", "list each choice once")
        return tuple(value)

    def types(self, key: str = "type") -> tuple:
        value = self.get(key, ["attention"])
        if not isinstance(value, (list, tuple)) or not value or any(v not in LAYER_TYPES for v in value):
            raise CanaoError(f"{self.where(key)} = {value!r} must list layer types from {list(LAYER_TYPES)}",
                             "write e.g. type: [attention, lsra]")
        if len(set(value)) != len(value):
            raise CanaoError(f"{self.where(key)} = {list(value)} repeats a type", "list each type once")
        return tuple(value)


def require(condition: bool, source: str, cause: str, fix: str) -> None:
    """A cross-key consistency rule of a config."""
    if not condition:
        raise CanaoError(f"{source}: {cause}", fix)


def read_lsra(config: dict, max_layers: int, needed: bool) -> Dict:
    """The LSRA settings shared by both spaces (conv kind, kernel per layer, conv heads)."""
    if not needed and "lsra" not in config:
        return {"conv": "dynamic", "kernel_sizes": (3,) * max_layers, "conv_heads": 1}
    r = ConfigReader(config, "lsra")
    r.only(["conv", "kernel_sizes", "conv_heads"])
    kernels = r.int_list("kernel_sizes", unique=False)
    for k in kernels:
        require(k % 2 == 1, r.source, f"lsra.kernel_sizes has {k}, but kernels must be odd",
                "use odd sizes such as 3, 7, 15, 31 (Lite Transformer's)")
    require(len(kernels) >= max_layers, r.source,
            f"lsra.kernel_sizes gives {len(kernels)} kernels for up to {max_layers} layers",
            f"give one kernel size per layer ({max_layers})")
    return {"conv": r.choice("conv", CONV_TYPES, "dynamic"), "kernel_sizes": kernels,
            "conv_heads": r.int("conv_heads", 4)}
