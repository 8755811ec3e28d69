"""Peak memory of a crafted input, measured in a child process with a budget.

`run_with_budget(code, budget_mb)` runs `code` in a fresh Python process,
reads the peak resident set it reached above the point where `code` starts
(after its imports), and asserts it stayed under `budget_mb`. The child prints
`OUTCOME <text>` lines; they come back so the test can assert the refusal.

Untrusted files (presets, configs, event files) must be refused before they
allocate: a refusal that comes after gigabytes were allocated still fails here.
"""

import os
import subprocess
import sys
import textwrap

_PRELUDE = """
import resource, sys
def _peak():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
def _reset():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
def outcome(text):
    print("OUTCOME", str(text).replace(chr(10), " "), flush=True)
"""

_START = "\n_reset()\n_base = _peak()\n"
_END = "\nprint('PEAK', _peak() - _base, flush=True)\n"


def run_with_budget(code, budget_mb, setup="", backend="numpy", timeout=300):
    """Runs `setup` (imports), then `code`; returns the `OUTCOME` texts.

    Args:
        code: Python source run after `setup`; calls `outcome(text)` to report.
        budget_mb: the peak resident memory `code` may add, in MiB.
        setup: Python source run first and not counted (imports).
        backend: the child's `KERAS_BACKEND`.
        timeout: seconds before the child is killed (a hang fails the test).

    Returns:
        `(outcomes, peak_mb)`.

    Example:
    >>> outcomes, _ = run_with_budget("outcome(1)", 64)
    """
    source = (
        _PRELUDE
        + textwrap.dedent(setup)
        + _START
        + "try:\n"
        + textwrap.indent(textwrap.dedent(code), "    ")
        + "\nexcept Exception as e:\n    outcome(f'{type(e).__name__}: {e}')\n"
        + _END
    )
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", source],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    lines = result.stdout.splitlines()
    peaks = [int(line.split()[1]) for line in lines if line.startswith("PEAK ")]
    assert result.returncode == 0 and peaks, (result.stdout, result.stderr[-3000:])
    peak_mb = peaks[-1] / 2**20
    outcomes = [line[len("OUTCOME ") :] for line in lines if line.startswith("OUTCOME ")]
    assert peak_mb < budget_mb, (
        f"peak {peak_mb:.0f} MiB above the start, budget {budget_mb} MiB; "
        f"outcomes: {outcomes}"
    )
    return outcomes, peak_mb
