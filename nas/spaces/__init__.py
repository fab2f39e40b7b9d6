"""Weight-shared search spaces: HAT's SuperTransformer, CANAO's BERT-encoder supernet (from MiniLM's
real weights) and Lite Transformer's LSRA as a per-layer choice.

    space = load_space("hat_wmt14_en_de")          # or a YAML path
    genes = space.sample(seed)                      # also mutate / crossover / validate / to_json
    logits = space.supernet()(genes, **inputs)      # inherited weights (front slices)
    module = space.to_subnet(genes)                 # standalone nn.Module with its own weights
    space.count(genes)                              # {"params": ..., "macs": ...}
"""
from .config import configs_dir, load_config, resolve_config
from .genes import Genes, StackSchema
from .lsra import LSRA, DynamicConv, LightweightConv, LiteTransformerEncoder
from .space import SearchSpace
from .supernet import Supernet, front_slice

SPACES = {}


def _register():
    from .bert import BertSpace
    from .hat import HatSpace

    SPACES.update({"hat": HatSpace, "bert": BertSpace})


def load_space(config) -> SearchSpace:
    """A SearchSpace from a config name (configs/NAME.yaml), a YAML path, or an already read dict."""
    from canao.errors import CanaoError

    if not SPACES:
        _register()
    data = load_config(config) if not isinstance(config, dict) else dict(config, _source=config.get("_source", "config"))
    kind = data.get("space")
    if kind not in SPACES:
        raise CanaoError(f"{data['_source']}: space = {kind!r} is not a known space",
                         f"set `space:` to one of {sorted(SPACES)}")
    return SPACES[kind](data)


__all__ = ["load_space", "load_config", "resolve_config", "configs_dir", "SearchSpace", "Supernet", "front_slice",
           "Genes", "StackSchema", "LSRA", "DynamicConv", "LightweightConv", "LiteTransformerEncoder", "SPACES"]
