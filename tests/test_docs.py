"""The docs match the code: every ``madbench ...`` command written in README.md,
CONTRIBUTING.md, docs/*.md and leaderboards/README.md names commands and options that exist
(checked against the command line itself, without training); the README's commands table lists
every option of ``madbench eval``; and the README's shell commands run as written, shortened to
smoke size (one task, 32 sequences, one epoch) or, for the GPU-sized ones, as ``--dry-run``
(checks, plan and time estimate, no training)."""
import re
import shlex
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from madbench.cli import main

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", REPO / "CONTRIBUTING.md", REPO / "leaderboards" / "README.md",
        *sorted((REPO / "docs").glob("*.md"))]
#: what shortens a README eval to smoke size
SHORT = ["--tasks", "memorization", "--set", "max_train=32", "--set", "max_test=32",
         "--set", "epochs=1", "--no-progress"]

def readme_example(path: str) -> str:
    """The README's python block that starts ``# <path>``: the example mixer its commands
    run with."""
    for lang, body in fenced_blocks((REPO / "README.md").read_text()):
        if lang == "python" and body.startswith(f"# {path}\n"):
            return body
    raise AssertionError(f"README.md has no python block for {path}")


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced code block."""
    return re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.S | re.M)


def shell_lines(body: str) -> list[str]:
    """Lines of a shell block, continuations joined, comments dropped."""
    lines = body.replace("\\\n", " ").splitlines()
    return [line.split(" #")[0].strip() for line in lines if line.strip()
            and not line.lstrip().startswith("#")]


def madbench_commands(text: str) -> list[str]:
    """Every ``madbench ...`` command: in shell blocks (after ``&&`` or an environment
    prefix too) and in inline code spans."""
    found = []
    for lang, body in fenced_blocks(text):
        if lang not in ("", "bash", "sh", "console"):
            continue
        for line in shell_lines(body):
            for part in line.split("&&"):
                match = re.search(r"(?:^|\s)(madbench\s.*)$", part.strip())
                if match:
                    found.append(match.group(1).strip())
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    found += [m.strip() for m in re.findall(r"`(madbench [^`]+)`", prose)]
    return found


def resolve(words: list[str]) -> tuple[list[click.Command], list[str]]:
    """The commands a documented command line names (``a|b`` alternatives give several) and
    the options it uses."""
    ctx = click.Context(main)
    commands: list[click.Command] = [main]
    rest = words[1:]
    while rest and isinstance(commands[0], click.Group):
        word = rest[0].replace("\\|", "|")
        alternatives = [w for w in word.split("|") if w]
        found = [commands[0].get_command(ctx, w) for w in alternatives]
        if not alternatives or any(f is None for f in found):
            break
        commands, rest = found, rest[1:]
    options = [w.split("=")[0] for w in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", " ".join(rest))]
    return commands, options


def documented() -> list[tuple[str, str]]:
    return [(path.name, command) for path in DOCS
            for command in madbench_commands(path.read_text())]


def test_the_docs_hold_commands_to_check():
    names = {name for name, _ in documented()}
    assert {"README.md", "CONTRIBUTING.md", "scaling.md", "tasks.md"} <= names
    assert len(documented()) > 30


@pytest.mark.parametrize("where, command", documented())
def test_documented_commands_and_options_exist(where, command):
    words = command.split()
    commands, options = resolve(words)
    assert commands[0] is not main or all(w.startswith("-") for w in words[1:]), \
        f"{where}: {command!r} names no madbench command"
    for cmd in commands:
        known = {opt for param in cmd.params for opt in param.opts} | {"--help"}
        if isinstance(cmd, click.Group) and cmd is not main:
            continue                     # `madbench scaling run|fit|...`: the group's listing
        missing = [o for o in options if o not in known]
        assert not missing, f"{where}: {command!r}: {cmd.name} has no {missing}"


def test_the_readme_commands_table_lists_every_eval_option():
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("## Commands"):readme.index("Exit codes:")]
    rows = [line for line in table.splitlines() if line.startswith("| `madbench eval")]
    listed = set(re.findall(r"--[a-z][a-z0-9-]*", " ".join(rows)))
    eval_command = main.get_command(click.Context(main), "eval")
    options = {param.opts[0] for param in eval_command.params if param.opts[0] != "--help"}
    assert options - listed == set(), "README's commands table misses eval options"


def readme_shell_commands() -> list[str]:
    """The README's shell commands that run madbench, without the pip installs before it."""
    out = []
    for lang, body in fenced_blocks((REPO / "README.md").read_text()):
        if lang != "bash":
            continue
        for line in shell_lines(body):
            command = line.split("&&")[-1].strip()
            if command.startswith("madbench "):
                out.append(command)
    return out


def test_the_readme_install_steps_come_in_order():
    """torch (CPU build) first, then the checkout, then the tests."""
    blocks = [body for lang, body in fenced_blocks((REPO / "README.md").read_text())
              if lang == "bash"]
    text = "\n".join(blocks)
    torch_step = text.index("pip install torch --index-url https://download.pytorch.org/whl/cpu")
    assert torch_step < text.index("pip install -e . && madbench eval") < text.index("'.[test]'")


@pytest.mark.parametrize("command", readme_shell_commands())
def test_readme_commands_run_as_written_at_smoke_size(command, tmp_path, monkeypatch):
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "layers.py").write_text(readme_example("mypkg/layers.py"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    args = shlex.split(command)[1:]
    smoke = args[0] == "eval" and args[args.index("--preset") + 1] == "smoke" \
        if "--preset" in args else False
    extra = SHORT if smoke else ["--dry-run"]
    result = CliRunner().invoke(main, [*args, *extra])
    assert result.exit_code == 0, f"{command}: {result.output}"
    if smoke:
        assert "mean of 1 task" in result.output
        run_dir = args[args.index("--run-dir") + 1] if "--run-dir" in args else "runs"
        report = CliRunner().invoke(main, ["report", run_dir])
        assert report.exit_code == 0 and "memorization" in report.output
    else:
        assert "training " in result.output and " runs (" in result.output
        if "--preset" not in args or "paper" in args:
            assert "sized for a GPU" in result.output          # the paper protocol on CPU
    monkeypatch.delitem(__import__("sys").modules, "mypkg", raising=False)
    monkeypatch.delitem(__import__("sys").modules, "mypkg.layers", raising=False)


def test_the_readme_commands_table_gives_eval_s_own_choices():
    """`[--preset paper\\|quick\\|smoke\\|mad-lab]` lists exactly the choices eval accepts (the
    README once said `--settings baseline|all` while --help said `preset|baseline|all`)."""
    readme = (REPO / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| `madbench eval --arch"))
    eval_command = main.get_command(click.Context(main), "eval")
    params = {p.opts[0]: p for p in eval_command.params}
    checked = 0
    for option, value in re.findall(r"\[(--[a-z-]+) ([^\]]+)\]", row):
        param = params[option]
        values = value.replace("\\|", "|")
        if isinstance(param.type, click.Choice):
            assert set(values.split("|")) == set(param.type.choices), option
            checked += 1
        elif param.metavar and "|" in param.metavar:
            assert values == param.metavar, option
            checked += 1
    assert checked >= 5
