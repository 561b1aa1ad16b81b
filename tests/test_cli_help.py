"""The command line starts fast: ``madbench --help`` imports no command module (no torch), its
listing of commands matches each command's own help, and a misspelled command gets a
suggestion."""
import subprocess
import sys

from click.testing import CliRunner

from madbench.cli import COMMANDS, main


def test_help_imports_neither_torch_nor_any_command_module():
    code = ("import sys; from madbench.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = sorted(m for m in sys.modules if m == 'torch' or m.startswith("
            "'madbench.cli.') or m == 'numpy')\n"
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert "Commands:" in out and "eval" in out
    assert out.strip().endswith("HEAVY []"), out


def test_the_listing_matches_every_command_s_own_help():
    ctx = main.make_context("madbench", ["--help"], resilient_parsing=True)
    for name, (_module, _attr, short_help) in COMMANDS.items():
        command = main.get_command(ctx, name)
        assert command is not None and command.name == name
        assert command.get_short_help_str(limit=10_000) == short_help, name


def test_a_misspelled_command_gets_a_suggestion():
    result = CliRunner().invoke(main, ["evl"])
    assert result.exit_code == 2 and "Did you mean 'eval'?" in result.output
