"""The ``madbench`` command line. Each command group lives in its own module, imported only
when its command runs (so that ``madbench --help`` does not import torch).

Exit codes: 0 ok, 1 error, 2 usage (bad input), 3 refused by a check (or an invalid
submission), 4 runs left by ``--time-limit`` (``eval``, ``scaling run``), 130 interrupted (143
by SIGTERM), 141 the output's reader gone. Every error is one line on stderr; an unexpected
exception too (its traceback with ``--debug`` or ``MADBENCH_DEBUG=1``).
"""
from __future__ import annotations

import contextlib
import difflib
import importlib
import math
import os
import signal
import sys
import threading
import traceback
import warnings

import click

from ..errors import BudgetExceeded, MadbenchError, Terminated, note_suffix, printable
from .. import __version__

DEBUG_ENV = "MADBENCH_DEBUG"
# torch warns on every use of its sync debug mode, which the graphed engine turns on to refuse
# host syncs before a capture (madbench/cuda_graphs.py): noise in every GPU eval's output
warnings.filterwarnings("ignore", message="Synchronization debug mode is a prototype feature",
                        category=UserWarning)
#: raised (click >= 8.2) when a group is called without a subcommand: not an error to reword
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


def _debugging(ctx: click.Context) -> bool:
    return bool(ctx.params.get("debug")) or os.environ.get(DEBUG_ENV, "") not in ("", "0")


#: command name -> (module under madbench.cli, attribute, the one-line help that ``madbench
#: --help`` lists without importing the module; tests/test_cli_help.py keeps it equal to the
#: command's own).
COMMANDS = {
    "arch": ("arch_cmd", "arch_group",
             "Architectures: list them, describe their parameters, state and FLOPs."),
    "check": ("arch_cmd", "check_command",
              "The verdicts of 'madbench eval' (causality and the mixer contract, iso-state, "
              "parameter ratio) plus the empirical state audit of every layer."),
    "compare": ("eval_cmd", "compare_command",
                "Show several architectures side by side: one column per architecture and "
                "protocol."),
    "eval": ("eval_cmd", "eval_command",
             "Evaluate an architecture on the MAD suite with the standardized sweep."),
    "leaderboard": ("leaderboard_cmd", "leaderboard_group",
                    "Leaderboard submissions: build, validate, render the tables."),
    "plot": ("eval_cmd", "plot_command",
             "Per-task bars, or the paper's difficulty curves, from stored runs."),
    "plugins": ("plugins_cmd", "plugins_command",
                "List plugins: name, distribution and version, hooks, what each registered, "
                "failures."),
    "report": ("eval_cmd", "report_command",
               "Re-render the stored results of RUN_DIR (one block per architecture and "
               "protocol), or write them as an HTML page."),
    "scaling": ("scaling_cmd", "scaling_group",
                "IsoFLOP runs, scaling-law fits, stored frontiers and submission validation."),
    "tasks": ("tasks_cmd", "tasks_group",
              "The MAD tasks: list their settings, show decoded examples, export data."),
}


_RESUMES = "madbench.resumes"


def resumes() -> None:
    """Mark the running command as one that stores runs as they finish and resumes (eval,
    scaling run): an interrupt says so."""
    click.get_current_context().meta[_RESUMES] = True


#: the help of ``--channel`` (eval, arch describe, check)
CHANNEL_HELP = ("Channel mixer of the standard model (a single sequence mixer only): swiglu "
                "(default), moe, mlp, or a plugin's channel mixer.")


#: ``--no-progress`` (eval, scaling run)
no_progress_option = click.option("--no-progress", is_flag=True, help="No progress bar, and no "
                                  "line per finished run when stderr is not a terminal.")


def time_limit_option(unit: str, units: str, by: str, extra: str = ""):
    """``--time-limit DURATION`` (eval, scaling run): start no ``unit`` (plural ``units``)
    that would not finish in time, ``by`` what estimate; parsed by
    ``madbench.time_limit.parse_duration``."""
    return click.option("--time-limit", "time_limit_text", default=None, metavar="DURATION",
                        help=f"Start no {unit} that would not finish within DURATION of the "
                        f"command's start (500, 90s, 8m, 2.5h), by {by} corrected by the "
                        f"{units} trained so far; exit 4 with the runs left, which the same "
                        f"command resumes.{extra}")


class FiniteFloat(click.FloatRange):
    """``click.FloatRange`` that also refuses nan and inf (which compare False against any
    bound, so a range alone lets them through)."""

    name = "float"

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


