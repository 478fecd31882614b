"""The audit report as one self-contained HTML page, in Japanese or English, for the screen and
for paper (A4, a page per section, table headers repeated on each page).

Nothing outside the file: the CSS is inline, the two charts (granted entries per day, denials
by reason) are SVG drawn here, there is no script and no URL to fetch. Every value from the
store (names, reasons, notes, device names) goes through ``html.escape``.

The seal: ``<footer id="seal">`` carries the SHA-256 of every byte of the file before that tag
(UTF-8); ``check`` recomputes it (``sekisho report --verify``). Data cannot forge the tag: every
``<`` from data is escaped.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from html import escape
from typing import Any

from .report import NOTES, Report

SEAL = '<footer id="seal">'

T: dict[str, dict[str, str]] = {
    "title": {"en": "Access and device report", "ja": "入退室・端末管理報告書"},
    "site": {"en": "Site", "ja": "拠点"},
    "node": {"en": "Node", "ja": "ノード"},
    "period": {"en": "Period", "ja": "対象期間"},
    "timezone": {"en": "Time zone", "ja": "タイムゾーン"},
    "area": {"en": "Area", "ja": "エリア"},
    "all_areas": {"en": "all areas", "ja": "全エリア"},
    "generated": {"en": "Generated", "ja": "作成日時"},
    "integrity": {"en": "Audit log verification", "ja": "監査ログの検証"},
    "chain_ok": {"en": "OK: the hash chain holds ({rows} rows)", "ja": "正常：ハッシュチェーンは完全です（{rows} 行）"},
    "chain_broken": {"en": "BROKEN: {problem} ({rows} rows before it are intact)",
                     "ja": "破損：{problem}（それ以前の {rows} 行は完全）"},
    "summary": {"en": "Summary", "ja": "概要"},
    "presence": {"en": "Entries and exits by area and day", "ja": "エリア別・日別の入退室"},
    "doors": {"en": "Doors: entries, exits and denials", "ja": "扉別：入室・退室・拒否"},
    "desks": {"en": "Desks: sessions", "ja": "座席：利用記録"},
    "desk_events": {"en": "Desks: lock failures and other problems", "ja": "座席：ロック失敗などの異常"},
    "usb": {"en": "USB: blocks and exceptions", "ja": "USB：遮断と例外許可"},
    "printing": {"en": "Printing: jobs per operator", "ja": "印刷：利用者別のジョブ"},
    "print_supervisors": {"en": "Printing: jobs released or cancelled per supervisor",
                          "ja": "印刷：承認者別の許可・取消"},
    "held": {"en": "Held", "ja": "保留"},
    "released": {"en": "Released", "ja": "許可"},
    "cancelled": {"en": "Cancelled", "ja": "取消"},
    "expired": {"en": "Expired", "ja": "期限切れ"},
    "withdrawn": {"en": "Withdrawn at CUPS", "ja": "利用者が取消"},
    "printed": {"en": "Printed", "ja": "印刷済み"},
    "pages": {"en": "Pages printed", "ja": "印刷枚数"},
    "no_person": {"en": "(CUPS user who is no person)", "ja": "（登録外の CUPS 利用者）"},
    "alarms": {"en": "Alarms", "ja": "警報"},
    "changes": {"en": "Changes to people, cards and levels", "ja": "人・カード・権限の変更"},
    "not_recorded": {"en": "What this report cannot show", "ja": "この報告書に含まれないもの"},
    "chart_entries": {"en": "Entries per day", "ja": "日別入室数"},
    "chart_denials": {"en": "Denials by reason", "ja": "拒否理由別件数"},
    "none": {"en": "None in this period.", "ja": "この期間にはありません。"},
    "date": {"en": "Date", "ja": "日付"},
    "time": {"en": "Time", "ja": "時刻"},
    "door": {"en": "Door", "ja": "扉"},
    "reader": {"en": "Reader", "ja": "読取機"},
    "desk": {"en": "Desk", "ja": "座席"},
    "direction": {"en": "Direction", "ja": "方向"},
    "result": {"en": "Result", "ja": "結果"},
    "reason": {"en": "Reason", "ja": "理由"},
    "count": {"en": "Count", "ja": "件数"},
    "person": {"en": "Person ID", "ja": "個人ID"},
    "name": {"en": "Name", "ja": "氏名"},
    "start": {"en": "Start", "ja": "開始"},
    "end": {"en": "End", "ja": "終了"},
    "ended": {"en": "Ended by", "ja": "終了理由"},
    "event": {"en": "Event", "ja": "事象"},
    "action": {"en": "Action", "ja": "操作"},
    "device": {"en": "Device", "ja": "機器"},
    "approved_by": {"en": "Approved by", "ja": "承認者"},
    "exception": {"en": "Exception", "ja": "例外"},
    "alarm": {"en": "Alarm", "ja": "警報"},
    "kind": {"en": "Kind", "ja": "種別"},
    "source": {"en": "Source", "ja": "発生元"},
    "severity": {"en": "Severity", "ja": "重要度"},
    "raised": {"en": "Raised", "ja": "発生"},
    "cleared": {"en": "Cleared", "ja": "解消"},
    "acked_by": {"en": "Acknowledged by", "ja": "確認者"},
    "acked_at": {"en": "Acknowledged at", "ja": "確認日時"},
    "note": {"en": "Note", "ja": "備考"},
    "who": {"en": "By", "ja": "実施者"},
    "what": {"en": "Details", "ja": "内容"},
    "row": {"en": "Audit row", "ja": "監査行"},
    "entered": {"en": "entered", "ja": "入室"},
    "left": {"en": "left", "ja": "退室"},
    "before": {"en": "before the period", "ja": "期間開始前"},
    "running": {"en": "still running", "ja": "継続中"},
    "usb_allowed": {"en": "USB devices allowed by the rules (not listed): {n}",
                    "ja": "ルールにより許可された USB 機器（一覧には含めず）：{n} 件"},
    "seal": {"en": "SHA-256 of this file up to this footer", "ja": "このフッターより前のファイル内容の SHA-256"},
    "seal_how": {"en": "Recompute with: sekisho report --verify FILE", "ja": "検証方法：sekisho report --verify FILE"},
    "personal": {"en": "Contains personal data: keep and dispose of it as the data-protection rules say.",
                 "ja": "個人情報を含みます。社内規程に従って保管・廃棄してください。"},
}

NOTES_JA = {
    "names_today": "氏名は現在の登録内容です。過去の氏名は記録されていません。",
    "cards_hashed": "カードは鍵付きハッシュの先頭 12 桁でのみ表示します。カード UID は保存されていません。",
    "sessions_before": "期間開始前に始まった座席利用は開始時刻なし、"
                       "期間終了時に継続中のものは終了時刻なしで表示します。",
    "usb_allowed_counted": "ルールで許可された USB 機器は件数のみを示し、個別には一覧しません。",
    "print_fates": "印刷ジョブは期間内に起きたことで数えます。"
                   "期間前に保留され期間内に許可されたジョブは、保留ではなく許可に数えます。"
                   "印刷枚数はプリンターが報告した枚数です。",
    "one_node": "この報告書は 1 台のノードの記録のみを読みます。他ノードの扉・座席・USB はそのノードの記録にあります。",
    "node_wide": "USB・印刷・警報・変更はエリア指定にかかわらず、このノード全体のものです。",
    "exit_button": "退出ボタンはカードなしで開くため、その退室には個人がありません。",
    "alarm_before": "期間開始前に発生した警報で、期間内にはその後の段階のみがあるものは、発生時刻なしで表示します。",
    "site_wide": "この報告書はレコーダーの記録を読みます。サイトの全ノードが発行し、レコーダーが受信したイベントです。"
                 "ノード欄に受信したノードを示します。",
    "site_area": "USB・印刷・警報・変更はエリア指定にかかわらず、サイト全体のものです。",
    "site_names": "氏名は登録を行うレコーダーのノードによります。そのノードが知らない人は仮名で示します。",
    "site_areas": "扉の行き先のエリアはイベントが示すエリアによります。"
                  "その項目のない旧版ノードの扉は扉別の件数のみで、入退室には現れません。",
    "site_changes": "人・カード・権限の変更はレコーダーのノード（登録を行う所）の監査ログによります。"
                    "監査チェーンの結果もそのノードのものです。",
    "gaps_open": "一部のイベントがまだレコーダーに届いていません（ノードの連番の欠落）。それらはここにありません。",
}

CSS = """
body { font-family: "Noto Sans CJK JP", "Hiragino Sans", "Yu Gothic", "Meiryo", sans-serif; font-size: 10.5pt;
       color: #111; margin: 2em; }
h1 { font-size: 18pt; margin-bottom: .2em; }
h2 { font-size: 13pt; border-bottom: 2px solid #333; margin-top: 1.6em; }
h3 { font-size: 11pt; margin: 1em 0 .3em; }
table { border-collapse: collapse; width: 100%; margin: .4em 0 1em; }
th, td { border: 1px solid #999; padding: 2px 5px; text-align: left; vertical-align: top; }
th { background: #e8e8e8; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.t { white-space: nowrap; }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: 2px 1em; }
dl.meta dt { font-weight: bold; }
dl.meta dd { margin: 0; }
.ok { color: #064; font-weight: bold; }
.broken { color: #b00; font-weight: bold; }
.charts { display: flex; flex-wrap: wrap; gap: 2em; }
svg text { font-size: 9px; font-family: inherit; }
footer { margin-top: 2em; border-top: 1px solid #333; padding-top: .4em; font-size: 9pt; word-break: break-all; }
@page { size: A4; margin: 15mm 12mm; }
@media print {
  body { margin: 0; font-size: 9pt; }
  section { break-before: page; }
  section.first { break-before: auto; }
  thead { display: table-header-group; }
  tr, .charts svg { break-inside: avoid; }
}
"""


def _e(v: Any) -> str:
    return escape("" if v is None else str(v), quote=True)


def _t(t: dt.datetime | None, empty: str = "") -> str:
    return f'<span class="t">{_e(t.strftime("%Y-%m-%d %H:%M:%S"))}</span>' if t is not None else _e(empty)


def _table(headers: list[str], rows: list[list[str]], numeric: frozenset[int] = frozenset(), empty: str = "") -> str:
    """A table of already escaped cells."""
    if not rows:
        return f"<p>{_e(empty)}</p>\n"
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(r)) + "</tr>\n" for r in rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>\n"


def _bars(title: str, items: list[tuple[str, int]], vertical: bool) -> str:
    """A bar chart as inline SVG: columns per day (vertical) or rows per reason."""
    peak = max((n for _, n in items), default=0) or 1
    if vertical:
        w, h, left, bottom = max(300, 14 * len(items) + 40), 180, 30, 30
        step = (w - left - 10) / max(1, len(items))
        parts = [f'<line x1="{left}" y1="{h - bottom}" x2="{w - 10}" y2="{h - bottom}" stroke="#333"/>',
                 f'<text x="{left - 4}" y="{14}" text-anchor="end">{peak}</text>',
                 f'<text x="{left - 4}" y="{h - bottom}" text-anchor="end">0</text>']
        for i, (label, n) in enumerate(items):
            bh = (h - bottom - 16) * n / peak
            x = left + i * step + 1
            parts.append(f'<rect x="{x:.1f}" y="{h - bottom - bh:.1f}" width="{max(1.0, step - 2):.1f}" '
                         f'height="{bh:.1f}" fill="#36c"><title>{_e(label)}: {n}</title></rect>')
            if len(items) <= 7 or i % 5 == 0 or i == len(items) - 1:
                parts.append(f'<text x="{x + step / 2:.1f}" y="{h - bottom + 12}" text-anchor="middle">'
                             f'{_e(label[-2:])}</text>')
    else:
        w, left = 420, 150
        h = max(40, 18 * len(items) + 10)
        parts = []
        for i, (label, n) in enumerate(items):
            bw = (w - left - 40) * n / peak
            y = 5 + i * 18
            parts.append(f'<text x="{left - 4}" y="{y + 11}" text-anchor="end">{_e(label)}</text>')
            parts.append(f'<rect x="{left}" y="{y}" width="{bw:.1f}" height="14" fill="#c33">'
                         f'<title>{_e(label)}: {n}</title></rect>')
            parts.append(f'<text x="{left + bw + 4:.1f}" y="{y + 11}">{n}</text>')
    return (f'<figure><figcaption>{_e(title)}</figcaption>\n<svg width="{w}" '
            f'height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="{_e(title)}">\n' + "\n".join(parts) +
            "\n</svg></figure>\n")


def body(r: Report, lang: str) -> str:
    """The page up to its seal."""
    def t(key: str, **kw: Any) -> str:
        return T[key][lang].format(**kw)

    out = [f'<!DOCTYPE html>\n<html lang="{lang}">\n<head>\n<meta charset="utf-8">\n'
           f"<title>{_e(t('title'))} {_e(r.site)} {_e(r.period.label)}</title>\n"
           f"<style>{CSS}</style>\n</head>\n<body>\n"]
    out.append(f'<section class="first">\n<h1>{_e(t("title"))}</h1>\n<p>{_e(t("personal"))}</p>\n<dl class="meta">\n')
    chain = (f'<span class="ok">{_e(t("chain_ok", rows=r.integrity.rows))}</span>' if r.integrity.ok else
             f'<span class="broken">{_e(t("chain_broken", problem=r.integrity.problem, rows=r.integrity.rows))}</span>')
    until = r.period.last + dt.timedelta(days=1)
    for key, value in (("site", _e(r.site)), ("node", _e(r.node)),
                       ("period", _e(f"{r.period.label} ({r.period.first} 00:00 – {until} 00:00)")),
                       ("timezone", _e(r.period.timezone)), ("area", _e(r.area or t("all_areas"))),
                       ("generated", _e(r.generated.strftime("%Y-%m-%d %H:%M:%S"))), ("integrity", chain)):
        out.append(f"<dt>{_e(t(key))}</dt><dd>{value}</dd>\n")
    out.append("</dl>\n")
    out.append(f'<h2>{_e(t("summary"))}</h2>\n<div class="charts">\n')
    out.append(_bars(t("chart_entries"), [(d.isoformat(), n) for d, n in r.entries_per_day()], vertical=True))
    out.append(_bars(t("chart_denials"), r.denials_by_reason(), vertical=False))
    out.append(f"</div>\n<p>{_e(t('usb_allowed', n=r.usb_allowed))}</p>\n")
    notes = NOTES if lang == "en" else NOTES_JA
    out.append(f'<h3>{_e(t("not_recorded"))}</h3>\n<ul>\n' + "".join(f"<li>{_e(notes[c])}</li>\n" for c in r.notes)
               + "</ul>\n</section>\n")
    none = t("none")

    out.append(f'<section>\n<h2>{_e(t("presence"))}</h2>\n')
    by_area_day: dict[tuple[str, dt.date], list[list[str]]] = {}
    for m in r.movements:
        by_area_day.setdefault((m.area, m.at.date()), []).append(
            [_e(m.at.strftime("%H:%M:%S")), _e(t("entered") if m.entered else t("left")), _e(m.name),
             _e(m.person_id), _e(m.door), _e(m.reader)])
    if not by_area_day:
        out.append(f"<p>{_e(none)}</p>\n")
    for (area, day), rows in by_area_day.items():
        came = sum(1 for m in r.movements if m.area == area and m.at.date() == day and m.entered)
        out.append(f"<h3>{_e(area)} — {_e(day.isoformat())} "
                   f"({_e(t('entered'))} {came}, {_e(t('left'))} {len(rows) - came})</h3>\n")
        out.append(_table([t("time"), t("event"), t("name"), t("person"), t("door"), t("reader")], rows))
    out.append("</section>\n")

    out.append(f'<section>\n<h2>{_e(t("doors"))}</h2>\n')
    out.append(_table([t("door"), t("direction"), t("result"), t("reason"), t("count")],
                      [[_e(c.door), _e(c.direction), _e(c.result), _e(c.reason), _e(c.count)] for c in r.doors],
                      frozenset({4}), none))
    out.append("</section>\n")

    out.append(f'<section>\n<h2>{_e(t("desks"))}</h2>\n')
    out.append(_table([t("desk"), t("area"), t("name"), t("person"), t("start"), t("end"), t("ended")],
                      [[_e(s.desk), _e(s.area), _e(s.name), _e(s.person_id), _t(s.start, t("before")),
                        _t(s.end, t("running")), _e(s.ended)] for s in r.desk_sessions], empty=none))
    out.append(f'<h2>{_e(t("desk_events"))}</h2>\n')
    out.append(_table([t("date"), t("desk"), t("event"), t("reason"), t("name"), t("person")],
                      [[_t(d.at), _e(d.desk), _e(d.kind), _e(d.reason), _e(d.name), _e(d.person_id)]
                       for d in r.desk_events], empty=none))
    out.append("</section>\n")

    out.append(f'<section>\n<h2>{_e(t("usb"))}</h2>\n')
    out.append(_table([t("date"), t("action"), t("device"), t("reason"), t("approved_by"), t("name"),
                       t("exception")],
                      [[_t(u.at), _e(u.action), _e(u.device), _e(u.reason),
                        _e(u.approved_by) + (f" ({_e(u.approver_id)})" if u.approver_id else ""),
                        _e(u.approver_name), _e(u.exception or u.rule)] for u in r.usb], empty=none))
    out.append("</section>\n")

    out.append(f'<section>\n<h2>{_e(t("printing"))}</h2>\n')
    out.append(_table([t("name"), t("person"), t("held"), t("released"), t("cancelled"), t("expired"), t("withdrawn"),
                       t("printed"), t("pages")],
                      [[_e(o.name if o.person_id else t("no_person")), _e(o.person_id), _e(o.held), _e(o.released),
                        _e(o.cancelled), _e(o.expired), _e(o.withdrawn), _e(o.printed), _e(o.pages)]
                       for o in r.print_operators], frozenset(range(2, 9)), none))
    out.append(f'<h2>{_e(t("print_supervisors"))}</h2>\n')
    out.append(_table([t("who"), t("name"), t("person"), t("released"), t("cancelled")],
                      [[_e(su.actor), _e(su.name), _e(su.person_id), _e(su.released), _e(su.cancelled)]
                       for su in r.print_supervisors], frozenset({3, 4}), none))
    out.append("</section>\n")

    out.append(f'<section>\n<h2>{_e(t("alarms"))}</h2>\n')
    out.append(_table([t("alarm"), t("kind"), t("source"), t("severity"), t("raised"), t("cleared"), t("acked_by"),
                       t("acked_at"), t("note")],
                      [[_e(a.id), _e(a.kind), _e(a.source), _e(a.severity), _t(a.raised, t("before")),
                        _t(a.cleared), _e(a.acked_by), _t(a.acked_at), _e(a.note)] for a in r.alarms],
                      empty=none))
    out.append("</section>\n")

    out.append(f'<section>\n<h2>{_e(t("changes"))}</h2>\n')
    out.append(_table([t("date"), t("action"), t("who"), t("name"), t("person"), t("what"), t("row")],
                      [[_t(c.at), _e(c.action), _e(c.actor), _e(c.name), _e(c.person_id), _e(c.detail),
                        _e(c.n)] for c in r.changes], frozenset({6}), none))
    out.append("</section>\n")
    return "".join(out)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def footer(lang: str, sha256: str) -> str:
    """The seal and the end of the page: the only bytes after what the digest covers."""
    return (f'{SEAL}\n<p>{_e(T["seal"][lang])}: <code id="sha256">{sha256}</code></p>\n'
            f'<p>{_e(T["seal_how"][lang])}</p>\n</footer>\n</body>\n</html>\n')


def render(r: Report, lang: str) -> str:
    text = body(r, lang)
    return text + footer(lang, digest(text))


def check(text: str) -> tuple[str, str]:
    """(the digest the page states, the digest of its content up to the seal). Anything after
    the seal but the footer as ``render`` writes it is refused: a browser would show it."""
    head, sep, tail = text.partition(SEAL)
    start = tail.find('<code id="sha256">')
    if not sep or start < 0:
        raise ValueError(f"it has no {SEAL} with a digest")
    stated = tail[start + len('<code id="sha256">'):].split("<", 1)[0]
    if tail not in {footer(lang, stated)[len(SEAL):] for lang in ("ja", "en")}:
        raise ValueError("something follows or changed in its footer, where the digest does not reach")
    return stated, digest(head)
