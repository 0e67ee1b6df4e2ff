#!/usr/bin/env python3
"""Draws cost against group size from criterion's recorded results of benches/process.rs.

Reads target/criterion/<group>/<contender>/<members>/new/{benchmark,estimates}.json (the
median of the last recorded run of each benchmark) and writes one log-log SVG per plotted
group next to BENCHMARKS.md, one line per contender; a contender measured without a group size
(the Ed25519 floor) is drawn as a horizontal dashed line. Also prints the medians as a
Markdown table, for BENCHMARKS.md.

Python 3 standard library only (no plotting package): the SVG is written by hand.

Usage: python3 benches/plot.py [--criterion target/criterion] [--out .] [--note TEXT]
                               [--table GROUP]...

Criterion keeps the last result of every benchmark it ever ran, so remove
target/criterion/<group> before the recorded run, or the plot mixes runs.
"""

import argparse
from html import escape
import json
import math
import os
import sys

# (criterion group, output file, title)
PLOTS = [
    ("commit_update", "BENCHMARKS-commit.svg", "Update commit: cost against group size"),
    ("send_message", "BENCHMARKS-send_message.svg", "send_message: cost against group size"),
]

# criterion function id -> (legend label, colour, dashed); the order is the legend's.
CONTENDERS = [
    ("mimi_ds_process", "mimi-ds process, end to end (in-memory storage)", "#d62728", False),
    ("openmls_process_only", "openmls PublicGroup process_message only", "#1f77b4", False),
    ("openmls_process_and_merge", "openmls process_message + merge_commit", "#9ecae1", False),
    ("mls_rs_load_and_process", "mls-rs ExternalGroup: load snapshot + process", "#2ca02c", False),
    ("floor_ed25519_verify", "floor: one Ed25519 verification", "#555555", True),
]

WIDTH, PLOT_HEIGHT = 760, 275
LEFT, RIGHT, TOP = 80, 20, 58  # margins; the axis labels and the legend sit below the plot
LEGEND_LINE = 19


def read_group(criterion_dir, group):
    """{function id: {members or None: median in ns}} of one criterion group."""
    series = {}
    group_dir = os.path.join(criterion_dir, group)
    for root, _dirs, files in os.walk(group_dir):
        if os.path.basename(root) != "new" or "estimates.json" not in files:
            continue
        with open(os.path.join(root, "benchmark.json")) as f:
            benchmark = json.load(f)
        with open(os.path.join(root, "estimates.json")) as f:
            estimates = json.load(f)
        value = benchmark.get("value_str")
        members = int(value) if value else None
        median = estimates["median"]["point_estimate"]
        series.setdefault(benchmark["function_id"], {})[members] = median
    return series


