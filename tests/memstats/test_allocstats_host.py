"""liballocstats' manners as a preload (threadcheck/allocstats/include/allocstats.h): a program
started with it does what it does without it.

  - Programs nobody here wrote (xz, sort, python3) and allocstats_host (the first open()'s
    descriptor, a process-directed signal taken in sigtimedwait, exit status 3): the same
    exit status and the same stdout and stderr bytes with and without LD_PRELOAD.
  - The agent answers its own user (and root), and nobody else: a child that drops to
    another uid (root only; skipped otherwise) gets no answer.
  - The agent thread blocks every signal it can (/proc's SigBlk), so no process-directed
    signal can land there, whichever thread the kernel would pick.
  - A host that closes every descriptor and gets the agent's number back for a socket of
    its own: the agent never answers (nor reads) through it.
  - Negative controls, on every run: broken agents built from the same source (one that
    prints, one that keeps its socket at a low descriptor, one whose thread does not block
    signals, one that trusts a reused descriptor, one that answers any uid) must each be
    caught by the check meant for it; a check that catches nothing fails the test.

Exits 77 when the library or allocstats_host is not built, or no C compiler is found for
the broken agents."""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import BUILD, REPO, require  # noqa: E402
from scripts.outside.memstats import ask_agent  # noqa: E402

LIB = BUILD / "threadcheck" / "allocstats" / "liballocstats.so"
HOST = BUILD / "tests" / "memstats" / "allocstats_host"
SOURCE = REPO / "threadcheck" / "allocstats" / "src" / "agent.c"
INCLUDE = REPO / "threadcheck" / "allocstats" / "include"
CC = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
OTHER_UID = 65534  # nobody
TIMEOUT = 30

INPUT = b"".join(b"%d line %d\n" % ((i * 7919) % 1000, i) for i in range(20000))
PY_SIGNAL = ("import os, signal\n"
             "signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])\n"
             "os.kill(os.getpid(), signal.SIGUSR1)\n"
             "info = signal.sigtimedwait([signal.SIGUSR1], 10)\n"
             "print('signal', info and info.si_signo, 'fd', os.open('/dev/null', os.O_RDONLY))\n"
             "import sys; sys.stderr.write('bye\\n'); sys.exit(5)\n")
# (argv, stdin): what each case runs
CASES = {
    "allocstats_host": ([str(HOST)], b""),
    "python3": ([sys.executable, "-c", PY_SIGNAL], b""),
    "xz": (["xz", "-6", "-c", "-T1"], INPUT),
    "xz_error": (["xz", "-d", "-c"], b"not xz data"),
    "sort": (["sort", "-n", "-k1,1", "-s"], INPUT),
}
# each broken agent: (what it breaks, the case whose comparison must catch it, old, new)
BROKEN = {
    "prints": ("output", "sort", "    int saved_errno = errno; /* the host never sees ours */\n",
               "    int saved_errno = errno;\n    write(2, \"allocstats\\n\", 11);\n"),
    "low_fd": ("the first open's descriptor", "allocstats_host", "    close(fd);\n    agent_fd = high;\n",
               "    agent_fd = fd;\n"),
    # the race for a process-directed signal is the kernel's to decide (the agent thread may or
    # may not take it before sigtimedwait does), so this one is caught by the agent thread's
    # mask as /proc shows it: the reason a signal can never land there
    "signals": ("every signal blocked in the agent thread", "mask",
                "                  pthread_attr_setsigmask_np(&attr, &all) == 0 &&\n", ""),
    "reused_fd": ("a descriptor the host closed and reused left alone", "reuse",
                  "        if (cred && still_ours()) "
                  "/* a recvmsg that was waiting when the host closed it ends here */\n",
                  "        if (cred)\n"),
    "any_uid": ("other users refused", "uid", "    if (cred->uid != geteuid() && cred->uid != 0)\n",
                "    if (0)\n"),
}


