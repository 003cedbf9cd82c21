"""The shape of the code, checked: layers import one way (models never the engine, the engine never the runner,
nothing in the package from experiments/), no import cycle, no module uses another module's private names -- in
``src/regjax`` and in ``experiments/`` alike --, the library's functions stay short (files are sized by concept:
no cap), its public functions are annotated, and the package cannot be shadowed by a folder named ``regjax`` (the clone
itself, seen from the folder that holds it)."""
import ast
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TREES = {"src": ROOT / "src", "experiments": ROOT / "experiments"}  # import roots: what each tree imports as
MAX_FUNCTION_LINES = 60  # code lines (the docstring not counted)
# namedtuple's API, and os._exit (the CLI's documented way out without the interpreter's teardown)
ALLOWED_UNDERSCORE = {"_replace", "_fields", "_asdict", "_make", "_exit"}


def _modules():
    for root in TREES.values():
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(root).with_suffix("")
            parts = list(rel.parts[:-1]) if rel.name == "__init__" else list(rel.parts)
            yield ".".join(parts), path, ast.parse(path.read_text())


MODULES = {name: (path, tree) for name, path, tree in _modules()}
PACKAGE = {name: v for name, v in MODULES.items() if name.split(".")[0] == "regjax"}


def _imports(name, path, tree):
    """(imported module of this repository, imported names, node) for every import, function-level ones
    included."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in MODULES or alias.name.split(".")[0] == "regjax":
                    yield alias.name, [], node
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                module = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [module]).strip(".")
            if module in MODULES or module.split(".")[0] == "regjax":
                yield module, [a.name for a in node.names], node


def _resolve(module, names):
    """The modules an import statement loads: the module, and submodules named in ``from pkg import x``."""
    out = [module]
    out += [f"{module}.{n}" for n in names if f"{module}.{n}" in MODULES]
    return [m for m in out if m in MODULES]


def _where(path, node):
    return f"{path.relative_to(ROOT)}:{node.lineno}"


def test_layers_import_one_way():
    rules = {  # a module under the key must not import anything under these prefixes
        "regjax.models": ("regjax.engine", "regjax.runner", "regjax.selection"),
        "regjax.data": ("regjax.engine", "regjax.runner", "regjax.models"),
        "regjax.engine": ("regjax.runner",),
        "regjax.base": ("regjax.",),
    }
    for lesson in ("penalty", "dropout", "batchnorm", "losses", "optim"):
        rules[f"regjax.{lesson}"] = ("regjax.engine", "regjax.runner", "regjax.models", "regjax.data")
    bad = []
    for name, (path, tree) in MODULES.items():
        for module, names, node in _imports(name, path, tree):
            for prefix, banned in rules.items():
                if (name == prefix or name.startswith(prefix + ".")) and any(
                        m == b or m.startswith(b if b.endswith(".") else b + ".")
                        for m in _resolve(module, names) for b in banned):
                    bad.append(f"{_where(path, node)} imports {module}")
    assert not bad, "\n".join(bad)


def test_the_engine_is_used_through_its_public_names_and_its_core_stands_alone():
    """Outside the engine, code imports ``regjax.engine``'s exported names, never its modules (the runner, the
    experiments and the exercise answers included); inside it, ``core`` -- the lesson -- needs nothing of the engine
    but the static spec and the hyperparameters."""
    exported = set(ast.literal_eval(next(n.value for n in MODULES["regjax.engine"][1].body if isinstance(n, ast.Assign)
                                         and any(getattr(t, "id", None) == "__all__" for t in n.targets))))
    bad = []
    for name, (path, tree) in MODULES.items():
        for module, names, node in _imports(name, path, tree):
            if name.startswith("regjax.engine"):
                if name == "regjax.engine.core" and module.startswith("regjax.engine") and module not in (
                        "regjax.engine.hparams", "regjax.engine.spec"):
                    bad.append(f"{_where(path, node)}: the lesson imports {module}")
            elif module.startswith("regjax.engine."):
                bad.append(f"{_where(path, node)} imports the engine's module {module}")
            elif module == "regjax.engine":
                bad += [f"{_where(path, node)} imports regjax.engine.{n}, not exported" for n in names
                        if n not in exported]
    assert not bad, "\n".join(bad)


def test_the_package_imports_nothing_from_experiments_tests_or_benchmarks():
    outside = {name.split(".")[0] for name in MODULES} - {"regjax"} | {"experiments", "tests", "benchmarks"}
    bad = []
    for name, (path, tree) in PACKAGE.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                bad += [f"{_where(path, node)} imports {m}" for m in mods if m.split(".")[0] in outside]
    assert not bad, "\n".join(bad)


def test_module_level_imports_have_no_cycle():
    graph = {}
    for name, (path, tree) in MODULES.items():
        edges = set()
        for node in tree.body:  # module level only: what runs when the module is imported
            nodes = [node] if isinstance(node, (ast.Import, ast.ImportFrom)) else []
            for inner in nodes:
                for module, names, _ in _imports(name, path, ast.Module(body=[inner], type_ignores=[])):
                    edges.update(m for m in _resolve(module, names) if m != name)
        graph[name] = edges
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in graph.get(node, ()):
            if state.get(nxt) == "open":
                cycle = stack[stack.index(nxt):] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node)


def test_no_module_uses_another_modules_private_names():
    """A private module (``regjax._checks``) is the package's own: its modules may use it, experiments may not."""
    bad = []
    for name, (path, tree) in MODULES.items():
        for module, names, node in _imports(name, path, tree):
            last = module.rpartition(".")[2]
            inside = module.split(".")[0] == name.split(".")[0]
            if any(part.startswith("_") for part in module.split(".")) and not inside:
                bad.append(f"{_where(path, node)} imports the private module {module}")
            for n in names:
                if n.startswith("_") and not last.startswith("_"):
                    bad.append(f"{_where(path, node)} imports {module}.{n}")
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and node.attr not in ALLOWED_UNDERSCORE
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
                bad.append(f"{_where(path, node)} uses .{node.attr}")
    assert not bad, "\n".join(bad)


