"""Collects `throughput.py` JSON records into the markdown table of benchmarks/README.md.

Usage:
    python benchmarks/collect.py results/*.json
"""

import json
import sys

COLUMNS = [
    ("backend", "backend"),
    ("mode", "mode"),
    ("dtype", "dtype"),
    ("remat", "remat"),
    ("batch_size", "batch"),
    ("images_per_second", "images/s"),
    ("peak_rss_mb", "peak RSS (MB)"),
    ("compile_seconds", "first step (s)"),
    ("device", "device"),
    ("xla_flags", "XLA_FLAGS"),
    ("commit", "commit"),
]


def table(records):
    records = sorted(
        records,
        key=lambda r: (r["preset"], r["mode"], r["backend"], r["dtype"], r["remat"]),
    )
    lines = [
        "| preset | " + " | ".join(title for _, title in COLUMNS) + " |",
        "|---|" + "---|" * len(COLUMNS),
    ]
    for r in records:
        lines.append(
            f"| {r['preset']} | "
            + " | ".join(str(r.get(key, "")) for key, _ in COLUMNS)
            + " |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(table([json.load(open(path)) for path in sys.argv[1:]]))
