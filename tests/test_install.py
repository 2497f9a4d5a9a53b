"""Installs like a release: a wheel, installed into a fresh venv, runs the quick
start and the shipped configs from a directory that is not the checkout."""

import fnmatch
import glob
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _can_build_without_isolation() -> bool:
  try:
    import setuptools
    major, minor = (int(x) for x in setuptools.__version__.split('.')[:2])
  except Exception:
    return False
  return (major, minor) >= (70, 1)      # bdist_wheel without the wheel package


# Skipped at the top of the copy only: the checkout's own run folders and build
# outputs. A pattern applied at every level would also drop package modules
# (shutil.ignore_patterns('workdir*') once left jaxdistil/workdir.py out).
TOP_LEVEL_SKIPPED = ('.git', '.venv', 'build', 'dist', 'results', '.pytest_cache')
TOP_LEVEL_PATTERNS = ('workdir*', '*.egg-info')


def _ignore_at_top(src: str, names: list[str]) -> set[str]:
  skipped = {n for n in names if n == '__pycache__'}
  if os.path.samefile(src, ROOT):
    skipped |= {n for n in names if n in TOP_LEVEL_SKIPPED or
                any(fnmatch.fnmatch(n, p) for p in TOP_LEVEL_PATTERNS)}
  return skipped


def _site_dirs() -> list[str]:
  """The site-packages folders of the interpreter running the tests (a CI
  venv, a conda env, the system Python: whichever holds jax and the rest)."""
  dirs = []
  for p in sys.path:
    if (os.path.basename(p) in ('site-packages', 'dist-packages')
        and os.path.isdir(p) and p not in dirs):
      dirs.append(p)
  return dirs


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
  """The jaxdistil wheel, built from a copy of the checkout (an in-tree build
  leaves build/ in it)."""
  root = tmp_path_factory.mktemp('wheel')
  source = root / 'source'
  shutil.copytree(ROOT, source, ignore=_ignore_at_top)
  dist = root / 'dist'
  cmd = [sys.executable, '-m', 'pip', 'wheel', str(source), '--no-deps', '-q',
         '-w', str(dist)]
  if _can_build_without_isolation():
    cmd.append('--no-build-isolation')
  r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-2000:]
  wheels = glob.glob(str(dist / 'jaxdistil-*.whl'))
  assert len(wheels) == 1, wheels
  return wheels[0]


@pytest.fixture(scope='module')
def venv(wheel, tmp_path_factory):
  """A fresh venv with the jaxdistil wheel installed into it. It sees the
  packages of the environment running the tests (jax, tf, ...: nothing to
  download) through a .pth file, not through the system interpreter, which
  may have none of them. Plain folder lines in a .pth are appended to
  sys.path after the venv's own site-packages, and .pth files inside them are
  not run, so an editable install of the checkout there stays inactive and the
  wheel is what imports."""
  root = tmp_path_factory.mktemp('install')
  env_dir = root / 'venv'
  subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(env_dir)],
                 check=True, timeout=300)
  python = str(env_dir / 'bin' / 'python')
  r = subprocess.run([python, '-c', 'import sysconfig; '
                      'print(sysconfig.get_paths()["purelib"])'],
                     capture_output=True, text=True, check=True, timeout=60)
  site_packages = r.stdout.strip()
  with open(os.path.join(site_packages, '_outer_environment.pth'), 'w') as f:
    f.write('\n'.join(_site_dirs()) + '\n')
  # The outer pip (through the .pth) installs into this venv: no download.
  r = subprocess.run([python, '-m', 'pip', 'install', '-q', '--no-deps',
                      '--no-index', wheel], capture_output=True, text=True,
                     timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  elsewhere = root / 'elsewhere'
  elsewhere.mkdir()
  return python, str(elsewhere), str(env_dir)


def _source_files() -> set[str]:
  """Every file the wheel must carry, as its path inside the wheel: the
  package's modules and data, and configs/ as jaxdistil/configs."""
  out = set()
  for top, inside in (('jaxdistil', 'jaxdistil'), ('configs', 'jaxdistil/configs')):
    for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, top)):
      dirnames[:] = [d for d in dirnames if d != '__pycache__']
      rel = os.path.relpath(dirpath, os.path.join(ROOT, top))
      for f in filenames:
        if f.endswith('.pyc'):
          continue
        path = os.path.normpath(os.path.join(inside, rel, f))
        out.add(path)
  return out


