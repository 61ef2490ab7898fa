"""Importing a whole file, batch by batch, resumable after a crash.

Each batch commits in a transaction of its own together with the file's progress (its
:class:`ImportRun`: the last line committed), so a run killed at any moment leaves
whole batches behind and the next run of the same file starts after the last one; a
batch that was in flight is simply imported again. A file imported to its end is read
again in full by a later run, which then finds every row present and skips it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select, update

from crmkit.clock import utcnow
from crmkit.core.imports.files import BadLine, FileFormat, read_rows, sha256
from crmkit.core.imports.models import ImportKind, ImportRun
from crmkit.core.imports.service import MAX_ROWS, Refusal, Row, import_rows
from crmkit.plugins.info import TenantContext

OpenScope = Callable[[], AbstractAsyncContextManager[TenantContext]]
"""Opens one tenant transaction (committed when the block ends without error)."""


@dataclass
class Summary:
    """What a run of :func:`import_file` did; counts cover the whole file, refusals the
    lines this run read (a resumed run starts after ``resumed_after``)."""

    resumed_after: int = 0
    imported: int = 0
    skipped: int = 0
    refused_count: int = 0
    refused: list[Refusal] = field(default_factory=list)


async def _start(open_scope: OpenScope, kind: ImportKind, path: Path, digest: str) -> ImportRun:
    """The file's run: resumed if unfinished, started afresh if new or finished."""
    async with open_scope() as ctx:
        session = ctx.session
        run = await session.scalar(
            select(ImportRun).where(ImportRun.kind == kind, ImportRun.file_sha256 == digest)
        )
        if run is None:
            run = ImportRun(kind=kind, file_name=path.name[:300], file_sha256=digest)
            session.add(run)
        elif run.finished_at is not None:
            run.lines_done = run.imported = run.skipped = run.refused = 0
            run.started_at, run.finished_at = utcnow(), None
        await session.flush()
        return run


@dataclass
class _Batch:
    rows: list[Row] = field(default_factory=list)
    bad: list[Refusal] = field(default_factory=list)
    last_line: int = 0

    def __len__(self) -> int:
        return len(self.rows) + len(self.bad)


async def import_file(
    open_scope: OpenScope,
    kind: ImportKind,
    path: Path,
    fmt: FileFormat,
    *,
    captured_by: str,
    batch_size: int = MAX_ROWS,
    overlap: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Summary:
    """Import ``path`` into the tenant ``open_scope`` opens, ``batch_size`` rows per
    transaction; ``progress`` is told how many rows each committed batch covered.

    With ``overlap`` (for PostgreSQL, whose concurrent transactions do not lock each
    other out) the next batch is checked, encrypted and written while the previous
    one's statements run, in a transaction of its own that records its progress, and
    commits, only after the previous one has committed: the progress never passes a
    batch that is not in the database.
    """
    batch_size = max(1, min(batch_size, MAX_ROWS))
    run = await _start(open_scope, kind, path, sha256(path))
    summary = Summary(resumed_after=run.lines_done)
    summary.imported, summary.skipped, summary.refused_count = run.imported, run.skipped, run.refused

    async def commit(batch: _Batch, previous: asyncio.Task[None] | None, finished: bool) -> None:
        async with open_scope() as ctx:
            result = await import_rows(ctx, kind, batch.rows, captured_by=captured_by)
            if previous is not None:
                await previous  # its failure rolls this batch back too
            refused = sorted([*batch.bad, *result.refused], key=lambda r: r.line)
            await ctx.session.execute(
                update(ImportRun)
                .where(ImportRun.id == run.id)
                .values(
                    lines_done=batch.last_line,
                    imported=ImportRun.imported + len(result.imported),
                    skipped=ImportRun.skipped + len(result.skipped),
                    refused=ImportRun.refused + len(refused),
                    finished_at=utcnow() if finished else None,
                )
            )
        summary.imported += len(result.imported)
        summary.skipped += len(result.skipped)
        summary.refused_count += len(refused)
        summary.refused += refused
        if progress is not None:
            progress(len(batch))

    in_flight: deque[asyncio.Task[None]] = deque()  # at most two: one writing, one committing
    batch = _Batch(last_line=run.lines_done)
    try:
        for item in read_rows(path, fmt):
            line = item.line if isinstance(item, BadLine) else item[0]
            if line <= run.lines_done:
                continue
            if isinstance(item, BadLine):
                batch.bad.append(Refusal(item.line, None, item.reason))
            else:
                batch.rows.append(item)
            batch.last_line = line
            if len(batch) < batch_size:
                continue
            if overlap:
                previous = in_flight[-1] if in_flight else None
                in_flight.append(asyncio.create_task(commit(batch, previous, finished=False)))
                if len(in_flight) == 2:
                    await in_flight.popleft()
            else:
                await commit(batch, None, finished=False)
            batch = _Batch(last_line=line)
        await commit(batch, in_flight[-1] if in_flight else None, finished=True)
    finally:
        for task in in_flight:
            task.cancel()
    return summary
