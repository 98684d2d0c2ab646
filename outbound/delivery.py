"""The delivery worker of one destination: its queue, its connection pool, its pause switch.

Each publisher gets its own `Destination`, so a slow or dead endpoint only ever
delays its own postbacks (no head-of-line blocking): its requests wait in its own
queue, for its own `concurrency` connection slots. A delivery goes through:

    record `sending n`  →  request n  →  record the attempt  →  record the state
                                                                 (delivered | retry n | dead n)

The `sending` record is written, and acknowledged, before the request leaves. A crash
after it and before the outcome is recorded leaves `sending` behind, and the restarted
worker knows the request may have arrived (docs/outbound.md "Once, and the crash window").
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

import httpx

from outbound import metrics
from outbound.config import Publisher
from outbound.job import Job
from outbound.plan import signature_headers
from outbound.policy import RETRYABLE, Breaker, RetryPolicy, classify
from outbound.records import Recorder
from outbound.state import DEAD, RETRY, SENDING
from outbound.state import DELIVERED as STATE_DELIVERED
from postbacks.settings import Settings

log = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 64 * 1024  # read (and drop) at most this much of an answer, to keep the connection
EXPIRY_CHECK_S = 0.5  # how often waiting deliveries are checked against their age limit


class Destination:
    def __init__(
        self,
        publisher: Publisher,
        settings: Settings,
        recorder: Recorder,
        on_decided: Callable[[Job], None],
        rng: random.Random | None = None,
    ) -> None:
        self.publisher = publisher
        self.recorder = recorder
        self.on_decided = on_decided
        self.rng = rng or random.Random()
        self.policy = RetryPolicy(
            max_attempts=publisher.max_attempts or settings.outbound_max_attempts,
            max_age_s=publisher.max_age_s or settings.outbound_max_age_s,
            base_s=settings.outbound_backoff_base_s,
            max_s=settings.outbound_backoff_max_s,
        )
        self.breaker = Breaker(
            settings.outbound_pause_failures, settings.outbound_pause_window_s, settings.outbound_pause_s
        )
        self.concurrency = publisher.concurrency or settings.outbound_concurrency
        self.queue_limit = settings.outbound_queue_limit
        timeout = publisher.timeout_s or settings.outbound_timeout_s
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency),
            follow_redirects=False,
        )
        self.ready: deque[Job] = deque()
        self.delayed: list[tuple[float, int, Job]] = []  # heap by due time
        self.tasks: dict[asyncio.Task[None], Job] = {}
        self.in_flight = 0  # requests under way (each holds a connection slot)
        self.counts: Counter[str] = Counter()
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._closing = False
        self._last_expiry = 0.0

    @property
    def name(self) -> str:
        return self.publisher.publisher_id

    @property
    def paused(self) -> bool:
        return bool(self.breaker.paused)

    @property
    def waiting(self) -> int:
        return len(self.ready) + len(self.delayed)

    # -- intake ------------------------------------------------------------------------------

    def submit(self, job: Job, uncertain: bool = False) -> None:
        """Take a delivery. `uncertain`: its last request's answer was never recorded (a crash)."""
        if uncertain:
            self._spawn(self._uncertain(job), job)
        else:
            self._enqueue(job)

    def _enqueue(self, job: Job) -> None:
        if job.dropped:
            return  # its partition went to another worker, which reads its recorded state
        if self.waiting >= self.queue_limit:
            self._spawn(self._give_up(job, "backlog_full", f"{self.waiting} deliveries already waiting"), job)
            return
        if job.due > time.time():
            heapq.heappush(self.delayed, (job.due, next(self._seq), job))
        else:
            self.ready.append(job)
        self._wake.set()

    def forget(self, partitions: Iterable[int]) -> tuple[list[Job], list[asyncio.Task[None]]]:
        """Partitions taken away (a rebalance): drop their waiting deliveries, return them and the
        tasks still working on theirs (to await: their outcomes must be recorded before the next
        owner reads the states)."""
        gone = set(partitions)
        for job in self.tasks.values():
            if job.partition in gone:
                job.dropped = True
        dropped = [job for job in self.ready if job.partition in gone]
        dropped += [job for _, _, job in self.delayed if job.partition in gone]
        self.ready = deque(job for job in self.ready if job.partition not in gone)
        self.delayed = [entry for entry in self.delayed if entry[2].partition not in gone]
        heapq.heapify(self.delayed)
        for job in dropped:
            job.dropped = True
        return dropped, [task for task, job in self.tasks.items() if job.partition in gone]

    # -- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Start requests while there are deliveries due, free slots and the destination is not paused."""
        while not self._closing:
            self._wake.clear()
            now = time.time()
            while self.delayed and self.delayed[0][0] <= now:
                self.ready.append(heapq.heappop(self.delayed)[2])
            if now - self._last_expiry >= EXPIRY_CHECK_S:
                self._last_expiry = now
                self._expire(now)
            while self.ready and self.in_flight < self.concurrency and self.breaker.allow(now):
                job = self.ready.popleft()
                self.in_flight += 1
                self._spawn(self._attempt(job), job)
            timeout = self._until_next(now)
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def _until_next(self, now: float) -> float:
        """Seconds until something may change without a wake-up: a retry due, a pause ending, an expiry."""
        candidates = [1.0]
        if self.delayed:
            candidates.append(self.delayed[0][0] - now)
        if self.ready:
            candidates.append(EXPIRY_CHECK_S)
            resumes = self.breaker.resumes_at()
            if resumes is not None:
                candidates.append(resumes - now)
        return max(0.0, min(candidates))

    def _expire(self, now: float) -> None:
        """Deliveries still waiting at their age limit (a paused or saturated destination) give up."""
        if not any(job.deadline <= now for job in self.ready):
            return
        expired = [job for job in self.ready if job.deadline <= now]
        self.ready = deque(job for job in self.ready if job.deadline > now)
        for job in expired:
            reason = "destination paused" if self.breaker.paused else "still waiting for a connection slot"
            self._spawn(self._give_up(job, "max_age", f"max age reached; {reason}"), job)

    def _spawn(self, work: Coroutine[Any, Any, None], job: Job) -> None:
        task = asyncio.create_task(work)
        self.tasks[task] = job
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.tasks.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "outbound delivery task failed",
                extra={"publisher_id": self.name},
                exc_info=task.exception(),
            )
        self._wake.set()

    # -- one request -------------------------------------------------------------------------

    async def _attempt(self, job: Job) -> None:
        sent = False
        try:
            if time.time() >= job.deadline:
                await self._give_up(job, "max_age", "max age reached before the request")
                return
            attempt = job.attempts + 1
            await self.recorder.state(job, SENDING, attempt, http_status=job.last_status)
            started = time.time()
            sent = True
            http_status, error = await self._request(job)
            now = time.time()
            latency_ms = int((now - started) * 1000)
            self._judge_destination(http_status, now)
            verdict = self.policy.after(attempt, http_status, now, job.deadline, self.rng.random())
            metrics.ATTEMPTS.labels(self.name, verdict.outcome).inc()
            metrics.REQUEST_SECONDS.labels(self.name).observe(now - started)
            job.attempts, job.last_status, job.last_error = attempt, http_status, error
            await self.recorder.attempt(
                job, attempt, started, verdict.outcome, verdict.reason, http_status, latency_ms, error
            )
            if verdict.outcome == "delivered":
                await self.recorder.state(job, STATE_DELIVERED, attempt, http_status=http_status)
                self._decided(job, "delivered")
            elif verdict.outcome == "retry":
                assert verdict.retry_at is not None
                job.due = verdict.retry_at
                await self.recorder.state(job, RETRY, attempt, verdict.retry_at, http_status, error)
                self.counts["retry"] += 1
                self._enqueue(job)
            else:
                assert verdict.reason is not None
                await self._dead(job, verdict.reason, error or f"HTTP {http_status}")
        finally:
            if not sent:
                self.breaker.abandon()
            self.in_flight -= 1
            self._wake.set()

    def _judge_destination(self, http_status: int | None, now: float) -> None:
        """Feed the pause switch: retryable failures count against the destination, any other answer
        proves it up (a 4xx is about the request, not the endpoint)."""
        if classify(http_status) == RETRYABLE:
            if self.breaker.failure(now):
                log.warning(
                    f"destination {self.name} paused",  # in the text: one line per destination, not per 10 s
                    extra={
                        "publisher_id": self.name,
                        "pause_s": round(self.breaker.until - now, 3),
                        "pauses_in_a_row": self.breaker.pauses,
                        "waiting": self.waiting,
                    },
                )
        elif self.breaker.success(now):
            extra = {"publisher_id": self.name, "waiting": self.waiting}
            log.info(f"destination {self.name} resumed", extra=extra)

    async def _request(self, job: Job) -> tuple[int | None, str | None]:
        """(HTTP status, None) for an answer; (None, error) for none (timeout, refused, reset...)."""
        request = job.request
        headers = [*request.headers, *signature_headers(self.publisher, request, time.time())]
        try:
            async with self.client.stream(
                request.method, request.url, content=request.body, headers=headers
            ) as response:
                read = 0
                async for chunk in response.aiter_raw():
                    read += len(chunk)
                    if read > MAX_RESPONSE_BYTES:
                        break
                return response.status_code, None
        except httpx.TimeoutException as exc:
            return None, f"timeout ({type(exc).__name__})"
        except (httpx.HTTPError, OSError) as exc:
            return None, f"{type(exc).__name__}: {exc}"[:500]

    # -- endings -----------------------------------------------------------------------------

    async def _uncertain(self, job: Job) -> None:
        """A restart found `sending` as the last state: the answer to request n is unknown."""
        await self.recorder.attempt(
            job,
            job.attempts,
            time.time(),
            "unknown",
            "crashed",
            error="the worker stopped before recording the answer",
        )
        log.warning(
            "delivery outcome unknown after a restart",
            extra={
                "publisher_id": self.name,
                "idempotency_key": job.key,
                "attempt": job.attempts,
                "resend": self.publisher.resend_uncertain,
            },
        )
        if self.publisher.resend_uncertain:
            self._enqueue(job)  # the same request, the same Idempotency-Key: the receiver can tell
        else:
            await self._give_up(
                job, "uncertain", "may have been delivered; not resent (resend_uncertain = false)"
            )

    async def _give_up(self, job: Job, reason: str, error: str) -> None:
        """Dead without a request: recorded as the next attempt number, with no HTTP status."""
        await self.recorder.attempt(job, job.attempts + 1, time.time(), "dead", reason, error=error)
        await self._dead(job, reason, error)

    async def _dead(self, job: Job, reason: str, error: str) -> None:
        # The dead letter first: a crash before the state is recorded repeats it, never loses it.
        await self.recorder.dead_letter(job, reason, error)
        await self.recorder.state(
            job, DEAD, job.attempts, http_status=job.last_status, error=f"{reason}: {error}"
        )
        log.warning(
            "outbound postback dead-lettered",
            extra={"publisher_id": self.name, "idempotency_key": job.key, "reason": reason, "error": error},
        )
        self._decided(job, "dead")

    def _decided(self, job: Job, outcome: str) -> None:
        self.counts[outcome] += 1
        self.on_decided(job)

    # -- shutdown ----------------------------------------------------------------------------

    async def close(self, grace_s: float) -> None:
        """Start nothing new; let requests under way finish and be recorded (up to `grace_s`)."""
        self._closing = True
        self._wake.set()
        pending = list(self.tasks)
        if pending:
            _, late = await asyncio.wait(pending, timeout=grace_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self.client.aclose()
