"""Dock widgets of the cellcounter window; thin views over :class:`app.controller.LayerController`."""
