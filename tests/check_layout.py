#!/usr/bin/env python3
"""check_layout.py - every scenario has its expected file and its doc page,
and every expected file and doc page has its scenario; so does every zoo
kernel, whose doc is its row in docs/zoo.md.

A scenario is a name passed to leaklab_add_scenario() in
scenarios/CMakeLists.txt; a zoo kernel one passed to it in
scenarios/zoo/CMakeLists.txt, with scenarios/zoo/NAME.c,
expected/zoo/NAME.toml and a row of docs/zoo.md's catalog (a row starts
with the kernel's link, | [NAME](../scenarios/zoo/NAME.c) |). Exit 0 when
consistent, 1 with one line per problem otherwise, 2 on bad usage."""
import pathlib
import re
import sys


def scenarios_registered(root, folder="scenarios"):
    path = root / folder / "CMakeLists.txt"
    if not path.exists():
        return set()
    text = re.sub(r"#.*", "", path.read_text())
    return set(re.findall(r"leaklab_add_scenario\(\s*(\w+)", text))


def zoo_rows(root):
    """Kernels with a row in docs/zoo.md's catalog."""
    path = root / "docs" / "zoo.md"
    if not path.exists():
        return set()
    return set(re.findall(r"^\|\s*\[(\w+)\]\(\.\./scenarios/zoo/\1\.c\)", path.read_text(), re.M))


def zoo_problems(root):
    registered = scenarios_registered(root, "scenarios/zoo")
    expected = {p.stem for p in (root / "expected" / "zoo").glob("*.toml")}
    sources = {p.stem for p in (root / "scenarios" / "zoo").glob("*.c")}
    rows = zoo_rows(root)
    found = []
    for name in sorted(registered):
        if name not in sources:
            found.append(f"zoo kernel {name}: registered, but scenarios/zoo/{name}.c does not exist")
        if name not in expected:
            found.append(f"zoo kernel {name}: no expected/zoo/{name}.toml")
        if name not in rows:
            found.append(f"zoo kernel {name}: no row in docs/zoo.md (| [{name}](../scenarios/zoo/{name}.c) | ...)")
    for name in sorted(sources - registered):
        found.append(f"scenarios/zoo/{name}.c: not registered in scenarios/zoo/CMakeLists.txt")
    for name in sorted(expected - registered):
        found.append(f"expected/zoo/{name}.toml: no zoo kernel {name} is registered in scenarios/zoo/CMakeLists.txt")
    for name in sorted(rows - registered):
        found.append(f"docs/zoo.md: a row for {name}, but no zoo kernel {name} is registered")
    return found


def problems(root):
    root = pathlib.Path(root)
    registered = scenarios_registered(root)
    expected = {p.stem for p in (root / "expected").glob("*.toml")}
    docs = {p.stem for p in (root / "docs" / "scenarios").glob("*.md")}
    sources = {p.stem for p in (root / "scenarios").glob("*.c")}
    found = []
    for name in sorted(registered):
        if name not in sources:
            found.append(f"scenario {name}: registered, but scenarios/{name}.c does not exist")
        if name not in expected:
            found.append(f"scenario {name}: no expected/{name}.toml")
        if name not in docs:
            found.append(f"scenario {name}: no docs/scenarios/{name}.md")
    for name in sorted(expected - registered):
        found.append(f"expected/{name}.toml: no scenario {name} is registered in scenarios/CMakeLists.txt")
    for name in sorted(docs - registered):
        found.append(f"docs/scenarios/{name}.md: no scenario {name} is registered in scenarios/CMakeLists.txt")
    return found + zoo_problems(root)


def main(argv):
    if len(argv) != 2:
        print("usage: check_layout.py REPO_ROOT", file=sys.stderr)
        return 2
    found = problems(argv[1])
    for line in found:
        print(line)
    if not found:
        root = pathlib.Path(argv[1])
        print(f"layout consistent: {len(scenarios_registered(root))} scenarios, "
              f"{len(scenarios_registered(root, 'scenarios/zoo'))} zoo kernels")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
