"""Charts: matplotlib ``Figure`` objects (no pyplot, no global backend switch) saved as
inline SVG for the page, and as PDF and 300-dpi PNG files sized for a paper (one column,
3.5 in, where the chart fits; else the full text width, 7 in) beside the report
(:func:`write_chart_files`).

``svg.fonttype = "none"`` keeps text as text (the browser uses a local sans-serif font,
nothing is fetched) and a fixed ``svg.hashsalt`` makes the same results give byte-identical
charts.  The XML prolog, doctype, ``<metadata>`` and namespace URLs are stripped, ids are
prefixed per chart (``xc<N>-``) so several charts share one page, and heatmaps are vector
(``pcolormesh``), never embedded PNGs.
"""

from __future__ import annotations

import io
import os
import re
import warnings as _warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .common import column_values, find
from .compute import is_share

_SVG_ID = re.compile(r'\bid="([^"]+)"')
_SVG_REF = re.compile(r'(href="#|url\(#)([^")]+)')
CHAR_IN = 0.075  # about the width of one 9 pt character, in inches
COLUMN_IN, TEXT_IN = 3.5, 7.0
"""A paper's column and text widths, in inches: what chart files are sized for."""
PNG_DPI = 300


@dataclass
class Chart:
    """One chart: its inline SVG (what a template prints: ``{{ chart }}``), and how to build
    it again at another width for the files beside the report."""

    name: str
    slug: str
    build: Callable[[float | None], object]
    """width in inches (None: the page's layout) -> a matplotlib Figure"""
    svg: object = None
    page_width: float = 0.0
    """The width of the page's layout, in inches: what sizes the files."""

    def __html__(self) -> str:
        return str(self.svg)

    def __str__(self) -> str:
        return str(self.svg)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:80] or "chart"


def write_chart_files(charts: "OrderedDict[str, Chart]", folder: str) -> list[str]:
    """Every chart as ``<folder>/<slug>.pdf`` and ``.png`` (300 dpi), one column wide where
    its page width allows, else the text width.  Returns the paths written."""
    written = []
    if not charts:
        return written
    os.makedirs(folder, exist_ok=True)
    with _rc(), _warnings.catch_warnings():
        _warnings.simplefilter("ignore")
        for chart in charts.values():
            width = COLUMN_IN if chart.page_width <= COLUMN_IN * 1.4 else TEXT_IN
            fig = chart.build(width)
            for ext, kw in (("pdf", {"metadata": {"CreationDate": None, "ModDate": None}}), ("png", {"dpi": PNG_DPI, "metadata": {"Software": None}})):
                path = os.path.join(folder, f"{chart.slug}.{ext}")
                tmp = path + ".tmp"
                fig.savefig(tmp, format=ext, **kw)
                os.replace(tmp, path)
                written.append(path)
    return written
COLORS = ["#3b6ea5", "#e08a2c", "#4b9a5b", "#c0504d", "#8064a2", "#4aacc6", "#9b7b4a", "#777777"]


def _svg(fig, index: int):
    """The figure as an inline <svg> element (Markup): no prolog, doctype, metadata or
    namespace URLs; ids prefixed so several charts can share one page."""
    from markupsafe import Markup

    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    s = buf.getvalue()
    s = s[s.index("<svg") :]
    s = re.sub(r"<metadata>.*?</metadata>\s*", "", s, flags=re.S)
    s = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", s)
    prefix = f"xc{index}-"
    s = _SVG_ID.sub(lambda m: f'id="{prefix}{m.group(1)}"', s)
    s = _SVG_REF.sub(lambda m: f"{m.group(1)}{prefix}{m.group(2)}", s)
    s = s.replace("<svg ", '<svg role="img" class="chart" ', 1)
    return Markup(s.strip())


def _rc():
    import matplotlib

    return matplotlib.rc_context(
        {
            "svg.hashsalt": "xlspec-report",
            "svg.fonttype": "none",
            "font.size": 9,
            "font.family": "sans-serif",
            "axes.spines.top": False,
            "axes.spines.right": False,
            "text.usetex": False,
        }
    )


