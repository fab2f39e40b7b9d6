"""Fine-tune a found SubTransformer: weights inherited from the (trained) supernet, KD from the teacher,
the epoch picked by dev accuracy, test accuracy measured, the result written as a SubTransformer folder."""
from pathlib import Path
from typing import Optional

from .trainer import TrainSettings, train_and_score


def finetune_settings(**overrides) -> TrainSettings:
    """Fine-tuning defaults: as the teacher's, plus KD (w = 0.5, T = 2)."""
    return TrainSettings(**{"kd_weight": 0.5, **overrides})


def finetune_subtransformer(space, genes, out, supernet_path=None, settings: Optional[TrainSettings] = None,
                            teacher_folder=None, progress: bool = True, test_limit: Optional[int] = None,
                            stop_after_epochs: Optional[int] = None) -> Optional[dict]:
    """Train and save; returns the folder's metrics (None if ``stop_after_epochs`` cut it short)."""
    from .distill import load_supernet
    from .folder import read_meta, save_subtransformer
    from .teacher import ensure_teacher, teacher_logits

    s = settings or finetune_settings()
    genes = space.validate(genes)
    out = Path(out)
    supernet = load_supernet(supernet_path, space) if supernet_path else space.supernet()
    module = supernet.materialize(genes)
    soft = None
    if s.kd_weight > 0:
        teacher_folder = ensure_teacher(teacher_folder, progress=progress)
        soft = teacher_logits("train", s.seq_len, s.limit, teacher_folder)
    else:
        teacher_folder = None
    scored = train_and_score(module, s, out.with_name(out.name + ".work"), test_limit, progress,
                             stop_after_epochs, desc="finetune", teacher_logits=soft)
    if scored is None:
        return None
    result, metrics = scored
    teacher_metrics = read_meta(teacher_folder)["metrics"] if teacher_folder else None
    save_subtransformer(out, space, genes, module, {
        "role": "student", "seq_len": s.seq_len, "metrics": metrics, "training": result,
        "supernet": str(supernet_path) if supernet_path else "untrained (MiniLM weights)",
        "teacher": str(teacher_folder) if teacher_folder else None, "teacher_metrics": teacher_metrics})
    return metrics
