"""liveness-edge: face presentation-attack detection from training to the edge.

The top-level folders of the repository install as subpackages of this package
(see setup.cfg ``package_dir``): ``train``, ``export``, ``runtime``, ``benchmarks``. This file lives in
``src/liveness_edge/``, not in a root ``liveness_edge/`` folder, which would stand in for an installed
(non-editable) package whenever Python runs from the checkout root.
"""

__version__ = "0.1.0"
