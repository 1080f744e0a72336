"""`adapter dev`'s banner prints what a developer needs, and never the Redis URL's password."""

from adapter.settings import Settings
from adapter_devtools.dev import banner


def test_the_banner_hides_the_redis_password() -> None:
    s = Settings(redis_url="redis://:s3cret-pw@127.0.0.1:6379/0", admin_password="shown-on-purpose", dev=True)
    text = banner(s, "http://127.0.0.1:8000", 1884, "http://127.0.0.1:18083/api/v5")
    assert "s3cret-pw" not in text
    assert "redis://:***@127.0.0.1:6379/0" in text
    assert "http://127.0.0.1:8000/iot/api/v1/docs" in text
