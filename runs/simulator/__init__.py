"""A local fake of the upstream Coasty runs API, for the portal, its tests and its chaos suite.

A Starlette app with no Django in it: ``create_app(SimConfig(...))``. Start it with
``manage.py coasty_sim`` or ``python -m runs.simulator``; in tests use
``runs.simulator.testing.run_simulator()``. See README.md beside this file.
"""

from .app import create_app
from .config import SimConfig
from .faults import FAULT_NAMES
from .webhooks import sign, signature_header

__all__ = ["FAULT_NAMES", "SimConfig", "create_app", "sign", "signature_header"]
