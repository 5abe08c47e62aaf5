"""Sources: where photos come from. Each yields items with provenance; none touches the catalog."""

from countenance.sources.folder import FileItem, FolderSource

__all__ = ["FileItem", "FolderSource"]
