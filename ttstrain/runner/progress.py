"""A stage's progress bar over problems that moves inside a chunk too, with tokens/s and an ETA.

A chunk of a stage can be one long generate call (16 problems x 64 samples), so a bar that moves
only when a chunk is written sits still for minutes. `StageProgress` listens to the generator
(`Generator.progress_hook`): as a call's continuations finish, the bar advances through the
current chunk in proportion (`calls_per_chunk` says how many generate calls a chunk makes), and
its postfix shows the generated tokens per second; tqdm turns the fractional position into an ETA.

    with StageProgress(len(problems), "sample", generator, calls_per_chunk=1) as bar:
        run_chunks(out, problems, 16, Shard(), process, progress=bar.chunk_done)
"""

from __future__ import annotations

import time

from tqdm.auto import tqdm


class StageProgress:
    def __init__(self, total: int, desc: str, generator=None, calls_per_chunk: int = 1, chunk_size: int = 1,
                 enabled: bool = True):
        self.bar = tqdm(total=total, desc=desc, unit="problem", disable=not enabled, mininterval=0.5)
        self.generator, self.calls_per_chunk, self.chunk_size = generator, max(1, calls_per_chunk), chunk_size
        self.done = 0  # problems of finished (or already written) chunks
        self.calls_in_chunk = 0
        self.tokens = 0
        self.t0 = time.monotonic()
        self._saved_hook = None

    def __enter__(self) -> "StageProgress":
        if self.generator is not None:
            self._saved_hook = self.generator.progress_hook
            self.generator.progress_hook = self.on_generation
        return self

    def __exit__(self, *exc) -> None:
        if self.generator is not None:
            self.generator.progress_hook = self._saved_hook
        self.bar.close()

    def on_generation(self, rows_done: int, rows_total: int, tokens: int, finished: bool) -> None:
        """The generator's hook: move through the current chunk as its continuations finish."""
        within = (self.calls_in_chunk + (rows_done / rows_total if rows_total else 1.0)) / self.calls_per_chunk
        if finished:
            self.calls_in_chunk += 1
            self.tokens += tokens
            shown = self.tokens
        else:
            shown = self.tokens + tokens
        size = min(self.chunk_size, self.bar.total - self.done) if self.bar.total else self.chunk_size
        self.bar.n = self.done + size * min(within, 0.999)
        self.bar.set_postfix(tok_s=f"{shown / max(time.monotonic() - self.t0, 1e-9):.0f}", refresh=False)
        self.bar.refresh()

    def chunk_done(self, problems: int) -> None:
        """run_chunks' progress callback: a chunk was written (or found on disk)."""
        self.done += problems
        self.calls_in_chunk = 0
        self.bar.n = self.done
        self.bar.refresh()
