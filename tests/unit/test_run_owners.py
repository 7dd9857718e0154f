"""Who owns a run, and when its owner is gone (persona.monitoring.owners, adapters.processes)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from persona.adapters import processes
from persona.monitoring.owners import Owner, judge

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
HERE = Owner("worker-1", "boot-a", 10, 500)


def _judge(owner: str | None, heartbeat: datetime | None = NOW, alive: bool | None = None):
    return judge(owner, heartbeat, NOW, HERE, lambda _: alive, timedelta(minutes=60))


def test_an_owner_round_trips_through_its_text_and_bad_text_is_no_owner():
    owner = Owner("host-a", "b00t", 123, 456)
    assert Owner.parse(str(owner)) == owner
    assert Owner.parse("host-a::7:") == Owner("host-a", "", 7, None)
    assert Owner.parse("") is None and Owner.parse("not an owner") is None


def test_on_its_own_host_an_owner_is_gone_when_its_process_is_and_alive_while_it_runs():
    assert _judge("worker-1:boot-a:42:9", alive=False).gone
    assert not _judge("worker-1:boot-a:42:9", alive=True).gone
    assert not _judge(str(HERE), alive=False).gone  # this very process is never gone
    rebooted = _judge("worker-1:boot-z:42:9", alive=True)
    assert rebooted.gone and "rebooted" in rebooted.reason


def test_elsewhere_or_when_the_process_cannot_be_asked_the_heartbeat_decides():
    old, fresh = NOW - timedelta(minutes=90), NOW - timedelta(minutes=5)
    stale = _judge("worker-2:boot-b:42:9", heartbeat=old)
    assert stale.gone and "no heartbeat for 90 min" in stale.reason
    assert not _judge("worker-2:boot-b:42:9", heartbeat=fresh).gone
    assert _judge(None, heartbeat=old).gone  # a run of an older release: no owner recorded
    assert not _judge("worker-1:boot-a:42:9", heartbeat=fresh, alive=None).gone
    assert not _judge(None, heartbeat=None).gone


def test_this_process_is_alive_an_exited_one_is_not_nor_a_recycled_pid():
    me = processes.this_owner()
    assert Owner.parse(str(me)) == me and processes.is_alive(me) is True
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert processes.is_alive(Owner(me.host, me.boot_id, child.pid, me.started)) is False
    recycled = Owner(me.host, me.boot_id, me.pid, (me.started or 0) + 500)  # 5 s apart
    assert processes.is_alive(recycled) is False
    assert processes.is_alive(Owner(me.host, me.boot_id, me.pid, None)) is None


def test_a_naive_heartbeat_is_read_as_utc():
    naive = (NOW - timedelta(minutes=90)).replace(tzinfo=None)
    assert _judge("worker-2:boot-b:42:9", heartbeat=naive).gone
