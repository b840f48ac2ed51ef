"""The scripts package's folders are its layers: every import points down the
list in scripts/__init__.py (cli, dev, views, outside, run, expect, tools,
base) or stays in its own folder, and no module imports a flat-folder name
(`import runner`) that would only work with scripts/ itself on sys.path."""

import ast
import tempfile
import unittest
from pathlib import Path

import fakes

LAYERS = ("cli", "dev", "views", "outside", "run", "expect", "tools", "base")
PACKAGE = fakes.SCRIPTS
LAUNCHERS = {"leaklab.py": "cli", "gateway.py": "run", "fuzz.py": "dev", "zoo_catalog.py": "views"}


def modules():
    """(path, layer) of every Python file of the package."""
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if len(rel.parts) == 1:
            if rel.name in LAUNCHERS:
                yield path, None   # a launcher sits above every layer
            continue               # scripts/__init__.py
        yield path, rel.parts[0]


def leaklab_imports(path):
    """(line, imported layer or None for a flat name, text) of every import of the
    package's own modules in PATH, nested ones (inside functions) included."""
    flat = {p.stem for p in PACKAGE.rglob("*.py")} - {"__init__"}
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "scripts" and len(parts) > 1:
                yield node.lineno, parts[1], name
            elif parts[0] in flat:
                yield node.lineno, None, name


class Layers(unittest.TestCase):
    def test_every_folder_is_a_layer(self):
        folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
        self.assertEqual(folders, set(LAYERS))

    def test_imports_point_down(self):
        wrong = []
        for path, layer in modules():
            for line, target, name in leaklab_imports(path):
                where = f"{path.relative_to(PACKAGE.parent)}:{line}: {name}"
                if target is None:
                    wrong.append(f"{where} (a flat name: import it as scripts.LAYER.MODULE)")
                elif target not in LAYERS:
                    wrong.append(f"{where} (not a layer)")
                elif layer is not None and LAYERS.index(target) < LAYERS.index(layer):
                    wrong.append(f"{where} (an upward arrow: {layer} -> {target})")
        self.assertEqual(wrong, [])

    def test_the_checker_sees_an_upward_arrow(self):
        # Negative control: a tool module importing the runner must be caught.
        with tempfile.TemporaryDirectory() as tmp:
            probe = Path(tmp) / "probe.py"
            probe.write_text("from scripts.run import runner\nimport runner\n")
            found = [t for _, t, _ in leaklab_imports(probe)]
        self.assertEqual(found, ["run", None])
        self.assertLess(LAYERS.index("run"), LAYERS.index("tools"))

    def test_launchers_call_their_layer(self):
        for name, layer in LAUNCHERS.items():
            targets = {t for _, t, _ in leaklab_imports(PACKAGE / name)}
            self.assertEqual(targets, {layer}, name)


if __name__ == "__main__":
    unittest.main()
