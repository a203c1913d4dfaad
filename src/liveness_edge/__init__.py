"""liveness-edge: face presentation-attack detection from training to the edge.

The top-level folders of the repository install as subpackages of this package
(see setup.cfg ``package_dir``): ``train``, ``export``, ``runtime``, ``benchmarks``.
"""

__version__ = "0.1.0"
