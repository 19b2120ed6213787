#!/usr/bin/env python3
"""plot.py — draws the peers comparison of a bench run as an SVG bar chart.

Usage: bench/plot.py RESULTS_DIR OUT.svg
Reads RESULTS_DIR/peers/summary.tsv (written by ../shared/bench/peers.sh)
and RESULTS_DIR/peer-*.json / peer-*.time (pixmill's runs, bench/bench.sh),
and writes two horizontal bar charts: images/s and peak RSS, medians.
Standard library only, so it runs wherever the benchmarks run.
"""
import glob
import json
import os
import statistics
import sys


def pixmill_rows(d):
    rows = []
    for name, label in (("peer", "pixmill (durability none)"),
                        ("peerfsync", "pixmill (fsync every output)")):
        ips, rss = [], []
        for t in sorted(glob.glob(os.path.join(d, name + "-*.time"))):
            j = t[:-5] + ".json"
            wall, kb = open(t).read().split()[:2]
            res = json.load(open(j))
            ips.append((res["done"] + res["failed"]) / float(wall))
            rss.append(int(kb) / 1024)
        if ips:
            rows.append((label, statistics.median(ips), statistics.median(rss)))
    return rows


def peer_rows(d):
    rows = []
    path = os.path.join(d, "peers", "summary.tsv")
    with open(path) as f:
        head = f.readline().rstrip("\n").split("\t")
        for line in f:
            r = dict(zip(head, line.rstrip("\n").split("\t")))
            if r.get("format") == "webp":
                rows.append((r["tool"], float(r["img_s_med"]), float(r["peak_rss_med_mb"])))
    return rows


def bars(rows, col, title, unit, y0):
    width, left, bar_h, gap = 640, 230, 22, 8
    top = max(r[col] for r in rows) or 1
    out = [f'<text x="10" y="{y0 + 16}" font-size="15" font-weight="bold">{title}</text>']
    y = y0 + 28
    for r in rows:
        w = (width - left - 70) * r[col] / top
        colour = "#2a7ab9" if r[0].startswith("pixmill") else "#9aa5b1"
        out.append(f'<text x="{left - 8}" y="{y + 16}" font-size="13" text-anchor="end">{r[0]}</text>')
        out.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{colour}"/>')
        out.append(f'<text x="{left + w + 6:.1f}" y="{y + 16}" font-size="13">{r[col]:.1f} {unit}</text>')
        y += bar_h + gap
    return out, y


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    d, out = sys.argv[1], sys.argv[2]
    rows = pixmill_rows(d) + peer_rows(d)
    a, y = bars(sorted(rows, key=lambda r: -r[1]), 1,
                "Images per second (higher is better)", "img/s", 0)
    b, y = bars(sorted(rows, key=lambda r: r[2]), 2,
                "Peak RSS (lower is better)", "MB", y + 10)
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="700" height="{y + 10}" '
           'font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>']
    svg += a + b + ["</svg>"]
    with open(out, "w") as f:
        f.write("\n".join(svg) + "\n")


if __name__ == "__main__":
    main()
