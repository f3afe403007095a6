"""The type stubs an editor reads (`shm/__init__.pyi`) say what the module says: every
public class, method, property and function in them has a docstring, the same text as
the module's own `__doc__` (written once, in the Rust `///` docs or `__init__.py`), and
every public name of the module is in them. `tools/stub_docs.py` fills them."""

import ast
import inspect
import os
import sys

import shm

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
import stub_docs  # noqa: E402

FIX = "run `PYTHONPATH=<the built package> python3 shm-python/tools/stub_docs.py`"


def stub_tree():
    path = os.path.join(os.path.dirname(os.path.abspath(shm.__file__)), "__init__.pyi")
    with open(path) as f:
        return ast.parse(f.read())


def test_every_stub_entry_has_the_modules_docstring():
    entries = list(stub_docs.entries(stub_tree()))
    # The stubs name every class and end, not a handful.
    assert len(entries) > 150, len(entries)
    missing, differ = [], []
    for name, node in entries:
        doc = ast.get_docstring(node, clean=True)
        if not doc:
            missing.append(name)
        elif doc != stub_docs.runtime_doc(shm, name):
            differ.append(name)
    assert not missing, f"no docstring in the stubs for {missing}: {FIX}"
    assert not differ, f"stub docstrings differ from the module's for {differ}: {FIX}"


def test_every_public_name_of_the_module_is_in_the_stubs():
    tree = stub_tree()
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    functions = {
        n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
    }

    def stub_members(name):
        """Names a stub class defines, its stub bases' included."""
        node = classes[name]
        out = {
            n.name if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            else n.target.id
            for n in node.body
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            or (isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name))
        }
        for base in node.bases:
            if isinstance(base, ast.Name) and base.id in classes:
                out |= stub_members(base.id)
        return out

    absent = []
    for name in shm.__all__:
        obj = getattr(shm, name)
        if inspect.isclass(obj):
            if name not in classes:
                absent.append(name)
                continue
            have = stub_members(name)
            for klass in obj.__mro__:
                if klass.__module__.split(".")[0] not in ("shm", "_shm"):
                    continue
                for member in vars(klass):
                    if not member.startswith("_") and member not in have:
                        absent.append(f"{name}.{member}")
        elif name not in functions:
            absent.append(name)
    assert not absent, f"public names missing from the stubs: {sorted(set(absent))}"


def test_the_filler_is_stable_and_fills_what_is_missing():
    # A stub with no docstrings comes out with the module's, and filling twice changes
    # nothing.
    bare = 'class Receiver:\n    def recv(self, timeout: float = 1.0) -> bytes: ...\n'
    once = stub_docs.fill(bare, shm)
    assert stub_docs.fill(once, shm) == once
    node = ast.parse(once).body[0]
    assert ast.get_docstring(node, clean=True) == inspect.cleandoc(shm.Receiver.__doc__)
    assert ast.get_docstring(node.body[1], clean=True) == inspect.cleandoc(shm.Receiver.recv.__doc__)
