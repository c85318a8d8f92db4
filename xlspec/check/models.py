"""Models: ``model NAME = ENGINE("source") { settings }``.

``resolve_models(decls, diags) -> dict[str, ModelSpec]``.  The engines a spec can name are
the registered ones (``xlspec.runtime.engines.ENGINES``); the settings a block may write and
the type of each value are :class:`~xlspec.spec.ModelSpec`'s fields
(``ModelSpec.settings()``); the ``builtin:`` sources are the runtime's embedded models.
"""

from __future__ import annotations

import typing

from typing import Any

from .. import ast
from ..diagnostics import Diagnostics
from ..spec import ModelSpec
from .context import did_you_mean, expect_bool, expect_choice, expect_int, expect_str, span_of, value_type
from .declarations import Declarations

MODEL_SETTINGS: tuple[str, ...] = tuple(ModelSpec.settings())
"""What a model's block may set."""

_READERS = {
    bool: lambda v, diags, what: expect_bool(v, diags, what),
    str: lambda v, diags, what: expect_str(v, diags, what),
    int: lambda v, diags, what: expect_int(v, 1, diags, what),
}
"""How a setting's value is read, by the type of its ModelSpec field."""


def resolve_models(decls: Declarations, diags: Diagnostics) -> dict[str, ModelSpec]:
    from ..runtime.engines import ENGINES
    from ..runtime.models import builtin_head, builtin_names

    engines = ENGINES.names()
    builtins = [f"builtin:{n}" for n in builtin_names()]
    settings = ModelSpec.settings()
    out: dict[str, ModelSpec] = {}
    for name, d in decls["model"].items():
        v = d.value
        if not isinstance(v, ast.Call) or v.func.text not in engines or len(v.args) != 1 or not isinstance(v.args[0], ast.Str):
            if v is not None:
                hint = did_you_mean(v.func.text, engines, None) if isinstance(v, ast.Call) else None
                forms = ", ".join(f'{e}("org/name")' for e in engines) + "".join(f', or {engines[0]}("{b}")' for b in builtins[:1])
                diags.error("E014", f"a model is an engine and a source: {forms}", span_of(v), hint=hint)
            continue
        vals: dict[str, Any] = {}
        for s in d.body.settings if d.body else ():
            key = s.key.text
            if key not in settings:
                diags.error("E014", f"unknown model setting `{key}`", s.key.span, hint=did_you_mean(key, MODEL_SETTINGS, f"a model takes: {', '.join(sorted(MODEL_SETTINGS))}"))
                continue
            vtype = value_type(settings[key].annotation)
            if typing.get_origin(vtype) is typing.Literal:
                vals[key] = expect_choice(s.value, typing.get_args(vtype), diags, key)
            else:
                vals[key] = _READERS[vtype](s.value, diags, key)
        source = v.args[0].value
        if source.startswith("builtin:") and source not in builtins:
            hint = f"the embedded model is {builtins[0]}" if len(builtins) == 1 else f"embedded models: {', '.join(builtins)}"
            diags.error("E014", f"unknown builtin model `{source}`", v.args[0].span, hint=hint)
        head = builtin_head(source.removeprefix("builtin:")) if source.startswith("builtin:") else None
        if head is not None and vals.get("head") not in (None, head):
            diags.error("E014", f"`{source}` is a model with head `{head}`", next(s.value.span for s in d.body.settings if s.key.text == "head"), hint=f"remove `head = {vals['head']}`")
        elif head is not None:
            vals["head"] = head
        out[name] = ModelSpec(engine=v.func.text, source=source, **{k: x for k, x in vals.items() if x is not None})
    return out
