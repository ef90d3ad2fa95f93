"""streamapp: real-time sentiment and hate-speech monitor on Kafka, Faust and Elasticsearch.

Importing the package builds nothing. `faust -A streamapp worker` reads `streamapp.app`, which
is created from the environment's settings on first access (PEP 562); everything else builds
its own with `streamapp.factory.create_app(settings)`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streamapp.factory import StreamApp

    app: StreamApp

__version__ = "0.1.0"
__all__ = ["app"]

_app: StreamApp | None = None


def __getattr__(name: str) -> Any:
    # Faust's `-A streamapp` resolves the module, then its `app` attribute.
    global _app
    if name == "app":
        if _app is None:
            from streamapp.eventloop import use_default_loop
            from streamapp.factory import create_app
            from streamapp.settings import get_settings

            # Before the worker makes its loop (it does once it has the app).
            use_default_loop()
            _app = create_app(get_settings())
        return _app
    raise AttributeError(f"module 'streamapp' has no attribute {name!r}")
