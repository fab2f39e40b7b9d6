"""Outputs appear whole or not at all."""
import pytest

from canao.atomic import staged_dir, write_json
from canao.errors import CanaoError


def test_failed_block_leaves_nothing(tmp_path):
    final = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with staged_dir(final) as tmp:
            (tmp / "half.bin").write_bytes(b"x")
            raise RuntimeError("build failed")
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []


def test_existing_folder_refused_then_replaced_with_force(tmp_path):
    final = tmp_path / "out"
    final.mkdir()
    (final / "old").write_text("old")
    with pytest.raises(CanaoError, match="already exists"):
        with staged_dir(final):
            pass
    with staged_dir(final, force=True) as tmp:
        (tmp / "new").write_text("new")
    assert sorted(p.name for p in final.iterdir()) == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_write_json_replaces_atomically(tmp_path):
    path = tmp_path / "r.json"
    write_json(path, {"a": 1})
    write_json(path, {"a": 2})
    assert path.read_text().strip().endswith("}") and '"a": 2' in path.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
