"""``serstream run --config FILE.toml``: the command line's options as a file.

Every option of ``run`` is a key named as its flag without the dashes
(``hangover-ms = 300``, ``bind = "tcp://0.0.0.0:5556"``); the choice among ``--print``,
``--json`` and ``--quiet`` is ``output = "print" | "json" | "quiet"``. The keys, their
types and their defaults are read from the parser, whose defaults come from the
configuration dataclasses: there is no second list to keep in step. The file's values
become the parser's defaults, so a flag on the command line overrides the file.
Unknown keys and values of the wrong type are refused with a one-line error.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 only (pyproject pulls in tomli there)
    import tomli as tomllib

from serstream.errors import UserError

__all__ = ["Key", "keys", "load", "render"]

_NOT_KEYS = {"help", "config", "print_config"}


@dataclass(frozen=True)
class Key:
    """One key of the file: the option (or group of exclusive options) it stands for."""

    name: str
    dest: str
    action: argparse.Action
    consts: dict[str, Any] | None = None  # output = "json": the flag chosen -> its value

    def convert(self, value: Any, where: str) -> Any:
        """The file's ``value`` as argparse would have stored it, or a one-line error."""
        def wrong(what: str) -> UserError:
            return UserError(f"{where}: {self.name} must be {what}, got {value!r}")

        a = self.action
        if self.consts is not None:
            if value not in self.consts:
                raise wrong("one of " + ", ".join(f'"{c}"' for c in self.consts))
            return self.consts[value]
        if a.nargs == 0:  # store_true
            if not isinstance(value, bool):
                raise wrong("true or false")
            return value
        if isinstance(value, bool):  # TOML true is not an int, whatever Python says
            raise wrong(_kind(a))
        if a.type is int:
            if not isinstance(value, int):
                raise wrong("an integer")
        elif a.type is float:
            if not isinstance(value, int | float):
                raise wrong("a number")
            value = float(value)
        elif a.type is Path:
            if not isinstance(value, str) or not value:
                raise wrong("a path (a string)")
            value = Path(value)
        elif isinstance(value, int):
            value = str(value)  # device = 3: an index, as on the command line
        elif not isinstance(value, str):
            raise wrong("a string")
        if a.choices is not None and value not in a.choices:
            raise wrong("one of " + ", ".join(map(str, a.choices)))
        return value


def _kind(a: argparse.Action) -> str:
    return {int: "an integer", float: "a number", Path: "a path (a string)"}.get(a.type, "a string")


def keys(parser: argparse.ArgumentParser) -> dict[str, Key]:
    """The file's keys for ``parser``'s options, in the order ``--help`` shows them."""
    by_dest: dict[str, list[argparse.Action]] = {}
    for a in parser._actions:
        if a.option_strings and a.dest not in _NOT_KEYS and a.dest != argparse.SUPPRESS:
            by_dest.setdefault(a.dest, []).append(a)
    out: dict[str, Key] = {}
    for dest, actions in by_dest.items():
        if len(actions) == 1:
            a = actions[0]
            out[_long(a)] = Key(_long(a), dest, a)
        else:  # exclusive flags storing one value each: --print | --json | --quiet
            out[dest] = Key(dest, dest, actions[0], {_long(a): a.const for a in actions})
    return out


def _long(a: argparse.Action) -> str:
    return max(a.option_strings, key=len).lstrip("-")


def load(path: Path, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """``path``'s settings as ``{dest: value}``, checked against ``parser``'s options."""
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        raise UserError(f"config file not found: {path}") from None
    except OSError as exc:
        raise UserError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML ({exc})") from None
    known = keys(parser)
    values: dict[str, Any] = {}
    for name, value in doc.items():
        key = known.get(name)
        if key is None:
            close = difflib.get_close_matches(name.replace("_", "-"), list(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; keys are the options of `serstream {parser.prog.split()[-1]}`"
            raise UserError(f"{path}: unknown key {name!r}{hint}")
        values[key.dest] = key.convert(value, str(path))
    return values


def render(args: argparse.Namespace, parser: argparse.ArgumentParser, sources: str) -> str:
    """``args`` as a file that ``--config`` reads back to the same settings. Options
    left unset (decided at start: the model's VAD settings, the default device) are
    comments that quote their help."""
    lines = [f"# serstream {parser.prog.split()[-1]}: effective configuration ({sources})"]
    for key in keys(parser).values():
        value = getattr(args, key.dest)
        if key.consts is not None:
            chosen = [flag for flag, const in key.consts.items() if const == value]
            if not chosen:
                lines.append(f"# {key.name}: unset ({' | '.join(key.consts)}: {_help(key.action)})")
                continue
            value = chosen[0]
        if value is None:
            lines.append(f"# {key.name}: unset ({_help(key.action)})")
            continue
        lines.append(f"{key.name} = {_toml(value)}")
    return "\n".join(lines) + "\n"


def _help(a: argparse.Action) -> str:
    text = (a.help or "") % {"default": a.default} if a.help and "%(default)" in a.help else (a.help or "")
    return " ".join(text.split())


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)  # a TOML basic string: JSON's escapes are TOML's
