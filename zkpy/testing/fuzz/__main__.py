"""``python -m zkpy.testing.fuzz``: the fuzzers from the command line.

    pure [TARGET ...] [--seed N] [--count N | --seconds S]
        the in-memory targets from a seed (all of them by default); a failure
        prints its replay command and exits 1
    atheris TARGET [--corpus DIR] [libFuzzer options, e.g. -runs=100000 -max_total_time=600]
        one target under atheris' coverage guidance (pip install atheris)
    live [--scale smoke|issue] [--seed N] [--frames N] [--connections N] [--admin N]
        real server processes over sockets (see zkpy.testing.fuzz.live)
"""

from __future__ import annotations

import argparse
import sys


def _pure(args: argparse.Namespace) -> int:
    from zkpy.testing.fuzz.registry import TARGETS, fuzz_target
    from zkpy.testing.fuzz.run import FuzzFailure

    names = args.targets or sorted(TARGETS)
    total = 0
    for name in names:
        try:
            stats = fuzz_target(name, args.seed, args.count, seconds=args.seconds)
        except FuzzFailure as e:
            print(e, file=sys.stderr)
            return 1
        total += stats.inputs
        print(f"{name}: {stats.inputs} inputs from seed {stats.seed} in {stats.seconds:.1f}s, "
              "contract held", flush=True)
    print(f"{total} inputs in all")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "atheris":
        from zkpy.testing.fuzz.atheris_main import main as atheris_main

        return atheris_main(argv[1:])
    if argv and argv[0] == "live":
        from zkpy.testing.fuzz.live import main as live_main

        return live_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m zkpy.testing.fuzz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    pure = sub.add_parser("pure", help="the in-memory targets, from a seed")
    pure.add_argument("targets", nargs="*")
    pure.add_argument("--seed", type=int, default=0)
    pure.add_argument("--count", type=int, default=2000)
    pure.add_argument("--seconds", type=float, default=None,
                      help="stop each target after this long (the count still caps it)")
    sub.add_parser("atheris", help="one target under atheris (see above)")
    sub.add_parser("live", help="real processes over sockets (see above)")
    args = parser.parse_args(argv)
    return _pure(args)


if __name__ == "__main__":
    sys.exit(main())
