"""The package's shape: it is installed and every module imports, there is no
import cycle, no module is too long, and no test module imports another.

The import graph is read from the source (`ast`), not by importing: every
`import jaxdistil...` and `from jaxdistil... import ...` counts, at the top of
a module and inside its functions alike, since a function-level import is
still a dependency (it only hides a cycle until the function runs). Importing
`jaxdistil.a.b` from outside the package `jaxdistil.a` runs `a/__init__.py`
too, so that counts as an edge to `jaxdistil.a` as well.
"""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = 'jaxdistil'
MAX_LINES = 400          # no module is longer
REASON_LINES = 300       # above this, the docstring says why (one line)

pytestmark = pytest.mark.smoke


def modules() -> dict[str, str]:
  """{dotted name: path} of every module of the package (a package by its
  __init__)."""
  out = {}
  for folder, dirs, files in os.walk(os.path.join(ROOT, PACKAGE)):
    dirs[:] = sorted(d for d in dirs if not d.startswith(('.', '__')))
    for f in sorted(files):
      if not f.endswith('.py'):
        continue
      rel = os.path.relpath(os.path.join(folder, f), ROOT)[:-3].split(os.sep)
      if rel[-1] == '__init__':
        rel = rel[:-1]
      out['.'.join(rel)] = os.path.join(folder, f)
  return out


def imported(name: str, path: str, known) -> set[str]:
  """The package modules that module `name` imports (see the docstring)."""
  is_package = path.endswith('__init__.py')
  with open(path, encoding='utf-8') as f:
    tree = ast.parse(f.read(), path)
  targets = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      targets.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:                       # relative: from the importer's package
        parts = name.split('.')
        parts = parts[:len(parts) - node.level + (1 if is_package else 0)]
        base = '.'.join(parts + ([base] if base else []))
      for a in node.names:                 # a submodule, or a name of `base`
        sub = f'{base}.{a.name}'
        targets.add(sub if sub in known else base)
  # Where `name` already is: its own packages are imported before it runs.
  parts = name.split('.')
  inside = {'.'.join(parts[:i]) for i in range(1, len(parts) + (1 if is_package else 0))}
  out = set()
  for t in targets:
    if t != PACKAGE and not t.startswith(PACKAGE + '.'):
      continue
    while t not in known and '.' in t:     # `import jaxdistil.a.b.attr`-like
      t = t.rsplit('.', 1)[0]
    tparts = t.split('.')
    for i in range(1, len(tparts) + 1):    # the module, and the packages it is in
      m = '.'.join(tparts[:i])
      if m in known and m not in inside and m != name:
        out.add(m)
  return out


