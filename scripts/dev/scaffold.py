"""`leaklab new KERNEL`: a new zoo kernel's C file, its expected file with a [truth] skeleton, and its one
registration line (docs/zoo.md, "Adding a kernel")."""

# What it writes builds and passes as it stands (one thread waits on a
# channel nobody closes, the truth says so), so the newcomer changes a
# working kernel into theirs, step by step, checking as they go. The tool
# checks are not written: they follow from the [truth] (expected/tools/).

import argparse
import re
import sys
from pathlib import Path

from scripts.base.exits import EXIT_OK, EXIT_SYSTEM, EXIT_USAGE

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = Path("scenarios/zoo/kernel.c.in")
REGISTRY = Path("scenarios/zoo/CMakeLists.txt")
NAME = re.compile(r"[a-z][a-z0-9_]{0,47}")
REGISTRATION = "leaklab_add_scenario({name} ${{zoo_matrix_only_tests}})\n"  # tool cells: the zoo matrix's

EXPECTED = '''\
# {name}: ORIGIN. The [truth] is written from the code
# (scenarios/zoo/{name}.c) and its original before any tool is run, then
# checked on every native run; the tool checks follow from it and
# expected/tools/ (docs/zoo.md, "Adding a kernel").
summary = "one line: what blocks forever, and why"

[truth]
pattern = "one line: the leak pattern"
cause = "missing_close"
origin = "C only"
go_leaks = []

# Per instance: G1 waits in await_done for done, which nobody closes; it
# holds the thing and its payload (PAYLOAD_BYTES = 65,536 B, malloc'ed in
# new_thing); nothing that can still run reaches it (orphaned).
[truth.leaky]
leaked_threads = "instances"
wait_site = "await_done"
primitive = "chan_recv"
pinned_bytes = "65536 * instances"
alloc_site = "new_thing"
orphaned = true

[truth.fixed]
leaked_threads = "0"
pinned_bytes = "0"

# Exceptions to the tools' rules, only where a matrix run shows one (never a
# looser rule): a [[check]] with overrides = "TOOL.ID", expect, why and
# measured (docs/zoo.md, "Adding a kernel").
'''

NEXT = """\
wrote {c}
wrote {toml}
registered it in {registry} (one line)

next (docs/zoo.md, "Adding a kernel"):
  1. write the kernel in {c}: the original, the C form, the fix (FIX:)
  2. write its [truth] in {toml} from the code, before any tool is run
  3. build, then: ./leaklab check {name} --variant leaky --scale quick (and fixed, and --scale seed)
  4. python3 scripts/zoo_catalog.py --write   (its row in docs/zoo.md)
  5. ./leaklab matrix --scale quick --scenarios {name}: every cell must match its derived checks;
     a real difference becomes an exception in {toml} (overrides, why, measured)"""


def taken(root, name):
    """The files or registration that already use `name`, as paths relative to root."""
    found = [str(p) for p in (Path("scenarios") / f"{name}.c", Path("expected") / f"{name}.toml",
                              Path("scenarios/zoo") / f"{name}.c", Path("expected/zoo") / f"{name}.toml",
                              Path("scenarios/retention") / f"{name}.c", Path("expected/retention") / f"{name}.toml")
             if (root / p).exists()]
    pattern = re.compile(rf"^\s*leaklab_add_scenario\(\s*{name}[\s)]", re.M)
    for cmake in ("scenarios/CMakeLists.txt", "scenarios/zoo/CMakeLists.txt", "scenarios/retention/CMakeLists.txt"):
        path = root / cmake
        if path.exists() and pattern.search(path.read_text()):
            found.append(f"{cmake} (registered)")
    return found


def register(text, name):
    """The registry with one line for `name` after its last leaklab_add_scenario line."""
    lines = text.splitlines(keepends=True)
    last = max((i for i, line in enumerate(lines) if line.startswith("leaklab_add_scenario(")), default=len(lines) - 1)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    return "".join(lines[:last + 1] + [REGISTRATION.format(name=name)] + lines[last + 1:])


def main(argv=None):
    p = argparse.ArgumentParser(prog="leaklab.py new", description=__doc__.split("\n\n")[0])
    p.add_argument("name", metavar="KERNEL", help="the new kernel's name: snake_case, new everywhere")
    p.add_argument("--root", type=Path, default=REPO, help=argparse.SUPPRESS)  # tests write into a copy
    args = p.parse_args(argv)
    root, name = args.root, args.name
    if not NAME.fullmatch(name):
        print(f"leaklab new: '{name}' is not a kernel name: snake_case, a letter first, at most 48 characters "
              "(one word names the file, the binary, the expected file and the tests)", file=sys.stderr)
        return EXIT_USAGE
    used = taken(root, name)
    if used:
        print(f"leaklab new: '{name}' exists already: {', '.join(used)}; choose another name", file=sys.stderr)
        return EXIT_USAGE
    try:
        template = (root / TEMPLATE).read_text()
        registry = (root / REGISTRY).read_text()
    except OSError as e:
        print(f"leaklab new: cannot read {e.filename}: {e.strerror} (run it in a leaklab checkout)", file=sys.stderr)
        return EXIT_SYSTEM
    c, toml = Path("scenarios/zoo") / f"{name}.c", Path("expected/zoo") / f"{name}.toml"
    written = []
    try:
        for path, text in ((c, template.replace("@NAME@", name)), (toml, EXPECTED.format(name=name))):
            with open(root / path, "x") as f:   # "x": never overwrite, even if one appeared meanwhile
                written.append(root / path)
                f.write(text)
        (root / REGISTRY).write_text(register(registry, name))
    except OSError as e:
        for path in written:   # all three or nothing: a half-made kernel breaks the build
            path.unlink(missing_ok=True)
        print(f"leaklab new: cannot write {e.filename}: {e.strerror}", file=sys.stderr)
        return EXIT_SYSTEM
    print(NEXT.format(name=name, c=c, toml=toml, registry=REGISTRY))
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