def _txt(s) -> str:
    """Chart text without mathtext: a '$' stays a dollar sign."""
    return "—" if s is None else str(s).replace("$", r"\$")


def _layout(fig, w, h, left, right, bottom, top, wspace=None):
    """Fixed margins in inches (no tight bounding box: it would draw the figure twice)."""
    fig.subplots_adjust(left=left / w, right=1 - right / w, bottom=bottom / h, top=1 - top / h, wspace=wspace)


def heatmaps(title: str, models, languages, framings, grids: list, share: bool, width: float | None = None):
    """One panel per model: languages (rows) x framings (columns), values written in, one
    colour scale for the metric (0 to 1 for a share) with its colour bar; a missing value
    is a grey cell with a dash, never a colour."""
    from matplotlib.figure import Figure

    fr_labels = [_txt(f if f is not None else "all") for f in framings]
    rotate = max((len(x) for x in fr_labels), default=0) > 9 and len(framings) > 1
    left = 0.2 + CHAR_IN * max((len(_txt(x)) for x in languages), default=2)
    gap = 0.25
    bar_w = 0.75  # the colour bar and its labels
    n_cols = max(len(models), 1) * max(len(framings), 1)
    if width is None:
        cell_w = max(0.55, min(1.1, CHAR_IN * max((len(x) for x in fr_labels), default=4) + 0.15)) if not rotate else 0.55
    else:
        cell_w = max(0.25, (width - left - (len(models) - 1) * gap - 0.2 - bar_w) / n_cols)
        rotate = rotate or cell_w < CHAR_IN * max((len(x) for x in fr_labels), default=4) + 0.1
    panel_w, panel_h = cell_w * max(len(framings), 1), 0.28 * max(len(languages), 1)
    bottom = 0.3 + (CHAR_IN * max(len(x) for x in fr_labels) * 0.7 if rotate else 0)
    top = 0.5
    w = left + len(models) * panel_w + (len(models) - 1) * gap + 0.2 + bar_w
    h = bottom + panel_h + top
    fig = Figure(figsize=(w, h), dpi=72)
    axes = fig.subplots(1, len(models), squeeze=False, sharey=True)[0]
    _layout(fig, w, h, left, 0.2 + bar_w, bottom, top, wspace=gap / panel_w)
    finite = np.concatenate([g[np.isfinite(g)] for g in grids]) if grids else np.array([])
    vmin, vmax = (0.0, 1.0) if share else ((float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0))
    if vmin == vmax:
        vmax = vmin + 1.0
    mesh = None
    for ax, model, values in zip(axes, models, grids):
        ax.set_facecolor("#e5e5e5")
        mesh = ax.pcolormesh(np.ma.masked_invalid(values), cmap="viridis", vmin=vmin, vmax=vmax, edgecolors="white", linewidth=1.0)
        ax.set_xticks(np.arange(len(framings)) + 0.5, fr_labels, rotation=35 if rotate else 0, ha="right" if rotate else "center")
        ax.set_yticks(np.arange(len(languages)) + 0.5, [_txt(x) for x in languages])
        ax.set_ylim(len(languages), 0)
        ax.tick_params(length=0)
        for side in ("left", "bottom", "top", "right"):
            ax.spines[side].set_visible(False)
        ax.set_title(_txt(model), fontsize=9)
        for i in range(len(languages)):
            for j in range(len(framings)):
                v = values[i, j]
                if np.isfinite(v):
                    frac = (v - vmin) / (vmax - vmin)
                    ax.text(j + 0.5, i + 0.5, f"{v:.2f}", ha="center", va="center", fontsize=8, color="black" if frac > 0.55 else "white")
                else:
                    ax.text(j + 0.5, i + 0.5, "—", ha="center", va="center", fontsize=8, color="#555555")
    if mesh is not None:
        # the colour bar, drawn as vector cells (a matplotlib colorbar embeds a PNG in SVG)
        cax = fig.add_axes([(w - bar_w) / w + 0.08 / w, bottom / h, 0.12 / w, panel_h / h])
        steps = np.linspace(vmin, vmax, 65)
        cax.pcolormesh([0.0, 1.0], steps, ((steps[:-1] + steps[1:]) / 2)[:, None], cmap="viridis", vmin=vmin, vmax=vmax, edgecolors="face", linewidth=0.4)
        cax.set_xticks([])
        cax.yaxis.tick_right()
        cax.tick_params(labelsize=7, length=2)
        cax.set_ylim(vmin, vmax)
        for side in ("left", "bottom", "top", "right"):
            cax.spines[side].set_visible(False)
    fig.suptitle(_txt(title), fontsize=9, x=0.02, y=1 - 0.08 / h, ha="left", va="top")
    return fig


