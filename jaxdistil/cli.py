"""One command-line style for every `python -m jaxdistil.X`: absl flags.

`train`, `prepare`, `bench` and `ablate` define their flags on absl's global
`FLAGS` under `if __name__ == '__main__'` and run through `absl.app`. The
commands that are also called in-process (by tests, and by each other:
`convert`, `glue`, `quickstart`, `replicate`, `curves`) define theirs on a
`FlagValues` of their own for each call, through `parse`, so that `main(argv)`
can run any number of times in one interpreter. Both take the same syntax
(`--name=value`, `--name value`, `--[no]bool`, `--flagfile=`), and a config
flag takes `--config=FILE[:ARG]` and `--config.KEY=VALUE` overrides everywhere.

A bad command line is one line on stderr and exit status 2, never a traceback;
`--help` prints the command's docstring and its flags.
"""

from __future__ import annotations

import sys
import types
from typing import Callable, Sequence

from absl import flags

from jaxdistil import config_files

HELP = ('-h', '--help', '-?', '--helpshort', '--helpfull')


class UsageError(ValueError):
  """A command line that cannot run: one line naming the flag to fix."""


def parse(prog: str, doc: str, define: Callable[[flags.FlagValues], None],
          argv: Sequence[str] | None = None, config_flags: Sequence[str] = (),
          positional: Sequence[str] = ()) -> types.SimpleNamespace:
  """`argv` (default: `sys.argv[1:]`) parsed by the flags `define(fv)` adds.

  Returns a namespace of every flag's value, with `.flag_values` (the
  `FlagValues`, for config file names and overrides) and, when `positional`
  names the allowed words, `.command` (the one given). Each flag named in
  `config_flags` is a config file flag: its file is resolved as
  `config_files.resolve_path` does and its overrides are checked against it
  before absl sees them. Raises `UsageError`; `--help` prints and exits 0.
  """
  fv = flags.FlagValues()
  define(fv)
  argv = list(sys.argv[1:] if argv is None else argv)
  if any(a in HELP for a in argv):
    print(f'usage: {prog} [flags]\n\n{doc.strip()}\n\n{fv.get_help()}')
    raise SystemExit(0)
  try:
    full = [prog] + argv
    for name in config_flags:
      full = config_files.resolve_command_line(full, name)
      config_files.check_command_line(full, name)
    rest = fv(full)[1:]
  except config_files.ConfigError as e:
    raise UsageError(str(e)) from None
  except flags.Error as e:
    raise UsageError((str(e).splitlines() or [type(e).__name__])[0]) from None
  values = {name: fv[name].value for name in fv}
  args = types.SimpleNamespace(flag_values=fv, command=None, **values)
  if positional:
    if len(rest) != 1 or rest[0] not in positional:
      raise UsageError(f'give one of {", ".join(positional)} '
                       f'(got {" ".join(rest) or "none"})')
    args.command = rest[0]
  elif rest:
    raise UsageError(f'unexpected argument {rest[0]!r}: flags are --name=value')
  return args


def require(args: types.SimpleNamespace, *names: str) -> None:
  """Each flag in `names` was given a value (absl's own required-flag check
  would fail before `--help` could print)."""
  missing = [n for n in names if getattr(args, n) in (None, '')]
  if missing:
    raise UsageError(' and '.join(f'--{n}' for n in missing)
                     + (' is' if len(missing) == 1 else ' are') + ' required')


def config_file(args: types.SimpleNamespace, name: str = 'config') -> str:
  """The `FILE[:ARG]` given to config flag `name` (resolved)."""
  from ml_collections import config_flags
  return config_flags.get_config_filename(args.flag_values[name])


def config_overrides(args: types.SimpleNamespace, name: str = 'config') -> dict:
  """`{key: value}` of the `--name.KEY=VALUE` overrides given."""
  from ml_collections import config_flags
  return {k: v for k, v in
          config_flags.get_override_values(args.flag_values[name]).items()}
