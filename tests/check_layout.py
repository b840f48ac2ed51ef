#!/usr/bin/env python3
"""check_layout.py - every scenario has its expected file and its doc page,
and every expected file and doc page has its scenario.

A scenario is a name passed to leaklab_add_scenario() in
scenarios/CMakeLists.txt. Exit 0 when consistent, 1 with one line per
problem otherwise, 2 on bad usage."""
import pathlib
import re
import sys


def scenarios_registered(root):
    text = (root / "scenarios" / "CMakeLists.txt").read_text()
    text = re.sub(r"#.*", "", text)
    return set(re.findall(r"leaklab_add_scenario\(\s*(\w+)", text))


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
    return found


def main(argv):
    if len(argv) != 2:
        print("usage: check_layout.py REPO_ROOT", file=sys.stderr)
        return 2
    found = problems(argv[1])
    for line in found:
        print(line)
    if not found:
        print(f"layout consistent: {len(scenarios_registered(pathlib.Path(argv[1])))} scenarios")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
