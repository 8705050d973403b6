import pytest

pytestmark = pytest.mark.integration


def test_servers_start(kafka_bootstrap, mongo_url, pg_database, mosquitto, redis_url):
    import psycopg
    import pymongo
    import redis

    with psycopg.connect(pg_database("smoke")) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    with pymongo.MongoClient(mongo_url) as client:
        assert client.admin.command("ping")["ok"] == 1
    with redis.Redis.from_url(redis_url) as r:
        assert r.ping()
