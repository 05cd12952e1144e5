"""Scale with the size of the work: what is shared by the scale parts, and
the loop that runs them.

Contract: each scale part (:mod:`bench.scale_tree`: memory, restart, snap;
:mod:`bench.scale_clients`: watches, sessions) is a function that measures
one kind once, on servers it starts and stops itself, and returns a record
(``failed`` set when anything went wrong).  :func:`run` calls it for every
kind in every round (A-B-A-B), prints the trace as it goes, then one table
per part: the median over rounds of each figure per kind and, for each
compared pair, the round-by-round ratios' min/median/max.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from bench import stats
from bench.measure import Log, fmt, ratio_pairs
from bench.targets import Kind, Target, server_settings

# A part: (kind, args, log, context) -> record.  Its table columns:
# (record key, header, format, compared: False for a figure that is an input).
Part = Callable[..., dict]
Column = tuple[str, str, str, bool]


def srvr_number(server, field: str) -> int | None:
    """A number from ``srvr`` (e.g. ``Node count``), or ``None``."""
    try:
        text = server.four_letter("srvr", timeout=10.0)
    except OSError:
        return None
    m = re.search(r"%s: (\d+)" % re.escape(field), text)
    return int(m.group(1)) if m else None


def watch_total(server) -> int | None:
    """``Total watches`` from ``wchs``."""
    try:
        text = server.four_letter("wchs", timeout=30.0)
    except OSError:
        return None
    m = re.search(r"Total watches:\s*(\d+)", text)
    return int(m.group(1)) if m else None


def make_target(kind: Kind, size: int, args, ctx: dict, workdir: Path | None = None) -> Target:
    return Target(kind, size, server_settings(args.scale_force_sync), heap=args.scale_heap,
                  source_root=ctx["checkouts"].get(kind.label), workdir=workdir)


def finish(target: Target, rec: dict, log: Log, label: str, keep: bool = False) -> None:
    """Stop *target*; keep its logs (and say where) when the record failed or
    *keep* (``--keep-logs``) asks for them."""
    problems = target.log_problems()
    if problems:
        rec["log_problems"] = problems
    failed = bool(rec.get("failed"))
    if failed:
        log("  [%s] FAILED: %s; logs kept in %s; tail:" % (label, rec["failed"], target.workdir))
        for ln in target.log_tails(15).splitlines():
            log("    | " + ln)
    elif keep:
        log("  [%s] logs kept in %s" % (label, target.workdir))
    target.cleanup(failed=failed or keep)


def run(name: str, part: Part, kinds: list[Kind], args, log: Log, ctx: dict,
        columns: list[Column], caption: str) -> dict:
    """Every kind, every round, then the table."""
    labels = [k.label for k in kinds]
    records = []
    for rnd in range(1, args.scale_rounds + 1):
        for kind in kinds:
            log("  [%s] %s, round %d" % (kind.label, name, rnd))
            try:
                rec = part(kind, args, log, ctx)
            except Exception as exc:  # a part that raises is a failed record, not a crash
                rec = {"failed": "%s: %s" % (type(exc).__name__, exc)}
                log("  [%s] %s FAILED: %s" % (kind.label, name, rec["failed"]))
            rec.update(server=kind.label, round=rnd)
            records.append(rec)
    summary = table(name, caption, records, labels, columns, args, log)
    failures = ["%s %s round %d: %s" % (r["server"], name, r["round"], r["failed"])
                for r in records if r.get("failed")]
    return {"records": records, "summary": summary, "failures": failures}


def table(name: str, caption: str, records: list[dict], labels: list[str],
          columns: list[Column], args, log: Log) -> dict:
    summary: dict = {}
    log("")
    log("== scale: %s (%s; median over %d round(s)) ==" % (name, caption, args.scale_rounds))
    lw = max([16] + [len(x) for x in labels])
    widths = [max(10, len(c[1])) for c in columns]
    head = "%-*s " % (lw, "server") + " ".join(c[1].rjust(w) for c, w in
                                               zip(columns, widths, strict=True))
    log(head)
    log("-" * len(head))
    for lab in labels:
        ok = [r for r in records if r["server"] == lab and not r.get("failed")]
        summary[lab] = {key: stats.median(r.get(key) for r in ok) for key, *_ in columns}
        summary[lab]["failed_rounds"] = sum(1 for r in records
                                            if r["server"] == lab and r.get("failed"))
        log("%-*s " % (lw, lab) + " ".join(fmt(summary[lab][c[0]], c[2], w) for c, w
                                           in zip(columns, widths, strict=True))
            + ("  (%d round(s) FAILED)" % summary[lab]["failed_rounds"]
               if summary[lab]["failed_rounds"] else ""))
    for a, b in ratio_pairs(labels, args.ratios):
        parts = []
        for key, head_, _, compared in columns:
            if not compared:
                continue
            ra = [r.get(key) if not r.get("failed") else None for r in records if r["server"] == a]
            rb = [r.get(key) if not r.get("failed") else None for r in records if r["server"] == b]
            sp = stats.spread(stats.pairwise_ratios(ra, rb))
            summary.setdefault("%s/%s" % (a, b), {})[key] = sp
            if sp:
                parts.append("%s %s" % (head_.strip(), sp.text()))
        log("ratio %s/%s: %s" % (a, b, "; ".join(parts) or "-"))
    return summary
