"""zkpy: a ZooKeeper-compatible coordination service on Twisted.

Run it with ``python -m zkpy [zoo.cfg]``; the pure protocol core lives in this
package, the reactor-facing adapter in ``zkpy.net``. ``zkpy.accel`` decides, before
any of it is imported, whether the optional mypyc-compiled modules are used.
"""

from zkpy import accel as _accel

__version__ = "0.1.0"

_accel.install()
