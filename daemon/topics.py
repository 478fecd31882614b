"""Every topic of the MQTT contract (docs/mqtt.md), built in one place.

Topics are built here and nowhere else, so the contract and the code cannot drift apart
one f-string at a time. Names are checked by the config to be topic-safe before they get here.
"""

from __future__ import annotations

PREFIX = "sekisho/v1"


class Topics:
    def __init__(self, site: str) -> None:
        self.base = f"{PREFIX}/{site}"

    @property
    def everything(self) -> str:
        return f"{self.base}/#"

    def node_status(self, node: str) -> str:
        return f"{self.base}/node/{node}/status"

    def door_event(self, door: str) -> str:
        return f"{self.base}/door/{door}/event"

    def door_state(self, door: str) -> str:
        return f"{self.base}/door/{door}/state"

    def area_occupancy(self, area: str) -> str:
        return f"{self.base}/area/{area}/occupancy"

    def alarm(self, alarm_id: str) -> str:
        return f"{self.base}/alarm/{alarm_id}"

    def desk_state(self, desk: str) -> str:
        return f"{self.base}/desk/{desk}/state"

    def desk_event(self, desk: str) -> str:
        return f"{self.base}/desk/{desk}/event"

    def usb_event(self, host: str) -> str:
        return f"{self.base}/usb/{host}/event"

    def usb_exceptions(self, host: str) -> str:
        return f"{self.base}/usb/{host}/exceptions"

    def print_event(self, node: str) -> str:
        return f"{self.base}/print/{node}/event"

    def print_queue(self, node: str) -> str:
        return f"{self.base}/print/{node}/queue"

    def command(self, node: str) -> str:
        return f"{self.base}/cmd/{node}"

    def command_result(self, node: str) -> str:
        return f"{self.base}/cmd/{node}/result"

    # The recorder's enrolment (docs/enrolment.md): the snapshot's manifest and its chunks
    # retained, each chunk on its own topic; deltas not retained.
    def enrolment_manifest(self) -> str:
        return f"{self.base}/enrolment/snapshot/manifest"

    def enrolment_chunk(self, index: int) -> str:
        return f"{self.base}/enrolment/snapshot/chunk/{index}"

    @property
    def enrolment_chunks(self) -> str:
        return f"{self.base}/enrolment/snapshot/chunk/+"

    def chunk_index(self, topic: str) -> int | None:
        """The index an ``enrolment_chunk`` topic names, or None for any other topic."""
        head, _, index = topic.rpartition("/")
        return int(index) if head == f"{self.base}/enrolment/snapshot/chunk" and index.isdigit() else None

    def enrolment_delta(self) -> str:
        return f"{self.base}/enrolment/delta"
