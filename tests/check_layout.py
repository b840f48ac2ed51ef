#!/usr/bin/env python3
"""check_layout.py - every scenario has its expected file and its doc page,
and every expected file and doc page has its scenario; so does every zoo
kernel, whose doc is its row in docs/zoo.md; and no C files depend on each
other in a circle: none includes itself through a chain of #include "...",
and no two files of a folder each use a function the other defines.

A scenario is a name passed to leaklab_add_scenario() in
scenarios/CMakeLists.txt; a zoo kernel one passed to it in
scenarios/zoo/CMakeLists.txt, with scenarios/zoo/NAME.c,
expected/zoo/NAME.toml and a row of docs/zoo.md's catalog (a row starts
with the kernel's link, | [NAME](../scenarios/zoo/NAME.c) |). Exit 0 when
consistent, 1 with one line per problem otherwise, 2 on bad usage.

Include cycles: the graph of quoted includes of every C file (.c and .h)
under the C folders below, each resolved the way the build resolves it:
first next to the including file, then in the build's include directories,
in order. Angle-bracket includes and names found nowhere (system headers)
are not part of it. Include guards hide a cycle from the compiler, not from
the reader: a file that needs itself to be read first has no beginning.
The same holds for files that call each other through a shared header
(use_graph below): neither can be read, tested or moved without the other."""
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


# Where the C files are, and the include directories their targets use
# (target_include_directories in common/, scenarios/, threadcheck/).
C_FOLDERS = ("common", "scenarios", "threadcheck", "tests", "fuzz")
INCLUDE_DIRS = ("common", "scenarios", "threadcheck/include", "threadcheck/outside",
                "threadcheck/orphans/include", "threadcheck/src", "threadcheck/orphans/src")
QUOTED_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"]+)"', re.M)


def include_graph(root):
    """{file: [files it includes]}, every path relative to root."""
    files = sorted(p for folder in C_FOLDERS for ext in ("*.c", "*.h") for p in (root / folder).rglob(ext))
    dirs = [root / d for d in INCLUDE_DIRS]
    graph = {}
    for path in files:
        edges = []
        for name in QUOTED_INCLUDE.findall(path.read_text(errors="replace")):
            for base in [path.parent] + dirs:
                target = base / name
                if target.is_file():
                    edges.append(target.resolve().relative_to(root.resolve()).as_posix())
                    break
        graph[path.relative_to(root).as_posix()] = edges
    return graph


# The other way two C files can need each other: through a shared header,
# each calling (or naming) a function the other defines - chan.c and sync.c
# once did, through park.h. Only files of one folder are compared: a folder
# is one program or library here (the scenarios and tests folders hold
# several, each a file of its own, which share no functions).
STRIP = re.compile(r'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', re.S)
DEFINITION = re.compile(r"^([A-Za-z_][^;{}=#]*?)\b([A-Za-z_]\w*)\s*\([^;{}]*\)\s*\{", re.M)
IDENTIFIER = re.compile(r"\b[A-Za-z_]\w*\b")
KEYWORDS = {"if", "while", "for", "switch", "return", "sizeof", "main"}


def use_graph(root):
    """{file.c: {file.c of the same folder whose functions it names}}."""
    files = sorted(p for folder in C_FOLDERS for p in (root / folder).rglob("*.c"))
    exported, named = {}, {}
    for path in files:
        text = STRIP.sub(" ", path.read_text(errors="replace"))
        defined = [(m.group(2), "static" in m.group(1).split()) for m in DEFINITION.finditer(text)]
        key = path.relative_to(root).as_posix()
        exported[key] = {name for name, static in defined if not static and name not in KEYWORDS}
        named[key] = set(IDENTIFIER.findall(text)) - {name for name, _ in defined}
    graph = {}
    for a in exported:
        folder = a.rsplit("/", 1)[0]
        graph[a] = sorted(b for b in exported if b != a and b.rsplit("/", 1)[0] == folder
                          and named[a] & exported[b])
    return graph


def cycles_of(graph):
    """Each cycle once, as [a, b, ..., a], starting at its smallest file."""
    cycles, done = set(), set()

    def visit(node, stack):
        if node in stack:
            cycle = stack[stack.index(node):]
            first = cycle.index(min(cycle))
            cycles.add(tuple(cycle[first:] + cycle[:first]))
            return
        if node in done:
            return
        stack.append(node)
        for nxt in graph.get(node, ()):
            visit(nxt, stack)
        stack.pop()
        done.add(node)

    for node in graph:
        visit(node, [])
    return [list(c) + [c[0]] for c in sorted(cycles)]


def include_problems(root):
    root = pathlib.Path(root)
    return (["include cycle: " + " -> ".join(cycle) for cycle in cycles_of(include_graph(root))]
            + ["C files that need each other: " + " -> ".join(cycle) for cycle in cycles_of(use_graph(root))])


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
    return found + zoo_problems(root) + include_problems(root)


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
