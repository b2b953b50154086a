"""The cellcounter desktop app (napari/Qt). The only package that imports Qt and napari."""
