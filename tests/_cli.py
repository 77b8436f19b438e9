"""Shared check for the experiments' command lines."""

from experiments.common.loop import cli_main


def assert_one_line_usage_error(main, argv, message, capsys) -> None:
    """`main(argv)` through the loop's `cli_main` exits 2 with one line on stderr holding `message`."""
    assert cli_main(main, argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
