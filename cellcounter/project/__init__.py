"""The crash-safe project store (SQLite): images, annotations, history, review status, model versions."""

from cellcounter.errors import ProjectError
from cellcounter.project.store import SCHEMA_VERSION, ImageRecord, Project

__all__ = ["Project", "ProjectError", "ImageRecord", "SCHEMA_VERSION"]