def test_the_wheel_holds_every_module_and_data_file_of_the_source(wheel):
  with zipfile.ZipFile(wheel) as z:
    in_wheel = {n for n in z.namelist() if not n.split('/')[0].endswith(
        ('.dist-info', '.data'))}
  wanted = _source_files()
  # Files that are not Python and not package data are not shipped (none now).
  wanted = {f for f in wanted if f.endswith('.py') or '/quickstart_data/' in f}
  assert any(f.endswith('jaxdistil/workdir.py') for f in wanted)
  missing = sorted(wanted - in_wheel)
  assert not missing, f'the wheel lacks {missing}'
  extra = sorted(f for f in in_wheel - wanted if f.endswith('.py'))
  assert not extra, f'the wheel has modules the source does not: {extra}'


def test_the_copy_skips_only_top_level_run_folders(tmp_path):
  (tmp_path / 'pkg').mkdir()
  assert _ignore_at_top(str(tmp_path / 'pkg'),
                        ['workdir.py', 'results', 'build', '__pycache__']) == {
                            '__pycache__'}
  top = _ignore_at_top(ROOT, ['workdir_a', 'results', 'jaxdistil', 'x.egg-info',
                              '.git', 'setup.cfg'])
  assert top == {'workdir_a', 'results', 'x.egg-info', '.git'}


def run(python, cwd, *args, timeout=600):
  env = dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS='', PYTHONPATH='')
  return subprocess.run([python, *args], cwd=cwd, env=env, capture_output=True,
                        text=True, timeout=timeout)


def test_the_wheel_is_what_runs_and_carries_configs_and_data(venv):
  python, cwd, env_dir = venv
  r = run(python, cwd, '-c',
          'import jaxdistil, jaxdistil.configs as c, os; '
          'print(jaxdistil.__file__); print(sorted(os.listdir(c.__path__[0])))')
  assert r.returncode == 0, r.stderr
  where, listing = r.stdout.strip().splitlines()
  assert where.startswith(env_dir), where         # not the checkout's
  for name in ('tiny.py', 'small.py', 'distilbert_base.py', 'quickstart.py',
               'ablate.py', 'replicate.py'):
    assert name in listing


def test_train_with_a_shipped_config_from_any_directory(venv):
  python, cwd, _ = venv
  for given in ('configs/tiny.py', 'tiny.py'):
    work = os.path.join(cwd, f'w_{given.replace("/", "_")}')
    r = run(python, cwd, '-m', 'jaxdistil.train', f'--config={given}',
            f'--workdir={work}', '--config.total_steps=2', '--config.eval_every=0',
            '--config.checkpoint_every=2', '--config.data=synthetic')
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'step 2' in r.stdout
  # A name that is neither a file nor shipped is still one line.
  r = run(python, cwd, '-m', 'jaxdistil.train', '--config=configs/nope.py',
          f'--workdir={cwd}/w_nope')
  assert r.returncode == 2 and r.stderr.strip().count('\n') == 0, r.stderr
  assert "'configs/nope.py' does not exist" in r.stderr


def test_quickstart_from_the_wheel(venv):
  python, cwd, _ = venv
  r = run(python, cwd, '-m', 'jaxdistil.quickstart', '--workdir=qs',
          '--student_steps=2', timeout=900)
  assert r.returncode == 0, r.stderr[-3000:]
  assert os.path.isfile(os.path.join(cwd, 'qs', 'data', 'metadata.json'))
  assert os.path.isfile(os.path.join(cwd, 'qs', 'student', 'DONE'))
  assert os.path.isfile(os.path.join(cwd, 'qs', 'student', 'hf', 'config.json'))
