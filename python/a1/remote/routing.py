"""Which replica serves each sequence of a model run as several servers.

A sequence sticks to the replica of its first request (its prefix stays in that server's prefix
cache; a fork stays with its parent); a new one goes to the live replica holding the fewest live
sequences. A replica whose request failed for good (connection errors or timeouts after the
retries, HTTP 429/502/503/504, or another 5xx from a server that no longer answers a GET) is
taken out for the rest of the run, for every engine sharing the transport; its sequences'
requests go to the other replicas (histories live on the client, so any replica can continue
them). The last live replica of an engine is never taken out: its failure fails the request."""
from __future__ import annotations

import warnings
from collections import Counter
from typing import Container, Sequence, Union

from .errors import RemoteError, RemoteHTTPError, RemoteUnavailableError
from .replica import Replica
from .transport import RETRY_STATUSES


def check_urls(urls: Union[str, Sequence[str]], what: str = "url") -> list[str]:
    """One URL or several (replicas of one model), each http(s), none twice; trailing / dropped."""
    listed = [urls] if isinstance(urls, str) else list(urls) if isinstance(urls, (list, tuple)) else None
    if not listed:
        raise ValueError(f"{what} must be an http(s) URL or a non-empty list of them, got {urls!r}")
    for url in listed:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"{what} must be an http(s) URL, got {url!r}")
    cleaned = [url.rstrip("/") for url in listed]
    twice = sorted({url for url in cleaned if cleaned.count(url) > 1})
    if twice:
        raise ValueError(f"{what} names {twice[0]} more than once")
    return cleaned


class Router:
    def __init__(self, replicas: Sequence[Replica]) -> None:
        if not replicas:
            raise ValueError("a model needs at least one replica")
        self.replicas = list(replicas)
        self.placement: dict[int, Replica] = {}  # seq_id -> its replica

    def live(self) -> list[Replica]:
        return [r for r in self.replicas if r.alive]

    def replica_for(self, seq_id: int, live_seqs: Container[int]) -> Replica:
        """seq_id's replica: its own while live, else the least loaded live one (when every
        replica was taken out by another engine, any: the request reports the failure)."""
        replica = self.placement.get(seq_id)
        if replica is not None and replica.alive:
            return replica
        live = self.live() or self.replicas
        self.placement = {s: r for s, r in self.placement.items() if s in live_seqs}  # freed ones weigh nothing
        loads = Counter(self.placement.values())
        replica = min(live, key=lambda r: (loads[r], self.replicas.index(r)))
        self.placement[seq_id] = replica
        return replica

    def inherit(self, child: int, parent: int) -> None:
        """A fork stays on its parent's replica (the shared prefix is cached there)."""
        if parent in self.placement:
            self.placement[child] = self.placement[parent]

    def reroutes(self, replica: Replica, err: RemoteError) -> bool:
        """Whether a request that failed on replica with err goes to another replica: when one is
        live and replica is out (taken out now if err shows it down: a warning names it and why,
        or earlier, maybe by the other engine of the pair)."""
        others = [r for r in self.live() if r is not replica]
        if not others:
            return False
        if not replica.alive:
            return True
        if not self._is_down(replica, err):
            return False
        replica.transport.down[replica.url] = str(err)
        warnings.warn(f"{replica.name} is taken out of the run ({err}); its sequences continue on "
                      f"{', '.join(r.url for r in others)}")
        return True

    @staticmethod
    def _is_down(replica: Replica, err: RemoteError) -> bool:
        if isinstance(err, RemoteUnavailableError):
            return True
        if isinstance(err, RemoteHTTPError) and (err.status >= 500 or err.status == 429):
            # a 500 from a server that still answers is this request's fault (e.g. a full context)
            return err.status in RETRY_STATUSES or not replica.transport.answers(replica.url + "/v1/models")
        return False
