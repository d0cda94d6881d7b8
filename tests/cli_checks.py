"""What every bad-input test checks of a CLI: one ``error:`` line, exit code 1 (shared by the CLI tests)."""

import pytest


def fails_with_one_line(capsys, main, argv, match):
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(argv)
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert info.value.code == 1, captured
    assert len(err) == 1 and err[0].startswith("error: ") and match in err[0], err
    return captured


def printed(main, argv) -> str:
    """What ``main(argv)`` prints (argv's paths and numbers as strings)."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main([str(a) for a in argv])
    return out.getvalue()
