"""The cellcounter desktop app (napari/Qt). The only package that imports Qt and napari."""

import sys

# Triton (pulled in by torchvision.ops through torch._dynamo) carries its own LLVM, and loading it after
# Mesa's llvmpipe has set up software OpenGL (VMs, remote desktops, Xvfb) crashes the process with a
# segmentation fault, e.g. when a stock napari opens our plugin's widgets. The app never compiles GPU
# kernels, so torch is told Triton is absent (``import triton`` then raises ImportError, which torch handles).
if "triton" not in sys.modules:
    sys.modules["triton"] = None  # type: ignore[assignment]
