"""The two exceptions a reader's mistake raises; every CLI turns them into one ``error:`` line.

Unlike a bare ``ValueError``: ``cli.cli_errors`` catches exactly these and prints their message, while any
other exception is a bug and keeps its traceback.

>>> issubclass(DataFileError, FileNotFoundError), issubclass(UserInputError, ValueError)
(True, True)
"""


class DataFileError(FileNotFoundError):
    """A data file is in none of the places we look and could not be downloaded."""


class UserInputError(ValueError):
    """Bad input from a reader (file, option, prompt): the message says what to change."""
