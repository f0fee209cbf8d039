"""Adapters for third-party optimisation libraries.

Each adapter imports its library only when first used, so `import eqagg_implicit` stays free of
optional or unmaintained dependencies.
"""
