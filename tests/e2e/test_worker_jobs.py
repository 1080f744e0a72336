"""Two real `adapter worker` processes: one chain per periodic job between them, each run done once and
followed by exactly one next run, all of it visible to `rq info`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import redis
from rq import Queue
from rq.registry import FinishedJobRegistry, ScheduledJobRegistry

from adapter.settings import Settings
from adapter.store.connections import rq_redis
from adapter.store.keys import Keys
from tests.support.fake_emqx import KEY, SECRET, FakeEmqx, emqx_client
from tests.support.processes import adapter_process
from tests.support.servers import serve, wait_for

K = Keys("iot")


def test_two_workers_run_one_chain_per_periodic_job(settings: Settings, redis_db: redis.Redis,
                                                    tmp_path: Path) -> None:
    fake = FakeEmqx(clients=[emqx_client(1)])
    with serve(fake.app()) as url:
        env = {"ADAPTER_REDIS_URL": settings.redis_url, "ADAPTER_EMQX_API_URL": f"{url}/api/v5",
               "ADAPTER_EMQX_API_KEY": KEY, "ADAPTER_EMQX_API_SECRET": SECRET}
        with adapter_process("worker", env=env, log_path=str(tmp_path / "w1.log")), \
                adapter_process("worker", env=env, log_path=str(tmp_path / "w2.log")):
            queue = Queue(K.queue("default"), connection=rq_redis(settings))
            finished = FinishedJobRegistry(queue=queue)
            wait_for(lambda: len(finished.get_job_ids()) == 2, 60, "the first run of each periodic job")
            scheduled = ScheduledJobRegistry(queue=queue)
            wait_for(lambda: len(scheduled.get_job_ids()) == 2, 10, "the next run of each")
            assert sorted(scheduled.get_job_ids()) == sorted(
                [redis_db.get(K.job_chain("reconcile")), redis_db.get(K.job_chain("retention"))])
            assert any(r.url.path == "/api/v5/clients" for r in fake.seen)  # reconcile asked EMQX
            info = subprocess.run([str(Path(sys.executable).with_name("rq")), "info", "--url", settings.redis_url],
                                  capture_output=True, text=True, timeout=30)
            assert "iot-default" in info.stdout, info.stdout + info.stderr
    assert len(finished.get_job_ids()) == 2  # nothing ran twice
