"""Training methods: one file each, registered by name (see :mod:`semiseg.methods.base`)."""

from semiseg.methods.base import Method, MethodContext, MethodParams
from semiseg.methods.registry import create_method, get_method_class, list_methods, register_method

__all__ = ["Method", "MethodContext", "MethodParams", "create_method", "get_method_class", "list_methods", "register_method"]
