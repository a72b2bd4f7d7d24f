"""Schemas built from the wire dataclasses, so that each shape's fields are written once.

A model is a frozen dataclass whose annotations say everything the schema needs:

* ``str``, ``bool``, ``int`` and ``Decimal`` (money as a JSON number) are strict about JSON
  types; ``Literal[...]`` is a string among those values; ``tuple[X, ...]`` a JSON array
  loaded as a tuple; ``dict[str, X]`` an object; another dataclass a nested object;
* ``Annotated[X, SomeField, check…]`` names the marshmallow field and adds checks (the
  aliases of :mod:`~flask_thrillconnect.models.fields`); ``Strict(check…)`` adds checks that
  apply only to what the portal sends;
* a field without a default is required; ``X | None = None`` may be absent, loads as
  ``None`` and is left out of dumps when ``None``; ``Nullable[X] = None`` dumps ``null``;
* ``field(metadata={"data_key": …})`` renames the field on the wire.

:func:`wire_schema` builds the schema class once per model (and base); :func:`schema_for`
gives the shared instance.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping
from decimal import Decimal
from typing import (
    Annotated,
    Any,
    ClassVar,
    Literal,
    Union,
    get_args,
    get_origin,
    get_type_hints,
)

from marshmallow import EXCLUDE, Schema, fields, post_dump, post_load, validate

from .fields import KEEP_NULL, MoneyField, Sequence, Strict, StrictBoolean, StrictInteger

__all__ = ["WireSchema", "schema_for", "summarize", "wire_schema"]

_PLAIN: dict[Any, type[fields.Field]] = {  # type: ignore[type-arg]
    str: fields.String,
    bool: StrictBoolean,
    int: StrictInteger,
    Decimal: MoneyField,
    Any: fields.Raw,
}
#: The field metadata key of ``Nullable`` fields.
_KEEP = "keep_null"


class WireSchema(Schema):
    """Upstream shapes: unknown fields are left out, loads build the model.

    Loads into ``__model__`` (a plain dict when it is ``None``); dumps leave out the optional
    fields that are ``None``, except those marked ``Nullable``.
    """

    __model__: ClassVar[type | None] = None
    #: Whether ``Strict`` checks apply: only to what the portal sends, never to what upstream
    #: answers (it may be newer than this release).
    strict: ClassVar[bool] = False

    class Meta:
        unknown = EXCLUDE

    @post_load
    def _make_model(self, data: dict[str, Any], **kwargs: Any) -> Any:
        model = type(self).__model__
        return data if model is None else model(**data)

    @post_dump
    def _omit_absent(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        for name, field in self.dump_fields.items():
            key = field.data_key or name
            absent = key in data and data[key] is None and not field.required
            if absent and not field.metadata.get(_KEEP):
                del data[key]
        return data


_BUILT: dict[tuple[type, type[WireSchema]], type[WireSchema]] = {}
_SHARED: dict[type, WireSchema] = {}


def wire_schema(
    model: type, base: type[WireSchema] = WireSchema, *, name: str | None = None
) -> type[WireSchema]:
    """The schema class of the dataclass ``model`` on ``base``, built once from its fields.

    :param model: a dataclass annotated as the module docstring says.
    :param base: the schema it derives from (its ``Meta``, hooks and :attr:`~WireSchema.strict`);
        nested models get schemas on the same base.
    :param name: the class name; ``<Model>Schema`` by default (``/openapi.json`` names its
        components after it).
    """
    built = _BUILT.get((model, base))
    if built is None:
        hints = get_type_hints(model, include_extras=True)
        declared = {
            field.name: _field(hints[field.name], field, base)
            for field in dataclasses.fields(model)
        }
        doc = f"Loads into and dumps :class:`{model.__module__}.{model.__qualname__}`."
        attributes = {"__model__": model, "__doc__": doc, "__module__": model.__module__}
        built = type(name or f"{model.__name__}Schema", (base,), {**attributes, **declared})
        _BUILT[(model, base)] = built
    return built


def schema_for(model: type) -> WireSchema:
    """The shared (stateless) schema instance that loads into and dumps ``model``."""
    schema = _SHARED.get(model)
    if schema is None:
        schema = _SHARED[model] = wire_schema(model)()
    return schema


def _field(hint: Any, field: dataclasses.Field[Any], base: type[WireSchema]) -> fields.Field:  # type: ignore[type-arg]
    options: dict[str, Any] = dict(field.metadata)
    if field.default is not dataclasses.MISSING:
        options["load_default"] = field.default
    elif field.default_factory is not dataclasses.MISSING:
        options["load_default"] = field.default_factory
    else:
        options["required"] = True
    return _field_of_type(hint, base, options)


def _field_of_type(hint: Any, base: type[WireSchema], options: dict[str, Any]) -> fields.Field:  # type: ignore[type-arg]
    extras: list[Any] = []
    while True:  # peel Annotated[...] and "| None" in whatever order they are nested
        origin = get_origin(hint)
        if origin is Annotated:
            hint, *more = get_args(hint)
            extras.extend(more)
        elif origin in (Union, types.UnionType) and type(None) in get_args(hint):
            (hint,) = (arg for arg in get_args(hint) if arg is not type(None))
            options["allow_none"] = True
        else:
            break
    if KEEP_NULL in extras:
        options["metadata"] = {_KEEP: True}
    field_class = next(
        (e for e in extras if isinstance(e, type) and issubclass(e, fields.Field)), None
    )
    checks: list[Any] = []
    for extra in extras:
        if isinstance(extra, Strict):
            checks.extend(extra.checks if base.strict else ())
        elif extra is not KEEP_NULL and extra is not field_class:
            checks.append(extra)
    origin, args = get_origin(hint), get_args(hint)
    if origin is Literal:
        checks.insert(0, validate.OneOf(args))
        hint = str
    if checks:
        options["validate"] = checks
    if hint is Any:
        options.setdefault("allow_none", True)
    if field_class is not None:
        return field_class(**options)
    if origin is tuple:
        return Sequence(_field_of_type(args[0], base, {}), **options)
    if origin is dict:
        return fields.Dict(
            keys=fields.String(), values=_field_of_type(args[1], base, {}), **options
        )
    if dataclasses.is_dataclass(hint):
        return fields.Nested(wire_schema(hint, base), **options)  # type: ignore[arg-type]
    return _PLAIN[hint](**options)


def summarize(messages: Any, prefix: str = "", limit: int = 300) -> str:
    """Flatten marshmallow's nested error messages into ``path: message`` text (bounded)."""
    parts: list[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, Mapping):
            for key, child in node.items():
                walk(child, f"{path}.{key}" if path else str(key))
        elif isinstance(node, list):
            for child in node:
                walk(child, path)
        else:
            parts.append(f"{path or prefix or 'value'}: {node}")

    walk(messages, prefix)
    text = "; ".join(parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"
