"""Merge lab results from many hosts into one self-contained HTML page and a Markdown summary.

Merging: results are keyed by host (its ``id``) and artifact file; when a host appears in
several files the newest run (``started_at``) wins per artifact, and artifacts only an older
run tested are kept. A target that a host has no result for is shown as *missing* — not as
a pass, not as a failure.

The page has no scripts and loads nothing: CSS and the plots (SVG) are inline, so it can be
attached to a CI run, mailed, or opened from disk.

Every value from a result file is escaped where it is written (HTML: :func:`html.escape`,
attributes quoted; Markdown: :func:`buildtool.text.md`): a result file cannot inject markup
or scripts into the page, or break the summary's table.
"""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from buildtool.records import HostFacts, LabEntry, LabResults, LabSettings, LabStatus
from buildtool.text import md, md_code, redact

STATUS_ORDER = {"fail": 0, "error": 1, "pass": 2, "skipped": 3}
COLORS = {"pass": "#1a7f37", "fail": "#cf222e", "error": "#bc4c00", "skipped": "#8c959f",
          "missing": "#d0d7de"}
SYMBOLS = {"pass": "✅", "fail": "❌", "error": "⚠️", "skipped": "⏭️", "missing": "—"}
HOST_COLORS = ("#0969da", "#8250df", "#bf3989", "#1a7f37", "#9a6700", "#cf222e", "#57606a",
               "#0550ae")


@dataclass(frozen=True, kw_only=True)
class Run:
    started_at: str
    finished_at: str | None
    settings: LabSettings
    buildtool_version: str


@dataclass(kw_only=True)
class Merged:
    hosts: dict[str, HostFacts] = field(default_factory=dict)  # id → the newest host facts
    runs: dict[str, Run] = field(default_factory=dict)  # id → the newest run
    results: dict[str, dict[str, LabEntry]] = field(default_factory=dict)  # id → file → entry

    def rows(self) -> list[tuple[str, str]]:
        """(target, kind) pairs seen anywhere, sorted."""
        return sorted({(r.target or "?", r.kind or "?")
                       for per_host in self.results.values() for r in per_host.values()})

    def cell(self, host: str, target: str, kind: str) -> list[LabEntry]:
        return [r for r in self.results.get(host, {}).values()
                if (r.target or "?") == target and (r.kind or "?") == kind]


def merge(docs: Iterable[LabResults]) -> Merged:
    m = Merged()
    for doc in sorted(docs, key=lambda d: d.started_at):
        hid = doc.host.id or doc.host.hostname or "unknown-host"
        m.hosts[hid] = doc.host  # the newest facts
        m.runs[hid] = Run(started_at=doc.started_at, finished_at=doc.finished_at,
                          settings=doc.settings, buildtool_version=doc.buildtool_version)
        per_host = m.results.setdefault(hid, {})
        for r in doc.results:
            per_host[r.artifact] = r
    return m


def cell_status(entries: list[LabEntry]) -> str:
    """One word for a grid cell: the worst of its entries that ran, else skipped/missing."""
    if not entries:
        return "missing"
    return min((e.status.value for e in entries), key=lambda s: STATUS_ORDER.get(s, 9))


def tally(entries: list[LabEntry]) -> str:
    """``2 artifacts: 1 pass, 1 error``."""
    counts: dict[str, int] = defaultdict(int)
    for e in entries:
        counts[e.status.value] += 1
    return f"{len(entries)} artifacts: " + ", ".join(
        f"{n} {s}" for s, n in sorted(counts.items(), key=lambda x: STATUS_ORDER.get(x[0], 9)))


def cell_figures(entries: Iterable[LabEntry]) -> tuple[float | None, float | None, str]:
    """The fastest prompt and generation tokens/s of a cell's benchmarks, and the device."""
    from buildtool.verify.smoke import best_speeds

    top = best_speeds(b for e in entries for b in e.bench)
    pp = (top.pp.avg_ts or 0.0) if top.pp else None
    tg = (top.tg.avg_ts or 0.0) if top.tg else None
    return pp, tg, top.device


