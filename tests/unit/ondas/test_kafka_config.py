"""The consumer settings every loop starts from: an explicit poll interval, above the session timeout."""

from ondas.kafka import consumer_config


def test_the_poll_interval_is_explicit_and_above_the_session():
    cfg = consumer_config("127.0.0.1:9092", "g")
    assert cfg["max.poll.interval.ms"] >= 10 * cfg["session.timeout.ms"]
    # A loop may lower both (tests do), and its own values win.
    small = consumer_config("127.0.0.1:9092", "g", **{"max.poll.interval.ms": 6000, "session.timeout.ms": 6000})
    assert small["max.poll.interval.ms"] == 6000 == small["session.timeout.ms"]
