"""The keys of the app, grouped by what one works on, as a sheet (F1) and as the hint in napari's status bar."""

from __future__ import annotations

from html import escape

from qtpy.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout

from cellcounter.tasks import TASKS

SHORTCUTS: dict[str, list[tuple[str, str]]] = {
    "Every image": [
        ("Ctrl-Enter", "run the model on this image"),
        ("Shift-R", "mark the image reviewed (model objects below the score slider are dropped: what you saw)"),
        ("Page Down / Page Up", "next / previous image in the review queue"),
        ("Ctrl-Z / Ctrl-Shift-Z (Ctrl-Y)", "undo / redo: boxes, masks, marks, grade and review status"),
        ("drag and drop", "an image, folder or project onto the window opens it"),
        ("F1", "this sheet (also Cellcounter > Keyboard shortcuts)"),
    ],
    "Boxes and counts (blood cells)": [
        ("1 ... 9", "class of the selected boxes, of new boxes and of new marks ({classes})"),
        ("R / S / Delete", "draw a box / select boxes / delete the selected ones (boxes layer)"),
        ("Shift-C", "click-count mode on/off: a click adds a mark of the current class, a click on a mark "
                    "removes it"),
    ],
    "Masks (nuclei, leaves)": [
        ("Shift-N", "new-instance brush: paint a new instance"),
        ("Shift-D", "delete the selected instance"),
        ("Shift-M", "merge the instance under the picker into the selected one"),
        ("Shift-X", "split the selected instance along a drawn line"),
    ],
    "Grades (fundus photographs)": [
        ("Grade panel", "the model's grade with its probabilities; choose another to override it"),
    ],
}


def sheet_html(task: str = "blood") -> str:
    """The sheet as HTML, the class keys named for ``task``."""
    names = TASKS[task].class_names if task in TASKS and TASKS[task].kind != "grade" else TASKS["blood"].class_names
    classes = ", ".join(f"{i + 1} {n}" for i, n in enumerate(names[:9]))
    parts = []
    for group, rows in SHORTCUTS.items():
        body = "".join(f"<tr><td style='padding-right:16px'><b>{escape(k)}</b></td>"
                       f"<td>{escape(d.format(classes=classes))}</td></tr>" for k, d in rows)
        parts.append(f"<h3>{escape(group)}</h3><table>{body}</table>")
    return "".join(parts)


def layer_hint(kind: str, task: str) -> str:
    """What napari's status bar says for our boxes and points layers (napari's own hint names keys 2 and 3 for
    its tools, which the app gives to classes on these layers)."""
    names = TASKS[task].class_names if task in TASKS else ()
    classes = ", ".join(f"{i + 1} {n}" for i, n in enumerate(names[:9]))
    if kind == "boxes":
        return f"R draw a box, S select, Delete remove; keys {classes} set the class; F1 all shortcuts"
    if kind == "regions":
        return ("P draw a polygon region, R a rectangle one, S select, Delete remove: objects centred in a region are "
                "counted in it (Counts panel, counts CSV), and Predict then works inside the regions only")
    return f"Shift-C click-count (a click adds a mark, a click on a mark removes it); keys {classes} set the class; " \
           "F1 all shortcuts"


class ShortcutsDialog(QDialog):
    def __init__(self, parent=None, task: str = "blood") -> None:
        super().__init__(parent)
        self.setWindowTitle("cellcounter: keyboard shortcuts")
        self.text = QTextBrowser()
        self.text.setHtml(sheet_html(task))
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        layout.addWidget(buttons)
        self.resize(640, 520)
