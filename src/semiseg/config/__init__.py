"""Typed run configuration: schema, YAML presets and dotted overrides."""

from semiseg.config.load import apply_overrides, dump_config, list_presets, load_config, validate_config
from semiseg.config.schema import RunConfig

__all__ = ["RunConfig", "apply_overrides", "dump_config", "list_presets", "load_config", "validate_config"]
