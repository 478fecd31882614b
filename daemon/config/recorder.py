"""``[recorder]``: how a node with the ``recorder`` role keeps the site's records (docs/recorder.md):
where its store is, how its MQTT session outlives it, and the key it signs enrolment and replay
requests with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sekisho.drivers.options import Option, between, strings

from .checker import Checker, optional_topic_name, topic_name


def _database(v: str) -> str | None:
    if v == "" or v.startswith(("postgresql://", "postgres://")):
        return None
    return f"{v!r} is not a PostgreSQL URL (postgresql://user@host/db); empty for SQLite in the data dir"


RECORDER = {
    "database": Option(str, "", "Where the site's records go: empty for recorder.db (SQLite) in the data dir, or "
                       "postgresql://… for a PostgreSQL that several recorders may share.", _database),
    "session_expiry_s": Option(int, 7 * 86400, "How long the broker keeps the recorder's session, and queues the "
                               "site's events for it, while the recorder is away (MQTT 5 session expiry).",
                               between(60, 90 * 86400)),
    "share_group": Option(str, "", "Name of an MQTT 5 shared subscription ($share/<group>/…) so that several "
                          "recorders writing into one PostgreSQL split the events between them; empty: this "
                          "recorder takes every event.", optional_topic_name),
    "signing_key": Option(str, "", "The Ed25519 private key (sekisho cmd keygen) the recorder signs enrolment "
                          "snapshots, deltas and replay requests with; relative to this config file's folder. "
                          "Empty: enrolment is not published and gaps raise an alarm but are not replayed."),
    "key_name": Option(str, "recorder", "The name nodes know the signing key by: their [commands.keys.<name>].",
                       optional_topic_name),
    "gap_grace_s": Option(float, 5.0, "How long a missing seq may stay missing before it is a sequence_gap alarm "
                          "and a replay request: QoS 1 and a second recorder may deliver it late.", between(0.5, 600)),
    "batch": Option(int, 500, "Most events stored in one transaction.", between(1, 10000)),
    "levels": Option(list, [], "The site's access levels people may be granted here (sekisho person grant, "
                     "person import) besides this node's own [levels.<name>]: what each opens is the door and desk "
                     "nodes' [levels.<name>], so a recorder without doors or desks names them here.",
                     strings(topic_name)),
}


@dataclass(frozen=True)
class RecorderConfig:
    database: str = ""
    session_expiry_s: int = 7 * 86400
    share_group: str = ""
    signing_key: Path | None = None
    key_name: str = "recorder"
    gap_grace_s: float = 5.0
    batch: int = 500
    levels: tuple[str, ...] = ()


def read_recorder(c: Checker, path: Path, raw: Any) -> RecorderConfig:
    values = c.section("recorder", c.table("recorder", raw), RECORDER)
    key = values["signing_key"]
    if key:
        key_path = (path.parent / key)
        c.readable("recorder.signing_key", str(key_path))
        values["signing_key"] = key_path
    else:
        values["signing_key"] = None
    return RecorderConfig(**{**values, "levels": tuple(dict.fromkeys(values["levels"]))})
