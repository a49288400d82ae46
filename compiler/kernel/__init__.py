"""Kernel IR (loops, loads/stores, scalar expressions) and the lowering of fusion groups into it.

See docs/kernel-ir.md. ``ir`` defines the IR and its printer, ``builder`` the expression builder ops'
``lowering["scalar"]`` functions use, ``group`` the fusion-group interface, ``lower`` the lowering.
"""
