"""Fills the docstrings of ``python/shm/__init__.pyi`` from the built module.

The docs are written once, on the Rust side (``///`` on each ``#[pymethods]`` item, which
pyo3 makes ``__doc__``) or in ``__init__.py``; the stubs carry the same text so an editor
shows it. Run after changing either (with the built package on ``PYTHONPATH``)::

    PYTHONPATH=<unzipped wheel> python3 shm-python/tools/stub_docs.py

``tests/test_stubs.py`` fails when a stub entry has no docstring or one that differs from
the module's, and when a public name of the module is missing from the stubs.
"""

import ast
import inspect
import os
import sys

STUB = os.path.join(os.path.dirname(__file__), "..", "python", "shm", "__init__.pyi")


def runtime_doc(module, path):
    """The cleaned ``__doc__`` of ``module.<path>`` (a dotted name), or None."""
    obj = module
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    if isinstance(obj, property):
        obj = obj.fget
    doc = getattr(obj, "__doc__", None)
    return inspect.cleandoc(doc) if doc else None


def entries(tree):
    """Every documented place of the stub: (dotted name, node), classes and functions,
    one level of nesting; names starting with ``_`` (dunders included) are left out."""
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            yield node.name, node
            for sub in node.body:
                if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)) and not sub.name.startswith("_"):
                    yield f"{node.name}.{sub.name}", sub
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
            yield node.name, node


def stub_doc(node):
    return ast.get_docstring(node, clean=True)


def render(doc, indent):
    """A docstring literal at `indent`, one line if it fits."""
    doc = doc.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    lines = doc.splitlines()
    if len(lines) == 1 and len(indent) + len(doc) + 6 <= 100:
        return [f'{indent}"""{doc}"""']
    out = [f'{indent}"""{lines[0]}']
    out += [f"{indent}{line}" if line else "" for line in lines[1:]]
    out.append(f'{indent}"""')
    return out


def fill(text, module):
    """The stub text with every entry's docstring set to the module's."""
    tree = ast.parse(text)
    lines = text.splitlines()
    edits = []  # (first line index, last line index, replacement lines), 0-based
    for name, node in entries(tree):
        doc = runtime_doc(module, name)
        if doc is None:
            continue
        body0 = node.body[0]
        has_doc = (
            isinstance(body0, ast.Expr)
            and isinstance(body0.value, ast.Constant)
            and isinstance(body0.value.value, str)
        )
        indent = " " * (node.col_offset + 4)
        if has_doc:
            # Replace the docstring in place; keep what follows.
            edits.append((body0.lineno - 1, body0.end_lineno - 1, render(doc, indent)))
        elif (
            len(node.body) == 1
            and isinstance(body0, ast.Expr)
            and isinstance(body0.value, ast.Constant)
            and body0.value.value is Ellipsis
            and body0.lineno == node.end_lineno
            and lines[body0.lineno - 1].rstrip().endswith(": ...")
        ):
            # `def f(...) -> X: ...` or `class E(Error): ...` (the head may span lines;
            # the `...` ends its last one).
            last = body0.lineno - 1
            head = lines[last].rstrip()[: -len(" ...")]
            edits.append((last, last, [head] + render(doc, indent) + [f"{indent}..."]))
        else:
            assert not (
                len(node.body) == 1 and isinstance(body0, ast.Expr) and body0.lineno == node.end_lineno
            ), f"{name}: write the stub as `...: ...` with nothing after it on the line"
            # A body on lines of its own: the docstring goes before it (and its decorators).
            first = min([d.lineno for d in getattr(body0, "decorator_list", [])] + [body0.lineno]) - 1
            edits.append((first, first - 1, render(doc, indent)))
    for first, last, new in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        lines[first : last + 1] = new
    return "\n".join(lines) + "\n"


def main():
    import shm

    with open(STUB) as f:
        text = f.read()
    new = fill(text, shm)
    # Twice gives the same: the edit is stable.
    assert fill(new, shm) == new
    with open(STUB, "w") as f:
        f.write(new)
    missing = [n for n, node in entries(ast.parse(new)) if stub_doc(node) is None]
    if missing:
        print("no docstring in the module for:", ", ".join(missing), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
