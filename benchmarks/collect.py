"""Collects benchmark JSON records into the markdown tables of benchmarks/README.md.

Reads the records of `throughput.py` (ours), `reference_throughput.py`
(`implementation: "reference"`) and `machine_info.py` (`record: "machine"`),
and prints the machine they ran on (CPU model, AVX2 / AVX-512), the table of
every run with the ratio ours / reference (images/s and peak RSS) for the same
preset, mode and batch, a summary of the best of ours against the reference
per mode, and, for records of the families with a reference harness, the
family table: medians over repeats, ratios within one machine only.

Usage:
    python benchmarks/collect.py results/*.json [--markdown PATH] [--family-table]
"""

import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine_info import vector_summary  # noqa: E402
from reference_models import FAMILY_NAMES, family_of  # noqa: E402

COLUMNS = [
    ("implementation", "implementation"),
    ("backend", "backend"),
    ("mode", "mode"),
    ("dtype", "dtype"),
    ("remat", "remat"),
    ("batch_size", "batch"),
    ("images_per_second", "images/s"),
    ("speed_ratio", "x reference"),
    ("peak_rss_mb", "peak RSS (MB)"),
    ("rss_ratio", "RSS x reference"),
    ("compile_seconds", "first step (s)"),
    ("threads", "threads"),
    ("device", "device"),
    ("xla_flags", "XLA_FLAGS"),
    ("commit", "commit"),
]
MACHINE_KEYS = ("cpu_model", "cpu_family", "cpu_flags", "cpu_count")


def implementation(record):
    """Returns "reference" for reference_throughput.py records, else "ours"."""
    return record.get("implementation", "ours")


def machine_of(record):
    """A hashable description of the record's CPU, or None if it names none."""
    if not record.get("cpu_model"):
        return None
    return tuple(
        tuple(record.get(k) or ()) if k == "cpu_flags" else record.get(k)
        for k in MACHINE_KEYS
    )


def machine_line(records):
    """One line naming the CPU(s) of the records, AVX2 / AVX-512 spelled out.

    Args:
        records: any mix of machine, ours and reference records.

    Returns:
        "Machine: AMD EPYC (AuthenticAMD family 25 model 1), AVX2, no AVX-512,
        2 cores", a "Machines differ: ..." line when records name several CPUs,
        or a line saying none was recorded.
    """
    machines = sorted({m for m in map(machine_of, records) if m}, key=str)
    if not machines:
        return (
            "Machine: not recorded (run `python benchmarks/machine_info.py "
            "--json results/machine.json` beside the runs)."
        )
    names = [
        f"{model} ({family}), {vector_summary(flags)}, {count} cores"
        for model, family, flags, count in machines
    ]
    if len(names) == 1:
        return f"Machine: {names[0]}"
    return "Machines differ (ratios across machines say little): " + "; ".join(names)


def _key(record):
    return (record["preset"], record["mode"], record["batch_size"])


def _same_machine(a, b):
    """Records that name no CPU are taken to be from the same run."""
    ma, mb = machine_of(a), machine_of(b)
    return ma is None or mb is None or ma == mb


def reference_for(record, references):
    """The reference record of the same preset, mode, batch (and CPU), or None."""
    for ref in references:
        if _key(ref) == _key(record) and _same_machine(ref, record):
            return ref
    return None


def with_ratios(runs):
    """Copies of the run records with `speed_ratio` and `rss_ratio` filled in.

    A ratio is ours / reference: > 1 is faster for images/s, heavier for
    memory. Reference rows and rows without a matching reference get "".
    """
    references = [r for r in runs if implementation(r) == "reference"]
    out = []
    for r in runs:
        ref = None if implementation(r) == "reference" else reference_for(r, references)
        speed = rss = ""
        if ref is not None:
            speed = round(r["images_per_second"] / ref["images_per_second"], 2)
            rss = round(r["peak_rss_mb"] / ref["peak_rss_mb"], 2)
        out.append(
            {
                **r,
                "implementation": implementation(r),
                "speed_ratio": speed,
                "rss_ratio": rss,
            }
        )
    return out


