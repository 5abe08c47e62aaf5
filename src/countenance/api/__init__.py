"""The REST API under ``/v1``: routes, authentication, the server's state and the operations
every write of the API and the browser UI goes through (``service``). The app that serves it
with the UI is built by :func:`countenance.server.create_app`.
"""
