"""One command-line style for every `python -m jaxdistil.X`: absl flags.

Every command defines its flags in a `define_flags(fv)` on a `FlagValues` of
its own for each call and parses them through `parse`, so that `main(argv)`
can run any number of times in one interpreter (tests, and commands calling
each other) and nothing lands on absl's global `FLAGS`. The syntax is absl's
(`--name=value`, `--name value`, `--flagfile=`); a boolean is `--name` /
`--noname`, and a config flag takes `--config=FILE[:ARG]` and
`--config.KEY=VALUE` overrides everywhere.

A bad command line is one line on stderr and exit status 2, never a traceback;
`--help` prints the command's docstring and its flags, the same way for every
command. A renamed flag keeps its old spelling for a release: `parse(...,
deprecated={'--no_head': '--nohead'})` rewrites it before absl sees it, with
a one-line notice on stderr.
"""

from __future__ import annotations

import sys
import types
from typing import Callable, Mapping, Sequence

from absl import flags

from jaxdistil import config_files

HELP = ('-h', '--help', '-?', '--helpshort', '--helpfull')
TRUE = ('true', 't', '1')                # absl's spellings of a boolean
FALSE = ('false', 'f', '0')


class UsageError(ValueError):
  """A command line that cannot run: one line naming the flag to fix."""


def name_of(prog: str) -> str:
  """'jaxdistil.train' of 'python -m jaxdistil.train': what starts its lines."""
  return prog.split()[-1]


def parse(prog: str, doc: str, define: Callable[[flags.FlagValues], None],
          argv: Sequence[str] | None = None, config_flags: Sequence[str] = (),
          positional: Sequence[str] = (),
          deprecated: Mapping[str, str] | None = None) -> types.SimpleNamespace:
  """`argv` (default: `sys.argv[1:]`) parsed by the flags `define(fv)` adds.

  Returns a namespace of every flag's value, with `.flag_values` (the
  `FlagValues`, for config file names and overrides) and, when `positional`
  names the allowed words, `.command` (the one given). Each flag named in
  `config_flags` is a config file flag: its file is resolved as
  `config_files.resolve_path` does and its overrides are checked against it
  before absl sees them. `deprecated` maps old spellings to new ones (see
  `renamed`). Raises `UsageError`; `--help` prints and exits 0.
  """
  fv = flags.FlagValues()
  define(fv)
  argv = list(sys.argv[1:] if argv is None else argv)
  if any(a in HELP for a in argv):
    old = ''.join(f'\n  {o}: use {n}' for o, n in (deprecated or {}).items())
    print(f'usage: {prog} [flags]\n\n{doc.strip()}\n\n{fv.get_help()}'
          + (f'\n\nDeprecated spellings (still read, for a release):{old}'
             if old else ''))
    raise SystemExit(0)
  try:
    argv = renamed(argv, deprecated or {}, fv, name_of(prog))
    full = [prog] + argv
    for name in config_flags:
      full = config_files.resolve_command_line(full, name)
      config_files.check_command_line(full, name)
    rest = fv(full)[1:]
  except config_files.ConfigError as e:
    raise UsageError(str(e)) from None
  except (flags.Error, ValueError) as e:   # absl: ValueError for --noflag=x
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


def define_config(fv: flags.FlagValues, default: str | None = None,
                  help: str = 'config file, configs/NAME.py[:ARG], with '
                  '--config.KEY=VALUE overrides', name: str = 'config') -> None:
  """A config file flag, `--config=FILE[:ARG]` with `--config.KEY=VALUE`
  overrides (give `config_flags=(name,)` to `parse`)."""
  from ml_collections import config_flags
  config_flags.DEFINE_config_file(name, default, help, lock_config=True,
                                  flag_values=fv)


def renamed(argv: Sequence[str], deprecated: Mapping[str, str],
            fv: flags.FlagValues, prog: str) -> list[str]:
  """`argv` with each old spelling in `deprecated` ({'--old': '--new'})
  replaced by its new one, and a one-line notice on stderr for each old
  spelling used. `--old=VALUE` becomes `--new=VALUE`, except for a boolean
  renamed to absl's negation ('--no_head': '--nohead'), whose value is kept:
  `--no_head=false` becomes `--head`. Nothing after `--` is touched."""
  out, told = [], set()
  for i, arg in enumerate(argv):
    if arg == '--':
      out += argv[i:]
      break
    old, eq, value = arg.partition('=')
    new = deprecated.get(old)
    if new is None:
      out.append(arg)
      continue
    if old not in told:
      told.add(old)
      print(f'{prog}: notice: {old} is deprecated and goes in the next '
            f'release: use {new}', file=sys.stderr, flush=True)
    positive = new[len('--no'):]
    negation = (new.startswith('--no') and positive in fv
                and isinstance(fv[positive], flags.BooleanFlag))
    if eq and negation:
      if value.lower() not in TRUE + FALSE:
        raise UsageError(f'{arg}: a boolean is true or false')
      out.append(new if value.lower() in TRUE else f'--{positive}')
    else:
      out.append(new + eq + value)
  return out


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
