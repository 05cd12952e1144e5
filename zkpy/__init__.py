"""zkpy: a ZooKeeper-compatible coordination service on Twisted.

Run it with ``python -m zkpy [zoo.cfg]``; the pure protocol core lives in this
package, the reactor-facing adapter in ``zkpy.net``.
"""

__version__ = "0.1.0"
