#!/usr/bin/env python3
"""Runs Criterion test binaries one after another and sums up their results.

Usage: tools/run_tests.py [--jobs N] [--timeout S] [--binary-timeout S] BINARY...
(`ninja test` calls it with every test binary of the configured build.)

Each binary runs with `--jobs N --timeout S` and its output goes straight to
the terminal. Results are read from the TAP report Criterion writes to a
temporary file (its JSON report does not escape assertion messages), and the
last line printed is exactly

    tests: N passed, N failed, N skipped

The exit status is 1 when a test failed or a binary crashed, timed out,
wrote no report or exited non-zero with no failed test (say, a sanitizer
report at exit); 0 otherwise.

KUMO_TEST_FILTER, when set, is passed to every binary as `--filter`. Criterion
reports the tests a filter leaves out as skipped ("test was skipped"); those
are counted as filtered, not skipped (so give an explicit skip a reason).

Criterion 2.4.1's `--timeout` only lowers the timeout a test or suite sets
with `.timeout`; it does not give a test without one a limit
(Snaipe/Criterion#279). Tests set their own `.timeout`; as a backstop each
binary gets a wall-clock limit (--binary-timeout, default
$KUMO_TEST_BINARY_TIMEOUT or 900 s), after which its process group is killed
and it counts as crashed.
"""

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

TAP_RESULT = re.compile(r"^(ok|not ok)\b(?:\s+\d+)?\s*-?\s*(.*)$")
TAP_PLAN = re.compile(r"^1\.\.(\d+)")
FILTERED_REASON = "test was skipped"


def parse_tap(path, filtering):
    """Returns (passed, failed, skipped, filtered, planned, failed_names), or
    None when there is no report."""
    try:
        with open(path, errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    if not lines:
        return None
    passed = failed = skipped = filtered = 0
    planned = None
    failed_names = []
    for line in lines:
        m = TAP_PLAN.match(line)
        if m:
            planned = int(m.group(1))
            continue
        m = TAP_RESULT.match(line)
        if not m:
            continue
        status, rest = m.groups()
        if status == "not ok":
            failed += 1
            failed_names.append(rest.strip())
            continue
        skip = re.search(r"#\s*SKIP\b\s*(.*)$", rest, re.IGNORECASE)
        if skip is None:
            passed += 1
        elif filtering and skip.group(1).strip() == FILTERED_REASON:
            filtered += 1
        else:
            skipped += 1
    return passed, failed, skipped, filtered, planned, failed_names


def kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass


def run_one(binary, args, binary_timeout, tmpdir):
    """Runs one binary; returns (passed, failed, skipped, filtered, problems)
    where problems lists what went wrong beyond failed tests."""
    tap = os.path.join(tmpdir, os.path.basename(binary) + ".tap")
    cmd = [binary] + args + ["--tap=" + tap]
    print("\n==> %s" % " ".join(cmd), flush=True)
    start = time.monotonic()
    # Own process group, so a hung binary is killed with its test workers.
    proc = subprocess.Popen(cmd, start_new_session=True)
    timed_out = False
    try:
        rc = proc.wait(timeout=binary_timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        kill_group(proc)
        rc = proc.wait()
    except BaseException:
        kill_group(proc)
        proc.wait()
        raise
    elapsed = time.monotonic() - start

    filtering = bool(os.environ.get("KUMO_TEST_FILTER"))
    res = parse_tap(tap, filtering)
    problems = []
    if res is None:
        passed = failed = skipped = filtered = 0
        names = []
    else:
        passed, failed, skipped, filtered, planned, names = res
        seen = passed + failed + skipped + filtered
        if planned is not None and seen < planned:
            problems.append("report lists %d of %d tests" % (seen, planned))
    if timed_out:
        problems.append("killed after %.0f s (--binary-timeout)" % binary_timeout)
    elif rc < 0:
        problems.append("killed by signal %d (%s)" % (-rc, signal.Signals(-rc).name
                                                       if -rc in signal.valid_signals() else "?"))
    elif rc != 0 and failed == 0:
        problems.append("exited with status %d but no test failed "
                        "(a sanitizer report at exit?)" % rc)
    if res is None and not timed_out:
        problems.append("wrote no test report")

    print("--> %s: %d passed, %d failed, %d skipped%s (%.1f s)%s" % (
        binary, passed, failed, skipped,
        ", %d filtered out" % filtered if filtering else "", elapsed,
        "".join("; " + p for p in problems)), flush=True)
    return passed, failed, skipped, filtered, problems, names


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=2, help="Criterion jobs per binary (default 2)")
    ap.add_argument("--timeout", type=float, default=120,
                    help="passed to each binary as --timeout (a cap, see above)")
    ap.add_argument("--binary-timeout", type=float,
                    default=float(os.environ.get("KUMO_TEST_BINARY_TIMEOUT") or 900),
                    help="wall-clock limit per binary in seconds (default 900)")
    ap.add_argument("binaries", nargs="*")
    a = ap.parse_args()

    args = ["--jobs", str(a.jobs), "--timeout", "%g" % a.timeout]
    filt = os.environ.get("KUMO_TEST_FILTER")
    if filt:
        args += ["--filter", filt]

    total = [0, 0, 0, 0]
    bad_binaries = []
    failed_tests = []
    if not a.binaries:
        print("no test binaries (tests/*.c)", flush=True)
    with tempfile.TemporaryDirectory(prefix="kumo-tests-") as tmpdir:
        for b in a.binaries:
            try:
                passed, failed, skipped, filtered, problems, names = run_one(
                    b, args, a.binary_timeout, tmpdir)
            except KeyboardInterrupt:
                print("\ninterrupted", flush=True)
                return 130
            except OSError as e:
                passed = failed = skipped = filtered = 0
                problems, names = ["could not run: %s" % e], []
                print("--> %s: %s" % (b, problems[0]), flush=True)
            for i, v in enumerate((passed, failed, skipped, filtered)):
                total[i] += v
            failed_tests += ["%s: %s" % (b, n) for n in names]
            if problems:
                bad_binaries.append("%s: %s" % (b, "; ".join(problems)))

    print("", flush=True)
    if filt:
        print("filter: %s (%d tests filtered out)" % (filt, total[3]))
    for t in failed_tests:
        print("FAILED  %s" % t)
    for b in bad_binaries:
        print("BROKEN  %s" % b)
    # A broken binary counts as one failure, so the line never says 0 failed
    # while the run fails.
    print("tests: %d passed, %d failed, %d skipped" % (
        total[0], total[1] + len(bad_binaries), total[2]), flush=True)
    return 1 if total[1] or bad_binaries else 0


if __name__ == "__main__":
    sys.exit(main())
