"""The documentation's pages: every code block accounted for, the README short, its links whole, the reading of outputs."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from markdown.extensions.toc import slugify

from app import create_app
from lib.paths import KAGGLE_URL
from lib.settings import ConfigError, Settings
from model import ModelLoadError
from tests.doc_pages import PAGES, Block, blocks, mismatches, python_examples, runs_here, shell_examples, shown_value
from tests.helpers import COMMITTED_MODELS
from tests.support.harness import ROOT

README = ROOT / "README.md"

#: Blocks that tests/test_doc_examples.py does not run against the development server: who runs each, or why
#: none can. Each key is a block's language and text found in exactly the blocks it stands for.
RUN_ELSEWHERE = {
    ("sh", "make serve"): "the suite itself: dev_server starts `python app.py`, which make serve runs",
    ("sh", "make test-e2e"): "the suite itself",
    ("sh", "make lint"): "the suite itself (and CI)",
    ("sh", " score.py "): "tests/test_doc_examples.py::test_score_commands_as_the_pages_show_them",
    ("python", "map_partitions"): "tests/test_score.py::test_dask_block_saved_as_a_script_scores_kaggle_test_as_one_process_does",
    ("python", "mapInPandas"): "tests/test_score.py::test_spark_block_saved_as_a_script_scores_kaggle_test_as_one_process_does",
    ("python", 'family="linear"'): "tests/test_registry.py::test_the_docs_linear_model_saved_as_a_script_is_served",
    ("sh", "make models"): "tests/test_full_data.py rebuilds the models from the full data with the build command",
    ("sh", "--compare-calibration"): "a minute on the full data: tests/test_build_model.py covers the comparison",
    ("sh", "-m bench."): "benchmarks of minutes: tests/test_bench*.py test their parts",
    ("sh", "make production"): "tests/support/harness.py starts the production server with the command it runs",
    ("sh", "podman build"): "tests/test_container.py (e2e)",
    ("sh", "kubectl apply"): "no cluster here: tests/test_pod.py plays the pod, tests/test_deploy.py checks the manifests",
    ("yaml", "scrape_configs:"): "tests/test_deploy.py::test_prometheus_scrapes_each_pods_app_port (the file's text)",
    ("sh", "kill -HUP"): "tests/test_server.py reloads the production server with SIGHUP under traffic",
    ("", "create_app() (the factory"): "test_layout_names_files_that_exist",
    ("", "ceiling: Flask view returning"): "a recorded run of bench.request_cost",
    ("", "requests: 158,048 sent"): "a recorded run of bench.soak",
}


def claims(block: Block) -> list[tuple[str, str]]:
    """The RUN_ELSEWHERE entries that stand for the block."""
    return [(language, text) for language, text in RUN_ELSEWHERE if language == block.language and text in block.code]


@pytest.mark.parametrize("block", blocks(), ids=lambda block: block.where)
def test_every_block_is_run_or_says_who_runs_it(block: Block) -> None:
    assert runs_here(block) + len(claims(block)) == 1, (block.where, claims(block), block.code[:200])


def test_every_entry_of_who_runs_it_stands_for_a_block() -> None:
    used = {key for block in blocks() for key in claims(block)}
    assert set(RUN_ELSEWHERE) == used


def test_the_live_examples_cover_every_page_that_calls_the_server() -> None:
    pages = {block.page for block in blocks() if runs_here(block)}
    assert {"README.md", "docs/api.md", "docs/client.md"} <= pages


def test_readme_takes_five_minutes() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 300
    assert len(text.split()) <= 1500


def test_readme_says_once_where_the_kaggle_files_go() -> None:
    text = README.read_text(encoding="utf-8")
    assert text.count("lib/data/") == 1 and KAGGLE_URL in text
    assert text.index("lib/data/") < text.index("## Calling it")


def test_readme_says_how_to_get_httpie() -> None:
    text = README.read_text(encoding="utf-8")
    assert "pip install httpie" in text and "pipx install" in text


def anchors(page: Path) -> set[str]:
    """The heading anchors MkDocs and GitHub make for a page (its headings slugified as the toc extension does)."""
    text = re.sub(r"^```.*?^```$", "", page.read_text(encoding="utf-8"), flags=re.M | re.S)
    return {slugify(re.sub(r"[`*]", "", heading), "-") for heading in re.findall(r"^#+ (.+)$", text, flags=re.M)}


def test_readme_links_reach_pages_and_their_headings() -> None:
    """MkDocs checks the pages' links; the README is outside the site, so its links are checked here."""
    links = re.findall(r"\]\(([^)#\s]+\.md)(?:#([^)\s]+))?\)", README.read_text(encoding="utf-8"))
    assert {page for page, _ in links} == {str(page.relative_to(ROOT)) for page in PAGES[1:] if page.name != "index.md"}
    for page, anchor in links:
        assert (ROOT / page).is_file(), page
        assert not anchor or anchor in anchors(ROOT / page), (page, anchor)


