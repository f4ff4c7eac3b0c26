"""The PEFT method registry: see :mod:`advisor.methods.registry`."""

from advisor.methods.registry import MethodInfo, Registry, load_registry, normalise

__all__ = ["MethodInfo", "Registry", "load_registry", "normalise"]
