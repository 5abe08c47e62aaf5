"""Face detection, alignment, embedding and quality on the default dlib models.

Nothing is loaded at import: :func:`default_pipeline` loads the models when called.
"""
