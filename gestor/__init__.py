"""Gestor de Compras: sells mobile bundles ("bonos") to an operator's subscribers.

Layers (arrows point one way): `api` → `purchase` → `rules`, `platforms`, `store`, `alarms`;
`runtime` composes them for one worker process; `cli` starts everything.
"""

__version__ = "0.1.0"
