"""How `bgpd`, `bgpd lab` and `bgpctl` fail: one line on stderr naming what is wrong, a non-zero exit, never
a traceback (issue 14).

Two pieces, shared by the three commands (standard library only: `bgpctl` imports nothing else):
- `Parser`, an argparse parser whose usage errors are one line, `PROG: MESSAGE; see PROG --help`, exit 2
  (argparse prints the whole usage first); its subcommand parsers are `Parser`s too.
- `guard()`, the commands' top-level handler: the errors a command expects (a missing file, a daemon that
  is not running, a lab that is not up: the `expected` exception types) become `PROG: MESSAGE`, exit 1; an
  interrupt is `PROG: interrupted`, exit 130; output cut off by its reader (`| head`) is not an error.
  Anything else is a bug in bgpd: still one line, exit 70 (EX_SOFTWARE), naming the exception and a file
  that holds its whole traceback, so the bug stays visible without burying the user in a stack dump.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import traceback
from collections.abc import Callable
from typing import NoReturn

EXIT_USAGE = 2
EXIT_FAILED = 1
EXIT_BUG = 70  # sysexits.h EX_SOFTWARE
EXIT_INTERRUPTED = 130


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (`bgpd lab up: argument --timeout: ...; see ... --help`)."""

    def error(self, message: str) -> NoReturn:
        for action in self._actions:  # a missing command or choice: name the choices
            missing = f"the following arguments are required: {action.dest}"
            if message == missing and not action.option_strings and action.choices:
                what = "command" if isinstance(action, argparse._SubParsersAction) else action.dest
                message = f"missing {what} (one of: {', '.join(map(str, action.choices))})"
        self.exit(EXIT_USAGE, f"{self.prog}: {message}; see {self.prog} --help\n")


def describe(exc: BaseException) -> str:
    """An expected error as one line: an OSError as `FILE: what the system said` (no `[Errno N]`), anything
    else as its message (the message of every expected type is written for the user)."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename is not None else ""
        return f"{where}{exc.strerror}"
    text = " ".join(str(exc).split())  # one line, whatever the message held
    return text or type(exc).__name__


def guard(prog: str, run: Callable[[], int], expected: tuple[type[BaseException], ...] = ()) -> int:
    """Run a command's body (`run()` returns its exit code) with the one-line rule applied: see the module's
    docstring. `expected` are the exception types whose message is the line to print (OSError always is)."""
    errors: tuple[type[BaseException], ...] = (*expected, OSError)
    try:
        return run()
    except BrokenPipeError:  # the reader went away (`bgpctl show kernel | head`): nothing more to write
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except errors as exc:
        print(f"{prog}: {describe(exc)}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # a bug: one line here, the traceback in a file
        print(f"{prog}: internal error (a bug in bgpd): {_bug(prog, exc)}", file=sys.stderr)
        return EXIT_BUG


def _bug(prog: str, exc: Exception) -> str:
    """`Type: message; traceback in FILE` (the file written here), or without the file if none can be."""
    what = f"{type(exc).__name__}: {describe(exc)}"
    try:
        fd, path = tempfile.mkstemp(prefix=f"{prog.replace(' ', '-')}-bug-", suffix=".txt")
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{' '.join(sys.argv)}\n")
            fh.write("".join(traceback.format_exception(exc)))
    except OSError:
        return what
    return f"{what}; traceback in {path}"
