"""The consumer settings every loop starts from: an explicit poll interval, above the session timeout."""

from ondas.kafka import consumer_config


def test_the_poll_interval_is_explicit_and_above_the_session():
    cfg = consumer_config("127.0.0.1:9092", "g")
    assert cfg["max.poll.interval.ms"] >= 10 * cfg["session.timeout.ms"]
    # A loop may lower both (tests do), and its own values win.
    small = consumer_config("127.0.0.1:9092", "g", **{"max.poll.interval.ms": 6000, "session.timeout.ms": 6000})
    assert small["max.poll.interval.ms"] == 6000 == small["session.timeout.ms"]


def test_one_producer_per_cluster() -> None:
    """A process that talks to two clusters (the test suite: the tests' broker and the e2e platform's) gets the
    producer of the cluster it names, never another cluster's."""
    from ondas.kafka import close_producer, get_producer

    close_producer()
    a, b = get_producer("127.0.0.1:1"), get_producer("127.0.0.1:2")
    try:
        assert a is not b
        assert get_producer("127.0.0.1:1") is a and get_producer("127.0.0.1:2") is b
    finally:
        close_producer(0.1)
    assert get_producer("127.0.0.1:1") is not a
    close_producer(0.1)
