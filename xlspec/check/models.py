"""Models: ``model NAME = ENGINE("source") { settings }``.

``resolve_models(decls, diags) -> dict[str, ModelSpec]``.  The engines a spec can name are
the registered ones (``xlspec.runtime.engines.ENGINES``); the settings a block may write and
the type of each value are :class:`~xlspec.spec.ModelSpec`'s fields
(``ModelSpec.settings()``); the ``builtin:`` sources are the runtime's embedded models.
"""

from __future__ import annotations

import re
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
    dict[str, float | str | bool]: lambda v, diags, what: _attributes(v, diags),
}
"""How a setting's value is read, by the type of its ModelSpec field."""


def _attributes(v: ast.Expr, diags: Diagnostics) -> dict[str, float | str | bool] | None:
    """``attributes = { params: 8e9, type: "instruct" }``: names to numbers, strings or
    booleans."""
    if not isinstance(v, ast.MapExpr):
        diags.error("E014", "`attributes` is a map: { params: 8e9, train_languages: 4, type: \"instruct\" }", span_of(v))
        return None
    out: dict[str, float | str | bool] = {}
    for e in v.entries:
        x = e.value
        if isinstance(x, ast.Num):
            out[e.key.text] = int(x.value) if x.is_int else x.value
        elif isinstance(x, (ast.Str, ast.Bool)):
            out[e.key.text] = x.value
        elif isinstance(x, ast.Ref) and x.is_name:
            out[e.key.text] = x.parts[0].text
        else:
            diags.error("E014", f"attribute `{e.key.text}` is a number, a string or true/false", span_of(x))
    return out


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


KEY_PREFIXES = ("sk-", "sk_", "gsk_", "hf_", "AIza", "xai-", "pplx-", "key-", "r8_")
"""How common providers' API keys begin."""


def _looks_like_key(text: str) -> bool:
    """A value that is more likely an API key than a variable's name: a provider's key
    prefix, or a long run of letters and digits with no underscore."""
    return text.startswith(KEY_PREFIXES) or len(text) > 64 or (len(text) >= 24 and "_" not in text)


def _api_root(url: str) -> str:
    """The API root a URL most likely means (``.../v1``)."""
    root = url.rstrip("/")
    for tail in ("/chat/completions", "/completions", "/models"):
        root = root.removesuffix(tail)
    return root if root.endswith("/v1") else root + "/v1"


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
                forms = ", ".join(f'{e}("org/name")' if ENGINES[e].local else f'{e}("model-name")' for e in engines) + "".join(f', or {engines[0]}("{b}")' for b in builtins[:1])
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
                minimum = (settings[key].json_schema_extra or {}).get("minimum")
                vals[key] = expect_int(s.value, minimum, diags, key) if vtype is int and minimum is not None else _READERS[vtype](s.value, diags, key)
        source = v.args[0].value
        engine = v.func.text
        local = ENGINES[engine].local
        for s in d.body.settings if d.body else ():
            only = ModelSpec.setting_engines(s.key.text) if s.key.text in settings else None
            if only is not None and (only == "local") != local:
                fit = ", ".join(n for n, e in ENGINES.items() if e.local == (only == "local"))
                diags.error(
                    "E014", f"`{s.key.text}` is a setting of engines that {'run the model here' if only == 'local' else 'call a server'} ({fit}), not of `{engine}`",
                    s.key.span, context=v.func.span, hint="remove it" + (" (the server decides)" if only == "local" else ""),
                )
        if not local:
            if not source.strip():
                diags.error("E014", f"`{engine}(...)` takes the server's model name, such as {engine}(\"gpt-4o-mini\")", v.args[0].span)
            elif source.startswith("builtin:") or "://" in source:
                diags.error("E014", f"`{engine}(...)` takes the server's model name, not {'a builtin model' if source.startswith('builtin:') else 'a URL'}", v.args[0].span, hint='put the server in the block: openai("model-name") { base_url = "http://localhost:8000/v1" }')
            url = vals.get("base_url")
            if url is not None and not url.startswith(("http://", "https://")):
                diags.error("E014", "base_url is an http:// or https:// URL, such as http://localhost:8000/v1", next(s.value.span for s in d.body.settings if s.key.text == "base_url"))
            key_env = vals.get("api_key_env")
            if key_env is not None and (not _ENV_NAME.fullmatch(key_env) or _looks_like_key(key_env)):
                diags.error("E014", f"api_key_env names an environment variable (such as OPENAI_API_KEY), not {'what looks like a key' if _looks_like_key(key_env) else 'this text'}", next(s.value.span for s in d.body.settings if s.key.text == "api_key_env"), hint="the key itself never goes in a spec: export it in that variable")
        elif "://" in source:
            diags.error(
                "E014", f"`{source}` is a URL, not a model the {engine} engine can load", v.args[0].span,
                hint=f'a model behind an OpenAI-compatible server (vllm serve, SGLang, a hosted API) is openai("<model name>") {{ base_url = "{_api_root(source)}" }}',
            )
        if source.startswith("builtin:") and source not in builtins:
            hint = f"the embedded model is {builtins[0]}" if len(builtins) == 1 else f"embedded models: {', '.join(builtins)}"
            diags.error("E014", f"unknown builtin model `{source}`", v.args[0].span, hint=hint)
        head = builtin_head(source.removeprefix("builtin:")) if source.startswith("builtin:") else None
        if head is not None and vals.get("head") not in (None, head):
            diags.error("E014", f"`{source}` is a model with head `{head}`", next(s.value.span for s in d.body.settings if s.key.text == "head"), hint=f"remove `head = {vals['head']}`")
        elif head is not None:
            vals["head"] = head
        out[name] = ModelSpec(engine=engine, source=source, **{k: x for k, x in vals.items() if x is not None})
    return out