def bars(title: str, groups, series, values, lows, highs, ylabel: str, width: float | None = None, baseline: float | None = None, baseline_label: str = "chance"):
    """Grouped bars: x = groups, one bar per series, 95% CI error bars.  A missing value is
    no bar and an "n/a" mark (never a bar of height 0); ``baseline`` draws a dashed line
    (the chance level) across the chart."""
    from matplotlib.figure import Figure

    n_g, n_s = len(groups), max(len(series), 1)
    rotate = n_g > 12 or max((len(_txt(g)) for g in groups), default=0) * n_g > 70
    w = min(12.0, max(3.6, 0.3 * n_g * n_s + 1.6)) if width is None else width
    if width is not None:
        rotate = rotate or max((len(_txt(g)) for g in groups), default=0) * CHAR_IN * n_g > (w - 0.8) * 0.9
    legend = 0.3 if n_s > 1 else 0.0
    bottom = 0.35 + (CHAR_IN * max(len(_txt(g)) for g in groups) if rotate else 0) + legend
    h = 2.3 + bottom
    fig = Figure(figsize=(w, h), dpi=72)
    ax = fig.subplots()
    _layout(fig, w, h, 0.65, 0.15, bottom, 0.35)
    bar_w = 0.8 / n_s
    x = np.arange(n_g)
    for k, s in enumerate(series):
        v = np.array(values[k], dtype=float)
        lo = np.array(lows[k], dtype=float)
        hi = np.array(highs[k], dtype=float)
        have = np.isfinite(v)
        xs = x + (k - (n_s - 1) / 2) * bar_w
        err = np.vstack([np.nan_to_num(np.clip(v - lo, 0, None)), np.nan_to_num(np.clip(hi - v, 0, None))])
        ax.bar(xs[have], v[have], bar_w * 0.92, yerr=err[:, have], capsize=2, label=_txt(s), color=COLORS[k % len(COLORS)], error_kw={"elinewidth": 0.8, "ecolor": "#333333"})
        for xm in xs[~have]:
            ax.text(xm, 0, "n/a", ha="center", va="bottom", fontsize=7, color="#777777", rotation=90)
    if baseline is not None and np.isfinite(baseline):
        ax.axhline(baseline, color="#444444", linestyle=(0, (4, 3)), linewidth=0.9, zorder=3)
        ax.text(n_g - 0.45, baseline, f"{_txt(baseline_label)} {baseline:.2f}", ha="right", va="bottom", fontsize=7, color="#444444")
    ax.set_xticks(x, [_txt(g) for g in groups], rotation=90 if rotate else 0)
    ax.set_xlim(-0.6, n_g - 0.4)
    ax.set_ylabel(_txt(ylabel))
    ax.set_title(_txt(title), fontsize=9, loc="left")
    ax.grid(axis="y", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    if n_s > 1:
        fig.legend(fontsize=8, frameon=False, ncols=min(n_s, 4), loc="lower left", bbox_to_anchor=(0.02, 0.0))
    return fig


def _series(rows_list):
    vals = [[r.get("value") if r.get("value") is not None else np.nan for r in rs] for rs in rows_list]
    lows = [[r.get("ci_low") if r.get("ci_low") is not None else np.nan for r in rs] for rs in rows_list]
    highs = [[r.get("ci_high") if r.get("ci_high") is not None else np.nan for r in rs] for rs in rows_list]
    return vals, lows, highs


def study_charts(sname, df, head, pooled, start: int, axes: dict) -> "OrderedDict[str, Chart]":
    """A study's charts, caption -> :class:`Chart`: a language x framing heatmap of every
    per-item metric (a panel per model), the headline metric per language with 95% CI error
    bars (a bar per model; the chance level dashed where the summary tested it), and the
    parity gap per model (a bar per framing).  ``start`` numbers the charts already on the
    page (their ids must differ)."""
    charts: OrderedDict[str, Chart] = OrderedDict()

    def add(name: str, build: Callable[[float | None], object]) -> None:
        page = build(None)
        chart = Chart(name, f"{start + len(charts):02d}-{_slug(name)}", build, _svg(page, start + len(charts)), page.get_figwidth())
        charts[name] = chart

    if not pooled.get("items") and head is None:
        return charts
    models = column_values(df, "model", axes.get("model"))
    languages = column_values(df, "language", axes.get("language"))
    framings = column_values(df, "framing", axes.get("framing"))
    with _rc(), _warnings.catch_warnings():
        _warnings.simplefilter("ignore")
        if head is not None:
            hl = head.label
            # (a) the headline metric per language, 95% CI, a bar per model (first: the
            # summary shows it beside the headline findings)
            vals, lows, highs = _series([[find(pooled["model_language"], hl, model=model, language=lang) or {} for lang in languages] for model in models])
            chance = None
            if pooled.get("chance"):
                levels = [r["value"] for model in models if (r := find(pooled["model"], pooled["chance"], model=model)) is not None and r.get("value") is not None]
                chance = float(np.mean(levels)) if levels else None
            if languages and any(np.isfinite(np.array(v, dtype=float)).any() for v in vals):
                add(
                    f"{sname} · {hl} per language (95% CI)",
                    lambda width, v=vals, lo=lows, hi=highs, c=chance: bars(f"{hl} per language, 95% CI", languages, models, v, lo, hi, hl, width, baseline=c),
                )
        # (b) language x framing heatmap of every per-item metric, a panel per model
        for m in pooled.get("items", []):
            lbl = m.label
            sub = {(r.get("model"), r.get("language"), r.get("framing")): r.get("value") for r in pooled["model_language_framing"] if r["metric"] == lbl}
            if not sub or all(v is None for v in sub.values()):
                continue
            grids = [np.array([[np.nan if sub.get((model, lang, fr)) is None else sub[(model, lang, fr)] for fr in framings] for lang in languages], dtype=float) for model in models]
            add(f"{sname} · {lbl}: language × framing, per model", lambda width, lbl=lbl, g=grids, share=is_share(m): heatmaps(lbl, models, languages, framings, g, share, width))
        if head is None:
            return charts
        # (c) the parity gap (best - worst language) per model, a bar per framing
        parity = pooled.get("parity")
        if parity is not None and len(languages) >= 2:
            plbl = parity.label
            if len(framings) > 1:
                series = [f"framing {fr}" for fr in framings]
                src = [[find(pooled["parity_framing"], plbl, model=model, framing=fr) or {} for model in models] for fr in framings]
            else:
                series = ["all framings"]
                src = [[find(pooled["model"], plbl, model=model) or {} for model in models]]
            vals, lows, highs = _series(src)
            if any(np.isfinite(np.array(v, dtype=float)).any() for v in vals):
                add(
                    f"{sname} · parity gap of {hl} per model (95% CI)",
                    lambda width, s=series, v=vals, lo=lows, hi=highs: bars(f"best - worst language ({hl}), 95% CI", models, s, v, lo, hi, "gap", width),
                )
    return charts
