"""Command-line plumbing every script shares: a parser whose mistakes are one line, and ``cli_errors``.

What this adds: a reader's mistake (a bad option value, a missing file, a damaged checkpoint) ends in one
line ``error: ...`` and exit code 1, never a traceback, while a bug in the code keeps its traceback.
``--help`` shows every default. The option types are in ``option_types.py``.

>>> parser = CliParser("demo"); _ = parser.add_argument("--n", type=int, default=3)
>>> parser.parse_args([]).n
3
"""

from __future__ import annotations

import argparse
import contextlib
import sys

from .errors import DataFileError, UserInputError


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


class GivenOnly(argparse.Namespace):
    """A namespace in which every option already seems set, so argparse fills in no defaults: parsed into it,
    the command line leaves only the options it gives."""

    def __getattr__(self, name):
        if name.startswith("_"):  # argparse's own bookkeeping (unrecognised arguments), dunders
            raise AttributeError(name)
        return None


def explicit_options(parser, argv) -> dict:
    """The options given on the command line (not their defaults), by destination name."""
    return vars(parser.parse_args(argv, namespace=GivenOnly()))


def run_cli(parser, run, argv=None):
    """Parse ``argv`` (None: the command line) and call ``run(args, explicit)`` inside ``cli_errors``, with
    ``explicit`` the options given (``explicit_options``): the ``main`` of a command that must tell a value
    given from its default."""
    args = parser.parse_args(argv)
    explicit = explicit_options(parser, argv if argv is not None else sys.argv[1:])
    with cli_errors():
        return run(args, explicit)


def refuse_contradictions(explicit, refused, settings, what="--book runs the book's") -> None:
    """One error line for the first option in ``explicit`` that ``refused`` names (given at all) or that gives
    another value than ``settings`` holds: a mode with fixed settings (``--book``) and an option changing them."""
    for name in refused:
        if explicit.get(name) not in (None, False):
            flag = "--" + name.replace("_", "-")
            raise UserInputError(f"{what} data and settings; {flag} changes them: leave {flag} or --book out")
    for name, value in settings.items():
        if name in explicit and explicit[name] != value:
            flag = "--" + name.replace("_", "-")
            raise UserInputError(f"{what} {flag} {value}, not {explicit[name]}: leave {flag} or --book out")
