#!/usr/bin/env python3
"""check_tiers.py - the default tier keeps every guarantee a developer needs.

CTest runs in two tiers (CMakePresets.json): the default tier, every test
without the label `full`, which a developer runs after every change; and the
full tier, every test. Moving tests out of the default tier is how it stays
fast, and also how it could quietly stop testing something. This checker
reads the registered tests (`ctest --show-only=json-v1` in a build folder)
and holds the default tier to its promise:

  - every native quick test is in it: every scenario and zoo kernel, every
    variant, every allocator;
  - every tool has, in it, its canary and at least one other cell;
  - every test that is not a scenario x tool cell is in it (the checkers'
    violating cases, the libraries' own tests, the host corpus, the
    workshop, the fuzz smoke runs, the scripts' unit tests), unless it is
    seed scale;
  - every seed-scale test and every tool release column is in the full tier
    only: they are the regression baseline, not the after-every-change run
    (so may the `lane` tests: the suite in another Debian release's root).

Exit 0 when the tiers keep their promise, 1 with one line per problem, 2 on
bad usage."""
import json
import subprocess
import sys

FULL = "full"


def registered_tests(build_dir):
    """(name, labels) of every test CTest knows in build_dir."""
    out = subprocess.run(["ctest", "--show-only=json-v1"], cwd=build_dir, check=True,
                         capture_output=True, text=True).stdout
    tests = []
    for test in json.loads(out)["tests"]:
        labels = []
        for prop in test.get("properties", []):
            if prop["name"] == "LABELS":
                labels = prop["value"]
        tests.append((test["name"], set(labels)))
    return tests


def problems(tests):
    """The ways `tests`, a list of (name, labels), break the tiers' promise."""
    canaries = [name for name, _ in tests if name.endswith(".canary")]
    tools = {name.split(".")[2].split("@")[0] for name in canaries}  # lsan@clang-19: lsan

    def cell_tool(name):
        """The tool of a scenario x tool cell (<scenario>.<variant>.<tool>[.canary]), else None."""
        parts = name.split(".")
        if len(parts) in (3, 4) and (len(parts) == 3 or parts[3] == "canary"):
            tool = parts[2]
            if tool.split("@")[0] in tools:
                return tool
        return None

    found = []
    default_cells = {}  # tool -> {"canary": n, "cell": n} in the default tier
    for name, labels in sorted(tests):
        in_default = FULL not in labels
        tool = cell_tool(name)
        if "seed" in labels and in_default:
            found.append(f"{name}: seed scale, but in the default tier (add the label `{FULL}`)")
        elif tool and "@" in tool and in_default:
            found.append(f"{name}: a tool release column, but in the default tier (add the label `{FULL}`)")
        elif "native" in labels and "quick" in labels and not in_default:
            found.append(f"{name}: a native quick run, but only in the full tier "
                         "(every scenario and kernel runs natively in the default tier)")
        elif tool is None and "seed" not in labels and "lane" not in labels and not in_default:
            found.append(f"{name}: not a scenario x tool cell nor seed scale, but only in the full tier")
        if tool and "@" not in tool and in_default:
            kind = "canary" if name.endswith(".canary") else "cell"
            default_cells.setdefault(tool, {"canary": 0, "cell": 0})[kind] += 1
    for tool in sorted(tools):
        counts = default_cells.get(tool, {"canary": 0, "cell": 0})
        if not counts["canary"]:
            found.append(f"tool {tool}: no canary in the default tier (a broken {tool} would pass it)")
        if not counts["cell"]:
            found.append(f"tool {tool}: no scenario cell in the default tier")
    return found


def main(argv):
    if len(argv) != 2:
        print("usage: check_tiers.py BUILD_DIR", file=sys.stderr)
        return 2
    found = problems(registered_tests(argv[1]))
    for line in found:
        print(line)
    if not found:
        print("tiers: the default tier keeps every guarantee")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
