"""The demo (issue 7): `DEMO_FAST=1 scripts/demo.sh` runs every step against
the binaries of $SLUICE_BUILD, every step's own checks pass, it exits 0, and
it leaves no process behind."""
import os
import re
import subprocess

from conftest import BUILD, ROOT, SANITIZER_MARKS

DEMO = os.path.join(ROOT, "scripts", "demo.sh")

STEPS = [
    "Start an upstream and sluice in front of it",
    "Health and metrics",
    "Connection pooling",
    "The concurrency limit and the queue",
    "Queue timeout",
    "A slow upstream: read timeout",
    "Retries recover a flaky upstream",
    "The circuit breaker opens and recovers",
    "Live dashboard",
    "Reloading settings with SIGHUP",
    "Access log",
    "Graceful shutdown",
]


def _running_from(build):
    """PIDs of sluice/sluice-upstream processes running from `build`."""
    pids = set()
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                argv0 = f.read().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        if argv0 in (os.path.join(build, "sluice"), os.path.join(build, "sluice-upstream")):
            pids.add(int(d))
    return pids


def test_demo_runs_every_step_and_exits_0():
    build = os.path.abspath(BUILD)
    before = _running_from(build)
    env = dict(os.environ, DEMO_FAST="1", SLUICE_BUILD=build)
    p = subprocess.run(["bash", DEMO], cwd=ROOT, env=env, capture_output=True, timeout=120)
    out = p.stdout.decode(errors="replace")
    err = p.stderr.decode(errors="replace")
    assert p.returncode == 0, "demo exited %d:\n%s\n--- stderr ---\n%s" % (p.returncode, out[-6000:], err[-3000:])
    for i, title in enumerate(STEPS, 1):
        assert "== Step %d: %s ==" % (i, title) in out, "step %d (%s) missing:\n%s" % (i, title, out[-4000:])
    assert "FAILED" not in out, out
    assert len(re.findall("✓", out)) >= 25, out
    assert "all checks passed" in out
    for mark in SANITIZER_MARKS:
        assert mark.decode() not in out + err, err[-6000:]
    # everything the demo started is gone
    leftover = _running_from(build) - before
    assert not leftover, "the demo left processes running: %s" % sorted(leftover)