def table(records):
    """The markdown table of every run (machine records are left out)."""
    runs = sorted(
        with_ratios([r for r in records if r.get("record") != "machine"]),
        key=lambda r: (
            r["preset"],
            r["mode"],
            r["implementation"] != "reference",
            r["backend"],
            r["dtype"],
            r["remat"],
            r.get("xla_flags", ""),
        ),
    )
    lines = [
        "| preset | " + " | ".join(title for _, title in COLUMNS) + " |",
        "|---|" + "---|" * len(COLUMNS),
    ]
    for r in runs:
        cells = [str(r.get(key, "")) for key, _ in COLUMNS]
        lines.append(f"| {r['preset']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(records):
    """Per preset, mode and batch: the reference against our fastest run.

    Returns:
        A markdown table (reference images/s and peak RSS, our best images/s
        with its backend, our lowest peak RSS, both ratios), or "" when no
        reference record is given.
    """
    runs = with_ratios([r for r in records if r.get("record") != "machine"])
    lines = []
    for ref in sorted(
        (r for r in runs if r["implementation"] == "reference"), key=_key
    ):
        ours = [
            r
            for r in runs
            if r["implementation"] != "reference" and reference_for(r, [ref])
        ]
        if not ours:
            continue
        fast = max(ours, key=lambda r: r["images_per_second"])
        light = min(ours, key=lambda r: r["peak_rss_mb"])
        lines.append(
            f"| {ref['preset']} | {ref['mode']} | {ref['batch_size']} "
            f"| {ref['images_per_second']} | {fast['images_per_second']} "
            f"({_label(fast)}) | {fast['speed_ratio']}x | {ref['peak_rss_mb']} "
            f"| {light['peak_rss_mb']} ({_label(light)}) | {light['rss_ratio']}x |"
        )
    if not lines:
        return ""
    head = (
        "| preset | mode | batch | reference images/s | ours, fastest | ratio "
        "| reference peak RSS (MB) | ours, lowest RSS | ratio |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    return head + "\n" + "\n".join(lines)


def _label(record):
    extras = [record["dtype"]] if record["dtype"] != "float32" else []
    extras += ["remat"] if record.get("remat") else []
    extras += [record["xla_flags"]] if record.get("xla_flags") else []
    return ", ".join([record["backend"]] + extras)


def platform_of(record):
    """ "cpu", or the accelerator a record ran on (GPU rows never meet CPU rows)."""
    device = str(record.get("device", ""))
    return "cpu" if not device or "cpu" in device.lower() else device


def family_of_record(record):
    """The record's family: its `family` field, else its preset's (or "")."""
    return record.get("family") or family_of(record["preset"])


def _configuration(record):
    return (
        implementation(record),
        record["backend"],
        record["dtype"],
        bool(record.get("remat")),
        bool(record.get("fused")),
        record.get("xla_flags", ""),
    )


def _medians(records):
    """Per configuration: a copy of one record with median images/s and RSS."""
    groups = {}
    for r in records:
        groups.setdefault(_configuration(r), []).append(r)
    out = []
    for runs in groups.values():
        out.append(
            {
                **runs[0],
                "images_per_second": round(
                    statistics.median(r["images_per_second"] for r in runs), 2
                ),
                "peak_rss_mb": round(
                    statistics.median(r["peak_rss_mb"] for r in runs), 1
                ),
                "repeats": len(runs),
            }
        )
    return out


def _ratio(ours, ref, key):
    return f"{ours[key] / ref[key]:.2f}x" if ref[key] else ""


def family_rows(records):
    """The family table's rows: per family, preset, batch, mode and machine.

    Repeats of one configuration (implementation, backend, dtype, remat, fused,
    XLA flags) become their median images/s and peak RSS; each ratio is ours /
    the reference's median from the same machine (CPU model, family, flags,
    cores) and platform (CPU or the named GPU), never across machines.

    Returns:
        dicts with `family`, `preset`, `batch_size`, `mode`, `machine`,
        `reference` (median record), `fastest`, `torch` (our fastest torch
        run or None) and `lightest` (our lowest peak RSS).
    """
    groups = {}
    for r in records:
        family = r.get("record") != "machine" and family_of_record(r)
        if family in FAMILY_NAMES:
            key = (family, r["preset"], r["batch_size"], r["mode"])
            key += (machine_of(r), platform_of(r))
            groups.setdefault(key, []).append(r)
    rows = []
    for key in sorted(groups, key=str):
        runs = _medians(groups[key])
        refs = [r for r in runs if implementation(r) == "reference"]
        ours = [r for r in runs if implementation(r) != "reference"]
        if not refs or not ours:
            continue
        torch_runs = [r for r in ours if r["backend"] == "torch"]
        fastest = max(ours, key=lambda r: r["images_per_second"])
        rows.append(
            {
                **dict(
                    zip(("family", "preset", "batch_size", "mode"), key, strict=False)
                ),
                "machine": key[4],
                "platform": key[5],
                "reference": refs[0],
                "fastest": fastest,
                "torch": max(torch_runs, key=lambda r: r["images_per_second"])
                if torch_runs
                else None,
                "lightest": min(ours, key=lambda r: r["peak_rss_mb"]),
            }
        )
    return rows


def family_table(records):
    """The per-family markdown table (one per machine), or "" without pairs."""
    rows = family_rows(records)
    if not rows:
        return ""
    head = (
        "| family | preset | batch | mode | reference images/s (repeats) "
        "| ours, fastest | x reference | ours, torch | x reference "
        "| reference peak RSS (MB) | ours, lowest RSS | x reference |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    parts = []
    for place in sorted({(r["machine"], r["platform"]) for r in rows}, key=str):
        lines = [head]
        for row in (r for r in rows if (r["machine"], r["platform"]) == place):
            ref, fast, light, tch = (
                row[k] for k in ("reference", "fastest", "lightest", "torch")
            )
            torch_cells = (
                f"{tch['images_per_second']} | {_ratio(tch, ref, 'images_per_second')}"
                if tch
                else " | "
            )
            lines.append(
                f"| {row['family']} | {row['preset']} | {row['batch_size']} "
                f"| {row['mode']} | {ref['images_per_second']} ({ref['repeats']}) "
                f"| {fast['images_per_second']} ({_label(fast)}) "
                f"| {_ratio(fast, ref, 'images_per_second')} | {torch_cells} "
                f"| {ref['peak_rss_mb']} | {light['peak_rss_mb']} ({_label(light)}) "
                f"| {_ratio(light, ref, 'peak_rss_mb')} |"
            )
        example = next(r for r in rows if (r["machine"], r["platform"]) == place)
        where = machine_line([example["reference"]])
        if place[1] != "cpu":
            where += f"; {place[1]}"
        parts.append(where + " (medians over repeats)\n\n" + "\n".join(lines))
    return "\n\n".join(parts)


def report(records):
    """Machine line, the table of runs, the summary and the family table."""
    parts = [machine_line(records), table(records), summary(records)]
    parts.append(family_table(records))
    return "\n\n".join(p for p in parts if p)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="JSON records")
    parser.add_argument("--markdown", help="also write the report here")
    parser.add_argument(
        "--family-table",
        action="store_true",
        help="only the family table (medians of repeats, ratios per family)",
    )
    args = parser.parse_args(argv)
    records = []
    for path in args.paths:
        with open(path) as f:
            records.append(json.load(f))
    text = family_table(records) if args.family_table else report(records)
    if not text:
        text = "No family rows: no reference record pairs with one of ours."
    print(text)
    if args.markdown:
        tmp = args.markdown + ".tmp"
        with open(tmp, "w") as f:
            f.write(text + "\n")
        os.replace(tmp, args.markdown)
    return text


if __name__ == "__main__":
    main()
