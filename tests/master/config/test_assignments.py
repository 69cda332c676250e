"""Finding the master.cfg line that set each BuildmasterConfig key."""

from __future__ import annotations

import textwrap

from buildyard.master.config.assignments import find_key_lines


def _lines(source: str) -> dict[str, int]:
    found = find_key_lines(textwrap.dedent(source).lstrip("\n"), "master.cfg")
    return {k: found.location(k).line for k in ("title", "workers", "www", "db", "mq", "other")}


def test_subscripts_through_every_alias() -> None:
    lines = _lines(
        """
        c = BuildmasterConfig = {}
        cfg = c
        c['title'] = 'x'
        BuildmasterConfig['workers'] = []
        cfg['www'] = {}
        """
    )
    assert (lines["title"], lines["workers"], lines["www"]) == (3, 4, 5)


def test_dict_literal_and_dict_call_keys_have_their_own_lines() -> None:
    lines = _lines(
        """
        import os
        BuildmasterConfig = {
            'title': 'x',
            'workers': [],
        }
        BuildmasterConfig.update(www=dict(port=1), db={'db_url': 'x'})
        BuildmasterConfig.setdefault('mq', {})
        """
    )
    assert (lines["title"], lines["workers"], lines["www"], lines["db"], lines["mq"]) == (
        3,
        4,
        6,
        6,
        7,
    )


def test_last_assignment_wins_and_unseen_keys_fall_back() -> None:
    found = find_key_lines(
        "c = BuildmasterConfig = {}\nc['title'] = 'a'\nc['title'] = 'b'\nc['workers'].append(1)\n",
        "master.cfg",
    )
    assert found.location("title").line == 3
    assert found.location("workers").line == 4  # only mentioned: still the best line there is
    assert found.location("other").line == 1  # where BuildmasterConfig is bound
    assert found.location().file == "master.cfg"


def test_no_buildmaster_config_binding() -> None:
    assert find_key_lines("x = 1\n", "m.cfg").location("title").line == 1
