"""Running a chapter: a percent-format walk-through cell by cell with the book's headings, and its exercises.

Unlike running the file with ``python``: the markdown cells' section headings (``2.2 Tokenizing text``,
``Listing 2.3: ...``) are printed as the run passes them, so the output reads beside the book.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .cli import CliParser, cli_errors
from .errors import UserInputError
from .hardware import pick_device
from .safe_files import check_folder


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


def check_chapter_options(args, weights_hint: str = "see the README") -> None:
    """What a chapter's walk-through would find wrong only after minutes of work, found now: the device, the
    folders it writes into (``--out-dir``, ``--image-dir``), a ``--gpt2-weights`` file that is not there."""
    pick_device(args.device)
    check_folder(args.out_dir, "--out-dir")
    if args.image_dir is not None:
        check_folder(args.image_dir, "--image-dir")
    if args.gpt2_weights is not None and not Path(args.gpt2_weights).exists():
        raise UserInputError(f"--gpt2-weights '{args.gpt2_weights}' does not exist: download GPT-2's "
                             f"model.safetensors ({weights_hint}) or leave the option out")
