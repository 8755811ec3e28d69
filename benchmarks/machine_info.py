"""The CPU a benchmark ran on: model, family, vector extensions, cores.

Figures move 3-4x between the project's CPU machines (AVX2 only vs AVX-512),
so every record and table names the machine. Standard library only, so the
reference's separate environment can use it too.

Usage:
    python benchmarks/machine_info.py [--json results/machine.json]
"""

import argparse
import json
import os
import platform

# Extensions that move convolution and matrix-product speed, in table order.
VECTOR_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile")


def parse_cpuinfo(text):
    """The first processor's fields of a /proc/cpuinfo text.

    Args:
        text: contents of /proc/cpuinfo.

    Returns:
        `{"cpu_model": str, "cpu_family": str, "cpu_flags": [str]}`: the model
        name, "vendor family F model M", and which of `VECTOR_FLAGS` it has.

    Example:
        >>> parse_cpuinfo("model name : X\\nflags : fpu avx2\\n")["cpu_flags"]
        ['avx2']
    """
    fields = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor is enough
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    family = " ".join(
        f"{label} {fields[key]}"
        for key, label in (("cpu family", "family"), ("model", "model"))
        if key in fields
    )
    return {
        "cpu_model": fields.get("model name", platform.processor() or "unknown"),
        "cpu_family": " ".join(filter(None, [fields.get("vendor_id", ""), family])),
        "cpu_flags": [f for f in VECTOR_FLAGS if f in flags],
    }


def vector_summary(flags):
    """`"AVX-512"`, `"AVX2, no AVX-512"` or `"no AVX2"` for a list of flags."""
    if "avx512f" in flags:
        return "AVX-512"
    if "avx2" in flags:
        return "AVX2, no AVX-512"
    return "no AVX2"


def machine_info():
    """The record fields that name this machine (Linux; elsewhere what is known).

    Returns:
        dict with `cpu_model`, `cpu_family`, `cpu_flags`, `cpu_count`,
        `machine` (e.g. "x86_64") and `memory_gb`.
    """
    try:
        with open("/proc/cpuinfo") as f:
            info = parse_cpuinfo(f.read())
    except OSError:
        info = parse_cpuinfo("")
    info["cpu_count"] = os.cpu_count()
    info["machine"] = platform.machine()
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        info["memory_gb"] = round(pages / 2**30, 1)
    except (OSError, ValueError, AttributeError):
        info["memory_gb"] = None
    return info


def git_commit(folder):
    """Short git commit of the checkout holding `folder`, or "" outside one."""
    import subprocess

    try:
        out = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return ""
    return out.stdout.strip()


def write_record(record, path):
    """Writes a JSON record atomically (a temporary file, then a rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(record, f, indent=2)
    os.replace(tmp, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the record here")
    args = parser.parse_args(argv)
    record = {"record": "machine", **machine_info()}
    print(
        f"{record['cpu_model']} ({record['cpu_family']}), "
        f"{vector_summary(record['cpu_flags'])}, {record['cpu_count']} cores"
    )
    if args.json:
        write_record(record, args.json)
    return record


if __name__ == "__main__":
    main()
