"""Which sockets pause first under overload (``collab.live.intake``), without I/O."""

from __future__ import annotations

from collab.live.intake import Intake, Reads


def test_the_socket_above_the_mean_is_the_busiest() -> None:
    intake = Intake(seconds=2.0)
    flooder, light, idle = Reads(), Reads(), Reads()
    for n in range(20):
        intake.read(flooder, n * 0.01)
    intake.read(light, 0.2)
    assert intake.busiest(flooder, 0.2, sockets=3)
    assert not intake.busiest(light, 0.2, sockets=3)
    assert not intake.busiest(idle, 0.2, sockets=3)


def test_a_paused_socket_decays_until_the_others_are_busier() -> None:
    intake = Intake(seconds=2.0)
    flooder, steady = Reads(), Reads()
    for n in range(20):
        intake.read(flooder, n * 0.01)
    now = 0.2
    # the flooder is not read; the other editor sends twice a second
    while intake.busiest(flooder, now, sockets=2):
        now += 0.5
        intake.read(steady, now)
        assert now < 30, "the flooder never got its turn back"
    assert intake.busiest(steady, now, sockets=2)


def test_equal_senders_are_not_all_busy() -> None:
    intake = Intake()
    sockets = [Reads() for _ in range(4)]
    for n in range(10):
        for reads in sockets:
            intake.read(reads, n * 0.1)
    # each read equally: none is above the mean (the writer's saturation mark
    # pauses them together if the wait keeps growing)
    assert [intake.busiest(reads, 1.0, sockets=4) for reads in sockets] == [False] * 4
