"""RQ job ids (adapter/jobs/chains.py, adapter/commands/bulk.py): only letters, digits, `_` and `-`."""

from __future__ import annotations

from adapter.commands.bulk import job_id
from adapter.jobs.chains import made_at, new_id
from adapter.store.keys import Keys


def test_job_ids_are_fit_for_rq_whatever_the_key_prefix() -> None:
    keys = Keys("acme.prod/eu")
    periodic_id = new_id(keys, "reconcile", now_ms=1234)
    assert periodic_id.startswith("acme_prod_eu-reconcile-1234-") and made_at(periodic_id) == 1234
    assert job_id(keys, 202601010000000001) == "acme_prod_eu-commands-202601010000000001"


def test_an_id_without_its_time_is_never_taken_as_new() -> None:
    assert made_at("something-else") is None