def cell_numerics(entries: Iterable[LabEntry]) -> str:
    """The largest deviation from the reference of a cell's smoke runs (``max NMSE 2.8e-05
    (Q4_K_M)``; ``NMSE 1.3e+00 > 2e-03 (Q4_0)`` past its tolerance), or why there is none."""
    records = [e.smoke.numerics if e.smoke else None for e in entries]
    runs = [r for n in records if n is not None for r in n.runs]
    runs += [r for e in entries if e.smoke for x in e.smoke.emulated for r in x.numerics]
    if not runs:
        return "numerics missing"
    worst = max(runs, key=lambda r: r.nmse / r.max_nmse if r.max_nmse else 0.0)
    if worst.ok and all(r.ok for r in runs):
        return f"max NMSE {worst.nmse:.1e} ({worst.model_type})"
    bad = max((r for r in runs if not r.ok), key=lambda r: r.nmse)
    return f"NMSE {bad.nmse:.1e} > {bad.max_nmse:.0e} ({bad.model_type})"


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:,.1f}"


def _e(text: Any) -> str:
    """HTML text or a quoted attribute value."""
    return html.escape(redact(str(text if text is not None else "")), quote=True)




# ---------------------------------------------------------------------------------------
# Plots


def bar_chart(title: str, bars: list[tuple[str, float, float, str]], unit: str = "t/s") -> str:
    """A horizontal bar chart as inline SVG: (label, value, stddev, colour) per bar."""
    if not bars:
        return ""
    label_w, bar_w, row_h, top = 300, 420, 22, 30
    peak = max(v + s for _, v, s, _ in bars) or 1.0
    height = top + row_h * len(bars) + 10
    parts = [f'<svg class="chart" role="img" xmlns="http://www.w3.org/2000/svg" '
             f'width="{label_w + bar_w + 110}" height="{height}" '
             f'aria-label="{_e(title)}"><title>{_e(title)}</title>',
             f'<text x="0" y="18" class="ct">{_e(title)}</text>']
    for i, (label, value, std, colour) in enumerate(bars):
        y = top + i * row_h
        w = max(1.0, bar_w * value / peak)
        parts.append(f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end" '
                     f'class="cl">{_e(label)}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" '
                     f'fill="{colour}"><title>{_e(label)}: {value:.2f} ± {std:.2f} {unit}'
                     '</title></rect>')
        if std > 0:
            x1, x2 = label_w + bar_w * max(0.0, value - std) / peak, label_w + bar_w * (
                value + std) / peak
            parts.append(f'<line x1="{x1:.1f}" x2="{x2:.1f}" y1="{y + row_h / 2:.1f}" '
                         f'y2="{y + row_h / 2:.1f}" stroke="#24292f" stroke-width="1.5"/>')
        parts.append(f'<text x="{label_w + w + 6 + (bar_w * std / peak if std else 0):.1f}" '
                     f'y="{y + 15}" class="cv">{value:,.1f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def target_charts(m: Merged, target: str) -> str:
    hosts = sorted(m.results)
    colour = {h: HOST_COLORS[i % len(HOST_COLORS)] for i, h in enumerate(hosts)}
    out = []
    for prefix, what in (("pp", "prompt processing"), ("tg", "generation")):
        bars = []
        for h in hosts:
            for r in sorted(m.results[h].values(), key=lambda r: r.artifact):
                if (r.target or "?") != target:
                    continue
                for b in r.bench:
                    if b.test.startswith(prefix) and b.avg_ts:
                        model = (b.model_type or "").split()[-1:] or [""]
                        bars.append((f"{h} · {r.kind} · {b.test} {model[0]}",
                                     b.avg_ts, b.stddev_ts or 0.0, colour[h]))
        if bars:
            out.append(bar_chart(f"{target}: {what} (tokens/s, mean ± sd)", bars))
    return "".join(out)


# ---------------------------------------------------------------------------------------
# HTML and Markdown

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#24292f}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.sub{color:#57606a;margin-bottom:16px}
table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #d0d7de;padding:5px 9px;
text-align:left;vertical-align:top}th{background:#f6f8fa}
td.cell{text-align:center;font-weight:600;color:#fff;min-width:120px}
td.cell small{display:block;font-weight:400}
.pass{background:#1a7f37}.fail{background:#cf222e}.error{background:#bc4c00}
.skipped{background:#8c959f}.missing{background:#eaeef2;color:#57606a!important}
.legend span{display:inline-block;padding:2px 8px;margin-right:6px;color:#fff;border-radius:3px}
svg.chart{display:block;margin:10px 0 18px}.ct{font-weight:600;font-size:13px}
.cl,.cv{font-size:12px}details{margin:4px 0}code{font-size:12px}
"""


def render_html(m: Merged) -> str:
    hosts = sorted(m.results)
    rows = m.rows()
    total = dict.fromkeys(STATUS_ORDER, 0)
    for per_host in m.results.values():
        for r in per_host.values():
            total[r.status.value] += 1
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           "<title>buildtool lab report</title>", f"<style>{CSS}</style></head><body>",
           "<h1>buildtool lab report</h1>",
           f'<div class="sub">{len(hosts)} host{"s" if len(hosts) != 1 else ""}, '
           f"{len(rows)} target/artifact kind{'s' if len(rows) != 1 else ''}: "
           + ", ".join(f"{n} {s}" for s, n in total.items() if n) + "</div>",
           '<div class="legend">' + "".join(
               f'<span class="{s}" style="background:{COLORS[s]}">{s}</span>'
               for s in ("pass", "fail", "error", "skipped", "missing")) + "</div>",
           '<h2 id="grid">Pass/fail by target and host</h2>',
           '<table class="grid"><thead><tr><th>target</th><th>kind</th>'
           + "".join(f"<th>{_e(h)}</th>" for h in hosts) + "</tr></thead><tbody>"]
    for target, kind in rows:
        cells = []
        for h in hosts:
            entries = m.cell(h, target, kind)
            status = cell_status(entries)
            tip = "; ".join(f"{e.artifact}: {e.status.value}"
                            + (f" ({e.reason})" if e.reason else "")
                            for e in entries) or "no result from this host"
            figures = ""
            if status in ("pass", "fail"):
                pp, tg, device = cell_figures(entries)
                figures = (f"<small>pp {_fmt(pp)} · tg {_fmt(tg)} t/s</small>"
                           f'<small class="numerics">{_e(cell_numerics(entries))}</small>'
                           f"<small>{_e(device)}</small>")
            elif entries and entries[0].reason:
                figures = f"<small>{_e(entries[0].reason[:60])}</small>"
            if len(entries) > 1:  # e.g. two CPU variants of one target: the worst shows
                figures = f"<small>{_e(tally(entries))}</small>" + figures
            cells.append(f'<td class="cell {_e(status)}" data-host="{_e(h)}" '
                         f'data-target="{_e(target)}" data-status="{_e(status)}" '
                         f'title="{_e(tip)}">{_e(status)}{figures}</td>')
        out.append(f"<tr><th>{_e(target)}</th><td>{_e(kind)}</td>{''.join(cells)}</tr>")
    out.append("</tbody></table>")
    problems = [(h, r) for h in hosts for r in m.results[h].values()
                if r.status in (LabStatus.FAIL, LabStatus.ERROR)]
    if problems:
        out.append('<h2 id="failures">Failures</h2><table><thead><tr><th>host</th>'
                   "<th>artifact</th><th>status</th><th>reason</th></tr></thead><tbody>")
        out.extend(f"<tr><td>{_e(h)}</td><td><code>{_e(r.artifact)}</code></td>"
                   f"<td>{_e(r.status.value)}</td><td>{_e(r.reason)}</td></tr>"
                   for h, r in problems)
        out.append("</tbody></table>")
    out.append('<h2 id="speed">Tokens per second</h2>')
    for target in sorted({t for t, _ in rows}):
        charts = target_charts(m, target)
        if charts:
            out.append(f'<h3>{_e(target)}</h3><div class="plots" data-target="{_e(target)}">'
                       f"{charts}</div>")
    out.append('<h2 id="hosts">Hosts</h2><table><thead><tr><th>host</th><th>OS / kernel</th>'
               "<th>CPU</th><th>memory</th><th>GPUs (driver)</th><th>Vulkan</th>"
               "<th>engines</th><th>run</th></tr></thead><tbody>")
    for h in hosts:
        f = m.hosts[h]
        cpu = f.cpu
        mem = f.memory_bytes
        gpus = "<br>".join(_e(g.name) + (f" ({_e(g.driver)})" if g.driver else "")
                           for g in f.gpus) or "none"
        run = m.runs[h]
        settings = run.settings
        out.append(
            f"<tr><td>{_e(h)}</td><td>{_e(f.os)}<br>{_e(f.kernel)}</td>"
            f"<td>{_e(cpu.model)}<br>{_e(cpu.arch)} {_e(cpu.level or '')}, "
            f"{_e(cpu.cores)} cores<details><summary>features</summary><code>"
            f"{_e(' '.join(cpu.ggml_features))}</code></details></td>"
            f"<td>{'' if not mem else f'{mem / 2**30:.1f} GiB'}</td><td>{gpus}</td>"
            f"<td>{_e(', '.join(f.vulkan_icds) or 'none')}</td>"
            f"<td>{_e(', '.join(f.engines) or 'none')}</td>"
            f"<td>{_e(run.started_at)}<br>pp {_e(list(settings.n_prompt))}, tg "
            f"{_e(list(settings.n_gen))}, x{_e(settings.repetitions)}, model "
            f"{_e(settings.model)}</td></tr>")
    out.append("</tbody></table></body></html>")
    return "\n".join(out) + "\n"


def render_markdown(m: Merged) -> str:
    """A summary for a CI job summary; every value from a result file is escaped."""
    hosts = sorted(m.results)
    lines = ["## buildtool lab report", "",
             "| target | kind | " + " | ".join(md(h) for h in hosts) + " |",
             "|---|---|" + "---|" * len(hosts)]
    for target, kind in m.rows():
        cells = []
        for h in hosts:
            entries = m.cell(h, target, kind)
            status = cell_status(entries)
            text = f"{SYMBOLS[status]} {status}" if status != "missing" else "— missing"
            if status in ("pass", "fail"):
                pp, tg, _ = cell_figures(entries)
                text += f" (pp {_fmt(pp)} / tg {_fmt(tg)} t/s; {cell_numerics(entries)})"
            if len(entries) > 1:
                text += f" \\[{tally(entries)}\\]"
            cells.append(text)
        lines.append(f"| {md(target)} | {md(kind)} | " + " | ".join(cells) + " |")
    problems = [(h, r) for h in hosts for r in m.results[h].values()
                if r.status in (LabStatus.FAIL, LabStatus.ERROR)]
    if problems:
        lines += ["", "### Failures", ""]
        lines.extend(f"- **{md(h)}** {md_code(r.artifact)}: {r.status.value} — "
                     f"{md(r.reason or '')}" for h, r in problems)
    lines += ["", "### Hosts", ""]
    for h in hosts:
        f = m.hosts[h]
        cpu = f.cpu
        gpus = ", ".join(md(g.name) + (f" ({md(g.driver)})" if g.driver else "")
                         for g in f.gpus) or "none"
        lines.append(f"- **{md(h)}**: {md(f.os)}, {md(cpu.model)} ({md(cpu.level or '?')},"
                     f" {cpu.cores or '?'} cores); GPUs: {gpus}")
    return "\n".join(lines) + "\n"


def summary_counts(m: Merged) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for h in m.results:
        for target, kind in m.rows():
            out[cell_status(m.cell(h, target, kind))] += 1
    return dict(out)
