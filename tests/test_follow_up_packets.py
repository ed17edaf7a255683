"""`follow_up_packets`: the packet a batch of messages is delivered with, put together from its
handoff and the batches before it; batches stored whole (before own-only storage) read as stored."""

from __future__ import annotations

from types import SimpleNamespace

from connector.follow_up_packets import own_messages, stored, whole, whole_of

HANDOFF = SimpleNamespace(id="hnd_1", packet={"customer": {"id": "c1"}, "callback": {"url": "https://bot.example/cb"},
                                              "transcript": [{"text": "a"}, {"text": "b"}]})


def test_a_batch_stored_whole_is_read_as_it_was_stored():
    old = SimpleNamespace(packet=whole(HANDOFF, [], [{"text": "c"}]), follows_id="hnd_1", follow_up_seq=1)

    assert whole_of(None, old) is old.packet  # type: ignore[arg-type]  # nothing read, nothing put together
    assert own_messages(old) == [{"text": "c"}]


def test_earlier_batches_count_their_own_messages_whichever_way_they_were_stored():
    old = SimpleNamespace(packet=whole(HANDOFF, [], [{"text": "c"}]))
    new = SimpleNamespace(packet=stored(HANDOFF, [{"text": "d"}]))

    packet = whole(HANDOFF, [old, new], [{"text": "e"}])

    assert [e["text"] for e in packet["transcript"]] == ["a", "b", "c", "d", "e"]
    assert packet["follow_up"] == {"handoff_id": "hnd_1", "first": 4, "handoff_ends": 2} and "callback" not in packet