class MadbenchGroup(click.Group):
    """Turns every error into one line on stderr and the documented exit code; loads each
    command's module on first use; suggests the nearest command for a misspelled one."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, name: str):
        if name not in self.commands and name in COMMANDS:
            module, attr, _ = COMMANDS[name]
            self.add_command(getattr(importlib.import_module(f"{__name__}.{module}"), attr),
                             name)
        return self.commands.get(name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names))
        rows = [(name, click.utils.make_default_short_help(
            COMMANDS[name][2] if name in COMMANDS and name not in self.commands
            else self.commands[name].get_short_help_str(), limit)) for name in names]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def resolve_command(self, ctx: click.Context, args: list[str]):
        name = click.utils.make_str(args[0]) if args else ""
        if args and not name.startswith("-") and self.get_command(ctx, name) is None:
            close = difflib.get_close_matches(name, self.list_commands(ctx), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else self._in_groups(ctx, name)
            ctx.fail(f"No such command {name!r}.{hint}")
        return super().resolve_command(ctx, args)

    def _in_groups(self, ctx: click.Context, name: str) -> str:
        """`` Did you mean 'madbench arch list' or 'madbench tasks list'?`` for a command of
        a group given at the top (``madbench list``), or ``""``."""
        groups = [group for group in self.list_commands(ctx)
                  if isinstance(self.get_command(ctx, group), click.Group)
                  and name in self.get_command(ctx, group).list_commands(ctx)]
        found = " or ".join(f"'{ctx.command_path} {group} {name}'" for group in groups)
        return f" Did you mean {found}?" if found else ""

    def make_context(self, info_name, args, parent=None, **extra):
        """The top level's own option errors (``madbench --bogus``) as one line too."""
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except _NO_ARGS_IS_HELP:
            raise
        except click.UsageError as exc:
            _usage_error(exc)

    def invoke(self, ctx: click.Context):
        interrupts = _Interrupts(ctx)
        try:
            return super().invoke(ctx)
        except (MadbenchError, BudgetExceeded) as exc:
            click.echo(f"Error: {printable(exc)}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:            # Ctrl-C, or SIGTERM (Terminated)
            # by SIGTERM even where a library re-raised it as a plain KeyboardInterrupt (Ray)
            line, code = _interruption(ctx, _SIGTERM.is_set())
            click.echo(line, err=True)
            ctx.exit(code)
        except BrokenPipeError:               # `madbench ... | head`: the reader has gone
            _reader_gone(ctx)
        except _NO_ARGS_IS_HELP:             # a group called bare: its help, as click prints
            raise
        except click.UsageError as exc:      # a bad option value, a missing argument...
            _usage_error(exc)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except _UsageExit:                   # a nested group's usage error, already printed
            raise
        except SystemExit as exc:            # code madbench ran (a mixer) called sys.exit()
            if isinstance(exc.__context__, BrokenPipeError):   # rich's exit on a broken pipe
                _reader_gone(ctx)
            click.echo(f"Error: code that madbench ran called sys.exit({exc.code!r}); nothing "
                       "after it ran", err=True)
            ctx.exit(1)
        except Exception as exc:  # noqa: BLE001 - the promise: one line, never a traceback
            if _debugging(ctx):
                click.echo(traceback.format_exc().rstrip(), err=True)
            click.echo(f"Error: {printable(_one_line(exc))}" + (
                "" if _debugging(ctx) else f" (--debug or {DEBUG_ENV}=1 shows the traceback)"),
                err=True)
            ctx.exit(1)
        finally:
            interrupts.close()


_SIGTERM = threading.Event()      #: SIGTERM arrived during the command
#: seconds the main thread has to act on SIGTERM or Ctrl-C before the process exits without
#: it: Python runs a signal's handler between bytecodes only, so one long native call holds it
#: (attention over 32,768 tokens in the causality check: 5 s on a CPU; a C extension: any time)
INTERRUPT_GRACE_SECONDS = 1.0


def _interruption(ctx: click.Context, sigterm: bool) -> tuple[str, int]:
    """The line and exit code of an interrupted command: 143 by SIGTERM, else 130."""
    line = "Interrupted." + (" Finished runs are kept; the same command resumes."
                             if ctx.meta.get(_RESUMES) else "")
    return line, Terminated.exit_code if sigterm else 130


class _Interrupts:
    """For one command (main thread only): SIGTERM raises ``Terminated``, a
    ``KeyboardInterrupt``, as Ctrl-C raises its own, and ``invoke`` handles both. A thread
    sees each signal as it arrives (``signal.set_wakeup_fd``); when the main thread, held in
    native code, has not acted on it within ``INTERRUPT_GRACE_SECONDS``, the thread prints
    invoke's line and exits with its code (``os._exit``). That loses nothing a ``kill -9``
    would not: records are written atomically and claims are the kernel's locks. ``close``
    puts everything back."""

    active = False       #: a watch is on in this process (a forked child drops it)

    def __init__(self, ctx: click.Context):
        self.previous: dict = {}
        self.thread = None
        if threading.current_thread() is not threading.main_thread():
            return
        self.acted = threading.Semaphore(0)     # one release per signal the main thread took
        self.stopping = threading.Event()

        def terminated(signum, frame):
            _SIGTERM.set()
            self.acted.release()
            raise Terminated()

        def interrupted(signum, frame):
            self.acted.release()
            raise KeyboardInterrupt()

        _SIGTERM.clear()
        self.previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, terminated)
        # Ctrl-C where Python's own handler has it (not where it is ignored: a background job)
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self.previous[signal.SIGINT] = signal.signal(signal.SIGINT, interrupted)
        self.ours = {terminated, interrupted}
        self.read, self.write = os.pipe()
        os.set_blocking(self.write, False)
        before = signal.set_wakeup_fd(self.write, warn_on_full_buffer=False)
        if before != -1:            # another reader (an event loop) has the signals: keep it
            signal.set_wakeup_fd(before)
            os.close(self.read)
            os.close(self.write)
            return
        _Interrupts.active = True
        self.thread = threading.Thread(target=self._watch, args=(ctx,), daemon=True,
                                       name="madbench-interrupts")
        self.thread.start()

    def _watch(self, ctx: click.Context) -> None:
        while not self.stopping.is_set():
            for signum in os.read(self.read, 64):
                if (signum in (signal.SIGTERM, signal.SIGINT)
                        and signal.getsignal(signum) in self.ours
                        and not self.acted.acquire(timeout=INTERRUPT_GRACE_SECONDS)
                        and not self.stopping.is_set()):
                    _exit_now(ctx, signum == signal.SIGTERM)

    def close(self) -> None:
        if self.thread is not None:
            signal.set_wakeup_fd(-1)
            _Interrupts.active = False
            self.stopping.set()
            self.acted.release()                # a watch waiting on a signal ends now,
            os.write(self.write, b"\0")         # one waiting to read too
            self.thread.join()
            os.close(self.read)
            os.close(self.write)
        for signum, handler in self.previous.items():
            if handler is not None:
                signal.signal(signum, handler)