def format_duration(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            value = ns / scale
            break
    else:
        unit, value = "ns", ns
    text = f"{value:.3g}"
    return f"{text} {unit}"


def svg_plot(title, note, series):
    """The SVG text of one log-log plot of `series`, with `note` (if any) under the title."""
    sized = [n for points in series.values() for n in points if n is not None]
    if not sized:
        raise SystemExit(f"no sized results for {title!r}")
    values = [v for points in series.values() for v in points.values()]
    x_min, x_max = math.log10(min(sized)), math.log10(max(sized))
    if x_max == x_min:
        x_max = x_min + 1
    y_min = math.floor(math.log10(min(values)))
    y_max = math.ceil(math.log10(max(values)))
    if y_max == y_min:
        y_max = y_min + 1
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = PLOT_HEIGHT
    height = TOP + plot_h + 58 + LEGEND_LINE * len(series)

    def x_of(members):
        return LEFT + (math.log10(members) - x_min) / (x_max - x_min) * plot_w

    def y_of(ns):
        return TOP + plot_h - (math.log10(ns) - y_min) / (y_max - y_min) * plot_h

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        f'<text x="{WIDTH / 2}" y="24" text-anchor="middle" font-size="15">{escape(title)}</text>',
    ]
    if note:
        out.append(
            f'<text x="{WIDTH / 2}" y="42" text-anchor="middle" fill="#555">{escape(note)}</text>'
        )
    # Horizontal grid: one line per decade of time, fainter lines at 2..9 of each decade.
    for decade in range(y_min, y_max + 1):
        y = y_of(10**decade)
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" stroke="#ccc"/>')
        out.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{format_duration(10**decade)}</text>'
        )
        if decade < y_max:
            for k in range(2, 10):
                y = y_of(k * 10**decade)
                out.append(
                    f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" stroke="#eee"/>'
                )
    # Vertical grid at the measured group sizes.
    for members in sorted(set(sized)):
        x = x_of(members)
        out.append(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + plot_h}" stroke="#ddd"/>')
        out.append(f'<text x="{x:.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">{members}</text>')
    out.append(
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="black"/>'
    )
    out.append(
        f'<text x="{LEFT + plot_w / 2}" y="{TOP + plot_h + 36}" text-anchor="middle">'
        "group size (members, log scale)</text>"
    )
    out.append(
        f'<text x="18" y="{TOP + plot_h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 18 {TOP + plot_h / 2})">median time per operation (log scale)</text>'
    )
    legend_y = TOP + plot_h + 58
    known = [c for c in CONTENDERS if c[0] in series]
    unknown = [(f, f, "#000000", False) for f in sorted(series) if f not in dict((c[0], c) for c in CONTENDERS)]
    for function, label, colour, dashed in known + unknown:
        points = series[function]
        dash = ' stroke-dasharray="6 4"' if dashed else ""
        if None in points:
            # Measured once, independent of the group size.
            y = y_of(points[None])
            out.append(
                f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" '
                f'stroke="{colour}" stroke-width="2"{dash}><title>{label}: '
                f"{format_duration(points[None])}</title></line>"
            )
        sized_points = sorted((n, v) for n, v in points.items() if n is not None)
        if sized_points:
            path = " ".join(f"{x_of(n):.1f},{y_of(v):.1f}" for n, v in sized_points)
            out.append(
                f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>'
            )
            for n, v in sized_points:
                out.append(
                    f'<circle cx="{x_of(n):.1f}" cy="{y_of(v):.1f}" r="3.5" fill="{colour}">'
                    f"<title>{label}, {n} members: {format_duration(v)}</title></circle>"
                )
        out.append(
            f'<line x1="{LEFT}" y1="{legend_y - 4}" x2="{LEFT + 30}" y2="{legend_y - 4}" '
            f'stroke="{colour}" stroke-width="2"{dash}/>'
        )
        out.append(f'<text x="{LEFT + 38}" y="{legend_y}">{label}</text>')
        legend_y += LEGEND_LINE
    out.append("</svg>")
    return "\n".join(out) + "\n"


def markdown_table(group, series):
    """The medians of one group as a Markdown table: one row per contender, one column per size."""
    sizes = sorted({n for points in series.values() for n in points if n is not None})
    labels = {c[0]: c[1] for c in CONTENDERS}
    order = [c[0] for c in CONTENDERS if c[0] in series] + sorted(set(series) - set(labels))
    rows = [[f"{group}, median"] + [f"N={n}" for n in sizes], ["---"] + ["---:"] * len(sizes)]
    for function in order:
        points = series[function]
        if None in points:
            cells = [format_duration(points[None]) + " (any N)"] + [""] * (len(sizes) - 1)
        else:
            cells = [format_duration(points[n]) if n in points else "" for n in sizes]
        rows.append([labels.get(function, function)] + cells)
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--criterion", default=os.path.join("target", "criterion"))
    parser.add_argument("--out", default=".", help="where BENCHMARKS.md is")
    parser.add_argument(
        "--note", default="", help="a line under each title, e.g. the machine and the date"
    )
    parser.add_argument(
        "--table", action="append", default=[], metavar="GROUP",
        help="also print the medians of this criterion group (repeatable)",
    )
    args = parser.parse_args()
    for group, file_name, title in PLOTS:
        series = read_group(args.criterion, group)
        if not series:
            print(f"{group}: no results under {args.criterion}, skipped", file=sys.stderr)
            continue
        path = os.path.join(args.out, file_name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(svg_plot(title, args.note, series))
        print(f"wrote {path}")
        print(markdown_table(group, series) + "\n")
    for group in args.table:
        series = read_group(args.criterion, group)
        if series:
            print(markdown_table(group, series) + "\n")


if __name__ == "__main__":
    main()
