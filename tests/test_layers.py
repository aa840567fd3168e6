"""The house's one direction (docs/design.md, "Layers"): emotion_recognition.py imports the package emotion/, no
module of emotion/ imports the script, and no modules import each other in a circle; imports inside functions
count as much as those at the top of a file."""

import ast
import os

from conftest import ROOT

PACKAGE = os.path.join(ROOT, "emotion")


def import_graph(root=ROOT):
    """{module: the project modules it imports anywhere in its file}, for the script and every module of emotion/."""
    files = {"emotion_recognition": os.path.join(root, "emotion_recognition.py")}
    for folder, _, names in os.walk(os.path.join(root, "emotion")):  # emotion/jobs/web/ too
        package = os.path.relpath(folder, root).replace(os.sep, ".")
        for name in names:
            if name.endswith(".py"):
                module = package if name == "__init__.py" else f"{package}.{name[:-3]}"
                files[module] = os.path.join(folder, name)
    return {module: {name for name in imported_names(path) if name in files and name != module}
            for module, path in files.items()}


def imported_names(path):
    """Every dotted name a file imports anywhere, each once, in the order met: `import a.b` gives a.b,
    `from a.b import c` gives a.b and a.b.c."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    named = {}  # a dict as an ordered set
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            named.update(dict.fromkeys(alias.name for alias in node.names))
        elif isinstance(node, ast.ImportFrom) and node.module:
            named.update(dict.fromkeys([node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]))
    return list(named)


def circles(graph):
    """Each import circle found by a depth-first walk, as [a, b, ..., a]."""
    found, state, path = [], {}, []

    def visit(module):
        state[module] = "open"
        path.append(module)
        for imported in sorted(graph[module]):
            if state.get(imported) == "open":
                found.append(path[path.index(imported):] + [imported])
            elif imported not in state:
                visit(imported)
        path.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return found


def test_no_module_of_the_package_imports_the_script():
    graph = import_graph()
    assert "emotion.train.data" in graph["emotion_recognition"] and "emotion.jobs.web.server" in graph["emotion.jobs.serve"]
    assert [m for m, imported in graph.items() if "emotion_recognition" in imported] == []


def test_no_import_circle_anywhere():
    assert circles(import_graph()) == []


def test_the_checks_see_a_lazy_import_inside_a_function(tmp_path):
    """The graph counts an import inside a function, so a lazy circle is found too."""
    (tmp_path / "emotion").mkdir()
    (tmp_path / "emotion_recognition.py").write_text("import emotion.a\n")
    (tmp_path / "emotion" / "a.py").write_text("from emotion.b import x\n")
    (tmp_path / "emotion" / "b.py").write_text("def x():\n    from emotion.a import y\n"
                                               "    import emotion_recognition\n")
    graph = import_graph(str(tmp_path))
    assert "emotion_recognition" in graph["emotion.b"]
    assert ["emotion.a", "emotion.b", "emotion.a"] in circles(graph)


LAYERS = ("io", "core", "train", "jobs")  # docs/design.md, bottom up; emotion/recognizer.py (the public face) sits
# above core beside train, below jobs; the script above them all


def layer_of(module):
    """The rank of a module of emotion/ in LAYERS (the recognizer: between core and jobs), None for others."""
    parts = module.split(".")
    if parts[0] != "emotion" or len(parts) < 2:
        return None
    if parts[1] == "recognizer":
        return LAYERS.index("train")  # imports core and io; jobs import it
    return LAYERS.index(parts[1]) if parts[1] in LAYERS else None


def test_each_folder_imports_only_the_layers_beneath_it():
    """io imports nothing of the package above it, core only io, train and the recognizer core and io, jobs all
    of those; never a layer's own rank or above, except within the same folder."""
    graph, upward = import_graph(), []
    for module, imported in graph.items():
        mine = layer_of(module)
        for other in imported:
            theirs = layer_of(other)
            same_folder = module.split(".")[:2] == other.split(".")[:2]
            if mine is not None and theirs is not None and not same_folder and theirs >= mine:
                upward.append(f"{module} -> {other}")
    assert upward == []
    assert {layer_of(m) for m in graph if m.startswith("emotion.")} >= {0, 1, 2, 3}  # every folder is there


MAX_MODULE_LINES = 300  # a module of the package past this holds two jobs, or something written twice
LONG_MODULES = set()  # known exceptions (none now): a file named here is let off the length check


def long_modules(root=ROOT):
    """{path under root: its line count} for each module of emotion/ longer than MAX_MODULE_LINES."""
    found = {}
    for folder, _, names in os.walk(os.path.join(root, "emotion")):
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as f:
                    lines = len(f.read().splitlines())
                if lines > MAX_MODULE_LINES:
                    found[os.path.relpath(path, root).replace(os.sep, "/")] = lines
    return found


def test_no_module_of_the_package_is_over_300_lines():
    assert {path: n for path, n in long_modules().items() if path not in LONG_MODULES} == {}


def test_the_length_check_counts_every_module_of_the_package(tmp_path):
    (tmp_path / "emotion" / "deep").mkdir(parents=True)
    (tmp_path / "emotion" / "short.py").write_text("x = 1\n" * MAX_MODULE_LINES)
    (tmp_path / "emotion" / "deep" / "long.py").write_text("x = 1\n" * (MAX_MODULE_LINES + 1))
    assert long_modules(str(tmp_path)) == {"emotion/deep/long.py": MAX_MODULE_LINES + 1}


def missing_imports(folder):
    """The project names that the scripts in `folder` import and the package no longer has (a module moved by a
    later layout), as 'file: module.name'; the package's modules import their heavy libraries lazily, so this is
    quick."""
    import importlib
    missing = []
    for name in sorted(os.listdir(folder)):
        if name.endswith(".py"):
            for dotted in imported_names(os.path.join(folder, name)):
                if dotted.split(".")[0] != "emotion":
                    continue
                try:
                    importlib.import_module(dotted)  # a module
                except ImportError:
                    parent, _, member = dotted.rpartition(".")
                    try:  # or a name in its parent module
                        if not hasattr(importlib.import_module(parent), member):
                            missing.append(f"{name}: {dotted}")
                    except ImportError:
                        pass  # the parent itself is reported on its own
    return missing


def test_the_benchmarks_and_tools_import_only_what_the_package_has(tmp_path):
    """The scripts in benchmarks/ and tools/ run by hand, not in the test run: a module moved into a layer broke
    detect_benchmark.py's `from emotion import detection` without a test noticing."""
    for folder in ("benchmarks", "tools"):
        assert missing_imports(os.path.join(ROOT, folder)) == []
    (tmp_path / "stale.py").write_text("from emotion import detection\nfrom emotion.core.detection import nothing\n")
    assert missing_imports(tmp_path) == ["stale.py: emotion.detection", "stale.py: emotion.core.detection.nothing"]