def test_the_packages_functions_are_short():
    """The library's functions fit on a screen; an exercise answer (prose around its numbers) may run longer."""
    long_functions = []
    for path, tree in PACKAGE.values():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body[1:] if ast.get_docstring(node) else node.body
                lines = node.end_lineno - body[0].lineno + 1 if body else 0
                doc = ast.get_docstring(node) or ""
                if lines > MAX_FUNCTION_LINES and "long because" not in doc:
                    long_functions.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {lines} lines")
    assert not long_functions, long_functions


def _public_functions():
    for name, (path, tree) in PACKAGE.items():
        exported = None
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
                exported = set(ast.literal_eval(node.value))
        for node in tree.body:
            public = not node.name.startswith("_") if hasattr(node, "name") else False
            if not public or (exported is not None and node.name not in exported):
                continue
            if isinstance(node, ast.FunctionDef):
                yield f"{name}.{node.name}", node
            elif isinstance(node, ast.ClassDef):
                for sub in node.body:
                    if isinstance(sub, ast.FunctionDef) and (not sub.name.startswith("_") or sub.name == "__init__"):
                        yield f"{name}.{node.name}.{sub.name}", sub


def test_public_functions_are_annotated():
    total, missing = 0, []
    for qualname, fn in _public_functions():
        args = [a for a in fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs if a.arg not in ("self", "cls")]
        args += [a for a in (fn.args.vararg, fn.args.kwarg) if a is not None]
        items = [(a.arg, a.annotation is not None) for a in args]
        items.append(("return", fn.returns is not None or fn.name == "__init__"))
        total += len(items)
        missing += [f"{qualname}: {arg}" for arg, ok in items if not ok]
    assert total > 500  # the walk found the package's functions
    assert len(missing) <= 0.1 * total, f"{len(missing)} of {total} unannotated:\n" + "\n".join(missing)


def test_the_package_lives_in_src():
    assert (ROOT / "src" / "regjax" / "__init__.py").is_file() and not (ROOT / "regjax").exists()


def _installed() -> bool:
    """regjax installed (``pip install -e .``): a distribution whose metadata lies outside the checkout's root (a
    stale ``regjax.egg-info`` there would not import anything)."""
    try:
        where = Path(importlib.metadata.distribution("regjax").locate_file("")).resolve()
    except importlib.metadata.PackageNotFoundError:
        return False
    return where != ROOT


@pytest.mark.skipif(not _installed(),
                    reason="regjax is not installed (the README's install command); the layout is tested installed")
def test_a_folder_named_regjax_beside_a_script_or_notebook_cannot_shadow_the_package(tmp_path):
    """A new user's clone is a folder named regjax. From the folder that holds it -- a script run there, or a
    notebook kernel started there (its ``sys.path`` begins with ``''``, the current folder) -- ``import regjax``
    finds that folder first; with the src/ layout it holds no package, so the installed one is imported."""
    (tmp_path / "regjax").symlink_to(ROOT, target_is_directory=True)
    env = {"PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu"}  # no PYTHONPATH: the installed package or nothing
    code = ("import sys; assert sys.path[0] == ''; import regjax, regjax.engine; "
            "print(regjax.__file__, callable(regjax.sgd_step), callable(regjax.engine.fit))")
    kernel = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    assert kernel.returncode == 0, kernel.stderr
    assert kernel.stdout.split() == [str(ROOT / "src" / "regjax" / "__init__.py"), "True", "True"]
    script = subprocess.run([sys.executable, "regjax/experiments/dropout_mlp.py", "--help"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert script.returncode == 0 and "--rates" in script.stdout, script.stderr
