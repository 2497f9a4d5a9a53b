"""Config files and their command line: finding, loading and checking them.

A config is a Python file with `get_config()` (or `get_config(arg)`, given as
`FILE:ARG`). `resolve_path` finds a shipped config by name from any
directory, `load_file` runs one (a file that does not exist, parse or run is
one `ConfigError` line), and `check_command_line` checks a command line's
`--config=` file and `--config.KEY=VALUE` overrides before absl parses them
(absl would raise a traceback), naming the nearest key for an unknown one.
What a config holds and how it is validated is `jaxdistil.config_lib`'s.
"""

from __future__ import annotations


class ConfigError(ValueError):
  """A config that cannot work; the message is one line naming field and fix."""


def shipped(name: str) -> str:
  """The path of the shipped config file `name` ('tiny.py'): the checkout's
  configs/ folder, or the installed package `jaxdistil.configs`."""
  from importlib import resources
  return str(resources.files('jaxdistil.configs').joinpath(name))


def resolve_path(path: str) -> str:
  """`path` when that file exists; else, for `configs/NAME.py`, `NAME.py` or
  `NAME`, the shipped config of that name (so the documented commands work
  from any directory once the package is installed); else `path` unchanged."""
  import os
  if os.path.isfile(path):
    return path
  head, name = os.path.split(path)
  if os.path.normpath(head) in ('.', 'configs') and name:
    candidate = shipped(name if name.endswith('.py') else name + '.py')
    if os.path.isfile(candidate):
      return candidate
  return path


def load_module(path: str):
  """A config file as a module (configs are Python files, not a package).
  A file that does not exist or does not run is one ConfigError line."""
  import importlib.util
  import os
  path = resolve_path(path)
  if not os.path.isfile(path):
    raise ConfigError(f'config file {path!r} does not exist')
  name = 'jaxdistil_config_' + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except SyntaxError as e:
    raise ConfigError(f'config file {path} line {e.lineno}: syntax error '
                      f'({e.msg}): fix the file') from None
  except Exception as e:  # a config file is code: any error is the file's
    raise ConfigError(f'config file {path} fails when run: '
                      f'{type(e).__name__}: {e}') from None
  if not callable(getattr(module, 'get_config', None)):
    raise ConfigError(f'config file {path} has no get_config(): define one that '
                      f'returns an ml_collections.ConfigDict')
  return module


def load_file(path: str):
  """`get_config()` of `file.py`, or `get_config(arg)` of `file.py:arg`."""
  path, _, arg = path.partition(':')
  module = load_module(path)
  try:
    return module.get_config(arg) if arg else module.get_config()
  except Exception as e:  # e.g. an unknown stage name given after ':'
    raise ConfigError(f'config file {path}: get_config({arg!r}) failed: '
                      f'{type(e).__name__}: {e}') from None


def nearest_key(node, key: str) -> str:
  import difflib
  keys = list(node.keys()) if hasattr(node, 'keys') else []
  close = difflib.get_close_matches(key, keys, n=1, cutoff=0.0)
  return close[0] if close else ''


def check_overrides(config, keys) -> None:
  """Each dotted key of `--config.a.b=...` must exist in `config`; the first
  that does not is one ConfigError line naming the group's nearest key."""
  for dotted in keys:
    node, walked = config, []
    for part in dotted.split('.'):
      if not hasattr(node, 'keys') or part not in node:
        group = '.'.join(walked) or 'the config'
        near = nearest_key(node, part)
        raise ConfigError(
            f'--config.{dotted}: {group} has no key {part!r}'
            + (f' (nearest: {".".join(walked + [near])})' if near else ''))
      node = node[part]
      walked.append(part)


def check_command_line(argv, flag: str = 'config') -> None:
  """Before absl parses `argv`: the config file given by `--config=` loads,
  and every `--config.KEY=` override names a key it has (absl would raise a
  traceback for either)."""
  path, keys = None, []
  args = list(argv[1:])
  for i, a in enumerate(args):
    if a == '--':
      break
    if a.startswith(f'--{flag}='):
      path = a.split('=', 1)[1]
    elif a == f'--{flag}' and i + 1 < len(args):
      path = args[i + 1]
    elif a.startswith(f'--{flag}.'):
      keys.append(a[len(flag) + 3:].split('=', 1)[0])
  if path is None:
    return
  check_overrides(load_file(path), keys)


def resolve_command_line(argv, flag: str = 'config') -> list:
  """`argv` with the file of `--config=FILE[:ARG]` resolved by `resolve_path`."""
  out, args = list(argv), list(argv)
  for i, a in enumerate(args):
    if a == '--':
      break
    if a.startswith(f'--{flag}='):
      path, colon, arg = a.split('=', 1)[1].partition(':')
      out[i] = f'--{flag}={resolve_path(path)}{colon}{arg}'
    elif a == f'--{flag}' and i + 1 < len(args):
      path, colon, arg = args[i + 1].partition(':')
      out[i + 1] = f'{resolve_path(path)}{colon}{arg}'
  return out


def flags_parser(prog: str, flag: str = 'config'):
  """An `absl.app.run(..., flags_parser=)` that turns a config file or
  override that cannot load into one line on stderr and exit status 2. For
  scripts on absl's global flags (`benchmarks/op_profile.py`); the commands
  of the package parse through `cli.parse` instead."""
  import sys
  from absl import flags

  def parse(argv):
    try:
      argv = resolve_command_line(argv, flag)
      check_command_line(argv, flag)
      return flags.FLAGS(argv)
    except ConfigError as e:
      print(f'{prog}: {e}', file=sys.stderr)
      sys.exit(2)
    except flags.Error as e:
      print(f'{prog}: {str(e).splitlines()[0]}', file=sys.stderr)
      sys.exit(2)
  return parse
