"""lib/paths.py: where every command, test and benchmark looks for the Kaggle files."""

from pathlib import Path

import pytest

from lib import paths


@pytest.fixture
def folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    data, shared = tmp_path / "repo" / "lib" / "data", tmp_path / "shared" / "data" / "kaggle"
    data.mkdir(parents=True)
    shared.mkdir(parents=True)
    monkeypatch.setattr(paths, "DATA_DIR", data)
    monkeypatch.setattr(paths, "SHARED_DATA_DIR", shared)
    return data, shared


@pytest.mark.parametrize("name", ["train.tsv", "test.tsv"])
def test_lib_data_first_then_the_shared_copy_then_where_it_should_go(folders: tuple[Path, Path], name: str) -> None:
    data, shared = folders
    assert paths.kaggle_file(name, {}) == data / name  # neither: where the file should go, for the error to name
    (shared / name).touch()
    assert paths.kaggle_file(name, {}) == shared / name
    (data / name).touch()
    assert paths.kaggle_file(name, {}) == data / name


def test_the_variable_names_another_file(folders: tuple[Path, Path], tmp_path: Path) -> None:
    data, _ = folders
    (data / "train.tsv").touch()
    assert paths.kaggle_file("train.tsv", {"KAGGLE_TRAIN": str(tmp_path / "mine.tsv")}) == tmp_path / "mine.tsv"
    assert paths.kaggle_file("test.tsv", {"KAGGLE_TEST": ""}) == data / "test.tsv"