def run(case, lib):
    argv, stdin = CASES[case]
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    if lib:
        env["LD_PRELOAD"] = str(lib)
    p = subprocess.run(argv, input=stdin, capture_output=True, env=env, timeout=TIMEOUT)
    return p.returncode, p.stdout, p.stderr


def differences(case, lib):
    """How `case` run with `lib` preloaded differs from the same run without it."""
    plain, loaded = run(case, None), run(case, lib)
    return [f"{what}: {a!r:.120} without, {b!r:.120} with"
            for what, a, b in zip(("exit status", "stdout", "stderr"), plain, loaded) if a != b]


def answered(pid, uid=None):
    """Whether the agent of `pid` answers a request sent as `uid` (a forked child drops to it)."""
    if uid is None:
        return ask_agent(pid, timeout=2)[0] is not None
    child = os.fork()
    if child == 0:
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            os._exit(0 if ask_agent(pid, timeout=0.5)[0] is not None else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    if code == 2:
        raise AssertionError(f"the child could not become uid {uid} or ask")
    return code == 0


class Idle:
    """A process started with `lib` preloaded, waiting on its stdin (its agent is up once the
    process has printed its first line: the constructor ran before main)."""

    def __init__(self, lib):
        env = {**os.environ, "LD_PRELOAD": str(lib)}
        self.proc = subprocess.Popen([sys.executable, "-c", "import sys; print('up', flush=True); sys.stdin.read()"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)

    def __enter__(self):
        if self.proc.stdout.readline() != b"up\n":
            raise AssertionError("the idle process did not start")
        return self.proc.pid

    def __exit__(self, *exc):
        self.proc.stdin.close()
        self.proc.wait(timeout=TIMEOUT)
        self.proc.stdout.close()


# SIGKILL and SIGSTOP cannot be blocked; glibc keeps its own two (SIGCANCEL 32, SIGSETXID 33:
# thread-directed, for pthread_cancel and set*id) out of every mask it sets
UNBLOCKABLE = {9, 19, 32, 33}
# A host that closes every descriptor (closefrom) and gets the agent's number back for a socket
# of its own: the agent, waiting in recvmsg on its old socket, must not answer through the
# host's (nor read from it). Prints whether the agent answered before and after.
PY_REUSE = ("import os, socket, sys\n"
            f"sys.path.insert(0, {str(REPO)!r})\n"
            "from scripts.outside.memstats import ask_agent\n"
            "pid = os.getpid()\n"
            "def ask():\n"
            "    r, w = os.pipe()\n"
            "    child = os.fork()\n"
            "    if child == 0:\n"
            "        os.write(w, b'1' if ask_agent(pid, timeout=0.5)[0] else b'0')\n"
            "        os._exit(0)\n"
            "    os.waitpid(child, 0)\n"
            "    answer = os.read(r, 1).decode()\n"
            "    os.close(r); os.close(w)\n"
            "    return answer\n"
            "before = ask()\n"
            "os.closerange(3, 1 << 16)\n"
            "while os.open('/dev/null', os.O_RDONLY) < 899: pass\n"
            "own = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
            "print(before, ask(), own.fileno())\n")


def reuse_answers(lib):
    """(answered before the host closed everything, answered after, the host socket's number)."""
    env = {**os.environ, "LD_PRELOAD": str(lib)}
    out = subprocess.run([sys.executable, "-c", PY_REUSE], capture_output=True, text=True, env=env,
                         timeout=TIMEOUT, check=True).stdout.split()
    return out[0] == "1", out[1] == "1", int(out[2])


def agent_mask_problems(lib):
    """The signals the agent thread (named allocstats) of a process started with `lib` does not
    block (/proc/PID/task/TID/status SigBlk), or why it was not found."""
    with Idle(lib) as pid:
        for tid in os.listdir(f"/proc/{pid}/task"):
            if Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip() == "allocstats":
                status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
                blocked = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigBlk:")), 16)
                return [f"signal {n} not blocked in the agent thread" for n in range(1, 65)
                        if n not in UNBLOCKABLE and not blocked >> (n - 1) & 1]
    return ["no thread named allocstats"]


def other_uid_answered(lib):
    with Idle(lib) as pid:
        return answered(pid), answered(pid, OTHER_UID)


class Host(unittest.TestCase):
    broken = {}

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="allocstats_broken.")
        source = SOURCE.read_text()
        for name, (_, _, old, new) in BROKEN.items():
            if source.count(old) != 1:
                raise AssertionError(f"broken agent '{name}': its edit no longer applies to {SOURCE}")
            path = Path(cls.tmp.name) / f"agent_{name}.c"
            path.write_text(source.replace(old, new))
            lib = Path(cls.tmp.name) / f"liballocstats_{name}.so"
            subprocess.run([CC, "-O2", "-shared", "-fPIC", "-fvisibility=hidden", f"-I{INCLUDE}", str(path), "-o",
                            str(lib), "-lpthread", "-ldl"], check=True, timeout=120)
            cls.broken[name] = lib

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_same_behaviour(self):
        for case in CASES:
            with self.subTest(case=case):
                self.assertEqual(differences(case, LIB), [])
        code, out, _ = run("allocstats_host", LIB)
        print(f"allocstats_host with the preload: exit {code}, {out!r}")

    def test_agent_is_up(self):
        """The runs above compared something: the agent was there and answered."""
        with Idle(LIB) as pid:
            self.assertTrue(answered(pid))

    def test_reused_descriptor_left_alone(self):
        before, after, fd = reuse_answers(LIB)
        self.assertTrue(before, "the agent did not answer before")
        self.assertEqual(fd, 900, "the host's socket did not get the agent's old number: nothing tested")
        self.assertFalse(after, "the agent answered through a descriptor the host reused")

    def test_agent_blocks_signals(self):
        self.assertEqual(agent_mask_problems(LIB), [])

    @unittest.skipIf(os.geteuid() != 0, "dropping to another uid needs root")
    def test_other_uid_refused(self):
        own, other = other_uid_answered(LIB)
        self.assertTrue(own, "the agent did not answer its own user")
        self.assertFalse(other, f"the agent answered uid {OTHER_UID}")

    def test_broken_agents_caught(self):
        for name, (what, case, _, _) in BROKEN.items():
            with self.subTest(broken=name):
                if case == "mask":
                    found = agent_mask_problems(self.broken[name])
                    self.assertNotEqual(found, [], f"'{name}' was not caught by '{what}'")
                    print(f"broken agent '{name}': caught by '{what}': {found[0]} (and {len(found) - 1} more)")
                    continue
                if case == "reuse":
                    before, after, fd = reuse_answers(self.broken[name])
                    self.assertTrue(before and after and fd == 900, f"'{name}' was not caught by '{what}'")
                    print(f"broken agent '{name}': caught by '{what}' (answered through the host's fd {fd})")
                    continue
                if case == "uid":
                    if os.geteuid() != 0:
                        continue
                    own, other = other_uid_answered(self.broken[name])
                    self.assertTrue(own and other, f"'{name}' was not caught by '{what}'")
                    print(f"broken agent '{name}': caught by '{what}' (uid {OTHER_UID} answered)")
                    continue
                found = differences(case, self.broken[name])
                self.assertNotEqual(found, [], f"'{name}' was not caught by '{what}' ({case})")
                print(f"broken agent '{name}': caught by '{what}' ({case}): {found[0]}")


if __name__ == "__main__":
    require(LIB, HOST)
    if not CC:
        print("SKIP: no C compiler for the broken agents (set CC)")
        sys.exit(77)
    for tool in ("xz", "sort"):
        if not shutil.which(tool):
            print(f"SKIP: {tool} is not installed")
            sys.exit(77)
    unittest.main()
