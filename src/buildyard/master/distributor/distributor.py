"""The build request distributor (``master.botmaster.brd``).

Issue 4 makes it claim requests and start builds; until then it only exists in the tree so the
service order and the wake-up sources are in place.
"""

from __future__ import annotations

from buildyard.common.service import Service


class BuildRequestDistributor(Service):
    def __init__(self) -> None:
        super().__init__("_brd")  # "_": no builder name can clash
        self.wakeups = 0

    def maybe_start_builds(self, builder_names: list[str]) -> None:
        """Ask for a distribution pass over ``builder_names``."""
        self.wakeups += 1
        if self.running and builder_names:
            raise NotImplementedError(
                "build request distribution (claiming requests, starting builds) is issue 4"
            )

    def statistics(self) -> dict[str, int]:
        return {**super().statistics(), "wakeups": self.wakeups}
