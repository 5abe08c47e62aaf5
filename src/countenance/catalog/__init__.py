"""The catalog: sources, photos and faces (with embeddings) in SQL, the source of truth.

SQLite (WAL) by default, PostgreSQL by URL, through the same SQLAlchemy Core code.
"""

from countenance.catalog.sql import FaceRecord, PhotoRecord, SqlCatalog

__all__ = ["FaceRecord", "PhotoRecord", "SqlCatalog"]
