"""`triage batch --ray ADDRESS`: the bulk job of server.bulk on a Ray cluster (`pip install 'triage[ray]'`).

The driver reads and validates the input (server.bulk.read_tickets: the same exit-2 errors) and drops the
tickets already in the output (server.bulk.run_records) before any dataset exists. The rest become a Ray
Data dataset mapped by `map_batches` over a fixed pool of actors, one per CPU (or GPU) slot; each actor
loads the configured runner once (server.bulk.open_classifier, as the single-process job does) and
classifies one batch at a time through its streaming loop. The driver iterates the results as batches
finish and appends them to the same journal, so progress shows and a kill loses at most the batches in
flight: a rerun resumes exactly like the single-process job.

Only the driver imports Ray, and only when the job runs: the server and the plain job never need it.
Actors on a remote cluster (`auto`, `ray://...`) import `server` and read the model from the same paths,
so every node needs this package and the models installed as on the driver (the same image)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from server.bulk import BulkInputError, BulkTicket, Classify, Emit, open_classifier
from server.prompts import TicketInput

if TYPE_CHECKING:
    from server.config import Settings

ADDRESS_FORMS = "local, auto, ray://HOST:PORT or HOST:PORT"
_ADDRESS = re.compile(r"^(local|auto|ray://[^\s/:]+:\d+|[^\s/:]+:\d+)$")


class RayJobError(RuntimeError):
    """Ray could not run the job as asked (the CLI exits 1 with this message)."""


@dataclass(frozen=True)
class RayPlan:
    # "local" starts a Ray instance inside this process (gone with it); anything else joins a running cluster.
    address: str
    actors: int | None = None  # None: one per slot the cluster has room for
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0


def check_plan(plan: RayPlan) -> None:
    """What can be refused before anything loads: Ray missing, an address Ray would misread."""
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError:
        raise BulkInputError("--ray needs Ray Data: pip install 'triage[ray]'") from None
    if not _ADDRESS.match(plan.address):
        raise BulkInputError(f"--ray {plan.address!r}: expected {ADDRESS_FORMS}")
    if plan.cpus_per_actor <= 0 and plan.gpus_per_actor <= 0:
        raise BulkInputError("an actor needs a CPU or a GPU: --cpus-per-actor and --gpus-per-actor are both 0")


class ClassifyBatch:
    """The `map_batches` callable. Ray builds one per actor, so the model loads once per actor, not per batch."""

    def __init__(self, settings: Settings, concurrency: int) -> None:
        self.classify = open_classifier(settings, concurrency)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        tickets = [
            BulkTicket(str(tid), TicketInput(str(subject), str(body), tuple(json.loads(str(history)))))
            for tid, subject, body, history in zip(
                batch["ticket_id"], batch["subject"], batch["body"], batch["history"]
            )
        ]
        records: list[str] = []
        self.classify(tickets, lambda rec: records.append(json.dumps(rec, ensure_ascii=False, default=str)))
        # JSON text, not columns: an answer's fields and an error line differ, and one Arrow schema must
        # hold every batch.
        return {"record": np.array(records, dtype=object)}


def _row(t: BulkTicket) -> dict[str, str]:
    # History as JSON text: a list column of varying length (often empty) is not worth Arrow's typing.
    return {
        "ticket_id": t.ticket_id,
        "subject": t.ticket.subject,
        "body": t.ticket.body,
        "history": json.dumps(list(t.ticket.previous_interactions), ensure_ascii=False),
    }


def _connect(plan: RayPlan) -> None:
    import ray
    from ray.data import DataContext

    try:
        if plan.address == "local":
            ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        else:
            ray.init(address=plan.address, log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RayJobError(f"cannot reach Ray at {plan.address!r}: {exc}") from None
    # The job draws its own bar from the journal; Ray Data's would interleave with it on stderr.
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    # ...and Ray Data warns that its bars are off, on every job.
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)


def pool_size(plan: RayPlan, resources: dict[str, float]) -> int:
    """The actors to start: as asked, or one per slot; refused when the cluster cannot hold them all
    (a fixed pool waits forever for an actor that never fits)."""
    wanted = {"CPU": plan.cpus_per_actor, "GPU": plan.gpus_per_actor}
    slots = min(int(resources.get(k, 0.0) // v) for k, v in wanted.items() if v > 0)
    if plan.actors is None:
        if slots < 1:
            raise RayJobError(
                f"the Ray cluster has no room for one actor ({_need(plan, 1)}; it has {_have(resources)})"
            )
        return slots
    if plan.actors > slots:
        raise RayJobError(
            f"--actors {plan.actors} needs {_need(plan, plan.actors)}; the Ray cluster has {_have(resources)}"
        )
    return plan.actors


def _need(plan: RayPlan, n: int) -> str:
    parts = [f"{n * plan.cpus_per_actor:g} CPU"] + ([f"{n * plan.gpus_per_actor:g} GPU"] if plan.gpus_per_actor else [])
    return " + ".join(parts)


def _have(resources: dict[str, float]) -> str:
    return f"{resources.get('CPU', 0.0):g} CPU + {resources.get('GPU', 0.0):g} GPU"


def ray_classifier(
    settings: Settings, plan: RayPlan, concurrency: int | None = None, on_start: Callable[[int], None] | None = None
) -> Classify:
    """A `Classify` (server.bulk.run_records) that runs the tickets through a Ray actor pool. Ray is
    joined only when there is something to classify: a finished job's rerun never starts it.
    `on_start(actors)` is told the pool size once it is known."""
    batch = concurrency or settings.engine.max_batch_size
    if settings.model.threads is None and plan.cpus_per_actor >= 1:
        # One actor per CPU slot: torch's default of every core in each actor would oversubscribe the node.
        settings = settings.variant(model={"threads": int(plan.cpus_per_actor)})

    def classify(todo: Sequence[BulkTicket], emit: Emit) -> None:
        import ray
        import ray.data

        _connect(plan)
        try:
            resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
            actors = pool_size(plan, resources)
            if on_start is not None:
                on_start(actors)
            # One call = at most one runner batch (the actor's streaming loop runs it full, and a kill
            # loses at most that per actor), smaller when there are too few tickets to fill every actor.
            size = max(1, min(batch, -(-len(todo) // actors)))
            ds = ray.data.from_items([_row(t) for t in todo]).map_batches(
                ClassifyBatch,
                fn_constructor_kwargs={"settings": settings, "concurrency": batch},
                batch_size=size,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=actors),
                num_cpus=plan.cpus_per_actor,
                num_gpus=plan.gpus_per_actor or None,
            )
            # No prefetch: with it the driver sees each batch only once the next one is done, so the
            # journal (and the progress bar) would trail by a batch and a kill would lose one more.
            for out in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0):
                for line in out["record"]:
                    emit(json.loads(line))
        finally:
            ray.shutdown()

    return classify
