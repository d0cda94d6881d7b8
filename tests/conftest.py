"""Shared fixtures, the tiny model config, and skipping what needs a data file that is not there.

Data comes from data/ or $LLMS_DATA_DIR (.ci/run sets ../shared/data); tests never download it.
Without the data files, a test that needs one is skipped with the library's own line naming the file
and where to place it, and the run ends with one line counting them. Under LLMS_STRICT_TESTS=1
(.ci/run) nothing is skipped for a missing data file or test extra: the test fails.
"""

import os

import matplotlib
import pytest

os.environ["LLMS_NO_DOWNLOAD"] = "1"  # before any test looks for a data file
STRICT = os.environ.get("LLMS_STRICT_TESTS") == "1"
MISSING_EXTRA = "could not import"  # pytest.importorskip's reason

from ch04_gpt.config import GPT_CONFIG_124M

matplotlib.use("Agg")

# The tiny GPT most tests build: fast to run, same code paths as GPT-124M.
TINY = {**GPT_CONFIG_124M, "vocab_size": 97, "context_length": 16, "emb_dim": 32, "n_heads": 4, "n_layers": 2,
        "drop_rate": 0.0}
# Options of the train CLI for a tiny run (1 layer, width 32, context 32, batch 2).
TINY_ARGS = ["--n-layers", "1", "--emb-dim", "32", "--n-heads", "2", "--context-length", "32",
             "--batch-size", "2", "--eval-freq", "4", "--eval-iter", "2", "--no-progress"]
MISSING_DATA = "not found: place"  # in every DataFileError message (ch02_text.data_files)


def _strict_fail(report) -> None:
    """Under LLMS_STRICT_TESTS a skip for a missing test extra is a failure."""
    if STRICT and report.skipped and MISSING_EXTRA in str(report.longrepr):
        report.outcome = "failed"
        report.longrepr = f"{report.longrepr}\n(LLMS_STRICT_TESTS=1: install requirements-dev.txt)"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _strict_fail(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A missing data file (raised, or reported by a CLI as its one error: line) skips the test,
    except under LLMS_STRICT_TESTS, where the data must be there."""
    outcome = yield
    report = outcome.get_result()
    _strict_fail(report)
    if STRICT or call.excinfo is None or not report.failed:
        return
    from ch02_text.errors import DataFileError

    exc = call.excinfo.value
    said = [line for line in f"{exc}\n{report.capstderr}".splitlines() if MISSING_DATA in line]
    if not (isinstance(exc, DataFileError) or said):  # e.g. a CLI's error: line, seen in an assertion
        return
    message = str(exc) if isinstance(exc, DataFileError) else said[0].strip(" E'[]")
    report.outcome = "skipped"
    report.longrepr = (str(item.path), item.location[1] or 0, f"Skipped: {message}")


def pytest_terminal_summary(terminalreporter):
    """One line counting the tests skipped for missing data files."""
    missing = [r for r in terminalreporter.stats.get("skipped", []) if MISSING_DATA in str(r.longrepr)]
    if missing:
        terminalreporter.write_line(f"{len(missing)} tests skipped because data files are missing: place them as "
                                    "the skip lines say (or set LLMS_DATA_DIR)")


def require_data(*names) -> None:
    """Skip (fail under LLMS_STRICT_TESTS) unless the data files are found: for fixtures shared by several
    tests, where a skip must be raised by pytest.skip itself to be remembered for the next test."""
    from ch02_text.data_files import find_data_file
    from ch02_text.errors import DataFileError

    for name in names:
        try:
            find_data_file(name, download=False)
        except DataFileError as exc:
            if STRICT:
                raise
            pytest.skip(str(exc))


@pytest.fixture(scope="session")
def verdict_text():
    from ch02_text.data_files import read_data_text

    return read_data_text("the-verdict.txt")


@pytest.fixture(scope="session")
def gpt2_tok():
    from ch02_text.tokenizers import gpt2_tokenizer

    return gpt2_tokenizer()


@pytest.fixture(scope="session")
def corpus(tmp_path_factory, verdict_text):
    """The first 4,000 characters of the-verdict as a file: enough for tiny CLI runs."""
    path = tmp_path_factory.mktemp("data") / "small.txt"
    path.write_text(verdict_text[:4000], encoding="utf-8")
    return path


def readme_references(package: str) -> list[tuple[str, str | None]]:
    """The ``file.py``, ``sub/file.py`` and ``file.py:Name`` references in a chapter's README.md, as (file, name)."""
    import re

    from ch02_text.paths import REPO_ROOT

    text = (REPO_ROOT / package / "README.md").read_text(encoding="utf-8")
    return [(m.group(1), m.group(2)) for m in re.finditer(r"`((?:\w+/)*\w+\.py)(?::(\w+))?", text)]


def check_readme(package: str) -> None:
    """Every file and object a chapter README names exists (in the chapter, or the repo root's data helpers)."""
    import importlib

    from ch02_text.paths import REPO_ROOT

    refs = readme_references(package)
    assert len(refs) >= 10, refs
    for filename, name in refs:
        path = REPO_ROOT / package / filename
        if not path.is_file() and "/" in filename:  # another chapter's file, named from the repository root
            path, module_name = REPO_ROOT / filename, filename[:-3].replace("/", ".")
        else:
            module_name = f"{package}.{filename[:-3].replace('/', '.')}"
        assert path.is_file(), f"{package}/README.md names {filename}, which is not in {package}/"
        if name is None:
            continue
        if filename.endswith("walkthrough.py"):  # it runs the whole chapter when imported: read its names instead
            assert name in defined_names(path), f"{package}/README.md names {filename}:{name}"
        else:
            module = importlib.import_module(module_name)
            assert hasattr(module, name), f"{package}/README.md names {filename}:{name}"


def defined_names(path) -> set[str]:
    """The names a Python file defines or imports at any level (functions, classes, assignments), unexecuted."""
    import ast

    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one thread, and spare the shared cores (``pytest.mark.usefixtures``)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def instruction_pth(tmp_path_factory):
    """Chapter 7's tiny start (``fine_tuning.INSTRUCTIONS``, every parameter random) as a state dict file."""
    import torch

    from fine_tuning import INSTRUCTIONS, random_book_gpt

    path = tmp_path_factory.mktemp("model") / "small.pth"
    torch.save(random_book_gpt(INSTRUCTIONS).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium for the page tests (``chromium.launch``), or a skip saying what to install."""
    from chromium import launch

    yield from launch()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The serving API over a tiny chat model: ``(url, model, tokenizer, service)`` (``chat_server``)."""
    pytest.importorskip("transformers", reason="pip install -r requirements-dev.txt for the serving tests")
    from chat_server import serve_tiny_chat

    yield from serve_tiny_chat(tmp_path_factory)
