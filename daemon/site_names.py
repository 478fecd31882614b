"""Who a pseudonym on the bus is, at the recorder node: the bus carries people only as
``subject`` (the site key's HMAC of the person id, docs/mqtt.md; or the name itself with
``publish_names``), and names never leave the node where enrolment is done. The recorder node
holds the people, so it alone can map a subject back to a person and a name.

A subject nobody here matches (a person deleted since, a node enrolled elsewhere, another
site key) stands for itself: it is shown as the pseudonym, in place of both the person id and
the name, never dropped, so that a report still counts that person's passages.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .keys import SiteKey


@dataclass(frozen=True)
class Person:
    id: str
    """The person id, or the subject itself when nobody here matches it."""
    name: str
    """The name, or the subject itself when nobody here matches it."""


@dataclass(frozen=True)
class SiteNames:
    by_subject: Mapping[str, Person]
    names: Mapping[str, str]
    """person id -> name, for everyone enrolled here."""
    subject_of_id: Mapping[str, str]

    @classmethod
    def of(cls, people: Iterable[Mapping[str, Any]], key: SiteKey, publish_names: bool) -> SiteNames:
        """From the people table's rows (``id``, ``name``). With ``publish_names`` the nodes put
        the name on the bus; the pseudonym is still matched, for events from before the switch."""
        by_subject: dict[str, Person] = {}
        names: dict[str, str] = {}
        subject_of_id: dict[str, str] = {}
        for row in people:
            pid, name = str(row["id"]), str(row["name"])
            names[pid] = name
            pseudonym = key.pseudonym(pid)
            subject_of_id[pid] = name if publish_names else pseudonym
            by_subject[pseudonym] = Person(pid, name)
            if publish_names:
                by_subject.setdefault(name, Person(pid, name))
        return cls(by_subject, names, subject_of_id)

    def person(self, subject: str | None) -> Person | None:
        """None for no subject (an exit button, an unknown card)."""
        if not subject:
            return None
        return self.by_subject.get(subject) or Person(subject, subject)
