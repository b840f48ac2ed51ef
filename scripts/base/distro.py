"""The distribution and C library a result was measured on, so a baseline can
say "Debian 13, glibc 2.41" beside its tool versions, and two distributions'
baselines can be compared (`baseline diff --between debian12 debian13`)."""

import os

OS_RELEASE = ("/etc/os-release", "/usr/lib/os-release")


def os_release(paths=OS_RELEASE):
    """The fields of os-release(5) as a dict ({} when there is none)."""
    for path in paths:
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            continue
        fields = {}
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() and not key.startswith("#"):
                fields[key.strip()] = value.strip().strip("\"'")
        return fields
    return {}


def distribution(paths=OS_RELEASE):
    """{"distribution": "Debian GNU/Linux 13 (trixie)", "distribution_id": "debian13"}:
    the name people read and the short one baselines are named by (ID and the
    major VERSION_ID; a release without one, such as sid, by its codename)."""
    fields = os_release(paths)
    if not fields:
        return {"distribution": None, "distribution_id": None}
    major = fields.get("VERSION_ID", "").split(".")[0] or fields.get("VERSION_CODENAME", "")
    return {"distribution": fields.get("PRETTY_NAME") or fields.get("NAME"),
            "distribution_id": f"{fields.get('ID', 'linux')}{major}"}


def glibc():
    """"glibc 2.41" as the running C library says (None when it is not glibc)."""
    try:
        return os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):
        return None
