"""The per-caller quota of jobs in flight (`Settings.max_jobs_in_flight`).

The count is a query on the store's keys-only `caller-inflight` index: exact, but a request
per submit, which is a fifth of what a job costs in AWS requests. So a process remembers
each caller's last count and adds what it submitted since, and queries again only when
that estimate reaches half the limit or is older than `quota_recount_s`. Far from its
limit a caller costs one query a second per process; near it, every submit is counted
exactly. Concurrent submits (other processes, other Lambda instances) may still overshoot
by what they submit between two counts: a quota against runaway clients, not a ledger.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from offload.aws.store import JobStore

# Callers remembered per process; the least recently seen are forgotten first.
_MAX_CALLERS = 10_000


class InFlightQuota:
    """Admits a caller's submits while it has fewer than the limit in flight.

    :param store: counts a caller's jobs in flight.
    """

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self._known: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._lock = threading.Lock()

    def admits(self, caller: str) -> bool:
        """Whether `caller` may submit one more job now (a store query when in doubt)."""
        settings = self.store.settings
        limit = settings.max_jobs_in_flight
        if not limit:
            return True
        now = time.monotonic()
        with self._lock:
            known = self._known.get(caller)
        if known is not None:
            estimate, counted_at = known
            if estimate < limit // 2 and now - counted_at < settings.quota_recount_s:
                return True
        count = self.store.count_in_flight(caller, limit)
        with self._lock:
            self._known[caller] = (count, now)
            self._known.move_to_end(caller)
            while len(self._known) > _MAX_CALLERS:
                self._known.popitem(last=False)
        return count < limit

    def submitted(self, caller: str) -> None:
        """Count a job this process has just submitted for `caller`."""
        with self._lock:
            known = self._known.get(caller)
            if known is not None:
                self._known[caller] = (known[0] + 1, known[1])
