"""YAML presets, dotted command-line overrides and validation into :class:`RunConfig`."""

from __future__ import annotations

import difflib
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from semiseg.config.schema import RunConfig
from semiseg.errors import ConfigError


def list_presets() -> list[str]:
    """Names of the presets shipped in ``semiseg/configs`` (without ``.yaml``)."""
    folder = resources.files("semiseg") / "configs"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def read_config_file(name_or_path: str | Path) -> dict[str, Any]:
    """Read a YAML file, or a shipped preset by name (``synthbrain2d_supervised``)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        text = path.read_text()
    else:
        preset = resources.files("semiseg") / "configs" / f"{name_or_path}.yaml"
        if not preset.is_file():
            raise ConfigError(
                f"config '{name_or_path}' is neither a YAML file nor a shipped preset; "
                f"presets: {', '.join(list_presets())}"
            )
        text = preset.read_text()
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config '{name_or_path}' is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config '{name_or_path}' must be a mapping at its top level")
    return data


def _valid_keys(model: type[BaseModel], path: list[str]) -> list[str]:
    """The valid keys at a dotted path of the schema (for error messages)."""
    for key in path:
        field = model.model_fields.get(key)
        ann = getattr(field, "annotation", None) if field else None
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        else:
            return []
    return sorted(model.model_fields)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (values parsed as YAML) to a nested dict, in place."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key.sub=value")
        key, raw = item.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise ConfigError(f"override '{item}' has an empty key")
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        node = data
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        if parts == ["method", "name"] and value != node.get("name"):
            node.pop("params", None)  # another method: the params set so far were the previous method's
        node[parts[-1]] = value
    return data


def _other_method(base: dict[str, Any], top: dict[str, Any]) -> bool:
    """``top`` names a method other than ``base``'s (both are ``method`` sections)."""
    return "name" in top and top["name"] != base.get("name")


def _merge(base: dict[str, Any], top: dict[str, Any], section: str = "") -> dict[str, Any]:
    """``top`` merged over ``base``; a ``method`` section that names another method does not inherit the base
    method's ``params`` (they are that method's)."""
    out = dict(base)
    if section == "method" and _other_method(base, top):
        out.pop("params", None)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value, key if not section else f"{section}.{key}")
        else:
            out[key] = value
    return out


def _beside(name: str, folder: Path | None) -> str:
    """A relative YAML path named inside a config file: relative to that file's folder when it exists there."""
    if folder is not None and name.endswith((".yaml", ".yml")) and not Path(name).is_absolute() and (folder / name).is_file():
        return str(folder / name)
    return name


def _root_beside(data: dict[str, Any], folder: Path) -> None:
    """A relative ``data.root`` written in a YAML file means relative to that file's folder."""
    root = data.get("data", {}).get("root") if isinstance(data.get("data"), dict) else None
    if isinstance(root, str) and root and not root.startswith(("builtin:", "~", "$")) and not Path(root).is_absolute():
        data["data"]["root"] = str((folder / root).resolve())


def resolve_inheritance(data: dict[str, Any], seen: tuple[str, ...] = (), folder: Path | None = None) -> dict[str, Any]:
    """A config may name ``extends: PRESET_OR_FILE`` (a file relative to the extending file's folder); its values
    are merged over that base. With ``folder`` (user YAML files), relative ``data.root`` values are resolved there."""
    parent = data.pop("extends", None)
    if folder is not None:
        _root_beside(data, folder)
    if parent is None:
        return data
    parent = _beside(str(parent), folder)
    if parent in seen:
        raise ConfigError(f"config inheritance loops through '{parent}'")
    is_file = Path(parent).suffix in (".yaml", ".yml") and Path(parent).is_file()
    base = resolve_inheritance(read_config_file(parent), seen + (parent,), Path(parent).resolve().parent if folder and is_file else None)
    return _merge(base, data)


def validate_config(data: dict[str, Any]) -> RunConfig:
    """Validate a nested dict; every problem is reported with the valid keys where a key is unknown."""
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = [str(p) for p in err["loc"]]
            dotted = ".".join(loc) or "(top level)"
            if err["type"] == "extra_forbidden":
                valid = _valid_keys(RunConfig, loc[:-1])
                close = difflib.get_close_matches(loc[-1], valid, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                lines.append(f"unknown key '{dotted}'{hint}; valid keys here: {', '.join(valid)}")
            else:
                lines.append(f"{dotted}: {err['msg']}")
        raise ConfigError("invalid configuration:\n" + "\n".join(f"  - {l}" for l in lines)) from None


def load_config(name_or_path: str | Path, overrides: list[str] | None = None, user_file: bool = False) -> RunConfig:
    """Preset or YAML file + dotted overrides -> validated :class:`RunConfig`.

    ``user_file``: a YAML file a user wrote (``semiseg train/verify FILE``): relative ``data.root`` values in it
    (and in the files it extends) are relative to the file's folder, not to the current directory. Command-line
    overrides stay relative to the current directory.
    """
    path = Path(name_or_path)
    folder = path.resolve().parent if user_file and path.suffix in (".yaml", ".yml") and path.is_file() else None
    data = resolve_inheritance(read_config_file(name_or_path), (str(name_or_path),), folder)
    apply_overrides(data, list(overrides or []))
    return validate_config(data)


def dump_config(cfg: RunConfig) -> str:
    """The resolved configuration as YAML (what ``config.yaml`` of a run folder holds)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
