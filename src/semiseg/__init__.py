"""semiseg: semi-supervised medical image segmentation in one engine.

Importing the package has no side effects and imports no heavy module; the
sub-packages (``semiseg.data``, ``semiseg.networks``, ``semiseg.methods``,
``semiseg.engine``, ``semiseg.evaluation``) are imported on use.
"""

__version__ = "0.1.0"
