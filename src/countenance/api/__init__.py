"""The HTTP server: REST API, browser UI, health and metrics, over one Engine.

Example::

    from countenance.api import create_app
    app = create_app(Settings.from_env(data_dir="countenance-data"))
"""

from countenance.api.app import create_app

__all__ = ["create_app"]
