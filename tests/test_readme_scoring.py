"""The README's "Python client and file scoring" commands, run verbatim against a live server (host and port substituted)."""

import runpy
import shlex
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import readme_blocks
from tests.support.harness import ROOT

pytestmark = pytest.mark.slow  # live servers called as the README does

SECTION = "Python client and file scoring"
README_SERVER = "http://127.0.0.1:5000"
KAGGLE_LAYOUT = "PhraseId\tSentenceId\tPhrase\n156061\t1\tA gorgeous , witty film\n157451\t2\t \n171580\t3\tNone\n"


def test_client_block_as_the_readme_shows_it(dev_server: str) -> None:
    [block] = [block for block in readme_blocks(SECTION, "python") if "SentimentClient(" in block]
    namespace: dict = {}
    exec(compile(block.replace(README_SERVER, dev_server), "README.md", "exec"), namespace)
    scores = namespace["scores"]
    assert list(scores.index) == [10, 11, 12, 13]
    assert scores["prediction"].tolist()[:2] == ["Positive", "Negative"] and scores.loc[[12, 13]].isna().all().all()
    shown = namespace["reviews"].join(namespace["client"].rate(namespace["reviews"]["review"])[["prediction", "rating"]])
    assert shown["rating"].tolist()[:2] == [4, 0]


def run_readme_command(line: str, server: str, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run one ``.venv/bin/python score.py ...`` README line as that script's __main__ in this interpreter (its imports are
    already loaded, which saves seconds a command), from ``workdir``, which holds its inputs: every output lands there."""
    python, script, *args = shlex.split(line.replace(README_SERVER, server), comments=True)
    assert (python, script) == (".venv/bin/python", "score.py"), line
    with monkeypatch.context() as patch:
        patch.chdir(workdir)
        patch.setattr(sys, "argv", [str(ROOT / script), *args])
        with pytest.raises(SystemExit) as exited:
            runpy.run_path(str(ROOT / script), run_name="__main__")
    assert exited.value.code == 0, line


def test_score_commands_as_the_readme_shows_them(dev_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each score.py command, in a folder of its own holding the inputs (examples/ and a small lib/data/test.tsv)."""
    shutil.copytree(ROOT / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns("*.ipynb", "*.png"))
    (tmp_path / "lib" / "data").mkdir(parents=True)
    (tmp_path / "lib" / "data" / "test.tsv").write_text(KAGGLE_LAYOUT, encoding="utf-8")
    commands = [line for block in readme_blocks(SECTION, "sh") for line in block.splitlines() if " score.py " in line]
    assert len(commands) == 3
    for line in commands:
        run_readme_command(line, dev_server, tmp_path, monkeypatch)
    in_process, through_api = ((tmp_path / name).read_text() for name in ("scores.csv", "scores-api.csv"))
    assert in_process == through_api and in_process.startswith("id,review,prediction,confidence,p_Negative,p_Positive")
    assert pd.read_csv(tmp_path / "scores.csv")["prediction"].isna().sum() == 1  # the empty review
    submission = (tmp_path / "submission.csv").read_text().splitlines()
    assert submission[0] == "PhraseId,Sentiment" and submission[2] == "157451,2" and len(submission) == 4
