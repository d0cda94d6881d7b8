"""Command-line plumbing every script shares: checked option types, one-line errors, walk-throughs.

What this adds: a reader's mistake (a bad option value, a missing file, a damaged
checkpoint) ends in one line ``error: ...`` and exit code 1, never a traceback, while a
bug in the code keeps its traceback. Options are checked when they are parsed, before
any work starts; ``--help`` shows every default.

>>> positive_int("3")
3
>>> positive_int("0")
Traceback (most recent call last):
argparse.ArgumentTypeError: must be a positive integer, got '0'
>>> nonneg_float("nan")
Traceback (most recent call last):
argparse.ArgumentTypeError: must be a number >= 0, got 'nan'
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import math
import sys

from .common import DataFileError, UserInputError


# -- option types: each raises ArgumentTypeError, which the parser reports with the option's name --
def _number(kind, text, ok, what):
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if not (math.isfinite(value) and ok(value)):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def positive_int(text):
    return _number(int, text, lambda v: v >= 1, "a positive integer")


def nonneg_int(text):
    return _number(int, text, lambda v: v >= 0, "an integer >= 0")


def positive_float(text):
    return _number(float, text, lambda v: v > 0, "a number > 0")


def nonneg_float(text):
    return _number(float, text, lambda v: v >= 0, "a number >= 0")


def unit_interval(text):
    """A share strictly between 0 and 1 (a split ratio)."""
    return _number(float, text, lambda v: 0 < v < 1, "a number between 0 and 1 (exclusive)")


def fraction(text):
    """A share in [0, 1): a dropout rate, a validation fraction."""
    return _number(float, text, lambda v: 0 <= v < 1, "a number in [0, 1)")


def port_number(text):
    """A TCP port to serve on; 0 lets the system pick a free one."""
    return _number(int, text, lambda v: 0 <= v <= 65535, "a port number from 0 to 65535 (0: any free port)")


def probability_mass(text):
    """Top-p: in (0, 1]."""
    return _number(float, text, lambda v: 0 < v <= 1, "a number in (0, 1]")


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keep the description's line breaks and show every option's default (once: a help that says what
    None means already shows it)."""

    def _get_help_string(self, action):
        if "None:" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class CliParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose mistakes are one ``error:`` line and exit code 1.

    The description is plain text: a module docstring's ``double backticks`` are dropped.
    """

    def __init__(self, prog, description=None, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        plain = description.replace("``", "").rstrip() if description else description
        super().__init__(prog=prog, description=plain, **kwargs)

    def error(self, message):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(1)


def add_device_argument(parser) -> None:
    parser.add_argument("--device", default="auto",
                        help="cpu, cuda, cuda:N, mps, or auto = cuda, then mps, then cpu")


def report(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(1)


@contextlib.contextmanager
def cli_errors():
    """Turn a reader's mistake into one line on stderr and exit code 1 (no traceback).

    Caught: ``UserInputError`` (raised wherever input is checked), ``DataFileError``
    (a data file that cannot be found) and ``OSError`` that names a file (permission
    denied, disk full, ...). Everything else is a bug and keeps its traceback.
    """
    try:
        yield
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except (UserInputError, DataFileError) as exc:
        report(str(exc))
    except OSError as exc:
        if exc.filename is None:
            raise
        report(f"cannot use '{exc.filename}': {exc.strerror or exc}: check the path, free space and permissions")


def chapter_parser(chapter: str, description: str, figures: bool = True):
    """The argument parser every ``python -m chNN_*`` walk-through starts from."""
    parser = CliParser(prog=f"python -m {chapter}", description=description)
    if figures:
        parser.add_argument("--image-dir", default=None,
                            help="folder for the figures (None: the repo's image/)")
    return parser


def percent_cells(source: str):
    """Split a percent-format script into ``(kind, first_line, text)`` cells (kind: code or markdown).

    >>> [(k, n) for k, n, _ in percent_cells("x = 1\\n# %% [markdown]\\n# ## 2.2 Tokenizing\\n# %%\\ny = 2\\n")]
    [('code', 1), ('markdown', 3), ('code', 5)]
    """
    cells, kind, start, lines = [], "code", 1, []
    for number, line in enumerate(source.splitlines(keepends=True), start=1):
        if line.startswith("# %%"):
            cells.append((kind, start, "".join(lines)))
            kind = "markdown" if "[markdown]" in line else "code"
            start, lines = number + 1, []
        else:
            lines.append(line)
    cells.append((kind, start, "".join(lines)))
    return [c for c in cells if c[2].strip()]


def headings(markdown: str) -> list[str]:
    """The book's section headings and listing lines of a markdown cell, as they are printed.

    >>> headings("# ## 2.2 Tokenizing text\\n# Some prose.\\n# Listing 2.3: `SimpleTokenizerV1`")
    ['2.2 Tokenizing text', 'Listing 2.3: SimpleTokenizerV1']
    """
    found = []
    for line in markdown.splitlines():
        text = line.lstrip("# ").strip() if line.startswith("# #") else line[2:].strip()
        if line.startswith("# #") or text.startswith("Listing "):
            found.append(text.replace("`", ""))
    return found


def run_walkthrough(module: str, args) -> dict:
    """Run a chapter's ``walkthrough`` module cell by cell with ``ARGS`` set.

    Section headings are printed as the run passes them, so the output reads beside the
    book. Returns the module's globals so tests and readers can inspect every result.
    """
    import matplotlib

    matplotlib.use("Agg")  # a script writes figures to files; a notebook shows them inline
    path = importlib.util.find_spec(module).origin
    with open(path, encoding="utf-8") as f:
        source = f.read()
    namespace = {"__name__": module, "__file__": path, "ARGS": args}
    with cli_errors():
        for kind, start, text in percent_cells(source):
            if kind == "markdown":
                for heading in headings(text):
                    rule = "=" if heading.startswith("Chapter") else "-"
                    print(f"\n{heading}\n{rule * len(heading)}" if not heading.startswith("Listing") else heading)
                continue
            code = compile("\n" * (start - 1) + text, path, "exec")  # keep the file's line numbers
            exec(code, namespace)
    return namespace


def run_exercises(chapter: str, exercises, argv=None, add_arguments=None) -> dict:
    """``python -m chNN_*.exercises [--only N.M]``: each exercise under the header ``Exercise N.M: title``.

    ``exercises``: ``[(number, function)]`` in the book's order; each function takes the parsed
    options; the title is its docstring's first line, the result its return value (returned by
    number, for tests). ``add_arguments(parser)`` adds a chapter's own options.
    """
    parser = CliParser(prog=f"python -m {chapter}.exercises",
                       description=f"The book's exercises of {chapter}, solved with the chapter's own code.")
    parser.add_argument("--only", choices=[number for number, _ in exercises], default=None,
                        help="run just this exercise (None: all, in the book's order)")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    results = {}
    with cli_errors():
        for number, solve in exercises:
            if args.only not in (None, number):
                continue
            header = f"Exercise {number}: {solve.__doc__.strip().splitlines()[0]}"
            print(f"\n{header}\n{'-' * len(header)}")
            results[number] = solve(args)
    return results
