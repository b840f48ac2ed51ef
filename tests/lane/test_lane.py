#!/usr/bin/env python3
"""The lane (scripts/lane): another Debian release's root, made and entered.

Refusals (fast, default tier): each thing the lane needs, taken away, gives
exit 77 and a message naming it, before anything is made; a partial root is
removed by --clean. Killed (full tier, needs the real root): a call killed
while it runs leaves no process, no mount and no lock behind. Matrix (full
tier): the quick matrix inside the lane matches its expected files.

Exit 0 pass, 1 fail, 77 skipped (the reason printed), as everywhere."""
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
LANE = os.path.join(ROOT, "scripts", "lane")
REAL_CACHE = os.environ.get("LEAKLAB_LANE_CACHE",
                            os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
                                         "leaklab", "lanes"))


def lane(*args, env=None, timeout=60):
    return subprocess.run([LANE, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def mounts_under(path):
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f
                if line.split()[4] == path or line.split()[4].startswith(path + "/")]


def processes_rooted_in(path):
    """PIDs whose root directory is inside path (processes left in a lane)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            root = os.readlink(f"/proc/{pid}/root")
        except OSError:
            continue
        if root == path or root.startswith(path + "/"):
            found.append(int(pid))
    return found


def descendants(pid):
    """pid and every process below it (host PIDs; a lane's PID namespace included)."""
    children = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def alive(pids):
    return [p for p in pids if os.path.exists(f"/proc/{p}")]


def lock_openers(path):
    """PIDs with path open (the lane's lock is held through an open descriptor,
    fd 9, which every process of a call inherits)."""
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == path:
                    found.add(int(pid))
                    break
            except OSError:
                continue
    return found


class Refusals(unittest.TestCase):
    """Each missing piece: 77 and its name, and nothing made."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="lane-test-")
        self.cache = os.path.join(self.tmp.name, "cache")
        self.env = {"LEAKLAB_LANE_CACHE": self.cache}

    def tearDown(self):
        self.tmp.cleanup()

    def assertNothingMade(self):
        made = os.listdir(self.cache) if os.path.isdir(self.cache) else []
        self.assertEqual([m for m in made if not m.endswith(".lock")], [], "the refused call left a root behind")

    def test_an_unknown_release_is_bad_usage(self):
        r = lane("debian99", "list", env=self.env)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("unknown release 'debian99' (accepted: debian13)", r.stderr)

    def test_without_root(self):
        if os.geteuid() != 0:
            r = lane("debian13", env=self.env)
        else:
            nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"]
            r = subprocess.run([*nobody, LANE, "debian13"], capture_output=True, text=True, timeout=60,
                               env={**os.environ, **self.env})
        self.assertEqual(r.returncode, 77, r.stderr)
        self.assertIn("needs root", r.stderr)
        self.assertNothingMade()

    def require_root(self):
        if os.geteuid() != 0:
            self.skipTest("the lane's later refusals are reached only as root")
        if subprocess.run(["unshare", "--mount", "--pid", "--fork", "true"], capture_output=True).returncode:
            self.skipTest("no mount and PID namespaces here: the lane refuses earlier (test_without_root's path)")

    def test_without_debootstrap(self):
        self.require_root()
        # A PATH with every command of this machine but debootstrap.
        bin_dir = os.path.join(self.tmp.name, "bin")
        os.mkdir(bin_dir)
        for d in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"):
            for name in os.listdir(d) if os.path.isdir(d) else []:
                target = os.path.join(bin_dir, name)
                if name != "debootstrap" and not os.path.lexists(target):
                    os.symlink(os.path.join(d, name), target)
        r = lane("debian13", env={**self.env, "PATH": bin_dir})
        self.assertEqual(r.returncode, 77, r.stderr)
        self.assertIn("debootstrap not installed", r.stderr)
        self.assertNothingMade()

    def test_without_the_mirror(self):
        self.require_root()
        # Port 9 (discard) on the loopback: nothing listens, the connection is refused at once.
        r = lane("debian13", env={**self.env, "LEAKLAB_LANE_MIRROR": "http://127.0.0.1:9/debian"})
        if "debootstrap not installed" in r.stderr:
            self.skipTest("debootstrap is not installed: the lane refuses before the mirror")
        self.assertEqual(r.returncode, 77, r.stderr)
        self.assertIn("cannot reach the Debian mirror http://127.0.0.1:9/debian", r.stderr)
        self.assertNothingMade()

    def test_clean_removes_a_partial_root(self):
        partial = os.path.join(self.cache, "debian13.partial")
        os.makedirs(os.path.join(partial, "usr", "bin"))
        self.assertIn("partial", lane("--list", env=self.env).stdout)
        r = lane("--clean", "debian13", env=self.env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"removed {partial}", r.stdout)
        self.assertFalse(os.path.exists(partial))
        self.assertIn("debian13  not made", lane("--list", env=self.env).stdout)

    def test_a_root_without_its_marker_is_not_used(self):
        # A root killed after debootstrap but before its packages: it has a
        # shell and everything, but no marker; --list says so, --clean takes it.
        root = os.path.join(self.cache, "debian13")
        os.makedirs(os.path.join(root, "etc"))
        self.assertIn("partial", lane("--list", env=self.env).stdout)
        self.assertEqual(lane("--clean", env=self.env).returncode, 0)
        self.assertFalse(os.path.exists(root))


class Killed(unittest.TestCase):
    """A call killed while it runs in the real root leaves nothing behind."""

    def test_sigterm_inside_leaves_no_mount_process_or_lock(self):
        self.kill_inside(signal.SIGTERM)

    def test_sigkill_inside_leaves_no_mount_process_or_lock(self):
        # No trap runs: the parent-death signal and the PID namespace must do it all.
        self.kill_inside(signal.SIGKILL)

    def kill_inside(self, signum):
        root = os.path.join(REAL_CACHE, "debian13")
        if not os.path.exists(os.path.join(root, ".leaklab-lane-complete")):
            self.skipTest(f"no debian13 root in {REAL_CACHE} (./leaklab lane debian13 makes it)")
        lock = os.path.join(REAL_CACHE, "debian13.lock")
        proc = subprocess.Popen([LANE, "debian13", "--shell"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            # The shell is inside once it answers from the root's os-release
            # (bash -i may first say it has no terminal: read on, bounded).
            proc.stdin.write("grep VERSION_CODENAME /etc/os-release; sleep 300\n")
            proc.stdin.flush()
            lines = [proc.stdout.readline() for _ in range(1)]
            while not lines[-1].startswith("VERSION_CODENAME=") and lines[-1] and len(lines) < 20:
                lines.append(proc.stdout.readline())
            self.assertEqual(lines[-1].strip(), "VERSION_CODENAME=trixie", lines)
            # This call's processes (other lane calls may share the root meanwhile).
            ours = descendants(proc.pid)
            inside = [p for p in ours if p in processes_rooted_in(root)]
            self.assertTrue(inside, "no process of this call found in the root while the shell runs")
            self.assertTrue(lock_openers(lock) & set(ours), "the call runs without holding the lane's lock")
            proc.send_signal(signum)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        deadline = time.monotonic() + 30
        while alive(ours) and time.monotonic() < deadline:
            time.sleep(0.1)  # the kernel reaps the PID namespace; bounded
        self.assertEqual(alive(ours), [], "processes of the killed call left running")
        self.assertEqual(mounts_under(REAL_CACHE), [], "mounts left in the host's namespace")
        # Other lane calls may hold the lock meanwhile (their own processes); none of ours may.
        self.assertEqual(lock_openers(lock) & set(ours), set(), "the killed call's lock is still held")


def main():
    # unittest's own exit code says pass or fail; a skip-only run exits 77.
    result = unittest.main(exit=False, verbosity=2).result
    if not result.wasSuccessful():
        return 1
    return 77 if result.testsRun and len(result.skipped) == result.testsRun else 0


if __name__ == "__main__":
    sys.exit(main())
