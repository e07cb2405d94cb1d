"""Method registry: ``register_method`` (class decorator), ``create_method``, ``list_methods``."""

from __future__ import annotations

import importlib
from typing import Any

from pydantic import ValidationError

from semiseg.config.schema import EXECUTION_ONLY
from semiseg.errors import ConfigError, validation_summary
from semiseg.methods.base import Method, MethodContext

_REGISTRY: dict[str, type[Method]] = {}
_BUILTIN_MODULES = ("supervised", "roam", "mean_teacher", "ua_mt", "cps", "pseudo_label", "adversarial", "graph_embedding", "equireg",
                    "hybrid_colearning", "voxel_adversarial", "bcp", "unimatch", "dtc", "sassnet", "mcnet", "urpc", "ssnet")


def register_method(cls: type[Method]) -> type[Method]:
    if not cls.name:
        raise ValueError(f"{cls.__name__} must set a class attribute 'name'")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"method '{cls.name}' is registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def _ensure_builtin() -> None:
    for mod in _BUILTIN_MODULES:
        importlib.import_module(f"semiseg.methods.{mod}")


def list_methods() -> list[str]:
    _ensure_builtin()
    return sorted(_REGISTRY)


def get_method_class(name: str) -> type[Method]:
    _ensure_builtin()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown method '{name}'; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def validate_method_params(name: str, params: dict[str, Any]) -> Any:
    cls = get_method_class(name)
    try:
        return cls.Params.model_validate(params)
    except ValidationError as exc:
        valid = ", ".join(sorted(cls.Params.model_fields)) or "(none)"
        raise ConfigError(f"method '{name}' params: {validation_summary(exc)}; valid params: {valid}") from None


def create_method(name: str, ctx: MethodContext, params: dict[str, Any]) -> Method:
    cls = get_method_class(name)
    return cls(ctx, validate_method_params(name, params))


def resolved_config(cfg: Any) -> dict[str, Any]:
    """A run configuration as plain data with the method's params resolved (every default written out), so that
    two runs compare equal only when their methods run with the same values -- a default changed in the code
    since a run made its config.yaml shows as a difference. The
    :data:`~semiseg.config.schema.EXECUTION_ONLY` settings are left out."""
    data = cfg.model_dump(mode="json")
    for key in EXECUTION_ONLY:
        data["train"].pop(key, None)
    data["method"]["params"] = validate_method_params(cfg.method.name, cfg.method.params).model_dump(mode="json")
    return data
