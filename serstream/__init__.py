"""serstream: real-time speech emotion recognition as a daemon.

The package layout follows the data path:
``capture`` / ``replay`` -> ``ring`` -> ``vad`` -> ``features`` -> ``model`` -> ``publish``,
wired by ``pipeline``; ``cli``, ``client`` and ``render`` sit at the edges.
"""

__version__ = "0.1.0"
