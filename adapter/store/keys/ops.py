"""The console's per-minute series and the RQ jobs' chains and progress: their keys."""

from __future__ import annotations

from adapter.store.keys.base import KeyBase


class OpsKeys(KeyBase):
    # --- per-minute series for the console's charts (adapter/stats/, docs/api.md "Series") --------------------
    def stats_series(self, metric: str) -> str:
        """String: a fleet series' ring of per-minute samples (stats/series.py: fixed 12-byte slots, minute mod
        the ring's length), written by the sampler with SETRANGE, read whole with GET."""
        return self._t(self.meta_tag, "stats", metric)

    def target_series(self, kind: str, target_id: int | str, metric: str) -> str:
        """String: one target's ring of per-minute samples (as `stats_series`); in the target's slot (`{tgt}` on
        the cluster), so that deleting the target removes it in the same MULTI."""
        return self._t(self.targets_tag, "stats", kind, str(target_id), metric)

    def stats_lease(self) -> str:
        """String: the id of the API process that samples the series now (one at a time), with a TTL."""
        return self._t(self.meta_tag, "stats", "lease")

    # --- RQ jobs: periodic chains and progress (adapter/jobs/entry.py, docs/delivery.md) ----------------------
    def job_chain(self, name: str) -> str:
        """String: the RQ job id of the next run of periodic job `name` (one chain, however many workers). Kept on
        RQ's Redis, beside the jobs it names (jobs/chains.py uses the queue's connection)."""
        return self._t(self.meta_tag, "jobs", "chain", name)

    def job_progress(self, job_id: str) -> str:
        """Hash of one job's progress: kind, state, done, total, error, created, updated; expires."""
        return self._t(self.meta_tag, "jobs", "progress", job_id)

    def retention_cursor(self, walk: str) -> str:
        """String: where retention's walk `walk` resumes (an index member or a SCAN cursor)."""
        return self._t(self.meta_tag, "jobs", "retention", walk)

    # --- `adapter store migrate` (adapter/migrate/, docs/cluster.md "Moving a store between layouts") ----------
    def migration(self) -> str:
        """Hash: the state of a migration into this store (source, layouts, phase, where its walk resumes); while
        it exists the store is half-made and every process refuses to start on it (`check_layout`)."""
        return self._t(self.meta_tag, "migrate")

    def migration_ids(self) -> str:
        """Hash old command id -> new id: the ids a migration into a cluster store gave the commands it moved (on
        a cluster an id carries its partition); kept after the migration, for the operator."""
        return self._t(self.meta_tag, "migrate", "ids")
