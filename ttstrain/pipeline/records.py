"""What a pipeline run has done, stage by stage, so a stopped run resumes where it stopped.

    records = StageRecords(Path("runs/smollm2/pipeline"))
    key = records.key("prm", config_dict, upstream=["label_mc"])
    if records.done("prm", key):
        summary = records.summary("prm")        # what the finished stage returned
    else:
        records.start("prm", key, [output_dir])  # clears what another key (or no record) left there
        ...                                     # run the stage
        records.finish("prm", key, summary, seconds, generation)

A stage's key is a hash of its resolved config and its upstream stages' keys, so a changed recipe
value reruns that stage and every stage that reads its output, and nothing else. A stage that was
started with the same key but did not finish keeps its folder: a chunked stage resumes from the
chunks it wrote (its own runner checks them); a trainer starts again. The summary a stage returned
is kept as a pickle, so a resumed run's report is built from the same Python values as a fresh
one's (JSON would turn the budgets' integer keys into strings); `record.json` beside it says, for a
reader, what ran, when and how long it took.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import time
from pathlib import Path

from ttstrain.io import write_json

# fields of a resolved config that say where or how a stage runs, not what it computes: leaving them
# out lets a run move to another machine (or report elsewhere) without redoing finished stages
WHERE_IT_RUNS = frozenset({"logging_dir", "logging_first_step", "logging_steps", "report_to", "disable_tqdm",
                           "dataloader_num_workers", "save_total_limit", "overwrite_output_dir", "push_to_hub",
                           "hub_token", "run_name", "shard", "merge_only", "executor", "num_workers",
                           "gpus_per_worker", "cpus_per_worker", "ray_address"})


def config_key(config: dict, upstream: dict[str, str]) -> str:
    counted = {k: v for k, v in sorted(config.items()) if k not in WHERE_IT_RUNS}
    text = json.dumps({"config": counted, "upstream": upstream}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class StageRecords:
    """The `pipeline/` folder of a run: one subfolder a stage, holding record.json and summary.pkl."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.keys: dict[str, str] = {}

    def _dir(self, stage: str) -> Path:
        return self.folder / stage

    def _read(self, stage: str) -> dict | None:
        path = self._dir(stage) / "record.json"
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not a pipeline record ({err}); delete it to run the stage again") from None

    def key(self, stage: str, config: dict, upstream: list[str] = ()) -> str:
        missing = [u for u in upstream if u not in self.keys]
        if missing:
            raise RuntimeError(f"stage {stage} reads {', '.join(missing)}, which has no key yet")
        self.keys[stage] = config_key(config, {u: self.keys[u] for u in upstream})
        return self.keys[stage]

    def done(self, stage: str, key: str) -> bool:
        record = self._read(stage)
        return bool(record and record.get("key") == key and record.get("finished")
                    and (self._dir(stage) / "summary.pkl").is_file())

    def summary(self, stage: str):
        return pickle.loads((self._dir(stage) / "summary.pkl").read_bytes())

    def record(self, stage: str) -> dict:
        return self._read(stage) or {}

    def start(self, stage: str, key: str, outputs: list[str | Path]) -> bool:
        """Mark `stage` started; True when it resumes an unfinished start of the same key. Otherwise its
        output folders are cleared first: whatever is there was written by other settings or inputs."""
        record = self._read(stage)
        resumes = bool(record and record.get("key") == key)
        if not resumes:
            for path in outputs:
                path = Path(path)
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
            (self._dir(stage) / "summary.pkl").unlink(missing_ok=True)
        write_json(self._dir(stage) / "record.json",
                   {"stage": stage, "key": key, "finished": False, "started": time.strftime("%Y-%m-%d %H:%M:%S")})
        return resumes

    def finish(self, stage: str, key: str, summary, seconds: float, generation: dict | None = None) -> None:
        path = self._dir(stage) / "summary.pkl"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(pickle.dumps(summary))
        tmp.replace(path)
        record = {**self.record(stage), "key": key, "finished": True, "seconds": round(seconds, 1),
                  "generation": generation or {}, "ended": time.strftime("%Y-%m-%d %H:%M:%S")}
        write_json(self._dir(stage) / "record.json", record)
