"""gperftools heap checker capture (HEAPCHECK=normal on NAME-tcmalloc): its verdict at exit into tool.json."""

import os
import re
from pathlib import Path

from scripts.tools import heapprof, tools

NAME = "heapcheck"
TITLE = "gperftools heap checker"
ALLOCATORS = ("tcmalloc",)  # the checker lives in libtcmalloc (the full one, not -minimal)
CANARY_OPTIONS = ["--canary"]
# "Exiting with error code (instead of crashing) because of whole-program
# memory leaks": the checker's exit code, 1, is data when the end event says
# the scenario ran as designed (the harness itself never exits 1).
LEAK_EXIT_CODES = {1: "the heap checker found leaks"}
REPORTED_KINDS = ("definite",)
ENV_TCMALLOC = "LEAKLAB_TCMALLOC"  # a fresh libtcmalloc.so to test (LD_PRELOAD), e.g. a new gperftools build
DUMP_DIR = "heapcheck"


def binary(spec):
    return None  # the scenario's tcmalloc binary


def unavailable(spec):
    if not heapprof.pprof_path():
        return "google-pprof not found: the heap checker needs it to name functions (apt-get install google-perftools, or set LEAKLAB_PPROF)"
    lib = os.environ.get(ENV_TCMALLOC)
    if lib and not Path(lib).is_file():
        return f"{ENV_TCMALLOC}={lib}: no such file"
    return None


def setup(run_dir):
    (Path(run_dir) / DUMP_DIR).mkdir(exist_ok=True)


def command(spec, binary_path, run_dir, head, options):
    env = {
        "HEAPCHECK": "normal",
        "PPROF_PATH": heapprof.pprof_path(),
        # Its heap dumps (named in the report's pprof hint) go to the run directory, not /tmp.
        "HEAP_CHECK_DUMP_DIRECTORY": str(Path(run_dir) / DUMP_DIR),
        **heapprof.pprof_tools_env(),
    }
    lib = os.environ.get(ENV_TCMALLOC)
    if lib:
        env["LD_PRELOAD"] = str(Path(lib).resolve())
    return head + list(options), env


def versions(spec, binary_path):
    info = tools.allocator_info(binary_path, "tcmalloc", os.environ.get(ENV_TCMALLOC))
    return {"tool_path": info["allocator_path"], "tool_version": info["allocator_version"]}


_FOUND = re.compile(r"Leak check (\S+) detected leaks of (\d+) bytes in (\d+) objects")
_NONE = re.compile(r'No leaks found for check "([^"]+)".*?found (\d+) reachable heap objects of (\d+) bytes')
_LEAK = re.compile(r"^Leak of (\d+) bytes in (\d+) objects allocated from:")
_FRAME = re.compile(r"^\s+@\s+[0-9a-fA-Fx]+\s*(.*)$")


def parse(text):
    """The heap checker's messages (on stderr) -> {"said": "leaks"|"no leaks"|None,
    "kinds", "by_function", "listed_bytes"}. Only the largest leaks are listed
    one by one (HEAP_CHECK_MAX_LEAKS); the totals come from its summary line."""
    kinds = tools.empty_kinds(("definite", "reachable"))
    by_function = {}
    said = None
    current = None

    def flush():
        if current:
            tools.add(by_function, "definite", tools.charged_function(current[2]) or "?", current[0], current[1])

    for line in text.splitlines():
        m = _FOUND.search(line)
        if m and m.group(1) == "_main_":
            said = "leaks"
            kinds["definite"] = {"bytes": int(m.group(2)), "blocks": int(m.group(3))}
            continue
        m = _NONE.search(line)
        if m and m.group(1) == "_main_":
            said = "no leaks"
            kinds["reachable"] = {"bytes": int(m.group(3)), "blocks": int(m.group(2))}
            continue
        m = _LEAK.match(line)
        if m:
            flush()
            current = [int(m.group(1)), int(m.group(2)), []]
            continue
        if current is not None:
            m = _FRAME.match(line)
            if m:
                current[2].append(m.group(1).strip() or "?")
                continue
            flush()
            current = None
    flush()
    listed = sum(v["bytes"] for v in by_function.get("definite", {}).values())
    return {"said": said, "kinds": kinds, "by_function": by_function, "listed_bytes": listed}


def postprocess(spec, binary_path, run_dir, info):
    errors, notes = [], []
    try:
        text = (Path(run_dir) / "stderr.txt").read_text(errors="replace")
    except OSError:
        text = ""
    parsed = parse(text)
    if parsed["said"] is None:
        # What a stubbed checker looks like (gperftools 2.17 removed it and
        # kept HEAPCHECK as a no-op): no verdict at all. It reads as "not
        # reported", so the canary fails: that is how the stub is caught.
        notes.append("heapcheck: the heap checker printed no verdict for _main_ (is it a stub, as in "
                     "gperftools >= 2.17, or was HEAPCHECK ignored?)")
    elif parsed["said"] == "leaks" and parsed["listed_bytes"] > parsed["kinds"]["definite"]["bytes"]:
        errors.append("heapcheck: the listed leaks add up to more than the checker's total: the report "
                      "was not parsed right")
    v = versions(spec, binary_path)
    doc = tools.report(NAME, tool_path=v["tool_path"], tool_version=v["tool_version"], kinds=parsed["kinds"],
                       reported_kinds=REPORTED_KINDS, by_function=parsed["by_function"], raw="stderr.txt",
                       exit_code=info.get("process_exit_code"), leak_exit_code=1,
                       extra={"checker_said": parsed["said"]})
    return doc, errors, notes
