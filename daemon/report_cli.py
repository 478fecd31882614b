"""What ``sekisho report`` does: gather the audit report of a local day or month from this
node's store (report.py) and write it as CSV or HTML (report_csv.py, report_html.py); or, with
``--verify``, recompute a written report's seal.

The report holds names: a file is written mode 0600 from its first byte and replaced whole
(people_cli._write_private, as the roster export); standard output only when asked for by
``--format``. The store is only read. The arguments are declared in cli.py.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .cli_site import _config, _no, _store
from .errors import DataError, NoInput, UsageError
from .people_cli import _write_private
from .site_records_cli import site_wide

if TYPE_CHECKING:
    from .report import Report

EX_DATAERR = 65


def default_lang() -> str:
    """Japanese when the environment's locale is, else English."""
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(name)
        if value:
            return "ja" if value.lower().startswith("ja") else "en"
    return "en"


def _format(args: argparse.Namespace) -> str:
    if args.format:
        return str(args.format)
    if args.output and args.output != "-":
        suffix = Path(args.output).suffix.lower()
        if suffix in (".html", ".htm"):
            return "html"
        if suffix == ".csv":
            return "csv"
        raise UsageError(f"-o {args.output}: say --format csv or --format html (the name ends in neither "
                         ".csv nor .html)")
    raise UsageError("to standard output, say --format csv or --format html (the report holds names: "
                     "-o FILE writes it mode 0600)")


def cmd_report(args: argparse.Namespace) -> int:
    if args.verify:
        return _verify(args.verify)
    from .report import Layout, gather, period
    from .report_csv import render as render_csv
    from .report_html import render as render_html
    if not args.month and not args.day:
        raise UsageError("name the period: --month YYYY-MM or --day YYYY-MM-DD")
    fmt = _format(args)
    if args.section and fmt != "csv":
        raise UsageError("--section is for --format csv (the HTML page has every section)")
    cfg = _config(args)
    if site_wide(cfg, args):
        report = _site_report(args)
    else:
        cfg, database, key = _store(args, create=False)
        if args.area and args.area not in cfg.areas:
            raise _no("area", args.area, cfg.areas, str(cfg.path))
        p = period(month=args.month, day=args.day, timezone=cfg.site.timezone)
        report = gather(database, cfg.site.node, cfg.site.id, p, Layout.of(cfg), area=args.area or "",
                        pseudonym=key.pseudonym)
    p = report.period
    to_file = bool(args.output) and args.output != "-"
    if fmt == "csv":
        text = render_csv(report, args.section)
        from .report_csv import check
        seal = check(text)[0]
        data = (("\ufeff" if to_file else "") + text).encode()
    else:
        text = render_html(report, args.lang or cfg.site.language or default_lang())
        from .report_html import check as check_html
        seal = check_html(text)[0]
        data = text.encode()
    chain = "audit chain OK" if report.integrity.ok else f"audit chain BROKEN: {report.integrity.problem}"
    if to_file:
        _write_private(Path(args.output), data)
        print(f"report {p.label} written to {args.output} (mode 0600: it holds names); {chain}", file=sys.stderr)
    else:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
    print(f"sha256 {seal}", file=sys.stderr)
    if not to_file and not report.integrity.ok:
        print(chain, file=sys.stderr)
    return 0


def _site_report(args: argparse.Namespace) -> Report:
    """The whole site's report, from the recorder's store (site_report.py)."""
    from .report import period
    from .site_records_cli import recorder
    from .site_report import gather_site
    cfg, database, key, store, _ = recorder(args)
    with store:
        if args.area:
            known = sorted(set(cfg.areas) | set(store.whereabouts().areas()))
            if args.area not in known:
                raise _no("area", args.area, known, "the site's records")
        p = period(month=args.month, day=args.day, timezone=cfg.site.timezone)
        return gather_site(store, database, key, cfg, p, area=args.area or "")


def _verify(path: str) -> int:
    from .report_csv import check as check_csv
    from .report_html import check as check_html
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise NoInput(f"{path}: no such file") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text, so not a report as sekisho writes it") from None
    text = text.removeprefix("\ufeff")
    try:
        stated, actual = (check_html if text.lstrip().startswith("<!DOCTYPE html>") else check_csv)(text)
    except ValueError as exc:
        raise DataError(f"{path}: not a sealed report: {exc}") from None
    if stated != actual:
        print(f"{path}: ALTERED: it states sha256 {stated}, its content hashes to {actual}", file=sys.stderr)
        return EX_DATAERR
    print(f"{path}: intact, sha256 {actual}")
    return 0
