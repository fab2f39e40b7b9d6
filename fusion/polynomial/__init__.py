"""Polynomial rewriting of element-wise chains: LP-Fusion's algebra as a Relax module pass.

    log = RewriteLog()
    mod = PolynomialSimplify(log=log)(mod)   # before legalization
    print(log.to_text()); json.dumps(log.to_json())
"""
from .cost import Cost, LeafInfo
from .egraph import FAMILIES, Limits
from .relax_terms import weight_params
from .pass_ import PolynomialSimplify
from .records import RewriteLog, RewriteRecord

__all__ = ["PolynomialSimplify", "RewriteLog", "RewriteRecord", "Cost", "LeafInfo", "Limits", "FAMILIES",
           "weight_params"]
