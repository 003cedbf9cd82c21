"""The shape of the package, checked: layers import one way (models never the engine, the engine never the
runner, nothing from experiments/), no import cycle between modules, no module uses another module's private
names, files and functions stay short, and the public functions are annotated."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "regjax"
MAX_FILE_LINES = 350
MAX_FUNCTION_LINES = 60  # code lines (the docstring not counted)
# namedtuple's API, os._exit, and atexit._run_exitfuncs (CPython's own exit path since Python 2: runner.script runs
# the atexit handlers itself, then skips the interpreter's teardown with os._exit)
ALLOWED_UNDERSCORE = {"_replace", "_fields", "_asdict", "_make", "_exit", "_run_exitfuncs"}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts[:-1]) if rel.name == "__init__" else list(rel.parts)
        yield ".".join(parts), path, ast.parse(path.read_text())


def _imports(name, path, tree):
    """(imported regjax module, imported names, node) for every import, function-level ones included."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "regjax":
                    yield alias.name, [], node
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                module = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [module]).strip(".")
            if module.split(".")[0] == "regjax":
                yield module, [a.name for a in node.names], node


MODULES = {name: (path, tree) for name, path, tree in _modules()}


def _resolve(module, names):
    """The regjax modules an import statement loads: the module, and submodules named in ``from pkg import x``."""
    out = [module]
    out += [f"{module}.{n}" for n in names if f"{module}.{n}" in MODULES]
    return [m for m in out if m in MODULES]


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
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {module}")
    assert not bad, "\n".join(bad)


def test_nothing_in_regjax_imports_experiments_or_tests():
    for name, (path, tree) in MODULES.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not any(m.split(".")[0] in ("experiments", "tests", "benchmarks") for m in mods), path


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
    bad = []
    for name, (path, tree) in MODULES.items():
        for module, names, node in _imports(name, path, tree):
            private_module = module.rpartition(".")[2].startswith("_")
            for n in names:
                if n.startswith("_") and not private_module:
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {module}.{n}")
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and node.attr not in ALLOWED_UNDERSCORE
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno} uses .{node.attr}")
    assert not bad, "\n".join(bad)


def test_files_and_functions_are_short():
    long_files = [f"{p.relative_to(ROOT)}: {n}" for p, _ in MODULES.values()
                  if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES]
    assert not long_files, long_files
    long_functions = []
    for path, tree in MODULES.values():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body[1:] if ast.get_docstring(node) else node.body
                lines = node.end_lineno - body[0].lineno + 1 if body else 0
                doc = ast.get_docstring(node) or ""
                if lines > MAX_FUNCTION_LINES and "long because" not in doc:
                    long_functions.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {lines} lines")
    assert not long_functions, long_functions


def _public_functions():
    for name, (path, tree) in MODULES.items():
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
