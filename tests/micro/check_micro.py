#!/usr/bin/env python3
"""check_micro.py - Go's micro tests of the goroutineleak profile, case by
case: liborphans' and libthreadcheck's answers on the C port (micro.c)
beside Go's expectation (cases.toml).

For each case and tool it runs `micro --variant CASE` with the library
preloaded, --repeat times (Go's test runs each micro test 3 times), reads
the report from stderr, and reduces it to groups (function, kind, threads):
the frame above start_thread, what the threads wait in, how many. Every run
must give the case's asserted answer for that tool: Go's expectation, or
the measured answer of a documented disagreement ([case.TOOL] in
cases.toml, with its why). Then it prints the table

    case | Go expects | orphans says | threadcheck says | agree?

(`--markdown`: the same as a Markdown table, docs/orphans.md's). `agree?`
says, per tool run, whether its answer is Go's (`yes`), a documented
difference (`no, documented`) or neither (`FAIL`).

A run whose answer is not the asserted one is printed with the library's
report (orphans: its figures and explain=1's chain from a root to each
wakeable thread's wait object). `--first-tid N` runs each case in a PID
namespace of its own whose IDs start at N (orphans only; root and unshare,
77 without): thread IDs of a machine that has run for a while, which once
made orphans miss every leak of the 1,000-thread cases.

Exit 0 when every answer is the asserted one, 1 when one is not (a missing
leak, one too many, a wrong count or kind: each printed), 2 on bad usage or
a cases file that contradicts itself (a Go regexp that does not match the
leak it stands for), 99 when a run failed (an exit status neither "leaked"
nor "clean", an unreadable or incomplete report)."""
import argparse
import os
import pathlib
import re
import subprocess
import sys
import tomllib

HERE = pathlib.Path(__file__).resolve().parent
TOOLS = ("orphans", "threadcheck")
GO_REPETITIONS = 3  # makeTest: repetitions 2 | 1
# What each library exits with when it reports threads, and when not.
LEAK_STATUS = {"orphans": 23, "threadcheck": 66}
# The innermost pthread call on a threadcheck stack: what the thread waits in
# (orphans names it itself, in its `waiting:` line).
KIND_OF_FRAME = [
    (re.compile(r"pthread_cond_(timed|clock)?wait"), "cond"),
    (re.compile(r"pthread_rwlock_"), "rwlock"),
    (re.compile(r"pthread_mutex_(timed|clock)?lock|lll_lock_wait"), "mutex"),
    (re.compile(r"sem_(timed|clock)?wait"), "semaphore"),
    (re.compile(r"pthread_barrier_wait"), "barrier"),
    (re.compile(r"pthread_(timed|clock|try)?join"), "join"),
]


class CasesError(Exception):
    """cases.toml contradicts itself or misses a field (exit 2)."""


class RunError(Exception):
    """A run that answered nothing usable (exit 99)."""


