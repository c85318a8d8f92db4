"""A derived metric: an expression over per-item metrics across cells (``metric gap =
mean(accuracy, over = language, where = language != en) - ...``), evaluated by
:mod:`..derived`.  The checker writes it (``name = "derived"``, ``args = {"expr": tree}``,
the label the spec's name); a spec never names ``derived`` itself.  Each group is one
bootstrap job whose columns are every cell the expression reads, so a replicate resamples
the items once for the whole chain."""

from __future__ import annotations

from xlspec.lazy import lazy

from ..registry import METRICS, Computation, MetricInfo, Param

np = lazy("numpy")
pd = lazy("pandas")


def leaf_axes(ref, inner: tuple[str, ...]) -> tuple[str, ...]:
    name, args = (ref["name"], ref.get("args") or {}) if isinstance(ref, dict) else (ref, {})
    info = METRICS.get(name)
    folds = set(info.folds(dict(args))) if info is not None else set()
    return tuple(a for a in inner if a not in folds)


def _folds(args: dict) -> tuple[str, ...]:
    """The axes the expression names, and those its metrics fold themselves (a derived
    metric reading ``consistency(over = language)`` has no language in its groups)."""
    from .. import derived

    tree = args.get("expr")
    if not tree:
        return ()
    out = list(derived.inner_axes(tree))
    for ref in derived.leaves(tree):
        name, leaf_args = (ref["name"], ref.get("args") or {}) if isinstance(ref, dict) else (ref, {})
        info = METRICS.get(name)
        out.extend(a for a in (info.folds(dict(leaf_args)) if info is not None else ()) if a not in out)
    return tuple(out)


def _fills(args: dict) -> tuple[str, ...]:
    from .. import derived

    tree = args.get("expr")
    if not tree:
        return ()
    inner = derived.inner_axes(tree)
    axes = derived.result_axes(tree, lambda ref: leaf_axes(ref, inner)) + derived.named_axes(tree)
    return tuple(a for a in dict.fromkeys(axes) if a != derived.STAT)


def _jobs(cols, spec, keys):
    from .. import derived
    from ..aggregate import Job, emitter, item_stats
    from ..columns import ITEM
    from ..spec import make_spec

    tree = spec.args["expr"]
    inner = derived.inner_axes(tree)
    for a in inner:
        if a not in cols.df.columns:
            raise ValueError(f"{spec.label}: no axis {a!r} in the results")
    parts, column_of = [], []  # column_of[c] = (leaf index, coordinate values)
    refs = derived.leaves(tree)
    for li, ref in enumerate(refs):
        leaf = make_spec(ref if isinstance(ref, dict) else {"name": ref})
        comp = leaf.info.compute
        if not (leaf.info.per_item or (comp is not None and comp.item_stats is not None)):
            raise ValueError(f"{spec.label}: {leaf.label!r} is not scored per item")
        laxes = list(leaf_axes(ref, inner))
        st = item_stats(cols, leaf, keys + laxes)
        if laxes:
            codes = st.groupby(laxes, sort=True).ngroup().to_numpy()
            firsts = st.drop_duplicates(laxes).sort_values(laxes)
            coords = [cols.decode(laxes, tuple(r)) for r in firsts[laxes].to_numpy()]
        else:
            codes, coords = np.zeros(len(st), dtype=np.int64), [()]
        st = st[keys + [ITEM, "S", "C"]].assign(_col=codes + len(column_of))
        column_of.extend((li, tuple(laxes), c) for c in coords)
        parts.append(st)
    frame = pd.concat(parts, ignore_index=True)
    items_all = pd.factorize(frame[ITEM].to_numpy(dtype=object))[0]
    col_all = frame["_col"].to_numpy()
    S_all, C_all = frame["S"].to_numpy(float), frame["C"].to_numpy(float)
    keys_of = {derived.leaf_key(ref): li for li, ref in enumerate(refs)}
    jobs = []
    for key, pos in cols.split(frame, keys):
        present, local_col = np.unique(col_all[pos], return_inverse=True)
        _, local_item = np.unique(items_all[pos], return_inverse=True)
        n, K = int(local_item.max()) + 1, len(present)
        flat = local_item.ravel() * K + local_col.ravel()
        S = np.bincount(flat, weights=S_all[pos], minlength=n * K).reshape(n, K)
        C = np.bincount(flat, weights=C_all[pos], minlength=n * K).reshape(n, K)
        used = C.sum(1) > 0
        S, C = S[used], C[used]
        by_leaf: dict[int, list[tuple[int, tuple, tuple]]] = {}
        for j, c in enumerate(present):
            li, laxes, coord = column_of[c]
            by_leaf.setdefault(li, []).append((j, laxes, coord))

        def tables(R, by_leaf=by_leaf, keys_of=keys_of, refs=refs, inner=inner):
            def leaf_table(ref):
                li = keys_of[derived.leaf_key(ref)]
                entries = by_leaf.get(li, [])
                laxes = entries[0][1] if entries else leaf_axes(ref, inner)
                idx = [j for j, _, _ in entries]
                return derived.Table(tuple(laxes), [coord for _, _, coord in entries], R[:, idx])

            return derived.evaluate(tree, leaf_table)

        with np.errstate(invalid="ignore", divide="ignore"):
            full = tables((S.sum(0) / C.sum(0))[None, :])
        if not full.coords:
            continue
        labels, extra = [], []
        for j, coord in enumerate(full.coords):
            values = dict(zip(full.axes, coord))
            stat = values.pop(derived.STAT, None)
            labels.append(spec.label if stat is None else f"{spec.label}.{stat}")
            extra.append({**values, **full.named[j]})

        def fn(R, tables=tables):
            return tables(R).data

        jobs.append(Job(spec.label, key, S, C, fn, emitter(labels, keys, key, int(len(S)), extra)))
    return jobs


DERIVED = MetricInfo(
    name="derived",
    summary="an expression over per-item metrics across cells, declared with `metric NAME = ...`",
    params=(Param("expr", "expr", required=True, summary="the expression tree the checker writes"),),
    listed=False,
    folds=_folds,
    fills=_fills,
    compute=Computation(jobs=_jobs),
).register()