def test_layout_names_files_that_exist() -> None:
    [layout] = [block for block in blocks() if claims(block) == [("", "create_app() (the factory")]]
    named = [line.split()[0] for line in layout.code.splitlines() if line and not line.startswith(" ")]
    for name in named:
        for part in name.split(","):
            assert (ROOT / part.strip()).exists(), part


def test_the_settings_message_a_page_quotes_is_the_one_given() -> None:
    quoted = "Config 'MAX_BATCH' has value 'lots'. Not a whole number from 1 to 100,000."
    assert quoted in " ".join((ROOT / "docs" / "api.md").read_text(encoding="utf-8").split())
    with pytest.raises(ConfigError) as refused:
        Settings.from_mapping({"MAX_BATCH": "lots"})
    assert str(refused.value) == quoted


def test_the_per_model_limit_a_page_quotes_is_the_one_given() -> None:
    """The 413 the API page quotes for a model of character n-grams, which has a quarter of the characters' budget."""
    quoted = "'queries' holds 37,501 characters in all; the limit is 37,500 per request (max_request_chars)."
    assert quoted in " ".join((ROOT / "docs" / "api.md").read_text(encoding="utf-8").split())
    answer = create_app().test_client().post("/sentiment-logreg", json={"queries": ["x" * 20_000, "y" * 17_501]})
    assert answer.status_code == 413 and answer.get_json() == {"message": quoted}


def test_the_bad_model_message_a_page_quotes_is_the_one_given(tmp_path: Path) -> None:
    """The start-up refusal the operations page quotes, for a changed file of the committed models."""
    shutil.copytree(COMMITTED_MODELS, tmp_path / "models")
    with (tmp_path / "models" / "ratings" / "idf.npy").open("ab") as changed:
        changed.write(b"x")
    with pytest.raises(ModelLoadError) as refused:
        create_app({"MODELS_DIR": str(tmp_path / "models")})
    shown = "Error: " + str(refused.value).replace(str(tmp_path / "models"), "lib/models")
    assert shown in " ".join((ROOT / "docs" / "operations.md").read_text(encoding="utf-8").split())


def test_shell_examples_take_each_command_with_the_output_shown_after_it() -> None:
    code = '# a remark\ncurl -s x\n# {"a": 1,\n#  "b": 2}\n\nhttp y   # trailing\nmake z\n# which runs: w\n'
    assert [(example.command, example.shown) for example in shell_examples(code)] == [
        ("curl -s x", '{"a": 1,\n "b": 2}'),
        ("http y   # trailing", None),
        ("make z", None),
    ]


def test_python_examples_take_each_statement_with_the_comments_after_it() -> None:
    code = 'import json\n\nvalue = {"a": [1,\n  2]}\nvalue\n# {"a": [1, 2]}\nlen(value)  # no output shown\n'
    examples = python_examples(code)
    assert [example.shown for example in examples] == [None, None, '{"a": [1, 2]}', None]
    assert examples[1].command == 'value = {"a": [1,\n  2]}'


@pytest.mark.parametrize(
    ("shown", "actual"),
    [
        ('{"a": 0.955, "b": "x"}', {"a": 0.9549, "b": "x"}),
        ('{"a": 1, ...}', {"a": 1, "b": 2}),
        ("{'a': [1, ...], 'b': ...}", {"a": [1, 2, 3], "b": {"anything": True}}),
        ('{"k": true, "n": null, "l": []}', {"k": True, "n": None, "l": []}),
        ('{"a": {...}}', {"a": {"b": 1}}),
        ("{'s': 'dots ... inside'}", {"s": "dots ... inside"}),
    ],
)
def test_a_shown_output_matches_what_it_stands_for(shown: str, actual: object) -> None:
    assert mismatches(shown_value(shown), actual) == []


@pytest.mark.parametrize(
    ("shown", "actual", "problem"),
    [
        ('{"a": 0.955}', {"a": 0.96}, "answer['a']: shown 0.955, got 0.96"),
        ('{"a": 1}', {"a": 1, "b": 2}, "answer: not shown ['b'] (write ... if left out)"),
        ('{"a": 1, ...}', {"b": 1}, "answer: no 'a'"),
        ('{"a": [1, 2]}', {"a": [1, 2, 3]}, "answer['a']: shown 2 items, got 3"),
        ('{"a": "1"}', {"a": 1}, "answer['a']: shown '1', got 1"),
        ('{"a": 4}', {"a": 4.0}, "answer['a']: shown 4, got 4.0"),
    ],
)
def test_a_shown_output_that_differs_is_named(shown: str, actual: object, problem: str) -> None:
    assert mismatches(shown_value(shown), actual) == [problem]