def load_cases(path):
    """The cases of `path`, checked: every Go regexp matches the leak string
    Go's extractLeaks would build for the leak it stands for."""
    try:
        data = tomllib.loads(pathlib.Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise CasesError(f"{path}: {err}") from None
    cases = data.get("case", [])
    if not cases:
        raise CasesError(f"{path}: no [[case]]")
    for case in cases:
        for key in ("variant", "go_test", "leaks"):
            if key not in case:
                raise CasesError(f"{path}: a case without `{key}`")
        for leak in case["leaks"]:
            missing = {"go", "go_function", "go_reason", "function", "kind", "threads", "place"} - set(leak)
            if missing:
                raise CasesError(f"{path}: {case['variant']}: a leak without {', '.join(sorted(missing))}")
            go_leak = f"{leak['go_function']}() [{leak['go_reason']}]:"
            if not re.search(leak["go"], go_leak):
                raise CasesError(f"{path}: {case['variant']}: Go's regexp {leak['go']!r} does not match "
                                 f"{go_leak!r}, the leak it stands for")
        for tool in TOOLS:
            if tool in case and not case[tool].get("why"):
                raise CasesError(f"{path}: {case['variant']}: [case.{tool}] without a `why`")
    return cases


def group_of(leak, tool):
    """A leak of cases.toml as `tool` reports it: orphans also says where
    the object waited on lies (heap or stack), threadcheck does not."""
    group = (leak["function"], leak["kind"], leak["threads"])
    return group + (leak.get("place", "?"),) if tool == "orphans" else group


def asserted(case, tool):
    """The groups `tool` must report: Go's, or the documented exception."""
    leaks = case[tool]["leaks"] if tool in case else case["leaks"]
    return sorted(group_of(leak, tool) for leak in leaks)


def go_expects(case, tool):
    return sorted(group_of(leak, tool) for leak in case["leaks"])


def start_function(frames):
    """The thread's start routine: the frame just above start_thread."""
    if "start_thread" not in frames:
        return None
    i = frames.index("start_thread")
    return frames[i - 1] if i > 0 else None


def parse_orphans(text):
    """Groups of an orphans report ("N leaked threads @ a <- b <- ...",
    then "  waiting: KIND, futex ADDR in heap block ..." or "... on the
    stack of thread ..."): (function, kind, threads, place); [] when the
    report says nothing was leaked. A report that is neither is a RunError."""
    groups = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^(\d+) leaked threads? @ (.+)$", line)
        if not m:
            continue
        frames = m.group(2).split(" <- ")
        waiting = re.match(r"^\s+waiting: (\w+),(.*)$", lines[i + 1]) if i + 1 < len(lines) else None
        if not waiting:
            raise RunError(f"orphans: no `waiting:` line after {line!r}")
        place = ("heap" if " in heap block " in waiting.group(2)
                 else "stack" if " on the stack of thread " in waiting.group(2) else "other")
        groups.append((start_function(frames) or "?", waiting.group(1), int(m.group(1)), place))
    if groups:
        return sorted(groups)
    if re.search(r"orphans at exit: no leaked threads \(", text):
        return []
    if "incomplete" in text or "unsupported" in text:
        raise RunError("orphans: the analysis was not made: " + text.strip())
    raise RunError("orphans: neither a report nor `no leaked threads` (verbosity=1): " + text.strip()[-500:])


def parse_threadcheck(text):
    """Groups of a threadcheck report ("N @ a <- b <- ...", then its frames
    "#\\t0x...\\tNAME+0x...\\tFILE"); [] when it says nothing is left."""
    groups = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^(\d+) @ (.+)$", line)
        if not m:
            continue
        frames = m.group(2).split(" <- ")
        kind = "?"
        for frame_line in lines[i + 1:]:
            if not frame_line.startswith("#"):
                break
            fields = frame_line.split("\t")
            if len(fields) < 3:
                continue
            name = fields[2].split("+")[0]
            found = next((k for pattern, k in KIND_OF_FRAME if pattern.search(name)), None)
            if found:
                kind = found
                break
        groups.append((start_function(frames) or "?", kind, int(m.group(1))))
    if groups:
        return sorted(groups)
    if "threadcheck: no unexpected threads at exit" in text:
        return []
    raise RunError("threadcheck: neither a report nor `no unexpected threads` (verbosity=1): " + text.strip()[-500:])


# A PID namespace with its own /proc (orphans lists /proc/self/task and
# compares with gettid()), whose next ID is $1; then the rest of the
# arguments. (Not `unshare --mount-proc`: it sets the propagation of /, which
# fails in a chroot such as the lane's, where / is no mount point. /proc is
# made private first, so the new proc mount never propagates to the caller's
# namespace.)
IN_NAMESPACE = ["unshare", "--pid", "--fork", "--mount", "--propagation", "unchanged", "--", "sh", "-c",
                'mount --make-private /proc && mount -t proc proc /proc && echo "$1" > /proc/sys/kernel/ns_last_pid '
                '&& shift && LD_PRELOAD="$MICRO_PRELOAD" "$@"', "sh"]


def namespace_refusal():
    """Why a run cannot be put in a PID namespace of its own (--first-tid),
    or None when it can."""
    try:
        proc = subprocess.run(IN_NAMESPACE + ["999", "true"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"unshare: {err}"
    return None if proc.returncode == 0 else f"{proc.stderr.strip() or proc.returncode}"


def run_case(program, library, tool, variant, timeout, first_tid=None):
    """One run of `variant` under `tool`: its groups, and the library's
    report (stderr), shown when the groups are not the asserted ones.
    first_tid: run it in a PID namespace of its own whose next ID is that
    number, so the process and its threads get IDs from there on."""
    env = dict(os.environ)
    command = [str(program), "--variant", variant, "--scale", "quick", "--events", os.devnull]
    if first_tid is None:
        env["LD_PRELOAD"] = str(library)
    else:
        # The library is preloaded into the program only, not into unshare
        # and the shell that sets the namespace's next ID. The shell is the
        # namespace's init (PID 1) and the program its child, so the program
        # is an ordinary process whose ID is first_tid.
        env["MICRO_PRELOAD"] = str(library)
        command = IN_NAMESPACE + [str(first_tid - 1)] + command
    # verbosity=1: a clean run says so, so silence is never taken for "no leak";
    # orphans' figures (verbosity=2) and explain=1 (the chain from a root to
    # each wakeable thread's wait object) are the evidence a wrong answer
    # is printed with.
    if tool == "orphans":
        env["ORPHANS_OPTIONS"] = "verbosity=2:explain=1"
    else:
        env["THREADCHECK_OPTIONS"] = "verbosity=1"
    try:
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RunError(f"{tool} {variant}: no end after {timeout} s") from None
    except OSError as err:
        raise RunError(f"{tool} {variant}: cannot run {program}: {err}") from None
    if first_tid is not None and tool == "orphans":
        # The proof that the run had the IDs asked for: its process ID.
        pids = set(re.findall(r"^==(\d+)== orphans", proc.stderr, re.M))
        if pids != {str(first_tid)}:
            raise RunError(f"{tool} {variant}: asked for process ID {first_tid} (--first-tid), the report "
                           f"names {', '.join(sorted(pids)) or 'none'}:\n{proc.stderr.strip()[-1500:]}")
    groups = (parse_orphans if tool == "orphans" else parse_threadcheck)(proc.stderr)
    want_status = LEAK_STATUS[tool] if groups else 0
    if proc.returncode != want_status:
        raise RunError(f"{tool} {variant}: exit status {proc.returncode}, expected {want_status} "
                       f"for {'a report' if groups else 'a clean run'}:\n{proc.stderr.strip()[-1500:]}")
    return groups, proc.stderr


def describe(groups):
    if not groups:
        return "none"
    return "<br>".join(f"{group[2]} @ {group[0]} [{', '.join((group[1],) + group[3:])}]" for group in groups)


def describe_go(case):
    if not case["leaks"]:
        return "none"
    return "<br>".join(f"`{leak['go_function']} [{leak['go_reason']}]`" for leak in case["leaks"])


def judge(case, tool, answers):
    """(verdict, problems): answers is one groups list per run."""
    want = asserted(case, tool)
    problems = []
    for n, groups in enumerate(answers, 1):
        if groups != want:
            missing = [g for g in want if g not in groups]
            extra = [g for g in groups if g not in want]
            problems.append(f"{case['variant']}: {tool}, run {n}: answered {describe(groups)}, asserted "
                            f"{describe(want)} (missing: {describe(missing)}; not asserted: {describe(extra)})")
    if problems:
        return "FAIL", problems
    return ("yes" if want == go_expects(case, tool) else "no, documented"), []


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--program", required=True, help="the micro binary (BUILD/tests/micro/micro)")
    parser.add_argument("--orphans", help="liborphans.so (needed to run the orphans column)")
    parser.add_argument("--threadcheck", help="libthreadcheck.so (needed to run the threadcheck column)")
    parser.add_argument("--cases", default=str(HERE / "cases.toml"), help="the cases and expectations")
    parser.add_argument("--case", action="append", default=[], help="run only these cases (repeatable)")
    parser.add_argument("--tool", action="append", choices=TOOLS, default=[], help="run only these tools")
    parser.add_argument("--repeat", type=int, default=GO_REPETITIONS, help="runs per case and tool (Go's: 3)")
    parser.add_argument("--timeout", type=int, default=60, help="seconds per run")
    parser.add_argument("--markdown", action="store_true", help="print the table in Markdown")
    parser.add_argument("--first-tid", type=int, metavar="N",
                        help="run each case in a PID namespace of its own from ID N on (needs root and unshare; "
                             "77 without): thread IDs a long-lived machine reaches")
    args = parser.parse_args(argv)
    try:
        cases = load_cases(args.cases)
    except CasesError as err:
        print(f"check_micro: {err}", file=sys.stderr)
        return 2
    known = {case["variant"] for case in cases}
    unknown = [name for name in args.case if name not in known]
    if unknown:
        print(f"check_micro: --case {', '.join(unknown)}: no such case; known: {', '.join(sorted(known))}",
              file=sys.stderr)
        return 2
    if args.repeat < 1:
        print("check_micro: --repeat must be at least 1", file=sys.stderr)
        return 2
    tools = args.tool or list(TOOLS)
    for tool in tools:
        if not getattr(args, tool):
            print(f"check_micro: the {tool} column needs --{tool} LIB", file=sys.stderr)
            return 2
    if args.first_tid is not None:
        if not 1000 < args.first_tid < 4_000_000:
            print("check_micro: --first-tid must be between 1000 and 4,000,000", file=sys.stderr)
            return 2
        if "orphans" not in tools or len(tools) > 1:
            print("check_micro: --first-tid takes --tool orphans (its report names the process ID, the proof)",
                  file=sys.stderr)
            return 2
        refusal = namespace_refusal()
        if refusal:
            print(f"check_micro: skipped: --first-tid needs a PID namespace of its own (root, unshare): {refusal}",
                  file=sys.stderr)
            return 77
    selected = [case for case in cases if not args.case or case["variant"] in args.case]

    rows, problems = [], []
    for case in selected:
        says, agree = {}, []
        for tool in TOOLS:
            if tool not in tools:
                says[tool] = "(not run)"
                continue
            try:
                runs = [run_case(args.program, getattr(args, tool), tool, case["variant"], args.timeout,
                                 args.first_tid) for _ in range(args.repeat)]
            except RunError as err:
                print(f"check_micro: {err}", file=sys.stderr)
                return 99
            answers = [groups for groups, _ in runs]
            verdict, found = judge(case, tool, answers)
            problems += found
            for n, (groups, report) in enumerate(runs, 1):
                if groups != asserted(case, tool):  # the evidence of a wrong answer: what the library said
                    print(f"check_micro: {case['variant']}: {tool}, run {n}, its report:\n{report.strip()[-3000:]}",
                          file=sys.stderr)
            distinct = {tuple(a) for a in answers}
            says[tool] = describe(answers[0]) + ("" if len(distinct) == 1 else " (runs differ)")
            agree.append(f"{tool}: {verdict}")
        rows.append((case["go_test"], describe_go(case), says["orphans"], says["threadcheck"], "; ".join(agree)))

    header = ("case", "Go expects", "orphans says", "threadcheck says", "agree?")
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        print(" | ".join(header))
        for row in rows:
            print(" | ".join(cell.replace("<br>", ", ").replace("`", "") for cell in row))
    print(f"({args.repeat} run(s) per case and tool; every run must give the asserted answer)")
    for line in problems:
        print("FAIL " + line)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
