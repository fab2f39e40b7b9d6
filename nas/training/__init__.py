"""Accuracy side of the compiler-aware NAS loop: the fine-tuned teacher, the SubTransformer folder format,
supernet training by knowledge distillation and the fine-tuning of a found SubTransformer.

    from canao.nas.training import ensure_teacher, accuracy, save_subtransformer, load_subtransformer
"""
from .evaluate import accuracy
from .folder import load_subtransformer, save_subtransformer
from .teacher import ensure_teacher, teacher_dir

__all__ = ["accuracy", "ensure_teacher", "teacher_dir", "save_subtransformer", "load_subtransformer"]
