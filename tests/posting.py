"""Posting from several threads at once, for the bus's ordering and loss tests."""

from __future__ import annotations

import threading

from fsmc.runtime.bus import EventBus


def post_from_threads(bus: EventBus, posters: int, per_poster: int, timeout: float) -> None:
    """Thread `p` of `posters` posts `(p, 0)`, `(p, 1)`, … `(p, per_poster - 1)` in order;
    returns when every thread is done (or `timeout` seconds per thread have passed)."""
    def post_all(poster: int) -> None:
        post = bus.post
        for seq in range(per_poster):
            post((poster, seq))

    threads = [threading.Thread(target=post_all, args=(p,)) for p in range(posters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
