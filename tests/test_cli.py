"""`cli`: one command-line style for every command, and old spellings kept
for a release with a one-line notice."""

import importlib

import pytest
from absl import flags

from jaxdistil import cli

# Every `python -m jaxdistil.X` and the module whose main() it runs.
COMMANDS = {'train': 'jaxdistil.train', 'prepare': 'jaxdistil.prepare',
            'bench': 'jaxdistil.bench', 'convert': 'jaxdistil.convert.__main__',
            'glue': 'jaxdistil.glue.__main__', 'quickstart': 'jaxdistil.quickstart',
            'replicate': 'jaxdistil.replicate', 'curves': 'jaxdistil.curves',
            'augment': 'jaxdistil.augment', 'predict': 'jaxdistil.predict'}


def define(fv):
  flags.DEFINE_bool('head', True, 'train the head', flag_values=fv)
  flags.DEFINE_bool('progress', True, 'progress bars', flag_values=fv)
  flags.DEFINE_string('output', None, 'where', flag_values=fv)


OLD = {'--no_head': '--nohead', '--no_progress': '--noprogress',
       '--out': '--output'}


def parse(argv):
  return cli.parse('python -m jaxdistil.x', 'doc', define, argv, deprecated=OLD)


@pytest.mark.parametrize('argv,head,output', [
    ([], True, None),
    (['--nohead'], False, None),
    (['--no_head'], False, None),
    (['--no_head=true'], False, None),
    (['--no_head=False'], True, None),
    (['--out=a'], True, 'a'),
    (['--out', 'b'], True, 'b'),
])
def test_old_spellings_mean_what_they_meant(argv, head, output, capsys):
  args = parse(argv)
  assert (args.head, args.output) == (head, output)
  err = capsys.readouterr().err.strip().splitlines()
  if any(a.split('=')[0] in OLD for a in argv):
    old = argv[0].split('=')[0]
    assert err == [f'jaxdistil.x: notice: {old} is deprecated and goes in the '
                   f'next release: use {OLD[old]}']
  else:
    assert err == []


def test_one_notice_for_each_old_spelling_used(capsys):
  args = parse(['--no_head', '--no_progress', '--no_head'])
  assert not args.head and not args.progress
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 2 and '--no_head' in err[0] and '--no_progress' in err[1]


def test_a_bad_value_for_an_old_boolean_is_absls_one_line():
  with pytest.raises(cli.UsageError) as info:
    parse(['--no_head=maybe'])
  assert '\n' not in str(info.value)


def test_help_lists_the_old_spellings(capsys):
  with pytest.raises(SystemExit) as info:
    parse(['--help'])
  assert info.value.code == 0
  out = capsys.readouterr().out
  assert out.startswith('usage: python -m jaxdistil.x [flags]\n\ndoc\n')
  assert '--[no]head' in out and '  --no_head: use --nohead' in out


@pytest.mark.parametrize('name', sorted(COMMANDS))
def test_every_command_prints_its_help_the_same_way(name, capsys):
  module = importlib.import_module(COMMANDS[name])
  with pytest.raises(SystemExit) as info:
    module.main(['--help'])
  assert info.value.code == 0
  out = capsys.readouterr().out
  assert out.startswith(f'usage: python -m jaxdistil.{name} [flags]\n\n')
  doc = getattr(module, 'DOC', module.__doc__)
  assert doc.strip().splitlines()[0] in out


def test_no_command_leaves_flags_on_absls_global_flags():
  for module in COMMANDS.values():
    importlib.import_module(module)
  ours = {'workdir', 'teacher', 'model', 'source', 'head', 'progress'}
  assert not ours & set(flags.FLAGS), sorted(ours & set(flags.FLAGS))