def _forget_watch() -> None:
    """In a child forked during a command: its signals are its own, not the watch's."""
    if _Interrupts.active:
        _Interrupts.active = False
        with contextlib.suppress(ValueError):
            signal.set_wakeup_fd(-1)


os.register_at_fork(after_in_child=_forget_watch)


def _exit_now(ctx: click.Context, sigterm: bool) -> None:
    """End the process from another thread than the main one (held in native code): what
    the command printed flushed (in a thread of its own: the main thread may hold a stream's
    lock), invoke's line, its exit code."""
    flush = threading.Thread(target=_flush_output, daemon=True)
    flush.start()
    flush.join(0.5)
    line, code = _interruption(ctx, sigterm)
    with contextlib.suppress(OSError):         # the cursor shown again (a progress bar's)
        os.write(2, (("\x1b[?25h" if os.isatty(2) else "") + line + "\n").encode())
    os._exit(code)


def _flush_output() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed or broken stream: nothing more to keep
            pass


def _reader_gone(ctx: click.Context) -> None:
    """The output's reader has gone (``madbench ... | head``): exit 141, as a shell reports
    SIGPIPE, with nothing more said."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)                       # no second error while flushing at exit
    ctx.exit(141)


class _UsageExit(SystemExit):
    """madbench's own exit after a usage error (any other SystemExit came from code it ran)."""


def _usage_error(exc: click.UsageError) -> None:
    """click's usage error as madbench's: one line on stderr (click lists choices on lines of
    their own), its exit code (2)."""
    click.echo(f"Error: {printable(' '.join(exc.format_message().split()))}", err=True)
    raise _UsageExit(exc.exit_code)


def _one_line(exc: BaseException) -> str:
    """An exception as one line: an OS error as its message and file, else its type and first
    line; then its first note, in brackets (e.g. the run it was training)."""
    note = note_suffix(exc)
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}{note}"
    text = str(exc).strip().splitlines()
    return (f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__) + note


@click.group(cls=MadbenchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="madbench")
@click.option("--debug", is_flag=True, help=f"Show the traceback of an unexpected error (also "
              f"{DEBUG_ENV}=1).")
def main(debug: bool) -> None:
    """madbench: the MAD synthetic benchmark for sequence mixers."""