def graph() -> dict[str, set[str]]:
  known = modules()
  return {name: imported(name, path, known) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
  """One cycle (as a closed path) in each strongly connected component that
  has one (Tarjan, iteratively)."""
  index, low, on_stack, stack, comps, counter = {}, {}, set(), [], [], [0]

  def strongconnect(root):
    work = [(root, iter(sorted(edges[root])))]
    index[root] = low[root] = counter[0]
    counter[0] += 1
    stack.append(root)
    on_stack.add(root)
    while work:
      v, children = work[-1]
      for w in children:
        if w not in index:
          index[w] = low[w] = counter[0]
          counter[0] += 1
          stack.append(w)
          on_stack.add(w)
          work.append((w, iter(sorted(edges[w]))))
          break
        if w in on_stack:
          low[v] = min(low[v], index[w])
      else:
        work.pop()
        if work:
          low[work[-1][0]] = min(low[work[-1][0]], low[v])
        if low[v] == index[v]:
          comp = []
          while True:
            w = stack.pop()
            on_stack.discard(w)
            comp.append(w)
            if w == v:
              break
          if len(comp) > 1:
            comps.append(set(comp))

  for v in sorted(edges):
    if v not in index:
      strongconnect(v)
  return [_path_in(edges, comp) for comp in comps]


def _path_in(edges, comp: set[str]) -> list[str]:
  """A shortest cycle through the component's first module (breadth first)."""
  start = min(comp)
  parent, frontier = {start: None}, [start]
  while frontier:
    nxt = []
    for v in frontier:
      for w in sorted(edges[v] & comp):
        if w == start:
          path = [v]
          while parent[path[-1]] is not None:
            path.append(parent[path[-1]])
          return path[::-1] + [start]
        if w not in parent:
          parent[w] = v
          nxt.append(w)
    frontier = nxt
  return sorted(comp)


def test_the_package_is_installed_every_module_imports_and_its_data_ships():
  """What an install gives (`pip install -e .`; the wheel itself is
  test_install's, in the full suite)."""
  import importlib
  from importlib import metadata
  import jaxdistil
  from jaxdistil import config_lib
  assert metadata.version('jaxdistil') == jaxdistil.__version__
  assert os.path.dirname(jaxdistil.__file__) == os.path.join(ROOT, PACKAGE)
  for name in modules():
    if not name.endswith('__main__'):
      importlib.import_module(name)
  assert os.path.isfile(config_lib.shipped('tiny.py'))
  teacher = os.path.join(ROOT, PACKAGE, 'quickstart_data', 'teacher')
  assert os.path.isfile(os.path.join(teacher, 'config.json'))


def test_the_cycle_finder_names_a_cycle():
  edges = {'a': {'b'}, 'b': {'c'}, 'c': {'a', 'd'}, 'd': set(), 'e': {'e'}}
  assert cycles(edges) == [['a', 'b', 'c', 'a']]
  assert cycles({'a': {'b'}, 'b': set()}) == []


def test_the_graph_sees_function_level_and_package_imports():
  edges = graph()
  # `from jaxdistil.convert import load_model` inside a function of replicate
  assert 'jaxdistil.convert' in edges['jaxdistil.replicate']
  # a submodule imported from outside its package runs the package first
  assert 'jaxdistil.data' in edges['jaxdistil.workdir']
  # inside a package, its own __init__ is not an edge
  assert 'jaxdistil.convert' not in edges['jaxdistil.convert.hf_in']


def test_the_package_has_no_import_cycle():
  found = cycles(graph())
  assert not found, 'import cycles:\n' + '\n'.join(' -> '.join(c) for c in found)


def test_workdir_imports_only_what_lies_below_it():
  edges = graph()
  reach, todo = set(), ['jaxdistil.workdir']
  while todo:
    for m in edges[todo.pop()] - reach:
      reach.add(m)
      todo.append(m)
  assert not any(m.startswith(('jaxdistil.convert', 'jaxdistil.train'))
                 for m in reach), sorted(reach)


def test_no_module_is_too_long():
  """Over 400 lines: split it. Over 300: its docstring says why, in a line
  reading 'Over 300 lines on purpose: ...'."""
  problems = []
  for name, path in modules().items():
    with open(path, encoding='utf-8') as f:
      text = f.read()
    lines = text.count('\n')
    doc = ast.get_docstring(ast.parse(text)) or ''
    if lines > MAX_LINES:
      problems.append(f'{name}: {lines} lines (at most {MAX_LINES})')
    elif lines > REASON_LINES and 'over 300 lines' not in doc.lower():
      problems.append(f'{name}: {lines} lines and no "Over 300 lines on '
                      f'purpose: ..." in its docstring')
  assert not problems, '\n'.join(problems)


def test_no_test_module_imports_another():
  """Shared test code lives in `conftest.py` or `tests/helpers`."""
  tests = os.path.join(ROOT, 'tests')
  found = []
  for f in sorted(os.listdir(tests)):
    if not (f.startswith('test_') and f.endswith('.py')):
      continue
    with open(os.path.join(tests, f), encoding='utf-8') as src:
      tree = ast.parse(src.read(), f)
    for node in ast.walk(tree):
      names = ([a.name for a in node.names] if isinstance(node, ast.Import)
               else [node.module or ''] if isinstance(node, ast.ImportFrom) else [])
      # `test_x`, and `tests.test_x` (a package path to the same module).
      found += [f'{f} imports {n}' for n in names
                if any(p.startswith('test_') for p in n.split('.')[:2])]
  assert not found, '\n'.join(found)
