"""The download pool: `workers` threads share one client (one pace per host); results
are journaled by the main thread as they land, so a kill loses at most the objects in
flight, and one object that raises never stops the others."""
from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Callable, Iterable, Optional

from ...core.records import MetObject
from ...core.status import BAD_CONTENT
from ...met.client import ApiOutage


def run_pool(batches: Iterable, worker: Callable, workers: int, journal, progress, counts) -> Optional[str]:
    """Run `worker` over jobs with at most 2*workers in flight; journal each result as it
    lands (main thread only). Returns the outage message if the API went away. Any other
    exception in a job (a bug, or an answer hostile in a way nothing checked) is recorded
    as that object's failure and the run goes on: one object never stops the others, and a
    rerun does not meet the same crash before it records anything."""
    outage = None
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch") as ex:
        pending: dict = {}  # future -> job

        def drain(block_until_one: bool) -> None:
            nonlocal outage
            if not pending:
                return
            done, rest = wait(pending, timeout=None if block_until_one else 0,
                              return_when=FIRST_COMPLETED)
            for fut in done:
                job = pending.pop(fut)
                try:
                    obj = fut.result()
                except ApiOutage as e:
                    outage = str(e)
                    continue
                except Exception as e:
                    obj = crashed(job, e)
                journal.write(obj.to_json())
                counts[obj.status] += 1
                progress.update(1, last=obj.status)
        try:
            for batch in batches:
                for job in batch:
                    while len(pending) >= 2 * workers and outage is None:
                        drain(True)
                    if outage:
                        break
                    pending[ex.submit(worker, job)] = job
                if outage:
                    break
            while pending:
                drain(True)
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise
    return outage


def crashed(job, e: BaseException) -> MetObject:
    """The failure record of a job that raised: bad_content (not settled, so a rerun tries
    it again), with the exception's type and message."""
    oid = getattr(job, "obj_id", job)
    msg = str(e)
    msg = msg if len(msg) <= 200 else msg[:200] + "..."
    return MetObject(int(oid), BAD_CONTENT, f"could not process this object: {type(e).__name__}: {msg}")
