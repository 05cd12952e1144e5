"""Fuzzing every way into a zkpy server (issue 17).

The contract every harness here checks: a mutated input closes that
connection (or fails that load with a clear message, or answers that HTTP
request with an error) and nothing else; the server never crashes, hangs,
or grows memory without bound.

- In memory, with coverage guidance or without (``run``, ``registry``): the
  client port (``client``), the quorum and election ports through the real
  adapters into a deterministic ensemble (``quorum``), the ports' pure
  decoders (``parsers``), snapshots, the SNAP stream, txn logs, epoch and
  dynamic config files (``files``), the AdminServer's commands and bodies
  (``admin``). ``python -m zkpy.testing.fuzz pure`` runs them from a seed;
  ``python -m zkpy.testing.fuzz atheris TARGET`` under libFuzzer's guidance.
- Whole processes over sockets (``live``): a real server and a real
  3-member ensemble under a flood of hostile client, quorum, election and
  AdminServer connections, then every member must still serve with its
  memory bounded. ``python -m zkpy.testing.fuzz live``.

Hostile bytes come from ``mutate.Mutator``, seeded: a failure replays.
"""
